"""dg.nn: modules, parameters, layers, losses and initializers (PyTorch's API), and the functional ops."""
from . import functional, init, utils  # noqa: F401
from .module import (Module, ModuleDict, ModuleList, Parameter, RemovableHandle, Sequential,  # noqa: F401
                     StateDictError)
from .linear import Dropout, Embedding, Flatten, Identity, Linear, Unflatten  # noqa: F401
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, MaxPool2d  # noqa: F401
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm  # noqa: F401
from .activation import (ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU, ReLU6, Sigmoid, SiLU,  # noqa: F401
                         Softmax, Softplus, Tanh)
from .attention import MultiheadAttention  # noqa: F401
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss  # noqa: F401
