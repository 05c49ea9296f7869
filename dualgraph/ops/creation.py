"""Creating tensors: dg.tensor, zeros/ones/full/empty/arange/linspace/eye, random ones, *_like.

The ops among them are records here: arange (its length may be a traced size), full_like,
uniform_like and normal_like (a traced graph makes them at run time with another tensor's shape).
Random numbers come from one generator per device, seeded by `dg.manual_seed(n)`.
"""
import numpy as _np

from .. import dtypes as _dt
from .._state import STATE
from ..backend import CPU, device as _device, device_of_array
from ..dispatch import apply
from ..errors import ShapeError, user_line
from ..graph.avals import Aval, Dim
from ..tensor import Tensor, _make, as_tensor as _as_tensor
from .dims import SymbolicSizeError
from .onnx_rules import out_dtype
from .registry import defop

_GENERATORS = {}
_SEED = [None]


def manual_seed(seed):
    """Seed every device's generator (numpy's PCG64 on the CPU, cupy's on GPUs)."""
    _SEED[0] = int(seed)
    _GENERATORS.clear()
    return _SEED[0]


seed = manual_seed


def generator(dev):
    gen = _GENERATORS.get(dev)
    if gen is None:
        if dev is CPU:
            gen = _np.random.default_rng(_SEED[0])
        else:
            cupy = dev.xp
            with cupy.cuda.Device(dev.index):
                gen = cupy.random.default_rng(_SEED[0])
        _GENERATORS[dev] = gen
    return gen


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of `data` (list, scalar, numpy/cupy array or tensor)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    t = _as_tensor(data, dtype=dtype)
    return t.to(device) if device is not None else t


def from_numpy(arr):
    """A CPU tensor sharing memory with `arr` (like torch.from_numpy)."""
    dt = _dt.resolve(arr.dtype)
    return _make(arr if arr.dtype == dt else arr.astype(dt), CPU)


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    # a size read from a traced tensor's shape under @dg.function (or dynamic ONNX axes) stays symbolic
    return tuple(s if isinstance(s, Dim) else int(s) for s in shape)


def _symbolic(values):
    return any(isinstance(v, Dim) for v in values)


def _traced_filled(value, shape, dt, dev, requires_grad):
    """A tensor of a size only known when the traced graph runs (`dg.zeros((b, t))` with `b, t` read
    from an input's shape): the mode that made the sizes builds it."""
    out = STATE.mode.filled(value, shape, dt, dev)
    if requires_grad:
        out.requires_grad_(True)
    return out


def _new(fill, shape, dtype, device, requires_grad, default=None, value=None, name=None):
    dev = _device(device)
    dt = _dt.resolve(dtype) or default or _dt.DEFAULT_FLOAT  # read per call: dg.set_default_dtype changes it
    shape = _shape(shape)
    if _symbolic(shape):
        if value is None:
            where = user_line()
            raise SymbolicSizeError(f"{name or 'this function'}: a shape {shape} with symbolic sizes is not "
                                    f"supported{f' at {where}' if where else ''}; make the tensor with dg.zeros/"
                                    f"ones/full/rand/randn of that shape and ops on it", next(
                                        d for d in shape if isinstance(d, Dim)), where)
        return _traced_filled(value, shape, dt, dev, requires_grad)
    if any(d < 0 for d in shape):
        raise ShapeError(f"cannot create a tensor with negative dimension: shape {shape}")
    try:
        arr = fill(dev.xp, shape, dt)
    except (ValueError, MemoryError) as e:
        raise ShapeError(f"cannot create a tensor of shape {shape} and dtype {dt} on {dev}: {e}") from None
    t = _make(arr, dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _new(lambda xp, s, d: xp.zeros(s, d), shape, dtype, device, requires_grad, value=0)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _new(lambda xp, s, d: xp.ones(s, d), shape, dtype, device, requires_grad, value=1)


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _new(lambda xp, s, d: xp.empty(s, d), shape, dtype, device, requires_grad, value=0)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = _dt.bool_ if isinstance(fill_value, bool) else (
            _dt.int64 if isinstance(fill_value, (int, Dim)) else _dt.DEFAULT_FLOAT)
    shape = (shape,) if isinstance(shape, (int, Dim)) else tuple(shape)
    if isinstance(fill_value, Dim):
        return _traced_filled(fill_value, _shape(shape), _dt.resolve(dtype), _device(device), requires_grad)
    return _new(lambda xp, s, d: xp.full(s, fill_value, d), shape, dtype, device, requires_grad,
                value=fill_value)


def _arange_forward(xp, count, start, step, dtype):
    return xp.arange(start, start + count * step, step, dtype=dtype)


# integer arange as an op: its length and start may be sizes read from a traced shape (dg.arange(0,
# x.shape[1])), which the compiled graph evaluates at each call and ONNX export lowers to Range
def _arange_onnx(ctx, node):
    a = ctx.attrs(node)
    start = ctx.emit("Reshape", [ctx.dim(a["start"]), ctx.i64([])])
    step = ctx.i64(int(a["step"]))
    count = ctx.emit("Reshape", [ctx.dim(a["count"]), ctx.i64([])])
    out = ctx.emit("Range", [start, ctx.emit("Add", [start, ctx.emit("Mul", [count, step])]), step])
    return ctx.cast(out, _np.int64, out_dtype(node))


ARANGE = defop("arange", _arange_forward, lambda count, start, step, dtype: Aval((count,), dtype), None,
               differentiable=False, onnx=_arange_onnx)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = _dt.int64 if all(isinstance(v, (int, Dim)) for v in (start, end, step)) else _dt.DEFAULT_FLOAT
    dev = _device(device)
    if all(isinstance(v, (int, Dim)) and not isinstance(v, bool) for v in (start, end, step)):
        out = apply(ARANGE, (), {"count": _arange_count(start, end, step), "start": start, "step": step,
                                 "dtype": _dt.resolve(dtype)})
        out = out if dev is CPU else out.to(dev)
        return out.requires_grad_(True) if requires_grad else out
    if _symbolic((start, end, step)):
        where = user_line()
        raise SymbolicSizeError(f"arange({start}, {end}, {step}): with a bound that is a symbolic size, start, end "
                                f"and step must be integers{f' at {where}' if where else ''}; make an integer "
                                f"arange and scale it (dg.arange(n) * 0.5)", None, where)
    return _new(lambda xp, s, d: xp.arange(start, end, step).astype(d), (), dtype, dev, requires_grad)


def _arange_count(start, end, step):
    """numpy's length of an integer arange, as a size expression when a bound is symbolic."""
    if isinstance(step, int) and step == 0:
        raise ShapeError("arange: step must not be zero")
    if not _symbolic((start, end, step)):
        return max(0, -(-(end - start) // step))
    if isinstance(step, int) and step < 0:   # counts down: (start - end) // -step elements, rounded up
        return _ceil_div(_minus(start, end), -step)
    return _ceil_div(_minus(end, start), step)


def _minus(a, b):
    return a if isinstance(b, int) and b == 0 else a - b


def _ceil_div(a, b):
    if isinstance(b, int) and b == 1:
        return a
    return (a + (b - 1)) // b


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _new(lambda xp, s, d: xp.linspace(start, end, int(steps)).astype(d), (), dtype, device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    if _symbolic((n, m)):   # a size read from a traced shape: ones where the two positions agree
        m = n if m is None else m
        out = (arange(n, device=device)[:, None] == arange(m, device=device)[None, :]).astype(
            _dt.resolve(dtype) or _dt.DEFAULT_FLOAT)
        return out.requires_grad_(True) if requires_grad else out
    return _new(lambda xp, s, d: xp.eye(n, m, dtype=d), (), dtype, device, requires_grad)


def _traced_random(like_fn, shape, dtype, dev, requires_grad):
    """rand/randn of a size read from a traced shape: drawn by the graph at run time (ONNX
    RandomUniformLike/RandomNormalLike) in a tensor of that shape."""
    dt = _dt.resolve(dtype) or _dt.DEFAULT_FLOAT
    out = like_fn(_traced_filled(0, shape, dt, dev, False), dtype=dt)
    return out.requires_grad_(True) if requires_grad else out


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform on [0, 1)."""
    dev = _device(device)
    if _symbolic(_shape(shape)):
        return _traced_random(rand_like, _shape(shape), dtype, dev, requires_grad)
    return _new(lambda xp, s, d: generator(dev).random(s, dtype=_np.float64 if d == _dt.float16 else d).astype(d),
                shape, dtype, dev, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal."""
    dev = _device(device)
    if _symbolic(_shape(shape)):
        return _traced_random(randn_like, _shape(shape), dtype, dev, requires_grad)
    return _new(lambda xp, s, d: generator(dev).standard_normal(
        s, dtype=_np.float64 if d == _dt.float16 else d).astype(d), shape, dtype, dev, requires_grad)


def randint(low, high=None, size=(), dtype=None, device=None):
    if high is None:
        low, high = 0, low
    dev = _device(device)
    size = (size,) if isinstance(size, int) else tuple(size)
    return _new(lambda xp, s, d: generator(dev).integers(low, high, size=s).astype(d), size, dtype, dev,
                False, default=_dt.int64, name="randint")


def normal(mean=0.0, std=1.0, size=(), dtype=None, device=None):
    return randn(*((size,) if isinstance(size, int) else size), dtype=dtype, device=device) * std + mean


def uniform(low=0.0, high=1.0, size=(), dtype=None, device=None):
    return rand(*((size,) if isinstance(size, int) else size), dtype=dtype, device=device) * (high - low) + low


def randperm(n, device=None):
    dev = _device(device)
    return _make(dev.xp.asarray(generator(dev).permutation(n).astype(_np.int64)), dev)


# ---- *_like: ops, so that a traced graph creates them at run time with the right shape ----------

FULL_LIKE = defop("full_like", lambda xp, x, value, dtype: xp.full(x.shape, value, dtype=dtype or x.dtype),
                  lambda x, value, dtype: Aval(x.shape, dtype or x.dtype), None, differentiable=False,
                  onnx=lambda ctx, node, x: ctx.emit("Expand", [ctx.const(ctx.attrs(node)["value"], out_dtype(node)),
                                                                ctx.shape_of(x)]))


def _uniform_like_forward(xp, x, dtype):
    gen = generator(device_of_array(x))
    return gen.random(x.shape, dtype=_np.float64 if dtype == _dt.float16 else dtype).astype(dtype)


def _normal_like_forward(xp, x, dtype):
    gen = generator(device_of_array(x))
    return gen.standard_normal(x.shape, dtype=_np.float64 if dtype == _dt.float16 else dtype).astype(dtype)


# ONNX draws from its own generator: the same distributions, not the same numbers as dualgraph
UNIFORM_LIKE = defop("uniform_like", _uniform_like_forward, lambda x, dtype: Aval(x.shape, dtype), None,
                     differentiable=False, pure=False, foldable=False,
                     onnx=lambda ctx, node, x: ctx.emit("RandomUniformLike", [x], dtype=ctx.onnx_dtype(out_dtype(node)),
                                                        low=0.0, high=1.0))
NORMAL_LIKE = defop("normal_like", _normal_like_forward, lambda x, dtype: Aval(x.shape, dtype), None,
                    differentiable=False, pure=False, foldable=False,
                    onnx=lambda ctx, node, x: ctx.emit("RandomNormalLike", [x], dtype=ctx.onnx_dtype(out_dtype(node)),
                                                       mean=0.0, scale=1.0))


def full_like(x, fill_value, dtype=None, device=None, requires_grad=False):
    dtype = _dt.resolve(dtype)
    out = apply(FULL_LIKE, (x.detach(),), {"value": fill_value, "dtype": dtype})
    if device is not None:
        out = out.to(device)
    return out.requires_grad_(True) if requires_grad else out


def zeros_like(x, dtype=None, device=None, requires_grad=False):
    return full_like(x, 0, dtype, device, requires_grad)


def ones_like(x, dtype=None, device=None, requires_grad=False):
    return full_like(x, 1, dtype, device, requires_grad)


def empty_like(x, dtype=None, device=None, requires_grad=False):
    return full_like(x, 0, dtype, device, requires_grad)


def rand_like(x, dtype=None):
    dt = _dt.resolve(dtype) or (x.dtype if x.dtype.kind == "f" else _dt.DEFAULT_FLOAT)
    return apply(UNIFORM_LIKE, (x.detach(),), {"dtype": dt})


def randn_like(x, dtype=None):
    dt = _dt.resolve(dtype) or (x.dtype if x.dtype.kind == "f" else _dt.DEFAULT_FLOAT)
    return apply(NORMAL_LIKE, (x.detach(),), {"dtype": dt})
