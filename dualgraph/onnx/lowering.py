"""ONNX lowering rules, one per op of the op table, attached to `op.onnx`.

A rule is `rule(ctx, node, *names) -> name | tuple of names` (see `context.py`). An op with no
ONNX form gets `not_exportable(reason)` instead of a rule, so that every op of the table is
accounted for: `missing_lowerings()` lists ops with neither, and a test keeps that list empty.

numpy's semantics are the reference: floor-mod sign for `mod`, floor division on ints, bool
arithmetic, getitem with slices/None/Ellipsis/ints/integer and bool arrays. Type promotion is
dualgraph's (PyTorch's, dtypes.result_type): the output dtype recorded in the graph decides the compute
dtype, and operands of another dtype get a Cast, since ONNX's binary ops want equal input types.
"""
import numpy as np

from .. import dtypes as _dt
from ..ops.registry import REGISTRY
from .context import INT64_MAX, INT64_MIN, NotExportable, is_sym, onnx_dtype


class not_exportable:
    """The lowering slot of an op that has no ONNX form; `reason` goes into the export error."""

    def __init__(self, reason):
        self.reason = reason

    def __repr__(self):
        return f"not_exportable({self.reason!r})"


def lowering(*names):
    """Decorator: attach the rule to the named ops."""
    def deco(fn):
        for n in names:
            RULES[n] = fn
        return fn
    return deco


RULES = {}
NOT_EXPORTABLE = {}


def _out(node, i=0):
    return node.outputs[i].aval.dtype


def _args(ctx, node, names, dtype):
    return [ctx.arg(x, n, dtype) for x, n in zip(node.inputs, names)]


def _common_dtype(node):
    """The operands' common dtype by the rule eager ops compute in (dtypes.result_type: PyTorch's), Python
    scalars (weak constants) weak; operands are cast to it, since ONNX ops want equal input types."""
    return _dt.result_type(*[x.const if getattr(x, "weak", False) else x.aval for x in node.inputs])


# ---- elementwise arithmetic -------------------------------------------------------------------

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


def _emit_in(ctx, op, dt, inputs, n_typed):
    """Emit `op`, whose last `n_typed` inputs (in dtype dt) set its type, in a wider dtype where `op` has
    no kernel for dt."""
    wide = _WIDER.get(op, {}).get(np.dtype(dt))
    if wide is None:
        return ctx.emit(op, inputs)
    k = len(inputs) - n_typed
    out = ctx.emit(op, inputs[:k] + [ctx.cast(x, dt, wide) for x in inputs[k:]])
    return ctx.cast(out, wide, dt)


def _binary(onnx_op, bool_op=None):
    def rule(ctx, node, a, b):
        dt = _out(node)
        op = onnx_op
        if dt == np.bool_:
            if bool_op is None:
                raise NotExportable(f"{node.op.name} on bool tensors")
            op = bool_op
        return _emit_in(ctx, op, dt, _args(ctx, node, (a, b), dt), 2)
    return rule


RULES["add"] = _binary("Add", "Or")
RULES["sub"] = _binary("Sub")
RULES["mul"] = _binary("Mul", "And")
RULES["maximum"] = _binary("Max", "Or")
RULES["minimum"] = _binary("Min", "And")


@lowering("div")
def _div(ctx, node, a, b):
    dt = _out(node)
    return ctx.emit("Div", _args(ctx, node, (a, b), dt))


def _py_mod(ctx, a, b, dt):
    """numpy's mod: the result takes the sign of the divisor."""
    if dt.kind in "iu":
        return ctx.emit("Mod", [a, b], fmod=0)
    m = ctx.emit("Mod", [a, b], fmod=1)
    zero = ctx.const(0, dt)
    nonzero = ctx.emit("Not", [ctx.emit("Equal", [m, zero])])
    differ = ctx.emit("Xor", [ctx.emit("Less", [m, zero]), ctx.emit("Less", [b, zero])])
    fix = ctx.emit("And", [nonzero, differ])
    return ctx.emit("Where", [fix, ctx.emit("Add", [m, b]), m])


@lowering("mod")
def _mod(ctx, node, a, b):
    dt = _out(node)
    a, b = _args(ctx, node, (a, b), dt)
    return _py_mod(ctx, a, b, dt)


@lowering("floordiv")
def _floordiv(ctx, node, a, b):
    dt = _out(node)
    a, b = _args(ctx, node, (a, b), dt)
    exact = ctx.emit("Sub", [a, _py_mod(ctx, a, b, dt)])
    q = ctx.emit("Div", [exact, b])
    return q if dt.kind in "iu" else ctx.emit("Round", [q])   # numpy: (a - mod(a, b)) / b, rounded


@lowering("pow")
def _pow(ctx, node, a, b):
    dt = _out(node)
    return _emit_in(ctx, "Pow", dt, _args(ctx, node, (a, b), dt), 2)


def _cmp(onnx_op, negate=False):
    def rule(ctx, node, a, b):
        dt = _common_dtype(node)
        if dt == np.bool_ and onnx_op != "Equal":
            dt = np.dtype(np.int32)
        out = ctx.emit(onnx_op, _args(ctx, node, (a, b), dt))
        return ctx.emit("Not", [out]) if negate else out
    return rule


RULES["eq"] = _cmp("Equal")
RULES["ne"] = _cmp("Equal", negate=True)
RULES["lt"] = _cmp("Less")
RULES["le"] = _cmp("LessOrEqual")
RULES["gt"] = _cmp("Greater")
RULES["ge"] = _cmp("GreaterOrEqual")


def _logic(onnx_op):
    def rule(ctx, node, a, b):
        return ctx.emit(onnx_op, _args(ctx, node, (a, b), np.bool_))
    return rule


RULES["logical_and"] = _logic("And")
RULES["logical_or"] = _logic("Or")
RULES["logical_xor"] = _logic("Xor")


@lowering("logical_not")
def _not(ctx, node, a):
    return ctx.emit("Not", [ctx.arg(node.inputs[0], a, np.bool_)])


def _bitwise(onnx_op, bool_op):
    def rule(ctx, node, a, b):
        dt = _out(node)
        if dt == np.bool_:
            return ctx.emit(bool_op, _args(ctx, node, (a, b), dt))
        ctx.require(18, f"{node.op.name} on integers (Bitwise* ops)")
        return ctx.emit(onnx_op, _args(ctx, node, (a, b), dt))
    return rule


RULES["bitwise_and"] = _bitwise("BitwiseAnd", "And")
RULES["bitwise_or"] = _bitwise("BitwiseOr", "Or")
RULES["bitwise_xor"] = _bitwise("BitwiseXor", "Xor")


@lowering("invert")
def _invert(ctx, node, a):
    if _out(node) == np.bool_:
        return ctx.emit("Not", [a])
    ctx.require(18, "invert on integers (BitwiseNot)")
    return ctx.emit("BitwiseNot", [a])


@lowering("where")
def _where(ctx, node, c, a, b):
    dt = _out(node)
    cond = ctx.arg(node.inputs[0], c, np.bool_)
    a, b = ctx.arg(node.inputs[1], a, dt), ctx.arg(node.inputs[2], b, dt)
    return _emit_in(ctx, "Where", dt, [cond, a, b], 2)


@lowering("cast")
def _cast(ctx, node, x):
    return ctx.emit("Cast", [x], to=onnx_dtype(_out(node)))


# ---- unary math ----------------------------------------------------------------------------------

def _unary(onnx_op, **attrs):
    def rule(ctx, node, x):
        dt = _out(node)
        return ctx.emit(onnx_op, [ctx.arg(node.inputs[0], x, dt)], **attrs)
    return rule


for _name, _onnx in [("neg", "Neg"), ("abs", "Abs"), ("sign", "Sign"), ("exp", "Exp"), ("log", "Log"),
                     ("sqrt", "Sqrt"), ("sin", "Sin"), ("cos", "Cos"), ("tanh", "Tanh"),
                     ("sigmoid", "Sigmoid"), ("copy", "Identity"), ("to_device", "Identity")]:
    RULES[_name] = _unary(_onnx)

# onnxruntime has float32-only kernels for a few ops (Tan from opset 22, Erf, LeakyRelu, Elu, Gelu)
# and no integer Relu: those get equivalent compositions of ops it runs in every dtype.


@lowering("tan")
def _tan(ctx, node, x):
    dt = _out(node)
    x = ctx.arg(node.inputs[0], x, dt)
    if dt == np.float32:
        return ctx.emit("Tan", [x])
    return ctx.emit("Div", [ctx.emit("Sin", [x]), ctx.emit("Cos", [x])])


def _erf_of(ctx, x, dt):
    """Erf; onnxruntime runs it in float32 only, so other dtypes round-trip through float32
    (about 1e-7 relative error in float64)."""
    if dt == np.float32:
        return ctx.emit("Erf", [x])
    return ctx.cast(ctx.emit("Erf", [ctx.cast(x, dt, np.float32)]), np.float32, dt)


@lowering("erf")
def _erf(ctx, node, x):
    dt = _out(node)
    return _erf_of(ctx, ctx.arg(node.inputs[0], x, dt), dt)


@lowering("relu")
def _relu(ctx, node, x):
    dt = _out(node)
    x = ctx.arg(node.inputs[0], x, dt)
    if dt.kind == "f":
        return ctx.emit("Relu", [x])
    return ctx.emit("Max", [x, ctx.const(0, dt)])


def _rounding(onnx_op):
    def rule(ctx, node, x):
        dt = _out(node)
        if dt.kind != "f":
            return ctx.cast(x, node.inputs[0].aval.dtype, dt)
        return ctx.emit(onnx_op, [ctx.arg(node.inputs[0], x, dt)])
    return rule


RULES["floor"] = _rounding("Floor")
RULES["ceil"] = _rounding("Ceil")
RULES["round"] = _rounding("Round")   # both round half to even


@lowering("trunc")
def _trunc(ctx, node, x):
    dt = _out(node)
    if dt.kind != "f":
        return ctx.cast(x, node.inputs[0].aval.dtype, dt)
    x = ctx.arg(node.inputs[0], x, dt)
    neg = ctx.emit("Less", [x, ctx.const(0, dt)])
    return ctx.emit("Where", [neg, ctx.emit("Ceil", [x]), ctx.emit("Floor", [x])])


@lowering("log1p")
def _log1p(ctx, node, x):
    # log1p(x) = x * log(u) / (u - 1) with u = 1 + x, exact where u == 1 (Goldberg)
    dt = _out(node)
    x = ctx.arg(node.inputs[0], x, dt)
    one = ctx.const(1, dt)
    u = ctx.emit("Add", [x, one])
    um1 = ctx.emit("Sub", [u, one])
    is_one = ctx.emit("Equal", [um1, ctx.const(0, dt)])
    safe = ctx.emit("Where", [is_one, one, um1])
    ratio = ctx.emit("Div", [ctx.emit("Mul", [x, ctx.emit("Log", [u])]), safe])
    big = ctx.emit("IsInf", [u], detect_negative=0)
    return ctx.emit("Where", [is_one, x, ctx.emit("Where", [big, u, ratio])])


@lowering("expm1")
def _expm1(ctx, node, x):
    # expm1(x) = (u - 1) * x / log(u) with u = exp(x), exact where u == 1 (Kahan)
    dt = _out(node)
    x = ctx.arg(node.inputs[0], x, dt)
    one = ctx.const(1, dt)
    u = ctx.emit("Exp", [x])
    um1 = ctx.emit("Sub", [u, one])
    is_one = ctx.emit("Equal", [u, one])
    logu = ctx.emit("Log", [u])
    safe_log = ctx.emit("Where", [is_one, one, logu])
    ratio = ctx.emit("Div", [ctx.emit("Mul", [um1, x]), safe_log])
    # where log(u) loses all precision (u == 0 or inf), u - 1 itself is right
    plain = ctx.emit("Or", [ctx.emit("IsInf", [u]), ctx.emit("Equal", [um1, ctx.const(-1, dt)])])
    return ctx.emit("Where", [is_one, x, ctx.emit("Where", [plain, um1, ratio])])


@lowering("rsqrt")
def _rsqrt(ctx, node, x):
    dt = _out(node)
    return ctx.emit("Reciprocal", [ctx.emit("Sqrt", [ctx.arg(node.inputs[0], x, dt)])])


@lowering("softplus")
def _softplus(ctx, node, x):
    # max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|
    dt = _out(node)
    x = ctx.arg(node.inputs[0], x, dt)
    e = ctx.emit("Exp", [ctx.emit("Neg", [ctx.emit("Abs", [x])])])
    lp = ctx.emit("Log", [ctx.emit("Add", [e, ctx.const(1, dt)])])
    return ctx.emit("Add", [ctx.emit("Relu", [x]), lp])


@lowering("leaky_relu")
def _leaky_relu(ctx, node, x):
    dt = _out(node)
    src = node.inputs[0].aval.dtype
    fdt = src if src.kind == "f" else np.dtype(np.float32)
    alpha = float(ctx.attrs(node)["negative_slope"])
    x = ctx.cast(x, src, fdt)
    if fdt == np.float32:
        y = ctx.emit("LeakyRelu", [x], alpha=alpha)
    else:
        pos = ctx.emit("Greater", [x, ctx.const(0, fdt)])
        y = ctx.emit("Where", [pos, x, ctx.emit("Mul", [x, ctx.const(alpha, fdt)])])
    return ctx.cast(y, fdt, dt)


@lowering("elu")
def _elu(ctx, node, x):
    dt = _out(node)
    alpha = float(ctx.attrs(node)["alpha"])
    x = ctx.arg(node.inputs[0], x, dt)
    if dt == np.float32:
        return ctx.emit("Elu", [x], alpha=alpha)
    zero = ctx.const(0, dt)
    neg = ctx.emit("Sub", [ctx.emit("Exp", [ctx.emit("Min", [x, zero])]), ctx.const(1, dt)])
    return ctx.emit("Where", [ctx.emit("Greater", [x, zero]), x, ctx.emit("Mul", [neg, ctx.const(alpha, dt)])])


@lowering("gelu")
def _gelu(ctx, node, x):
    dt = _out(node)
    approximate = ctx.attrs(node)["approximate"]
    x = ctx.arg(node.inputs[0], x, dt)
    if ctx.opset >= 20 and dt == np.float32:
        return ctx.emit("Gelu", [x], approximate=approximate)
    c = lambda v: ctx.const(v, dt)  # noqa: E731
    if approximate == "tanh":
        cube = ctx.emit("Mul", [ctx.emit("Mul", [x, x]), x])
        inner = ctx.emit("Mul", [c(0.7978845608028654), ctx.emit("Add", [x, ctx.emit("Mul", [c(0.044715), cube])])])
        t = ctx.emit("Add", [c(1.0), ctx.emit("Tanh", [inner])])
    else:
        t = ctx.emit("Add", [c(1.0), _erf_of(ctx, ctx.emit("Mul", [x, c(0.7071067811865476)]), dt)])
    return ctx.emit("Mul", [ctx.emit("Mul", [c(0.5), x]), t])


@lowering("clip")
def _clip(ctx, node, x):
    dt = _out(node)
    a = ctx.attrs(node)
    x = ctx.arg(node.inputs[0], x, dt)
    lo = ctx.const(a["lo"], dt) if a["lo"] is not None else None
    hi = ctx.const(a["hi"], dt) if a["hi"] is not None else None
    out = x
    if lo is not None:   # Max/Min propagate NaN like numpy's maximum/minimum
        out = _emit_in(ctx, "Max", dt, [out, lo], 2)
    if hi is not None:
        out = _emit_in(ctx, "Min", dt, [out, hi], 2)
    return out if out is not x else ctx.emit("Identity", [x])


@lowering("isnan")
def _isnan(ctx, node, x):
    src = node.inputs[0].aval.dtype
    if src.kind != "f":
        return ctx.emit("Expand", [ctx.const(False), ctx.shape_of(x)])
    return ctx.emit("IsNaN", [ctx.cast(x, src, np.float32) if src == np.float16 else x])


@lowering("isfinite")
def _isfinite(ctx, node, x):
    src = node.inputs[0].aval.dtype
    if src.kind != "f":
        return ctx.emit("Expand", [ctx.const(True), ctx.shape_of(x)])
    x = ctx.cast(x, src, np.float32) if src == np.float16 else x
    return ctx.emit("Not", [ctx.emit("Or", [ctx.emit("IsNaN", [x]), ctx.emit("IsInf", [x])])])


# ---- reductions --------------------------------------------------------------------------------

def _reduction(onnx_op):
    def rule(ctx, node, x):
        a = ctx.attrs(node)
        dt = _out(node)
        src = node.inputs[0].aval.dtype
        work = dt if dt != np.bool_ else np.dtype(np.int32)
        y = ctx.reduce(onnx_op, ctx.cast(x, src, work), a["axes"], a["keepdims"])
        return ctx.cast(y, work, dt)
    return rule


RULES["sum"] = _reduction("ReduceSum")
RULES["prod"] = _reduction("ReduceProd")
RULES["max"] = _reduction("ReduceMax")
RULES["min"] = _reduction("ReduceMin")


def _bool_reduction(onnx_op):
    def rule(ctx, node, x):
        a = ctx.attrs(node)
        src = node.inputs[0].aval.dtype
        as_int = ctx.emit("Cast", [ctx.cast(x, src, np.bool_)], to=onnx_dtype(np.int32))
        y = ctx.reduce(onnx_op, as_int, a["axes"], a["keepdims"])
        return ctx.emit("Cast", [y], to=onnx_dtype(np.bool_))
    return rule


RULES["all"] = _bool_reduction("ReduceMin")
RULES["any"] = _bool_reduction("ReduceMax")


def _arg(onnx_op):
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


@lowering("log_softmax")
def _log_softmax(ctx, node, x):
    dt = _out(node)
    x = ctx.arg(node.inputs[0], x, dt)
    return ctx.emit("LogSoftmax", [x], axis=int(ctx.attrs(node)["axis"]))


@lowering("log_softmax_grad")
def _log_softmax_grad(ctx, node, g, y):
    dt = _out(node)
    g, y = ctx.arg(node.inputs[0], g, dt), ctx.arg(node.inputs[1], y, dt)
    total = ctx.reduce("ReduceSum", g, (int(ctx.attrs(node)["axis"]),), True)
    return ctx.emit("Sub", [g, ctx.emit("Mul", [ctx.emit("Exp", [y]), total])])


@lowering("nll_loss")
def _nll_loss(ctx, node, log_probs, target, weight=None):
    ctx.require(13, "nll_loss (NegativeLogLikelihoodLoss)")
    a = ctx.attrs(node)
    target = ctx.cast(target, node.inputs[1].aval.dtype, np.int64)
    inputs = [log_probs, target] + ([weight] if weight is not None else [])
    return ctx.emit("NegativeLogLikelihoodLoss", inputs, reduction=a["reduction"], ignore_index=int(a["ignore_index"]))


@lowering("nll_loss_grad")
def _nll_loss_grad(ctx, node, g, log_probs, target, weight=None):
    """-g * weight[target] (/ summed weight for 'mean') at each target's class, 0 elsewhere: a one-hot
    mask (target == class index along axis 1) times the per-sample coefficient."""
    a = ctx.attrs(node)
    dt = _out(node)
    target = ctx.cast(target, node.inputs[2].aval.dtype, np.int64)
    valid = ctx.emit("Not", [ctx.emit("Equal", [target, ctx.const(np.int64(a["ignore_index"]))])])
    safe = ctx.emit("Where", [valid, target, ctx.const(np.int64(0))])
    w = ctx.emit("Cast", [valid], to=onnx_dtype(dt))
    if weight is not None:
        w = ctx.emit("Mul", [w, ctx.emit("Gather", [weight, safe], axis=0)])
    minus_g = ctx.emit("Neg", [ctx.arg(node.inputs[0], g, dt)])
    if a["reduction"] == "mean":
        minus_g = ctx.emit("Div", [minus_g, ctx.reduce("ReduceSum", w, None, False)])
    coef = ctx.emit("Mul", [w, minus_g])
    shape = ctx.shape(node.inputs[1])
    trailing = [1] * (len(shape) - 2)
    if is_sym(shape[1]):
        n_classes = ctx.emit("Reshape", [ctx.dim(shape[1]), ctx.i64([])])
        classes = ctx.emit("Range", [ctx.const(np.int64(0)), n_classes, ctx.const(np.int64(1))])
        classes = ctx.emit("Reshape", [classes, ctx.i64([1, -1] + trailing)])
    else:
        classes = ctx.i64(np.arange(int(shape[1])).reshape([1, -1] + trailing))
    hit = ctx.emit("Cast", [ctx.emit("Equal", [ctx.unsqueeze(safe, [1]), classes])], to=onnx_dtype(dt))
    return ctx.emit("Mul", [hit, ctx.unsqueeze(coef, [1])])


@lowering("count")
def _count(ctx, node, x):
    """Elements over the reduced axes, from the runtime shape (stays right for dynamic axes)."""
    axes = ctx.attrs(node)["axes"]
    shape = ctx.shape_of(x)
    if axes is not None:
        shape = ctx.emit("Gather", [shape, ctx.i64(list(axes))], axis=0)
    n = ctx.emit("ReduceProd", [shape], keepdims=0)
    return ctx.emit("Cast", [n], to=onnx_dtype(_out(node)))


RULES["argmax"] = _arg("ArgMax")   # both take the first extreme, as numpy
RULES["argmin"] = _arg("ArgMin")


@lowering("cumsum")
def _cumsum(ctx, node, x):
    dt = _out(node)
    x = ctx.arg(node.inputs[0], x, dt)
    return ctx.emit("CumSum", [x, ctx.const(np.int64(ctx.attrs(node)["axis"]))])


@lowering("prod_others")
def _prod_others(ctx, node, x):
    """For each element, the product of the other elements of its reduction group (zeros-safe):
    a [..., K, K] tensor with ones on the diagonal, reduced by ReduceProd."""
    axes = ctx.attrs(node)["axes"]
    nd = node.inputs[0].aval.ndim
    axes = tuple(range(nd)) if axes is None else tuple(axes)
    dt = _out(node)
    perm = [i for i in range(nd) if i not in axes] + list(axes)
    xt = ctx.emit("Transpose", [x], perm=perm) if perm != list(range(nd)) else x
    shape_t = ctx.shape_of(xt)
    lead = ctx.slice(shape_t, [0], [nd - len(axes)], [0])
    flat = ctx.emit("Reshape", [xt, ctx.emit("Concat", [lead, ctx.i64([-1])], axis=0)])
    k = ctx.emit("Gather", [ctx.shape_of(flat), ctx.const(np.int64(-1))], axis=0)
    idx = ctx.emit("Range", [ctx.const(np.int64(0)), k, ctx.const(np.int64(1))])
    eye = ctx.emit("Equal", [ctx.unsqueeze(idx, [1]), ctx.unsqueeze(idx, [0])])
    w = ctx.emit("Where", [eye, ctx.const(1, dt), ctx.unsqueeze(flat, [-2])])
    r = ctx.reduce("ReduceProd", w, (-1,), False)
    r = ctx.emit("Reshape", [r, shape_t])
    if perm != list(range(nd)):
        r = ctx.emit("Transpose", [r], perm=[int(i) for i in np.argsort(perm)])
    return r


# ---- shape ops -----------------------------------------------------------------------------------

@lowering("reshape")
def _reshape(ctx, node, x):
    shape = tuple(ctx.attrs(node)["shape"])
    allowzero = 1 if any((not is_sym(d)) and d == 0 for d in shape) else None
    if allowzero and ctx.opset < 14:
        raise NotExportable("reshape to a shape with a zero-size dim needs opset 14 or newer")
    return ctx.emit("Reshape", [x, ctx.shape_tensor(shape)], allowzero=allowzero)


@lowering("transpose")
def _transpose(ctx, node, x):
    return ctx.emit("Transpose", [x], perm=[int(a) for a in ctx.attrs(node)["axes"]])


@lowering("broadcast_to")
def _broadcast_to(ctx, node, x):
    return ctx.emit("Expand", [x, ctx.shape_tensor(ctx.attrs(node)["shape"])])


@lowering("concat")
def _concat(ctx, node, *xs):
    dt = _out(node)
    return ctx.emit("Concat", _args(ctx, node, xs, dt), axis=int(ctx.attrs(node)["axis"]))


@lowering("pad")
def _pad(ctx, node, x):
    a = ctx.attrs(node)
    widths = a["pad_width"]
    pads = [int(lo) for lo, _ in widths] + [int(hi) for _, hi in widths]
    dt = node.inputs[0].aval.dtype
    mode = a["mode"]
    if mode == "constant":
        return ctx.emit("Pad", [x, ctx.i64(pads), ctx.const(a["value"], dt)], mode="constant")
    return ctx.emit("Pad", [x, ctx.i64(pads)], mode=mode)   # numpy's reflect/edge = ONNX's


@lowering("flip")
def _flip(ctx, node, x):
    axes = list(ctx.attrs(node)["axes"])
    if not axes:
        return ctx.emit("Identity", [x])
    n = len(axes)
    return ctx.slice(x, [-1] * n, [INT64_MIN] * n, axes, [-1] * n)


# ---- indexing -------------------------------------------------------------------------------------

def _is_slot(t):
    return hasattr(t, "i") and type(t).__name__ == "_Slot"


def _expand_template(template, ndim, slot_ndims):
    """Replace Ellipsis by full slices and pad with full slices; bool slots consume their ndim."""
    consumed = 0
    for t in template:
        if _is_slot(t):
            consumed += slot_ndims[t.i]
        elif t is not None and t is not Ellipsis:
            consumed += 1
    fill = ndim - consumed
    out, seen = [], False
    for t in template:
        if t is Ellipsis:
            if seen:
                raise NotExportable("an index with two Ellipsis")
            out.extend([slice(None)] * fill)
            seen = True
        else:
            out.append(t)
    if not seen:
        out.extend([slice(None)] * fill)
    return out


def _slice_bounds(s, dim=None):
    """ONNX Slice (start, end, step) for numpy's slice `s` on an axis of size `dim`.

    With a static size, numpy's own normalization (slice.indices) decides: ONNX clamps an
    out-of-range start differently for negative steps (numpy: x[-5::-1] on 4 elements is empty)."""
    if any(is_sym(b) for b in (s.start, s.stop, s.step)):
        # a bound that is a size read from a traced shape (a position inside the axis): computed in the
        # model from the input shapes; ONNX Slice counts a negative one from the end, as numpy does
        step = 1 if s.step is None else s.step
        if not isinstance(step, int) or step <= 0:
            raise NotExportable(f"the slice {s}: a symbolic bound needs a positive integer step")
        return (0 if s.start is None else s.start), (INT64_MAX if s.stop is None else s.stop), step
    if isinstance(dim, int) and not is_sym(dim):
        s0, s1, st = s.indices(dim)
        if len(range(s0, s1, st)) == 0:
            return 0, 0, st
        return s0, (s1 if s1 >= 0 else INT64_MIN), st
    step = 1 if s.step is None else int(s.step)
    if step > 0:
        start = 0 if s.start is None else int(s.start)
        stop = INT64_MAX if s.stop is None else int(s.stop)
    else:
        start = INT64_MAX if s.start is None else int(s.start)
        stop = INT64_MIN if s.stop is None else int(s.stop)
    return start, stop, step


def lower_index(ctx, x, shape, template, slots):
    """numpy's x[index] as ONNX nodes. `slots` lists (onnx name, aval) of the tensors in the index."""
    slot_ndims = [aval.ndim if aval.dtype == np.bool_ else 1 for _, aval in slots]
    items = _expand_template(template, len(shape), slot_ndims)
    # walk the index: which axis each item reads
    starts, ends, axes, steps = [], [], [], []
    ints, adv, nones, out_pos, axis = [], [], [], 0, 0
    for t in items:
        if t is None:
            nones.append(out_pos)
            out_pos += 1
        elif isinstance(t, slice):
            if not (t.start is None and t.stop is None and t.step in (None, 1)):
                s0, s1, st = _slice_bounds(t, shape[axis])
                starts.append(s0), ends.append(s1), axes.append(axis), steps.append(st)
            axis += 1
            out_pos += 1
        elif _is_slot(t):
            name, aval = slots[t.i]
            if aval.dtype == np.bool_:
                if aval.ndim == 0:
                    raise NotExportable("indexing with a 0-d bool")
                nz = ctx.emit("NonZero", [name])
                for k in range(aval.ndim):
                    row = ctx.emit("Gather", [nz, ctx.const(np.int64(k))], axis=0)
                    adv.append((axis, row, 1))
                    axis += 1
            else:
                adv.append((axis, ctx.cast(name, aval.dtype, np.int64), aval.ndim))
                axis += 1
        else:
            ints.append((axis, int(t)))
            axis += 1
    if axis != len(shape):
        raise NotExportable(f"index {template} does not fit a tensor with {len(shape)} dims")
    out = x
    if not adv:
        for a, i in ints:
            starts.append(i), ends.append(i + 1 if i != -1 else INT64_MAX), axes.append(a), steps.append(1)
        if axes:
            out = ctx.slice(out, starts, ends, axes, steps)
        if ints:
            out = ctx.squeeze(out, [a for a, _ in ints])
        if nones:
            out = ctx.unsqueeze(out, nones)
        if out is x:
            out = ctx.emit("Identity", [x])
        return out
    if nones:
        raise NotExportable("an index mixing None with integer or bool arrays")
    if axes:
        out = ctx.slice(out, starts, ends, axes, steps)
    # with an array index present, integers count as 0-d array indices (numpy)
    adv = sorted(adv + [(a, ctx.const(np.int64(i)), 0) for a, i in ints])
    if len(adv) == 1 and adv[0][2] > 0:
        a, idx, _ = adv[0]
        return ctx.emit("Gather", [out, idx], axis=a)
    adv_axes = [a for a, _, _ in adv]
    adjacent = adv_axes == list(range(adv_axes[0], adv_axes[0] + len(adv_axes)))
    rest = [i for i in range(len(shape)) if i not in adv_axes]
    xt = ctx.emit("Transpose", [out], perm=adv_axes + rest)
    xshape = ctx.shape_of(out)
    norm = []
    for a, idx, _ in adv:
        dim = ctx.emit("Gather", [xshape, ctx.const(np.int64(a))], axis=0)
        neg = ctx.emit("Less", [idx, ctx.const(np.int64(0))])
        norm.append(ctx.emit("Where", [neg, ctx.emit("Add", [idx, dim]), idx]))
    total = norm[0]
    for n in norm[1:]:
        total = ctx.emit("Add", [total, n])
    bshape = ctx.shape_of(total)
    stacked = [ctx.unsqueeze(ctx.emit("Expand", [n, bshape]), [-1]) for n in norm]
    ind = ctx.emit("Concat", stacked, axis=-1)
    out = ctx.emit("GatherND", [xt, ind])
    b_nd = max(nd for _, _, nd in adv)
    if adjacent and adv_axes[0] > 0:
        p = adv_axes[0]
        n_rest = len(rest)
        perm = list(range(b_nd, b_nd + p)) + list(range(b_nd)) + list(range(b_nd + p, b_nd + n_rest))
        out = ctx.emit("Transpose", [out], perm=perm)
    return out


@lowering("getitem")
def _getitem(ctx, node, x, *idx):
    slots = [(n, v.aval) for n, v in zip(idx, node.inputs[1:])]
    return lower_index(ctx, x, ctx.shape(node.inputs[0]), ctx.attrs(node)["template"], slots)


def _iota(ctx, shape):
    """arange(prod(shape)).reshape(shape) as int64: the flat position of every element."""
    st = ctx.shape_tensor(shape)
    n = ctx.reduce("ReduceProd", st, None, False)
    flat = ctx.emit("Range", [ctx.const(np.int64(0)), n, ctx.const(np.int64(1))])
    return ctx.emit("Reshape", [flat, st]), st


def _positions(ctx, node, shape, first_slot, idx_names):
    slots = [(n, v.aval) for n, v in zip(idx_names, node.inputs[first_slot:])]
    iota, st = _iota(ctx, shape)
    pos = lower_index(ctx, iota, shape, ctx.attrs(node)["template"], slots)
    return pos, st


@lowering("index_add_zeros")
def _index_add_zeros(ctx, node, g, *idx):
    a = ctx.attrs(node)
    shape = a["shape"]
    basic = not any(_is_slot(t) for t in a["template"])
    pos, st = _positions(ctx, node, shape, 1, idx)
    dt = _out(node)
    upd = ctx.emit("Reshape", [ctx.emit("Expand", [g, ctx.shape_of(pos)]), ctx.i64([-1])])
    flat_pos = ctx.emit("Reshape", [pos, ctx.i64([-1])])
    n = ctx.reduce("ReduceProd", st, None, True)
    zeros = ctx.emit("Expand", [ctx.const(0, dt), n])
    if basic:   # basic indices never repeat a position
        out = ctx.emit("ScatterElements", [zeros, flat_pos, upd], axis=0)
    else:
        ctx.require(16, "the gradient of advanced indexing (ScatterElements with reduction='add')")
        out = ctx.emit("ScatterElements", [zeros, flat_pos, upd], axis=0, reduction="add")
    return ctx.emit("Reshape", [out, st])


@lowering("index_put")
def _index_put(ctx, node, x, v, *idx):
    dt = _out(node)
    pos, st = _positions(ctx, node, ctx.shape(node.inputs[0]), 2, idx)
    v = ctx.arg(node.inputs[1], v, dt)
    upd = ctx.emit("Reshape", [ctx.emit("Expand", [v, ctx.shape_of(pos)]), ctx.i64([-1])])
    flat_pos = ctx.emit("Reshape", [pos, ctx.i64([-1])])
    flat_x = ctx.emit("Reshape", [x, ctx.i64([-1])])
    out = ctx.emit("ScatterElements", [flat_x, flat_pos, upd], axis=0)
    return ctx.emit("Reshape", [out, ctx.shape_of(x)])


@lowering("take_along_axis")
def _take_along_axis(ctx, node, x, index):
    index = ctx.cast(index, node.inputs[1].aval.dtype, np.int64)
    return ctx.emit("GatherElements", [x, index], axis=int(ctx.attrs(node)["axis"]))


@lowering("scatter_add")
def _scatter_add(ctx, node, x, index, src):
    ctx.require(16, "scatter_add (ScatterElements with reduction='add')")
    dt = _out(node)
    index = ctx.cast(index, node.inputs[1].aval.dtype, np.int64)
    src = ctx.arg(node.inputs[2], src, dt)
    return ctx.emit("ScatterElements", [x, index, src], axis=int(ctx.attrs(node)["axis"]), reduction="add")


@lowering("nonzero")
def _nonzero(ctx, node, x):
    return ctx.emit("Transpose", [ctx.emit("NonZero", [x])], perm=[1, 0])


@lowering("arange")
def _arange(ctx, node):
    a = ctx.attrs(node)
    dt = _out(node)
    start = ctx.emit("Reshape", [ctx.dim(a["start"]), ctx.i64([])])
    step = ctx.i64(int(a["step"]))
    limit = ctx.emit("Add", [start, ctx.emit("Mul", [ctx.emit("Reshape", [ctx.dim(a["count"]), ctx.i64([])]), step])])
    out = ctx.emit("Range", [start, limit, step])
    return ctx.cast(out, np.int64, dt)


@lowering("full_like")
def _full_like(ctx, node, x):
    dt = _out(node)
    return ctx.emit("Expand", [ctx.const(ctx.attrs(node)["value"], dt), ctx.shape_of(x)])


@lowering("uniform_like")
def _uniform_like(ctx, node, x):
    # ONNX draws from its own generator: same distribution, not the same numbers as dualgraph
    return ctx.emit("RandomUniformLike", [x], dtype=onnx_dtype(_out(node)), low=0.0, high=1.0)


@lowering("normal_like")
def _normal_like(ctx, node, x):
    return ctx.emit("RandomNormalLike", [x], dtype=onnx_dtype(_out(node)), mean=0.0, scale=1.0)


# ---- linear algebra ---------------------------------------------------------------------------

@lowering("matmul")
def _matmul(ctx, node, a, b):
    dt = _out(node)
    return _emit_in(ctx, "MatMul", dt, _args(ctx, node, (a, b), dt), 2)


@lowering("einsum")
def _einsum(ctx, node, *xs):
    a = ctx.attrs(node)
    dt = _out(node)
    return ctx.emit("Einsum", _args(ctx, node, xs, dt), equation=",".join(a["inputs"]) + "->" + a["output"])


# ---- convolution windows ------------------------------------------------------------------------

def _window_positions(h, w, kernel, stride, dilation):
    """(kh, kw, OH, OW) flat positions in an (h, w) image of every window element (numpy)."""
    from ..ops.conv import _unfold_forward
    iota = np.arange(h * w, dtype=np.int64).reshape(1, 1, h, w)
    return _unfold_forward(np, iota, kernel, stride, dilation)[0, 0]


@lowering("unfold")
def _unfold(ctx, node, x):
    a = ctx.attrs(node)
    kernel, stride, dilation = a["kernel"], a["stride"], a["dilation"]
    h, w = ctx.shape(node.inputs[0])[2:]
    if not (is_sym(h) or is_sym(w)):
        # one Gather of the flattened image at constant window positions
        pos = ctx.const(_window_positions(h, w, kernel, stride, dilation), hint="window_pos")
        flat = ctx.emit("Reshape", [x, ctx.i64([0, 0, -1])])
        return ctx.emit("Gather", [flat, pos], axis=2)
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    rows = []
    for i in range(kh):
        cols = []
        for j in range(kw):
            e_i, e_j = -(kh - 1 - i) * dh, -(kw - 1 - j) * dw
            s = ctx.slice(x, [i * dh, j * dw], [e_i or INT64_MAX, e_j or INT64_MAX], [2, 3], [sh, sw])
            cols.append(ctx.unsqueeze(s, [2, 3]))
        rows.append(ctx.emit("Concat", cols, axis=3) if len(cols) > 1 else cols[0])
    return ctx.emit("Concat", rows, axis=2) if len(rows) > 1 else rows[0]


@lowering("fold")
def _fold(ctx, node, cols):
    a = ctx.attrs(node)
    h, w = a["size"]
    if is_sym(h) or is_sym(w):
        raise NotExportable("fold with a symbolic spatial size")
    ctx.require(16, "fold (ScatterElements with reduction='add')")
    pos = _window_positions(h, w, a["kernel"], a["stride"], a["dilation"]).reshape(1, 1, -1)
    flat = ctx.emit("Reshape", [cols, ctx.i64([0, 0, -1])])
    idx = ctx.emit("Expand", [ctx.const(pos, hint="window_pos"), ctx.shape_of(flat)])
    nc = ctx.slice(ctx.shape_of(cols), [0], [2], [0])
    zeros = ctx.emit("Expand", [ctx.const(0, _out(node)),
                                ctx.emit("Concat", [nc, ctx.i64([h * w])], axis=0)])
    out = ctx.emit("ScatterElements", [zeros, idx, flat], axis=2, reduction="add")
    return ctx.emit("Reshape", [out, ctx.i64([0, 0, h, w])])


# ---- max pooling: MaxPool picks the same element per window as PyTorch (and ops/conv.py) -----------

def _maxpool(ctx, a, x, src, with_indices):
    """MaxPool's outputs: values in dtype `src` of x, and with_indices their flat plane indices."""
    if src in (np.float32, np.float64, np.float16, np.int8, np.uint8):   # onnxruntime's MaxPool kernels
        work = src
    elif src.kind == "f":
        work = np.dtype(np.float32)   # holds every narrower float exactly; a maximum is one of them
    elif src.itemsize <= 4:
        work = np.dtype(np.float64)
    else:
        raise NotExportable(f"max pooling of {src} (ONNX MaxPool has no 64-bit integer kernel and float64 "
                            f"would round values beyond 2**53)")
    outs = ctx.emit("MaxPool", [ctx.cast(x, src, work)], n_out=2 if with_indices else 1,
                    kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=list(a["padding"]) * 2,
                    dilations=list(a["dilation"]), ceil_mode=int(a["ceil_mode"]))
    if not with_indices:
        return ctx.cast(outs, work, src)
    y, idx = outs
    # Indices count through the whole (N, C, *spatial) tensor; PyTorch's count within each plane
    plane = ctx.reduce("ReduceProd", ctx.slice(ctx.shape_of(x), [2], [INT64_MAX], [0]), (0,), True)
    return ctx.cast(y, work, src), ctx.emit("Mod", [idx, plane])


@lowering("max_pool")
def _max_pool(ctx, node, x):
    return _maxpool(ctx, ctx.attrs(node), x, node.inputs[0].aval.dtype, False)


@lowering("max_pool_indices")
def _max_pool_indices(ctx, node, x):
    return _maxpool(ctx, ctx.attrs(node), x, node.inputs[0].aval.dtype, True)[1]


@lowering("max_pool_grad")
def _max_pool_grad(ctx, node, g, x):
    ctx.require(16, "max pooling's gradient (ScatterElements with reduction='add')")
    dt = _out(node)
    _, idx = _maxpool(ctx, ctx.attrs(node), x, node.inputs[1].aval.dtype, True)
    idx = ctx.emit("Reshape", [idx, ctx.i64([0, 0, -1])])
    flat = ctx.emit("Reshape", [ctx.cast(g, node.inputs[0].aval.dtype, dt), ctx.i64([0, 0, -1])])
    shape = ctx.shape_of(x)
    plane = ctx.reduce("ReduceProd", ctx.slice(shape, [2], [INT64_MAX], [0]), (0,), True)
    zeros = ctx.emit("Expand", [ctx.const(0, dt), ctx.emit("Concat", [ctx.slice(shape, [0], [2], [0]), plane],
                                                             axis=0)])
    out = ctx.emit("ScatterElements", [zeros, idx, flat], axis=2, reduction="add")
    return ctx.emit("Reshape", [out, shape])


# ---- attach ------------------------------------------------------------------------------------

def attach():
    """Fill `op.onnx` for every op of the table that has a rule or a not-exportable reason."""
    for name, op in REGISTRY.items():
        if op.onnx is not None:
            continue
        if name in RULES:
            op.onnx = RULES[name]
        elif name in NOT_EXPORTABLE:
            op.onnx = not_exportable(NOT_EXPORTABLE[name])


def missing_lowerings():
    """Ops of the table with neither a rule nor a not-exportable reason."""
    attach()
    return sorted(name for name, op in REGISTRY.items() if op.onnx is None)


def coverage():
    """{op name: 'yes' | 'no: reason' | 'missing'} for every op of the table."""
    attach()
    out = {}
    for name in sorted(REGISTRY):
        rule = REGISTRY[name].onnx
        out[name] = "missing" if rule is None else (f"no: {rule.reason}" if isinstance(rule, not_exportable)
                                                    else "yes")
    return out
