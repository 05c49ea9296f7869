"""Gluon's 2-D convolution and pooling layers (NCHW) over dg.conv2d / max_pool2d / avg_pool2d."""
from ...errors import InvalidValue, ShapeError
from ...ops import conv as _conv
from ..block import HybridBlock
from .basic_layers import _ACTS


def _pair(v, name):
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise InvalidValue(f"{name} must be an int or a pair for a 2-D layer, got {v}")
    return v


def _check_layout(layout, cls):
    if layout != "NCHW":
        raise InvalidValue(f"{cls}: only layout='NCHW' is supported, got {layout!r}")


class Conv2D(HybridBlock):
    """2-D convolution: weight (channels, in_channels / groups, kh, kw); in_channels=0 leaves it to the
    first input."""

    def __init__(self, channels, kernel_size, strides=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                 layout="NCHW", activation=None, use_bias=True, weight_initializer=None,
                 bias_initializer="zeros", in_channels=0, **kwargs):
        _check_layout(layout, "Conv2D")
        if activation is not None and activation not in _ACTS:
            raise InvalidValue(f"Conv2D: unknown activation {activation!r}; use one of {_ACTS}")
        super().__init__(**kwargs)
        self._channels, self._groups, self._act_name = channels, groups, activation
        self._kernel = _pair(kernel_size, "kernel_size")
        self._strides, self._padding = _pair(strides, "strides"), _pair(padding, "padding")
        self._dilation = _pair(dilation, "dilation")
        self._in_channels = in_channels
        self.weight = self.params.get("weight", shape=(channels, in_channels // groups) + self._kernel,
                                      init=weight_initializer, allow_deferred_init=True)
        self.bias = self.params.get("bias", shape=(channels,), init=bias_initializer,
                                    allow_deferred_init=True) if use_bias else None

    def _alias(self):
        return "conv"

    def infer_shape(self, x, *args):
        if x.ndim != 4:
            raise ShapeError(f"Conv2D: expects an (N, C, H, W) input, got shape {tuple(x.shape)}")
        self.weight.shape = (self._channels, x.shape[1] // self._groups) + self._kernel

    def hybrid_forward(self, F, x, weight, bias=None):
        out = _conv.conv2d(x, weight, bias, stride=self._strides, padding=self._padding,
                           dilation=self._dilation, groups=self._groups)
        return F.Activation(out, act_type=self._act_name) if self._act_name else out

    def __repr__(self):
        s = self.weight.shape
        inc = s[1] * self._groups if s[1] else None
        act = f", Activation({self._act_name})" if self._act_name else ""
        return (f"Conv2D({inc} -> {self._channels}, kernel_size={self._kernel}, stride={self._strides}"
                f"{', padding=' + str(self._padding) if any(self._padding) else ''}{act})")


class _Pool(HybridBlock):
    def __init__(self, pool_size=(2, 2), strides=None, padding=0, layout="NCHW", ceil_mode=False, **kwargs):
        _check_layout(layout, type(self).__name__)
        super().__init__(**kwargs)
        self._size = _pair(pool_size, "pool_size")
        self._strides = self._size if strides is None else _pair(strides, "strides")
        self._padding = _pair(padding, "padding")
        self._ceil = ceil_mode

    def _alias(self):
        return "pool"

    def __repr__(self):
        return (f"{type(self).__name__}(size={self._size}, stride={self._strides}, padding={self._padding}, "
                f"ceil_mode={self._ceil})")


class MaxPool2D(_Pool):
    def hybrid_forward(self, F, x):
        return _conv.max_pool2d(x, self._size, self._strides, self._padding, ceil_mode=self._ceil)


class AvgPool2D(_Pool):
    def __init__(self, pool_size=(2, 2), strides=None, padding=0, layout="NCHW", ceil_mode=False,
                 count_include_pad=True, **kwargs):
        super().__init__(pool_size, strides, padding, layout, ceil_mode, **kwargs)
        self._count_pad = count_include_pad

    def hybrid_forward(self, F, x):
        return _conv.avg_pool2d(x, self._size, self._strides, self._padding, ceil_mode=self._ceil,
                                count_include_pad=self._count_pad)


class GlobalAvgPool2D(HybridBlock):
    """(N, C, H, W) -> (N, C, 1, 1) means."""

    def __init__(self, layout="NCHW", **kwargs):
        _check_layout(layout, "GlobalAvgPool2D")
        super().__init__(**kwargs)

    def hybrid_forward(self, F, x):
        return x.mean(axis=(2, 3), keepdims=True)


class GlobalMaxPool2D(HybridBlock):
    def __init__(self, layout="NCHW", **kwargs):
        _check_layout(layout, "GlobalMaxPool2D")
        super().__init__(**kwargs)

    def hybrid_forward(self, F, x):
        return x.amax(axis=(2, 3), keepdims=True)
