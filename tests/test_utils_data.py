"""dualgraph.utils.data in the main process: collation, samplers, datasets and DataLoader arguments,
compared with torch.utils.data where torch is installed (same index order -> same batches) and with
hand-derived values otherwise. Worker processes: tests/test_utils_data_workers.py."""
import collections
import itertools

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.utils.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset, IterableDataset,
                                  RandomSampler, SequentialSampler, StackDataset, Subset, SubsetRandomSampler,
                                  TensorDataset, WeightedRandomSampler, default_collate, default_convert,
                                  get_worker_info, random_split)

P = collections.namedtuple("P", "a b")


def plain(x):
    """A batch as nested Python values with dtypes, for either framework's tensors."""
    if type(x).__module__.startswith("torch"):
        return ("T", str(x.dtype).removeprefix("torch."), x.numpy().tolist())
    if isinstance(x, dg.Tensor):
        return ("T", str(np.dtype(x.dtype)), x.numpy().tolist())
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return (type(x).__name__,) + tuple(plain(v) for v in x)
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [plain(v) for v in x])
    return x


def samples():
    return [{"x": (np.full(2, i, np.float32), i), "p": P(float(i), i % 2 == 0), "s": f"w{i}",
             "n": np.int32(i), "l": [i, np.float16(i) / 2]} for i in range(3)]


# ---- collation -------------------------------------------------------------------------------------

def test_default_collate_of_nested_samples():
    out = plain(default_collate(samples()))
    assert out == {
        "x": ("list", [("T", "float32", [[0, 0], [1, 1], [2, 2]]), ("T", "int64", [0, 1, 2])]),  # tuple -> list
        "p": ("P", ("T", "float64", [0.0, 1.0, 2.0]), ("T", "bool", [True, False, True])),
        "s": ("list", ["w0", "w1", "w2"]),
        "n": ("T", "int32", [0, 1, 2]),
        "l": ("list", [("T", "int64", [0, 1, 2]), ("T", "float16", [0.0, 0.5, 1.0])]),
    }


def test_default_collate_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as t_collate, default_convert as t_convert
    assert plain(default_collate(samples())) == plain(t_collate(samples()))
    tensors = [dg.tensor([[i, 2.0 * i]]) for i in range(4)]
    assert plain(default_collate(tensors)) == plain(t_collate([torch.tensor([[i, 2.0 * i]]) for i in range(4)]))
    for s in samples():
        assert plain(default_convert(s)) == plain(t_convert(s))


def test_default_collate_stacks_tensors_with_autograd():
    w = dg.tensor([1.0, 2.0], requires_grad=True)
    batch = default_collate([w * 2, w * 3])
    batch.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [5.0, 5.0])
    plain_batch = default_collate([dg.tensor([1, 2]), dg.tensor([3, 4])])
    assert plain(plain_batch) == ("T", "int64", [[1, 2], [3, 4]])


def test_default_collate_bad_batches():
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [1]])
    with pytest.raises(RuntimeError, match=r"equal size.*\(2,\).*\(3,\)"):
        default_collate([dg.ones(2), dg.ones(3)])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([np.ones(2), np.ones(3)])
    with pytest.raises(TypeError, match="batch must contain tensors.*<U1"):
        default_collate([np.array(["a"])])
    with pytest.raises(TypeError, match="batch must contain tensors.*object"):
        default_collate([object()])


# ---- samplers ---------------------------------------------------------------------------------------

def test_sequential_and_batch_sampler():
    assert list(SequentialSampler(range(5))) == [0, 1, 2, 3, 4]
    assert list(BatchSampler(range(7), 3, False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(range(7), 3, True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, False)) == 3 and len(BatchSampler(range(7), 3, True)) == 2
    for bad in ((0, False), (2.0, False), (True, False), (2, 1)):
        with pytest.raises(ValueError):
            BatchSampler(range(7), *bad)


def test_samplers_match_torch():
    pytest.importorskip("torch")
    from torch.utils import data as td
    for args in ((3, False), (3, True), (7, False), (10, True)):
        assert list(BatchSampler(range(7), *args)) == list(td.BatchSampler(range(7), *args))
        assert len(BatchSampler(range(7), *args)) == len(td.BatchSampler(range(7), *args))
    assert list(SequentialSampler(range(4))) == list(td.SequentialSampler(range(4)))
    # the same bad arguments are refused with the same exception types
    cases = ((lambda: BatchSampler(range(3), 0, False), lambda: td.BatchSampler(range(3), 0, False)),
             (lambda: RandomSampler(range(3), replacement=1), lambda: td.RandomSampler(range(3), replacement=1)),
             (lambda: RandomSampler(range(3), num_samples=0), lambda: td.RandomSampler(range(3), num_samples=0)),
             (lambda: WeightedRandomSampler([[1.0]], 1), lambda: td.WeightedRandomSampler([[1.0]], 1)))
    for ours, theirs in cases:
        with pytest.raises(Exception) as t_err:
            theirs()
        with pytest.raises(t_err.type):
            ours()
    assert len(RandomSampler(range(5), num_samples=12)) == len(td.RandomSampler(range(5), num_samples=12)) == 12


def test_random_sampler():
    perm = list(RandomSampler(range(10), generator=3))
    assert sorted(perm) == list(range(10)) and perm == np.random.default_rng(3).permutation(10).tolist()
    s = RandomSampler(range(10), generator=3)
    assert list(s) == perm and list(s) != perm  # the generator's state carries into the next epoch
    # more samples than the dataset without replacement: whole permutations, then part of one
    long = list(RandomSampler(range(4), num_samples=10, generator=0))
    assert len(long) == 10 and sorted(long[:4]) == sorted(long[4:8]) == [0, 1, 2, 3] and len(set(long[8:])) == 2
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=5000, generator=0))
    assert len(drawn) == 5000 and set(drawn) == {0, 1, 2}
    assert drawn[:100] == np.random.default_rng(0).integers(0, 3, size=100).tolist()
    # makemore's infinite loader: num_samples=1e10 draws lazily (an array of 1e10 indices is 80 GB)
    for replacement in (True, False):
        endless = RandomSampler(range(3), replacement=replacement, num_samples=int(1e10), generator=0)
        assert len(endless) == int(1e10) and set(itertools.islice(endless, 3000)) == {0, 1, 2}
    dg.manual_seed(7)
    a = list(RandomSampler(range(20)))
    dg.manual_seed(7)
    assert list(RandomSampler(range(20))) == a and sorted(a) == list(range(20))
    with pytest.raises(TypeError, match="generator"):
        RandomSampler(range(3), generator="seed")

    class Wrapped:  # any object that draws like a numpy Generator
        def __init__(self, seed):
            self._rng = np.random.default_rng(seed)

        def __getattr__(self, name):
            return getattr(self._rng, name)

    assert list(RandomSampler(range(10), generator=Wrapped(3))) == perm
    loader = DataLoader(Range(10), batch_size=10, shuffle=True, generator=Wrapped(3), num_workers=0)
    assert next(iter(loader)).tolist() == perm


def test_subset_and_weighted_samplers():
    got = list(SubsetRandomSampler([10, 20, 30, 40], generator=0))
    assert sorted(got) == [10, 20, 30, 40]
    w = [0.0, 1.0, 3.0, 0.0]
    draws = list(WeightedRandomSampler(w, 4000, generator=0))
    counts = np.bincount(draws, minlength=4)
    assert counts[0] == counts[3] == 0 and 0.2 < counts[1] / 4000 < 0.3  # expected 1/4
    once = list(WeightedRandomSampler(dg.tensor([1.0, 1.0, 5.0, 0.0]), 3, replacement=False, generator=1))
    assert sorted(once) == [0, 1, 2]
    with pytest.raises(ValueError, match="without replacement"):
        WeightedRandomSampler(w, 3, replacement=False)
    with pytest.raises(ValueError, match="non-negative"):
        WeightedRandomSampler([1.0, -1.0], 2)
    with pytest.raises(ValueError, match="1d"):
        WeightedRandomSampler([[1.0, 2.0]], 2)


# ---- datasets ---------------------------------------------------------------------------------------

class Range(Dataset):
    def __init__(self, n, start=0):
        self.n, self.start = n, start

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.start + (i % self.n)


def test_subset_concat_stack_chain():
    c = ConcatDataset([Range(3), Range(2, 100)])
    assert len(c) == 5 and [c[i] for i in range(5)] == [0, 1, 2, 100, 101] and c[-1] == 101 and c[-5] == 0
    assert c.cumulative_sizes == [3, 5]
    with pytest.raises(ValueError, match="exceed"):
        c[-6]
    with pytest.raises(IndexError):
        c[5]
    assert list(Range(2) + Range(1, 50)) == [0, 1, 50]  # Dataset + Dataset is a ConcatDataset
    s = Subset(Range(10), [7, 2, 5])
    assert len(s) == 3 and [s[i] for i in range(3)] == [7, 2, 5] and s.__getitems__([2, 0]) == [5, 7]
    sd = StackDataset(Range(3), Range(3, 10))
    assert sd[1] == (1, 11) and len(sd) == 3 and StackDataset(a=Range(2), b=Range(2, 5))[1] == {"a": 1, "b": 6}
    with pytest.raises(ValueError, match="size mismatch"):
        StackDataset(Range(2), Range(3))

    class Stream(IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

    assert list(ChainDataset([Stream(2), Stream(3)])) == [0, 1, 0, 1, 2] == list(Stream(2) + Stream(3))
    with pytest.raises(TypeError, match="IterableDataset"):
        ConcatDataset([Stream(2)])
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])


def test_datasets_match_torch():
    torch = pytest.importorskip("torch")
    from torch.utils import data as td
    ours, theirs = ConcatDataset([Range(3), Range(2, 100)]), td.ConcatDataset([Range(3), Range(2, 100)])
    assert [ours[i] for i in range(-5, 5)] == [theirs[i] for i in range(-5, 5)]
    assert ours.cumulative_sizes == theirs.cumulative_sizes
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    ours, theirs = TensorDataset(dg.tensor(x), dg.tensor(y))[4], td.TensorDataset(torch.tensor(x), torch.tensor(y))[4]
    assert plain(list(ours)) == plain(list(theirs))


def test_random_split():
    parts = random_split(Range(10), [0.33, 0.33, 0.34], generator=0)
    assert [len(p) for p in parts] == [4, 3, 3]  # floor(3.3), floor(3.3), floor(3.4); the one left goes first
    assert sorted(i for p in parts for i in p.indices) == list(range(10))
    assert [len(p) for p in random_split(Range(7), [0.5, 0.5])] == [4, 3]
    again = random_split(Range(10), [0.33, 0.33, 0.34], generator=0)
    assert [p.indices for p in again] == [p.indices for p in parts]
    assert parts[0].indices == np.random.default_rng(0).permutation(10)[:4].tolist()
    a, b = random_split(Range(5), [3, 2], generator=np.random.default_rng(1))
    assert len(a) == 3 and len(b) == 2 and sorted(a.indices + b.indices) == list(range(5))
    with pytest.raises(ValueError, match="does not equal"):
        random_split(Range(5), [3, 3])
    with pytest.warns(UserWarning, match="index 1 is 0"):
        random_split(Range(2), [0.9, 0.1])


def test_random_split_lengths_match_torch():
    pytest.importorskip("torch")
    from torch.utils import data as td
    for n, lengths in ((10, [0.33, 0.33, 0.34]), (7, [0.5, 0.5]), (11, [0.1, 0.2, 0.7]), (5, [2, 3])):
        assert [len(p) for p in random_split(Range(n), lengths)] == [len(p) for p in td.random_split(Range(n), lengths)]
    with pytest.raises(ValueError):
        td.random_split(Range(5), [3, 3])


# ---- DataLoader ------------------------------------------------------------------------------------

X = np.arange(26, dtype=np.float32).reshape(13, 2)
Y = np.arange(13) * 10
ORDER = [5, 0, 12, 7, 3, 9, 1, 11, 2, 8, 4, 10, 6]


def batches(loader):
    return [plain(b) for b in loader]


def test_tensor_dataset_fast_path_equals_collating_samples():
    # the fancy-indexing path (default_collate) and the per-sample path (any other collate_fn) agree,
    # for numpy arrays, dg tensors, a Subset over them and a bare array as the dataset
    for ds in (TensorDataset(X, Y), TensorDataset(dg.tensor(X), dg.tensor(Y)), Subset(TensorDataset(X, Y), ORDER),
               X):
        fast = DataLoader(ds, batch_size=4, sampler=ORDER[:len(ds)] if not isinstance(ds, Subset) else None)
        slow = DataLoader(ds, batch_size=4, sampler=fast.sampler, collate_fn=lambda b: default_collate(b))
        assert batches(fast) == batches(slow)
    assert batches(DataLoader(TensorDataset(X, Y), batch_size=5))[2] == ("list", [("T", "float32", X[10:].tolist()),
                                                                               ("T", "int64", Y[10:].tolist())])
    assert getattr(Subset(Range(3), [0]), "_collated_batch", None) is None  # only where the dataset has it


def test_tensor_dataset_batches_keep_autograd():
    w = dg.tensor(X, requires_grad=True)
    (xb,) = next(iter(DataLoader(TensorDataset(w), batch_size=3, sampler=[4, 1, 4])))
    xb.sum().backward()
    expected = np.zeros_like(X)
    expected[1] = 1
    expected[4] = 2
    np.testing.assert_array_equal(w.grad.numpy(), expected)


def test_loader_follows_the_sampler_order():
    def collate(b):
        return [s[1] for s in b]

    got = [b for b in DataLoader(TensorDataset(X, Y), batch_size=5, sampler=ORDER, collate_fn=collate)]
    assert [int(v) for b in got for v in b] == [int(Y[i]) for i in ORDER] and [len(b) for b in got] == [5, 5, 3]
    loader = DataLoader(TensorDataset(X, Y), batch_sampler=[[1, 2], [0], [12, 11, 10]])
    assert [b[1].tolist() for b in loader] == [[10, 20], [0], [120, 110, 100]] and len(loader) == 3
    single = list(DataLoader(Range(4, 7), batch_size=None))
    assert single == [7, 8, 9, 10] and len(DataLoader(Range(4), batch_size=None)) == 4
    loader = DataLoader(TensorDataset(X, Y), batch_size=4, drop_last=True, shuffle=True, generator=2)
    got = [b[1].tolist() for b in loader]
    assert len(got) == len(loader) == 3 and all(len(b) == 4 for b in got)
    assert [v for b in got for v in b] == (Y[np.random.default_rng(2).permutation(13)][:12]).tolist()


def test_loader_matches_torch_given_the_same_order():
    torch = pytest.importorskip("torch")
    from torch.utils import data as td
    tx, ty = torch.tensor(X), torch.tensor(Y)
    cases = [dict(batch_size=4, sampler=ORDER), dict(batch_size=4, sampler=ORDER, drop_last=True),
             dict(batch_sampler=[[3, 1], [0, 2, 4]]), dict(batch_size=None, sampler=ORDER[:3]),
             dict(batch_size=6)]
    for kw in cases:
        assert batches(DataLoader(TensorDataset(X, Y), **kw)) == batches(td.DataLoader(td.TensorDataset(tx, ty), **kw))
        assert len(DataLoader(TensorDataset(X, Y), **kw)) == len(td.DataLoader(td.TensorDataset(tx, ty), **kw))
    s = samples()
    assert batches(DataLoader(s, batch_size=2)) == batches(td.DataLoader(s, batch_size=2))
    assert batches(DataLoader(s, batch_size=None)) == batches(td.DataLoader(s, batch_size=None))
    assert batches(DataLoader(X, batch_size=5)) == batches(td.DataLoader(X, batch_size=5))


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def test_iterable_dataset_in_the_main_process():
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert list(DataLoader(Stream(3), batch_size=None)) == [0, 1, 2]
    assert len(DataLoader(Stream(7), batch_size=3)) == 3
    assert len(DataLoader(Stream(7), batch_size=3, drop_last=True)) == 2
    for kw in (dict(shuffle=True), dict(sampler=[0]), dict(batch_sampler=[[0]])):
        with pytest.raises(ValueError, match="IterableDataset"):
            DataLoader(Stream(3), **kw)
    assert get_worker_info() is None


def test_loader_argument_errors_match_torch():
    torch = pytest.importorskip("torch")
    from torch.utils import data as td
    ds = TensorDataset(X, Y)
    tds = td.TensorDataset(torch.tensor(X), torch.tensor(Y))
    bad = [dict(shuffle=True, sampler=ORDER), dict(batch_sampler=[[0]], batch_size=2),
           dict(batch_sampler=[[0]], drop_last=True), dict(batch_size=None, drop_last=True),
           dict(num_workers=-1), dict(timeout=-1), dict(prefetch_factor=2), dict(persistent_workers=True),
           dict(multiprocessing_context="fork")]
    for kw in bad:
        with pytest.raises(ValueError):
            td.DataLoader(tds, **kw)
        with pytest.raises(ValueError):
            DataLoader(ds, **kw)
    for name in ("batch_size", "sampler", "dataset", "drop_last"):
        with pytest.raises(ValueError, match=f"{name} attribute should not be set"):
            setattr(DataLoader(ds), name, None)


def test_loader_arguments_torch_free():
    loader = DataLoader(TensorDataset(X, Y))
    assert loader.batch_size == 1 and isinstance(loader.sampler, SequentialSampler) and loader.num_workers == 0
    assert isinstance(DataLoader(TensorDataset(X, Y), shuffle=True).sampler, RandomSampler)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(TensorDataset(X, Y), shuffle=True, sampler=ORDER)
    # dualgraph's own errors, which are also the builtin types torch raises
    for call, builtin in ((lambda: DataLoader(TensorDataset(X, Y), batch_size=0), ValueError),
                          (lambda: RandomSampler(range(3), generator="seed"), TypeError),
                          (lambda: default_collate([[1, 2], [3]]), RuntimeError),
                          (lambda: ConcatDataset([Range(2)])[2], IndexError)):
        with pytest.raises(dg.errors.DualgraphError) as err:
            call()
        assert isinstance(err.value, builtin)
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(TensorDataset(X, Y), prefetch_factor=2)
    with pytest.raises(TypeError, match="__getitem__"):
        DataLoader(object())

    class NoItems(Dataset):
        pass

    with pytest.raises(TypeError, match="NoItems is not a dataset"):
        DataLoader(NoItems())
    assert len(iter(DataLoader(Stream(7), batch_size=3))) == 3
    with pytest.warns(UserWarning, match="pin"):
        loader = DataLoader(TensorDataset(X, Y), batch_size=13, pin_memory=True)
    assert plain(next(iter(loader)))[1][0] == ("T", "float32", X.tolist())
    moved = next(iter(DataLoader(TensorDataset(X, Y), batch_size=2, device="cpu")))
    assert isinstance(moved, list) and moved[0].device == dg.device("cpu")


def test_dg_data_is_utils_data():
    import dualgraph.data
    assert dg.data is dg.utils.data is dualgraph.data
    from dualgraph.data import DataLoader as D
    assert D is DataLoader
