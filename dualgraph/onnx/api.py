"""`dg.onnx.export`: trace (or reuse a trace, or take a Graph) and write a checked ONNX model."""
import functools
import inspect
import types

import numpy as np

from ..backend import to_host
from ..function import TensorSpec, function, passes as _passes
from ..function.api import CompiledFunction
from ..graph.avals import Dim
from ..graph.ir import Graph
from ..nn.module import Module
from ..ops.creation import from_numpy
from ..ops.dims import DimExpr, SymbolicSizeError, assuming_size_asserts, leaves, resolve
from ..tensor import Tensor
from .export import ExportError, graph_to_model, save_atomic
from .symbolic import mismatch_at_other_sizes
from .verify import graph_reference, verify as _verify


class Traced:
    """A graph plus what export needs to know about its inputs and outputs."""

    def __init__(self, graph, fed, params, updated=(), reference=None, n_user_outputs=None, state=()):
        self.graph = graph
        self.fed = fed                    # graph input indices fed by the caller, in argument order
        self.params = params              # {graph input index: (name, array)} baked in as initializers
        self.updated = list(updated)      # [(name, graph output index)] state written by the function
        self.reference = reference        # callable(list of arrays) -> list of arrays (eager), or None
        self.n_user_outputs = n_user_outputs
        self.state = set(state)           # param indices that are also overridable inputs


def _flat(out):
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        res = []
        for o in out:
            res.extend(_flat(o))
        return res
    if isinstance(out, dict):
        res = []
        for k in sorted(out):
            res.extend(_flat(out[k]))
        return res
    raise ExportError(f"the exported function returned a {type(out).__name__}; return tensors "
                      f"(or tuples/lists/dicts of tensors)")


def _tensor_names(modules):
    """id(tensor) -> module path ("fc1.weight") for the parameters and buffers of `modules`."""
    names = {}
    for m in modules:
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            names.setdefault(id(t), name)
    return names


def _variable_names(fn):
    """id(tensor) -> variable name, for tensors the function reads from its closure or globals."""
    fn = getattr(fn, "__wrapped__", fn)
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return {}
    out = {}
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            if isinstance(cell.cell_contents, Tensor):
                out.setdefault(id(cell.cell_contents), name)
        except ValueError:
            pass
    g = getattr(fn, "__globals__", {})
    for name in code.co_names:
        if isinstance(g.get(name), Tensor):
            out.setdefault(id(g[name]), name)
    return out


def _find_modules(fn):
    found = []
    if isinstance(fn, Module):
        found.append(fn)
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, Module):
        found.append(owner)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            if isinstance(cell.cell_contents, Module):
                found.append(cell.cell_contents)
        except ValueError:
            pass
    code = getattr(fn, "__code__", None)
    g = getattr(fn, "__globals__", {})
    for n in (code.co_names if code else ()):
        if isinstance(g.get(n), Module):
            found.append(g[n])
    return found


def trace(fn, example_args, dynamic_axes=None, input_names=None):
    """The graph export would lower for fn(*example_args), with its parameters and written state
    (a `Traced`); fn is a function, an nn.Module or a @dg.function."""
    example_args = tuple(example_args) if isinstance(example_args, (tuple, list)) else (example_args,)
    return _via_function(fn, example_args, dynamic_axes, input_names)


def _snapshot(modules):
    saved = []
    for m in modules:
        for _, t in list(m.named_parameters()) + list(m.named_buffers()):
            saved.append((t, t._data.copy()))
    return saved


def _restore(saved):
    for t, arr in saved:
        t._data[...] = arr


def _obtain(f, example_args, dynamic_axes=None, input_names=None):
    """A Traced for a Graph, a @dg.function, an nn.Module or a plain function."""
    if isinstance(f, Graph):
        return Traced(f, list(range(len(f.inputs))), {})
    example_args = tuple(example_args) if isinstance(example_args, (tuple, list)) else (example_args,)
    if not callable(f):
        raise ExportError(f"dg.onnx.export takes a function, an nn.Module, a @dg.function or a Graph, "
                          f"got {type(f).__name__}")
    return trace(f, example_args, dynamic_axes, input_names)


def _entry(cf, args):
    """@dg.function's trace entry for these arguments: the traced graph, its captured tensors
    (`captured[i].ref()`, `.value`, `.aval`), `n_args`, `n_user_out`, and the write-backs
    (`writebacks`, `grad_writes`) that become extra outputs."""
    return cf._entry_for(args, {})


def _same_shapes_at(sym_entry, conc_entry, args):
    """Do the symbolic trace's outputs, at the example's sizes, have the concrete trace's shapes?"""
    env = {}
    for v, a in zip(sym_entry.graph.inputs, [a for a in args if isinstance(a, Tensor)]):
        for d, n in zip(v.aval.shape, a.shape):
            if isinstance(d, Dim) and not isinstance(d, DimExpr):
                env.setdefault(d, int(n))
    a_outs, b_outs = sym_entry.graph.outputs, conc_entry.graph.outputs
    if len(a_outs) != len(b_outs):
        return False
    for a, b in zip(a_outs, b_outs):
        if a is None or b is None or len(a.aval.shape) != len(b.aval.shape):
            return False
        for d, n in zip(a.aval.shape, b.aval.shape):
            try:
                if int(resolve(d, env)) != int(n):
                    return False
            except (KeyError, TypeError, ValueError):
                continue   # an opaque symbol: nothing to compare
    return True


def _size_needed_error(e, dyn, names, tensors):
    """ExportError for user code that used a dynamic axis as a Python number: names the axis (input,
    axis, traced size) and the user's line."""
    axes = {}
    for k, spec in dyn.items():
        for ax, nm in spec.items():
            t = tensors[k]
            axes.setdefault(str(nm), (names[k], int(ax) % max(t.ndim, 1), t.shape[int(ax) % max(t.ndim, 1)]))
    used = [d.name for d in leaves(e.dim)] if e.dim is not None else []
    which = [f"{nm!r} (input {axes[nm][0]!r}, axis {axes[nm][1]}, traced at {axes[nm][2]})" for nm in dict.fromkeys(used)
             if nm in axes]
    what = ("the dynamic axis " + " and ".join(which)) if which else "a dynamic axis"
    detail = str(e).split(" needs the size")[0] if " needs the size" in str(e) else str(e)
    return ExportError(
        f"onnx export: {what} is used as a Python number at {e.where or '<unknown line>'} ({detail}). In the "
        f"exported model that size is only known when it runs: a trace at the example's sizes would hold the "
        f"traced number there, and the model would be wrong at any other size. Use the size only as a size "
        f"(dg.arange, reshape/view, slicing, dg.zeros/ones/full, arithmetic with numbers), branch with dg.where or "
        f"dg.cond, or leave that axis out of dynamic_axes")


def _check_other_sizes(graph, trace_at, args, dyn, names, tensors):
    """Refuse a graph traced at the example's sizes whose re-derived dynamic dims disagree with a trace
    of the same function at other sizes (ExportError naming the node's line and the axes)."""
    dims, sizes, other = {}, {}, {}
    for k, spec in dyn.items():
        t = tensors[k]
        for ax, nm in spec.items():
            n = t.shape[int(ax) % max(t.ndim, 1)]
            if str(nm) not in dims and n > 1:   # size 0/1 are special in numpy (and PyTorch): kept as traced
                d = dims[str(nm)] = Dim(str(nm))
                sizes[d], other[d] = n, n + 1
    if not dims:
        return
    new_args, sym_inputs, k = [], [], 0
    for a in args:
        if not isinstance(a, Tensor):
            new_args.append(a)
            continue
        spec = {int(ax) % max(a.ndim, 1): str(nm) for ax, nm in dyn.get(k, {}).items()}
        shape = tuple(dims[spec[i]] if spec.get(i) in dims else n for i, n in enumerate(a.shape))
        sym_inputs.append(shape)
        arr = a.numpy()
        new_shape = tuple(other[d] if isinstance(d, Dim) else d for d in shape)
        new_args.append(from_numpy(np.ascontiguousarray(np.resize(arr, new_shape).astype(arr.dtype))))
        k += 1
    sym_inputs += [v.aval.shape for v in graph.inputs[len(sym_inputs):]]
    axes = ", ".join(f"{nm!r} (traced at {sizes[d]})" for nm, d in dims.items())
    try:
        second = trace_at(tuple(new_args))
    except Exception as e:
        raise ExportError(f"onnx export: the function traces at the example's sizes but not with the dynamic axes "
                          f"{axes} one larger ({type(e).__name__}: {e}); the model could only be right at the traced "
                          f"sizes") from None
    bad = mismatch_at_other_sizes(graph, second, sym_inputs, sizes, other)
    if bad is None:
        return
    node, what = bad
    where = f"{node.op.name} at {node.source or '<unknown line>'}" if node is not None else "the function"
    raise ExportError(
        f"onnx export: {where} holds a size of the dynamic axes {axes} as a number: traced again with those axes "
        f"one larger, {what}. The model would only be right at the traced sizes. Compute sizes with tensor ops "
        f"or shape arithmetic (x.shape[i] used in dg.arange, reshape, slicing, dg.zeros/full), not in Python or "
        f"numpy; keep slice bounds made of sizes inside their axis (numpy clips one past the end); trace with "
        f"dynamic sizes that differ from each other and from fixed dims; or leave the axis out of dynamic_axes")


def _has_varargs(fn):
    try:
        return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


def _fixed_arity(fn, n, names):
    names = [nm for nm in (names or [])]
    params = [nm if k < len(names) and nm.isidentifier() and nm not in names[:k] else f"arg{k}"
              for k, nm in enumerate(names + [None] * (n - len(names)))]
    ns = {"fn": fn}
    exec(f"def call({', '.join(params)}):\n    return fn({', '.join(params)})\n", ns)
    call = ns["call"]
    call.__name__ = getattr(fn, "__name__", "call")
    return call


def _via_function(f, args, dynamic_axes, input_names):
    """Trace through @dg.function (reusing its trace when f is one) and read the graph the exporter
    wants: after fold/simplify/CSE/DCE, before fusion. With dynamic axes on the inputs, first try a
    trace with those dims symbolic (shapes computed from them stay symbolic); if the function needs
    concrete sizes, trace concretely and let the exporter re-derive the symbols."""
    target = f.__wrapped__ if isinstance(f, CompiledFunction) else f
    static = f.static_argnames if isinstance(f, CompiledFunction) else ()
    keep = []   # what the function returns stays alive: a tensor it creates and returns is a capture
    plain = target
    if not static and _has_varargs(target):
        # input_signature binds per parameter: give f(*xs) one named parameter per argument
        target = _fixed_arity(target, len(args), input_names)
    if isinstance(target, types.FunctionType) and not isinstance(f, CompiledFunction):
        @functools.wraps(target)
        def traced_fn(*a, **kw):
            out = target(*a, **kw)
            keep.append(out)
            return out
    else:
        traced_fn = plain
    tensors = [a for a in args if isinstance(a, Tensor)]
    names = list(input_names or []) + [f"input_{k}" for k in range(len(input_names or []), len(tensors))]
    entry = None
    dyn = {}
    for k, n in enumerate(names):
        axes = (dynamic_axes or {}).get(n)
        if axes:
            dyn[k] = axes if isinstance(axes, dict) else {a: f"{n}_dim{a}" for a in axes}
    if dyn and all(isinstance(a, Tensor) or not isinstance(a, (list, tuple, dict)) for a in args):
        sig, k = [], 0
        for a in args:
            if isinstance(a, Tensor):
                axes = {int(ax) % max(a.ndim, 1): str(nm) for ax, nm in dyn.get(k, {}).items()}
                sig.append(TensorSpec(tuple(axes.get(i, d) for i, d in enumerate(a.shape)), a.dtype))
                k += 1
            else:
                sig.append(None)
        try:
            cf = function(traced_fn, input_signature=sig, static_argnames=static)
            with assuming_size_asserts():   # `assert T <= block_size`: checked by the concrete trace below
                entry = _entry(cf, args)
        except SymbolicSizeError as e:
            # the user's code needs a dynamic size as a Python number: a trace at the example's sizes
            # would hold that number, and the model would be right at the traced size only
            raise _size_needed_error(e, dyn, names, tensors) from None
        except Exception:
            entry = None
    checked_concrete = False
    if entry is not None:
        # a size-1 dim declared dynamic can change what the function computes (squeeze, broadcasting):
        # the symbolic trace must agree with a concrete one at the example's sizes, else use that one
        cf_conc = f if isinstance(f, CompiledFunction) else function(traced_fn, static_argnames=static)
        conc = _entry(cf_conc, args)
        if not _same_shapes_at(entry, conc, args):
            cf, entry = cf_conc, conc
            checked_concrete = True
    if entry is None:
        cf = f if isinstance(f, CompiledFunction) else function(traced_fn, static_argnames=static)
        entry = _entry(cf, args)
        checked_concrete = bool(dyn)
    graph = _passes.optimize(entry.graph, _passes.EXPORT)
    if checked_concrete:
        # traced at the example's sizes because a symbolic trace failed inside an op: the exporter will
        # re-derive the dynamic dims, which is only right if nothing held a size as a number. Trace once
        # more at other sizes and compare; a difference the derivation does not explain is refused.
        _check_other_sizes(graph, lambda a: _passes.optimize(
            _entry(function(traced_fn, static_argnames=static), a).graph, _passes.EXPORT), args, dyn, names, tensors)
    n_args = entry.n_args
    modules = _find_modules(f) + ([cf.module] if getattr(cf, "module", None) is not None else [])
    module_names = _tensor_names(modules)
    for k, v in _variable_names(target).items():
        module_names.setdefault(k, v)
    params, used, cap_index = {}, set(), {}
    for k, c in enumerate(entry.captured):
        i = n_args + k
        t = c.ref()
        name = (module_names.get(id(t)) if t is not None else None) or c.value.name or f"captured_{k}"
        while name in used:
            name += "_"
        used.add(name)
        params[i] = (name, to_host(t._data) if t is not None else np.zeros(
            tuple(int(d) for d in c.aval.shape), c.aval.dtype))
        if t is not None:
            cap_index[id(t)] = i
    updated, state = [], set()
    for kind, target_t, k in entry.writebacks:
        if kind == "arg":
            updated.append((names[target_t] if target_t < len(names) else f"input_{target_t}", k))
        else:
            i = cap_index.get(id(target_t))
            if i is not None:
                state.add(i)
            updated.append((params[i][0] if i is not None else f"state_{k}", k))
    for (kind, target_t), k in entry.grad_writes:
        if k is None:
            continue
        if kind == "arg":
            base = names[target_t] if target_t < len(names) else f"input_{target_t}"
        else:
            i = cap_index.get(id(target_t))
            base = params[i][0] if i is not None else module_names.get(id(target_t), f"tensor_{k}")
        updated.append((base + ".grad", k))
    fed = list(range(n_args))

    def reference(arrays):
        it = iter(arrays)
        # onnxruntime's feeds are host arrays; the reference runs where the example inputs live (a GPU model
        # has GPU parameters)
        call = [from_numpy(np.ascontiguousarray(next(it))).to(a.device) if isinstance(a, Tensor) else a
                for a in args]
        snapshot = _snapshot(modules)
        try:
            res = _flat(target(*call))
        finally:
            _restore(snapshot)
        return [r.numpy() for r in res]
    return Traced(graph, fed, params, updated, None if updated else reference, entry.n_user_out, state)


def export(f, example_args=(), path=None, input_names=None, output_names=None, dynamic_axes=None,
           opset=None, verify=False, rtol=1e-4, atol=1e-5, doc_string=None, training=False, native_ops=True):
    """Export `f` (function, nn.Module, @dg.function or Graph) to ONNX; returns the onnx.ModelProto.

    example_args: the inputs to trace with (Tensors; other values are static). input_names /
    output_names: ONNX names of the fed inputs / the outputs. dynamic_axes: {name: {axis: dim name}}
    or {name: [axes]}; a dim name shared by several inputs is one symbol. opset: default the newest
    both onnx and onnxruntime support. verify: run onnxruntime on the example inputs and on random
    sizes along the dynamic axes and compare with dualgraph (rtol/atol); raises VerificationError.
    path: where to write (atomically); None returns the model without writing.
    native_ops: float32 convolution and pooling become ONNX Conv/ConvTranspose/MaxPool/AveragePool;
    False lowers them as im2col (Gather of window positions + MatMul), as other dtypes are.
    training: an nn.Module is exported in eval mode (dropout off, BatchNorm on running statistics)
    and put back in its mode afterwards, as torch.onnx.export does; training=True keeps its mode.
    """
    if isinstance(f, Module) and not training and f.training:
        f.eval()
        try:
            return export(f, example_args, path, input_names, output_names, dynamic_axes, opset, verify,
                          rtol, atol, doc_string, training, native_ops)
        finally:
            f.train()
    traced = _obtain(f, example_args, dynamic_axes, input_names)
    graph = traced.graph
    out_names = list(output_names or [])
    n_user = traced.n_user_outputs if traced.n_user_outputs is not None else len(graph.outputs)
    out_names += [f"output_{k}" for k in range(len(out_names), n_user)]
    for name, k in sorted(traced.updated, key=lambda u: u[1]):
        out_names.append(name + ".updated" if not name.endswith(".grad") else name)
    model, info = graph_to_model(graph, input_names=input_names, output_names=out_names,
                                 dynamic_axes=dynamic_axes, opset=opset, initializers=traced.params,
                                 doc_string=doc_string, overridable=traced.state, native_ops=native_ops)
    if verify:
        example = [a for a in (example_args if isinstance(example_args, (tuple, list)) else (example_args,))
                   if isinstance(a, Tensor)] if not isinstance(f, Graph) else list(example_args)
        arrays = [np.asarray(a.numpy() if isinstance(a, Tensor) else a) for a in example]
        if len(arrays) != len(info.fed):
            raise ExportError(f"verify=True needs one example array per graph input ({len(info.fed)}), "
                              f"got {len(arrays)}")
        feeds = dict(zip(info.input_names, arrays))
        if traced.reference is not None:
            ref_fn = traced.reference

            def reference(feeds_):
                return ref_fn([feeds_[n] for n in info.input_names])
        else:
            initial = {i: arr for i, (_, arr) in traced.params.items()}
            reference = graph_reference(info, info.graph, initial)
        _verify(model, info, info.graph, feeds, reference, rtol=rtol, atol=atol)
    if path is not None:
        save_atomic(model, path)
    return model
