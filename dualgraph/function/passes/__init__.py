"""Graph -> Graph passes, each small, switchable and testable alone.

    fold           constant folding
    simplify       algebraic simplification (x*1, x+0, double transpose, reshape chains, ...)
    cse            common subexpression elimination
    dce            dead code elimination
    lower_math     exact rewrites the kernels run faster (x**3 as products, 1 + tanh(u) through exp)
    fuse           elementwise chains into `fused_elementwise` nodes
    lower_kernels  kernel selection: node patterns into the kernel ops of dualgraph.ops.kernels

DEFAULT runs simplify and dce a second time after lower_math (scalars it exposes gather, nodes it
replaced go). `optimize(graph, passes)` runs them on a copy (the traced graph stays as it was), inside
the bodies of cond/while_loop/fori_loop too (a body is a closed graph: its inputs and outputs stay as
they are); `optimize(graph, passes, log=[])` also appends (name, before_text, after_text) per pass.
"""
from .cse import cse
from .dce import dce
from .fold import fold
from .fuse import fuse
from .lower_kernels import lower_kernels
from .lower_math import lower_math
from .simplify import simplify

PASSES = {"fold": fold, "simplify": simplify, "cse": cse, "dce": dce, "lower_math": lower_math, "fuse": fuse,
          "lower_kernels": lower_kernels}
DEFAULT = ("fold", "simplify", "cse", "dce", "lower_math", "simplify", "dce", "fuse", "lower_kernels")
# what the ONNX exporter reads: after folding/CSE/DCE, before the kernel rewrites
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
        # control flow (a fused kernel's body is not a program)
        if node.subgraphs and not node.op.extra.get("kernel_body"):
            for body in node.subgraphs.values():
                if "device" in g.meta:
                    body.meta.setdefault("device", g.meta["device"])
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


__all__ = ["fold", "simplify", "cse", "dce", "lower_math", "fuse", "lower_kernels", "optimize", "PASSES",
           "DEFAULT", "EXPORT"]
