"""Structured control flow as ops: `cond` and `while_loop`, whose bodies are subgraphs.

    cond:        inputs (pred, *operands, *captured); subgraphs then/else: (*operands, *captured) -> outs
    while_loop:  inputs (*state, *captured);          subgraphs cond: (*state, *captured) -> (pred,),
                                                       body: (*state, *captured) -> state

Values a branch reads from the enclosing trace are lifted into extra operands ("captured"). Only a
trace makes these nodes (dualgraph.function.control): eagerly dg.cond and dg.while_loop run Python.
Their forwards run compiled subgraphs (dualgraph.function.executor) and the vjp of cond differentiates
its branches (dualgraph.function.autodiff): the one op module that uses the graph layer.
"""
import numpy as np

from ..errors import AutogradError
from ..function.autodiff import joint_graph
from ..function.executor import compiled_subgraph
from .registry import defop


def _cond_infer(pred, *operands, subgraphs=None):
    return tuple(v.aval for v in subgraphs["then"].outputs)


def _run_sub(graph, arrays):
    return compiled_subgraph(graph)(*arrays)


def _cond_forward(xp, pred, *operands, subgraphs=None):
    branch = subgraphs["then"] if bool(pred) else subgraphs["else"]
    return tuple(_run_sub(branch, operands))


def _cond_vjp(ctx, g):
    """cond of the branches' backward graphs (each recomputes its branch forward)."""
    gs = g if isinstance(g, tuple) else (g,)
    pred, operands = ctx.inputs[0], ctx.inputs[1:]
    wrt = [i for i, t in enumerate(operands) if ctx.needs_input_grad[i + 1]]
    if not wrt:
        return (None,) * len(ctx.inputs)
    branches = {}
    diffs = {}
    for key in ("then", "else"):
        joint, diff = joint_graph(ctx.subgraphs[key], wrt)
        diffs[key] = diff
        branches[key] = joint
    # both branches must take the same cotangents: use the outputs differentiable in either
    diff = sorted(set(diffs["then"]) | set(diffs["else"]))
    for key in ("then", "else"):
        if diffs[key] != diff:
            joint, _ = joint_graph(ctx.subgraphs[key], wrt, force_diff=diff)
            branches[key] = joint
        # a branch's joint outputs are (y..., dx...): keep only the grads
        j = branches[key]
        j.outputs = j.outputs[len(ctx.subgraphs[key].outputs):]
    ct = [gs[i] for i in diff]
    outs = ctx.tracer.apply(COND, (pred, *operands, *ct), {}, subgraphs=branches)
    outs = outs if isinstance(outs, tuple) else (outs,)
    result = [None] * len(ctx.inputs)
    for k, i in enumerate(wrt):
        result[i + 1] = outs[k]
    return tuple(result)


def _cond_onnx(ctx, node, pred, *operands):
    """ONNX If. Its branches read outer values by name: their inputs are bound to the operands' names."""
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


COND = defop("cond", _cond_forward, _cond_infer, _cond_vjp, pure=True, foldable=False, n_out=-1,
             extra={"subgraphs": True}, onnx=_cond_onnx)


def _while_infer(*state, subgraphs=None):
    return tuple(v.aval for v in subgraphs["body"].outputs)


def _while_forward(xp, *state, subgraphs=None):
    n = len(subgraphs["body"].outputs)
    cond_fn, body_fn = compiled_subgraph(subgraphs["cond"]), compiled_subgraph(subgraphs["body"])
    state, extra = list(state[:n]), list(state[n:])
    while bool(cond_fn(*state, *extra)[0]):
        state = list(body_fn(*state, *extra))
    return tuple(state)


def _while_vjp(ctx, g):
    raise AutogradError("dg.while_loop is not differentiable (its trip count is only known at run time); "
                        "use dg.fori_loop with Python bounds, which unrolls and differentiates")


def _while_onnx(ctx, node, *ins):
    """ONNX Loop: the carried state gets fresh body inputs; captured values are read by name."""
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


WHILE = defop("while_loop", _while_forward, _while_infer, _while_vjp, foldable=False, n_out=-1,
              extra={"subgraphs": True}, onnx=_while_onnx)
