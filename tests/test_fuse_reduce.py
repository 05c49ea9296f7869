"""Fusion of elementwise chains with a trailing reduction (sum/mean/max/min) and of broadcasting chains.

A compiled function's graph holds one `fused_reduce` node for `reduce(chain)` (the chain's full-size
value is never stored) and one fused node for a chain whose values have different, broadcastable shapes.
Each case runs on both sides of the C loop's thresholds (ckernel.thresholds(0, 0) sends every eligible
chain to C; a huge threshold keeps the numpy kernel) and is compared with the uncompiled function run
eagerly and with numpy in float64.

Accuracy contract of the C loop: sums accumulate in double (float32 values too), over a reduced inner dim
in blocks of 1024 elements, several lanes at a time; over outer dims one step at a time, as numpy adds
rows. So a float32 sum is at least as close to the exact sum as numpy's, and within
1e-5 * sum(|terms|) of it; a float64 one within 1e-12 * sum(|terms|). max/min are exact, NaN-propagating.
"""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph import backend
from dualgraph.errors import DualgraphError
from dualgraph.kernels import ckernel, native
from dualgraph.kernels.fused import kernel_for

HAVE_CC = native.available()
NUMPY, C = (1 << 40, 1 << 40), (0, 0)
SIDES = [pytest.param(NUMPY, id="numpy"),
         pytest.param(C, id="C", marks=pytest.mark.skipif(not HAVE_CC, reason="no C compiler here"))]
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _nodes(f, *args):
    return [n.op.name for n in f.graph(*args).nodes]


def _fused_kernel(f, *args):
    (node,) = [n for n in f.graph(*args).nodes if n.op.name in ("fused_reduce", "fused_elementwise")]
    return kernel_for(node.subgraphs["body"], np)


def _close_to_exact(got, want64, terms64, dtype):
    """|got - exact| <= tol * sum(|terms|) along the reduction, elementwise."""
    got = np.asarray(got, np.float64)
    assert got.shape == want64.shape
    bound = TOL[dtype] * terms64 + np.finfo(dtype).tiny
    assert np.all(np.abs(got - want64) <= bound), np.max(np.abs(got - want64) / bound)


# ---- the graph really holds the fused reduction ---------------------------------------------------------

def test_mse_is_one_fused_reduce_node_and_prints_its_body():
    x, y = dg.randn(64, 32), dg.randn(64, 32)
    f = dg.function(lambda x, y: ((x - y) * (x - y)).mean())
    text = str(f.graph(x, y))
    # the chain and its sum are one node; the mean's division by the count stays after it
    assert _nodes(f, x, y) == ["fused_reduce", "div"], text
    assert "fused_reduce(" in text and "sum(" in text and "sub(" in text and "f32[64,32]" in text
    np.testing.assert_allclose(f(x, y).numpy(), np.mean((x.numpy() - y.numpy()) ** 2), rtol=1e-5)


def test_a_reduction_whose_operand_is_read_elsewhere_stays_outside():
    x = dg.randn(16, 8)
    f = dg.function(lambda x: (dg.exp(x) * 2.0, (dg.exp(x) * 2.0).sum(axis=1)))
    names = _nodes(f, x)
    assert "fused_reduce" not in names and "sum" in names and "fused_elementwise" in names


def test_reductions_over_one_set_of_axes_share_the_loop_and_others_do_not():
    x = dg.randn(16, 8)
    f = dg.function(lambda x: ((x * 3.0).sum(axis=1), (x * x).sum(axis=1), (x + 1.0).max(axis=0)))
    names = _nodes(f, x)
    assert names.count("fused_reduce") == 3
    got = f(x)
    xn = x.numpy()
    np.testing.assert_allclose(got[0].numpy(), (xn * 3).sum(1), rtol=1e-5)
    np.testing.assert_allclose(got[1].numpy(), (xn * xn).sum(1), rtol=1e-5)
    np.testing.assert_array_equal(got[2].numpy(), (xn + np.float32(1)).max(0))


def test_layer_norm_written_out_is_two_statistics_passes_and_one_broadcasting_chain():
    x, w, b = dg.randn(32, 48), dg.randn(48), dg.randn(48)

    def ln(x, w, b):
        m = x.mean(axis=-1, keepdims=True)
        xc = x - m
        v = (xc * xc).mean(axis=-1, keepdims=True)
        return xc / dg.sqrt(v + 1e-5) * w + b
    f = dg.function(ln)
    names = _nodes(f, x, w, b)
    # sum(x); (x - m) and its squares' sum; then sqrt of the (32, 1) variance joins the (32, 48) chain
    assert names.count("fused_reduce") == 1 and names.count("fused_elementwise") == 1, names
    body = [n for n in f.graph(x, w, b).nodes if n.op.name == "fused_elementwise"][0].subgraphs["body"]
    shapes = {tuple(n.outputs[0].aval.shape) for n in body.nodes}
    assert shapes == {(32, 1), (32, 48)}
    xn, wn, bn = (t.numpy().astype(np.float64) for t in (x, w, b))
    mu = xn.mean(-1, keepdims=True)
    want = (xn - mu) / np.sqrt(((xn - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * wn + bn
    np.testing.assert_allclose(f(x, w, b).numpy(), want, rtol=1e-4, atol=1e-5)
    torch = pytest.importorskip("torch")
    t = torch.nn.functional.layer_norm(torch.tensor(x.numpy()), (48,), torch.tensor(w.numpy()),
                                       torch.tensor(b.numpy()), eps=1e-5)
    np.testing.assert_allclose(f(x, w, b).numpy(), t.numpy(), rtol=1e-4, atol=1e-5)


# ---- every reduction kind and axis pattern, both sides of the threshold -------------------------------

PATTERNS = [  # (shape, axis)
    ((37, 53), None), ((37, 53), 1), ((37, 53), -1), ((37, 53), 0),
    ((5, 7, 11), (1, 2)), ((5, 7, 11), (0, 1)), ((5, 7, 11), 1), ((5, 7, 11), (0, 2)), ((3, 1, 9), 1),
    ((2000,), 0),
]


def _chain(x, y):
    return (x - y) * 0.75 + y * y


def _chain_np(x, y, dtype):
    return (x - y) * dtype(0.75) + y * y


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("kind", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("shape,axis", PATTERNS)
def test_reduction_of_a_chain_matches_eager_and_numpy(shape, axis, kind, keepdims, dtype, side):
    rng = np.random.default_rng(abs(hash((shape, axis, kind))) % 2 ** 31)
    xn, yn = (rng.standard_normal(shape).astype(dtype) for _ in range(2))

    def fn(x, y):
        return getattr(_chain(x, y), kind)(axis=axis, keepdims=keepdims)
    x, y = dg.tensor(xn), dg.tensor(yn)
    with ckernel.thresholds(*side):
        f = dg.function(fn)
        got = f(x, y).numpy()
    assert "fused_reduce" in _nodes(f, x, y)
    eager = fn(x, y).numpy()
    assert got.dtype == eager.dtype == dtype and got.shape == eager.shape
    values = _chain_np(xn, yn, dtype)
    ax = axis if axis is None or isinstance(axis, tuple) else (axis,)
    if kind in ("max", "min"):
        want = getattr(np, kind)(values, axis=ax, keepdims=keepdims)
        np.testing.assert_array_equal(got, want)  # exact: the same float values compared
        np.testing.assert_array_equal(got, eager)
        return
    v64 = values.astype(np.float64)
    want = np.sum(v64, axis=ax, keepdims=keepdims)
    terms = np.sum(np.abs(v64), axis=ax, keepdims=keepdims)
    if kind == "mean":
        n = v64.size // want.size
        want, terms = want / n, terms / n
    _close_to_exact(got, want, terms, dtype)
    _close_to_exact(eager, want, terms, dtype)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler here")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_rows_and_columns_sum_at_least_as_close_as_numpy(dtype):
    rng = np.random.default_rng(7)
    for shape, axis in [((3, 200_000), 1), ((200_000, 3), 0), ((600_000,), None)]:
        xn = (rng.random(shape) + 0.5).astype(dtype)  # positive: float32 rounding errors add up
        f = dg.function(lambda x: (x * 1.5 + 0.25).sum(axis=axis))
        with ckernel.thresholds(*C):
            got = f(dg.tensor(xn)).numpy()
        exact = (xn.astype(np.float64) * 1.5 + 0.25).sum(axis=axis)
        numpy_err = np.abs((xn * dtype(1.5) + dtype(0.25)).sum(axis=axis).astype(np.float64) - exact)
        our_err = np.abs(got.astype(np.float64) - exact)
        assert np.all(our_err <= np.maximum(numpy_err, 4 * np.finfo(dtype).eps * np.abs(exact))), (shape, our_err,
                                                                                                 numpy_err)


@pytest.mark.parametrize("side", SIDES)
def test_nan_and_inf_propagate_as_numpy(side):
    xn = np.arange(24, dtype=np.float32).reshape(4, 6) - 10
    xn[0, 2] = np.nan
    xn[1, 1], xn[1, 4] = np.inf, -np.inf
    xn[2, :] = -np.inf
    xn[3, 5] = np.inf

    for axis in (1, 0):
        kinds = ["sum", "max", "min"]

        def fn(x):  # a value of its own for each reduction (one read by several is not absorbed)
            return tuple(getattr(x * 2.0 - float(k + 1), kind)(axis=axis) for k, kind in enumerate(kinds))
        with ckernel.thresholds(*side):
            f = dg.function(fn)
            got = [g.numpy() for g in f(dg.tensor(xn))]
        # reductions over the same axes of one loop are accumulated together
        (node,) = f.graph(dg.tensor(xn)).nodes
        assert node.op.name == "fused_reduce"
        assert sorted(n.op.name for n in node.subgraphs["body"].nodes if n.op.reduce) == sorted(kinds)
        with np.errstate(invalid="ignore"):
            want = [getattr(xn * np.float32(2) - np.float32(k + 1), kind)(axis) for k, kind in enumerate(kinds)]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)  # NaN where numpy has NaN, the same infinities


@pytest.mark.parametrize("side", SIDES)
def test_max_over_an_empty_axis_is_the_eager_error(side):
    x = dg.tensor(np.zeros((0, 3), np.float32))
    with pytest.raises(DualgraphError, match="empty"):
        ((x * 2.0) + 1.0).max(axis=0)
    with ckernel.thresholds(*side):
        f = dg.function(lambda x: ((x * 2.0) + 1.0).max(axis=0))
        with pytest.raises(DualgraphError, match="empty"):
            f(x)
    g = dg.function(lambda x: ((x * 2.0) + 1.0).sum(axis=0))
    np.testing.assert_array_equal(g(x).numpy(), np.zeros(3, np.float32))


# ---- broadcasting chains ---------------------------------------------------------------------------------

LAYOUTS = {  # operand shapes against an (N, C) or (B, T, C) loop
    "col_row": ((64, 96), (64, 1), (96,)),
    "row_col": ((64, 96), (96,), (64, 1)),
    "scalar": ((64, 96), (1, 1), (64, 96)),
    "middle": ((8, 12, 16), (8, 1, 16), (1, 12, 1)),
    "outer": ((8, 12, 16), (8, 1, 1), (16,)),
    "all_small": ((1, 12, 1), (8, 1, 1), (1, 1, 16)),
}


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_broadcasting_chain_is_one_node_and_bit_exact(layout, dtype, side):
    rng = np.random.default_rng(3)
    an, bn, cn = (rng.standard_normal(s).astype(dtype) for s in LAYOUTS[layout])

    def fn(a, b, c):
        return dg.relu((a - b) * c * 1.5 + b) - 0.5
    args = [dg.tensor(t) for t in (an, bn, cn)]
    with ckernel.thresholds(*side):
        f = dg.function(fn)
        got = f(*args).numpy()
    assert _nodes(f, *args) == ["fused_elementwise"]
    want = np.maximum((an - bn) * cn * dtype(1.5) + bn, 0) - dtype(0.5)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    if side == C:
        k = _fused_kernel(f, *args)
        assert k.variants and all(k.variants.values())  # the C loop ran on this layout


@pytest.mark.parametrize("side", SIDES)
def test_small_values_of_the_chain_are_computed_once_per_row(side):
    rng = np.random.default_rng(4)
    xn = rng.standard_normal((64, 80)).astype(np.float32)
    vn = rng.random((64, 1)).astype(np.float32)

    def fn(x, v):
        r = 1.0 / dg.sqrt(v + 1e-5)   # (64, 1): joins the (64, 80) chain
        return x * r + 1.0, r
    args = dg.tensor(xn), dg.tensor(vn)
    with ckernel.thresholds(*side):
        f = dg.function(fn)
        out, r = f(*args)
    assert _nodes(f, *args) == ["fused_elementwise"]
    rn = np.float32(1) / np.sqrt(vn + np.float32(1e-5))
    np.testing.assert_array_equal(r.numpy(), rn)
    np.testing.assert_array_equal(out.numpy(), xn * rn + np.float32(1))
    if side == C:
        (loop, _), = _fused_kernel(f, *args).variants
        src = _fused_kernel(f, *args).source(loop)
        inner = src[src.index("#pragma omp simd"):]
        assert "sqrtf" in src and "sqrtf" not in inner  # computed in the row loop, not per element


def test_a_row_computed_in_the_chain_is_not_recomputed_per_row():
    # a (C,) value would be recomputed for every row of an (N, C) loop: it stays its own node
    x, w = dg.randn(64, 80), dg.randn(80)
    f = dg.function(lambda x, w: x * dg.exp(w * 0.5) + 1.0)
    names = _nodes(f, x, w)
    assert names.count("exp") + names.count("fused_elementwise") >= 2, names
    np.testing.assert_allclose(f(x, w).numpy(), x.numpy() * np.exp(w.numpy() * 0.5) + 1, rtol=1e-6)


def test_a_node_reading_a_smaller_chain_first_stays_in_its_own_chain():
    x, v = dg.randn(64, 80), dg.rand(64, 1)

    def fn(x, v):
        s = v * 2.0 * v      # a (64, 1) chain
        d = x - 1.0          # the (64, 80) chain the product continues
        return s * d + 1.0
    f = dg.function(fn)
    assert all(name.startswith("fused") for name in _nodes(f, x, v)), _nodes(f, x, v)
    xn, vn = x.numpy(), v.numpy()
    np.testing.assert_array_equal(f(x, v).numpy(), vn * np.float32(2) * vn * (xn - np.float32(1)) + np.float32(1))


@pytest.mark.parametrize("side", SIDES)
def test_promotion_and_weak_scalars_as_eager(side):
    rng = np.random.default_rng(5)
    xn = rng.standard_normal((40, 30)).astype(np.float32)
    kn = rng.integers(-3, 3, (40, 1)).astype(np.int64)
    fns = [lambda x, k: (x * 0.1 + k).sum(axis=1),          # float32 op int64 -> float32
           lambda x, k: (x * 3 - 1e-3).max(axis=0),        # weak int and float stay float32
           lambda x, k: (k * 2 + 1).sum(axis=0)]           # integers: summed as int64
    for fn in fns:
        args = dg.tensor(xn), dg.tensor(kn)
        with ckernel.thresholds(*side):
            got = dg.function(fn)(*args)
        eager = fn(*args)
        assert got.dtype == eager.dtype, fn
        np.testing.assert_allclose(got.numpy(), eager.numpy(), rtol=1e-6)


# ---- gradients through the compiled function --------------------------------------------------------------

@pytest.mark.parametrize("side", SIDES)
def test_gradients_of_a_compiled_loss_with_fused_reductions(side):
    rng = np.random.default_rng(6)
    xn = rng.standard_normal((32, 20)).astype(np.float64)
    wn = rng.standard_normal((20, 10)).astype(np.float64) * 0.3
    bn = rng.standard_normal(10).astype(np.float64)
    tn = rng.standard_normal((32, 10)).astype(np.float64)

    def loss(x, w, b, t):
        h = dg.tanh(x @ w + b)
        d = h - t
        return (d * d).mean() + 0.1 * (h * h).sum(axis=0).max()

    def grads(fn):
        w, b = dg.tensor(wn, requires_grad=True), dg.tensor(bn, requires_grad=True)
        out = fn(dg.tensor(xn), w, b, dg.tensor(tn))
        out.backward()
        return out.numpy(), w.grad.numpy(), b.grad.numpy()
    with ckernel.thresholds(*side):
        got = grads(dg.function(loss))
    want = grads(loss)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    # finite differences on the bias (torch-free reference)
    eps = 1e-6
    for i in (0, 4, 9):
        bp, bm = bn.copy(), bn.copy()
        bp[i] += eps
        bm[i] -= eps
        up, down = (loss(*map(dg.tensor, (xn, wn, bb, tn))).item() for bb in (bp, bm))
        fd = (up - down) / (2 * eps)
        np.testing.assert_allclose(got[2][i], fd, rtol=1e-5, atol=1e-8)
    torch = pytest.importorskip("torch")
    w, b = torch.tensor(wn, requires_grad=True), torch.tensor(bn, requires_grad=True)
    h = torch.tanh(torch.tensor(xn) @ w + b)
    d = h - torch.tensor(tn)
    out = (d * d).mean() + 0.1 * (h * h).sum(0).max()
    out.backward()
    np.testing.assert_allclose(got[1], w.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[2], b.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_a_compiled_training_step_with_a_bias_gradient_sum():
    rng = np.random.default_rng(8)
    xn, tn = rng.standard_normal((64, 16)).astype(np.float32), rng.standard_normal((64, 4)).astype(np.float32)
    w0, b0 = (rng.standard_normal((16, 4)) * 0.2).astype(np.float32), np.zeros(4, np.float32)

    def step(x, t, w, b):
        p = x @ w + b
        loss = ((p - t) * (p - t)).mean()
        gw, gb = dg.autograd.grad(loss, [w, b])
        return loss, w - 0.1 * gw, b - 0.1 * gb
    results = []
    for compiled in (False, True):
        w, b = dg.tensor(w0, requires_grad=True), dg.tensor(b0, requires_grad=True)
        fn = dg.function(step) if compiled else step
        with ckernel.thresholds(*C):
            results.append([a.numpy() for a in fn(dg.tensor(xn), dg.tensor(tn), w, b)])
    for g, e in zip(*results):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    # by hand: d loss / d b = 2 * mean over samples of (p - t), summed over the batch
    p = xn @ w0 + b0
    gb = 2 * (p - tn).sum(0) / p.size
    np.testing.assert_allclose(results[1][2], b0 - 0.1 * gb, rtol=1e-5, atol=1e-6)


# ---- the GPU path (real cupy, or the emulated one with DUALGRAPH_EMULATE_GPU=1) --------------------------

@pytest.mark.skipif(not backend.gpu_available(), reason="no GPU (or DUALGRAPH_EMULATE_GPU=1)")
def test_fused_reduce_and_broadcasting_chain_on_the_gpu():
    rng = np.random.default_rng(9)
    xn, yn = rng.standard_normal((32, 24)).astype(np.float32), rng.standard_normal((32, 1)).astype(np.float32)

    def fn(x, y):
        r = 1.0 / dg.sqrt(y * y + 1.0)
        h = (x - y) * r
        return (h * h).sum(axis=1), (h + 1.0).max(axis=0, keepdims=True), r, h * 2.0
    cpu = [a.numpy() for a in dg.function(fn)(dg.tensor(xn), dg.tensor(yn))]
    gpu = dg.device("gpu")
    f = dg.function(fn)
    got = [a.cpu().numpy() for a in f(dg.tensor(xn, device=gpu), dg.tensor(yn, device=gpu))]
    for g, c in zip(got, cpu):
        assert g.shape == c.shape and g.dtype == c.dtype
        np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-6)
