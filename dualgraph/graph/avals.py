"""Abstract values: what a graph (and tracing) knows about a value without its data.

Dims are ints, or `Dim` objects for sizes unknown until run time (a symbolic batch axis); products
and quotients of dims are `dualgraph.ops.dims` expressions, which are Dims too.
"""
import numpy as np


class Dim:
    """A named symbolic dimension. Equal only to itself."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


class Aval:
    """What tracing knows about a value: its shape and dtype."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"{_short(self.dtype)}[{','.join(str(d) for d in self.shape)}]"

    def __eq__(self, other):
        return isinstance(other, Aval) and self.shape == other.shape and self.dtype == other.dtype

    def __hash__(self):
        return hash((self.shape, self.dtype))


_SHORT = {"float16": "f16", "float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64",
          "bool": "bool", "uint8": "u8", "int8": "i8", "int16": "i16"}


def _short(dt):
    return _SHORT.get(str(dt), str(dt))
