"""Compiled == eager on both sides of every C-kernel threshold (shapes with leading 1s, rank differences,
rows, columns, non-contiguous and empty inputs), forward and gradient, against numpy references; and
the C loops' own guards (the where(mask, g, 0) loops, cross-entropy's loops) on the layouts and sizes
they must refuse."""
import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.kernels import native
from dualgraph.kernels import where_zero as wz, xent
from dualgraph.kernels import ckernel

HAVE_CC = native.available()
LONG, SHORT = ckernel.MIN_SIZE, ckernel.MIN_SIZE_SHORT


def _unbroadcast(g, shape):
    """Sum g down to `shape` (numpy's broadcasting undone): the gradient of a broadcast input."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for ax, d in enumerate(shape):
        if d == 1 and g.shape[ax] != 1:
            g = g.sum(axis=ax, keepdims=True)
    return g


# name, fn, numpy forward, numpy d(sum(y*w))/d(a, b) given (a, b, y, w); minimum size for the C loop
CHAINS = {
    "tanh": (lambda a, b: dg.tanh(a * 2.0 + b),
             lambda a, b: np.tanh(a * 2 + b),
             lambda a, b, y, w: (w * 2 * (1 - y * y), w * (1 - y * y)), "long"),
    "where": (lambda a, b: dg.where(b > a, b, a * 0.5),
              lambda a, b: np.where(b > a, b, a * 0.5),
              lambda a, b, y, w: (np.where(b > a, 0.0, 0.5 * w), np.where(b > a, w, 0.0)), "long"),
    "short": (lambda a, b: a * 3.0 + b,
              lambda a, b: a * 3 + b,
              lambda a, b, y, w: (3 * w, w + 0 * a), "short"),
}

# input shapes as functions of the result's element count n (chosen divisible by 64)
PATTERNS = {
    "vector_and_1x1": lambda n: ((n,), (1, 1)),
    "vector_and_1x1x1": lambda n: ((n,), (1, 1, 1)),
    "1x1_and_vector": lambda n: ((1, 1), (n,)),
    "matrix_and_1x1x1": lambda n: ((2, n // 2), (1, 1, 1)),
    "1xn_and_vector": lambda n: ((1, n), (n,)),
    "vector_and_1xn": lambda n: ((n,), (1, n)),
    "matrix_and_row": lambda n: ((n // 64, 64), (64,)),
    "matrix_and_1x1xrow": lambda n: ((n // 64, 64), (1, 1, 64)),
    "row_and_matrix": lambda n: ((1, 64), (n // 64, 64)),
    "1xmatrix_and_matrix": lambda n: ((1, n // 64, 64), (n // 64, 64)),
    "matrix_and_column": lambda n: ((n // 64, 64), (n // 64, 1)),
    "matrix_and_scalar": lambda n: ((n // 64, 64), ()),
}


def _sizes(kind):
    t = LONG if kind == "long" else SHORT
    return [t - 64, t + 64]  # multiples of 64 on both sides of the threshold


def _data(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2, 2, s).astype(np.float32) for s in shapes]


def _check_forward_and_grads(name, shapes, seed=0):
    fn, np_fn, np_grad, _ = CHAINS[name]
    a, b = _data(shapes, seed)
    want = np_fn(a.astype(np.float64), b.astype(np.float64))
    w = np.random.default_rng(seed + 1).uniform(0.5, 1.5, want.shape).astype(np.float32)
    ga, gb = np_grad(a.astype(np.float64), b.astype(np.float64), want, w)
    want_grads = (_unbroadcast(ga, a.shape), _unbroadcast(gb, b.shape))

    cf = dg.function(fn)
    eager = fn(dg.tensor(a), dg.tensor(b)).numpy()
    got = cf(dg.tensor(a), dg.tensor(b)).numpy()
    assert eager.shape == want.shape
    assert got.shape == want.shape, f"compiled {got.shape}, eager {eager.shape}"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, eager, rtol=1e-5, atol=1e-6)  # libm's tanh and numpy's differ in ulps

    def grads(f, xs):
        xs = [x.detach().requires_grad_(True) for x in xs]
        y = f(*xs)
        return dg.autograd.grad((y * dg.tensor(w)).sum(), xs)

    # the compiled function's traced backward, and autograd.grad traced inside a function
    for gs in (grads(cf, [dg.tensor(a), dg.tensor(b)]),
               dg.function(lambda x, y: grads(fn, [x, y]))(dg.tensor(a), dg.tensor(b))):
        for g, want_g in zip(gs, want_grads):
            assert g.shape == want_g.shape
            np.testing.assert_allclose(g.numpy(), want_g, rtol=1e-4, atol=1e-3)


def test_the_reported_examples():
    a, b = dg.randn(9000), dg.randn(1, 1)
    for f in (lambda a, b: dg.tanh(a * 2.0 + b), lambda a, b: dg.where(b > a, b, a * 0.5)):
        assert dg.function(f)(a, b).shape == f(a, b).shape == (1, 9000)
        np.testing.assert_allclose(dg.function(f)(a, b).numpy(), f(a, b).numpy(), rtol=1e-6)
    # the gradient through the compiled function's backward (used to raise AxisError inside sum)
    x, y = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
    out = dg.function(lambda a, b: dg.tanh(a * 2.0 + b))(x, y)
    gx, gy = dg.autograd.grad((out * out).sum(), [x, y])
    t = np.tanh(a.numpy().astype(np.float64) * 2 + b.numpy())
    np.testing.assert_allclose(gy.numpy(), [[np.sum(2 * t * (1 - t * t))]], rtol=1e-4)
    np.testing.assert_allclose(gx.numpy(), 4 * t[0] * (1 - t[0] ** 2), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_compiled_matches_eager_on_both_sides_of_the_threshold(name, pattern):
    for n in _sizes(CHAINS[name][3]):
        _check_forward_and_grads(name, PATTERNS[pattern](n))


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_lowered_thresholds_send_small_tensors_through_the_same_checks(name, pattern):
    with ckernel.thresholds(0, 0):
        _check_forward_and_grads(name, PATTERNS[pattern](128))


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (or libmvec) here")
def test_the_c_loop_runs_above_the_threshold_and_not_below():
    fn = CHAINS["tanh"][0]
    for n, shapes, ran in [(LONG + 64, ((LONG + 64,), (1, 1)), True), (LONG - 64, ((LONG - 64,), (1, 1)), False),
                           (LONG + 64, ((1, LONG + 64), (LONG + 64,)), True)]:
        a, b = _data(shapes)
        before = ckernel.runs()["full"]
        dg.function(fn)(dg.tensor(a), dg.tensor(b))
        assert (ckernel.runs()["full"] > before) == ran, (n, shapes)
    # a column broadcast is read by strides in the loop as well
    before = ckernel.runs()["bcast"]
    a, b = _data(((LONG // 64 + 1, 64), (LONG // 64 + 1, 1)))
    dg.function(fn)(dg.tensor(a), dg.tensor(b))
    assert ckernel.runs()["bcast"] > before


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (or libmvec) here")
def test_thresholds_are_read_at_compile_time_and_restored():
    fn = CHAINS["tanh"][0]
    a, b = _data(((64,), (1,)))
    with ckernel.thresholds(0, 0):
        assert ckernel.MIN_SIZE == ckernel.MIN_SIZE_SHORT == 0
        before = sum(ckernel.RUNS.values())
        cf = dg.function(fn)
        cf(dg.tensor(a), dg.tensor(b))
        assert sum(ckernel.RUNS.values()) > before
    assert (ckernel.MIN_SIZE, ckernel.MIN_SIZE_SHORT) == (LONG, SHORT)
    with pytest.raises(RuntimeError):
        with ckernel.thresholds(1):
            assert ckernel.MIN_SIZE == 1 and ckernel.MIN_SIZE_SHORT == SHORT
            raise RuntimeError
    assert (ckernel.MIN_SIZE, ckernel.MIN_SIZE_SHORT) == (LONG, SHORT)


@pytest.mark.parametrize("lowered", [False, True])
def test_non_contiguous_and_empty_inputs(lowered):
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (96, LONG // 64)).astype(np.float32)
    b = rng.uniform(-2, 2, (96, 1)).astype(np.float32)
    f = lambda x, b: dg.tanh(x.T * 2.0 + b.T)   # reads transposed (non-contiguous) views
    with ckernel.thresholds(0, 0) if lowered else ckernel.thresholds():
        got = dg.function(f)(dg.tensor(x), dg.tensor(b)).numpy()
        np.testing.assert_allclose(got, np.tanh(x.T * 2 + b.T), rtol=1e-5, atol=1e-6)
        for shapes in [((0,), (1, 1)), ((0, 5), (5,)), ((1, 0), (3, 1, 1))]:
            a, c = _data(shapes)
            want = np.tanh(a * 2 + c)
            got = dg.function(CHAINS["tanh"][0])(dg.tensor(a), dg.tensor(c)).numpy()
            assert got.shape == want.shape == f_shape(shapes)


def f_shape(shapes):
    return np.broadcast_shapes(*shapes)


# ---- where(mask, g, 0) loops (ReLU backward, and its bias gradient) -----------------------------------

@pytest.mark.parametrize("x_shape", [(1, 64), (0, 64), (300, 64), (1, 1)])
def test_relu_bias_gradient_compiled_matches_numpy(x_shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((x_shape[1], 32)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)

    def g(x, w, b):
        w, b = w.detach().requires_grad_(True), b.detach().requires_grad_(True)
        h = dg.relu(x @ w + b)
        return dg.autograd.grad((h * h).sum(), [w, b])
    gw, gb = dg.function(g)(dg.tensor(x), dg.tensor(w), dg.tensor(b))
    h = np.maximum(x.astype(np.float64) @ w + b, 0)
    np.testing.assert_allclose(gb.numpy(), (2 * h).sum(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gw.numpy(), x.T.astype(np.float64) @ (2 * h), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (or libmvec) here")
def test_where_loops_run_and_refuse_what_they_cannot_read():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 10)).astype(np.float32)
    m = rng.random((6, 10)) < 0.5
    zero, colsum = wz.c_where_zero(np.dtype(np.float32)), wz.c_where_colsum(np.dtype(np.float32))
    before = dict(wz.RUNS)
    np.testing.assert_array_equal(zero(m, a), np.where(m, a, 0))
    r, s = colsum(m, a)
    np.testing.assert_array_equal(r, np.where(m, a, 0))
    np.testing.assert_allclose(s, np.where(m, a, 0).sum(axis=0), rtol=1e-6)
    assert wz.RUNS["where_zero"] == before.get("where_zero", 0) + 1
    assert wz.RUNS["where_colsum"] == before.get("where_colsum", 0) + 1
    # a mask of another shape (a symbolic trace's sizes can disagree at run time), another dtype,
    # a non-contiguous array: numpy's broadcasting where, never a read past an array's end
    for mm, aa in [(m[:1], a), (m[:, :1], a), (m, a.astype(np.float64)), (m.T.copy().T, a), (m[:, ::2], a[:, ::2])]:
        want = np.where(mm, aa, 0)
        np.testing.assert_array_equal(zero(mm, aa), want)
        r, s = colsum(mm, aa)
        np.testing.assert_array_equal(r, want)
        np.testing.assert_allclose(s, want.sum(axis=0), rtol=1e-6)
    assert wz.RUNS["where_zero"] == before.get("where_zero", 0) + 1
    assert wz.RUNS["numpy"] == before.get("numpy", 0) + 10


# ---- cross-entropy's loops ---------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [True, False])
def test_nll_loss_sizes_that_disagree_at_run_time_raise_the_eager_error(fused):
    spec = [dg.TensorSpec([None, 10], "float32"), dg.TensorSpec([None], "int64")]
    if fused:
        f = dg.function(lambda z, t: F.cross_entropy(z, t), input_signature=spec)
    else:
        f = dg.function(lambda z, t: F.nll_loss(z, t, reduction="none"), input_signature=spec)
    rng = np.random.default_rng(6)
    for n, m in [(4, 3), (3, 5), (4, 1)]:
        z = dg.tensor(rng.standard_normal((n, 10)).astype(np.float32))
        t = dg.tensor(rng.integers(0, 10, m))
        with pytest.raises(dg.ShapeError, match=r"needs a target of shape \(%d,\), got \(%d,\)" % (n, m)):
            f(z, t)
    z = rng.standard_normal((4, 10)).astype(np.float32)
    t = rng.integers(0, 10, 4)
    lp = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    want = -lp[np.arange(4), t]
    got = f(dg.tensor(z), dg.tensor(t)).numpy()
    np.testing.assert_allclose(got, want.mean() if fused else -z[np.arange(4), t], rtol=1e-5)


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (or libmvec) here")
@pytest.mark.parametrize("n", [1, 128])
def test_cross_entropy_pair_runs_as_c_and_matches_numpy(n):
    rng = np.random.default_rng(7)
    z = rng.standard_normal((n, 10)).astype(np.float32)
    t = rng.integers(0, 10, n)

    def g(z, t):
        z = z.detach().requires_grad_(True)
        loss = F.cross_entropy(z, t)
        return loss, dg.autograd.grad(loss, [z])[0]
    before = dict(xent.RUNS)
    loss, dz = dg.function(g)(dg.tensor(z), dg.tensor(t))
    assert xent.RUNS["forward"] > before.get("forward", 0)
    assert xent.RUNS["backward"] > before.get("backward", 0)
    zz = z.astype(np.float64)
    p = np.exp(zz - zz.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(loss.numpy(), -np.log(p[np.arange(n), t]).mean(), rtol=1e-5)
    onehot = np.eye(10)[t]
    np.testing.assert_allclose(dz.numpy(), (p - onehot) / n, rtol=1e-4, atol=1e-6)


def test_against_torch_where_chain_gradient():
    torch = pytest.importorskip("torch")
    a, b = _data(((LONG + 64,), (1, 1)), seed=8)
    fn = CHAINS["where"][0]
    x, y = dg.tensor(a).requires_grad_(True), dg.tensor(b).requires_grad_(True)
    out = dg.function(fn)(x, y)
    gx, gy = dg.autograd.grad((out * out).sum(), [x, y])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    to = torch.where(tb > ta, tb, ta * 0.5)
    (to * to).sum().backward()
    assert tuple(out.shape) == tuple(to.shape)
    np.testing.assert_allclose(out.numpy(), to.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(gx.numpy(), ta.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gy.numpy(), tb.grad.numpy(), rtol=1e-4)
