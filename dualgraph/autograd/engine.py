"""Reverse-mode engine: walk the backward graph in reverse topological order.

Gradients for one backward are summed per node (and per leaf) first and only then applied,
so MXNet's grad_req='write' overwrites with the full gradient of this backward, while
PyTorch-style leaves (and grad_req='add') accumulate across calls.
"""
from .._state import STATE
from ..errors import AutogradError, ShapeError
from ..tensor import POST_HOOKS, Tensor, _make, ones_like_tensor, zeros_like_tensor
from .graph import Node, running_backward


def _topo_order(roots):
    """Nodes reachable from `roots`, each after every node that feeds it gradient."""
    order, seen = [], set()
    for root in roots:
        if root is None or id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(root._fns))]
        while stack:
            node, it = stack[-1]
            for child in it:  # the edges recorded with the node, not the inputs' grad_fn now
                if child is not None and id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, iter(child._fns)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def _reducible(gshape, shape):
    """Whether a gradient of gshape sums back to shape: shape broadcasts to gshape, or the two differ
    only by dims of size 1 (a () gradient for a (1,) input)."""
    if [d for d in gshape if d != 1] == [d for d in shape if d != 1]:
        return True
    if len(shape) > len(gshape):
        return False
    return all(s == 1 or s == g for s, g in zip(reversed(shape), reversed(gshape)))


def _add(acc, g):
    return g if acc is None else acc + g


def run_backward(outputs, grad_outputs, retain_graph, create_graph, inputs=None):
    """Backpropagate eagerly; write leaf .grad (inputs=None) or return the grads of `inputs`. Callbacks
    queued meanwhile (graph.queue_callback) run at the end."""
    with running_backward():
        return _run_backward(outputs, grad_outputs, retain_graph, create_graph, inputs)


def _post_hook_schedule(order):
    """{position in `order`: [leaves]} for the leaves with post-accumulate hooks, at the last node that
    sends them gradient: after it, their gradient is final and can be written and announced."""
    last = {}
    for k, node in enumerate(order):
        for t, fn, needs in zip(node.inputs, node._fns, node.needs_input_grad):
            if needs and fn is None and t._post_hooks:
                last[id(t)] = (k, t)
    ready = {}
    for k, t in last.values():
        ready.setdefault(k, []).append(t)
    return ready


def _finish_leaves(leaves, leaf_grads, create_graph):
    for t in leaves:
        slot = leaf_grads.pop(id(t), None)
        if slot is not None and _write_leaf(t, slot[1], create_graph):
            for hook in tuple(t._post_hooks or ()):
                hook(t)


def _run_backward(outputs, grad_outputs, retain_graph, create_graph, inputs=None):
    node_grads = {}   # id(node) -> list of per-output grads
    roots = []
    leaf_grads = {}   # id(tensor) -> [tensor, grad]
    for out, g in zip(outputs, grad_outputs):
        if not out._requires_grad:
            raise AutogradError("element of outputs does not require grad and has no grad_fn: "
                                "call requires_grad_()/attach_grad() on an input, and compute the "
                                "output inside autograd.record() or with grad mode enabled")
        if g is None:
            if out.size != 1 and not (out._grad_fn is not None and out._grad_fn._recorded):
                # PyTorch needs `gradient` for a non-scalar output; MXNet (an output computed inside
                # autograd.record()) takes a head gradient of ones
                raise AutogradError(
                    f"grad can be implicitly created only for scalar outputs; the output has shape "
                    f"{out.shape}: pass gradient= (a tensor of that shape) to backward(), or compute it inside "
                    f"autograd.record() to get MXNet's head gradient of ones")
            g = ones_like_tensor(out)
        elif not isinstance(g, Tensor):
            g = Tensor(g, dtype=out.dtype, device=out.device)
        if g.shape != out.shape:
            raise ShapeError(f"backward: gradient has shape {g.shape} but the output has shape {out.shape}")
        if out._grad_fn is None:
            slot = leaf_grads.setdefault(id(out), [out, None])
            slot[1] = _add(slot[1], g)
            continue
        node = out._grad_fn
        grads = node_grads.setdefault(id(node), [None] * node.op.n_out)
        grads[out._out_index] = _add(grads[out._out_index], g)
        roots.append(node)

    wanted_nodes = {}
    wanted_leaves = set()
    if inputs is not None:
        for i, t in enumerate(inputs):
            if t._grad_fn is not None:
                wanted_nodes.setdefault(id(t._grad_fn), []).append((i, t._out_index))
            else:
                wanted_leaves.add(id(t))
    results = [None] * (len(inputs) if inputs is not None else 0)

    prev = STATE.grad_enabled
    STATE.grad_enabled = bool(create_graph)
    anomaly = STATE.anomaly
    try:
        order = _topo_order(roots)
        # leaves with post-accumulate hooks get their .grad as soon as it is final, mid-backward
        ready = _post_hook_schedule(order) if POST_HOOKS[0] and inputs is None else None
        for k, node in enumerate(order):
            grads = node_grads.pop(id(node), None)
            if grads is None:
                if ready and k in ready:
                    _finish_leaves(ready.pop(k), leaf_grads, create_graph)
                continue
            if node._hooks:  # hooks of non-leaf tensors may replace the gradient flowing on
                for idx, hook in node._hooks:
                    if grads[idx] is not None:
                        replaced = hook(grads[idx])
                        if replaced is not None:
                            grads[idx] = replaced
            if node._retained:
                for idx, ref in node._retained:
                    t = ref()
                    if t is not None and grads[idx] is not None:
                        t._grad = _add(t._grad, grads[idx] if create_graph else grads[idx].detach())
            if id(node) in wanted_nodes:
                for i, idx in wanted_nodes[id(node)]:
                    results[i] = grads[idx]
            node.check_and_release(retain_graph)
            in_grads = _call_vjp(node, grads)
            if anomaly:
                _check_finite(node, in_grads)
            for i, (t, needs, gi, child) in enumerate(zip(node.inputs, node.needs_input_grad, in_grads, node._fns)):
                if not needs or gi is None:
                    continue
                if not isinstance(gi, Tensor):
                    gi = Tensor(gi, dtype=t.dtype, device=t.device)
                gdata, tdata = gi._data, t._data
                if gdata.shape != tdata.shape:
                    if not _reducible(gdata.shape, tdata.shape):
                        raise ShapeError(f"{node.op.grad_name}: backward returned a gradient of shape "
                                         f"{tuple(gi.shape)} for an input of shape {tuple(t.shape)}")
                    gi = gi._sum_to(tdata.shape)  # an op, bound to Tensor above the ops
                if gdata.dtype != tdata.dtype:
                    gi = gi.astype(tdata.dtype)
                if child is not None:
                    # the edge recorded with the node; the tensor's own grad_fn unless an in-place op moved it
                    index = t._out_index if t._grad_fn is child else node.edge(i)[1]
                    slot = node_grads.setdefault(id(child), [None] * child.op.n_out)
                    slot[index] = _add(slot[index], gi)
                else:
                    slot = leaf_grads.setdefault(id(t), [t, None])
                    slot[1] = _add(slot[1], gi)
            if not retain_graph:
                node.release()
            if ready and k in ready:
                _finish_leaves(ready.pop(k), leaf_grads, create_graph)
    finally:
        STATE.grad_enabled = prev

    if inputs is not None:
        for i, t in enumerate(inputs):
            if id(t) in wanted_leaves and id(t) in leaf_grads:
                g = leaf_grads[id(t)][1]
                for hook in t._hooks or ():  # a leaf's hooks see (and may replace) its gradient here too
                    replaced = hook(g)
                    g = g if replaced is None else replaced
                results[i] = g
        return results

    for t, g in leaf_grads.values():
        if _write_leaf(t, g, create_graph) and t._post_hooks:
            for hook in tuple(t._post_hooks):
                hook(t)
    return None


def _write_leaf(t, g, create_graph):
    """Accumulate g into leaf t's .grad (after t's hooks); False when t takes no gradient."""
    if not t._requires_grad or t._grad_req == "null":
        return False
    for hook in t._hooks or ():
        replaced = hook(g)
        g = g if replaced is None else replaced
    if not create_graph:
        g = g.detach()
        d = g._data
        if not d.flags.c_contiguous and t._data.flags.c_contiguous:
            # a leaf's grad takes its layout (PyTorch's gradient layout contract): the weight grad
            # of x @ W.T arrives transposed, and every optimizer op on it would then walk memory
            # with strides several times slower than one copy here
            g = _make(g._device.xp.ascontiguousarray(d), g._device)
    if t._grad_req == "write" or t._grad is None:
        t._grad = g
    else:
        t._grad = t._grad + g if create_graph else (t._grad + g).detach()
    return True


def _check_finite(node, in_grads):
    """detect_anomaly: name the forward op (and the user's line) whose backward made NaN/inf."""
    for i, g in enumerate(in_grads):
        data = getattr(g, "_data", None)
        if data is None or data.dtype.kind != "f":
            continue
        xp = g._device.xp
        if not bool(xp.isfinite(data).all()):
            kind = "nan" if bool(xp.isnan(data).any()) else "inf"
            where = f" called at {node._source}" if node._source else ""
            raise AutogradError(
                f"detect_anomaly: {node.op.grad_name} returned {kind} values in its gradient for input {i}: "
                f"the forward op '{node.op.name}'{where} produced them (shapes: "
                f"{', '.join(str(tuple(getattr(t, 'shape', ()))) for t in node.inputs)})")


def _call_vjp(node, grads):
    op = node.op
    if op.n_out == 1:
        g = grads[0]
    elif node._out is not None:
        g = tuple(gi if gi is not None else zeros_like_tensor(o) for gi, o in zip(grads, node.out))
    else:  # the outputs were not kept: their shapes and dtypes were, enough for the missing zeros
        dev = next(gi for gi in grads if gi is not None)._device
        g = tuple(gi if gi is not None else _make(dev.xp.zeros(shape, dtype), dev)
                  for gi, (shape, dtype) in zip(grads, node._out_avals))
    result = op.vjp(node, g)
    if not isinstance(result, (tuple, list)):
        result = (result,)
    if len(result) != len(node.inputs):
        raise AutogradError(f"vjp of {op.name} returned {len(result)} gradients for {len(node.inputs)} inputs")
    return result


__all__ = ["run_backward", "Node"]
