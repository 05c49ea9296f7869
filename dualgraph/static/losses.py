"""tf.losses: weighted losses reduced TF1's default way (SUM_BY_NONZERO_WEIGHTS: the weighted sum
over the number of non-zero weights, 0 when there are none)."""

from ..ops import elementwise as _el
from ..ops import reduction as _rd
from ..ops import shape as _sh
from .graph import StaticGraphError
from .nn import _same_shape, _sigmoid_xent, _softmax_xent, _sparse_xent
from .ops import _t, graph_op


def _reduce(losses, weights, what):
    w = _t(weights, losses.dtype)
    try:
        wb = _sh.broadcast_to(w, losses.shape)
    except Exception:
        raise StaticGraphError(f"{what}: weights of shape {tuple(w.shape)} do not broadcast to the losses' shape "
                               f"{tuple(losses.shape)}") from None
    total = _rd.sum(losses * wb)
    count = _rd.sum(_el.not_equal(wb, 0).astype(losses.dtype))
    return total / _el.maximum(count, 1)


def _same(what, a, b):
    if not _same_shape(a.shape, b.shape):
        raise StaticGraphError(f"{what}: labels {tuple(a.shape)} and predictions {tuple(b.shape)} must have the "
                               f"same shape")


@graph_op
def mean_squared_error(labels, predictions, weights=1.0, scope=None, loss_collection=None, reduction=None):
    """The weighted mean of (labels - predictions)^2."""
    y, p = _t(labels), _t(predictions)
    _same("mean_squared_error", y, p)
    return _reduce(_el.square(p - y.astype(p.dtype)), weights, "mean_squared_error")


@graph_op
def absolute_difference(labels, predictions, weights=1.0, scope=None, loss_collection=None, reduction=None):
    """The weighted mean of |labels - predictions|."""
    y, p = _t(labels), _t(predictions)
    _same("absolute_difference", y, p)
    return _reduce(_el.abs(p - y.astype(p.dtype)), weights, "absolute_difference")


@graph_op
def softmax_cross_entropy(onehot_labels, logits, weights=1.0, label_smoothing=0, scope=None, loss_collection=None,
                          reduction=None):
    """The weighted mean of the per-example softmax cross-entropy; label_smoothing mixes the labels
    with the uniform distribution: labels * (1 - s) + s / num_classes."""
    y, x = _t(onehot_labels), _t(logits)
    if label_smoothing:
        n = x.shape[-1]
        y = y.astype(x.dtype) * (1 - label_smoothing) + label_smoothing / n
    return _reduce(_softmax_xent(y, x, -1, True), weights, "softmax_cross_entropy")


@graph_op
def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None, loss_collection=None, reduction=None):
    """The weighted mean of the per-example sparse softmax cross-entropy."""
    return _reduce(_sparse_xent(labels, logits), weights, "sparse_softmax_cross_entropy")


@graph_op
def sigmoid_cross_entropy(multi_class_labels, logits, weights=1.0, label_smoothing=0, scope=None,
                          loss_collection=None, reduction=None):
    """The weighted mean of the elementwise sigmoid cross-entropy; label_smoothing: z * (1 - s) + s / 2."""
    z, x = _t(multi_class_labels), _t(logits)
    if label_smoothing:
        z = z.astype(x.dtype) * (1 - label_smoothing) + 0.5 * label_smoothing
    return _reduce(_sigmoid_xent(z, x), weights, "sigmoid_cross_entropy")


__all__ = ["mean_squared_error", "absolute_difference", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
           "sigmoid_cross_entropy"]
