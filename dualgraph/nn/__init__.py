"""dg.nn: modules, parameters, layers, losses and initializers (PyTorch's API), and the functional ops."""
import sys as _sys

from . import functional, init, parallel, utils  # noqa: F401
from .module import (Module, ModuleDict, ModuleList, Parameter, RemovableHandle, Sequential,  # noqa: F401
                     StateDictError)
from .linear import Dropout, Embedding, Flatten, Identity, Linear, Unflatten  # noqa: F401
from .conv import (AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, Conv3d, ConvTranspose1d,  # noqa: F401
                   ConvTranspose2d, MaxPool2d)
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm  # noqa: F401
from .activation import (ELU, GELU, Hardtanh, LeakyReLU, LogSoftmax, ReLU, ReLU6, Sigmoid, SiLU,  # noqa: F401
                         Softmax, Softplus, Tanh)
from .attention import MultiheadAttention  # noqa: F401
from .container import ParameterDict, ParameterList  # noqa: F401
from .dropout import AlphaDropout, Dropout1d, Dropout2d, Dropout3d, FeatureAlphaDropout  # noqa: F401
from .rnn import GRU, GRUCell, LSTM, LSTMCell, RNN, RNNBase, RNNCell, RNNCellBase  # noqa: F401
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss  # noqa: F401
from .more import (Bilinear, CELU, ConstantPad1d, ConstantPad2d,  # noqa: F401
                   ConstantPad3d, CosineEmbeddingLoss, CosineSimilarity, GaussianNLLLoss, GLU, GroupNorm,
                   Hardshrink, Hardsigmoid, Hardswish, HuberLoss, InstanceNorm1d, InstanceNorm2d, KLDivLoss,
                   LocalResponseNorm, LogSigmoid, MarginRankingLoss, Mish, MultiLabelSoftMarginLoss,
                   PairwiseDistance, PixelShuffle, PixelUnshuffle, PoissonNLLLoss, PReLU, ReflectionPad1d,
                   ReflectionPad2d, ReplicationPad1d, ReplicationPad2d, SELU, SmoothL1Loss, SoftMarginLoss,
                   Softmin, Softshrink, Softsign, Tanhshrink, Threshold, TripletMarginLoss, Upsample,
                   UpsamplingBilinear2d, UpsamplingNearest2d, ZeroPad1d, ZeroPad2d, EmbeddingBag)

# torch.nn.utils.rnn's names (pad_sequence) live in nn/rnn.py; `from dualgraph.nn.utils.rnn import ...`
# finds that module here
utils.rnn = rnn
_sys.modules[__name__ + ".utils.rnn"] = rnn
