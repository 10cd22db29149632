"""Each tutorial chapter as a Jupyter notebook, made when the docs are built.

A chapter's examples are its ``{doctest}``, ``{testsetup}`` and
``{testcode}`` blocks; its prose becomes Markdown cells around them. A
doctest block becomes code cells, one per example that shows an output (the
statements before it join its cell, so each cell ends with what it shows),
and an example whose expected output is a traceback is wrapped in ``try`` so
that the notebook runs top to bottom. The notebooks are written as plain
nbformat-4 JSON (no Jupyter package needed) to ``_build/notebooks`` under the
docs source directory, and each chapter page gets a download link under its
title. ``tests/test_notebooks.py`` runs the notebooks' code.

As a Sphinx extension (``"fungrad_notebooks"`` in ``extensions``, with ``_ext`` on
``sys.path``) it writes the notebooks when the builder starts, before the
pages are read. Used alone: ``python docs/_ext/fungrad_notebooks.py OUTDIR``.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

CHAPTERS = "tutorial"  # the directory, under the docs source, whose pages become notebooks
OUTDIR = "_build/notebooks"  # under the docs source; _build is excluded from the sources

# the setup before every example: conf.py takes it as its doctest_global_setup
DEFAULT_SETUP = """\
import fungrad as fg
try:  # the PyTorch comparisons run where PyTorch is installed (as in CI)
    import torch
except ImportError:
    torch = None
try:  # the JAX examples run where JAX is installed (not in CI)
    import jax
except ImportError:
    jax = None
"""

_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\s*(?:\{(?P<name>[\w:-]+)\})?\s*(?P<arg>.*?)\s*$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
_ROLE = re.compile(r"\{(?:[\w-]+:)?(?P<role>[\w-]+)\}`(?P<body>[^`]*)`")
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]*)>$", re.S)
_SUMMARY = re.compile(r"^\s*<summary>(.*?)</summary>\s*$")
_SKIP_DIRECTIVES = {"toctree", "testoutput", "testcleanup", "contents", "only", "raw"}
_CODE_DIRECTIVES = {"doctest", "testcode", "testsetup"}


def _role(m: re.Match[str], titles: dict[str, str] | None = None) -> str:
    """A MyST role as Markdown: the text of a reference, or code for an API name."""
    role, body = m["role"], m["body"]
    explicit = _EXPLICIT.match(body)
    if explicit and explicit["text"]:
        text, target = explicit["text"], explicit["target"]
        return f"`{text}`" if role in ("func", "class", "data", "mod", "meth", "attr", "exc", "obj") else text
    target = body.lstrip("~!")
    if role in ("func", "class", "data", "mod", "meth", "attr", "exc", "obj"):
        name = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        return f"`{name}()`" if role in ("func", "meth") and not name.endswith(")") else f"`{name}`"
    if role == "ref" and target.startswith("sphx_glr_auto_examples_"):
        return f"the gallery example `{target[len('sphx_glr_auto_examples_'):]}`"
    if role == "doc":
        page = target.rsplit("/", 1)[-1]
        return f"*{(titles or {}).get(page, page)}*"
    if role == "math":
        return f"${target}$"
    return target


def _markdown(lines: list[str], titles: dict[str, str] | None = None) -> str:
    # a collapsible <details> would be split by the code cells inside it
    lines = [_SUMMARY.sub(r"**\1**", ln) for ln in lines if ln.strip() not in ("<details>", "</details>")]
    return _ROLE.sub(lambda m: _role(m, titles), "\n".join(lines)).strip("\n")


def _split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's ``:key: value`` lines and the content after them."""
    options: dict[str, str] = {}
    i = 0
    while i < len(body) and (m := _OPTION.match(body[i])):
        options[m["key"]] = m["value"]
        i += 1
    while i < len(body) and not body[i].strip():
        i += 1
    return options, body[i:]


def _indent(src: str) -> str:
    return "\n".join("    " + line if line else line for line in src.rstrip("\n").split("\n"))


def doctest_cells(text: str) -> list[str]:
    """The sources of the code cells for the examples of one doctest block."""
    return [src for src, _ in doctest_cells_with_output(text)]


def doctest_cells_with_output(text: str) -> list[tuple[str, str]]:
    """Code cells for one doctest block, each with the output the page shows for it."""
    cells: list[tuple[str, str]] = []
    pending: list[str] = []
    for ex in doctest.DocTestParser().get_examples(text):
        src = ex.source.rstrip("\n")
        if ex.exc_msg is not None:
            pending.append(
                "try:  # raises on purpose\n"
                f"{_indent(src)}\n"
                "except Exception as err:\n"
                '    print(f"{type(err).__name__}: {err}")'
            )
            # what the except clause prints: the class name without its module
            name, _, msg = ex.exc_msg.partition(":")
            cells.append(("\n".join(pending), f"{name.rsplit('.', 1)[-1]}:{msg}"))
            pending = []
        elif ex.want.strip():
            pending.append(src)
            cells.append(("\n".join(pending), ex.want.replace("<BLANKLINE>", "")))
            pending = []
        else:
            pending.append(src)
    if pending:
        cells.append(("\n".join(pending), ""))
    return cells


def _cell(
    kind: str, source: str, index: int, metadata: dict[str, Any] | None = None, output: str = ""
) -> dict[str, Any]:
    lines = source.split("\n")
    cell: dict[str, Any] = {
        "cell_type": kind,
        "id": f"cell-{index}",
        "metadata": metadata or {},
        "source": [line + "\n" for line in lines[:-1]] + [lines[-1]],
    }
    if kind == "code":
        cell["execution_count"] = None
        # the output the page shows, so that the notebook reads well before it
        # is run; running it replaces this with the real output
        out = output.rstrip("\n").split("\n") if output.strip() else []
        text = [line + "\n" for line in out]
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}] if text else []
    return cell


def notebook(
    md: str, setup: str = DEFAULT_SETUP, name: str = "", titles: dict[str, str] | None = None
) -> dict[str, Any]:
    """The notebook (nbformat 4 as a dict) of one MyST Markdown page.

    ``titles`` maps a page's file name (without ``.md``) to its title, for
    the text of ``{doc}`` references.
    """
    parts: list[tuple[str, str, dict[str, Any], str]] = []  # (kind, source, metadata, output)
    prose: list[str] = []

    def flush() -> None:
        text = _markdown(prose, titles)
        if text.strip():
            parts.append(("markdown", text, {}, ""))
        prose.clear()

    lines = md.split("\n")
    colon_stack: list[str] = []
    title_done = False
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if m and m["fence"].startswith(":"):
            if m["name"]:  # an admonition or dropdown: keep its content, title in bold
                colon_stack.append(m["fence"])
                options, _ = _split_options(lines[i + 1 :])
                i += 1 + len(options)
                title = m["arg"] or m["name"].capitalize()
                prose.extend(["", f"**{_ROLE.sub(_role, title)}**", ""])
                continue
            if colon_stack and len(m["fence"]) >= len(colon_stack[-1]) and not m["arg"]:
                colon_stack.pop()
                i += 1
                continue
        if m and m["fence"].startswith("`"):
            fence = m["fence"]
            j = i + 1
            while j < len(lines) and not (lines[j].startswith(fence) and not lines[j].strip("`").strip()):
                j += 1
            body = lines[i + 1 : j]
            directive = m["name"]
            i = j + 1
            if directive is None:  # a plain code block: shown, not run
                prose.extend([line, *body, fence])
                continue
            options, content = _split_options(body)
            if directive == "testoutput" and parts and parts[-1][0] == "code" and not "".join(prose).strip():
                kind, src, meta, _ = parts[-1]
                parts[-1] = (kind, src, meta, "\n".join(content))
                continue
            if directive in _SKIP_DIRECTIVES:
                continue
            if directive in _CODE_DIRECTIVES:
                flush()
                meta = {"skipif": options["skipif"]} if "skipif" in options else {}
                if directive == "doctest":
                    for src, out in doctest_cells_with_output("\n".join(content) + "\n"):
                        parts.append(("code", src, dict(meta), out))
                else:
                    src = "\n".join(content).strip("\n")
                    if src:
                        parts.append(("code", src, meta, ""))
                continue
            if directive == "math":
                prose.extend(["$$", *content, "$$"])
                continue
            if directive in ("figure", "image"):
                caption = _markdown(content, titles).strip()
                prose.append(f"*Figure: {caption}*" if caption else "")
                continue
            prose.extend(["", f"**{directive.capitalize()}**", "", *content])
            continue
        if not title_done and line.startswith("# "):
            prose.append(line)
            prose.append("")
            prose.append(
                "*This notebook is one chapter of the fungrad tutorial, made from the "
                "documentation page: every example of the page, in order, to run top to "
                "bottom. It needs `pip install fungrad`; cells that compare with PyTorch "
                "or micrograd need those installed too.*"
            )
            flush()
            parts.append(("code", setup.strip("\n"), {}, ""))
            title_done = True
            i += 1
            continue
        prose.append(line)
        i += 1
    flush()
    if not title_done:
        parts.insert(0, ("code", setup.strip("\n"), {}, ""))
    cells = [_cell(kind, src, k, meta, out) for k, (kind, src, meta, out) in enumerate(parts)]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "fungrad": {"source": name},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _write(path: Path, text: str) -> None:
    """Write only when changed, atomically (several builds may share a tree)."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def build(srcdir: str | os.PathLike[str], outdir: str | os.PathLike[str], setup: str = DEFAULT_SETUP) -> list[Path]:
    """Write one notebook per page of ``srcdir/tutorial`` to ``outdir``; return their paths."""
    written = []
    titles = {}
    for page in Path(srcdir).rglob("*.md"):
        if "_build" not in page.parts:
            m = re.search(r"^# (.+)$", page.read_text(encoding="utf-8"), re.M)
            titles[page.stem] = m[1].strip() if m else page.stem
    for page in sorted(Path(srcdir, CHAPTERS).glob("*.md")):
        nb = notebook(page.read_text(encoding="utf-8"), setup, name=f"{CHAPTERS}/{page.name}", titles=titles)
        path = Path(outdir, page.stem + ".ipynb")
        _write(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(path)
    return written


# -- Sphinx -------------------------------------------------------------------


def _on_builder_inited(app: Any) -> None:
    setup = getattr(app.config, "doctest_global_setup", "") or DEFAULT_SETUP
    build(app.srcdir, Path(app.srcdir, OUTDIR), setup)


def _on_doctree_read(app: Any, doctree: Any) -> None:
    """A download link under the title of each chapter page."""
    from docutils import nodes
    from sphinx import addnodes

    docname = app.env.docname
    if not docname.startswith(CHAPTERS + "/"):
        return
    stem = docname.split("/", 1)[1]
    if not Path(app.srcdir, OUTDIR, stem + ".ipynb").exists():
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    link = addnodes.download_reference(
        "",
        "",
        nodes.literal("", f"{stem}.ipynb"),
        reftarget=f"/{OUTDIR}/{stem}.ipynb",
        refdoc=docname,
        refexplicit=True,
        refdomain="",
        reftype="download",
    )
    para = nodes.paragraph(
        "",
        "",
        nodes.emphasis("", "Run this chapter yourself: "),
        link,
        nodes.emphasis("", " is a Jupyter notebook with every example of this page, in order."),
        classes=["fungrad-notebook-link"],
    )
    section.insert(1, para)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    # before the collector of download files (priority 500) registers the links
    app.connect("doctree-read", _on_doctree_read, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / OUTDIR)
    for p in build(Path(__file__).resolve().parents[1], out):
        print(p)
