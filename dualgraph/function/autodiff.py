"""Reverse mode on the graph IR, from the op table's vjp rules.

`reverse(tracer, outputs, grads, wanted)` walks the tracer's tape backwards and calls each op's
`vjp(ctx, g)` with symbolic tensors in `ctx`; the vjps are written with dualgraph ops, so the
backward is traced into the same graph. `joint_graph(graph, wrt)` replays a finished graph under a
fresh tracer with grad on and appends its backward, and `partition` splits that joint graph into a
forward graph that also returns the residuals the backward needs, and a backward graph.
"""
from .._state import STATE
from ..backend import CPU, device_of_array, is_array
from ..autograd.graph import stale_read_message
from ..dispatch import new_tracer, using
from ..errors import AutogradError, ShapeError
from ..graph.avals import Dim
from ..graph.ir import Graph
from ..ops.creation import full_like, zeros_like
from ..ops.reduction import sum_to
from ..ops.registry import Operand
from ..tensor import Tensor, as_tensor
from .passes.dce import dce


class _Ctx:
    """What a vjp rule reads: inputs, attrs, out, needs_input_grad (and subgraphs for control flow)."""

    __slots__ = ("inputs", "attrs", "needs_input_grad", "_tr", "_outs", "subgraphs", "custom", "tracer")

    def __init__(self, tr, rec):
        self._tr, self.tracer = tr, tr
        self.inputs = tuple(tr.tensor_for(v, tr.device_of(v)) for v in rec.inputs)
        self.attrs = rec.attrs
        self.needs_input_grad = rec.needs
        self._outs = rec.outputs
        self.subgraphs = rec.subgraphs
        self.custom = rec.custom

    @property
    def out(self):
        outs = tuple(self._tr.tensor_for(v, self._tr.device_of(v)) for v in self._outs)
        return outs if len(outs) > 1 else outs[0]


def _acc(grads, v, g):
    cur = grads.get(id(v))
    grads[id(v)] = g if cur is None else cur + g


def _overwritten(v, overwritten, at):
    """Whether an in-place op that began after graph node `at` replaced v (or the value v is a view of)."""
    while v is not None and v.const is None:
        hit = overwritten.get(id(v))
        if hit is not None and hit[1] > at:
            return True
        p = v.producer
        if p is None or not getattr(p.op, "view", False):
            return False
        v = p.inputs[0]
    return False


def _check_overwritten(tr, rec, at, stale_reads):
    """Eager's rule inside a trace: a vjp may not read a value an in-place op replaced afterwards.

    The trace itself would compute the gradient at the old value (every Value is immutable), which
    eager refuses to do (and PyTorch too); the same `vjp_reads` derivation decides what is read. `at`
    is the index of the record's node in the graph: the in-place op's own nodes come after it began."""
    ow = tr.overwritten
    stale = [i for i, v in enumerate(rec.inputs) if v is not None and _overwritten(v, ow, at)]
    stale_out = [k for k, v in enumerate(rec.outputs) if _overwritten(v, ow, at)]
    if not stale and not stale_out:
        return
    operands = [v.const if v is not None and v.weak else None if v is None else Operand(v.aval, tr.device_of(v))
                for v in rec.inputs]
    reads = None if rec.subgraphs else rec.op.vjp_reads(operands, rec.attrs, rec.needs)
    msg = stale_read_message(rec.op, stale, stale_out, reads,
                             lambda i: (rec.inputs[i].aval.shape,
                                        "inside @dg.function, an in-place op replaced it after this op used it"),
                             where=" (inside @dg.function)")
    if msg is None:
        return
    if stale_reads is None:
        raise AutogradError(msg)
    stale_reads.append(msg)


def reverse(tr, outputs, out_grads, wanted, stale_reads=None):
    """Gradients (symbolic tensors or None) of sum(out * grad) with respect to the Values `wanted`.

    A vjp that reads a value replaced by an in-place op raises, as eagerly; with `stale_reads` (a list)
    the message is appended there instead, for a backward that runs later."""
    grads = {}
    check_overwritten = bool(getattr(tr, "overwritten", None))
    position = None
    prev = STATE.grad_enabled
    STATE.grad_enabled = False
    try:
        for out, g in zip(outputs, out_grads):
            if not out._requires_grad:
                raise AutogradError("element of outputs does not require grad and has no grad_fn: call "
                                    "requires_grad_() on an input before computing it")
            if g is None:
                if any(d != 1 for d in out.shape):
                    raise AutogradError(f"grad can be implicitly created only for scalar outputs; the output "
                                        f"has shape {tuple(out.shape)}: pass gradient= to backward()")
                g = full_like(out, 1)
            elif not isinstance(g, Tensor):
                g = as_tensor(g, like=out)
            if tuple(g.shape) != tuple(out.shape):
                raise ShapeError(f"backward: gradient has shape {tuple(g.shape)} but the output has shape "
                                 f"{tuple(out.shape)}")
            _acc(grads, tr.value_of(out), g)
        for rec in reversed(tr.tape):
            gs = [grads.get(id(o)) for o in rec.outputs]
            if all(g is None for g in gs):
                continue
            if len(gs) == 1:
                g = gs[0]
            else:
                g = tuple(gi if gi is not None else zeros_like(tr.tensor_for(o, tr.device_of(o)))
                          for gi, o in zip(gs, rec.outputs))
            if check_overwritten and rec.custom is None and hasattr(rec.op, "vjp_reads"):
                if position is None:
                    position = {id(n): k for k, n in enumerate(tr.graph.nodes)}
                producer = rec.outputs[0].producer if rec.outputs else None
                _check_overwritten(tr, rec, position.get(id(producer), -1), stale_reads)
            ctx = _Ctx(tr, rec)
            result = rec.op.vjp(ctx, g)
            if not isinstance(result, (tuple, list)):
                result = (result,)
            if len(result) != len(rec.inputs):
                raise AutogradError(f"vjp of {rec.op.name} returned {len(result)} gradients for "
                                    f"{len(rec.inputs)} inputs")
            for v, need, gi in zip(rec.inputs, rec.needs, result):
                if not need or gi is None or v is None:
                    continue
                if not isinstance(gi, Tensor):
                    gi = as_tensor(gi, like=ctx.inputs[0] if isinstance(ctx.inputs[0], Tensor) else None)
                if tuple(gi.shape) != tuple(v.aval.shape):
                    gi = sum_to(gi, v.aval.shape)
                if gi.dtype != v.aval.dtype:
                    gi = gi.astype(v.aval.dtype)
                _acc(grads, v, gi)
        return [grads.get(id(w)) for w in wanted]
    finally:
        STATE.grad_enabled = prev


def replay(tr, graph, in_tensors, env=None, device=None):
    """Re-emit `graph`'s nodes through the current tracer; returns its output tensors (`env`, when
    given, is filled with id(Value of graph) -> its tensor). A constant lives on its array's device, a
    host constant on `device` (the graph's one device: the executor moves host constants there)."""
    env = {} if env is None else env
    env.update({id(v): t for v, t in zip(graph.inputs, in_tensors)})

    def get(v):
        if v is None:
            return None
        if v.weak:
            return v.const
        t = env.get(id(v))
        if t is None and v.const is not None:
            t = tr.tensor_for(v, device_of_array(v.const) if is_array(v.const) and device_of_array(v.const)
                              is not CPU else device)
            env[id(v)] = t
        return t

    for node in graph.nodes:
        ins = [get(v) for v in node.inputs]
        out = tr.apply(node.op, ins, node.attrs, subgraphs=node.subgraphs or None)
        outs = out if isinstance(out, tuple) else (out,)
        for v, t in zip(node.outputs, outs):
            env[id(v)] = t
    return [get(v) for v in graph.outputs]


def joint_graph(graph, wrt, devices=None, force_diff=None, drop_unused=False):
    """Forward + backward of `graph`: inputs (x..., cotangents...), outputs (y..., dx for x in wrt).

    Cotangent inputs are added for the floating outputs that depend on `wrt` (`diff_outputs`). An
    input of `wrt` no output depends on gets a zero gradient, or with `drop_unused` none: its dx is
    left out of the outputs and `meta["grads_for"]` lists the positions in `wrt` that have one (so
    the caller can leave `.grad` None, as eagerly). `meta["stale_reads"]` lists the errors of vjps
    that read a value the traced function changed in place (see `reverse`), for the caller to raise
    when backward runs."""
    tr = new_tracer(Graph("joint"))
    devices = devices or {}
    with using(tr):
        prev = STATE.grad_enabled
        STATE.grad_enabled = True
        try:
            ins = []
            for i, v in enumerate(graph.inputs):
                nv = tr.graph.add_input(v.aval, v.name)
                ins.append(tr.sym(nv, devices.get(i), requires_grad=i in wrt and v.aval.dtype.kind == "f"))
            env = {}
            one = set(devices.values())
            outs = replay(tr, graph, ins, env, device=one.pop() if len(one) == 1 else None)
            _replay_overwrites(tr, graph, env)
            diff = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and o._requires_grad]
            if force_diff is not None:
                diff = list(force_diff)
            cts = []
            for i in diff:
                cv = tr.graph.add_input(tr.value_of(outs[i]).aval)
                cts.append(tr.sym(cv, outs[i]._device))
            live = [k for k, i in enumerate(diff) if outs[i]._requires_grad]
            stale_reads = []
            grads = reverse(tr, [outs[diff[k]] for k in live], [cts[k] for k in live],
                            [tr.graph.inputs[i] for i in wrt], stale_reads)
            STATE.grad_enabled = False
            if drop_unused:
                tr.graph.meta["grads_for"] = [k for k, g in enumerate(grads) if g is not None]
                grads = [g for g in grads if g is not None]
            else:
                grads = [g if g is not None else zeros_like(ins[i]) for g, i in zip(grads, wrt)]
            tr.graph.meta["stale_reads"] = stale_reads
        finally:
            STATE.grad_enabled = prev
        tr.graph.outputs = [tr.value_of(o) for o in outs] + [tr.value_of(g) for g in grads]
    # concrete tensors met while replaying were made by vjp rules (dg.zeros(...)): constants
    made = {id(v) for _, v, _ in tr.captured}
    for t, v, _ in tr.captured:
        v.const = t._data
    tr.graph.inputs = [v for v in tr.graph.inputs if id(v) not in made]
    return tr.graph, diff


def _replay_overwrites(tr, graph, env):
    """Carry the traced function's in-place updates over to its replay: the replaced Values, and
    where in the replayed graph each in-place op began."""
    ow = graph.meta.get("_overwritten")
    if not ow:
        return
    where = {id(n): k for k, n in enumerate(tr.graph.nodes)}

    def replayed_index(since):
        for n in graph.nodes[since:]:
            for o in n.outputs:
                t = env.get(id(o))
                p = tr.value_of(t).producer if isinstance(t, Tensor) else None
                if p is not None and id(p) in where:
                    return where[id(p)]
        return len(tr.graph.nodes)
    for v, since in ow:
        t = env.get(id(v))
        if isinstance(t, Tensor):
            nv = tr.value_of(t)
            tr.overwritten.setdefault(id(nv), (nv, replayed_index(since)))


def _base_dims(x, out):
    """The plain symbolic dims (id -> Dim) that x (a shape, attrs, a size expression) is built from."""
    if isinstance(x, Dim):
        args = getattr(x, "args", None)
        if getattr(x, "op", None) is not None and args is not None:
            for a in args:
                _base_dims(a, out)
        else:
            out[id(x)] = x
    elif isinstance(x, (tuple, list)):
        for i in x:
            _base_dims(i, out)
    elif isinstance(x, dict):
        for i in x.values():
            _base_dims(i, out)
    elif isinstance(x, slice):
        _base_dims((x.start, x.stop, x.step), out)


def partition(joint, n_in, n_out):
    """Split a joint graph (inputs: n_in primals then cotangents; outputs: n_out primals then grads).

    Returns (fwd, bwd): fwd(primals) -> (outputs..., residuals...), bwd(residuals..., cotangents...) -> grads.
    """
    cot = {id(v) for v in joint.inputs[n_in:]}
    bwd_ids = set(cot)
    fwd_nodes, bwd_nodes = [], []
    for node in joint.nodes:
        if any(v is not None and id(v) in bwd_ids for v in node.inputs):
            bwd_nodes.append(node)
            bwd_ids.update(id(o) for o in node.outputs)
        else:
            fwd_nodes.append(node)
    # residuals: forward values (or primal inputs) read by backward nodes or returned as grads
    res, seen = [], set()

    def need(v):
        if v is None or v.const is not None or id(v) in bwd_ids or id(v) in seen:
            return
        seen.add(id(v))
        res.append(v)
    for node in bwd_nodes:
        for v in node.inputs:
            need(v)
    for v in joint.outputs[n_out:]:
        need(v)
    # symbolic sizes the backward uses but none of its inputs carries (the vjp of x.sum() broadcasts to
    # x's shape without reading x): pass a primal input that has them through, or it cannot run
    bound = {id(d) for v in res + list(joint.inputs[n_in:]) for d in v.aval.shape}
    wanted = {}
    for node in bwd_nodes:
        _base_dims(node.attrs, wanted)
        for o in node.outputs:
            _base_dims(o.aval.shape, wanted)
    for v in joint.outputs[n_out:]:
        _base_dims(v.aval.shape, wanted)
    # a dim a shape rule made up (reshape(-1)'s d0*d1, pad's d0+1) is carried by a forward value
    carriers = list(joint.inputs[:n_in]) + [o for n in fwd_nodes for o in n.outputs]
    for k, d in wanted.items():
        if k in bound:
            continue
        for v in carriers:
            if any(s is d for s in v.aval.shape):
                need(v)
                bound.update(id(s) for s in v.aval.shape)
                break
    fwd = Graph("forward")
    fwd.inputs = list(joint.inputs[:n_in])
    fwd.nodes = fwd_nodes
    fwd.outputs = list(joint.outputs[:n_out]) + res
    bwd = Graph("backward")
    bwd.inputs = res + list(joint.inputs[n_in:])
    bwd.nodes = bwd_nodes
    bwd.outputs = list(joint.outputs[n_out:])
    return dce(fwd.copy()), dce(bwd.copy())
