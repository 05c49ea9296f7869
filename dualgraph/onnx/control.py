"""Lowerings of the ops whose bodies are subgraphs: `cond` -> If, `while_loop` -> Loop, and a fused
elementwise chain inlined node by node. They are set on those op records here, since they lower their
bodies with the exporter itself.

IR layout (dualgraph.function.control):
    cond:       inputs (pred, *operands, *captured); subgraphs then/else: (*operands, *captured) -> outs
    while_loop: inputs (*state, *captured); subgraphs cond: (*state, *captured) -> (pred,),
                body: (*state, *captured) -> state
ONNX subgraphs read outer values by name, so subgraph inputs are bound to the names of the node's
operands; only Loop's carried state gets fresh body inputs.
"""
import numpy as np

from onnx import helper

from ..ops.onnx_rules import NotExportable
from ..ops.registry import REGISTRY
from .context import is_sym, onnx_dtype


def _vi(name, aval, shape=None, names=None):
    from .export import dim_param
    dims = [dim_param(d, names or {}) if is_sym(d) else
            (None if d is None or (isinstance(d, int) and d < 0) else int(d))
            for d in (aval.shape if shape is None else shape)]
    return helper.make_tensor_value_info(name, onnx_dtype(aval.dtype), dims)


def _lower_body(ctx, graph, bindings, problems):
    """Lower `graph` into a fresh sub-context with its inputs bound to `bindings` (ONNX names)."""
    from .export import lower_graph
    sub = ctx.sub()
    for v, name in zip(graph.inputs, bindings):
        sub.names[id(v)] = name
    lower_graph(sub, graph, problems)
    return sub


def _outputs_inside(sub, graph, hint):
    """Names of the subgraph outputs, each produced by a node of `sub` (ONNX wants that)."""
    produced = {o for n in sub.nodes for o in n.output}
    outs, infos = [], []
    for v in graph.outputs:
        if getattr(v, "weak", False) or v.const is not None and id(v) not in sub.names:
            src = sub.const(np.asarray(v.const, dtype=v.aval.dtype))
        else:
            src = sub.names[id(v)]
        if src not in produced or src in outs:
            src = sub.emit("Identity", [src], hint=hint)
        outs.append(src)
        infos.append(_vi(src, v.aval, sub.shape(v), sub.dim_names))
    return outs, infos


def _cond(ctx, node, pred, *operands):
    problems = []
    pred_v = node.inputs[0]
    p = ctx.arg(pred_v, pred, np.bool_)
    if len(pred_v.aval.shape):
        p = ctx.emit("Reshape", [p, ctx.i64([])])
    branches = {}
    for key in ("then", "else"):
        g = node.subgraphs[key]
        sub = _lower_body(ctx, g, operands, problems)
        outs, infos = _outputs_inside(sub, g, f"{key}_out")
        branches[key] = helper.make_graph(sub.nodes, ctx.fresh(f"{key}_branch"), [], infos)
    if problems:
        raise NotExportable("; ".join(f"{n} at {s}: {r}" for n, s, r in problems))
    n = len(node.outputs)
    return tuple(ctx.emit("If", [p], n_out=n, hint="if_out", then_branch=branches["then"],
                          else_branch=branches["else"])) if n > 1 else \
        ctx.emit("If", [p], hint="if_out", then_branch=branches["then"], else_branch=branches["else"])


def _while(ctx, node, *ins):
    problems = []
    cond_g, body_g = node.subgraphs["cond"], node.subgraphs["body"]
    n_state = len(body_g.outputs)
    state, captured = list(ins[:n_state]), list(ins[n_state:])
    state = [ctx.arg(v, s, v.aval.dtype) if not isinstance(s, str) else s
             for v, s in zip(node.inputs[:n_state], state)]

    def pred_of(sub, g):
        name = sub.names[id(g.outputs[0])] if not getattr(g.outputs[0], "weak", False) else \
            sub.const(np.asarray(g.outputs[0].const, dtype=np.bool_))
        name = sub.cast(name, g.outputs[0].aval.dtype, np.bool_)
        if len(g.outputs[0].aval.shape):
            name = sub.emit("Reshape", [name, sub.i64([])])
        return name

    # the first test runs in the enclosing graph
    first = _lower_body(ctx, cond_g, state + captured, problems)
    ctx.nodes.extend(first.nodes)
    cond0 = pred_of(first, cond_g)
    # body: (iter, cond, *state) -> (cond, *state)
    it, c_in = ctx.fresh("loop_iter"), ctx.fresh("loop_cond_in")
    carried = [ctx.fresh(f"loop_state{k}") for k in range(n_state)]
    body = _lower_body(ctx, body_g, carried + captured, problems)
    new_state = [body.names[id(v)] if not getattr(v, "weak", False) and id(v) in body.names
                 else body.const(np.asarray(v.const, dtype=v.aval.dtype)) for v in body_g.outputs]
    test = _lower_body(body, cond_g, new_state + captured, problems)
    body.nodes.extend(test.nodes)
    c_out = pred_of(test, cond_g)
    produced = {o for n in body.nodes for o in n.output}
    outs = []
    for name in [c_out] + new_state:
        if name not in produced or name in outs:
            name = body.emit("Identity", [name], hint="loop_out")
        outs.append(name)
    if problems:
        raise NotExportable("; ".join(f"{n} at {s}: {r}" for n, s, r in problems))
    b_in = [helper.make_tensor_value_info(it, onnx_dtype(np.int64), []),
            helper.make_tensor_value_info(c_in, onnx_dtype(np.bool_), [])] + \
        [_vi(n, v.aval, [None] * len(v.aval.shape)) for n, v in zip(carried, body_g.outputs)]
    b_out = [helper.make_tensor_value_info(outs[0], onnx_dtype(np.bool_), [])] + \
        [_vi(n, v.aval, [None] * len(v.aval.shape)) for n, v in zip(outs[1:], body_g.outputs)]
    graph = helper.make_graph(body.nodes, ctx.fresh("loop_body"), b_in, b_out)
    res = ctx.emit("Loop", ["", cond0] + state, n_out=n_state, hint="loop_out", body=graph)
    return tuple(res) if n_state > 1 else res




def _fused(ctx, node, *ins):
    """A fused elementwise chain (made by the fusion pass; export normally reads the graph before
    fusion): its body lowered inline, node by node."""
    problems = []
    body = node.subgraphs["body"]
    sub = _lower_body(ctx, body, ins, problems)
    if problems:
        raise NotExportable("; ".join(f"{n} at {s}: {r}" for n, s, r in problems))
    ctx.nodes.extend(sub.nodes)
    outs = []
    for v in body.outputs:
        if getattr(v, "weak", False) or id(v) not in sub.names:
            outs.append(ctx.const(np.asarray(v.const, dtype=v.aval.dtype)))
        else:
            outs.append(sub.names[id(v)])
    return tuple(outs)


REGISTRY["cond"].onnx = _cond
REGISTRY["while_loop"].onnx = _while
REGISTRY["fused_elementwise"].onnx = _fused
