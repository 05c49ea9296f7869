"""PyTorch's doors into dualgraph: dg.cuda / dg.accelerator / dg.backends, the default dtype, devices named
'cuda', inference_mode, dg.compile, dg.jit.trace and dg.save/dg.load of state dicts under any file name.

Each test checks dualgraph against the documented PyTorch behaviour by hand (numpy or hand-derived values);
where torch is installed the same question is also put to torch."""
import io
import random

import numpy as np
import pytest

import dualgraph as dg

needs_gpu = pytest.mark.skipif(not dg.cuda.is_available(), reason="needs cupy and a GPU")
no_gpu = pytest.mark.skipif(dg.cuda.is_available(), reason="checks the answers on a machine without a GPU")


# ---- dg.cuda / dg.accelerator / dg.backends ------------------------------------------------------

def test_cuda_answers_agree_with_the_backend():
    assert dg.cuda.is_available() is dg.gpu_available()
    assert dg.cuda.device_count() == dg.accelerator.device_count()
    assert dg.accelerator.is_available() is dg.cuda.is_available()
    assert isinstance(dg.cuda.device_count(), int)


@no_gpu
def test_cuda_without_a_gpu_answers_like_torch_on_a_cpu_build():
    assert dg.cuda.is_available() is False and dg.cuda.device_count() == 0
    assert dg.accelerator.current_accelerator() is None and dg.accelerator.device_count() == 0
    # documented as silently ignored without CUDA, and the counters read 0
    dg.cuda.manual_seed(1)
    dg.cuda.manual_seed_all(1)
    dg.cuda.empty_cache()
    assert dg.cuda.memory_allocated() == 0 and dg.cuda.max_memory_allocated() == 0
    assert dg.cuda.memory_reserved() == 0
    for call in (dg.cuda.current_device, dg.cuda.synchronize, dg.cuda.get_device_name,
                 dg.accelerator.current_device_index):
        with pytest.raises(dg.DeviceError, match="no GPU") as e:
            call()
        assert isinstance(e.value, RuntimeError)  # what torch raises there is a RuntimeError/AssertionError
    for spec in ("cuda", "cuda:0", "gpu"):
        with pytest.raises(dg.DeviceError, match="needs cupy and a GPU"):
            dg.device(spec)
    with pytest.raises(dg.DeviceError, match="needs cupy and a GPU"):
        dg.ones(2).cuda()
    with pytest.raises(dg.DeviceError, match="needs cupy and a GPU"):
        dg.ones(2).to("cuda", non_blocking=True)
    with pytest.raises(dg.DeviceError):
        dg.nn.Linear(2, 2).to("cuda")


@no_gpu
def test_torch_on_a_cpu_build_gives_the_same_answers():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here")
    assert torch.cuda.device_count() == dg.cuda.device_count()
    assert torch.accelerator.current_accelerator() is dg.accelerator.current_accelerator()
    assert torch.cuda.memory_allocated() == dg.cuda.memory_allocated()
    assert torch.backends.mps.is_available() == dg.backends.mps.is_available()
    for name in ("enabled", "benchmark", "deterministic", "allow_tf32"):
        assert getattr(torch.backends.cudnn, name) == getattr(dg.backends.cudnn, name), name
    for name in ("allow_tf32", "allow_fp16_reduced_precision_reduction"):
        assert getattr(torch.backends.cuda.matmul, name) == getattr(dg.backends.cuda.matmul, name), name


@needs_gpu
def test_cuda_names_the_gpu_device():
    assert dg.device("cuda") is dg.device("gpu:0") and dg.device("cuda:0") is dg.device("gpu")
    x = dg.tensor([1.0, 2.0]).cuda()
    assert x.device is dg.device("gpu:0") and x.to("cuda:0").device is x.device
    assert x.is_cuda and not x.is_cpu and x.get_device() == 0
    assert dg.accelerator.current_accelerator().type == "gpu"
    assert dg.cuda.current_device() == 0 and isinstance(dg.cuda.get_device_name(), str)
    dg.cuda.synchronize()
    assert dg.cuda.memory_allocated() > 0
    dg.cuda.manual_seed_all(3)
    a = dg.rand(4, device="cuda").numpy()
    dg.cuda.manual_seed_all(3)
    np.testing.assert_array_equal(a, dg.rand(4, device="cuda").numpy())


def test_device_with_an_index_argument():
    assert dg.device("cpu", 0) is dg.device("cpu")
    with pytest.raises(dg.DeviceError, match="one CPU"):
        dg.device("cpu", 1)
    with pytest.raises(dg.DeviceError, match="without an index"):
        dg.device("cuda:0", 1)
    if dg.cuda.is_available():
        assert dg.device("cuda", 0) is dg.device("gpu:0")
    else:
        with pytest.raises(dg.DeviceError, match="needs cupy"):
            dg.device("cuda", 0)
    assert dg.cuda.is_bf16_supported() is False  # no bfloat16 dtype: scripts then pick float16


def test_backends_flags_are_settable_and_checked():
    c = dg.backends.cudnn
    old = c.benchmark
    try:
        c.benchmark = True
        assert dg.backends.cudnn.benchmark is True
        with c.flags(enabled=False, deterministic=True):
            assert c.enabled is False and c.deterministic is True
        assert c.enabled is True and c.deterministic is False
    finally:
        c.benchmark = old
    dg.backends.cuda.matmul.allow_tf32 = True
    dg.backends.cuda.matmul.allow_tf32 = False
    with pytest.raises(AttributeError, match="benchmark"):
        c.benchmrk = True  # a typo would otherwise pass silently
    with pytest.raises(dg.InvalidValue):
        c.benchmark = "yes"
    assert c.is_available() is False and c.version() is None  # dualgraph never calls cuDNN
    assert dg.backends.mps.is_available() is False and dg.backends.mkldnn.is_available() is False
    dg.set_float32_matmul_precision("high")
    assert dg.get_float32_matmul_precision() == "high"
    dg.set_float32_matmul_precision("highest")
    with pytest.raises(dg.InvalidValue):
        dg.set_float32_matmul_precision("fast")


def test_use_deterministic_algorithms_flag():
    assert dg.are_deterministic_algorithms_enabled() is False
    try:
        dg.use_deterministic_algorithms(True, warn_only=True)
        assert dg.are_deterministic_algorithms_enabled() and dg.is_deterministic_algorithms_warn_only_enabled()
        # CPU scatter_add is numpy's add.at: deterministic, so it runs
        out = dg.scatter_add(dg.zeros(3), 0, dg.tensor([0, 0, 2]), dg.tensor([1.0, 2.0, 3.0]))
        np.testing.assert_array_equal(out.numpy(), [3.0, 0.0, 3.0])
    finally:
        dg.use_deterministic_algorithms(False)
    with pytest.raises(dg.InvalidValue):
        dg.use_deterministic_algorithms("yes")


@needs_gpu
def test_deterministic_algorithms_refuse_gpu_atomics():
    x = dg.zeros(3, device="cuda")
    try:
        dg.use_deterministic_algorithms(True)
        with pytest.raises(dg.DeviceError, match="atomic"):
            dg.scatter_add(x, 0, dg.tensor([0, 0, 2], device="cuda"), dg.ones(3, device="cuda"))
    finally:
        dg.use_deterministic_algorithms(False)


def test_set_default_dtype():
    assert dg.get_default_dtype() == dg.float32
    assert (dg.arange(3) * 0.5).dtype == dg.float32  # promotion results are cached: the change must reach them
    try:
        dg.set_default_dtype(dg.float64)
        assert dg.get_default_dtype() == dg.float64
        for t in (dg.tensor([1.5]), dg.zeros(2), dg.ones(2), dg.rand(2), dg.randn(2), dg.arange(3.0),
                  dg.full((2,), 1.5), dg.linspace(0, 1, 3), dg.arange(3) * 0.5, dg.arange(3) / 2):
            assert t.dtype == dg.float64, t
        assert dg.arange(3).dtype == dg.int64 and dg.tensor([1]).dtype == dg.int64
    finally:
        dg.set_default_dtype(dg.float32)
    assert dg.zeros(2).dtype == dg.float32 and dg.tensor([1.5]).dtype == dg.float32
    with pytest.raises(dg.DTypeError, match="set_default_dtype"):
        dg.set_default_dtype(dg.int64)


def test_set_default_dtype_matches_torch():
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        dg.set_default_dtype(dg.float64)
        for make in (lambda m: m.tensor([1.5, 2.0]), lambda m: m.arange(3) / 2, lambda m: m.zeros(2),
                     lambda m: m.tensor([1, 2]) * 0.5):
            assert str(make(torch).dtype).removeprefix("torch.") == str(make(dg).dtype)
    finally:
        torch.set_default_dtype(old)
        dg.set_default_dtype(dg.float32)


def test_to_accepts_torch_keywords_and_a_tensor():
    a = dg.tensor([1.0, 2.0])
    assert a.is_cpu and not a.is_cuda and a.get_device() == -1
    assert a.to("cpu", non_blocking=True) is a
    b = a.to("cpu", copy=True)
    assert b is not a and np.array_equal(b.numpy(), a.numpy())
    assert a.to(dg.tensor([1], dtype=dg.int32)).dtype == dg.int32


# ---- dg.compile ----------------------------------------------------------------------------------

def _mlp(seed=0):
    dg.manual_seed(seed)
    return dg.nn.Sequential(dg.nn.Linear(4, 8), dg.nn.ReLU(), dg.nn.Linear(8, 2))


def _np_mlp(net, x):
    w1, b1, w2, b2 = (p.detach().numpy() for p in net.parameters())
    return np.maximum(x @ w1.T + b1, 0) @ w2.T + b2


def test_compile_decorator_forms_on_functions():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 5

    def body(t):
        return dg.tanh(t * 2.0).sum(axis=1)

    expected = np.tanh(x * 2.0).sum(axis=1)
    for compiled in (dg.compile(body), dg.compile()(body), dg.compile(fullgraph=True)(body),
                     dg.compile(body, mode="max-autotune"), dg.compile(body, backend="eager"),
                     dg.compile(body, options={"disable": ("fuse",)})):
        np.testing.assert_allclose(compiled(dg.tensor(x)).numpy(), expected, rtol=1e-6)
        assert compiled.trace_count == 1
        compiled(dg.tensor(x))
        assert compiled.trace_count == 1  # the second call reuses the trace
    assert dg.compile(body, disable=True) is body

    @dg.compile
    def deco(t):
        return t * t

    np.testing.assert_allclose(deco(dg.tensor(x)).numpy(), x * x)
    # the eager backend traces but runs no optimization pass: the graph is the traced one
    eager = dg.compile(body, backend="eager")
    assert str(eager.graph(dg.tensor(x))) == str(eager.traced_graph(dg.tensor(x)))


def test_compile_on_a_method():
    class Scaler:
        def __init__(self, k):
            self.k = k

        @dg.compile
        def apply(self, t):
            return t * self.k

    a, b = Scaler(2.0), Scaler(3.0)
    np.testing.assert_allclose(a.apply(dg.ones(2)).numpy(), [2.0, 2.0])
    np.testing.assert_allclose(b.apply(dg.ones(2)).numpy(), [3.0, 3.0])


def test_compile_rejects_what_it_cannot_honour():
    f = lambda t: t  # noqa: E731
    with pytest.raises(dg.InvalidValue, match="mode"):
        dg.compile(f, mode="fastest")
    with pytest.raises(dg.InvalidValue, match="not both"):
        dg.compile(f, mode="default", options={})
    with pytest.raises(dg.InvalidValue, match="backend"):
        dg.compile(f, backend="tvm")
    with pytest.raises(dg.InvalidValue, match="custom backends"):
        dg.compile(f, backend=lambda gm, inputs: gm)
    with pytest.raises(dg.InvalidValue, match="triton.cudagraphs"):
        dg.compile(f, options={"triton.cudagraphs": True})
    with pytest.raises(dg.InvalidValue, match="dynamic"):
        dg.compile(f, dynamic="yes")
    with pytest.raises(dg.InvalidValue, match="function or an nn.Module"):
        dg.compile(3)


def test_compile_module_shares_parameters_and_prefixes_state_dict():
    net = _mlp()
    c = dg.compile(net)
    assert isinstance(c, dg.nn.Module) and c._orig_mod is net
    assert [id(p) for p in c.parameters()] == [id(p) for p in net.parameters()]
    # PyTorch's OptimizedModule holds the original as the child `_orig_mod`, hence the key prefix
    assert list(c.state_dict()) == ["_orig_mod." + k for k in net.state_dict()]
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(c(dg.tensor(x)).numpy(), _np_mlp(net, x), rtol=1e-5, atol=1e-6)
    # attributes the wrapper lacks are the original's
    assert c.__class__.__name__ == "OptimizedModule" and c._orig_mod[0] is net[0]
    assert c.training is True and c.eval() is c and net.training is False
    # the checkpoint idiom of compiled scripts: strip the prefix, load into a plain module
    plain = _mlp(seed=5)
    plain.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in c.state_dict().items()})
    np.testing.assert_allclose(plain(dg.tensor(x)).numpy(), _np_mlp(net, x), rtol=1e-5, atol=1e-6)


def test_training_through_a_compiled_module_matches_eager():
    ref, net = _mlp(), _mlp()
    c = dg.compile(net)
    opt_c, opt_r = dg.optim.SGD(c.parameters(), lr=0.1), dg.optim.SGD(ref.parameters(), lr=0.1)
    x, y = dg.randn(16, 4), dg.randint(0, 2, size=(16,))
    for _ in range(5):
        for model, opt in ((c, opt_c), (ref, opt_r)):
            opt.zero_grad()
            dg.cross_entropy(model(x), y).backward()
            opt.step()
    for p, q in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_compile_graph_break_runs_eagerly_unless_fullgraph():
    def f(t):
        if t.sum() > 0:  # needs the tensor's value: a graph break in PyTorch's terms
            return t * 2
        return -t

    c = dg.compile(f)
    np.testing.assert_array_equal(c(dg.ones(2)).numpy(), [2.0, 2.0])
    np.testing.assert_array_equal(c(-dg.ones(2)).numpy(), [1.0, 1.0])  # both branches right
    assert len(c.graph_breaks) == 1 and "ConcretizationError" in c.graph_breaks[0]
    strict = dg.compile(f, fullgraph=True)
    with pytest.raises(dg.ConcretizationError, match="dg.cond"):
        strict(dg.ones(2))
    # data-dependent shapes and .item() break the graph too
    masked = dg.compile(lambda t: t[t > 0].sum())
    assert float(masked(dg.tensor([1.0, -2.0, 3.0]))) == 4.0 and masked.graph_breaks
    with pytest.raises(dg.TraceError, match="depends on the input values"):
        dg.compile(lambda t: t[t > 0].sum(), fullgraph=True)(dg.tensor([1.0, -2.0, 3.0]))
    scaled = dg.compile(lambda t: t * t.item())
    assert float(scaled(dg.tensor(3.0))) == 9.0 and float(scaled(dg.tensor(4.0))) == 16.0
    # a function without breaks has none to report
    ok = dg.compile(lambda t: dg.where(t.sum() > 0, t * 2, -t), fullgraph=True)
    np.testing.assert_array_equal(ok(-dg.ones(2)).numpy(), [1.0, 1.0])


def test_compile_dynamic():
    def f(t):
        return (t * t).sum(axis=1)

    auto, dyn, static = dg.compile(f), dg.compile(f, dynamic=True), dg.compile(f, dynamic=False)
    for n in (3, 5, 7, 9):
        x = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
        for c in (auto, dyn, static):
            np.testing.assert_allclose(c(dg.tensor(x)).numpy(), (x * x).sum(axis=1))
    assert dyn.trace_count == 1      # symbolic from the first call
    assert auto.trace_count == 2     # one concrete trace, then one with the batch dim symbolic
    assert static.trace_count == 4   # one per shape
    assert "s0" in str(dyn.graph(dg.ones(3, 4)))

    def needs_sizes(t):
        return dg.ones(int(t.shape[0]) * 2) * t.sum()

    c = dg.compile(needs_sizes, dynamic=True)
    assert c(dg.ones(3, 2)).shape == (6,) and c(dg.ones(4, 2)).shape == (8,)
    assert "tracing per shape" in c.retrace_reason or c.trace_count == 2


# ---- dg.jit.trace --------------------------------------------------------------------------------

def test_jit_trace_function_and_module():
    net = _mlp()
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    t = dg.jit.trace(net, dg.tensor(x))
    assert isinstance(t, dg.nn.Module)
    np.testing.assert_allclose(t(dg.tensor(x)).numpy(), _np_mlp(net, x), rtol=1e-5, atol=1e-6)
    assert list(t.state_dict()) == list(net.state_dict())  # no prefix, unlike dg.compile
    assert [id(p) for p in t.parameters()] == [id(p) for p in net.parameters()]
    assert "matmul" in t.code and "matmul" in str(t.graph)
    import copy
    t2 = copy.deepcopy(t)
    np.testing.assert_allclose(t2(dg.tensor(x)).numpy(), _np_mlp(net, x), rtol=1e-5, atol=1e-6)
    assert [id(p) for p in t2.parameters()] != [id(p) for p in net.parameters()]
    c2 = copy.deepcopy(dg.compile(net))
    np.testing.assert_allclose(c2(dg.tensor(x)).numpy(), _np_mlp(net, x), rtol=1e-5, atol=1e-6)
    assert c2._orig_mod is not net and hasattr(c2, "nonexistent") is False
    before_t, before_c = t2(dg.tensor(x)).numpy(), c2(dg.tensor(x)).numpy()
    with dg.no_grad():
        net[0].weight.mul_(0.0)  # the copies own their parameters
    np.testing.assert_array_equal(t2(dg.tensor(x)).numpy(), before_t)
    np.testing.assert_array_equal(c2(dg.tensor(x)).numpy(), before_c)

    def f(a, b):
        return a @ b + 1.0

    tf = dg.jit.trace(f, (dg.ones(2, 3), dg.ones(3, 2)))
    np.testing.assert_allclose(tf(dg.ones(2, 3), dg.ones(3, 2)).numpy(), np.full((2, 2), 4.0))
    assert "matmul" in tf.code
    with pytest.raises(dg.InvalidValue, match="example_inputs"):
        dg.jit.trace(f)
    assert dg.jit.is_scripting() is False and dg.jit.is_tracing() is False
    seen = []
    dg.jit.trace(lambda a: seen.append(dg.jit.is_tracing()) or a * 2, dg.ones(1), check_trace=False)
    assert seen == [True]


def _cf(t):
    if t.sum() > 0:
        return t
    return -t


def test_jit_trace_trap_control_flow_is_an_error():
    with pytest.raises(dg.ConcretizationError, match="dg.cond"):
        dg.jit.trace(_cf, dg.ones(2))


def test_jit_trace_trap_control_flow_torch_freezes_it():
    torch = pytest.importorskip("torch")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_cf, torch.ones(2))
    assert traced(-torch.ones(2)).tolist() == [-1.0, -1.0]  # torch: the frozen branch; the right answer is 1


SCALE = 2.0


def _scaled(t):
    return t * SCALE


def test_jit_trace_trap_global_value():
    global SCALE
    SCALE = 2.0
    t = dg.jit.trace(_scaled, dg.ones(2))
    try:
        SCALE = 3.0
        np.testing.assert_array_equal(t(dg.ones(2)).numpy(), [3.0, 3.0])  # retraced on the changed global
        assert "SCALE" in t.retrace_reason
        torch = pytest.importorskip("torch")
        SCALE = 2.0
        traced = torch.jit.trace(_scaled, torch.ones(2))
        SCALE = 3.0
        assert traced(torch.ones(2)).tolist() == [2.0, 2.0]  # torch keeps the baked 2.0
    finally:
        SCALE = 2.0


def _mean_rows(t):
    n = int(t.shape[0])  # a shape read as a Python number
    return t.sum(axis=0) / n


def test_jit_trace_trap_shape_as_number():
    t = dg.jit.trace(_mean_rows, dg.ones(2, 3))
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(t(dg.tensor(x)).numpy(), x.mean(axis=0))  # a new shape retraces
    torch = pytest.importorskip("torch")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_mean_rows, torch.ones(2, 3))
    assert not np.allclose(traced(torch.tensor(x)).numpy(), x.mean(axis=0))  # torch divides by the baked 2


def test_jit_trace_trap_train_mode_is_not_frozen():
    dg.manual_seed(0)
    net = dg.nn.Sequential(dg.nn.Dropout(0.5))
    with pytest.warns(dg.jit.TracerWarning, match="not deterministic"):
        t = dg.jit.trace(net, dg.ones(1000))  # dropout draws differ between the traced and Python runs
    assert (t(dg.ones(1000)).numpy() == 0).any()
    t.eval()
    assert net.training is False
    np.testing.assert_array_equal(t(dg.ones(1000)).numpy(), np.ones(1000))  # eval() retraced: no dropout
    torch = pytest.importorskip("torch")
    tn = torch.jit.trace(torch.nn.Sequential(torch.nn.Dropout(0.5)), torch.ones(1000), check_trace=False)
    tn.eval()
    assert (tn(torch.ones(1000)) == 0).any()  # torch: dropout stays in the trace after eval()


def test_jit_trace_check_inputs_pass_quietly():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = dg.jit.trace(lambda a: a * 2 + 1, dg.ones(3), check_inputs=[(dg.ones(5),), dg.zeros(2)])
    np.testing.assert_array_equal(t(dg.zeros(2)).numpy(), [1.0, 1.0])


# ---- dg.inference_mode ---------------------------------------------------------------------------

def test_inference_mode_context_and_decorators():
    w = dg.tensor([1.0, 2.0], requires_grad=True)
    with dg.inference_mode():
        assert dg.is_grad_enabled() is False and dg.is_inference_mode_enabled() is True
        made = [w * 2, dg.exp(w), dg.zeros(2), dg.tensor([1.0]), w.sum(), w[0], dg.ones_like(w)]
        with dg.inference_mode(False):  # PyTorch: mode=False turns inference off and grad mode on
            assert dg.is_grad_enabled() is True and dg.is_inference_mode_enabled() is False
            inner = w * 2
            assert inner.requires_grad and not inner.is_inference()
        assert dg.is_grad_enabled() is False
    assert dg.is_grad_enabled() is True and dg.is_inference_mode_enabled() is False
    for t in made:
        assert t.is_inference() and not t.requires_grad, t
    after = w * 2
    assert not after.is_inference() and after.requires_grad and not w.is_inference()
    np.testing.assert_array_equal(made[0].numpy(), [2.0, 4.0])

    @dg.inference_mode
    def bare(x):
        return x * 3

    @dg.inference_mode()
    def called(x):
        return x * 3

    @dg.inference_mode(False)
    def off(x):
        return x * 3

    assert bare(w).is_inference() and not bare(w).requires_grad
    assert called(w).is_inference() and not called(w).requires_grad
    with dg.no_grad():
        assert off(w).requires_grad and not off(w).is_inference()


def test_inference_mode_matches_torch():
    torch = pytest.importorskip("torch")
    for m, dev in ((torch, None), (dg, None)):
        w = m.ones(2, requires_grad=True)
        with m.inference_mode():
            y = w * 2
            with m.no_grad():
                with m.inference_mode(False):
                    grad_inside = m.is_grad_enabled()
        assert (y.is_inference(), y.requires_grad, grad_inside, m.is_grad_enabled()) == (True, False, True, True)


def test_inference_mode_restores_after_an_exception_and_per_thread():
    import threading
    with pytest.raises(ValueError):
        with dg.inference_mode():
            raise ValueError
    assert dg.is_grad_enabled() and not dg.is_inference_mode_enabled() and not dg.ones(1).is_inference()
    seen = []
    inside, release = threading.Event(), threading.Event()

    def other():
        inside.wait()
        seen.append((dg.ones(1).is_inference(), dg.is_grad_enabled()))
        release.set()

    th = threading.Thread(target=other)
    th.start()
    with dg.inference_mode():
        inside.set()
        release.wait()
    th.join()
    assert seen == [(False, True)]  # another thread's tensors are not marked


# ---- dg.save / dg.load under PyTorch's names ---------------------------------------------------

@pytest.mark.parametrize("name", ["model.pt", "model.pth", "weights.bin", "ckpt"])
def test_save_load_state_dict_under_any_name(tmp_path, name):
    net = _mlp()
    dg.save(net.state_dict(), tmp_path / name)
    sd = dg.load(str(tmp_path / name), map_location="cpu", weights_only=True)
    fresh = _mlp(seed=7)
    fresh.load_state_dict(sd)
    for p, q in zip(net.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_save_load_file_objects(tmp_path):
    net = _mlp()
    buf = io.BytesIO()
    dg.save({"model": net.state_dict(), "epoch": 3}, buf)
    buf.seek(0)
    ck = dg.load(buf)
    assert ck["epoch"] == 3 and list(ck["model"]) == list(net.state_dict())
    with open(tmp_path / "m.pt", "wb") as f:
        dg.save(net.state_dict(), f)
    with open(tmp_path / "m.pt", "rb") as f:
        sd = dg.load(f, weights_only=False)
    np.testing.assert_array_equal(sd["0.weight"].numpy(), net[0].weight.detach().numpy())
    same = io.BytesIO()
    dg.save(net.state_dict(), same)
    assert (tmp_path / "m.pt").read_bytes() == same.getvalue()  # one format whatever is written to
    dg.save(net.state_dict(), tmp_path / "p.pt")
    assert (tmp_path / "p.pt").read_bytes() == same.getvalue()
    with pytest.raises(TypeError, match="binary mode"):
        with open(tmp_path / "m.pt", "r", encoding="latin-1") as f:
            dg.load(f)
    with pytest.raises(TypeError, match="path or a binary file"):
        dg.save({}, 3)
    with pytest.raises(TypeError, match="weights_only"):
        dg.load(tmp_path / "m.pt", weights_only="yes")


def test_load_map_location_forms(tmp_path):
    t = dg.tensor([1.0, 2.0])
    dg.save({"t": t}, tmp_path / "t.pt")
    for loc in (None, "cpu", dg.device("cpu"), {"cpu": "cpu"}, {"cuda:0": "cpu"}, lambda storage, loc: storage):
        out = dg.load(tmp_path / "t.pt", map_location=loc)["t"]
        assert out.device == dg.device("cpu")
        np.testing.assert_array_equal(out.numpy(), [1.0, 2.0])
    seen = []
    dg.load(tmp_path / "t.pt", map_location=lambda s, loc: seen.append(loc) or s)
    assert seen == ["cpu"]
    with pytest.raises(dg.CheckpointError, match="must return"):
        dg.load(tmp_path / "t.pt", map_location=lambda s, loc: None)
    if not dg.cuda.is_available():
        with pytest.raises(dg.DeviceError):
            dg.load(tmp_path / "t.pt", map_location="cuda:0")


def test_a_torch_checkpoint_in_a_file_object_is_refused_without_unpickling(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle ran')",))

    buf = io.BytesIO(pickle.dumps(Boom()))
    with pytest.raises(dg.serialization.UnsafeCheckpointError, match="pickle"):
        dg.load(buf, weights_only=False)
    torch = pytest.importorskip("torch")
    tbuf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, tbuf)
    tbuf.seek(0)
    with pytest.raises(dg.serialization.UnsafeCheckpointError, match="zip"):
        dg.load(tbuf)


# ---- dg.amp.GradScaler ---------------------------------------------------------------------------

@no_gpu
def test_grad_scaler_for_the_gpu_disables_itself_without_one():
    with pytest.warns(UserWarning, match="Disabling"):
        s = dg.cuda.amp.GradScaler()
    assert not s.is_enabled() and s.get_scale() == 1.0 and s.state_dict() == {}
    p = dg.nn.Parameter(dg.ones(2))
    opt = dg.optim.SGD([p], lr=0.1)
    loss = (p * 3).sum()
    assert s.scale(loss) is loss
    loss.backward()
    s.step(opt)
    s.update()
    np.testing.assert_allclose(p.detach().numpy(), [0.7, 0.7])
    assert not dg.amp.GradScaler(enabled=False).is_enabled()


def _scaler_run(m, make_param, make_opt, scaler, grads_scale):
    """Three steps: clean, overflowing (skipped), clean; returns the params and scales seen."""
    p = make_param()
    opt = make_opt(p)
    seen = []
    for k in (1.0, float("inf"), 2.0):
        opt.zero_grad()
        loss = (p * m.tensor([k, 1.0])).sum()
        scaled = scaler.scale(loss)
        seen.append(float(scaled.item()))
        scaled.backward()
        grads_scale.append(p.grad.detach().numpy().copy() if hasattr(p.grad, "detach") else None)
        scaler.step(opt)
        scaler.update()
        seen.append(scaler.get_scale())
    return p.detach().numpy(), seen


def test_grad_scaler_on_the_cpu_by_hand():
    s = dg.amp.GradScaler("cpu", init_scale=4.0, growth_interval=2)
    grads = []
    p, seen = _scaler_run(dg, lambda: dg.nn.Parameter(dg.ones(2)), lambda p: dg.optim.SGD([p], lr=0.1), s, grads)
    # step 1: loss 2 scaled by 4; grads unscaled to (1, 1); one clean step: scale stays 4
    # step 2: an inf gradient: the step is skipped and the scale backs off to 2
    # step 3: clean (tracker 1 of 2): scale stays 2; grads (2, 1)
    assert seen[0] == 8.0 and seen[1] == 4.0 and seen[3] == 2.0 and seen[5] == 2.0
    np.testing.assert_allclose(p, [1.0 - 0.1 - 0.2, 1.0 - 0.1 - 0.1], rtol=1e-6)
    assert s.state_dict() == {"scale": 2.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2,
                              "_growth_tracker": 1}
    with pytest.raises(RuntimeError, match="No inf checks"):
        s.update()
    opt = dg.optim.SGD([dg.nn.Parameter(dg.ones(1))], lr=0.1)
    s.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    t = dg.amp.GradScaler("cpu")
    t.load_state_dict(s.state_dict())
    assert t.get_scale() == 2.0
    with pytest.raises(RuntimeError, match="empty"):
        t.load_state_dict({})


def test_grad_scaler_matches_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = [], []
    a = _scaler_run(dg, lambda: dg.nn.Parameter(dg.ones(2)), lambda p: dg.optim.SGD([p], lr=0.1),
                    dg.amp.GradScaler("cpu", init_scale=4.0, growth_interval=2), ours)
    b = _scaler_run(torch, lambda: torch.nn.Parameter(torch.ones(2)), lambda p: torch.optim.SGD([p], lr=0.1),
                    torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=2), theirs)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    assert a[1] == b[1]
