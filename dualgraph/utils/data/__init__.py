"""dualgraph.utils.data (also `dg.data`): PyTorch's data API.

    from dualgraph.utils.data import DataLoader, TensorDataset, random_split

Datasets (dataset.py), samplers (sampler.py), default_collate (collate.py) and the DataLoader with
its worker processes (dataloader.py, _worker.py), under the names and with the behaviour of
torch.utils.data. Samplers for more than one process belong in a module of their own beside these
(`distributed.py`, as in PyTorch), re-exported here.
"""
from ._worker import WorkerInfo, get_worker_info
from .collate import default_collate, default_convert
from .dataloader import DataLoader
from .dataset import (ChainDataset, ConcatDataset, Dataset, IterableDataset, StackDataset, Subset, TensorDataset,
                      random_split)
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,
                      WeightedRandomSampler)
from .distributed import DistributedSampler

__all__ = ["BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset", "DistributedSampler",
           "IterableDataset",
           "RandomSampler", "Sampler", "SequentialSampler", "StackDataset", "Subset", "SubsetRandomSampler",
           "TensorDataset", "WeightedRandomSampler", "WorkerInfo", "default_collate", "default_convert",
           "get_worker_info", "random_split"]
