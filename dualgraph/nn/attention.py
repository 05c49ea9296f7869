"""MultiheadAttention with PyTorch's parameter layout, defaults, masks and return values."""
import math

from ..ops import creation
from ..ops.elementwise import where
from ..ops.reduction import mean as _mean
from ..ops.shape import unsqueeze
from . import functional as F
from . import init
from .linear import Linear
from .module import Module, Parameter

__all__ = ["MultiheadAttention"]


class MultiheadAttention(Module):
    """softmax(Q K^T / sqrt(d)) V over num_heads heads of size embed_dim // num_heads.

    Inputs are (L, N, E) (or (N, L, E) with batch_first=True, or unbatched (L, E)). Returns
    (output, weights): weights are (N, L, S), averaged over heads unless average_attn_weights=False
    ((N, H, L, S)), or None with need_weights=False. Masks: attn_mask (L, S) or (N*H, L, S) and
    key_padding_mask (N, S); boolean True means "may not attend", float masks are added to the scores.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv/add_zero_attn are not supported")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim, self.num_heads, self.dropout = int(embed_dim), int(num_heads), float(dropout)
        self.head_dim = self.embed_dim // self.num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.batch_first = batch_first
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(creation.empty(3 * e, e, device=device, dtype=dtype))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(creation.empty(e, e, device=device, dtype=dtype))
            self.k_proj_weight = Parameter(creation.empty(e, self.kdim, device=device, dtype=dtype))
            self.v_proj_weight = Parameter(creation.empty(e, self.vdim, device=device, dtype=dtype))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(creation.empty(3 * e, device=device, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)

    def _weights(self):
        e = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            ws = (w[:e], w[e:2 * e], w[2 * e:])
        else:
            ws = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        b = self.in_proj_bias
        bs = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        return ws, bs

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        unbatched = query.ndim == 2
        for name, t, dim in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.ndim != query.ndim or t.ndim not in (2, 3) or t.shape[-1] != dim:
                layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
                raise self._input_error(f"shape {layout.replace('E', str(dim))} or (L, {dim})", t, what=name)
        if unbatched:
            query, key, value = unsqueeze(query, 0), unsqueeze(key, 0), unsqueeze(value, 0)
            if key_padding_mask is not None:
                key_padding_mask = unsqueeze(key_padding_mask, 0)
        elif not self.batch_first:  # work batch-first inside
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        n, tgt_len, _ = query.shape
        src_len = key.shape[1]
        if key.shape[0] != n or value.shape[0] != n or value.shape[1] != src_len:
            raise self._input_error(f"batch size {n} (the query's) and the value's length {value.shape[1]}", key,
                                    what="key with")
        h, d = self.num_heads, self.head_dim
        (wq, wk, wv), (bq, bk, bv) = self._weights()

        def heads(x, w, b, length):
            return F.linear(x, w, b).reshape(n, length, h, d).permute(0, 2, 1, 3)   # (N, H, len, D)

        q = heads(query, wq, bq, tgt_len)
        k = heads(key, wk, bk, src_len)
        v = heads(value, wv, bv, src_len)
        scores = (q * (1.0 / math.sqrt(d))) @ k.mT                               # (N, H, L, S)
        if attn_mask is None and is_causal:
            rows = creation.arange(tgt_len, device=query.device).reshape(tgt_len, 1)
            attn_mask = creation.arange(src_len, device=query.device).reshape(1, src_len) > rows
        if attn_mask is not None:
            scores = _masked(scores, self._mask_shape(attn_mask, n, tgt_len, src_len))
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (n, src_len):
                raise self._input_error(f"shape {(n, src_len)}", key_padding_mask, what="key_padding_mask")
            scores = _masked(scores, key_padding_mask.reshape(n, 1, 1, src_len))
        attn = F.softmax(scores, dim=-1)
        if self.dropout > 0.0:
            attn = F.dropout(attn, self.dropout, training=self.training)
        out = (attn @ v).permute(0, 2, 1, 3).reshape(n, tgt_len, self.embed_dim)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        weights = _mean(attn, axis=1) if average_attn_weights else attn
        return out, weights.squeeze(0) if unbatched else weights

    def _mask_shape(self, mask, n, tgt_len, src_len):
        if mask.ndim == 2 and tuple(mask.shape) == (tgt_len, src_len):
            return mask
        if mask.ndim == 3 and tuple(mask.shape) == (n * self.num_heads, tgt_len, src_len):
            return mask.reshape(n, self.num_heads, tgt_len, src_len)
        raise self._input_error(f"shape {(tgt_len, src_len)} or {(n * self.num_heads, tgt_len, src_len)}", mask,
                                what="attn_mask")

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


def _masked(scores, mask):
    if mask.dtype.kind == "b":
        return where(mask, float("-inf"), scores)
    return scores + mask
