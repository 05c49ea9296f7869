"""The Tensor and `apply`, the one dispatcher every op goes through.

`apply(op, inputs, attrs)` decides by mode: while tracing it hands the op to the graph
builder; eagerly it runs `op.forward` on the inputs' backend namespace and, when grad mode
is on and an input requires grad, hangs a Node on the result. The hot path allocates only
the result and (when recording) its Node.
"""

import functools

import numpy as _np  # host-side conversions only; computation goes through device.xp

from . import dtypes as _dt
from ._state import STATE
from .autograd.graph import Node, node_versions, retain
from .backend import CPU, device as _parse_device, device_of_array, is_array, to_device, to_host
from .errors import AutogradError, DeviceError, DTypeError, DualgraphError, InvalidValue, ShapeError, user_line

_EMPTY = {}
_SCALARS = (int, float, bool)
_ndarray = _np.ndarray


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
    _is_view = False
    _aval = None
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
        if STATE.tracer is not None:
            STATE.tracer.inplace(self, value, "data=")
            return
        if value._data is self._data:
            return  # `t.data -= x`: the in-place op already wrote through the detached alias
        self._data, self._device = value._data, value._device
        self._version = [self._version[0] + 1]  # its own counter now, even if it was a view
        if self._is_view:
            self._is_view = False

    @property
    def shape(self):
        d = self._data
        return d.shape if d is not None else _traced_shape(self)

    @property
    def ndim(self):
        d = self._data
        return d.ndim if d is not None else len(self._aval.shape)

    def dim(self):
        return self.ndim

    @property
    def dtype(self):
        d = self._data
        return d.dtype if d is not None else self._aval.dtype

    @property
    def device(self):
        return self._device

    @property
    def size(self):
        shape = self.shape
        if self._data is None:
            from .ops.dims import SymbolicDim, symbolic_size
            if any(isinstance(d, SymbolicDim) for d in shape):   # traced with symbolic dims
                return symbolic_size(shape)
        return _Size(shape)

    def numel(self):
        d = self._data
        if d is not None:
            return d.size
        n = self.size   # a size expression when traced with symbolic dims
        return int(n) if isinstance(n, _Size) else n

    def __len__(self):
        shape = self.shape
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        if not isinstance(shape[0], int):
            from .ops.dims import SymbolicDim, size_needed
            if isinstance(shape[0], SymbolicDim):
                raise size_needed(shape[0], "len()")
            _no_value(self, "len()")
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
        g = STATE.tracer.read_grad(self) if STATE.tracer is not None else self._grad
        if g is None and self._grad_fn is not None and not self.retains_grad:
            import warnings
            # PyTorch's warning, shown once per line of user code (Python's default warning filter)
            warnings.warn(_NON_LEAF_GRAD, UserWarning, stacklevel=2)
        return g

    @grad.setter
    def grad(self, value):
        # PyTorch's checks and messages; the errors are also RuntimeErrors, as PyTorch raises
        if value is not None and not isinstance(value, Tensor):
            raise DTypeError(f"assigned grad expected to be a Tensor or None but got grad of type "
                             f"{_type_name(value)}")
        if STATE.tracer is not None:
            STATE.tracer.write_grad(self, value)
            return
        if value is not None:
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
        self._grad = value

    # ---- autograd ------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from .autograd.engine import run_backward
        if STATE.tracer is not None:  # inside @dg.function: reverse mode on the graph being traced
            return STATE.tracer.backward(self, gradient, inputs)
        if retain_graph is None:
            retain_graph = create_graph
        if inputs is not None:
            inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            grads = run_backward([self], [gradient], retain_graph, create_graph, inputs=inputs)
            for t, g in zip(inputs, grads):
                if g is not None and t._grad_req != "null":  # same rules as a full backward
                    t._grad = g if t._grad is None or t._grad_req == "write" else t._grad + g
            return
        run_backward([self], [gradient], retain_graph, create_graph)

    def retain_grad(self):
        """Keep .grad on this non-leaf after backward (leaves keep theirs anyway)."""
        if not self._requires_grad:
            raise AutogradError("retain_grad() on a tensor that does not require grad")
        if self._grad_fn is None or self.retains_grad:
            return
        retain(self)

    @property
    def retains_grad(self):
        """True for a non-leaf on which retain_grad() was called."""
        node = self._grad_fn
        return node is not None and any(ref() is self for _, ref in getattr(node, "_retained", None) or ())

    def register_hook(self, hook):
        """Call hook(grad) when this tensor's gradient is computed; a returned tensor replaces it."""
        if not self._requires_grad:
            raise AutogradError("cannot register a hook on a tensor that does not require grad")
        from .autograd.graph import HookHandle, add_hook
        if self._grad_fn is not None:
            return add_hook(self, hook)
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return HookHandle(self._hooks, hook, hook)

    def detach(self):
        if STATE.tracer is not None:
            return STATE.tracer.detach(self)
        t = _make(self._data, self._device)
        t._version = self._version
        return t

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
        if data is None:
            _no_value(self, "numpy()")
        return data.copy() if isinstance(data, _np.ndarray) else to_host(data)

    asnumpy = numpy

    def __array__(self, dtype=None, copy=None):
        if self._device is not CPU:
            raise DeviceError(f"np.asarray() needs a CPU tensor, this one is on {self._device}; call .numpy()")
        if copy is False:  # numpy 2: the caller asked for no copy, so share the buffer (or refuse)
            if self._data is None:
                STATE.tracer.concrete_value_error(self, "np.asarray()")
            if dtype is not None and _np.dtype(dtype) != self.dtype:
                raise ValueError(f"np.asarray(copy=False): converting {self.dtype} to {_np.dtype(dtype)} needs a copy")
            return self._data
        arr = self.numpy()
        return arr.astype(dtype, copy=False) if dtype is not None else arr

    def item(self):
        if self._data is None:
            _no_value(self, "item()")
        if self._data.size != 1:
            raise ShapeError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self._data.item()

    def tolist(self):
        return self.numpy().tolist()

    def __bool__(self):
        if self._data is None:
            _no_value(self, "bool()")
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

    def to(self, device=None, dtype=None):
        """Move to a device and/or cast; `t.to('gpu')`, `t.to(dg.float64)`, `t.to('cpu', 'float16')`."""
        if device is not None and not isinstance(device, str) and not hasattr(device, "xp"):
            device, dtype = None, device  # t.to(dg.float64)
        if isinstance(device, str) and device not in ("cpu",) and not device.startswith(("gpu", "cuda")):
            device, dtype = None, device  # t.to("float64")
        out = self
        if dtype is not None:
            out = out.astype(dtype)
        if device is not None:
            dev = _parse_device(device)
            if dev is not out._device:
                from .ops.shape import to_device_op
                out = to_device_op(out, dev)
        return out

    def cpu(self):
        return self.to("cpu")

    def gpu(self, index=0):
        return self.to(f"gpu:{index}")

    cuda = gpu

    def clone(self):
        from .ops.elementwise import copy
        return copy(self)

    # ---- in-place operations (bump the version counter) -------------------------------------
    def _check_inplace(self, what):
        if STATE.grad_enabled and self._requires_grad and self._grad_fn is None:
            raise AutogradError(
                f"{what}: a leaf tensor that requires grad is being used in an in-place operation; "
                f"wrap the update in `with dg.no_grad():` (as optimizers do) or use an out-of-place op")

    def _inplace(self, fn, other, what, keeps_old=False):
        """Make `self` hold `fn(self)` in place, keeping autograd history.

        While recording, `fn` runs on a stand-in for `self`'s history (its grad_fn; a copy of its values
        when the vjp reads them, `keeps_old`), not on `self`: so the new node is no self-loop, the version
        bump below does not invalidate it, and the gradient reaches what `self` was computed from.
        """
        self._check_inplace(what)
        tr = STATE.tracer
        if tr is not None:  # functionalized: the tensor now stands for a new graph value
            since = len(tr.graph.nodes)
            return tr.inplace(self, fn(self), what, since)
        tracked = STATE.grad_enabled and (self._requires_grad or (isinstance(other, Tensor) and other._requires_grad))
        src = self
        if tracked:
            if self._is_view:
                raise AutogradError(f"{what}: in-place change of a view that takes part in autograd is not "
                                    f"supported; clone() the view first, or for `y[idx] += v` write the "
                                    f"out-of-place `y = dg.index_put(y, idx, y[idx] + v)`")
            src = _make(self._data.copy() if keeps_old else self._data, self._device)
            src._grad_fn, src._out_index, src._requires_grad = self._grad_fn, self._out_index, self._requires_grad
        result = fn(src)
        if result.shape != self.shape:
            raise ShapeError(f"{what}: in-place result has shape {result.shape}, tensor has shape {self.shape}")
        if result.dtype != self.dtype and not _np.can_cast(result.dtype, self.dtype, "same_kind"):
            raise DTypeError(f"{what}: result dtype {result.dtype} can't be cast in place to the tensor's "
                             f"dtype {self.dtype}")
        self._data[...] = result._data
        self._version[0] += 1
        if tracked:
            # a result that no longer depends on anything that requires grad (copy_ of a constant) detaches
            self._grad_fn, self._out_index = result._grad_fn, result._out_index
            self._requires_grad = result._requires_grad
        return self

    @_plain_outside_record
    def __setitem__(self, index, value):
        from .ops.indexing import setitem_
        setitem_(self, index, value)

    @_plain_outside_record
    def add_(self, other, alpha=1):
        if self._untracked(other):
            return self._inplace_ufunc("add", other * alpha if alpha != 1 else other, "add_")
        return self._inplace(lambda s: s + (other * alpha if alpha != 1 else other), other, "add_")

    @_plain_outside_record
    def sub_(self, other, alpha=1):
        if self._untracked(other):
            return self._inplace_ufunc("subtract", other * alpha if alpha != 1 else other, "sub_")
        return self._inplace(lambda s: s - (other * alpha if alpha != 1 else other), other, "sub_")

    @_plain_outside_record
    def mul_(self, other):
        if self._untracked(other):
            return self._inplace_ufunc("multiply", other, "mul_")
        return self._inplace(lambda s: s * other, other, "mul_", keeps_old=True)

    @_plain_outside_record
    def div_(self, other):
        if self._untracked(other) and self.dtype.kind == "f":
            return self._inplace_ufunc("true_divide", other, "div_")
        return self._inplace(lambda s: s / other, other, "div_", keeps_old=True)

    def _untracked(self, other):
        """An eager in-place update autograd need not see (optimizer steps under no_grad, plain data)."""
        st = STATE
        if st.tracer is not None or self._data is None:
            return False
        if not st.grad_enabled:
            return True
        return not (self._requires_grad or (isinstance(other, Tensor) and other._requires_grad))

    def _inplace_ufunc(self, ufunc, other, what):
        """add_/sub_/mul_/div_ without autograd: one ufunc writing straight into this tensor's buffer
        (an out-of-place result plus a copy would read and write the memory twice more)."""
        if isinstance(other, Tensor):
            if other._device is not self._device:
                raise DeviceError(f"{what}: tensor is on {self._device}, operand on {other._device}")
            other = other._data
        elif isinstance(other, _np.generic):
            other = other.item()  # weak, like a Python number
        elif not isinstance(other, _SCALARS):
            other = as_tensor(other, like=self)._data
        if other.__class__ not in _SCALARS and other.dtype != self.dtype and \
                _dt.result_type(self._data, other) == self.dtype:
            other = other.astype(self.dtype)  # compute as `self + other` does (numpy would widen f16 += f32[])
        try:
            getattr(self._device.xp, ufunc)(self._data, other, out=self._data, casting="same_kind")
        except TypeError as e:
            raise DTypeError(f"{what}: cannot write the result into a {self.dtype} tensor in place: {e}") from None
        except ValueError as e:
            raise ShapeError(f"{what}: operand of shape {_np.shape(other)} does not broadcast to the "
                             f"tensor's shape {tuple(self.shape)}: {e}") from None
        self._version[0] += 1
        return self

    @_plain_outside_record
    def copy_(self, src):
        from .ops.shape import broadcast_to
        src = as_tensor(src, like=self)
        return self._inplace(lambda s: broadcast_to(src, self.shape).astype(self.dtype), src, "copy_")

    @_plain_outside_record
    def fill_(self, value):
        self._check_inplace("fill_")
        if STATE.tracer is not None:
            from .creation import full_like
            return STATE.tracer.inplace(self, full_like(self, value), "fill_")
        self._data.fill(value)
        self._version[0] += 1
        if STATE.grad_enabled and self._grad_fn is not None:
            # the values no longer depend on the history: detach rather than send gradient through it
            self._grad_fn, self._out_index, self._requires_grad = None, 0, False
        return self

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
        if self._data is None:
            _no_value(self, "copy.deepcopy")
        t = _new(type(self))
        _init(t, self._device.xp.array(self._data, copy=True), self._device)
        memo[id(self)] = t
        t._requires_grad = self._requires_grad
        if self._grad_req != "add":
            t._grad_req = self._grad_req
        if self._grad is not None:
            import copy
            t._grad = copy.deepcopy(self._grad, memo)
        return t

    def __iter__(self):
        if self._data is None and not (self._aval.shape and isinstance(self._aval.shape[0], int)):
            _no_value(self, "iteration over a tensor of unknown length")
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self):
        if self._data is None:
            return f"Tensor(traced {self._aval})"
        body = _np.array2string(to_host(self._data), separator=", ", prefix="tensor(")
        extras = []
        if self.dtype not in (_dt.float32, _dt.int64, _dt.bool_):
            extras.append(f"dtype={self.dtype}")
        if self._device is not CPU:
            extras.append(f"device='{self._device}'")
        if self._grad_fn is not None:
            extras.append(f"grad_fn=<{self._grad_fn.name()}>")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __str__ = __repr__


# Classes the dispatcher's fast path treats as tensors (nn.Parameter registers itself here).
_TENSOR_TYPES = {Tensor}


def register_tensor_type(cls):
    _TENSOR_TYPES.add(cls)
    return cls


def _no_value(t, what):
    """Raise the error for reading the value of a symbolic tensor (traced or a static-graph node)."""
    tracer = STATE.tracer
    if tracer is None:
        owner = getattr(t, "_owner", None)
        tracer = owner.tracer if owner is not None else None
    if tracer is None:
        raise DualgraphError(f"{what}: this tensor is symbolic (from a finished trace) and has no value")
    tracer.concrete_value_error(t, what)


def _traced_shape(t):
    """The shape of a symbolic tensor; inside a trace, reading it from user code is noted (it freezes)."""
    if STATE.tracer is not None:
        return STATE.tracer.read_shape(t)
    return t._aval.shape


def _init(t, arr, dev):
    t._data = arr
    t._device = dev
    t._requires_grad = False
    t._grad_fn = None
    t._version = [0]


_new = object.__new__


def _make(arr, dev):
    t = _new(Tensor)
    t._data = arr
    t._device = dev
    t._requires_grad = False
    t._grad_fn = None
    t._version = [0]
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


# ---- the dispatcher --------------------------------------------------------------------

def apply(op, inputs, attrs=_EMPTY):
    """Run `op` on `inputs` (Tensors or Python scalars) in the current mode."""
    st = STATE
    if st.tracer is not None:
        return st.tracer.apply(op, inputs, attrs)
    # Fast paths for one and two tensor inputs on one device: no lists, no star-args.
    n = len(inputs)
    if n == 2:
        a, b = inputs
        if a.__class__ in _TENSOR_TYPES:
            dev = a._device
            if b.__class__ in _TENSOR_TYPES:
                if b._device is not dev:
                    _device_mismatch(op, inputs)
                x, y = a._data, b._data
                needs_grad = a._requires_grad or b._requires_grad
            elif b.__class__ in _SCALARS:
                x, y = a._data, b
                needs_grad = a._requires_grad
            else:
                return _apply_general(op, inputs, attrs, st)
        elif a.__class__ in _SCALARS and b.__class__ in _TENSOR_TYPES:
            dev = b._device
            x, y = a, b._data
            needs_grad = b._requires_grad
        else:
            return _apply_general(op, inputs, attrs, st)
        if x is None or y is None:
            return _apply_general(op, inputs, attrs, st)
        try:
            out = op.forward(dev.xp, x, y, **attrs) if attrs else op.forward(dev.xp, x, y)
        except DualgraphError:
            raise
        except Exception as e:
            raise _forward_error(op, inputs, attrs, e) from e
    elif n == 1 and inputs[0].__class__ in _TENSOR_TYPES and inputs[0]._data is not None:
        a = inputs[0]
        dev = a._device
        needs_grad = a._requires_grad
        try:
            out = op.forward(dev.xp, a._data, **attrs) if attrs else op.forward(dev.xp, a._data)
        except DualgraphError:
            raise
        except Exception as e:
            raise _forward_error(op, inputs, attrs, e) from e
    else:
        return _apply_general(op, inputs, attrs, st)
    return _finish(op, inputs, attrs, out, dev, needs_grad and st.grad_enabled)


def _finish(op, inputs, attrs, out, dev, record):
    """Wrap forward's result(s) as tensors and, when recording, hang the backward node on them."""
    if op.n_out != 1:
        return _wrap_outputs(op, inputs, attrs, out, dev, record)
    if out.__class__ is not _ndarray and not is_array(out):
        out = dev.xp.asarray(out)
    result = _make(out, dev)
    if op.view:
        result._version = inputs[0]._version
        result._is_view = True
    if record and op.vjp is not None and out.dtype.kind in "fc":  # integer/bool results carry no gradient
        _record(op, inputs, attrs, result)
    return result


def binary_method(op, reflected=False):
    """`Tensor.__mul__` and friends: apply's tensor-tensor fast path inlined for one op.

    Operators on small tensors are dominated by Python overhead, so this skips the generic
    dispatch (one frame, the inputs tuple, the kind checks) when both operands are eager tensors
    on one device; everything else goes through `apply`.
    """
    forward = op.forward
    cpu_ufunc = getattr(_np, op.ufunc) if op.ufunc else None
    # op.ufunc is the forward on operands of the result's dtype: same-dtype floats always are, same-dtype
    # ints only where the ufunc keeps them (int / int is float32 here, float64 in numpy)
    ints_too = cpu_ufunc is not None and cpu_ufunc(_np.ones(1, _np.int64), _np.ones(1, _np.int64)).dtype == _np.int64
    saves_output = op.saves_output

    def method(a, b):
        if reflected:
            a, b = b, a
        st = STATE
        if st.tracer is None and a.__class__ is Tensor and b.__class__ is Tensor and a._device is b._device:
            try:
                if (cpu_ufunc is not None and a._device is CPU and a._data.dtype is b._data.dtype
                        and (ints_too or a._data.dtype.kind == "f")):
                    out = cpu_ufunc(a._data, b._data)  # mixed dtypes: forward casts to the promoted one
                else:
                    out = forward(a._device.xp, a._data, b._data)
            except DualgraphError:
                raise
            except Exception as e:
                if a._data is None or b._data is None:  # nodes of a static graph: build, don't run
                    return apply(op, (a, b))
                raise _forward_error(op, (a, b), _EMPTY, e) from e
            if out.__class__ is not _ndarray:
                out = a._device.xp.asarray(out)
            r = _new(Tensor)
            r._data = out
            r._device = a._device
            r._requires_grad = False
            r._grad_fn = None
            r._version = [0]
            # (no float check needed: only add/sub/mul/div come here, and a float operand that
            # requires grad makes their result float)
            if (a._requires_grad or b._requires_grad) and st.grad_enabled:
                node = Node(op, (a, b), _EMPTY, (a._requires_grad, b._requires_grad),
                            (a._version[0], b._version[0]), (a._grad_fn, b._grad_fn))
                if saves_output:
                    node._out = (out,)
                    node._out_versions = ((r._version, 0),)
                r._grad_fn = node
                r._requires_grad = True
            return r
        return apply(op, (a, b))

    method.__name__ = f"__{'r' if reflected else ''}{op.name}__"
    return method


def _record(op, inputs, attrs, result):
    needs, versions, fns = [], [], []
    for t in inputs:
        if t.__class__ in _TENSOR_TYPES:
            needs.append(t._requires_grad)
            versions.append(t._version[0])
            fns.append(t._grad_fn)
        else:
            needs.append(False)
            versions.append(-1)
            fns.append(None)
    node = Node(op, inputs, attrs, tuple(needs), tuple(versions), tuple(fns))
    if op.saves_output:
        node._out = (result._data,)
        node._out_versions = ((result._version, result._version[0]),)
    result._grad_fn = node
    result._requires_grad = True


def _device_mismatch(op, inputs):
    devs = [str(t._device) for t in inputs if isinstance(t, Tensor)]
    raise DeviceError(f"{op.name}: tensors on different devices ({' and '.join(devs)}); "
                      f"move them with .to(device) first" + _where())


def _apply_general(op, inputs, attrs, st):
    dev = None
    needs_grad = False
    arrays = []
    for t in inputs:
        if isinstance(t, Tensor):
            if t._data is None:
                owner = getattr(t, "_owner", None)
                if owner is not None:  # a node of a static graph: the op builds into that graph
                    return owner._apply(op, inputs, attrs)
                raise DualgraphError(f"{op.name}: a symbolic tensor from a finished trace was used eagerly")
            if dev is None:
                dev = t._device
            elif t._device is not dev:
                _device_mismatch(op, inputs)
            arrays.append(t._data)
            needs_grad = needs_grad or t._requires_grad
        elif isinstance(t, _SCALARS) or t is None:
            # a numpy scalar operand (np.float64 is a float) is weak like the Python number, as in PyTorch
            arrays.append(t.item() if isinstance(t, _np.generic) else t)
        else:
            return apply(op, tuple(_promote_input(x, inputs) for x in inputs), attrs)
    if dev is None:
        dev = CPU
    try:
        out = op.forward(dev.xp, *arrays, **attrs)
    except DualgraphError:
        raise
    except Exception as e:
        raise _forward_error(op, inputs, attrs, e) from e
    return _finish(op, inputs, attrs, out, dev, needs_grad and st.grad_enabled)


def _wrap_outputs(op, inputs, attrs, out, dev, record):
    outs = tuple(_make(o if is_array(o) else dev.xp.asarray(o), dev) for o in out)
    if record and op.vjp is not None:
        needs = tuple(isinstance(t, Tensor) and t._requires_grad for t in inputs)
        node = Node(op, inputs, attrs, needs, node_versions(inputs))
        if op.saves_output:
            node._out = tuple(o._data for o in outs)
            node._out_versions = tuple((o._version, 0) for o in outs)
        for i, o in enumerate(outs):
            if o._data.dtype.kind in "fc":
                o._grad_fn, o._out_index, o._requires_grad = node, i, True
    return outs


def _promote_input(x, inputs):
    if isinstance(x, Tensor) or isinstance(x, _SCALARS) or x is None:
        return x
    like = next((t for t in inputs if isinstance(t, Tensor)), None)
    if isinstance(x, (_np.generic,)) and like is not None:
        return x.item()
    try:
        return as_tensor(x, like=like)
    except DualgraphError:
        raise
    except Exception:
        raise DTypeError(f"expected a Tensor, array or number, got {type(x).__name__}") from None


def _where():
    line = user_line()
    return f" (at {line})" if line else ""


def _describe(x):
    if isinstance(x, Tensor):
        return f"{x.dtype}{list(x.shape)}"
    return repr(x)


def _forward_error(op, inputs, attrs, exc):
    desc = ", ".join(_describe(x) for x in inputs)
    msg = f"{op.name}: cannot apply to ({desc})"
    if attrs:
        msg += " with " + ", ".join(f"{k}={v!r}" for k, v in attrs.items() if not callable(v))
    msg += f": {exc}" + _where()
    if isinstance(exc, IndexError):
        from .errors import IndexOutOfRange
        return IndexOutOfRange(msg)
    text = str(exc)
    if isinstance(exc, TypeError) or "dtype" in text or "ufunc" in text:
        return DTypeError(msg)
    if any(w in text for w in ("shape", "broadcast", "align", "dimension", "axis", "size", "reshape")):
        return ShapeError(msg)
    from .errors import InvalidValue
    return InvalidValue(msg)  # e.g. numpy refusing integers to negative integer powers


# ---- helpers the engine needs ------------------------------------------------------------

def ones_like_tensor(t):
    return _make(t._device.xp.ones_like(t._data), t._device)


def zeros_like_tensor(t):
    return _make(t._device.xp.zeros_like(t._data), t._device)


def sum_to(g, shape):
    from .ops.reduction import sum_to as _sum_to
    return _sum_to(g, shape)
