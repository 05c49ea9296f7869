"""Gluon's basic layers: Sequential containers, Dense, Dropout, BatchNorm, LayerNorm, Embedding,
Flatten, Activation, Lambda."""
import math

from ... import nd
from ...autograd import is_training
from ...errors import InvalidValue, ShapeError
from ..block import Block, HybridBlock


class Sequential(Block):
    """Runs its children in the order they were added: `net.add(nn.Dense(10), nn.Dense(2))`."""

    def add(self, *blocks):
        for b in blocks:
            self.register_child(b)

    def forward(self, x, *args):
        for block in self._children.values():
            x = block(x, *args)
            args = ()
            if isinstance(x, (tuple, list)):
                args, x = tuple(x[1:]), x[0]
        return (x,) + args if args else x

    def __getitem__(self, key):
        layers = list(self._children.values())[key]
        if not isinstance(key, slice):
            return layers
        net = type(self)(prefix=self._prefix)
        with net.name_scope():
            net.add(*layers)
        return net

    def __len__(self):
        return len(self._children)


class HybridSequential(HybridBlock):
    """Sequential that can be hybridized as a whole."""

    add = Sequential.add
    __getitem__ = Sequential.__getitem__
    __len__ = Sequential.__len__

    def forward(self, x, *args):
        return Sequential.forward(self, x, *args)


_ACTS = ("relu", "sigmoid", "tanh", "softrelu", "softsign")


class Activation(HybridBlock):
    """An activation by name: 'relu', 'sigmoid', 'tanh', 'softrelu' or 'softsign'."""

    def __init__(self, activation, **kwargs):
        if activation not in _ACTS:
            raise InvalidValue(f"Activation: unknown activation {activation!r}; use one of {_ACTS}")
        self._act_type = activation
        super().__init__(**kwargs)

    def _alias(self):
        return self._act_type

    def hybrid_forward(self, F, x):
        return F.Activation(x, act_type=self._act_type)

    def __repr__(self):
        return f"Activation({self._act_type})"


class LeakyReLU(HybridBlock):
    def __init__(self, alpha, **kwargs):
        if alpha < 0:
            raise InvalidValue(f"LeakyReLU: slope alpha must be >= 0, got {alpha}")
        self._alpha = alpha
        super().__init__(**kwargs)

    def hybrid_forward(self, F, x):
        return F.LeakyReLU(x, act_type="leaky", slope=self._alpha)

    def __repr__(self):
        return f"LeakyReLU({self._alpha})"


class Dense(HybridBlock):
    """out = activation(x @ weight.T + bias), weight of shape (units, in_units). in_units=0 leaves it to
    the first input; flatten=True folds every axis after the first into the input features, otherwise
    the product applies to the last axis."""

    def __init__(self, units, activation=None, use_bias=True, flatten=True, dtype="float32",
                 weight_initializer=None, bias_initializer="zeros", in_units=0, **kwargs):
        super().__init__(**kwargs)
        if activation is not None and activation not in _ACTS:
            raise InvalidValue(f"Dense: unknown activation {activation!r}; use one of {_ACTS}")
        self._units, self._in_units, self._flatten, self._act_name = units, in_units, flatten, activation
        self.weight = self.params.get("weight", shape=(units, in_units), init=weight_initializer, dtype=dtype,
                                      allow_deferred_init=True)
        self.bias = self.params.get("bias", shape=(units,), init=bias_initializer, dtype=dtype,
                                    allow_deferred_init=True) if use_bias else None

    def infer_shape(self, x, *args):
        in_units = math.prod(x.shape[1:]) if self._flatten else x.shape[-1]
        self.weight.shape = (self._units, int(in_units))

    def hybrid_forward(self, F, x, weight, bias=None):
        if self._flatten and x.ndim != 2:
            x = F.flatten(x)
        if x.shape[-1] != weight.shape[1]:
            raise ShapeError(f"Dense({self._units}): input has {x.shape[-1]} features (shape {tuple(x.shape)}) "
                             f"but the weight expects {weight.shape[1]} (weight shape {tuple(weight.shape)})")
        out = F.FullyConnected(x, weight, bias, no_bias=bias is None, num_hidden=self._units, flatten=False)
        return F.Activation(out, act_type=self._act_name) if self._act_name else out

    def __repr__(self):
        shape = self.weight.shape
        act = f"Activation({self._act_name})" if self._act_name else "linear"
        return f"Dense({shape[1] if shape[1] else None} -> {shape[0]}, {act})"


class Dropout(HybridBlock):
    """Zero each element with probability `rate` while training (inside autograd.record())."""

    def __init__(self, rate, axes=(), **kwargs):
        if not 0 <= rate <= 1:
            raise InvalidValue(f"Dropout: rate must be in [0, 1], got {rate}")
        super().__init__(**kwargs)
        self._rate, self._axes = rate, axes

    def hybrid_forward(self, F, x):
        if self._rate > 0 and is_training():
            return F.Dropout(x, p=self._rate)
        return x

    def __repr__(self):
        return f"Dropout(p = {self._rate}, axes={tuple(self._axes)})"


class BatchNorm(HybridBlock):
    """Normalize over every axis but `axis` (channels): batch statistics while training, updating
    running_mean/var as momentum * running + (1 - momentum) * batch (biased variance, as MXNet), the
    running statistics otherwise."""

    def __init__(self, axis=1, momentum=0.9, epsilon=1e-5, center=True, scale=True, use_global_stats=False,
                 beta_initializer="zeros", gamma_initializer="ones", running_mean_initializer="zeros",
                 running_variance_initializer="ones", in_channels=0, **kwargs):
        super().__init__(**kwargs)
        self._axis, self._momentum, self._eps = axis, momentum, epsilon
        self._use_global_stats = use_global_stats
        self.gamma = self.params.get("gamma", grad_req="write" if scale else "null", shape=(in_channels,),
                                     init=gamma_initializer, allow_deferred_init=True, differentiable=scale)
        self.beta = self.params.get("beta", grad_req="write" if center else "null", shape=(in_channels,),
                                    init=beta_initializer, allow_deferred_init=True, differentiable=center)
        self.running_mean = self.params.get("running_mean", grad_req="null", shape=(in_channels,),
                                            init=running_mean_initializer, allow_deferred_init=True,
                                            differentiable=False)
        self.running_var = self.params.get("running_var", grad_req="null", shape=(in_channels,),
                                           init=running_variance_initializer, allow_deferred_init=True,
                                           differentiable=False)

    def infer_shape(self, x, *args):
        c = x.shape[self._axis]
        for p in (self.gamma, self.beta, self.running_mean, self.running_var):
            p.shape = (c,)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        axis = self._axis % x.ndim
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        red = tuple(a for a in range(x.ndim) if a != axis)
        if is_training() and not self._use_global_stats:
            mean = x.mean(axis=red, keepdims=True)
            var = ((x - mean) * (x - mean)).mean(axis=red, keepdims=True)
            m = self._momentum
            running_mean.copy_(running_mean * m + mean.detach().reshape(-1) * (1 - m))
            running_var.copy_(running_var * m + var.detach().reshape(-1) * (1 - m))
        else:
            mean, var = running_mean.reshape(shape), running_var.reshape(shape)
        y = (x - mean) / (var + self._eps).sqrt()
        return y * gamma.reshape(shape) + beta.reshape(shape)

    def __repr__(self):
        c = self.gamma.shape[0] if self.gamma.shape and self.gamma.shape[0] else None
        return (f"BatchNorm(axis={self._axis}, eps={self._eps}, momentum={self._momentum}, "
                f"fix_gamma=False, use_global_stats={self._use_global_stats}, in_channels={c})")


class LayerNorm(HybridBlock):
    """Normalize over `axis` (the last by default) with learned gamma and beta."""

    def __init__(self, axis=-1, epsilon=1e-5, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", in_channels=0, **kwargs):
        super().__init__(**kwargs)
        self._axis, self._eps = axis, epsilon
        self.gamma = self.params.get("gamma", shape=(in_channels,), init=gamma_initializer,
                                     allow_deferred_init=True, differentiable=scale)
        self.beta = self.params.get("beta", shape=(in_channels,), init=beta_initializer,
                                    allow_deferred_init=True, differentiable=center)

    def infer_shape(self, x, *args):
        c = x.shape[self._axis]
        self.gamma.shape = (c,)
        self.beta.shape = (c,)

    def hybrid_forward(self, F, x, gamma, beta):
        axis = self._axis % x.ndim
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        mean = x.mean(axis=axis, keepdims=True)
        var = ((x - mean) * (x - mean)).mean(axis=axis, keepdims=True)
        return (x - mean) / (var + self._eps).sqrt() * gamma.reshape(shape) + beta.reshape(shape)


class Embedding(HybridBlock):
    """Rows of a (input_dim, output_dim) weight picked by integer (or integer-valued float) indices."""

    def __init__(self, input_dim, output_dim, dtype="float32", weight_initializer=None, sparse_grad=False,
                 **kwargs):
        super().__init__(**kwargs)
        self._input_dim, self._output_dim = input_dim, output_dim
        self.weight = self.params.get("weight", shape=(input_dim, output_dim), init=weight_initializer,
                                      dtype=dtype, allow_deferred_init=True)

    def hybrid_forward(self, F, x, weight):
        return F.take(weight, x, axis=0)

    def __repr__(self):
        return f"Embedding({self._input_dim} -> {self._output_dim}, {self.weight.dtype})"


class Flatten(HybridBlock):
    """(N, d1, ..., dk) -> (N, d1 * ... * dk)."""

    def hybrid_forward(self, F, x):
        return F.flatten(x)

    def __repr__(self):
        return "Flatten"


class Lambda(Block):
    """Wrap a function (or the name of an nd function) as a Block."""

    def __init__(self, function, prefix=None):
        super().__init__(prefix=prefix)
        if isinstance(function, str):
            if not hasattr(nd, function):
                raise InvalidValue(f"Lambda: nd has no function named {function!r}")
            function = getattr(nd, function)
        elif not callable(function):
            raise InvalidValue(f"Lambda: expected a function or a name, got {type(function).__name__}")
        self._func = function

    def forward(self, *args):
        return self._func(*args)

    def __repr__(self):
        return f"{type(self).__name__}({getattr(self._func, '__name__', self._func)})"


class HybridLambda(HybridBlock):
    """Wrap `function(F, x, ...)` (or the name of an nd function) as a HybridBlock."""

    def __init__(self, function, prefix=None):
        super().__init__(prefix=prefix)
        if isinstance(function, str):
            if not hasattr(nd, function):
                raise InvalidValue(f"HybridLambda: nd has no function named {function!r}")
            name = function
            self._func = lambda F, *args: getattr(F, name)(*args)
            self._func.__name__ = name
        elif callable(function):
            self._func = function
        else:
            raise InvalidValue(f"HybridLambda: expected a function or a name, got {type(function).__name__}")

    def hybrid_forward(self, F, x, *args):
        return self._func(F, x, *args)

    def __repr__(self):
        return f"{type(self).__name__}({getattr(self._func, '__name__', self._func)})"
