"""scaled_dot_product_attention as one primitive: softmax(q k^T * scale + mask) v.

The forward runs in place on one score matrix per head (scores, mask, max, exp, sum, weights, product
with v) and keeps, besides its output, only the log-sum-exp of each query row: not the (..., L, S)
weights. The vjp recomputes the weights from it (p = exp(s - lse)) and is written with dualgraph ops,
so it differentiates again, traces and fuses:

    dv = p^T g;   dp = g v^T;   ds = p * (dp - sum(dp * p)) (+ p * g_lse);   dq = ds k scale;   dk = ds^T q scale

(ds is softmax's gradient, one C row loop.)
A query row every key of which is masked out gives zeros (PyTorch's scaled_dot_product_attention), and
its lse is +inf so its recomputed weights are 0. Masks: `causal` (ones(L, S).tril(), top-left aligned)
as an attribute; a bool mask (True may attend) or a float mask (added) as the fourth operand, which must
broadcast into the scores' shape. Dropout is not part of the op (F.scaled_dot_product_attention keeps
the composite for dropout_p > 0, whose randomness a pure op cannot hold). Exports as MatMul, Mul, Add or
Where, Softmax and MatMul.
"""
import numpy as np

from ..dispatch import apply
from ..graph.avals import Aval
from .creation import full_like
from .elementwise import exp, where
from .infer import broadcast_shapes, result_dtype
from .linalg import matmul
from .softmax import softmax, softmax_grad
from .registry import defop
from ..tensor import as_tensor

_BIAS = {}


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


def _scores(xp, q, k, mask, scale, causal):
    s = xp.matmul(q, xp.swapaxes(k, -1, -2))
    s *= s.dtype.type(scale)
    if causal:
        s += causal_bias(xp, s.shape[-2], s.shape[-1], s.dtype)
    if mask is not None:
        if mask.dtype == np.bool_:
            if xp is np:
                np.copyto(s, -np.inf, where=~mask)
            else:
                s = xp.where(mask, s, -np.inf)
        else:
            s += mask.astype(s.dtype, copy=False)
    return s


def _sdpa_forward(xp, q, k, v, mask=None, *, scale, causal):
    if not (q.dtype == k.dtype == v.dtype):
        dt = np.result_type(q, k, v)
        q, k, v = q.astype(dt), k.astype(dt), v.astype(dt)
    s = _scores(xp, q, k, mask, scale, causal)
    m = s.max(axis=-1, keepdims=True)
    finite = xp.isfinite(m)
    if not finite.all():  # a row without a finite max is not shifted (a fully masked row: all -inf)
        m = xp.where(finite, m, 0).astype(s.dtype, copy=False)
    s -= m
    xp.exp(s, out=s)
    total = s.sum(axis=-1, keepdims=True)
    dead = total == 0  # every key masked out (exp(-inf) everywhere): weights 0, lse +inf
    if dead.any():
        total[dead] = np.inf
    s /= total
    out = xp.matmul(s, v)
    lse = m + xp.log(total)
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
    scale, causal = ctx.attrs["scale"], ctx.attrs["causal"]
    s = matmul(q, k.mT) * scale
    if causal:
        s = s + as_tensor(causal_bias(np, s.shape[-2], s.shape[-1], s.dtype), like=s)
    if mask is not None:
        s = where(mask, s, float("-inf")) if mask.dtype == np.bool_ else s + mask
    # without a mask operand no row is fully masked (a causal row sees key 0), so the weights are the
    # softmax row kernel's; a mask may empty a row, whose weights exp(s - lse) gives as 0 (lse = +inf)
    p = softmax(s, -1) if mask is None else exp(s - lse)
    if g is None:
        g = full_like(out, 0.0)
    dv = matmul(p.mT, g) if ctx.needs_input_grad[2] else None
    ds = softmax_grad(matmul(g, v.mT), p, p.ndim - 1)  # p * (dp - sum(dp * p)), sum(dp * p) = sum(g * out)
    if g_lse is not None:
        ds = ds + p * g_lse
    dmask = ds if mask is not None and mask.dtype != np.bool_ and ctx.needs_input_grad[3] else None
    ds = ds * scale
    dq = matmul(ds, k) if ctx.needs_input_grad[0] else None
    dk = matmul(ds.mT, q) if ctx.needs_input_grad[1] else None
    grads = (dq, dk, dv)
    return grads + (dmask,) if mask is not None else grads


def _sdpa_onnx(ctx, node, q, k, v, mask=None):
    a = ctx.attrs(node)
    dt = node.outputs[0].aval.dtype
    q, k, v = (ctx.arg(node.inputs[i], n, dt) for i, n in enumerate((q, k, v)))
    rank = len(node.inputs[1].aval.shape)
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    s = ctx.emit("Mul", [ctx.emit("MatMul", [q, ctx.emit("Transpose", [k], perm=perm)]),
                         ctx.const(float(a["scale"]), dt)])
    shape = node.outputs[1].aval.shape
    if a["causal"]:
        L, S = node.inputs[0].aval.shape[-2], node.inputs[1].aval.shape[-2]
        s = ctx.emit("Add", [s, ctx.const(causal_bias(np, L, S, dt))])
    if mask is not None:
        if node.inputs[3].aval.dtype == np.bool_:
            s = ctx.emit("Where", [mask, s, ctx.const(-np.inf, dt)])
        else:
            s = ctx.emit("Add", [s, ctx.arg(node.inputs[3], mask, dt)])
    axis = len(shape) - 1
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


SDPA = defop("scaled_dot_product_attention", _sdpa_forward, _sdpa_infer, _sdpa_vjp, n_out=2, saves_output=True,
             broadcasting=True, onnx=_sdpa_onnx)


def attention(q, k, v, mask=None, scale=1.0, causal=False):
    """(out, lse) of softmax(q k^T * scale + masks) v; see the module docstring."""
    ins = (q, k, v) if mask is None else (q, k, v, mask)
    return apply(SDPA, ins, {"scale": float(scale), "causal": bool(causal)})
