"""Structured control flow: dg.cond, dg.while_loop, dg.fori_loop.

Each asks the current mode. Eagerly they run Python (so eager gradients come from the ordinary
tape). A tracer traces each function argument into a subgraph (`trace_cond`, `trace_while`) and
adds one node of the op records in dualgraph.ops.control. `cond` is differentiable (its vjp is a
cond of the branches' backward graphs); `while_loop` is not (its trip count is unknown when
tracing); `fori_loop` with Python bounds unrolls inside a trace, so it differentiates like
straight-line code.
"""
import numpy as np

from .._state import STATE
from ..dispatch import using
from ..errors import ShapeError
from ..graph.ir import Value
from ..ops.control import COND, WHILE
from ..ops.creation import tensor as _tensor
from ..ops.elementwise import astype
from ..tensor import Tensor, as_tensor


# ---- pytrees of tensors (loop state, branch outputs) ------------------------------------------------

# module-level recursion: a recursive closure (a nested `def walk` calling itself) is a reference
# cycle that keeps the leaves alive until the garbage collector runs, so a tensor made inside a trace
# (`dg.tensor(0)` as loop state) looked like live outside state and was read again at every call
def _walk(o, leaves):
    if isinstance(o, (tuple, list)):
        return (type(o), tuple(_walk(i, leaves) for i in o))
    if isinstance(o, dict):
        keys = sorted(o)
        return (dict, tuple(keys), tuple(_walk(o[k], leaves) for k in keys))
    leaves.append(o)
    return None


def tree_flatten(x):
    leaves = []
    return leaves, _walk(x, leaves)


def _build(t, it):
    if t is None:
        return next(it)
    if t[0] is dict:
        return {k: _build(c, it) for k, c in zip(t[1], t[2])}
    return t[0](_build(c, it) for c in t[1])


def tree_unflatten(tree, leaves):
    return _build(tree, iter(leaves))


# ---- the user functions -----------------------------------------------------------------------------

def cond(pred, true_fn, false_fn, *operands):
    """`true_fn(*operands)` if pred else `false_fn(*operands)`; traced, both branches become one node.

    Both branches must return the same structure of tensors with the same shapes and dtypes."""
    if not isinstance(pred, Tensor):  # a Python predicate is known now, in every mode
        return true_fn(*operands) if pred else false_fn(*operands)
    return STATE.mode.cond(pred, true_fn, false_fn, operands)


def while_loop(cond_fn, body_fn, init_val):
    """`val = init_val; while cond_fn(val): val = body_fn(val); return val`, traced as one node.

    The loop state is a tensor or a tuple/list/dict of tensors whose shapes and dtypes stay fixed."""
    return STATE.mode.while_loop(cond_fn, body_fn, init_val)


def fori_loop(lower, upper, body_fn, init_val):
    """`val = init_val; for i in range(lower, upper): val = body_fn(i, val)`.

    With Python int bounds the trip count is fixed at trace time: the loop unrolls into the graph
    (i is a Python int) and is differentiable. Tensor bounds become a dg.while_loop (not differentiable).
    """
    if isinstance(lower, Tensor) or isinstance(upper, Tensor):
        lo = lower if isinstance(lower, Tensor) else _tensor(int(lower))
        hi = upper
        out = while_loop(lambda s: s[0] < hi, lambda s: (s[0] + 1, body_fn(s[0], s[1])), (lo, init_val))
        return out[1]
    val = init_val
    for i in range(int(lower), int(upper)):
        val = body_fn(i, val)
    return val


# ---- tracing them -----------------------------------------------------------------------------------

def _subtrace(tr, fn, in_tensors, name):
    """Trace fn(*in_tensors) into a subgraph of tracer `tr`; returns (subtracer, out_leaves, tree)."""
    sub = tr.child(name)
    args = []
    for t in in_tensors:
        v = sub.graph.add_input(tr.value_of(t).aval)
        args.append(sub.sym(v, t._device, requires_grad=t._requires_grad))
    with using(sub):
        out = fn(*args)
    leaves, tree = tree_flatten(out)
    outs = []
    for leaf in leaves:
        if not isinstance(leaf, Tensor):
            leaf = as_tensor(leaf)
        outs.append(leaf)
    with using(sub):
        sub.graph.outputs = [sub.value_of(o) for o in outs]
    return sub, outs, tree


def _align(subs, tr):
    """Give every subtracer the same list of lifted outer values (as extra trailing inputs)."""
    union, seen = [], set()
    for s in subs:
        for pv in s.outer:
            if id(pv) not in seen:
                seen.add(id(pv))
                union.append(pv)
    for s in subs:
        have = {id(pv): s.graph.inputs[len(s.graph.inputs) - len(s.outer) + i] for i, pv in enumerate(s.outer)}
        base = s.graph.inputs[:len(s.graph.inputs) - len(s.outer)]
        extra = [have.get(id(pv)) or Value(pv.aval) for pv in union]
        s.graph.inputs = base + extra
    return union


def _outer_tensors(tr, union, subs):
    """The enclosing tensors the subgraphs read, one per lifted Value: the tensors themselves (their
    requires_grad decides what is differentiated), not whichever tensor first got that Value."""
    out = []
    for v in union:
        t = None
        for s in subs:
            c = s.outer_tensor.get(id(v))
            if c is not None and (t is None or (c._requires_grad and not t._requires_grad)):
                t = c
        out.append(t if t is not None else tr.tensor_for(v, tr.device_of(v)))
    return out


def trace_cond(tr, pred, true_fn, false_fn, operands):
    """dg.cond under tracer `tr`: both branches traced into subgraphs of one cond node."""
    leaves, tree = tree_flatten(operands)
    ops = [x if isinstance(x, Tensor) else as_tensor(x) for x in leaves]

    def wrap(fn):
        return lambda *ts: fn(*tree_unflatten(tree, ts))
    s_then, outs_t, tree_t = _subtrace(tr, wrap(true_fn), ops, "then")
    s_else, outs_e, tree_e = _subtrace(tr, wrap(false_fn), ops, "else")
    if tree_t != tree_e or len(outs_t) != len(outs_e):
        raise ShapeError("dg.cond: true_fn and false_fn return different structures")
    for a, b in zip(s_then.graph.outputs, s_else.graph.outputs):
        if a.aval != b.aval:
            raise ShapeError(f"dg.cond: the branches return different shapes/dtypes: {a.aval} and {b.aval}")
    union = _align([s_then, s_else], tr)
    extra = _outer_tensors(tr, union, [s_then, s_else])
    pred_t = pred if pred.dtype == np.bool_ else pred.astype(bool)
    if pred_t.ndim:
        raise ShapeError(f"dg.cond: pred must be a scalar (0-d) tensor, got shape {tuple(pred.shape)}")
    outs = tr.apply(COND, (pred_t, *ops, *extra), {}, subgraphs={"then": s_then.graph, "else": s_else.graph})
    outs = outs if isinstance(outs, tuple) else (outs,)
    return tree_unflatten(tree_t, outs)


def trace_while(tr, cond_fn, body_fn, init_val):
    """dg.while_loop under tracer `tr`: cond_fn and body_fn traced into subgraphs of one while_loop node."""
    leaves, tree = tree_flatten(init_val)
    state = [x if isinstance(x, Tensor) else as_tensor(x) for x in leaves]
    s_cond, outs_c, _ = _subtrace(tr, lambda *ts: cond_fn(tree_unflatten(tree, ts)), state, "cond")
    s_body, outs_b, tree_b = _subtrace(tr, lambda *ts: body_fn(tree_unflatten(tree, ts)), state, "body")
    if tree_b != tree or len(outs_b) != len(state):
        raise ShapeError("dg.while_loop: body_fn must return the same structure as init_val")
    for i, (a, v) in enumerate(zip(state, s_body.graph.outputs)):
        if tuple(a.shape) != tuple(v.aval.shape) or a.dtype != v.aval.dtype:
            raise ShapeError(f"dg.while_loop: loop state {i} changes from {a.dtype}{list(a.shape)} to {v.aval} "
                             f"in body_fn; the state must keep its shape and dtype")
    if len(outs_c) != 1 or tuple(outs_c[0].shape) != ():
        raise ShapeError("dg.while_loop: cond_fn must return a scalar (0-d) tensor")
    c = s_cond.graph.outputs[0]
    if c.aval.dtype != np.bool_:
        with using(s_cond):
            s_cond.graph.outputs = [s_cond.value_of(astype(outs_c[0], bool))]
    union = _align([s_cond, s_body], tr)
    extra = _outer_tensors(tr, union, [s_cond, s_body])
    outs = tr.apply(WHILE, (*state, *extra), {}, subgraphs={"cond": s_cond.graph, "body": s_body.graph})
    outs = outs if isinstance(outs, tuple) else (outs,)
    return tree_unflatten(tree, outs)
