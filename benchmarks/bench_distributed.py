"""Data-parallel training steps on N processes (DistributedDataParallel over MPI): throughput at a fixed
global batch, time in communication, and how much of it overlaps backward.

    .venv/bin/python benchmarks/bench_distributed.py [--ranks=1,2] [--rounds=N] [--steps=N] [--caps=25,0.25]
        [--models=mlp,cnn] [--modes=eager,compiled]      (DG_DDP_PROGRESS_THREAD=0: no progress thread)

It launches `mpiexec -n N` on itself for each N (one BLAS thread per rank; N=1 also with as many
threads as there are cores, the fair single-process baseline on a small machine). Models:
  MLP  784-256-256-10 ReLU, cross-entropy, SGD(momentum), global batch 256
  CNN  conv 1->32 3x3, relu, conv 32->64 3x3, relu, max_pool 2, linear 9216->10, AdamW, global batch 64
Each rank trains on global/N samples. Per step, eager:
  step     best round's mean step time (rank 0)
  exposed  time the end of backward waited for reductions still in flight (DDP's comm_stats)
  comm     the same buckets all-reduced alone (blocking, after a barrier): what communication costs
  overlap  the share of the gradient bytes whose all-reduce had completed when backward ended
           (hidden behind backward); `exposed` also holds waiting for a slower rank
for each bucket_cap_mb in --caps (25, PyTorch's default, is one bucket for these models: it starts
when the whole backward is done, so nothing can overlap; 0.25 MB makes several).
Compiled steps hold their all-reduce as graph nodes run in order (no overlap); their step time is shown.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

ARGS = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
RANKS = [int(r) for r in ARGS.get("ranks", "1,2").split(",")]
ROUNDS = int(ARGS.get("rounds", 5))
STEPS = int(ARGS.get("steps", 10))
CAPS = [float(c) for c in ARGS.get("caps", "25,0.25").split(",")]
MODELS = ARGS.get("models", "mlp,cnn").split(",")
MODES = [m == "compiled" for m in ARGS.get("modes", "eager,compiled").split(",")]


def models(dg):
    def mlp():
        dg.manual_seed(0)
        net = dg.nn.Sequential(dg.nn.Linear(784, 256), dg.nn.ReLU(), dg.nn.Linear(256, 256), dg.nn.ReLU(),
                               dg.nn.Linear(256, 10))
        return net, (lambda ps: dg.optim.SGD(ps, lr=0.01, momentum=0.9)), (784,), 256

    def cnn():
        dg.manual_seed(0)
        net = dg.nn.Sequential(dg.nn.Conv2d(1, 32, 3), dg.nn.ReLU(), dg.nn.Conv2d(32, 64, 3), dg.nn.ReLU(),
                               dg.nn.MaxPool2d(2), dg.nn.Flatten(), dg.nn.Linear(9216, 10))
        return net, (lambda ps: dg.optim.AdamW(ps, lr=1e-3)), (1, 28, 28), 64
    return {"mlp": mlp, "cnn": cnn}


def worker():
    import dualgraph as dg
    import dualgraph.distributed as dist
    dist.init_process_group("mpi", timeout=300)
    rank, n = dist.get_rank(), dist.get_world_size()
    g = dist._default_group()
    results = []
    runs = [(name, compiled, cap) for name in MODELS for compiled in MODES
            for cap in (CAPS if not compiled else CAPS[:1])]
    for name, compiled, cap in runs:
        net, new_opt, shape, batch = models(dg)[name]()
        ddp = dg.nn.parallel.DistributedDataParallel(net, bucket_cap_mb=cap)
        opt = new_opt(ddp.parameters())
        rng = np.random.default_rng(rank)
        x = dg.tensor(rng.standard_normal((batch // n,) + shape).astype(np.float32))
        y = dg.tensor(rng.integers(0, 10, batch // n))

        def step(xb, yb):
            opt.zero_grad()
            loss = dg.cross_entropy(ddp(xb), yb)
            loss.backward()
            opt.step()
            return loss
        fn = dg.function(step) if compiled else step
        for _ in range(3):
            fn(x, y)
        best, exposed, overlap = float("inf"), 0.0, 0.0
        for _ in range(ROUNDS):
            dist.barrier()
            ddp.comm_stats.update(wait_s=0.0, steps=0, bytes=0, overlapped_bytes=0)
            t0 = time.perf_counter()
            for _ in range(STEPS):
                fn(x, y)
            t = (time.perf_counter() - t0) / STEPS
            if t < best:
                st = ddp.comm_stats
                best, exposed = t, st["wait_s"] / max(st["steps"], 1)
                overlap = st["overlapped_bytes"] / st["bytes"] if st["bytes"] else 0.0
        # the buckets reduced alone, blocking: what the communication costs without overlap
        comm = float("inf")
        for _ in range(ROUNDS):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(STEPS):
                for b in ddp._buckets:
                    g.comm.Allreduce(g.MPI.IN_PLACE, b.buf, op=g.MPI.SUM)
            comm = min(comm, (time.perf_counter() - t0) / STEPS)
        nbytes = sum(b.buf.nbytes for b in ddp._buckets)
        results.append(dict(model=name, compiled=compiled, step=best, exposed=exposed if not compiled else None,
                            overlap=overlap, comm=comm, buckets=len(ddp._buckets), mbytes=nbytes / 2 ** 20,
                            batch=batch, cap=cap))
    sweep = []
    if n > 1:  # blocking all-reduce of one float32 buffer per size: the alpha-beta fit in docs/distributed.md
        for nbytes in (8, 1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 22):
            buf = np.ones(nbytes // 4, np.float32)
            reps = max(3, min(200, (1 << 22) // nbytes))
            best = float("inf")
            for _ in range(ROUNDS):
                dist.barrier()
                t0 = time.perf_counter()
                for _ in range(reps):
                    g.comm.Allreduce(g.MPI.IN_PLACE, buf, op=g.MPI.SUM)
                best = min(best, (time.perf_counter() - t0) / reps)
            sweep.append((nbytes, best))
    if rank == 0:
        print("RESULTS " + json.dumps(results), flush=True)
        print("SWEEP " + json.dumps(sweep), flush=True)
    dist.destroy_process_group()


def run(n, threads):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONPATH=root)
    cmd = [mpiexec, "-n", str(n), sys.executable, os.path.abspath(__file__), "--worker=1",
           *[a for a in sys.argv[1:] if a.startswith("--")]]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"mpiexec -n {n} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    sweep = next(ln for ln in out.stdout.splitlines() if ln.startswith("SWEEP "))
    return json.loads(line[len("RESULTS "):]), json.loads(sweep[len("SWEEP "):])


def main():
    cores = os.cpu_count() or 1
    configs = []
    for n in RANKS:
        configs.append((n, 1))
        if n == 1 and cores > 1:
            configs.append((1, cores))
    table, sweeps = {}, {}
    for n, threads in configs:
        results, sweep = run(n, threads)
        for r in results:
            table[(r["model"], r["compiled"], r["cap"], n, threads)] = r
        if sweep:
            sweeps[n] = sweep
    print(f"{cores} cores; fixed global batch; best of {ROUNDS} rounds of {STEPS} steps; times per step (rank 0)")
    print(f"{'model':5} {'mode':8} {'cap MB':>6} {'ranks':>5} {'thr/rank':>8} {'step ms':>8} {'samples/s':>9} "
          f"{'buckets':>7} {'MiB':>6} {'comm ms':>8} {'exposed':>8} {'overlap':>7}")
    for (model, compiled, cap, n, threads), r in sorted(table.items(), key=lambda kv: kv[0]):
        exposed = "" if r["exposed"] is None else f"{r['exposed'] * 1e3:8.2f}"
        overlap = f"{r['overlap']:7.0%}" if r["exposed"] is not None and n > 1 else ""
        print(f"{model:5} {'compiled' if compiled else 'eager':8} {cap:6g} {n:5d} {threads:8d} {r['step'] * 1e3:8.2f} "
              f"{r['batch'] / r['step']:9.0f} {r['buckets']:7d} {r['mbytes']:6.2f} {r['comm'] * 1e3:8.2f} "
              f"{exposed:>8} {overlap:>7}")
    for n, sweep in sweeps.items():
        sizes = np.array([b for b, _ in sweep], float)
        times = np.array([t for _, t in sweep])
        # T(M) = alpha + beta * M, least squares on relative errors (sizes span six decades)
        beta, alpha = np.polyfit(sizes, times, 1, w=1 / times)
        print(f"all_reduce on {n} ranks: " + ", ".join(f"{b} B {t * 1e6:.1f} us" for b, t in sweep))
        print(f"  alpha-beta fit: alpha = {alpha * 1e6:.1f} us, beta = {beta * 1e9:.3f} ns/byte "
              f"({1 / beta / 1e9:.2f} GB/s effective)")


if __name__ == "__main__":
    if ARGS.get("worker"):
        worker()
    else:
        main()
