"""Elementwise math beyond the core set, with PyTorch's names and meanings: log2/log10/exp2, the hyperbolic and
inverse trigonometric functions, atan2, hypot, erfc/erfinv, sinc, fmod, logaddexp(2), xlogy, copysign,
heaviside, signbit, nan_to_num, and composites (lerp, frac, deg2rad, clamp_min, ...).

Integer and bool inputs of the floating functions compute in the default float dtype, as PyTorch's do.
onnxruntime runs Sinh/Asin/Atan/... in float32 only: those lowerings compose the float64 case from ops it
runs in every float dtype where an exact composition exists (sinh, cosh, asinh, acosh, atanh), and round-trip
through float32 otherwise (asin, acos, atan, atan2, erfc: about 1e-7 relative error in float64).
This module sits above ops/selection.py, on the elementwise family.
"""
import math as _math

import numpy as np

from .. import backend as _backend
from ..dispatch import apply
from ..errors import DTypeError
from ..graph.avals import Aval
from ..tensor import Tensor
from .creation import zeros_like
from .elementwise import (_common, _describe, _erf_of_onnx, _f, clip, cos, eq, exp, isfinite, isnan, log,
                          logical_and, logical_not, maximum, minimum, mul, ne, neg, sign, sqrt, trunc, where)
from .infer import bool_elementwise_infer, elementwise_infer, float_elementwise_infer, same_infer
from .onnx_rules import args, not_exportable, out_dtype
from .registry import defop

_LN2 = _math.log(2.0)
_LN10 = _math.log(10.0)


def _special(name, fallback):
    """scipy.special.<name> where scipy is installed, else `fallback` (exact, slower)."""
    def fn(xp, x):
        if xp is not np:
            return _backend.special(xp, name)(x)
        try:
            import scipy.special as sp
        except ImportError:
            return fallback(x).astype(x.dtype, copy=False)
        return getattr(sp, name)(x).astype(x.dtype, copy=False)
    return fn


def _erfinv_fallback(y):
    """erfinv without scipy: Giles' single-precision approximation refined by Newton steps on math.erf."""
    y = np.asarray(y, np.float64)
    w = -np.log(np.clip((1.0 - y) * (1.0 + y), 1e-300, None))
    small = w < 5.0
    ws, wl = w - 2.5, np.sqrt(w) - 3.0
    ps = 2.81022636e-08
    for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503, -0.00417768164,
              0.246640727, 1.50140941):
        ps = c + ps * ws
    pl = -0.000200214257
    for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047,
              1.00167406, 2.83297682):
        pl = c + pl * wl
    x = np.where(small, ps, pl) * y
    erf = np.vectorize(_math.erf, otypes=[np.float64])
    for _ in range(3):
        x = x - (erf(x) - y) / (2 / _math.sqrt(_math.pi) * np.exp(-x * x))
    x = np.where(y == 1, np.inf, np.where(y == -1, -np.inf, x))
    return np.where(np.abs(y) > 1, np.nan, x)


_erfc_np = _special("erfc", lambda x: np.vectorize(_math.erfc, otypes=[np.float64])(x))
_erfinv_np = _special("erfinv", _erfinv_fallback)


# ---- ONNX helpers ---------------------------------------------------------------------------------

def _in_f32(ctx, dt, x, build):
    """build(x32) in float32 (onnxruntime's only kernel dtype for Asin/Atan/Erf/...), cast back to dt."""
    if dt == np.float32:
        return build(x)
    return ctx.cast(build(ctx.cast(x, dt, np.float32)), np.float32, dt)


def _native_or(onnx_op, compose):
    """ONNX `onnx_op` in float32; other float dtypes by `compose(ctx, x, c)` (c(v): a constant)."""
    def rule(ctx, node, x):
        dt = out_dtype(node)
        x = ctx.arg(node.inputs[0], x, dt)
        if dt == np.float32 or compose is None:
            return _in_f32(ctx, dt, x, lambda v: ctx.emit(onnx_op, [v]))
        return compose(ctx, x, lambda v: ctx.const(v, dt))
    return rule


def _scaled_log(base_ln):
    def rule(ctx, node, x):
        dt = out_dtype(node)
        return ctx.emit("Div", [ctx.emit("Log", [ctx.arg(node.inputs[0], x, dt)]), ctx.const(base_ln, dt)])
    return rule


def _sinh_c(ctx, x, c):
    return ctx.emit("Mul", [ctx.emit("Sub", [ctx.emit("Exp", [x]), ctx.emit("Exp", [ctx.emit("Neg", [x])])]), c(0.5)])


def _cosh_c(ctx, x, c):
    return ctx.emit("Mul", [ctx.emit("Add", [ctx.emit("Exp", [x]), ctx.emit("Exp", [ctx.emit("Neg", [x])])]), c(0.5)])


def _asinh_c(ctx, x, c):
    # odd: asinh(-x) = -asinh(x), computed on |x| so large negative x does not cancel
    a = ctx.emit("Abs", [x])
    r = ctx.emit("Log", [ctx.emit("Add", [a, ctx.emit("Sqrt", [ctx.emit("Add", [ctx.emit("Mul", [a, a]), c(1.0)])])])])
    return ctx.emit("Mul", [ctx.emit("Sign", [x]), r])


def _acosh_c(ctx, x, c):
    return ctx.emit("Log", [ctx.emit("Add", [x, ctx.emit("Sqrt", [ctx.emit("Sub", [ctx.emit("Mul", [x, x]), c(1.0)])])])])


def _atanh_c(ctx, x, c):
    q = ctx.emit("Div", [ctx.emit("Add", [c(1.0), x]), ctx.emit("Sub", [c(1.0), x])])
    return ctx.emit("Mul", [ctx.emit("Log", [q]), c(0.5)])


# ---- unary floating functions -----------------------------------------------------------------------

def _unary(name, forward, vjp, onnx, saves_output=False, **traits):
    op = defop(name, lambda xp, x: forward(xp, _f(xp, x)), float_elementwise_infer, vjp, elementwise=True,
               saves_output=saves_output, onnx=onnx, **traits)
    return op, (lambda input: apply(op, (input,)))


def _x(ctx):
    return ctx.inputs[0]


LOG2, log2 = _unary("log2", lambda xp, x: xp.log2(x), lambda ctx, g: g / (_x(ctx) * _LN2), _scaled_log(_LN2),
                    ufunc="log2")   # libm's log2 differs from numpy's in the last bit: no C expression
LOG10, log10 = _unary("log10", lambda xp, x: xp.log10(x), lambda ctx, g: g / (_x(ctx) * _LN10),
                      _scaled_log(_LN10), ufunc="log10", expr="log10({0})")
EXP2, exp2 = _unary("exp2", lambda xp, x: xp.exp2(x), lambda ctx, g: g * ctx.out * _LN2,
                    lambda ctx, node, x: ctx.emit("Pow", [ctx.const(2.0, out_dtype(node)),
                                                          ctx.arg(node.inputs[0], x, out_dtype(node))]),
                    saves_output=True, ufunc="exp2", expr="exp2({0})")
SINH, sinh = _unary("sinh", lambda xp, x: xp.sinh(x), lambda ctx, g: g * cosh(_x(ctx)), _native_or("Sinh", _sinh_c),
                    ufunc="sinh", expr="sinh({0})")
COSH, cosh = _unary("cosh", lambda xp, x: xp.cosh(x), lambda ctx, g: g * sinh(_x(ctx)), _native_or("Cosh", _cosh_c),
                    ufunc="cosh", expr="cosh({0})")
ASIN, asin = _unary("asin", lambda xp, x: xp.arcsin(x), lambda ctx, g: g / sqrt(1 - _x(ctx) * _x(ctx)),
                    _native_or("Asin", None), ufunc="arcsin", expr="asin({0})")
ACOS, acos = _unary("acos", lambda xp, x: xp.arccos(x), lambda ctx, g: neg(g) / sqrt(1 - _x(ctx) * _x(ctx)),
                    _native_or("Acos", None), ufunc="arccos", expr="acos({0})")
ATAN, atan = _unary("atan", lambda xp, x: xp.arctan(x), lambda ctx, g: g / (1 + _x(ctx) * _x(ctx)),
                    _native_or("Atan", None), ufunc="arctan", expr="atan({0})")
ASINH, asinh = _unary("asinh", lambda xp, x: xp.arcsinh(x), lambda ctx, g: g / sqrt(_x(ctx) * _x(ctx) + 1),
                      _native_or("Asinh", _asinh_c), ufunc="arcsinh", expr="asinh({0})")
ACOSH, acosh = _unary("acosh", lambda xp, x: xp.arccosh(x), lambda ctx, g: g / sqrt(_x(ctx) * _x(ctx) - 1),
                      _native_or("Acosh", _acosh_c), ufunc="arccosh", expr="acosh({0})")
ATANH, atanh = _unary("atanh", lambda xp, x: xp.arctanh(x), lambda ctx, g: g / (1 - _x(ctx) * _x(ctx)),
                      _native_or("Atanh", _atanh_c), ufunc="arctanh", expr="atanh({0})")


def _erfc_onnx(ctx, node, x):
    dt = out_dtype(node)
    e = _erf_of_onnx(ctx, ctx.arg(node.inputs[0], x, dt), dt)
    return ctx.emit("Sub", [ctx.const(1.0, dt), e])


ERFC, erfc = _unary("erfc", _erfc_np, lambda ctx, g: g * (-2 / _math.sqrt(_math.pi)) * exp(neg(_x(ctx) * _x(ctx))),
                    _erfc_onnx)   # libm's erfc differs from scipy's in the last bit: no C expression
ERFINV, erfinv = _unary("erfinv", _erfinv_np, lambda ctx, g: g * (_math.sqrt(_math.pi) / 2) * exp(ctx.out * ctx.out),
                        not_exportable("ONNX has no inverse error function"), saves_output=True)


def _sinc_forward(xp, x):
    return xp.sinc(x).astype(x.dtype, copy=False)


def _sinc_vjp(ctx, g):
    # d/dx sin(pi x)/(pi x) = (cos(pi x) - sinc(x)) / x, 0 at x = 0
    x = _x(ctx)
    zero = x == 0
    safe = where(zero, 1.0, x)
    return (where(zero, 0.0, g * (cos(safe * _math.pi) - ctx.out) / safe),)


def _sinc_onnx(ctx, node, x):
    dt = out_dtype(node)
    x = ctx.arg(node.inputs[0], x, dt)
    zero = ctx.emit("Equal", [x, ctx.const(0, dt)])
    px = ctx.emit("Mul", [ctx.emit("Where", [zero, ctx.const(1, dt), x]), ctx.const(_math.pi, dt)])
    return ctx.emit("Where", [zero, ctx.const(1, dt), ctx.emit("Div", [ctx.emit("Sin", [px]), px])])


SINC, sinc = _unary("sinc", _sinc_forward, _sinc_vjp, _sinc_onnx, saves_output=True)


def _signbit_onnx(ctx, node, x):
    src = node.inputs[0].aval.dtype
    if src.kind == "b" or src.kind == "u":
        return ctx.emit("Expand", [ctx.const(False), ctx.shape_of(x)])
    zero = ctx.const(0, src)
    neg_ = ctx.emit("Less", [x, zero])
    if src.kind != "f":
        return neg_
    # -0.0 has its sign bit set: 1 / -0.0 is -inf
    negzero = ctx.emit("And", [ctx.emit("Equal", [x, zero]), ctx.emit("Less", [ctx.emit("Div", [ctx.const(1, src), x]),
                                                                               zero])])
    return ctx.emit("Or", [neg_, negzero])


SIGNBIT = defop("signbit", lambda xp, x: xp.signbit(x), bool_elementwise_infer, None, differentiable=False,
                elementwise=True, onnx=_signbit_onnx)


def signbit(input):
    return apply(SIGNBIT, (input,))


def _nan_to_num_forward(xp, x, nan, posinf, neginf):
    if x.dtype.kind != "f":
        return xp.array(x, copy=True)
    info = np.finfo(x.dtype)
    return xp.nan_to_num(x, nan=nan, posinf=info.max if posinf is None else posinf,
                         neginf=info.min if neginf is None else neginf)


def _nan_to_num_onnx(ctx, node, x):
    dt = out_dtype(node)
    if dt.kind != "f":
        return ctx.emit("Identity", [x])
    a = ctx.attrs(node)
    info = np.finfo(dt)
    pos = info.max if a["posinf"] is None else a["posinf"]
    negv = info.min if a["neginf"] is None else a["neginf"]
    out = ctx.emit("Where", [ctx.emit("IsNaN", [x]), ctx.const(a["nan"], dt), x])
    out = ctx.emit("Where", [ctx.emit("IsInf", [x], detect_negative=0), ctx.const(pos, dt), out])
    return ctx.emit("Where", [ctx.emit("IsInf", [x], detect_positive=0), ctx.const(negv, dt), out])


NAN_TO_NUM = defop("nan_to_num", _nan_to_num_forward, same_infer,
                   lambda ctx, g: (where(logical_not(isnan(_x(ctx)) | (_x(ctx).abs() == float("inf"))), g,
                                         zeros_like(g)),),
                   elementwise=True, onnx=_nan_to_num_onnx)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """torch.nan_to_num: NaN -> `nan`, +inf -> `posinf` (default the dtype's largest value), -inf -> `neginf`
    (default its lowest); integer tensors come back unchanged."""
    return apply(NAN_TO_NUM, (input,), {"nan": float(nan), "posinf": None if posinf is None else float(posinf),
                                       "neginf": None if neginf is None else float(neginf)})


# ---- binary functions -------------------------------------------------------------------------------

def _float_pair(xp, a, b):
    a, b = _common(a, b)
    return _f(xp, a), _f(xp, b)


def _binary(name, forward, vjp, onnx, infer=float_elementwise_infer, floats=True, **traits):
    def fwd(xp, a, b):
        a, b = _float_pair(xp, a, b) if floats else _common(a, b)
        return forward(xp, a, b)
    fwd.__name__ = f"_{name}_forward"
    op = defop(name, fwd, infer, vjp, elementwise=True, broadcasting=True, onnx=onnx, **traits)
    return op, (lambda input, other: apply(op, (input, other)))


def _binary_onnx(build):
    def rule(ctx, node, a, b):
        dt = out_dtype(node)
        a, b = args(ctx, node, (a, b), dt)
        return build(ctx, dt, a, b, lambda v: ctx.const(v, dt))
    return rule


def _atan2_vjp(ctx, g):
    a, b = ctx.inputs
    d = a * a + b * b
    return (g * b / d if ctx.needs_input_grad[0] else None, neg(g) * a / d if ctx.needs_input_grad[1] else None)


def _atan2_build(ctx, dt, y, x, c):
    # atan(y / x) corrected by +-pi in the left half-plane; x == 0 gives +-pi/2 (0 at the origin), as atan2
    def f32(y, x):
        z = ctx.const(0, np.float32)
        zero_x = ctx.emit("Equal", [x, z])
        safe_x = ctx.emit("Where", [zero_x, ctx.const(1, np.float32), x])
        base = ctx.emit("Atan", [ctx.emit("Div", [y, safe_x])])
        neg_y = ctx.emit("Less", [y, z])
        pi = ctx.emit("Where", [neg_y, ctx.const(-_math.pi, np.float32), ctx.const(_math.pi, np.float32)])
        left = ctx.emit("Where", [ctx.emit("Less", [x, z]), ctx.emit("Add", [base, pi]), base])
        half = ctx.emit("Mul", [ctx.emit("Sign", [y]), ctx.const(_math.pi / 2, np.float32)])
        return ctx.emit("Where", [zero_x, half, left])
    if dt == np.float32:
        return f32(y, x)
    return ctx.cast(f32(ctx.cast(y, dt, np.float32), ctx.cast(x, dt, np.float32)), np.float32, dt)


ATAN2, atan2 = _binary("atan2", lambda xp, a, b: xp.arctan2(a, b), _atan2_vjp, _binary_onnx(_atan2_build),
                       ufunc="arctan2", expr="atan2({0}, {1})")
HYPOT, hypot = _binary("hypot", lambda xp, a, b: xp.hypot(a, b),
                       lambda ctx, g: (g * ctx.inputs[0] / ctx.out if ctx.needs_input_grad[0] else None,
                                       g * ctx.inputs[1] / ctx.out if ctx.needs_input_grad[1] else None),
                       _binary_onnx(lambda ctx, dt, a, b, c: ctx.emit("Sqrt", [ctx.emit(
                           "Add", [ctx.emit("Mul", [a, a]), ctx.emit("Mul", [b, b])])])),
                       saves_output=True, commutative=True, ufunc="hypot", expr="hypot({0}, {1})")


def _no_bool(name):
    def infer(*xs, **_):
        out = elementwise_infer(*xs)
        if out.dtype.kind == "b":
            raise DTypeError(f"{name}: not defined for bool operands ({_describe(xs)}); cast them first")
        return out
    return infer


def _fmod_forward(xp, a, b):
    if a.dtype.kind == "b":
        raise DTypeError(f"fmod: not defined for bool operands ({_describe((a, b))}); cast them first")
    return xp.fmod(a, b)


FMOD, fmod = _binary("fmod", _fmod_forward,
                     lambda ctx, g: (g, neg(g) * trunc(ctx.inputs[0] / ctx.inputs[1])),
                     _binary_onnx(lambda ctx, dt, a, b, c: ctx.emit("Mod", [a, b], fmod=1)),
                     infer=_no_bool("fmod"), floats=False)


def _logaddexp_vjp(base_ln):
    def vjp(ctx, g):
        a, b = ctx.inputs
        out = ctx.out
        if base_ln == 1.0:
            return g * exp(a - out), g * exp(b - out)
        return g * exp((a - out) * base_ln), g * exp((b - out) * base_ln)
    return vjp


def _logaddexp_build(base_ln):
    def build(ctx, dt, a, b, c):
        # max + log(1 + e^-|a-b|) (in the base): no overflow; equal infinities give that infinity
        m = ctx.emit("Max", [a, b])
        d = ctx.emit("Abs", [ctx.emit("Sub", [a, b])])
        if base_ln != 1.0:
            d = ctx.emit("Mul", [d, c(base_ln)])
        r = ctx.emit("Log", [ctx.emit("Add", [c(1.0), ctx.emit("Exp", [ctx.emit("Neg", [d])])])])
        if base_ln != 1.0:
            r = ctx.emit("Div", [r, c(base_ln)])
        out = ctx.emit("Add", [m, r])
        same_inf = ctx.emit("And", [ctx.emit("Equal", [a, b]), ctx.emit("IsInf", [a])])
        return ctx.emit("Where", [same_inf, a, out])
    return build


LOGADDEXP, logaddexp = _binary("logaddexp", lambda xp, a, b: xp.logaddexp(a, b), _logaddexp_vjp(1.0),
                               _binary_onnx(_logaddexp_build(1.0)), saves_output=True, commutative=True)
LOGADDEXP2, logaddexp2 = _binary("logaddexp2", lambda xp, a, b: xp.logaddexp2(a, b), _logaddexp_vjp(_LN2),
                                 _binary_onnx(_logaddexp_build(_LN2)), saves_output=True, commutative=True)


def _xlogy_forward(xp, x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * xp.log(y)
    return xp.where((x == 0) & ~xp.isnan(y), x.dtype.type(0), out)


def _xlogy_vjp(ctx, g):
    x, y = ctx.inputs
    gx = gy = None
    if ctx.needs_input_grad[0]:
        gx = where(logical_and(x == 0, logical_not(isnan(y))), 0.0, g * log(y))
    if ctx.needs_input_grad[1]:
        gy = g * x / y
    return gx, gy


def _xlogy_build(ctx, dt, x, y, c):
    keep = ctx.emit("Or", [ctx.emit("Not", [ctx.emit("Equal", [x, c(0)])]), ctx.emit("IsNaN", [y])])
    return ctx.emit("Where", [keep, ctx.emit("Mul", [x, ctx.emit("Log", [y])]), c(0)])


XLOGY, xlogy = _binary("xlogy", _xlogy_forward, _xlogy_vjp, _binary_onnx(_xlogy_build))


def _copysign_vjp(ctx, g):
    a = ctx.inputs[0]
    # |a| carries b's sign: d/da is sign(a) * sign(out), 0 at a == 0 (PyTorch's)
    ga = where(a == 0, 0.0, g * ctx.out / where(a == 0, 1.0, a)) if ctx.needs_input_grad[0] else None
    return ga, (zeros_like(g) if ctx.needs_input_grad[1] else None)


def _copysign_build(ctx, dt, a, b, c):
    mag = ctx.emit("Abs", [a])
    negb = ctx.emit("Or", [ctx.emit("Less", [b, c(0)]), ctx.emit("And", [ctx.emit("Equal", [b, c(0)]), ctx.emit(
        "Less", [ctx.emit("Div", [c(1), b]), c(0)])])])
    return ctx.emit("Where", [negb, ctx.emit("Neg", [mag]), mag])


COPYSIGN, copysign = _binary("copysign", lambda xp, a, b: xp.copysign(a, b), _copysign_vjp,
                             _binary_onnx(_copysign_build), saves_output=True, ufunc="copysign",
                             expr="copysign({0}, {1})")


def _heaviside_infer(a, b, **_):
    out = elementwise_infer(a, b)
    if isinstance(a, Aval) and isinstance(b, Aval) and a.dtype != b.dtype:
        raise DTypeError(f"heaviside: input and values must have the same dtype, got {a.dtype} and {b.dtype} "
                         f"(as PyTorch)")
    return out


def _heaviside_build(ctx, dt, x, v, c):
    zero = c(0)
    pos = ctx.emit("Where", [ctx.emit("Greater", [x, zero]), c(1), zero])
    return ctx.emit("Where", [ctx.emit("Equal", [x, zero]), v, pos])


def _heaviside_forward(xp, a, b):
    if hasattr(a, "dtype") and hasattr(b, "dtype") and a.dtype != b.dtype:
        raise DTypeError(f"heaviside: input and values must have the same dtype, got {a.dtype} and {b.dtype} "
                         f"(as PyTorch)")
    a, b = _common(a, b)
    return xp.heaviside(a, b).astype(a.dtype if hasattr(a, "dtype") else b.dtype, copy=False)


HEAVISIDE = defop("heaviside", _heaviside_forward,
                  _heaviside_infer, None, differentiable=False, elementwise=True, broadcasting=True,
                  onnx=_binary_onnx(_heaviside_build))


def heaviside(input, values):
    """torch.heaviside: 0 where input < 0, `values` where input == 0, 1 where input > 0."""
    return apply(HEAVISIDE, (input, values))


arcsin, arccos, arctan, arcsinh, arccosh, arctanh, arctan2 = asin, acos, atan, asinh, acosh, atanh, atan2


# ---- composites ------------------------------------------------------------------------------------

def lerp(input, end, weight):
    """torch.lerp: input + weight * (end - input), weight a number or a tensor (broadcast)."""
    return input + weight * (end - input)


def frac(input):
    """torch.frac: input - trunc(input), the fractional part with input's sign (floating dtypes only)."""
    if input.dtype.kind != "f":
        raise DTypeError(f"frac: needs a floating tensor, got {input.dtype} (as PyTorch)")
    return input - trunc(input)


def deg2rad(input):
    return mul(input, _math.pi / 180.0)


def rad2deg(input):
    return mul(input, 180.0 / _math.pi)


def clamp_min(input, min):
    return clip(input, min=min)


def clamp_max(input, max):
    return clip(input, max=max)


def fix(input):
    return trunc(input)


def sgn(input):
    return sign(input)


def float_power(input, exponent):
    """torch.float_power: the power computed in float64."""
    a = input.astype("float64") if isinstance(input, Tensor) else float(input)
    b = exponent.astype("float64") if isinstance(exponent, Tensor) else exponent
    return a ** b



def isinf(input):
    """torch.isinf: True at +inf and -inf (integers: all False)."""
    if input.dtype.kind != "f":
        return ne(input, input)
    return logical_and(logical_not(isfinite(input)), logical_not(isnan(input)))


def isposinf(input):
    return logical_and(isinf(input), input > 0)


def isneginf(input):
    return logical_and(isinf(input), input < 0)


def isreal(input):
    """Real dtypes only: every element is real."""
    return eq(input, input) | isnan(input) if input.dtype.kind == "f" else eq(input, input)


def addcmul(input, tensor1, tensor2, *, value=1):
    """torch.addcmul: input + value * tensor1 * tensor2."""
    prod = tensor1 * tensor2
    return input + (prod if value == 1 else prod * value)


def addcdiv(input, tensor1, tensor2, *, value=1):
    """torch.addcdiv: input + value * tensor1 / tensor2 (integer tensors are refused, as PyTorch)."""
    if all(getattr(t, "dtype", np.dtype(np.float32)).kind in "iub" for t in (tensor1, tensor2)):
        raise DTypeError("addcdiv: integer division of tensors is not supported (as PyTorch); use floats")
    q = tensor1 / tensor2
    return input + (q if value == 1 else q * value)


def fmax(input, other):
    """torch.fmax: the elementwise maximum ignoring NaN (NaN only where both are)."""
    return where(isnan(input), other, where(isnan(other), input, maximum(input, other)))


def fmin(input, other):
    """torch.fmin: the elementwise minimum ignoring NaN (NaN only where both are)."""
    return where(isnan(input), other, where(isnan(other), input, minimum(input, other)))


def logit(input, eps=None):
    """torch.logit: log(p / (1 - p)), p clamped to [eps, 1 - eps] when eps is given."""
    p = input if eps is None else clip(input, eps, 1 - eps)
    return log(p / (1 - p))


def positive(input):
    if input.dtype.kind == "b":
        raise DTypeError("positive: not defined for bool tensors (as PyTorch)")
    return input


# ---- gamma family (scipy.special on the host, cupyx.scipy.special on a GPU) --------------------------------

def _scipy_special(xp):
    return _backend.scipy_special(xp)   # None on the host without scipy


def _lgamma_forward(xp, x):
    sp = _scipy_special(xp)
    if sp is None:  # exact but slower: one math.lgamma per element
        return np.vectorize(lambda v: _math.lgamma(v) if v == v else v, otypes=[np.float64])(x).astype(x.dtype)
    return sp.gammaln(x).astype(x.dtype, copy=False)


def _polygamma_forward(xp, x, n):
    sp = _scipy_special(xp)
    if sp is None:
        raise DTypeError(f"polygamma(n={n}) / digamma: needs scipy on the host (pip install scipy)")
    out = sp.psi(x) if n == 0 else sp.polygamma(n, x)
    return out.astype(x.dtype, copy=False)


LGAMMA = defop("lgamma", lambda xp, x: _lgamma_forward(xp, _f(xp, x)), float_elementwise_infer,
               lambda ctx, g: (g * digamma(_x(ctx)),), elementwise=True,
               onnx=not_exportable("ONNX has no log-gamma function"))
POLYGAMMA = defop("polygamma", lambda xp, x, n: _polygamma_forward(xp, _f(xp, x), n), float_elementwise_infer,
                  lambda ctx, g: (g * polygamma(ctx.attrs["n"] + 1, _x(ctx)),), elementwise=True,
                  onnx=not_exportable("ONNX has no digamma/polygamma function"))


def lgamma(input):
    """torch.lgamma: log |Gamma(x)|."""
    return apply(LGAMMA, (input,))


def polygamma(n, input):
    """torch.polygamma: the n-th derivative of digamma (n = 0: digamma itself)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise DTypeError(f"polygamma: n must be a non-negative int, got {n!r}")
    return apply(POLYGAMMA, (input,), {"n": int(n)})


def digamma(input):
    """torch.digamma (psi): the derivative of lgamma."""
    return polygamma(0, input)


psi = digamma
