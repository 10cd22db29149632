"""The networkx view and graph statistics (fungrad.graph)."""

from __future__ import annotations

import sys

import networkx as nx
import pytest

import fungrad as fg
from fungrad import graph


def tutorial_graph():
    a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
    c, f = fg.var(10.0, name="c"), fg.var(-2.0, name="f")
    e = (a * b).named("e")
    d = (e + c).named("d")
    L = (d * f).named("L")
    return a, b, c, f, e, d, L


def chain(n: int):
    x = fg.var(0.1, name="x")
    y = x
    for _ in range(n):
        y = -y
    return x, y


@pytest.fixture
def low_recursion_limit():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def test_square_has_two_edges_keyed_by_argument():
    x = fg.var(3.0, name="x")
    y = x * x
    G = fg.to_networkx(y)
    assert isinstance(G, nx.MultiDiGraph)
    assert list(G.nodes) == [x, y]
    assert G.number_of_edges() == 2
    assert sorted(G.edges(keys=True, data="arg")) == [(x, y, 0, 0), (x, y, 1, 1)]
    assert G.nodes[x] == {"op": "", "value": 3.0, "name": "x", "label": "x"}
    assert G.nodes[y] == {"op": "mul", "value": 9.0, "name": "", "label": "*"}


def test_tutorial_graph_shape_and_attributes():
    a, b, c, f, e, d, L = tutorial_graph()
    G = fg.to_networkx(L)
    assert G.number_of_nodes() == 7
    assert set(G.nodes) == {a, b, c, f, e, d, L}
    assert set(G.edges(keys=True)) == {(a, e, 0), (b, e, 1), (e, d, 0), (c, d, 1), (d, L, 0), (f, L, 1)}
    assert nx.is_directed_acyclic_graph(G)
    assert [n for n in G if G.in_degree(n) == 0] == [a, b, c, f]
    assert list(G.successors(e)) == [d]
    assert nx.ancestors(G, L) == {a, b, c, f, e, d}
    assert {G.nodes[n]["name"]: G.nodes[n]["label"] for n in G} == {
        "a": "a", "b": "b", "c": "c", "f": "f", "e": "*", "d": "+", "L": "*",
    }
    assert G.nodes[d]["value"] == 4.0 and G.nodes[L]["value"] == -8.0
    assert "grad" not in G.nodes[a]


def test_grads_are_attached():
    a, b, c, f, e, d, L = tutorial_graph()
    G = fg.to_networkx(L, grads=fg.gradients(L))
    got = {G.nodes[n]["name"]: G.nodes[n]["grad"] for n in G}
    assert got == {"a": 6.0, "b": -4.0, "c": -2.0, "f": 4.0, "e": -2.0, "d": -2.0, "L": 1.0}


def test_grads_only_where_given_and_nodes_become_floats():
    a, b, c, f, e, d, L = tutorial_graph()
    G = fg.to_networkx(L, grads={a: 6.0, f: fg.var(4.0)})
    assert G.nodes[a]["grad"] == 6.0
    assert G.nodes[f]["grad"] == 4.0 and type(G.nodes[f]["grad"]) is float
    assert [n for n in G if "grad" in G.nodes[n]] == [a, f]


def test_constants_are_nodes():
    x = fg.var(2.0, name="x")
    y = x * 3 + x
    G = fg.to_networkx(y)
    assert G.number_of_nodes() == 4 and G.number_of_edges() == 4
    consts = [n for n in G if n.level == -1]
    assert len(consts) == 1 and G.nodes[consts[0]]["value"] == 3.0 and G.nodes[consts[0]]["op"] == ""


def test_equal_values_stay_distinct_nodes():
    a, b = fg.var(1.0), fg.var(1.0)
    assert fg.to_networkx(a + b).number_of_nodes() == 3


def test_topological_order_with_shared_nodes():
    x = fg.var(0.5, name="x")
    h = x * 2.0
    out = h.tanh() + h.exp() + x
    order = fg.toposort(out)
    pos = {n: i for i, n in enumerate(order)}
    assert len(order) == len(pos) == 7
    assert order[-1] is out
    for n in order:
        assert all(pos[p] < pos[n] for p in n.parents)
    assert list(fg.to_networkx(out)) == order


def test_stats_of_tutorial_graph():
    *_, L = tutorial_graph()
    s = fg.graph_stats(L)
    assert s == graph.GraphStats(
        nodes=7, edges=6, leaves=4, constants=0, parameters=4, depth=3, ops={"add": 1, "mul": 2}
    )


def test_stats_count_constants_and_repeated_arguments():
    x = fg.var(2.0, name="x")
    s = fg.graph_stats((x * x + 1.0).tanh() * 3)
    assert (s.nodes, s.edges, s.leaves, s.constants, s.parameters, s.depth) == (7, 7, 3, 2, 1, 4)
    assert s.ops == {"add": 1, "mul": 2, "tanh": 1}
    assert fg.graph_stats(x) == graph.GraphStats(1, 0, 1, 0, 1, 0, {})


def test_depth_is_the_longest_path():
    x = fg.var(0.5, name="x")
    h = x * 2.0
    out = h.tanh().exp() + x  # longest: x -> mul -> tanh -> exp -> add
    assert fg.graph_stats(out).depth == 4
    path = graph.longest_path(out)
    assert [n.op for n in path] == ["", "mul", "tanh", "exp", "add"]
    assert path[0] is x and path[-1] is out
    G = fg.to_networkx(out)
    assert nx.dag_longest_path_length(G) == 4


def test_depth_of_a_1000_chain():
    x, y = chain(1000)
    s = fg.graph_stats(y)
    assert (s.nodes, s.edges, s.depth, s.leaves, s.ops) == (1001, 1000, 1000, 1, {"neg": 1000})
    x = fg.var(1.0)
    for _ in range(1000):
        x = x + 1.0
    s = fg.graph_stats(x)
    assert (s.depth, s.nodes, s.constants, s.parameters) == (1000, 2001, 1000, 1)
    assert len(graph.longest_path(x)) == 1001


def test_reaching():
    w1, w2, b = fg.var(0.5, name="w1"), fg.var(0.0, name="w2"), fg.var(1.0, name="b")
    y = (w1 * 2.0 + b).tanh()
    assert graph.reaching(y, [w2, b, w1]) == [b, w1]
    assert graph.reaching(y, []) == []
    assert graph.reaching(y, iter([y])) == [y]
    with pytest.raises(TypeError, match=r"candidates\[1\] is float"):
        graph.reaching(y, [w1, 0.5])


@pytest.mark.parametrize("fn", [fg.to_networkx, fg.graph_stats, graph.longest_path, fg.toposort])
def test_non_node_output_is_a_type_error(fn):
    with pytest.raises(TypeError, match="expected a fungrad Node"):
        fn(3.0)


def test_lazy_top_level_names():
    assert fg.to_networkx is graph.to_networkx
    assert fg.graph_stats is graph.graph_stats


@pytest.mark.slow
def test_200k_chain_at_the_default_recursion_limit():
    x, y = chain(200_000)
    G = fg.to_networkx(y)
    assert G.number_of_nodes() == 200_001 and G.number_of_edges() == 200_000
    assert G.in_degree(x) == 0 and G.out_degree(y) == 0
    assert fg.graph_stats(y).depth == 200_000


@pytest.mark.slow
def test_deep_chain_at_a_low_recursion_limit(low_recursion_limit):
    x, y = chain(5000)
    G = fg.to_networkx(y, grads=fg.gradients(y, wrt=[x]))
    assert G.number_of_nodes() == 5001
    assert G.nodes[x]["grad"] == 1.0  # an even number of negations
    assert fg.graph_stats(y).depth == 5000
    assert len(graph.longest_path(y)) == 5001
    assert graph.reaching(y, [x]) == [x]
