"""Fused elementwise kernels as generated C, compiled once with the system C compiler and loaded
with ctypes: one loop over the elements, all ops of the chain in registers, vectorized by the
compiler (glibc's libmvec gives SIMD exp/log), single-threaded.

Measured on tanh-GELU over 1M float32 (docs/performance.md) this is several times faster than the
best numpy-ufunc chain, which makes one memory pass per op. It is used only where its results match
numpy's: float32/float64 chains of arithmetic and exp/log/tanh/sqrt/abs/sin/cos (no max/min/where,
which numpy's own chain handles), inputs that are full-size C-contiguous arrays or scalars,
and at least MIN_SIZE elements (below that the numpy kernel's lower call cost wins). Anything else,
or no compiler (`cc` missing, or DUALGRAPH_NO_CC=1), falls back to the numpy kernel.

No -ffast-math: it would change results (reciprocal approximations give NaN for x/inf, finite-math
drops NaN/inf handling) and, linked in, switch the whole process to flush-denormals-to-zero.
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading

import numpy as np

MIN_SIZE = 1 << 15
# IEEE semantics kept (no -ffast-math): only errno is dropped, so the loop vectorizes and calls glibc's
# SIMD exp/log (libmvec), which handle inf/NaN/overflow exactly like the scalar functions. No OpenMP:
# on a shared 2-core machine its threads collapsed (20x slower) under load.
_FLAGS = ["-O3", "-march=native", "-fPIC", "-fno-math-errno", "-fopenmp-simd"]
_C = {
    "add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "div": "({0} / {1})", "neg": "(-{0})",
    "exp": "exp{f}({0})", "log": "log{f}({0})", "tanh": "tanh{f}({0})", "sqrt": "sqrt{f}({0})",
    "abs": "fabs{f}({0})", "log1p": "log1p{f}({0})", "expm1": "expm1{f}({0})", "sin": "sin{f}({0})",
    "cos": "cos{f}({0})",
}
_TYPES = {np.dtype(np.float32): ("float", "f"), np.dtype(np.float64): ("double", "")}
_LOCK = threading.Lock()
_COMPILER = []


def _compiler():
    if not _COMPILER:
        cc = None if os.environ.get("DUALGRAPH_NO_CC") else (os.environ.get("CC") or shutil.which("cc")
                                                             or shutil.which("gcc"))
        _COMPILER.append(cc)
    return _COMPILER[0]


def _cache_dir():
    d = os.path.join(tempfile.gettempdir(), f"dualgraph-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(d, exist_ok=True)
    return d


def eligible(body):
    """The C type of the chain, or None when it cannot be a C kernel."""
    dts = {v.aval.dtype for n in body.nodes for v in list(n.inputs) + n.outputs if v is not None and not v.weak}
    dts |= {v.aval.dtype for v in body.inputs}
    if len(dts) != 1 or next(iter(dts)) not in _TYPES:
        return None
    for n in body.nodes:
        if n.op.name == "pow":
            p = n.inputs[1]
            if not (p is not None and p.weak and p.const in (2, 3) and not isinstance(p.const, bool)):
                return None
        elif n.op.name not in _C or n.attrs:
            return None
        for v in n.inputs:
            if v is None or (v.weak and not (isinstance(v.const, (int, float)) and not isinstance(v.const, bool)
                                            and np.isfinite(v.const))):
                return None
            if not v.weak and v.const is not None:
                return None
    return _TYPES[next(iter(dts))]


def _source(body, ctype, suffix, scalar_mask, alias=False):
    restrict = "" if alias else " restrict"
    names = {}
    params = []
    lines = []
    for i, v in enumerate(body.inputs):
        params.append(f"const {ctype}*{restrict} a{i}")
        names[id(v)] = f"x{i}"
        lines.append(f"        {ctype} x{i} = a{i}[{'0' if scalar_mask[i] else 'i'}];")

    def ref(v):
        if v.weak:
            c = float(v.const)
            return f"(({ctype}){c!r}{suffix})"
        return names[id(v)]
    for k, n in enumerate(body.nodes):
        ins = [ref(v) for v in n.inputs]
        if n.op.name == "pow":
            expr = "*".join([ins[0]] * int(n.inputs[1].const))
            expr = f"({expr})"
        else:
            expr = _C[n.op.name].format(*ins, f=suffix)
        names[id(n.outputs[0])] = f"t{k}"
        lines.append(f"        {ctype} t{k} = {expr};")
    for j, v in enumerate(body.outputs):
        params.append(f"{ctype}*{restrict} o{j}")
        lines.append(f"        o{j}[i] = {names[id(v)]};")
    simd = "".join(f"#pragma omp declare simd notinbranch\nextern {ctype} {fn}{suffix}({ctype});\n"
                   for fn in ("exp", "log") if any(n.op.name == fn for n in body.nodes))
    return ("#include <math.h>\n#include <stdint.h>\n" + simd +
            f"void kernel(int64_t n, {', '.join(params)}) {{\n"
            "    #pragma omp simd\n"
            "    for (int64_t i = 0; i < n; i++) {\n" + "\n".join(lines) + "\n    }\n}\n")


def _build(src, n_ptrs):
    cc = _compiler()
    if cc is None:
        return None
    digest = hashlib.sha1((src + " ".join(_FLAGS) + platform.node() + platform.machine()).encode()).hexdigest()[:20]
    d = _cache_dir()
    so = os.path.join(d, f"k{digest}.so")
    with _LOCK:
        if not os.path.exists(so):
            fd, tmp = tempfile.mkstemp(dir=d, suffix=".c")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(src)
                obj, tmp_so = tmp[:-2] + ".o", tmp[:-2] + ".so"
                r = subprocess.run([cc] + _FLAGS + ["-c", tmp, "-o", obj], capture_output=True, timeout=60)
                if r.returncode:
                    return None
                r = subprocess.run([cc, "-shared", obj, "-o", tmp_so, "-lmvec", "-lm"], capture_output=True,
                                   timeout=60)
                if r.returncode:
                    return None
                os.replace(tmp_so, so)
            except (OSError, subprocess.SubprocessError):
                return None
            finally:
                for p in (tmp, tmp[:-2] + ".o", tmp[:-2] + ".so"):
                    if os.path.exists(p) and p != so:
                        os.unlink(p)
    try:
        fn = ctypes.CDLL(so).kernel
    except OSError:
        return None
    fn.restype = None
    fn.argtypes = [ctypes.c_int64] + [ctypes.c_void_p] * n_ptrs
    return fn


def _address(a):
    """The data pointer of a C-contiguous array (from_buffer is about twice as fast as a.ctypes.data)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError, BufferError):  # read-only or empty
        return a.ctypes.data


def make(body, fallback):
    """A kernel(*arrays, out=None) running the C loop when it applies, else `fallback`."""
    info = eligible(body)
    if info is None or _compiler() is None:
        return fallback
    ctype, suffix = info
    dtype = np.dtype(np.float32 if ctype == "float" else np.float64)
    variants = {}
    n_out = len(body.outputs)

    def kernel(*arrays, out=None):
        for full in arrays:
            if full.size >= MIN_SIZE:
                break
        else:  # small: the numpy kernel's lower call cost wins
            return fallback(*arrays, out=out)
        if type(full) is not np.ndarray:
            return fallback(*arrays, out=out)
        shape = full.shape
        mask = []
        for a in arrays:
            if type(a) is not np.ndarray or a.dtype != dtype:
                return fallback(*arrays, out=out)
            if a.shape == shape and a.flags.c_contiguous:
                mask.append(False)
            elif a.size == 1:
                mask.append(True)
            else:
                return fallback(*arrays, out=out)
        outs = [out if (out is not None and j == 0 and n_out == 1 and out.shape == shape
                        and out.flags.c_contiguous and out.dtype == dtype) else np.empty(shape, dtype)
                for j in range(n_out)]
        alias = out is not None and outs[0] is out and any(np.may_share_memory(a, out) for a in arrays)
        key = (tuple(mask), alias)  # an output written over its own input: no `restrict` promises
        fn = variants.get(key)
        if fn is None:
            fn = variants[key] = _build(_source(body, ctype, suffix, key[0], alias), len(arrays) + n_out) or False
        if fn is False:
            return fallback(*arrays, out=out)
        fn(full.size, *[_address(a) for a in arrays], *[_address(o) for o in outs])
        return tuple(outs)
    kernel.source = lambda mask=None: _source(body, ctype, suffix, mask or (False,) * len(body.inputs))
    return kernel
