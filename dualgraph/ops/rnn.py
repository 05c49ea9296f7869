"""One layer and one direction of an LSTM, GRU or Elman RNN over a whole sequence, as one primitive each,
with its backward (backpropagation through time) as another.

Written as a composite (per time step a matmul, a chunk into gates and a handful of elementwise ops)
an LSTM of 64 steps is ~1000 graph nodes forward and as many backward, each a numpy call of a few
microseconds on the small (batch, 4*hidden) gate arrays. As a primitive:
  forward   the input projection of every step is one matmul (T*B, I) x (I, G*H); then one
            h @ W_hh matmul per step with the gate nonlinearities done in place on one buffer (the
            sigmoid gates as 0.5 * tanh(x / 2) + 0.5, the 0.5 folded into their weight rows once, so
            one tanh covers every gate; on numpy one C loop per step, dualgraph.kernels.rnn). LSTM and
            GRU also output the activated gates (and LSTM the cell states) of every step (WORK below),
            as cuDNN keeps its reserve space, so the backward recomputes nothing;
  backward  one dgates @ W_hh matmul per step going back, and the weight, bias and input gradients
            as one matmul each over all steps at the end.
The layout and gate order are PyTorch's (weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh;
LSTM gates i, f, g, o; GRU gates r, z, n with n = tanh(W_in x + b_in + r * (W_hn h + b_hn))). A reverse
layer runs from the last step to the first; its outputs stay aligned with the input's time steps.
ONNX: LSTM / GRU (linear_before_reset=1, PyTorch's n gate) / RNN with the gate rows permuted to ONNX's
orders (iofc, zrh); onnxruntime has those kernels for float32 only, so other dtypes, LSTM's projection
(proj_size) and the backward lower to an ONNX Loop over the time steps. The kept gates are recomputed in
ONNX from the outputs (all steps at once: h_{t-1} is the output of step t-1) only where a gradient
graph reads them.
"""
import numpy as np

from ..dispatch import apply
from ..errors import AutogradError, DTypeError, ShapeError
from ..graph.avals import Aval, Dim
from ..kernels.native import address
from ..kernels.rnn import RNN_LOOPS
from .onnx_rules import INT64_MIN
from .registry import defop

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# the forward's extra outputs, kept for the backward (their last axis in units of hidden_size): LSTM the
# activated gates i, f, g, o and the cell states; GRU the gates r, z, n and W_hn h + b_hn; the Elman RNN
# needs only its outputs. In processing order (a reverse layer's first entry is its last time step).
WORK = {"lstm": (4, 1), "gru": (3, 1), "rnn": ()}


# ---- forward -------------------------------------------------------------------------------------

def _loops(xp, *arrays):
    """The C step loops (dualgraph.kernels.rnn) when they apply: numpy, C-contiguous arrays of one float
    dtype, a C compiler; else None and the numpy path runs."""
    if xp is not np or any(type(a) is not np.ndarray or not a.flags.c_contiguous for a in arrays):
        return None
    dt = arrays[0].dtype
    if any(a.dtype != dt for a in arrays):
        return None
    return RNN_LOOPS(dt)


def _at(a, offset=0):
    """The address of a C-contiguous array's data, `offset` elements in."""
    return address(a) + offset * a.itemsize


def _sigmoid_scale(xp, n_gates, sig, H, dtype):
    """Per gate row: 0.5 where the gate is a sigmoid (computed as 0.5 * tanh(x / 2) + 0.5), else 1."""
    s = xp.ones((n_gates, H), dtype)
    s[list(sig)] = 0.5
    return s.reshape(-1)


def _time_major(xp, x, reverse):
    return x[::-1] if reverse else x


def _projected(xp, x, w, b):
    """x (T, B, I) @ w.T + b for every step at once: (T, B, G*H)."""
    T, B, I = x.shape
    out = xp.matmul(x.reshape(T * B, I), w.T).reshape(T, B, w.shape[0])
    out += b
    return out


def _lstm_forward(xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None, reverse=False):
    """With w_hr (P, H) (PyTorch's proj_size) the state h is projected, h = (o * tanh(c)) @ w_hr.T."""
    T, B = x.shape[:2]
    H = w_ih.shape[0] // 4
    dt = x.dtype
    s = _sigmoid_scale(xp, 4, (0, 1, 3), H, dt)
    pre = _projected(xp, _time_major(xp, x, reverse), w_ih * s[:, None], (b_ih + b_hh) * s)
    wh = xp.ascontiguousarray((w_hh * s[:, None]).T)
    a, b = s, xp.where(s == 0.5, 0.5, 0).astype(dt)      # sigmoid rows: 0.5 * t + 0.5; g rows: t
    y = xp.empty((T, B, h0.shape[1]), dt)
    gates = xp.empty((T, B, 4 * H), dt)                   # kept for the backward, in processing order
    cs = xp.empty((T, B, H), dt)
    h, c = h0, c0
    tmp = xp.empty((B, H), dt)
    raw = xp.empty((B, H), dt) if w_hr is not None else None
    w_hr_t = xp.ascontiguousarray(w_hr.T) if w_hr is not None else None
    c = xp.ascontiguousarray(c0, dtype=dt)
    fns = _loops(xp, pre, gates, c) if T else None
    if fns is not None:
        step = fns["lstm_step"]
        for t in range(T):
            g = gates[t]
            xp.matmul(h, wh, out=g)
            out = y[t] if w_hr is None else raw
            step(B, H, _at(pre[t]), _at(g), _at(c), _at(cs[t]), _at(out))
            c = cs[t]
            if w_hr is not None:
                xp.matmul(raw, w_hr_t, out=y[t])
            h = y[t]
    for t in range(T if fns is None else 0):
        g = gates[t]
        xp.matmul(h, wh, out=g)
        g += pre[t]
        xp.tanh(g, out=g)
        g *= a
        g += b
        xp.multiply(g[:, H:2 * H], c, out=cs[t])
        c = cs[t]
        xp.multiply(g[:, :H], g[:, 2 * H:3 * H], out=tmp)
        c += tmp
        h = y[t]
        if w_hr is None:
            xp.tanh(c, out=h)
            h *= g[:, 3 * H:]
        else:
            xp.tanh(c, out=raw)
            raw *= g[:, 3 * H:]
            xp.matmul(raw, w_hr_t, out=h)
    h_n, c_n = xp.array(h, dtype=dt, copy=True), xp.array(c, dtype=dt, copy=True)
    return (xp.ascontiguousarray(y[::-1]) if reverse else y), h_n, c_n, gates, cs


def _gru_forward(xp, x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False):
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    dt = x.dtype
    s = _sigmoid_scale(xp, 3, (0, 1), H, dt)
    bias = b_ih * s
    bias[:2 * H] += b_hh[:2 * H] * 0.5               # r and z add both biases; n keeps b_hn inside r * (.)
    pre = _projected(xp, _time_major(xp, x, reverse), w_ih * s[:, None], bias)
    wh = xp.ascontiguousarray((w_hh * s[:, None]).T)
    b_hn = b_hh[2 * H:]
    y = xp.empty((T, B, H), dt)
    gates = xp.empty((T, B, 3 * H), dt)               # r, z, n, kept for the backward (processing order)
    hn = xp.empty((T, B, H), dt)                      # W_hn h + b_hn, likewise
    h = h0
    fns = _loops(xp, pre, gates, xp.ascontiguousarray(h0)) if T else None
    if fns is not None:
        step, b_hn, h = fns["gru_step"], xp.ascontiguousarray(b_hn), xp.ascontiguousarray(h0)
        for t in range(T):
            xp.matmul(h, wh, out=gates[t])
            step(B, H, _at(pre[t]), _at(gates[t]), _at(b_hn), _at(h), _at(hn[t]), _at(y[t]))
            h = y[t]
    for t in range(T if fns is None else 0):
        hw = gates[t]
        xp.matmul(h, wh, out=hw)
        rz = hw[:, :2 * H]
        rz += pre[t, :, :2 * H]
        xp.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5
        n = hw[:, 2 * H:]
        xp.add(n, b_hn, out=hn[t])
        xp.multiply(hn[t], rz[:, :H], out=n)
        n += pre[t, :, 2 * H:]
        xp.tanh(n, out=n)
        out = y[t]
        xp.subtract(h, n, out=out)
        out *= rz[:, H:]
        out += n                                      # h' = n + z * (h - n) = (1 - z) * n + z * h
        h = out
    h_n = xp.array(h, dtype=dt, copy=True)
    return (xp.ascontiguousarray(y[::-1]) if reverse else y), h_n, gates, hn


def _rnn_forward(xp, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False):
    T, B = x.shape[:2]
    H = w_hh.shape[1]
    pre = _projected(xp, _time_major(xp, x, reverse), w_ih, b_ih + b_hh)
    wh = xp.ascontiguousarray(w_hh.T)
    y = xp.empty((T, B, H), x.dtype)
    h = h0
    for t in range(T):
        out = y[t]
        xp.matmul(h, wh, out=out)
        out += pre[t]
        if nonlinearity == "tanh":
            xp.tanh(out, out=out)
        else:
            xp.maximum(out, 0, out=out)
        h = out
    h_n = xp.array(h, copy=True)
    return (xp.ascontiguousarray(y[::-1]) if reverse else y), h_n


# ---- backward through time -------------------------------------------------------------------------

def _previous(xp, first, seq):
    """(T, B, H): the state each step starts from (first, then the outputs of the steps before)."""
    return xp.concatenate([first[None].astype(seq.dtype), seq[:-1]], axis=0)


def _weight_grads(xp, d, x, hp):
    """dW_ih, dW_hh and the input gradient from the per-step gate gradients d (T, B, G): one matmul each."""
    T, B = x.shape[:2]
    d2 = d.reshape(T * B, -1)
    return d2.T @ x.reshape(T * B, -1), d2.T @ hp.reshape(T * B, -1)


def _lstm_grad_forward(xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, y, gates, C, gy, gh, gc, reverse=False):
    return _lstm_grad(xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, y, gates, C, gy, gh, gc, reverse)


def _lstm_proj_grad_forward(xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, C, gy, gh, gc, reverse=False):
    return _lstm_grad(xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, C, gy, gh, gc, reverse)


def _lstm_grad(xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, C, gy, gh, gc, reverse):
    T, B, I = x.shape
    H = gates.shape[-1] // 4
    dt = x.dtype
    x, y, gy = (xp.ascontiguousarray(_time_major(xp, v, reverse)) for v in (x, y, gy))
    hp = _previous(xp, h0, y)
    i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
    d = xp.empty((T, B, 4 * H), dt)
    dh = xp.array(gh, dtype=dt, copy=True)
    dc = xp.array(gc, dtype=dt, copy=True)
    DH = xp.empty((T,) + dh.shape, dt) if w_hr is not None else None   # the projected states' gradients
    c_first = xp.ascontiguousarray(c0, dtype=dt)
    fns = _loops(xp, gy, gates, C, c_first, dc, d) if T else None
    if fns is not None:   # the gate derivatives computed inside the step loop, from the gates and c
        back = fns["lstm_back_step"]
        for t in range(T - 1, -1, -1):
            c_prev = C[t - 1] if t else c_first
            if w_hr is not None:
                dh += gy[t]
                DH[t] = dh
                dr = xp.ascontiguousarray(dh @ w_hr)   # through the projection: the gradient of o * tanh(c)
                back(B, H, None, _at(gates[t]), _at(C[t]), _at(c_prev), _at(dr), _at(dc), _at(d[t]))
            else:
                dh = xp.ascontiguousarray(dh)
                back(B, H, _at(gy[t]), _at(gates[t]), _at(C[t]), _at(c_prev), _at(dh), _at(dc), _at(d[t]))
            dh = d[t] @ w_hh
    else:
        cp = _previous(xp, c0, C)
        tc = xp.tanh(C)
        A = xp.empty((T, B, 4 * H), dt)              # d pre-activation = A * (dc for i, f, g; dh for o)
        A[..., :H] = g * i * (1 - i)
        A[..., H:2 * H] = cp * f * (1 - f)
        A[..., 2 * H:3 * H] = i * (1 - g * g)
        A[..., 3 * H:] = tc * o * (1 - o)
        K = o * (1 - tc * tc)                         # dc += dh * K
        A4, d4 = A.reshape(T, B, 4, H), d.reshape(T, B, 4, H)
        tmp = xp.empty((B, H), dt)
        for t in range(T - 1, -1, -1):
            dh += gy[t]
            if w_hr is not None:
                DH[t] = dh
                dh = dh @ w_hr
            xp.multiply(dh, K[t], out=tmp)
            dc += tmp
            xp.multiply(dc[:, None, :], A4[t, :, :3], out=d4[t, :, :3])
            xp.multiply(dh, A4[t, :, 3], out=d4[t, :, 3])
            dc *= f[t]
            dh = d[t] @ w_hh
    dw_ih, dw_hh = _weight_grads(xp, d, x, hp)
    db = d.reshape(T * B, -1).sum(axis=0)
    dx = xp.matmul(d.reshape(T * B, 4 * H), w_ih).reshape(T, B, I)
    dx = xp.ascontiguousarray(dx[::-1]) if reverse else dx
    out = (dx, dh.astype(dt, copy=False), dc, dw_ih, dw_hh, db, xp.array(db, copy=True))
    if w_hr is None:
        return out
    raw = (o * xp.tanh(C)).reshape(T * B, H)
    return out + (DH.reshape(T * B, -1).T @ raw,)


def _gru_grad_forward(xp, x, h0, w_ih, w_hh, b_ih, b_hh, y, gates, hwn, gy, gh, reverse=False):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    x, y, gy = (xp.ascontiguousarray(_time_major(xp, v, reverse)) for v in (x, y, gy))
    hp = _previous(xp, h0, y)
    r, z, n = (gates[..., k * H:(k + 1) * H] for k in range(3))
    Az = (hp - n) * z * (1 - z)
    An = (1 - z) * (1 - n * n)
    Ar = hwn * r * (1 - r)
    dgx = xp.empty((T, B, 3 * H), dt)                 # gradients of the input-side gate pre-activations
    dgh = xp.empty((T, B, 3 * H), dt)                 # ... and of W_hh h + b_hh (r * . on the n rows)
    dh = xp.array(gh, dtype=dt, copy=True)
    fns = _loops(xp, gy, Az, An, Ar, gates, dh, dgx) if T else None
    if fns is not None:
        back = fns["gru_back_step"]
        for t in range(T - 1, -1, -1):
            back(B, H, _at(gy[t]), _at(Az[t]), _at(An[t]), _at(Ar[t]), _at(gates[t]), _at(dh), _at(dgx[t]),
                 _at(dgh[t]))
            dh += dgh[t] @ w_hh
    for t in range(T - 1 if fns is None else -1, -1, -1):
        dh += gy[t]
        xp.multiply(dh, Az[t], out=dgx[t, :, H:2 * H])
        dn = dgx[t, :, 2 * H:]
        xp.multiply(dh, An[t], out=dn)
        xp.multiply(dn, Ar[t], out=dgx[t, :, :H])
        dgh[t, :, :2 * H] = dgx[t, :, :2 * H]
        xp.multiply(dn, r[t], out=dgh[t, :, 2 * H:])
        dh *= z[t]
        dh += dgh[t] @ w_hh
    dw_ih = dgx.reshape(T * B, -1).T @ x.reshape(T * B, I)
    dw_hh = dgh.reshape(T * B, -1).T @ hp.reshape(T * B, H)
    dx = xp.matmul(dgx.reshape(T * B, 3 * H), w_ih).reshape(T, B, I)
    dx = xp.ascontiguousarray(dx[::-1]) if reverse else dx
    return dx, dh, dw_ih, dw_hh, dgx.reshape(T * B, -1).sum(axis=0), dgh.reshape(T * B, -1).sum(axis=0)


def _rnn_grad_forward(xp, x, h0, w_ih, w_hh, b_ih, b_hh, y, gy, gh, nonlinearity="tanh", reverse=False):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    x, y, gy = (xp.ascontiguousarray(_time_major(xp, v, reverse)) for v in (x, y, gy))
    hp = _previous(xp, h0, y)
    D = (1 - y * y) if nonlinearity == "tanh" else (y > 0).astype(dt)
    d = xp.empty((T, B, H), dt)
    dh = xp.array(gh, dtype=dt, copy=True)
    for t in range(T - 1, -1, -1):
        dh += gy[t]
        xp.multiply(dh, D[t], out=d[t])
        dh = d[t] @ w_hh
    dw_ih, dw_hh = _weight_grads(xp, d, x, hp)
    db = d.reshape(T * B, -1).sum(axis=0)
    dx = xp.matmul(d.reshape(T * B, H), w_ih).reshape(T, B, I)
    dx = xp.ascontiguousarray(dx[::-1]) if reverse else dx
    return dx, dh.astype(dt, copy=False), dw_ih, dw_hh, db, xp.array(db, copy=True)


# ---- shapes ------------------------------------------------------------------------------------------

def _same(a, b):
    return isinstance(a, Dim) or isinstance(b, Dim) or a == b


def check(op, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None):
    """Shapes and dtypes of one layer's operands (Avals or Tensors): a clear error naming the op.
    Returns (T, B, H, P): P is the size of the state h (H, or w_hr's rows with a projection)."""
    G = GATES[op]
    operands = {"input": x, "h0": h0, "c0": c0, "weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih,
                "bias_hh": b_hh, "weight_hr": w_hr}
    operands = {k: v for k, v in operands.items() if v is not None}
    desc = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in operands.items())
    dts = {np.dtype(v.dtype) for v in operands.values()}
    if len(dts) != 1 or next(iter(dts)).kind != "f":
        raise DTypeError(f"{op}: every operand must have one floating dtype, got {desc}")
    ranks = {"input": 3, "h0": 2, "c0": 2, "weight_ih": 2, "weight_hh": 2, "bias_ih": 1, "bias_hh": 1,
             "weight_hr": 2}
    if any(len(v.shape) != ranks[k] for k, v in operands.items()):
        raise ShapeError(f"{op}: expected input (T, B, I), h0/c0 (B, H), weights (G*H, I) and (G*H, H), "
                         f"biases (G*H,); got {desc}")
    H = w_hh.shape[1] if w_hr is None else w_hr.shape[1]
    P = w_hh.shape[1] if w_hr is None else w_hr.shape[0]
    T, B, I = x.shape
    if isinstance(T, int) and T == 0:   # as PyTorch: there is no last step to take h_n from
        raise ShapeError(f"{op}: Expected sequence length to be larger than 0 in RNN, got {desc}")
    want = {"h0": (B, P), "c0": (B, H), "weight_ih": (G * H, I), "weight_hh": (G * H, P),
            "bias_ih": (G * H,), "bias_hh": (G * H,), "weight_hr": (P, H)}
    for k, v in operands.items():
        if k != "input" and not all(_same(a, b) for a, b in zip(v.shape, want[k])):
            raise ShapeError(f"{op}: {k} must have shape {want[k]} (gates {G}, hidden {H}), got {desc}")
    return T, B, H, P


def _infer_layer(op, n_state):
    def infer(x, h0, *rest, **attrs):
        c0 = rest[0] if n_state == 2 else None
        w_ih, w_hh, b_ih, b_hh = rest[n_state - 1:]
        T, B, H, _ = check(op, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        state = Aval((B, H), x.dtype)
        work = tuple(Aval((T, B, k * H), x.dtype) for k in WORK[op])
        return (Aval((T, B, H), x.dtype),) + (state,) * n_state + work
    return infer


def _infer_lstm_proj(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, **attrs):
    T, B, H, P = check("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    dt = x.dtype
    return (Aval((T, B, P), dt), Aval((B, P), dt), Aval((B, H), dt), Aval((T, B, 4 * H), dt), Aval((T, B, H), dt))


def _infer_grad(n_in):
    def infer(*avals, **attrs):
        return tuple(Aval(tuple(a.shape), a.dtype) for a in avals[:n_in])
    return infer


# ---- autograd ------------------------------------------------------------------------------------

def _layer_vjp(grad_op, n_public):
    def vjp(ctx, g):
        outs = ctx.out
        return apply(grad_op, tuple(ctx.inputs) + (outs[0],) + tuple(outs[n_public:]) + tuple(g[:n_public]),
                     ctx.attrs)
    return vjp


def _grad_vjp(ctx, g):
    raise AutogradError(f"{ctx.op.name if hasattr(ctx, 'op') else 'rnn backward'}: the second derivative of a "
                        f"recurrent layer is not implemented (create_graph=True through LSTM/GRU/RNN)")


# ---- ONNX ------------------------------------------------------------------------------------------

def _rows(order, H):
    """Row indices that put PyTorch's gate blocks into ONNX's order (`order`: PyTorch block per ONNX block)."""
    return np.concatenate([np.arange(k * H, (k + 1) * H) for k in order]).astype(np.int64)


_ONNX = {"lstm": ("LSTM", (0, 3, 1, 2)), "gru": ("GRU", (1, 0, 2)), "rnn": ("RNN", (0,))}


def _native_onnx(op):
    onnx_op, order = _ONNX[op]
    n_state = 2 if op == "lstm" else 1

    def rule(ctx, node, x, h0, *rest):
        dt = node.outputs[0].aval.dtype
        if dt != np.float32 or not ctx.native_ops:
            return _loop_onnx(op, ctx, node, x, h0, *rest)
        c0 = rest[0] if n_state == 2 else None
        w_ih, w_hh, b_ih, b_hh = rest[n_state - 1:]
        H = node.inputs[n_state + 1].aval.shape[0] // GATES[op]
        a = ctx.attrs(node)
        perm = ctx.i64(_rows(order, H)) if list(order) != sorted(order) else None

        def gates(w):
            return ctx.emit("Gather", [w, perm], axis=0) if perm is not None else w
        W, R = ctx.unsqueeze(gates(w_ih), [0]), ctx.unsqueeze(gates(w_hh), [0])
        B = ctx.unsqueeze(ctx.emit("Concat", [gates(b_ih), gates(b_hh)], axis=0), [0])
        ins = [x, W, R, B, "", ctx.unsqueeze(h0, [0])] + ([ctx.unsqueeze(c0, [0])] if c0 is not None else [])
        extra = {}
        if op == "gru":
            extra["linear_before_reset"] = 1
        if op == "rnn":
            extra["activations"] = ["Tanh" if a.get("nonlinearity", "tanh") == "tanh" else "Relu"]
        outs = ctx.emit(onnx_op, ins, n_out=1 + n_state, hidden_size=int(H),
                        direction="reverse" if a.get("reverse") else "forward", **extra)
        y = ctx.squeeze(outs[0], [1])
        work = _work_onnx(op, _Emit(ctx, dt), x, y, h0, c0, w_ih, w_hh, b_ih, b_hh, H, bool(a.get("reverse")))
        return (y,) + tuple(ctx.squeeze(s, [0]) for s in outs[1:]) + work
    return rule


class _Emit:
    """Shorthands for the ONNX nodes the Loop forms are written with, in one context and float dtype."""

    def __init__(self, ctx, dt):
        self.ctx, self.dt = ctx, np.dtype(dt)

    def __getattr__(self, op):   # e.Add(a, b), e.Tanh(a), ...
        return lambda *ins, **attrs: self.ctx.emit(op, list(ins), **attrs)

    def one(self):
        return self.ctx.const(np.asarray(1, self.dt), hint="one")

    def zero(self):
        return self.ctx.const(np.asarray(0, self.dt), hint="zero")

    def cols(self, x, k, H):
        """Gate block k (columns k*H .. (k+1)*H) of the last axis."""
        return self.ctx.slice(x, [k * H], [(k + 1) * H], [-1])

    def rev(self, x):
        """x with its time axis (0) reversed."""
        return self.ctx.slice(x, [-1], [INT64_MIN], [0], [-1])

    def at(self, x, t):
        return self.ctx.emit("Gather", [x, t], axis=0)

    def mm_t(self, a, w):
        """a @ w.T (a batched over leading axes)."""
        return self.MatMul(a, self.Transpose(w, perm=[1, 0]))

    def steps(self, like):
        """The number of time steps of `like` (T, ...) as an int64 scalar."""
        return self.ctx.squeeze(self.ctx.emit("Gather", [self.ctx.shape_of(like), self.ctx.i64([0])], axis=0), [0])


def _loop(e, n_steps, carried, body, ranks, n_scan, hint):
    """An ONNX Loop of n_steps iterations: `carried` are the initial states' names; body(e_body, t) with
    e_body's ctx.carried the states' body names returns (new states, per-step outputs). Returns
    (final states, stacked per-step outputs (steps, ...)). `ranks`: the ranks of the states, then of one
    step's outputs."""
    ctx = e.ctx
    sub = ctx.sub()
    eb = _Emit(sub, e.dt)
    t, cond = ctx.fresh(f"{hint}_t"), ctx.fresh(f"{hint}_cond")
    names = [ctx.fresh(f"{hint}_state{k}") for k in range(len(carried))]
    eb.carried = names
    new, scans = body(eb, t)
    outs = sub.produced([sub.emit("Identity", [cond])] + list(new) + list(scans), f"{hint}_out")
    b_in = [ctx.value_info(t, np.int64, []), ctx.value_info(cond, np.bool_, [])] + \
        [ctx.value_info(n, e.dt, [None] * r) for n, r in zip(names, ranks)]
    b_out = [ctx.value_info(outs[0], np.bool_, [])] + \
        [ctx.value_info(o, e.dt, [None] * r) for o, r in zip(outs[1:], ranks)]
    res = ctx.emit("Loop", [n_steps, ""] + list(carried), n_out=len(carried) + n_scan, hint=f"{hint}_res",
                   body=ctx.graph_proto(sub.nodes, f"{hint}_body", b_in, b_out))
    res = res if isinstance(res, list) else [res]
    return res[:len(carried)], res[len(carried):]


def _cell_onnx(op, e, P, h, c, w_hh, b_hn, H, nonlinearity, w_hr=None):
    """One forward step in ONNX from the step's input projection P (biases included, except GRU's b_hn)."""
    if op == "lstm":
        g = e.Add(P, e.mm_t(h, w_hh))
        i, f, o = (e.Sigmoid(e.cols(g, k, H)) for k in (0, 1, 3))
        c = e.Add(e.Mul(f, c), e.Mul(i, e.Tanh(e.cols(g, 2, H))))
        h = e.Mul(o, e.Tanh(c))
        return (e.mm_t(h, w_hr) if w_hr is not None else h), c
    if op == "gru":
        hw = e.mm_t(h, w_hh)
        r, z = (e.Sigmoid(e.Add(e.cols(P, k, H), e.cols(hw, k, H))) for k in (0, 1))
        n = e.Tanh(e.Add(e.cols(P, 2, H), e.Mul(r, e.Add(e.cols(hw, 2, H), b_hn))))
        return e.Add(n, e.Mul(z, e.Sub(h, n))), None
    pre = e.Add(P, e.mm_t(h, w_hh))
    return (e.Tanh(pre) if nonlinearity == "tanh" else e.Relu(pre)), None


def _loop_onnx(op, ctx, node, x, h0, *rest, w_hr=None):
    """The forward as an ONNX Loop over the time steps (dtypes onnxruntime's recurrent kernels lack, and
    LSTM's projection, which ONNX's LSTM has not)."""
    e = _Emit(ctx, node.outputs[0].aval.dtype)
    a = ctx.attrs(node)
    c0 = rest[0] if op == "lstm" else None
    n_state = 2 if op == "lstm" else 1
    w_ih, w_hh, b_ih, b_hh = rest[n_state - 1:n_state + 3]
    H = node.inputs[n_state + 1].aval.shape[0] // GATES[op]
    xs = e.rev(x) if a.get("reverse") else x
    if op == "gru":   # r and z add both biases; n keeps b_hn inside r * (W_hn h + b_hn)
        bias = e.Add(b_ih, e.Concat(e.cols(b_hh, 0, 2 * H), ctx.const(np.zeros(H, e.dt)), axis=0))
        b_hn = e.cols(b_hh, 2, H)
    else:
        bias, b_hn = e.Add(b_ih, b_hh), None
    P = e.Add(e.mm_t(xs, w_ih), bias)
    carried = [h0] + ([c0] if c0 is not None else [])

    def body(eb, t):
        h, c = eb.carried[0], (eb.carried[1] if c0 is not None else None)
        h, c = _cell_onnx(op, eb, eb.at(P, t), h, c, w_hh, b_hn, H, a.get("nonlinearity", "tanh"), w_hr)
        return ([h] + ([c] if c is not None else [])), [h]
    finals, (Y,) = _loop(e, e.steps(x), carried, body, [2] * len(carried) + [2], 1, op)
    Y = e.rev(Y) if a.get("reverse") else Y
    return (Y,) + tuple(finals) + _work_onnx(op, e, x, Y, h0, c0, w_ih, w_hh, b_ih, b_hh, H, bool(a.get("reverse")))


def _work_onnx(op, e, x, y, h0, c0, w_ih, w_hh, b_ih, b_hh, H, reverse):
    """The forward's kept values (WORK) in ONNX, recomputed from its outputs y for all steps at once (the
    state before each step is the output of the step before; only LSTM's cell states need a Loop).
    An inference graph reads none of them, and the exporter drops what nothing reads."""
    if op == "rnn":
        return ()
    ctx = e.ctx
    if reverse:
        x, y = e.rev(x), e.rev(y)
    hp = e.Concat(ctx.unsqueeze(h0, [0]), ctx.slice(y, [0], [-1], [0]), axis=0)
    if op == "lstm":
        pre = e.Add(e.Add(e.mm_t(x, w_ih), e.mm_t(hp, w_hh)), e.Add(b_ih, b_hh))
        i, f, o = (e.Sigmoid(e.cols(pre, k, H)) for k in (0, 1, 3))
        g = e.Tanh(e.cols(pre, 2, H))
        ig = e.Mul(i, g)

        def c_body(eb, t):
            c = eb.Add(eb.Mul(eb.at(f, t), eb.carried[0]), eb.at(ig, t))
            return [c], [c]
        _, (C,) = _loop(e, e.steps(x), [c0], c_body, [2, 2], 1, "lstm_c")
        return e.Concat(i, f, g, o, axis=2), C
    xg = e.Add(e.mm_t(x, w_ih), b_ih)
    hw = e.Add(e.mm_t(hp, w_hh), b_hh)
    r, z = (e.Sigmoid(e.Add(e.cols(xg, k, H), e.cols(hw, k, H))) for k in (0, 1))
    hwn = e.cols(hw, 2, H)
    n = e.Tanh(e.Add(e.cols(xg, 2, H), e.Mul(r, hwn)))
    return e.Concat(r, z, n, axis=2), hwn


def _proj_onnx(ctx, node, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
    return _loop_onnx("lstm", ctx, node, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=w_hr)


def _grad_onnx(op, proj=False):
    """Backpropagation through time as ONNX: the gates recomputed for every step at once, an ONNX Loop
    going back over the steps, the weight gradients one MatMul each (the numpy forward, op for op)."""
    def rule(ctx, node, x, h0, *rest):
        e = _Emit(ctx, node.outputs[0].aval.dtype)
        a = ctx.attrs(node)
        rev = bool(a.get("reverse"))
        n_state = 2 if op == "lstm" else 1
        c0 = rest[0] if op == "lstm" else None
        k = n_state - 1
        w_ih, w_hh, b_ih, b_hh = rest[k:k + 4]
        w_hr = rest[k + 4] if proj else None
        k += 5 if proj else 4
        y = rest[k]
        n_work = len(WORK[op])
        work = rest[k + 1:k + 1 + n_work]
        gy, gh = rest[k + 1 + n_work:k + 3 + n_work]
        gc = rest[k + 3 + n_work] if op == "lstm" else None
        H = node.inputs[n_state + 1].aval.shape[0] // GATES[op]
        I = node.inputs[n_state + 1].aval.shape[1]
        S = node.inputs[n_state + 2].aval.shape[1]           # the state's size (H, or the projection's)
        one = e.one()
        if rev:
            x, y, gy = e.rev(x), e.rev(y), e.rev(gy)
        hp = e.Concat(ctx.unsqueeze(h0, [0]), ctx.slice(y, [0], [-1], [0]), axis=0)
        if op == "lstm":
            i, f, g, o = (e.cols(work[0], k, H) for k in range(4))
            C = work[1]
            cp = e.Concat(ctx.unsqueeze(c0, [0]), ctx.slice(C, [0], [-1], [0]), axis=0)
            tc = e.Tanh(C)
            A = e.Concat(e.Mul(g, e.Mul(i, e.Sub(one, i))), e.Mul(cp, e.Mul(f, e.Sub(one, f))),
                         e.Mul(i, e.Sub(one, e.Mul(g, g))), e.Mul(tc, e.Mul(o, e.Sub(one, o))), axis=2)
            K = e.Mul(o, e.Sub(one, e.Mul(tc, tc)))
            Ar, Kr, fr, gyr = e.rev(A), e.rev(K), e.rev(f), e.rev(gy)

            def body(eb, t):
                dh, dc = eb.carried
                dh = eb.Add(dh, eb.at(gyr, t))
                dr = eb.MatMul(dh, w_hr) if proj else dh   # through the projection to o * tanh(c)
                dc = eb.Add(dc, eb.Mul(dr, eb.at(Kr, t)))
                d = eb.Mul(eb.Concat(dc, dc, dc, dr, axis=1), eb.at(Ar, t))
                return [eb.MatMul(d, w_hh), eb.Mul(dc, eb.at(fr, t))], [d] + ([dh] if proj else [])
            (dh0, dc0), scans = _loop(e, e.steps(x), [gh, gc], body, [2, 2, 2, 2][:4 if proj else 3],
                                      2 if proj else 1, "lstm_bptt")
            Dx = Dh = e.rev(scans[0])
            states = (dh0, dc0)
            if proj:
                raw = e.Reshape(e.Mul(o, tc), ctx.i64([-1, H]))
                DHP = e.Reshape(e.rev(scans[1]), ctx.i64([-1, S]))
                extra = (e.MatMul(e.Transpose(DHP, perm=[1, 0]), raw),)
        elif op == "gru":
            r, z, n = (e.cols(work[0], k, H) for k in range(3))
            hwn = work[1]
            Az = e.Mul(e.Sub(hp, n), e.Mul(z, e.Sub(one, z)))
            An = e.Mul(e.Sub(one, z), e.Sub(one, e.Mul(n, n)))
            Ar_ = e.Mul(hwn, e.Mul(r, e.Sub(one, r)))
            Azr, Anr, Arr, rr, zr, gyr = (e.rev(v) for v in (Az, An, Ar_, r, z, gy))

            def body(eb, t):
                (dh,) = eb.carried
                dh = eb.Add(dh, eb.at(gyr, t))
                dn = eb.Mul(dh, eb.at(Anr, t))
                dr, dz = eb.Mul(dn, eb.at(Arr, t)), eb.Mul(dh, eb.at(Azr, t))
                dgx = eb.Concat(dr, dz, dn, axis=1)
                dgh = eb.Concat(dr, dz, eb.Mul(dn, eb.at(rr, t)), axis=1)
                return [eb.Add(eb.Mul(dh, eb.at(zr, t)), eb.MatMul(dgh, w_hh))], [dgx, dgh]
            (dh0,), (Dxr, Dhr) = _loop(e, e.steps(x), [gh], body, [2, 2, 2], 2, "gru_bptt")
            Dx, Dh = e.rev(Dxr), e.rev(Dhr)
            states = (dh0,)
        else:
            if a.get("nonlinearity", "tanh") == "tanh":
                D = e.Sub(one, e.Mul(y, y))
            else:
                D = e.Cast(e.Greater(y, e.zero()), to=ctx.onnx_dtype(e.dt))
            Dr_, gyr = e.rev(D), e.rev(gy)

            def body(eb, t):
                (dh,) = eb.carried
                d = eb.Mul(eb.Add(dh, eb.at(gyr, t)), eb.at(Dr_, t))
                return [eb.MatMul(d, w_hh)], [d]
            (dh0,), (Dr,) = _loop(e, e.steps(x), [gh], body, [2, 2], 1, "rnn_bptt")
            Dx = Dh = e.rev(Dr)
            states = (dh0,)
        G = GATES[op] * H
        flat = ctx.i64([-1, G])
        Dx2, Dh2 = e.Reshape(Dx, flat), e.Reshape(Dh, flat)
        dw_ih = e.MatMul(e.Transpose(Dx2, perm=[1, 0]), e.Reshape(x, ctx.i64([-1, I])))
        dw_hh = e.MatMul(e.Transpose(Dh2, perm=[1, 0]), e.Reshape(hp, ctx.i64([-1, S])))
        db_ih, db_hh = ctx.reduce("ReduceSum", Dx2, (0,), False), ctx.reduce("ReduceSum", Dh2, (0,), False)
        dx = e.MatMul(Dx, w_ih)
        return (e.rev(dx) if rev else dx,) + states + (dw_ih, dw_hh, db_ih, db_hh) + (extra if proj else ())
    return rule


# ---- records -------------------------------------------------------------------------------------

# saves_output on the gradient ops too: the engine fills the missing output gradients of a several-output
# op from its kept outputs before calling its vjp (here, to raise the clear second-derivative error)
LSTM_GRAD = defop("lstm_grad", _lstm_grad_forward, _infer_grad(7), _grad_vjp, n_out=7, saves_output=True,
                  onnx=_grad_onnx("lstm"))
GRU_GRAD = defop("gru_grad", _gru_grad_forward, _infer_grad(6), _grad_vjp, n_out=6, saves_output=True,
                 onnx=_grad_onnx("gru"))
RNN_GRAD = defop("rnn_grad", _rnn_grad_forward, _infer_grad(6), _grad_vjp, n_out=6, saves_output=True,
                 onnx=_grad_onnx("rnn"))
LSTM_PROJ_GRAD = defop("lstm_proj_grad", _lstm_proj_grad_forward, _infer_grad(8), _grad_vjp, n_out=8,
                       saves_output=True, onnx=_grad_onnx("lstm", proj=True))
LSTM_PROJ = defop("lstm_proj", _lstm_forward, _infer_lstm_proj, _layer_vjp(LSTM_PROJ_GRAD, 3), n_out=5,
                  saves_output=True, grad_name="LstmBackward0", onnx=_proj_onnx)
LSTM = defop("lstm", _lstm_forward, _infer_layer("lstm", 2), _layer_vjp(LSTM_GRAD, 3), n_out=5, saves_output=True,
             grad_name="LstmBackward0", onnx=_native_onnx("lstm"))
GRU = defop("gru", _gru_forward, _infer_layer("gru", 1), _layer_vjp(GRU_GRAD, 2), n_out=4, saves_output=True,
            grad_name="GruBackward0", onnx=_native_onnx("gru"))
RNN = defop("rnn", _rnn_forward, _infer_layer("rnn", 1), _layer_vjp(RNN_GRAD, 2), n_out=2, saves_output=True,
            grad_name="RnnBackward0", onnx=_native_onnx("rnn"))


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False, w_hr=None):
    """One LSTM layer and direction over the whole sequence x (T, B, I): (y (T, B, P), h_n (B, P), c_n (B, H)),
    P = H, or with the projection w_hr (P, H) (PyTorch's proj_size) P = proj_size."""
    check("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    if w_hr is not None:
        return apply(LSTM_PROJ, (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr), {"reverse": bool(reverse)})[:3]
    return apply(LSTM, (x, h0, c0, w_ih, w_hh, b_ih, b_hh), {"reverse": bool(reverse)})[:3]


def gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False):
    """One GRU layer and direction (PyTorch's gates r, z, n): (y (T, B, H), h_n)."""
    check("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh)
    return apply(GRU, (x, h0, w_ih, w_hh, b_ih, b_hh), {"reverse": bool(reverse)})[:2]


def rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False):
    """One Elman RNN layer and direction, h' = act(W_ih x + b_ih + W_hh h + b_hh): (y (T, B, H), h_n)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn: unknown nonlinearity {nonlinearity!r}; select from 'tanh' or 'relu'")
    check("rnn", x, h0, None, w_ih, w_hh, b_ih, b_hh)
    return apply(RNN, (x, h0, w_ih, w_hh, b_ih, b_hh), {"nonlinearity": nonlinearity, "reverse": bool(reverse)})
