"""Adam and AdamW (decoupled weight decay), with amsgrad: PyTorch's formulas.

Bias corrections are tensor ops on the in-place step count, so a compiled step keeps counting."""
from ..ops.elementwise import maximum, sqrt
from ..ops.optimizer import adam_update
from .optimizer import Optimizer, torch_flags


class Adam(Optimizer):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps).

    Adam's weight_decay adds weight_decay * p to the gradient (L2); AdamW decays the weights directly."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        torch_flags(foreach, capturable, differentiable, fused)
        if decoupled_weight_decay:
            self._decoupled = True  # PyTorch's Adam(decoupled_weight_decay=True) is AdamW
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _init_state(self, p, group):
        state = {"step": self._step_tensor(p), "exp_avg": self._zeros_like(p), "exp_avg_sq": self._zeros_like(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = self._zeros_like(p)
        return state

    def _update(self, p, grad, state, group):
        lr, (b1, b2), eps, wd = group.lr_value(), group.value("betas"), group["eps"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        step = state["step"]
        step.add_(1)
        if not group["amsgrad"]:
            # one op (one pass over the parameter) instead of about twenty
            new_p, new_m, new_v = adam_update(p.detach(), g, state["exp_avg"], state["exp_avg_sq"], step, lr, b1, b2,
                                              eps, wd, self._decoupled)
            state["exp_avg"].copy_(new_m)
            state["exp_avg_sq"].copy_(new_v)
            p.copy_(new_p)
            return
        if wd:
            if self._decoupled:
                p.mul_(1 - lr * wd)
            else:
                g = g + p * wd
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.copy_(m * b1 + g * (1 - b1))
        v.copy_(v * b2 + g * g * (1 - b2))
        # in float64, as PyTorch's Python arithmetic on the step count (and the same whether the betas
        # are floats or, in a compiled step, their float64 mirrors)
        t = step.astype("float64")
        bias1 = 1 - b1 ** t
        bias2_sqrt = sqrt(1 - b2 ** t)
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            vmax.copy_(maximum(vmax, v))
            v = vmax
        denom = sqrt(v) / bias2_sqrt.astype(p.dtype) + eps
        p.sub_(m / denom * (lr / bias1).astype(p.dtype))


class AdamW(Adam):
    """Adam with decoupled weight decay (p *= 1 - lr * weight_decay before the Adam step); default 0.01."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, foreach=foreach,
                         capturable=capturable, differentiable=differentiable, fused=fused)
