"""MXNet's initializers (`from dualgraph import init`; `net.initialize(init.Xavier())`).

Each fills a parameter's array in place from dualgraph's seeded generator (dg.manual_seed). As in
Gluon, a parameter's own initializer (Dense's bias_initializer='zeros') wins over the one given to
`initialize`, which applies to every other parameter whatever its name."""
import json
import math

from ..autograd import no_grad
from ..errors import InvalidValue, ShapeError
from ..ops import creation as _cr

__all__ = ["Initializer", "Uniform", "Normal", "Xavier", "MSRAPrelu", "Zero", "One", "Constant", "create"]


class Initializer:
    """Base class: subclasses define `_init_weight(name, arr)` that fills `arr` (a Tensor) in place."""

    def __call__(self, desc, arr):
        with no_grad():
            self._init_weight(str(desc), arr)

    def _init_weight(self, name, arr):
        raise InvalidValue(f"{type(self).__name__} does not define _init_weight; subclass Initializer and "
                           f"define it to fill the array")

    def dumps(self):
        """MXNet's JSON form: '["xavier", {"rnd_type": "uniform", ...}]'."""
        return json.dumps([type(self).__name__.lower(), self.__dict__])

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({args})"


def _fill(arr, values):
    arr[...] = values.astype(arr.dtype)


class Uniform(Initializer):
    """U(-scale, scale); Gluon's default initializer with scale 0.07."""

    def __init__(self, scale=0.07):
        self.scale = scale

    def _init_weight(self, name, arr):
        _fill(arr, _cr.rand(*arr.shape, device=arr.device) * (2 * self.scale) - self.scale)


class Normal(Initializer):
    """N(0, sigma^2)."""

    def __init__(self, sigma=0.01):
        self.sigma = sigma

    def _init_weight(self, name, arr):
        _fill(arr, _cr.randn(*arr.shape, device=arr.device) * self.sigma)


class Constant(Initializer):
    def __init__(self, value):
        self.value = value

    def _init_weight(self, name, arr):
        arr[...] = self.value


class Zero(Constant):
    def __init__(self):
        super().__init__(0.0)


class One(Constant):
    def __init__(self):
        super().__init__(1.0)


class Xavier(Initializer):
    """scale = sqrt(magnitude / factor) where factor is fan_in, fan_out or their mean ('avg'); then
    U(-scale, scale) (rnd_type='uniform') or N(0, scale^2) ('gaussian'). fan_in = shape[1] * prod(shape[2:]),
    fan_out = shape[0] * prod(shape[2:]), as MXNet computes them for a (out, in, kh, kw) weight."""

    def __init__(self, rnd_type="uniform", factor_type="avg", magnitude=3):
        if rnd_type not in ("uniform", "gaussian"):
            raise InvalidValue(f"Xavier: rnd_type must be 'uniform' or 'gaussian', got {rnd_type!r}")
        if factor_type not in ("avg", "in", "out"):
            raise InvalidValue(f"Xavier: factor_type must be 'avg', 'in' or 'out', got {factor_type!r}")
        self.rnd_type, self.factor_type, self.magnitude = rnd_type, factor_type, float(magnitude)

    def _init_weight(self, name, arr):
        shape = tuple(arr.shape)
        if len(shape) < 2:
            raise ShapeError(f"Xavier initializer cannot be applied to vector {name} of shape {shape}: it "
                             f"needs at least 2 dimensions")
        hw = math.prod(shape[2:])
        fan_in, fan_out = shape[1] * hw, shape[0] * hw
        factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}[self.factor_type]
        scale = math.sqrt(self.magnitude / factor)
        if self.rnd_type == "uniform":
            _fill(arr, _cr.rand(*shape, device=arr.device) * (2 * scale) - scale)
        else:
            _fill(arr, _cr.randn(*shape, device=arr.device) * scale)


class MSRAPrelu(Xavier):
    """He initialization: Xavier('gaussian', factor_type, magnitude=2 / (1 + slope^2))."""

    def __init__(self, factor_type="avg", slope=0.25):
        super().__init__("gaussian", factor_type, 2.0 / (1 + slope ** 2))


_NAMES = {"uniform": Uniform, "normal": Normal, "xavier": Xavier, "msraprelu": MSRAPrelu, "zeros": Zero,
          "zero": Zero, "ones": One, "one": One, "constant": Constant}


def create(init):
    """An Initializer from an instance, a name ('zeros', 'ones', 'uniform', 'normal', 'xavier') or None."""
    if init is None or isinstance(init, Initializer):
        return init
    if isinstance(init, str) and init.lower() in _NAMES:
        return _NAMES[init.lower()]()
    raise InvalidValue(f"unknown initializer {init!r}; use an Initializer or one of {sorted(_NAMES)}")
