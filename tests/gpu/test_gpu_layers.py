"""Layers and optimizers on the GPU, each step compared with the same model on the CPU: forward, backward
and an optimizer update, in eager mode and compiled."""
import copy

import numpy as np
import pytest

import dualgraph as dg
import dualgraph.nn as nn
from dualgraph import backend

LAYERS = {
    "conv_bn_pool": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                           nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                     lambda rng: rng.standard_normal((3, 2, 8, 8))),
    "conv1d_bn1d": (lambda: nn.Sequential(nn.Conv1d(3, 5, 3), nn.BatchNorm1d(5), nn.GELU()),
                    lambda rng: rng.standard_normal((2, 3, 9))),
    "embedding_ln": (lambda: nn.Sequential(nn.Embedding(11, 6), nn.LayerNorm(6), nn.SiLU(), nn.Linear(6, 2)),
                     lambda rng: rng.integers(0, 11, (4, 5))),
    "lstm": (lambda: nn.LSTM(4, 6, num_layers=2, batch_first=True), lambda rng: rng.standard_normal((3, 5, 4))),
    "gru": (lambda: nn.GRU(4, 6, bidirectional=True), lambda rng: rng.standard_normal((5, 3, 4))),
    "rnn_cell": (lambda: nn.RNNCell(4, 3), lambda rng: rng.standard_normal((2, 4))),
    "attention": (lambda: nn.MultiheadAttention(8, 2, batch_first=True), lambda rng: rng.standard_normal((2, 5, 8))),
    "activations": (lambda: nn.Sequential(nn.Linear(5, 5), nn.ELU(), nn.LeakyReLU(0.1), nn.Softplus(), nn.Hardtanh(),
                                          nn.ReLU6(), nn.Tanh(), nn.Sigmoid(), nn.LogSoftmax(dim=-1)),
                    lambda rng: rng.standard_normal((4, 5)) * 3),
}


def _outputs(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _outputs(o)]
    return [out] if isinstance(out, dg.Tensor) else []


def _run(make, x_np, device, compiled, opt_name):
    dg.manual_seed(0)
    model = make()
    model_dev = copy.deepcopy(model).to(device)
    x = dg.tensor(x_np.astype(np.float32) if x_np.dtype.kind == "f" else x_np, device=device)
    opt = getattr(dg.optim, opt_name)(model_dev.parameters(), lr=0.01)

    def step(xb):
        opt.zero_grad()
        outs = _outputs(model_dev(xb) if not isinstance(model_dev, nn.MultiheadAttention)
                        else model_dev(xb, xb, xb))
        loss = sum((o * o).mean() for o in outs if o.dtype.kind == "f")
        loss.backward()
        opt.step()
        return loss
    if compiled:
        step = dg.function(step)
    losses = [float(step(x).item()) for _ in range(2)]
    return losses, model_dev


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_steps_match_cpu(name, compiled):
    make, data = LAYERS[name]
    x = data(np.random.default_rng(3))
    # adaptive optimizers only where no parameter's gradient is zero in exact arithmetic (a bias before
    # BatchNorm, attention's key bias): they would scale rounding noise up to a full step
    opt = {"lstm": "Adam", "gru": "RMSprop", "embedding_ln": "AdamW", "activations": "Adagrad"}.get(name, "SGD")
    lc, mc = _run(make, x, "cpu", compiled, opt)
    lg, mg = _run(make, x, "gpu", compiled, opt)
    np.testing.assert_allclose(lg, lc, rtol=1e-4, atol=1e-5)
    for (k, a), (_, b) in zip(mg.state_dict().items(), mc.state_dict().items()):
        assert a.device == dg.device("gpu") and isinstance(a._data, backend._cupy.ndarray), k
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


def test_grad_clipping_and_schedulers_on_the_gpu():
    model = nn.Linear(4, 3).to("gpu")
    opt = dg.optim.SGD(model.parameters(), lr=0.5)
    sched = dg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    (model(dg.randn(8, 4, device="gpu")) ** 2).sum().backward()
    total = nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    assert total.device == dg.device("gpu")
    norm = float(np.sqrt(sum((p.grad.numpy() ** 2).sum() for p in model.parameters())))
    assert abs(norm - 0.1) < 1e-5
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.25
    vec = nn.utils.parameters_to_vector(model.parameters())
    assert vec.device == dg.device("gpu") and vec.shape == (15,)
