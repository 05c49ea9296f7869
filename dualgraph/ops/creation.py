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
from ..errors import DeviceError, DTypeError, InvalidValue, ShapeError, user_line
from ..graph.avals import Aval, Dim
from ..tensor import Tensor, _make, as_tensor as _as_tensor
from .dims import SymbolicSizeError
from .onnx_rules import out_dtype
from .registry import defop

_GENERATORS = {}
_STARTED_FROM = {}  # device -> the seed its global generator was made from
_SEED = [None]
_SEED_RANGE = 2 ** 64


def _checked_seed(seed, where):
    if isinstance(seed, bool) or not isinstance(seed, (int, _np.integer)):
        raise TypeError(f"{where}: a seed is an int, got {type(seed).__name__}")
    seed = int(seed)
    if not -2 ** 63 <= seed < _SEED_RANGE:
        raise InvalidValue(f"{where}: seed {seed} is outside [-2**63, 2**64)")
    return seed % _SEED_RANGE  # torch folds negative seeds the same way


def _fresh_seed():
    return int(_np.random.SeedSequence().entropy % 2 ** 63)


def manual_seed(seed):
    """Seed every device's global generator (numpy's PCG64 on the CPU, cupy's on GPUs); returns
    dg.default_generator, as torch.manual_seed does."""
    _SEED[0] = _checked_seed(seed, "manual_seed")
    _GENERATORS.clear()
    return default_generator


def seed(seed=None):
    """torch.seed(): seed every device's generator from the operating system's entropy and return the
    seed. Given a seed, it is manual_seed's (MXNet's mx.random.seed(n) calls this spelling)."""
    if seed is None:
        seed = _fresh_seed()
    manual_seed(seed)
    return _SEED[0]


def initial_seed():
    """The seed the global CPU generator started from (drawn from entropy when never seeded)."""
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(new_state):
    default_generator.set_state(new_state)


def _device_rng(dev, seed):
    if dev is CPU:
        return _np.random.default_rng(seed)
    cupy = dev.xp
    with cupy.cuda.Device(dev.index):
        return cupy.random.default_rng(seed)


def generator(dev):
    """The global generator of device `dev`, the one dg.manual_seed seeds."""
    gen = _GENERATORS.get(dev)
    if gen is None:
        if _SEED[0] is None:
            _SEED[0] = _fresh_seed()
        gen = _GENERATORS[dev] = _device_rng(dev, _SEED[0])
        _STARTED_FROM[dev] = _SEED[0]
    return gen


# the numpy Generator methods a dg.Generator answers, so code that draws from a numpy Generator
# (samplers, random_split, multinomial) takes either
_DRAWS = frozenset({"random", "standard_normal", "normal", "uniform", "integers", "permutation", "choice",
                    "shuffle", "binomial", "poisson", "exponential", "standard_cauchy", "lognormal", "geometric"})
_STATE_BYTES = 37  # PCG64: 128-bit state, 128-bit increment, has_uint32 flag, 32-bit buffered value


class Generator:
    """A random stream of its own, as torch.Generator: `g = dg.Generator().manual_seed(42)`, then
    `generator=g` to rand/randn/randint/randperm/normal/bernoulli/multinomial, the Tensor's in-place
    random fills, the samplers, random_split and DataLoader. The numbers come from numpy's PCG64
    (cupy's generator on a GPU), so a seed gives other numbers than torch's does. A traced graph
    cannot carry a Python generator object: inside @dg.function, draw from the global generator."""

    DEFAULT_SEED = 67280421310721  # torch.Generator's initial seed

    def __init__(self, device="cpu"):
        self.device = _device(device)
        self.manual_seed(self.DEFAULT_SEED)

    def manual_seed(self, seed):
        self._seed = _checked_seed(seed, "Generator.manual_seed")
        self._stream = _device_rng(self.device, self._seed)
        return self

    def seed(self):
        self.manual_seed(_fresh_seed())
        return self._seed

    def initial_seed(self):
        return self._seed

    def _numpy_rng(self, where):
        if self.device is not CPU:
            raise DeviceError(f"{where}: the state of a generator on {self.device} (cupy's) cannot be read or "
                              f"written; only CPU generators have get_state/set_state")
        return self._rng

    def get_state(self):
        """The stream's position as a uint8 tensor (PCG64's state), for set_state to return to."""
        st = self._numpy_rng("Generator.get_state").bit_generator.state
        raw = (st["state"]["state"].to_bytes(16, "little") + st["state"]["inc"].to_bytes(16, "little")
               + bytes([st["has_uint32"]]) + int(st["uinteger"]).to_bytes(4, "little"))
        return _make(_np.frombuffer(raw, dtype=_np.uint8).copy(), CPU)

    def set_state(self, new_state):
        rng = self._numpy_rng("Generator.set_state")
        raw = _np.asarray(new_state.numpy() if isinstance(new_state, Tensor) else new_state)
        if raw.dtype != _np.uint8 or raw.shape != (_STATE_BYTES,):
            raise InvalidValue(f"Generator.set_state: expected a uint8 tensor of {_STATE_BYTES} bytes from "
                               f"get_state(), got {raw.dtype} of shape {raw.shape}")
        b = raw.tobytes()
        if b[32] not in (0, 1):
            raise InvalidValue("Generator.set_state: the state's has_uint32 byte must be 0 or 1")
        rng.bit_generator.state = {"bit_generator": "PCG64",
                                   "state": {"state": int.from_bytes(b[:16], "little"),
                                             "inc": int.from_bytes(b[16:32], "little") | 1},
                                   "has_uint32": b[32], "uinteger": int.from_bytes(b[33:], "little")}
        return self

    @property
    def _rng(self):
        return self._stream

    def __getattr__(self, name):
        if name in _DRAWS:
            return getattr(self._rng, name)
        raise AttributeError(f"'Generator' object has no attribute {name!r}")

    def __repr__(self):
        return f"<dualgraph.Generator device={self.device} initial_seed={self.initial_seed()}>"


class _DefaultGenerator(Generator):
    """dg.default_generator: the global CPU stream (dg.manual_seed's), seen as a Generator."""

    def __init__(self):
        self.device = CPU

    def manual_seed(self, seed):
        seed = _checked_seed(seed, "default_generator.manual_seed")
        _GENERATORS[CPU] = _np.random.default_rng(seed)
        _STARTED_FROM[CPU] = seed
        return self

    def initial_seed(self):
        generator(CPU)
        return _STARTED_FROM[CPU]

    @property
    def _rng(self):
        return generator(CPU)


default_generator = _DefaultGenerator()


def _rng_for(gen, dev, where):
    """What draws a tensor on `dev`: the global generator, a dg.Generator or a numpy Generator."""
    if gen is None:
        return generator(dev)
    if STATE.mode.symbolic:
        raise InvalidValue(f"{where}(generator=...) inside a traced function: a graph cannot carry a Python "
                           f"generator object; leave generator unset (the graph then draws from the global "
                           f"generator each run) or draw outside the function")
    if isinstance(gen, Generator):
        if gen.device is not dev:
            raise DeviceError(f"{where}: a generator on {gen.device} cannot draw a tensor on {dev}")
        return gen._rng
    if isinstance(gen, _np.random.Generator) and dev is CPU:
        return gen
    raise TypeError(f"{where}: generator must be a dg.Generator (or a numpy Generator for CPU tensors), got "
                    f"{type(gen).__name__}")


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
    """rand/randn under a traced function: drawn by the graph at each run (ONNX RandomUniformLike/
    RandomNormalLike) in a tensor of that shape, never frozen into the graph as a constant."""
    dt = _dt.resolve(dtype) or _dt.DEFAULT_FLOAT
    out = like_fn(_traced_filled(0, shape, dt, dev, False), dtype=dt)
    return out.requires_grad_(True) if requires_grad else out


def _traced(shape):
    return STATE.mode.symbolic or _symbolic(shape)


def _float_draw(method):
    """A numpy/cupy draw in float32 or float64 (float16 is drawn in float64 and rounded)."""
    def fill(rng, s, d):
        return getattr(rng, method)(s, dtype=_np.float64 if d == _dt.float16 else d).astype(d)
    return fill


def rand(*shape, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform on [0, 1)."""
    dev = _device(device)
    if _traced(_shape(shape)) and generator is None:
        return _traced_random(rand_like, _shape(shape), dtype, dev, requires_grad)
    rng = _rng_for(generator, dev, "rand")
    draw = _float_draw("random")
    return _new(lambda xp, s, d: draw(rng, s, d), shape, dtype, dev, requires_grad)


def randn(*shape, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal."""
    dev = _device(device)
    if _traced(_shape(shape)) and generator is None:
        return _traced_random(randn_like, _shape(shape), dtype, dev, requires_grad)
    rng = _rng_for(generator, dev, "randn")
    draw = _float_draw("standard_normal")
    return _new(lambda xp, s, d: draw(rng, s, d), shape, dtype, dev, requires_grad)


def randint(low, high=None, size=(), *, generator=None, dtype=None, device=None, requires_grad=False):
    """Integers uniform on [low, high) (`randint(high, size)` starts at 0), int64 by default."""
    if high is None:
        low, high = 0, low
    if high <= low:
        raise InvalidValue(f"randint: high ({high}) must be greater than low ({low})")
    dev = _device(device)
    size = (size,) if isinstance(size, (int, Dim)) else tuple(size)
    dt = _dt.resolve(dtype) or _dt.int64
    if _traced(_shape(size)) and generator is None:
        u = _traced_random(rand_like, _shape(size), _dt.float64, dev, False)
        return (u * (high - low)).floor().astype(dt) + low
    rng = _rng_for(generator, dev, "randint")
    return _new(lambda xp, s, d: rng.integers(low, high, size=s).astype(d), size, dt, dev,
                requires_grad, name="randint")


def randint_like(input, low=0, high=None, *, dtype=None, device=None):
    """randint with input's shape (and dtype unless given)."""
    return randint(low, high, tuple(input.shape), dtype=dtype or input.dtype,
                   device=device if device is not None else input.device)


def _broadcast_shape(*values):
    shapes = [tuple(v.shape) for v in values if isinstance(v, Tensor)]
    return tuple(_np.broadcast_shapes(*shapes)) if shapes else None


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """Normal draws: with tensor mean and/or std, one draw per element of their broadcast shape
    (torch.normal(mean, std)); with numbers, a tensor of `size`."""
    shape = _broadcast_shape(mean, std)
    if shape is None:
        shape = () if size is None else ((size,) if isinstance(size, int) else tuple(size))
    elif size is not None and tuple((size,) if isinstance(size, int) else size) != shape:
        raise ShapeError(f"normal: size {tuple(size)} does not match the broadcast shape {shape} of mean and std")
    ref = mean if isinstance(mean, Tensor) else std if isinstance(std, Tensor) else None
    if ref is not None:
        dtype = dtype or ref.dtype
        device = device if device is not None else ref.device
    z = randn(*shape, generator=generator, dtype=dtype, device=device)
    out = z * std + mean
    return out.requires_grad_(True) if requires_grad else out


def uniform(low=0.0, high=1.0, size=(), *, generator=None, dtype=None, device=None):
    return rand(*((size,) if isinstance(size, int) else size), generator=generator, dtype=dtype,
                device=device) * (high - low) + low


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    """A random permutation of 0..n-1 (int64 by default)."""
    dev = _device(device)
    dt = _dt.resolve(dtype) or _dt.int64
    if STATE.mode.symbolic and generator is None:
        from_graph = _traced_random(rand_like, (n,), _dt.float64, dev, False)
        return from_graph.argsort().astype(dt)
    rng = _rng_for(generator, dev, "randperm")
    if dev is CPU:
        perm = rng.permutation(int(n))
    else:  # cupy's Generator has no permutation: the sorting order of uniform draws is a uniform one
        perm = dev.xp.argsort(rng.random(int(n)))
    return _make(dev.xp.asarray(perm.astype(dt)), dev)


def bernoulli(input, p=None, *, generator=None):
    """0/1 draws in input's dtype, 1 with probability `input` (or `p`); no gradient flows."""
    if input.dtype.kind != "f":
        raise DTypeError(f"bernoulli: input must be a floating-point tensor of probabilities, got {input.dtype}")
    probs = input.detach() if p is None else p
    u = rand(*input.shape, generator=generator, dtype=input.dtype, device=input.device)
    return (u < probs).astype(input.dtype)


def poisson(input, generator=None):
    """Poisson draws with rates `input`, in input's dtype (eager only: a graph has no Poisson sampler)."""
    if STATE.mode.symbolic:
        raise InvalidValue("poisson inside a traced function: a graph has no Poisson sampler; draw outside it")
    rates = input.detach()._data
    xp = input.device.xp
    if bool((rates < 0).any()) or not bool(xp.isfinite(rates).all()):
        raise InvalidValue(f"poisson: rates must be finite and >= 0, got a tensor of shape {tuple(input.shape)} "
                           f"with min {float(rates.min())}")
    rng = _rng_for(generator, input.device, "poisson")
    return _make(rng.poisson(rates).astype(input.dtype), input.device)


# ---- in-place random fills (Tensor.uniform_ and friends): a draw of the tensor's shape, copied in --------

def _fill_random(t, what, draw):
    t._check_inplace(what)
    if t.dtype.kind != "f":
        raise DTypeError(f"{what}: fills floating-point tensors only, got {t.dtype} of shape {tuple(t.shape)}")
    return t.copy_(draw(tuple(t.shape)))


def uniform_(t, from_=0.0, to=1.0, *, generator=None):
    """Fill t with draws uniform on [from_, to)."""
    return _fill_random(t, "uniform_", lambda s: rand(*s, generator=generator, dtype=t.dtype, device=t.device)
                        * (to - from_) + from_)


def normal_(t, mean=0.0, std=1.0, *, generator=None):
    return _fill_random(t, "normal_", lambda s: randn(*s, generator=generator, dtype=t.dtype, device=t.device)
                        * std + mean)


def bernoulli_(t, p=0.5, *, generator=None):
    """Fill t with 0/1 draws, 1 with probability p (a number or a tensor broadcasting to t)."""
    if not isinstance(p, Tensor) and not 0 <= p <= 1:
        raise InvalidValue(f"bernoulli_: p must be in [0, 1], got {p}")
    t._check_inplace("bernoulli_")
    u = rand(*t.shape, generator=generator, dtype=_dt.float64, device=t.device)
    return t.copy_((u < p).astype(t.dtype))


def exponential_(t, lambd=1.0, *, generator=None):
    if not lambd > 0:
        raise InvalidValue(f"exponential_: lambd must be > 0, got {lambd}")
    return _fill_random(t, "exponential_", lambda s: -(1 - rand(*s, generator=generator, dtype=t.dtype,
                                                                 device=t.device)).log() / lambd)


def cauchy_(t, median=0.0, sigma=1.0, *, generator=None):
    return _fill_random(t, "cauchy_", lambda s: (_np.pi * (rand(*s, generator=generator, dtype=t.dtype,
                                                                 device=t.device) - 0.5)).tan() * sigma + median)


def log_normal_(t, mean=1.0, std=2.0, *, generator=None):
    return _fill_random(t, "log_normal_", lambda s: (randn(*s, generator=generator, dtype=t.dtype,
                                                            device=t.device) * std + mean).exp())


def geometric_(t, p, *, generator=None):
    """Fill t with the number of Bernoulli(p) trials up to the first success (1, 2, ...)."""
    if not 0 < p < 1:
        raise InvalidValue(f"geometric_: p must be in (0, 1), got {p}")
    t._check_inplace("geometric_")
    u = rand(*t.shape, generator=generator, dtype=_dt.float64, device=t.device)
    return t.copy_(((1 - u).log() / _np.log1p(-p)).ceil().clip(1, None).astype(t.dtype))


def _random_high(dtype):
    if dtype.kind == "f":  # every integer the float represents exactly, as torch
        return 2 ** (_np.finfo(dtype).nmant + 1) + 1
    if dtype.kind == "b":
        return 2
    return int(_np.iinfo(dtype).max) + 1


def random_(t, from_=0, to=None, *, generator=None):
    """Fill t with integers uniform on [from_, to); random_(to) is [0, to); random_() is [0, the
    largest integer t's dtype holds exactly]."""
    if to is None:
        from_, to = (0, from_) if from_ != 0 else (0, _random_high(t.dtype))
    if to <= from_:
        raise InvalidValue(f"random_: expects from ({from_}) < to ({to})")
    t._check_inplace("random_")
    return t.copy_(randint(from_, to, tuple(t.shape), generator=generator, dtype=_dt.int64,
                           device=t.device).astype(t.dtype))


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
