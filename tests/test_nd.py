"""dualgraph.nd against MXNet 1.x's documented NDArray behaviour (values from numpy / by hand).

MXNet is not installed; each expectation comes from the MXNet API docs (dtype defaults, shape codes,
the (1,) shape of full reductions, float32 argmax and comparisons) and is computed with numpy."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph import autograd, nd
from dualgraph.errors import DualgraphError, ShapeError


def test_ndarray_is_the_tensor_type():
    assert nd.NDArray is dg.Tensor
    assert isinstance(nd.ones((2,)), dg.Tensor)


def test_array_defaults_to_float32_even_for_ints_and_int_numpy_arrays():
    assert nd.array(((1, 2, 3), (5, 6, 7))).dtype == np.float32
    assert nd.array(np.arange(3, dtype=np.int64)).dtype == np.float32
    assert nd.array([1, 2], dtype="int32").dtype == np.int32
    src = nd.array([1, 2], dtype="float64")
    copy = nd.array(src)
    assert copy.dtype == np.float64 and copy is not src
    copy[0] = 5
    assert src.tolist() == [1.0, 2.0]                       # a copy, as MXNet's array()
    assert nd.array([[1, 2], [3, 4]]).tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_creation_functions_are_float32_and_take_int_or_tuple_shapes():
    for t in (nd.ones((2, 3)), nd.zeros(4), nd.full((2, 3), 2.0), nd.empty((1, 2)), nd.arange(3)):
        assert t.dtype == np.float32
    assert nd.zeros(4).shape == (4,)
    assert nd.full((2, 3), 7).tolist() == [[7.0] * 3] * 2
    assert nd.arange(6).reshape((2, 3)).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert nd.arange(2, 8, 2).tolist() == [2.0, 4.0, 6.0]
    assert nd.arange(3, repeat=2).tolist() == [0, 0, 1, 1, 2, 2]
    x = nd.array([[1, 2], [3, 4]], dtype="float64")
    assert nd.ones_like(x).dtype == np.float64 and nd.zeros_like(x).tolist() == [[0, 0], [0, 0]]


def test_random_shapes_dtypes_and_seed():
    assert nd.random.uniform().shape == (1,)                 # MXNet 1.x: no shape gives (1,)
    assert nd.random.normal(shape=2).shape == (2,)
    u = nd.random.uniform(-1, 1, (2, 3))
    assert u.shape == (2, 3) and u.dtype == np.float32
    assert float(u.min().item()) >= -1 and float(u.max().item()) < 1
    nd.random.seed(7)
    a = nd.random.normal(0, 1, shape=(1000,))
    nd.random.seed(7)
    b = nd.random.normal(0, 1, shape=(1000,))
    assert np.array_equal(a.numpy(), b.numpy())
    big = nd.random.normal(loc=3.0, scale=2.0, shape=(20000,)).numpy()
    assert abs(big.mean() - 3.0) < 0.1 and abs(big.std() - 2.0) < 0.1
    r = nd.random.randint(0, 5, shape=(100,))
    assert r.dtype == np.int32 and r.numpy().min() >= 0 and r.numpy().max() < 5
    per = nd.random.normal(nd.array([0.0, 100.0]), nd.array([1.0, 1.0]), shape=(50,))
    assert per.shape == (2, 50) and abs(per.numpy()[1].mean() - 100) < 1      # one set per loc element
    assert nd.random_normal(shape=(2, 2)).shape == (2, 2)


def test_dot_contracts_last_axis_of_lhs_with_first_of_rhs():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((4, 5, 6)).astype(np.float32)
    out = nd.dot(nd.array(a), nd.array(b))
    assert out.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(out.numpy(), np.tensordot(a, b, axes=1), rtol=1e-5, atol=1e-5)
    m, n = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(nd.dot(nd.array(m), nd.array(n), transpose_b=True).numpy(), m @ n.T, rtol=1e-5)
    p = rng.standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(nd.dot(nd.array(n), nd.array(p), transpose_a=True, transpose_b=True).numpy(),
                               n.T @ p.T, rtol=1e-5, atol=1e-6)
    v = nd.dot(nd.array([1, 2, 3]), nd.array([4, 5, 6]))
    assert v.shape == (1,) and v.asscalar() == 32.0
    with pytest.raises(ShapeError, match="dot"):
        nd.dot(nd.ones((2, 3)), nd.ones((2, 3)))


def test_batch_dot():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 2, 3)).astype(np.float32), rng.standard_normal((4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(nd.batch_dot(nd.array(a), nd.array(b)).numpy(), a @ b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nd.batch_dot(nd.array(b), nd.array(a), transpose_a=True, transpose_b=True).numpy(),
                               np.swapaxes(b, 1, 2) @ np.swapaxes(a, 1, 2), rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError, match="batch_dot"):
        nd.batch_dot(nd.ones((2, 3)), nd.ones((3, 2)))


def test_concat_stack_split_follow_mxnet_defaults():
    a, b = nd.ones((2, 3)), nd.zeros((2, 2))
    assert nd.concat(a, b).shape == (2, 5)                   # dim=1 by default
    assert nd.concat(a, nd.ones((1, 3)), dim=0).shape == (3, 3)
    assert nd.stack(a, a).shape == (2, 2, 3) and nd.stack(a, a, axis=1).shape == (2, 2, 3)
    x = nd.arange(12).reshape((2, 6))
    parts = nd.split(x, num_outputs=3)                       # axis=1 by default
    assert isinstance(parts, list) and [p.shape for p in parts] == [(2, 2)] * 3
    assert parts[1].tolist() == [[2, 3], [8, 9]]
    sq = nd.split(x, num_outputs=2, axis=0, squeeze_axis=True)
    assert [p.shape for p in sq] == [(6,), (6,)]
    assert nd.split(x, num_outputs=1) .shape == (2, 6)       # one output: the array itself
    with pytest.raises(ShapeError, match="split"):
        nd.split(x, num_outputs=4)


def test_reductions_axis_keepdims_exclude_and_the_1_shape():
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = nd.array(data)
    assert nd.sum(x).shape == (1,) and nd.sum(x).asscalar() == data.sum()
    np.testing.assert_allclose(nd.sum(x, axis=1).numpy(), data.sum(1))
    np.testing.assert_allclose(nd.mean(x, axis=(0, 2), keepdims=True).numpy(), data.mean((0, 2), keepdims=True))
    np.testing.assert_allclose(nd.sum(x, axis=1, exclude=True).numpy(), data.sum((0, 2)))
    np.testing.assert_allclose(nd.max(x, axis=-1).numpy(), data.max(-1))
    np.testing.assert_allclose(nd.min(x, axis=0).numpy(), data.min(0))
    assert nd.prod(nd.array([1, 2, 3, 4])).asscalar() == 24
    am = nd.argmax(nd.array([[1, 5, 2], [7, 0, 3]]), axis=1)
    assert am.dtype == np.float32 and am.tolist() == [1.0, 0.0]      # MXNet returns float32 indices
    assert nd.argmin(nd.array([[1, 5, 2], [7, 0, 3]]), axis=0).tolist() == [0.0, 1.0, 0.0]
    assert nd.mean(nd.ones((3,)), axis=0, exclude=True).shape == (3,)    # nothing left to reduce


def test_norm():
    x = nd.array([[3, 4], [6, 8]])
    assert nd.norm(x).shape == (1,) and abs(nd.norm(x).asscalar() - np.sqrt(125)) < 1e-5
    np.testing.assert_allclose(nd.norm(x, axis=1).numpy(), [5, 10])
    np.testing.assert_allclose(nd.norm(x, ord=1, axis=0).numpy(), [9, 12])
    assert abs(x.norm().asscalar() - np.sqrt(125)) < 1e-5


@pytest.mark.parametrize("in_shape,code,expected", [
    ((2, 3, 4), (4, 0, 2), (4, 3, 2)), ((2, 3, 4), (2, 0, 0), (2, 3, 4)), ((2, 3, 4), (6, 1, -1), (6, 1, 4)),
    ((2, 3, 4), (3, -1, 8), (3, 1, 8)), ((2, 3, 4), (-1,), (24,)), ((2, 3, 4), (-2,), (2, 3, 4)),
    ((2, 3, 4), (2, -2), (2, 3, 4)), ((2, 3, 4), (-2, 1, 1), (2, 3, 4, 1, 1)), ((2, 3, 4), (-3, 4), (6, 4)),
    ((2, 3, 4, 5), (-3, -3), (6, 20)), ((2, 3, 4), (0, -3), (2, 12)), ((2, 3, 4), (-3, -2), (6, 4)),
    ((2, 3, 4), (-4, 1, 2, -2), (1, 2, 3, 4)), ((2, 3, 4), (2, -4, -1, 3, -2), (2, 1, 3, 4)),
])
def test_reshape_special_codes_from_mxnet_docs(in_shape, code, expected):
    data = np.arange(np.prod(in_shape), dtype=np.float32).reshape(in_shape)
    out = nd.reshape(nd.array(data), code)
    assert out.shape == expected
    np.testing.assert_array_equal(out.numpy(), data.reshape(expected))     # row-major order kept


def test_reshape_reverse_and_errors():
    x = nd.zeros((10, 5, 4))
    assert nd.reshape(x, (-1, 0)).shape == (40, 5)
    assert nd.reshape(x, (-1, 0), reverse=True).shape == (50, 4)
    assert nd.reshape(x, shape=(0, -1)).shape == (10, 20)
    with pytest.raises(ShapeError, match="reshape"):
        nd.reshape(x, (3, -1))
    with pytest.raises(ShapeError, match="reshape"):
        nd.reshape(x, (7, 0, 0))


def test_transpose_flatten_expand_dims_and_broadcasts():
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = nd.array(data)
    assert nd.transpose(x).shape == (4, 3, 2)
    np.testing.assert_array_equal(nd.transpose(x, axes=(1, 0, 2)).numpy(), data.transpose(1, 0, 2))
    assert nd.flatten(x).shape == (2, 12) and nd.flatten(nd.ones((5,))).shape == (5, 1)
    assert nd.expand_dims(x, axis=1).shape == (2, 1, 3, 4)
    assert nd.broadcast_to(nd.ones((1, 3)), (0, 3)).shape == (1, 3)
    assert nd.broadcast_to(nd.ones((1, 3)), (4, 3)).shape == (4, 3)
    assert nd.broadcast_axis(nd.ones((1, 3)), axis=0, size=5).shape == (5, 3)
    assert nd.broadcast_like(nd.ones((1, 3)), nd.zeros((2, 3))).shape == (2, 3)
    np.testing.assert_array_equal(nd.broadcast_add(nd.ones((2, 1)), nd.arange(3)).numpy(),
                                  1 + np.arange(3)[None].repeat(2, 0))
    assert nd.broadcast_mul(nd.ones((2, 1)) * 2, nd.arange(3)).tolist() == [[0, 2, 4]] * 2


def test_comparisons_return_the_input_dtype_and_where_accepts_them():
    a, b = nd.array([1, 2, 3]), nd.array([3, 2, 1])
    eq = nd.equal(a, b)
    assert eq.dtype == np.float32 and eq.tolist() == [0.0, 1.0, 0.0]
    assert nd.broadcast_greater(a, b).tolist() == [0, 0, 1] and nd.lesser_equal(a, b).tolist() == [1, 1, 0]
    assert nd.where(nd.greater(a, b), a, b).tolist() == [3, 2, 3]
    assert nd.maximum(a, 2).tolist() == [2, 2, 3] and nd.minimum(a, b).tolist() == [1, 2, 1]


def test_softmax_log_softmax_against_numpy():
    data = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=np.float32)
    e = np.exp(data - data.max(-1, keepdims=True))
    ref = e / e.sum(-1, keepdims=True)
    np.testing.assert_allclose(nd.softmax(nd.array(data)).numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(nd.log_softmax(nd.array(data)).numpy(), np.log(ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nd.softmax(nd.array(data), axis=0).numpy(),
                               np.exp(data) / np.exp(data).sum(0), rtol=1e-6)
    t = nd.softmax(nd.array(data), temperature=2.0).numpy()
    e2 = np.exp(data / 2)
    np.testing.assert_allclose(t, e2 / e2.sum(-1, keepdims=True), rtol=1e-6)


def test_one_hot_pick_take_clip():
    oh = nd.one_hot(nd.array([1, 0, 2, 5]), 3)               # float indices; 5 is out of range
    assert oh.dtype == np.float32
    assert oh.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert nd.one_hot(nd.array([1]), 2, on_value=5, off_value=-1).tolist() == [[-1, 5]]
    x = nd.array([[1, 2], [3, 4], [5, 6]])
    assert nd.pick(x, nd.array([0, 1, 0]), axis=1).tolist() == [1, 4, 5]
    assert nd.pick(x, nd.array([0, 1]), axis=0).tolist() == [1, 4]
    assert nd.pick(x, nd.array([0, 1, 9]), axis=1, keepdims=True).tolist() == [[1], [4], [6]]   # clip mode
    assert nd.take(x, nd.array([2, 0])).tolist() == [[5, 6], [1, 2]]
    assert nd.clip(nd.array([-2, 0.5, 3]), 0, 1).tolist() == [0, 0.5, 1]


def test_ndarray_methods():
    x = nd.array([[1, 2], [3, 4]])
    assert nd.sum(x).asscalar() == 10.0 and isinstance(nd.sum(x).asscalar(), float)
    with pytest.raises(ShapeError, match="asscalar"):
        x.asscalar()
    assert isinstance(x.asnumpy(), np.ndarray) and x.asnumpy().dtype == np.float32
    assert x.context == dg.cpu() and x.ctx == dg.cpu() and x.as_in_context(dg.cpu()) is x
    c = x.copy()
    c[0, 0] = 100
    assert x[0, 0].asscalar() == 1.0
    target = nd.zeros((2, 2))
    assert x.copyto(target) is target and target.tolist() == x.tolist()
    assert x.copyto(dg.cpu()).tolist() == x.tolist()
    assert x.wait_to_read() is None and nd.waitall() is None   # eager numpy: nothing is pending
    assert x.astype("int32").dtype == np.int32
    assert x.size == 4 and x.shape == (2, 2)


def test_contexts():
    assert dg.cpu() == dg.device("cpu") and dg.cpu(3) == dg.device("cpu")
    assert dg.context.num_gpus() == (0 if not dg.gpu_available() else dg.context.num_gpus())
    assert nd.ones((2,), ctx=dg.cpu()).context == dg.cpu()
    if not dg.gpu_available():
        with pytest.raises(DualgraphError, match="gpu"):
            dg.gpu()


def test_crash_course_autograd_with_python_control_flow():
    def f(a):
        b = a * 2
        while b.norm().asscalar() < 1000:
            b = b * 2
        if b.sum().asscalar() >= 0:
            c = b[0]
        else:
            c = b[1]
        return c

    nd.random.seed(3)
    a = nd.random.uniform(shape=2)
    a.attach_grad()
    with autograd.record():
        c = f(a)
    c.backward()
    # c is a piecewise-linear function of a: c = k * a[i], so its gradient is c / a[i] at index i
    ratio = (c / a[0]).asscalar()
    assert a.grad[0].asscalar() == pytest.approx(ratio, rel=1e-5) and a.grad[1].asscalar() == 0.0


def test_gradients_through_nd_ops_by_hand():
    x = nd.array([[1.0, 2.0], [3.0, 4.0]])
    w = nd.array([[1.0], [-1.0]])
    x.attach_grad()
    w.attach_grad()
    with autograd.record():
        y = nd.sum(nd.dot(x, w) * nd.pick(x, nd.array([1, 0]), axis=1, keepdims=True))
    y.backward()
    # y = sum_i (x_i . w) * p_i with p = [x01, x10]; dy/dw = sum_i p_i x_i
    assert w.grad.tolist() == [[1 * 2 + 3 * 3], [2 * 2 + 4 * 3]]
    xw = [1 - 2, 3 - 4]
    assert x.grad.tolist() == [[2 * 1, 2 * -1 + xw[0]], [3 * 1 + xw[1], 3 * -1]]


def test_save_load_roundtrip(tmp_path):
    a, b = nd.array([1, 2]), nd.arange(6).reshape((2, 3))
    nd.save(str(tmp_path / "list"), [a, b])
    got = nd.load(str(tmp_path / "list"))
    assert [g.tolist() for g in got] == [a.tolist(), b.tolist()]
    nd.save(str(tmp_path / "dict"), {"a": a, "b": b})
    got = nd.load(str(tmp_path / "dict"))
    assert got["b"].tolist() == b.tolist() and got["b"].dtype == np.float32
    nd.save(str(tmp_path / "one"), a)
    assert nd.load(str(tmp_path / "one"))[0].tolist() == [1, 2]


def test_activation_and_fully_connected():
    x = nd.array([[-1.0, 2.0]])
    assert nd.Activation(x, act_type="relu").tolist() == [[0, 2]]
    np.testing.assert_allclose(nd.Activation(x, act_type="softrelu").numpy(), np.log1p(np.exp([[-1.0, 2.0]])),
                               rtol=1e-6)
    with pytest.raises(DualgraphError, match="act_type"):
        nd.Activation(x, act_type="swishy")
    w, b = nd.array([[1, 1], [2, 0]]), nd.array([10, 20])
    assert nd.FullyConnected(x, w, b, num_hidden=2).tolist() == [[11, 18]]
    assert nd.FullyConnected(nd.ones((2, 1, 2)), w, no_bias=True, num_hidden=2).tolist() == [[2, 2], [2, 2]]


def test_dropout_only_while_training():
    x = nd.ones((1000,))
    assert nd.Dropout(x, p=0.5).tolist() == x.tolist()           # not training outside record()
    with autograd.record():
        y = nd.Dropout(x, p=0.5)
    kept = y.numpy()
    assert set(np.unique(kept)) <= {0.0, 2.0} and 300 < (kept == 0).sum() < 700


def test_shared_math_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(nd.dot(nd.array(a), nd.array(b)).numpy(),
                               (torch.tensor(a) @ torch.tensor(b)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nd.log_softmax(nd.array(a)).numpy(),
                               torch.log_softmax(torch.tensor(a), -1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nd.norm(nd.array(a)).numpy(), [torch.tensor(a).norm().item()], rtol=1e-6)
    np.testing.assert_allclose(nd.softrelu(nd.array(a)).numpy(), torch.nn.functional.softplus(
        torch.tensor(a)).numpy(), rtol=1e-5, atol=1e-6)


def test_pad_width_lists_before_and_after_per_axis():
    x = nd.arange(6).reshape((1, 1, 2, 3))
    out = nd.pad(x, mode="constant", pad_width=(0, 0, 0, 0, 1, 1, 2, 0), constant_value=9)
    np.testing.assert_array_equal(out.numpy(), np.pad(np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3),
                                                      ((0, 0), (0, 0), (1, 1), (2, 0)), constant_values=9))


def test_only_mxnet_names_are_exported():
    import types
    names = {n for n in dir(nd) if not n.startswith("_") and not isinstance(getattr(nd, n), types.ModuleType)}
    assert not names & {"Tensor", "ShapeError", "InvalidValue", "is_training"}
