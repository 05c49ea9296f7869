"""tf.train: gradients, TF1-style optimizers with their update rules and defaults, the global step,
learning-rate decay, and Saver over dualgraph's safe checkpoint format."""
import os

import numpy as np

from ..dispatch import using
from ..ops.elementwise import sqrt
from ..ops.elementwise import floor as _floor
from ..serialization import load as _load, save as _save
from ..tensor import Tensor
from .graph import Operation, StaticGraphError, Variable, _on, get_default_graph


def group(*ops, name="group"):
    """One operation running all of `ops` (TF1's tf.group)."""
    return Operation(deps=[o for o in ops if o is not None], name=name)


def global_variables(graph=None):
    g = graph or get_default_graph()
    return list(g.variables)


def global_variables_initializer(graph=None):
    """An op setting every Variable of the graph to its initial value."""
    g = graph or get_default_graph()
    return group(*[v.initializer for v in g.variables], name="init")


def variables_initializer(var_list, name="init"):
    """An op setting each Variable of `var_list` to its initial value."""
    return group(*[v.initializer for v in var_list], name=name)


def trainable_variables(graph=None):
    g = graph or get_default_graph()
    return [v for v in g.variables if v.trainable]


def _graph_of_tensor(y):
    if isinstance(y, Variable):
        return y.graph
    if isinstance(y, Tensor) and y._symbolic and y._builder is not None:
        return y._builder.owner
    raise StaticGraphError(f"gradients: ys must be tensors of a static graph, got {type(y).__name__}")


def gradients(ys, xs, grad_ys=None, name="gradients", stop_gradients=None):
    """Symbolic gradients of sum(ys) with respect to each of xs (TF1's tf.gradients): a list with one
    entry per x, None where ys do not depend on it."""
    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    single_list = not isinstance(xs, (list, tuple))
    xs = [xs] if single_list else list(xs)
    g = _graph_of_tensor(ys[0])
    grad_ys = list(grad_ys) if isinstance(grad_ys, (list, tuple)) else [grad_ys] * len(ys)
    for x in xs:
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise StaticGraphError(f"gradients: {x!r} is not differentiable (a non-trainable Variable or an "
                                   f"integer placeholder)")
    with using(g.builder):
        diff = [(y, gy) for y, gy in zip(ys, grad_ys) if y.requires_grad]
        if not diff:
            return [None] * len(xs)
        grads = g.builder.grad([y for y, _ in diff], [gy for _, gy in diff], None, False, xs)
    return list(grads)


# ---- the global step and learning-rate schedules ----------------------------------------------------

def get_global_step(graph=None):
    """The graph's global step Variable, or None."""
    g = graph or get_default_graph()
    return g._var_store.get("global_step")


def create_global_step(graph=None):
    g = graph or get_default_graph()
    if "global_step" in g._var_store:
        raise StaticGraphError("create_global_step: the graph has a global step already")
    v = Variable(np.int64(0), trainable=False, name="global_step", graph=g)
    g._var_store["global_step"] = v
    return v


def get_or_create_global_step(graph=None):
    """The graph's int64 global step Variable (created at 0 the first time)."""
    step = get_global_step(graph)
    return step if step is not None else create_global_step(graph)


def exponential_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False, name=None):
    """learning_rate * decay_rate ** (global_step / decay_steps), floored when `staircase`: a graph node
    that follows the step as it changes."""
    g = global_step.graph if isinstance(global_step, Variable) else get_default_graph()

    def build():
        p = global_step.astype(np.float32) / float(decay_steps) if isinstance(global_step, Tensor) \
            else np.float32(global_step / decay_steps)
        if staircase:
            p = _floor(p)
        return learning_rate * float(decay_rate) ** p
    return _on(g, build)


# ---- optimizers ---------------------------------------------------------------------------------------

class Optimizer:
    """The TF1 optimizer interface: compute_gradients, apply_gradients, minimize."""

    def __init__(self, learning_rate, use_locking=False, name="Optimizer"):
        self.learning_rate = learning_rate
        self.name = name
        self._slots = {}

    def _lr(self, v):
        lr = self.learning_rate
        return lr.astype(v.dtype) if isinstance(lr, Tensor) and lr.dtype != v.dtype else lr

    def compute_gradients(self, loss, var_list=None, gate_gradients=1, aggregation_method=None,
                          colocate_gradients_with_ops=False, grad_loss=None):
        """[(gradient, variable)] for `var_list` (default: the graph's trainable Variables), gradient
        None for a variable the loss does not depend on."""
        g = _graph_of_tensor(loss)
        var_list = list(var_list) if var_list is not None else trainable_variables(g)
        if not var_list:
            raise StaticGraphError("compute_gradients: no variables to optimize")
        return list(zip(gradients(loss, var_list, grad_ys=grad_loss), var_list))

    def minimize(self, loss, global_step=None, var_list=None, gate_gradients=1, aggregation_method=None,
                 colocate_gradients_with_ops=False, name=None, grad_loss=None):
        """One operation: compute the gradients of `loss` and apply them (and add 1 to global_step)."""
        gv = self.compute_gradients(loss, var_list, grad_loss=grad_loss)
        if all(gr is None for gr, _ in gv):
            raise StaticGraphError(f"minimize: no gradients for any variable: the loss does not depend on "
                                   f"{[v.op_name for _, v in gv]}")
        return self.apply_gradients(gv, global_step=global_step, name=name)

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """One operation updating each variable from its gradient (pairs with gradient None are skipped)."""
        grads_and_vars = list(grads_and_vars)
        if not any(gr is not None for gr, _ in grads_and_vars):
            raise StaticGraphError("apply_gradients: no gradients provided for any variable")
        updates = []
        for gr, v in grads_and_vars:
            if gr is None:
                continue
            if not isinstance(v, Variable):
                raise StaticGraphError(f"apply_gradients: {v!r} is not a Variable")
            updates.extend(_on(v.graph, lambda gr=gr, v=v: self._update(gr, v)))
        if global_step is not None:
            updates.append((global_step, _on(global_step.graph, lambda: global_step + 1)))
        return Operation(updates, name=name or self.name)

    def _slot(self, v, slot, fill, shape=None):
        key = (id(v), slot)
        s = self._slots.get(key)
        if s is None:
            name = f"{v.op_name}/{self.name}_{slot}" if slot else f"{v.op_name}/{self.name}"
            s = Variable(np.full(v.shape if shape is None else shape, fill, v.dtype), trainable=False, name=name,
                         graph=v.graph)
            self._slots[key] = (v, s)
            return s
        return s[1]

    def get_slot(self, var, name):
        hit = self._slots.get((id(var), name))
        return hit[1] if hit else None

    def variables(self):
        return [s for _, s in self._slots.values()]


class GradientDescentOptimizer(Optimizer):
    """var -= learning_rate * grad."""

    def __init__(self, learning_rate, use_locking=False, name="GradientDescent"):
        super().__init__(learning_rate, use_locking, name)

    def _update(self, g, v):
        return [(v, v - self._lr(v) * g)]


class MomentumOptimizer(Optimizer):
    """accum = momentum * accum + grad; var -= lr * accum (with Nesterov: var -= lr * (grad + momentum * accum))."""

    def __init__(self, learning_rate, momentum, use_locking=False, name="Momentum", use_nesterov=False):
        super().__init__(learning_rate, use_locking, name)
        self.momentum, self.use_nesterov = momentum, use_nesterov

    def _update(self, g, v):
        accum = self._slot(v, "", 0)
        new_accum = accum * self.momentum + g
        step = (g + new_accum * self.momentum) if self.use_nesterov else new_accum
        return [(accum, new_accum), (v, v - self._lr(v) * step)]


class AdamOptimizer(Optimizer):
    """TF1's Adam: lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t); m = beta1 m + (1 - beta1) g;
    v = beta2 v + (1 - beta2) g^2; var -= lr_t * m / (sqrt(v) + epsilon). (Epsilon is added to
    sqrt(v), not to the bias-corrected sqrt(v_hat) as in PyTorch's Adam.)"""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, use_locking=False, name="Adam"):
        super().__init__(learning_rate, use_locking, name)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def _update(self, g, v):
        t = self._slot(v, "t", 0, shape=())   # the step count (TF1 keeps beta1^t, beta2^t instead)
        m = self._slot(v, "m", 0)
        s = self._slot(v, "v", 0)
        t1 = t + 1
        m1 = m * self.beta1 + g * (1 - self.beta1)
        s1 = s * self.beta2 + g * g * (1 - self.beta2)
        lr_t = self._lr(v) * sqrt(1 - self.beta2 ** t1) / (1 - self.beta1 ** t1)
        return [(t, t1), (m, m1), (s, s1), (v, v - lr_t * m1 / (sqrt(s1) + self.epsilon))]


class AdagradOptimizer(Optimizer):
    """accum += g^2 (accum starts at initial_accumulator_value); var -= lr * g / sqrt(accum)."""

    def __init__(self, learning_rate, initial_accumulator_value=0.1, use_locking=False, name="Adagrad"):
        if initial_accumulator_value <= 0:
            raise StaticGraphError(f"AdagradOptimizer: initial_accumulator_value must be positive, got "
                                   f"{initial_accumulator_value}")
        super().__init__(learning_rate, use_locking, name)
        self.initial_accumulator_value = initial_accumulator_value

    def _update(self, g, v):
        acc = self._slot(v, "", self.initial_accumulator_value)
        acc1 = acc + g * g
        return [(acc, acc1), (v, v - self._lr(v) * g / sqrt(acc1))]


class RMSPropOptimizer(Optimizer):
    """TF1's RMSProp: ms = decay ms + (1 - decay) g^2 (ms starts at ones); mom = momentum mom +
    lr g / sqrt(ms + epsilon) (centered: ms - mg^2 + epsilon, mg = decay mg + (1 - decay) g); var -= mom."""

    def __init__(self, learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10, use_locking=False, centered=False,
                 name="RMSProp"):
        super().__init__(learning_rate, use_locking, name)
        self.decay, self.momentum, self.epsilon, self.centered = decay, momentum, epsilon, centered

    def _update(self, g, v):
        ms = self._slot(v, "rms", 1)
        mom = self._slot(v, "momentum", 0)
        ms1 = ms * self.decay + g * g * (1 - self.decay)
        out = [(ms, ms1)]
        denom = ms1
        if self.centered:
            mg = self._slot(v, "mg", 0)
            mg1 = mg * self.decay + g * (1 - self.decay)
            out.append((mg, mg1))
            denom = ms1 - mg1 * mg1
        mom1 = mom * self.momentum + self._lr(v) * g / sqrt(denom + self.epsilon)
        return out + [(mom, mom1), (v, v - mom1)]


# ---- Saver ---------------------------------------------------------------------------------------------

class Saver:
    """Saves and restores Variables by name through dg.save / dg.load (dualgraph's checkpoint format,
    which never runs code from the file): not TensorFlow's checkpoint files."""

    def __init__(self, var_list=None, max_to_keep=5):
        if isinstance(var_list, dict):
            self._vars = dict(var_list)
        else:
            vs = list(var_list) if var_list is not None else global_variables()
            self._vars = {v.op_name: v for v in vs}
        self.max_to_keep = max_to_keep
        self.last_checkpoints = []

    def save(self, sess, save_path, global_step=None):
        """Write the variables' current values to `save_path` (with "-<step>" appended when global_step
        is given) and return the path written; the files of all but the newest `max_to_keep` saves
        are deleted (None or 0 keeps every file)."""
        if global_step is not None:
            step = global_step if isinstance(global_step, int) else int(sess.run(global_step))
            save_path = f"{save_path}-{step}"
        _save({name: np.array(v.numpy()) for name, v in self._vars.items()}, save_path)
        if save_path in self.last_checkpoints:
            self.last_checkpoints.remove(save_path)
        self.last_checkpoints.append(save_path)
        while self.max_to_keep and len(self.last_checkpoints) > self.max_to_keep:
            old = self.last_checkpoints.pop(0)
            if os.path.exists(old):
                os.remove(old)
        return save_path

    def restore(self, sess, save_path):
        """Set the variables from a file written by `save`; every variable must be there, with its shape."""
        state = _load(save_path)
        for name, v in self._vars.items():
            if name not in state:
                raise StaticGraphError(f"Saver.restore: {save_path} has no value for Variable {name!r}")
            arr = np.asarray(state[name].numpy() if isinstance(state[name], Tensor) else state[name])
            if tuple(arr.shape) != tuple(v.shape):
                raise StaticGraphError(f"Saver.restore: Variable {name!r} has shape {tuple(v.shape)}, the file "
                                       f"holds shape {arr.shape}")
            v.load(arr)


__all__ = ["GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer", "AdagradOptimizer", "RMSPropOptimizer",
           "Optimizer", "Saver", "exponential_decay", "get_global_step", "create_global_step",
           "get_or_create_global_step", "global_variables_initializer", "gradients"]
