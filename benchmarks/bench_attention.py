"""scaled_dot_product_attention forward + backward, dualgraph eager and compiled beside PyTorch eager in one
process, at the decoder LM's size and at long sequences, with each runner's peak memory:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_attention.py [--rounds=N]
        [--threads=N] [--no-memory] [--cases=lm,causal512,...]

One step is out = F.scaled_dot_product_attention(q, k, v, ...) for parameters q, k, v and out.backward(g)
for a given cotangent g, returning out, as in a training step (dualgraph compiled: the step as one
dg.function; one returning the gradients of inputs that require grad would be differentiable again and
prepare for that). Every runner is timed round after round (one step each per round, in turn), keeping
its best round, so load from other jobs hits them alike.

Peak memory is each runner alone in a fresh subprocess (`--runner=NAME --case=CASE`): what the peak
resident set (VmHWM) rose by over 3 steps (the first one tracing, where compiled) above the resident set
before them. A dualgraph runner also reports tracemalloc's peak over the same steps (numpy's allocations
and Python's), the figure to hold against one (L, S) score matrix per head (batch * heads * L * S
floats, printed with each case).

The dualgraph under test is the one this script's tree holds only when that tree is on PYTHONPATH: an
editable install finds /work/main's otherwise (`PYTHONPATH=$PWD .venv/bin/python benchmarks/...`).
"""
import json
import os
import subprocess
import sys
import time

ARGS = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[1:])
ROUNDS = int(ARGS.get("--rounds", 10))
THREADS = ARGS.get("--threads")
if THREADS:  # before numpy loads OpenBLAS
    os.environ["OPENBLAS_NUM_THREADS"] = THREADS

import numpy as np  # noqa: E402

# name: (batch, heads, L, S, head dim, is_causal, mask): mask None, or "float" (an additive (L, S) mask)
CASES = {
    "lm": (8, 4, 64, 64, 32, True, None),
    "causal512": (2, 8, 512, 512, 64, True, None),
    "causal1024": (1, 8, 1024, 1024, 64, True, None),
    "full1024": (1, 8, 1024, 1024, 64, False, None),
    "mask1024": (1, 8, 1024, 1024, 64, False, "float"),
}


def data(case):
    b, h, L, S, d, causal, mask = CASES[case]
    rng = np.random.default_rng(0)
    q = rng.standard_normal((b, h, L, d)).astype(np.float32)
    k = rng.standard_normal((b, h, S, d)).astype(np.float32)
    v = rng.standard_normal((b, h, S, d)).astype(np.float32)
    g = rng.standard_normal((b, h, L, d)).astype(np.float32)
    m = None if mask is None else (rng.standard_normal((L, S)) * 0.5).astype(np.float32)
    return q, k, v, g, m, causal


def dg_runner(case, compiled):
    import dualgraph as dg
    import dualgraph.nn.functional as F
    q, k, v, g, m, causal = data(case)
    mt = None if m is None else dg.tensor(m)
    gt = dg.tensor(g)
    ts = [dg.nn.Parameter(dg.tensor(a)) for a in (q, k, v)]

    def step():
        for t in ts:
            t.grad = None
        out = F.scaled_dot_product_attention(*ts, attn_mask=mt, is_causal=causal)
        out.backward(gt)
        return out

    return dg.function(step) if compiled else step


def torch_runner(case):
    import torch
    import torch.nn.functional as F
    if THREADS:
        torch.set_num_threads(int(THREADS))
    q, k, v, g, m, causal = data(case)
    mt = None if m is None else torch.from_numpy(m)
    gt = torch.from_numpy(g)
    ts = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]

    def step():
        for t in ts:
            t.grad = None
        out = F.scaled_dot_product_attention(*ts, attn_mask=mt, is_causal=causal)
        out.backward(gt)
        return out
    return step


RUNNERS = {"dg eager": lambda c: dg_runner(c, False), "dg compiled": lambda c: dg_runner(c, True),
           "torch eager": torch_runner}


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(name, case):
    import tracemalloc
    fn = RUNNERS[name](case)
    # from before the first call: once a large block is freed, glibc keeps later ones in its heap, so the
    # resident set after a warm-up call would already hold the peak
    before = _status("VmRSS")
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(3):
        fn()
    traced = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    print(json.dumps({"rss": _status("VmHWM") - before, "traced": traced if name.startswith("dg") else None}))


def memory(names, case):
    out = {}
    for name in names:
        extra = [f"--threads={THREADS}"] if THREADS else []
        r = subprocess.run([sys.executable, __file__, f"--runner={name}", f"--case={case}"] + extra,
                           capture_output=True, text=True, timeout=900)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        out[name] = json.loads(lines[-1]) if r.returncode == 0 and lines else None
    return out


def main():
    names = ["dg eager", "dg compiled"]
    try:
        import torch  # noqa: F401
        names.append("torch eager")
    except ImportError:
        pass
    cases = ARGS.get("--cases", ",".join(CASES)).split(",")
    print(f"scaled_dot_product_attention forward + backward (float32), best of {ROUNDS} rounds"
          f"{', threads ' + THREADS if THREADS else ''}")
    for case in cases:
        b, h, L, S, d, causal, mask = CASES[case]
        runners = {name: RUNNERS[name](case) for name in names}
        for fn in runners.values():
            fn()
            fn()
        best = {name: float("inf") for name in runners}
        for _ in range(ROUNDS):
            for name, fn in runners.items():
                s = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - s)
        mem = {} if "--no-memory" in ARGS else memory(names, case)
        tt = b * h * L * S * 4
        base_name = "torch eager" if "torch eager" in best else "dg eager"
        print(f"{case}: batch {b}, heads {h}, L {L}, S {S}, head dim {d}"
              f"{', causal' if causal else ''}{', float (L, S) mask' if mask else ''};"
              f" one T x T per head = {tt / 2**20:.1f} MB")
        print(f"  {'runner':12s} {'step':>10s} {'ratio':>6s} {'RSS added':>10s} {'numpy peak':>11s}")
        for name, t in best.items():
            m = mem.get(name)
            rss = f"{m['rss'] / 2**20:7.1f} MB" if m else ""
            tr = f"{m['traced'] / 2**20:7.1f} MB" if m and m.get("traced") is not None else ""
            print(f"  {name:12s} {t * 1e3:7.2f} ms {t / best[base_name]:5.2f}x {rss:>10s} {tr:>11s}")


if __name__ == "__main__":
    if "--runner" in ARGS:
        memory_child(ARGS["--runner"], ARGS["--case"])
    else:
        main()
