"""Graph -> Graph passes, each small, switchable and testable alone.

    fold          constant folding
    simplify      algebraic simplification (x*1, x+0, double transpose, reshape chains, ...)
    cse           common subexpression elimination
    dce           dead code elimination
    fuse          elementwise fusion into generated kernels
    plan_buffers  liveness, buffer reuse plan, planned peak memory

`optimize(graph, passes)` runs them on a copy (the traced graph stays as it was), inside the bodies
of cond/while_loop/fori_loop too (a body is a closed graph: its inputs and outputs stay as they are);
`optimize(graph, passes, log=[])` also appends (name, before_text, after_text) per pass.
"""
from .cse import cse
from .dce import dce
from .fold import fold
from .fuse import fuse
from .plan_buffers import plan_buffers
from .simplify import simplify

PASSES = {"fold": fold, "simplify": simplify, "cse": cse, "dce": dce, "fuse": fuse, "plan_buffers": plan_buffers}
DEFAULT = ("fold", "simplify", "cse", "dce", "fuse", "plan_buffers")
# what the ONNX exporter reads: after folding/CSE/DCE, before fusion
EXPORT = ("fold", "simplify", "cse", "dce")


def resolve(passes=None, disable=()):
    names = list(DEFAULT if passes is None else passes)
    for n in names:
        if n not in PASSES:
            raise ValueError(f"unknown pass {n!r}; passes are {', '.join(PASSES)}")
    for n in disable:
        if n not in PASSES:
            raise ValueError(f"unknown pass {n!r} in disable=; passes are {', '.join(PASSES)}")
    return tuple(n for n in names if n not in set(disable))


def _run(name, g):
    for node in g.nodes:
        if node.subgraphs and node.op.name != "fused_elementwise":  # control flow, not a fused kernel
            node.subgraphs = {k: _run(name, body) for k, body in node.subgraphs.items()}
    return PASSES[name](g)


def optimize(graph, passes=DEFAULT, log=None):
    g = graph.copy()
    for name in passes:
        before = str(g) if log is not None else None
        g = _run(name, g)
        if log is not None:
            log.append((name, before, str(g)))
    return g


__all__ = ["fold", "simplify", "cse", "dce", "fuse", "plan_buffers", "optimize", "PASSES", "DEFAULT", "EXPORT"]
