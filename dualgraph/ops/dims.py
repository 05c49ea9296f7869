"""Symbolic dims made by @dg.function, with arithmetic.

A `SymbolicDim` is a `Dim` (so every shape rule treats it as unknown) that also supports
`+ - * // % /` with ints and other dims, giving a `DimExpr`: `x.reshape(x.shape[0] * 4)` or
`x.sum() / x.shape[0]` (what `mean` does) trace with the size unknown. An expression in an
attribute (a reshape target) is evaluated from the input shapes at each call; one used as an
operand becomes a small computation on the graph (the size read from the input it came from).
Sizes also make tensors (`dg.arange(0, t)`, `dg.zeros((b, t))`) and slice them (`x[:, :t]`).
User code that needs the size as a Python number (`range(t)`, `int(t)`, `if t > 5:`, `t == 7`,
`math.sqrt(t)`) raises `SymbolicSizeError` (a TypeError) naming its line: @dg.function then traces
once per shape, and ONNX export with that axis dynamic refuses instead of freezing the traced size.
"""
import dis
import math
import operator
import os
import sys

from .._state import STATE
from ..errors import _PKG_DIR, DualgraphError, user_line
from ..graph.avals import Dim

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv, "%": operator.mod,
        "/": operator.truediv}


def _ok(x):
    return isinstance(x, (int, float, Dim)) and not isinstance(x, bool)


class SymbolicSizeError(DualgraphError, TypeError):
    """User code needed a symbolic size as a Python number (a loop bound, `if`, int(), numpy)."""

    def __init__(self, msg, dim=None, where=""):
        super().__init__(msg)
        self.dim, self.where = dim, where


def _caller_is_user(depth=2):
    """Is the frame `depth` levels up (the code that used the dim) outside dualgraph, while tracing?"""
    if not STATE.mode.symbolic:
        return False
    frame = sys._getframe(depth)
    return frame is not None and not os.path.abspath(frame.f_code.co_filename).startswith(_PKG_DIR)


_ASSUME_ASSERTS = [0]


class assuming_size_asserts:
    """While active (ONNX export's symbolic trace), `assert t <= block_size` on a symbolic size is
    taken as given instead of refused: an assertion states what the model's inputs must satisfy, it
    does not choose what the model computes. (The exporter's trace at the example's sizes checks it.)"""

    def __enter__(self):
        _ASSUME_ASSERTS[0] += 1
        return self

    def __exit__(self, *exc):
        _ASSUME_ASSERTS[0] -= 1


def _feeds_assert(depth):
    """Does the comparison running in the frame `depth` levels up decide an `assert` statement?"""
    if not _ASSUME_ASSERTS[0]:
        return False
    frame = sys._getframe(depth + 1)
    ins = [i for i in dis.get_instructions(frame.f_code) if i.opname not in ("CACHE", "EXTENDED_ARG")]
    for k, i in enumerate(ins):
        if i.offset == frame.f_lasti:
            nxt = ins[k + 1:k + 3]
            return (len(nxt) == 2 and nxt[0].opname.startswith("POP_JUMP") and "IF_TRUE" in nxt[0].opname
                    and nxt[1].opname == "LOAD_ASSERTION_ERROR")
    return False


def _user_needs(d, what, depth=2):
    frame = sys._getframe(depth)
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
    return SymbolicSizeError(
        f"{what} needs the size {d} as a Python number{f' at {where}' if where else ''}, but this trace keeps "
        f"that dim symbolic (its value is only known when the compiled graph or exported model runs). Use it "
        f"only as a size (shapes, reshape/view, slicing, dg.arange/zeros/full, arithmetic with numbers), or "
        f"declare that dim with a fixed size", d, where)


def size_needed(d, what):
    """The SymbolicSizeError for dualgraph code that must hand a size to Python (len() returns an int),
    naming the user's line that asked for it."""
    where = user_line()
    return SymbolicSizeError(
        f"{what} needs the size {d} as a Python number{f' at {where}' if where else ''}, but this trace keeps "
        f"that dim symbolic (its value is only known when the compiled graph or exported model runs). Use it "
        f"only as a size (shapes, reshape/view, slicing, dg.arange/zeros/full, arithmetic with numbers), or "
        f"declare that dim with a fixed size", d, where)


def leaves(d):
    """The input dims a size expression reads."""
    if isinstance(d, DimExpr):
        return [x for a in d.args for x in leaves(a)]
    return [d] if isinstance(d, Dim) else []


class SymbolicDim(Dim):
    __slots__ = ()

    def _bin(self, op, other, rev=False):
        if not _ok(other):
            return NotImplemented
        return DimExpr(op, (other, self) if rev else (self, other))

    def __add__(self, o):
        return self._bin("+", o)

    def __radd__(self, o):
        return self._bin("+", o, True)

    def __sub__(self, o):
        return self._bin("-", o)

    def __rsub__(self, o):
        return self._bin("-", o, True)

    def __mul__(self, o):
        return self._bin("*", o)

    def __rmul__(self, o):
        return self._bin("*", o, True)

    def __floordiv__(self, o):
        return self._bin("//", o)

    def __rfloordiv__(self, o):
        return self._bin("//", o, True)

    def __mod__(self, o):
        return self._bin("%", o)

    def __truediv__(self, o):
        return self._bin("/", o)

    def __rtruediv__(self, o):
        return self._bin("/", o, True)

    def __neg__(self):
        return DimExpr("-", (0, self))

    def __pos__(self):
        return self

    # Python control flow and numbers on a size: from user code, the error names the line; from
    # dualgraph's own code (an op that needs a concrete size), the TypeError @dg.function expects
    def __index__(self):
        if _caller_is_user():
            raise _user_needs(self, "int() / an index / a Python or numpy size")
        raise TypeError(f"the symbolic dim {self.name} has no integer value while tracing")

    __int__ = __index__

    def __float__(self):
        if _caller_is_user():
            raise _user_needs(self, "float() / math")
        raise TypeError(f"the symbolic dim {self.name} has no float value while tracing")

    def __bool__(self):
        if _caller_is_user():
            raise _user_needs(self, "`if` / `while` / `and` / `or` on a size")
        return True

    def __eq__(self, other):
        if other is self:
            return True
        if not isinstance(other, Dim) and _ok(other) and _caller_is_user():
            if _feeds_assert(1):
                return True
            raise _user_needs(self, f"comparing with {other!r} (==)")
        return False

    def __ne__(self, other):
        if other is self:
            return False
        if not isinstance(other, Dim) and _ok(other) and _caller_is_user():
            if _feeds_assert(1):
                return True
            raise _user_needs(self, f"comparing with {other!r} (!=)")
        return True

    __hash__ = Dim.__hash__

    def _cmp(self, other, op):
        if _ok(other) and _caller_is_user(3):
            if _feeds_assert(2):
                return True
            raise _user_needs(self, f"comparing with {other!r} ({op})", depth=3)
        return NotImplemented

    def __lt__(self, o):
        return self._cmp(o, "<")

    def __le__(self, o):
        return self._cmp(o, "<=")

    def __gt__(self, o):
        return self._cmp(o, ">")

    def __ge__(self, o):
        return self._cmp(o, ">=")

    def evaluate(self, sizes):
        return sizes[self]

    def code(self, name_of):
        return name_of(self)


class DimExpr(SymbolicDim):
    __slots__ = ("op", "args")

    def __init__(self, op, args):
        self.op, self.args = op, args
        super().__init__("(" + f" {op} ".join(str(a) for a in args) + ")")

    def evaluate(self, sizes):
        a, b = (x.evaluate(sizes) if isinstance(x, SymbolicDim) else (sizes[x] if isinstance(x, Dim) else x)
                for x in self.args)
        return _OPS[self.op](a, b)

    def code(self, name_of):
        a, b = (x.code(name_of) if isinstance(x, SymbolicDim) else (name_of(x) if isinstance(x, Dim) else repr(x))
                for x in self.args)
        return f"({a} {self.op} {b})"


def evaluate(d, sizes):
    if isinstance(d, SymbolicDim):
        return d.evaluate(sizes)
    if isinstance(d, Dim):
        return sizes[d]
    return d


class _SymbolicSize(DimExpr):
    """`t.size` of a traced tensor with symbolic dims: its element count (a size expression) that is
    also callable like PyTorch's `t.size()` / `t.size(dim)`."""

    __slots__ = ("_shape",)

    def __call__(self, dim=None):
        return self._shape if dim is None else self._shape[dim]


def symbolic_size(shape):
    total = 1
    for d in shape:
        total = total * d if not (isinstance(total, int) and total == 1) else d
    if isinstance(total, DimExpr):
        out = _SymbolicSize(total.op, total.args)
    else:   # one symbolic dim and units: total is that dim
        out = _SymbolicSize("*", (total, 1))
    out._shape = tuple(shape)
    return out


# ---- products with a rational coefficient, and sizes inside attributes -----------------------------
# What ONNX export derives when it makes the dims of a graph traced at concrete sizes symbolic: a
# reshape to (batch, -1) of a (B, 3, 4) input has B*12 elements per row group, (B, T, 4) -> (B*T/2, 8)
# halves a product. Built in one canonical form (factors in a fixed order, then * num, then // den) so
# that equal products have equal `key`s, and evaluated and exported like any other size expression.

class _Exact(DimExpr):
    """`a // k` where k divides a at every size (made by `divide`): a coefficient of the product, where
    a floor division written in user code (`(h - 3) // 2 + 1`) stays a factor of its own."""

    __slots__ = ()


def monomial(d):
    """(factors, num, den) with d == prod(factors) * num / den; a size expression that is not a product
    of that form is one factor."""
    if isinstance(d, DimExpr) and d.op == "*":
        fa, na, da = monomial(d.args[0])
        fb, nb, db = monomial(d.args[1])
        return fa + fb, na * nb, da * db
    if isinstance(d, _Exact):
        f, n, den = monomial(d.args[0])
        return f, n, den * d.args[1]
    if isinstance(d, Dim):
        return [d], 1, 1
    return [], int(d), 1


def key(d):
    """A hashable identity of a size expression: equal for equal structure over the same input dims."""
    if isinstance(d, DimExpr):
        return (d.op,) + tuple(key(a) for a in d.args)
    if isinstance(d, Dim):
        return ("dim", id(d))
    return ("int", d)


def _monomial_of(factors, num, den):
    g = math.gcd(num, den) or 1
    num, den = num // g, den // g
    if not factors:
        return num // den if den else 0
    factors = sorted(factors, key=lambda f: (str(f), repr(key(f))))
    out = factors[0]
    for f in factors[1:]:
        out = DimExpr("*", (out, f))
    if num != 1:
        out = DimExpr("*", (out, num))
    if den != 1:
        out = _Exact("//", (out, den))
    return out


def product(dims):
    """The product of ints and size expressions, simplified; an int when no symbol is left."""
    factors, num, den = [], 1, 1
    for d in dims:
        f, n, m = monomial(d)
        factors += f
        num, den = num * n, den * m
    return _monomial_of(factors, num, den)


def divide(d, k):
    """d / k for a size expression d that k divides at every size (a group of a reshape)."""
    f, n, m = monomial(d)
    return _monomial_of(f, n, m * int(k))


def resolve(obj, sizes):
    """`obj` (an attribute: a size expression, or tuples, lists, dicts and slices of them) with every
    symbolic dim replaced by its value in `sizes` ({input Dim: int})."""
    if isinstance(obj, Dim):
        return int(evaluate(obj, sizes))
    if isinstance(obj, dict):
        return {k: resolve(v, sizes) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(resolve(o, sizes) for o in obj)
    if isinstance(obj, list):
        return [resolve(o, sizes) for o in obj]
    if isinstance(obj, slice):
        return slice(resolve(obj.start, sizes), resolve(obj.stop, sizes), resolve(obj.step, sizes))
    return obj
