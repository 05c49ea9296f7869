"""Operations that update Variables (assign, group), gradients, and TF1-style optimizers.

An Operation is a set of (Variable, new value) pairs; `sess.run(op)` computes every new value from
the variables' current values, then writes them all back (a simultaneous update).
"""
from ..errors import DualgraphError
from ..tensor import Tensor


class Operation:
    def __init__(self, updates=(), deps=(), name="op"):
        self.updates = list(updates)
        self.deps = list(deps)
        self.name = name

    def all_updates(self):
        out = list(self.updates)
        for d in self.deps:
            out.extend(d.all_updates())
        return out

    def __repr__(self):
        return f"<dg.static.Operation {self.name!r}: updates {[v.name for v, _ in self.all_updates()]}>"


def _graph_of(var):
    from .graph import Variable
    if not isinstance(var, Variable):
        raise DualgraphError(f"assign needs a dg.static.Variable, got {type(var).__name__}")
    return var.graph


def _on_graph(var, fn):
    from ..function.tracer import tracing
    with tracing(_graph_of(var).tracer):
        return fn()


def assign(var, value, name=None):
    """An op setting `var` to `value` when run."""
    from ..ops.shape import broadcast_to

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
    from .graph import _const
    import numpy as np
    return _const(var.graph, np.asarray(value, dtype=var.dtype))


def group(*ops, name="group"):
    return Operation(deps=[o for o in ops if o is not None], name=name)


def global_variables_initializer(graph=None):
    """An op resetting every Variable of the graph to its initial value."""
    from .graph import get_default_graph
    g = graph or get_default_graph()
    return group(*[v.initializer for v in g.variables], name="init")


def trainable_variables(graph=None):
    from .graph import get_default_graph
    g = graph or get_default_graph()
    return [v for v in g.variables if v.trainable]


def gradients(ys, xs, grad_ys=None):
    """Symbolic gradients of sum(ys) with respect to each of xs (None where ys do not depend on it)."""
    from ..function.tracer import tracing
    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    single = not isinstance(xs, (list, tuple))
    xs = [xs] if single else list(xs)
    graph = getattr(ys[0], "_owner", None)
    if graph is None:
        raise DualgraphError("gradients: ys must be tensors of a static graph")
    grad_ys = list(grad_ys) if isinstance(grad_ys, (list, tuple)) else [grad_ys] * len(ys)
    for x in xs:
        if not x.requires_grad:
            raise DualgraphError(f"gradients: {x!r} is not differentiable (a non-trainable Variable or an "
                                 f"integer placeholder)")
    with tracing(graph.tracer):
        diff = [(y, g) for y, g in zip(ys, grad_ys) if y.requires_grad]
        if not diff:
            return None if single else [None] * len(xs)
        grads = graph.tracer.run_backward([y for y, _ in diff], [g for _, g in diff], xs)
    return grads[0] if single else list(grads)


class Optimizer:
    def __init__(self, learning_rate):
        self.learning_rate = learning_rate

    def compute_gradients(self, loss, var_list=None):
        var_list = var_list if var_list is not None else trainable_variables(loss._owner)
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
        from .graph import Variable
        import numpy as np
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
        from .graph import Variable
        from ..ops.elementwise import sqrt
        import numpy as np
        t = Variable(np.zeros((), v.dtype), name=f"{v.name}/Adam_t", trainable=False, graph=v.graph)
        m = Variable(np.zeros(v.shape, v.dtype), name=f"{v.name}/Adam_m", trainable=False, graph=v.graph)
        s = Variable(np.zeros(v.shape, v.dtype), name=f"{v.name}/Adam_v", trainable=False, graph=v.graph)
        t1 = t + 1
        m1 = m * self.beta1 + g * (1 - self.beta1)
        s1 = s * self.beta2 + g * g * (1 - self.beta2)
        m_hat = m1 / (1 - self.beta1 ** t1)
        s_hat = s1 / (1 - self.beta2 ** t1)
        return [(t, t1), (m, m1), (s, s1), (v, v - self.learning_rate * m_hat / (sqrt(s_hat) + self.epsilon))]
