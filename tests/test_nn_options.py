"""Layer options PyTorch users port with: conv padding modes, Embedding max_norm and
scale_grad_by_freq, MaxPool2d return_indices; against numpy references (and torch when installed)."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph import nn

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("mode,np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")])
def test_pad_modes_match_numpy_and_differentiate(mode, np_mode):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float64)
    got = dg.pad(dg.tensor(x), (1, 2, 2, 1), mode=mode).numpy()
    np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (2, 1), (1, 2)), mode=np_mode))  # last axis first
    t = dg.tensor(x, requires_grad=True)
    assert dg.autograd.gradcheck(lambda a: dg.pad(a, (1, 2, 2, 1), mode=mode), (t,))


@pytest.mark.parametrize("mode,np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")])
def test_conv2d_padding_modes_pad_then_convolve(mode, np_mode):
    dg.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode=mode)
    x = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode=np_mode)
    w, b = conv.weight.numpy(), conv.bias.numpy()
    ref = np.zeros((1, 3, 5, 6), np.float32)
    for o in range(3):
        for i in range(5):
            for j in range(6):
                ref[0, o, i, j] = (padded[0, :, i:i + 3, j:j + 3] * w[o]).sum() + b[o]
    np.testing.assert_allclose(conv(dg.tensor(x)).numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_modes_match_torch_with_gradients(mode):
    torch = pytest.importorskip("torch")
    for T, D, shape in ((torch.nn.Conv1d, nn.Conv1d, (2, 3, 9)), (torch.nn.Conv2d, nn.Conv2d, (2, 3, 7, 6))):
        t, d = T(3, 4, 3, padding=2, padding_mode=mode), D(3, 4, 3, padding=2, padding_mode=mode)
        with dg.no_grad():
            d.weight.copy_(dg.tensor(t.weight.detach().numpy()))
            d.bias.copy_(dg.tensor(t.bias.detach().numpy()))
        x = RNG.standard_normal(shape).astype(np.float32)
        xt, xd = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True)
        t(xt).square().sum().backward()
        (d(xd) ** 2).sum().backward()
        np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(d.weight.grad.numpy(), t.weight.grad.numpy(), rtol=1e-4, atol=1e-3)


def test_unknown_padding_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(1, 1, 3, padding_mode="mirror")


def test_embedding_max_norm_renormalizes_the_rows_it_looks_up():
    w0 = RNG.standard_normal((6, 3)).astype(np.float32) * 3
    emb = nn.Embedding(6, 3, max_norm=1.0)
    with dg.no_grad():
        emb.weight.copy_(dg.tensor(w0))
    idx = np.array([[4, 1], [1, 0]])
    out = emb(dg.tensor(idx)).numpy()
    expect_w = w0.copy()
    for r in (0, 1, 4):
        n = np.linalg.norm(w0[r])
        if n > 1.0:
            expect_w[r] = w0[r] / (n + 1e-7)
    np.testing.assert_allclose(emb.weight.numpy(), expect_w, rtol=1e-6)   # untouched rows stay as they were
    np.testing.assert_allclose(out, expect_w[idx], rtol=1e-6)


def test_embedding_scale_grad_by_freq_divides_by_batch_counts():
    emb = nn.Embedding(5, 2, scale_grad_by_freq=True)
    idx = np.array([2, 2, 2, 4, 0, 4])
    g = RNG.standard_normal((6, 2)).astype(np.float32)
    before = emb.weight.numpy()
    out = emb(dg.tensor(idx))
    np.testing.assert_array_equal(out.numpy(), before[idx])                 # values unchanged
    out.backward(dg.tensor(g))
    expect = np.zeros((5, 2), np.float32)
    counts = np.bincount(idx, minlength=5)
    for k, r in enumerate(idx):
        expect[r] += g[k] / counts[r]
    np.testing.assert_allclose(emb.weight.grad.numpy(), expect, rtol=1e-6)


def _np_max_pool_indices(x, k, s, p, d):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    oh, ow = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    vals, idx = np.zeros((n, c, oh, ow), x.dtype), np.zeros((n, c, oh, ow), np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, where = -np.inf, None
                    for u in range(k):
                        for v in range(k):
                            r, q = i * s + u * d, j * s + v * d
                            if xp[a, b, r, q] > best:
                                best, where = xp[a, b, r, q], (r - p) * w + (q - p)
                    vals[a, b, i, j], idx[a, b, i, j] = best, where
    return vals, idx


@pytest.mark.parametrize("k,s,p,d", [(2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 0, 2)])
def test_max_pool_return_indices_match_a_loop(k, s, p, d):
    x = RNG.standard_normal((2, 2, 7, 8)).astype(np.float32)
    vals, idx = nn.MaxPool2d(k, s, p, d, return_indices=True)(dg.tensor(x))
    ref_v, ref_i = _np_max_pool_indices(x, k, s, p, d)
    np.testing.assert_array_equal(vals.numpy(), ref_v)
    np.testing.assert_array_equal(idx.numpy(), ref_i)
    assert idx.dtype == np.int64
