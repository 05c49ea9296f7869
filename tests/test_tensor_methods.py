"""PyTorch's Tensor methods and shape functions: *_as, t, new_*, type_as, clamp_/clip_, clamp with tensor
bounds, split/tensor_split/unbind/*split, *stack, atleast_*d, flatten/unflatten and the size queries;
by definition (numpy, hand values, finite differences) and against PyTorch where installed."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph.autograd import gradcheck
from dualgraph.errors import AutogradError, ShapeError

RNG = np.random.default_rng(3)


def _np(*shape):
    return RNG.standard_normal(shape)


def _vals(out):
    return [o.numpy() for o in out] if isinstance(out, (tuple, list)) else out.numpy()


# ---- *_as, t, T, mT -------------------------------------------------------------------------------------

def test_as_methods_take_the_other_tensors_shape_or_dtype():
    x, other = dg.arange(6.0), dg.zeros(2, 3, dtype=dg.int64)
    assert x.view_as(other).shape == (2, 3) and x.reshape_as(other).shape == (2, 3)
    assert dg.ones(3).expand_as(other).shape == (2, 3)
    y = x.type_as(other)
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 3, 4, 5]


def test_t_transposes_2d_and_keeps_0d_1d():
    a = dg.tensor(_np(2, 3))
    np.testing.assert_array_equal(a.t().numpy(), a.numpy().T)
    np.testing.assert_array_equal(dg.t(a).numpy(), a.numpy().T)
    assert dg.arange(4).t().shape == (4,) and dg.tensor(2.0).t().shape == ()
    with pytest.raises(ShapeError, match=r"t: expects a tensor with at most 2 dims, got shape \(2, 3, 4\)"):
        dg.zeros(2, 3, 4).t()
    b = dg.tensor(_np(2, 3, 4))
    assert b.mT.shape == (2, 4, 3) and b.T.shape == (4, 3, 2)


# ---- new_* ----------------------------------------------------------------------------------------------

def test_new_factories_inherit_dtype_and_device():
    x = dg.tensor([1, 2, 3], dtype=dg.int32)
    for z in (x.new_zeros(2, 3), x.new_zeros((2, 3)), x.new_ones([2, 3]), x.new_empty(2, 3)):
        assert z.shape == (2, 3) and z.dtype == np.int32 and z.device == x.device
    assert x.new_zeros(2).tolist() == [0, 0] and x.new_ones(2).tolist() == [1, 1]
    f = x.new_full((2,), 7)
    assert f.dtype == np.int32 and f.tolist() == [7, 7]
    assert x.new_zeros(2, dtype=dg.float64).dtype == np.float64
    g = dg.ones(2).new_ones(3, requires_grad=True)
    assert g.requires_grad and g.is_leaf


def test_new_tensor_copies_in_this_tensors_dtype():
    x = dg.zeros(2, dtype=dg.float64)
    t = x.new_tensor([1, 2])
    assert t.dtype == np.float64 and t.tolist() == [1.0, 2.0] and not t.requires_grad
    src = dg.tensor([1.0, 2.0], requires_grad=True)
    c = x.new_tensor(src)
    assert c.dtype == np.float64 and not c.requires_grad and c.grad_fn is None
    c.add_(1.0)
    assert src.tolist() == [1.0, 2.0]   # a copy, not a view
    assert x.new_tensor([1.5], dtype=dg.float32).dtype == np.float32


# ---- clamp / clip ---------------------------------------------------------------------------------------

def test_clamp_in_place_writes_into_the_tensor_and_returns_it():
    x = dg.tensor([-2.0, 0.5, 3.0])
    out = x.clamp_(min=-1.0, max=1.0)
    assert out is x and x.tolist() == [-1.0, 0.5, 1.0]
    y = dg.tensor([-2.0, 5.0])
    y.clip_(max=0.0)
    assert y.tolist() == [-2.0, 0.0]
    leaf = dg.tensor([1.0], requires_grad=True)
    with pytest.raises(AutogradError, match="clamp_"):
        leaf.clamp_(min=0.0)


def test_clamp_in_place_on_a_non_leaf_is_differentiable():
    w = dg.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    h = w * 2.0
    h.clamp_(min=-1.0, max=2.0)
    h.sum().backward()
    assert w.grad.tolist() == [0.0, 2.0, 0.0]


def test_clamp_with_tensor_bounds_broadcasts_and_routes_gradients():
    x = dg.tensor([[1.0, 5.0, -3.0], [0.0, 2.0, 9.0]], requires_grad=True)
    lo = dg.tensor([0.5, 0.0, -1.0], requires_grad=True)
    hi = dg.tensor(4.0)
    out = dg.clamp(x, min=lo, max=hi)
    assert out.tolist() == [[1.0, 4.0, -1.0], [0.5, 2.0, 4.0]]
    out.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert lo.grad.tolist() == [1.0, 0.0, 1.0]
    assert x.clip(max=dg.tensor([0.0, 0.0, 0.0])).tolist() == [[0.0, 0.0, -3.0], [0.0, 0.0, 0.0]]


# ---- splitting ------------------------------------------------------------------------------------------

def test_split_with_a_list_of_sizes_and_chunk():
    x = dg.arange(10)
    assert [p.tolist() for p in x.split([2, 3, 5])] == [[0, 1], [2, 3, 4], [5, 6, 7, 8, 9]]
    assert [len(p) for p in x.split(4)] == [4, 4, 2]
    assert [len(p) for p in dg.chunk(dg.arange(6), 4)] == [2, 2, 2]   # PyTorch: fewer chunks than asked
    with pytest.raises(ShapeError, match=r"add up to 9"):
        x.split([2, 3, 4])


def test_tensor_split_sections_indices_and_tensor_indices():
    x = dg.arange(7)
    assert [p.tolist() for p in dg.tensor_split(x, 3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [p.tolist() for p in x.tensor_split([1, 5])] == [[0], [1, 2, 3, 4], [5, 6]]
    assert [p.tolist() for p in x.tensor_split([2, 9])] == [[0, 1], [2, 3, 4, 5, 6], []]
    assert [p.tolist() for p in x.tensor_split([-2])] == [[0, 1, 2, 3, 4], [5, 6]]
    assert [p.tolist() for p in x.tensor_split(dg.tensor([3]))] == [[0, 1, 2], [3, 4, 5, 6]]
    m = dg.arange(12).reshape(3, 4)
    assert [tuple(p.shape) for p in m.tensor_split(3, dim=1)] == [(3, 2), (3, 1), (3, 1)]


def test_unbind_and_hsplit_vsplit_dsplit():
    a = np.arange(24).reshape(2, 3, 4)
    x = dg.tensor(a)
    parts = x.unbind(1)
    assert len(parts) == 3 and all(p.shape == (2, 4) for p in parts)
    np.testing.assert_array_equal(parts[1].numpy(), a[:, 1])
    assert [p.tolist() for p in dg.unbind(dg.tensor([1, 2]))] == [1, 2]
    for fn, npfn in [(dg.hsplit, np.hsplit), (dg.vsplit, np.vsplit), (dg.dsplit, np.dsplit)]:
        sec = 2 if npfn is not np.hsplit else 3
        for g, w in zip(fn(x, sec), npfn(a, sec)):
            np.testing.assert_array_equal(g.numpy(), w)
        for g, w in zip(fn(x, [1]), npfn(a, [1])):
            np.testing.assert_array_equal(g.numpy(), w)
    assert [p.tolist() for p in dg.hsplit(dg.arange(4), 2)] == [[0, 1], [2, 3]]
    with pytest.raises(ShapeError, match=r"hsplit: dim 1 of size 3 .* not divisible into 2"):
        dg.hsplit(x, 2)
    with pytest.raises(ShapeError, match="vsplit: expects at least 2 dims"):
        dg.vsplit(dg.arange(4), 2)


# ---- stacking -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["hstack", "vstack", "dstack", "column_stack", "row_stack"])
@pytest.mark.parametrize("shapes", [[(3,), (3,)], [(2, 3), (2, 3)], [(), ()], [(2, 3, 1), (2, 3, 1)]])
def test_stacks_match_numpy(name, shapes):
    if name == "column_stack" and len(shapes[0]) == 3:
        shapes = [(2, 3), (2, 1)]
    arrays = [_np(*s) for s in shapes]
    npname = "vstack" if name == "row_stack" else name
    want = getattr(np, npname)(arrays)
    got = getattr(dg, name)([dg.tensor(a) for a in arrays])
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want)


def test_atleast_nd_shapes():
    s, v, m = dg.tensor(1.0), dg.ones(3), dg.ones(2, 3)
    assert [dg.atleast_1d(t).shape for t in (s, v)] == [(1,), (3,)]
    assert [dg.atleast_2d(t).shape for t in (s, v, m)] == [(1, 1), (1, 3), (2, 3)]
    assert [dg.atleast_3d(t).shape for t in (s, v, m)] == [(1, 1, 1), (1, 3, 1), (2, 3, 1)]
    assert [t.shape for t in dg.atleast_2d(s, v)] == [(1, 1), (1, 3)]


def test_flatten_unflatten_and_size_queries():
    x = dg.tensor(_np(2, 3, 4))
    assert x.flatten(1).shape == (2, 12) and x.flatten(0, 1).shape == (6, 4)
    assert x.flatten(1).unflatten(1, (3, 4)).shape == (2, 3, 4)
    assert dg.unflatten(x, -1, (2, -1)).shape == (2, 3, 2, 2)
    with pytest.raises(ShapeError, match=r"unflatten: sizes \(5, 2\) multiply to 10, but dim 2 has size 4"):
        x.unflatten(2, (5, 2))
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.numel() == 24 and x.nelement() == 24 and x.dim() == 3 and x.ndimension() == 3
    assert dg.tensor([[1, 2]]).tolist() == [[1, 2]] and dg.tensor([2.5]).item() == 2.5


# ---- gradients and tracing ------------------------------------------------------------------------------

def test_gradients_through_the_new_shape_functions():
    a = dg.tensor(_np(3, 4), requires_grad=True)
    b = dg.tensor(_np(3, 4), requires_grad=True)
    assert gradcheck(lambda x: dg.tensor_split(x, [1, 3], dim=1)[1] * 2.0, (a,))
    assert gradcheck(lambda x: dg.unbind(x, 1)[2], (a,))
    assert gradcheck(lambda x, y: dg.dstack([x, y]), (a, b))
    assert gradcheck(lambda x, y: dg.column_stack([x[:, 0], y]), (a, b))
    assert gradcheck(lambda x: x.unflatten(1, (2, 2)) ** 2, (a,))
    assert gradcheck(lambda x, y: dg.clamp(x, min=y), (a, b))


def test_traced_functions_use_them():
    f = dg.function(lambda x: dg.hstack([x.new_zeros(x.shape[0], 1), x]) + dg.vstack(x.unbind(0)).sum())
    x = dg.tensor(_np(3, 2))
    want = dg.hstack([x.new_zeros(3, 1), x]) + dg.vstack(x.unbind(0)).sum()
    np.testing.assert_allclose(f(x).numpy(), want.numpy(), atol=1e-6)


# ---- against PyTorch ------------------------------------------------------------------------------------

CASES = [
    ("tensor_split", lambda m, x: m.tensor_split(x, 3, dim=1), (4, 7)),
    ("tensor_split idx", lambda m, x: m.tensor_split(x, [1, 4, 10], dim=1), (4, 7)),
    ("hsplit", lambda m, x: m.hsplit(x, [2, 3]), (3, 6)),
    ("vsplit", lambda m, x: m.vsplit(x, 3), (6, 2)),
    ("dsplit", lambda m, x: m.dsplit(x, 2), (2, 3, 4)),
    ("unbind", lambda m, x: m.unbind(x, -1), (2, 3)),
    ("split list", lambda m, x: m.split(x, [1, 2], dim=0), (3, 2)),
    ("chunk", lambda m, x: m.chunk(x, 4, dim=1), (2, 6)),
    ("hstack", lambda m, x: m.hstack([x, x * 2]), (2, 3)),
    ("vstack", lambda m, x: m.vstack([x[0], x[1]]), (2, 3)),
    ("dstack", lambda m, x: m.dstack([x, x]), (2, 3)),
    ("column_stack", lambda m, x: m.column_stack([x[0], x[1], x]), (3, 3)),
    ("unflatten", lambda m, x: m.unflatten(x, 1, (2, -1)), (3, 8)),
    ("t", lambda m, x: m.t(x), (3, 2)),
    ("clamp tensors", lambda m, x: m.clamp(x, min=x[0], max=x[1] + 1.0), (3, 4)),
    ("norm", lambda m, x: m.norm(x, 3, dim=0), (3, 4)),
    ("atleast_3d", lambda m, x: m.atleast_3d(x), (3, 4)),
]


@pytest.mark.parametrize("name,fn,shape", CASES, ids=[c[0] for c in CASES])
def test_functions_match_torch(name, fn, shape):
    torch = pytest.importorskip("torch")
    a = _np(*shape)
    x, tx = dg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    out, tout = fn(dg, x), fn(torch, tx)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    touts = list(tout) if isinstance(tout, (tuple, list)) else [tout]
    assert [tuple(o.shape) for o in outs] == [tuple(t.shape) for t in touts]
    for o, t in zip(outs, touts):
        np.testing.assert_allclose(o.numpy(), t.detach().numpy(), atol=1e-12)
    sum((o * o).sum() for o in outs).backward()
    sum((t * t).sum() for t in touts).backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), atol=1e-10)


def test_methods_match_torch():
    torch = pytest.importorskip("torch")
    a = np.arange(12.0).reshape(3, 4)
    x, tx = dg.tensor(a), torch.tensor(a)
    for name, args, kwargs in [("new_zeros", ((2, 3),), {}), ("new_ones", (2,), {}), ("new_full", ((2,), 1.5), {}),
                               ("new_tensor", ([1, 2],), {}), ("view_as", (tx.T,), {}), ("reshape_as", (tx.T,), {}),
                               ("t", (), {}), ("unflatten", (1, (2, 2)), {}), ("type_as", (tx.long(),), {})]:
        dargs = tuple(dg.tensor(v.numpy()) if isinstance(v, torch.Tensor) else v for v in args)
        got, want = getattr(x, name)(*dargs, **kwargs), getattr(tx, name)(*args, **kwargs)
        assert tuple(got.shape) == tuple(want.shape), name
        assert str(got.dtype) == str(want.dtype).replace("torch.", ""), name
        np.testing.assert_allclose(got.numpy(), want.numpy(), err_msg=name)
    y, ty = dg.tensor(a), torch.tensor(a)
    y.clamp_(2.0, 8.0)
    ty.clamp_(2.0, 8.0)
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    ti = torch.tensor([1, 2, 3])
    want = str(ti.new_full((2,), 3.7).dtype).replace("torch.", "")
    assert str(dg.tensor([1, 2, 3]).new_full((2,), 3.7).dtype) == want


def test_conjugate_transposes_of_real_tensors():
    x = dg.tensor(_np(2, 3, 4))
    np.testing.assert_array_equal(x.mH.numpy(), np.swapaxes(x.numpy(), -1, -2))
    np.testing.assert_array_equal(x[0].H.numpy(), x.numpy()[0].T)
    with pytest.raises(ShapeError, match=r"tensor.H is only supported on matrices .* \(2, 3, 4\)"):
        x.H


def test_product_and_diagonal_methods_are_the_functions():
    a, b, v = dg.tensor(_np(2, 3, 3)), dg.tensor(_np(2, 3, 3)), dg.tensor(_np(3))
    m = a[0]
    pairs = [(a.bmm(b), dg.bmm(a, b)), (m.mv(v), dg.mv(m, v)), (v.outer(v), dg.outer(v, v)), (v.ger(v), dg.ger(v, v)),
             (v.inner(v), dg.inner(v, v)), (v.vdot(v), dg.vdot(v, v)), (m.diagonal(1), dg.diagonal(m, 1)),
             (m.diag(), dg.diag(m)), (v.diag_embed(), dg.diag_embed(v)), (m.trace(), dg.trace(m)),
             (m.addmm(m, m), dg.addmm(m, m, m)), (a.baddbmm(a, b), dg.baddbmm(a, a, b)), (m.kron(m), dg.kron(m, m)),
             (m.pinverse(), dg.pinverse(m)), ((m @ m.mT).logdet(), dg.logdet(m @ m.mT))]
    for got, want in pairs:
        np.testing.assert_array_equal(got.numpy(), want.numpy())
