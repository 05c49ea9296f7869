"""layer_norm as one primitive: y = (x - mean) * rstd * weight + bias over the trailing `n_axes` dims.

As a composite it was about nine ops forward (two means, a subtract, a square, rsqrt, scale, shift) and
twice that backward. As one op the forward returns (y, mean, rstd) (the statistics with kept dims,
which the backward reads instead of recomputing them), computed on the rows of x viewed as
(rows, features). The vjp is written with dualgraph ops (so it differentiates again, traces and fuses):

    xhat = (x - mean) * rstd;  gw = g * weight
    dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat));  dweight = sum(g * xhat);  dbias = sum(g)

plus the terms from cotangents of mean and rstd themselves (a second derivative reaches them).
Exports as ReduceMean / Sub / Mul / Sqrt / Reciprocal / Add.
"""
import numpy as np

from .._state import STATE
from ..dispatch import EAGER, apply
from ..tensor import Tensor
from ..graph.avals import Aval
from ..kernels.native import address
from ..kernels.norm import NORM as _NORM
from .infer import float_dtype
from .reduction import mean as _mean, sum as _sum
from .registry import defop


def _stats_shape(shape, n_axes):
    return tuple(shape[:len(shape) - n_axes]) + (1,) * n_axes


def _c_ready(a, dtype):
    return type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous


def _affine(p, dtype, n):
    """weight/bias as a C-contiguous vector of x's dtype for the C loop, or False where it cannot take it."""
    if p is None:
        return None
    if type(p) is not np.ndarray or p.size != n:
        return False
    return np.ascontiguousarray(p, dtype=dtype).reshape(-1)


def _layer_norm_forward(xp, x, weight=None, bias=None, *, n_axes, eps):
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    shape = x.shape
    n = 1
    for d in shape[len(shape) - n_axes:]:
        n *= d
    st = _stats_shape(shape, n_axes)
    if xp is np and _c_ready(x, x.dtype) and x.size:
        loops = _NORM(x.dtype)
        w, b = _affine(weight, x.dtype, n), _affine(bias, x.dtype, n)
        if loops is not None and w is not False and b is not False:
            rows = x.size // n
            y, mean, rstd = np.empty_like(x), np.empty(st, x.dtype), np.empty(st, x.dtype)
            loops["ln_forward"](rows, n, address(x), None if w is None else address(w),
                                None if b is None else address(b), eps, address(y), address(mean), address(rstd))
            return y, mean, rstd
    x2 = x.reshape(-1, n)
    mean = x2.mean(axis=1, keepdims=True)
    xc = x2 - mean
    var = xp.einsum("ij,ij->i", xc, xc)[:, None] / x.dtype.type(n) if xp is np else (xc * xc).mean(1, keepdims=True)
    rstd = 1 / xp.sqrt(var + x.dtype.type(eps))
    xc *= rstd
    y = xc.reshape(shape)
    if weight is not None:
        y *= weight.astype(y.dtype, copy=False)
    if bias is not None:
        y += bias.astype(y.dtype, copy=False)
    return y, mean.reshape(st), rstd.reshape(st)


def _layer_norm_infer(x, weight=None, bias=None, *, n_axes, eps):
    dt = float_dtype(x.dtype)
    st = _stats_shape(x.shape, n_axes)
    return Aval(x.shape, dt), Aval(st, dt), Aval(st, dt)


def _unless_zero(t):
    """None for the zeros autograd hands a vjp for an output nothing used (mean and rstd, almost always):
    their terms would cost several passes over x for nothing. Only eagerly, and only for a constant
    (a cotangent that itself requires grad keeps its path for a second derivative)."""
    if (t is not None and STATE.mode is EAGER and type(t) is Tensor and not t.requires_grad
            and type(t._data) is np.ndarray and not t._data.any()):
        return None
    return t


def _layer_norm_vjp(ctx, gs):
    gy, gmean, grstd = gs
    x = ctx.inputs[0]
    weight = ctx.inputs[1] if len(ctx.inputs) > 1 else None
    _, mean, rstd = ctx.out
    k = ctx.attrs["n_axes"]
    n = 1
    for d in x.shape[x.ndim - k:]:
        n *= d
    dx = dw = db = None
    if gy is not None:
        dx, dw, db = layer_norm_grad(gy, x, mean, rstd, weight, k)
        if not ctx.needs_input_grad[0]:
            dx = None
    gmean, grstd = _unless_zero(gmean), _unless_zero(grstd)
    if ctx.needs_input_grad[0] and (gmean is not None or grstd is not None):
        # mean = sum(x) / n; rstd = (mean((x - mean)^2) + eps)^-1/2, so d rstd / dx = -rstd^3 (x - mean) / n
        xc = x - mean
        if gmean is not None:
            e = gmean * (1.0 / n)
            dx = e + xc * 0.0 if dx is None else dx + e  # (xc * 0.0: to x's shape)
        if grstd is not None:
            e = -(grstd * rstd * rstd * rstd) * xc * (1.0 / n)
            dx = e if dx is None else dx + e
    grads = (dx,)
    if len(ctx.inputs) > 1:
        grads += (dw if ctx.needs_input_grad[1] else None,)
    if len(ctx.inputs) > 2:
        grads += (db if ctx.needs_input_grad[2] else None,)
    return grads


# ---- layer_norm_grad: (dx, dweight, dbias) from (g, x, mean, rstd[, weight]) in one pass -------------------

def _lng_forward(xp, g, x, mean, rstd, weight=None, *, n_axes):
    shape = x.shape
    wshape = tuple(shape[len(shape) - n_axes:])
    n = 1
    for d in wshape:
        n *= d
    dt = x.dtype
    if xp is np and x.size and _c_ready(x, dt) and type(g) is np.ndarray and g.dtype == dt and g.shape == shape \
            and _c_ready(mean, dt) and _c_ready(rstd, dt):
        loops = _NORM(dt)
        w = _affine(weight, dt, n)
        if w is None:
            w = np.ones(n, dt)
        if loops is not None and w is not False:
            g = np.ascontiguousarray(g)
            dx, dw, db = np.empty_like(x), np.empty(wshape, dt), np.empty(wshape, dt)
            if loops["ln_backward"](x.size // n, n, address(g), address(x), address(mean), address(rstd),
                                    address(w), address(dx), address(dw), address(db)) == 0:
                return dx, dw, db
    g2, x2 = g.reshape(-1, n).astype(dt, copy=False), x.reshape(-1, n)
    m2, r2 = mean.reshape(-1, 1), rstd.reshape(-1, 1)
    xhat = (x2 - m2) * r2
    gw = g2 * weight.reshape(1, n).astype(dt, copy=False) if weight is not None else g2
    dx = r2 * (gw - gw.mean(axis=1, keepdims=True) - xhat * (gw * xhat).mean(axis=1, keepdims=True))
    dw = (g2 * xhat).sum(axis=0).reshape(wshape)
    db = g2.sum(axis=0).reshape(wshape)
    return dx.reshape(shape), dw, db


def _lng_infer(g, x, mean, rstd, weight=None, *, n_axes):
    dt = float_dtype(x.dtype)
    return Aval(x.shape, dt), Aval(tuple(x.shape[len(x.shape) - n_axes:]), dt), \
        Aval(tuple(x.shape[len(x.shape) - n_axes:]), dt)


def _lng_vjp(ctx, hs):
    """Cotangents (c, hw, hb) of (dx, dweight, dbias), with xhat = (x - mean) * rstd, gw = g * weight,
    A = mean(gw), B = mean(gw * xhat), dx = rstd * (gw - A - xhat * B) per row:

        u       = rstd * (c - mean(c) - xhat * mean(c * xhat))   (what reaches gw)
        d g     = u * weight + hw * xhat + hb;   d weight = sum_rows(g * u)
        d xhat  = -rstd * (c * B + gw * mean(c * xhat)) + hw * g
        d x     = d xhat * rstd;   d mean = -sum(d x);   d rstd = sum(d xhat * (x - mean)) + sum(c * dx / rstd)

    written in dualgraph ops, so it differentiates again."""
    c, hw, hb = hs
    g, x, mean, rstd = ctx.inputs[:4]
    weight = ctx.inputs[4] if len(ctx.inputs) > 4 else None
    k = ctx.attrs["n_axes"]
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    xc = x - mean
    xhat = xc * rstd
    gw = g * weight if weight is not None else g
    dg = dw = gxhat = drstd = None
    if c is not None:
        cx = _mean(c * xhat, axis=axes, keepdims=True)
        u = rstd * (c - _mean(c, axis=axes, keepdims=True) - xhat * cx)
        dg = u * weight if weight is not None else u
        if weight is not None:
            dw = _sum(g * u, axis=lead) if lead else g * u
        big_b = _mean(gw * xhat, axis=axes, keepdims=True)
        gxhat = -rstd * (c * big_b + gw * cx)
        drstd = _sum(c * (gw - _mean(gw, axis=axes, keepdims=True) - xhat * big_b), axis=axes, keepdims=True)
    if hw is not None:
        dg = hw * xhat if dg is None else dg + hw * xhat
        gxhat = hw * g if gxhat is None else gxhat + hw * g
    if hb is not None:
        e = hb + g * 0.0  # (g * 0.0: to g's shape)
        dg = e if dg is None else dg + e
    dx = dmean = None
    if gxhat is not None:
        dx = gxhat * rstd
        dmean = -_sum(dx, axis=axes, keepdims=True)
        e = _sum(gxhat * xc, axis=axes, keepdims=True)
        drstd = e if drstd is None else drstd + e
    grads = (dg, dx, dmean, drstd)
    if weight is not None:
        grads += (dw,)
    return grads


def _lng_onnx(ctx, node, g, x, mean, rstd, weight=None):
    a = ctx.attrs(node)
    dt = node.outputs[0].aval.dtype
    g, x = ctx.arg(node.inputs[0], g, dt), ctx.arg(node.inputs[1], x, dt)
    mean, rstd = ctx.arg(node.inputs[2], mean, dt), ctx.arg(node.inputs[3], rstd, dt)
    rank = len(node.inputs[1].aval.shape)
    k = int(a["n_axes"])
    axes, lead = tuple(range(rank - k, rank)), tuple(range(rank - k))
    xhat = ctx.emit("Mul", [ctx.emit("Sub", [x, mean]), rstd])
    gw = g
    if weight is not None and len(node.inputs) > 4 and node.inputs[4] is not None:
        gw = ctx.emit("Mul", [g, ctx.arg(node.inputs[4], weight, dt)])
    ma = ctx.reduce("ReduceMean", gw, axes, True)
    mb = ctx.reduce("ReduceMean", ctx.emit("Mul", [gw, xhat]), axes, True)
    dx = ctx.emit("Mul", [rstd, ctx.emit("Sub", [ctx.emit("Sub", [gw, ma]), ctx.emit("Mul", [xhat, mb])])])
    gx = ctx.emit("Mul", [g, xhat])
    if lead:
        return dx, ctx.reduce("ReduceSum", gx, lead, False), ctx.reduce("ReduceSum", g, lead, False)
    return dx, gx, ctx.emit("Identity", [g])


LAYER_NORM_GRAD = defop("layer_norm_grad", _lng_forward, _lng_infer, _lng_vjp, n_out=3, onnx=_lng_onnx)


def layer_norm_grad(g, x, mean, rstd, weight, n_axes):
    """(dx, dweight, dbias) of layer_norm for the cotangent g of y, given its saved mean and rstd."""
    ins = (g, x, mean, rstd) if weight is None else (g, x, mean, rstd, weight)
    return apply(LAYER_NORM_GRAD, ins, {"n_axes": int(n_axes)})


def _layer_norm_onnx(ctx, node, x, weight=None, bias=None):
    a = ctx.attrs(node)
    dt = node.outputs[0].aval.dtype
    x = ctx.arg(node.inputs[0], x, dt)
    rank = len(node.inputs[0].aval.shape)
    axes = tuple(range(rank - int(a["n_axes"]), rank))
    mean = ctx.reduce("ReduceMean", x, axes, True)
    xc = ctx.emit("Sub", [x, mean])
    var = ctx.reduce("ReduceMean", ctx.emit("Mul", [xc, xc]), axes, True)
    rstd = ctx.emit("Reciprocal", [ctx.emit("Sqrt", [ctx.emit("Add", [var, ctx.const(float(a["eps"]), dt)])])])
    y = ctx.emit("Mul", [xc, rstd])
    if weight is not None and node.inputs[1] is not None:
        y = ctx.emit("Mul", [y, ctx.arg(node.inputs[1], weight, dt)])
    if bias is not None and node.inputs[2] is not None:
        y = ctx.emit("Add", [y, ctx.arg(node.inputs[2], bias, dt)])
    return y, mean, rstd


LAYER_NORM = defop("layer_norm", _layer_norm_forward, _layer_norm_infer, _layer_norm_vjp, n_out=3, saves_output=True,
                   onnx=_layer_norm_onnx)


def layer_norm(x, n_axes, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd) of layer normalization over the trailing n_axes dims."""
    ins = (x,) if weight is None and bias is None else (x, weight) if bias is None else (x, weight, bias)
    return apply(LAYER_NORM, ins, {"n_axes": int(n_axes), "eps": float(eps)})
