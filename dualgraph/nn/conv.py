"""Convolution and pooling modules over dg.nn.functional's conv/pool (PyTorch's layouts and init)."""

from ..ops import creation
from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d"]


def _tuple(v, n):
    return (int(v),) * n if isinstance(v, int) else tuple(int(a) for a in v)



def _conv_repr(m, output_padding=None):
    """PyTorch's extra_repr of a convolution: the arguments that differ from their defaults."""
    s = f"{m.in_channels}, {m.out_channels}, kernel_size={m.kernel_size}, stride={m.stride}"
    if m.padding != (0,) * m._n:
        s += f", padding={m.padding}"
    if output_padding is not None and output_padding != (0,) * m._n:
        s += f", output_padding={output_padding}"
    if m.dilation != (1,) * m._n:
        s += f", dilation={m.dilation}"
    if m.groups != 1:
        s += f", groups={m.groups}"
    if m.bias is None:
        s += ", bias=False"
    return s


def _setup(m, in_channels, out_channels, kernel_size, stride, dilation, groups, bias, transposed, device, dtype):
    """The settings, weight and bias every convolution layer has. The weight is (C_out, C_in/groups, *kernel),
    or (C_in, C_out/groups, *kernel) for a transposed one, as PyTorch lays them out."""
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible "
                         f"by groups ({groups})")
    n = m._n
    m.in_channels, m.out_channels, m.groups = int(in_channels), int(out_channels), int(groups)
    m.kernel_size, m.stride, m.dilation = _tuple(kernel_size, n), _tuple(stride, n), _tuple(dilation, n)
    lead = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
    m.weight = Parameter(creation.empty(*lead, *m.kernel_size, device=device, dtype=dtype))
    if bias:
        m.bias = Parameter(creation.empty(out_channels, device=device, dtype=dtype))
    else:
        m.register_parameter("bias", None)
    m.reset_parameters()


class _ConvNd(Module):
    _n = 2
    _fn = None
    _layout = ""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', "
                             f"got {padding_mode!r}")
        self.padding = padding if isinstance(padding, str) else _tuple(padding, self._n)
        self.padding_mode = padding_mode
        _setup(self, in_channels, out_channels, kernel_size, stride, dilation, groups, bias, False, device, dtype)

    def reset_parameters(self):
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, x):
        n = self._n
        if x.ndim not in (n + 1, n + 2) or x.shape[-n - 1] != self.in_channels:
            raise self._input_error(f"shape {self._layout.replace('C', str(self.in_channels))} "
                                    f"(or without the batch dim N)", x)
        batched = x.ndim == n + 2
        x = x if batched else x.unsqueeze(0)
        pad = self.padding if isinstance(self.padding, str) else (self.padding if n > 1 else self.padding[0])
        if self.padding_mode != "zeros":  # pad explicitly in that mode, then convolve without padding
            x = F.pad(x, self._explicit_padding(), mode=self.padding_mode)
            pad = 0
        out = type(self)._fn(x, self.weight, self.bias,
                             stride=self.stride if n > 1 else self.stride[0], padding=pad,
                             dilation=self.dilation if n > 1 else self.dilation[0], groups=self.groups)
        return out if batched else out.squeeze(0)

    def _explicit_padding(self):
        """(left, right) pairs from the last spatial axis backwards, as F.pad takes them."""
        if self.padding == "valid":
            return (0, 0) * self._n
        if self.padding == "same":
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            pairs = [(t // 2, t - t // 2) for t in total]
        else:
            pairs = [(p, p) for p in self.padding]
        return tuple(v for pair in reversed(pairs) for v in pair)

    def extra_repr(self):
        return _conv_repr(self)


class Conv1d(_ConvNd):
    """1-d cross-correlation: (N, C_in, L) -> (N, C_out, L_out); weight (C_out, C_in/groups, k)."""
    _n = 1
    _fn = staticmethod(F.conv1d)
    _layout = "(N, C, L)"


class Conv2d(_ConvNd):
    """2-d cross-correlation: (N, C_in, H, W) -> (N, C_out, H_out, W_out); weight (C_out, C_in/groups, kh, kw)."""
    _n = 2
    _fn = staticmethod(F.conv2d)
    _layout = "(N, C, H, W)"


class Conv3d(_ConvNd):
    """3-d cross-correlation: (N, C_in, D, H, W) -> (N, C_out, ...); weight (C_out, C_in/groups, kd, kh, kw)."""
    _n = 3
    _fn = staticmethod(F.conv3d)
    _layout = "(N, C, D, H, W)"


class _ConvTransposeNd(Module):
    """The transposed convolution (the input gradient of the convolution with the same settings):
    weight (C_in, C_out/groups, *kernel), as PyTorch lays it out and initializes it."""
    _n = 2
    _fn = None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"Only 'zeros' padding mode is supported for {type(self).__name__}, got {padding_mode!r}")
        self.padding, self.output_padding = _tuple(padding, self._n), _tuple(output_padding, self._n)
        self.padding_mode = padding_mode
        _setup(self, in_channels, out_channels, kernel_size, stride, dilation, groups, bias, True, device, dtype)

    def reset_parameters(self):
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, x, output_size=None):
        n = self._n
        op = self.output_padding
        if output_size is not None:   # PyTorch: the output_padding that gives this size
            want = tuple(output_size)[-n:]
            op = tuple(int(w) - ((int(i) - 1) * s - 2 * p + d * (k - 1) + 1) for w, i, s, p, d, k in
                       zip(want, x.shape[-n:], self.stride, self.padding, self.dilation, self.kernel_size))
        one = (lambda v: v[0]) if n == 1 else (lambda v: v)
        return type(self)._fn(x, self.weight, self.bias, stride=one(self.stride), padding=one(self.padding),
                              output_padding=one(op), groups=self.groups, dilation=one(self.dilation))

    def extra_repr(self):
        return _conv_repr(self, self.output_padding)


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-d convolution: (N, C_in, L) -> (N, C_out, L_out); weight (C_in, C_out/groups, k)."""
    _n = 1
    _fn = staticmethod(F.conv_transpose1d)


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-d convolution: (N, C_in, H, W) -> (N, C_out, H_out, W_out); weight (C_in, C_out/groups, kh, kw)."""
    _n = 2
    _fn = staticmethod(F.conv_transpose2d)


class _Pool2d(Module):
    def _check(self, x):
        if x.ndim not in (3, 4):
            raise self._input_error("shape (N, C, H, W) or (C, H, W)", x)


class MaxPool2d(_Pool2d):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode
        self.return_indices = return_indices

    def forward(self, x):
        self._check(x)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(_Pool2d):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = padding, ceil_mode, count_include_pad

    def forward(self, x):
        self._check(x)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(_Pool2d):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        self._check(x)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
