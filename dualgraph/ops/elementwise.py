"""Elementwise primitives: arithmetic, math, activations, comparisons, logic, casts.

Each op is one `defop` call: forward on `xp`, an inference rule, a vjp written with
dualgraph ops (so gradients of gradients work), traits, and its ONNX lowering (right above the
record, or one of ops/onnx_rules.py's shared ones). The user-facing function sits right below it.
"""
import numpy as np

from .. import dtypes as _dt
from ..backend import erf as _erf
from ..kernels import activations as _act
from ..kernels.where_zero import where_zero as _where_zero
from ..errors import DTypeError
from ..graph.avals import Aval
from ..tensor import Tensor, as_tensor
from ..dispatch import apply
from .creation import ones_like, zeros_like
from .gather import nonzero
from .infer import (bool_elementwise_infer, broadcast_shapes, elementwise_infer, float_dtype,
                    float_elementwise_infer, same_infer)
from .onnx_rules import (args, binary, bitwise, comparison, emit_in, logical, out_dtype,
                         rounding, unary)
from .registry import defop

EW = dict(elementwise=True, broadcasting=True)
_ndarray = np.ndarray


# ---- type promotion -------------------------------------------------------------------------------
# Binary forwards compute in `dtypes.result_type` of their operands (PyTorch's rule), the dtype their
# inference rules give: operands are cast to it before the one numpy/cupy call, because numpy's own
# promotion differs (float32 * int64 -> float64, 0-d arrays promote dimensioned ones).

def _common(a, b):
    """a, b cast to their common dtype; the same-dtype case (nearly every call) returns at once."""
    ca, cb = a.__class__, b.__class__
    if ca is _ndarray:
        if cb is _ndarray:
            if a.dtype == b.dtype:
                return a, b
        elif cb is float:
            if a.dtype.kind == "f":
                return a, b
        elif cb is int and a.dtype.kind != "b":
            return a, b
    elif cb is _ndarray:
        if ca is float:
            if b.dtype.kind == "f":
                return a, b
        elif ca is int and b.dtype.kind != "b":
            return a, b
    return _dt.promote_operands(a, b)[1]


def _common_dtype(a, b):
    """(dtype, a, b): the computation dtype and the operands cast to it (as `_common`)."""
    ca, cb = _common(a, b)
    dt = ca.dtype if hasattr(ca, "dtype") else cb.dtype if hasattr(cb, "dtype") else _dt.result_type(a, b)
    return dt, ca, cb


def _describe(xs):
    return ", ".join(repr(x) if isinstance(x, (bool, int, float)) else f"{x.dtype}{list(x.shape)}"
                     for x in xs if x is not None)


def _is_bool(x):
    return isinstance(x, (bool, np.bool_)) or (not isinstance(x, (int, float)) and x.dtype.kind == "b")


def _no_bool_sub(xs):
    if any(x is not None and _is_bool(x) for x in xs):
        raise DTypeError(f"sub: subtraction with a bool operand is not supported ({_describe(xs)}), as in "
                         f"PyTorch; to invert a mask use ~mask or dg.logical_not(mask)")


def _no_bool_compute(name, xs, dt):
    """floordiv/mod/pow are not defined on bools (PyTorch refuses them; numpy would compute in int8),
    except a bool tensor to a Python bool power (PyTorch: x ** True is x, x ** False all True)."""
    if name == "pow" and isinstance(xs[1], bool) and not isinstance(xs[0], (bool, int, float)):
        return
    if dt.kind == "b":
        raise DTypeError(f"{name}: not defined for bool operands ({_describe(xs)}); cast them with "
                         f".to(dg.int64) or .float() first")


def _bool_checked_infer(name):
    def infer(*xs, **_):
        out = elementwise_infer(*xs)
        if name == "sub":
            _no_bool_sub(xs)
        else:
            _no_bool_compute(name, xs, out.dtype)
        return out
    return infer


def _promoting(name, ufunc):
    """forward(xp, a, b) = xp.<ufunc> on a, b in their common dtype."""
    np_ufunc = getattr(np, ufunc)

    def forward(xp, a, b):
        # same-dtype arrays, or a float array with a Python float, need no cast (checked inline: this
        # runs for every eager op)
        ca = a.__class__
        if not (ca is _ndarray and (b.__class__ is _ndarray and a.dtype is b.dtype
                                    or b.__class__ is float and a.dtype.kind == "f")):
            a, b = _common(a, b)
        return (np_ufunc if xp is np else getattr(xp, ufunc))(a, b)
    forward.__name__ = f"_{name}_forward"
    return forward


def _promoting_checked(name, ufunc):
    """As `_promoting`, for the ops refusing bools (the check runs only off the same-dtype path too)."""
    np_ufunc = getattr(np, ufunc)

    def forward(xp, a, b):
        if a.__class__ is _ndarray:
            dt = a.dtype
            if b.__class__ is _ndarray and dt is b.dtype and dt.kind != "b" or b.__class__ is float and dt.kind == "f":
                return (np_ufunc if xp is np else getattr(xp, ufunc))(a, b)  # no bool, no cast: the common case
        if name == "sub":
            _no_bool_sub((a, b))
            a, b = _common(a, b)
        else:
            dt, ca, cb = _common_dtype(a, b)
            _no_bool_compute(name, (a, b), dt)
            a, b = ca, cb
        return getattr(xp, ufunc)(a, b)
    forward.__name__ = f"_{name}_forward"
    return forward


def _f(xp, x):
    """Inputs of floating ops: ints and bools compute in float32 (as PyTorch), floats unchanged."""
    if isinstance(x, (int, float, bool)):
        return x
    return x if x.dtype.kind == "f" else x.astype(np.float32)


# ---- arithmetic -----------------------------------------------------------------------------

ADD = defop("add", _promoting("add", "add"), elementwise_infer,
            lambda ctx, g: (g, g), commutative=True, ufunc="add", expr="({0} + {1})", arith=True,
            onnx=binary("Add", "Or"), **EW)
SUB = defop("sub", _promoting_checked("sub", "subtract"), _bool_checked_infer("sub"),
            lambda ctx, g: (g, neg(g)), ufunc="subtract", expr="({0} - {1})", arith=True,
            onnx=binary("Sub"), **EW)
MUL = defop("mul", _promoting("mul", "multiply"), elementwise_infer,
            lambda ctx, g: (g * ctx.inputs[1], g * ctx.inputs[0]), commutative=True, ufunc="multiply",
            expr="({0} * {1})", arith=True, onnx=binary("Mul", "And"), **EW)


def _div_forward(xp, a, b):
    # true division: the common dtype, or the default float when that is an integer or bool
    if a.__class__ is _ndarray and b.__class__ is _ndarray and a.dtype == b.dtype and a.dtype.kind == "f":
        return xp.true_divide(a, b)
    dt = _dt.result_type(a, b)
    dt = dt if dt.kind == "f" else _dt.DEFAULT_FLOAT
    return xp.true_divide(_dt.as_dtype(a, dt), _dt.as_dtype(b, dt))


def _div_vjp(ctx, g):
    a, b = ctx.inputs
    ga = g / b if ctx.needs_input_grad[0] else None
    gb = neg(g) * a / (b * b) if ctx.needs_input_grad[1] else None
    return ga, gb


def _div_onnx(ctx, node, a, b):
    return ctx.emit("Div", args(ctx, node, (a, b), out_dtype(node)))


DIV = defop("div", _div_forward, float_elementwise_infer, _div_vjp, ufunc="true_divide", expr="({0} / {1})",
            onnx=_div_onnx, **EW)


def _py_mod_onnx(ctx, a, b, dt):
    """numpy's mod: the result takes the sign of the divisor (ONNX fmod takes the dividend's)."""
    if dt.kind in "iu":
        return ctx.emit("Mod", [a, b], fmod=0)
    m = ctx.emit("Mod", [a, b], fmod=1)
    zero = ctx.const(0, dt)
    nonzero = ctx.emit("Not", [ctx.emit("Equal", [m, zero])])
    differ = ctx.emit("Xor", [ctx.emit("Less", [m, zero]), ctx.emit("Less", [b, zero])])
    fix = ctx.emit("And", [nonzero, differ])
    return ctx.emit("Where", [fix, ctx.emit("Add", [m, b]), m])


def _floordiv_onnx(ctx, node, a, b):
    dt = out_dtype(node)
    a, b = args(ctx, node, (a, b), dt)
    exact = ctx.emit("Sub", [a, _py_mod_onnx(ctx, a, b, dt)])
    q = ctx.emit("Div", [exact, b])
    return q if dt.kind in "iu" else ctx.emit("Round", [q])   # numpy: (a - mod(a, b)) / b, rounded


def _mod_onnx(ctx, node, a, b):
    dt = out_dtype(node)
    a, b = args(ctx, node, (a, b), dt)
    return _py_mod_onnx(ctx, a, b, dt)


FLOORDIV = defop("floordiv", _promoting_checked("floordiv", "floor_divide"), _bool_checked_infer("floordiv"),
                 lambda ctx, g: (zeros_like(g), zeros_like(g)), onnx=_floordiv_onnx, **EW)
MOD = defop("mod", _promoting_checked("mod", "mod"), _bool_checked_infer("mod"),
            lambda ctx, g: (g, neg(g) * floordiv(ctx.inputs[0], ctx.inputs[1])), onnx=_mod_onnx, **EW)


def _pow_forward(xp, a, b):
    dt, ca, cb = _common_dtype(a, b)
    _no_bool_compute("pow", (a, b), dt)
    a, b = ca, cb
    if dt.kind == "b":
        return xp.power(a.astype(np.int8), int(b)).astype(np.bool_)
    if isinstance(b, (int, float)) and not isinstance(b, bool) and hasattr(a, "dtype") and a.dtype.kind == "f":
        # float32 x**3 takes numpy's slow generic pow path; small integer powers are multiplies
        if b == 2:
            return a * a
        if b == 3:
            return a * a * a
        if b == 0.5:
            return xp.sqrt(a)
        if b == -1:
            return xp.reciprocal(a)
    return xp.power(a, b)


def _pow_vjp(ctx, g):
    a, b = ctx.inputs
    ga = gb = None
    if ctx.needs_input_grad[0]:
        ga = g * b * pow(a, b - 1)
    if ctx.needs_input_grad[1]:
        out = ctx.out
        if isinstance(a, (int, float)):  # a Python scalar base: 2.0 ** x
            safe_log = float(np.log(a)) if a > 0 else 0.0
        else:
            safe_log = log(where(a > 0, a, ones_like(a)))
        gb = g * out * safe_log
    return ga, gb


def _pow_onnx(ctx, node, a, b):
    dt = out_dtype(node)
    return emit_in(ctx, "Pow", dt, args(ctx, node, (a, b), dt), 2)


POW = defop("pow", _pow_forward, _bool_checked_infer("pow"), _pow_vjp, saves_output=True, onnx=_pow_onnx, **EW)
def _extremum_vjp(wins):
    """Gradient of maximum/minimum: to the winning input; ties split it evenly (as PyTorch and JAX)."""
    def vjp(ctx, g):
        a, b = ctx.inputs
        half = g * 0.5
        tie = eq(a, b)
        ga = where(tie, half, where(wins(a, b), g, zeros_like(g))) if ctx.needs_input_grad[0] else None
        gb = where(tie, half, where(wins(a, b), zeros_like(g), g)) if ctx.needs_input_grad[1] else None
        return ga, gb
    return vjp


MAXIMUM = defop("maximum", _promoting("maximum", "maximum"), elementwise_infer,
                _extremum_vjp(lambda a, b: gt(a, b)), commutative=True, ufunc="maximum",
                # numpy's maximum(a, b) is `a > b or isnan(a) ? a : b` (b on equal zeros); `|`, not `||`: no
                # branch, so C loops over it stay branch-free and vectorize
                expr="((({0} > {1}) | ({0} != {0})) ? {0} : {1})", onnx=binary("Max", "Or"), **EW)
MINIMUM = defop("minimum", _promoting("minimum", "minimum"), elementwise_infer,
                _extremum_vjp(lambda a, b: lt(a, b)), commutative=True, ufunc="minimum",
                expr="((({0} < {1}) | ({0} != {0})) ? {0} : {1})", onnx=binary("Min", "And"), **EW)


def add(a, b, alpha=1):
    return apply(ADD, (a, b if alpha == 1 else b * alpha))


def sub(a, b, alpha=1):
    return apply(SUB, (a, b if alpha == 1 else b * alpha))


def mul(a, b):
    return apply(MUL, (a, b))


def div(a, b, rounding_mode=None):
    if rounding_mode == "floor":
        return floordiv(a, b)
    if rounding_mode == "trunc":
        if _is_int(a) and _is_int(b):  # stay integer (as PyTorch): floor, then step toward 0 if inexact
            q = floordiv(a, b)
            return where(logical_and(ne(mod(a, b), 0), lt(q, 0)), q + 1, q)
        return trunc(div(a, b))
    return apply(DIV, (a, b))


def _is_int(v):
    if isinstance(v, bool):
        return False
    return isinstance(v, (int, np.integer)) or (hasattr(v, "dtype") and v.dtype.kind in "iu")


def floordiv(a, b):
    return apply(FLOORDIV, (a, b))


def mod(a, b):
    return apply(MOD, (a, b))


def pow(a, b):
    return apply(POW, (a, b))


def maximum(a, b):
    return apply(MAXIMUM, (a, b))


def minimum(a, b):
    return apply(MINIMUM, (a, b))


subtract, multiply, divide, true_divide, floor_divide, remainder, power = sub, mul, div, div, floordiv, mod, pow


# ---- unary math -------------------------------------------------------------------------------

def _unary(name, forward, vjp, infer=float_elementwise_infer, saves_output=False, **traits):
    op = defop(name, forward, infer, vjp, elementwise=True, saves_output=saves_output, **traits)
    return op, (lambda x: apply(op, (x,)))


def _neg_infer(x, **_):
    if x.dtype == np.dtype(bool):  # checked here too, so a trace refuses it as eager does
        raise DTypeError("neg: the `-` operator on a bool tensor is not supported; to invert a mask use `~` "
                         "or dg.logical_not")
    return same_infer(x)


# onnxruntime has float32-only kernels for a few ops (Tan from opset 22, Erf, LeakyRelu, Elu, Gelu) and no
# integer Relu: those lower to equivalent compositions of ops it runs in every dtype

def _tan_onnx(ctx, node, x):
    dt = out_dtype(node)
    x = ctx.arg(node.inputs[0], x, dt)
    if dt == np.float32:
        return ctx.emit("Tan", [x])
    return ctx.emit("Div", [ctx.emit("Sin", [x]), ctx.emit("Cos", [x])])


def _erf_of_onnx(ctx, x, dt):
    """Erf; onnxruntime runs it in float32 only, so other dtypes round-trip through float32
    (about 1e-7 relative error in float64)."""
    if dt == np.float32:
        return ctx.emit("Erf", [x])
    return ctx.cast(ctx.emit("Erf", [ctx.cast(x, dt, np.float32)]), np.float32, dt)


def _erf_onnx(ctx, node, x):
    dt = out_dtype(node)
    return _erf_of_onnx(ctx, ctx.arg(node.inputs[0], x, dt), dt)


def _log1p_onnx(ctx, node, x):
    # log1p(x) = x * log(u) / (u - 1) with u = 1 + x, exact where u == 1 (Goldberg)
    dt = out_dtype(node)
    x = ctx.arg(node.inputs[0], x, dt)
    one = ctx.const(1, dt)
    u = ctx.emit("Add", [x, one])
    um1 = ctx.emit("Sub", [u, one])
    is_one = ctx.emit("Equal", [um1, ctx.const(0, dt)])
    safe = ctx.emit("Where", [is_one, one, um1])
    ratio = ctx.emit("Div", [ctx.emit("Mul", [x, ctx.emit("Log", [u])]), safe])
    big = ctx.emit("IsInf", [u], detect_negative=0)
    return ctx.emit("Where", [is_one, x, ctx.emit("Where", [big, u, ratio])])


def _expm1_onnx(ctx, node, x):
    # expm1(x) = (u - 1) * x / log(u) with u = exp(x), exact where u == 1 (Kahan)
    dt = out_dtype(node)
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


def _rsqrt_onnx(ctx, node, x):
    dt = out_dtype(node)
    return ctx.emit("Reciprocal", [ctx.emit("Sqrt", [ctx.arg(node.inputs[0], x, dt)])])


def _trunc_onnx(ctx, node, x):
    dt = out_dtype(node)
    if dt.kind != "f":
        return ctx.cast(x, node.inputs[0].aval.dtype, dt)
    x = ctx.arg(node.inputs[0], x, dt)
    neg = ctx.emit("Less", [x, ctx.const(0, dt)])
    return ctx.emit("Where", [neg, ctx.emit("Ceil", [x]), ctx.emit("Floor", [x])])


NEG, neg = _unary("neg", lambda xp, x: xp.negative(x), lambda ctx, g: neg(g), infer=_neg_infer,
                  ufunc="negative", expr="(-{0})", arith=True, onnx=unary("Neg"))
ABS, abs = _unary("abs", lambda xp, x: xp.abs(x), lambda ctx, g: g * sign(ctx.inputs[0]), infer=same_infer,
                  ufunc="absolute", expr="fabs({0})", onnx=unary("Abs"))
SIGN, sign = _unary("sign", lambda xp, x: xp.sign(x), lambda ctx, g: zeros_like(g), infer=same_infer,
                    onnx=unary("Sign"))
EXP, exp = _unary("exp", lambda xp, x: xp.exp(_f(xp, x)), lambda ctx, g: g * ctx.out, saves_output=True,
                  ufunc="exp", expr="exp({0})", onnx=unary("Exp"))
LOG, log = _unary("log", lambda xp, x: xp.log(_f(xp, x)), lambda ctx, g: g / ctx.inputs[0], ufunc="log",
                  expr="log({0})", onnx=unary("Log"))
LOG1P, log1p = _unary("log1p", lambda xp, x: xp.log1p(_f(xp, x)), lambda ctx, g: g / (ctx.inputs[0] + 1),
                      ufunc="log1p", expr="log1p({0})", onnx=_log1p_onnx)
EXPM1, expm1 = _unary("expm1", lambda xp, x: xp.expm1(_f(xp, x)), lambda ctx, g: g * (ctx.out + 1),
                      saves_output=True, ufunc="expm1", expr="expm1({0})", onnx=_expm1_onnx)
SQRT, sqrt = _unary("sqrt", lambda xp, x: xp.sqrt(_f(xp, x)), lambda ctx, g: g / (2 * ctx.out),
                    saves_output=True, ufunc="sqrt", expr="sqrt({0})", onnx=unary("Sqrt"))
RSQRT, rsqrt = _unary("rsqrt", lambda xp, x: 1 / xp.sqrt(_f(xp, x)),
                      lambda ctx, g: g * -0.5 * ctx.out / ctx.inputs[0], saves_output=True,
                      onnx=_rsqrt_onnx)
SIN, sin = _unary("sin", lambda xp, x: xp.sin(_f(xp, x)), lambda ctx, g: g * cos(ctx.inputs[0]),
                  ufunc="sin", expr="sin({0})", onnx=unary("Sin"))
COS, cos = _unary("cos", lambda xp, x: xp.cos(_f(xp, x)), lambda ctx, g: neg(g * sin(ctx.inputs[0])),
                  ufunc="cos", expr="cos({0})", onnx=unary("Cos"))
TAN, tan = _unary("tan", lambda xp, x: xp.tan(_f(xp, x)), lambda ctx, g: g * (1 + ctx.out * ctx.out),
                  saves_output=True, onnx=_tan_onnx)
TANH, tanh = _unary("tanh", lambda xp, x: xp.tanh(_f(xp, x)), lambda ctx, g: g * (1 - ctx.out * ctx.out),
                    saves_output=True, ufunc="tanh", expr="tanh({0})", onnx=unary("Tanh"))


def _sigmoid_forward(xp, x):
    x = _f(xp, x)
    # 0.5 * (1 + tanh(x/2)) is sigmoid without overflow warnings for large |x|
    return (xp.tanh(x * x.dtype.type(0.5)) + 1) * x.dtype.type(0.5)


SIGMOID, sigmoid = _unary("sigmoid", _sigmoid_forward, lambda ctx, g: g * ctx.out * (1 - ctx.out),
                          saves_output=True, expr="((tanh({0} * ({t})0.5) + 1) * ({t})0.5)",
                          onnx=unary("Sigmoid"))
def _erf_forward(xp, x):
    x = _f(xp, x)
    if xp is np:
        y = _act.apply("erf_loop", x)
        if y is not None:
            return y
    return _erf(xp, x)


ERF, erf = _unary("erf", _erf_forward,
                  lambda ctx, g: g * (2 / np.sqrt(np.pi)) * exp(neg(ctx.inputs[0] * ctx.inputs[0])),
                  expr="erf({0})", onnx=_erf_onnx)
FLOOR, floor = _unary("floor", lambda xp, x: xp.floor(x), lambda ctx, g: zeros_like(g), infer=same_infer,
                      onnx=rounding("Floor"))
CEIL, ceil = _unary("ceil", lambda xp, x: xp.ceil(x), lambda ctx, g: zeros_like(g), infer=same_infer,
                    onnx=rounding("Ceil"))
# numpy and ONNX both round half to even
ROUND, round = _unary("round", lambda xp, x: xp.round(x), lambda ctx, g: zeros_like(g), infer=same_infer,
                      onnx=rounding("Round"))
TRUNC, trunc = _unary("trunc", lambda xp, x: xp.trunc(x), lambda ctx, g: zeros_like(g), infer=same_infer,
                      onnx=_trunc_onnx)
# copy(x, stop_gradient=True) is what x.detach() traces to: a node, so the graph itself says where
# gradients stop (the tracer gives it no gradient; simplify drops it once autodiff has run)
COPY, copy = _unary("copy", lambda xp, x, stop_gradient=False: xp.array(x, copy=True), lambda ctx, g: g,
                    infer=same_infer, onnx=unary("Identity"))


def reciprocal(x):
    return 1 / x


def square(x):
    return x * x


# ---- activations ------------------------------------------------------------------------------

def _relu_onnx(ctx, node, x):
    dt = out_dtype(node)
    x = ctx.arg(node.inputs[0], x, dt)
    if dt.kind == "f":
        return ctx.emit("Relu", [x])
    return ctx.emit("Max", [x, ctx.const(0, dt)])


def _softplus_onnx(ctx, node, x):
    # max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|
    dt = out_dtype(node)
    x = ctx.arg(node.inputs[0], x, dt)
    e = ctx.emit("Exp", [ctx.emit("Neg", [ctx.emit("Abs", [x])])])
    lp = ctx.emit("Log", [ctx.emit("Add", [e, ctx.const(1, dt)])])
    return ctx.emit("Add", [ctx.emit("Relu", [x]), lp])


RELU, relu = _unary("relu", lambda xp, x: xp.maximum(x, x.dtype.type(0)),
                    lambda ctx, g: where(ctx.inputs[0] > 0, g, 0.0), infer=same_infer,
                    expr="((({0} > 0) | ({0} != {0})) ? {0} : 0)", onnx=_relu_onnx, fresh=True)
SOFTPLUS_OP = defop("softplus", lambda xp, x: xp.logaddexp(_f(xp, x), 0).astype(_f(xp, x).dtype),
                    float_elementwise_infer, lambda ctx, g: g * sigmoid(ctx.inputs[0]), elementwise=True,
                    onnx=_softplus_onnx)


def softplus(x, beta=1.0, threshold=20.0):
    if beta == 1.0:
        return apply(SOFTPLUS_OP, (x,))
    return apply(SOFTPLUS_OP, (x * beta,)) / beta


def _leaky_relu_forward(xp, x, negative_slope):
    x = _f(xp, x)  # ints compute in float32: an int slope of 0.01 would be 0
    return xp.where(x > 0, x, x * x.dtype.type(negative_slope))


def _leaky_relu_onnx(ctx, node, x):
    dt = out_dtype(node)
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


LEAKY_RELU = defop("leaky_relu", _leaky_relu_forward, float_elementwise_infer,
                   lambda ctx, g: where(ctx.inputs[0] > 0, g, g * ctx.attrs["negative_slope"]),
                   elementwise=True, onnx=_leaky_relu_onnx)


def leaky_relu(x, negative_slope=0.01):
    return apply(LEAKY_RELU, (x,), {"negative_slope": float(negative_slope)})


def _elu_forward(xp, x, alpha):
    x = _f(xp, x)  # ints compute in float32 (int64(alpha) would truncate alpha)
    return xp.where(x > 0, x, xp.expm1(xp.minimum(x, 0)) * x.dtype.type(alpha))


def _elu_onnx(ctx, node, x):
    dt = out_dtype(node)
    alpha = float(ctx.attrs(node)["alpha"])
    x = ctx.arg(node.inputs[0], x, dt)
    if dt == np.float32:
        return ctx.emit("Elu", [x], alpha=alpha)
    zero = ctx.const(0, dt)
    neg = ctx.emit("Sub", [ctx.emit("Exp", [ctx.emit("Min", [x, zero])]), ctx.const(1, dt)])
    return ctx.emit("Where", [ctx.emit("Greater", [x, zero]), x, ctx.emit("Mul", [neg, ctx.const(alpha, dt)])])


ELU = defop("elu", _elu_forward, float_elementwise_infer,
            lambda ctx, g: where(ctx.inputs[0] > 0, g, g * (ctx.out + ctx.attrs["alpha"])),
            elementwise=True, saves_output=True, onnx=_elu_onnx)


def elu(x, alpha=1.0):
    return apply(ELU, (x,), {"alpha": float(alpha)})


# GELU is two records, exact and tanh, with no attributes, so fused C kernels take them from `expr`;
# each gradient is one record too (one pass over g and x eagerly, and a second-order vjp of its own)
_GELU_EXPR = "(({t})0.5 * {0} * (1 + erf({0} * ({t})0.7071067811865476)))"
_GELU_TANH_EXPR = ("(({t})0.5 * {0} * (1 + tanh(({t})0.7978845608028654 * ({0} + ({t})0.044715 * {0} * {0} * {0}))))")
_GELU_TANH_GRAD_EXPR = ("({0} * (({t})0.5 * (1 + tanh(({t})0.7978845608028654 * ({1} + ({t})0.044715 * {1} * {1} * {1})))"
                        " + ({t})0.5 * {1} * (1 - tanh(({t})0.7978845608028654 * ({1} + ({t})0.044715 * {1} * {1} * {1}))"
                        " * tanh(({t})0.7978845608028654 * ({1} + ({t})0.044715 * {1} * {1} * {1})))"
                        " * ({t})0.7978845608028654 * (1 + ({t})0.134145 * {1} * {1})))")
_GELU_GRAD_EXPR = ("({0} * (({t})0.5 * (1 + erf({1} * ({t})0.7071067811865476)) + {1} * "
                   "(exp(({t})-0.5 * {1} * {1}) * ({t})0.3989422804014327)))")


def _gelu_forward(xp, x, approximate="none"):
    x = _f(xp, x)
    t = x.dtype.type
    if xp is np:
        y = _act.apply("gelu_tanh" if approximate == "tanh" else "gelu", x)
        if y is not None:
            return y
    if approximate == "tanh":
        return t(0.5) * x * (1 + xp.tanh(t(0.7978845608028654) * (x + t(0.044715) * x * x * x)))
    return t(0.5) * x * (1 + _erf(xp, x * t(0.7071067811865476)))


def _gelu_grad_forward(xp, g, x, approximate="none"):
    """g * d gelu(x) / dx."""
    g, x = _common(g, _f(xp, x))
    if xp is np:
        y = _act.apply("gelu_tanh_grad" if approximate == "tanh" else "gelu_grad", g, x)
        if y is not None:
            return y
    t = x.dtype.type
    if approximate == "tanh":
        th = xp.tanh(t(0.7978845608028654) * (x + t(0.044715) * x * x * x))
        return g * (t(0.5) * (1 + th) + t(0.5) * x * (1 - th * th) * t(0.7978845608028654)
                    * (1 + t(0.134145) * x * x))
    cdf = t(0.5) * (1 + _erf(xp, x * t(0.7071067811865476)))
    return g * (cdf + x * (xp.exp(t(-0.5) * x * x) * t(0.3989422804014327)))


def _gelu_vjp(ctx, g):
    return (apply(GELU_GRAD, (g, ctx.inputs[0])),)


def _gelu_vjp_tanh(ctx, g):
    return (apply(GELU_TANH_GRAD, (g, ctx.inputs[0])),)


def _gelu_grad_vjp(ctx, h):
    """dx = g * d(x) with d = cdf + x pdf: the cotangent h gives h * d to g and h * g * d'(x) to x,
    d'(x) = pdf * (2 - x^2)."""
    g, x = ctx.inputs
    gg = apply(GELU_GRAD, (h, x)) if ctx.needs_input_grad[0] else None
    gx = None
    if ctx.needs_input_grad[1]:
        pdf = exp(-0.5 * x * x) * 0.3989422804014327
        gx = h * g * pdf * (2 - x * x)
    return gg, gx


def _gelu_tanh_grad_vjp(ctx, h):
    """d = 0.5 (1 + th) + 0.5 x sech^2(u) u' with u = k (x + c x^3), u' = k (1 + 3 c x^2);
    d'(x) = sech^2(u) (u' - x th u'^2 + 3 k c x^2)."""
    g, x = ctx.inputs
    gg = apply(GELU_TANH_GRAD, (h, x)) if ctx.needs_input_grad[0] else None
    gx = None
    if ctx.needs_input_grad[1]:
        k, c = 0.7978845608028654, 0.044715
        th = tanh(k * (x + c * x * x * x))
        du = k * (1 + 3 * c * x * x)
        gx = h * g * ((1 - th * th) * (du - x * th * du * du + 3 * k * c * x * x))
    return gg, gx


def _gelu_onnx_of(approximate):
    def rule(ctx, node, x):
        dt = out_dtype(node)
        x = ctx.arg(node.inputs[0], x, dt)
        if ctx.opset >= 20 and dt == np.float32:
            return ctx.emit("Gelu", [x], approximate=approximate)
        c = lambda v: ctx.const(v, dt)  # noqa: E731
        if approximate == "tanh":
            cube = ctx.emit("Mul", [ctx.emit("Mul", [x, x]), x])
            inner = ctx.emit("Mul", [c(0.7978845608028654),
                                     ctx.emit("Add", [x, ctx.emit("Mul", [c(0.044715), cube])])])
            t = ctx.emit("Add", [c(1.0), ctx.emit("Tanh", [inner])])
        else:
            t = ctx.emit("Add", [c(1.0), _erf_of_onnx(ctx, ctx.emit("Mul", [x, c(0.7071067811865476)]), dt)])
        return ctx.emit("Mul", [ctx.emit("Mul", [c(0.5), x]), t])
    return rule


def _gelu_grad_onnx_of(approximate):
    def rule(ctx, node, g, x):
        dt = out_dtype(node)
        g, x = ctx.arg(node.inputs[0], g, dt), ctx.arg(node.inputs[1], x, dt)
        c = lambda v: ctx.const(v, dt)  # noqa: E731
        mul = lambda a, b: ctx.emit("Mul", [a, b])  # noqa: E731
        add = lambda a, b: ctx.emit("Add", [a, b])  # noqa: E731
        xx = mul(x, x)
        if approximate == "tanh":
            th = ctx.emit("Tanh", [mul(c(0.7978845608028654), add(x, mul(c(0.044715), mul(xx, x))))])
            sech2 = ctx.emit("Sub", [c(1.0), mul(th, th)])
            d = add(mul(c(0.5), add(c(1.0), th)),
                    mul(mul(mul(c(0.5), x), sech2), mul(c(0.7978845608028654), add(c(1.0), mul(c(0.134145), xx)))))
        else:
            cdf = mul(c(0.5), add(c(1.0), _erf_of_onnx(ctx, mul(x, c(0.7071067811865476)), dt)))
            pdf = mul(ctx.emit("Exp", [mul(c(-0.5), xx)]), c(0.3989422804014327))
            d = add(cdf, mul(x, pdf))
        return mul(g, d)
    return rule


GELU = defop("gelu", lambda xp, x: _gelu_forward(xp, x), float_elementwise_infer, _gelu_vjp, elementwise=True,
             expr=_GELU_EXPR, onnx=_gelu_onnx_of("none"), fresh=True)
GELU_TANH = defop("gelu_tanh", lambda xp, x: _gelu_forward(xp, x, "tanh"), float_elementwise_infer, _gelu_vjp_tanh,
                  elementwise=True, expr=_GELU_TANH_EXPR, onnx=_gelu_onnx_of("tanh"))
GELU_GRAD = defop("gelu_grad", lambda xp, g, x: _gelu_grad_forward(xp, g, x), elementwise_infer, _gelu_grad_vjp,
                  elementwise=True, expr=_GELU_GRAD_EXPR, onnx=_gelu_grad_onnx_of("none"), fresh=True)
GELU_TANH_GRAD = defop("gelu_tanh_grad", lambda xp, g, x: _gelu_grad_forward(xp, g, x, "tanh"), elementwise_infer,
                       _gelu_tanh_grad_vjp, elementwise=True, expr=_GELU_TANH_GRAD_EXPR, onnx=_gelu_grad_onnx_of("tanh"))


def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return apply(GELU_TANH if approximate == "tanh" else GELU, (x,))


def silu(x):
    return x * sigmoid(x)


swish = silu


def hardtanh(x, min_val=-1.0, max_val=1.0):
    return clip(x, min_val, max_val)


# ---- clip and where -----------------------------------------------------------------------------

def _clip_forward(xp, x, lo, hi):
    x = _dt.as_dtype(x, _dt.result_type(x, lo, hi))  # clamp(int tensor, 0.5) computes in float32
    out = x
    if lo is not None:
        out = xp.maximum(out, xp.asarray(lo, dtype=x.dtype) if x.dtype.kind == "f" else lo)
    if hi is not None:
        out = xp.minimum(out, xp.asarray(hi, dtype=x.dtype) if x.dtype.kind == "f" else hi)
    return out if out is not x else xp.array(x, copy=True)


def _clip_vjp(ctx, g):
    x = ctx.inputs[0]
    lo, hi = ctx.attrs["lo"], ctx.attrs["hi"]
    keep = ones_like(x).astype(bool)
    if lo is not None:
        keep = logical_and(keep, x >= lo)
    if hi is not None:
        keep = logical_and(keep, x <= hi)
    return (where(keep, g, zeros_like(g)),)


def _clip_infer(x, lo, hi):
    return Aval(x.shape, _dt.result_type(x, lo, hi))


def _clip_onnx(ctx, node, x):
    dt = out_dtype(node)
    a = ctx.attrs(node)
    x = ctx.arg(node.inputs[0], x, dt)
    out = x
    if a["lo"] is not None:   # Max/Min propagate NaN like numpy's maximum/minimum
        out = emit_in(ctx, "Max", dt, [out, ctx.const(a["lo"], dt)], 2)
    if a["hi"] is not None:
        out = emit_in(ctx, "Min", dt, [out, ctx.const(a["hi"], dt)], 2)
    return out if out is not x else ctx.emit("Identity", [x])


CLIP = defop("clip", _clip_forward, _clip_infer, _clip_vjp, elementwise=True, onnx=_clip_onnx)


def _bound(v):
    """Integer bounds stay ints, so clipping an int tensor keeps its dtype (numpy's and PyTorch's rule)."""
    if v is None:
        return None
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    return float(v)


def clip(x, min=None, max=None):
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # tensor bounds broadcast against x (PyTorch's clamp); the gradient goes to whichever value is taken
        out = x if min is None else where(x < min, min, x)
        return out if max is None else where(out > max, max, out)
    return apply(CLIP, (x,), {"lo": _bound(min), "hi": _bound(max)})


clamp = clip


def _where_infer(c, a, b, **_):
    shapes = [v.shape for v in (c, a, b) if isinstance(v, Aval)]
    return Aval(broadcast_shapes("where", *shapes), _dt.result_type(a, b))


def _where_forward(xp, c, a, b):
    if b.__class__ in (float, int) and b == 0 and a.__class__ is _ndarray and a.dtype.kind == "f" \
            and c.__class__ is _ndarray and c.dtype == np.bool_ and c.shape == a.shape:
        return _where_zero(xp, c, a)  # ReLU's and where's own backward: no zeros array, one pass
    a, b = _common(a, b)
    return xp.where(c, a, b)


def _where_vjp(ctx, g):
    c = ctx.inputs[0]
    return None, where(c, g, 0.0), where(logical_not(c), g, 0.0)


def _where_onnx(ctx, node, c, a, b):
    dt = out_dtype(node)
    cond = ctx.arg(node.inputs[0], c, np.bool_)
    a, b = ctx.arg(node.inputs[1], a, dt), ctx.arg(node.inputs[2], b, dt)
    return emit_in(ctx, "Where", dt, [cond, a, b], 2)


WHERE = defop("where", _where_forward, _where_infer, _where_vjp, expr="({0} ? {1} : {2})", onnx=_where_onnx, **EW)


def where(condition, x=None, y=None):
    if x is None and y is None:
        return nonzero(condition)
    if not isinstance(x, Tensor) and not isinstance(y, Tensor):
        # two Python scalars: x takes dg.tensor's default dtype (float32 for floats, as PyTorch)
        x = as_tensor(x)
        if isinstance(condition, Tensor) and condition.device is not x.device:
            x = x.to(condition.device)
    return apply(WHERE, (condition, x, y))


# ---- comparisons and logic (not differentiable) ---------------------------------------------------

def _cmp(name, ufunc, onnx, expr=""):
    op = defop(name, _promoting(name, ufunc), bool_elementwise_infer, None, differentiable=False, ufunc=ufunc,
               expr=expr, onnx=onnx, **EW)
    return op, (lambda a, b: apply(op, (a, b)))


EQ, eq = _cmp("eq", "equal", comparison("Equal"), "({0} == {1})")
NE, ne = _cmp("ne", "not_equal", comparison("Equal", negate=True), "({0} != {1})")
LT, lt = _cmp("lt", "less", comparison("Less"), "({0} < {1})")
LE, le = _cmp("le", "less_equal", comparison("LessOrEqual"), "({0} <= {1})")
GT, gt = _cmp("gt", "greater", comparison("Greater"), "({0} > {1})")
GE, ge = _cmp("ge", "greater_equal", comparison("GreaterOrEqual"), "({0} >= {1})")
AND, logical_and = _cmp("logical_and", "logical_and", logical("And"))
OR, logical_or = _cmp("logical_or", "logical_or", logical("Or"))
XOR, logical_xor = _cmp("logical_xor", "logical_xor", logical("Xor"))
NOT = defop("logical_not", lambda xp, a: xp.logical_not(a), bool_elementwise_infer, None, differentiable=False,
            elementwise=True, onnx=lambda ctx, node, a: ctx.emit("Not", [ctx.arg(node.inputs[0], a, np.bool_)]))


def _isnan_onnx(ctx, node, x):
    src = node.inputs[0].aval.dtype
    if src.kind != "f":
        return ctx.emit("Expand", [ctx.const(False), ctx.shape_of(x)])
    return ctx.emit("IsNaN", [ctx.cast(x, src, np.float32) if src == np.float16 else x])


def _isfinite_onnx(ctx, node, x):
    src = node.inputs[0].aval.dtype
    if src.kind != "f":
        return ctx.emit("Expand", [ctx.const(True), ctx.shape_of(x)])
    x = ctx.cast(x, src, np.float32) if src == np.float16 else x
    return ctx.emit("Not", [ctx.emit("Or", [ctx.emit("IsNaN", [x]), ctx.emit("IsInf", [x])])])


ISNAN = defop("isnan", lambda xp, a: xp.isnan(a), bool_elementwise_infer, None, differentiable=False,
              elementwise=True, onnx=_isnan_onnx)
ISFINITE = defop("isfinite", lambda xp, a: xp.isfinite(a), bool_elementwise_infer, None, differentiable=False,
                 elementwise=True, onnx=_isfinite_onnx)


def _bitwise(name, onnx):
    def check(xs, dt):
        if dt.kind == "f":
            raise DTypeError(f"{name}: needs integer or bool operands, got ({_describe(xs)})")

    def infer(*xs, **_):
        out = elementwise_infer(*xs)
        check(xs, out.dtype)
        return out

    def forward(xp, a, b):
        dt, ca, cb = _common_dtype(a, b)
        check((a, b), dt)
        return getattr(xp, name)(ca, cb)
    return defop(name, forward, infer, None, differentiable=False, onnx=onnx, **EW)


BITAND = _bitwise("bitwise_and", bitwise("BitwiseAnd", "And"))
BITOR = _bitwise("bitwise_or", bitwise("BitwiseOr", "Or"))
BITXOR = _bitwise("bitwise_xor", bitwise("BitwiseXor", "Xor"))


def _invert_onnx(ctx, node, a):
    if out_dtype(node) == np.bool_:
        return ctx.emit("Not", [a])
    ctx.require(18, "invert on integers (BitwiseNot)")
    return ctx.emit("BitwiseNot", [a])


INVERT = defop("invert", lambda xp, a: xp.invert(a), same_infer, None, differentiable=False, elementwise=True,
               onnx=_invert_onnx)

equal, not_equal, less, less_equal, greater, greater_equal = eq, ne, lt, le, gt, ge


def logical_not(a):
    return apply(NOT, (a,))


def isnan(a):
    return apply(ISNAN, (a,))


def isfinite(a):
    return apply(ISFINITE, (a,))


def bitwise_and(a, b):
    return apply(BITAND, (a, b))


def bitwise_or(a, b):
    return apply(BITOR, (a, b))


def bitwise_xor(a, b):
    return apply(BITXOR, (a, b))


def invert(a):
    return apply(INVERT, (a,))


# ---- casts ------------------------------------------------------------------------------------

def _cast_vjp(ctx, g):
    src = ctx.inputs[0]
    return (g.astype(src.dtype) if src.dtype.kind == "f" else None,)


CAST = defop("cast", lambda xp, x, dtype: x.astype(dtype), lambda x, dtype: Aval(x.shape, dtype), _cast_vjp,
             elementwise=True, onnx=lambda ctx, node, x: ctx.emit("Cast", [x], to=ctx.onnx_dtype(out_dtype(node))))


def astype(x, dtype):
    dtype = _dt.resolve(dtype)
    if x.dtype == dtype:
        return x
    return apply(CAST, (x,), {"dtype": dtype})


float_dtype = float_dtype
