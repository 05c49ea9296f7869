"""Lowerings of structured control flow: `cond` -> If, `while_loop` -> Loop. They lower their bodies
through the context (`ctx.lower_body`), like every other lowering through `ctx` alone.

IR layout (dualgraph.function.control):
    cond:       inputs (pred, *operands, *captured); subgraphs then/else: (*operands, *captured) -> outs
    while_loop: inputs (*state, *captured); subgraphs cond: (*state, *captured) -> (pred,),
                body: (*state, *captured) -> state
ONNX subgraphs read outer values by name, so subgraph inputs are bound to the names of the node's
operands; only Loop's carried state gets fresh body inputs.
"""
import numpy as np

from ..ops.registry import REGISTRY


def _cond_onnx(ctx, node, pred, *operands):
    p = ctx.arg(node.inputs[0], pred, np.bool_)
    if node.inputs[0].aval.ndim:
        p = ctx.emit("Reshape", [p, ctx.i64([])])
    problems, branches = [], {}
    for key in ("then", "else"):
        g = node.subgraphs[key]
        sub = ctx.lower_body(g, operands, problems)
        outs = sub.produced(sub.output_names(g), f"{key}_out")
        infos = [ctx.value_info(o, v.aval.dtype, v.aval.shape) for o, v in zip(outs, g.outputs)]
        branches[key] = ctx.graph_proto(sub.nodes, f"{key}_branch", [], infos)
    ctx.refuse(problems)
    outs = ctx.emit("If", [p], n_out=len(node.outputs), hint="if_out", then_branch=branches["then"],
                    else_branch=branches["else"])
    return tuple(outs) if len(node.outputs) > 1 else outs


def _while_onnx(ctx, node, *ins):
    cond_g, body_g = node.subgraphs["cond"], node.subgraphs["body"]
    n = len(body_g.outputs)
    state = [ctx.arg(v, s, v.aval.dtype) if not isinstance(s, str) else s for v, s in zip(node.inputs[:n], ins[:n])]
    captured = list(ins[n:])
    problems = []

    def test(c, bindings):
        """The loop condition on `bindings`, lowered into context c, as a bool scalar."""
        t = c.lower_body(cond_g, bindings + captured, problems)
        c.nodes.extend(t.nodes)
        (name,) = t.output_names(cond_g)
        pred = cond_g.outputs[0].aval
        name = c.cast(name, pred.dtype, np.bool_)
        return c.emit("Reshape", [name, c.i64([])]) if pred.ndim else name

    first = test(ctx, state)   # the first test runs in the enclosing graph
    # body: (iteration, condition, *state) -> (condition, *state)
    it, c_in = ctx.fresh("loop_iter"), ctx.fresh("loop_cond_in")
    carried = [ctx.fresh(f"loop_state{k}") for k in range(n)]
    body = ctx.lower_body(body_g, carried + captured, problems)
    new_state = body.output_names(body_g)
    outs = body.produced([test(body, new_state)] + new_state, "loop_out")
    ctx.refuse(problems)
    b_in = [ctx.value_info(it, np.int64, []), ctx.value_info(c_in, np.bool_, [])] + \
        [ctx.value_info(c, v.aval.dtype, [None] * v.aval.ndim) for c, v in zip(carried, body_g.outputs)]
    b_out = [ctx.value_info(outs[0], np.bool_, [])] + \
        [ctx.value_info(o, v.aval.dtype, [None] * v.aval.ndim) for o, v in zip(outs[1:], body_g.outputs)]
    res = ctx.emit("Loop", ["", first] + state, n_out=n, hint="loop_out",
                   body=ctx.graph_proto(body.nodes, "loop_body", b_in, b_out))
    return tuple(res) if n > 1 else res


REGISTRY["cond"].onnx = _cond_onnx
REGISTRY["while_loop"].onnx = _while_onnx
