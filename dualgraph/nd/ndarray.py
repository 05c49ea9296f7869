"""The MXNet-only NDArray methods, bound onto dualgraph's Tensor by dualgraph/_methods.py.

Names whose PyTorch meaning differs (reshape codes, flatten, sum(axis=) on 0-d, argmax dtype) stay
PyTorch's on Tensor; the `nd.` functions give MXNet's."""
from .. import backend as _backend
from ..backend import device as _device
from ..errors import ShapeError


def _sync(dev=None):
    """Block until queued GPU work is done; numpy runs each op to completion before it returns."""
    cp = _backend._cupy
    if cp is None:
        return
    if dev is None:
        for i in range(_backend._GPU_COUNT):
            with cp.cuda.Device(i):
                cp.cuda.runtime.deviceSynchronize()
    elif dev.type == "gpu":
        with cp.cuda.Device(dev.index):
            cp.cuda.runtime.deviceSynchronize()


def waitall():
    """MXNet's nd.waitall: wait for all pending computation (a no-op on the CPU, where dualgraph runs
    every op eagerly to completion; a device synchronize on GPUs)."""
    _sync()


def wait_to_read(self):
    """Wait until this array's value is computed (see waitall)."""
    _sync(self._device)
    return None


def asscalar(self):
    """The value of a one-element array as a Python number (MXNet's NDArray.asscalar)."""
    if self.numel() != 1:
        raise ShapeError(f"asscalar: the array must have exactly one element, this one has shape "
                         f"{tuple(self.shape)}")
    return self.numpy().reshape(()).item()


def as_in_context(self, context):
    """This array on `context` (itself when already there)."""
    dev = _device(context)
    return self if dev is self._device else self.to(dev)


def copyto(self, other):
    """Copy into the NDArray `other` (returned), or to a new array on the context `other`."""
    from ..tensor import Tensor
    if isinstance(other, Tensor):
        if tuple(other.shape) != tuple(self.shape):
            raise ShapeError(f"copyto: shapes {tuple(self.shape)} and {tuple(other.shape)} differ")
        other[...] = self.detach()
        return other
    return self.detach().to(_device(other)).clone()


def context(self):
    return self._device


BIND = {"asscalar": asscalar, "as_in_context": as_in_context, "copyto": copyto, "wait_to_read": wait_to_read}
PROPERTIES = {"context": context, "ctx": context}

