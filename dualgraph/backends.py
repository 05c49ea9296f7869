"""`dg.backends`: the flags PyTorch scripts set on `torch.backends`, as attributes with PyTorch's defaults.

dualgraph computes on numpy (CPU) and cupy (GPU). It never calls cuDNN, MPS or oneDNN, and cupy's
float32 matmuls do not use TF32 unless the CUPY_TF32 environment variable says so before cupy is
imported. So the flags are kept and read back, and scripts that set them run, but they change nothing:

* `cudnn.enabled`, `cudnn.benchmark`, `cudnn.deterministic`, `cudnn.allow_tf32`: no effect (no cuDNN).
* `cuda.matmul.allow_tf32` and the reduced-precision flags: no effect.
* `mps.is_available()`, `mps.is_built()`, `cudnn.is_available()`, `mkldnn.is_available()`: False.

What does change results is `dg.use_deterministic_algorithms(True)`: on a GPU the ops that accumulate
with atomics (scatter_add, the backward of indexing and embedding) then raise instead of running with a
run-to-run varying summation order; on the CPU every op is deterministic already.
"""
import contextlib

from . import backend as _backend
from .errors import InvalidValue

__all__ = ["cudnn", "cuda", "mps", "mkldnn"]


class _Flags:
    """A namespace of boolean flags that refuses names it does not have (a typo would otherwise pass)."""

    _names = ()

    def __setattr__(self, name, value):
        if name not in self._names:
            raise AttributeError(f"{self._where} has no flag {name!r}; it has {', '.join(self._names)}")
        if not isinstance(value, bool):
            raise InvalidValue(f"{self._where}.{name} must be a bool, got {value!r}")
        object.__setattr__(self, name, value)

    def __repr__(self):
        return f"<{self._where}: " + ", ".join(f"{n}={getattr(self, n)}" for n in self._names) + ">"


class _CuDNN(_Flags):
    _where = "dg.backends.cudnn"
    _names = ("enabled", "benchmark", "deterministic", "allow_tf32")

    def __init__(self):
        for n, v in zip(self._names, (True, False, False, True)):
            object.__setattr__(self, n, v)

    @staticmethod
    def is_available():
        """False: dualgraph does not use cuDNN (its GPU convolutions are cupy code)."""
        return False

    @staticmethod
    def version():
        """None, PyTorch's answer where cuDNN is not available."""
        return None

    @contextlib.contextmanager
    def flags(self, enabled=False, benchmark=False, deterministic=False, allow_tf32=True):
        old = tuple(getattr(self, n) for n in self._names)
        for n, v in zip(self._names, (enabled, benchmark, deterministic, allow_tf32)):
            setattr(self, n, v)
        try:
            yield
        finally:
            for n, v in zip(self._names, old):
                object.__setattr__(self, n, v)


class _Matmul(_Flags):
    _where = "dg.backends.cuda.matmul"
    _names = ("allow_tf32", "allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction")

    def __init__(self):
        for n, v in zip(self._names, (False, True, True)):
            object.__setattr__(self, n, v)


class _Cuda:
    def __init__(self):
        self.matmul = _Matmul()

    @staticmethod
    def is_built():
        """True when cupy is importable (dualgraph's GPU backend), whether or not a GPU is visible."""
        return _backend._cupy is not None


class _Unavailable:
    def __init__(self, what):
        self._what = what

    @staticmethod
    def is_available():
        return False

    @staticmethod
    def is_built():
        return False

    def __repr__(self):
        return f"<dg.backends.{self._what}: not used by dualgraph>"


cudnn = _CuDNN()
cuda = _Cuda()
mps = _Unavailable("mps")
mkldnn = _Unavailable("mkldnn")

_MATMUL_PRECISIONS = ("highest", "high", "medium")
_matmul_precision = ["highest"]


def set_float32_matmul_precision(precision):
    """Accepts PyTorch's 'highest' / 'high' / 'medium'; dualgraph's float32 matmuls are always computed in
    float32 (numpy's BLAS; cupy without CUPY_TF32), which is what 'highest' means."""
    if precision not in _MATMUL_PRECISIONS:
        raise InvalidValue(f"set_float32_matmul_precision: expected one of {_MATMUL_PRECISIONS}, got {precision!r}")
    _matmul_precision[0] = precision


def get_float32_matmul_precision():
    return _matmul_precision[0]


def use_deterministic_algorithms(mode, *, warn_only=False):
    """Make GPU ops that accumulate with atomics (run-to-run varying order) raise, or warn with
    `warn_only=True`. CPU ops are deterministic whatever this says."""
    if not isinstance(mode, bool):
        raise InvalidValue(f"use_deterministic_algorithms: mode must be a bool, got {mode!r}")
    _backend.DETERMINISTIC[:] = [mode, bool(warn_only)]


def are_deterministic_algorithms_enabled():
    return _backend.DETERMINISTIC[0]


def is_deterministic_algorithms_warn_only_enabled():
    return _backend.DETERMINISTIC[0] and _backend.DETERMINISTIC[1]
