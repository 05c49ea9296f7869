"""Convolution and pooling primitives (conv, conv_input_grad, conv_weight_grad, max pooling's C window
loop, avg_pool, adaptive averaging): values and gradients against direct numpy loops, finite
differences and PyTorch (where installed), both kernel paths (C loops and numpy), ONNX export."""
import itertools

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.autograd import gradcheck, gradgradcheck
from dualgraph.kernels import conv as kconv
from dualgraph.kernels import native

from op_db import np_adaptive_avg_pool2d, np_conv1d, np_max_pool

C_AVAILABLE = native.available()


def np_conv(x, w, b, stride, pads, dilation, groups):
    """Direct loop cross-correlation with (low, high) padding per spatial dim, any number of dims."""
    nd = w.ndim - 2
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    n, o, cg = x.shape[0], w.shape[0], w.shape[1]
    outs = [(xp.shape[2 + a] - dilation[a] * (w.shape[2 + a] - 1) - 1) // stride[a] + 1 for a in range(nd)]
    out = np.zeros((n, o) + tuple(outs), np.result_type(x, w))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for pos in itertools.product(*map(range, outs)):
            win = xp[(slice(None), slice(g * cg, (g + 1) * cg)) + tuple(
                slice(p * s, p * s + d * (k - 1) + 1, d) for p, s, d, k in zip(pos, stride, dilation, w.shape[2:]))]
            out[(slice(None), oc) + pos] = np.sum(win * w[oc], axis=tuple(range(1, nd + 2)))
    return out if b is None else out + b.reshape((1, -1) + (1,) * nd)


def numpy_only(monkeypatch):
    monkeypatch.setattr(kconv, "_c_loops", lambda *a: None)


PATHS = ["c", "numpy"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    if request.param == "c" and not C_AVAILABLE:
        pytest.skip("no C compiler")
    if request.param == "numpy":
        numpy_only(monkeypatch)
    return request.param


# every combination of stride, padding, dilation and groups, on small float64 shapes
COMBOS = list(itertools.product([1, 2], [0, 1, "same"], [1, 2], [1, 2]))


@pytest.mark.parametrize("stride,padding,dilation,groups", COMBOS)
def test_conv2d_every_attribute_combination(stride, padding, dilation, groups, path):
    if padding == "same" and stride != 1:
        pytest.skip("PyTorch refuses padding='same' with a stride")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 4 // groups, 3, 2))
    b = rng.standard_normal(6)
    if padding == "same":   # even kernel width: PyTorch pads the odd pixel on the high side
        pads = tuple((dilation * (k - 1) // 2, dilation * (k - 1) - dilation * (k - 1) // 2) for k in (3, 2))
    else:
        pads = ((padding, padding),) * 2
    want = np_conv(x, w, b, (stride,) * 2, pads, (dilation,) * 2, groups)
    xt, wt, bt = (dg.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(xt, wt, bt, stride=stride, padding=padding, dilation=dilation, groups=groups)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)
    runs = dict(kconv.RUNS)
    assert gradcheck(lambda a, c, d: F.conv2d(a, c, d, stride=stride, padding=padding, dilation=dilation,
                                              groups=groups), (xt, wt, bt))
    took = {k: kconv.RUNS[k] - runs[k] for k in runs}
    assert took[path] > 0 and took["numpy" if path == "c" else "c"] == 0


@pytest.mark.parametrize("stride,padding,dilation,groups", COMBOS)
def test_conv2d_and_its_gradients_match_torch(stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    if padding == "same" and stride != 1:
        pytest.skip("PyTorch refuses padding='same' with a stride")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 4 // groups, 2, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(g))
    dx, dw_, db = (dg.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(dx, dw_, db, **kw)
    y.backward(dg.tensor(g))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    for mine, theirs in ((dx, tx), (dw_, tw), (db, tb)):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_second_order_gradients(path):
    rng = np.random.default_rng(2)
    x = dg.tensor(rng.standard_normal((1, 2, 5, 4)), requires_grad=True)
    w = dg.tensor(rng.standard_normal((2, 1, 2, 2)), requires_grad=True)
    assert gradgradcheck(lambda a, c: F.conv2d(a, c, stride=2, padding=1, groups=2), (x, w))
    assert gradgradcheck(lambda a, c: F.conv1d(a[:, :, 0], c[:, :, 0], dilation=2, padding=1, groups=2), (x, w))


def test_conv1d_conv3d_and_unbatched_input():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 4, 11)), rng.standard_normal((6, 2, 3)), rng.standard_normal(6)
    got = F.conv1d(dg.tensor(x), dg.tensor(w), dg.tensor(b), stride=2, padding=1, dilation=2, groups=2)
    np.testing.assert_allclose(got.numpy(), np_conv1d(x, w, b, 2, 1, 2, 2), rtol=1e-12, atol=1e-12)
    one = F.conv1d(dg.tensor(x[0]), dg.tensor(w), None, padding="same", groups=2)
    np.testing.assert_allclose(one.numpy(), np_conv1d(x[:1], w, None, 1, 2, 1, 2)[0, :, 1:-1], rtol=1e-12)
    x3, w3 = rng.standard_normal((1, 2, 4, 5, 3)), rng.standard_normal((3, 2, 2, 3, 2))
    xt, wt = dg.tensor(x3, requires_grad=True), dg.tensor(w3, requires_grad=True)
    y = F.conv3d(xt, wt, stride=(1, 2, 1), padding=1)
    np.testing.assert_allclose(y.numpy(), np_conv(x3, w3, None, (1, 2, 1), ((1, 1),) * 3, (1, 1, 1), 1),
                               rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda a, c: F.conv3d(a, c, stride=(1, 2, 1), padding=1), (xt, wt))


def test_modules_and_functions_apply_the_conv_primitive():
    from dualgraph.onnx import trace
    for mod, shape in ((dg.nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)), (dg.nn.Conv1d(2, 3, 3, stride=2), (2, 2, 9))):
        y = mod(dg.randn(*shape, requires_grad=True))
        assert y.grad_fn.name() == "ConvolutionBackward0"
        ops = [n.op.name for n in trace(lambda x, m=mod: m(x), (dg.randn(*shape),)).graph.nodes]
        assert "conv" in ops and "unfold" not in ops and "matmul" not in ops


def test_conv_transpose_is_the_adjoint_of_conv():
    """<conv(x, w), v> == <x, conv_transpose(v, w)> with output_padding giving back x's size."""
    rng = np.random.default_rng(4)
    for stride, padding, dilation, groups in [(1, 0, 1, 1), (2, 1, 1, 2), (3, 2, 2, 1)]:
        x = rng.standard_normal((2, 4, 9, 8))
        w = rng.standard_normal((6, 4 // groups, 3, 2))
        y = F.conv2d(dg.tensor(x), dg.tensor(w), stride=stride, padding=padding, dilation=dilation, groups=groups)
        v = rng.standard_normal(y.shape)
        extra = tuple((n + 2 * padding - dilation * (k - 1) - 1) % stride for n, k in ((9, 3), (8, 2)))
        xt = F.conv_transpose2d(dg.tensor(v), dg.tensor(w), stride=stride, padding=padding, dilation=dilation,
                                groups=groups, output_padding=extra)
        assert xt.shape == x.shape
        np.testing.assert_allclose(np.sum(y.numpy() * v), np.sum(x * xt.numpy()), rtol=1e-10)


@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups",
                         [(1, 0, 0, 1, 1), (2, 1, 1, 1, 2), (3, 1, 2, 2, 1), (2, 0, 0, 2, 2)])
def test_conv_transpose2d_matches_torch(stride, padding, output_padding, dilation, groups):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 5, 4))
    w = rng.standard_normal((4, 6 // groups, 3, 2))
    b = rng.standard_normal(6)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, **kw)
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    dx, dw_, db = (dg.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv_transpose2d(dx, dw_, db, **kw)
    y.backward(dg.tensor(g))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    for mine, theirs in ((dx, tx), (dw_, tw), (db, tb)):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("block_bytes", [1, 3 * 2 * 5 * 4 * 8 * 3, 1 << 40], ids=["one-sample", "some", "whole"])
def test_conv_blocks_of_samples(block_bytes, monkeypatch):
    """The kernels make the columns a block of samples at a time: one sample, an uneven split of the
    batch (the last block shorter), and the whole batch give the same values and gradients."""
    monkeypatch.setattr(kconv, "BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(15)
    x, w, b = rng.standard_normal((7, 4, 6, 5)), rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)
    g = rng.standard_normal((7, 6, 3, 3))
    attrs = dict(stride=(2, 1), padding=((1, 1), (1, 0)), dilation=(1, 2), groups=2)
    y = kconv.conv_forward(np, x, w, b, attrs["stride"], attrs["padding"], attrs["dilation"], 2)
    np.testing.assert_allclose(y, np_conv(x, w, b, (2, 1), ((1, 1), (1, 0)), (1, 2), 2), rtol=1e-12, atol=1e-12)
    xt, wt = dg.tensor(x, requires_grad=True), dg.tensor(w, requires_grad=True)
    F.conv2d(xt, wt, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)   # sizes agree with g's
    gx = kconv.conv_input_grad(np, g, w, (6, 5), attrs["stride"], ((1, 1), (0, 0)), attrs["dilation"], 2)
    gw = kconv.conv_weight_grad(np, x, g, (3, 2), attrs["stride"], ((1, 1), (0, 0)), attrs["dilation"], 2)
    y2 = F.conv2d(xt, wt, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    y2.backward(dg.tensor(g))
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    # the adjoint identities pin both gradients down independently of the kernels' own forward
    y0 = np_conv(x, w, None, (2, 1), ((1, 1), (0, 0)), (1, 2), 2)
    np.testing.assert_allclose(np.sum(y0 * g), np.sum(x * gx), rtol=1e-10)
    np.testing.assert_allclose(np.sum(y0 * g), np.sum(w * gw), rtol=1e-10)


def test_kernel_paths_agree_bit_for_bit(monkeypatch):
    """im2col and col2im in C and numpy: the same windows, the same sums (one order each way)."""
    if not C_AVAILABLE:
        pytest.skip("no C compiler")
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        for shape, kernel, stride, pads, dil in [((2, 3, 7, 6), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2)),
                                                 ((1, 2, 9, 9), (2, 3), (3, 2), ((0, 0), (2, 2)), (2, 1)),
                                                 ((2, 1, 1, 12), (1, 3), (1, 2), ((0, 0), (1, 1)), (1, 1))]:
            x = rng.standard_normal(shape).astype(dtype)
            c_cols = kconv.im2col(np, x, kernel, stride, pads, dil)
            c_back = kconv.col2im(np, c_cols, shape[2:], stride, pads, dil)
            with monkeypatch.context() as m:
                numpy_only(m)
                n_cols = kconv.im2col(np, x, kernel, stride, pads, dil)
                n_back = kconv.col2im(np, n_cols, shape[2:], stride, pads, dil)
            np.testing.assert_array_equal(c_cols, n_cols)
            np.testing.assert_allclose(c_back, n_back, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_conv_errors_name_the_op_and_the_shapes():
    x, w = dg.randn(2, 4, 5, 5), dg.randn(6, 3, 3, 3)
    with pytest.raises(dg.ShapeError, match=r"conv2d: input of shape \(2, 4, 5, 5\) has 4 channels.*groups=1"):
        F.conv2d(x, w)
    with pytest.raises(dg.DTypeError, match=r"conv2d: .*float32, float64"):
        F.conv2d(x, dg.randn(6, 4, 3, 3, dtype="float64"))
    with pytest.raises(dg.ShapeError, match=r"conv2d: input of spatial size \(5, 5\).*smaller"):
        F.conv2d(x, dg.randn(6, 4, 7, 7))
    with pytest.raises(dg.ShapeError, match=r"conv2d: padding='same' needs stride 1"):
        F.conv2d(x, dg.randn(6, 4, 3, 3), stride=2, padding="same")
    with pytest.raises(dg.ShapeError, match=r"conv1d: bias must have shape \(6,\)"):
        F.conv1d(dg.randn(2, 4, 9), dg.randn(6, 4, 3), dg.randn(5))


# ---- max pooling ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode",
                         [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 2, False), ((2, 3), (1, 2), (1, 0), 1,
                                                                                          True)])
def test_max_pool_gradient_and_indices_on_both_paths(kernel, stride, padding, dilation, ceil_mode, path):
    rng = np.random.default_rng(7)
    x = rng.integers(-3, 3, (2, 3, 7, 8)).astype(np.float64)   # many ties: the pick is PyTorch's first
    x[0, 0, 1, 1] = np.nan
    kw = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    want_idx = np_max_pool(x, kernel, **kw, indices=True)
    xt = dg.tensor(x, requires_grad=True)
    y, idx = F.max_pool2d(xt, kernel, return_indices=True, **kw)
    np.testing.assert_array_equal(idx.numpy()[1:], want_idx[1:])   # sample 0 holds a NaN: checked below
    g = rng.standard_normal(y.shape)
    y.backward(dg.tensor(g))
    want = np.zeros_like(x).reshape(2, 3, -1)
    flat_idx = idx.numpy().reshape(2, 3, -1)
    for n, c in itertools.product(range(2), range(3)):
        for k, i in enumerate(flat_idx[n, c]):   # output order: PyTorch's rounding where windows overlap
            want[n, c, i] += g.reshape(2, 3, -1)[n, c, k]
    np.testing.assert_array_equal(xt.grad.numpy(), want.reshape(x.shape))


def test_max_pool_c_and_numpy_agree_with_nans_ties_and_padding(monkeypatch):
    if not C_AVAILABLE:
        pytest.skip("no C compiler")
    rng = np.random.default_rng(8)
    x = rng.integers(-2, 2, (2, 2, 9, 7)).astype(np.float32)
    x[0, 1, 2:4, 3] = np.nan
    x[1, 0] = -np.inf
    g = rng.standard_normal((2, 2, 5, 4)).astype(np.float32)
    from dualgraph.ops.conv import MAX_POOL_GRAD, MAX_POOL_INDICES
    attrs = dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1), ceil_mode=True)
    c = MAX_POOL_GRAD.forward(np, g, x, **attrs), MAX_POOL_INDICES.forward(np, x, **attrs)
    numpy_only(monkeypatch)
    n = MAX_POOL_GRAD.forward(np, g, x, **attrs), MAX_POOL_INDICES.forward(np, x, **attrs)
    np.testing.assert_array_equal(c[0], n[0])
    np.testing.assert_array_equal(c[1], n[1])


def test_max_pool_matches_torch_with_ties():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    x = rng.integers(0, 3, (2, 3, 8, 9)).astype(np.float32)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=3, stride=2,
                                                                                   dilation=2, ceil_mode=True)):
        tx = torch.tensor(x, requires_grad=True)
        ty, ti = torch.nn.functional.max_pool2d(tx, return_indices=True, **kw)
        g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
        ty.backward(torch.tensor(g))
        dx = dg.tensor(x, requires_grad=True)
        y, i = F.max_pool2d(dx, return_indices=True, **kw)
        y.backward(dg.tensor(g))
        np.testing.assert_array_equal(i.numpy(), ti.numpy())
        np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


# ---- average pooling ------------------------------------------------------------------------------------

def np_avg_pool(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """PyTorch's avg_pool2d CPU rule, one window at a time."""
    n, c, h, w = x.shape
    outs = []
    for size, kk, ss, pp in zip((h, w), k, s, p):
        span = size + 2 * pp - kk
        o = (-(-span // ss) if ceil_mode else span // ss) + 1
        outs.append(o - 1 if ceil_mode and (o - 1) * ss >= size + pp else o)
    out = np.zeros((n, c) + tuple(outs))
    for i, j in itertools.product(*map(range, outs)):
        h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
        h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
        pool = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
        div = divisor_override or (pool if count_include_pad else (h1 - h0) * (w1 - w0))
        out[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / div
    return out


AVG_CASES = [((2, 2), (2, 2), (0, 0), False, True, None), ((3, 3), (2, 2), (1, 1), True, True, None),
             ((3, 2), (2, 1), (1, 1), True, False, None), ((3, 3), (2, 3), (1, 0), False, False, None),
             ((2, 3), (2, 2), (1, 1), True, True, 5)]


@pytest.mark.parametrize("k,s,p,ceil_mode,count_include_pad,divisor_override", AVG_CASES)
def test_avg_pool2d_options_values_and_gradients(k, s, p, ceil_mode, count_include_pad, divisor_override):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 7, 8))
    kw = dict(stride=s, padding=p, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    xt = dg.tensor(x, requires_grad=True)
    y = F.avg_pool2d(xt, k, **kw)
    np.testing.assert_allclose(y.numpy(), np_avg_pool(x, k, s, p, ceil_mode, count_include_pad, divisor_override),
                               rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda a: F.avg_pool2d(a, k, **kw), (xt,))
    assert gradgradcheck(lambda a: F.avg_pool2d(a, k, **kw) ** 2, (xt,))


@pytest.mark.parametrize("k,s,p,ceil_mode,count_include_pad,divisor_override", AVG_CASES)
def test_avg_pool2d_matches_torch(k, s, p, ceil_mode, count_include_pad, divisor_override):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(11).standard_normal((2, 3, 7, 8)).astype(np.float32)
    kw = dict(stride=s, padding=p, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.avg_pool2d(tx, k, **kw)
    ty.sum().backward()
    dx = dg.tensor(x, requires_grad=True)
    y = F.avg_pool2d(dx, k, **kw)
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


# ---- adaptive average pooling -----------------------------------------------------------------------------

def test_adaptive_avg_pool_graph_grows_with_rows_plus_columns():
    """A 42 x 73 output (3066 cells) traces to a graph of about oh + ow slices, not oh * ow."""
    x = np.random.default_rng(12).standard_normal((1, 2, 100, 150)).astype(np.float32)
    f = dg.function(lambda t: F.adaptive_avg_pool2d(t, (42, 73)))
    got = f(dg.tensor(x))
    np.testing.assert_allclose(got.numpy(), np_adaptive_avg_pool2d(x, (42, 73)), rtol=1e-5, atol=1e-6)
    from dualgraph.onnx import trace
    graph = trace(lambda t: F.adaptive_avg_pool2d(t, (42, 73)), (dg.tensor(x),)).graph
    assert len(graph.nodes) < 4 * (42 + 73)


def test_adaptive_avg_pool_keeps_a_non_finite_value_in_its_cells():
    x = np.arange(35, dtype=np.float64).reshape(1, 1, 5, 7)
    x[0, 0, 0, 0] = np.inf
    got = F.adaptive_avg_pool2d(dg.tensor(x), (3, 4)).numpy()
    want = np_adaptive_avg_pool2d(x, (3, 4))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
    xt = dg.tensor(np.random.default_rng(13).standard_normal((1, 2, 5, 7)), requires_grad=True)
    assert gradcheck(lambda a: F.adaptive_avg_pool2d(a, (3, 4)), (xt,))


# ---- ONNX -------------------------------------------------------------------------------------------------

def _cnn(x, w1, b1, w2, b2, w3, b3):
    h = F.relu(F.conv2d(x, w1, b1, padding=1))
    h = F.relu(F.conv2d(h, w2, b2, stride=2, groups=2))
    h = F.max_pool2d(h, 2)
    h = F.avg_pool2d(h, 2, stride=1, padding=1, count_include_pad=False)
    return F.linear(h.reshape(h.shape[0], -1), w3, b3)


def _cnn_args(dtype="float32"):
    rng = np.random.default_rng(14)
    shapes = [(3, 1, 12, 12), (4, 1, 3, 3), (4,), (6, 2, 3, 3), (6,), (5, 6 * 3 * 3), (5,)]
    return [dg.tensor(rng.standard_normal(s).astype(dtype) * 0.3) for s in shapes]


def test_traced_cnn_exports_to_native_onnx_ops_and_runs_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    dgo = pytest.importorskip("dualgraph.onnx")
    args = _cnn_args()
    names = ["x", "w1", "b1", "w2", "b2", "w3", "b3"]
    model = dgo.export(_cnn, args, None, input_names=names, dynamic_axes={"x": {0: "B"}}, verify=True)
    types = [n.op_type for n in model.graph.node]
    assert {"Conv", "MaxPool", "AveragePool"} <= set(types) and types.count("MatMul") == 1   # the linear layer
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x5 = dg.randn(5, 1, 12, 12)
    feeds = dict(zip(names, [x5.numpy()] + [a.numpy() for a in args[1:]]))
    (got,) = sess.run(None, feeds)
    np.testing.assert_allclose(got, _cnn(x5, *args[1:]).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cnn_gradients_export(dtype):
    """The traced backward (conv_input_grad as ConvTranspose in float32, the im2col forms otherwise)."""
    ort = pytest.importorskip("onnxruntime")
    dgo = pytest.importorskip("dualgraph.onnx")
    args = _cnn_args(dtype)

    def grads(*ts):
        loss = (_cnn(*ts) ** 2).sum()
        return dg.autograd.grad(loss, list(ts))

    def fresh():
        return [a.detach().requires_grad_(True) for a in args]
    want = [g.numpy() for g in grads(*fresh())]
    model = dgo.export(grads, fresh(), None)
    if dtype == "float32":
        assert "ConvTranspose" in {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)})
    tol = 1e-4 if dtype == "float32" else 1e-10
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_compiled_cnn_training_step_matches_eager():
    args = _cnn_args()
    y = dg.tensor(np.array([0, 3, 4]))

    def step(*ts):
        loss = F.cross_entropy(_cnn(*ts), y)
        return [loss] + list(dg.autograd.grad(loss, list(ts[1:])))
    eager = step(*[a.detach().requires_grad_(True) for a in args])
    compiled = dg.function(step)(*[a.detach().requires_grad_(True) for a in args])
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_conv_transpose_and_conv3d_modules():
    """nn.ConvTranspose2d is the adjoint of nn.Conv2d's convolution with the same weight; output_size
    picks output_padding; with torch installed, values equal torch's module with the same parameters."""
    m = dg.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert m.weight.shape == (4, 3, 3, 3) and m.bias.shape == (6,)
    x = dg.randn(2, 4, 5, 5)
    y = m(x)
    assert y.shape == (2, 6, 10, 10) and m(x, output_size=(9, 9)).shape == (2, 6, 9, 9)
    v = dg.randn(*y.shape)
    back = F.conv2d(v, m.weight, stride=2, padding=1, groups=2)
    np.testing.assert_allclose(float(((y - m.bias.reshape(1, -1, 1, 1)) * v).sum()), float((x * back).sum()),
                               rtol=1e-4)
    assert dg.nn.ConvTranspose1d(2, 3, 3, stride=2)(dg.randn(2, 5)).shape == (3, 11)
    assert dg.nn.Conv3d(2, 3, 2, padding=1)(dg.randn(1, 2, 3, 4, 5)).shape == (1, 3, 4, 5, 6)
    torch = pytest.importorskip("torch")
    t = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(m.weight.numpy()))
        t.bias.copy_(torch.tensor(m.bias.numpy()))
    np.testing.assert_allclose(y.numpy(), t(torch.tensor(x.numpy())).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_empty_batch_gives_empty_outputs_and_zero_weight_gradients():
    x = dg.randn(0, 2, 5, 5, requires_grad=True)
    w = dg.randn(3, 2, 3, 3, requires_grad=True)
    for k in (3, 1):
        y = F.conv2d(x, w[:, :, :k, :k], padding=1 if k == 3 else 0)
        assert y.shape == (0, 3, 5, 5)
        y.sum().backward()
    assert x.grad.shape == (0, 2, 5, 5) and not w.grad.numpy().any()
    F.max_pool2d(x, 2).sum().backward()
    F.avg_pool2d(x, 2).sum().backward()


# ---- blocks of samples ----------------------------------------------------------------------------------------

def np_conv_grads(x, w, g, stride, pads, dilation, groups):
    """x's and w's gradients of np_conv for output gradient g, window by window (no columns, no GEMM)."""
    nd = w.ndim - 2
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    o, cg = w.shape[:2]
    og = o // groups
    for oc in range(o):
        grp = oc // og
        for pos in itertools.product(*map(range, g.shape[2:])):
            win = (slice(None), slice(grp * cg, (grp + 1) * cg)) + tuple(
                slice(p * s, p * s + d * (k - 1) + 1, d) for p, s, d, k in zip(pos, stride, dilation, w.shape[2:]))
            gn = g[(slice(None), oc) + pos].reshape((-1,) + (1,) * (nd + 1))
            gxp[win] += gn * w[oc]
            gw[oc] += np.sum(gn * xp[win], axis=0)
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, x.shape[2:]))
    return gxp[(slice(None), slice(None)) + crop], gw


# (input shape, weight shape, stride, (low, high) pads, dilation, groups): 1-D, 2-D and 3-D windows with
# strides, asymmetric padding, dilation and groups, and pointwise (1x1) kernels, the GEMM-only path
BLOCK_CASES = {
    "1d": ((7, 4, 11), (6, 2, 3), (2,), ((1, 2),), (2,), 2),
    "2d": ((7, 4, 7, 6), (6, 2, 3, 2), (2, 1), ((1, 1), (1, 0)), (1, 2), 2),
    "2d-pointwise": ((7, 6, 5, 4), (4, 3, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 2),
    "2d-pointwise-stride": ((7, 3, 5, 4), (4, 3, 1, 1), (2, 1), ((0, 0), (0, 1)), (1, 1), 1),
    "3d": ((7, 2, 4, 5, 3), (3, 2, 2, 3, 2), (1, 2, 1), ((1, 1), (0, 1), (1, 0)), (1, 1, 2), 1),
    "depthwise": ((7, 4, 6, 6), (4, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 4),
}


def _per_sample_bytes(xs, ws, outs, itemsize):
    """What the kernels count per sample against BLOCK_BYTES: its columns."""
    return xs[1] * int(np.prod(ws[2:])) * int(np.prod(outs)) * itemsize


@pytest.mark.parametrize("case", list(BLOCK_CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("blocks", ["one-sample", "uneven", "whole"])
def test_blocked_conv_kernels_match_window_loops(case, dtype, blocks, path, monkeypatch):
    """The three kernels on both paths, with blocks of columns of one sample, of three samples out of seven
    (the last block a single one) and of the whole batch, against direct window loops: values, x's and w's
    gradients, in float32 and float64."""
    xs, ws, stride, pads, dilation, groups = BLOCK_CASES[case]
    rng = np.random.default_rng(20)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    want = np_conv(x, w, b, stride, pads, dilation, groups)
    g = rng.standard_normal(want.shape)
    want_gx, want_gw = np_conv_grads(x, w, g, stride, pads, dilation, groups)
    dt = np.dtype(dtype)
    per = _per_sample_bytes(xs, ws, want.shape[2:], dt.itemsize)
    monkeypatch.setattr(kconv, "BLOCK_BYTES", {"one-sample": per, "uneven": 3 * per, "whole": 1 << 40}[blocks])
    n_blocks = {"one-sample": 7, "uneven": 3, "whole": 1}[blocks]
    assert len(kconv._blocks(7, per)) == n_blocks   # the sizes the test means are the kernels' own
    x, w, b, g = (a.astype(dt) for a in (x, w, b, g))
    pointwise = case.startswith("2d-pointwise") and stride == (1, 1)
    runs = dict(kconv.RUNS)
    y = kconv.conv_forward(np, x, w, b, stride, pads, dilation, groups)
    gx = kconv.conv_input_grad(np, g, w, xs[2:], stride, pads, dilation, groups)
    gw = kconv.conv_weight_grad(np, x, g, ws[2:], stride, pads, dilation, groups)
    took = {k: kconv.RUNS[k] - runs[k] for k in runs}
    if not pointwise:   # im2col per block in the forward and the weight gradient, col2im in the input's
        c_ok = path == "c" and len(xs) < 5
        assert took["c" if c_ok else "numpy"] == 3 * n_blocks and took["numpy" if c_ok else "c"] == 0
    tol = dict(rtol=1e-5, atol=1e-4) if dt == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for got, ref in ((y, want), (gx, want_gx), (gw, want_gw)):
        assert got.dtype == dt and got.flags.c_contiguous
        np.testing.assert_allclose(got, ref, **tol)


@pytest.mark.parametrize("case", list(BLOCK_CASES))
@pytest.mark.parametrize("blocks", ["one-sample", "uneven"])
def test_blocked_conv_kernels_match_torch(case, blocks, monkeypatch):
    torch = pytest.importorskip("torch")
    xs, ws, stride, pads, dilation, groups = BLOCK_CASES[case]
    rng = np.random.default_rng(21)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws, ws[:1]))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    flat = [p for lo_hi in reversed(pads) for p in lo_hi]   # torch's F.pad takes the last dim first
    conv = getattr(torch.nn.functional, f"conv{len(ws) - 2}d")
    ty = conv(torch.nn.functional.pad(tx, flat), tw, tb, stride=stride, dilation=dilation, groups=groups)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(g))
    per = _per_sample_bytes(xs, ws, ty.shape[2:], 4)
    monkeypatch.setattr(kconv, "BLOCK_BYTES", per if blocks == "one-sample" else 3 * per)
    y = kconv.conv_forward(np, x, w, b, stride, pads, dilation, groups)
    gx = kconv.conv_input_grad(np, g, w, xs[2:], stride, pads, dilation, groups)
    gw = kconv.conv_weight_grad(np, x, g, ws[2:], stride, pads, dilation, groups)
    for got, ref in ((y, ty), (gx, tx.grad), (gw, tw.grad)):
        np.testing.assert_allclose(got, ref.detach().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("blocks", ["one-sample", "uneven", "whole"])
def test_compiled_and_eager_conv_gradients_across_block_sizes(blocks, monkeypatch):
    """A compiled step (conv, relu, conv, loss, both gradients) equals eager and the window loops,
    whatever the block size the kernels run with."""
    rng = np.random.default_rng(22)
    x = rng.standard_normal((5, 3, 8, 7))
    w1, w2 = rng.standard_normal((4, 3, 3, 3)) * 0.5, rng.standard_normal((6, 2, 2, 3)) * 0.5
    per = _per_sample_bytes((5, 4), (6, 2, 2, 3), (3, 3), 8)
    monkeypatch.setattr(kconv, "BLOCK_BYTES", {"one-sample": 1, "uneven": 2 * per, "whole": 1 << 40}[blocks])

    def step(a, c, d):
        h = F.relu(F.conv2d(a, c, padding=1))
        y = F.conv2d(h, d, stride=2, dilation=(1, 2), groups=2)
        loss = (y * y).sum()
        return [loss] + list(dg.autograd.grad(loss, [c, d]))
    args = lambda: [dg.tensor(a, requires_grad=True) for a in (x, w1, w2)]   # noqa: E731
    eager, compiled = step(*args()), dg.function(step)(*args())
    h = np.maximum(np_conv(x, w1, None, (1, 1), ((1, 1),) * 2, (1, 1), 1), 0)
    y = np_conv(h, w2, None, (2, 2), ((0, 0),) * 2, (1, 2), 2)
    gh, gw2 = np_conv_grads(h, w2, 2 * y, (2, 2), ((0, 0),) * 2, (1, 2), 2)
    _, gw1 = np_conv_grads(x, w1, gh * (h > 0), (1, 1), ((1, 1),) * 2, (1, 1), 1)
    for got in (eager, compiled):
        for a, want in zip(got, (np.sum(y * y), gw1, gw2)):
            np.testing.assert_allclose(a.numpy(), want, rtol=1e-10, atol=1e-10)


def test_im2col_of_a_strided_input_takes_the_c_loop():
    """A non-contiguous input (a transposed view) is copied once for the C loop, not sent to numpy's
    strided copy; the columns are the windows all the same."""
    if not C_AVAILABLE:
        pytest.skip("no C compiler")
    rng = np.random.default_rng(23)
    x = rng.standard_normal((3, 6, 5, 2)).transpose(0, 3, 1, 2)   # (3, 2, 6, 5), not C-contiguous
    w = rng.standard_normal((4, 2, 3, 2))
    runs = dict(kconv.RUNS)
    y = kconv.conv_forward(np, x, w, None, (1, 2), ((1, 0), (0, 1)), (2, 1), 1)
    assert kconv.RUNS["c"] > runs["c"] and kconv.RUNS["numpy"] == runs["numpy"]
    np.testing.assert_allclose(y, np_conv(x, w, None, (1, 2), ((1, 0), (0, 1)), (2, 1), 1), rtol=1e-12, atol=1e-12)
