"""Kernel ops measured: where(mask, a, 0) forms (ReLU backward), and the compiled 784-256-256-10 MLP
step with the where_zero/where_colsum C loops on and off (same process, interleaved, best of).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_executor_kernels.py [where|step]

(`a @ W.T` computed as `(W @ a.T).T.copy()` was 15-40% faster alone for float32 batches of 2-19
rows with this OpenBLAS, but gained nothing inside the whole step, so the executor does not do it.)
"""
import sys
import time

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0])
sys.path.insert(0, __file__.rsplit("/", 1)[0])


def best(f, budget=0.03, reps=5):
    f()
    s, n = time.perf_counter(), 0
    while time.perf_counter() - s < budget / reps:
        f()
        n += 1
    n, b = max(n, 3), 1e9
    for _ in range(reps):
        s = time.perf_counter()
        for _ in range(n):
            f()
        b = min(b, (time.perf_counter() - s) / n)
    return b * 1e6


def where():
    from dualgraph.kernels import where_zero as wz
    rng = np.random.default_rng(0)
    for shape in ((8, 256), (128, 256), (1024, 256)):
        a = rng.standard_normal(shape).astype(np.float32)
        m = rng.standard_normal(shape) > 0
        z = np.zeros((), np.float32)
        print(shape, " ".join(f"{k}={min(best(f) for _ in range(3)):.1f}us" for k, f in (
            ("np.where", lambda: np.where(m, a, z)), ("numpy on the bits (no compiler)", lambda: wz._without_c(m, a)),
            ("C select", lambda: wz.where_zero(np, m, a)))))


def step():
    """The compiled MLP step with the where C loops off ("old") and on ("new")."""
    import bench_function as bf
    import dualgraph as dg
    from dualgraph.kernels import where_zero as wz
    for batch in (8, 16, 128):
        _, params, xn, yn = bf.mlp_numpy(batch, np.random.default_rng(0))
        fns = {}
        for mode in ("old", "new"):
            for cached in (wz.c_where_zero, wz.c_where_colsum):
                cached.cache_clear()
            wz._LOOPS.built.clear()
            if mode == "old":
                wz._LOOPS.built.update({np.dtype(np.float32): None, np.dtype(np.float64): None})
            f = dg.function(bf.dg_mlp_step(params, xn, yn))
            f()
            graph = str(next(iter(f._cache.values())).opt)
            assert ("where_colsum(" in graph) == (mode == "new"), graph
            fns[mode] = f
        res = {m: 1e9 for m in fns}
        for _ in range(5):
            for m, f in fns.items():
                res[m] = min(res[m], best(f, 0.1, 3))
        print(f"batch {batch}: old {res['old']:.1f} us  new {res['new']:.1f} us  ({res['old'] / res['new']:.2f}x)",
              flush=True)


if __name__ == "__main__":
    what = sys.argv[1:] or ["where", "step"]
    for w in what:
        {"where": where, "step": step}[w]()
