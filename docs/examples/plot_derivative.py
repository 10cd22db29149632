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
# How good is a nudge? A finite difference has two errors, pulling in
# opposite directions. The *truncation* error comes from the curvature that
# a straight line through two points ignores; by Taylor's theorem it is about
# :math:`\tfrac{h}{2}|f''(x)|` for the one-sided difference and
# :math:`\tfrac{h^2}{6}|f'''(x)|` for the central one, so it shrinks with
# ``h``. The *rounding* error grows as ``h`` shrinks: :math:`f(x+h)` and
# :math:`f(x)` are each rounded to about 16 digits, and their difference,
# divided by a tiny ``h``, magnifies that rounding, roughly like
# :math:`\epsilon |f(x)| / h` with :math:`\epsilon \approx 2.2 \cdot 10^{-16}`.
#
# The parabola above is a poor test of this: its central difference has no
# truncation error at all (its third derivative is zero), so only rounding
# would show. :math:`\sin` at :math:`x = 1` has both: the error falls with
# ``h`` along the truncation line until it meets the rounding error, then
# rises again. ``fg.grad`` has neither error.

x0 = 1.0
exact = fg.grad(fg.sin)(x0)  # cos(1)
eps = 2.0**-52
hs = [10.0 ** (-k / 4) for k in range(4, 64)]
forward = [abs((fg.sin(x0 + h) - fg.sin(x0)) / h - exact) for h in hs]
central = [abs((fg.sin(x0 + h) - fg.sin(x0 - h)) / (2 * h) - exact) for h in hs]
best_f = min(zip(forward, hs))
best_c = min(zip(central, hs))
print(f"one-sided: smallest error {best_f[0]:.1e} at h = {best_f[1]:.0e}")
print(f"central:   smallest error {best_c[0]:.1e} at h = {best_c[1]:.0e}")

fig, ax = plt.subplots(figsize=(6.5, 4.2))
ax.loglog(hs, [e or 1e-17 for e in forward], "o-", markersize=3, color="tab:blue",
          label="(f(x+h) - f(x)) / h")
ax.loglog(hs, [e or 1e-17 for e in central], "o-", markersize=3, color="tab:orange",
          label="(f(x+h) - f(x-h)) / 2h")
ax.loglog(hs, [h / 2 * fg.sin(x0) for h in hs], "--", color="tab:blue", linewidth=1,
          label="truncation, one-sided: h|f''|/2")
ax.loglog(hs, [h * h / 6 * abs(fg.cos(x0)) for h in hs], "--", color="tab:orange", linewidth=1,
          label="truncation, central: h²|f'''|/6")
ax.loglog(hs, [eps * fg.sin(x0) / h for h in hs], ":", color="black", linewidth=1,
          label="rounding: ε|f(x)|/h")
ax.set_ylim(1e-17, 1e5)
ax.set_xlabel("h")
ax.set_ylabel("|estimate - fg.grad(sin)(1)|")
ax.set_title("Finite differences of sin at x = 1: error against the step h")
ax.legend(fontsize="small", loc="upper center")
fig.tight_layout()
plt.show()
