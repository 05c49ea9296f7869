"""F.embedding with PyTorch's options (padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse).

A composite of the embedding lookup primitive, so it differentiates, traces and exports through that
op's record. Gradients are always dense: sparse=True is accepted so ported code runs, and the weight's
gradient is the dense tensor PyTorch's sparse gradient would densify to."""
from ..autograd import no_grad
from ..errors import DTypeError, IndexOutOfRange, ShapeError
from ..ops.creation import ones_like, zeros_like
from ..ops.elementwise import where
from ..ops.gather import scatter_add
from ..ops.indexing import embedding as _lookup
from ..tensor import as_tensor

__all__ = ["embedding"]


def _padding_index(padding_idx, num_embeddings):
    if padding_idx is None:
        return None
    padding_idx = int(padding_idx)
    if isinstance(num_embeddings, int) and not -num_embeddings <= padding_idx < num_embeddings:
        raise IndexOutOfRange(f"embedding: padding_idx {padding_idx} must be within num_embeddings "
                              f"({num_embeddings})")
    # a negative index counts from the end: kept as size arithmetic so an export with a dynamic
    # number of rows keeps meaning "the last row"
    return padding_idx if padding_idx >= 0 else num_embeddings + padding_idx


def embedding_renorm_(weight, indices, max_norm, norm_type=2.0):
    """PyTorch's embedding_renorm_: each row looked up whose norm exceeds max_norm is rescaled in place to
    max_norm / (norm + 1e-7) times itself (not recorded for autograd)."""
    flat = indices.reshape(-1)
    with no_grad():
        rows = _lookup(flat, weight)
        if norm_type == 2.0:
            norms = (rows * rows).sum(axis=-1, keepdims=True) ** 0.5
        else:
            norms = (rows.abs() ** norm_type).sum(axis=-1, keepdims=True) ** (1.0 / norm_type)
        scale = where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        weight[flat] = rows * scale.astype(rows.dtype)
    return weight


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of `weight` (num_embeddings, dim) picked by integer indices `input` (any shape).

    padding_idx: that row gets no gradient (its value is still returned). max_norm: rows looked up
    whose norm_type-norm exceeds it are renormalised IN PLACE in `weight` first, as PyTorch does.
    scale_grad_by_freq: the gradient reaching each row is divided by how often the batch uses it.
    sparse: accepted for porting; the gradient is a dense tensor (dualgraph has no sparse tensors)."""
    indices = as_tensor(input, like=weight)
    if indices.dtype.kind not in "iu":
        raise DTypeError(f"embedding: expected integer indices (Long or Int), got dtype {indices.dtype}")
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                         f"{tuple(weight.shape)}")
    padding_idx = _padding_index(padding_idx, weight.shape[0])
    if max_norm is not None:
        embedding_renorm_(weight, indices, float(max_norm), float(norm_type))
    out = _lookup(indices, weight)
    if padding_idx is not None:
        keep = (indices != padding_idx).unsqueeze(-1)
        out = where(keep, out, _lookup(indices, weight.detach()))
    if scale_grad_by_freq:
        # the same values; what flows back to each row is divided by the number of times it is used
        flat = indices.reshape(-1)
        counts = scatter_add(zeros_like(weight[:, 0]), 0, flat, ones_like(flat, dtype=out.dtype))
        per_use = _lookup(indices, counts.unsqueeze(-1))
        out = out.detach() + (out - out.detach()) / per_use
    return out
