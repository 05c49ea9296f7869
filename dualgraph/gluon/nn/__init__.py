"""gluon.nn: Gluon's layers over dualgraph ops (NCHW layout)."""
from ..block import Block, HybridBlock  # noqa: F401
from .basic_layers import (Activation, BatchNorm, Dense, Dropout, Embedding, Flatten, HybridLambda,  # noqa: F401
                           HybridSequential, Lambda, LayerNorm, LeakyReLU, Sequential)
from .conv_layers import (AvgPool2D, Conv2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D)  # noqa: F401
