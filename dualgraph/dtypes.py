"""dtype names users may pass: numpy dtypes, their string names, and dg.float32-style aliases."""
import numpy as np

from .errors import DTypeError

float16 = half = np.dtype("float16")
float32 = float_ = np.dtype("float32")
float64 = double = np.dtype("float64")
int32 = np.dtype("int32")
int64 = long = np.dtype("int64")
bool_ = np.dtype("bool")
uint8 = np.dtype("uint8")
int8 = np.dtype("int8")

SUPPORTED = (float16, float32, float64, int32, int64, bool_, uint8, int8)
FLOATS = (float16, float32, float64)
DEFAULT_FLOAT = float32


def resolve(dtype):
    """Turn anything dtype-like into a numpy dtype that dualgraph supports (None passes through).

    Accepts numpy dtypes and scalar types, names ("float64", "torch.float32"), `dg.float32`,
    and Python's float/int/bool (float means the default float dtype, float32).
    """
    if dtype is None:
        return None
    if dtype is float:
        return DEFAULT_FLOAT
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
    if not isinstance(dtype, (np.dtype, type)):
        dtype = str(dtype).removeprefix("torch.")  # also accepts torch dtypes by name, without importing torch
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"{dtype!r} is not a dtype; use e.g. dg.float32, 'float64' or np.int64") from None
    if dt not in SUPPORTED:
        raise DTypeError(f"dtype {dt} is not supported; supported: {', '.join(str(d) for d in SUPPORTED)}")
    return dt


def is_floating(dt):
    return dt.kind == "f"
