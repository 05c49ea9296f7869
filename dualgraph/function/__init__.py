"""`@dg.function`: tracing Python into the graph IR, optimizing it and running it compiled.

    tracer.py     the graph builder apply() hands ops to; symbolic tensors; captured state
    api.py        dg.function and CompiledFunction: the trace cache, retracing, introspection
    signature.py  arguments -> cache key and graph inputs; TensorSpec; why a call retraced
    capture.py    tensors and values read from closures, globals and modules; the per-call guards
    entry.py      one trace compiled for one key (Entry) and the steps that build it
    call.py       running an entry, writing back in-place updates and grads
    compiled_op.py  the autograd op of a compiled call its caller differentiates
    autodiff.py   reverse mode on the IR (vjp rules traced), joint graph and its partition
    control.py    dg.cond / dg.while_loop / dg.fori_loop and their ops
    executor.py   generated straight-line Python from the op records; the reference interpreter
    passes/       fold, simplify, cse, dce, lower_math, fuse, lower_kernels (each Graph -> Graph)

See docs/tracing.md.
"""
from .api import CompiledFunction, RetraceWarning, function
from .control import cond, fori_loop, while_loop
from .signature import TensorSpec
from .tracer import ConcretizationError, FrozenValue, TraceError

__all__ = ["function", "cond", "while_loop", "fori_loop", "TensorSpec", "CompiledFunction", "TraceError",
           "ConcretizationError", "RetraceWarning", "FrozenValue"]
