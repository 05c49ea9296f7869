"""dg.optim: SGD, Adam, AdamW, RMSprop and learning-rate schedulers (PyTorch's API and formulas)."""
from . import lr_scheduler  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from .sgd import SGD  # noqa: F401
