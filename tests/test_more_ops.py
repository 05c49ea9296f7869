"""The math, statistics and tensor-utility ops (ops/math.py, ops/stats.py, ops/tensor_ops.py) and the Tensor
methods bound in dualgraph/_more_methods.py: what the op table does not cover (the in-place rule, shape
in-place ops, value-sized ops under tracing, warnings, storage queries, errors), each checked by hand or with
numpy, and against PyTorch where it is installed."""
import math
import mmap
import os
import warnings

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F


def _torch():
    return pytest.importorskip("torch")


# ---- the in-place rule ------------------------------------------------------------------------------

def test_inplace_methods_write_into_the_tensor_and_bump_its_version():
    x = dg.tensor([0.25, 1.0, 4.0])
    data = x._data
    v = x._version[0]
    assert x.sqrt_() is x
    assert x._data is data, "an in-place op writes into the tensor's own buffer"
    np.testing.assert_allclose(x.numpy(), [0.5, 1.0, 2.0])
    assert x._version[0] == v + 1
    y = dg.tensor([1.0, 2.0])
    y.lerp_(dg.tensor([3.0, 6.0]), 0.5)
    np.testing.assert_allclose(y.numpy(), [2.0, 4.0])
    z = dg.tensor([1.0, -2.0])
    z.pow_(2).neg_().abs_()
    np.testing.assert_allclose(z.numpy(), [1.0, 4.0])


def test_every_torch_inplace_method_with_an_out_of_place_twin_exists():
    for name in ("abs_", "exp_", "log_", "pow_", "sqrt_", "neg_", "sigmoid_", "tanh_", "relu_", "sin_", "cos_",
                 "floor_", "ceil_", "round_", "trunc_", "reciprocal_", "rsqrt_", "sign_", "erf_", "log1p_",
                 "expm1_", "square_", "clamp_min_", "clamp_max_", "atan2_", "hypot_", "fmod_", "remainder_",
                 "lerp_", "nan_to_num_", "xlogy_", "copysign_", "lt_", "eq_", "logical_not_", "cumsum_",
                 "unsqueeze_", "squeeze_", "transpose_", "t_", "index_copy_", "masked_scatter_"):
        assert callable(getattr(dg.Tensor, name, None)), name


def test_inplace_result_that_cannot_be_cast_back_is_an_error_as_in_pytorch():
    x = dg.arange(3)
    with pytest.raises(dg.DTypeError, match="exp_.*float32.*int64"):
        x.exp_()
    np.testing.assert_array_equal(x.numpy(), [0, 1, 2])   # unchanged
    f = dg.tensor([1.0, 2.0, 3.0])
    f.lt_(2.5)  # a comparison written back in the tensor's dtype, as PyTorch
    assert f.dtype == dg.float32
    np.testing.assert_array_equal(f.numpy(), [1.0, 1.0, 0.0])


def test_inplace_on_a_leaf_that_requires_grad_raises():
    w = dg.ones(3, requires_grad=True)
    with pytest.raises(dg.AutogradError, match="exp_"):
        w.exp_()
    with pytest.raises(dg.AutogradError, match="unsqueeze_"):
        w.unsqueeze_(0)


def test_inplace_on_a_non_leaf_differentiates_through_the_write():
    w = dg.tensor([0.5, 1.0], requires_grad=True)
    y = w * 2
    y.exp_()
    y.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * np.exp([1.0, 2.0]), rtol=1e-6)


def test_inplace_inside_a_function_is_traced_as_a_rebinding():
    @dg.function
    def f(x):
        y = x * 1.0
        y.sin_()
        y.clamp_min_(0.0)
        return y

    x = dg.tensor([-1.0, 0.5, 2.0])
    np.testing.assert_allclose(f(x).numpy(), np.maximum(np.sin([-1.0, 0.5, 2.0]), 0), rtol=1e-6)


def test_shape_inplace_ops_change_the_shape_and_keep_the_history():
    x = dg.zeros(2, 3)
    assert x.unsqueeze_(0) is x and x.shape == (1, 2, 3)
    x.squeeze_(0)
    x.t_()
    assert x.shape == (3, 2)
    x.transpose_(0, 1)
    assert x.shape == (2, 3)
    w = dg.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    y = w * 3
    y.squeeze_()
    assert y.shape == (3,)
    (y * dg.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [[3.0, 6.0, 9.0]])

    @dg.function
    def g(a):
        b = a * 1
        b.unsqueeze_(0)
        return b
    with pytest.raises(dg.DualgraphError, match="unsqueeze_.*out-of-place"):
        g(dg.ones(2))


# ---- elementwise math: hand values and torch ---------------------------------------------------------

def test_math_hand_values():
    np.testing.assert_allclose(dg.log2(dg.tensor([8.0])).numpy(), [3.0])
    np.testing.assert_allclose(dg.exp2(dg.tensor([3])).numpy(), [8.0])          # ints compute in float32
    assert dg.exp2(dg.tensor([3])).dtype == dg.float32
    np.testing.assert_allclose(dg.atan2(dg.tensor([1.0, 1.0, -1.0]), dg.tensor([1.0, -1.0, 0.0])).numpy(),
                               [math.pi / 4, 3 * math.pi / 4, -math.pi / 2], rtol=1e-6)
    np.testing.assert_allclose(dg.hypot(dg.tensor([3.0]), dg.tensor([4.0])).numpy(), [5.0])
    np.testing.assert_allclose(dg.fmod(dg.tensor([-7, 7]), dg.tensor([3, -3])).numpy(), [-1, 1])
    np.testing.assert_allclose(dg.remainder(dg.tensor([-7, 7]), dg.tensor([3, -3])).numpy(), [2, -2])
    np.testing.assert_allclose(dg.sinc(dg.tensor([0.0, 0.5])).numpy(), [1.0, 2 / math.pi], rtol=1e-6)
    np.testing.assert_allclose(dg.erfinv(dg.erf(dg.tensor([0.3, -1.2], dtype=dg.float64))).numpy(), [0.3, -1.2])
    assert dg.signbit(dg.tensor([-0.0, 0.0, -1.0])).tolist() == [True, False, True]
    np.testing.assert_allclose(dg.xlogy(dg.tensor([0.0, 2.0]), dg.tensor([0.0, math.e])).numpy(), [0.0, 2.0])
    assert math.isnan(dg.xlogy(dg.tensor([0.0]), dg.tensor([float("nan")])).item())
    out = dg.nan_to_num(dg.tensor([float("nan"), float("inf"), -float("inf"), 1.0]))
    big = np.finfo(np.float32).max
    np.testing.assert_array_equal(out.numpy(), np.array([0.0, big, -big, 1.0], np.float32))
    assert dg.heaviside(dg.tensor([-1.0, 0.0, 2.0]), dg.tensor(0.5)).tolist() == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(dg.lerp(dg.tensor([0.0, 10.0]), dg.tensor([10.0, 20.0]), dg.tensor([0.5, 0.1])).numpy(),
                               [5.0, 11.0])
    np.testing.assert_allclose(dg.frac(dg.tensor([-1.25, 2.5])).numpy(), [-0.25, 0.5])
    with pytest.raises(dg.DTypeError, match="frac"):
        dg.frac(dg.tensor([1, 2]))
    with pytest.raises(dg.DTypeError, match="heaviside"):
        dg.heaviside(dg.tensor([1.0]), dg.tensor([1]))


def test_sinc_and_copysign_gradients_at_zero_are_pytorchs():
    x = dg.tensor([0.0, 1.5], requires_grad=True)
    dg.sinc(x).sum().backward()
    assert x.grad.numpy()[0] == 0.0
    a = dg.tensor([0.0, -2.0], requires_grad=True)
    dg.copysign(a, dg.tensor([-1.0, 1.0])).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, -1.0])


def test_math_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.9, 0.9, (3, 4)).astype(np.float32)
    y = rng.uniform(0.2, 2.0, (3, 4)).astype(np.float32)
    for name in ("log2", "log10", "exp2", "sinh", "cosh", "asin", "arccos", "atan", "asinh", "atanh", "erfc",
                 "erfinv", "sinc", "deg2rad", "rad2deg", "signbit", "frac", "nan_to_num"):
        got = getattr(dg, name)(dg.tensor(x)).numpy()
        want = getattr(torch, name)(torch.tensor(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(getattr(dg.tensor(x), name)().numpy(), want, rtol=2e-6, atol=1e-6)
    for name in ("atan2", "arctan2", "hypot", "fmod", "remainder", "logaddexp", "logaddexp2", "xlogy", "copysign",
                 "floor_divide"):
        got = getattr(dg, name)(dg.tensor(x), dg.tensor(y)).numpy()
        want = getattr(torch, name)(torch.tensor(x), torch.tensor(y)).numpy()
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(getattr(dg.tensor(x), name)(dg.tensor(y)).numpy(), want, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(dg.acosh(dg.tensor(y + 1)).numpy(), torch.acosh(torch.tensor(y + 1)).numpy(), rtol=1e-6)
    t = torch.tensor(x, requires_grad=True)
    torch.atan2(t, torch.tensor(y)).sum().backward()
    d = dg.tensor(x, requires_grad=True)
    dg.atan2(d, dg.tensor(y)).sum().backward()
    np.testing.assert_allclose(d.grad.numpy(), t.grad.numpy(), rtol=1e-5)


# ---- comparisons, sets, statistics -------------------------------------------------------------------

def test_isclose_allclose_equal():
    a = dg.tensor([1.0, float("inf"), float("nan"), 1.0])
    b = dg.tensor([1.0 + 1e-7, float("inf"), float("nan"), float("inf")])
    assert dg.isclose(a, b).tolist() == [True, True, False, False]
    assert dg.isclose(a, b, equal_nan=True).tolist() == [True, True, True, False]
    assert dg.allclose(dg.tensor([1.0, 2.0]), dg.tensor([1.0, 2.0 + 1e-9])) is True
    assert dg.equal(dg.tensor([1, 2]), dg.tensor([1, 2])) is True
    assert dg.equal(dg.tensor([1, 2]), dg.tensor([[1, 2]])) is False        # shapes differ
    assert dg.tensor([1.0]).equal(dg.tensor([2.0])) is False


def test_unique_and_friends_run_eagerly_and_refuse_a_trace():
    x = dg.tensor([[2, 1, 2], [3, 1, 1]])
    v, inv, cnt = dg.unique(x, return_inverse=True, return_counts=True)
    assert v.tolist() == [1, 2, 3] and inv.tolist() == [[1, 0, 1], [2, 0, 0]] and cnt.tolist() == [3, 2, 1]
    assert dg.unique(dg.tensor([[1, 2], [1, 2], [0, 5]]), dim=0).tolist() == [[0, 5], [1, 2]]
    vals, counts = dg.unique_consecutive(dg.tensor([1, 1, 2, 2, 3, 1, 1, 2]), return_counts=True)
    assert vals.tolist() == [1, 2, 3, 1, 2] and counts.tolist() == [2, 2, 1, 2, 1]
    assert dg.bincount(dg.tensor([0, 1, 1, 3])).tolist() == [1, 2, 0, 1]
    assert dg.bincount(dg.tensor([0, 1]), minlength=4).tolist() == [1, 1, 0, 0]
    with pytest.raises(dg.InvalidValue, match="bincount.*non-negative"):
        dg.bincount(dg.tensor([-1, 2]))
    with pytest.raises(dg.DTypeError, match="bincount"):
        dg.bincount(dg.tensor([0.5]))

    @dg.function
    def f(t):
        return dg.unique(t)
    with pytest.raises(dg.DualgraphError, match="unique"):
        f(dg.tensor([1, 2, 2]))


def test_unique_and_bincount_match_torch():
    torch = _torch()
    a = np.random.default_rng(1).integers(0, 5, (4, 6))
    for kw in ({}, {"return_inverse": True, "return_counts": True}, {"dim": 1, "return_counts": True}):
        got = dg.unique(dg.tensor(a), **kw)
        want = torch.unique(torch.tensor(a), **kw)
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_array_equal(g.numpy(), w.numpy())
    w = np.random.default_rng(2).random(6)
    np.testing.assert_allclose(dg.bincount(dg.tensor(a[0]), dg.tensor(w)).numpy(),
                               torch.bincount(torch.tensor(a[0]), torch.tensor(w)).numpy())


def test_searchsorted_bucketize_histc():
    s = dg.tensor([1.0, 3.0, 5.0, 7.0])
    v = dg.tensor([3.0, 6.0, 9.0])
    assert dg.searchsorted(s, v).tolist() == [1, 3, 4]
    assert dg.searchsorted(s, v, right=True).tolist() == [2, 3, 4]
    assert dg.searchsorted(s, v, side="right").tolist() == [2, 3, 4]
    assert dg.searchsorted(s, 5.0).item() == 2                       # a scalar value gives a 0-d result
    assert dg.searchsorted(dg.tensor([5.0, 1.0, 3.0]), v, sorter=dg.tensor([1, 2, 0])).tolist() == [1, 3, 3]
    with pytest.raises(dg.InvalidValue, match="side"):
        dg.searchsorted(s, v, right=True, side="left")
    assert dg.bucketize(dg.tensor([1, 5, 9]), dg.tensor([1, 3, 5, 7, 9])).tolist() == [0, 2, 4]
    assert dg.bucketize(dg.tensor([1, 5, 9]), dg.tensor([1, 3, 5, 7, 9]), right=True).tolist() == [1, 3, 5]
    assert dg.histc(dg.tensor([1.0, 2.0, 1.0]), bins=4, min=0, max=3).tolist() == [0.0, 2.0, 1.0, 0.0]
    with pytest.raises(dg.DTypeError, match="histc"):
        dg.histc(dg.tensor([1, 2]))


def test_count_diff_meshgrid_cartesian():
    assert dg.count_nonzero(dg.tensor([[0, 1, 2], [0, 0, 3]]), dim=1).tolist() == [2, 1]
    assert dg.diff(dg.tensor([1, 4, 9, 16])).tolist() == [3, 5, 7]
    assert dg.diff(dg.tensor([1, 4, 9, 16]), n=2).tolist() == [2, 2]
    assert dg.diff(dg.tensor([1, 4]), prepend=dg.tensor([0]), append=dg.tensor([10])).tolist() == [1, 3, 6]
    assert dg.diff(dg.tensor([True, False, False])).tolist() == [True, False]
    with pytest.warns(UserWarning, match="indexing"):
        gx, gy = dg.meshgrid(dg.tensor([1, 2, 3]), dg.tensor([4, 5]))
    assert gx.shape == (3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X, Y = dg.meshgrid(dg.tensor([1, 2, 3]), dg.tensor([4, 5]), indexing="xy")
    assert X.tolist() == [[1, 2, 3], [1, 2, 3]] and Y.tolist() == [[4, 4, 4], [5, 5, 5]]
    assert dg.cartesian_prod(dg.tensor([1, 2]), dg.tensor([3, 4])).tolist() == [[1, 3], [1, 4], [2, 3], [2, 4]]


def test_statistics_hand_values():
    x = dg.tensor([[1.0, 2.0, 3.0, 4.0]])
    v, m = dg.var_mean(x)
    assert v.item() == pytest.approx(5 / 3) and m.item() == 2.5
    v0, _ = dg.var_mean(x, dim=1, correction=0)
    assert v0.tolist() == [1.25]
    s, _ = dg.std_mean(x, unbiased=False)
    assert s.item() == pytest.approx(math.sqrt(1.25))
    c = dg.cov(dg.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]]))
    np.testing.assert_allclose(c.numpy(), [[1.0, -1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(dg.corrcoef(dg.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 4.1]])).numpy(),
                               np.corrcoef([[0.0, 1.0, 2.0], [0.0, 2.0, 4.1]]), rtol=1e-6)
    r = dg.aminmax(dg.tensor([[3, 1], [2, 5]]), dim=0)
    assert r.min.tolist() == [2, 1] and r.max.tolist() == [3, 5] and type(r).__name__ == "aminmax"
    nan = float("nan")
    assert dg.nansum(dg.tensor([1.0, nan, 2.0])).item() == 3.0
    assert dg.nanmean(dg.tensor([1.0, nan, 2.0])).item() == 1.5
    big = dg.tensor([0.0, 1000.0, -1000.0], dtype=dg.float64)
    np.testing.assert_allclose(dg.logcumsumexp(big, 0).numpy(), np.logaddexp.accumulate(big.numpy()))
    np.testing.assert_allclose(dg.trapezoid(dg.tensor([1.0, 2.0, 3.0])).item(), 4.0)
    np.testing.assert_allclose(dg.cumulative_trapezoid(dg.tensor([1.0, 2.0, 3.0])).numpy(), [1.5, 4.0])


def test_statistics_match_torch():
    torch = _torch()
    a = np.random.default_rng(3).standard_normal((3, 7))
    for fn, kw in (("var_mean", {"dim": 1}), ("std_mean", {"dim": 0, "correction": 0}), ("var_mean", {})):
        for g, w in zip(getattr(dg, fn)(dg.tensor(a), **kw), getattr(torch, fn)(torch.tensor(a), **kw)):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-10)
    fw, aw = np.array([1, 2, 1, 3, 1, 1, 2]), np.random.default_rng(4).random(7)
    np.testing.assert_allclose(dg.cov(dg.tensor(a), fweights=dg.tensor(fw), aweights=dg.tensor(aw)).numpy(),
                               torch.cov(torch.tensor(a), fweights=torch.tensor(fw), aweights=torch.tensor(aw)).numpy(),
                               rtol=1e-10)
    np.testing.assert_allclose(dg.corrcoef(dg.tensor(a)).numpy(), torch.corrcoef(torch.tensor(a)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(dg.logcumsumexp(dg.tensor(a * 50), 1).numpy(),
                               torch.logcumsumexp(torch.tensor(a * 50), 1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(dg.cdist(dg.tensor(a), dg.tensor(a[:2])).numpy(),
                               torch.cdist(torch.tensor(a), torch.tensor(a[:2])).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg.isclose(dg.tensor(a), dg.tensor(a + 1e-6)).numpy(),
                               torch.isclose(torch.tensor(a), torch.tensor(a + 1e-6)).numpy())
    np.testing.assert_allclose(dg.rot90(dg.tensor(a), 3, (1, 0)).numpy(), torch.rot90(torch.tensor(a), 3, (1, 0)).numpy())
    np.testing.assert_allclose(dg.histc(dg.tensor(a), bins=6).numpy(), torch.histc(torch.tensor(a), bins=6).numpy())


def test_cdist_gradient_at_a_zero_distance_is_zero():
    x = dg.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    dg.cdist(x, x.detach()).sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_cosine_similarity_pairwise_distance_normalize_against_torch():
    torch = _torch()
    a, b = np.random.default_rng(5).standard_normal((2, 4, 5))
    np.testing.assert_allclose(F.cosine_similarity(dg.tensor(a), dg.tensor(b)).numpy(),
                               torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b)).numpy())
    np.testing.assert_allclose(F.pairwise_distance(dg.tensor(a), dg.tensor(b), p=1.0).numpy(),
                               torch.nn.functional.pairwise_distance(torch.tensor(a), torch.tensor(b), p=1.0).numpy())
    z, t = dg.zeros(2, 3, requires_grad=True), torch.zeros(2, 3, requires_grad=True)
    F.normalize(z).sum().backward()
    torch.nn.functional.normalize(t).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), t.grad.numpy(), rtol=1e-6)


def test_normalize_of_a_zero_row_differentiates_to_one_over_eps():
    z = dg.zeros(1, 3, requires_grad=True)
    F.normalize(z).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), np.full((1, 3), 1e12), rtol=1e-6)


# ---- Tensor.unfold vs F.unfold ---------------------------------------------------------------------

def test_tensor_unfold_is_the_sliding_window_and_F_unfold_is_im2col():
    x = dg.arange(7.0)
    assert x.unfold(0, 3, 2).tolist() == [[0.0, 1.0, 2.0], [2.0, 3.0, 4.0], [4.0, 5.0, 6.0]]
    img = dg.arange(16.0).reshape(1, 1, 4, 4)
    cols = F.unfold(img, 2, stride=2)
    assert cols.shape == (1, 4, 4)
    assert cols[0, :, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    with pytest.raises(dg.ShapeError, match="unfold"):
        x.unfold(0, 8, 1)


def test_unfold_matches_torch():
    torch = _torch()
    a = np.random.default_rng(6).standard_normal((2, 3, 5, 6))
    np.testing.assert_allclose(dg.tensor(a).unfold(2, 2, 1).numpy(), torch.tensor(a).unfold(2, 2, 1).numpy())
    np.testing.assert_allclose(F.unfold(dg.tensor(a), (2, 3), dilation=(1, 2), padding=1, stride=2).numpy(),
                               torch.nn.functional.unfold(torch.tensor(a), (2, 3), dilation=(1, 2), padding=1,
                                                          stride=2).numpy())


# ---- utilities ------------------------------------------------------------------------------------

def test_select_index_copy_masked_scatter_sum_to_size():
    x = dg.arange(12).reshape(3, 4)
    assert x.select(1, -1).tolist() == [3, 7, 11]
    with pytest.raises(dg.IndexOutOfRange, match="select"):
        x.select(0, 3)
    out = dg.zeros(3, 2).index_copy(0, dg.tensor([2, 0]), dg.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert out.tolist() == [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]]
    m = dg.tensor([[True, False], [False, True]])
    assert dg.zeros(2, 2).masked_scatter(m, dg.tensor([5.0, 6.0, 7.0])).tolist() == [[5.0, 0.0], [0.0, 6.0]]
    with pytest.raises(dg.ShapeError, match="masked_scatter.*2 elements"):
        dg.zeros(2, 2).masked_scatter(m, dg.tensor([5.0]))
    assert dg.ones(2, 3).sum_to_size(1, 3).tolist() == [[2.0, 2.0, 2.0]]
    with pytest.raises(dg.ShapeError, match="sum_to_size"):
        dg.ones(2, 3).sum_to_size(2)
    y = dg.zeros(3)
    y.index_copy_(0, dg.tensor([1]), dg.tensor([9.0]))
    assert y.tolist() == [0.0, 9.0, 0.0]


def test_storage_queries_answer_for_the_numpy_array():
    x = dg.arange(6.0).reshape(2, 3)
    assert x.is_contiguous() and x.stride() == (3, 1) and x.stride(-1) == 1
    t = x.t()
    assert t.stride() == (1, 3)
    assert t.is_contiguous() is bool(t._data.flags.c_contiguous)
    c = t.contiguous()
    assert c.is_contiguous() and c.tolist() == t.tolist()
    assert x.element_size() == 4 and x.itemsize == 4 and x.nbytes == 24
    arr = np.arange(4.0)
    shared = dg.from_numpy(arr)
    assert shared.data_ptr() == arr.__array_interface__["data"][0]
    assert shared[1:].data_ptr() == shared.data_ptr() + 8          # a view starts one element further
    assert x.is_floating_point() and not dg.arange(3).is_floating_point() and not x.is_complex()
    assert dg.numel(x) == 6 and dg.is_floating_point(x)
    assert dg.ones(2, 1).expand(2, 3).stride() == (1, 0)


def test_pin_memory_raises_without_a_gpu_as_cpu_only_pytorch():
    if dg.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(dg.DeviceError, match="pin_memory"):
        dg.ones(2).pin_memory()
    assert dg.ones(2).is_pinned() is False


def test_share_memory_moves_values_into_a_mapping_forked_processes_share():
    x = dg.tensor([1.0, 2.0, 3.0])
    assert not x.is_shared()
    assert x.share_memory_() is x and x.is_shared()
    assert x.tolist() == [1.0, 2.0, 3.0]
    base = x._data
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
    if not hasattr(os, "fork"):
        return
    pid = os.fork()
    if pid == 0:  # the child writes; the parent sees it
        x.add_(10.0)
        os._exit(0)
    os.waitpid(pid, 0)
    assert x.tolist() == [11.0, 12.0, 13.0]


def test_apply_and_map_run_python_callables_per_element():
    x = dg.tensor([1.0, 2.0, 3.0])
    assert x.apply_(lambda v: v * v) is x
    assert x.tolist() == [1.0, 4.0, 9.0]
    x.map_(dg.tensor([1.0]), lambda a, b: a + b)
    assert x.tolist() == [2.0, 5.0, 10.0]

    @dg.function
    def f(t):
        return t.apply_(lambda v: v)
    with pytest.raises(dg.DualgraphError, match="apply_"):
        f(dg.ones(2))


def test_matrix_helpers_hand_values():
    m = dg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert dg.addmv(dg.tensor([1.0, 1.0]), m, dg.tensor([1.0, 1.0]), beta=2).tolist() == [5.0, 9.0]
    b = dg.stack([m, m])
    assert dg.addbmm(dg.zeros(2, 2), b, b).tolist() == (2 * (m.numpy() @ m.numpy())).tolist()
    assert dg.rot90(m).tolist() == [[2.0, 4.0], [1.0, 3.0]]
    assert dg.fliplr(m).tolist() == [[2.0, 1.0], [4.0, 3.0]] and dg.flipud(m).tolist() == [[3.0, 4.0], [1.0, 2.0]]
    assert dg.vander(dg.tensor([2, 3]), N=3).tolist() == [[4, 2, 1], [9, 3, 1]]
    assert dg.cdist(dg.tensor([[0.0, 0.0]]), dg.tensor([[3.0, 4.0]]), p=1).tolist() == [[7.0]]
    assert dg.cdist(dg.tensor([[0.0, 0.0]]), dg.tensor([[3.0, 4.0]]), p=float("inf")).tolist() == [[4.0]]


def test_isinf_fmax_addcdiv_logit_hand_values():
    x = dg.tensor([1.0, float("inf"), -float("inf"), float("nan")])
    assert dg.isinf(x).tolist() == [False, True, True, False]
    assert x.isposinf().tolist() == [False, True, False, False]
    assert dg.isneginf(x).tolist() == [False, False, True, False]
    assert dg.isinf(dg.tensor([1, 2])).tolist() == [False, False]
    nan = float("nan")
    got = dg.fmax(dg.tensor([nan, 1.0, nan]), dg.tensor([2.0, nan, nan])).tolist()
    assert got[:2] == [2.0, 1.0] and math.isnan(got[2])
    assert dg.addcdiv(dg.tensor([1.0]), dg.tensor([3.0]), dg.tensor([2.0]), value=2).tolist() == [4.0]
    with pytest.raises(dg.DTypeError, match="addcdiv"):
        dg.addcdiv(dg.tensor([1]), dg.tensor([3]), dg.tensor([2]))
    assert dg.logit(dg.tensor([0.5])).tolist() == [0.0]
    assert dg.quantile(dg.tensor([1.0, 2.0, 3.0, 4.0]), 0.5).item() == 2.5
    assert dg.nanquantile(dg.tensor([1.0, nan, 3.0]), 0.5).item() == 2.0
    p = dg.tensor([0.0, 1.0])
    p.addcmul_(dg.tensor([2.0, 2.0]), dg.tensor([3.0, 0.5]), value=0.5)
    assert p.tolist() == [3.0, 1.5]


def test_quantile_and_nanquantile_match_torch():
    torch = _torch()
    a = np.random.default_rng(7).standard_normal((4, 6))
    for interp in ("linear", "lower", "higher", "midpoint", "nearest"):
        for q in (0.3, [0.1, 0.5, 0.9]):
            for dim, keepdim in ((None, False), (1, False), (0, True), (None, True)):
                qd = dg.tensor(q, dtype=dg.float64) if isinstance(q, list) else q
                qt = torch.tensor(q, dtype=torch.float64) if isinstance(q, list) else q
                got = dg.quantile(dg.tensor(a), qd, dim, keepdim, interpolation=interp).numpy()
                want = torch.quantile(torch.tensor(a), qt, dim, keepdim, interpolation=interp).numpy()
                assert got.shape == want.shape, (interp, q, dim, keepdim)
                np.testing.assert_allclose(got, want, rtol=1e-12)
    b = a.copy()
    b[0, 1] = b[2, 3] = np.nan
    for q in (0.3, [0.1, 0.9]):
        for dim, keepdim in ((None, False), (1, False), (0, True), (None, True)):
            qd = dg.tensor(q, dtype=dg.float64) if isinstance(q, list) else q
            qt = torch.tensor(q, dtype=torch.float64) if isinstance(q, list) else q
            got = dg.nanquantile(dg.tensor(b), qd, dim, keepdim).numpy()
            want = torch.nanquantile(torch.tensor(b), qt, dim, keepdim).numpy()
            assert got.shape == want.shape, (q, dim, keepdim)
            np.testing.assert_allclose(got, want, rtol=1e-12)


def test_gamma_family_hand_values_and_torch():
    x = dg.tensor([1.0, 2.0, 5.0], dtype=dg.float64)
    np.testing.assert_allclose(dg.lgamma(x).numpy(), [0.0, 0.0, math.log(24.0)], atol=1e-12)
    np.testing.assert_allclose(dg.digamma(x).numpy()[0], -0.5772156649015329, rtol=1e-12)   # -Euler's gamma
    np.testing.assert_allclose(dg.polygamma(1, x).numpy()[0], math.pi ** 2 / 6, rtol=1e-12)
    w = dg.tensor([2.5], requires_grad=True, dtype=dg.float64)
    dg.lgamma(w).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), dg.digamma(dg.tensor([2.5], dtype=dg.float64)).numpy())
    with pytest.raises(dg.DTypeError, match="polygamma"):
        dg.polygamma(-1, x)
    torch = _torch()
    a = np.random.default_rng(8).uniform(0.2, 5, (3, 4))
    for name in ("lgamma", "digamma"):
        np.testing.assert_allclose(getattr(dg, name)(dg.tensor(a)).numpy(), getattr(torch, name)(torch.tensor(a)).numpy(),
                                   rtol=1e-10)
    np.testing.assert_allclose(dg.tensor(a).polygamma(2).numpy(), torch.tensor(a).polygamma(2).numpy(), rtol=1e-10)
