"""Elementwise fusion: a chain of elementwise nodes becomes one `fused_elementwise` node whose `body`
subgraph holds the chain; the executor runs it as one kernel (dualgraph.kernels.fused: a generated C
loop, generated numpy ufunc calls, or a cupy ElementwiseKernel, all from the ops' records). A group may
have several outputs (a value also used outside it), as long as merging cannot create a cycle; if the
grouping would still make two groups depend on each other, the graph stays unfused.

Values of a group may have different shapes that broadcast to the group's (its largest member's): the
rstd of shape (N, 1) and the weight of shape (C,) in `(x - mean) * rstd * w + b` join the (N, C) chain,
and the C loop computes each value in the loop over the dims it varies in. A reduction (a record with
`reduce`: sum, max, min) joins the group that produces its operand when nothing else reads that operand:
the group becomes a `fused_reduce` node and the operand is accumulated where it is computed, never
stored. All reductions of a group reduce one set of axes of the group's full shape; nothing in the group
reads a reduction's result, and the group's shape is fixed once it holds one. A mean is a sum and a
division by the count, which stays after the node.
"""
import sys

from ...graph.ir import Graph, Node
from ...ops.kernels import FUSED, FUSED_REDUCE


def _fusible(node):
    op = node.op
    if not op.elementwise or node.subgraphs or not op.pure or len(node.outputs) != 1:
        return False
    out = node.outputs[0].aval
    return all(isinstance(d, int) or d is not None for d in out.shape) and out.ndim > 0


def _reducible(node):
    """A reduction the kernels accumulate: one tensor operand, the result in its dtype."""
    op = node.op
    if not op.reduce or node.subgraphs or not op.pure or len(node.outputs) != 1 or len(node.inputs) != 1:
        return False
    x = node.inputs[0]
    return (x is not None and not x.weak and x.const is None and x.aval.ndim > 0
            and node.outputs[0].aval.dtype == x.aval.dtype)


def _covers(big, small):
    """`small` broadcasts to `big` (a symbolic dim only against itself)."""
    if len(small) > len(big):
        return False
    return all(s == 1 or s == b for s, b in zip(small[::-1], big[::-1]))


def _outer(small, big):
    """`small` varies only along leading dims of `big` (it is constant along the trailing ones): a value of
    that shape is computed once per step of the loops over those dims. A value varying along an inner dim
    only (a (C,) row of an (N, C) loop) would be recomputed for every outer step: it stays out."""
    small = (1,) * (len(big) - len(small)) + tuple(small)
    k = len(big)
    while k and small[k - 1] == 1:
        k -= 1
    return tuple(small[:k]) == tuple(big[:k])


def _axes(node):
    axes = node.attrs.get("axes")
    nd = node.inputs[0].aval.ndim
    return tuple(range(nd)) if axes is None else tuple(sorted(a % nd for a in axes))


class _Loop:
    """What a group's kernel loops over: the shape of its largest member, the axes its reductions reduce
    (None before it holds one) and the shapes of all its members."""

    def __init__(self, shape):
        self.shape, self.axes, self.shapes = shape, None, {shape}


def fuse(graph, min_size=2):
    users = graph.users()
    outputs = {id(v) for v in graph.outputs}
    group_of = {}
    groups = []
    loop_of = {}  # id(group) -> its _Loop
    reduced = set()  # ids of values computed by a reduction inside a group
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
        elementwise = _fusible(node)
        if elementwise or _reducible(node):
            out = tuple(node.outputs[0].aval.shape)
            # a group of the node's own shape first: joining a smaller chain's group instead would leave
            # the node's own chain split in two
            cands = [v for v in node.inputs if v is not None and v.producer is not None and id(v.producer) in group_of]
            cands.sort(key=lambda v: loop_of[id(group_of[id(v.producer)])].shape != out)
            for v in cands:
                g = group_of[id(v.producer)]
                loop = loop_of[id(g)]
                if elementwise:
                    if any(u is not None and id(u) in reduced and group_of.get(id(u.producer)) is g
                           for u in node.inputs):
                        continue  # a reduction's result is complete only after the group's loop
                    if loop.axes is not None:
                        if out != loop.shape:
                            continue  # the loop of a group with a reduction keeps its shape
                    elif _covers(loop.shape, out):
                        if not _outer(out, loop.shape):
                            continue
                    elif not (_covers(out, loop.shape) and all(_outer(s, out) for s in loop.shapes)):
                        continue
                else:
                    if (loop.axes not in (None, _axes(node)) or tuple(v.aval.shape) != loop.shape
                            or id(v) in outputs or len(users.get(id(v), ())) != 1):
                        continue  # reduced over other axes, a part of the loop, or read elsewhere too
                # no other input may reach g through a node outside it (or through another group)
                if all(u is None or u.producer is None or group_of.get(id(u.producer)) is g
                       or (id(g) not in taint.get(id(u.producer), set())
                           and id(g) not in gdeps.get(id(group_of.get(id(u.producer))), ()))
                       for u in node.inputs):
                    target = g
                    break
            if target is None:
                if not elementwise:
                    taint[id(node)] = deps
                    continue
                target = []
                groups.append(target)
                loop_of[id(target)] = _Loop(out)
            elif elementwise:
                loop = loop_of[id(target)]
                loop.shapes.add(out)
                if _covers(out, loop.shape):
                    loop.shape = out
            else:
                loop_of[id(target)].axes = _axes(node)
                reduced.add(id(node.outputs[0]))
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
    op = FUSED_REDUCE if any(n.op.reduce for n in group) else FUSED
    node = Node(op, ext, {}, outs, group[-1].source, {"body": body})
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
