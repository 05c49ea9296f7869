"""The examples run end to end (as a user would start them, in a fresh process)."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_digits(tmp_path, *args):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "digits.py"), "--out", str(tmp_path),
                           *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"^test accuracy: ([\d.]+)%", proc.stdout, re.M)
    assert m, proc.stdout
    png = tmp_path / "digits_training.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return float(m.group(1)) / 100, proc.stdout, proc.stderr


def test_digits_runs(tmp_path):
    acc, out, err = _run_digits(tmp_path, "--quick")
    assert acc > 0.85  # 4 epochs
    assert "eager: test accuracy" in out
    assert "loss=" in err and "acc=" in err  # the progress bar shows loss and accuracy
    assert re.search(r"^compiled: (test accuracy [\d.]+%.*[\d.]+x the speed|skipped)", out, re.M), out
    assert re.search(r"^onnx: (exported.*agrees with eager on [\d.]+%|skipped)", out, re.M), out
    if "onnx: exported" in out:
        assert (tmp_path / "digits_mlp.onnx").exists()
        m = re.search(r"agrees with eager on ([\d.]+)% .*max \|logit difference\| ([\d.e+-]+)\)", out)
        assert m and float(m.group(1)) >= 99.0 and float(m.group(2)) < 1e-3, out


def test_digits_mlp_reaches_97_percent(tmp_path):
    acc, out, _ = _run_digits(tmp_path)
    assert acc >= 0.97, out


def test_digits_cnn_runs(tmp_path):
    acc, _, _ = _run_digits(tmp_path, "--model", "cnn", "--epochs", "1")
    assert acc > 0.3
