"""nll_loss as one primitive, with its gradient `nll_loss_grad` as another.

Every classifier's cross-entropy ends here. As a composite (mask the ignored targets, gather the
picked log-probabilities, weight, reduce; backward: zeros, scatter, broadcast) it is about a dozen
small nodes forward and backward, each a numpy call of 3-20 us: at batch 8 that was a fifth of a
compiled MLP training step. As two primitives it is a few numpy calls each way (one C loop for 2-D
float input and int64 targets when a C compiler is there: dualgraph.kernels.rows), and it exports as
ONNX's NegativeLogLikelihoodLoss (same ignore_index and weighted-mean rules as PyTorch).

Layout as PyTorch and ONNX: `log_probs` (N, C, d1, ...), `target` (N, d1, ...) of class indices,
optional per-class `weight` (C,). reduction='mean' divides by the summed weight of the targets
that are not ignored (NaN when every target is ignored, as PyTorch).
"""
import numpy as np

from ..errors import IndexOutOfRange, ShapeError
from ..graph.avals import Aval
from ..kernels.native import address
from ..kernels.rows import NLL as _NLL
from ..dispatch import apply
from .creation import zeros_like
from .elementwise import where
from .gather import along_axis_index, scatter_add
from .indexing import embedding, take_along_axis
from .infer import shapes_match
from .onnx_rules import is_sym, out_dtype
from .reduction import sum as _sum
from .registry import defop

REDUCTIONS = ("none", "mean", "sum")
_INT64 = np.dtype(np.int64)


def _c_path(xp, log_probs, target, weight, *more):
    """The C loops apply: numpy, 2-D contiguous float input, int64 targets, a matching contiguous weight."""
    return (xp is np and log_probs.ndim == 2 and type(log_probs) is np.ndarray
            and type(target) is np.ndarray and target.dtype == _INT64
            and log_probs.flags.c_contiguous and target.flags.c_contiguous
            and (weight is None or (type(weight) is np.ndarray and weight.dtype == log_probs.dtype
                                    and weight.flags.c_contiguous))
            and all(type(a) is np.ndarray and a.dtype == log_probs.dtype and a.flags.c_contiguous for a in more)
            and _NLL(log_probs.dtype) is not None)


def _bad_targets(xp, target, valid, safe, n_classes, ignore_index):
    bad = target[valid & ((safe < 0) | (safe >= n_classes))]
    return IndexOutOfRange(f"nll_loss: target values must lie in [0, {n_classes}) (or equal "
                           f"ignore_index={ignore_index}), got {sorted(set(bad.tolist()))[:5]}")


def _checked_targets(xp, log_probs, target, ignore_index, check=True):
    """(safe target with ignored entries set to 0, valid mask); refuses targets outside [0, C)."""
    valid = target != ignore_index
    safe = xp.where(valid, target, 0)
    n_classes = log_probs.shape[1]
    # one reduction checks both ends: a negative index viewed as unsigned is larger than any C
    if check and safe.size and int(safe.view(f"u{safe.dtype.itemsize}").max()) >= n_classes:
        raise _bad_targets(xp, target, valid, safe, n_classes, ignore_index)
    return safe, valid


def _weights(xp, dtype, safe, valid, weight):
    if weight is None:
        return valid.astype(dtype)
    return weight[safe] * valid


def _per_sample(xp, x, safe):
    """x[n, safe[n], ...]: the value at each sample's target class."""
    if x.ndim == 2:
        return x[xp.arange(x.shape[0]), safe]
    return xp.take_along_axis(x, safe[:, None], axis=1)[:, 0]


def _nll_loss_c(log_probs, target, weight, ignore_index, reduction):
    fwd = _NLL(log_probs.dtype)["nll_forward"]
    n, c = log_probs.shape
    per_sample = np.empty(n, log_probs.dtype) if reduction == "none" else None
    totals = np.empty(2)
    bad = fwd(n, c, address(log_probs), address(target), None if weight is None else address(weight),
              ignore_index, None if per_sample is None else address(per_sample), address(totals))
    return nll_result(bad, per_sample, totals, target, c, ignore_index, reduction, log_probs.dtype)


def nll_result(bad, per_sample, totals, target, n_classes, ignore_index, reduction, dtype):
    """The loss from the C loop's outputs (or its error: `bad` is the first bad target's position)."""
    if bad >= 0:
        valid = target != ignore_index
        raise _bad_targets(np, target, valid, np.where(valid, target, 0), n_classes, ignore_index)
    if per_sample is not None:
        return per_sample
    total, w_sum = totals
    if reduction == "sum":
        return np.asarray(total, dtype)
    return np.asarray(total / w_sum if w_sum else np.nan, dtype)


def _nll_loss_forward(xp, log_probs, target, weight=None, *, ignore_index, reduction):
    if target.shape != log_probs.shape[:1] + log_probs.shape[2:] or (
            weight is not None and weight.shape != log_probs.shape[1:2]):
        # sizes a symbolic trace knew only by name: the eager error, not a read past the target's end
        check_nll_args(log_probs, target, weight, reduction)
    if target.size and _c_path(xp, log_probs, target, weight):
        return _nll_loss_c(log_probs, target, weight, ignore_index, reduction)
    safe, valid = _checked_targets(xp, log_probs, target, ignore_index)
    w = _weights(xp, log_probs.dtype, safe, valid, weight)
    loss = _per_sample(xp, log_probs, safe)
    loss *= w
    if reduction == "none":
        return xp.negative(loss, out=loss)
    total = -loss.sum()
    if reduction == "sum":
        return xp.asarray(total, dtype=log_probs.dtype)
    w_sum = w.sum()
    return xp.asarray(total / w_sum if w_sum else np.nan, dtype=log_probs.dtype)  # all ignored: NaN, as PyTorch


def _nll_loss_grad_forward(xp, g, log_probs, target, weight=None, *, ignore_index, reduction):
    """d loss / d log_probs: -g * weight[target] (/ summed weight for 'mean') at each target, else 0."""
    # (the forward, which ran on this same target, has checked its range)
    if target.size and _c_path(xp, log_probs, target, weight, g):
        out = np.empty(log_probs.shape, log_probs.dtype)
        _NLL(log_probs.dtype)["nll_backward"](
            log_probs.shape[0], log_probs.shape[1], address(target), None if weight is None else address(weight),
            ignore_index, address(g), REDUCTIONS.index(reduction), address(out))
        return out
    safe, valid = _checked_targets(xp, log_probs, target, ignore_index, check=False)
    coef = _weights(xp, log_probs.dtype, safe, valid, weight)
    if reduction == "mean":
        w_sum = coef.sum()
        coef *= -g / w_sum if w_sum else 0  # every target ignored: no gradient, as PyTorch
    else:
        coef *= -g
    out = xp.zeros(log_probs.shape, log_probs.dtype)
    if log_probs.ndim == 2:
        out[xp.arange(log_probs.shape[0]), safe] = coef
    else:
        out[along_axis_index(xp, safe[:, None], 1)] = coef[:, None]
    return out


def check_nll_args(log_probs, target, weight, reduction):
    """Refuse what nll_loss cannot take; works on tensors and on abstract values alike."""
    if target.dtype.kind not in "iu":
        raise ShapeError(f"nll_loss: target must hold class indices (integers), got {target.dtype}")
    if log_probs.dtype.kind != "f":
        raise ShapeError(f"nll_loss: log_probs must be floating point, got {log_probs.dtype}")
    if log_probs.ndim < 2 or not shapes_match(tuple(log_probs.shape[:1]) + tuple(log_probs.shape[2:]), target.shape):
        raise ShapeError(f"nll_loss: input of shape {tuple(log_probs.shape)} needs a target of shape "
                         f"{tuple(log_probs.shape[:1]) + tuple(log_probs.shape[2:])}, got {tuple(target.shape)}")
    if weight is not None and (weight.ndim != 1 or not shapes_match(weight.shape, log_probs.shape[1:2])):
        raise ShapeError(f"nll_loss: weight must have shape ({log_probs.shape[1]},) (one per class), "
                         f"got {tuple(weight.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"nll_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _infer(log_probs, target, weight=None, *, ignore_index, reduction):
    check_nll_args(log_probs, target, weight, reduction)
    return Aval(tuple(target.shape) if reduction == "none" else (), log_probs.dtype)


def _grad_infer(g, log_probs, target, weight=None, *, ignore_index, reduction):
    return Aval(tuple(log_probs.shape), log_probs.dtype)


def _weight_grad(scores, target, weight, upstream, ignore_index, reduction):
    """d/d weight of `upstream . nll_loss(scores, target, weight)`, in dualgraph ops (so it traces and
    differentiates again). Ignored targets contribute nothing; for 'mean' the summed weight in the
    denominator depends on weight too: d(S/W)/dw_c = sum over n with target c of (-picked_n - L) / W."""
    valid = target != ignore_index
    safe = where(valid, target, 0)
    picked = take_along_axis(scores, safe.unsqueeze(1), 1).squeeze(1)
    v = valid.astype(scores.dtype)
    if reduction == "mean":
        w_sum = _sum(embedding(safe, weight) * v)
        loss = nll_loss(scores, target, weight, ignore_index=ignore_index, reduction="mean")
        contrib = (-picked - loss) * v * (upstream / w_sum)
    else:
        contrib = -picked * v * upstream
    return scatter_add(zeros_like(weight), 0, safe.reshape(-1), contrib.reshape(-1))


def _nll_loss_vjp(ctx, g):
    lp, target = ctx.inputs[:2]
    weight = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    a = ctx.attrs
    grads = [nll_loss_grad(g, lp, target, weight, **a), None]
    if weight is not None:
        needs = ctx.needs_input_grad
        grads.append(_weight_grad(lp, target, weight, g, a["ignore_index"], a["reduction"])
                     if needs is None or needs[2] else None)
    return tuple(grads)


def _nll_loss_grad_vjp(ctx, h):
    """nll_loss_grad is linear in g, and <h, nll_loss_grad(g)> = g . nll_loss(h): so the cotangent of
    g is nll_loss(h); log_probs only gives the shape; weight gets nll_loss(h)'s weight gradient."""
    g, lp, target = ctx.inputs[:3]
    weight = ctx.inputs[3] if len(ctx.inputs) > 3 else None
    a = ctx.attrs
    grads = [nll_loss(h, target, weight, **a), None, None]
    if weight is not None:
        needs = ctx.needs_input_grad
        grads.append(_weight_grad(h, target, weight, g, a["ignore_index"], a["reduction"])
                     if needs is None or needs[3] else None)
    return tuple(grads)


def _nll_loss_onnx(ctx, node, log_probs, target, weight=None):
    a = ctx.attrs(node)
    target = ctx.cast(target, node.inputs[1].aval.dtype, np.int64)
    inputs = [log_probs, target] + ([weight] if weight is not None else [])
    return ctx.emit("NegativeLogLikelihoodLoss", inputs, reduction=a["reduction"], ignore_index=int(a["ignore_index"]))


def _nll_loss_grad_onnx(ctx, node, g, log_probs, target, weight=None):
    """-g * weight[target] (/ summed weight for 'mean') at each target's class, 0 elsewhere: a one-hot
    mask (target == class index along axis 1) times the per-sample coefficient."""
    a = ctx.attrs(node)
    dt = out_dtype(node)
    target = ctx.cast(target, node.inputs[2].aval.dtype, np.int64)
    valid = ctx.emit("Not", [ctx.emit("Equal", [target, ctx.const(np.int64(a["ignore_index"]))])])
    safe = ctx.emit("Where", [valid, target, ctx.const(np.int64(0))])
    w = ctx.emit("Cast", [valid], to=ctx.onnx_dtype(dt))
    if weight is not None:
        w = ctx.emit("Mul", [w, ctx.emit("Gather", [weight, safe], axis=0)])
    minus_g = ctx.emit("Neg", [ctx.arg(node.inputs[0], g, dt)])
    if a["reduction"] == "mean":
        minus_g = ctx.emit("Div", [minus_g, ctx.reduce("ReduceSum", w, None, False)])
    coef = ctx.emit("Mul", [w, minus_g])
    shape = ctx.shape(node.inputs[1])
    trailing = [1] * (len(shape) - 2)
    if is_sym(shape[1]):
        n_classes = ctx.emit("Reshape", [ctx.dim(shape[1]), ctx.i64([])])
        classes = ctx.emit("Range", [ctx.const(np.int64(0)), n_classes, ctx.const(np.int64(1))])
        classes = ctx.emit("Reshape", [classes, ctx.i64([1, -1] + trailing)])
    else:
        classes = ctx.i64(np.arange(int(shape[1])).reshape([1, -1] + trailing))
    hit = ctx.emit("Cast", [ctx.emit("Equal", [ctx.unsqueeze(safe, [1]), classes])], to=ctx.onnx_dtype(dt))
    return ctx.emit("Mul", [hit, ctx.unsqueeze(coef, [1])])


NLL_LOSS = defop("nll_loss", _nll_loss_forward, _infer, _nll_loss_vjp, onnx=_nll_loss_onnx)
NLL_LOSS_GRAD = defop("nll_loss_grad", _nll_loss_grad_forward, _grad_infer, _nll_loss_grad_vjp,
                      onnx=_nll_loss_grad_onnx)


def nll_loss(log_probs, target, weight=None, *, ignore_index=-100, reduction="mean"):
    """The primitive on (N, C, d1, ...) log-probabilities; `dg.nn.functional.nll_loss` is the user entry."""
    inputs = (log_probs, target) if weight is None else (log_probs, target, weight)
    return apply(NLL_LOSS, inputs, {"ignore_index": int(ignore_index), "reduction": reduction})


def nll_loss_grad(g, log_probs, target, weight=None, *, ignore_index=-100, reduction="mean"):
    inputs = (g, log_probs, target) if weight is None else (g, log_probs, target, weight)
    return apply(NLL_LOSS_GRAD, inputs, {"ignore_index": int(ignore_index), "reduction": reduction})
