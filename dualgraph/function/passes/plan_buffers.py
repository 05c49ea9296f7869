"""Buffer planning: liveness of every intermediate and a reuse plan (a dead buffer of the same byte
size is reused), so the graph can report its planned peak memory.

Writes `graph.meta["buffer_plan"]` (id(value) -> slot), `graph.meta["buffer_slots"]` (slot sizes in
bytes) and `graph.meta["planned_peak_bytes"]` (largest sum of live intermediates, outputs included,
inputs and constants excluded). Symbolic dims count as 1 in the sizes (the report is per unit of
the symbolic dim). The executor realizes the plan by dropping each value after its last use, and
fused kernels compute in place in a dead input's buffer.
"""
import numpy as np


def _nbytes(aval):
    n = 1
    for d in aval.shape:
        n *= d if isinstance(d, int) else 1
    return n * aval.dtype.itemsize


def plan_buffers(graph):
    last = {}
    for k, node in enumerate(graph.nodes):
        for v in node.inputs:
            if v is not None and v.const is None:
                last[id(v)] = k
    outs = {id(v) for v in graph.outputs}
    free = {}          # nbytes -> [slot]
    slots = []
    plan = {}
    live = peak = 0
    for k, node in enumerate(graph.nodes):
        for o in node.outputs:
            nb = _nbytes(o.aval)
            if node.op.view:
                plan[id(o)] = None  # a view shares its input's buffer
                continue
            pool = free.get(nb)
            if pool:
                slot = pool.pop()
            else:
                slot = len(slots)
                slots.append(nb)
            plan[id(o)] = slot
            live += nb
        peak = max(peak, live)
        for v in set(id(v) for v in node.inputs if v is not None):
            if last.get(v) == k and v not in outs and plan.get(v) is not None:
                slot = plan[v]
                free.setdefault(slots[slot], []).append(slot)
                live -= slots[slot]
        for o in node.outputs:
            if id(o) not in last and id(o) not in outs and plan.get(id(o)) is not None:
                slot = plan[id(o)]
                free.setdefault(slots[slot], []).append(slot)
                live -= slots[slot]
    graph.meta["buffer_plan"] = plan
    graph.meta["buffer_slots"] = slots
    graph.meta["planned_peak_bytes"] = int(peak)
    graph.meta["unplanned_bytes"] = int(sum(_nbytes(o.aval) for n in graph.nodes for o in n.outputs
                                            if not n.op.view))
    _ = np
    return graph
