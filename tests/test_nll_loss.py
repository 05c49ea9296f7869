"""The classifier tail as primitives: nll_loss / nll_loss_grad and log_softmax / log_softmax_grad.
Values and every gradient (log-probs, class weights, second order) against numpy and finite
differences, the C row loops against the numpy path, compiled and ONNX against eager, PyTorch when
installed."""
import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from op_db import np_nll_loss

REDUCTIONS = ("mean", "sum", "none")


def _case(rng, spatial=False, ignore=True):
    shape = (5, 4, 3) if spatial else (6, 4)
    lp = rng.standard_normal(shape)
    target = rng.integers(0, 4, (shape[0],) + shape[2:])
    if ignore:
        target.flat[1] = -100
    weight = rng.uniform(0.5, 2.0, 4)
    return lp, target, weight


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_values_and_gradients_against_numpy_and_finite_differences(reduction, spatial, weighted):
    rng = np.random.default_rng(0)
    lp, target, weight = _case(rng, spatial)
    w = weight if weighted else None
    out = F.nll_loss(dg.tensor(lp), dg.tensor(target), weight=None if w is None else dg.tensor(w), reduction=reduction)
    np.testing.assert_allclose(out.numpy(), np_nll_loss(lp, target, w, reduction=reduction), rtol=1e-12)
    t = dg.tensor(target)
    if weighted:
        fn = lambda a, b: F.nll_loss(a, t, weight=b, reduction=reduction)  # noqa: E731
        inputs = (dg.tensor(lp, requires_grad=True), dg.tensor(weight, requires_grad=True))
    else:
        fn = lambda a: F.nll_loss(a, t, reduction=reduction)  # noqa: E731
        inputs = (dg.tensor(lp, requires_grad=True),)
    assert dg.autograd.gradcheck(fn, inputs)
    assert dg.autograd.gradgradcheck(fn, inputs)


def test_log_probs_gradient_is_minus_weight_over_total_at_each_target():
    lp = np.zeros((3, 4))
    target = np.array([1, -100, 3])
    weight = np.array([1.0, 2.0, 3.0, 4.0])
    x = dg.tensor(lp, requires_grad=True)
    F.nll_loss(x, dg.tensor(target), weight=dg.tensor(weight)).backward()
    expected = np.zeros((3, 4))
    expected[0, 1], expected[2, 3] = -2.0 / 6.0, -4.0 / 6.0  # summed weight of the kept targets: 2 + 4
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-15)


def test_cross_entropy_through_the_primitive_matches_softmax_minus_onehot():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((8, 10)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    x = dg.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, dg.tensor(y))
    loss.backward()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(loss.numpy(), -np.log(p[np.arange(8), y]).mean(), rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), (p - np.eye(10)[y]) / 8, atol=1e-7)
    assert loss.grad_fn.name() == "NllLossBackward0"


def test_every_target_ignored_gives_nan_mean_and_zero_sum():
    x = dg.tensor(np.zeros((2, 3)), requires_grad=True)
    t = dg.tensor(np.array([-100, -100]))
    assert np.isnan(F.nll_loss(x, t).item())
    s = F.nll_loss(x, t, reduction="sum")
    s.backward()
    assert s.item() == 0.0 and not x.grad.numpy().any()


@pytest.mark.parametrize("bad", [4, -1])
def test_target_out_of_range_is_refused_eagerly_and_compiled(bad):
    x = dg.zeros(2, 4)
    t = dg.tensor(np.array([0, bad]))
    with pytest.raises(IndexError, match=r"nll_loss: target values must lie in \[0, 4\).*" + str(bad)):
        F.nll_loss(x, t)
    f = dg.function(lambda a, b: F.nll_loss(a, b))
    f(x, dg.tensor(np.array([0, 1])))
    with pytest.raises(IndexError, match="nll_loss") as info:
        f(x, t)
    assert "test_nll_loss.py" in str(info.value)  # the user's line


def test_bad_shapes_and_reduction_are_clear_errors():
    with pytest.raises(ValueError, match="nll_loss: input of shape \\(3, 4\\) needs a target of shape \\(3,\\)"):
        F.nll_loss(dg.zeros(3, 4), dg.tensor(np.array([0, 1])))
    with pytest.raises(ValueError, match="reduction"):
        F.nll_loss(dg.zeros(3, 4), dg.tensor(np.array([0, 1, 2])), reduction="avg")
    with pytest.raises(ValueError, match="weight must have shape \\(4,\\)"):
        F.nll_loss(dg.zeros(3, 4), dg.tensor(np.array([0, 1, 2])), weight=dg.ones(3))
    with pytest.raises(ValueError, match="class indices"):
        F.nll_loss(dg.zeros(3, 4), dg.zeros(3))


def test_unbatched_input_reduces_like_pytorch():
    lp = np.log(np.array([0.2, 0.5, 0.3]))
    out = F.nll_loss(dg.tensor(lp), dg.tensor(np.array(1)), reduction="none")
    assert out.shape == () and np.isclose(out.item(), -np.log(0.5))


@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_training_step_gradients_equal_eager(weighted):
    rng = np.random.default_rng(2)
    x = dg.tensor(rng.standard_normal((6, 5)).astype(np.float32))
    y = dg.tensor(np.array([0, 1, 2, -100, 1, 0]))
    weight = dg.tensor(np.array([1.0, 0.5, 2.0], np.float32)) if weighted else None

    def grads(w):
        w = w.detach().requires_grad_()
        loss = F.cross_entropy(x @ w, y, weight=weight)
        return (loss, *dg.autograd.grad(loss, [w]))
    w0 = dg.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    eager = grads(w0)
    compiled = dg.function(grads)(w0)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)
    # the backward is the primitive's (run with log_softmax_grad as one kernel op after lower_kernels)
    assert any(n.op.name == "nll_loss_grad" for n in dg.function(grads, disable=("lower_kernels",)).graph(w0).nodes)
    assert any(n.op.name == "nll_log_softmax_grad" for n in dg.function(grads).graph(w0).nodes)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_onnx_export_of_loss_and_its_gradient_agrees_with_eager(reduction, weighted):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(3)
    lp, target, weight = _case(rng, spatial=reduction == "none")
    lp = lp.astype(np.float32)
    wt = dg.tensor(weight.astype(np.float32)) if weighted else None
    t = dg.tensor(target)

    def loss_and_grad(a):
        a = a.detach().requires_grad_()
        loss = F.nll_loss(F.log_softmax(a, dim=1), t, weight=wt, reduction=reduction)
        g = dg.autograd.grad(loss.sum() if reduction == "none" else loss, [a])[0]
        return loss, g
    model = dg.onnx.export(loss_and_grad, (dg.tensor(lp),), None, verify=True)
    ops = {n.op_type for n in model.graph.node}
    assert "NegativeLogLikelihoodLoss" in ops


def test_matches_pytorch_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    lp, target, weight = _case(rng, spatial=True)
    for reduction in REDUCTIONS:
        tx = torch.tensor(lp, requires_grad=True)
        tl = torch.nn.functional.nll_loss(tx, torch.tensor(target), weight=torch.tensor(weight), reduction=reduction)
        tl.sum().backward()
        x = dg.tensor(lp, requires_grad=True)
        loss = F.nll_loss(x, dg.tensor(target), weight=dg.tensor(weight), reduction=reduction)
        loss.sum().backward()
        np.testing.assert_allclose(loss.numpy(), tl.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("shape", [(1024, 10), (600, 3, 7), (5, 10)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_over_many_short_rows_matches_reference(shape, dtype):
    # the classifier shape takes a column-wise max and a BLAS row sum instead of numpy's reductions
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 30).astype(dtype)
    x.reshape(-1, shape[-1])[1] = -np.inf
    x.reshape(-1, shape[-1])[2, 3] = np.nan
    x.reshape(-1, shape[-1])[3, 0] = np.inf
    with np.errstate(all="ignore"):
        got = F.log_softmax(dg.tensor(x), dim=-1).numpy()
        x64 = x.astype(np.float64)
        m = np.max(x64, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        want = (x64 - m) - np.log(np.exp(x64 - m).sum(-1, keepdims=True))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    assert np.isnan(got.reshape(-1, shape[-1])[[1, 2]]).all()  # as PyTorch: an all -inf row is NaN


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8, 10), (3, 4, 5), (1, 1), (2, 3000)])
def test_log_softmax_c_rows_agree_with_the_numpy_path(monkeypatch, dtype, shape):
    from dualgraph.kernels import native
    from dualgraph.ops import softmax
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(shape) * 20).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    if x.shape[-1] > 3:
        x.reshape(-1, shape[-1])[0, 2] = np.nan
        x.reshape(-1, shape[-1])[-1, 1] = -np.inf

    def run():
        xt = dg.tensor(x, requires_grad=True)
        y = F.log_softmax(xt, dim=-1)
        y.backward(dg.tensor(g))
        return y.numpy(), xt.grad.numpy()
    with np.errstate(all="ignore"):
        fast = run()
        if native.available():
            assert softmax._ROWS.built[np.dtype(dtype)] is not None
        monkeypatch.setattr(softmax, "_ROWS", lambda dtype: None)
        slow = run()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(fast, slow):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_log_softmax_over_a_middle_axis_and_a_transposed_input():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 6, 5))
    for xt, axis in ((dg.tensor(x), 1), (dg.tensor(x).permute(0, 2, 1), -1)):
        xn = xt.numpy()
        want = xn - xn.max(axis, keepdims=True)
        want = want - np.log(np.exp(want).sum(axis, keepdims=True))
        np.testing.assert_allclose(F.log_softmax(xt, dim=axis).numpy(), want, rtol=1e-12)
        assert dg.autograd.gradgradcheck(lambda a: F.log_softmax(a, dim=axis) * dg.tensor(xn), (
            xt.detach().requires_grad_(),))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_c_loop_agrees_with_the_numpy_path(monkeypatch, dtype, reduction, weighted):
    from dualgraph.ops import loss
    rng = np.random.default_rng(8)
    lp = rng.standard_normal((33, 7)).astype(dtype)
    target = rng.integers(0, 7, 33)
    target[[0, 5]] = -100
    weight = dg.tensor(rng.uniform(0.5, 2, 7).astype(dtype)) if weighted else None

    def run():
        x = dg.tensor(lp, requires_grad=True)
        out = F.nll_loss(x, dg.tensor(target), weight=weight, reduction=reduction)
        out.backward(dg.tensor(rng_g.standard_normal(out.shape).astype(dtype)))
        return out.numpy(), x.grad.numpy()
    rng_g = np.random.default_rng(9)
    fast = run()
    c_ran = loss._NLL.built.get(np.dtype(dtype)) is not None
    monkeypatch.setattr(loss, "_c_path", lambda *a: False)
    rng_g = np.random.default_rng(9)
    slow = run()
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    from dualgraph.kernels import native
    assert c_ran or not native.available()


def test_every_target_ignored_gives_no_gradient_on_either_path(monkeypatch):
    from dualgraph.ops import loss
    for patched in (False, True):
        if patched:
            monkeypatch.setattr(loss, "_c_path", lambda *a: False)
        x = dg.tensor(np.zeros((2, 3), np.float32), requires_grad=True)
        out = F.nll_loss(x, dg.tensor(np.array([-100, -100])))
        out.backward()
        assert np.isnan(out.item()) and not x.grad.numpy().any()


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_compiled_cross_entropy_runs_fused_and_equals_eager_bit_for_bit(weighted, reduction):
    rng = np.random.default_rng(10)
    z0 = rng.standard_normal((16, 10)).astype(np.float32)
    y = dg.tensor(np.where(rng.random(16) < 0.2, -100, rng.integers(0, 10, 16)))
    weight = dg.tensor(rng.uniform(0.5, 2, 10).astype(np.float32)) if weighted else None

    def step(z):
        z = z.detach().requires_grad_()
        loss = F.cross_entropy(z, y, weight=weight, reduction=reduction)
        return (loss, *dg.autograd.grad(loss, [z]))
    f = dg.function(step)
    z = dg.tensor(z0)
    got, want = f(z), step(z)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    graph = str(next(iter(f._cache.values())).opt)
    assert "log_softmax_nll(" in graph and "nll_log_softmax_grad(" in graph
    from dualgraph.kernels import native, xent
    if native.available():
        before = dict(xent.RUNS)
        f(z)
        assert xent.RUNS["forward"] == before.get("forward", 0) + 1
        assert xent.RUNS["backward"] == before.get("backward", 0) + 1


def test_fused_cross_entropy_still_names_a_bad_target_and_the_users_line():
    f = dg.function(lambda z, t: F.cross_entropy(z, t))
    z = dg.zeros(3, 4)
    f(z, dg.tensor(np.array([0, 1, 2])))
    with pytest.raises(IndexError, match=r"nll_loss: target values must lie in \[0, 4\).*\[7\]") as info:
        f(z, dg.tensor(np.array([0, 7, 2])))
    assert "test_nll_loss.py" in str(info.value)


def test_log_probs_returned_too_are_still_right():
    z = dg.tensor(np.random.default_rng(12).standard_normal((5, 3)))
    t = dg.tensor(np.array([0, 2, 1, 1, 0]))
    f = dg.function(lambda z: (F.log_softmax(z, dim=1), F.nll_loss(F.log_softmax(z, dim=1), t)))
    for a, b in zip(f(z), (F.log_softmax(z, dim=1), F.nll_loss(F.log_softmax(z, dim=1), t))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
