"""dg.distributed, DistributedDataParallel and DistributedSampler.

The tests that need several processes start `mpiexec -n N` on this file itself (`python
tests/test_distributed.py <scenario> ...` runs one rank of a scenario, below) with a timeout on every
launch; they skip when mpi4py is not installed (`pip install "dualgraph[distributed]"`). Each rank
checks its own results against an independent reference it computes alone (numpy, or one process
training on the whole batch) and fails loudly (an uncaught exception aborts every rank), so the test
asserts that the launch succeeded and reads what the ranks report.
"""
import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import dualgraph as dg

HAVE_MPI = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="mpi4py is not installed (pip install \"dualgraph[distributed]\")")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(here):
        return here
    import shutil
    found = shutil.which("mpiexec")
    if found is None:
        pytest.skip("mpi4py is installed but no mpiexec was found")
    return found


def launch(n, scenario, *args, timeout=240, script=None):
    """Run `scenario` on n ranks (or `script` with args); (returncode, combined output, seconds)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    target = [os.path.abspath(__file__), scenario] if script is None else [script]
    cmd = [_mpiexec(), "-n", str(n), sys.executable, *target, *map(str, args)]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"mpiexec -n {n} {scenario} hung past {timeout} s:\n{out[-4000:]}")
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t0


# ---- several processes -----------------------------------------------------------------------------

@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_collectives_and_data_parallel_training_match_one_process(n):
    code, out, _ = launch(n, "all")
    assert code == 0, out[-6000:]
    for r in range(n):
        assert f"rank {r}/{n} ok" in out, out[-6000:]


@needs_mpi
@pytest.mark.parametrize("how", ["raise", "exit", "hang"])
def test_a_failing_rank_stops_every_rank(how):
    """A rank that raises (the excepthook aborts every rank), exits early (mpiexec ends the job), or stops
    calling collectives (the others' wait times out after the group's timeout) never leaves a hang."""
    code, out, seconds = launch(2, "fail_" + how, timeout=90)
    assert code != 0, out[-4000:]
    assert seconds < 80
    assert "rank 0 finished" not in out
    if how == "raise":
        assert "ValueError: rank 1 broke" in out and "aborting every rank (MPI_Abort)" in out, out[-4000:]
    if how == "hang":
        assert "timed out after 2 s waiting for the other ranks" in out, out[-4000:]


@needs_mpi
def test_the_distributed_digits_example_trains_on_two_processes():
    pytest.importorskip("sklearn")
    code, out, _ = launch(2, None, "--epochs", "2", script=os.path.join(ROOT, "examples", "distributed_digits.py"))
    assert code == 0, out[-4000:]
    line = next(ln for ln in out.splitlines() if ln.startswith("test accuracy:"))
    assert "replicas identical: True" in line, line
    assert float(line.split()[2].rstrip("%")) > 85.0, line


# ---- one process: no MPI needed ------------------------------------------------------------------------

def test_post_accumulate_grad_hooks_run_mid_backward_in_reverse_layer_order():
    """The hook of a later layer's weight runs before an earlier layer's gradient exists (what lets DDP
    start reducing it while backward goes on), sees the accumulated .grad, and end-of-backward callbacks
    run after every leaf is written."""
    from dualgraph.autograd.graph import queue_callback
    dg.manual_seed(0)
    net = dg.nn.Sequential(dg.nn.Linear(3, 4), dg.nn.Tanh(), dg.nn.Linear(4, 2))
    w0, w1 = net[0].weight, net[2].weight
    seen = []

    def on_w1(t):
        seen.append(("w1", w0.grad is None, t.grad.numpy().copy()))
        queue_callback(lambda: seen.append(("end", w0.grad is not None)))

    w1.register_post_accumulate_grad_hook(on_w1)
    h = w0.register_post_accumulate_grad_hook(lambda t: seen.append(("w0", True, t.grad.numpy().copy())))
    x = dg.tensor(np.arange(6, dtype=np.float32).reshape(2, 3) / 6)
    net(x).sum().backward()
    assert [s[0] for s in seen] == ["w1", "w0", "end"]
    assert seen[0][1] is True and seen[2][1] is True
    # the .grad the hook saw is the gradient: d(sum)/dW1 = 1^T tanh(h)
    hidden = np.tanh(x.numpy() @ net[0].weight.numpy().T + net[0].bias.numpy())
    np.testing.assert_allclose(seen[0][2], np.ones((2, 2), np.float32).T @ hidden, rtol=1e-5)
    # a second backward accumulates, and the hook sees the sum; a removed hook stays silent
    h.remove()
    seen.clear()
    net(x).sum().backward()
    assert [s[0] for s in seen] == ["w1", "end"]
    np.testing.assert_allclose(seen[0][2], 2 * np.ones((2, 2), np.float32).T @ hidden, rtol=1e-5)
    with pytest.raises(dg.AutogradError, match="leaf"):
        (x * 1).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(dg.AutogradError, match="no backward pass is running"):
        queue_callback(lambda: None)


def test_post_accumulate_grad_hooks_run_while_tracing():
    """Inside @dg.function the hooks run on the traced gradient (once, at trace time) and may replace it:
    the compiled step keeps what they did."""
    w = dg.tensor([1.0, 2.0], requires_grad=True)
    calls = []

    def hook(t):
        calls.append(1)
        t.grad = t.grad * 10.0

    w.register_post_accumulate_grad_hook(hook)

    @dg.function
    def step(x):
        w.grad = None
        (w * x).sum().backward()
        return w.grad

    x = dg.tensor([3.0, 4.0])
    for _ in range(3):
        g = step(x)
    assert len(calls) == step.trace_count
    np.testing.assert_allclose(g.numpy(), [30.0, 40.0])
    np.testing.assert_allclose(w.grad.numpy(), [30.0, 40.0])


def test_collective_ops_on_the_one_process_group_and_export_refusal():
    from dualgraph.ops.collective import all_reduce_op, broadcast_op
    x = dg.tensor(np.array([[1.0, -2.0], [3.0, 0.5]], np.float32), requires_grad=True)
    for op in ("sum", "avg", "max", "min", "product"):
        np.testing.assert_array_equal(all_reduce_op(x, op, "self").detach().numpy(), x.detach().numpy())
    (all_reduce_op(x, "avg", "self") * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 2), 3.0, np.float32))
    with pytest.raises(dg.DualgraphError, match="op='max' has no gradient"):
        all_reduce_op(x, "max", "self").sum().backward()
    with pytest.raises(dg.DTypeError, match="avg.*floating"):
        all_reduce_op(dg.tensor([1, 2]), "avg", "self")
    with pytest.raises(dg.DualgraphError, match="not initialized.*init_process_group"):
        all_reduce_op(x, "sum", "world")
    with pytest.raises(dg.DualgraphError, match="not a rank"):
        broadcast_op(x, 1, "self")

    import dualgraph.onnx as dgo

    def reduced(a):
        return all_reduce_op(a * 2.0, "sum", "self")
    with pytest.raises(dgo.ExportError, match="all_reduce at .*collective communication"):
        dgo.export(reduced, (dg.ones(2, 2),), None)


def test_errors_without_a_process_group():
    dist = dg.distributed
    assert not dist.is_initialized() and dist.is_available()
    with pytest.raises(ValueError, match="not been initialized"):
        dist.get_rank()
    with pytest.raises(ValueError, match="not been initialized"):
        dist.all_reduce(dg.ones(2))
    with pytest.raises(ValueError, match="not been initialized"):
        dg.nn.parallel.DistributedDataParallel(dg.nn.Linear(2, 2))
    with pytest.raises(dist.DistBackendError, match="nccl.*cupy"):
        dist.init_process_group("nccl")
    with pytest.raises(dist.DistBackendError, match="'gloo' is not available"):
        dist.init_process_group("gloo")
    assert dist.ReduceOp.SUM == "sum" and dist.ReduceOp("avg") is dist.ReduceOp.AVG


# ---- DistributedSampler ------------------------------------------------------------------------------------

def _shards(n, replicas, **kw):
    return [list(dg.utils.data.DistributedSampler(range(n), replicas, r, **kw)) for r in range(replicas)]


def test_distributed_sampler_by_hand():
    # 10 indices on 3 replicas: padded with the first 2 to 12, every 3rd from each rank's position
    assert _shards(10, 3, shuffle=False) == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    # drop_last cuts to 9
    assert _shards(10, 3, shuffle=False, drop_last=True) == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    # more padding than data: the indices repeat as often as needed
    assert _shards(2, 5, shuffle=False) == [[0], [1], [0], [1], [0]]
    s = dg.utils.data.DistributedSampler(range(10), 3, 1, seed=7)
    assert len(s) == 4
    e0 = list(s)
    assert e0 == list(s)                      # same epoch, same order
    s.set_epoch(1)
    assert list(s) != e0
    # every rank draws the same permutation: the shards of one epoch cover the data, padded
    parts = _shards(10, 3, seed=7)
    flat = sorted(i for p in parts for i in p)
    assert set(flat) == set(range(10)) and len(flat) == 12
    perm = np.random.default_rng(7).permutation(10).tolist()
    perm += perm[:2]
    assert parts == [perm[r::3] for r in range(3)]
    with pytest.raises(ValueError, match=r"Invalid rank 3, rank should be in the interval \[0, 2\]"):
        dg.utils.data.DistributedSampler(range(10), 3, 3)
    with pytest.raises(ValueError, match="init_process_group"):
        dg.utils.data.DistributedSampler(range(10))
    # it drives a DataLoader like any sampler
    ds = dg.utils.data.TensorDataset(dg.arange(10))
    dl = dg.utils.data.DataLoader(ds, batch_size=2, sampler=dg.utils.data.DistributedSampler(ds, 2, 1, shuffle=False))
    assert [b[0].tolist() for b in dl] == [[1, 3], [5, 7], [9]]


@pytest.mark.parametrize("n,replicas,drop_last", [(10, 3, False), (10, 3, True), (2, 5, False), (12, 4, False),
                                                  (7, 2, True)])
def test_distributed_sampler_matches_torch(n, replicas, drop_last):
    torch = pytest.importorskip("torch")
    from torch.utils.data.distributed import DistributedSampler as TorchSampler
    for r in range(replicas):
        ours = dg.utils.data.DistributedSampler(range(n), replicas, r, shuffle=False, drop_last=drop_last)
        theirs = TorchSampler(range(n), replicas, r, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        # shuffled: torch's randperm is not numpy's, but the shard sizes and padding rule agree
        ours = dg.utils.data.DistributedSampler(range(n), replicas, r, drop_last=drop_last)
        theirs = TorchSampler(range(n), replicas, r, drop_last=drop_last)
        assert len(list(ours)) == len(list(theirs)) == len(ours) == len(theirs)
    assert torch is not None


# ---- what each rank runs ---------------------------------------------------------------------------------

def _mlp(seed):
    dg.manual_seed(seed)
    return dg.nn.Sequential(dg.nn.Linear(6, 16), dg.nn.ReLU(), dg.nn.Linear(16, 8), dg.nn.Tanh(), dg.nn.Linear(8, 3))


def _cnn(seed):
    dg.manual_seed(seed)
    return dg.nn.Sequential(dg.nn.Conv2d(1, 3, 3, padding=1), dg.nn.ReLU(), dg.nn.MaxPool2d(2), dg.nn.Flatten(),
                            dg.nn.Linear(12, 3))


def _batch(kind, b=12):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((b, 6) if kind == "mlp" else (b, 1, 4, 4)).astype(np.float32)
    return x, rng.integers(0, 3, b)


def _train(model, opt, x, y, steps, compiled):
    def step(xb, yb):
        opt.zero_grad()
        loss = dg.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss
    f = dg.function(step) if compiled else step
    for _ in range(steps):
        f(dg.tensor(x), dg.tensor(y))
    return f


def _flat(module):
    return np.concatenate([p.detach().numpy().reshape(-1) for p in module.parameters()])


def _same_everywhere(dist, arr, what):
    parts = [dg.zeros(arr.shape, dtype=arr.dtype) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, dg.tensor(arr))
    for r, p in enumerate(parts):
        np.testing.assert_array_equal(p.numpy(), arr, err_msg=f"{what}: rank {r} differs")


def _check_training(dist, rank, n):
    make_opt = {"sgd": lambda ps: dg.optim.SGD(ps, lr=0.1, momentum=0.9),
                "adam": lambda ps: dg.optim.Adam(ps, lr=0.01)}
    for kind, make in (("mlp", _mlp), ("cnn", _cnn)):
        x, y = _batch(kind)
        share = slice(rank * len(x) // n, (rank + 1) * len(x) // n)
        for opt_name, new_opt in make_opt.items():
            for compiled in (False, True):
                for cap in (25, 0.0001):  # one bucket; several buckets of about a hundred bytes
                    if compiled and cap != 25 and kind == "cnn":
                        continue
                    ref = make(0)
                    _train(ref, new_opt(ref.parameters()), x, y, 3, compiled=False)
                    net = make(rank)  # different on every rank until DDP copies rank 0's
                    ddp = dg.nn.parallel.DistributedDataParallel(net, bucket_cap_mb=cap)
                    assert (len(ddp._buckets) > 1) == (cap < 1), len(ddp._buckets)
                    f = _train(ddp, new_opt(ddp.parameters()), x[share], y[share], 3, compiled)
                    what = f"{kind} {opt_name} {'compiled' if compiled else 'eager'} bucket_cap_mb={cap}"
                    np.testing.assert_allclose(_flat(net), _flat(ref), rtol=2e-5, atol=2e-6, err_msg=what)
                    _same_everywhere(dist, _flat(net), what)
                    if compiled:
                        graph = f.graph(dg.tensor(x[share]), dg.tensor(y[share]))
                        reductions = [nd for nd in graph.nodes if nd.op.name == "all_reduce"]
                        assert len(reductions) == len(ddp._buckets), what


def _check_collectives(dist, rank, n):
    R = dist.ReduceOp

    def mine(r):
        return np.array([[r + 1.0, -2.0 * r], [0.5 * r, 3.0]], np.float32)
    every = np.stack([mine(r) for r in range(n)])
    for op, ref in ((R.SUM, every.sum(0)), (R.AVG, every.mean(0)), (R.MAX, every.max(0)), (R.MIN, every.min(0)),
                    (R.PRODUCT, every.prod(0))):
        t = dg.tensor(mine(rank))
        assert dist.all_reduce(t, op=op) is None
        np.testing.assert_allclose(t.numpy(), ref, rtol=1e-6, err_msg=str(op))
    # async: the reduction lands in the tensor's own buffer once wait() returns
    t = dg.tensor(mine(rank))
    buf = t._data
    work = dist.all_reduce(t, op=R.SUM, async_op=True)
    assert work.wait() and work.is_completed() and t._data is buf
    np.testing.assert_allclose(t.numpy(), every.sum(0), rtol=1e-6)
    # a non-contiguous tensor (a transposed view) is reduced through a copy and written back
    base = dg.tensor(mine(rank))
    view = base.t()
    dist.all_reduce(view)
    np.testing.assert_allclose(base.numpy(), every.sum(0), rtol=1e-6)
    ints = dg.tensor(np.array([rank, 1 << rank], np.int64))
    dist.all_reduce(ints, op=R.BOR)
    assert ints.tolist() == [int(np.bitwise_or.reduce(np.arange(n))), (1 << n) - 1]
    # broadcast from the last rank
    t = dg.tensor(mine(rank))
    dist.broadcast(t, src=n - 1)
    np.testing.assert_array_equal(t.numpy(), mine(n - 1))
    # all_gather, all_gather_into_tensor
    parts = [dg.zeros(2, 2) for _ in range(n)]
    dist.all_gather(parts, dg.tensor(mine(rank)))
    for r in range(n):
        np.testing.assert_array_equal(parts[r].numpy(), mine(r))
    out = dg.zeros(2 * n, 2)
    dist.all_gather_into_tensor(out, dg.tensor(mine(rank)))
    np.testing.assert_array_equal(out.numpy(), every.reshape(2 * n, 2))
    # reduce_scatter: rank r gets the sum over ranks of their input r
    inputs = [dg.tensor(mine(rank) * (k + 1)) for k in range(n)]
    out = dg.zeros(2, 2)
    dist.reduce_scatter(out, inputs, op=R.SUM)
    np.testing.assert_allclose(out.numpy(), every.sum(0) * (rank + 1), rtol=1e-6)
    big = dg.tensor(np.concatenate([mine(rank) * (k + 1) for k in range(n)]))
    out = dg.zeros(2, 2)
    dist.reduce_scatter_tensor(out, big, op=R.AVG)
    np.testing.assert_allclose(out.numpy(), every.mean(0) * (rank + 1), rtol=1e-6)
    # gather to rank 0, scatter from rank 0
    got = [dg.zeros(2, 2) for _ in range(n)] if rank == 0 else None
    dist.gather(dg.tensor(mine(rank)), got, dst=0)
    if rank == 0:
        for r in range(n):
            np.testing.assert_array_equal(got[r].numpy(), mine(r))
    t = dg.zeros(2, 2)
    dist.scatter(t, [dg.tensor(mine(r) * 10) for r in range(n)] if rank == 0 else None, src=0)
    np.testing.assert_array_equal(t.numpy(), mine(rank) * 10)
    dist.barrier()
    # errors name the call and the mismatch
    for bad, match in ((lambda: dist.all_gather([dg.zeros(2, 2)] * (n + 1), dg.zeros(2, 2)), "has %d tensors" % (n + 1)),
                       (lambda: dist.broadcast(dg.zeros(2), src=n), "rank %d is not in the group" % n),
                       (lambda: dist.all_reduce(dg.zeros(2), op="mean"), "unknown reduce op"),
                       (lambda: dist.all_reduce(dg.tensor([1, 2]), op=R.AVG), "floating"),
                       (lambda: dist.all_gather_into_tensor(dg.zeros(3), dg.zeros(2)), "world size times")):
        try:
            bad()
        except dg.DualgraphError as e:
            assert match in str(e), (match, str(e))
        else:
            raise AssertionError(f"no error: {match}")
    # all_reduce inside a compiled function is an op of the graph
    @dg.function
    def double_and_sum(a):
        b = a * 2.0
        dist.all_reduce(b)
        return b + 1.0
    for _ in range(2):
        res = double_and_sum(dg.tensor(mine(rank)))
        np.testing.assert_allclose(res.numpy(), 2 * every.sum(0) + 1, rtol=1e-6)
    assert any(nd.op.name == "all_reduce" for nd in double_and_sum.graph(dg.tensor(mine(rank))).nodes)
    # the all_reduce op differentiates: d/dx_r of sum_s w_s * (sum_k x_k) = sum_s w_s on every rank
    from dualgraph.ops.collective import all_reduce_op
    x = dg.tensor(mine(rank), requires_grad=True)
    (all_reduce_op(x, "sum", "world") * float(rank + 1)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 2), n * (n + 1) / 2, np.float32))


def _check_ddp_features(dist, rank, n):
    x, y = _batch("mlp", 4 * n)
    # no_sync: local accumulation; the next synced backward averages the sum of both micro-batches
    ref = _mlp(0)
    half = len(x) // 2
    for part in (slice(0, half), slice(half, None)):
        dg.cross_entropy(ref(dg.tensor(x[part])), dg.tensor(y[part])).backward()
    ddp = dg.nn.parallel.DistributedDataParallel(_mlp(0))
    mine_a = slice(rank * half // n, (rank + 1) * half // n)
    mine_b = slice(half + rank * half // n, half + (rank + 1) * half // n)
    with ddp.no_sync():
        dg.cross_entropy(ddp(dg.tensor(x[mine_a])), dg.tensor(y[mine_a])).backward()
    local = _mlp(0)
    dg.cross_entropy(local(dg.tensor(x[mine_a])), dg.tensor(y[mine_a])).backward()
    for p, q in zip(ddp.parameters(), local.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())  # not reduced yet
    dg.cross_entropy(ddp(dg.tensor(x[mine_b])), dg.tensor(y[mine_b])).backward()
    for (name, p), q in zip(ddp.module.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg="no_sync " + name)
    # state_dict keys carry PyTorch's "module." prefix
    assert list(ddp.state_dict())[:2] == ["module.0.weight", "module.0.bias"]

    class Branches(dg.nn.Module):
        def __init__(self):
            super().__init__()
            self.b, self.c, self.a = dg.nn.Linear(3, 2), dg.nn.Linear(3, 2), dg.nn.Linear(3, 2)

        def forward(self, v, use_b):
            return self.a(v) + self.b(v) if use_b else self.a(v)

    v = dg.tensor(np.ones((2, 3), np.float32))
    # b is used on rank 1 only, c nowhere: b's gradient is rank 1's over n, c's .grad stays None
    dg.manual_seed(3)
    m = Branches()
    ddp = dg.nn.parallel.DistributedDataParallel(m, find_unused_parameters=True)
    ddp(v, rank == 1).sum().backward()
    np.testing.assert_allclose(m.b.weight.grad.numpy(), np.full((2, 3), 2.0 / n, np.float32))
    np.testing.assert_allclose(m.a.weight.grad.numpy(), np.full((2, 3), 2.0, np.float32))
    assert m.c.weight.grad is None
    # without find_unused_parameters an unused parameter is an error naming it
    ddp = dg.nn.parallel.DistributedDataParallel(Branches())
    try:
        ddp(v, False).sum().backward()
    except RuntimeError as e:
        assert "b.weight" in str(e) and "c.weight" in str(e) and "find_unused_parameters" in str(e), str(e)
    else:
        raise AssertionError("no error for unused parameters")
    # the same error after some buckets started (a's, in buckets of one parameter): the progress
    # thread they woke goes back to sleep
    ddp = dg.nn.parallel.DistributedDataParallel(Branches(), bucket_cap_mb=1e-5)
    try:
        ddp(v, False).sum().backward()
    except RuntimeError as e:
        assert "b.weight" in str(e), str(e)
    else:
        raise AssertionError("no error for unused parameters")
    assert dist._default_group()._progress_users == 0
    # buffers: rank 0's at construction and before every forward
    bn = dg.nn.Sequential(dg.nn.Linear(3, 3), dg.nn.BatchNorm1d(3))
    bn[1].running_mean.add_(float(rank))
    ddp = dg.nn.parallel.DistributedDataParallel(bn)
    np.testing.assert_array_equal(bn[1].running_mean.numpy(), np.zeros(3, np.float32))
    ddp(dg.tensor(np.arange(6, dtype=np.float32).reshape(2, 3) * (rank + 1)))
    bn[1].running_mean.add_(float(rank))
    ddp(dg.tensor(np.ones((2, 3), np.float32)))
    _same_everywhere(dist, bn[1].running_var.numpy(), "running_var")
    # a module that differs between ranks is refused at construction, naming the difference
    try:
        dg.nn.parallel.DistributedDataParallel(dg.nn.Linear(3, 2 + (rank == n - 1)))
    except RuntimeError as e:
        assert "differs" in str(e) and "weight" in str(e), str(e)
    else:
        raise AssertionError("no error for different modules")


def _rank_main(scenario, *args):
    import dualgraph.distributed as dist
    timeout = 2 if scenario == "fail_hang" else 120
    dist.init_process_group(backend="mpi", timeout=timeout)
    rank, n = dist.get_rank(), dist.get_world_size()
    if scenario == "all":
        _check_collectives(dist, rank, n)
        _check_ddp_features(dist, rank, n)
        _check_training(dist, rank, n)
        print(f"rank {rank}/{n} ok", flush=True)
    elif scenario.startswith("fail_"):
        dist.barrier()
        if rank == 1:
            if scenario == "fail_raise":
                raise ValueError("rank 1 broke")
            if scenario == "fail_exit":
                os._exit(3)
            time.sleep(60)   # fail_hang: alive, but never joins the collective below
        t = dg.ones(4)
        for _ in range(3):
            dist.all_reduce(t)
        print(f"rank {rank} finished", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    _rank_main(*sys.argv[1:])
