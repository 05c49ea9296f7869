"""Symbolic dims made by @dg.function, with arithmetic.

A `SymbolicDim` is a `Dim` (so every shape rule treats it as unknown) that also supports
`+ - * // % /` with ints and other dims, giving a `DimExpr`: `x.reshape(x.shape[0] * 4)` or
`x.sum() / x.shape[0]` (what `mean` does) trace with the size unknown. An expression in an
attribute (a reshape target) is evaluated from the input shapes at each call; one used as an
operand becomes a small computation on the graph (the size read from the input it came from).
Code that needs the size as a Python int (`range(x.shape[0])`) raises TypeError, and
@dg.function falls back to one trace per shape.
"""
import operator

from ..ops.infer import Dim

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv, "%": operator.mod,
        "/": operator.truediv}


def _ok(x):
    return isinstance(x, (int, float, Dim)) and not isinstance(x, bool)


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

    def __index__(self):
        raise TypeError(f"the symbolic dim {self.name} has no integer value while tracing")

    __int__ = __index__

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
