"""Graph -> Graph passes, each small, switchable and testable alone.

    fold          constant folding
    simplify      algebraic simplification (x*1, x+0, double transpose, reshape chains, ...)
    cse           common subexpression elimination
    dce           dead code elimination
    fuse          elementwise fusion into generated kernels
    plan_buffers  liveness, buffer reuse plan, planned peak memory

`optimize(graph, passes)` runs them on a copy (the traced graph stays as it was);
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


def optimize(graph, passes=DEFAULT, log=None):
    g = graph.copy()
    for name in passes:
        before = str(g) if log is not None else None
        g = PASSES[name](g)
        if log is not None:
            log.append((name, before, str(g)))
    return g


__all__ = ["fold", "simplify", "cse", "dce", "fuse", "plan_buffers", "optimize", "PASSES", "DEFAULT", "EXPORT"]
