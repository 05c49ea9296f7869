"""MXNet's `nd` (NDArray) API over dualgraph's tensors: `from dualgraph import nd`.

An NDArray is dualgraph's Tensor itself (`nd.NDArray is dg.Tensor`), so arrays from `nd.*` work with
every dualgraph op, autograd (`attach_grad`, `autograd.record()`), `@dg.function` and ONNX export.
The functions here follow MXNet 1.x where its meaning differs from PyTorch's methods of the same name:
float32 by default (even from Python ints), `concat(dim=1)`, `reshape` shape codes 0/-1/-2/-3/-4,
`flatten` keeping the first axis, `dot` contracting the last axis of lhs with the first of rhs,
`argmax` and comparisons returning float32, full reductions returning shape (1,) (MXNet 1.x has no
0-d arrays). The Tensor methods keep PyTorch's meaning (`x.sum()` is 0-d); the MXNet-only methods
(`asscalar`, `as_in_context`, `context`, `copyto`, `wait_to_read`) are added to Tensor.
"""
import builtins as _b
import math as _math

import numpy as _np

from .. import dtypes as _dt
from ..autograd import is_training as _is_training
from ..backend import device as _device
from ..errors import InvalidValue as _InvalidValue, ShapeError as _ShapeError
from ..tensor import Tensor as _Tensor, as_tensor as _as_tensor
from ..ops import creation as _cr, elementwise as _ew, indexing as _ix, linalg as _la, reduction as _red
from ..ops import shape as _sh
from ..nn import functional as _F
from . import base, random  # noqa: F401
from .context import cpu, gpu  # noqa: F401
from .ndarray import waitall  # noqa: F401
from ..serialization import save as _save
from ..serialization import load as _load

NDArray = _Tensor
_FLOAT32 = _dt.float32


def _ctx(ctx):
    return _device(ctx)


def _dtype(dtype, default=_FLOAT32):
    return default if dtype is None else _dt.resolve(dtype)


def _shape_arg(shape):
    if isinstance(shape, (int, _np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


# ---- creation ---------------------------------------------------------------------------------

def array(source_array, ctx=None, dtype=None):
    """A new NDArray with a copy of `source_array`; float32 unless `dtype` is given or the source is
    an NDArray (whose dtype is kept), as MXNet's nd.array (numpy int64 arrays become float32 too)."""
    if isinstance(source_array, _Tensor):
        out = _ew.copy(source_array.detach()).astype(_dtype(dtype, source_array.dtype))
        return out.to(_ctx(ctx)) if ctx is not None else out
    arr = _np.array(source_array, dtype=_dt.resolve(_dtype(dtype)))
    return _cr.tensor(arr, device=_ctx(ctx))


def zeros(shape, ctx=None, dtype=None, **kwargs):
    return _cr.zeros(_shape_arg(shape), dtype=_dtype(dtype), device=_ctx(ctx))


def ones(shape, ctx=None, dtype=None, **kwargs):
    return _cr.ones(_shape_arg(shape), dtype=_dtype(dtype), device=_ctx(ctx))


def full(shape, val, ctx=None, dtype=None, out=None):
    return _out(_cr.full(_shape_arg(shape), val, dtype=_dtype(dtype), device=_ctx(ctx)), out)


def empty(shape, ctx=None, dtype=None):
    """Zeros: numpy gives no cheaper uninitialized memory that is also safe to print."""
    return zeros(shape, ctx, dtype)


def zeros_like(data, **kwargs):
    return _cr.zeros_like(data)


def ones_like(data, **kwargs):
    return _cr.ones_like(data)


def full_like(data, fill_value, **kwargs):
    return _cr.full_like(data, fill_value)


def arange(start, stop=None, step=1.0, repeat=1, infer_range=None, ctx=None, dtype=None):
    """[start, stop) by step, each value `repeat` times; float32 by default."""
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise _InvalidValue("nd.arange: step must not be 0")
    dt = _dtype(dtype)
    vals = _np.arange(start, stop, step, dtype=_np.float64).astype(dt)
    if repeat != 1:
        vals = _np.repeat(vals, int(repeat))
    return _cr.tensor(vals, device=_ctx(ctx))


def eye(N, M=0, k=0, ctx=None, dtype=None):
    return _cr.tensor(_np.eye(N, M or None, k, dtype=_dtype(dtype)), device=_ctx(ctx))


def linspace(start, stop, num, endpoint=True, ctx=None, dtype=None):
    return _cr.tensor(_np.linspace(start, stop, num, endpoint=endpoint).astype(_dtype(dtype)), device=_ctx(ctx))


def _out(result, out):
    """MXNet's `out=` argument: write the result into an existing array and return that array."""
    if out is None:
        return result
    out[:] = result
    return out


# ---- elementwise ------------------------------------------------------------------------------

exp, log, sqrt, rsqrt, square, abs = _ew.exp, _ew.log, _ew.sqrt, _ew.rsqrt, _ew.square, _ew.abs
sign, floor, ceil, round, trunc = _ew.sign, _ew.floor, _ew.ceil, _ew.round, _ew.trunc
sin, cos, tan, log1p, expm1, reciprocal = _ew.sin, _ew.cos, _ew.tan, _ew.log1p, _ew.expm1, _ew.reciprocal
relu, sigmoid, tanh, erf = _ew.relu, _ew.sigmoid, _ew.tanh, _ew.erf
negative = _ew.neg
fix = _ew.trunc


def log2(data):
    return _ew.log(data) * (1.0 / _math.log(2.0))


def log10(data):
    return _ew.log(data) * (1.0 / _math.log(10.0))


def softrelu(data):
    return _ew.softplus(data)


def cbrt(data):
    return _ew.sign(data) * _ew.pow(_ew.abs(data), 1.0 / 3.0)


def clip(data, a_min, a_max, out=None):
    return _out(_ew.clip(data, a_min, a_max), out)


def cast(data, dtype):
    return _ew.astype(data, dtype)


Cast = cast


def add(lhs, rhs):
    return _ew.add(lhs, rhs)


def subtract(lhs, rhs):
    return _ew.sub(lhs, rhs)


def multiply(lhs, rhs):
    return _ew.mul(lhs, rhs)


def divide(lhs, rhs):
    return _ew.div(lhs, rhs)


def modulo(lhs, rhs):
    return _ew.mod(lhs, rhs)


def power(base, exp):
    return _ew.pow(base, exp)


def maximum(lhs, rhs):
    return _ew.maximum(_as_tensor(lhs), rhs) if not isinstance(lhs, _Tensor) else _ew.maximum(lhs, rhs)


def minimum(lhs, rhs):
    return _ew.minimum(_as_tensor(lhs), rhs) if not isinstance(lhs, _Tensor) else _ew.minimum(lhs, rhs)


def _compare(op):
    """MXNet's comparisons return 1/0 in the inputs' dtype (float32 for float32 inputs), not booleans."""
    def compare(lhs, rhs):
        like = lhs if isinstance(lhs, _Tensor) else rhs
        return op(lhs, rhs).astype(like.dtype)
    compare.__name__ = op.__name__
    return compare


equal, not_equal = _compare(_ew.eq), _compare(_ew.ne)
greater, greater_equal = _compare(_ew.gt), _compare(_ew.ge)
lesser, lesser_equal = _compare(_ew.lt), _compare(_ew.le)


def _logical(op):
    def logical(lhs, rhs):
        like = lhs if isinstance(lhs, _Tensor) else rhs
        return op(_ew.ne(lhs, 0), _ew.ne(rhs, 0)).astype(like.dtype)
    logical.__name__ = op.__name__
    return logical


logical_and, logical_or, logical_xor = _logical(_ew.logical_and), _logical(_ew.logical_or), _logical(
    _ew.logical_xor)


def logical_not(data):
    return _ew.eq(data, 0).astype(data.dtype)


broadcast_add = broadcast_plus = elemwise_add = add
broadcast_sub = broadcast_minus = elemwise_sub = subtract
broadcast_mul = elemwise_mul = multiply
broadcast_div = elemwise_div = divide
broadcast_mod, broadcast_power = modulo, power
broadcast_maximum, broadcast_minimum = maximum, minimum
broadcast_equal, broadcast_not_equal = equal, not_equal
broadcast_greater, broadcast_greater_equal = greater, greater_equal
broadcast_lesser, broadcast_lesser_equal = lesser, lesser_equal
broadcast_logical_and, broadcast_logical_or, broadcast_logical_xor = logical_and, logical_or, logical_xor


def where(condition, x, y):
    """x where condition is nonzero, else y (condition may be float 1/0, as MXNet's comparisons give)."""
    cond = condition if condition.dtype == _dt.bool_ else _ew.ne(condition, 0)
    if cond.ndim == 1 and x.ndim > 1 and cond.shape[0] == x.shape[0]:
        cond = cond.reshape((cond.shape[0],) + (1,) * (x.ndim - 1))  # MXNet's row selection
    return _ew.where(cond, x, y)


# ---- reductions -------------------------------------------------------------------------------

def _axes(data, axis, exclude):
    if axis is None or (axis == () and not exclude):
        axes = None
    else:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        axes = tuple(a % data.ndim if data.ndim else a for a in axes)
        for a in axes:
            if not 0 <= a < _b.max(data.ndim, 1):
                raise _ShapeError(f"axis {axis} is out of range for an array of shape {tuple(data.shape)}")
    if exclude:
        keep = set(axes)
        axes = tuple(a for a in range(data.ndim) if a not in keep)
    return axes


def _one(out):
    """MXNet 1.x has no 0-d arrays: a full reduction has shape (1,)."""
    return out.reshape(1) if out.ndim == 0 else out


def _reducer(fn, name):
    def reduce(data, axis=None, keepdims=False, exclude=False, **kwargs):
        axes = _axes(data, axis, exclude)
        if axes == ():  # `exclude` left nothing to reduce
            return data
        out = fn(data, axis=axes, keepdims=keepdims) if axes is not None else fn(data)
        if keepdims and axes is None:
            out = out.reshape((1,) * data.ndim)
        return _one(out)
    reduce.__name__ = name
    reduce.__doc__ = f"MXNet's nd.{name}(data, axis=None, keepdims=False, exclude=False)."
    return reduce


sum = _reducer(_red.sum, "sum")
mean = _reducer(_red.mean, "mean")
prod = _reducer(_red.prod, "prod")
max = _reducer(_red.amax, "max")
min = _reducer(_red.amin, "min")


def _arg(fn, name):
    def arg(data, axis=None, keepdims=False):
        if axis is None:
            return _one(fn(data.reshape(-1), axis=0).astype(_FLOAT32))
        return fn(data, axis=axis, keepdims=keepdims).astype(_FLOAT32)
    arg.__name__ = name
    arg.__doc__ = f"MXNet's nd.{name}: the index as float32, as MXNet returns it."
    return arg


argmax = _arg(_red.argmax, "argmax")
argmin = _arg(_red.argmin, "argmin")


def argmax_channel(data):
    return argmax(data, axis=-1)


def norm(data, ord=2, axis=None, keepdims=False, out_dtype=None):
    """The L2 (ord=2) or L1 (ord=1) norm over `axis` (all elements by default)."""
    if ord not in (1, 2):
        raise _InvalidValue(f"nd.norm: ord must be 1 or 2, got {ord!r}")
    axes = _axes(data, axis, False)
    if ord == 1:
        val = _ew.abs(data)
    else:
        val = _ew.square(data)
    out = _red.sum(val, axis=axes, keepdims=keepdims) if axes is not None else _red.sum(val)
    if keepdims and axes is None:
        out = out.reshape((1,) * data.ndim)
    if ord == 2:
        out = _ew.sqrt(out)
    return _one(out)


# ---- shapes -----------------------------------------------------------------------------------

def _mx_shape(in_shape, shape, reverse=False):
    """MXNet's reshape codes: 0 copies the input dim, -1 infers one, -2 copies the rest, -3 merges two
    input dims, -4 splits one input dim into the next two values (one may be -1)."""
    src, spec = list(in_shape), list(shape)
    if reverse:
        src, spec = src[::-1], spec[::-1]
    out, i, j, infer = [], 0, 0, None
    while j < len(spec):
        s = spec[j]
        if s == 0:
            out.append(src[i]); i += 1
        elif s == -1:
            infer = len(out); out.append(-1); i += 1
        elif s == -2:
            out.extend(src[i:]); i = len(src)
        elif s == -3:
            out.append(src[i] * src[i + 1]); i += 2
        elif s == -4:
            if reverse or j + 2 >= len(spec):
                raise _ShapeError(f"nd.reshape: -4 must be followed by two values (and is not supported with "
                                 f"reverse=True), got shape {tuple(shape)}")
            a, c = spec[j + 1], spec[j + 2]
            d = src[i]
            if a == -1:
                a = d // c
            if c == -1:
                c = d // a
            if a * c != d:
                raise _ShapeError(f"nd.reshape: -4 splits dim {d} of input shape {tuple(in_shape)} into {a} x {c}")
            out.extend([a, c]); i += 1; j += 2
        elif s > 0:
            out.append(s); i += 1
        else:
            raise _ShapeError(f"nd.reshape: invalid shape code {s} in {tuple(shape)}")
        j += 1
    if reverse:
        out = out[::-1]
        if infer is not None:
            infer = len(out) - 1 - infer
    total = int(_np.prod(in_shape)) if in_shape else 1
    if infer is not None:
        known = int(_np.prod([d for k, d in enumerate(out) if k != infer])) if len(out) > 1 else 1
        if known == 0 or total % known:
            raise _ShapeError(f"nd.reshape: cannot reshape array of shape {tuple(in_shape)} into {tuple(shape)}")
        out[infer] = total // known
    if int(_np.prod(out)) != total:
        raise _ShapeError(f"nd.reshape: cannot reshape array of shape {tuple(in_shape)} ({total} elements) "
                         f"into {tuple(shape)} -> {tuple(out)}")
    return tuple(out)


def reshape(data, shape=None, reverse=False, **kwargs):
    """MXNet's reshape with its special codes (see `_mx_shape`)."""
    if shape is None:
        shape = kwargs.get("newshape", kwargs.get("target_shape"))
    shape = _shape_arg(shape) if not isinstance(shape, (tuple, list)) else tuple(shape)
    return _sh.reshape(data, _mx_shape(tuple(data.shape), shape, reverse))


def reshape_like(lhs, rhs):
    return _sh.reshape(lhs, tuple(rhs.shape))


def flatten(data):
    """(d0, d1*...*dk): MXNet's Flatten keeps the first axis."""
    if data.ndim == 0:
        return data.reshape(1, 1)
    return _sh.reshape(data, (data.shape[0], -1)) if data.ndim != 2 else data


Flatten = flatten


def transpose(data, axes=None):
    """Permute axes; no `axes` reverses them."""
    if axes is None or axes == ():
        axes = tuple(reversed(range(data.ndim)))
    return _sh.permute(data, tuple(axes))


def swapaxes(data, dim1=0, dim2=0):
    return _sh.swapaxes(data, dim1, dim2)


SwapAxis = swapaxes


def expand_dims(data, axis):
    return _sh.unsqueeze(data, axis)


def squeeze(data, axis=None):
    return _sh.squeeze(data, axis)


def concat(*data, dim=1, num_args=None):
    """Join along `dim` (MXNet's default is 1)."""
    if len(data) == 1 and isinstance(data[0], (list, tuple)):
        data = tuple(data[0])
    return _sh.concat(list(data), axis=dim)


Concat = concat


def stack(*data, axis=0, num_args=None):
    if len(data) == 1 and isinstance(data[0], (list, tuple)):
        data = tuple(data[0])
    return _sh.stack(list(data), axis=axis)


def split(data, num_outputs, axis=1, squeeze_axis=False):
    """`num_outputs` equal parts along `axis` (MXNet's default 1); a list, or the array itself for one."""
    n = data.shape[axis]
    if num_outputs <= 0 or n % num_outputs:
        raise _ShapeError(f"nd.split: axis {axis} of shape {tuple(data.shape)} does not split into "
                         f"{num_outputs} equal parts")
    parts = list(_sh.split(data, n // num_outputs, axis=axis))
    if squeeze_axis:
        parts = [_sh.squeeze(p, axis) for p in parts]
    return parts[0] if num_outputs == 1 else parts


SliceChannel = split


def broadcast_to(data, shape):
    """0 in `shape` keeps the input's size there."""
    shape = tuple(data.shape[i] if s == 0 else s for i, s in enumerate(shape))
    return _sh.broadcast_to(data, shape)


def broadcast_axis(data, axis=(), size=()):
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    sizes = (size,) if isinstance(size, int) else tuple(size)
    shape = list(data.shape)
    for a, s in zip(axes, sizes):
        if shape[a] != 1:
            raise _ShapeError(f"nd.broadcast_axis: axis {a} of shape {tuple(data.shape)} must have size 1")
        shape[a] = s
    return _sh.broadcast_to(data, tuple(shape))


broadcast_axes = broadcast_axis


def broadcast_like(lhs, rhs):
    return _sh.broadcast_to(lhs, tuple(rhs.shape))


def tile(data, reps):
    return _sh.tile(data, tuple(reps) if not isinstance(reps, int) else (reps,))


def repeat(data, repeats, axis=None):
    if axis is None:
        data, axis = data.reshape(-1), 0
    idx = _np.repeat(_np.arange(data.shape[axis]), repeats)
    return _ix.index_select(data, axis, _cr.tensor(idx, device=data.device))


def flip(data, axis):
    return _sh.flip(data, axis)


reverse = flip


def slice_axis(data, axis, begin, end):
    n = data.shape[axis]
    begin = begin + n if begin < 0 else begin
    end = n if end is None else (end + n if end < 0 else end)
    return _sh.narrow(data, axis, begin, end - begin)


def slice(data, begin, end, step=None):
    step = step or (None,) * len(begin)
    index = tuple(_b.slice(b, e, s) for b, e, s in zip(begin, end, step))
    return data[index]


def pad(data, mode="constant", pad_width=(), constant_value=0.0):
    """MXNet's pad_width lists (before, after) for every axis, the first two pairs zero."""
    pw = list(pad_width)
    torch_pad = []
    for a in reversed(range(data.ndim)):
        torch_pad += [pw[2 * a], pw[2 * a + 1]]
    return _sh.pad(data, tuple(torch_pad), mode=mode, value=constant_value)


# ---- linear algebra ---------------------------------------------------------------------------

def _rev(x):
    return _sh.permute(x, tuple(reversed(range(x.ndim)))) if x.ndim > 1 else x


def dot(lhs, rhs, transpose_a=False, transpose_b=False, forward_stype=None):
    """MXNet's dot: sums over the last axis of lhs and the first axis of rhs (for N-d inputs the result
    has shape lhs.shape[:-1] + rhs.shape[1:]); transpose_a/b reverse an input's axes first."""
    a = _rev(lhs) if transpose_a else lhs
    b = _rev(rhs) if transpose_b else rhs
    if a.ndim == 1 and b.ndim == 1:
        if a.shape[0] != b.shape[0]:
            raise _ShapeError(f"nd.dot: shapes {tuple(a.shape)} and {tuple(b.shape)} do not match")
        return _one(_red.sum(a * b))
    k = a.shape[-1]
    if b.shape[0] != k:
        raise _ShapeError(f"nd.dot: last axis of lhs {tuple(a.shape)} (after transpose_a={transpose_a}) must "
                         f"match the first axis of rhs {tuple(b.shape)} (after transpose_b={transpose_b})")
    if a.ndim <= 2 and b.ndim <= 2:
        return _la.matmul(a, b)
    out = _la.matmul(a.reshape(-1, k), b.reshape(k, -1))
    return out.reshape(tuple(a.shape[:-1]) + tuple(b.shape[1:]))


def batch_dot(lhs, rhs, transpose_a=False, transpose_b=False, forward_stype=None):
    """Batched matrix product of (B, n, k) and (B, k, m) arrays."""
    if lhs.ndim != 3 or rhs.ndim != 3:
        raise _ShapeError(f"nd.batch_dot: needs 3-d inputs, got shapes {tuple(lhs.shape)} and {tuple(rhs.shape)}")
    a = _sh.swapaxes(lhs, 1, 2) if transpose_a else lhs
    b = _sh.swapaxes(rhs, 1, 2) if transpose_b else rhs
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise _ShapeError(f"nd.batch_dot: shapes {tuple(a.shape)} and {tuple(b.shape)} do not multiply")
    return _la.matmul(a, b)


def linalg_gemm2(A, B, transpose_a=False, transpose_b=False, alpha=1.0):
    a = _sh.swapaxes(A, -1, -2) if transpose_a else A
    b = _sh.swapaxes(B, -1, -2) if transpose_b else B
    return _la.matmul(a, b) * alpha


# ---- neural-network functions -----------------------------------------------------------------

def softmax(data, axis=-1, temperature=None, **kwargs):
    return _F.softmax(data / temperature if temperature else data, axis=axis)


def log_softmax(data, axis=-1, temperature=None, **kwargs):
    return _F.log_softmax(data / temperature if temperature else data, axis=axis)


def one_hot(indices, depth, on_value=1.0, off_value=0.0, dtype=None):
    """float32 rows with on_value at each index; an index outside [0, depth) gives a row of off_value,
    as in MXNet. Indices may be float (MXNet's labels usually are)."""
    idx = _ew.astype(indices, _dt.int64)
    hit = _ew.eq(_sh.unsqueeze(idx, -1), _cr.arange(depth, device=indices.device))
    dt = _dtype(dtype)
    return _ew.where(hit, _cr.full((), on_value, dtype=dt, device=indices.device),
                     _cr.full((), off_value, dtype=dt, device=indices.device))


def pick(data, index, axis=-1, keepdims=False, mode="clip"):
    """data[..., index[...], ...] along `axis`: one element per position of `index`."""
    axis = axis % data.ndim
    n = data.shape[axis]
    idx = _ew.astype(index, _dt.int64)
    idx = _ew.clip(idx, 0, n - 1) if mode == "clip" else _ew.mod(idx, n)
    idx = _sh.unsqueeze(idx, axis)
    out = _ix.take_along_axis(data, idx, axis)
    return out if keepdims else _sh.squeeze(out, axis)


def take(a, indices, axis=0, mode="clip"):
    n = a.shape[axis]
    idx = _ew.astype(indices, _dt.int64)
    idx = _ew.clip(idx, 0, n - 1) if mode == "clip" else _ew.mod(idx, n)
    flat = idx.reshape(-1)
    out = _ix.index_select(a, axis, flat)
    shape = tuple(a.shape[:axis]) + tuple(indices.shape) + tuple(a.shape[axis + 1:])
    return out.reshape(shape)


def Embedding(data, weight, input_dim=None, output_dim=None, **kwargs):
    return take(weight, data, axis=0)


def Activation(data, act_type):
    """act_type: 'relu', 'sigmoid', 'tanh', 'softrelu' or 'softsign'."""
    fns = {"relu": _ew.relu, "sigmoid": _ew.sigmoid, "tanh": _ew.tanh, "softrelu": _ew.softplus,
           "softsign": lambda x: x / (_ew.abs(x) + 1)}
    if act_type not in fns:
        raise _InvalidValue(f"Activation: act_type must be one of {sorted(fns)}, got {act_type!r}")
    return fns[act_type](data)


def LeakyReLU(data, act_type="leaky", slope=0.25, **kwargs):
    if act_type == "leaky":
        return _ew.leaky_relu(data, slope)
    if act_type == "elu":
        return _ew.elu(data, slope)
    raise _InvalidValue(f"LeakyReLU: act_type {act_type!r} is not supported; use 'leaky' or 'elu'")


def FullyConnected(data, weight, bias=None, num_hidden=None, no_bias=False, flatten=True):
    """data @ weight.T + bias, with weight of shape (num_hidden, in_units); `flatten` folds all axes after
    the first into one, otherwise the product applies to the last axis."""
    x = globals()["flatten"](data) if flatten else data
    out = _F.linear(x, weight, None if no_bias else bias)
    return out


def Dropout(data, p=0.5, mode="training", axes=(), **kwargs):
    """Drops only while training (inside autograd.record() or train_mode()), as MXNet does."""
    if mode == "always" or _is_training():
        return _F.dropout(data, p, training=True)
    return data


def smooth_l1(data, scalar=1.0):
    s2 = scalar * scalar
    absd = _ew.abs(data)
    return _ew.where(absd < 1.0 / s2, 0.5 * s2 * data * data, absd - 0.5 / s2)


random_normal, random_uniform = random.normal, random.uniform


def stop_gradient(data):
    return data.detach()


BlockGrad = stop_gradient


# ---- files ------------------------------------------------------------------------------------

def save(fname, data):
    """An NDArray, a list of NDArrays or a dict of str -> NDArray, through dg.save (no pickle)."""
    if isinstance(data, _Tensor):
        data = [data]
    if not isinstance(data, (list, tuple, dict)):
        raise _InvalidValue(f"nd.save: data must be an NDArray, a list or a dict of NDArrays, got {type(data).__name__}")
    _save({"mxnet_nd": dict(data) if isinstance(data, dict) else list(data)}, fname)


def load(fname, ctx=None):
    """What nd.save wrote: a list or a dict of NDArrays."""
    obj = _load(fname)
    if not isinstance(obj, dict) or "mxnet_nd" not in obj:
        raise _InvalidValue(f"nd.load: {fname} was not written by nd.save")
    data = obj["mxnet_nd"]
    if ctx is not None:
        data = {k: v.to(_ctx(ctx)) for k, v in data.items()} if isinstance(data, dict) else [
            v.to(_ctx(ctx)) for v in data]
    return data
