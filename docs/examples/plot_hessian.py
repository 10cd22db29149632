"""
Newton's method with a Hessian
==============================

``fg.hessian(f)`` is ``fg.jacobian(fg.grad(f))``: the matrix of second
derivatives, computed by differentiating the backward pass itself. With it,
Newton's method steps straight toward the minimum of a quadratic model of
``f``, where gradient descent creeps along the valley. The test function is
Rosenbrock's banana, whose minimum is at :math:`(1, 1)`.
"""

import matplotlib.pyplot as plt

import fungrad as fg


def rosenbrock(p):
    x, y = p
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


grad = fg.grad(rosenbrock)
hess = fg.hessian(rosenbrock)
print("gradient at (1, 1):", grad([1.0, 1.0]))
print("Hessian at (1, 1): ", hess([1.0, 1.0]))

# %%
# A Newton step solves :math:`H \Delta = -g`; for a 2×2 matrix that is
# Cramer's rule. Gradient descent takes :math:`-\eta g` instead.


def newton_step(p):
    (a, b), (c, d) = hess(p)
    g1, g2 = grad(p)
    det = a * d - b * c
    return [p[0] - (d * g1 - b * g2) / det, p[1] - (a * g2 - c * g1) / det]


def descent_step(p, lr=1e-3):
    return [pi - lr * gi for pi, gi in zip(p, grad(p))]


start = [-1.2, 1.0]
newton, descent = [start], [start]
for _ in range(8):
    newton.append(newton_step(newton[-1]))
for _ in range(2000):
    descent.append(descent_step(descent[-1]))
for k, p in enumerate(newton):
    print(f"Newton step {k}: ({p[0]:+.6f}, {p[1]:+.6f})  f = {rosenbrock(p):.3e}")
print(f"gradient descent after 2000 steps: ({descent[-1][0]:+.4f}, {descent[-1][1]:+.4f})  "
      f"f = {rosenbrock(descent[-1]):.3e}")

# %%
# The two paths over the contours of ``f``, Newton's steps numbered. Its
# step 2 overshoots far down the valley wall, to :math:`y \approx -3.2`,
# because the quadratic model at step 1 is a poor one there; from step 3 on
# it converges fast.

n = 120
xs = [-2.0 + 4.0 * i / (n - 1) for i in range(n)]
ys = [-3.5 + 6.5 * j / (n - 1) for j in range(n)]
zs = [[rosenbrock([x, y]) for x in xs] for y in ys]
fig, ax = plt.subplots(figsize=(6.5, 5))
ax.contour(xs, ys, zs, levels=[0.5 * 2**k for k in range(14)], colors="lightgray", linewidths=0.8)
ax.plot(*zip(*descent), ".-", color="tab:blue", markersize=2, linewidth=1,
        label="gradient descent, 2000 steps")
ax.plot(*zip(*newton), "o-", color="tab:red", label="Newton with fg.hessian, 8 steps")
ax.plot([1.0], [1.0], "k*", markersize=12, label="minimum (1, 1)")
ax.set_xlabel("x")
ax.set_ylabel("y")
for k, p in enumerate(newton[:5]):  # later steps sit on the minimum
    ax.annotate(str(k), p, textcoords="offset points", xytext=(6, -12), color="tab:red")
# upper left is empty: the lower right is where Newton's step 2 lands
ax.legend(loc="upper left", fontsize="small")
ax.set_title("Rosenbrock's function")
fig.tight_layout()
plt.show()
