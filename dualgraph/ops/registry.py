"""The op record: one place holding everything every mode needs to know about an op.

An `Op` carries
  forward(xp, *arrays, **attrs)   the computation on a backend namespace (numpy or cupy)
  infer(*avals, **attrs)          shape/dtype inference on abstract values (tracing, static graphs)
  vjp(ctx, g)                     the backward rule, written with dualgraph ops (so it differentiates again)
  traits                          elementwise / pure / commutative / foldable / view ...
  onnx                            the ONNX lowering (filled in by the export layer)
Composite ops (softmax, mean, losses) are plain functions of primitives and need no record.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

REGISTRY = {}


@dataclass(eq=False)
class Op:
    name: str
    forward: Callable
    infer: Callable
    vjp: Optional[Callable]            # None: not differentiable (comparisons, argmax, ...)
    elementwise: bool = False          # output is a pointwise function of broadcast inputs
    broadcasting: bool = False         # inputs broadcast against each other (vjp outputs are summed back)
    pure: bool = True                  # no randomness / side effects: CSE and folding may merge it
    commutative: bool = False
    foldable: bool = True              # constant folding may precompute it
    view: bool = False                 # output may share memory (and the version counter) with input 0
    saves_output: bool = False         # vjp reads ctx.out, so the forward result is kept
    n_out: int = 1
    ufunc: str = ""                    # forward is exactly this numpy/cupy ufunc: the operator fast path calls it
    grad_name: str = ""
    onnx: Any = None                   # lowering rule, attached by dualgraph.onnx
    doc: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.grad_name:
            self.grad_name = "".join(p.capitalize() for p in self.name.split("_")) + "Backward0"

    def __repr__(self):
        return f"<op {self.name}>"


def defop(name, forward, infer, vjp, **traits):
    """Define and register one primitive op."""
    if name in REGISTRY:
        raise ValueError(f"op {name!r} is defined twice")
    op = Op(name=name, forward=forward, infer=infer, vjp=vjp, **traits)
    REGISTRY[name] = op
    return op
