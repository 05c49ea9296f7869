"""Convolution and pooling kernels (NCHW, as PyTorch): im2col + one BLAS matmul per block of samples for
the convolution and its two gradients, and window loops for pooling.

    conv_forward(xp, x, w, b, ...)         y = w * x (+ b): the weight times the block's windows (im2col)
    conv_input_grad(xp, g, w, size, ...)   the transposed convolution: w^T g for the block, then each input
                                           row gathers the column rows that read it (col2im), in C
    conv_weight_grad(xp, x, g, ksize, ...) the sum over blocks of g @ im2col(x)^T
    max_pool2d / max_pool2d_grad           one pass over the windows each way (PyTorch's pick per window)

The columns of a block of m samples are one (C*prod(kernel), m*L) matrix (L output positions per sample;
as an array (C, *kernel, m, *out)), so each convolution of the block is one GEMM per group whatever m is;
the GEMM's (O, m*L) result gets the bias and goes to NCHW (O, L per sample) in one transposing copy, and
g's NCHW block comes to (O, m*L) in one copy. Chosen by measurement on the CNN step of benchmarks/bench_cnn_step.py
(2-core EPYC, OpenBLAS): one BLAS call per sample (numpy's stacked matmul) scaled badly to two threads;
the transposed layout (m*L, C*prod(kernel)) gives the same GEMM speed but im2col would write it with a
stride of C*prod(kernel) instead of whole rows. The column copy of numpy's strided view (a 6-D view with a
short inner run) and the strided `+=` of col2im over the whole batch cost more than the matmuls around
them; one C loop per (sample, channel) plane reads the input (or writes it) with its padding handled by
bounds and keeps the plane in L1. Every kernel has a numpy path (no compiler, other dtypes, cupy, 3-D
windows) computing the same values.

Spatial dims: any number on the numpy paths; the C loops take 2-D windows (1-D runs as 2-D with height 1).
Padding is (low, high) per spatial dim, so PyTorch's padding='same' with an even kernel is exact.
"""
import math
import threading

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

/* The columns of n samples of x (n, C, H, W): row (c, i, j) of the column matrix holds, for every
   sample s and output position, the input under window offset (i, j), zero in the padding. Row r of
   sample s starts at s * s_step + c * c_step + (i * kw + j) * k_step: the (C*kh*kw, n*OH*OW) matrix that
   makes a block of samples one GEMM is s_step = OH*OW, k_step = n*OH*OW, c_step = kh*kw*k_step. */
void im2col(int64_t n, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t OH, int64_t OW,
            int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
            int64_t s_step, int64_t c_step, int64_t k_step, const {t}* restrict x, {t}* restrict cols) {{
    for (int64_t s = 0; s < n; s++)
    for (int64_t c = 0; c < C; c++) {{
        const {t}* xp = x + (s * C + c) * H * W;
        {t}* cp = cols + s * s_step + c * c_step;
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) {{
                int64_t w0 = j * dw - pw, lo, hi;
                span(w0, sw, W, OW, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++) {{
                    {t}* row = cp + (i * kw + j) * k_step + oh * OW;
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

/* x (n, C, H, W) <- col2im of columns laid out as im2col's: each input row sums, in window order (i, j),
   the column rows that read it (a gather: every element written once, no scatter-add) */
void col2im(int64_t n, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t OH, int64_t OW,
            int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
            int64_t s_step, int64_t c_step, int64_t k_step, const {t}* restrict cols, {t}* restrict x) {{
    for (int64_t s = 0; s < n; s++)
    for (int64_t c = 0; c < C; c++) {{
        {t}* xp = x + (s * C + c) * H * W;
        const {t}* cp = cols + s * s_step + c * c_step;
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
                    const {t}* row = cp + (i * kw + j) * k_step + oh * OW;
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
_COLS = [I64] * 17   # n, C, the 12 integers of _geometry, s_step, c_step, k_step
_LOOPS = Loops(_C, {"im2col": (_COLS + [PTR, PTR], None), "col2im": (_COLS + [PTR, PTR], None),
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


def _prod(v):
    return math.prod(int(a) for a in v)


def _out_sizes(spatial, kernel, stride, padding, dilation):
    return tuple(out_size(n, k, s, lo, hi, d) for n, k, s, (lo, hi), d in zip(spatial, kernel, stride, padding,
                                                                             dilation))


def _steps(n, kernel, outs):
    """The C loops' (s_step, c_step, k_step) of the (C, *kernel, n, *outs) column layout."""
    length = _prod(outs)
    return length, _prod(kernel) * n * length, n * length


def im2col(xp, x, kernel, stride, padding, dilation, out=None):
    """(N, C, *S) -> contiguous (C, *kernel, N, *out): every window of x zero-padded by `padding`. As a
    (C*prod(kernel), N*prod(out)) matrix it is the right factor of the convolution of all N samples as one
    GEMM with the (O, C*prod(kernel)) weight (written into `out` when given: a C-contiguous buffer of that
    size and x's dtype)."""
    n, c = x.shape[:2]
    kernel = tuple(kernel)
    outs = _out_sizes(tuple(x.shape[2:]), kernel, stride, padding, dilation)
    shape = (c,) + kernel + (n,) + outs
    cols = xp.empty(shape, x.dtype) if out is None else out.reshape(shape)
    geom = _geometry(tuple(x.shape[2:]), kernel, stride, padding, dilation)
    if geom is not None and xp is np and type(x) is np.ndarray and not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)   # one copy, then the C loop, not the numpy path's strided window copy
    loops = _c_loops(xp, x, cols) if geom is not None else None
    if loops is not None:
        if cols.size:
            loops["im2col"](n, c, *geom, *_steps(n, kernel, outs), address(x), address(cols))
        RUNS["c"] += 1
        return cols
    RUNS["numpy"] += 1
    nd = len(kernel)
    view = _window_view(xp, _padded(xp, x, padding), kernel, outs, stride, dilation)   # (N, C, *kernel, *outs)
    cols[...] = view.transpose((1,) + tuple(range(2, 2 + nd)) + (0,) + tuple(range(2 + nd, 2 + 2 * nd)))
    return cols


def col2im(xp, cols, spatial, stride, padding, dilation, out=None):
    """The adjoint of im2col: (C, *kernel, N, *out) -> (N, C, *spatial), each input element the sum of
    the window entries that read it (written into `out` when given: C-contiguous, cols' dtype)."""
    nd = len(spatial)
    c, kernel, n, outs = cols.shape[0], tuple(cols.shape[1:1 + nd]), cols.shape[1 + nd], tuple(cols.shape[2 + nd:])
    geom = _geometry(spatial, kernel, stride, padding, dilation)
    loops = _c_loops(xp, cols) if geom is not None else None
    if loops is not None:
        x = np.empty((n, c) + tuple(spatial), cols.dtype) if out is None else out
        if x.size:
            loops["col2im"](n, c, *geom, *_steps(n, kernel, outs), address(cols), address(x))
        RUNS["c"] += 1
        return x
    RUNS["numpy"] += 1
    windows = cols.transpose((1 + nd, 0) + tuple(range(1, 1 + nd)) + tuple(range(2 + nd, 2 + 2 * nd)))
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, padding))
    xpad = xp.zeros((n, c) + padded, dtype=cols.dtype)
    for offs in np.ndindex(*kernel):
        sl = tuple(slice(i * d, i * d + s * (o - 1) + 1, s) for i, o, s, d in zip(offs, outs, stride, dilation))
        xpad[(Ellipsis,) + sl] += windows[(slice(None), slice(None)) + offs]
    crop = xpad[(Ellipsis,) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(spatial, padding))]
    if out is None:
        return xp.ascontiguousarray(crop)
    out[...] = crop
    return out


# Each kernel works on a block of samples at a time: the block's columns are one (C*prod(k), m*L) matrix
# (L output positions per sample), so the convolution of the block is one GEMM per group, not one per
# sample, and the GEMM's operands and result are still in cache when the copies around it (im2col,
# col2im, the transposes to and from NCHW) read them. The buffers are made once and reused block after
# block, so memory stays bounded whatever the batch. BLOCK_BYTES bounds a block's columns plus its GEMM
# result. Measured at the CNN step's second convolution (32 -> 64 channels, 3x3, 24x24 outputs; 811 KB
# a sample; 2-core EPYC, OpenBLAS, best call): at two threads its three GEMMs (forward, both gradients)
# for a batch of 64 take 39 ms one sample at a time, 27-28 ms in blocks of 3 to 8 samples, and more
# again from about 13 (out of cache); at one thread 49-51 ms in blocks of 1 to 5 samples, 53 ms of 8.
# With the copies around them (all five kernels of the step, one thread) 73-76 ms with 1 MB blocks and
# 76-81 ms with 4 MB; 4 MB (5 samples there) keeps the two-thread gain.
BLOCK_BYTES = 4 << 20
# A GEMM of GEMM_MACS multiply-adds or more splits over two BLAS threads with little lost waiting (at two
# threads the second convolution's GEMMs took 9.0-9.6 ms a batch in blocks of 4 to 8 samples, 42 to 85
# M multiply-adds a GEMM, 9-11 ms for 3, 12-16 ms for 2 and 13 ms one sample at a time, 11 M). A block
# larger than that only adds the copies to and from NCHW, which one sample a block does without
# (measured at one thread: 1x1 convolutions 256 -> 64 channels on 28x28, 19 ms one sample at a time
# against 24-27 ms in blocks of 3; 3x3 64 -> 64 on 56x56, 115 M multiply-adds a sample, stays at one).
GEMM_MACS = 32 << 20


def _blocks(n, rows, o, length, itemsize, macs):
    """Sample ranges for the kernels: a sample has `rows` column rows and `o` result (or g) rows of
    `length`, and each of its GEMMs (one per group) makes `macs` multiply-adds. A block holds the fewest
    samples that make GEMM_MACS (one where a sample's GEMM is that large already: no copies to and from
    NCHW), at most BLOCK_BYTES of buffers, and at least one sample."""
    want = -(-GEMM_MACS // max(macs, 1))
    step = max(1, min(n, want, BLOCK_BYTES // max((rows + o) * length * itemsize, 1)))
    return [(a, min(n, a + step)) for a in range(0, n, step)] or [(0, 0)]


# Each kernel's two work buffers (the columns, and g's or the result's rows) are kept between calls, per
# thread: made afresh, a few MB each, the pages of every call were faulted in again (measured on the CNN
# step: 7 ms of system time a step at one thread, against 0.3 ms with the buffers kept). Buffers above
# SCRATCH_MAX_BYTES (a sample larger than a block) are made per call and not kept.
SCRATCH_MAX_BYTES = 16 << 20
_SCRATCH = threading.local()


def _scratch(xp, slot, size, dtype):
    """A 1-D work array of `size` elements of `dtype`, the same memory call after call for this slot and
    thread (numpy); its contents are garbage."""
    nbytes = size * np.dtype(dtype).itemsize
    if xp is not np or nbytes > SCRATCH_MAX_BYTES:
        return xp.empty(size, dtype)
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(slot)
    if buf is None or buf.nbytes < nbytes:
        buf = bufs[slot] = np.empty(nbytes, np.uint8)
    return buf[:nbytes].view(dtype)


def _is_pointwise(kernel, stride, padding):
    return all(k == 1 for k in kernel) and all(s == 1 for s in stride) and not any(a or b for a, b in padding)


def _rows(xp, a, buf):
    """(m, O, *out) -> contiguous (O, m*L): the samples side by side along the columns (a view for one
    sample), copied into `buf`."""
    m, o = a.shape[:2]
    length = _prod(a.shape[2:])
    if m == 1:
        return a.reshape(o, length)
    rows = buf[:o * m * length].reshape(o, m, length)
    xp.copyto(rows, a.reshape(m, o, length).transpose(1, 0, 2))
    return rows.reshape(o, m * length)


def conv_forward(xp, x, w, b, stride, padding, dilation, groups):
    """PyTorch's convolution (cross-correlation) of x (N, C, *S) with w (O, C/groups, *k), plus b: per block
    of m samples, the (O/G, C/G*prod(k)) weight of each group times the group's columns (C/G*prod(k), m*L),
    then the bias added to the (O, m*L) result and the result written out as NCHW."""
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    kernel = tuple(w.shape[2:])
    outs = _out_sizes(tuple(x.shape[2:]), kernel, stride, padding, dilation)
    length, depth = _prod(outs), cg * _prod(kernel)
    dtype = xp.result_type(x, w)
    out = xp.empty((n, o) + outs, dtype=dtype)
    wm = w.reshape(groups, o // groups, depth)
    bias = None if b is None else b.reshape(1, o, 1)
    pointwise = _is_pointwise(kernel, stride, padding)
    blocks = _blocks(n, c * _prod(kernel), o, length, out.itemsize, o // groups * depth * length)
    step = blocks[0][1] - blocks[0][0]
    cbuf = None if pointwise and step == 1 else _scratch(xp, "cols", c * _prod(kernel) * step * length, x.dtype)
    ybuf = _scratch(xp, "rows", o * step * length, dtype) if step > 1 else None
    for a, e in blocks:
        m = e - a
        if m == 0:
            break
        if pointwise:
            cols = _rows(xp, x[a:e], cbuf)
        else:
            cols = im2col(xp, x[a:e], kernel, stride, padding, dilation, out=cbuf[:c * _prod(kernel) * m * length])
        dst = out[a:e].reshape(m, o, length)
        if m == 1:
            xp.matmul(wm, cols.reshape(groups, depth, length), out=dst.reshape(groups, o // groups, length))
            if bias is not None:
                dst += bias
            continue
        y = xp.matmul(wm, cols.reshape(groups, depth, m * length), out=ybuf[:o * m * length].reshape(
            groups, o // groups, m * length)).reshape(o, m * length)
        if bias is not None:   # on the contiguous rows: measured 2x faster than adding during the transpose
            y += bias.reshape(o, 1)
        xp.copyto(dst, y.reshape(o, m, length).transpose(1, 0, 2))
    return out


def conv_input_grad(xp, g, w, spatial, stride, padding, dilation, groups):
    """The gradient of conv_forward for x (the transposed convolution): per block of m samples, the
    columns w^T g as one (C*prod(k), m*L) GEMM per group, then col2im into NCHW."""
    n, o = g.shape[:2]
    cg = w.shape[1]
    kernel = tuple(w.shape[2:])
    outs = tuple(g.shape[2:])
    length, depth, c = _prod(outs), cg * _prod(kernel), groups * cg
    dtype = xp.result_type(g, w)
    gx = xp.empty((n, c) + tuple(spatial), dtype=dtype)
    wt = w.reshape(groups, o // groups, depth).transpose(0, 2, 1)    # (G, Cg*prod(k), O/G)
    direct = _is_pointwise(kernel, stride, padding) and outs == tuple(spatial)
    blocks = _blocks(n, c * _prod(kernel), o, length, gx.itemsize, o // groups * depth * length)
    step = blocks[0][1] - blocks[0][0]
    gbuf = _scratch(xp, "rows", o * step * length, g.dtype) if step > 1 else None
    cbuf = None if direct and step == 1 else _scratch(xp, "cols", c * _prod(kernel) * step * length, dtype)
    for a, e in blocks:
        m = e - a
        if m == 0:
            break
        rows = _rows(xp, g[a:e], gbuf).reshape(groups, o // groups, m * length)
        if direct and m == 1:
            xp.matmul(wt, rows, out=gx[a].reshape(groups, cg, length))
            continue
        cols = xp.matmul(wt, rows, out=cbuf[:c * _prod(kernel) * m * length].reshape(groups, depth, m * length))
        col2im(xp, cols.reshape((c,) + kernel + (m,) + outs), tuple(spatial), stride, padding, dilation, out=gx[a:e])
    return gx


def conv_weight_grad(xp, x, g, kernel, stride, padding, dilation, groups):
    """The gradient of conv_forward for w: per block of m samples, g's rows (O/G, m*L) times the columns
    (C/G*prod(k), m*L) transposed, one GEMM per group, summed over the blocks."""
    n, c = x.shape[:2]
    o = g.shape[1]
    kernel = tuple(kernel)
    depth = (c // groups) * _prod(kernel)
    outs = tuple(g.shape[2:])
    length = _prod(outs)
    dtype = xp.result_type(x, g)
    pointwise = _is_pointwise(kernel, stride, padding)
    blocks = _blocks(n, c * _prod(kernel), o, length, np.dtype(dtype).itemsize, o // groups * depth * length)
    step = blocks[0][1] - blocks[0][0]
    gbuf = _scratch(xp, "rows", o * step * length, g.dtype) if step > 1 else None
    cbuf = None if pointwise and step == 1 else _scratch(xp, "cols", c * _prod(kernel) * step * length, x.dtype)
    gw = xp.zeros((groups, o // groups, depth), dtype=dtype)
    part = xp.empty_like(gw) if len(blocks) > 1 else None
    for i, (a, e) in enumerate(blocks):
        m = e - a
        if m == 0:
            break
        rows = _rows(xp, g[a:e], gbuf).reshape(groups, o // groups, m * length)
        if pointwise:
            cols = _rows(xp, x[a:e], cbuf)
        else:
            cols = im2col(xp, x[a:e], kernel, stride, padding, dilation, out=cbuf[:c * _prod(kernel) * m * length])
        cols = cols.reshape(groups, depth, m * length).swapaxes(1, 2)
        if i == 0:
            xp.matmul(rows, cols, out=gw)
        else:
            gw += xp.matmul(rows, cols, out=part)
    return gw.reshape((o, c // groups) + kernel)


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
