"""One Adam/AdamW step over a parameter's elements as one C loop (dualgraph.ops.optimizer's
adam_update): the moments, the denominator and the update in registers, one pass instead of about
twenty. The arithmetic is the numpy formula's, operation for operation in the parameter's dtype
(no fused multiply-add), so both give the same bits.
"""
import numpy as np

from .native import PTR, I64, Loops, address

_C = """#include <math.h>
#include <stdint.h>
#pragma GCC optimize ("fp-contract=off")
/* po, mo, vo may be p, m, v themselves (each element is read before it is written), so no restrict on them */
void adam_step(int64_t n, const {t}* p, const {t}* restrict g, const {t}* m,
               const {t}* v, {t}* po, {t}* mo, {t}* vo, const double* c) {{
    /* c: keep (1 - lr * wd, AdamW), wd (Adam's L2), b1, b2, eps, step size, sqrt(bias2), decoupled flag */
    const {t} keep = ({t})c[0], wd = ({t})c[1], b1 = ({t})c[2], b2 = ({t})c[3], eps = ({t})c[4];
    const {t} step = ({t})c[5], bias2 = ({t})c[6], nb1 = ({t})(1 - c[2]), nb2 = ({t})(1 - c[3]);
    const int decoupled = c[7] != 0, l2 = c[1] != 0;
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {{
        {t} pi = p[i], gi = g[i];
        if (decoupled) pi = pi * keep;
        else if (l2) gi = gi + pi * wd;
        {t} mi = m[i] * b1 + gi * nb1;
        {t} vi = v[i] * b2 + gi * gi * nb2;
        {t} denom = sqrt{f}(vi) / bias2 + eps;
        po[i] = pi - mi / denom * step;
        mo[i] = mi;
        vo[i] = vi;
    }}
}}
"""
LOOPS = Loops(_C, {"adam_step": ([I64] + [PTR] * 8, None)})


def _fits(a, like):
    return type(a) is np.ndarray and a.dtype == like.dtype and a.shape == like.shape and a.flags.c_contiguous


def adam_step(p, g, m, v, lr_wd, wd, b1, b2, eps, step_size, bias2_sqrt, out=None):
    """(p, m, v) after the step as new arrays, or None where the loop does not apply (not float32/64,
    operands of other dtypes, shapes or layouts, no compiler). lr_wd: lr * weight_decay for AdamW (0
    for none); wd: Adam's L2 weight decay (0 for AdamW). `out`: three buffers the caller gives up (the
    executor's donated p, m, v) to write the results into, used when they have p's layout."""
    if not (type(p) is np.ndarray and p.dtype.kind == "f" and p.size and all(_fits(a, p) for a in (g, m, v))):
        return None
    loops = LOOPS(p.dtype)
    if loops is None:
        return None
    t = p.dtype.type
    decoupled = lr_wd != 0
    c = np.array([float(t(1 - lr_wd)) if decoupled else 1.0, wd, b1, b2, eps, step_size, bias2_sqrt,
                  1.0 if decoupled else 0.0])
    if out is not None and all(_fits(o, p) and o.flags.writeable for o in out):
        po, mo, vo = out
    else:
        po, mo, vo = np.empty_like(p), np.empty_like(p), np.empty_like(p)
    loops["adam_step"](p.size, address(p), address(g), address(m), address(v), address(po), address(mo),
                       address(vo), address(c))
    return po, mo, vo
