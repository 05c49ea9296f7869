"""MXNet Gluon's API over dualgraph: `from dualgraph import nd, autograd, gluon`.

Blocks (gluon.nn), Parameters, losses (gluon.loss), data (gluon.data), Trainer with MXNet's
optimizers, and hybridize() compiling through dg.function. See docs/porting.md for the differences."""
from . import data, init, loss, lr_scheduler, metric, nn, optimizer, utils  # noqa: F401
from .block import Block, HybridBlock  # noqa: F401
from .parameter import (Constant, DeferredInitializationError, Parameter, ParameterDict,  # noqa: F401
                        ParameterError)
from .trainer import StaleGradientError, Trainer  # noqa: F401
