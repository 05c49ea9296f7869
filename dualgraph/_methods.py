"""Tensor operators and the methods that apply ops, bound to the op functions (one definition each).

They are bound here, above the ops, because the ops are built on Tensor.
"""
from ._state import STATE
from .backend import device as _parse_device
from .dispatch import binary_method
from .ops import conv, elementwise as ew, gather as ga, indexing as ix, linalg, reduction as red, shape as sh
from .ops import selection as sel
from .ops.elementwise import ADD, DIV, MUL, SUB
from .tensor import Tensor, _plain_outside_record, as_tensor
from .ops import creation as cr
from .errors import ShapeError
from .nn import functional as F


def _bools(a, b):
    return all(isinstance(x, bool) or getattr(getattr(x, "dtype", None), "kind", "") == "b" for x in (a, b))


def _to(t, device=None, dtype=None, non_blocking=False, copy=False):
    """Move to a device and/or cast; `t.to('gpu')`, `t.to('cuda')`, `t.to(dg.float64)`, `t.to('cpu', 'float16')`,
    `t.to(other)` (other's device and dtype). `non_blocking` is accepted for PyTorch's signature (cupy copies
    between host and GPU synchronously); `copy=True` returns a new tensor even when nothing changes."""
    if isinstance(device, Tensor):
        device, dtype = device._device, device.dtype
    if device is not None and not isinstance(device, str) and not hasattr(device, "xp"):
        device, dtype = None, device  # t.to(dg.float64)
    if isinstance(device, str) and device not in ("cpu",) and not device.startswith(("gpu", "cuda")):
        device, dtype = None, device  # t.to("float64")
    out = t
    if dtype is not None:
        out = out.astype(dtype)
    if device is not None:
        dev = _parse_device(device)
        if dev is not out._device:
            out = sh.to_device_op(out, dev)
    if copy and out is t:
        out = t.clone()
    return out


@_plain_outside_record
def _setitem(t, index, value):
    ix.setitem_(t, index, value)


@_plain_outside_record
def _copy_(t, src):
    src = as_tensor(src, like=t)
    t._check_inplace("copy_")
    return STATE.mode.inplace(t, lambda s: sh.broadcast_to(src, t.shape).astype(t.dtype), src, "copy_")


def _new_like(fill):
    """t.new_zeros(size) / new_ones / new_empty: the dtype and device of t unless given (PyTorch)."""
    def method(t, *size, dtype=None, device=None, requires_grad=False):
        return fill(*size, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)
    method.__name__ = f"new_{fill.__name__}"
    return method


def _new_full(t, size, fill_value, *, dtype=None, device=None, requires_grad=False):
    return cr.full(size, fill_value, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def _new_tensor(t, data, dtype=None, device=None, requires_grad=False):
    """A copy of `data` (a tensor's values are copied, its history cut) in t's dtype and device unless given."""
    dtype, device = dtype or t.dtype, device or t.device
    if isinstance(data, Tensor):
        out = _to(data.detach(), device, dtype).clone().detach()
    else:
        out = cr.tensor(data, dtype=dtype, device=device)
    return out.requires_grad_(True) if requires_grad else out


def _only_matrices(what, t):
    raise ShapeError(f"tensor.{what} is only supported on matrices (2-D tensors), got shape {tuple(t.shape)}")


@_plain_outside_record
def _clamp_(t, min=None, max=None):
    t._check_inplace("clamp_")
    other = min if isinstance(min, Tensor) else max
    return STATE.mode.inplace(t, lambda s: ew.clip(s, min, max).astype(t.dtype), other, "clamp_", keeps_old=True)


def _bind():
    T = Tensor
    T.__add__, T.__radd__ = binary_method(ADD), binary_method(ADD, reflected=True)
    T.__sub__, T.__rsub__ = binary_method(SUB), binary_method(SUB, reflected=True)
    T.__mul__, T.__rmul__ = binary_method(MUL), binary_method(MUL, reflected=True)
    T.__truediv__, T.__rtruediv__ = binary_method(DIV), binary_method(DIV, reflected=True)
    T.__floordiv__ = lambda a, b: ew.floordiv(a, b)
    T.__rfloordiv__ = lambda a, b: ew.floordiv(b, a)
    T.__mod__ = lambda a, b: ew.mod(a, b)
    T.__rmod__ = lambda a, b: ew.mod(b, a)
    T.__pow__ = lambda a, b: ew.pow(a, b)
    T.__rpow__ = lambda a, b: ew.pow(b, a)
    T.__matmul__ = lambda a, b: linalg.matmul(a, b)
    T.__rmatmul__ = lambda a, b: linalg.matmul(b, a)
    T.__neg__ = ew.neg
    T.__pos__ = lambda a: a
    T.__abs__ = ew.abs
    T.__eq__ = ew.eq
    T.__ne__ = ew.ne
    T.__lt__ = ew.lt
    T.__le__ = ew.le
    T.__gt__ = ew.gt
    T.__ge__ = ew.ge
    # bitwise as in PyTorch (bool & int is the int64 bitwise and); two bools take the logical op
    T.__and__ = lambda a, b: ew.logical_and(a, b) if _bools(a, b) else ew.bitwise_and(a, b)
    T.__or__ = lambda a, b: ew.logical_or(a, b) if _bools(a, b) else ew.bitwise_or(a, b)
    T.__xor__ = lambda a, b: ew.logical_xor(a, b) if _bools(a, b) else ew.bitwise_xor(a, b)
    T.__rand__, T.__ror__, T.__rxor__ = T.__and__, T.__or__, T.__xor__
    T.__invert__ = lambda a: ew.logical_not(a) if a.dtype.kind == "b" else ew.invert(a)
    T.__getitem__ = ix.getitem
    T.__setitem__ = _setitem
    T.to = _to
    T.copy_ = _copy_
    T.clone = ew.copy
    T._sum_to = red.sum_to  # the autograd engine (below the ops) sums broadcast gradients back with it

    methods = dict(
        add=ew.add, sub=ew.sub, mul=ew.mul, div=ew.div, pow=ew.pow, neg=ew.neg, abs=ew.abs, sign=ew.sign,
        exp=ew.exp, log=ew.log, log1p=ew.log1p, expm1=ew.expm1, sqrt=ew.sqrt, rsqrt=ew.rsqrt, sin=ew.sin,
        cos=ew.cos, tan=ew.tan, tanh=ew.tanh, sigmoid=ew.sigmoid, relu=ew.relu, erf=ew.erf, floor=ew.floor,
        ceil=ew.ceil, round=ew.round, trunc=ew.trunc, clip=ew.clip, clamp=ew.clip, maximum=ew.maximum,
        minimum=ew.minimum, square=ew.square, reciprocal=ew.reciprocal, astype=ew.astype,
        eq=ew.eq, ne=ew.ne, lt=ew.lt, le=ew.le, gt=ew.gt, ge=ew.ge, logical_and=ew.logical_and,
        logical_or=ew.logical_or, logical_not=ew.logical_not, logical_xor=ew.logical_xor,
        isnan=ew.isnan, isfinite=ew.isfinite,
        sum=red.sum, mean=red.mean, prod=red.prod, max=red.max, min=red.min, amax=red.amax, amin=red.amin,
        argmax=red.argmax, argmin=red.argmin, var=red.var, std=red.std, logsumexp=red.logsumexp,
        cumsum=red.cumsum, all=red.all, any=red.any,
        matmul=linalg.matmul, mm=linalg.mm, dot=linalg.dot,
        reshape=sh.reshape, view=sh.view, flatten=sh.flatten, permute=sh.permute, transpose=sh.transpose,
        swapaxes=sh.swapaxes, moveaxis=sh.moveaxis, broadcast_to=sh.broadcast_to, expand=sh.expand,
        expand_as=sh.expand_as, squeeze=sh.squeeze, unsqueeze=sh.unsqueeze, expand_dims=sh.expand_dims,
        split=sh.split, chunk=sh.chunk, flip=sh.flip, repeat=sh.repeat, tile=sh.tile, narrow=sh.narrow,
        gather=ix.gather, scatter_add=ga.scatter_add, index_select=ix.index_select,
        take_along_axis=ix.take_along_axis, nonzero=ga.nonzero, index_put=ix.index_put,
        softmax=F.softmax, log_softmax=F.log_softmax,
    )
    for name, fn in methods.items():
        setattr(T, name, fn)
    for name, fn in sel.METHODS.items():  # over reduction's values-only max/min: (values, indices) with a dim
        setattr(T, name, fn)
    T.T = property(lambda a: sh.matrix_transpose(a) if a.ndim == 2 else sh.permute(a, tuple(reversed(range(a.ndim)))))
    T.mT = property(lambda a: sh.matrix_transpose(a) if a.ndim == 2 else sh.transpose(a, -2, -1))
    for name, fn in dict(  # PyTorch's shape, creation, in-place and linalg methods
            view_as=sh.view_as, reshape_as=sh.reshape_as, t=sh.t, unflatten=sh.unflatten, unbind=sh.unbind,
            tensor_split=sh.tensor_split, hsplit=sh.hsplit, vsplit=sh.vsplit, dsplit=sh.dsplit,
            new_zeros=_new_like(cr.zeros), new_ones=_new_like(cr.ones), new_empty=_new_like(cr.empty),
            new_full=_new_full, new_tensor=_new_tensor, type_as=lambda a, other: ew.astype(a, other.dtype),
            clamp_=_clamp_, clip_=_clamp_, nelement=T.numel, ndimension=T.dim,
            norm=linalg.tensor_norm, cross=linalg.torch_cross, det=linalg.det, inverse=linalg.inv,
            bmm=linalg.bmm, mv=linalg.mv, outer=linalg.outer, ger=linalg.ger, inner=linalg.inner, vdot=linalg.vdot,
            addmm=linalg.addmm, baddbmm=linalg.baddbmm, diagonal=linalg.diagonal, diag=linalg.diag,
            diag_embed=linalg.diag_embed, trace=linalg.trace, logdet=linalg.logdet, pinverse=linalg.pinverse,
            kron=linalg.kron, cholesky_solve=linalg.cholesky_solve,
            uniform_=cr.uniform_, normal_=cr.normal_, bernoulli_=cr.bernoulli_, bernoulli=cr.bernoulli,
            exponential_=cr.exponential_, cauchy_=cr.cauchy_, log_normal_=cr.log_normal_,
            geometric_=cr.geometric_, random_=cr.random_).items():
        setattr(T, name, fn)
    T.mH = property(lambda a: a.mT)  # real dtypes only: the conjugate transpose is the transpose
    T.H = property(lambda a: sh.t(a) if a.ndim == 2 else _only_matrices("H", a))
    T.float = lambda a: ew.astype(a, "float32")
    T.double = lambda a: ew.astype(a, "float64")
    T.half = lambda a: ew.astype(a, "float16")
    T.long = lambda a: ew.astype(a, "int64")
    T.int = lambda a: ew.astype(a, "int32")
    T.bool = lambda a: ew.astype(a, "bool")
    from ._legacy_types import tensor_type
    T.type = tensor_type
    T.contiguous = lambda a: a
    _ = conv


_bind()


def _bind_mxnet():
    """MXNet's NDArray methods that PyTorch's Tensor lacks (asscalar, as_in_context, context, ...)."""
    from .nd import ndarray as nd_methods
    for name, fn in nd_methods.BIND.items():
        setattr(Tensor, name, fn)
    for name, fn in nd_methods.PROPERTIES.items():
        setattr(Tensor, name, property(fn))
    if not hasattr(Tensor, "copy"):
        Tensor.copy = ew.copy


_bind_mxnet()


def _bind_more():
    """The math, statistics and utility methods, and the in-place forms of the out-of-place ones."""
    from . import _more_methods
    _more_methods.bind()


_bind_more()
