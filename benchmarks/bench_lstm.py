"""A character-level LSTM language-model training step, dualgraph eager and compiled beside PyTorch eager in
one process, with ratios:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_lstm.py [--layers=N] [--rounds=N] \
        [--threads=N]

Embedding 65x128, an LSTM of hidden 256 (1 or 2 layers), batch 32, 64 time steps, linear head to 65
classes, cross-entropy, AdamW; the same initial weights everywhere (loaded from one state_dict). Every
runner is timed round after round, keeping its best round; the losses of the first step are printed too.
--threads=N caps the BLAS threads of numpy (OpenBLAS) and of PyTorch (on a loaded machine, BLAS threads
waiting on each other can cost more than they bring).
"""
import os
import sys
import time

THREADS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if THREADS:   # before numpy loads OpenBLAS
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = THREADS

import numpy as np

import dualgraph as dg

try:
    import torch
except ImportError:
    torch = None

LAYERS = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--layers=")), 1))
ROUNDS = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--rounds=")), 5))
VOCAB, EMB, HIDDEN, BATCH, T = 65, 128, 256, 32, 64


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


def initial_state(rng):
    m = build(dg.nn)
    return {k: rng.standard_normal(tuple(v.shape)).astype(np.float32) * 0.08 for k, v in m.state_dict().items()}


def dg_step(state, idx, tgt, compiled):
    model = build(dg.nn)
    model.load_state_dict({k: dg.tensor(v) for k, v in state.items()})
    opt = dg.optim.AdamW(model.parameters(), lr=1e-3)
    it, tt = dg.tensor(idx), dg.tensor(tgt)

    def step(i, t):
        loss = dg.cross_entropy(model(i).reshape(-1, VOCAB), t.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    fn = dg.function(step) if compiled else step
    return lambda: float(fn(it, tt).numpy())


def torch_step(state, idx, tgt):
    model = build(torch.nn)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    it, tt = torch.from_numpy(idx), torch.from_numpy(tgt)

    def step():
        loss = torch.nn.functional.cross_entropy(model(it).reshape(-1, VOCAB), tt.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss)
    return step


def main():
    rng = np.random.default_rng(0)
    state = initial_state(rng)
    idx = rng.integers(0, VOCAB, (BATCH, T)).astype(np.int64)
    tgt = rng.integers(0, VOCAB, (BATCH, T)).astype(np.int64)
    runners = {"dg eager": dg_step(state, idx, tgt, False)}
    t0 = time.perf_counter()
    runners["dg compiled"] = dg_step(state, idx, tgt, True)
    losses = {"dg compiled": runners["dg compiled"]()}
    first = time.perf_counter() - t0
    if torch is not None:
        torch.manual_seed(0)
        if THREADS:
            torch.set_num_threads(int(THREADS))
        runners["torch eager"] = torch_step(state, idx, tgt)
    for name, fn in runners.items():
        if name not in losses:
            losses[name] = fn()
    best = {name: float("inf") for name in runners}
    for _ in range(ROUNDS):
        for name, fn in runners.items():
            s = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - s)
    base = best.get("torch eager", best["dg eager"])
    ref = "torch eager" if torch is not None else "dg eager"
    print(f"LSTM LM training step: emb {VOCAB}x{EMB}, {LAYERS}-layer LSTM hidden {HIDDEN}, batch {BATCH}, T {T}, "
          f"best of {ROUNDS} rounds, threads {THREADS or 'default'} (dg compiled first call {first * 1e3:.0f} ms)")
    for name, t in best.items():
        print(f"  {name:12s} {t * 1e3:8.2f} ms   {t / base:5.2f}x {ref}   first loss {losses[name]:.6f}")


if __name__ == "__main__":
    main()
