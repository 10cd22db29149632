"""
Drawing an expression graph
===========================

``fg.viz.draw(out, grads)`` draws the graph of ``out`` with Graphviz, the way
micrograd's ``draw_dot`` does: one record per value (its name, its data and,
when ``grads`` has it, its gradient) and one small node per operation.
``fg.viz.to_dot`` gives the same drawing as DOT text, and ``fg.viz.render``
writes it to an SVG or PNG file.
"""

import matplotlib.pyplot as plt

import fungrad as fg


def show(graph):
    """Hand fungrad's picture of a graph to pyplot, which the gallery captures."""
    plt.figure(fg.viz.plot_graph(graph))
    plt.show()


a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
c, f = fg.var(10.0, name="c"), fg.var(-2.0, name="f")
e = (a * b).named("e")
d = (e + c).named("d")
L = (d * f).named("L")

# %%
# The forward pass: every value is known as soon as its node exists.

show(fg.viz.draw(L))

# %%
# With the gradients from ``fg.gradients``, a dictionary from node to
# :math:`\partial L / \partial\,\text{node}`.

grads = fg.gradients(L)
show(fg.viz.draw(L, grads))

# %%
# The DOT text behind the drawing, which needs no Graphviz to produce:

print(fg.viz.to_dot(L, grads))

# %%
# One neuron, :math:`o = \tanh(x_1 w_1 + x_2 w_2 + b)`, with its gradients.

x1, x2 = fg.var(2.0, name="x1"), fg.var(0.0, name="x2")
w1, w2 = fg.var(-3.0, name="w1"), fg.var(1.0, name="w2")
bias = fg.var(6.8813735870195432, name="b")
x1w1 = (x1 * w1).named("x1*w1")
x2w2 = (x2 * w2).named("x2*w2")
n = ((x1w1 + x2w2).named("x1*w1 + x2*w2") + bias).named("n")
o = n.tanh().named("o")
show(fg.viz.draw(o, fg.gradients(o)))
