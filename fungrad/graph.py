"""The networkx view of an expression graph, and statistics about it.

:func:`to_networkx` hands an expression to networkx for analysis and
drawing: the graph's nodes are the :class:`~fungrad.expr.Node` objects
themselves, its edges run from each argument to the value computed from it.
:func:`graph_stats` counts what a reader wants to know about a graph (nodes,
leaves, depth, which ops), and :func:`reaching` and :func:`longest_path`
answer the two questions a teacher asks of one: which parameters does the
output depend on, and which chain of ops makes it deep. Every walk here
(:func:`fungrad.toposort`) is iterative, so graphs a million nodes deep are fine.

>>> import fungrad as fg
>>> a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
>>> G = fg.to_networkx(a * b + a)
>>> G.number_of_nodes(), G.number_of_edges()
(4, 4)
>>> fg.graph_stats(a * b + a).depth
2
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import attrs
import networkx as nx  # type: ignore[import-untyped]

from . import expr
from .autodiff import toposort
from .expr import Node

__all__ = ["to_networkx", "body_graph", "GraphStats", "graph_stats", "reaching", "longest_path"]


def _check_out(out: Any, fname: str) -> None:
    if out.__class__ is not Node:
        raise TypeError(
            f"{fname}: expected a fungrad Node (the output of an expression), got {type(out).__name__} {out!r:.60}"
        )


def _label(n: Node) -> str:
    return expr.op_label(n) if n.op else n.name


def _float(g: Any) -> float:
    return g.value if g.__class__ is Node else float(g)


def to_networkx(out: Node, grads: Mapping[Node, Any] | None = None) -> nx.MultiDiGraph:
    """The graph of ``out`` as a networkx ``MultiDiGraph`` whose nodes are the fungrad nodes.

    Each node carries the attributes ``op`` (``''`` for a leaf), ``value``,
    ``name`` and ``label`` (the primitive's label such as ``'*'``, or the
    name of a leaf), and ``grad`` when ``grads`` (a dictionary such as
    :func:`fungrad.gradients` returns) has an entry for it. Edges run from an
    argument to the value computed from it, keyed by argument position and
    with the attribute ``arg``: ``x * x`` has two edges, keys 0 and 1.
    Nodes are added in topological order.

    >>> import fungrad as fg
    >>> x = fg.var(3.0, name="x")
    >>> y = x * x
    >>> G = fg.to_networkx(y, grads=fg.gradients(y))
    >>> sorted(G.edges(keys=True, data="arg"), key=lambda e: e[2])
    [(Node(3.0, name='x'), Node(9.0, op='mul'), 0, 0), (Node(3.0, name='x'), Node(9.0, op='mul'), 1, 1)]
    >>> G.nodes[y]["label"], G.nodes[x]["grad"]
    ('*', 6.0)
    """
    _check_out(out, "to_networkx")
    order = toposort(out)
    G = nx.MultiDiGraph()
    bodies: dict[int, nx.MultiDiGraph] = {}  # one per mapped body, however many batches use it
    nodes = []
    for n in order:
        d = {"op": n.op, "value": n.value, "name": n.name, "label": _label(n)}
        g = None if grads is None else grads.get(n)
        if n.op == "vmap":
            m = n.value.map  # type: ignore[attr-defined]
            if id(m) not in bodies:
                bodies[id(m)] = body_graph(m)
            d["body"] = bodies[id(m)]
            if g is not None:
                d["grad"] = [_float(v) for v in g]  # one per output of the batch
        elif g is not None:
            d["grad"] = _float(g)
        nodes.append((n, d))
    G.add_nodes_from(nodes)
    G.add_edges_from((p, n, i, {"arg": i}) for n in order for i, p in enumerate(n.parents))
    return G


def body_graph(m: Any) -> nx.MultiDiGraph:
    """The body of a ``vmap`` node's map (``node.value.map``), traced once, as a networkx graph.

    Nodes carry ``op``, ``value`` (from the trace, not from any example),
    ``name`` and ``label`` as in :func:`to_networkx`, and ``input`` (the
    position of a body input among the map's numbers) or ``output`` (the
    position of a body output) where they are one. :func:`to_networkx`
    puts it on every ``vmap`` node as the attribute ``body``.

    >>> import fungrad as fg
    >>> w = fg.var(0.5)
    >>> out = fg.vmap(lambda w, x: fg.tanh(w * x), in_axes=(None, 0))(w, [1.0, 2.0, 3.0])
    >>> G = fg.to_networkx(out[0])
    >>> (m,) = [n for n, d in G.nodes(data=True) if d["op"] == "vmap"]
    >>> body = G.nodes[m]["body"]
    >>> sorted(d["label"] for _, d in body.nodes(data=True))
    ['', '', '*', 'tanh']
    """
    nodes, ins, outs = m.body()
    where_in = {x: k for k, x in enumerate(m._inputs)}
    where_out = {o: k for k, o in enumerate(outs) if o.__class__ is Node}
    B = nx.MultiDiGraph()
    for n in nodes:
        d = {"op": n.op, "value": n.value, "name": n.name, "label": _label(n)}
        if n in where_in:
            d["input"] = where_in[n]
        if n in where_out:
            d["output"] = where_out[n]
        B.add_node(n, **d)
    B.add_edges_from((p, n, i, {"arg": i}) for n in nodes for i, p in enumerate(n.parents))
    return B


@attrs.frozen
class GraphStats:
    """Counts describing an expression graph (see :func:`graph_stats`).

    ``leaves`` are the nodes without parents: ``constants`` (numbers mixed
    into the expression, such as the ``3`` of ``x * 3``) plus ``parameters``
    (variables). ``depth`` is the number of ops on the longest path from a
    leaf to the output; ``ops`` counts the nodes of each primitive.
    """

    nodes: int
    edges: int
    leaves: int
    constants: int
    parameters: int
    depth: int
    ops: dict[str, int]


def graph_stats(out: Node) -> GraphStats:
    """Node, edge and leaf counts, depth and the ops histogram of ``out``'s graph.

    >>> import fungrad as fg
    >>> a, b, c, f = (fg.var(v, name=n) for v, n in [(2.0, "a"), (-3.0, "b"), (10.0, "c"), (-2.0, "f")])
    >>> fg.graph_stats((a * b + c) * f)
    GraphStats(nodes=7, edges=6, leaves=4, constants=0, parameters=4, depth=3, ops={'add': 1, 'mul': 2})
    >>> fg.graph_stats(a * 2).constants
    1
    """
    _check_out(out, "graph_stats")
    order = toposort(out)
    depth: dict[Node, int] = {}
    ops: dict[str, int] = {}
    edges = leaves = constants = 0
    for n in order:
        ps = n.parents
        if ps:
            edges += len(ps)
            depth[n] = 1 + max(depth[p] for p in ps)
            ops[n.op] = ops.get(n.op, 0) + 1
        else:
            depth[n] = 0
            leaves += 1
            constants += n.level == -1
    return GraphStats(
        nodes=len(order),
        edges=edges,
        leaves=leaves,
        constants=constants,
        parameters=leaves - constants,
        depth=depth[out],
        ops=dict(sorted(ops.items())),
    )


def reaching(out: Node, candidates: Iterable[Node]) -> list[Node]:
    """The nodes among ``candidates`` that ``out`` depends on, in their given order.

    A parameter missing from the answer gets a zero gradient: nothing
    connects it to the output (``out`` itself counts as reaching itself).

    >>> import fungrad as fg
    >>> w1, w2, b = fg.var(0.5, name="w1"), fg.var(0.0, name="w2"), fg.var(1.0, name="b")
    >>> y = (w1 * 2.0 + b).tanh()
    >>> [n.name for n in fg.graph.reaching(y, [w1, w2, b])]
    ['w1', 'b']
    """
    _check_out(out, "reaching")
    cands = list(candidates)
    for i, c in enumerate(cands):
        if c.__class__ is not Node:
            raise TypeError(f"reaching: candidates[{i}] is {type(c).__name__} {c!r:.60}; expected a fungrad Node")
    seen = set(toposort(out))
    return [c for c in cands if c in seen]


def longest_path(out: Node) -> list[Node]:
    """The nodes of a longest path from a leaf to ``out``, leaf first.

    It has ``graph_stats(out).depth + 1`` nodes; among equally long paths the
    one through the earliest arguments is taken.

    >>> import fungrad as fg
    >>> x = fg.var(0.5, name="x")
    >>> [n.name or n.op for n in fg.graph.longest_path(x.tanh().exp() + x)]
    ['x', 'tanh', 'exp', 'add']
    """
    _check_out(out, "longest_path")
    depth: dict[Node, int] = {}
    best: dict[Node, Node] = {}
    for n in toposort(out):
        d = 0
        for p in n.parents:
            if depth[p] + 1 > d:
                d = depth[p] + 1
                best[n] = p
        depth[n] = d
    path = [out]
    while path[-1] in best:
        path.append(best[path[-1]])
    path.reverse()
    return path
