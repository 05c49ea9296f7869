"""tf.nn: activations, dropout, bias_add, l2_loss and the cross-entropy losses with TF1's signatures
(the losses take labels= and logits= by keyword only, as TF1 enforces)."""
import numpy as np

from ..ops import creation as _cr
from ..ops import elementwise as _el
from ..ops import reduction as _rd
from ..ops import shape as _sh
from ..nn import functional as _F
from .graph import StaticGraphError
from .ops import _t, graph_op


def _act(fn, doc):
    def op(features):
        return fn(_t(features))
    op.__doc__ = doc
    return graph_op(op)


relu = _act(_el.relu, "max(features, 0).")
relu6 = _act(lambda x: _el.minimum(_el.relu(x), 6.0), "min(max(features, 0), 6).")
elu = _act(_el.elu, "features if > 0 else exp(features) - 1.")
softplus = _act(_el.softplus, "log(exp(features) + 1).")
sigmoid = _act(_el.sigmoid, "1 / (1 + exp(-x)).")
tanh = _act(_el.tanh, "Hyperbolic tangent.")


@graph_op
def leaky_relu(features, alpha=0.2):
    return _el.leaky_relu(_t(features), alpha)


def _axis_arg(axis, dim, what):
    if dim is not None:
        if axis is not None:
            raise StaticGraphError(f"{what}: pass axis= or dim=, not both")
        axis = dim
    return -1 if axis is None else int(axis)


@graph_op
def softmax(logits, axis=None, dim=None):
    """exp(logits) / sum(exp(logits)) along axis (default the last)."""
    return _F.softmax(_t(logits), axis=_axis_arg(axis, dim, "softmax"))


@graph_op
def log_softmax(logits, axis=None, dim=None):
    """logits - log(sum(exp(logits))) along axis (default the last)."""
    return _F.log_softmax(_t(logits), axis=_axis_arg(axis, dim, "log_softmax"))


@graph_op
def dropout(x, keep_prob=None, noise_shape=None, seed=None, rate=None):
    """Zero each element with probability 1 - keep_prob (or `rate`), scale the rest by 1 / keep_prob;
    drawn anew on every run. keep_prob may be a tensor (a placeholder fed 0.5 in training, 1.0 to
    evaluate). `seed` is not supported: the mask comes from dualgraph's generator (tf.set_random_seed)."""
    if (keep_prob is None) == (rate is None):
        raise StaticGraphError("dropout: pass exactly one of keep_prob and rate")
    if seed is not None:
        raise StaticGraphError("dropout: seed= is not supported (masks come from the generator "
                               "tf.set_random_seed seeds)")
    x = _t(x)
    keep = (1 - rate) if keep_prob is None else keep_prob
    if isinstance(keep, (int, float)):
        if not 0 < keep <= 1:
            raise StaticGraphError(f"dropout: keep_prob must be in (0, 1], got {keep}")
        if keep == 1:
            return x
    like = x
    if noise_shape is not None:
        like = _t(np.zeros(tuple(int(d) for d in noise_shape), x.dtype))
    mask = _el.less(_cr.rand_like(like), keep).astype(x.dtype)
    return x * mask / keep


@graph_op
def bias_add(value, bias, data_format=None):
    """value + bias, bias a vector over the last dim (or dim 1 with data_format "NCHW"/"NC...")."""
    v, b = _t(value), _t(bias)
    if b.ndim != 1:
        raise StaticGraphError(f"bias_add: bias must be a vector, got shape {tuple(b.shape)}")
    ch = 1 if data_format and data_format.startswith("NC") else -1
    if v.ndim < 2 or v.shape[ch] != b.shape[0]:
        raise StaticGraphError(f"bias_add: bias of shape {tuple(b.shape)} does not match channel dim {ch} of "
                               f"value shape {tuple(v.shape)}")
    if ch == 1:
        b = _sh.reshape(b, (b.shape[0],) + (1,) * (v.ndim - 2))
    return v + b


@graph_op
def l2_loss(t):
    """sum(t ** 2) / 2."""
    x = _t(t)
    return _rd.sum(x * x) / 2


def _same_shape(a, b):
    """Shapes that can agree at run time: equal sizes, or a size unknown until then on either side."""
    return len(a) == len(b) and all(x == y or not isinstance(x, int) or not isinstance(y, int) for x, y in zip(a, b))


def _keyword_only(name, args):
    if args:
        raise StaticGraphError(f"Only call `{name}` with named arguments (labels=..., logits=..., ...)")


def _pair(name, labels, logits):
    if labels is None or logits is None:
        raise StaticGraphError(f"{name}: both labels= and logits= are required")
    return _t(labels), _t(logits)


@graph_op
def _sigmoid_xent(labels, logits):
    z, x = _pair("sigmoid_cross_entropy_with_logits", labels, logits)
    if not _same_shape(z.shape, x.shape):
        raise StaticGraphError(f"sigmoid_cross_entropy_with_logits: labels {tuple(z.shape)} and logits "
                               f"{tuple(x.shape)} must have the same shape")
    return _el.relu(x) - x * z.astype(x.dtype) + _el.log1p(_el.exp(-_el.abs(x)))


def sigmoid_cross_entropy_with_logits(*args, labels=None, logits=None, name=None):
    """max(x, 0) - x * z + log(1 + exp(-|x|)) elementwise (z the labels, x the logits): the stable
    form of the binary cross-entropy of sigmoid(x)."""
    _keyword_only("sigmoid_cross_entropy_with_logits", args)
    return _sigmoid_xent(labels, logits, name=name)


@graph_op
def _softmax_xent(labels, logits, axis, stop_labels):
    y, x = _pair("softmax_cross_entropy_with_logits", labels, logits)
    if not _same_shape(y.shape, x.shape):
        raise StaticGraphError(f"softmax_cross_entropy_with_logits: labels {tuple(y.shape)} and logits "
                               f"{tuple(x.shape)} must have the same shape")
    if stop_labels:
        y = y.detach()
    return -_rd.sum(y.astype(x.dtype) * _F.log_softmax(x, axis=axis), axis=axis)


def softmax_cross_entropy_with_logits_v2(*args, labels=None, logits=None, axis=None, name=None, dim=None):
    """-sum(labels * log_softmax(logits)) along axis (default the last): one loss per example.
    Gradients flow into both labels and logits."""
    _keyword_only("softmax_cross_entropy_with_logits_v2", args)
    return _softmax_xent(labels, logits, _axis_arg(axis, dim, "softmax_cross_entropy_with_logits_v2"), False,
                         name=name)


def softmax_cross_entropy_with_logits(*args, labels=None, logits=None, dim=-1, name=None, axis=None):
    """As softmax_cross_entropy_with_logits_v2, but no gradient flows into labels (TF1's deprecated form)."""
    _keyword_only("softmax_cross_entropy_with_logits", args)
    return _softmax_xent(labels, logits, _axis_arg(axis, None if dim == -1 else dim,
                                                   "softmax_cross_entropy_with_logits"), True, name=name)


@graph_op
def _sparse_xent(labels, logits):
    y, x = _pair("sparse_softmax_cross_entropy_with_logits", labels, logits)
    if y.dtype.kind not in "iu":
        raise StaticGraphError(f"sparse_softmax_cross_entropy_with_logits: labels must be int32 or int64 class "
                               f"indices, got {y.dtype}")
    if not _same_shape(y.shape, x.shape[:-1]):
        raise StaticGraphError(f"sparse_softmax_cross_entropy_with_logits: labels of shape {tuple(y.shape)} must "
                               f"have the shape of logits {tuple(x.shape)} without its last dim")
    # a one-hot mask rather than take_along_axis, so that labels and logits whose batch sizes are
    # both unknown until run time (two placeholders' None dims) combine as broadcasting does
    n = x.shape[-1]
    classes = _t(np.arange(n, dtype=np.int64))
    yl = _sh.expand_dims(y.astype(np.int64), -1)
    lp = _F.log_softmax(x, axis=-1)
    loss = -_rd.sum(_el.where(_el.equal(yl, classes), lp, 0.0), axis=-1)
    valid = _el.logical_and(_el.greater_equal(y, 0), _el.less(y, n))
    return _el.where(valid, loss, float("nan"))  # an out-of-range label gives NaN, as on TF1's GPU kernel


def sparse_softmax_cross_entropy_with_logits(*args, labels=None, logits=None, name=None):
    """-log_softmax(logits)[labels] per example: labels are class indices of logits' shape without its
    last dim; a label outside [0, num_classes) gives NaN."""
    _keyword_only("sparse_softmax_cross_entropy_with_logits", args)
    return _sparse_xent(labels, logits, name=name)


__all__ = ["relu", "relu6", "elu", "softplus", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax", "dropout",
           "bias_add", "l2_loss", "sigmoid_cross_entropy_with_logits", "softmax_cross_entropy_with_logits",
           "softmax_cross_entropy_with_logits_v2", "sparse_softmax_cross_entropy_with_logits"]
