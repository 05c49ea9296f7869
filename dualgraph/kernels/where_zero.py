"""`where(mask, g, 0)` (ReLU's backward) without numpy's where, which is ~10x slower on random masks,
and the same with the column sums that a bias gradient takes of it, in one pass.

Every form is bit-identical to numpy's where (+0.0 under a False mask, NaN/inf there dropped, -0.0 and
NaN payloads kept under True): C loops on the float's bits when a compiler is there (.native), else
numpy multiplying the float's bits by the mask; other backends multiply the values and recompute
with where when that made a NaN. The kernel ops `where_zero` and `where_colsum` (dualgraph.ops.kernels)
run them; the `lower_kernels` pass puts those ops in a graph.
"""
import functools
from collections import Counter

import numpy as np

from .native import I64, PTR, Loops, address

_C = """#include <stdint.h>
void where_zero(int64_t n, const uint8_t* restrict m, const {u}* restrict a, {u}* restrict o) {{
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) o[i] = a[i] & -({u})(m[i] != 0);
}}

/* sums row by row in the array's type from +0.0, the order numpy's add.reduce(axis=0) uses */
void where_colsum(int64_t rows, int64_t cols, const uint8_t* restrict m, const {t}* restrict a,
                  {t}* restrict o, {t}* restrict s) {{
    for (int64_t j = 0; j < cols; j++) s[j] = 0;
    for (int64_t i = 0; i < rows; i++) {{
        const uint8_t* mi = m + i * cols;
        const {t}* ai = a + i * cols;
        {t}* oi = o + i * cols;
        #pragma omp simd
        for (int64_t j = 0; j < cols; j++) {{
            {t} v = mi[j] ? ai[j] : ({t})0;
            oi[j] = v;
            s[j] += v;
        }}
    }}
}}
"""
_LOOPS = Loops(_C, {"where_zero": ([I64, PTR, PTR, PTR], None),
                    "where_colsum": ([I64, I64, PTR, PTR, PTR, PTR], None)})
# C loop calls ("where_zero", "where_colsum"), and "numpy" for calls meant for them that another layout
# sent to numpy
RUNS = Counter()


def _fits(m, a, dtype):
    """The C loops read m and a as one flat run of bools and `dtype` floats each: checked on every call,
    since the loop is picked from traced shapes that a symbolic trace only knows by name."""
    return (type(a) is np.ndarray and type(m) is np.ndarray and a.dtype == dtype and m.dtype == np.bool_
            and m.shape == a.shape and m.flags.c_contiguous and a.flags.c_contiguous)


@functools.cache
def c_where_zero(dtype):
    """f(m, a) -> where(m, a, 0) as the C loop, for same-shape bool m and `dtype` a; None without a compiler."""
    loops = _LOOPS(dtype)
    if loops is None:
        return None
    fn = loops["where_zero"]
    dtype = np.dtype(dtype)

    def run(m, a):
        if not _fits(m, a, dtype):
            RUNS["numpy"] += 1
            return _without_c(m, a)
        r = np.empty(a.shape, a.dtype)
        if r.size:
            fn(r.size, address(m), address(a), address(r))
        RUNS["where_zero"] += 1
        return r
    return run


@functools.cache
def c_where_colsum(dtype):
    """f(m, a) -> (where(m, a, 0), its sum over axis 0) for 2-D m, a as one C loop; None without a compiler."""
    loops = _LOOPS(dtype)
    if loops is None:
        return None
    fn = loops["where_colsum"]
    dtype = np.dtype(dtype)

    def run(m, a):
        if not _fits(m, a, dtype) or a.ndim != 2:
            RUNS["numpy"] += 1
            r = _without_c(m, a)
            return r, np.add.reduce(r, axis=0)
        r, s = np.empty(a.shape, a.dtype), np.empty(a.shape[1:], a.dtype)
        fn(a.shape[0], a.shape[1], address(m), address(a), address(r), address(s))
        RUNS["where_colsum"] += 1
        return r, s
    return run


def where_zero(xp, m, a):
    """where(m, a, 0) for a float `a` and a bool `m`."""
    if (xp is np and type(a) is np.ndarray and type(m) is np.ndarray and m.dtype == np.bool_
            and m.shape == a.shape and _LOOPS(a.dtype) is not None):
        return c_where_zero(a.dtype)(m, a)
    return _without_c(m, a, xp)


def _without_c(m, a, xp=np):
    if xp is np and a.dtype.kind == "f" and a.dtype.itemsize in (2, 4, 8) and m.dtype == np.bool_:
        # the float's bits times the mask: as fast as a float multiply, and no NaN to check for
        bits = np.dtype(f"u{a.dtype.itemsize}")
        return np.multiply(a.view(bits), m, dtype=bits).view(a.dtype)
    if xp is np:
        with np.errstate(invalid="ignore"):
            r = np.multiply(a, m)
    else:
        r = xp.multiply(a, m)
    if r.dtype.kind == "f" and xp.isnan(r.sum()):
        return xp.where(m, a, xp.zeros((), a.dtype))
    return r
