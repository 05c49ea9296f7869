"""A character-level LSTM language-model training step: dualgraph eager and compiled beside PyTorch eager,
torch.compile (with --torch-compile) and jax.jit (when jax imports) in one process, with ratios to PyTorch
eager, first-call times and peak memory:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_lstm.py [--layers=N]
        [--rounds=N] [--threads=N] [--torch-compile] [--no-jax] [--device=gpu] [--no-memory]

Embedding 65x128, an LSTM of hidden 256 (1 or 2 layers), batch 32, 64 time steps, linear head to 65 classes,
cross-entropy, AdamW (lr 1e-3, weight decay 0.01); every runner starts from one state_dict. The jax runner is
the step as a JAX user writes it: a pure loss over the same dict of parameters, the input projection of all
time steps as one matmul and the recurrence as jax.lax.scan over an LSTM cell (PyTorch's gate order i, f, g,
o), jax.value_and_grad, AdamW by hand as PyTorch defines it, the whole step under one jax.jit. Before timing,
the losses of the first 3 steps of every runner are printed and checked against PyTorch eager's; the script
fails if they diverge. --device=gpu runs each runner on its GPU (DUALGRAPH_EMULATE_GPU=1 without one: the
dualgraph runners on the numpy-backed emulation, to check the script, not speed). The options, the thread
limits (--threads also limits jax's CPU pool, through PJRT_NPROC) and the memory columns are described in
benchmarks/_peers.py.

Run time on the 2-core VM, measured under load from other jobs: 125 s in full (5 rounds, jax.jit, memory);
--torch-compile adds its first call twice (timing run, then the memory subprocess with inductor's cache warm):
40 s with a cold cache (an empty TORCHINDUCTOR_CACHE_DIR), 26 s warm.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # _peers.py, however this file is started
import _peers  # noqa: E402

_peers.setup()
import numpy as np  # noqa: E402

LAYERS = int(_peers.ARGS.get("--layers", 1))
VOCAB, EMB, HIDDEN, BATCH, T = 65, 128, 256, 32, 64


def data():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, VOCAB, (BATCH, T)).astype(np.int64)
    tgt = rng.integers(0, VOCAB, (BATCH, T)).astype(np.int64)
    return idx, tgt


def initial_state():
    """The state_dict (PyTorch's names) every runner starts from."""
    shapes = {"emb.weight": (VOCAB, EMB), "head.weight": (VOCAB, HIDDEN), "head.bias": (VOCAB,)}
    for k in range(LAYERS):
        shapes.update({f"rnn.weight_ih_l{k}": (4 * HIDDEN, EMB if k == 0 else HIDDEN),
                       f"rnn.weight_hh_l{k}": (4 * HIDDEN, HIDDEN),
                       f"rnn.bias_ih_l{k}": (4 * HIDDEN,), f"rnn.bias_hh_l{k}": (4 * HIDDEN,)})
    rng = np.random.default_rng(1)
    return {k: rng.standard_normal(s).astype(np.float32) * 0.08 for k, s in shapes.items()}


def build(nn):
    class CharLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, EMB)
            self.rnn = nn.LSTM(EMB, HIDDEN, num_layers=LAYERS, batch_first=True)
            self.head = nn.Linear(HIDDEN, VOCAB)

        def forward(self, idx):
            y, _ = self.rnn(self.emb(idx))
            return self.head(y)
    return CharLSTM()


def dg_runner(compiled):
    dev = _peers.dg_device()
    import dualgraph as dg
    model = build(dg.nn)
    model.load_state_dict({k: dg.tensor(v) for k, v in initial_state().items()})
    model.to(dev)
    opt = dg.optim.AdamW(model.parameters(), lr=1e-3)
    it, tt = (dg.tensor(a, device=dev) for a in data())

    def step(i, t):
        loss = dg.nn.functional.cross_entropy(model(i).reshape(-1, VOCAB), t.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = dg.function(step) if compiled else step

    def run():
        loss = fn(it, tt)
        _peers.dg_sync()
        return loss.item()
    return run


def torch_runner(compiled):
    torch, dev = _peers.torch_module()
    model = build(torch.nn)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in initial_state().items()})
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    it, tt = (torch.from_numpy(a).to(dev) for a in data())

    def step(i, t):
        loss = torch.nn.functional.cross_entropy(model(i).reshape(-1, VOCAB), t.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = torch.compile(step) if compiled else step

    def run():
        loss = fn(it, tt)
        _peers.torch_sync(torch)
        return loss.item()
    return run


def jax_runner():
    _peers.jax_device()
    import jax
    import jax.numpy as jnp

    def lstm_layer(p, k, x):
        xw = x @ p[f"rnn.weight_ih_l{k}"].T + p[f"rnn.bias_ih_l{k}"] + p[f"rnn.bias_hh_l{k}"]
        w_hh = p[f"rnn.weight_hh_l{k}"].T

        def cell(carry, xw_t):
            h, c = carry
            i, f, g, o = jnp.split(xw_t + h @ w_hh, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], HIDDEN), x.dtype)
        _, hs = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(xw, 0, 1))
        return jnp.swapaxes(hs, 0, 1)

    def loss_fn(p, idx, tgt):
        x = p["emb.weight"][idx]
        for k in range(LAYERS):
            x = lstm_layer(p, k, x)
        logp = jax.nn.log_softmax(x @ p["head.weight"].T + p["head.bias"])
        return -jnp.take_along_axis(logp, tgt[..., None], axis=-1).mean()

    idx, tgt = data()
    return _peers.jax_runner(loss_fn, initial_state(), idx.astype(np.int32), tgt.astype(np.int32))


RUNNERS = {"dg eager": lambda: dg_runner(False), "dg compiled": lambda: dg_runner(True),
           "torch eager": lambda: torch_runner(False), "torch.compile": lambda: torch_runner(True),
           "jax.jit": jax_runner}

if __name__ == "__main__":
    _peers.main(__file__, f"LSTM LM training step (emb {VOCAB}x{EMB}, {LAYERS}-layer LSTM hidden {HIDDEN}, "
                f"batch {BATCH}, T {T}, AdamW)", RUNNERS, default_rounds=5)
