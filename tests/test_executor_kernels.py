"""where(mask, a, 0) (ReLU backward) as the where_zero / where_colsum kernel ops and their C select loops,
exact like numpy's where."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph.kernels import native, where_zero as wz

needs_cc = pytest.mark.skipif(not native.available(), reason="no C compiler (or libmvec) here")


def _cases(dtype, shape, rng):
    a = rng.standard_normal(shape).astype(dtype)
    m = rng.standard_normal(shape) > 0
    flat_a, flat_m = a.reshape(-1), m.reshape(-1)
    if flat_a.size >= 8:
        # non-finite and negative values under a False mask must give +0.0 (as where does), kept under True
        flat_a[:8] = [np.nan, np.inf, -np.inf, -1.5, np.nan, np.inf, -0.0, -2.0]
        flat_m[:8] = [False, False, False, False, True, True, True, True]
    return m, a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (5,), (8, 256), (3, 4, 5), (128, 256)])
def test_where_zero_bit_identical_to_where(dtype, shape):
    m, a = _cases(dtype, shape, np.random.default_rng(0))
    want = np.where(m, a, dtype(0))
    got = wz.where_zero(np, m, a)
    assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
    assert got.tobytes() == want.tobytes()  # +0.0 vs -0.0 and NaN payloads included


@pytest.mark.parametrize("layout", ["a_fortran", "m_fortran", "broadcast_mask", "float_mask"])
def test_where_zero_other_layouts_fall_back_exactly(layout):
    rng = np.random.default_rng(1)
    m, a = _cases(np.float32, (16, 12), rng)
    if layout == "a_fortran":
        a = np.asfortranarray(a)
    elif layout == "m_fortran":
        m = np.asfortranarray(m)
    elif layout == "broadcast_mask":
        m = m[:1]
    want = np.where(m, a, np.float32(0))
    if layout == "float_mask":
        want = np.where(m.astype(bool), a, np.float32(0))
    got = wz.where_zero(np, m.astype(np.float32) if layout == "float_mask" else m, a)
    # the fallback is a multiply by the mask: same values, zero sign may differ
    np.testing.assert_array_equal(got, want)


@needs_cc
def test_generated_where_zero_kernel_handles_noncontiguous_runtime_arrays():
    m, a = _cases(np.float32, (6, 10), np.random.default_rng(2))
    run = wz.c_where_zero(np.dtype(np.float32))
    want = np.where(m, a, np.float32(0))
    assert run(m, a).tobytes() == want.tobytes()
    np.testing.assert_array_equal(run(np.asfortranarray(m), np.asfortranarray(a)), want)
    np.testing.assert_array_equal(run(m[::2], a[::2]), want[::2])


def _relu_mlp(batch, dtype=np.float32, n_in=784, n_hidden=256, seed=0):
    rng = np.random.default_rng(seed)
    xn = rng.standard_normal((batch, n_in)).astype(dtype)
    wn = (rng.standard_normal((n_hidden, n_in)) * 0.05).astype(dtype)   # PyTorch layout (out, in)
    bn = (rng.standard_normal(n_hidden) * 0.1).astype(dtype)
    w2n = (rng.standard_normal((10, n_hidden)) * 0.05).astype(dtype)

    x = dg.tensor(xn)
    ps = [dg.tensor(v.copy(), requires_grad=True) for v in (wn, bn, w2n)]

    def step():
        for p in ps:
            p.grad = None
        h = dg.relu(dg.nn.functional.linear(x, ps[0], ps[1]))
        loss = (dg.nn.functional.linear(h, ps[2]) ** 2).sum()
        loss.backward()
        return loss
    f = dg.function(step)

    def reference():
        h = xn @ wn.T + bn
        a = np.maximum(h, 0)
        z = a @ w2n.T
        dz = 2 * z
        dw2 = dz.T @ a
        dh = np.where(h > 0, dz @ w2n, 0)
        return (z ** 2).sum(), dh.T @ xn, dh.sum(0), dw2
    return f, ps, reference


def _optimized(f, args=()):
    """The optimized graph's text: which kernel ops the lower_kernels pass chose."""
    f(*args)
    return str(next(iter(f._cache.values())).opt)


@pytest.mark.parametrize("batch", [1, 3, 8, 128])
def test_relu_mlp_gradients_match_numpy(batch):
    f, ps, reference = _relu_mlp(batch)
    g = _optimized(f)
    assert "where_colsum(" in g or not native.available()  # relu backward + bias gradient
    loss, want = f(), reference()
    np.testing.assert_allclose(loss.numpy(), want[0], rtol=1e-4)
    for p, w in zip(ps, want[1:]):
        np.testing.assert_allclose(p.grad.numpy(), w, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("through_matmul", [False, True])
def test_relu_backward_with_nonfinite_gradient_under_false_mask_is_zero(through_matmul):
    # the upstream gradient is inf/NaN where relu was off: where() drops it, a multiply would give NaN
    # (the MLP tests check the graph's where_colsum kernel op; this one the values end to end)
    xn = np.array([[-1.0, 2.0, -3.0, 4.0], [1.0, -1.0, 0.5, -0.5]], np.float32)
    gn = np.array([[np.inf, 1.0, np.nan, -2.0], [1.0, -np.inf, 3.0, np.nan]], np.float32)
    wn = np.eye(4, dtype=np.float32)[::-1].copy()
    x = dg.tensor(xn, requires_grad=True)
    w = dg.tensor(wn)

    def step(g):
        x.grad = None
        h = dg.relu(x)
        ((h @ w) * g if through_matmul else h * g).sum().backward()
        return x.grad
    f = dg.function(step)
    got = f(dg.tensor(gn)).numpy()
    want = np.where(xn > 0, gn @ wn.T if through_matmul else gn, np.float32(0))
    np.testing.assert_array_equal(got, want)
    assert not np.signbit(got[xn <= 0]).any()  # +0.0, as where gives


def test_a_constant_output_is_the_callers_own_copy():
    f = dg.function(lambda x: (x * 2, dg.tensor(3.0) * 2, dg.tensor([1.0, 2.0]) + 1))
    x = dg.zeros(2)
    _, a, b = f(x)
    a += 1
    b += 10
    _, a2, b2 = f(x)
    assert a2.item() == 6.0 and b2.numpy().tolist() == [2.0, 3.0]


@needs_cc
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [0, 1, 3, 128])
def test_relu_backward_and_its_bias_gradient_in_one_pass_are_bit_identical(dtype, rows):
    rng = np.random.default_rng(11)
    m, a = _cases(dtype, (rows, 37), rng)
    if rows == 1:
        a[0, :3] = [-0.0, -0.0, 1.0]
        m[0, :3] = True
    f = dg.function(lambda m, a: (dg.where(m, a, 0.0) * 1.0, dg.where(m, a, 0.0).sum(0)))
    g = _optimized(f, [dg.tensor(m), dg.tensor(a)])
    assert "where_colsum(" in g and "= sum(" not in g
    r, s = f(dg.tensor(m), dg.tensor(a))
    want = np.where(m, a, dtype(0))
    assert np.array_equal(r.numpy(), want, equal_nan=True)
    assert np.array_equal(np.signbit(r.numpy()), np.signbit(want))
    want_s = np.add.reduce(want, axis=0)
    assert np.array_equal(s.numpy(), want_s, equal_nan=True)
    assert np.array_equal(np.signbit(s.numpy()), np.signbit(want_s))
