"""`dg.accelerator`: PyTorch's device-agnostic `torch.accelerator` questions.

dualgraph's one accelerator kind is the GPU (cupy); its device type is `"gpu"`, which `.to()` and
`dg.device()` accept as they accept `"cuda"`. Without a GPU there is no accelerator:
`current_accelerator()` is None and `device_count()` is 0.
"""
from . import backend as _backend
from . import cuda as _cuda

__all__ = ["is_available", "current_accelerator", "device_count", "current_device_index", "set_device_index",
           "synchronize"]


def is_available():
    return _backend.gpu_available()


def current_accelerator(check_available=False):
    """The accelerator's device (`dg.device('gpu')`, type 'gpu'), or None where there is none.

    `check_available` is accepted for PyTorch's signature: dualgraph only reports a GPU it can use."""
    return _backend.device("gpu") if _backend.gpu_available() else None


def device_count():
    return _backend._GPU_COUNT


def current_device_index():
    """The current GPU's index; DeviceError (a RuntimeError, as in PyTorch) where there is none."""
    return _cuda.current_device()


def set_device_index(device):
    _cuda.set_device(device)


def synchronize(device=None):
    _cuda.synchronize(device)
