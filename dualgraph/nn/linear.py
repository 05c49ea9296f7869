"""Linear, Identity, Flatten, Unflatten, Embedding and Dropout modules (PyTorch's defaults and init)."""

from ..ops import creation
from ..autograd import no_grad
from ..errors import DTypeError
from ._basics import dropout, linear
from .sparse import embedding
from . import init
from .module import Module, Parameter

__all__ = ["Identity", "Linear", "Flatten", "Unflatten", "Embedding", "Dropout"]


def _empty(*shape, device=None, dtype=None):
    return creation.empty(*shape, device=device, dtype=dtype)


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """y = x @ weight.T + bias with weight (out_features, in_features); x is (*, in_features).

    Init as PyTorch: weight kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)); bias the same."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(_empty(self.out_features, self.in_features, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(_empty(self.out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, x):
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise self._input_error(f"shape (*, {self.in_features})", x)
        return linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Flatten dims start_dim..end_dim (default: all but the batch dim)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        if x.ndim <= max(self.start_dim, self.end_dim if self.end_dim >= 0 else 0):
            raise self._input_error(f"at least {max(self.start_dim, self.end_dim) + 1} dims", x, what="input with")
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        d = self.dim % x.ndim
        n = 1
        for s in self.unflattened_size:
            n *= s
        if x.shape[d] != n:
            raise self._input_error(f"size {n} at dim {self.dim}", x, what="input with")
        return x.reshape(tuple(x.shape[:d]) + self.unflattened_size + tuple(x.shape[d + 1:]))

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Embedding(Module):
    """A lookup table: integer indices of any shape -> rows of weight (num_embeddings, embedding_dim).

    Init N(0, 1) as PyTorch; the padding_idx row starts at zero and gets no gradient. max_norm renormalises
    looked-up rows in place; scale_grad_by_freq divides each row's gradient by its count in the batch.
    sparse=True is accepted for porting, but the weight's gradient is a dense tensor."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None):
        super().__init__()
        self.max_norm, self.norm_type = max_norm, float(norm_type)
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        self.sparse = bool(sparse)
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} must lie within num_embeddings {num_embeddings}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        if _weight is not None:
            if tuple(_weight.shape) != (self.num_embeddings, self.embedding_dim):
                raise ValueError(f"_weight has shape {tuple(_weight.shape)}, expected "
                                 f"{(self.num_embeddings, self.embedding_dim)}")
            self.weight = Parameter(_weight, requires_grad=not _freeze)
        else:
            self.weight = Parameter(_empty(self.num_embeddings, self.embedding_dim, device=device, dtype=dtype))
            self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0.0

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An Embedding whose weight is `embeddings` (2-D; used as given, not copied); frozen by default."""
        if embeddings.ndim != 2:
            raise ValueError(f"Embeddings parameter is expected to be 2-dimensional, got shape "
                             f"{tuple(embeddings.shape)}")
        rows, dim = embeddings.shape
        return cls(rows, dim, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings, _freeze=freeze)

    def forward(self, indices):
        dtype = getattr(indices, "dtype", None)
        if dtype is not None and dtype.kind not in "iu":
            raise DTypeError(f"Embedding: expected integer indices, got dtype {dtype}")
        return embedding(indices, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        s += f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        s += f", max_norm={self.max_norm}" if self.max_norm is not None else ""
        return s + (", scale_grad_by_freq=True" if self.scale_grad_by_freq else "")


class Dropout(Module):
    """Zero elements with probability p in training mode (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = float(p), inplace

    def forward(self, x):
        return dropout(x, self.p, training=self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
