"""Datasets: PyTorch's map-style and iterable classes, Subset, ConcatDataset and random_split.

A map-style dataset may also define `_collated_batch(indices)`, returning exactly what
`default_collate([self[i] for i in indices])` would, computed in one go. The DataLoader uses it
whenever the collate function is default_collate: TensorDataset does it by fancy indexing (one copy
per batch, no per-sample Python loop), and Subset passes it through to the dataset it selects from.
"""
import bisect
import itertools
import math
import numbers
import warnings

import numpy as _np

from ...tensor import Tensor, _make, as_tensor
from ._errors import ArgumentTypeError, IndexOutOfRange, InvalidValue
from .collate import _from_host
from .sampler import as_generator, rng_of

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "StackDataset", "ConcatDataset", "ChainDataset",
           "Subset", "random_split"]


class Dataset:
    """Map-style dataset: subclasses define __getitem__(index) and, for samplers that need it, __len__()."""

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples: subclasses define __iter__. With num_workers > 0 every worker iterates its
    own copy; use get_worker_info() inside __iter__ to give each worker its share."""

    def __add__(self, other):
        return ChainDataset([self, other])


def _as_array(x):
    if isinstance(x, Tensor):
        return x
    arr = _np.asarray(x)
    if arr.dtype == object:
        raise ArgumentTypeError(f"TensorDataset needs numeric arrays, got {type(x).__name__} of mixed types")
    return arr


class TensorDataset(Dataset):
    """Sample i is the tuple of the i-th rows of each tensor (or numpy array); all share the first dim."""

    def __init__(self, *tensors):
        if not tensors:
            raise InvalidValue("TensorDataset needs at least one array or tensor")
        self.tensors = tuple(_as_array(t) for t in tensors)
        n = {t.shape[0] if t.ndim else None for t in self.tensors}
        if len(n) != 1 or None in n:
            shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
            raise InvalidValue(f"TensorDataset: all arrays need the same first dimension, got shapes {shapes}")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]

    def _collated_batch(self, indices):
        return [_rows(t, indices) for t in self.tensors]


def _rows(t, indices):
    """Rows `indices` of an array or tensor as a fresh tensor, as default_collate of the rows would give."""
    idx = _np.asarray(indices, dtype=_np.int64)
    if isinstance(t, Tensor):
        if t.requires_grad:  # autograd must see the selection, as it sees stacking the rows
            return t[as_tensor(idx, like=t)]
        return _make(t._data[t.device.xp.asarray(idx)], t.device)
    return _from_host(t[idx])


class StackDataset(Dataset):
    """Samples of several datasets side by side: StackDataset(a, b)[i] == (a[i], b[i]), and
    StackDataset(x=a, y=b)[i] == {"x": a[i], "y": b[i]}."""

    def __init__(self, *args, **kwargs):
        if args and kwargs:
            raise InvalidValue("StackDataset: give the datasets either as positional or as keyword arguments, not both")
        datasets = args or tuple(kwargs.values())
        if not datasets:
            raise InvalidValue("StackDataset: at least one dataset is needed")
        lengths = [len(d) for d in datasets]
        if len(set(lengths)) != 1:
            raise InvalidValue(f"StackDataset: size mismatch between datasets, lengths {lengths}")
        self._length = lengths[0]
        self.datasets = args if args else dict(kwargs)

    def __getitem__(self, index):
        if isinstance(self.datasets, dict):
            return {k: d[index] for k, d in self.datasets.items()}
        return tuple(d[index] for d in self.datasets)

    def __len__(self):
        return self._length


class ConcatDataset(Dataset):
    """The datasets one after the other: index i goes to the dataset whose range holds it."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise InvalidValue("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise ArgumentTypeError("ConcatDataset does not support IterableDataset (use ChainDataset)")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        if idx < 0:
            if -idx > len(self):
                raise InvalidValue(f"ConcatDataset: absolute value of index {idx} should not exceed dataset "
                                   f"length {len(self)}")
            idx = len(self) + idx
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        if which == len(self.datasets):
            raise IndexOutOfRange(f"ConcatDataset: index {idx} out of range for length {len(self)}")
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - start]


class ChainDataset(IterableDataset):
    """Iterable datasets one after the other."""

    def __init__(self, datasets):
        self.datasets = datasets

    def __iter__(self):
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise ArgumentTypeError(f"ChainDataset only supports IterableDataset, got {type(d).__name__}")
            yield from d

    def __len__(self):
        return sum(len(d) for d in self.datasets)


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices):
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            return getitems([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self):
        return len(self.indices)

    @property
    def _collated_batch(self):
        # present only when the dataset underneath has it, so the DataLoader's check finds the truth
        inner = getattr(self.dataset, "_collated_batch", None)
        if inner is None:
            raise AttributeError("_collated_batch")
        return lambda indices: inner([self.indices[i] for i in indices])


def random_split(dataset, lengths, generator=None):
    """Split `dataset` into non-overlapping Subsets of the given lengths, or of fractions of its length
    (which must sum to 1; the remainder is handed out one by one from the first subset)."""
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        counts = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise InvalidValue(f"random_split: fraction at index {i} is not between 0 and 1: {frac}")
            counts.append(int(math.floor(n * frac)))
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, k in enumerate(counts):
            if k == 0:
                warnings.warn(f"random_split: length of split at index {i} is 0; this split will be empty",
                              stacklevel=2)
        lengths = counts
    for k in lengths:
        if not isinstance(k, numbers.Integral) or k < 0:
            raise InvalidValue(f"random_split: lengths must be non-negative ints or fractions summing to 1, "
                               f"got {lengths}")
    if sum(lengths) != n:
        raise InvalidValue(f"random_split: sum of input lengths ({sum(lengths)}) does not equal the length of the "
                           f"input dataset ({n})")
    perm = rng_of(as_generator(generator, "random_split")).permutation(n).tolist()
    return [Subset(dataset, perm[end - k:end]) for end, k in zip(itertools.accumulate(lengths), lengths)]
