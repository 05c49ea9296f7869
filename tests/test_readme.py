"""The README's quick tour runs as written (in a temporary directory)."""
import pathlib

from test_docs import run_page

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quick_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_page(README) >= 3
