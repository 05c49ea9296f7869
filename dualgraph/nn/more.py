"""More of torch.nn's losses, activations and layers, each a composite of existing dualgraph ops.

Being composites they differentiate, trace and export to ONNX through the records of the ops they are
built from, and need no records of their own.
"""
import math

import numpy as np

from ..errors import ShapeError
from ..ops import elementwise as ew
from ..ops.reduction import mean as _mean, sum as _sum
from ..ops.shape import pad as _pad
from ..ops.softmax import log_softmax as _log_softmax, softmax as _softmax
from ..tensor import as_tensor
from ._basics import _check_same_shape, _reduce as _basic_reduce, cosine_similarity, pairwise_distance
from .sparse import embedding as _embedding
from .module import Module, Parameter
from ..errors import DualgraphError
from ..autograd import no_grad
from ..ops.indexing import index_select
from ..ops.linalg import einsum
from ..ops.reduction import amax
from ..ops.creation import full, ones, rand, randn, zeros

__all__ = [
    # losses
    "smooth_l1_loss", "huber_loss", "kl_div", "cosine_embedding_loss", "margin_ranking_loss",
    "triplet_margin_loss", "soft_margin_loss", "multilabel_soft_margin_loss", "poisson_nll_loss",
    "gaussian_nll_loss",
    # activations
    "relu6", "hardtanh", "logsigmoid", "softmin", "glu", "mish", "hardswish", "hardsigmoid", "prelu", "selu",
    "celu", "softsign", "tanhshrink", "softshrink", "hardshrink", "threshold",
    # layers
    "group_norm", "instance_norm", "local_response_norm", "pixel_shuffle", "pixel_unshuffle", "interpolate",
    "upsample", "bilinear",
]



def _legacy_reduction(size_average, reduce, reduction):
    """PyTorch's deprecated size_average/reduce, when given, decide the reduction as they do there:
    reduce=False keeps every element, otherwise size_average=False sums and True (the default) averages."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"

def _reduce(loss, reduction, op):
    return _basic_reduce(loss, reduction, op)


def _same(op, a, b):
    b = as_tensor(b, like=a)
    _check_same_shape(op, a, b)
    return b


# ---------------------------------------------------------------- losses

def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta=0 is the L1 loss)."""
    target = _same("smooth_l1_loss", input, target)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    d = ew.abs(input - target)
    if beta == 0:
        return _reduce(d, reduction, "smooth_l1_loss")
    loss = ew.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1_loss")


def huber_loss(input, target, reduction="mean", delta=1.0):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta): beta * smooth_l1 with beta=delta."""
    target = _same("huber_loss", input, target)
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    d = ew.abs(input - target)
    loss = ew.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return _reduce(loss, reduction, "huber_loss")


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL(target || exp(input)) pointwise: `input` holds log-probabilities; `target` probabilities (or
    log-probabilities with log_target=True). reduction='batchmean' divides the sum by the batch size,
    the mathematically correct KL; 'mean' averages over every element as PyTorch does."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = as_tensor(target, like=input)
    if log_target:
        loss = ew.exp(target) * (target - input)
    else:
        # 0 * log 0 is 0: PyTorch's xlogy
        safe = ew.where(target > 0, target, 1.0)
        loss = ew.where(target > 0, target * (ew.log(safe) - input), 0.0)
    if reduction == "batchmean":
        return _sum(loss) / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction, "kl_div")


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """1 - cos(x1, x2) where target is 1, max(0, cos(x1, x2) - margin) where it is -1."""
    target = as_tensor(target, like=input1)
    dim = 1 if input1.ndim > 1 else 0
    cos = cosine_similarity(input1, input2, dim=dim, eps=1e-8)
    loss = ew.where(target == 1, 1.0 - cos, ew.relu(cos - margin))
    loss = ew.where((target == 1) | (target == -1), loss, 0.0)
    return _reduce(loss, reduction, "cosine_embedding_loss")


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """max(0, -target * (x1 - x2) + margin)."""
    target = as_tensor(target, like=input1)
    return _reduce(ew.relu(-target * (input1 - input2) + margin), reduction, "margin_ranking_loss")


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
    """max(d(a, p) - d(a, n) + margin, 0) with d the pairwise p-norm distance."""
    d_pos = pairwise_distance(anchor, positive, p=p, eps=eps)
    d_neg = pairwise_distance(anchor, negative, p=p, eps=eps)
    if swap:
        d_neg = ew.minimum(d_neg, pairwise_distance(positive, negative, p=p, eps=eps))
    return _reduce(ew.relu(d_pos - d_neg + margin), reduction, "triplet_margin_loss")


def soft_margin_loss(input, target, reduction="mean"):
    """log(1 + exp(-target * input)) averaged over elements."""
    target = _same("soft_margin_loss", input, target)
    return _reduce(ew.softplus(-target * input), reduction, "soft_margin_loss")


def multilabel_soft_margin_loss(input, target, weight=None, reduction="mean"):
    """Per sample, the mean over classes of the binary cross-entropy with logits (N, C)."""
    target = _same("multilabel_soft_margin_loss", input, target)
    loss = target * ew.softplus(-input) + (1 - target) * ew.softplus(input)
    if weight is not None:
        loss = loss * weight
    loss = _mean(loss, axis=-1)
    return _reduce(loss, reduction, "multilabel_soft_margin_loss")


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    """exp(input) - target * input with log_input, else input - target * log(input + eps); full adds
    Stirling's approximation target*log(target) - target + 0.5 log(2 pi target) where target > 1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = as_tensor(target, like=input)
    if log_input:
        loss = ew.exp(input) - target * input
    else:
        loss = input - target * ew.log(input + eps)
    if full:
        safe = ew.where(target > 1, target, 2.0)
        stirling = safe * ew.log(safe) - safe + 0.5 * ew.log(2 * math.pi * safe)
        loss = loss + ew.where(target > 1, stirling, 0.0)
    return _reduce(loss, reduction, "poisson_nll_loss")


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """0.5 (log(max(var, eps)) + (input - target)^2 / max(var, eps)) (+ 0.5 log(2 pi) with full). `var` has
    the input's shape, or one dim fewer / a last dim of 1 (one variance per sample)."""
    target = as_tensor(target, like=input)
    var = as_tensor(var, like=input)
    if var.shape != input.shape:
        if var.ndim == input.ndim - 1 and tuple(var.shape) == tuple(input.shape[:-1]):
            var = var.unsqueeze(-1)
        elif not (var.ndim == input.ndim and tuple(var.shape[:-1]) == tuple(input.shape[:-1])
                  and var.shape[-1] == 1):
            raise ShapeError(f"gaussian_nll_loss: var of shape {tuple(var.shape)} does not fit the input's "
                             f"shape {tuple(input.shape)}")
    try:
        negative = bool((var < 0).any().item())
    except DualgraphError:  # traced: no values to check
        negative = False
    if negative:
        raise ValueError("gaussian_nll_loss: var has negative entries")
    # the clamp is not differentiated through, as in PyTorch
    with no_grad():
        floor = ew.maximum(var.detach(), eps) - var.detach()
    v = var + floor
    loss = 0.5 * (ew.log(v) + (input - target) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction, "gaussian_nll_loss")


# ---------------------------------------------------------------- activations

def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    return ew.clip(input, min_val, max_val)


def relu6(input, inplace=False):
    return ew.clip(input, 0.0, 6.0)


def logsigmoid(input):
    return -ew.softplus(-input)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = 0 if input.ndim in (0, 1, 3) else 1
    x = input if dtype is None else input.astype(dtype)
    return _softmax(-x, dim)


def glu(input, dim=-1):
    """a * sigmoid(b) with a, b the two halves of `input` along `dim`."""
    n = input.shape[dim]
    if n % 2:
        raise ShapeError(f"glu: halving dim {dim} of size {n} (input shape {tuple(input.shape)}) needs an even "
                         f"size")
    a, b = input.chunk(2, dim)
    return a * ew.sigmoid(b)


def mish(input, inplace=False):
    return input * ew.tanh(ew.softplus(input))


def hardsigmoid(input, inplace=False):
    return ew.clip(input / 6.0 + 0.5, 0.0, 1.0)


def hardswish(input, inplace=False):
    return input * ew.clip(input + 3.0, 0.0, 6.0) / 6.0


def prelu(input, weight):
    """max(0, x) + weight * min(0, x), weight one value or one per channel (dim 1)."""
    if weight.size != 1 and input.ndim >= 2:
        if weight.size != input.shape[1]:
            raise ShapeError(f"prelu: weight of size {weight.size} does not match the {input.shape[1]} channels "
                             f"of input shape {tuple(input.shape)}")
        weight = weight.reshape((1, -1) + (1,) * (input.ndim - 2))
    elif weight.size != 1 and input.ndim == 1:
        weight = weight.reshape(-1)
    else:
        weight = weight.reshape(())
    return ew.relu(input) + weight * ew.minimum(input, 0.0)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input, inplace=False):
    return _SELU_SCALE * ew.elu(input, _SELU_ALPHA)


def celu(input, alpha=1.0, inplace=False):
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0")
    return ew.relu(input) + ew.minimum(alpha * ew.expm1(input / alpha), 0.0)


def softsign(input):
    return input / (1 + ew.abs(input))


def tanhshrink(input):
    return input - ew.tanh(input)


def softshrink(input, lambd=0.5):
    return ew.where(input > lambd, input - lambd, ew.where(input < -lambd, input + lambd, 0.0))


def hardshrink(input, lambd=0.5):
    return ew.where((input > lambd) | (input < -lambd), input, 0.0)


def threshold(input, threshold, value, inplace=False):
    """input where input > threshold, else value."""
    return ew.where(input > threshold, input, float(value))


# ---------------------------------------------------------------- layers

def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize (N, C, ...) over each group of C // num_groups channels and the spatial dims."""
    if input.ndim < 2:
        raise ShapeError(f"group_norm: expected an input of shape (N, C, ...), got {tuple(input.shape)}")
    n, c = input.shape[0], input.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ShapeError(f"group_norm: {c} channels (input shape {tuple(input.shape)}) are not divisible into "
                         f"{num_groups} groups")
    x = input.reshape(n, num_groups, -1)
    mu = _mean(x, axis=-1, keepdims=True)
    d = x - mu
    var = _mean(d * d, axis=-1, keepdims=True)
    out = (d * ew.rsqrt(var + eps)).reshape(input.shape)
    bshape = (1, c) + (1,) * (input.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Normalize each (sample, channel) of (N, C, ...) over its spatial dims; with running statistics and
    use_input_stats=False, by those instead."""
    if input.ndim < 3:
        raise ShapeError(f"instance_norm: expected an input of shape (N, C, L...), got {tuple(input.shape)}")
    c = input.shape[1]
    bshape = (1, c) + (1,) * (input.ndim - 2)
    axes = tuple(range(2, input.ndim))
    if use_input_stats or running_mean is None:
        mu = _mean(input, axis=axes, keepdims=True)
        d = input - mu
        var = _mean(d * d, axis=axes, keepdims=True)
        out = d * ew.rsqrt(var + eps)
        if use_input_stats and running_mean is not None and running_var is not None:
            with no_grad():
                k = int(np.prod(input.shape[2:]))
                m_mu = _mean(mu.detach().reshape(input.shape[0], c), axis=0).astype(running_mean.dtype)
                unb = var.detach().reshape(input.shape[0], c) * (k / max(k - 1, 1))
                m_var = _mean(unb, axis=0).astype(running_var.dtype)
                running_mean.copy_(running_mean * (1 - momentum) + m_mu * momentum)
                running_var.copy_(running_var * (1 - momentum) + m_var * momentum)
    else:
        out = (input - running_mean.reshape(bshape)) * ew.rsqrt(running_var.reshape(bshape) + eps)
    if weight is not None:
        out = out * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """x / (k + alpha/size * sum of x^2 over `size` neighbouring channels)^beta (PyTorch's window: size//2
    channels before and (size-1)//2 after)."""
    if input.ndim < 3:
        raise ShapeError(f"local_response_norm: expected an input of shape (N, C, ...), got {tuple(input.shape)}")
    c = input.shape[1]
    sq = input * input
    widths = [(0, 0)] * input.ndim
    widths[1] = (size // 2, (size - 1) // 2)
    padded = _pad(sq, tuple(widths))
    acc = None
    for i in range(size):
        part = padded[:, i:i + c]
        acc = part if acc is None else acc + part
    div = (acc * (alpha / size) + k) ** beta
    return input / div


def pixel_shuffle(input, upscale_factor):
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    r = int(upscale_factor)
    if input.ndim < 3 or input.shape[-3] % (r * r):
        raise ShapeError(f"pixel_shuffle: input shape {tuple(input.shape)} needs channels (dim -3) divisible by "
                         f"upscale_factor^2 = {r * r}")
    *lead, c, h, w = input.shape
    oc = c // (r * r)
    nb = len(lead)
    x = input.reshape(*lead, oc, r, r, h, w)
    x = x.permute(*range(nb), nb, nb + 3, nb + 1, nb + 4, nb + 2)
    return x.reshape(*lead, oc, h * r, w * r)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""
    r = int(downscale_factor)
    if input.ndim < 3 or input.shape[-1] % r or input.shape[-2] % r:
        raise ShapeError(f"pixel_unshuffle: input shape {tuple(input.shape)} needs H and W divisible by "
                         f"downscale_factor = {r}")
    *lead, c, h, w = input.shape
    nb = len(lead)
    x = input.reshape(*lead, c, h // r, r, w // r, r)
    x = x.permute(*range(nb), nb, nb + 2, nb + 4, nb + 1, nb + 3)
    return x.reshape(*lead, c * r * r, h // r, w // r)


def _out_sizes(op, input, size, scale_factor, nsp):
    spatial = tuple(input.shape[2:])
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size and scale_factor")
    if size is not None:
        size = (size,) * nsp if isinstance(size, int) else tuple(int(s) for s in size)
        if len(size) != nsp:
            raise ShapeError(f"{op}: size {size} for {nsp} spatial dims of input shape {tuple(input.shape)}")
        return size, [None] * nsp
    sf = (scale_factor,) * nsp if isinstance(scale_factor, (int, float)) else tuple(scale_factor)
    if len(sf) != nsp:
        raise ShapeError(f"{op}: scale_factor {sf} for {nsp} spatial dims of input shape {tuple(input.shape)}")
    return tuple(int(math.floor(d * s)) for d, s in zip(spatial, sf)), list(sf)


def _nearest_index(n_in, n_out, scale, exact=False):
    # PyTorch's 'nearest': src = floor(dst * in/out), or floor(dst / scale_factor) when one was given;
    # 'nearest-exact' samples pixel centres: floor((dst + 0.5) * in/out)
    s = (1.0 / scale) if scale is not None else n_in / n_out
    return np.minimum(np.floor((np.arange(n_out) + (0.5 if exact else 0.0)) * s).astype(np.int64), n_in - 1)


def _linear_weights(n_in, n_out, scale, align_corners):
    if align_corners:
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        s = (1.0 / scale) if scale is not None else n_in / n_out
        src = np.maximum((np.arange(n_out) + 0.5) * s - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    return i0, i1, w1


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """PyTorch's F.interpolate for 'nearest' (3-D, 4-D, 5-D input), 'linear' (3-D), 'bilinear' (4-D),
    built from index_select and constant weights, so it differentiates and exports."""
    if input.ndim < 3:
        raise ShapeError(f"interpolate: expected an input of shape (N, C, spatial...), got {tuple(input.shape)}")
    nsp = input.ndim - 2
    if antialias:
        raise ValueError("interpolate: antialias=True is not supported")
    if mode in ("nearest", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("interpolate: align_corners only applies to the linear modes")
    elif mode in ("linear", "bilinear", "trilinear"):
        want = {"linear": 1, "bilinear": 2, "trilinear": 3}[mode]
        if want != nsp:
            raise ShapeError(f"interpolate: mode {mode!r} expects a {want + 2}-D input, got shape "
                             f"{tuple(input.shape)}")
    else:
        raise ValueError(f"interpolate: mode {mode!r} is not supported; use 'nearest', 'nearest-exact', 'linear', "
                         f"'bilinear' "
                         f"or 'trilinear'")
    out_sizes, scales = _out_sizes("interpolate", input, size, scale_factor, nsp)
    if recompute_scale_factor:
        scales = [None] * nsp
    x = input
    for k, n_out in enumerate(out_sizes):
        dim = 2 + k
        n_in = input.shape[dim]
        if mode in ("nearest", "nearest-exact"):
            idx = _nearest_index(n_in, n_out, scales[k], exact=mode == "nearest-exact")
            x = index_select(x, dim, _on(idx, x))
            continue
        i0, i1, w1 = _linear_weights(n_in, n_out, scales[k], bool(align_corners))
        wshape = [1] * x.ndim
        wshape[dim] = n_out
        w1t = _on(w1.reshape(wshape).astype(x.dtype), x)
        a = index_select(x, dim, _on(i0, x))
        b = index_select(x, dim, _on(i1, x))
        x = a + (b - a) * w1t
    return x


def _on(host_array, like):
    """A host-computed index or weight array as a tensor on `like`'s device."""
    t = as_tensor(host_array)
    return t if t.device is like.device else t.to(like.device)


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    return interpolate(input, size, scale_factor, mode, align_corners)


def bilinear(input1, input2, weight, bias=None):
    """y_k = x1 W_k x2^T + b_k, weight (out, in1, in2)."""
    if input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2]:
        raise ShapeError(f"bilinear: inputs of shapes {tuple(input1.shape)} and {tuple(input2.shape)} do not "
                         f"match weight shape {tuple(weight.shape)}")
    out = einsum("...i,kij,...j->...k", input1, weight, input2)
    return out + bias if bias is not None else out


# ---------------------------------------------------------------- modules

def _check_reduction(reduction, extra=()):
    if reduction not in ("mean", "sum", "none") + tuple(extra):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction='{self.reduction}'"


class SmoothL1Loss(_Loss):
    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(_legacy_reduction(size_average, reduce, reduction))
        self.beta = beta

    def forward(self, input, target):
        return smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__()
        self.reduction = _check_reduction(_legacy_reduction(size_average, reduce, reduction), ("batchmean",))
        self.log_target = log_target

    def forward(self, input, target):
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class CosineEmbeddingLoss(_Loss):
    def __init__(self, margin=0.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__(_legacy_reduction(size_average, reduce, reduction))
        self.margin = margin

    def forward(self, input1, input2, target):
        return cosine_embedding_loss(input1, input2, target, margin=self.margin, reduction=self.reduction)


class MarginRankingLoss(_Loss):
    def __init__(self, margin=0.0, size_average=None, reduce=None, reduction="mean"):
        super().__init__(_legacy_reduction(size_average, reduce, reduction))
        self.margin = margin

    def forward(self, input1, input2, target):
        return margin_ranking_loss(input1, input2, target, margin=self.margin, reduction=self.reduction)


class TripletMarginLoss(_Loss):
    def __init__(self, margin=1.0, p=2.0, eps=1e-6, swap=False, size_average=None, reduce=None, reduction="mean"):
        super().__init__(_legacy_reduction(size_average, reduce, reduction))
        self.margin, self.p, self.eps, self.swap = margin, p, eps, swap

    def forward(self, anchor, positive, negative):
        return triplet_margin_loss(anchor, positive, negative, margin=self.margin, p=self.p, eps=self.eps,
                                   swap=self.swap, reduction=self.reduction)


class SoftMarginLoss(_Loss):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__(_legacy_reduction(size_average, reduce, reduction))

    def forward(self, input, target):
        return soft_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(_legacy_reduction(size_average, reduce, reduction))
        self.register_buffer("weight", None if weight is None else as_tensor(weight).clone())

    def forward(self, input, target):
        return multilabel_soft_margin_loss(input, target, weight=self.weight, reduction=self.reduction)


class PoissonNLLLoss(_Loss):
    def __init__(self, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None, reduction="mean"):
        super().__init__(_legacy_reduction(size_average, reduce, reduction))
        self.log_input, self.full, self.eps = log_input, full, eps

    def forward(self, log_input, target):
        return poisson_nll_loss(log_input, target, log_input=self.log_input, full=self.full, eps=self.eps,
                                reduction=self.reduction)


class GaussianNLLLoss(_Loss):
    def __init__(self, *, full=False, eps=1e-6, reduction="mean"):
        super().__init__(reduction)
        self.full, self.eps = full, eps

    def forward(self, input, target, var):
        return gaussian_nll_loss(input, target, var, full=self.full, eps=self.eps, reduction=self.reduction)


class CosineSimilarity(Module):
    def __init__(self, dim=1, eps=1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return cosine_similarity(x1, x2, dim=self.dim, eps=self.eps)


class PairwiseDistance(Module):
    def __init__(self, p=2.0, eps=1e-6, keepdim=False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1, x2):
        return pairwise_distance(x1, x2, p=self.norm, eps=self.eps, keepdim=self.keepdim)


_REQUIRED = object()


def _fn_module(name, fn, params=(), doc=None):
    """A module class calling `fn(x, **its constructor arguments)` (PyTorch's argument names/defaults)."""
    names = [p[0] for p in params]

    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        vals = dict(params)
        for n, v in zip(names, args):
            vals[n] = v
        for n, v in kwargs.items():
            if n not in vals and n != "inplace":
                raise TypeError(f"{name}.__init__() got an unexpected keyword argument {n!r}")
            vals[n] = v
        vals.pop("inplace", None)
        missing = [n for n in names if vals.get(n) is _REQUIRED]
        if missing:
            raise TypeError(f"{name}.__init__() missing required argument(s): {', '.join(missing)}")
        for n in names:
            if n != "inplace":
                setattr(self, n, vals[n])

    def forward(self, x):
        return fn(x, **{n: getattr(self, n) for n in names if n != "inplace"})

    def extra_repr(self):
        return ", ".join(f"{n}={getattr(self, n)}" for n in names if n != "inplace")

    return type(name, (Module,), {"__init__": __init__, "forward": forward, "extra_repr": extra_repr,
                                  "__doc__": doc or f"nn.{name}: applies F.{fn.__name__}."})


LogSigmoid = _fn_module("LogSigmoid", logsigmoid)
Softmin = _fn_module("Softmin", softmin, [("dim", None)])
GLU = _fn_module("GLU", glu, [("dim", -1)])
Mish = _fn_module("Mish", mish, [("inplace", False)])
Hardswish = _fn_module("Hardswish", hardswish, [("inplace", False)])
Hardsigmoid = _fn_module("Hardsigmoid", hardsigmoid, [("inplace", False)])
SELU = _fn_module("SELU", selu, [("inplace", False)])
CELU = _fn_module("CELU", celu, [("alpha", 1.0), ("inplace", False)])
Softsign = _fn_module("Softsign", softsign)
Tanhshrink = _fn_module("Tanhshrink", tanhshrink)
Softshrink = _fn_module("Softshrink", softshrink, [("lambd", 0.5)])
Hardshrink = _fn_module("Hardshrink", hardshrink, [("lambd", 0.5)])
Threshold = _fn_module("Threshold", threshold, [("threshold", _REQUIRED), ("value", _REQUIRED), ("inplace", False)])
PixelShuffle = _fn_module("PixelShuffle", pixel_shuffle, [("upscale_factor", _REQUIRED)])
PixelUnshuffle = _fn_module("PixelUnshuffle", pixel_unshuffle, [("downscale_factor", _REQUIRED)])
LocalResponseNorm = _fn_module("LocalResponseNorm", local_response_norm,
                               [("size", _REQUIRED), ("alpha", 1e-4), ("beta", 0.75), ("k", 1.0)])


class PReLU(Module):
    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Parameter(full((num_parameters,), init, dtype=dtype or "float32"))

    def forward(self, x):
        return prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class GroupNorm(Module):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        if affine:
            self.weight = Parameter(ones((num_channels,), dtype=dtype or "float32"))
            self.bias = Parameter(zeros((num_channels,), dtype=dtype or "float32"))
        else:
            self.weight = self.bias = None

    def forward(self, x):
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class _InstanceNorm(Module):
    _ndim = 3

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 device=None, dtype=None):
        super().__init__()
        dt = dtype or "float32"
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(ones((num_features,), dtype=dt))
            self.bias = Parameter(zeros((num_features,), dtype=dt))
        else:
            self.weight = self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", zeros((num_features,), dtype=dt))
            self.register_buffer("running_var", ones((num_features,), dtype=dt))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, x):
        unbatched = x.ndim == self._ndim - 1
        if unbatched:
            x = x.unsqueeze(0)
        if x.ndim != self._ndim:
            raise ShapeError(f"{type(self).__name__}: expected a {self._ndim - 1}-D or {self._ndim}-D input, got "
                             f"shape {tuple(x.shape)}")
        use_input_stats = self.training or not self.track_running_stats
        out = instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            use_input_stats=use_input_stats, momentum=self.momentum, eps=self.eps)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    _ndim = 3


class InstanceNorm2d(_InstanceNorm):
    _ndim = 4


class _Pad(Module):
    _mode = "constant"
    _n = 2

    def __init__(self, padding, value=0.0):
        super().__init__()
        self.padding = (padding,) * (2 * self._n) if isinstance(padding, int) else tuple(padding)
        if len(self.padding) != 2 * self._n:
            raise ValueError(f"{type(self).__name__}: padding needs {2 * self._n} values, got {self.padding}")
        self.value = value

    def forward(self, x):
        return _pad(x, self.padding, mode=self._mode, value=self.value)

    def extra_repr(self):
        return f"{self.padding}" + (f", value={self.value}" if self._mode == "constant" else "")


def _pad_class(name, mode, n, has_value):
    def __init__(self, padding, *args, **kw):
        if has_value:
            _Pad.__init__(self, padding, *args, **kw)
        else:
            _Pad.__init__(self, padding)
    return type(name, (_Pad,), {"_mode": mode, "_n": n, "__init__": __init__,
                                "__doc__": f"nn.{name}: F.pad(x, padding, mode='{mode}')."})


ConstantPad1d = _pad_class("ConstantPad1d", "constant", 1, True)
ConstantPad2d = _pad_class("ConstantPad2d", "constant", 2, True)
ConstantPad3d = _pad_class("ConstantPad3d", "constant", 3, True)
ZeroPad1d = _pad_class("ZeroPad1d", "constant", 1, False)
ZeroPad2d = _pad_class("ZeroPad2d", "constant", 2, False)
ReflectionPad1d = _pad_class("ReflectionPad1d", "reflect", 1, False)
ReflectionPad2d = _pad_class("ReflectionPad2d", "reflect", 2, False)
ReplicationPad1d = _pad_class("ReplicationPad1d", "replicate", 1, False)
ReplicationPad2d = _pad_class("ReplicationPad2d", "replicate", 2, False)


class Upsample(Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x):
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                           self.recompute_scale_factor)

    def extra_repr(self):
        s = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{s}, mode='{self.mode}'"


class UpsamplingNearest2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "nearest")


class UpsamplingBilinear2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "bilinear", align_corners=True)


class Bilinear(Module):
    def __init__(self, in1_features, in2_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        bound = 1.0 / math.sqrt(in1_features)
        dt = dtype or "float32"
        self.weight = Parameter(rand(out_features, in1_features, in2_features, dtype=dt) * (2 * bound) - bound)
        self.bias = Parameter(rand(out_features, dtype=dt) * (2 * bound) - bound) if bias else None

    def forward(self, input1, input2):
        return bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


_ = (_log_softmax,)

MODULES = ["SmoothL1Loss", "HuberLoss", "KLDivLoss", "CosineEmbeddingLoss", "MarginRankingLoss", "TripletMarginLoss",
           "SoftMarginLoss", "MultiLabelSoftMarginLoss", "PoissonNLLLoss", "GaussianNLLLoss", "CosineSimilarity",
           "PairwiseDistance", "LogSigmoid", "Softmin", "GLU", "Mish", "Hardswish", "Hardsigmoid", "SELU", "CELU",
           "Softsign", "Tanhshrink", "Softshrink", "Hardshrink", "Threshold", "PixelShuffle", "PixelUnshuffle",
           "LocalResponseNorm", "PReLU", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "ConstantPad1d",
           "ConstantPad2d", "ConstantPad3d", "ZeroPad1d", "ZeroPad2d", "ReflectionPad1d", "ReflectionPad2d",
           "ReplicationPad1d", "ReplicationPad2d", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d",
           "Bilinear"]


def _bag_matrix(op, input, offsets, include_last_offset):
    """Bag membership as a constant (B, L) 0/1 matrix, from the offsets of 1-D input or the rows of 2-D input."""
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(f"{op}: offsets must be None for a 2-D input (each row is a bag), got offsets")
        b, n = input.shape
        return np.repeat(np.eye(b, dtype=np.float32), n, axis=1)
    if input.ndim != 1:
        raise ShapeError(f"{op}: input must be 1-D (with offsets) or 2-D, got shape {tuple(input.shape)}")
    if offsets is None:
        raise ValueError(f"{op}: a 1-D input needs offsets (the start of each bag)")
    try:
        offs = np.asarray(offsets.numpy() if hasattr(offsets, "numpy") else offsets, dtype=np.int64).reshape(-1)
    except Exception as e:  # a traced offsets tensor has no values to build the bags from
        raise ValueError(f"{op}: offsets must be known values (a list or an eager tensor); bags of traced "
                         f"offsets are not supported ({e})") from None
    n = input.shape[0]
    if include_last_offset:
        starts, ends = offs[:-1], offs[1:]
    else:
        starts, ends = offs, np.append(offs[1:], n)
    if len(starts) and (starts[0] != 0 or np.any(np.diff(offs) < 0) or offs[-1] > n):
        raise ValueError(f"{op}: offsets {offs.tolist()} must start at 0 and rise to at most {n} (the input length)")
    pos = np.arange(n)
    return ((pos[None, :] >= starts[:, None]) & (pos[None, :] < ends[:, None])).astype(np.float32)


def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
                  sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """Sums, means or maxima of bags of embedding rows: bags are the rows of a 2-D input, or the runs of a
    1-D input starting at `offsets`. Empty bags give zeros; entries equal to padding_idx are left out."""
    op = "embedding_bag"
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"{op}: mode must be 'sum', 'mean' or 'max', got {mode!r}")
    if per_sample_weights is not None and mode != "sum":
        raise ValueError(f"{op}: per_sample_weights is only supported with mode='sum', got mode={mode!r}")
    input = as_tensor(input)
    m = _bag_matrix(op, input, offsets, include_last_offset)
    flat = input.reshape(-1)
    rows = _embedding(flat, weight, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type)
    mt = as_tensor(m.astype(weight.dtype))
    if padding_idx is not None:
        mt = mt * (flat != padding_idx).astype(weight.dtype).reshape(1, -1)
    if per_sample_weights is not None:
        rows = rows * as_tensor(per_sample_weights, like=weight).reshape(-1, 1)
    if mode == "max":
        has = mt.reshape(mt.shape[0], mt.shape[1], 1) > 0
        picked = ew.where(has, rows.reshape(1, *rows.shape), -np.inf)
        count = _sum(mt, axis=1, keepdims=True)
        return ew.where(count > 0, amax(picked, axis=1), 0.0)
    out = mt @ rows
    if mode == "mean":
        count = _sum(mt, axis=1, keepdims=True)
        out = out / ew.maximum(count, 1.0)
    return out


class EmbeddingBag(Module):
    def __init__(self, num_embeddings, embedding_dim, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                 mode="mean", sparse=False, _weight=None, include_last_offset=False, padding_idx=None,
                 device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.max_norm, self.norm_type, self.mode = max_norm, norm_type, mode
        self.include_last_offset, self.padding_idx = include_last_offset, padding_idx
        if padding_idx is not None and padding_idx < 0:
            self.padding_idx = padding_idx + num_embeddings
        w = randn(num_embeddings, embedding_dim, dtype=dtype or "float32") if _weight is None else as_tensor(_weight)
        if _weight is None and self.padding_idx is not None:
            w_np = w.numpy().copy()
            w_np[self.padding_idx] = 0
            w = as_tensor(w_np)
        self.weight = Parameter(w)

    def forward(self, input, offsets=None, per_sample_weights=None):
        return embedding_bag(input, self.weight, offsets, self.max_norm, self.norm_type, mode=self.mode,
                             per_sample_weights=per_sample_weights, include_last_offset=self.include_last_offset,
                             padding_idx=self.padding_idx)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, mode='{self.mode}'"


__all__ += ["embedding_bag"]
MODULES += ["EmbeddingBag"]
