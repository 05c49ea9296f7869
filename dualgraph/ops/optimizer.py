"""adam_update: one Adam/AdamW step of one parameter as a single op.

Written as tensor ops, a step was about twenty ops per parameter (moments, bias corrections, the
denominator, the update), each a pass over the parameter and, eagerly, a dispatch: for a small
transformer's 30 parameters that was ~600 ops a step. As one op it is one C loop over the elements
(dualgraph.kernels.optim) after a few scalar operations, with a numpy formula where the loop does not
apply. The formula is Adam's as dualgraph.optim.Adam computes it:

    AdamW (decoupled): p *= 1 - lr * wd;   Adam: g = g + wd * p
    m = m * b1 + g * (1 - b1);   v = v * b2 + g * g * (1 - b2)
    p = p - m / (sqrt(v) / sqrt(1 - b2^t) + eps) * (lr / (1 - b1^t))

with t the step count (already incremented) and the bias corrections in float64, cast to the
parameter's dtype, as PyTorch. It returns the new (p, m, v); the optimizer writes them back in place.
Not differentiable (an optimizer step); exports as its formula.
"""
import numpy as np

from ..dispatch import apply
from ..graph.avals import Aval
from ..kernels.optim import adam_step as _c_adam_step
from .registry import defop


def _scalar(x):
    return float(x) if not hasattr(x, "shape") else float(x.reshape(()))


def _coefficients(step, lr, b1, b2):
    """(lr / bias1, sqrt(bias2)) in float64, from the step count and hyperparameters."""
    t = _scalar(step)
    lr, b1, b2 = _scalar(lr), _scalar(b1), _scalar(b2)
    return lr / (1 - b1 ** t), np.sqrt(1 - b2 ** t)


def _adam_update_forward(xp, p, g, m, v, step, lr, b1, b2, *, eps, weight_decay, decoupled, out=None):
    step_size, bias2_sqrt = _coefficients(step, lr, b1, b2)
    lr_f, b1_f, b2_f = _scalar(lr), _scalar(b1), _scalar(b2)
    if xp is np:
        res = _c_adam_step(p, g, m, v, lr_f * weight_decay if decoupled else 0.0,
                           0.0 if decoupled else weight_decay, b1_f, b2_f, eps, step_size, bias2_sqrt, out)
        if res is not None:
            return res
    t = p.dtype.type
    if weight_decay:
        if decoupled:
            p = p * t(1 - lr_f * weight_decay)
        else:
            g = g + p * t(weight_decay)
    m = m * t(b1_f) + g * t(1 - b1_f)
    v = v * t(b2_f) + g * g * t(1 - b2_f)
    denom = xp.sqrt(v) / t(bias2_sqrt) + t(eps)
    return p - m / denom * t(step_size), m, v


def _adam_update_infer(p, g, m, v, step, lr, b1, b2, **_):
    return Aval(p.shape, p.dtype), Aval(m.shape, m.dtype), Aval(v.shape, v.dtype)


def _adam_update_onnx(ctx, node, p, g, m, v, step, lr, b1, b2):
    a = ctx.attrs(node)
    dt = node.outputs[0].aval.dtype
    f64 = np.dtype(np.float64)

    def scalar(name, value):
        av = value.aval if value is not None and not value.weak else None
        if av is None:
            return ctx.const(float(value.const), f64)
        return ctx.cast(name, av.dtype, f64)
    ins = node.inputs
    step_d, lr_d, b1_d, b2_d = (scalar(n, v_) for n, v_ in zip((step, lr, b1, b2), ins[4:8]))
    one = ctx.const(1.0, f64)
    bias1 = ctx.emit("Sub", [one, ctx.emit("Pow", [b1_d, step_d])])
    bias2_sqrt = ctx.emit("Sqrt", [ctx.emit("Sub", [one, ctx.emit("Pow", [b2_d, step_d])])])
    step_size = ctx.cast(ctx.emit("Div", [lr_d, bias1]), f64, dt)
    bias2_sqrt = ctx.cast(bias2_sqrt, f64, dt)
    c = lambda x: ctx.const(x, dt)  # noqa: E731
    wd = float(a["weight_decay"])
    if wd:
        if a["decoupled"]:
            keep = ctx.cast(ctx.emit("Sub", [one, ctx.emit("Mul", [lr_d, ctx.const(wd, f64)])]), f64, dt)
            p = ctx.emit("Mul", [p, keep])
        else:
            g = ctx.emit("Add", [g, ctx.emit("Mul", [p, c(wd)])])
    b1_t, b2_t = ctx.cast(b1_d, f64, dt), ctx.cast(b2_d, f64, dt)
    one_t = c(1.0)
    m = ctx.emit("Add", [ctx.emit("Mul", [m, b1_t]), ctx.emit("Mul", [g, ctx.emit("Sub", [one_t, b1_t])])])
    v = ctx.emit("Add", [ctx.emit("Mul", [v, b2_t]),
                         ctx.emit("Mul", [ctx.emit("Mul", [g, g]), ctx.emit("Sub", [one_t, b2_t])])])
    denom = ctx.emit("Add", [ctx.emit("Div", [ctx.emit("Sqrt", [v]), bias2_sqrt]), c(float(a["eps"]))])
    p = ctx.emit("Sub", [p, ctx.emit("Mul", [ctx.emit("Div", [m, denom]), step_size])])
    return p, m, v


def _adam_update_kernel(node, xp):
    """The forward with the node's attributes bound, taking out=(p, m, v): a compiled training step whose
    parameter and moments are donated writes the step into them instead of allocating and copying back."""
    if xp is not np:
        return None
    attrs = dict(node.attrs)
    return lambda *arrays, out=None: _adam_update_forward(np, *arrays, out=out, **attrs)


ADAM_UPDATE = defop("adam_update", _adam_update_forward, _adam_update_infer, None, differentiable=False, n_out=3,
                    onnx=_adam_update_onnx, kernel=_adam_update_kernel, writes_out=True)


def adam_update(p, g, m, v, step, lr, b1, b2, eps, weight_decay, decoupled):
    """The new (p, m, v) after one Adam (decoupled=False) or AdamW step; `step` already counts it."""
    return apply(ADAM_UPDATE, (p, g, m, v, step, lr, b1, b2),
                 {"eps": float(eps), "weight_decay": float(weight_decay), "decoupled": bool(decoupled)})
