"""Custom differentiable functions: subclass `dg.autograd.Function` with forward/backward.

`Function.apply` asks the current mode; `apply_eagerly` is what the eager mode does with it (a
tracer runs forward inline and puts backward on its tape instead).
"""
import weakref

from .._state import STATE
from ..backend import device_of_array
from ..errors import AutogradError
from ..tensor import Tensor, _make
from .graph import Node
from .modes import no_grad


class _SavedOutput:
    """An output of the Function kept by save_for_backward: its array, not the Tensor, so that the
    output -> node -> ctx -> output cycle never forms; rebuilt (with grad_fn) when backward reads it."""

    __slots__ = ("index", "data", "counter", "version")

    def __init__(self, index, tensor):
        self.index, self.data, self.counter, self.version = index, tensor._data, tensor._version, tensor._version[0]


class FunctionCtx:
    """The `ctx` passed to forward and backward."""

    def __init__(self):
        self._saved = ()
        self._saved_versions = ()
        self._node = None          # weakref to the backward node, set by Function.apply
        self._name = "Function"
        self.needs_input_grad = ()
        self._non_differentiable = set()

    def save_for_backward(self, *tensors):
        self._saved = tensors
        self._saved_versions = tuple(t._version[0] if hasattr(t, "_version") else None for t in tensors)

    @property
    def saved_tensors(self):
        """The tensors given to save_for_backward; raises if one was modified in place since."""
        if self._saved is None:
            raise AutogradError(f"{self._name}: saved tensors were freed after the first backward. Pass "
                                f"retain_graph=True to the first backward() to backward through it again.")
        out = []
        for t, v in zip(self._saved, self._saved_versions):
            if isinstance(t, _SavedOutput):
                if t.counter[0] != t.version:
                    raise AutogradError(f"{self._name}: output {t.index} saved for backward was modified by an "
                                        f"in-place operation afterwards. Clone it before modifying it.")
                node = self._node() if self._node is not None else None
                if node is not None:
                    t = Tensor._from_node_output(t.data, node, t.index)
                else:
                    t = _make(t.data, device_of_array(t.data))
            elif v is not None and t._version[0] != v:
                raise AutogradError(
                    f"one of the tensors saved for backward by {self._name} (shape {tuple(t.shape)}) has been "
                    f"modified by an in-place operation: it is at version {t._version[0]}, expected version "
                    f"{v}. Clone it before modifying it.")
            out.append(t)
        return tuple(out)

    @saved_tensors.setter
    def saved_tensors(self, tensors):
        self.save_for_backward(*tensors)

    def mark_non_differentiable(self, *tensors):
        self._non_differentiable.update(id(t) for t in tensors)

    def _keep_outputs_weakly(self, outs, node):
        self._node = weakref.ref(node)
        by_id = {id(o): i for i, o in enumerate(outs)}
        self._saved = tuple(_SavedOutput(by_id[id(t)], t) if id(t) in by_id else t for t in self._saved)


class _CustomOp:
    """Looks like an Op record to the engine and the viz; `vjp` calls the user's backward."""

    pure = False
    saves_output = False

    def __init__(self, cls, n_out):
        self.cls, self.n_out = cls, n_out
        self.name = cls.__name__
        self.grad_name = cls.__name__ + "Backward"
        self.onnx = None

    def vjp(self, node, grads):
        ctx = node.attrs["ctx"]
        grads = grads if isinstance(grads, tuple) else (grads,)
        result = self.cls.backward(ctx, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        tensor_pos = node.attrs["tensor_positions"]
        if len(result) < len(tensor_pos) and len(result) != node.attrs["n_args"]:
            raise AutogradError(f"{self.cls.__name__}.backward returned {len(result)} gradients, "
                                f"forward took {node.attrs['n_args']} inputs")
        if len(result) == node.attrs["n_args"]:
            result = tuple(result[i] for i in tensor_pos)
        return result

    def release_node(self, node):
        """Called when backward frees the graph: drop what the user saved."""
        node.attrs["ctx"]._saved = None


class Function:
    """Base class: define static forward(ctx, *args) and backward(ctx, *grad_outputs); call .apply()."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("subclasses of dg.autograd.Function define forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("subclasses of dg.autograd.Function define backward(ctx, ...)")

    @classmethod
    def apply(cls, *args, **kwargs):
        return STATE.mode.custom_function(cls, args, kwargs)


def apply_eagerly(cls, args, kwargs):
    """Run `cls.forward` now and, when an input requires grad, hang a node calling `cls.backward`."""
    ctx = FunctionCtx()
    positions = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor))
    ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
    with no_grad():
        out = cls.forward(ctx, *args, **kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    tensors = tuple(args[i] for i in positions)
    if STATE.grad_enabled and any(t.requires_grad for t in tensors):
        op = _CustomOp(cls, len(outs))
        needs = tuple(t.requires_grad for t in tensors)
        node = Node(op, tensors, {"ctx": ctx, "tensor_positions": positions, "n_args": len(args)},
                    needs, tuple(-1 for _ in tensors))  # user code decides what it saves
        node._out = tuple(o._data for o in outs)
        ctx._name = op.grad_name
        ctx._keep_outputs_weakly(outs, node)
        wrapped = []
        for i, o in enumerate(outs):
            o = o.detach() if o.requires_grad or o.grad_fn is not None else o
            if id(o) not in ctx._non_differentiable and o.dtype.kind == "f":
                o._grad_fn, o._out_index, o._requires_grad = node, i, True
            wrapped.append(o)
        outs = tuple(wrapped)
    return outs if isinstance(out, tuple) else outs[0]
