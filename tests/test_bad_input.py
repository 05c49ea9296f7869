"""Bad input on purpose: random shapes, dtypes, NaN/inf, empty and zero-size tensors, non-contiguous
arrays, Python objects where tensors belong. Each gets numpy's answer or a clear dualgraph error,
never a crash, a hang or a silently wrong shape."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dualgraph as dg

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_])
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


def arrays(dtype=dtypes, shape=shapes):
    return dtype.flatmap(lambda d: hnp.arrays(
        d, shape, elements=hnp.from_dtype(np.dtype(d), allow_nan=True, allow_infinity=True,
                                          min_value=None if np.dtype(d).kind == "f" else -100,
                                          max_value=None if np.dtype(d).kind == "f" else 100)
        if np.dtype(d).kind != "b" else st.booleans()))


def _same(result, expected):
    got = result.numpy()
    assert got.shape == expected.shape, (got.shape, expected.shape)
    if expected.dtype.kind == "f" or got.dtype.kind == "f":
        np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=2e-3, atol=1e-5,
                                   equal_nan=True)
    else:
        np.testing.assert_array_equal(got, expected)


def check_against_numpy(dg_fn, np_fn, *arrays_):
    with np.errstate(all="ignore"):
        try:
            expected = np.asarray(np_fn(*arrays_))
        except (ValueError, IndexError, TypeError, np.exceptions.AxisError) as e:
            with pytest.raises(dg.DualgraphError):
                dg_fn(*[dg.tensor(a) for a in arrays_])
            return e
        result = dg_fn(*[dg.tensor(a) for a in arrays_])
    _same(result, expected.astype(result.dtype) if expected.dtype != result.dtype and
          np.can_cast(expected.dtype, result.dtype) else expected)
    return None


@SETTINGS
@given(arrays(), arrays(), st.sampled_from(["add", "sub", "mul", "maximum", "minimum"]))
def test_binary_ops_match_numpy_or_raise(a, b, name):
    if name == "sub" and np.bool_ in (a.dtype, b.dtype):
        with pytest.raises(dg.DTypeError):  # as PyTorch: no subtraction with a bool operand
            dg.sub(dg.tensor(a), dg.tensor(b))
        return
    np_fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "maximum": np.maximum,
             "minimum": np.minimum}[name]
    # numpy's op in dualgraph's common dtype (PyTorch's promotion; test_type_promotion.py checks it)
    dt = dg.dtypes.result_type(a, b)
    check_against_numpy(getattr(dg, name), lambda x, y: np_fn(x.astype(dt), y.astype(dt)), a, b)


@SETTINGS
@given(arrays(dtype=st.sampled_from([np.float32, np.float64])),
       st.sampled_from(["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "neg", "sin"]))
def test_unary_float_ops_follow_numpy_on_nan_inf(a, name):
    ref = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh,
           "sigmoid": lambda x: 1 / (1 + np.exp(-x.astype(np.float64))), "relu": lambda x: np.maximum(x, 0),
           "abs": np.abs, "neg": np.negative, "sin": np.sin}[name]
    check_against_numpy(getattr(dg, name), ref, a)


@SETTINGS
@given(arrays(dtype=st.sampled_from([np.float32, np.float64, np.int64])), st.integers(-5, 5),
       st.booleans(), st.sampled_from(["sum", "mean", "max", "min", "prod", "argmax"]))
def test_reductions_match_numpy_or_raise(a, axis, keepdims, name):
    np_fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod,
             "argmax": np.argmax}[name]
    if a.ndim == 0 and axis in (0, -1):
        axis = None  # numpy's sum accepts axis 0 of a 0-d array but its mean refuses; we follow PyTorch: allowed
    if name == "argmax":
        check_against_numpy(lambda t: dg.argmax(t, axis=axis, keepdims=keepdims),
                            lambda x: np_fn(x, axis=axis, keepdims=keepdims), a)
    else:
        check_against_numpy(lambda t: getattr(dg, name)(t, axis=axis, keepdims=keepdims),
                            lambda x: np_fn(x, axis=axis, keepdims=keepdims), a)


@SETTINGS
@given(arrays(dtype=st.just(np.float32)), st.lists(st.integers(-1, 6), min_size=0, max_size=4))
def test_reshape_matches_numpy_or_raises(a, shape):
    check_against_numpy(lambda t: dg.reshape(t, tuple(shape)), lambda x: np.reshape(x, tuple(shape)), a)


@SETTINGS
@given(arrays(dtype=st.just(np.float64), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)),
       arrays(dtype=st.just(np.float64), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)))
def test_matmul_matches_numpy_or_raises(a, b):
    check_against_numpy(dg.matmul, np.matmul, a, b)


@SETTINGS
@given(arrays(dtype=st.just(np.float32), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)),
       st.integers(-7, 7), st.integers(-7, 7))
def test_integer_and_slice_indexing(a, i, j):
    check_against_numpy(lambda t: t[i], lambda x: x[i], a)
    check_against_numpy(lambda t: t[i:j], lambda x: x[i:j], a)
    check_against_numpy(lambda t: t[..., ::2], lambda x: x[..., ::2], a)


@SETTINGS
@given(st.lists(arrays(dtype=st.just(np.float32), shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=3)),
                min_size=1, max_size=3), st.integers(-2, 2))
def test_concat_matches_numpy_or_raises(parts, axis):
    check_against_numpy(lambda *ts: dg.concat(ts, axis=axis), lambda *xs: np.concatenate(xs, axis=axis), *parts)


def test_non_contiguous_inputs_are_read_correctly_and_not_mutated():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2].T  # non-contiguous, transposed
    keep = view.copy()
    t = dg.tensor(view, requires_grad=True)
    y = (t * t).sum()
    y.backward()
    np.testing.assert_allclose(t.grad.numpy(), 2 * keep)
    np.testing.assert_array_equal(view, keep)
    f = dg.from_numpy(np.asfortranarray(base))
    np.testing.assert_allclose((f @ f.T).numpy(), base @ base.T)


def test_empty_and_zero_size_tensors():
    e = dg.zeros(0, 3)
    assert dg.sum(e, axis=0).shape == (3,)
    assert dg.sum(e).item() == 0
    assert dg.concat([e, dg.ones(2, 3)]).shape == (2, 3)
    assert (e @ dg.ones(3, 4)).shape == (0, 4)
    assert dg.softmax(dg.zeros(0, 5), axis=-1).shape == (0, 5)
    with pytest.raises(dg.DualgraphError, match="max"):
        dg.max(e)
    with pytest.raises(dg.DualgraphError):
        dg.argmax(e)
    g = dg.zeros(0, 3, requires_grad=True)
    (g * 2).sum().backward()
    assert g.grad.shape == (0, 3)


@pytest.mark.parametrize("bad", [object(), "abc", {"a": 1}, [1, "x"], None])
def test_python_objects_where_tensors_belong(bad):
    t = dg.ones(3)
    with pytest.raises((dg.DualgraphError, TypeError)):
        t + bad if bad is not None else dg.matmul(t, bad)
    with pytest.raises((dg.DualgraphError, TypeError)):
        dg.tensor(bad) if not isinstance(bad, list) else dg.tensor(bad)


def test_huge_dims_give_a_clear_error_not_a_crash():
    with pytest.raises(dg.ShapeError, match="2199023255552"):
        dg.zeros(2**41, 2**30)
    with pytest.raises(dg.ShapeError, match="negative"):
        dg.ones(-1, 3)
    x = dg.ones(3)
    with pytest.raises(dg.ShapeError, match="broadcast"):
        dg.broadcast_to(x, (2**62, 4))


def test_nan_and_inf_propagate_like_numpy_in_softmax_and_logsumexp():
    x = dg.tensor([[0.0, float("inf"), 1.0], [float("nan"), 0.0, 0.0], [-float("inf")] * 3])
    with np.errstate(all="ignore"):
        lse = dg.logsumexp(x, axis=1).numpy()
    assert lse[0] == np.inf and np.isnan(lse[1]) and lse[2] == -np.inf
    with np.errstate(all="ignore"):
        sm = dg.softmax(x, axis=1).numpy()
    assert np.isnan(sm[1]).all()


def test_wrong_device_names_both_devices():
    if not dg.gpu_available():
        with pytest.raises(dg.DeviceError, match="cupy"):
            dg.ones(2, device="gpu")
        return
    with pytest.raises(dg.DeviceError, match="cpu"):
        dg.ones(2) + dg.ones(2, device="gpu")


@pytest.mark.parametrize("a_shape, b_shape", [((2, 3, 0), (0, 4)), ((0, 3, 5), (5, 4)), ((2, 0, 5), (5, 4))])
def test_matmul_of_empty_batched_input_by_a_weight(a_shape, b_shape):
    # the (..., M, K) @ (K, N) path folds a's rows into one 2-D product; empty sizes must fold too
    a = dg.zeros(*a_shape, requires_grad=True)
    b = dg.ones(*b_shape, requires_grad=True)
    y = a @ b
    np.testing.assert_array_equal(y.numpy(), np.zeros(a_shape[:-1] + b_shape[-1:], np.float32))
    y.sum().backward()
    assert tuple(a.grad.shape) == a_shape and tuple(b.grad.shape) == b_shape
    np.testing.assert_array_equal(b.grad.numpy(), np.zeros(b_shape, np.float32))
