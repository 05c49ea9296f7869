"""Whole paths on the GPU, each compared with the CPU: a training step eager and compiled, save/load with
map_location, ONNX export with verify, the static Session, data loading to the device, printing, the
fused kernels (NaN semantics, constants, a compile failure at the first call) and memory queries."""
import os

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn as nn
from dualgraph import backend
from dualgraph.ops import elementwise as _ew

GPU = "gpu"


def _mlp(device, seed=0):
    dg.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    return m.to(device)


def _data(device):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    return dg.tensor(x, device=device), dg.tensor(y, device=device)


def _train(device, compiled, steps=3):
    model = _mlp("cpu").to(device)
    opt = dg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _data(device)

    def step(x, y):
        opt.zero_grad()
        loss = dg.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    if compiled:
        step = dg.function(step)
    losses = [float(step(x, y).item()) for _ in range(steps)]
    return losses, [p.detach().numpy() for p in model.parameters()], model


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_training_step_matches_cpu(compiled):
    lc, pc, _ = _train("cpu", compiled)
    lg, pg, model = _train(GPU, compiled)
    assert lg[-1] < lg[0]
    np.testing.assert_allclose(lg, lc, rtol=1e-5, atol=1e-6)
    for a, b in zip(pg, pc):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for p in model.parameters():
        assert p.device == dg.device(GPU) and isinstance(p._data, backend._cupy.ndarray)


def test_save_load_map_location(tmp_path):
    model = _mlp(GPU)
    path = os.path.join(tmp_path, "ckpt.pt")
    dg.save({"model": model.state_dict(), "step": 3}, path)
    on_cpu = dg.load(path, map_location="cpu")
    back = dg.load(path, map_location="cuda:0")
    for k, v in model.state_dict().items():
        assert on_cpu["model"][k].device == dg.device("cpu")
        assert back["model"][k].device == dg.device(GPU)
        np.testing.assert_array_equal(on_cpu["model"][k].numpy(), v.numpy())
    fresh = _mlp("cpu", seed=5).to(GPU)
    fresh.load_state_dict(back["model"])
    x, _ = _data(GPU)
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())


def test_onnx_export_verify_of_a_gpu_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = _mlp(GPU)
    x, _ = _data(GPU)
    path = os.path.join(tmp_path, "m.onnx")
    dg.onnx.export(model, (x,), path, verify=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-5, atol=1e-6)

    f = dg.function(lambda a: dg.tanh(a) * 2 + a.sum(1, keepdim=True))
    dg.onnx.export(f, (x,), os.path.join(tmp_path, "f.onnx"), verify=True)
    # a function capturing the GPU model's parameters, with a dynamic batch axis (verify runs other sizes)
    g = dg.function(lambda a: model(a).softmax(-1))
    dg.onnx.export(g, (x,), os.path.join(tmp_path, "g.onnx"), verify=True, dynamic_axes={"a": {0: "batch"}})
    bn = nn.Sequential(nn.Linear(6, 3), nn.BatchNorm1d(3)).to(GPU)
    dg.onnx.export(bn, (x,), os.path.join(tmp_path, "bn.onnx"), verify=True, training=True)


def test_static_session_with_gpu_values():
    from dualgraph import static as tf
    feed = dg.randn(4, 3, device=GPU)
    w0 = dg.tensor([1.0, 2.0, 3.0], device=GPU)
    g = tf.Graph()
    with g.as_default():
        p = tf.placeholder("float32", (None, 3))
        v = tf.Variable(w0)
        c = tf.constant(w0)
        y = (p * v + c).sum()
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            want = float((feed.numpy() * np.array([1, 2, 3], np.float32)).sum()) + 4 * 6
            assert abs(float(s.run(y, {p: feed})) - want) < 1e-4
            v.load(dg.zeros(3, device=GPU), s)
            np.testing.assert_array_equal(s.run(v), np.zeros(3, np.float32))


def test_data_loader_batches_to_the_device():
    ds = dg.utils.data.TensorDataset(dg.arange(20, dtype="float32").reshape(10, 2), dg.arange(10))
    seen = []
    for a, b in dg.utils.data.DataLoader(ds, batch_size=4, shuffle=False):
        a, b = a.to(GPU), b.to("cuda:0", non_blocking=True)
        assert a.device == dg.device(GPU) and b.device == dg.device(GPU)
        seen.append((a * 2).sum().item())
    assert seen == [2 * sum(range(0, 8)), 2 * sum(range(8, 16)), 2 * sum(range(16, 20))]


def test_printing_names_the_device():
    t = dg.tensor([[1.5, -2.0]], device=GPU)
    assert "device='gpu:0'" in repr(t) and "1.5000" in repr(t)
    assert repr(dg.tensor([1, 2], device=GPU)) == "tensor([1, 2], device='gpu:0')"
    assert str(t.sum()) == "tensor(-0.5000, device='gpu:0')"


def _same(got, want):
    """Bit-equal on the emulated GPU; on a real one within 1e-6 relative: CUDA contracts a*b+c into one
    fused multiply-add and its tanh/exp differ from numpy's by an ulp or two (NaN and inf must match)."""
    if backend.EMULATED:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


class _Counting:
    """Counts the ElementwiseKernels the fused-kernel generator makes (so the test knows it ran one)."""

    def __init__(self, real):
        self.real, self.made = real, 0

    def __call__(self, *args, **kwargs):
        self.made += 1
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("name,fn,ref", [
    ("relu", lambda a: dg.relu(a * 2 + 1), lambda a: np.where(np.isnan(a), np.nan, np.maximum(a * 2 + 1, 0))),
    ("maximum", lambda a: dg.maximum(a * 2, a + 1), lambda a: np.maximum(a * 2, a + 1)),
    ("minimum", lambda a: dg.minimum(a * 2, a + 1), lambda a: np.minimum(a * 2, a + 1)),
    ("clamp_inf", lambda a: dg.maximum(a * 0.1, float("-inf")) + 0.1, lambda a: a * np.float32(0.1) + np.float32(0.1)),
    ("int_chain", lambda a: (a * 3 + 2**40) - 7, lambda a: (a * 3 + 2**40) - 7),
])
def test_fused_chains_match_the_cpu_with_nan(name, fn, ref, monkeypatch):
    counting = _Counting(backend._cupy.ElementwiseKernel)
    monkeypatch.setattr(backend._cupy, "ElementwiseKernel", counting)
    a = np.array([[-1.5, 0.0, np.nan, 2.0], [np.inf, -np.inf, 3.25, -0.1]], np.float32)
    if name == "int_chain":
        a = np.nan_to_num(a, posinf=5, neginf=-5).astype(np.int64) + 2**41  # beyond a double's exact range
    f = dg.function(fn)
    got = f(dg.tensor(a, device=GPU))
    cpu = dg.function(fn)(dg.tensor(a)).numpy()
    assert got.device == dg.device(GPU) and counting.made >= 1
    _same(got.numpy(), cpu)
    with np.errstate(all="ignore"):
        _same(got.numpy(), ref(a).astype(cpu.dtype))


def test_fused_chain_with_python_floats_rounds_as_the_cpu():
    # numpy computes float32 * 0.1 with float32(0.1); a CUDA double literal would round differently
    a = np.random.default_rng(7).standard_normal(4096).astype(np.float32) * 100
    fn = lambda t: dg.tanh(t * 0.1 + 0.3) * 0.7 - t / 3.3   # noqa: E731
    got = dg.function(fn)(dg.tensor(a, device=GPU)).numpy()
    want = dg.function(fn)(dg.tensor(a)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6 if backend.EMULATED else 2e-6, atol=0)
    lin = lambda t: t * 0.1 + 0.3   # noqa: E731
    _same(dg.function(lin)(dg.tensor(a, device=GPU)).numpy(), a * np.float32(0.1) + np.float32(0.3))


def test_fused_kernel_compile_error_at_first_call_falls_back(monkeypatch):
    # cupy compiles an ElementwiseKernel at its first call: a source that does not compile must fall back
    # to the ufunc calls there, not escape from the compiled function
    monkeypatch.setattr(_ew.EXP, "expr", "no_such_function({0})")
    f = dg.function(lambda a: dg.exp(a * 2) + 1)
    a = np.array([0.5, -1.0, 2.0], np.float32)
    got = f(dg.tensor(a, device=GPU))
    np.testing.assert_allclose(got.numpy(), np.exp(a * 2) + 1, rtol=1e-6)
    np.testing.assert_allclose(f(dg.tensor(a, device=GPU)).numpy(), np.exp(a * 2) + 1, rtol=1e-6)


def test_fold_runs_on_device_constants():
    # a captured GPU tensor is a device constant of the graph: folding computes on its device
    c = dg.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), device=GPU)
    f = dg.function(lambda a: a + dg.pad(c, (2, 1), mode="reflect").sum(0))
    a = dg.randn(6, device=GPU, requires_grad=True)
    out = f(a)
    out.sum().backward()
    want = np.pad(np.arange(6, dtype=np.float32).reshape(2, 3), ((0, 0), (2, 1)), mode="reflect").sum(0)
    np.testing.assert_allclose(out.detach().numpy(), a.detach().numpy() + want)
    np.testing.assert_array_equal(a.grad.numpy(), np.ones(6, np.float32))
    x = dg.randn(4, 5, device=GPU, requires_grad=True)
    dg.function(lambda t: dg.pad(t, (2, 1), mode="reflect"))(x).sum().backward()
    assert x.grad.device == dg.device(GPU)


def test_random_draws_on_the_gpu():
    dg.manual_seed(3)
    for t in (dg.randperm(50, device=GPU), dg.rand(4, 5, device=GPU), dg.randn(6, device=GPU),
              dg.randint(0, 7, (9,), device=GPU), dg.multinomial(dg.tensor([0.2, 0.8], device=GPU), 4, True),
              dg.zeros(5, device=GPU).exponential_(), dg.poisson(dg.ones(4, device=GPU))):
        assert t.device == dg.device(GPU) and isinstance(t._data, backend._cupy.ndarray)
    p = dg.randperm(50, device=GPU)
    assert sorted(p.tolist()) == list(range(50)) and p.dtype == dg.int64


@pytest.mark.parametrize("name", ["maximum", "minimum", "logaddexp", "add"])
def test_accumulate_scan_matches_numpy(name):
    # cupy has ufunc.accumulate for add/multiply only: the backend scans the others on the GPU
    cp = backend._cupy
    x = np.random.default_rng(5).standard_normal((3, 37))
    x[1, 9] = np.nan
    for axis in (0, 1, -1):
        got = cp.asnumpy(backend.accumulate(cp, name, cp.asarray(x), axis))
        np.testing.assert_allclose(got, getattr(np, name).accumulate(x, axis=axis), rtol=1e-12, equal_nan=True)


def test_scatter_multiply_with_repeated_positions_matches_numpy():
    cp = backend._cupy
    rng = np.random.default_rng(6)
    out = rng.standard_normal((4, 5))
    rows = rng.integers(0, 4, (6, 5))
    cols = np.broadcast_to(np.arange(5), (6, 5))
    vals = rng.standard_normal((6, 5))
    want = out.copy()
    np.multiply.at(want, (rows, cols), vals)
    dev = cp.asarray(out)
    backend.scatter_multiply(cp, dev, (cp.asarray(rows), cp.asarray(cols)), cp.asarray(vals))
    np.testing.assert_allclose(cp.asnumpy(dev), want, rtol=1e-12)


def test_storage_queries_on_the_gpu():
    t = dg.randn(3, 4, device=GPU)
    assert t.data_ptr() != 0 and t.stride() == (4, 1) and t.is_contiguous()
    assert not t.t().is_contiguous() and t.t().contiguous().is_contiguous()
    assert t.share_memory_() is t and t.device == dg.device(GPU)   # a no-op on the GPU, as in PyTorch


def test_memory_queries_and_device_properties():
    before = dg.cuda.memory_allocated()
    t = dg.zeros(1 << 16, device=GPU)
    assert dg.cuda.memory_allocated() >= before + t.numel() * 4
    assert dg.cuda.memory_reserved() >= dg.cuda.memory_allocated()
    assert dg.cuda.is_available() and dg.cuda.device_count() >= 1
    assert isinstance(dg.cuda.get_device_name(), str)
    del t
