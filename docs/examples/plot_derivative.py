"""
The derivative of a parabola
============================

The slope of :math:`f(x) = 3x^2 - 4x + 5` is :math:`f'(x) = 6x - 4`.
``fg.grad(f)`` is a new function that computes it exactly, by reverse-mode
automatic differentiation, with no finite-difference step to tune.
"""

import matplotlib.pyplot as plt

import fungrad as fg


def f(x):
    return 3 * x**2 - 4 * x + 5


df = fg.grad(f)
print(df(3.0), df(-3.0), df(2 / 3))

# %%
# The slope at a few points, next to a finite-difference estimate
# (nudge ``x`` by ``h`` and see how much ``f`` moves).

h = 1e-6
for x in [-3.0, 2 / 3, 3.0]:
    nudged = (f(x + h) - f(x)) / h
    print(f"x = {x:+.4f}   grad: {df(x):+.4f}   nudge: {nudged:+.4f}")

# %%
# ``f`` and its tangent lines: at each point the tangent has the slope that
# ``fg.grad`` returns. At :math:`x = 2/3` the slope is zero: the minimum.

xs = [i / 20 for i in range(-100, 101)]
fig, ax = plt.subplots(figsize=(6.5, 4.2))
ax.plot(xs, [f(x) for x in xs], color="black", label="f(x) = 3x² - 4x + 5")
for x0, color in [(-3.0, "tab:red"), (2 / 3, "tab:green"), (3.0, "tab:blue")]:
    slope = df(x0)
    span = [x0 - 1.5, x0 + 1.5]
    ax.plot(span, [f(x0) + slope * (x - x0) for x in span], color=color, linewidth=2,
            label=f"slope at x = {x0:.3g}: {slope:g}")
    ax.plot([x0], [f(x0)], "o", color=color)
ax.set_xlabel("x")
ax.set_ylabel("f(x)")
ax.set_ylim(-10, 110)
ax.legend()
ax.set_title("Tangents with slopes from fg.grad")
fig.tight_layout()
plt.show()

# %%
# How good is a nudge? The error of the one-sided estimate at :math:`x = 3`
# first falls with ``h`` (the truncation error is :math:`3h` for this
# parabola), then rises again as the difference :math:`f(x+h) - f(x)` drowns
# in rounding error. ``fg.grad`` has neither error.

hs = [10.0 ** (-k / 4) for k in range(4, 64)]
forward = [abs((f(3.0 + h) - f(3.0)) / h - df(3.0)) for h in hs]
central = [abs((f(3.0 + h) - f(3.0 - h)) / (2 * h) - df(3.0)) for h in hs]
fig, ax = plt.subplots(figsize=(6.5, 4.2))
ax.loglog(hs, [e or 1e-17 for e in forward], label="(f(x+h) - f(x)) / h")
ax.loglog(hs, [e or 1e-17 for e in central], label="(f(x+h) - f(x-h)) / 2h")
ax.set_xlabel("h")
ax.set_ylabel("|estimate - fg.grad(f)(3)|")
ax.set_title("Finite differences: error against the step h")
ax.legend()
fig.tight_layout()
plt.show()
