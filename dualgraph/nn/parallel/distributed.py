"""DistributedDataParallel: every process holds a replica of the module, runs it on its share of the
batch, and backward averages the gradients over the processes, so that every replica takes the same
optimizer step (any optimizer: only `.grad` is touched).

Gradients are averaged in buckets of about `bucket_cap_mb`, filled in reverse parameter order (the
order backward produces them). Eagerly, each parameter's post-accumulate-grad hook copies its gradient
into its bucket; a full bucket starts a non-blocking all-reduce (MPI_Iallreduce, in place) while the
rest of backward runs; later hooks poll the requests so MPI progresses them; a callback at the end of
backward waits for the rest and writes the averaged gradients. Buckets start in the same order on every
rank (bucket k waits for bucket k-1), as MPI requires of collectives.

Inside `@dg.function` the same hooks run while backward is traced, and the end-of-backward callback
puts one all_reduce op per bucket into the graph: the compiled step holds its communication (the
executor runs those nodes blocking, in graph order).
"""
import contextlib
import os
import time

import numpy as np  # the bucket buffers handed to MPI (the 'mpi' backend is CPU-only)

from ... import distributed as dist
from ..._state import STATE
from ...autograd.graph import queue_callback
from ...autograd.modes import no_grad
from ...ops import collective as _coll
from ...ops.creation import from_numpy
from ...ops.shape import cat
from ..module import Module
from ...ops.creation import zeros_like


class _Bucket:
    __slots__ = ("index", "params", "offsets", "numel", "dtype", "buf")

    def __init__(self, index, params, dtype):
        self.index, self.params, self.dtype = index, params, dtype
        self.offsets, n = [], 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.numel = n
        self.buf = np.empty(n, dtype)


class DistributedDataParallel(Module):
    """torch.nn.parallel.DistributedDataParallel on dualgraph's process group (dg.distributed).

    At construction the parameters and buffers of rank 0 are copied to every rank. Each forward (with
    grad enabled, outside no_sync()) arms the reduction of the next backward; `broadcast_buffers`
    copies rank 0's buffers (BatchNorm statistics) before each forward. With find_unused_parameters,
    parameters that got no gradient on a rank count as zero there, and one whose gradient was unused
    on every rank keeps its .grad. `gradient_as_bucket_view=True` leaves each .grad a view of its bucket
    instead of a copy."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False, delay_all_reduce_named_params=None,
                 param_to_hook_all_reduce=None, mixed_precision=None, device_mesh=None):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a dg.nn.Module, got {type(module).__name__}")
        group = dist._resolve_group(process_group, "DistributedDataParallel")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
        self.require_backward_grad_sync = True
        self.bucket_cap_mb = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if not self.bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        object.__setattr__(self, "_group", group)
        named, seen = [], set()
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                named.append((name, p))
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any parameter "
                               "that requires a gradient")
        for name, p in named:
            if p.device.type != "cpu":
                raise RuntimeError(f"DistributedDataParallel: parameter {name} is on {p.device}; the 'mpi' backend "
                                   f"reduces CPU tensors")
        object.__setattr__(self, "_names", [n for n, _ in named])
        object.__setattr__(self, "_params", [p for _, p in named])
        object.__setattr__(self, "_module_buffers", [b for _, b in module.named_buffers()])
        self._verify_same_model()
        with no_grad():
            for t in self._params + self._module_buffers:
                dist.broadcast(t, 0)
        object.__setattr__(self, "_buckets", self._make_buckets())
        where = {}
        for b in self._buckets:
            for k, p in enumerate(b.params):
                where[id(p)] = (b, b.offsets[k])
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_index", {id(p): i for i, p in enumerate(self._params)})
        self._reset()
        object.__setattr__(self, "_armed", False)
        object.__setattr__(self, "_progress_on", False)
        # a helper thread drives MPI's progress while backward runs (DG_DDP_PROGRESS_THREAD=0: none)
        object.__setattr__(self, "_overlap", os.environ.get("DG_DDP_PROGRESS_THREAD", "1") != "0")
        # eager backward passes: seconds waited at their end, bytes reduced, bytes already reduced by then
        object.__setattr__(self, "comm_stats", {"wait_s": 0.0, "steps": 0, "bytes": 0, "overlapped_bytes": 0})
        object.__setattr__(self, "_handles", [p.register_post_accumulate_grad_hook(self._grad_ready)
                                              for p in self._params])

    # ---- setup ---------------------------------------------------------------------------------
    def _verify_same_model(self):
        mine = [(n, tuple(p.shape), str(p.dtype)) for n, p in zip(self._names, self._params)]
        mine += [("buffer", tuple(b.shape), str(b.dtype)) for b in self._module_buffers]
        everyone = self._group.comm.allgather(mine)
        for r, theirs in enumerate(everyone):
            if theirs != mine:
                diff = next((f"{a} vs {b}" for a, b in zip(mine, theirs) if a != b),
                            f"{len(mine)} vs {len(theirs)} tensors")
                raise RuntimeError(f"DistributedDataParallel: rank {self._group.rank}'s module differs from rank "
                                   f"{r}'s (parameters and buffers must have the same names, shapes and dtypes "
                                   f"everywhere): {diff}")

    def _make_buckets(self):
        """Buckets in reverse parameter order, one dtype each, about bucket_cap_mb bytes."""
        cap = self.bucket_cap_mb * 1024 * 1024
        buckets, open_ = [], {}
        for p in reversed(self._params):
            dt = np.dtype(p.dtype)
            cur = open_.get(dt)
            if cur is not None and cur[1] + p.numel() * dt.itemsize > cap:
                buckets.append(_Bucket(len(buckets), cur[0], dt))
                cur = None
            if cur is None:
                cur = open_[dt] = [[], 0]
            cur[0].append(p)
            cur[1] += p.numel() * dt.itemsize
        for dt, cur in open_.items():
            buckets.append(_Bucket(len(buckets), cur[0], dt))
        return buckets

    def _reset(self):
        object.__setattr__(self, "_ready", [False] * len(self._params))
        object.__setattr__(self, "_nready", 0)
        object.__setattr__(self, "_pending", [len(b.params) for b in self._buckets])
        object.__setattr__(self, "_next", 0)
        object.__setattr__(self, "_reqs", [])

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        if self._nready:
            missing = [n for n, r in zip(self._names, self._ready) if not r]
            self._reset()
            raise RuntimeError(
                "Expected to have finished reduction in the prior iteration before starting a new one: "
                f"parameters that did not receive a gradient in the last backward: {', '.join(missing)}. "
                "Pass find_unused_parameters=True to DistributedDataParallel if the module's forward does not "
                "use every parameter, and make sure every output that the loss reads comes from the forward")
        object.__setattr__(self, "_armed", STATE.grad_enabled and self.require_backward_grad_sync)
        if self.broadcast_buffers and self._module_buffers:
            with no_grad():
                for b in self._module_buffers:
                    dist.broadcast(b, 0)
        return self.module(*inputs, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes of forwards run inside accumulate gradients locally; the first synced backward
        after it averages the accumulated gradients."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    # ---- backward: the hooks ----------------------------------------------------------------------
    def _grad_ready(self, p):
        if not self._armed:
            return
        i = self._index[id(p)]
        if self._ready[i]:
            raise RuntimeError(
                f"DistributedDataParallel: parameter {self._names[i]} got a gradient twice before its reduction "
                f"finished: run a forward through the DistributedDataParallel module before each backward")
        if self._nready == 0:
            queue_callback(self._finish)
        self._ready[i] = True
        self._nready += 1
        if STATE.mode.symbolic:
            return  # traced: _finish puts the reductions into the graph
        b, off = self._where[id(p)]
        g = p.grad
        b.buf[off:off + p.numel()] = g._data.reshape(-1)
        self._pending[b.index] -= 1
        if self._pending[b.index] == 0:
            self._launch_ready()
        elif self._reqs:
            self._group.MPI.Request.Testall(self._reqs)  # lets MPI progress the reductions in flight

    def _launch_ready(self):
        g = self._group
        while self._next < len(self._buckets) and self._pending[self._next] == 0:
            b = self._buckets[self._next]
            if not self._reqs and self._overlap:
                g.progress_begin()
                object.__setattr__(self, "_progress_on", True)
            self._reqs.append(g.comm.Iallreduce(g.MPI.IN_PLACE, b.buf, op=g.MPI.SUM))
            self._next += 1

    def _finish(self):
        """End of backward: the remaining reductions, then the averaged gradients into .grad."""
        try:
            missing = [i for i, r in enumerate(self._ready) if not r]
            if missing and not self.find_unused_parameters:
                names = [self._names[i] for i in missing]
                raise RuntimeError(
                    f"DistributedDataParallel: parameters that did not receive a gradient in this backward: "
                    f"{', '.join(names)}. Pass find_unused_parameters=True if the forward does not use every "
                    f"parameter (their gradients then count as zero on this rank)")
            if STATE.mode.symbolic:
                self._finish_traced(missing)
            else:
                self._finish_eager(missing)
        finally:
            self._progress_off()  # also when this backward ends in an error
            self._reset()
            if STATE.mode.symbolic:
                object.__setattr__(self, "_armed", False)

    def _progress_off(self):
        if self._progress_on:
            object.__setattr__(self, "_progress_on", False)
            self._group.progress_end()

    def _finish_eager(self, missing):
        for i in missing:
            p = self._params[i]
            b, off = self._where[id(p)]
            b.buf[off:off + p.numel()] = 0
            self._pending[b.index] -= 1
        self._launch_ready()
        g = self._group
        stats = self.comm_stats
        # buckets whose reduction already finished while backward ran: the communication it hid
        stats["overlapped_bytes"] += sum(b.buf.nbytes for b, req in zip(self._buckets, self._reqs) if req.Test())
        stats["bytes"] += sum(b.buf.nbytes for b in self._buckets)
        t0 = time.perf_counter()
        try:
            for req in self._reqs:
                g.wait(req, "DistributedDataParallel gradient all_reduce")
        finally:
            self._progress_off()
        used = None
        if self.find_unused_parameters:
            used = np.ones(len(self._params), np.uint8)
            used[missing] = 0
            g.wait(g.comm.Iallreduce(g.MPI.IN_PLACE, used, op=g.MPI.MAX), "DistributedDataParallel unused parameters")
        stats["wait_s"] += time.perf_counter() - t0
        stats["steps"] += 1
        for b in self._buckets:
            b.buf /= g.size
            for p, off in zip(b.params, b.offsets):
                if used is not None and not used[self._index[id(p)]]:
                    continue  # unused on every rank: its .grad stays as it was
                view = b.buf[off:off + p.numel()].reshape(p.shape)
                p.grad = from_numpy(view if self.gradient_as_bucket_view else view.copy())

    def _finish_traced(self, missing):
        absent = {id(self._params[i]) for i in missing}
        for b in self._buckets:
            parts = [(zeros_like(p) if id(p) in absent else p.grad).reshape(-1) for p in b.params]
            red = _coll.all_reduce_op(cat(parts) if len(parts) > 1 else parts[0], "avg", self._group.name)
            for p, off in zip(b.params, b.offsets):
                p.grad = red[off:off + p.numel()].reshape(p.shape)

    def extra_repr(self):
        return (f"world_size={self._group.size}, buckets={len(self._buckets)}, "
                f"bucket_cap_mb={self.bucket_cap_mb:g}")


__all__ = ["DistributedDataParallel"]
