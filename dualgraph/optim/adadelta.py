"""Adadelta: PyTorch's formulas and defaults (lr=1.0, rho=0.9, eps=1e-6)."""
from ..ops.elementwise import sqrt
from .optimizer import Optimizer, torch_flags


class Adadelta(Optimizer):
    """v = rho v + (1-rho) g^2;  delta = sqrt(u + eps) / sqrt(v + eps) * g;  u = rho u + (1-rho) delta^2;
    p -= lr * delta (state: square_avg = v, acc_delta = u)."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        torch_flags(foreach, capturable, differentiable)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      foreach=foreach, capturable=capturable, differentiable=differentiable))

    def _init_state(self, p, group):
        return {"step": self._step_tensor(p), "square_avg": self._zeros_like(p), "acc_delta": self._zeros_like(p)}

    def _update(self, p, grad, state, group):
        lr, rho, eps = group.lr_value(), group["rho"], group["eps"]
        g = -grad if group["maximize"] else grad
        state["step"].add_(1)
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        v, u = state["square_avg"], state["acc_delta"]
        v.copy_(v * rho + g * g * (1 - rho))
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u.copy_(u * rho + delta * delta * (1 - rho))
        p.sub_(delta * lr)
