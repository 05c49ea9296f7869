"""Fused elementwise kernels as generated C (built by .native): one loop over the elements, all ops of
the chain in registers, vectorized by the compiler (glibc's libmvec gives SIMD exp/log), single-threaded.

The loop body is generated from the op records' `expr` fields: each node's expression with its
operands substituted, math functions given libm's float suffix for float32. Measured on tanh-GELU
over 1M float32 (docs/performance.md) this is several times faster than the best numpy-ufunc chain,
which makes one memory pass per op. It is used only where its results match numpy's: float32/float64
chains of ops that have an expression, with bool values only as inputs, comparison results, outputs
and conditions (an operand an expression writes `{i} ?`), optionally ending in reductions (records with
`reduce`: add, max, min) of chain values over one set of axes.

The loop runs over the broadcast shape of all the inputs as a nest of loops over its dims (size-1 dims
dropped, neighbours that every operand walks as one merged, so a contiguous chain is one flat loop and
a bias row or a column of per-row statistics gives two). Inputs are read by their strides, so any
broadcast (size-1 dims anywhere, a column, a stride-0 view) and non-contiguous inputs run in C; each
value is computed in the loop of the innermost dim its inputs move along (an (N, 1) value of an (N, C)
chain once per row) and stored there. A reduction accumulates the values where they are computed (see
`_source` for the accuracy of sums). The loop's shape must have at least MIN_SIZE elements, or
MIN_SIZE_SHORT for a chain of at most two `arith` ops (below that the numpy kernel's lower call cost
wins; see `min_size`). Anything else, or no compiler, falls back to the numpy kernel.

MIN_SIZE and MIN_SIZE_SHORT are read when a graph is compiled and when a kernel first sees a call
signature, so `thresholds(0, 0)` (a context manager) makes every eligible chain of the functions
compiled inside it take the C loop: the fuzzer and tests use it to run the C path on small tensors.
`RUNS` counts the C loop's calls by input layout: "full", "scalar", "row" (a block of trailing dims),
"bcast" (any other broadcast), "strided" (a non-contiguous input), "reduce" (with reductions).
"""
import contextlib
import ctypes
import re
from collections import Counter

import numpy as np

from .native import address as _address, build, compiler as _compiler

MIN_SIZE = 1 << 13
MIN_SIZE_SHORT = 1 << 16
# C loop calls by layout ("full,row,float32": the input modes, "aliased" when written into a donated
# buffer, "bool" with a bool input or output, the float type), and "numpy" for each call signature big
# enough for C whose layout sent it to the numpy kernel; `runs()` counts them by label
RUNS = Counter()


def runs():
    """RUNS by single label: {"full": calls reading a full-size input, "row": ..., "numpy": ...}."""
    out = Counter()
    for key, n in RUNS.items():
        for label in key.split(","):
            out[label] += n
    return out


# gcc contracts `t = a * b; u = t + c` into one fused multiply-add across statements by default: one
# rounding instead of numpy's two, so results would differ from the numpy kernel in the last bit
_NO_CONTRACT = ('#ifdef __clang__\n#pragma STDC FP_CONTRACT OFF\n#else\n#pragma GCC optimize ("fp-contract=off")\n'
                '#endif\n')
_TYPES = {np.dtype(np.float32): ("float", "f"), np.dtype(np.float64): ("double", "")}
_BOOL = np.dtype(np.bool_)
_CALL = re.compile(r"\b([a-z_][a-z0-9_]*)\(")
# libm functions glibc's libmvec has SIMD versions of, declared so the loop vectorizes through them
_SIMD = ("exp", "log", "erf")


def c_expr(expr, suffix):
    """An op's expression template with libm's suffix on its math functions (expf for float32)."""
    return _CALL.sub(lambda m: m.group(1) + suffix + "(", expr) if suffix else expr


def conditions(expr):
    """Operand positions the expression reads as a truth value (`{i} ?`)."""
    return {int(i) for i in re.findall(r"\{(\d+)\}\s*\?", expr)}


def _is_number(v):
    return v.weak and isinstance(v.const, (int, float)) and not isinstance(v.const, bool) and np.isfinite(v.const)


def eligible(body):
    """The C type of the chain's floats, or None when it cannot be a C kernel. Bool values may come in
    as inputs or from comparisons, and be outputs or conditions; everything else is that float. A
    reduction (a record with `reduce`) accumulates a float value of the chain."""
    vals = [v for n in body.nodes for v in list(n.inputs) + n.outputs if v is not None and not v.weak]
    dts = {v.aval.dtype for v in vals + list(body.inputs)} - {_BOOL}
    if len(dts) != 1 or next(iter(dts)) not in _TYPES:
        return None
    for n in body.nodes:
        if n.op.reduce:
            if n.op.reduce not in _ACCUMULATE or n.inputs[0].aval.dtype == _BOOL:
                return None
            continue
        expr = n.op.expr
        if not expr or n.attrs or any(v is None or (v.weak and not _is_number(v)) or (not v.weak and v.const is not None)
                                      for v in n.inputs):
            return None
        conds = conditions(expr)
        for i, v in enumerate(n.inputs):
            if (not v.weak and v.aval.dtype == _BOOL) != (i in conds):
                return None
    return _TYPES[next(iter(dts))]


# how a reduction record's `reduce` accumulates: (identity, numpy dtype of the accumulator or None for the
# value's own). Sums accumulate in double for float32 too; max/min keep the value's type, and a NaN in the
# reduced elements makes the result NaN, as numpy's max/min
_ACCUMULATE = {"add": (0.0, np.float64), "max": (-np.inf, None), "min": (np.inf, None)}
_BLOCK = 1024  # elements per partial sum of a reduced inner dim (see _source)


def _source(body, ctype, suffix, plan_key, alias=False):
    """C for the chain over a loop nest of `dims` dims (after merging dims every operand walks
    contiguously), from `plan_key` = (dims, reduced, vary, unit):

      reduced[k]   dim k is reduced (by every reduction of the body)
      vary[p][k]   operand p (inputs, then value outputs, then one accumulator per reduction) moves along
                   dim k (its stride there is not 0); a value is computed in the loop of the innermost dim
                   its inputs move along, so an (N, 1) value of an (N, C) loop is computed N times, not N*C
      unit[p]      operand p's stride along the innermost dim is 1 (the load vectorizes)

    The function takes the dims' sizes `sh`, the operands' element strides `st` (operand p, dim k at
    st[p * dims + k]) and the operands' data pointers. A reduction over the innermost dim sums in blocks of
    _BLOCK elements into a double, several lanes at a time, each block's sum then added to the result: the
    error grows with the number of blocks, not of elements. Over outer dims each step is added to the
    accumulator, as numpy adds rows. Accumulators start at the identity (the caller fills them)."""
    dims, reduced, vary, unit = plan_key
    restrict = "" if alias else " restrict"
    reds = [n for n in body.nodes if n.op.reduce]
    vals = [v for v in body.outputs if not v.producer.op.reduce]
    n_in, n_val = len(body.inputs), len(vals)
    inner = dims - 1
    buckets = {k: [] for k in range(-1, dims)}   # statements run once per step of loop k (-1: before all)
    after = []                                    # statements after the innermost loop, in loop dims - 2
    setup = []                                    # accumulator locals before the innermost loop
    clauses = []

    def ty(v):
        return "unsigned char" if v.aval.dtype == _BOOL else ctype

    def level(p):
        return max((k for k in range(dims) if vary[p][k]), default=-1)

    def at(p, k):
        """Operand p's element offset inside loop k."""
        if k == inner and vary[p][inner]:
            base = at(p, inner - 1) if inner else "0"
            step = "j" if unit[p] else f"j * s{p}_{inner}"
            return step if base == "0" else f"{base} + {step}"
        last = max((d for d in range(min(k, inner - 1) + 1) if vary[p][d]), default=-1)
        return f"q{p}_{last}" if last >= 0 else "0"
    params, names, levels = [], {}, {}
    for i, v in enumerate(body.inputs):
        params.append(f"const {ty(v)}*{restrict} a{i}")
        names[id(v)], levels[id(v)] = f"x{i}", level(i)
        buckets[level(i)].append(f"{ty(v)} x{i} = a{i}[{at(i, level(i))}];")

    def ref(v):
        if v.weak:
            return f"(({ctype}){float(v.const)!r}{suffix})"
        return names[id(v)]
    red_index = {id(n): k for k, n in enumerate(reds)}
    for k, n in enumerate(body.nodes):
        if n.op.reduce:
            continue
        lv = max((levels[id(v)] for v in n.inputs if not v.weak), default=-1)
        expr = c_expr(n.op.expr, suffix).format(*[ref(v) for v in n.inputs], t=ctype)
        names[id(n.outputs[0])], levels[id(n.outputs[0])] = f"t{k}", lv
        buckets[lv].append(f"{ty(n.outputs[0])} t{k} = {expr};")
    for j, v in enumerate(vals):
        p = n_in + j
        params.append(f"{ty(v)}*{restrict} o{j}")
        buckets[level(p)].append(f"o{j}[{at(p, level(p))}] = {names[id(v)]};")
    for n in reds:
        r = red_index[id(n)]
        p = n_in + n_val + r
        kind = n.op.reduce
        acc = "double" if _ACCUMULATE[kind][1] is not None else ctype
        params.append(f"{acc}*{restrict} r{r}")
        x = names[id(n.inputs[0])]
        if reduced[inner]:
            # the innermost dim is reduced: lanes of partial results, merged after the loop
            dest = f"r{r}[{at(p, inner - 1) if inner else '0'}]"
            if kind == "add":
                setup.append(f"double u{r} = 0;")
                clauses.append(f"reduction(+:u{r})")
                buckets[inner].append(f"u{r} += (double){x};")
                after.append(f"{dest} += u{r};")
            else:
                cmp = ">" if kind == "max" else "<"
                setup.append(f"{ctype} u{r} = {'-' if kind == 'max' else ''}INFINITY; int w{r} = 0;")
                clauses.append(f"reduction({kind}:u{r}) reduction(|:w{r})")
                buckets[inner].append(f"u{r} = {x} {cmp} u{r} ? {x} : u{r}; w{r} |= {x} != {x};")
                after.append(f"{{ {ctype} c = {dest}; {dest} = (w{r} || c != c) ? NAN : (u{r} {cmp} c ? u{r} : c); }}")
        else:
            dest = f"r{r}[{at(p, inner)}]"
            if kind == "add":
                buckets[inner].append(f"{dest} += (double){x};")
            else:
                cmp = ">" if kind == "max" else "<"
                buckets[inner].append(f"{{ {ctype} c = {dest}; {dest} = ({x} {cmp} c || {x} != {x}) ? {x} : c; }}")
    n_ops = n_in + n_val + len(reds)
    lines = [f"    const int64_t n{k} = sh[{k}];" for k in range(dims)]
    lines += [f"    const int64_t s{p}_{k} = st[{p * dims + k}];" for p in range(n_ops) for k in range(dims)
              if vary[p][k] and not (k == inner and unit[p])]
    lines += ["    " + ln for ln in buckets[-1]]
    ind = "    "
    for k in range(inner):
        lines.append(f"{ind}for (int64_t i{k} = 0; i{k} < n{k}; i{k}++) {{")
        ind += "    "
        for p in range(n_ops):
            if vary[p][k]:
                prev = max((d for d in range(k) if vary[p][d]), default=-1)
                base = f"q{p}_{prev} + " if prev >= 0 else ""
                lines.append(f"{ind}const int64_t q{p}_{k} = {base}i{k} * s{p}_{k};")
        lines += [ind + ln for ln in buckets[k]]
    simd = "#pragma omp simd" + "".join(" " + c for c in clauses)
    body_lines = [ind + "    " + ln for ln in buckets[inner]]
    if reduced[inner]:
        lines.append(f"{ind}for (int64_t jb = 0; jb < n{inner}; jb += {_BLOCK}) {{")
        lines += [ind + "    " + ln for ln in setup]
        lines.append(f"{ind}    const int64_t je = n{inner} - jb < {_BLOCK} ? n{inner} : jb + {_BLOCK};")
        lines += [f"{ind}    {simd}", f"{ind}    for (int64_t j = jb; j < je; j++) {{"]
        lines += ["    " + ln for ln in body_lines] + [f"{ind}    }}"]
        lines += [ind + "    " + ln for ln in after] + [f"{ind}}}"]
    else:
        lines += [f"{ind}{simd}", f"{ind}for (int64_t j = 0; j < n{inner}; j++) {{"] + body_lines + [f"{ind}}}"]
    for k in range(inner - 1, -1, -1):
        ind = ind[:-4]
        lines.append(f"{ind}}}")
    called = {f for n in body.nodes if not n.op.reduce for f in _CALL.findall(n.op.expr)}
    decl = "".join(f"#pragma omp declare simd notinbranch\nextern {ctype} {fn}{suffix}({ctype});\n"
                   for fn in _SIMD if fn in called)
    return (_NO_CONTRACT + "#include <math.h>\n#include <stdint.h>\n" + decl +
            f"void kernel(const int64_t* restrict sh, const int64_t* restrict st, {', '.join(params)}) {{\n" +
            "\n".join(lines) + "\n}\n")


@contextlib.contextmanager
def thresholds(min_size=None, min_size_short=None):
    """Within the block, graphs compiled (and call signatures first seen) use these sizes from which a
    chain runs as C (None: unchanged); `thresholds(0, 0)` sends every eligible non-empty chain to C.
    Restored on exit."""
    global MIN_SIZE, MIN_SIZE_SHORT
    saved = MIN_SIZE, MIN_SIZE_SHORT
    MIN_SIZE = saved[0] if min_size is None else int(min_size)
    MIN_SIZE_SHORT = saved[1] if min_size_short is None else int(min_size_short)
    try:
        yield
    finally:
        MIN_SIZE, MIN_SIZE_SHORT = saved


def min_size(body):
    """Elements from which the C loop beats the numpy kernel (measured per call through ctypes, float32):
    a 3-op bias+relu+mask chain is 0.69x numpy's time at 8K elements and 0.41x at 32K, a 6-op chain
    0.83x and 0.54x; but an SGD update `w - g * lr` written into w is 1.25x at 32K, 0.95x at 64K and
    0.71x at 200K, so a chain of at most two arithmetic ops waits for MIN_SIZE_SHORT (at 64K, one call
    instead of two wins inside a training step, where each call runs with cold caches). A trailing
    reduction does not count: a sum of squares or of products is numpy's multiply and ufunc.reduce, which
    the loop beats from about 32K elements (64K: 0.6x)."""
    chain = [n for n in body.nodes if not n.op.reduce]
    short = len(chain) <= 2 and all(n.op.arith for n in chain)
    return MIN_SIZE_SHORT if short else MIN_SIZE


def _shapes(body, arrays):
    """The run-time shape of every value of the body (its inputs' shapes broadcast, reductions applied),
    or None when they do not broadcast (the numpy kernel then raises numpy's error, which the executor
    names)."""
    shapes = {id(v): a.shape for v, a in zip(body.inputs, arrays)}
    try:
        for n in body.nodes:
            ins = [() if v.weak else shapes[id(v)] for v in n.inputs]
            if n.op.reduce:
                nd = len(ins[0])
                axes = n.attrs.get("axes")
                axes = range(nd) if axes is None else {a % nd for a in axes}
                keep = n.attrs.get("keepdims")
                shapes[id(n.outputs[0])] = tuple(1 if k in axes else d for k, d in enumerate(ins[0])
                                                 if keep or k not in axes)
            else:
                shapes[id(n.outputs[0])] = np.broadcast_shapes(*ins)
    except ValueError:
        return None
    return shapes


def _plan(body, arrays, in_types, fixed, smallest):
    """How the C loop runs on these arrays, or None when the numpy kernel should: (loop key for _source,
    int64 array of the dims' sizes and the operands' strides, value-output shapes, accumulator shapes
    (keepdims form), result shapes, RUNS label)."""
    for a, t in zip(arrays, in_types):
        if type(a) is not np.ndarray or a.dtype != t:
            return None
    shapes = _shapes(body, arrays)
    if shapes is None:
        return None
    full = np.broadcast_shapes(*[a.shape for a in arrays])
    size = 1
    for d in full:
        size *= d
    if size < max(smallest, 1):  # small (or empty): the numpy kernel's lower call cost wins
        return None
    if any(f is not None and shapes[id(v)] != f for v, f in zip(body.outputs, fixed)):
        return None
    reds = [n for n in body.nodes if n.op.reduce]
    vals = [v for v in body.outputs if not v.producer.op.reduce]
    nd = len(full)
    red_axes = set()
    for n in reds:
        if shapes[id(n.inputs[0])] != full:
            return None
        axes = n.attrs.get("axes")
        red_axes = set(range(nd)) if axes is None else {a % nd for a in axes}
    acc_shape = tuple(1 if k in red_axes else d for k, d in enumerate(full))
    # element strides of every operand along the loop's dims (0 where it is broadcast)
    strides, labels = [], set()
    for a in arrays:
        pad = nd - a.ndim
        st = [0] * pad
        for d, b in zip(a.shape, a.strides):
            if b % a.itemsize:
                return None
            st.append(0 if d == 1 else b // a.itemsize)
        strides.append(st)
        if a.size == size:
            labels.add("full")
        elif a.size == 1:
            labels.add("scalar")
        else:
            trailing = a.shape
            while trailing and trailing[0] == 1:
                trailing = trailing[1:]
            labels.add("row" if full[nd - len(trailing):] == trailing else "bcast")
        if a.size != 1 and not a.flags.c_contiguous:
            labels.add("strided")
    for shape in [shapes[id(v)] for v in vals] + [acc_shape] * len(reds):
        padded = (1,) * (nd - len(shape)) + tuple(shape)
        st, step = [0] * nd, 1
        for k in range(nd - 1, -1, -1):
            if padded[k] != 1:
                st[k], step = step, step * padded[k]
        strides.append(st)
    if reds:
        labels.add("reduce")
    # drop size-1 dims, then merge neighbours every operand walks as one (and that are both reduced or not)
    keep = [k for k in range(nd) if full[k] != 1] or [nd - 1 if nd else 0]
    if not nd:
        full, strides, nd = (1,), [[0] for _ in strides], 1
    dims, red = [full[keep[0]]], [keep[0] in red_axes]
    sts = [[st[keep[0]]] for st in strides]
    for k in keep[1:]:
        r = k in red_axes
        if r == red[-1] and all(st[-1] == o[k] * full[k] for st, o in zip(sts, strides)):
            dims[-1] *= full[k]
            for st, o in zip(sts, strides):
                st[-1] = o[k]
        else:
            dims.append(full[k])
            red.append(r)
            for st, o in zip(sts, strides):
                st.append(o[k])
    if not reds:
        red = [False] * len(dims)
    vary = tuple(tuple(x != 0 for x in st) for st in sts)
    unit = tuple(st[-1] == 1 for st in sts)
    meta = np.array(dims + [x for st in sts for x in st], np.int64)
    key = (len(dims), tuple(red), vary, unit)
    results = [shapes[id(v)] for v in body.outputs]
    return key, meta, [shapes[id(v)] for v in vals], acc_shape, results, ",".join(sorted(labels))


def make(body, fallback):
    """A kernel(*arrays, out=None) running the C loop when it applies, else `fallback`."""
    info = eligible(body)
    if info is None or _compiler() is None:
        return fallback
    avals = [v.aval for v in body.inputs] + [o.aval for n in body.nodes for o in n.outputs]
    fixed_all = all(isinstance(d, int) for a in avals for d in a.shape)
    if fixed_all and max(int(np.prod(a.shape)) for a in avals) < min_size(body):
        return fallback  # sizes fixed at trace time and small: no per-call check at all
    ctype, suffix = info
    dtype = np.dtype(np.float32 if ctype == "float" else np.float64)
    in_types = [_BOOL if v.aval.dtype == _BOOL else dtype for v in body.inputs]
    reds = [n for n in body.nodes if n.op.reduce]
    vals = [v for v in body.outputs if not v.producer.op.reduce]
    val_types = [_BOOL if v.aval.dtype == _BOOL else dtype for v in vals]
    acc_types = [np.dtype(_ACCUMULATE[n.op.reduce][1] or dtype) for n in reds]
    identities = [_ACCUMULATE[n.op.reduce][0] for n in reds]
    fixed = [tuple(v.aval.shape) if all(isinstance(d, int) for d in v.aval.shape) else None for v in body.outputs]
    where = [("v", vals.index(v)) if not v.producer.op.reduce else ("r", reds.index(v.producer))
             for v in body.outputs]
    kind = (",bool," if _BOOL in in_types or _BOOL in val_types else ",") + dtype.name
    variants = {}
    plans = {}
    n_out = len(body.outputs)
    single = n_out == 1 and not reds

    def kernel(*arrays, out=None):
        # the plan depends only on types, shapes, strides and dtypes: worked out once per signature, since
        # a compiled step calls its kernels with the same ones every time
        key = tuple([(type(a), a.shape, a.strides, a.dtype) if type(a) is np.ndarray else (type(a),) for a in arrays])
        p = plans.get(key, 0)
        if p == 0:
            p = _plan(body, arrays, in_types, fixed, min_size(body))
            if p is not None:  # the RUNS keys of its calls, made once (a call only looks one up)
                p = p[:5] + ((p[5] + kind, p[5] + kind + ",aliased"), p[1].ctypes.data)
            plans[key] = p
            if p is None and max((getattr(a, "size", 1) for a in arrays), default=0) >= min_size(body):
                RUNS["numpy"] += 1
        if p is None:
            return fallback(*arrays, out=out)
        loop, meta, val_shapes, acc_shape, results, run_keys, addr = p
        # written into `out` (a donated input buffer): the loop without `restrict`, whose runtime overlap
        # check keeps it right (and still vectorized) when out is one of the inputs
        alias = (single and out is not None and out.shape == val_shapes[0] and out.dtype == val_types[0]
                 and out.flags.c_contiguous)
        outs = [out] if alias else [np.empty(s, t) for s, t in zip(val_shapes, val_types)]
        accs = [np.zeros(acc_shape, t) if i == 0 else np.full(acc_shape, i, t) for i, t in zip(identities, acc_types)]
        fn = variants.get((loop, alias))
        if fn is None:
            fn = variants[(loop, alias)] = build(
                _source(body, ctype, suffix, loop, alias),
                [ctypes.c_void_p] * (2 + len(arrays) + len(outs) + len(accs))) or False
        if fn is False:
            return fallback(*arrays, out=out)
        fn(addr, addr + 8 * loop[0], *[_address(a) for a in arrays], *[_address(o) for o in outs],
           *[_address(a) for a in accs])
        RUNS[run_keys[alias]] += 1
        res = []
        for (w, i), shape in zip(where, results):
            if w == "v":
                res.append(outs[i])
            else:
                acc = accs[i]
                res.append((acc if acc.dtype == dtype else acc.astype(dtype)).reshape(shape))
        return tuple(res)
    kernel.variants = variants  # {(loop key, aliased): compiled loop or False}: which C loops ran

    def source(loop=None):
        """The C of one loop key (default: every input and output full-size, one dim)."""
        if loop is None:
            n_ops = len(body.inputs) + len(vals) + len(reds)
            loop = (1, (bool(reds),), ((True,),) * n_ops, (True,) * n_ops)
        return _source(body, ctype, suffix, loop)
    kernel.source = source
    return kernel
