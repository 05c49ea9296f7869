"""@dg.function benchmarks (issue 3), side by side in one process; prints times and ratios.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_function.py [--quick] [--threads=N]

W4: tanh-GELU on 1,000,000 float32: numpy as written, the best plain-numpy form, dg compiled,
    jax.jit (if installed), a plain 4 MB copy.
W3: a 784-256-256-10 ReLU MLP training step (cross-entropy, SGD) at batch 8/128/1024: a hand-written
    numpy step, PyTorch eager (if installed), dg eager, dg compiled (one @dg.function per step).
Overhead: a cached call of a compiled tiny function minus the time of its kernel; first-call time.
(bench_w3_processes.py runs W3 with each framework in its own process at default threads;
profile_w3_lines.py times the compiled step line by line next to the numpy one.)
"""
import os
import sys
import time

THREADS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
if THREADS:  # BLAS threads must be fixed before numpy loads; torch gets the same count below
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = THREADS

import numpy as np  # noqa: E402

sys.path.insert(0, ".")
import dualgraph as dg  # noqa: E402

QUICK = "--quick" in sys.argv


def compare(fns, rounds=None, target=None):
    """{name: seconds per call}: the variants run interleaved, round after round, and each keeps its
    best round, so a busy machine slows them alike instead of whichever happened to run then."""
    rounds = rounds or (3 if QUICK else 9)
    target = target or (0.02 if QUICK else 0.06)
    ns = {}
    for name, fn in fns.items():
        fn()
        n = 1
        while True:
            s = time.perf_counter()
            for _ in range(n):
                fn()
            t = time.perf_counter() - s
            if t > target / 4 or n >= 1 << 20:
                break
            n *= 2
        ns[name] = max(1, int(n * target / max(t, 1e-9)))
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = ns[name]
            s = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.perf_counter() - s) / n)
    return best


def ms(t):
    return f"{t * 1e3:8.3f} ms"


def w4():
    print("W4: tanh-GELU on 1,000,000 float32")
    rng = np.random.default_rng(0)
    xn = rng.standard_normal(1_000_000).astype(np.float32)
    x = dg.tensor(xn)
    f32 = np.float32

    def as_written():
        return 0.5 * xn * (1 + np.tanh(0.7978845608 * (xn + 0.044715 * xn ** 3)))

    def best_numpy():
        return f32(0.5) * xn * (f32(1) + np.tanh(f32(0.7978845608) * (xn + f32(0.044715) * (xn * xn * xn))))

    @dg.function
    def gelu(x):
        return 0.5 * x * (1 + dg.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))

    t0 = time.perf_counter()
    gelu(x)
    first = time.perf_counter() - t0
    ref = best_numpy()
    err = float(np.abs(gelu(x).numpy() - ref).max())
    fns = {"numpy as written": as_written, "best numpy form": best_numpy, "dg compiled": lambda: gelu(x)}
    try:
        import jax
        import jax.numpy as jnp
        jx = jnp.asarray(xn)
        jf = jax.jit(lambda x: 0.5 * x * (1 + jnp.tanh(0.7978845608 * (x + 0.044715 * x ** 3))))
        fns["jax.jit"] = lambda: jf(jx).block_until_ready()
    except ImportError:
        pass
    fns["plain 4 MB copy"] = lambda: xn.copy()
    times = compare(fns)
    rows = [(k, times.get(k)) for k in ("numpy as written", "best numpy form", "dg compiled", "jax.jit",
                                        "plain 4 MB copy")]
    base = rows[1][1]
    for name, t in rows:
        print(f"  {name:<18} {ms(t) if t else '  (not installed)'}  {'' if not t else f'{t / base:6.2f}x best numpy'}")
    print(f"  dg first call (trace+optimize+compile): {first * 1e3:.1f} ms; max |dg - best numpy| = {err:.2e}")
    return dict(rows)


def mlp_numpy(batch, rng):
    w1 = (rng.standard_normal((784, 256)) * 0.05).astype(np.float32)
    w2 = (rng.standard_normal((256, 256)) * 0.05).astype(np.float32)
    w3 = (rng.standard_normal((256, 10)) * 0.05).astype(np.float32)
    b1, b2, b3 = (np.zeros(n, np.float32) for n in (256, 256, 10))
    x = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    lr = np.float32(0.01)
    onehot = np.eye(10, dtype=np.float32)[y]

    def step():
        nonlocal w1, w2, w3, b1, b2, b3
        h1 = x @ w1 + b1
        a1 = np.maximum(h1, 0)
        h2 = a1 @ w2 + b2
        a2 = np.maximum(h2, 0)
        z = a2 @ w3 + b3
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(batch), y]).mean()
        dz = (p - onehot) / np.float32(batch)
        dw3 = a2.T @ dz
        db3 = dz.sum(0)
        da2 = dz @ w3.T
        dh2 = da2 * (h2 > 0)
        dw2 = a1.T @ dh2
        db2 = dh2.sum(0)
        da1 = dh2 @ w2.T
        dh1 = da1 * (h1 > 0)
        dw1 = x.T @ dh1
        db1 = dh1.sum(0)
        w1 -= lr * dw1
        w2 -= lr * dw2
        w3 -= lr * dw3
        b1 -= lr * db1
        b2 -= lr * db2
        b3 -= lr * db3
        return loss
    return step, (w1, b1, w2, b2, w3, b3), x, y


def torch_mlp_step(params, xn, yn):
    """PyTorch eager's SGD step on a copy of the mlp_numpy parameters, in PyTorch's (out, in) layout."""
    import torch
    tp = [torch.tensor(p.T.copy() if p.ndim == 2 else p, requires_grad=True) for p in params]
    tx, ty = torch.tensor(xn), torch.tensor(yn)
    opt = torch.optim.SGD(tp, lr=0.01)

    def step():
        opt.zero_grad()
        h = torch.relu(tx @ tp[0].T + tp[1])
        h = torch.relu(h @ tp[2].T + tp[3])
        loss = torch.nn.functional.cross_entropy(h @ tp[4].T + tp[5], ty)
        loss.backward()
        opt.step()
        return loss
    return step


def dg_mlp_step(params, xn, yn):
    """dualgraph's eager SGD step on a fresh copy of the parameters (wrap it in dg.function to compile)."""
    dg.manual_seed(0)
    x, y = dg.tensor(xn), dg.tensor(yn)
    ps = [dg.tensor(p.T.copy() if p.ndim == 2 else p, requires_grad=True) for p in params]
    opt = dg.optim.SGD(ps, lr=0.01)

    def step():
        opt.zero_grad()
        h = dg.relu(dg.nn.functional.linear(x, ps[0], ps[1]))
        h = dg.relu(dg.nn.functional.linear(h, ps[2], ps[3]))
        loss = dg.cross_entropy(dg.nn.functional.linear(h, ps[4], ps[5]), y)
        loss.backward()
        opt.step()
        return loss
    return step


def w3():
    print("W3: 784-256-256-10 ReLU MLP training step (cross-entropy, SGD lr=0.01)")
    results = {}
    for batch in (8, 128, 1024):
        rng = np.random.default_rng(0)
        np_step, params, xn, yn = mlp_numpy(batch, rng)
        fns = {"numpy by hand": np_step}
        try:
            import torch
            if THREADS:
                torch.set_num_threads(int(THREADS))
            fns["PyTorch eager"] = torch_mlp_step(params, xn, yn)
        except ImportError:
            pass
        fns["dg eager"] = dg_mlp_step(params, xn, yn)
        compiled = dg.function(dg_mlp_step(params, xn, yn))
        t0 = time.perf_counter()
        compiled()
        first = time.perf_counter() - t0
        fns["dg compiled"] = compiled
        times = compare(fns)
        rows = [(k, times.get(k)) for k in ("numpy by hand", "PyTorch eager", "dg eager", "dg compiled")]
        base = rows[1][1] or rows[0][1]
        print(f"  batch {batch}:")
        for name, t in rows:
            print(f"    {name:<14} {ms(t) if t else '  (not installed)'}  "
                  f"{'' if not t else f'{t / base:6.2f}x PyTorch eager'}")
        print(f"    dg compiled first call: {first * 1e3:.1f} ms; traces: {compiled.trace_count}")
        results[batch] = dict(rows)
    return results


def overhead():
    print("Cached-call overhead")
    x = dg.randn(4)
    xn = x.numpy()
    ident = dg.function(lambda x: x)
    tiny = dg.function(lambda x: x + 1.0)
    ident(x), tiny(x)
    times = compare({"id": lambda: ident(x), "tiny": lambda: tiny(x), "kernel": lambda: np.add(xn, 1.0)})
    t_id, t_tiny, t_kernel = times["id"], times["tiny"], times["kernel"]
    print(f"  compiled identity:        {t_id * 1e6:7.2f} us per call")
    print(f"  compiled x + 1.0:         {t_tiny * 1e6:7.2f} us per call (numpy kernel alone {t_kernel * 1e6:.2f} us)")
    print(f"  overhead beyond kernels:  {(t_tiny - t_kernel) * 1e6:7.2f} us")
    return t_id, t_tiny - t_kernel


if __name__ == "__main__":
    print(f"numpy {np.__version__}; dualgraph {dg.__version__}; BLAS/torch threads: {THREADS or 'default'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    overhead()
    w4()
    w3()
