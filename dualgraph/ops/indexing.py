"""Indexing: getitem (basic, advanced, boolean), in-place setitem, take_along_axis with numpy's
broadcasting, PyTorch's gather, index_select, one_hot, embedding.

An index is split into a hashable template (slices, ints, None, Ellipsis, and slots) and the
tensors that fill its slots; the tensors are op inputs, so a traced graph reads them at run time.
"""
import numpy as np

from .._state import STATE
from ..backend import scatter_add as _scatter_add
from ..dispatch import apply
from ..errors import IndexOutOfRange, ShapeError
from ..graph.avals import Aval, Dim
from ..kernels.scatter import add_rows
from ..tensor import Tensor, as_tensor
from .creation import arange, zeros_like
from .dims import leaves
from .elementwise import eq
from .gather import TAKE_ALONG_AXIS, check_index
from .infer import broadcast_shapes, norm_axes
from .onnx_rules import INT64_MAX, INT64_MIN, NotExportable, is_sym, out_dtype
from .reduction import sum_to
from .registry import defop
from .shape import broadcast_to


class _Slot:
    __slots__ = ("i",)

    def __init__(self, i):
        self.i = i

    def __repr__(self):
        return f"%{self.i}"

    def __eq__(self, other):
        return isinstance(other, _Slot) and other.i == self.i

    def __hash__(self):
        return hash(("slot", self.i))


def split_index(index, like):
    if not isinstance(index, tuple):
        index = (index,)
    template, tensors = [], []
    for item in index:
        if isinstance(item, range):  # PyTorch indexes with a range as with the list of its ints (even empty)
            item = np.arange(item.start, item.stop, item.step, dtype=np.int64)
        if isinstance(item, (list, tuple, np.ndarray)) or (isinstance(item, Tensor)):
            t = as_tensor(item, like=None) if not isinstance(item, Tensor) else item
            if not isinstance(item, Tensor) and like is not None and like.device is not t.device:
                t = t.to(like.device)
            if t.dtype.kind not in "biu":
                raise IndexOutOfRange(f"getitem: tensors used as indices must be integer or bool, got {t.dtype}")
            template.append(_Slot(len(tensors)))
            tensors.append(t)
        elif isinstance(item, (slice, int, type(None), type(Ellipsis), np.integer)):
            if isinstance(item, slice):
                item = slice(*(int(v) if isinstance(v, (np.integer, Tensor)) else v
                               for v in (item.start, item.stop, item.step)))
            template.append(int(item) if isinstance(item, np.integer) else item)
        else:
            raise IndexOutOfRange(f"getitem: unsupported index {item!r} of type {type(item).__name__}")
    return tuple(template), tuple(tensors)


def build_index(template, arrays):
    return tuple(arrays[t.i] if isinstance(t, _Slot) else t for t in template)


def _is_basic(template):
    return not any(isinstance(t, _Slot) for t in template)


def _getitem_forward(xp, x, *idx, template):
    return x[build_index(template, idx)]


def _getitem_vjp(ctx, g):
    x, *idx = ctx.inputs
    gx = apply(INDEX_ADD_ZEROS, (g, *idx), {"template": ctx.attrs["template"], "shape": tuple(x.shape)})
    return (gx,) + (None,) * len(idx)


def _getitem_infer(x, *idx, template):
    """By evaluation on zeros, three times: symbolic dims at two probe sizes, boolean masks all-True and
    all-False. An output dim that never moves is concrete; one that tracks a symbolic input dim is that
    dim; any other (x[1:] of a symbolic axis, the count a mask selects) is a new symbolic dim."""
    if any(isinstance(t, slice) and any(isinstance(b, Dim) for b in (t.start, t.stop, t.step)) for t in template):
        return _symbolic_bounds_infer(x, idx, template)
    dims = []
    for a in (x,) + idx:
        for d in (a.shape if isinstance(a, Aval) else ()):
            if isinstance(d, Dim) and all(d is not e for e in dims):
                dims.append(d)

    def run(base, fill):
        size = {id(d): base + 3 * k for k, d in enumerate(dims)}

        def concrete(shape):
            return tuple(size[id(d)] if isinstance(d, Dim) else d for d in shape)
        arrays = [np.full(concrete(a.shape), fill, a.dtype) if isinstance(a, Aval) and a.dtype == np.bool_
                  else np.zeros(concrete(a.shape), a.dtype) if isinstance(a, Aval) else a for a in idx]
        out = _getitem_forward(np, np.zeros(concrete(x.shape), x.dtype), *arrays, template=template)
        return np.shape(out), np.asarray(out).dtype, {v: d for d in dims for v in [size[id(d)]]}

    (small, dtype, at_small), (large, _, at_large), (masked, _, _) = run(7, True), run(20, True), run(7, False)
    shape = []
    for a, b, c in zip(small, large, masked):
        if a == b == c:
            shape.append(a)
        elif a == c and a in at_small and b in at_large and at_small[a] is at_large[b]:
            shape.append(at_small[a])
        else:
            shape.append(Dim("?"))
    return Aval(tuple(shape), dtype)


class _Unknown(Exception):
    pass


def _symbolic_bounds_infer(x, idx, template):
    """Slices whose bounds are sizes read from a traced shape (`x[:, :t]`, `mask[:t, :t]`): the axis
    keeps `(stop - start) / step` elements, a size expression, each bound taken as a position inside
    the axis (numpy would clip a stop past the end; a later op then meets the real size at run time)."""
    if idx:
        raise TypeError(f"the symbolic dim in {template} has no integer value while tracing (slices with "
                        f"symbolic bounds mixed with index tensors)")
    plain = tuple(slice(None) if isinstance(t, slice) else t for t in template)
    shape = list(_getitem_infer(x, template=plain).shape)
    n_ell = len(x.shape) - sum(1 for t in template if t is not None and t is not Ellipsis)
    axis, out = 0, 0
    for t in template:
        if t is None:
            out += 1
        elif t is Ellipsis:
            axis += n_ell
            out += n_ell
        elif isinstance(t, slice):
            if any(isinstance(b, Dim) for b in (t.start, t.stop, t.step)):
                shape[out] = _slice_length(t, x.shape[axis])
            axis += 1
            out += 1
        else:
            axis += 1
    return Aval(tuple(shape), x.dtype)


def _sign_at_probes(b):
    """+1 / -1 when the size expression b is >= 0 / < 0 at two probe sizes of its dims, else 0."""
    if not isinstance(b, Dim):
        return 1 if b >= 0 else -1
    if not hasattr(b, "evaluate"):
        return 1   # a plain symbolic size
    dims = list(dict.fromkeys(leaves(b)))
    signs = set()
    for base in (7, 20):
        try:
            v = b.evaluate({d: base + 3 * k for k, d in enumerate(dims)})
        except (KeyError, TypeError, ZeroDivisionError):
            return 0
        signs.add(1 if v >= 0 else -1)
    return signs.pop() if len(signs) == 1 else 0


def _slice_length(s, n):
    step = 1 if s.step is None else s.step
    if not isinstance(step, int) or step <= 0:
        raise TypeError(f"the symbolic dim in slice {s} has no integer value while tracing (a symbolic slice "
                        f"needs a positive integer step)")

    def position(b, default):
        if b is None:
            return default
        sign = _sign_at_probes(b)
        if sign == 0:   # a bound that may count from either end: its length is only known at run time
            raise _Unknown()
        return n + b if sign < 0 else b
    try:
        start, stop = position(s.start, 0), position(s.stop, n)
    except _Unknown:
        return Dim("?")
    length = stop if isinstance(start, int) and start == 0 else stop - start
    return length if step == 1 else (length + (step - 1)) // step


# ---- numpy's indexing as ONNX nodes -------------------------------------------------------------------

def _expand_template(template, ndim, slot_ndims):
    """Replace Ellipsis by full slices and pad with full slices; bool slots consume their ndim."""
    consumed = 0
    for t in template:
        if isinstance(t, _Slot):
            consumed += slot_ndims[t.i]
        elif t is not None and t is not Ellipsis:
            consumed += 1
    fill = ndim - consumed
    out, seen = [], False
    for t in template:
        if t is Ellipsis:
            if seen:
                raise NotExportable("an index with two Ellipsis")
            out.extend([slice(None)] * fill)
            seen = True
        else:
            out.append(t)
    if not seen:
        out.extend([slice(None)] * fill)
    return out


def _slice_bounds(s, dim=None):
    """ONNX Slice (start, end, step) for numpy's slice `s` on an axis of size `dim`.

    With a static size, numpy's own normalization (slice.indices) decides: ONNX clamps an
    out-of-range start differently for negative steps (numpy: x[-5::-1] on 4 elements is empty)."""
    if any(is_sym(b) for b in (s.start, s.stop, s.step)):
        # a bound that is a size read from a traced shape (a position inside the axis): computed in the
        # model from the input shapes; ONNX Slice counts a negative one from the end, as numpy does
        step = 1 if s.step is None else s.step
        if not isinstance(step, int) or step <= 0:
            raise NotExportable(f"the slice {s}: a symbolic bound needs a positive integer step")
        return (0 if s.start is None else s.start), (INT64_MAX if s.stop is None else s.stop), step
    if isinstance(dim, int) and not is_sym(dim):
        s0, s1, st = s.indices(dim)
        if len(range(s0, s1, st)) == 0:
            return 0, 0, st
        return s0, (s1 if s1 >= 0 else INT64_MIN), st
    step = 1 if s.step is None else int(s.step)
    if step > 0:
        start = 0 if s.start is None else int(s.start)
        stop = INT64_MAX if s.stop is None else int(s.stop)
    else:
        start = INT64_MAX if s.start is None else int(s.start)
        stop = INT64_MIN if s.stop is None else int(s.stop)
    return start, stop, step


def _index_onnx(ctx, x, shape, template, slots):
    """numpy's x[index] as ONNX nodes. `slots` lists (onnx name, aval) of the tensors in the index."""
    slot_ndims = [aval.ndim if aval.dtype == np.bool_ else 1 for _, aval in slots]
    items = _expand_template(template, len(shape), slot_ndims)
    # walk the index: which axis each item reads
    starts, ends, axes, steps = [], [], [], []
    ints, adv, nones, out_pos, axis = [], [], [], 0, 0
    for t in items:
        if t is None:
            nones.append(out_pos)
            out_pos += 1
        elif isinstance(t, slice):
            if not (t.start is None and t.stop is None and t.step in (None, 1)):
                s0, s1, st = _slice_bounds(t, shape[axis])
                starts.append(s0), ends.append(s1), axes.append(axis), steps.append(st)
            axis += 1
            out_pos += 1
        elif isinstance(t, _Slot):
            name, aval = slots[t.i]
            if aval.dtype == np.bool_:
                if aval.ndim == 0:
                    raise NotExportable("indexing with a 0-d bool")
                nz = ctx.emit("NonZero", [name])
                for k in range(aval.ndim):
                    row = ctx.emit("Gather", [nz, ctx.const(np.int64(k))], axis=0)
                    adv.append((axis, row, 1))
                    axis += 1
            else:
                adv.append((axis, ctx.cast(name, aval.dtype, np.int64), aval.ndim))
                axis += 1
        else:
            ints.append((axis, int(t)))
            axis += 1
    if axis != len(shape):
        raise NotExportable(f"index {template} does not fit a tensor with {len(shape)} dims")
    out = x
    if not adv:
        for a, i in ints:
            starts.append(i), ends.append(i + 1 if i != -1 else INT64_MAX), axes.append(a), steps.append(1)
        if axes:
            out = ctx.slice(out, starts, ends, axes, steps)
        if ints:
            out = ctx.squeeze(out, [a for a, _ in ints])
        if nones:
            out = ctx.unsqueeze(out, nones)
        if out is x:
            out = ctx.emit("Identity", [x])
        return out
    if nones:
        raise NotExportable("an index mixing None with integer or bool arrays")
    if axes:
        out = ctx.slice(out, starts, ends, axes, steps)
    # with an array index present, integers count as 0-d array indices (numpy)
    adv = sorted(adv + [(a, ctx.const(np.int64(i)), 0) for a, i in ints])
    if len(adv) == 1 and adv[0][2] > 0:
        a, idx, _ = adv[0]
        return ctx.emit("Gather", [out, idx], axis=a)
    adv_axes = [a for a, _, _ in adv]
    adjacent = adv_axes == list(range(adv_axes[0], adv_axes[0] + len(adv_axes)))
    rest = [i for i in range(len(shape)) if i not in adv_axes]
    xt = ctx.emit("Transpose", [out], perm=adv_axes + rest)
    xshape = ctx.shape_of(out)
    norm = []
    for a, idx, _ in adv:
        dim = ctx.emit("Gather", [xshape, ctx.const(np.int64(a))], axis=0)
        neg = ctx.emit("Less", [idx, ctx.const(np.int64(0))])
        norm.append(ctx.emit("Where", [neg, ctx.emit("Add", [idx, dim]), idx]))
    total = norm[0]
    for n in norm[1:]:
        total = ctx.emit("Add", [total, n])
    bshape = ctx.shape_of(total)
    stacked = [ctx.unsqueeze(ctx.emit("Expand", [n, bshape]), [-1]) for n in norm]
    ind = ctx.emit("Concat", stacked, axis=-1)
    out = ctx.emit("GatherND", [xt, ind])
    b_nd = max(nd for _, _, nd in adv)
    if adjacent and adv_axes[0] > 0:
        p = adv_axes[0]
        n_rest = len(rest)
        perm = list(range(b_nd, b_nd + p)) + list(range(b_nd)) + list(range(b_nd + p, b_nd + n_rest))
        out = ctx.emit("Transpose", [out], perm=perm)
    return out


def _getitem_onnx(ctx, node, x, *idx):
    slots = [(n, v.aval) for n, v in zip(idx, node.inputs[1:])]
    return _index_onnx(ctx, x, ctx.shape(node.inputs[0]), ctx.attrs(node)["template"], slots)


def _iota_onnx(ctx, shape):
    """arange(prod(shape)).reshape(shape) as int64: the flat position of every element."""
    st = ctx.shape_tensor(shape)
    n = ctx.reduce("ReduceProd", st, None, False)
    flat = ctx.emit("Range", [ctx.const(np.int64(0)), n, ctx.const(np.int64(1))])
    return ctx.emit("Reshape", [flat, st]), st


def _positions_onnx(ctx, node, shape, first_slot, idx_names):
    """The flat positions the node's index selects in a tensor of `shape`, and that shape as a tensor."""
    slots = [(n, v.aval) for n, v in zip(idx_names, node.inputs[first_slot:])]
    iota, st = _iota_onnx(ctx, shape)
    return _index_onnx(ctx, iota, shape, ctx.attrs(node)["template"], slots), st


def _selects_by_mask(x, *idx, **attrs):
    return any(isinstance(a, Aval) and a.dtype == np.bool_ for a in idx)


GETITEM = defop("getitem", _getitem_forward, _getitem_infer, _getitem_vjp, view=True, onnx=_getitem_onnx,
                shape_from_values=_selects_by_mask, sized_attrs=lambda gen, node, x, attrs: (
                    gen.getitem_attrs(x, attrs) if any(is_sym(d) for d in x) else attrs))


def _index_add_zeros_forward(xp, g, *idx, template, shape):
    out = xp.zeros(shape, dtype=g.dtype)
    index = build_index(template, idx)
    if _is_basic(template):
        out[index] = g
    elif xp is np and _leading_rows(index, g, shape):
        add_rows(out, index[0] if isinstance(index, tuple) else index, g)
    else:
        _scatter_add(xp, out, index, g)
    return out


def _leading_rows(index, g, shape):
    """x[i] for one integer array i (embedding's lookup): its gradient adds whole rows of g."""
    i = index[0] if isinstance(index, tuple) and len(index) == 1 else index
    return (isinstance(i, np.ndarray) and i.dtype.kind in "iu" and len(shape) >= 1
            and g.shape == i.shape + tuple(shape[1:]))


def _index_add_zeros_onnx(ctx, node, g, *idx):
    a = ctx.attrs(node)
    shape = a["shape"]
    basic = not any(isinstance(t, _Slot) for t in a["template"])
    pos, st = _positions_onnx(ctx, node, shape, 1, idx)
    upd = ctx.emit("Reshape", [ctx.emit("Expand", [g, ctx.shape_of(pos)]), ctx.i64([-1])])
    flat_pos = ctx.emit("Reshape", [pos, ctx.i64([-1])])
    n = ctx.reduce("ReduceProd", st, None, True)
    zeros = ctx.emit("Expand", [ctx.const(0, out_dtype(node)), n])
    if basic:   # basic indices never repeat a position
        out = ctx.emit("ScatterElements", [zeros, flat_pos, upd], axis=0)
    else:
        ctx.require(16, "the gradient of advanced indexing (ScatterElements with reduction='add')")
        out = ctx.emit("ScatterElements", [zeros, flat_pos, upd], axis=0, reduction="add")
    return ctx.emit("Reshape", [out, st])


INDEX_ADD_ZEROS = defop(
    "index_add_zeros", _index_add_zeros_forward,
    lambda g, *idx, template, shape: Aval(shape, g.dtype),
    lambda ctx, g: (apply(GETITEM, (g, *ctx.inputs[1:]), {"template": ctx.attrs["template"]}),)
    + (None,) * (len(ctx.inputs) - 1), onnx=_index_add_zeros_onnx, fresh=True,
    sized_attrs=lambda gen, node, x, attrs: dict(attrs, **gen.guessed_attrs(attrs["shape"], "shape")))


def getitem(x, index):
    template, tensors = split_index(index, x)
    _check_bounds(x, template)
    return apply(GETITEM, (x, *tensors), {"template": template})


def _check_bounds(x, template):
    """Clear errors for out-of-range integer indices (numpy's own message lacks the shape)."""
    dim = 0
    for t in template:
        if t is Ellipsis:
            return
        if t is None:
            continue
        if isinstance(t, int):
            if dim >= x.ndim:
                raise IndexOutOfRange(f"getitem: too many indices for a tensor of shape {tuple(x.shape)}")
            n = x.shape[dim]
            if isinstance(n, int) and not -n <= t < n:
                raise IndexOutOfRange(f"getitem: index {t} is out of range for axis {dim} with size {n} "
                                      f"(tensor shape {tuple(x.shape)})")
        dim += 1


def _index_put_forward(xp, x, v, *idx, template):
    out = xp.array(x, copy=True)
    out[build_index(template, idx)] = _without_leading_ones(v)
    return out


def _index_put_vjp(ctx, g):
    x, v, *idx = ctx.inputs
    template = ctx.attrs["template"]
    gx = apply(INDEX_PUT, (g, zeros_like(v) if isinstance(v, Tensor) else 0.0, *idx), {"template": template}) \
        if ctx.needs_input_grad[0] else None
    gv = None
    if ctx.needs_input_grad[1]:
        gv = sum_to(apply(GETITEM, (g, *idx), {"template": template}), v.shape)
    return (gx, gv) + (None,) * len(idx)


def _index_put_onnx(ctx, node, x, v, *idx):
    pos, _ = _positions_onnx(ctx, node, ctx.shape(node.inputs[0]), 2, idx)
    v = ctx.arg(node.inputs[1], v, out_dtype(node))
    upd = ctx.emit("Reshape", [ctx.emit("Expand", [v, ctx.shape_of(pos)]), ctx.i64([-1])])
    flat_pos = ctx.emit("Reshape", [pos, ctx.i64([-1])])
    flat_x = ctx.emit("Reshape", [x, ctx.i64([-1])])
    out = ctx.emit("ScatterElements", [flat_x, flat_pos, upd], axis=0)
    return ctx.emit("Reshape", [out, ctx.shape_of(x)])


def _index_put_inplace(xp, x, v, *idx, template):
    try:
        x[build_index(template, idx)] = _without_leading_ones(v)
    except IndexError as e:
        raise IndexOutOfRange(f"setitem: {e} (tensor shape {tuple(x.shape)})") from None
    except ValueError as e:
        raise ShapeError(f"setitem: cannot assign a value of shape {tuple(np.shape(v))} to "
                         f"x{list(template)} of a tensor with shape {tuple(x.shape)}: {e}") from None


INDEX_PUT = defop("index_put", _index_put_forward,
                  lambda x, v, *idx, template: Aval(x.shape, x.dtype), _index_put_vjp, onnx=_index_put_onnx,
                  inplace=_index_put_inplace)


def index_put(x, index, value):
    """Out-of-place `x[index] = value`: returns a new tensor."""
    template, tensors = split_index(index, x)
    _check_bounds(x, template)
    return apply(INDEX_PUT, (x, value, *tensors), {"template": template})


def setitem_(x, index, value):
    """`x[index] = value` in place, recording the write for autograd as PyTorch does."""
    template, tensors = split_index(index, x)
    _check_bounds(x, template)
    STATE.mode.apply_inplace(INDEX_PUT, (x, value, *tensors), {"template": template}, "setitem")


def _without_leading_ones(v):
    """As in PyTorch, the value written by x[index] = v may have more leading 1s than the slot
    (x[0] = v of shape (1,) on a vector): broadcasting adds them back wherever they were needed."""
    if getattr(v, "ndim", 0) and v.shape[0] == 1:
        shape = v.shape
        while shape and shape[0] == 1:
            shape = shape[1:]
        return v.reshape(shape)
    return v


# ---- numpy's and PyTorch's shape rules around the gather primitive -------------------------------

def take_along_axis(x, indices, axis):
    indices = as_tensor(indices, like=x)
    axis = norm_axes(axis, x.ndim, "take_along_axis")[0]
    if indices.ndim != x.ndim:
        raise ShapeError(f"take_along_axis: index has {indices.ndim} dims, input has {x.ndim}")
    check_index("take_along_axis", x, indices, axis)
    # numpy broadcasts x and indices against each other outside `axis`; the primitive takes equal dims there
    if any(a != b for d, (a, b) in enumerate(zip(x.shape, indices.shape)) if d != axis):
        common = list(broadcast_shapes("take_along_axis", tuple(1 if d == axis else n for d, n in enumerate(x.shape)),
                                       tuple(1 if d == axis else n for d, n in enumerate(indices.shape))))
        x = broadcast_to(x, tuple(x.shape[d] if d == axis else n for d, n in enumerate(common)))
        indices = broadcast_to(indices, tuple(indices.shape[d] if d == axis else n for d, n in enumerate(common)))
    return apply(TAKE_ALONG_AXIS, (x, indices), {"axis": axis})


def gather(x, dim, index):
    """PyTorch's gather(input, dim, index): out[i][j] = input[index[i][j]][j] for dim=0.

    The output has the index's shape; outside `dim` the index may be smaller than the input (PyTorch
    reads the leading part), never larger."""
    index = as_tensor(index, like=x)
    axis = norm_axes(dim, x.ndim, "gather")[0]
    if index.ndim != x.ndim:
        raise ShapeError(f"gather: index has {index.ndim} dims, input has {x.ndim}")
    if any(i > n for d, (i, n) in enumerate(zip(index.shape, x.shape)) if d != axis):
        raise ShapeError(f"gather: index shape {tuple(index.shape)} exceeds input shape {tuple(x.shape)} "
                         f"outside dim {axis}")
    check_index("gather", x, index, axis)  # here, so the error names gather and the input's own shape
    if any(i < n for d, (i, n) in enumerate(zip(index.shape, x.shape)) if d != axis):
        x = x[tuple(slice(None) if d == axis else slice(0, i) for d, i in enumerate(index.shape))]
    return take_along_axis(x, index, axis)


def index_select(x, dim=None, index=None, *, axis=None):
    if axis is not None:
        dim = axis
    if dim is None or index is None:
        raise TypeError("index_select: needs an axis (dim= or axis=) and an index")
    axis = norm_axes(dim, x.ndim, "index_select")[0]
    index = as_tensor(index, like=x)
    if index.ndim == 0:   # PyTorch takes a 0-d index as one position (the dim keeps size 1)
        index = index.reshape(1)
    if index.ndim != 1:
        raise ShapeError(f"index_select: index must be 1-D, got shape {tuple(index.shape)}")
    check_index("index_select", x, index, axis)
    return getitem(x, (slice(None),) * axis + (index,))


def embedding(indices, weight):
    """Rows of `weight` picked by integer `indices` (any shape): out.shape = indices.shape + (dim,)."""
    indices = as_tensor(indices, like=weight)
    check_index("embedding", weight, indices, 0)
    if indices._data is not None and indices.numel() and int(indices._data.min()) < 0:
        # a row id, not a position: -1 (a common padding id) must not wrap to the last row
        raise IndexOutOfRange(f"embedding: indices must lie in [0, {weight.shape[0]}), got "
                              f"{int(indices._data.min())} (weight shape {tuple(weight.shape)})")
    return getitem(weight, indices)


def one_hot(indices, num_classes=-1, dtype=None):
    indices = as_tensor(indices)
    if indices.dtype.kind not in "iu":
        raise IndexOutOfRange(f"one_hot: indices must be integers, got {indices.dtype}")
    if num_classes < 0:
        num_classes = int(indices.max()) + 1  # a traced tensor: a clear error (data-dependent shape)
    if indices._data is not None and indices.numel() and (int(indices._data.max()) >= num_classes
                                                         or int(indices._data.min()) < 0):
        raise IndexOutOfRange(f"one_hot: class values must lie in [0, {num_classes}), got "
                              f"[{int(indices._data.min())}, {int(indices._data.max())}]")
    classes = arange(num_classes, device=indices.device)
    return eq(indices.unsqueeze(-1), classes).astype(dtype or np.int64)
