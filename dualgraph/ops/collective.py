"""Collective communication as ops: all_reduce and broadcast across the processes of a group.

They are op records like any other, so a `@dg.function` training step over DistributedDataParallel
holds its gradient all-reduce as nodes of the graph, and every mode reads one definition. The records
know groups only by name (an attribute of the node); the transport behind a name is registered here
by `dualgraph.distributed` (MPI through mpi4py). `"self"` is the group of this one process, where both
collectives are the identity: it needs no transport, and is what the op table exercises the records on.

Every process must issue the same collectives in the same order; the graph runs its nodes in order,
and every process compiles the same graph with the same passes. So the records are `pure` (a result is
a function of the inputs on all processes: CSE merging two equal reductions, or DCE dropping an unused
one, does it on every process alike) but not `foldable` (folding would run one at compile time).
"""
from ..dispatch import apply
from ..errors import DTypeError, DualgraphError, InvalidValue
from ..graph.avals import Aval
from .onnx_rules import not_exportable
from .registry import defop

REDUCE_OPS = ("sum", "avg", "product", "min", "max", "band", "bor", "bxor")


class SelfGroup:
    """The group of this process alone: rank 0 of 1. Reductions over one process return the input."""

    name = "self"
    rank = 0
    size = 1

    def all_reduce(self, x, out, op):
        out[...] = x

    def broadcast(self, buf, src):
        if src != 0:
            raise InvalidValue(f"broadcast: src={src} is not a rank of the one-process group 'self'")


GROUPS = {"self": SelfGroup()}


def group_named(name, what):
    group = GROUPS.get(name)
    if group is None:
        if name == "world":
            raise DualgraphError(f"{what}: the default process group is not initialized: call "
                                 f"dg.distributed.init_process_group(backend='mpi') first (and launch with "
                                 f"`mpiexec -n N python script.py`)")
        raise DualgraphError(f"{what}: no process group named {name!r} (known: {sorted(GROUPS)})")
    return group


_EXPORT = not_exportable("collective communication across processes has no ONNX form (an exported model "
                         "runs in one process): export the module itself, not the DistributedDataParallel "
                         "training step")


def _check_reduce(x, op):
    if op not in REDUCE_OPS:
        raise InvalidValue(f"all_reduce: unknown reduce op {op!r} (one of {', '.join(REDUCE_OPS)})")
    kind = x.dtype.kind
    if op == "avg" and kind not in "fc":
        raise DTypeError(f"all_reduce: op='avg' needs a floating tensor, got {x.dtype}")
    if op in ("band", "bor", "bxor") and kind not in "iub":
        raise DTypeError(f"all_reduce: op={op!r} needs an integer or bool tensor, got {x.dtype}")


def _all_reduce_forward(xp, x, op, group):
    _check_reduce(x, op)
    out = xp.empty(x.shape, x.dtype)  # a value of the graph is never written in place: a fresh result
    group_named(group, "all_reduce").all_reduce(xp.ascontiguousarray(x), out, op)
    return out


def _all_reduce_infer(x, op, group):
    _check_reduce(x, op)
    return Aval(x.shape, x.dtype)


def _all_reduce_vjp(ctx, g):
    op = ctx.attrs["op"]
    if op not in ("sum", "avg"):
        raise DualgraphError(f"all_reduce: op={op!r} has no gradient (sum and avg do)")
    # each process's loss reads the reduced value: the gradient of the reduction's input sums (or
    # averages) the gradients every process sends back, which is the same collective on g
    return (all_reduce_op(g, op, ctx.attrs["group"]),)


ALL_REDUCE = defop("all_reduce", _all_reduce_forward, _all_reduce_infer, _all_reduce_vjp,
                   foldable=False, onnx=_EXPORT,
                   doc="the reduction (op) of x over every process of the group, on every process")


def _broadcast_forward(xp, x, src, group):
    out = xp.array(x, copy=True)
    group_named(group, "broadcast").broadcast(out, src)
    return out


BROADCAST = defop("broadcast", _broadcast_forward, lambda x, src, group: Aval(x.shape, x.dtype), None,
                  differentiable=False, foldable=False, onnx=_EXPORT,
                  doc="process src's x, on every process of the group")


def all_reduce_op(x, op="sum", group="world"):
    """The all_reduce op on tensor x (out of place; dg.distributed.all_reduce is the in-place API)."""
    return apply(ALL_REDUCE, (x,), {"op": op, "group": group})


def broadcast_op(x, src=0, group="world"):
    return apply(BROADCAST, (x,), {"src": src, "group": group})


__all__ = ["ALL_REDUCE", "BROADCAST", "GROUPS", "REDUCE_OPS", "SelfGroup", "all_reduce_op", "broadcast_op"]
