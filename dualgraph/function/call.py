"""Running an entry: one call of a compiled function on its argument and captured tensors.

Without grad the entry's executable runs and its outputs become tensors; an output that is an input
or a view of one shares that input's version counter, as eagerly. Then in-place updates are written
back into the tensors the function changed and assigned gradients into `.grad`. When an input
requires grad (and the function did not run backward itself), the call runs the forward of its
`CompiledOp` instead and records one autograd node for the whole call.
"""
from .._state import STATE
from ..autograd.graph import Node
from ..tensor import _make
from .compiled_op import compile_op
from .control import tree_unflatten
from .tracer import TraceError


def run(e, leaves, caps):
    """Call entry `e` on argument tensors `leaves` and captured tensors `caps`; returns what the
    function returns."""
    arrays = [t._data for t in leaves]
    if caps:
        arrays += [t._data for t in caps]
    if e.diff_any and STATE.grad_enabled and not e.did_backward:
        for t in leaves:
            if t._requires_grad:
                return _finish(e, leaves, caps, _run_with_grad(e, leaves, caps, arrays))
        for t in caps:
            if t._requires_grad:
                return _finish(e, leaves, caps, _run_with_grad(e, leaves, caps, arrays))
    outs = e.exec.run(*arrays)
    if e.out_alias:  # an output that is a view of an input shares its version counter, as eagerly
        inputs = list(leaves) + list(caps or ())
        outs = [_make(a, e.device) for a in outs]
        for j, i in e.out_alias:
            outs[j]._version = inputs[i]._version
        return outs[0] if e.simple else _finish(e, leaves, caps, outs)
    if e.simple:
        return _make(outs[0], e.device)
    dev = e.device
    return _finish(e, leaves, caps, [_make(a, dev) for a in outs])


def _finish(e, leaves, caps, outs):
    """Write back in-place updates and assigned grads; rebuild the returned structure."""
    for kind, target, k in e.writeback_plan:
        t = leaves[target] if kind == "arg" else caps[target] if kind == "capi" else target
        new = outs[k]._data
        if new is not t._data:
            e.xp.copyto(t._data, new, casting="unsafe")
        t._version[0] += 1
    for (kind, target), k in e.grad_write_plan:
        t = leaves[target] if kind == "arg" else caps[target] if kind == "capi" else target
        t._grad = None if k is None else outs[k]  # a fresh tensor with no history
    user = outs[:e.n_user_out]
    if not e.out_consts and e.out_tree is None:
        return user[0]
    leaves_out, it = [], iter(user)
    n = len(e.out_consts) + len(user)
    for i in range(n):
        leaves_out.append(e.out_consts[i] if i in e.out_consts else next(it))
    return tree_unflatten(e.out_tree, leaves_out)


def _run_with_grad(e, leaves, caps, arrays):
    inputs = list(leaves) + list(caps)
    wrt = tuple(i for i, t in enumerate(inputs) if t._requires_grad and t.dtype.kind == "f")
    op = e.grad_ops.get(wrt)
    if op is None:
        op = e.grad_ops[wrt] = _grad_op(e, wrt)
    res = op.fwd(*arrays)
    n_out = op.n_fwd_out
    outs = [_make(a, e.device) for a in res[:n_out]]
    for j, i in op.out_alias:  # an output that is a view of an input shares its version counter, as eagerly
        outs[j]._version = inputs[i]._version
    # every input is an edge of the node (a gradient for those in wrt), so its version is checked when
    # the compiled backward reads it, as an eager node checks what its vjp reads
    wanted = set(wrt)
    node = Node(op, tuple(inputs), {"residuals": res[n_out:]}, tuple(i in wanted for i in range(len(inputs))),
                tuple(t._version[0] for t in inputs))
    node._out = tuple(outs[i]._data for i in op.diff)
    node._out_versions = tuple((o._version, o._version[0]) for o in outs)
    for k, i in enumerate(op.diff):
        o = outs[i]
        o._grad_fn, o._out_index, o._requires_grad = node, k, True
    return outs


def _grad_op(e, wrt):
    if e.has_custom:
        raise TraceError(f"{e.name}: a custom dg.autograd.Function inside a compiled function whose "
                         f"caller differentiates it is not supported yet (its backward is not on the graph); "
                         f"call loss.backward() inside the compiled function (a whole training step traces "
                         f"custom backwards), or call this function eagerly")
    op = compile_op(e.name, e.graph, wrt, e.device, e.xp, e.passes)
    e.fwd_graph, e.bwd_graph = op.fwd.graph, op.bwd.graph
    return op
