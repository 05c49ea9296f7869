"""Gluon's Parameter and ParameterDict over dualgraph tensors.

A Parameter holds one Tensor (its `data()`), attached for gradients with its `grad_req`: 'write' (each
backward overwrites `grad()`), 'add' (backward adds to it; zero it with `zero_grad()`), 'null' (no
gradient). A shape with 0 in it is unknown until the first forward pass (deferred initialization)."""
import re
from collections import OrderedDict

from .. import dtypes as _dt
from ..autograd import no_grad
from ..backend import device as _device
from ..errors import DualgraphError, InvalidValue, ShapeError
from ..ops import creation as _cr
from ..tensor import Tensor
from . import init as _init
from ..serialization import save
from ..serialization import load


class ParameterError(DualgraphError, RuntimeError):
    """A Parameter used before it has data (never initialized, or initialized on another path)."""


class DeferredInitializationError(ParameterError):
    """A Parameter whose shape is known only after the first forward pass was read before that pass."""


_GRAD_REQS = ("write", "add", "null")


class Parameter:
    def __init__(self, name="weight", grad_req="write", shape=None, dtype="float32", lr_mult=1.0, wd_mult=1.0,
                 init=None, allow_deferred_init=False, differentiable=True, stype="default",
                 grad_stype="default"):
        self.name = name
        self._shape = None if shape is None else ((shape,) if isinstance(shape, int) else tuple(shape))
        self.dtype = _dt.resolve(dtype)
        self.lr_mult, self.wd_mult = lr_mult, wd_mult
        self.init = init
        self.allow_deferred_init = allow_deferred_init
        if grad_req not in _GRAD_REQS:
            raise InvalidValue(f"Parameter {name!r}: grad_req must be one of {_GRAD_REQS}, got {grad_req!r}")
        self._grad_req = grad_req if differentiable else "null"
        self._data = None
        self._attached_grad = None
        self._deferred = None     # (initializer, ctx) waiting for the shape
        self._ctx = None

    # ---- shape and state ------------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @shape.setter
    def shape(self, new):
        new = tuple(new)
        if self._shape is not None:
            if len(new) != len(self._shape) or any(o and o != n for o, n in zip(self._shape, new)):
                raise ShapeError(f"Parameter {self.name!r}: shape {new} is incompatible with its declared "
                                 f"shape {self._shape} (0 marks an unknown size)")
        self._shape = new

    def _shape_known(self):
        return self._shape is not None and all(d > 0 for d in self._shape)

    @property
    def grad_req(self):
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req):
        if req not in _GRAD_REQS:
            raise InvalidValue(f"Parameter {self.name!r}: grad_req must be one of {_GRAD_REQS}, got {req!r}")
        self._grad_req = req
        if self._data is not None:
            self._set_tensor(self._data)

    def __repr__(self):
        return f"Parameter {self.name} (shape={self._shape}, dtype={self.dtype})"

    # ---- initialization -------------------------------------------------------------------------
    def initialize(self, init=None, ctx=None, default_init=None, force_reinit=False):
        """Create and fill the data with `init`, else this parameter's own initializer, else
        `default_init` (Uniform(0.07)). With an unknown shape the work waits for the first forward."""
        if self._data is not None and not force_reinit:
            return
        if isinstance(ctx, (list, tuple)):
            ctx = ctx[0] if ctx else None
        chosen = _init.create(init) or _init.create(self.init) or _init.create(default_init) or _init.Uniform()
        if not self._shape_known():
            if not self.allow_deferred_init:
                raise ParameterError(f"cannot initialize Parameter {self.name!r}: its shape {self._shape} is "
                                     f"unknown and deferred initialization is not allowed for it")
            self._data, self._deferred = None, (chosen, ctx)
            return
        self._deferred = None
        self._create(chosen, ctx)

    def _create(self, initializer, ctx):
        dev = _device(ctx)
        t = _cr.zeros(self._shape, dtype=self.dtype, device=dev)
        initializer(self.name, t)
        self._set_tensor(t)

    def _set_tensor(self, t):
        t.attach_grad(self._grad_req)
        self._attached_grad = t._grad   # the zeros attach_grad made: no backward has written yet
        self._data = t
        self._ctx = t.device

    def _finish_deferred_init(self):
        if self._deferred is None:
            return
        if not self._shape_known():
            raise DeferredInitializationError(f"Parameter {self.name!r}: shape {self._shape} is still unknown")
        chosen, ctx = self._deferred
        self._deferred = None
        self._create(chosen, ctx)

    def _check(self):
        if self._data is not None:
            return self._data
        if self._deferred is not None:
            raise DeferredInitializationError(
                f"Parameter {self.name!r} has not been initialized yet because initialization was deferred. "
                f"Actual initialization happens during the first forward pass. Please pass one batch of data "
                f"through the network before accessing Parameters.")
        raise ParameterError(
            f"Parameter {self.name!r} has not been initialized. Note that you should initialize parameters "
            f"and create Trainer with Block.collect_params() instead of Block.params because the later "
            f"does not include Parameters of nested child Blocks")

    @property
    def initialized(self):
        return self._data is not None

    # ---- data and gradient ----------------------------------------------------------------------
    def data(self, ctx=None):
        """The parameter's array (the very tensor the network reads and the Trainer updates)."""
        return self._check()

    def list_data(self):
        return [self._check()]

    def grad(self, ctx=None):
        t = self._check()
        if self._grad_req == "null":
            raise ParameterError(f"Cannot get gradient array for Parameter {self.name!r} because "
                                 f"grad_req='null'")
        return t._grad

    def list_grad(self):
        return [self.grad()]

    def list_ctx(self):
        if self._data is None and self._deferred is not None:
            return [_device(self._deferred[1])]
        self._check()
        return [self._ctx]

    def set_data(self, data):
        """Replace the values (shape must match; an uninitialized parameter takes the data's shape)."""
        if not isinstance(data, Tensor):
            data = _cr.tensor(data, dtype=self.dtype)
        if self._data is None:
            self.shape = tuple(data.shape)
            self._deferred = None
            self._set_tensor(data.detach().astype(self.dtype).to(self._ctx or data.device).clone())
            return
        if tuple(data.shape) != tuple(self._data.shape):
            raise ShapeError(f"Parameter {self.name!r}.set_data: shape {tuple(data.shape)} does not match "
                             f"the parameter's {tuple(self._data.shape)}")
        with no_grad():
            self._data[...] = data.detach().astype(self._data.dtype)

    def zero_grad(self):
        """Set the gradient to 0 in place (what grad_req='add' needs between accumulations)."""
        if self._data is None or self._grad_req == "null":
            return
        g = self._data._grad
        if g is None:
            self._data._grad = _cr.zeros_like(self._data)
        else:
            with no_grad():
                g[...] = 0

    def reset_ctx(self, ctx):
        if isinstance(ctx, (list, tuple)):
            ctx = ctx[0]
        dev = _device(ctx)
        if self._data is not None:
            if self._data.device is not dev:
                self._set_tensor(self._data.detach().to(dev))
        elif self._deferred is not None:
            self._deferred = (self._deferred[0], dev)

    def cast(self, dtype):
        self.dtype = _dt.resolve(dtype)
        if self._data is not None:
            self._set_tensor(self._data.detach().astype(self.dtype))


class Constant(Parameter):
    """A parameter that never changes (grad_req='null'), initialized to `value`."""

    def __init__(self, name, value):
        value = value if isinstance(value, Tensor) else _cr.tensor(value, dtype="float32")
        super().__init__(name, grad_req="null", shape=tuple(value.shape), dtype=value.dtype,
                         init=_init.Constant(0.0))
        self.value = value

    def _create(self, initializer, ctx):
        self._set_tensor(self.value.detach().to(_device(ctx)).clone())


class ParameterDict:
    """An ordered name -> Parameter mapping with a prefix (what `Block.collect_params()` returns)."""

    def __init__(self, prefix="", shared=None):
        self._prefix = prefix
        self._params = OrderedDict()
        self._shared = shared

    @property
    def prefix(self):
        return self._prefix

    def __getitem__(self, key):
        return self._params[key]

    def __iter__(self):
        return iter(self._params)

    def __len__(self):
        return len(self._params)

    def __contains__(self, key):
        return key in self._params

    def keys(self):
        return self._params.keys()

    def values(self):
        return self._params.values()

    def items(self):
        return self._params.items()

    def __repr__(self):
        body = "\n".join(f"  {p!r}" for p in self._params.values())
        return f"{self._prefix} (\n{body}\n)" if body else f"{self._prefix} (\n)"

    def get(self, name, **kwargs):
        """The parameter `prefix + name`, created with `kwargs` (shape, init, grad_req, ...) if absent."""
        full = self._prefix + name
        p = self._params.get(full)
        if p is None and self._shared is not None and full in self._shared:
            p = self._shared[full]
            self._params[full] = p
        if p is None:
            p = Parameter(full, **kwargs)
            self._params[full] = p
        else:
            for k, v in kwargs.items():
                if k == "shape" and v is not None:
                    p.shape = (v,) if isinstance(v, int) else tuple(v)
                elif k == "init" and v is not None and p.init is None:
                    p.init = v
        return p

    def get_constant(self, name, value=None):
        full = self._prefix + name
        p = self._params.get(full)
        if p is None:
            if value is None:
                raise ParameterError(f"No constant named {full!r}; give its value to create it")
            p = self._params[full] = Constant(full, value)
        return p

    def update(self, other):
        for k, v in other.items():
            if k in self._params and self._params[k] is not v:
                raise ParameterError(f"Cannot update ParameterDict: two different Parameters are named {k!r}")
            self._params[k] = v

    def _select(self, select):
        if select is None:
            return self
        pattern = re.compile(select)
        out = ParameterDict(self._prefix)
        out._params.update((k, v) for k, v in self._params.items() if pattern.match(k))
        return out

    def initialize(self, init=None, ctx=None, verbose=False, force_reinit=False):
        default = _init.create(init) or _init.Uniform()
        for p in self._params.values():
            p.initialize(None, ctx, default, force_reinit=force_reinit)

    def zero_grad(self):
        for p in self._params.values():
            p.zero_grad()

    def reset_ctx(self, ctx):
        for p in self._params.values():
            p.reset_ctx(ctx)

    def setattr(self, name, value):
        """Set an attribute on every parameter: `setattr('grad_req', 'null')` freezes them all."""
        for p in self._params.values():
            setattr(p, name, value)

    def list_ctx(self):
        seen = []
        for p in self._params.values():
            for c in p.list_ctx():
                if c not in seen:
                    seen.append(c)
        return seen

    def save(self, filename, strip_prefix=""):
        out = {}
        for name, p in self._params.items():
            if strip_prefix and not name.startswith(strip_prefix):
                raise ParameterError(f"Prefix {strip_prefix!r} is to be striped before saving, but Parameter "
                                     f"{name!r} does not start with it")
            out[name[len(strip_prefix):]] = p.data().detach()
        save(out, filename)

    def load(self, filename, ctx=None, allow_missing=False, ignore_extra=False, restore_prefix=""):
        loaded = {restore_prefix + k: v for k, v in load(filename).items()}
        _load_into(dict(self._params), loaded, filename, allow_missing, ignore_extra, ctx)


def _load_into(params, loaded, filename, allow_missing, ignore_extra, ctx):
    """Copy `loaded` (name -> Tensor) into `params` (name -> Parameter) with Gluon's checks."""
    if not allow_missing:
        missing = [n for n in params if n not in loaded]
        if missing:
            raise ParameterError(f"Parameter {missing[0]!r} is missing in file {filename!r}, which contains "
                                 f"parameters {sorted(loaded)}. Set allow_missing=True to ignore missing "
                                 f"parameters.")
    if not ignore_extra:
        extra = [n for n in loaded if n not in params]
        if extra:
            raise ParameterError(f"Parameter {extra[0]!r} loaded from file {filename!r} is not present in this "
                                 f"network (its parameters are {sorted(params)}). Set ignore_extra=True to "
                                 f"ignore.")
    for name, value in loaded.items():
        p = params.get(name)
        if p is None:
            continue
        if p._data is None:
            if p._shape is not None:
                p.shape = tuple(value.shape)  # checks the known sizes
            p._shape = tuple(value.shape)
            if ctx is not None:
                p._ctx = _device(ctx[0] if isinstance(ctx, (list, tuple)) else ctx)
            p.set_data(value)
        else:
            p.set_data(value)
