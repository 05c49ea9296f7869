"""Exact rewrites of elementwise math into forms the fused kernels run faster; each is exact in real
arithmetic, and the first two are bit-identical to what the ops compute:

    pow(x, 2), pow(x, 3)   ->  x * x, (x * x) * x      (pow's forward does the same multiplies; the
                                                     kernels are generated from mul's record)
    1 + tanh(u)            ->  2 / (1 + exp(-2 * u))   on float tensors: numpy's float32 exp is about
                                                     twice as fast as its tanh; the form is stable
                                                     (exp overflowing gives the right limit)
    mul(A, div(c, s))      ->  div(mul(A, c), s)      a single-use div by a scalar numerator, so
                                                     scalar factors gather (simplify runs next)

Runs before `fuse`, after the passes the ONNX exporter reads.
"""
import numpy as np

from ...graph.avals import Aval
from ...graph.ir import Node, Value
from ...ops.elementwise import ADD, DIV, EXP, MUL, POW, TANH


def _powers(graph):
    """pow(x, 2 or 3) of a float x by a Python int or float: the products pow's forward computes."""
    nodes = []
    for node in graph.nodes:
        x, p = (node.inputs + [None, None])[:2] if node.op is POW else (None, None)
        out = node.outputs[0].aval
        if (x is not None and p is not None and p.weak and not isinstance(p.const, bool) and p.const in (2, 3)
                and out.dtype.kind == "f" and not x.weak and x.aval == out):
            sq = Node(MUL, [x, x], {}, [], node.source)
            if p.const == 2:
                sq.outputs = node.outputs
            else:
                sq.outputs = [Value(out, producer=sq)]
                cube = Node(MUL, [sq.outputs[0], x], {}, node.outputs, node.source)
                nodes.append(sq)
                sq = cube
            for o in sq.outputs:
                o.producer = sq
            nodes.append(sq)
            continue
        nodes.append(node)
    graph.nodes = nodes
    return graph


def lower_math(graph):
    return _gather_scalar_divs(_one_plus_tanh(_powers(graph)))


def _one_plus_tanh(graph):
    """1 + tanh(u) -> 2 / (1 + exp(-2 * u)) where tanh(u) is read only there."""
    users = graph.users()
    returned = {id(v) for v in graph.outputs}  # a graph output is read outside: never single-use
    prod = {}
    nodes = []
    repl = {}
    for node in graph.nodes:
        node.inputs = [repl.get(id(v), v) if v is not None else None for v in node.inputs]
        if node.op is ADD and len(node.inputs) == 2:
            a, b = node.inputs
            one, t = (a, b) if (a is not None and a.weak and a.const == 1) else (b, a)
            p = prod.get(id(t)) if t is not None else None
            if (one is not None and one.weak and one.const == 1 and p is not None and p.op is TANH
                    and len(users.get(id(t), ())) == 1 and id(t) not in returned and t.aval.dtype.kind == "f"
                    and node.outputs[0].aval == t.aval):
                u = p.inputs[0]
                if u.aval.dtype == t.aval.dtype:
                    aval = t.aval
                    m = Node(MUL, [u, Value(Aval((), np.float64), const=-2.0, weak=True)], {}, [], p.source)
                    m.outputs = [Value(aval, producer=m)]
                    e = Node(EXP, [m.outputs[0]], {}, [], p.source)
                    e.outputs = [Value(aval, producer=e)]
                    s = Node(ADD, [e.outputs[0], Value(Aval((), np.int64), const=1, weak=True)], {}, [],
                             node.source)
                    s.outputs = [Value(aval, producer=s)]
                    d = Node(DIV, [Value(Aval((), np.float64), const=2.0, weak=True), s.outputs[0]], {}, [],
                             node.source)
                    d.outputs = [node.outputs[0]]
                    node.outputs[0].producer = d
                    nodes.remove(p)
                    nodes.extend([m, e, s, d])
                    for n in (m, e, s, d):
                        prod[id(n.outputs[0])] = n
                    continue
        nodes.append(node)
        for o in node.outputs:
            prod[id(o)] = node
    graph.nodes = nodes
    return graph


def _gather_scalar_divs(graph):
    """mul(A, div(c, s)) -> div(mul(A, c), s) when the div is single-use: lets scalars gather."""
    returned = {id(v) for v in graph.outputs}
    users = graph.users()
    prod = {id(o): n for n in graph.nodes for o in n.outputs}
    out_nodes = []
    for node in graph.nodes:
        if node.op is MUL and len(node.inputs) == 2:
            a, b = node.inputs
            for x, y in ((a, b), (b, a)):
                p = prod.get(id(y)) if y is not None else None
                if (p is not None and p.op is DIV and p.inputs[0] is not None and p.inputs[0].weak
                        and len(users.get(id(y), ())) == 1 and id(y) not in returned and x is not None
                        and not x.weak
                        and x.aval == node.outputs[0].aval and y.aval == node.outputs[0].aval):
                    c, s = p.inputs
                    m = Node(MUL, [x, c], {}, [], node.source)
                    m.outputs = [Value(x.aval, producer=m)]
                    p.inputs = [m.outputs[0], s]
                    p.outputs[0].producer = p
                    # p now computes x*c/s, the value this mul produced
                    out_nodes.remove(p)
                    out_nodes.extend([m, p])
                    repl_out = node.outputs[0]
                    p.outputs = [repl_out]
                    repl_out.producer = p
                    break
            else:
                out_nodes.append(node)
            continue
        out_nodes.append(node)
    graph.nodes = out_nodes
    return graph
