"""GPU figures for docs/performance.md: the MLP training step (batch 1024) eager and compiled, and GELU on
16M float32 elements, dualgraph on device "gpu" against PyTorch CUDA: best time, ratio to PyTorch,
dualgraph's first-call time (trace + compile + kernel compilation) and peak device memory.

    python tools/gpu_bench.py [--rounds=20]
"""
import sys
import time

import numpy as np

import dualgraph as dg
import dualgraph.nn.functional as F

ROUNDS = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--rounds=")), 20))
try:
    import torch
    if not torch.cuda.is_available():
        torch = None
except ImportError:
    torch = None


def sync():
    dg.cuda.synchronize()
    if torch is not None:
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def peak_pool_bytes(fn):
    """dualgraph's peak: cupy's pool keeps no peak, so its total (in use + cached) after a fresh start."""
    dg.cuda.empty_cache()
    fn()
    sync()
    return dg.cuda.memory_reserved()


def mlp(rng):
    sizes = [(784, 1024), (1024, 1024), (1024, 10)]
    ws = [rng.standard_normal(s).astype(np.float32) * 0.03 for s in sizes]
    x = rng.standard_normal((1024, 784)).astype(np.float32)
    y = rng.integers(0, 10, 1024)
    ps = [dg.tensor(w, device="gpu", requires_grad=True) for w in ws]
    opt = dg.optim.SGD(ps, lr=0.01, momentum=0.9)
    xt, yt = dg.tensor(x, device="gpu"), dg.tensor(y, device="gpu")

    def step(xb, yb):
        h = xb
        for w in ps[:-1]:
            h = F.relu(h @ w)
        loss = F.cross_entropy(h @ ps[-1], yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    runs = {"dg eager": lambda: step(xt, yt)}
    comp = dg.function(step)
    runs["dg compiled"] = lambda: comp(xt, yt)
    if torch is not None:
        tp = [torch.tensor(w, device="cuda", requires_grad=True) for w in ws]
        topt = torch.optim.SGD(tp, lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()

        def tstep():
            h = tx
            for w in tp[:-1]:
                h = torch.relu(h @ w)
            loss = torch.nn.functional.cross_entropy(h @ tp[-1], ty)
            topt.zero_grad()
            loss.backward()
            topt.step()
        runs["torch eager"] = tstep
    return runs


def gelu(rng):
    x = rng.standard_normal(16 << 20).astype(np.float32)
    xt = dg.tensor(x, device="gpu")
    comp = dg.function(lambda a: F.gelu(a, approximate="tanh"))
    runs = {"dg eager": lambda: F.gelu(xt, approximate="tanh"), "dg compiled": lambda: comp(xt)}
    if torch is not None:
        tx = torch.from_numpy(x).cuda()
        runs["torch eager"] = lambda: torch.nn.functional.gelu(tx, approximate="tanh")
    return runs


def report(title, runs):
    first = {name: timed(fn) for name, fn in runs.items()}
    mem = peak_pool_bytes(runs["dg compiled"])
    if torch is not None:
        torch.cuda.reset_peak_memory_stats()
        runs["torch eager"]()
        sync()
        tmem = torch.cuda.max_memory_allocated()
    best = {name: min(timed(fn) for _ in range(ROUNDS)) for name, fn in runs.items()}
    base = best.get("torch eager")
    print(f"{title}: best of {ROUNDS} on {dg.cuda.get_device_name()}")
    for name, t in best.items():
        ratio = f"{t / base:6.2f}x torch" if base else ""
        print(f"  {name:12s} {t * 1e3:9.3f} ms {ratio}   first call {first[name] * 1e3:8.1f} ms")
    print(f"  device memory: dualgraph pool {mem / 2**20:.1f} MiB"
          + (f", torch peak allocated {tmem / 2**20:.1f} MiB" if torch is not None else ""))


def main():
    if not dg.cuda.is_available():
        sys.exit("no GPU: dualgraph needs cupy and a visible GPU (or DUALGRAPH_EMULATE_GPU=1 to try the script)")
    rng = np.random.default_rng(0)
    report("MLP training step 784-1024-1024-10, batch 1024, SGD momentum", mlp(rng))
    report("GELU (tanh) on 16M float32", gelu(rng))


if __name__ == "__main__":
    main()
