"""Selection, sorting and masking ops (dualgraph/ops/selection.py) against PyTorch's documented behaviour:
values compared with torch where it is installed, and with numpy or hand-derived values without it."""
import pickle

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.errors import DTypeError, IndexOutOfRange, InvalidValue, ShapeError


def t(a, **k):
    return dg.tensor(np.asarray(a), **k)


def _torch():
    return pytest.importorskip("torch")


# ---- named tuples ---------------------------------------------------------------------------------------

def test_max_with_a_dim_is_a_named_tuple_of_values_and_first_indices():
    x = t([[1.0, 5.0, 5.0], [7.0, 2.0, 7.0]])
    out = x.max(1)
    values, indices = out
    assert isinstance(out, tuple) and len(out) == 2 and type(out).__name__ == "max"
    assert out.values is out[0] is values and out.indices is out[1] is indices
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]   # ties: the first one
    assert indices.dtype == np.int64
    assert dg.max(x, dim=0, keepdim=True).values.shape == (1, 3)
    assert repr(out).startswith("dualgraph.return_types.max(\nvalues=tensor(") and "\nindices=tensor(" in repr(out)
    assert out._asdict()["indices"] is indices
    again = type(out)([values, indices])       # built from one iterable, as torch.return_types
    assert again.values is values and pickle.loads(pickle.dumps(out, protocol=2)) is not None
    mn = dg.min(x, -1)
    assert type(mn).__name__ == "min" and mn.values.tolist() == [1.0, 2.0] and mn.indices.tolist() == [0, 1]


def test_max_without_a_dim_axis_spelling_and_two_tensors_are_unchanged():
    x = t([[1.0, 5.0], [7.0, 2.0]])
    assert isinstance(x.max(), dg.Tensor) and float(x.max()) == 7.0
    assert x.max(axis=1).tolist() == [5.0, 7.0]            # numpy's axis=: values only
    assert dg.max(x, t([[3.0, 3.0], [3.0, 3.0]])).tolist() == [[3.0, 5.0], [7.0, 3.0]]
    assert dg.amax(x, dim=(0, 1)).item() == 7.0
    with pytest.raises(TypeError, match="amax"):
        x.max(dim=(0, 1))


def test_max_dim_gradient_goes_to_the_selected_element_only():
    """PyTorch: max(dim) routes the gradient to its index; max() and amax split ties evenly."""
    x = dg.tensor(np.array([[2.0, 2.0, 1.0]]), requires_grad=True)
    x.max(1).values.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 0.0]]
    y = dg.tensor(np.array([[2.0, 2.0, 1.0]]), requires_grad=True)
    y.max().backward()
    assert y.grad.tolist() == [[0.5, 0.5, 0.0]]


def test_named_tuples_come_back_from_compiled_functions():
    f = dg.function(lambda a: dg.sort(a, descending=True))
    out = f(t([3.0, 1.0, 2.0]))
    assert type(out).__name__ == "sort" and out.values.tolist() == [3.0, 2.0, 1.0] and out.indices.tolist() == [0, 2, 1]
    g = dg.function(lambda a: a.max(0))
    assert g(t([1.0, 4.0, 2.0])).indices.item() == 1


# ---- sort, argsort, topk --------------------------------------------------------------------------------

def test_sort_is_stable_both_ways_and_puts_nan_last_ascending():
    x = np.array([2.0, 1.0, 2.0, np.nan, 1.0, 3.0])
    s = dg.sort(t(x))
    assert s.indices.tolist() == [1, 4, 0, 2, 5, 3]
    d = dg.sort(t(x), descending=True)
    assert d.indices.tolist() == [3, 5, 0, 2, 1, 4]        # NaN is the largest; ties keep index order
    np.testing.assert_array_equal(d.values.numpy(), x[[3, 5, 0, 2, 1, 4]])
    assert dg.argsort(t(x[:3]), descending=True).tolist() == [0, 2, 1]


def test_sort_and_argsort_against_numpy_on_negative_dims():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (3, 4, 5))
    for dim in (-1, -2, 0):
        s = dg.sort(t(x), dim=dim, stable=True)
        np.testing.assert_array_equal(s.indices.numpy(), np.argsort(x, axis=dim, kind="stable"))
        np.testing.assert_array_equal(s.values.numpy(), np.sort(x, axis=dim))
        np.testing.assert_array_equal(t(x).argsort(dim, descending=True).numpy(),
                                      np.argsort(-x, axis=dim, kind="stable"))
    np.testing.assert_array_equal(dg.msort(t(x)).numpy(), np.sort(x, axis=0))


def test_sort_matches_torch_stable():
    torch = _torch()
    x = np.random.default_rng(1).integers(0, 4, (4, 9)).astype(np.float32)
    for desc in (False, True):
        want = torch.sort(torch.tensor(x), dim=1, descending=desc, stable=True)
        got = dg.sort(t(x), dim=1, descending=desc)
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())


def test_topk_ties_come_in_index_order_and_smallest():
    x = t([1.0, 3.0, 3.0, 2.0, 3.0])
    out = dg.topk(x, 2)
    assert out.values.tolist() == [3.0, 3.0] and out.indices.tolist() == [1, 2]
    low = x.topk(3, largest=False)
    assert low.values.tolist() == [1.0, 2.0, 3.0] and low.indices.tolist() == [0, 3, 1]


def test_topk_matches_torch_values_and_gradient():
    torch = _torch()
    x = np.random.default_rng(2).permutation(24).reshape(2, 3, 4).astype(np.float64)
    for k, dim, largest in [(2, -1, True), (3, 1, False), (1, 0, True)]:
        want = torch.topk(torch.tensor(x), k, dim=dim, largest=largest)
        got = dg.topk(t(x), k, dim=dim, largest=largest)
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
    xt = torch.tensor(x, requires_grad=True)
    (torch.topk(xt, 2, dim=1).values ** 2).sum().backward()
    xd = dg.tensor(x, requires_grad=True)
    (dg.topk(xd, 2, dim=1).values ** 2).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy())


def test_topk_gradient_without_torch():
    x = dg.tensor(np.array([[0.5, 3.0, -1.0, 2.0]]), requires_grad=True)
    dg.topk(x, 2).values.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0, 1.0]]


def test_empty_and_zero_dim_inputs():
    e = dg.zeros(0, 3)
    s = dg.sort(e, dim=0)
    assert s.values.shape == (0, 3) and s.indices.shape == (0, 3)
    assert dg.topk(dg.zeros(2, 0), 0).values.shape == (2, 0)
    z = dg.sort(t(5.0))
    assert z.values.shape == () and z.indices.item() == 0
    assert dg.topk(t(5.0), 1).values.item() == 5.0
    with pytest.raises(IndexOutOfRange, match="empty"):
        dg.max(e, 0)


def test_bad_k_and_dim_are_clear_errors():
    x = dg.ones(3, 4)
    with pytest.raises(IndexOutOfRange, match=r"topk: k=5 .*size 4"):
        dg.topk(x, 5)
    with pytest.raises(IndexOutOfRange, match="topk: k=-1"):
        dg.topk(x, -1)
    with pytest.raises(IndexOutOfRange, match=r"sort: dim 2 is out of range .*\(3, 4\)"):
        dg.sort(x, dim=2)
    with pytest.raises(IndexOutOfRange, match="max: dim -3"):
        x.max(-3)
    with pytest.raises(IndexOutOfRange, match=r"kthvalue: k=0 .*\[1, 4\]"):
        dg.kthvalue(x, 0)
    with pytest.raises(TypeError, match="topk: k must be an int"):
        dg.topk(x, 1.5)


# ---- median, kthvalue ------------------------------------------------------------------------------------

def test_median_is_the_lower_middle_and_propagates_nan():
    assert dg.median(t([1.0, 2.0, 3.0, 4.0])).item() == 2.0       # not 2.5 (numpy's median)
    m = dg.median(t([[3.0, 1.0, 2.0], [5.0, np.nan, 4.0]]), 1)
    assert m.values[0].item() == 2.0 and m.indices.tolist() == [2, 1] and np.isnan(m.values[1].item())
    assert dg.median(t([[1, 9], [5, 7]]), 0, keepdim=True).values.tolist() == [[1, 7]]


def test_median_and_kthvalue_match_torch():
    torch = _torch()
    x = np.random.default_rng(3).permutation(30).reshape(5, 6).astype(np.float32)
    for dim in (0, 1, -1):
        want, got = torch.median(torch.tensor(x), dim), dg.median(t(x), dim)
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
    assert dg.median(t(x)).item() == torch.median(torch.tensor(x)).item()
    ties = np.array([3.0, 1.0, 2.0, 1.0], np.float32)
    want, got = torch.kthvalue(torch.tensor(ties), 2), dg.kthvalue(t(ties), 2)
    assert got.values.item() == want.values.item() and got.indices.item() == want.indices.item()


# ---- cumprod, cummax, cummin ---------------------------------------------------------------------------

def test_cumprod_gradient_is_exact_with_zeros():
    x = np.array([[2.0, 0.0, 3.0, 0.0, 4.0], [0.0, 1.5, 2.0, 0.5, 3.0], [1.0, 2.0, 3.0, 4.0, 0.0]])
    g = np.random.default_rng(4).standard_normal(x.shape)
    xd = dg.tensor(x, requires_grad=True)
    dg.cumprod(xd, 1).backward(dg.tensor(g))
    # by definition: d/dx_k sum_i g_i prod_{j<=i} x_j = sum_{i>=k} g_i prod_{j<=i, j != k} x_j
    want = np.zeros_like(x)
    for r in range(x.shape[0]):
        for k in range(x.shape[1]):
            want[r, k] = sum(g[r, i] * np.prod([x[r, j] for j in range(i + 1) if j != k]) for i in range(k, x.shape[1]))
    np.testing.assert_allclose(xd.grad.numpy(), want, rtol=1e-12, atol=1e-12)
    assert dg.autograd.gradcheck(lambda a: dg.cumprod(a, 0), (dg.tensor(x.T.copy(), requires_grad=True),))
    # the second derivative too: after the first zero the gradient is 0 but moves with that zero
    for rows in (x, np.array([[0.0, 2.0, 0.0, 3.0, 1.0], [0.0, 0.0, 1.0, 2.0, 3.0]])):
        assert dg.autograd.gradgradcheck(lambda a: dg.cumprod(a, 1), (dg.tensor(rows, requires_grad=True),))


def test_cumprod_matches_torch_and_accumulates_ints_in_int64():
    torch = _torch()
    x = np.array([[2.0, 0.0, 3.0], [1.0, -2.0, 0.5]])
    xt, xd = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True)
    torch.cumprod(xt, 1).sum().backward()
    xd.cumprod(1).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy())
    i = dg.cumprod(t(np.array([1, 2, 3], np.int32)), 0)
    assert i.dtype == np.int64 and i.tolist() == [1, 2, 6]
    with pytest.raises(TypeError, match="dim"):
        dg.cumprod(t([1.0]))


def test_cummax_and_cummin_take_the_last_index_of_a_tie():
    out = dg.cummax(t([1.0, 3.0, 3.0, 2.0, 3.0]), 0)
    assert out.values.tolist() == [1.0, 3.0, 3.0, 3.0, 3.0] and out.indices.tolist() == [0, 1, 2, 2, 4]
    mn = t([2.0, 1.0, 1.0, 3.0, 1.0]).cummin(0)
    assert mn.values.tolist() == [2.0, 1.0, 1.0, 1.0, 1.0] and mn.indices.tolist() == [0, 1, 2, 2, 4]
    torch = _torch()
    x = np.random.default_rng(5).integers(0, 4, (3, 8)).astype(np.float32)
    for fn in ("cummax", "cummin"):
        want, got = getattr(torch, fn)(torch.tensor(x), 1), getattr(dg, fn)(t(x), 1)
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())


# ---- tril, triu ------------------------------------------------------------------------------------------

def test_tril_triu_diagonals_batches_and_gradient():
    x = np.arange(24.0).reshape(2, 3, 4)
    for k in (-1, 0, 2):
        np.testing.assert_array_equal(dg.tril(t(x), k).numpy(), np.tril(x, k))
        np.testing.assert_array_equal(t(x).triu(diagonal=k).numpy(), np.triu(x, k))
    xd = dg.tensor(x, requires_grad=True)
    dg.triu(xd, 1).sum().backward()
    np.testing.assert_array_equal(xd.grad.numpy(), np.triu(np.ones_like(x), 1))
    with pytest.raises(ShapeError, match="tril: input must have at least 2 dims"):
        dg.tril(t([1.0, 2.0]))
    torch = _torch()
    np.testing.assert_array_equal(dg.tril(t(x), -1).numpy(), torch.tril(torch.tensor(x), -1).numpy())


def test_causal_mask_idiom():
    """The GPT idiom: masked_fill(tril(ones) == 0, -inf) then softmax."""
    scores = dg.zeros(3, 3)
    att = scores.masked_fill(dg.tril(dg.ones(3, 3)) == 0, float("-inf"))
    np.testing.assert_allclose(dg.softmax(att, -1).numpy(), [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)


# ---- masked_fill, where ---------------------------------------------------------------------------------

def test_masked_fill_broadcasts_keeps_dtype_and_differentiates_to_value():
    x = t(np.arange(6).reshape(2, 3))
    out = x.masked_fill(t([True, False, True]), 9)
    assert out.dtype == np.int64 and out.tolist() == [[9, 1, 9], [9, 4, 9]]
    xf = dg.tensor(np.ones((2, 3)), requires_grad=True)
    v = dg.tensor(2.0, dtype="float64", requires_grad=True)
    dg.masked_fill(xf, t([[True, False, False], [True, True, False]]), v).sum().backward()
    assert xf.grad.tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]] and v.grad.item() == 3.0
    with pytest.raises(DTypeError, match="masked_fill: mask must be a bool tensor, got int64"):
        x.masked_fill(t([1, 0, 1]), 0)
    with pytest.raises(ShapeError, match="0-d tensor"):
        x.masked_fill(t([True, False, True]), t([1, 2, 3]))
    with pytest.raises(DTypeError, match="float 0.5"):
        x.masked_fill(t([True, False, True]), 0.5)


def test_masked_fill_in_place_records_for_autograd():
    a = dg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = a * 2
    b.masked_fill_(t([False, True, False]), 0.0)
    assert b.tolist() == [2.0, 0.0, 6.0]
    b.sum().backward()
    assert a.grad.tolist() == [2.0, 0.0, 2.0]
    with pytest.raises(ShapeError, match="masked_fill_"):
        dg.zeros(3).masked_fill_(t([[True], [False]]), 1.0)


def test_masked_fill_matches_torch():
    torch = _torch()
    x = np.random.default_rng(6).standard_normal((2, 3, 4)).astype(np.float32)
    m = np.random.default_rng(7).random((3, 1)) < 0.5
    want = torch.tensor(x).masked_fill(torch.tensor(m), -1.5)
    np.testing.assert_array_equal(dg.masked_fill(t(x), t(m), -1.5).numpy(), want.numpy())


def test_where_with_scalars_and_alone():
    c = t([True, False, True])
    x = t(np.array([1.0, 2.0, 3.0], np.float32))
    assert dg.where(c, x, 0.0).tolist() == [1.0, 0.0, 3.0] and dg.where(c, x, 0.0).dtype == np.float32
    assert dg.where(c, 1.5, x).tolist() == [1.5, 2.0, 1.5]
    assert dg.where(c, 1.0, 0.0).dtype == np.float32
    assert dg.where(t([1, 2, 3]) > 1, t([1, 2, 3]), 0.5).dtype == np.float32     # int with a float: float32
    assert x.where(c, -x).tolist() == [1.0, -2.0, 3.0]                          # Tensor.where(cond, other)
    idx = dg.where(t([[True, False], [True, True]]))
    assert isinstance(idx, tuple) and [i.tolist() for i in idx] == [[0, 1, 1], [0, 0, 1]]
    with pytest.raises(TypeError, match="both"):
        dg.where(c, x)
    torch = _torch()
    cm = np.array([[True, False], [False, True]])
    for a, b in zip(dg.where(t(cm)), torch.where(torch.tensor(cm))):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---- masked_select, take, index_fill, index_add ----------------------------------------------------------

def test_masked_select_take_index_fill_index_add_against_numpy():
    x = np.arange(12.0).reshape(3, 4)
    m = np.array([True, False, False, True])
    np.testing.assert_array_equal(dg.masked_select(t(x), t(m)).numpy(), x[np.broadcast_to(m, x.shape)])
    np.testing.assert_array_equal(t(x).take(t([[0, -1], [5, 6]])).numpy(), x.reshape(-1)[[[0, -1], [5, 6]]])
    want = x.copy()
    want[:, [0, 2]] = -1.0
    np.testing.assert_array_equal(dg.index_fill(t(x), 1, t([0, -2]), -1.0).numpy(), want)
    want = x.copy()
    np.add.at(want, [0, 0, 2], np.ones((3, 4)) * 2)
    np.testing.assert_array_equal(dg.index_add(t(x), 0, t([0, 0, 2]), dg.ones(3, 4, dtype="float64"), alpha=2).numpy(),
                                  want)
    with pytest.raises(IndexOutOfRange, match="take"):
        dg.take(t(x), t([12]))
    with pytest.raises(ShapeError, match=r"index_add: source of shape \(2, 4\) must have shape \(3, 4\)"):
        dg.index_add(t(x), 0, t([0, 1, 2]), dg.ones(2, 4))
    with pytest.raises(IndexOutOfRange, match="index_fill"):
        dg.index_fill(t(x), 0, t([3]), 0.0)


def test_in_place_index_and_scatter_methods():
    x = dg.zeros(3, 2)
    assert x.index_fill_(0, t([1]), 5.0) is x and x.tolist() == [[0, 0], [5, 5], [0, 0]]
    x.index_add_(0, t([0, 0]), dg.ones(2, 2))
    assert x.tolist() == [[2, 2], [5, 5], [0, 0]]
    y = dg.zeros(2, 3)
    y.scatter_(1, t([[2], [0]]), 7.0)
    assert y.tolist() == [[0, 0, 7], [7, 0, 0]]
    y.scatter_add_(0, t([[1, 1, 1]]), dg.ones(1, 3))
    assert y.tolist() == [[0, 0, 7], [8, 1, 1]]


def test_index_ops_match_torch():
    torch = _torch()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 5))
    idx = np.array([3, 0, 3])
    src = rng.standard_normal((4, 3))
    np.testing.assert_allclose(dg.index_add(t(x), 1, t(idx), t(src)).numpy(),
                               torch.tensor(x).index_add(1, torch.tensor(idx), torch.tensor(src)).numpy())
    np.testing.assert_array_equal(dg.index_fill(t(x), 0, t([1, 2]), 0.5).numpy(),
                                  torch.tensor(x).index_fill(0, torch.tensor([1, 2]), 0.5).numpy())
    m = rng.random((4, 5)) < 0.4
    np.testing.assert_array_equal(dg.masked_select(t(x), t(m)).numpy(),
                                  torch.masked_select(torch.tensor(x), torch.tensor(m)).numpy())
    np.testing.assert_array_equal(dg.take(t(x), t([[1, 19]])).numpy(),
                                  torch.take(torch.tensor(x), torch.tensor([[1, 19]])).numpy())


# ---- scatter, scatter_add, gather, index_select --------------------------------------------------------

def test_scatter_src_value_and_reduce_by_definition():
    x = np.zeros((3, 4))
    index = np.array([[0, 1, 2, 0], [2, 0, 1, 1]])
    src = np.arange(1.0, 13.0).reshape(3, 4)
    out = dg.scatter(t(x), 0, t(index), t(src)).numpy()
    want = x.copy()
    for i in range(2):
        for j in range(4):
            want[index[i, j], j] = src[i, j]                  # src's leading rows: it is larger than index
    np.testing.assert_array_equal(out, want)
    assert dg.scatter(t(x), 1, t([[3], [0], [1]]), value=2.0).tolist() == [[0, 0, 0, 2], [2, 0, 0, 0], [0, 2, 0, 0]]
    added = dg.scatter(t(np.ones((2, 2))), 0, t([[0, 0], [0, 1]]), t(np.full((2, 2), 3.0)), reduce="add")
    assert added.tolist() == [[7.0, 4.0], [1.0, 4.0]]
    mul = dg.scatter(t(np.full((2, 2), 2.0)), 0, t([[0, 0], [0, 1]]), t(np.full((2, 2), 3.0)), reduce="multiply")
    assert mul.tolist() == [[18.0, 6.0], [2.0, 6.0]]


def test_scatter_gradients_match_the_rule():
    """d out / d x is 1 off the written positions; d out / d src reads the gradient at each target."""
    x = dg.tensor(np.ones((3, 3)), requires_grad=True)
    src = dg.tensor(np.arange(1.0, 4.0).reshape(1, 3), requires_grad=True)
    g = np.arange(9.0).reshape(3, 3)
    dg.scatter(x, 0, t([[2, 0, 1]]), src).backward(t(g))
    assert x.grad.tolist() == [[0.0, 0.0, 2.0], [3.0, 4.0, 0.0], [0.0, 7.0, 8.0]]
    assert src.grad.tolist() == [[6.0, 1.0, 5.0]]
    y = dg.tensor(np.ones(3), requires_grad=True)
    z = dg.scatter(y, 0, t([0]), t([2.0]), reduce="multiply")
    with pytest.raises(dg.AutogradError, match="reduce"):
        z.sum().backward()


def test_scatter_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(9)
    x, src = rng.standard_normal((3, 5)), rng.standard_normal((3, 3))   # torch's backward needs src == index
    index = np.stack([rng.permutation(5)[:3] for _ in range(3)])
    xt, st = torch.tensor(x, requires_grad=True), torch.tensor(src, requires_grad=True)
    xd, sd = dg.tensor(x, requires_grad=True), dg.tensor(src, requires_grad=True)
    wt = torch.scatter(xt, 1, torch.tensor(index), st)
    wd = dg.scatter(xd, 1, t(index), sd)
    np.testing.assert_array_equal(wd.numpy(), wt.detach().numpy())
    (wt ** 2).sum().backward()
    (wd ** 2).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy())
    np.testing.assert_allclose(sd.grad.numpy(), st.grad.numpy())
    big = rng.standard_normal((4, 6))
    np.testing.assert_allclose(dg.scatter_add(t(x), 1, t(index[:2]), t(big)).numpy(),
                               torch.scatter_add(torch.tensor(x), 1, torch.tensor(index[:2]), torch.tensor(big)).numpy())


def test_scatter_and_gather_refuse_bad_index_like_torch():
    x = dg.zeros(3, 4)
    with pytest.raises(ShapeError, match=r"scatter: index shape \(2, 5\) exceeds the tensor's shape \(3, 4\)"):
        dg.scatter(x, 0, t(np.zeros((2, 5), np.int64)), dg.ones(2, 5))
    with pytest.raises(ShapeError, match=r"exceeds src shape \(1, 4\)"):
        dg.scatter(x, 0, t(np.zeros((2, 4), np.int64)), dg.ones(1, 4))
    with pytest.raises(IndexOutOfRange, match=r"scatter: index values range over \[0, 3\] but axis 0"):
        dg.scatter(x, 0, t([[0, 3, 0, 0]]), 1.0)
    with pytest.raises(DTypeError, match="scatter: index must be an integer tensor"):
        dg.scatter(x, 0, t([[0.0]]), 1.0)
    with pytest.raises(ValueError, match="reduce"):
        dg.scatter(x, 0, t([[0]]), 1.0, reduce="mean")
    with pytest.raises(ShapeError, match=r"gather: index shape \(3, 5\) exceeds input shape \(3, 4\)"):
        dg.gather(x, 0, t(np.zeros((3, 5), np.int64)))
    with pytest.raises(IndexOutOfRange, match=r"gather: index values range over \[4, 4\] but axis 1 of shape \(3, 4\)"):
        dg.gather(x, 1, t([[4]]))
    with pytest.raises(ShapeError, match="index_select: index must be 1-D"):
        dg.index_select(x, 0, t([[0]]))


def test_gather_and_index_select_match_torch():
    torch = _torch()
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 4))
    index = rng.integers(0, 4, (2, 3))
    np.testing.assert_array_equal(dg.gather(t(x), 1, t(index)).numpy(),
                                  torch.gather(torch.tensor(x), 1, torch.tensor(index)).numpy())
    np.testing.assert_array_equal(dg.index_select(t(x), -1, t([3, 0, 3])).numpy(),
                                  torch.index_select(torch.tensor(x), -1, torch.tensor([3, 0, 3])).numpy())


# ---- roll, repeat_interleave ----------------------------------------------------------------------------

def test_roll_flattened_tuples_negative_and_gradient():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(dg.roll(t(x), 5).numpy(), np.roll(x, 5))
    np.testing.assert_array_equal(t(x).roll((1, -2), (0, 1)).numpy(), np.roll(x, (1, -2), (0, 1)))
    np.testing.assert_array_equal(dg.roll(t(x), -7, -2).numpy(), np.roll(x, -7, -2))
    xd = dg.tensor(x, requires_grad=True)
    dg.roll(xd, 1, 1).backward(t(np.arange(12.0).reshape(3, 4)))
    np.testing.assert_array_equal(xd.grad.numpy(), np.roll(np.arange(12.0).reshape(3, 4), -1, 1))
    with pytest.raises(ShapeError, match="same length"):
        dg.roll(t(x), (1, 2), 0)
    torch = _torch()
    np.testing.assert_array_equal(dg.roll(t(x), (2, 1), (1, 0)).numpy(),
                                  torch.roll(torch.tensor(x), (2, 1), (1, 0)).numpy())


def test_repeat_interleave_forms():
    x = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(dg.repeat_interleave(t(x), 2).numpy(), np.repeat(x, 2))
    np.testing.assert_array_equal(t(x).repeat_interleave(t([1, 2]), dim=0).numpy(), np.repeat(x, [1, 2], axis=0))
    np.testing.assert_array_equal(t(x).repeat_interleave(3, 1).numpy(), np.repeat(x, 3, axis=1))
    np.testing.assert_array_equal(dg.repeat_interleave(t([2, 0, 1])).numpy(), [0, 0, 2])
    np.testing.assert_array_equal(t(x).repeat_interleave(t(2), dim=1).numpy(), np.repeat(x, 2, axis=1))
    with pytest.raises(InvalidValue, match="non-negative"):
        dg.repeat_interleave(t(x), t([1, -1]), 0)
    with pytest.raises(ShapeError, match="3 repeats for dim 0 of size 2"):
        dg.repeat_interleave(t(x), t([1, 1, 1]), 0)
    with pytest.raises(InvalidValue, match="output_size=4"):
        dg.repeat_interleave(t(x), t([1, 2]), 0, output_size=4)


def test_repeat_interleave_traces_with_output_size_and_differentiates():
    f = dg.function(lambda a, r: dg.repeat_interleave(a, r, 0, output_size=5))
    x = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(f(t(x), t([2, 0, 3])).numpy(), np.repeat(x, [2, 0, 3], axis=0))
    np.testing.assert_array_equal(f(t(x), t([1, 3, 1])).numpy(), np.repeat(x, [1, 3, 1], axis=0))
    xd = dg.tensor(x, requires_grad=True)
    dg.repeat_interleave(xd, t([2, 0, 3]), 0).sum().backward()
    assert xd.grad.tolist() == [[2, 2], [0, 0], [3, 3]]
    g = dg.function(lambda a, r: dg.repeat_interleave(a, r, 0))
    with pytest.raises(dg.TraceError):
        g(t(x), t([1, 1, 1]))


def test_repeat_interleave_matches_torch():
    torch = _torch()
    x = np.arange(6.0).reshape(2, 3)
    for args in [(2,), (2, 1), (torch.tensor([1, 3]), 0)]:
        want = torch.repeat_interleave(torch.tensor(x), *args)
        dargs = tuple(t(a.numpy()) if hasattr(a, "numpy") else a for a in args)
        np.testing.assert_array_equal(dg.repeat_interleave(t(x), *dargs).numpy(), want.numpy())


# ---- multinomial --------------------------------------------------------------------------------------

def test_multinomial_frequencies_zero_weights_and_no_repeats():
    dg.manual_seed(0)
    w = t(np.array([0.0, 1.0, 3.0, 0.0, 4.0], np.float32))
    draws = dg.multinomial(w, 40000, replacement=True).numpy()
    freq = np.bincount(draws, minlength=5) / draws.size
    np.testing.assert_allclose(freq, [0, 0.125, 0.375, 0, 0.5], atol=0.01)
    rows = dg.multinomial(t(np.array([[1.0, 1.0, 0.0, 1.0], [0.0, 2.0, 1.0, 1.0]])), 3).numpy()
    assert rows.shape == (2, 3) and rows.dtype == np.int64
    for r, row in enumerate(rows):
        assert len(set(row)) == 3 and 2 - 2 * r not in row       # distinct, never the zero-weight category
    # without replacement: P(first draw = i) is the weight share; the second among the rest
    first = np.bincount(dg.multinomial(t(np.tile([[1.0, 2.0, 7.0]], (20000, 1))), 1).numpy()[:, 0], minlength=3)
    np.testing.assert_allclose(first / 20000, [0.1, 0.2, 0.7], atol=0.015)


def test_multinomial_generator_seed_and_errors():
    w = t([0.2, 0.3, 0.5])
    a = dg.multinomial(w, 6, True, generator=np.random.default_rng(5)).tolist()
    assert a == dg.multinomial(w, 6, True, generator=np.random.default_rng(5)).tolist()
    dg.manual_seed(3)
    b = w.multinomial(2).tolist()
    dg.manual_seed(3)
    assert w.multinomial(2).tolist() == b
    with pytest.raises(InvalidValue, match="without replacement"):
        dg.multinomial(w, 4)
    with pytest.raises(InvalidValue, match="non-zero"):
        dg.multinomial(t([1.0, 0.0, 0.0]), 2)
    with pytest.raises(InvalidValue, match="non-negative"):
        dg.multinomial(t([1.0, -1.0]), 1)
    with pytest.raises(InvalidValue, match="sums to 0"):
        dg.multinomial(t([0.0, 0.0]), 1, True)
    with pytest.raises(ShapeError, match="1-D or 2-D"):
        dg.multinomial(dg.ones(2, 2, 2), 1)
    with pytest.raises(DTypeError, match="floating"):
        dg.multinomial(t([1, 2]), 1)
    assert not dg.multinomial(dg.tensor([0.5, 0.5], requires_grad=True), 1).requires_grad


def test_repeat_index_lowering_on_a_hand_built_graph():
    """Tracing refuses the data-dependent size, so the lowering is checked on a graph built by hand."""
    pytest.importorskip("onnxruntime")
    import dualgraph.onnx as dgo
    from dualgraph.graph.avals import Aval
    from dualgraph.graph.ir import Graph
    from dualgraph.ops import REGISTRY
    op = REGISTRY["repeat_index"]
    g = Graph()
    counts = g.add_input(Aval((4,), np.dtype(np.int64)))
    node = g.add_node(op, [counts], {}, [op.infer(counts.aval)], source="test.py:1")
    g.outputs = list(node.outputs)
    model, info = dgo.graph_to_model(g)
    sess = dgo.session(model)
    for c in ([2, 0, 3, 1], [0, 0, 0, 0], [1, 1, 1, 5]):
        (got,) = sess.run(None, {info.input_names[0]: np.array(c, np.int64)})
        np.testing.assert_array_equal(got, np.repeat(np.arange(4), c))


def test_mode_most_frequent_smallest_of_ties_last_index():
    out = dg.mode(t([1.0, 2.0, 2.0, 1.0, 3.0]))
    assert out.values.item() == 1.0 and out.indices.item() == 3 and type(out).__name__ == "mode"
    m = t([[4, 4, 2], [5, 6, 6]]).mode(1, keepdim=True)
    assert m.values.tolist() == [[4], [6]] and m.indices.tolist() == [[1], [2]]
    x = dg.tensor(np.array([2.0, 1.0, 2.0]), requires_grad=True)
    dg.mode(x).values.backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0]
    torch = _torch()
    r = np.random.default_rng(11).integers(0, 4, (3, 5, 6)).astype(np.float32)
    for dim in (0, 1, 2):
        want, got = torch.mode(torch.tensor(r), dim), dg.mode(t(r), dim)
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())


@pytest.mark.parametrize("n,k", [(40, 5), (64, 10), (65, 10), (300, 7), (300, 74), (300, 75), (300, 299)])
def test_topk_on_both_sides_of_the_partition_threshold_is_the_stable_sort_prefix(n, k):
    """Long rows with k below a quarter of their length take a partition path: the same k, in the same
    order, as the first k of the stable sort, NaN (the largest) and ties included."""
    rng = np.random.default_rng(n + k)
    x = rng.integers(0, 6, (3, n)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    for largest in (True, False):
        for dim in (1, 0):
            a = x if dim == 1 else x.T.copy()
            got = dg.topk(t(a), k, dim=dim, largest=largest)
            full = dg.sort(t(a), dim=dim, descending=largest)
            want = np.take(full.indices.numpy(), np.arange(k), axis=dim)
            np.testing.assert_array_equal(got.indices.numpy(), want)
            np.testing.assert_array_equal(got.values.numpy(), np.take_along_axis(a, want, dim))
            key = -np.nan_to_num(a, nan=np.inf) if largest else np.nan_to_num(a, nan=np.inf)
            np.testing.assert_array_equal(want, np.take(np.argsort(key, axis=dim, kind="stable"), np.arange(k), axis=dim))
    torch = _torch()
    b = rng.permutation(3 * n).reshape(3, n).astype(np.float64)
    want = torch.topk(torch.tensor(b), k)
    np.testing.assert_array_equal(dg.topk(t(b), k).indices.numpy(), want.indices.numpy())


def test_multinomial_without_replacement_on_many_categories():
    """Few draws from many categories take the partition path: still distinct, never a zero weight, and
    the first draw follows the weights."""
    dg.manual_seed(1)
    w = np.ones((4000, 40))
    w[:, 0], w[:, 1], w[:, 7] = 0.0, 20.0, 19.0
    out = dg.multinomial(t(w), 3).numpy()
    assert out.shape == (4000, 3) and not (out == 0).any()
    assert all(len(set(r)) == 3 for r in out[:200])
    first = np.bincount(out[:, 0], minlength=40) / 4000
    np.testing.assert_allclose(first[[1, 7]], [20 / 76, 19 / 76], atol=0.03)


def test_tril_triu_in_place_and_index_select_with_a_0d_index():
    a = dg.ones(3, 3)
    assert a.tril_(-1) is a and a.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    b = dg.ones(2, 3)
    b.triu_()
    assert b.tolist() == [[1, 1, 1], [0, 1, 1]]
    x = dg.arange(6.0).reshape(2, 3)
    assert dg.index_select(x, 1, t(2)).tolist() == [[2.0], [5.0]]     # PyTorch: the dim keeps size 1
