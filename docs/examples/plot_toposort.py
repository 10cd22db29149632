"""
A topological order, drawn
==========================

``fg.toposort(out)`` lists the nodes that ``out`` depends on so that every
node comes after all of its parents. The forward pass can run in that order,
and the backward pass runs in the reverse one. This example draws the order
for :math:`L = (ab + c)f`, with Graphviz, from the DOT text it writes itself.
"""

import graphviz

import fungrad as fg


a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
c, f = fg.var(10.0, name="c"), fg.var(-2.0, name="f")
e = (a * b).named("e")
d = (e + c).named("d")
L = (d * f).named("L")

order = fg.toposort(L)
position = {n: k for k, n in enumerate(order, start=1)}
print([f"{position[n]}: {n.name}" for n in order])

# %%
# The graph as it is usually drawn, every value numbered by its position in
# the order. Each number is larger than the numbers of the values it was
# computed from.

g = graphviz.Digraph(graph_attr={"rankdir": "TB"})
for n in order:
    g.node(f"v{position[n]}", f"{{ {position[n]} | {n.name} | {n.value:.1f} }}", shape="record",
           style="filled", fillcolor="lightyellow")
    if n.op:
        g.node(f"op{position[n]}", fg.PRIMITIVES[n.op].label, shape="circle")
        g.edge(f"op{position[n]}", f"v{position[n]}")
        for p in n.parents:
            g.edge(f"v{position[p]}", f"op{position[n]}")
g

# %%
# The same graph with the values laid out in a row, in topological order:
# every edge points to the right. Any order with that property works; the
# backward pass visits the row from right to left, so each value's
# gradient is complete before it is passed on.

g = graphviz.Digraph(graph_attr={"rankdir": "LR", "nodesep": "0.3"})
for n in order:
    g.node(str(position[n]), f"{position[n]}. {n.name}\n{n.op or 'leaf'}", shape="box",
           style="rounded,filled", fillcolor="lightyellow")
for n1, n2 in zip(order, order[1:]):
    g.edge(str(position[n1]), str(position[n2]), style="invis", weight="100")
for n in order:
    for p in n.parents:
        g.edge(str(position[p]), str(position[n]), constraint="false", color="blue")
g
