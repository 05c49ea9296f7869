"""The decoder-LM training step, dualgraph eager and compiled beside PyTorch eager (and torch.compile
where it runs here) in one process, with ratios, first-call times and peak memory:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_gpt_step.py [--rounds=N]
        [--no-memory] [--torch-compile] [--threads=N]

--threads=N sets OpenBLAS's and PyTorch's thread counts (default: theirs); on a shared machine one
thread each is what gives reproducible ratios (two thread pools spin against the other jobs).

Model (as users write it, with nn modules and F.scaled_dot_product_attention(is_causal=True)):
token embedding 65x128 plus a learned position embedding, 2 pre-LN blocks (LayerNorm, 4-head causal
attention, LayerNorm, GELU MLP 128->512->128, residuals), final LayerNorm, linear head 128->65; batch 8,
T 64, cross-entropy, AdamW. Every runner is timed round after round (one step each per round, in
turn), keeping its best round, so load from other jobs hits them alike.

Peak memory is each runner alone in a fresh subprocess (`--runner=NAME`): the peak resident set
(VmHWM) after 5 steps, and that minus the resident set just before the first step (what the
steps themselves added: activations, gradients, optimizer state, compiled code).
"""
import json
import os
import subprocess
import sys
import time

ARGS = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[1:])
ROUNDS = int(ARGS.get("--rounds", 20))
THREADS = ARGS.get("--threads")
if THREADS:  # before numpy loads OpenBLAS
    os.environ["OPENBLAS_NUM_THREADS"] = THREADS

import numpy as np  # noqa: E402
VOCAB, D, HEADS, LAYERS, BATCH, T = 65, 128, 4, 2, 8, 64


def data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (BATCH, T)).astype(np.int64)
    y = rng.integers(0, VOCAB, (BATCH, T)).astype(np.int64)
    return x, y


# ---- dualgraph -----------------------------------------------------------------------------------

def dg_runner(compiled):
    import dualgraph as dg
    import dualgraph.nn as nn
    import dualgraph.nn.functional as F

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
            x = self.tok(idx) + self.pos(dg.arange(idx.shape[1]))
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.ln(x))

    dg.manual_seed(0)
    model = GPT()
    opt = dg.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = (dg.tensor(a) for a in data())

    def step(xb, yb):
        logits = model(xb)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), yb.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = dg.function(step) if compiled else step
    return lambda: fn(x, y)


# ---- torch ---------------------------------------------------------------------------------------

def torch_runner(compiled):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    if THREADS:
        torch.set_num_threads(int(THREADS))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
            self.fc, self.out = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
            q = q.view(b, t, HEADS, c // HEADS).transpose(1, 2)
            k = k.view(b, t, HEADS, c // HEADS).transpose(1, 2)
            v = v.view(b, t, HEADS, c // HEADS).transpose(1, 2)
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
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.ln(x))

    torch.manual_seed(0)
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(a) for a in data())

    def step(xb, yb):
        logits = model(xb)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), yb.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = torch.compile(step) if compiled else step
    return lambda: fn(x, y)


RUNNERS = {"dg eager": lambda: dg_runner(False), "dg compiled": lambda: dg_runner(True),
           "torch eager": lambda: torch_runner(False), "torch.compile": lambda: torch_runner(True)}


def _status(field):
    """A /proc/self/status size in bytes. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    child would report its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(name):
    """One runner alone: peak RSS after 5 steps, and what the steps added over the RSS before them."""
    fn = RUNNERS[name]()
    before = _status("VmRSS")
    for _ in range(5):
        fn()
    peak = _status("VmHWM")
    print(json.dumps({"peak": peak, "steps": peak - before}))


def memory(names):
    out = {}
    for name in names:
        extra = [f"--threads={THREADS}"] if THREADS else []
        r = subprocess.run([sys.executable, __file__, f"--runner={name}"] + extra, capture_output=True, text=True,
                           timeout=900)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        out[name] = json.loads(lines[-1]) if r.returncode == 0 and lines else None
    return out


def main():
    names = ["dg eager", "dg compiled"]
    try:
        import torch  # noqa: F401
        names.append("torch eager")
        if "--torch-compile" in ARGS:  # its first call took 213 s on the 2-core machine
            names.append("torch.compile")
    except ImportError:
        pass
    runners, first = {}, {}
    for name in names:
        t0 = time.perf_counter()
        try:
            fn = RUNNERS[name]()
            fn()
        except Exception as e:  # torch.compile needs a C++ toolchain and inductor's dependencies
            print(f"  {name}: does not run here ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        first[name] = time.perf_counter() - t0
        runners[name] = fn
    for fn in runners.values():
        fn()
    best = {name: float("inf") for name in runners}
    for _ in range(ROUNDS):
        for name, fn in runners.items():
            s = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - s)
    mem = {} if "--no-memory" in ARGS else memory(list(runners))
    base_name = "torch eager" if "torch eager" in best else "dg eager"
    base = best[base_name]
    print(f"decoder-LM training step (batch {BATCH}, T {T}, d {D}, {LAYERS} blocks, {HEADS} heads, AdamW), "
          f"best of {ROUNDS} rounds, ratios to {base_name}")
    print(f"  {'runner':14s} {'step':>9s} {'ratio':>6s} {'first call':>11s} {'peak RSS':>9s} {'added by steps':>15s}")
    for name, t in best.items():
        m = mem.get(name)
        ms = (f"{m['peak'] / 2**20:7.0f} MB {m['steps'] / 2**20:11.1f} MB" if m else "")
        print(f"  {name:14s} {t * 1e3:6.2f} ms {t / base:5.2f}x {first[name] * 1e3:8.0f} ms {ms}")


if __name__ == "__main__":
    if "--runner" in ARGS:
        memory_child(ARGS["--runner"])
    else:
        main()
