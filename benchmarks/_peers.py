"""What bench_cnn_step.py, bench_gpt_step.py and bench_lstm.py share: the command line, thread limits, the
peers (PyTorch eager, torch.compile, jax.jit), the check that every runner computes the same losses, the
runners timed in turn, first-call times and peak memory per runner in a fresh subprocess.

A benchmark calls `setup()` before it imports numpy (thread counts are read when a library starts its pool),
defines one factory per runner (each returns a zero-argument step that runs one training step, waits for the
device and returns the loss as a float) and hands them to `main`. Imports of dualgraph, torch and jax happen
inside the factories, so a runner's memory is measured without the others' libraries loaded.

Common options:
  --rounds=N        timing rounds; every runner runs one step per round, in turn, and keeps its best round,
                    so load from other jobs hits them alike
  --threads=N       OPENBLAS_NUM_THREADS and OMP_NUM_THREADS (numpy's OpenBLAS, dualgraph's kernels),
                    torch.set_num_threads(N), and PJRT_NPROC=N, the size of jax's CPU thread pool: that is
                    what jaxlib 0.10's CPU client reads. XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
                    intra_op_parallelism_threads=N", the older recipe, does not limit it (measured with
                    jaxlib 0.10.2 on 2 cores: two XLA Eigen threads busy with it, one thread with PJRT_NPROC=1)
  --torch-compile   add torch.compile of the same step; its first call depends on inductor's on-disk cache
                    (TORCHINDUCTOR_CACHE_DIR): seconds warm, minutes cold on a 2-core CPU
  --no-jax          leave out jax.jit (by default it runs when jax imports: `pip install -e .[bench]`)
  --device=gpu      dualgraph on "gpu", PyTorch on cuda, jax on its GPU backend, all in full float32 (TF32
                    off in PyTorch, "highest" matmul precision in jax, as dualgraph's cupy path computes);
                    a runner whose device is absent is left out with the reason printed
  --no-memory       skip the per-runner memory subprocesses
  --runner=NAME     (internal) measure one runner's memory in this process

Memory: each runner alone in a fresh subprocess runs 5 steps; "peak RSS" is the resident-set high-water mark
(VmHWM, reset through /proc/self/clear_refs just before the first step, so an import's own peak is not in it)
and "added by steps" is that minus the resident set just before the first step (activations, gradients,
optimizer state, compiled code, and the compiler's own working memory during the first call). On --device=gpu
also the device memory its allocator held at most: torch.cuda.max_memory_reserved(), cupy's pool for dualgraph
(dg.cuda.memory_reserved(); the pool keeps freed blocks, so its size is its high-water mark), and jax's
peak_bytes_in_use (with XLA_PYTHON_CLIENT_PREALLOCATE=false, else jax takes 75% of the GPU at start).
"""
import json
import os
import subprocess
import sys
import time
from functools import partial

ARGS = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[1:])
THREADS = ARGS.get("--threads")
DEVICE = "gpu" if ARGS.get("--device", "cpu") in ("gpu", "cuda") else "cpu"
MEMORY_STEPS = 5


class Unavailable(Exception):
    """A runner whose library or device is absent here: it is left out with this reason."""


def setup():
    """Thread limits and jax's platform, set before numpy, torch or jax load."""
    if THREADS:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "PJRT_NPROC"):
            os.environ[var] = THREADS
    if DEVICE == "gpu":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    else:   # on a machine with a GPU, jax would otherwise put the CPU benchmark on it
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


# ---- devices -------------------------------------------------------------------------------------

def dg_device():
    import dualgraph as dg
    if DEVICE == "gpu" and not dg.cuda.is_available():
        raise Unavailable("dualgraph sees no GPU (cupy with a device, or DUALGRAPH_EMULATE_GPU=1)")
    return DEVICE


def dg_sync():
    if DEVICE == "gpu":
        import dualgraph as dg
        dg.cuda.synchronize()


def torch_module():
    """torch with the thread limit applied, and its device name."""
    try:
        import torch
    except ImportError:
        raise Unavailable("torch is not installed") from None
    if THREADS:
        torch.set_num_threads(int(THREADS))
    if DEVICE == "gpu":
        if not torch.cuda.is_available():
            raise Unavailable("this PyTorch has no CUDA device")
        # full float32 as dualgraph computes on cupy: TF32 would be another computation (and fail the loss check)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        return torch, "cuda"
    return torch, "cpu"


def torch_sync(torch):
    if DEVICE == "gpu":
        torch.cuda.synchronize()


def jax_device():
    try:
        import jax
    except ImportError:
        raise Unavailable("jax is not installed (pip install -e .[bench])") from None
    if DEVICE == "gpu":   # full float32 products, as the other runners compute (jax's default is TF32 there)
        jax.config.update("jax_default_matmul_precision", "highest")
    try:
        return jax.devices("gpu" if DEVICE == "gpu" else "cpu")[0]
    except RuntimeError:
        raise Unavailable(f"jax has no {DEVICE} backend here, only {jax.default_backend()}") from None


def _device_peak(name):
    if DEVICE != "gpu":
        return None
    if name.startswith("dg"):
        import dualgraph as dg
        return dg.cuda.memory_reserved()
    if name.startswith("torch"):
        import torch
        return torch.cuda.max_memory_reserved()
    stats = jax_device().memory_stats() or {}
    return stats.get("peak_bytes_in_use")


# ---- jax -----------------------------------------------------------------------------------------

def jax_adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    """AdamW as torch.optim.AdamW defines it (decoupled decay p *= 1 - lr*wd, then the bias-corrected Adam
    step), over any params pytree; the step count lives in the state so the jitted step is traced once."""
    import jax
    import jax.numpy as jnp
    b1, b2 = betas

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return {"t": jnp.zeros((), jnp.float32), "m": zeros, "v": jax.tree.map(jnp.zeros_like, params)}

    def update(params, grads, state):
        t = state["t"] + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        params = jax.tree.map(lambda p, m, v: p * (1 - lr * weight_decay) - (lr / c1) * m / (jnp.sqrt(v / c2) + eps),
                              params, m, v)
        return params, {"t": t, "m": m, "v": v}

    return init, update


def jax_runner(loss_fn, params, *batch):
    """The step as a JAX user writes it: jax.value_and_grad of a pure loss over a dict of parameters, AdamW,
    the whole step under one jax.jit with parameters and optimizer state donated (updated in place)."""
    dev = jax_device()
    import jax
    import jax.numpy as jnp
    init, update = jax_adamw()
    params = jax.device_put({k: jnp.array(v) for k, v in params.items()}, dev)
    batch = jax.device_put(batch, dev)
    state = [params, init(params)]

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt, *batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        params, opt = update(params, grads, opt)
        return params, opt, loss

    def run():
        state[0], state[1], loss = step(state[0], state[1], *batch)
        jax.block_until_ready(state)
        return float(loss)
    return run


# ---- the measurement -----------------------------------------------------------------------------

def _status(field):
    """A /proc/self/status size in bytes. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    child would report its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _memory_child(name, factory):
    fn = factory()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:   # "5" resets VmHWM to the current resident set
        f.write("5")
    for _ in range(MEMORY_STEPS):
        fn()
    peak = _status("VmHWM")
    print(json.dumps({"peak": peak, "steps": peak - before, "device": _device_peak(name)}))


def _memory(script, names):
    out = {}
    args = [a for a in sys.argv[1:] if not a.startswith("--runner")]
    for name in names:
        r = subprocess.run([sys.executable, script, *args, f"--runner={name}"], capture_output=True, text=True,
                           timeout=1800)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode == 0 and lines:
            out[name] = json.loads(lines[-1])
        else:
            print(f"  memory of {name}: its subprocess failed (rc {r.returncode}): {r.stderr.strip()[-300:]}")
    return out


def _wanted(name):
    if name == "torch.compile":
        return "--torch-compile" in ARGS
    if name.startswith("jax"):
        return "--no-jax" not in ARGS
    return True


def check_losses(losses, ref, rtol):
    """Every runner starts from the same weights and batch, so its first losses must be the reference's; a
    runner that computes another model would otherwise be timed as if it were a peer."""
    print(f"losses of the first {len(losses[ref])} steps (same initial weights and batch everywhere), "
          f"checked to rtol {rtol:g} against {ref}:")
    bad = []
    for name, ls in losses.items():
        diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ls, losses[ref]))
        print(f"  {name:14s} " + " ".join(f"{v:.6f}" for v in ls) + (f"   max rel diff {diff:.1e}" if name != ref else ""))
        if not diff <= rtol:
            bad.append(f"{name} (max relative difference {diff:.1e})")
    if bad:
        raise SystemExit(f"FAILED: losses diverge from {ref}'s: {', '.join(bad)}; the timings would compare "
                         "different computations")


def main(script, title, factories, default_rounds, check_steps=3, rtol=1e-3):
    """Run the benchmark (or, with --runner=NAME, one runner's memory measurement)."""
    if "--runner" in ARGS:
        return _memory_child(ARGS["--runner"], factories[ARGS["--runner"]])
    rounds = int(ARGS.get("--rounds", default_rounds))
    runners, first, losses = {}, {}, {}
    for name in filter(_wanted, factories):
        try:
            fn = factories[name]()
            t0 = time.perf_counter()
            loss = fn()
        except Unavailable as e:
            print(f"  {name}: left out ({e})")
            continue
        except Exception as e:   # torch.compile needs a C++ toolchain and inductor's dependencies
            if name.startswith("dg"):
                raise
            print(f"  {name}: does not run here ({type(e).__name__}: {str(e).strip().splitlines()[0][:160]})")
            continue
        first[name] = time.perf_counter() - t0
        losses[name] = [loss] + [fn() for _ in range(check_steps - 1)]
        runners[name] = fn
    ref = "torch eager" if "torch eager" in runners else "dg eager"
    check_losses(losses, ref, rtol)
    best = {name: float("inf") for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            s = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - s)
    mem = {} if "--no-memory" in ARGS else _memory(script, list(runners))
    base = best[ref]
    print(f"{title} on {DEVICE}, threads {THREADS or 'default'}, best of {rounds} rounds, ratios to {ref}")
    dev_col = f" {'device peak':>12s}" if DEVICE == "gpu" else ""
    print(f"  {'runner':14s} {'step':>10s} {'ratio':>6s} {'first call':>11s} {'peak RSS':>9s} {'added by steps':>15s}"
          + dev_col)
    for name, t in best.items():
        m = mem.get(name)
        ms = f"{m['peak'] / 2**20:6.0f} MB {m['steps'] / 2**20:12.1f} MB" if m else f"{'':9s} {'':15s}"
        if DEVICE == "gpu" and m and m.get("device") is not None:
            ms += f" {m['device'] / 2**20:9.1f} MB"
        print(f"  {name:14s} {t * 1e3:7.2f} ms {t / base:5.2f}x {first[name] * 1e3:8.0f} ms {ms}")
    print("  first call: the first step, tracing and compiling included (imports and building the model not)")
