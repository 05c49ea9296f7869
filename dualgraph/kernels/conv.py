"""Convolution and pooling kernels (NCHW, as PyTorch): im2col + one BLAS matmul per sample for the
convolution and its two gradients, and window loops for pooling.

    conv_forward(xp, x, w, b, ...)         y = w * x (+ b): the input's windows (im2col) times the weight
    conv_input_grad(xp, g, w, size, ...)   the transposed convolution: w^T g per sample, then each input
                                           row gathers the column rows that read it (col2im), in C
    conv_weight_grad(xp, x, g, ksize, ...) sum over samples of g @ im2col(x)^T, one batched matmul
    max_pool2d / max_pool2d_grad           one pass over the windows each way (PyTorch's pick per window)

Chosen by measurement on the CNN step of benchmarks/bench_cnn_step.py (2-core EPYC, OpenBLAS): the
column copy of numpy's strided view (a 6-D view with a short inner run) and the strided `+=` of col2im
over the whole batch (read-modify-write of every input element kh*kw times, out of cache) cost more
than the matmuls around them; one C loop per (sample, channel) plane reads the input (or writes it) with
its padding handled by bounds and keeps the plane in L1. Every kernel has a numpy path (no compiler,
other dtypes, cupy, 3-D windows) computing the same values.

Spatial dims: any number on the numpy paths; the C loops take 2-D windows (1-D runs as 2-D with height 1).
Padding is (low, high) per spatial dim, so PyTorch's padding='same' with an even kernel is exact.
"""
import numpy as np

from .native import I64, PTR, Loops, address

_C = """#include <math.h>
#include <stdint.h>
#include <string.h>

/* the output positions o in [0, n_out) whose input index o*s + off lies in [0, size) */
static inline void span(int64_t off, int64_t s, int64_t size, int64_t n_out, int64_t* lo, int64_t* hi) {{
    int64_t a = off < 0 ? (-off + s - 1) / s : 0;
    int64_t b = off >= size ? 0 : (size - 1 - off) / s + 1;
    if (b > n_out) b = n_out;
    if (b < a) b = a;
    *lo = a; *hi = b;
}}

/* cols (planes, kh, kw, OH, OW) <- the windows of x (planes, H, W), zeros where they reach the padding */
void im2col(int64_t planes, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t OH, int64_t OW,
            int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
            const {t}* restrict x, {t}* restrict cols) {{
    for (int64_t p = 0; p < planes; p++) {{
        const {t}* xp = x + p * H * W;
        {t}* cp = cols + p * kh * kw * OH * OW;
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) {{
                int64_t w0 = j * dw - pw, lo, hi;
                span(w0, sw, W, OW, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++) {{
                    {t}* row = cp + ((i * kw + j) * OH + oh) * OW;
                    int64_t h = oh * sh - ph + i * dh;
                    if (h < 0 || h >= H) {{ memset(row, 0, OW * sizeof({t})); continue; }}
                    const {t}* xr = xp + h * W + w0;
                    for (int64_t o = 0; o < lo; o++) row[o] = 0;
                    if (sw == 1) memcpy(row + lo, xr + lo, (hi - lo) * sizeof({t}));
                    else for (int64_t o = lo; o < hi; o++) row[o] = xr[o * sw];
                    for (int64_t o = hi; o < OW; o++) row[o] = 0;
                }}
            }}
    }}
}}

/* x (planes, H, W) <- col2im: each input row sums, in window order (i, j), the column rows that read it */
void col2im(int64_t planes, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t OH, int64_t OW,
            int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
            const {t}* restrict cols, {t}* restrict x) {{
    for (int64_t p = 0; p < planes; p++) {{
        {t}* xp = x + p * H * W;
        const {t}* cp = cols + p * kh * kw * OH * OW;
        for (int64_t h = 0; h < H; h++) {{
            {t}* xr = xp + h * W;
            for (int64_t w = 0; w < W; w++) xr[w] = 0;
            for (int64_t i = 0; i < kh; i++) {{
                int64_t t = h + ph - i * dh;          /* = oh * sh */
                if (t < 0 || t % sh) continue;
                int64_t oh = t / sh;
                if (oh >= OH) continue;
                for (int64_t j = 0; j < kw; j++) {{
                    int64_t w0 = j * dw - pw, lo, hi;
                    span(w0, sw, W, OW, &lo, &hi);
                    const {t}* row = cp + ((i * kw + j) * OH + oh) * OW;
                    {t}* xw = xr + w0;
                    if (sw == 1) {{
                        #pragma omp simd
                        for (int64_t o = lo; o < hi; o++) xw[o] += row[o];
                    }} else {{
                        for (int64_t o = lo; o < hi; o++) xw[o * sw] += row[o];
                    }}
                }}
            }}
        }}
    }}
}}

/* PyTorch's CPU max pooling: per window, over its unpadded positions in row-major order, the first
   maximum (a NaN replaces the running maximum, so the last NaN); a window of -inf keeps its first
   unpadded position. y gets the values, idx (if given) the flat plane index, gx (if given) the
   gradient: gx zeroed, then each window's g added at its pick in output order. One output row at a
   time, window offset by window offset, so the inner loop runs along the row (vectorizes). */
#define MP_BLOCK 256
void max_pool(int64_t planes, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t OH, int64_t OW,
              int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
              const {t}* restrict x, {t}* restrict y, int64_t* restrict idx,
              const {t}* restrict g, {t}* restrict gx) {{
    {t} m[MP_BLOCK];
    int64_t bi[MP_BLOCK];
    int track = idx != 0 || gx != 0;
    if (gx) memset(gx, 0, planes * H * W * sizeof({t}));
    for (int64_t p = 0; p < planes; p++) {{
        const {t}* xp = x + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {{
            int64_t h0 = oh * sh - ph;
            int64_t i0 = h0 < 0 ? (-h0 + dh - 1) / dh : 0;
            for (int64_t b0 = 0; b0 < OW; b0 += MP_BLOCK) {{
                int64_t nb = OW - b0 < MP_BLOCK ? OW - b0 : MP_BLOCK;
                for (int64_t o = 0; o < nb; o++) {{
                    int64_t w0 = (b0 + o) * sw - pw;
                    int64_t j0 = w0 < 0 ? (-w0 + dw - 1) / dw : 0;
                    m[o] = -INFINITY;
                    bi[o] = (h0 + i0 * dh) * W + w0 + j0 * dw;
                }}
                for (int64_t i = i0; i < kh && h0 + i * dh < H; i++) {{
                    int64_t h = h0 + i * dh;
                    for (int64_t j = 0; j < kw; j++) {{
                        int64_t off = j * dw - pw, lo, hi;
                        span(off + b0 * sw, sw, W, nb, &lo, &hi);
                        const {t}* xr = xp + h * W + off + b0 * sw;
                        if (track) {{
                            int64_t base = h * W + off + b0 * sw;
                            for (int64_t o = lo; o < hi; o++) {{
                                {t} v = xr[o * sw];
                                int take = (v > m[o]) | (v != v);
                                m[o] = take ? v : m[o];
                                bi[o] = take ? base + o * sw : bi[o];
                            }}
                        }} else {{
                            for (int64_t o = lo; o < hi; o++) {{
                                {t} v = xr[o * sw];
                                int take = (v > m[o]) | (v != v);
                                m[o] = take ? v : m[o];
                            }}
                        }}
                    }}
                }}
                int64_t out = (p * OH + oh) * OW + b0;
                if (y) memcpy(y + out, m, nb * sizeof({t}));
                if (idx) memcpy(idx + out, bi, nb * sizeof(int64_t));
                if (gx) for (int64_t o = 0; o < nb; o++) gx[p * H * W + bi[o]] += g[out + o];
            }}
        }}
    }}
}}
"""
_GEOM = [I64] * 13
_LOOPS = Loops(_C, {"im2col": (_GEOM + [PTR, PTR], None), "col2im": (_GEOM + [PTR, PTR], None),
                    "max_pool": (_GEOM + [PTR, PTR, PTR, PTR, PTR], None)})


def out_size(size, k, s, lo, hi, d):
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _c_loops(xp, *arrays):
    """The C loops for these arrays (numpy, one float dtype, C-contiguous), or None."""
    if xp is not np:
        return None
    dt = arrays[0].dtype
    if any(type(a) is not np.ndarray or a.dtype != dt or not a.flags.c_contiguous for a in arrays):
        return None
    return _LOOPS(dt)


def _as_2d(spatial, kernel, stride, padding, dilation):
    """Geometry of a 1-D or 2-D window as 2-D (a 1-D window is 2-D with height 1), or None for 3-D."""
    if len(spatial) == 1:
        return ((1,) + tuple(spatial), (1,) + tuple(kernel), (1,) + tuple(stride), ((0, 0),) + tuple(padding),
                (1,) + tuple(dilation))
    if len(spatial) == 2:
        return tuple(spatial), tuple(kernel), tuple(stride), tuple(padding), tuple(dilation)
    return None


def _geometry(spatial, kernel, stride, padding, dilation):
    """The 13 integers the C loops take after `planes`, or None when the window is not 1-D or 2-D or its
    padding is asymmetric in a way the loops' single left pad cannot say (the right side is implied)."""
    g = _as_2d(spatial, kernel, stride, padding, dilation)
    if g is None:
        return None
    (H, W), (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = g
    OH, OW = out_size(H, kh, sh, pt, pb, dh), out_size(W, kw, sw, pl, pr, dw)
    return (H, W, kh, kw, OH, OW, sh, sw, pt, pl, dh, dw)


def _padded(xp, x, padding, value=0):
    if not any(lo or hi for lo, hi in padding):
        return x
    widths = ((0, 0), (0, 0)) + tuple((int(lo), int(hi)) for lo, hi in padding)
    return xp.pad(x, widths, mode="constant", constant_values=value)


def _window_view(xp, xpad, kernel, outs, stride, dilation):
    """(N, C, *kernel, *outs) strided view of every window of the padded input."""
    nd = len(kernel)
    st = xpad.strides
    shape = tuple(xpad.shape[:2]) + tuple(kernel) + tuple(outs)
    strides = tuple(st[:2]) + tuple(st[2 + a] * dilation[a] for a in range(nd)) + \
        tuple(st[2 + a] * stride[a] for a in range(nd))
    return xp.lib.stride_tricks.as_strided(xpad, shape, strides)


RUNS = {"c": 0, "numpy": 0}   # calls of im2col/col2im/max_pool that took each path (tests read it)


def im2col(xp, x, kernel, stride, padding, dilation, out=None):
    """(N, C, *S) -> contiguous (N, C, *kernel, *out): every window of x zero-padded by `padding`
    (written into `out` when given: a C-contiguous buffer of that shape and x's dtype)."""
    spatial = tuple(x.shape[2:])
    outs = tuple(out_size(n, k, s, lo, hi, d) for n, k, s, (lo, hi), d in zip(spatial, kernel, stride, padding,
                                                                             dilation))
    shape = tuple(x.shape[:2]) + tuple(kernel) + outs
    geom = _geometry(spatial, kernel, stride, padding, dilation)
    if geom is not None and xp is np and type(x) is np.ndarray and not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)   # one copy, then the C loop, not the numpy path's strided window copy
    loops = _c_loops(xp, x) if geom is not None else None
    if loops is not None:
        cols = np.empty(shape, x.dtype) if out is None else out.reshape(shape)
        if cols.size:
            loops["im2col"](x.shape[0] * x.shape[1], *geom, address(x), address(cols))
        RUNS["c"] += 1
        return cols
    RUNS["numpy"] += 1
    view = _window_view(xp, _padded(xp, x, padding), kernel, outs, stride, dilation)
    if out is None:
        return xp.ascontiguousarray(view)
    cols = out.reshape(shape)
    cols[...] = view
    return cols


def col2im(xp, cols, spatial, stride, padding, dilation, out=None):
    """The adjoint of im2col: (N, C, *kernel, *out) -> (N, C, *spatial), each input element the sum of
    the window entries that read it (written into `out` when given: C-contiguous, cols' dtype)."""
    nd = len(spatial)
    kernel, outs = tuple(cols.shape[2:2 + nd]), tuple(cols.shape[2 + nd:])
    geom = _geometry(spatial, kernel, stride, padding, dilation)
    loops = _c_loops(xp, cols) if geom is not None else None
    n, c = cols.shape[:2]
    if loops is not None:
        x = np.empty((n, c) + tuple(spatial), cols.dtype) if out is None else out
        if x.size:
            loops["col2im"](n * c, *geom, address(cols), address(x))
        RUNS["c"] += 1
        return x
    RUNS["numpy"] += 1
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, padding))
    xpad = xp.zeros((n, c) + padded, dtype=cols.dtype)
    for offs in np.ndindex(*kernel):
        sl = tuple(slice(i * d, i * d + s * (o - 1) + 1, s) for i, o, s, d in zip(offs, outs, stride, dilation))
        xpad[(Ellipsis,) + sl] += cols[(slice(None), slice(None)) + offs]
    crop = xpad[(Ellipsis,) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(spatial, padding))]
    if out is None:
        return xp.ascontiguousarray(crop)
    out[...] = crop
    return out


# The columns (im2col) of a whole batch can be large (the CNN step's second convolution: 42 MB); the
# kernels make them for a block of samples at a time, in one buffer reused block after block, so
# memory stays bounded and a block's columns are still in cache when its matmul (or col2im) reads
# them. Measured on the CNN step: blocks of up to 4 MB, 5-15% faster than whole-batch columns.
BLOCK_BYTES = 4 << 20


def _blocks(n, per_sample):
    """Sample ranges of at most BLOCK_BYTES of columns each (at least one sample)."""
    step = max(1, min(n, BLOCK_BYTES // max(per_sample, 1)))
    return [(a, min(n, a + step)) for a in range(0, n, step)] or [(0, 0)]


def _is_pointwise(kernel, stride, padding):
    return all(k == 1 for k in kernel) and all(s == 1 for s in stride) and not any(a or b for a, b in padding)


def _out_sizes(spatial, kernel, stride, padding, dilation):
    return tuple(out_size(n, k, s, lo, hi, d) for n, k, s, (lo, hi), d in zip(spatial, kernel, stride, padding,
                                                                             dilation))


def conv_forward(xp, x, w, b, stride, padding, dilation, groups):
    """PyTorch's convolution (cross-correlation) of x (N, C, *S) with w (O, C/groups, *k), plus b."""
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    kernel = tuple(w.shape[2:])
    outs = _out_sizes(tuple(x.shape[2:]), kernel, stride, padding, dilation)
    length, depth = int(np.prod(outs)), cg * int(np.prod(kernel))
    wm = w.reshape(groups, o // groups, depth)
    if _is_pointwise(kernel, stride, padding):
        out = xp.matmul(wm, x.reshape(n, groups, depth, length))
    else:
        # (N, G, O/G, L) is NCHW directly: one BLAS call per sample and group
        out = xp.empty((n, groups, o // groups, length), dtype=xp.result_type(x, w))
        blocks = _blocks(n, c * int(np.prod(kernel)) * length * x.itemsize)
        buf = xp.empty((blocks[0][1] - blocks[0][0], c) + kernel + outs, x.dtype)
        for a, e in blocks:
            cols = im2col(xp, x[a:e], kernel, stride, padding, dilation, out=buf[:e - a])
            xp.matmul(wm, cols.reshape(e - a, groups, depth, length), out=out[a:e])
    out = out.reshape((n, o) + outs)
    if b is not None:
        out += b.reshape((1, o) + (1,) * len(outs))
    return out


def conv_input_grad(xp, g, w, spatial, stride, padding, dilation, groups):
    """The gradient of conv_forward for x: w^T g per sample (the columns), then col2im."""
    n, o = g.shape[:2]
    cg = w.shape[1]
    kernel = tuple(w.shape[2:])
    outs = tuple(g.shape[2:])
    length = int(np.prod(outs))   # explicit sizes: -1 is ambiguous for an empty batch
    wt = w.reshape(groups, o // groups, cg * int(np.prod(kernel))).transpose(0, 2, 1)    # (G, Cg*prod(k), O/G)
    gm = g.reshape(n, groups, o // groups, length)
    if _is_pointwise(kernel, stride, padding) and outs == tuple(spatial):
        return xp.matmul(wt, gm).reshape((n, groups * cg) + tuple(spatial))
    gx = xp.empty((n, groups * cg) + tuple(spatial), dtype=xp.result_type(g, w))
    blocks = _blocks(n, groups * cg * int(np.prod(kernel)) * int(np.prod(outs)) * gx.itemsize)
    buf = xp.empty((blocks[0][1] - blocks[0][0], groups, wt.shape[1], gm.shape[3]), gx.dtype)
    for a, e in blocks:
        cols = xp.matmul(wt, gm[a:e], out=buf[:e - a])
        col2im(xp, cols.reshape((e - a, groups * cg) + kernel + outs), tuple(spatial), stride, padding, dilation,
               out=gx[a:e])
    return gx


def conv_weight_grad(xp, x, g, kernel, stride, padding, dilation, groups):
    """The gradient of conv_forward for w: the sum over samples of g @ im2col(x)^T."""
    n, c = x.shape[:2]
    o = g.shape[1]
    depth = (c // groups) * int(np.prod(kernel))
    length = int(np.prod(g.shape[2:]))   # explicit sizes: -1 is ambiguous for an empty batch
    gm = g.reshape(n, groups, o // groups, length)
    if _is_pointwise(kernel, stride, padding):
        gw = xp.matmul(gm, x.reshape(n, groups, depth, length).swapaxes(2, 3)).sum(axis=0)
        return gw.reshape((o, c // groups) + tuple(kernel))
    outs = _out_sizes(tuple(x.shape[2:]), kernel, stride, padding, dilation)
    blocks = _blocks(n, c * int(np.prod(kernel)) * int(np.prod(outs)) * x.itemsize)
    buf = xp.empty((blocks[0][1] - blocks[0][0], c) + tuple(kernel) + outs, x.dtype)
    gw = None
    for a, e in blocks:
        cols = im2col(xp, x[a:e], kernel, stride, padding, dilation, out=buf[:e - a])
        part = xp.matmul(gm[a:e], cols.reshape(e - a, groups, depth, length).swapaxes(2, 3))   # (B, G, O/G, depth)
        part = part[0] if e - a == 1 else part.sum(axis=0)
        gw = part if gw is None else xp.add(gw, part, out=gw)
    return gw.reshape((o, c // groups) + tuple(kernel))


# ---- max pooling ------------------------------------------------------------------------------------

def max_pool_c(xp, x, kernel, stride, padding, dilation, outs, want):
    """The C loop of 1-D/2-D float max pooling with symmetric `padding` (ints) and output sizes `outs`:
    want 'indices' or ('grad', g). None where it does not apply (the caller's numpy path runs)."""
    if len(kernel) not in (1, 2):
        return None
    g = want[1] if isinstance(want, tuple) else None
    loops = _c_loops(xp, x) if g is None else _c_loops(xp, x, g)
    if loops is None:
        return None
    pads = tuple((p, p) for p in padding)
    geo = _as_2d(tuple(x.shape[2:]), kernel, stride, pads, dilation)
    (H, W), (kh, kw), (sh, sw), ((pt, _), (pl, _)), (dh, dw) = geo
    o2 = (1,) + tuple(outs) if len(outs) == 1 else tuple(outs)
    planes = x.shape[0] * x.shape[1]
    args = (planes, H, W, kh, kw, o2[0], o2[1], sh, sw, pt, pl, dh, dw)
    out_shape = tuple(x.shape[:2]) + tuple(outs)
    null = None
    RUNS["c"] += 1
    if want == "indices":
        idx = np.empty(out_shape, np.int64)
        if idx.size:
            loops["max_pool"](*args, address(x), null, address(idx), null, null)
        return idx
    gx = np.empty(x.shape, x.dtype)
    if gx.size:
        loops["max_pool"](*args, address(x), null, null, address(g), address(gx))
    return gx


# ---- average pooling --------------------------------------------------------------------------------

def avg_divisor(spatial, kernel, stride, padding, outs, count_include_pad, divisor_override):
    """PyTorch's divisor per output position as an array of shape `outs` (numpy): the window clipped to
    the padded input (count_include_pad) or to the input itself, or divisor_override."""
    if divisor_override:
        return np.full(outs, float(divisor_override))
    div = np.ones((), np.float64)
    for a, (n, k, s, p, o) in enumerate(zip(spatial, kernel, stride, padding, outs)):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        size = end - start
        if not count_include_pad:
            size = np.minimum(end, n) - np.maximum(start, 0)
        div = np.multiply.outer(div, size.astype(np.float64)) if a else size.astype(np.float64)
    return div


def avg_pool(xp, x, kernel, stride, padding, outs, divisor):
    """Sum of each window (zeros outside the input) over `divisor` (an array of shape `outs`)."""
    right = tuple(max(0, (o - 1) * s + k - n - p) for n, k, s, p, o in zip(x.shape[2:], kernel, stride, padding,
                                                                            outs))
    xpad = _padded(xp, x, tuple((p, r) for p, r in zip(padding, right)))
    total = None
    for offs in np.ndindex(*kernel):
        v = xpad[(Ellipsis,) + tuple(slice(i, i + s * (o - 1) + 1, s) for i, o, s in zip(offs, outs, stride))]
        total = xp.array(v, copy=True) if total is None else xp.add(total, v, out=total)
    total /= xp.asarray(divisor, dtype=total.dtype)
    return total


def avg_pool_grad(xp, g, spatial, kernel, stride, padding, divisor):
    """The adjoint of avg_pool: each window's g / divisor spread over the window's input positions."""
    outs = tuple(g.shape[2:])
    right = tuple(max(0, (o - 1) * s + k - n - p) for n, k, s, p, o in zip(spatial, kernel, stride, padding, outs))
    padded = tuple(n + p + r for n, p, r in zip(spatial, padding, right))
    share = g / xp.asarray(divisor, dtype=g.dtype)
    gpad = xp.zeros(tuple(g.shape[:2]) + padded, dtype=g.dtype)
    for offs in np.ndindex(*kernel):
        gpad[(Ellipsis,) + tuple(slice(i, i + s * (o - 1) + 1, s) for i, o, s in zip(offs, outs, stride))] += share
    crop = tuple(slice(p, p + n) for n, p in zip(spatial, padding))
    return xp.ascontiguousarray(gpad[(Ellipsis,) + crop])
