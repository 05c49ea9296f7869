"""Differential fuzzing of dualgraph (issue #7): random valid programs, every mode must agree.

In the spirit of NNSmith (Liu et al., ASPLOS 2023): generate random *valid* programs over the op
table (shape- and dtype-aware, inputs and intermediate values kept away from NaN/inf, from the
domain edges of log/sqrt/division and from the kinks and ties where float rounding could flip a
branch), then run each program

    eagerly (the reference)                       vs
    @dg.function with every pass                  (twice: traced inputs, then fresh inputs, so a
                                                   value baked into the trace shows)
    @dg.function with each pass switched off      (and with no passes at all)
    ONNX: dg.onnx.export -> onnxruntime
and gradients: eager backward vs the compiled function's traced backward, and vs
    @dg.function of the gradient function itself (autograd.grad inside the trace).

A program is Python source text (`def prog(x0, x1): v2 = ...; return v7`) so a failing one is
saved as a standalone script that rebuilds it and prints the mismatch.

    python -m tests.fuzz --programs 2000 --seed 0 --out fuzz_failures/

prints a summary (programs, checks, mismatches by variant, primitives covered, and per C kernel path
the programs, calls, checks and mismatches it ran in) and writes `fuzz_failures/<seed>_<variant>.py`
per failure (reduced to the smallest failing prefix).

The C loops (fused elementwise chains, where(mask, g, 0), cross-entropy, log_softmax and nll_loss rows)
take over from numpy only above a size (ckernel.MIN_SIZE, 8192 elements; MIN_SIZE_SHORT for short
chains), far above the fuzzer's small tensors. So by default (--c-threshold mixed) even seeds run with
those thresholds lowered to 0 (ckernel.thresholds: every eligible chain in C, whatever its size) and odd
seeds with the library's (the numpy kernels); every tenth program starts from an input just above the
real threshold (--big-every), and another in ten is made mostly of builders that reach the C loops'
layouts (a size-1 tensor, a bias row, float64, ReLU layers, cross-entropy, an in-place parameter update).
"""
import argparse
import contextlib
import linecache
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.function.passes import PASSES
from dualgraph.kernels import ckernel, where_zero, xent as fused_xent
from dualgraph.ops import loss as _loss, softmax as _softmax

PASS_NAMES = tuple(PASSES)
SIZE_ONE_DYNAMIC = False   # the dynamic-axes ONNX variant keeps size-1 dims static: see test_fuzz_findings.py
SIZE_ONE_SYMBOLIC = False  # the --symbolic variant keeps them static: see test_fuzz_findings.py (squeeze)
MAX_ABS = 1e3          # intermediate float values stay within this bound
MAX_SIZE = 2048        # and tensors within this many elements
# a "big" program (a share of every run, see `run`) starts from an input with more elements than a C
# kernel's threshold (ckernel.MIN_SIZE, or MIN_SIZE_SHORT for short chains), so the C loops run at the
# sizes users give them, not only under lowered thresholds; its values may reach this many elements
MAX_SIZE_BIG = 1 << 17
C_SIZES = (ckernel.MIN_SIZE, ckernel.MIN_SIZE_SHORT)   # the library's thresholds (a run may lower them)
MAX_GRAD = 1e5

# float32 tolerances (elementwise rtol plus an atol scaled by the array's largest entry), for float64
# results too: program inputs are float32, so a float64 value carries float32 rounding from upstream
RTOL = {np.dtype("float32"): 2e-3, np.dtype("float64"): 2e-3, np.dtype("float16"): 1e-2}
ATOL = {np.dtype("float32"): 2e-4, np.dtype("float64"): 2e-4, np.dtype("float16"): 1e-2}

BASE_ENV = {"dg": dg, "F": F, "np": np}


# ---- programs ------------------------------------------------------------------------------------

@dataclass
class Program:
    """A random program: named inputs (two value sets: 'worlds'), body lines, outputs."""
    seed: int
    inputs: list                  # [(name, array_world0, array_world1)]
    lines: list                   # [(target, source lines)] in order
    outputs: list                 # value names returned
    ops: list = field(default_factory=list)      # builder labels used (stats)
    loss_weights: dict = field(default_factory=dict)   # output name -> weights array (gradient checks)
    # tensors the function reads from its globals (like parameters), not arguments: [(name, a0, a1)];
    # switching worlds writes the other values into them in place, which a compiled function must see
    captured: list = field(default_factory=list)

    def source(self, name="prog"):
        params = ", ".join(n for n, _, _ in self.inputs)
        body = []
        for _, src in self.lines:
            body.extend(src)
        out = ", ".join(self.outputs) + ("," if len(self.outputs) == 1 else "")
        return "\n".join([f"def {name}({params}):"] + ["    " + s for s in body] + [f"    return ({out})", ""])

    def build(self, name="prog"):
        src = self.source(name)
        filename = f"<fuzz program {self.seed}>"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        env = dict(BASE_ENV)
        self._cap = {}
        for cname, a0, _ in self.captured:
            env[cname] = self._cap[cname] = dg.tensor(a0.copy())
        exec(compile(src, filename, "exec"), env)
        return env[name]

    def set_world(self, world):
        """Write world's values into the captured tensors, in place (as an optimizer step would)."""
        for cname, a0, a1 in self.captured:
            t = getattr(self, "_cap", {}).get(cname)
            if t is not None:
                with dg.no_grad():
                    t[...] = dg.tensor(a0 if world == 0 else a1)

    def arrays(self, world):
        return [a0 if world == 0 else a1 for _, a0, a1 in self.inputs]

    def grad_positions(self):
        return [i for i, (_, a, _) in enumerate(self.inputs) if a.dtype.kind == "f"]


# ---- the generator -----------------------------------------------------------------------------

class Reject(Exception):
    """The candidate op is not valid here (shape, domain, margin); the generator tries another."""


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _scale(a):
    a = _f64(a)
    return max(1.0, float(np.abs(a).max())) if a.size else 1.0


def need(cond):
    if not cond:
        raise Reject()


def away(a, points=(0.0,), margin=1e-3):
    """Every value of `a` is at least margin*scale from every point (kinks, domain edges)."""
    a = _f64(a)
    if a.size == 0:
        return
    m = margin * _scale(a)
    for p in points:
        need(np.abs(a - p).min() > m)


def away_from_integers(a, half=False, margin=2e-3):
    a = _f64(a) + (0.5 if half else 0.0)
    if a.size:
        need(np.abs(a - np.round(a)).min() > margin * _scale(a))


def distinct(a, margin=1e-3):
    """No two values of `a` within margin*scale (no ties for max/min/argmax/pooling/sort)."""
    a = np.sort(_f64(a).ravel())
    if a.size > 1:
        need(np.diff(a).min() > margin * _scale(a))


def distinct_along(a, axis, margin=1e-3):
    """Along `axis`, the largest and smallest values are unique (gradients of max/min, argmax)."""
    a = _f64(a)
    if a.size == 0 or a.ndim == 0:
        return
    s = np.sort(a, axis=axis)
    n = s.shape[axis]
    if n < 2:
        return
    m = margin * _scale(a)
    top = np.take(s, [n - 1], axis) - np.take(s, [n - 2], axis)
    bot = np.take(s, [1], axis) - np.take(s, [0], axis)
    need(top.min() > m and bot.min() > m)


def _fmt(v):
    if isinstance(v, float):
        return repr(float(v))
    return repr(v)


def const_src(arr):
    arr = np.asarray(arr)
    return f"dg.tensor({arr.tolist()!r}, dtype={str(arr.dtype)!r})"


class Gen:
    """Builds one program, evaluating every candidate op eagerly on both input worlds."""

    def __init__(self, seed, max_ops=None, min_ops=None, big=False, focus=False):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.big = big
        self.focus = focus   # builders that reach the C kernels' layouts (FOCUS) weigh five times more
        self.max_size = MAX_SIZE_BIG if big else MAX_SIZE
        self.inputs = []          # (name, a0, a1)
        self.meta = {}            # name -> (shape, dtype)
        self.vals = ({}, {})      # world -> name -> Tensor
        self.lines = []
        self.ops = []
        self.order = []           # value names in creation order
        self.n = 0
        r = self.rng
        hi = max_ops or (24 if r.random() < 0.2 else 12)
        self.n_ops = int(r.integers(min(min_ops or 3, hi), hi + 1))
        self.captured = []        # (name, a0, a1): globals of the program, like parameters

    # ---- helpers --------------------------------------------------------------------------------
    def fresh(self, prefix="v"):
        name = f"{prefix}{self.n}"
        self.n += 1
        return name

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def coin(self, p=0.5):
        return bool(self.rng.random() < p)

    def shape(self, rank=None, lo=1, hi=5):
        r = self.rng
        if rank is None:
            rank = int(r.choice([0, 1, 2, 2, 3, 3, 4]))
        return tuple(int(r.integers(lo, hi + 1)) for _ in range(rank))

    def draw(self, shape, dtype="float32", kind="any"):
        r = self.rng
        if dtype == "bool":
            return r.random(shape) < 0.5
        if np.dtype(dtype).kind in "iu":
            lo, hi = (1, 5) if kind == "pos" else (-4, 4)
            return r.integers(lo, hi + 1, shape).astype(dtype)
        if kind == "pos":
            a = r.uniform(0.3, 2.0, shape)
        else:
            a = r.uniform(-2.0, 2.0, shape)
            a = np.where(np.abs(a) < 0.05, 0.3, a)
        return a.astype(dtype)

    def new_input(self, shape, dtype="float32", kind="any"):
        if len(self.inputs) >= 6:
            raise Reject()
        name = self.fresh("x")
        a0, a1 = self.draw(shape, dtype, kind), self.draw(shape, dtype, kind)
        self.inputs.append((name, a0, a1))
        self.meta[name] = (tuple(shape), np.dtype(dtype))
        self.vals[0][name] = dg.tensor(a0)
        self.vals[1][name] = dg.tensor(a1)
        self.order.append(name)
        return name

    def new_captured(self, shape):
        """A tensor the program reads from its globals (a parameter), different in each world."""
        if len(self.captured) >= 2:
            raise Reject()
        name = f"W{self.n}"
        self.n += 1
        a0, a1 = self.draw(shape), self.draw(shape)
        self.captured.append((name, a0, a1))
        self.vals[0][name], self.vals[1][name] = dg.tensor(a0), dg.tensor(a1)
        self.meta[name] = (tuple(shape), np.dtype("float32"))
        return name

    def values(self, pred=None):
        return [n for n in self.order if pred is None or pred(*self.meta[n])]

    def pick(self, pred=None, make=None):
        """A value satisfying pred, biased to recent ones; else make() a new input."""
        cands = self.values(pred)
        if cands and (make is None or not self.coin(0.15)):
            if self.coin(0.6):
                return cands[-1 - int(self.rng.integers(min(3, len(cands))))]
            return self.choice(cands)
        if make is None:
            raise Reject()
        return make()

    def pick_float(self, min_rank=0, max_rank=5, dtype=None):
        def pred(s, d):
            return d.kind == "f" and min_rank <= len(s) <= max_rank and (dtype is None or d == dtype)
        return self.pick(pred, lambda: self.new_input(self.shape(int(self.rng.integers(min_rank, min(max_rank, 4) + 1)))))

    def arr(self, name, world):
        return self.vals[world][name].numpy()

    def both(self, name):
        return self.arr(name, 0), self.arr(name, 1)

    def shape_of(self, name):
        return self.meta[name][0]

    def dtype_of(self, name):
        return self.meta[name][1]

    # ---- committing a candidate -----------------------------------------------------------------
    def emit(self, label, src, check=None, kind=None):
        """Evaluate `src` (an expression, or lines whose last assigns the target) in both worlds;
        keep it when valid. `check(world_env)` may raise Reject."""
        target = self.fresh()
        lines = [f"{target} = {src}"] if isinstance(src, str) else [s.replace("{t}", target) for s in src]
        results = []
        for w in (0, 1):
            env = dict(BASE_ENV)
            env.update(self.vals[w])
            if check is not None:
                try:
                    check({k: v.numpy() for k, v in self.vals[w].items()})
                except Reject:
                    raise
                except Exception as e:
                    GEN_ERRORS[label + " (check)"] += 1
                    GEN_ERROR_EXAMPLES.setdefault(label + " (check)", f"{type(e).__name__}: {e} in {lines}")
                    raise Reject()
            try:
                with dg.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exec("\n".join(lines), env)
            except Reject:
                raise
            except Exception as e:  # a builder produced something invalid: a generator bug, not a finding
                GEN_ERRORS[label] += 1
                GEN_ERROR_EXAMPLES.setdefault(label, f"{type(e).__name__}: {e} in {lines}")
                raise Reject()
            out = env[target]
            if not isinstance(out, dg.Tensor):
                raise Reject()
            a = out.numpy()
            if a.size > self.max_size or a.ndim > 5:
                raise Reject()
            if a.dtype.kind == "f":
                if not np.isfinite(a).all() or (a.size and np.abs(a).max() > MAX_ABS):
                    raise Reject()
            results.append(out)
        self.vals[0][target], self.vals[1][target] = results
        self.meta[target] = (tuple(results[0].shape), results[0].dtype)
        self.lines.append((target, lines))
        self.order.append(target)
        self.ops.append(label)
        return target

    # ---- the main loop --------------------------------------------------------------------------
    def big_shape(self):
        """A shape just above a C-kernel threshold: rank 1 to 3, sometimes with leading 1s."""
        r = self.rng
        lo = C_SIZES[0] if r.random() < 0.75 else C_SIZES[1]
        n = int(lo * r.uniform(1.0, 1.25)) + 1
        dims = [int(r.choice([2, 3, 4, 8, 16, 32, 64])) for _ in range(int(r.integers(0, 3)))]
        long = -(-n // int(np.prod(dims)))
        shape = tuple(dims) + (long,) if r.random() < 0.7 else (long,) + tuple(dims)
        if r.random() < 0.3:
            shape = (1,) * int(r.integers(1, 3)) + shape
        return shape

    def build(self):
        n_in = int(self.rng.integers(1, 4))
        if self.big:
            self.new_input(self.big_shape())
            n_in -= 1
        for _ in range(n_in):
            r = self.rng.random()
            if r < 0.8:
                self.new_input(self.shape())
            elif r < 0.9:
                self.new_input(self.shape(), "int64")
            else:
                self.new_input(self.shape(4, lo=1, hi=3)[:2] + self.shape(2, lo=4, hi=6))
        builders, weights = zip(*BUILDERS)
        p = np.array([w * (5 if self.focus and b in FOCUS else 1) for b, w in BUILDERS], dtype=float)
        p /= p.sum()
        tries = 0
        while len(self.lines) < self.n_ops and tries < self.n_ops * 30:
            tries += 1
            b = builders[int(self.rng.choice(len(builders), p=p))]
            n_before, inputs_before, caps_before = self.n, list(self.inputs), list(self.captured)
            try:
                b(self)
            except Reject:
                for name, _, _ in self.captured[len(caps_before):]:
                    del self.meta[name], self.vals[0][name], self.vals[1][name]
                self.captured = caps_before
                # undo inputs a rejected builder created
                for name, _, _ in self.inputs[len(inputs_before):]:
                    self.order.remove(name)
                    del self.meta[name], self.vals[0][name], self.vals[1][name]
                self.inputs = inputs_before
                continue
        if self.focus:  # the last op, so the program's output (and its gradient) goes through it
            for _ in range(20):
                n_before, inputs_before = self.n, list(self.inputs)
                try:
                    b_kernel_layouts(self)
                    break
                except Reject:
                    for name, _, _ in self.inputs[len(inputs_before):]:
                        self.order.remove(name)
                        del self.meta[name], self.vals[0][name], self.vals[1][name]
                    self.inputs = inputs_before
        if not self.lines:
            raise Reject()
        outs = [self.order[-1]]
        others = [n for n, _ in self.lines[:-1]]
        if others and self.coin(0.35):
            o = self.choice(others)
            if o not in outs:
                outs.append(o)
        prog = Program(self.seed, list(self.inputs), list(self.lines), outs, list(self.ops))
        prog.captured = list(self.captured)
        for o in outs:
            shape, dt = self.meta[o]
            if dt.kind == "f":
                prog.loss_weights[o] = self.rng.uniform(0.5, 1.5, shape).astype(np.float32).astype(dt)
        return prog


GEN_ERRORS = Counter()
GEN_ERROR_EXAMPLES = {}
SKIPS = Counter()      # checks skipped as documented limits (a symbolic trace that needs concrete sizes)
SKIP_EXAMPLES = {}
RESIZED = Counter()    # dynamic-axes models run at sizes other than the traced ones


# ---- builders ------------------------------------------------------------------------------------
# each takes the Gen, picks operands, and calls g.emit(label, source, check) (or raises Reject)

def _dom_pos(lo):
    return lambda a: need(_f64(a).min() > lo)


UNARY = [
    # label, template, domain(a), kink points
    ("neg", "-{x}", None, None),
    ("tanh", "dg.tanh({x})", None, None),
    ("sigmoid", "dg.sigmoid({x})", None, None),
    ("sin", "dg.sin({x})", None, None),
    ("cos", "{x}.cos()", None, None),
    ("tan", "dg.tan({x})", lambda a: need(np.abs(_f64(a)).max() < 1.2), None),
    ("exp", "dg.exp({x})", lambda a: need(_f64(a).max() < 4), None),
    ("expm1", "dg.expm1({x})", lambda a: need(_f64(a).max() < 4), None),
    ("log", "dg.log({x})", _dom_pos(0.05), None),
    ("log1p", "dg.log1p({x})", _dom_pos(-0.9), None),
    ("sqrt", "dg.sqrt({x})", _dom_pos(0.05), None),
    ("rsqrt", "dg.rsqrt({x})", _dom_pos(0.1), None),
    ("abs", "dg.abs({x})", None, (0.0,)),
    ("relu", "dg.relu({x})", None, (0.0,)),
    ("leaky_relu", "dg.leaky_relu({x}, 0.1)", None, (0.0,)),
    ("elu", "dg.elu({x})", None, (0.0,)),
    ("gelu", "dg.gelu({x})", None, None),
    ("gelu_tanh", "dg.gelu({x}, approximate='tanh')", None, None),
    ("silu", "dg.silu({x})", None, None),
    ("softplus", "dg.softplus({x})", None, None),
    ("erf", "dg.erf({x})", None, None),
    ("square", "dg.square({x})", None, None),
    ("pow2", "{x} ** 2", None, None),
    ("pow3", "{x} ** 3", lambda a: need(np.abs(_f64(a)).max() < 9), None),
    ("pow_half", "{x} ** 0.5", _dom_pos(0.05), None),
    ("pow_frac", "{x} ** 1.5", _dom_pos(0.05), None),
    ("reciprocal", "dg.reciprocal({x})", lambda a: away(a, (0.0,), 0.2), None),
    ("rdiv", "1.5 / {x}", lambda a: away(a, (0.0,), 0.2), None),
    ("sign", "dg.sign({x})", None, (0.0,)),
    ("clip", "dg.clip({x}, -0.5, 0.7)", None, (-0.5, 0.7)),
    ("clip_min", "{x}.clamp(min=0.2)", None, (0.2,)),
    ("hardtanh", "dg.hardtanh({x})", None, (-1.0, 1.0)),
    ("scale", "{x} * 1.7", None, None),
    ("shift", "{x} + 0.25", None, None),
    ("rsub", "2.0 - {x}", None, None),
    ("div_scalar", "{x} / 3.0", None, None),
    ("int_scale", "{x} * 2", None, None),
    ("copy", "dg.copy({x})", None, None),
    ("dropout_eval", "F.dropout({x}, 0.3, training=False)", None, None),
]

ROUNDING = [("floor", "dg.floor({x})", False), ("ceil", "dg.ceil({x})", False), ("trunc", "dg.trunc({x})", False),
            ("round", "dg.round({x})", True)]


def b_unary(g):
    label, tmpl, dom, kinks = g.choice(UNARY)
    x = g.pick_float()

    def check(A):
        if dom:
            dom(A[x])
        if kinks:
            away(A[x], kinks)
    g.emit(label, tmpl.format(x=x), check)


def b_rounding(g):
    label, tmpl, half = g.choice(ROUNDING)
    x = g.pick_float()
    g.emit(label, tmpl.format(x=x), lambda A: away_from_integers(A[x], half))


def partner_shape(g, shape):
    """A shape that broadcasts with `shape` (dims kept, set to 1, leading dims dropped or added)."""
    s = list(shape)
    r = g.rng.random()
    if r < 0.3:
        return tuple(s)
    if r < 0.55 and s:
        s = s[int(g.rng.integers(0, len(s) + 1)):]
    out = [d if g.coin(0.6) else 1 for d in s]
    if g.coin(0.15) and len(out) == len(shape) < 4:   # a new leading dim: the result grows
        out = [int(g.rng.integers(1, 4))] + out
    return tuple(out)


def pick_partner(g, x, dtype_kind="f", kind="any"):
    shape = g.shape_of(x)
    def pred(s, d):
        if d.kind != dtype_kind or s == ():
            return False
        try:
            out = np.broadcast_shapes(shape, s)
        except ValueError:
            return False
        return int(np.prod(out)) <= g.max_size and len(out) <= 4
    cands = [n for n in g.values(pred) if n != x]
    r = g.rng.random()
    if cands and r < 0.5:
        return g.choice(cands)
    if r < 0.6:
        return x
    if r < 0.7:
        return const_src(g.draw(partner_shape(g, shape), "float32" if dtype_kind == "f" else "int64", kind))
    dt = "float32" if dtype_kind == "f" else "int64"
    return g.new_input(partner_shape(g, shape), dt, kind)


BINARY = [
    ("add", "{x} + {y}", None),
    ("sub", "{x} - {y}", None),
    ("mul", "{x} * {y}", None),
    ("dg.add", "dg.add({x}, {y})", None),
    ("dg.mul", "dg.multiply({x}, {y})", None),
    ("div", "{x} / {y}", "den"),
    ("maximum", "dg.maximum({x}, {y})", "tie"),
    ("minimum", "dg.minimum({x}, {y})", "tie"),
    ("pow", "dg.pow({x}, {y})", "pow"),
    ("where_gt", "dg.where({x} > {y}, {x}, {y} * 0.5)", "tie"),
    ("where_lt0", "dg.where({y} < 0, {x}, -{x})", "sign_y"),
]


def _val(A, src):
    """The numpy value of an operand (a value name or a constant's source) in a world."""
    if src in A:
        return A[src]
    with dg.no_grad():
        return eval(src, dict(BASE_ENV)).numpy()


def b_binary(g):
    label, tmpl, cond = g.choice(BINARY)
    x = g.pick_float()
    if cond == "pow":
        y = pick_partner(g, x)
        def check(A):
            a, b = _f64(_val(A, x)), _f64(_val(A, y))
            need(a.min() > 0.1 and np.abs(b).max() < 2.5)
    else:
        y = pick_partner(g, x)
        if g.coin(0.5):
            x, y = y, x
            if not x.isidentifier():   # the constant goes second
                x, y = y, x

        def check(A):
            a, b = _f64(_val(A, x)), _f64(_val(A, y))
            if cond == "den":
                away(b, (0.0,), 0.2)
            elif cond == "tie":
                away(a - b, (0.0,), 2e-3)
            elif cond == "sign_y":
                away(b, (0.0,))
    g.emit(label, tmpl.format(x=x, y=y), check)


def b_compare_where(g):
    """A comparison feeding where/logical ops/arithmetic (bool results and promotions)."""
    x = g.pick_float()
    y = pick_partner(g, x)
    op = g.choice(["<", ">", "<=", ">="])
    how = g.choice(["where", "mask_mul", "bool", "logic", "where_scalar"])
    check = lambda A: away(_f64(_val(A, x)) - _f64(_val(A, y)), (0.0,), 2e-3)
    c = f"({x} {op} {y})"
    if how == "where":
        z = pick_partner(g, x)
        src = f"dg.where({c}, {x}, {z})"
    elif how == "where_scalar":
        src = f"dg.where({c}, {x}, 0.0)"
    elif how == "mask_mul":
        src = f"{c}.astype('float32') * {x}"
    elif how == "bool":
        src = c
    else:
        w = pick_partner(g, x)
        need(w.isidentifier() and _bshape(g, x, w) and (y == x or not y.isidentifier() or _bshape(g, y, w)))
        src = f"dg.logical_{g.choice(['and', 'or', 'xor'])}({c}, {w} > 0.1)"
        check0 = check
        def check(A):
            check0(A)
            away(A[w], (0.1,), 2e-3)
        if g.coin(0.5):
            src = f"dg.logical_not({src})"
        if g.coin(0.5):
            src = f"dg.where({src}, 1.0, -1.0) * {x}"
    g.emit("compare_" + how, src, check)


def b_int(g):
    """Integer arithmetic (exact in every mode), casts and bool logic."""
    def make():
        return g.new_input(g.shape(), "int64")
    x = g.pick(lambda s, d: d.kind in "iu", make)
    r = g.rng.random()
    if r < 0.4:
        y = pick_partner(g, x, "i")
        op = g.choice(["+", "-", "*", "&", "|", "^"])
        src = f"{x} {op} {y}"
        label = "int_binop"
    elif r < 0.55:
        y = pick_partner(g, x, "i", kind="pos")
        op = g.choice(["//", "%"])
        src = f"{x} {op} {y}"
        label = "int_floordiv_mod"

        def check(A):
            need((_f64(_val(A, y)) != 0).all())
        g.emit(label, src, check)
        return
    elif r < 0.65:
        c = g.choice([2, 3, -2])
        src = g.choice([f"{x} // {c}", f"{x} % {c}", f"{x} * {c} + 1", f"-{x}", f"dg.abs({x})", f"{x} * 2.5",
                        f"{x} / 2"])
        label = "int_scalar"
    elif r < 0.8:
        src = g.choice([f"{x}.astype('float32')", f"{x}.float() * 0.5", f"{x}.astype('float64')"])
        label = "int_cast"
    elif r < 0.9:
        ax = None if not g.shape_of(x) else int(g.rng.integers(len(g.shape_of(x))))
        src = g.choice([f"{x}.sum(axis={ax})", f"{x}.max(axis={ax})", f"{x}.min(axis={ax})",
                        f"dg.cumsum({x}, axis={ax if ax is not None else 0})" if g.shape_of(x) else f"{x}.sum()"])
        label = "int_reduce"
    else:
        src = g.choice([f"({x} > 0).sum()", f"dg.any({x} > 2)", f"dg.all({x} < 3)", f"({x} == 1) | ({x} == -1)",
                        f"({x} != 0).astype('int64') * {x}", f"~{x}", f"~({x} > 0)", f"({x} >= 0) ^ ({x} < 2)",
                        f"dg.where({x} > 0, {x}, 0)", f"dg.isfinite({x}.astype('float32') / 1.0)",
                        f"({x} == 2).all(axis=0)" if g.shape_of(x) else f"({x} == 2).all()"])
        label = "int_bool"
    g.emit(label, src)


def b_cast(g):
    x = g.pick_float()
    d = g.dtype_of(x)
    if d == np.float32:
        r = g.rng.random()
        if r < 0.5:
            y = g.pick_float()
            src = f"{x}.astype('float64') * 0.5 + {y}" if _bshape(g, x, y) else f"{x}.double() * 2"
            g.emit("cast_f64_mix", src)
        elif r < 0.8:
            g.emit("cast_int", f"{x}.astype('int64')", lambda A: away_from_integers(A[x]))
        else:
            g.emit("cast_bool_mul", f"({x} > 0.3).astype('float32') * {x}", lambda A: away(A[x], (0.3,)))
    else:
        g.emit("cast_f32", f"{x}.astype('float32')")


def _bshape(g, x, y):
    try:
        out = np.broadcast_shapes(g.shape_of(x), g.shape_of(y))
        return np.prod(out) <= g.max_size
    except ValueError:
        return False


def axis_spec(g, ndim, single=False):
    """None, an int (maybe negative) or a tuple of axes; single=True: an int."""
    if ndim == 0:
        return None if not single else 0
    if single:
        a = int(g.rng.integers(ndim))
        return a - ndim if g.coin(0.3) else a
    r = g.rng.random()
    if r < 0.25:
        return None
    if r < 0.65:
        a = int(g.rng.integers(ndim))
        return a - ndim if g.coin(0.3) else a
    k = int(g.rng.integers(1, ndim + 1))
    axes = sorted(int(a) for a in g.rng.choice(ndim, k, replace=False))
    return tuple(axes)


def _axes_tuple(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        return (axis % ndim,)
    return tuple(a % ndim for a in axis)


def b_reduce(g):
    x = g.pick_float()
    nd = len(g.shape_of(x))
    label = g.choice(["sum", "mean", "max", "min", "amax", "prod", "var", "std", "logsumexp", "sum_method",
                      "mean_dim", "var_unbiased"])
    axis = axis_spec(g, nd)
    kd = g.coin(0.4)
    check = None
    if label in ("max", "min", "amax"):
        if label == "amax":
            src = f"dg.amax({x}, axis={axis!r}, keepdims={kd})"
        else:
            src = f"{x}.{label}(axis={axis!r}, keepdims={kd})"
        def check(A):
            a = _f64(A[x])
            axes = _axes_tuple(axis, nd)
            if nd == 0:
                return
            moved = np.moveaxis(a, axes, tuple(range(-len(axes), 0))).reshape(a.shape[:0] + (-1,) if axis is None
                                                                             else tuple(s for i, s in enumerate(a.shape) if i not in axes) + (-1,))
            distinct_along(moved, -1)
    elif label == "prod":
        src = f"dg.prod({x}, axis={axis!r}, keepdims={kd})"
        n = int(np.prod([g.shape_of(x)[a] for a in _axes_tuple(axis, nd)])) if nd else 1
        need(n <= 6)
        check = lambda A: away(A[x], (0.0,), 0.05)
    elif label in ("var", "std", "var_unbiased"):
        n = int(np.prod([g.shape_of(x)[a] for a in _axes_tuple(axis, nd)])) if nd else 1
        need(n >= 2)
        extra = ", correction=1" if label == "var_unbiased" else ""
        fn = "std" if label == "std" else "var"
        src = f"dg.{fn}({x}, axis={axis!r}, keepdims={kd}{extra})"
        if label == "std":
            def check(A):
                need(np.var(_f64(A[x]), axis=axis).min() > 1e-2)
    elif label == "logsumexp":
        src = f"dg.logsumexp({x}, axis={axis!r}, keepdims={kd})"
    elif label == "sum_method":
        src = f"{x}.sum(axis={axis!r}, keepdims={kd})" if g.coin(0.5) else f"{x}.sum()"
    elif label == "mean_dim":
        d = axis_spec(g, nd, single=True)
        src = f"{x}.mean(dim={d}, keepdim={kd})" if nd else f"{x}.mean()"
    else:
        src = f"dg.{label}({x}, axis={axis!r}, keepdims={kd})"
    g.emit("reduce_" + label, src, check)


def b_scan_arg(g):
    x = g.pick_float(min_rank=1)
    nd = len(g.shape_of(x))
    ax = axis_spec(g, nd, single=True)
    r = g.rng.random()
    if r < 0.4:
        g.emit("cumsum", f"dg.cumsum({x}, axis={ax})")
    elif r < 0.7:
        fn = g.choice(["argmax", "argmin"])
        kd = g.coin(0.3)
        g.emit(fn, f"dg.{fn}({x}, axis={ax}, keepdims={kd})", lambda A: distinct_along(A[x], ax))
    else:
        fn = g.choice(["softmax", "log_softmax"])
        g.emit(fn, f"F.{fn}({x}, axis={ax})" if g.coin(0.5) else f"{x}.{fn}({ax})")


def b_matmul(g):
    x = g.pick_float(min_rank=1, max_rank=3)
    s = g.shape_of(x)
    k = s[-1]
    r = g.rng.random()
    n = int(g.rng.integers(1, 5))
    if r < 0.5:
        # y: (k, n), (k,), or batched (b, k, n)
        kind = g.choice(["kn", "k", "bkn"])
        if kind == "kn":
            ys = (k, n)
        elif kind == "k":
            ys = (k,)
        else:
            ys = ((s[0] if len(s) == 3 else int(g.rng.integers(1, 4))), k, n)
        cands = g.values(lambda sh, d: d.kind == "f" and sh == ys)
        y = g.choice(cands) if cands and g.coin(0.5) else g.new_input(ys)
        src = g.choice([f"{x} @ {y}", f"dg.matmul({x}, {y})"])
        if len(s) == 2 and len(ys) == 2 and g.coin(0.3):
            src = f"dg.mm({x}, {y})"
        g.emit("matmul", src)
    elif r < 0.65 and len(s) >= 1:
        # 1-D on the left: (m,) @ (..., m, n)
        y = g.new_input((k, n))
        xv = x if len(s) == 1 else f"{x}.reshape(-1)[:{k}]"
        if len(s) != 1:
            need(int(np.prod(s)) >= k)
        g.emit("matmul_vec", f"{xv} @ {y}")
    elif r < 0.8:
        w = g.new_input((n, k))
        b = g.new_input((n,)) if g.coin(0.6) else None
        g.emit("linear", f"F.linear({x}, {w}, {b})" if b else f"F.linear({x}, {w})")
    else:
        if len(s) == 2:
            y = g.new_input((k, n))
            eq = g.choice(["ij,jk->ik", "ij,jk->ki", "ij,jk->i"])
            g.emit("einsum", f"dg.einsum({eq!r}, {x}, {y})")
        elif len(s) == 3:
            y = g.new_input((s[0], k, n))
            g.emit("einsum", f"dg.einsum('bij,bjk->bik', {x}, {y})")
        else:
            y = g.new_input((k,))
            g.emit("einsum", f"dg.einsum('i,i->', {x}, {y})")


def _factor(g, shape):
    """A random shape with the same number of elements."""
    n = int(np.prod(shape))
    dims = []
    rest = n
    while rest > 1 and len(dims) < 4:
        divs = [d for d in range(2, rest + 1) if rest % d == 0]
        d = g.choice(divs) if g.coin(0.7) else rest
        dims.append(d)
        rest //= d
    if g.coin(0.3):
        dims.insert(int(g.rng.integers(len(dims) + 1)), 1)
    g.rng.shuffle(dims)
    return tuple(dims)


def b_shape(g):
    x = g.pick(lambda s, d: True, lambda: g.new_input(g.shape()))
    s = g.shape_of(x)
    nd = len(s)
    r = g.choice(["reshape", "reshape_m1", "transpose", "permute", "swapaxes", "T", "flatten", "unsqueeze",
                  "squeeze", "expand", "broadcast_to", "flip", "moveaxis", "repeat", "view"])
    if r in ("reshape", "view"):
        t = _factor(g, s)
        g.emit(r, f"{x}.{r}{t!r}" if len(t) != 1 else f"{x}.{r}({t[0]})")
    elif r == "reshape_m1":
        t = list(_factor(g, s))
        need(len(t) >= 1)
        t[int(g.rng.integers(len(t)))] = -1
        g.emit("reshape", f"dg.reshape({x}, {tuple(t)!r})")
    elif r == "transpose":
        need(nd >= 2)
        a, b = (int(v) for v in g.rng.choice(nd, 2, replace=False))
        g.emit("transpose", f"{x}.transpose({a}, {b})")
    elif r == "permute":
        need(nd >= 2)
        p = tuple(int(v) for v in g.rng.permutation(nd))
        g.emit("permute", f"{x}.permute{p!r}" if g.coin(0.5) else f"dg.transpose({x}, axes={p!r})")
    elif r == "swapaxes":
        need(nd >= 2)
        g.emit("swapaxes", f"dg.swapaxes({x}, 0, -1)")
    elif r == "T":
        need(nd >= 2)
        g.emit("T", f"{x}.T" if g.coin(0.5) else f"{x}.mT")
    elif r == "flatten":
        need(nd >= 2)
        st = int(g.rng.integers(nd - 1))
        g.emit("flatten", f"dg.flatten({x}, {st})" if g.coin(0.5) else f"{x}.flatten()")
    elif r == "unsqueeze":
        a = int(g.rng.integers(-nd - 1, nd + 1))
        g.emit("unsqueeze", f"{x}.unsqueeze({a})" if g.coin(0.7) else f"{x}[None]")
    elif r == "squeeze":
        ones = [i for i, d in enumerate(s) if d == 1]
        need(ones)
        g.emit("squeeze", f"{x}.squeeze({g.choice(ones)})" if g.coin(0.6) else f"dg.squeeze({x})")
    elif r in ("expand", "broadcast_to"):
        t = tuple(int(g.rng.integers(2, 4)) if d == 1 else d for d in s)
        if g.coin(0.4) and nd < 4:
            t = (int(g.rng.integers(1, 4)),) + t
        need(np.prod(t) <= g.max_size)
        if r == "expand":
            g.emit("expand", f"{x}.expand{t!r}" if len(t) > 1 else f"{x}.expand({t[0] if t else ''})")
        else:
            g.emit("broadcast_to", f"dg.broadcast_to({x}, {t!r})")
    elif r == "flip":
        need(nd >= 1)
        ax = axis_spec(g, nd)
        g.emit("flip", f"dg.flip({x}, {ax!r})" if ax is not None else f"dg.flip({x})")
    elif r == "moveaxis":
        need(nd >= 2)
        g.emit("moveaxis", f"dg.moveaxis({x}, 0, {nd - 1})")
    elif r == "repeat":
        need(nd >= 1)
        reps = tuple(int(g.rng.integers(1, 3)) for _ in range(nd))
        need(np.prod(reps) * np.prod(s) <= g.max_size)
        g.emit("repeat", f"{x}.repeat{reps!r}" if nd > 1 else f"{x}.repeat({reps[0]})")


def b_join_split(g):
    x = g.pick_float(min_rank=1)
    s = g.shape_of(x)
    nd = len(s)
    r = g.choice(["concat", "stack", "split", "chunk", "narrow", "pad", "pad_np"])
    ax = int(g.rng.integers(nd))
    if r in ("concat", "stack"):
        if r == "concat":
            s2 = list(s)
            s2[ax] = int(g.rng.integers(1, 4))
            s2 = tuple(s2)
        else:
            s2 = s
        cands = [n for n in g.values(lambda sh, d: d.kind == "f" and sh == s2)]
        y = g.choice(cands) if cands and g.coin(0.6) else g.new_input(s2)
        parts = [x, y] + ([f"{x} * 2.0"] if g.coin(0.3) else [])
        fn = "dg.concat" if r == "concat" else "dg.stack"
        if r == "concat" and g.coin(0.3):
            fn = "dg.cat"
        g.emit(r, f"{fn}([{', '.join(parts)}], axis={ax})")
    elif r in ("split", "chunk"):
        need(s[ax] >= 2)
        if r == "split":
            k = int(g.rng.integers(1, s[ax]))
            pieces = -(-s[ax] // k)
            i = int(g.rng.integers(pieces))
            g.emit("split", f"dg.split({x}, {k}, axis={ax})[{i}]")
        else:
            c = int(g.rng.integers(2, s[ax] + 1))
            i = 0
            g.emit("chunk", f"{x}.chunk({c}, {ax})[{i}]")
    elif r == "narrow":
        start = int(g.rng.integers(s[ax]))
        length = int(g.rng.integers(1, s[ax] - start + 1))
        g.emit("narrow", f"dg.narrow({x}, {ax}, {start}, {length})")
    elif r == "pad":
        k = int(g.rng.integers(1, min(nd, 2) + 1))
        p = tuple(int(v) for v in g.rng.integers(0, 3, 2 * k))
        val = g.choice([0.0, 0.5, -1.0])
        g.emit("pad", f"dg.pad({x}, {p!r}, value={val})")
    else:
        widths = tuple((int(a), int(b)) for a, b in g.rng.integers(0, 2, (nd, 2)))
        g.emit("pad", f"dg.pad({x}, {widths!r})")


def _basic_index(g, shape):
    parts = []
    for d in shape:
        r = g.rng.random()
        if r < 0.3:
            parts.append(str(int(g.rng.integers(-d, d))))
        elif r < 0.75:
            a = int(g.rng.integers(0, d))
            b = int(g.rng.integers(a + 1, d + 1))
            step = g.choice([1, 1, 2])
            parts.append(f"{a}:{b}" + (f":{step}" if step != 1 else ""))
        elif r < 0.85:
            parts.append("::-1")
        else:
            parts.append(":")
    if parts and g.coin(0.15):
        parts.insert(int(g.rng.integers(len(parts) + 1)), "None")
    if len(parts) >= 2 and g.coin(0.2):
        parts = ["..."] + parts[-1:]
    return "[" + ", ".join(parts) + "]" if parts else "[...]"


def b_index(g):
    x = g.pick_float(min_rank=1)
    s = g.shape_of(x)
    nd = len(s)
    r = g.choice(["basic", "basic", "int_array", "int_array_2", "take_along_axis", "gather", "index_select",
                  "embedding", "scatter_add", "index_put", "setitem", "one_hot"])
    if r == "basic":
        g.emit("getitem", f"{x}{_basic_index(g, s)}")
    elif r == "int_array":
        ax = int(g.rng.integers(nd))
        idx = g.rng.integers(-s[ax], s[ax], int(g.rng.integers(1, 5))).tolist()
        pre = ":, " * ax
        g.emit("getitem_adv", f"{x}[{pre}{const_src(np.array(idx))}]" if g.coin(0.5) else f"{x}[{pre}{idx!r}]")
    elif r == "int_array_2":
        need(nd >= 2)
        n = int(g.rng.integers(1, 4))
        i0 = g.rng.integers(0, s[0], n).tolist()
        i1 = g.rng.integers(0, s[1], n).tolist()
        g.emit("getitem_adv2", f"{x}[{i0!r}, {i1!r}]")
    elif r in ("take_along_axis", "gather"):
        ax = int(g.rng.integers(nd))
        ishape = list(s)
        ishape[ax] = int(g.rng.integers(1, 4))
        idx = g.rng.integers(0, s[ax], ishape)
        if r == "gather":
            g.emit("gather", f"dg.gather({x}, {ax}, {const_src(idx)})")
        else:
            g.emit("take_along_axis", f"dg.take_along_axis({x}, {const_src(idx)}, {ax})")
    elif r == "index_select":
        ax = int(g.rng.integers(nd))
        idx = g.rng.integers(0, s[ax], int(g.rng.integers(1, 5)))
        g.emit("index_select", f"dg.index_select({x}, {ax}, {const_src(idx)})")
    elif r == "embedding":
        need(nd == 2)
        idx = g.rng.integers(0, s[0], tuple(int(v) for v in g.rng.integers(1, 4, int(g.rng.integers(1, 3)))))
        g.emit("embedding", f"F.embedding({const_src(idx)}, {x})")
    elif r == "scatter_add":
        ax = int(g.rng.integers(nd))
        ishape = list(s)
        ishape[ax] = int(g.rng.integers(1, 4))
        idx = g.rng.integers(0, s[ax], ishape)
        src = g.new_input(tuple(ishape))
        g.emit("scatter_add", f"dg.scatter_add({x}, {ax}, {const_src(idx)}, {src})")
    elif r == "index_put":
        ax0 = s[0]
        idx = g.rng.integers(0, ax0, int(g.rng.integers(1, 3)))
        idx = np.unique(idx)
        v = g.new_input((len(idx),) + tuple(s[1:]))
        g.emit("index_put", f"dg.index_put({x}, ({const_src(idx)},), {v})")
    elif r == "setitem":
        i = int(g.rng.integers(s[0]))
        vshape = partner_shape(g, tuple(s[1:]))
        v = g.new_input(vshape) if g.coin(0.6) else None
        val = v if v else "0.5"
        g.emit("setitem", ["{t} = " + f"{x} * 1.0", "{t}[" + str(i) + "] = " + val])
    else:
        xi = g.pick(lambda sh, d: d.kind in "iu" and len(sh) <= 2, lambda: g.new_input(g.shape(2), "int64", "pos"))
        def check(A):
            need(_f64(A[xi]).min() >= 0 and _f64(A[xi]).max() < 6)
        g.emit("one_hot", f"dg.one_hot({xi}, 6).astype('float32')" if g.coin(0.5) else
               f"dg.one_hot({xi}, 6, dtype='float32')", check)


def b_inplace(g):
    x = g.pick_float()
    y = pick_partner(g, x)
    if y.isidentifier():
        need(np.broadcast_shapes(g.shape_of(x), g.shape_of(y)) == g.shape_of(x))
    op = g.choice(["+=", "-=", "*=", "add_", "mul_"])
    if op in ("add_", "mul_"):
        body = ["{t} = " + f"{x} * 1.0", "{t}." + op + f"({y})"]
    else:
        body = ["{t} = " + f"{x} + 0.0", "{t} " + op + f" {y}"]

    def check(A):
        out = np.broadcast_shapes(np.shape(A[x]), np.shape(_val(A, y)))
        need(tuple(out) == tuple(np.shape(A[x])))
    g.emit("inplace_" + op.strip("=_"), body, check)


def b_nn(g):
    r = g.choice(["layer_norm", "mse", "cross_entropy", "bce", "softmax_chain", "mlp"])
    if r == "layer_norm":
        x = g.pick_float(min_rank=1)
        s = g.shape_of(x)
        k = int(g.rng.integers(1, min(2, len(s)) + 1))
        ns = tuple(s[-k:])
        need(int(np.prod(ns)) >= 2)
        if g.coin(0.5):
            w, b = g.new_input(ns), g.new_input(ns)
            src = f"F.layer_norm({x}, {ns!r}, {w}, {b})"
        else:
            src = f"F.layer_norm({x}, {ns!r})"

        def check(A):
            a = _f64(A[x]).reshape(-1, int(np.prod(ns)))
            need(a.var(axis=1).min() > 1e-2)
        g.emit("layer_norm", src, check)
    elif r == "mse":
        x = g.pick_float()
        y = g.new_input(g.shape_of(x))
        g.emit("mse_loss", f"F.mse_loss({x}, {y}, reduction={g.choice(['mean', 'sum', 'none'])!r})")
    elif r == "cross_entropy":
        x = g.pick_float(min_rank=2, max_rank=2)
        n, c = g.shape_of(x)
        need(c >= 2)
        t = g.rng.integers(0, c, n)
        ls = g.choice([0.0, 0.0, 0.1])
        g.emit("cross_entropy", f"F.cross_entropy({x}, {const_src(t)}, label_smoothing={ls})")
    elif r == "bce":
        x = g.pick_float(min_rank=1)
        t = g.rng.random(g.shape_of(x)).astype("float32")
        g.emit("bce_with_logits", f"F.binary_cross_entropy_with_logits({x}, {const_src(t)})")
    elif r == "softmax_chain":
        x = g.pick_float(min_rank=1)
        ax = axis_spec(g, len(g.shape_of(x)), single=True)
        g.emit("softmax_chain", f"(F.softmax({x}, axis={ax}) * {x}).sum(axis={ax})")
    else:
        x = g.pick_float(min_rank=1, max_rank=3)
        k = g.shape_of(x)[-1]
        h = int(g.rng.integers(2, 6))
        w1, b1, w2 = g.new_input((h, k)), g.new_input((h,)), g.new_input((2, h))
        act = g.choice(["dg.tanh", "dg.sigmoid", "dg.gelu", "dg.silu", "dg.relu"])
        check = None
        if act == "dg.relu":  # ReLU's backward and its bias gradient: the where(mask, g, 0) C loops
            def check(A):
                away(_f64(A[x]) @ _f64(A[w1]).T + _f64(A[b1]), (0.0,), 2e-3)
        g.emit("mlp_relu" if act == "dg.relu" else "mlp", f"F.linear({act}(F.linear({x}, {w1}, {b1})), {w2})", check)


def b_conv(g):
    def make4():
        return g.new_input((int(g.rng.integers(1, 3)), int(g.rng.integers(1, 4)), int(g.rng.integers(4, 7)),
                            int(g.rng.integers(4, 7))))
    r = g.choice(["conv2d", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "conv1d"])
    if r == "conv1d":
        x = g.pick(lambda s, d: d.kind == "f" and len(s) == 3 and s[-1] >= 3,
                   lambda: g.new_input((int(g.rng.integers(1, 3)), int(g.rng.integers(1, 4)), int(g.rng.integers(4, 8)))))
        n, c, l = g.shape_of(x)
        o, k = int(g.rng.integers(1, 4)), int(g.rng.integers(1, min(3, l) + 1))
        w = g.new_input((o, c, k))
        pad = int(g.rng.integers(0, k))
        g.emit("conv1d", f"dg.conv1d({x}, {w}, padding={pad}, stride={g.choice([1, 2])})")
        return
    x = g.pick(lambda s, d: d.kind == "f" and len(s) == 4 and s[-1] >= 3 and s[-2] >= 3, make4)
    n, c, h, wd = g.shape_of(x)
    if r == "conv2d":
        groups = c if (c > 1 and g.coin(0.25)) else 1
        o = groups * int(g.rng.integers(1, 3))
        k = int(g.rng.integers(1, 4))
        need(k <= min(h, wd))
        w = g.new_input((o, c // groups, k, k))
        b = g.new_input((o,)) if g.coin(0.5) else None
        stride, pad, dil = g.choice([1, 1, 2]), int(g.rng.integers(0, k)), g.choice([1, 1, 2])
        need((h + 2 * pad - dil * (k - 1) - 1) >= 0 and (wd + 2 * pad - dil * (k - 1) - 1) >= 0)
        bias = f", {b}" if b else ""
        g.emit("conv2d", f"dg.conv2d({x}, {w}{bias}, stride={stride}, padding={pad}, dilation={dil}, groups={groups})")
    elif r == "max_pool2d":
        k = g.choice([2, 3])
        stride = g.choice([None, 1, 2])
        pad = int(g.rng.integers(0, k // 2 + 1))
        g.emit("max_pool2d", f"dg.max_pool2d({x}, {k}, stride={stride}, padding={pad})", lambda A: distinct(A[x]))
    elif r == "avg_pool2d":
        k = g.choice([2, 3])
        pad = int(g.rng.integers(0, k // 2 + 1))
        cip = g.choice([True, False]) if pad == 0 else True   # False with padding: not supported (an error)
        g.emit("avg_pool2d", f"dg.avg_pool2d({x}, {k}, stride={g.choice([None, 1, 2])}, padding={pad}, "
                             f"count_include_pad={cip})")
    else:
        oh, ow = int(g.rng.integers(1, h + 1)), int(g.rng.integers(1, wd + 1))
        g.emit("adaptive_avg_pool2d", f"dg.adaptive_avg_pool2d({x}, ({oh}, {ow}))")


def b_control(g):
    r = g.choice(["cond", "cond", "cond_tuple", "fori", "while"])
    x = g.pick_float(dtype=np.dtype("float32"))   # branches must agree in dtype (float64 would differ)
    ops1 = ["dg.tanh({a})", "{a} * 2.0", "dg.sigmoid({a}) + {a}", "-{a}", "dg.sin({a}) * {a}"]
    if r in ("cond", "cond_tuple"):
        p = g.pick_float(dtype=np.dtype("float32"))
        thr = float(np.round(g.rng.uniform(-0.5, 0.5), 2))
        pred = f"{p}.sum() > {thr}" if g.coin(0.7) else f"{p}.mean() < {thr}"
        check = lambda A: away(_f64(A[p]).sum() - thr if ".sum()" in pred else _f64(A[p]).mean() - thr,
                               (0.0,), 2e-3)
        t1, t2 = g.choice(ops1), g.choice(ops1)
        if r == "cond":
            y = g.pick_float(dtype=np.dtype("float32"))
            if _bshape(g, x, y) and g.coin(0.6):
                src = (f"dg.cond({pred}, lambda a, b: {t1.format(a='a')} + b, "
                       f"lambda a, b: {t2.format(a='a')} * b, {x}, {y})")
                # both branches must agree in shape: a + b and a * b broadcast alike
            else:
                src = f"dg.cond({pred}, lambda a: {t1.format(a='a')}, lambda a: {t2.format(a='a')}, {x})"
            g.emit("cond", src, check)
        else:
            # a branch reads an outer value (captured) and returns a tuple
            src = (f"dg.cond({pred}, lambda a: (a * {p}.mean(), a + 1.0), "
                   f"lambda a: (a - 1.0, {t2.format(a='a')}), {x})[{int(g.rng.integers(2))}]")
            g.emit("cond_tuple", src, check)
    elif r == "fori":
        n = int(g.rng.integers(1, 4))
        body = g.choice(["dg.tanh(s) * 0.9 + i * 0.1", "s * 0.5 + dg.sin(s)", "s + i"])
        g.emit("fori_loop", f"dg.fori_loop(0, {n}, lambda i, s: {body}, {x})")
    else:
        n = int(g.rng.integers(1, 4))
        src = (f"dg.while_loop(lambda s: s[0] < {n}, lambda s: (s[0] + 1, dg.tanh(s[1]) * 1.5), "
               f"(dg.tensor(0), {x}.detach()))[1]")
        g.emit("while_loop", src)


def b_constant(g):
    """Constants created inside the function (folding fodder) mixed with live values."""
    x = g.pick_float()
    s = g.shape_of(x)
    r = g.rng.random()
    if r < 0.4:
        c = g.draw(partner_shape(g, s), "float32")
        g.emit("const_mix", f"{x} * ({const_src(c)} + 1.0) - dg.exp({const_src(c)})")
    elif r < 0.7:
        g.emit("full_like", g.choice([f"{x} + dg.ones_like({x}) * 2.0", f"dg.zeros_like({x}) + {x} * 0.5",
                                      f"dg.full_like({x}, 3.0) - {x}"]))
    else:
        n = int(np.prod(s)) if s else 1
        g.emit("arange", f"{x} + dg.arange({n}, dtype='float32').reshape({s!r}) * 0.1" if s
               else f"{x} + dg.tensor(0.5)")


def b_algebra(g):
    """Patterns the simplifier rewrites (x*1, x+0, double transpose, reshape chains, x-x, ...)."""
    x = g.pick_float()
    s = g.shape_of(x)
    pats = [f"{x} * 1.0 + 0.0", f"({x} - {x}) + {x} * 2.0", f"-(-{x})", f"{x} / 1.0", f"{x} ** 1",
            f"{x} * 0.0 + 1.0", f"dg.exp(dg.log(dg.abs({x}) + 1.0))", f"{x} + {x}", f"({x} * {x}) / ({x} * {x} + 1.0)"]
    if len(s) >= 2:
        pats += [f"{x}.T.T", f"{x}.transpose(0, 1).transpose(1, 0) + 1.0", f"{x}.reshape(-1).reshape{s!r}",
                 f"({x}.mT @ {x}).sum(-1)"]
    g.emit("algebra", g.choice(pats), lambda A: None)


def b_captured(g):
    """A parameter-like global read by the program: elementwise, matmul or a linear layer."""
    x = g.pick_float(min_rank=1, max_rank=3, dtype=np.dtype("float32"))
    s = g.shape_of(x)
    r = g.rng.random()
    if r < 0.35:
        w = g.new_captured(partner_shape(g, s))
        g.emit("captured_mul", f"{x} * {w} + {w}")
    elif r < 0.65:
        w = g.new_captured((s[-1], int(g.rng.integers(1, 5))))
        g.emit("captured_matmul", f"dg.tanh({x} @ {w})")
    elif r < 0.9:
        # an optimizer-like update written back into the parameter, then read: the compiled function
        # computes it into the parameter's own buffer (a C loop with `out=`, no restrict)
        w = g.new_captured(s)
        g.emit("captured_update", ["with dg.no_grad():", f"    {w}.mul_(0.9).add_({x}.detach() * 0.1)",
                                   "{t} = " + f"{x} * {w}"])
    else:
        w, b = g.new_captured((int(g.rng.integers(1, 5)), s[-1])), None
        g.emit("captured_linear", f"F.linear({x}, {w}) * 0.5")


def b_kernel_layouts(g):
    """Chains in the layouts the C kernels read differently: a size-1 tensor, a trailing row broadcast
    along the leading axes, float64, and a ReLU layer (ReLU's backward and its bias gradient)."""
    r = g.choice(["scalar", "row", "float64", "relu_layer", "relu_layer", "xent"])
    if r == "xent":  # log_softmax + nll_loss as one C call each way
        x = g.pick_float(min_rank=2, max_rank=2, dtype=np.dtype("float32"))
        n, c = g.shape_of(x)
        need(c >= 2)
        g.emit("cross_entropy", f"F.cross_entropy({x}, {const_src(g.rng.integers(0, c, n))})")
        return
    if r == "relu_layer":
        x = g.pick_float(min_rank=2, max_rank=2, dtype=np.dtype("float32"))
        h = int(g.rng.integers(2, 9))
        w, b = g.new_input((h, g.shape_of(x)[1])), g.new_input((h,))

        def check(A):
            away(_f64(A[x]) @ _f64(A[w]).T + _f64(A[b]), (0.0,), 2e-3)
        g.emit("relu_layer", f"dg.relu(F.linear({x}, {w}, {b}))", check)
        return
    x = g.pick_float(min_rank=1)
    s = g.shape_of(x)
    if r == "scalar":
        c = g.new_input((1,) * int(g.rng.integers(0, len(s) + 2)))
        g.emit("scalar_chain", f"dg.tanh({x} * {c} + 0.5) * {c}")
    elif r == "row":
        k = int(g.rng.integers(1, len(s) + 1))
        row = g.new_input(s[len(s) - k:])
        g.emit("row_chain", f"dg.sigmoid({x} * {row} - 0.25) + {row}")
    else:  # float64 inputs (a cast inside the chain would keep it out of C)
        a, b = g.new_input(s, "float64"), g.new_input(partner_shape(g, s), "float64")
        g.emit("float64_chain", f"dg.tanh({a} * 1.5 - {b}) * 2.0")


def b_cse(g):
    """The same subexpression twice (CSE fodder), once via another spelling."""
    x = g.pick_float()
    e = g.choice(["dg.tanh({x})", "dg.sigmoid({x}) * 2.0", "({x} * 3.0).sum()"])
    a, b = e.format(x=x), e.format(x=x)
    g.emit("cse", f"{a} + {b} * 0.5")


BUILDERS = [
    (b_unary, 10), (b_binary, 9), (b_compare_where, 3), (b_rounding, 1), (b_int, 3), (b_cast, 2),
    (b_reduce, 6), (b_scan_arg, 3), (b_matmul, 4), (b_shape, 6), (b_join_split, 3), (b_index, 5),
    (b_inplace, 2), (b_nn, 3), (b_conv, 2), (b_control, 2.5), (b_constant, 1.5), (b_algebra, 2), (b_cse, 1),
    (b_captured, 2), (b_kernel_layouts, 3),
]
FOCUS = {b_kernel_layouts, b_nn, b_captured}


def generate(seed, big=False, focus=False, **kw):
    """A valid program for `seed` (deterministic); `big`: starting from an input above a C threshold;
    `focus`: mostly of the builders that reach the C kernels' layouts."""
    for attempt in range(50):
        g = Gen(seed * 1000 + attempt, big=big, focus=focus, **kw)
        try:
            prog = g.build()
        except Reject:
            continue
        prog.seed = seed
        prog.attempt = attempt
        if eager_grads_ok(prog):
            return prog
    raise RuntimeError(f"could not generate a program for seed {seed}")


# ---- running a program in every mode --------------------------------------------------------------

def tensors(prog, world, requires_grad):
    prog.set_world(world)
    ts = []
    for i, a in enumerate(prog.arrays(world)):
        t = dg.tensor(a.copy())
        if requires_grad and a.dtype.kind == "f":
            t.requires_grad_(True)
        ts.append(t)
    return ts


def params_of(prog):
    """The values of the tensors the program reads from its globals (an in-place update writes them)."""
    return [t.numpy().copy() for t in getattr(prog, "_cap", {}).values()]


def updated_params(prog, world):
    """params_of(prog), only those the last call changed."""
    return [p for p, (_, a0, a1) in zip(params_of(prog), prog.captured)
            if not np.array_equal(p, a0 if world == 0 else a1)]


def as_arrays(out):
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in outs]


def loss_of(prog, outs):
    total = None
    for name, o in zip(prog.outputs, outs):
        w = prog.loss_weights.get(name)
        if w is None or not o.requires_grad:
            continue
        term = (o * dg.tensor(w)).sum()
        total = term if total is None else total + term.astype(total.dtype)
    return total


def grads_of(prog, fn, world):
    xs = tensors(prog, world, True)
    outs = fn(*xs)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    loss = loss_of(prog, outs)
    gp = [xs[i] for i in prog.grad_positions()]
    if not gp:
        return None
    if loss is None:   # nothing requires grad on this input set (e.g. a cond took the branch that reads
        return [None] * len(gp)   # no grad input): no gradient, which compare() reads as zeros
    gs = dg.autograd.grad(loss, gp, allow_unused=True)
    return [None if g is None else g.numpy() for g in gs]


def grad_function(prog, fn):
    """x -> gradients, written so @dg.function traces autograd.grad inside."""
    positions = prog.grad_positions()

    def gradfn(*xs):
        xs = list(xs)
        for i in positions:
            xs[i] = xs[i].detach().requires_grad_(True)
        outs = fn(*xs)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        loss = loss_of(prog, outs)
        if loss is None:
            return tuple(dg.zeros_like(xs[i]) for i in positions)
        gs = dg.autograd.grad(loss, [xs[i] for i in positions], allow_unused=True)
        return tuple(dg.zeros_like(xs[i]) if g is None else g for i, g in zip(positions, gs))
    return gradfn


def eager_grads_ok(prog):
    try:
        fn = prog.build()
        for w in (0, 1):
            gs = grads_of(prog, fn, w)
            if gs is None:
                continue
            for g in gs:
                if g is not None and (not np.isfinite(g).all() or (g.size and np.abs(g).max() > MAX_GRAD)):
                    return False
    except Exception:
        GEN_ERRORS["eager_grad"] += 1
        GEN_ERROR_EXAMPLES.setdefault("eager_grad", traceback.format_exc(limit=3))
        return False
    return True


def compare(got, want, what):
    """None when they agree, else a one-line description."""
    if len(got) != len(want):
        return f"{what}: {len(got)} outputs, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        if a is None and b is None:
            continue
        if a is None or b is None:
            # a gradient the other mode says is absent must be zero
            z = b if a is None else a
            if np.abs(z).max(initial=0) > 0:
                return f"{what}[{i}]: one side has no gradient, the other {np.abs(z).max():.3g}"
            continue
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return f"{what}[{i}]: shape {a.shape}, expected {b.shape}"
        if a.dtype != b.dtype:
            return f"{what}[{i}]: dtype {a.dtype}, expected {b.dtype}"
        if a.dtype.kind in "fc":
            if not np.isfinite(a).all():
                return f"{what}[{i}]: non-finite values {a.ravel()[~np.isfinite(a.ravel())][:3]}"
            rtol, atol = RTOL.get(a.dtype, 1e-3), ATOL.get(a.dtype, 1e-4)
            scale = max(1.0, float(np.abs(b).max(initial=0)))
            err = np.abs(a.astype(np.float64) - b.astype(np.float64))
            bad = err > atol * scale + rtol * np.abs(b)
            if bad.any():
                j = int(np.argmax(np.where(bad, err, -1)))
                return (f"{what}[{i}]: max abs error {err.max():.3g} (scale {scale:.3g}); at flat index {j}: "
                        f"{a.ravel()[j]!r} vs {b.ravel()[j]!r}")
        elif not np.array_equal(a, b):
            j = int(np.argmax((a != b).ravel()))
            return f"{what}[{i}]: values differ at flat index {j}: {a.ravel()[j]!r} vs {b.ravel()[j]!r}"
    return None


_ORT = None


def grown(arrays, sizes=None):
    """The inputs with every axis of a size in `sizes` (default: every axis longer than 1) one element
    longer, for running a model exported with dynamic axes at sizes other than the traced ones. The new
    elements repeat the last slice (floats scaled by 1.01, so no new ties), which keeps them inside the
    domains the generator chose."""
    out = []
    for a in arrays:
        for ax in range(a.ndim):
            if a.shape[ax] > 1 and (sizes is None or a.shape[ax] in sizes):
                edge = np.take(a, [-1], axis=ax)
                if a.dtype.kind == "f":
                    edge = (edge * 1.01).astype(a.dtype)
                a = np.concatenate([a, edge], axis=ax)
        out.append(np.array(a, order="C"))  # ascontiguousarray would make a 0-d input 1-d
    return out


def ort_run(model_bytes, prog, world, arrays=None):
    global _ORT
    if _ORT is None:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        _ORT = (ort, so)
    ort, so = _ORT
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    names = [n for n, _, _ in prog.inputs]
    arrays = dict(zip(names, prog.arrays(world) if arrays is None else arrays))
    feed = {i.name: arrays[i.name] for i in sess.get_inputs() if i.name in arrays}
    return sess.run(None, feed)


@dataclass
class Failure:
    seed: int
    variant: str
    detail: str
    program: Program


def variants_for(quick=False, rng=None):
    """The compiled variants: all passes, none, and each pass switched off."""
    vs = [("compiled", {}), ("no_passes", {"passes": ()})]
    offs = [(f"no_{p}", {"disable": (p,)}) for p in PASS_NAMES]
    if quick and rng is not None:
        offs = [offs[int(i)] for i in rng.choice(len(offs), 2, replace=False)]
    return vs + offs


def check_program(prog, quick=False, onnx=True, grads=True, only=None, symbolic=False):
    """Run every mode; returns ([Failure], checks run, primitives seen)."""
    fails = []
    checks = 0
    prims = set()
    fn = prog.build()
    rng = np.random.default_rng(abs(prog.seed) + 7)
    ref, ref_params = {}, {}
    for w in (0, 1):
        ref[w] = as_arrays(fn(*tensors(prog, w, True)))
        ref_params[w] = params_of(prog)
    eager_g = {w: grads_of(prog, fn, w) for w in (0, 1)} if grads else {}

    def record(variant, thunk):
        nonlocal checks
        if only is not None and variant != only:
            return
        checks += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detail = thunk()
        except Exception as e:
            tb = traceback.format_exc(limit=-4)
            detail = f"raised {type(e).__name__}: {str(e)[:500]}\n{tb}"
        if detail:
            fails.append(Failure(prog.seed, variant, detail, prog))

    for name, kw in variants_for(quick, rng):
        def run_variant(kw=kw, name=name):
            cf = dg.function(fn, **kw)
            msgs = []
            for w in (0, 1):
                out = as_arrays(cf(*tensors(prog, w, True)))
                m = (compare(out, ref[w], f"world {w} output")
                     or compare(params_of(prog), ref_params[w], f"world {w} captured tensors after the call"))
                if m:
                    return m
            # a third call with the first inputs (the cached trace run again)
            m = compare(as_arrays(cf(*tensors(prog, 0, True))), ref[0], "third call output")
            if m:
                return m
            # every variant: unoptimized graphs hold the primitives, optimized ones the kernel ops
            try:
                for e in cf._entries:
                    for g in (e.graph, getattr(e, "fwd_graph", None), getattr(e, "bwd_graph", None)):
                        if g is not None:
                            prims.update(n.op.name for n in _walk_nodes(g))
            except Exception:
                pass
            if grads and eager_g.get(0) is not None:
                for w in (0, 1):
                    gs = grads_of(prog, cf, w)
                    m = compare(gs, eager_g[w], f"world {w} gradient")
                    if m:
                        return m
            for e in cf._entries:   # the backward graphs exist now
                for g in (getattr(e, "fwd_graph", None), getattr(e, "bwd_graph", None)):
                    if g is not None:
                        prims.update(n.op.name for n in _walk_nodes(g))
            return "; ".join(msgs) or None
        record(name, run_variant)

    def no_grad_call():
        cf = dg.function(fn)
        for w in (0, 1):
            with dg.no_grad():
                out = as_arrays(cf(*tensors(prog, w, True)))
            m = compare(out, ref[w], f"world {w} no_grad output")
            if m:
                return m
    record("no_grad", no_grad_call)

    def run_symbolic():
        # every dim declared variable: one trace with symbolic sizes must still be right at these sizes
        specs = [dg.TensorSpec([None if d > 1 or SIZE_ONE_SYMBOLIC else d for d in a.shape], a.dtype)
                 for a in prog.arrays(0)]
        cf = dg.function(fn, input_signature=specs)
        try:
            out0 = as_arrays(cf(*tensors(prog, 0, True)))
        except dg.DualgraphError:
            SKIPS["symbolic (needs concrete sizes)"] += 1
            return None
        except TypeError as e:
            # the documented signal for "this code needs a concrete size"; some ops give it as a bare
            # operator TypeError ('<' not supported between 'Dim' and 'int'): counted, not a mismatch
            if "symbolic dim" in str(e) and "no integer value" in str(e):
                SKIPS["symbolic (needs concrete sizes)"] += 1
            elif "Dim" in str(e):
                SKIPS["symbolic (needs concrete sizes, unclear TypeError)"] += 1
                SKIP_EXAMPLES.setdefault(str(e), prog.seed)
            else:
                raise
            return None
        m = compare(out0, ref[0], "world 0 symbolic-shape output")
        if m:
            return m
        m = compare(as_arrays(cf(*tensors(prog, 1, True))), ref[1], "world 1 symbolic-shape output")
        if m:
            return m
        if grads and eager_g.get(0) is not None:
            for w in (0, 1):
                m = compare(grads_of(prog, cf, w), eager_g[w], f"world {w} symbolic-shape gradient")
                if m:
                    return m
    if symbolic or only == "symbolic":
        record("symbolic", run_symbolic)

    if grads and eager_g.get(0) is not None:
        def traced_grad():
            cg = dg.function(grad_function(prog, fn))
            for w in (0, 1):
                gs = as_arrays(cg(*tensors(prog, w, False)))
                want = [np.zeros_like(prog.arrays(w)[i]) if e is None else e
                        for i, e in zip(prog.grad_positions(), eager_g[w])]
                m = compare(gs, want, f"world {w} traced gradient")
                if m:
                    return m
        record("traced_grad", traced_grad)

    if onnx:
        def model_for(cache, w, export):
            """Captured tensors are initializers holding their values at export: export per world."""
            key = w if prog.captured else 0
            if key not in cache:
                cache[key] = export(tuple(tensors(prog, w, False))).SerializeToString()
            return cache[key]

        def run_onnx():
            cache = {}
            for w in (0, 1):
                data = model_for(cache, w, lambda xs: dg.onnx.export(fn, xs, None,
                                                                     input_names=[n for n, _, _ in prog.inputs]))
                out = ort_run(data, prog, w)
                with dg.no_grad():
                    want = as_arrays(fn(*tensors(prog, w, False)))
                # a program that updates a captured tensor in place exports its new value as an extra output
                m = (compare([np.asarray(o) for o in out[:len(want)]], want, f"world {w} onnx output")
                     or (len(out) > len(want) and compare([np.asarray(o) for o in out[len(want):]],
                                                          updated_params(prog, w),
                                                          f"world {w} onnx captured tensors after the call")))
                if m:
                    return m
        record("onnx", run_onnx)

        def eager_at(arrays):
            """fn's outputs on these inputs (world 0's captured tensors), or None where eager refuses
            them or gives non-finite values."""
            prog.set_world(0)
            try:
                with dg.no_grad():
                    out = as_arrays(fn(*[dg.tensor(a.copy()) for a in arrays]))
            except dg.DualgraphError:
                return None
            finally:
                prog.set_world(0)
            return out if all(np.isfinite(o).all() for o in out if o.dtype.kind == "f") else None

        def run_onnx_dynamic():
            # shapes become computations in the model; it must be right at these sizes and at others.
            # The dynamic axes are those of every size the program also runs at one larger (the others
            # are tied to a captured tensor or a constant, where export must refuse); size-1 dims stay
            # static unless SIZE_ONE_DYNAMIC (broadcasting and squeeze depend on a size being 1; see
            # test_fuzz_findings.py)
            names = [n for n, _, _ in prog.inputs]
            sizes = sorted({d for a in prog.arrays(0) for d in a.shape if d > 1})
            free = {d for d in sizes if eager_at(grown(prog.arrays(0), {d})) is not None}
            dyn = {n: [ax for ax in range(a.ndim) if a.shape[ax] in free or (SIZE_ONE_DYNAMIC and a.shape[ax] == 1)]
                   for n, a in zip(names, prog.arrays(0))}
            dyn = {n: axes for n, axes in dyn.items() if axes}
            if not dyn:
                SKIPS["onnx_dynamic (no input size can change)"] += 1
                return None
            cache = {}
            for w in (0, 1):
                try:
                    data = model_for(cache, w, lambda xs: dg.onnx.export(fn, xs, None, input_names=names,
                                                                         dynamic_axes=dyn))
                except dg.DualgraphError:
                    SKIPS["onnx_dynamic (needs concrete sizes)"] += 1
                    return None
                out = ort_run(data, prog, w)
                with dg.no_grad():
                    want = as_arrays(fn(*tensors(prog, w, False)))
                m = compare([np.asarray(o) for o in out[:len(want)]], want, f"world {w} onnx (dynamic axes) output")
                if m:
                    return m
            # the point of dynamic axes: the same model at other sizes, against eager at those sizes
            bigger = grown(prog.arrays(0), free)
            want = eager_at(bigger)
            if want is None:  # each size can grow alone, not all together
                SKIPS["onnx_dynamic at other sizes (eager refuses them together)"] += 1
                return None
            out = ort_run(model_for(cache, 0, None), prog, 0, arrays=bigger)
            RESIZED["onnx_dynamic"] += 1
            return compare([np.asarray(o) for o in out[:len(want)]], want,
                           "onnx (dynamic axes) output at sizes one larger than traced")
        if not quick or rng.random() < 0.5:
            record("onnx_dynamic", run_onnx_dynamic)
        if grads and eager_g.get(0) is not None and (not quick or rng.random() < 0.3):
            def run_onnx_grad():
                cache = {}
                for w in (0, 1):
                    data = model_for(cache, w, lambda xs: dg.onnx.export(
                        grad_function(prog, fn), xs, None, input_names=[n for n, _, _ in prog.inputs]))
                    out = ort_run(data, prog, w)
                    want = [np.zeros_like(prog.arrays(w)[i]) if e is None else e
                            for i, e in zip(prog.grad_positions(), eager_g[w])]
                    m = compare([np.asarray(o) for o in out[:len(want)]], want, f"world {w} onnx gradient")
                    if m:
                        return m
            record("onnx_grad", run_onnx_grad)
    return fails, checks, prims


def _walk_nodes(graph):
    for n in graph.nodes:
        yield n
        for sub in (getattr(n, "subgraphs", None) or {}).values():
            yield from _walk_nodes(sub)
        body = (getattr(n, "attrs", None) or {}).get("body")
        if body is not None and hasattr(body, "nodes"):
            yield from _walk_nodes(body)


# ---- reduction and reproducers ----------------------------------------------------------------------

def _deps(prog, upto_target):
    """Indices of the lines `upto_target` depends on (a tiny DCE on the source)."""
    need_names = {upto_target}
    keep = []
    for i in range(len(prog.lines) - 1, -1, -1):
        target, src = prog.lines[i]
        if target in need_names:
            keep.append(i)
            text = " ".join(src)
            for t, _ in prog.lines[:i]:
                if _mentions(text, t):
                    need_names.add(t)
    return sorted(keep), need_names


def _mentions(text, name):
    import re
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def sub_program(prog, target):
    keep, names = _deps(prog, target)
    lines = [prog.lines[i] for i in keep]
    inputs = [inp for inp in prog.inputs if any(_mentions(" ".join(s), inp[0]) for _, s in lines)]
    p = Program(prog.seed, inputs, lines, [target], [prog.ops[i] for i in keep] if len(prog.ops) == len(prog.lines)
                else [])
    p.captured = [c for c in prog.captured if any(_mentions(" ".join(s), c[0]) for _, s in lines)]
    rng = np.random.default_rng(abs(prog.seed))
    if target in prog.loss_weights:
        p.loss_weights[target] = prog.loss_weights[target]
    else:
        # a weight for the new output (it was an intermediate)
        with dg.no_grad():
            fn = p.build()
            out = as_arrays(fn(*tensors(p, 0, False)))[0]
        if out.dtype.kind == "f":
            p.loss_weights[target] = rng.uniform(0.5, 1.5, out.shape).astype(np.float32).astype(out.dtype)
    return p


def reduce_failure(f):
    """The smallest prefix program (its dependencies only) that still fails the same variant."""
    prog = f.program
    candidates = [t for t, _ in prog.lines]
    best = prog
    for t in candidates:
        try:
            p = sub_program(prog, t)
        except Exception:
            continue
        if len(p.lines) >= len(best.lines) and best is not prog:
            continue
        try:
            fails, _, _ = check_program(p, onnx=f.variant.startswith("onnx"), grads=True, only=f.variant)
        except Exception:
            continue
        if fails:
            return Failure(f.seed, f.variant, fails[0].detail, p)
    # also try the program with a single output
    if len(prog.outputs) > 1:
        p = sub_program(prog, prog.outputs[0])
        fails, _, _ = check_program(p, onnx=f.variant.startswith("onnx"), only=f.variant)
        if fails:
            return Failure(f.seed, f.variant, fails[0].detail, p)
    return f


REPRO = '''"""Fuzzer reproducer: seed {seed}, variant {variant!r}.

{detail}

Run: .venv/bin/python {fname}    (exits 1 while the mismatch is there)
"""
import sys

import numpy as np

import dualgraph as dg
import dualgraph.nn.functional as F
from dualgraph.kernels import ckernel

# the sizes from which fused chains ran as C when the fuzzer found this (0: every eligible chain)
ckernel.MIN_SIZE, ckernel.MIN_SIZE_SHORT = {min_sizes}

{source}
INPUTS = {{
{inputs}
}}
LOSS_WEIGHTS = {{
{weights}
}}
CAPTURED = {{   # tensors prog reads from its globals; switching worlds updates them in place
{captured}
}}
for _name, (_a0, _a1) in CAPTURED.items():
    globals()[_name] = dg.tensor(_a0.copy())
VARIANT = {variant!r}
OUTPUTS = {outputs!r}


def tensors(world, requires_grad):
    for name, arrays in CAPTURED.items():
        with dg.no_grad():
            globals()[name][...] = dg.tensor(arrays[world])
    out = []
    for a in INPUTS[world]:
        t = dg.tensor(a.copy())
        if requires_grad and a.dtype.kind == "f":
            t.requires_grad_(True)
        out.append(t)
    return out


def loss_of(outs):
    total = None
    for name, o in zip(OUTPUTS, outs):
        if name in LOSS_WEIGHTS and o.requires_grad:
            term = (o * dg.tensor(LOSS_WEIGHTS[name])).sum()
            total = term if total is None else total + term.astype(total.dtype)
    return total


def grads(fn, world):
    xs = tensors(world, True)
    outs = fn(*xs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gp = [x for x in xs if x.requires_grad]
    loss = loss_of(outs)
    gs = dg.autograd.grad(loss, gp, allow_unused=True) if loss is not None else [None] * len(gp)
    return [np.zeros(x.shape, x.dtype) if g is None else g.numpy() for x, g in zip(gp, gs)]


def gradfn(*xs):
    xs = [x.detach().requires_grad_(True) if x.dtype.kind == "f" else x for x in xs]
    outs = prog(*xs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gp = [x for x in xs if x.requires_grad]
    loss = loss_of(outs)
    gs = dg.autograd.grad(loss, gp, allow_unused=True) if loss is not None else [None] * len(gp)
    return tuple(dg.zeros_like(x) if g is None else g for x, g in zip(gp, gs))


def values(fn, world, requires_grad=True):
    outs = fn(*tensors(world, requires_grad))
    return [o.numpy() for o in (outs if isinstance(outs, tuple) else (outs,))]


def onnx_values(f, world, dynamic=False, run_on=None):
    """Export at world's inputs, run in onnxruntime on `run_on` (default: the same inputs)."""
    import onnxruntime as ort
    free = free_sizes() if dynamic else set()
    dyn = {{n: [ax for ax in range(a.ndim) if a.shape[ax] in free] for n, a in zip([{names}], INPUTS[0])}}
    dyn = {{n: axes for n, axes in dyn.items() if axes}} if dynamic else None
    model = dg.onnx.export(f, tuple(tensors(world, False)), None, input_names=[{names}], dynamic_axes=dyn)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = dict(zip([{names}], INPUTS[world] if run_on is None else run_on))
    return sess.run(None, {{i.name: feed[i.name] for i in sess.get_inputs()}})


def grown(arrays, sizes=None):
    out = []
    for a in arrays:
        for ax in range(a.ndim):
            if a.shape[ax] > 1 and (sizes is None or a.shape[ax] in sizes):
                edge = np.take(a, [-1], axis=ax)
                a = np.concatenate([a, (edge * 1.01).astype(a.dtype) if a.dtype.kind == "f" else edge], axis=ax)
        out.append(np.array(a, order="C"))  # ascontiguousarray would make a 0-d input 1-d
    return out


def eager_at(arrays):
    tensors(0, False)  # the captured tensors as world 0 has them
    try:
        with dg.no_grad():
            outs = prog(*[dg.tensor(a.copy()) for a in arrays])
    except dg.DualgraphError:
        return None
    outs = [o.numpy() for o in (outs if isinstance(outs, tuple) else (outs,))]
    return outs if all(np.isfinite(o).all() for o in outs if o.dtype.kind == "f") else None


def free_sizes():
    """The input sizes the program also runs at one larger: the fuzzer declares those axes dynamic."""
    return {{d for d in {{d for a in INPUTS[0] for d in a.shape if d > 1}} if eager_at(grown(INPUTS[0], {{d}})) is not None}}


def kw_of(variant):
    if variant == "no_passes":
        return {{"passes": ()}}
    if variant.startswith("no_"):
        return {{"disable": (variant[3:],)}}
    return {{}}


def main():
    worst = 0.0
    for world in (0, 1, "grown") if VARIANT == "onnx_dynamic" else (0, 1):
        if world == "grown":  # the dynamic-axes model at sizes one larger than traced
            bigger = grown(INPUTS[0], free_sizes())
            got = onnx_values(prog, 0, dynamic=True, run_on=bigger)
            want = eager_at(bigger)
        elif VARIANT == "onnx":
            got, want = onnx_values(prog, world), values(prog, world, False)
        elif VARIANT == "onnx_grad":
            got, want = onnx_values(gradfn, world), grads(prog, world)
        elif VARIANT == "symbolic":
            specs = [dg.TensorSpec([None if d > 1 else d for d in a.shape], a.dtype) for a in INPUTS[world]]
            cf = dg.function(prog, input_signature=specs)
            got, want = values(cf, world) + grads(cf, world), values(prog, world) + grads(prog, world)
        elif VARIANT == "onnx_dynamic":
            got, want = onnx_values(prog, world, dynamic=True), values(prog, world, False)
        elif VARIANT == "no_grad":
            with dg.no_grad():
                got, want = values(dg.function(prog), world), values(prog, world)
        elif VARIANT == "traced_grad":
            got, want = values(dg.function(gradfn), world, False), grads(prog, world)
        else:
            cf = dg.function(prog, **kw_of(VARIANT))
            got, want = values(cf, world) + grads(cf, world), values(prog, world) + grads(prog, world)
        for i, (a, b) in enumerate(zip(got, want)):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape or a.dtype != b.dtype:
                print(f"world {{world}} result {{i}}: {{a.dtype}}{{list(a.shape)}} vs eager {{b.dtype}}{{list(b.shape)}}")
                worst = np.inf
                continue
            err = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(initial=0))
            print(f"world {{world}} result {{i}}: max abs error {{err:.3g}}")
            worst = max(worst, err / max(1.0, float(np.abs(b.astype(np.float64)).max(initial=0))))
    print("mismatch" if worst > 2e-3 else "agrees")
    return 1 if worst > 2e-3 else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_repro(f, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    fname = os.path.join(out_dir, f"seed{f.seed}_{f.variant}.py")
    prog = f.program

    def arr_src(a):
        return f"np.array({a.tolist()!r}, dtype={str(a.dtype)!r})"
    inputs = "\n".join([f"    {w}: [" + ", ".join(arr_src(a) for a in prog.arrays(w)) + "]," for w in (0, 1)])
    weights = "\n".join(f"    {k!r}: {arr_src(v)}," for k, v in prog.loss_weights.items())
    captured = "\n".join(f"    {n!r}: [{arr_src(a0)}, {arr_src(a1)}]," for n, a0, a1 in prog.captured)
    detail = f.detail.replace('"""', "'''")
    text = REPRO.format(seed=f.seed, variant=f.variant, detail=detail, fname=fname, source=prog.source(),
                        min_sizes=f"{ckernel.MIN_SIZE}, {ckernel.MIN_SIZE_SHORT}",
                        inputs=inputs, weights=weights, outputs=prog.outputs, captured=captured,
                        names=", ".join(repr(n) for n, _, _ in prog.inputs))
    with open(fname, "w") as fh:
        fh.write(text)
    return fname


# ---- which C loops ran -------------------------------------------------------------------------------
# Every C path of the library, by the counter that says it ran: the fused elementwise kernel by the input
# layouts and types its loop read (ckernel.RUNS), where(mask, g, 0) and its column sums (where_zero.RUNS),
# cross-entropy as one call each way (fused_xent.RUNS), and the log_softmax and nll_loss row loops (their
# C functions, counted by wrapping them for the run). "...numpy" entries count calls that went to numpy
# instead (another layout); they are reported, not required.
C_PATHS = ("fused:full", "fused:scalar", "fused:row", "fused:bool", "fused:float64", "fused:aliased",
           "where_zero", "where_colsum", "xent:forward", "xent:backward",
           "log_softmax:forward", "log_softmax:backward", "nll:forward", "nll:backward")
C_COUNTS = Counter()   # calls of the wrapped row loops (log_softmax, nll_loss)


class _CountedLoops:
    """A native.Loops stand-in whose functions count their calls into C_COUNTS."""

    def __init__(self, loops, names):
        self.loops, self.names, self.wrapped = loops, names, {}

    def __call__(self, dtype):
        fns = self.loops(dtype)
        if fns is None:
            return None
        w = self.wrapped.get(id(fns))
        if w is None:
            w = self.wrapped[id(fns)] = {name: self._counted(fn, self.names.get(name, name))
                                         for name, fn in fns.items()}
        return w

    @staticmethod
    def _counted(fn, label):
        def call(*args):
            C_COUNTS[label] += 1
            return fn(*args)
        return call


@contextlib.contextmanager
def counting_c_loops():
    """Count the log_softmax and nll_loss C loops' calls (the other paths count themselves)."""
    saved = _softmax._ROWS, _loss._NLL
    _softmax._ROWS = _CountedLoops(saved[0], {"lsm_forward": "log_softmax:forward",
                                              "lsm_backward": "log_softmax:backward"})
    _loss._NLL = _CountedLoops(saved[1], {"nll_forward": "nll:forward", "nll_backward": "nll:backward"})
    try:
        yield
    finally:
        _softmax._ROWS, _loss._NLL = saved


def c_counts():
    """Calls so far of every C path (and of the numpy fallbacks of the paths that have one)."""
    c = Counter({f"fused:{k}": v for k, v in ckernel.runs().items()})
    c.update({(k if k != "numpy" else "where:numpy"): v for k, v in where_zero.RUNS.items()})
    c.update({f"xent:{k}": v for k, v in fused_xent.RUNS.items()})
    c.update(C_COUNTS)
    return c


@contextlib.contextmanager
def c_thresholds(size):
    """ckernel's thresholds set to `size` (None: the library's own) within the block."""
    if size is None:
        yield
    else:
        with ckernel.thresholds(size, size):
            yield


# ---- the campaign -----------------------------------------------------------------------------------

@dataclass
class Summary:
    programs: int = 0
    checks: int = 0
    ops: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)
    by_variant: Counter = field(default_factory=Counter)
    primitives: set = field(default_factory=set)
    seconds: float = 0.0
    big_programs: int = 0
    focused_programs: int = 0
    lowered_programs: int = 0
    c_programs: Counter = field(default_factory=Counter)   # C path -> programs in which it ran
    c_calls: Counter = field(default_factory=Counter)      # C path -> calls
    c_checks: Counter = field(default_factory=Counter)     # C path -> checks of the programs it ran in
    c_failures: Counter = field(default_factory=Counter)   # C path -> mismatches in programs it ran in

    def text(self, verbose=False):
        from dualgraph.ops import REGISTRY
        lines = [f"programs fuzzed: {self.programs}   checks: {self.checks}   mismatches: {len(self.failures)}   "
                 f"({self.seconds:.0f} s)",
                 f"ops per program: {sum(self.ops.values()) / max(1, self.programs):.1f}   builder labels used: "
                 f"{len(self.ops)}",
                 f"primitives seen in compiled graphs: {len(self.primitives & set(REGISTRY))} of {len(REGISTRY)}"]
        missing = sorted(set(REGISTRY) - self.primitives)
        if missing:
            lines.append("  not seen: " + ", ".join(missing))
        lines.append(f"C kernel paths ({self.lowered_programs} programs with thresholds lowered to 0, "
                     f"{self.big_programs} with an input above the real threshold, {self.focused_programs} "
                     f"focused on the kernels' layouts"
                     f"{'' if native_available() else '; no C compiler here: none can run'}):")
        for path in C_PATHS + tuple(sorted(set(self.c_programs) - set(C_PATHS))):
            lines.append(f"  {path:22s} programs {self.c_programs[path]:5d}   calls {self.c_calls[path]:7d}   "
                         f"checks {self.c_checks[path]:6d}   mismatches {self.c_failures[path]}")
        if self.by_variant:
            lines.append("mismatches by variant: " + ", ".join(f"{k}={v}" for k, v in sorted(self.by_variant.items())))
        for f in self.failures[:20]:
            lines.append(f"  seed {f.seed} {f.variant}: {f.detail.splitlines()[0][:200]}")
        if RESIZED:
            lines.append("run at sizes one larger than traced: " + ", ".join(f"{k}={v}" for k, v in RESIZED.items()))
        if SKIPS:
            lines.append("skipped (documented limits): " + ", ".join(f"{k}={v}" for k, v in SKIPS.most_common()))
        if GEN_ERRORS:
            lines.append("generator rejections by error (builder bugs, not findings): " +
                         ", ".join(f"{k}={v}" for k, v in GEN_ERRORS.most_common(10)))
            if verbose:
                for k, v in GEN_ERROR_EXAMPLES.items():
                    lines.append(f"  {k}: {v[:300]}")
        return "\n".join(lines)


def run(programs=100, seed=0, out=None, quick=False, onnx=True, verbose=False, reduce=True, max_ops=None,
        time_budget=None, symbolic=False, c_threshold="mixed", big_every=10):
    """Fuzz `programs` programs from `seed` on. c_threshold: the size from which fused chains run as C
    (ckernel.thresholds) while a program is checked: an int for every program, None for the library's
    own, "mixed" for 0 on even seeds (every eligible chain in C, whatever its size) and the library's own
    on odd ones (the numpy kernels below it). Every `big_every`-th program starts from an input just
    above the real threshold (0: none)."""
    s = Summary()
    t0 = time.time()
    with counting_c_loops():
        for k in range(programs):
            if time_budget is not None and time.time() - t0 > time_budget:
                break
            sd = seed + k
            big, focus = program_kind(sd, big_every)
            prog = generate(sd, max_ops=max_ops, big=big, focus=focus)
            size = (0 if sd % 2 == 0 else None) if c_threshold == "mixed" else c_threshold
            before = c_counts()
            with c_thresholds(size):
                fails, checks, prims = check_program(prog, quick=quick, onnx=onnx, symbolic=symbolic)
                ran = c_counts() - before
                for f in fails:
                    if reduce:
                        try:
                            f = reduce_failure(f)
                        except Exception:
                            pass
                    s.failures.append(f)
                    s.by_variant[f.variant] += 1
                    if out:
                        path = write_repro(f, out)
                        if verbose:
                            print(f"  wrote {path}", flush=True)
                    if verbose:
                        print(f"seed {sd} {f.variant}: {f.detail.splitlines()[0][:300]}", flush=True)
            s.programs += 1
            s.big_programs += big
            s.focused_programs += focus
            s.lowered_programs += size is not None and size < C_SIZES[0]
            s.checks += checks
            s.ops.update(prog.ops)
            s.primitives |= prims
            for path, n in ran.items():
                s.c_programs[path] += 1
                s.c_calls[path] += n
                s.c_checks[path] += checks
                s.c_failures[path] += len(fails)
            if verbose and (k + 1) % 100 == 0:
                print(f"... {k + 1} programs, {len(s.failures)} mismatches, {time.time() - t0:.0f} s", flush=True)
    s.seconds = time.time() - t0
    return s


def program_kind(seed, big_every=10):
    """(big, focus) for a seed: every big_every-th program is big, the one five before it focused."""
    if not big_every:
        return False, False
    return seed % big_every == big_every - 1, big_every > 1 and seed % big_every == (big_every - 1) // 2


def native_available():
    from dualgraph.kernels import native
    return native.available()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fuzz_failures")
    ap.add_argument("--quick", action="store_true", help="two random pass-off variants per program, not all six")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--symbolic", action="store_true",
                    help="also trace every program with every dim symbolic (input_signature of Nones)")
    ap.add_argument("--no-reduce", action="store_true")
    ap.add_argument("--max-ops", type=int, default=None)
    ap.add_argument("--show", type=int, default=None, metavar="SEED", help="print the program for SEED and exit")
    ap.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--c-threshold", default="mixed", metavar="N|default|mixed",
                    help="elements from which fused chains run as C while fuzzing: N for every program, "
                         "'default' for the library's thresholds, 'mixed' (the default) for 0 on even seeds "
                         "and the library's on odd ones")
    ap.add_argument("--big-every", type=int, default=10, metavar="K",
                    help="every K-th program starts from an input above the real C threshold, and another in K "
                         "is made mostly of the builders that reach the C kernels' layouts (0: neither)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.show is not None:
        big, focus = program_kind(args.show, args.big_every)
        prog = generate(args.show, max_ops=args.max_ops, big=big, focus=focus)
        print(prog.source())
        return 0
    s = run(args.programs, args.seed, args.out, quick=args.quick, onnx=not args.no_onnx, verbose=args.verbose,
            reduce=not args.no_reduce, max_ops=args.max_ops, time_budget=args.time_budget, symbolic=args.symbolic,
            c_threshold={"mixed": "mixed", "default": None}.get(args.c_threshold) if not args.c_threshold.isdigit()
            else int(args.c_threshold), big_every=args.big_every)
    print(s.text(args.verbose))
    if s.failures and args.out:
        print(f"reproducers in {args.out}/")
    return 1 if s.failures else 0


if __name__ == "__main__":
    sys.exit(main())
