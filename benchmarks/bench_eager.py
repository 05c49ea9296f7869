"""W1: per-op overhead of `a*b + c` on (16,) float32; W2: create+forward+backward of the seed example.

Compares dualgraph eager with raw numpy and PyTorch eager (when installed) in one process and
prints ratios. Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_eager.py
"""
import timeit

import numpy as np

import dualgraph as dg

try:
    import torch
except ImportError:
    torch = None


def best_us(fn, number=20000, repeat=7):
    """Best-of-repeat time per call in microseconds (the least disturbed run)."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def w1():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(16).astype(np.float32) for _ in range(3))
    rows = {"numpy": best_us(lambda: a * b + c)}
    da, db, dc = dg.tensor(a), dg.tensor(b), dg.tensor(c)
    rows["dualgraph"] = best_us(lambda: da * db + dc)
    ga, gb, gc = (dg.tensor(v, requires_grad=True) for v in (a, b, c))
    rows["dualgraph (requires_grad)"] = best_us(lambda: ga * gb + gc)
    if torch is not None:
        ta, tb, tc = (torch.from_numpy(v.copy()) for v in (a, b, c))
        rows["torch"] = best_us(lambda: ta * tb + tc)
        ra, rb, rc = (torch.from_numpy(v.copy()).requires_grad_() for v in (a, b, c))
        rows["torch (requires_grad)"] = best_us(lambda: ra * rb + rc)
    return rows


def w2():
    def dg_seed():
        w = dg.tensor([1.0], requires_grad=True)
        x = dg.tensor([2.0], requires_grad=True)
        y = (w + x) * (w + 1)
        y.backward()
        return w.grad

    rows = {"dualgraph": best_us(dg_seed, number=5000)}
    if torch is not None:
        def torch_seed():
            w = torch.tensor([1.0], requires_grad=True)
            x = torch.tensor([2.0], requires_grad=True)
            y = (w + x) * (w + 1)
            y.backward()
            return w.grad
        rows["torch"] = best_us(torch_seed, number=5000)
    return rows


def report(title, rows, ref):
    print(f"\n{title}")
    base = rows.get(ref)
    for name, us in rows.items():
        ratio = f"{us / base:5.2f}x {ref}" if base else ""
        print(f"  {name:28s} {us:8.2f} us   {ratio}")


if __name__ == "__main__":
    r1 = w1()
    report("W1  a*b + c, (16,) float32, per expression", r1, "torch" if torch else "numpy")
    if torch is not None:
        print(f"  dualgraph vs numpy: {r1['dualgraph'] / r1['numpy']:.2f}x")
    r2 = w2()
    report("W2  seed example y=(w+x)*(w+1): create + forward + backward", r2, "torch" if torch else "dualgraph")
