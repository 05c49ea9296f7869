"""nn.RNN / LSTM / GRU and their cells against PyTorch (weights copied from torch modules: outputs, final
states and every gradient), against a plain numpy loop written from PyTorch's documented equations,
against finite differences, traced, and exported to ONNX (onnxruntime)."""
import itertools

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.errors import DTypeError, ShapeError
from dualgraph.ops import rnn as R

KINDS = ("LSTM", "GRU", "RNN", "RNN_relu")


def make(kind, *args, **kw):
    if kind == "RNN_relu":
        return dg.nn.RNN(*args, nonlinearity="relu", **kw)
    return getattr(dg.nn, kind)(*args, **kw)


# ---- a plain numpy reference, from PyTorch's documented equations ---------------------------------

def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def np_cell(kind, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of the documented cell on numpy arrays: (h', c')."""
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    H = w_hh.shape[0] // {"LSTM": 4, "GRU": 3}.get(kind, 1)
    if kind == "LSTM":
        g = gi + gh
        i, f, gg, o = _sig(g[..., :H]), _sig(g[..., H:2 * H]), np.tanh(g[..., 2 * H:3 * H]), _sig(g[..., 3 * H:])
        c = f * c + i * gg
        return o * np.tanh(c), c
    if kind == "GRU":
        r = _sig(gi[..., :H] + gh[..., :H])
        z = _sig(gi[..., H:2 * H] + gh[..., H:2 * H])
        n = np.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
        return (1 - z) * n + z * h, None
    pre = gi + gh
    return (np.maximum(pre, 0) if kind == "RNN_relu" else np.tanh(pre)), None


def np_module(kind, sd, x, num_layers, bidirectional, h0=None, c0=None):
    """The stacked (bi)directional network over x (T, B, I), time-major, one step at a time."""
    D = 2 if bidirectional else 1
    T, B = x.shape[:2]
    H = sd["weight_hh_l0"].shape[1]
    hs, cs = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            k = layer * D + d
            h = h0[k] if h0 is not None else np.zeros((B, H))
            c = c0[k] if c0 is not None else np.zeros((B, H))
            w = [sd[n + sfx] for n in ("weight_ih", "weight_hh")]
            w += [sd.get(n + sfx, np.zeros(w[0].shape[0])) for n in ("bias_ih", "bias_hh")]
            y = np.zeros((T, B, H))
            for t in (range(T - 1, -1, -1) if d else range(T)):
                h, c = np_cell(kind, x[t], h, c, *w)
                y[t] = h
            outs.append(y)
            hs.append(h)
            cs.append(c)
        x = np.concatenate(outs, axis=2)
    return x, np.stack(hs), (np.stack(cs) if kind == "LSTM" else None)


def _sd(m):
    return {k: v.numpy().astype(np.float64) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers,bidirectional,bias", [(1, False, True), (2, True, True), (2, False, False)])
def test_matches_a_numpy_loop(kind, num_layers, bidirectional, bias):
    dg.manual_seed(0)
    m = make(kind, 3, 5, num_layers=num_layers, bidirectional=bidirectional, bias=bias, dtype=dg.float64)
    rng = np.random.default_rng(1)
    D = 2 if bidirectional else 1
    x = rng.normal(size=(6, 2, 3))
    h0 = rng.normal(size=(num_layers * D, 2, 5))
    c0 = rng.normal(size=(num_layers * D, 2, 5))
    want_y, want_h, want_c = np_module(kind, _sd(m), x, num_layers, bidirectional, h0, c0)
    hx = (dg.tensor(h0), dg.tensor(c0)) if kind == "LSTM" else dg.tensor(h0)
    y, state = m(dg.tensor(x), hx)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=1e-12, atol=1e-12)
    h = state[0] if kind == "LSTM" else state
    np.testing.assert_allclose(h.numpy(), want_h, rtol=1e-12, atol=1e-12)
    if kind == "LSTM":
        np.testing.assert_allclose(state[1].numpy(), want_c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_cells_match_a_numpy_step(kind):
    dg.manual_seed(0)
    cls = {"LSTM": dg.nn.LSTMCell, "GRU": dg.nn.GRUCell, "RNN": dg.nn.RNNCell}[kind.split("_")[0]]
    cell = cls(4, 3, dtype=dg.float64) if kind != "RNN_relu" else dg.nn.RNNCell(4, 3, nonlinearity="relu",
                                                                                  dtype=dg.float64)
    rng = np.random.default_rng(2)
    x, h, c = rng.normal(size=(2, 4)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    sd = _sd(cell)
    want_h, want_c = np_cell(kind, x, h, c, sd["weight_ih"], sd["weight_hh"], sd["bias_ih"], sd["bias_hh"])
    out = cell(dg.tensor(x), (dg.tensor(h), dg.tensor(c)) if kind == "LSTM" else dg.tensor(h))
    got_h = out[0] if kind == "LSTM" else out
    np.testing.assert_allclose(got_h.numpy(), want_h, rtol=1e-12, atol=1e-12)
    if kind == "LSTM":
        np.testing.assert_allclose(out[1].numpy(), want_c, rtol=1e-12, atol=1e-12)
    # unbatched: (I,) in, (H,) out, the same numbers
    out1 = cell(dg.tensor(x[0]), (dg.tensor(h[0]), dg.tensor(c[0])) if kind == "LSTM" else dg.tensor(h[0]))
    np.testing.assert_allclose((out1[0] if kind == "LSTM" else out1).numpy(), want_h[0], rtol=1e-12, atol=1e-12)


# ---- gradients: finite differences on the layer primitives (float64, tiny) ---------------------------

@pytest.mark.parametrize("kind", ("lstm", "gru", "rnn_tanh", "rnn_relu"))
@pytest.mark.parametrize("reverse", (False, True))
def test_layer_gradients_match_finite_differences(kind, reverse):
    rng = np.random.default_rng(3)
    G = R.GATES[kind.split("_")[0]]
    T, B, I, H = 3, 2, 2, 3

    def t(*shape):
        return dg.tensor(rng.normal(size=shape) * 0.7, requires_grad=True)
    x, h0, c0 = t(T, B, I), t(B, H), t(B, H)
    ws = [t(G * H, I), t(G * H, H), t(G * H), t(G * H)]
    if kind == "lstm":
        fn, ins = (lambda *a: R.lstm_layer(*a, reverse=reverse)), (x, h0, c0, *ws)
    elif kind == "gru":
        fn, ins = (lambda *a: R.gru_layer(*a, reverse=reverse)), (x, h0, *ws)
    else:
        fn, ins = (lambda *a: R.rnn_layer(*a, nonlinearity=kind[4:], reverse=reverse)), (x, h0, *ws)
    assert dg.autograd.gradcheck(fn, ins, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_second_derivative_is_a_clear_error():
    x = dg.randn(2, 1, 2, dtype=dg.float64, requires_grad=True)
    m = dg.nn.GRU(2, 3, dtype=dg.float64)
    y, _ = m(x)
    (g,) = dg.autograd.grad(y.sum(), [x], create_graph=True)
    with pytest.raises(dg.AutogradError, match="second derivative"):
        g.sum().backward()


# ---- PyTorch, weights copied ------------------------------------------------------------------------

def _torch_pair(kind, torch, **kw):
    tkw = dict(kw)
    if kind == "RNN_relu":
        tkw["nonlinearity"] = "relu"
    tm = getattr(torch.nn, kind.split("_")[0])(**tkw).double()
    dm = make(kind, **kw, dtype=dg.float64)
    dm.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, dm


CONFIGS = list(itertools.product((1, 2), (False, True), (False, True), (False, True), (False, True)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers,bidirectional,batch_first,unbatched,with_state", CONFIGS)
def test_matches_torch_outputs_states_and_gradients(kind, num_layers, bidirectional, batch_first, unbatched,
                                                    with_state):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm, dm = _torch_pair(kind, torch, input_size=3, hidden_size=4, num_layers=num_layers,
                         bidirectional=bidirectional, batch_first=batch_first)
    assert list(dm.state_dict()) == list(tm.state_dict())
    D = 2 if bidirectional else 1
    T, B = 5, 2
    x_shape = (T, 3) if unbatched else ((B, T, 3) if batch_first else (T, B, 3))
    s_shape = (num_layers * D, 4) if unbatched else (num_layers * D, B, 4)
    rng = np.random.default_rng(4)
    xs = rng.normal(size=x_shape)
    states = [rng.normal(size=s_shape) for _ in range(2 if kind == "LSTM" else 1)]

    def run(lib, m, tensor):
        x = tensor(xs)
        st = [tensor(s) for s in states] if with_state else []
        hx = None if not with_state else (tuple(st) if kind == "LSTM" else st[0])
        y, out = m(x, hx)
        outs = [y] + (list(out) if kind == "LSTM" else [out])
        weights = [rng_out.normal(size=tuple(o.shape)) for o in outs]
        loss = sum((o * tensor(w, grad=False)).sum() for o, w in zip(outs, weights))
        loss.backward()
        grads = [x.grad] + [s.grad for s in st] + [p.grad for _, p in m.named_parameters()]
        return [o.detach().numpy() if lib == "torch" else o.numpy() for o in outs], \
            [g.numpy() for g in grads]

    rng_out = np.random.default_rng(5)
    t_outs, t_grads = run("torch", tm, lambda a, grad=True: torch.tensor(a, requires_grad=grad))
    rng_out = np.random.default_rng(5)
    d_outs, d_grads = run("dg", dm, lambda a, grad=True: dg.tensor(a, requires_grad=grad))
    for got, want in zip(d_outs + d_grads, t_outs + t_grads):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ("LSTMCell", "GRUCell", "RNNCell"))
@pytest.mark.parametrize("bias", (True, False))
def test_cells_match_torch(kind, bias):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tc = getattr(torch.nn, kind)(3, 4, bias=bias).double()
    dc = getattr(dg.nn, kind)(3, 4, bias=bias, dtype=dg.float64)
    assert list(dc.state_dict()) == list(tc.state_dict())
    dc.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tc.state_dict().items()})
    rng = np.random.default_rng(6)
    x, h, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    for given in (True, False):
        tx, dx = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True)
        th, dh = torch.tensor(h, requires_grad=True), dg.tensor(h, requires_grad=True)
        tcc, dcc = torch.tensor(c, requires_grad=True), dg.tensor(c, requires_grad=True)
        if kind == "LSTMCell":
            to, do = tc(tx, (th, tcc) if given else None), dc(dx, (dh, dcc) if given else None)
        else:
            to, do = (tc(tx, th if given else None),), (dc(dx, dh if given else None),)
        sum(((o * (k + 1.5)) ** 2).sum() for k, o in enumerate(to)).backward()
        sum(((o * (k + 1.5)) ** 2).sum() for k, o in enumerate(do)).backward()
        for a, b in zip(do, to):
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-12)
        pairs = [(dx, tx)] + ([(dh, th)] + ([(dcc, tcc)] if kind == "LSTMCell" else []) if given else [])
        pairs += [(p, q) for (_, p), (_, q) in zip(dc.named_parameters(), tc.named_parameters())]
        for a, b in pairs:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12)
            a.grad = None
            b.grad = None


def test_float32_matches_torch_and_stays_float32():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.LSTM(8, 16, num_layers=2)
    dm = dg.nn.LSTM(8, 16, num_layers=2)
    dm.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(7).normal(size=(10, 4, 8)).astype(np.float32)
    ty, (th, tc) = tm(torch.tensor(x))
    dy, (dh, dcn) = dm(dg.tensor(x))
    assert dy.dtype == dg.float32 and dh.dtype == dg.float32
    np.testing.assert_allclose(dy.numpy(), ty.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(dcn.numpy(), tc.detach().numpy(), rtol=1e-5, atol=2e-6)
    dy.sum().backward()
    assert dm.weight_hh_l1.grad.dtype == dg.float32


def test_pad_sequence_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    seqs = [rng.normal(size=(n, 3)) for n in (4, 2, 5)]
    for kw in ({}, {"batch_first": True}, {"padding_value": -1.0, "padding_side": "left"}):
        want = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], **kw).numpy()
        got = dg.nn.utils.rnn.pad_sequence([dg.tensor(s) for s in seqs], **kw).numpy()
        np.testing.assert_array_equal(got, want)


# ---- torch-free facts ---------------------------------------------------------------------------------

def test_parameter_names_shapes_and_init_range():
    m = dg.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    assert names[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse",
                         "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse"]
    assert tuple(m.weight_ih_l1.shape) == (16, 8) and tuple(m.weight_hh_l1_reverse.shape) == (16, 4)
    for p in m.parameters():
        assert np.abs(p.numpy()).max() <= 0.5   # U(-1/sqrt(4), 1/sqrt(4))
    assert [n for n, _ in dg.nn.GRU(3, 4, bias=False).named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert len(m.all_weights) == 4 and len(m.all_weights[0]) == 4


def test_pad_sequence_by_hand():
    a, b = dg.tensor([1.0, 2.0, 3.0]), dg.tensor([4.0])
    np.testing.assert_array_equal(dg.nn.utils.rnn.pad_sequence([a, b]).numpy(), [[1, 4], [2, 0], [3, 0]])
    np.testing.assert_array_equal(dg.nn.utils.rnn.pad_sequence([a, b], batch_first=True, padding_value=9).numpy(),
                                  [[1, 2, 3], [4, 9, 9]])


def test_batch_first_and_unbatched_are_transposes_of_the_time_major_result():
    dg.manual_seed(1)
    m = dg.nn.GRU(3, 4, num_layers=2, bidirectional=True, dtype=dg.float64)
    x = dg.randn(5, 2, 3, dtype=dg.float64)
    y, h = m(x)
    m.batch_first = True
    yb, hb = m(x.transpose(0, 1))
    np.testing.assert_allclose(yb.numpy(), y.numpy().transpose(1, 0, 2), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(hb.numpy(), h.numpy(), rtol=1e-13, atol=1e-13)
    y1, h1 = m(x[:, 0])   # unbatched: batch_first does not apply
    np.testing.assert_allclose(y1.numpy(), y.numpy()[:, 0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h1.numpy(), h.numpy()[:, 0], rtol=1e-13, atol=1e-13)


def test_dropout_between_layers_only_in_training():
    dg.manual_seed(2)
    m = dg.nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = dg.randn(4, 2, 3)
    m.eval()
    a, b = m(x)[0].numpy(), m(x)[0].numpy()
    np.testing.assert_array_equal(a, b)
    m.train()
    outs = [m(x)[0].numpy() for _ in range(3)]
    assert any(not np.array_equal(o, a) for o in outs)
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        dg.nn.LSTM(3, 4, dropout=0.2)


def test_bad_input_is_a_clear_error():
    m = dg.nn.LSTM(3, 4, num_layers=2)
    with pytest.raises(ShapeError, match="Expected input to be 2D or 3D"):
        m(dg.randn(3))
    with pytest.raises(ShapeError, match="input_size. Expected 3, got 5"):
        m(dg.randn(4, 2, 5))
    with pytest.raises(ShapeError, match=r"Expected hidden size \(2, 2, 4\), got \[1, 2, 4\]"):
        m(dg.randn(4, 2, 3), (dg.zeros(1, 2, 4), dg.zeros(2, 2, 4)))
    with pytest.raises(ShapeError, match="should also be 2-D"):
        m(dg.randn(4, 3), (dg.zeros(2, 1, 4), dg.zeros(2, 1, 4)))
    with pytest.raises(DTypeError, match="float64"):
        m(dg.randn(4, 2, 3, dtype=dg.float64))
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        dg.nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout should be a number"):
        dg.nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        dg.nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="only supported for LSTM"):
        dg.nn.GRU(3, 4, proj_size=2)
    with pytest.raises(ShapeError, match=r"lstm: weight_hh must have shape \(8, 2\)"):
        R.lstm_layer(dg.zeros(3, 1, 2), dg.zeros(1, 2), dg.zeros(1, 2), dg.zeros(8, 2), dg.zeros(4, 2),
                     dg.zeros(8), dg.zeros(8))
    with pytest.raises(ShapeError, match="LSTMCell: Expected input to be 1D or 2D"):
        dg.nn.LSTMCell(3, 4)(dg.zeros(1, 1, 3))
    with pytest.raises(ShapeError, match="sequence length to be larger than 0"):
        dg.nn.GRU(3, 4)(dg.zeros(0, 2, 3))


# ---- traced and compiled --------------------------------------------------------------------------------

class CharLM(dg.nn.Module):
    def __init__(self, vocab=11, emb=6, hidden=8, layers=2):
        super().__init__()
        self.emb = dg.nn.Embedding(vocab, emb)
        self.rnn = dg.nn.LSTM(emb, hidden, num_layers=layers, batch_first=True)
        self.head = dg.nn.Linear(hidden, vocab)

    def forward(self, idx):
        y, _ = self.rnn(self.emb(idx))
        return self.head(y)


def test_traced_training_step_equals_eager():
    dg.manual_seed(3)
    rng = np.random.default_rng(9)
    idx = dg.tensor(rng.integers(0, 11, size=(4, 7)))
    tgt = dg.tensor(rng.integers(0, 11, size=(4, 7)))
    models = [CharLM(), CharLM()]
    models[1].load_state_dict(models[0].state_dict())
    opts = [dg.optim.AdamW(m.parameters(), lr=1e-2) for m in models]

    def make_step(model, opt):
        def step(idx, tgt):
            opt.zero_grad()
            logits = model(idx)
            loss = dg.cross_entropy(logits.reshape(-1, 11), tgt.reshape(-1))
            loss.backward()
            opt.step()
            return loss
        return step
    eager = make_step(models[0], opts[0])
    compiled = dg.function(make_step(models[1], opts[1]))
    for _ in range(3):
        le, lc = eager(idx, tgt), compiled(idx, tgt)
        np.testing.assert_allclose(lc.numpy(), le.numpy(), rtol=1e-5)
    for (n, a), (_, b) in zip(models[0].named_parameters(), models[1].named_parameters()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6, err_msg=n)


# ---- ONNX ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional,bias", [(False, True), (True, False)])
def test_exports_as_onnx_recurrent_ops_with_a_dynamic_sequence_length(kind, bidirectional, bias):
    pytest.importorskip("onnxruntime")
    dg.manual_seed(4)
    m = make(kind, 3, 5, num_layers=2, bidirectional=bidirectional, bias=bias).eval()
    D = 2 if bidirectional else 1

    def fn(x, *state):
        y, out = m(x, tuple(state) if kind == "LSTM" else state[0])
        return (y,) + (tuple(out) if kind == "LSTM" else (out,))
    state = [dg.randn(2 * D, 2, 5) for _ in range(2 if kind == "LSTM" else 1)]
    x = dg.randn(6, 2, 3)
    model = dg.onnx.export(fn, (x, *state), None, input_names=["x"] + [f"s{k}" for k in range(len(state))],
                           dynamic_axes={"x": {0: "T"}}, verify=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"LSTM": "LSTM", "GRU": "GRU"}.get(kind, "RNN") in ops
    assert "Loop" not in ops
    x2 = np.random.default_rng(10).normal(size=(9, 2, 3)).astype(np.float32)
    got = dg.onnx.session(model).run(None, {"x": x2, **{f"s{k}": s.numpy() for k, s in enumerate(state)}})
    want = fn(dg.tensor(x2), *state)
    assert got[0].shape == (9, 2, 5 * D)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_float64_exports_as_a_loop_over_time(kind):
    pytest.importorskip("onnxruntime")
    dg.manual_seed(5)
    m = make(kind, 3, 4, num_layers=2, bidirectional=True, dtype=dg.float64).eval()

    def fn(x):
        y, out = m(x)
        return (y,) + (tuple(out) if kind == "LSTM" else (out,))
    x = dg.randn(5, 2, 3, dtype=dg.float64)
    model = dg.onnx.export(fn, (x,), None, input_names=["x"], dynamic_axes={"x": {0: "T"}}, verify=True,
                           rtol=1e-10, atol=1e-12)
    assert "Loop" in {n.op_type for n in model.graph.node}
    x2 = np.random.default_rng(11).normal(size=(8, 2, 3))
    got = dg.onnx.session(model).run(None, {"x": x2})
    for g, w in zip(got, fn(dg.tensor(x2))):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-10, atol=1e-12)


def test_lstm_training_step_exports_and_runs_in_onnxruntime():
    pytest.importorskip("onnxruntime")
    dg.manual_seed(6)
    model = CharLM(layers=2)

    def step(idx, tgt):
        loss = dg.cross_entropy(model(idx).reshape(-1, 11), tgt.reshape(-1))
        loss.backward()
        with dg.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
                p.grad = None
        return loss
    rng = np.random.default_rng(12)
    idx = dg.tensor(rng.integers(0, 11, size=(3, 6)))
    tgt = dg.tensor(rng.integers(0, 11, size=(3, 6)))
    onx = dg.onnx.export(step, (idx, tgt), None, input_names=["idx", "tgt"], output_names=["loss"],
                         dynamic_axes={"idx": {1: "T"}, "tgt": {1: "T"}})
    assert "Loop" in {n.op_type for n in onx.graph.node}    # backpropagation through time
    sess = dg.onnx.session(onx)
    for T in (6, 9):
        i2 = rng.integers(0, 11, size=(3, T))
        t2 = rng.integers(0, 11, size=(3, T))
        outs = dict(zip([o.name for o in onx.graph.output], sess.run(None, {"idx": i2, "tgt": t2})))
        before = {n: p.numpy().copy() for n, p in model.named_parameters()}
        loss = step(dg.tensor(i2), dg.tensor(t2))   # one eager step from the same weights
        np.testing.assert_allclose(outs["loss"], loss.numpy(), rtol=1e-5)
        for name, p in model.named_parameters():
            np.testing.assert_allclose(outs[name + ".updated"], p.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
        model.load_state_dict({n: dg.tensor(v) for n, v in before.items()})


# ---- packed sequences ----------------------------------------------------------------------------

def test_packed_sequences_match_each_sequence_run_alone():
    dg.manual_seed(7)
    m = dg.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=dg.float64)
    rng = np.random.default_rng(13)
    lengths = [3, 5, 1, 5]
    seqs = [rng.normal(size=(n, 3)) for n in lengths]
    padded = dg.nn.utils.rnn.pad_sequence([dg.tensor(s) for s in seqs], batch_first=True)
    packed = dg.nn.utils.rnn.pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
    out, (h, c) = m(packed)
    y, got_lengths = dg.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    assert got_lengths.numpy().tolist() == lengths
    for b, s in enumerate(seqs):
        yb, (hb, cb) = m(dg.tensor(s))   # unbatched: one sequence alone
        np.testing.assert_allclose(y.numpy()[b, :lengths[b]], yb.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(y.numpy()[b, lengths[b]:], 0)
        np.testing.assert_allclose(h.numpy()[:, b], hb.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c.numpy()[:, b], cb.numpy(), rtol=1e-12, atol=1e-12)
    back = dg.nn.utils.rnn.unpack_sequence(dg.nn.utils.rnn.pack_sequence([dg.tensor(s) for s in seqs],
                                                                         enforce_sorted=False))
    for a, s in zip(back, seqs):
        np.testing.assert_array_equal(a.numpy(), s)
    with pytest.raises(dg.InvalidValue, match="sorted in decreasing order"):
        dg.nn.utils.rnn.pack_padded_sequence(padded, lengths, batch_first=True)


@pytest.mark.parametrize("kind", KINDS)
def test_packed_sequences_match_torch(kind):
    torch = pytest.importorskip("torch")
    U = torch.nn.utils.rnn
    torch.manual_seed(0)
    tm, dm = _torch_pair(kind, torch, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(14)
    lengths = [2, 6, 4, 6, 1]
    x = rng.normal(size=(6, 5, 3))
    states = [rng.normal(size=(4, 5, 4)) for _ in range(2 if kind == "LSTM" else 1)]
    tx = torch.tensor(x, requires_grad=True)
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    dx = dg.tensor(x, requires_grad=True)
    ds = [dg.tensor(s, requires_grad=True) for s in states]
    tp = U.pack_padded_sequence(tx, lengths, enforce_sorted=False)
    dp = dg.nn.utils.rnn.pack_padded_sequence(dx, lengths, enforce_sorted=False)
    np.testing.assert_array_equal(dp.batch_sizes.numpy(), tp.batch_sizes.numpy())
    np.testing.assert_array_equal(dp.data.numpy(), tp.data.detach().numpy())
    to, th = tm(tp, tuple(ts) if kind == "LSTM" else ts[0])
    do, dh = dm(dp, tuple(ds) if kind == "LSTM" else ds[0])
    ty, tl = U.pad_packed_sequence(to, batch_first=True, padding_value=-1.0, total_length=7)
    dy, dl = dg.nn.utils.rnn.pad_packed_sequence(do, batch_first=True, padding_value=-1.0, total_length=7)
    np.testing.assert_array_equal(dl.numpy(), tl.numpy())
    touts = [ty] + (list(th) if kind == "LSTM" else [th])
    douts = [dy] + (list(dh) if kind == "LSTM" else [dh])
    for a, b in zip(douts, touts):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = [rng.normal(size=tuple(o.shape)) for o in touts]
    sum((o * torch.tensor(v)).sum() for o, v in zip(touts, w)).backward()
    sum((o * dg.tensor(v)).sum() for o, v in zip(douts, w)).backward()
    pairs = [(dx, tx)] + list(zip(ds, ts)) + [(p, q) for (_, p), (_, q) in zip(dm.named_parameters(),
                                                                             tm.named_parameters())]
    for a, b in pairs:
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-11)


# ---- LSTM with a projection (proj_size) -------------------------------------------------------------

@pytest.mark.parametrize("num_layers,bidirectional,with_state", [(1, False, True), (2, True, False), (2, True, True)])
def test_lstm_projection_matches_torch(num_layers, bidirectional, with_state):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm, dm = _torch_pair("LSTM", torch, input_size=3, hidden_size=5, num_layers=num_layers,
                         bidirectional=bidirectional, proj_size=2)
    assert list(dm.state_dict()) == list(tm.state_dict())
    D = 2 if bidirectional else 1
    rng = np.random.default_rng(15)
    x = rng.normal(size=(6, 2, 3))
    states = [rng.normal(size=(num_layers * D, 2, 2)), rng.normal(size=(num_layers * D, 2, 5))]
    tx, dx = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True)
    ts = [torch.tensor(v, requires_grad=True) for v in states]
    ds = [dg.tensor(v, requires_grad=True) for v in states]
    ty, (th, tc) = tm(tx, tuple(ts) if with_state else None)
    dy, (dh, dc) = dm(dx, tuple(ds) if with_state else None)
    assert tuple(dy.shape) == (6, 2, 2 * D) and tuple(dh.shape) == (num_layers * D, 2, 2)
    w = [rng.normal(size=tuple(o.shape)) for o in (ty, th, tc)]
    sum((o * torch.tensor(v)).sum() for o, v in zip((ty, th, tc), w)).backward()
    sum((o * dg.tensor(v)).sum() for o, v in zip((dy, dh, dc), w)).backward()
    for a, b in zip((dy, dh, dc), (ty, th, tc)):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    pairs = [(dx, tx)] + (list(zip(ds, ts)) if with_state else [])
    pairs += [(p, q) for (_, p), (_, q) in zip(dm.named_parameters(), tm.named_parameters())]
    for a, b in pairs:
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_lstm_projection_matches_a_numpy_loop_and_finite_differences():
    rng = np.random.default_rng(16)
    T, B, I, H, P = 4, 2, 3, 4, 2
    arrays = [rng.normal(size=s) * 0.6 for s in ((T, B, I), (B, P), (B, H), (4 * H, I), (4 * H, P), (4 * H,),
                                                (4 * H,), (P, H))]
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = arrays
    h, c, ys = h0, c0, []
    for t in range(T):
        raw, c = np_cell("LSTM", x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        h = raw @ w_hr.T
        ys.append(h)
    y, hn, cn = R.lstm_layer(*[dg.tensor(a) for a in arrays[:7]], w_hr=dg.tensor(w_hr))
    np.testing.assert_allclose(y.numpy(), np.stack(ys), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hn.numpy(), h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cn.numpy(), c, rtol=1e-12, atol=1e-12)
    ts = [dg.tensor(a, requires_grad=True) for a in arrays]
    for reverse in (False, True):
        assert dg.autograd.gradcheck(lambda *a: R.lstm_layer(*a[:7], w_hr=a[7], reverse=reverse), ts,
                                     eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_lstm_projection_exports_as_a_loop(dtype):
    pytest.importorskip("onnxruntime")
    dg.manual_seed(8)
    m = dg.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, dtype=dtype).eval()

    def fn(x):
        y, (h, c) = m(x)
        return y, h, c
    x = dg.randn(5, 2, 3, dtype=dtype)
    tol = {"float32": (1e-4, 1e-5), "float64": (1e-10, 1e-12)}[dtype]
    model = dg.onnx.export(fn, (x,), None, input_names=["x"], dynamic_axes={"x": {0: "T"}}, verify=True,
                           rtol=tol[0], atol=tol[1])
    x2 = np.random.default_rng(17).normal(size=(7, 2, 3)).astype(dtype)
    for g, w in zip(dg.onnx.session(model).run(None, {"x": x2}), fn(dg.tensor(x2))):
        np.testing.assert_allclose(g, w.numpy(), rtol=tol[0], atol=tol[1])


def test_lstm_projection_training_step_exports():
    pytest.importorskip("onnxruntime")
    dg.manual_seed(9)
    m = dg.nn.LSTM(3, 5, proj_size=2, bidirectional=True, dtype=dg.float64)

    def step(x):
        y, _ = m(x)
        loss = (y * y).sum()
        loss.backward()
        grads = [p.grad for p in m.parameters()]
        for p in m.parameters():
            p.grad = None
        return (loss, *grads)
    x = dg.randn(4, 2, 3, dtype=dg.float64)
    onx = dg.onnx.export(step, (x,), None, input_names=["x"])
    got = dg.onnx.session(onx).run(None, {"x": x.numpy()})
    want = step(x)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-9, atol=1e-11)


# ---- the C step loops and the numpy path -------------------------------------------------------------

@pytest.mark.parametrize("kind", ("lstm", "lstm_proj", "gru"))
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_c_step_loops_and_the_numpy_path_agree(kind, dtype, monkeypatch):
    from dualgraph.kernels import native
    rng = np.random.default_rng(18)
    T, B, I, H, P = 5, 3, 4, 6, 2
    G = 3 if kind == "gru" else 4
    S = P if kind == "lstm_proj" else H
    shapes = [(T, B, I), (B, S)] + ([(B, H)] if kind != "gru" else []) + [(G * H, I), (G * H, S), (G * H,), (G * H,)]
    shapes += [(P, H)] if kind == "lstm_proj" else []
    arrays = [rng.normal(size=s).astype(dtype) * 0.8 for s in shapes]

    def run():
        ts = [dg.tensor(a, requires_grad=True) for a in arrays]
        if kind == "gru":
            outs = R.gru_layer(*ts, reverse=True)
        else:
            outs = R.lstm_layer(*ts[:7], w_hr=ts[7] if kind == "lstm_proj" else None, reverse=True)
        sum(((o * (k + 1)) ** 2).sum() for k, o in enumerate(outs)).backward()
        return [o.numpy() for o in outs] + [t.grad.numpy() for t in ts]
    calls = []
    real = R._loops
    monkeypatch.setattr(R, "_loops", lambda *a: calls.append(1) or real(*a))
    with_c = run()
    assert calls   # both the forward and the backward asked for the loops
    monkeypatch.setattr(R, "_loops", lambda *a: None)
    numpy_path = run()
    tol = 1e-5 if dtype == "float32" else 1e-12
    for a, b in zip(with_c, numpy_path):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    if native.available():
        assert real(np, *arrays[:1]) is not None   # the C path is the one compared here


# ---- a real script: PyTorch's word_language_model example, the import changed ---------------------------

def _word_language_model(torch, rnn_type, data, state=None, steps=4):
    """pytorch/examples word_language_model's RNNModel and training loop (dropout 0 so that runs compare);
    returns the losses and the final state_dict as numpy arrays."""
    nn = torch.nn

    class RNNModel(nn.Module):
        def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
            super(RNNModel, self).__init__()
            self.ntoken = ntoken
            self.drop = nn.Dropout(dropout)
            self.encoder = nn.Embedding(ntoken, ninp)
            if rnn_type in ['LSTM', 'GRU']:
                self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
            else:
                nonlinearity = {'RNN_TANH': 'tanh', 'RNN_RELU': 'relu'}[rnn_type]
                self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
            self.decoder = nn.Linear(nhid, ntoken)
            if tie_weights:
                self.decoder.weight = self.encoder.weight
            self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

        def forward(self, input, hidden):
            emb = self.drop(self.encoder(input))
            output, hidden = self.rnn(emb, hidden)
            output = self.drop(output)
            decoded = self.decoder(output)
            decoded = decoded.view(-1, self.ntoken)
            return nn.functional.log_softmax(decoded, dim=1), hidden

        def init_hidden(self, bsz):
            weight = next(self.parameters())
            if self.rnn_type == 'LSTM':
                return (weight.new_zeros((self.nlayers, bsz, self.nhid)),
                        weight.new_zeros((self.nlayers, bsz, self.nhid)))
            return weight.new_zeros((self.nlayers, bsz, self.nhid))

    def repackage_hidden(h):
        if isinstance(h, torch.Tensor):
            return h.detach()
        return tuple(repackage_hidden(v) for v in h)

    model = RNNModel(rnn_type, 20, 8, 8, 2, dropout=0.0, tie_weights=True).double()
    if state is not None:
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    criterion = nn.NLLLoss()
    source = torch.tensor(data)
    hidden = model.init_hidden(3)
    losses = []
    model.train()
    for i in range(0, steps * 5, 5):
        x, y = source[i:i + 5], source[i + 1:i + 6].reshape(-1)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(x, hidden)
        loss = criterion(output, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-5.0)
        losses.append(loss.item())
    return losses, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
def test_word_language_model_script_runs_and_matches_torch(rnn_type):
    data = (np.arange(41)[:, None] + np.arange(3)[None, :]) % 5    # a periodic text: learnable
    dg.manual_seed(10)
    losses, _ = _word_language_model(dg, rnn_type, data, steps=8)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.5   # the loop trains (truncated BPTT, clipping)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    _, state = _word_language_model(torch, rnn_type, data, steps=0)
    want, want_state = _word_language_model(torch, rnn_type, data, state)
    got, got_state = _word_language_model(dg, rnn_type, data, state)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    for k in want_state:
        np.testing.assert_allclose(got_state[k], want_state[k], rtol=1e-8, atol=1e-10, err_msg=k)
