"""dg.linalg against its definitions (hand-derived values, numpy, finite differences) and against PyTorch's
torch.linalg where installed: values, gradients of gauge-invariant functions, batching, result types and the
errors for singular, non-square and integer inputs."""
import math

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.autograd import gradcheck
from dualgraph.errors import AutogradError, DTypeError, InvalidValue, ShapeError

L = dg.linalg
RNG = np.random.default_rng(7)


def _t(a, grad=False):
    return dg.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _rand(*shape):
    return RNG.standard_normal(shape)


def _wellcond(*shape):
    return _rand(*shape) + shape[-1] * np.eye(shape[-1])


def _sym(*shape):
    a = _rand(*shape)
    return a + np.swapaxes(a, -1, -2)


# ---- values by definition (no torch needed) -------------------------------------------------------------

def test_inv_of_a_2x2_matrix_is_the_adjugate_over_the_determinant():
    a = np.array([[4.0, 7.0], [2.0, 6.0]])
    want = np.array([[6.0, -7.0], [-2.0, 4.0]]) / 10.0
    np.testing.assert_allclose(L.inv(_t(a)).numpy(), want, atol=1e-12)
    batch = _wellcond(3, 2, 4, 4)
    got = L.inv(_t(batch)).numpy()
    np.testing.assert_allclose(batch @ got, np.broadcast_to(np.eye(4), batch.shape), atol=1e-10)


def test_det_and_slogdet_by_hand():
    a = _t([[1.0, 2.0], [3.0, 4.0]])
    assert L.det(a).item() == pytest.approx(-2.0)
    sign, logabs = L.slogdet(a)
    assert sign.item() == -1.0 and logabs.item() == pytest.approx(math.log(2.0))
    r = L.slogdet(_t([[1.0, 2.0], [2.0, 4.0]]))  # singular: sign 0, log|det| -inf
    assert r.sign.item() == 0.0 and r.logabsdet.item() == -np.inf
    assert dg.det(a).item() == pytest.approx(-2.0) and a.det().item() == pytest.approx(-2.0)


def test_solve_follows_pytorchs_vector_and_matrix_rule():
    a = _wellcond(2, 3, 3)
    b_vecs = _rand(2, 3)          # shape A.shape[:-1]: a batch of vectors
    x = L.solve(_t(a), _t(b_vecs)).numpy()
    assert x.shape == (2, 3)
    np.testing.assert_allclose(np.einsum("bij,bj->bi", a, x), b_vecs, atol=1e-10)
    b_mat = _rand(3, 5)           # a matrix broadcast over A's batch
    x = L.solve(_t(a), _t(b_mat)).numpy()
    assert x.shape == (2, 3, 5)
    np.testing.assert_allclose(a @ x, np.broadcast_to(b_mat, (2, 3, 5)), atol=1e-10)
    b_right = _rand(4, 3)         # X A = B
    x = L.solve(_t(a[0]), _t(b_right), left=False).numpy()
    np.testing.assert_allclose(x @ a[0], b_right, atol=1e-10)


def test_cholesky_lower_and_upper():
    a = _rand(4, 4)
    spd = a @ a.T + 4 * np.eye(4)
    low = L.cholesky(_t(spd)).numpy()
    np.testing.assert_allclose(low, np.tril(low))
    np.testing.assert_allclose(low @ low.T, spd, atol=1e-10)
    up = L.cholesky(_t(spd), upper=True).numpy()
    np.testing.assert_allclose(up, low.T)
    # only the lower triangle is read
    np.testing.assert_allclose(L.cholesky(_t(np.tril(spd) + np.triu(np.full((4, 4), 99.0), 1))).numpy(), low)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3), (3, 5), (2, 4, 3)])
def test_qr_modes_shapes_and_factorization(shape):
    a = _rand(*shape)
    m, n = shape[-2:]
    k = min(m, n)
    q, r = L.qr(_t(a))
    assert q.shape == shape[:-2] + (m, k) and r.shape == shape[:-2] + (k, n)
    np.testing.assert_allclose(q.numpy() @ r.numpy(), a, atol=1e-10)
    qtq = np.swapaxes(q.numpy(), -1, -2) @ q.numpy()
    np.testing.assert_allclose(qtq, np.broadcast_to(np.eye(k), shape[:-2] + (k, k)), atol=1e-10)
    np.testing.assert_allclose(r.numpy(), np.triu(r.numpy()))
    qc, rc = L.qr(_t(a), mode="complete")
    assert qc.shape == shape[:-2] + (m, m) and rc.shape == shape[:-2] + (m, n)
    np.testing.assert_allclose(qc.numpy() @ rc.numpy(), a, atol=1e-10)
    qe, re_ = L.qr(_t(a), mode="r")
    assert qe.shape == (0,) and re_.shape == r.shape
    np.testing.assert_allclose(np.abs(re_.numpy()), np.abs(r.numpy()), atol=1e-10)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3), (3, 5), (2, 4, 3)])
def test_svd_shapes_order_and_reconstruction(shape):
    a = _rand(*shape)
    m, n = shape[-2:]
    k = min(m, n)
    u, s, vh = L.svd(_t(a))  # full_matrices=True by default, as PyTorch
    assert u.shape == shape[:-2] + (m, m) and s.shape == shape[:-2] + (k,) and vh.shape == shape[:-2] + (n, n)
    u, s, vh = L.svd(_t(a), full_matrices=False)
    assert u.shape == shape[:-2] + (m, k) and vh.shape == shape[:-2] + (k, n)
    np.testing.assert_allclose((u.numpy() * s.numpy()[..., None, :]) @ vh.numpy(), a, atol=1e-10)
    assert np.all(np.diff(s.numpy(), axis=-1) <= 0)
    np.testing.assert_allclose(L.svdvals(_t(a)).numpy(), s.numpy(), atol=1e-12)
    np.testing.assert_allclose(s.numpy(), np.linalg.svd(a, compute_uv=False), atol=1e-10)


def test_eigh_ascending_eigenpairs_and_uplo_reads_one_triangle():
    a = _sym(2, 4, 4)
    w, v = L.eigh(_t(a))
    assert np.all(np.diff(w.numpy(), axis=-1) > 0)
    np.testing.assert_allclose(a @ v.numpy(), v.numpy() * w.numpy()[..., None, :], atol=1e-10)
    garbage_upper = np.tril(a) + np.triu(np.full(a.shape, 5.0), 1)
    np.testing.assert_allclose(L.eigvalsh(_t(garbage_upper)).numpy(), w.numpy(), atol=1e-10)
    garbage_lower = np.triu(a) + np.tril(np.full(a.shape, 5.0), -1)
    np.testing.assert_allclose(L.eigvalsh(_t(garbage_lower), UPLO="U").numpy(), w.numpy(), atol=1e-10)


@pytest.mark.parametrize("a", [_rand(5, 3), _rand(3, 5), _rand(4, 2) @ _rand(2, 4)], ids=["tall", "wide", "rank2"])
def test_pinv_satisfies_the_moore_penrose_conditions(a):
    x = L.pinv(_t(a)).numpy()
    np.testing.assert_allclose(a @ x @ a, a, atol=1e-9)
    np.testing.assert_allclose(x @ a @ x, x, atol=1e-9)
    np.testing.assert_allclose((a @ x).T, a @ x, atol=1e-9)
    np.testing.assert_allclose((x @ a).T, x @ a, atol=1e-9)
    s = _sym(4, 4)
    np.testing.assert_allclose(L.pinv(_t(s), hermitian=True).numpy(), np.linalg.pinv(s), atol=1e-9)


def test_matrix_rank():
    assert L.matrix_rank(_t(_rand(4, 2) @ _rand(2, 5))).item() == 2
    assert L.matrix_rank(_t(np.zeros((3, 3)))).item() == 0
    got = L.matrix_rank(_t(np.stack([np.eye(3), np.diag([1.0, 1.0, 0.0])])))
    assert got.dtype == np.int64 and got.tolist() == [3, 2]
    assert L.matrix_rank(_t(np.diag([1.0, 1e-3, 0.0])), atol=1e-2).item() == 1
    assert L.matrix_rank(_t(np.diag([-2.0, 1.0, 0.0])), hermitian=True).item() == 2


def test_cross_of_unit_vectors_and_torch_cross_default_dim():
    e = np.eye(3)
    np.testing.assert_allclose(L.cross(_t(e[0]), _t(e[1])).numpy(), e[2])
    a, b = _rand(3, 4), _rand(3, 4)
    np.testing.assert_allclose(dg.cross(_t(a), _t(b)).numpy(), np.cross(a, b, axis=0), atol=1e-12)  # first size-3 dim
    np.testing.assert_allclose(L.cross(_t(a.T), _t(b.T)).numpy(), np.cross(a.T, b.T), atol=1e-12)
    with pytest.raises(ShapeError, match="linalg.cross"):
        L.cross(_t(a), _t(b))  # dim=-1 has size 4


def test_norms_by_hand():
    v = _t([3.0, -4.0, 0.0])
    assert L.vector_norm(v).item() == pytest.approx(5.0)
    assert L.vector_norm(v, 1).item() == pytest.approx(7.0)
    assert L.vector_norm(v, math.inf).item() == 4.0 and L.vector_norm(v, -math.inf).item() == 0.0
    assert L.vector_norm(v, 0).item() == 2.0
    assert L.vector_norm(v, 3).item() == pytest.approx((27 + 64) ** (1 / 3))
    m = _t([[1.0, -2.0], [3.0, 4.0]])
    assert L.matrix_norm(m).item() == pytest.approx(math.sqrt(30))
    assert L.matrix_norm(m, 1).item() == 6.0 and L.matrix_norm(m, -1).item() == 4.0          # column sums
    assert L.matrix_norm(m, math.inf).item() == 7.0 and L.matrix_norm(m, -math.inf).item() == 3.0  # row sums
    s = np.linalg.svd(m.numpy(), compute_uv=False)
    assert L.matrix_norm(m, 2).item() == pytest.approx(s[0]) and L.matrix_norm(m, -2).item() == pytest.approx(s[1])
    assert L.matrix_norm(m, "nuc").item() == pytest.approx(s.sum())
    # linalg.norm: no ord -> 2-norm of the flattened input; ord with a 2-D input -> a matrix norm
    x = _rand(2, 3, 4)
    assert L.norm(_t(x)).item() == pytest.approx(np.sqrt((x ** 2).sum()))
    assert L.norm(m, 2).item() == pytest.approx(s[0])
    # torch.norm / Tensor.norm: a number p is a vector norm over all elements, even for a matrix
    assert m.norm(2).item() == pytest.approx(math.sqrt(30)) and dg.norm(m, 1).item() == 10.0
    assert m.norm(p="nuc").item() == pytest.approx(s.sum())
    assert m.norm(dim=1).shape == (2,) and m.norm(dim=1, keepdim=True).shape == (2, 1)
    assert m.norm(ord=1, axis=0).tolist() == [4.0, 6.0]   # MXNet's spelling of NDArray.norm


def test_norm_keepdim_and_dims():
    x = _rand(2, 3, 4)
    got = L.matrix_norm(_t(x), "fro", dim=(0, 2), keepdim=True)
    assert got.shape == (1, 3, 1)
    np.testing.assert_allclose(got.numpy().ravel(), np.sqrt((x ** 2).sum(axis=(0, 2))))
    got = L.matrix_norm(_t(x), "nuc", dim=(2, 0), keepdim=True)
    assert got.shape == (1, 3, 1)
    want = [np.linalg.svd(x[:, i, :].T, compute_uv=False).sum() for i in range(3)]
    np.testing.assert_allclose(got.numpy().ravel(), want, atol=1e-10)
    assert L.vector_norm(_t(x), 2, dim=(0, 2)).shape == (3,)
    assert L.vector_norm(_t(x), dtype=dg.float32).dtype == np.float32


# ---- gradients: finite differences on gauge-invariant functions ---------------------------------------

def _fd(fn, *arrays):
    assert gradcheck(fn, tuple(_t(a, grad=True) for a in arrays), atol=1e-6, rtol=1e-4)


def test_gradients_of_sign_free_functions_of_decompositions():
    a = _rand(4, 3)
    _fd(lambda x: (lambda u, s, vh: (u[:, :1] * s[:1]) @ vh[:1, :])(*L.svd(x)), a)       # top singular triple
    _fd(lambda x: (lambda u, s, vh: u[:, 1:2] @ u[:, 1:2].mT)(*L.svd(x.mT)), a)          # a projector, wide input
    _fd(lambda x: (lambda q, r: q @ q.mT)(*L.qr(x)), a)                                  # projector on the columns
    _fd(lambda x: (lambda w, v: v[:, -1:] @ v[:, -1:].mT * w[-1])(*L.eigh(x + x.mT)), _rand(4, 4))
    _fd(lambda x: L.svdvals(x), _rand(3, 5))
    _fd(lambda x: L.pinv(x), _rand(5, 3))
    _fd(lambda x: L.matrix_norm(x, "nuc"), _rand(3, 4))
    _fd(lambda x: L.cholesky(x @ x.mT + 3 * dg.eye(3, dtype=dg.float64)), _rand(3, 3))


def test_det_gradient_is_the_transposed_adjugate_also_at_singular_matrices():
    for a in ([[1.0, 2.0], [2.0, 4.0]], np.ones((3, 3)), np.diag([0.0, 0.0, 2.0]), _rand(2, 3, 3)):
        a = np.asarray(a)
        x = _t(a, grad=True)
        L.det(x).sum().backward()
        cof = np.empty_like(a)   # cofactors by their definition
        n = a.shape[-1]
        for i in range(n):
            for j in range(n):
                minor = np.delete(np.delete(a, i, axis=-2), j, axis=-1)
                cof[..., i, j] = (-1) ** (i + j) * (np.linalg.det(minor) if n > 1 else 1.0)
        np.testing.assert_allclose(x.grad.numpy(), cof, atol=1e-12)
        _fd(L.det, a)


@pytest.mark.parametrize("fn", [L.svdvals, L.eigvalsh, lambda x: L.matrix_norm(x, "nuc"),
                                lambda x: L.svd(x).S, lambda x: L.eigh(x).eigenvalues])
def test_values_of_repeated_singular_values_have_finite_gradients(fn):
    # d sum(sigma)/dA at an orthogonal A is U Vh (here I), d sum(lambda)/dA is I: the vectors' terms carry
    # no weight, so the 0/0 of the repeated values must not turn into NaN
    x = _t(np.eye(3), grad=True)
    fn(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.eye(3), atol=1e-12)


def test_full_matrices_extra_columns_get_no_gradient():
    # U's columns past min(m, n) are any basis of the complement: they take no gradient (PyTorch's rule)
    x = _t(_rand(4, 2), grad=True)
    u, s, vh = L.svd(x)
    (u[:, 2:] ** 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 0.0, atol=1e-12)


def test_vector_norm_of_a_zero_vector_has_zero_gradient():
    x = _t(np.zeros((2, 3)), grad=True)
    L.vector_norm(x, dim=1).sum().backward()
    assert np.all(np.isfinite(x.grad.numpy())) and not x.grad.numpy().any()


def test_norm_ties_share_the_gradient():
    x = _t([3.0, -3.0, 1.0], grad=True)
    L.vector_norm(x, math.inf).backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.5, -0.5, 0.0])


def test_clamp_and_second_order_through_inv():
    a = _t(_wellcond(3, 3), grad=True)
    g, = dg.autograd.grad(L.inv(a).sum(), [a], create_graph=True)
    gg, = dg.autograd.grad((g * g).sum(), [a])
    eps, base = 1e-6, _wellcond(3, 3)

    def first(m):
        mt = _t(m, grad=True)
        return (dg.autograd.grad(L.inv(mt).sum(), [mt])[0].numpy() ** 2).sum()
    b = a.detach().numpy()
    num = np.zeros_like(b)
    for idx in np.ndindex(*b.shape):
        p, q = b.copy(), b.copy()
        p[idx] += eps
        q[idx] -= eps
        num[idx] = (first(p) - first(q)) / (2 * eps)
    np.testing.assert_allclose(gg.numpy(), num, rtol=1e-4, atol=1e-6)
    _ = base


# ---- result types ---------------------------------------------------------------------------------------

def test_results_are_named_tuples_rebuilt_from_one_iterable():
    a = _t(_rand(3, 3))
    r = L.qr(a)
    assert r.Q is r[0] and r.R is r[1]
    assert type(r)(list(r)).R is r.R                     # pytrees rebuild tuples with type(t)(items)
    u = L.svd(a)
    assert (u.U, u.S, u.Vh) == tuple(u)
    e = L.eigh(a + a.mT)
    assert e.eigenvalues is e[0] and e.eigenvectors is e[1]
    assert "logabsdet" in repr(L.slogdet(a))


def test_traced_solve_and_eigh_equal_eager():
    a, b = _t(_wellcond(2, 3, 3)), _t(_rand(2, 3))
    f = dg.function(lambda a, b: L.solve(a, b) + L.eigvalsh(a + a.mT)[..., :1])
    np.testing.assert_allclose(f(a, b).numpy(), (L.solve(a, b) + L.eigvalsh(a + a.mT)[..., :1]).numpy(), atol=1e-12)


# ---- errors ---------------------------------------------------------------------------------------------

def test_singular_and_not_positive_definite_inputs_name_the_op_and_shape():
    sing = _t(np.array([[1.0, 2.0], [2.0, 4.0]]))
    with pytest.raises(L.LinAlgError, match=r"linalg.inv: .*singular.*\(2, 2\)"):
        L.inv(sing)
    with pytest.raises(L.LinAlgError, match=r"linalg.solve: .*singular"):
        L.solve(sing, _t([1.0, 2.0]))
    with pytest.raises(L.LinAlgError, match=r"linalg.cholesky: .*positive-definite.*\(2, 2\)"):
        L.cholesky(_t(-np.eye(2)))
    assert issubclass(L.LinAlgError, RuntimeError)   # torch.linalg.LinAlgError is a RuntimeError


@pytest.mark.parametrize("fn", [L.inv, L.det, L.slogdet, L.cholesky, L.eigh, L.eigvalsh])
def test_non_square_inputs_are_shape_errors_naming_op_and_shape(fn):
    with pytest.raises(ShapeError, match=r"linalg\.\w+: expects square matrices, got shape \(2, 3\)"):
        fn(_t(_rand(2, 3)))
    with pytest.raises(ShapeError, match=r"at least 2 dims\), got shape \(3,\)"):
        fn(_t(_rand(3)))


@pytest.mark.parametrize("fn", [L.inv, L.det, L.qr, L.svd, L.pinv, L.vector_norm])
def test_integer_inputs_are_dtype_errors(fn):
    with pytest.raises(DTypeError, match=r"int64"):
        fn(dg.tensor([[1, 2], [3, 4]]))


def test_argument_errors():
    a = _t(_rand(3, 3))
    with pytest.raises(ShapeError, match=r"linalg.solve: A of shape \(3, 3\) and B of shape \(4, 2\)"):
        L.solve(a, _t(_rand(4, 2)))
    with pytest.raises(InvalidValue, match="mode"):
        L.qr(a, mode="economic")
    with pytest.raises(InvalidValue, match="UPLO"):
        L.eigh(a, UPLO="X")
    with pytest.raises(ShapeError, match="1-D or 2-D"):
        L.norm(_t(_rand(2, 3, 4)), ord=2)
    with pytest.raises(InvalidValue, match="ord"):
        L.matrix_norm(a, 3)
    with pytest.raises(InvalidValue, match="ord"):
        L.vector_norm(a, "fro")
    x = _t(_rand(4, 2), grad=True)
    q, r = L.qr(x, mode="complete")
    with pytest.raises(AutogradError, match="mode='complete' and nrows > ncols"):
        (q.sum() + r.sum()).backward()


def test_export_names_the_op_without_an_onnx_form_and_lowers_det():
    onnx_mod = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _ = onnx_mod
    with pytest.raises(dg.onnx.ExportError, match="linalg_inv .*ONNX has no operator for a matrix inverse"):
        dg.onnx.export(lambda a: L.inv(a), (_t(_wellcond(3, 3)),), None)
    a = dg.tensor(_wellcond(2, 3, 3).astype(np.float32))
    model = dg.onnx.export(lambda a: (L.det(a), L.vector_norm(a, 3, dim=-1)), (a,), None)
    got = ort.InferenceSession(model.SerializeToString()).run(None, {model.graph.input[0].name: a.numpy()})
    np.testing.assert_allclose(got[0], np.linalg.det(a.numpy()), rtol=1e-4)
    np.testing.assert_allclose(got[1], (np.abs(a.numpy()) ** 3).sum(-1) ** (1 / 3), rtol=1e-5)
    with pytest.raises(dg.onnx.ExportError, match="float32 only"):
        dg.onnx.export(lambda a: L.det(a), (_t(_wellcond(3, 3)),), None)


# ---- against PyTorch ------------------------------------------------------------------------------------

def _torch_pair(fn_dg, fn_torch, *arrays, grad=True):
    torch = pytest.importorskip("torch")
    xs = [_t(a, grad=grad) for a in arrays]
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=grad) for a in arrays]
    out, tout = fn_dg(*xs), fn_torch(*ts)
    outs = out if isinstance(out, tuple) else (out,)
    touts = tout if isinstance(tout, tuple) else (tout,)
    for o, t in zip(outs, touts):
        assert tuple(o.shape) == tuple(t.shape)
        np.testing.assert_allclose(o.numpy(), t.detach().numpy(), atol=1e-9)
    if grad:
        sum((o * o).sum() for o in outs).backward()
        sum((t * t).sum() for t in touts).backward()
        for x, t in zip(xs, ts):
            want = t.grad.numpy() if t.grad is not None else np.zeros(t.shape)
            np.testing.assert_allclose(x.grad.numpy(), want, atol=1e-8)


def _svd_top(mod):
    return lambda x: (lambda u, s, vh: ((u[..., :, :1] * s[..., None, :1]) @ vh[..., :1, :], s))(*mod.svd(x))


def _eigh_top(mod):
    return lambda x: (lambda w, v: (w, v[..., :, -1:] @ v[..., :, -1:].mT))(*mod.eigh(x + x.mT))


def _qr_proj(mod):
    return lambda x: (lambda q, r: (q @ q.mT, r * r))(*mod.qr(x))


@pytest.mark.parametrize("name,args", [
    ("inv", (_wellcond(2, 3, 3),)), ("det", (_wellcond(2, 3, 3),)), ("slogdet", (_rand(2, 3, 3),)),
    ("cholesky", (_rand(2, 3, 3) @ np.swapaxes(_rand(2, 3, 3), -1, -2) + 3 * np.eye(3),)),
    ("solve", (_wellcond(2, 3, 3), _rand(2, 3))), ("solve", (_wellcond(2, 3, 3), _rand(3, 2))),
    ("qr", (_rand(2, 5, 3),)), ("qr", (_rand(3, 5),)), ("svdvals", (_rand(2, 3, 4),)), ("pinv", (_rand(2, 4, 3),)),
    ("eigvalsh", (_sym(2, 4, 4),)), ("cross", (_rand(4, 3), _rand(4, 3))), ("norm", (_rand(2, 3, 4),)),
])
def test_values_and_gradients_match_torch(name, args):
    torch = pytest.importorskip("torch")
    if name == "qr":
        _torch_pair(_qr_proj(L), _qr_proj(torch.linalg), *args)
    _torch_pair(getattr(L, name), getattr(torch.linalg, name), *args)


@pytest.mark.parametrize("shape", [(2, 5, 3), (3, 3), (3, 5)])
def test_svd_and_eigh_gauge_invariant_outputs_match_torch(shape):
    torch = pytest.importorskip("torch")
    _torch_pair(_svd_top(L), _svd_top(torch.linalg), _rand(*shape))
    _torch_pair(_eigh_top(L), _eigh_top(torch.linalg), _rand(*shape[:-1], shape[-2]))


@pytest.mark.parametrize("ord", [2, 1, 0, 3, 0.5, math.inf, -math.inf, -1.5])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (1, False), ((0, 1), True)])
def test_vector_norm_matches_torch(ord, dim, keepdim):
    torch = pytest.importorskip("torch")
    _torch_pair(lambda x: L.vector_norm(x, ord, dim, keepdim), lambda x: torch.linalg.vector_norm(x, ord, dim, keepdim),
                _rand(3, 5))


@pytest.mark.parametrize("ord", ["fro", "nuc", 2, -2, 1, -1, math.inf, -math.inf])
@pytest.mark.parametrize("dim,keepdim", [((-2, -1), False), ((0, 2), True), ((2, 0), False)])
def test_matrix_norm_matches_torch(ord, dim, keepdim):
    torch = pytest.importorskip("torch")
    _torch_pair(lambda x: L.matrix_norm(x, ord, dim, keepdim), lambda x: torch.linalg.matrix_norm(x, ord, dim, keepdim),
                _rand(2, 3, 4))


@pytest.mark.parametrize("args,kwargs", [((), {}), ((2,), {}), ((1,), {"dim": 1}), (("nuc",), {}),
                                         ((3,), {"dim": (0, 1), "keepdim": True}), (("fro",), {"dim": 0})])
def test_tensor_norm_matches_torch(args, kwargs):
    torch = pytest.importorskip("torch")
    _torch_pair(lambda x: x.norm(*args, **kwargs), lambda x: x.norm(*args, **kwargs), _rand(3, 4))
    _torch_pair(lambda x: dg.norm(x, *args, **kwargs), lambda x: torch.norm(x, *args, **kwargs), _rand(3, 4))


@pytest.mark.parametrize("args,kwargs", [((), {}), ((2,), {}), ((math.inf,), {}), (("nuc",), {}), ((None, 1), {}),
                                         ((-1, (0, 1)), {"keepdim": True})])
def test_linalg_norm_matches_torch(args, kwargs):
    torch = pytest.importorskip("torch")
    _torch_pair(lambda x: L.norm(x, *args, **kwargs), lambda x: torch.linalg.norm(x, *args, **kwargs), _rand(3, 4))


def test_matrix_rank_and_full_svd_shapes_match_torch():
    torch = pytest.importorskip("torch")
    a = _rand(4, 2) @ _rand(2, 5)
    assert L.matrix_rank(_t(a)).item() == torch.linalg.matrix_rank(torch.tensor(a)).item() == 2
    for full in (True, False):
        got = [tuple(t.shape) for t in L.svd(_t(a), full_matrices=full)]
        want = [tuple(t.shape) for t in torch.linalg.svd(torch.tensor(a), full_matrices=full)]
        assert got == want
    for mode in ("reduced", "complete", "r"):
        assert [tuple(t.shape) for t in L.qr(_t(a), mode=mode)] == \
            [tuple(t.shape) for t in torch.linalg.qr(torch.tensor(a), mode=mode)]


# ---- composites: vecdot, multi_dot, matrix_power, solve_triangular, cond, lstsq ---------------------------

def test_composites_by_hand():
    shear = _t([[1.0, 1.0], [0.0, 1.0]])
    assert L.matrix_power(shear, 5).tolist() == [[1.0, 5.0], [0.0, 1.0]]
    assert L.matrix_power(shear, -3).tolist() == [[1.0, -3.0], [0.0, 1.0]]
    assert L.matrix_power(shear, 0).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert L.matrix_power(dg.tensor([[2, 0], [0, 3]]), 2).tolist() == [[4, 0], [0, 9]]   # ints for n >= 0
    with pytest.raises(InvalidValue, match="integer"):
        L.matrix_power(shear, 1.5)
    assert L.vecdot(_t([1.0, 2.0, 3.0]), _t([4.0, 5.0, 6.0])).item() == 32.0
    a, b, c = _rand(2, 3), _rand(3, 4), _rand(4)
    np.testing.assert_allclose(L.multi_dot([_t(a), _t(b), _t(c)]).numpy(), a @ b @ c, atol=1e-12)
    with pytest.raises(ShapeError, match=r"multi_dot: tensor 1 must be 2-D"):
        L.multi_dot([_t(a), _t(c), _t(c)])
    assert L.cond(_t(np.diag([4.0, 2.0, 1.0]))).item() == pytest.approx(4.0)
    m, rhs = _rand(5, 3), _rand(3, 2)
    sol = L.lstsq(_t(m), _t(m @ rhs))
    np.testing.assert_allclose(sol.solution.numpy(), rhs, atol=1e-10)
    assert sol.rank.item() == 3 and sol.residuals.shape == (0,) and sol.singular_values.shape == (0,)


def test_solve_triangular_reads_only_its_triangle():
    a = _wellcond(3, 3)
    b = _rand(3, 2)
    garbage = np.triu(a) + np.tril(np.full((3, 3), 50.0), -1)
    x = L.solve_triangular(_t(garbage), _t(b), upper=True).numpy()
    np.testing.assert_allclose(np.triu(a) @ x, b, atol=1e-10)
    x = L.solve_triangular(_t(garbage), _t(b), upper=True, unitriangular=True).numpy()
    np.testing.assert_allclose((np.triu(a, 1) + np.eye(3)) @ x, b, atol=1e-10)
    xl = L.solve_triangular(_t(a), _t(b.T), upper=False, left=False).numpy()
    np.testing.assert_allclose(xl @ np.tril(a), b.T, atol=1e-10)
    g = _t(garbage, grad=True)
    L.solve_triangular(g, _t(b), upper=True).sum().backward()
    assert not np.tril(g.grad.numpy(), -1).any()      # entries never read get no gradient


@pytest.mark.parametrize("case", ["vecdot", "multi_dot", "power3", "power-2", "tri_up", "tri_low_right_unit",
                                  "cond", "cond_fro", "lstsq"])
def test_composites_match_torch(case):
    torch = pytest.importorskip("torch")
    a, b = _wellcond(2, 3, 3), _rand(2, 3, 2)
    fns = {
        "vecdot": (lambda m: (lambda x, y: m.vecdot(x, y, dim=-2)), (a, a[..., ::-1].copy())),
        "multi_dot": (lambda m: (lambda x, y: m.multi_dot([x[0], y[0], y[1].mT])), (a, b)),
        "power3": (lambda m: (lambda x: m.matrix_power(x, 3)), (a,)),
        "power-2": (lambda m: (lambda x: m.matrix_power(x, -2)), (a,)),
        "tri_up": (lambda m: (lambda x, y: m.solve_triangular(x, y, upper=True)), (a, b)),
        "tri_low_right_unit": (lambda m: (lambda x, y: m.solve_triangular(x, y.mT, upper=False, left=False,
                                                                          unitriangular=True)), (a, b)),
        "cond": (lambda m: (lambda x: m.cond(x)), (_rand(3, 5),)),
        "cond_fro": (lambda m: (lambda x: m.cond(x, "fro")), (a,)),
        "lstsq": (lambda m: (lambda x, y: m.lstsq(x, y).solution), (_rand(5, 3), _rand(5, 2))),
    }
    make, args = fns[case]
    _torch_pair(make(L), make(torch.linalg), *args, grad=case != "cond_fro")  # torch's cond('fro') backward fails


# ---- torch.* products and diagonals ----------------------------------------------------------------------

def test_products_and_diagonals_by_hand():
    m = dg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert dg.trace(m[:, :2]).item() == 6.0 and m.diagonal().tolist() == [1.0, 5.0]
    assert m.diagonal(1).tolist() == [2.0, 6.0] and m.diagonal(-1).tolist() == [4.0]
    assert dg.diag(dg.tensor([1.0, 2.0]), 1).tolist() == [[0, 1, 0], [0, 0, 2], [0, 0, 0]]
    assert dg.diag_embed(dg.tensor([[np.inf, 1.0]])).tolist() == [[[np.inf, 0.0], [0.0, 1.0]]]   # no inf*0 NaN
    assert dg.outer(dg.tensor([1, 2]), dg.tensor([3, 4, 5])).tolist() == [[3, 4, 5], [6, 8, 10]]
    assert dg.vdot(dg.tensor([1, 2], dtype=dg.int32), dg.tensor([3, 4], dtype=dg.int32)).dtype == np.int32
    assert dg.kron(dg.eye(2), dg.tensor([[1.0, 2.0]])).tolist() == [[1, 2, 0, 0], [0, 0, 1, 2]]
    nan_in = dg.full((2, 2), float("nan"))
    assert not np.isnan(dg.addmm(nan_in, dg.eye(2), dg.eye(2), beta=0).numpy()).any()   # beta=0 ignores input
    assert np.isnan(dg.logdet(dg.tensor(np.diag([-1.0, 2.0]))).item())
    assert dg.logdet(dg.tensor(np.diag([3.0, 2.0]))).item() == pytest.approx(math.log(6.0))
    a = _rand(2, 3, 4)
    np.testing.assert_allclose(dg.tensordot(_t(a), _t(a), ([1, 2], [1, 2])).numpy(),
                               np.tensordot(a, a, ([1, 2], [1, 2])), atol=1e-12)
    with pytest.raises(ShapeError, match=r"bmm: batch sizes differ: shapes \(2, 3, 4\) and \(3, 4, 5\)"):
        dg.bmm(_t(a), _t(_rand(3, 4, 5)))
    with pytest.raises(ShapeError, match="mv: expects a 2-D matrix and a 1-D vector"):
        dg.mv(_t(a), _t(_rand(4)))
    with pytest.raises(DTypeError, match="linalg.vecdot"):
        L.vecdot(dg.tensor([1, 2]), dg.tensor([1, 2]))


def test_cholesky_solve_gradient_stays_in_the_factors_triangle():
    m = _rand(3, 3)
    low = np.linalg.cholesky(m @ m.T + 3 * np.eye(3))
    b = _rand(3, 2)
    x = dg.cholesky_solve(_t(b), _t(low))
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(low @ low.T, b), atol=1e-10)
    lt = _t(low, grad=True)
    dg.cholesky_solve(_t(b), lt).sum().backward()
    assert not np.triu(lt.grad.numpy(), 1).any()
    _fd(lambda f: dg.cholesky_solve(_t(b), f), low)


_TORCH_PRODUCTS = [
    ("bmm", lambda m: m.bmm, ((2, 3, 4), (2, 4, 5))), ("mv", lambda m: m.mv, ((3, 4), (4,))),
    ("outer", lambda m: m.outer, ((3,), (4,))), ("vdot", lambda m: m.vdot, ((3,), (3,))),
    ("tensordot", lambda m: m.tensordot, ((2, 3, 4), (3, 4, 5))), ("inner", lambda m: m.inner, ((2, 3, 4), (5, 4))),
    ("addmm", lambda m: (lambda i, a, b: m.addmm(i, a, b, beta=0.5, alpha=2.0)), ((5,), (3, 4), (4, 5))),
    ("baddbmm", lambda m: (lambda i, a, b: m.baddbmm(i, a, b, alpha=-1.0)), ((2, 3, 5), (2, 3, 4), (2, 4, 5))),
    ("diagonal", lambda m: (lambda x: m.diagonal(x, 1, 2, 0)), ((3, 2, 4),)),
    ("diag", lambda m: (lambda x: m.diag(x, -1)), ((3,),)), ("diag2", lambda m: (lambda x: m.diag(x, 1)), ((3, 4),)),
    ("diag_embed", lambda m: (lambda x: m.diag_embed(x, 1, 0, 2)), ((2, 3),)), ("trace", lambda m: m.trace, ((3, 4),)),
    ("logdet", lambda m: (lambda x: m.logdet(x @ x.mT + 0.5)), ((2, 3, 3),)),
    ("pinverse", lambda m: m.pinverse, ((4, 3),)), ("kron", lambda m: m.kron, ((2, 1, 3), (1, 2, 2))),
    ("chain_matmul", lambda m: (lambda a, b: m.chain_matmul(a, b, a.mT)), ((2, 3), (3, 3))),
]


@pytest.mark.parametrize("name,fn,shapes", _TORCH_PRODUCTS, ids=[c[0] for c in _TORCH_PRODUCTS])
def test_products_and_diagonals_match_torch(name, fn, shapes):
    torch = pytest.importorskip("torch")
    _torch_pair(fn(dg), fn(torch), *[_rand(*s) for s in shapes])
