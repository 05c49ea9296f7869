"""tf.losses: weighted losses with TF1's reductions; the default, SUM_BY_NONZERO_WEIGHTS, is the
weighted sum over the number of non-zero weights (0 when there are none)."""

from ..ops import creation as _cr
from ..ops import elementwise as _el
from ..ops import reduction as _rd
from ..ops import shape as _sh
from .graph import StaticGraphError
from .nn import _same_shape, _sigmoid_xent, _softmax_xent, _sparse_xent
from .ops import _t, graph_op


class Reduction:
    """How a weighted loss is reduced (TF1's tf.losses.Reduction)."""
    NONE = "none"
    SUM = "weighted_sum"
    MEAN = "weighted_mean"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"

    @classmethod
    def all(cls):
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE, cls.SUM_BY_NONZERO_WEIGHTS)


def _reduce(losses, weights, what, reduction):
    if reduction not in Reduction.all():
        raise StaticGraphError(f"{what}: reduction {reduction!r} is not one of {Reduction.all()}")
    w = _t(weights, losses.dtype)
    try:
        wb = _sh.broadcast_to(w, losses.shape)
    except Exception:
        raise StaticGraphError(f"{what}: weights of shape {tuple(w.shape)} do not broadcast to the losses' shape "
                               f"{tuple(losses.shape)}") from None
    weighted = losses * wb
    if reduction == Reduction.NONE:
        return weighted
    total = _rd.sum(weighted)
    if reduction == Reduction.SUM:
        return total
    if reduction == Reduction.MEAN:
        den = _rd.sum(wb)
    elif reduction == Reduction.SUM_OVER_BATCH_SIZE:
        den = _rd.sum(_cr.ones_like(losses))
    else:
        den = _rd.sum(_el.not_equal(wb, 0).astype(losses.dtype))
    # TF1 divides with div_no_nan: a zero denominator (no weight) gives 0, never NaN
    return _el.where(_el.equal(den, 0), 0.0, total / _el.where(_el.equal(den, 0), 1.0, den))


def _same(what, a, b):
    if not _same_shape(a.shape, b.shape):
        raise StaticGraphError(f"{what}: labels {tuple(a.shape)} and predictions {tuple(b.shape)} must have the "
                               f"same shape")


@graph_op
def mean_squared_error(labels, predictions, weights=1.0, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """The weighted mean of (labels - predictions)^2."""
    y, p = _t(labels), _t(predictions)
    _same("mean_squared_error", y, p)
    return _reduce(_el.square(p - y.astype(p.dtype)), weights, "mean_squared_error", reduction)


@graph_op
def absolute_difference(labels, predictions, weights=1.0, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """The weighted mean of |labels - predictions|."""
    y, p = _t(labels), _t(predictions)
    _same("absolute_difference", y, p)
    return _reduce(_el.abs(p - y.astype(p.dtype)), weights, "absolute_difference", reduction)


@graph_op
def softmax_cross_entropy(onehot_labels, logits, weights=1.0, label_smoothing=0,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """The weighted mean of the per-example softmax cross-entropy; label_smoothing mixes the labels
    with the uniform distribution: labels * (1 - s) + s / num_classes."""
    y, x = _t(onehot_labels), _t(logits)
    if label_smoothing:
        n = x.shape[-1]
        y = y.astype(x.dtype) * (1 - label_smoothing) + label_smoothing / n
    return _reduce(_softmax_xent(y, x, -1, True), weights, "softmax_cross_entropy", reduction)


@graph_op
def sparse_softmax_cross_entropy(labels, logits, weights=1.0, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """The weighted mean of the per-example sparse softmax cross-entropy."""
    return _reduce(_sparse_xent(labels, logits), weights, "sparse_softmax_cross_entropy", reduction)


@graph_op
def sigmoid_cross_entropy(multi_class_labels, logits, weights=1.0, label_smoothing=0,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """The weighted mean of the elementwise sigmoid cross-entropy; label_smoothing: z * (1 - s) + s / 2."""
    z, x = _t(multi_class_labels), _t(logits)
    if label_smoothing:
        z = z.astype(x.dtype) * (1 - label_smoothing) + 0.5 * label_smoothing
    return _reduce(_sigmoid_xent(z, x), weights, "sigmoid_cross_entropy", reduction)


__all__ = ["Reduction", "mean_squared_error", "absolute_difference", "softmax_cross_entropy",
           "sparse_softmax_cross_entropy", "sigmoid_cross_entropy"]
