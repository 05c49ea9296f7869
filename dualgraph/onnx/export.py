"""dg.onnx.export: graph IR -> onnx.ModelProto, checked by onnx and verified against onnxruntime.

    dg.onnx.export(model, (x,), "model.onnx", input_names=["x"], output_names=["logits"],
                   dynamic_axes={"x": {0: "batch"}}, verify=True)

The exporter walks the graph (after folding/CSE/DCE, before fusion) and calls each op's lowering
(`op.onnx`, defined beside the op's record, see ops/onnx_rules.py). Parameters and buffers become
initializers named by their module path. Every op with no lowering is reported in one error, each with
the user's source line.
"""

import numpy as np

import onnx
from onnx import helper

from .._files import atomic_write
from .._version import __version__
from ..backend import to_host
from ..errors import DualgraphError
from ..graph.avals import Dim
from ..ops.registry import REGISTRY
from ..ops.onnx_rules import not_exportable
from ..ops.dims import DimExpr
from .context import LoweringContext, NotExportable, is_sym, value_info
from .symbolic import generalize

MIN_OPSET = 13


class ExportError(DualgraphError, RuntimeError):
    """The graph cannot be exported as asked (ops with no lowering, a bad opset, bad names...)."""


class VerificationError(ExportError, AssertionError):
    """onnxruntime's outputs differ from dualgraph's."""


# ---- opset ---------------------------------------------------------------------------------------

_ORT_MAX = []


def onnxruntime_max_opset():
    """The newest default-domain opset the installed onnxruntime loads (probed once), or None."""
    if _ORT_MAX:
        return _ORT_MAX[0]
    try:
        import onnxruntime as ort
    except ImportError:
        _ORT_MAX.append(None)
        return None
    best = None
    for v in range(onnx.defs.onnx_opset_version(), MIN_OPSET - 1, -1):
        # the probe holds the op types whose kernels lag behind in onnxruntime (the random ops
        # have no kernel for their opset-22 versions), so "supported" means "runs what we emit"
        x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
        y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
        z = helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2])
        g = helper.make_graph([helper.make_node("Cast", ["x"], ["c"], to=onnx.TensorProto.FLOAT),
                               helper.make_node("Reshape", ["c", "s"], ["y"]),
                               helper.make_node("RandomUniformLike", ["x"], ["r"]),
                               helper.make_node("RandomNormalLike", ["x"], ["q"]),
                               helper.make_node("Add", ["r", "q"], ["z"])], "probe", [x], [y, z],
                              [onnx.numpy_helper.from_array(np.array([2], np.int64), "s")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", v)])
        m.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", v)])
        try:
            sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            sess.run(None, {"x": np.ones(2, np.float32)})
            best = v
            break
        except Exception:
            continue
    _ORT_MAX.append(best)
    return best


def default_opset():
    """The newest opset that both the installed onnx and onnxruntime support."""
    v = onnx.defs.onnx_opset_version()
    ort_max = onnxruntime_max_opset()
    return min(v, ort_max) if ort_max else v


def resolve_opset(opset):
    if opset is None:
        return default_opset()
    opset = int(opset)
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ExportError(f"opset {opset} is newer than the installed onnx supports ({newest})")
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: dualgraph exports opset {MIN_OPSET} to {newest} "
                          f"(default {default_opset()})")
    return opset


# ---- checking the graph before lowering ------------------------------------------------------------

def _walk(graph):
    for node in graph.nodes:
        yield node
        for sub in node.subgraphs.values():
            yield from _walk(sub)


def unexportable_nodes(graph):
    """[(op name, source, reason)] for every node with no lowering (custom Functions included)."""
    out = []
    # custom dg.autograd.Functions the tracer inlined (it lists them, with the user's line, in
    # graph.meta["custom_functions"]): their backward is Python that ONNX cannot hold
    for entry in (getattr(graph, "meta", None) or {}).get("custom_functions", ()):
        name, source = (entry if isinstance(entry, (tuple, list)) else (str(entry), None))[:2]
        out.append((name, source, f"custom dg.autograd.Function {name}: its forward/backward are Python code "
                    f"ONNX cannot hold; write it with dualgraph ops (no Function subclass) to export it"))
    for node in _walk(graph):
        op = node.op
        rule = getattr(op, "onnx", None)
        if REGISTRY.get(op.name) is not op:
            cls = getattr(op, "cls", None)
            out.append((op.name, node.source, f"custom dg.autograd.Function {cls.__name__ if cls else op.name}: its "
                        f"forward/backward are Python code ONNX cannot hold; write it with dualgraph ops "
                        f"(no Function subclass) to export it"))
        elif rule is None:
            out.append((op.name, node.source, "no ONNX lowering is defined for this op"))
        elif isinstance(rule, not_exportable):
            out.append((op.name, node.source, rule.reason))
    return out


def coverage():
    """{op name: 'yes' | 'no: reason' | 'missing'} for every op of the table."""
    out = {}
    for name in sorted(REGISTRY):
        rule = REGISTRY[name].onnx
        out[name] = "missing" if rule is None else (f"no: {rule.reason}" if isinstance(rule, not_exportable)
                                                    else "yes")
    return out


def missing_lowerings():
    """Ops of the table with neither a lowering nor a not-exportable reason."""
    return sorted(name for name, op in REGISTRY.items() if op.onnx is None)


def _problems_error(problems, opset):
    lines = [f"onnx export (opset {opset}): {len(problems)} node(s) cannot be exported:"]
    for name, source, reason in problems:
        lines.append(f"  - {name} at {source or '<unknown source>'}: {reason}")
    return ExportError("\n".join(lines))


# ---- the lowering ----------------------------------------------------------------------------------

class ExportInfo:
    """What the exporter learned: names, symbolic shapes, dims (for verification and debugging)."""

    def __init__(self):
        self.graph = None          # the graph lowered: the one given, or its generalization to dynamic axes
        self.input_names = []      # fed inputs, in graph input order
        self.fed = []              # graph input indices that are fed (not initializers)
        self.output_names = []
        self.value_names = {}      # id(Value of self.graph) -> ONNX name
        self.dims = {}             # dim name -> Dim
        self.traced_sizes = {}     # Dim -> traced size (graphs traced at concrete sizes)
        self.emitted = {}
        self.opset = None


def _normalize_dynamic_axes(dynamic_axes, names):
    out = {}
    for key, axes in (dynamic_axes or {}).items():
        if key not in names:
            raise ExportError(f"dynamic_axes names {key!r}, which is not an input or output name "
                              f"(names: {', '.join(names)})")
        if isinstance(axes, dict):
            out[key] = {int(a): str(n) for a, n in axes.items()}
        else:
            out[key] = {int(a): f"{key}_dim{int(a)}" for a in axes}
    return out


def lower_graph(ctx, graph, problems):
    """Lower every node of `graph` into ctx; names of graph values land in ctx.names."""
    for node in graph.nodes:
        ins = []
        for v in node.inputs:
            if v is None or getattr(v, "weak", False):
                ins.append(None if v is None else v.const)
            else:
                if id(v) not in ctx.names and v.const is None:
                    raise ExportError(f"value {v} is used by {node.op.name} before it is defined")
                ins.append(ctx.name_of(v))
        first = len(ctx.nodes)
        try:
            outs = node.op.onnx(ctx, node, *ins)
        except NotExportable as e:
            problems.append((node.op.name, node.source, str(e)))
            outs = [ctx.fresh("unexportable") for _ in node.outputs]
        ctx.root.emitted.setdefault(node.op.name, set()).update(n.op_type for n in ctx.nodes[first:])
        outs = [outs] if isinstance(outs, str) else list(outs)
        if len(outs) != len(node.outputs):
            raise ExportError(f"the lowering of {node.op.name} returned {len(outs)} outputs, the op has "
                              f"{len(node.outputs)}")
        for o, n in zip(node.outputs, outs):
            ctx.names[id(o)] = n
            if ctx.root is ctx:   # a symbol a shape rule made (nonzero's count): readable from here on
                for axis, d in enumerate(o.aval.shape):
                    if isinstance(d, Dim) and not isinstance(d, DimExpr):
                        ctx.dim_sources.setdefault(d, (n, axis))


def graph_to_model(graph, input_names=None, output_names=None, dynamic_axes=None, opset=None,
                   initializers=None, doc_string=None, overridable=(), native_ops=True):
    """Lower `graph` to a checked onnx.ModelProto; returns (model, ExportInfo).

    initializers: {graph input index: (name, array)} inputs baked into the model (parameters).
    overridable: indices among those that are also listed as graph inputs, the initializer being
    their default (state a training step updates: feed the `.updated` outputs back in).
    native_ops: float32 conv and pooling ops become ONNX Conv/ConvTranspose/AveragePool (ops/conv.py).
    """
    opset = resolve_opset(opset)
    problems = unexportable_nodes(graph)
    if problems:
        raise _problems_error(problems, opset)
    initializers = initializers or {}
    info = ExportInfo()
    info.opset = opset
    ctx = LoweringContext(opset, native_ops=native_ops, lower=lower_graph)
    info.fed = [i for i in range(len(graph.inputs)) if i not in initializers]
    input_names = list(input_names or [])
    if len(input_names) > len(info.fed):
        raise ExportError(f"{len(input_names)} input_names for {len(info.fed)} inputs")
    for k, i in enumerate(info.fed):
        v = graph.inputs[i]
        name = input_names[k] if k < len(input_names) else (v.name if v.name and not v.name.isdigit()
                                                            else f"input_{k}")
        info.input_names.append(ctx.reserve(name))
    n_out = len(graph.outputs)
    output_names = list(output_names or [])
    if len(output_names) > n_out:
        raise ExportError(f"{len(output_names)} output_names for {n_out} outputs")
    output_names += [f"output_{k}" for k in range(len(output_names), n_out)]
    dyn = _normalize_dynamic_axes(dynamic_axes, info.input_names + output_names)

    # symbolic dims: those the trace already has, and those dynamic_axes asks for
    sym_inputs, fresh, by_name = [v.aval.shape for v in graph.inputs], False, {}
    for k, i in enumerate(info.fed):
        v = graph.inputs[i]
        shape = list(v.aval.shape)
        for axis, dname in dyn.get(info.input_names[k], {}).items():
            if not -len(shape) <= axis < len(shape):
                raise ExportError(f"dynamic_axes: input {info.input_names[k]!r} has {len(shape)} dims, "
                                  f"no axis {axis}")
            axis %= len(shape)
            if isinstance(shape[axis], Dim):   # symbolic in the trace already: just name it
                by_name.setdefault(dname, shape[axis])
                ctx.dim_names.setdefault(shape[axis], dname)
                continue
            d = by_name.get(dname)
            if d is None:
                d = by_name[dname] = Dim(dname)
                info.traced_sizes[d] = int(shape[axis])
            elif d in info.traced_sizes and info.traced_sizes[d] != shape[axis]:
                raise ExportError(f"dynamic_axes: dim {dname!r} has size {info.traced_sizes[d]} in one input "
                                  f"and {shape[axis]} in {info.input_names[k]!r}")
            shape[axis] = d
            fresh = True
        sym_inputs[i] = tuple(shape)
    if fresh:
        if any(isinstance(d, Dim) for v in graph.inputs for d in v.aval.shape):
            raise ExportError("dynamic_axes: this graph has symbolic dims already; name those axes only "
                              "(or trace at concrete sizes)")
        graph = generalize(graph, sym_inputs, info.traced_sizes)
    info.graph = graph
    for k, i in enumerate(info.fed):
        v = graph.inputs[i]
        ctx.names[id(v)] = info.input_names[k]
        for axis, d in enumerate(v.aval.shape):
            if isinstance(d, Dim) and not isinstance(d, DimExpr):
                ctx.dim_sources.setdefault(d, (info.input_names[k], axis))
                info.dims.setdefault(ctx.dim_names.get(d, d.name), d)
    for i, (name, arr) in sorted(initializers.items()):
        arr = np.asarray(to_host(arr) if not isinstance(arr, np.ndarray) else arr)
        name = ctx.reserve(name)
        ctx.initializers.append(onnx.numpy_helper.from_array(arr, name))
        ctx.names[id(graph.inputs[i])] = name

    problems = []
    lower_graph(ctx, graph, problems)
    if problems:
        raise _problems_error(problems, opset)

    # outputs: rename the producing ONNX value where we can, else an Identity
    produced = {o: n for n in ctx.nodes for o in n.output}
    taken = set()
    out_infos = []
    for k, v in enumerate(graph.outputs):
        want = output_names[k]
        if v is None:
            raise ExportError(f"output {k} is None")
        if getattr(v, "weak", False) or id(v) not in ctx.names:
            src = ctx.const(np.asarray(v.const, dtype=v.aval.dtype))
        else:
            src = ctx.names[id(v)]
        if src in produced and src not in taken and want not in ctx.root._used:
            _rename(ctx.nodes, src, want)
            ctx.root._used.add(want)
            for key in [key for key, n in ctx.names.items() if n == src]:
                ctx.names[key] = want
            produced[want] = produced.pop(src)
        else:
            ctx.emit("Identity", [src], outputs=[ctx.reserve(want)])
        taken.add(want)
        shape = list(v.aval.shape)
        for axis, dname in dyn.get(want, {}).items():
            if is_sym(shape[axis]):
                continue
            shape[axis] = by_name.get(dname) or Dim(dname)
        out_infos.append(value_info(want, v.aval.dtype, shape, ctx.dim_names))
    info.output_names = output_names
    info.emitted = ctx.emitted
    params = {name for name, _ in initializers.values()}   # kept even where unread: they are the model's state
    ctx.nodes, ctx.initializers = _live(ctx.nodes, ctx.initializers, output_names, params)
    produced = {o for n in ctx.nodes for o in n.output} | {t.name for t in ctx.initializers} | set(info.input_names)
    info.value_names = {k: n for k, n in ctx.names.items() if n in produced}

    in_infos = [value_info(info.input_names[k], graph.inputs[i].aval.dtype, graph.inputs[i].aval.shape,
                            ctx.dim_names) for k, i in enumerate(info.fed)]
    in_infos += [value_info(initializers[i][0], graph.inputs[i].aval.dtype, graph.inputs[i].aval.shape)
                 for i in sorted(overridable)]
    g = helper.make_graph(ctx.nodes, graph.name or "dualgraph", in_infos, out_infos, ctx.initializers)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="dualgraph",
                              producer_version=__version__, doc_string=doc_string or "")
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    check(model)
    return model, info


def _live(nodes, initializers, outputs, keep):
    """The nodes and initializers the outputs depend on: a lowering may leave nodes it emitted unread
    (a shape or constant it made and then did not need)."""
    needed = set(outputs) | set(keep)
    live = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
            needed.update(_read_by_bodies(n))
    return live[::-1], [t for t in initializers if t.name in needed]


def _read_by_bodies(node):
    """Every name the If/Loop bodies of `node` mention (outer values they read among them)."""
    names = set()
    for a in node.attribute:
        bodies = [a.g] if a.type == onnx.AttributeProto.GRAPH else \
            list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []
        for g in bodies:
            for n in g.node:
                names.update(i for i in n.input if i)
                names.update(_read_by_bodies(n))
    return names


def _rename(nodes, old, new):
    for n in nodes:
        for i, x in enumerate(n.output):
            if x == old:
                n.output[i] = new
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _rename(a.g.node, old, new)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sg in a.graphs:
                    _rename(sg.node, old, new)




def check(model):
    """onnx.checker (full check) and strict shape inference; raises ExportError on failure."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:
        raise ExportError(f"the exported model fails onnx's checks: {e}") from e


def save_atomic(model, path):
    """Write the model so that `path` is never left half-written (temp file + os.replace)."""
    atomic_write(path, [model.SerializeToString()], suffix=".onnx.tmp")
