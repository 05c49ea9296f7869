"""The seeded quick run of the differential fuzzer (tests/fuzz.py), plus checks that it can fail.

The long run is a command: `.venv/bin/python -m tests.fuzz --programs 10000 --out fuzz_failures/`.
"""
import os
import runpy
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

import dualgraph as dg
import fuzz
from dualgraph.kernels import native
from dualgraph.kernels import ckernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_PROGRAMS = 200


def test_seeded_quick_run_finds_no_mismatch(tmp_path):
    # half the programs run with the C kernels' thresholds lowered to 0 (every eligible chain in C, at
    # these small sizes), a tenth start from an input above the real threshold, a tenth are made mostly
    # of the builders that reach the C loops' layouts
    s = fuzz.run(QUICK_PROGRAMS, seed=0, out=str(tmp_path), quick=True, c_threshold="mixed", big_every=10)
    print("\n" + s.text())
    assert s.programs == QUICK_PROGRAMS
    assert s.checks >= QUICK_PROGRAMS * 7
    assert s.lowered_programs == QUICK_PROGRAMS // 2 and s.big_programs == s.focused_programs == QUICK_PROGRAMS // 10
    assert not s.failures, "\n" + s.text() + "\nreproducers: " + ", ".join(sorted(os.listdir(tmp_path)))
    if native.available():
        # every C path of the library ran, in programs whose every check passed
        assert not [p for p in fuzz.C_PATHS if not s.c_programs[p]], "\n" + s.text()


def test_big_programs_start_above_the_c_threshold():
    for seed in (9, 19):
        big, focus = fuzz.program_kind(seed)
        assert big and not focus
        p = fuzz.generate(seed, big=True)
        assert max(a.size for a in p.arrays(0)) > ckernel.MIN_SIZE
    assert fuzz.program_kind(4) == (False, True) and fuzz.program_kind(5) == (False, False)


def test_generator_is_deterministic_and_programs_are_valid():
    a, b = fuzz.generate(7), fuzz.generate(7)
    assert a.source() == b.source()
    assert all(np.array_equal(x, y) for x, y in zip(a.arrays(0), b.arrays(0)))
    for seed in range(5):
        p = fuzz.generate(seed)
        outs = p.build()(*fuzz.tensors(p, 0, False))
        for o in outs:
            if o.dtype.kind == "f":
                assert np.isfinite(o.numpy()).all()


def test_programs_cover_the_families_the_issue_names():
    labels = Counter()
    for seed in range(150):
        labels.update(fuzz.generate(seed).ops)
    families = {
        "elementwise": {"tanh", "exp", "log", "mul", "add", "div"},
        "broadcasting": {"add", "mul", "sub", "where_gt"},
        "reductions": {"reduce_sum", "reduce_mean", "reduce_max", "reduce_var", "reduce_logsumexp"},
        "matmul": {"matmul", "linear", "einsum"},
        "reshape/transpose": {"reshape", "transpose", "permute", "T"},
        "indexing": {"getitem", "getitem_adv", "gather", "take_along_axis", "index_select", "scatter_add"},
        "softmax": {"softmax", "log_softmax", "softmax_chain"},
        "conv": {"conv2d", "max_pool2d", "avg_pool2d"},
        "cond/loops": {"cond", "cond_tuple", "fori_loop", "while_loop"},
    }
    for family, names in families.items():
        assert names & set(labels), f"no {family} in 150 programs"
    assert len(labels) > 100


def _adder():
    return fuzz.Program(seed=-1, inputs=[("x0", np.array([1.0, 2.0], np.float32), np.array([0.5, -1.0], np.float32)),
                                         ("x1", np.array([3.0, 4.0], np.float32), np.array([2.0, 1.0], np.float32))],
                        lines=[("v2", ["v2 = dg.tanh(x0 + x1) * 2.0"])], outputs=["v2"], ops=["add"],
                        loss_weights={"v2": np.array([1.0, 0.5], np.float32)})


def _broken_simplify(monkeypatch):
    """A simplify pass that turns add into sub: the kind of bug the fuzzer exists to catch."""
    from dualgraph.function import passes
    from dualgraph.ops.registry import REGISTRY
    real = passes.PASSES["simplify"]

    def broken(graph):
        g = real(graph)
        for n in g.nodes:
            if n.op.name == "add":
                n.op = REGISTRY["sub"]
        return g
    monkeypatch.setitem(passes.PASSES, "simplify", broken)


def test_the_checker_catches_a_broken_pass_and_the_reproducer_shows_it(monkeypatch, tmp_path, capsys):
    prog = _adder()
    assert fuzz.check_program(prog)[0] == []
    _broken_simplify(monkeypatch)
    fails, _, _ = fuzz.check_program(prog)
    variants = {f.variant for f in fails}
    assert {"compiled", "no_fold", "no_fuse", "onnx"} <= variants       # every config running simplify
    assert not variants & {"no_simplify", "no_passes"}                  # and only those
    f = next(f for f in fails if f.variant == "compiled")
    with fuzz.c_thresholds(0):
        path = fuzz.write_repro(f, str(tmp_path))
    with open(path) as fh:
        assert "ckernel.MIN_SIZE, ckernel.MIN_SIZE_SHORT = 0, 0" in fh.read()  # as the fuzzer ran it
    with pytest.raises(SystemExit) as e, ckernel.thresholds():   # (the script sets them; restored after)
        runpy.run_path(path, run_name="__main__")
    assert e.value.code == 1 and "mismatch" in capsys.readouterr().out
    monkeypatch.undo()
    with pytest.raises(SystemExit) as e, ckernel.thresholds():
        runpy.run_path(path, run_name="__main__")
    assert e.value.code == 0 and "agrees" in capsys.readouterr().out


def test_compare_flags_values_shapes_and_dtypes():
    a = np.array([1.0, 2.0], np.float32)
    assert fuzz.compare([a], [a + 1e-6], "x") is None
    assert "max abs error" in fuzz.compare([a], [a + 0.1], "x")
    assert "shape" in fuzz.compare([a], [a[:1]], "x")
    assert "dtype" in fuzz.compare([a], [a.astype(np.float64)], "x")
    assert "values differ" in fuzz.compare([np.array([1, 2])], [np.array([1, 3])], "x")


def test_reduction_keeps_only_what_fails(monkeypatch):
    prog = fuzz.Program(seed=-2, inputs=[("x0", np.array([1.0, 2.0], np.float32), np.array([0.5, 1.5], np.float32))],
                        lines=[("v1", ["v1 = dg.exp(x0)"]), ("v2", ["v2 = x0 * 3.0"]), ("v3", ["v3 = v2 + 1.0"]),
                               ("v4", ["v4 = v3 * v1"])],
                        outputs=["v4"], ops=["exp", "mul", "add", "mul"])
    _broken_simplify(monkeypatch)
    fails, _, _ = fuzz.check_program(prog, onnx=False, only="compiled")
    small = fuzz.reduce_failure(fails[0])
    assert [t for t, _ in small.program.lines] == ["v2", "v3"]     # exp and the last mul are not needed


def test_cli_prints_a_summary(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tests.fuzz", "--programs", "3", "--seed", "11", "--quick",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "programs fuzzed: 3" in r.stdout and "mismatches: 0" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tests.fuzz", "--show", "11"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.stdout.startswith("def prog(")
    _ = dg
