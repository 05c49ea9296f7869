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
    assert dg.accelerator.current_accelerator().type == "gpu"
    assert dg.cuda.current_device() == 0 and isinstance(dg.cuda.get_device_name(), str)
    dg.cuda.synchronize()
    assert dg.cuda.memory_allocated() > 0
    dg.cuda.manual_seed_all(3)
    a = dg.rand(4, device="cuda").numpy()
    dg.cuda.manual_seed_all(3)
    np.testing.assert_array_equal(a, dg.rand(4, device="cuda").numpy())


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
    assert a.to("cpu", non_blocking=True) is a
    b = a.to("cpu", copy=True)
    assert b is not a and np.array_equal(b.numpy(), a.numpy())
    assert a.to(dg.tensor([1], dtype=dg.int32)).dtype == dg.int32
