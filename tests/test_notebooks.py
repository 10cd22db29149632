"""The tutorial's notebooks run top to bottom.

docs/_ext/fungrad_notebooks.py turns each tutorial chapter into a notebook when the
docs are built; here each one is generated afresh and its code cells are run
in order in a fresh namespace, as "Run all" would, without Jupyter, and each cell must
show the output that the page shows for it (the notebook stores it). A cell
whose doctest block has a ``:skipif:`` condition (PyTorch or micrograd not
installed) is skipped when the condition holds, as the docs build skips it.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
from pathlib import Path

import pytest
from conftest import require

DOCS = Path(__file__).resolve().parents[1] / "docs"
CHAPTERS = sorted(p.stem for p in (DOCS / "tutorial").glob("*.md"))


def _load_generator():
    spec = importlib.util.spec_from_file_location("fungrad_docs_notebooks", DOCS / "_ext" / "fungrad_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    require("matplotlib", 'pip install "fungrad[plot]"')  # some chapters' examples plot
    out = tmp_path_factory.mktemp("notebooks")
    paths = _load_generator().build(DOCS, out)
    return {p.stem: p for p in paths}


def test_one_notebook_per_chapter(notebooks):
    assert sorted(notebooks) == CHAPTERS
    assert len(CHAPTERS) >= 13


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_runs_top_to_bottom(notebooks, chapter, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = json.loads(notebooks[chapter].read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code[0]["source"][0].startswith("import fungrad as fg"), "the first code cell sets up"
    assert len(code) > 1, "a chapter without examples"
    namespace: dict = {"__name__": "__main__"}
    ran = 0
    for k, cell in enumerate(code):
        src = "".join(cell["source"])
        condition = cell["metadata"].get("skipif")
        if condition and eval(condition, namespace):  # noqa: S307 - our own docs
            continue
        try:
            shown = _run_cell(src, namespace, f"<{chapter}.ipynb cell {k}>")
        except Exception as err:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{chapter}.ipynb, code cell {k} raised {type(err).__name__}: {err}\n{src}")
        expected = "".join(cell["outputs"][0]["text"]) if cell["outputs"] else ""
        if "..." not in expected:  # the page's output, unless it elides part of it
            assert _norm(shown) == _norm(expected), f"{chapter}.ipynb, code cell {k}:\n{src}"
        ran += 1
    assert ran > 1


@pytest.fixture(autouse=True)
def _fresh_torch_defaults():
    # a notebook runs in a fresh process, where torch's default dtype is
    # float32; other tests set float64 for the whole session
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _run_cell(src: str, namespace: dict, filename: str) -> str:
    """Run one cell as Jupyter does; return what it prints and the repr of its last expression."""
    tree = ast.parse(src, filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(tree, filename, "exec"), namespace)  # noqa: S102
        if last is not None:
            value = eval(compile(ast.Expression(last.value), filename, "eval"), namespace)  # noqa: S307
            if value is not None:
                print(repr(value))
    return out.getvalue()


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n"))


def test_doctest_block_becomes_cells_that_end_with_their_output():
    gen = _load_generator()
    cells = gen.doctest_cells(
        ">>> x = 1\n>>> y = x + 1\n>>> y\n2\n>>> 1 / 0\nTraceback (most recent call last):\n  ...\nZeroDivisionError: division by zero\n"
    )
    assert cells[0] == "x = 1\ny = x + 1\ny"
    assert cells[1].startswith("try:  # raises on purpose\n    1 / 0\nexcept Exception as err:")
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        for src in cells:
            exec(src, namespace)  # noqa: S102
    assert out.getvalue() == "ZeroDivisionError: division by zero\n"


def test_prose_roles_and_figures_become_markdown():
    gen = _load_generator()
    md = (
        "# Title\n\nSee {func}`fungrad.grad` and {doc}`../numerics`.\n\n"
        "```{figure} /x.png\n:alt: a\n:width: 50%\n\nA caption.\n```\n\n"
        "```{doctest}\n>>> 1 + 1\n2\n```\n"
    )
    nb = gen.notebook(md)
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "`fungrad.grad()`" in text and "*numerics*" in text and "*Figure: A caption.*" in text
    assert "{func}" not in text and "{doc}" not in text and "{figure}" not in text  # no MyST left
    assert [("".join(c["source"])) for c in nb["cells"] if c["cell_type"] == "code"][-1] == "1 + 1"
