"""The signature of a compiled call: how its arguments become a cache key, graph inputs and back.

A call's arguments are flattened into tensor leaves and a hashable key: the structure of nested
tuples/lists/dicts, the shape, dtype, device and requires_grad of every tensor, and the value of
every other argument. `Signature` binds keyword and static arguments, checks them against a
declared `input_signature` and says which dims that declaration keeps symbolic; `describe` and
`explain` put into words why a call did not match an earlier trace.
"""
import inspect

from ..backend import to_host
from ..dtypes import resolve
from ..errors import ShapeError
from ..graph.avals import Aval
from ..ops.dims import SymbolicDim
from ..tensor import Tensor
from .tracer import TraceError


class TensorSpec:
    """Declared shape/dtype of a tensor argument; `None` (or a name, shared across arguments) marks a
    dim that may vary between calls (one trace serves every size)."""

    def __init__(self, shape, dtype="float32", device=None):
        self.shape, self.dtype, self.device = tuple(shape), resolve(dtype), device

    def __repr__(self):
        dims = ",".join("None" if d is None else str(d) for d in self.shape)
        return f"TensorSpec([{dims}], {self.dtype})"


# ---- flattening arguments into leaves and a key ------------------------------------------------------

def flatten(x, leaves, key):
    """Append x's tensors to `leaves` and its hashable description to `key`."""
    cls = x.__class__
    if isinstance(x, Tensor):
        if x._symbolic:
            raise TraceError("a traced tensor was passed to a compiled function outside its trace")
        d = x._data
        leaves.append(x)
        key.append((d.shape, d.dtype, x._device, x._requires_grad))
    elif cls is tuple or cls is list:
        key.append((cls, len(x)))
        for i in x:
            flatten(i, leaves, key)
    elif cls is dict:
        ks = sorted(x, key=repr)
        key.append((dict, tuple(ks)))
        for k in ks:
            flatten(x[k], leaves, key)
    else:
        try:
            hash(x)
            key.append((cls, x))
        except TypeError:
            key.append((cls, "unhashable", id(x)))


def rebuild(x, it):
    """x with its tensors replaced, in flattening order, by the items of `it`."""
    if isinstance(x, Tensor):
        return next(it)
    if isinstance(x, (tuple, list)):
        return type(x)(rebuild(i, it) for i in x)
    if isinstance(x, dict):
        return {k: rebuild(x[k], it) for k in sorted(x, key=repr)}
    return x


def struct_key(key):
    """The key with tensor dims replaced by their count: calls that differ only in sizes share it."""
    if isinstance(key, str):
        return None
    out = []
    for k in key[2:]:
        if isinstance(k, tuple) and len(k) == 4 and isinstance(k[0], tuple):
            out.append((len(k[0]),) + k[1:])
        else:
            out.append(k)
    return (key[0], key[1], tuple(out))


class Static:
    """A static argument's value, carried through flattening untouched (its value is in the key)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return 0

    def __eq__(self, other):
        return isinstance(other, Static)


def unstatic(x):
    return x.value if isinstance(x, Static) else x


def static_key(value):
    """The cache-key form of a static argument: a tensor counts by its contents."""
    if isinstance(value, Tensor):
        arr = to_host(value._data)
        return ("tensor", arr.shape, str(arr.dtype), arr.tobytes())
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


# ---- symbolic dims -----------------------------------------------------------------------------------

def varying(old_shapes, new_shapes):
    """Per leaf {axis: name} for dims whose size differs; equal (old, new) size pairs share a name."""
    if len(old_shapes) != len(new_shapes):
        return []
    names, mask = {}, []
    for a, b in zip(old_shapes, new_shapes):
        m = {}
        for ax, (x, y) in enumerate(zip(a, b)):
            if x != y:
                m[ax] = names.setdefault((x, y), f"d{len(names)}")
        mask.append(m)
    return mask


def avals_for(leaves, sym_mask):
    """Avals for the argument tensors; sym_mask[i] maps the axes of leaf i that are symbolic to a name
    (axes with the same name share one SymbolicDim)."""
    if not sym_mask:
        return [Aval(t.shape, t.dtype) for t in leaves]
    avals, dims = [], {}
    for i, t in enumerate(leaves):
        shape = []
        for ax, n in enumerate(t.shape):
            s = sym_mask[i].get(ax)
            if s is None:
                shape.append(n)
            else:
                d = dims.get(s)
                if d is None:
                    d = dims[s] = SymbolicDim(s if isinstance(s, str) else f"d{len(dims)}")
                shape.append(d)
        avals.append(Aval(shape, t.dtype))
    return avals


# ---- explaining a retrace ----------------------------------------------------------------------------

def describe(x, path, out):
    """Append (path, description) for every leaf of x: what retrace explanations compare."""
    if isinstance(x, Tensor):
        out.append((path, ("tensor", tuple(x.shape), str(x.dtype), str(x.device), x._requires_grad)))
    elif isinstance(x, (tuple, list)):
        out.append((path, ("seq", type(x).__name__, len(x))))
        for i, v in enumerate(x):
            describe(v, f"{path}[{i}]", out)
    elif isinstance(x, dict):
        out.append((path, ("dict", tuple(sorted(x, key=repr)))))
        for k in sorted(x, key=repr):
            describe(x[k], f"{path}[{k!r}]", out)
    elif isinstance(x, Static):
        out.append((f"{path} (static)", ("value", type(x.value).__name__, _plain(x.value))))
    else:
        out.append((path, ("value", type(x).__name__, _plain(x))))


def _plain(x):
    if isinstance(x, (int, float, bool, str, type(None))):
        return x
    r = repr(x)
    return r if len(r) < 80 else r[:77] + "..."


def explain(old, new):
    """Why `new` (a list of (path, description)) did not match `old`."""
    if old is None:
        return "first call"
    od, nd = dict(old), dict(new)
    reasons = []
    for path, d in new:
        o = od.get(path)
        if o is None:
            reasons.append(f"{path} is new")
        elif o != d:
            if o[0] == "tensor" and d[0] == "tensor":
                for name, a, b in zip(("shape", "dtype", "device", "requires_grad"), o[1:], d[1:]):
                    if a != b:
                        reasons.append(f"{path}: {name} changed from {a} to {b}")
            elif o[0] == "value" and d[0] == "value":
                reasons.append(f"{path}: Python value changed from {o[2]!r} to {d[2]!r} (non-tensor arguments are "
                               f"baked into the trace as constants; pass a tensor to avoid retracing)")
            else:
                reasons.append(f"{path}: changed from {o} to {d}")
    for path, _ in old:
        if path not in nd:
            reasons.append(f"{path} is gone")
    return "; ".join(reasons) if reasons else "argument structure changed"


# ---- the function's own signature --------------------------------------------------------------------

class Signature:
    """A compiled function's parameters: binding calls to them and back, naming its graph inputs.

    `params` is the inspect.Signature (None when the callable has none to inspect). Every call is
    bound (`binds`) when the function has static arguments, a declared input_signature or parameters
    that only a keyword reaches (keyword-only, **kwargs); any other call is bound when it passes
    keywords. Binding turns the call into a flat tuple of dynamic arguments, static ones wrapped in
    `Static`, plus the static values for the key; `unbind` turns it back into the positional and
    keyword arguments the function is called with.
    """

    def __init__(self, params, static_argnames, input_signature, name):
        self.params, self.static_argnames, self.input_signature, self.name = \
            params, static_argnames, input_signature, name
        keyword_kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
        by_keyword = params is not None and any(p.kind in keyword_kinds for p in params.parameters.values())
        self.binds = bool(static_argnames) or input_signature is not None or by_keyword
        for s in static_argnames:
            if params is not None and s not in params.parameters:
                raise TypeError(f"static_argnames: {name} has no parameter named {s!r}")

    def names(self):
        return list(self.params.parameters) if self.params is not None else []

    def bind(self, args, kwargs):
        """(dynamic arguments, static (name, key) pairs) for one call."""
        if self.params is None:
            if kwargs:
                raise TypeError(f"{self.name}: keyword arguments need an inspectable signature")
            return args, ()
        bound = self.params.bind(*args, **kwargs)
        bound.apply_defaults()
        dyn, statics = [], []
        for name, value in bound.arguments.items():
            kind = self.params.parameters[name].kind
            if name in self.static_argnames:
                statics.append((name, static_key(value)))
                dyn.append(Static(value))
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                dyn.extend(value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                dyn.append(dict(value))
            else:
                dyn.append(value)
        if self.input_signature is not None:
            self._check(bound)
        return tuple(dyn), tuple(statics)

    def _check(self, bound):
        names = list(bound.arguments)
        for i, spec in enumerate(self.input_signature):
            if spec is None or i >= len(names):
                continue
            name = names[i]
            x = bound.arguments[name]
            if not isinstance(spec, TensorSpec):
                spec = TensorSpec(*spec) if isinstance(spec, tuple) else spec
                self.input_signature[i] = spec
            if not isinstance(x, Tensor):
                raise TypeError(f"{self.name}: argument {i} ({name}) should be a tensor matching {spec}, "
                                f"got {type(x).__name__}")
            if len(x.shape) != len(spec.shape):
                raise ShapeError(f"{self.name}: argument {i} ({name}) has shape {tuple(x.shape)} "
                                 f"({len(x.shape)} dims) but input_signature says {spec} ({len(spec.shape)} dims)")
            for ax, (n, s) in enumerate(zip(x.shape, spec.shape)):
                if isinstance(s, int) and n != s:
                    raise ShapeError(f"{self.name}: argument {i} ({name}) has shape {tuple(x.shape)}: dim "
                                     f"{ax} is {n} but input_signature says {s} ({spec})")
            if spec.dtype is not None and x.dtype != spec.dtype:
                raise TypeError(f"{self.name}: argument {i} ({name}) has dtype {x.dtype} but "
                                f"input_signature says {spec.dtype}")

    def unbind(self, args):
        """(positional, keyword) arguments to call the function with, from bound arguments."""
        if self.params is None or not self.binds:
            return args, {}
        params = list(self.params.parameters.values())
        a, kw, i = [], {}, 0
        for p in params:
            if i >= len(args):
                break
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                n = len(args) - i - (1 if params[-1].kind is inspect.Parameter.VAR_KEYWORD else 0)
                a.extend(unstatic(x) for x in args[i:i + n])
                i += n
            elif p.kind is inspect.Parameter.VAR_KEYWORD:
                kw.update(args[i])
                i += 1
            elif p.kind is inspect.Parameter.KEYWORD_ONLY:
                kw[p.name] = unstatic(args[i])
                i += 1
            else:
                a.append(unstatic(args[i]))
                i += 1
        return a, kw

    def sym_mask(self, args, leaves):
        """Per leaf: {axis: name} for the dims input_signature declares variable (None without one)."""
        if self.input_signature is None:
            return None
        mask = [dict() for _ in leaves]
        pos = {id(t): i for i, t in enumerate(leaves)}
        uniq = 0
        for i, spec in enumerate(self.input_signature):
            if spec is None or i >= len(args) or not isinstance(args[i], Tensor):
                continue
            li = pos[id(args[i])]
            for ax, s in enumerate(spec.shape):
                if s is None:
                    mask[li][ax] = f"d{uniq}"
                    uniq += 1
                elif isinstance(s, str):
                    mask[li][ax] = s
        return mask

    def describe(self, args):
        """[(path, description)] of a call's leaves, paths named after the parameters."""
        descs, params = [], self.names()
        for i, a in enumerate(args):
            describe(a, params[i] if i < len(params) else f"args[{i}]", descs)
        return descs

    def leaf_names(self, args):
        """A distinct graph-input name for every tensor leaf: parameter name, then index or key."""
        names, params = [], self.names()

        def walk(x, path):
            if isinstance(x, Tensor):
                names.append(path)
            elif isinstance(x, (tuple, list)):
                for i, v in enumerate(x):
                    walk(v, f"{path}_{i}")
            elif isinstance(x, dict):
                for k in sorted(x, key=repr):
                    walk(x[k], f"{path}_{k}")
        for i, a in enumerate(args):
            walk(a, params[i] if i < len(params) and params[i].isidentifier() else f"arg{i}")
        seen, out = {}, []
        for n in names:
            n = "".join(c if c.isalnum() or c == "_" else "_" for c in str(n))
            if n in seen:
                seen[n] += 1
                n = f"{n}_{seen[n]}"
            else:
                seen[n] = 0
            out.append(n)
        return out
