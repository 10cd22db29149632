"""The API reference, written at build time from the package itself.

Before Sphinx reads the sources, this writes into ``docs/api/``:

- ``summary.rst.inc`` (included by ``api.rst``): one table of the names in
  ``fungrad.__all__``, grouped by the module that defines them, and a table
  of the modules;
- ``fungrad.<module>.rst``: one page per module, where the names exported at
  the top level are documented as ``fungrad.NAME`` (autodoc adds the
  module's own name, ``fungrad.expr.var``, as the canonical alias, so both
  spellings link) and the others as ``fungrad.<module>.NAME``;
- ``primitives.rst``: the table of primitives, read from
  ``fungrad.PRIMITIVES``: name, arity, label, forward, derivative rules
  (their source) and the values at the edges (computed here, by calling the
  forward and the rules).

A name added to ``fungrad.__all__`` or to a module's ``__all__`` appears in the
reference on the next build. Files are rewritten only when their text
changes, so an incremental build stays incremental.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import pkgutil
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

OUT = "api"

# Reading order of the modules; modules not named here follow alphabetically.
ORDER = [
    "expr", "autodiff", "forward", "batch", "jit", "codegen", "tree", "graph", "viz", "testing",
    "nn", "optim", "data", "train", "checkpoint", "cli", "bench",
]
TITLES = {
    "expr": "Expressions",
    "autodiff": "Gradients",
    "forward": "Forward mode",
    "batch": "Batching",
    "jit": "Compiling",
    "codegen": "Generated code",
    "tree": "Pytrees",
    "graph": "The networkx view",
    "viz": "Drawing",
    "testing": "Checking gradients",
    "nn": "Models",
    "optim": "Optimizers",
    "data": "Data",
    "train": "Training",
    "checkpoint": "Checkpoints",
    "cli": "Command line",
    "bench": "Benchmarks",
}


def _modules(pkg: ModuleType) -> list[str]:
    names = [
        m.name
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_") and not m.ispkg
    ]
    rank = {n: i for i, n in enumerate(ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(ORDER)), n))


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj) and not isinstance(obj, TypeVar):
        return "function"
    return "data"


def _public(mod: ModuleType) -> list[str]:
    """The names a module documents: its ``__all__`` (else its own public defs), then its type variables."""
    names = list(getattr(mod, "__all__", ()))
    if not names:
        names = [
            n
            for n, o in vars(mod).items()
            if not n.startswith("_")
            and (inspect.isfunction(o) or inspect.isclass(o))
            and getattr(o, "__module__", None) == mod.__name__
        ]
    # type variables show up in signatures (``fungrad.data.X``), so they get an entry too
    names += [n for n, o in vars(mod).items() if isinstance(o, TypeVar) and not n.startswith("_") and n not in names]
    return [n for n in names if not inspect.ismodule(getattr(mod, n, None))]


def _home(obj: Any, mod: ModuleType) -> bool:
    """Whether ``mod`` defines ``obj`` (rather than importing it from another module)."""
    m = getattr(obj, "__module__", None)
    if inspect.isfunction(obj) or inspect.isclass(obj):
        return m == mod.__name__
    return True


def _attr_doc(full: str) -> str:
    """The ``#:`` comment or the string literal after a module-level assignment, as Sphinx reads them."""
    from sphinx.pycode import ModuleAnalyzer

    modname, _, name = full.rpartition(".")
    try:
        docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
    except Exception:
        return ""
    return "\n".join(docs.get(("", name), [])).strip()


def _doc(obj: Any, full: str, kind: str) -> str:
    if kind == "data":  # an instance's docstring is its type's (dict's, str's): not about the name
        return _attr_doc(full)
    return inspect.getdoc(obj) or ""


def _directive(kind: str, full: str, obj: Any, home: str) -> str:
    if kind != "data":
        lines = [f".. auto{kind}:: {full}"]
        if kind in ("class", "exception"):
            lines.append("   :members:")
        return "\n".join(lines)
    # data: its documentation is the comment at its assignment in the module that defines it
    modname, _, short = full.rpartition(".")
    lines = [f".. py:data:: {short}", f"   :module: {modname}"]
    if isinstance(obj, (str, int, float, bool)) and len(repr(obj)) < 80:
        lines.append(f"   :value: {obj!r}")
    elif isinstance(obj, TypeVar):
        lines.append(f"   :value: {obj!r}")
    else:
        lines.append(f"   :type: {type(obj).__name__}")
    doc = _attr_doc(full) or _attr_doc(f"{home}.{full.rpartition('.')[2]}")
    if isinstance(obj, TypeVar) and not doc:
        doc = "A type variable of the signatures in this module."
    lines.append("")
    lines += [("   " + ln) if ln else "" for ln in doc.splitlines()]
    return "\n".join(lines)


def _title(text: str, ch: str = "=") -> str:
    return f"{text}\n{ch * len(text)}\n"


def _first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, never cut inside a literal."""
    para = doc.strip().split("\n\n")[0].replace("\n", " ")
    inside = False
    i = 0
    while i < len(para):
        if para.startswith("``", i):
            inside = not inside
            i += 2
            continue
        if not inside and para[i] == "." and (i + 1 == len(para) or para[i + 1] == " ") and i > 20:
            return para[: i + 1]
        i += 1
    return para


def _table(rows: list[tuple[str, str]]) -> str:
    out = [".. list-table::", "   :widths: 30 70", "   :class: fungrad-summary", ""]
    for name, text in rows:
        out.append(f"   * - {name}")
        out.append(f"     - {text or ' '}")
    return "\n".join(out) + "\n"


class _Plan:
    """Which page documents each name, under which full name."""

    def __init__(self) -> None:
        self.pkg = importlib.import_module("fungrad")
        self.modules = _modules(self.pkg)
        self.top = [n for n in getattr(self.pkg, "__all__", ()) if not inspect.ismodule(getattr(self.pkg, n, None))]
        # page (module name) -> list of (full name, kind)
        self.pages: dict[str, list[tuple[str, str]]] = {m: [] for m in self.modules}
        self.home_of: dict[str, str] = {}
        mods = {m: importlib.import_module(f"fungrad.{m}") for m in self.modules}
        self.mods = mods
        for name in self.top:
            obj = getattr(self.pkg, name)
            home = self._find_home(name, obj)
            self.home_of[name] = home
        for m, mod in mods.items():
            exported_here = {n for n, h in self.home_of.items() if h == m}
            entries: list[tuple[str, str]] = []
            for n in _public(mod):
                obj = getattr(mod, n, None)
                if obj is None and n not in vars(mod):
                    continue
                if n in exported_here and getattr(self.pkg, n, None) is obj:
                    entries.append((f"fungrad.{n}", _kind(obj)))
                    exported_here.discard(n)
                elif _home(obj, mod) and not (
                    # a function or class exported under another name is documented there
                    (inspect.isfunction(obj) or inspect.isclass(obj))
                    and any(obj is getattr(self.pkg, t, None) for t in self.top)
                ):
                    entries.append((f"fungrad.{m}.{n}", _kind(obj)))
            # exported names that the module's __all__ leaves out still get their entry
            entries += [(f"fungrad.{n}", _kind(getattr(self.pkg, n))) for n in sorted(exported_here)]
            self.pages[m] = entries

    def _find_home(self, name: str, obj: Any) -> str:
        m = getattr(obj, "__module__", None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and m and m.startswith("fungrad."):
            short = m.split(".", 1)[1]
            if short in self.modules:
                return short
        for short in self.modules:
            mod = importlib.import_module(f"fungrad.{short}")
            if getattr(mod, name, None) is obj:
                return short
        return ""  # defined in the package itself: documented on the API page


def _obj(full: str) -> Any:
    modname, _, name = full.rpartition(".")
    return getattr(importlib.import_module(modname), name)


def _rows(entries: list[tuple[str, str]], short: bool) -> list[tuple[str, str]]:
    rows = []
    for full, kind in entries:
        shown = full.rpartition(".")[2] if short else full
        text = _first_sentence(_doc(_obj(full), full, kind))
        if full == "fungrad.PRIMITIVES":
            text = "The table of primitive operations: see :doc:`/api/primitives`."
        rows.append((f":py:obj:`{shown} <{full}>`", text))
    return rows


def _module_page(plan: _Plan, m: str) -> str:
    full = f"fungrad.{m}"
    title = TITLES.get(m)
    out = [_title(f"{title}: ``{full}``" if title else f"``{full}``")]
    # a module whose name a top-level function also has (fungrad.jit) is not
    # indexed, so that ``fungrad.jit`` names the function
    clash = m in plan.top
    out.append(f".. automodule:: {full}\n   :no-members:" + ("\n   :no-index:" if clash else "") + "\n")
    entries = plan.pages[m]
    if not entries:
        return "\n".join(out)
    out.append(".. rubric:: Summary\n")
    if any(name.count(".") == 1 for name, _ in entries):
        out.append(
            "Names shown as ``fungrad.NAME`` below are also exported by the top-level package "
            "(``fg.NAME`` after ``import fungrad as fg``).\n"
        )
    out.append(_table(_rows(entries, short=True)))
    for name, kind in entries:
        if name == "fungrad.PRIMITIVES":
            out.append(
                ".. py:data:: PRIMITIVES\n   :module: fungrad\n   :no-index:\n\n"
                "   The table of primitives, documented on its own page: :doc:`primitives`.\n"
            )
            continue
        out.append(_directive(kind, name, _obj(name), full) + "\n")
    return "\n".join(out)


def _summary(plan: _Plan) -> str:
    out = [_title("Top-level names", "-")]
    out.append(
        "Every name in ``fungrad.__all__``, grouped by the module that defines it, and "
        "documented on that module's page as ``fungrad.NAME``.\n"
    )
    groups: dict[str, list[str]] = {}
    for name in plan.top:
        groups.setdefault(plan.home_of[name], []).append(name)
    for m in [""] + plan.modules:
        names = groups.get(m)
        if not names:
            continue
        head = "Defined in the package" if not m else f"{TITLES.get(m, m)}: :mod:`fungrad.{m}`"
        out.append(".. rubric:: " + head + "\n")
        out.append(_table(_rows([(f"fungrad.{n}", _kind(getattr(plan.pkg, n))) for n in names], short=True)))
    out.append(_title("Modules", "-"))
    rows = []
    for m in plan.modules:
        mod = plan.mods[m]
        link = f":doc:`fungrad.{m} <{OUT}/fungrad.{m}>`"
        rows.append((link, _first_sentence(inspect.getdoc(mod) or "")))
    rows.append((f":doc:`{OUT}/primitives`", "Every primitive operation: forward, derivative rules, values at the edges."))
    out.append(_table(rows))
    out.append(".. toctree::\n   :hidden:\n")
    out += [f"   {OUT}/fungrad.{m}" for m in plan.modules]
    out.append(f"   {OUT}/primitives")
    out.append("")
    own = groups.get("", [])
    if own:
        out.append(_title("Defined in the package", "-"))
        for n in own:
            o = getattr(plan.pkg, n)
            out.append(_directive(_kind(o), f"fungrad.{n}", o, "fungrad") + "\n")
    return "\n".join(out)


# --------------------------------------------------------------------------
# The table of primitives


def _lambda_source(fn: Any) -> str | None:
    """The text of a lambda, found in its file by the positions of its code."""
    try:
        src = inspect.getsource(inspect.getmodule(fn))
    except (TypeError, OSError):
        return None
    code = fn.__code__
    # the positions of the body's instructions (RESUME and friends have an empty span)
    pos = [(l, c) for l, el, c, ec in code.co_positions() if None not in (l, el, c, ec) and (el, ec) > (l, c)]
    if not pos:
        return None
    line, col = min(pos)
    best = None
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Lambda):
            start = (node.lineno, node.col_offset)
            end = (node.end_lineno, node.end_col_offset)
            if start <= (line, col) <= end and (best is None or (node.lineno, node.col_offset) > (best.lineno, best.col_offset)):
                best = node
    return ast.unparse(best) if best is not None else None


def _fn_text(fn: Any, defs: dict[str, str]) -> str:
    """How a table cell shows a forward or a rule: the lambda itself, or the function's name."""
    if fn is None:
        return "none: no derivative"
    if getattr(fn, "__name__", "") == "<lambda>":
        text = _lambda_source(fn)
        if text:
            return f"``{text}``"
    name = getattr(fn, "__qualname__", None) or repr(fn)
    mod = getattr(fn, "__module__", None) or ""
    if "<locals>" in name and inspect.isfunction(fn):
        # made by a factory (``_domain(math.sin, ...)``): name the factory and what it wraps
        factory = name.split(".<locals>")[0]
        owner = getattr(inspect.getmodule(fn), factory, None)
        if owner is not None:
            _fn_text(owner, defs)
        wrapped = [
            c.cell_contents for c in (fn.__closure__ or ()) if callable(getattr(c, "cell_contents", None))
        ]
        inner = ", ".join(_fn_text(w, defs) for w in wrapped if w is not fn)
        return f"``{factory}`` (below)" + (f" of {inner}" if inner else "")
    if mod.startswith("fungrad") and inspect.isfunction(fn):
        try:
            defs[name] = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            pass
        return f"``{name}`` (below)"
    return f"``{mod + '.' if mod and mod != 'builtins' else ''}{name}``"


def _num(v: Any) -> str:
    v = getattr(v, "value", v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return repr(v)
        return f"{v:.6g}"
    return repr(v)


_EDGE_POINTS = {
    1: [(0.0,), (-1.0,), (1000.0,), (-1000.0,)],
    2: [(1.0, 0.0), (0.0, 0.0), (-1.0, 0.5), (0.0, -1.0)],
    3: [(1.0, 2.0, 3.0), (0.0, 2.0, 3.0)],
}


def _edge_cell(p: Any, args: tuple[float, ...]) -> str:
    try:
        ans = p.fwd(*args)
    except Exception as e:  # the table reports it rather than hiding the primitive
        return f"raises {type(e).__name__}"
    ds = []
    for rule in p.vjp:
        if rule is None:
            ds.append("none")
            continue
        try:
            ds.append(_num(rule(1.0, ans, *args)))
        except Exception as e:
            ds.append(f"raises {type(e).__name__}")
    word = "derivative" if len(ds) == 1 else "derivatives"
    return f"{_num(ans)}; {word} {', '.join(ds)}"


def _cell(text: str) -> str:
    return text.replace("\n", " ") or " "


def _list_table(header: list[str], rows: list[list[str]], widths: str | None = None) -> str:
    out = [".. list-table::", "   :header-rows: 1"]
    if widths:
        out.append(f"   :widths: {widths}")
    out.append("")
    for row in [header] + rows:
        out.append(f"   * - {_cell(row[0])}")
        out += [f"     - {_cell(c)}" for c in row[1:]]
    return "\n".join(out) + "\n"


def _primitives_page(plan: _Plan) -> str:
    table = getattr(plan.pkg, "PRIMITIVES", None)
    out = [_title("The table of primitives")]
    out.append(".. currentmodule:: fungrad\n")
    out.append(
        ".. py:data:: PRIMITIVES\n   :module: fungrad\n   :type: dict[str, fungrad.Primitive]\n\n"
        "   Every primitive operation by name: a :class:`fungrad.Primitive` record with its "
        "forward on floats and one derivative (VJP) rule per argument.\n"
    )
    if not isinstance(table, dict) or not table:
        return "\n".join(out)
    out.append(
        "This page is generated from the table itself when the documentation is built, so it "
        "cannot drift from the code. A rule is called as ``rule(g, ans, *args)``: the cotangent "
        "of the output, the output, and the inputs; it returns the cotangent of its argument. "
        "At ``g = 1`` a rule is the partial derivative with respect to its argument, which is "
        "how forward mode reuses it. Adding a primitive is one entry in the table (see "
        ":class:`fungrad.Primitive`).\n"
    )
    defs: dict[str, str] = {}
    rows = []
    for key, p in table.items():
        name = getattr(p, "name", key)
        vjp = tuple(getattr(p, "vjp", ()) or ())
        arity = getattr(p, "arity", len(vjp))
        fn = getattr(plan.pkg, name, None)
        shown = f":func:`{name} <fungrad.{name}>`" if name in plan.top and callable(fn) else f"``{name}``"
        rules = "; ".join(f"{i + 1}: {_fn_text(r, defs)}" if len(vjp) > 1 else _fn_text(r, defs) for i, r in enumerate(vjp))
        said = getattr(p, "derivative", None)
        if isinstance(said, str) and said.strip():  # the record's own formula; the code is below
            rules = f"``{said.strip()}``"
        rows.append([shown, str(arity), f"``{getattr(p, 'label', '')}``", _fn_text(getattr(p, "fwd", None), defs), rules or " "])
    out.append(_title("Forward and derivative rules", "-"))
    out.append(_list_table(["name", "arity", "label", "forward", "derivative per argument"], rows, "10 5 7 30 48"))

    out.append(_title("Values at the edges", "-"))
    out.append(
        "Each cell is the forward's value at the point, then each rule's value at ``g = 1`` "
        "(the partial derivatives), computed by calling the table's functions while this page "
        "was built. ``none`` marks an argument with no derivative.\n"
    )
    by_arity: dict[int, list[Any]] = {}
    for key, p in table.items():
        by_arity.setdefault(len(tuple(getattr(p, "vjp", ()) or ())), []).append(p)
    for arity in sorted(by_arity):
        points = _EDGE_POINTS.get(arity)
        if not points:
            continue
        header = ["name"] + [
            ("x = " if arity == 1 else "args = ") + (_num(pt[0]) if arity == 1 else "(" + ", ".join(_num(a) for a in pt) + ")")
            for pt in points
        ]
        rows = [[f"``{getattr(p, 'name', '?')}``"] + [_edge_cell(p, pt) for pt in points] for p in by_arity[arity]]
        out.append(".. rubric:: " + {1: "One argument", 2: "Two arguments", 3: "Three arguments"}.get(arity, f"{arity} arguments") + "\n")
        out.append(_list_table(header, rows))

    out.append(_title("The primitives one by one", "-"))
    out.append("Each primitive's own documentation, then its forward and its rules as the table holds them.\n")
    for key, p in table.items():
        name = getattr(p, "name", key)
        out.append(_title(f"``{name}``", "~"))
        doc = inspect.cleandoc(getattr(p, "doc", "") or "")
        if doc:
            out.append(doc + "\n")
        fields = [f":forward: {_fn_text(getattr(p, 'fwd', None), defs)}"]
        params = tuple(getattr(p, "params", ()) or ())
        for i, r in enumerate(tuple(getattr(p, "vjp", ()) or ())):
            arg = f"``{params[i]}``" if i < len(params) else f"argument {i + 1}"
            fields.append(f":rule for {arg}: {_fn_text(r, defs)}")
        out.append("\n".join(fields) + "\n")
    if defs:
        out.append(_title("Forwards and rules written as functions", "-"))
        for name, src in defs.items():
            out.append(f".. rubric:: ``{name}``\n\n.. code-block:: python\n\n{textwrap.indent(src, '   ')}\n")
    return "\n".join(out)


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def generate(app: Any) -> None:
    plan = _Plan()
    out = Path(app.srcdir) / OUT
    out.mkdir(exist_ok=True)
    files = {"summary.rst.inc": _summary(plan), "primitives.rst": _primitives_page(plan)}
    for m in plan.modules:
        files[f"fungrad.{m}.rst"] = _module_page(plan, m)
    for name, text in files.items():
        _write(out / name, text)
    for stale in out.iterdir():
        if stale.name not in files and stale.suffix in (".rst", ".inc"):
            stale.unlink()


def resolve_module_spelling(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Link ``fungrad.graph.to_networkx`` (or ``to_networkx`` inside fungrad.graph) to ``fungrad.to_networkx``.

    A function exported at the top level is documented once, as
    ``fungrad.NAME``; its module's spelling names the same object. (For
    classes autodoc records that alias itself, as ``:canonical:``.)
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    context = node.get("py:module") or ""
    parts = target.split(".")
    if target.startswith("fungrad.") and len(parts) == 3:
        modname, name = ".".join(parts[:2]), parts[2]
    elif "." not in target and context.startswith("fungrad"):
        modname, name = context, target
    else:
        return None
    pkg = importlib.import_module("fungrad")
    try:
        same = getattr(importlib.import_module(modname), name) is getattr(pkg, name)
    except (ImportError, AttributeError):
        return None
    if not same or name not in getattr(pkg, "__all__", ()):
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], f"fungrad.{name}", node, contnode)


def setup(app: Any) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.autodoc")
    # before sphinx-gallery runs the examples, which may add primitives of their own
    app.connect("builder-inited", generate, priority=100)
    app.connect("missing-reference", resolve_module_spelling)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
