"""The op record: one place holding everything every mode needs to know about an op.

An `Op` carries
  forward(xp, *arrays, **attrs)   the computation on a backend namespace (numpy or cupy)
  infer(*avals, **attrs)          shape/dtype inference on abstract values (tracing, static graphs)
  vjp(ctx, g)                     the backward rule, written with dualgraph ops (so it differentiates again),
                                  or None with differentiable=False for ops with no gradient
  vjp_reads(...)                  which saved inputs/outputs that rule reads: derived from the vjp itself
  traits                          elementwise / pure / commutative / foldable / view ...
  ufunc, expr, arith, reduce      what kernels are generated from (numpy calls, C and CUDA expressions)
  kernel, writes_out              a specialised callable the executor binds once per compiled node
  fresh                           outputs are new memory the executor's memory plan may recycle
  inplace                         forward writing into input 0's buffer (the eager `x[i] = v`)
  onnx                            the ONNX lowering (ops/onnx_rules.py), or not_exportable(reason)
Composite ops (softmax, mean, losses) are plain functions of primitives and need no record.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .._state import STATE
from ..dispatch import new_tracer, using
from ..dtypes import SUPPORTED
from ..errors import DualgraphError
from ..graph.avals import Aval
from ..graph.ir import Graph
from ..tensor import Tensor

REGISTRY = {}


@dataclass(eq=False)
class Op:
    name: str
    forward: Callable
    infer: Callable
    vjp: Optional[Callable]            # None: not differentiable (comparisons, argmax, ...)
    differentiable: bool = True        # False says vjp=None on purpose (tests/test_op_records.py checks both agree)
    elementwise: bool = False          # output is a pointwise function of broadcast inputs
    broadcasting: bool = False         # inputs broadcast against each other (vjp outputs are summed back)
    pure: bool = True                  # no randomness / side effects: CSE and folding may merge it
    commutative: bool = False
    foldable: bool = True              # constant folding may precompute it
    view: bool = False                 # output may share memory (and the version counter) with input 0
    keeps_order: bool = False          # a view that is C-ordered whenever input 0 is (reshape)
    saves_output: bool = False         # vjp reads ctx.out, so the forward result is kept
    n_out: int = 1
    shape_from_values: Any = False     # the output's shape depends on the input values (True, or a predicate over
                                       # the operands' avals): such an op runs eagerly but cannot be traced
    device_attr: str = ""              # the attribute naming the output's device; otherwise the inputs' device
    # sized_attrs(gen, node, x_shape, attrs) -> attrs: the attributes that hold sizes (a reshape target),
    # rewritten by the exporter's generalizer `gen` when a concretely traced graph gets dynamic axes;
    # x_shape is input 0's derived (possibly symbolic) shape
    sized_attrs: Optional[Callable] = None
    # inplace(xp, x, *arrays, **attrs) writes forward's result into x's buffer (x[i] = v): how an eager
    # in-place application runs it (a tracer applies forward and rebinds the tensor instead)
    inplace: Optional[Callable] = None
    # forward is exactly this numpy/cupy ufunc when every tensor operand has the result's dtype (or the
    # result is bool): direct calls in compiled graphs and fused numpy kernels call it, with out=
    ufunc: str = ""
    # the op on one element as a C expression over its operands {0}, {1}, ... ({t}: the float type; math
    # functions by their double names, the C generator adds the float suffix; NaNs as numpy's): fused
    # C and CUDA kernels are generated from it. An operand written `{i} ?` is a condition (may be bool)
    expr: str = ""
    arith: bool = False                # one cheap arithmetic instruction per element (C chains of at most two
    #                                    such ops wait for a larger size, where one loop beats two ufunc calls)
    # a reduction over attrs axes/keepdims that fused kernels accumulate inside their loop: "add", "max" or
    # "min" (the combining operation; its identity and NaN rule are the kernel generator's), "" otherwise
    reduce: str = ""
    # kernel(node, xp) -> a callable of the node's operands with its attributes bound, made once when a
    # graph is compiled (None, or None from it: the executor calls forward)
    kernel: Optional[Callable] = None
    writes_out: bool = False           # that callable takes out= (a tuple, one per result, for several): it may
    #                                    write into a donated input's buffer
    # forward (and kernel) always return new arrays that share memory with no operand and that nothing else
    # keeps, C-ordered whenever the array operands are: the executor's memory plan may recycle them as
    # out= buffers once they are dead (tests/test_executor_reuse.py checks the claim on the op table)
    fresh: bool = False
    grad_name: str = ""
    onnx: Any = None                   # lowering rule(ctx, node, *names), or onnx_rules.not_exportable(reason)
    doc: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.grad_name:
            self.grad_name = "".join(p.capitalize() for p in self.name.split("_")) + "Backward0"

    def __repr__(self):
        return f"<op {self.name}>"

    def ufunc_dtypes(self, n):
        """The dtypes d for which forward on n operands all of dtype d is exactly `ufunc`: those the
        shape rule keeps (d op d -> d). Operators call the ufunc directly for them."""
        if not self.ufunc:
            return frozenset()
        out = set()
        for d in SUPPORTED:
            try:
                if self.infer(*[Aval((), d)] * n).dtype == d:
                    out.add(d)
            except DualgraphError:  # refused (bool - bool)
                pass
        return frozenset(out)

    def vjp_reads(self, operands, attrs, needs):
        """(input positions, output positions) whose values this op's vjp reads to compute the
        gradients flagged in `needs`; None when that cannot be derived (treat everything as read).
        See `vjp_reads` below."""
        return vjp_reads(self, operands, attrs, needs)


def defop(name, forward, infer, vjp, **traits):
    """Define and register one primitive op."""
    if name in REGISTRY:
        raise ValueError(f"op {name!r} is defined twice")
    op = Op(name=name, forward=forward, infer=infer, vjp=vjp, **traits)
    REGISTRY[name] = op
    return op


class Operand:
    """A tensor operand described without its values: what `vjp_reads` traces a vjp on."""

    __slots__ = ("aval", "device")

    def __init__(self, aval, device):
        self.aval, self.device = aval, device


_READS = {}


def vjp_reads(op, operands, attrs, needs):
    """Which saved values `op.vjp` reads to compute the gradients flagged in `needs`.

    `operands` are the forward operands: Tensors or `Operand`s (only shape, dtype and device are
    used) and, as they are, Python scalars and None. Returns (input positions, output positions)
    whose values reach one of the needed gradients, or None when the vjp cannot be traced on
    placeholders (callers then treat every saved value as read, which can only over-report).

    Derived, never declared, so it cannot drift from the vjp: the forward op and its vjp are traced
    on placeholder inputs, and the graph's data edges are followed back from each needed gradient.
    Reading a shape or dtype is no data edge; an operand whose gradient is not needed is not followed
    (mul's vjp reads b only for a's gradient). The autograd engine asks only when a saved tensor has
    changed in place since the forward, so the common backward never pays for the trace.
    """
    key = [op.name, tuple(needs), _attrs_key(attrs)]
    specs = []
    for x in operands:
        if isinstance(x, Tensor):
            x = Operand(Aval(x.shape, x.dtype), x.device)
        specs.append(x)
        key.append(("t", x.aval, str(x.device)) if isinstance(x, Operand) else ("s", type(x), x))
    try:
        key = tuple(key)
        hit = _READS.get(key, _MISSING)
    except TypeError:  # an unhashable attribute: derive without caching
        key, hit = None, _MISSING
    if hit is not _MISSING:
        return hit
    reads = _derive_reads(op, specs, attrs, tuple(needs))
    if key is not None:
        if len(_READS) > 4096:
            _READS.clear()
        _READS[key] = reads
    return reads


_MISSING = object()


def _attrs_key(attrs):
    return tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in attrs.items()))


class _ProbeCtx:
    """What a vjp reads (ctx.inputs, attrs, needs_input_grad, out), standing for placeholders."""

    __slots__ = ("inputs", "attrs", "needs_input_grad", "_outs", "subgraphs", "custom", "tracer")

    def __init__(self, inputs, attrs, needs, outs, tracer):
        self.inputs, self.attrs, self.needs_input_grad, self._outs = inputs, attrs, needs, outs
        self.subgraphs, self.custom, self.tracer = {}, None, tracer

    @property
    def out(self):
        return self._outs if len(self._outs) > 1 else self._outs[0]


def _derive_reads(op, specs, attrs, needs):
    if op.vjp is None:
        return frozenset(), frozenset()
    tr = new_tracer(Graph(f"{op.name}_vjp_reads"))
    prev = STATE.grad_enabled, STATE.recording
    try:
        with using(tr):
            STATE.grad_enabled, STATE.recording = False, False
            ins = tuple(tr.sym(tr.graph.add_input(x.aval), x.device) if isinstance(x, Operand) else x
                        for x in specs)
            out = tr.apply(op, ins, attrs)
            outs = out if isinstance(out, tuple) else (out,)
            gs = tuple(tr.sym(tr.graph.add_input(o._aval), o._device) for o in outs)
            result = op.vjp(_ProbeCtx(ins, attrs, needs, outs, tr), gs[0] if len(gs) == 1 else gs)
            if not isinstance(result, (tuple, list)):
                result = (result,)
            where_in = {id(tr.vals[id(t)]): i for i, t in enumerate(ins) if isinstance(t, Tensor)}
            where_out = {id(tr.vals[id(o)]): k for k, o in enumerate(outs)}
            stack = [tr.vals[id(r)] for r, need in zip(result, needs)
                     if need and isinstance(r, Tensor) and r._symbolic and id(r) in tr.vals]
    except Exception:  # a vjp that needs concrete values (or an op the tracer refuses): assume it reads all
        return None
    finally:
        STATE.grad_enabled, STATE.recording = prev
    reads_in, reads_out, seen = set(), set(), set()
    while stack:
        v = stack.pop()
        if v is None or id(v) in seen:
            continue
        seen.add(id(v))
        if id(v) in where_out:  # the forward's own output: read, but not what it was computed from
            reads_out.add(where_out[id(v)])
        elif id(v) in where_in:
            reads_in.add(where_in[id(v)])
        elif v.producer is not None:
            stack.extend(v.producer.inputs)
    return frozenset(reads_in), frozenset(reads_out)
