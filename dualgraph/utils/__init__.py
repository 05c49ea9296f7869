"""dualgraph.utils: PyTorch's `torch.utils` namespaces that scripts import (`utils.data`)."""
from . import data  # noqa: F401
