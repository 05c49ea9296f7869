"""Run the Python examples in the docs so they cannot rot.

Any page under docs/ opts in with this line (an HTML comment, invisible when rendered):

    <!-- dualgraph: run-python-blocks -->

Then, in page order and in one namespace per page (so later blocks see earlier names):
  * every fenced block whose info string is ``python`` is executed;
  * ``python norun`` blocks are shown but not executed (pseudo-code, long jobs);
  * ``python gpu`` blocks run only where dg.gpu_available();
  * an ``output`` block right after a python block must equal what that block printed
    (trailing whitespace ignored; a line ``...`` in the expected text matches any run of lines).
Blocks run with the page's directory unchanged but inside a temporary working directory, with
dualgraph's thread-local modes reset afterwards. Tracebacks point at the .md file and its lines.
"""
import contextlib
import io
import os
import pathlib
import re

import pytest

import dualgraph as dg

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = "<!-- dualgraph: run-python-blocks -->"
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^\n`]*)$")


def parse_blocks(text):
    """[(info, first_line_number, code)] for every fenced block, in order (1-based line numbers)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i].strip())
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).strip(), i + 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        indent = min((len(ln) - len(ln.lstrip()) for ln in body if ln.strip()), default=0)
        blocks.append((info, start + 1, "\n".join(ln[indent:] for ln in body) + "\n"))
        i += 1
    return blocks


def output_matches(expected, got):
    exp = [ln.rstrip() for ln in expected.strip("\n").splitlines()]
    out = [ln.rstrip() for ln in got.strip("\n").splitlines()]

    def match(i, j):
        if i == len(exp):
            return j == len(out)
        if exp[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(out) + 1))
        return j < len(out) and exp[i] == out[j] and match(i + 1, j + 1)

    return match(0, 0)


def run_page(path, text=None):
    """Execute the opted-in page's blocks; raise AssertionError naming the block on a mismatch."""
    text = path.read_text() if text is None else text
    blocks = parse_blocks(text)
    namespace = {"__name__": "__doc__"}
    ran = 0
    for k, (info, line, code) in enumerate(blocks):
        words = info.split()
        if not words or words[0] != "python" or "norun" in words:
            continue
        if "gpu" in words and not dg.gpu_available():
            continue
        buf = io.StringIO()
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        with contextlib.redirect_stdout(buf):
            exec(compiled, namespace)
        ran += 1
        nxt = blocks[k + 1] if k + 1 < len(blocks) else None
        if nxt is not None and nxt[0].split()[:1] == ["output"]:
            assert output_matches(nxt[2], buf.getvalue()), (
                f"{path}:{line}: the block printed\n{buf.getvalue()}\nbut the page shows (line {nxt[1]})\n{nxt[2]}")
    return ran


def opted_in_pages():
    return sorted(p for p in DOCS.rglob("*.md") if MARKER in p.read_text())


@pytest.fixture
def clean_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    dg.manual_seed(0)
    yield
    dg.set_grad_enabled(True)
    dg.autograd.set_training(False)
    dg.autograd.set_recording(False)


def test_some_pages_opt_in():
    assert DOCS / "tensors_and_autograd.md" in opted_in_pages()


@pytest.mark.parametrize("page", opted_in_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_doc_page_runs(page, clean_state):
    assert run_page(page) > 0, f"{page} opts in but has no python blocks"


# ---- the runner itself --------------------------------------------------------------------------

PAGE = f"""{MARKER}
# demo

```python
x = 2 + 3
print(x)
```

```output
5
```

```python norun
this is not python
```

````python
y = x * 10
print("a")
print("b")
print(y)
````

```output
a
...
50
```
"""


def test_runner_executes_blocks_in_one_namespace_and_checks_output(tmp_path, clean_state):
    blocks = parse_blocks(PAGE)
    assert [b[0] for b in blocks] == ["python", "output", "python norun", "python", "output"]
    assert blocks[0][1] == 5 and blocks[0][2] == "x = 2 + 3\nprint(x)\n"
    assert run_page(tmp_path / "demo.md", PAGE) == 2


def test_runner_catches_wrong_output_and_errors_with_page_lines(tmp_path, clean_state):
    with pytest.raises(AssertionError, match="demo.md:5"):
        run_page(tmp_path / "demo.md", PAGE.replace("```output\n5\n", "```output\n6\n"))
    broken = PAGE.replace("y = x * 10", "y = undefined_name")
    with pytest.raises(NameError) as e:
        run_page(tmp_path / "demo.md", broken)
    tb = e.traceback[-1]
    assert os.path.basename(str(tb.path)) == "demo.md"
    assert tb.lineno + 1 == broken.splitlines().index("y = undefined_name") + 1   # pytest counts from 0


def test_output_matching_rules():
    assert output_matches("a\n...\nz", "a\nb\nc\nz\n")
    assert output_matches("a\n...\nz", "a\nz")
    assert not output_matches("a\nz", "a\nb\nz")
    assert output_matches("tensor([1., 2.])  ", "tensor([1., 2.])")


# ---- examples ----------------------------------------------------------------------------------------

EXAMPLES = ROOT / "examples"


def run_example(name, *args):
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quickstart_prints_the_seed_values():
    out = run_example("quickstart.py")
    expected = ["w.grad = 5.0", "x.grad = 2.0", "a.grad = 2.0",
                "is_leaf: w=True, x=True, a=False, b=False, y=False", "y.grad_fn = MulBackward0",
                "b.grad = None, y.grad = None", "w.grad_fn = None",
                "a.grad = [[2.0], [2.0]]", "b.grad = [[1.0], [1.0]]", "y = 11.0", "dy/dx = 6.0"]
    if (ROOT / "dualgraph" / "static").exists():
        expected.append("Session.run(y, feed_dict={x: 3}) = 11.0")
    for line in expected:
        assert line in out, line
    assert out.index("== PyTorch style") < out.index("== MXNet style") < out.index("== TF1 style")


def test_seed_graph_dot_is_current(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("seed_graph", EXAMPLES / "seed_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = mod.main(out_dir=str(tmp_path))
    fresh = pathlib.Path(path).read_text()
    assert "MulBackward0" in fresh and 'label="w\\n() float32"' in fresh
    assert (EXAMPLES / "seed_graph.dot").read_text() == fresh, "re-run examples/seed_graph.py and commit the .dot"
