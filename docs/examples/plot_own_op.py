"""
Your own operation: softsign, and a stable softplus
===================================================

A new primitive is one row of the table: a forward on floats and one VJP rule
per argument, written with fungrad's ops so that it can be differentiated
again. Here softsign, :math:`x / (1 + |x|)`, is declared with
:func:`fungrad.primitive` and drawn with its first two derivatives, next to
``tanh``; then :class:`fungrad.custom_vjp` gives :math:`\\log(1 + e^x)` a
derivative that stays exact where the chain rule overflows.
"""

import math

import matplotlib.pyplot as plt

import fungrad as fg


def softsign_fwd(x):
    return x / (1.0 + abs(x))


def softsign_rule(g, ans, x):
    d = 1.0 + fg.abs(x)
    return fg.div(g, d * d)


softsign = fg.primitive("softsign_gallery", softsign_fwd, vjp=(softsign_rule,), label="softsign")

# %%
# The rule gives the first derivative; nesting ``fg.grad`` gives the second,
# :math:`-2\operatorname{sign}(x) / (1 + |x|)^3`, from the same rule.

d1 = fg.grad(softsign)
d2 = fg.grad(d1)
for x in (-2.0, 0.5, 3.0):
    print(f"x = {x:+.1f}   softsign' = {d1(x):.6f} (1/(1+|x|)²: {1 / (1 + abs(x)) ** 2:.6f})   "
          f"softsign'' = {d2(x):+.6f} ({-2 * math.copysign(1, x) / (1 + abs(x)) ** 3:+.6f})")
fg.check_grads(softsign, (0.7,), order=2)

xs = [i / 40 for i in range(-200, 201) if i != 0]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
for f, name, style in ((softsign, "softsign", "-"), (fg.tanh, "tanh", "--")):
    ax1.plot(xs, [f(x) for x in xs], style, label=name)
    ax2.plot(xs, [fg.grad(f)(x) for x in xs], style, label=f"grad({name})")
neg, pos = [x for x in xs if x < 0], [x for x in xs if x > 0]  # softsign'' jumps at 0
(line,) = ax2.plot(neg, [d2(x) for x in neg], label="grad(grad(softsign))")
ax2.plot(pos, [d2(x) for x in pos], color=line.get_color())
for ax in (ax1, ax2):
    ax.axhline(0.0, color="gray", linewidth=0.5)
    ax.set_xlabel("x")
    ax.legend(fontsize="small")
ax1.set_title("softsign has polynomial tails")
ax2.set_title("its derivatives, from one rule")
fig.tight_layout()
plt.show()

# %%
# A derivative of your own: ``log(1 + exp(x))`` by the chain rule overflows
# past :math:`x \approx 709.78`, and its gradient becomes ``inf / inf``. With
# ``custom_vjp`` the value uses a stable formula and the gradient is the
# sigmoid, exact at every ``x``.


@fg.custom_vjp
def softplus(x):
    return fg.maximum(x, 0.0) + fg.log1p(fg.exp(-fg.abs(x)))


softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * fg.sigmoid(x),))


def naive(x):
    return fg.log(1.0 + fg.exp(x))


for x in (1.0, 100.0, 709.0, 710.0, 1000.0):
    print(f"x = {x:6.0f}   naive: value {naive(x):.6g}, grad {fg.grad(naive)(x):.6g}   "
          f"custom_vjp: value {softplus(x):.6g}, grad {fg.grad(softplus)(x):.6g}")
