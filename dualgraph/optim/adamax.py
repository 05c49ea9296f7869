"""Adamax, NAdam and RAdam: PyTorch's formulas and defaults.

Scalars that depend on the step count (bias corrections, NAdam's momentum schedule, RAdam's
rectification) are tensor ops on the in-place step tensor, computed in float64 like PyTorch's Python
arithmetic, so a compiled step keeps counting and the numbers follow PyTorch's to float32 rounding."""
from ..ops.creation import ones
from ..ops.elementwise import abs as _abs, maximum, sqrt, where
from .optimizer import Optimizer, torch_flags


def _check(lr, eps, betas, weight_decay):
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def _f64(t):
    return t.astype("float64")



def _count_step_and_decay(p, grad, state, group, lr, wd):
    """The first moves of NAdam's and RAdam's steps: the step count, and the weight decay either on the
    parameter (decoupled, AdamW's way) or added to the gradient. Returns the gradient and the count."""
    g = -grad if group["maximize"] else grad
    step = state["step"]
    step.add_(1)
    if wd:
        if group["decoupled_weight_decay"]:
            p.mul_(1 - lr * wd)
        else:
            g = g + p * wd
    return g, _f64(step)

class Adamax(Optimizer):
    """m = b1 m + (1-b1) g;  u = max(b2 u, |g| + eps);  p -= lr / (1 - b1^t) * m / u (state: exp_avg, exp_inf)."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        torch_flags(foreach, capturable, differentiable)
        _check(lr, eps, betas, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize, differentiable=differentiable,
                                      capturable=capturable))

    def _init_state(self, p, group):
        return {"step": self._step_tensor(p), "exp_avg": self._zeros_like(p), "exp_inf": self._zeros_like(p)}

    def _update(self, p, grad, state, group):
        (b1, b2), eps = group.value("betas"), group["eps"]
        g = -grad if group["maximize"] else grad
        step = state["step"]
        step.add_(1)
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        m, u = state["exp_avg"], state["exp_inf"]
        m.copy_(m + (g - m) * (1 - b1))
        u.copy_(maximum(u * b2, _abs(g) + eps))
        clr = group.lr_value() / (1 - b1 ** _f64(step))
        p.sub_(m / u * clr.astype(p.dtype))


class NAdam(Optimizer):
    """Adam with Nesterov momentum and the momentum schedule mu_t = b1 (1 - 0.5 * 0.96^(t momentum_decay)):
    p -= lr (1 - mu_t) / (1 - prod mu) g / d + lr mu_{t+1} / (1 - prod mu * mu_{t+1}) m / d,
    d = sqrt(v / (1 - b2^t)) + eps (state: mu_product, exp_avg, exp_avg_sq)."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        torch_flags(foreach, capturable, differentiable)
        _check(lr, eps, betas, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      foreach=foreach, maximize=maximize, capturable=capturable,
                                      differentiable=differentiable))

    _scalar_state = ("step", "mu_product")

    def _init_state(self, p, group):
        return {"step": self._step_tensor(p), "mu_product": ones((), dtype="float32", device=p.device),
                "exp_avg": self._zeros_like(p), "exp_avg_sq": self._zeros_like(p)}

    def _update(self, p, grad, state, group):
        lr, (b1, b2), eps, wd = group.lr_value(), group.value("betas"), group["eps"], group["weight_decay"]
        g, t = _count_step_and_decay(p, grad, state, group, lr, wd)
        md = group["momentum_decay"]
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * md))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * md))
        prod = state["mu_product"]
        prod.copy_((_f64(prod) * mu).astype(prod.dtype))   # a float32 running product, as PyTorch's
        prod64 = _f64(prod)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.copy_(m + (g - m) * (1 - b1))
        v.copy_(v * b2 + g * g * (1 - b2))
        denom = sqrt(v / (1 - b2 ** t).astype(p.dtype)) + eps
        c_grad = lr * (1.0 - mu) / (1.0 - prod64)
        c_avg = lr * mu_next / (1.0 - prod64 * mu_next)
        p.sub_(g / denom * c_grad.astype(p.dtype))
        p.sub_(m / denom * c_avg.astype(p.dtype))


class RAdam(Optimizer):
    """Rectified Adam: while the variance estimate's rho_t = rho_inf - 2 t b2^t / (1 - b2^t) is at most 5
    the step is the bias-corrected momentum alone (p -= lr m / (1 - b1^t)); after, Adam's step scaled by
    the rectification sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        torch_flags(foreach, capturable, differentiable)
        _check(lr, eps, betas, weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, foreach=foreach,
                                      maximize=maximize, capturable=capturable, differentiable=differentiable))

    def _init_state(self, p, group):
        return {"step": self._step_tensor(p), "exp_avg": self._zeros_like(p), "exp_avg_sq": self._zeros_like(p)}

    def _update(self, p, grad, state, group):
        lr, (b1, b2), eps, wd = group.lr_value(), group.value("betas"), group["eps"], group["weight_decay"]
        g, t = _count_step_and_decay(p, grad, state, group, lr, wd)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.copy_(m + (g - m) * (1 - b1))
        v.copy_(v * b2 + g * g * (1 - b2))
        bc1 = 1 - b1 ** t
        bc2 = 1 - b2 ** t
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * (b2 ** t) / bc2
        # both branches are computed and one chosen by a tensor where, so a compiled step keeps the switch
        rect = sqrt(maximum((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 0.0))
        adaptive = sqrt(bc2).astype(p.dtype) / (sqrt(v) + eps)
        scale = where(rho_t > 5.0, adaptive * rect.astype(p.dtype), 1.0)
        p.sub_(m / bc1.astype(p.dtype) * lr * scale)
