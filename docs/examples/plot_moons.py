"""
The moons classifier
====================

micrograd's demo: two interleaving half circles, labels ``-1`` and ``+1``,
an MLP with two hidden layers of 16 ``relu`` neurons and a linear output,
trained on the SVM "max-margin" (hinge) loss with L2 regularization and a
learning rate that decays from 1.0 to 0.1.

The step function, forward and backward pass together, is compiled once
with ``fg.jit`` and then replayed on plain floats at every step, so the
whole run takes a few seconds (ten seconds or more without ``jit``).
"""

# sphinx_gallery_thumbnail_number = 2

import time

import matplotlib.pyplot as plt

import fungrad as fg

xs, ys = fg.data.make_moons(100, noise=0.1, seed=0)
model = fg.nn.MLP.init(2, [16, 16, 1], seed=1, activation="relu", final_activation="linear")
print(model, "with", len(fg.tree.leaves(model)), "parameters")


def loss_fn(model, xs, ys):
    scores = [model(x) for x in xs]
    return fg.nn.hinge(scores, ys) + fg.nn.l2(model, 1e-4)


def accuracy(model, xs, ys):
    return fg.nn.accuracy([model(x) for x in xs], ys)


# %%
# One hundred steps of full-batch gradient descent with ``fg.train.fit``,
# which compiles the step (``fg.jit(fg.value_and_grad(loss_fn))``) and
# records the loss and the accuracy at every step.

start = time.perf_counter()
model, history = fg.train.fit(
    lambda m, data: loss_fn(m, *data),
    model,
    (xs, ys),
    optimizer=fg.optim.linear(1.0, 0.1, 100),
    steps=100,
    metric=lambda m, data: accuracy(m, *data),
)
elapsed = time.perf_counter() - start
for k in range(0, 100, 10):
    print(f"step {k:3d}   loss {history.loss[k]:.4f}   accuracy {history.accuracy[k]:.0%}")
print(f"final accuracy {accuracy(model, xs, ys):.0%}, "
      f"100 steps in {elapsed:.1f} s (the first one compiles)")

# %%
# Loss and accuracy during training.

fig, ax = plt.subplots(figsize=(6.5, 4.0))
fg.viz.plot_history(history, ax=ax)
ax.set_title("hinge loss + L2, and training accuracy")
fig.tight_layout()
plt.show()

# %%
# The decision boundary: the model is evaluated on plain floats on a grid
# (no graph is built), shaded blue where its score is positive and red
# where it is not; the points are coloured by their true label, and the
# legend is the colour key.

fig, ax = plt.subplots(figsize=(6.0, 5.0))
fg.viz.plot_decision_boundary(model, xs, ys, ax=ax)
ax.set_title("MLP(2, [16, 16, 1]) on make_moons(100)")
fig.tight_layout()
plt.show()
