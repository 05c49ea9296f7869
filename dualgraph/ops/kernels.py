"""Kernel ops: what the `fuse` and `lower_kernels` passes rewrite an optimized graph into.

They are op records like any other (forward, infer, traits), so a rewritten graph prints, runs in
the executor and interpreter, and can be checked against the graph it came from; they appear only
after autodiff and are not differentiable. Each forward runs its kernel from dualgraph.kernels when
that applies (a C loop built, numpy arrays of the layout it reads) and otherwise computes the same
values with the primitives' forwards, so every kernel op also runs on cupy and without a compiler.

    fused_elementwise(*xs)          a chain of elementwise nodes (its `body` subgraph) as one kernel
    fused_reduce(*xs)               such a chain ending in sum/max/min reductions over one set of axes
    where_zero(m, a)                where(m, a, 0) for a bool mask of a's shape (ReLU's backward)
    where_colsum(m, a)              that and its sum over axis 0 (the bias gradient below it), one pass
    log_softmax_nll(z, t[, w])      (log_softmax(z, 1), nll_loss of it) for 2-D scores, one call
    nll_log_softmax_grad(g, lp, t[, w])
                                    log_softmax_grad(nll_loss_grad(g, lp, t, w), lp, 1), one call
    matmul_t(a, b)                  (a @ b).T for 2-D operands, written C-ordered: BLAS runs in the
                                    fast orientation and what follows reads contiguous memory
    matmul_rows(a, b)               (..., M, K) @ (K, N) as one 2-D product over the rows of a
"""
import numpy as np

from ..graph.avals import Aval
from ..kernels import xent as _xent
from ..kernels.fused import kernel_for
from ..kernels.where_zero import c_where_colsum, c_where_zero, where_zero
from . import loss as _loss, softmax as _softmax
from .infer import result_dtype
from .linalg import _matmul_forward
from .onnx_rules import not_exportable
from .registry import defop

KERNEL = dict(vjp=None, differentiable=False,
              onnx=not_exportable("a kernel op: ONNX export reads the graph before fuse and lower_kernels"))


# ---- fused elementwise chains ----------------------------------------------------------------------

def _fused_infer(*xs, subgraphs=None):
    return tuple(v.aval for v in subgraphs["body"].outputs)


def _fused_forward(xp, *xs, subgraphs=None):
    return kernel_for(subgraphs["body"], xp)(*xs)


def _fused_onnx(ctx, node, *names):
    """Export normally reads the graph before fusion; a fused graph exports its chains node by node."""
    return tuple(ctx.inline(node.subgraphs["body"], names))


FUSED = defop("fused_elementwise", _fused_forward, _fused_infer, elementwise=True, foldable=False, n_out=-1,
              extra={"subgraphs": True, "kernel_body": True},
              kernel=lambda node, xp: kernel_for(node.subgraphs["body"], xp),
              writes_out=True, **dict(KERNEL, onnx=_fused_onnx))
# the same with reductions (records with `reduce`) at the end of the chain: the chain's value is accumulated
# where it is computed, never stored at full size; its results have the reduced shapes, so no donated buffer
FUSED_REDUCE = defop("fused_reduce", _fused_forward, _fused_infer, foldable=False, n_out=-1,
                     extra={"subgraphs": True, "kernel_body": True},
                     kernel=lambda node, xp: kernel_for(node.subgraphs["body"], xp), **dict(KERNEL, onnx=_fused_onnx))


# ---- where(mask, a, 0) -------------------------------------------------------------------------------

def _where_zero_kernel(node, xp):
    m, a = node.inputs
    if xp is np and a.aval.ndim and m.aval.dtype == np.bool_ and tuple(m.aval.shape) == tuple(a.aval.shape):
        return c_where_zero(a.aval.dtype)  # checks each call's layout, and falls back to numpy itself
    return None


WHERE_ZERO = defop("where_zero", where_zero, lambda m, a: Aval(a.shape, a.dtype), elementwise=True,
                   expr="({0} ? {1} : 0)", kernel=_where_zero_kernel, fresh=True, **KERNEL)


def _where_colsum_forward(xp, m, a):
    run = c_where_colsum(a.dtype) if xp is np else None
    if run is not None:
        return run(m, a)
    r = where_zero(xp, m, a)
    return r, (np.add.reduce(r, axis=0) if xp is np else r.sum(axis=0))


WHERE_COLSUM = defop("where_colsum", _where_colsum_forward,
                     lambda m, a: (Aval(a.shape, a.dtype), Aval(a.shape[1:], a.dtype)), n_out=2,
                     kernel=lambda node, xp: c_where_colsum(node.inputs[1].aval.dtype) if xp is np else None,
                     fresh=True, **KERNEL)


# ---- cross-entropy -----------------------------------------------------------------------------------

def _shapes_agree(z, target, weight):
    """The C loops read n targets and c weights for n x c scores. A symbolic trace only knows that by
    name, so a call whose sizes disagree gets the error nll_loss gives eagerly, not a read past the end."""
    if target.shape != z.shape[:1] or (weight is not None and weight.shape != z.shape[1:]):
        _loss.check_nll_args(z, target, weight, "mean")
        return False
    return True


def _log_softmax_nll_forward(xp, z, target, weight=None, *, ignore_index, reduction):
    loops = (_xent.LOOPS(z.dtype) if z.size and target.size and _loss._c_path(xp, z, target, weight)
             and _shapes_agree(z, target, weight) else None)
    if loops is not None:
        per_sample = np.empty(z.shape[0], z.dtype) if reduction == "none" else None
        lp, bad, totals = _xent.log_softmax_nll(loops, z, target, weight, ignore_index, per_sample)
        return lp, _loss.nll_result(bad, per_sample, totals, target, z.shape[1], ignore_index, reduction, z.dtype)
    _xent.RUNS["numpy"] += 1
    lp = _softmax.LOG_SOFTMAX.forward(xp, z, axis=1)
    args = (lp, target) if weight is None else (lp, target, weight)
    return lp, _loss.NLL_LOSS.forward(xp, *args, ignore_index=ignore_index, reduction=reduction)


def _log_softmax_nll_infer(z, target, weight=None, *, ignore_index, reduction):
    lp = _softmax.LOG_SOFTMAX.infer(z, axis=1)
    args = (lp, target) if weight is None else (lp, target, weight)
    return lp, _loss.NLL_LOSS.infer(*args, ignore_index=ignore_index, reduction=reduction)


LOG_SOFTMAX_NLL = defop("log_softmax_nll", _log_softmax_nll_forward, _log_softmax_nll_infer, n_out=2, fresh=True,
                        **KERNEL)


def _nll_log_softmax_grad_forward(xp, g, lp, target, weight=None, *, ignore_index, reduction):
    loops = (_xent.LOOPS(lp.dtype) if lp.size and target.size and _loss._c_path(xp, lp, target, weight, g)
             and _shapes_agree(lp, target, weight) and g.shape == (target.shape if reduction == "none" else ())
             else None)
    if loops is not None:
        return _xent.nll_log_softmax_grad(loops, g, lp, target, weight, ignore_index,
                                          _loss.REDUCTIONS.index(reduction))
    _xent.RUNS["numpy"] += 1
    args = (g, lp, target) if weight is None else (g, lp, target, weight)
    gl = _loss.NLL_LOSS_GRAD.forward(xp, *args, ignore_index=ignore_index, reduction=reduction)
    return _softmax.LOG_SOFTMAX_GRAD.forward(xp, gl, lp, axis=1)


NLL_LOG_SOFTMAX_GRAD = defop("nll_log_softmax_grad", _nll_log_softmax_grad_forward,
                             lambda g, lp, target, weight=None, **_: Aval(lp.shape, lp.dtype), fresh=True, **KERNEL)


# ---- matmul read transposed ----------------------------------------------------------------------------

def _matmul_t_forward(xp, a, b):
    if xp is np and a.dtype == b.dtype:
        out = np.empty((b.shape[1], a.shape[0]), a.dtype)
        np.matmul(a, b, out=out.T)
        return out
    return xp.ascontiguousarray(_matmul_forward(xp, a, b).T)


MATMUL_ROWS = defop("matmul_rows", _matmul_forward,
                    lambda a, b: Aval(tuple(a.shape[:-1]) + (b.shape[-1],), result_dtype(a, b)), fresh=True,
                    **KERNEL)
MATMUL_T = defop("matmul_t", _matmul_t_forward, lambda a, b: Aval((b.shape[1], a.shape[0]), result_dtype(a, b)),
                 fresh=True, **KERNEL)
