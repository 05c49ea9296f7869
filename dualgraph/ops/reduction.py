"""Reductions along axes: sum prod max min argmax argmin cumsum, and composites mean var std logsumexp.

Every axis-taking function accepts numpy's `axis=`/`keepdims=` and PyTorch's `dim=`/`keepdim=`.
"""
import builtins
import functools

import numpy as np

from ..dispatch import apply
from ..errors import ShapeError
from ..graph.avals import Aval
from ..tensor import Tensor
from .creation import arange, ones_like, zeros_like
from .elementwise import eq, exp, isfinite, log, maximum, minimum, sqrt, where
from .infer import float_dtype, norm_axes
from .onnx_rules import arg_reduction, bool_reduction, out_dtype, reduction
from .registry import defop
from .shape import broadcast_to, flip, permute, reshape


def axis_args(op, x, axis, dim, keepdims, keepdim):
    """Merge numpy- and PyTorch-style spellings of the axis arguments."""
    if dim is not None:
        if axis is not None:
            raise TypeError(f"{op}: pass axis= or dim=, not both")
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    return norm_axes(axis, x.ndim, op), bool(keepdims)


def _reduced_shape(shape, axes, keepdims):
    if axes is None:
        axes = tuple(range(len(shape)))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(dtype_rule):
    def infer(x, axes, keepdims, **_):
        return Aval(_reduced_shape(x.shape, axes, keepdims), dtype_rule(x.dtype))
    return infer


def _expand_back(g, x, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against x."""
    if not keepdims:
        g = reshape(g, _reduced_shape(x.shape, axes, True))
    return g


def _sum_dtype(dt):
    return np.dtype(np.int64) if dt.kind in "biu" else dt


def _sum_vjp(ctx, g):
    x = ctx.inputs[0]
    return (broadcast_to(_expand_back(g, x, ctx.attrs["axes"], ctx.attrs["keepdims"]), x.shape),)


def _reduce_kernel(ufunc):
    """For compiled graphs: `ufunc.reduce` with the node's axes bound, on numpy floats that stay in their
    dtype (numpy's sum/max/min wrappers cost microseconds a call). A reduction with no identity over a
    dim that may be empty keeps the forward, whose error says what is wrong."""
    def kernel(node, xp):
        x, out = node.inputs[0].aval, node.outputs[0].aval
        if xp is not np or out.dtype.kind != "f" or x.dtype != out.dtype:
            return None
        if ufunc.identity is None and builtins.any(d == 0 for d in x.shape):
            return None
        return functools.partial(ufunc.reduce, axis=node.attrs["axes"], keepdims=node.attrs["keepdims"])
    return kernel


SUM = defop("sum", lambda xp, x, axes, keepdims: xp.sum(x, axis=axes, keepdims=keepdims, dtype=_sum_dtype(x.dtype)),
            _reduce_infer(_sum_dtype), _sum_vjp, kernel=_reduce_kernel(np.add), reduce="add",
            onnx=reduction("ReduceSum"))


def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None):
    axes, keepdims = axis_args("sum", x, axis, dim, keepdims, keepdim)
    out = apply(SUM, (x,), {"axes": axes, "keepdims": keepdims})
    return out if dtype is None else out.astype(dtype)


def _count_forward(xp, x, axes, dtype):
    n = 1
    for i in (range(x.ndim) if axes is None else axes):
        n *= x.shape[i]
    return xp.asarray(n, dtype=dtype)


def _count_onnx(ctx, node, x):
    """Elements over the reduced axes, from the runtime shape (stays right for dynamic axes)."""
    axes = ctx.attrs(node)["axes"]
    shape = ctx.shape_of(x)
    if axes is not None:
        shape = ctx.emit("Gather", [shape, ctx.i64(list(axes))], axis=0)
    n = ctx.emit("ReduceProd", [shape], keepdims=0)
    return ctx.emit("Cast", [n], to=ctx.onnx_dtype(out_dtype(node)))


# The number of elements over `axes` as a 0-d tensor: how mean/var divide when a reduced dim is
# symbolic (a batch axis of unknown size in a traced or static graph).
COUNT = defop("count", _count_forward, lambda x, axes, dtype: Aval((), dtype), None, differentiable=False,
              onnx=_count_onnx)


def _count(x, axes):
    """The element count over axes: a Python int, or a 0-d tensor op when a dim is symbolic."""
    n = 1
    for i in (range(x.ndim) if axes is None else axes):
        d = x.shape[i]
        if not isinstance(d, (int, np.integer)):
            return apply(COUNT, (x,), {"axes": axes, "dtype": x.dtype})
        n *= d
    return n


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None):
    axes, keepdims = axis_args("mean", x, axis, dim, keepdims, keepdim)
    if x.dtype.kind != "f":
        x = x.astype(float_dtype(x.dtype))
    return apply(SUM, (x,), {"axes": axes, "keepdims": keepdims}) / _count(x, axes)


def _prod_others_forward(xp, x, axes):
    """For each element, the product of the other elements in its reduction group (zeros-safe)."""
    axes = tuple(range(x.ndim)) if axes is None else axes
    moved = xp.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim)))
    flat = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (-1,))
    ones = xp.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.flip(xp.cumprod(xp.flip(xp.concatenate([flat[..., 1:], ones], axis=-1), -1), axis=-1), -1)
    others = (left * right).reshape(moved.shape)
    return xp.moveaxis(others, tuple(range(x.ndim - len(axes), x.ndim)), axes)


def _prod_others_vjp(ctx, g):
    """d others_i / d x_k (k != i) is the product over j not in {i, k}: the others of the (n, n) matrix
    X[i, j] = (1 if i == j else x_j) along j. O(n^2) memory per group, paid only by higher-order grads."""
    x = ctx.inputs[0]
    axes = tuple(range(x.ndim)) if ctx.attrs["axes"] is None else ctx.attrs["axes"]
    perm = [d for d in range(x.ndim) if d not in axes] + list(axes)
    moved = permute(x, perm)
    lead = tuple(moved.shape[:x.ndim - len(axes)])
    n = _count(x, axes)
    xf, gf = reshape(moved, lead + (n,)), reshape(permute(g, perm), lead + (n,))
    idx = arange(n, device=x.device)
    diag = eq(reshape(idx, (n, 1)), reshape(idx, (1, n)))
    big = broadcast_to(reshape(xf, lead + (1, n)), lead + (n, n))
    mat = where(diag, ones_like(big), big)
    others2 = apply(PROD_OTHERS, (mat,), {"axes": (len(lead) + 1,)})
    gmat = reshape(gf, lead + (n, 1)) * others2
    gx = apply(SUM, (where(diag, zeros_like(gmat), gmat),), {"axes": (len(lead),), "keepdims": False})
    return (permute(reshape(gx, tuple(moved.shape)), tuple(np.argsort(perm).tolist())),)


def _prod_others_onnx(ctx, node, x):
    """For each element, the product of the other elements of its reduction group (zeros-safe):
    a [..., K, K] tensor with ones on the diagonal, reduced by ReduceProd."""
    axes = ctx.attrs(node)["axes"]
    nd = node.inputs[0].aval.ndim
    axes = tuple(range(nd)) if axes is None else tuple(axes)
    dt = out_dtype(node)
    perm = [i for i in range(nd) if i not in axes] + list(axes)
    xt = ctx.emit("Transpose", [x], perm=perm) if perm != list(range(nd)) else x
    shape_t = ctx.shape_of(xt)
    lead = ctx.slice(shape_t, [0], [nd - len(axes)], [0])
    flat = ctx.emit("Reshape", [xt, ctx.emit("Concat", [lead, ctx.i64([-1])], axis=0)])
    k = ctx.emit("Gather", [ctx.shape_of(flat), ctx.const(np.int64(-1))], axis=0)
    idx = ctx.emit("Range", [ctx.const(np.int64(0)), k, ctx.const(np.int64(1))])
    eye = ctx.emit("Equal", [ctx.unsqueeze(idx, [1]), ctx.unsqueeze(idx, [0])])
    w = ctx.emit("Where", [eye, ctx.const(1, dt), ctx.unsqueeze(flat, [-2])])
    r = ctx.reduce("ReduceProd", w, (-1,), False)
    r = ctx.emit("Reshape", [r, shape_t])
    if perm != list(range(nd)):
        r = ctx.emit("Transpose", [r], perm=[int(i) for i in np.argsort(perm)])
    return r


PROD_OTHERS = defop("prod_others", _prod_others_forward, lambda x, axes: Aval(x.shape, x.dtype), _prod_others_vjp,
                    onnx=_prod_others_onnx)


def _prod_vjp(ctx, g):
    x = ctx.inputs[0]
    axes = ctx.attrs["axes"]
    others = apply(PROD_OTHERS, (x,), {"axes": axes})
    return (broadcast_to(_expand_back(g, x, axes, ctx.attrs["keepdims"]), x.shape) * others,)


PROD = defop("prod", lambda xp, x, axes, keepdims: xp.prod(x, axis=axes, keepdims=keepdims, dtype=_sum_dtype(x.dtype)),
             _reduce_infer(_sum_dtype), _prod_vjp, onnx=reduction("ReduceProd"))


def prod(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axes, keepdims = axis_args("prod", x, axis, dim, keepdims, keepdim)
    return apply(PROD, (x,), {"axes": axes, "keepdims": keepdims})


def _extreme_vjp(ctx, g):
    """Gradient of max/min: split evenly between tied extremes (as PyTorch's amax/amin)."""
    x = ctx.inputs[0]
    axes, keepdims = ctx.attrs["axes"], ctx.attrs["keepdims"]
    out = _expand_back(ctx.out.detach(), x, axes, keepdims)
    mask = (x == out).astype(x.dtype)
    count = apply(SUM, (mask,), {"axes": axes, "keepdims": True})
    gb = broadcast_to(_expand_back(g, x, axes, keepdims), x.shape)
    return (gb * mask / count,)


def _nonempty(name, fn):
    def forward(xp, x, axes, keepdims):
        if x.size == 0 and builtins.any(x.shape[i] == 0 for i in (range(x.ndim) if axes is None else axes)):
            raise ShapeError(f"{name}: reduction over an empty axis (tensor shape {x.shape}) has no identity")
        return fn(xp)(x, axis=axes, keepdims=keepdims)
    return forward


MAX = defop("max", _nonempty("max", lambda xp: xp.max), _reduce_infer(lambda d: d), _extreme_vjp, saves_output=True,
            kernel=_reduce_kernel(np.maximum), reduce="max", onnx=reduction("ReduceMax"))
MIN = defop("min", _nonempty("min", lambda xp: xp.min), _reduce_infer(lambda d: d), _extreme_vjp, saves_output=True,
            kernel=_reduce_kernel(np.minimum), reduce="min", onnx=reduction("ReduceMin"))


def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Largest value along axes (values only, as numpy's max/amax; use argmax for indices)."""
    if isinstance(axis, Tensor):  # torch.max(a, b) is the elementwise maximum
        return maximum(x, axis)
    axes, keepdims = axis_args("max", x, axis, dim, keepdims, keepdim)
    return apply(MAX, (x,), {"axes": axes, "keepdims": keepdims})


def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    if isinstance(axis, Tensor):
        return minimum(x, axis)
    axes, keepdims = axis_args("min", x, axis, dim, keepdims, keepdim)
    return apply(MIN, (x,), {"axes": axes, "keepdims": keepdims})


amax, amin = max, min


def _arg_infer(x, axis, keepdims):
    axes = None if axis is None else (axis,)
    shape = _reduced_shape(x.shape, axes, keepdims) if axis is not None else ((1,) * x.ndim if keepdims else ())
    return Aval(shape, np.int64)


def _arg_forward(name, which):
    def forward(xp, x, axis, keepdims):
        if x.size == 0 and (axis is None or x.shape[axis] == 0):
            raise ShapeError(f"{name}: reduction over an empty axis (tensor shape {x.shape})")
        return getattr(xp, which)(x, axis=axis, keepdims=keepdims).astype(np.int64)
    return forward


ARGMAX = defop("argmax", _arg_forward("argmax", "argmax"), _arg_infer, None, differentiable=False,
               onnx=arg_reduction("ArgMax"))
ARGMIN = defop("argmin", _arg_forward("argmin", "argmin"), _arg_infer, None, differentiable=False,
               onnx=arg_reduction("ArgMin"))


def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axes, keepdims = axis_args("argmax", x, axis, dim, keepdims, keepdim)
    return apply(ARGMAX, (x,), {"axis": None if axes is None else axes[0], "keepdims": keepdims})


def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axes, keepdims = axis_args("argmin", x, axis, dim, keepdims, keepdim)
    return apply(ARGMIN, (x,), {"axis": None if axes is None else axes[0], "keepdims": keepdims})


def var(x, axis=None, keepdims=False, *, dim=None, keepdim=None, ddof=0, correction=None, unbiased=None):
    """Variance; numpy's default ddof=0. PyTorch users: pass correction=1 (or unbiased=True)."""
    axes, keepdims = axis_args("var", x, axis, dim, keepdims, keepdim)
    if correction is not None:
        ddof = correction
    if unbiased is not None:
        ddof = 1 if unbiased else 0
    if x.dtype.kind != "f":
        x = x.astype(float_dtype(x.dtype))
    centered = x - mean(x, axis=axes, keepdims=True)
    ss = apply(SUM, (centered * centered,), {"axes": axes, "keepdims": keepdims})
    return ss / (_count(x, axes) - ddof)


def std(x, axis=None, keepdims=False, *, dim=None, keepdim=None, ddof=0, correction=None, unbiased=None):
    return sqrt(var(x, axis, keepdims, dim=dim, keepdim=keepdim, ddof=ddof, correction=correction,
                    unbiased=unbiased))


def logsumexp(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axes, keepdims = axis_args("logsumexp", x, axis, dim, keepdims, keepdim)
    m = apply(MAX, (x.detach(),), {"axes": axes, "keepdims": True})
    m = where(isfinite(m), m, zeros_like(m))
    s = log(apply(SUM, (exp(x - m),), {"axes": axes, "keepdims": True})) + m
    if not keepdims:
        s = reshape(s, _reduced_shape(x.shape, axes, False))
    return s


def _cumsum_vjp(ctx, g):
    axis = ctx.attrs["axis"]
    return (flip(cumsum(flip(g, axis), axis), axis),)


def _cumsum_onnx(ctx, node, x):
    dt = out_dtype(node)
    x = ctx.arg(node.inputs[0], x, dt)
    return ctx.emit("CumSum", [x, ctx.const(np.int64(ctx.attrs(node)["axis"]))])


CUMSUM = defop("cumsum", lambda xp, x, axis: xp.cumsum(x, axis=axis, dtype=_sum_dtype(x.dtype)),
               lambda x, axis: Aval(x.shape, _sum_dtype(x.dtype)), _cumsum_vjp, onnx=_cumsum_onnx)


def cumsum(x, axis=None, *, dim=None):
    if dim is not None:
        axis = dim
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    return apply(CUMSUM, (x,), {"axis": norm_axes(axis, x.ndim, "cumsum")[0]})


def all(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axes, keepdims = axis_args("all", x, axis, dim, keepdims, keepdim)
    return apply(ALL, (x,), {"axes": axes, "keepdims": keepdims})


def any(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axes, keepdims = axis_args("any", x, axis, dim, keepdims, keepdim)
    return apply(ANY, (x,), {"axes": axes, "keepdims": keepdims})


ALL = defop("all", lambda xp, x, axes, keepdims: xp.all(x, axis=axes, keepdims=keepdims),
            _reduce_infer(lambda d: np.dtype(bool)), None, differentiable=False, onnx=bool_reduction("ReduceMin"))
ANY = defop("any", lambda xp, x, axes, keepdims: xp.any(x, axis=axes, keepdims=keepdims),
            _reduce_infer(lambda d: np.dtype(bool)), None, differentiable=False, onnx=bool_reduction("ReduceMax"))


def sum_to(g, shape):
    """Sum a broadcast gradient back down to `shape` (the adjoint of broadcasting)."""
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    if lead < 0:  # `shape` has extra leading 1s, which broadcasting may drop (setitem's value)
        return reshape(sum_to(g, shape[-lead:]), shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    if axes:
        g = apply(SUM, (g,), {"axes": axes, "keepdims": True})
    if g.shape != shape:
        g = reshape(g, shape)
    return g
