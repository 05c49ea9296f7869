"""dualgraph reaches cupy only through dualgraph/backend.py (device.xp and the backend's helpers), so the
GPU path is the CPU's code and the emulated GPU (DUALGRAPH_EMULATE_GPU) covers all of it. Runs without
a GPU."""
import os
import re
import subprocess
import sys

import dualgraph

PKG = os.path.dirname(dualgraph.__file__)
ALLOWED = {"backend.py", "_emulated_cupy.py"}


def test_no_module_imports_cupy_directly():
    bad = []
    pattern = re.compile(r"^\s*(import\s+cupyx?\b|from\s+cupyx?(\.\w+)*\s+import\b)", re.M)
    for root, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py") and f not in ALLOWED:
                path = os.path.join(root, f)
                with open(path, encoding="utf-8") as fh:
                    for m in pattern.finditer(fh.read()):
                        bad.append(f"{os.path.relpath(path, PKG)}: {m.group(0).strip()}")
    assert not bad, ("these modules import cupy/cupyx directly; use dualgraph.backend (device.xp, "
                     "backend.scipy_special(xp), backend.scatter_add, ...):\n" + "\n".join(bad))


def test_the_emulated_gpu_refuses_a_direct_cupy_import():
    code = ("import dualgraph as dg\n"
            "assert dg.cuda.is_available() and dg.device('cuda').type == 'gpu'\n"
            "try:\n    import cupyx.scipy.special\nexcept ImportError as e:\n    print('refused:', e)\n")
    env = dict(os.environ, DUALGRAPH_EMULATE_GPU="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: import cupyx: DUALGRAPH_EMULATE_GPU is set" in out.stdout
