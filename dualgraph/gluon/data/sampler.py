"""Gluon's samplers: which indices a DataLoader reads, and how they group into batches."""
from ...errors import InvalidValue
from ...ops import creation as _cr


class Sampler:
    def __iter__(self):
        raise InvalidValue(f"{type(self).__name__} must define __iter__")

    def __len__(self):
        raise InvalidValue(f"{type(self).__name__} must define __len__")


class SequentialSampler(Sampler):
    def __init__(self, length, start=0):
        self._length, self._start = length, start

    def __iter__(self):
        return iter(range(self._start, self._start + self._length))

    def __len__(self):
        return self._length


class RandomSampler(Sampler):
    """A new random order each epoch, from dualgraph's seeded generator (dg.manual_seed)."""

    def __init__(self, length):
        self._length = length

    def __iter__(self):
        return iter(_cr.randperm(self._length).tolist())

    def __len__(self):
        return self._length


class BatchSampler(Sampler):
    """Groups a sampler's indices into lists of batch_size. last_batch: 'keep' yields the short last
    batch, 'discard' drops it, 'rollover' carries its indices into the next epoch's first batch."""

    def __init__(self, sampler, batch_size, last_batch="keep"):
        if last_batch not in ("keep", "discard", "rollover"):
            raise InvalidValue(f"last_batch must be one of 'keep', 'discard', or 'rollover', but got {last_batch}")
        if batch_size <= 0:
            raise InvalidValue(f"batch_size must be a positive integer, got {batch_size}")
        self._sampler, self._batch_size, self._last_batch = sampler, batch_size, last_batch
        self._prev = []

    def __iter__(self):
        batch, self._prev = self._prev, []
        for i in self._sampler:
            batch.append(i)
            if len(batch) == self._batch_size:
                yield batch
                batch = []
        if batch:
            if self._last_batch == "keep":
                yield batch
            elif self._last_batch == "rollover":
                self._prev = batch

    def __len__(self):
        n = len(self._sampler)
        if self._last_batch == "keep":
            return (n + self._batch_size - 1) // self._batch_size
        if self._last_batch == "discard":
            return n // self._batch_size
        return (len(self._prev) + n) // self._batch_size
