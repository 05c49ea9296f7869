"""dg.nn.parallel: data parallelism across processes (torch.nn.parallel's DistributedDataParallel)."""
from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
