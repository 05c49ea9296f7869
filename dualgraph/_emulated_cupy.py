"""A strict stand-in for cupy on numpy, so the GPU path runs (and its host/device slips fail) on
machines without a GPU. `DUALGRAPH_EMULATE_GPU=1` (or `=N` for N devices) makes the backend import
this module instead of cupy; nothing else in dualgraph knows it exists.

It keeps cupy's rules, not numpy's conveniences (cupy's documented API, docs.cupy.dev):
- `ndarray` is not an `numpy.ndarray`; `numpy.asarray(x)` raises (its `__array__` refuses, as cupy's
  does), there is no `.ctypes` or buffer, and `asnumpy`/`.get()`/`asarray` are the only transfers.
- A numpy array given to a cupy function or mixed into arithmetic with a device array raises
  TypeError; Python and numpy scalars are fine. numpy functions called on device arrays dispatch here
  (`__array_function__`/`__array_ufunc__`), as cupy's arrays do.
- Reductions give 0-d device arrays, not host scalars. No floating-point warnings (a GPU raises none).
- Arrays live on the device that was current when they were made (`cuda.Device(i)`); with several
  emulated devices, computing on an array of another device raises as cupy does.
- `ElementwiseKernel` and `ReductionKernel` compile lazily at the first call, as cupy's do: the CUDA
  source is parsed then, an identifier that is neither a parameter, a local nor a CUDA math function
  raises `cuda.compiler.CompileException`, and the parsed code runs on numpy with CUDA's meaning
  (`max`/`min` are fmax/fmin, which drop a NaN operand; C's type promotion for literals).
- A memory pool counts the bytes of live device buffers (`used_bytes`) and the freed bytes it keeps
  (`total_bytes`), so memory queries answer.
`RawKernel` (arbitrary CUDA C) is not emulated: dualgraph generates none, and running CUDA source
would need a CUDA interpreter.
"""
import re
import threading
import types
import weakref

import numpy as _np

_N_DEVICES = [1]
_LOCAL = threading.local()

# numpy names cupy does not provide: reaching them through the emulated module is the AttributeError
# real cupy gives
_MISSING = frozenset({"errstate", "seterr", "geterr", "frompyfunc", "nditer", "ndindex", "memmap", "ctypeslib",
                      "ma", "char", "rec", "polynomial", "testing", "busday_count", "datetime_data",
                      "set_printoptions", "get_printoptions", "printoptions"})
_ARRAY_MISSING = frozenset({"ctypes", "__array_interface__", "__array_struct__", "flat", "tobytes",
                            "tofile", "dumps", "dump", "getfield", "setfield", "resize", "newbyteorder", "byteswap",
                            "__buffer__"})


def _current():
    return getattr(_LOCAL, "device", 0)


# ---- memory pool --------------------------------------------------------------------------------------

class MemoryPool:
    """cupy.cuda.MemoryPool's queries: bytes in use by live arrays and bytes held (in use or cached)."""

    def __init__(self):
        self._used = 0
        self._cached = 0
        self._limit = 0
        self._lock = threading.Lock()

    def _alloc(self, nbytes):
        with self._lock:
            self._used += nbytes
            self._cached = max(0, self._cached - nbytes)

    def _free(self, nbytes):
        with self._lock:
            self._used -= nbytes
            self._cached += nbytes

    def used_bytes(self):
        return self._used

    def free_bytes(self):
        return self._cached

    def total_bytes(self):
        return self._used + self._cached

    def free_all_blocks(self, stream=None):
        self._cached = 0

    def n_free_blocks(self):
        return 1 if self._cached else 0

    def set_limit(self, size=None, fraction=None):
        self._limit = int(size or 0)

    def get_limit(self):
        return self._limit


class PinnedMemoryPool:
    def free_all_blocks(self):
        pass

    def n_free_blocks(self):
        return 0


_POOL = MemoryPool()
_PINNED = PinnedMemoryPool()


def get_default_memory_pool():
    return _POOL


def get_default_pinned_memory_pool():
    return _PINNED


def _track(a):
    """Count an owning numpy buffer as device memory until it is collected."""
    if a.base is None and a.nbytes:
        _POOL._alloc(a.nbytes)
        weakref.finalize(a, _POOL._free, a.nbytes)


# ---- ndarray ------------------------------------------------------------------------------------------

def _unsupported(obj):
    return TypeError(f"Unsupported type {type(obj)}")


class ndarray:
    """A device array: numpy storage behind cupy's interface."""

    __slots__ = ("_a", "_dev", "__weakref__")
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        a = _np.empty(shape, dtype=dtype, order=order)
        _track(a)
        self._a, self._dev = a, _current()

    # properties cupy has
    @property
    def device(self):
        return cuda.Device(self._dev)

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T, self._dev))
    mT = property(lambda self: _wrap(self._a.mT, self._dev))
    real = property(lambda self: _wrap(self._a.real, self._dev))
    imag = property(lambda self: _wrap(self._a.imag, self._dev))
    base = property(lambda self: None if self._a.base is None else _wrap(self._a.base, self._dev))

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    @property
    def data(self):
        """cupy.cuda.MemoryPointer: the device address (here the numpy buffer's), not a host buffer."""
        return MemoryPointer(self._a.__array_interface__["data"][0], self._dev)

    def sort(self, axis=-1, kind=None):
        if kind not in (None, "stable"):
            raise ValueError(f"sort: kind={kind!r}: only 'stable' (the default) is supported")
        self._a.sort(axis=axis, kind="stable")

    def argsort(self, axis=-1, kind=None):
        if kind not in (None, "stable"):
            raise ValueError(f"argsort: kind={kind!r}: only 'stable' (the default) is supported")
        return _out(self._a.argsort(axis=axis, kind="stable"))

    # the explicit transfers
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            if not isinstance(out, _np.ndarray):
                raise TypeError("out must be a numpy.ndarray")
            _np.copyto(out, self._a)
            return out
        return _np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, _np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, not {type(arr)}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError("Shape or dtype mismatch")
        _np.copyto(self._a, arr)

    def item(self, *args):
        return self._a.item(*args)

    def tolist(self):
        return self._a.tolist()

    # numpy's implicit conversions are refused, as cupy refuses them
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")

    def __array_ufunc__(self, uf, method, *inputs, **kwargs):
        for x in inputs + tuple(kwargs.get("out", ()) or ()):
            if isinstance(x, _np.ndarray):
                return NotImplemented
        f = getattr(_module, uf.__name__)
        f = getattr(f, method) if method != "__call__" else f
        return f(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        mod = func.__module__ or "numpy"
        space = _module
        for part in mod.split(".")[1:]:
            if part.startswith("_"):
                continue
            space = getattr(space, part, None)
            if space is None:
                return NotImplemented
        f = getattr(space, func.__name__, None)
        if f is None:
            return NotImplemented
        return f(*args, **kwargs)

    def __getattr__(self, name):
        if name in _ARRAY_MISSING:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        attr = getattr(self._a, name)
        if callable(attr):
            return _wrapped(attr, f"ndarray.{name}")
        return _out(attr)

    # python protocol
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __index__(self):
        return self._a.__index__()

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec) if self.ndim == 0 else format(str(self), spec)

    __hash__ = None

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        return (_from_host, (self.get(),))

    def __getitem__(self, idx):
        _check_device(self)
        return _out(self._a[_index(idx)])

    def __setitem__(self, idx, value):
        _check_device(self)
        if isinstance(value, ndarray):
            value = value._a
        elif not _advanced(idx):
            # cupy fills a basic-indexed view with a scalar; a host array there is its error
            if isinstance(value, (list, tuple)) or (isinstance(value, _np.ndarray) and value.shape != ()):
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        elif isinstance(value, (list, tuple)):
            value = _in(value)
        with _np.errstate(all="ignore"):
            self._a[_index(idx)] = value


class MemoryPointer:
    """cupy.cuda.MemoryPointer's address and device."""

    def __init__(self, ptr, device_id):
        self.ptr, self.device_id = int(ptr), device_id

    @property
    def device(self):
        return cuda.Device(self.device_id)


def _advanced(idx):
    """Whether an index holds an array or a list (cupy's scatter path, which copies a host value over)."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    return any(isinstance(p, (ndarray, _np.ndarray, list)) for p in parts)


def _index(idx):
    if isinstance(idx, tuple):
        return tuple(_index(i) for i in idx)
    if isinstance(idx, ndarray):
        return idx._a
    return idx


def _from_host(a):
    return asarray(a)


def _binop(name, reflected=False):
    def method(self, other):
        if isinstance(other, (_np.ndarray, list, tuple)):
            raise _unsupported(other)
        if not isinstance(other, (ndarray, int, float, complex, bool, _np.generic)):
            return NotImplemented
        f = getattr(_module, name)
        return f(other, self) if reflected else f(self, other)
    return method


def _ibinop(name):
    def method(self, other):
        if isinstance(other, (_np.ndarray, list, tuple)):
            raise _unsupported(other)
        getattr(_module, name)(self, other, out=self)
        return self
    return method


for _dunder, _uf in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "true_divide"),
                     ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul"),
                     ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor"),
                     ("lshift", "left_shift"), ("rshift", "right_shift")]:
    setattr(ndarray, f"__{_dunder}__", _binop(_uf))
    setattr(ndarray, f"__r{_dunder}__", _binop(_uf, reflected=True))
    setattr(ndarray, f"__i{_dunder}__", _ibinop(_uf))
for _dunder, _uf in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                     ("eq", "equal"), ("ne", "not_equal")]:
    setattr(ndarray, f"__{_dunder}__", _binop(_uf))
for _dunder, _uf in [("neg", "negative"), ("pos", "positive"), ("abs", "absolute"), ("invert", "invert")]:
    setattr(ndarray, f"__{_dunder}__", (lambda u: lambda self: getattr(_module, u)(self))(_uf))


def _wrap(a, dev=None):
    r = object.__new__(ndarray)
    r._a, r._dev = a, _current() if dev is None else dev
    return r


def _out(r):
    """A numpy result as cupy gives it: arrays and numpy scalars become device arrays."""
    if isinstance(r, _np.ndarray):
        _track(r)
        return _wrap(r)
    if isinstance(r, _np.generic):
        a = _np.asarray(r)
        _track(a)
        return _wrap(a)
    if isinstance(r, tuple):
        return type(r)(*map(_out, r)) if hasattr(r, "_fields") else tuple(_out(x) for x in r)
    if isinstance(r, list):
        return [_out(x) for x in r]
    return r


def _check_device(x):
    if _N_DEVICES[0] > 1 and x._dev != _current():
        raise ValueError(f"The device where the array resides ({x._dev}) is different from the current "
                         f"device ({_current()}).")


def _in(x):
    """An argument for numpy: device arrays unwrapped; a host array is the TypeError cupy raises."""
    if isinstance(x, ndarray):
        _check_device(x)
        return x._a
    if isinstance(x, _np.ndarray):
        raise _unsupported(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_in(v) for v in x)
    if isinstance(x, dict):
        return {k: _in(v) for k, v in x.items()}
    return x


def _wrapped(f, name):
    def call(*args, **kwargs):
        out = kwargs.get("out")
        args, kwargs = _in(args), _in(kwargs)
        with _np.errstate(all="ignore"):
            r = f(*args, **kwargs)
        if out is not None:
            return out
        return _out(r)
    call.__name__ = call.__qualname__ = name.rsplit(".", 1)[-1]
    return call


class ufunc:
    """cupy.ufunc: a numpy ufunc on device arrays, with reduce/accumulate/outer/at."""

    def __init__(self, uf):
        self._uf = uf
        self.name = self.__name__ = uf.__name__
        self.nin, self.nout, self.nargs = uf.nin, uf.nout, uf.nargs
        self.identity, self.types = uf.identity, uf.types
        self._call = _wrapped(uf, uf.__name__)
        self.outer = _wrapped(uf.outer, f"{uf.__name__}.outer")
        # cupy.ufunc's methods exist for these ufuncs only (cupy/_core/_kernel.pyx); others raise
        # NotImplementedError there
        for m, names in (("reduce", ("add", "multiply")), ("accumulate", ("add", "multiply")),
                         ("reduceat", ("add",))):
            if uf.__name__ in names:
                setattr(self, m, _wrapped(getattr(uf, m), f"{uf.__name__}.{m}"))
            else:
                setattr(self, m, self._unsupported_method(m))

    def _unsupported_method(self, m):
        def method(*args, **kwargs):
            raise NotImplementedError(f"`cupy_{self.name}.{m}` is not supported yet")
        return method

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def at(self, a, indices, b=None):
        if self.name not in ("add", "subtract", "maximum", "minimum", "bitwise_and", "bitwise_or", "bitwise_xor"):
            raise NotImplementedError(f"`cupy_{self.name}.at` is not supported yet")
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        with _np.errstate(all="ignore"):
            if b is None:
                self._uf.at(a._a, _index(indices))
            else:
                self._uf.at(a._a, _index(indices), _in(b))

    def __repr__(self):
        return f"<ufunc '{self.name}'>"


# ---- creation and transfers -----------------------------------------------------------------------------

def _host_value(obj):
    """`obj` for numpy.array: device arrays (also inside lists) unwrapped, host data as is."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, (list, tuple)):
        return type(obj)(_host_value(v) for v in obj)
    return obj


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, blocking=False):
    a = _np.array(_host_value(obj), dtype=dtype, order=order, ndmin=ndmin, copy=True)
    _track(a)
    return _wrap(a)


def asarray(a, dtype=None, order=None, blocking=False):
    if isinstance(a, ndarray) and a._dev == _current() and (dtype is None or _np.dtype(dtype) == a.dtype):
        return a
    if isinstance(a, ndarray) and a._dev == _current():
        return a.astype(dtype)
    return array(a, dtype=dtype, order=order or "K")


asanyarray = asarray


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    for a in args:
        if isinstance(a, ndarray):
            return _module
    return _np


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise _unsupported(a)
    return _out(_np.ascontiguousarray(a._a, dtype=dtype))


# ---- cuda ---------------------------------------------------------------------------------------------

class _CompileException(Exception):
    """cupy.cuda.compiler.CompileException"""


class Device:
    """cupy.cuda.Device: a context manager that makes device `id` current, and device queries."""

    def __init__(self, device=None):
        self.id = _current() if device is None else int(device)
        if not 0 <= self.id < _N_DEVICES[0]:
            raise _RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal ({self.id})")
        self._prev = []

    def __enter__(self):
        self._prev.append(_current())
        _LOCAL.device = self.id
        return self

    def __exit__(self, *exc):
        _LOCAL.device = self._prev.pop()

    def use(self):
        _LOCAL.device = self.id

    def synchronize(self):
        pass

    @property
    def compute_capability(self):
        return "90"

    @property
    def mem_info(self):
        total = _PROPS["totalGlobalMem"]
        return total - _POOL.total_bytes(), total

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class _RuntimeError(RuntimeError):
    """cupy_backends.cuda.api.runtime.CUDARuntimeError"""


_PROPS = {"name": b"dualgraph emulated GPU (numpy)", "totalGlobalMem": 16 << 30, "major": 9, "minor": 0,
          "multiProcessorCount": 1}


def _device_props(i):
    if not 0 <= i < _N_DEVICES[0]:
        raise _RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal ({i})")
    return dict(_PROPS)


class Stream:
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False):
        pass

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def use(self):
        return self


cuda = types.SimpleNamespace(
    Device=Device, Stream=Stream, MemoryPool=MemoryPool, PinnedMemoryPool=PinnedMemoryPool,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: _N_DEVICES[0], getDeviceProperties=_device_props,
                                  getDevice=_current, deviceSynchronize=lambda: None,
                                  CUDARuntimeError=_RuntimeError, runtimeGetVersion=lambda: 12080),
    compiler=types.SimpleNamespace(CompileException=_CompileException),
    get_current_stream=lambda: Stream(), is_available=lambda: True)
Stream.null = Stream()


# ---- random -------------------------------------------------------------------------------------------

# cupy.random.Generator's methods (cupy/random/_generator_api.pyx): no normal, choice, permutation or shuffle,
# and uniform takes a dtype
_GENERATOR_METHODS = frozenset({"random", "integers", "beta", "binomial", "chisquare", "dirichlet", "exponential",
                                "f", "gamma", "geometric", "hypergeometric", "logseries", "poisson", "power",
                                "standard_exponential", "standard_gamma", "standard_normal"})


class Generator:
    """cupy.random.Generator: numpy's PCG64 drawing into device arrays, with cupy's methods only."""

    def __init__(self, bit_generator):
        self._g = _np.random.Generator(bit_generator)
        self.bit_generator = bit_generator

    def uniform(self, low=0.0, high=1.0, size=None, dtype=_np.float64):
        return _out(self._g.uniform(_in(low), _in(high), size).astype(dtype, copy=False))

    def __getattr__(self, name):
        if name not in _GENERATOR_METHODS:
            raise AttributeError(f"'cupy.random.Generator' object has no attribute '{name}'")
        return _wrapped(getattr(self._g, name), f"Generator.{name}")


def default_rng(seed=None):
    return Generator(_np.random.PCG64(seed))


_LEGACY = _np.random.RandomState()


def _legacy(name):
    return _wrapped(getattr(_LEGACY, name), f"random.{name}")


random = types.SimpleNamespace(default_rng=default_rng, Generator=Generator, seed=_LEGACY.seed,
                               **{n: _legacy(n) for n in ("rand", "randn", "randint", "random", "uniform",
                                                          "normal", "permutation", "choice", "standard_normal",
                                                          "random_sample", "shuffle")})


# ---- kernels: CUDA source parsed at the first call, run on numpy -----------------------------------------

# C types a kernel body may name (cupy's preamble defines float16; parameters use numpy's names instead)
_CTYPE = {"float": _np.float32, "double": _np.float64, "float16": _np.float16, "int": _np.int32,
          "long long": _np.int64, "long": _np.int64, "int64_t": _np.int64, "int32_t": _np.int32, "bool": _np.bool_,
          "signed char": _np.int8, "unsigned char": _np.uint8, "short": _np.int16, "char": _np.int8,
          "unsigned int": _np.uint32, "size_t": _np.uint64, "ptrdiff_t": _np.int64}

# CUDA's math functions on one element, as numpy calls with CUDA's meaning (max/min/fmax/fmin drop NaN)
_FUNCS = {"exp": _np.exp, "expf": _np.exp, "log": _np.log, "logf": _np.log, "log1p": _np.log1p,
          "log1pf": _np.log1p, "expm1": _np.expm1, "expm1f": _np.expm1, "sqrt": _np.sqrt, "sqrtf": _np.sqrt,
          "rsqrt": lambda x: 1 / _np.sqrt(x), "sin": _np.sin, "sinf": _np.sin, "cos": _np.cos, "cosf": _np.cos,
          "tan": _np.tan, "tanh": _np.tanh, "tanhf": _np.tanh, "fabs": _np.fabs, "fabsf": _np.fabs,
          "abs": _np.abs, "floor": _np.floor, "ceil": _np.ceil, "round": _np.round, "rint": _np.rint,
          "trunc": _np.trunc, "pow": _np.power, "powf": _np.power, "max": _np.fmax, "min": _np.fmin,
          "fmax": _np.fmax, "fmin": _np.fmin, "fmaxf": _np.fmax, "fminf": _np.fmin, "atan2": _np.arctan2,
          "asin": _np.arcsin, "acos": _np.arccos, "atan": _np.arctan, "sinh": _np.sinh, "cosh": _np.cosh,
          "isnan": _np.isnan, "isinf": _np.isinf, "isfinite": _np.isfinite, "signbit": _np.signbit,
          "copysign": _np.copysign, "fmod": _np.fmod, "erf": None, "erff": None, "exp2": _np.exp2,
          "log2": _np.log2, "log10": _np.log10, "cbrt": _np.cbrt, "hypot": _np.hypot}

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[fFlLuU]*)|(?P<name>[A-Za-z_]\w*)"
                    r"|(?P<op>\|\||&&|==|!=|<=|>=|<<|>>|[-+*/%<>!?:()|&^~,;=\[\]{}]))")
_TYPE_WORDS = ("long long", "signed char", "unsigned char", "unsigned int")


class _Src:
    def __init__(self, text, where):
        self.toks, pos = [], 0
        text = re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise _CompileException(f"{where}: error: unexpected character {text[pos:pos + 10]!r}")
            pos = m.end()
            kind = m.lastgroup
            self.toks.append((kind, m.group(kind)))
        self.i = 0
        self.where = where

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def take(self, want=None):
        t = self.peek()
        if t[0] is None or (want is not None and t[1] != want):
            raise _CompileException(f"{self.where}: error: expected {want!r}, found {t[1]!r}")
        self.i += 1
        return t

    def type_at(self, k=0):
        """The C type name starting at token k ahead, and how many tokens it takes (or None)."""
        a, b = self.peek(k), self.peek(k + 1)
        if a[0] == "name" and b[0] == "name" and f"{a[1]} {b[1]}" in _TYPE_WORDS:
            return f"{a[1]} {b[1]}", 2
        if a[0] == "name" and a[1] in _CTYPE:
            return a[1], 1
        return None


def _parse(src, where):
    """CUDA statements `T x = e;` / `x = e;` -> a list of (declared type or None, name, expression tree)."""
    s = _Src(src, where)
    stmts = []
    while s.peek()[0] is not None:
        if s.peek()[1] == ";":
            s.take()
            continue
        t = s.type_at()
        ctype = None
        if t is not None and s.peek(t[1])[0] == "name":
            ctype = t[0]
            s.i += t[1]
        kind, name = s.take()
        if kind != "name":
            raise _CompileException(f"{where}: error: expected an identifier, found {name!r}")
        s.take("=")
        e = _expr(s)
        if s.peek()[0] is not None:  # cupy's template puts a ';' after the operation
            s.take(";")
        stmts.append((ctype, name, e))
    return stmts


_BIN = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", ">", "<=", ">="), ("<<", ">>"),
        ("+", "-"), ("*", "/", "%")]


def _expr(s):
    c = _binary(s, 0)
    if s.peek()[1] == "?":
        s.take()
        a = _expr(s)
        s.take(":")
        b = _expr(s)
        return ("?", c, a, b)
    return c


def _binary(s, level):
    if level == len(_BIN):
        return _unary(s)
    left = _binary(s, level + 1)
    while s.peek()[0] == "op" and s.peek()[1] in _BIN[level]:
        op = s.take()[1]
        left = ("bin", op, left, _binary(s, level + 1))
    return left


def _unary(s):
    kind, tok = s.peek()
    if kind == "op" and tok in ("-", "+", "!", "~"):
        s.take()
        return ("un", tok, _unary(s))
    if tok == "(":
        t = s.type_at(1)
        if t is not None and s.peek(1 + t[1])[1] == ")":
            s.i += 2 + t[1]
            return ("cast", t[0], _unary(s))
        s.take()
        e = _expr(s)
        s.take(")")
        return e
    if kind == "num":
        s.take()
        return ("num", tok)
    if kind == "name":
        s.take()
        if s.peek()[1] == "(":
            s.take()
            args = []
            while s.peek()[1] != ")":
                args.append(_expr(s))
                if s.peek()[1] == ",":
                    s.take()
            s.take(")")
            return ("call", tok, args)
        return ("var", tok)
    raise _CompileException(f"{s.where}: error: expected an expression, found {tok!r}")


def _check_names(e, known, where):
    kind = e[0]
    if kind == "var" and e[1] not in known:
        raise _CompileException(f"{where}: error: identifier \"{e[1]}\" is undefined")
    if kind == "call":
        if e[1] not in _FUNCS:
            raise _CompileException(f"{where}: error: identifier \"{e[1]}\" is undefined")
        for a in e[2]:
            _check_names(a, known, where)
    for sub in e[1:]:
        if isinstance(sub, tuple):
            _check_names(sub, known, where)


def _literal(tok):
    t = tok.rstrip("uUlL")
    if t.endswith(("f", "F")) and not t.lower().startswith("0x"):
        return _np.float32(t[:-1])
    if any(ch in t for ch in ".eE"):
        return _np.float64(t)  # a double in C: it promotes a float operand, as here
    return int(t)  # an int literal: weak, keeps the other operand's type as C's int does for float/long


def _erf(x):
    from scipy.special import erf
    return erf(x)


def _eval(e, env):
    kind = e[0]
    if kind == "num":
        return _literal(e[1])
    if kind == "var":
        return env[e[1]]
    if kind == "cast":
        v = _eval(e[2], env)
        return _np.asarray(v).astype(_CTYPE[e[1]])
    if kind == "un":
        v = _eval(e[2], env)
        return {"-": _np.negative, "+": _np.positive, "!": _np.logical_not, "~": _np.invert}[e[1]](v)
    if kind == "?":
        return _np.where(_eval(e[1], env), _eval(e[2], env), _eval(e[3], env))
    if kind == "call":
        f = _FUNCS[e[1]] or _erf
        return f(*[_eval(a, env) for a in e[2]])
    op, a, b = e[1], _eval(e[2], env), _eval(e[3], env)
    if op in ("|", "&", "^") and (_np.asarray(a).dtype == bool) != (_np.asarray(b).dtype == bool):
        a, b = _np.asarray(a).astype(_np.int32), _np.asarray(b).astype(_np.int32)  # C's bool -> int
    if op == "/" and _np.asarray(a).dtype.kind in "iu" and _np.asarray(b).dtype.kind in "iu":
        return _np.trunc(_np.true_divide(a, b)).astype(_np.result_type(a, b))
    return {"||": _np.logical_or, "&&": _np.logical_and, "|": _np.bitwise_or, "^": _np.bitwise_xor,
            "&": _np.bitwise_and, "==": _np.equal, "!=": _np.not_equal, "<": _np.less, ">": _np.greater,
            "<=": _np.less_equal, ">=": _np.greater_equal, "<<": _np.left_shift, ">>": _np.right_shift,
            "+": _np.add, "-": _np.subtract, "*": _np.multiply, "/": _np.true_divide, "%": _np.fmod}[op](a, b)


def _params(spec, where):
    """cupy's parameter list: `[raw] TYPE name`, TYPE a numpy dtype name ('float32', not C's 'float') or a
    one-letter type placeholder; anything else is the ValueError cupy raises when the kernel is made."""
    out = []
    for p in (x.strip() for x in spec.split(",")):
        if not p:
            continue
        s = p.split()
        if len(s) < 2:
            raise Exception(f"Syntax error: {p}")
        for kw in s[:-2]:
            if kw != "raw":
                raise Exception(f'Unknown keyword "{kw}"')
        t, name = s[-2:]
        if len(t) == 1:
            out.append((None, name))
            continue
        dt = _np.dtype(t)
        if dt.name != t:
            raise ValueError(f"Wrong type {t}")
        out.append((dt, name))
    return out


class ElementwiseKernel:
    """cupy.ElementwiseKernel(in_params, out_params, operation, name): compiled at its first call."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True, preamble="",
                 no_return=False, return_tuple=False, loop_prep="", after_loop="", **kwargs):
        self.name = name
        self.in_params = _params(in_params, name)
        self.out_params = _params(out_params, name)
        self.operation = operation
        self.return_tuple = return_tuple
        self._code = None

    def _compile(self):
        if self._code is None:
            stmts = _parse(self.operation, self.name)
            known = {n for _, n in self.in_params} | {n for _, n in self.out_params} | {"i", "_ind"}
            for ctype, var, e in stmts:
                _check_names(e, known, self.name)
                if ctype is None and var not in known:
                    raise _CompileException(f"{self.name}: error: identifier \"{var}\" is undefined")
                known.add(var)
            self._code = stmts
        return self._code

    def __call__(self, *args, size=None, block_size=None, stream=None):
        code = self._compile()
        nin, nout = len(self.in_params), len(self.out_params)
        if len(args) not in (nin, nin + nout):
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        env, shapes = {}, []
        for (ctype, pname), a in zip(self.in_params, args[:nin]):
            if isinstance(a, _np.ndarray):
                raise _unsupported(a)
            if isinstance(a, ndarray):
                _check_device(a)
                if ctype is not None and a.dtype != ctype:   # cupy casts scalars, never arrays
                    raise TypeError(f"Type is mismatched. {pname} {a.dtype.type} {ctype.type}")
                env[pname] = a._a
                shapes.append(a.shape)
            else:
                env[pname] = a if ctype is None else ctype.type(a)
        shape = _np.broadcast_shapes(*shapes) if shapes else ()
        with _np.errstate(all="ignore"):
            for ctype, var, e in code:
                v = _eval(e, env)
                if ctype is not None:
                    v = _np.asarray(v).astype(_CTYPE[ctype], copy=False)
                env[var] = v
        outs = []
        given = args[nin:]
        for k, (ctype, pname) in enumerate(self.out_params):
            v = _np.broadcast_to(_np.asarray(env[pname]), shape)
            if given:
                o = given[k]
                if not isinstance(o, ndarray):
                    raise _unsupported(o)
                if ctype is not None and o.dtype != ctype:
                    raise TypeError(f"Type is mismatched. {pname} {o.dtype.type} {ctype.type}")
                if o.shape != shape:
                    raise ValueError("Out shape is mismatched")
                o._a[...] = v
                outs.append(o)
            else:
                dt = v.dtype if ctype is None else ctype
                outs.append(_out(_np.array(v, dtype=dt)))
        return tuple(outs) if (nout > 1 or self.return_tuple) else outs[0]


class ReductionKernel:
    """cupy.ReductionKernel(in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name):
    map each element, combine pairs with reduce_expr (`a`, `b`) along the axes, then post_map (`a` -> out)."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name="reduce_kernel",
                 reduce_type=None, **kwargs):
        self.name = name
        self.in_params = _params(in_params, name)
        self.out_params = _params(out_params, name)
        self.src = (map_expr, reduce_expr, post_map_expr, identity)
        self.reduce_type = reduce_type
        self._code = None

    def _compile(self):
        if self._code is None:
            map_expr, reduce_expr, post_map_expr, identity = self.src
            known = {n for _, n in self.in_params} | {"_in_ind", "_out_ind"}
            m = _expr_of(map_expr, known, self.name)
            r = _expr_of(reduce_expr, {"a", "b"}, self.name)
            post = _parse(post_map_expr if post_map_expr.rstrip().endswith(";") else post_map_expr + ";",
                          self.name)
            for ctype, var, e in post:
                _check_names(e, {"a"} | {n for _, n in self.out_params}, self.name)
            self._code = (m, r, post, _expr_of(identity, set(), self.name) if identity else None)
        return self._code

    def __call__(self, *args, axis=None, keepdims=False, out=None, stream=None):
        m, r, post, identity = self._compile()
        env, shapes = {}, []
        for (ctype, pname), a in zip(self.in_params, args):
            if isinstance(a, _np.ndarray):
                raise _unsupported(a)
            env[pname] = a._a if isinstance(a, ndarray) else a
            if isinstance(a, ndarray):
                shapes.append(a.shape)
        shape = _np.broadcast_shapes(*shapes)
        with _np.errstate(all="ignore"):
            x = _np.broadcast_to(_np.asarray(_eval(m, env)), shape)
            if self.reduce_type:
                x = x.astype(_CTYPE[self.reduce_type])
            axes = tuple(range(x.ndim)) if axis is None else ((axis,) if isinstance(axis, int) else tuple(axis))
            axes = tuple(a % x.ndim for a in axes)
            x = _np.moveaxis(x, axes, tuple(range(x.ndim - len(axes), x.ndim)))
            keep = x.shape[:x.ndim - len(axes)]
            x = x.reshape(keep + (-1,))
            if x.shape[-1] == 0:
                x = _np.full(keep + (1,), _eval(identity, {}), dtype=x.dtype)
            while x.shape[-1] > 1:  # pairwise, as a GPU reduction tree combines
                n = x.shape[-1]
                a, b = x[..., :n // 2 * 2:2], x[..., 1:n // 2 * 2:2]
                y = _np.asarray(_eval(r, {"a": a, "b": b})).astype(x.dtype)
                x = _np.concatenate([y, x[..., n // 2 * 2:]], axis=-1) if n % 2 else y
            a = x[..., 0]
            if keepdims:
                for ax in sorted(axes):
                    a = _np.expand_dims(a, ax)
            env2 = {"a": a}
            for ctype, var, e in post:
                env2[var] = _eval(e, env2)
        res = _np.asarray(env2[self.out_params[0][1]])
        ctype = self.out_params[0][0]
        res = res if ctype is None else res.astype(ctype)
        if out is not None:
            out._a[...] = res
            return out
        return _out(_np.array(res))


def _expr_of(text, known, where):
    s = _Src(text, where)
    e = _expr(s)
    if s.peek()[0] is not None:
        raise _CompileException(f"{where}: error: unexpected {s.peek()[1]!r} after the expression")
    _check_names(e, known, where)
    return e


# ---- the module namespace: numpy's functions on device arrays -----------------------------------------

class _Namespace(types.ModuleType):
    def __init__(self, name, np_mod, extra):
        super().__init__(name)
        self._np_mod = np_mod
        self.__dict__.update(extra)

    def __getattr__(self, name):
        if name.startswith("__") or name in _MISSING:
            raise AttributeError(f"module '{self.__name__}' has no attribute '{name}'")
        attr = getattr(self._np_mod, name)
        if isinstance(attr, _np.ufunc):
            r = ufunc(attr)
        elif isinstance(attr, type) or not callable(attr):
            r = attr
        else:
            r = _wrapped(attr, f"{self.__name__}.{name}")
        setattr(self, name, r)
        return r


def _stable(name):
    f = getattr(_np, name)

    def sort(a, axis=-1, kind=None):
        if kind not in (None, "stable"):
            raise ValueError(f"{name}: kind={kind!r}: only 'stable' (the default) is supported")
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        return _out(f(_in(a), axis=axis, kind="stable"))
    sort.__name__ = name
    return sort


# the functions cupyx.scipy.special provides (docs.cupy.dev, "Special functions"), run by scipy's
_SPECIAL = ("erf", "erfc", "erfcx", "erfinv", "erfcinv", "log_ndtr", "ndtr", "ndtri", "gamma", "gammaln", "loggamma",
            "digamma", "polygamma", "psi", "zeta", "i0", "i0e", "i1", "i1e", "k0", "k0e", "k1", "k1e", "j0", "j1",
            "y0", "y1", "expit", "logit", "log_expit", "xlogy", "xlog1py", "entr", "rel_entr", "kl_div", "huber",
            "pseudo_huber", "betaln", "beta", "multigammaln", "sinc", "exp1", "expi", "expn", "softmax",
            "log_softmax", "logsumexp", "gammainc", "gammaincc", "boxcox", "boxcox1p", "cbrt", "exp2", "exp10",
            "expm1", "log1p", "round", "sindg", "cosdg", "tandg", "cotdg", "radian")


class _Special(types.SimpleNamespace):
    def __getattr__(self, name):
        if name not in _SPECIAL:
            raise AttributeError(f"module 'cupyx.scipy.special' has no attribute '{name}'")
        import scipy.special

        def fn(*args, **kwargs):
            return _out(getattr(scipy.special, name)(*_in(args), **_in(kwargs)))
        fn.__name__ = name
        return fn


def scatter_add(a, slices, value):
    """cupyx.scatter_add: a[slices] += value with repeated indices accumulating."""
    if not isinstance(a, ndarray):
        raise _unsupported(a)
    _np.add.at(a._a, _index(slices), _in(value) if isinstance(value, (ndarray, _np.ndarray)) else value)


cupyx = types.SimpleNamespace(scatter_add=scatter_add,
                              scipy=types.SimpleNamespace(special=_Special()))

_module = _Namespace(__name__ + ".cupy", _np, dict(
    ndarray=ndarray, ufunc=ufunc, sort=_stable("sort"), argsort=_stable("argsort"), array=array, asarray=asarray, asanyarray=asanyarray, asnumpy=asnumpy,
    ascontiguousarray=ascontiguousarray, get_array_module=get_array_module, cuda=cuda, random=random,
    ElementwiseKernel=ElementwiseKernel, ReductionKernel=ReductionKernel, cupyx=cupyx,
    get_default_memory_pool=get_default_memory_pool, get_default_pinned_memory_pool=get_default_pinned_memory_pool,
    linalg=_Namespace("cupy.linalg", _np.linalg, {}),
    lib=types.SimpleNamespace(stride_tricks=_Namespace("cupy.lib.stride_tricks", _np.lib.stride_tricks, {})), fft=_Namespace("cupy.fft", _np.fft, {}),
    __version__="13.0.0+emulated", emulated=True))
def __getattr__(name):
    return getattr(_module, name)


class _DirectImport:
    """A meta path finder: with the emulation on, `import cupy`/`import cupyx` anywhere fails with what to
    do instead. dualgraph reaches cupy only through dualgraph.backend (device.xp, backend.special,
    backend.scatter_add...), which is what the emulation replaces."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cupy", "cupyx"):
            raise ImportError(f"import {name}: DUALGRAPH_EMULATE_GPU is set, so there is no real cupy here; "
                              f"reach cupy through dualgraph.backend (device.xp, backend.scipy_special(xp), "
                              f"backend.scatter_add, ...), which the emulated GPU replaces", name=name)
        return None


def module(n_devices=1):
    """The emulated cupy namespace with `n_devices` devices."""
    import sys
    _N_DEVICES[0] = max(1, int(n_devices))
    if not any(isinstance(f, _DirectImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _DirectImport())
    return _module
