"""Samplers: which dataset indices a DataLoader fetches, in which order (PyTorch's classes).

Random samplers draw from `generator`: an int seed, a numpy Generator, or None for dualgraph's own
generator (the one `dg.manual_seed` seeds), read afresh at every epoch so a later `dg.manual_seed`
still applies. A given generator is used as is, so its state carries from one epoch to the next.
"""
import numbers

import numpy as _np

from ...backend import CPU
from ...ops.creation import generator as _dg_generator
from ...tensor import Tensor
from ._errors import ArgumentTypeError, InvalidValue

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler"]


_CHUNK = 1024


def as_generator(generator, where):
    """An int seed becomes a numpy Generator once; None stays None (dualgraph's generator at each use).
    Anything else that draws like a numpy Generator (permutation, integers, choice) is used as is."""
    if generator is None or isinstance(generator, _np.random.Generator) or all(
            callable(getattr(generator, m, None)) for m in ("permutation", "integers", "choice")):
        return generator
    if isinstance(generator, (numbers.Integral,)) and not isinstance(generator, bool):
        return _np.random.default_rng(int(generator))
    raise ArgumentTypeError(f"{where}: generator must be None, an int seed or a numpy.random.Generator, got "
                            f"{type(generator).__name__}")


def rng_of(generator):
    return _dg_generator(CPU) if generator is None else generator


class Sampler:
    """Base class: subclasses yield dataset indices from __iter__ (and may define __len__)."""

    def __init__(self, data_source=None):
        pass


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation of the indices each epoch; with replacement=True, num_samples independent
    draws. Without replacement, num_samples larger than the dataset walks several permutations."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = as_generator(generator, "RandomSampler")
        if not isinstance(self.replacement, bool):
            raise ArgumentTypeError(f"replacement should be a boolean value, but got replacement={self.replacement}")
        if not _positive_int(self.num_samples):
            raise InvalidValue(f"num_samples should be a positive integer value, but got "
                               f"num_samples={self.num_samples}")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        rng = rng_of(self.generator)
        if self.replacement:
            # drawn in chunks: an "infinite" loader asks for num_samples=1e10 and reads a few thousand
            for start in range(0, self.num_samples, _CHUNK):
                yield from rng.integers(0, n, size=min(_CHUNK, self.num_samples - start), dtype=_np.int64).tolist()
            return
        for _ in range(self.num_samples // n):
            yield from rng.permutation(n).tolist()
        rest = self.num_samples % n
        if rest:
            yield from rng.permutation(n)[:rest].tolist()

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order each epoch."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = as_generator(generator, "SubsetRandomSampler")

    def __iter__(self):
        for i in rng_of(self.generator).permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """num_samples indices drawn with probabilities proportional to `weights` (which need not sum to 1)."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        if not _positive_int(num_samples):
            raise InvalidValue(f"num_samples should be a positive integer value, but got num_samples={num_samples}")
        if not isinstance(replacement, bool):
            raise InvalidValue(f"replacement should be a boolean value, but got replacement={replacement}")
        w = _np.asarray(weights.numpy() if isinstance(weights, Tensor) else weights, dtype=_np.float64)
        if w.ndim != 1:
            raise InvalidValue(f"weights should be a 1d sequence but given weights have shape {tuple(w.shape)}")
        if not _np.isfinite(w).all() or (w < 0).any():
            raise InvalidValue("WeightedRandomSampler: weights must be finite and non-negative, got "
                               f"min {w.min() if w.size else None}, max {w.max() if w.size else None}")
        if w.sum() <= 0:
            raise InvalidValue("WeightedRandomSampler: invalid multinomial distribution (sum of weights <= 0)")
        if not replacement and num_samples > int((w > 0).sum()):
            raise InvalidValue(f"WeightedRandomSampler: cannot draw num_samples={num_samples} without replacement "
                               f"from {int((w > 0).sum())} indices with non-zero weight")
        self.weights = w
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = as_generator(generator, "WeightedRandomSampler")

    def __iter__(self):
        p = self.weights / self.weights.sum()
        draws = rng_of(self.generator).choice(len(p), size=self.num_samples, replace=self.replacement, p=p)
        yield from draws.tolist()

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    """Group the indices of `sampler` into lists of batch_size (the last one shorter unless drop_last)."""

    def __init__(self, sampler, batch_size, drop_last):
        if not _positive_int(batch_size):
            raise InvalidValue(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise InvalidValue(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self):
        batch = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def _positive_int(n):
    return isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0
