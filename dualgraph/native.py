"""Small C loops compiled once with the system C compiler and loaded with ctypes.

Used where numpy needs several passes or calls for what one loop does (fused elementwise chains,
where(mask, a, 0), log_softmax rows). Everything that uses it has a numpy fallback: no compiler (`cc`
missing, or DUALGRAPH_NO_CC=1) or a failed build gives None, never an error. Shared objects are
cached on disk by a hash of the source and flags.

No -ffast-math: it would change results (reciprocal approximations give NaN for x/inf, finite-math
drops NaN/inf handling) and, linked in, switch the whole process to flush-denormals-to-zero.
IEEE semantics are kept: only errno is dropped, so loops vectorize and call glibc's SIMD exp/log
(libmvec), which handle inf/NaN/overflow exactly like the scalar functions. No OpenMP: on a shared
2-core machine its threads collapsed (20x slower) under load. -fno-trapping-math lets gcc turn selects
(relu/maximum/where) into blends (values unchanged; only FP exception flags, which nothing reads, may
differ): without it those loops stay scalar and branchy, 30x slower on random signs.
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

FLAGS = ["-O3", "-march=native", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
_LOCK = threading.Lock()
_COMPILER = []


def compiler():
    """The C compiler's path, or None."""
    if not _COMPILER:
        cc = None if os.environ.get("DUALGRAPH_NO_CC") else (os.environ.get("CC") or shutil.which("cc")
                                                             or shutil.which("gcc"))
        _COMPILER.append(cc)
    return _COMPILER[0]


_WORKS = []


def available():
    """Whether C loops can be built and loaded here (a compiler, and libmvec/libm to link against)."""
    if not _WORKS:
        _WORKS.append(compiler() is not None and build("void kernel(void) {}\n", []) is not None)
    return _WORKS[0]


def _cache_dir():
    d = os.path.join(tempfile.gettempdir(), f"dualgraph-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(d, exist_ok=True)
    return d


def build(src, argtypes, name="kernel"):
    """The C function `name` of `src` with these ctypes argument types (returning void), or None."""
    cc = compiler()
    if cc is None:
        return None
    digest = hashlib.sha1((src + " ".join(FLAGS) + platform.node() + platform.machine()).encode()).hexdigest()[:20]
    d = _cache_dir()
    so = os.path.join(d, f"k{digest}.so")
    with _LOCK:
        if not os.path.exists(so):
            fd, tmp = tempfile.mkstemp(dir=d, suffix=".c")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(src)
                obj, tmp_so = tmp[:-2] + ".o", tmp[:-2] + ".so"
                r = subprocess.run([cc] + FLAGS + ["-c", tmp, "-o", obj], capture_output=True, timeout=60)
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
        fn = getattr(ctypes.CDLL(so), name)
    except (OSError, AttributeError):
        return None
    fn.restype = None
    fn.argtypes = list(argtypes)
    return fn


def address(a):
    """The data pointer of a C-contiguous array (from_buffer is about twice as fast as a.ctypes.data)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError, BufferError):  # read-only or empty
        return a.ctypes.data


# what a source template's {t} (the float type), {f} (libm's suffix) and {u} (same-size unsigned) become
C_TYPES = {np.dtype(np.float32): {"t": "float", "f": "f", "u": "uint32_t"},
           np.dtype(np.float64): {"t": "double", "f": "", "u": "uint64_t"}}
I64, PTR = ctypes.c_int64, ctypes.c_void_p


class Loops:
    """C functions of one source template, built per float dtype on first use.

    `Loops(template, {name: (argtypes, restype)})(dtype)` is {name: function}, or None where they cannot
    be built (no compiler, a dtype other than float32/float64): callers then take their numpy path."""

    def __init__(self, template, signatures):
        self.template, self.signatures, self.built = template, signatures, {}

    def __call__(self, dtype):
        fns = self.built.get(dtype, 0)
        if fns == 0:
            fns = self.built[dtype] = self._build(dtype)
        return fns

    def _build(self, dtype):
        names = C_TYPES.get(np.dtype(dtype))
        if names is None:
            return None
        src = self.template.format(**names)
        fns = {}
        for name, (argtypes, restype) in self.signatures.items():
            fn = build(src, argtypes, name)
            if fn is None:
                return None
            fn.restype = restype
            fns[name] = fn
        return fns
