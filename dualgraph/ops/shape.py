"""Shape primitives: reshape transpose broadcast_to concat pad flip to_device, and their composites
(permute, squeeze, unsqueeze, flatten, expand, stack, split, chunk).
"""
import operator

import numpy as np

from .._state import STATE
from ..backend import to_device
from ..dispatch import apply
from ..errors import ShapeError
from ..graph.avals import Aval, Dim
from ..tensor import Tensor
from .creation import zeros
from .gather import scatter_add
from .infer import broadcast_shapes, norm_axes, result_dtype
from .onnx_rules import INT64_MIN, NotExportable, args, is_sym, out_dtype, unary
from .registry import defop


def _resolve_shape(op, in_shape, shape, for_infer=False):
    shape = tuple(int(s) if not isinstance(s, Dim) else s for s in shape)
    if list(shape).count(-1) > 1:
        raise ShapeError(f"{op}: only one dimension can be -1, got {shape}")
    known = 1
    for s in shape:
        if s != -1:
            known *= s if isinstance(s, int) else 1
    total = 1
    for s in in_shape:
        total *= s if isinstance(s, int) else 1
    if any(isinstance(s, Dim) for s in in_shape) or any(isinstance(s, Dim) for s in shape):
        if -1 in shape and for_infer:  # the rule's answer; the op's attr keeps -1 for run time
            shape = tuple(_symbolic_rest(in_shape, shape) if s == -1 else s for s in shape)
        return shape  # symbolic: checked at run time
    if -1 in shape:
        if known == 0 or total % known:
            raise ShapeError(f"{op}: cannot reshape a tensor of shape {tuple(in_shape)} ({total} elements) "
                             f"into {shape}")
        shape = tuple(total // known if s == -1 else s for s in shape)
    if known != total and -1 not in shape:
        n = 1
        for s in shape:
            n *= s
        if n != total:
            raise ShapeError(f"{op}: cannot reshape a tensor of shape {tuple(in_shape)} ({total} elements) "
                             f"into {shape} ({n} elements)")
    return shape


def _symbolic_rest(in_shape, shape):
    """The size that -1 stands for when dims are symbolic: a number when the output keeps exactly the
    input's symbolic dims (x.reshape(n, -1) with n = x.shape[0]), else a new symbolic Dim."""
    sym_in = sorted(id(d) for d in in_shape if isinstance(d, Dim))
    sym_out = sorted(id(d) for d in shape if isinstance(d, Dim))
    total = known = 1
    for d in in_shape:
        total *= d if isinstance(d, int) else 1
    for d in shape:
        known *= d if isinstance(d, int) and d != -1 else 1
    if sym_in == sym_out and known and total % known == 0:
        return total // known
    return Dim("*".join(str(d) for d in in_shape) + (f"/{known}" if known != 1 else ""))


def _reshape_onnx(ctx, node, x):
    shape = tuple(ctx.attrs(node)["shape"])
    allowzero = 1 if any((not is_sym(d)) and d == 0 for d in shape) else None
    if allowzero and ctx.opset < 14:
        raise NotExportable("reshape to a shape with a zero-size dim needs opset 14 or newer")
    return ctx.emit("Reshape", [x, ctx.shape_tensor(shape)], allowzero=allowzero)


def _method_kernel(name, attr):
    """For compiled graphs: the array's own method with the node's attribute bound (numpy's function
    wrappers cost about a microsecond a call); None while the attribute holds a symbolic dim, which
    the executor fills in at each call."""
    def kernel(node, xp):
        arg = node.attrs[attr]
        if any(isinstance(d, Dim) for d in (arg if isinstance(arg, (tuple, list)) else (arg,))):
            return None
        return operator.methodcaller(name, arg)
    return kernel


RESHAPE = defop("reshape", lambda xp, x, shape: xp.reshape(x, shape),
                lambda x, shape: Aval(_resolve_shape("reshape", x.shape, shape, for_infer=True), x.dtype),
                lambda ctx, g: (reshape(g, ctx.inputs[0].shape),), view=True, keeps_order=True,
                kernel=_method_kernel("reshape", "shape"),
                onnx=_reshape_onnx, sized_attrs=lambda gen, node, x, attrs: (
                    gen.reshape_attrs(x, node.inputs[0].aval.shape, attrs) if any(is_sym(d) for d in x) else attrs))


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    shape = _resolve_shape("reshape", x.shape, shape)
    if tuple(shape) == tuple(x.shape):
        return x
    return apply(RESHAPE, (x,), {"shape": tuple(shape)})


view = reshape


def flatten(x, start_dim=0, end_dim=-1):
    nd = x.ndim
    if nd == 0:
        return reshape(x, (1,))
    s, e = norm_axes(start_dim, nd, "flatten")[0], norm_axes(end_dim, nd, "flatten")[0]
    if s > e:
        raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (shape {tuple(x.shape)})")
    n = 1
    for d in x.shape[s:e + 1]:
        n = n * d
    return reshape(x, tuple(x.shape[:s]) + (n,) + tuple(x.shape[e + 1:]))


def _transpose_vjp(ctx, g):
    axes = ctx.attrs["axes"]
    return (permute(g, tuple(np.argsort(axes).tolist())),)


TRANSPOSE = defop("transpose", lambda xp, x, axes: xp.transpose(x, axes),
                  lambda x, axes: Aval(tuple(x.shape[a] for a in axes), x.dtype), _transpose_vjp, view=True,
                  kernel=_method_kernel("transpose", "axes"),
                  onnx=lambda ctx, node, x: ctx.emit("Transpose", [x], perm=[int(a) for a in ctx.attrs(node)["axes"]]))


_SWAP_2D = {"axes": (1, 0)}


def matrix_transpose(x):
    """x.T of a 2-D tensor: the transpose op without permute's argument checks (linear layers take
    W.T twice per step forward and backward, where the checks cost more than the op)."""
    return apply(TRANSPOSE, (x,), _SWAP_2D)


def permute(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = axes[0]
    if len(axes) != x.ndim or any(not -x.ndim <= a < x.ndim for a in axes) or \
            sorted(a % max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
        raise ShapeError(f"permute: {tuple(axes)} is not a permutation of the {x.ndim} axes of shape {x.shape}")
    axes = tuple(int(a) % x.ndim for a in axes)
    if axes == tuple(range(x.ndim)):
        return x
    return apply(TRANSPOSE, (x,), {"axes": axes})


def transpose(x, dim0=None, dim1=None, axes=None):
    """PyTorch: transpose(x, a, b) swaps two axes. numpy: transpose(x) reverses, transpose(x, axes=...)."""
    if axes is not None:
        return permute(x, axes)
    if dim0 is None:
        return permute(x, tuple(reversed(range(x.ndim))))
    if isinstance(dim0, (tuple, list)):
        return permute(x, dim0)
    order = list(range(x.ndim))
    a, b = norm_axes(dim0, x.ndim, "transpose")[0], norm_axes(dim1, x.ndim, "transpose")[0]
    order[a], order[b] = order[b], order[a]
    return permute(x, order)


swapaxes = transpose


def moveaxis(x, source, destination):
    source, destination = norm_axes(source, x.ndim, "moveaxis")[0], norm_axes(destination, x.ndim, "moveaxis")[0]
    order = [i for i in range(x.ndim) if i != source]
    order.insert(destination, source)
    return permute(x, order)


def _broadcast_infer(x, shape):
    out = broadcast_shapes("broadcast_to", x.shape, shape)
    if tuple(out) != tuple(shape):
        raise ShapeError(f"broadcast_to: cannot broadcast shape {tuple(x.shape)} to {tuple(shape)}")
    return Aval(shape, x.dtype)


BROADCAST_TO = defop("broadcast_to", lambda xp, x, shape: xp.broadcast_to(x, shape), _broadcast_infer,
                     lambda ctx, g: (g,), broadcasting=True, view=True,
                     onnx=lambda ctx, node, x: ctx.emit("Expand", [x, ctx.shape_tensor(ctx.attrs(node)["shape"])]),
                     sized_attrs=lambda gen, node, x, attrs: dict(attrs, **gen.aligned_attrs(x, attrs["shape"], "shape")))


def broadcast_to(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    shape = tuple(shape)
    if tuple(x.shape) == shape:
        return x
    _broadcast_infer(Aval(x.shape, x.dtype), shape)
    return apply(BROADCAST_TO, (x,), {"shape": shape})


def expand(x, *shape):
    """PyTorch's expand: -1 keeps a dim."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    lead = len(shape) - x.ndim
    if any(s == -1 for s in shape[:max(lead, 0)]):
        raise ShapeError(f"expand: -1 keeps an existing dim; it cannot size a new leading dim "
                         f"(expanding shape {tuple(x.shape)} to {tuple(shape)})")
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
    return broadcast_to(x, shape)


def expand_as(x, other):
    return broadcast_to(x, other.shape)


def squeeze(x, axis=None, *, dim=None):
    if dim is not None:
        axis = dim
    if axis is None:
        shape = tuple(d for d in x.shape if d != 1)
    else:
        axes = norm_axes(axis, x.ndim, "squeeze")
        for a in axes:
            if x.shape[a] != 1 and isinstance(axis, (tuple, list)):
                raise ShapeError(f"squeeze: axis {a} has size {x.shape[a]}, not 1 (shape {x.shape})")
        shape = tuple(d for i, d in enumerate(x.shape) if not (i in axes and d == 1))
    return reshape(x, shape)


def unsqueeze(x, axis=None, *, dim=None):
    if dim is not None:
        axis = dim
    nd = x.ndim + 1
    if not -nd <= axis < nd:
        raise ShapeError(f"unsqueeze: axis {axis} is out of range for a result with {nd} dims")
    axis %= nd
    return reshape(x, tuple(x.shape[:axis]) + (1,) + tuple(x.shape[axis:]))


expand_dims = unsqueeze


def _concat_infer(*xs, axis):
    first = xs[0]
    for x in xs[1:]:
        if x.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != axis):
            raise ShapeError(f"concat: shapes {[tuple(v.shape) for v in xs]} differ outside axis {axis}")
    parts = [x.shape[axis] for x in xs]
    if any(isinstance(d, Dim) for d in parts):  # a sum of symbolic sizes: a new symbolic dim
        total = Dim("+".join(str(d) for d in parts))
    else:
        total = 0
        for d in parts:
            total += d
    return Aval(first.shape[:axis] + (total,) + first.shape[axis + 1:], result_dtype(*xs))


def _concat_vjp(ctx, g):
    axis = ctx.attrs["axis"]
    out, start = [], 0
    for x in ctx.inputs:
        n = x.shape[axis]
        out.append(narrow(g, axis, start, n))
        start += n
    return tuple(out)


def _concat_onnx(ctx, node, *xs):
    return ctx.emit("Concat", args(ctx, node, xs, out_dtype(node)), axis=int(ctx.attrs(node)["axis"]))


CONCAT = defop("concat", lambda xp, *xs, axis: xp.concatenate(xs, axis=axis), _concat_infer, _concat_vjp,
               onnx=_concat_onnx)


def concat(tensors, axis=0, *, dim=None):
    if dim is not None:
        axis = dim
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("concat: needs at least one tensor")
    axis = norm_axes(axis, tensors[0].ndim, "concat")[0]
    if len(tensors) == 1:
        return tensors[0]
    _concat_infer(*[Aval(t.shape, t.dtype) for t in tensors], axis=axis)
    return apply(CONCAT, tuple(tensors), {"axis": axis})


cat = concatenate = concat


def stack(tensors, axis=0, *, dim=None):
    if dim is not None:
        axis = dim
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("stack: needs at least one tensor")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ShapeError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    nd = tensors[0].ndim + 1
    axis = norm_axes(axis, nd, "stack")[0]
    return concat([unsqueeze(t, axis) for t in tensors], axis)


def narrow(x, axis=None, start=0, length=None, *, dim=None):
    """PyTorch's narrow: `length` elements of `axis` (or dim=) from `start`; a view-like slice."""
    if dim is not None:
        axis = dim
    if axis is None or length is None:
        raise TypeError("narrow: needs an axis (or dim=), a start and a length")
    axis = norm_axes(axis, x.ndim, "narrow")[0]
    n = x.shape[axis]
    if start < 0 and isinstance(n, int):
        start += n  # PyTorch: a negative start counts from the end
    if isinstance(n, int) and not (0 <= start and length >= 0 and start + length <= n):
        raise ShapeError(f"narrow: start {start} + length {length} exceeds axis {axis} of size {n} "
                         f"(shape {tuple(x.shape)})")
    index = (slice(None),) * axis + (slice(start, start + length),)
    return x[index]


def split(x, split_size_or_sections, axis=0, *, dim=None):
    """PyTorch's meaning: an int is the size of each chunk (the last may be smaller);
    a list gives the size of each chunk."""
    if dim is not None:
        axis = dim
    axis = norm_axes(axis, x.ndim, "split")[0]
    n = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ShapeError(f"split: split size must be positive, got {size}")
        sizes = [min(size, n - s) for s in range(0, n, size)]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if any(s < 0 for s in sizes):
            raise ShapeError(f"split: sizes {sizes} must not be negative")
        total = 0
        for s in sizes:
            total += s
        if total != n:
            raise ShapeError(f"split: sizes {sizes} add up to {total}, but axis {axis} has size {n}")
    out, start = [], 0
    for s in sizes:
        out.append(narrow(x, axis, start, s))
        start += s
    return tuple(out)


def chunk(x, chunks, axis=0, *, dim=None):
    if dim is not None:
        axis = dim
    if chunks <= 0:
        raise ShapeError(f"chunk: the number of chunks must be positive, got {chunks}")
    n = x.shape[norm_axes(axis, x.ndim, "chunk")[0]]
    size = -(-n // chunks) or 1
    return split(x, size, axis)


def _pad_forward(xp, x, pad_width, mode, value):
    if mode == "constant":
        return xp.pad(x, pad_width, mode="constant", constant_values=value)
    return xp.pad(x, pad_width, mode=mode)


def _pad_vjp(ctx, g):
    if ctx.attrs["mode"] == "constant":
        # counted from the end, so an axis whose size is unknown until run time (a batch axis) needs no size
        index = tuple(slice(lo, -hi if hi else None) for lo, hi in ctx.attrs["pad_width"])
        return (g[index],)
    # reflect/edge: each output position copies one input position per axis; add the gradient back
    # there, one axis at a time (the map is numpy's own padding of an arange)
    x = ctx.inputs[0]
    for axis, (lo, hi) in enumerate(ctx.attrs["pad_width"]):
        if not (lo or hi):
            continue
        n = x.shape[axis]
        source = np.pad(np.arange(n), (lo, hi), mode=ctx.attrs["mode"])
        shape = [1] * g.ndim
        shape[axis] = len(source)
        index = broadcast_to(Tensor(source.reshape(shape), device=g.device), tuple(g.shape))
        target = tuple(n if d == axis else s for d, s in enumerate(g.shape))
        g = scatter_add(zeros(target, dtype=g.dtype, device=g.device), axis, index, g)
    return (g,)


def _padded_dim(d, lo, hi):
    if not (lo or hi):
        return d  # unpadded axes keep their (possibly symbolic) size
    return Dim(f"{d}+{lo + hi}") if isinstance(d, Dim) else d + lo + hi


def _pad_onnx(ctx, node, x):
    a = ctx.attrs(node)
    widths = a["pad_width"]
    pads = [int(lo) for lo, _ in widths] + [int(hi) for _, hi in widths]
    if a["mode"] == "constant":
        return ctx.emit("Pad", [x, ctx.i64(pads), ctx.const(a["value"], node.inputs[0].aval.dtype)], mode="constant")
    return ctx.emit("Pad", [x, ctx.i64(pads)], mode=a["mode"])   # numpy's reflect/edge are ONNX's


PAD = defop("pad", _pad_forward,
            lambda x, pad_width, mode, value: Aval(tuple(_padded_dim(d, lo, hi) for d, (lo, hi) in
                                                         zip(x.shape, pad_width)), x.dtype),
            _pad_vjp, onnx=_pad_onnx)


def pad(x, pad, mode="constant", value=0.0):
    """PyTorch's F.pad: `pad` lists (left, right) pairs starting from the LAST axis.
    numpy style also works: a sequence of (before, after) pairs, one per axis."""
    if mode not in ("constant", "reflect", "edge", "replicate", "circular", "wrap"):
        raise ValueError(f"pad: unsupported mode {mode!r}; use constant, reflect, replicate or circular")
    mode = {"replicate": "edge", "circular": "wrap"}.get(mode, mode)  # numpy's names
    if pad and isinstance(pad[0], (tuple, list)):
        widths = tuple((int(a), int(b)) for a, b in pad)
    else:
        if len(pad) % 2 or len(pad) // 2 > x.ndim:
            raise ShapeError(f"pad: padding {tuple(pad)} must have an even length of at most 2*{x.ndim}")
        pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]
        widths = tuple([(0, 0)] * (x.ndim - len(pairs)) + list(reversed(pairs)))
    if len(widths) != x.ndim:
        raise ShapeError(f"pad: {len(widths)} (before, after) pairs for a tensor with {x.ndim} dims")
    if mode == "reflect" and any(lo >= d or hi >= d for (lo, hi), d in zip(widths, x.shape) if lo or hi):
        raise ShapeError(f"pad: reflect padding {widths} must be smaller than the padded dims of {tuple(x.shape)}")
    if mode == "wrap" and any(lo > d or hi > d for (lo, hi), d in zip(widths, x.shape) if lo or hi):
        raise ShapeError(f"pad: circular padding {widths} must be at most the padded dims of {tuple(x.shape)}")
    return apply(PAD, (x,), {"pad_width": widths, "mode": mode, "value": float(value)})


def _flip_onnx(ctx, node, x):
    axes = list(ctx.attrs(node)["axes"])
    if not axes:
        return ctx.emit("Identity", [x])
    n = len(axes)
    return ctx.slice(x, [-1] * n, [INT64_MIN] * n, axes, [-1] * n)


FLIP = defop("flip", lambda xp, x, axes: xp.flip(x, axes), lambda x, axes: Aval(x.shape, x.dtype),
             lambda ctx, g: (flip(g, ctx.attrs["axes"]),), view=True, onnx=_flip_onnx)


def flip(x, axis=None, *, dims=None):
    if dims is not None:
        axis = dims
    axes = norm_axes(axis, x.ndim, "flip") if axis is not None else tuple(range(x.ndim))
    return apply(FLIP, (x,), {"axes": axes})


def _to_device_forward(xp, x, device):
    out = to_device(x, device)
    return x.copy() if out is x else out  # not a view op: never hand back the input's memory


def _to_device_apply(x, dev):
    """Moving is the one op whose inputs and output live on different devices: the mode's `move`."""
    return STATE.mode.move(TO_DEVICE, x, dev)


TO_DEVICE = defop("to_device", _to_device_forward, lambda x, device: Aval(x.shape, x.dtype),
                  lambda ctx, g: (to_device_op(g, ctx.inputs[0].device),), foldable=False, onnx=unary("Identity"),
                  device_attr="device")


def to_device_op(x, dev):
    return _to_device_apply(x, dev)


def repeat(x, *repeats):
    """PyTorch's Tensor.repeat: tile the tensor `repeats` times along each axis."""
    if len(repeats) == 1 and isinstance(repeats[0], (tuple, list)):
        repeats = repeats[0]
    lead = len(repeats) - x.ndim
    if lead < 0:
        raise ShapeError(f"repeat: {len(repeats)} repeats for a tensor with {x.ndim} dims")
    x = reshape(x, (1,) * lead + tuple(x.shape))
    expanded = broadcast_to(reshape(x, tuple(v for d in x.shape for v in (1, d))),
                            tuple(v for r, d in zip(repeats, x.shape) for v in (r, d)))
    return reshape(expanded, tuple(r * d for r, d in zip(repeats, x.shape)))


tile = repeat


# ---- PyTorch's shape helpers: *_as, t, unflatten, tensor_split/unbind/*split, *stack, atleast_*d ------

def view_as(x, other):
    return view(x, tuple(other.shape))


def reshape_as(x, other):
    return reshape(x, tuple(other.shape))


def t(x):
    """PyTorch's t(): a 2-D tensor transposed; 0-D and 1-D tensors as they are."""
    if x.ndim > 2:
        raise ShapeError(f"t: expects a tensor with at most 2 dims, got shape {tuple(x.shape)}; use "
                         f"transpose(dim0, dim1) or .mT")
    return matrix_transpose(x) if x.ndim == 2 else x


def unflatten(x, dim, sizes):
    """Dim `dim` split into `sizes` (one of them may be -1)."""
    axis = norm_axes(dim, x.ndim, "unflatten")[0]
    sizes = tuple(int(s) for s in sizes)
    if not sizes:
        raise ShapeError("unflatten: sizes must not be empty")
    n = x.shape[axis]
    if sizes.count(-1) > 1:
        raise ShapeError(f"unflatten: only one size may be -1, got {sizes}")
    known = 1
    for s in sizes:
        known *= s if s != -1 else 1
    if -1 in sizes and isinstance(n, int):
        if known == 0 or n % known:
            raise ShapeError(f"unflatten: sizes {sizes} do not divide dim {axis} of size {n} (shape {tuple(x.shape)})")
        sizes = tuple(n // known if s == -1 else s for s in sizes)
    elif isinstance(n, int) and known != n:
        raise ShapeError(f"unflatten: sizes {sizes} multiply to {known}, but dim {axis} has size {n} "
                         f"(shape {tuple(x.shape)})")
    return reshape(x, tuple(x.shape[:axis]) + sizes + tuple(x.shape[axis + 1:]))


def _sections(op, indices_or_sections):
    if isinstance(indices_or_sections, Tensor):
        if indices_or_sections.dtype.kind not in "iu" or indices_or_sections.ndim > 1:
            raise ShapeError(f"{op}: a tensor of indices_or_sections must be a 0-d or 1-d integer tensor, got "
                             f"{indices_or_sections.dtype}{tuple(indices_or_sections.shape)}")
        indices_or_sections = indices_or_sections.tolist()
    return indices_or_sections


def _pieces(x, axis, bounds):
    return tuple(narrow(x, axis, lo, max(hi - lo, 0)) for lo, hi in bounds)


def tensor_split(x, indices_or_sections, dim=0):
    """PyTorch's tensor_split: an int n gives n pieces (the first size % n one element longer); a list of
    indices gives the pieces between them (indices past the end give empty pieces)."""
    axis = norm_axes(dim, x.ndim, "tensor_split")[0]
    spec = _sections("tensor_split", indices_or_sections)
    n = x.shape[axis]
    if isinstance(spec, int):
        if spec <= 0:
            raise ShapeError(f"tensor_split: the number of sections must be positive, got {spec}")
        q, r = divmod(n, spec)
        starts = [i * q + (i if i < r else r) for i in range(spec + 1)]
        return _pieces(x, axis, zip(starts[:-1], starts[1:]))
    idx = [min(max(0, i + n if i < 0 else i), n) for i in (int(v) for v in spec)]
    bounds = zip([0] + idx, idx + [n])
    return _pieces(x, axis, bounds)


def _even_split(op, x, indices_or_sections, axis):
    spec = _sections(op, indices_or_sections)
    if isinstance(spec, int) and isinstance(x.shape[axis], int) and (spec <= 0 or x.shape[axis] % spec):
        raise ShapeError(f"{op}: dim {axis} of size {x.shape[axis]} (shape {tuple(x.shape)}) is not divisible "
                         f"into {spec} equal sections")
    return tensor_split(x, spec, axis)


def hsplit(x, indices_or_sections):
    if x.ndim < 1:
        raise ShapeError(f"hsplit: expects at least 1 dim, got shape {tuple(x.shape)}")
    return _even_split("hsplit", x, indices_or_sections, 1 if x.ndim > 1 else 0)


def vsplit(x, indices_or_sections):
    if x.ndim < 2:
        raise ShapeError(f"vsplit: expects at least 2 dims, got shape {tuple(x.shape)}")
    return _even_split("vsplit", x, indices_or_sections, 0)


def dsplit(x, indices_or_sections):
    if x.ndim < 3:
        raise ShapeError(f"dsplit: expects at least 3 dims, got shape {tuple(x.shape)}")
    return _even_split("dsplit", x, indices_or_sections, 2)


def unbind(x, dim=0):
    """The slices along `dim`, that dim removed."""
    axis = norm_axes(dim, x.ndim, "unbind")[0]
    return tuple(x[(slice(None),) * axis + (i,)] for i in range(x.shape[axis]))


def atleast_1d(*tensors):
    out = tuple(reshape(t, (1,)) if t.ndim == 0 else t for t in _tensor_list(tensors))
    return out[0] if len(out) == 1 else out


def atleast_2d(*tensors):
    out = tuple(reshape(t, (1,) * (2 - t.ndim) + tuple(t.shape)) if t.ndim < 2 else t for t in _tensor_list(tensors))
    return out[0] if len(out) == 1 else out


def atleast_3d(*tensors):
    def lift(t):
        if t.ndim == 0:
            return reshape(t, (1, 1, 1))
        if t.ndim == 1:
            return reshape(t, (1, t.shape[0], 1))
        if t.ndim == 2:
            return unsqueeze(t, 2)
        return t
    out = tuple(lift(t) for t in _tensor_list(tensors))
    return out[0] if len(out) == 1 else out


def _tensor_list(tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (tuple, list)):
        tensors = tensors[0]
    return list(tensors)


def _stack_input(op, tensors):
    tensors = list(tensors)
    if not tensors:
        raise ShapeError(f"{op}: needs at least one tensor")
    return tensors


def hstack(tensors):
    """Concatenation along dim 1 (dim 0 for 1-D tensors), 0-D tensors taken as 1-D."""
    ts = [atleast_1d(t) for t in _stack_input("hstack", tensors)]
    return concat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors):
    """Concatenation along dim 0 of the tensors taken as at least 2-D ((n,) becomes (1, n))."""
    return concat([atleast_2d(t) for t in _stack_input("vstack", tensors)], 0)


row_stack = vstack


def dstack(tensors):
    """Concatenation along dim 2 of the tensors taken as at least 3-D ((n,) -> (1, n, 1), (m, n) -> (m, n, 1))."""
    return concat([atleast_3d(t) for t in _stack_input("dstack", tensors)], 2)


def column_stack(tensors):
    """1-D (and 0-D) tensors become columns (n, 1); then concatenation along dim 1."""
    cols = [reshape(t, (t.shape[0] if t.ndim else 1, 1)) if t.ndim < 2 else t
            for t in _stack_input("column_stack", tensors)]
    return concat(cols, 1)
