"""Algebraic simplification: x*1, x+0, x-0, x/1, --x, x**1, double transpose, reshape chains,
casts to the same dtype, and scalar constants gathered (c1*(c2*x) -> (c1*c2)*x).

Each rule only fires when the result keeps the node's exact shape and dtype, so callers never see
a difference except in rounding of gathered constants.
"""
import numpy as np

from ...graph.avals import Aval
from ...graph.ir import Node, Value
from ...ops.infer import broadcast_shapes
from ...ops.registry import REGISTRY


def _is_scalar(v, value=None):
    if v is None or not v.weak:
        return False
    return value is None or (v.const == value and not isinstance(v.const, bool))


def _same(v, node):
    o = node.outputs[0]
    return v is not None and v.aval == o.aval


SMALL_K = 32


def _swap(v, producers, emit, node):
    """v with its last two axes swapped, reusing a transpose that produced it."""
    nd = v.aval.ndim
    axes = tuple(range(nd - 2)) + (nd - 1, nd - 2)
    p = producers.get(id(v))
    if p is not None and p.op.name == "transpose" and tuple(p.attrs["axes"]) == axes:
        return p.inputs[0]
    shape = v.aval.shape
    return emit("transpose", [v], {"axes": axes}, Aval(shape[:-2] + (shape[-1], shape[-2]), v.aval.dtype),
                node.source)


def _scalars_for_fills(node, producers):
    """An elementwise operand made by full_like(_, c) becomes the scalar c when that keeps the
    node's shape and dtype (where(m, g, zeros_like(g)) -> where(m, g, 0))."""
    out = node.outputs[0].aval
    ins = list(node.inputs)
    for i, v in enumerate(ins):
        p = producers.get(id(v)) if v is not None else None
        if p is None or p.op.name != "full_like" or v.aval.dtype != out.dtype:
            continue
        c = p.attrs["value"]
        if not isinstance(c, (int, float)) or isinstance(c, bool):
            continue
        if isinstance(c, float) and out.dtype.kind != "f" or out.dtype.kind == "b":
            continue  # a Python float with an int tensor (an int with a bool one) promotes to float (int)
        rest = [u.aval.shape for j, u in enumerate(ins) if j != i and u is not None and not u.weak]
        if not rest or tuple(broadcast_shapes("simplify", *rest)) != tuple(out.shape):
            continue
        # a weak scalar takes its dtype from a tensor operand: one of the node's dtype must remain
        # (where(m, zeros_like(g), zeros_like(g)) -> where(m, 0, 0) computed int64, not float32)
        if not any(j != i and u is not None and not u.weak and u.aval.dtype == out.dtype
                   and not (node.op.name == "where" and j == 0) for j, u in enumerate(ins)):
            continue
        if node.op.name == "where" and i == 0:
            continue
        ins[i] = Value(Aval((), np.result_type(c)), const=c, weak=True)
    return ins


def simplify(graph):
    repl = {}
    producers = {}
    users = graph.users()
    nodes = []

    def emit(op_name, inputs, attrs, aval, source):
        n = Node(REGISTRY[op_name], inputs, attrs, [], source)
        n.outputs = [Value(aval, producer=n)]
        nodes.append(n)
        producers[id(n.outputs[0])] = n
        return n.outputs[0]

    for node in graph.nodes:
        node.inputs = [repl.get(id(v), v) if v is not None else None for v in node.inputs]
        if node.op.elementwise and node.op.name != "cast":
            node.inputs = _scalars_for_fills(node, producers)
        name, ins, attrs = node.op.name, node.inputs, node.attrs
        out = None
        if name == "mul" and len(ins) == 2:
            a, b = ins
            if _is_scalar(b, 1) and _same(a, node):
                out = a
            elif _is_scalar(a, 1) and _same(b, node):
                out = b
            else:
                # gather scalars: c1 * (c2 * x) -> (c1*c2) * x
                s, t = (a, b) if _is_scalar(a) else (b, a) if _is_scalar(b) else (None, None)
                p = producers.get(id(t)) if t is not None else None
                if (p is not None and p.op.name == "mul" and len(users.get(id(t), ())) == 1
                        and isinstance(s.const, float)):
                    pa, pb = p.inputs
                    ps, pt = (pa, pb) if _is_scalar(pa) else (pb, pa) if _is_scalar(pb) else (None, None)
                    if ps is not None and isinstance(ps.const, (int, float)) and not isinstance(ps.const, bool) \
                            and pt.aval.dtype == node.outputs[0].aval.dtype:
                        c = float(s.const) * float(ps.const)
                        if c == 1.0 and _same(pt, node):
                            out = pt
                        else:
                            node.inputs = [pt, Value(s.aval, const=c, weak=True)]
        elif name in ("add", "sub") and len(ins) == 2:
            a, b = ins
            if _is_scalar(b, 0) and _same(a, node):
                out = a
            elif name == "add" and _is_scalar(a, 0) and _same(b, node):
                out = b
        elif name == "div" and _is_scalar(ins[1], 1) and _same(ins[0], node):
            out = ins[0]
        elif name == "pow" and _is_scalar(ins[1], 1) and _same(ins[0], node):
            out = ins[0]
        elif name == "neg":
            p = producers.get(id(ins[0]))
            if p is not None and p.op.name == "neg" and _same(p.inputs[0], node):
                out = p.inputs[0]
        elif name == "cast" and ins[0].aval.dtype == attrs["dtype"]:
            out = ins[0]
        elif name == "copy" and attrs.get("stop_gradient") and _same(ins[0], node):
            out = ins[0]  # x.detach() in a trace: only autodiff (which ran on the traced graph) needed it
        elif name == "transpose":
            axes = attrs["axes"]
            nd = len(axes)
            swap = nd >= 2 and tuple(axes) == tuple(range(nd - 2)) + (nd - 1, nd - 2)
            p = producers.get(id(ins[0]))
            if tuple(axes) == tuple(range(len(axes))):
                out = ins[0]
            elif (swap and p is not None and p.op.name == "matmul" and len(users.get(id(ins[0]), ())) == 1
                  and all(v.aval.ndim == nd for v in p.inputs)
                  and isinstance(p.inputs[0].aval.shape[-1], int) and p.inputs[0].aval.shape[-1] <= SMALL_K):
                # (a @ b).T -> b.T @ a.T: the result comes out contiguous in the layout wanted, so the
                # elementwise ops after it (an optimizer update) run on contiguous memory. Only for a small
                # contraction dim: measured with OpenBLAS, a big one is faster in the original orientation.
                a, b = p.inputs
                node.op, node.inputs, node.attrs = REGISTRY["matmul"], [_swap(b, producers, emit, node),
                                                                         _swap(a, producers, emit, node)], {}
            else:
                if p is not None and p.op.name == "transpose":
                    inner = p.attrs["axes"]
                    comp = tuple(inner[a] for a in axes)
                    if comp == tuple(range(len(comp))):
                        out = p.inputs[0]
                    else:
                        node.inputs, node.attrs = [p.inputs[0]], {"axes": comp}
        elif name == "reshape":
            p = producers.get(id(ins[0]))
            if tuple(attrs["shape"]) == tuple(ins[0].aval.shape):
                out = ins[0]
            elif (p is not None and p.op.name == "sum" and p.attrs["keepdims"] and p.attrs["axes"] is not None
                  and len(users.get(id(ins[0]), ())) == 1
                  and tuple(attrs["shape"]) == tuple(d for i, d in enumerate(p.inputs[0].aval.shape)
                                                     if i not in p.attrs["axes"])):
                # sum(keepdims=True) then reshape away the kept axes -> sum(keepdims=False)
                node.op, node.inputs, node.attrs = p.op, [p.inputs[0]], {"axes": p.attrs["axes"], "keepdims": False}
            elif p is not None and p.op.name == "reshape":
                src = p.inputs[0]
                if tuple(attrs["shape"]) == tuple(src.aval.shape):
                    out = src
                else:
                    node.inputs = [src]
        if out is not None:
            repl[id(node.outputs[0])] = out
            continue
        nodes.append(node)
        for o in node.outputs:
            producers[id(o)] = node
    graph.nodes = nodes
    graph.outputs = [repl.get(id(v), v) for v in graph.outputs]
    return graph
