"""
Derivatives of tanh, to the fourth
==================================

``fg.grad`` returns an ordinary function, so it can be given to ``fg.grad``
again. Each application opens its own trace level, and the result is the
true higher derivative, however deep the nesting.
"""

import matplotlib.pyplot as plt

import fungrad as fg

derivatives = [fg.tanh]
for _ in range(4):
    derivatives.append(fg.grad(derivatives[-1]))

# %%
# Closed forms to compare with: with :math:`t = \tanh x`,
# :math:`t' = 1 - t^2` and :math:`t'' = -2t(1 - t^2)`.

for x in [-1.0, 0.0, 0.5]:
    t = fg.tanh(x)
    print(f"x = {x:+.1f}   grad: {derivatives[1](x):+.6f} (1 - t²: {1 - t * t:+.6f})   "
          f"grad∘grad: {derivatives[2](x):+.6f} (-2t(1 - t²): {-2 * t * (1 - t * t):+.6f})")

# %%
# The function and its first four derivatives.

xs = [i / 50 for i in range(-200, 201)]
fig, ax = plt.subplots(figsize=(6.5, 4.2))
names = ["tanh", "grad(tanh)", "grad(grad(tanh))", "grad³(tanh)", "grad⁴(tanh)"]
for d, name in zip(derivatives, names):
    ax.plot(xs, [d(x) for x in xs], label=name)
ax.axhline(0.0, color="gray", linewidth=0.5)
ax.set_xlabel("x")
ax.set_ylim(-4.5, 4.5)
ax.legend(loc="upper left", fontsize="small")
ax.set_title("tanh and its derivatives, by nesting fg.grad")
fig.tight_layout()
plt.show()
