"""erf, GELU (exact and tanh) and GELU's gradients as one C loop each, for the eager forwards of their
op records (dualgraph.ops.elementwise); compiled graphs fuse the same records through their `expr`.

numpy has no erf: scipy's (or math.erf per element) took ~2 ms on the 512x512 float32 activations of a
small transformer, against ~0.1 ms for glibc's SIMD erff (libmvec) in one loop; GELU and its gradient as
numpy chains add 6 to 10 passes over the data around it. The loops compute the numpy formulas of the
records (same operations, same NaN/inf results: gelu(-inf) is NaN as 0.5 * x * (1 + erf(...)) gives),
to a few ulp of libm's erf. `apply(name, *arrays)` returns None where they do not apply (not numpy, not
float32/float64, not C-contiguous, shapes differ, fewer than MIN_SIZE elements, no C compiler): the
callers then run their numpy formula.
"""
import numpy as np

from .native import I64, PTR, Loops, address

MIN_SIZE = 64  # below this numpy's few ufunc calls cost about what one ctypes call does

_C = """#include <math.h>
#include <stdint.h>
#pragma GCC optimize ("fp-contract=off")
#pragma omp declare simd notinbranch
extern {t} erf{f}({t});
#pragma omp declare simd notinbranch
extern {t} exp{f}({t});
/* tanh is libm's scalar one, as in the fused kernels (dualgraph.kernels.ckernel), so both agree bit for bit */

void erf_loop(int64_t n, const {t}* restrict x, {t}* restrict y) {{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = erf{f}(x[i]);
}}

void gelu(int64_t n, const {t}* restrict x, {t}* restrict y) {{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {{
        {t} v = x[i];
        y[i] = ({t})0.5 * v * (1 + erf{f}(v * ({t})0.7071067811865476));
    }}
}}

void gelu_grad(int64_t n, const {t}* restrict g, const {t}* restrict x, {t}* restrict y) {{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {{
        {t} v = x[i];
        {t} cdf = ({t})0.5 * (1 + erf{f}(v * ({t})0.7071067811865476));
        {t} pdf = exp{f}(({t})-0.5 * v * v) * ({t})0.3989422804014327;
        y[i] = g[i] * (cdf + v * pdf);
    }}
}}

void gelu_tanh(int64_t n, const {t}* restrict x, {t}* restrict y) {{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {{
        {t} v = x[i];
        {t} u = ({t})0.7978845608028654 * (v + ({t})0.044715 * v * v * v);
        {t} th = tanh{f}(u);
        y[i] = ({t})0.5 * v * (1 + th);
    }}
}}

void gelu_tanh_grad(int64_t n, const {t}* restrict g, const {t}* restrict x, {t}* restrict y) {{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {{
        {t} v = x[i];
        {t} u = ({t})0.7978845608028654 * (v + ({t})0.044715 * v * v * v);
        {t} th = tanh{f}(u);
        {t} d = ({t})0.5 * (1 + th) + ({t})0.5 * v * (1 - th * th) * ({t})0.7978845608028654
                * (1 + ({t})0.134145 * v * v);
        y[i] = g[i] * d;
    }}
}}
"""
LOOPS = Loops(_C, {"erf_loop": ([I64, PTR, PTR], None), "gelu": ([I64, PTR, PTR], None),
                   "gelu_grad": ([I64, PTR, PTR, PTR], None), "gelu_tanh": ([I64, PTR, PTR], None),
                   "gelu_tanh_grad": ([I64, PTR, PTR, PTR], None)})


def _ok(a, dtype):
    return type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous


def apply(name, *arrays):
    """The loop `name` over same-shaped contiguous float arrays, into a new array; None where it does
    not apply."""
    x = arrays[-1]
    if type(x) is not np.ndarray or x.size < MIN_SIZE or x.dtype.kind != "f":
        return None
    dt = x.dtype
    if not all(_ok(a, dt) and a.shape == x.shape for a in arrays):
        return None
    loops = LOOPS(dt)
    if loops is None:
        return None
    out = np.empty_like(x)
    loops[name](x.size, *[address(a) for a in arrays], address(out))
    return out
