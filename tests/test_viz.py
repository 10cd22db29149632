"""DOT text, Graphviz drawings and matplotlib plots (fungrad.viz)."""

from __future__ import annotations

import math
import os
import shutil
import sys
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")  # no screen in tests

import graphviz  # noqa: E402
import pytest  # noqa: E402

import fungrad as fg  # noqa: E402
from fungrad import viz  # noqa: E402


def need_dot() -> None:
    """Skip without Graphviz's dot, except in CI, where it must be installed (the check is done at call sites)."""
    if shutil.which("dot") is None:
        if os.environ.get("CI"):
            pytest.fail("Graphviz's dot program is missing, and CI is set: install graphviz")
        pytest.skip("Graphviz's dot program is not installed")


def tutorial():
    a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
    c, f = fg.var(10.0, name="c"), fg.var(-2.0, name="f")
    L = (((a * b).named("e") + c).named("d") * f).named("L")
    return a, b, c, f, L


def square_plus_one():
    x = fg.var(3.0, name="x")
    return x, (x * x + 1).named("y")


EXPECTED = """\
digraph {
\tgraph [rankdir=LR]
\tv0 [label="{ x | data 3.0000 }" shape=record]
\tv1 [label="{  | data 9.0000 }" shape=record]
\top1 [label="*"]
\top1 -> v1
\tv0 -> op1
\tv0 -> op1
\tv2 [label="{  | data 1.0000 }" shape=record]
\tv3 [label="{ y | data 10.0000 }" shape=record]
\top3 [label="+"]
\top3 -> v3
\tv1 -> op3
\tv2 -> op3
}
"""


def test_to_dot_exact_text():
    _, y = square_plus_one()
    assert viz.to_dot(y) == EXPECTED
    assert viz.to_dot(y) == viz.to_dot(y)  # deterministic: ids are topological indices


def test_to_dot_exact_text_with_grads():
    _, y = square_plus_one()
    expected = (
        EXPECTED.replace("data 3.0000 }", "data 3.0000 | grad 6.0000 }")
        .replace("data 9.0000 }", "data 9.0000 | grad 1.0000 }")
        .replace("data 1.0000 }", "data 1.0000 | grad 1.0000 }")
        .replace("data 10.0000 }", "data 10.0000 | grad 1.0000 }")
    )
    assert viz.to_dot(y, fg.gradients(y)) == expected


def test_to_dot_tutorial_gradients():
    a, b, c, f, L = tutorial()
    text = viz.to_dot(L, fg.gradients(L))
    for rec in [
        "{ a | data 2.0000 | grad 6.0000 }",
        "{ b | data -3.0000 | grad -4.0000 }",
        "{ c | data 10.0000 | grad -2.0000 }",
        "{ f | data -2.0000 | grad 4.0000 }",
        "{ e | data -6.0000 | grad -2.0000 }",
        "{ d | data 4.0000 | grad -2.0000 }",
        "{ L | data -8.0000 | grad 1.0000 }",
    ]:
        assert f'[label="{rec}" shape=record]' in text
    assert text.count("shape=record") == 7
    assert text.count('[label="*"]') == 2 and text.count('[label="+"]') == 1
    assert text.count(" -> ") == 3 + 6  # op -> value, and one per argument


def test_to_dot_grads_only_where_given():
    a, b, c, f, L = tutorial()
    text = viz.to_dot(L, fg.gradients(L, wrt=[f]))
    assert text.count("| grad") == 1
    assert "{ f | data -2.0000 | grad 4.0000 }" in text


def test_to_dot_grad_nodes_and_special_values():
    x = fg.var(0.0, name="x")
    y = x.log()
    text = viz.to_dot(y, {x: fg.var(math.inf), y: -0.0})
    assert "{ x | data 0.0000 | grad inf }" in text
    assert "{  | data -inf | grad -0.0000 }" in text
    assert "op1 [label=log]" in text  # quoted like graphviz quotes: only when needed


def test_to_dot_tanh_neuron_layout():
    x = fg.var(0.5, name="x")
    out = x.tanh()
    text = viz.to_dot(out, rankdir="TB")
    assert text.splitlines()[1] == "\tgraph [rankdir=TB]"
    assert "\top1 [label=tanh]\n\top1 -> v1\n\tv0 -> op1\n" in text


def test_to_dot_escapes_record_characters():
    x = fg.var(1.0, name='a|b{c}<d>"e\\')
    y = fg.var(2.0, name="two\nlines")
    text = viz.to_dot(x * y)
    assert r'v0 [label="{ a\|b\{c\}\<d\>\"e\\ | data 1.0000 }" shape=record]' in text
    assert r'v1 [label="{ two\nlines | data 2.0000 }" shape=record]' in text


def test_to_dot_bad_input():
    x = fg.var(1.0)
    with pytest.raises(ValueError, match="rankdir must be one of LR, RL, TB, BT"):
        viz.to_dot(x, rankdir="left")
    with pytest.raises(TypeError, match="expected a fungrad Node"):
        viz.to_dot(1.0)
    with pytest.raises(TypeError, match="grads must be a dict"):
        viz.to_dot(x, [1.0])


def test_to_dot_deep_chain_at_a_low_recursion_limit():
    x = fg.var(0.1, name="x")
    y = x
    for _ in range(5000):
        y = y.sin()
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        text = viz.to_dot(y, fg.gradients(y, wrt=[x]))
    finally:
        sys.setrecursionlimit(old)
    assert text.count("shape=record") == 5001
    assert text.count("[label=sin]") == 5000
    assert text.count("| grad") == 1


def test_draw_is_the_same_graph():
    a, b, c, f, L = tutorial()
    g = fg.gradients(L)
    d = viz.draw(L, g)
    assert isinstance(d, graphviz.Digraph)
    assert d.source == viz.to_dot(L, g)
    assert d.format == "svg"
    d2 = viz.draw(L, format="png", rankdir="TB")
    assert d2.format == "png" and d2.source == viz.to_dot(L, rankdir="TB")
    _, y = square_plus_one()
    assert viz.draw(y).source == EXPECTED


def test_draw_source_matches_graphviz_quoting_for_odd_names():
    x = fg.var(1.0, name='q"|\\')
    y = (x * fg.var(2.0, name="node")).named("graph")
    assert viz.draw(y, fg.gradients(y)).source == viz.to_dot(y, fg.gradients(y))


def test_draw_without_graphviz_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=r'pip install "fungrad\[viz\]"'):
        viz.draw(fg.var(1.0))
    assert "digraph" in viz.to_dot(fg.var(1.0))  # DOT text needs nothing installed


def test_render_svg_and_png(tmp_path):
    need_dot()
    a, b, c, f, L = tutorial()
    svg = viz.render(L, tmp_path / "L.svg", fg.gradients(L))
    assert svg == tmp_path / "L.svg"
    text = svg.read_text()
    assert text.lstrip().startswith(("<?xml", "<svg"))
    assert "<svg" in text and ">grad 4.0000<" in text and ">data &#45;8.0000<" in text  # dot writes - as &#45;
    png = viz.render(L, str(tmp_path / "L.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = viz.render(L, tmp_path / "graph", format="PNG")  # no suffix: the format decides
    assert other.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plain = viz.render(L, tmp_path / "graph2")  # no suffix, no format: svg
    assert "<svg" in plain.read_text()


def test_render_odd_names(tmp_path):
    need_dot()
    x = fg.var(1.0, name='a|b{c}<d>"e\\')
    text = viz.render(x.exp(), tmp_path / "odd.svg").read_text()
    assert "a|b{c}&lt;d&gt;&quot;e\\" in text


def test_render_bad_format(tmp_path):
    need_dot()
    with pytest.raises(RuntimeError, match="dot -Tnonsense failed"):
        viz.render(fg.var(1.0), tmp_path / "x.nonsense")
    assert not (tmp_path / "x.nonsense").exists()


def test_render_without_dot(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz, or brew install graphviz"):
        viz.render(fg.var(1.0), tmp_path / "x.svg")
    assert not (tmp_path / "x.svg").exists()


# --------------------------------------------------------------------------
# matplotlib


def test_plot_history_loss_only():
    loss = [1.0, 0.5, 0.25, 0.2]
    fig = viz.plot_history({"loss": loss})
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    (line,) = ax.lines
    assert line.get_ydata().tolist() == loss
    assert line.get_xdata().tolist() == [0, 1, 2, 3]
    assert ax.get_yscale() == "linear"  # under two decades
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"


def test_plot_history_log_scale_and_accuracy():
    loss = [10.0, 1.0, 0.1, 0.01]
    acc = [0.5, 0.75, 1.0, 1.0]
    fig = viz.plot_history({"loss": loss, "accuracy": acc})
    ax, ax2 = fig.axes
    assert ax.get_yscale() == "log"
    assert ax.lines[0].get_ydata().tolist() == loss
    assert ax2.lines[0].get_ydata().tolist() == acc
    assert ax2.get_ylabel() == "accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "accuracy"]


def test_plot_history_log_scale_only_for_positive_losses():
    def scale(loss):
        return viz.plot_history({"loss": loss}).axes[0].get_yscale()

    assert scale([100.0, 0.0, 0.001]) == "linear"
    assert scale([100.0, -1.0, 0.001]) == "linear"
    assert scale([100.0, math.nan, math.inf, 0.001]) == "log"  # non-finite steps are left out
    assert scale([100.0, 1.5]) == "linear" and scale([100.0, 0.99]) == "log"
    assert scale([]) == "linear"


@pytest.mark.slow
def test_plot_history_accepts_objects_lists_and_an_axes(tmp_path):
    h = SimpleNamespace(loss=[3.0, 2.0, fg.var(1.0)], accuracy=None)
    fig = viz.plot_history(h)
    assert len(fig.axes) == 1 and fig.axes[0].lines[0].get_ydata().tolist() == [3.0, 2.0, 1.0]
    assert viz.plot_history([4.0, 3.0]).axes[0].lines[0].get_ydata().tolist() == [4.0, 3.0]
    from matplotlib.figure import Figure

    outer = Figure()
    ax = outer.add_subplot()
    assert viz.plot_history({"loss": [1.0, 2.0]}, ax=ax) is outer
    assert ax.lines[0].get_ydata().tolist() == [1.0, 2.0]
    fig.savefig(tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_history_of_a_train_history():
    h = fg.train.History(loss=[2.0, 1.0, 0.5], accuracy=[], step_time=[0.1, 0.1, 0.1])
    fig = viz.plot_history(h)
    assert len(fig.axes) == 1  # no accuracy recorded: no second axis
    assert fig.axes[0].lines[0].get_ydata().tolist() == [2.0, 1.0, 0.5]
    h = fg.train.History(loss=[2.0, 1.0], accuracy=[0.5, 1.0], step_time=[0.1, 0.1])
    assert viz.plot_history(h).axes[1].lines[0].get_ydata().tolist() == [0.5, 1.0]


def test_plot_history_bad_input():
    with pytest.raises(TypeError, match="'loss'"):
        viz.plot_history({"accuracy": [1.0]})


def test_plot_without_matplotlib(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.colors"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "fungrad\[plot\]"'):
        viz.plot_history({"loss": [1.0]})
    with pytest.raises(ImportError, match=r'pip install "fungrad\[plot\]"'):
        viz.plot_decision_boundary(lambda p: p[0], [[0.0, 0.0]], [1.0])


def test_plot_decision_boundary():
    calls = []

    def model(p):
        calls.append(p)
        return p[0] - 0.5

    xs = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    ys = [-1.0, 1.0, -1.0, 1.0]
    fig = viz.plot_decision_boundary(model, xs, ys, resolution=21)
    assert len(calls) == 21 * 21
    assert all(type(v) is float for p in calls for v in p) and all(len(p) == 2 for p in calls)
    (ax,) = fig.axes
    contour, points = ax.collections
    assert points.get_offsets().tolist() == xs
    assert points.get_array().tolist() == [0.0, 1.0, 0.0, 1.0]  # color index: label > 0
    assert points.cmap is contour.cmap and points.cmap(0.0) != points.cmap(1.0)
    # the grid covers the points with a margin of 10% of their range
    assert ax.get_xlim() == pytest.approx((-0.1, 1.1)) and ax.get_ylim() == pytest.approx((-0.1, 1.1))
    neg, pos = contour.get_paths()  # filled regions: score <= 0, then score > 0
    step = 1.2 / 20
    assert neg.vertices[:, 0].max() <= 0.5 + step
    assert pos.vertices[:, 0].min() >= 0.5 - step
    assert neg.vertices[:, 0].min() == pytest.approx(-0.1) and pos.vertices[:, 0].max() == pytest.approx(1.1)


def test_plot_decision_boundary_node_scores_and_points():
    xs = [[fg.var(-1.0), 2.0], [3.0, fg.var(4.0)]]
    fig = viz.plot_decision_boundary(lambda p: fg.var(p[1]) - 3.0, xs, [fg.var(-1.0), 1.0], resolution=5)
    ax = fig.axes[0]
    assert ax.collections[-1].get_offsets().tolist() == [[-1.0, 2.0], [3.0, 4.0]]
    fig2 = viz.plot_decision_boundary(lambda p: [p[0]], [[0.0, 0.0]], [1.0], resolution=3)
    assert fig2.axes[0].get_xlim() == pytest.approx((-1.0, 1.0))  # one point: a unit margin


def test_plot_decision_boundary_bad_input():
    with pytest.raises(ValueError, match="resolution must be an int >= 2"):
        viz.plot_decision_boundary(lambda p: p[0], [[0.0, 0.0]], [1.0], resolution=1)
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        viz.plot_decision_boundary(lambda p: p[0], [[0.0, 0.0], [1.0, 1.0]], [1.0])
    with pytest.raises(ValueError, match="2-d points"):
        viz.plot_decision_boundary(lambda p: p[0], [[0.0, 0.0, 0.0]], [1.0])
    with pytest.raises(ValueError, match="returned 2 outputs"):
        viz.plot_decision_boundary(lambda p: [p[0], p[1]], [[0.0, 0.0]], [1.0], resolution=2)


@pytest.mark.slow
def test_plot_graph_shows_the_rendered_picture():
    need_dot()
    x = fg.var(0.5, name="x")
    y = (x * x).tanh()
    fig = viz.plot_graph(y, fg.gradients(y), dpi=100)
    (ax,) = fig.axes
    img = ax.images[0].get_array()
    w, h = fig.get_size_inches()
    # the figure is the picture's size at the requested dpi
    assert (round(w * 100), round(h * 100)) == (img.shape[1], img.shape[0])
    assert not ax.axison
    # a Digraph from draw() gives the same picture
    same = viz.plot_graph(viz.draw(y, fg.gradients(y)), dpi=100).axes[0].images[0].get_array()
    assert same.shape == img.shape and (same == img).all()
    # into a given axes
    import matplotlib.figure

    f2 = matplotlib.figure.Figure()
    ax2 = f2.add_subplot()
    assert viz.plot_graph(y, ax=ax2) is f2 and len(ax2.images) == 1


# --------------------------------------------------------------------------
# Confusion matrices

# nine samples of three classes, counted by hand: rows are the true class,
# columns the predicted one
CONF_LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 2]
CONF_PREDICTED = [0, 0, 2, 1, 0, 2, 2, 1, 2]
CONF_BY_HAND = [
    [2, 0, 1],  # the three 0s: two right, one taken for a 2
    [1, 1, 0],  # the two 1s: one right, one taken for a 0
    [0, 1, 3],  # the four 2s: three right, one taken for a 1
]


def test_confusion_matrix_by_hand():
    m = viz.confusion_matrix(CONF_LABELS, CONF_PREDICTED, 3)
    assert m == CONF_BY_HAND
    assert all(type(n) is int for row in m for n in row)
    assert [sum(row) for row in m] == [3, 2, 4] and sum(m[i][i] for i in range(3)) == 6
    # a class never seen is a row and a column of zeros; a list of classes sets the order
    assert viz.confusion_matrix([0, 1], [1, 1], 3) == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert viz.confusion_matrix(CONF_LABELS, CONF_PREDICTED, [2, 1, 0]) == [[3, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert viz.confusion_matrix([-1.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [-1.0, 1.0]) == [[1, 1], [1, 1]]
    assert viz.confusion_matrix(["cat", "dog"], ["dog", "dog"], ["cat", "dog"]) == [[0, 1], [0, 1]]
    assert viz.confusion_matrix([], [], 2) == [[0, 0], [0, 0]]


def test_confusion_matrix_bad_input():
    with pytest.raises(ValueError, match=r"^confusion_matrix: predictions\[1\] is 3, not one of the classes \[0, 1, 2\]$"):
        viz.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match=r"labels\[0\] is \[0.5, 1.5\], not one of the classes"):
        viz.confusion_matrix([[0.5, 1.5]], [0], 2)  # logits are not a class
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        viz.confusion_matrix([0, 1, 1], [0, 1], 2)
    with pytest.raises(ValueError, match="a number of classes from 1 to 1,000"):
        viz.confusion_matrix([0], [0], 0)
    with pytest.raises(ValueError, match="name a class twice"):
        viz.confusion_matrix([0], [0], [0, 1, 0])
    with pytest.raises(TypeError, match="got str"):
        viz.confusion_matrix([0], [0], "01")


@pytest.mark.slow  # about 0.4 s: draws two confusion matrices, one of them 10 x 10 with a text per cell
def test_plot_confusion_draws_the_counts():
    fig = viz.plot_confusion(CONF_LABELS, CONF_PREDICTED)
    (ax,) = fig.axes
    assert ax.images[0].get_array().tolist() == CONF_BY_HAND
    assert [t.get_text() for t in ax.texts] == [str(n) for row in CONF_BY_HAND for n in row]
    # each count sits in its cell: x is the predicted class, y the true one
    assert [t.get_position() for t in ax.texts[:3]] == [(0, 0), (1, 0), (2, 0)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    # the classes given set the rows and columns: here ten, of which three occur
    ax10 = viz.plot_confusion(CONF_LABELS, CONF_PREDICTED, classes=10).axes[0]
    assert len(ax10.texts) == 100 and ax10.images[0].get_array()[:3, :3].tolist() == CONF_BY_HAND
    # into a given axes
    import matplotlib.figure

    f2 = matplotlib.figure.Figure()
    ax2 = f2.add_subplot()
    assert viz.plot_confusion(["b", "a"], ["a", "a"], ax=ax2) is f2
    assert ax2.images[0].get_array().tolist() == [[1, 0], [1, 0]]  # sorted: a, then b
    assert [t.get_text() for t in ax2.get_yticklabels()] == ["a", "b"]


def test_plot_confusion_bad_input(monkeypatch):
    with pytest.raises(ValueError, match="no samples"):
        viz.plot_confusion([], [])
    with pytest.raises(TypeError, match="pass classes="):
        viz.plot_confusion([[0.1, 0.9]], [1])
    with pytest.raises(ValueError, match=r"predictions\[0\] is 5"):
        viz.plot_confusion([0], [5], classes=3)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'plot_confusion needs matplotlib: pip install "fungrad\[plot\]"'):
        viz.plot_confusion([0], [0])


def test_the_drawing_says_which_argument_is_which_where_order_matters():
    a, b = fg.var(2.0, name="a"), fg.var(-1.0, name="b")
    y = (b + a) * (a - b) / fg.where(a, b, a) ** a
    text = fg.viz.to_dot(y)
    order = fg.toposort(y)
    v = {n: f"v{i}" for i, n in enumerate(order)}
    for i, n in enumerate(order):
        edges = [line.strip() for line in text.splitlines() if line.strip().startswith(tuple(f"{v[p]} -> op{i}" for p in n.parents))]
        edges = [e for e in edges if e.split(" -> ")[1].split(" ")[0] == f"op{i}"]
        if len(n.parents) > 1 and n.op not in ("add", "mul"):
            # each argument's edge carries its position, the order of n.parents
            assert edges == [f"{v[p]} -> op{i} [label={k} fontsize=11]" for k, p in enumerate(n.parents)], (n.op, edges)
        elif n.op:
            assert all("label" not in e for e in edges) and len(edges) == len(n.parents), (n.op, edges)
    assert {n.op for n in order} >= {"sub", "div", "pow", "where", "add", "mul"}
    assert fg.viz.draw(y).source == text


def test_a_nonzero_number_is_never_drawn_as_zero():
    x = fg.var(10.0, name="w")
    y = fg.tanh(x) + x * 1e-9 + fg.var(1e300, name="big") * 0.0 + fg.var(-0.0, name="nz")
    text = fg.viz.to_dot(y, fg.gradients(y))
    # tanh'(10) = 8.2e-09: a vanishing gradient, not a zero one
    assert "{ w | data 10.0000 | grad 9.2446e-09 }" in text
    assert "{ big | data 1.0000e+300 | grad 0.0000 }" in text  # a true zero stays 0.0000
    assert "{ nz | data -0.0000 | grad 1.0000 }" in text
    assert "data 1.0000e-09" in text


def test_an_op_label_that_looks_like_html_is_drawn_as_text():
    op = fg.primitive("viz_test_html_label", lambda a, b: a - b,
                      vjp=(lambda g, ans, a, b: g, lambda g, ans, a, b: -g), label="<=>")
    y = op(fg.var(1.0), fg.var(2.0))
    assert fg.viz.draw(y).source == fg.viz.to_dot(y) and 'op2 [label="<=>"]' in fg.viz.to_dot(y)


def test_the_drawn_body_of_a_vmap_shows_its_constants():
    w = fg.var(0.5, name="w")
    texts = []
    for body in (lambda w, x: w * x + 3.0, lambda w, x: w * x - 7.0):
        y = sum(fg.vmap(body, in_axes=(None, 0))(w, [1.0, 2.0]))
        texts.append([line.strip() for line in fg.viz.to_dot(y).splitlines() if line.strip().startswith("m0v")])
    assert 'm0v3 [label="{  | data 3.0000 }" shape=record]' in texts[0]
    assert 'm0v3 [label="{  | data 7.0000 }" shape=record]' in texts[1]
    # the inputs are placeholders of the trace: no number is shown for them
    assert 'm0v0 [label="{ in 0 }" shape=record]' in texts[0]


def test_confusion_matrix_refuses_a_number_of_classes_it_could_not_hold():
    for k, shown in ((10**400, "an int of more than 18 digits"), (10**6, "1,000,000"), (0, "got 0")):
        with pytest.raises(ValueError, match=f"classes must be a number of classes from 1 to 1,000 .*{shown}"):
            fg.viz.confusion_matrix([0], [0], classes=k)
    m = fg.viz.confusion_matrix([0, 999], [0, 1], classes=1000)
    assert len(m) == 1000 and m[0][0] == 1 and m[999][1] == 1 and sum(map(sum, m)) == 2


def test_confusion_matrix_refuses_a_dict_or_a_set_where_order_matters():
    with pytest.raises(TypeError, match="confusion_matrix: labels must be a sequence .* got dict"):
        fg.viz.confusion_matrix({0: 1, 1: 1}, [1, 1], classes=2)  # its keys are no labels
    with pytest.raises(TypeError, match="classes must be a number of classes or a list of them, got set"):
        fg.viz.confusion_matrix([0], [0], classes={"a", "b"})  # no order for the rows
    with pytest.raises(ValueError, match="1,000,000 classes; a confusion matrix has at most 1,000"):
        fg.viz.confusion_matrix([0], [0], classes=range(10**6))
    assert fg.viz.confusion_matrix((0, 1), (0, 0), classes=[0, 1]) == [[1, 0], [1, 0]]
