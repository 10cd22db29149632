"""Pictures: expression graphs with their data and gradients, loss curves, decision boundaries.

:func:`to_dot` writes a graph as Graphviz DOT text the way micrograd's
``draw_dot`` draws it: one record per value (``name | data | grad``) and one
small node per op. It needs nothing installed. :func:`draw` builds the same
graph as a ``graphviz.Digraph`` (the ``viz`` extra), which shows inline in
Jupyter; :func:`render` writes SVG or PNG files with Graphviz's ``dot``
program. :func:`plot_history` and :func:`plot_decision_boundary` draw with
matplotlib (the ``plot`` extra).

>>> import fungrad as fg
>>> x = fg.var(2.0, name="x")
>>> print(fg.viz.to_dot(-x))  # doctest: +NORMALIZE_WHITESPACE
digraph {
    graph [rankdir=LR]
    v0 [label="{ x | data 2.0000 }" shape=record]
    v1 [label="{  | data -2.0000 }" shape=record]
    op1 [label="-"]
    op1 -> v1
    v0 -> op1
}
"""

from __future__ import annotations

import collections
import io
import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Any, Callable, Mapping, Sequence

from . import expr
from .expr import Node
from .autodiff import toposort

if TYPE_CHECKING:
    import graphviz  # type: ignore[import-untyped]
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "to_dot",
    "draw",
    "render",
    "plot_graph",
    "plot_history",
    "plot_decision_boundary",
    "confusion_matrix",
    "plot_confusion",
]

_RANKDIRS = ("LR", "RL", "TB", "BT")

# --------------------------------------------------------------------------
# One description of the drawing, written out as DOT text by to_dot and fed
# to graphviz by draw, so the two agree line for line.

# ("node", id, label, shape), ("edge", tail, head, the argument's position
# or "") or ("raw", a line of DOT, "", "")
_Stmt = tuple[str, str, str, str]

_RECORD_SPECIAL = re.compile(r'([\\"{}|<>])')
_ID = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*|-?(\.[0-9]+|[0-9]+(\.[0-9]*)?))$")
_KEYWORDS = {"node", "edge", "graph", "digraph", "subgraph", "strict"}


def _record_text(s: str) -> str:
    # backslash-escape what a record label treats as structure; newlines become \n
    s = _RECORD_SPECIAL.sub(r"\\\1", s)
    return s.replace("\r", "").replace("\n", r"\n")


def _quote(s: str) -> str:
    # graphviz's own quoting rule, so draw(...).source equals to_dot(...)
    if _ID.match(s) and s.lower() not in _KEYWORDS:
        return s
    return '"' + s + '"'


def _float(g: Any) -> float:
    return g.value if g.__class__ is Node else float(g)


def _number(v: float) -> str:
    # four decimals, as micrograd's draw_dot; a nonzero value that would show
    # as 0.0000 (a vanishing gradient is not a zero one) or one of 10^16 or
    # more in exponent form
    s = f"{v:.4f}"
    if (v != 0.0 and float(s) == 0.0) or 1e16 <= abs(v) < math.inf:
        s = f"{v:.4e}"
    return s


# ops whose value does not depend on the order of their arguments; the
# edges into any other op of several arguments say which argument each is
_SYMMETRIC = {"add", "mul", "maximum", "minimum"}


def _arguments(n: Node, i: int, index: dict[Node, int], prefix: str = "") -> list[_Stmt]:
    ps = n.parents
    numbered = len(ps) > 1 and n.op not in _SYMMETRIC
    return [("edge", f"{prefix}v{index[p]}", f"{prefix}op{i}", str(k) if numbered else "") for k, p in enumerate(ps)]


def _describe(out: Node, grads: Mapping[Node, Any] | None, rankdir: str, fname: str) -> list[_Stmt]:
    if out.__class__ is not Node:
        raise TypeError(f"{fname}: expected a fungrad Node, got {type(out).__name__} {out!r:.60}")
    if rankdir not in _RANKDIRS:
        raise ValueError(f"{fname}: rankdir must be one of {', '.join(_RANKDIRS)}, got {rankdir!r}")
    if grads is not None and not isinstance(grads, Mapping):
        raise TypeError(
            f"{fname}: grads must be a dict {{node: gradient}} such as fg.gradients(out) returns, "
            f"got {type(grads).__name__}"
        )
    order = toposort(out)
    index = {n: i for i, n in enumerate(order)}
    maps: dict[int, Any] = {}
    for n in order:
        if n.op == "vmap":
            maps.setdefault(id(n.value.map), n.value.map)  # type: ignore[attr-defined]
    shown = _map_names(maps)
    stmts: list[_Stmt] = []
    for i, n in enumerate(order):
        if n.op == "vmap":  # a whole batch: its outputs are the picks that follow
            label = f"{{ {_record_text(n.name)} | batch of {n.value.size}"  # type: ignore[attr-defined]
        else:
            label = f"{{ {_record_text(n.name)} | data {_number(n.value)}"
        g = None if grads is None or n.op == "vmap" else grads.get(n)  # a vmap node's is a list: its picks show it
        if g is not None:
            label += f" | grad {_number(_float(g))}"
        stmts.append(("node", f"v{i}", label + " }", "record"))
        if n.op:
            if n.op == "vmap":
                op = f"vmap {shown[id(n.value.map)]} ×{n.value.size}"  # type: ignore[attr-defined]
            else:
                op = expr.op_label(n)
            stmts.append(("node", f"op{i}", _quoted(op), ""))
            stmts.append(("edge", f"op{i}", f"v{i}", ""))
            stmts += _arguments(n, i, index)
    for k, m in enumerate(maps.values()):
        stmts += _body_statements(m, f"m{k}", shown[id(m)])
    return stmts


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _map_names(maps: dict[int, Any]) -> dict[int, str]:
    # two vmapped functions of one name (two lambdas) are told apart by a number,
    # so that each vmap node can be matched with the box that draws its body
    count = collections.Counter(m.name for m in maps.values())
    seen: collections.Counter[str] = collections.Counter()
    shown = {}
    for k, m in maps.items():
        if count[m.name] > 1:
            seen[m.name] += 1
            shown[k] = f"{m.name} #{seen[m.name]}"
        else:
            shown[k] = m.name
    return shown


def _body_statements(m: Any, prefix: str, name: str) -> list[_Stmt]:
    # a vmap's body, drawn once in a box of its own however many examples run it
    nodes, ins, outs = m.body()
    where_in = {x: k for k, x in enumerate(m._inputs)}
    where_out = {o: k for k, o in enumerate(outs) if o.__class__ is Node}
    index = {n: i for i, n in enumerate(nodes)}
    title = _quoted(f"body of vmap {name}, traced once")
    stmts: list[_Stmt] = [("raw", f"\tsubgraph cluster_{prefix} {{", "", ""), ("raw", f'\t\tlabel="{title}"', "", "")]
    for i, n in enumerate(nodes):
        tag = f"in {where_in[n]}" if n in where_in else (n.name or "")
        if n in where_out:
            tag = f"{tag} out {where_out[n]}".strip()
        fields = _record_text(tag)
        if not n.op and n not in where_in:  # a constant of the body: the same in every example
            fields += f" | data {_number(n.value)}"
        stmts.append(("node", f"{prefix}v{i}", f"{{ {fields} }}", "record"))
        if n.op:
            stmts.append(("node", f"{prefix}op{i}", _quoted(expr.op_label(n)), ""))
            stmts.append(("edge", f"{prefix}op{i}", f"{prefix}v{i}", ""))
            stmts += _arguments(n, i, index, prefix)
    stmts.append(("raw", "\t}", "", ""))
    return stmts


def to_dot(out: Node, grads: Mapping[Node, Any] | None = None, *, rankdir: str = "LR") -> str:
    """The graph of ``out`` as Graphviz DOT text, drawn like micrograd's ``draw_dot``.

    Every value is a record ``{ name | data 2.0000 | grad -3.0000 }`` (four
    decimals; a nonzero number they would show as ``0.0000``, or one of
    10^16 or more, in exponent form, ``4.9000e-05``; the ``grad`` field only
    for nodes that ``grads``, a dictionary such as :func:`fungrad.gradients`
    returns, has an entry for). Every computed value also gets a small node
    showing its op (``*``, ``+``, ``tanh``...), with one edge from each
    argument to it, so ``x * x`` shows two; where the order of the arguments
    matters (``-``, ``/``, ``**``, ``where``...), each edge is labelled with
    its argument's position, 0 first, as ``to_networkx`` numbers them
    (``arg``). Nodes are numbered in topological order, so the text is the
    same on every run. No Graphviz installation is needed to produce it.

    >>> import fungrad as fg
    >>> a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
    >>> y = a * b
    >>> print(fg.viz.to_dot(y, fg.gradients(y), rankdir="TB"))  # doctest: +NORMALIZE_WHITESPACE
    digraph {
        graph [rankdir=TB]
        v0 [label="{ a | data 2.0000 | grad -3.0000 }" shape=record]
        v1 [label="{ b | data -3.0000 | grad 2.0000 }" shape=record]
        v2 [label="{  | data -6.0000 | grad 1.0000 }" shape=record]
        op2 [label="*"]
        op2 -> v2
        v0 -> op2
        v1 -> op2
    }
    """
    stmts = _describe(out, grads, rankdir, "to_dot")
    lines = ["digraph {", f"\tgraph [rankdir={rankdir}]"]
    for kind, a, b, shape in stmts:
        if kind == "edge":
            lines.append(f"\t{a} -> {b}" + (f" [label={_quote(shape)} fontsize=11]" if shape else ""))
        elif kind == "raw":
            lines.append(a)
        else:
            lines.append(f"\t{a} [label={_quote(b)}" + (f" shape={shape}]" if shape else "]"))
    lines.append("}\n")
    return "\n".join(lines)


def _graphviz() -> Any:
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(
            'fungrad.viz.draw needs the graphviz Python package: pip install "fungrad[viz]" '
            "(rendering also needs Graphviz's dot program: apt-get install graphviz, or brew install graphviz)"
        ) from e
    return graphviz


def draw(
    out: Node, grads: Mapping[Node, Any] | None = None, *, format: str = "svg", rankdir: str = "LR"
) -> graphviz.Digraph:
    """The graph of ``out`` as a ``graphviz.Digraph``: the tutorial's ``draw_dot``.

    The drawing is the one :func:`to_dot` describes (its ``.source`` is the
    same text). In Jupyter it shows inline when it is the value of a cell;
    ``.render()`` and the inline display need Graphviz's ``dot`` program
    (see :func:`render`). Needs the ``viz`` extra: ``pip install "fungrad[viz]"``.

    >>> import fungrad as fg
    >>> x = fg.var(0.5, name="x")
    >>> y = x.tanh()
    >>> d = fg.viz.draw(y, fg.gradients(y))
    >>> d.source == fg.viz.to_dot(y, fg.gradients(y))
    True
    """
    stmts = _describe(out, grads, rankdir, "draw")
    gv = _graphviz()
    d = gv.Digraph(format=format, graph_attr={"rankdir": rankdir})
    for kind, a, b, shape in stmts:
        if kind == "edge":
            if shape:
                d.edge(a, b, label=shape, fontsize="11")  # mid-edge: at the head, two labels overlap
            else:
                d.edge(a, b)
        elif kind == "raw":
            d.body.append(a + "\n")
        elif shape:
            d.node(a, label=b, shape=shape)
        else:
            d.node(a, label=gv.nohtml(b))  # an op label such as <=> is text, not an HTML label
    return d


def render(
    out: Node, path: str | os.PathLike[str], grads: Mapping[Node, Any] | None = None, format: str | None = None
) -> Path:
    """Write a picture of ``out``'s graph (as :func:`to_dot` describes it) to ``path``.

    ``format`` is any output format of Graphviz's ``dot`` (``"svg"``,
    ``"png"``, ``"pdf"``...) and defaults to the suffix of ``path`` (``svg``
    when it has none). Runs the ``dot`` program directly, so the graphviz
    Python package is not needed; when ``dot`` is missing a ``RuntimeError``
    says how to install it. Returns the path written.

    >>> import fungrad as fg, tempfile, pathlib
    >>> x = fg.var(0.5, name="x")
    >>> y = x.tanh()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = fg.viz.render(y, pathlib.Path(tmp) / "tanh.svg", fg.gradients(y))
    ...     p.read_text().count("grad")
    2
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "svg").lower()
    path.write_bytes(_run_dot(to_dot(out, grads), fmt, "render"))
    return path


def _run_dot(text: str, fmt: str, fname: str) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            f"fungrad.viz.{fname} needs Graphviz's dot program, which is not on PATH: install Graphviz "
            "(apt-get install graphviz, or brew install graphviz). fungrad.viz.to_dot gives the DOT "
            "text without it."
        )
    r = subprocess.run([dot, f"-T{fmt}"], input=text.encode(), capture_output=True, check=False)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"fungrad.viz.{fname}: dot -T{fmt} failed (exit {r.returncode}): {err}")
    return r.stdout


def plot_graph(
    graph: Any, grads: Mapping[Node, Any] | None = None, ax: Axes | None = None, *, dpi: int = 150
) -> Figure:
    """A matplotlib figure of a drawn graph, for scripts and pages without an SVG viewer.

    ``graph`` is a node (drawn as :func:`to_dot` describes it, with ``grads``)
    or a ``graphviz.Digraph`` such as :func:`draw` returns, perhaps edited.
    The picture is rendered by Graphviz's ``dot`` at ``dpi`` and shown with
    ``imshow``, without axes. Without ``ax`` the figure is sized to the
    picture. Needs matplotlib (``pip install "fungrad[plot]"``) and ``dot``.

    >>> import fungrad as fg
    >>> x = fg.var(0.5, name="x")
    >>> fig = fg.viz.plot_graph(x.tanh())
    >>> fig.axes[0].images[0].get_array().shape[2] in (3, 4)
    True
    """
    text = graph.source if hasattr(graph, "source") else to_dot(graph, grads)
    png = _run_dot(text.replace("{", f"{{\n\tgraph [dpi={int(dpi)}]", 1), "png", "plot_graph")
    new = ax is None
    fig, ax = _figure(ax, "plot_graph")
    from matplotlib.image import imread

    img = imread(io.BytesIO(png), format="png")
    if new:
        h, w = img.shape[:2]
        fig.set_size_inches(w / dpi, h / dpi)
        fig.set_layout_engine(None)
        ax.set_position((0, 0, 1, 1))
    ax.imshow(img)
    ax.set_axis_off()
    return ax.figure  # type: ignore[return-value]  # a SubFigure when the given ax is in one


# --------------------------------------------------------------------------
# matplotlib


def _figure(ax: Axes | None, fname: str) -> tuple[Figure, Axes]:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f'fungrad.viz.{fname} needs matplotlib: pip install "fungrad[plot]"') from e
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]  # a SubFigure when ax is in one
    # A pyplot-free figure: no global state, no backend to choose, and in
    # Jupyter it shows once (as the cell's value), not twice.
    fig = Figure(figsize=(6.4, 4.0), layout="tight")
    return fig, fig.add_subplot()


def _series(history: Any, key: str) -> list[float] | None:
    if isinstance(history, Mapping):
        v = history.get(key)
    else:
        v = getattr(history, key, None)
    if v is None:
        return None
    return [_float(x) for x in v]


def plot_history(history: Any, ax: Axes | None = None) -> Figure:
    """The loss per step, and the accuracy on a second axis when recorded.

    ``history`` is a mapping with the key ``"loss"`` (a list of floats) and
    optionally ``"accuracy"``, or an object with ``.loss`` and ``.accuracy``
    attributes (the history :mod:`fungrad.train` returns), or the list of
    losses itself. The loss axis is logarithmic when every loss is positive
    and they span more than two decades. Draws into ``ax`` when given, else
    into a new figure; returns the figure (``fig.savefig("loss.png")``).
    Needs the ``plot`` extra: ``pip install "fungrad[plot]"``.

    >>> import fungrad as fg
    >>> fig = fg.viz.plot_history({"loss": [1.0, 0.1, 0.001], "accuracy": [0.5, 0.75, 1.0]})
    >>> ax = fig.axes[0]
    >>> ax.lines[0].get_ydata().tolist(), ax.get_yscale()
    ([1.0, 0.1, 0.001], 'log')
    """
    if isinstance(history, (list, tuple)):
        history = {"loss": history}
    loss = _series(history, "loss")
    if loss is None:
        raise TypeError(
            "plot_history: expected a mapping with a 'loss' list, or an object with a .loss attribute, "
            f"got {type(history).__name__}"
        )
    acc = _series(history, "accuracy")
    fig, ax = _figure(ax, "plot_history")
    (line,) = ax.plot(range(len(loss)), loss, color="tab:blue", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    finite = [v for v in loss if v == v and abs(v) != float("inf")]
    if finite and all(v > 0 for v in finite) and max(finite) > 100 * min(finite):
        ax.set_yscale("log")
    handles = [line]
    if acc:
        ax2 = ax.twinx()
        (line2,) = ax2.plot(range(len(acc)), acc, color="tab:orange", label="accuracy")
        ax2.set_ylabel("accuracy")
        if all(0.0 <= v <= 1.0 for v in acc):
            ax2.set_ylim(-0.02, 1.02)
        handles.append(line2)
    ax.legend(handles=handles, loc="center right")
    return fig


def plot_decision_boundary(
    model: Callable[[list[float]], Any],
    xs: Sequence[Sequence[Any]],
    ys: Sequence[Any],
    ax: Axes | None = None,
    resolution: int = 100,
) -> Figure:
    """The regions where ``model`` scores a 2-d point above and below zero, with the data.

    ``model`` is called on ``[x1, x2]`` (plain floats) at each point of a
    ``resolution`` by ``resolution`` grid covering the points ``xs`` with a
    margin; its score is a number or a node. The region where it is positive
    is shaded like the points labelled ``+1``, the rest like the points
    labelled ``-1``, and a legend says so. On plain floats fungrad's ops compute plain floats, so
    the grid costs no graph building. Returns the figure. Needs the ``plot``
    extra: ``pip install "fungrad[plot]"``.

    >>> import fungrad as fg
    >>> fig = fg.viz.plot_decision_boundary(lambda p: p[0] - p[1], [[0.0, 1.0], [1.0, 0.0]], [-1.0, 1.0], resolution=20)
    >>> fig.axes[0].collections[-1].get_offsets().tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"plot_decision_boundary: resolution must be an int >= 2, got {resolution!r}")
    pts = [[_float(v) for v in p] for p in xs]
    labels = [_float(y) for y in ys]
    if not pts or any(len(p) != 2 for p in pts):
        raise ValueError("plot_decision_boundary: xs must be a non-empty list of 2-d points [x1, x2]")
    if len(labels) != len(pts):
        raise ValueError(f"plot_decision_boundary: {len(pts)} points but {len(labels)} labels")
    fig, ax = _figure(ax, "plot_decision_boundary")
    from matplotlib.colors import ListedColormap

    lo = [min(p[k] for p in pts) for k in (0, 1)]
    hi = [max(p[k] for p in pts) for k in (0, 1)]
    pad = [0.1 * (b - a) or 1.0 for a, b in zip(lo, hi)]
    gx = [lo[0] - pad[0] + (hi[0] - lo[0] + 2 * pad[0]) * i / (resolution - 1) for i in range(resolution)]
    gy = [lo[1] - pad[1] + (hi[1] - lo[1] + 2 * pad[1]) * j / (resolution - 1) for j in range(resolution)]
    z = [[1.0 if _score(model, [x, y]) > 0 else 0.0 for x in gx] for y in gy]
    cmap = ListedColormap(["#d7301f", "#2b8cbe"])  # -1 red, +1 blue
    ax.contourf(gx, gy, z, levels=[-0.5, 0.5, 1.5], cmap=cmap, alpha=0.35)
    ax.scatter(
        [p[0] for p in pts],
        [p[1] for p in pts],
        c=[1.0 if y > 0 else 0.0 for y in labels],
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        s=24,
        edgecolors="k",
        linewidths=0.5,
    )
    ax.set_xlim(gx[0], gx[-1])
    ax.set_ylim(gy[0], gy[-1])
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    blue, red = "#2b8cbe", "#d7301f"
    dot: dict[str, Any] = {"marker": "o", "linestyle": "", "markeredgecolor": "k", "markeredgewidth": 0.5}
    key = [
        Patch(facecolor=blue, alpha=0.35, label="score > 0: predicts +1"),
        Patch(facecolor=red, alpha=0.35, label="score ≤ 0: predicts -1"),
        Line2D([], [], markerfacecolor=blue, label="a point labelled +1", **dot),
        Line2D([], [], markerfacecolor=red, label="a point labelled -1", **dot),
    ]
    ax.legend(handles=key, loc="upper right", fontsize="small", framealpha=0.9)
    return fig


def _score(model: Callable[[list[float]], Any], p: list[float]) -> float:
    s = model(p)
    if isinstance(s, (list, tuple)):
        if len(s) != 1:
            raise ValueError(f"plot_decision_boundary: model returned {len(s)} outputs; expected one score")
        s = s[0]
    return _float(s)


# --------------------------------------------------------------------------
# Confusion matrices


def confusion_matrix(labels: Sequence[Any], predictions: Sequence[Any], classes: int | Sequence[Any]) -> list[list[int]]:
    """How often each class was predicted as each class: ``m[true][predicted]``, a list of lists of ints.

    ``labels`` and ``predictions`` hold one class per sample, ``classes``
    the classes in the order of the rows and columns, or their number ``K``
    for the classes ``0`` to ``K - 1``. Row ``i`` counts the samples
    labelled ``classes[i]``, column ``j`` those predicted ``classes[j]``, so
    the diagonal holds the right answers and ``sum(m[i])`` is the number of
    samples of class ``i``. A label or a prediction that is none of the
    classes is a ``ValueError``. Needs nothing installed.

    >>> import fungrad as fg
    >>> fg.viz.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], classes=3)
    [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    >>> fg.viz.confusion_matrix([-1.0, 1.0, 1.0], [1.0, 1.0, 1.0], classes=[-1.0, 1.0])
    [[0, 1], [0, 2]]
    """
    order = _classes(classes, "confusion_matrix")
    index = {c: i for i, c in enumerate(order)}
    ys, ps = _samples(labels, "confusion_matrix", "labels"), _samples(predictions, "confusion_matrix", "predictions")
    if len(ys) != len(ps):
        raise ValueError(f"confusion_matrix: {len(ys)} labels but {len(ps)} predictions")
    m = [[0] * len(order) for _ in order]
    for k, (y, p) in enumerate(zip(ys, ps)):
        m[_class_index(index, y, "labels", k, order)][_class_index(index, p, "predictions", k, order)] += 1
    return m


#: The most classes a confusion matrix has: its counts take classes ** 2 ints.
MAX_CLASSES = 1000


def _count_text(n: int) -> str:
    # an int of thousands of digits cannot even be printed
    return f"{n:,}" if abs(n) < 10**18 else "an int of more than 18 digits"


def _classes(classes: Any, fname: str) -> list[Any]:
    if isinstance(classes, int) and not isinstance(classes, bool):
        if not 1 <= classes <= MAX_CLASSES:
            raise ValueError(
                f"{fname}: classes must be a number of classes from 1 to {MAX_CLASSES:,} (a matrix of "
                f"classes x classes counts) or a list of them, got {_count_text(classes)}"
            )
        return list(range(classes))
    wrong = f"{fname}: classes must be a number of classes or a list of them, got {type(classes).__name__}"
    if isinstance(classes, (str, bytes, Mapping, AbstractSet)):
        raise TypeError(wrong + " (a set has no order for the rows)" if isinstance(classes, AbstractSet) else wrong)
    try:
        order = list(classes)
    except TypeError:
        raise TypeError(wrong) from None
    if not order:
        raise ValueError(f"{fname}: classes is empty")
    if len(order) > MAX_CLASSES:
        raise ValueError(f"{fname}: {len(order):,} classes; a confusion matrix has at most {MAX_CLASSES:,}")
    if len(set(order)) != len(order):
        raise ValueError(f"{fname}: classes {order!r:.80} name a class twice")
    return order


def _samples(xs: Any, fname: str, name: str) -> list[Any]:
    # a dict iterates over its keys and a set in an order of its own: no samples in order
    if isinstance(xs, (str, bytes, Mapping, AbstractSet)):
        raise TypeError(f"{fname}: {name} must be a sequence (one class per sample), got {type(xs).__name__}")
    try:
        return list(xs)
    except TypeError:
        raise TypeError(f"{fname}: {name} must be a sequence (one class per sample), got {type(xs).__name__}") from None


def _class_index(index: dict[Any, int], c: Any, what: str, k: int, order: list[Any]) -> int:
    try:
        i = index.get(c)
    except TypeError:  # unhashable: a list of logits rather than a class
        i = None
    if i is None:
        raise ValueError(f"confusion_matrix: {what}[{k}] is {c!r:.40}, not one of the classes {order!r:.80}")
    return i


def plot_confusion(
    labels: Sequence[Any],
    predictions: Sequence[Any],
    classes: int | Sequence[Any] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The confusion matrix of a classifier as a picture: true classes down, predicted across.

    Each cell shows its count (see :func:`confusion_matrix`) and is shaded
    by it, so a good classifier draws a dark diagonal. ``classes`` gives the
    order of the rows and columns (a list, or their number ``K`` for ``0``
    to ``K - 1``); left out, it is every class that ``labels`` and
    ``predictions`` hold, sorted. Draws into ``ax`` when given, else into a
    new figure; returns the figure (``fig.savefig("confusion.png")``).
    Needs the ``plot`` extra: ``pip install "fungrad[plot]"``.

    >>> import fungrad as fg
    >>> fig = fg.viz.plot_confusion([0, 0, 1, 1, 1], [0, 1, 1, 1, 1])
    >>> ax = fig.axes[0]
    >>> ax.images[0].get_array().tolist(), [t.get_text() for t in ax.texts]
    ([[1, 1], [0, 3]], ['1', '1', '0', '3'])
    """
    ys, ps = _samples(labels, "plot_confusion", "labels"), _samples(predictions, "plot_confusion", "predictions")
    if not ys:
        raise ValueError("plot_confusion: no samples (empty labels)")
    if classes is None:
        try:
            classes = sorted(set(ys) | set(ps))
        except TypeError:
            raise TypeError(
                "plot_confusion: the classes in labels and predictions cannot be sorted (or are not classes "
                "at all, such as lists of logits); pass classes=[...] in the order to draw them"
            ) from None
    order = _classes(classes, "plot_confusion")
    m = confusion_matrix(ys, ps, order)
    new = ax is None
    fig, ax = _figure(ax, "plot_confusion")
    if new:
        fig.set_size_inches(5.6, 5.0)
    top = max(max(row) for row in m)
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(top, 1))
    for i, row in enumerate(m):
        for j, n in enumerate(row):
            color = "white" if n > top / 2 else ("0.6" if n == 0 else "black")
            ax.text(j, i, str(n), ha="center", va="center", color=color, fontsize="small")
    names = [str(c) for c in order]
    ax.set_xticks(range(len(order)), names)
    ax.set_yticks(range(len(order)), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    return fig

