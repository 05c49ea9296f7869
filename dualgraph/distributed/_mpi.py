"""The MPI transport (mpi4py): one process group over MPI.COMM_WORLD.

Every collective is MPI's non-blocking form (Iallreduce, Ibcast, ...) on the tensor's own numpy
buffer (MPI_IN_PLACE where the result lands in the input), and waiting polls the request against a
deadline: a peer that died or stopped calling collectives gives an error after the group's timeout
instead of a hang. mpi4py is imported here only, when init_process_group asks for it.
"""
import sys
import threading
import time

from ..errors import DTypeError, DualgraphError


class DistError(DualgraphError, RuntimeError):
    """A collective failed (PyTorch's torch.distributed.DistError)."""


class DistBackendError(DistError):
    """The transport failed or timed out (PyTorch's torch.distributed.DistBackendError)."""


def load_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistBackendError(
            f"backend 'mpi' needs mpi4py and an MPI library, which are not importable here ({e}): "
            f"pip install \"dualgraph[distributed]\" (mpi4py and MPICH from their wheels), then launch with "
            f"`mpiexec -n N python script.py`") from None
    return MPI


class MPIGroup:
    """All processes of MPI.COMM_WORLD (or a given communicator) as dualgraph's group 'world'."""

    name = "world"

    def __init__(self, MPI, comm, timeout):
        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = timeout
        self._progress_lock = threading.Lock()
        self._progress_users = 0
        self._progress_thread = self._progress_wake = None
        self._progress_stop = False
        # Dup is collective: made here, where every rank initializes, not when a backward first needs it
        self._progress_comm = comm.Dup()
        self._ops = {"sum": MPI.SUM, "avg": MPI.SUM, "product": MPI.PROD, "min": MPI.MIN, "max": MPI.MAX,
                     "band": MPI.BAND, "bor": MPI.BOR, "bxor": MPI.BXOR}

    # ---- progress while the caller computes ---------------------------------------------------------
    def progress_begin(self):
        """Drive MPI's progress engine from a helper thread until progress_end(): MPICH advances a
        non-blocking collective only inside MPI calls, so without it a reduction started mid-backward
        would wait for the next call the training thread makes. The thread probes a duplicate of the
        communicator (it never receives anything) and sleeps between probes, holding no core."""
        with self._progress_lock:
            self._progress_users += 1
            if self._progress_thread is None:
                self._progress_wake = threading.Event()
                self._progress_thread = threading.Thread(target=self._progress_loop, daemon=True,
                                                         name="dualgraph-mpi-progress")
                self._progress_thread.start()
            self._progress_wake.set()

    def progress_end(self):
        with self._progress_lock:
            self._progress_users = max(0, self._progress_users - 1)
            if self._progress_users == 0 and self._progress_wake is not None:
                self._progress_wake.clear()

    def _progress_loop(self):
        wake, comm = self._progress_wake, self._progress_comm
        while True:
            wake.wait()
            if self._progress_stop:
                return
            comm.Iprobe()
            time.sleep(5e-5)

    def close(self):
        thread = self._progress_thread
        if thread is not None:
            self._progress_stop = True
            self._progress_wake.set()
            thread.join(timeout=1.0)
            self._progress_thread = None

    def mpi_op(self, op, what):
        try:
            return self._ops[op]
        except KeyError:
            raise DistError(f"{what}: unknown reduce op {op!r}") from None

    @staticmethod
    def check_buffer(arr, what):
        if arr.dtype.kind == "f" and arr.dtype.itemsize == 2:
            raise DTypeError(f"{what}: MPI has no float16 reductions; cast the tensor to float32 first")

    # ---- what the op records call (blocking: a graph runs its nodes one after another) -----------
    def all_reduce(self, x, out, op):
        self.check_buffer(x, "all_reduce")
        req = self.comm.Iallreduce(x, out, op=self.mpi_op(op, "all_reduce"))
        self.wait(req, "all_reduce")
        if op == "avg":
            out /= self.size

    def broadcast(self, buf, src):
        self.check_src(src, "broadcast")
        self.wait(self.comm.Ibcast(buf, root=src), "broadcast")

    def check_src(self, src, what):
        if not (isinstance(src, int) and 0 <= src < self.size):
            raise DistError(f"{what}: rank {src!r} is not in the group (world size {self.size})")

    # ---- waiting with a deadline -------------------------------------------------------------------
    def wait(self, req, what, timeout=None):
        """Complete request `req`, or raise DistBackendError once `timeout` (the group's) has passed."""
        if req.Test():
            return
        limit = self.timeout if timeout is None else timeout
        start = time.perf_counter()
        deadline = start + limit
        # spin briefly (a collective usually completes within microseconds of the last peer arriving),
        # then poll with short sleeps so a rank waiting for a slower one leaves it the CPU
        spin_until = start + 2e-3
        pause = 5e-5
        while not req.Test():
            now = time.perf_counter()
            if now < spin_until:
                continue
            if now > deadline:
                raise DistBackendError(
                    f"{what} on rank {self.rank} (world size {self.size}) timed out after {limit:g} s waiting "
                    f"for the other ranks: one of them died, raised, or stopped calling the same collectives "
                    f"in the same order (timeout= of init_process_group sets the limit)")
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)


def abort_on_uncaught(group):
    """An excepthook that prints the exception, then MPI_Abort()s every rank: the other ranks stop at
    once instead of waiting for this one in their next collective."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        try:
            previous(exc_type, exc, tb)
            sys.stderr.write(f"dualgraph.distributed: rank {group.rank} of {group.size} raised "
                             f"{exc_type.__name__}; aborting every rank (MPI_Abort)\n")
            sys.stderr.flush()
            # mpiexec forwards each rank's output through a pipe it reads on its own schedule, and
            # MPI_Abort kills the job at once: without a pause the traceback above is often cut off
            time.sleep(0.5)
        finally:
            group.comm.Abort(1)
    return hook, previous
