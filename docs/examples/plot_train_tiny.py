"""
Training an MLP on the tiny data set
====================================

The micrograd lecture's example: four samples of three features, targets
``+1`` or ``-1``, and an MLP with two hidden layers of four ``tanh`` neurons.
The training loop is three pure functions: the loss, its gradient, and an
SGD step that returns new parameters.
"""

import matplotlib.pyplot as plt

import fungrad as fg

xs, ys = fg.data.tiny()
model = fg.nn.MLP.init(3, [4, 4, 1], seed=0)
print(model, "with", len(fg.tree.leaves(model)), "parameters")


def loss_fn(model):
    predictions = [model(x) for x in xs]
    return fg.nn.sum_squares(predictions, ys)


value_and_grad = fg.value_and_grad(loss_fn)

# %%
# Fifty steps of plain gradient descent. ``model`` is rebound to a new model
# at every step; nothing is mutated, and no gradient is ever reset.

history = {"loss": []}
for step in range(50):
    loss, grads = value_and_grad(model)
    history["loss"].append(loss)
    model = fg.optim.sgd(model, grads, lr=0.05)

print(f"loss: {history['loss'][0]:.4f} -> {loss_fn(model):.6f}")
print("targets:    ", ys)
print("predictions:", [round(model(x), 4) for x in xs])

# %%
# The same model trained with Adam, a pure optimizer whose state (the
# moving averages of the gradients) is a small frozen record, passed in and
# returned like the parameters.

adam = fg.optim.Adam(lr=0.05)
params = fg.nn.MLP.init(3, [4, 4, 1], seed=0)
state = adam.init(params)
adam_losses = []
for step in range(50):
    loss, grads = value_and_grad(params)
    adam_losses.append(loss)
    params, state = adam.update(params, grads, state)
print(f"Adam: loss {adam_losses[0]:.4f} -> {loss_fn(params):.6f}")

# %%
# The loss curves, drawn by ``fg.viz.plot_history`` into a matplotlib axes.

fig, ax = plt.subplots(figsize=(6.5, 4.2))
fg.viz.plot_history(history, ax=ax)
ax.plot(range(len(adam_losses)), adam_losses, color="tab:green", label="loss (Adam, lr 0.05)")
ax.lines[0].set_label("loss (SGD, lr 0.05)")
ax.legend(loc="upper right")
ax.set_title("MLP(3, [4, 4, 1]) on fg.data.tiny()")
fig.tight_layout()
plt.show()
