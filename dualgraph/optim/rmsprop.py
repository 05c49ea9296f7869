"""RMSprop (optionally centered, with momentum): PyTorch's formulas."""
from ..ops.elementwise import sqrt
from .optimizer import Optimizer, torch_flags


class RMSprop(Optimizer):
    """v = alpha v + (1-alpha) g^2;  avg = sqrt(v - mean_g^2 if centered else v) + eps;
    buf = momentum buf + g / avg and p -= lr buf (momentum > 0), else p -= lr g / avg."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        torch_flags(foreach, capturable, differentiable)
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if alpha < 0.0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def _init_state(self, p, group):
        state = {"step": self._step_tensor(p), "square_avg": self._zeros_like(p)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = self._zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = self._zeros_like(p)
        return state

    def _update(self, p, grad, state, group):
        lr, alpha, eps = group.lr_value(), group["alpha"], group["eps"]
        g = -grad if group["maximize"] else grad
        state["step"].add_(1)
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        v = state["square_avg"]
        v.copy_(v * alpha + g * g * (1 - alpha))
        if group["centered"]:
            ga = state["grad_avg"]
            ga.copy_(ga * alpha + g * (1 - alpha))
            avg = sqrt(v - ga * ga) + eps
        else:
            avg = sqrt(v) + eps
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf.copy_(buf * group.value("momentum") + g / avg)
            p.sub_(buf * lr)
        else:
            p.sub_(g / avg * lr)
