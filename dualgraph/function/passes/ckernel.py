"""Fused elementwise kernels as generated C (built by dualgraph.native): one loop over the elements,
all ops of the chain in registers, vectorized by the compiler (glibc's libmvec gives SIMD exp/log),
single-threaded.

Measured on tanh-GELU over 1M float32 (docs/performance.md) this is several times faster than the
best numpy-ufunc chain, which makes one memory pass per op. It is used only where its results match
numpy's: float32/float64 chains of arithmetic, exp/log/tanh/sqrt/abs/sin/cos, relu/maximum/minimum
(NaN-propagating, numpy's choice on equal zeros), comparisons (bool outputs) and where; inputs that are
full-size C-contiguous arrays, scalars, or C-contiguous arrays broadcast along the leading axes (a
bias row); and at least MIN_SIZE elements, or MIN_SIZE_SHORT for a chain of at most two arithmetic ops
(below that the numpy kernel's lower call cost wins; see `min_size`).
Anything else, or no compiler, falls back to the numpy kernel.
"""
import ctypes

import numpy as np

from ...native import address as _address, build, compiler as _compiler

MIN_SIZE = 1 << 13
MIN_SIZE_SHORT = 1 << 16
_ARITH = {"add", "sub", "mul", "neg"}
_C = {
    "add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "div": "({0} / {1})", "neg": "(-{0})",
    "exp": "exp{f}({0})", "log": "log{f}({0})", "tanh": "tanh{f}({0})", "sqrt": "sqrt{f}({0})",
    "abs": "fabs{f}({0})", "log1p": "log1p{f}({0})", "expm1": "expm1{f}({0})", "sin": "sin{f}({0})",
    "cos": "cos{f}({0})",
}
_CMP = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "eq": "==", "ne": "!="}
# numpy's maximum(a, b) is `a > b or isnan(a) ? a : b` (b on equal zeros); relu is maximum(x, 0)
# (`|`, not `||`: no short-circuit branch, so the loop stays branch-free and vectorizes)
_SELECT = {"maximum": "((({0} > {1}) | ({0} != {0})) ? {0} : {1})",
           "minimum": "((({0} < {1}) | ({0} != {0})) ? {0} : {1})",
           "relu": "((({0} > 0) | ({0} != {0})) ? {0} : 0)",
           "where": "({0} ? {1} : {2})"}
_TYPES = {np.dtype(np.float32): ("float", "f"), np.dtype(np.float64): ("double", "")}
_BOOL = np.dtype(np.bool_)
def _is_number(v):
    return v.weak and isinstance(v.const, (int, float)) and not isinstance(v.const, bool) and np.isfinite(v.const)


def eligible(body):
    """The C type of the chain's floats, or None when it cannot be a C kernel. Bool values may come in
    as inputs or from comparisons, and be outputs or where's condition; everything else is that float."""
    vals = [v for n in body.nodes for v in list(n.inputs) + n.outputs if v is not None and not v.weak]
    dts = {v.aval.dtype for v in vals + list(body.inputs)} - {_BOOL}
    if len(dts) != 1 or next(iter(dts)) not in _TYPES:
        return None
    for n in body.nodes:
        name = n.op.name
        if n.attrs or any(v is None or (v.weak and not _is_number(v)) or (not v.weak and v.const is not None)
                          for v in n.inputs):
            return None
        is_bool = [not v.weak and v.aval.dtype == _BOOL for v in n.inputs]
        if name == "where":
            if not is_bool[0] or any(is_bool[1:]):
                return None
        elif any(is_bool):
            return None
        elif name == "pow":
            p = n.inputs[1]
            if not (p.const in (2, 3) and not isinstance(p.const, float)):
                return None
        elif name not in _C and name not in _CMP and name not in _SELECT:
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
        ins = [ref(v) for v in n.inputs]
        name = n.op.name
        if name == "pow":
            expr = "(" + "*".join([ins[0]] * int(n.inputs[1].const)) + ")"
        elif name in _CMP:
            expr = f"({ins[0]} {_CMP[name]} {ins[1]})"
        elif name in _SELECT:
            expr = _SELECT[name].format(*ins)
        else:
            expr = _C[name].format(*ins, f=suffix)
        names[id(n.outputs[0])] = f"t{k}"
        lines.append(f"            {ty(n.outputs[0])} t{k} = {expr};")
    for j, v in enumerate(body.outputs):
        params.append(f"{ty(v)}*{restrict} o{j}")
        lines.append(f"            o{j}[i] = {names[id(v)]};")
    simd = "".join(f"#pragma omp declare simd notinbranch\nextern {ctype} {fn}{suffix}({ctype});\n"
                   for fn in ("exp", "log") if any(n.op.name == fn for n in body.nodes))
    return ("#include <math.h>\n#include <stdint.h>\n" + simd +
            f"void kernel(int64_t outer, int64_t inner, {', '.join(params)}) {{\n"
            "    for (int64_t o = 0; o < outer; o++) {\n"
            "        #pragma omp simd\n"
            "        for (int64_t j = 0; j < inner; j++) {\n"
            "            int64_t i = o * inner + j;\n" + "\n".join(lines) + "\n        }\n    }\n}\n")


def min_size(body):
    """Elements from which the C loop beats the numpy kernel (measured per call through ctypes, float32):
    a 3-op bias+relu+mask chain is 0.69x numpy's time at 8K elements and 0.41x at 32K, a 6-op chain
    0.83x and 0.54x; but an SGD update `w - g * lr` written into w is 1.25x at 32K, 0.95x at 64K and
    0.71x at 200K, so a chain of at most two arithmetic ops waits for MIN_SIZE_SHORT (at 64K, one call
    instead of two wins inside a training step, where each call runs with cold caches)."""
    short = len(body.nodes) <= 2 and all(n.op.name in _ARITH for n in body.nodes)
    return MIN_SIZE_SHORT if short else MIN_SIZE


def make(body, fallback):
    """A kernel(*arrays, out=None) running the C loop when it applies, else `fallback`."""
    info = eligible(body)
    if info is None or _compiler() is None:
        return fallback
    shapes = [v.aval.shape for v in body.outputs]
    if all(isinstance(d, int) for s in shapes for d in s) and max(int(np.prod(s)) for s in shapes) < min_size(body):
        return fallback  # sizes fixed at trace time and small: no per-call check at all
    ctype, suffix = info
    dtype = np.dtype(np.float32 if ctype == "float" else np.float64)
    in_types = [_BOOL if v.aval.dtype == _BOOL else dtype for v in body.inputs]
    out_types = [_BOOL if v.aval.dtype == _BOOL else dtype for v in body.outputs]
    variants = {}
    plans = {}
    n_out = len(body.outputs)
    smallest = min_size(body)

    def plan(arrays):
        """(input modes, shape, outer, inner) for arrays of these types/shapes/dtypes, or None when the
        numpy kernel should run (small, other dtypes, a broadcast that is not a trailing row)."""
        full = max(arrays, key=lambda a: a.size)
        if full.size < smallest:  # small: the numpy kernel's lower call cost wins
            return None
        shape, modes, inner = full.shape, [], None
        for a, t in zip(arrays, in_types):
            if type(a) is not np.ndarray or a.dtype != t:
                return None
            if a.shape == shape:
                modes.append("f")
            elif a.size == 1:
                modes.append("s")
            elif a.ndim <= len(shape) and a.shape == shape[len(shape) - a.ndim:] and inner in (None, a.size):
                modes.append("r")
                inner = a.size
            else:
                return None
        inner = inner or full.size
        return tuple(modes), shape, full.size // inner, inner

    def kernel(*arrays, out=None):
        # the plan depends only on types, shapes and dtypes: worked out once per signature, since a
        # compiled step calls its kernels with the same ones every time
        key = tuple([(type(a), a.shape, a.dtype) for a in arrays])
        p = plans.get(key, 0)
        if p == 0:
            p = plans[key] = plan(arrays)
        if p is None:
            return fallback(*arrays, out=out)
        modes, shape, outer, inner = p
        for a, m in zip(arrays, modes):
            if m != "s" and not a.flags.c_contiguous:
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
        return tuple(outs)
    kernel.variants = variants  # {(input modes, aliased): compiled loop or False}: which C loops ran
    kernel.source = lambda modes=None: _source(body, ctype, suffix, modes or ("f",) * len(body.inputs))
    return kernel
