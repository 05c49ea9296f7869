"""The op a compiled call records on the autograd tape when its caller differentiates it.

A compiled function called on tensors that require grad runs as one op: its traced graph is
differentiated (autodiff.joint_graph) and split into a forward that also returns the residuals the
backward needs, and a backward from those residuals and the output cotangents (autodiff.partition);
both are optimized and compiled. `CompiledOp` is an `Op` record like every other, so the autograd
engine runs it unchanged: its vjp runs the compiled backward, or, when that backward is itself
differentiated (create_graph=True), the unfused joint graph op by op on Tensors so that it is
recorded in turn. One record serves every call of a trace with the same inputs requiring grad; a
call's residuals are in its node's attrs.
"""
from dataclasses import dataclass, field
from typing import Optional

from .._state import STATE
from ..dispatch import apply
from ..errors import AutogradError, DualgraphError
from ..graph.ir import Graph
from ..ops.onnx_rules import not_exportable
from ..ops.registry import Op
from ..tensor import Tensor, _make
from . import passes as _passes
from .autodiff import joint_graph, partition
from .entry import output_views, view_root
from .executor import Executable


@dataclass(eq=False, repr=False)
class CompiledOp(Op):
    """`forward(xp, *inputs)` gives the differentiable outputs; inputs are the call's argument tensors
    then its captured tensors. The node of a call holds `attrs["residuals"]`, the forward's residual
    arrays, for the vjp."""

    fwd: Optional[Executable] = None    # inputs -> (all outputs..., residuals...)
    bwd: Optional[Executable] = None    # (residuals..., cotangents...) -> gradients
    n_fwd_out: int = 0                  # outputs of the traced graph: user outputs, write-backs, grads
    diff: tuple = ()                    # positions of the differentiable outputs: this op's outputs
    grads_for: list = field(default_factory=list)   # input position of each gradient bwd returns
    joint: Optional[Graph] = None       # forward and backward unfused, for a double backward
    stale_reads: list = field(default_factory=list)  # errors for vjps reading a value changed in place
    reads_in: frozenset = frozenset()   # input positions the backward reads through residuals
    reads_out: frozenset = frozenset()  # output positions it reads
    out_alias: list = field(default_factory=list)    # [(output, input)] outputs that are an input's memory

    def vjp_reads(self, operands, attrs, needs):
        if STATE.grad_enabled:  # a double backward recomputes from every input
            return frozenset(range(len(operands))), frozenset()
        return self.reads_in, self.reads_out

    def release_node(self, node):
        """Called when backward frees the graph: drop the call's residuals."""
        node.attrs.pop("residuals", None)


def compile_op(name, graph, wrt, device, xp, passes):
    """The CompiledOp for calls of `graph` (a trace) whose inputs at positions `wrt` require grad."""
    devices = {i: device for i in range(len(graph.inputs))}
    joint, diff = joint_graph(graph, list(wrt), devices, drop_unused=True)
    n_out = len(graph.outputs)
    fwd, bwd = partition(joint, len(graph.inputs), n_out)
    fwd.meta["device"] = bwd.meta["device"] = str(device)   # lower_kernels picks CPU-only kernels on "cpu" only
    fwd = _passes.optimize(fwd, passes)
    bwd = _passes.optimize(bwd, passes)
    fwd_exec = Executable(fwd, xp)
    avals = tuple(fwd.outputs[i].aval for i in diff)

    def forward(xp, *arrays):
        res = fwd_exec(*arrays)
        return res[diff[0]] if len(diff) == 1 else tuple(res[i] for i in diff)

    def infer(*in_avals):
        return avals[0] if len(avals) == 1 else avals

    reads_in, reads_out = _residual_reads(fwd, bwd, n_out)
    return CompiledOp(
        name=f"compiled_{name}", forward=forward, infer=infer, vjp=_vjp, pure=False, foldable=False,
        n_out=len(diff), grad_name="CompiledFunctionBackward",
        doc=f"a call of the compiled function {name}, differentiated by its caller",
        onnx=not_exportable("it records an eager call of a compiled function for autograd; export traces "
                            "the function itself"),
        fwd=fwd_exec, bwd=Executable(bwd, xp), n_fwd_out=n_out, diff=tuple(diff),
        grads_for=[wrt[k] for k in joint.meta["grads_for"]], joint=joint,
        stale_reads=joint.meta["stale_reads"], reads_in=reads_in, reads_out=reads_out,
        out_alias=output_views(fwd, n_out))


def _residual_reads(fwd, bwd, n_out):
    """Which inputs and outputs of the forward the backward reads, through residuals that are those
    very arrays or views of them (so an in-place change after the call would change the gradient)."""
    used = {id(v) for node in bwd.nodes for v in node.inputs if v is not None}
    used.update(id(v) for v in bwd.outputs)
    in_pos = {id(v): i for i, v in enumerate(fwd.inputs)}
    out_roots = {}
    for j, v in enumerate(fwd.outputs[:n_out]):
        out_roots.setdefault(id(view_root(v)), []).append(j)
    reads_in, reads_out = set(), set()
    for res_fwd, res_bwd in zip(fwd.outputs[n_out:], bwd.inputs):
        if id(res_bwd) not in used:
            continue
        r = view_root(res_fwd)
        if id(r) in in_pos:
            reads_in.add(in_pos[id(r)])
        reads_out.update(out_roots.get(id(r), ()))
    return frozenset(reads_in), frozenset(reads_out)


def _vjp(ctx, grads):
    op = ctx.op
    if op.stale_reads:
        raise AutogradError(op.stale_reads[0])
    grads = grads if isinstance(grads, tuple) else (grads,)
    dev = grads[0]._device
    if STATE.grad_enabled:  # backward(create_graph=True): the engine records the vjp's ops
        out = _vjp_recorded(op, ctx.inputs, grads)
    else:
        out = [_make(a, dev) for a in op.bwd(*ctx.attrs["residuals"], *(g._data for g in grads))]
    result = [None] * len(ctx.inputs)  # None, not zeros, for inputs no output depends on
    for i, g in zip(op.grads_for, out):
        result[i] = g
    return tuple(result)


def _vjp_recorded(op, primals, grads):
    """Recompute forward and backward op by op on Tensors from the primal inputs, so the engine
    records it and a second backward reaches the inputs."""
    g = op.joint
    env = {}
    dev = grads[0]._device
    for v, a in zip(g.inputs, list(primals) + list(grads)):
        env[id(v)] = a if isinstance(a, Tensor) else _make(a, dev)

    def get(v):
        if v is None:
            return None
        if v.weak:
            return v.const
        if v.const is not None:
            return _make(v.const, dev)
        return env[id(v)]
    for n in g.nodes:
        if n.subgraphs:
            raise DualgraphError(f"double backward through {n.op.name} in a compiled function is not supported")
        out = apply(n.op, tuple(get(v) for v in n.inputs), n.attrs)
        outs = out if isinstance(out, tuple) else (out,)
        for v, t in zip(n.outputs, outs):
            env[id(v)] = t
    return tuple(get(v) for v in g.outputs[op.n_fwd_out:])
