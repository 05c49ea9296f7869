"""scaled_dot_product_attention and MultiheadAttention, with PyTorch's signatures, masks and defaults.

scaled_dot_product_attention is one primitive (ops/attention.py: its backward keeps only each query row's
log-sum-exp, not the (..., L, S) weights), except with dropout_p > 0 or a mask that would widen the
scores, where it is the composite of primitives (matmul, where, softmax) that MultiheadAttention also
runs, as it returns the weights."""
import math

from ..errors import ShapeError, DTypeError
from ..ops import creation
from ..ops.attention import attention as _attention
from ..ops.elementwise import where
from ..ops.infer import broadcast_shapes
from ..ops.reduction import all as _all, mean as _mean
from ..ops.shape import unsqueeze
from ..tensor import as_tensor
from ..ops.softmax import softmax as _softmax
from ._basics import dropout, linear
from . import init
from .linear import Linear
from .module import Module, Parameter

__all__ = ["MultiheadAttention", "scaled_dot_product_attention"]

_NEG_INF = float("-inf")


def _causal_allowed(tgt_len, src_len, device):
    """PyTorch's is_causal mask: ones(L, S).tril(), aligned top-left (row i may see columns 0..i)."""
    rows = creation.arange(tgt_len, device=device).reshape(tgt_len, 1)
    return creation.arange(src_len, device=device).reshape(1, src_len) <= rows


def _add_mask(scores, mask):
    """Bool masks: True may attend (others get -inf); float masks are added to the scores."""
    if mask.dtype.kind == "b":
        return where(mask, scores, _NEG_INF)
    return scores + mask


def _attend(q, k, v, masks, scale, dropout_p, rows_live=False):
    """softmax(q k^T * scale + masks) v, and the attention weights. A row every key of which is
    masked out gets weight 0 (PyTorch's safe softmax) rather than NaN; `rows_live` says no row can be
    (a causal mask alone always lets row i see key 0), which saves that check."""
    scores = (q @ k.mT) * scale
    for m in masks:
        scores = _add_mask(scores, m)
    if masks and not rows_live:
        dead = _all(scores == _NEG_INF, axis=-1, keepdims=True)
        attn = where(dead, 0.0, _softmax(where(dead, 0.0, scores), -1))
    else:
        attn = _softmax(scores, -1)
    if dropout_p > 0.0:
        attn = dropout(attn, dropout_p, training=True)
    return attn @ v, attn


def _repeat_heads(x, groups):
    """(..., Hk, S, E) -> (..., Hk * groups, S, E), each head repeated `groups` times in place
    (repeat_interleave on dim -3, written as expand + reshape)."""
    if groups == 1:
        return x
    shape = tuple(x.shape)
    lead, hk, rest = shape[:-3], shape[-3], shape[-2:]
    x = unsqueeze(x, -3).expand(*lead, hk, groups, *rest)
    return x.reshape(*lead, hk * groups, *rest)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """PyTorch's F.scaled_dot_product_attention: softmax(Q K^T * scale + mask) V.

    query (N, ..., L, E), key (N, ..., S, E), value (N, ..., S, Ev) -> (N, ..., L, Ev); the leading
    dims broadcast. scale defaults to 1 / sqrt(E). attn_mask broadcasts to (N, ..., L, S): a bool mask
    says True where a query may attend, a float mask is added to the scores. is_causal applies
    ones(L, S).tril() (top-left aligned when L != S) and excludes attn_mask. Dropout with
    probability dropout_p is applied to the weights whenever dropout_p > 0, as in PyTorch (pass
    `dropout_p if self.training else 0.0`). enable_gqa lets key/value have fewer heads (dim -3)
    than query, each then serving query.size(-3) // key.size(-3) query heads.
    A query row with every key masked out gives zeros."""
    op = "scaled_dot_product_attention"
    query = as_tensor(query)
    key, value = as_tensor(key, like=query), as_tensor(value, like=query)
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.ndim < 2:
            raise ShapeError(f"{op}: {name} must have at least 2 dims (..., length, features), got shape "
                             f"{tuple(t.shape)}")
        if t.dtype.kind != "f":
            raise DTypeError(f"{op}: {name} must be a floating tensor, got dtype {t.dtype}")
    qs, ks, vs = tuple(query.shape), tuple(key.shape), tuple(value.shape)
    if qs[-1] != ks[-1] or ks[-2] != vs[-2]:
        raise ShapeError(f"{op}: query (..., L, E) {qs}, key (..., S, E) {ks} and value (..., S, Ev) {vs} "
                         f"disagree (query and key need the same E, key and value the same S)")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    if enable_gqa and query.ndim >= 3 and key.ndim >= 3 and qs[-3] != ks[-3]:
        if ks[-3] != vs[-3] or qs[-3] % ks[-3]:
            raise ShapeError(f"{op}: with enable_gqa the query's heads (dim -3 of {qs}) must be a multiple of "
                             f"the key's and value's (dim -3 of {ks} and {vs})")
        groups = qs[-3] // ks[-3]
        key, value = _repeat_heads(key, groups), _repeat_heads(value, groups)
    try:
        broadcast_shapes(op, qs[:-2], tuple(key.shape)[:-2], tuple(value.shape)[:-2])
    except ShapeError:
        raise ShapeError(f"{op}: the leading (batch, head) dims of query {qs}, key {ks} and value {vs} do not "
                         f"broadcast" + ("" if enable_gqa else " (fewer key/value heads need enable_gqa=True)")) from None
    tgt_len, src_len = qs[-2], ks[-2]
    masks = []
    if is_causal:
        if attn_mask is not None:
            raise ValueError(f"{op}: an explicit attn_mask must not be given with is_causal=True")
        masks.append(_causal_allowed(tgt_len, src_len, query.device))
    if attn_mask is not None:
        attn_mask = as_tensor(attn_mask, like=query)
        ms = tuple(attn_mask.shape)
        ok = attn_mask.ndim <= max(query.ndim, 2) and all(
            a in (1, b) for a, b in zip(ms[::-1], (src_len, tgt_len) + tuple(qs[-3::-1])))
        if not ok:
            raise ShapeError(f"{op}: attn_mask of shape {ms} does not broadcast to the scores' shape "
                             f"{qs[:-2] + (tgt_len, src_len)}")
        if attn_mask.dtype.kind not in "bf":
            raise DTypeError(f"{op}: attn_mask must be bool or floating, got dtype {attn_mask.dtype}")
        if attn_mask.dtype.kind == "f" and attn_mask.dtype != query.dtype:
            attn_mask = attn_mask.astype(query.dtype)
        masks.append(attn_mask)
    scale = 1.0 / math.sqrt(qs[-1]) if scale is None else float(scale)
    scores = broadcast_shapes(op, qs[:-2], tuple(key.shape)[:-2]) + (tgt_len, src_len)
    if dropout_p == 0.0 and (attn_mask is None or broadcast_shapes(op, scores, tuple(attn_mask.shape)) == scores):
        # one op that keeps only each row's log-sum-exp for its backward (ops/attention.py)
        return _attention(query, key, value, attn_mask, scale, is_causal)[0]
    out, _ = _attend(query, key, value, masks, scale, float(dropout_p), rows_live=attn_mask is None)
    return out


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
            return linear(x, w, b).reshape(n, length, h, d).permute(0, 2, 1, 3)   # (N, H, len, D)

        q = heads(query, wq, bq, tgt_len)
        k = heads(key, wk, bk, src_len)
        v = heads(value, wv, bv, src_len)
        # MultiheadAttention's bool masks say True where a query may NOT attend (the opposite of
        # scaled_dot_product_attention's), so they are inverted before the shared attention core
        masks = []
        if attn_mask is None and is_causal:
            masks.append(_causal_allowed(tgt_len, src_len, query.device))
        if attn_mask is not None:
            masks.append(_allowed(self._mask_shape(attn_mask, n, tgt_len, src_len)))
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (n, src_len):
                raise self._input_error(f"shape {(n, src_len)}", key_padding_mask, what="key_padding_mask")
            masks.append(_allowed(key_padding_mask.reshape(n, 1, 1, src_len)))
        p = self.dropout if self.training else 0.0
        # plain softmax, as PyTorch's MultiheadAttention: a query row with every key masked gives NaN
        # (scaled_dot_product_attention gives zeros there)
        out, attn = _attend(q, k, v, masks, 1.0 / math.sqrt(d), p, rows_live=True)  # (N, H, L, D)
        out = out.permute(0, 2, 1, 3).reshape(n, tgt_len, self.embed_dim)
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


def _allowed(mask):
    return mask.logical_not() if mask.dtype.kind == "b" else mask
