"""dg.distributed: data-parallel training across processes, with torch.distributed's names.

    import dualgraph as dg
    import dualgraph.distributed as dist
    dist.init_process_group(backend="mpi")        # rank and world size from MPI
    model = dg.nn.parallel.DistributedDataParallel(net)

launched with `mpiexec -n N python train.py` (see docs/distributed.md). The transport is MPI through
mpi4py (`pip install "dualgraph[distributed]"` brings mpi4py and MPICH). Collectives work in place
on the tensors' own buffers; `async_op=True` returns a `Work` to wait() on. Inside `@dg.function`,
all_reduce and broadcast are ops of the traced graph (dualgraph.ops.collective).
"""
import datetime as _datetime
import enum as _enum
import sys as _sys

import numpy as _np  # host buffers handed to MPI: the 'mpi' backend works on CPU tensors only

from .._state import STATE
from ..backend import CPU
from ..errors import DualgraphError, ShapeError
from ..ops import collective as _coll
from ..tensor import Tensor
from ._mpi import DistBackendError, DistError, MPIGroup, abort_on_uncaught, load_mpi


class ReduceOp(str, _enum.Enum):
    """torch.distributed.ReduceOp. AVG is for floating tensors."""
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"


class Backend:
    MPI = "mpi"
    NCCL = "nccl"
    GLOO = "gloo"


class _GroupMember:
    """dist.group.WORLD: the default group (what group=None means)."""
    WORLD = "world"


group = GroupMember = _GroupMember

_DEFAULT_TIMEOUT = _datetime.timedelta(minutes=30)  # PyTorch's default for CPU backends
_PG = {}  # "group": the initialized MPIGroup, "backend", "hook": the excepthook we replaced


class NotInitializedError(DualgraphError, ValueError):
    pass


# ---- availability and the default group ------------------------------------------------------------

def is_available():
    return True


def is_mpi_available():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_nccl_available():
    return False


def is_gloo_available():
    return False


def is_initialized():
    return "group" in _PG


def _default_group(what="this call"):
    g = _PG.get("group")
    if g is None:
        raise NotInitializedError(f"{what}: the default process group has not been initialized; call "
                                  f"dg.distributed.init_process_group(backend='mpi') first")
    return g


def _resolve_group(grp, what):
    if grp is None or grp == "world" or grp is _PG.get("group"):
        return _default_group(what)
    raise DistError(f"{what}: only the default group (group=None) is supported, got {grp!r}")


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None, device_id=None):
    """Join the default process group. backend='mpi' (the default): rank and world size come from MPI
    (`mpiexec -n N`); `world_size`/`rank`, if given, must agree with it. `timeout` (a timedelta or
    seconds; 30 minutes by default) bounds every wait for the other ranks. An uncaught exception on any
    rank then aborts every rank (MPI_Abort) instead of leaving the others waiting."""
    if is_initialized():
        raise DistError("trying to initialize the default process group twice!")
    name = (backend or "mpi").lower() if isinstance(backend, str) or backend is None else backend
    if name == "nccl":
        import importlib.util
        here = ("cupy is not installed" if importlib.util.find_spec("cupy") is None
                else "cupy is installed, but dualgraph has no NCCL transport yet")
        raise DistBackendError(
            f"backend 'nccl' (GPU tensors through cupy's NCCL bindings) is not available: {here}. Use "
            f"backend='mpi' with CPU tensors")
    if name != "mpi":
        raise DistBackendError(f"backend {backend!r} is not available in dualgraph; use backend='mpi' "
                               f"(MPI through mpi4py)")
    if init_method not in (None, "env://") or store is not None:
        raise DistError("backend 'mpi' takes rank and world size from MPI: init_method and store are not used")
    MPI = load_mpi()
    if timeout is None:
        timeout = _DEFAULT_TIMEOUT
    seconds = timeout.total_seconds() if isinstance(timeout, _datetime.timedelta) else float(timeout)
    if not seconds > 0:
        raise DistError(f"init_process_group: timeout must be positive, got {timeout!r}")
    g = MPIGroup(MPI, MPI.COMM_WORLD, seconds)
    if world_size not in (-1, None) and world_size != g.size:
        raise DistError(f"init_process_group: world_size={world_size} but MPI started {g.size} processes "
                        f"(mpiexec -n {g.size})")
    if rank not in (-1, None) and rank != g.rank:
        raise DistError(f"init_process_group: rank={rank} but MPI says this process is rank {g.rank}")
    hook, previous = abort_on_uncaught(g)
    _sys.excepthook = hook
    _PG.update(group=g, backend="mpi", hook=hook, previous_hook=previous)
    _coll.GROUPS["world"] = g


def destroy_process_group(group=None):
    """Leave the default group (MPI itself stays initialized until the process exits)."""
    if not is_initialized():
        raise NotInitializedError("destroy_process_group: the default process group has not been initialized")
    if _sys.excepthook is _PG["hook"]:
        _sys.excepthook = _PG["previous_hook"]
    _coll.GROUPS.pop("world", None)
    _PG["group"].close()
    _PG.clear()


def get_rank(group=None):
    return _resolve_group(group, "get_rank").rank


def get_world_size(group=None):
    return _resolve_group(group, "get_world_size").size


def get_backend(group=None):
    _resolve_group(group, "get_backend")
    return _PG["backend"]


# ---- Work: a collective in flight ------------------------------------------------------------------

class Work:
    """What a collective with async_op=True returns: wait() completes it (and raises DistBackendError
    after the group's timeout), is_completed() polls without blocking."""

    def __init__(self, group, req, what, finish=None):
        self._group, self._req, self._what, self._finish = group, req, what, finish
        self._done = req is None
        if self._done and finish is not None:
            finish()

    def _complete(self):
        self._done = True
        self._req = None
        if self._finish is not None:
            self._finish()
            self._finish = None

    def is_completed(self):
        if not self._done and self._req.Test():
            self._complete()
        return self._done

    def wait(self, timeout=None):
        if not self._done:
            seconds = timeout.total_seconds() if isinstance(timeout, _datetime.timedelta) else timeout
            self._group.wait(self._req, self._what, seconds)
            self._complete()
        return True

    def is_success(self):
        return self._done


def _run(group, req, what, async_op, finish=None):
    work = Work(group, req, what, finish)
    if async_op:
        return work
    work.wait()
    return None


# ---- buffers ----------------------------------------------------------------------------------------

def _check_tensor(t, what, name="tensor"):
    if not isinstance(t, Tensor):
        raise DistError(f"{what}: {name} must be a dg.Tensor, got {type(t).__name__}")
    if t._symbolic:
        raise DistError(f"{what}: cannot run on a traced tensor inside @dg.function (all_reduce and broadcast "
                        f"can; do {what} outside the compiled function)")
    if t._device is not CPU:
        raise DistError(f"{what}: {name} is on {t._device}; backend 'mpi' works on CPU tensors (the 'nccl' "
                        f"backend for GPU tensors is not available)")
    return t._data


def _buffer(t, what, name="tensor"):
    """(array to hand MPI, function copying it back or None): the tensor's own array when contiguous."""
    data = _check_tensor(t, what, name)
    MPIGroup.check_buffer(data, what)
    if data.flags.c_contiguous:
        return data, None
    tmp = data.copy(order="C")

    def back():
        data[...] = tmp
    return tmp, back


def _bump(*tensors):
    for t in tensors:
        t._version[0] += 1


def _chain(*fns):
    fns = [f for f in fns if f is not None]
    if not fns:
        return None

    def run():
        for f in fns:
            f()
    return run


def _op_name(op, what):
    try:
        name = ReduceOp(op).value if not isinstance(op, ReduceOp) else op.value
    except ValueError:
        raise DistError(f"{what}: unknown reduce op {op!r} (dg.distributed.ReduceOp.SUM/AVG/PRODUCT/MIN/MAX/"
                        f"BAND/BOR/BXOR)") from None
    return name


def _avg_finish(arr, size, op, what):
    if op != "avg":
        return None
    if arr.dtype.kind not in "fc":
        raise DistError(f"{what}: ReduceOp.AVG needs a floating tensor, got {arr.dtype}")

    def div():
        _np.divide(arr, size, out=arr)
    return div


# ---- collectives --------------------------------------------------------------------------------------

def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce `tensor` over every rank, in place, on every rank. Inside @dg.function it is an op of
    the graph (the tensor is rebound to the reduced value)."""
    name = _op_name(op, "all_reduce")
    if isinstance(tensor, Tensor) and tensor._symbolic:
        g = _resolve_group(group, "all_reduce")
        STATE.mode.inplace(tensor, lambda x: _coll.all_reduce_op(x, name, g.name), None, "all_reduce")
        return Work(g, None, "all_reduce") if async_op else None
    g = _resolve_group(group, "all_reduce")
    buf, back = _buffer(tensor, "all_reduce")
    finish = _chain(_avg_finish(buf, g.size, name, "all_reduce"), back)
    _coll._check_reduce(buf, name)
    req = g.comm.Iallreduce(g.MPI.IN_PLACE, buf, op=g.mpi_op(name, "all_reduce"))
    _bump(tensor)
    return _run(g, req, "all_reduce", async_op, finish)


def broadcast(tensor, src, group=None, async_op=False, group_src=None):
    """Rank src's tensor, copied into `tensor` on every rank (in place)."""
    if group_src is not None:
        src = group_src
    g = _resolve_group(group, "broadcast")
    g.check_src(src, "broadcast")
    if isinstance(tensor, Tensor) and tensor._symbolic:
        STATE.mode.inplace(tensor, lambda x: _coll.broadcast_op(x, src, g.name), None, "broadcast")
        return Work(g, None, "broadcast") if async_op else None
    buf, back = _buffer(tensor, "broadcast")
    req = g.comm.Ibcast(buf, root=src)
    if g.rank != src:
        _bump(tensor)
    return _run(g, req, "broadcast", async_op, back)


def _like(t, ref, what, name):
    if tuple(t.shape) != tuple(ref.shape) or t.dtype != ref.dtype:
        raise ShapeError(f"{what}: {name} is {t.dtype}{list(t.shape)}, expected {ref.dtype}{list(ref.shape)} "
                         f"like the input tensor")


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """tensor_list[r] = rank r's tensor, on every rank."""
    g = _resolve_group(group, "all_gather")
    if len(tensor_list) != g.size:
        raise DistError(f"all_gather: tensor_list has {len(tensor_list)} tensors, the world has {g.size} ranks")
    send, _ = _buffer(tensor, "all_gather")
    for i, t in enumerate(tensor_list):
        _check_tensor(t, "all_gather", f"tensor_list[{i}]")
        _like(t, tensor, "all_gather", f"tensor_list[{i}]")
    recv = _np.empty((g.size,) + send.shape, send.dtype)
    req = g.comm.Iallgather(send, recv)

    def finish():
        for t, part in zip(tensor_list, recv):
            t._data[...] = part
    _bump(*tensor_list)
    return _run(g, req, "all_gather", async_op, finish)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Every rank's input, concatenated along dim 0 (or stacked on a new dim 0) into output_tensor."""
    g = _resolve_group(group, "all_gather_into_tensor")
    send, _ = _buffer(input_tensor, "all_gather_into_tensor", "input_tensor")
    recv, back = _buffer(output_tensor, "all_gather_into_tensor", "output_tensor")
    if recv.size != g.size * send.size or recv.dtype != send.dtype:
        raise ShapeError(f"all_gather_into_tensor: output_tensor is {recv.dtype}{list(recv.shape)}, needs "
                         f"{g.size} x {send.dtype}{list(send.shape)} (world size times the input)")
    req = g.comm.Iallgather(send, recv)
    _bump(output_tensor)
    return _run(g, req, "all_gather_into_tensor", async_op, back)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """output on rank r = the reduction over ranks of input_list[r]."""
    g = _resolve_group(group, "reduce_scatter")
    name = _op_name(op, "reduce_scatter")
    if len(input_list) != g.size:
        raise DistError(f"reduce_scatter: input_list has {len(input_list)} tensors, the world has {g.size} ranks")
    for i, t in enumerate(input_list):
        _check_tensor(t, "reduce_scatter", f"input_list[{i}]")
        _like(t, output, "reduce_scatter", f"input_list[{i}]")
    send = _np.concatenate([t._data.reshape(-1) for t in input_list])  # MPI needs the parts in one buffer
    recv, back = _buffer(output, "reduce_scatter", "output")
    _coll._check_reduce(recv, name)
    req = g.comm.Ireduce_scatter_block(send, recv, op=g.mpi_op(name, "reduce_scatter"))
    _bump(output)
    return _run(g, req, "reduce_scatter", async_op, _chain(_avg_finish(recv, g.size, name, "reduce_scatter"), back))


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """output on rank r = the reduction over ranks of block r of input (input: world size x output)."""
    g = _resolve_group(group, "reduce_scatter_tensor")
    name = _op_name(op, "reduce_scatter_tensor")
    send, _ = _buffer(input, "reduce_scatter_tensor", "input")
    recv, back = _buffer(output, "reduce_scatter_tensor", "output")
    if send.size != g.size * recv.size or recv.dtype != send.dtype:
        raise ShapeError(f"reduce_scatter_tensor: input is {send.dtype}{list(send.shape)}, needs {g.size} x "
                         f"{recv.dtype}{list(recv.shape)} (world size times the output)")
    _coll._check_reduce(recv, name)
    req = g.comm.Ireduce_scatter_block(send, recv, op=g.mpi_op(name, "reduce_scatter_tensor"))
    _bump(output)
    return _run(g, req, "reduce_scatter_tensor", async_op,
                _chain(_avg_finish(recv, g.size, name, "reduce_scatter_tensor"), back))


def gather(tensor, gather_list=None, dst=0, group=None, async_op=False):
    """On rank dst, gather_list[r] = rank r's tensor; other ranks pass gather_list=None."""
    g = _resolve_group(group, "gather")
    g.check_src(dst, "gather")
    send, _ = _buffer(tensor, "gather")
    recv = finish = None
    if g.rank == dst:
        if gather_list is None or len(gather_list) != g.size:
            raise DistError(f"gather: rank {dst} (dst) needs a gather_list of {g.size} tensors")
        for i, t in enumerate(gather_list):
            _check_tensor(t, "gather", f"gather_list[{i}]")
            _like(t, tensor, "gather", f"gather_list[{i}]")
        recv = _np.empty((g.size,) + send.shape, send.dtype)

        def finish():
            for t, part in zip(gather_list, recv):
                t._data[...] = part
        _bump(*gather_list)
    elif gather_list:
        raise DistError(f"gather: only rank {dst} (dst) takes a gather_list")
    req = g.comm.Igather(send, recv, root=dst)
    return _run(g, req, "gather", async_op, finish)


def scatter(tensor, scatter_list=None, src=0, group=None, async_op=False):
    """tensor on rank r = scatter_list[r] of rank src; other ranks pass scatter_list=None."""
    g = _resolve_group(group, "scatter")
    g.check_src(src, "scatter")
    recv, back = _buffer(tensor, "scatter")
    send = None
    if g.rank == src:
        if scatter_list is None or len(scatter_list) != g.size:
            raise DistError(f"scatter: rank {src} (src) needs a scatter_list of {g.size} tensors")
        for i, t in enumerate(scatter_list):
            _check_tensor(t, "scatter", f"scatter_list[{i}]")
            _like(t, tensor, "scatter", f"scatter_list[{i}]")
        send = _np.stack([t._data for t in scatter_list])
    elif scatter_list:
        raise DistError(f"scatter: only rank {src} (src) takes a scatter_list")
    req = g.comm.Iscatter(send, recv, root=src)
    _bump(tensor)
    return _run(g, req, "scatter", async_op, back)


def barrier(group=None, async_op=False, device_ids=None):
    """Wait until every rank reaches the barrier (or the group's timeout passes)."""
    g = _resolve_group(group, "barrier")
    return _run(g, g.comm.Ibarrier(), "barrier", async_op)


__all__ = ["Backend", "DistBackendError", "DistError", "GroupMember", "ReduceOp", "Work", "all_gather",
           "all_gather_into_tensor", "all_reduce", "barrier", "broadcast", "destroy_process_group", "gather",
           "get_backend", "get_rank", "get_world_size", "group", "init_process_group", "is_available",
           "is_gloo_available", "is_initialized", "is_mpi_available", "is_nccl_available", "reduce_scatter",
           "reduce_scatter_tensor", "scatter"]
