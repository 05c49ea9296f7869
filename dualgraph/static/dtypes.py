"""TF1's dtype names (tf.float32, ...), as the numpy dtypes dualgraph uses. No tf.string: dualgraph
tensors hold numbers and booleans only."""
import numpy as np

from .. import dtypes as _dt

float16 = half = _dt.float16
float32 = _dt.float32
float64 = double = _dt.float64
int8 = _dt.int8
int16 = _dt.int16
int32 = _dt.int32
int64 = _dt.int64
uint8 = _dt.uint8
bool = np.dtype("bool")  # noqa: A001  (TF1's name)


def as_dtype(type_value):
    """The dtype for a dtype, its name or a numpy type (TF1's tf.as_dtype)."""
    from .graph import _tf_dtype  # noqa: PLC0415  (graph imports the package's dtypes, not this module)
    return _tf_dtype(type_value)


__all__ = ["float16", "half", "float32", "float64", "double", "int8", "int16", "int32", "int64", "uint8", "bool",
           "as_dtype"]
