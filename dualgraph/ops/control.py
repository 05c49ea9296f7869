"""Structured control flow as ops: `cond` and `while_loop`, whose bodies are subgraphs.

    cond:        inputs (pred, *operands, *captured); subgraphs then/else: (*operands, *captured) -> outs
    while_loop:  inputs (*state, *captured);          subgraphs cond: (*state, *captured) -> (pred,),
                                                       body: (*state, *captured) -> state

Values a branch reads from the enclosing trace are lifted into extra operands ("captured"). Only a
trace makes these nodes (dualgraph.function.control): eagerly dg.cond and dg.while_loop run Python.
Their forwards run compiled subgraphs and the vjp of cond differentiates its branches, so both reach
the graph layer above the ops (dualgraph.function.executor, .autodiff) when they run.
"""
from ..errors import AutogradError
from .registry import defop


def _cond_infer(pred, *operands, subgraphs=None):
    return tuple(v.aval for v in subgraphs["then"].outputs)


def _run_sub(graph, arrays):
    from ..function.executor import compiled_subgraph
    return compiled_subgraph(graph)(*arrays)


def _cond_forward(xp, pred, *operands, subgraphs=None):
    branch = subgraphs["then"] if bool(pred) else subgraphs["else"]
    return tuple(_run_sub(branch, operands))


def _cond_vjp(ctx, g):
    """cond of the branches' backward graphs (each recomputes its branch forward)."""
    from ..function.autodiff import joint_graph
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


COND = defop("cond", _cond_forward, _cond_infer, _cond_vjp, pure=True, foldable=False, n_out=-1,
             extra={"subgraphs": True})


def _while_infer(*state, subgraphs=None):
    return tuple(v.aval for v in subgraphs["body"].outputs)


def _while_forward(xp, *state, subgraphs=None):
    from ..function.executor import compiled_subgraph
    n = len(subgraphs["body"].outputs)
    cond_fn, body_fn = compiled_subgraph(subgraphs["cond"]), compiled_subgraph(subgraphs["body"])
    state, extra = list(state[:n]), list(state[n:])
    while bool(cond_fn(*state, *extra)[0]):
        state = list(body_fn(*state, *extra))
    return tuple(state)


def _while_vjp(ctx, g):
    raise AutogradError("dg.while_loop is not differentiable (its trip count is only known at run time); "
                        "use dg.fori_loop with Python bounds, which unrolls and differentiates")


WHILE = defop("while_loop", _while_forward, _while_infer, _while_vjp, foldable=False, n_out=-1,
              extra={"subgraphs": True})
