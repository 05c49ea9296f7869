"""`dg.jit.trace`: PyTorch's `torch.jit.trace` as a door into `@dg.function`.

    traced = dg.jit.trace(model, example)        # or a function; example: a tensor or a tuple
    traced(x); traced.graph; print(traced.code)

torch.jit.trace runs the function once and replays the recorded ops for every later input, which
has three well-known traps; dualgraph's tracing answers each instead of replaying a wrong graph:

* Python control flow on a tensor's value (`if x.sum() > 0:`) is frozen into torch's trace with a
  TracerWarning; here it raises dg.ConcretizationError at trace time, naming the line and pointing
  to dg.cond / dg.where.
* Python values read by the function (globals, a module's train()/eval() state) are baked into
  torch's trace; here a changed global or mode retraces (docs/tracing.md), so `traced.eval()`
  switches Dropout off.
* Shapes used as numbers (`x.view(x.shape[0] * 2, -1)`) are specialised in torch's trace and give
  wrong results or errors at another size; here a new shape retraces (or reuses a trace with
  symbolic dims), so results are right at every size.

`torch.jit.script`, `jit.save` and `jit.load` have no counterpart: dualgraph does not compile Python
source, and its deployable format is ONNX (dg.onnx.export).
"""
import copy
import warnings

import numpy as np

from ._state import STATE
from .errors import InvalidValue
from .function.api import CompiledFunction
from .function.control import tree_flatten
from .graph.ir import format_graph
from .nn.module import Module
from .tensor import Tensor

__all__ = ["trace", "TracerWarning", "TracedFunction", "TracedModule", "is_tracing", "is_scripting"]


class TracerWarning(Warning):
    """A traced function's outputs differ from the Python function's on the check inputs."""


def is_tracing():
    """True while dualgraph traces a function (dg.jit.trace, dg.compile, dg.function, static graphs)."""
    return bool(STATE.mode.symbolic)


def is_scripting():
    """False: dualgraph never compiles Python source as TorchScript does."""
    return False


class _Traced:
    """What the traced object adds to its compiled function: the graph and code of the example's trace."""

    def _init_traced(self, compiled, args, kwargs, graph=None):
        self.__dict__["_compiled"] = compiled
        self.__dict__["_example_graph"] = compiled.graph(*args, **kwargs) if graph is None else graph

    @property
    def graph(self):
        """The optimized graph traced for the example inputs (str() gives dualgraph's textual IR)."""
        return self.__dict__["_example_graph"]

    inlined_graph = graph

    @property
    def code(self):
        """The example trace as text: dualgraph's IR, one op per line (PyTorch shows TorchScript here)."""
        return format_graph(self.__dict__["_example_graph"], sources=False)

    @property
    def trace_count(self):
        return self.__dict__["_compiled"].trace_count

    @property
    def retrace_reason(self):
        return self.__dict__["_compiled"].retrace_reason


class TracedFunction(_Traced):
    """What dg.jit.trace(function, ...) returns; call it like the function."""

    def __init__(self, fn, compiled, args, kwargs):
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self._init_traced(compiled, args, kwargs)

    def __call__(self, *args, **kwargs):
        return self.__dict__["_compiled"](*args, **kwargs)

    def __repr__(self):
        return f"<dg.jit traced function {self.__name__}>"


class TracedModule(_Traced, Module):
    """What dg.jit.trace(module, ...) returns: a Module over the original's parameters, buffers and
    children (shared, so state_dict keys are the original's and training updates either), whose
    forward runs compiled."""

    def __init__(self, mod, compiled, args, kwargs, graph=None):
        Module.__init__(self)
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules", "_non_persistent"):
            d[key] = mod.__dict__[key]
        d["training"] = mod.training
        d["_orig"] = mod
        self._init_traced(compiled, args, kwargs, graph)

    def __deepcopy__(self, memo):
        """A traced copy of a deep copy of the module (copy.deepcopy(model), as EMA and checkpoint code do);
        the example graph, which only describes, is shared."""
        mod = copy.deepcopy(self.__dict__["_orig"], memo)
        out = TracedModule(mod, CompiledFunction(mod, name=type(mod).__name__), (), {},
                           graph=self.__dict__["_example_graph"])
        memo[id(self)] = out
        return out

    def forward(self, *args, **kwargs):
        return self.__dict__["_compiled"](*args, **kwargs)

    def train(self, mode=True):
        self.__dict__["_orig"].train(mode)  # the original's own flag is read by the trace's mode key
        return Module.train(self, mode)

    def __getattr__(self, name):
        try:
            return Module.__getattr__(self, name)
        except AttributeError:
            orig = self.__dict__.get("_orig")  # absent while copy/pickle rebuild the object
            if orig is None:
                raise
            return getattr(orig, name)

    def __repr__(self):
        return "Traced" + repr(self.__dict__["_orig"])


def _tensors(out):
    leaves, _ = tree_flatten(out)
    return [t for t in leaves if isinstance(t, Tensor)]


def _check(fn, compiled, args, kwargs, rtol, what):
    got, want = _tensors(compiled(*args, **kwargs)), _tensors(fn(*args, **kwargs))
    if len(got) != len(want):
        warnings.warn(f"dg.jit.trace: the traced function returned {len(got)} tensors on {what}, the Python "
                      f"function {len(want)}", TracerWarning, stacklevel=3)
        return
    for i, (a, b) in enumerate(zip(got, want)):
        a, b = a.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)
        if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=1e-5, equal_nan=True):
            warnings.warn(f"dg.jit.trace: output {i + 1} of the traced function does not match the Python "
                          f"function's on {what} (shapes {a.shape} and {b.shape}); the function is not "
                          f"deterministic (dropout in train mode, random numbers) or reads state that changed",
                          TracerWarning, stacklevel=3)


def trace(func, example_inputs=None, optimize=None, check_trace=True, check_inputs=None, check_tolerance=1e-5,
          strict=True, example_kwarg_inputs=None):
    """Trace `func` (a function or an nn.Module) on `example_inputs` (a tuple of arguments, or one tensor)
    and return a callable that runs it compiled: a TracedModule for a module, else a TracedFunction.

    Errors that torch.jit.trace would bake into the graph are raised here (dg.ConcretizationError for
    control flow on tensor values). `check_trace` compares the traced outputs with the Python function's
    on the example (and each of `check_inputs`), warning with TracerWarning where they differ by more than
    `check_tolerance` (relative). `optimize` and `strict` are accepted for PyTorch's signature: dualgraph
    always optimizes and traces list and dict outputs as they are, so there is nothing to refuse."""
    if example_inputs is None and example_kwarg_inputs is None:
        raise InvalidValue("dg.jit.trace: give example_inputs (a tuple of arguments or one tensor) or "
                           "example_kwarg_inputs (a dict)")
    if example_kwarg_inputs is not None and not isinstance(example_kwarg_inputs, dict):
        raise InvalidValue(f"dg.jit.trace: example_kwarg_inputs must be a dict, got "
                           f"{type(example_kwarg_inputs).__name__}")
    if isinstance(func, (TracedFunction, TracedModule)):
        raise InvalidValue("dg.jit.trace: this is already a traced function; trace the original")
    args = () if example_inputs is None else (
        example_inputs if isinstance(example_inputs, tuple) else (example_inputs,))
    kwargs = example_kwarg_inputs or {}
    is_module = isinstance(func, Module)
    compiled = CompiledFunction(func, name=type(func).__name__ if is_module else None)
    compiled(*args, **kwargs)  # traces now: what cannot be traced raises here, not at a later call
    if check_trace:
        _check(func, compiled, args, kwargs, check_tolerance, "the example inputs")
        for i, ci in enumerate(check_inputs or ()):
            ci_args = ci if isinstance(ci, tuple) else (ci,)
            _check(func, compiled, ci_args, {}, check_tolerance, f"check_inputs[{i}]")
    if is_module:
        return TracedModule(func, compiled, args, kwargs)
    return TracedFunction(func, compiled, args, kwargs)
