"""Custom differentiable functions: subclass `dg.autograd.Function` with forward/backward."""
from .._state import STATE
from ..errors import AutogradError
from .graph import Node
from .modes import no_grad


class FunctionCtx:
    """The `ctx` passed to forward and backward."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()
        self._non_differentiable = set()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors):
        self._non_differentiable.update(id(t) for t in tensors)


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
        from ..tensor import Tensor
        if STATE.tracer is not None:
            return STATE.tracer.custom_function(cls, args, kwargs)
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
                        needs, None, None)
            node._versions = tuple(-1 for _ in tensors)  # user code decides what it saves
            node._out = tuple(o._data for o in outs)
            wrapped = []
            for i, o in enumerate(outs):
                o = o.detach() if o.requires_grad or o.grad_fn is not None else o
                if id(o) not in ctx._non_differentiable and o.dtype.kind == "f":
                    o._grad_fn, o._out_index, o._requires_grad = node, i, True
                wrapped.append(o)
            outs = tuple(wrapped)
        return outs if isinstance(out, tuple) else outs[0]
