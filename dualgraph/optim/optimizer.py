"""The Optimizer base: parameter groups, zero_grad, state_dict/load_state_dict (PyTorch's API).

Updates are dualgraph ops run under no_grad and written into the parameters with in-place tensor
methods, and all per-parameter state (momentum buffers, Adam moments, the step count) lives in
dualgraph tensors updated in place. Nothing in an update reads a tensor back into Python, so an
optimizer step can be traced into a compiled training step: the tracer sees reads and in-place
writes of state tensors.

Hyperparameters are Python floats in `param_groups`. The ones schedulers change while training (the
learning rate; 'momentum' and 'betas', which OneCycleLR and CyclicLR cycle) are also mirrored into 0-d
tensors per group (`_ParamGroup`, kept in sync whenever such a key is set), and a traced step reads
those tensors, so a compiled training step follows the schedule instead of freezing the values it saw
when it was traced. Other hyperparameters are frozen into a trace.
"""
from .._state import STATE
from ..autograd import enable_grad, no_grad
from ..ops.creation import zeros
from ..nn.utils import zero_grads
from ..tensor import Tensor


class _ParamGroup(dict):
    """A parameter group: a dict whose 'lr' is mirrored in the 0-d tensor `lr_tensor`, and 'momentum' and
    'betas' in float64 0-d tensors (see the module doc)."""

    __slots__ = ("lr_tensor", "_mirrors")
    _MIRRORED = ("momentum", "betas")

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, value)
        if key == "lr":
            self._sync_lr()
        elif key in self._MIRRORED:
            self._sync(key)

    def _sync_all(self):
        self._sync_lr()
        for key in self._MIRRORED:
            self._sync(key)

    def _sync(self, key):
        value = dict.get(self, key)
        mirrors = getattr(self, "_mirrors", None)
        if mirrors is None:
            mirrors = self._mirrors = {}
        if value is None or isinstance(value, Tensor):
            mirrors.pop(key, None)
            return
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        current = mirrors.get(key)
        device = _device_of(self)
        if current is None or len(current) != len(values) or current[0].device is not (device or current[0].device):
            current = mirrors[key] = tuple(zeros((), dtype="float64", device=device) for _ in values)
        with no_grad():
            for t, v in zip(current, values):
                t.fill_(float(v))

    def value(self, key):
        """A scheduled hyperparameter ('momentum', 'betas'): the Python value eagerly, the mirrored
        tensor(s) while tracing."""
        if STATE.mode.symbolic:
            mirror = getattr(self, "_mirrors", {}).get(key)
            if mirror is not None:
                return mirror if isinstance(self[key], (tuple, list)) else mirror[0]
        return self[key]

    def _sync_lr(self):
        lr = dict.get(self, "lr")
        if isinstance(lr, Tensor):  # a tensor learning rate (as PyTorch allows) is used as it is
            self.lr_tensor = lr
            return
        current = getattr(self, "lr_tensor", None)
        if current is None or current.device is not _device_of(self):
            params = dict.get(self, "params") or []
            device = params[0].device if params else None
            self.lr_tensor = zeros((), dtype="float32", device=device)
        with no_grad():
            self.lr_tensor.fill_(float(lr))

    def lr_value(self):
        """What an update multiplies by: the float eagerly, the mirrored tensor while tracing."""
        return self.lr_tensor if STATE.mode.symbolic else self["lr"]


def _device_of(group):
    params = dict.get(group, "params") or []
    return params[0].device if params else None

__all__ = ["Optimizer", "required"]


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


def torch_flags(foreach=None, capturable=False, differentiable=False, fused=None):
    """PyTorch's implementation switches, accepted so ported code runs: dualgraph has one update path
    (its state is always 'capturable'), so they change nothing; differentiable=True is not supported."""
    if differentiable:
        raise NotImplementedError("differentiable=True (backpropagating through the optimizer step) is not "
                                  "supported: dualgraph optimizers update under no_grad")


class Optimizer:
    # per-parameter state entries that are 0-d float32 tensors, not tensors shaped like the parameter
    _scalar_state = ("step",)

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}          # param -> dict of state tensors
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got a Tensor; pass model.parameters() or [tensor]")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group):
        """Add a dict {'params': [...], hyperparameter: value, ...}; missing values come from defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        group = _ParamGroup(param_group)  # a copy: never change the caller's dict
        params = group.get("params")
        if params is None:
            raise ValueError("a param group needs a 'params' entry")
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (one computed from others); "
                                 "optimize the leaf parameters instead")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            group.setdefault(name, default)
        group._sync_all()
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group (or twice in one)")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient: set it to None (default) or fill it with zeros."""
        for group in self.param_groups:
            zero_grads(group["params"], set_to_none)

    def step(self, closure=None):
        """One update of every parameter that has a gradient; `closure` re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state.get(p)
                    if state is None:
                        state = self.state[p] = self._init_state(p, group)
                    self._update(p, p.grad, state, group)
        return loss

    def init_state(self):
        """Create the state of every parameter now (step() otherwise does it at the first update).

        Call it before compiling a training step so the state exists as concrete tensors."""
        for group in self.param_groups:
            for p in group["params"]:
                if p not in self.state:
                    self.state[p] = self._init_state(p, group)
        return self

    # subclasses implement these two
    def _init_state(self, p, group):
        return {}

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    @staticmethod
    def _zeros_like(p):
        return zeros(*p.shape, dtype=p.dtype, device=p.device)

    @staticmethod
    def _step_tensor(p):
        """The step count: a 0-d float32 tensor updated in place (so a compiled step does not freeze it)."""
        return zeros((), dtype="float32", device=p.device)

    # ---- state dicts ------------------------------------------------------------------------
    def state_dict(self):
        """{'state': {index: {name: tensor}}, 'param_groups': [{..., 'params': [index, ...]}]}.

        Parameters are numbered in group order, as in PyTorch, so the dict can be saved with
        dg.save and loaded into an optimizer built over a fresh model. Tensors are copies."""
        index, groups = {}, []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: v.clone() if isinstance(v, Tensor) else v
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore state and hyperparameters saved by state_dict() (checked before anything changes)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        for i, (saved, own) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(f"loaded state dict has a parameter group ({i}) of {len(saved['params'])} "
                                 f"parameters, this optimizer's has {len(own['params'])}")
        by_index = {}
        for saved, own in zip(groups, self.param_groups):
            for i, p in zip(saved["params"], own["params"]):
                by_index[i] = p
        new_state = {}
        for key, st in state_dict["state"].items():
            i = int(key)  # JSON-like checkpoints may have turned keys into strings
            if i not in by_index:
                raise ValueError(f"loaded optimizer state refers to parameter {i}, which does not exist")
            p = by_index[i]
            entry = {}
            for name, value in st.items():
                if isinstance(value, Tensor) or hasattr(value, "shape"):
                    t = Tensor(value, device=p.device)  # a copy on the parameter's device
                    if name not in self._scalar_state and t.shape != p.shape:
                        raise ValueError(f"loaded state {name!r} of parameter {i} has shape {tuple(t.shape)}, "
                                         f"the parameter has shape {tuple(p.shape)}")
                    if t.dtype.kind == "f" and name not in self._scalar_state:
                        t = t.astype(p.dtype)
                    value = t
                entry[name] = value
            new_state[p] = entry
        self.state = new_state
        for saved, own in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    own[k] = v

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        return "\n".join(lines) + "\n)"
