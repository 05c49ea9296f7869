"""gradcheck: compare analytic gradients with central finite differences (use float64 inputs)."""
import warnings

import numpy as np

from ..errors import AutogradError
from ..tensor import Tensor
from .api import grad
from .modes import enable_grad, no_grad


def _numerical_jacobian_vjp(fn, inputs, v, eps):
    """d<v, fn(x)>/dx for each input, by central differences."""
    grads = []
    for t in inputs:
        if not (isinstance(t, Tensor) and t.requires_grad):
            grads.append(None)
            continue
        base = t.numpy().copy()
        xp = t.device.xp  # cupy will not take a host array implicitly
        g = np.zeros_like(base)
        flat = base.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            t._data[...] = xp.asarray(base.reshape(t.shape))
            plus = _dot(fn(*inputs), v)
            flat[i] = orig - eps
            t._data[...] = xp.asarray(base.reshape(t.shape))
            minus = _dot(fn(*inputs), v)
            flat[i] = orig
            t._data[...] = xp.asarray(base.reshape(t.shape))
            g.reshape(-1)[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def _dot(out, v):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return float(sum(np.sum(o.numpy().astype(np.float64) * vi) for o, vi in zip(outs, v)))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """True when fn's vjp matches finite differences for a random output cotangent."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    rng = np.random.default_rng(seed)
    v = [rng.standard_normal(o.shape) for o in outs]
    wrt = [t for t in inputs if getattr(t, "requires_grad", False)]
    for i, t in enumerate(wrt):
        if t.dtype != np.float64:
            warnings.warn(f"gradcheck: input {i} is {t.dtype}; finite differences need float64 inputs to be "
                          f"reliable", UserWarning, stacklevel=2)
    live = [(o, vi) for o, vi in zip(outs, v) if o.requires_grad]  # an output without a graph has zero grads
    analytic = grad([o for o, _ in live], wrt, grad_outputs=[Tensor(vi, dtype=o.dtype, device=o.device) for o, vi in live],
                             allow_unused=True) if live else [None] * len(wrt)
    with no_grad():
        numeric = [g for g in _numerical_jacobian_vjp(fn, inputs, v, eps) if g is not None]
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        a = np.zeros_like(n) if a is None else a.numpy()
        if not np.allclose(a, n, atol=atol, rtol=rtol):
            if raise_exception:
                err = np.max(np.abs(a - n))
                raise AutogradError(f"gradcheck: analytic and numerical gradients of input {i} differ "
                                    f"(max abs error {err:.3g})\nanalytic:\n{a}\nnumerical:\n{n}")
            return False
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=1):
    """Check second derivatives: gradcheck of x -> <v, d fn/dx>."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    v = [Tensor(rng.standard_normal(o.shape), dtype=o.dtype, device=o.device) for o in outs]
    wrt_idx = [i for i, t in enumerate(inputs) if getattr(t, "requires_grad", False)]

    def first_grad(*xs):
        with enable_grad():  # gradcheck evaluates fn under no_grad for its finite differences
            o = fn(*xs)
            os_ = o if isinstance(o, (tuple, list)) else (o,)
            gs = grad(list(os_), [xs[i] for i in wrt_idx], grad_outputs=v, create_graph=True,
                               allow_unused=True)
        return tuple(g if g is not None else xs[i] * 0.0 for g, i in zip(gs, wrt_idx))

    return gradcheck(first_grad, inputs, eps=eps, atol=atol, rtol=rtol, raise_exception=raise_exception, seed=seed)
