"""The dispatch seam: one current `Mode` per thread (`STATE.mode`) decides what applying an op, an
in-place write, backward and a custom autograd.Function mean.

  EAGER (EagerMode)  runs `op.forward` on the inputs' backend namespace (numpy or cupy) and, in grad
                     mode, hangs an autograd Node on the result
  Tracer             (dualgraph.function.tracer) adds a node to the graph a @dg.function is traced into
  StaticBuilder      (dualgraph.static.graph) adds a node to an explicit define-then-run graph

Tensor methods, ops, autograd and the control-flow functions call the current mode and do not ask
which one it is (`Mode.symbolic` only says whether a graph is being built). `apply` and the tensor
operators (`binary_method`) keep the eager case inline, with fast paths for one and two tensor
operands on one device, so that an operator on small tensors costs little more than the numpy call;
every other mode gets the op through `Mode.apply`.
"""
import abc

import numpy as _np  # host-side conversions only; computation goes through device.xp

from . import dtypes as _dt
from ._state import STATE, _State
from .autograd.engine import run_backward
from .autograd.function import apply_eagerly as _apply_function_eagerly
from .autograd.graph import Node, node_versions
from .backend import CPU, is_array
from .errors import AutogradError, DeviceError, DTypeError, DualgraphError, IndexOutOfRange, InvalidValue, \
    ShapeError, user_line
from .tensor import _TENSOR_TYPES, INFERENCE_SCOPES, Tensor, _make, _mark_inference, as_tensor

_EMPTY = {}
_SCALARS = (int, float, bool)
_ndarray = _np.ndarray
_new = object.__new__


class Mode(abc.ABC):
    """The operations whose meaning depends on the mode. One instance is current per thread
    (`STATE.mode`); `using(mode)` switches."""

    symbolic = False  # tensors this mode makes stand for values of a graph being built, and hold no data

    @abc.abstractmethod
    def apply(self, op, inputs, attrs):
        """The result(s) of `op` on `inputs` (Tensors, Python scalars, None) with attributes `attrs`."""

    @abc.abstractmethod
    def apply_inplace(self, op, inputs, attrs, what):
        """Make inputs[0] hold op's result (`x[i] = v`); `op.inplace` writes it into that buffer."""

    @abc.abstractmethod
    def inplace(self, t, fn, other, what, keeps_old=False, ufunc=None):
        """Make `t` hold `fn(t)` (add_, mul_, copy_, ...): `other` is the operand, `keeps_old` says the
        vjp of fn reads t's old values, `ufunc` names the backend ufunc computing fn when nothing
        needs a gradient."""

    @abc.abstractmethod
    def fill(self, t, value):
        """t.fill_(value)."""

    @abc.abstractmethod
    def set_data(self, t, value):
        """`t.data = value`: new values outside autograd."""

    @abc.abstractmethod
    def move(self, op, x, device):
        """x on `device` through the op record `op` (to_device: its output lives on another device)."""

    @abc.abstractmethod
    def detach(self, t):
        """The same values, cut from autograd history."""

    @abc.abstractmethod
    def read_grad(self, t):
        """t.grad."""

    @abc.abstractmethod
    def write_grad(self, t, value):
        """t.grad = value (checked by the caller)."""

    @abc.abstractmethod
    def read_shape(self, t):
        """The shape of a symbolic tensor `t`, read by user code."""

    @abc.abstractmethod
    def no_value(self, t, what):
        """Raise the error for `what` (item(), bool(), numpy() ...) needing the values of symbolic `t`."""

    @abc.abstractmethod
    def backward(self, outputs, grad_outputs, retain_graph, create_graph, inputs=None):
        """Accumulate the gradients of `outputs` into the .grad of the leaves (or of `inputs`)."""

    @abc.abstractmethod
    def grad(self, outputs, grad_outputs, retain_graph, create_graph, inputs):
        """The gradients of `outputs` with respect to `inputs` (None where unused)."""

    @abc.abstractmethod
    def custom_function(self, cls, args, kwargs):
        """Apply the autograd.Function subclass `cls`."""

    @abc.abstractmethod
    def cond(self, pred, true_fn, false_fn, operands):
        """dg.cond."""

    @abc.abstractmethod
    def while_loop(self, cond_fn, body_fn, init_val):
        """dg.while_loop."""

    @abc.abstractmethod
    def filled(self, value, shape, dtype, device):
        """A tensor of `shape` (with symbolic sizes) holding `value`."""


# ---- eager application of an op -------------------------------------------------------------------

def apply(op, inputs, attrs=_EMPTY):
    """Apply `op` to `inputs` (Tensors or Python scalars) in the current mode."""
    st = STATE
    mode = st.mode
    if mode is not EAGER:
        return mode.apply(op, inputs, attrs)
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
                return _apply_general(op, inputs, attrs)
        elif a.__class__ in _SCALARS and b.__class__ in _TENSOR_TYPES:
            dev = b._device
            x, y = a, b._data
            needs_grad = b._requires_grad
        else:
            return _apply_general(op, inputs, attrs)
        try:
            out = op.forward(dev.xp, x, y, **attrs) if attrs else op.forward(dev.xp, x, y)
        except DualgraphError:
            raise
        except Exception as e:
            raise _forward_error(op, inputs, attrs, e) from e
    elif n == 1 and inputs[0].__class__ in _TENSOR_TYPES:
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
        return _apply_general(op, inputs, attrs)
    return _finish(op, inputs, attrs, out, dev, needs_grad and st.grad_enabled)


def binary_method(op, reflected=False):
    """`Tensor.__mul__` and friends: apply's tensor-tensor fast path inlined for one op.

    Operators on small tensors are dominated by Python overhead, so this skips the generic
    dispatch (one frame, the inputs tuple, the kind checks) when the mode is eager and both operands
    are plain tensors on one device; on the CPU it calls the record's `ufunc` directly for the dtypes
    it computes exactly (`Op.ufunc_dtypes`). Everything else goes through `apply`.
    """
    forward = op.forward
    cpu_ufunc = getattr(_np, op.ufunc) if op.ufunc else None
    exact = op.ufunc_dtypes(2)
    saves_output = op.saves_output

    def method(a, b):
        if reflected:
            a, b = b, a
        st = STATE
        if st.mode is EAGER and a.__class__ is Tensor and b.__class__ is Tensor and a._device is b._device:
            try:
                dt = a._data.dtype
                if dt is b._data.dtype and dt in exact and a._device is CPU:
                    out = cpu_ufunc(a._data, b._data)  # else forward casts to the result's dtype
                else:
                    out = forward(a._device.xp, a._data, b._data)
            except DualgraphError:
                raise
            except Exception as e:
                raise _forward_error(op, (a, b), _EMPTY, e) from e
            if out.__class__ is not _ndarray:
                out = a._device.xp.asarray(out)
            r = _new(Tensor)
            r._data = out
            r._device = a._device
            r._requires_grad = False
            r._grad_fn = None
            r._version = [0]
            if INFERENCE_SCOPES[0]:
                _mark_inference(r)
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


def _apply_general(op, inputs, attrs):
    dev = None
    needs_grad = False
    arrays = []
    for t in inputs:
        if isinstance(t, Tensor):
            if t._symbolic:
                return _outside_its_graph(op, inputs, attrs, t)
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
    return _finish(op, inputs, attrs, out, dev, needs_grad and STATE.grad_enabled)


def _outside_its_graph(op, inputs, attrs, t):
    """An eager op on a symbolic tensor: a node of a static graph builds into that graph (it knows its
    builder); a tensor of a finished trace is an error."""
    return _in_its_graph(t, op.name, "apply", op, inputs, attrs)


def _in_its_graph(t, what, method, *args):
    """Mode method `method` for symbolic `t` met in eager mode, run in the mode that built `t` (a static
    graph's builder: its nodes work outside its `as_default()` scope too)."""
    builder = t._builder
    if builder is None:
        raise DualgraphError(f"{what}: a symbolic tensor from a finished trace was used eagerly")
    with using(builder):
        return getattr(builder, method)(*args)


def _wrap_outputs(op, inputs, attrs, out, dev, record):
    outs = tuple(_make(o if is_array(o) else dev.xp.asarray(o), dev) for o in out)
    if record and op.vjp is not None:
        needs = tuple(isinstance(t, Tensor) and t._requires_grad for t in inputs)
        node = Node(op, inputs, attrs, needs, node_versions(inputs))
        if op.saves_output:
            node._out = tuple(o._data for o in outs)
            node._out_versions = tuple((o._version, 0) for o in outs)
        else:
            node._out_avals = tuple((o._data.shape, o._data.dtype) for o in outs)
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
        return IndexOutOfRange(msg)
    text = str(exc)
    if isinstance(exc, TypeError) or "dtype" in text or "ufunc" in text:
        return DTypeError(msg)
    if any(w in text for w in ("shape", "broadcast", "align", "dimension", "axis", "size", "reshape")):
        return ShapeError(msg)
    return InvalidValue(msg)  # e.g. numpy refusing integers to negative integer powers


# ---- the eager mode -------------------------------------------------------------------------------

class EagerMode(Mode):
    """Define-by-run: ops run at once on the backend; autograd records Nodes (dualgraph.autograd)."""

    def apply(self, op, inputs, attrs):
        return _apply_general(op, inputs, attrs)

    def apply_inplace(self, op, inputs, attrs, what):
        x = inputs[0]
        if x._symbolic:
            return _in_its_graph(x, what, "apply_inplace", op, inputs, attrs, what)
        x._check_inplace(what)
        needs = []
        for t in inputs:
            if isinstance(t, Tensor):
                if t._device is not x._device:
                    raise DeviceError(f"{what}: an operand is on {t._device}, the tensor on {x._device}")
                needs.append(t._requires_grad)
            else:
                needs.append(False)
        tracked = STATE.grad_enabled and any(needs)
        if tracked and x._is_view:
            raise AutogradError(f"{what}: in-place writes into a view that takes part in autograd are not "
                                f"supported; clone() it first or use the out-of-place op")
        op.inplace(x._device.xp, *(t._data if isinstance(t, Tensor) else t for t in inputs), **attrs)
        x._version[0] += 1
        if tracked:
            before = _make(x._data, x._device)  # stands for x's history before the write
            before._grad_fn, before._out_index, before._requires_grad = x._grad_fn, x._out_index, x._requires_grad
            ins = (before, *inputs[1:])
            x._grad_fn = Node(op, ins, attrs, tuple(needs), node_versions(ins))
            x._out_index, x._requires_grad = 0, True
        return x

    def inplace(self, t, fn, other, what, keeps_old=False, ufunc=None):
        """While recording, `fn` runs on a stand-in for `t`'s history (its grad_fn; a copy of its values
        when the vjp reads them, `keeps_old`), not on `t`: so the new node is no self-loop, the version
        bump below does not invalidate it, and the gradient reaches what `t` was computed from."""
        if t._symbolic:
            return _in_its_graph(t, what, "inplace", t, fn, other, what, keeps_old, ufunc)
        tracked = STATE.grad_enabled and (t._requires_grad or (isinstance(other, Tensor) and other._requires_grad))
        if ufunc is not None and not tracked:
            return _inplace_ufunc(t, ufunc, other, what)
        src = t
        if tracked:
            if t._is_view:
                raise AutogradError(f"{what}: in-place change of a view that takes part in autograd is not "
                                    f"supported; clone() the view first, or for `y[idx] += v` write the "
                                    f"out-of-place `y = dg.index_put(y, idx, y[idx] + v)`")
            src = _make(t._data.copy() if keeps_old else t._data, t._device)
            src._grad_fn, src._out_index, src._requires_grad = t._grad_fn, t._out_index, t._requires_grad
        result = fn(src)
        if result.shape != t.shape:
            raise ShapeError(f"{what}: in-place result has shape {result.shape}, tensor has shape {t.shape}")
        if result.dtype != t.dtype and not _np.can_cast(result.dtype, t.dtype, "same_kind"):
            raise DTypeError(f"{what}: result dtype {result.dtype} can't be cast in place to the tensor's "
                             f"dtype {t.dtype}")
        t._data[...] = result._data
        t._version[0] += 1
        if tracked:
            # a result that no longer depends on anything that requires grad (copy_ of a constant) detaches
            t._grad_fn, t._out_index = result._grad_fn, result._out_index
            t._requires_grad = result._requires_grad
        return t

    def fill(self, t, value):
        if t._symbolic:
            return _in_its_graph(t, "fill_", "fill", t, value)
        t._data.fill(value)
        t._version[0] += 1
        if STATE.grad_enabled and t._grad_fn is not None:
            # the values no longer depend on the history: detach rather than send gradient through it
            t._grad_fn, t._out_index, t._requires_grad = None, 0, False
        return t

    def set_data(self, t, value):
        if value._data is t._data:
            return  # `t.data -= x`: the in-place op already wrote through the detached alias
        t._data, t._device = value._data, value._device
        t._version = [t._version[0] + 1]  # its own counter now, even if it was a view
        if t._is_view:
            t._is_view = False

    def move(self, op, x, device):
        out = _make(op.forward(None, x._data, device), device)  # through the record, like apply()
        if x._requires_grad and STATE.grad_enabled:
            out._grad_fn = Node(op, (x,), {"device": device}, (True,), (x._version[0],))
            out._requires_grad = True
        return out

    def detach(self, t):
        if t._symbolic:
            return _in_its_graph(t, "detach", "detach", t)
        out = _make(t._data, t._device)
        out._version = t._version
        return out

    def read_grad(self, t):
        return t._grad

    def write_grad(self, t, value):
        t._grad = value

    def read_shape(self, t):
        return t._aval.shape

    def no_value(self, t, what):
        builder = t._builder
        if builder is None:
            raise DualgraphError(f"{what}: this tensor is symbolic (from a finished trace) and has no value")
        builder.no_value(t, what)

    def backward(self, outputs, grad_outputs, retain_graph, create_graph, inputs=None):
        if retain_graph is None:
            retain_graph = create_graph
        if inputs is None:
            run_backward(outputs, grad_outputs, retain_graph, create_graph)
            return
        grads = run_backward(outputs, grad_outputs, retain_graph, create_graph, inputs=inputs)
        for t, g in zip(inputs, grads):
            if g is not None and t._grad_req != "null":  # same rules as a full backward
                t._grad = g if t._grad is None or t._grad_req == "write" else t._grad + g

    def grad(self, outputs, grad_outputs, retain_graph, create_graph, inputs):
        return run_backward(outputs, grad_outputs, retain_graph, create_graph, inputs=inputs)

    def custom_function(self, cls, args, kwargs):
        return _apply_function_eagerly(cls, args, kwargs)

    def cond(self, pred, true_fn, false_fn, operands):
        return true_fn(*operands) if bool(pred) else false_fn(*operands)

    def while_loop(self, cond_fn, body_fn, init_val):
        val = init_val
        while bool(cond_fn(val)):
            val = body_fn(val)
        return val

    def filled(self, value, shape, dtype, device):
        raise ShapeError(f"cannot create a tensor of symbolic shape {shape} outside the trace that made its dims")


def _inplace_ufunc(t, ufunc, other, what):
    """add_/sub_/mul_/div_ without autograd: one ufunc writing straight into t's buffer (an
    out-of-place result plus a copy would read and write the memory twice more)."""
    if isinstance(other, Tensor):
        if other._device is not t._device:
            raise DeviceError(f"{what}: tensor is on {t._device}, operand on {other._device}")
        other = other._data
    elif isinstance(other, _np.generic):
        other = other.item()  # weak, like a Python number
    elif not isinstance(other, _SCALARS):
        other = as_tensor(other, like=t)._data
    if other.__class__ not in _SCALARS and other.dtype != t.dtype and _dt.result_type(t._data, other) == t.dtype:
        other = other.astype(t.dtype)  # compute as `t + other` does (numpy would widen f16 += f32[])
    try:
        getattr(t._device.xp, ufunc)(t._data, other, out=t._data, casting="same_kind")
    except TypeError as e:
        raise DTypeError(f"{what}: cannot write the result into a {t.dtype} tensor in place: {e}") from None
    except ValueError as e:
        raise ShapeError(f"{what}: operand of shape {_np.shape(other)} does not broadcast to the "
                         f"tensor's shape {tuple(t.shape)}: {e}") from None
    t._version[0] += 1
    return t


EAGER = EagerMode()
_State.mode = EAGER  # every thread starts eager


class using:
    """`with using(mode):` makes `mode` current in this thread, then restores the previous one."""

    __slots__ = ("mode", "prev")

    def __init__(self, mode):
        self.mode = mode

    def __enter__(self):
        self.prev = STATE.mode
        STATE.mode = self.mode
        return self.mode

    def __exit__(self, *exc):
        STATE.mode = self.prev


# ---- tracing from below the tracer's layer --------------------------------------------------------

_TRACER = []


def register_tracer(cls):
    """dualgraph.function.tracer registers its Tracer class, for `new_tracer`."""
    _TRACER[:] = [cls]
    return cls


def new_tracer(graph):
    """A fresh tracing mode building into `graph`, for code below the tracer's layer that traces a
    function to read its graph (`Op.vjp_reads` traces a vjp, autodiff replays a graph with its backward)."""
    return _TRACER[0](graph)
