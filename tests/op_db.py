"""The op table: one `OpInfo` row per user-facing op (like PyTorch's OpInfo).

Each row says
  name            a unique row name (ops with several spellings/attrs get several rows)
  op              the dualgraph callable; takes dg Tensors (and the Python values of the sample) positionally,
                  plus the sample's kwargs
  ref             an independent numpy/scipy reference with the same signature, on numpy arrays
  samples         make -> [Sample]; `make` draws arrays of the dtype under test (see `Make`)
  dtypes          dtypes the forward test runs in ("float32", "float64", "int64", "bool", ...)
  differentiable  first-order gradients are checked against central finite differences (float64)
  second_order    grad-of-grad is checked too (smooth ops whose gradient depends on the inputs)
  atol/rtol       forward tolerances (None: by dtype); grad_atol/grad_rtol for gradcheck
  check_dtype     the output dtype must equal numpy's for the same inputs

Other suites (tracing, ONNX) iterate over the same rows:

    for row in OP_DB:
        for s in row.sample_inputs("float32"):
            args, kwargs = s.args, s.kwargs          # numpy arrays / Python values
            out = row.op(*to_tensors(args), **kwargs)  # dg Tensors
            expected = row.ref(*args, **kwargs)

Adding an op: define it once (`defop` or a composite) and add one row here. test_op_registry.py
fails when a primitive in `dualgraph.ops.REGISTRY` is exercised by no row.
"""
import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from scipy import special as sp

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.ops import kernels as _kernel_ops
from dualgraph.ops import rnn as _rnn_ops
from dualgraph.ops.registry import Op as _Op

FLOAT = ("float32", "float64")
INT = ("int64", "int32")
NUMERIC = FLOAT + INT


# ---- samples ------------------------------------------------------------------------------------

@dataclass
class Sample:
    args: tuple
    kwargs: dict = field(default_factory=dict)
    desc: str = ""
    grad: bool = True  # use this sample for gradient checks

    def __repr__(self):
        def d(a):
            if isinstance(a, np.ndarray):
                return f"{a.dtype}{list(a.shape)}"
            return repr(a)
        parts = [d(a) for a in self.args] + [f"{k}={d(v)}" for k, v in self.kwargs.items()]
        return f"{self.desc or 'sample'}({', '.join(parts)})"


class Make:
    """Draws sample arrays in one dtype. Float draws are uniform; int draws are small integers."""

    def __init__(self, dtype, seed=0):
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.is_float = self.dtype.kind == "f"

    def _cast(self, a):
        return np.asarray(a).astype(self.dtype)

    def __call__(self, *shape, low=-2.0, high=2.0):
        if self.dtype.kind == "b":
            return self.rng.random(shape) < 0.5
        if self.is_float:
            return self._cast(self.rng.uniform(low, high, shape))
        return self._cast(self.rng.integers(math.floor(low), math.ceil(high) + 1, shape))

    def pos(self, *shape, low=0.5, high=2.0):
        """Strictly positive values (log, sqrt, pow bases, divisors)."""
        if not self.is_float:
            return self._cast(self.rng.integers(1, 4, shape))
        return self._cast(self.rng.uniform(low, high, shape))

    def nonzero(self, *shape, low=0.3, high=2.0):
        """Values with |v| in [low, high]: away from the kink at 0 (abs, relu, sign, divisors)."""
        sign = np.where(self.rng.random(shape) < 0.5, -1.0, 1.0)
        if not self.is_float:
            return self._cast(sign * self.rng.integers(1, 4, shape))
        return self._cast(sign * self.rng.uniform(low, high, shape))

    def distinct(self, *shape, spacing=0.25):
        """All values distinct and at least `spacing` apart (no ties for max/min/argmax/sort)."""
        n = int(np.prod(shape, dtype=np.int64))
        vals = (self.rng.permutation(n) - n / 2) * (spacing if self.is_float else 1)
        return self._cast(vals.reshape(shape))

    def small_ints(self, *shape, low=-2, high=2):
        """Integer values in the dtype under test: comparisons get ties."""
        return self._cast(self.rng.integers(low, high + 1, shape))

    def away(self, *shape, points=(0.0,), margin=0.15, low=-2.0, high=2.0):
        """Uniform values kept `margin` away from every point in `points` (kinks, rounding edges)."""
        x = self.rng.uniform(low, high, shape)
        for p in points:
            near = np.abs(x - p) < margin
            x = np.where(near, p + np.where(x >= p, margin, -margin) * 1.5, x)
        return self._cast(x)

    def index(self, shape, high, low=0):
        return self.rng.integers(low, high, shape).astype(np.int64)

    def bool(self, *shape):
        return self.rng.random(shape) < 0.5

    def f64(self, *shape, low=-2.0, high=2.0):
        """Always-float values (for rows whose dtype under test is an int but that need a float input)."""
        return self.rng.uniform(low, high, shape)


# ---- the row record ------------------------------------------------------------------------------

_DEFAULT_TOL = {"float16": (1e-2, 1e-2), "float32": (1e-5, 1e-4), "float64": (1e-10, 1e-7)}


@dataclass
class OpInfo:
    name: str
    op: Callable
    ref: Optional[Callable]
    samples: Callable
    dtypes: tuple = FLOAT
    differentiable: bool = True
    second_order: bool = False
    atol: Optional[float] = None
    rtol: Optional[float] = None
    grad_atol: float = 1e-5
    grad_rtol: float = 1e-3
    check_dtype: bool = True
    random: bool = False  # forward is random: the reference is a property of the output, not a value
    traced: Optional[bool] = None  # filled by the tracing suite's owners: True tested, False unsupported
    onnx: Optional[bool] = None    # likewise for ONNX export; None: judged from the primitives' lowerings
    onnx_dtypes: Optional[tuple] = None  # the dtypes the ONNX suites export (None: all of dtypes)
    notes: str = ""

    def sample_inputs(self, dtype, seed=None):
        """The row's samples with arrays drawn in `dtype` (deterministic per row and dtype)."""
        if seed is None:
            seed = zlib.crc32(f"{self.name}/{dtype}".encode())
        return list(self.samples(Make(dtype, seed)))

    def tol(self, dtype):
        atol, rtol = _DEFAULT_TOL.get(str(dtype), (0, 0))
        return (self.atol if self.atol is not None and atol else atol,
                self.rtol if self.rtol is not None and rtol else rtol)

    def __repr__(self):
        return f"OpInfo({self.name})"


def to_tensors(args, requires_grad=False, share=True):
    """numpy arrays -> dg Tensors (sharing memory with `share`, so mutation is visible); others as-is.
    With requires_grad, floating tensors require grad."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            t = dg.from_numpy(a) if share else dg.tensor(a)
            if requires_grad and a.dtype.kind == "f":
                t.requires_grad_(True)
            out.append(t)
        else:
            out.append(a)
    return tuple(out)


def to_dg(sample, requires_grad=False, share=True):
    """A sample's (args, kwargs) for `row.op`: arrays become Tensors (kwargs arrays never require grad)."""
    args = to_tensors(sample.args, requires_grad, share)
    kwargs = {k: to_tensors((v,), False, share)[0] for k, v in sample.kwargs.items()}
    return args, kwargs


def as_numpy_outputs(out):
    """A dg result (Tensor, tuple of Tensors) as a tuple of numpy arrays."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(o.numpy() for o in outs)


# ---- small reference helpers -----------------------------------------------------------------------

def _np_axis(kw):
    """PyTorch spellings (dim=, keepdim=) -> numpy's (axis=, keepdims=)."""
    kw = dict(kw)
    if "dim" in kw:
        kw["axis"] = kw.pop("dim")
    if "keepdim" in kw:
        kw["keepdims"] = kw.pop("keepdim")
    if isinstance(kw.get("axis"), list):
        kw["axis"] = tuple(kw["axis"])
    return kw


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def np_softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def np_log_softmax(x, axis=-1):
    return x - sp.logsumexp(x, axis=axis, keepdims=True)


def np_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct loop cross-correlation, PyTorch's conv2d semantics."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if padding == "same":
        ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    elif padding == "valid":
        ph = pw = 0
    else:
        ph, pw = _pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, oh, ow), dtype=np.result_type(x, w))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                           j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[:, oc, i, j] = np.sum(patch * w[oc], axis=(1, 2, 3))
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out


def np_conv3d(x, w, b=None, stride=1, padding=0):
    """Direct loop 3-D cross-correlation (no dilation or groups)."""
    s = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
    p = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((q, q) for q in p))
    k = w.shape[2:]
    outs = [(xp.shape[2 + a] - k[a]) // s[a] + 1 for a in range(3)]
    out = np.zeros((x.shape[0], w.shape[0]) + tuple(outs), np.result_type(x, w))
    for i in range(outs[0]):
        for j in range(outs[1]):
            for q in range(outs[2]):
                win = xp[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1], q * s[2]:q * s[2] + k[2]]
                out[:, :, i, j, q] = np.tensordot(win, w, axes=([1, 2, 3, 4], [1, 2, 3, 4]))
    return out if b is None else out + b.reshape(1, -1, 1, 1, 1)


def np_conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    n, c, length = x.shape
    o, cg, k = w.shape
    if padding == "same":
        padding = dilation * (k - 1) // 2
    elif padding == "valid":
        padding = 0
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding)))
    ol = (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((n, o, ol), dtype=np.result_type(x, w))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(ol):
            for kk in range(k):
                out[:, oc, i] += np.sum(xp[:, g * cg:(g + 1) * cg, i * stride + kk * dilation] * w[oc, :, kk], axis=1)
    if b is not None:
        out = out + b.reshape(1, -1, 1)
    return out


def _pool(x, kernel_size, stride, padding, dilation, pad_value, reduce):
    (kh, kw) = _pair(kernel_size)
    (sh, sw) = _pair(stride if stride is not None else kernel_size)
    (ph, pw), (dh, dw) = _pair(padding), _pair(dilation)
    squeeze = x.ndim == 3
    if squeeze:
        x = x[None]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    n, c, h, w = xp.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            out[:, :, i, j] = reduce(win, axis=(2, 3))
    return out[0] if squeeze else out


def np_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    return _pool(x, kernel_size, stride, padding, dilation, lowest, np.max)


def np_max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, nd=2, indices=False):
    """PyTorch's max_pool{nd}d by definition, one window at a time: values, or (indices=True) the flat
    index into its plane of each window's first maximum among the unpadded positions."""
    import itertools

    def tup(v):
        return (v,) * nd if isinstance(v, int) else tuple(v)
    k, p, d = tup(kernel_size), tup(padding), tup(dilation)
    s = k if stride is None else tup(stride)
    squeeze = x.ndim == nd + 1
    x = x[None] if squeeze else x
    spatial = x.shape[2:]
    outs = []
    for n, ki, si, pi, di in zip(spatial, k, s, p, d):
        span = n + 2 * pi - di * (ki - 1) - 1
        o = (-(-span // si) if ceil_mode else span // si) + 1
        outs.append(o - 1 if ceil_mode and (o - 1) * si >= n + pi else o)
    vals = np.zeros(x.shape[:2] + tuple(outs), x.dtype)
    idx = np.zeros(x.shape[:2] + tuple(outs), np.int64)
    flat = x.reshape(x.shape[:2] + (-1,))
    for o in itertools.product(*map(range, outs)):
        pos = [q for q in itertools.product(*[[oi * si - pi + j * di for j in range(ki)]
                                              for oi, si, pi, di, ki in zip(o, s, p, d, k)])
               if all(0 <= c < n for c, n in zip(q, spatial))]
        where = [int(np.ravel_multi_index(q, spatial)) for q in pos]
        first = np.argmax(flat[:, :, where], axis=2)
        idx[(Ellipsis,) + o] = np.asarray(where)[first]
        vals[(Ellipsis,) + o] = np.take_along_axis(flat[:, :, where], first[:, :, None], 2)[:, :, 0]
    out = idx if indices else vals
    return out[0] if squeeze else out


def np_avg_pool2d(x, kernel_size, stride=None, padding=0):
    return _pool(x, kernel_size, stride, padding, 1, 0.0, np.mean)


def np_adaptive_avg_pool2d(x, size):
    """PyTorch's cells: rows [floor(i*H/oh), ceil((i+1)*H/oh)), likewise for columns."""
    (oh, ow), (h, w) = size, x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            cell = x[..., i * h // oh: -(-(i + 1) * h // oh), j * w // ow: -(-(j + 1) * w // ow)]
            out[..., i, j] = cell.mean(axis=(-2, -1))
    return out


def np_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """PyTorch's conv_transpose2d by definition: every input pixel scatters its weighted kernel."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation)
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    oh, ow = (h - 1) * sh + dh * (kh - 1) + 1 + oph, (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    full = np.zeros((n, cog * groups, oh, ow), np.result_type(x, w))
    cig = cin // groups
    for ci in range(cin):
        g = ci // cig
        for i in range(kh):
            for j in range(kw):
                full[:, g * cog:(g + 1) * cog, i * dh:i * dh + sh * (h - 1) + 1:sh, j * dw:j * dw + sw * (wd - 1) + 1:sw] \
                    += x[:, ci, None] * w[ci, :, i, j][None, :, None, None]
    out = full[:, :, ph:oh - ph, pw:ow - pw]
    return out if b is None else out + b.reshape(1, -1, 1, 1)


def np_avg_pool2d_opts(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                       divisor_override=None):
    """PyTorch's avg_pool2d CPU rule, window by window: the divisor is the window clipped to the padded
    input (to the input with count_include_pad=False), or divisor_override."""
    k, p = _pair(kernel_size), _pair(padding)
    s = _pair(stride if stride is not None else kernel_size)
    squeeze = x.ndim == 3
    x = x[None] if squeeze else x
    n, c, h, w = x.shape
    outs = []
    for size, kk, ss, pp in zip((h, w), k, s, p):
        span = size + 2 * pp - kk
        o = (-(-span // ss) if ceil_mode else span // ss) + 1
        outs.append(o - 1 if ceil_mode and (o - 1) * ss >= size + pp else o)
    out = np.zeros((n, c) + tuple(outs), x.dtype)
    for i in range(outs[0]):
        for j in range(outs[1]):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
            pool = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            div = divisor_override or (pool if count_include_pad else (h1 - h0) * (w1 - w0))
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / div
    return out[0] if squeeze else out


def np_unfold(x, k, stride=1, dilation=1):
    """(N, C, H, W) -> (N, C, k, k, OH, OW): out[..., i, j, p, q] = x[..., p*s + i*d, q*s + j*d]."""
    n, c, h, w = x.shape
    oh, ow = (h - dilation * (k - 1) - 1) // stride + 1, (w - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((n, c, k, k, oh, ow), x.dtype)
    for i in range(k):
        for j in range(k):
            for p in range(oh):
                for q in range(ow):
                    out[:, :, i, j, p, q] = x[:, :, p * stride + i * dilation, q * stride + j * dilation]
    return out


def np_cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's documented cross_entropy: class axis 1 (or 0 for unbatched input)."""
    cax = 1 if x.ndim > 1 else 0
    c = x.shape[cax]
    logp = np_log_softmax(x.astype(np.float64), axis=cax)
    wshape = [1] * x.ndim
    wshape[cax] = c
    w = np.ones(c) if weight is None else weight.astype(np.float64)
    wb = w.reshape(wshape)
    if target.dtype.kind == "f":  # class probabilities
        y = target.astype(np.float64)
        if label_smoothing:
            y = y * (1 - label_smoothing) + label_smoothing / c
        loss = -np.sum(wb * y * logp, axis=cax)
        return _reduce(loss, reduction).astype(x.dtype)
    t = target.astype(np.int64)
    valid = t != ignore_index
    ts = np.where(valid, t, 0)
    picked = np.take_along_axis(logp, np.expand_dims(ts, cax), axis=cax).squeeze(cax)
    wt = w[ts] * valid
    nll = -picked * wt
    smooth = -np.sum(wb * logp, axis=cax) * valid
    loss = (1 - label_smoothing) * nll + label_smoothing / c * smooth
    if reduction == "mean":
        return np.asarray(loss.sum() / wt.sum()).astype(x.dtype)
    return (np.asarray(loss.sum()) if reduction == "sum" else loss).astype(x.dtype)


def np_nll_loss(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    c = logp.shape[1] if logp.ndim > 1 else logp.shape[0]
    w = np.ones(c) if weight is None else weight
    valid = target != ignore_index
    ts = np.where(valid, target, 0)
    cax = 1 if logp.ndim > 1 else 0
    picked = np.take_along_axis(logp, np.expand_dims(ts, cax), axis=cax).squeeze(cax)
    wt = w[ts] * valid
    loss = -picked * wt
    if reduction == "mean":
        return np.asarray(loss.sum() / wt.sum()).astype(logp.dtype)
    return (np.asarray(loss.sum()) if reduction == "sum" else loss).astype(logp.dtype)


def _reduce(loss, reduction):
    if reduction == "mean":
        return np.asarray(loss.mean())
    return np.asarray(loss.sum()) if reduction == "sum" else loss


def np_bce_with_logits(x, t, weight=None, reduction="mean", pos_weight=None):
    log_sig = -(np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x))))      # log sigmoid(x)
    log_one_minus = -(np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))  # log (1 - sigmoid(x))
    pw = 1.0 if pos_weight is None else pos_weight
    loss = -(pw * t * log_sig + (1 - t) * log_one_minus)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def np_recurrent(kind, x, h0, *rest, reverse=False, nonlinearity="tanh", w_hr=None):
    """One recurrent layer (PyTorch's equations, gates i,f,g,o / r,z,n; LSTM's h projected by w_hr when
    given) one step at a time: (y, h_n[, c_n])."""
    c = rest[0] if kind == "lstm" else None
    w_ih, w_hh, b_ih, b_hh = (a.astype(np.float64) for a in rest[-4:])
    h, H = h0.astype(np.float64), w_ih.shape[0] // {"lstm": 4, "gru": 3}.get(kind, 1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    ys = [None] * len(x)
    for t in (range(len(x) - 1, -1, -1) if reverse else range(len(x))):
        gi, gh = x[t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        if kind == "lstm":
            g = gi + gh
            c = sig(g[:, H:2 * H]) * c + sig(g[:, :H]) * np.tanh(g[:, 2 * H:3 * H])
            h = sig(g[:, 3 * H:]) * np.tanh(c)
            h = h @ w_hr.T if w_hr is not None else h
        elif kind == "gru":
            r, z = sig(gi[:, :H] + gh[:, :H]), sig(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            h = (1 - z) * n + z * h
        else:
            h = np.tanh(gi + gh) if nonlinearity == "tanh" else np.maximum(gi + gh, 0)
        ys[t] = h
    dt = x.dtype
    out = (np.stack(ys).astype(dt), h.astype(dt))
    return out + (c.astype(dt),) if kind == "lstm" else out


def _recurrent_samples(kind):
    G = {"lstm": 4, "gru": 3, "lstm_proj": 4}.get(kind, 1)

    def samples(make):
        def case(T, B, I, H, **kw):
            P = max(H - 1, 1) if kind == "lstm_proj" else H     # the state's size (proj_size)
            state = (make(B, P),) + ((make(B, H),) if kind in ("lstm", "lstm_proj") else ())
            proj = (make(P, H),) if kind == "lstm_proj" else ()
            return Sample((make(T, B, I), *state, make(G * H, I), make(G * H, P), make(G * H), make(G * H), *proj),
                          kw, desc=f"T={T}" + (" reverse" if kw.get("reverse") else ""))
        return [case(4, 2, 3, 2), case(3, 1, 2, 3, reverse=True), case(1, 2, 2, 2)]
    return samples


_ADAM_DEFAULTS = {"lr": 1e-2, "b1": 0.9, "b2": 0.999, "eps": 1e-8}


def _adam_update(p, g, m, v, t, lr, b1, b2, eps, weight_decay=0.01, decoupled=True):
    from dualgraph.ops.optimizer import adam_update
    return adam_update(p, g, m, v, t, lr, b1, b2, eps, weight_decay, decoupled)


def np_adam_update(p, g, m, v, t, weight_decay=0.01, decoupled=True):
    """Adam's step by its formula, in float64 (returned in the parameter's dtype)."""
    lr, b1, b2, eps = (_ADAM_DEFAULTS[k] for k in ("lr", "b1", "b2", "eps"))
    dt = p.dtype
    p, g, m, v = (a.astype(np.float64) for a in (p, g, m, v))
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p = p - lr / (1 - b1 ** float(t)) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** float(t)) + eps)
    return p.astype(dt), m.astype(dt), v.astype(dt)


def np_gelu(x, approximate="none"):
    if approximate == "tanh":
        return (0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))).astype(x.dtype)
    return (x * sp.ndtr(x)).astype(x.dtype)


def np_sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None, enable_gqa=False):
    """PyTorch's documented reference for scaled_dot_product_attention, rows with no key allowed -> 0."""
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        k = np.repeat(k, q.shape[-3] // k.shape[-3], axis=-3)
        v = np.repeat(v, q.shape[-3] // v.shape[-3], axis=-3)
    L, S = q.shape[-2], k.shape[-2]
    bias = np.zeros((L, S), np.float64)
    if is_causal:
        bias = np.where(np.tril(np.ones((L, S), bool)), 0.0, -np.inf)
    if attn_mask is not None:
        bias = np.where(attn_mask, bias, -np.inf) if attn_mask.dtype == bool else bias + attn_mask
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale) + bias
    dead = np.all(s == -np.inf, axis=-1, keepdims=True)
    s = np.where(dead, 0.0, s)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    w = np.where(dead, 0.0, e / e.sum(axis=-1, keepdims=True))
    return (w @ v).astype(q.dtype)


def np_layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    out = (x - mu) / np.sqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def np_batch_norm(x, weight=None, bias=None, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    out = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def np_split(x, size_or_sections, axis=0):
    n = x.shape[axis]
    if isinstance(size_or_sections, int):
        bounds = list(range(size_or_sections, n, size_or_sections))
    else:
        bounds = list(np.cumsum(size_or_sections)[:-1])
    return tuple(np.split(x, bounds, axis=axis))


def np_gather(x, dim, index):
    """PyTorch's gather by its definition: out[pos] = x[pos with pos[dim] replaced by index[pos]]."""
    out = np.empty(index.shape, x.dtype)
    for pos in np.ndindex(*index.shape):
        src = list(pos)
        src[dim] = index[pos]
        out[pos] = x[tuple(src)]
    return out


def np_scatter_add(x, dim, index, src):
    out = x.copy()
    for pos in np.ndindex(*index.shape):
        target = list(pos)
        target[dim] = index[pos]
        out[tuple(target)] += src[pos]
    return out


def _with_set(x, v, index):
    y = x.copy()
    y[index] = v
    return y


def _dg_setitem(x, v, *, index):
    y = x.clone()
    y[index] = v
    return y


# ---- sample generators ------------------------------------------------------------------------------

BROADCAST_PAIRS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 1, 3), (4, 1))]


def binary_samples(a_gen="__call__", b_gen="__call__", scalars=(2.5,), scalar_first=True):
    def gen(make):
        out = []
        for sa, sb in BROADCAST_PAIRS:
            out.append(Sample((getattr(make, a_gen)(*sa), getattr(make, b_gen)(*sb)), desc=f"{sa}x{sb}"))
        for s in scalars:
            v = s if make.is_float else int(s)
            out.append(Sample((getattr(make, a_gen)(2, 3), v), desc="tensor-scalar"))
            if scalar_first:
                out.append(Sample((v, getattr(make, b_gen)(2, 3)), desc="scalar-tensor"))
        return out
    return gen


def unary_samples(gen_name="__call__", **gen_kw):
    def gen(make):
        g = getattr(make, gen_name)
        return [Sample((g(3, 4, **gen_kw),), desc="2d"), Sample((g(5, **gen_kw),), desc="1d"),
                Sample((g(**gen_kw),), desc="0d"), Sample((g(2, 0, 3, **gen_kw),), desc="empty", grad=False)]
    return gen


def _minmax_pair(make):
    out = [Sample((make(*sa), make(*sb)), desc=f"{sa}x{sb}") for sa, sb in BROADCAST_PAIRS]
    a = make.distinct(3, 4)  # b within +-0.5 of a, never equal
    out.append(Sample((a, a + make._cast(np.where(make.bool(3, 4), 1, -1) * (0.5 if make.is_float else 1))),
                      desc="near"))
    return out


def _floordiv_samples(make):
    """Quotients kept 0.2 away from integers, so floor/mod are differentiable at the samples."""
    out = []
    for sa, sb in BROADCAST_PAIRS[:3]:
        if make.is_float:
            b = make.nonzero(*sb, low=0.5)
            shape = np.broadcast_shapes(sa, sb)
            q = make.rng.integers(-3, 3, shape) + make.rng.uniform(0.2, 0.8, shape)
            a = make._cast(q * b)  # a has the broadcast shape, b broadcasts against it
            out.append(Sample((a, b), desc=f"{sa}x{sb}"))
        else:
            out.append(Sample((make(*sa, low=-9, high=9), make.nonzero(*sb)), desc=f"{sa}x{sb}"))
    out.append(Sample((make(2, 3, low=-9, high=9) if not make.is_float else make._cast(
        make.rng.integers(-9, 9, (2, 3)) * 3 + 1.5), 3 if not make.is_float else 3.0), desc="tensor-scalar"))
    return out


def _pow_samples(make):
    return [Sample((make.pos(3, 4), make(3, 4)), desc="tensor**tensor"),
            Sample((make.pos(2, 3, 4), make(4)), desc="broadcast"),
            Sample((make(3, 4), 2), desc="square"),
            Sample((make(3, 4), 3), desc="cube"),
            Sample((make.pos(3, 4), 0.5), desc="sqrt"),
            Sample((make.nonzero(3, 4), -1), desc="reciprocal"),
            Sample((make.pos(3, 4), 1.7), desc="float exponent"),
            Sample((2.0, make(3, 4)), desc="scalar base")]


def _clip_samples(make):
    return [Sample((make.away(3, 4, points=(-0.5, 0.7)), -0.5, 0.7), desc="both"),
            Sample((make.away(3, 4, points=(0.0,)),), {"min": 0.0}, desc="min only"),
            Sample((make.away(3, 4, points=(0.3,)),), {"max": 0.3}, desc="max only")]


def _where_samples(make):
    return [Sample((make.bool(3, 4), make(3, 4), make(3, 4)), desc="same"),
            Sample((make.bool(3, 1), make(1, 4), make(3, 4)), desc="broadcast"),
            Sample((make.bool(2, 3), make(2, 3), 0.0 if make.is_float else 0), desc="scalar other")]


def _where_scalars_ref(c, x, y):
    return np.where(c, np.float32(x) if isinstance(x, float) else np.int64(x), y)


def _cmp_samples(make):
    return [Sample((make.small_ints(3, 4), make.small_ints(3, 4)), desc="ties"),
            Sample((make.small_ints(2, 3, 4), make.small_ints(4)), desc="broadcast"),
            Sample((make.small_ints(2, 3), 1), desc="scalar")]


def _logic_samples(make):
    return [Sample((make.bool(3, 4), make.bool(3, 4))), Sample((make.bool(2, 3, 4), make.bool(4)), desc="broadcast"),
            Sample((make.f64(2, 3) * (make.rng.random((2, 3)) < 0.5), make.bool(2, 3)), desc="float truthiness")]


# reduction samples: axis variants incl. negative, tuple, keepdims and PyTorch spellings
def _reduce_samples(gen_name="__call__", tuple_axes=True, with_none=True):
    def gen(make):
        g = getattr(make, gen_name)
        out = []
        if with_none:
            out.append(Sample((g(3, 4),), desc="all"))
            out.append(Sample((g(2, 3),), {"keepdims": True}, desc="all keepdims"))
        out += [Sample((g(3, 4),), {"axis": 0}),
                Sample((g(2, 3, 4),), {"axis": -1}),
                Sample((g(2, 3, 4),), {"axis": 1, "keepdims": True}),
                Sample((g(2, 3, 4),), {"dim": -2, "keepdim": True}, desc="torch spelling"),
                Sample((g(5),), {"axis": 0}, desc="1d")]
        if tuple_axes:
            out.append(Sample((g(2, 3, 4),), {"axis": (0, 2)}, desc="tuple axes"))
            out.append(Sample((g(2, 3, 4),), {"dim": (-1, 0), "keepdim": True}, desc="tuple dims"))
        return out
    return gen


def _with_empty(gen):
    """Reductions whose identity exists (sum, prod): also reduce over a zero-size axis."""
    def samples(make):
        return gen(make) + [Sample((make(0, 3),), {"axis": 0}, desc="empty axis", grad=False),
                            Sample((make(2, 0),), {"axis": 0}, desc="empty result", grad=False)]
    return samples


def _prod_samples(make):
    out = _with_empty(_reduce_samples("pos"))(make)
    x = make(3, 4)
    x[1, 2] = 0
    out.append(Sample((x,), {"axis": 1}, desc="with a zero"))
    y = make(2, 3)
    y[0, 0] = y[1, 1] = 0
    out.append(Sample((y,), desc="two zeros"))
    return out


def _var_samples(make):
    return _reduce_samples()(make) + [Sample((make(3, 4),), {"axis": 1, "ddof": 1}, desc="ddof"),
                                      Sample((make(3, 4),), {"dim": 0, "correction": 1}, desc="correction"),
                                      Sample((make(3, 4),), {"axis": -1, "unbiased": True}, desc="unbiased")]


def _ref_var(fn):
    def ref(x, ddof=0, correction=None, unbiased=None, **kw):
        if correction is not None:
            ddof = correction
        if unbiased is not None:
            ddof = 1 if unbiased else 0
        return fn(x, ddof=ddof, **_np_axis(kw))
    return ref


def _arg_samples(make):
    return [Sample((make.distinct(3, 4),)), Sample((make.distinct(3, 4),), {"axis": 1}),
            Sample((make.distinct(2, 3, 4),), {"dim": -2}), Sample((make.distinct(2, 3, 4),), {"axis": 0, "keepdims": True}),
            Sample((make.distinct(2, 3),), {"dim": 1, "keepdim": True})]


def _cumsum_samples(make):
    return [Sample((make(3, 4),), {"axis": 0}), Sample((make(2, 3, 4),), {"axis": -1}),
            Sample((make(2, 3, 4),), {"dim": 1}), Sample((make(2, 3),), desc="flattened")]


def _ref_cumsum(x, axis=None, dim=None):
    return np.cumsum(x, axis=dim if dim is not None else axis)


def _matmul_samples(make):
    return [Sample((make(3, 4), make(4, 5)), desc="2d"), Sample((make(2, 3, 4), make(4, 5)), desc="batched@2d"),
            Sample((make(2, 1, 3, 4), make(3, 4, 2)), desc="broadcast batch"),
            Sample((make(4), make(4, 3)), desc="1d@2d"), Sample((make(2, 3, 4), make(4)), desc="3d@1d"),
            Sample((make(4), make(4)), desc="1d@1d"),
            Sample((make(2, 0), make(0, 3)), desc="empty inner dim", grad=False)]


EINSUM_SPECS = [("ij,jk->ik", [(3, 4), (4, 2)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
                ("i,i->", [(5,), (5,)]), ("ij->ji", [(3, 4)]), ("...ij,...jk", [(2, 3, 4), (2, 4, 3)]),
                ("ij,jk", [(3, 4), (4, 2)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("ij->", [(3, 4)]),
                ("i,j->ij", [(3,), (4,)])]


def _einsum_samples(make):
    return [Sample(tuple(make(*s) for s in shapes), {"spec": spec}, desc=spec) for spec, shapes in EINSUM_SPECS]


# ---- selection, sorting and masking (ops/selection.py): references by definition ------------------

def _desc_order(x, axis):
    """Stable descending order (equal values in index order) without dualgraph's reversal trick."""
    return np.argsort(-x, axis=axis, kind="stable")


def np_sort(x, dim=-1, descending=False):
    idx = _desc_order(x, dim) if descending else np.argsort(x, axis=dim, kind="stable")
    return np.take_along_axis(x, idx, dim), idx


def np_topk(x, k, dim=-1, largest=True):
    idx = _desc_order(x, dim) if largest else np.argsort(x, axis=dim, kind="stable")
    idx = np.take(idx, np.arange(k), axis=dim)
    return np.take_along_axis(x, idx, dim), idx


def _at(x, idx, dim, keepdim):
    """(values, indices) at idx (dim kept, size 1), the dim dropped unless keepdim."""
    vals = np.take_along_axis(x, idx, dim)
    return (vals, idx) if keepdim else (np.squeeze(vals, dim), np.squeeze(idx, dim))


def np_extreme_dim(fn):
    def ref(x, dim, keepdim=False):
        return _at(x, np.expand_dims(fn(x, axis=dim), dim), dim, keepdim)
    return ref


def np_kth_sorted(x, dim, pos, keepdim=False):
    idx = np.argsort(x, axis=dim, kind="stable")
    return _at(x, np.take(idx, [pos], axis=dim), dim, keepdim)


def np_cum_extreme(largest):
    """PyTorch's cummax/cummin by definition: the index moves to every element that ties or beats the
    running extreme."""
    def ref(x, dim):
        xm = np.moveaxis(x, dim, -1)
        vals, idx = np.empty_like(xm), np.zeros(xm.shape, np.int64)
        for pos in np.ndindex(*xm.shape[:-1]):
            best, at = None, 0
            for i, v in enumerate(xm[pos]):
                if best is None or (v >= best if largest else v <= best):
                    best, at = v, i
                vals[pos + (i,)], idx[pos + (i,)] = best, at
        return np.moveaxis(vals, -1, dim), np.moveaxis(idx, -1, dim)
    return ref


def np_mode(x, dim=-1, keepdim=False):
    """PyTorch's mode by definition: the most frequent value (the smallest of equally frequent ones) and the
    last position holding it."""
    xm = np.moveaxis(x, dim, -1)
    vals, idx = np.empty(xm.shape[:-1], x.dtype), np.zeros(xm.shape[:-1], np.int64)
    for pos in np.ndindex(*xm.shape[:-1]):
        row = list(xm[pos])
        best = min(row, key=lambda v: (-row.count(v), v))
        vals[pos], idx[pos] = best, len(row) - 1 - row[::-1].index(best)
    if keepdim:
        return np.expand_dims(vals, dim), np.expand_dims(idx, dim)
    return vals, idx


def np_scatter(x, dim, index, src=None, value=None, reduce=None):
    out = x.copy()
    for pos in np.ndindex(*index.shape):
        target = list(pos)
        target[dim] = index[pos]
        v = src[pos] if src is not None else value
        out[tuple(target)] = out[tuple(target)] * v if reduce == "multiply" else v
    return out


def np_index_fill(x, dim, index, value):
    out = x.copy()
    out[(slice(None),) * (dim % x.ndim) + (index,)] = value
    return out


def np_index_add(x, dim, index, source, alpha=1):
    out = x.copy()
    moved, src = np.moveaxis(out, dim, 0), np.moveaxis(source, dim, 0)
    for i, j in enumerate(index):
        moved[j] += alpha * src[i]
    return out


def _perm_index(make, shape, high, axis):
    """An index of `shape` whose entries along `axis` are distinct positions below `high` (scatter without
    repeated targets: every write lands, so the result does not depend on the write order)."""
    moved = list(shape)
    moved.append(moved.pop(axis))
    rows = [make.rng.permutation(high)[:moved[-1]] for _ in range(int(np.prod(moved[:-1], dtype=np.int64)))]
    return np.moveaxis(np.array(rows, np.int64).reshape(moved), -1, axis)


def _with_zeros(make, *shape):
    x = make.nonzero(*shape)
    x[make.rng.random(shape) < 0.3] = 0
    return x



# ---- the rows --------------------------------------------------------------------------------------

# ---- linear algebra (dg.linalg) ------------------------------------------------------------------------
# Decompositions are unique only up to signs (svd's vector pairs, eigh's vectors): the rows compare and
# differentiate sign-normalised factors (each column scaled by the sign of its first entry, smooth for the
# random samples), and eigh/cholesky rows read a symmetric matrix built from the sample.

def _well_conditioned(make, *shape):
    n = shape[-1]
    return make._cast(make(*shape).astype(np.float64) + n * np.eye(n))


def _spd(x, eye_fn):
    n = x.shape[-1]
    return x @ x.swapaxes(-1, -2) + (n * eye_fn(n)).astype(x.dtype)


def _np_sign_cols(u):
    return np.where(u[..., :1, :] < 0, -1.0, 1.0).astype(u.dtype)


def _dg_sign_cols(u):
    return dg.where(u[..., :1, :] < 0, -1.0, 1.0).astype(u.dtype)


def _svd_fixed(x, full_matrices=False):
    u, s, vh = dg.linalg.svd(x, full_matrices=full_matrices)
    k = s.shape[-1]
    u, vh = u[..., :k], vh[..., :k, :]
    sg = _dg_sign_cols(u)
    return u * sg, s, vh * sg.mT


def _np_svd_fixed(x, full_matrices=False):
    u, s, vh = np.linalg.svd(x, full_matrices=full_matrices)
    k = s.shape[-1]
    u, vh = u[..., :k], vh[..., :k, :]
    sg = _np_sign_cols(u)
    return u * sg, s.astype(x.dtype), vh * sg.swapaxes(-1, -2)


def _eigh_fixed(x, UPLO="L"):
    w, v = dg.linalg.eigh((x + x.mT) * 0.5, UPLO=UPLO)
    return w, v * _dg_sign_cols(v)


def _np_eigh_fixed(x, UPLO="L"):
    w, v = np.linalg.eigh((x + x.swapaxes(-1, -2)) * 0.5, UPLO=UPLO)
    return w.astype(x.dtype), v * _np_sign_cols(v)


def _np_solve(a, b, left=True):
    if not left:
        return _np_solve(a.swapaxes(-1, -2), b.swapaxes(-1, -2)).swapaxes(-1, -2)
    if b.ndim == 1 or (b.ndim == a.ndim - 1 and b.shape == a.shape[:-1]):
        return np.linalg.solve(a, b[..., None])[..., 0]
    return np.linalg.solve(a, b)


def _np_solve_triangular(a, b, upper, left=True, unitriangular=False):
    tri = np.triu(a) if upper else np.tril(a)
    if unitriangular:
        tri = (np.triu(a, 1) if upper else np.tril(a, -1)) + np.eye(a.shape[-1], dtype=a.dtype)
    return _np_solve(tri, b, left=left) if b.ndim >= 2 else _np_solve(tri, b)


def _np_diag_embed(x, offset=0, dim1=-2, dim2=-1):
    n = x.shape[-1] + abs(offset)
    out = np.zeros(x.shape[:-1] + (n, n), x.dtype)
    i = np.arange(x.shape[-1])
    out[..., i + max(-offset, 0), i + max(offset, 0)] = x
    return np.moveaxis(out, (-2, -1), (dim1 % out.ndim, dim2 % out.ndim))


def _np_cholesky_solve(b, l, upper=False):
    f = np.triu(l) if upper else np.tril(l)
    a = f.T @ f if upper else f @ f.T
    return np.linalg.solve(a, b)


def _np_qr(x, mode="reduced"):
    if mode == "r":
        return np.zeros((0,), x.dtype), np.linalg.qr(x, mode="r")
    return tuple(np.linalg.qr(x, mode=mode))


def _np_pinv(x, hermitian=False):
    if hermitian:
        x = (x + x.swapaxes(-1, -2)) * 0.5
    return np.linalg.pinv(x, hermitian=hermitian).astype(x.dtype)


def _np_vector_norm(x, ord=2, dim=None, keepdim=False):
    ax = np.abs(x.astype(np.float64))
    if ord == 0:
        out = np.sum(x != 0, axis=dim, keepdims=keepdim).astype(np.float64)
    elif ord == np.inf:
        out = np.max(ax, axis=dim, keepdims=keepdim)
    elif ord == -np.inf:
        out = np.min(ax, axis=dim, keepdims=keepdim)
    else:
        out = np.sum(ax ** ord, axis=dim, keepdims=keepdim) ** (1.0 / ord)
    return np.asarray(out).astype(x.dtype)


def _np_matrix_norm(x, ord="fro", dim=(-2, -1), keepdim=False):
    moved = np.moveaxis(x.astype(np.float64), dim, (-2, -1))
    out = np.linalg.norm(moved, ord=ord, axis=(-2, -1))
    if keepdim:
        for d in sorted(a % x.ndim for a in dim):
            out = np.expand_dims(out, d)
    return np.asarray(out).astype(x.dtype)


def _np_linalg_norm(x, ord=None, dim=None, keepdim=False):
    if isinstance(dim, int):
        return _np_vector_norm(x, 2 if ord is None else ord, dim, keepdim)
    if dim is not None:
        return _np_matrix_norm(x, "fro" if ord is None else ord, dim, keepdim)
    if ord is None:
        return _np_vector_norm(x, 2, None, keepdim)
    return (_np_vector_norm(x, ord, None, keepdim) if x.ndim == 1 else
            _np_matrix_norm(x, ord, (-2, -1), keepdim))


def _np_torch_norm(x, p="fro", dim=None, keepdim=False):
    if isinstance(dim, int):
        dim = (dim,)
    if p == "fro":
        p = 2
    if p == "nuc":
        return _np_matrix_norm(x, "nuc", dim or (-2, -1), keepdim)
    return _np_vector_norm(x, p, dim, keepdim)


def _vector_norm_samples(make):
    return [Sample((make.nonzero(3, 4),), desc="all, ord 2"), Sample((make.nonzero(3, 4),), {"dim": 1}),
            Sample((make.nonzero(2, 3, 4),), {"ord": 1, "dim": (0, 2), "keepdim": True}),
            Sample((make._cast(make.distinct(3, 4) + 0.1),), {"ord": np.inf, "dim": -1}),  # |x| distinct, nonzero
            Sample((make._cast(make.distinct(3, 4) + 0.1),), {"ord": -np.inf, "dim": 0, "keepdim": True}),
            Sample((make.nonzero(3, 4),), {"ord": 3}), Sample((make.nonzero(3, 4),), {"ord": 0.5, "dim": 1}),
            Sample((np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 2.0]], make.dtype),), {"dim": 1},
                   desc="a zero vector", grad=False),
            Sample((np.array([[0.0, 1.5, 0.0, -2.0]], make.dtype),), {"ord": 0, "dim": 1}, desc="ord 0 counts")]


def _matrix_norm_samples(ords):
    def samples(make):
        out = []
        for i, o in enumerate(ords):
            out.append(Sample((make(3, 4),), {"ord": o}, desc=f"ord {o}"))
            out.append(Sample((make(2, 3, 3),), {"ord": o, "dim": (0, 2), "keepdim": i % 2 == 0},
                              desc=f"ord {o} dims (0, 2)"))
        return out
    return samples


def _linalg_samples_square(make):
    return [Sample((_well_conditioned(make, 3, 3),), desc="3x3"),
            Sample((_well_conditioned(make, 2, 3, 3),), desc="batched"), Sample((_well_conditioned(make, 1, 1),))]


def _rect_samples(make, **kw):
    return [Sample((make(4, 3),), dict(kw), desc="tall"), Sample((make(3, 3),), dict(kw), desc="square"),
            Sample((make(3, 5),), dict(kw), desc="wide"), Sample((make(2, 4, 3),), dict(kw), desc="batched")]


def _unary(name, fn, ref, gen="__call__", second_order=True, dtypes=FLOAT, gen_kw=None, **kw):
    second_order = second_order and kw.get("differentiable", True)
    return OpInfo(name, fn, ref, unary_samples(gen, **(gen_kw or {})), dtypes=dtypes, second_order=second_order, **kw)


def _binary(name, fn, ref, samples=None, dtypes=FLOAT, **kw):
    return OpInfo(name, fn, ref, samples or binary_samples(), dtypes=dtypes, **kw)


def _reduction(name, fn, ref, samples=None, **kw):
    return OpInfo(name, lambda x, **k: fn(x, **k), lambda x, **k: np.asarray(ref(x, **_np_axis(k))),
                  samples or _reduce_samples(), **kw)


def _count_op(x, axes=None):
    from dualgraph.ops.reduction import COUNT
    from dualgraph.dispatch import apply
    return apply(COUNT, (x,), {"axes": axes, "dtype": x.dtype})


# ---- references for the math, statistics and utility rows ------------------------------------------

def _with_specials(a):
    a = a.copy()
    a.flat[0], a.flat[1], a.flat[-1] = np.nan, np.inf, -np.inf
    return a


def _with_nans(a):
    a = a.copy()
    a.flat[::3] = np.nan
    return a


def _close_pair(make, nan=False):
    a = make(3, 4)
    b = a + make._cast(make.rng.choice([0.0, 1e-6, 0.1, 1.0], a.shape))
    if nan:
        a.flat[:4] = [np.nan, np.inf, -np.inf, np.nan]
        b.flat[:4] = [np.nan, np.inf, np.inf, 1.0]
    return a, b


def _np_unique(x, return_inverse=False, return_counts=False, dim=None, sorted=True):
    v, inv, cnt = np.unique(x, return_inverse=True, return_counts=True, axis=dim)
    inv = inv.reshape(x.shape) if dim is None else inv.reshape(-1)
    out = (v,) + ((inv.astype(np.int64),) if return_inverse else ()) + ((cnt.astype(np.int64),) if return_counts else ())
    return out[0] if len(out) == 1 else out


def _np_unique_consecutive(x, return_inverse=False, return_counts=False):
    vals, inv, cnt = [], [], []
    for v in x.reshape(-1):
        if not vals or vals[-1] != v:
            vals.append(v)
            cnt.append(0)
        cnt[-1] += 1
        inv.append(len(vals) - 1)
    return (np.array(vals, x.dtype), np.array(inv, np.int64).reshape(x.shape), np.array(cnt, np.int64))


def _np_histc(x, bins=100, min=0, max=0):
    lo, hi = (float(x.min()), float(x.max())) if min == max else (min, max)
    return np.histogram(x[(x >= lo) & (x <= hi)], bins=bins, range=(lo, hi))[0].astype(x.dtype)


def _np_searchsorted_nd(s, v):
    return np.stack([np.searchsorted(a, b) for a, b in zip(s, v)])


def _np_cdist(a, b, p=2.0):
    d = a[..., :, None, :] - b[..., None, :, :]
    return np.linalg.norm(d, ord=p, axis=-1)


def _np_cosine_similarity(a, b, dim=1, eps=1e-8):
    dot = np.sum(a * b, axis=dim)
    return dot / np.sqrt(np.maximum(np.sum(a * a, axis=dim) * np.sum(b * b, axis=dim), eps * eps))


def _np_unfold_window(x, d, size, step):
    x = np.moveaxis(x, d, -1)
    n = (x.shape[-1] - size) // step + 1
    w = np.stack([x[..., i * step:i * step + size] for i in range(n)], axis=-2)   # (..., n, size)
    return np.moveaxis(w, -2, d if d >= 0 else d + x.ndim)


def _np_index_copy(x, d, i, s):
    out = x.copy()
    idx = [slice(None)] * x.ndim
    for k, j in enumerate(i):
        idx[d] = j
        src = [slice(None)] * x.ndim
        src[d] = k
        out[tuple(idx)] = s[tuple(src)]
    return out


def _np_masked_scatter(x, m, s):
    m = np.broadcast_to(m, x.shape)
    out = x.copy()
    out[m] = s.reshape(-1)[:int(m.sum())]
    return out


def _np_take_along_dim(x, i, d=None):
    if d is None:
        return np.take_along_axis(x.reshape(-1), i.reshape(-1), 0)
    bx = tuple(max(a, b) if k != d else a for k, (a, b) in enumerate(zip(x.shape, i.shape)))
    bi = tuple(max(a, b) if k != d else b for k, (a, b) in enumerate(zip(x.shape, i.shape)))
    return np.take_along_axis(np.broadcast_to(x, bx), np.broadcast_to(i, bi), d)


def _np_quantile(x, q, dim=None, keepdim=False, interpolation="linear"):
    return np.asarray(np.quantile(x, q, axis=dim, keepdims=keepdim, method=interpolation), x.dtype)


def _np_sum_to(x, shape):
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    return x.sum(axis=axes, keepdims=True).reshape(shape)


def _np_huber(a, b, delta=1.0):
    d = np.abs(a - b)
    return np.asarray(np.mean(np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))))


def _np_group_norm(x, groups, w=None, b=None, eps=1e-5):
    xs = x.reshape(x.shape[0], groups, -1)
    y = ((xs - xs.mean(-1, keepdims=True)) / np.sqrt(xs.var(-1, keepdims=True) + eps)).reshape(x.shape)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (y * w.reshape(shape) + b.reshape(shape)).astype(x.dtype)


def _np_linear_resize(x, axis, n_out, align_corners):
    n_in = x.shape[axis]
    if align_corners:
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w = (src - i0).reshape(shape)
    a, b = np.take(x, i0, axis=axis), np.take(x, i1, axis=axis)
    return a + (b - a) * w


def _np_bilinear_resize(x, size, mode="bilinear", align_corners=False):
    y = _np_linear_resize(x, 2, size[0], align_corners)
    return _np_linear_resize(y, 3, size[1], align_corners).astype(x.dtype)


def _np_pixel_shuffle(x, r):
    n, c, h, w = x.shape
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


OP_DB = [
    # -- arithmetic --
    _binary("add", dg.add, np.add, dtypes=NUMERIC, second_order=False),
    _binary("add_alpha", lambda a, b: dg.add(a, b, alpha=2), lambda a, b: a + 2 * b,
            binary_samples(scalars=()), second_order=False),
    _binary("sub", dg.sub, np.subtract, dtypes=NUMERIC, second_order=False),
    _binary("mul", dg.mul, np.multiply, dtypes=NUMERIC, second_order=True),
    _binary("div", dg.div, np.true_divide, binary_samples(b_gen="nonzero", scalar_first=False), second_order=True),
    _binary("rdiv", lambda a, b: a / b, np.true_divide,
            lambda make: [Sample((2.0, make.nonzero(3, 4)), desc="scalar/tensor")], second_order=True),
    _binary("floordiv", dg.floordiv, np.floor_divide, _floordiv_samples, dtypes=NUMERIC),
    _binary("mod", dg.mod, np.mod, _floordiv_samples, dtypes=NUMERIC),
    _binary("div_floor", lambda a, b: dg.div(a, b, rounding_mode="floor"), np.floor_divide, _floordiv_samples,
            dtypes=NUMERIC),
    _binary("div_trunc", lambda a, b: dg.div(a, b, rounding_mode="trunc"),
            lambda a, b: (np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
                          if np.result_type(a, b).kind in "iu" else np.trunc(np.true_divide(a, b))),
            _floordiv_samples, dtypes=NUMERIC, notes="ints stay ints, as PyTorch"),
    _unary("neg", dg.neg, np.negative, dtypes=NUMERIC, second_order=False),
    _binary("pow", dg.pow, np.power, _pow_samples, second_order=True),
    _unary("abs", dg.abs, np.abs, "nonzero", dtypes=NUMERIC, second_order=False),
    _unary("sign", dg.sign, np.sign, "nonzero", dtypes=NUMERIC, second_order=False),
    _binary("maximum", dg.maximum, np.maximum, _minmax_pair, dtypes=NUMERIC),
    _binary("minimum", dg.minimum, np.minimum, _minmax_pair, dtypes=NUMERIC),
    _binary("max_binary", dg.max, np.maximum, _minmax_pair, notes="torch.max(a, b) spelling"),
    OpInfo("clip", lambda x, *a, **k: dg.clip(x, *a, **k),
           lambda x, lo=None, hi=None, min=None, max=None: np.clip(x, lo if lo is not None else min,
                                                                  hi if hi is not None else max), _clip_samples),
    # PyTorch's promotion: a float bound makes an int tensor compute in the default float32 (numpy: float64)
    OpInfo("clip_int", lambda x, *a: dg.clip(x, *a),
           lambda x, *a: np.clip(x.astype(np.float32) if any(isinstance(v, float) for v in a) else x, *a),
           lambda make: [Sample((make(3, 4, low=-5, high=5), -2, 3)), Sample((make(5, low=-5, high=5), 0, None)),
                         Sample((make(5, low=-5, high=5), None, 1.5), desc="float bound promotes")],
           dtypes=INT, differentiable=False),
    OpInfo("where", dg.where, np.where, _where_samples),
    OpInfo("where_scalars", dg.where, _where_scalars_ref,
           lambda make: [Sample((make.bool(2, 3), 1.5, -2.0)), Sample((make.bool(4), 1, 0), desc="ints")],
           dtypes=("bool",), differentiable=False, notes="two Python floats give float32, as PyTorch"),
    # -- unary math --
    _unary("exp", dg.exp, np.exp),
    _unary("log", dg.log, np.log, "pos"),
    _unary("log1p", dg.log1p, np.log1p, gen_kw={"low": -0.5}),
    _unary("expm1", dg.expm1, np.expm1),
    _unary("sqrt", dg.sqrt, np.sqrt, "pos"),
    _unary("rsqrt", dg.rsqrt, lambda x: 1 / np.sqrt(x), "pos"),
    _unary("sin", dg.sin, np.sin),
    _unary("cos", dg.cos, np.cos),
    _unary("tan", dg.tan, np.tan, gen_kw={"low": -1.2, "high": 1.2}),
    _unary("tanh", dg.tanh, np.tanh),
    _unary("sigmoid", dg.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    _unary("erf", dg.erf, sp.erf),
    _unary("floor", dg.floor, np.floor, "away", gen_kw={"points": (-2, -1, 0, 1, 2)}, second_order=False),
    _unary("ceil", dg.ceil, np.ceil, "away", gen_kw={"points": (-2, -1, 0, 1, 2)}, second_order=False),
    _unary("round", dg.round, np.round, "away", gen_kw={"points": (-1.5, -0.5, 0.5, 1.5)}, second_order=False),
    _unary("trunc", dg.trunc, np.trunc, "away", gen_kw={"points": (-2, -1, 0, 1, 2)}, second_order=False),
    _unary("clone", dg.clone, np.copy, dtypes=NUMERIC, second_order=False),
    _unary("square", dg.square, np.square, dtypes=NUMERIC),
    _unary("reciprocal", dg.reciprocal, np.reciprocal, "nonzero"),
    # -- activations --
    _unary("relu", dg.relu, lambda x: np.maximum(x, 0), "nonzero", dtypes=NUMERIC, second_order=False),
    OpInfo("leaky_relu", lambda x, **k: dg.leaky_relu(x, **k),
           lambda x, negative_slope=0.01: np.where(x > 0, x, x * x.dtype.type(negative_slope)),
           lambda make: [Sample((make.nonzero(3, 4),)), Sample((make.nonzero(5),), {"negative_slope": 0.2})]),
    OpInfo("elu", lambda x, **k: dg.elu(x, **k), lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(x)),
           lambda make: [Sample((make.nonzero(3, 4),)), Sample((make.nonzero(5),), {"alpha": 0.5})],
           second_order=True),
    OpInfo("gelu", lambda x, **k: dg.gelu(x, **k), np_gelu,
           lambda make: [Sample((make(3, 4),)), Sample((make(5),), {"approximate": "tanh"})], second_order=True),
    _unary("silu", dg.silu, lambda x: x / (1 + np.exp(-x))),
    OpInfo("softplus", lambda x, **k: dg.softplus(x, **k),
           lambda x, beta=1.0: np.log1p(np.exp(beta * x)) / beta,
           lambda make: [Sample((make(3, 4, low=-4, high=4),)), Sample((make(5),), {"beta": 2.0}),
                         Sample((make(2, 3, low=-30, high=30),), desc="large |x|", grad=False)], second_order=True),
    OpInfo("hardtanh", lambda x: dg.hardtanh(x), lambda x: np.clip(x, -1, 1),
           lambda make: [Sample((make.away(3, 4, points=(-1, 1)),))]),
    # -- comparisons and logic --
    *[_binary(n, getattr(dg, n), f, _cmp_samples, dtypes=NUMERIC, differentiable=False)
      for n, f in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                   ("gt", np.greater), ("ge", np.greater_equal)]],
    *[_binary(n, getattr(dg, n), getattr(np, n), _logic_samples, dtypes=("bool",), differentiable=False)
      for n in ("logical_and", "logical_or", "logical_xor")],
    _unary("logical_not", dg.logical_not, np.logical_not, "bool", dtypes=("bool",), differentiable=False),
    OpInfo("isnan", dg.isnan, np.isnan,
           lambda make: [Sample((np.array([1.0, np.nan, np.inf, -np.inf, 0.0], dtype=make.dtype),))],
           differentiable=False),
    OpInfo("isfinite", dg.isfinite, np.isfinite,
           lambda make: [Sample((np.array([1.0, np.nan, np.inf, -np.inf, 0.0], dtype=make.dtype),))],
           differentiable=False),
    *[_binary(n, (lambda n: lambda a, b: getattr(a, f"__{n[8:]}__")(b))(n), getattr(np, n),
              lambda make: [Sample((make.small_ints(3, 4, low=-5, high=5), make.small_ints(3, 4, low=-5, high=5))),
                            Sample((make.small_ints(2, 3), make.small_ints(3)), desc="broadcast")],
              dtypes=("int64", "int32", "bool"), differentiable=False)
      for n in ("bitwise_and", "bitwise_or", "bitwise_xor")],
    _unary("invert", lambda a: ~a, np.invert, "small_ints", dtypes=("int64", "int32", "bool"), differentiable=False),
    OpInfo("astype", lambda x, **k: dg.astype(x, **k), lambda x, dtype: x.astype(dtype),
           lambda make: [Sample((make(3, 4),), {"dtype": "float64"}), Sample((make(3, 4),), {"dtype": "float32"}, grad=False),
                         Sample((make.away(3, 4, points=(-1, 0, 1)),), {"dtype": "int64"}, grad=False),
                         Sample((make(3, 4),), {"dtype": "bool"}, grad=False)], dtypes=NUMERIC),
    # -- reductions --
    _reduction("sum", dg.sum, np.sum, _with_empty(_reduce_samples()), dtypes=NUMERIC),
    _reduction("mean", dg.mean, np.mean),
    _reduction("prod", dg.prod, np.prod, _prod_samples, dtypes=NUMERIC, second_order=True),
    _reduction("amax", dg.amax, np.max, _reduce_samples("distinct"), dtypes=NUMERIC),
    _reduction("amin", dg.amin, np.min, _reduce_samples("distinct"), dtypes=NUMERIC),
    OpInfo("var", lambda x, **k: dg.var(x, **k), _ref_var(np.var), _var_samples, second_order=True),
    OpInfo("std", lambda x, **k: dg.std(x, **k), _ref_var(np.std), _var_samples, second_order=True),
    _reduction("argmax", dg.argmax, np.argmax, _arg_samples, dtypes=NUMERIC, differentiable=False),
    _reduction("argmin", dg.argmin, np.argmin, _arg_samples, dtypes=NUMERIC, differentiable=False),
    _reduction("logsumexp", dg.logsumexp, sp.logsumexp, second_order=True),
    _reduction("all", dg.all, np.all, _reduce_samples("small_ints"), dtypes=("bool", "float32"), differentiable=False),
    _reduction("any", dg.any, np.any, _reduce_samples("small_ints"), dtypes=("bool", "int64"), differentiable=False),
    OpInfo("cumsum", lambda x, **k: dg.cumsum(x, **k), _ref_cumsum, _cumsum_samples, dtypes=NUMERIC),
    # the element count that mean/var divide by when a reduced dim is symbolic (graphs only call it then)
    OpInfo("count", _count_op, lambda x, axes=None: np.asarray(np.prod([x.shape[i] for i in (
        range(x.ndim) if axes is None else axes)]), dtype=x.dtype),
           lambda make: [Sample((make(2, 3, 4),)), Sample((make(2, 3, 4),), {"axes": (0, 2)}),
                         Sample((make(5),), {"axes": (0,)})], differentiable=False),
    # -- linear algebra --
    OpInfo("matmul", dg.matmul, np.matmul, _matmul_samples, dtypes=NUMERIC, second_order=True),
    OpInfo("mm", dg.mm, np.matmul, lambda make: [Sample((make(2, 3), make(3, 4)))]),
    OpInfo("matmul_operator", lambda a, b: a @ b, np.matmul, lambda make: [Sample((make(2, 3), make(3, 2)))],
           second_order=True),
    OpInfo("einsum", lambda *xs, spec: dg.einsum(spec, *xs), lambda *xs, spec: np.einsum(spec, *xs),
           _einsum_samples, second_order=True),
    # -- dg.linalg --
    OpInfo("linalg_inv", dg.linalg.inv, np.linalg.inv, _linalg_samples_square, second_order=True, onnx=False),
    OpInfo("linalg_solve", lambda a, b, **k: dg.linalg.solve(a, b, **k), _np_solve,
           lambda make: [Sample((_well_conditioned(make, 3, 3), make(3, 2)), desc="matrix B"),
                         Sample((_well_conditioned(make, 3, 3), make(3)), desc="vector b"),
                         Sample((_well_conditioned(make, 2, 3, 3), make(2, 3)), desc="batch of vectors"),
                         Sample((_well_conditioned(make, 2, 3, 3), make(3, 4)), desc="broadcast B"),
                         Sample((_well_conditioned(make, 3, 3), make(2, 3)), {"left": False}, desc="X A = B")],
           second_order=True, onnx=False),
    OpInfo("linalg_det", dg.linalg.det, np.linalg.det, _linalg_samples_square, second_order=True,
           onnx_dtypes=("float32",), notes="ONNX Det: onnxruntime has float32 only"),
    OpInfo("linalg_slogdet", lambda a: tuple(dg.linalg.slogdet(a)),
           lambda a: tuple(v.astype(a.dtype) for v in np.linalg.slogdet(a)),
           lambda make: [Sample((make(3, 3),)), Sample((make(2, 4, 4),), desc="batched")], second_order=True,
           onnx_dtypes=("float32",), notes="ONNX Det, Sign, Abs, Log: onnxruntime has float32 only"),
    OpInfo("linalg_cholesky", lambda x, **k: dg.linalg.cholesky(_spd(x, lambda n: dg.eye(n, dtype=x.dtype)), **k),
           lambda x, upper=False: (lambda c: c.swapaxes(-1, -2) if upper else c)(np.linalg.cholesky(_spd(x, np.eye))),
           lambda make: [Sample((make(3, 3),)), Sample((make(2, 4, 4),), desc="batched"),
                         Sample((make(3, 3),), {"upper": True})],
           second_order=True, onnx=False, notes="of x x^T + n I (symmetric positive-definite)"),
    OpInfo("linalg_qr", lambda x, **k: tuple(dg.linalg.qr(x, **k)), _np_qr,
           lambda make: _rect_samples(make) + [Sample((make(3, 4),), {"mode": "complete"}),
                                               Sample((make(4, 3),), {"mode": "r"}, grad=False)],
           onnx=False, notes="LAPACK's signs, as numpy's"),
    OpInfo("linalg_svd", _svd_fixed, _np_svd_fixed,
           lambda make: _rect_samples(make) + [Sample((make(4, 3),), {"full_matrices": True}, desc="full, tall"),
                                               Sample((make(2, 5),), {"full_matrices": True}, desc="full, wide")],
           onnx=False, notes="sign-normalised U, Vh (first k columns)"),
    OpInfo("linalg_svdvals", dg.linalg.svdvals, lambda x: np.linalg.svd(x, compute_uv=False).astype(x.dtype),
           _rect_samples, onnx=False),
    OpInfo("linalg_eigh", _eigh_fixed, _np_eigh_fixed,
           lambda make: [Sample((make(3, 3),)), Sample((make(2, 4, 4),), desc="batched"),
                         Sample((make(3, 3),), {"UPLO": "U"})],
           onnx=False, notes="of (x + x^T) / 2, sign-normalised eigenvectors"),
    OpInfo("linalg_eigvalsh", lambda x, **k: dg.linalg.eigvalsh((x + x.mT) * 0.5, **k),
           lambda x, **k: np.linalg.eigvalsh((x + x.swapaxes(-1, -2)) * 0.5, **k).astype(x.dtype),
           lambda make: [Sample((make(3, 3),)), Sample((make(2, 4, 4),), {"UPLO": "U"}, desc="batched")],
           onnx=False),
    OpInfo("linalg_pinv", lambda x, hermitian=False: dg.linalg.pinv((x + x.mT) * 0.5 if hermitian else x,
                                                                    hermitian=hermitian), _np_pinv,
           lambda make: _rect_samples(make) + [Sample((make(3, 3),), {"hermitian": True}, desc="hermitian")],
           onnx=False),
    OpInfo("linalg_matrix_rank", lambda x, **k: dg.linalg.matrix_rank(x, **k),
           lambda x, **k: np.asarray(np.linalg.matrix_rank(x, **k), np.int64),
           lambda make: [Sample((make(4, 3),)), Sample((make(4, 2) @ make(2, 5),), desc="rank 2"),
                         Sample((np.zeros((2, 3, 3), make.dtype),), desc="zero")],
           differentiable=False, onnx=False),
    OpInfo("linalg_cross", lambda a, b, **k: dg.linalg.cross(a, b, **k), lambda a, b, dim=-1: np.cross(a, b, axis=dim),
           lambda make: [Sample((make(4, 3), make(4, 3))), Sample((make(3), make(2, 3)), desc="broadcast"),
                         Sample((make(3, 4), make(3, 4)), {"dim": 0})], dtypes=NUMERIC, second_order=True),
    OpInfo("linalg_vector_norm", lambda x, **k: dg.linalg.vector_norm(x, **k), _np_vector_norm,
           _vector_norm_samples, second_order=True),
    OpInfo("linalg_matrix_norm", lambda x, **k: dg.linalg.matrix_norm(x, **k), _np_matrix_norm,
           _matrix_norm_samples(["fro", 1, -1, np.inf, -np.inf])),
    OpInfo("linalg_matrix_norm_svd", lambda x, **k: dg.linalg.matrix_norm(x, **k), _np_matrix_norm,
           _matrix_norm_samples(["nuc", 2, -2]), onnx=False, notes="nuclear and spectral norms (an SVD)"),
    OpInfo("linalg_norm", lambda x, **k: dg.linalg.norm(x, **k), _np_linalg_norm,
           lambda make: [Sample((make(2, 3, 4),)), Sample((make(3, 4),), {"ord": np.inf}),
                         Sample((make(5),), {"ord": 1}), Sample((make(2, 3, 4),), {"dim": 1, "keepdim": True}),
                         Sample((make(2, 3, 4),), {"dim": (0, 2), "ord": -1})]),
    OpInfo("norm", lambda x, *a, **k: x.norm(*a, **k), _np_torch_norm,
           lambda make: [Sample((make(3, 4),)), Sample((make(3, 4), 1)), Sample((make(2, 3, 4), 2), {"dim": (0, 2)}),
                         Sample((make(3, 4),), {"p": 3, "dim": 1, "keepdim": True})],
           notes="Tensor.norm / dg.norm (torch.norm: a vector norm unless p='nuc')"),
    OpInfo("linalg_vecdot", lambda x, y, **k: dg.linalg.vecdot(x, y, **k), lambda x, y, dim=-1: np.sum(x * y, axis=dim),
           lambda make: [Sample((make(3, 4), make(3, 4))), Sample((make(2, 3), make(3)), desc="broadcast"),
                         Sample((make(3, 4), make(3, 4)), {"dim": 0})], second_order=True),
    OpInfo("linalg_multi_dot", lambda *xs: dg.linalg.multi_dot(xs), lambda *xs: np.linalg.multi_dot(xs),
           lambda make: [Sample((make(2, 3), make(3, 4), make(4, 2))),
                         Sample((make(3), make(3, 4), make(4)), desc="1-D ends")],
           second_order=True),
    OpInfo("linalg_matrix_power", lambda x, n: dg.linalg.matrix_power(x, n), np.linalg.matrix_power,
           lambda make: [Sample((make(3, 3), 3)), Sample((make(2, 3, 3), 1)), Sample((make(3, 3), 6)),
                         Sample((make(2, 3, 3), 0), grad=False, desc="identity")], second_order=True),
    OpInfo("linalg_matrix_power_negative", lambda x, n: dg.linalg.matrix_power(x, n), np.linalg.matrix_power,
           lambda make: [Sample((_well_conditioned(make, 3, 3), -1)), Sample((_well_conditioned(make, 2, 3, 3), -2))],
           onnx=False, notes="powers of inv(A)"),
    OpInfo("linalg_solve_triangular", lambda a, b, **k: dg.linalg.solve_triangular(a, b, **k), _np_solve_triangular,
           lambda make: [Sample((_well_conditioned(make, 3, 3), make(3, 2)), {"upper": True}),
                         Sample((_well_conditioned(make, 2, 3, 3), make(2, 3, 2)), {"upper": False}),
                         Sample((_well_conditioned(make, 3, 3), make(2, 3)), {"upper": True, "left": False}),
                         Sample((make(3, 3), make(3, 2)), {"upper": False, "unitriangular": True})],
           second_order=True, onnx=False),
    OpInfo("linalg_cond", lambda x, *p: dg.linalg.cond(x, *p), lambda x, *p: np.asarray(np.linalg.cond(x, *p), x.dtype),
           lambda make: [Sample((_well_conditioned(make, 3, 3),)), Sample((make(3, 4),), desc="non-square, p=None"),
                         Sample((_well_conditioned(make, 2, 3, 3), "fro")), Sample((_well_conditioned(make, 3, 3), 1)),
                         Sample((_well_conditioned(make, 3, 3), -2))], onnx=False),
    OpInfo("linalg_lstsq", lambda a, b: dg.linalg.lstsq(a, b).solution,
           lambda a, b: np.linalg.lstsq(a, b, rcond=None)[0].astype(a.dtype),
           lambda make: [Sample((make(5, 3), make(5, 2))), Sample((make(3, 5), make(3, 2)), desc="underdetermined")],
           onnx=False, notes="the solution (PyTorch's CPU driver gelsy: empty residuals)"),
    # -- PyTorch's split/stack helpers (composites of narrow/getitem/reshape/concat) --
    OpInfo("tensor_split", lambda x, s, **k: dg.tensor_split(x, s, **k),
           lambda x, s, dim=0: tuple(np.array_split(x, s, axis=dim)),
           lambda make: [Sample((make(2, 7), 3), {"dim": 1}),
                         Sample((make(2, 7), [1, 4, 9]), {"dim": 1}, desc="indices")],
           dtypes=NUMERIC),
    OpInfo("unbind", lambda x, **k: dg.unbind(x, **k), lambda x, dim=0: tuple(np.moveaxis(x, dim, 0)),
           lambda make: [Sample((make(2, 3, 4),), {"dim": 1}), Sample((make(2, 3),), {"dim": -1})], dtypes=NUMERIC),
    OpInfo("hsplit", lambda x, s: dg.hsplit(x, s), lambda x, s: tuple(np.hsplit(x, s)),
           lambda make: [Sample((make(2, 6), 3)), Sample((make(2, 5), [2]), desc="indices")]),
    OpInfo("hstack", lambda *xs: dg.hstack(xs), lambda *xs: np.hstack(xs),
           lambda make: [Sample((make(2, 3), make(2, 1))), Sample((make(3), make(2)), desc="1-D")], dtypes=NUMERIC),
    OpInfo("vstack", lambda *xs: dg.vstack(xs), lambda *xs: np.vstack(xs),
           lambda make: [Sample((make(2, 3), make(3))), Sample((make(2, 2, 3), make(1, 2, 3)), desc="3-D")]),
    OpInfo("dstack", lambda *xs: dg.dstack(xs), lambda *xs: np.dstack(xs),
           lambda make: [Sample((make(2, 3), make(2, 3, 2))), Sample((make(3), make(3)), desc="1-D")]),
    OpInfo("column_stack", lambda *xs: dg.column_stack(xs), lambda *xs: np.column_stack(xs),
           lambda make: [Sample((make(3), make(3, 2)))]),
    OpInfo("unflatten", lambda x, d, s: dg.unflatten(x, d, s),
           lambda x, d, s: x.reshape(x.shape[:d % x.ndim] + tuple(x.shape[d] // -np.prod(s) if v == -1 else v for v in s)
                                     + x.shape[d % x.ndim + 1:]),
           lambda make: [Sample((make(2, 12), 1, (3, 4))), Sample((make(2, 6), -1, (2, -1)), desc="-1")]),
    OpInfo("clamp_tensor_bounds", lambda x, lo, hi: dg.clamp(x, min=lo, max=hi),
           lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
           lambda make: [Sample((make.away(3, 4, points=(-0.5, 0.5)), np.full((4,), -0.5, make.dtype),
                                 np.full((3, 1), 0.5, make.dtype)))],
           notes="tensor min/max broadcast (where composites)"),
    # -- torch.* products and diagonals (composites) --
    OpInfo("bmm", dg.bmm, np.matmul, lambda make: [Sample((make(2, 3, 4), make(2, 4, 5)))], dtypes=NUMERIC,
           second_order=True),
    OpInfo("mv", dg.mv, np.matmul, lambda make: [Sample((make(3, 4), make(4)))], dtypes=NUMERIC),
    OpInfo("outer", dg.outer, np.outer, lambda make: [Sample((make(3), make(4)))], dtypes=NUMERIC, second_order=True),
    OpInfo("vdot", dg.vdot, lambda a, b: np.asarray(np.vdot(a, b)), lambda make: [Sample((make(5), make(5)))],
           dtypes=NUMERIC),
    OpInfo("tensordot", lambda a, b, **k: dg.tensordot(a, b, **k), lambda a, b, dims=2: np.tensordot(a, b, axes=dims),
           lambda make: [Sample((make(2, 3, 4), make(3, 4, 5))), Sample((make(2, 3), make(3, 4)), {"dims": 1}),
                         Sample((make(2, 3, 4), make(4, 5, 2)), {"dims": ([0, 2], [2, 0])}, desc="listed dims")]),
    OpInfo("inner", dg.inner, np.inner, lambda make: [Sample((make(2, 3, 4), make(5, 4))), Sample((make(4), make(4)))]),
    OpInfo("addmm", lambda i, a, b, **k: dg.addmm(i, a, b, **k),
           lambda i, a, b, beta=1, alpha=1: (beta * i if beta else 0) + alpha * (a @ b),
           lambda make: [Sample((make(3, 5), make(3, 4), make(4, 5))),
                         Sample((make(5), make(3, 4), make(4, 5)), {"beta": 0.5, "alpha": 2.0}, desc="broadcast input"),
                         Sample((np.full((3, 5), np.nan, make.dtype), make(3, 4), make(4, 5)), {"beta": 0}, grad=False,
                                desc="beta=0 ignores NaN input")]),
    OpInfo("baddbmm", lambda i, a, b, **k: dg.baddbmm(i, a, b, **k),
           lambda i, a, b, beta=1, alpha=1: beta * i + alpha * (a @ b),
           lambda make: [Sample((make(2, 3, 5), make(2, 3, 4), make(2, 4, 5)), {"alpha": -1.0})]),
    OpInfo("diagonal", lambda x, *a: dg.diagonal(x, *a), lambda x, *a: np.diagonal(x, *a).copy(),
           lambda make: [Sample((make(3, 4),)), Sample((make(3, 4), 1)), Sample((make(3, 4), -2)),
                         Sample((make(3, 2, 4), 1, 2, 0), desc="dims 2, 0")], dtypes=NUMERIC),
    OpInfo("diag", lambda x, *a: dg.diag(x, *a), lambda x, *a: np.diag(x, *a).copy(),
           lambda make: [Sample((make(3),)), Sample((make(3), -1)), Sample((make(3, 4), 1))], dtypes=NUMERIC),
    OpInfo("diag_embed", lambda x, *a: dg.diag_embed(x, *a), _np_diag_embed,
           lambda make: [Sample((make(2, 3),)), Sample((make(2, 3), 1)), Sample((make(2, 3), -1, 0, 2), desc="dims")],
           dtypes=NUMERIC),
    OpInfo("trace", dg.trace, lambda x: np.asarray(np.trace(x)), lambda make: [Sample((make(3, 4),))], dtypes=NUMERIC),
    OpInfo("logdet", dg.logdet, lambda a: (lambda sg, la: np.where(sg < 0, np.nan, la).astype(a.dtype))(
        *np.linalg.slogdet(a)), lambda make: [Sample((_well_conditioned(make, 2, 3, 3),)),
                                             Sample((np.diag([-1.0, 2.0]).astype(make.dtype),), grad=False, desc="det < 0")],
           onnx_dtypes=("float32",)),
    OpInfo("pinverse", dg.pinverse, lambda a: np.linalg.pinv(a, rtol=1e-15).astype(a.dtype),
           lambda make: [Sample((make(4, 3),))], onnx=False),
    OpInfo("kron", dg.kron, np.kron, lambda make: [Sample((make(2, 3), make(2, 2))), Sample((make(2), make(3, 2)))],
           dtypes=NUMERIC, second_order=True),
    OpInfo("cholesky_solve", lambda b, l, **k: dg.cholesky_solve(b, l, **k), _np_cholesky_solve,
           lambda make: [Sample((make(3, 2), _well_conditioned(make, 3, 3))),
                         Sample((make(3, 2), _well_conditioned(make, 3, 3)), {"upper": True})], onnx=False,
           notes="reads one triangle of the factor; its gradient stays in that triangle"),
    OpInfo("chain_matmul", lambda *m: dg.chain_matmul(*m), lambda *m: np.linalg.multi_dot(m),
           lambda make: [Sample((make(2, 3), make(3, 3), make(3, 2)))]),
    # -- shapes --
    OpInfo("reshape", lambda x, *s: dg.reshape(x, *s), lambda x, *s: np.reshape(x, s[0] if len(s) == 1 else s),
           lambda make: [Sample((make(3, 4), (4, 3))), Sample((make(2, 3, 4), (-1, 4)), desc="-1"),
                         Sample((make(2, 3), 3, 2), desc="varargs"), Sample((make(1), ()), desc="to 0d"),
                         Sample((make(2, 3, 4), 24), desc="flat"), Sample((make(0, 3), (3, -1)), desc="empty", grad=False)],
           dtypes=NUMERIC),
    OpInfo("view", lambda x, *s: x.view(*s), lambda x, *s: np.reshape(x, s),
           lambda make: [Sample((make(3, 4), 2, 6))]),
    OpInfo("transpose", lambda x, *a, **k: dg.transpose(x, *a, **k),
           lambda x, *a, axes=None: np.swapaxes(x, *a) if a else np.transpose(x, axes),
           lambda make: [Sample((make(3, 4),), desc="reverse"), Sample((make(2, 3, 4), 0, 2), desc="swap"),
                         Sample((make(2, 3, 4), -1, 1), desc="negative"),
                         Sample((make(2, 3, 4),), {"axes": (1, 2, 0)}, desc="axes=")], dtypes=NUMERIC),
    OpInfo("permute", lambda x, *a: x.permute(*a), lambda x, *a: np.transpose(x, a[0] if len(a) == 1 else a),
           lambda make: [Sample((make(2, 3, 4), 2, 0, 1)), Sample((make(2, 3, 4), (1, -1, 0)), desc="tuple, negative")]),
    OpInfo("mT", lambda x: x.mT, lambda x: np.swapaxes(x, -1, -2), lambda make: [Sample((make(2, 3, 4),))]),
    OpInfo("moveaxis", dg.moveaxis, np.moveaxis, lambda make: [Sample((make(2, 3, 4), 0, -1)), Sample((make(2, 3, 4), 2, 0))]),
    OpInfo("expand", lambda x, *s: dg.expand(x, *s), lambda x, *s: np.broadcast_to(
        x, tuple(x.shape[i - (len(s) - x.ndim)] if v == -1 else v for i, v in enumerate(s))),
           lambda make: [Sample((make(3, 1), 3, 4)), Sample((make(1, 4), 2, -1, 4), desc="-1, new axis")]),
    OpInfo("expand_as", lambda x, o: x.expand_as(o), lambda x, o: np.broadcast_to(x, o.shape),
           lambda make: [Sample((make(3, 1), make(2, 3, 4)))]),
    OpInfo("broadcast_to", lambda x, s: dg.broadcast_to(x, s), np.broadcast_to,
           lambda make: [Sample((make(3, 1), (2, 3, 4))), Sample((make(4), (3, 4))), Sample((make(), (2, 2)), desc="0d")],
           dtypes=NUMERIC),
    OpInfo("squeeze", lambda x, *a, **k: dg.squeeze(x, *a, **k),
           lambda x, axis=None, dim=None: np.squeeze(x, axis if dim is None else dim),
           lambda make: [Sample((make(1, 3, 1, 4),), desc="all"), Sample((make(1, 3, 1),), {"axis": -1}),
                         Sample((make(1, 3, 1),), {"dim": 0}), Sample((make(1, 3, 1),), {"axis": (0, 2)}, desc="tuple")]),
    OpInfo("squeeze_noop", lambda x: dg.squeeze(x, 1), lambda x: x,
           lambda make: [Sample((make(2, 3),))], notes="torch: squeezing a non-1 dim is a no-op"),
    OpInfo("unsqueeze", lambda x, a: dg.unsqueeze(x, a), np.expand_dims,
           lambda make: [Sample((make(3, 4), 0)), Sample((make(3, 4), -1)), Sample((make(3, 4), 1)), Sample((make(), 0))]),
    OpInfo("flatten", lambda x, **k: dg.flatten(x, **k),
           lambda x, start_dim=0, end_dim=-1: x.reshape(
               x.shape[:start_dim % x.ndim] + (-1,) + x.shape[end_dim % x.ndim + 1:]),
           lambda make: [Sample((make(2, 3, 4),)), Sample((make(2, 3, 4),), {"start_dim": 1}),
                         Sample((make(2, 3, 4, 2),), {"start_dim": 1, "end_dim": -2})]),
    OpInfo("concat", lambda *xs, **k: dg.concat(list(xs), **k),
           lambda *xs, axis=0, dim=None: np.concatenate(xs, axis=axis if dim is None else dim),
           lambda make: [Sample((make(2, 3), make(4, 3))), Sample((make(2, 3), make(2, 1), make(2, 2)), {"axis": -1}),
                         Sample((make(2, 1, 3), make(2, 2, 3)), {"dim": 1}),
                         Sample((make(0, 3), make(2, 3)), desc="empty piece", grad=False)], dtypes=NUMERIC),
    OpInfo("stack", lambda *xs, **k: dg.stack(list(xs), **k),
           lambda *xs, axis=0, dim=None: np.stack(xs, axis=axis if dim is None else dim),
           lambda make: [Sample((make(2, 3), make(2, 3))), Sample((make(2, 3), make(2, 3), make(2, 3)), {"axis": -1}),
                         Sample((make(4), make(4)), {"dim": 1})]),
    OpInfo("split", lambda x, s, **k: dg.split(x, s, **k),
           lambda x, s, axis=0, dim=None: np_split(x, s, axis if dim is None else dim),
           lambda make: [Sample((make(5, 3), 2), desc="uneven"), Sample((make(2, 6), [1, 2, 3]), {"dim": 1}),
                         Sample((make(2, 6), 3), {"axis": -1})]),
    OpInfo("chunk", lambda x, c, **k: dg.chunk(x, c, **k),
           lambda x, c, axis=0, dim=None: np_split(x, -(-x.shape[axis if dim is None else dim] // c),
                                                   axis if dim is None else dim),
           lambda make: [Sample((make(6, 2), 3)), Sample((make(2, 5), 2), {"dim": 1})]),
    OpInfo("narrow", dg.narrow, lambda x, a, s, n: np.take(x, range(s, s + n), axis=a),
           lambda make: [Sample((make(4, 5), 1, 1, 3))]),
    OpInfo("pad", lambda x, p, **k: dg.pad(x, p, **k),
           lambda x, p, value=0.0, mode="constant": np.pad(
               x, p if isinstance(p[0], tuple) else
               [(0, 0)] * (x.ndim - len(p) // 2) + [(p[i], p[i + 1]) for i in range(len(p) - 2, -1, -2)],
               constant_values=value),
           lambda make: [Sample((make(2, 3), (1, 2)), desc="torch last axis"),
                         Sample((make(2, 3, 4), (1, 0, 0, 2)), {"value": 1.5}, desc="torch two axes"),
                         Sample((make(2, 3), ((1, 0), (0, 2))), desc="numpy pairs")]),
    OpInfo("pad_modes", lambda x, p, mode: dg.pad(x, p, mode=mode),
           lambda x, p, mode: np.pad(x, [(0, 0)] * (x.ndim - len(p) // 2) +
                                     [(p[i], p[i + 1]) for i in range(len(p) - 2, -1, -2)],
                                     mode="edge" if mode == "replicate" else mode),
           lambda make: [Sample((make(2, 4), (2, 1), "reflect")), Sample((make(2, 3, 4), (1, 2, 2, 1), "reflect")),
                         Sample((make(2, 3), (3, 1), "replicate")), Sample((make(2, 3, 2), (1, 1, 0, 2), "edge"))]),
    OpInfo("flip", lambda x, **k: dg.flip(x, **k), lambda x, axis=None, dims=None: np.flip(x, axis if dims is None else dims),
           lambda make: [Sample((make(3, 4),)), Sample((make(3, 4),), {"axis": 0}), Sample((make(2, 3, 4),), {"dims": (0, -1)})]),
    OpInfo("repeat", lambda x, *r: x.repeat(*r), lambda x, *r: np.tile(x, r),
           lambda make: [Sample((make(2, 3), 2, 1)), Sample((make(3), 2, 2), desc="new axis")]),
    # -- indexing --
    OpInfo("getitem", lambda x, *, index: x[index], lambda x, *, index: x[index],
           lambda make: [Sample((make(4, 5),), {"index": (1,)}, desc="int"),
                         Sample((make(4, 5),), {"index": (slice(1, 3), slice(None, None, -2))}, desc="slices"),
                         Sample((make(4, 5),), {"index": (-1, slice(None))}, desc="negative int"),
                         Sample((make(2, 3, 4),), {"index": (Ellipsis, None, 1)}, desc="ellipsis, None"),
                         Sample((make(4, 5),), {"index": (np.array([0, 2, 0]),)}, desc="int array, repeats"),
                         Sample((make(4, 5),), {"index": (slice(None), [1, 3])}, desc="list"),
                         Sample((make(2, 3),), {"index": (np.array([[True, False, True], [False, True, True]]),)},
                                desc="bool mask"),
                         Sample((make(3, 4),), {"index": (np.array([0, 2]), np.array([1, 3]))}, desc="pairs"),
                         Sample((make(3, 4),), {"index": (slice(2, 2),)}, desc="empty slice", grad=False),
                         Sample((make(3, 4),), {"index": (np.array([-1, 0, -1]), slice(None, None, -1))},
                                desc="negative index array, reversed")],
           dtypes=NUMERIC),
    OpInfo("setitem", _dg_setitem, lambda x, v, *, index: _with_set(x, v, index),
           lambda make: [Sample((make(4, 5), make(5)), {"index": (1,)}, desc="row"),
                         Sample((make(4, 5), make(2, 1)), {"index": (slice(1, 3), slice(None))}, desc="broadcast value"),
                         Sample((make(4, 5), make(2)), {"index": (np.array([0, 3]), np.array([1, 2]))}, desc="advanced"),
                         Sample((make(3, 3), 0.5 if make.is_float else 1), {"index": (slice(None), 0)}, desc="scalar"),
                         Sample((make(2, 3), 2 if not make.is_float else 2.5),
                                {"index": (np.array([[True, False, True], [False, False, True]]),)}, desc="mask"),
                         Sample((make(4, 3), make(2, 3)), {"index": (slice(None, None, -2),)}, desc="negative step")],
           dtypes=NUMERIC),
    OpInfo("index_put", lambda x, v, *, index: dg.index_put(x, index, v), lambda x, v, *, index: _with_set(x, v, index),
           lambda make: [Sample((make(4, 5), make(2, 5)), {"index": (slice(0, 2),)})]),
    OpInfo("gather", lambda x, d, i: dg.gather(x, d, i), np_gather,
           lambda make: [Sample((make(3, 4), 1, make.index((3, 2), 4))), Sample((make(3, 4), 0, make.index((5, 4), 3)), desc="repeats"),
                         Sample((make(2, 3, 4), -1, make.index((2, 3, 6), 4)), desc="negative dim"),
                         Sample((make(3, 4), 1, make.index((2, 2), 4)), desc="index smaller than input")],
           dtypes=NUMERIC),
    OpInfo("take_along_axis", lambda x, i, a: dg.take_along_axis(x, i, a), lambda x, i, a: np.take_along_axis(x, i, a),
           lambda make: [Sample((make(3, 4), make.index((3, 1), 4), 1)),
                         Sample((make(3, 4), make.index((1, 2), 4), 1), desc="index broadcasts"),
                         Sample((make(1, 4), make.index((3, 2), 4), -1), desc="input broadcasts")]),
    OpInfo("scatter_add", lambda x, d, i, s: dg.scatter_add(x, d, i, s), np_scatter_add,
           lambda make: [Sample((make(3, 4), 0, make.index((5, 4), 3), make(5, 4)), desc="repeated targets"),
                         Sample((make(3, 4), 1, make.index((3, 2), 4), make(3, 2))),
                         Sample((make(2, 3, 4), -1, make.index((2, 3, 2), 4), make(2, 3, 2)), desc="negative dim")],
           dtypes=NUMERIC, second_order=False),
    OpInfo("index_select", lambda x, d, i: dg.index_select(x, d, i), lambda x, d, i: np.take(x, i, axis=d),
           lambda make: [Sample((make(4, 3), 0, np.array([3, 0, 3]))), Sample((make(2, 5), 1, np.array([4, 1]))),
                         Sample((make(2, 5), -1, np.array([0])), desc="negative dim")], dtypes=NUMERIC),
    OpInfo("nonzero_as_tuple", lambda x: dg.nonzero(x, as_tuple=True), np.nonzero,
           lambda make: [Sample((make.small_ints(3, 4, low=0, high=1),))], differentiable=False),
    OpInfo("nonzero", dg.nonzero, np.argwhere,
           lambda make: [Sample((make.small_ints(3, 4, low=0, high=1),)), Sample((make.small_ints(5, low=0, high=1),))],
           dtypes=NUMERIC, differentiable=False),
    # -- selection, sorting, masking (ops/selection.py) --
    OpInfo("sort", lambda x, **k: dg.sort(x, **k), np_sort,
           lambda make: [Sample((make.distinct(3, 5),)), Sample((make.distinct(2, 3, 4),), {"dim": 1, "descending": True}),
                         Sample((make.distinct(4, 3),), {"dim": -2}), Sample((make.small_ints(3, 6),), {"descending": True},
                                                                             desc="ties", grad=False),
                         Sample((make(0, 3),), {"dim": 0}, desc="empty", grad=False)], dtypes=NUMERIC),
    OpInfo("argsort", lambda x, **k: dg.argsort(x, **k), lambda x, **k: np_sort(x, **k)[1],
           lambda make: [Sample((make.small_ints(3, 6),), desc="ties"),
                         Sample((make.small_ints(2, 5, 3),), {"dim": 1, "descending": True}, desc="ties, descending")],
           dtypes=NUMERIC, differentiable=False),
    OpInfo("msort", lambda x: dg.msort(x), lambda x: np.sort(x, axis=0), lambda make: [Sample((make.distinct(4, 3),))]),
    OpInfo("topk", lambda x, k, **kw: dg.topk(x, k, **kw), np_topk,
           lambda make: [Sample((make.distinct(3, 6), 2)), Sample((make.distinct(2, 5, 3), 3), {"dim": 1, "largest": False}),
                         Sample((make.small_ints(4, 7), 4), desc="ties", grad=False),
                         Sample((make.distinct(5,), 0), desc="k=0", grad=False),
                         Sample((make.distinct(3, 4), 4), {"dim": -1}, desc="k=n")], dtypes=NUMERIC),
    OpInfo("max_dim", lambda x, d, **k: dg.max(x, d, **k), np_extreme_dim(np.argmax),
           lambda make: [Sample((make.distinct(3, 4), 1)), Sample((make.distinct(2, 3, 4), -3), {"keepdim": True}),
                         Sample((make.small_ints(3, 5), 1), desc="ties", grad=False)], dtypes=NUMERIC),
    OpInfo("min_dim", lambda x, d, **k: x.min(dim=d, **k), np_extreme_dim(np.argmin),
           lambda make: [Sample((make.distinct(3, 4), 0)), Sample((make.small_ints(3, 5), -1), desc="ties", grad=False)],
           dtypes=NUMERIC),
    OpInfo("median_dim", lambda x, d, **k: dg.median(x, d, **k),
           lambda x, d, keepdim=False: np_kth_sorted(x, d, (x.shape[d] - 1) // 2, keepdim),
           lambda make: [Sample((make.distinct(3, 5), 1)), Sample((make.distinct(4, 3), 0), {"keepdim": True}, desc="even"),
                         Sample((make.small_ints(3, 6), -1), desc="ties", grad=False)], dtypes=NUMERIC),
    OpInfo("median", lambda x: dg.median(x), lambda x: np.sort(x, axis=None)[(x.size - 1) // 2],
           lambda make: [Sample((make.distinct(3, 4),)), Sample((make.distinct(5,),))], dtypes=NUMERIC),
    OpInfo("kthvalue", lambda x, k, **kw: dg.kthvalue(x, k, **kw),
           lambda x, k, dim=-1, keepdim=False: np_kth_sorted(x, dim, k - 1, keepdim),
           lambda make: [Sample((make.distinct(3, 5), 2)), Sample((make.distinct(4, 3), 4), {"dim": 0, "keepdim": True}),
                         Sample((make.small_ints(2, 6), 3), desc="ties", grad=False)], dtypes=NUMERIC),
    OpInfo("mode", lambda x, *a, **k: dg.mode(x, *a, **k), np_mode,
           lambda make: [Sample((make.small_ints(3, 7),)), Sample((make.small_ints(4, 3, 5), 0), {"keepdim": True}),
                         Sample((make.small_ints(2, 6, 3), -2),)], dtypes=NUMERIC, differentiable=False,
           notes="values differentiate to the selected element (test_selection_ops.py); finite differences "
                 "would break the equal values mode counts"),
    OpInfo("cumprod", lambda x, d: dg.cumprod(x, d), lambda x, d: np.cumprod(x, axis=d),
           lambda make: [Sample((make.nonzero(3, 4), 1)), Sample((make.nonzero(2, 3, 4), -3))],
           dtypes=NUMERIC, second_order=True),
    OpInfo("cumprod_zeros", lambda x, d: x.cumprod(d), lambda x, d: np.cumprod(x, axis=d),
           lambda make: [Sample((_with_zeros(make, 4, 6), 1)),
                         Sample((np.array([[2.0, 0.0, 3.0, 0.0, 4.0], [0.0, 1.5, 2.0, 0.5, 3.0]], make.dtype), 1),
                                desc="first and later zeros")],
           second_order=True, notes="gradients exact at zeros (first and second order)"),
    OpInfo("cummax", lambda x, d: dg.cummax(x, d), np_cum_extreme(True),
           lambda make: [Sample((make.distinct(3, 5), 1)), Sample((make.small_ints(4, 6), 1), desc="ties", grad=False)],
           dtypes=NUMERIC),
    OpInfo("cummin", lambda x, d: x.cummin(d), np_cum_extreme(False),
           lambda make: [Sample((make.distinct(5, 3), 0)), Sample((make.small_ints(4, 6), -1), desc="ties", grad=False)],
           dtypes=NUMERIC),
    OpInfo("tril", lambda x, **k: dg.tril(x, **k), lambda x, diagonal=0: np.tril(x, diagonal),
           lambda make: [Sample((make(4, 4),)), Sample((make(2, 3, 5),), {"diagonal": 1}, desc="batched, k=1"),
                         Sample((make(5, 3),), {"diagonal": -2}, desc="k=-2")], dtypes=NUMERIC + ("bool",)),
    OpInfo("triu", lambda x, **k: x.triu(**k), lambda x, diagonal=0: np.triu(x, diagonal),
           lambda make: [Sample((make(4, 4),)), Sample((make(2, 3, 5),), {"diagonal": -1}, desc="batched, k=-1")],
           dtypes=NUMERIC + ("bool",)),
    OpInfo("masked_fill", lambda x, m, v: dg.masked_fill(x, m, v),
           lambda x, m, v: np.where(m, np.asarray(v, x.dtype), x),
           lambda make: [Sample((make(3, 4), make.bool(3, 4), -1.5 if make.is_float else -3)),
                         Sample((make(2, 3, 4), make.bool(3, 1), 2), desc="broadcast mask"),
                         Sample((make(3, 4), make.bool(4), np.array(7, make.dtype)), desc="0-d tensor value")],
           dtypes=NUMERIC),
    OpInfo("where_tuple", lambda c: dg.where(c), np.nonzero, lambda make: [Sample((make.bool(3, 4),))],
           dtypes=("bool",), differentiable=False, notes="where(cond) alone is nonzero(cond, as_tuple=True)"),
    OpInfo("masked_select", lambda x, m: dg.masked_select(x, m), lambda x, m: np.broadcast_to(x, np.broadcast_shapes(
        x.shape, m.shape))[np.broadcast_to(m, np.broadcast_shapes(x.shape, m.shape))],
           lambda make: [Sample((make(3, 4), make.bool(3, 4))), Sample((make(3, 1), make.bool(3, 4)), desc="broadcast")],
           dtypes=NUMERIC),
    OpInfo("take", lambda x, i: dg.take(x, i), lambda x, i: x.reshape(-1)[i],
           lambda make: [Sample((make(3, 4), make.index((2, 3), 12))), Sample((make(5,), np.array([-1, 0, 4])), desc="negative")],
           dtypes=NUMERIC),
    OpInfo("index_fill", lambda x, d, i, v: dg.index_fill(x, d, i, v), np_index_fill,
           lambda make: [Sample((make(4, 3), 0, np.array([0, 2]), -1.0 if make.is_float else -1)),
                         Sample((make(2, 5), -1, np.array([4, -5, 1]), np.array(3, make.dtype)), desc="0-d value, negative")],
           dtypes=NUMERIC),
    OpInfo("index_add", lambda x, d, i, s, **k: dg.index_add(x, d, i, s, **k), np_index_add,
           lambda make: [Sample((make(4, 3), 0, np.array([0, 2, 0]), make(3, 3)), desc="repeated"),
                         Sample((make(2, 5), 1, np.array([4, 1]), make(2, 2)), {"alpha": 2})], dtypes=NUMERIC),
    OpInfo("scatter", lambda x, d, i, s: dg.scatter(x, d, i, s), np_scatter,
           lambda make: [Sample((make(3, 4), 0, _perm_index(make, (2, 4), 3, 0), make(2, 4))),
                         Sample((make(2, 3, 4), -1, _perm_index(make, (2, 3, 2), 4, 2), make(2, 3, 2)), desc="negative dim"),
                         Sample((make(3, 5), 1, _perm_index(make, (2, 3), 5, 1), make(3, 4)), desc="larger src")],
           dtypes=NUMERIC),
    OpInfo("scatter_value", lambda x, d, i, **k: dg.scatter(x, d, i, **k), np_scatter,
           lambda make: [Sample((make(3, 4), 1, make.index((3, 2), 4)), {"value": 2})], dtypes=NUMERIC),
    OpInfo("scatter_multiply", lambda x, d, i, s: dg.scatter(x, d, i, s, reduce="multiply"),
           lambda x, d, i, s: np_scatter(x, d, i, s, reduce="multiply"),
           lambda make: [Sample((make(3, 4), 0, make.index((5, 4), 3), make(5, 4)), desc="repeated targets")],
           dtypes=NUMERIC, differentiable=False, notes="no gradient, as PyTorch"),
    OpInfo("scatter_add_larger_src", lambda x, d, i, s: x.scatter_add(d, i, s), np_scatter_add,
           lambda make: [Sample((make(3, 4), 0, make.index((2, 3), 3), make(4, 4)))],
           notes="src larger than index: its leading part is read"),
    OpInfo("roll", lambda x, *a: dg.roll(x, *a), np.roll,
           lambda make: [Sample((make(3, 4), 1, 1)), Sample((make(3, 4), 5), desc="flattened"),
                         Sample((make(2, 3, 4), (1, -2), (0, 2)), desc="tuples"), Sample((make(3, 4), -7, 0), desc="wraps")],
           dtypes=NUMERIC),
    OpInfo("repeat_interleave", lambda x, r, *d: dg.repeat_interleave(x, r, *d),
           lambda x, r, *d: np.repeat(x, r, *d),
           lambda make: [Sample((make(2, 3), 2, 1)), Sample((make(2, 3), 3), desc="flattened"),
                         Sample((make(3, 2), np.array([1, 0, 2]), 0), desc="tensor repeats")], dtypes=NUMERIC),
    OpInfo("multinomial", lambda p, n, **k: dg.gather(p, -1, dg.multinomial(p, n, **k)) > 0,
           lambda p, n, **k: np.ones(p.shape[:-1] + (n,), bool),
           lambda make: [Sample((np.array([[0.0, 1.0, 2.0, 0.0, 1.0, 3.0, 0.5], [3.0, 0.0, 1.0, 1.0, 2.0, 0.0, 2.0]],
                                          make.dtype), 3), desc="without replacement"),
                         Sample((np.array([0.0, 0.5, 1.0, 2.0, 0.0, 1.0, 1.5, 1.0, 0.5], make.dtype), 12),
                                {"replacement": True}, desc="1-D, with replacement")],
           differentiable=False, random=True, notes="never draws a zero-weight category"),
    OpInfo("one_hot", lambda i, **k: dg.one_hot(i, **k),
           lambda i, num_classes=-1: np.eye(num_classes if num_classes > 0 else i.max() + 1, dtype=np.int64)[i],
           lambda make: [Sample((np.array([0, 2, 1, 2]),), {"num_classes": 4}), Sample((np.array([[1, 0], [2, 2]]),), desc="infer C")],
           dtypes=("int64",), differentiable=False),
    OpInfo("embedding", lambda i, w: dg.embedding(i, w), lambda i, w: w[i],
           lambda make: [Sample((np.array([[0, 2], [4, 2]]), make(5, 3))), Sample((np.array([1, 1, 0]), make(3, 2)), desc="repeats")]),
    OpInfo("embedding_options", lambda i, w, **k: F.embedding(i, w, **k), lambda i, w, **k: w[i],
           lambda make: [Sample((np.array([[0, 2], [4, 2]]), make(5, 3)), {"padding_idx": 2}),
                         Sample((np.array([1, 1, 0]), make(3, 2)), {"scale_grad_by_freq": True, "padding_idx": -1},
                                desc="repeats")],
           differentiable=False,
           notes="F.embedding's padding_idx / scale_grad_by_freq change only the gradient (by design not the "
                 "derivative; checked against torch in test_nn_extras.py)"),
    # -- softmax family and losses --
    OpInfo("softmax", lambda x, **k: F.softmax(x, **k), lambda x, axis=-1, dim=None: np_softmax(x, axis if dim is None else dim),
           lambda make: [Sample((make(3, 4),)), Sample((make(2, 3, 4),), {"axis": 1}), Sample((make(2, 3),), {"dim": 0}),
                         Sample((make(2, 3, low=-200, high=200),), desc="large logits", grad=False)], second_order=True),
    # -- recurrent layers: one primitive per (layer, direction) over the whole sequence --
    OpInfo("lstm", lambda *a, **k: _rnn_ops.lstm_layer(*a, **k), lambda *a, **k: np_recurrent("lstm", *a, **k),
           _recurrent_samples("lstm"), dtypes=FLOAT, atol=1e-5, rtol=1e-4),
    OpInfo("lstm_proj", lambda *a, **k: _rnn_ops.lstm_layer(*a[:7], w_hr=a[7], **k),
           lambda *a, **k: np_recurrent("lstm", *a[:7], w_hr=a[7], **k),
           _recurrent_samples("lstm_proj"), dtypes=FLOAT, atol=1e-5, rtol=1e-4),
    OpInfo("gru", lambda *a, **k: _rnn_ops.gru_layer(*a, **k), lambda *a, **k: np_recurrent("gru", *a, **k),
           _recurrent_samples("gru"), dtypes=FLOAT, atol=1e-5, rtol=1e-4),
    OpInfo("rnn_tanh", lambda *a, **k: _rnn_ops.rnn_layer(*a, **k), lambda *a, **k: np_recurrent("rnn", *a, **k),
           _recurrent_samples("rnn"), dtypes=FLOAT, atol=1e-5, rtol=1e-4),
    OpInfo("rnn_relu", lambda *a, **k: _rnn_ops.rnn_layer(*a, nonlinearity="relu", **k),
           lambda *a, **k: np_recurrent("rnn", *a, nonlinearity="relu", **k),
           _recurrent_samples("rnn"), dtypes=FLOAT, atol=1e-5, rtol=1e-4),
    OpInfo("log_softmax", lambda x, **k: F.log_softmax(x, **k),
           lambda x, axis=-1, dim=None: np_log_softmax(x, axis if dim is None else dim),
           lambda make: [Sample((make(3, 4),)), Sample((make(2, 3, 4),), {"dim": 1}),
                         Sample((make(2, 3, low=-200, high=200),), desc="large logits", grad=False)], second_order=True),
    OpInfo("cross_entropy", lambda x, t, **k: F.cross_entropy(x, t, **k), np_cross_entropy,
           lambda make: [Sample((make(4, 3), np.array([0, 2, 1, 2]))),
                         Sample((make(4, 3), np.array([0, 2, -100, 2])), {"reduction": "sum"}, desc="ignore_index"),
                         Sample((make(4, 3), np.array([0, 2, 1, 1])), {"weight": make.pos(3), "label_smoothing": 0.1},
                                desc="weight+smoothing"),
                         Sample((make(4, 3), np.array([0, 2, 1, 5])), {"ignore_index": 5, "weight": make.pos(3)},
                                desc="weight+ignore"),
                         Sample((make(2, 3, 2), np.array([[0, 2], [1, 1]])), {"reduction": "none"}, desc="spatial"),
                         Sample((make(4, 3), np_softmax(make.f64(4, 3)).astype(make.dtype)), desc="probabilities"),
                         Sample((make(4, 3), np_softmax(make.f64(4, 3)).astype(make.dtype)),
                                {"label_smoothing": 0.2, "weight": make.pos(3)}, desc="probs+smoothing+weight"),
                         Sample((make(3), np.array(1)), desc="unbatched")], second_order=True),
    OpInfo("nll_loss", lambda x, t, **k: F.nll_loss(x, t, **k), np_nll_loss,
           lambda make: [Sample((make(4, 3), np.array([0, 2, 1, 2]))),
                         Sample((make(4, 3), np.array([0, -100, 1, 2])), {"weight": make.pos(3)}),
                         Sample((make(4, 3), np.array([0, 2, 1, 2])), {"reduction": "none"})]),
    OpInfo("mse_loss", lambda a, b, **k: F.mse_loss(a, b, **k), lambda a, b, reduction="mean": _reduce((a - b) ** 2, reduction),
           lambda make: [Sample((make(3, 4), make(3, 4))), Sample((make(5), make(5)), {"reduction": "sum"}),
                         Sample((make(2, 3), make(2, 3)), {"reduction": "none"})], second_order=True),
    OpInfo("l1_loss", lambda a, b: F.l1_loss(a, b), lambda a, b: np.asarray(np.mean(np.abs(a - b))),
           lambda make: [Sample((lambda a: (a, a + make.nonzero(3, 4)))(make(3, 4)))]),
    OpInfo("huber_loss", lambda a, b, **k: F.huber_loss(a, b, **k), _np_huber,
           lambda make: [Sample((lambda a: (a, a + make.away(3, 4, points=(-0.7, 0.0, 0.7))))(make(3, 4)),
                                {"delta": 0.7})]),
    OpInfo("kl_div", lambda a, b: F.kl_div(a, b, reduction="batchmean"),
           lambda a, b: np.asarray((b * (np.log(b) - a)).sum() / a.shape[0]),
           lambda make: [Sample((make(3, 4), make.pos(3, 4)))]),
    OpInfo("mish", lambda x: F.mish(x), lambda x: x * np.tanh(np.log1p(np.exp(x))),
           lambda make: [Sample((make(3, 4),))]),
    OpInfo("hardswish", lambda x: F.hardswish(x), lambda x: x * np.clip(x + 3, 0, 6) / 6,
           lambda make: [Sample((make.away(3, 4, points=(-3.0, 3.0), low=-4.5, high=4.5),))]),
    OpInfo("glu", lambda x, **k: F.glu(x, **k), lambda x, dim=-1: np.split(x, 2, dim)[0] / (1 + np.exp(-np.split(x, 2, dim)[1])),
           lambda make: [Sample((make(3, 4),)), Sample((make(3, 4, 2),), {"dim": 1})]),
    OpInfo("group_norm", lambda x, g, w, b: F.group_norm(x, g, w, b), _np_group_norm,
           lambda make: [Sample((make(2, 4, 3), 2, make(4), make(4)))], atol=1e-4, rtol=1e-3),
    OpInfo("interpolate", lambda x, **k: F.interpolate(x, **k), _np_bilinear_resize,
           lambda make: [Sample((make(1, 2, 3, 4),), {"size": (5, 7), "mode": "bilinear"}),
                         Sample((make(1, 2, 3, 4),), {"size": (5, 7), "mode": "bilinear", "align_corners": True})]),
    OpInfo("pixel_shuffle", lambda x, r: F.pixel_shuffle(x, r), _np_pixel_shuffle,
           lambda make: [Sample((make(1, 8, 2, 3), 2))]),
    OpInfo("bce_with_logits", lambda x, t, **k: F.binary_cross_entropy_with_logits(x, t, **k), np_bce_with_logits,
           lambda make: [Sample((make(3, 4, low=-4, high=4), make.pos(3, 4, low=0, high=1))),
                         Sample((make(5), (make.rng.random(5) < 0.5).astype(make.dtype)), {"reduction": "sum"}),
                         Sample((make(2, 3), make.pos(2, 3, low=0, high=1)), {"weight": make.pos(3), "pos_weight": make.pos(3)}),
                         Sample((make(4, low=-50, high=50), make.pos(4, low=0, high=1)), desc="large logits", grad=False)],
           second_order=True),
    OpInfo("binary_cross_entropy", lambda p, t, **k: F.binary_cross_entropy(p, t, **k),
           lambda p, t, weight=None, reduction="mean": _reduce(
               -(t * np.log(p) + (1 - t) * np.log(1 - p)) * (1 if weight is None else weight), reduction),
           lambda make: [Sample((make.pos(3, 4, low=0.05, high=0.95), make.pos(3, 4, low=0, high=1))),
                         Sample((make.pos(5, low=0.05, high=0.95), make.pos(5, low=0, high=1)),
                                {"weight": make.pos(5), "reduction": "sum"})], second_order=True),
    OpInfo("normalize", lambda x, **k: F.normalize(x, **k),
           lambda x, p=2.0, dim=1: x / np.maximum(np.sum(np.abs(x) ** p, axis=dim, keepdims=True) ** (1 / p), 1e-12),
           lambda make: [Sample((make(3, 4),)), Sample((make(2, 3, 4),), {"dim": -1}),
                         Sample((make.nonzero(3, 4),), {"p": 1.0, "dim": 0}, desc="p=1")], second_order=True),
    OpInfo("linear", lambda x, w, *b: F.linear(x, w, *b), lambda x, w, *b: x @ w.T + (b[0] if b else 0),
           lambda make: [Sample((make(2, 3), make(4, 3), make(4))), Sample((make(2, 2, 3), make(4, 3)), desc="no bias")],
           second_order=True),
    OpInfo("layer_norm", lambda x, s, *wb: F.layer_norm(x, s, *wb), np_layer_norm,
           lambda make: [Sample((make(2, 5), (5,))), Sample((make(2, 3, 4), (3, 4), make(3, 4), make(3, 4)), desc="affine")],
           second_order=True),
    OpInfo("batch_norm", lambda x, *wb: F.batch_norm(x, None, None, *wb, training=True), np_batch_norm,
           lambda make: [Sample((make(4, 3),)), Sample((make(2, 3, 4), make(3), make(3)), desc="affine"),
                         Sample((make(2, 3, 2, 2), make(3)), desc="2-d, weight only")],
           second_order=True, notes="training statistics (no running buffers)"),
    OpInfo("scaled_dot_product_attention", lambda q, k, v, **kw: F.scaled_dot_product_attention(q, k, v, **kw),
           np_sdpa,
           lambda make: [Sample((make(2, 3, 4), make(2, 5, 4), make(2, 5, 3))),
                         Sample((make(1, 2, 4, 3), make(1, 2, 6, 3), make(1, 2, 6, 2)), {"is_causal": True},
                                desc="causal, L < S"),
                         Sample((make(2, 5, 3), make(2, 3, 3), make(2, 3, 2)), {"is_causal": True},
                                desc="causal, L > S (rows past S see all keys, top-left)"),
                         Sample((make(2, 3, 4), make(2, 4, 4), make(2, 4, 2)),
                                {"attn_mask": np.array([[True, False, True, False], [False, False, False, False],
                                                        [True, True, True, True]])},
                                desc="bool mask with a fully masked row"),
                         Sample((make(2, 2, 3, 4), make(2, 2, 5, 4), make(2, 2, 5, 4)),
                                {"attn_mask": make(2, 1, 3, 5), "scale": 0.7}, desc="float mask, broadcast heads"),
                         Sample((make(1, 4, 3, 2), make(1, 2, 3, 2), make(1, 2, 3, 2)), {"enable_gqa": True},
                                desc="grouped query heads")],
           second_order=True),
    # -- convolution and pooling --
    OpInfo("conv2d", lambda x, w, *b, **k: F.conv2d(x, w, *b, **k), np_conv2d,
           lambda make: [Sample((make(1, 2, 5, 5), make(3, 2, 3, 3), make(3))),
                         Sample((make(2, 2, 6, 5), make(2, 2, 2, 2)), {"stride": 2, "padding": 1}, desc="stride, padding"),
                         Sample((make(1, 2, 7, 6), make(2, 2, 3, 2)), {"dilation": (2, 1), "padding": (2, 0)}, desc="dilation"),
                         Sample((make(1, 4, 5, 5), make(6, 2, 3, 3), make(6)), {"groups": 2, "stride": (1, 2)}, desc="groups"),
                         Sample((make(1, 2, 4, 4), make(2, 2, 3, 3)), {"padding": "same"}, desc="same")],
           dtypes=FLOAT, second_order=True),
    OpInfo("conv1d", lambda x, w, *b, **k: F.conv1d(x, w, *b, **k), np_conv1d,
           lambda make: [Sample((make(2, 2, 7), make(3, 2, 3), make(3))),
                         Sample((make(1, 4, 9), make(4, 2, 2)), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2},
                                desc="all attrs"),
                         Sample((make(1, 2, 6), make(2, 2, 3)), {"padding": "same"}, desc="same")],
           second_order=True),
    OpInfo("max_pool2d", lambda x, *a, **k: F.max_pool2d(x, *a, **k), np_max_pool2d,
           lambda make: [Sample((make.distinct(1, 2, 4, 4), 2)),
                         Sample((make.distinct(2, 1, 5, 5), 3), {"stride": 2, "padding": 1}, desc="stride, padding"),
                         Sample((make.distinct(2, 5, 5), 2), {"stride": 1, "dilation": 2}, desc="unbatched, dilation")],
           dtypes=NUMERIC),
    OpInfo("max_pool2d_ceil", lambda x, *a, **k: F.max_pool2d(x, *a, ceil_mode=True, **k),
           lambda x, *a, **k: np_max_pool(x, *a, ceil_mode=True, **k),
           lambda make: [Sample((make.distinct(1, 2, 5, 5), 2)),
                         Sample((make.distinct(2, 1, 6, 7), 3), {"stride": 2, "padding": 1, "dilation": 2},
                                desc="stride, padding, dilation")]),
    OpInfo("max_pool2d_indices", lambda x, *a, **k: F.max_pool2d(x, *a, return_indices=True, **k)[1],
           lambda x, *a, **k: np_max_pool(x, *a, indices=True, **k),
           lambda make: [Sample((make.small_ints(2, 2, 4, 4), 2), desc="ties"),
                         Sample((make.small_ints(1, 2, 6, 5), 3), {"stride": 2, "padding": 1, "ceil_mode": True},
                                desc="ties, padding, ceil_mode"),
                         Sample((make.small_ints(2, 5, 6), (3, 2)), {"stride": 1, "dilation": (1, 2)},
                                desc="unbatched, overlapping, dilation")],
           differentiable=False),
    OpInfo("max_pool1d", lambda x, *a, **k: F.max_pool1d(x, *a, **k), lambda x, *a, **k: np_max_pool(x, *a, nd=1, **k),
           lambda make: [Sample((make.distinct(2, 3, 7), 3), {"stride": 2, "padding": 1}),
                         Sample((make.distinct(2, 8), 2), {"dilation": 2, "ceil_mode": True}, desc="unbatched")]),
    OpInfo("max_pool3d", lambda x, *a, **k: F.max_pool3d(x, *a, **k), lambda x, *a, **k: np_max_pool(x, *a, nd=3, **k),
           lambda make: [Sample((make.distinct(1, 2, 4, 5, 4), 2)),
                         Sample((make.distinct(2, 5, 4, 5), (3, 2, 3)), {"stride": 2, "padding": 1},
                                desc="unbatched, stride, padding")]),
    OpInfo("avg_pool2d", lambda x, *a, **k: F.avg_pool2d(x, *a, **k), np_avg_pool2d,
           lambda make: [Sample((make(1, 2, 4, 4), 2)), Sample((make(2, 1, 5, 5), 3), {"stride": 2, "padding": 1}),
                         Sample((make(2, 4, 6), (2, 3)), desc="unbatched, rect")]),
    OpInfo("avg_pool2d_options", lambda x, *a, **k: F.avg_pool2d(x, *a, **k), np_avg_pool2d_opts,
           lambda make: [Sample((make(1, 2, 7, 6), 3), {"stride": 2, "padding": 1, "ceil_mode": True}, desc="ceil_mode"),
                         Sample((make(2, 1, 5, 6), (3, 2)), {"stride": (2, 1), "padding": 1, "count_include_pad": False},
                                desc="count_include_pad=False"),
                         Sample((make(1, 2, 5, 5), 2), {"stride": 2, "padding": 1, "ceil_mode": True,
                                                        "divisor_override": 3}, desc="divisor_override")]),
    OpInfo("avg_pool1d", lambda x, *a, **k: F.avg_pool1d(x, *a, **k),
           lambda x, *a, **k: np_avg_pool2d_opts(x[..., None, :], (1, a[0]), **{
               kk: ((1, v) if kk in ("stride",) else (0, v) if kk == "padding" else v) for kk, v in k.items()})[..., 0, :],
           lambda make: [Sample((make(2, 3, 9), 3), {"stride": 2, "padding": 1}),
                         Sample((make(2, 7), 2), {"ceil_mode": True, "stride": 2}, desc="unbatched, ceil_mode")]),
    OpInfo("conv_transpose2d", lambda x, w, *b, **k: F.conv_transpose2d(x, w, *b, **k), np_conv_transpose2d,
           lambda make: [Sample((make(1, 2, 4, 3), make(2, 3, 3, 2), make(3))),
                         Sample((make(2, 4, 3, 3), make(4, 1, 2, 3)), {"stride": 2, "padding": 1, "output_padding": 1,
                                                                       "groups": 2}, desc="stride, groups"),
                         Sample((make(1, 2, 3, 4), make(2, 2, 2, 2)), {"stride": (2, 3), "dilation": 2,
                                                                       "output_padding": (1, 2)}, desc="dilation")],
           second_order=True),
    OpInfo("conv3d", lambda x, w, *b, **k: F.conv3d(x, w, *b, **k),
           lambda x, w, b=None, stride=1, padding=0: np_conv3d(x, w, b, stride, padding),
           lambda make: [Sample((make(1, 2, 4, 3, 4), make(3, 2, 2, 2, 3), make(3)), {"stride": (1, 2, 1), "padding": 1})],
           onnx_dtypes=("float32",), notes="ONNX: Conv (float32); the im2col form is 1-D/2-D only"),
    OpInfo("adaptive_avg_pool2d", lambda x, s: F.adaptive_avg_pool2d(x, s), np_adaptive_avg_pool2d,
           lambda make: [Sample((make(1, 2, 4, 6), (2, 3)), desc="divisible"), Sample((make(1, 1, 5, 5), (2, 3)), desc="uneven")]),
    OpInfo("unfold", lambda x, *a: dg.unfold(x, *a), np_unfold,
           lambda make: [Sample((make(1, 2, 4, 5), 2)), Sample((make(2, 1, 6, 6), 2, 2, 2), desc="stride, dilation")]),
    # -- optimizer steps --
    OpInfo("adam_update", lambda p, g, m, v, t, **k: _adam_update(p, g, m, v, t, **_ADAM_DEFAULTS, **k), np_adam_update,
           lambda make: [Sample((make(3, 4), make(3, 4), make(3, 4), make.pos(3, 4), np.array(3))),
                         Sample((make(5), make(5), make(5), make.pos(5), np.array(1)),
                                {"weight_decay": 0.1, "decoupled": False}, desc="Adam's L2 weight decay")],
           differentiable=False, notes="one Adam/AdamW step of one parameter: returns (p, m, v)"),
    # -- creation, random, dropout, devices --
    OpInfo("zeros_like", lambda x: dg.zeros_like(x), np.zeros_like, unary_samples(), dtypes=NUMERIC, differentiable=False),
    OpInfo("ones_like", lambda x: dg.ones_like(x), np.ones_like, unary_samples(), dtypes=NUMERIC, differentiable=False),
    OpInfo("full_like", lambda x, v, **k: dg.full_like(x, v, **k), lambda x, v, dtype=None: np.full_like(x, v, dtype=dtype),
           lambda make: [Sample((make(2, 3), 3)), Sample((make(2,), 1.5), {"dtype": "float64"})],
           dtypes=NUMERIC, differentiable=False),
    OpInfo("arange", lambda x: x * dg.arange(2, 2 + 3 * x.shape[-1], 3).astype(x.dtype),
           lambda x: x * np.arange(2, 2 + 3 * x.shape[-1], 3).astype(x.dtype),
           lambda make: [Sample((make(3, 4),), desc="2d"), Sample((make(5),), desc="1d"),
                         Sample((make(3, 0),), desc="empty", grad=False)],
           notes="dg.arange(start, end, step) scaling x's last axis"),
    OpInfo("rand_like", lambda x: (dg.rand_like(x) >= 0) & (dg.rand_like(x) < 1), lambda x: np.ones(x.shape, bool),
           lambda make: [Sample((make(50, 4),))], differentiable=False, random=True, notes="values in [0, 1)"),
    OpInfo("randn_like", lambda x: dg.abs(dg.mean(dg.randn_like(x))) < 0.2, lambda x: np.array(True),
           lambda make: [Sample((make(50, 40),))], differentiable=False, random=True, notes="mean ~ 0"),
    OpInfo("dropout_eval", lambda x, **k: F.dropout(x, 0.5, **k), lambda x, **k: x,
           lambda make: [Sample((make(3, 4),), {"training": False}), Sample((make(3, 4),), desc="training=None")],
           notes="inactive outside training: identity"),
    OpInfo("dropout_p0", lambda x: F.dropout(x, 0.0, training=True), lambda x: x, lambda make: [Sample((make(3, 4),))]),
    OpInfo("to_device", lambda x: dg.ops.shape.to_device_op(x, dg.device("cpu")), lambda x: x,
           lambda make: [Sample((make(2, 3),))], notes="cpu -> cpu here; the GPU path is tested where cupy exists"),
    # collectives on the one-process group "self" (the identity); tests/test_distributed.py runs them over MPI
    OpInfo("all_reduce", lambda x, op: dg.ops.collective.all_reduce_op(x, op, "self"), lambda x, op: x,
           lambda make: [Sample((make(3, 4), "sum")), Sample((make(5,), "avg"), desc="avg")], onnx=False,
           notes="group 'self' (one process); over MPI in tests/test_distributed.py; not exportable"),
    OpInfo("broadcast", lambda x: dg.ops.collective.broadcast_op(x, 0, "self"), lambda x: x,
           lambda make: [Sample((make(3, 4),))], dtypes=NUMERIC, differentiable=False, onnx=False,
           notes="group 'self' (one process); over MPI in tests/test_distributed.py; not exportable"),
    # -- more elementwise math (ops/math.py) --
    _unary("log2", dg.log2, np.log2, "pos"),
    _unary("log10", dg.log10, np.log10, "pos"),
    _unary("exp2", dg.exp2, np.exp2),
    _unary("sinh", dg.sinh, np.sinh),
    _unary("cosh", dg.cosh, np.cosh),
    _unary("asin", dg.asin, np.arcsin, gen_kw={"low": -0.9, "high": 0.9}, onnx_dtypes=("float32",),
           notes="ONNX: Asin runs in float32 only in onnxruntime"),
    _unary("acos", lambda x: x.arccos(), np.arccos, gen_kw={"low": -0.9, "high": 0.9}, onnx_dtypes=("float32",)),
    _unary("atan", dg.atan, np.arctan, onnx_dtypes=("float32",)),
    _unary("asinh", dg.asinh, np.arcsinh),
    _unary("acosh", dg.acosh, np.arccosh, "pos", gen_kw={"low": 1.2, "high": 3.0}),
    _unary("atanh", dg.atanh, np.arctanh, gen_kw={"low": -0.9, "high": 0.9}),
    _unary("erfc", dg.erfc, sp.erfc, onnx_dtypes=("float32",), notes="ONNX: 1 - Erf (float32 in onnxruntime)"),
    _unary("erfinv", dg.erfinv, sp.erfinv, gen_kw={"low": -0.9, "high": 0.9}, onnx=False,
           notes="not exportable (no ONNX op)"),
    _unary("sinc", dg.sinc, np.sinc, "away", gen_kw={"points": (0.0,)}),
    OpInfo("sinc_at_zero", dg.sinc, np.sinc, lambda make: [Sample((np.array([0.0, 0.5, -1.5, 0.0], make.dtype),))],
           notes="sinc(0) = 1, gradient 0 there"),
    _unary("signbit", dg.signbit, np.signbit, dtypes=NUMERIC, differentiable=False),
    OpInfo("nan_to_num", lambda x, **k: dg.nan_to_num(x, **k), lambda x, **k: np.nan_to_num(x, **k),
           lambda make: [Sample((_with_specials(make(3, 4)),), grad=False),
                         Sample((_with_specials(make(2, 5)),), {"nan": 1.5, "posinf": 9.0, "neginf": -9.0},
                                grad=False),
                         Sample((make(3, 4),), desc="finite")]),
    OpInfo("nan_to_num_int", lambda x: x.nan_to_num(), lambda x: x, lambda make: [Sample((make(3, 4),))],
           dtypes=INT, differentiable=False, notes="integers come back unchanged"),
    _binary("atan2", dg.atan2, np.arctan2, binary_samples(b_gen="nonzero"), onnx_dtypes=("float32",),
            notes="ONNX: Atan with the quadrant fixed by Where (float32 in onnxruntime)"),
    OpInfo("atan2_axes", lambda a, b: a.arctan2(b), np.arctan2,
           lambda make: [Sample((np.array([1.0, -1.0, 0.0, 2.0, -3.0], make.dtype),
                                 np.array([0.0, 0.0, 1.0, -1.0, -0.5], make.dtype)))],
           onnx_dtypes=("float32",), notes="the axes and the left half-plane"),
    _binary("hypot", dg.hypot, np.hypot, binary_samples(a_gen="nonzero", b_gen="nonzero")),
    _binary("fmod", dg.fmod, np.fmod, _floordiv_samples, dtypes=NUMERIC, second_order=False),
    _binary("logaddexp", dg.logaddexp, np.logaddexp, second_order=True),
    _binary("logaddexp2", lambda a, b: a.logaddexp2(b) if isinstance(a, dg.Tensor) else dg.logaddexp2(a, b),
            np.logaddexp2),
    _binary("xlogy", dg.xlogy, lambda x, y: sp.xlogy(x, y).astype(np.result_type(x, y)),
            lambda make: [Sample((make(3, 4), make.pos(3, 4))), Sample((make(2, 3, 4), make.pos(4)), desc="broadcast"),
                          Sample((np.array([0.0, 0.0, 1.5], make.dtype), np.array([0.0, 2.0, 0.5], make.dtype)),
                                 desc="x == 0", grad=False)]),
    _binary("copysign", dg.copysign, np.copysign, binary_samples(a_gen="nonzero", b_gen="nonzero", scalars=()),
            second_order=False),
    OpInfo("heaviside", dg.heaviside, lambda a, b: np.heaviside(a, b).astype(np.result_type(a, b)),
           lambda make: [Sample((make.small_ints(3, 4), make(3, 4))), Sample((make.small_ints(2, 3), make(3)),
                                                                             desc="broadcast")],
           dtypes=NUMERIC, differentiable=False),
    OpInfo("lerp", lambda a, b, w: dg.lerp(a, b, w), lambda a, b, w: a + w * (b - a),
           lambda make: [Sample((make(3, 4), make(3, 4), 0.3), desc="scalar weight"),
                         Sample((make(3, 4), make(4), make(3, 4)), desc="tensor weight")], second_order=True),
    OpInfo("frac", dg.frac, lambda x: x - np.trunc(x),
           lambda make: [Sample((make.away(3, 4, points=(-2, -1, 0, 1, 2)),))]),
    OpInfo("deg2rad", dg.deg2rad, np.deg2rad, lambda make: [Sample((make(3, 4),))]),
    OpInfo("rad2deg", lambda x: x.rad2deg(), np.rad2deg, lambda make: [Sample((make(3, 4),))]),
    OpInfo("clamp_min", lambda x, v: dg.clamp_min(x, v), np.maximum,
           lambda make: [Sample((make.away(3, 4, points=(0.2,)), 0.2))]),
    OpInfo("clamp_max", lambda x, v: x.clamp_max(v), np.minimum,
           lambda make: [Sample((make.away(3, 4, points=(-0.2,)), -0.2))]),
    OpInfo("exp_inplace", lambda x: x.clone().exp_(), np.exp, lambda make: [Sample((make(3, 4),))],
           notes="in-place forms are made by one rule from the out-of-place op"),
    OpInfo("lerp_inplace", lambda a, b: a.clone().lerp_(b, 0.25), lambda a, b: a + 0.25 * (b - a),
           lambda make: [Sample((make(3, 4), make(3, 4)))]),
    # -- comparisons, sets, statistics, matrix helpers (ops/stats.py) --
    OpInfo("isclose", lambda a, b, **k: dg.isclose(a, b, **k), lambda a, b, **k: np.isclose(a, b, **k),
           lambda make: [Sample((_close_pair(make)[0], _close_pair(make)[1])),
                         Sample(_close_pair(make), {"rtol": 0.0, "atol": 0.2}),
                         Sample(_close_pair(make, nan=True), {"equal_nan": True}, desc="NaN and inf")],
           differentiable=False),
    OpInfo("unique", lambda x, **k: dg.unique(x, **k),
           lambda x, **k: _np_unique(x, **k),
           lambda make: [Sample((make.small_ints(3, 5),), {"return_inverse": True, "return_counts": True}),
                         Sample((make.small_ints(7),)),
                         Sample((make.small_ints(4, 3, low=0, high=1),), {"dim": 0, "return_counts": True},
                                desc="rows")],
           dtypes=NUMERIC, differentiable=False, notes="value-sized output: eager only"),
    OpInfo("unique_consecutive", lambda x, **k: dg.unique_consecutive(x, **k), _np_unique_consecutive,
           lambda make: [Sample((np.array([1, 1, 2, 2, 3, 1, 1, 2], make.dtype),),
                                {"return_inverse": True, "return_counts": True})],
           dtypes=NUMERIC, differentiable=False, notes="value-sized output: eager only"),
    OpInfo("bincount", lambda x, *w, **k: dg.bincount(x, *w, **k),
           lambda x, w=None, minlength=0: np.bincount(x, w, minlength).astype(np.int64 if w is None else w.dtype),
           lambda make: [Sample((make.index((9,), 5),)), Sample((make.index((6,), 3), make.f64(6)), desc="weights"),
                         Sample((make.index((4,), 3),), {"minlength": 6}, desc="minlength")],
           dtypes=("int64",), differentiable=False, notes="value-sized output: eager only"),
    OpInfo("histc", lambda x, **k: dg.histc(x, **k), _np_histc,
           lambda make: [Sample((make(20),), {"bins": 4, "min": -1, "max": 1}), Sample((make(3, 5),), {"bins": 5},
                                                                                    desc="data range")],
           differentiable=False, onnx=False, notes="not exportable (no ONNX histogram)"),
    OpInfo("searchsorted", lambda s, v, **k: dg.searchsorted(s, v, **k),
           lambda s, v, right=False: np.searchsorted(s, v, side="right" if right else "left"),
           lambda make: [Sample((np.sort(make.small_ints(6)), make.small_ints(3, 4))),
                         Sample((np.sort(make.small_ints(6)), make.small_ints(5)), {"right": True}, desc="right")],
           dtypes=NUMERIC, differentiable=False),
    OpInfo("searchsorted_nd", lambda s, v: dg.searchsorted(s, v), _np_searchsorted_nd,
           lambda make: [Sample((np.sort(make.small_ints(2, 5), axis=-1), make.small_ints(2, 3)))],
           dtypes=NUMERIC, differentiable=False),
    OpInfo("bucketize", lambda x, b, **k: dg.bucketize(x, b, **k),
           lambda x, b, right=False: np.searchsorted(b, x, side="right" if right else "left"),
           lambda make: [Sample((make(3, 4), np.array([-1.0, 0.0, 0.5, 1.0], make.dtype))),
                         Sample((make.small_ints(5), np.array([-1, 0, 1], make.dtype)), {"right": True})],
           dtypes=FLOAT + ("int64",), differentiable=False),
    OpInfo("count_nonzero", lambda x, **k: dg.count_nonzero(x, **k), lambda x, dim=None: np.asarray(
        np.count_nonzero(x, axis=dim), np.int64),
           lambda make: [Sample((make.small_ints(3, 4),)), Sample((make.small_ints(3, 4),), {"dim": 1})],
           dtypes=NUMERIC, differentiable=False),
    OpInfo("diff", lambda x, **k: dg.diff(x, **k), lambda x, **k: np.diff(x, **_np_axis(k)),
           lambda make: [Sample((make(3, 5),)), Sample((make(4, 3),), {"n": 2, "dim": 0}),
                         Sample((make(2, 4),), {"prepend": make(2, 1), "append": make(2, 2)}, desc="prepend/append")],
           dtypes=NUMERIC),
    OpInfo("meshgrid", lambda a, b: dg.meshgrid(a, b, indexing="ij"), lambda a, b: np.meshgrid(a, b, indexing="ij"),
           lambda make: [Sample((make(3), make(4)))]),
    OpInfo("meshgrid_xy", lambda a, b, c: dg.meshgrid(a, b, c, indexing="xy"),
           lambda a, b, c: np.meshgrid(a, b, c, indexing="xy"), lambda make: [Sample((make(3), make(2), make(4)))]),
    OpInfo("cartesian_prod", lambda a, b: dg.cartesian_prod(a, b),
           lambda a, b: np.stack([g.reshape(-1) for g in np.meshgrid(a, b, indexing="ij")], 1),
           lambda make: [Sample((make(3), make(2)))], dtypes=NUMERIC),
    OpInfo("var_mean", lambda x, **k: dg.var_mean(x, **k),
           lambda x, dim=None, keepdim=False, correction=1: (np.var(x, axis=dim, ddof=correction, keepdims=keepdim),
                                                            np.mean(x, axis=dim, keepdims=keepdim)),
           lambda make: [Sample((make(3, 5),)), Sample((make(3, 5),), {"dim": 1, "keepdim": True, "correction": 0})],
           second_order=True),
    OpInfo("std_mean", lambda x, **k: dg.std_mean(x, **k),
           lambda x, dim=None: (np.std(x, axis=dim, ddof=1), np.mean(x, axis=dim)),
           lambda make: [Sample((make(3, 5),)), Sample((make(4, 3),), {"dim": 0})]),
    OpInfo("cov", lambda x, **k: dg.cov(x, **k),
           lambda x, correction=1, **k: np.cov(x, ddof=correction, **k).astype(x.dtype),
           lambda make: [Sample((make(3, 6),)), Sample((make(2, 5),), {"correction": 0}),
                         Sample((make(2, 5),), {"fweights": np.array([1, 2, 1, 3, 1]),
                                                "aweights": make.pos(5)}, desc="weights")]),
    OpInfo("corrcoef", dg.corrcoef, lambda x: np.corrcoef(x).astype(x.dtype), lambda make: [Sample((make(3, 6),))]),
    OpInfo("aminmax", lambda x, **k: tuple(dg.aminmax(x, **k)),
           lambda x, dim=None, keepdim=False: (np.amin(x, axis=dim, keepdims=keepdim), np.amax(x, axis=dim, keepdims=keepdim)),
           lambda make: [Sample((make.distinct(3, 4),)), Sample((make.distinct(3, 4),), {"dim": 1, "keepdim": True})],
           dtypes=NUMERIC),
    OpInfo("nansum", lambda x, **k: dg.nansum(x, **k), lambda x, dim=None: np.asarray(np.nansum(x, axis=dim)),
           lambda make: [Sample((_with_nans(make(3, 4)),)), Sample((_with_nans(make(3, 4)),), {"dim": 0})]),
    OpInfo("nanmean", lambda x, **k: x.nanmean(**k), lambda x, dim=None: np.asarray(np.nanmean(x, axis=dim)),
           lambda make: [Sample((_with_nans(make(3, 4)),)), Sample((_with_nans(make(3, 4)),), {"dim": 1})]),
    OpInfo("logcumsumexp", lambda x, d: dg.logcumsumexp(x, d), lambda x, d: np.logaddexp.accumulate(x, axis=d),
           lambda make: [Sample((make(3, 5), 1)), Sample((make(4, 3) * 40, 0), desc="large")],
           second_order=True, onnx_dtypes=("float64",),
           notes="ONNX: shifted by the max along the axis (float64 here: float32's range is narrower)"),
    OpInfo("trapezoid", lambda y, *x, **k: dg.trapezoid(y, *x, **k), lambda y, *x, **k: np.trapezoid(
        y, *x, **_np_axis(k)) if hasattr(np, "trapezoid") else np.trapz(y, *x, **_np_axis(k)),
           lambda make: [Sample((make(3, 5),)), Sample((make(3, 5), np.cumsum(make.pos(5)))),
                         Sample((make(4, 3),), {"dx": 0.5, "dim": 0})]),
    OpInfo("cumulative_trapezoid", lambda y, **k: dg.cumulative_trapezoid(y, **k),
           lambda y, dx=1.0: np.cumsum((y[..., 1:] + y[..., :-1]) * 0.5 * dx, axis=-1),
           lambda make: [Sample((make(3, 5),)), Sample((make(3, 5),), {"dx": 0.5})]),
    OpInfo("addmv", lambda i, m, v, **k: dg.addmv(i, m, v, **k), lambda i, m, v, beta=1, alpha=1: beta * i + alpha * (m @ v),
           lambda make: [Sample((make(3), make(3, 4), make(4))), Sample((make(3), make(3, 4), make(4)),
                                                                      {"beta": 0.5, "alpha": 2.0})]),
    OpInfo("addbmm", lambda i, a, b, **k: dg.addbmm(i, a, b, **k),
           lambda i, a, b, beta=1, alpha=1: beta * i + alpha * (a @ b).sum(0),
           lambda make: [Sample((make(3, 2), make(4, 3, 5), make(4, 5, 2))),
                         Sample((make(2), make(2, 3, 4), make(2, 4, 2)), {"beta": 0.0}, desc="beta=0")]),
    OpInfo("cdist", lambda a, b, **k: dg.cdist(a, b, **k), _np_cdist,
           lambda make: [Sample((make(4, 3), make(5, 3))), Sample((make(2, 4, 3), make(2, 5, 3)), {"p": 1.0}),
                         Sample((make(4, 3), make(5, 3)), {"p": float("inf")}, grad=False),
                         Sample((make(3, 2), make(4, 2)), {"p": 3.0})]),
    OpInfo("rot90", lambda x, *a: dg.rot90(x, *a), lambda x, k=1, dims=(0, 1): np.rot90(x, k, dims),
           lambda make: [Sample((make(3, 4),)), Sample((make(2, 3, 4), 2, (1, 2))), Sample((make(3, 4), -1)),
                         Sample((make(3, 4), 3, (1, 0)))], dtypes=NUMERIC),
    OpInfo("fliplr", dg.fliplr, np.fliplr, lambda make: [Sample((make(3, 4),))], dtypes=NUMERIC),
    OpInfo("flipud", lambda x: x.flipud(), np.flipud, lambda make: [Sample((make(3, 4),))], dtypes=NUMERIC),
    OpInfo("vander", lambda x, **k: dg.vander(x, **k), lambda x, **k: np.vander(x, **k).astype(x.dtype),
           lambda make: [Sample((make(4),)), Sample((make(3),), {"N": 5, "increasing": True})]),
    OpInfo("cosine_similarity", lambda a, b, **k: F.cosine_similarity(a, b, **k), _np_cosine_similarity,
           lambda make: [Sample((make(4, 5), make(4, 5))), Sample((make(3, 4), make(4)), {"dim": -1}, desc="broadcast")],
           second_order=True),
    OpInfo("pairwise_distance", lambda a, b, **k: F.pairwise_distance(a, b, **k),
           lambda a, b, p=2.0, eps=1e-6: np.linalg.norm(a - b + eps, ord=p, axis=-1),
           lambda make: [Sample((make(4, 5), make(4, 5))), Sample((make(3, 4), make(3, 4)), {"p": 1.0})]),
    # -- tensor utilities (ops/tensor_ops.py) --
    OpInfo("select", lambda x, d, i: dg.select(x, d, i), lambda x, d, i: np.take(x, i, axis=d),
           lambda make: [Sample((make(3, 4), 1, 2)), Sample((make(2, 3, 4), 0, -1))], dtypes=NUMERIC),
    OpInfo("unfold_window", lambda x, d, s, st: x.unfold(d, s, st), _np_unfold_window,
           lambda make: [Sample((make(10), 0, 3, 2)), Sample((make(2, 7, 3), 1, 2, 3)), Sample((make(4, 5), -1, 5, 1))],
           dtypes=NUMERIC, notes="Tensor.unfold: PyTorch's sliding window (F.unfold is im2col)"),
    OpInfo("index_copy", lambda x, d, i, s: dg.index_copy(x, d, i, s), _np_index_copy,
           lambda make: [Sample((make(4, 3), 0, np.array([2, 0]), make(2, 3))),
                         Sample((make(2, 5), 1, np.array([4, 1, 3]), make(2, 3)))], dtypes=NUMERIC),
    OpInfo("masked_scatter", lambda x, m, s: dg.masked_scatter(x, m, s), _np_masked_scatter,
           lambda make: [Sample((make(3, 4), make.bool(3, 4), make(12))),
                         Sample((make(2, 3, 4), make.bool(3, 1), make(5, 6)), desc="broadcast mask")], dtypes=NUMERIC),
    OpInfo("sum_to_size", lambda x, *s: x.sum_to_size(*s), lambda x, *s: _np_sum_to(x, s),
           lambda make: [Sample((make(2, 3, 4), 3, 1)), Sample((make(3, 4), 1, 4))], dtypes=NUMERIC),
    OpInfo("isinf", lambda x: dg.isinf(x), np.isinf, lambda make: [Sample((_with_specials(make(3, 4))
                                                                           if make.is_float else make(3, 4),)),
                                                                  Sample((make(3, 4),))],
           dtypes=NUMERIC, differentiable=False),
    OpInfo("isposinf", lambda x: x.isposinf(), np.isposinf, lambda make: [Sample((_with_specials(make(3, 4)),))],
           differentiable=False),
    OpInfo("isneginf", dg.isneginf, np.isneginf, lambda make: [Sample((_with_specials(make(3, 4)),))],
           differentiable=False),
    OpInfo("addcmul", lambda i, a, b, **k: dg.addcmul(i, a, b, **k), lambda i, a, b, value=1: i + value * a * b,
           lambda make: [Sample((make(3, 4), make(3, 4), make(4))), Sample((make(3, 4), make(3, 4), make(3, 4)),
                                                                          {"value": 0.5})], second_order=True),
    OpInfo("addcdiv", lambda i, a, b, **k: i.addcdiv(a, b, **k), lambda i, a, b, value=1: i + value * a / b,
           lambda make: [Sample((make(3, 4), make(3, 4), make.nonzero(3, 4)), {"value": -2.0})], second_order=True),
    _binary("fmax", dg.fmax, np.fmax, _minmax_pair),
    _binary("fmin", dg.fmin, np.fmin, _minmax_pair),
    OpInfo("fmax_nan", dg.fmax, np.fmax, lambda make: [Sample((_with_nans(make(3, 4)), _with_nans(make(4))))],
           differentiable=False, notes="NaN only where both are"),
    OpInfo("logit", lambda x, *e: dg.logit(x, *e), lambda x, eps=None: np.log(
        np.clip(x, eps, 1 - eps) / (1 - np.clip(x, eps, 1 - eps))) if eps else np.log(x / (1 - x)),
           lambda make: [Sample((make(3, 4, low=0.1, high=0.9),)), Sample((make(5, low=0.2, high=0.8), 0.25),
                                                                          desc="eps", grad=False)],
           second_order=True),
    OpInfo("dist", lambda a, b, *p: dg.dist(a, b, *p), lambda a, b, p=2: np.asarray(
        np.linalg.norm((a - b).reshape(-1), ord=p), a.dtype),
           lambda make: [Sample((make(3, 4), make(3, 4))), Sample((make(3, 4), make(4), 1), desc="p=1, broadcast")]),
    OpInfo("take_along_dim", lambda x, i, *d: dg.take_along_dim(x, i, *d),
           _np_take_along_dim,
           lambda make: [Sample((make(3, 4), make.index((3, 2), 4), 1)), Sample((make(3, 4), make.index((5,), 12))),
                         Sample((make(3, 4), make.index((1, 2), 4), 1), desc="broadcast")], dtypes=NUMERIC),
    OpInfo("diagflat", lambda x, *o: dg.diagflat(x, *o), lambda x, o=0: np.diagflat(x, o),
           lambda make: [Sample((make(2, 2),)), Sample((make(3), -1))], dtypes=NUMERIC),
    _unary("lgamma", dg.lgamma, sp.gammaln, "pos", gen_kw={"low": 0.3, "high": 4.0}, onnx=False,
           notes="not exportable (no ONNX op)"),
    _unary("digamma", dg.digamma, sp.psi, "pos", gen_kw={"low": 0.3, "high": 4.0}, onnx=False,
           notes="not exportable (no ONNX op)"),
    OpInfo("polygamma", lambda n, x: dg.polygamma(n, x), lambda n, x: sp.polygamma(n, x).astype(x.dtype),
           lambda make: [Sample((1, make.pos(3, 4, low=0.5, high=3.0))), Sample((2, make.pos(5, low=0.5, high=3.0)))],
           second_order=True, onnx=False, notes="not exportable (no ONNX op)"),
    OpInfo("quantile", lambda x, q, **k: dg.quantile(x, q, **k), _np_quantile,
           lambda make: [Sample((make.distinct(3, 5), 0.3)), Sample((make.distinct(4, 3), 0.75), {"dim": 0}),
                         Sample((make.distinct(2, 5), 0.5), {"dim": 1, "keepdim": True, "interpolation": "midpoint"}),
                         Sample((make.distinct(6,), 0.6), {"interpolation": "nearest"}),
                         Sample((make.distinct(6,), 0.6), {"interpolation": "lower"}),
                         Sample((make.distinct(6,), 0.6), {"interpolation": "higher"})]),
]

OPS = {row.name: row for row in OP_DB}
assert len(OPS) == len(OP_DB), "row names must be unique"

# Primitives whose vjp is deliberately None (not differentiable). A new primitive with vjp=None must be
# listed here on purpose; test_op_registry.py checks this set against the registry.
NON_DIFFERENTIABLE = {
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not", "isnan",
    "isfinite", "bitwise_and", "bitwise_or", "bitwise_xor", "invert", "argmax", "argmin", "all", "any",
    "nonzero", "full_like", "uniform_like", "normal_like", "count", "max_pool_indices", "arange",
    "sort_indices", "cum_extreme_indices", "multinomial", "repeat_index", "mode_index", "broadcast",
    "signbit", "heaviside", "unique", "bincount", "histc", "searchsorted", "adam_update",
}
# kernel ops (fused_elementwise, where_zero, log_softmax_nll, ...): made by the fuse and lower_kernels
# passes after autodiff has run, never called eagerly
KERNEL_OPS = {v.name for v in vars(_kernel_ops).values() if isinstance(v, _Op)}
NON_DIFFERENTIABLE |= KERNEL_OPS


def graph_only(op):
    """Ops that carry subgraphs (cond, while_loop, fused kernels) exist only inside traced graphs:
    eagerly dg.cond/dg.while_loop run Python. Kernel ops exist only in optimized graphs. The tracing
    and kernel suites cover them, not an eager row."""
    return bool(op.extra.get("subgraphs")) or op.name in KERNEL_OPS


# ---- which primitives a row exercises ----------------------------------------------------------------

def _fast_path_methods():
    """Tensor operator methods that compute without `apply` or `op.forward` (the binary-operator fast
    path calls the CPU ufunc directly): {attribute name: (op, reflected)}, found from their closures."""
    from dualgraph.ops import Op
    found = {}
    for name, fn in vars(dg.Tensor).items():
        code, closure = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
        if code is None or not closure:
            continue
        cells = dict(zip(code.co_freevars, (c.cell_contents for c in closure)))
        if isinstance(cells.get("op"), Op) and "reflected" in cells:
            found[name] = (cells["op"], bool(cells["reflected"]))
    return found


def record_primitives(fn):
    """Run fn() while recording every primitive forward call as (op, input arrays, attrs, output).

    Wraps each registry Op's forward (the one place every mode runs), so calls made by vjps and by
    ops that bypass `apply` are seen too; operator fast paths are routed through `apply` meanwhile."""
    from dualgraph.ops import REGISTRY
    from dualgraph.dispatch import apply
    calls = []
    saved = {}
    for op in REGISTRY.values():
        saved[op] = op.forward

        def wrapped(xp, *arrays, __op=op, __f=op.forward, **attrs):
            out = __f(xp, *arrays, **attrs)
            calls.append((__op, arrays, dict(attrs), out))
            return out
        op.forward = wrapped
    fast = _fast_path_methods()
    saved_methods = {name: vars(dg.Tensor)[name] for name in fast}
    for name, (op, reflected) in fast.items():
        setattr(dg.Tensor, name, (lambda op, r: lambda a, b: apply(op, (b, a) if r else (a, b)))(op, reflected))
    try:
        fn()
    finally:
        for op, f in saved.items():
            op.forward = f
        for name, m in saved_methods.items():
            setattr(dg.Tensor, name, m)
    return calls


def exercise(row, dtypes=None, backward=True):
    """Run every sample of `row` forward, and for differentiable rows backward and (second_order) twice."""
    for dtype in dtypes or row.dtypes:
        for s in row.sample_inputs(dtype):
            grad = backward and row.differentiable and s.grad and np.dtype(dtype).kind == "f"
            args, kwargs = to_dg(s, requires_grad=grad, share=False)
            out = row.op(*args, **kwargs)
            outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if o.requires_grad]
            wrt = [a for a in args if isinstance(a, dg.Tensor) and a.requires_grad]
            if not (grad and outs and wrt):
                continue
            total = sum(dg.sum(o * o) for o in outs)
            gs = dg.autograd.grad(total, wrt, create_graph=row.second_order, allow_unused=True)
            if row.second_order:
                gsum = [dg.sum(g * g) for g in gs if g is not None and g.requires_grad]
                if gsum:
                    dg.autograd.grad(sum(gsum), wrt, allow_unused=True)


@dataclass
class Coverage:
    forward: set      # primitives the row's forward runs
    all: set          # ... plus those its backward (and double backward) run
    calls: list       # (op, input arrays, attrs, output) of every primitive call


def coverage(rows=None):
    """{row name: Coverage}: which primitives each row exercises, found by running its samples."""
    result = {}
    for row in rows or OP_DB:
        fwd = record_primitives(lambda: exercise(row, backward=False))
        every = record_primitives(lambda: exercise(row))
        result[row.name] = Coverage({op.name for op, *_ in fwd}, {op.name for op, *_ in every}, every)
    return result
