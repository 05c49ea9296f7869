"""layer_norm and batch_norm (training statistics) forward and forward+backward (eager, float32, affine)
beside PyTorch eager in one process, with ratios:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_norm.py [--rounds=N]

layer_norm shapes: (8*64, 128) (the decoder LM's activations) and (4096, 1024); batch_norm: (64, 32, 26, 26)
(a CNN's first conv output) and (256, 512). Runners alternate round after
round, each keeping its best round, so load from other jobs hits them alike. To compare with another
checkout, run this file with PYTHONPATH pointing at it: the ratios to PyTorch are what compare.
"""
import os
import sys
import time

ARGS = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[1:])
ROUNDS = int(ARGS.get("--rounds", 20))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import dualgraph as dg  # noqa: E402
import dualgraph.nn.functional as F  # noqa: E402

SHAPES = [("layer_norm", (8 * 64, 128)), ("layer_norm", (4096, 1024)), ("batch_norm", (64, 32, 26, 26)),
          ("batch_norm", (256, 512))]


def best_of(fns, reps):
    best = {k: float("inf") for k in fns}
    for _ in range(ROUNDS):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t) / reps)
    return best


def runners(kind, shape):
    rng = np.random.default_rng(0)
    c = shape[-1] if kind == "layer_norm" else shape[1]
    x0 = rng.standard_normal(shape).astype(np.float32)
    w0 = rng.standard_normal(c).astype(np.float32)
    b0 = rng.standard_normal(c).astype(np.float32)
    g0 = rng.standard_normal(shape).astype(np.float32)
    x, w, b = (dg.tensor(a, requires_grad=True) for a in (x0, w0, b0))
    g = dg.tensor(g0)
    out = {}

    def dg_norm(x, w, b):
        if kind == "layer_norm":
            return F.layer_norm(x, shape[-1:], w, b)
        return F.batch_norm(x, None, None, w, b, training=True)

    def dg_fwd():
        with dg.no_grad():
            dg_norm(x, w, b)

    def dg_fb():
        x.grad = w.grad = b.grad = None
        dg_norm(x, w, b).backward(g)

    out["dg fwd"], out["dg fwd+bwd"] = dg_fwd, dg_fb
    try:
        import torch
        torch.set_num_threads(1)
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x0, w0, b0))
        tg = torch.tensor(g0)

        def t_norm(x, w, b):
            if kind == "layer_norm":
                return torch.nn.functional.layer_norm(x, shape[-1:], w, b)
            return torch.nn.functional.batch_norm(x, None, None, w, b, training=True)

        def t_fwd():
            with torch.no_grad():
                t_norm(tx, tw, tb)

        def t_fb():
            tx.grad = tw.grad = tb.grad = None
            t_norm(tx, tw, tb).backward(tg)

        out["torch fwd"], out["torch fwd+bwd"] = t_fwd, t_fb
    except ImportError:
        pass
    return out


def main():
    for kind, shape in SHAPES:
        if kind == "batch_norm" and not hasattr(F, "batch_norm"):  # an older checkout
            continue
        fns = runners(kind, shape)
        best = best_of(fns, 20 if np.prod(shape) < 200000 else 3)
        line = [f"{kind} {shape}:"]
        for k in ("fwd", "fwd+bwd"):
            d = best[f"dg {k}"]
            t = best.get(f"torch {k}")
            line.append(f"{k} dg {d * 1e6:.0f} us" + (f" torch {t * 1e6:.0f} us ({d / t:.2f}x)" if t else ""))
        print("  ".join(line), flush=True)


if __name__ == "__main__":
    main()
