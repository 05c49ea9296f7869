"""DataLoader(num_workers > 0): real worker processes. Batches in the sampler's order whatever order
the workers finish in, worker exceptions re-raised with the worker's traceback, get_worker_info and
worker_init_fn, IterableDataset sharding (as torch does it), persistent workers, timeouts, dead
workers, and workers gone once an iterator ends or is dropped. Small datasets and 2 workers."""
import os
import time

import numpy as np
import pytest

from dualgraph.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, get_worker_info

X = np.arange(40, dtype=np.float32).reshape(20, 2)
Y = np.arange(20)


def plain(loader):
    out = []
    for b in loader:
        out.append([t.numpy().tolist() if hasattr(t, "numpy") else t for t in (b if isinstance(b, list) else [b])])
    return out


def gone(pids, wait=5.0):
    """True once none of the processes exists (reaped children disappear from the process table)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split()[2] != "Z":
                        alive.append(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
        if not alive:
            return True
        time.sleep(0.02)
    return False


class Slow(Dataset):
    """Even samples take longer, so the two workers finish their batches out of order."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i % 4 < 2:
            time.sleep(0.03)
        return {"i": i, "x": np.full(2, i, np.float32)}


def test_batches_come_in_the_samplers_order():
    for kw in (dict(batch_size=3, shuffle=True, generator=4), dict(batch_size=4, drop_last=True)):
        ref = plain(DataLoader(TensorDataset(X, Y), **kw))
        assert plain(DataLoader(TensorDataset(X, Y), num_workers=2, **kw)) == ref
    ref = [b["i"].tolist() for b in DataLoader(Slow(), batch_size=2)]
    assert [b["i"].tolist() for b in DataLoader(Slow(), batch_size=2, num_workers=2)] == ref
    unordered = [b["i"].tolist() for b in DataLoader(Slow(), batch_size=2, num_workers=2, in_order=False)]
    assert sorted(unordered) == sorted(ref)
    assert len(DataLoader(Slow(), batch_size=5, num_workers=2)) == 3


def test_sample_order_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils import data as td
    order = np.random.default_rng(0).permutation(20).tolist()
    ours = [b[1].tolist() for b in DataLoader(TensorDataset(X, Y), batch_size=3, sampler=order, num_workers=2)]
    theirs = [b[1].tolist() for b in td.DataLoader(td.TensorDataset(torch.tensor(X), torch.tensor(Y)), batch_size=3,
                                                     sampler=order, num_workers=2)]
    assert ours == theirs


class Failing(Dataset):
    def __init__(self, exc):
        self.exc = exc

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise self.exc
        return i


class Picky(Exception):
    def __init__(self, a, b):
        super().__init__(a, b)


def test_worker_exception_is_raised_in_the_main_process_with_its_traceback():
    it = iter(DataLoader(Failing(ValueError("no sample 5")), batch_size=2, num_workers=2))
    assert next(it).tolist() == [0, 1] and next(it).tolist() == [2, 3]
    pids = [w.pid for w in it._workers]
    with pytest.raises(ValueError) as err:
        next(it)
    msg = str(err.value)
    assert "Caught ValueError in DataLoader worker process 0" in msg
    assert "raise self.exc" in msg and "ValueError: no sample 5" in msg  # the worker's own traceback
    assert next(it).tolist() == [6, 7]  # like torch, the iterator goes on after the failed batch
    with pytest.raises(StopIteration):
        next(it)
    assert gone(pids)
    with pytest.raises(KeyError, match="Caught KeyError"):
        list(DataLoader(Failing(KeyError("k")), batch_size=2, num_workers=2))
    # an exception type that cannot be rebuilt from a message arrives as a RuntimeError with the same text
    with pytest.raises(RuntimeError, match="Caught Picky in DataLoader worker"):
        list(DataLoader(Failing(Picky(1, 2)), batch_size=2, num_workers=2))


def test_an_unpicklable_batch_is_an_error_not_a_hang():
    loader = DataLoader(Failing(None), batch_size=2, num_workers=2, collate_fn=lambda b: (lambda: b))
    with pytest.raises(Exception, match="pickling the batch"):
        next(iter(loader))


class Info(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return {"i": i, "id": info.id, "n": info.num_workers, "seed": info.seed, "pid": os.getpid(),
                "init": INIT.get("id", -1), "np": float(np.random.random()), "same_ds": info.dataset is self}


INIT = {}


def record_init(worker_id):
    INIT["id"] = worker_id


def test_worker_info_seeds_and_init_fn():
    assert get_worker_info() is None
    rows = [b for b in DataLoader(Info(), batch_size=2, num_workers=2, worker_init_fn=record_init, generator=9)]
    ids = [int(b["id"][0]) for b in rows]
    assert ids == [0, 1, 0, 1]  # batches go round-robin to the workers
    assert all(b["init"].tolist() == b["id"].tolist() for b in rows) and all(b["n"].tolist() == [2, 2] for b in rows)
    assert all(b["same_ds"].tolist() == [True, True] for b in rows)
    seeds = {int(b["id"][0]): int(b["seed"][0]) for b in rows}
    assert seeds[1] == seeds[0] + 1  # base seed + worker id, as in torch
    assert len({int(b["pid"][0]) for b in rows}) == 2 and os.getpid() not in {int(b["pid"][0]) for b in rows}
    # numpy's global generator is seeded per worker: the workers do not repeat each other's draws
    assert rows[0]["np"].tolist() != rows[1]["np"].tolist()
    again = [b for b in DataLoader(Info(), batch_size=2, num_workers=2, worker_init_fn=record_init, generator=9)]
    assert [b["seed"].tolist() for b in again] == [b["seed"].tolist() for b in rows]
    assert [b["np"].tolist() for b in again] == [b["np"].tolist() for b in rows]


def failing_init(worker_id):
    raise OSError(f"init of {worker_id} failed")


def test_worker_init_fn_exception():
    with pytest.raises(OSError, match="init of 0 failed"):
        list(DataLoader(Info(), batch_size=2, num_workers=2, worker_init_fn=failing_init))


class Shards(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        if info is None:
            return iter(range(self.n))
        return iter(range(info.id, self.n, info.num_workers))


def test_iterable_dataset_shards_interleave_like_torch():
    expected = [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9]]
    assert [b.tolist() for b in DataLoader(Shards(11), batch_size=2, num_workers=2)] == expected
    assert [b.tolist() for b in DataLoader(Shards(11), batch_size=2, num_workers=2, drop_last=True)] == \
        [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10]]
    assert [int(b) for b in DataLoader(Shards(5), batch_size=None, num_workers=2)] == [0, 1, 2, 3, 4]
    persistent = DataLoader(Shards(7), batch_size=2, num_workers=2, persistent_workers=True)
    for _ in range(2):  # each epoch restarts every worker's stream
        assert [b.tolist() for b in persistent] == [[0, 2], [1, 3], [4, 6], [5]]
    pytest.importorskip("torch")
    from torch.utils import data as td

    class TorchShards(td.IterableDataset):
        def __iter__(self):
            info = td.get_worker_info()
            return iter(range(info.id, 11, info.num_workers))

    assert [b.tolist() for b in td.DataLoader(TorchShards(), batch_size=2, num_workers=2)] == expected


class Pid(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return i, os.getpid()


def test_persistent_workers_survive_epochs_and_reshuffle():
    loader = DataLoader(Pid(), batch_size=2, num_workers=2, persistent_workers=True, shuffle=True, generator=1)
    e1 = [[b[0].tolist(), b[1].tolist()] for b in loader]
    workers = list(loader._iterator._workers)
    e2 = [[b[0].tolist(), b[1].tolist()] for b in loader]
    assert sorted(sum((b[0] for b in e1), [])) == sorted(sum((b[0] for b in e2), [])) == list(range(6))
    assert [b[0] for b in e1] != [b[0] for b in e2]  # a new permutation each epoch
    assert {p for b in e1 for p in b[1]} == {p for b in e2 for p in b[1]} == {w.pid for w in workers}
    half = iter(loader)
    next(half)  # an epoch left unfinished, then a new one: the stale batches are dropped
    assert sorted(sum((b[0].tolist() for b in loader), [])) == list(range(6))
    pids = [w.pid for w in workers]
    del loader, half
    assert gone(pids)


def test_workers_exit_when_the_iterator_ends_or_is_dropped():
    it = iter(DataLoader(TensorDataset(X, Y), batch_size=2, num_workers=2))
    pids = [w.pid for w in it._workers]
    for _ in it:
        pass
    assert all(w.exitcode == 0 for w in it._workers) and gone(pids)
    it = iter(DataLoader(TensorDataset(X, Y), batch_size=2, num_workers=2))
    next(it)
    pids = [w.pid for w in it._workers]
    del it  # a loop left with break
    assert gone(pids)


class Sleepy(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        time.sleep(0.25)
        return i


class Dies(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        os._exit(3)


def test_timeout_and_a_dead_worker():
    with pytest.raises(RuntimeError, match="timed out after 0.05 seconds"):
        list(DataLoader(Sleepy(), batch_size=2, num_workers=2, timeout=0.05))
    with pytest.raises(RuntimeError, match=r"exited unexpectedly \(exit code 3"):
        list(DataLoader(Dies(), batch_size=2, num_workers=2))


def test_worker_argument_errors():
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(Pid(), num_workers=2, prefetch_factor=0)
    with pytest.raises(ValueError, match="multiprocessing_context should be one of"):
        DataLoader(Pid(), num_workers=2, multiprocessing_context="threads")
    assert plain(DataLoader(Pid(), batch_size=3, num_workers=2, prefetch_factor=1))[0][0] == [0, 1, 2]
    too_many = len(os.sched_getaffinity(0)) + 1
    with pytest.warns(UserWarning, match=f"create {too_many} worker processes"):
        DataLoader(Pid(), num_workers=too_many)  # no worker starts before iteration
    it = iter(DataLoader(Pid(), batch_size=4, num_workers=2))
    assert len(it) == 2 and len(list(it)) == 2

