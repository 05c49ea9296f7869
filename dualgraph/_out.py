"""PyTorch's `out=` keyword for the dg.* functions that have it: the result is written into `out`,
which is returned (so a numpy view of it, from `out.numpy()`, sees the values)."""
import functools
import warnings

from ._state import STATE
from .errors import AutogradError
from .tensor import Tensor
from .autograd import no_grad

# The single-result functions of torch's namespace that take out= and that scripts call with it.
NAMES = ("abs", "add", "addmm", "bmm", "cat", "ceil", "clamp", "cos", "div", "exp", "floor", "log", "matmul",
         "mm", "mul", "neg", "pow", "sigmoid", "sin", "sqrt", "stack", "sub", "tanh")


def _requires_grad(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, Tensor) and a.requires_grad:
            return True
        if isinstance(a, (list, tuple)) and _requires_grad(a, {}):
            return True
    return False


def with_out(fn):
    @functools.wraps(fn)
    def wrapper(*args, out=None, **kwargs):
        if out is None:
            return fn(*args, **kwargs)
        name = fn.__name__
        if not isinstance(out, Tensor):
            raise TypeError(f"{name}(): out= must be a Tensor, got {type(out).__name__}")
        if STATE.grad_enabled and (_requires_grad(args, kwargs) or out.requires_grad):
            # PyTorch refuses too: the result in `out` could not carry the graph of the call
            raise AutogradError(f"{name}(): functions with out=... arguments don't support automatic "
                                "differentiation, but one of the arguments requires grad")
        with no_grad():
            result = fn(*args, **kwargs)
            if tuple(result.shape) == tuple(out.shape):
                out.copy_(result)
            else:
                if out.numel() != 0:
                    warnings.warn(f"{name}(): an output with one or more elements was resized since it had "
                                  f"shape {tuple(out.shape)}, which does not match the required output shape "
                                  f"{tuple(result.shape)}", UserWarning, stacklevel=2)
                out.data = result.to(out.dtype)
        return out
    return wrapper
