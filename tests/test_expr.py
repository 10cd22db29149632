"""Nodes, ops and operator overloads, identity semantics, deep graphs and debug_nans."""

from __future__ import annotations

import math
import sys
import threading

import attrs
import pytest

import fungrad as fg
from fungrad.expr import Node


def test_leaf_fields_follow_the_contract():
    x = fg.var(2.0, name="x")
    assert x.value == 2.0 and type(x.value) is float
    assert (x.op, x.parents, x.name) == ("", (), "x")
    assert fg.var(3).value == 3.0 and type(fg.var(3).value) is float


def test_nodes_are_frozen():
    x = fg.var(2.0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        x.value = 3.0  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        x.name = "y"  # type: ignore[misc]
    assert attrs.has(Node) and not hasattr(x, "__dict__")


def test_nodes_compare_and_hash_by_identity():
    a, b = fg.var(2.0), fg.var(2.0)
    assert a != b and a == a
    assert len({a: 1, b: 2}) == 2
    assert fg.gradients(a * b, wrt=[a, b]) == {a: 2.0, b: 2.0}


def test_operators_with_numbers_on_either_side():
    x = fg.var(2.0)
    cases = {
        x + 3: 5.0, 3 + x: 5.0, x - 3: -1.0, 3 - x: 1.0, x * 3: 6.0, 3 * x: 6.0,
        x / 4: 0.5, 4 / x: 2.0, x**3: 8.0, 3**x: 9.0, x**x: 4.0, -x: -2.0, +x: 2.0, abs(-x): 2.0,
    }
    for node, want in cases.items():
        assert isinstance(node, Node) and node.value == want
    y = x * 3 + x.tanh() - 1 / x
    assert y.value == pytest.approx(6 + math.tanh(2) - 0.5, abs=1e-15)


def test_ops_follow_the_argument_kind():
    for name in ["exp", "log", "tanh", "relu", "sigmoid", "sqrt", "sin", "cos", "abs"]:
        f = getattr(fg, name)
        assert type(f(0.5)) is float
        node = f(fg.var(0.5))
        assert isinstance(node, Node) and node.op == name and node.value == f(0.5)
        assert getattr(fg.var(0.5), name)().value == f(0.5)
    assert type(fg.tanh(1)) is float


def test_methods_and_labels_exist_for_every_primitive():
    for name, p in fg.PRIMITIVES.items():
        assert p.name == name and p.label and len(p.vjp) == p.arity >= 1


def test_sum_of_nodes():
    x = fg.var(2.0)
    s = sum([x, x, x])
    assert s.value == 6.0
    assert fg.gradients(s, wrt=[x])[x] == 3.0


def test_comparisons_read_values_and_equality_is_identity():
    a, b = fg.var(1.0), fg.var(2.0)
    assert a < b and a <= b and b > a and b >= a and a < 1.5 and 0.5 < a
    assert not (a > b)
    assert bool(fg.var(0.0)) is False and bool(a) is True
    assert float(b) == 2.0
    assert (a == 1.0) is False  # a node is a variable, not its value


def test_bad_operands_and_values_raise_type_errors():
    x = fg.var(1.0)
    with pytest.raises(TypeError):
        x + "a"
    with pytest.raises(TypeError):
        "a" * x
    with pytest.raises(TypeError):
        x * [1.0]
    for bad in ["2", True, 1j, None, object()]:
        with pytest.raises(TypeError, match="expected a real number"):
            fg.var(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a real number"):
        fg.exp("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a str"):
        fg.var(1.0, name=3)  # type: ignore[arg-type]


def test_no_op_raises_python_arithmetic_errors():
    for x in [0.0, -0.0, -1.0, 1e308, -1e308, math.inf, -math.inf, math.nan]:
        for name in ["exp", "log", "tanh", "relu", "sigmoid", "sqrt", "sin", "cos", "abs"]:
            getattr(fg, name)(x)
        for y in [0.0, -0.0, 0.5, -1.0, 1e308, math.inf, math.nan]:
            for name in ["add", "sub", "mul", "div", "pow"]:
                getattr(fg, name)(x, y)
            fg.grad(lambda a, b: a**b / b + (a / b).log(), argnums=(0, 1))(x, y)


def test_named_gives_a_new_node_and_mutates_nothing():
    a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
    e0 = a * b
    e = e0.named("e")
    assert (e.name, e.op, e.parents, e.value) == ("e", "mul", (a, b), -6.0)
    assert e0.name == "" and e is not e0
    assert fg.named(a, "z").name == "z" and a.name == "a"
    with pytest.raises(TypeError):
        fg.named(1.0, "x")  # type: ignore[arg-type]


def test_const_is_not_differentiated():
    c = fg.const(3.0, name="c")
    assert c.name == "c" and c.level == -1
    assert fg.grad(lambda x: x * c + c)(2.0) == 3.0


def test_repr_and_format():
    x = fg.var(2.0, name="x")
    assert repr(x) == "Node(2.0, name='x')"
    assert repr(x * 2) == "Node(4.0, op='mul')"
    assert f"{x:.2f}" == "2.00"


def chain(n: int, x: Node) -> Node:
    y = x
    for _ in range(n):
        y = y * 1.0000001 + 0.5 if False else y + 1.0
    return y


@pytest.mark.slow
def test_a_million_node_chain_at_the_default_recursion_limit():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        x = fg.var(0.0, name="x")
        y = x
        for _ in range(500_000):  # two nodes per step: the add and its constant
            y = y + 1.0
        assert y.value == 500_000.0
        repr(y), hash(y)
        order = fg.toposort(y)
        assert len(order) == 1_000_001 and order[0] is x and order[-1] is y
        assert fg.gradients(y, wrt=[x])[x] == 1.0
        assert fg.grad(lambda v: sum_chain(v, 200_000))(1.0) == 1.0
        del order, y
    finally:
        sys.setrecursionlimit(limit)


def sum_chain(v, n):
    for _ in range(n):
        v = v * 1.0
    return v


def test_debug_nans_names_op_inputs_and_node():
    x = fg.var(0.0, name="x")
    with fg.debug_nans():
        with pytest.raises(FloatingPointError, match=r"op 'log' produced -inf from inputs \(x=0.0\)"):
            x.log()
        with pytest.raises(FloatingPointError, match=r"op 'div' produced inf from inputs \(1.0, x=0.0\)"):
            fg.var(1.0) / x
        q = fg.var(-1.0, name="q")
        with pytest.raises(FloatingPointError, match=r"a leaf \(node 'w'\) holds nan"):
            fg.var(math.nan, name="w")
        assert (q * x).value == -0.0
    # outside the block nothing is checked
    assert x.log().value == -math.inf


def test_debug_nans_in_grad_checks_values_and_gradients():
    with fg.debug_nans():
        with pytest.raises(FloatingPointError, match="'log' produced -inf"):
            fg.grad(fg.log)(0.0)
        # sqrt(0) is finite but its derivative is not
        with pytest.raises(FloatingPointError, match="gradient through op 'sqrt'"):
            fg.grad(fg.sqrt)(0.0)
        # nested: the backward pass builds nodes, and the first bad one is 0 / (2 * 0)
        with pytest.raises(FloatingPointError, match=r"op 'div' produced nan from inputs \(0.0, 0.0\)"):
            fg.grad(fg.grad(lambda x: x * fg.sqrt(x)))(0.0)
        assert fg.grad(fg.sqrt)(4.0) == 0.25
    assert fg.grad(fg.sqrt)(0.0) == math.inf


def test_debug_nans_is_per_thread():
    seen = []

    def other():
        seen.append(fg.var(0.0).log().value)

    with fg.debug_nans():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == [-math.inf]


def test_functions_of_constants_are_constants():
    c = fg.const(-2.0)
    for n in (c - 1.0, c**3.0, fg.exp(c), c.tanh(), fg.where(c, c, 1.0), fg.named(c - 1.0, "k")):
        assert n.level == -1
    x = fg.var(1.0)
    assert (x - c).level == 0 and fg.exp(x).level == 0
    # no grad walks into them: their derivatives are never computed
    assert fg.grad(lambda v: v * fg.exp(c))(3.0) == math.exp(-2.0)
