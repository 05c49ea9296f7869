"""The small CNN training step (a model the kernels were not tuned for), dualgraph eager and compiled
beside PyTorch eager in one process, with ratios:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_cnn_step.py [--batch=N] [--rounds=N]

conv 1->32 3x3, relu, conv 32->64 3x3, relu, max_pool 2, flatten, linear 9216->10; 28x28 inputs,
cross-entropy, AdamW. Every runner is timed round after round, keeping its best round.
"""
import sys
import time

import numpy as np

import dualgraph as dg
import dualgraph.nn.functional as F

try:
    import torch
except ImportError:
    torch = None

BATCH = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--batch=")), 64))
ROUNDS = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--rounds=")), 5))
# --device=gpu: dualgraph on its GPU device, PyTorch on CUDA as the peer; each timing waits for the device
DEVICE = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--device=")), "cpu")
TDEV = "cuda" if DEVICE in ("gpu", "cuda") else "cpu"
if torch is not None and TDEV == "cuda" and not torch.cuda.is_available():
    torch = None   # a CPU-only PyTorch is no GPU peer


def sync():
    if TDEV == "cuda":
        dg.cuda.synchronize()
        if torch is not None:
            torch.cuda.synchronize()


def weights(rng):
    return [rng.standard_normal(s).astype(np.float32) * 0.05
            for s in ((32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (10, 9216), (10,))]


def dg_step(params, x, y, compiled):
    ps = [dg.tensor(p, requires_grad=True, device=DEVICE) for p in params]
    opt = dg.optim.AdamW(ps, lr=1e-3)
    xt, yt = dg.tensor(x, device=DEVICE), dg.tensor(y, device=DEVICE)

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
    return lambda: fn(xt, yt)


def torch_step(params, x, y):
    ps = [torch.tensor(p, requires_grad=True, device=TDEV) for p in params]
    opt = torch.optim.AdamW(ps, lr=1e-3)
    xt, yt = torch.from_numpy(x).to(TDEV), torch.from_numpy(y).to(TDEV)

    def step():
        w1, b1, w2, b2, w3, b3 = ps
        h = torch.relu(torch.nn.functional.conv2d(xt, w1, b1))
        h = torch.relu(torch.nn.functional.conv2d(h, w2, b2))
        h = torch.nn.functional.max_pool2d(h, 2).reshape(xt.shape[0], -1)
        loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(h, w3, b3), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


def main():
    rng = np.random.default_rng(0)
    params = weights(rng)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    runners = {"dg eager": dg_step(params, x, y, False)}
    t0 = time.perf_counter()
    runners["dg compiled"] = dg_step(params, x, y, True)
    runners["dg compiled"]()
    sync()
    first = time.perf_counter() - t0
    if torch is not None:
        runners["torch eager"] = torch_step(params, x, y)
    best = {name: float("inf") for name in runners}
    for fn in runners.values():
        fn()
    for _ in range(ROUNDS):
        for name, fn in runners.items():
            s = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - s)
    base = best.get("torch eager", best["dg eager"])
    print(f"CNN training step on {DEVICE}, batch {BATCH}, best of {ROUNDS} rounds (dg compiled first call {first * 1e3:.0f} ms)")
    for name, t in best.items():
        print(f"  {name:12s} {t * 1e3:8.2f} ms   {t / base:5.2f}x {'torch eager' if torch is not None else 'dg eager'}")


if __name__ == "__main__":
    main()
