"""`@dg.function`: trace once per input signature, optimize, run the compiled graph.

    f = dg.function(fn)            # or @dg.function, or dg.function(module)
    f(x)                           # first call: trace + optimize + compile; later calls: run
    f.trace_count, f.graph(x), f.frozen(x), f.retrace_reason

The cache key of a call is the structure of its arguments (nested tuples/lists/dicts), the shape,
dtype, device and requires_grad of every tensor, the value of every other argument (baked in as a
constant), and grad mode. Tensors the function reads from elsewhere (closure, globals, a module's
parameters, optimizer state) are graph inputs read again at every call, found by their path from
the function (closure cell, global name, `self`/module attribute), so rebinding one is noticed.
"""
import dis
import inspect
import types
import warnings
import weakref

import numpy as np

from .._state import STATE
from ..backend import CPU
from ..errors import DualgraphError, ShapeError
from ..graph.ir import Graph
from ..ops.infer import Aval, Dim
from ..tensor import _TENSOR_TYPES, Tensor, _make
from . import passes as _passes
from ..ops.dims import SymbolicDim
from .executor import Executable
from .tracer import FrozenValue, TraceError, Tracer, tracing

RETRACE_WARN_AFTER = 8


class RetraceWarning(UserWarning):
    pass


class TensorSpec:
    """Declared shape/dtype of a tensor argument; `None` (or a name, shared across arguments) marks a
    dim that may vary between calls (one trace serves every size)."""

    def __init__(self, shape, dtype="float32", device=None):
        from ..dtypes import resolve
        self.shape, self.dtype, self.device = tuple(shape), resolve(dtype), device

    def __repr__(self):
        dims = ",".join("None" if d is None else str(d) for d in self.shape)
        return f"TensorSpec([{dims}], {self.dtype})"


# ---- argument flattening -------------------------------------------------------------------------------

def _flatten(x, leaves, key):
    cls = x.__class__
    if isinstance(x, Tensor):
        d = x._data
        if d is None:
            raise TraceError("a traced tensor was passed to a compiled function outside its trace")
        leaves.append(x)
        key.append((d.shape, d.dtype, x._device, x._requires_grad))
    elif cls is tuple or cls is list:
        key.append((cls, len(x)))
        for i in x:
            _flatten(i, leaves, key)
    elif cls is dict:
        ks = sorted(x, key=repr)
        key.append((dict, tuple(ks)))
        for k in ks:
            _flatten(x[k], leaves, key)
    else:
        try:
            hash(x)
            key.append((cls, x))
        except TypeError:
            key.append((cls, "unhashable", id(x)))


def _describe(x, path, out):
    """(path, description) for every leaf, used to explain retraces and list frozen arguments."""
    if isinstance(x, Tensor):
        out.append((path, ("tensor", tuple(x.shape), str(x.dtype), str(x.device), x._requires_grad)))
    elif isinstance(x, (tuple, list)):
        out.append((path, ("seq", type(x).__name__, len(x))))
        for i, v in enumerate(x):
            _describe(v, f"{path}[{i}]", out)
    elif isinstance(x, dict):
        out.append((path, ("dict", tuple(sorted(x, key=repr)))))
        for k in sorted(x, key=repr):
            _describe(x[k], f"{path}[{k!r}]", out)
    elif isinstance(x, _Static):
        out.append((f"{path} (static)", ("value", type(x.value).__name__, _plain(x.value))))
    else:
        out.append((path, ("value", type(x).__name__, _plain(x))))


def _plain(x):
    return x if isinstance(x, (int, float, bool, str, type(None))) else _safe_repr(x)


def _safe_repr(x):
    r = repr(x)
    return r if len(r) < 80 else r[:77] + "..."


def _rebuild(x, it):
    if isinstance(x, Tensor):
        return next(it)
    if isinstance(x, (tuple, list)):
        return type(x)(_rebuild(i, it) for i in x)
    if isinstance(x, dict):
        return {k: _rebuild(x[k], it) for k in sorted(x, key=repr)}
    return x


def _explain(old, new):
    """Why `new` (a list of (path, desc)) did not match `old`."""
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


# ---- finding captured tensors -------------------------------------------------------------------------

def _roots(fn, module):
    roots = []
    if module is not None:
        roots.append(("M", module))
    f = fn
    if isinstance(f, types.MethodType):
        roots.append(("S", f.__self__))
        f = f.__func__
    code = getattr(f, "__code__", None)
    if code is None:
        return roots, f
    for i, name in enumerate(code.co_freevars):
        try:
            roots.append((f"C[{i}].cell_contents", f.__closure__[i].cell_contents))
        except (ValueError, IndexError, TypeError):
            pass
    g = getattr(f, "__globals__", {})
    for name in _global_names(code):
        if name in g and not isinstance(g[name], types.ModuleType):
            roots.append((f"G[{name!r}]", g[name]))
    return roots, f


def _without_known_numbers(frozen):
    """Drop 'number' entries already explained by an argument, a global/closure value or a shape."""
    known = set()
    for fv in frozen:
        if fv.kind == "number":
            continue
        values = fv.value if isinstance(fv.value, tuple) else (fv.value,)
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                known.add(v)
    return [fv for fv in frozen if not (fv.kind == "number" and fv.value in known)]


def _closure_modules(fn):
    """Every nn.Module (with its submodules) that fn reads from its closure, globals or `self`."""
    try:
        from ..nn.module import Module
    except ImportError:
        return []
    roots, _ = _roots(fn, None)
    mods, seen = [], set()
    for _, obj in roots:
        if isinstance(obj, Module):
            for m in obj.modules():
                if id(m) not in seen:
                    seen.add(id(m))
                    mods.append(m)
    return mods


def _global_names(code):
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _find_paths(targets, fn, module, limit=20000):
    """id(tensor) -> expression reaching it from the function's roots (breadth first)."""
    want = {id(t) for t in targets}
    found = {}
    roots, _ = _roots(fn, module)
    queue = [(expr, obj, 0) for expr, obj in roots]
    seen = set()
    i = 0
    while i < len(queue) and len(found) < len(want) and i < limit:
        expr, obj, depth = queue[i]
        i += 1
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensor):
            if id(obj) in want and id(obj) not in found:
                found[id(obj)] = expr
            continue
        if depth >= 6 or isinstance(obj, (str, bytes, int, float, bool, type, types.ModuleType,
                                          types.FunctionType, types.BuiltinFunctionType, np.ndarray)):
            continue
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                if isinstance(k, (str, int)):
                    queue.append((f"{expr}[{k!r}]", v, depth + 1))
        elif isinstance(obj, (list, tuple)):
            for k, v in enumerate(obj):
                queue.append((f"{expr}[{k}]", v, depth + 1))
        else:
            d = getattr(obj, "__dict__", None)
            if isinstance(d, dict):
                for k, v in list(d.items()):
                    if isinstance(k, str):
                        queue.append((f"{expr}.__dict__[{k!r}]", v, depth + 1))
    return found


def _frozen_globals(fn):
    """Python numbers/strings/arrays the function's code reads from globals or its closure."""
    out = []
    f = fn.__func__ if isinstance(fn, types.MethodType) else fn
    code = getattr(f, "__code__", None)
    if code is None:
        return out
    g = getattr(f, "__globals__", {})
    cells = dict(zip(code.co_freevars, f.__closure__ or ()))
    seen = set()
    line = code.co_firstlineno
    for ins in dis.get_instructions(code):
        if ins.starts_line:
            line = ins.starts_line if isinstance(ins.starts_line, int) else (ins.positions.lineno or line)
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            name = ins.argval
            if name in g:
                kind, value = "global", g[name]
            else:
                continue
        elif ins.opname in ("LOAD_DEREF", "LOAD_CLASSDEREF"):
            name = ins.argval
            cell = cells.get(name)
            try:
                kind, value = "closure variable", cell.cell_contents
            except (ValueError, AttributeError):
                continue
        else:
            continue
        if name in seen or not isinstance(value, (int, float, bool, str, np.ndarray, np.generic)):
            continue
        seen.add(name)
        out.append((kind, name, value, f"{code.co_filename}:{line}", "G" if kind == "global" else "C", ))
    return out


# ---- a trace -----------------------------------------------------------------------------------------

class _Entry:
    pass


def _dims_for(leaves, sym_mask):
    """Avals for the argument tensors; sym_mask[i] lists axes of leaf i that are symbolic (or Dim/name)."""
    avals, dims = [], {}
    for i, t in enumerate(leaves):
        shape = []
        for ax, n in enumerate(t.shape):
            s = sym_mask[i].get(ax) if sym_mask else None
            if s is None:
                shape.append(n)
            else:
                d = dims.get(s)
                if d is None:
                    d = dims[s] = SymbolicDim(s if isinstance(s, str) else f"d{len(dims)}")
                shape.append(d)
        avals.append(Aval(shape, t.dtype))
    return avals


class CompiledFunction:
    """What `dg.function` returns. Call it like the function."""

    def __init__(self, fn, input_signature=None, static_argnames=(), strict=False, passes=None, disable=(),
                 name=None):
        module = None
        if not isinstance(fn, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)) \
                and hasattr(fn, "parameters") and callable(fn):
            module, target = fn, fn.__call__
        else:
            target = fn
        self.fn, self.module = target, module
        self.__name__ = name or getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn
        self.input_signature = None if input_signature is None else list(input_signature)
        if isinstance(static_argnames, str):
            static_argnames = (static_argnames,)
        self.static_argnames = tuple(static_argnames)
        self.strict = strict
        self.passes = _passes.resolve(passes, disable)
        try:
            self._sig = inspect.signature(getattr(fn, "forward", target) if module is not None else target)
        except (TypeError, ValueError):
            self._sig = None
        self._cache = {}
        self._mods = list(module.modules()) if module is not None and hasattr(module, "modules") else None
        if self._mods is None:
            # modules the function reads from its closure or globals: their train()/eval() flags are
            # baked into a trace (Dropout, BatchNorm) exactly like a module passed to dg.function
            self._mods = _closure_modules(target) or None
        self._entries = []
        self.trace_count = 0
        self.retrace_reason = None
        self._last_descs = None
        self._warned = False
        self._no_symbolic = set()
        self._sym_struct = {}
        for s in self.static_argnames:
            if self._sig is not None and s not in self._sig.parameters:
                raise TypeError(f"static_argnames: {self.__name__} has no parameter named {s!r}")

    # ---- the call path -----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if STATE.tracer is not None:  # called inside another trace: inline it
            return self.fn(*args, **kwargs)
        if kwargs or self.static_argnames or self.input_signature is not None:
            args, statics = self._bind(args, kwargs)
        else:
            statics = ()
        leaves, key = [], [statics, self._modes()]
        for a in args:
            if a.__class__ in _TENSOR_TYPES:
                d = a._data
                if d is None:
                    raise TraceError("a traced tensor was passed to a compiled function outside its trace")
                leaves.append(a)
                key.append((d.shape, d.dtype, a._device, a._requires_grad))
            else:
                _flatten(a, leaves, key)
        key = tuple(key)
        try:
            entry = self._cache.get(key)
        except TypeError:
            key = repr(key)
            entry = self._cache.get(key)
        if entry is None:
            entry = self._lookup_symbolic(key, leaves, args, statics)
            if entry is None:
                entry = self._retrace(key, args, statics, leaves)
        caps = entry.read_captured()
        if caps is None:
            entry = self._retrace(key, args, statics, leaves, reason=entry.guard_reason())
            caps = entry.read_captured()
        return entry.run(leaves, caps)

    def _modes(self):
        """Modes a trace bakes in: grad mode, MXNet's train_mode, and a module's train()/eval() flags."""
        st = STATE
        if self._mods is None:
            return (st.grad_enabled, st.training)
        return (st.grad_enabled, st.training, tuple(m.__dict__.get("training", True) for m in self._mods))

    def _bind(self, args, kwargs):
        if self._sig is None:
            if kwargs:
                raise TypeError(f"{self.__name__}: keyword arguments need an inspectable signature")
            return args, ()
        bound = self._sig.bind(*args, **kwargs)
        bound.apply_defaults()
        dyn, statics = [], []
        for name, value in bound.arguments.items():
            kind = self._sig.parameters[name].kind
            if name in self.static_argnames:
                statics.append((name, _static_key(value)))
                dyn.append(_Static(value))
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                dyn.extend(value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                dyn.append(dict(value))
            else:
                dyn.append(value)
        if self.input_signature is not None:
            self._check_signature(bound)
        return tuple(dyn), tuple(statics)

    def _check_signature(self, bound):
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
                raise TypeError(f"{self.__name__}: argument {i} ({name}) should be a tensor matching {spec}, "
                                f"got {type(x).__name__}")
            if len(x.shape) != len(spec.shape):
                raise ShapeError(f"{self.__name__}: argument {i} ({name}) has shape {tuple(x.shape)} "
                                 f"({len(x.shape)} dims) but input_signature says {spec} ({len(spec.shape)} dims)")
            for ax, (n, s) in enumerate(zip(x.shape, spec.shape)):
                if isinstance(s, int) and n != s:
                    raise ShapeError(f"{self.__name__}: argument {i} ({name}) has shape {tuple(x.shape)}: dim "
                                     f"{ax} is {n} but input_signature says {s} ({spec})")
            if spec.dtype is not None and x.dtype != spec.dtype:
                raise TypeError(f"{self.__name__}: argument {i} ({name}) has dtype {x.dtype} but "
                                f"input_signature says {spec.dtype}")

    def _sym_mask(self, args, leaves):
        """Per leaf: {axis: name} for the dims declared variable by input_signature."""
        mask = [dict() for _ in leaves]
        if self.input_signature is None:
            return None
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

    def _struct(self, key):
        """The key with tensor dims replaced by their count (calls that differ only in sizes share it)."""
        if isinstance(key, str):
            return None
        out = []
        for k in key[2:]:
            if isinstance(k, tuple) and len(k) == 4 and isinstance(k[0], tuple):
                out.append((len(k[0]),) + k[1:])
            else:
                out.append(k)
        return (key[0], key[1], tuple(out))

    def _lookup_symbolic(self, key, leaves, args, statics):
        st = self._struct(key)
        entry = self._sym_struct.get(st)
        if entry is None or not entry.accepts(leaves):
            return None
        self._cache[key] = entry
        return entry

    def _retrace(self, key, args, statics, leaves, reason=None):
        descs = []
        params = list(self._sig.parameters) if self._sig is not None else []
        for i, a in enumerate(args):
            _describe(a, params[i] if i < len(params) else f"args[{i}]", descs)
        if reason is None:
            reason = _explain(self._last_descs, descs)
            modes = key[1] if not isinstance(key, str) else None
            last = getattr(self, "_last_modes", None)
            if last is not None and modes is not None and modes != last:
                what = [n for n, a, b in zip(("grad mode", "autograd training mode", "module train()/eval() mode"),
                                              last, modes) if a != b]
                reason = f"{' and '.join(what)} changed"
            self._last_modes = modes
        self.retrace_reason = reason
        self._pending_descs = descs
        sym_mask = self._sym_mask(args, leaves)
        st = self._struct(key)
        # shapes alone changed since an earlier trace of this structure: trace once with symbolic dims
        if sym_mask is None and st is not None and st not in self._no_symbolic:
            prev = [e for e in self._entries if e.struct == st and not e.symbolic]
            if prev:
                mask = _varying(prev[-1].leaf_shapes, [tuple(t.shape) for t in leaves])
                if any(mask):
                    try:
                        entry = self._trace(args, leaves, mask, key, st, symbolic=True)
                        self.retrace_reason = reason + " (retraced once with those dims symbolic; later sizes " \
                                                       "reuse this trace)"
                        self._sym_struct[st] = entry
                        self._finish(key, descs, entry)
                        return entry
                    except Exception as e:  # the function needs concrete sizes: keep tracing per shape
                        self._no_symbolic.add(st)
                        self.retrace_reason = reason + f" (a symbolic-dim trace failed: {type(e).__name__}: {e}; " \
                                                       f"tracing per shape)"
        entry = self._trace(args, leaves, sym_mask, key, st, symbolic=sym_mask is not None)
        if sym_mask is not None:
            self._sym_struct[st] = entry
        self._finish(key, descs, entry)
        return entry

    def _finish(self, key, descs, entry):
        self._cache[key] = entry
        self._entries.append(entry)
        self._last_descs = descs
        self.trace_count += 1
        if self.trace_count >= RETRACE_WARN_AFTER and not self._warned:
            self._warned = True
            warnings.warn(f"@dg.function {self.__name__} has been traced {self.trace_count} times; the last "
                          f"retrace was because {self.retrace_reason}. Retracing is slow: pass tensors instead of "
                          f"changing Python values, or give input_signature= with None for varying dims",
                          RetraceWarning, stacklevel=3)

    # ---- tracing ---------------------------------------------------------------------------
    def _trace(self, args, leaves, sym_mask, key, struct, symbolic):
        graph = Graph(self.__name__ if self.__name__.isidentifier() else "graph")
        tr = Tracer(graph, strict=self.strict, shapes_declared=self.input_signature is not None)
        avals = _dims_for(leaves, sym_mask) if sym_mask else [Aval(t.shape, t.dtype) for t in leaves]
        syms = []
        names = _leaf_names(args, self._sig)
        for i, (t, av) in enumerate(zip(leaves, avals)):
            v = graph.add_input(av, names[i] if i < len(names) else None)
            for ax, d in enumerate(av.shape):
                if isinstance(d, Dim):
                    tr.dim_origin.setdefault(d, (v, ax))
            s = tr.sym(v, t._device, requires_grad=t._requires_grad)
            tr.args[id(s)] = [s, v, i]
            syms.append(s)
        sym_args = _rebuild(args, iter(syms))
        call_args, call_kwargs = self._unbind(sym_args)
        with tracing(tr):
            try:
                out = self.fn(*call_args, **call_kwargs)
            except DualgraphError as exc:
                where = _user_frame_of(exc)
                if where and where not in str(exc):
                    exc.args = (f"{exc.args[0] if exc.args else exc} (while tracing {self.__name__}, at {where})",) \
                        + tuple(exc.args[1:])
                raise
            except TypeError as exc:
                if "Dim" not in str(exc) or not symbolic:
                    raise
                # Python arithmetic or numpy met a symbolic dim: an op (or the user's code) needed a
                # concrete size of an axis this trace treats as unknown
                where = _user_frame_of(exc)
                raise TraceError(
                    f"{self.__name__}: an operation needs the concrete size of a dim that this trace keeps "
                    f"symbolic{f' (at {where})' if where else ''}: {exc}. Declare that dim with a fixed size "
                    f"in input_signature= (or call with one size only) so it is traced as a number") from exc
            out_leaves, out_tree = _flatten_out(out)
            out_vals, out_consts = [], {}
            for i, o in enumerate(out_leaves):
                if isinstance(o, Tensor):
                    out_vals.append((i, tr.value_of(o), o._requires_grad))
                else:
                    out_consts[i] = o
        del out, out_leaves, call_args, call_kwargs, sym_args
        return _build_entry(self, tr, graph, leaves, out_vals, out_consts, out_tree, key, struct, symbolic,
                            self._pending_descs)

    def _unbind(self, sym_args):
        if self._sig is None or not (self.static_argnames or self.input_signature is not None or
                                     any(isinstance(a, _Static) for a in sym_args)):
            return sym_args, {}
        params = list(self._sig.parameters.values())
        a, kw, i = [], {}, 0
        for p in params:
            if i >= len(sym_args):
                break
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                n = len(sym_args) - i - (1 if params[-1].kind is inspect.Parameter.VAR_KEYWORD else 0)
                a.extend(_unstatic(x) for x in sym_args[i:i + n])
                i += n
            elif p.kind is inspect.Parameter.VAR_KEYWORD:
                kw.update(sym_args[i])
                i += 1
            elif p.kind is inspect.Parameter.KEYWORD_ONLY:
                kw[p.name] = _unstatic(sym_args[i])
                i += 1
            else:
                a.append(_unstatic(sym_args[i]))
                i += 1
        return a, kw

    # ---- introspection ----------------------------------------------------------------------
    def _entry_for(self, args, kwargs):
        if kwargs or self.static_argnames or self.input_signature is not None:
            args, statics = self._bind(args, kwargs)
        else:
            statics = ()
        leaves, key = [], [statics, self._modes()]
        for a in args:
            _flatten(a, leaves, key)
        key = tuple(key)
        entry = self._cache.get(key) or self._lookup_symbolic(key, leaves, args, statics)
        if entry is None:
            entry = self._retrace(key, args, statics, leaves)
        return entry

    def graph(self, *args, **kwargs):
        """The optimized graph for these arguments' signature (traces if needed)."""
        return self._entry_for(args, kwargs).opt

    def traced_graph(self, *args, **kwargs):
        """The graph as traced, before any pass."""
        return self._entry_for(args, kwargs).graph

    def frozen(self, *args, **kwargs):
        """Every Python value the trace for these arguments baked in, with the user's file:line."""
        return list(self._entry_for(args, kwargs).frozen)

    def explain_passes(self, *args, **kwargs):
        """[(pass name, graph text before, graph text after)] for this signature."""
        log = []
        _passes.optimize(self._entry_for(args, kwargs).graph, self.passes, log)
        return log

    def why_retraced(self):
        return self.retrace_reason

    def __repr__(self):
        return f"<dg.function {self.__name__}: {self.trace_count} trace(s)>"

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        bound = self.__dict__.setdefault("_bound", weakref.WeakKeyDictionary()) if _weakable(obj) else {}
        f = bound.get(obj) if _weakable(obj) else None
        if f is None:
            f = CompiledFunction(types.MethodType(self.fn, obj), None if self.input_signature is None else
                                 self.input_signature, self.static_argnames, self.strict, self.passes, ())
            if _weakable(obj):
                bound[obj] = f
        return f


def _user_frame_of(exc):
    """file:line of the innermost frame outside dualgraph in an exception's traceback."""
    import os
    from ..errors import _PKG_DIR
    tb, where = exc.__traceback__, None
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if not os.path.abspath(fname).startswith(_PKG_DIR):
            where = f"{fname}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _weakable(obj):
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


class _Static:
    """A static argument's value, carried through flattening untouched."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return 0

    def __eq__(self, other):
        return isinstance(other, _Static)


def _unstatic(x):
    return x.value if isinstance(x, _Static) else x


def _static_key(value):
    if isinstance(value, Tensor):
        from ..backend import to_host
        arr = to_host(value._data)
        return ("tensor", arr.shape, str(arr.dtype), arr.tobytes())
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def _leaf_names(args, sig):
    names = []
    params = list(sig.parameters) if sig is not None else []

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
    seen = {}
    out = []
    for n in names:
        n = "".join(c if c.isalnum() or c == "_" else "_" for c in str(n))
        if n in seen:
            seen[n] += 1
            n = f"{n}_{seen[n]}"
        else:
            seen[n] = 0
        out.append(n)
    return out


def _flatten_out(out):
    from .control import tree_flatten
    return tree_flatten(out)


def _varying(old_shapes, new_shapes):
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


# ---- building a runnable entry from a finished trace --------------------------------------------------------

def _build_entry(cf, tr, graph, leaves, out_vals, out_consts, out_tree, key, struct, symbolic, descs):
    from ..tensor import Tensor as _T
    e = _Entry()
    e.cf = cf
    e.struct, e.symbolic = struct, symbolic
    e.leaf_shapes = [tuple(t.shape) for t in leaves]
    e.arg_avals = [v.aval for v in graph.inputs[:len(leaves)]]
    e.n_args = len(leaves)
    e.did_backward = tr.did_backward
    e.has_custom = tr.has_custom
    # which captured tensors are outside state (still alive without the trace's references)?
    caps = [(weakref.ref(t), v, line, t._data) for t, v, line in tr.captured]
    muts = [(weakref.ref(t), v) for t, v in tr.mutations.values()]
    gwrites = [(weakref.ref(t), v) for t, v in tr.grad_writes.values()]
    greads = [(weakref.ref(t), was_none) for t, was_none in tr.grad_reads.values()]
    gparent = {k: weakref.ref(p) for k, p in tr.grad_parent.items()}
    arg_index = {id(s): i for s, _, i in tr.args.values()}
    sym_args = {id(s): s for s, _, _ in tr.args.values()}
    tr.keep.clear()
    tr.captured = tr.mutations = tr.grad_writes = tr.grad_reads = tr.grad_parent = None
    tr.tensor_of.clear()
    alive = []
    for ref, v, line, _ in caps:
        t = ref()
        if t is None:
            continue
        alive.append((t, v, line))
    # a tensor made inside the trace (dg.tensor([...]) in the body) died with it: a graph constant
    dead_caps = [(v, data) for ref, v, _, data in caps if ref() is None]
    e.frozen = list(tr.frozen)
    # the graph's outputs: user outputs, then written-back state, then assigned grads
    outputs = [v for _, v, _ in out_vals]
    writebacks = []   # (kind, target, output index)
    for ref, v in muts:
        t = ref()
        if t is None:
            continue
        if id(t) in arg_index:
            writebacks.append(("arg", arg_index[id(t)], len(outputs)))
        else:
            writebacks.append(("cap", t, len(outputs)))
        outputs.append(v)
    gw = []
    for ref, v in gwrites:
        t = ref()
        if t is None:
            continue
        target = ("arg", arg_index[id(t)]) if id(t) in sym_args else ("cap", t)
        if v is None:
            gw.append((target, None))
        else:
            gval = tr.value_of(v) if isinstance(v, _T) else v
            gw.append((target, len(outputs)))
            outputs.append(gval)
    graph.outputs = outputs
    # captured tensors: paths to read them at each call
    cap_tensors = [t for t, _, _ in alive]
    paths = _find_paths(cap_tensors, cf.fn, cf.module) if cap_tensors else {}
    for t in cap_tensors:
        if id(t) not in paths and id(t) in gparent:
            owner = gparent[id(t)]()
            if owner is not None:
                paths.setdefault(id(owner), None)
    keep_inputs = list(graph.inputs[:len(leaves)])
    e.captured = []
    used_names = {v.name for v in graph.inputs if v.name}
    for t, v, line in alive:
        keep_inputs.append(v)
        owner_ref = gparent.get(id(t))
        expr = paths.get(id(t))
        if v.name is None:
            owner = owner_ref() if owner_ref is not None else None
            owner_name = _pretty_name(paths.get(id(owner))) if owner is not None and paths.get(id(owner)) else None
            # (a closure variable has a path but no name worth printing: its grad stays unnamed)
            base = _pretty_name(expr) if expr else (owner_name + "_grad" if owner_name else None)
            if base:
                n, k = base, 1
                while n in used_names:
                    k += 1
                    n = f"{base}_{k}"
                used_names.add(n)
                v.name = n
        e.captured.append(_Captured(t, v, expr, owner_ref, line))
    for v, data in dead_caps:
        v.const = data
    graph.inputs = keep_inputs
    # written-back state may be computed straight into its own buffer (see executor: donate)
    cap_val = {id(t): v for t, v, _ in alive}
    pos = {id(v): i for i, v in enumerate(graph.inputs)}
    donate = {}
    for kind, target, k in writebacks:
        v_in = graph.inputs[target] if kind == "arg" else cap_val.get(id(target))
        if v_in is not None and id(v_in) in pos and v_in.aval == outputs[k].aval:
            donate[k] = pos[id(v_in)]
    graph.meta["donate"] = donate
    e.grad_guards = []
    for ref, was_none in greads:
        t = ref()
        if t is not None and id(t) not in sym_args:
            e.grad_guards.append((weakref.ref(t), was_none))
    # a captured target is addressed by its capture index: the call writes to the tensor it read
    # (a rebound attribute gets the update), and no strong reference is kept
    # (e.writebacks / e.grad_writes keep the traced targets: dg.onnx names the outputs from them)
    cap_index = {id(c.ref()): i for i, c in enumerate(e.captured)}
    e.writebacks, e.grad_writes = writebacks, gw
    e.writeback_plan = [("capi", cap_index[id(t)], k) if kind == "cap" and id(t) in cap_index else (kind, t, k)
                        for kind, t, k in writebacks]
    e.grad_plan = [(("capi", cap_index[id(t[1])]) if t[0] == "cap" and id(t[1]) in cap_index else t, k)
                   for t, k in gw]
    e.out_vals = out_vals
    e.out_consts = out_consts
    e.out_tree = out_tree
    e.n_user_out = len(out_vals)
    for kind, name, value, where, _ in _frozen_globals(cf.fn):
        e.frozen.append(FrozenValue(kind, name, value, where))
    e.global_guards = [(k, name, value) for k, name, value, _, _ in _frozen_globals(cf.fn)
                       if isinstance(value, (int, float, bool, str))]
    _f = cf.fn.__func__ if isinstance(cf.fn, types.MethodType) else cf.fn
    e.freevars = list(getattr(getattr(_f, "__code__", None), "co_freevars", ()))
    for path, d in reversed(descs):
        if d[0] == "value":
            e.frozen.insert(0, FrozenValue("argument", path, d[2], ""))
    e.frozen = _without_known_numbers(e.frozen)
    graph.frozen = list(e.frozen)
    e.graph = graph
    # values the function changed in place: a differentiating caller's backward may not read them
    graph.meta["_overwritten"] = list(tr.overwritten.values())   # (Value, node index the in-place op began at)
    e.opt = _passes.optimize(graph, cf.passes)
    e.opt.frozen = list(e.frozen)
    xp = leaves[0]._device.xp if leaves else CPU.xp
    e.xp = xp
    e.exec = Executable(e.opt, xp)
    e.out_alias = _output_views(e.opt, len(out_vals))
    e.device = leaves[0]._device if leaves else (alive[0][0]._device if alive else CPU)
    e.diff_outs = [rg for _, _, rg in out_vals]
    e.grad_cache = {}
    _install(e)
    return e


class _Captured:
    __slots__ = ("ref", "value", "expr", "owner", "line", "aval", "getter")

    def __init__(self, t, v, expr, owner, line):
        self.ref = weakref.ref(t)
        self.value, self.expr, self.owner, self.line = v, expr, owner, line
        self.aval = v.aval


def _install(e):
    """Generate `read_captured()` (the per-call guard + read of outside tensors) and `run`."""
    cf = e.cf
    roots, f = _roots(cf.fn, cf.module)
    env = {"M": cf.module, "S": getattr(cf.fn, "__self__", None), "C": getattr(f, "__closure__", None),
           "G": getattr(f, "__globals__", {})}
    lines = ["def read():", "    try:"]
    for i, c in enumerate(e.captured):
        env[f"R{i}"] = c.ref
        if c.expr is not None:
            lines.append(f"        t{i} = {c.expr}")
            lines.append(f"        if t{i} is not R{i}() and not _same(t{i}, {i}): return None")
        elif c.owner is not None:
            env[f"O{i}"] = c.owner
            lines.append(f"        t{i} = O{i}()._grad")
            lines.append(f"        if t{i} is None or (t{i} is not R{i}() and not _same(t{i}, {i})): return None")
        else:
            lines.append(f"        t{i} = R{i}()")
            lines.append(f"        if t{i} is None: return None")
    for j, (ref, was_none) in enumerate(e.grad_guards):
        env[f"Q{j}"] = ref
        lines.append(f"        if (Q{j}()._grad is None) is not {was_none}: return None")
    for j, (kind, name, value) in enumerate(e.global_guards):
        if isinstance(value, (int, float, bool, str)):
            env[f"V{j}"] = value
            if kind == "global":
                lines.append(f"        if G[{name!r}] != V{j}: return None")
            elif name in e.freevars:
                lines.append(f"        if C[{e.freevars.index(name)}].cell_contents != V{j}: return None")
    lines.append(f"        return ({''.join(f't{i}, ' for i in range(len(e.captured)))})")
    lines.append("    except Exception:")
    lines.append("        return None")

    def _same(t, i):
        c = e.captured[i]
        ok = isinstance(t, Tensor) and t._data is not None and tuple(t.shape) == tuple(c.aval.shape) \
            and t.dtype == c.aval.dtype
        if ok:
            c.ref = weakref.ref(t)
        return ok
    env["_same"] = _same
    exec(compile("\n".join(lines) + "\n", f"<dg-read-{cf.__name__}>", "exec"), env)
    e.read_captured = env["read"]
    e.guard_reason = lambda: _guard_reason(e)
    e.run = lambda leaves, caps: _run(e, leaves, caps)
    e.diff_any = any(e.diff_outs)
    e.simple = (not e.writebacks and not e.grad_writes and not e.out_consts and e.out_tree is None
                and e.n_user_out == 1)
    e.accepts = lambda leaves: _accepts(e, leaves)


def _accepts(e, leaves):
    if len(leaves) != len(e.arg_avals):
        return False
    sizes = {}
    for t, av in zip(leaves, e.arg_avals):
        shape = t.shape
        if len(shape) != len(av.shape) or t.dtype != av.dtype:
            return False
        for n, d in zip(shape, av.shape):
            if isinstance(d, Dim):
                if sizes.setdefault(d, n) != n:
                    return False
            elif n != d:
                return False
    return True


def _guard_reason(e):
    cf = e.cf
    for c in e.captured:
        what = c.expr or "a captured tensor"
        t = c.ref()
        if t is None:
            return f"{_pretty(what)} was replaced or freed"
    for ref, was_none in e.grad_guards:
        t = ref()
        if t is not None and (t._grad is None) != was_none:
            return f"the .grad of a {t.dtype}{list(t.shape)} tensor was {'None' if was_none else 'set'} when " \
                   f"traced and is {'None' if t._grad is None else 'set'} now"
    f = cf.fn.__func__ if isinstance(cf.fn, types.MethodType) else cf.fn
    g = getattr(f, "__globals__", {})
    cells = dict(zip(e.freevars, getattr(f, "__closure__", None) or ()))
    for kind, name, value in e.global_guards:
        if kind == "global" and g.get(name) != value:
            return f"global {name} changed from {value!r} to {g.get(name)!r} (it was baked into the trace)"
        if kind != "global" and name in cells:
            try:
                now = cells[name].cell_contents
            except ValueError:
                continue
            if now != value:
                return f"closure variable {name} changed from {value!r} to {now!r} (it was baked into the trace)"
    return "a captured tensor was replaced by one of another shape or dtype"


def _pretty_name(expr):
    """A graph input name from a capture path: G['W'] -> W, M.__dict__['_parameters']['w'] -> w."""
    import re
    if not expr:
        return None
    parts = re.findall(r"\['([A-Za-z_][A-Za-z0-9_]*)'\]|\[(\d+)\]", expr)
    names = [a or b for a, b in parts if (a or b) not in ("_parameters", "_buffers", "_modules", "__dict__")]
    if expr.startswith("C[") and not names[1:]:
        return None
    return ".".join(names) if names else None


def _pretty(expr):
    return expr.replace(".__dict__[", "[").replace("C[", "closure[").replace(".cell_contents", "")


def _run(e, leaves, caps):
    arrays = [t._data for t in leaves]
    if caps:
        arrays += [t._data for t in caps]
    if e.diff_any and STATE.grad_enabled and not e.did_backward:
        for t in leaves:
            if t._requires_grad:
                return _finish_call(e, leaves, caps, _run_with_grad(e, leaves, caps, arrays))
        for t in caps:
            if t._requires_grad:
                return _finish_call(e, leaves, caps, _run_with_grad(e, leaves, caps, arrays))
    outs = e.exec.run(*arrays)
    if e.out_alias:  # an output that is a view of an input shares its version counter, as eagerly
        inputs = list(leaves) + list(caps or ())
        outs = [_make(a, e.device) for a in outs]
        for j, i in e.out_alias:
            outs[j]._version = inputs[i]._version
        return outs[0] if e.simple else _finish_call(e, leaves, caps, outs)
    if e.simple:
        return _make(outs[0], e.device)
    dev = e.device
    return _finish_call(e, leaves, caps, [_make(a, dev) for a in outs])


def _finish_call(e, leaves, caps, outs):
    # write back in-place updates of arguments and captured state
    for kind, target, k in e.writeback_plan:
        t = leaves[target] if kind == "arg" else caps[target] if kind == "capi" else target
        new = outs[k]._data
        if new is not t._data:
            e.xp.copyto(t._data, new, casting="unsafe")
        t._version[0] += 1
    for (kind, target), k in e.grad_plan:
        t = leaves[target] if kind == "arg" else caps[target] if kind == "capi" else target
        t._grad = None if k is None else outs[k]  # a fresh tensor with no history
    user = outs[:e.n_user_out]
    if not e.out_consts and e.out_tree is None:
        return user[0]
    leaves_out, it = [], iter(user)
    n = len(e.out_consts) + len(user)
    for i in range(n):
        leaves_out.append(e.out_consts[i] if i in e.out_consts else next(it))
    from .control import tree_unflatten
    return tree_unflatten(e.out_tree, leaves_out)


def _run_with_grad(e, leaves, caps, arrays):
    from ..autograd import graph as _ag
    inputs = list(leaves) + list(caps)
    wrt = tuple(i for i, t in enumerate(inputs) if t._requires_grad and t.dtype.kind == "f")
    comp = e.grad_cache.get(wrt)
    if comp is None:
        comp = e.grad_cache[wrt] = _compile_grad(e, wrt)
    res = comp.fwd(*arrays)
    n_out = comp.n_out
    outs = [_make(a, e.device) for a in res[:n_out]]
    for j, i in comp.out_alias:  # an output that is a view of an input shares its version counter, as eagerly
        outs[j]._version = inputs[i]._version
    # every input is an edge of the node (a gradient for those in wrt), so its version is checked when
    # the compiled backward reads it, as an eager node checks what its vjp reads
    wanted = set(wrt)
    op = _CompiledOp(e.cf.__name__, comp, res[n_out:], inputs)
    node = _ag.Node(op, tuple(inputs), {}, tuple(i in wanted for i in range(len(inputs))),
                    tuple(t._version[0] for t in inputs))
    node._out = tuple(outs[i]._data for i in comp.diff)
    node._out_versions = tuple((o._version, o._version[0]) for o in outs)
    for k, i in enumerate(comp.diff):
        o = outs[i]
        o._grad_fn, o._out_index, o._requires_grad = node, k, True
    return outs


class _GradPlan:
    """What one compiled function needs to be differentiated by its caller, for one set of inputs (wrt)."""

    __slots__ = ("fwd", "bwd", "n_out", "diff", "grads_for", "joint", "reads_in", "reads_out", "out_alias",
                 "stale_reads")


def _compile_grad(e, wrt):
    from .autodiff import joint_graph, partition
    if e.has_custom:
        raise TraceError(f"{e.cf.__name__}: a custom dg.autograd.Function inside a compiled function whose "
                         f"caller differentiates it is not supported yet (its backward is not on the graph); "
                         f"call loss.backward() inside the compiled function (a whole training step traces "
                         f"custom backwards), or call this function eagerly")
    devices = {i: e.device for i in range(len(e.graph.inputs))}
    joint, diff = joint_graph(e.graph, list(wrt), devices, drop_unused=True)
    n_out = len(e.graph.outputs)
    fwd, bwd = partition(joint, len(e.graph.inputs), n_out)
    fwd = _passes.optimize(fwd, e.cf.passes)
    bwd = _passes.optimize(bwd, e.cf.passes)
    e.fwd_graph, e.bwd_graph = fwd, bwd
    plan = _GradPlan()
    plan.fwd, plan.bwd, plan.n_out, plan.diff = Executable(fwd, e.xp), Executable(bwd, e.xp), n_out, diff
    plan.grads_for = [wrt[k] for k in joint.meta["grads_for"]]  # input positions that get a gradient
    plan.joint = joint
    plan.stale_reads = joint.meta["stale_reads"]
    plan.reads_in, plan.reads_out, plan.out_alias = _residual_sources(fwd, bwd, n_out)
    return plan


def _view_root(v):
    while v is not None and v.producer is not None and getattr(v.producer.op, "view", False):
        v = v.producer.inputs[0]
    return v


def _residual_sources(fwd, bwd, n_out):
    """Which inputs and outputs of the forward the backward reads, through residuals that are those
    very arrays or views of them (so an in-place change after the call would change the gradient):
    (input positions, output positions, [(output, input) for outputs that are views of an input])."""
    used = {id(v) for node in bwd.nodes for v in node.inputs if v is not None}
    used.update(id(v) for v in bwd.outputs)
    in_pos = {id(v): i for i, v in enumerate(fwd.inputs)}
    out_roots = {}
    for j, v in enumerate(fwd.outputs[:n_out]):
        out_roots.setdefault(id(_view_root(v)), []).append(j)
    reads_in, reads_out = set(), set()
    for res_fwd, res_bwd in zip(fwd.outputs[n_out:], bwd.inputs):
        if id(res_bwd) not in used:
            continue
        r = _view_root(res_fwd)
        if id(r) in in_pos:
            reads_in.add(in_pos[id(r)])
        reads_out.update(out_roots.get(id(r), ()))
    return frozenset(reads_in), frozenset(reads_out), _output_views(fwd, n_out)


def _output_views(graph, n_out):
    """[(output, input)] for the first n_out outputs that are an input or a view of one (the executor
    returns that very memory)."""
    in_pos = {id(v): i for i, v in enumerate(graph.inputs)}
    return [(j, in_pos[id(r)]) for j, v in enumerate(graph.outputs[:n_out]) if id(r := _view_root(v)) in in_pos]


class _CompiledOp:
    """The one tape node of a compiled call; its vjp runs the compiled backward graph (or, for a
    double backward, the unfused backward graph op by op on Tensors, so it is recorded in turn)."""

    pure = False
    saves_output = False
    view = False

    def __init__(self, name, plan, resid, primals):
        self.name = f"compiled_{name}"
        self.grad_name = "CompiledFunctionBackward"
        self.n_out = len(plan.diff)
        self.onnx = None
        self.plan, self.resid, self.primals = plan, resid, primals

    def vjp_reads(self, operands, attrs, needs):
        if STATE.grad_enabled:  # a double backward recomputes from every input
            return frozenset(range(len(self.primals))), frozenset()
        return self.plan.reads_in, self.plan.reads_out

    def vjp(self, node, grads):
        if self.plan.stale_reads:
            from ..errors import AutogradError
            raise AutogradError(self.plan.stale_reads[0])
        grads = grads if isinstance(grads, tuple) else (grads,)
        dev = grads[0]._device
        if STATE.grad_enabled:  # backward(create_graph=True): the engine records the vjp's ops
            out = self._vjp_eager(grads)
        else:
            out = [_make(a, dev) for a in self.plan.bwd(*self.resid, *(g._data for g in grads))]
        result = [None] * len(self.primals)  # None, not zeros, for inputs no output depends on
        for i, g in zip(self.plan.grads_for, out):
            result[i] = g
        return tuple(result)

    def _vjp_eager(self, grads):
        """Recompute forward and backward op by op on Tensors from the primal inputs, so the engine
        records it and a second backward reaches the inputs."""
        from ..tensor import apply as _apply
        g = self.plan.joint
        env = {}
        dev = grads[0]._device
        for v, a in zip(g.inputs, list(self.primals) + list(grads)):
            env[id(v)] = a if isinstance(a, Tensor) else _make(a, dev)

        def get(v):
            if v is None:
                return None
            if v.weak:
                return v.const
            if v.const is not None:
                return _make(v.const, dev)
            return env[id(v)]
        for n in g.nodes:
            if n.subgraphs:
                raise DualgraphError(f"double backward through {n.op.name} in a compiled function is not supported")
            out = _apply(n.op, tuple(get(v) for v in n.inputs), n.attrs)
            outs = out if isinstance(out, tuple) else (out,)
            for v, t in zip(n.outputs, outs):
                env[id(v)] = t
        return tuple(get(v) for v in g.outputs[self.plan.n_out:])


def function(fn=None, *, input_signature=None, static_argnames=(), strict=False, passes=None, disable=(),
             name=None):
    """Trace `fn` into an optimized graph per input signature and run it compiled.

    Use as `@dg.function`, `@dg.function(static_argnames=("n",))` or `dg.function(module)`.
    `passes=` picks the passes (default: fold, simplify, cse, dce, fuse, plan_buffers); `disable=`
    switches some off. `strict=True` refuses to freeze values derived from tensors (shapes) unless
    declared with `input_signature=`.
    """
    def wrap(f):
        return CompiledFunction(f, input_signature, static_argnames, strict, passes, disable, name)
    if fn is None:
        return wrap
    return wrap(fn)


_ = (DualgraphError,)
