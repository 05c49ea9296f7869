"""Executor fast paths, measured: where(mask, a, 0) forms (ReLU backward), and the compiled
784-256-256-10 MLP step with the C select loop on and off (same process, interleaved, best of).

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
    from dualgraph.function import executor as ex
    rng = np.random.default_rng(0)
    for shape in ((8, 256), (128, 256), (1024, 256)):
        a = rng.standard_normal(shape).astype(np.float32)
        m = rng.standard_normal(shape) > 0
        z = np.zeros((), np.float32)
        print(shape, " ".join(f"{k}={min(best(f) for _ in range(3)):.1f}us" for k, f in (
            ("np.where", lambda: np.where(m, a, z)), ("multiply+nan-check(old)", lambda: ex._slow(m, a)),
            ("C select(new)", lambda: ex.where_zero(np, m, a)))))


def step():
    import bench_function as bf
    import dualgraph as dg
    from dualgraph.function import executor as ex
    for batch in (8, 16, 128):
        rng = np.random.default_rng(0)
        _, params, xn, yn = bf.mlp_numpy(batch, rng)
        x, y = dg.tensor(xn), dg.tensor(yn)
        fns = {}
        saved = dict(ex._WZ_KERNELS)
        for mode in ("old", "new"):
            if mode == "old":
                ex._WZ_KERNELS.update({4: False, 8: False})
            else:
                ex._WZ_KERNELS.clear()
                ex._WZ_KERNELS.update(saved)
            ps = [dg.tensor(p.T.copy() if p.ndim == 2 else p.copy(), requires_grad=True) for p in params]
            opt = dg.optim.SGD(ps, lr=0.01)

            def s(ps=ps, opt=opt):
                opt.zero_grad()
                h = dg.relu(dg.nn.functional.linear(x, ps[0], ps[1]))
                h = dg.relu(dg.nn.functional.linear(h, ps[2], ps[3]))
                loss = dg.cross_entropy(dg.nn.functional.linear(h, ps[4], ps[5]), y)
                loss.backward()
                opt.step()
                return loss
            f = dg.function(s)
            f()
            src = next(iter(f._cache.values())).exec.source
            assert ("_where_zero4(" in src) == (mode == "new"), src
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
