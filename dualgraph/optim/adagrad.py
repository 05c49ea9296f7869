"""Adagrad: PyTorch's formulas and defaults (lr=1e-2, lr_decay=0, eps=1e-10), state made at construction."""
from ..ops.elementwise import sqrt
from .optimizer import Optimizer, torch_flags


class Adagrad(Optimizer):
    """sum += g^2;  p -= lr / (1 + (step - 1) lr_decay) * g / (sqrt(sum) + eps).

    As in PyTorch, every parameter's state (sum = initial_accumulator_value, step = 0) exists from the
    constructor on, so state_dict() is complete before the first step. Gradients are dense: a sparse
    gradient (PyTorch's Embedding(sparse=True)) does not exist in dualgraph."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        torch_flags(foreach, False, differentiable, fused)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, fused=fused))
        self.init_state()

    def _init_state(self, p, group):
        s = self._zeros_like(p)
        if group["initial_accumulator_value"]:
            s.fill_(group["initial_accumulator_value"])
        return {"step": self._step_tensor(p), "sum": s}

    def _update(self, p, grad, state, group):
        g = -grad if group["maximize"] else grad
        step = state["step"]
        step.add_(1)
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        s = state["sum"]
        s.copy_(s + g * g)
        update = g / (sqrt(s) + group["eps"])
        if group["lr_decay"]:
            # the decayed rate from the in-place step count (float64, as PyTorch's Python arithmetic)
            clr = group.lr_value() / (1 + (step.astype("float64") - 1) * group["lr_decay"])
            p.sub_(update * clr.astype(p.dtype))
        else:
            p.sub_(update * group.lr_value())
