"""`@dg.function`: trace once per input signature, optimize, run the compiled graph.

    f = dg.function(fn)            # or @dg.function, or dg.function(module)
    f(x)                           # first call: trace + optimize + compile; later calls: run
    f.trace_count, f.graph(x), f.frozen(x), f.retrace_reason

The cache key of a call is the structure of its arguments (nested tuples/lists/dicts), the shape,
dtype, device and requires_grad of every tensor, the value of every other argument (baked in as a
constant), and grad mode (see `signature`). Tensors the function reads from elsewhere (closure,
globals, a module's parameters, optimizer state) are graph inputs read again at every call, found by
their path from the function (see `capture`), so rebinding one is noticed. A cache miss traces a new
`entry.Entry`; a call runs one (see `call`).
"""
import inspect
import types
import warnings
import weakref

from .._state import STATE
from ..tensor import _TENSOR_TYPES
from . import passes as _passes
from .call import run
from .capture import closure_modules
from .entry import build_entry
from .signature import Signature, explain, flatten, struct_key, varying

RETRACE_WARN_AFTER = 8


class RetraceWarning(UserWarning):
    pass


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
            params = inspect.signature(getattr(fn, "forward", target) if module is not None else target)
        except (TypeError, ValueError):
            params = None
        self.signature = Signature(params, self.static_argnames, self.input_signature, self.__name__)
        self._cache = {}
        self._mods = list(module.modules()) if module is not None and hasattr(module, "modules") else None
        if self._mods is None:
            # modules the function reads from its closure or globals: their train()/eval() flags are
            # baked into a trace (Dropout, BatchNorm) exactly like a module passed to dg.function
            self._mods = closure_modules(target) or None
        self._entries = []
        self._sym_struct = {}     # struct_key -> the symbolic entry serving every size of that structure
        self._no_symbolic = set()  # struct_keys whose symbolic trace failed: traced per shape
        self.trace_count = 0
        self.retrace_reason = None
        self._last_descs = None
        self._last_modes = None
        self._warned = False

    # ---- the call path -----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if STATE.mode.symbolic:  # called inside another trace: inline it
            return self.fn(*args, **kwargs)
        if kwargs or self.signature.binds:
            args, statics = self.signature.bind(args, kwargs)
        else:
            statics = ()
        leaves, key = [], [statics, self._modes()]
        for a in args:
            if a.__class__ in _TENSOR_TYPES:   # holds data: symbolic tensors are refused by flatten
                d = a._data
                leaves.append(a)
                key.append((d.shape, d.dtype, a._device, a._requires_grad))
            else:
                flatten(a, leaves, key)
        key = tuple(key)
        try:
            entry = self._cache.get(key)
        except TypeError:
            key = repr(key)
            entry = self._cache.get(key)
        if entry is None:
            entry = self._lookup_symbolic(key, leaves)
            if entry is None:
                entry = self._retrace(key, args, leaves)
        caps = entry.read_captured()
        if caps is None:
            entry = self._retrace(key, args, leaves, reason=entry.guard_reason())
            caps = entry.read_captured()
        return run(entry, leaves, caps)

    def _modes(self):
        """Modes a trace bakes in: grad mode, MXNet's train_mode, and a module's train()/eval() flags."""
        st = STATE
        if self._mods is None:
            return (st.grad_enabled, st.training)
        return (st.grad_enabled, st.training, tuple(m.__dict__.get("training", True) for m in self._mods))

    def _lookup_symbolic(self, key, leaves):
        entry = self._sym_struct.get(struct_key(key))
        if entry is None or not entry.accepts(leaves):
            return None
        self._cache[key] = entry
        return entry

    # ---- tracing -----------------------------------------------------------------------------
    def _retrace(self, key, args, leaves, reason=None):
        descs = self.signature.describe(args)
        if reason is None:
            reason = explain(self._last_descs, descs)
            modes = key[1] if not isinstance(key, str) else None
            last = self._last_modes
            if last is not None and modes is not None and modes != last:
                what = [n for n, a, b in zip(("grad mode", "autograd training mode", "module train()/eval() mode"),
                                              last, modes) if a != b]
                reason = f"{' and '.join(what)} changed"
            self._last_modes = modes
        self.retrace_reason = reason
        sym_mask = self.signature.sym_mask(args, leaves)
        st = struct_key(key)
        # shapes alone changed since an earlier trace of this structure: trace once with symbolic dims
        if sym_mask is None and st is not None and st not in self._no_symbolic:
            prev = [e for e in self._entries if e.struct == st and not e.symbolic]
            if prev:
                mask = varying(prev[-1].leaf_shapes, [tuple(t.shape) for t in leaves])
                if any(mask):
                    try:
                        entry = build_entry(self, args, leaves, mask, st, True, descs)
                        self.retrace_reason = reason + " (retraced once with those dims symbolic; later sizes " \
                                                       "reuse this trace)"
                        self._sym_struct[st] = entry
                        self._finish(key, descs, entry)
                        return entry
                    except Exception as e:  # the function needs concrete sizes: keep tracing per shape
                        self._no_symbolic.add(st)
                        self.retrace_reason = reason + f" (a symbolic-dim trace failed: {type(e).__name__}: {e}; " \
                                                       f"tracing per shape)"
        entry = build_entry(self, args, leaves, sym_mask, st, sym_mask is not None, descs)
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

    # ---- introspection ----------------------------------------------------------------------
    def _entry_for(self, args, kwargs):
        if kwargs or self.signature.binds:
            args, statics = self.signature.bind(args, kwargs)
        else:
            statics = ()
        leaves, key = [], [statics, self._modes()]
        for a in args:
            flatten(a, leaves, key)
        key = tuple(key)
        entry = self._cache.get(key) or self._lookup_symbolic(key, leaves)
        if entry is None:
            entry = self._retrace(key, args, leaves)
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


def _weakable(obj):
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def function(fn=None, *, input_signature=None, static_argnames=(), strict=False, passes=None, disable=(),
             name=None):
    """Trace `fn` into an optimized graph per input signature and run it compiled.

    Use as `@dg.function`, `@dg.function(static_argnames=("n",))` or `dg.function(module)`.
    `passes=` picks the passes (default: `dualgraph.function.passes.DEFAULT`: fold, simplify, cse,
    dce, lower_math, simplify, dce, fuse, lower_kernels); `disable=` switches some off. `strict=True`
    refuses to freeze values derived from tensors (shapes) unless declared with `input_signature=`.
    """
    def wrap(f):
        return CompiledFunction(f, input_signature, static_argnames, strict, passes, disable, name)
    if fn is None:
        return wrap
    return wrap(fn)
