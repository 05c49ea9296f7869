"""DistributedSampler: each of num_replicas processes reads its own 1/num_replicas of the dataset
(torch.utils.data.distributed.DistributedSampler).

Every replica draws the same permutation (seeded with seed + epoch: call set_epoch(e) at the start of
each epoch, or every epoch repeats the first one's order), pads it by repeating indices from its start
so that it divides evenly (or, with drop_last, cuts the tail), and takes every num_replicas-th index
from position rank. The permutation comes from numpy's generator, so the order differs from torch's
randperm for the same seed; which indices each rank gets for a given permutation is the same.
"""
import math
import numbers

import numpy as _np

from ._errors import ArgumentTypeError, InvalidValue
from .sampler import Sampler

__all__ = ["DistributedSampler"]


class DistributedSampler(Sampler):
    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from ... import distributed as dist  # the default process group, only when asked for
            if not dist.is_initialized():
                raise InvalidValue("DistributedSampler: num_replicas and rank default to the process group's "
                                   "world size and rank, but dg.distributed.init_process_group() was not called; "
                                   "pass num_replicas= and rank=, or initialize the process group")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        for name, v in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool):
                raise ArgumentTypeError(f"DistributedSampler: {name} must be an int, got {type(v).__name__}")
        if num_replicas < 1:
            raise InvalidValue(f"DistributedSampler: num_replicas must be at least 1, got {num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise InvalidValue(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.drop_last = bool(drop_last)
        n = len(dataset)
        if self.drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle = bool(shuffle)
        self.seed = int(seed)

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = _np.random.default_rng(self.seed + self.epoch).permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding <= len(indices):
                indices += indices[:padding]
            elif indices:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """The epoch's number: with shuffle=True, each epoch's order is drawn from seed + epoch."""
        self.epoch = epoch
