"""Generated C kernels for fused elementwise chains with selects, comparisons and a broadcast bias row:
bit-exact against numpy (NaN, inf, signed zeros), and really taken (not the numpy fallback)."""
import numpy as np
import pytest

import dualgraph as dg
from dualgraph.kernels import ckernel, native
from dualgraph.kernels.fused import kernel_for

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler (or libmvec) here")


def _special(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[:8] = [np.nan, np.inf, -np.inf, -0.0, 0.0, -1.0, 1.0, np.nan]
    return x


def _fused(f, *args):
    nodes = [n for n in f.graph(*args).nodes if n.op.name == "fused_elementwise"]
    assert len(nodes) == 1
    return kernel_for(nodes[0].subgraphs["body"], np)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_relu_and_mask_match_numpy_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    x = _special(rng, (ckernel.MIN_SIZE // 64, 64), dtype)
    b = _special(rng, (64,), dtype)[::-1].copy()

    def fn(x, b):
        h = x + b
        return dg.relu(h), h > 0, dg.maximum(h, x * 0.5), dg.minimum(x, h), dg.where(h < 0.3, x, h * 2), h != h
    f = dg.function(fn)
    X, B = dg.tensor(x), dg.tensor(b)
    got = f(X, B)
    with np.errstate(all="ignore"):
        h = x + b
        want = (np.maximum(h, 0), h > 0, np.maximum(h, x * dtype(0.5)), np.minimum(x, h),
                np.where(h < 0.3, x, h * dtype(2)), h != h)
    for g, w in zip(got, want):
        g = g.numpy()
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.array_equal(g, w, equal_nan=True)
        if g.dtype.kind == "f":
            assert np.array_equal(np.signbit(g), np.signbit(w))  # relu(-0.0) and max of equal zeros as numpy
    kernel = _fused(f, X, B)
    (loop, _), = kernel.variants
    assert "a1[j]" in kernel.source(loop) and all(kernel.variants.values())  # the C loop ran, bias read as a row


def test_a_bool_mask_input_selects_without_nan_leaking():
    rng = np.random.default_rng(1)
    n = ckernel.MIN_SIZE + 3
    g = _special(rng, (n,), np.float32)
    m = rng.random(n) < 0.5
    m[:3] = False  # NaN/inf under a False mask must give 0, not NaN
    f = dg.function(lambda m, g: dg.where(m, g * 2.0, 0.0) + 1.0)
    got = f(dg.tensor(m), dg.tensor(g)).numpy()
    with np.errstate(all="ignore"):
        want = np.where(m, g * np.float32(2), np.float32(0)) + np.float32(1)
    assert np.array_equal(got, want, equal_nan=True)
    kernel = _fused(f, dg.tensor(m), dg.tensor(g))
    assert "unsigned char" in kernel.source() and kernel.variants and all(kernel.variants.values())


def test_a_column_broadcast_runs_in_the_c_loop_loaded_once_per_row():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((ckernel.MIN_SIZE // 32, 32)).astype(np.float32)
    col = rng.standard_normal((x.shape[0], 1)).astype(np.float32)
    f = dg.function(lambda x, c: dg.relu(x - c) * 3.0)
    got = f(dg.tensor(x), dg.tensor(col)).numpy()
    assert np.array_equal(got, np.maximum(x - col, 0) * np.float32(3))
    kernel = _fused(f, dg.tensor(x), dg.tensor(col))
    (loop, _), = kernel.variants
    assert all(kernel.variants.values()) and "x1 = a1[q1_0];" in kernel.source(loop)
