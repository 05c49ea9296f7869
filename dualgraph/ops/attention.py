"""scaled_dot_product_attention as one primitive, softmax(q k^T * scale + mask) v, and its gradient as another.

Both run over blocks of query rows (all batches and heads at once), flash-attention style, so no
(..., L, S) score matrix is ever whole: the forward holds one block of scores at a time and keeps,
besides its output, only the log-sum-exp of each query row; the backward
(`scaled_dot_product_attention_grad`) recomputes each block's weights from it and holds two blocks at
most (weights, then their gradient written over them, and the block of g v^T):

    p = exp(s - lse);   dv += p^T g;   ds = p * (g v^T - delta);   dq = ds k scale;   dk += ds^T q scale

with delta = sum(g * out) per query row (less the cotangent of lse, where one reaches it). A block
holds about _BLOCK_ELEMS scores over all (batch, head) pairs and at most half the query rows, so the
backward's two blocks together stay within one L x S per head. Under `causal` a block only visits
the keys its rows may see (the blocks above the diagonal are skipped, not computed and masked).
On numpy float32/float64 each block's row passes (max, exp, sum; exp(s - lse); p * (dp - delta)),
causal masking included, are C loops (dualgraph.kernels.attention), else numpy's passes.
The gradient op's own vjp is written with dualgraph ops (whole matrices: second order is rare), so it
differentiates again, traces and fuses.

A query row every key of which is masked out gives zeros (PyTorch's scaled_dot_product_attention), and
its lse is +inf so its recomputed weights are 0. Masks: `causal` (ones(L, S).tril(), top-left aligned)
as an attribute; a bool mask (True may attend) or a float mask (added) as the fourth operand, which must
broadcast into the scores' shape. Dropout is not part of the op (F.scaled_dot_product_attention keeps
the composite for dropout_p > 0, whose randomness a pure op cannot hold). Exports as MatMul, Mul, Add or
Where, the softmax as ReduceMax, Exp, ReduceSum and Div, and MatMul (the gradient as its formulas on whole
matrices).
"""
import numpy as np

from ..dispatch import apply
from ..graph.avals import Aval
from ..kernels.attention import ATTENTION as _ROWS
from ..kernels.native import address
from .creation import full_like
from .elementwise import exp, where
from .infer import broadcast_shapes, result_dtype
from .linalg import matmul
from .reduction import sum as _sum
from .registry import defop
from ..tensor import as_tensor

_BIAS = {}

# Scores per block over all (batch, head) pairs, and the fewest rows a block gets. Measured on one
# thread (row-block sweeps of the backward, 8 heads, L = S = 1024, head dim 64): 128-row blocks (1M
# scores) ran 1.1-1.5x faster than whole (L, S) matrices, whose q k^T and g v^T products fall out of
# cache, and than 16-32-row blocks, whose dk and dv products get too thin for BLAS; at the decoder
# LM's T 64 two blocks run as fast as one, and faster under `causal` (a quarter of the scores skipped).
_BLOCK_ELEMS = 1 << 20
_MIN_ROWS = 64


def causal_bias(xp, L, S, dtype):
    """0 where query i may see key j (j <= i), -inf elsewhere: the additive form of is_causal."""
    key = (xp.__name__, L, S, np.dtype(dtype).str)
    b = _BIAS.get(key)
    if b is None:
        b = np.where(np.tri(L, S, dtype=bool), 0.0, -np.inf).astype(dtype)
        b = _BIAS[key] = xp.asarray(b)
        if len(_BIAS) > 64:
            _BIAS.clear()
            _BIAS[key] = b
    return b


def row_blocks(L, S, n_heads, causal):
    """[(i0, i1, kend)]: query rows i0:i1 against keys 0:kend (under `causal` a row i sees keys 0..i,
    top-left aligned, so a block needs none past its last row). `n_heads` is the number of (batch,
    head) pairs the block's scores span."""
    if L <= 0:
        return []
    rows = max(_MIN_ROWS, _BLOCK_ELEMS // max(1, n_heads * S))
    rows = min(rows, (L + 1) // 2)  # two blocks at least: the backward's two block arrays within one L x S
    n = -(-L // rows)
    # n blocks whose sizes differ by one row at most, the larger ones first (a causal block's keys grow
    # with its rows' index)
    edges = [-(-j * L // n) for j in range(n + 1)]
    return [(i0, i1, min(i1, S) if causal else S) for i0, i1 in zip(edges, edges[1:])]


def _mask_index(mask, i0, i1, kend):
    """The index of mask (broadcasting into (..., L, S)) for query rows i0:i1 and keys 0:kend."""
    idx = [slice(None)] * mask.ndim
    if mask.ndim >= 2 and mask.shape[-2] != 1:
        idx[-2] = slice(i0, i1)
    if mask.ndim >= 1 and mask.shape[-1] != 1:
        idx[-1] = slice(0, kend)
    return tuple(idx)


def _block_scores(xp, q, k, mask, causal, i0, i1, kend):
    """The scores of query rows i0:i1 against keys 0:kend (q k^T, q already scaled), masks applied: a new
    (..., i1 - i0, kend) array."""
    s = xp.matmul(q[..., i0:i1, :], xp.swapaxes(k[..., :kend, :], -1, -2))
    if causal and kend > i0:  # keys i0..kend-1 are the ones rows i0..i1-1 see only in part
        s[..., i0:kend] += causal_bias(xp, i1 - i0, kend - i0, s.dtype)
    if mask is not None:
        m = mask[_mask_index(mask, i0, i1, kend)]
        if m.dtype == np.bool_:
            if xp is np:
                np.copyto(s, -np.inf, where=~m)
            else:
                s = xp.where(m, s, -np.inf)
        else:
            s += m.astype(s.dtype, copy=False)
    return s


def _common(arrays):
    dt = np.result_type(*arrays)
    return [a if a.dtype == dt else a.astype(dt) for a in arrays], dt


def _loops(xp, dt):
    """The C row loops (dualgraph.kernels.attention) for numpy arrays of dtype dt, or None (numpy's passes)."""
    return _ROWS(dt) if xp is np else None


def _sdpa_forward(xp, q, k, v, mask=None, *, scale, causal):
    (q, k, v), dt = _common((q, k, v))
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    L, S, Ev = q.shape[-2], k.shape[-2], v.shape[-1]
    blocks = row_blocks(L, S, int(np.prod(batch, dtype=np.int64)), causal)
    # scaled once as (L, E), not as (L, S) scores; to the whole batch, so each block's scores, max and
    # sum have the output's batch shape
    q = xp.broadcast_to(q * dt.type(scale), batch + q.shape[-2:])
    loops = _loops(xp, dt)
    one = len(blocks) == 1
    if not one:
        out = xp.empty(batch + (L, Ev), dt)
        lse = xp.empty(batch + (L, 1), dt)
    for i0, i1, kend in blocks:
        if kend == 0:  # no key at all: the row is fully masked
            ob, lb = xp.zeros(batch + (i1 - i0, Ev), dt), xp.full(batch + (i1 - i0, 1), np.inf, dt)
        else:
            s = _block_scores(xp, q, k, mask, causal and loops is None, i0, i1, kend)
            if loops is not None:
                m, total = np.empty(s.shape[:-1] + (1,), dt), np.empty(s.shape[:-1] + (1,), dt)
                loops["softmax_rows"](s.size // kend, kend, i1 - i0, i0 if causal else -1, address(s), address(m),
                                      address(total))
            else:
                m = s.max(axis=-1, keepdims=True)
                finite = xp.isfinite(m)
                if not finite.all():  # a row without a finite max is not shifted (a fully masked row: all -inf)
                    m = xp.where(finite, m, 0).astype(dt, copy=False)
                s -= m
                xp.exp(s, out=s)
                total = s.sum(axis=-1, keepdims=True)
            if mask is not None:  # (without one every row sees a key: causal row i sees key 0)
                dead = total == 0  # every key masked out (exp(-inf) everywhere): weights 0, lse +inf
                if dead.any():
                    total[dead] = np.inf
            if one or xp is not np:
                ob = xp.matmul(s, v[..., :kend, :])
            else:
                ob = xp.matmul(s, v[..., :kend, :], out=out[..., i0:i1, :])
            del s
            ob /= total  # normalising the (rows, Ev) product, not the (rows, keys) weights
            lb = xp.log(total)
            lb += m
        if one:
            return ob, lb
        if ob.base is not out:
            out[..., i0:i1, :] = ob
        lse[..., i0:i1, :] = lb
    if not blocks:
        return xp.empty(batch + (L, Ev), dt), xp.empty(batch + (L, 1), dt)
    return out, lse


def _sdpa_infer(q, k, v, mask=None, *, scale, causal):
    batch = broadcast_shapes("scaled_dot_product_attention", q.shape[:-2], k.shape[:-2], v.shape[:-2])
    dt = result_dtype(q, k, v)
    return Aval(batch + (q.shape[-2], v.shape[-1]), dt), Aval(batch + (q.shape[-2], 1), dt)


def _sdpa_vjp(ctx, gs):
    g, g_lse = gs
    q, k, v = ctx.inputs[:3]
    mask = ctx.inputs[3] if len(ctx.inputs) > 3 else None
    out, lse = ctx.out
    if g is None:
        g = full_like(out, 0.0)
    # ds = p * (dp - sum(dp * p)) + p * g_lse, and sum(dp * p) = sum(g * (p v)) = sum(g * out)
    delta = _sum(g * out, axis=-1, keepdims=True)
    if g_lse is not None:
        delta = delta - g_lse
    mask_grad = mask is not None and mask.dtype != np.bool_ and ctx.needs_input_grad[3]
    dq, dk, dv, dmask = attention_grad(g, q, k, v, lse, delta, mask, ctx.attrs["scale"], ctx.attrs["causal"],
                                       mask_grad)
    need = ctx.needs_input_grad
    grads = (dq if need[0] else None, dk if need[1] else None, dv if need[2] else None)
    return grads + (dmask if mask_grad else None,) if mask is not None else grads


def _sdpa_onnx(ctx, node, q, k, v, mask=None):
    a = ctx.attrs(node)
    dt = node.outputs[0].aval.dtype
    q, k, v = (ctx.arg(node.inputs[i], n, dt) for i, n in enumerate((q, k, v)))
    s = _onnx_scores(ctx, node, node.inputs[0], node.inputs[1], q, k, mask, a, dt)
    axis = len(node.outputs[1].aval.shape) - 1
    m = ctx.reduce("ReduceMax", s, (axis,), True)
    dead = ctx.emit("Equal", [m, ctx.const(-np.inf, dt)])
    zero = ctx.const(0.0, dt)
    m = ctx.emit("Where", [dead, zero, m])
    e = ctx.emit("Exp", [ctx.emit("Sub", [s, m])])
    total = ctx.reduce("ReduceSum", e, (axis,), True)
    w = ctx.emit("Where", [dead, zero, ctx.emit("Div", [e, total])])
    out = ctx.emit("MatMul", [w, v])
    lse = ctx.emit("Where", [dead, ctx.const(np.inf, dt), ctx.emit("Add", [m, ctx.emit("Log", [total])])])
    return out, lse


def _onnx_transpose(ctx, x, rank):
    return ctx.emit("Transpose", [x], perm=list(range(rank - 2)) + [rank - 1, rank - 2])


def _onnx_scores(ctx, node, qv, kv, q, k, mask, a, dt):
    """q k^T * scale with the causal bias and the mask applied, as ONNX nodes (qv, kv: q's and k's IR values)."""
    s = ctx.emit("Mul", [ctx.emit("MatMul", [q, _onnx_transpose(ctx, k, len(kv.aval.shape))]),
                         ctx.const(float(a["scale"]), dt)])
    if a["causal"]:
        s = ctx.emit("Add", [s, ctx.const(causal_bias(np, qv.aval.shape[-2], kv.aval.shape[-2], dt))])
    if mask is not None:
        mv = node.inputs[-1]
        if mv.aval.dtype == np.bool_:
            s = ctx.emit("Where", [mask, s, ctx.const(-np.inf, dt)])
        else:
            s = ctx.emit("Add", [s, ctx.arg(mv, mask, dt)])
    return s


SDPA = defop("scaled_dot_product_attention", _sdpa_forward, _sdpa_infer, _sdpa_vjp, n_out=2, saves_output=True,
             broadcasting=True, onnx=_sdpa_onnx)


def attention(q, k, v, mask=None, scale=1.0, causal=False):
    """(out, lse) of softmax(q k^T * scale + masks) v; see the module docstring."""
    ins = (q, k, v) if mask is None else (q, k, v, mask)
    return apply(SDPA, ins, {"scale": float(scale), "causal": bool(causal)})


# ---- scaled_dot_product_attention_grad: (dq, dk, dv, dmask) from (g, q, k, v, lse, delta[, mask]) -------

def _reduce_to(x, shape):
    """x summed over the axes it was broadcast along from `shape`."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and x.shape[lead + i] != 1)
    if axes:
        x = x.sum(axis=axes, keepdims=True)
    return x.reshape(shape)


def _grad_forward(xp, g, q, k, v, lse, delta, mask=None, *, scale, causal, mask_grad):
    (g, q, k, v, lse, delta), dt = _common((g, q, k, v, lse, delta))
    batch = np.broadcast_shapes(g.shape[:-2], q.shape[:-2], k.shape[:-2], v.shape[:-2])
    L, S = q.shape[-2], k.shape[-2]
    dq = xp.zeros(batch + q.shape[-2:], dt)
    dk = xp.zeros(batch + k.shape[-2:], dt)
    dv = xp.zeros(batch + v.shape[-2:], dt)
    dmask = xp.zeros(mask.shape if mask_grad else (0,), dt)
    qs = xp.broadcast_to(q * dt.type(scale), batch + q.shape[-2:])  # dk = ds^T (q scale): no pass over dk
    loops = _loops(xp, dt)
    if loops is not None:  # (pairs, L), contiguous: the loops read each block's rows in place
        lse2 = np.ascontiguousarray(np.broadcast_to(lse, batch + (L, 1))[..., 0])
        delta2 = np.ascontiguousarray(np.broadcast_to(delta, batch + (L, 1))[..., 0])
        lse_at, delta_at = address(lse2), address(delta2)
    for i0, i1, kend in row_blocks(L, S, int(np.prod(batch, dtype=np.int64)), causal):
        if kend == 0:
            continue
        p = _block_scores(xp, qs, k, mask, causal and loops is None, i0, i1, kend)
        rows, bq = p.size // kend, i1 - i0
        if loops is not None:
            loops["weights_rows"](rows, kend, bq, i0 if causal else -1, address(p), lse_at, L, i0)
        else:
            p -= lse[..., i0:i1, :]
            xp.exp(p, out=p)  # the block's weights (0 on a fully masked row, whose lse is +inf)
        gb = g[..., i0:i1, :]
        dv[..., :kend, :] += xp.matmul(xp.swapaxes(p, -1, -2), gb)
        dp = xp.matmul(gb, xp.swapaxes(v[..., :kend, :], -1, -2))
        if loops is not None:
            loops["ds_rows"](rows, kend, bq, address(p), address(dp), delta_at, L, i0)
        else:
            dp -= delta[..., i0:i1, :]
            p *= dp  # ds, in the weights' place
        del dp
        if mask_grad:
            idx = _mask_index(mask, i0, i1, kend)
            dmask[idx] += _reduce_to(p, dmask[idx].shape)
        if xp is np:
            np.matmul(p, k[..., :kend, :], out=dq[..., i0:i1, :])
        else:
            dq[..., i0:i1, :] = xp.matmul(p, k[..., :kend, :])
        dk[..., :kend, :] += xp.matmul(xp.swapaxes(p, -1, -2), qs[..., i0:i1, :])
        del p
    dq *= dt.type(scale)
    return dq, dk, dv, dmask


def _grad_infer(g, q, k, v, lse, delta, mask=None, *, scale, causal, mask_grad):
    batch = broadcast_shapes("scaled_dot_product_attention_grad", g.shape[:-2], q.shape[:-2], k.shape[:-2],
                             v.shape[:-2])
    dt = result_dtype(g, q, k, v, lse, delta)
    return (Aval(batch + tuple(q.shape[-2:]), dt), Aval(batch + tuple(k.shape[-2:]), dt),
            Aval(batch + tuple(v.shape[-2:]), dt), Aval(tuple(mask.shape) if mask_grad else (0,), dt))


def _grad_vjp(ctx, hs):
    """The cotangents (hq, hk, hv, hm) of (dq, dk, dv, dmask) taken back through

        s = q k^T scale + masks;  p = exp(s - lse);  x = g v^T - delta;  ds = p * x
        dq = ds k scale;  dk = ds^T q scale;  dv = p^T g;  dmask = ds

    on whole matrices, in dualgraph ops (so it differentiates again)."""
    hq, hk, hv, hm = hs
    g, q, k, v, lse, delta = ctx.inputs[:6]
    mask = ctx.inputs[6] if len(ctx.inputs) > 6 else None
    scale, causal = ctx.attrs["scale"], ctx.attrs["causal"]
    if not ctx.attrs["mask_grad"]:
        hm = None
    s = matmul(q, k.mT) * scale
    if causal:
        s = s + as_tensor(causal_bias(np, s.shape[-2], s.shape[-1], s.dtype), like=s)
    if mask is not None:
        s = where(mask, s, float("-inf")) if mask.dtype == np.bool_ else s + mask
    p = exp(s - lse)
    x = matmul(g, v.mT) - delta
    dg = dq = dk = dv = None

    def add(a, b):
        return b if a is None else a + b
    h_ds = None  # cotangent of ds
    if hq is not None or hk is not None:
        ds = p * x
        if hq is not None:
            h_ds = matmul(hq, k.mT) * scale
            dk = matmul(ds.mT, hq) * scale
        if hk is not None:
            h_ds = add(h_ds, matmul(q, hk.mT) * scale)
            dq = matmul(ds, hk) * scale
    if hm is not None:
        h_ds = add(h_ds, hm)
    h_p = None  # cotangent of p
    if hv is not None:
        h_p = matmul(g, hv.mT)
        dg = matmul(p, hv)
    ddelta = None
    if h_ds is not None:
        h_p = add(h_p, h_ds * x)
        h_x = h_ds * p
        dg = add(dg, matmul(h_x, v))
        dv = matmul(h_x.mT, g)
        ddelta = -_sum(h_x, axis=-1, keepdims=True)
    dlse = dmask = None
    if h_p is not None:
        h_s = h_p * p
        dlse = -_sum(h_s, axis=-1, keepdims=True)
        dq = add(dq, matmul(h_s, k) * scale)
        dk = add(dk, matmul(h_s.mT, q) * scale)
        if mask is not None and mask.dtype != np.bool_:
            dmask = h_s
    grads = (dg, dq, dk, dv, dlse, ddelta)
    return grads + (dmask,) if mask is not None else grads


def _grad_onnx(ctx, node, g, q, k, v, lse, delta, mask=None):
    a = ctx.attrs(node)
    dt = node.outputs[0].aval.dtype
    g, q, k, v, lse, delta = (ctx.arg(node.inputs[i], n, dt) for i, n in enumerate((g, q, k, v, lse, delta)))
    s = _onnx_scores(ctx, node, node.inputs[1], node.inputs[2], q, k, mask, a, dt)
    rank = len(node.outputs[0].aval.shape)
    p = ctx.emit("Exp", [ctx.emit("Sub", [s, lse])])
    dv = ctx.emit("MatMul", [_onnx_transpose(ctx, p, rank), g])
    vt = _onnx_transpose(ctx, v, len(node.inputs[3].aval.shape))
    ds = ctx.emit("Mul", [p, ctx.emit("Sub", [ctx.emit("MatMul", [g, vt]), delta])])
    sc = ctx.const(float(a["scale"]), dt)
    dq = ctx.emit("Mul", [ctx.emit("MatMul", [ds, k]), sc])
    dk = ctx.emit("Mul", [ctx.emit("MatMul", [_onnx_transpose(ctx, ds, rank), q]), sc])
    if not a["mask_grad"]:
        return dq, dk, dv, ctx.const(np.zeros((0,), dt))
    mshape = tuple(node.inputs[6].aval.shape)
    lead = rank - len(mshape)
    if lead:
        ds = ctx.reduce("ReduceSum", ds, tuple(range(lead)), False)
    scores = tuple(node.outputs[0].aval.shape[:-1]) + (node.inputs[1].aval.shape[-2],)
    axes = tuple(i for i, d in enumerate(mshape) if d == 1 and scores[lead + i] != 1)
    return dq, dk, dv, ctx.reduce("ReduceSum", ds, axes, True)


SDPA_GRAD = defop("scaled_dot_product_attention_grad", _grad_forward, _grad_infer, _grad_vjp, n_out=4,
                  broadcasting=True, onnx=_grad_onnx)


def attention_grad(g, q, k, v, lse, delta, mask=None, scale=1.0, causal=False, mask_grad=False):
    """(dq, dk, dv, dmask) of attention for the cotangent g of its output, given its saved lse and
    delta = sum(g * out, -1) (less lse's cotangent); dmask has the float mask's shape when `mask_grad`,
    else it is empty."""
    ins = (g, q, k, v, lse, delta) if mask is None else (g, q, k, v, lse, delta, mask)
    return apply(SDPA_GRAD, ins, {"scale": float(scale), "causal": bool(causal), "mask_grad": bool(mask_grad)})
