"""log_softmax as one primitive.

Written as a composite (x - logsumexp(x)) it costs about ten ops forward and as many backward, and
cross-entropy sits on it in every classifier; as one op it is one numpy pass forward and three
small ops backward, eagerly and in compiled graphs, and exports as ONNX's LogSoftmax.
"""
from ..tensor import apply
from .elementwise import _f, exp
from .infer import Aval, float_dtype
from .reduction import norm_axes, sum as _sum
from .registry import defop


def _log_softmax_forward(xp, x, axis):
    x = _f(xp, x)
    if x.shape[axis] == 0:
        return xp.array(x, copy=True)
    m = x.max(axis=axis, keepdims=True)
    if not xp.isfinite(m).all():  # a row of -inf stays -inf (not nan); a +inf or nan row gives nan
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
    shifted = x - m
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _log_softmax_vjp(ctx, g):
    axis = ctx.attrs["axis"]
    return (g - exp(ctx.out) * _sum(g, axis=axis, keepdims=True),)


LOG_SOFTMAX = defop("log_softmax", _log_softmax_forward,
                    lambda x, axis: Aval(x.shape, float_dtype(x.dtype)), _log_softmax_vjp, saves_output=True)


def log_softmax(x, axis=-1):
    return apply(LOG_SOFTMAX, (x,), {"axis": norm_axes(axis, x.ndim, "log_softmax")[0] if x.ndim else 0})
