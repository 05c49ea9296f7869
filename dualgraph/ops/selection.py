"""Selection, sorting and masking, with PyTorch's names and meanings: sort/argsort/topk, max/min/median/
kthvalue with a dim (named tuples of values and indices), cumprod/cummax/cummin, tril/triu, masked_fill,
scatter/index_fill/index_add, roll, repeat_interleave, multinomial, masked_select, take.

The indices an op selects come from a non-differentiable primitive (`sort_indices`, `cum_extreme_indices`)
and the values from take_along_axis at those indices, so a value's gradient goes to exactly the element
it was read from (PyTorch's rule for every value-and-index op) and one rule serves every mode. This module
sits above ops/indexing.py, the last of the op families it builds on.
"""
import builtins

import numpy as np

from .. import return_types as _rt
from ..backend import accumulate as _accumulate, scatter_multiply as _scatter_multiply
from .._state import STATE
from ..dispatch import apply
from ..errors import AutogradError, DTypeError, IndexOutOfRange, InvalidValue, ShapeError
from ..graph.avals import Aval, Dim
from ..tensor import Tensor, _plain_outside_record, as_tensor
from .creation import arange, full_like, generator
from .elementwise import astype, eq, isnan, logical_and, maximum, minimum, where
from .gather import TAKE_ALONG_AXIS, along_axis_index, check_index, nonzero
from .gather import scatter_add as _scatter_add_exact
from .indexing import getitem
from .infer import broadcast_shapes
from .onnx_rules import INT64_MAX, INT64_MIN, out_dtype
from .reduction import _sum_dtype, any as _any, argmax, argmin, cumsum, sum as _sum
from .reduction import max as _values_max, min as _values_min
from .registry import defop
from .shape import broadcast_to, flip, narrow, reshape, squeeze, unsqueeze
from ..backend import device_of_array


def _axis(x, dim, op):
    """One dim as a non-negative int (PyTorch's range check: a 0-d tensor takes 0 and -1)."""
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{op}: dim must be one int, got {dim!r}")
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    n = builtins.max(x.ndim, 1)
    if not -n <= int(dim) < n:
        raise IndexOutOfRange(f"{op}: dim {int(dim)} is out of range for a tensor with {x.ndim} dims "
                              f"(shape {tuple(x.shape)}); expected a dim in [{-n}, {n - 1}]")
    return int(dim) % n


def _static(d):
    return isinstance(d, (int, np.integer))


def _gather(x, index, axis):
    return apply(TAKE_ALONG_AXIS, (x, index), {"axis": axis})


def _as_1d(x):
    """(x as at least 1-D, undo): PyTorch's value-and-index ops take a 0-d tensor as one element."""
    if x.ndim:
        return x, (lambda t: t)
    return reshape(x, (1,)), (lambda t: reshape(t, ()))


# ---- sort_indices: the positions of a stable sort, or of its first k (argsort, sort, topk, median) ----

def _top_k_by_partition(x, axis, k, descending):
    """The first k positions of the stable order (numpy), in O(n) before sorting the k: partition finds
    the k-th value t; every element beyond t is in, and of those equal to t the first ones in index order
    fill the rest. NaN counts as the largest, as in the sort."""
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    t = np.partition(x, n - k if descending else k - 1, axis=-1)[..., n - k if descending else k - 1][..., None]
    if x.dtype.kind == "f":
        xn, tn = np.isnan(x), np.isnan(t)
        eq = (x == t) | (xn & tn)
        beyond = ((x > t) | (xn & ~tn)) if descending else ((x < t) | (~xn & tn))
    else:
        eq = x == t
        beyond = (x > t) if descending else (x < t)
    need = k - beyond.sum(axis=-1, keepdims=True)
    chosen = beyond | (eq & (np.cumsum(eq, axis=-1) <= need))
    idx = np.nonzero(chosen.reshape(-1, n))[1].reshape(x.shape[:-1] + (k,))   # k per row, in index order
    vals = np.take_along_axis(x, idx, -1)
    if descending:
        order = np.flip((k - 1) - np.argsort(np.flip(vals, -1), axis=-1, kind="stable"), -1)
    else:
        order = np.argsort(vals, axis=-1, kind="stable")
    return np.moveaxis(np.take_along_axis(idx, order, -1), -1, axis)


def _sort_indices_forward(xp, x, axis, k, descending, median=False):
    if xp is np and k is not None and 0 < k < x.shape[axis] // 4 and x.shape[axis] > 64 and x.dtype != np.bool_:
        return _top_k_by_partition(x, axis, k, descending).astype(np.int64)
    stable = {"kind": "stable"} if xp is np else {}
    if descending:
        # a stable descending order (ties keep their order, NaN first as the largest): the ascending
        # stable order of the reversed axis, read backwards and mapped to the original positions
        n = x.shape[axis]
        idx = xp.flip((n - 1) - xp.argsort(xp.flip(x, axis), axis=axis, **stable), axis)
    else:
        idx = xp.argsort(x, axis=axis, **stable)
    if median:   # the lower middle position of this size (a traced graph run at other sizes moves with it)
        pos = (x.shape[axis] - 1) // 2
        idx = idx[(slice(None),) * axis + (slice(pos, pos + 1),)]
    elif k is not None:
        idx = idx[(slice(None),) * axis + (slice(0, k),)]
    return idx.astype(np.int64)


def _sort_indices_infer(x, axis, k, descending, median=False):
    shape = list(x.shape)
    if median:
        shape[axis] = 1
    elif k is not None:
        shape[axis] = k
    return Aval(tuple(shape), np.int64)


# dtypes onnxruntime's TopK has kernels for; the others sort in one that orders them the same way
_TOPK_DTYPES = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64)}


def _topk_input(ctx, node, x):
    src = node.inputs[0].aval.dtype
    if src in _TOPK_DTYPES:
        return x
    return ctx.cast(x, src, np.float32 if src == np.float16 else np.int32 if src.kind in "biu" and src.itemsize < 4
                    else np.int64)


def _sort_indices_onnx(ctx, node, x):
    """ONNX TopK: equal values come out in index order (the spec's tiebreak), as the stable sort here."""
    a = ctx.attrs(node)
    axis = a["axis"]
    n = ctx.shape_tensor([ctx.shape(node.inputs[0])[axis]])
    if a.get("median"):   # the first (n - 1) // 2 + 1 in order; the median is the last of them
        k = ctx.emit("Add", [ctx.emit("Div", [ctx.emit("Sub", [n, ctx.i64([1])]), ctx.i64([2])]), ctx.i64([1])])
    else:
        k = ctx.i64([a["k"]]) if a["k"] is not None else n
    _, idx = ctx.emit("TopK", [_topk_input(ctx, node, x), k], n_out=2, axis=axis, largest=int(a["descending"]),
                      sorted=1)
    if a.get("median"):
        idx = ctx.slice(idx, [-1], [INT64_MAX], [axis])
    return idx


SORT_INDICES = defop("sort_indices", _sort_indices_forward, _sort_indices_infer, None, differentiable=False,
                     onnx=_sort_indices_onnx)


def _sort_idx(x, axis, descending, k=None):
    return apply(SORT_INDICES, (x,), {"axis": axis, "k": k, "descending": bool(descending)})


def sort(x, dim=-1, descending=False, stable=False, *, axis=None):
    """PyTorch's sort: (values, indices) along `dim`, ascending unless `descending`. The order is always
    stable (equal values keep their order; NaN sorts as the largest), which `stable=False` allows."""
    if axis is not None:
        dim = axis
    x1, undo = _as_1d(x)
    ax = _axis(x, dim, "sort") if x.ndim else 0
    idx = _sort_idx(x1, ax, descending)
    return _rt.sort((undo(_gather(x1, idx, ax)), undo(idx)))


def argsort(x, dim=-1, descending=False, stable=False, *, axis=None):
    """The indices `sort` returns (stable, whatever `stable` says)."""
    return sort(x, dim, descending, stable, axis=axis).indices


def msort(x):
    """Sorted along dim 0 (values only)."""
    return sort(x, 0).values


def topk(x, k, dim=-1, largest=True, sorted=True):
    """PyTorch's topk: the k largest (or smallest) elements along `dim` and their indices, in sorted
    order (also for sorted=False, which leaves the order free); equal values come in index order."""
    x1, undo = _as_1d(x)
    ax = _axis(x, dim, "topk") if x.ndim else 0
    if isinstance(k, Tensor):
        k = int(k.item())
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise TypeError(f"topk: k must be an int, got {type(k).__name__}")
    n = x1.shape[ax]
    if k < 0 or (_static(n) and k > n):
        raise IndexOutOfRange(f"topk: k={int(k)} is out of range for dim {ax} of size {n} "
                              f"(tensor shape {tuple(x.shape)}); k must lie in [0, {n}]")
    idx = _sort_idx(x1, ax, largest, int(k))
    return _rt.topk((undo(_gather(x1, idx, ax)), undo(idx)))


# ---- max/min/median/kthvalue with a dim: named tuples -----------------------------------------------

def _pick(kind, x, idx, ax, keep):
    """kind((values at idx, idx)), idx holding the selected position along ax (size 1), that dim dropped
    unless `keep`."""
    vals = _gather(x, idx, ax)
    if not keep:
        vals, idx = squeeze(vals, ax), squeeze(idx, ax)
    return kind((vals, idx))


def _extreme(name, kind, values_fn, other_fn, arg_fn):
    def extreme(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
        if isinstance(dim, Tensor):   # torch.max(a, b): the elementwise maximum
            return other_fn(x, dim)
        if axis is not None or dim is None:
            # numpy's spelling (axis=) and the whole-tensor reduction: values only, ties share the gradient
            if dim is not None:
                raise TypeError(f"{name}: pass axis= or dim=, not both")
            return values_fn(x, axis=axis, keepdims=bool(keepdims or keepdim))
        if isinstance(dim, (tuple, list)):
            raise TypeError(f"{name}: dim must be one int for (values, indices); for the {name} over several "
                            f"dims use dg.a{name}(x, dim={tuple(dim)!r})")
        x1, _ = _as_1d(x)
        ax = _axis(x, dim, name) if x.ndim else 0
        if _static(x1.shape[ax]) and x1.shape[ax] == 0:
            raise IndexOutOfRange(f"{name}: dim {ax} of the tensor (shape {tuple(x.shape)}) is empty; "
                                  f"there is no {name} to take")
        return _pick(kind, x1, arg_fn(x1, axis=ax, keepdims=True), ax, keepdim and x.ndim > 0)
    extreme.__name__ = name
    extreme.__doc__ = (f"PyTorch's {name}: without a dim (or with numpy's axis=) the {name} values; "
                       f"`{name}(x, dim, keepdim=False)` gives (values, indices), the first {name} "
                       f"along dim (NaN counts as the {name}), the gradient going to that element only; "
                       f"`{name}(x, other)` is the elementwise {name}imum.")
    return extreme


max = _extreme("max", _rt.max, _values_max, maximum, argmax)
min = _extreme("min", _rt.min, _values_min, minimum, argmin)


def median(x, dim=None, keepdim=False):
    """PyTorch's median: the lower of the two middle values (not their mean). Without a dim, of all
    elements (values only); with a dim, (values, indices). NaN propagates: a slice holding NaN gives NaN
    and the index of its first NaN."""
    if dim is None:
        flat = reshape(x, (-1,))
        if _static(flat.shape[0]) and flat.shape[0] == 0:
            raise IndexOutOfRange(f"median: the tensor (shape {tuple(x.shape)}) is empty")
        return median(flat, 0).values
    x1, _ = _as_1d(x)
    ax = _axis(x, dim, "median") if x.ndim else 0
    n = x1.shape[ax]
    if _static(n) and n == 0:
        raise IndexOutOfRange(f"median: dim {ax} of the tensor (shape {tuple(x.shape)}) is empty")
    idx = apply(SORT_INDICES, (x1,), {"axis": ax, "k": None, "descending": False, "median": True})
    if x1.dtype.kind == "f":
        nan = isnan(x1)
        idx = where(_any(nan, axis=ax, keepdims=True), argmax(nan, axis=ax, keepdims=True), idx)
    return _pick(_rt.median, x1, idx, ax, keepdim and x.ndim > 0)


def kthvalue(x, k, dim=-1, keepdim=False):
    """PyTorch's kthvalue: the k-th smallest element along dim (k counts from 1) and its index; among
    equal values the order is the stable sort's."""
    x1, _ = _as_1d(x)
    ax = _axis(x, dim, "kthvalue") if x.ndim else 0
    n = x1.shape[ax]
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise TypeError(f"kthvalue: k must be an int, got {type(k).__name__}")
    if k < 1 or (_static(n) and k > n):
        raise IndexOutOfRange(f"kthvalue: k={int(k)} is out of range for dim {ax} of size {n} "
                              f"(tensor shape {tuple(x.shape)}); k must lie in [1, {n}]")
    idx = narrow(_sort_idx(x1, ax, False), ax, int(k) - 1, 1)
    return _pick(_rt.kthvalue, x1, idx, ax, keepdim and x.ndim > 0)


def _mode_forward(xp, x, axis):
    n = x.shape[axis]
    flat = xp.moveaxis(x, axis, -1)
    lead = flat.shape[:-1]
    flat = flat.reshape(-1, n)
    s = xp.sort(flat, axis=-1)
    pos = xp.arange(n, dtype=np.int64)
    starts = s[:, 1:] != s[:, :-1]
    first = xp.concatenate([xp.ones((s.shape[0], 1), bool), starts], axis=1)
    last = xp.concatenate([starts, xp.ones((s.shape[0], 1), bool)], axis=1)
    begin = _accumulate(xp, "maximum", xp.where(first, pos, 0), 1)
    end = xp.flip(_accumulate(xp, "minimum", xp.flip(xp.where(last, pos, n), 1), 1), 1)
    run = end - begin + 1
    # the most frequent value, the smallest of those tied (the first such run in sorted order) ...
    value = xp.take_along_axis(s, xp.argmax(run == run.max(axis=1, keepdims=True), axis=1)[:, None], 1)
    # ... at its last position, as PyTorch's mode reports
    at = (n - 1) - xp.argmax(xp.flip(flat == value, 1), axis=1)
    return xp.moveaxis(at.astype(np.int64).reshape(lead + (1,)), -1, axis)


def _mode_onnx(ctx, node, x):
    """Counts by pairwise equality over the [..., n, n] matrix: the most frequent value, the smallest of
    those tied, then its last position (ArgMax with select_last_index)."""
    axis = ctx.attrs(node)["axis"]
    src = node.inputs[0].aval.dtype
    dt = np.dtype(np.float32) if src == np.float16 else np.dtype(np.int64) if src.kind in "biu" else src
    nd = node.inputs[0].aval.ndim
    xt, perm = _move_last(ctx, ctx.cast(x, src, dt), axis, nd)
    same = ctx.emit("Cast", [ctx.emit("Equal", [ctx.unsqueeze(xt, [-1]), ctx.unsqueeze(xt, [-2])])],
                    to=ctx.onnx_dtype(np.int64))
    counts = ctx.reduce("ReduceSum", same, (-1,), False)
    top = ctx.emit("Equal", [counts, ctx.reduce("ReduceMax", counts, (-1,), True)])
    big = np.inf if dt.kind == "f" else np.iinfo(np.int64).max
    value = ctx.reduce("ReduceMin", ctx.emit("Where", [top, xt, ctx.const(big, dt)]), (-1,), True)
    hit = ctx.emit("Cast", [ctx.emit("Equal", [xt, value])], to=ctx.onnx_dtype(np.int32))
    at = ctx.emit("ArgMax", [hit], axis=-1, keepdims=1, select_last_index=1)
    return _move_back(ctx, at, perm)


# the position of the most frequent value along `axis` (kept as a dim of size 1)
MODE_INDEX = defop("mode_index", _mode_forward,
                   lambda x, axis: Aval(tuple(1 if i == axis else d for i, d in enumerate(x.shape)), np.int64),
                   None, differentiable=False, onnx=_mode_onnx)


def mode(x, dim=-1, keepdim=False):
    """PyTorch's mode: the most frequent value along dim (the smallest of equally frequent ones) and the
    index of its last occurrence."""
    x1, _ = _as_1d(x)
    ax = _axis(x, dim, "mode") if x.ndim else 0
    if _static(x1.shape[ax]) and x1.shape[ax] == 0:
        raise IndexOutOfRange(f"mode: dim {ax} of the tensor (shape {tuple(x.shape)}) is empty")
    idx = apply(MODE_INDEX, (x1,), {"axis": ax})
    return _pick(_rt.mode, x1, idx, ax, keepdim and x.ndim > 0)


# ---- cumulative products and extremes -----------------------------------------------------------------

def _move_last(ctx, x, axis, ndim):
    perm = [i for i in range(ndim) if i != axis] + [axis]
    return (ctx.emit("Transpose", [x], perm=perm) if axis != ndim - 1 else x), perm


def _move_back(ctx, x, perm):
    if perm == sorted(perm):
        return x
    return ctx.emit("Transpose", [x], perm=[int(i) for i in np.argsort(perm)])


def _prefix_onnx(ctx, xt, fill, dt):
    """[..., n, n] holding x_j where j <= i and `fill` elsewhere (row i: the prefix ending at i)."""
    n = ctx.emit("Gather", [ctx.shape_of(xt), ctx.const(np.int64(-1))], axis=0)
    idx = ctx.emit("Range", [ctx.const(np.int64(0)), n, ctx.const(np.int64(1))])
    tri = ctx.emit("LessOrEqual", [ctx.unsqueeze(idx, [0]), ctx.unsqueeze(idx, [1])])
    return ctx.emit("Where", [tri, ctx.unsqueeze(xt, [-2]), ctx.const(fill, dt)])


def _cumprod_grad(x, out, g, axis, curvature):
    """Exact with zeros: before the first zero of a slice, reverse-cumsum(g * out) / x; at the first zero,
    the same sum over the products that skip it; after it 0, since every product there holds that zero.
    With `curvature` (a graph for a higher derivative is being built) the positions after the first zero
    get x_z * (this gradient with x_z set to 1): 0 in value, but with its derivative in x_z."""
    zero = eq(x, 0)
    zeros_so_far = cumsum(zero, axis)
    before = eq(zeros_so_far, 0)                          # all of x_0..x_k nonzero
    first_zero = logical_and(zero, eq(zeros_so_far, 1))
    one = full_like(x, 1)

    def rev_cumsum(t):
        return flip(cumsum(flip(t, axis), axis), axis)
    g_before = rev_cumsum(g * out) / where(before, x, one)
    skipped_x = where(first_zero, one, x)
    skipped = apply(CUMPROD, (skipped_x,), {"axis": axis})
    g_zero = rev_cumsum(g * skipped)
    after = full_like(g_zero, 0)
    if curvature:
        x_z = _sum(where(first_zero, x, full_like(x, 0)), axis=axis, keepdims=True)
        after = x_z * _cumprod_grad(skipped_x, skipped, g, axis, False)
    return where(before, g_before, where(first_zero, g_zero, after))


def _cumprod_vjp(ctx, g):
    return (_cumprod_grad(ctx.inputs[0], ctx.out, g, ctx.attrs["axis"], STATE.grad_enabled),)


def _cumprod_onnx(ctx, node, x):
    """ONNX has no CumProd: each prefix product as a ReduceProd over the [..., n, n] prefix matrix."""
    axis = ctx.attrs(node)["axis"]
    dt = out_dtype(node)
    nd = node.inputs[0].aval.ndim
    xt, perm = _move_last(ctx, ctx.cast(x, node.inputs[0].aval.dtype, dt), axis, nd)
    r = ctx.reduce("ReduceProd", _prefix_onnx(ctx, xt, 1, dt), (-1,), False)
    return _move_back(ctx, r, perm)


CUMPROD = defop("cumprod", lambda xp, x, axis: xp.cumprod(x, axis=axis, dtype=_sum_dtype(x.dtype)),
                lambda x, axis: Aval(x.shape, _sum_dtype(x.dtype)), _cumprod_vjp, saves_output=True,
                onnx=_cumprod_onnx)


def cumprod(x, dim=None, *, dtype=None, axis=None):
    """PyTorch's cumprod along `dim` (integers and bools accumulate in int64); the gradient is exact where
    x has zeros."""
    if axis is not None:
        dim = axis
    if dim is None:
        raise TypeError("cumprod: missing the dim to accumulate along (PyTorch's cumprod needs one)")
    if dtype is not None:
        x = astype(x, dtype)
    x1, undo = _as_1d(x)
    ax = _axis(x, dim, "cumprod") if x.ndim else 0
    return undo(apply(CUMPROD, (x1,), {"axis": ax}))


def _cum_extreme_forward(xp, x, axis, largest):
    if x.dtype == np.bool_:
        x = x.astype(np.int8)
    # maximum/minimum both propagate NaN, as PyTorch's cummax/cummin
    run = _accumulate(xp, "maximum" if largest else "minimum", x, axis)
    hit = x == run
    if x.dtype.kind == "f":
        hit = hit | xp.isnan(x)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    pos = xp.arange(x.shape[axis], dtype=np.int64).reshape(shape)
    # the latest position attaining the running extreme (PyTorch's tie rule: >= keeps moving the index)
    return _accumulate(xp, "maximum", xp.where(hit, pos, 0), axis).astype(np.int64)


def _cum_extreme_onnx(ctx, node, x):
    """ArgMax/ArgMin with select_last_index over the prefix matrix, the rest of each row filled with the
    value that never wins."""
    a = ctx.attrs(node)
    src = node.inputs[0].aval.dtype
    dt = src if src.kind == "f" and src != np.float16 else np.dtype(np.float32) if src == np.float16 \
        else np.dtype(np.int64)
    nd = node.inputs[0].aval.ndim
    xt, perm = _move_last(ctx, ctx.cast(x, src, dt), a["axis"], nd)
    if dt.kind == "f":
        fill = -np.inf if a["largest"] else np.inf
    else:
        fill = INT64_MIN if a["largest"] else np.iinfo(np.int64).max
    m = _prefix_onnx(ctx, xt, fill, dt)
    r = ctx.emit("ArgMax" if a["largest"] else "ArgMin", [m], axis=-1, keepdims=0, select_last_index=1)
    return _move_back(ctx, r, perm)


CUM_EXTREME_INDICES = defop("cum_extreme_indices", _cum_extreme_forward, lambda x, axis, largest: Aval(x.shape, np.int64),
                            None, differentiable=False, onnx=_cum_extreme_onnx)


def _cum_extreme(name, kind, largest):
    def fn(x, dim, *, axis=None):
        if axis is not None:
            dim = axis
        x1, undo = _as_1d(x)
        ax = _axis(x, dim, name) if x.ndim else 0
        idx = apply(CUM_EXTREME_INDICES, (x1,), {"axis": ax, "largest": largest})
        return kind((undo(_gather(x1, idx, ax)), undo(idx)))
    fn.__name__ = name
    fn.__doc__ = (f"PyTorch's {name}: the running {name[3:]} along dim and the index where it was last "
                  f"attained (NaN propagates).")
    return fn


cummax = _cum_extreme("cummax", _rt.cummax, True)
cummin = _cum_extreme("cummin", _rt.cummin, False)


# ---- tril / triu ------------------------------------------------------------------------------------

# dtypes onnxruntime's Trilu has kernels for; the others take the Where form
_TRILU_DTYPES = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)}


def _trilu_onnx(ctx, node, x):
    a = ctx.attrs(node)
    dt = node.inputs[0].aval.dtype
    if ctx.opset >= 14 and dt in _TRILU_DTYPES:
        return ctx.emit("Trilu", [x, ctx.i64(a["diagonal"])], upper=int(a["upper"]))
    shape = ctx.shape_of(x)
    rows = ctx.emit("Range", [ctx.const(np.int64(0)), ctx.emit("Gather", [shape, ctx.const(np.int64(-2))], axis=0),
                              ctx.const(np.int64(1))])
    cols = ctx.emit("Range", [ctx.const(np.int64(0)), ctx.emit("Gather", [shape, ctx.const(np.int64(-1))], axis=0),
                              ctx.const(np.int64(1))])
    offset = ctx.emit("Sub", [ctx.unsqueeze(cols, [0]), ctx.unsqueeze(rows, [1])])   # j - i
    k = ctx.const(np.int64(a["diagonal"]))
    keep = ctx.emit("GreaterOrEqual" if a["upper"] else "LessOrEqual", [offset, k])
    if dt == np.bool_:
        return ctx.emit("And", [keep, x])
    work = dt if dt not in (np.dtype(np.int16), np.dtype(np.bool_)) else np.dtype(np.int32)
    out = ctx.emit("Where", [keep, ctx.cast(x, dt, work), ctx.const(0, work)])
    return ctx.cast(out, work, dt)


TRILU = defop("trilu", lambda xp, x, upper, diagonal: (xp.triu if upper else xp.tril)(x, diagonal),
              lambda x, upper, diagonal: Aval(x.shape, x.dtype),
              lambda ctx, g: (apply(TRILU, (g,), ctx.attrs),), onnx=_trilu_onnx)


def _trilu(name, upper):
    def fn(x, diagonal=0):
        if x.ndim < 2:
            raise ShapeError(f"{name}: input must have at least 2 dims (the matrix in the last two), "
                             f"got shape {tuple(x.shape)}")
        if not isinstance(diagonal, (int, np.integer)) or isinstance(diagonal, bool):
            raise TypeError(f"{name}: diagonal must be an int, got {type(diagonal).__name__}")
        return apply(TRILU, (x,), {"upper": upper, "diagonal": int(diagonal)})
    fn.__name__ = name
    fn.__doc__ = (f"PyTorch's {name}: the {'upper' if upper else 'lower'} triangle of the matrices in the "
                  f"last two dims (diagonal=k: k above the main diagonal), the rest zero.")
    return fn


tril = _trilu("tril", False)
triu = _trilu("triu", True)


# ---- masking: masked_fill, where(cond), masked_select, index_fill --------------------------------------

def _fill_value(op, x, value):
    """A scalar or 0-d tensor fill value as a 0-d tensor of x's dtype (PyTorch keeps x's dtype)."""
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ShapeError(f"{op}: value must be a Python number or a 0-d tensor, got a tensor of shape "
                             f"{tuple(value.shape)}")
        return value if value.dtype == x.dtype else astype(value, x.dtype)
    if not isinstance(value, (int, float, bool, np.number, np.bool_)):
        raise TypeError(f"{op}: value must be a number or a 0-d tensor, got {type(value).__name__}")
    if x.dtype.kind in "iub" and isinstance(value, (float, np.floating)) and not float(value).is_integer():
        raise DTypeError(f"{op}: cannot fill a {x.dtype} tensor with the float {value}")
    return as_tensor(np.asarray(value, dtype=x.dtype), like=x)


def masked_fill(x, mask, value):
    """PyTorch's masked_fill: x where mask is False, `value` (a number or 0-d tensor, cast to x's dtype)
    where it is True; the bool mask broadcasts to x's shape."""
    mask = as_tensor(mask, like=x)
    if mask.dtype != np.bool_:
        raise DTypeError(f"masked_fill: mask must be a bool tensor, got {mask.dtype}")
    shape = broadcast_shapes("masked_fill", tuple(x.shape), tuple(mask.shape))
    v = _fill_value("masked_fill", x, value)
    out = where(mask, v, x)
    return out if tuple(out.shape) == shape else broadcast_to(out, shape)


@_plain_outside_record
def masked_fill_(x, mask, value):
    mask = as_tensor(mask, like=x)
    if mask.dtype != np.bool_:
        raise DTypeError(f"masked_fill_: mask must be a bool tensor, got {mask.dtype}")
    shape = broadcast_shapes("masked_fill_", tuple(x.shape), tuple(mask.shape))
    if shape != tuple(x.shape):
        raise ShapeError(f"masked_fill_: mask of shape {tuple(mask.shape)} does not broadcast to the tensor's "
                         f"shape {tuple(x.shape)}")
    x._check_inplace("masked_fill_")
    v = _fill_value("masked_fill_", x, value)
    return STATE.mode.inplace(x, lambda s: where(mask, v, s), v, "masked_fill_")


def where_(condition, x=None, y=None):
    """PyTorch's where: `where(cond, x, y)` picks x where cond holds, else y (either may be a Python number);
    `where(cond)` alone is `nonzero(cond, as_tuple=True)`, a tuple of index tensors, one per dim."""
    if x is None and y is None:
        return nonzero(condition, as_tuple=True)
    if x is None or y is None:
        raise TypeError("where: pass both x and y, or neither (where(cond) gives the indices of its True elements)")
    return where(condition, x, y)


def _where_method(x, condition, y):
    """Tensor.where(condition, y): x where condition holds, else y."""
    return where(condition, x, y)


def masked_select(x, mask):
    """PyTorch's masked_select: the elements of x (x and the bool mask broadcast together) where mask is
    True, as a 1-D tensor in row-major order."""
    mask = as_tensor(mask, like=x)
    if mask.dtype != np.bool_:
        raise DTypeError(f"masked_select: mask must be a bool tensor, got {mask.dtype}")
    shape = broadcast_shapes("masked_select", tuple(x.shape), tuple(mask.shape))
    if tuple(x.shape) != shape:
        x = broadcast_to(x, shape)
    if tuple(mask.shape) != shape:
        mask = broadcast_to(mask, shape)
    return getitem(reshape(x, (-1,)), reshape(mask, (-1,)))


def take(x, index):
    """PyTorch's take: x read as 1-D at `index` (any shape; negative counts from the end); the result
    has the index's shape."""
    index = as_tensor(index, like=x)
    if index.dtype.kind not in "iu":
        raise DTypeError(f"take: index must be an integer tensor, got {index.dtype}")
    flat = reshape(x, (-1,))
    check_index("take", flat, index, 0)
    return getitem(flat, index)


def _index_1d(op, x, index, ax):
    index = as_tensor(index, like=x)
    if index.dtype.kind not in "iu":
        raise DTypeError(f"{op}: index must be an integer tensor, got {index.dtype}")
    if index.ndim > 1:
        raise ShapeError(f"{op}: index must be 0-d or 1-D, got shape {tuple(index.shape)}")
    index = reshape(index, (-1,))
    check_index(op, x, index, ax)
    return index


def index_fill(x, dim, index, value):
    """PyTorch's index_fill: the slices of x at `index` along dim set to `value` (a number or 0-d tensor)."""
    ax = _axis(x, dim, "index_fill")
    index = _index_1d("index_fill", x, index, ax)
    n = x.shape[ax]
    index = where(index < 0, index + n, index)
    hit = _any(eq(reshape(arange(n, device=x.device), (-1, 1)), reshape(index, (1, -1))), axis=1)
    shape = [1] * x.ndim
    shape[ax] = -1
    return where(reshape(hit, tuple(shape)), _fill_value("index_fill", x, value), x)


def index_add(x, dim, index, source, *, alpha=1):
    """PyTorch's index_add: x with `alpha * source` slice i added to the slice `index[i]` along dim
    (repeated indices accumulate)."""
    ax = _axis(x, dim, "index_add")
    source = as_tensor(source, like=x)
    index = _index_1d("index_add", x, index, ax)
    want = tuple(index.shape[0] if d == ax else n for d, n in enumerate(x.shape))
    if source.ndim != x.ndim or tuple(source.shape) != want:
        raise ShapeError(f"index_add: source of shape {tuple(source.shape)} must have shape {want} (the "
                         f"tensor's {tuple(x.shape)} with dim {ax} the index's length {index.shape[0]})")
    shape = [1] * x.ndim
    shape[ax] = -1
    idx = broadcast_to(reshape(index, tuple(shape)), want)
    if alpha != 1:
        source = source * alpha
    return _scatter_add_exact(x, ax, idx, source)


def _inplace(name, fn, other_of):
    @_plain_outside_record
    def method(x, *args, **kwargs):
        x._check_inplace(name)
        other = other_of(args, kwargs)
        return STATE.mode.inplace(x, lambda s: fn(s, *args, **kwargs), other, name)
    method.__name__ = name
    method.__doc__ = f"In-place {name[:-1]}."
    return method


# ---- scatter ----------------------------------------------------------------------------------------

def _scatter_forward(xp, x, index, src, axis, reduce):
    out = xp.array(x, copy=True)
    idx = along_axis_index(xp, index, axis)
    if reduce == "multiply":
        _scatter_multiply(xp, out, idx, src)
    else:
        out[idx] = src
    return out


def _scatter_vjp(ctx, g):
    x, index, src = ctx.inputs
    a = ctx.attrs
    if a["reduce"] is not None:
        raise AutogradError("scatter: the derivative of scatter with reduce= is not implemented (nor in "
                            "PyTorch); use scatter_add (reduce='add') or compute the product out of place")
    gx = apply(SCATTER, (g, index, 0), a) if ctx.needs_input_grad[0] else None
    gsrc = _gather(g, index, a["axis"]) if isinstance(src, Tensor) and ctx.needs_input_grad[2] else None
    return gx, None, gsrc


def _scatter_onnx(ctx, node, x, index, src):
    a = ctx.attrs(node)
    dt = out_dtype(node)
    index = ctx.cast(index, node.inputs[1].aval.dtype, np.int64)
    src = ctx.arg(node.inputs[2], src, dt)
    if not isinstance(node.inputs[2].aval.shape, tuple) or getattr(node.inputs[2], "weak", False) \
            or node.inputs[2].aval.ndim == 0:
        src = ctx.emit("Expand", [src, ctx.shape_of(index)])
    if a["reduce"] == "multiply":
        ctx.require(16, "scatter with reduce='multiply' (ScatterElements with reduction='mul')")
        return ctx.emit("ScatterElements", [x, index, src], axis=int(a["axis"]), reduction="mul")
    return ctx.emit("ScatterElements", [x, index, src], axis=int(a["axis"]))


def _scatter_infer(x, index, src, axis, reduce):
    return Aval(x.shape, x.dtype)


SCATTER = defop("scatter", _scatter_forward, _scatter_infer, _scatter_vjp, onnx=_scatter_onnx)


def _scatter_args(op, x, dim, index, src):
    """(axis, index, src) checked as PyTorch does: index has x's number of dims, no larger than x outside
    dim and no larger than src anywhere (src's leading part is read)."""
    ax = _axis(x, dim, op)
    index = as_tensor(index, like=x)
    if index.dtype.kind not in "iu":
        raise DTypeError(f"{op}: index must be an integer tensor, got {index.dtype}")
    if index.ndim != x.ndim and not (index.ndim == 0 and x.ndim == 0):
        raise ShapeError(f"{op}: index has {index.ndim} dims, the tensor has {x.ndim} (shape {tuple(x.shape)})")
    if any(_static(i) and _static(n) and i > n for d, (i, n) in enumerate(zip(index.shape, x.shape)) if d != ax):
        raise ShapeError(f"{op}: index shape {tuple(index.shape)} exceeds the tensor's shape {tuple(x.shape)} "
                         f"outside dim {ax}")
    check_index(op, x, index, ax)
    if isinstance(src, Tensor) or isinstance(src, (np.ndarray, list)):
        src = as_tensor(src, like=x)
        if src.ndim != index.ndim:
            raise ShapeError(f"{op}: src has {src.ndim} dims, index has {index.ndim}")
        if any(_static(i) and _static(s) and i > s for i, s in zip(index.shape, src.shape)):
            raise ShapeError(f"{op}: index shape {tuple(index.shape)} exceeds src shape {tuple(src.shape)}")
        if tuple(src.shape) != tuple(index.shape):
            src = src[tuple(slice(0, i) for i in index.shape)]
        if src.dtype != x.dtype:
            if not isinstance(src, Tensor) or src.dtype.kind != x.dtype.kind:
                raise DTypeError(f"{op}: src dtype {src.dtype} differs from the tensor's {x.dtype}")
            src = astype(src, x.dtype)
    return ax, index, src


def scatter(x, dim, index, src=None, *, value=None, reduce=None):
    """PyTorch's scatter (out of place): out = x.clone(); out[index[i][j]][j] = src[i][j] (dim=0), or the
    number `value`. reduce='add' accumulates (scatter_add), reduce='multiply' multiplies in. Where index
    repeats a position without reduce, which write lands is unspecified (as in PyTorch)."""
    if src is None:
        if value is None:
            raise TypeError("scatter: pass src (a tensor) or value (a number)")
        src = value
    if reduce not in (None, "add", "multiply"):
        raise ValueError(f"scatter: reduce must be 'add' or 'multiply', got {reduce!r}")
    if not isinstance(src, (Tensor, np.ndarray, list)):
        if not isinstance(src, (int, float, bool, np.number)):
            raise TypeError(f"scatter: src must be a tensor or a number, got {type(src).__name__}")
        if x.dtype.kind in "iub" and isinstance(src, float) and not float(src).is_integer():
            raise DTypeError(f"scatter: cannot write the float {src} into a {x.dtype} tensor")
        src = src.item() if isinstance(src, np.number) else src
        src = int(src) if x.dtype.kind in "iu" else bool(src) if x.dtype.kind == "b" else float(src)
    ax, index, src = _scatter_args("scatter", x, dim, index, src)
    if reduce == "add":
        if not isinstance(src, Tensor):
            src = full_like(index, src, dtype=x.dtype)
        return _scatter_add_exact(x, ax, index, src)
    return apply(SCATTER, (x, index, src), {"axis": ax, "reduce": reduce})


def scatter_add(x, dim, index, src):
    """PyTorch's scatter_add (out of place): out[index[i][j]][j] += src[i][j] (dim=0); src may be larger
    than index (its leading part is read)."""
    ax, index, src = _scatter_args("scatter_add", x, dim, index, as_tensor(src, like=x))
    return _scatter_add_exact(x, ax, index, src)


def _src_of(args, kwargs):
    src = args[2] if len(args) > 2 else kwargs.get("src", kwargs.get("value"))
    return src if isinstance(src, Tensor) else None


tril_ = _inplace("tril_", tril, lambda a, k: None)
triu_ = _inplace("triu_", triu, lambda a, k: None)
scatter_ = _inplace("scatter_", scatter, _src_of)
scatter_add_ = _inplace("scatter_add_", scatter_add, _src_of)
index_fill_ = _inplace("index_fill_", index_fill, lambda a, k: a[2] if len(a) > 2 and isinstance(a[2], Tensor) else None)
index_add_ = _inplace("index_add_", index_add, lambda a, k: a[2] if len(a) > 2 and isinstance(a[2], Tensor) else None)


# ---- roll, repeat_interleave --------------------------------------------------------------------------

def _roll_onnx(ctx, node, x):
    """Per axis: Slice from n - (shift mod n) to the end, then from 0 to there; n read from the shape at
    run time, so the graph rolls right at every size of a dynamic axis."""
    a = ctx.attrs(node)
    shape = ctx.shape_of(x)
    out = x
    for s, ax in zip(a["shifts"], a["axes"]):
        n = ctx.emit("Gather", [shape, ctx.i64([ax])], axis=0)
        cut = ctx.emit("Sub", [n, ctx.emit("Mod", [ctx.i64([s]), n])])
        tail = ctx.emit("Slice", [out, cut, ctx.i64([INT64_MAX]), ctx.i64([ax])])
        head = ctx.emit("Slice", [out, ctx.i64([0]), cut, ctx.i64([ax])])
        out = ctx.emit("Concat", [tail, head], axis=ax)
    return out if out is not x else ctx.emit("Identity", [x])


ROLL = defop("roll", lambda xp, x, shifts, axes: xp.roll(x, shifts, axes) if axes else x.copy(),
             lambda x, shifts, axes: Aval(x.shape, x.dtype),
             lambda ctx, g: (apply(ROLL, (g,), {"shifts": tuple(-s for s in ctx.attrs["shifts"]),
                                                "axes": ctx.attrs["axes"]}),), onnx=_roll_onnx)


def roll(x, shifts, dims=None):
    """PyTorch's roll: elements shifted along dims, wrapping around; with dims=None the tensor is rolled
    flattened and reshaped back."""
    if dims is None:
        if isinstance(shifts, (tuple, list)):
            if len(shifts) != 1:
                raise ShapeError(f"roll: without dims, shifts must be one int, got {tuple(shifts)}")
            shifts = shifts[0]
        return reshape(roll(reshape(x, (-1,)), shifts, 0), tuple(x.shape))
    shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(shifts) != len(dims):
        raise ShapeError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    for s in shifts:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"roll: shifts must be ints, got {s!r}")
    if not x.ndim:
        return x.clone() if isinstance(x, Tensor) else x
    axes = tuple(_axis(x, d, "roll") for d in dims)
    return apply(ROLL, (x,), {"shifts": tuple(int(s) for s in shifts), "axes": axes})


def _repeat_index_forward(xp, counts):
    if counts.size and int(counts.min()) < 0:
        raise InvalidValue(f"repeat_interleave: repeats must be non-negative, got {int(counts.min())}")
    return xp.repeat(xp.arange(counts.shape[0], dtype=np.int64), counts)


def _repeat_index_onnx(ctx, node, counts):
    """Slot j reads the position whose running count first exceeds j."""
    counts = ctx.cast(counts, node.inputs[0].aval.dtype, np.int64)
    ends = ctx.emit("CumSum", [counts, ctx.const(np.int64(0))])
    total = ctx.reduce("ReduceSum", counts, None, False)
    slots = ctx.emit("Range", [ctx.const(np.int64(0)), total, ctx.const(np.int64(1))])
    passed = ctx.emit("Cast", [ctx.emit("LessOrEqual", [ctx.unsqueeze(ends, [0]), ctx.unsqueeze(slots, [1])])],
                      to=ctx.onnx_dtype(np.int64))
    return ctx.reduce("ReduceSum", passed, (1,), False)


# the positions repeat_interleave reads: position i repeated counts[i] times (the size is the counts' sum)
REPEAT_INDEX = defop("repeat_index", _repeat_index_forward, lambda counts: Aval((Dim("repeat_interleave"),), np.int64),
                     None, differentiable=False, shape_from_values=True, foldable=False, onnx=_repeat_index_onnx)


def repeat_interleave(x, repeats=None, dim=None, *, output_size=None):
    """PyTorch's repeat_interleave: each element (or slice along dim) repeated `repeats` times in place;
    repeats is an int or a tensor with one count per slice; dim=None repeats the flattened tensor.
    `repeat_interleave(counts)` alone gives arange(len(counts)) repeated by counts."""
    if repeats is None:
        counts = as_tensor(x)
        return repeat_interleave(arange(counts.shape[0], device=counts.device), counts, 0, output_size=output_size)
    if dim is None:
        x, dim = reshape(x, (-1,)), 0
    ax = _axis(x, dim, "repeat_interleave") if x.ndim else None
    if ax is None:
        x, ax = reshape(x, (1,)), 0
    if isinstance(repeats, Tensor) and repeats._data is not None and repeats.ndim <= 1 and repeats.numel() == 1 \
            and repeats.dtype.kind in "iu":
        repeats = int(repeats.item())   # one count for every slice
    if isinstance(repeats, (int, np.integer)) and not isinstance(repeats, bool):
        r = int(repeats)
        if r < 0:
            raise InvalidValue(f"repeat_interleave: repeats must be non-negative, got {r}")
        shape = tuple(x.shape)
        wide = broadcast_to(unsqueeze(x, ax + 1), shape[:ax + 1] + (r,) + shape[ax + 1:])
        n = shape[ax]
        merged = n * r if _static(n) else -1
        return reshape(wide, shape[:ax] + (merged,) + shape[ax + 1:])
    repeats = as_tensor(repeats, like=x)
    if repeats.dtype.kind not in "iu":
        raise DTypeError(f"repeat_interleave: repeats must be integers, got {repeats.dtype}")
    if repeats.ndim > 1:
        raise ShapeError(f"repeat_interleave: repeats must be 0-d or 1-D, got shape {tuple(repeats.shape)}")
    n = x.shape[ax]
    if repeats.ndim == 0 or (_static(repeats.shape[0]) and repeats.shape[0] == 1):
        repeats = broadcast_to(reshape(repeats, (1,)), (n,))
    if _static(n) and _static(repeats.shape[0]) and repeats.shape[0] != n:
        raise ShapeError(f"repeat_interleave: {repeats.shape[0]} repeats for dim {ax} of size {n} "
                         f"(tensor shape {tuple(x.shape)})")
    if repeats._data is not None and repeats.numel():
        counts = repeats._data
        if int(counts.min()) < 0:
            raise InvalidValue(f"repeat_interleave: repeats must be non-negative, got {int(counts.min())}")
        if output_size is not None and int(counts.sum()) != output_size:
            raise InvalidValue(f"repeat_interleave: output_size={output_size} but the repeats sum to "
                               f"{int(counts.sum())}")
    if output_size is None:   # eager: the counts' values; traced: the tracer's data-dependent-size error
        return getitem(x, (slice(None),) * ax + (apply(REPEAT_INDEX, (repeats,)),))
    # slot j of the output reads the slice whose cumulative count first exceeds j
    ends = cumsum(repeats, 0)
    slots = arange(int(output_size), device=x.device)
    idx = (reshape(ends, (1, -1)) <= reshape(slots, (-1, 1))).astype(np.int64).sum(axis=1)
    return getitem(x, (slice(None),) * ax + (idx,))


# ---- multinomial -------------------------------------------------------------------------------------

def _check_probs(xp, p, num_samples, replacement):
    if p.size == 0 or p.shape[-1] == 0:
        raise InvalidValue(f"multinomial: needs at least one category, got probabilities of shape {p.shape}")
    if not bool(xp.all(xp.isfinite(p))) or bool(xp.any(p < 0)):
        raise InvalidValue("multinomial: probabilities must be finite and non-negative")
    sums = p.sum(axis=-1)
    if bool(xp.any(sums <= 0)):
        raise InvalidValue("multinomial: invalid distribution (a row of probabilities sums to 0)")
    if not replacement:
        if num_samples > p.shape[-1]:
            raise InvalidValue(f"multinomial: cannot draw {num_samples} samples without replacement from "
                               f"{p.shape[-1]} categories")
        if bool(xp.any((p > 0).sum(axis=-1) < num_samples)):
            raise InvalidValue(f"multinomial: invalid distribution (fewer than {num_samples} categories have "
                               f"non-zero probability, with replacement=False)")


def _multinomial_forward(xp, p, num_samples, replacement, gen):
    rng = gen if gen is not None else generator(device_of_array(p))
    p2 = p.reshape(-1, p.shape[-1]).astype(np.float64)
    _check_probs(xp, p2, num_samples, replacement)
    rows = p2.shape[0]
    if replacement:
        cdf = xp.cumsum(p2, axis=-1)
        cdf = cdf / cdf[:, -1:]
        u = rng.random((rows, num_samples))
        out = xp.stack([xp.searchsorted(cdf[r], u[r], side="right") for r in range(rows)]) if rows else \
            xp.zeros((0, num_samples), np.int64)
        out = xp.minimum(out, p2.shape[-1] - 1)
    else:
        # the exponential race: -log(u)/p is an Exp(p) arrival time; the first num_samples to arrive are a
        # draw without replacement (categories with p = 0 never arrive)
        u = rng.random(p2.shape)
        with np.errstate(divide="ignore"):
            keys = -xp.log1p(-u) / p2
        if xp is np and num_samples < p2.shape[-1] // 4:   # the first few arrivals: partition, then sort those
            near = np.argpartition(keys, num_samples - 1, axis=-1)[:, :num_samples]
            out = np.take_along_axis(near, np.argsort(np.take_along_axis(keys, near, -1), axis=-1), -1)
        else:
            out = xp.argsort(keys, axis=-1)[:, :num_samples]
    return out.astype(np.int64).reshape(p.shape[:-1] + (num_samples,))


def _multinomial_onnx(ctx, node, p):
    a = ctx.attrs(node)
    src = node.inputs[0].aval.dtype
    p = ctx.cast(p, src, np.float32)
    vector = node.inputs[0].aval.ndim == 1
    if vector:
        p = ctx.unsqueeze(p, [0])
    if a["replacement"]:
        out = ctx.emit("Multinomial", [ctx.emit("Log", [p])], sample_size=int(a["num_samples"]),
                       dtype=ctx.onnx_dtype(np.int64))
    else:
        u = ctx.emit("RandomUniformLike", [p], dtype=ctx.onnx_dtype(np.float32), low=0.0, high=1.0)
        keys = ctx.emit("Div", [ctx.emit("Neg", [ctx.emit("Log", [ctx.emit("Sub", [ctx.const(1.0, np.float32), u])])]), p])
        _, out = ctx.emit("TopK", [keys, ctx.i64([int(a["num_samples"])])], n_out=2, axis=-1, largest=0, sorted=1)
    return ctx.squeeze(out, [0]) if vector else out


MULTINOMIAL = defop("multinomial", _multinomial_forward,
                    lambda p, num_samples, replacement, gen: Aval(tuple(p.shape[:-1]) + (num_samples,), np.int64),
                    None, differentiable=False, pure=False, foldable=False, onnx=_multinomial_onnx)


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """PyTorch's multinomial: `num_samples` category indices per row of the (1-D or 2-D) non-negative
    weights `input` (they need not sum to 1), with or without replacement. `generator` is a
    numpy.random.Generator (default: dualgraph's generator of the input's device, seeded by
    dg.manual_seed). Not differentiable."""
    p = as_tensor(input)
    if p.ndim not in (1, 2):
        raise ShapeError(f"multinomial: input must be 1-D or 2-D, got shape {tuple(p.shape)}")
    if p.dtype.kind != "f":
        raise DTypeError(f"multinomial: input must be a floating tensor of weights, got {p.dtype}")
    if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool) or num_samples <= 0:
        raise InvalidValue(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    if generator is not None and not hasattr(generator, "random"):
        raise TypeError(f"multinomial: generator must be a numpy.random.Generator, got {type(generator).__name__}")
    return apply(MULTINOMIAL, (p.detach(),), {"num_samples": int(num_samples), "replacement": bool(replacement),
                                              "gen": generator})


# ---- the Tensor methods this module adds (bound in dualgraph/_methods.py) ------------------------------

METHODS = dict(
    sort=sort, argsort=argsort, msort=msort, topk=topk, max=max, min=min, median=median, kthvalue=kthvalue,
    mode=mode,
    cumprod=cumprod, cummax=cummax, cummin=cummin, tril=tril, triu=triu, tril_=tril_, triu_=triu_,
    masked_fill=masked_fill,
    masked_fill_=masked_fill_, where=_where_method, masked_select=masked_select, take=take,
    index_fill=index_fill, index_fill_=index_fill_, index_add=index_add, index_add_=index_add_,
    scatter=scatter, scatter_=scatter_, scatter_add=scatter_add, scatter_add_=scatter_add_, roll=roll,
    repeat_interleave=repeat_interleave, multinomial=multinomial,
)
