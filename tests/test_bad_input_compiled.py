"""Bad input fed to compiled functions (extends test_bad_input.py): NaN/inf, empty and size-1 dims,
int/bool dtypes, retraces on new shapes. A compiled function must give what the same function gives
eagerly -- values (NaN where eager has NaN), shape and dtype -- or also raise a dualgraph error."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dualgraph as dg

FUNCS = {
    "chain": lambda x: dg.tanh(x * 2.0 + 1.0) - dg.exp(dg.clip(x, -5.0, 5.0)),
    "softmax": lambda x: dg.softmax(x, axis=-1),
    "reduce": lambda x: x.sum(axis=0) + x.mean(axis=0) * 0.5,
    "max": lambda x: x.max(axis=-1),
    "matmul": lambda x: x @ x.mT,
    "relu_mix": lambda x: (dg.relu(x) * x).sum(axis=-1, keepdims=True) + x,
    "where": lambda x: dg.where(x > 0.5, x, -x) * 2,
    "reshape": lambda x: x.reshape(-1)[::2],
}
COMPILED = {name: dg.function(f) for name, f in FUNCS.items()}

floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
shapes = hnp.array_shapes(min_dims=2, max_dims=3, min_side=0, max_side=4)


def _outcome(fn, a):
    try:
        out = fn(dg.tensor(a))
    except dg.DualgraphError as e:
        return ("error", type(e).__name__)
    return ("ok", out.numpy())


def _same(c, e):
    assert c[0] == e[0], (c, e)
    if c[0] == "error":
        assert c == e, (c, e)  # the same error class in both modes
        return
    c, e = c[1], e[1]
    assert c.shape == e.shape and c.dtype == e.dtype
    assert np.array_equal(np.isnan(c), np.isnan(e))
    np.testing.assert_allclose(c, e, rtol=1e-5, atol=1e-6, equal_nan=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(FUNCS)), hnp.arrays(np.float32, shapes, elements=floats))
def test_compiled_equals_eager_on_nan_inf_and_empty_inputs(name, a):
    with np.errstate(all="ignore"):
        _same(_outcome(COMPILED[name], a), _outcome(FUNCS[name], a))


@pytest.mark.filterwarnings("ignore::dualgraph.function.api.RetraceWarning")
@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["int64", "int32", "bool", "float64"]), hnp.array_shapes(min_dims=2, max_dims=2, max_side=4))
def test_compiled_equals_eager_on_other_dtypes(dtype, shape):
    a = (np.arange(int(np.prod(shape))).reshape(shape) % 3).astype(dtype)
    for name in ("reduce", "where", "reshape", "relu_mix"):
        with np.errstate(all="ignore"):
            _same(_outcome(COMPILED[name], a), _outcome(FUNCS[name], a))


def test_wrong_arguments_to_a_compiled_function_name_the_problem():
    f = dg.function(lambda x, y: x + y)
    with pytest.raises(dg.ShapeError, match=r"\(2, 3\).*\(4,\)|\(4,\).*\(2, 3\)"):
        f(dg.ones(2, 3), dg.ones(4))
    with pytest.raises(TypeError):
        f(dg.ones(2))                           # missing argument: Python's own message
    g = dg.function(lambda x: x * 2, input_signature=[dg.TensorSpec([None, 3])])
    with pytest.raises(dg.ShapeError, match="input_signature"):
        g(dg.ones(2, 4))
    with pytest.raises(TypeError, match="input_signature"):
        g(dg.ones(2, 3, dtype="int64"))
    np.testing.assert_allclose(g(dg.ones(5, 3)).numpy(), np.full((5, 3), 2.0))


def test_negating_a_bool_tensor_is_the_same_error_compiled_and_eager():
    mask = dg.tensor([True, False])
    for fn in (lambda x: -x, dg.function(lambda x: -x)):
        with pytest.raises(dg.DTypeError, match="neg"):
            fn(mask)
