"""Gluon's Dataset, SimpleDataset and ArrayDataset."""
import numpy as np

from ... import nd
from ...errors import InvalidValue
from ...ops.creation import from_numpy
from ...ops.indexing import index_select
from ...tensor import Tensor


class Dataset:
    """Anything with __getitem__ and __len__; `transform(fn)` and `transform_first(fn)` map its items."""

    def __getitem__(self, idx):
        raise InvalidValue(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise InvalidValue(f"{type(self).__name__} must define __len__")

    def transform(self, fn, lazy=True):
        """A dataset of fn(*item) (fn(item) for single items); lazy=False applies it now."""
        out = _LazyTransformDataset(self, fn)
        return SimpleDataset([out[i] for i in range(len(out))]) if not lazy else out

    def transform_first(self, fn, lazy=True):
        """Apply fn to the first element of each item (the data, not the label)."""
        def first(*item):
            return (fn(item[0]),) + tuple(item[1:]) if len(item) > 1 else fn(item[0])
        return self.transform(first, lazy)

    def filter(self, fn):
        return SimpleDataset([self[i] for i in range(len(self)) if fn(self[i])])

    def take(self, count):
        return SimpleDataset([self[i] for i in range(min(count, len(self)))])


class SimpleDataset(Dataset):
    """A dataset over a list (or anything indexable with a length)."""

    def __init__(self, data):
        self._data = data

    def __len__(self):
        return len(self._data)

    def __getitem__(self, idx):
        return self._data[idx]


class _LazyTransformDataset(Dataset):
    def __init__(self, data, fn):
        self._data, self._fn = data, fn

    def __len__(self):
        return len(self._data)

    def __getitem__(self, idx):
        item = self._data[idx]
        return self._fn(*item) if isinstance(item, tuple) else self._fn(item)


class ArrayDataset(Dataset):
    """Zips equal-length arrays: item i is (a[i], b[i], ...) or a[i] for one array. A 1-d NDArray is
    kept as numpy (as MXNet does), so its items are scalars that batch into a 1-d array."""

    def __init__(self, *args):
        if not args:
            raise InvalidValue("ArrayDataset needs at least one array")
        self._length = len(args[0])
        self._data = []
        for i, data in enumerate(args):
            if len(data) != self._length:
                raise InvalidValue(f"All arrays must have the same length; array[0] has length {self._length} "
                                   f"while array[{i}] has {len(data)}.")
            if isinstance(data, Tensor) and data.ndim == 1:
                data = data.numpy()
            self._data.append(data)

    def __getitem__(self, idx):
        if len(self._data) == 1:
            return self._data[0][idx]
        return tuple(d[idx] for d in self._data)

    def _batch(self, indices):
        """The default-batchified batch of `indices` read with one gather per array (what stacking the
        items one by one gives), or None where an array is neither an NDArray nor a numpy array."""
        if not all(isinstance(d, (Tensor, np.ndarray)) for d in self._data):
            return None
        idx = np.asarray(indices, dtype=np.int64)
        out = []
        for d in self._data:
            if isinstance(d, Tensor):
                out.append(index_select(d, 0, from_numpy(idx).to(d.device)))
            else:
                part = d[idx]
                out.append(nd.array(part, dtype=part.dtype))
        return out[0] if len(out) == 1 else out

    def __len__(self):
        return self._length

