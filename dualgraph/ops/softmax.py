"""log_softmax and softmax as one primitive each, and their gradients as others.

Written as a composite (x - logsumexp(x)) it costs about ten ops forward and as many backward, and
cross-entropy sits on it in every classifier. As a primitive it is one op each way, eagerly and in
compiled graphs, and exports as ONNX's LogSoftmax. On numpy, rows along a C-contiguous last axis go
through one C loop per row (max, sum of exp, log; backward: sum, g - exp(y) * sum) when a C compiler
is there (dualgraph.kernels.rows): at 8x10 float32 that is ~2 us instead of ~20 us of numpy calls, which
matters in a compiled training step whose every other small op is also a few microseconds.
"""
import numpy as np

from ..graph.avals import Aval
from ..kernels.native import address
from ..kernels.rows import LOG_SOFTMAX as _ROWS
from ..kernels.softmax import SOFTMAX as _SOFTMAX_ROWS
from ..dispatch import apply
from .elementwise import _f, exp
from .infer import float_dtype, norm_axes
from .reduction import sum as _sum
from .registry import defop


def _rows(xp, axis, a, b=None):
    """The C loop applies: numpy, reducing the last axis, the arrays C-contiguous with one shape and dtype.
    (Kept to a few attribute reads: in a compiled step this runs with the interpreter's caches cold.)"""
    return (xp is np and type(a) is np.ndarray and axis == a.ndim - 1 and a.size and a.flags.c_contiguous
            and (b is None or (type(b) is np.ndarray and b.flags.c_contiguous and b.shape == a.shape
                               and b.dtype == a.dtype)))


def _short_last_axis(xp, x, axis):
    """numpy reduces a short contiguous last axis (a classifier's 10 logits) one element at a time:
    1024x10 float32 takes 43 us for max and 26 us for sum, against 14 us for a max over the columns
    and 4 us for a BLAS matrix-vector product with ones (the path without a C compiler)."""
    return (xp is np and axis == x.ndim - 1 and x.ndim >= 2 and x.shape[-1] <= 16 and x.flags.c_contiguous
            and x.dtype in (np.float32, np.float64))


def _row_max(xp, x, axis):
    if _short_last_axis(xp, x, axis) and x.size >= 512 * x.shape[-1]:
        m = x[..., :1].copy()
        for c in range(1, x.shape[-1]):
            np.maximum(m, x[..., c:c + 1], out=m)
        return m
    return x.max(axis=axis, keepdims=True)


def _row_sum(xp, x, axis):
    if _short_last_axis(xp, x, axis):
        return (x @ np.ones(x.shape[-1], x.dtype))[..., None]
    return x.sum(axis=axis, keepdims=True)


def _log_softmax_forward(xp, x, axis):
    if _rows(xp, axis, x):
        loops = _ROWS(x.dtype)
        if loops is not None:
            y, e = np.empty_like(x), np.empty_like(x)
            loops["lsm_forward"](x.size // x.shape[-1], x.shape[-1], address(x), address(y), address(e))
            return y
    x = _f(xp, x)
    if x.shape[axis] == 0:
        return xp.array(x, copy=True)
    m = _row_max(xp, x, axis)
    if not xp.isfinite(m).all():  # a row without a finite max is not shifted (as the C loop)
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
    shifted = x - m
    return shifted - xp.log(_row_sum(xp, xp.exp(shifted), axis))


def _log_softmax_grad_forward(xp, g, y, axis):
    if _rows(xp, axis, g, y):
        loops = _ROWS(y.dtype)
        if loops is not None:
            dx = np.empty_like(y)
            loops["lsm_backward"](y.size // y.shape[-1], y.shape[-1], address(g), address(y), address(dx))
            return dx
    return g - xp.exp(y) * _row_sum(xp, g, axis)


def _log_softmax_vjp(ctx, g):
    return (log_softmax_grad(g, ctx.out, ctx.attrs["axis"]),)


def _log_softmax_grad_vjp(ctx, h):
    """dx = g - exp(y) * sum(g): for a cotangent h, dg = h - sum(h * exp(y)), dy = -h * exp(y) * sum(g)."""
    g, y = ctx.inputs
    axis = ctx.attrs["axis"]
    he = h * exp(y)
    return h - _sum(he, axis=axis, keepdims=True), -(he * _sum(g, axis=axis, keepdims=True))


def _log_softmax_onnx(ctx, node, x):
    x = ctx.arg(node.inputs[0], x, node.outputs[0].aval.dtype)
    return ctx.emit("LogSoftmax", [x], axis=int(ctx.attrs(node)["axis"]))


def _log_softmax_grad_onnx(ctx, node, g, y):
    dt = node.outputs[0].aval.dtype
    g, y = ctx.arg(node.inputs[0], g, dt), ctx.arg(node.inputs[1], y, dt)
    total = ctx.reduce("ReduceSum", g, (int(ctx.attrs(node)["axis"]),), True)
    return ctx.emit("Sub", [g, ctx.emit("Mul", [ctx.emit("Exp", [y]), total])])


LOG_SOFTMAX = defop("log_softmax", _log_softmax_forward,
                    lambda x, axis: Aval(x.shape, float_dtype(x.dtype)), _log_softmax_vjp, saves_output=True,
                    onnx=_log_softmax_onnx, fresh=True)
LOG_SOFTMAX_GRAD = defop("log_softmax_grad", _log_softmax_grad_forward,
                         lambda g, y, axis: Aval(y.shape, y.dtype), _log_softmax_grad_vjp, onnx=_log_softmax_grad_onnx,
                         fresh=True)


def log_softmax(x, axis=-1):
    return apply(LOG_SOFTMAX, (x,), {"axis": norm_axes(axis, x.ndim, "log_softmax")[0] if x.ndim else 0})


def log_softmax_grad(g, y, axis):
    """d log_softmax: g - exp(y) * sum(g, axis), for y = log_softmax(x, axis) and its cotangent g."""
    return apply(LOG_SOFTMAX_GRAD, (g, y), {"axis": axis})


# ---- softmax -------------------------------------------------------------------------------------
# As exp(log_softmax(x)) it took three passes forward and, through exp's and log_softmax's vjps, four
# backward; attention runs it on every score matrix.

def _softmax_forward(xp, x, axis):
    if _rows(xp, axis, x):
        loops = _SOFTMAX_ROWS(x.dtype)
        if loops is not None:
            y = np.empty_like(x)
            loops["softmax_forward"](x.size // x.shape[-1], x.shape[-1], address(x), address(y))
            return y
    x = _f(xp, x)
    if x.shape[axis] == 0:
        return xp.array(x, copy=True)
    m = _row_max(xp, x, axis)
    if not xp.isfinite(m).all():  # a row without a finite max is not shifted (as the C loop)
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
    e = xp.exp(x - m)
    e /= _row_sum(xp, e, axis)
    return e


def _softmax_grad_forward(xp, g, y, axis):
    if _rows(xp, axis, g, y):
        loops = _SOFTMAX_ROWS(y.dtype)
        if loops is not None:
            dx = np.empty_like(y)
            loops["softmax_backward"](y.size // y.shape[-1], y.shape[-1], address(g), address(y), address(dx))
            return dx
    gy = g * y
    return gy - y * _row_sum(xp, gy, axis)


def _softmax_vjp(ctx, g):
    return (softmax_grad(g, ctx.out, ctx.attrs["axis"]),)


def _softmax_grad_vjp(ctx, h):
    """dx = y * (g - s), s = sum(g * y): for a cotangent h, dg = y * (h - sum(h * y)) (softmax_grad
    itself) and dy = h * (g - s) - g * sum(h * y)."""
    g, y = ctx.inputs
    axis = ctx.attrs["axis"]
    dg = softmax_grad(h, y, axis) if ctx.needs_input_grad[0] else None
    dy = None
    if ctx.needs_input_grad[1]:
        dy = h * (g - _sum(g * y, axis=axis, keepdims=True)) - g * _sum(h * y, axis=axis, keepdims=True)
    return dg, dy


def _softmax_onnx(ctx, node, x):
    x = ctx.arg(node.inputs[0], x, node.outputs[0].aval.dtype)
    return ctx.emit("Softmax", [x], axis=int(ctx.attrs(node)["axis"]))


def _softmax_grad_onnx(ctx, node, g, y):
    dt = node.outputs[0].aval.dtype
    g, y = ctx.arg(node.inputs[0], g, dt), ctx.arg(node.inputs[1], y, dt)
    gy = ctx.emit("Mul", [g, y])
    total = ctx.reduce("ReduceSum", gy, (int(ctx.attrs(node)["axis"]),), True)
    return ctx.emit("Sub", [gy, ctx.emit("Mul", [y, total])])


SOFTMAX = defop("softmax", _softmax_forward, lambda x, axis: Aval(x.shape, float_dtype(x.dtype)), _softmax_vjp,
                saves_output=True, onnx=_softmax_onnx, fresh=True)
SOFTMAX_GRAD = defop("softmax_grad", _softmax_grad_forward, lambda g, y, axis: Aval(y.shape, y.dtype),
                     _softmax_grad_vjp, onnx=_softmax_grad_onnx, fresh=True)


def softmax(x, axis=-1):
    return apply(SOFTMAX, (x,), {"axis": norm_axes(axis, x.ndim, "softmax")[0] if x.ndim else 0})


def softmax_grad(g, y, axis):
    """d softmax: y * (g - sum(g * y, axis)), for y = softmax(x, axis) and its cotangent g."""
    return apply(SOFTMAX_GRAD, (g, y), {"axis": axis})
