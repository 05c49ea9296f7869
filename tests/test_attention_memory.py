"""scaled_dot_product_attention over blocks of query rows: values and gradients (q, k, v and a float
mask) against a naive numpy reference, finite differences and PyTorch (where installed), for causal,
bool and additive masks, L != S, sizes no block divides, broadcast batches, grouped query heads,
float32/float64, eager and compiled, second order; the block rule on both sides of each of its
thresholds; and the memory it exists for: the backward never holds more than about one (L, S) score
matrix per head (tracemalloc sees numpy's allocations)."""
import tracemalloc

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.kernels import native
from dualgraph.ops import attention as A


def _reduce_to(x, shape):
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def np_attention(q, k, v, g, mask=None, causal=False, scale=None):
    """(out, dq, dk, dv, dmask) of softmax(q k^T scale + masks) v on whole matrices in float64, each
    gradient summed back to its operand's shape; a row with no key allowed gives 0."""
    q, k, v, g = (a.astype(np.float64) for a in (q, k, v, g))
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    L, S = q.shape[-2], k.shape[-2]
    s = q @ np.swapaxes(k, -1, -2) * scale
    if causal:
        s = np.where(np.tri(L, S, dtype=bool), s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    dead = np.all(s == -np.inf, axis=-1, keepdims=True)
    s = np.where(dead, 0.0, s)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    p = np.where(dead, 0.0, e / e.sum(axis=-1, keepdims=True))
    out = p @ v
    dv = np.swapaxes(p, -1, -2) @ g
    dp = g @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = ds @ k * scale
    dk = np.swapaxes(ds, -1, -2) @ q * scale
    dm = None if mask is None or mask.dtype == bool else _reduce_to(ds, mask.shape)
    return out, _reduce_to(dq, q.shape), _reduce_to(dk, k.shape), _reduce_to(dv, v.shape), dm


def _row_mask(L, S, rng):
    m = rng.random((L, S)) < 0.7
    m[1] = False  # a query row that sees no key
    return m


# (q shape, k shape, v shape, mask maker or None, causal)
CASES = {
    "causal_square_odd": ((2, 3, 37, 5), (2, 3, 37, 5), (2, 3, 37, 4), None, True),
    "causal_L_lt_S": ((1, 2, 23, 4), (1, 2, 41, 4), (1, 2, 41, 3), None, True),
    "causal_L_gt_S": ((2, 2, 45, 3), (2, 2, 19, 3), (2, 2, 19, 3), None, True),
    "plain_L_ne_S": ((2, 37, 6), (2, 29, 6), (2, 29, 5), None, False),
    "bool_mask_dead_row": ((2, 2, 31, 4), (2, 2, 27, 4), (2, 2, 27, 4), lambda r: _row_mask(31, 27, r), False),
    "bool_key_padding": ((3, 2, 17, 4), (3, 2, 21, 4), (3, 2, 21, 4),
                         lambda r: r.random((3, 1, 1, 21)) < 0.6, False),
    "float_mask_LS": ((2, 3, 29, 4), (2, 3, 33, 4), (2, 3, 33, 2), lambda r: r.standard_normal((29, 33)), False),
    "float_mask_per_batch_keys": ((2, 3, 19, 4), (2, 3, 26, 4), (2, 3, 26, 4),
                                  lambda r: r.standard_normal((2, 1, 1, 26)), False),
    "float_mask_full": ((2, 2, 13, 3), (2, 2, 15, 3), (2, 2, 15, 3), lambda r: r.standard_normal((2, 2, 13, 15)),
                        False),
    "float_mask_with_minus_inf": ((1, 2, 21, 4), (1, 2, 21, 4), (1, 2, 21, 4),
                                  lambda r: np.where(r.random((21, 21)) < 0.3, -np.inf, r.standard_normal((21, 21))),
                                  False),
    "broadcast_kv_batch": ((3, 2, 25, 4), (1, 2, 30, 4), (1, 2, 30, 4), None, False),
    "broadcast_v_batch": ((2, 17, 4), (2, 19, 4), (3, 2, 19, 3), None, True),
}


def _arrays(case, dtype, seed=0):
    qs, ks, vs, mk, causal = CASES[case]
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in (qs, ks, vs))
    mask = mk(rng) if mk else None
    if mask is not None and mask.dtype != bool:
        mask = mask.astype(dtype)
    batch = np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2])
    g = rng.standard_normal(batch + (qs[-2], vs[-1])).astype(dtype)
    return q, k, v, g, mask, causal


@pytest.fixture(params=["many", "default"])
def blocks(request, monkeypatch):
    """'many': 4-row blocks (the sizes above leave a short last one); 'default': the shipped rule (two
    blocks at these sizes: at most half the rows each)."""
    if request.param == "many":
        monkeypatch.setattr(A, "_BLOCK_ELEMS", 1)
        monkeypatch.setattr(A, "_MIN_ROWS", 4)
    return request.param


@pytest.fixture(params=["c", "numpy"])
def loops(request, monkeypatch):
    """The block's row passes as C loops (where a compiler is) or as numpy's passes."""
    if request.param == "numpy":
        monkeypatch.setattr(A, "_loops", lambda xp, dt: None)
    elif not native.available():
        pytest.skip("no C compiler")
    else:
        assert A._loops(np, np.dtype(np.float32)) is not None
    return request.param


def _dg_grads(q, k, v, g, mask, causal, compiled=False):
    mask_grad = mask is not None and mask.dtype != bool

    def fn(q, k, v, m):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal)
        wrt = [q, k, v] + ([m] if mask_grad else [])
        return [out] + list(dg.autograd.grad(out, wrt, dg.tensor(g)))
    if compiled:
        fn = dg.function(fn)
    ts = [dg.tensor(a, requires_grad=True) for a in (q, k, v)]
    m = None if mask is None else dg.tensor(mask, requires_grad=mask_grad)
    return [r.numpy() for r in fn(*ts, m)]


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_values_and_gradients_match_the_naive_reference(case, dtype, compiled, blocks, loops):
    q, k, v, g, mask, causal = _arrays(case, dtype)
    got = _dg_grads(q, k, v, g, mask, causal, compiled)
    want = [w for w in np_attention(q, k, v, g, mask, causal) if w is not None]
    assert len(got) == len(want)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    for name, a, b in zip(["out", "dq", "dk", "dv", "dmask"], got, want):
        assert a.dtype == dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{case} {name}")


def test_the_backward_is_one_gradient_op_in_the_compiled_graph():
    q, k, v, g, _, _ = _arrays("causal_square_odd", np.float32)

    def grads(q, k, v):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return dg.autograd.grad(out, [q, k, v], dg.tensor(g))
    graph = dg.function(grads).traced_graph(*(dg.tensor(a, requires_grad=True) for a in (q, k, v)))
    names = [n.op.name for n in graph.nodes]
    assert names.count("scaled_dot_product_attention_grad") == 1
    assert "softmax" not in names and "softmax_grad" not in names and "exp" not in names


@pytest.mark.parametrize("groups", [2, 3])
def test_grouped_query_heads(groups, blocks, loops):
    rng = np.random.default_rng(groups)
    q = rng.standard_normal((2, 2 * groups, 21, 4))
    k, v = rng.standard_normal((2, 2, 21, 4)), rng.standard_normal((2, 2, 21, 3))
    g = rng.standard_normal((2, 2 * groups, 21, 3))
    ts = [dg.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ts, is_causal=True, enable_gqa=True)
    out.backward(dg.tensor(g))
    kr, vr = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)
    o, dq, dk, dv, _ = np_attention(q, kr, vr, g, causal=True)
    np.testing.assert_allclose(out.numpy(), o, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ts[0].grad.numpy(), dq, rtol=1e-10, atol=1e-10)
    for t, d in ((ts[1], dk), (ts[2], dv)):  # each key/value head serves `groups` query heads
        np.testing.assert_allclose(t.grad.numpy(), d.reshape(2, 2, groups, 21, -1).sum(2), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", ["causal_L_gt_S", "bool_mask_dead_row", "float_mask_LS", "broadcast_kv_batch"])
def test_first_and_second_order_by_finite_differences(case, monkeypatch, loops):
    monkeypatch.setattr(A, "_BLOCK_ELEMS", 1)
    monkeypatch.setattr(A, "_MIN_ROWS", 2)
    qs, ks, vs, mk, causal = CASES[case]
    small = [s[:-2] + (min(s[-2], 5), s[-1]) for s in (qs, ks, vs)]
    small[2] = small[2][:-2] + (small[1][-2], small[2][-1])
    rng = np.random.default_rng(1)
    ts = [dg.tensor(rng.standard_normal(s), requires_grad=True) for s in small]
    m = None
    if mk is not None:
        m = mk(rng)[..., :small[0][-2], :small[1][-2]] if np.ndim(mk(rng)) >= 2 else mk(rng)
        m = dg.tensor(m, requires_grad=m.dtype != bool)
        if not m.requires_grad:
            m_fixed = m

            def f(a, b, c):
                return F.scaled_dot_product_attention(a, b, c, attn_mask=m_fixed, is_causal=causal)
            assert dg.autograd.gradcheck(f, tuple(ts))
            assert dg.autograd.gradgradcheck(f, tuple(ts))
            return
        ts.append(m)

    def f(a, b, c, *mm):
        return F.scaled_dot_product_attention(a, b, c, attn_mask=mm[0] if mm else None, is_causal=causal)
    assert dg.autograd.gradcheck(f, tuple(ts))
    assert dg.autograd.gradgradcheck(f, tuple(ts))


def test_gradient_of_the_log_sum_exp_output(monkeypatch):
    """attention() also returns each row's log-sum-exp; a cotangent reaching it enters ds as p * g_lse."""
    monkeypatch.setattr(A, "_BLOCK_ELEMS", 1)
    monkeypatch.setattr(A, "_MIN_ROWS", 2)
    rng = np.random.default_rng(4)
    ts = [dg.tensor(rng.standard_normal((2, 7, 3)), requires_grad=True) for _ in range(3)]

    def f(q, k, v):
        out, lse = A.attention(q, k, v, scale=0.6, causal=True)
        return out.sum(-1, keepdims=True) * 0.5 + lse * lse
    assert dg.autograd.gradcheck(f, tuple(ts))
    assert dg.autograd.gradgradcheck(f, tuple(ts))


@pytest.mark.parametrize("case", ["causal_L_lt_S", "bool_mask_dead_row", "float_mask_LS", "float_mask_full"])
def test_against_torch(case, blocks):
    torch = pytest.importorskip("torch")
    q, k, v, g, mask, causal = _arrays(case, np.float32, seed=7)
    got = _dg_grads(q, k, v, g, mask, causal)
    tt = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    tm = None if mask is None else torch.tensor(mask, requires_grad=mask.dtype != bool)
    out = torch.nn.functional.scaled_dot_product_attention(*tt, attn_mask=tm, is_causal=causal)
    wrt = tt + ([tm] if tm is not None and tm.requires_grad else [])
    want = [out] + list(torch.autograd.grad(out, wrt, torch.tensor(g)))
    for a, b in zip(got, want):
        b = b.detach().numpy()
        if case == "bool_mask_dead_row":  # PyTorch gives a row with no key NaN, dualgraph (as documented) 0
            b = np.nan_to_num(b)
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_gradient_graph_with_a_float_mask_exports_to_onnx(blocks):
    pytest.importorskip("onnxruntime")
    from dualgraph import onnx as dgo
    q, k, v, g, mask, _ = _arrays("float_mask_per_batch_keys", np.float64)
    want = _dg_grads(q, k, v, g, mask, False)

    def fn(q, k, v, m):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        return [out] + list(dg.autograd.grad(out, [q, k, v, m], dg.tensor(g)))
    args = [dg.tensor(a, requires_grad=True) for a in (q, k, v, mask)]
    model = dgo.export(fn, args, None)
    sess = dgo.session(model)
    got = sess.run(None, {i.name: a for i, a in zip(sess.get_inputs(), (q, k, v, mask))})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


# ---- the block rule ---------------------------------------------------------------------------------------

def _check_blocks(blocks, L, S, causal):
    assert blocks[0][0] == 0 and blocks[-1][1] == L
    for (a0, a1, _), (b0, _, _) in zip(blocks, blocks[1:]):
        assert a1 == b0
    for i0, i1, kend in blocks:
        assert i1 > i0
        assert kend == (min(i1, S) if causal else S)


@pytest.mark.parametrize("causal", [False, True])
def test_row_blocks_on_both_sides_of_each_threshold(causal, monkeypatch):
    monkeypatch.setattr(A, "_BLOCK_ELEMS", 1 << 12)
    monkeypatch.setattr(A, "_MIN_ROWS", 8)
    # the budget gives 1 << 12 // (4 * 64) = 16 rows: above the minimum, below half of L
    b = A.row_blocks(100, 64, 4, causal)
    _check_blocks(b, 100, 64, causal)
    assert max(i1 - i0 for i0, i1, _ in b) == 15 and len(b) == 7  # 7 blocks of 16 rows, evened out
    # the budget gives 4 rows: the minimum (8) wins
    b = A.row_blocks(100, 64, 16, causal)
    _check_blocks(b, 100, 64, causal)
    assert {i1 - i0 for i0, i1, _ in b} <= {8, 7} and len(b) == 13
    # the budget would give 64 rows, more than half of L: two blocks
    b = A.row_blocks(30, 64, 1, causal)
    _check_blocks(b, 30, 64, causal)
    assert [(i0, i1) for i0, i1, _ in b] == [(0, 15), (15, 30)]
    assert A.row_blocks(31, 64, 1, causal)[0][:2] == (0, 16)
    assert [(i0, i1) for i0, i1, _ in A.row_blocks(1, 64, 1, causal)] == [(0, 1)]
    assert A.row_blocks(0, 64, 1, causal) == []


def test_causal_blocks_skip_the_keys_above_the_diagonal(monkeypatch):
    monkeypatch.setattr(A, "_BLOCK_ELEMS", 1)
    monkeypatch.setattr(A, "_MIN_ROWS", 10)
    assert A.row_blocks(40, 40, 1, True) == [(0, 10, 10), (10, 20, 20), (20, 30, 30), (30, 40, 40)]
    assert A.row_blocks(40, 25, 1, True) == [(0, 10, 10), (10, 20, 20), (20, 30, 25), (30, 40, 25)]
    assert A.row_blocks(40, 40, 1, False) == [(0, 10, 40), (10, 20, 40), (20, 30, 40), (30, 40, 40)]


def test_no_key_at_all_gives_zeros():
    q = dg.tensor(np.ones((2, 3, 4)), requires_grad=True)
    k = dg.tensor(np.ones((2, 0, 4)), requires_grad=True)
    v = dg.tensor(np.ones((2, 0, 5)), requires_grad=True)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.shape == (2, 3, 5) and not out.numpy().any()
    out.sum().backward()
    assert not q.grad.numpy().any() and k.grad.shape == (2, 0, 4)


# ---- memory --------------------------------------------------------------------------------------------

B, H, T, E = 1, 4, 1024, 16
SCORES = B * H * T * T * 4   # one (T, T) float32 matrix per head: 16 MB
SMALL = 64 * B * H * T * E * 4   # the O(T d) arrays (q, k, v, g, out and their gradients, with room)


def _peak(fn):
    """Peak bytes numpy (and Python) allocated during fn() above what was live before it."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("mask", [None, "bool", "float"])
@pytest.mark.parametrize("causal", [True, False])
def test_backward_holds_at_most_one_score_matrix_per_head(causal, mask):
    if causal and mask:
        pytest.skip("is_causal excludes attn_mask")
    rng = np.random.default_rng(0)
    q, k, v, g = (rng.standard_normal((B, H, T, E)).astype(np.float32) for _ in range(4))
    m = None
    if mask == "bool":
        m = dg.tensor(rng.random((T, T)) < 0.9)
    elif mask == "float":
        m = dg.tensor(rng.standard_normal((T, T)).astype(np.float32))
    ts = [dg.tensor(a, requires_grad=True) for a in (q, k, v)]
    gt = dg.tensor(g)
    box = []
    fwd = _peak(lambda: box.append(F.scaled_dot_product_attention(*ts, attn_mask=m, is_causal=causal)))
    bwd = _peak(lambda: box[0].backward(gt))
    # whole matrices held the scores, then the weights, their gradient and the scores' gradient: 3-5 per head
    assert bwd <= SCORES + SMALL, (bwd / SCORES, "score matrices per head in the backward")
    assert fwd <= SCORES // 2 + SMALL, (fwd / SCORES, "score matrices per head in the forward")
    assert ts[0].grad is not None


def test_compiled_backward_holds_at_most_one_score_matrix_per_head():
    rng = np.random.default_rng(1)
    q, k, v, g = (rng.standard_normal((B, H, T, E)).astype(np.float32) for _ in range(4))
    gt = dg.tensor(g)

    @dg.function
    def grads(q, k, v):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return dg.autograd.grad(out, [q, k, v], gt)
    ts = [dg.tensor(a, requires_grad=True) for a in (q, k, v)]
    grads(*ts)  # trace and build outside the measurement
    peak = _peak(lambda: grads(*ts))
    assert peak <= SCORES + SMALL, (peak / SCORES, "score matrices per head")


@pytest.mark.parametrize("case", ["causal_L_gt_S", "bool_mask_dead_row", "float_mask_LS"])
def test_on_the_gpu_as_on_the_cpu(case, monkeypatch):
    """The blocks on device arrays (a real GPU, or the strict cupy stand-in: DUALGRAPH_EMULATE_GPU=1)."""
    from dualgraph import backend
    if not backend.gpu_available():
        pytest.skip("no GPU (DUALGRAPH_EMULATE_GPU=1 runs the cupy stand-in)")
    monkeypatch.setattr(A, "_BLOCK_ELEMS", 1)
    monkeypatch.setattr(A, "_MIN_ROWS", 4)
    q, k, v, g, mask, causal = _arrays(case, np.float32)
    want = [w for w in np_attention(q, k, v, g, mask, causal) if w is not None]
    mask_grad = mask is not None and mask.dtype != bool
    ts = [dg.tensor(a, device="gpu", requires_grad=True) for a in (q, k, v)]
    m = None if mask is None else dg.tensor(mask, device="gpu", requires_grad=mask_grad)
    out = F.scaled_dot_product_attention(*ts, attn_mask=m, is_causal=causal)
    out.backward(dg.tensor(g, device="gpu"))
    got = [out] + [t.grad for t in ts] + ([m.grad] if mask_grad else [])
    for a, b in zip(got, want):
        assert a.device == dg.device("gpu") and isinstance(a._data, backend._cupy.ndarray)
        np.testing.assert_allclose(a.numpy(), b, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_the_op_takes_causal_and_a_mask_together(kind, loops, monkeypatch):
    """F.scaled_dot_product_attention refuses is_causal with attn_mask (as PyTorch); the op itself
    applies both."""
    monkeypatch.setattr(A, "_BLOCK_ELEMS", 1)
    monkeypatch.setattr(A, "_MIN_ROWS", 3)
    rng = np.random.default_rng(5)
    q, k, v = rng.standard_normal((2, 11, 4)), rng.standard_normal((2, 13, 4)), rng.standard_normal((2, 13, 3))
    g = rng.standard_normal((2, 11, 3))
    m = rng.random((11, 13)) < 0.7 if kind == "bool" else rng.standard_normal((11, 13))
    ts = [dg.tensor(a, requires_grad=True) for a in (q, k, v)]
    out, _ = A.attention(*ts, dg.tensor(m), scale=0.5, causal=True)
    out.backward(dg.tensor(g))
    tri = np.tri(11, 13, dtype=bool)
    merged = tri & m if kind == "bool" else np.where(tri, m, -np.inf)
    want = np_attention(q, k, v, g, merged, False, 0.5)
    for a, b in zip([out] + [t.grad for t in ts], want):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-10, atol=1e-10)
