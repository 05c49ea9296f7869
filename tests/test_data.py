"""dg.data: DataLoader over arrays and datasets: coverage, batch shapes, seeded shuffling, drop_last."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph.data import DataLoader, Dataset, TensorDataset, random_split

X = np.arange(50, dtype=np.float32).reshape(25, 2)
Y = np.arange(25)


def _rows(loader):
    xs, ys = zip(*[(xb.numpy(), yb.numpy()) for xb, yb in loader])
    return np.concatenate(xs), np.concatenate(ys)


def test_batches_in_order_without_shuffle():
    loader = DataLoader((X, Y), batch_size=10)
    batches = list(loader)
    assert len(loader) == 3 and [b[0].shape for b in batches] == [(10, 2), (10, 2), (5, 2)]
    assert all(isinstance(t, dg.Tensor) for b in batches for t in b)
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    xs, ys = _rows(loader)
    np.testing.assert_array_equal(xs, X)
    np.testing.assert_array_equal(ys, Y)


def test_shuffle_is_a_seeded_permutation_and_changes_each_epoch():
    loader = DataLoader((X, Y), batch_size=7, shuffle=True, generator=123)
    xs1, ys1 = _rows(loader)
    xs2, ys2 = _rows(loader)
    assert sorted(ys1) == list(range(25)) and sorted(ys2) == list(range(25))  # every sample exactly once
    np.testing.assert_array_equal(xs1, X[ys1])  # rows stay paired with their labels
    assert not np.array_equal(ys1, Y) and not np.array_equal(ys1, ys2)
    again = DataLoader((X, Y), batch_size=7, shuffle=True, generator=123)
    np.testing.assert_array_equal(_rows(again)[1], ys1)  # same seed, same order
    np.testing.assert_array_equal(_rows(again)[1], ys2)
    np.testing.assert_array_equal(ys1, np.random.default_rng(123).permutation(25))


def test_drop_last():
    loader = DataLoader((X, Y), batch_size=10, drop_last=True, shuffle=True, generator=0)
    batches = list(loader)
    assert len(loader) == 2 and len(batches) == 2 and all(b[0].shape == (10, 2) for b in batches)
    assert len(DataLoader((X, Y), batch_size=5, drop_last=True)) == 5


def test_single_array_and_tensors():
    batches = list(DataLoader(X, batch_size=20))
    assert isinstance(batches[0], dg.Tensor) and batches[1].shape == (5, 2)
    t = dg.tensor(X)
    xs = [xb for xb, in DataLoader((t,), batch_size=8)]
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x in xs]), X)


def test_map_style_dataset_is_collated():
    class Squares(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"x": np.array([i, i * i], np.float32), "y": i % 2}

    batches = list(DataLoader(Squares(), batch_size=4))
    assert batches[0]["x"].shape == (4, 2) and batches[1]["y"].numpy().tolist() == [0, 1]
    np.testing.assert_array_equal(batches[0]["x"].numpy()[:, 1], [0, 1, 4, 9])
    pairs = [(np.full(3, i, np.float32), i) for i in range(5)]  # a plain list of samples
    xb, yb = next(iter(DataLoader(pairs, batch_size=5, collate_fn=None)))
    assert xb.shape == (5, 3) and yb.numpy().tolist() == [0, 1, 2, 3, 4]


def test_inputs_are_not_mutated_and_bad_inputs_raise():
    x = X.copy()
    for xb, _ in DataLoader((x, Y), batch_size=5, shuffle=True, generator=0):
        xb.mul_(0)
    np.testing.assert_array_equal(x, X)
    with pytest.raises(ValueError, match="same first dimension"):
        TensorDataset(X, Y[:10])
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader((X, Y), batch_size=0)


def test_random_split():
    a, b = random_split(TensorDataset(X, Y), [20, 5], generator=0)
    ids = sorted([int(a[i][1]) for i in range(len(a))] + [int(b[i][1]) for i in range(len(b))])
    assert len(a) == 20 and len(b) == 5 and ids == list(range(25))


def test_pytorch_arguments_are_accepted():
    loader = DataLoader((X, Y), batch_size=5, num_workers=2)
    xs, ys = _rows(loader)
    np.testing.assert_array_equal(xs, X)
    np.testing.assert_array_equal(ys, Y)
