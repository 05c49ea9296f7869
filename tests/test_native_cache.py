"""The on-disk cache of compiled C loops (dualgraph.native): where it lives, which shared objects it agrees
to load (loading one runs its code), what happens when it cannot be written, when the compiler hangs or
fails half-way, and what names a cached object."""
import ctypes
import os
import platform
import shutil
import stat
import sys
import tempfile
import threading

import numpy as np
import pytest

import dualgraph as dg
from dualgraph.kernels import native

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and /bin/sh scripts")
needs_cc = pytest.mark.skipif(not native.available(), reason="no C compiler (or libmvec) here")
REAL_CC = native.compiler()

GOOD = "void kernel(double *out) { out[0] = 1.0; }\n"
# what another user would plant: the constructor runs as soon as the library is loaded
EVIL = """#include <stdio.h>
__attribute__((constructor)) static void planted(void) {{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}
void kernel(double *out) {{ out[0] = 666.0; }}
"""


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """Every test reads the environment it sets up, and leaves native's per-process state as it found it."""
    for var in ("DUALGRAPH_CACHE_DIR", "XDG_CACHE_HOME", "DUALGRAPH_NO_CC", "DUALGRAPH_CC_TIMEOUT", "CC"):
        monkeypatch.delenv(var, raising=False)
    native._reset()
    yield
    native._reset()


def _call(fn):
    out = np.zeros(1)
    fn(out.ctypes.data)
    return out[0]


def _libraries(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".so"))


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _plant(tmp_path, target):
    """Replace `target` with a library whose load leaves a marker file; returns the marker's path."""
    marker = tmp_path / "planted-code-ran"
    src = tmp_path / "evil.c"
    src.write_text(EVIL.format(marker=marker))
    built = tmp_path / f"evil-{len(list(tmp_path.iterdir()))}.so"
    # a new file (inode) each time: the dynamic loader would hand back an already loaded one
    assert os.system(f"{REAL_CC} -shared -fPIC {src} -o {built}") == 0
    os.replace(built, target)
    return marker


@posix
@needs_cc
def test_cache_lives_under_xdg_cache_home_with_mode_0700(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fn = native.build(GOOD, [ctypes.c_void_p])
    assert _call(fn) == 1.0
    top, d = tmp_path / "xdg" / "dualgraph", tmp_path / "xdg" / "dualgraph" / "kernels"
    assert len(_libraries(d)) == 1
    for p in (top, d):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / _libraries(d)[0]).st_mode) == 0o600


@posix
@needs_cc
def test_cache_location_falls_back_to_home_and_can_be_overridden(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec ignores a relative value
    assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0
    assert len(_libraries(tmp_path / "home" / ".cache" / "dualgraph" / "kernels")) == 1
    assert native.cache_dir() == os.path.realpath(tmp_path / "home" / ".cache" / "dualgraph" / "kernels")

    native._reset()
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(tmp_path / "mine" / "k"))
    assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0
    assert len(_libraries(tmp_path / "mine" / "k")) == 1
    for p in (tmp_path / "mine", tmp_path / "mine" / "k"):  # created by dualgraph: private
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o700


@posix
@needs_cc
@pytest.mark.parametrize("how", ["world-writable", "owned by another user", "symlink to world-writable"])
def test_a_library_planted_in_an_unsafe_directory_is_never_loaded(tmp_path, monkeypatch, how):
    d = tmp_path / "cache"
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(d))
    assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0
    [name] = _libraries(d)

    # control: in the user's own directory the planted file is exactly what would be loaded
    marker = _plant(tmp_path, d / name)
    native._reset()
    assert _call(native.build(GOOD, [ctypes.c_void_p])) == 666.0 and marker.exists()
    marker.unlink()

    marker = _plant(tmp_path, d / name)
    native._reset()
    if how == "world-writable":
        d.chmod(0o777)
    elif how == "owned by another user":
        monkeypatch.setattr(native, "_uid", lambda: os.getuid() + 1)
    else:
        d.chmod(0o777)
        link = tmp_path / "link"
        link.symlink_to(d)
        monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(link))
    with pytest.warns(RuntimeWarning, match="not owned by this user or is writable by others"):
        assert native.build(GOOD, [ctypes.c_void_p]) is None
    assert not marker.exists()
    assert native.available() is False  # no C loops at all, and no exception
    assert native.build("void other(void) {}\n", [], "other") is None
    assert not marker.exists()


@posix
@needs_cc
def test_a_symlink_to_a_private_directory_is_fine(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(tmp_path / "link"))
    assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0
    assert len(_libraries(tmp_path / "real")) == 1


@posix
@needs_cc
def test_a_library_file_others_can_write_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(d))
    native.build(GOOD, [ctypes.c_void_p])
    [name] = _libraries(d)
    marker = _plant(tmp_path, d / name)
    (d / name).chmod(0o666)
    native._reset()
    assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0
    assert not marker.exists()
    assert _libraries(d) == [name] and stat.S_IMODE(os.stat(d / name).st_mode) == 0o600


@posix
@needs_cc
def test_a_read_only_cache_falls_back_to_numpy_and_still_loads_what_is_there(tmp_path, monkeypatch):
    from dualgraph.kernels import ckernel
    d = tmp_path / "cache"
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(d))
    assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0
    d.chmod(0o500)
    if os.geteuid() == 0:  # root writes through permission bits: refuse the write the way the kernel would
        real = tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and os.path.realpath(dir) == os.path.realpath(d):
                raise PermissionError(13, "Permission denied", str(dir))
            return real(*args, dir=dir, **kwargs)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    native._reset()
    try:
        assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0  # already built: loaded read-only
        with pytest.warns(RuntimeWarning, match="not writable"):
            assert native.build("void other(double *o) { o[0] = 2.0; }\n", [ctypes.c_void_p]) is None
        xn = np.random.default_rng(0).standard_normal(ckernel.MIN_SIZE + 1).astype(np.float32)
        got = dg.function(lambda x: dg.exp(x * 0.5) + x * 3.0)(dg.tensor(xn)).numpy()
        assert np.allclose(got, np.exp(xn * np.float32(0.5)) + xn * np.float32(3.0), rtol=1e-6, atol=1e-6)
        assert len(_libraries(d)) == 1 and not [n for n in os.listdir(d) if n.startswith(".")]
    finally:
        d.chmod(0o700)


@posix
def test_a_compiler_that_hangs_costs_one_timeout_for_the_whole_process(tmp_path, monkeypatch):
    calls, pids = tmp_path / "calls", tmp_path / "pids"
    monkeypatch.setenv("CC", _script(tmp_path / "slowcc", f"echo x >> {calls}\necho $$ >> {pids}\nexec sleep 30\n"))
    monkeypatch.setenv("DUALGRAPH_CC_TIMEOUT", "2")
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    families = [native.Loops("void a_{t}({t} *x) {{ x[0] = 1; }}\n", {"a_{t}": ([ctypes.c_void_p], None)}),
                native.Loops("void b_{t}({t} *x) {{ x[0] = 2; }}\n", {"b_{t}": ([ctypes.c_void_p], None)})]
    with pytest.warns(RuntimeWarning, match="did not finish within 2 s"):
        assert families[0](np.float32) is None
    assert families[1](np.float64) is None
    assert native.build(GOOD, [ctypes.c_void_p]) is None
    assert native.compiler() is None and native.available() is False
    assert len(calls.read_text().split()) == 1  # one wait in all, not one per kernel family
    for pid in pids.read_text().split():
        with pytest.raises(ProcessLookupError):  # the hung compiler was killed, not left running
            os.kill(int(pid), 0)


def _hangs_when_compiling(tmp_path, calls):
    # answers the version/target probes at once, writes half an output file, then hangs
    return _script(tmp_path / "slowcc", f"""case "$1" in --version|-###) echo fakecc 1.0; exit 0;; esac
echo x >> {calls}
while [ $# -gt 0 ]; do [ "$1" = -o ] && printf 'half a libr' > "$2"; shift; done
exec sleep 30
""")


@posix
def test_threads_compiling_with_a_hung_compiler_all_give_up_after_one_timeout(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    monkeypatch.setenv("CC", _hangs_when_compiling(tmp_path, calls))
    monkeypatch.setenv("DUALGRAPH_CC_TIMEOUT", "2")
    d = tmp_path / "cache"
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(d))
    n = 4
    results, barrier = [0] * n, threading.Barrier(n)

    def work(i):
        barrier.wait()
        results[i] = native.build(f"void kernel(double *o) {{ o[0] = {i}; }}\n", [ctypes.c_void_p])
    with pytest.warns(RuntimeWarning, match="did not finish"):
        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [None] * n
    assert 1 <= len(calls.read_text().split()) <= n  # at most those already running when it hung
    assert native.build("void kernel(void) {}\n", []) is None
    assert len(calls.read_text().split()) <= n
    assert os.listdir(d) == []  # the half-written outputs were removed, none under a final name


@posix
def test_a_compile_that_fails_half_way_leaves_no_library_behind(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(d))
    monkeypatch.setenv("CC", _script(tmp_path / "badcc", """case "$1" in --version|-###) echo fakecc 1.0; exit 0;; esac
while [ $# -gt 0 ]; do [ "$1" = -o ] && printf 'half a libr' > "$2"; shift; done
exit 1
"""))
    assert native.build(GOOD, [ctypes.c_void_p]) is None
    assert native.build(GOOD, [ctypes.c_void_p]) is None  # nothing half-built is picked up the second time
    assert os.listdir(d) == []
    if REAL_CC is not None and native.compiler() is not None:
        native._reset()
        monkeypatch.setenv("CC", REAL_CC)
        assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0
        assert len(os.listdir(d)) == 1 and len(_libraries(d)) == 1  # only the final file, no leftovers


@posix
@needs_cc
def test_the_cache_key_follows_the_compilers_target_not_the_hostname(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("DUALGRAPH_CACHE_DIR", str(d))
    # the real compiler, except that -march=native resolves to $FAKE_TARGET
    monkeypatch.setenv("CC", _script(tmp_path / "cc", f"""for a in "$@"; do
  [ "$a" = "-###" ] && {{ echo ' /fake/cc1 "-march='"$FAKE_TARGET"'" -mavx2'; exit 0; }}
done
exec {shutil.which(REAL_CC) or REAL_CC} "$@"
"""))
    names = []
    for target, host in [("znver3", "a"), ("skylake", "a"), ("znver3", "b")]:
        native._reset()
        monkeypatch.setenv("FAKE_TARGET", target)
        monkeypatch.setattr(platform, "node", lambda host=host: host)
        assert _call(native.build(GOOD, [ctypes.c_void_p])) == 1.0
        names.append(_libraries(d))
    assert len(names[0]) == 1 and len(names[1]) == 2  # another -march target: another library
    assert names[2] == names[1]  # another hostname, same compiler and target: the same library


def test_target_options_read_from_gcc_and_clang_listings():
    gcc = ('Target: x86_64-linux-gnu\ngcc version 12.2.0\nCOLLECT_GCC_OPTIONS=\'-march=native\'\n'
           ' /usr/lib/gcc/cc1 -quiet /dev/null "-march=znver3" -mavx2 -mno-avx512f --param "l1-cache-size=32"'
           ' "-mtune=znver3" -o /tmp/ccPmswPE.s\n as --64 -o /dev/null /tmp/ccPmswPE.s\n')
    assert native._target_options(gcc) == "-march=znver3 -mavx2 -mno-avx512f l1-cache-size=32 -mtune=znver3"
    clang = ('clang version 16.0.6\nTarget: x86_64-pc-linux-gnu\n "/usr/bin/clang-16" "-cc1" "-triple" '
             '"x86_64-pc-linux-gnu" "-target-cpu" "znver3" "-target-feature" "+avx2" "-target-feature" '
             '"-avx512f" "-o" "/tmp/null-1a2b.o"\n')
    assert native._target_options(clang) == "znver3 +avx2 -avx512f"


def test_no_cc_turns_c_loops_off_without_touching_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DUALGRAPH_NO_CC", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert native.compiler() is None and native.available() is False
    assert native.build(GOOD, [ctypes.c_void_p]) is None
    assert native.Loops("void f_{t}({t} *x) {{ }}\n", {"f_{t}": ([ctypes.c_void_p], None)})(np.float32) is None
    assert not (tmp_path / "xdg").exists()
    x = dg.randn(50_000)
    assert np.allclose(dg.function(lambda x: dg.exp(x * 0.5) + x * 3.0)(x).numpy(),
                       np.exp(x.numpy() * np.float32(0.5)) + x.numpy() * np.float32(3.0), rtol=1e-6, atol=1e-6)
