"""PyTorch's Tensor methods for the math, statistics and utility ops (ops/math.py, ops/stats.py,
ops/tensor_ops.py), the in-place forms of the out-of-place ops (one rule: ops.tensor_ops.inplace_of), and
the storage queries (is_contiguous, stride, data_ptr, share_memory_, pin_memory), answered for numpy/cupy.
"""
import mmap

import numpy as np

from .backend import CPU
from .errors import DeviceError, DTypeError, DualgraphError, IndexOutOfRange
from .ops import elementwise as ew, math as m, shape as sh, stats as st, tensor_ops as to
from .tensor import Tensor
from .backend import gpu_available

# out-of-place methods PyTorch's Tensor has, by the function computing them
_METHODS = dict(
    log2=m.log2, log10=m.log10, exp2=m.exp2, sinh=m.sinh, cosh=m.cosh, asin=m.asin, arcsin=m.asin, acos=m.acos,
    arccos=m.acos, atan=m.atan, arctan=m.atan, asinh=m.asinh, arcsinh=m.asinh, acosh=m.acosh, arccosh=m.acosh,
    atanh=m.atanh, arctanh=m.atanh, atan2=m.atan2, arctan2=m.atan2, hypot=m.hypot, erfinv=m.erfinv, erfc=m.erfc,
    frac=m.frac, fmod=m.fmod, lerp=m.lerp, logaddexp=m.logaddexp, logaddexp2=m.logaddexp2,
    nan_to_num=m.nan_to_num, clamp_min=m.clamp_min, clamp_max=m.clamp_max, xlogy=m.xlogy, sinc=m.sinc,
    deg2rad=m.deg2rad, rad2deg=m.rad2deg, signbit=m.signbit, copysign=m.copysign, heaviside=m.heaviside,
    fix=m.fix, sgn=m.sgn, float_power=m.float_power,
    remainder=ew.mod, floor_divide=ew.floordiv, multiply=ew.mul, divide=ew.div, true_divide=ew.div,
    subtract=ew.sub, negative=ew.neg, absolute=ew.abs, bitwise_and=ew.bitwise_and, bitwise_or=ew.bitwise_or,
    bitwise_xor=ew.bitwise_xor, bitwise_not=ew.invert, less=ew.lt, less_equal=ew.le, greater=ew.gt,
    greater_equal=ew.ge, not_equal=ew.ne,
    allclose=st.allclose, isclose=st.isclose, equal=st.equal, unique=st.unique,
    unique_consecutive=st.unique_consecutive, bincount=st.bincount, histc=st.histc,
    count_nonzero=st.count_nonzero, diff=st.diff, cov=st.cov, corrcoef=st.corrcoef, aminmax=st.aminmax,
    nanmean=st.nanmean, nansum=st.nansum, logcumsumexp=st.logcumsumexp, addmv=st.addmv, addbmm=st.addbmm,
    rot90=st.rot90, fliplr=st.fliplr, flipud=st.flipud,
    select=to.select, unfold=to.unfold_window, index_copy=to.index_copy, masked_scatter=to.masked_scatter,
    sum_to_size=to.sum_to_size, swapdims=sh.swapaxes,
    isinf=m.isinf, isposinf=m.isposinf, isneginf=m.isneginf, isreal=m.isreal, addcmul=m.addcmul,
    addcdiv=m.addcdiv, fmax=m.fmax, fmin=m.fmin, logit=m.logit, positive=m.positive, dist=st.dist,
    take_along_dim=st.take_along_dim, diagflat=st.diagflat, quantile=st.quantile, nanquantile=st.nanquantile,
    movedim=sh.moveaxis, ravel=lambda a: sh.reshape(a, (-1,)),
    byte=lambda a: ew.astype(a, "uint8"), char=lambda a: ew.astype(a, "int8"), short=lambda a: ew.astype(a, "int16"),
    is_signed=lambda a: a.dtype.kind in "if", is_same_size=lambda a, other: tuple(a.shape) == tuple(other.shape),
    lgamma=m.lgamma, digamma=m.digamma, polygamma=lambda a, n: m.polygamma(n, a),
)

# in-place forms PyTorch has, of the out-of-place method of the same name without the underscore
_INPLACE = (
    "abs absolute acos arccos acosh arccosh asin arcsin asinh arcsinh atan arctan atanh arctanh atan2 arctan2 "
    "ceil floor round trunc fix clamp_min clamp_max copysign cos cosh sin sinh tan tanh deg2rad rad2deg erf "
    "erfc erfinv exp exp2 expm1 log log2 log10 log1p frac fmod remainder floor_divide hypot heaviside lerp "
    "logical_and logical_or logical_xor logical_not lt le gt ge eq ne less less_equal greater greater_equal "
    "not_equal neg negative nan_to_num pow reciprocal relu rsqrt sigmoid sign sgn sinc sqrt square multiply "
    "divide true_divide subtract xlogy bitwise_and bitwise_or bitwise_xor bitwise_not cumsum cumprod addmm "
    "addmv addbmm baddbmm index_copy masked_scatter addcmul addcdiv logit index_put "
    "lgamma digamma polygamma"
).split()

_SHAPE_INPLACE = dict(unsqueeze_="unsqueeze", squeeze_="squeeze", transpose_="transpose", t_="t",
                      swapaxes_="swapaxes", swapdims_="swapaxes")


def _cast_back(fn, name):
    """fn's result in the tensor's dtype: an in-place op keeps it; a result that cannot be cast back
    (float into an integer tensor) is an error, as PyTorch's 'result type Float can't be cast to Long'."""
    def run(s, *args, **kwargs):
        out = fn(s, *args, **kwargs)
        if out.dtype != s.dtype:
            if not np.can_cast(out.dtype, s.dtype, "same_kind"):
                raise DTypeError(f"{name}: the result type {out.dtype} can't be cast to the tensor's dtype "
                                 f"{s.dtype} in place")
            out = ew.astype(out, s.dtype)
        return out
    return run


# ---- storage queries ----------------------------------------------------------------------------

def _concrete(t, what):
    if t._symbolic:
        raise DualgraphError(f"{what}: a traced tensor has no storage (it stands for a value of the graph being "
                             f"built); call it outside @dg.function")
    return t._data


def is_contiguous(t, memory_format=None):
    """Whether the numpy/cupy array is C-contiguous (a transposed or expanded view is not, as in PyTorch);
    a traced value has no layout and answers True."""
    if t._symbolic:
        return True
    return bool(t._data.flags.c_contiguous)


def contiguous(t, memory_format=None):
    """t itself when C-contiguous, else a C-contiguous copy (differentiable, as PyTorch's)."""
    if t._symbolic or t._data.flags.c_contiguous:
        return t
    out = ew.copy(t)   # the copy keeps numpy's order 'K' (a transpose stays Fortran-ordered): lay it out in C
    out._data = t._device.xp.ascontiguousarray(out._data)
    return out


def stride(t, dim=None):
    """Strides in elements (numpy's byte strides over the itemsize); a traced tensor reports the
    C-contiguous strides of its shape."""
    if t._symbolic:
        acc, out = 1, []
        for d in reversed(tuple(t.shape)):
            out.append(acc)
            acc = acc * d
        strides = tuple(reversed(out))
    else:
        strides = tuple(s // t._data.itemsize for s in t._data.strides)
    if dim is None:
        return strides
    n = max(t.ndim, 1)
    if not -n <= dim < n or t.ndim == 0:
        raise IndexOutOfRange(f"stride: dim {dim} is out of range for a tensor of shape {tuple(t.shape)}")
    return strides[dim]


def data_ptr(t):
    """The address of the first element of the numpy (or cupy device) array."""
    data = _concrete(t, "data_ptr")
    if isinstance(data, np.ndarray):
        return int(data.__array_interface__["data"][0])
    return int(data.data.ptr)


def share_memory_(t):
    """Moves the values into an anonymous shared memory mapping, so processes forked afterwards (DataLoader
    workers, multiprocessing with 'fork') see in-place writes either side makes; a no-op for GPU tensors
    and tensors already shared, as in PyTorch. The tensor's values and identity are unchanged."""
    data = _concrete(t, "share_memory_")
    if t._device is not CPU or is_shared(t):
        return t
    buf = mmap.mmap(-1, max(data.nbytes, 1))
    shared = np.frombuffer(buf, dtype=data.dtype, count=data.size).reshape(data.shape)
    shared[...] = data
    t._data = shared
    return t


def is_shared(t):
    if t._symbolic:
        return False
    base = t._data
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def pin_memory(t, device=None):
    """PyTorch pins host memory for fast copies to a GPU; like a CPU-only PyTorch, this raises without
    one. With a GPU (cupy) the tensor is returned as it is: cupy copies from pageable memory."""
    if not gpu_available():
        raise DeviceError("pin_memory: cannot access an accelerator device when none is available (as a "
                          "CPU-only PyTorch)")
    return t


def _per_element(name, t, fn, *others):
    data = _concrete(t, name)
    if t._device is not CPU:
        raise DeviceError(f"{name}: runs a Python callable per element, on CPU tensors only (as PyTorch); "
                          f"the tensor is on {t._device}")
    t._check_inplace(name)
    arrays = [np.broadcast_to(_concrete(o, name), data.shape) for o in others]
    flat = data.reshape(-1) if data.flags.c_contiguous else data.ravel()
    cols = [a.reshape(-1) for a in arrays]
    out = np.array([fn(*(v.item() for v in vals)) for vals in zip(flat, *cols)], dtype=data.dtype)
    data[...] = out.reshape(data.shape)
    t._version[0] += 1
    return t


def apply_(t, callable):
    """Tensor.apply_: each element replaced by callable(element), in place (CPU, eager, no autograd)."""
    return _per_element("apply_", t, callable)


def map_(t, tensor, callable):
    """Tensor.map_: each element replaced by callable(element, other's element), `tensor` broadcast."""
    return _per_element("map_", t, callable, tensor)


def bind():
    T = Tensor
    for name, fn in _METHODS.items():
        setattr(T, name, fn)
    for name in _INPLACE:
        base = getattr(T, name, None)
        if base is not None and (name + "_") not in vars(T):
            setattr(T, name + "_", to.inplace_of(name + "_", _cast_back(base, name + "_")))
    for name, base in _SHAPE_INPLACE.items():
        setattr(T, name, to.shape_inplace_of(name, getattr(T, base)))
    T.is_floating_point = lambda a: a.dtype.kind == "f"
    T.is_complex = lambda a: a.dtype.kind == "c"
    T.is_contiguous = is_contiguous
    T.contiguous = contiguous
    T.stride = stride
    T.element_size = lambda a: a.dtype.itemsize
    T.itemsize = property(lambda a: a.dtype.itemsize)
    T.nbytes = property(lambda a: a.numel() * a.dtype.itemsize)
    T.data_ptr = data_ptr
    T.share_memory_ = share_memory_
    T.is_shared = is_shared
    T.pin_memory = pin_memory
    T.is_pinned = lambda a, device=None: False
    T.apply_ = apply_
    T.map_ = map_


def numel(input):
    return input.numel()


def is_floating_point(input):
    return input.dtype.kind == "f"


def is_complex(input):
    return input.dtype.kind == "c"
