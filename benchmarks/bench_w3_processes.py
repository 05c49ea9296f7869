"""W3 with each framework in its own process at its default thread count (what a user running only
that framework gets), processes alternated round after round so a busy machine slows them alike.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_w3_processes.py [--rounds=N]

bench_function.py measures the frameworks side by side in one process with one BLAS/torch thread
each: reproducible, but not what a user gets on a multi-core machine, and two thread pools in one
process (OpenBLAS's and PyTorch's) spin against each other. Here every process measures the
784-256-256-10 MLP training step of bench_function.w3 (numpy by hand, PyTorch eager if installed,
dg compiled) at batch 8/128/1024; the table gives each one's best and median time over the rounds.
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BATCHES = (8, 128, 1024)


def measure(which):
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.dirname(HERE))
    import numpy as np
    import bench_function as bf
    out = {}
    for batch in BATCHES:
        np_step, params, xn, yn = bf.mlp_numpy(batch, np.random.default_rng(0))
        if which == "numpy":
            step = np_step
        elif which == "torch":
            step = bf.torch_mlp_step(params, xn, yn)
        else:
            step = bf.dg.function(bf.dg_mlp_step(params, xn, yn))
        out[batch] = bf.compare({which: step}, rounds=7)[which]
    print(json.dumps(out))


def main():
    rounds = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--rounds=")), 3))
    names = ["numpy", "dg"]
    try:
        import torch  # noqa: F401
        names.insert(1, "torch")
    except ImportError:
        pass
    times = {n: {b: [] for b in BATCHES} for n in names}
    for _ in range(rounds):
        for n in names:
            r = subprocess.run([sys.executable, __file__, "--measure=" + n], capture_output=True, text=True,
                               check=True)
            for b, t in json.loads(r.stdout.strip().splitlines()[-1]).items():
                times[n][int(b)].append(t)
    print(f"W3 in separate processes, default threads ({os.cpu_count()} cores), {rounds} rounds: best / median ms")
    base = "torch" if "torch" in names else "numpy"
    for b in BATCHES:
        ref = min(times[base][b])
        cells = []
        for n in names:
            best, med = min(times[n][b]), statistics.median(times[n][b])
            cells.append(f"{n} {best * 1e3:.3f}/{med * 1e3:.3f} ({best / ref:.2f}x)")
        print(f"  batch {b:4d}: " + "   ".join(cells))


if __name__ == "__main__":
    which = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--measure=")), None)
    if which:
        measure(which)
    else:
        main()
