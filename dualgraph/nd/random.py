"""MXNet's nd.random: normal/uniform/randint/randn/shuffle on dualgraph's seeded generator (dg.manual_seed).

As in MXNet 1.x, no `shape` gives shape (1,), and loc/scale (low/high) may be NDArrays: the
result then has shape loc.shape + shape, one draw set per element."""
from contextlib import contextmanager as _contextmanager

from .. import dtypes as _dt
from ..backend import device as _device
from ..errors import InvalidValue
from ..ops import creation as _cr
from ..ops import indexing as _ix
from ..tensor import Tensor


def _shape(shape):
    if shape is None or shape == ():
        return (1,)
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def _sample(draw, a, b, shape, dtype, ctx):
    dt = _dt.resolve(dtype) if dtype is not None else _dt.float32
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        lead = tuple(a.shape) if isinstance(a, Tensor) else tuple(b.shape)
        extra = () if shape is None or shape == () else _shape(shape)
        dev = a.device if isinstance(a, Tensor) else b.device
        base = draw(lead + extra, dt, dev)
        expand = lambda v: v.reshape(lead + (1,) * len(extra)) if isinstance(v, Tensor) else v  # noqa: E731
        return base, expand(a), expand(b)
    return draw(_shape(shape), dt, _device(ctx)), a, b


def normal(loc=0, scale=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Samples of N(loc, scale^2)."""
    z, loc, scale = _sample(lambda s, d, dev: _cr.randn(*s, dtype=d, device=dev), loc, scale, shape, dtype, ctx)
    return _write(z * scale + loc, out)


def uniform(low=0, high=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Samples of U[low, high)."""
    u, low, high = _sample(lambda s, d, dev: _cr.rand(*s, dtype=d, device=dev), low, high, shape, dtype, ctx)
    return _write(u * (high - low) + low, out)


def randn(*shape, loc=0, scale=1, dtype=None, ctx=None, **kwargs):
    return normal(loc, scale, shape or None, dtype, ctx)


def randint(low, high, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Integers in [low, high), int32 by default as in MXNet."""
    if high <= low:
        raise InvalidValue(f"nd.random.randint: high ({high}) must be greater than low ({low})")
    dt = _dt.resolve(dtype) if dtype is not None else _dt.int32
    return _write(_cr.randint(low, high, _shape(shape), dtype=dt, device=_device(ctx)), out)


def exponential(scale=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    u = _cr.rand(*_shape(shape), dtype=_dt.resolve(dtype) if dtype else _dt.float32, device=_device(ctx))
    return _write(-(1 - u).log() * scale, out)


def shuffle(data, **kwargs):
    """A copy of `data` with its rows (first axis) in random order."""
    perm = _cr.randperm(data.shape[0], device=data.device)
    return _ix.index_select(data, 0, perm)


def _write(result, out):
    if out is None:
        return result
    out[...] = result
    return out


def seed(seed_state=None, ctx="all"):
    """mx.random.seed(n): seeds dualgraph's generators (dg.manual_seed), every device at once. Without a
    seed it is torch.random.seed(): a seed from the operating system's entropy, returned. A `ctx`
    seeds every device too: dualgraph keeps one seed for all of them."""
    return _cr.seed(seed_state)


# torch.random's names: `dg.random` is both MXNet's mx.random and PyTorch's torch.random
manual_seed, initial_seed = _cr.manual_seed, _cr.initial_seed
get_rng_state, set_rng_state, default_generator = _cr.get_rng_state, _cr.set_rng_state, _cr.default_generator


@_contextmanager
def fork_rng(devices=None, enabled=True):
    """torch.random.fork_rng: draws inside the block leave the global CPU generator where it was."""
    if not enabled:
        yield
        return
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)