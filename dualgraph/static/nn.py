"""tf.nn: activations, dropout, bias_add, l2_loss and the cross-entropy losses with TF1's signatures
(the losses take labels= and logits= by keyword only, as TF1 enforces)."""
import builtins

import numpy as np

from ..ops import conv as _cv
from ..ops import creation as _cr
from ..ops import elementwise as _el
from ..ops import reduction as _rd
from ..ops import shape as _sh
from ..nn import functional as _F
from .graph import StaticGraphError
from . import ops as _ops
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
def embedding_lookup(params, ids):
    """Rows of params at ids: shape ids.shape + params.shape[1:]."""
    return _ops.gather(params, ids)


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


# ---- convolution and pooling (NHWC, TF1's default layout) -------------------------------------------

def _four(v, what, name):
    v = [v] * 4 if isinstance(v, int) else list(v)
    if len(v) == 2:
        v = [1] + v + [1]
    if len(v) != 4 or v[0] != 1 or v[3] != 1:
        raise StaticGraphError(f"{what}: {name} must be [1, h, w, 1] (NHWC), got {v}")
    return v[1], v[2]


def _same_pads(size, k, stride, dilation, what):
    """TF1's SAME padding for one spatial dim: the output has ceil(size / stride) positions and the odd
    pixel of padding goes after (bottom/right)."""
    if not isinstance(size, int):
        raise StaticGraphError(f"{what}: padding='SAME' needs the spatial sizes when the graph is built")
    out = -(-size // stride)
    total = builtins.max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _to_nchw(x, data_format, what):
    if data_format not in ("NHWC", "NCHW"):
        raise StaticGraphError(f"{what}: data_format must be 'NHWC' or 'NCHW', got {data_format!r}")
    if x.ndim != 4:
        raise StaticGraphError(f"{what}: input must be 4-D ({data_format}), got shape {tuple(x.shape)}")
    return _sh.permute(x, 0, 3, 1, 2) if data_format == "NHWC" else x


def _from_nchw(x, data_format):
    return _sh.permute(x, 0, 2, 3, 1) if data_format == "NHWC" else x


def _padding(x, kh, kw, sh, sw, dh, dw, padding, what, value=0.0):
    padding = padding.upper() if isinstance(padding, str) else padding
    if padding == "VALID":
        return x
    if padding != "SAME":
        raise StaticGraphError(f"{what}: padding must be 'SAME' or 'VALID', got {padding!r}")
    top, bottom = _same_pads(x.shape[2], kh, sh, dh, what)
    left, right = _same_pads(x.shape[3], kw, sw, dw, what)
    if top == bottom == left == right == 0:
        return x
    return _sh.pad(x, (left, right, top, bottom), value=value)


@graph_op
def conv2d(input, filter=None, strides=None, padding=None, use_cudnn_on_gpu=True, data_format="NHWC",
           dilations=(1, 1, 1, 1), filters=None):
    """2-D convolution (cross-correlation, as TF1 computes): input NHWC (or NCHW), filter
    [height, width, in_channels, out_channels], strides [1, sh, sw, 1], padding 'SAME' or 'VALID'."""
    w = _t(filters if filter is None else filter)
    if strides is None or padding is None:
        raise StaticGraphError("conv2d: strides and padding are required")
    x = _to_nchw(_t(input), data_format, "conv2d")
    if w.ndim != 4:
        raise StaticGraphError(f"conv2d: filter must be [h, w, in, out], got shape {tuple(w.shape)}")
    if data_format == "NCHW":
        strides, dilations = [strides[0], strides[2], strides[3], strides[1]], \
            [dilations[0], dilations[2], dilations[3], dilations[1]]
    sh, sw = _four(strides, "conv2d", "strides")
    dh, dw = _four(dilations, "conv2d", "dilations")
    kh, kw = w.shape[0], w.shape[1]
    x = _padding(x, kh, kw, sh, sw, dh, dw, padding, "conv2d")
    out = _cv.conv2d(x, _sh.permute(w, 3, 2, 0, 1), stride=(sh, sw), dilation=(dh, dw))
    return _from_nchw(out, data_format)


@graph_op
def max_pool(value, ksize, strides, padding, data_format="NHWC"):
    """The maximum over [1, kh, kw, 1] windows; SAME pads with -inf (padding never wins)."""
    x = _to_nchw(_t(value), data_format, "max_pool")
    kh, kw = _four(ksize, "max_pool", "ksize")
    sh, sw = _four(strides, "max_pool", "strides")
    x = _padding(x, kh, kw, sh, sw, 1, 1, padding, "max_pool", value=float("-inf"))
    return _from_nchw(_cv.max_pool2d(x, (kh, kw), (sh, sw)), data_format)


@graph_op
def avg_pool(value, ksize, strides, padding, data_format="NHWC"):
    """The mean over [1, kh, kw, 1] windows; with SAME, padded positions are left out of the mean (TF1)."""
    x = _to_nchw(_t(value), data_format, "avg_pool")
    kh, kw = _four(ksize, "avg_pool", "ksize")
    sh, sw = _four(strides, "avg_pool", "strides")
    padded = _padding(x, kh, kw, sh, sw, 1, 1, padding, "avg_pool")
    out = _cv.avg_pool2d(padded, (kh, kw), (sh, sw))
    if padded is not x:
        ones = _cr.ones_like(x[:1, :1])
        frac = _cv.avg_pool2d(_padding(ones, kh, kw, sh, sw, 1, 1, padding, "avg_pool"), (kh, kw), (sh, sw))
        out = out / frac
    return _from_nchw(out, data_format)


__all__ = ["conv2d", "max_pool", "avg_pool", "relu", "relu6", "elu", "softplus", "leaky_relu", "sigmoid", "tanh",
           "softmax", "log_softmax", "dropout", "bias_add", "embedding_lookup", "l2_loss",
           "sigmoid_cross_entropy_with_logits", "softmax_cross_entropy_with_logits",
           "softmax_cross_entropy_with_logits_v2", "sparse_softmax_cross_entropy_with_logits"]
