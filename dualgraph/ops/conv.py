"""Convolution and pooling, built from two linear primitives: unfold (im2col) and its adjoint fold.

conv = pad -> unfold -> matmul; pooling = pad -> unfold -> max/mean. Because unfold and fold are
each other's vjp, every order of derivative of conv and pooling comes for free.
"""
from ..errors import ShapeError
from ..tensor import apply
from .infer import Aval, Dim
from .registry import defop


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


UNFOLD = defop("unfold", _unfold_forward, _unfold_infer,
               lambda ctx, g: (apply(FOLD, (g,), dict(size=tuple(ctx.inputs[0].shape[2:]), **ctx.attrs)),))
FOLD = defop("fold", _fold_forward,
             lambda cols, size, kernel, stride, dilation: Aval(tuple(cols.shape[:2]) + tuple(size), cols.dtype),
             lambda ctx, g: (apply(UNFOLD, (g,), {k: v for k, v in ctx.attrs.items() if k != "size"}),))


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
    from .shape import pad as _pad
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
    from .shape import pad as _pad
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


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows; with return_indices=True also each maximum's flat index into its (H, W) plane,
    as PyTorch returns (the first maximum of a window when several tie)."""
    from .reduction import max as _max
    import numpy as np
    lowest = float("-inf") if input.dtype.kind == "f" else int(np.iinfo(input.dtype).min)  # ints have no -inf
    cols, squeeze = _pool_windows(input, kernel_size, stride, padding, dilation, lowest, ceil_mode,
                                  "max_pool2d")
    out = _max(cols, axis=(2, 3))
    if not return_indices:
        return out.squeeze(0) if squeeze else out
    indices = _window_argmax_indices(cols, input.shape[-2:], kernel_size, stride, padding, dilation)
    return (out.squeeze(0), indices.squeeze(0)) if squeeze else (out, indices)


def _window_argmax_indices(cols, size, kernel_size, stride, padding, dilation):
    """row * W + col in the unpadded input of each window's (first) maximum, with dualgraph ops."""
    from ..creation import arange
    from .reduction import argmax
    (kh, kw), (ph, pw), (dh, dw) = (_pair(kernel_size, "kernel_size"), _pair(padding, "padding"),
                                    _pair(dilation, "dilation"))
    sh, sw = _pair(stride if stride is not None else kernel_size, "stride")
    n, c, _, _, oh, ow = cols.shape
    k = argmax(cols.reshape(n, c, kh * kw, oh, ow), axis=2)                 # (N, C, OH, OW)
    rows = arange(oh).reshape(oh, 1) * sh - ph + (k // kw) * dh
    cols_ = arange(ow).reshape(1, ow) * sw - pw + (k % kw) * dw
    return rows * size[1] + cols_


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    from .reduction import mean
    if not count_include_pad and padding:
        raise ShapeError("avg_pool2d: count_include_pad=False with padding is not supported")
    cols, squeeze = _pool_windows(input, kernel_size, stride, padding, 1, 0.0, ceil_mode, "avg_pool2d")
    out = mean(cols, axis=(2, 3))
    return out.squeeze(0) if squeeze else out


def adaptive_avg_pool2d(input, output_size):
    """Average over the cells PyTorch's adaptive pooling uses: [floor(i*H/oh), ceil((i+1)*H/oh))."""
    from .reduction import mean
    from .shape import concat
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
