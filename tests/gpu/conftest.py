"""The GPU test subset: every test here runs on device "gpu" and compares with the CPU.

It runs against real cupy where a GPU is visible, and against dualgraph's strict cupy stand-in with
`DUALGRAPH_EMULATE_GPU=1` (CI): arrays that are not numpy arrays, refuse implicit host conversion and
refuse to mix with numpy arrays, so every host/device slip fails here. Without either the subset skips.
"""
import os
import sys

import pytest

import dualgraph as dg
from dualgraph import backend

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def pytest_collection_modifyitems(config, items):
    if backend.gpu_available():
        return
    skip = pytest.mark.skip(reason="no GPU: install cupy on a GPU machine, or run with DUALGRAPH_EMULATE_GPU=1")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture
def gpu():
    return dg.device("gpu")
