"""MXNet 1.x's optimizers (`mx.optimizer`), with MXNet's update rules, which differ from PyTorch's:

- SGD:     g = clip(rescale_grad * grad) ; mom = momentum * mom - lr * (g + wd * w) ; w += mom
           (without momentum w -= lr * (g + wd * w)). The learning rate sits inside the momentum buffer,
           so changing it mid-run weighs old and new steps differently from torch.optim.SGD.
- NAG:     g = clip(rescale_grad * grad) + wd * w ; mom = momentum * mom + g ; w -= lr * (g + momentum * mom)
- Adam:    g = clip(rescale_grad * grad + wd * w) ; m, v as usual ;
           w -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)
           (epsilon is not bias-corrected: PyTorch adds eps * sqrt(1 - beta2^t) in effect).
- RMSProp: g = clip(rescale_grad * grad + wd * w) ; n = gamma1 * n + (1 - gamma1) g^2 ;
           w -= lr * g / sqrt(n + epsilon) (epsilon inside the root, unlike torch.optim.RMSprop);
           centered=True follows Graves (2013) with momentum gamma2.
Per-parameter `lr_mult` and `wd_mult` scale lr and wd. Updates run in place under no_grad.
"""
import math

from ..autograd import no_grad
from ..errors import InvalidValue
from ..ops import creation as _cr
from ..ops import elementwise as _ew


class Optimizer:
    def __init__(self, rescale_grad=1.0, param_idx2name=None, wd=0.0, clip_gradient=None, learning_rate=0.01,
                 lr_scheduler=None, sym=None, begin_num_update=0, multi_precision=False, param_dict=None):
        self.rescale_grad = rescale_grad
        self.wd = wd
        self.clip_gradient = clip_gradient
        self.lr = learning_rate
        self.lr_scheduler = lr_scheduler
        if lr_scheduler is not None:
            lr_scheduler.base_lr = learning_rate
            if hasattr(lr_scheduler, "base_lr_orig"):
                lr_scheduler.base_lr_orig = learning_rate
            lr_scheduler.warmup_final_lr = learning_rate
        self.num_update = begin_num_update
        self.param_dict = param_dict or {}
        self._counts = {}

    @property
    def learning_rate(self):
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    @learning_rate.setter
    def learning_rate(self, lr):
        self.set_learning_rate(lr)

    def set_learning_rate(self, lr):
        if self.lr_scheduler is not None:
            raise InvalidValue("set_learning_rate: this optimizer has an lr_scheduler, which decides the "
                               "learning rate")
        self.lr = lr

    def create_state(self, index, weight):
        return None

    def _prep(self, index, weight, grad):
        self._counts[index] = self._counts.get(index, 0) + 1
        self.num_update = max(self.num_update, self._counts[index])
        p = self.param_dict.get(index)
        lr = self.learning_rate * (p.lr_mult if p is not None else 1.0)
        wd = self.wd * (p.wd_mult if p is not None else 1.0)
        return lr, wd, grad * self.rescale_grad

    def _clip(self, g):
        if self.clip_gradient is not None and self.clip_gradient > 0:
            return _ew.clip(g, -self.clip_gradient, self.clip_gradient)
        return g

    def _clipped_with_decay(self, g, weight, wd):
        """MXNet's SGD/NAG gradient: clipped, then the weight decay added (wd * weight)."""
        g = self._clip(g)
        return g + weight * wd if wd else g

    def update(self, index, weight, grad, state):
        with no_grad():
            self._update(index, weight, grad, state)


def _zeros(w):
    return _cr.zeros_like(w)


class SGD(Optimizer):
    def __init__(self, momentum=0.0, lazy_update=True, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def create_state(self, index, weight):
        return _zeros(weight) if self.momentum else None

    def _update(self, index, weight, grad, state):
        lr, wd, g = self._prep(index, weight, grad)
        step = self._clipped_with_decay(g, weight, wd)
        if state is None:
            weight.sub_(step * lr)
        else:
            state.copy_(state * self.momentum - step * lr)
            weight.add_(state)


class NAG(SGD):
    """SGD with Nesterov momentum (MXNet's rule: the step looks ahead along the momentum)."""

    def _update(self, index, weight, grad, state):
        lr, wd, g = self._prep(index, weight, grad)
        g = self._clipped_with_decay(g, weight, wd)
        if state is None:
            weight.sub_(g * lr)
        else:
            state.copy_(state * self.momentum + g)
            weight.sub_((g + state * self.momentum) * lr)


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, lazy_update=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        return (_zeros(weight), _zeros(weight))

    def _update(self, index, weight, grad, state):
        lr, wd, g = self._prep(index, weight, grad)
        t = self._counts[index]
        lr = lr * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        g = self._clip(g + weight * wd if wd else g)
        m, v = state
        m.copy_(m * self.beta1 + g * (1.0 - self.beta1))
        v.copy_(v * self.beta2 + g * g * (1.0 - self.beta2))
        weight.sub_(m / (v.sqrt() + self.epsilon) * lr)


class RMSProp(Optimizer):
    def __init__(self, learning_rate=0.001, gamma1=0.9, gamma2=0.9, epsilon=1e-8, centered=False,
                 clip_weights=None, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.gamma1, self.gamma2, self.epsilon = gamma1, gamma2, epsilon
        self.centered, self.clip_weights = centered, clip_weights

    def create_state(self, index, weight):
        if self.centered:
            return (_zeros(weight), _zeros(weight), _zeros(weight))
        return (_zeros(weight),)

    def _update(self, index, weight, grad, state):
        lr, wd, g = self._prep(index, weight, grad)
        g = self._clip(g + weight * wd if wd else g)
        n = state[0]
        n.copy_(n * self.gamma1 + g * g * (1.0 - self.gamma1))
        if self.centered:
            gbar, delta = state[1], state[2]
            gbar.copy_(gbar * self.gamma1 + g * (1.0 - self.gamma1))
            delta.copy_(delta * self.gamma2 - g / (n - gbar * gbar + self.epsilon).sqrt() * lr)
            weight.add_(delta)
        else:
            weight.sub_(g / (n + self.epsilon).sqrt() * lr)
        if self.clip_weights:
            weight.copy_(_ew.clip(weight, -self.clip_weights, self.clip_weights))


_REGISTRY = {"sgd": SGD, "nag": NAG, "adam": Adam, "rmsprop": RMSProp}


def create(name, **kwargs):
    """An optimizer by (case-insensitive) name: 'sgd', 'nag', 'adam', 'rmsprop'."""
    cls = _REGISTRY.get(str(name).lower())
    if cls is None:
        raise InvalidValue(f"Cannot find optimizer {name!r}; dualgraph's gluon has {sorted(_REGISTRY)}")
    return cls(**kwargs)


def register(cls):
    _REGISTRY[cls.__name__.lower()] = cls
    return cls
