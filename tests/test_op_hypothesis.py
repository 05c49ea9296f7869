"""Property tests with hypothesis: broadcasting of binary elementwise ops and reductions over random
axes/keepdims, each against numpy (values, shapes, dtypes, and the gradients' shapes and values)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import dualgraph as dg
from dualgraph.ops.infer import broadcast_shapes

FAST = settings(max_examples=50, deadline=None)

# name, dg function, numpy function, how to draw the second operand
BINARY = [
    ("add", dg.add, np.add, "any"),
    ("sub", dg.sub, np.subtract, "any"),
    ("mul", dg.mul, np.multiply, "any"),
    ("div", dg.div, np.true_divide, "nonzero"),
    ("maximum", dg.maximum, np.maximum, "any"),
    ("minimum", dg.minimum, np.minimum, "any"),
    ("pow", dg.pow, np.power, "any"),
    ("eq", dg.eq, np.equal, "any"),
    ("lt", dg.lt, np.less, "any"),
    ("logical_and", dg.logical_and, np.logical_and, "any"),
]


def _values(draw, shape, kind, dtype=np.float64):
    if kind == "nonzero":
        elems = st.floats(0.5, 3.0) | st.floats(-3.0, -0.5)
    elif kind == "positive":
        elems = st.floats(0.5, 3.0)
    else:
        elems = st.integers(-3, 3).map(float)  # small integers: ties for comparisons and max/min
    return draw(hnp.arrays(dtype, shape, elements=elems))


def np_sum_to(g, shape):
    """Sum a broadcast array back to `shape` (what the gradient of broadcasting must do)."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


@pytest.mark.parametrize("name,fn,ref,kind", BINARY, ids=[b[0] for b in BINARY])
@FAST
@given(data=st.data())
def test_binary_broadcasting_matches_numpy(name, fn, ref, kind, data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3))
    sa, sb = shapes.input_shapes
    a = _values(data.draw, sa, "positive" if name == "pow" else "any")
    b = _values(data.draw, sb, kind)
    out = fn(dg.tensor(a), dg.tensor(b))
    expected = ref(a, b)
    assert tuple(out.shape) == shapes.result_shape == expected.shape
    assert out.dtype == expected.dtype
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@FAST
@given(data=st.data())
def test_binary_broadcasting_gradients_sum_back(name, data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3))
    sa, sb = shapes.input_shapes
    a = _values(data.draw, sa, "any")
    b = _values(data.draw, sb, "nonzero")
    ta, tb = dg.tensor(a, requires_grad=True), dg.tensor(b, requires_grad=True)
    out = getattr(dg, name)(ta, tb)
    g = np.random.default_rng(0).standard_normal(shapes.result_shape)
    out.backward(dg.tensor(g))
    ab, bb = np.broadcast_to(a, g.shape), np.broadcast_to(b, g.shape)
    da, db = {"add": (g, g), "sub": (g, -g), "mul": (g * bb, g * ab), "div": (g / bb, -g * ab / bb ** 2)}[name]
    assert ta.grad.shape == sa and tb.grad.shape == sb
    np.testing.assert_allclose(ta.grad.numpy(), np_sum_to(da, sa), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tb.grad.numpy(), np_sum_to(db, sb), rtol=1e-10, atol=1e-12)


def _broadcastable(sa, sb):
    try:
        np.broadcast_shapes(sa, sb)
        return True
    except ValueError:
        return False


def _mentions(msg, shape):
    return str(tuple(shape)) in msg or str(list(shape)) in msg


@pytest.mark.parametrize("name", ["add", "mul", "maximum", "lt", "where"])
@FAST
@given(sa=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
       sb=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_incompatible_shapes_raise_shape_error_naming_op_and_shapes(name, sa, sb):
    assume(not _broadcastable(sa, sb))
    a, b = dg.ones(*sa), dg.ones(*sb)
    with pytest.raises(dg.ShapeError) as info:
        if name == "where":
            dg.where(dg.ones(*sa) > 0, a, b)
        else:
            getattr(dg, name)(a, b)
    msg = str(info.value)
    assert name in msg, msg
    assert _mentions(msg, sa) and _mentions(msg, sb), msg
    assert isinstance(info.value, ValueError)


@FAST
@given(shapes=st.lists(hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3), min_size=1, max_size=3))
def test_infer_broadcast_shapes_agrees_with_numpy(shapes):
    try:
        expected = np.broadcast_shapes(*shapes)
    except ValueError:
        with pytest.raises(dg.ShapeError):
            broadcast_shapes("op", *shapes)
        return
    assert broadcast_shapes("op", *shapes) == expected


# ---- reductions ------------------------------------------------------------------------------------

REDUCTIONS = [
    ("sum", dg.sum, np.sum),
    ("mean", dg.mean, np.mean),
    ("prod", dg.prod, np.prod),
    ("amax", dg.amax, np.max),   # max(x, dim) is (values, indices), as PyTorch: amax takes several dims
    ("amin", dg.amin, np.min),
    ("var", dg.var, np.var),
    ("std", dg.std, np.std),
    ("logsumexp", dg.logsumexp, None),
    ("all", dg.all, np.all),
    ("any", dg.any, np.any),
]


@st.composite
def shape_and_axes(draw, single=False):
    shape = draw(hnp.array_shapes(min_dims=1 if single else 0, max_dims=4, min_side=1, max_side=4))
    nd = len(shape)
    if single:
        axis = draw(st.none() | st.integers(-nd, nd - 1))
    else:
        axis = draw(st.none() | (st.lists(st.integers(0, nd - 1), unique=True, min_size=1, max_size=nd)
                                 .map(lambda ax: tuple(a - nd if i % 2 else a for i, a in enumerate(ax)))
                                 if nd else st.none()))
        if isinstance(axis, tuple) and len(axis) == 1 and draw(st.booleans()):
            axis = axis[0]  # a bare int
    return shape, axis, draw(st.booleans()), draw(st.booleans())


def _call(fn, x, axis, keepdims, torch_spelling):
    if torch_spelling:
        return fn(x, dim=axis, keepdim=keepdims)
    return fn(x, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("name,fn,ref", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@FAST
@given(data=st.data())
def test_reductions_match_numpy(name, fn, ref, data):
    shape, axis, keepdims, torch_spelling = data.draw(shape_and_axes())
    if name == "prod":
        x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(0.5, 1.5)))
    elif name in ("all", "any"):
        x = data.draw(hnp.arrays(np.bool_, shape))
    else:
        x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3)))
    if ref is None:  # logsumexp; values are small, so the naive formula is exact enough
        ref = lambda v, axis, keepdims: np.log(np.sum(np.exp(v), axis=axis, keepdims=keepdims))  # noqa: E731
    expected = np.asarray(ref(x, axis=axis, keepdims=keepdims))
    out = _call(fn, dg.tensor(x), axis, keepdims, torch_spelling)
    assert tuple(out.shape) == expected.shape, (shape, axis, keepdims)
    assert out.dtype == expected.dtype
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["sum", "mean", "amax"])
@FAST
@given(data=st.data())
def test_reduction_gradients_broadcast_back(name, data):
    shape, axis, keepdims, torch_spelling = data.draw(shape_and_axes())
    n = int(np.prod(shape))
    x = (np.random.default_rng(n).permutation(n).reshape(shape) * 0.5).astype(np.float64)  # no ties for max
    t = dg.tensor(x, requires_grad=True)
    out = _call(getattr(dg, name), t, axis, keepdims, torch_spelling)
    g = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(dg.tensor(g))
    gk = g if keepdims else np.expand_dims(g, axis if axis is not None else tuple(range(len(shape))))
    if name == "sum":
        expected = np.broadcast_to(gk, shape)
    elif name == "mean":
        expected = np.broadcast_to(gk, shape) / (x.size // max(out.numpy().size, 1))
    else:
        expected = np.broadcast_to(gk, shape) * (x == np.max(x, axis=axis, keepdims=True))
    assert t.grad.shape == shape
    np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["argmax", "argmin", "cumsum"])
@FAST
@given(data=st.data())
def test_single_axis_reductions_match_numpy(name, data):
    shape, axis, keepdims, torch_spelling = data.draw(shape_and_axes(single=True))
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.integers(-5, 5).map(float)))  # ties: first index wins
    t = dg.tensor(x)
    if name == "cumsum":
        out = dg.cumsum(t, dim=axis) if torch_spelling else dg.cumsum(t, axis=axis)
        expected = np.cumsum(x, axis=axis)
    else:
        out = _call(getattr(dg, name), t, axis, keepdims, torch_spelling)
        expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert tuple(out.shape) == np.shape(expected)
    np.testing.assert_array_equal(out.numpy(), expected)


# ---- matmul: batched and broadcasting ------------------------------------------------------------------

@FAST
@given(data=st.data())
def test_matmul_broadcasting_matches_numpy(data):
    batch = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
    n, k, m = (data.draw(st.integers(1, 4)) for _ in range(3))
    vec_a, vec_b = data.draw(st.booleans()), data.draw(st.booleans())
    sa = (k,) if vec_a else batch.input_shapes[0] + (n, k)
    sb = (k,) if vec_b else batch.input_shapes[1] + (k, m)
    rng = np.random.default_rng(len(sa) * 7 + len(sb))
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    expected = np.matmul(a, b)
    ta, tb = dg.tensor(a, requires_grad=True), dg.tensor(b, requires_grad=True)
    out = dg.matmul(ta, tb)
    assert tuple(out.shape) == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(expected.shape)
    out.backward(dg.tensor(g))
    # d<g, a@b>/da by the chain rule written with einsum over the broadcast batch
    ab = a if a.ndim > 1 else a[None, :]
    bb = b if b.ndim > 1 else b[:, None]
    gb = g.reshape(np.broadcast_shapes(ab.shape[:-2], bb.shape[:-2]) + (ab.shape[-2], bb.shape[-1]))
    da = np_sum_to(gb @ np.swapaxes(bb, -1, -2), ab.shape).reshape(sa)
    db = np_sum_to(np.swapaxes(ab, -1, -2) @ gb, bb.shape).reshape(sb)
    np.testing.assert_allclose(ta.grad.numpy(), da, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tb.grad.numpy(), db, rtol=1e-10, atol=1e-12)


@FAST
@given(sa=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), sb=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
def test_matmul_mismatch_is_a_shape_error(sa, sb):
    try:
        np.matmul(np.ones(sa), np.ones(sb))
        return
    except ValueError:
        pass
    with pytest.raises(dg.ShapeError) as info:
        dg.matmul(dg.ones(*sa), dg.ones(*sb))
    assert "matmul" in str(info.value)


@FAST
@given(data=st.data())
def test_where_broadcasts_three_ways(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4, max_side=3))
    sc, sa, sb = shapes.input_shapes
    c = data.draw(hnp.arrays(np.bool_, sc))
    a, b = _values(data.draw, sa, "any"), _values(data.draw, sb, "any")
    ta, tb = dg.tensor(a, requires_grad=True), dg.tensor(b, requires_grad=True)
    out = dg.where(dg.tensor(c), ta, tb)
    expected = np.where(c, a, b)
    assert tuple(out.shape) == expected.shape == shapes.result_shape
    np.testing.assert_array_equal(out.numpy(), expected)
    g = np.random.default_rng(0).standard_normal(expected.shape)
    out.backward(dg.tensor(g))
    cb = np.broadcast_to(c, g.shape)
    np.testing.assert_allclose(ta.grad.numpy(), np_sum_to(np.where(cb, g, 0.0), sa), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tb.grad.numpy(), np_sum_to(np.where(cb, 0.0, g), sb), rtol=1e-12, atol=1e-12)
