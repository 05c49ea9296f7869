"""The functional pieces nn's layer files build on: linear, dropout, the reduction rule and shape check
of the losses, cosine similarity and pairwise distance. nn.functional re-exports them; the layer files
(linear, attention, more) import them from here, so nn.functional can import those files in turn."""
from .._state import STATE
from ..errors import ShapeError
from ..ops.creation import rand_like
from ..ops.elementwise import maximum, sqrt
from ..ops.infer import shapes_match
from ..ops.linalg import vector_norm
from ..ops.reduction import mean, sum as _sum


def _reduce(loss, reduction, op, weight_sum=None):
    if reduction == "mean":
        return _sum(loss) / weight_sum if weight_sum is not None else mean(loss)
    if reduction == "sum":
        return _sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_same_shape(op, a, b):
    if not shapes_match(a.shape, b.shape):
        raise ShapeError(f"{op}: input shape {tuple(a.shape)} and target shape {tuple(b.shape)} differ")


def dropout(x, p=0.5, training=None, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1-p).

    Active when `training` is True; with training=None it follows dg.autograd.is_training()
    (MXNet's train_mode; nn.Dropout passes its module's own mode)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if training is None:
        training = STATE.training
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = (rand_like(x) >= p).astype(x.dtype)
    return x * keep * (1.0 / (1.0 - p))


def linear(x, weight, bias=None):
    """x @ weight.T + bias (PyTorch's layout: weight is (out_features, in_features))."""
    if x.shape[-1] != weight.shape[-1]:
        raise ShapeError(f"linear: input has {x.shape[-1]} features (shape {tuple(x.shape)}) but the weight "
                         f"expects {weight.shape[-1]} (weight shape {tuple(weight.shape)})")
    out = x @ weight.mT
    return out + bias if bias is not None else out


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """PyTorch's cosine_similarity: sum(x1 * x2) / sqrt(max(|x1|^2 * |x2|^2, eps^2)) along dim (the inputs
    broadcast)."""
    dot = _sum(x1 * x2, axis=dim)
    sq = _sum(x1 * x1, axis=dim) * _sum(x2 * x2, axis=dim)
    return dot / sqrt(maximum(sq, eps * eps))


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """PyTorch's pairwise_distance: the p-norm of x1 - x2 + eps along the last dim."""
    d = x1 - x2 + eps
    return vector_norm(d, ord=p, dim=-1, keepdim=keepdim)
