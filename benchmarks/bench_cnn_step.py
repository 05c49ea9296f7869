"""The small CNN training step (a model the kernels were not tuned for): dualgraph eager and compiled beside
PyTorch eager, torch.compile (with --torch-compile) and jax.jit (when jax imports) in one process, with
ratios to PyTorch eager, first-call times and peak memory:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_cnn_step.py [--batch=N]
        [--rounds=N] [--threads=N] [--torch-compile] [--no-jax] [--device=gpu] [--no-memory]

conv 1->32 3x3, relu, conv 32->64 3x3, relu, max_pool 2, flatten, linear 9216->10; 28x28 inputs, batch 64,
cross-entropy, AdamW (lr 1e-3, weight decay 0.01), the same initial weights and batch for every runner. The
jax runner is the step as a JAX user writes it: a pure loss over a dict of parameters with
lax.conv_general_dilated (NCHW/OIHW, as PyTorch lays them out) and lax.reduce_window, jax.value_and_grad,
AdamW by hand as PyTorch defines it, the whole step under one jax.jit. Before timing, the losses of the first
3 steps of every runner are printed and checked against PyTorch eager's; the script fails if they diverge.
The options, the thread limits (--threads also limits jax's CPU pool, through PJRT_NPROC) and the memory
columns are described in benchmarks/_peers.py.

Run time on the 2-core VM, measured under load from other jobs: 65 s in full (5 rounds, jax.jit, memory);
--torch-compile adds its first call twice (timing run, then the memory subprocess with inductor's cache warm):
61 s with a cold cache (an empty TORCHINDUCTOR_CACHE_DIR), 7 s warm.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # _peers.py, however this file is started
import _peers  # noqa: E402

_peers.setup()
import numpy as np  # noqa: E402

BATCH = int(_peers.ARGS.get("--batch", 64))


def data():
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) * 0.05
              for s in ((32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (10, 9216), (10,))]
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    return params, x, y


def dg_runner(compiled):
    dev = _peers.dg_device()
    import dualgraph as dg
    import dualgraph.nn.functional as F
    params, x, y = data()
    ps = [dg.tensor(p, requires_grad=True, device=dev) for p in params]
    opt = dg.optim.AdamW(ps, lr=1e-3)
    xt, yt = dg.tensor(x, device=dev), dg.tensor(y, device=dev)

    def step(xb, yb):
        w1, b1, w2, b2, w3, b3 = ps
        h = F.relu(F.conv2d(xb, w1, b1))
        h = F.relu(F.conv2d(h, w2, b2))
        h = F.max_pool2d(h, 2).reshape(xb.shape[0], -1)
        loss = F.cross_entropy(F.linear(h, w3, b3), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = dg.function(step) if compiled else step

    def run():
        loss = fn(xt, yt)
        _peers.dg_sync()
        return float(loss.item())
    return run


def torch_runner(compiled):
    torch, dev = _peers.torch_module()
    F = torch.nn.functional
    params, x, y = data()
    ps = [torch.tensor(p, requires_grad=True, device=dev) for p in params]
    opt = torch.optim.AdamW(ps, lr=1e-3)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)

    def step(xb, yb):
        w1, b1, w2, b2, w3, b3 = ps
        h = torch.relu(F.conv2d(xb, w1, b1))
        h = torch.relu(F.conv2d(h, w2, b2))
        h = F.max_pool2d(h, 2).reshape(xb.shape[0], -1)
        loss = F.cross_entropy(F.linear(h, w3, b3), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = torch.compile(step) if compiled else step

    def run():
        loss = fn(xt, yt)
        _peers.torch_sync(torch)
        return loss.item()
    return run


def jax_runner():
    _peers.jax_device()
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, w, b):
        y = lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def loss_fn(p, x, y):
        h = jax.nn.relu(conv(x, p["w1"], p["b1"]))
        h = jax.nn.relu(conv(h, p["w2"], p["b2"]))
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID").reshape(x.shape[0], -1)
        logp = jax.nn.log_softmax(h @ p["w3"].T + p["b3"])
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    params, x, y = data()
    return _peers.jax_runner(loss_fn, dict(zip(("w1", "b1", "w2", "b2", "w3", "b3"), params)), x, y.astype(np.int32))


RUNNERS = {"dg eager": lambda: dg_runner(False), "dg compiled": lambda: dg_runner(True),
           "torch eager": lambda: torch_runner(False), "torch.compile": lambda: torch_runner(True),
           "jax.jit": jax_runner}

if __name__ == "__main__":
    _peers.main(__file__, f"CNN training step (batch {BATCH}, 28x28, AdamW)", RUNNERS, default_rounds=5)
