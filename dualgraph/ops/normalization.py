"""layer_norm and batch_norm as primitives, each with a backward record that computes (dx, dweight, dbias)
in one pass: y = (x - mean) * rstd * weight + bias, the statistics over the trailing `n_axes` dims
(layer_norm) or over every axis but the channel axis 1 (batch_norm, the batch's statistics).

As composites they were about nine ops forward (two means, a subtract, a square, rsqrt, scale, shift) and
twice that backward. Each forward returns (y, mean, rstd) (the statistics with kept dims, which the
backward reads instead of recomputing them); on numpy with C-contiguous float input both directions run
as C loops (dualgraph.kernels.norm), else as numpy. The backward records `layer_norm_grad` and
`batch_norm_grad` compute

    xhat = (x - mean) * rstd;  gw = g * weight
    dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat));  dweight = sum(g * xhat);  dbias = sum(g)

and their own vjps are written with dualgraph ops (so second derivatives hold, trace and fuse). The
forward's vjp adds the terms from cotangents of mean and rstd themselves (a second derivative reaches
them). Exports as ReduceMean / Sub / Mul / Sqrt / Reciprocal / Add.
"""
import numpy as np

from .._state import STATE
from ..dispatch import EAGER, apply
from ..tensor import Tensor
from ..graph.avals import Aval
from ..kernels.native import address
from ..kernels.norm import BATCH_NORM as _BN, NORM as _NORM
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
    if ctx.needs_input_grad[0]:
        dx = _stat_cotangents(dx, gmean, grstd, x, mean, rstd, n)
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


def _norm_grad_vjp(hs, g, x, mean, rstd, weight, axes, waxes):
    """Cotangents (c, hw, hb) of (dx, dweight, dbias) of a normalization whose statistics reduce `axes`
    and whose weight (here broadcast to x) is summed over `waxes`; with xhat = (x - mean) * rstd,
    gw = g * weight, A = mean(gw), B = mean(gw * xhat) and dx = rstd * (gw - A - xhat * B):

        u       = rstd * (c - mean(c) - xhat * mean(c * xhat))   (what reaches gw)
        d g     = u * weight + hw * xhat + hb;   d weight = sum_waxes(g * u)
        d xhat  = -rstd * (c * B + gw * mean(c * xhat)) + hw * g
        d x     = d xhat * rstd;   d mean = -sum(d x);   d rstd = sum(d xhat * (x - mean)) + sum(c * dx / rstd)

    written in dualgraph ops, so it differentiates again. Returns (dg, dx, dmean, drstd, dweight)."""
    c, hw, hb = hs
    xc = x - mean
    xhat = xc * rstd
    gw = g * weight if weight is not None else g
    dg = dw = gxhat = drstd = None
    if c is not None:
        cx = _mean(c * xhat, axis=axes, keepdims=True)
        u = rstd * (c - _mean(c, axis=axes, keepdims=True) - xhat * cx)
        dg = u * weight if weight is not None else u
        if weight is not None:
            dw = _sum(g * u, axis=waxes) if waxes else g * u
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
    return dg, dx, dmean, drstd, dw


def _stat_cotangents(dx, gmean, grstd, x, mean, rstd, n):
    """Add what the cotangents of the statistics outputs contribute to dx: mean = sum(x) / n and
    rstd = (mean((x - mean)^2) + eps)^-1/2, so d rstd / dx = -rstd^3 (x - mean) / n."""
    gmean, grstd = _unless_zero(gmean), _unless_zero(grstd)
    if gmean is None and grstd is None:
        return dx
    xc = x - mean
    if gmean is not None:
        e = gmean * (1.0 / n)
        dx = e + xc * 0.0 if dx is None else dx + e  # (xc * 0.0: to x's shape)
    if grstd is not None:
        e = -(grstd * rstd * rstd * rstd) * xc * (1.0 / n)
        dx = e if dx is None else dx + e
    return dx


def _lng_vjp(ctx, hs):
    g, x, mean, rstd = ctx.inputs[:4]
    weight = ctx.inputs[4] if len(ctx.inputs) > 4 else None
    k = ctx.attrs["n_axes"]
    dg, dx, dmean, drstd, dw = _norm_grad_vjp(hs, g, x, mean, rstd, weight, tuple(range(x.ndim - k, x.ndim)),
                                              tuple(range(x.ndim - k)))
    grads = (dg, dx, dmean, drstd)
    return grads + (dw,) if weight is not None else grads


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


LAYER_NORM_GRAD = defop("layer_norm_grad", _lng_forward, _lng_infer, _lng_vjp, n_out=3, onnx=_lng_onnx, fresh=True)


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
                   onnx=_layer_norm_onnx, fresh=True)


def layer_norm(x, n_axes, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd) of layer normalization over the trailing n_axes dims."""
    ins = (x,) if weight is None and bias is None else (x, weight) if bias is None else (x, weight, bias)
    return apply(LAYER_NORM, ins, {"n_axes": int(n_axes), "eps": float(eps)})


# ---- batch_norm (training statistics): per channel (axis 1) over the batch and spatial dims ----------------
# (y, mean, rstd) with the statistics shaped (1, C, 1, ...); the backward is batch_norm_grad, one pass
# for the per-channel sums of g and g * xhat and one for dx. (N, C) input (no spatial dims) runs row by
# row with the sums per channel (a loop per channel would stride down columns). Eval mode (running statistics) is an
# elementwise affine map and stays a composite in nn.functional.batch_norm.

def _bn_dims(shape):
    nb, c = shape[0], shape[1]
    sp = 1
    for d in shape[2:]:
        sp *= d
    return nb, c, sp


def _bn_bshape(ndim, c):
    return (1, c) + (1,) * (ndim - 2)


def _bn_vec(p, dt, c, fill):
    if p is None:
        return np.full(c, fill, dt)
    if type(p) is not np.ndarray or p.size != c:
        return None
    return np.ascontiguousarray(p, dtype=dt).reshape(-1)


def _batch_norm_forward(xp, x, weight=None, bias=None, *, eps):
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    nb, c, sp = _bn_dims(x.shape)
    bshape = _bn_bshape(x.ndim, c)
    if xp is np and x.size and _c_ready(x, x.dtype):
        loops = _BN(x.dtype)
        w, b = _bn_vec(weight, x.dtype, c, 1), _bn_vec(bias, x.dtype, c, 0)
        if loops is not None and w is not None and b is not None:
            y, mean, rstd = np.empty_like(x), np.empty(bshape, x.dtype), np.empty(bshape, x.dtype)
            if sp == 1:
                loops["bn_rows_forward"](nb, c, address(x), address(w), address(b), eps, address(y), address(mean),
                                         address(rstd))
            else:
                loops["bn_forward"](nb, c, sp, address(x), address(w), address(b), eps, address(y), address(mean),
                                    address(rstd))
            return y, mean, rstd
    x3 = x.reshape(nb, c, sp)
    mean = x3.mean(axis=(0, 2), keepdims=True)
    xc = x3 - mean
    var = (xc * xc).mean(axis=(0, 2), keepdims=True)
    rstd = 1 / xp.sqrt(var + x.dtype.type(eps))
    y = xc * rstd
    if weight is not None:
        y = y * weight.astype(y.dtype, copy=False).reshape(1, c, 1)
    if bias is not None:
        y = y + bias.astype(y.dtype, copy=False).reshape(1, c, 1)
    return y.reshape(x.shape), mean.reshape(bshape), rstd.reshape(bshape)


def _batch_norm_infer(x, weight=None, bias=None, *, eps):
    dt = float_dtype(x.dtype)
    st = _bn_bshape(len(x.shape), x.shape[1])
    return Aval(x.shape, dt), Aval(st, dt), Aval(st, dt)


def _batch_norm_vjp(ctx, gs):
    gy, gmean, grstd = gs
    x = ctx.inputs[0]
    weight = ctx.inputs[1] if len(ctx.inputs) > 1 else None
    _, mean, rstd = ctx.out
    nb, c, sp = _bn_dims(x.shape)
    dx = dw = db = None
    if gy is not None:
        dx, dw, db = batch_norm_grad(gy, x, mean, rstd, weight)
        if not ctx.needs_input_grad[0]:
            dx = None
    if ctx.needs_input_grad[0]:
        dx = _stat_cotangents(dx, gmean, grstd, x, mean, rstd, nb * sp)
    grads = (dx,)
    if len(ctx.inputs) > 1:
        grads += (dw if ctx.needs_input_grad[1] else None,)
    if len(ctx.inputs) > 2:
        grads += (db if ctx.needs_input_grad[2] else None,)
    return grads


def _stat_axes(ndim):
    return (0,) + tuple(range(2, ndim))


def _batch_norm_onnx(ctx, node, x, weight=None, bias=None):
    a = ctx.attrs(node)
    dt = node.outputs[0].aval.dtype
    x = ctx.arg(node.inputs[0], x, dt)
    shape = node.inputs[0].aval.shape
    axes = _stat_axes(len(shape))
    bshape = ctx.const(np.array(_bn_bshape(len(shape), shape[1]), np.int64))
    mean = ctx.reduce("ReduceMean", x, axes, True)
    xc = ctx.emit("Sub", [x, mean])
    var = ctx.reduce("ReduceMean", ctx.emit("Mul", [xc, xc]), axes, True)
    rstd = ctx.emit("Reciprocal", [ctx.emit("Sqrt", [ctx.emit("Add", [var, ctx.const(float(a["eps"]), dt)])])])
    y = ctx.emit("Mul", [xc, rstd])
    if weight is not None and node.inputs[1] is not None:
        y = ctx.emit("Mul", [y, ctx.emit("Reshape", [ctx.arg(node.inputs[1], weight, dt), bshape])])
    if bias is not None and len(node.inputs) > 2 and node.inputs[2] is not None:
        y = ctx.emit("Add", [y, ctx.emit("Reshape", [ctx.arg(node.inputs[2], bias, dt), bshape])])
    return y, mean, rstd


BATCH_NORM = defop("batch_norm", _batch_norm_forward, _batch_norm_infer, _batch_norm_vjp, n_out=3,
                   saves_output=True, onnx=_batch_norm_onnx)


def batch_norm(x, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd) of batch normalization with the batch's statistics, per channel (axis 1)."""
    ins = (x,) if weight is None and bias is None else (x, weight) if bias is None else (x, weight, bias)
    return apply(BATCH_NORM, ins, {"eps": float(eps)})


def _bng_forward(xp, g, x, mean, rstd, weight=None):
    nb, c, sp = _bn_dims(x.shape)
    dt = x.dtype
    if xp is np and x.size and _c_ready(x, dt) and type(g) is np.ndarray and g.dtype == dt and g.shape == x.shape \
            and _c_ready(mean, dt) and _c_ready(rstd, dt):
        loops = _BN(dt)
        w = _bn_vec(weight, dt, c, 1)
        if loops is not None and w is not None:
            g = np.ascontiguousarray(g)
            dx, dw, db = np.empty_like(x), np.empty(c, dt), np.empty(c, dt)
            if sp == 1:
                loops["bn_rows_backward"](nb, c, address(g), address(x), address(mean), address(rstd), address(w),
                                          address(dx), address(dw), address(db))
            else:
                loops["bn_backward"](nb, c, sp, address(g), address(x), address(mean), address(rstd), address(w),
                                     address(dx), address(dw), address(db))
            return dx, dw, db
    g3, x3 = g.reshape(nb, c, sp).astype(dt, copy=False), x.reshape(nb, c, sp)
    m3, r3 = mean.reshape(1, c, 1), rstd.reshape(1, c, 1)
    xhat = (x3 - m3) * r3
    db = g3.sum(axis=(0, 2))
    dw = (g3 * xhat).sum(axis=(0, 2))
    wr = weight.astype(dt, copy=False).reshape(1, c, 1) if weight is not None else 1
    n = nb * sp
    dx = (wr * r3) * ((g3 - (db / n).reshape(1, c, 1)) - xhat * (dw / n).reshape(1, c, 1))
    return dx.reshape(x.shape), dw, db


def _bng_infer(g, x, mean, rstd, weight=None):
    dt = float_dtype(x.dtype)
    return Aval(x.shape, dt), Aval((x.shape[1],), dt), Aval((x.shape[1],), dt)


def _bng_vjp(ctx, hs):
    g, x, mean, rstd = ctx.inputs[:4]
    weight = ctx.inputs[4] if len(ctx.inputs) > 4 else None
    bshape = _bn_bshape(x.ndim, x.shape[1])
    c, hw, hb = hs
    hs = (c, None if hw is None else hw.reshape(bshape), None if hb is None else hb.reshape(bshape))
    axes = _stat_axes(x.ndim)
    dg, dx, dmean, drstd, dw = _norm_grad_vjp(hs, g, x, mean, rstd,
                                              None if weight is None else weight.reshape(bshape), axes, axes)
    grads = (dg, dx, dmean, drstd)
    return grads + (dw,) if weight is not None else grads


def _bng_onnx(ctx, node, g, x, mean, rstd, weight=None):
    dt = node.outputs[0].aval.dtype
    g, x = ctx.arg(node.inputs[0], g, dt), ctx.arg(node.inputs[1], x, dt)
    mean, rstd = ctx.arg(node.inputs[2], mean, dt), ctx.arg(node.inputs[3], rstd, dt)
    shape = node.inputs[1].aval.shape
    axes = _stat_axes(len(shape))
    xhat = ctx.emit("Mul", [ctx.emit("Sub", [x, mean]), rstd])
    gw = g
    if weight is not None and len(node.inputs) > 4 and node.inputs[4] is not None:
        bshape = ctx.const(np.array(_bn_bshape(len(shape), shape[1]), np.int64))
        gw = ctx.emit("Mul", [g, ctx.emit("Reshape", [ctx.arg(node.inputs[4], weight, dt), bshape])])
    ma = ctx.reduce("ReduceMean", gw, axes, True)
    mb = ctx.reduce("ReduceMean", ctx.emit("Mul", [gw, xhat]), axes, True)
    dx = ctx.emit("Mul", [rstd, ctx.emit("Sub", [ctx.emit("Sub", [gw, ma]), ctx.emit("Mul", [xhat, mb])])])
    return dx, ctx.reduce("ReduceSum", ctx.emit("Mul", [g, xhat]), axes, False), ctx.reduce("ReduceSum", g, axes, False)


BATCH_NORM_GRAD = defop("batch_norm_grad", _bng_forward, _bng_infer, _bng_vjp, n_out=3, onnx=_bng_onnx)


def batch_norm_grad(g, x, mean, rstd, weight):
    """(dx, dweight, dbias) of batch_norm for the cotangent g of y, given its saved mean and rstd."""
    ins = (g, x, mean, rstd) if weight is None else (g, x, mean, rstd, weight)
    return apply(BATCH_NORM_GRAD, ins, {})
