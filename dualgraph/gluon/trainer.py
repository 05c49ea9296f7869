"""Gluon's Trainer: applies an MXNet optimizer to a set of Parameters after backward."""
from ..errors import DualgraphError, InvalidValue
from . import optimizer as _opt
from .parameter import Parameter, ParameterDict
from ..serialization import save
from ..serialization import load


class StaleGradientError(DualgraphError, UserWarning):
    """A parameter's gradient was not written by a backward pass since the last step."""


class Trainer:
    """`Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-4})`;
    call `step(batch_size)` after `loss.backward()`: gradients are scaled by 1 / batch_size
    (rescale_grad), as in MXNet, so a summed per-sample loss gives the mean's update."""

    def __init__(self, params, optimizer, optimizer_params=None, kvstore="device", compression_params=None,
                 update_on_kvstore=None):
        if isinstance(params, (dict, ParameterDict)):
            params = list(params.values())
        if not isinstance(params, (list, tuple)):
            raise InvalidValue(f"First argument must be a list or dict of Parameters, got {type(params).__name__}")
        for p in params:
            if not isinstance(p, Parameter):
                raise InvalidValue(f"First argument must be a list or dict of Parameters, got list of "
                                   f"{type(p).__name__}")
        self._params = list(params)
        optimizer_params = dict(optimizer_params or {})
        self._scale = optimizer_params.get("rescale_grad", 1.0)
        param_dict = dict(enumerate(self._params))
        if isinstance(optimizer, _opt.Optimizer):
            if optimizer_params:
                raise InvalidValue("optimizer_params must be None if optimizer is an instance of Optimizer")
            self._optimizer = optimizer
            self._optimizer.param_dict = param_dict
        else:
            self._optimizer = _opt.create(optimizer, param_dict=param_dict, **optimizer_params)
        self._states = {}
        self._seen = {}     # index -> the gradient tensor the last step consumed

    @property
    def optimizer(self):
        return self._optimizer

    @property
    def learning_rate(self):
        return self._optimizer.learning_rate

    def set_learning_rate(self, lr):
        self._optimizer.set_learning_rate(lr)

    def step(self, batch_size, ignore_stale_grad=False):
        """One update of every parameter with grad_req != 'null', gradients scaled by scale / batch_size."""
        if not batch_size > 0:
            raise InvalidValue(f"Trainer.step: batch_size must be positive, got {batch_size}")
        self._optimizer.rescale_grad = self._scale / batch_size
        self._update(ignore_stale_grad)

    def update(self, batch_size, ignore_stale_grad=False):
        self.step(batch_size, ignore_stale_grad)

    def _update(self, ignore_stale_grad):
        todo = []
        for i, p in enumerate(self._params):
            if p.grad_req == "null":
                continue
            w = p.data()
            g = w._grad
            # backward always stores a new gradient tensor ('write' and 'add' alike), so the same object
            # as at the last step, or as attach_grad allocated, means no backward reached this parameter
            if g is None or g is self._seen.get(i, p._attached_grad):
                if not ignore_stale_grad:
                    raise StaleGradientError(
                        f"Gradient of Parameter `{p.name}` on context {w.device} has not been updated by "
                        f"backward since last `step`. This could mean a bug in your model that made it only "
                        f"use a subset of the Parameters (Blocks) for this iteration. If you are intentionally "
                        f"only using a subset, call step with ignore_stale_grad=True to suppress this warning "
                        f"and skip updating of Parameters with stale gradient")
                continue
            todo.append((i, w, g))
        for i, w, g in todo:
            if i not in self._states:
                self._states[i] = self._optimizer.create_state(i, w)
            self._optimizer.update(i, w, g, self._states[i])
            self._seen[i] = w._grad

    def save_states(self, fname):
        """Optimizer state (momentum buffers, Adam moments, update counts) through dg.save."""
        states = {str(i): (list(s) if isinstance(s, tuple) else ([] if s is None else [s]))
                  for i, s in self._states.items()}
        save({"states": states, "counts": {str(k): v for k, v in self._optimizer._counts.items()},
              "lr": self._optimizer.lr}, fname)

    def load_states(self, fname):
        obj = load(fname)
        for k, v in obj["states"].items():
            i = int(k)
            fresh = self._optimizer.create_state(i, self._params[i].data())
            if fresh is None:
                self._states[i] = None
            elif isinstance(fresh, tuple):
                self._states[i] = tuple(v)
            else:
                self._states[i] = v[0]
        self._optimizer._counts = {int(k): int(v) for k, v in obj["counts"].items()}
        self._optimizer.lr = obj["lr"]

