"""Convolution and pooling as primitives: conv (1-D to 3-D, stride, padding, dilation, groups) with
its two gradients conv_input_grad (the transposed convolution) and conv_weight_grad, max pooling
(values, indices, gradient) and average pooling (and its gradient), each with an ONNX lowering (Conv,
ConvTranspose, MaxPool, AveragePool in float32). Their kernels are in dualgraph/kernels/conv.py.

unfold (im2col) and its adjoint fold stay as primitives of their own: dg.unfold, and the im2col form
the ONNX lowerings use where onnxruntime has no native kernel (float64, native_ops=False).
"""
import itertools

import numpy as np

from ..kernels import conv as _kconv
from ..errors import DTypeError, ShapeError
from ..dispatch import apply
from ..graph.avals import Aval, Dim
from .dims import SymbolicDim
from .indexing import take_along_axis
from .onnx_rules import INT64_MAX, NotExportable, is_sym, out_dtype
from .reduction import max as _max, mean
from .registry import defop
from .shape import pad as _pad
from .._state import STATE
from ..backend import CPU
from ..dispatch import new_tracer, using
from ..graph.ir import Graph
from .creation import tensor
from .shape import concat


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


# ---- convolution ---------------------------------------------------------------------------------
# One primitive for 1-D, 2-D and 3-D convolution (NCHW as PyTorch) and its two gradients, each the
# adjoint of the others in the bilinear form <conv(x, w), g>: conv_input_grad(g, w) is the transposed
# convolution (x's gradient) and conv_weight_grad(x, g) w's, so every order of derivative is one of the
# three. Kernels: dualgraph/kernels/conv.py. padding is a (low, high) pair per spatial dim.

def _conv_out(size, k, s, lo, hi, d):
    if isinstance(k, Dim):
        return Dim(f"conv({size})")
    if isinstance(size, SymbolicDim):
        return (size + (lo + hi - d * (k - 1) - 1)) // s + 1
    if isinstance(size, Dim):
        return Dim(f"conv({size})")
    return _kconv.out_size(size, k, s, lo, hi, d)


def _times(d, groups):
    return d if groups == 1 else (Dim(f"{d}*{groups}") if isinstance(d, Dim) and not isinstance(d, SymbolicDim)
                                  else d * groups)


def _per_group(d, groups):
    return d if groups == 1 else (Dim(f"{d}/{groups}") if isinstance(d, Dim) and not isinstance(d, SymbolicDim)
                                  else d // groups)


def _conv_infer(x, w, b=None, *, stride, padding, dilation, groups):
    outs = tuple(_conv_out(n, k, s, lo, hi, d) for n, k, s, (lo, hi), d in
                 zip(x.shape[2:], w.shape[2:], stride, padding, dilation))
    return Aval((x.shape[0], w.shape[0]) + outs, x.dtype)


def _conv_forward(xp, x, w, b=None, *, stride, padding, dilation, groups):
    return _kconv.conv_forward(xp, x, w, b, stride, padding, dilation, groups)


def _conv_vjp(ctx, g):
    x, w = ctx.inputs[:2]
    a = ctx.attrs
    needs = ctx.needs_input_grad
    gx = apply(CONV_INPUT_GRAD, (g, w), dict(a, input_size=tuple(x.shape[2:]))) if needs[0] else None
    gw = apply(CONV_WEIGHT_GRAD, (x, g), dict(a, kernel_size=tuple(w.shape[2:]))) if needs[1] else None
    if len(ctx.inputs) < 3:
        return gx, gw
    gb = g.sum(axis=(0,) + tuple(range(2, g.ndim))) if needs[2] else None
    return gx, gw, gb


def _conv_input_grad_infer(g, w, *, input_size, stride, padding, dilation, groups):
    return Aval((g.shape[0], _times(w.shape[1], groups)) + tuple(input_size), g.dtype)


def _conv_input_grad_forward(xp, g, w, *, input_size, stride, padding, dilation, groups):
    return _kconv.conv_input_grad(xp, g, w, tuple(input_size), stride, padding, dilation, groups)


def _conv_input_grad_vjp(ctx, gg):
    g, w = ctx.inputs
    a = {k: v for k, v in ctx.attrs.items() if k != "input_size"}
    needs = ctx.needs_input_grad
    return (apply(CONV, (gg, w), a) if needs[0] else None,
            apply(CONV_WEIGHT_GRAD, (gg, g), dict(a, kernel_size=tuple(w.shape[2:]))) if needs[1] else None)


def _conv_weight_grad_infer(x, g, *, kernel_size, stride, padding, dilation, groups):
    return Aval((g.shape[1], _per_group(x.shape[1], groups)) + tuple(kernel_size), x.dtype)


def _conv_weight_grad_forward(xp, x, g, *, kernel_size, stride, padding, dilation, groups):
    return _kconv.conv_weight_grad(xp, x, g, tuple(kernel_size), stride, padding, dilation, groups)


def _conv_weight_grad_vjp(ctx, gw):
    x, g = ctx.inputs
    a = {k: v for k, v in ctx.attrs.items() if k != "kernel_size"}
    needs = ctx.needs_input_grad
    return (apply(CONV_INPUT_GRAD, (g, gw), dict(a, input_size=tuple(x.shape[2:]))) if needs[0] else None,
            apply(CONV, (x, gw), a) if needs[1] else None)


# ONNX: float32 convolution as Conv and its input gradient as ConvTranspose (onnxruntime's kernels are
# float32); other dtypes, gradients of the weight and native_ops=False as the im2col form below (window
# Gather, MatMul, fold), traced from the dualgraph ops that write it and lowered inline.

def _onnx_pads(padding):
    return [int(lo) for lo, _ in padding] + [int(hi) for _, hi in padding]


def _conv_onnx(ctx, node, *names):
    a = ctx.attrs(node)
    if ctx.native_ops and out_dtype(node) == np.float32:
        k = node.inputs[1].aval.shape[2:]   # Conv reads a kernel size on a dynamic axis from W itself
        return ctx.emit("Conv", list(names), kernel_shape=list(k) if _static(k) else None, strides=list(a["stride"]),
                        pads=_onnx_pads(a["padding"]), dilations=list(a["dilation"]), group=int(a["groups"]))
    return _inline_composite(ctx, node, names, _conv_by_columns)


def _conv_input_grad_onnx(ctx, node, g, w):
    a = ctx.attrs(node)
    wshape, spatial = node.inputs[1].aval.shape, a["input_size"]
    gsp = node.inputs[0].aval.shape[2:]
    if ctx.native_ops and out_dtype(node) == np.float32 and _static(wshape) and _static(spatial) and _static(gsp):
        # ConvTranspose's output size is s*(in-1) + d*(k-1) + 1 - pads + output_padding: the output padding
        # gives back the rows the forward's floor division dropped
        extra = [int(n) + lo + hi - d * (k - 1) - 1 - s * (o - 1) for n, (lo, hi), d, k, s, o in
                 zip(spatial, a["padding"], a["dilation"], wshape[2:], a["stride"], gsp)]
        return ctx.emit("ConvTranspose", [g, w], kernel_shape=list(wshape[2:]), strides=list(a["stride"]),
                        pads=_onnx_pads(a["padding"]), dilations=list(a["dilation"]), group=int(a["groups"]),
                        output_padding=extra)
    return _inline_composite(ctx, node, (g, w), _conv_input_grad_by_columns)


def _static(shape):
    return all(isinstance(d, (int, np.integer)) for d in shape)


def _inline_composite(ctx, node, names, fn):
    """Lower `node` as the graph of dualgraph ops that `fn(*inputs, **attrs)` traces to."""
    tr = new_tracer(Graph(f"{node.op.name}_onnx"))
    prev = STATE.grad_enabled, STATE.recording
    try:
        with using(tr):
            STATE.grad_enabled, STATE.recording = False, False
            ins = [tr.sym(tr.graph.add_input(v.aval), CPU) for v in node.inputs]
            try:
                out = fn(*ins, **ctx.attrs(node))
            except TypeError as e:   # a kernel size on a dynamic axis: the window positions need it
                raise NotExportable(f"{node.op.name} in its im2col form with a dynamic kernel size ({e})") from None
            tr.graph.outputs = [tr.vals[id(out)]]
    finally:
        STATE.grad_enabled, STATE.recording = prev
    for t, v, _ in tr.captured:   # constants the composite made (window weights): initializers
        v.const = np.asarray(t.numpy())
        tr.graph.inputs.remove(v)
    # the context names values by id(): this graph must outlive the export, or a later value could
    # take a freed value's id and read its name
    ctx.root.__dict__.setdefault("_inlined_graphs", []).append(tr)
    (name,) = ctx.inline(tr.graph, list(names))
    return name


def _as_2d_op(x, nd):
    return x.unsqueeze(2) if nd == 1 else x


def _columns(x, kernel, stride, padding, dilation):
    """(N, C, *kernel, *out) windows of x as unfold of the padded input (1-D or 2-D windows)."""
    nd = len(kernel)
    if nd not in (1, 2):
        raise NotExportable(f"{nd}-D convolution in this dtype (ONNX Conv's float32 form only)")
    if any(lo or hi for lo, hi in padding):
        x = _pad(x, ((0, 0), (0, 0)) + tuple(tuple(p) for p in padding))
    k2, s2, d2 = [(1,) + tuple(v) if nd == 1 else tuple(v) for v in (kernel, stride, dilation)]
    cols = unfold(_as_2d_op(x, nd), k2, s2, d2)
    return cols.squeeze(4).squeeze(2) if nd == 1 else cols


def _conv_by_columns(x, w, b=None, *, stride, padding, dilation, groups):
    n, o, nd = x.shape[0], w.shape[0], w.ndim - 2
    cols = _columns(x, tuple(w.shape[2:]), stride, padding, dilation)
    outs = tuple(cols.shape[2 + nd:])
    cols = cols.reshape(n, groups, -1, int(np.prod(outs)))
    out = (w.reshape(groups, -1, int(w.shape[1]) * int(np.prod(w.shape[2:]))) @ cols).reshape(n, o, *outs)
    return out if b is None else out + b.reshape(1, -1, *([1] * nd))


def _conv_input_grad_by_columns(g, w, *, input_size, stride, padding, dilation, groups):
    n, o, nd = g.shape[0], w.shape[0], w.ndim - 2
    kernel, outs = tuple(w.shape[2:]), tuple(g.shape[2:])
    if nd not in (1, 2):
        raise NotExportable(f"{nd}-D convolution's gradient in this dtype")
    cols = w.reshape(groups, o // groups, -1).swapaxes(1, 2) @ g.reshape(n, groups, o // groups, -1)
    k2, o2, s2, d2 = [(1,) + tuple(v) if nd == 1 else tuple(v) for v in (kernel, outs, stride, dilation)]
    pads = (((0, 0),) if nd == 1 else ()) + tuple(tuple(p) for p in padding)
    size = tuple(int(n_) + lo + hi for n_, (lo, hi) in zip(((1,) if nd == 1 else ()) + tuple(input_size), pads))
    cols = cols.reshape(n, w.shape[1] * groups, *k2, *o2)
    full = apply(FOLD, (cols,), dict(size=size, kernel=k2, stride=s2, dilation=d2))
    crop = tuple(slice(lo, lo + int(s)) for (lo, _), s in zip(pads, ((1,) if nd == 1 else ()) + tuple(input_size)))
    out = full[(slice(None), slice(None)) + crop]
    return out.squeeze(2) if nd == 1 else out


def _conv_weight_grad_by_columns(x, g, *, kernel_size, stride, padding, dilation, groups):
    n, c, o = x.shape[0], x.shape[1], g.shape[1]
    cols = _columns(x, tuple(kernel_size), stride, padding, dilation).reshape(n, groups, c // groups * int(
        np.prod(kernel_size)), -1)
    gw = (g.reshape(n, groups, o // groups, -1) @ cols.swapaxes(2, 3)).sum(axis=0)
    return gw.reshape(o, c // groups, *kernel_size)


CONV = defop("conv", _conv_forward, _conv_infer, _conv_vjp, onnx=_conv_onnx, grad_name="ConvolutionBackward0",
             fresh=True)
CONV_INPUT_GRAD = defop("conv_input_grad", _conv_input_grad_forward, _conv_input_grad_infer, _conv_input_grad_vjp,
                        onnx=_conv_input_grad_onnx, fresh=True,
                        sized_attrs=lambda gen, node, x, attrs: dict(attrs, **gen.guessed_attrs(attrs["input_size"],
                                                                                                 "input_size")))
CONV_WEIGHT_GRAD = defop("conv_weight_grad", _conv_weight_grad_forward, _conv_weight_grad_infer,
                         _conv_weight_grad_vjp, fresh=True,
                         onnx=lambda ctx, node, x, g: _inline_composite(ctx, node, (x, g), _conv_weight_grad_by_columns))


def _conv(input, weight, bias, stride, padding, dilation, groups, nd, op):
    layout = "(N, C, " + ", ".join("DHW"[3 - nd:]) + ")" if nd > 1 else "(N, C, L)"
    if input.ndim != nd + 2:
        raise ShapeError(f"{op}: input must be {layout}, got shape {tuple(input.shape)}")
    if weight.ndim != nd + 2:
        raise ShapeError(f"{op}: weight must be (out_channels, in_channels/groups, {nd} kernel sizes), got "
                         f"{tuple(weight.shape)}")
    groups = int(groups)
    c, (o, cg) = input.shape[1], weight.shape[:2]
    if groups < 1 or c % groups or o % groups or cg != c // groups:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} has {c} channels, weight "
                         f"{tuple(weight.shape)} expects {cg * groups} with groups={groups}"
                         + (f" (out_channels {o} must divide by groups)" if groups >= 1 and o % groups else ""))
    if input.dtype.kind != "f" or weight.dtype != input.dtype or (bias is not None and bias.dtype != input.dtype):
        raise DTypeError(f"{op}: input, weight and bias must have one float dtype, got {input.dtype}, "
                         f"{weight.dtype}" + (f" and {bias.dtype}" if bias is not None else ""))
    if bias is not None and tuple(bias.shape) != (o,):
        raise ShapeError(f"{op}: bias must have shape ({o},), got {tuple(bias.shape)}")
    kernel = tuple(weight.shape[2:])
    s, d = _ints(stride, nd, "stride", op), _ints(dilation, nd, "dilation", op)
    if min(s + d) < 1:
        raise ShapeError(f"{op}: stride {s} and dilation {d} must be positive")
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * nd
        elif padding == "same":
            if any(v != 1 for v in s):
                raise ShapeError(f"{op}: padding='same' needs stride 1, got stride {s}")
            # PyTorch: the odd pixel of an even (dilated) kernel's padding goes on the high side
            pads = tuple((dd * (k - 1) // 2, dd * (k - 1) - dd * (k - 1) // 2) for dd, k in zip(d, kernel))
        else:
            raise ValueError(f"{op}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    else:
        p = _ints(padding, nd, "padding", op)
        if min(p) < 0:
            raise ShapeError(f"{op}: padding {p} must be non-negative")
        pads = tuple((v, v) for v in p)
    spatial = tuple(input.shape[2:])
    if all(isinstance(n, (int, np.integer)) for n in spatial):
        outs = tuple(_kconv.out_size(n, k, st, lo, hi, dd) for n, k, st, (lo, hi), dd in
                     zip(spatial, kernel, s, pads, d))
        if min(outs) < 1:
            raise ShapeError(f"{op}: input of spatial size {spatial} (padded by {pads}) is smaller than the "
                             f"dilated kernel {tuple(dd * (k - 1) + 1 for dd, k in zip(d, kernel))}")
    attrs = {"stride": s, "padding": pads, "dilation": d, "groups": groups}
    return apply(CONV, (input, weight) if bias is None else (input, weight, bias), attrs)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's conv1d (cross-correlation): input (N, C, L), weight (O, C/groups, k)."""
    return _unbatched(_conv, input, 1, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's conv2d (cross-correlation): input (N, C, H, W), weight (O, C/groups, kh, kw)."""
    return _unbatched(_conv, input, 2, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """PyTorch's conv3d (cross-correlation): input (N, C, D, H, W), weight (O, C/groups, kd, kh, kw)."""
    return _unbatched(_conv, input, 3, weight, bias, stride, padding, dilation, groups, 3, "conv3d")


def _unbatched(fn, input, nd, *args):
    """PyTorch's functional convolutions also take one sample without its batch dim."""
    if input.ndim == nd + 1:
        return fn(input.unsqueeze(0), *args).squeeze(0)
    return fn(input, *args)


def _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, nd, op):
    if input.ndim != nd + 2 or weight.ndim != nd + 2:
        raise ShapeError(f"{op}: input must have {nd + 2} dims and weight (in_channels, out_channels/groups, "
                         f"{nd} kernel sizes), got {tuple(input.shape)} and {tuple(weight.shape)}")
    groups = int(groups)
    if groups < 1 or input.shape[1] != weight.shape[0] or weight.shape[0] % groups:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} has {input.shape[1]} channels, weight "
                         f"{tuple(weight.shape)} expects {weight.shape[0]} (divisible by groups={groups})")
    if input.dtype.kind != "f" or weight.dtype != input.dtype or (bias is not None and bias.dtype != input.dtype):
        raise DTypeError(f"{op}: input, weight and bias must have one float dtype, got {input.dtype}, "
                         f"{weight.dtype}" + (f" and {bias.dtype}" if bias is not None else ""))
    s, p = _ints(stride, nd, "stride", op), _ints(padding, nd, "padding", op)
    op_, d = _ints(output_padding, nd, "output_padding", op), _ints(dilation, nd, "dilation", op)
    if min(s + d) < 1 or min(p + op_) < 0 or any(a >= max(b, c) for a, b, c in zip(op_, s, d)):
        raise ShapeError(f"{op}: stride {s} and dilation {d} must be positive, padding {p} non-negative and "
                         f"output_padding {op_} smaller than stride or dilation")
    kernel = tuple(weight.shape[2:])
    size = tuple((n - 1) * st - 2 * pp + dd * (k - 1) + oo + 1 for n, st, pp, dd, k, oo in
                 zip(input.shape[2:], s, p, d, kernel, op_))
    if min(size) < 1:
        raise ShapeError(f"{op}: output size {size} is not positive for input {tuple(input.shape)}")
    # the transposed convolution is the input gradient of the convolution it transposes; output_padding
    # adds rows that convolution reads past its last window, as high padding
    pads = tuple((pp, pp + oo) if False else (pp, pp) for pp, oo in zip(p, op_))
    attrs = {"stride": s, "padding": pads, "dilation": d, "groups": groups, "input_size": size}
    out = apply(CONV_INPUT_GRAD, (input, weight), attrs)
    if bias is not None:
        out = out + bias.reshape(1, -1, *([1] * nd))
    return out


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """PyTorch's conv_transpose1d: input (N, C_in, L), weight (C_in, C_out/groups, k)."""
    return _unbatched(_conv_transpose, input, 1, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                      "conv_transpose1d")


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """PyTorch's conv_transpose2d: input (N, C_in, H, W), weight (C_in, C_out/groups, kh, kw)."""
    return _unbatched(_conv_transpose, input, 2, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                      "conv_transpose2d")


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
    # the values as kernel-offset passes of numpy's maximum (propagates NaN as PyTorch): measured faster
    # than the C window loop, which the indices and the gradient use
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
    c = _kconv.max_pool_c(xp, x, kernel, stride, padding, dilation,
                          _pool_geometry(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)[0], "indices")
    if c is not None:
        return c
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
    c = _kconv.max_pool_c(xp, x, kernel, stride, padding, dilation, tuple(g.shape[2:]),
                          ("grad", xp.ascontiguousarray(g)))
    if c is not None:
        return c
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
                 _max_pool_vjp, fresh=True, onnx=lambda ctx, node, x: _max_pool_onnx_outputs(
                     ctx, ctx.attrs(node), x, node.inputs[0].aval.dtype, False))
MAX_POOL_INDICES = defop("max_pool_indices", _max_pool_indices_forward,
                         lambda x, **a: Aval(_max_pool_shape(x, **a), np.dtype(np.int64)), None, differentiable=False,
                         onnx=lambda ctx, node, x: _max_pool_onnx_outputs(
                             ctx, ctx.attrs(node), x, node.inputs[0].aval.dtype, True)[1])
MAX_POOL_GRAD = defop("max_pool_grad", _max_pool_grad_forward,
                      lambda g, x, **a: Aval(tuple(x.shape), g.dtype), _max_pool_grad_vjp, onnx=_max_pool_grad_onnx,
                      fresh=True)


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


def _avg_geometry(spatial, kernel, stride, padding, ceil_mode):
    return _pool_geometry(spatial, kernel, stride, padding, (1,) * len(kernel), ceil_mode)[0]


def _avg_pool_infer(x, *, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return Aval(_max_pool_shape(x, kernel, stride, padding, (1,) * len(kernel), ceil_mode), x.dtype)


def _avg_divisor(spatial, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    outs = _avg_geometry(spatial, kernel, stride, padding, ceil_mode)
    return outs, _kconv.avg_divisor(spatial, kernel, stride, padding, outs, count_include_pad, divisor_override)


def _avg_pool_forward(xp, x, *, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    outs, div = _avg_divisor(tuple(x.shape[2:]), kernel, stride, padding, ceil_mode, count_include_pad,
                             divisor_override)
    return _kconv.avg_pool(xp, x, kernel, stride, padding, outs, div)


def _avg_pool_vjp(ctx, g):
    return (apply(AVG_POOL_GRAD, (g,), dict(ctx.attrs, input_size=tuple(ctx.inputs[0].shape[2:]))),)


def _avg_pool_grad_forward(xp, g, *, input_size, kernel, stride, padding, ceil_mode, count_include_pad,
                           divisor_override):
    _, div = _avg_divisor(tuple(input_size), kernel, stride, padding, ceil_mode, count_include_pad,
                          divisor_override)
    return _kconv.avg_pool_grad(xp, g, tuple(input_size), kernel, stride, padding, div)


def _avg_pool_grad_vjp(ctx, gg):
    return (apply(AVG_POOL, (gg,), {k: v for k, v in ctx.attrs.items() if k != "input_size"}),)


def _avg_constants(node, spatial, a):
    if not _static(spatial):
        return None
    outs, div = _avg_divisor(tuple(int(n) for n in spatial), a["kernel"], a["stride"], a["padding"], a["ceil_mode"],
                             a["count_include_pad"], a["divisor_override"])
    return outs, div, _avg_high(spatial, a["kernel"], a["stride"], a["padding"], outs)


def _avg_high(spatial, kernel, stride, padding, outs):
    """The high-side padding that holds every window whole (ceil_mode's last windows reach past the
    padding) and leaves the output sizes `outs`."""
    return tuple(max(p, (o - 1) * s + k - n - p) for n, k, s, p, o in zip(spatial, kernel, stride, padding, outs))


def _avg_pool_onnx(ctx, node, x):
    """AveragePool over the input padded (low: padding, high: padding and the rows ceil_mode's last
    windows reach) counting the padding, which is the window sum over the window size; a constant
    rescales it where PyTorch's divisor differs (count_include_pad=False, ceil_mode, divisor_override)."""
    a = ctx.attrs(node)
    spatial = node.inputs[0].aval.shape[2:]
    dt = out_dtype(node)
    k = a["kernel"]
    uniform = not a["ceil_mode"] and a["count_include_pad"] and not a["divisor_override"]
    cons = _avg_constants(node, spatial, a)
    if cons is None and not uniform:
        raise NotExportable("average pooling with a symbolic spatial size and ceil_mode, "
                            "count_include_pad=False or divisor_override")
    high = cons[2] if cons is not None else a["padding"]
    if ctx.native_ops and dt == np.float32:
        y = ctx.emit("AveragePool", [x], kernel_shape=list(k), strides=list(a["stride"]),
                     pads=list(a["padding"]) + list(high), count_include_pad=1)
    else:
        y = _inline_composite(ctx, node, (x,), _avg_pool_by_columns)
    if uniform:
        return y
    scale = float(np.prod(k)) / cons[1]
    return ctx.emit("Mul", [y, ctx.const(scale.astype(dt), hint="avg_scale")])


def _avg_pool_by_columns(x, *, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """The window mean counting every padded position (the ONNX rule rescales the rest)."""
    nd = len(kernel)
    outs = _pool_geometry(tuple(x.shape[2:]), kernel, stride, padding, (1,) * nd, ceil_mode)[0]
    high = _avg_high(tuple(x.shape[2:]), kernel, stride, padding, outs)
    cols = _columns(x, kernel, stride, tuple(zip(padding, high)), (1,) * nd)
    return mean(cols, axis=tuple(range(2, 2 + nd)))


def _avg_pool_grad_onnx(ctx, node, g):
    a = ctx.attrs(node)
    if not (_static(a["input_size"]) and _static(node.inputs[0].aval.shape[2:])):
        raise NotExportable("average pooling's gradient with a symbolic spatial size")
    return _inline_composite(ctx, node, (g,), _avg_pool_grad_by_columns)


def _avg_pool_grad_by_columns(g, *, input_size, kernel, stride, padding, ceil_mode, count_include_pad,
                              divisor_override):
    """Each window's share g / divisor spread over its window (fold), the padding cropped."""
    nd = len(kernel)
    outs, div = _avg_divisor(tuple(input_size), kernel, stride, padding, ceil_mode, count_include_pad,
                             divisor_override)
    if nd not in (1, 2):
        raise NotExportable(f"{nd}-D average pooling's gradient")
    high = _avg_high(tuple(input_size), kernel, stride, padding, outs)
    share = g * _as_const(1.0 / div, g.dtype)
    n, c = g.shape[:2]
    k2, o2, s2 = [(1,) + tuple(v) if nd == 1 else tuple(v) for v in (kernel, outs, stride)]
    pads = (((0, 0),) if nd == 1 else ()) + tuple(zip(padding, high))
    size2 = ((1,) if nd == 1 else ()) + tuple(int(v) for v in input_size)
    cols = share.reshape(n, c, *([1] * 2), *o2) * _as_const(np.ones(k2 + (1, 1)), g.dtype)
    full = apply(FOLD, (cols,), dict(size=tuple(s + lo + hi for s, (lo, hi) in zip(size2, pads)), kernel=k2, stride=s2,
                                     dilation=(1, 1)))
    out = full[(slice(None), slice(None)) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(size2, pads))]
    return out.squeeze(2) if nd == 1 else out


def _as_const(arr, dtype):
    return tensor(np.asarray(arr, dtype=dtype))


AVG_POOL = defop("avg_pool", _avg_pool_forward, _avg_pool_infer, _avg_pool_vjp, onnx=_avg_pool_onnx)
AVG_POOL_GRAD = defop("avg_pool_grad", _avg_pool_grad_forward,
                      lambda g, *, input_size, **a: Aval(tuple(g.shape[:2]) + tuple(input_size), g.dtype),
                      _avg_pool_grad_vjp, onnx=_avg_pool_grad_onnx,
                      sized_attrs=lambda gen, node, x, attrs: dict(attrs, **gen.guessed_attrs(attrs["input_size"],
                                                                                               "input_size")))


def _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nd, op):
    layout = "(N, C, " + ", ".join("DHW"[3 - nd:]) + ")" if nd > 1 else "(N, C, L)"
    if input.ndim not in (nd + 1, nd + 2):
        raise ShapeError(f"{op}: input must be {layout} or without N, got shape {tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise DTypeError(f"{op}: input must have a float dtype, got {input.dtype}")
    k = _ints(kernel_size, nd, "kernel_size", op)
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _ints(stride, nd, "stride", op)
    p = _ints(padding, nd, "padding", op)
    if min(k + s) < 1 or min(p) < 0:
        raise ShapeError(f"{op}: kernel_size {k} and stride {s} must be positive and padding {p} non-negative")
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ShapeError(f"{op}: padding {p} must be at most half the kernel size {k}")
    if divisor_override is not None and int(divisor_override) == 0:
        raise ShapeError(f"{op}: divisor_override must be non-zero")
    x = input if input.ndim == nd + 2 else input.unsqueeze(0)
    spatial = tuple(x.shape[2:])
    if _static(spatial):
        outs = _avg_geometry(spatial, k, s, p, ceil_mode)
        if min(outs) < 1:
            raise ShapeError(f"{op}: input of spatial size {spatial} is too small for kernel_size {k} and padding "
                             f"{p} (output size {outs})")
    attrs = {"kernel": k, "stride": s, "padding": p, "ceil_mode": bool(ceil_mode),
             "count_include_pad": bool(count_include_pad),
             "divisor_override": int(divisor_override) if divisor_override else None}
    out = apply(AVG_POOL, (x,), attrs)
    return out if input.ndim == nd + 2 else out.squeeze(0)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """PyTorch's avg_pool1d on (N, C, L) or (C, L)."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """PyTorch's avg_pool2d on (N, C, H, W) or (C, H, W): each window's sum over its size (the window
    clipped to the padded input; to the input itself with count_include_pad=False), or divisor_override."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                     "avg_pool2d")


def _adaptive_axis(x, axis, size, out):
    """Adaptive averaging along one axis: cell i is the mean of [floor(i*size/out), ceil((i+1)*size/out)),
    one slice per cell (sizes may be symbolic: the bounds are then size arithmetic in the graph)."""
    cells = []
    for i in range(out):
        lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
        index = (slice(None),) * axis + (slice(lo, hi),)
        cells.append(mean(x[index], axis=axis, keepdims=True))
    return cells[0] if out == 1 else concat(cells, axis=axis)


def adaptive_avg_pool2d(input, output_size):
    """PyTorch's adaptive_avg_pool2d: cell (i, j) averages rows [floor(i*H/oh), ceil((i+1)*H/oh)) and the
    same columns. Rows and columns are averaged one after the other (oh + ow slices, not oh * ow
    cells); output_size None keeps that input size."""
    if input.ndim not in (3, 4):
        raise ShapeError(f"adaptive_avg_pool2d: input must be (N, C, H, W) or (C, H, W), got shape "
                         f"{tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise DTypeError(f"adaptive_avg_pool2d: input must have a float dtype, got {input.dtype}")
    h, w = input.shape[-2], input.shape[-1]
    sizes = (output_size, output_size) if output_size is None or isinstance(output_size, int) else tuple(output_size)
    if len(sizes) != 2:
        raise ShapeError(f"adaptive_avg_pool2d: output_size must be an int or a pair, got {output_size}")
    oh, ow = [n if o is None else int(o) for o, n in zip(sizes, (h, w))]
    if oh < 1 or ow < 1:
        raise ShapeError(f"adaptive_avg_pool2d: output_size must be positive, got {(oh, ow)}")
    if isinstance(h, (int, np.integer)) and isinstance(w, (int, np.integer)) and h % oh == 0 and w % ow == 0:
        lead = tuple(input.shape[:-2])
        return mean(input.reshape(*lead, oh, h // oh, ow, w // ow), axis=(-3, -1))
    out = input if isinstance(h, (int, np.integer)) and h == oh else _adaptive_axis(input, input.ndim - 2, h, oh)
    return out if isinstance(w, (int, np.integer)) and w == ow else _adaptive_axis(out, input.ndim - 1, w, ow)
