"""docs/porting.md lists every supported name: each one it names must exist under that name."""
import re
from pathlib import Path

import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
import dualgraph.static as tf
from dualgraph import gluon, nd

DOC = Path(__file__).resolve().parent.parent / "docs" / "porting.md"
ROOTS = {"dg": dg, "torch": dg, "nn": dg.nn, "F": F, "tf": tf, "nd": nd, "gluon": gluon, "optim": dg.optim,
         "lr_scheduler": dg.optim.lr_scheduler, "Tensor": dg.Tensor, "mx": dg}
NAME = re.compile(r"\b(" + "|".join(ROOTS) + r")((?:\.[A-Za-z_][A-Za-z_0-9]*)+)")


def _named():
    names = set()
    for code in re.findall(r"`([^`]+)`", DOC.read_text()):
        if "isinstance(" in code:  # a counterexample: what does not work
            continue
        for m in NAME.finditer(code):
            if m.start() and code[m.start() - 1] in "._":  # part of a longer dotted name
                continue
            if code[m.end():m.end() + 1] == "*":  # a family written with a wildcard
                continue
            names.add(m.group(1) + m.group(2))
    return sorted(names)


def _resolve(dotted):
    root, *parts = dotted.split(".")
    obj = ROOTS[root]
    for p in parts:
        obj = getattr(obj, p)
    return obj


def test_the_page_names_many_names():
    assert len(_named()) > 300


@pytest.mark.parametrize("dotted", _named())
def test_named_name_exists(dotted):
    _resolve(dotted)
