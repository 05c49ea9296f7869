"""F.scaled_dot_product_attention against PyTorch's documented behaviour, with and without torch."""
import math

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.errors import DTypeError, ShapeError

rng = np.random.default_rng(7)


def _qkv(*, n=2, h=3, L=4, S=6, E=5, Ev=7, hk=None):
    hk = h if hk is None else hk
    q = rng.standard_normal((n, h, L, E)).astype(np.float32)
    k = rng.standard_normal((n, hk, S, E)).astype(np.float32)
    v = rng.standard_normal((n, hk, S, Ev)).astype(np.float32)
    return q, k, v


def _sdpa(q, k, v, **kw):
    kw = {a: dg.tensor(b) if isinstance(b, np.ndarray) else b for a, b in kw.items()}
    return F.scaled_dot_product_attention(dg.tensor(q), dg.tensor(k), dg.tensor(v), **kw).numpy()


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---- torch-free: hand-derived values -------------------------------------------------------------

def test_one_key_returns_its_value_and_equal_scores_average():
    q = np.zeros((1, 2, 3), np.float32)
    k = np.zeros((1, 4, 3), np.float32)              # all scores equal -> uniform weights
    v = np.arange(8, dtype=np.float32).reshape(1, 4, 2)
    np.testing.assert_allclose(_sdpa(q, k, v), np.broadcast_to(v.mean(1, keepdims=True), (1, 2, 2)))
    np.testing.assert_allclose(_sdpa(q, k[:, :1], v[:, :1]), np.broadcast_to(v[:, :1], (1, 2, 2)))


def test_default_scale_is_one_over_sqrt_e_and_scale_overrides_it():
    q, k, v = _qkv(E=4)
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2)
    np.testing.assert_allclose(_sdpa(q, k, v), _softmax(s / 2.0) @ v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_sdpa(q, k, v, scale=0.25), _softmax(s * 0.25) @ v, rtol=1e-5, atol=1e-5)


def test_bool_mask_true_means_may_attend():
    q, k, v = _qkv(L=2, S=3)
    mask = np.array([[True, False, False], [False, True, True]])
    out = _sdpa(q, k, v, attn_mask=mask)
    # row 0 may only see key 0: its output is value 0 exactly
    np.testing.assert_allclose(out[..., 0, :], v[..., 0, :], rtol=1e-6, atol=1e-6)
    s = (q.astype(np.float64) @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1]))[..., 1, 1:]
    np.testing.assert_allclose(out[..., 1, :], (_softmax(s)[..., None, :] @ v[..., 1:, :])[..., 0, :],
                               rtol=1e-5, atol=1e-5)


def test_float_mask_is_added_and_broadcasts_over_batch_and_heads():
    q, k, v = _qkv()
    bias = rng.standard_normal((1, 3, 1, 6)).astype(np.float32)
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2) / math.sqrt(5) + bias
    np.testing.assert_allclose(_sdpa(q, k, v, attn_mask=bias), _softmax(s) @ v, rtol=1e-5, atol=1e-5)


def test_is_causal_is_top_left_aligned_when_lengths_differ():
    q, k, v = _qkv(L=3, S=5)
    allowed = np.tril(np.ones((3, 5), bool))          # row i sees keys 0..i, not the last i
    np.testing.assert_allclose(_sdpa(q, k, v, is_causal=True), _sdpa(q, k, v, attn_mask=allowed), atol=1e-6)
    np.testing.assert_allclose(_sdpa(q, k, v, is_causal=True)[..., 0, :], v[..., 0, :], atol=1e-6)
    q, k, v = _qkv(L=5, S=2)
    out = _sdpa(q, k, v, is_causal=True)
    np.testing.assert_allclose(out[..., 0, :], v[..., 0, :], atol=1e-6)
    # rows 1.. see both keys: the same as attention without a mask
    np.testing.assert_allclose(out[..., 1:, :], _sdpa(q[..., 1:, :], k, v), atol=1e-6)


def test_a_row_with_every_key_masked_gives_zeros_not_nan():
    q, k, v = _qkv(L=2, S=3)
    mask = np.array([[False, False, False], [False, False, True]])
    out = _sdpa(q, k, v, attn_mask=mask)
    assert np.all(out[..., 0, :] == 0.0)
    np.testing.assert_allclose(out[..., 1, :], v[..., 2, :], atol=1e-6)
    fmask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    np.testing.assert_allclose(_sdpa(q, k, v, attn_mask=fmask), out, atol=1e-6)
    qt, kt, vt = (dg.tensor(a, requires_grad=True) for a in (q, k, v))
    F.scaled_dot_product_attention(qt, kt, vt, attn_mask=dg.tensor(mask)).sum().backward()
    assert all(np.isfinite(t.grad.numpy()).all() for t in (qt, kt, vt))
    assert np.all(qt.grad.numpy()[..., 0, :] == 0.0)


def test_grouped_query_heads_repeat_each_kv_head_in_place():
    q, k, v = _qkv(h=4, hk=2)
    expected = _sdpa(q, np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1))
    np.testing.assert_allclose(_sdpa(q, k, v, enable_gqa=True), expected, atol=1e-6)
    with pytest.raises(ShapeError, match="scaled_dot_product_attention"):
        _sdpa(q, k, v)                                  # without enable_gqa the heads must broadcast


def test_dropout_only_when_asked():
    q, k, v = _qkv()
    base = _sdpa(q, k, v)
    with dg.autograd.train_mode():
        np.testing.assert_array_equal(_sdpa(q, k, v), base)   # dropout_p=0: no dropout even in training
    np.testing.assert_array_equal(_sdpa(q, k, v, dropout_p=0.0), base)
    dg.manual_seed(0)
    dropped = _sdpa(q, k, v, dropout_p=0.5)
    assert not np.allclose(dropped, base)
    v1 = np.ones_like(v)
    # with every value row 1, each output element is the kept weight mass scaled by 1/(1-p): mean ~ 1
    outs = np.stack([_sdpa(q, k, v1, dropout_p=0.5) for _ in range(40)])
    assert abs(outs.mean() - 1.0) < 0.1
    assert np.all(_sdpa(q, k, v, dropout_p=1.0) == 0.0)


def test_gradients_match_finite_differences():
    q, k, v = (a.astype(np.float64) for a in _qkv(n=1, h=2, L=3, S=4, E=2, Ev=3))
    mask = np.array([[True, True, False, True], [False, False, False, False], [True, False, True, True]])
    fmask = rng.standard_normal((3, 4))
    args = [dg.tensor(a, requires_grad=True) for a in (q, k, v)]
    assert dg.autograd.gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=dg.tensor(mask)),
                                 args)
    assert dg.autograd.gradcheck(lambda a, b, c, m: F.scaled_dot_product_attention(a, b, c, attn_mask=m),
                                 args + [dg.tensor(fmask, requires_grad=True)])
    assert dg.autograd.gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), args)


def test_traced_and_exported_match_eager(tmp_path):
    q, k, v = _qkv(L=3, S=3)
    mask = rng.random((3, 3)) < 0.7

    def fn(a, b, c, m):
        return F.scaled_dot_product_attention(a, b, c, attn_mask=m)

    def causal(a, b, c):
        return F.scaled_dot_product_attention(a, b, c, is_causal=True, scale=0.3)

    args = [dg.tensor(a) for a in (q, k, v, mask)]
    np.testing.assert_allclose(dg.function(fn)(*args).numpy(), fn(*args).numpy(), atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    for f, a in ((fn, args), (causal, args[:3])):
        path = str(tmp_path / f"{f.__name__}.onnx")
        dg.onnx.export(f, tuple(a), path)
        sess = ort.InferenceSession(path)
        feed = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), a)}
        np.testing.assert_allclose(sess.run(None, feed)[0], f(*a).numpy(), atol=1e-5)


def test_bad_input_names_the_op_and_shapes():
    q, k, v = _qkv()
    with pytest.raises(ShapeError, match=r"scaled_dot_product_attention.*\(2, 3, 4, 5\)"):
        _sdpa(q, k[..., :3], v)
    with pytest.raises(ShapeError, match="scaled_dot_product_attention"):
        _sdpa(q, k, v[..., :2, :])
    with pytest.raises(ShapeError, match=r"attn_mask of shape \(4, 5\)"):
        _sdpa(q, k, v, attn_mask=np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="is_causal"):
        _sdpa(q, k, v, attn_mask=np.ones((4, 6), bool), is_causal=True)
    with pytest.raises(DTypeError, match="attn_mask"):
        _sdpa(q, k, v, attn_mask=np.ones((4, 6), np.int64))
    with pytest.raises(DTypeError, match="query"):
        F.scaled_dot_product_attention(dg.tensor(q.astype(np.int64)), dg.tensor(k), dg.tensor(v))


# ---- against PyTorch ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["plain", "causal_short", "causal_long", "bool", "bool_dead_row", "float",
                                  "scale", "gqa", "3d"])
def test_matches_torch_values_and_gradients(case):
    torch = pytest.importorskip("torch")
    kw, shapes = {}, {}
    if case == "causal_short":
        kw, shapes = {"is_causal": True}, {"L": 3, "S": 6}
    elif case == "causal_long":
        kw, shapes = {"is_causal": True}, {"L": 6, "S": 3}
    elif case == "bool":
        kw = {"attn_mask": rng.random((2, 1, 4, 6)) < 0.6}
    elif case == "bool_dead_row":
        m = rng.random((4, 6)) < 0.6
        m[2] = False
        kw = {"attn_mask": m}
    elif case == "float":
        kw = {"attn_mask": rng.standard_normal((3, 4, 6)).astype(np.float32)}
    elif case == "scale":
        kw = {"scale": 0.125}
    elif case == "gqa":
        kw, shapes = {"enable_gqa": True}, {"h": 6, "hk": 2}
    q, k, v = _qkv(**shapes)
    if case == "3d":
        q, k, v = q[0], k[0], v[0]
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tkw = {a: torch.tensor(b) if isinstance(b, np.ndarray) else b for a, b in kw.items()}
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **tkw)
    g = rng.standard_normal(tuple(tout.shape)).astype(np.float32)
    tout.backward(torch.tensor(g))
    dq, dk, dv = (dg.tensor(a, requires_grad=True) for a in (q, k, v))
    dkw = {a: dg.tensor(b) if isinstance(b, np.ndarray) else b for a, b in kw.items()}
    out = F.scaled_dot_product_attention(dq, dk, dv, **dkw)
    out.backward(dg.tensor(g))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-5)
    for a, b in ((dq, tq), (dk, tk), (dv, tv)):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_multihead_attention_with_masks_matches_torch():
    torch = pytest.importorskip("torch")
    e, h, L, S, n = 8, 2, 3, 5, 2
    ref = torch.nn.MultiheadAttention(e, h, batch_first=True)
    mine = dg.nn.MultiheadAttention(e, h, batch_first=True)
    mine.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in ref.state_dict().items()})
    x = rng.standard_normal((n, L, e)).astype(np.float32)
    mem = rng.standard_normal((n, S, e)).astype(np.float32)
    kpm = np.zeros((n, S), bool)
    kpm[0, 3:] = True                                   # True = padding, may not be attended (MHA's convention)
    am = np.zeros((L, S), bool)
    am[1, 0] = True
    tout, tw = ref(torch.tensor(x), torch.tensor(mem), torch.tensor(mem), key_padding_mask=torch.tensor(kpm),
                   attn_mask=torch.tensor(am))
    out, w = mine(dg.tensor(x), dg.tensor(mem), dg.tensor(mem), key_padding_mask=dg.tensor(kpm),
                  attn_mask=dg.tensor(am))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_multihead_attention_fully_masked_row_is_nan_as_torch_while_sdpa_gives_zeros():
    m = dg.nn.MultiheadAttention(4, 2, batch_first=True)
    x = dg.tensor(rng.standard_normal((1, 3, 4)).astype(np.float32))
    am = np.zeros((3, 3), bool)
    am[0] = True                                         # MHA: True = may not attend; row 0 sees nothing
    out, w = m(x, x, x, attn_mask=dg.tensor(am))
    assert np.isnan(out.numpy()[0, 0]).all() and np.isnan(w.numpy()[0, 0]).all()
    assert np.isfinite(out.numpy()[0, 1:]).all()
    torch = pytest.importorskip("torch")
    tm = torch.nn.MultiheadAttention(4, 2, batch_first=True)
    to, tw = tm(torch.tensor(x.numpy()), torch.tensor(x.numpy()), torch.tensor(x.numpy()), attn_mask=torch.tensor(am))
    assert torch.isnan(to[0, 0]).all() and torch.isnan(tw[0, 0]).all()
