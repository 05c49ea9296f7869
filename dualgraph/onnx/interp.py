"""A reference interpreter for the graph IR: runs `op.forward(numpy, ...)` node by node.

The oracle that export verification compares onnxruntime against, node by node, to find the first
node whose output diverges. Symbolic dims in attributes (`reshape` to `(B, 12)`) are resolved from
the shapes of the inputs actually fed.
"""
import numpy as np

from ..ops.infer import Dim
from .context import SymDim


def resolve_dims(obj, env):
    """Replace Dims/SymDims inside attrs (tuples, lists, slices) by their values in `env`."""
    if isinstance(obj, SymDim):
        n = 1
        for f in obj.factors:
            n *= env[f]
        return n * obj.num // obj.den
    if isinstance(obj, Dim) and hasattr(obj, "evaluate"):   # @dg.function's DimExpr
        return int(obj.evaluate(env))
    if isinstance(obj, Dim):
        return env[obj]
    if isinstance(obj, dict):
        return {k: resolve_dims(v, env) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(resolve_dims(o, env) for o in obj)
    if isinstance(obj, list):
        return [resolve_dims(o, env) for o in obj]
    if isinstance(obj, slice):
        return slice(resolve_dims(obj.start, env), resolve_dims(obj.stop, env), resolve_dims(obj.step, env))
    return obj


def dim_env(sym_input_shapes, arrays):
    """{Dim: size} read off the arrays fed for inputs whose (symbolic) shapes are given."""
    env = {}
    for shape, arr in zip(sym_input_shapes, arrays):
        for d, n in zip(shape, np.shape(arr)):
            if isinstance(d, Dim) and not isinstance(d, SymDim):
                env.setdefault(d, int(n))
    return env


def run_graph(graph, arrays, node_attrs=None, env=None, keep_all=False, scalars=None, uniform=None):
    """Outputs of `graph` on `arrays` (one per graph input); with keep_all also {id(Value): array}."""
    vals = {id(v): a for v, a in zip(graph.inputs, arrays)}
    node_attrs = node_attrs or {}
    env = {} if env is None else env

    def get(v):
        if v is None:
            return None
        if v.const is not None:
            if uniform and id(v) in uniform:
                shape, fill = uniform[id(v)]
                return np.full(resolve_dims(shape, env), fill, dtype=np.asarray(v.const).dtype)
            return v.const
        return vals[id(v)]

    for node in graph.nodes:
        attrs = resolve_dims(node_attrs.get(id(node), node.attrs), env)
        args = [get(v) for v in node.inputs]
        if scalars:
            for k in range(len(args)):
                d = scalars.get((id(node), k))
                if d is not None:
                    args[k] = resolve_dims(d, env)
        if node.op.name == "cond":
            branch = node.subgraphs["then" if bool(np.asarray(args[0]).reshape(-1)[0]) else "else"]
            outs = run_graph(branch, args[1:], node_attrs, env, scalars=scalars, uniform=uniform)
        elif node.op.name == "while_loop":
            body, test = node.subgraphs["body"], node.subgraphs["cond"]
            n = len(body.outputs)
            state, captured = list(args[:n]), list(args[n:])
            def again(state):
                out = run_graph(test, state + captured, node_attrs, env, scalars=scalars, uniform=uniform)
                return bool(np.asarray(out[0]).reshape(-1)[0])
            while again(state):
                state = run_graph(body, state + captured, node_attrs, env, scalars=scalars, uniform=uniform)
            outs = state
        else:
            out = node.op.forward(np, *args, **attrs)
            outs = out if node.op.n_out != 1 else (out,)
        for o, a in zip(node.outputs, outs):
            vals[id(o)] = np.asarray(a)
            for d, n in zip(o.aval.shape, np.shape(a)):   # symbols shape rules made along the way
                if isinstance(d, Dim) and not isinstance(d, SymDim) and not hasattr(d, "args"):
                    env.setdefault(d, int(n))
    result = [get(v) for v in graph.outputs]
    return (result, vals) if keep_all else result
