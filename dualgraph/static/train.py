"""Operations that update Variables (assign, group), gradients, and TF1-style optimizers."""
import numpy as np

from ..dispatch import using
from ..errors import DualgraphError
from ..ops.elementwise import sqrt
from ..ops.shape import broadcast_to
from ..tensor import Tensor
from .graph import Operation, Variable, _const, get_default_graph


def _graph_of(var):
    if not isinstance(var, Variable):
        raise DualgraphError(f"assign needs a dg.static.Variable, got {type(var).__name__}")
    return var.graph


def _on_graph(var, fn):
    with using(_graph_of(var).builder):
        return fn()


def assign(var, value, name=None):
    """An op setting `var` to `value` when run."""
    def build():
        v = value if isinstance(value, Tensor) else _graph_const(var, value)
        if tuple(v.shape) != tuple(var.shape):
            v = broadcast_to(v, var.shape)
        return v.astype(var.dtype) if v.dtype != var.dtype else v

    return Operation([(var, _on_graph(var, build))], name=name or f"{var.name}/assign")


def assign_add(var, delta, name=None):
    return assign(var, _on_graph(var, lambda: var + delta), name=name or f"{var.name}/assign_add")


def assign_sub(var, delta, name=None):
    return assign(var, _on_graph(var, lambda: var - delta), name=name or f"{var.name}/assign_sub")


def _graph_const(var, value):
    return _const(var.graph, np.asarray(value, dtype=var.dtype))


def group(*ops, name="group"):
    return Operation(deps=[o for o in ops if o is not None], name=name)


def global_variables_initializer(graph=None):
    """An op resetting every Variable of the graph to its initial value."""
    g = graph or get_default_graph()
    return group(*[v.initializer for v in g.variables], name="init")


def trainable_variables(graph=None):
    g = graph or get_default_graph()
    return [v for v in g.variables if v.trainable]


def gradients(ys, xs, grad_ys=None):
    """Symbolic gradients of sum(ys) with respect to each of xs (None where ys do not depend on it)."""
    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    single = not isinstance(xs, (list, tuple))
    xs = [xs] if single else list(xs)
    builder = ys[0]._builder if isinstance(ys[0], Tensor) and ys[0]._symbolic else None
    if builder is None:
        raise DualgraphError("gradients: ys must be tensors of a static graph")
    grad_ys = list(grad_ys) if isinstance(grad_ys, (list, tuple)) else [grad_ys] * len(ys)
    for x in xs:
        if not x.requires_grad:
            raise DualgraphError(f"gradients: {x!r} is not differentiable (a non-trainable Variable or an "
                                 f"integer placeholder)")
    with using(builder):
        diff = [(y, g) for y, g in zip(ys, grad_ys) if y.requires_grad]
        if not diff:
            return None if single else [None] * len(xs)
        grads = builder.grad([y for y, _ in diff], [g for _, g in diff], None, False, xs)
    return grads[0] if single else list(grads)


class Optimizer:
    def __init__(self, learning_rate):
        self.learning_rate = learning_rate

    def compute_gradients(self, loss, var_list=None):
        var_list = var_list if var_list is not None else trainable_variables(loss._builder.owner)
        return list(zip(gradients(loss, var_list), var_list))

    def minimize(self, loss, var_list=None, name="minimize"):
        return self.apply_gradients(self.compute_gradients(loss, var_list), name=name)

    def apply_gradients(self, grads_and_vars, name="apply_gradients"):
        updates = []
        for g, v in grads_and_vars:
            if g is None:
                continue
            updates.extend(_on_graph(v, lambda g=g, v=v: self._update(g, v)))
        return Operation(updates, name=name)


class GradientDescentOptimizer(Optimizer):
    def _update(self, g, v):
        return [(v, v - self.learning_rate * g)]


class MomentumOptimizer(Optimizer):
    """TF1's momentum: accum = momentum * accum + g; var -= lr * accum (nesterov optional)."""

    def __init__(self, learning_rate, momentum, use_nesterov=False):
        super().__init__(learning_rate)
        self.momentum, self.use_nesterov = momentum, use_nesterov

    def _update(self, g, v):
        accum = Variable(np.zeros(v.shape, v.dtype), name=f"{v.name}/Momentum", trainable=False, graph=v.graph)
        new_accum = accum * self.momentum + g
        step = (g + new_accum * self.momentum) if self.use_nesterov else new_accum
        return [(accum, new_accum), (v, v - self.learning_rate * step)]


class AdamOptimizer(Optimizer):
    """Adam with TF1's defaults (epsilon 1e-8), bias-corrected through a step-count Variable."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
        super().__init__(learning_rate)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self._step = {}

    def _update(self, g, v):
        t = Variable(np.zeros((), v.dtype), name=f"{v.name}/Adam_t", trainable=False, graph=v.graph)
        m = Variable(np.zeros(v.shape, v.dtype), name=f"{v.name}/Adam_m", trainable=False, graph=v.graph)
        s = Variable(np.zeros(v.shape, v.dtype), name=f"{v.name}/Adam_v", trainable=False, graph=v.graph)
        t1 = t + 1
        m1 = m * self.beta1 + g * (1 - self.beta1)
        s1 = s * self.beta2 + g * g * (1 - self.beta2)
        m_hat = m1 / (1 - self.beta1 ** t1)
        s_hat = s1 / (1 - self.beta2 ** t1)
        return [(t, t1), (m, m1), (s, s1), (v, v - self.learning_rate * m_hat / (sqrt(s_hat) + self.epsilon))]
