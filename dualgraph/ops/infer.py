"""The shared shape/dtype rules op records use on abstract values (dualgraph.graph.avals)."""
import numpy as np

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph.avals import Aval, Dim


def aval_of(x):
    """The Aval of a tensor/array, or the value itself for a Python scalar."""
    if isinstance(x, Aval) or isinstance(x, (int, float, bool)) or x is None:
        return x
    return Aval(x.shape, x.dtype)


def broadcast_shapes(op_name, *shapes):
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(-ndim, 0):
        dim = 1
        for s in shapes:
            if -i > len(s):
                continue
            d = s[i]
            if d == 1:
                continue
            if dim == 1 or dim is d or dim == d:
                dim = d
            elif isinstance(d, Dim) or isinstance(dim, Dim):
                dim = dim if isinstance(dim, Dim) else d
            else:
                raise ShapeError(f"{op_name}: shapes {' and '.join(str(tuple(s)) for s in shapes)} "
                                 f"cannot be broadcast together")
        out.append(dim)
    return tuple(out)


def norm_axes(axis, ndim, op="reduce"):
    """A sorted tuple of non-negative axes, or None for 'all axes'."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        n = max(ndim, 1)
        if not -n <= a < n:
            raise ShapeError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
        out.append(a % n)
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: repeated axis in {axes}")
    if ndim == 0:
        return ()  # axis 0 / -1 of a 0-d tensor: nothing to reduce (as numpy and PyTorch)
    return tuple(sorted(out))


def shapes_match(a, b):
    """Equal shapes, where a symbolic dim matches any size (its value is only known at run time)."""
    a, b = tuple(a), tuple(b)
    return len(a) == len(b) and all(x == y or isinstance(x, Dim) or isinstance(y, Dim) for x, y in zip(a, b))


def result_dtype(*xs):
    """PyTorch's promotion of Avals and Python scalars (`dtypes.result_type`, the rule of every mode)."""
    return _dt.result_type(*xs)


def float_dtype(dt):
    """Floating ops on ints/bools compute in the default float dtype (as PyTorch does)."""
    return dt if dt.kind == "f" else _dt.DEFAULT_FLOAT


def elementwise_infer(*xs, **_):
    shapes = [x.shape for x in xs if isinstance(x, Aval)]
    return Aval(broadcast_shapes("elementwise", *shapes), result_dtype(*xs))


def float_elementwise_infer(*xs, **_):
    a = elementwise_infer(*xs)
    return Aval(a.shape, float_dtype(a.dtype))


def bool_elementwise_infer(*xs, **_):
    return Aval(elementwise_infer(*xs).shape, np.bool_)


def same_infer(x, **_):
    return Aval(x.shape, x.dtype)


def by_eval(op_forward):
    """Infer by running the forward on small zero arrays; for ops whose rule is their forward.

    Symbolic dims are replaced by probe sizes, in two runs (7, 10, ... then 20, 23, ...): an output dim
    equal in both runs is concrete, one that follows a symbolic input dim is that dim, and any other
    (x[1:] of a symbolic axis) is a new symbolic dim rather than a number frozen from the probe.
    """
    def infer(*xs, **attrs):
        dims = []
        for x in xs:
            for d in (x.shape if isinstance(x, Aval) else ()):
                if isinstance(d, Dim) and all(d is not e for e in dims):
                    dims.append(d)

        def run(base):
            size = {id(d): base + 3 * k for k, d in enumerate(dims)}
            args = [np.zeros(tuple(size[id(d)] if isinstance(d, Dim) else d for d in x.shape), x.dtype)
                    if isinstance(x, Aval) else x for x in xs]
            out = op_forward(np, *args, **attrs)
            return out, {v: d for d in dims for v in [size[id(d)]]}

        out, at_small = run(7)
        many = isinstance(out, tuple)
        small = out if many else (out,)
        large, at_large = run(20) if dims else (out, {})
        large = large if many else (large,)
        avals = []
        for o, o2 in zip(small, large):
            shape = []
            for a, b in zip(np.shape(o), np.shape(o2)):
                if a == b:
                    shape.append(a)
                elif a in at_small and b in at_large and at_small[a] is at_large[b]:
                    shape.append(at_small[a])
                else:
                    shape.append(Dim("?"))
            avals.append(Aval(tuple(shape), np.asarray(o).dtype))
        return tuple(avals) if many else avals[0]
    return infer
