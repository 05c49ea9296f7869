"""Two GPUs (real, or DUALGRAPH_EMULATE_GPU=2): moves between them, the device mismatch error, and a
training step on the second GPU made current with dg.cuda.set_device (one process per GPU, as DDP)."""
import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn as nn
from dualgraph.errors import DeviceError

pytestmark = pytest.mark.skipif(dg.cuda.device_count() < 2, reason="needs two GPUs (or DUALGRAPH_EMULATE_GPU=2)")


@pytest.fixture
def on_gpu1():
    prev = dg.cuda.current_device()
    dg.cuda.set_device(1)
    yield
    dg.cuda.set_device(prev)


def test_moves_between_gpus_and_mismatch_error():
    a = dg.tensor(np.arange(4.0), device="gpu:0")
    b = a.to("cuda:1")
    assert b.device == dg.device("gpu:1") and b._data.device.id == 1
    np.testing.assert_array_equal(b.to("gpu:0").numpy(), np.arange(4.0))
    with pytest.raises(DeviceError, match="gpu:0 and gpu:1|gpu:1 and gpu:0"):
        a + b


def test_training_step_on_the_second_gpu(on_gpu1):
    dg.manual_seed(0)
    cpu = nn.Linear(4, 3)
    gpu = nn.Linear(4, 3).to("gpu:1")
    gpu.load_state_dict({k: v.to("gpu:1") for k, v in cpu.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    for m, dev in ((cpu, "cpu"), (gpu, "gpu:1")):
        opt = dg.optim.SGD(m.parameters(), lr=0.1)
        step = dg.function(lambda t: (opt.zero_grad(), (m(t) ** 2).mean().backward(), opt.step()))
        for _ in range(2):
            step(dg.tensor(x, device=dev))
    assert gpu.weight.device == dg.device("gpu:1") and gpu.weight._data.device.id == 1
    np.testing.assert_allclose(gpu.weight.numpy(), cpu.weight.numpy(), rtol=1e-5, atol=1e-6)
