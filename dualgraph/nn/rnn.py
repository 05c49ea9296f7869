"""Recurrent layers with PyTorch's API, parameter names, layout and init: RNN, LSTM (proj_size too), GRU
and their cells; and torch.nn.utils.rnn's pad_sequence and packed sequences (dg.nn.utils.rnn is this module).

A module composes layers, directions and inter-layer dropout; each (layer, direction) is one primitive
over the whole sequence (ops/rnn.py: one op forward, one op backward, ONNX's LSTM/GRU/RNN on export),
and a cell is that primitive over one step. A `state_dict` saved from PyTorch loads and gives the same
numbers."""
import math
import warnings
from typing import NamedTuple, Optional

import numpy as np

from ..errors import DTypeError, InvalidValue, ShapeError
from ..ops import creation
from ..ops.elementwise import where
from ..ops.indexing import index_select
from ..ops.rnn import gru_layer, lstm_layer, rnn_layer
from ..ops.shape import concat, stack
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell", "pad_sequence",
           "PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pack_sequence", "unpack_sequence"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _layer(mode, x, h0, c0, weights, reverse):
    """(y, h_n, c_n or None) of one layer and direction (LSTM weights may end with the projection w_hr)."""
    if mode == "LSTM":
        return lstm_layer(x, h0, c0, *weights[:4], reverse=reverse, w_hr=weights[4] if len(weights) > 4 else None)
    if mode == "GRU":
        y, h = gru_layer(x, h0, *weights, reverse=reverse)
    else:
        y, h = rnn_layer(x, h0, *weights, nonlinearity="tanh" if mode == "RNN_TANH" else "relu", reverse=reverse)
    return y, h, None


def _zeros_like_bias(w, H, G):
    return creation.zeros(G * H, dtype=w.dtype, device=w.device)


def _reverse_within(x, lengths):
    """x (T, B, F) with each sequence b's first lengths[b] steps reversed in time (the rest in place)."""
    T, B = x.shape[:2]
    t = np.arange(T)[:, None]
    src = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t) * B + np.arange(B)[None, :]
    flat = index_select(x.reshape(T * B, -1), 0, creation.tensor(src.reshape(-1), device=x.device))
    return flat.reshape(T, B, -1)


def _ragged_layer(mode, x, h0, c0, weights, lengths, reverse):
    """One layer and direction over sequences of decreasing `lengths` (PyTorch's packed semantics): each
    sequence's state stops at its own last step, and a reverse direction starts there. The batch entries
    still running form a prefix at every step (the lengths decrease), so the layer runs once per distinct
    length on that prefix; the reverse direction reverses each sequence within its length around it."""
    T, B = x.shape[:2]
    if reverse:
        x = _reverse_within(x, lengths)
    ys, h, c = [], h0, c0
    t0 = 0
    for t1 in sorted(set(int(n) for n in lengths if n > 0)):
        active = int((lengths >= t1).sum())
        seg = x[t0:t1, :active]
        y, hn, cn = _layer(mode, seg, h[:active], c[:active] if c is not None else None, weights, False)
        if active < B:
            y = concat([y, creation.zeros(t1 - t0, B - active, y.shape[2], dtype=y.dtype, device=y.device)], axis=1)
            hn = concat([hn, h[active:]], axis=0)
            cn = concat([cn, c[active:]], axis=0) if c is not None else None
        ys.append(y)
        h, c = hn, cn
        t0 = t1
    y = concat(ys, axis=0) if len(ys) > 1 else ys[0]
    if reverse:
        y = _reverse_within(y, lengths)
    return y, h, c


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
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        G = _GATES[mode]
        D = 2 if bidirectional else 1
        self._flat_weights_names = []
        real = proj_size or hidden_size            # the size of h (PyTorch's real_hidden_size)
        for layer in range(num_layers):
            size_in = input_size if layer == 0 else real * D
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes = [("weight_ih", (G * hidden_size, size_in)), ("weight_hh", (G * hidden_size, real))]
                if bias:
                    shapes += [("bias_ih", (G * hidden_size,)), ("bias_hh", (G * hidden_size,))]
                if proj_size:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
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
        per = (4 if self.bias else 2) + (1 if self.proj_size else 0)
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[k:k + per]] for k in range(0, len(names), per)]

    def _weights(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        w_ih, w_hh = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        proj = (getattr(self, "weight_hr" + sfx),) if self.proj_size else ()
        if self.bias:
            return (w_ih, w_hh, getattr(self, "bias_ih" + sfx), getattr(self, "bias_hh" + sfx)) + proj
        G = _GATES[self.mode]
        zeros = _zeros_like_bias(w_ih, self.hidden_size, G)
        return (w_ih, w_hh, zeros, zeros) + proj

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
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor or a PackedSequence, got {type(input).__name__}")
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
        h0 = c0 = None
        if hx is not None:
            shapes = self._state_shapes(x.shape[1])
            if is_lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
                h0, c0 = (self._state(s, w, batched, sh) for s, w, sh in zip(hx, ("hx[0]", "hx[1]"), shapes))
            else:
                h0 = self._state(hx, "hx", batched, shapes[0])
        x, h_n, c_n = self._run(x, h0, c0)
        if not batched:
            x, h_n = x.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if is_lstm else None
        elif self.batch_first:
            x = x.transpose(0, 1)
        return (x, (h_n, c_n)) if is_lstm else (x, h_n)

    def _state_shapes(self, B):
        """The shapes of h_0 and c_0: (layers * directions, B, proj_size or hidden_size), (..., hidden_size)."""
        n = self.num_layers * (2 if self.bidirectional else 1)
        return (n, B, self.proj_size or self.hidden_size), (n, B, self.hidden_size)

    def _run(self, x, h0, c0, lengths=None):
        """The stacked layers over time-major x (T, B, I): (output, h_n, c_n or None). With `lengths`
        (a decreasing numpy array, one per batch entry) each sequence stops at its length."""
        is_lstm = self.mode == "LSTM"
        D = 2 if self.bidirectional else 1
        B, H = x.shape[1], self.hidden_size

        def initial(s, k, size):
            return s[k] if s is not None else creation.zeros(B, size, dtype=x.dtype, device=x.device)
        hs, cs = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                k = layer * D + d
                args = (self.mode, x, initial(h0, k, self.proj_size or H), initial(c0, k, H) if is_lstm else None,
                        self._weights(layer, d))
                y, h, c = _layer(*args, reverse=bool(d)) if lengths is None else _ragged_layer(*args, lengths, bool(d))
                outs.append(y)
                hs.append(h)
                cs.append(c)
            x = outs[0] if D == 1 else concat(outs, axis=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        return x, stack(hs, 0), (stack(cs, 0) if is_lstm else None)

    def _forward_packed(self, packed, hx):
        name = self._get_name()
        data = packed.data
        if data.ndim != 2 or data.shape[-1] != self.input_size:
            raise ShapeError(f"{name}: packed input must be (sum of lengths, {self.input_size}), got "
                             f"{list(data.shape)}")
        batch_sizes = _host_ints(packed.batch_sizes)
        lengths = (batch_sizes[None, :] > np.arange(batch_sizes[0])[:, None]).sum(axis=1)
        x = _padded_from_packed(data, batch_sizes)
        is_lstm = self.mode == "LSTM"
        shapes = self._state_shapes(int(batch_sizes[0]))
        order, back = packed.sorted_indices, packed.unsorted_indices
        h0 = c0 = None
        if hx is not None:
            states = list(hx) if is_lstm else [hx]
            states = [self._state(s, w, True, sh) for s, w, sh in zip(states, ("hx[0]", "hx[1]"), shapes)]
            if order is not None:   # hx is in the caller's batch order; the packed data in sorted order
                states = [index_select(s, 1, order) for s in states]
            h0, c0 = states[0], (states[1] if is_lstm else None)
        y, h_n, c_n = self._run(x, h0, c0, lengths)
        if back is not None:
            h_n = index_select(h_n, 1, back)
            c_n = index_select(c_n, 1, back) if is_lstm else None
        out = PackedSequence(_packed_from_padded(y, batch_sizes), packed.batch_sizes, order, back)
        return (out, (h_n, c_n)) if is_lstm else (out, h_n)

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
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh (or relu)(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), stacked and optionally
    bidirectional. forward(input, h_0=None) -> (output, h_n), shapes as PyTorch's."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, proj_size=0):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, proj_size, device=device, dtype=dtype)


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
                 bidirectional=False, device=None, dtype=None, proj_size=0):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device=device, dtype=dtype)


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


# ---- packed sequences (torch.nn.utils.rnn) ------------------------------------------------------------

class PackedSequence(NamedTuple):
    """Sequences of different lengths packed time step by time step: `data` (sum of lengths, *) holds, for
    each step, the entries of the sequences still running (longest first); `batch_sizes` (an int64 tensor)
    how many there are at each step; `sorted_indices`/`unsorted_indices` the permutation from the caller's
    batch order to the longest-first order and back (None when the input was already sorted)."""
    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Optional[Tensor] = None
    unsorted_indices: Optional[Tensor] = None


def _host_ints(v):
    if isinstance(v, Tensor):
        v = v.numpy()
    return np.asarray(v, dtype=np.int64).reshape(-1)


def _valid_positions(batch_sizes):
    """Flat (t * B + b) positions of the packed entries in a (T, B, ...) padded tensor, in packed order."""
    B = int(batch_sizes[0])
    return np.concatenate([t * B + np.arange(n) for t, n in enumerate(batch_sizes)])


def _padded_from_packed(data, batch_sizes):
    T, B = len(batch_sizes), int(batch_sizes[0])
    pos = np.full(T * B, data.shape[0], dtype=np.int64)        # the padding reads an appended zero row
    pos[_valid_positions(batch_sizes)] = np.arange(data.shape[0])
    zero = creation.zeros(1, *data.shape[1:], dtype=data.dtype, device=data.device)
    rows = index_select(concat([data, zero], axis=0), 0, creation.tensor(pos, device=data.device))
    return rows.reshape(T, B, *data.shape[1:])


def _packed_from_padded(x, batch_sizes):
    T, B = x.shape[:2]
    flat = x.reshape(T * B, *x.shape[2:])
    return index_select(flat, 0, creation.tensor(_valid_positions(batch_sizes), device=x.device))


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch (T, B, *) (batch_first: (B, T, *)) of sequences with the given lengths."""
    lengths = _host_ints(lengths)
    x = input.transpose(0, 1) if batch_first else input
    T, B = x.shape[:2]
    if len(lengths) != B:
        raise ShapeError(f"pack_padded_sequence: {len(lengths)} lengths for a batch of {B}")
    if B == 0 or lengths.min() <= 0:
        raise InvalidValue("pack_padded_sequence: Length of all samples has to be greater than 0, but found an "
                           "element in 'lengths' that is <= 0")
    if lengths.max() > T:
        raise InvalidValue(f"pack_padded_sequence: a length {int(lengths.max())} exceeds the {T} time steps")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise InvalidValue("`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. "
                               "You can pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to "
                               "sidestep this requirement if you do not need ONNX exportability.")
        order = back = None
    else:
        perm = np.argsort(-lengths, kind="stable")
        lengths = lengths[perm]
        order = creation.tensor(perm, device=x.device)
        back = creation.tensor(np.argsort(perm), device=x.device)
        x = index_select(x, 1, order)
    batch_sizes = (lengths[None, :] > np.arange(int(lengths[0]))[:, None]).sum(axis=1).astype(np.int64)
    return PackedSequence(_packed_from_padded(x[:int(lengths[0])], batch_sizes), creation.tensor(batch_sizes),
                          order, back)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """The inverse of pack_padded_sequence: (padded (T, B, *) or (B, T, *), lengths as an int64 tensor), in
    the caller's batch order."""
    batch_sizes = _host_ints(sequence.batch_sizes)
    T = len(batch_sizes)
    if total_length is not None:
        if total_length < T:
            raise InvalidValue(f"Expected total_length to be at least the length of the longest sequence in "
                               f"input, but got total_length={total_length} and max sequence length being {T}")
    x = _padded_from_packed(sequence.data, batch_sizes)
    lengths = (batch_sizes[None, :] > np.arange(batch_sizes[0])[:, None]).sum(axis=1)
    if padding_value != 0:
        valid = np.zeros((T, int(batch_sizes[0])) + (1,) * (x.ndim - 2), dtype=bool)
        valid.reshape(T, -1)[np.arange(T)[:, None] < lengths[None, :]] = True
        x = where(creation.tensor(valid, device=x.device), x, padding_value)
    if total_length is not None and total_length > T:
        pad = creation.full((total_length - T,) + tuple(x.shape[1:]), padding_value, dtype=x.dtype, device=x.device)
        x = concat([x, pad], axis=0)
    if sequence.unsorted_indices is not None:
        x = index_select(x, 1, sequence.unsorted_indices)
        lengths = lengths[_host_ints(sequence.unsorted_indices)]
    return (x.transpose(0, 1) if batch_first else x), creation.tensor(lengths.astype(np.int64))


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of (L_i, *) tensors (pad_sequence, then pack_padded_sequence)."""
    lengths = [int(s.shape[0]) for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences):
    """The list of (L_i, *) tensors a PackedSequence holds, in the caller's order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return [padded[b, :int(n)] for b, n in enumerate(_host_ints(lengths))]
