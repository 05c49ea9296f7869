"""The Tensor: an array on a device with autograd's fields (requires_grad, grad, grad_fn, version).

What depends on the mode (an in-place write, backward, detach, .grad while tracing) the tensor asks
of the current mode (`STATE.mode`, see dualgraph.dispatch); the methods that apply ops are bound
by dualgraph._methods, above the ops. Symbolic tensors (dualgraph.function.tracer.SymbolicTensor)
subclass it, so the properties here read the data without checking for its absence.
"""

import copy
import functools
import warnings

import numpy as _np  # host-side conversions only; computation goes through device.xp

from . import dtypes as _dt
from ._state import STATE
from .backend import CPU, device as _parse_device, device_of_array, is_array, to_device, to_host
from .errors import AutogradError, DeviceError, DTypeError, InvalidValue, ShapeError

_SCALARS = (int, float, bool)


class _Size(int):
    """`t.size` is numpy's element count and also callable like PyTorch's `t.size(dim)`."""

    def __new__(cls, shape):
        n = 1
        for d in shape:
            n *= d
        obj = int.__new__(cls, n)
        obj._shape = shape
        return obj

    def __call__(self, dim=None):
        return self._shape if dim is None else self._shape[dim]


class _GradShapeError(ShapeError, RuntimeError):
    """`t.grad = g` with g of another shape (a RuntimeError in PyTorch)."""


class _GradDTypeError(DTypeError, RuntimeError):
    """`t.grad = g` with g of another dtype (a RuntimeError in PyTorch)."""


_NON_LEAF_GRAD = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad attribute won't be "
    "populated during autograd.backward(). If you indeed want the .grad field to be populated for a non-leaf "
    "Tensor, use .retain_grad() on the non-leaf Tensor. If you access the non-leaf Tensor by mistake, make sure "
    "you access the leaf Tensor instead.")


def _type_name(value):
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _plain_outside_record(method):
    """MXNet records nothing outside autograd.record(), so writing into an attach_grad() tensor there is
    a plain update (d2l's `param[:] = param - lr * param.grad`), not PyTorch's error for a leaf that
    requires grad. Tensors that did not attach_grad() keep PyTorch's rule."""
    @functools.wraps(method)
    def update(self, *args, **kwargs):
        st = STATE
        if self._attached and st.grad_enabled and not st.recording and self._grad_fn is None:
            st.grad_enabled = False
            try:
                return method(self, *args, **kwargs)
            finally:
                st.grad_enabled = True
        return method(self, *args, **kwargs)
    return update


# how many post-accumulate-grad hooks were ever registered: the engine looks for leaves that have some
# only when this is non-zero, so a backward without them pays nothing
POST_HOOKS = [0]


class Tensor:
    """An n-dimensional array on a device, with optional gradient tracking."""

    # The hot attributes are slots; rarely-set ones default on the class and go to a lazily
    # created __dict__ only when set, so making a tensor costs four attribute writes.
    __slots__ = ("_data", "_device", "_requires_grad", "_grad_fn", "_version", "__dict__", "__weakref__")
    _out_index = 0
    _grad = None
    _grad_req = "add"
    _attached = False  # attach_grad() made this an MXNet-style leaf
    _hooks = None
    _post_hooks = None  # register_post_accumulate_grad_hook (leaves only)
    _is_view = False
    _aval = None
    _symbolic = False  # stands for a value of a graph being built (no data): see SymbolicTensor
    _inference = False  # made inside dg.inference_mode()
    __array_ufunc__ = None  # numpy defers to our reflected operators: ndarray * tensor -> Tensor

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        arr = _to_array(data, dtype, device, copy=True)
        _init(self, arr, device_of_array(arr))
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_node_output(cls, arr, node, index):
        t = _make(arr, device_of_array(arr))
        t._grad_fn, t._out_index, t._requires_grad = node, index, True
        return t

    # ---- basic properties --------------------------------------------------------------
    @property
    def data(self):
        """The same values, detached from the graph (PyTorch's `.data`)."""
        return self.detach()

    @data.setter
    def data(self, value):
        """`t.data = v` swaps in v's values outside autograd (PyTorch's idiom, also `t.data -= lr * g`).
        Unlike PyTorch it bumps the version, so a graph that saved the old values refuses to backward."""
        if not isinstance(value, Tensor):
            value = Tensor(value, device=self._device)
        STATE.mode.set_data(self, value)

    @property
    def shape(self):
        return self._data.shape

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self.ndim

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def device(self):
        return self._device

    @property
    def is_cuda(self):
        """True on dualgraph's GPU device (PyTorch's name for it)."""
        return self._device.type == "gpu"

    @property
    def is_cpu(self):
        return self._device.type == "cpu"

    def get_device(self):
        """The GPU index, or -1 on the CPU (as PyTorch)."""
        return -1 if self._device.type == "cpu" else self._device.index

    @property
    def size(self):
        return _Size(self._data.shape)

    def numel(self):
        return self._data.size

    def __len__(self):
        shape = self._data.shape
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        return shape[0]

    @property
    def is_leaf(self):
        return self._grad_fn is None

    @property
    def grad_fn(self):
        return self._grad_fn

    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        self.requires_grad_(flag)

    def requires_grad_(self, flag=True):
        if self._grad_fn is not None and not flag:
            raise AutogradError("you can only change requires_grad of leaf tensors; use .detach()")
        if flag and not _dt.is_floating(self.dtype):
            raise DTypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self._requires_grad = bool(flag)
        return self

    @property
    def grad(self):
        g = STATE.mode.read_grad(self)
        if g is None and self._grad_fn is not None and not self.retains_grad:
            # PyTorch's warning, shown once per line of user code (Python's default warning filter)
            warnings.warn(_NON_LEAF_GRAD, UserWarning, stacklevel=2)
        return g

    @grad.setter
    def grad(self, value):
        # PyTorch's checks and messages; the errors are also RuntimeErrors, as PyTorch raises
        if value is not None and not isinstance(value, Tensor):
            raise DTypeError(f"assigned grad expected to be a Tensor or None but got grad of type "
                             f"{_type_name(value)}")
        if value is not None and not self._symbolic and not value._symbolic:
            if value.dtype != self.dtype:
                raise _GradDTypeError(f"attempting to assign a gradient with dtype '{value.dtype}' to a tensor "
                                      f"with dtype '{self.dtype}'. Please ensure that the gradient and the tensor "
                                      f"have the same dtype")
            if value._device is not self._device:
                raise DeviceError(f"attempting to assign a gradient located on device '{value._device}' to a "
                                  f"tensor located on device '{self._device}'. Please ensure that the gradient "
                                  f"and the tensor are on the same device")
            if value.shape != self.shape:
                raise _GradShapeError(f"attempting to assign a gradient of size '{list(value.shape)}' to a tensor "
                                      f"of size '{list(self.shape)}'. Please ensure that the gradient and the "
                                      f"tensor are the same size")
        STATE.mode.write_grad(self, value)

    # ---- autograd ------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        if inputs is not None:
            inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        STATE.mode.backward([self], [gradient], retain_graph, create_graph, inputs)

    def retain_grad(self):
        """Keep .grad on this non-leaf after backward (leaves keep theirs anyway)."""
        if not self._requires_grad:
            raise AutogradError("retain_grad() on a tensor that does not require grad")
        if self._grad_fn is None or self.retains_grad:
            return
        self._grad_fn.retain(self)

    @property
    def retains_grad(self):
        """True for a non-leaf on which retain_grad() was called."""
        node = self._grad_fn
        return node is not None and any(ref() is self for _, ref in getattr(node, "_retained", None) or ())

    def register_hook(self, hook):
        """Call hook(grad) when this tensor's gradient is computed; a returned tensor replaces it."""
        if not self._requires_grad:
            raise AutogradError("cannot register a hook on a tensor that does not require grad")
        if self._grad_fn is not None:
            return self._grad_fn.add_hook(self, hook)
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return HookHandle(self._hooks, hook, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call hook(tensor) on a leaf once backward has written its .grad (PyTorch's name): the engine
        calls it as soon as no remaining node of the backward feeds this leaf, while the rest of the
        backward still runs (what gradient all-reduce overlaps with)."""
        if not self._requires_grad or self._grad_fn is not None:
            raise AutogradError("post accumulate grad hooks can only be registered on leaf tensors that "
                                "require grad")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(hook)
        POST_HOOKS[0] += 1
        return HookHandle(self._post_hooks, hook, hook)

    def is_inference(self):
        """True for a tensor made inside dg.inference_mode() (PyTorch's inference tensors)."""
        return self._inference

    def detach(self):
        return STATE.mode.detach(self)

    def detach_(self):
        self._grad_fn, self._requires_grad = None, False
        return self

    def attach_grad(self, grad_req="write"):
        """MXNet: allocate a zero gradient buffer and mark this tensor as a leaf that wants gradients."""
        if grad_req not in ("write", "add", "null"):
            raise ValueError(f"grad_req must be 'write', 'add' or 'null', got {grad_req!r}")
        self._grad_fn = None
        self.requires_grad_(grad_req != "null")
        self._grad_req = grad_req
        self._attached = True
        self._grad = None if grad_req == "null" else _make(self._device.xp.zeros_like(self._data), self._device)
        return self

    # ---- conversion ---------------------------------------------------------------------
    def numpy(self):
        """A host numpy array with the values, always a copy (like MXNet's asnumpy): writing to it cannot
        change the tensor behind the version counter's back. `dg.from_numpy` shares memory instead."""
        data = self._data
        return data.copy() if isinstance(data, _np.ndarray) else to_host(data)

    asnumpy = numpy

    def __array__(self, dtype=None, copy=None):
        if self._device is not CPU:
            raise DeviceError(f"np.asarray() needs a CPU tensor, this one is on {self._device}; call .numpy()")
        if copy is False:  # numpy 2: the caller asked for no copy, so share the buffer (or refuse)
            if dtype is not None and _np.dtype(dtype) != self.dtype:
                raise ValueError(f"np.asarray(copy=False): converting {self.dtype} to {_np.dtype(dtype)} needs a copy")
            return self._data
        arr = self.numpy()
        return arr.astype(dtype, copy=False) if dtype is not None else arr

    def item(self):
        if self._data.size != 1:
            raise ShapeError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self._data.item()

    def tolist(self):
        return self.numpy().tolist()

    def __bool__(self):
        if self._data.size != 1:
            raise ShapeError(f"the truth value of a tensor with shape {self.shape} is ambiguous; "
                             f"use .any() or .all()")
        return bool(self._data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if not (self.dtype.kind in "iu" and self.numel() == 1):
            raise TypeError("only integer tensors of one element can be used as an index")
        return int(self.item())

    def cpu(self):
        return self.to("cpu")

    def gpu(self, index=0):
        return self.to(f"gpu:{index}")

    def cuda(self, device=None, non_blocking=False):
        """This tensor on the GPU (dualgraph's 'gpu' device): `device` is None (GPU 0), an index, 'cuda:N'
        or a device; DeviceError without a GPU."""
        if device is None or (isinstance(device, int) and not isinstance(device, bool)):
            device = f"gpu:{device or 0}"
        return self.to(device)

    # ---- in-place operations (bump the version counter) -------------------------------------
    def _check_inplace(self, what):
        if STATE.grad_enabled and self._requires_grad and self._grad_fn is None:
            raise AutogradError(
                f"{what}: a leaf tensor that requires grad is being used in an in-place operation; "
                f"wrap the update in `with dg.no_grad():` (as optimizers do) or use an out-of-place op")

    @_plain_outside_record
    def add_(self, other, alpha=1):
        if alpha != 1:
            other = other * alpha
        self._check_inplace("add_")
        return STATE.mode.inplace(self, lambda s: s + other, other, "add_", ufunc="add")

    @_plain_outside_record
    def sub_(self, other, alpha=1):
        if alpha != 1:
            other = other * alpha
        self._check_inplace("sub_")
        return STATE.mode.inplace(self, lambda s: s - other, other, "sub_", ufunc="subtract")

    @_plain_outside_record
    def mul_(self, other):
        self._check_inplace("mul_")
        return STATE.mode.inplace(self, lambda s: s * other, other, "mul_", keeps_old=True, ufunc="multiply")

    @_plain_outside_record
    def div_(self, other):
        self._check_inplace("div_")
        return STATE.mode.inplace(self, lambda s: s / other, other, "div_", keeps_old=True,
                                  ufunc="true_divide" if self.dtype.kind == "f" else None)

    @_plain_outside_record
    def fill_(self, value):
        self._check_inplace("fill_")
        return STATE.mode.fill(self, value)

    def zero_(self):
        return self.fill_(0)

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_

    def __hash__(self):
        return id(self)

    def __deepcopy__(self, memo):
        """A new leaf with copied values, requires_grad and grad (PyTorch's rule: leaves only)."""
        if self._grad_fn is not None:
            raise AutogradError("only leaf tensors (created by you, not by an op that requires grad) support "
                                "copy.deepcopy; deep-copy t.detach() instead")
        t = _new(type(self))
        _init(t, self._device.xp.array(self._data, copy=True), self._device)
        memo[id(self)] = t
        t._requires_grad = self._requires_grad
        if self._grad_req != "add":
            t._grad_req = self._grad_req
        if self._grad is not None:
            t._grad = copy.deepcopy(self._grad, memo)
        return t

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __format__(self, spec):
        # PyTorch: a 0-d tensor formats as its number (f"{loss:.4f}"), anything else as its repr
        if self.ndim == 0 and type(self) is Tensor:
            return self.item().__format__(spec)
        return object.__format__(self, spec)

    def __repr__(self):
        from ._printing import tensor_repr  # PyTorch's layout and number formats (dualgraph/_printing.py)
        return tensor_repr(to_host(self._data), self.dtype, None if self._device is CPU else self._device,
                           None if self._grad_fn is None else self._grad_fn.name(), self._requires_grad)

    __str__ = __repr__


# Classes whose instances hold data and that the eager fast paths treat as tensors (nn.Parameter and
# static Variables register themselves here).
_TENSOR_TYPES = {Tensor}


def register_tensor_type(cls):
    _TENSOR_TYPES.add(cls)
    return cls


# How many inference_mode() scopes are open, in all threads: while none is (nearly always), making a
# tensor costs one list read more; while one is, the thread's own flag decides (STATE.inference).
INFERENCE_SCOPES = [0]


def _mark_inference(t):
    if STATE.inference:
        t._inference = True


def _init(t, arr, dev):
    t._data = arr
    t._device = dev
    t._requires_grad = False
    t._grad_fn = None
    t._version = [0]
    if INFERENCE_SCOPES[0]:
        _mark_inference(t)


_new = object.__new__


def _make(arr, dev):
    t = _new(Tensor)
    t._data = arr
    t._device = dev
    t._requires_grad = False
    t._grad_fn = None
    t._version = [0]
    if INFERENCE_SCOPES[0]:
        _mark_inference(t)
    return t


def _to_array(data, dtype, device, copy):
    """Turn user data into an array of a supported dtype on `device`."""
    dtype = _dt.resolve(dtype)
    dev = _parse_device(device) if device is not None else None
    if isinstance(data, Tensor):
        arr = data._data
        dev = dev or data._device
    elif is_array(data):
        arr = data
    else:
        if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in _flatten(data)):
            data = _detensor(data)
        try:
            host = _np.asarray(data)
        except ValueError as e:  # ragged nested lists
            raise ShapeError(f"cannot make a tensor from {type(data).__name__} data: {e}") from None
        if host.dtype == object:
            raise DTypeError(f"cannot make a tensor from {type(data).__name__} data of mixed or non-numeric types")
        if dtype is None and host.dtype == _np.float64 and not isinstance(data, _np.generic):
            host = host.astype(_dt.DEFAULT_FLOAT)  # Python floats default to float32, like PyTorch
        arr = host
        copy = False  # asarray of Python data already made a fresh array
    if dtype is None and arr.dtype not in _dt.SUPPORTED:
        if arr.dtype.kind == "f":
            dtype = _dt.DEFAULT_FLOAT
        elif arr.dtype.kind in "iu":
            dtype = _dt.int64
            # uint64 values past int64's range would wrap silently in astype
            if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size and int(arr.max()) > _np.iinfo(_np.int64).max:
                raise InvalidValue(f"cannot make a tensor from {arr.dtype} values above {_np.iinfo(_np.int64).max}: "
                                   f"dualgraph has no uint64 dtype and int64 cannot hold {int(arr.max())}")
        else:
            raise DTypeError(f"cannot make a tensor of dtype {arr.dtype}")
    src = device_of_array(arr)
    dev = dev or src
    if src is not dev:
        arr = to_device(arr, dev)
        copy = False
    xp = dev.xp
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    elif copy:
        arr = xp.array(arr, copy=True)
    return arr


def _flatten(seq):
    for x in seq:
        if isinstance(x, (list, tuple)):
            yield from _flatten(x)
        else:
            yield x


def _detensor(x):
    if isinstance(x, Tensor):
        return to_host(x._data)
    if isinstance(x, (list, tuple)):
        return [_detensor(v) for v in x]
    return x


def as_tensor(x, like=None, dtype=None):
    """x as a Tensor (no copy when it already is one), on `like`'s device."""
    if isinstance(x, Tensor):
        return x if dtype is None else x.astype(dtype)
    dev = like._device if like is not None else None
    if isinstance(x, _SCALARS) and like is not None and dtype is None:
        dtype = _dt.result_type(like, x.item() if isinstance(x, _np.generic) else x)
    return _make(_to_array(x, dtype, dev, copy=False), dev or CPU) if dev is not None else Tensor(x, dtype=dtype)


class HookHandle:
    """What `register_hook` returns: `handle.remove()` unregisters the hook (as in PyTorch); calling
    the handle calls the hook, and `with handle:` removes it on exit."""

    __slots__ = ("_hooks", "_entry", "hook")

    def __init__(self, hooks, entry, hook):
        self._hooks, self._entry, self.hook = hooks, entry, hook

    def remove(self):
        for i, e in enumerate(self._hooks):
            if e is self._entry:
                del self._hooks[i]
                return

    def __call__(self, *args, **kwargs):
        return self.hook(*args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


# ---- helpers the engine needs ------------------------------------------------------------

def ones_like_tensor(t):
    return _make(t._device.xp.ones_like(t._data), t._device)


def zeros_like_tensor(t):
    return _make(t._device.xp.zeros_like(t._data), t._device)
