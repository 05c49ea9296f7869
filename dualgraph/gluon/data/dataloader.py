"""Gluon's DataLoader: batches of a Dataset as NDArrays."""
import numpy as np

from ... import nd
from ...errors import InvalidValue
from ...tensor import Tensor
from ...utils.data.dataloader import DataLoader as _WorkerLoader
from .sampler import BatchSampler, RandomSampler, SequentialSampler


def default_batchify_fn(data):
    """Stack NDArrays; zip tuples item-wise (a list of batches); numpy/Python values become an NDArray
    of their numpy dtype (labels stay integer if they were)."""
    first = data[0]
    if isinstance(first, Tensor):
        return nd.stack(*data)
    if isinstance(first, tuple):
        return [default_batchify_fn(list(items)) for items in zip(*data)]
    arr = np.asarray(data)
    return nd.array(arr, dtype=arr.dtype)


class DataLoader:
    """Iterate a Dataset in mini-batches: `for data, label in DataLoader(dataset, batch_size=64,
    shuffle=True):`. With num_workers > 0 the batches are read by that many worker processes
    (dualgraph.utils.data's), in the same order; MXNet's thread_pool, pin_memory and prefetch only
    change speed there, and are accepted here without effect."""

    def __init__(self, dataset, batch_size=None, shuffle=False, sampler=None, last_batch=None,
                 batch_sampler=None, batchify_fn=None, num_workers=0, pin_memory=False, pin_device_id=0,
                 prefetch=None, thread_pool=False, timeout=120):
        self._dataset = dataset
        if batch_sampler is None:
            if batch_size is None:
                raise InvalidValue("batch_size must be specified unless batch_sampler is specified")
            if sampler is None:
                sampler = RandomSampler(len(dataset)) if shuffle else SequentialSampler(len(dataset))
            elif shuffle:
                raise InvalidValue("shuffle must not be specified if sampler is specified")
            batch_sampler = BatchSampler(sampler, batch_size, last_batch if last_batch else "keep")
        elif batch_size is not None or shuffle or sampler is not None or last_batch is not None:
            raise InvalidValue("batch_size, shuffle, sampler and last_batch must not be specified if "
                               "batch_sampler is specified.")
        if num_workers < 0:
            raise InvalidValue(f"num_workers must be non-negative, got {num_workers}")
        self._batch_sampler = batch_sampler
        self._batchify_fn = batchify_fn or default_batchify_fn
        self._num_workers, self._timeout = num_workers, timeout

    def __iter__(self):
        if self._num_workers > 0:
            yield from _WorkerLoader(self._dataset, batch_sampler=self._batch_sampler, collate_fn=self._batchify_fn,
                                     num_workers=self._num_workers, timeout=self._timeout)
            return
        fast = getattr(self._dataset, "_batch", None) if self._batchify_fn is default_batchify_fn else None
        for batch in self._batch_sampler:
            out = fast(batch) if fast is not None else None
            yield out if out is not None else self._batchify_fn([self._dataset[i] for i in batch])

    def __len__(self):
        return len(self._batch_sampler)
