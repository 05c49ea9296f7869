"""Fused elementwise chains with a trailing reduction, and broadcasting chains: dualgraph compiled beside
PyTorch eager and plain numpy in one process (float32), with ratios:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_fusion.py [--rounds=N]
        [--threads=N] [--size=small|large]

Workloads (N x C = 4096 x 512, or 256 x 128 with --size=small):
    mse        ((p - t) ** 2).mean() and its gradient wrt p, in one compiled function
    layernorm  (x - mean) * rstd * w + b with mean, rstd of shape (N, 1) and w, b of shape (C,)
    biasgrad   (g * (1 - h * h)).sum(0): tanh's backward summed over the batch (a bias gradient)
    rownorm    sqrt((x * x).sum(-1)): a norm per row
    rowmax     (x * 2 - 1).max(-1)
Runners alternate round after round, each keeping its best round, so load from other jobs hits them alike.
To compare with another checkout, run this file with PYTHONPATH pointing at it: the ratios to PyTorch are
what compare.
"""
import os
import sys
import time

ARGS = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[1:])
ROUNDS = int(ARGS.get("--rounds", 20))
THREADS = ARGS.get("--threads", "1")
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[var] = THREADS

import numpy as np  # noqa: E402

import dualgraph as dg  # noqa: E402

N, C = (256, 128) if ARGS.get("--size") == "small" else (4096, 512)


def best_of(fns, reps):
    best = {k: float("inf") for k in fns}
    for _ in range(ROUNDS):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t) / reps)
    return best


def workloads(torch):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((N, C)).astype(np.float32) for _ in range(2))
    col = rng.random((N, 1)).astype(np.float32)
    w, bias = (rng.standard_normal(C).astype(np.float32) for _ in range(2))
    h = np.tanh(b)
    out = {}

    # mse and its gradient
    def dg_mse(p, t):
        loss = ((p - t) * (p - t)).mean()
        (g,) = dg.autograd.grad(loss, [p])
        return loss, g
    f = dg.function(dg_mse)
    P, T = dg.tensor(a, requires_grad=True), dg.tensor(b)

    def np_mse():
        d = a - b
        return (d * d).mean(), d * np.float32(2 / d.size)
    run = {"dualgraph": lambda f=f: f(P, T), "numpy": np_mse}
    if torch is not None:
        tp, tt = torch.tensor(a, requires_grad=True), torch.tensor(b)

        def torch_mse():
            loss = ((tp - tt) ** 2).mean()
            return loss, torch.autograd.grad(loss, [tp])[0]
        run["torch"] = torch_mse
    out["mse"] = (run, f, (P, T))

    # layer-norm-like broadcasting chain
    f = dg.function(lambda x, m, r, w, b: (x - m) * r * w + b)
    args = [dg.tensor(v) for v in (a, col, col, w, bias)]
    run = {"dualgraph": lambda f=f, args=args: f(*args), "numpy": lambda: (a - col) * col * w + bias}
    if torch is not None:
        targs = [torch.tensor(v) for v in (a, col, col, w, bias)]
        run["torch"] = lambda: (targs[0] - targs[1]) * targs[2] * targs[3] + targs[4]
    out["layernorm"] = (run, f, args)

    # bias gradient under tanh
    f = dg.function(lambda g, h: (g * (1.0 - h * h)).sum(axis=0))
    args = [dg.tensor(a), dg.tensor(h)]
    run = {"dualgraph": lambda f=f, args=args: f(*args), "numpy": lambda: (a * (np.float32(1) - h * h)).sum(0)}
    if torch is not None:
        tg, th = torch.tensor(a), torch.tensor(h)
        run["torch"] = lambda: (tg * (1.0 - th * th)).sum(0)
    out["biasgrad"] = (run, f, args)

    f = dg.function(lambda x: dg.sqrt((x * x).sum(axis=-1)))
    args = [dg.tensor(a)]
    run = {"dualgraph": lambda f=f, args=args: f(*args), "numpy": lambda: np.sqrt((a * a).sum(-1))}
    if torch is not None:
        ta = torch.tensor(a)
        run["torch"] = lambda: torch.sqrt((ta * ta).sum(-1))
    out["rownorm"] = (run, f, args)

    f = dg.function(lambda x: (x * 2.0 - 1.0).max(axis=-1))
    run = {"dualgraph": lambda f=f, args=args: f(*args), "numpy": lambda: (a * np.float32(2) - np.float32(1)).max(-1)}
    if torch is not None:
        run["torch"] = lambda: (ta * 2.0 - 1.0).amax(-1)
    out["rowmax"] = (run, f, args)
    return out


def main():
    try:
        import torch
        torch.set_num_threads(int(THREADS))
    except ImportError:
        torch = None
    reps = max(1, int(2e6 // (N * C)))
    print(f"N x C = {N} x {C}, float32, {THREADS} thread(s), best of {ROUNDS} rounds of {reps}")
    print(f"{'workload':<10} {'dualgraph':>10} {'numpy':>10} {'torch':>10} {'dg/torch':>9} {'dg/numpy':>9}  graph")
    for name, (run, f, args) in workloads(torch).items():
        for fn in run.values():
            fn()
        best = best_of(run, reps)
        nodes = ", ".join(n.op.name for n in f.graph(*args).nodes)
        tt = best.get("torch")
        print(f"{name:<10} {best['dualgraph'] * 1e6:9.1f}u {best['numpy'] * 1e6:9.1f}u "
              f"{(tt or float('nan')) * 1e6:9.1f}u {best['dualgraph'] / tt if tt else float('nan'):9.2f} "
              f"{best['dualgraph'] / best['numpy']:9.2f}  {nodes}")


if __name__ == "__main__":
    main()
