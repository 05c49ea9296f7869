"""Fused elementwise kernels as generated C (built by .native): one loop over the elements, all ops of
the chain in registers, vectorized by the compiler (glibc's libmvec gives SIMD exp/log), single-threaded.

The loop body is generated from the op records' `expr` fields: each node's expression with its
operands substituted, math functions given libm's float suffix for float32. Measured on tanh-GELU
over 1M float32 (docs/performance.md) this is several times faster than the best numpy-ufunc chain,
which makes one memory pass per op. It is used only where its results match numpy's: float32/float64
chains of ops that have an expression, with bool values only as inputs, comparison results, outputs
and conditions (an operand an expression writes `{i} ?`). The result has the broadcast shape of all
the inputs; each input must be one of: as many elements as the result (size-1 dims anywhere,
C-contiguous), a single element, or a C-contiguous block of the result's trailing dims broadcast
along the leading ones (a bias row). The result must have at least MIN_SIZE elements, or
MIN_SIZE_SHORT for a chain of at most two `arith` ops (below that the numpy kernel's lower call cost
wins; see `min_size`). Anything else, or no compiler, falls back to the numpy kernel.

MIN_SIZE and MIN_SIZE_SHORT are read when a graph is compiled and when a kernel first sees a call
signature, so `thresholds(0, 0)` (a context manager) makes every eligible chain of the functions
compiled inside it take the C loop: the fuzzer and tests use it to run the C path on small tensors.
`RUNS` counts the C loop's calls by input layout (see `kernel`).
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
    as inputs or from comparisons, and be outputs or conditions; everything else is that float."""
    vals = [v for n in body.nodes for v in list(n.inputs) + n.outputs if v is not None and not v.weak]
    dts = {v.aval.dtype for v in vals + list(body.inputs)} - {_BOOL}
    if len(dts) != 1 or next(iter(dts)) not in _TYPES:
        return None
    for n in body.nodes:
        expr = n.op.expr
        if not expr or n.attrs or any(v is None or (v.weak and not _is_number(v)) or (not v.weak and v.const is not None)
                                      for v in n.inputs):
            return None
        conds = conditions(expr)
        for i, v in enumerate(n.inputs):
            if (not v.weak and v.aval.dtype == _BOOL) != (i in conds):
                return None
    return _TYPES[next(iter(dts))]


def _source(body, ctype, suffix, modes, alias=False):
    """C for the chain; `modes[i]` says how input i is indexed: 'f' full (i), 's' scalar (0), 'r' a row
    broadcast along the leading axes (j, the position within the trailing `inner` elements)."""
    restrict = "" if alias else " restrict"
    names = {}
    params = []
    lines = []

    def ty(v):
        return "unsigned char" if v.aval.dtype == _BOOL else ctype
    for i, v in enumerate(body.inputs):
        params.append(f"const {ty(v)}*{restrict} a{i}")
        names[id(v)] = f"x{i}"
        lines.append(f"            {ty(v)} x{i} = a{i}[{dict(f='i', s='0', r='j')[modes[i]]}];")

    def ref(v):
        if v.weak:
            return f"(({ctype}){float(v.const)!r}{suffix})"
        return names[id(v)]
    for k, n in enumerate(body.nodes):
        expr = c_expr(n.op.expr, suffix).format(*[ref(v) for v in n.inputs], t=ctype)
        names[id(n.outputs[0])] = f"t{k}"
        lines.append(f"            {ty(n.outputs[0])} t{k} = {expr};")
    for j, v in enumerate(body.outputs):
        params.append(f"{ty(v)}*{restrict} o{j}")
        lines.append(f"            o{j}[i] = {names[id(v)]};")
    called = {f for n in body.nodes for f in _CALL.findall(n.op.expr)}
    simd = "".join(f"#pragma omp declare simd notinbranch\nextern {ctype} {fn}{suffix}({ctype});\n"
                   for fn in _SIMD if fn in called)
    return (_NO_CONTRACT + "#include <math.h>\n#include <stdint.h>\n" + simd +
            f"void kernel(int64_t outer, int64_t inner, {', '.join(params)}) {{\n"
            "    for (int64_t o = 0; o < outer; o++) {\n"
            "        #pragma omp simd\n"
            "        for (int64_t j = 0; j < inner; j++) {\n"
            "            int64_t i = o * inner + j;\n" + "\n".join(lines) + "\n        }\n    }\n}\n")


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
    instead of two wins inside a training step, where each call runs with cold caches)."""
    short = len(body.nodes) <= 2 and all(n.op.arith for n in body.nodes)
    return MIN_SIZE_SHORT if short else MIN_SIZE


def _layout(arrays, in_types, out_shape, smallest):
    """(input modes, result shape, outer, inner, RUNS label) for the C loop over these arrays, or None when the numpy
    kernel should run. The result's shape is the broadcast of all the inputs' (a size-1 input or a row
    does not make it smaller), and must be `out_shape`, the traced one, where that is fixed."""
    for a, t in zip(arrays, in_types):
        if type(a) is not np.ndarray or a.dtype != t:
            return None
    try:
        shape = np.broadcast_shapes(*[a.shape for a in arrays])
    except ValueError:
        return None  # the numpy kernel raises numpy's error, which the executor names
    if out_shape is not None and shape != out_shape:
        return None
    size = 1
    for d in shape:
        size *= d
    if size < max(smallest, 1):  # small (or empty): the numpy kernel's lower call cost wins
        return None
    modes, inner = [], None
    for a in arrays:
        if a.size == size:
            modes.append("f")  # broadcasting to as many elements only adds size-1 dims: same memory order
        elif a.size == 1:
            modes.append("s")
        else:
            trailing = a.shape
            while trailing and trailing[0] == 1:
                trailing = trailing[1:]
            if shape[len(shape) - len(trailing):] != trailing or inner not in (None, a.size):
                return None  # broadcast along an inner axis (a column), or two different row lengths
            modes.append("r")
            inner = a.size
    inner = inner or size
    base = ",".join(sorted({_MODE_LABELS[m] for m in modes}))
    return tuple(modes), shape, size // inner, inner, base


def make(body, fallback):
    """A kernel(*arrays, out=None) running the C loop when it applies, else `fallback`."""
    info = eligible(body)
    if info is None or _compiler() is None:
        return fallback
    shapes = [tuple(v.aval.shape) for v in body.outputs]
    fixed = all(isinstance(d, int) for s in shapes for d in s)
    if fixed and max(int(np.prod(s)) for s in shapes) < min_size(body):
        return fallback  # sizes fixed at trace time and small: no per-call check at all
    # fusion groups only values of one shape, so every output has the shape the C loop writes
    out_shape = shapes[0] if fixed and len(set(shapes)) == 1 else None
    if fixed and out_shape is None:
        return fallback
    ctype, suffix = info
    dtype = np.dtype(np.float32 if ctype == "float" else np.float64)
    in_types = [_BOOL if v.aval.dtype == _BOOL else dtype for v in body.inputs]
    out_types = [_BOOL if v.aval.dtype == _BOOL else dtype for v in body.outputs]
    kind = (",bool," if _BOOL in in_types or _BOOL in out_types else ",") + dtype.name
    tail = (kind, kind + ",aliased")  # RUNS key suffixes, by whether the call writes into `out`
    variants = {}
    plans = {}
    n_out = len(body.outputs)

    def kernel(*arrays, out=None):
        # the plan depends only on types, shapes and dtypes: worked out once per signature, since a
        # compiled step calls its kernels with the same ones every time
        key = tuple([(type(a), a.shape, a.dtype) for a in arrays])
        p = plans.get(key, 0)
        if p == 0:
            p = _layout(arrays, in_types, out_shape, min_size(body))
            if p is not None:  # the RUNS keys of its calls, made once (a call only looks one up)
                p = p[:4] + ((p[4] + tail[0], p[4] + tail[1]),)
            plans[key] = p
            if p is None and max((getattr(a, "size", 1) for a in arrays), default=0) >= min_size(body):
                RUNS["numpy"] += 1
        if p is None:
            return fallback(*arrays, out=out)
        modes, shape, outer, inner, run_keys = p
        for a, m in zip(arrays, modes):
            if m != "s" and not a.flags.c_contiguous:
                RUNS["numpy"] += 1
                return fallback(*arrays, out=out)
        # written into `out` (a donated input buffer): the loop without `restrict`, whose runtime overlap
        # check keeps it right (and still vectorized) when out is one of the inputs
        alias = (out is not None and n_out == 1 and out.shape == shape and out.dtype == out_types[0]
                 and out.flags.c_contiguous)
        outs = [out] if alias else [np.empty(shape, t) for t in out_types]
        fn = variants.get((modes, alias))
        if fn is None:
            fn = variants[(modes, alias)] = build(
                _source(body, ctype, suffix, modes, alias),
                [ctypes.c_int64] * 2 + [ctypes.c_void_p] * (len(arrays) + n_out)) or False
        if fn is False:
            return fallback(*arrays, out=out)
        fn(outer, inner, *[_address(a) for a in arrays], *[_address(o) for o in outs])
        RUNS[run_keys[alias]] += 1
        return tuple(outs)
    kernel.variants = variants  # {(input modes, aliased): compiled loop or False}: which C loops ran
    kernel.source = lambda modes=None: _source(body, ctype, suffix, modes or ("f",) * len(body.inputs))
    return kernel


_MODE_LABELS = {"f": "full", "s": "scalar", "r": "row"}
