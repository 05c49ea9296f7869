"""dg.data: Dataset, TensorDataset and DataLoader (PyTorch's names, numpy-speed batching).

    loader = dg.data.DataLoader((X, y), batch_size=64, shuffle=True, generator=0)
    for xb, yb in loader: ...

A tuple of arrays/tensors is wrapped in a TensorDataset and batched by fancy indexing (one copy per
batch, no per-sample Python loop). Any other object with __len__ and __getitem__ is a map-style
dataset whose samples are collated (stacked) into tensors.
"""
import warnings

import numpy as _np

from .backend import CPU
from .ops.creation import from_numpy, generator as _dg_generator
from .ops.shape import stack
from .tensor import Tensor, as_tensor

__all__ = ["Dataset", "TensorDataset", "DataLoader", "default_collate", "random_split", "Subset"]


class Dataset:
    """Map-style dataset: implement __getitem__(i) and __len__()."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


def _as_array(x):
    if isinstance(x, Tensor):
        return x
    arr = _np.asarray(x)
    if arr.dtype == object:
        raise TypeError(f"TensorDataset needs numeric arrays, got {type(x).__name__} of mixed types")
    return arr


class TensorDataset(Dataset):
    """Samples are the i-th rows of each array or tensor (all with the same first dimension)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one array or tensor")
        self.tensors = tuple(_as_array(t) for t in tensors)
        n = {t.shape[0] if t.ndim else None for t in self.tensors}
        if len(n) != 1 or None in n:
            shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
            raise ValueError(f"TensorDataset: all arrays need the same first dimension, got shapes {shapes}")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def _rng(generator):
    if generator is None:
        return _dg_generator(CPU)  # dg.manual_seed(n) makes shuffling reproducible too
    if isinstance(generator, _np.random.Generator):
        return generator
    if isinstance(generator, (int, _np.integer)):
        return _np.random.default_rng(int(generator))
    raise TypeError(f"generator must be None, an int seed or a numpy Generator, got {type(generator).__name__}")


def random_split(dataset, lengths, generator=None):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1) < 1e-6:
        counts = [int(_np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"sum of lengths {sum(lengths)} does not equal the dataset's length {n}")
    perm = _rng(generator).permutation(n)
    out, start = [], 0
    for k in lengths:
        out.append(Subset(dataset, perm[start:start + k].tolist()))
        start += k
    return out


def default_collate(samples):
    """Stack a list of samples into a batch: tensors/arrays/numbers -> one tensor; tuples and dicts recurse."""
    first = samples[0]
    if isinstance(first, Tensor):
        return stack(samples, axis=0)
    if isinstance(first, (_np.ndarray, _np.generic, int, float, bool)):
        return _to_tensor(_np.stack([_np.asarray(s) for s in samples]))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError("default_collate: samples in a batch have different lengths")
        return type(first)(default_collate(list(col)) for col in zip(*samples)) if isinstance(first, tuple) \
            else [default_collate(list(col)) for col in zip(*samples)]
    if isinstance(first, str):
        return list(samples)
    raise TypeError(f"default_collate: don't know how to batch {type(first).__name__}; pass collate_fn=")


def _to_tensor(arr):
    """A fresh host array (from fancy indexing or stacking) as a Tensor, without another copy."""
    if isinstance(arr, Tensor):
        return arr
    try:
        return from_numpy(_np.ascontiguousarray(arr))
    except Exception:
        return Tensor(arr)


class DataLoader:
    """Iterate over a dataset in batches.

    dataset: a Dataset, an array/tensor, or a tuple of arrays/tensors with the same first dim.
    shuffle: a new permutation each epoch from `generator` (an int seed, a numpy Generator, or None
    for dg's generator, seeded by dg.manual_seed). drop_last drops a final short batch.
    device: move each batch there. Batches are Tensors (a tuple of them for a tuple dataset).
    num_workers and pin_memory are accepted so PyTorch code ports; workers are not used."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, generator=None, collate_fn=None,
                 device=None, num_workers=0, pin_memory=False):
        if num_workers:
            warnings.warn(f"DataLoader(num_workers={num_workers}): batches are built in the calling thread "
                          f"(worker processes are not supported); in-memory arrays batch at numpy speed",
                          stacklevel=2)
        if isinstance(dataset, tuple):
            dataset = TensorDataset(*dataset)
        elif isinstance(dataset, (Tensor, _np.ndarray)):
            dataset = TensorDataset(dataset)
            self._single = True
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader needs a dataset with __len__ and __getitem__ (or arrays), got "
                            f"{type(dataset).__name__}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.collate_fn, self.device = collate_fn, device
        self._rng = _rng(generator) if shuffle else None

    _single = False

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else _np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield self._batch(order[start:start + self.batch_size])

    def _batch(self, idx):
        ds = self.dataset
        if isinstance(ds, TensorDataset) and self.collate_fn is None:
            parts = []
            for t in ds.tensors:
                if isinstance(t, Tensor):
                    parts.append(t[as_tensor(idx.astype(_np.int64), like=t)].detach())
                else:
                    parts.append(_to_tensor(t[idx]))
            batch = parts[0] if self._single else tuple(parts)
        else:
            batch = (self.collate_fn or default_collate)([ds[int(i)] for i in idx])
        return _move(batch, self.device) if self.device is not None else batch


def _move(batch, device):
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, tuple):
        return tuple(_move(b, device) for b in batch)
    if isinstance(batch, list):
        return [_move(b, device) for b in batch]
    if isinstance(batch, dict):
        return {k: _move(v, device) for k, v in batch.items()}
    return batch
