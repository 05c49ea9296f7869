"""dtype names users may pass (numpy dtypes, their string names, dg.float32-style aliases), and the
one type-promotion rule every mode uses (eager forwards, tracing, fused kernels, ONNX export)."""
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
int16 = short = np.dtype("int16")  # what uint8 op int8 gives (PyTorch and numpy agree)

SUPPORTED = (float16, float32, float64, int32, int64, bool_, uint8, int8, int16)
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


# ---- type promotion (PyTorch's rule) ---------------------------------------------------------------
#
# Categories rank bool < integer < floating. Operands fall in three groups by priority: dimensioned
# tensors (ndim >= 1), 0-d tensors, Python scalars. Each group promotes within itself (a Python float
# counts as the default float dtype, an int as int64); a lower-priority group only matters when its
# category is higher than everything above it. So float32[n] * int64[n] is float32, float32[n] *
# float64[] is float32, int32[n] * float64[] is float64, int64[n] * 2.5 is float32 and uint8[n] + 300
# stays uint8. numpy differs (float32 * int64 -> float64; 0-d arrays promote like any array).

_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2}
_PY_SCALARS = (bool, int, float)


def category(dt):
    """0 for bool, 1 for integers, 2 for floats."""
    return _KIND_RANK[dt.kind]


def promote_types(a, b):
    """The dtype of an operation on two tensors of dtypes a and b in one priority group (PyTorch's
    torch.promote_types): the higher category wins outright, within a category the wider type."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    ca, cb = _KIND_RANK[a.kind], _KIND_RANK[b.kind]
    if ca != cb:
        return a if ca > cb else b
    return np.promote_types(a, b)


def _combine(higher, lower):
    """PyTorch's combine_categories: a lower-priority group's dtype matters only when its category is
    above the higher group's (or the higher group is bool, or empty)."""
    if higher is None:
        return lower
    if lower is None or higher.kind == "f":
        return higher
    if higher.kind == "b" or lower.kind == "f":
        return promote_types(higher, lower)
    return higher


def _scalar_dtype(x):
    if isinstance(x, bool):
        return bool_
    if isinstance(x, int):
        return int64
    return DEFAULT_FLOAT


_CACHE = {}


def result_type(*operands):
    """The dtype PyTorch's torch.result_type gives for these operands.

    An operand is a Python bool/int/float (weak), anything with `.dtype` and `.ndim` (a Tensor, an array,
    a tracing Aval; ndim 0 is a 0-d tensor), or None (skipped). A numpy scalar here is a 0-d tensor: it
    is what numpy returns for 0-d results inside graphs. (A numpy scalar a user passes as an operand is
    weak, as in PyTorch: the dispatcher and the tracer turn it into the Python number first.)
    """
    key = tuple(x.__class__ if x.__class__ in _PY_SCALARS else (x.dtype, x.ndim > 0)
                for x in operands if x is not None)
    dt = _CACHE.get(key)
    if dt is None:
        groups = [None, None, None]  # dimensioned, 0-d, Python scalars
        for k in key:
            if isinstance(k, tuple):
                g, d = (0 if k[1] else 1), np.dtype(k[0])
            else:
                g, d = 2, _scalar_dtype(k())
            groups[g] = promote_types(groups[g], d)
        dt = _combine(groups[0], _combine(groups[1], groups[2]))
        if dt is None:
            raise DTypeError("result_type: no operands")
        _CACHE[key] = dt
    return dt


def as_dtype(x, dt):
    """Operand `x` of a forward ready for a computation in dtype `dt`: an array is cast, a Python number
    stays a Python number (numpy 2 then takes `dt` from the array, which result_type guarantees has a
    category at least the number's)."""
    if x is None or x.__class__ in _PY_SCALARS or x.dtype == dt:
        return x
    return x.astype(dt)


def promote_operands(*xs):
    """(dtype, operands cast to it): the common computation dtype of a binary op's inputs and the inputs
    ready for one numpy/cupy call (the call then gives that dtype without promoting on its own)."""
    dt = result_type(*xs)
    return dt, tuple(as_dtype(x, dt) for x in xs)


def numpy_agrees(*operands):
    """True when calling a numpy ufunc directly on these operands gives result_type's dtype: every tensor
    operand already has one dtype and every Python number's category is at most that dtype's. Fast paths
    (the executor's direct calls, fused kernels) check this before skipping the op's forward."""
    dt = None
    scalars = []
    for x in operands:
        if x is None:
            continue
        if x.__class__ in _PY_SCALARS:
            scalars.append(x)
        elif dt is None:
            dt = x.dtype
        elif x.dtype != dt:
            return False
    if dt is None:
        return False
    rank = _KIND_RANK[dt.kind]
    return all(_KIND_RANK[_scalar_dtype(s).kind] <= rank for s in scalars)


def finfo(dtype=None):
    """torch.finfo: limits of a floating dtype (bits, eps, max, min, tiny, resolution); the default
    float dtype when none is given."""
    dt = DEFAULT_FLOAT if dtype is None else resolve(dtype)
    if dt not in FLOATS:
        raise DTypeError(f"finfo: {dt} is not a floating dtype; use dg.iinfo for integer dtypes")
    return np.finfo(dt)


def iinfo(dtype):
    """torch.iinfo: limits of an integer dtype (bits, max, min)."""
    dt = resolve(dtype)
    if dt.kind not in "iu":
        raise DTypeError(f"iinfo: {dt} is not an integer dtype; use dg.finfo for floating dtypes")
    return np.iinfo(dt)
