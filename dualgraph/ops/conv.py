"""Convolution and pooling, built from two linear primitives: unfold (im2col) and its adjoint fold.

conv = pad -> unfold -> matmul; average pooling = pad -> unfold -> mean. Because unfold and fold are
each other's vjp, every order of derivative of these comes for free. Max pooling of floats is its own
primitive (see below), so that tied maxima get PyTorch's gradient. ONNX export turns the conv and
average-pooling chains back into Conv and AveragePool (ops/onnx_rules.py).
"""
import itertools

import numpy as np

from ..errors import DTypeError, ShapeError
from ..dispatch import apply
from ..graph.avals import Aval, Dim
from .dims import SymbolicDim
from .indexing import take_along_axis
from .onnx_rules import INT64_MAX, NotExportable, is_sym, out_dtype
from .reduction import max as _max, mean
from .registry import defop
from .shape import concat, pad as _pad


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ShapeError(f"{name} must be an int or a pair, got {v}")
    return v


def _out_size(size, k, s, d):
    return (size - d * (k - 1) - 1) // s + 1


def _unfold_forward(xp, x, kernel, stride, dilation):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n, c, h, w = x.shape
    oh, ow = _out_size(h, kh, sh, dh), _out_size(w, kw, sw, dw)
    cols = xp.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return cols


def _fold_forward(xp, cols, size, kernel, stride, dilation):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n, c, _, _, oh, ow = cols.shape
    out = xp.zeros((n, c) + tuple(size), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw] += cols[:, :, i, j]
    return out


def _unfold_infer(x, kernel, stride, dilation):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n, c, h, w = x.shape

    def out(size, k, s, d):  # a symbolic spatial size gives a new symbolic window count
        return Dim(f"windows({size})") if isinstance(size, Dim) else _out_size(size, k, s, d)
    return Aval((n, c, kh, kw, out(h, kh, sh, dh), out(w, kw, sw, dw)), x.dtype)


def _window_positions(h, w, kernel, stride, dilation):
    """(kh, kw, OH, OW) flat positions in an (h, w) image of every window element (numpy)."""
    iota = np.arange(h * w, dtype=np.int64).reshape(1, 1, h, w)
    return _unfold_forward(np, iota, kernel, stride, dilation)[0, 0]


def _unfold_onnx(ctx, node, x):
    a = ctx.attrs(node)
    kernel, stride, dilation = a["kernel"], a["stride"], a["dilation"]
    h, w = ctx.shape(node.inputs[0])[2:]
    if not (is_sym(h) or is_sym(w)):
        # one Gather of the flattened image at constant window positions
        pos = ctx.const(_window_positions(h, w, kernel, stride, dilation), hint="window_pos")
        flat = ctx.emit("Reshape", [x, ctx.i64([0, 0, -1])])
        return ctx.emit("Gather", [flat, pos], axis=2)
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    rows = []
    for i in range(kh):
        cols = []
        for j in range(kw):
            e_i, e_j = -(kh - 1 - i) * dh, -(kw - 1 - j) * dw
            s = ctx.slice(x, [i * dh, j * dw], [e_i or INT64_MAX, e_j or INT64_MAX], [2, 3], [sh, sw])
            cols.append(ctx.unsqueeze(s, [2, 3]))
        rows.append(ctx.emit("Concat", cols, axis=3) if len(cols) > 1 else cols[0])
    return ctx.emit("Concat", rows, axis=2) if len(rows) > 1 else rows[0]


def _fold_onnx(ctx, node, cols):
    a = ctx.attrs(node)
    h, w = a["size"]
    if is_sym(h) or is_sym(w):
        raise NotExportable("fold with a symbolic spatial size")
    ctx.require(16, "fold (ScatterElements with reduction='add')")
    pos = _window_positions(h, w, a["kernel"], a["stride"], a["dilation"]).reshape(1, 1, -1)
    flat = ctx.emit("Reshape", [cols, ctx.i64([0, 0, -1])])
    idx = ctx.emit("Expand", [ctx.const(pos, hint="window_pos"), ctx.shape_of(flat)])
    nc = ctx.slice(ctx.shape_of(cols), [0], [2], [0])
    zeros = ctx.emit("Expand", [ctx.const(0, out_dtype(node)),
                                ctx.emit("Concat", [nc, ctx.i64([h * w])], axis=0)])
    out = ctx.emit("ScatterElements", [zeros, idx, flat], axis=2, reduction="add")
    return ctx.emit("Reshape", [out, ctx.i64([0, 0, h, w])])


UNFOLD = defop("unfold", _unfold_forward, _unfold_infer,
               lambda ctx, g: (apply(FOLD, (g,), dict(size=tuple(ctx.inputs[0].shape[2:]), **ctx.attrs)),),
               onnx=_unfold_onnx)
FOLD = defop("fold", _fold_forward,
             lambda cols, size, kernel, stride, dilation: Aval(tuple(cols.shape[:2]) + tuple(size), cols.dtype),
             lambda ctx, g: (apply(UNFOLD, (g,), {k: v for k, v in ctx.attrs.items() if k != "size"}),),
             onnx=_fold_onnx, sized_attrs=lambda gen, node, x, attrs: dict(attrs, **gen.guessed_attrs(attrs["size"], "size")))


def unfold(x, kernel_size, stride=1, dilation=1):
    """(N, C, H, W) -> (N, C, kh, kw, OH, OW): every window of the input, no padding."""
    attrs = {"kernel": _pair(kernel_size, "kernel_size"), "stride": _pair(stride, "stride"),
             "dilation": _pair(dilation, "dilation")}
    for name, pair in attrs.items():
        if min(pair) < 1:  # dilation 0 would read one pixel per window: silent garbage
            raise ShapeError(f"unfold: {name} must be positive, got {pair}")
    (kh, kw), (dh, dw) = attrs["kernel"], attrs["dilation"]
    if x.shape[2] < dh * (kh - 1) + 1 or x.shape[3] < dw * (kw - 1) + 1:
        raise ShapeError(f"unfold: input of spatial size {tuple(x.shape[2:])} is smaller than the "
                         f"(dilated) kernel {(dh * (kh - 1) + 1, dw * (kw - 1) + 1)}")
    return apply(UNFOLD, (x,), attrs)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's conv2d (cross-correlation): input (N, C, H, W), weight (O, C/groups, kh, kw)."""
    if input.ndim != 4:
        raise ShapeError(f"conv2d: input must be (N, C, H, W), got shape {tuple(input.shape)}")
    if weight.ndim != 4:
        raise ShapeError(f"conv2d: weight must be (out_channels, in_channels/groups, kh, kw), got {tuple(weight.shape)}")
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    if c % groups or o % groups or cg != c // groups:
        raise ShapeError(f"conv2d: input has {c} channels, weight {tuple(weight.shape)} expects "
                         f"{cg * groups} with groups={groups}")
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            dil = _pair(dilation, "dilation")
            padding = tuple((d * (k - 1)) // 2 for d, k in zip(dil, (kh, kw)))
            if any((d * (k - 1)) % 2 for d, k in zip(dil, (kh, kw))):
                raise ShapeError("conv2d: padding='same' needs odd (dilated) kernel sizes here")
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair(padding, "padding")
    x = _pad(input, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else input
    cols = unfold(x, (kh, kw), stride, dilation)            # (N, C, kh, kw, OH, OW)
    oh, ow = cols.shape[4], cols.shape[5]
    cols = cols.reshape(n, groups, cg * kh * kw, oh * ow)    # (N, G, Cg*kh*kw, L)
    wmat = weight.reshape(groups, o // groups, cg * kh * kw)  # (G, Og, Cg*kh*kw)
    out = (wmat @ cols).reshape(n, o, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return out


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's conv1d: input (N, C, L), weight (O, C/groups, k)."""
    if input.ndim != 3 or weight.ndim != 3:
        raise ShapeError(f"conv1d: input must be (N, C, L) and weight (O, C/groups, k), got "
                         f"{tuple(input.shape)} and {tuple(weight.shape)}")
    if isinstance(padding, str):
        pad2 = padding
    else:
        pad2 = (0, padding if isinstance(padding, int) else padding[0])
    out = conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, stride=(1, _one(stride)), padding=pad2,
                 dilation=(1, _one(dilation)), groups=groups)
    return out.squeeze(2)


def _one(v):
    return v if isinstance(v, int) else v[0]


def _pool_windows(input, kernel_size, stride, padding, dilation, pad_value, ceil_mode, name):
    if input.ndim not in (3, 4):
        raise ShapeError(f"{name}: input must be (N, C, H, W) or (C, H, W), got shape {tuple(input.shape)}")
    if ceil_mode:
        raise ShapeError(f"{name}: ceil_mode=True is not supported; pad the input instead")
    k = _pair(kernel_size, "kernel_size")
    s = _pair(stride if stride is not None else k, "stride")
    p = _pair(padding, "padding")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ShapeError(f"{name}: padding {p} must be at most half the kernel size {k}")
    x = input if input.ndim == 4 else input.unsqueeze(0)
    if p != (0, 0):
        x = _pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), value=pad_value)
    return unfold(x, k, s, dilation), input.ndim == 3


# ---- max pooling ---------------------------------------------------------------------------------
# Max pooling is its own primitive, not a max over unfolded windows: the max reduction splits a tied
# maximum's gradient evenly (PyTorch's amax), while max pooling sends each window's gradient to the one
# element PyTorch's kernel picks, which is also the element ONNX MaxPool's Indices name. The three ops
# (values, indices, gradient) take any number of spatial dims: input (N, C, *spatial).

def _pool_out_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size: in ceil mode the last window must start inside the input or
    its left padding."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_geometry(spatial, kernel, stride, padding, dilation, ceil_mode):
    """Output sizes, and the extra right padding that ceil-mode windows reach past the padded input."""
    outs, right = [], []
    for n, k, s, p, d in zip(spatial, kernel, stride, padding, dilation):
        o = _pool_out_size(n, k, s, p, d, ceil_mode)
        outs.append(o)
        right.append(max(0, (o - 1) * s + d * (k - 1) + 1 - n - 2 * p))
    return tuple(outs), tuple(right)


def _lowest(dtype):
    return float("-inf") if dtype.kind == "f" else np.iinfo(dtype).min


def _pool_padded(xp, x, padding, right, value):
    if not any(padding) and not any(right):
        return x
    widths = ((0, 0), (0, 0)) + tuple((p, p + r) for p, r in zip(padding, right))
    return xp.pad(x, widths, mode="constant", constant_values=value)


def _window_offsets(kernel):
    return list(itertools.product(*[range(k) for k in kernel]))


def _window_view(xpad, offs, outs, stride, dilation):
    """The strided view holding element `offs` of every window."""
    return xpad[(Ellipsis,) + tuple(slice(i * d, i * d + s * (o - 1) + 1, s)
                                    for i, o, s, d in zip(offs, outs, stride, dilation))]


def _max_pool_forward(xp, x, kernel, stride, padding, dilation, ceil_mode):
    outs, right = _pool_geometry(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    xpad = _pool_padded(xp, x, padding, right, _lowest(x.dtype))
    best = None
    for offs in _window_offsets(kernel):
        v = _window_view(xpad, offs, outs, stride, dilation)
        if best is None:
            best = xp.array(v, copy=True)
        else:
            xp.maximum(best, v, out=best)   # propagates NaN, as PyTorch's pooling does
    return best


def _axis_shape(nd, axis, size):
    shape = [1] * (2 + nd)
    shape[2 + axis] = size
    return shape


def _window_argmax(xp, x, kernel, stride, padding, dilation, ceil_mode):
    """Per window, the row-major offset PyTorch's CPU kernel picks: the first maximum among the
    unpadded positions; in a window holding NaN the last NaN; in a window of -inf (the padding value)
    its first unpadded position. Returns (offsets, output sizes, extra right padding)."""
    outs, right = _pool_geometry(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)
    xpad = _pool_padded(xp, x, padding, right, _lowest(x.dtype))
    views = [_window_view(xpad, offs, outs, stride, dilation) for offs in _window_offsets(kernel)]
    best = xp.array(views[0], copy=True)
    for v in views[1:]:
        xp.maximum(best, v, out=best)
    k = len(views)
    dtype = np.int8 if k < 128 else np.int16 if k < 2 ** 15 else np.int32
    arg, found = xp.zeros(best.shape, dtype=dtype), xp.zeros(best.shape, dtype=bool)
    for t in range(k):   # mask arithmetic: several times faster than masked copies
        hit = views[t] == best
        hit &= ~found
        found |= hit
        if t:
            arg += hit.view(dtype=np.int8).astype(dtype, copy=False) * dtype(t)
    if x.dtype.kind == "f":
        if xp.isnan(best).any():
            for t in range(k):
                xp.copyto(arg, t, where=xp.isnan(views[t]))
    low = best == _lowest(x.dtype)   # the padding ties too: take the first unpadded position
    if low.any():
        first = 0
        for axis, (o, s, p, d) in enumerate(zip(outs, stride, padding, dilation)):
            start = xp.arange(o, dtype=np.int64) * s - p
            skip = (xp.maximum(-start, 0) + d - 1) // d     # leading offsets that land in the padding
            first = first + skip.reshape(_axis_shape(len(outs), axis, o)) * int(np.prod(kernel[axis + 1:]))
        xp.copyto(arg, xp.broadcast_to(xp.asarray(first).astype(arg.dtype), arg.shape), where=low)
    return arg, outs, right


def _max_pool_indices_forward(xp, x, kernel, stride, padding, dilation, ceil_mode):
    """Flat row-major index into its (N, C) plane of each window's chosen element (PyTorch's
    return_indices)."""
    arg, outs, _ = _window_argmax(xp, x, kernel, stride, padding, dilation, ceil_mode)
    flat = 0
    for axis, (o, k, s, p, d) in enumerate(zip(outs, kernel, stride, padding, dilation)):
        start = (xp.arange(o, dtype=np.int64) * s - p).reshape(_axis_shape(len(outs), axis, o))
        off = (arg.astype(np.int64) // int(np.prod(kernel[axis + 1:]))) % k
        flat = flat * x.shape[2 + axis] + start + off * d
    return xp.ascontiguousarray(flat, dtype=np.int64)


def _max_pool_grad_forward(xp, g, x, kernel, stride, padding, dilation, ceil_mode):
    """Each window's gradient added onto its chosen element, one strided add per window offset.
    Offsets run last to first so that each element sums its windows' gradients in output order, the
    order PyTorch's kernel adds them in (same rounding when windows overlap)."""
    arg, outs, right = _window_argmax(xp, x, kernel, stride, padding, dilation, ceil_mode)
    padded = tuple(n + 2 * p + r for n, p, r in zip(x.shape[2:], padding, right))
    gpad = xp.zeros(tuple(x.shape[:2]) + padded, dtype=g.dtype)
    offsets = _window_offsets(kernel)
    for t in range(len(offsets) - 1, -1, -1):
        _window_view(gpad, offsets[t], outs, stride, dilation)[...] += xp.where(arg == t, g, 0)
    if not any(padding) and not any(right):
        return gpad
    return xp.ascontiguousarray(gpad[(Ellipsis,) + tuple(slice(p, p + n) for p, n in zip(padding, x.shape[2:]))])


def _max_pool_shape(x, kernel, stride, padding, dilation, ceil_mode):
    def out(size, k, s, p, d):
        if not isinstance(size, Dim):
            return _pool_out_size(size, k, s, p, d, ceil_mode)
        if isinstance(size, SymbolicDim):
            if ceil_mode:   # its last-window rule is a comparison, which a size expression cannot hold
                raise TypeError(f"the symbolic dim {size} has no integer value while tracing (max pooling "
                                f"with ceil_mode=True)")
            return (size + (2 * p - d * (k - 1) - 1)) // s + 1   # computed from the input at each call
        return Dim(f"pooled({size})")   # a static graph's unknown size: unknown too
    return tuple(x.shape[:2]) + tuple(out(*a) for a in zip(x.shape[2:], kernel, stride, padding, dilation))


def _max_pool_vjp(ctx, g):
    return (apply(MAX_POOL_GRAD, (g, ctx.inputs[0]), ctx.attrs),)


def _max_pool_grad_vjp(ctx, gg):
    """The gradient is linear in g; its adjoint reads gg at each window's chosen element."""
    g, x = ctx.inputs
    idx = apply(MAX_POOL_INDICES, (x,), ctx.attrs)
    n, c = x.shape[:2]
    picked = take_along_axis(gg.reshape(n, c, -1), idx.reshape(n, c, -1), 2)
    return (picked.reshape(*g.shape), None)


def _max_pool_onnx_outputs(ctx, a, x, src, with_indices):
    """ONNX MaxPool's outputs (it picks the same element per window as PyTorch and `max_pool`): values
    in dtype `src` of x, and with_indices their flat plane indices."""
    if src in (np.float32, np.float64, np.float16, np.int8, np.uint8):   # onnxruntime's MaxPool kernels
        work = src
    elif src.kind == "f":
        work = np.dtype(np.float32)   # holds every narrower float exactly; a maximum is one of them
    elif src.itemsize <= 4:
        work = np.dtype(np.float64)
    else:
        raise NotExportable(f"max pooling of {src} (ONNX MaxPool has no 64-bit integer kernel and float64 "
                            f"would round values beyond 2**53)")
    outs = ctx.emit("MaxPool", [ctx.cast(x, src, work)], n_out=2 if with_indices else 1,
                    kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=list(a["padding"]) * 2,
                    dilations=list(a["dilation"]), ceil_mode=int(a["ceil_mode"]))
    if not with_indices:
        return ctx.cast(outs, work, src)
    y, idx = outs
    # Indices count through the whole (N, C, *spatial) tensor; PyTorch's count within each plane
    plane = ctx.reduce("ReduceProd", ctx.slice(ctx.shape_of(x), [2], [INT64_MAX], [0]), (0,), True)
    return ctx.cast(y, work, src), ctx.emit("Mod", [idx, plane])


def _max_pool_grad_onnx(ctx, node, g, x):
    ctx.require(16, "max pooling's gradient (ScatterElements with reduction='add')")
    dt = out_dtype(node)
    _, idx = _max_pool_onnx_outputs(ctx, ctx.attrs(node), x, node.inputs[1].aval.dtype, True)
    idx = ctx.emit("Reshape", [idx, ctx.i64([0, 0, -1])])
    flat = ctx.emit("Reshape", [ctx.cast(g, node.inputs[0].aval.dtype, dt), ctx.i64([0, 0, -1])])
    shape = ctx.shape_of(x)
    plane = ctx.reduce("ReduceProd", ctx.slice(shape, [2], [INT64_MAX], [0]), (0,), True)
    zeros = ctx.emit("Expand", [ctx.const(0, dt), ctx.emit("Concat", [ctx.slice(shape, [0], [2], [0]), plane],
                                                             axis=0)])
    out = ctx.emit("ScatterElements", [zeros, idx, flat], axis=2, reduction="add")
    return ctx.emit("Reshape", [out, shape])


MAX_POOL = defop("max_pool", _max_pool_forward, lambda x, **a: Aval(_max_pool_shape(x, **a), x.dtype),
                 _max_pool_vjp, onnx=lambda ctx, node, x: _max_pool_onnx_outputs(
                     ctx, ctx.attrs(node), x, node.inputs[0].aval.dtype, False))
MAX_POOL_INDICES = defop("max_pool_indices", _max_pool_indices_forward,
                         lambda x, **a: Aval(_max_pool_shape(x, **a), np.dtype(np.int64)), None, differentiable=False,
                         onnx=lambda ctx, node, x: _max_pool_onnx_outputs(
                             ctx, ctx.attrs(node), x, node.inputs[0].aval.dtype, True)[1])
MAX_POOL_GRAD = defop("max_pool_grad", _max_pool_grad_forward,
                      lambda g, x, **a: Aval(tuple(x.shape), g.dtype), _max_pool_grad_vjp, onnx=_max_pool_grad_onnx)


def _ints(v, n, name, op):
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    v = tuple(int(a) for a in v)
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ShapeError(f"{op}: {name} must be an int or {n} ints, got {v}")
    return v


def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd, op):
    layout = "(N, C, " + ", ".join("DHW"[3 - nd:]) + ")"
    if input.ndim not in (nd + 1, nd + 2):
        raise ShapeError(f"{op}: input must be {layout} or without N, got shape {tuple(input.shape)}")
    k = _ints(kernel_size, nd, "kernel_size", op)
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _ints(stride, nd, "stride", op)
    p, d = _ints(padding, nd, "padding", op), _ints(dilation, nd, "dilation", op)
    if min(k + s + d) < 1 or min(p) < 0:
        raise ShapeError(f"{op}: kernel_size {k}, stride {s} and dilation {d} must be positive and padding "
                         f"{p} non-negative")
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ShapeError(f"{op}: padding {p} must be at most half the kernel size {k}")
    if input.dtype.kind not in "fiu":
        raise DTypeError(f"{op}: input must have a float or integer dtype, got {input.dtype}")
    x = input if input.ndim == nd + 2 else input.unsqueeze(0)
    spatial = tuple(x.shape[2:])
    if all(isinstance(n, (int, np.integer)) for n in spatial):
        outs, _ = _pool_geometry(spatial, k, s, p, d, ceil_mode)
        if min(outs) < 1:
            raise ShapeError(f"{op}: input of spatial size {spatial} is too small for kernel_size {k}, "
                             f"dilation {d} and padding {p} (output size {outs})")
    attrs = {"kernel": k, "stride": s, "padding": p, "dilation": d, "ceil_mode": bool(ceil_mode)}
    if x.dtype.kind == "f" or nd != 2:
        out = apply(MAX_POOL, (x,), attrs)
    else:
        out = _max_pool2d_unfolded(x, attrs)
    if input.ndim == nd + 1:
        out = out.squeeze(0)
    if not return_indices:
        return out
    indices = apply(MAX_POOL_INDICES, (x,), attrs)
    return out, (indices.squeeze(0) if input.ndim == nd + 1 else indices)


def _max_pool2d_unfolded(x, attrs):
    """Integer max pooling as pad -> unfold -> max: integers carry no gradient, and this form exports
    to ONNX for every integer dtype (MaxPool has kernels for few of them)."""
    _, right = _pool_geometry(tuple(x.shape[2:]), attrs["kernel"], attrs["stride"], attrs["padding"],
                              attrs["dilation"], attrs["ceil_mode"])
    (ph, pw), (rh, rw) = attrs["padding"], right
    if ph or pw or rh or rw:
        x = _pad(x, ((0, 0), (0, 0), (ph, ph + rh), (pw, pw + rw)), value=_lowest(x.dtype))
    return _max(unfold(x, attrs["kernel"], attrs["stride"], attrs["dilation"]), axis=(2, 3))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """PyTorch's max_pool2d on (N, C, H, W) or (C, H, W). Each window's gradient goes to the element
    PyTorch picks (the first maximum in row-major window order), and return_indices=True also gives
    that element's flat index into its (H, W) plane."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """PyTorch's max_pool1d on (N, C, L) or (C, L); indices index L."""
    if input.ndim not in (2, 3):
        raise ShapeError(f"max_pool1d: input must be (N, C, L) or (C, L), got shape {tuple(input.shape)}")
    one = [_ints(a, 1, name, "max_pool1d")[0] for a, name in
           ((kernel_size, "kernel_size"), (padding, "padding"), (dilation, "dilation"))]
    st = None if stride is None or (not isinstance(stride, int) and len(stride) == 0) else \
        (1, _ints(stride, 1, "stride", "max_pool1d")[0])
    res = _max_pool(input.unsqueeze(-2), (1, one[0]), st if st is not None else (1, one[0]), (0, one[1]),
                    (1, one[2]), ceil_mode, return_indices, 2, "max_pool1d")
    if return_indices:
        return res[0].squeeze(-2), res[1].squeeze(-2)
    return res.squeeze(-2)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """PyTorch's max_pool3d on (N, C, D, H, W) or (C, D, H, W); indices index the (D, H, W) volume."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3, "max_pool3d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    if not count_include_pad and padding:
        raise ShapeError("avg_pool2d: count_include_pad=False with padding is not supported")
    cols, squeeze = _pool_windows(input, kernel_size, stride, padding, 1, 0.0, ceil_mode, "avg_pool2d")
    out = mean(cols, axis=(2, 3))
    return out.squeeze(0) if squeeze else out


def adaptive_avg_pool2d(input, output_size):
    """Average over the cells PyTorch's adaptive pooling uses: [floor(i*H/oh), ceil((i+1)*H/oh))."""
    oh, ow = _pair(output_size, "output_size")
    h, w = input.shape[-2], input.shape[-1]
    if h % oh == 0 and w % ow == 0:
        lead = tuple(input.shape[:-2])
        x = input.reshape(*lead, oh, h // oh, ow, w // ow)
        return mean(x, axis=(-3, -1))
    rows = []
    for i in range(oh):
        h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        cells = [mean(input[..., h0:h1, (j * w) // ow: -(-((j + 1) * w) // ow)], axis=(-2, -1), keepdims=True)
                 for j in range(ow)]
        rows.append(concat(cells, axis=-1))
    return concat(rows, axis=-2)
