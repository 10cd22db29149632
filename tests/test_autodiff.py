"""grad, value_and_grad, gradients, jacobian and hessian: known answers, nesting, errors."""

from __future__ import annotations

import math
import threading
from collections import namedtuple

import attrs
import pytest

import fungrad as fg
from fungrad.expr import Node
from fungrad import autodiff, tree

Pair = namedtuple("Pair", "w b")


@attrs.frozen
class Affine:
    w: tuple
    b: float
    act: str = tree.static(default="tanh")


# ------------------------------------------------------------- the tutorial's numbers

def test_slope_of_the_tutorial_parabola():
    f = lambda x: 3 * x**2 - 4 * x + 5  # noqa: E731
    assert fg.grad(f)(3.0) == 14.0
    assert fg.grad(f)(-3.0) == -22.0
    assert fg.grad(f)(2 / 3) == pytest.approx(0.0, abs=1e-15)


def test_backprop_through_L():
    a, b, c, f = fg.var(2.0, name="a"), fg.var(-3.0, name="b"), fg.var(10.0, name="c"), fg.var(-2.0, name="f")
    L = (a * b + c) * f
    assert L.value == -8.0
    g = fg.gradients(L)
    assert (g[a], g[b], g[c], g[f], g[L]) == (6.0, -4.0, -2.0, 4.0, 1.0)
    assert fg.grad(lambda p: (p["a"] * p["b"] + p["c"]) * p["f"])(
        {"a": 2.0, "b": -3.0, "c": 10.0, "f": -2.0}) == {"a": 6.0, "b": -4.0, "c": -2.0, "f": 4.0}


def neuron(p, tanh=fg.tanh):
    n = p["x1"] * p["w1"] + p["x2"] * p["w2"] + p["b"]
    return tanh(n)


NEURON = {"x1": 2.0, "x2": 0.0, "w1": -3.0, "w2": 1.0, "b": 6.8813735870195432}


def test_the_tanh_neuron():
    v, g = fg.value_and_grad(neuron)(NEURON)
    assert v == pytest.approx(math.sqrt(0.5), abs=1e-12)
    assert g["x1"] == pytest.approx(-1.5, abs=1e-12) and g["w1"] == pytest.approx(1.0, abs=1e-12)
    assert g["x2"] == pytest.approx(0.5, abs=1e-12) and g["w2"] == 0.0
    assert g["b"] == pytest.approx(0.5, abs=1e-12)


def test_tanh_written_with_exp_has_the_same_gradients():
    def tanh_by_exp(n):
        e = (2 * n).exp()
        return (e - 1) / (e + 1)

    g1 = fg.grad(neuron)(NEURON)
    g2 = fg.grad(lambda p: neuron(p, tanh_by_exp))(NEURON)
    assert g1 == {k: pytest.approx(v, abs=1e-12) for k, v in g2.items()}


def test_every_path_counts():
    a = fg.var(3.0)
    assert fg.gradients(a + a, wrt=[a])[a] == 2.0
    assert fg.gradients(a * a, wrt=[a])[a] == 6.0
    b = a * 2
    assert fg.gradients(b * b + b, wrt=[a])[a] == 2 * (2 * 6.0 + 1)
    assert fg.grad(lambda x: x + x)(5.0) == 2.0


def test_grad_is_pure_and_repeatable():
    params = {"w": [1.0, 2.0], "b": 0.5}
    snapshot = {"w": list(params["w"]), "b": params["b"]}
    f = lambda p: (p["w"][0] * p["w"][1] + p["b"]) ** 2  # noqa: E731
    g1, g2 = fg.grad(f)(params), fg.grad(f)(params)
    assert g1 == g2 == {"w": [2 * 2.5 * 2.0, 2 * 2.5 * 1.0], "b": 2 * 2.5}
    assert params == snapshot


# ----------------------------------------------------------------- structure of results

def test_gradients_keep_the_structure_and_types_of_params():
    params = {
        "t": (1.0, 2.0), "l": [3.0], "nt": Pair(4.0, 5.0), "a": Affine((6.0, 7.0), 8.0, "relu"),
        "none": None, "unused": 9.0, "int": 2,
    }

    def f(p):
        return (p["t"][0] * p["t"][1] + p["l"][0] + p["nt"].w * p["nt"].b
                + p["a"].w[0] * p["a"].w[1] * p["a"].b + p["int"] ** 2)

    g = fg.grad(f)(params)
    assert tree.structure(g) == tree.structure(params)
    assert type(g["t"]) is tuple and type(g["nt"]) is Pair and type(g["a"]) is Affine and g["a"].act == "relu"
    assert g["t"] == (2.0, 1.0) and g["l"] == [1.0] and g["nt"] == Pair(5.0, 4.0)
    assert g["a"] == Affine((56.0, 48.0), 42.0, "relu")
    assert g["unused"] == 0.0 and g["none"] is None and g["int"] == 4.0
    assert all(type(v) is float for v in tree.leaves(g))


def test_argnums_and_has_aux():
    f = lambda a, b, c: a * b * c  # noqa: E731
    assert fg.grad(f, argnums=(0, 2))(2.0, 3.0, 4.0) == (12.0, 6.0)
    assert fg.grad(f, argnums=-1)(2.0, 3.0, 4.0) == 6.0
    assert fg.grad(f, argnums=(1,))(2.0, 3.0, 4.0) == (8.0,)
    g, aux = fg.grad(lambda x: (x * x, {"x": x, "note": "hi"}), has_aux=True)(3.0)
    assert g == 6.0 and aux == {"x": 3.0, "note": "hi"} and type(aux["x"]) is float
    (v, aux), g = fg.value_and_grad(lambda x: (x**3, x * 2), has_aux=True)(2.0)
    assert (v, aux, g) == (8.0, 4.0, 12.0)
    assert fg.grad(lambda x, scale=1.0: x * scale)(2.0, scale=3.0) == 3.0


def test_constant_outputs_have_zero_gradients():
    assert fg.grad(lambda x: 3.0)(1.0) == 0.0
    outer = fg.var(2.0)
    assert fg.grad(lambda x: outer * 2)(1.0) == 0.0
    assert fg.value_and_grad(lambda p: p[0])([1.0, 2.0]) == (1.0, [1.0, 0.0])


def test_jacobian_and_hessian():
    f = lambda v: [v[0] * v[1], v[0] + 2 * v[1], fg.sin(v[0])]  # noqa: E731
    assert fg.jacobian(f)([3.0, 4.0]) == [[4.0, 3.0], [1.0, 2.0], [math.cos(3.0), 0.0]]
    assert fg.jacobian(lambda x: {"sq": x * x, "c": 1.0})(3.0) == {"sq": 6.0, "c": 0.0}

    def rosen(v):
        x, y = v
        return (1 - x) ** 2 + 100 * (y - x**2) ** 2

    x, y = 1.5, -0.5
    h = fg.hessian(rosen)([x, y])
    assert h == [[pytest.approx(2 - 400 * (y - x**2) + 800 * x**2), pytest.approx(-400 * x)],
                 [pytest.approx(-400 * x), 200.0]]
    assert fg.hessian(lambda x: x**4)(2.0) == 48.0


# ------------------------------------------------------------- higher order and nesting

def test_higher_derivatives_to_any_depth():
    f = fg.exp
    for _ in range(6):
        f = fg.grad(f)
    assert f(0.0) == 1.0
    s = fg.sin
    for _ in range(6):
        s = fg.grad(s)
    assert s(0.3) == pytest.approx(-math.sin(0.3), abs=1e-15)
    assert fg.grad(fg.grad(fg.grad(lambda x: x**4)))(2.0) == 48.0
    assert fg.grad(fg.grad(lambda x: x ** x))(1.0) == pytest.approx(2.0)


def test_siskind_pearlmutter_perturbation_confusion():
    # d/dx (x * d/dy (x + y)) = d/dx (x * 1) = 1; confusing the perturbations gives 2
    for x in (1.0, 3.0, -2.5):
        assert fg.grad(lambda x: x * fg.grad(lambda y: x + y)(1.0))(x) == 1.0
        # the inner function reads the outer variable at the same point
        assert fg.grad(lambda x: x * fg.grad(lambda y: x + y)(x))(x) == 1.0


def test_nested_relatives_with_known_answers():
    # d/dx (x * d/dy (x * y)) = d/dx x^2 = 2x
    assert fg.grad(lambda x: x * fg.grad(lambda y: x * y)(2.0))(3.0) == 6.0
    # f(x) = d/dy (x * y) at y = x is x, so f' = 1 (2 if y were confused with x)
    assert fg.grad(lambda x: fg.grad(lambda y: x * y)(x))(3.0) == 1.0
    # d/dx [d/dy (x y^2)]_{y=x} = d/dx 2x^2 = 4x
    assert fg.grad(lambda x: fg.grad(lambda y: x * y * y)(x))(3.0) == 12.0
    # three levels: d/dx ( x * d/dy ( y * d/dz (x * y * z) ) ) = d/dx (x * 2xy) at y=1 ... = 4x y
    inner = lambda x: lambda y: y * fg.grad(lambda z: x * y * z)(1.0)  # noqa: E731
    assert fg.grad(lambda x: x * fg.grad(inner(x))(1.0))(2.0) == 8.0


def test_a_node_from_a_finished_trace_is_a_constant():
    kept = []

    def f(x):
        kept.append(x * 2)
        return x * x

    assert fg.grad(f)(3.0) == 6.0
    assert kept[0].value == 6.0
    assert fg.grad(lambda y: y * kept[0])(5.0) == 6.0
    assert fg.grad(lambda y: kept[0] * kept[0])(5.0) == 0.0


def test_gradients_inside_grad_is_differentiable():
    def f(x):
        g = fg.gradients(x * x * x, wrt=[x])[x]  # 3x^2, built with nodes
        return g

    assert fg.grad(f)(2.0) == 12.0


def test_outer_variables_inside_inner_grads():
    def outer(a):
        return fg.grad(lambda x: a * x * x)(a)  # = 2 a^2

    assert fg.grad(outer)(3.0) == 12.0
    assert fg.grad(lambda a: fg.value_and_grad(lambda x: a * x)(2.0)[0])(5.0) == 2.0


def test_grad_of_a_node_argument_links_to_it():
    x = fg.var(3.0, name="x")
    assert fg.grad(lambda v: v * v)(x) == 6.0
    y = fg.var(2.0)
    assert fg.grad(lambda v: v * y)(x) == 2.0


def test_the_first_order_backward_pass_runs_on_floats():
    seen = []

    def rule(g, ans, x):
        seen.append((type(g), type(ans), type(x)))
        return g * 3.0 * x * x

    cube = fg.primitive("cube_probe_floats", lambda x: x**3, vjp=(rule,))
    assert fg.grad(cube)(2.0) == 12.0
    assert seen == [(float, float, float)]
    seen.clear()
    assert fg.grad(fg.grad(cube))(2.0) == 12.0
    assert seen == [(float, Node, Node)]  # the inner pass computes with nodes, so the outer can differentiate it


def test_trace_state_is_per_thread():
    results = {}

    def work(i):
        x = 0.5 + i
        for _ in range(30):
            results.setdefault(i, []).append(fg.grad(fg.grad(lambda v: v**3 * fg.sin(v)))(x))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        x = 0.5 + i
        want = 6 * x * math.sin(x) + 6 * x**2 * math.cos(x) - x**3 * math.sin(x)
        assert results[i] == [pytest.approx(want, rel=1e-12)] * 30


# ------------------------------------------------------------------------------ errors

def test_non_scalar_output_says_what_to_do():
    with pytest.raises(TypeError, match=r"got list of 2 items.*fg\.jacobian.*sum"):
        fg.grad(lambda v: [v[0], v[1]])([1.0, 2.0])
    with pytest.raises(TypeError, match="has_aux=True"):
        fg.grad(lambda x: (x, 1.0))(1.0)
    with pytest.raises(TypeError, match="got str"):
        fg.grad(lambda x: "x")(1.0)


def test_has_aux_misuse():
    with pytest.raises(TypeError, match=r"^grad: has_aux=True, so f must return a pair \(output, aux\); it returned Node"):
        fg.grad(lambda x: x * 2, has_aux=True)(1.0)
    with pytest.raises(TypeError, match="^value_and_grad: .*tuple of 3 items"):
        fg.value_and_grad(lambda x: (x, 1, 2), has_aux=True)(1.0)


@pytest.mark.parametrize("bad, kind", [("s", "str"), (True, "bool"), (1j, "complex"), (object(), "object")])
def test_bad_leaves_are_named_with_their_path(bad, kind):
    with pytest.raises(TypeError, match=rf"argument 0 at \['layers'\]\[1\]\['w'\] is {kind}"):
        fg.grad(lambda p: 1.0)({"layers": [{"w": 1.0}, {"w": bad}]})
    with pytest.raises(TypeError, match=rf"argument 1 is {kind}"):
        fg.grad(lambda a, b: a, argnums=1)(1.0, bad)


def test_argnums_out_of_range_and_bad_types():
    with pytest.raises(ValueError, match=r"argnums=2 is out of range.*2 positional arguments \(valid: 0 to 1\)"):
        fg.grad(lambda a, b: a * b, argnums=2)(1.0, 2.0)
    with pytest.raises(ValueError, match="out of range"):
        fg.grad(lambda a: a, argnums=(0, -3))(1.0)
    with pytest.raises(TypeError, match="int or a tuple of ints"):
        fg.grad(lambda a: a, argnums="0")(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        fg.grad(lambda a: a, argnums=(0, 0))(1.0)
    with pytest.raises(ValueError, match="out of range"):
        fg.grad(lambda: 1.0)()


def test_gradients_argument_errors():
    with pytest.raises(TypeError, match="out must be a fungrad Node"):
        fg.gradients(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"wrt\[1\] must be a fungrad Node"):
        x = fg.var(1.0)
        fg.gradients(x * 2, wrt=[x, 2.0])  # type: ignore[list-item]


def test_an_error_inside_f_leaves_no_trace_open():
    def boom(x):
        raise RuntimeError("inside f")

    with pytest.raises(RuntimeError):
        fg.grad(boom)(1.0)
    assert fg.expr.current().level == 0 and fg.expr.current().tape is None
    assert fg.grad(lambda x: x * x)(2.0) == 4.0


@pytest.mark.parametrize("seed", range(20))
def test_toposort_puts_every_node_after_its_parents(seed):
    import random

    rng = random.Random(seed)
    nodes = [fg.var(rng.uniform(-1, 1)) for _ in range(3)]
    for _ in range(60):
        a, b = rng.choice(nodes), rng.choice(nodes[-5:])
        nodes.append(rng.choice([a + b, a * b, a - b, fg.tanh(a)]))
    out = sum(nodes[-8:])
    order = fg.toposort(out)
    pos = {n: i for i, n in enumerate(order)}
    assert len(pos) == len(order) and order[-1] is out
    assert all(pos[p] < pos[n] for n in order for p in n.parents)
    # the backward pass agrees with a forward-mode finite difference
    leaf = nodes[0]
    g = fg.gradients(out, wrt=[leaf])[leaf]
    assert g == pytest.approx(_numeric(nodes, out, leaf), rel=1e-5, abs=1e-6)


def _numeric(nodes, out, leaf, h=1e-6):
    # re-evaluate the recorded graph with the leaf nudged both ways
    def value(delta):
        vals = {}
        for n in fg.toposort(out):
            if n is leaf:
                vals[n] = n.value + delta
            elif not n.parents:
                vals[n] = n.value
            else:
                vals[n] = fg.PRIMITIVES[n.op].fwd(*[vals[p] for p in n.parents])
        return vals[out]

    return (value(h) - value(-h)) / (2 * h)


def test_the_collector_stays_on_with_a_raised_threshold_during_an_outermost_grad():
    import gc

    states = []

    def f(x):
        states.append((gc.isenabled(), gc.get_threshold()[0]))
        fg.grad(lambda y: y * y)(1.0)  # nested: changes nothing
        states.append((gc.isenabled(), gc.get_threshold()[0]))
        return x * x

    before = gc.get_threshold()
    assert gc.isenabled()
    assert fg.grad(f)(3.0) == 6.0
    assert states == [(True, autodiff._GC_YOUNG)] * 2
    assert gc.isenabled() and gc.get_threshold() == before
    with pytest.raises(ZeroDivisionError):
        fg.grad(lambda x: 1 // 0)(1.0)
    assert gc.isenabled() and gc.get_threshold() == before
    gc.disable()
    try:
        fg.grad(f)(3.0)
        assert not gc.isenabled()  # a collector the user switched off stays off
    finally:
        gc.enable()
    gc.set_threshold(123, 4, 5)  # the user's own thresholds come back as they were
    try:
        states.clear()
        fg.grad(f)(3.0)
        assert states[0] == (True, autodiff._GC_YOUNG) and gc.get_threshold() == (123, 4, 5)
    finally:
        gc.set_threshold(*before)


@pytest.mark.slow
def test_polynomial_derivatives_match_the_power_rule():
    # Hypothesis is imported here, not when the module is collected: `-m "not slow"` never loads it
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(st.floats(-3, 3), min_size=1, max_size=6),
        st.floats(-2, 2),
    )
    def check(coeffs, x):
        # p(x) = sum c_k x^k: first and second derivatives in closed form
        p = lambda x: sum(c * x**k for k, c in enumerate(coeffs))  # noqa: E731
        d1 = sum(k * c * x ** (k - 1) for k, c in enumerate(coeffs) if k >= 1)
        d2 = sum(k * (k - 1) * c * x ** (k - 2) for k, c in enumerate(coeffs) if k >= 2)
        assert fg.grad(p)(x) == pytest.approx(d1, rel=1e-12, abs=1e-12)
        assert fg.grad(fg.grad(p))(x) == pytest.approx(d2, rel=1e-12, abs=1e-12)

    check()


def test_int_leaves_become_variables_without_a_search_for_their_paths(monkeypatch):
    # the paths of the leaves are looked for only to name a bad one in a message:
    # looking them up for every int leaf made grad quadratic in the number of leaves
    calls = []
    real = fg.tree.flatten_with_path
    monkeypatch.setattr(fg.tree, "flatten_with_path", lambda t: calls.append(1) or real(t))
    xs = list(range(-1000, 1000))
    g = fg.grad(lambda xs: sum(x * x for x in xs))(xs)
    assert g == [2.0 * x for x in xs] and calls == []
    with pytest.raises(ValueError, match=r"^grad: argument 0 at \['b'\]\[1\]: an int of about 401 digits is too large"):
        fg.grad(lambda p: p["a"])({"a": 1.0, "b": [2, 10**400]})
    with pytest.raises(TypeError, match=r"^grad: argument 0 at \['b'\]\[0\] is str 'x'"):
        fg.grad(lambda p: p["a"])({"a": 1.0, "b": ["x"]})
    assert len(calls) == 2  # once per bad leaf
