"""
What ``jit`` buys
=================

``fg.jit(f)`` traces ``f`` once per input structure, compiles the traced graph
into straight-line Python on floats, and replays that on every later call. The
first call pays for tracing and compiling; every later call skips building
nodes, walking the graph and filling dictionaries.

This example times one training step (the forward and backward pass of
``value_and_grad``) for two models, eagerly and compiled. The numbers are
measured when the documentation is built, so they depend on the machine.
"""

import time

import matplotlib.pyplot as plt

import fungrad as fg


def best_of(f, repeat):
    """The fastest of ``repeat`` calls of ``f``, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def tiny_loss(model, data):
    xs, ys = data
    return fg.nn.sum_squares([model(x) for x in xs], ys)


def moons_loss(model, data):
    xs, ys = data
    return fg.nn.hinge([model(x) for x in xs], ys) + fg.nn.l2(model, 1e-4)


cases = {
    "MLP(3, [4, 4, 1])\non tiny (4 samples)": (
        tiny_loss, fg.nn.MLP.init(3, [4, 4, 1], seed=0), fg.data.tiny()),
    "MLP(2, [16, 16, 1])\non moons (100 samples)": (
        moons_loss,
        fg.nn.MLP.init(2, [16, 16, 1], seed=1, activation="relu", final_activation="linear"),
        fg.data.make_moons(100, noise=0.1, seed=0)),
}

results = {}
for label, (loss_fn, model, data) in cases.items():
    eager = fg.value_and_grad(loss_fn)
    compiled = fg.jit(eager)
    t0 = time.perf_counter()
    first = compiled(model, data)
    t_first = time.perf_counter() - t0
    assert first == eager(model, data)  # the same numbers, bit for bit
    t_eager = best_of(lambda: eager(model, data), 3)
    t_replay = best_of(lambda: compiled(model, data), 20)
    info = compiled.cache_info()[0]
    results[label] = (t_eager, t_first, t_replay)
    print(f"{label.replace(chr(10), ' ')}: {info['nodes']} nodes, {info['lines']} lines of code")
    print(f"    eager {t_eager * 1e3:8.2f} ms   jit first call {t_first * 1e3:8.1f} ms   "
          f"jit replay {t_replay * 1e3:6.2f} ms   ({t_eager / t_replay:.0f}x)")

# %%
# What the first compiled call costs, counted in eager steps, and how many
# calls it takes before compiling has paid for itself: the first call costs
# ``t_first``, each replay saves ``t_eager - t_replay``.

for label, (t_eager, t_first, t_replay) in results.items():
    print(f"{label.replace(chr(10), ' ')}: first compiled call = {t_first / t_eager:.0f} eager steps; "
          f"jit pays off after {t_first / (t_eager - t_replay):.0f} steps")

# %%
# Time per step, on a log scale. The first compiled call costs as much as
# the number of eager steps printed above (tracing records the graph, which
# is an eager step in itself, then the compiler writes and compiles Python
# code for every node); every later call is much cheaper.

fig, ax = plt.subplots(figsize=(6.5, 4.2))
width = 0.27
names = ["eager value_and_grad", "jit: first call (trace + compile)", "jit: later calls (replay)"]
colors = ["tab:blue", "tab:gray", "tab:green"]
for k, (name, color) in enumerate(zip(names, colors)):
    xs = [i + (k - 1) * width for i in range(len(results))]
    hs = [1e3 * r[k] for r in results.values()]
    ax.bar(xs, hs, width, label=name, color=color)
ax.set_xticks(range(len(results)), list(results))
ax.set_yscale("log")
ax.set_ylabel("milliseconds per step")
ax.set_title("One training step, eager and compiled")
ax.legend(fontsize="small")
fig.tight_layout()
plt.show()
