"""`dg.compile`: PyTorch's `torch.compile` as a door into `@dg.function`.

    model = dg.compile(model)                       # an nn.Module: an OptimizedModule around it
    step = dg.compile(step, fullgraph=True)         # a function (also @dg.compile, @dg.compile(...))

What it does is what `dg.function` does (docs/tracing.md): trace once per input signature, optimize,
run the compiled graph. The options map onto it:

* `fullgraph=False` (default): where the function cannot be traced (Python control flow on a tensor's
  value, `.item()`, data-dependent shapes: PyTorch's "graph breaks"), it runs eagerly from then on, so
  the results stay right; `graph_breaks` lists why. PyTorch compiles the pieces between breaks;
  dualgraph runs the whole function eagerly. `fullgraph=True`: that is an error (a dg.TraceError
  naming the line, as PyTorch raises on a graph break under fullgraph=True).
* `dynamic=None` (default): a change of sizes retraces once with those dims symbolic (PyTorch's
  automatic dynamic shapes). `dynamic=True`: the first trace already has every dim of size 2 or more
  symbolic (dims of equal size share a symbol, and sizes 0 and 1 stay fixed, as PyTorch does), falling
  back to one trace per shape if the function needs sizes as numbers. `dynamic=False`: one trace per
  shape.
* `backend="inductor"` (default): dualgraph's optimizing passes and kernels. `"eager"` and
  `"aot_eager"`: traced the same way but run without optimization passes. Other backends raise.
* `mode`: accepted by name ("default", "reduce-overhead", "max-autotune",
  "max-autotune-no-cudagraphs"); dualgraph has one optimization level, so all compile the same way.
* `options`: dualgraph's own `{"passes": [...], "disable": [...]}` (see dg.function); Inductor's
  settings raise InvalidValue, as they would change nothing.
* `disable=True`: returns `model` itself, uncompiled (PyTorch: "turn torch.compile() into a no-op").

Python side effects (print, appending to a list) run when tracing, not on every call (docs/tracing.md),
where PyTorch breaks the graph and runs them each call.
"""
import types
import weakref

from .errors import InvalidValue
from .function.api import CompiledFunction, _weakable
from .function.entry import build_entry
from .function.signature import struct_key
from .function.tracer import TraceError
from .nn.module import Module

__all__ = ["compile", "OptimizedModule"]

MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
BACKENDS = ("inductor", "eager", "aot_eager")
_OPTIONS = ("passes", "disable")


class _Compiled(CompiledFunction):
    """A dg.function with torch.compile's options: eager fallback on a graph break, the dynamic choice."""

    def __init__(self, fn, fullgraph, dynamic, passes, disable, name=None):
        super().__init__(fn, passes=passes, disable=disable, name=name)
        self.fullgraph, self.dynamic = fullgraph, dynamic
        self.graph_breaks = []    # why the function runs eagerly (empty while it runs compiled)
        self._opts = (passes, disable)

    def __call__(self, *args, **kwargs):
        if self.graph_breaks:
            return self.fn(*args, **kwargs)
        try:
            return super().__call__(*args, **kwargs)
        except TraceError as e:
            if self.fullgraph:
                raise
            # PyTorch falls back to Python at a graph break; the whole function runs eagerly here
            self.graph_breaks.append(f"{type(e).__name__}: {e}")
            return self.fn(*args, **kwargs)

    def _retrace(self, key, args, leaves, reason=None):
        st = struct_key(key)
        if st is not None and self.dynamic is False:
            self._no_symbolic.add(st)
        elif (st is not None and self.dynamic and reason is None and st not in self._no_symbolic
              and st not in self._sym_struct and self.input_signature is None):
            mask = duck_dims(leaves)
            if any(mask):
                descs = self.signature.describe(args)
                try:
                    entry = build_entry(self, args, leaves, mask, st, True, descs)
                except Exception as e:  # the function needs sizes as numbers: one trace per shape
                    self._no_symbolic.add(st)
                    why = f"dynamic=True: a symbolic-dim trace failed: {type(e).__name__}: {e}; tracing per shape"
                    entry = super()._retrace(key, args, leaves, reason)
                    self.retrace_reason = why
                    return entry
                self.retrace_reason = "first call (dynamic=True: dims of size 2 or more traced symbolic)"
                self._sym_struct[st] = entry
                self._finish(key, descs, entry)
                return entry
        return super()._retrace(key, args, leaves, reason)

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        bound = self.__dict__.setdefault("_bound_c", weakref.WeakKeyDictionary()) if _weakable(obj) else {}
        f = bound.get(obj)
        if f is None:
            f = _Compiled(types.MethodType(self.fn, obj), self.fullgraph, self.dynamic, *self._opts)
            bound[obj] = f
        return f

    def __repr__(self):
        state = f"runs eagerly ({len(self.graph_breaks)} graph break)" if self.graph_breaks else \
            f"{self.trace_count} trace(s)"
        return f"<dg.compile {self.__name__}: {state}>"


def duck_dims(leaves):
    """Per leaf {axis: name} for every dim of size >= 2; equal sizes share a name (PyTorch's duck sizing)."""
    names, mask = {}, []
    for t in leaves:
        mask.append({ax: names.setdefault(n, f"s{len(names)}") for ax, n in enumerate(t.shape) if n >= 2})
    return mask


class OptimizedModule(Module):
    """What dg.compile(module) returns: a Module holding the original as `_orig_mod`, whose forward runs
    it compiled. As in PyTorch, parameters are the original's (shared, not copied), state_dict keys carry
    the `_orig_mod.` prefix, and other attributes are looked up on the original."""

    def __init__(self, mod, compiled):
        super().__init__()
        self._orig_mod = mod
        self.__dict__["_compiled"] = compiled

    def forward(self, *args, **kwargs):
        return self.__dict__["_compiled"](*args, **kwargs)

    @property
    def graph_breaks(self):
        return self.__dict__["_compiled"].graph_breaks

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            orig = self.__dict__.get("_modules", {}).get("_orig_mod")  # absent while copy/pickle rebuild it
            if orig is None:
                raise
            return getattr(orig, name)

    def __repr__(self):
        return f"OptimizedModule(\n  (_orig_mod): {self._orig_mod!r}\n)"


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None, options=None,
            disable=False):
    """torch.compile's signature over dg.function; see the module docstring for what each option means."""
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                 options=options, disable=disable)
    if not callable(model):
        raise InvalidValue(f"dg.compile: expected a function or an nn.Module, got {type(model).__name__}")
    if mode not in MODES:
        raise InvalidValue(f"dg.compile: unknown mode {mode!r}; PyTorch's modes are {MODES[1:]}")
    if mode is not None and options is not None:
        raise InvalidValue("dg.compile: either mode or options can be given, not both (as in PyTorch)")
    if dynamic not in (None, True, False):
        raise InvalidValue(f"dg.compile: dynamic must be None, True or False, got {dynamic!r}")
    if not isinstance(backend, str):
        raise InvalidValue("dg.compile: custom backends (callables that receive a captured graph) are not "
                           f"supported; dualgraph compiles with its own passes (backend one of {BACKENDS})")
    if backend not in BACKENDS:
        raise InvalidValue(f"dg.compile: backend {backend!r} is not available; dualgraph's are {BACKENDS}")
    options = dict(options or {})
    unknown = [k for k in options if k not in _OPTIONS]
    if unknown:
        raise InvalidValue(f"dg.compile: option(s) {unknown} are Inductor settings dualgraph does not have; its "
                           f"options are {_OPTIONS} (the passes of dg.function)")
    if disable:
        return model
    passes = options.get("passes")
    if backend != "inductor":
        passes = ()
    skip = tuple(options.get("disable", ()))
    if isinstance(model, Module):
        return OptimizedModule(model, _Compiled(model, bool(fullgraph), dynamic, passes, skip,
                                                name=type(model).__name__))
    return _Compiled(model, bool(fullgraph), dynamic, passes, skip)
