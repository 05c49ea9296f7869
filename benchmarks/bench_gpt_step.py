"""The decoder-LM training step: dualgraph eager and compiled beside PyTorch eager, torch.compile (with
--torch-compile) and jax.jit (when jax imports) in one process, with ratios to PyTorch eager, first-call times
and peak memory:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_gpt_step.py [--rounds=N]
        [--threads=N] [--torch-compile] [--no-jax] [--device=gpu] [--no-memory]

Model (as users write it, with nn modules and F.scaled_dot_product_attention(is_causal=True); one definition
for dualgraph and PyTorch): token embedding 65x128 plus a learned position embedding, 2 pre-LN blocks
(LayerNorm, 4-head causal attention, LayerNorm, exact-GELU MLP 128->512->128, residuals), final LayerNorm,
linear head 128->65; batch 8, T 64, cross-entropy, AdamW (lr 1e-3, weight decay 0.01). Every runner starts
from one state_dict drawn as PyTorch initializes these layers. The jax runner is the step as a JAX user writes
it: a pure loss over the same dict of parameters (jax.nn.dot_product_attention(is_causal=True),
jax.nn.gelu(approximate=False), layer norm written out), jax.value_and_grad, AdamW by hand as PyTorch defines
it, the whole step under one jax.jit. Before timing, the losses of the first 3 steps of every runner are
printed and checked against PyTorch eager's; the script fails if they diverge.

--device=gpu runs dualgraph on "gpu", PyTorch on cuda and jax on its GPU backend, each step waiting for its
device; a runner whose device is absent is left out with the reason (on a machine without a GPU,
DUALGRAPH_EMULATE_GPU=1 runs the dualgraph runners on the numpy-backed emulation, which checks that the
script works, not speed). The options, the thread limits (--threads also limits jax's CPU pool, through
PJRT_NPROC) and the memory columns are described in benchmarks/_peers.py.

Run time on the 2-core VM, measured under load from other jobs: 85 s in full (--threads=1, 20 rounds, jax.jit,
memory); --torch-compile adds its first call twice (timing run, then the memory subprocess with inductor's
cache warm): 152 s with a cold cache (an empty TORCHINDUCTOR_CACHE_DIR), 8 s warm (4.6 s on a quiet machine).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # _peers.py, however this file is started
import _peers  # noqa: E402

_peers.setup()
import numpy as np  # noqa: E402

VOCAB, D, HEADS, LAYERS, BATCH, T = 65, 128, 4, 2, 8, 64


def data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (BATCH, T)).astype(np.int64)
    y = rng.integers(0, VOCAB, (BATCH, T)).astype(np.int64)
    return x, y


def initial_state():
    """The state_dict every runner starts from, drawn as PyTorch initializes these layers: embeddings N(0, 1),
    linear weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)), layer norms 1 and 0."""
    rng = np.random.default_rng(1)
    state = {"tok.weight": rng.standard_normal((VOCAB, D)), "pos.weight": rng.standard_normal((T, D))}

    def linear(name, n_out, n_in):
        bound = n_in ** -0.5
        state[name + ".weight"] = rng.uniform(-bound, bound, (n_out, n_in))
        state[name + ".bias"] = rng.uniform(-bound, bound, n_out)

    def norm(name):
        state[name + ".weight"], state[name + ".bias"] = np.ones(D), np.zeros(D)

    for i in range(LAYERS):
        norm(f"blocks.{i}.ln1")
        norm(f"blocks.{i}.ln2")
        linear(f"blocks.{i}.qkv", 3 * D, D)
        linear(f"blocks.{i}.proj", D, D)
        linear(f"blocks.{i}.fc", 4 * D, D)
        linear(f"blocks.{i}.out", D, 4 * D)
    norm("ln")
    linear("head", VOCAB, D)
    return {k: v.astype(np.float32) for k, v in state.items()}


def gpt(nn, F, arange):
    """The model as users write it, with the nn modules of dualgraph or PyTorch (the same names)."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
            self.fc, self.out = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
            q = q.reshape(b, t, HEADS, c // HEADS).transpose(1, 2)
            k = k.reshape(b, t, HEADS, c // HEADS).transpose(1, 2)
            v = v.reshape(b, t, HEADS, c // HEADS).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, c))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(T, D)
            self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln, self.head = nn.LayerNorm(D), nn.Linear(D, VOCAB)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(arange(idx.shape[1], device=idx.device))
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.ln(x))

    return GPT()


def dg_runner(compiled):
    dev = _peers.dg_device()
    import dualgraph as dg
    import dualgraph.nn.functional as F
    model = gpt(dg.nn, F, dg.arange)
    model.load_state_dict({k: dg.tensor(v) for k, v in initial_state().items()})
    model.to(dev)
    opt = dg.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = (dg.tensor(a, device=dev) for a in data())

    def step(xb, yb):
        logits = model(xb)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), yb.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = dg.function(step) if compiled else step

    def run():
        loss = fn(x, y)
        _peers.dg_sync()
        return loss.item()
    return run


def torch_runner(compiled):
    torch, dev = _peers.torch_module()
    F = torch.nn.functional
    model = gpt(torch.nn, F, torch.arange)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in initial_state().items()})
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(a).to(dev) for a in data())

    def step(xb, yb):
        logits = model(xb)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), yb.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = torch.compile(step) if compiled else step

    def run():
        loss = fn(x, y)
        _peers.torch_sync(torch)
        return loss.item()
    return run


def jax_runner():
    _peers.jax_device()
    import jax
    import jax.numpy as jnp

    def linear(p, name, x):
        return x @ p[name + ".weight"].T + p[name + ".bias"]

    def layer_norm(p, name, x):
        mu = x.mean(-1, keepdims=True)
        var = jnp.square(x - mu).mean(-1, keepdims=True)
        return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p[name + ".weight"] + p[name + ".bias"]

    def loss_fn(p, idx, tgt):
        b, t = idx.shape
        x = p["tok.weight"][idx] + p["pos.weight"][:t]
        for i in range(LAYERS):
            blk = f"blocks.{i}."
            q, k, v = jnp.split(linear(p, blk + "qkv", layer_norm(p, blk + "ln1", x)), 3, axis=-1)
            heads = (b, t, HEADS, D // HEADS)   # dot_product_attention takes (batch, time, heads, dim)
            a = jax.nn.dot_product_attention(q.reshape(heads), k.reshape(heads), v.reshape(heads), is_causal=True)
            x = x + linear(p, blk + "proj", a.reshape(b, t, D))
            h = jax.nn.gelu(linear(p, blk + "fc", layer_norm(p, blk + "ln2", x)), approximate=False)
            x = x + linear(p, blk + "out", h)
        logp = jax.nn.log_softmax(linear(p, "head", layer_norm(p, "ln", x)))
        return -jnp.take_along_axis(logp, tgt[..., None], axis=-1).mean()

    x, y = data()
    return _peers.jax_runner(loss_fn, initial_state(), x.astype(np.int32), y.astype(np.int32))


RUNNERS = {"dg eager": lambda: dg_runner(False), "dg compiled": lambda: dg_runner(True),
           "torch eager": lambda: torch_runner(False), "torch.compile": lambda: torch_runner(True),
           "jax.jit": jax_runner}

if __name__ == "__main__":
    _peers.main(__file__, f"decoder-LM training step (batch {BATCH}, T {T}, d {D}, {LAYERS} blocks, {HEADS} heads, "
                "AdamW)", RUNNERS, default_rounds=20)
