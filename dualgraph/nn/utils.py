"""dg.nn.utils: gradient clipping (PyTorch's clip_grad_norm_, clip_grad_value_, get_total_norm,
clip_grads_with_norm_) and parameters_to_vector / vector_to_parameters.

The clipping functions work in place on `.grad` with tensor ops and never read a value back into
Python (unless error_if_nonfinite=True asks for that check), so they can sit inside a compiled training
step. `foreach` is PyTorch's implementation switch: accepted, one code path here."""
import math

from ..autograd import no_grad
from ..errors import DualgraphError, ShapeError
from ..ops.creation import zeros
from ..ops.elementwise import clip, minimum, sqrt
from ..ops.reduction import amax, amin, sum as _sum
from ..ops.shape import concat, stack
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_",
           "parameters_to_vector", "vector_to_parameters", "zero_grads"]


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


def _tensors(tensors):
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _grads(parameters):
    return [p.grad for p in _tensors(parameters) if p.grad is not None]


def _vector_norm(g, p):
    """torch.linalg.vector_norm(g, p) over all elements."""
    a = abs(g)
    if p == math.inf:
        return amax(a)
    if p == -math.inf:
        return amin(a)
    if p == 0:
        return _sum((a != 0).astype(g.dtype))
    if p == 2.0:
        return sqrt(_sum(g * g))
    if p == 1.0:
        return _sum(a)
    return _sum(a ** p) ** (1.0 / p)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The norm of the norms of `tensors` (as if all were concatenated into one vector); a 0-d tensor."""
    tensors = [t for t in _tensors(tensors) if t is not None]
    norm_type = float(norm_type)
    if not tensors:
        return zeros(())
    with no_grad():
        total = _vector_norm(stack([_vector_norm(t, norm_type).astype(tensors[0].dtype) for t in tensors]),
                             norm_type)
    if error_if_nonfinite and not bool(total.isfinite()):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                           f"so it cannot be clipped. To disable this error and scale the gradients by the "
                           f"non-finite norm anyway, set `error_if_nonfinite=False`")
    return total


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale every gradient by min(1, max_norm / (total_norm + 1e-6)), in place."""
    grads = _grads(parameters)
    if not grads:
        return
    with no_grad():
        coef = minimum(max_norm / (total_norm + 1e-6), 1.0)
        for g in grads:
            g.mul_(coef.astype(g.dtype))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale all gradients by min(1, max_norm / (total_norm + 1e-6)); returns the total norm (a 0-d tensor),
    computed before clipping, of all gradients together as if concatenated into one vector."""
    parameters = _tensors(parameters)   # a generator is read once
    grads = _grads(parameters)
    if not grads:
        return zeros(())
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(parameters, max_norm, total, foreach)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    with no_grad():
        for g in _grads(parameters):
            g.copy_(clip(g, -clip_value, clip_value))


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-D tensor (a copy, differentiable)."""
    params = _tensors(parameters)
    if not params:
        raise ShapeError("parameters_to_vector: got no parameters to concatenate")
    device = params[0].device
    for p in params:
        if p.device != device:
            raise DualgraphError(f"parameters_to_vector: all parameters must be on one device, found {device} "
                                 f"and {p.device}")
    return concat([p.reshape(-1) for p in params])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D `vec` into the parameters, in place (not recorded for autograd)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected a Tensor, but got {type(vec).__name__}")
    params = _tensors(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ShapeError(f"vector_to_parameters: vec of shape {tuple(vec.shape)} does not hold the parameters' "
                         f"{total} elements")
    offset = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vec[offset:offset + n].reshape(p.shape).astype(p.dtype))
            offset += n
