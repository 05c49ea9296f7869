"""dg.nn.utils: gradient clipping (PyTorch's clip_grad_norm_ and clip_grad_value_).

Both work in place on `.grad` with tensor ops and never read a value back into Python, so they
can sit inside a compiled training step."""
from ..autograd import no_grad
from ..ops.creation import zeros
from ..ops.elementwise import clip, minimum, sqrt
from ..ops.reduction import amax, sum as _sum
from ..ops.shape import stack
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "zero_grads"]


def zero_grads(parameters, set_to_none=True):
    """What Module.zero_grad and Optimizer.zero_grad do: drop each gradient, or zero it in place."""
    for p in parameters:
        if set_to_none:
            # written without reading it first: inside @dg.function a read of .grad makes the trace
            # depend on whether it was None, so the second call of a training step would retrace
            p.grad = None
        elif p.grad is not None:
            with no_grad():
                p.grad.zero_()


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients by min(1, max_norm / (total_norm + 1e-6)); returns the total norm (a 0-d tensor).

    The total norm is the norm of all gradients together, as if concatenated into one vector."""
    grads = _grads(parameters)
    if not grads:
        return zeros(())
    norm_type = float(norm_type)
    with no_grad():
        if norm_type == float("inf"):
            total = amax(stack([amax(abs(g)) for g in grads]))
        else:
            total = _sum(stack([_sum(abs(g) ** norm_type) for g in grads])) ** (1.0 / norm_type) \
                if norm_type != 2.0 else sqrt(_sum(stack([_sum(g * g) for g in grads])))
        if error_if_nonfinite and not bool(total.isfinite()):
            raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite, so it cannot "
                               f"be clipped; pass error_if_nonfinite=False to skip this check")
        coef = minimum(max_norm / (total + 1e-6), 1.0)
        for g in grads:
            g.mul_(coef.astype(g.dtype))
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    with no_grad():
        for g in _grads(parameters):
            g.copy_(clip(g, -clip_value, clip_value))
