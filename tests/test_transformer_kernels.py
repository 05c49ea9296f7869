"""The kernels a transformer training step runs on: erf and GELU (exact and tanh) with their gradients,
softmax along any axis, the linear layer's weight gradient on N-D inputs, embedding's backward and
scaled_dot_product_attention as one op. Values and gradients against PyTorch where installed, and
against numpy / math.erf / finite differences always; both sides of every size threshold; NaN and inf
as numpy's formulas give them."""
import math

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.kernels import activations, native

C = native.available()
SIZES = [activations.MIN_SIZE - 1, activations.MIN_SIZE, 3 * activations.MIN_SIZE + 5]


def _erf(x):
    return np.vectorize(math.erf)(x.astype(np.float64))


def _gelu_ref(x, approximate, dtype=np.float64):
    """The formula, evaluated in `dtype` (float64 for values; the input's dtype for where NaN and inf
    arise, as overflow happens there)."""
    x = x.astype(dtype)
    t = np.dtype(dtype).type
    if approximate == "tanh":
        return t(0.5) * x * (1 + np.tanh(t(0.7978845608028654) * (x + t(0.044715) * x * x * x)))
    return t(0.5) * x * (1 + _erf(x * t(0.7071067811865476)).astype(dtype))


def _gelu_grad_ref(x, approximate, dtype=np.float64):
    x = x.astype(dtype)
    t = np.dtype(dtype).type
    if approximate == "tanh":
        th = np.tanh(t(0.7978845608028654) * (x + t(0.044715) * x * x * x))
        return t(0.5) * (1 + th) + t(0.5) * x * (1 - th * th) * t(0.7978845608028654) * (1 + t(0.134145) * x * x)
    cdf = t(0.5) * (1 + _erf(x * t(0.7071067811865476)).astype(dtype))
    return cdf + x * (np.exp(t(-0.5) * x * x) * t(0.3989422804014327))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_values(n, dtype):
    x = (np.random.default_rng(n).standard_normal(n) * 2).astype(dtype)
    got = dg.erf(dg.tensor(x)).numpy()
    assert got.dtype == dtype
    np.testing.assert_allclose(got, _erf(x), rtol=0, atol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_values_and_gradient(approximate, n, dtype):
    x = (np.random.default_rng(n).standard_normal(n) * 3).astype(dtype)
    g = np.random.default_rng(n + 1).standard_normal(n).astype(dtype)
    t = dg.tensor(x, requires_grad=True)
    y = F.gelu(t, approximate=approximate)
    y.backward(dg.tensor(g))
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(y.numpy(), _gelu_ref(x, approximate), **tol)
    np.testing.assert_allclose(t.grad.numpy(), g * _gelu_grad_ref(x, approximate), **tol)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_against_torch(approximate):
    torch = pytest.importorskip("torch")
    x = (np.random.default_rng(0).standard_normal((64, 33)) * 3).astype(np.float32)
    t = dg.tensor(x, requires_grad=True)
    y = F.gelu(t, approximate=approximate)
    (y * y).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.gelu(tt, approximate=approximate)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_second_order_by_finite_differences(approximate):
    x = dg.tensor(np.random.default_rng(3).standard_normal(7) * 2, requires_grad=True)
    assert dg.autograd.gradgradcheck(lambda a: F.gelu(a, approximate=approximate), (x,))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_nan_inf_as_the_numpy_formula(approximate):
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 5.0], np.float32)
    for n in (8, 200):  # below and above the C loop's threshold
        x = np.resize(special, n)
        with np.errstate(all="ignore"):
            want = _gelu_ref(x, approximate, np.float32)
            wantg = _gelu_grad_ref(x, approximate, np.float32)
        t = dg.tensor(x, requires_grad=True)
        y = F.gelu(t, approximate=approximate)
        y.backward(dg.ones_like(y))
        np.testing.assert_array_equal(np.isnan(y.numpy()), np.isnan(want))
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-6, equal_nan=True)
        np.testing.assert_array_equal(np.isnan(t.grad.numpy()), np.isnan(wantg))
        np.testing.assert_allclose(t.grad.numpy(), wantg, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_compiled_is_one_fused_kernel_and_matches_eager(approximate):
    x = np.random.default_rng(5).standard_normal((64, 160)).astype(np.float32)

    def f(a):
        return F.gelu(a * 1.5 + 0.25, approximate=approximate)
    cf = dg.function(f)
    np.testing.assert_allclose(cf(dg.tensor(x)).numpy(), f(dg.tensor(x)).numpy(), rtol=1e-6, atol=1e-6)
    fused = [n for n in cf.graph(dg.tensor(x)).nodes if n.op.name == "fused_elementwise"]
    assert len(fused) == 1 and "gelu" in {n.op.name.split("_")[0] for n in fused[0].subgraphs["body"].nodes}


def test_gelu_bad_approximate():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(dg.ones(3), approximate="fast")


# ---- linear's weight gradient on N-D inputs ---------------------------------------------------------

def test_linear_weight_gradient_on_3d_input_is_one_matmul():
    rng = np.random.default_rng(0)
    x, w, g = rng.standard_normal((3, 5, 4)), rng.standard_normal((6, 4)), rng.standard_normal((3, 5, 6))
    xt, wt = dg.tensor(x, requires_grad=True), dg.tensor(w, requires_grad=True)
    F.linear(xt, wt).backward(dg.tensor(g))
    np.testing.assert_allclose(wt.grad.numpy(), np.einsum("bto,bti->oi", g, x), rtol=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), g @ w, rtol=1e-12)
    assert wt.grad.numpy().flags.c_contiguous

    def step(a, b):
        return dg.autograd.grad((F.linear(a, b) * dg.tensor(g)).sum(), [b])[0]
    cf = dg.function(step)
    np.testing.assert_allclose(cf(dg.tensor(x), dg.tensor(w, requires_grad=True)).numpy(), np.einsum("bto,bti->oi", g, x), rtol=1e-12)
    mm = [n for n in cf.graph(dg.tensor(x), dg.tensor(w, requires_grad=True)).nodes if n.op.name in ("matmul", "matmul_t")]
    # the weight gradient is a 2-D product, not a batched one ((3, 4, 5) @ (3, 5, 6)) summed afterwards
    assert mm and not [n for n in mm if all(len(v.aval.shape) == 3 for v in n.inputs)]


# ---- softmax -------------------------------------------------------------------------------------

def _np_softmax(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_any_axis_values_and_gradient(axis, dtype):
    """The last axis of a contiguous array takes the C row loop; other axes the numpy formula."""
    rng = np.random.default_rng(axis + 7)
    x = (rng.standard_normal((3, 4, 65)) * 4).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    t = dg.tensor(x, requires_grad=True)
    y = F.softmax(t, dim=axis)
    y.backward(dg.tensor(g))
    want = _np_softmax(x, axis)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), want, **tol)
    np.testing.assert_allclose(t.grad.numpy(), want * (g - (g * want).sum(axis=axis, keepdims=True)), **tol)


def test_softmax_non_contiguous_input_and_against_torch():
    x = np.random.default_rng(1).standard_normal((6, 5, 4)).astype(np.float32)
    xt = dg.tensor(x, requires_grad=True)
    y = F.softmax(xt.transpose(0, 2), dim=-1)  # a strided view: the numpy path
    (y * y).sum().backward()
    np.testing.assert_allclose(y.numpy(), _np_softmax(x.transpose(2, 1, 0), -1), rtol=1e-5, atol=1e-7)
    torch = pytest.importorskip("torch")
    tt = torch.tensor(x, requires_grad=True)
    ty = torch.softmax(tt.transpose(0, 2), dim=-1)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), tt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_softmax_second_order_and_compiled():
    x = dg.tensor(np.random.default_rng(2).standard_normal((3, 5)), requires_grad=True)
    assert dg.autograd.gradgradcheck(lambda a: F.softmax(a, dim=1) * a, (x,))
    assert dg.autograd.gradgradcheck(lambda a: F.softmax(a, dim=0) * a, (x,))
    cf = dg.function(lambda a: F.softmax(a * 2.0, dim=-1))
    np.testing.assert_allclose(cf(x.detach()).numpy(), _np_softmax(x.numpy() * 2, -1), rtol=1e-12)
    assert "softmax" in {n.op.name for n in cf.graph(x.detach()).nodes}


@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_nan_inf_rows_as_numpy(axis):
    x = np.array([[1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0],
                  [-np.inf, 0.0, -np.inf]], np.float32)
    x = x if axis == -1 else np.ascontiguousarray(x.T)
    with np.errstate(all="ignore"):
        m = x.max(axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)  # a row without a finite max is not shifted
        e = np.exp(x - m)
        want = e / e.sum(axis=axis, keepdims=True)
    got = F.softmax(dg.tensor(x), dim=axis).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


# ---- embedding's backward ------------------------------------------------------------------------

@pytest.mark.parametrize("n", [3, 63, 64, 500])  # both sides of scatter.SORT_MIN (64 index entries)
def test_embedding_gradient_accumulates_repeated_rows(n):
    from dualgraph.kernels import scatter
    assert scatter.SORT_MIN == 64
    rng = np.random.default_rng(n)
    w = rng.standard_normal((7, 5)).astype(np.float32)
    idx = rng.integers(0, 7, n)
    g = rng.standard_normal((n, 5)).astype(np.float32)
    wt = dg.tensor(w, requires_grad=True)
    F.embedding(dg.tensor(idx), wt).backward(dg.tensor(g))
    want = np.zeros((7, 5), np.float64)
    for i, k in enumerate(idx):  # by definition, in double
        want[k] += g[i]
    np.testing.assert_allclose(wt.grad.numpy(), want, rtol=1e-5, atol=1e-6)


def test_index_gradient_with_negative_and_nd_indices():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 3))
    idx = rng.integers(-9, 9, (40, 3))
    xt = dg.tensor(x, requires_grad=True)
    g = rng.standard_normal((40, 3, 3))
    xt[dg.tensor(idx)].backward(dg.tensor(g))
    want = np.zeros_like(x)
    for pos in np.ndindex(idx.shape):
        want[idx[pos] % 9] += g[pos]
    np.testing.assert_allclose(xt.grad.numpy(), want, rtol=1e-12, atol=1e-12)
    torch = pytest.importorskip("torch")
    tw = torch.tensor(x, requires_grad=True)
    tw[torch.tensor(idx)].backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad.numpy(), tw.grad.numpy(), rtol=1e-12, atol=1e-12)


# ---- Adam/AdamW as one op ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled,weight_decay", [(True, 0.0), (True, 0.01), (False, 0.0), (False, 0.1)])
def test_adam_update_c_loop_gives_the_numpy_formulas_bits(dtype, decoupled, weight_decay, monkeypatch):
    import dualgraph.ops.optimizer as o
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal((33, 7)).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal((33, 7))).astype(dtype)
    args = (np, p, g, m, v, np.array(3), 1e-3, 0.9, 0.999)
    kw = dict(eps=1e-8, weight_decay=weight_decay, decoupled=decoupled)
    got = o._adam_update_forward(*args, **kw)
    monkeypatch.setattr(o, "_c_adam_step", lambda *a: None)
    want = o._adam_update_forward(*args, **kw)
    for a, b in zip(got, want):
        assert a.dtype == dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", ["AdamW", "Adam"])
def test_adam_steps_match_torch_and_the_compiled_step(name):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    grads = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(4)]
    results = []
    for compiled in (False, True):
        p = dg.tensor(w, requires_grad=True)
        opt = getattr(dg.optim, name)([p], lr=0.01, weight_decay=0.1)

        def step(gr):
            opt.zero_grad()
            (p * gr).sum().backward()
            opt.step()
        fn = dg.function(step) if compiled else step
        for gr in grads:
            fn(dg.tensor(gr))
        results.append(p.detach().numpy().copy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-7)
    # by the formula, in float64
    pw, m, v = w.astype(np.float64), np.zeros_like(w, np.float64), np.zeros_like(w, np.float64)
    for t, gr in enumerate(grads, 1):
        gr = gr.astype(np.float64)
        if name == "AdamW":
            pw = pw * (1 - 0.01 * 0.1)
        else:
            gr = gr + 0.1 * pw
        m, v = 0.9 * m + 0.1 * gr, 0.999 * v + 0.001 * gr * gr
        pw = pw - 0.01 / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)
    np.testing.assert_allclose(results[0], pw, rtol=1e-5, atol=1e-6)
    torch = pytest.importorskip("torch")
    pt = torch.tensor(w, requires_grad=True)
    ot = getattr(torch.optim, name)([pt], lr=0.01, weight_decay=0.1)
    for gr in grads:
        ot.zero_grad()
        (pt * torch.tensor(gr)).sum().backward()
        ot.step()
    np.testing.assert_allclose(results[0], pt.detach().numpy(), rtol=1e-6, atol=1e-7)


# ---- scaled_dot_product_attention as one op ---------------------------------------------------------

def _sdpa_cases(rng, dtype):
    def r(*s):
        return rng.standard_normal(s).astype(dtype)
    mask = np.array([[True, False, True, False, True], [False] * 5, [True] * 5, [True, True, False, False, False]])
    return [
        ((r(2, 3, 6, 4), r(2, 3, 6, 4), r(2, 3, 6, 5)), {"is_causal": True}),
        ((r(2, 4, 3), r(2, 5, 3), r(2, 5, 2)), {"attn_mask": mask}),             # row 1 sees no key
        ((r(1, 2, 4, 3), r(1, 2, 5, 3), r(1, 2, 5, 3)), {"attn_mask": r(1, 1, 4, 5), "scale": 0.7}),
        ((r(2, 7, 3), r(2, 4, 3), r(2, 4, 3)), {"is_causal": True}),             # L > S
    ]


def test_sdpa_is_one_op_keeping_no_score_matrix():
    rng = np.random.default_rng(0)
    q, k, v = (dg.tensor(rng.standard_normal((2, 3, 8, 4)).astype(np.float32), requires_grad=True) for _ in range(3))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.grad_fn.name().startswith("ScaledDotProductAttention")

    def step(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).sum()
    g = dg.function(step).traced_graph(q.detach(), k.detach(), v.detach())
    names = [n.op.name for n in g.nodes]
    assert names.count("scaled_dot_product_attention") == 1 and "softmax" not in names
    node = next(n for n in g.nodes if n.op.name == "scaled_dot_product_attention")
    # what the backward reads besides q, k, v: the output and one log-sum-exp per query row
    assert [tuple(o.aval.shape) for o in node.outputs] == [(2, 3, 8, 4), (2, 3, 8, 1)]


@pytest.mark.parametrize("case", range(4))
def test_sdpa_values_and_gradients_by_reference_and_finite_differences(case):
    import op_db
    rng = np.random.default_rng(case)
    (q, k, v), kw = _sdpa_cases(rng, np.float64)[case]
    want = op_db.np_sdpa(q, k, v, **kw)
    ts = [dg.tensor(a, requires_grad=True) for a in (q, k, v)]
    kwd = {key: (dg.tensor(val) if isinstance(val, np.ndarray) else val) for key, val in kw.items()}
    out = F.scaled_dot_product_attention(*ts, **kwd)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12, atol=1e-12)
    assert dg.autograd.gradcheck(lambda *a: F.scaled_dot_product_attention(*a, **kwd), tuple(ts))
    assert dg.autograd.gradgradcheck(lambda *a: F.scaled_dot_product_attention(*a, **kwd), tuple(ts))


def test_sdpa_float_mask_gradient_by_finite_differences():
    rng = np.random.default_rng(9)
    q, k, v = (dg.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True) for _ in range(3))
    m = dg.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    assert dg.autograd.gradcheck(lambda a, b, c, d: F.scaled_dot_product_attention(a, b, c, attn_mask=d), (q, k, v, m))


@pytest.mark.parametrize("case", range(4))
def test_sdpa_gradients_against_torch(case):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(case)
    (q, k, v), kw = _sdpa_cases(rng, np.float32)[case]
    g = rng.standard_normal(F.scaled_dot_product_attention(*map(dg.tensor, (q, k, v)), **{
        key: (dg.tensor(val) if isinstance(val, np.ndarray) else val) for key, val in kw.items()}).shape).astype(np.float32)
    ts = [dg.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ts, **{key: (dg.tensor(val) if isinstance(val, np.ndarray) else val)
                                                 for key, val in kw.items()})
    out.backward(dg.tensor(g))
    tt = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    tkw = {key: (torch.tensor(val) if isinstance(val, np.ndarray) else val) for key, val in kw.items()}
    tout = torch.nn.functional.scaled_dot_product_attention(*tt, **tkw)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(ts, tt):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_sdpa_compiled_step_matches_eager():
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 2, 16, 8)).astype(np.float32) for _ in range(3))

    def grads(q, k, v):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return dg.autograd.grad((out * out).sum(), [q, k, v])
    eager = grads(*(dg.tensor(a, requires_grad=True) for a in (q, k, v)))
    compiled = dg.function(grads)(*(dg.tensor(a, requires_grad=True) for a in (q, k, v)))
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)


def test_sdpa_with_dropout_stays_the_composite():
    """dropout_p > 0 is random: it runs the composite (with F.dropout on the weights), not the pure op."""
    q = dg.tensor(np.random.default_rng(0).standard_normal((1, 4, 3)).astype(np.float32), requires_grad=True)
    out = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    assert not out.grad_fn.name().startswith("ScaledDotProductAttention")
    out.sum().backward()
    assert q.grad is not None


# ---- layer_norm as one op ------------------------------------------------------------------------

def _np_layer_norm(x, k, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - k, x.ndim))
    x = x.astype(np.float64)
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("k,affine", [(1, True), (2, True), (1, False), (2, "weight only")])
def test_layer_norm_values_and_gradients(k, affine):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((3, 4, 5))
    shape = x.shape[3 - k:]
    w = rng.standard_normal(shape) if affine else None
    b = rng.standard_normal(shape) if affine is True else None
    args = [dg.tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]

    def f(xx, *wb):
        return F.layer_norm(xx, shape, *wb)
    np.testing.assert_allclose(f(*args).numpy(), _np_layer_norm(x, k, w, b), rtol=1e-10, atol=1e-10)
    assert dg.autograd.gradcheck(f, tuple(args))
    assert dg.autograd.gradgradcheck(f, tuple(args))
    names = [n.op.name for n in dg.function(f).traced_graph(*[a.detach() for a in args]).nodes]
    assert names == ["layer_norm"]


def test_layer_norm_against_torch_and_compiled():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((8, 16, 32)).astype(np.float32), rng.standard_normal(32).astype(np.float32), \
        rng.standard_normal(32).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    ts = [dg.tensor(a, requires_grad=True) for a in (x, w, b)]
    F.layer_norm(ts[0], (32,), ts[1], ts[2]).backward(dg.tensor(g))
    tt = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    torch.nn.functional.layer_norm(tt[0], (32,), tt[1], tt[2]).backward(torch.tensor(g))
    for a, c in zip(ts, tt):
        np.testing.assert_allclose(a.grad.numpy(), c.grad.numpy(), rtol=1e-4, atol=2e-5)

    def grads(xx, ww, bb):
        return dg.autograd.grad((F.layer_norm(xx, (32,), ww, bb) * dg.tensor(g)).sum(), [xx, ww, bb])
    compiled = dg.function(grads)(*[dg.tensor(a, requires_grad=True) for a in (x, w, b)])
    for a, c in zip(ts, compiled):
        np.testing.assert_allclose(c.numpy(), a.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_layer_norm_nan_row_stays_in_its_row():
    x = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0]], np.float32)
    y = F.layer_norm(dg.tensor(x), (3,)).numpy()
    np.testing.assert_allclose(y[0], _np_layer_norm(x[:1], 1)[0], rtol=1e-5)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()


def test_matmul_of_a_sequence_by_a_weight_runs_as_one_2d_product():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 6, 5)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    want = np.einsum("btk,nk->btn", x.astype(np.float64), w.astype(np.float64))
    for a in (x, np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)):  # contiguous, then strided
        np.testing.assert_allclose(F.linear(dg.tensor(a), dg.tensor(w)).numpy(), want, rtol=1e-5, atol=1e-5)
    cf = dg.function(lambda a, b: F.linear(a, b))
    np.testing.assert_allclose(cf(dg.tensor(x), dg.tensor(w)).numpy(), want, rtol=1e-5, atol=1e-5)
    assert "matmul_rows" in [n.op.name for n in cf.graph(dg.tensor(x), dg.tensor(w)).nodes]
    # 2-D operands keep the plain matmul
    assert "matmul_rows" not in [n.op.name for n in cf.graph(dg.tensor(x[0]), dg.tensor(w)).nodes]
