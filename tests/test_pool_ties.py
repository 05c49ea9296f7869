"""Max pooling with tied maxima: each window's gradient goes to one element, the first maximum in
row-major window order among the unpadded positions (PyTorch's kernel; ONNX MaxPool's Indices name
the same element), never split between the ties. Checked eagerly, compiled (@dg.function, backward
traced too) and exported (onnxruntime), against hand-derived values and against PyTorch."""
import itertools

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.errors import DTypeError, ShapeError



def POOL(nd):
    return getattr(F, f"max_pool{nd}d")


def _grad_eager(x, g, *args, nd=2, **kw):
    xt = dg.tensor(x, requires_grad=True)
    y, idx = POOL(nd)(xt, *args, return_indices=True, **kw)
    y.backward(dg.tensor(g))
    return y.numpy(), idx.numpy(), xt.grad.numpy()


def _grad_compiled(x, g, *args, nd=2, **kw):
    @dg.function
    def step(x, g):
        y, idx = POOL(nd)(x, *args, return_indices=True, **kw)
        (y * g).sum().backward()
        return y, idx

    xt = dg.tensor(x, requires_grad=True)
    y, idx = step(xt, dg.tensor(g))
    return y.numpy(), idx.numpy(), xt.grad.numpy()


def _grad_compiled_forward(x, g, *args, nd=2, **kw):
    """Forward compiled, backward run through the compiled function's own backward graph."""
    fn = dg.function(lambda x: POOL(nd)(x, *args, **kw))
    xt = dg.tensor(x, requires_grad=True)
    fn(xt).backward(dg.tensor(g))
    return xt.grad.numpy()


MODES = {"eager": _grad_eager, "compiled": _grad_compiled}


# ---- hand-derived, no PyTorch needed ------------------------------------------------------------

@pytest.mark.parametrize("mode", sorted(MODES))
def test_all_ones_2x2_pool_sends_the_gradient_to_each_windows_top_left(mode):
    y, idx, grad = MODES[mode](np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2), np.float32), 2)
    np.testing.assert_array_equal(y, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])
    expected = np.zeros((4, 4), np.float32)
    expected[::2, ::2] = 1
    np.testing.assert_array_equal(grad[0, 0], expected)
    assert _grad_compiled_forward(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2), np.float32), 2)[0, 0] \
        .tolist() == expected.tolist()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_overlapping_windows_sum_on_the_shared_first_maximum(mode):
    # kernel 2 stride 1 over zeros: window (i, j) picks its top-left (i, j)
    _, _, grad = MODES[mode](np.zeros((1, 1, 3, 3), np.float32), np.array([[[[1, 2], [3, 4]]]], np.float32), 2, 1)
    np.testing.assert_array_equal(grad[0, 0], [[1, 2, 0], [3, 4, 0], [0, 0, 0]])
    # kernel 3 stride 1 padding 1: a window's first unpadded position; the corner is first in four
    y, idx, grad = MODES[mode](np.zeros((1, 1, 3, 3), np.float32), np.ones((1, 1, 3, 3), np.float32), 3, 1, 1)
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])
    np.testing.assert_array_equal(grad[0, 0], [[4, 2, 0], [2, 1, 0], [0, 0, 0]])
    # kernel 3 stride 2 over 5x5 ones: windows start at 0 and 2, so (0, 2), (2, 0), (2, 2) ... overlap
    _, _, grad = MODES[mode](np.ones((1, 1, 5, 5), np.float32), np.ones((1, 1, 2, 2), np.float32), 3, 2)
    expected = np.zeros((5, 5), np.float32)
    expected[0, 0] = expected[0, 2] = expected[2, 0] = expected[2, 2] = 1
    np.testing.assert_array_equal(grad[0, 0], expected)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_ties_with_dilation_and_ceil_mode(mode):
    # dilation 2, kernel 2 over a 1x5 row of ones: windows {0, 2}, {1, 3}, {2, 4} pick 0, 1, 2
    _, idx, grad = MODES[mode](np.ones((1, 1, 5), np.float32), np.array([[[1, 10, 100]]], np.float32), 2, 1,
                               dilation=2, nd=1)
    np.testing.assert_array_equal(idx[0, 0], [0, 1, 2])
    np.testing.assert_array_equal(grad[0, 0], [1, 10, 100, 0, 0])
    # ceil mode: a 5-wide input with kernel 2 stride 2 gets a third, clipped window {4}
    y, idx, grad = MODES[mode](np.ones((1, 1, 5), np.float32), np.array([[[1, 10, 100]]], np.float32), 2,
                               ceil_mode=True, nd=1)
    assert y.shape == (1, 1, 3)
    np.testing.assert_array_equal(idx[0, 0], [0, 2, 4])
    np.testing.assert_array_equal(grad[0, 0], [1, 0, 10, 0, 100])


def test_unique_maximum_still_gets_the_whole_gradient():
    x = np.array([[[[1, 5], [5, 2]]]], np.float32)
    x[0, 0, 1, 0] = 7
    _, idx, grad = _grad_eager(x, np.full((1, 1, 1, 1), 3, np.float32), 2)
    assert idx.item() == 2
    np.testing.assert_array_equal(grad[0, 0], [[0, 0], [3, 0]])


def test_second_order_reads_the_same_element():
    """d(grad)/d(g) is the adjoint: it reads the upstream value at each window's chosen element."""
    x = dg.tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True)
    g = dg.tensor(np.array([[[[1, 2], [3, 4]]]], np.float32), requires_grad=True)
    (gx,) = dg.autograd.grad(F.max_pool2d(x, 2), x, grad_outputs=g, create_graph=True)
    weights = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    (gx * dg.tensor(weights)).sum().backward()
    np.testing.assert_array_equal(g.grad.numpy()[0, 0], [[0, 2], [8, 10]])


def test_integer_pooling_and_bad_arguments():
    x = dg.tensor(np.array([[[[1, 1, 0], [1, 1, 0], [2, 0, 2]]]], np.int64))
    y, idx = F.max_pool2d(x, 2, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(y.numpy()[0, 0], [[1, 0], [2, 2]])
    np.testing.assert_array_equal(idx.numpy()[0, 0], [[0, 2], [6, 8]])
    with pytest.raises(ShapeError, match="padding"):
        F.max_pool2d(dg.ones(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(ShapeError, match="too small"):
        F.max_pool2d(dg.ones(1, 1, 2, 2), 3)
    with pytest.raises(ShapeError, match="max_pool3d"):
        F.max_pool3d(dg.ones(1, 4, 4), 2)
    with pytest.raises(DTypeError, match="max_pool2d.*bool"):
        F.max_pool2d(dg.ones(1, 1, 4, 4).astype("bool"), 2, padding=1)


def test_max_and_amax_split_ties_evenly():
    """The reductions keep amax's rule (PyTorch's x.max() and amax split too); only pooling picks one."""
    x = dg.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    dg.max(x).backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 1 / 6, np.float32))
    x = dg.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    dg.amax(x, 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 1 / 3, np.float32))


def test_every_window_passes_its_gradient_exactly_once():
    """A ResNet-stem-sized tie-only input: no gradient lost in the padding, none duplicated."""
    x = dg.tensor(np.zeros((2, 64, 56, 56), np.float32), requires_grad=True)
    y = F.max_pool2d(x, 3, 2, 1)
    y.backward(dg.ones(*y.shape))
    assert float(x.grad.sum().item()) == y.numel()


# ---- against PyTorch --------------------------------------------------------------------------

CONFIGS = [  # (nd, shape, kernel, stride, padding, dilation, ceil_mode)
    (2, (2, 3, 8, 8), 2, None, 0, 1, False),
    (2, (2, 3, 7, 6), 3, 1, 1, 1, False),
    (2, (2, 3, 7, 6), 3, 2, 1, 1, True),
    (2, (1, 2, 9, 8), (3, 2), (2, 1), (1, 0), (2, 1), True),
    (2, (3, 7, 7), 2, 2, 1, 2, False),
    (1, (2, 3, 11), 3, 1, 1, 2, True),
    (3, (1, 2, 5, 6, 4), 2, 1, 1, 1, True),
    (3, (1, 2, 6, 6, 6), 3, 2, 0, 1, False),
]


def _inputs(kind, shape, rng):
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "small_ints":
        return rng.integers(-2, 3, shape).astype(np.float32)
    return np.maximum(rng.standard_normal(shape), 0).astype(np.float32)   # post-ReLU: many zeros


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("kind", ["zeros", "small_ints", "relu"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c[0]}d-{c[1]}-k{c[2]}s{c[3]}p{c[4]}d{c[5]}c{int(c[6])}")
def test_matches_torch_exactly(cfg, kind, mode):
    torch = pytest.importorskip("torch")
    nd, shape, k, s, p, d, ceil = cfg
    rng = np.random.default_rng(hash((cfg, kind)) % 2**32)
    x = _inputs(kind, shape, rng)
    tx = torch.tensor(x, requires_grad=True)
    tpool = {1: torch.nn.functional.max_pool1d, 2: torch.nn.functional.max_pool2d,
             3: torch.nn.functional.max_pool3d}[nd]
    ty, tidx = tpool(tx, k, s, p, d, ceil, return_indices=True)
    g = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(g))
    y, idx, grad = MODES[mode](x, g, k, s, p, d, ceil, nd=nd)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    np.testing.assert_array_equal(grad, tx.grad.numpy())


def test_nan_and_minus_inf_windows_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.integers(-1, 2, (2, 2, 7, 7)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = -np.inf
    x[rng.random(x.shape) < 0.05] = np.nan
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, 3, 2, 1, return_indices=True)
    ty.sum().backward()
    y, idx, grad = _grad_eager(x, np.ones(tuple(ty.shape), np.float32), 3, 2, 1)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    np.testing.assert_array_equal(grad, tx.grad.numpy())


def test_second_order_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2, (1, 2, 6, 6)).astype(np.float32)
    g = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    v = rng.standard_normal(x.shape).astype(np.float32)
    tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(g, requires_grad=True)
    (tgx,) = torch.autograd.grad(torch.nn.functional.max_pool2d(tx, 3, 1), tx, tg, create_graph=True)
    (tgx * torch.tensor(v)).sum().backward()
    dx, dgt = dg.tensor(x, requires_grad=True), dg.tensor(g, requires_grad=True)
    (dgx,) = dg.autograd.grad(F.max_pool2d(dx, 3, 1), dx, grad_outputs=dgt, create_graph=True)
    (dgx * dg.tensor(v)).sum().backward()
    np.testing.assert_array_equal(dgx.detach().numpy(), tgx.detach().numpy())
    np.testing.assert_array_equal(dgt.grad.numpy(), tg.grad.numpy())


def _convnet_params(rng):
    # conv weights and bias on a grid of quarters: every conv output is exact whatever the summation
    # order, so PyTorch and dualgraph see the same ties (off-grid values could round to near-ties that
    # one side breaks differently), and different patches of the binary input tie as well
    return {"w1": (rng.integers(-2, 3, (4, 2, 3, 3)) * 0.25).astype(np.float32),
            "b1": (rng.integers(1, 3, 4) * 0.25).astype(np.float32),
            "w2": (rng.standard_normal((3, 4 * 4 * 4)) * 0.2).astype(np.float32),
            "b2": np.zeros(3, np.float32)}


def _convnet(F_, x, p, pool_kw):
    h = F_.relu(F_.conv2d(x, p["w1"], p["b1"], padding=1))
    h = F_.max_pool2d(h, **pool_kw)
    return F_.linear(h.reshape(h.shape[0], -1), p["w2"], p["b2"])


@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("pool_kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}],
                         ids=["k2", "k3s2p1"])
def test_small_convnet_gradients_match_torch(mode, pool_kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    # MNIST-like: a blank background with a few strokes. On the background every conv output equals
    # the (positive) bias, so pooling windows there tie at a value that passes the ReLU.
    x = np.where(rng.random((3, 2, 8, 8)) < 0.15, 1.0, 0.0).astype(np.float32)
    target = rng.integers(0, 3, 3)
    params = _convnet_params(rng)
    params["x"] = x
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    torch.nn.functional.cross_entropy(_convnet(torch.nn.functional, tp["x"], tp, pool_kw),
                                      torch.tensor(target)).backward()
    dp = {k: dg.tensor(v, requires_grad=True) for k, v in params.items()}

    def loss(x, t):
        return F.cross_entropy(_convnet(F, x, dp, pool_kw), t)
    step = dg.function(loss) if mode == "compiled" else loss
    step(dp["x"], dg.tensor(target)).backward()
    for k in params:
        np.testing.assert_allclose(dp[k].grad.numpy(), tp[k].grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=k)


# ---- ONNX export -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [(2, (2, 3, 7, 6), 3, 2, 1, 1, True), (2, (1, 2, 8, 8), 2, None, 0, 1, False),
                                 (1, (2, 3, 11), 3, 1, 1, 2, True), (3, (1, 2, 5, 6, 4), 2, 1, 1, 1, True)],
                         ids=["2d-ceil", "2d", "1d", "3d"])
def test_onnx_maxpool_values_and_indices(cfg):
    ort = pytest.importorskip("onnxruntime")
    nd, shape, k, s, p, d, ceil = cfg
    x = np.random.default_rng(6).integers(0, 3, shape).astype(np.float32)

    def f(x):
        return POOL(nd)(x, k, s, p, d, ceil, return_indices=True)
    model = dg.onnx.export(f, (dg.tensor(x),), verify=True)
    assert "MaxPool" in {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y, idx = sess.run(None, {sess.get_inputs()[0].name: x})
    ey, eidx, _ = _grad_eager(x, np.zeros(y.shape, np.float32), k, s, p, d, ceil, nd=nd)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(idx, eidx)


def test_onnx_export_with_dynamic_sizes():
    ort = pytest.importorskip("onnxruntime")
    x = np.zeros((2, 3, 8, 8), np.float32)
    model = dg.onnx.export(lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True), (dg.tensor(x),),
                           input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, verify=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in itertools.islice(itertools.product((1, 3), (5, 9), (6, 7)), 4):
        x = np.random.default_rng(sum(shape)).integers(0, 2, (shape[0], 3) + shape[1:]).astype(np.float32)
        y, idx = sess.run(None, {"x": x})
        ey, eidx, _ = _grad_eager(x, np.zeros(y.shape, np.float32), 3, 2, 1)
        np.testing.assert_array_equal(y, ey)
        np.testing.assert_array_equal(idx, eidx)


def test_max_pool_over_symbolic_spatial_sizes_follows_each_call():
    # the pooled size is a size expression of the input's, evaluated at each call (an opaque dim made
    # the compiled graph fail with KeyError at run time)
    pool = dg.function(lambda x: dg.max_pool2d(x, 3, stride=2, padding=1),
                       input_signature=[dg.TensorSpec([1, 2, None, None], "float32")])
    rng = np.random.default_rng(0)
    for h, w in ((4, 5), (7, 6), (9, 9)):
        x = rng.standard_normal((1, 2, h, w)).astype(np.float32)
        want = dg.max_pool2d(dg.tensor(x), 3, stride=2, padding=1)
        got = pool(dg.tensor(x))
        assert got.shape == want.shape == (1, 2, (h - 1) // 2 + 1, (w - 1) // 2 + 1)
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_max_pool_ceil_mode_over_a_symbolic_size_is_refused_not_frozen():
    pool = dg.function(lambda x: dg.max_pool2d(x, 2, ceil_mode=True),
                       input_signature=[dg.TensorSpec([1, 1, None, 4], "float32")])
    with pytest.raises(dg.DualgraphError, match=r"max_pool.*d0 has no integer value while tracing"):
        pool(dg.zeros(1, 1, 5, 4))
