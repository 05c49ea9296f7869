"""Recurrent layers with PyTorch's API, parameter names, layout and init: RNN, LSTM, GRU and their cells,
and pad_sequence.

A module composes layers, directions and inter-layer dropout; each (layer, direction) is one primitive
over the whole sequence (ops/rnn.py: one op forward, one op backward, ONNX's LSTM/GRU/RNN on export),
and a cell is that primitive over one step. A `state_dict` saved from PyTorch loads and gives the same
numbers."""
import math
import warnings

from ..errors import DTypeError, ShapeError
from ..ops import creation
from ..ops.rnn import gru_layer, lstm_layer, rnn_layer
from ..ops.shape import concat, stack
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "pad_sequence"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _layer(mode, x, h0, c0, weights, reverse):
    """(y, h_n, c_n or None) of one layer and direction."""
    if mode == "LSTM":
        return lstm_layer(x, h0, c0, *weights, reverse=reverse)
    if mode == "GRU":
        y, h = gru_layer(x, h0, *weights, reverse=reverse)
    else:
        y, h = rnn_layer(x, h0, *weights, nonlinearity="tanh" if mode == "RNN_TANH" else "relu", reverse=reverse)
    return y, h, None


def _zeros_like_bias(w, H, G):
    return creation.zeros(G * H, dtype=w.dtype, device=w.device)


class RNNBase(Module):
    """What RNN, LSTM and GRU share: parameters weight_ih_l{k}[_reverse], weight_hh_l{k}[_reverse],
    bias_ih_l{k}[_reverse], bias_hh_l{k}[_reverse] in PyTorch's order and layout, all drawn from
    U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        name = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}")
        for what, v in (("hidden_size", hidden_size), ("num_layers", num_layers), ("input_size", input_size)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name}: {what} should be of type int, got: {type(v).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size:
            raise ValueError("LSTM: proj_size > 0 (projected hidden states) is not supported by dualgraph; "
                             "its LSTM layers keep hidden_size outputs")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        G = _GATES[mode]
        D = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            size_in = input_size if layer == 0 else hidden_size * D
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes = [("weight_ih", (G * hidden_size, size_in)), ("weight_hh", (G * hidden_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (G * hidden_size,)), ("bias_hh", (G * hidden_size,))]
                for base, shape in shapes:
                    setattr(self, base + sfx, Parameter(creation.empty(*shape, device=device, dtype=dtype)))
                    self._flat_weights_names.append(base + sfx)
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv)

    def flatten_parameters(self):
        """PyTorch packs the weights into one buffer for cuDNN here; dualgraph's layers read the
        parameters where they are, so there is nothing to pack."""
        return None

    @property
    def all_weights(self):
        per = 4 if self.bias else 2
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[k:k + per]] for k in range(0, len(names), per)]

    def _weights(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        if self.bias:
            return w_ih, w_hh, getattr(self, "bias_ih" + sfx), getattr(self, "bias_hh" + sfx)
        G = _GATES[self.mode]
        return w_ih, w_hh, _zeros_like_bias(w_ih, self.hidden_size, G), _zeros_like_bias(w_ih, self.hidden_size, G)

    def _state(self, hx, what, batched, shape):
        if not isinstance(hx, Tensor):
            raise TypeError(f"{self._get_name()}: {what} must be a Tensor, got {type(hx).__name__}")
        if batched and hx.ndim != 3:
            raise ShapeError(f"{self._get_name()}: For batched 3-D input, {what} should also be 3-D but got "
                             f"{hx.ndim}-D tensor")
        if not batched:
            if hx.ndim != 2:
                raise ShapeError(f"{self._get_name()}: For unbatched 2-D input, {what} should also be 2-D but "
                                 f"got {hx.ndim}-D tensor")
            hx = hx.unsqueeze(1)
        if tuple(hx.shape) != shape:
            raise ShapeError(f"{self._get_name()}: Expected hidden size {shape}, got {list(hx.shape)}")
        return hx

    def forward(self, input, hx=None):
        name = self._get_name()
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__} (packed sequences are not "
                            f"supported)")
        if input.ndim not in (2, 3):
            raise ShapeError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D tensor instead")
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                             f"got {x.shape[-1]}")
        if x.dtype != self.weight_ih_l0.dtype:
            raise DTypeError(f"{name}: input is {x.dtype} but the parameters are {self.weight_ih_l0.dtype}")
        is_lstm = self.mode == "LSTM"
        D = 2 if self.bidirectional else 1
        B, H = x.shape[1], self.hidden_size
        shape = (self.num_layers * D, B, H)
        h0 = c0 = None
        if hx is not None:
            if is_lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
                h0, c0 = (self._state(s, w, batched, shape) for s, w in zip(hx, ("hx[0]", "hx[1]")))
            else:
                h0 = self._state(hx, "hx", batched, shape)

        def initial(s, k):
            return s[k] if s is not None else creation.zeros(B, H, dtype=x.dtype, device=x.device)
        hs, cs = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                k = layer * D + d
                y, h, c = _layer(self.mode, x, initial(h0, k), initial(c0, k) if is_lstm else None,
                                 self._weights(layer, d), reverse=bool(d))
                outs.append(y)
                hs.append(h)
                cs.append(c)
            x = outs[0] if D == 1 else concat(outs, axis=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h_n = stack(hs, 0)
        c_n = stack(cs, 0) if is_lstm else None
        if not batched:
            x, h_n = x.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if is_lstm else None
        elif self.batch_first:
            x = x.transpose(0, 1)
        return (x, (h_n, c_n)) if is_lstm else (x, h_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh (or relu)(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), stacked and optionally
    bidirectional. forward(input, h_0=None) -> (output, h_n), shapes as PyTorch's."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)


class LSTM(RNNBase):
    """LSTM with PyTorch's gates i, f, g, o. forward(input, (h_0, c_0)=None) -> (output, (h_n, c_n))."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device=device, dtype=dtype)


class GRU(RNNBase):
    """GRU with PyTorch's gates r, z, n (n = tanh(W_in x + b_in + r * (W_hn h + b_hn))).
    forward(input, h_0=None) -> (output, h_n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)


# ---- cells ---------------------------------------------------------------------------------------

class RNNCellBase(Module):
    """One step: parameters weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh (PyTorch's)."""

    _mode = None

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
        self.weight_ih = Parameter(creation.empty(num_chunks * hidden_size, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(creation.empty(num_chunks * hidden_size, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(creation.empty(num_chunks * hidden_size, device=device, dtype=dtype))
            self.bias_hh = Parameter(creation.empty(num_chunks * hidden_size, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self._chunks = num_chunks
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            init.uniform_(p, -stdv, stdv)

    def _weights(self):
        if self.bias:
            return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        zeros = _zeros_like_bias(self.weight_ih, self.hidden_size, self._chunks)
        return self.weight_ih, self.weight_hh, zeros, zeros

    def _prepare(self, input, states):
        """input as (1, B, I) and the states as (B, H); whether the input was batched."""
        name = self._get_name()
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ShapeError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        if input.shape[-1] != self.input_size:
            raise ShapeError(f"{name}: input has inconsistent input_size: got {input.shape[-1]} expected "
                             f"{self.input_size}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        B = x.shape[0]
        out = []
        for s in states:
            if s is None:
                out.append(creation.zeros(B, self.hidden_size, dtype=x.dtype, device=x.device))
                continue
            if not isinstance(s, Tensor):
                raise TypeError(f"{name}: the hidden state must be a Tensor, got {type(s).__name__}")
            if s.ndim != input.ndim:
                raise ShapeError(f"{name}: Expected hidden to be {input.ndim}D for {input.ndim}D input, got "
                                 f"{s.ndim}D")
            s = s if batched else s.unsqueeze(0)
            if tuple(s.shape) != (B, self.hidden_size):
                raise ShapeError(f"{name}: hidden state has shape {list(s.shape)}, expected "
                                 f"{[B, self.hidden_size]}")
            out.append(s)
        return x.unsqueeze(0), out, batched

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(RNNCellBase):
    """h' = tanh (or relu)(x W_ih^T + b_ih + h W_hh^T + b_hh). forward(input, hx=None) -> h'."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Invalid nonlinearity selected for RNN. Can be either ``tanh`` or ``relu``, got "
                             f"{nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, 1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, [hx])
        _, h = rnn_layer(x, h, *self._weights(), nonlinearity=self.nonlinearity)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step (gates i, f, g, o). forward(input, (h, c)=None) -> (h', c')."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c), got {type(hx).__name__}")
        x, (h, c), batched = self._prepare(input, list(hx) if hx is not None else [None, None])
        _, h, c = lstm_layer(x, h, c, *self._weights())
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step (gates r, z, n). forward(input, hx=None) -> h'."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        x, (h,), batched = self._prepare(input, [hx])
        _, h = gru_layer(x, h, *self._weights())
        return h if batched else h.squeeze(0)


# ---- sequences of different lengths -----------------------------------------------------------------

def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack tensors of shape (L_i, *) into (L_max, B, *) (batch_first: (B, L_max, *)), each padded with
    `padding_value` at the end (padding_side='left': at the start) to the longest length."""
    seqs = list(sequences)
    if not seqs:
        raise ValueError("pad_sequence: received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if any(not isinstance(s, Tensor) or s.ndim < 1 for s in seqs):
        raise TypeError("pad_sequence: expected a list of Tensors of at least one dimension")
    trailing = tuple(seqs[0].shape[1:])
    if any(tuple(s.shape[1:]) != trailing for s in seqs):
        raise ShapeError(f"pad_sequence: the sequences must agree in every dimension after the first, got shapes "
                         f"{[tuple(s.shape) for s in seqs]}")
    longest = max(s.shape[0] for s in seqs)
    padded = []
    for s in seqs:
        extra = longest - s.shape[0]
        if extra:
            fill = creation.full((extra,) + trailing, padding_value, dtype=s.dtype, device=s.device)
            s = concat([s, fill] if padding_side == "right" else [fill, s], axis=0)
        padded.append(s)
    return stack(padded, 0 if batch_first else 1)
