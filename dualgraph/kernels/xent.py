"""log_softmax + nll_loss (cross-entropy) as one C call each way.

Forward `lp = log_softmax(z, 1); loss = nll_loss(lp, t)` and backward `log_softmax_grad(nll_loss_grad(g,
lp, t), lp, 1)` each become one call into one shared object holding the ops' own row loops
(dualgraph.kernels.rows), so results are bit-identical to the ops run one after the other. In a
compiled training step each op call costs several times its warm time, because the matmuls evict the
interpreter's working set; at batch 128 the pair of calls saved is about 1% of the step.

These are the raw loops: the kernel ops `log_softmax_nll` and `nll_log_softmax_grad`
(dualgraph.ops.kernels) check the layout, turn the loop's totals into the loss, and run the two ops'
forwards where the loops do not apply.
"""
import ctypes
from collections import Counter

import numpy as np

from .native import I64, PTR, Loops, address
from .rows import LOG_SOFTMAX_C, NLL_C

_FUSED_C = """
int64_t lsm_nll(int64_t n, int64_t c, const {t}* z, {t}* lp, {t}* e, const int64_t* target,
                const {t}* weight, int64_t ignore, {t}* per_sample, double* totals) {{
    lsm_forward(n, c, z, lp, e);
    return nll_forward(n, c, lp, target, weight, ignore, per_sample, totals);
}}

void nll_lsm_grad(int64_t n, int64_t c, const int64_t* target, const {t}* weight, int64_t ignore,
                  const {t}* g, int64_t reduction, const {t}* lp, {t}* gl, {t}* dz) {{
    nll_backward(n, c, target, weight, ignore, g, reduction, gl);
    lsm_backward(n, c, gl, lp, dz);
}}
"""
LOOPS = Loops(LOG_SOFTMAX_C + NLL_C + _FUSED_C,
              {"lsm_nll": ([I64, I64, PTR, PTR, PTR, PTR, PTR, I64, PTR, PTR], ctypes.c_int64),
               "nll_lsm_grad": ([I64, I64, PTR, PTR, I64, PTR, I64, PTR, PTR, PTR], None)})

# C calls ("forward", "backward"), and "numpy" for calls another layout sent to the ops' own forwards
RUNS = Counter()


def log_softmax_nll(loops, z, target, weight, ignore_index, per_sample):
    """(log_softmax(z, axis=1), first bad target's position or -1, totals [sum, summed weight]) for
    2-D contiguous z; the per-sample losses go to `per_sample` when it is an array."""
    n, c = z.shape
    lp, e = np.empty_like(z), np.empty_like(z)
    totals = np.empty(2)
    bad = loops["lsm_nll"](n, c, address(z), address(lp), address(e), address(target),
                           None if weight is None else address(weight), ignore_index,
                           None if per_sample is None else address(per_sample), address(totals))
    RUNS["forward"] += 1
    return lp, bad, totals


def nll_log_softmax_grad(loops, g, lp, target, weight, ignore_index, reduction_code):
    """log_softmax_grad(nll_loss_grad(g, lp, target, weight), lp, axis=1) for 2-D contiguous lp."""
    n, c = lp.shape
    gl, dz = np.empty_like(lp), np.empty_like(lp)
    loops["nll_lsm_grad"](n, c, address(target), None if weight is None else address(weight), ignore_index,
                          address(g), reduction_code, address(lp), address(gl), address(dz))
    RUNS["backward"] += 1
    return dz
