"""PyTorch's legacy tensor types (torch.FloatTensor, torch.LongTensor, ...) that older scripts still
call, and `Tensor.type()`: each type builds a CPU tensor of its dtype, from data or from sizes, and
`isinstance(t, dg.LongTensor)` asks for the dtype, as in PyTorch."""
import builtins

import numpy as np

from .dtypes import resolve
from .ops import creation as cr
from .ops import elementwise as ew
from .tensor import Tensor

_TYPES = {"FloatTensor": "float32", "DoubleTensor": "float64", "HalfTensor": "float16", "LongTensor": "int64",
          "IntTensor": "int32", "ShortTensor": "int16", "CharTensor": "int8", "ByteTensor": "uint8",
          "BoolTensor": "bool"}
_NAMES = {np.dtype(v): k for k, v in _TYPES.items()}


class _LegacyType(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype == cls.dtype and obj.device.type == "cpu"

    def __call__(cls, *args, device=None):
        # PyTorch's rule: ints (or one torch.Size / tuple of them) are sizes of an uninitialized tensor;
        # anything else (a list, an array, a tensor) is the data
        if not args:
            return cr.empty(0, dtype=cls.dtype, device=device)
        if builtins.all(isinstance(a, (int, np.integer)) for a in args):
            return cr.empty(*args, dtype=cls.dtype, device=device)
        if len(args) > 1:
            raise TypeError(f"{cls.__name__}(): expected sizes (ints) or one sequence of data, got {len(args)} "
                            f"arguments of types {', '.join(type(a).__name__ for a in args)}")
        if isinstance(args[0], tuple) and builtins.all(isinstance(a, (int, np.integer)) for a in args[0]):
            return cr.empty(*args[0], dtype=cls.dtype, device=device)
        return cr.tensor(args[0], dtype=cls.dtype, device=device)


def _make(name, dt):
    return _LegacyType(name, (), {"dtype": np.dtype(dt), "__module__": "dualgraph",
                                  "__doc__": f"PyTorch's legacy torch.{name}: a CPU tensor of {dt}."})


LEGACY = {name: _make(name, dt) for name, dt in _TYPES.items()}


def tensor_type(t, dtype=None, non_blocking=False, **kwargs):
    """t.type(): the legacy type name ('torch.FloatTensor', 'torch.cuda.LongTensor' on a GPU), as PyTorch
    prints it so scripts comparing it keep working; t.type(dtype) converts, dtype also a legacy type or
    its name."""
    if dtype is None:
        on_gpu = t.device.type != "cpu"
        return f"torch.{'cuda.' if on_gpu else ''}{_NAMES[np.dtype(t.dtype)]}"
    if isinstance(dtype, _LegacyType):
        dtype = dtype.dtype
    elif isinstance(dtype, str):
        name = dtype.removeprefix("torch.").removeprefix("cuda.")
        if name in _TYPES:
            dtype = _TYPES[name]
    return ew.astype(t, resolve(dtype))
