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

from ..dispatch import apply
from ..graph.avals import Aval
from .infer import float_dtype
from .reduction import mean as _mean, sum as _sum
from .registry import defop


def _stats_shape(shape, n_axes):
    return tuple(shape[:len(shape) - n_axes]) + (1,) * n_axes


def _layer_norm_forward(xp, x, weight=None, bias=None, *, n_axes, eps):
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    shape = x.shape
    n = 1
    for d in shape[len(shape) - n_axes:]:
        n *= d
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
    st = _stats_shape(shape, n_axes)
    return y, mean.reshape(st), rstd.reshape(st)


def _layer_norm_infer(x, weight=None, bias=None, *, n_axes, eps):
    dt = float_dtype(x.dtype)
    st = _stats_shape(x.shape, n_axes)
    return Aval(x.shape, dt), Aval(st, dt), Aval(st, dt)


def _layer_norm_vjp(ctx, gs):
    gy, gmean, grstd = gs
    x = ctx.inputs[0]
    weight = ctx.inputs[1] if len(ctx.inputs) > 1 else None
    bias = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    _, mean, rstd = ctx.out
    k = ctx.attrs["n_axes"]
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    n = 1
    for d in x.shape[x.ndim - k:]:
        n *= d
    xc = x - mean
    xhat = xc * rstd
    dx = dw = db = None
    if gy is not None:
        gw = gy * weight if weight is not None else gy
        if ctx.needs_input_grad[0]:
            dx = rstd * (gw - _mean(gw, axis=axes, keepdims=True) - xhat * _mean(gw * xhat, axis=axes, keepdims=True))
        if weight is not None and ctx.needs_input_grad[1]:
            dw = _sum(gy * xhat, axis=lead) if lead else gy * xhat
        if bias is not None and ctx.needs_input_grad[2]:
            db = _sum(gy, axis=lead) if lead else gy
    if ctx.needs_input_grad[0]:
        # mean = sum(x) / n; rstd = (mean((x - mean)^2) + eps)^-1/2, so d rstd / dx = -rstd^3 (x - mean) / n
        if gmean is not None:
            e = gmean * (1.0 / n)
            dx = e + xc * 0.0 if dx is None else dx + e  # (xc * 0.0: to x's shape)
        if grstd is not None:
            e = -(grstd * rstd * rstd * rstd) * xc * (1.0 / n)
            dx = e if dx is None else dx + e
    grads = (dx,)
    if len(ctx.inputs) > 1:
        grads += (dw,)
    if len(ctx.inputs) > 2:
        grads += (db,)
    return grads


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
