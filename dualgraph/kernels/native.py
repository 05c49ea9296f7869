"""Small C loops compiled once with the system C compiler and loaded with ctypes.

Used where numpy needs several passes or calls for what one loop does (fused elementwise chains,
where(mask, a, 0), log_softmax rows). Everything that uses it has a numpy fallback: no compiler (`cc`
missing, or DUALGRAPH_NO_CC=1), a failed or hung build, or a cache directory that cannot be trusted or
written gives None, never an error.

Shared objects are cached on disk, named by a hash of the source, the flags and the compiler (its path,
its `--version`, and the target `-march=native` resolves to on this machine: a cache shared between
machines, e.g. on NFS, never hands one CPU's code to another). The cache is
$DUALGRAPH_CACHE_DIR, else $XDG_CACHE_HOME/dualgraph/kernels, else ~/.cache/dualgraph/kernels, never a
shared temp directory: loading a shared object runs its code, so a directory other users can write into
would let them run code as this user. The directories dualgraph uses are created 0700 and must be owned
by this user and not writable by group or others (else no C loops, one warning); a shared object is
loaded only when it is a regular file with the same owner and not writable by group or others (else it
is rebuilt), and is published with os.replace after the compiler wrote it under a temporary name in the
same directory, so a partial file is never loaded. The source goes to the compiler on stdin: there is
no source file to swap before the compiler reads it.

A compiler that hangs costs one wait of DUALGRAPH_CC_TIMEOUT seconds (default 60) for the whole process:
after it, the compiler counts as missing and every compile still running is killed.

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
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import warnings

import numpy as np

FLAGS = ["-O3", "-march=native", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd"]
LIBS = ["-lmvec", "-lm"]
DEFAULT_TIMEOUT = 60.0

_LOCK = threading.Lock()  # guards the small tables below, never held while a compiler runs
_PROBE_LOCK = threading.Lock()
_DIR_LOCK = threading.Lock()
_COMPILER = []  # [path or None]
_WORKS = []  # [bool]
_DIR = []  # [(path to do file operations under, the directory's real path, its descriptor)] or [None]
_DIR_FDS = []  # descriptors of verified cache directories: kept open (see _open_cache_dir)
_IDENTITY = {}  # compiler path -> what names its output (version, resolved -march target)
_LIBS = {}  # source digest -> loaded CDLL
_BUILDING = {}  # source digest -> lock held while that source compiles
_WARNED = set()
_DEAD = threading.Event()  # set once the compiler hung: no C loops for the rest of the process
_PROCS = set()  # compiler processes running now (killed all at once when one hangs)
_PROCS_LOCK = threading.Lock()
_PROC_FD = os.path.isdir("/proc/self/fd")


def compiler():
    """The C compiler's path, or None."""
    if not _COMPILER:
        cc = None if os.environ.get("DUALGRAPH_NO_CC") else (os.environ.get("CC") or shutil.which("cc")
                                                             or shutil.which("gcc"))
        _COMPILER.append(cc)
    return None if _DEAD.is_set() else _COMPILER[0]


def available():
    """Whether C loops can be built and loaded here (a compiler, and libmvec/libm to link against)."""
    if not _WORKS:
        _WORKS.append(compiler() is not None and build("void kernel(void) {}\n", []) is not None)
    return _WORKS[0] and not _DEAD.is_set()


def cache_dir():
    """The directory shared objects are cached in (created if missing), or None where it is unusable."""
    d = _dir()
    return d and d[1]


def _dir():
    with _DIR_LOCK:
        if not _DIR:
            _DIR.append(_open_cache_dir())
        return _DIR[0]


def _reset():
    """Forget every decision taken in this process (compiler, its identity, cache directory, loaded
    libraries, a hung compiler), so the next build reads the environment again. Functions already handed
    out stay valid: their libraries stay loaded."""
    with _DIR_LOCK, _LOCK:
        for table in (_COMPILER, _WORKS, _DIR, _IDENTITY, _LIBS, _BUILDING, _WARNED):
            table.clear()
        _DEAD.clear()


def _warn(key, message):
    with _LOCK:
        if key in _WARNED:
            return
        _WARNED.add(key)
    warnings.warn(f"dualgraph: {message}; numpy runs instead of C loops", RuntimeWarning, stacklevel=3)


def _uid():
    return os.getuid() if hasattr(os, "getuid") else None


def _trusted(st):
    """Whether a file or directory with this stat is this user's alone to change."""
    uid = _uid()
    return (uid is None or st.st_uid == uid) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _open_cache_dir():
    override = os.environ.get("DUALGRAPH_CACHE_DIR")
    if override:
        leaf = top = os.path.abspath(os.path.expanduser(override))
    else:
        base = os.environ.get("XDG_CACHE_HOME", "")
        if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
            base = os.path.join(os.path.expanduser("~"), ".cache")
        if not os.path.isabs(base):
            _warn("cache", "no home directory for the C loop cache (set DUALGRAPH_CACHE_DIR)")
            return None
        top = os.path.join(base, "dualgraph")
        leaf = os.path.join(top, "kernels")
    levels = [leaf]  # dualgraph's own levels, checked whoever created them
    while levels[0] != top:
        levels.insert(0, os.path.dirname(levels[0]))
    parent = os.path.dirname(top)  # missing ancestors are created here, so they are checked too
    while parent != os.path.dirname(parent) and not os.path.exists(parent):
        levels.insert(0, parent)
        parent = os.path.dirname(parent)
    for p in levels:
        try:
            os.mkdir(p, 0o700)
        except OSError:
            if not os.path.isdir(p):
                _warn("cache", f"cannot create the C loop cache directory {p} (set DUALGRAPH_CACHE_DIR to a "
                               f"writable directory)")
                return None
    for p in levels:
        try:
            st = os.stat(p)  # follows a symlink: what counts is the directory it leads to
        except OSError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode) or not _trusted(st):
            _warn("cache", f"the C loop cache directory {p} is not owned by this user or is writable by "
                           f"others, so shared objects in it could run someone else's code")
            return None
    real = os.path.realpath(leaf)
    if not _PROC_FD:
        return real, real, None
    # Linux: every later file operation (the compiler's output, the rename, dlopen) goes through
    # /proc/self/fd/N of the directory checked here, so renaming a directory on the path (possible where an
    # ancestor is writable by others) cannot redirect them. The descriptor stays open for the process's
    # life: glibc's dlopen matches names before files, so a name must never come back for another directory.
    try:
        fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        _warn("cache", f"cannot open the C loop cache directory {real} ({e.strerror})")
        return None
    if not _trusted(os.fstat(fd)):
        os.close(fd)
        _warn("cache", f"the C loop cache directory {real} changed while it was checked")
        return None
    _DIR_FDS.append(fd)
    return f"/proc/self/fd/{fd}", real, fd


def _timeout():
    try:
        t = float(os.environ.get("DUALGRAPH_CC_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return t if t > 0 else DEFAULT_TIMEOUT


def _kill(proc):
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: gcc's cc1/as/ld too
        else:
            proc.kill()
    except OSError:
        pass


def _run(cmd, stdin=None, pass_fds=()):
    """(exit status, output) of a compiler command, or None when the compiler hung (now or before)."""
    with _PROCS_LOCK:
        if _DEAD.is_set():
            return None
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=hasattr(os, "killpg"), pass_fds=pass_fds)
        except (OSError, ValueError):
            return 127, b""
        _PROCS.add(proc)
    try:
        out, _ = proc.communicate(stdin, timeout=_timeout())
    except subprocess.TimeoutExpired:
        with _PROCS_LOCK:
            first = not _DEAD.is_set()
            _DEAD.set()
            for p in _PROCS:
                _kill(p)
        proc.communicate()
        if first:
            _warn("hung", f"the C compiler {cmd[0]} did not finish within {_timeout():g} s "
                          f"(DUALGRAPH_CC_TIMEOUT), so it is not used again in this process")
        return None
    finally:
        with _PROCS_LOCK:
            _PROCS.discard(proc)
    if _DEAD.is_set():  # killed because another compile hung
        return None
    return proc.returncode, out


def _target_options(text):
    """The options -march=native resolved to, from a `cc -###` listing (gcc: -march=znver3 -mavx2 ...
    --param l1-cache-size=32; clang: -target-cpu znver3 -target-feature +avx2)."""
    found = []
    for line in text.splitlines():
        if not line.startswith(" "):
            continue  # only the listed commands, not the driver's banner or temporary file names
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        for prev, w in zip([""] + words, words):
            if w.startswith("-m") or prev in ("--param", "-target-cpu", "-target-feature", "-tune-cpu"):
                found.append(w)
    return " ".join(found)


def _identity(cc):
    """What the compiler's output depends on besides source and flags, or None when the compiler hung."""
    with _PROBE_LOCK:
        if cc not in _IDENTITY:
            version = _run([cc, "--version"])
            target = version and _run([cc, "-###", "-march=native", "-x", "c", "-c", os.devnull,
                                       "-o", os.devnull])
            if target is None:
                return None
            _IDENTITY[cc] = "\0".join([os.path.realpath(shutil.which(cc) or cc),
                                       version[1].decode(errors="replace"), _target_options(
                                           target[1].decode(errors="replace"))])
        return _IDENTITY[cc]


def _load(d, name):
    """The CDLL of file `name` in cache directory `d`, or None when missing, not ours alone, or not
    loadable."""
    path = os.path.join(d[0], name)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _trusted(st):
            return None
        return ctypes.CDLL(path)
    except OSError:
        return None
    finally:
        os.close(fd)


def _compile(cc, src, d, name):
    """Compile `src` into d/name: written under a temporary name, then renamed into place."""
    io_dir, real, dir_fd = d
    try:
        fd, tmp = tempfile.mkstemp(dir=io_dir, prefix=".build-", suffix=".so")
        os.close(fd)
    except OSError as e:
        _warn("readonly", f"the C loop cache directory {real} is not writable ({e.strerror}): loops not "
                          f"already built there cannot be (set DUALGRAPH_CACHE_DIR to a writable directory)")
        return False
    try:
        r = _run([cc] + FLAGS + ["-shared", "-x", "c", "-", "-o", tmp] + LIBS, src.encode(),
                 pass_fds=() if dir_fd is None else (dir_fd,))
        if r is None or r[0] != 0:
            return False
        os.chmod(tmp, 0o600)
        os.replace(tmp, os.path.join(io_dir, name))
        tmp = None
        return True
    except OSError:
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _library(cc, src):
    ident = _identity(cc)
    if ident is None:
        return None
    digest = hashlib.sha256("\0".join([src, " ".join(FLAGS + LIBS), ident]).encode()).hexdigest()[:32]
    with _LOCK:
        lib = _LIBS.get(digest)
        lock = _BUILDING.setdefault(digest, threading.Lock())
    if lib is not None:
        return lib
    d = _dir()
    if d is None:
        return None
    name = f"k{digest}.so"
    with lock:  # one compile per source at a time; other sources compile in parallel
        lib = _LIBS.get(digest)
        if lib is None:
            lib = _load(d, name)
            if lib is None and _compile(cc, src, d, name):
                lib = _load(d, name)
            if lib is not None:
                with _LOCK:
                    _LIBS[digest] = lib
    return lib


def build(src, argtypes, name="kernel"):
    """The C function `name` of `src` with these ctypes argument types (returning void), or None."""
    cc = compiler()
    if cc is None:
        return None
    lib = _library(cc, src)
    if lib is None:
        return None
    try:
        fn = lib[name]  # a new function object each time: callers set their own argtypes/restype
    except AttributeError:
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
