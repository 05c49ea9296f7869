"""TF1's initializers for get_variable: callables (shape, dtype) -> numpy array, drawn when the
variable is created."""
import math

import numpy as np

from ..backend import CPU
from ..ops import creation as _cr
from .graph import _tf_dtype, get_default_graph


def _rng(seed):
    if seed is None:
        return _cr.generator(CPU)
    return np.random.default_rng([int(get_default_graph().seed or 0), int(seed)])


class _Init:
    def __init__(self, dtype=np.float32):
        self.dtype = _tf_dtype(dtype)

    def _dtype(self, dtype):
        return _tf_dtype(dtype) or self.dtype


class zeros_initializer(_Init):
    def __call__(self, shape, dtype=None, partition_info=None):
        return np.zeros(shape, self._dtype(dtype))


class ones_initializer(_Init):
    def __call__(self, shape, dtype=None, partition_info=None):
        return np.ones(shape, self._dtype(dtype))


class constant_initializer(_Init):
    """Fills with `value` (a scalar, or values of the variable's size)."""

    def __init__(self, value=0, dtype=np.float32):
        super().__init__(dtype)
        self.value = np.asarray(value)

    def __call__(self, shape, dtype=None, partition_info=None):
        dt = self._dtype(dtype)
        if self.value.size == 1:
            return np.full(shape, self.value.reshape(()), dt)
        return self.value.astype(dt).reshape(shape)


class random_normal_initializer(_Init):
    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=np.float32):
        super().__init__(dtype)
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype=None, partition_info=None):
        return (_rng(self.seed).standard_normal(shape) * self.stddev + self.mean).astype(self._dtype(dtype))


class truncated_normal_initializer(random_normal_initializer):
    """Normal draws redrawn until within two standard deviations."""

    def __call__(self, shape, dtype=None, partition_info=None):
        rng = _rng(self.seed)
        out = rng.standard_normal(shape)
        bad = np.abs(out) > 2
        while bad.any():
            out[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(out) > 2
        return (out * self.stddev + self.mean).astype(self._dtype(dtype))


class random_uniform_initializer(_Init):
    def __init__(self, minval=0, maxval=None, seed=None, dtype=np.float32):
        super().__init__(dtype)
        self.minval, self.maxval, self.seed = minval, 1.0 if maxval is None else maxval, seed

    def __call__(self, shape, dtype=None, partition_info=None):
        return (_rng(self.seed).random(shape) * (self.maxval - self.minval) + self.minval).astype(self._dtype(dtype))


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * field, shape[-1] * field


class glorot_uniform_initializer(_Init):
    """Uniform on [-limit, limit], limit = sqrt(6 / (fan_in + fan_out)): get_variable's default."""

    def __init__(self, seed=None, dtype=np.float32):
        super().__init__(dtype)
        self.seed = seed

    def __call__(self, shape, dtype=None, partition_info=None):
        fan_in, fan_out = _fans(tuple(shape))
        limit = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
        return (_rng(self.seed).random(shape) * 2 * limit - limit).astype(self._dtype(dtype))


class glorot_normal_initializer(glorot_uniform_initializer):
    """Truncated normal with stddev sqrt(2 / (fan_in + fan_out)) / 0.8796 (the truncation's correction)."""

    def __call__(self, shape, dtype=None, partition_info=None):
        fan_in, fan_out = _fans(tuple(shape))
        std = math.sqrt(2.0 / max(1.0, fan_in + fan_out)) / 0.87962566103423978
        return truncated_normal_initializer(0.0, std, self.seed)(shape, self._dtype(dtype))


__all__ = ["zeros_initializer", "ones_initializer", "constant_initializer", "random_normal_initializer",
           "truncated_normal_initializer", "random_uniform_initializer", "glorot_uniform_initializer",
           "glorot_normal_initializer"]
