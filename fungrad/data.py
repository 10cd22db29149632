"""Small data sets to train on, and minibatches.

Everything here is plain Python lists of floats, drawn from
``random.Random(seed)``: the same seed gives the same data on any machine,
with no numpy or scikit-learn.

>>> import fungrad as fg
>>> xs, ys = fg.data.make_moons(6, noise=0.0, seed=0)
>>> len(xs), sorted(ys)
(6, [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

import math
import random
from typing import Iterator, Sequence, TypeVar

__all__ = ["tiny", "make_moons", "batches"]

X = TypeVar("X")
Y = TypeVar("Y")


def tiny() -> tuple[list[list[float]], list[float]]:
    """The micrograd tutorial's four samples of three features and their targets.

    Each call returns fresh lists, so changing them changes nothing for the next caller.

    >>> import fungrad as fg
    >>> xs, ys = fg.data.tiny()
    >>> xs[0], ys
    ([2.0, 3.0, -1.0], [1.0, -1.0, -1.0, 1.0])
    """
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    return xs, [1.0, -1.0, -1.0, 1.0]


def _linspace_pi(m: int) -> list[float]:
    return [math.pi * i / (m - 1) for i in range(m)] if m > 1 else [0.0]


def make_moons(n: int = 100, noise: float = 0.1, seed: int = 0) -> tuple[list[list[float]], list[float]]:
    """Two interleaving half circles, like scikit-learn's ``make_moons``.

    ``n // 2`` points lie on the outer moon ``(cos t, sin t)`` with label
    ``-1.0`` and the rest on the inner moon ``(1 - cos t, 0.5 - sin t)`` with
    label ``+1.0`` (micrograd's demo maps scikit-learn's 0/1 to -1/+1 the same
    way), ``t`` evenly spaced over ``[0, pi]``. Each coordinate gets Gaussian
    noise of standard deviation ``noise``, and the samples are shuffled;
    everything is drawn from ``random.Random(seed)``.

    Returns ``(xs, ys)``: ``xs`` a list of ``[x, y]`` pairs, ``ys`` the labels.

    >>> import fungrad as fg
    >>> xs, ys = fg.data.make_moons(100, noise=0.1, seed=1)
    >>> len(xs), len(ys), xs[0] == fg.data.make_moons(100, noise=0.1, seed=1)[0][0]
    (100, 100, True)
    >>> ys.count(-1.0), ys.count(1.0)
    (50, 50)
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"make_moons: n must be an int (the number of samples), got {n!r}")
    if n < 2:
        raise ValueError(f"make_moons: n must be at least 2 (one point per moon), got {n}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)):
        raise TypeError(f"make_moons: noise must be a number (a standard deviation), got {noise!r}")
    if not (0.0 <= noise < math.inf):
        raise ValueError(f"make_moons: noise must be a finite number >= 0, got {noise!r}")
    rng = random.Random(seed)
    n_out = n // 2
    pts = [(math.cos(t), math.sin(t), -1.0) for t in _linspace_pi(n_out)]
    pts += [(1.0 - math.cos(t), 1.0 - math.sin(t) - 0.5, 1.0) for t in _linspace_pi(n - n_out)]
    rng.shuffle(pts)
    if noise:
        pts = [(x + rng.gauss(0.0, noise), y + rng.gauss(0.0, noise), c) for x, y, c in pts]
    return [[x, y] for x, y, _ in pts], [c for _, _, c in pts]


def batches(
    xs: Sequence[X],
    ys: Sequence[Y],
    size: int,
    seed: int = 0,
    *,
    epoch: int = 0,
    shuffle: bool = True,
) -> Iterator[tuple[list[X], list[Y]]]:
    """One epoch of minibatches ``(xs_batch, ys_batch)``, in an order set by ``seed`` and ``epoch``.

    Every sample appears exactly once; the last batch holds the remainder and
    may be smaller than ``size``. The same ``(seed, epoch)`` always gives the
    same batches, and each ``epoch`` its own shuffle, so a loop over epochs
    sees the data in a new order every time yet reruns identically. With
    ``shuffle=False`` the batches keep the data's order. Arguments are checked
    when ``batches`` is called, not at the first batch.

    >>> import fungrad as fg
    >>> xs, ys = [[0.0], [1.0], [2.0], [3.0], [4.0]], [0.0, 1.0, 2.0, 3.0, 4.0]
    >>> [yb for _, yb in fg.data.batches(xs, ys, 2, shuffle=False)]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    >>> for epoch in range(2):
    ...     print(sorted(y for _, yb in fg.data.batches(xs, ys, 2, seed=0, epoch=epoch) for y in yb))
    [0.0, 1.0, 2.0, 3.0, 4.0]
    [0.0, 1.0, 2.0, 3.0, 4.0]
    """
    if len(xs) != len(ys):
        raise ValueError(f"batches: xs and ys must have the same length, got {len(xs)} and {len(ys)}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"batches: size must be an int >= 1, got {size!r}")
    order = list(range(len(xs)))
    if shuffle:
        # a str seed is hashed with SHA-512, so (seed, epoch) pairs never collide
        # the way seed * K + epoch could, and the order is the same on any machine
        random.Random(f"fungrad.batches:{seed}:{epoch}").shuffle(order)
    return _batches(xs, ys, order, size)


def _batches(
    xs: Sequence[X], ys: Sequence[Y], order: list[int], size: int
) -> Iterator[tuple[list[X], list[Y]]]:
    for i in range(0, len(order), size):
        idx = order[i : i + size]
        yield [xs[j] for j in idx], [ys[j] for j in idx]
