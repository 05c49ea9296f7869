"""The small CNN training step (a model the kernels were not tuned for), dualgraph eager and compiled
beside PyTorch eager in one process, with ratios:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_cnn_step.py [--batch=N] [--rounds=N] [--threads=N]

conv 1->32 3x3, relu, conv 32->64 3x3, relu, max_pool 2, flatten, linear 9216->10; 28x28 inputs,
cross-entropy, AdamW. Every runner is timed round after round, keeping its best round.

Also printed: each runner's first call (dg compiled: trace + optimize + build, with the kernel cache
warm after the first run) and its peak memory, measured in a fresh process per runner as the growth
of the resident-set high-water mark (getrusage maxrss) over 3 steps, counted from just before the
first step (so imports, the model and the batch are not in it; on Linux the high-water mark is reset
there through /proc/self/clear_refs). Tracing numpy's or torch's own allocators would not compare:
each only sees its own arrays.
"""
import os
import resource
import subprocess
import sys
import time

BATCH = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--batch=")), 64))
ROUNDS = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--rounds=")), 5))
PEAK = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--peak=")), None)
THREADS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if THREADS:  # BLAS threads must be fixed before numpy loads; torch gets the same count below
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = THREADS

import numpy as np  # noqa: E402

import dualgraph as dg  # noqa: E402
import dualgraph.nn.functional as F  # noqa: E402

torch = None
if PEAK is None or PEAK == "torch eager":   # a runner's peak is measured without the other's imports
    try:
        import torch
        if THREADS:
            torch.set_num_threads(int(THREADS))
    except ImportError:
        torch = None
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


def make(name, params, x, y):
    if name == "torch eager":
        return torch_step(params, x, y)
    return dg_step(params, x, y, name == "dg compiled")


def peak(name):
    """In this (fresh) process: the maxrss growth in MB over the first 3 steps of runner `name`."""
    rng = np.random.default_rng(0)
    params = weights(rng)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    fn = make(name, params, x, y)
    before = _status_kb("VmRSS")
    try:   # Linux: "5" resets the high-water mark (VmHWM) to the current resident set
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        high = lambda: _status_kb("VmHWM")   # noqa: E731
    except OSError:   # elsewhere maxrss since start: an import's own peak may hide the step's
        high = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # noqa: E731
    for _ in range(3):
        fn()
    print((high() - before) / 1024)


def _status_kb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def peaks(names):
    out = {}
    for name in names:
        r = subprocess.run([sys.executable, __file__, f"--peak={name}", f"--batch={BATCH}", f"--device={DEVICE}"]
                           + ([f"--threads={THREADS}"] if THREADS else []), capture_output=True, text=True)
        out[name] = float(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else float("nan")
    return out


def main():
    if PEAK:
        return peak(PEAK)
    rng = np.random.default_rng(0)
    params = weights(rng)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int64)
    names = ["dg eager", "dg compiled"] + (["torch eager"] if torch is not None else [])
    runners, first = {}, {}
    for name in names:
        runners[name] = make(name, params, x, y)
        t0 = time.perf_counter()
        runners[name]()
        sync()
        first[name] = time.perf_counter() - t0
    best = {name: float("inf") for name in runners}
    for _ in range(ROUNDS):
        for name, fn in runners.items():
            s = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - s)
    mem = peaks(names)
    base = best.get("torch eager", best["dg eager"])
    ref = "torch eager" if torch is not None else "dg eager"
    print(f"CNN training step on {DEVICE}, batch {BATCH}, best of {ROUNDS} rounds, BLAS/torch threads {THREADS or 'default'}; "
          f"ratios to {ref}")
    print(f"  {'runner':12s} {'step':>10s} {'ratio':>7s} {'first call':>11s} {'peak MB':>8s}")
    for name, t in best.items():
        print(f"  {name:12s} {t * 1e3:7.2f} ms {t / base:6.2f}x {first[name] * 1e3:8.0f} ms {mem[name]:8.1f}")


if __name__ == "__main__":
    main()
