"""SGD with momentum, dampening, Nesterov and weight decay: PyTorch's formulas."""
from .optimizer import Optimizer, required, torch_flags


class SGD(Optimizer):
    """g = grad + weight_decay * p;  buf = momentum * buf + (1 - dampening) * g (buf = g at the first step);
    g = g + momentum * buf (nesterov) or buf;  p -= lr * g."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        torch_flags(foreach=foreach, differentiable=differentiable, fused=fused)
        if lr is not required and lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _init_state(self, p, group):
        if group["momentum"] == 0:
            return {}
        # PyTorch starts the buffer at the first gradient; a zero buffer plus a first-step flag keeps the
        # state shape fixed (so a compiled step can hold it) and gives the same numbers.
        return {"momentum_buffer": self._zeros_like(p), "step": self._step_tensor(p)}

    def _update(self, p, grad, state, group):
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        if group["momentum"]:
            if "momentum_buffer" not in state:   # momentum turned on after the state was made (a scheduler)
                state.update(momentum_buffer=self._zeros_like(p), step=self._step_tensor(p))
            momentum = group.value("momentum")    # a tensor while tracing: schedulers may cycle it
            buf, step = state["momentum_buffer"], state["step"]
            damp = group["dampening"]
            if damp:
                first = (step == 0).astype(g.dtype)          # 1 at the first step: buf = g undamped
                new = buf * momentum + g * (1 - damp) + first * (g * damp)
            else:
                new = buf * momentum + g
            buf.copy_(new)
            step.add_(1)
            g = g + buf * momentum if group["nesterov"] else buf
        p.sub_(g * group.lr_value())
