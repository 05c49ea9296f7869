"""Gluon's common image transforms: Compose, Cast, ToTensor, Normalize."""
from .... import nd
from ....errors import InvalidValue, ShapeError
from ....tensor import Tensor
from ...block import Block


class Compose(Block):
    """Apply transforms in order."""

    def __init__(self, transforms):
        super().__init__()
        self._transforms = list(transforms)

    def forward(self, x, *args):
        for t in self._transforms:
            x = t(x)
        return x


class Cast(Block):
    def __init__(self, dtype="float32"):
        super().__init__()
        self._dtype = dtype

    def forward(self, x, *args):
        return _as_nd(x).astype(self._dtype)


def _as_nd(x):
    return x if isinstance(x, Tensor) else nd.array(x, dtype=getattr(x, "dtype", None))


class ToTensor(Block):
    """(H, W, C) or (N, H, W, C) values in [0, 255] -> float32 (C, H, W) / (N, C, H, W) in [0, 1)."""

    def forward(self, x, *args):
        x = _as_nd(x)
        if x.ndim == 2:
            x = x.reshape(tuple(x.shape) + (1,))
        if x.ndim == 3:
            return nd.transpose(x.astype("float32"), (2, 0, 1)) / 255.0
        if x.ndim == 4:
            return nd.transpose(x.astype("float32"), (0, 3, 1, 2)) / 255.0
        raise ShapeError(f"ToTensor: expects an (H, W, C) or (N, H, W, C) image, got shape {tuple(x.shape)}")


class Normalize(Block):
    """(x - mean) / std per channel of a (C, H, W) or (N, C, H, W) tensor."""

    def __init__(self, mean=0.0, std=1.0):
        super().__init__()
        self._mean, self._std = mean, std

    def forward(self, x, *args):
        if x.ndim not in (3, 4):
            raise ShapeError(f"Normalize: expects a (C, H, W) or (N, C, H, W) tensor, got {tuple(x.shape)}")
        c = x.shape[-3]
        mean = nd.array(self._mean if isinstance(self._mean, (list, tuple)) else [self._mean] * c)
        std = nd.array(self._std if isinstance(self._std, (list, tuple)) else [self._std] * c)
        if mean.shape[0] != c or std.shape[0] != c:
            raise InvalidValue(f"Normalize: {c} channels but mean {self._mean} / std {self._std}")
        return (x - mean.reshape(c, 1, 1)) / std.reshape(c, 1, 1)
