"""The tracing mode: the graph builder that `dualgraph.dispatch.apply` hands ops to while
`@dg.function` traces (and, subclassed, while a static graph is built).

Symbolic tensors (`SymbolicTensor`: a shape and dtype, `_aval`, and no data) stand for graph
values; the tracer maps each one (by identity) to the graph `Value` it stands for. Tensors the
traced code reads that are not arguments (closure, module parameters, optimizer state) become
*captured* graph inputs, read at every call. In-place updates are functionalized: the tensor is
rebound to a new Value, and when it is an argument or a captured tensor the final Value is written
back after each call.

While grad mode is on, every op with a vjp whose inputs require grad is also appended to a tape
(`Tracer.tape`); `loss.backward()` inside a trace runs reverse mode over that tape with the op
table's vjp rules, which themselves trace, so the backward lands in the same graph.
"""
import os
import sys

import numpy as np

from .._state import STATE
from ..autograd.function import FunctionCtx
from ..autograd.graph import running_backward
from ..autograd.modes import no_grad
from ..backend import CPU, is_array
from ..dispatch import Mode, apply, register_tracer
from ..errors import AutogradError, DeviceError, DualgraphError, ShapeError, user_line
from ..graph.avals import Aval, Dim
from ..graph.ir import Graph
from ..ops.creation import full_like
from ..ops.dims import _OPS, DimExpr, SymbolicDim, size_needed, symbolic_size
from ..ops.elementwise import COPY, astype
from ..ops.reduction import COUNT
from ..ops.shape import BROADCAST_TO
from ..tensor import Tensor, _Size, as_tensor
from . import control
from .autodiff import reverse

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TENSOR_PY = os.path.join(_PKG, "tensor.py")
_HERE = os.path.abspath(__file__)
# frames between user code and the tracer when an operator or method is applied
_DISPATCH_FILES = {_TENSOR_PY, _HERE, os.path.join(_PKG, "_methods.py"), os.path.join(_PKG, "dispatch.py")}
# frames between user code and read_shape when a shape is read (SymbolicTensor's properties)
_SHAPE_FILES = {_TENSOR_PY, _HERE}
_SCALARS = (int, float, bool)


class TraceError(DualgraphError, TypeError):
    """Something @dg.function cannot trace; the message names the user's line and the fix."""


class ConcretizationError(TraceError):
    """Python needed the value of a traced tensor (if t:, float(t), t.item(), t.numpy(), ...)."""


class FrozenValue:
    """A Python value the trace baked into the graph, and where the user's code produced it."""

    __slots__ = ("kind", "what", "value", "where")

    def __init__(self, kind, what, value, where):
        self.kind, self.what, self.value, self.where = kind, what, value, where

    def __repr__(self):
        where = _short(self.where)
        return f"{self.kind} {self.what} = {self.value!r}" + (f"  ({where})" if where else "")


def _short(src):
    if not src:
        return ""
    path, _, line = src.rpartition(":")
    return f"{os.path.basename(path)}:{line}"


class _TracedGradFn:
    """What `grad_fn` shows on a traced tensor that requires grad (the real backward is on the graph)."""

    __slots__ = ("op",)

    def __init__(self, op):
        self.op = op

    def name(self):
        return self.op.grad_name

    next_functions = ()

    def __repr__(self):
        return f"<{self.op.grad_name} (traced)>"


class SymbolicTensor(Tensor):
    """A tensor standing for a value of a graph being built: shape and dtype (`_aval`), no data.

    Reading its shape or values asks the current mode: the tracer notes a shape read (it freezes into
    the trace) and refuses values with an error pointing at dg.cond / dg.while_loop."""

    __slots__ = ()
    _symbolic = True
    _builder = None  # the static-graph builder whose node this is (traced tensors keep no builder)

    @property
    def shape(self):
        return STATE.mode.read_shape(self)

    @property
    def ndim(self):
        return len(self._aval.shape)

    @property
    def dtype(self):
        return self._aval.dtype

    @property
    def size(self):
        shape = self.shape
        if any(isinstance(d, SymbolicDim) for d in shape):
            return symbolic_size(shape)
        return _Size(shape)

    def numel(self):
        n = self.size   # a size expression when traced with symbolic dims
        return int(n) if isinstance(n, _Size) else n

    def __len__(self):
        shape = self.shape
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        if isinstance(shape[0], SymbolicDim):
            raise size_needed(shape[0], "len()")
        if not isinstance(shape[0], int):
            STATE.mode.no_value(self, "len()")
        return shape[0]

    def numpy(self):
        STATE.mode.no_value(self, "numpy()")

    asnumpy = numpy

    def __array__(self, dtype=None, copy=None):
        STATE.mode.no_value(self, "np.asarray()")

    def item(self):
        STATE.mode.no_value(self, "item()")

    def __bool__(self):
        STATE.mode.no_value(self, "bool()")

    def __iter__(self):
        if not (self._aval.shape and isinstance(self._aval.shape[0], int)):
            STATE.mode.no_value(self, "iteration over a tensor of unknown length")
        return super().__iter__()

    def __deepcopy__(self, memo):
        STATE.mode.no_value(self, "copy.deepcopy")

    def __repr__(self):
        return f"Tensor(traced {self._aval})"

    __str__ = __repr__


_new = object.__new__


def symbolic(aval, device):
    t = _new(SymbolicTensor)
    t._data = None
    t._device = device
    t._requires_grad = False
    t._grad_fn = None
    t._version = [0]
    t._aval = aval
    return t


class TapeRecord:
    __slots__ = ("op", "inputs", "attrs", "outputs", "needs", "subgraphs", "custom")

    def __init__(self, op, inputs, attrs, outputs, needs, subgraphs=None, custom=None):
        self.op, self.inputs, self.attrs, self.outputs = op, inputs, attrs, outputs
        self.needs, self.subgraphs, self.custom = needs, subgraphs or {}, custom


class Tracer(Mode):
    """The tracing mode: ops become nodes of `graph`, in-place writes rebind tensors to new values,
    backward is reverse mode over the tape of recorded ops (function/autodiff)."""

    symbolic = True

    def __init__(self, graph=None, parent=None, strict=False, shapes_declared=False):
        self.graph = graph or Graph()
        self.parent = parent
        self.strict = strict
        self.shapes_declared = shapes_declared
        self.vals = {}          # id(tensor) -> Value
        self.keep = []          # strong refs while tracing, so ids stay unique
        self.tensor_of = {}     # id(Value) -> symbolic Tensor standing for it
        self.captured = []      # [tensor, Value] concrete tensors read from outside the arguments
        self.outer = []         # (sub-tracers) parent Values lifted into this subgraph, in input order
        self.lifted = {}        # id(parent Value) -> its input Value here (one input per parent Value)
        self.outer_tensor = {}  # id(parent Value) -> the enclosing tensor read (for its requires_grad)
        self.tape = []
        self.mutations = {}     # id(tensor) -> [tensor, Value]  in-place updates of inputs/captured
        self.overwritten = {}   # id(Value) -> (Value an in-place op replaced, len(graph.nodes) when that op began)
        self.grad_writes = {}   # id(tensor) -> [tensor, Value or None]
        self.grad_reads = {}    # id(tensor) -> [tensor, was_none]
        self.grad_parent = {}   # id(grad tensor) -> owner tensor (captured grads are reached via owner.grad)
        self.arg_tensors = {}   # id(symbolic arg tensor) -> flat argument index
        self.frozen = []
        self._shape_reads = set()
        self._numbers = set()
        self.devs = {}          # id(Value) -> device
        self.args = {}          # id(symbolic argument tensor) -> [tensor, Value, flat index]
        self.did_backward = False
        self.dim_origin = {}    # symbolic Dim -> (input Value, axis) it was read from
        self._dim_tensors = {}
        self.has_custom = False

    # ---- values and tensors --------------------------------------------------------------------
    def sym(self, value, device, requires_grad=False):
        device = device or CPU
        t = symbolic(value.aval, device)
        self.devs.setdefault(id(value), device)
        if requires_grad:
            t._requires_grad = True
        self.vals[id(t)] = value
        self.keep.append(t)
        self.tensor_of.setdefault(id(value), t)
        return t

    def device_of(self, value):
        return self.devs.get(id(value), CPU)

    def tensor_for(self, value, device=None):
        """A symbolic tensor bound to exactly `value` (for vjp contexts)."""
        if value is None:
            return None
        if value.weak:
            return value.const
        t = self.tensor_of.get(id(value))
        if t is None or self.vals.get(id(t)) is not value:
            t = symbolic(value.aval, device or self.device_of(value))
            self.vals[id(t)] = value
            self.keep.append(t)
            self.tensor_of[id(value)] = t
        return t

    def value_of(self, x):
        if type(x) is not Tensor and not isinstance(x, Tensor):
            return self._nontensor_value(x)
        v = self.vals.get(id(x))
        if v is not None:
            return v
        if x._symbolic:
            if self.parent is not None:
                pv = self.parent.value_of(x)
                return self._lift(x, pv)
            raise TraceError(f"a traced tensor from another (finished) trace was used here{_at()}; "
                             f"return it from the traced function instead of storing it outside")
        if self.parent is not None:
            pv = self.parent.value_of(x)
            return self._lift(x, pv)
        v = self.graph.add_input(Aval(x.shape, x.dtype))
        self.devs[id(v)] = x._device
        self.captured.append([x, v, user_line()])
        self.vals[id(x)] = v
        self.keep.append(x)
        return v

    def _lift(self, x, pv):
        # two tensors can share a parent Value (x and x.detach() of a tensor that needs no grad): one
        # input for both, else the second lift replaced the first and the subgraph lost an input
        v = self.lifted.get(id(pv))
        if v is None:
            v = self.lifted[id(pv)] = self.graph.add_input(pv.aval)
            self.devs[id(v)] = x._device
            self.outer.append(pv)
        if id(pv) not in self.outer_tensor or (x._requires_grad and not self.outer_tensor[id(pv)]._requires_grad):
            self.outer_tensor[id(pv)] = x
        self.vals[id(x)] = v
        self.keep.append(x)
        return v

    def _nontensor_value(self, x):
        if x is None:
            return None
        if isinstance(x, np.generic):
            x = x.item()
        if isinstance(x, _SCALARS):
            self._note_number(x)
            return self.graph.add_scalar(x)
        if is_array(x) or isinstance(x, (list, tuple)):
            arr = np.asarray(x) if not is_array(x) else x
            if arr.dtype == np.float64 and not is_array(x):
                arr = arr.astype(np.float32)
            v = self.graph.add_const(arr)
            self.frozen.append(FrozenValue("array constant", f"{type(x).__name__} {v.aval}", _preview(arr),
                                           user_line()))
            return v
        if isinstance(x, (Dim,)):
            raise TraceError(f"the symbolic dim {x} was used as a number{_at()}; this trace treats that "
                             f"dim as unknown. Pass shapes through ops (reshape(-1), x.mean()) instead")
        raise TraceError(f"cannot use a {type(x).__name__} as an operand while tracing{_at()}")

    def _note_number(self, x):
        """List a Python number baked into the graph unless it is a literal of the user's code.

        A number read from a dict, an attribute or a computation (`cfg["lr"]`, `self.scale`,
        `len(xs) / 2`) is frozen at trace time; listing it with the line keeps that visible."""
        if isinstance(x, bool):
            return
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename in _DISPATCH_FILES:
            frame = frame.f_back
        if frame is None or os.path.abspath(frame.f_code.co_filename).startswith(_PKG):
            return  # a number dualgraph's own composites or vjps use, not one the user passed
        if any(type(c) is type(x) and c == x for c in frame.f_code.co_consts):
            return  # a literal in the user's code: it is meant to be a constant
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        root = self.root()
        key = ("number", x, where)
        if key not in root._numbers:
            root._numbers.add(key)
            root.frozen.append(FrozenValue("number", "(Python value used as a constant)", x, where))

    def child(self, name):
        """A tracer for a subgraph (a branch or loop body) that lifts the values it reads from this one."""
        return Tracer(Graph(name), parent=self, strict=self.strict, shapes_declared=self.shapes_declared)

    # ---- the mode interface ------------------------------------------------------------------------
    def apply(self, op, inputs, attrs, subgraphs=None, custom=None):
        if any(isinstance(x, Dim) for x in inputs):
            inputs = self._dims_as_tensors(inputs)
        vals, ins, dev, rg = [], [], None, False
        for x in inputs:
            v = self.value_of(x)
            vals.append(v)
            if v is None:
                ins.append(None)
            elif v.weak:
                ins.append(v.const)
            else:
                ins.append(v.aval)
            if isinstance(x, Tensor):
                if dev is None:
                    dev = x._device
                elif x._device is not dev and not op.device_attr:
                    raise DeviceError(f"{op.name}: tensors on different devices ({dev} and {x._device}); "
                                      f"move them with .to(device) first{_at()}")
                rg = rg or x._requires_grad
        if op.shape_from_values is True or (op.shape_from_values and op.shape_from_values(*ins, **attrs)):
            raise TraceError(f"{op.name}: its output shape depends on the input values (nonzero, a boolean mask), "
                             f"so it cannot be traced{_at()}; compute it outside @dg.function, or keep the shape "
                             f"with a mask: dg.where(mask, x, 0)")
        try:
            out = op.infer(*ins, subgraphs=subgraphs, **attrs) if op.extra.get("subgraphs") else \
                op.infer(*ins, **attrs)
        except DualgraphError as e:
            raise type(e)(f"{e} (while tracing {op.name}{_at()})") from None
        except Exception as e:
            raise TraceError(f"the tracer cannot handle op {op.name!r}{_at()}: its shape rule failed on "
                             f"({', '.join(str(a) for a in ins)}): {type(e).__name__}: {e}") from None
        multi = op.n_out != 1
        avals = tuple(out) if multi else (out,)
        if op.device_attr:
            dev = attrs[op.device_attr]
        dev = dev or CPU
        node = self.graph.add_node(op, vals, attrs, avals, user_line(), subgraphs)
        grad_on = rg and STATE.grad_enabled and op.vjp is not None and not attrs.get("stop_gradient")
        outs = []
        for o in node.outputs:
            t = self.sym(o, dev)
            if grad_on and o.aval.dtype.kind == "f":
                t._requires_grad = True
                t._grad_fn = _TracedGradFn(op)
            if op.view:
                t._is_view = True
            outs.append(t)
        if grad_on:
            needs = tuple(isinstance(x, Tensor) and x._requires_grad for x in inputs)
            self.tape.append(TapeRecord(op, vals, attrs, node.outputs, needs, subgraphs, custom))
        return tuple(outs) if multi else outs[0]

    # ---- symbolic dims used as numbers ---------------------------------------------------------------
    def _dims_as_tensors(self, inputs):
        """A symbolic size used as an operand (x / x.shape[0]) is computed on the graph at run time, in
        the dtype of the other operand (as a Python number would promote)."""
        like = next((x for x in inputs if isinstance(x, Tensor)), None)
        out = []
        for x in inputs:
            if isinstance(x, Dim):
                t = self.dim_tensor(x)
                if like is not None and (like.dtype.kind == "f" or t.dtype.kind != "f"):
                    t = astype(t, like.dtype) if t.dtype != like.dtype and like.dtype.kind in "fiu" else t
                elif t.dtype.kind == "f":
                    t = astype(t, np.float32)
                x = t
            out.append(x)
        return tuple(out)

    def dim_tensor(self, d):
        cached = self._dim_tensors.get(d)
        if cached is not None:
            return cached
        if isinstance(d, DimExpr):
            a, b = (self.dim_tensor(x) if isinstance(x, Dim) else x for x in d.args)
            t = _OPS[d.op](a, b)
        else:
            origin = self.root().dim_origin.get(d)
            if origin is None:
                raise TraceError(f"the symbolic dim {d} was used as a number{_at()}, but this trace does not know "
                                 f"which input it comes from")
            v, axis = origin
            t = apply(COUNT, (self.root().tensor_for(v),), {"axes": (axis,), "dtype": np.dtype(np.int64)})
        self._dim_tensors[d] = t
        return t

    def no_value(self, tensor, what):
        raise ConcretizationError(
            f"{what} needs the value of a traced tensor ({tensor._aval}){_at()}, but inside @dg.function "
            f"values are only known when the compiled graph runs. Python control flow on tensor values "
            f"cannot be traced: use dg.where(cond, a, b) for elementwise choices, "
            f"dg.cond(pred, true_fn, false_fn, *operands) for branches and "
            f"dg.while_loop(cond_fn, body_fn, init_val) (or dg.fori_loop) for loops; or pass the value as a "
            f"Python number (a static argument, see static_argnames=) if it is known before the call")

    def read_shape(self, t):
        shape = t._aval.shape
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename in _SHAPE_FILES:
            frame = frame.f_back
        if frame is None or os.path.abspath(frame.f_code.co_filename).startswith(_PKG):
            return shape
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        key = (where, shape)
        if key not in self._shape_reads:
            self._shape_reads.add(key)
            if self.strict and not self.shapes_declared and any(isinstance(d, int) for d in shape):
                raise TraceError(f"strict=True: reading the shape of a traced tensor ({t._aval}) at {where} "
                                 f"would freeze it into the graph; declare the shapes with input_signature= "
                                 f"(None for dims that vary) or pass strict=False")
            self.root().frozen.append(FrozenValue("shape", f"of {t._aval}", tuple(shape), where))
        return shape

    def root(self):
        t = self
        while t.parent is not None:
            t = t.parent
        return t

    def read_grad(self, t):
        w = self.grad_writes.get(id(t))
        if w is not None:
            return w[1]
        root = self.root()
        if root is not self:
            return root.read_grad(t)
        if t._symbolic and id(t) not in self.args:
            return None  # a tensor the trace made has no .grad (and must not become a call-time guard)
        if id(t) not in self.grad_reads:
            self.grad_reads[id(t)] = [t, t._grad is None]
            self.keep.append(t)
        g = t._grad
        if g is not None:
            self.grad_parent[id(g)] = t
        return g

    def write_grad(self, t, value):
        root = self.root()
        if value is not None:
            if not isinstance(value, Tensor):
                value = as_tensor(value, like=t)
            if tuple(value.shape) != tuple(t.shape):
                raise ShapeError(f"assigned grad has shape {value.shape} but the tensor has shape {t.shape}")
        root.grad_writes[id(t)] = [t, value]
        root.keep.append(t)

    def detach(self, t):
        if not t._requires_grad:
            return self.sym(self.value_of(t), t._device)
        # a node, not the same Value under a new tensor: joint_graph replays the graph (and cond/while
        # look tensors up by Value), so a shared Value let gradients flow through x.detach()
        return self.apply(COPY, (t,), {"stop_gradient": True})

    def inplace(self, t, fn, other, what, keeps_old=False, ufunc=None):
        """Functionalized: t stands for the graph value fn(t) from now on."""
        since = len(self.graph.nodes)
        return self.rebind(t, fn(t), what, since)

    def apply_inplace(self, op, inputs, attrs, what):
        x = inputs[0]
        x._check_inplace(what)
        return self.rebind(x, self.apply(op, inputs, attrs), what)

    def fill(self, t, value):
        return self.rebind(t, full_like(t, value), "fill_")

    def set_data(self, t, value):
        self.rebind(t, value, "data=")

    def move(self, op, x, device):
        return self.apply(op, (x,), {"device": device})

    def rebind(self, t, result, what, since=None):
        """Rebind t to `result`; `since` is len(graph.nodes) before the in-place op computed `result`
        (the op's own nodes may read t's old value, as eager's read a private copy)."""
        if t._is_view and t._symbolic:
            raise TraceError(f"{what}: in-place change of a view inside @dg.function is not supported{_at()}: "
                             f"the write would have to reach the tensor it views. Write to the base tensor "
                             f"(`x[idx] = v`) or use an out-of-place op")
        if not isinstance(result, Tensor):
            result = as_tensor(result, like=t)
        if tuple(result.shape) != tuple(t.shape):
            raise ShapeError(f"{what}: in-place result has shape {tuple(result.shape)}, tensor has shape "
                             f"{tuple(t.shape)}{_at()}")
        if result.dtype != t.dtype:
            result = astype(result, t.dtype)
        old = self.value_of(t)  # captures t when it is an outside tensor written before being read
        self.overwritten.setdefault(id(old), (old, len(self.graph.nodes) if since is None else since))
        new = self.value_of(result)
        self.vals[id(t)] = new
        if t._symbolic:
            t._aval = new.aval
            if STATE.grad_enabled:
                t._requires_grad = result._requires_grad
                t._grad_fn = result._grad_fn
        root_owned = not t._symbolic or id(t) in self.args
        if root_owned:
            self.mutations[id(t)] = [t, new]
        return t

    def _is_input(self, v):
        return v is not None and v.producer is None and v.const is None and any(v is i for i in self.graph.inputs)

    def custom_function(self, cls, args, kwargs):
        """Trace a custom autograd.Function: its forward inline, its backward as the vjp on the tape."""
        # the ONNX exporter refuses graphs with custom Functions (their backward is Python), naming them
        self.root().graph.meta.setdefault("custom_functions", []).append((cls.__name__, user_line()))
        ctx = FunctionCtx()
        tensors = [a for a in args if isinstance(a, Tensor)]
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        if STATE.grad_enabled and any(t._requires_grad for t in tensors):
            positions = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor))
            ovals = [self.value_of(o) for o in outs]
            rec = TapeRecord(_CustomTraced(cls), [self.value_of(t) for t in tensors], {}, ovals,
                             tuple(t._requires_grad for t in tensors),
                             custom=(ctx, positions, len(args)))
            self.tape.append(rec)
            self.root().has_custom = True
            for o in outs:
                if o.dtype.kind == "f" and id(o) not in getattr(ctx, "_non_differentiable", ()):
                    o._requires_grad = True
        return out

    # ---- reverse mode inside the trace --------------------------------------------------------------
    def backward(self, outputs, grad_outputs, retain_graph, create_graph, inputs=None):
        for out, g in zip(outputs, grad_outputs):
            self._backward(out, g, inputs)

    def _backward(self, loss, gradient, targets):
        if not loss._requires_grad:
            raise AutogradError("element of outputs does not require grad and has no grad_fn" + _at())
        self.did_backward = True
        leaves = self._leaves() if targets is None else [(t, self.value_of(t)) for t in targets]
        grads = reverse(self, [loss], [gradient], [v for _, v in leaves])
        with running_backward():  # callbacks queued by the hooks (DDP's gradient reduction) trace at the end
            for (t, _), g in zip(leaves, grads):
                if g is None or t._grad_req == "null":
                    continue
                cur = self.read_grad(t)
                if t._grad_req == "write" or cur is None:
                    self.write_grad(t, g.detach() if isinstance(g, Tensor) else g)
                else:
                    with _grad_off():
                        self.write_grad(t, cur + g)
                for hook in tuple(t._post_hooks or ()):
                    hook(t)

    def grad(self, outputs, grad_outputs, retain_graph, create_graph, inputs):
        return reverse(self, outputs, grad_outputs, [self.value_of(t) for t in inputs])

    def cond(self, pred, true_fn, false_fn, operands):
        return control.trace_cond(self, pred, true_fn, false_fn, operands)

    def while_loop(self, cond_fn, body_fn, init_val):
        return control.trace_while(self, cond_fn, body_fn, init_val)

    def filled(self, value, shape, dtype, device):
        """A tensor of a size only known when the traced graph runs (`dg.zeros((b, t))` with `b, t` read
        from an input's shape): the fill value broadcast to that shape, which the compiled graph and an
        exported model compute from the input shapes (ONNX: Shape/Gather/Concat -> Expand)."""
        if isinstance(value, Dim):   # dg.full(shape, x.shape[1]): the size, computed by the graph
            base = astype(self.dim_tensor(value), dtype)
        else:
            base = self.sym(self.graph.add_const(np.asarray(value, dtype=dtype)), device)
        # a copy: the broadcast is a read-only view, a created tensor is writable like an eager one
        return self.apply(COPY, (self.apply(BROADCAST_TO, (base,), {"shape": tuple(shape)}),), {})

    def _leaves(self):
        out, seen = [], set()
        for x, v, _ in self.captured:
            if x._requires_grad and x._grad_fn is None and id(x) not in seen:
                seen.add(id(x))
                out.append((x, self._leaf_value(x, v)))
        for t, v, _ in self.args.values():
            if t._requires_grad and id(t) not in seen:
                seen.add(id(t))
                out.append((t, v))
        return out

    def _leaf_value(self, x, v):
        return v  # the Value the leaf had when captured (its gradient flows to the input)


class _CustomTraced:
    """Tape record op for a custom autograd.Function traced inline."""

    n_out = 1
    view = False

    def __init__(self, cls):
        self.cls = cls
        self.name = cls.__name__
        self.grad_name = cls.__name__ + "Backward"

    def vjp(self, ctx, g):
        fctx, positions, n_args = ctx.custom
        gs = g if isinstance(g, tuple) else (g,)
        result = self.cls.backward(fctx, *gs)
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) == n_args:
            result = tuple(result[i] for i in positions)
        return result


class _grad_off:
    def __enter__(self):
        self.prev = STATE.grad_enabled
        STATE.grad_enabled = False

    def __exit__(self, *exc):
        STATE.grad_enabled = self.prev


def _at():
    line = user_line()
    return f" at {line}" if line else ""


def _preview(arr):
    arr = np.asarray(arr) if is_array(arr) and not isinstance(arr, np.ndarray) else arr
    try:
        return arr.tolist() if arr.size <= 8 else f"<array {arr.dtype}{list(arr.shape)}>"
    except Exception:
        return "<array>"


register_tracer(Tracer)

__all__ = ["Tracer", "SymbolicTensor", "TraceError", "ConcretizationError", "FrozenValue"]
