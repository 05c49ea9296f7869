"""Elementwise fusion: a chain of elementwise nodes of one shape becomes one `fused_elementwise` node
whose `body` subgraph holds the chain; the executor runs it as one kernel (dualgraph.kernels.fused:
a generated C loop, generated numpy ufunc calls, or a cupy ElementwiseKernel, all from the ops'
records). A group may have several outputs (a value also used outside it), as long as merging cannot
create a cycle; if the grouping would still make two groups depend on each other, the graph stays
unfused.
"""
import sys

from ...graph.ir import Graph, Node
from ...ops.kernels import FUSED


def _fusible(node):
    op = node.op
    if not op.elementwise or node.subgraphs or not op.pure or len(node.outputs) != 1:
        return False
    out = node.outputs[0].aval
    return all(isinstance(d, int) or d is not None for d in out.shape) and out.ndim > 0


def fuse(graph, min_size=2):
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    group_of = {}
    groups = []
    taint = {}  # id(node) -> ids of groups it depends on through nodes outside them (merging would cycle)
    gdeps = {}  # id(group) -> ids of other groups its members depend on: a fused group is one node, so
    #             reading any of its outputs depends on what every member depends on
    for node in graph.nodes:
        deps = set()
        for v in node.inputs:
            if v is not None and v.producer is not None:
                deps |= taint.get(id(v.producer), set())
                g = group_of.get(id(v.producer))
                if g is not None:
                    deps.add(id(g))
                    deps |= gdeps.get(id(g), set())
        target = None
        if _fusible(node):
            for v in node.inputs:
                if v is None or v.producer is None or id(v.producer) not in group_of:
                    continue
                g = group_of[id(v.producer)]
                if v.aval.shape != node.outputs[0].aval.shape:
                    continue
                # no other input may reach g through a node outside it (or through another group)
                if all(u is None or u.producer is None or group_of.get(id(u.producer)) is g
                       or (id(g) not in taint.get(id(u.producer), set())
                           and id(g) not in gdeps.get(id(group_of.get(id(u.producer))), ()))
                       for u in node.inputs):
                    target = g
                    break
            if target is None:
                target = []
                groups.append(target)
            target.append(node)
            group_of[id(node)] = target
            deps.discard(id(target))
            gdeps.setdefault(id(target), set()).update(deps)
        taint[id(node)] = deps
    fused_ids = {}
    for g in groups:
        # a group nothing outside reads is dead code (left to dce, which may be switched off): unfused
        members = {id(n) for n in g}
        read = any(id(o) in outputs or any(id(u) not in members for u in users.get(id(o), ()))
                   for n in g for o in n.outputs)
        if len(g) >= min_size and read:
            for n in g:
                fused_ids[id(n)] = g
    if not fused_ids:
        return graph
    orig = list(graph.nodes)
    new_nodes, done = [], set()
    for node in graph.nodes:
        g = fused_ids.get(id(node))
        if g is None:
            new_nodes.append(node)
            continue
        if id(g[0]) in done:
            continue
        done.add(id(g[0]))
        new_nodes.append(_make_fused(g, users, outputs))
    # a fused node must come after all its inputs' producers: place it at its last member's position
    try:
        graph.nodes = _reorder(new_nodes)
    except _Cycle:
        # the grouping made two groups depend on each other (a dependency it did not see): run unfused
        for n in orig:
            for o in n.outputs:
                o.producer = n
        graph.nodes = orig
    return graph


class _Cycle(Exception):
    pass


def _make_fused(group, users, outputs):
    members = {id(n) for n in group}
    produced = {id(o) for n in group for o in n.outputs}
    body = Graph("body")
    ext, m = [], {}
    for n in group:
        for v in n.inputs:
            if v is None or v.const is not None or id(v) in produced or id(v) in m:
                continue
            m[id(v)] = body.add_input(v.aval)
            ext.append(v)
    outs = []
    for n in group:
        ins = [m.get(id(v), v) if v is not None else None for v in n.inputs]
        bn = body.add_node(n.op, ins, n.attrs, [o.aval for o in n.outputs], n.source)
        for o, bo in zip(n.outputs, bn.outputs):
            m[id(o)] = bo
            if id(o) in outputs or any(id(u) not in members for u in users.get(id(o), ())):
                outs.append(o)
    body.outputs = [m[id(o)] for o in outs]
    node = Node(FUSED, ext, {}, outs, group[-1].source, {"body": body})
    for o in outs:
        o.producer = node
    return node


def _reorder(nodes):
    """Topological order (stable) after fusion moved members into one node."""
    produced_by = {id(o): n for n in nodes for o in n.outputs}
    order, state = [], {}

    def visit(n):
        s = state.get(id(n))
        if s == 2:
            return
        state[id(n)] = 1
        for v in n.inputs:
            if v is not None and id(v) in produced_by:
                p = produced_by[id(v)]
                if state.get(id(p)) == 1:
                    raise _Cycle()
                if state.get(id(p)) != 2:
                    visit(p)
        state[id(n)] = 2
        order.append(n)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(nodes) + 1000))
    try:
        for n in nodes:
            visit(n)
    finally:
        sys.setrecursionlimit(limit)
    return order
