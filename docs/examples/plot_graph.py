"""
Drawing an expression graph
===========================

``fg.viz.draw(out, grads)`` draws the graph of ``out`` with Graphviz, the way
micrograd's ``draw_dot`` does: one record per value (its name, its data and,
when ``grads`` has it, its gradient) and one small node per operation.
``fg.viz.to_dot`` gives the same drawing as DOT text, and ``fg.viz.render``
writes it to an SVG or PNG file.

A drawing that is the last line of a notebook cell shows inline. Drawn top
to bottom (``rankdir="TB"``), each record stacks its fields, so even a whole
neuron stays narrow enough to read at the width of a page.
"""

import fungrad as fg


a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
c, f = fg.var(10.0, name="c"), fg.var(-2.0, name="f")
e = (a * b).named("e")
d = (e + c).named("d")
L = (d * f).named("L")

# %%
# The forward pass: every value is known as soon as its node exists.

fg.viz.draw(L, rankdir="TB")

# %%
# With the gradients from ``fg.gradients``, a dictionary from node to
# :math:`\partial L / \partial\,\text{node}`.

grads = fg.gradients(L)
fg.viz.draw(L, grads, rankdir="TB")

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
fg.viz.draw(o, fg.gradients(o), rankdir="TB")
