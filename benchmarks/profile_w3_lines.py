"""Per-line times of the compiled W3 step next to the hand-written numpy step, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/profile_w3_lines.py [batch]

Both step functions are re-executed with a timer around every statement (the compiled one from its
generated source, `Executable.source`), run alternately, and their lines printed slowest first. A
small op's time here is its cost inside a real step (caches cold after the matmuls), often 2-3x its
warm micro-benchmark; the instrumentation adds ~0.2 us per line.
"""
import inspect
import os
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

import bench_function as bf  # noqa: E402
import dualgraph as dg  # noqa: E402


def instrument(lines, wanted):
    out, labels = [], []
    for ln in lines:
        st = ln.strip()
        ind = ln[:len(ln) - len(ln.lstrip())]
        if wanted(ln, st, ind):
            k = len(labels)
            labels.append(st[:90])
            out += [f"{ind}_t0 = _pc()", ln, f"{ind}_T[{k}] += _pc() - _t0"]
        else:
            out.append(ln)
    return "\n".join(out), labels


def main(batch):
    src = textwrap.dedent(inspect.getsource(bf.mlp_numpy)).splitlines()
    code, np_labels = instrument(src, lambda ln, st, ind: ind == " " * 8 and st
                                 and not st.startswith(("nonlocal", "return", "def")))
    np_t = [0.0] * len(np_labels)
    env = {"np": np, "_pc": time.perf_counter, "_T": np_t}
    exec(code, env)
    np_step, params, xn, yn = env["mlp_numpy"](batch, np.random.default_rng(0))

    step = dg.function(bf.dg_mlp_step(params, xn, yn))
    step()
    step()
    entry = next(iter(step._cache.values()))
    code, dg_labels = instrument(entry.exec.source.splitlines(), lambda ln, st, ind: ln.startswith(" " * 8) and (
        "=" in st or st.startswith("xp.")) and not st.startswith(("del", "return", "raise", "except")))
    dg_t = [0.0] * len(dg_labels)
    genv = dict(entry.exec.run.__globals__, _pc=time.perf_counter, _T=dg_t)
    exec(code, genv)
    seen = {}
    real = entry.exec.run
    entry.exec.run = lambda *a: seen.setdefault("args", a) and real(*a)
    step()
    entry.exec.run = real
    run, args = genv["run"], seen["args"]

    n = 500 if batch <= 16 else 60 if batch <= 256 else 8
    total = {"numpy": 0.0, "dg": 0.0}
    for rep in range(6):
        for name, fn in (("numpy", np_step), ("dg", lambda: run(*args))):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            if rep:
                total[name] += time.perf_counter() - t0
        if rep == 0:  # warm-up round: forget it
            for t in (np_t, dg_t):
                t[:] = [0.0] * len(t)
    calls = 5 * n
    print(f"batch {batch}: numpy by hand {total['numpy'] / calls * 1e6:.1f} us per step, "
          f"dg compiled (graph only) {total['dg'] / calls * 1e6:.1f} us")
    for title, t, labels in (("numpy by hand", np_t, np_labels), ("dg compiled", dg_t, dg_labels)):
        print(f"--- {title}")
        for k in sorted(range(len(t)), key=lambda k: -t[k])[:20]:
            print(f"{t[k] / calls * 1e6:9.1f} us  {labels[k]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
