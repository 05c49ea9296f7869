"""Channel-wise and alpha dropout (PyTorch's Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout and their
functional forms).

Composites of rand_like and elementwise ops. Like dg.nn.functional.dropout, the functional forms are
active when training=True, or with training=None when dg.autograd.is_training() (the modules pass their
own mode). inplace=True writes the result into the input and returns it."""
import warnings

from .._state import STATE
from ..errors import ShapeError
from ..ops.creation import rand_like
from .module import Module

__all__ = ["Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "dropout1d", "dropout2d",
           "dropout3d", "alpha_dropout", "feature_alpha_dropout"]

# SELU's scale * alpha: the value alpha dropout drops to is -_SELU_ALPHA_SCALE (SELU's negative saturation)
_SELU_ALPHA_SCALE = 1.7580993408473766


def _check_p(op, p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")


def _active(training):
    return STATE.training if training is None else bool(training)


def _noise(x, p, feature):
    """A keep mask drawn with probability 1-p: one draw per (sample, channel) when `feature`."""
    # drawn by rand_like (an op of the graph), so a compiled function draws afresh at every call
    like = x[(slice(None), slice(None)) + (slice(0, 1),) * (x.ndim - 2)] if feature else x
    return (rand_like(like) >= p).astype(x.dtype)


def _write(x, out, inplace):
    if not inplace:
        return out
    x.copy_(out)
    return x


def _feature_dropout(op, x, p, training, inplace):
    _check_p(op, p)
    if not _active(training) or p == 0.0:
        return x
    if x.ndim < 2:
        raise ShapeError(f"{op}: expected an input with a batch and a channel dim (N, C, ...), got shape "
                         f"{tuple(x.shape)}")
    if p == 1.0:
        return _write(x, x * 0.0, inplace)
    return _write(x, x * (_noise(x, p, True) * (1.0 / (1.0 - p))), inplace)


def _unbatched(op, x, p, training, inplace, batched_ndim):
    """dropout1d/3d: an unbatched input (one dim fewer) is one sample."""
    if x.ndim == batched_ndim - 1:
        out = _feature_dropout(op, x.unsqueeze(0), p, training, False).squeeze(0)
        return _write(x, out, inplace) if out is not x else x
    return _feature_dropout(op, x, p, training, inplace)


def dropout1d(input, p=0.5, training=None, inplace=False):
    """Zero whole channels of (N, C, L) or (C, L) input with probability p, scaling the rest by 1/(1-p)."""
    if input.ndim not in (2, 3):
        raise ShapeError(f"dropout1d: Expected 2D or 3D input (C, L) or (N, C, L), but received a {input.ndim}D "
                         f"input of shape {tuple(input.shape)}")
    return _unbatched("dropout1d", input, p, training, inplace, 3)


def dropout2d(input, p=0.5, training=None, inplace=False):
    """Zero whole channels of (N, C, H, W) input with probability p, scaling the rest by 1/(1-p).

    As PyTorch, a 3-D input is read as (N, C, L) (1-D channel-wise dropout) with a warning, and other
    ranks warn and drop over dims 0 and 1."""
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated (as in "
                      f"PyTorch); dropout2d expects 3D or 4D inputs", stacklevel=2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L) as PyTorch does; use "
                      "dropout1d for that", stacklevel=2)
    return _feature_dropout("dropout2d", input, p, training, inplace)


def dropout3d(input, p=0.5, training=None, inplace=False):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input with probability p, scaling the rest."""
    if input.ndim not in (4, 5):
        warnings.warn(f"dropout3d: Received a {input.ndim}-D input to dropout3d, which is deprecated (as in "
                      f"PyTorch); dropout3d expects 4D or 5D inputs", stacklevel=2)
    return _unbatched("dropout3d", input, p, training, inplace, 5)


def _alpha(op, x, p, training, inplace, feature):
    _check_p(op, p)
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if p == 1.0:
        return _write(x, x * 0.0, inplace)
    if feature and x.ndim < 2:
        raise ShapeError(f"{op}: expected an input with a batch and a channel dim (N, C, ...), got shape "
                         f"{tuple(x.shape)}")
    keep = _noise(x, p, feature)
    a = 1.0 / ((_SELU_ALPHA_SCALE ** 2 * p + 1) * (1 - p)) ** 0.5
    # kept: a * x + alpha a p;  dropped: alpha a p - alpha a  (mean and variance of SELU outputs kept)
    out = x * (keep * a) + (keep - 1.0) * (_SELU_ALPHA_SCALE * a) + _SELU_ALPHA_SCALE * a * p
    return _write(x, out, inplace)


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Dropout for SELU networks: dropped elements become SELU's negative saturation, then an affine map
    keeps the mean and variance. Inactive unless training=True (PyTorch's default is False)."""
    return _alpha("alpha_dropout", input, p, training, inplace, False)


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    """alpha_dropout with one draw per (sample, channel) over (N, C, ...) input."""
    return _alpha("feature_alpha_dropout", input, p, training, inplace, True)


class _DropoutNd(Module):
    _fn = None

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = float(p), bool(inplace)

    def forward(self, input):
        return type(self)._fn(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(_DropoutNd):
    """Channel-wise dropout of (N, C, L) or (C, L) input in training mode; identity in eval."""
    _fn = staticmethod(dropout1d)


class Dropout2d(_DropoutNd):
    """Channel-wise dropout of (N, C, H, W) input in training mode (3-D input: read as (N, C, L))."""
    _fn = staticmethod(dropout2d)


class Dropout3d(_DropoutNd):
    """Channel-wise dropout of (N, C, D, H, W) or (C, D, H, W) input in training mode."""
    _fn = staticmethod(dropout3d)


class AlphaDropout(_DropoutNd):
    """alpha_dropout in training mode (for SELU networks); identity in eval."""
    _fn = staticmethod(alpha_dropout)


class FeatureAlphaDropout(_DropoutNd):
    """feature_alpha_dropout in training mode; identity in eval."""
    _fn = staticmethod(feature_alpha_dropout)
