"""layer_norm's C row loops (forward, and the one-pass backward record layer_norm_grad): values and
gradients against numpy's formula, finite differences (first and second order) and PyTorch; NaN/inf rows;
the numpy path (no C compiler) giving the same values."""
import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.autograd.check import gradcheck, gradgradcheck
from dualgraph.kernels import native
from dualgraph.kernels.norm import NORM
from dualgraph.ops import normalization as N

needs_cc = pytest.mark.skipif(not native.available(), reason="no C compiler")


def np_ln(x, n_axes, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - n_axes, x.ndim))
    x64 = x.astype(np.float64)
    m = x64.mean(axis=axes, keepdims=True)
    v = ((x64 - m) ** 2).mean(axis=axes, keepdims=True)
    y = (x64 - m) / np.sqrt(v + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y, m, 1 / np.sqrt(v + eps)


def np_ln_grad(g, x, n_axes, w=None, eps=1e-5):
    """dx, dweight, dbias by the textbook formula, in float64."""
    axes = tuple(range(x.ndim - n_axes, x.ndim))
    lead = tuple(range(x.ndim - n_axes))
    g, x = g.astype(np.float64), x.astype(np.float64)
    _, m, r = np_ln(x, n_axes, eps=eps)
    xhat = (x - m) * r
    gw = g * w if w is not None else g
    dx = r * (gw - gw.mean(axis=axes, keepdims=True) - xhat * (gw * xhat).mean(axis=axes, keepdims=True))
    return dx, (g * xhat).sum(axis=lead), g.sum(axis=lead)


def _both_paths(monkeypatch, fn):
    """fn() with the C loops, then with the numpy path (as without a compiler)."""
    a = fn()
    monkeypatch.setattr(N, "_NORM", lambda dtype: None)
    b = fn()
    monkeypatch.undo()
    return a, b


SHAPES = [((4, 7), 1), ((2, 3, 5), 2), ((8, 64, 128), 1), ((3, 1), 1), ((2, 4, 1000), 1)]


@pytest.mark.parametrize("shape,k", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [0, 1, 2])
def test_forward_matches_formula(shape, k, dtype, affine, monkeypatch):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    ws = shape[len(shape) - k:]
    w = rng.standard_normal(ws).astype(dtype) if affine >= 1 else None
    b = rng.standard_normal(ws).astype(dtype) if affine >= 2 else None
    y_ref, m_ref, r_ref = np_ln(x, k, w, b)
    tol = 1e-5 if dtype == np.float32 else 1e-12

    def run():
        y, m, r = N.layer_norm(dg.tensor(x), k, None if w is None else dg.tensor(w), None if b is None else dg.tensor(b))
        return y.numpy(), m.numpy(), r.numpy()

    for y, m, r in _both_paths(monkeypatch, run):
        assert y.dtype == dtype and m.shape == m_ref.shape and r.shape == r_ref.shape
        np.testing.assert_allclose(y, y_ref, rtol=tol * 10, atol=tol * 10)
        np.testing.assert_allclose(m, m_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(r, r_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape,k", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [False, True])
def test_backward_record_matches_formula(shape, k, dtype, affine, monkeypatch):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(shape[len(shape) - k:]).astype(dtype) if affine else None
    dx_ref, dw_ref, db_ref = np_ln_grad(g, x, k, w)
    _, m, r = N.layer_norm(dg.tensor(x), k)
    tol = 2e-4 if dtype == np.float32 else 1e-10

    def run():
        out = N.layer_norm_grad(dg.tensor(g), dg.tensor(x), m, r, None if w is None else dg.tensor(w), k)
        return [o.numpy() for o in out]

    for dx, dw, db in _both_paths(monkeypatch, run):
        assert dx.dtype == dtype and dw.shape == dw_ref.shape
        np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(dw, dw_ref, rtol=tol, atol=tol * np.sqrt(x.size))
        np.testing.assert_allclose(db, db_ref, rtol=tol, atol=tol * np.sqrt(x.size))


@pytest.mark.parametrize("affine", [0, 1, 2])
@pytest.mark.parametrize("shape,ns", [((3, 5), (5,)), ((2, 3, 4), (3, 4))])
def test_first_and_second_order_by_finite_differences(shape, ns, affine):
    rng = np.random.default_rng(2)
    x = dg.tensor(rng.standard_normal(shape), requires_grad=True)
    w = dg.tensor(rng.standard_normal(ns), requires_grad=True)
    b = dg.tensor(rng.standard_normal(ns), requires_grad=True)
    ins = [x] + ([w] if affine >= 1 else []) + ([b] if affine >= 2 else [])

    def f(*a):
        return F.layer_norm(a[0], ns, *a[1:])

    assert gradcheck(f, ins)
    assert gradgradcheck(f, ins)


def test_statistics_outputs_differentiate_twice():
    """The mean and rstd outputs carry their own cotangents (a loss on them), through the record too."""
    rng = np.random.default_rng(3)
    x = dg.tensor(rng.standard_normal((3, 6)), requires_grad=True)
    w = dg.tensor(rng.standard_normal(6), requires_grad=True)

    def f(x, w):
        y, m, r = N.layer_norm(x, 1, w)
        return (y * y).sum() + (m * r).sum() + (r * r).sum()

    assert gradcheck(f, [x, w])
    assert gradgradcheck(f, [x, w])


def test_grad_record_differentiates_by_finite_differences():
    rng = np.random.default_rng(4)
    g = dg.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    x = dg.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    m = dg.tensor(rng.standard_normal((4, 1)), requires_grad=True)
    r = dg.tensor(rng.uniform(0.5, 2, (4, 1)), requires_grad=True)
    w = dg.tensor(rng.standard_normal(5), requires_grad=True)
    assert gradcheck(lambda *a: N.layer_norm_grad(*a, 1), [g, x, m, r, w])
    assert gradcheck(lambda *a: N.layer_norm_grad(*a, None, 1), [g, x, m, r])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_rows_as_numpy_formula(bad, monkeypatch):
    x = np.random.default_rng(5).standard_normal((4, 9)).astype(np.float32)
    x[1, 3] = bad
    g = np.ones_like(x)

    def run():
        t = dg.tensor(x, requires_grad=True)
        y = F.layer_norm(t, (9,))
        y.backward(dg.tensor(g))
        return y.numpy(), t.grad.numpy()

    (y, gx), (y2, gx2) = _both_paths(monkeypatch, run)
    assert np.isnan(y[1]).all() and np.isnan(gx[1]).all()
    assert np.isfinite(y[[0, 2, 3]]).all() and np.isfinite(gx[[0, 2, 3]]).all()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y2))
    np.testing.assert_allclose(y[[0, 2, 3]], y2[[0, 2, 3]], rtol=1e-5, atol=1e-5)


def test_non_contiguous_and_integer_inputs_take_the_numpy_path():
    x = np.random.default_rng(6).standard_normal((6, 8))
    xt = x.T  # not C-contiguous
    y = F.layer_norm(dg.tensor(xt), (6,)).numpy()
    np.testing.assert_allclose(y, np_ln(xt, 1)[0], rtol=1e-10, atol=1e-10)
    xi = np.arange(12).reshape(3, 4)
    y = F.layer_norm(dg.tensor(xi), (4,)).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np_ln(xi.astype(np.float64), 1)[0], rtol=1e-5, atol=1e-5)


def test_no_compiler_path(monkeypatch):
    """DUALGRAPH_NO_CC=1: Loops build nothing, and layer_norm still gives the formula's values."""
    monkeypatch.setenv("DUALGRAPH_NO_CC", "1")
    native._reset()
    try:
        from dualgraph.kernels.native import Loops
        fresh = Loops(NORM.template, NORM.signatures)
        assert fresh(np.float32) is None
        monkeypatch.setattr(N, "_NORM", fresh)
        x = dg.tensor(np.random.default_rng(7).standard_normal((5, 6)), requires_grad=True)
        y = F.layer_norm(x, (6,))
        (y * y).sum().backward()
        np.testing.assert_allclose(y.numpy(), np_ln(x.numpy(), 1)[0], rtol=1e-10)
        dx, _, _ = np_ln_grad(2 * y.numpy(), x.numpy(), 1)
        np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-8, atol=1e-10)
    finally:
        monkeypatch.undo()
        native._reset()


@needs_cc
def test_c_loop_is_used_for_contiguous_float_rows():
    assert NORM(np.float32) is not None and NORM(np.float64) is not None
    assert NORM(np.int32) is None


def test_compiled_step_matches_eager():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    w0 = rng.standard_normal(16).astype(np.float32)

    def step(x, w):
        return (F.layer_norm(x, (16,), w) ** 2).sum()

    w = dg.tensor(w0, requires_grad=True)
    xe = dg.tensor(x, requires_grad=True)
    step(xe, w).backward()
    cf = dg.function(lambda x, w: dg.autograd.grad(step(x, w), [x, w]))
    gx, gw = cf(dg.tensor(x, requires_grad=True), dg.tensor(w0, requires_grad=True))
    np.testing.assert_allclose(gx.numpy(), xe.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw.numpy(), w.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,ns", [((8, 64, 128), (128,)), ((5, 3, 4), (3, 4))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_torch(shape, ns, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(ns).astype(dtype)
    b = rng.standard_normal(ns).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.layer_norm(tx, ns, tw, tb)
    ty.backward(torch.tensor(g))
    dx, dw, db = (dg.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.layer_norm(dx, ns, dw, db)
    y.backward(dg.tensor(g))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=tol, atol=tol)
    for a, t in ((dx, tx), (dw, tw), (db, tb)):
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=tol * 10, atol=tol * 10)


# ---- batch_norm ----------------------------------------------------------------------------------------

def np_bn(x, w=None, b=None, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    x64 = x.astype(np.float64)
    m = x64.mean(axis=axes, keepdims=True)
    v = x64.var(axis=axes, keepdims=True)
    y = (x64 - m) / np.sqrt(v + eps)
    if w is not None:
        y = y * w.reshape(shape)
    if b is not None:
        y = y + b.reshape(shape)
    return y, m, v


def np_bn_grad(g, x, w=None, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    g, x = g.astype(np.float64), x.astype(np.float64)
    _, m, v = np_bn(x, eps=eps)
    r = 1 / np.sqrt(v + eps)
    xhat = (x - m) * r
    wr = w.reshape(shape) if w is not None else 1
    dx = wr * r * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return dx, (g * xhat).sum(axis=axes), g.sum(axis=axes)


BN_SHAPES = [(4, 3), (2, 3, 5), (8, 16, 6, 6), (3, 2, 1, 1)]


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm_values_and_grads_on_both_paths(shape, dtype, affine, monkeypatch):
    rng = np.random.default_rng(10)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    w = rng.standard_normal(c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    y_ref = np_bn(x, w, b)[0]
    dx_ref, dw_ref, db_ref = np_bn_grad(g, x, w)
    tol = 2e-4 if dtype == np.float32 else 1e-10

    def run():
        ins = [dg.tensor(x, requires_grad=True)] + ([dg.tensor(w, requires_grad=True), dg.tensor(b, requires_grad=True)]
                                                   if affine else [])
        y = F.batch_norm(ins[0], None, None, *ins[1:], training=True)
        y.backward(dg.tensor(g))
        return [y.numpy()] + [t.grad.numpy() for t in ins]

    a = run()
    monkeypatch.setattr(N, "_BN", lambda dtype: None)
    b_ = run()
    monkeypatch.undo()
    for y, *grads in (a, b_):
        assert y.dtype == dtype
        np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(grads[0], dx_ref, rtol=tol, atol=tol)
        if affine:
            np.testing.assert_allclose(grads[1], dw_ref, rtol=tol, atol=tol * np.sqrt(x.size))
            np.testing.assert_allclose(grads[2], db_ref, rtol=tol, atol=tol * np.sqrt(x.size))


@pytest.mark.parametrize("affine", [0, 1, 2])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2)])
def test_batch_norm_first_and_second_order(shape, affine):
    rng = np.random.default_rng(11)
    c = shape[1]
    x = dg.tensor(rng.standard_normal(shape), requires_grad=True)
    w = dg.tensor(rng.standard_normal(c), requires_grad=True)
    b = dg.tensor(rng.standard_normal(c), requires_grad=True)
    ins = [x] + ([w] if affine >= 1 else []) + ([b] if affine >= 2 else [])

    def f(*a):
        return F.batch_norm(a[0], None, None, *a[1:], training=True)

    def with_stats(*a):
        y, m, r = N.batch_norm(a[0], *a[1:])
        return (y * y).sum() + (m * r).sum() + (r * r).sum()

    assert gradcheck(f, ins) and gradgradcheck(f, ins)
    assert gradcheck(with_stats, ins) and gradgradcheck(with_stats, ins)


def test_batch_norm_nan_channel_stays_in_its_channel():
    x = np.random.default_rng(12).standard_normal((4, 3, 5)).astype(np.float32)
    x[2, 1, 3] = np.nan
    y = F.batch_norm(dg.tensor(x), None, None, training=True).numpy()
    assert np.isnan(y[:, 1]).all()
    np.testing.assert_allclose(y[:, [0, 2]], np_bn(x)[0][:, [0, 2]], rtol=1e-4, atol=1e-5)


def test_batch_norm_running_stats_and_eval():
    """running = (1 - momentum) * running + momentum * statistic, the variance unbiased; eval uses them."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((6, 3, 4)) * 3 + 1
    rm, rv = dg.tensor(np.zeros(3)), dg.tensor(np.ones(3))
    F.batch_norm(dg.tensor(x), rm, rv, training=True, momentum=0.25)
    np.testing.assert_allclose(rm.numpy(), 0.25 * x.mean(axis=(0, 2)), rtol=1e-10)
    np.testing.assert_allclose(rv.numpy(), 0.75 + 0.25 * x.var(axis=(0, 2), ddof=1), rtol=1e-9)
    y = F.batch_norm(dg.tensor(x), rm, rv, training=False).numpy()
    np.testing.assert_allclose(y, (x - rm.numpy()[:, None]) / np.sqrt(rv.numpy()[:, None] + 1e-5), rtol=1e-10)
    with pytest.raises(dg.errors.ShapeError, match="more than 1 value per channel"):
        F.batch_norm(dg.tensor(np.ones((1, 3))), rm, rv, training=True)


def test_batchnorm_modules_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    for cls, shape in (("BatchNorm1d", (8, 4, 5)), ("BatchNorm2d", (4, 3, 5, 5))):
        c = shape[1]
        m, tm = getattr(dg.nn, cls)(c), getattr(torch.nn, cls)(c)
        for momentum in (0.1, None):
            m.momentum = tm.momentum = momentum
            for _ in range(2):
                x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
                g = rng.standard_normal(shape).astype(np.float32)
                xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
                y, ty = m(xd), tm(xt)
                y.backward(dg.tensor(g))
                ty.backward(torch.tensor(g))
                np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-4)
                np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-4)
                np.testing.assert_allclose(m.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-4, atol=1e-3)
                m.weight.grad = None
                tm.weight.grad = None
            np.testing.assert_allclose(m.running_mean.numpy(), tm.running_mean.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(m.running_var.numpy(), tm.running_var.numpy(), rtol=1e-4, atol=1e-5)
        m.eval()
        tm.eval()
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(m(dg.tensor(x)).numpy(), tm(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_batchnorm_compiled_step_matches_eager():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((4, 3, 6)).astype(np.float32)
    w0 = rng.standard_normal(3).astype(np.float32)

    def step(x, w):
        return (F.batch_norm(x, None, None, w, training=True) ** 2).sum()

    xe, we = dg.tensor(x, requires_grad=True), dg.tensor(w0, requires_grad=True)
    step(xe, we).backward()
    cf = dg.function(lambda x, w: dg.autograd.grad(step(x, w), [x, w]))
    gx, gw = cf(dg.tensor(x, requires_grad=True), dg.tensor(w0, requires_grad=True))
    np.testing.assert_allclose(gx.numpy(), xe.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw.numpy(), we.grad.numpy(), rtol=1e-5, atol=1e-5)
