"""log_softmax + nll_loss (cross-entropy) as one call each way in compiled graphs.

The graph keeps the four primitives (log_softmax, nll_loss and their gradients), so tracing, autodiff
and ONNX export see the ops users wrote. The executor runs the pairs together: forward
`lp = log_softmax(z, 1); loss = nll_loss(lp, t)` and backward `log_softmax_grad(nll_loss_grad(g, lp,
t), lp, 1)` become one C call each (the same C loops the ops use, in one shared object, so results
are bit-identical to the ops run one after the other). In a compiled training step each op call costs
several times its warm time, because the matmuls evict the interpreter's working set; at batch 128
the pair of calls saved is about 1% of the step. Without a compiler or for other layouts it runs the
two ops' forwards.
"""
import ctypes
from collections import Counter

import numpy as np

from ..native import I64, PTR, Loops, address
from ..ops import loss, softmax

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
_FUSED = Loops(softmax._ROW_C + loss._NLL_C + _FUSED_C,
               {"lsm_nll": ([I64, I64, PTR, PTR, PTR, PTR, PTR, I64, PTR, PTR], ctypes.c_int64),
                "nll_lsm_grad": ([I64, I64, PTR, PTR, I64, PTR, I64, PTR, PTR, PTR], None)})


# C calls ("forward", "backward"), and "numpy" for calls another layout sent to the ops' own forwards
RUNS = Counter()


def _shapes_agree(z, target, weight):
    """The C loops read n targets and c weights for n x c scores. A symbolic trace only knows that by
    name, so a call whose sizes disagree gets the error nll_loss gives eagerly, not a read past the end."""
    if target.shape != z.shape[:1] or (weight is not None and weight.shape != z.shape[1:]):
        loss.check_nll_args(z, target, weight, "mean")
        return False
    return True


def log_softmax_nll(z, target, weight, ignore_index, reduction):
    """(log_softmax(z, axis=1), nll_loss of it) for 2-D z."""
    loops = (_FUSED(z.dtype) if z.size and target.size and loss._c_path(np, z, target, weight)
             and _shapes_agree(z, target, weight) else None)
    if loops is not None:
        n, c = z.shape
        lp, e = np.empty_like(z), np.empty_like(z)
        per_sample = np.empty(n, z.dtype) if reduction == "none" else None
        totals = np.empty(2)
        bad = loops["lsm_nll"](n, c, address(z), address(lp), address(e), address(target),
                               None if weight is None else address(weight), ignore_index,
                               None if per_sample is None else address(per_sample), address(totals))
        RUNS["forward"] += 1
        return lp, loss.nll_result(bad, per_sample, totals, target, c, ignore_index, reduction, z.dtype)
    RUNS["numpy"] += 1
    lp = softmax.LOG_SOFTMAX.forward(np, z, axis=1)
    args = (lp, target) if weight is None else (lp, target, weight)
    return lp, loss.NLL_LOSS.forward(np, *args, ignore_index=ignore_index, reduction=reduction)


def nll_log_softmax_grad(g, lp, target, weight, ignore_index, reduction):
    """log_softmax_grad(nll_loss_grad(g, lp, target, weight), lp, axis=1) for 2-D lp."""
    loops = (_FUSED(lp.dtype) if lp.size and target.size and loss._c_path(np, lp, target, weight, g)
             and _shapes_agree(lp, target, weight) and g.shape == (target.shape if reduction == "none" else ())
             else None)
    if loops is not None:
        n, c = lp.shape
        gl, dz = np.empty_like(lp), np.empty_like(lp)
        loops["nll_lsm_grad"](n, c, address(target), None if weight is None else address(weight), ignore_index,
                              address(g), loss.REDUCTIONS.index(reduction), address(lp), address(gl), address(dz))
        RUNS["backward"] += 1
        return dz
    RUNS["numpy"] += 1
    args = (g, lp, target) if weight is None else (g, lp, target, weight)
    gl = loss.NLL_LOSS_GRAD.forward(np, *args, ignore_index=ignore_index, reduction=reduction)
    return softmax.LOG_SOFTMAX_GRAD.forward(np, gl, lp, axis=1)
