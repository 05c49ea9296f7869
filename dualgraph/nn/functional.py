"""dg.nn.functional: activations, softmax family, losses, dropout, linear, normalization, conv/pool.

The names PyTorch users reach for as `F.*`. Most are re-exported op functions (activations, conv and
pooling are primitives of dualgraph.ops, with their own records); the rest (losses, dropout, linear,
layer_norm, normalize) are composites of primitives, so they differentiate, trace and export through
those primitives' records and need none of their own.
"""
from ..errors import ShapeError
from ..ops.infer import norm_axes, shapes_match
from ..ops.loss import check_nll_args, nll_loss as _nll_loss
from ..ops.softmax import log_softmax as _log_softmax, softmax as _softmax
from ..ops.normalization import batch_norm as _batch_norm, layer_norm as _layer_norm
from ..ops.elementwise import (elu, gelu, leaky_relu, log, relu, sigmoid, silu, softplus, tanh, where,
                               abs as _abs, maximum, clip, rsqrt)
from ..ops.indexing import embedding as _embedding, one_hot
from ..ops.reduction import sum as _sum
from ..ops.conv import (avg_pool2d, conv1d, conv2d, max_pool1d, max_pool2d, max_pool3d,  # noqa: F401
                        adaptive_avg_pool2d, avg_pool1d, conv3d, conv_transpose1d, conv_transpose2d)
from ..ops.shape import pad  # noqa: F401  (PyTorch users call F.pad)
from .sparse import embedding  # noqa: F401  (with PyTorch's padding_idx, max_norm, ... options)
from ..tensor import as_tensor
from ._basics import _check_same_shape, _reduce, cosine_similarity, dropout, linear, pairwise_distance  # noqa: F401
from .attention import scaled_dot_product_attention  # noqa: F401
from .dropout import alpha_dropout, dropout1d, dropout2d, dropout3d, feature_alpha_dropout  # noqa: F401
from .more import (smooth_l1_loss, huber_loss, kl_div, cosine_embedding_loss, margin_ranking_loss,  # noqa: F401
                   triplet_margin_loss, soft_margin_loss, multilabel_soft_margin_loss, poisson_nll_loss,
                   gaussian_nll_loss, relu6, hardtanh, logsigmoid, softmin, glu, mish, hardswish, hardsigmoid,
                   prelu, selu, celu, softsign, tanhshrink, softshrink, hardshrink, threshold, group_norm,
                   instance_norm, local_response_norm, pixel_shuffle, pixel_unshuffle, interpolate, upsample,
                   bilinear, embedding_bag)
from . import more as _more

__all__ = ["relu", "gelu", "silu", "sigmoid", "tanh", "elu", "leaky_relu", "softplus", "softmax", "log_softmax",
           "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy_with_logits",
           "binary_cross_entropy", "dropout", "linear", "one_hot", "embedding", "layer_norm", "conv1d",
           "conv2d", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool2d", "adaptive_avg_pool2d", "normalize",
           "conv3d", "conv_transpose1d", "conv_transpose2d", "avg_pool1d", "batch_norm"]


def _axis(axis, dim, default=-1):
    if dim is not None:
        return dim
    return default if axis is None else axis


def softmax(x, axis=None, *, dim=None):
    return _softmax(x, _axis(axis, dim))


def log_softmax(x, axis=None, *, dim=None):
    return _log_softmax(x, _axis(axis, dim))




def _class_axis_last(x):
    """(N, C, d1, ...) -> (N, d1, ..., C) so classes sit on the last axis."""
    if x.ndim <= 2:
        return x
    return x.permute(0, *range(2, x.ndim), 1)


def nll_loss(log_probs, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices; `log_probs` is (N, C), (N, C, d1, ...) or unbatched (C,)."""
    target = as_tensor(target, like=log_probs)
    if weight is not None:
        weight = as_tensor(weight, like=log_probs)
        if weight.dtype != log_probs.dtype:
            weight = weight.astype(log_probs.dtype)
    unbatched = log_probs.ndim == 1
    lp = log_probs.unsqueeze(0) if unbatched else log_probs
    t = target.reshape(1) if unbatched else target
    check_nll_args(lp, t, weight, reduction)  # the op's own rule, so eager calls fail as traced ones do
    loss = _nll_loss(lp, t, weight, ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(()) if unbatched and reduction == "none" else loss


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's cross_entropy: logits (N, C[, d...]) against class indices or class probabilities."""
    target = as_tensor(target, like=input)
    logp = log_softmax(input, axis=1 if input.ndim > 1 else 0)
    if target.dtype.kind == "f":  # probabilities, same shape as input
        if not shapes_match(target.shape, input.shape):
            raise ShapeError(f"cross_entropy: probability targets must have the input's shape "
                             f"{tuple(input.shape)}, got {tuple(target.shape)}")
        n_classes = input.shape[1] if input.ndim > 1 else input.shape[0]
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / n_classes
        per = logp * target
        if weight is not None:
            shape = (1, -1) + (1,) * (input.ndim - 2) if input.ndim > 1 else (-1,)
            per = per * weight.reshape(shape)
        loss = -_sum(per, axis=1 if input.ndim > 1 else 0)
        return _reduce(loss, reduction, "cross_entropy")
    nll = nll_loss(logp, target, weight=weight, ignore_index=ignore_index,
                   reduction="none" if label_smoothing else reduction)
    if not label_smoothing:
        return nll
    n_classes = input.shape[1] if input.ndim > 1 else input.shape[0]
    lp = _class_axis_last(logp)
    if lp.ndim == 1:
        lp = lp.unsqueeze(0)
        target = target.reshape(1)
    valid = (target != ignore_index).astype(lp.dtype)
    if weight is not None:
        smooth = -_sum(lp * weight, axis=-1) * valid
        w = _embedding(where(target != ignore_index, target, 0), weight) * valid
    else:
        smooth = -_sum(lp, axis=-1) * valid
        w = valid
    loss = nll * (1 - label_smoothing) + smooth * (label_smoothing / n_classes)
    if reduction == "mean":
        return _sum(loss) / _sum(w)
    return _reduce(loss, reduction, "cross_entropy")




def mse_loss(input, target, reduction="mean"):
    target = as_tensor(target, like=input)
    _check_same_shape("mse_loss", input, target)
    d = input - target
    return _reduce(d * d, reduction, "mse_loss")


mse = mse_loss


def l1_loss(input, target, reduction="mean"):
    target = as_tensor(target, like=input)
    _check_same_shape("l1_loss", input, target)
    return _reduce(_abs(input - target), reduction, "l1_loss")


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """-[t log sigmoid(x) + (1-t) log(1-sigmoid(x))], computed stably from logits."""
    target = as_tensor(target, like=input)
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    log_sig_neg = softplus(-input)  # -log(sigmoid(x))
    if pos_weight is not None:
        loss = (1 - target) * input + (1 + (pos_weight - 1) * target) * log_sig_neg
    else:
        loss = (1 - target) * input + log_sig_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


bce_with_logits = binary_cross_entropy_with_logits


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    target = as_tensor(target, like=input)
    _check_same_shape("binary_cross_entropy", input, target)
    eps = 1e-12
    loss = -(target * log(clip(input, eps, None)) + (1 - target) * log(clip(1 - input, eps, None)))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")






def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    n = len(normalized_shape)
    if tuple(x.shape[-n:]) != tuple(normalized_shape):
        raise ShapeError(f"layer_norm: input shape {tuple(x.shape)} does not end with {tuple(normalized_shape)}")
    return _layer_norm(x, n, weight, bias, eps)[0]


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalize each channel (axis 1) of (N, C, ...): with the batch's statistics when training (or
    without running statistics), updating running_mean/running_var in place as PyTorch does
    (running = (1 - momentum) * running + momentum * statistic, the variance unbiased); else with the
    running statistics."""
    x = input
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: expected an input of shape (N, C, ...), got shape {tuple(x.shape)}")
    c = x.shape[1]
    bshape = (1, c) + (1,) * (x.ndim - 2)
    if training or running_mean is None or running_var is None:
        n = x.numel() // c if c else 0
        if training and n <= 1:
            raise ShapeError(f"batch_norm: expected more than 1 value per channel when training, got input "
                             f"shape {tuple(x.shape)}")
        out, mu, rstd = _batch_norm(x, weight, bias, eps)
        if training and running_mean is not None and running_var is not None:
            with no_grad():
                m = momentum
                mu = mu.detach().reshape(c).astype(running_mean.dtype)
                var = ((rstd.detach() ** -2.0 - eps) * (n / (n - 1))).reshape(c).astype(running_var.dtype)
                running_mean.copy_(running_mean * (1 - m) + mu * m)
                running_var.copy_(running_var * (1 - m) + var * m)
        return out
    out = (x - running_mean.reshape(bshape)) * rsqrt(running_var.reshape(bshape) + eps)
    if weight is not None:
        out = out * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out


def normalize(x, p=2.0, axis=None, eps=1e-12, *, dim=None):
    # vector_norm's gradient at a zero vector is 0 (PyTorch's subgradient), so a zero row differentiates
    # to 1/eps as in PyTorch, not to sqrt's 0/0
    axis = _axis(axis, dim, default=1)
    return x / maximum(vector_norm(x, ord=p, dim=axis, keepdim=True), eps)


__all__ += ["l1_loss", "mse", "bce_with_logits"]
_ = norm_axes



__all__ += ["scaled_dot_product_attention", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
            "feature_alpha_dropout"]






def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """PyTorch's F.unfold (im2col): (N, C, H, W) -> (N, C * kh * kw, L), L the number of windows. (The
    sliding window of one dim is Tensor.unfold.)"""
    batched = input.ndim == 4
    if not batched and input.ndim != 3:
        raise ShapeError(f"unfold: expects a 3-D or 4-D input (N, C, H, W), got shape {tuple(input.shape)}")
    x = input if batched else input.reshape(1, *input.shape)
    ph, pw = (padding, padding) if isinstance(padding, int) else tuple(padding)
    if ph or pw:
        x = pad(x, (pw, pw, ph, ph))
    cols = _windows(x, kernel_size, stride=stride, dilation=dilation)   # (N, C, kh, kw, OH, OW)
    n, c, kh, kw, oh, ow = cols.shape
    out = cols.reshape(n, c * kh * kw, oh * ow)
    return out if batched else out.reshape(c * kh * kw, oh * ow)


__all__ += ["cosine_similarity", "pairwise_distance", "unfold"]

from ..autograd import no_grad
from ..ops.linalg import vector_norm
from ..ops.conv import unfold as _windows

__all__ += list(_more.__all__)
