"""The backend layer: the only place that knows numpy and cupy apart.

Everything above this module computes through `device.xp`, the array namespace of a device,
so the GPU path is the same code as the CPU path (as in Chainer's `xp`).
"""
import math
import os

import numpy

from .errors import DeviceError

# DUALGRAPH_EMULATE_GPU=1 (or =N devices) puts a strict numpy-backed stand-in for cupy behind the GPU
# device (dualgraph/_emulated_cupy.py), so the GPU path and its host/device slips are tested without one
EMULATED = os.environ.get("DUALGRAPH_EMULATE_GPU", "").strip() not in ("", "0")
if EMULATED:
    from . import _emulated_cupy

    _n = os.environ["DUALGRAPH_EMULATE_GPU"].strip()
    _cupy = _emulated_cupy.module(int(_n) if _n.isdigit() else 1)
    _cupyx = _cupy.cupyx
    _GPU_COUNT = _cupy.cuda.runtime.getDeviceCount()
else:
    try:  # cupy is optional: the GPU path exists only where it imports and sees a device
        import cupy as _cupy
        import cupyx as _cupyx

        _GPU_COUNT = _cupy.cuda.runtime.getDeviceCount()
    except Exception:  # ImportError, or a cupy without a driver/GPU
        _cupy = _cupyx = None
        _GPU_COUNT = 0


class Device:
    """A place arrays live: 'cpu' or 'gpu:N'. Interned, so identity comparison is enough."""

    __slots__ = ("type", "index", "xp", "_name")

    def __init__(self, type_, index, xp):
        self.type, self.index, self.xp = type_, index, xp
        self._name = "cpu" if type_ == "cpu" else f"gpu:{index}"

    def __repr__(self):
        return f"device('{self._name}')"

    def __str__(self):
        return self._name

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except DeviceError:
                return False
        return self is other

    def __hash__(self):
        return hash(self._name)

    # interned: copies (copy.deepcopy of tensors and models) and unpickling give the same object
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (device, (self._name,))


CPU = Device("cpu", None, numpy)
_DEVICES = {"cpu": CPU}


def gpu_available():
    return _GPU_COUNT > 0


def device(spec, index=None):
    """Parse 'cpu', 'gpu', 'gpu:1', 'cuda', 'cuda:0' or a Device into an interned Device; `index` as in
    PyTorch's device('cuda', 1)."""
    if index is not None:
        if not isinstance(spec, str) or ":" in spec or isinstance(index, bool) or not isinstance(index, int) \
                or index < 0:
            raise DeviceError(f"device({spec!r}, {index!r}): give a device type without an index and a "
                              f"non-negative int index")
        if spec.strip().lower() == "cpu":
            if index != 0:
                raise DeviceError(f"device('cpu', {index}): there is one CPU device, index 0")
            return CPU
        spec = f"{spec}:{index}"
    if spec is None:
        return CPU
    if isinstance(spec, Device):
        return spec
    name = str(spec).strip().lower().replace("cuda", "gpu")
    if name in _DEVICES:
        return _DEVICES[name]
    if name.startswith("gpu"):
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if _cupy is None:
            raise DeviceError(f"device '{spec}' (dualgraph's GPU device) needs cupy and a GPU; cupy is not "
                              f"available here (pip install 'dualgraph[gpu]'), use device='cpu' "
                              f"(dg.cuda.is_available() says whether a GPU can be used)")
        if index >= _GPU_COUNT:
            raise DeviceError(f"device '{spec}' does not exist: {_GPU_COUNT} GPU(s) visible "
                              f"(dg.cuda.device_count())")
        dev = Device("gpu", index, _cupy)
        _DEVICES[name] = _DEVICES[f"gpu:{index}"] = dev
        return dev
    raise DeviceError(f"unknown device {spec!r}; use 'cpu', 'gpu' or 'gpu:N'")


def device_of_array(arr):
    """The Device an array lives on."""
    if isinstance(arr, numpy.ndarray) or numpy.isscalar(arr):
        return CPU
    if _cupy is not None and isinstance(arr, _cupy.ndarray):
        return device(f"gpu:{arr.device.id}")
    return CPU


def to_device(arr, dev):
    """Move an array to `dev` (a copy when it changes place)."""
    src = device_of_array(arr)
    if src is dev:
        return arr
    if dev is CPU:
        return _cupy.asnumpy(arr)
    with _cupy.cuda.Device(dev.index):
        return _cupy.asarray(arr)


def to_host(arr):
    if isinstance(arr, numpy.ndarray):
        return arr
    return _cupy.asnumpy(arr)


def is_array(obj):
    return isinstance(obj, numpy.ndarray) or (_cupy is not None and isinstance(obj, _cupy.ndarray))


def erf(xp, x):
    """The error function on xp (numpy has none; scipy's or cupyx's where present, math.erf otherwise)."""
    if xp is not numpy:
        return special(xp, "erf")(x)
    try:
        from scipy.special import erf as _erf
    except ImportError:  # exact but slower: one math.erf per element
        return numpy.vectorize(math.erf, otypes=[x.dtype])(x).astype(x.dtype)
    return _erf(x).astype(x.dtype, copy=False)


def scipy_special(xp):
    """The scipy.special namespace for xp's arrays: cupyx.scipy.special on a GPU, scipy.special on the
    host (None where scipy is not installed: it is optional)."""
    if xp is not numpy:
        if not EMULATED:
            import cupyx.scipy.special  # noqa: F401  (a submodule cupyx does not import by itself)
        return _cupyx.scipy.special
    try:
        import scipy.special
    except ImportError:
        return None
    return scipy.special


def special(xp, name):
    """scipy.special's function `name` for xp's arrays: cupyx.scipy.special's on a GPU (the caller handles
    numpy, where scipy is optional)."""
    return getattr(scipy_special(xp), name)


def accumulate(xp, name, x, axis):
    """`xp.<name>.accumulate(x, axis)` for a commutative, associative ufunc. cupy has accumulate for add
    and multiply only; on the GPU the others scan in log2(n) elementwise passes (Hillis-Steele: pass k
    combines each element with the one 2**k before it)."""
    uf = getattr(xp, name)
    if xp is numpy or name in ("add", "multiply"):
        return uf.accumulate(x, axis=axis)
    y = xp.moveaxis(x, axis, -1)
    n, k = y.shape[-1], 1
    while k < n:
        y = xp.concatenate([y[..., :k], uf(y[..., k:], y[..., :-k])], axis=-1)
        k *= 2
    return xp.ascontiguousarray(xp.moveaxis(y, -1, axis))


def scatter_multiply(xp, out, index, values):
    """out[index] *= values with repeated indices multiplying in turn (numpy's multiply.at). cupy has no
    multiply.at: the GPU applies the first occurrence of each position per pass, as many passes as the
    most repeated position has."""
    if xp is numpy:
        numpy.multiply.at(out, index, values)
        return
    index = xp.broadcast_arrays(*index)
    lin = xp.ravel_multi_index(tuple(i.ravel() for i in index), out.shape)
    vals = xp.broadcast_to(xp.asarray(values, dtype=out.dtype), index[0].shape).ravel()
    while lin.size:
        pos, first = xp.unique(lin, return_index=True)
        at = xp.unravel_index(pos, out.shape)
        out[at] = out[at] * vals[first]
        rest = xp.ones(lin.size, dtype=bool)
        rest[first] = False
        lin, vals = lin[rest], vals[rest]


# dg.use_deterministic_algorithms(mode, warn_only=...): [mode, warn_only]
DETERMINISTIC = [False, False]


def scatter_add(xp, out, index, values):
    """out[index] += values with repeated indices accumulating (numpy's add.at; cupyx on the GPU)."""
    if xp is numpy:
        numpy.add.at(out, index, values)
    else:
        if DETERMINISTIC[0] and out.dtype.kind in "fc":
            # cupyx accumulates with atomics: float sums then vary from run to run in their last bits
            msg = (f"scatter_add on the GPU ({out.dtype}, shape {tuple(out.shape)}) accumulates with atomic adds, "
                   f"whose order varies between runs, and dg.use_deterministic_algorithms(True) is set")
            if not DETERMINISTIC[1]:
                raise DeviceError(msg + "; compute it on the CPU or turn the setting off")
            import warnings
            warnings.warn(msg, UserWarning, stacklevel=3)
        _cupyx.scatter_add(out, index, values)
