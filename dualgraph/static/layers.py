"""tf.layers: dense, conv2d, max_pooling2d, dropout and flatten as TF1 builds them, with their
variables made by get_variable in a variable_scope named after the layer ("dense", "dense_1", ...,
or `name`), so `reuse=True` with the same name shares them."""
import numpy as np

from ..ops import elementwise as _el
from ..ops import shape as _sh
from . import nn as _nn
from .graph import StaticGraphError, get_default_graph, get_variable, variable_scope
from .init_ops import glorot_uniform_initializer, zeros_initializer
from .ops import _t, graph_op


def _scope_name(base, name):
    """`name`, else the first of base, base_1, base_2, ... not used yet in the current scope."""
    if name:
        return name
    g = get_default_graph()
    counts = g.__dict__.setdefault("_layer_counts", {})
    key = g._prefix() + base
    k = counts.get(key, 0)
    counts[key] = k + 1
    return base if k == 0 else f"{base}_{k}"


def _channels_last(data_format, what):
    if data_format not in ("channels_last", "channels_first"):
        raise StaticGraphError(f"{what}: data_format must be 'channels_last' or 'channels_first', got "
                               f"{data_format!r}")
    return "NHWC" if data_format == "channels_last" else "NCHW"


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
          bias_initializer=zeros_initializer(), trainable=True, name=None, reuse=None):
    """activation(inputs @ kernel + bias) over the last dim; kernel [in, units] (glorot_uniform unless
    given), bias [units] (zeros)."""
    x = _t(inputs) if not isinstance(inputs, np.ndarray) else inputs
    n_in = x.shape[-1]
    if not isinstance(n_in, int):
        raise StaticGraphError(f"dense: the last dim of the input {tuple(x.shape)} must be known when the graph "
                               f"is built")
    with variable_scope(_scope_name("dense", name), reuse=reuse):
        kernel = get_variable("kernel", [n_in, int(units)], initializer=kernel_initializer or
                              glorot_uniform_initializer(), trainable=trainable)
        bias = get_variable("bias", [int(units)], initializer=bias_initializer, trainable=trainable) \
            if use_bias else None
    return _dense(x, kernel, bias, activation)


@graph_op
def _dense(x, kernel, bias, activation):
    x = _t(x)
    out = _sh.reshape(x, (-1, x.shape[-1])) @ kernel if x.ndim > 2 else x @ kernel
    if x.ndim > 2:
        out = _sh.reshape(out, tuple(x.shape[:-1]) + (kernel.shape[1],))
    if bias is not None:
        out = out + bias
    return activation(out) if activation is not None else out


def conv2d(inputs, filters, kernel_size, strides=(1, 1), padding="valid", data_format="channels_last",
           dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer=None,
           bias_initializer=zeros_initializer(), trainable=True, name=None, reuse=None):
    """A 2-D convolution layer: kernel [kh, kw, in, filters] (glorot_uniform unless given), bias
    [filters]; padding 'valid' or 'same' (TF1's SAME)."""
    fmt = _channels_last(data_format, "conv2d")
    x = _t(inputs)
    n_in = x.shape[-1] if fmt == "NHWC" else x.shape[1]
    kh, kw = _pair(kernel_size)
    with variable_scope(_scope_name("conv2d", name), reuse=reuse):
        kernel = get_variable("kernel", [kh, kw, n_in, int(filters)], initializer=kernel_initializer or
                              glorot_uniform_initializer(), trainable=trainable)
        bias = get_variable("bias", [int(filters)], initializer=bias_initializer, trainable=trainable) \
            if use_bias else None
    sh, sw = _pair(strides)
    dh, dw = _pair(dilation_rate)
    st = [1, sh, sw, 1] if fmt == "NHWC" else [1, 1, sh, sw]
    dl = [1, dh, dw, 1] if fmt == "NHWC" else [1, 1, dh, dw]
    out = _nn.conv2d(x, kernel, strides=st, padding=padding.upper(), data_format=fmt, dilations=dl)
    if bias is not None:
        out = _nn.bias_add(out, bias, data_format=fmt)
    return activation(out) if activation is not None else out


def max_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last", name=None):
    """The maximum over pool_size windows moved by strides."""
    fmt = _channels_last(data_format, "max_pooling2d")
    ph, pw = _pair(pool_size)
    sh, sw = _pair(strides)
    k, s = ([1, ph, pw, 1], [1, sh, sw, 1]) if fmt == "NHWC" else ([1, 1, ph, pw], [1, 1, sh, sw])
    if fmt == "NCHW":
        x = _sh.permute(_t(inputs), 0, 2, 3, 1)
        return _sh.permute(_nn.max_pool(x, [1, ph, pw, 1], [1, sh, sw, 1], padding.upper()), 0, 3, 1, 2)
    return _nn.max_pool(inputs, k, s, padding.upper())


@graph_op
def flatten(inputs, data_format="channels_last"):
    """inputs reshaped to [batch, -1] (the other dims must be known when the graph is built)."""
    x = _t(inputs)
    rest = 1
    for d in x.shape[1:]:
        if not isinstance(d, int):
            raise StaticGraphError(f"flatten: dims after the first must be known when the graph is built, got "
                                   f"{tuple(x.shape)}")
        rest *= d
    return _sh.reshape(x, (-1, rest))


@graph_op
def dropout(inputs, rate=0.5, noise_shape=None, seed=None, training=False):
    """Dropout at `rate` when training (a Python bool, or a bool tensor such as a placeholder fed per
    run); the identity otherwise."""
    x = _t(inputs)
    if training is False:
        return x
    dropped = _nn.dropout(x, rate=rate, noise_shape=noise_shape, seed=seed)
    if training is True:
        return dropped
    return _el.where(_t(training), dropped, x)


__all__ = ["dense", "conv2d", "max_pooling2d", "flatten", "dropout"]
