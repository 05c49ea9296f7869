"""Building blocks of the ONNX lowerings that op records carry in `defop(..., onnx=...)`.

A lowering is `rule(ctx, node, *names) -> name | tuple of names`: `ctx` is the exporter's lowering
context (dualgraph/onnx/context.py: `emit`, `const`, `cast`, `arg`, `shape_tensor`, ...), `node` the IR
node, `names` the ONNX names of its inputs (Python scalars among them stay Python scalars); it returns
the ONNX names holding the node's outputs. An op with no ONNX form carries `not_exportable(reason)`
instead, and the export error gives that reason. Nothing here imports onnx: the records are defined
whether or not the exporter is installed.

numpy's semantics are the reference (floor-mod sign for `mod`, floor division on ints, bool
arithmetic); type promotion is dualgraph's (PyTorch's, dtypes.result_type): the output dtype the graph
records decides the compute dtype, and operands of another dtype get a Cast, since ONNX's binary ops
want equal input types.
"""
import numpy as np

from .. import dtypes as _dt
from ..errors import DualgraphError
from ..graph.avals import Dim

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


class NotExportable(DualgraphError):
    """Raised by a lowering for an op, or a use of it, that has no ONNX form."""


class not_exportable:
    """The lowering slot of an op that has no ONNX form; `reason` goes into the export error."""

    def __init__(self, reason):
        self.reason = reason

    def __repr__(self):
        return f"not_exportable({self.reason!r})"


def is_sym(d):
    return isinstance(d, Dim)


def out_dtype(node, i=0):
    return node.outputs[i].aval.dtype


def args(ctx, node, names, dtype):
    """The node's inputs as ONNX names in `dtype` (Python scalars become constants of it)."""
    return [ctx.arg(x, n, dtype) for x, n in zip(node.inputs, names)]


def common_dtype(node):
    """The operands' common dtype by the rule eager ops compute in (dtypes.result_type: PyTorch's), Python
    scalars (weak constants) weak; operands are cast to it, since ONNX ops want equal input types."""
    return _dt.result_type(*[x.const if getattr(x, "weak", False) else x.aval for x in node.inputs])


# dtypes an ONNX op has no kernel for (in the spec, or in onnxruntime's CPU provider), each mapped to a
# wider one computing the same values: the op runs there and the result is cast back (an integer result
# wraps back exactly as the narrow arithmetic would). Promotion makes these dtypes reachable (uint8 op
# int8 is int16), so the exported model must still run.
_WIDER = {
    "Pow": {np.dtype(np.bool_): np.dtype(np.int32), np.dtype(np.uint8): np.dtype(np.int32),
            np.dtype(np.int8): np.dtype(np.int32), np.dtype(np.int16): np.dtype(np.int32)},
    "Max": {np.dtype(np.int16): np.dtype(np.int32)},
    "Min": {np.dtype(np.int16): np.dtype(np.int32)},
    "Where": {np.dtype(np.bool_): np.dtype(np.uint8), np.dtype(np.int16): np.dtype(np.int32)},
    # a bool product is "any a & b": an int32 sum of 0/1 products, nonzero where true
    "MatMul": {np.dtype(np.bool_): np.dtype(np.int32), np.dtype(np.uint8): np.dtype(np.int32),
               np.dtype(np.int8): np.dtype(np.int32), np.dtype(np.int16): np.dtype(np.int32)},
}


def emit_in(ctx, op, dt, inputs, n_typed):
    """Emit `op`, whose last `n_typed` inputs (in dtype dt) set its type, in a wider dtype where `op` has
    no kernel for dt."""
    wide = _WIDER.get(op, {}).get(np.dtype(dt))
    if wide is None:
        return ctx.emit(op, inputs)
    k = len(inputs) - n_typed
    out = ctx.emit(op, inputs[:k] + [ctx.cast(x, dt, wide) for x in inputs[k:]])
    return ctx.cast(out, wide, dt)


# ---- lowerings shared by families of ops ----------------------------------------------------------

def binary(onnx_op, bool_op=None):
    """An arithmetic op in its output dtype; on bools `bool_op` (Or for add, And for mul)."""
    def rule(ctx, node, a, b):
        dt = out_dtype(node)
        op = onnx_op
        if dt == np.bool_:
            if bool_op is None:
                raise NotExportable(f"{node.op.name} on bool tensors")
            op = bool_op
        return emit_in(ctx, op, dt, args(ctx, node, (a, b), dt), 2)
    return rule


def comparison(onnx_op, negate=False):
    def rule(ctx, node, a, b):
        dt = common_dtype(node)
        if dt == np.bool_ and onnx_op != "Equal":
            dt = np.dtype(np.int32)
        out = ctx.emit(onnx_op, args(ctx, node, (a, b), dt))
        return ctx.emit("Not", [out]) if negate else out
    return rule


def logical(onnx_op):
    def rule(ctx, node, a, b):
        return ctx.emit(onnx_op, args(ctx, node, (a, b), np.bool_))
    return rule


def bitwise(onnx_op, bool_op):
    def rule(ctx, node, a, b):
        dt = out_dtype(node)
        if dt == np.bool_:
            return ctx.emit(bool_op, args(ctx, node, (a, b), dt))
        ctx.require(18, f"{node.op.name} on integers (Bitwise* ops)")
        return ctx.emit(onnx_op, args(ctx, node, (a, b), dt))
    return rule


def unary(onnx_op):
    """One ONNX op on the input cast to the output dtype."""
    def rule(ctx, node, x):
        dt = out_dtype(node)
        return ctx.emit(onnx_op, [ctx.arg(node.inputs[0], x, dt)])
    return rule


def rounding(onnx_op):
    """floor/ceil/round: integers are already whole."""
    def rule(ctx, node, x):
        dt = out_dtype(node)
        if dt.kind != "f":
            return ctx.cast(x, node.inputs[0].aval.dtype, dt)
        return ctx.emit(onnx_op, [ctx.arg(node.inputs[0], x, dt)])
    return rule


def reduction(onnx_op):
    """sum/prod/max/min over `axes` (bools reduce as int32)."""
    def rule(ctx, node, x):
        a = ctx.attrs(node)
        dt = out_dtype(node)
        src = node.inputs[0].aval.dtype
        work = dt if dt != np.bool_ else np.dtype(np.int32)
        y = ctx.reduce(onnx_op, ctx.cast(x, src, work), a["axes"], a["keepdims"])
        return ctx.cast(y, work, dt)
    return rule


def bool_reduction(onnx_op):
    """all/any as ReduceMin/ReduceMax of the input as 0/1 int32."""
    def rule(ctx, node, x):
        a = ctx.attrs(node)
        src = node.inputs[0].aval.dtype
        as_int = ctx.emit("Cast", [ctx.cast(x, src, np.bool_)], to=ctx.onnx_dtype(np.int32))
        y = ctx.reduce(onnx_op, as_int, a["axes"], a["keepdims"])
        return ctx.emit("Cast", [y], to=ctx.onnx_dtype(np.bool_))
    return rule


def arg_reduction(onnx_op):
    """argmax/argmin: ONNX and numpy both take the first extreme."""
    def rule(ctx, node, x):
        a = ctx.attrs(node)
        src = node.inputs[0].aval.dtype
        if src == np.bool_:
            x = ctx.cast(x, src, np.int32)
        if a["axis"] is None:
            flat = ctx.emit("Reshape", [x, ctx.i64([-1])])
            y = ctx.emit(onnx_op, [flat], axis=0, keepdims=0)
            if a["keepdims"]:
                y = ctx.emit("Reshape", [y, ctx.i64([1] * node.inputs[0].aval.ndim)])
            return y
        return ctx.emit(onnx_op, [x], axis=int(a["axis"]), keepdims=int(a["keepdims"]))
    return rule
