"""Small data sets to train on, a train/test split, and minibatches.

Everything here is plain Python lists: features are lists of floats, labels
floats (two classes, ``-1.0``/``+1.0``) or ints (many classes, ``0`` to
``classes - 1``). Generated data is drawn from ``random.Random(seed)``, so
the same seed gives the same data on any machine, with no numpy or
scikit-learn.

>>> import fungrad as fg
>>> xs, ys = fg.data.make_moons(6, noise=0.0, seed=0)
>>> len(xs), sorted(ys)
(6, [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])

The 8x8 handwritten digits of :func:`digits` ship inside the package, in
``fungrad/_data/digits.csv.gz``: the test set of the UCI "Optical
Recognition of Handwritten Digits" data set by E. Alpaydin and C. Kaynak
(1998) from the UCI Machine Learning Repository,
https://archive.ics.uci.edu/ml/datasets/Optical+Recognition+of+Handwritten+Digits,
licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
The file is byte for byte the copy that scikit-learn distributes as
``sklearn/datasets/data/digits.csv.gz``; its SHA-256 is checked on every
load.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import numbers
import random
from collections.abc import Mapping
from importlib import resources
from typing import Any, Iterator, Sequence, TypeVar

__all__ = ["tiny", "make_moons", "spirals", "digits", "split", "batches", "DIGITS_SHA256", "MAX_SAMPLES"]

X = TypeVar("X")
Y = TypeVar("Y")

#: The most samples a generated data set may have. They are lists of lists of
#: floats, about 130 bytes a point: past ten million points that is gigabytes,
#: so a bigger size is refused before anything is allocated, instead of
#: running out of memory (or forever, for ``n=10**400``).
MAX_SAMPLES = 10_000_000

#: SHA-256 of ``fungrad/_data/digits.csv.gz`` (the same bytes as scikit-learn's copy).
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
_DIGITS_FILE: Any = resources.files(__package__) / "_data" / "digits.csv.gz"


def _show(v: Any) -> str:
    # repr of an int past 4,300 digits raises ValueError (CPython's int_max_str_digits)
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return f"an int of about {int(v.bit_length() * 0.30103) + 1} digits"
    return f"{v!r:.80}"


def _count(v: Any, who: str, name: str, low: int, why: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an int ({why}), got {_show(v)}")
    v = int(v)
    if v < low:
        raise ValueError(f"{who}: {name} must be at least {low}, got {v}")
    if v > MAX_SAMPLES:
        raise ValueError(f"{who}: {name} must be at most {MAX_SAMPLES:,}, got {_show(v)}")
    return v


def _noise(v: Any, who: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{who}: noise must be a number (a standard deviation), got {_show(v)}")
    try:
        f = float(v)
    except OverflowError:  # an int past 1.8e308
        f = math.inf
    if not (0.0 <= f < math.inf):
        raise ValueError(f"{who}: noise must be a finite number >= 0, got {_show(v)}")
    return f


def _seed(v: Any, who: str, name: str = "seed") -> int:
    # only ints: seed=None would draw from the OS and no two runs would
    # agree; 1.0 or True would give another shuffle than 1; and not below 0,
    # as random.Random takes -5 for 5
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an int, got {_show(v)}")
    v = int(v)
    if v < 0:
        raise ValueError(f"{who}: {name} must be an int >= 0, got {v}")
    return v


def _samples(xs: Any, ys: Any, who: str) -> None:
    for name, v in (("xs", xs), ("ys", ys)):
        # anything with a length and indexing: lists, tuples, NumPy arrays (not a dict or a set)
        if isinstance(v, (str, bytes, Mapping)) or not (hasattr(v, "__len__") and hasattr(v, "__getitem__")):
            raise TypeError(f"{who}: {name} must be a sequence (a list or tuple, one item per sample), got {type(v).__name__}")


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
    n = _count(n, "make_moons", "n", 2, "the number of samples, at least one point per moon")
    noise = _noise(noise, "make_moons")
    rng = random.Random(_seed(seed, "make_moons"))
    n_out = n // 2
    pts = [(math.cos(t), math.sin(t), -1.0) for t in _linspace_pi(n_out)]
    pts += [(1.0 - math.cos(t), 1.0 - math.sin(t) - 0.5, 1.0) for t in _linspace_pi(n - n_out)]
    rng.shuffle(pts)
    if noise:
        pts = [(x + rng.gauss(0.0, noise), y + rng.gauss(0.0, noise), c) for x, y, c in pts]
    return [[x, y] for x, y, _ in pts], [c for _, _, c in pts]


def spirals(
    n: int = 100, classes: int = 3, noise: float = 0.2, seed: int = 0
) -> tuple[list[list[float]], list[int]]:
    """Interleaved spiral arms, one per class: the multiclass toy of Stanford's CS231n.

    ``n`` is the number of points **per class** (CS231n's ``N``), so the
    result holds ``n * classes`` samples. Point ``i`` of class ``j`` lies at
    radius ``r = i / (n - 1)`` and angle ``t = 2*pi*j/classes + 4*r``, plus
    Gaussian noise of standard deviation ``noise`` on the angle (in radians),
    at ``(r * sin t, r * cos t)``. Each arm sweeps 4 radians as in CS231n;
    the arms start ``2*pi/classes`` apart (CS231n's start 4 radians apart,
    which crowds them past three classes). The samples are shuffled, and
    everything is drawn from ``random.Random(seed)``.

    Returns ``(xs, ys)``: ``xs`` a list of ``[x, y]`` pairs, ``ys`` the
    labels, ints from ``0`` to ``classes - 1``.

    >>> import fungrad as fg
    >>> xs, ys = fg.data.spirals(50, classes=3, seed=0)
    >>> len(xs), sorted(set(ys)), ys.count(0)
    (150, [0, 1, 2], 50)
    >>> max(x * x + y * y for x, y in xs) <= 1.0
    True
    """
    n = _count(n, "spirals", "n", 2, "the number of points per class")
    classes = _count(classes, "spirals", "classes", 1, "the number of classes")
    if n * classes > MAX_SAMPLES:
        raise ValueError(f"spirals: n * classes must be at most {MAX_SAMPLES:,} samples, got {n} * {classes}")
    noise = _noise(noise, "spirals")
    rng = random.Random(_seed(seed, "spirals"))
    pts = []
    for j in range(classes):
        start = 2.0 * math.pi * j / classes
        for i in range(n):
            r = i / (n - 1)
            t = start + 4.0 * r + (rng.gauss(0.0, noise) if noise else 0.0)
            pts.append((r * math.sin(t), r * math.cos(t), j))
    rng.shuffle(pts)
    return [[x, y] for x, y, _ in pts], [c for _, _, c in pts]


def digits() -> tuple[list[list[float]], list[int]]:
    """The 8x8 handwritten digits: 1,797 images of 64 pixels in [0, 1], labels 0 to 9.

    This is the test set of the UCI "Optical Recognition of Handwritten
    Digits" data set (E. Alpaydin and C. Kaynak, 1998; CC BY 4.0), the copy
    scikit-learn ships, stored in the package: no network and no
    scikit-learn needed. Each image is a 32x32 bitmap counted in 4x4 blocks,
    so a pixel is a count from 0 to 16; here it is divided by 16. ``xs[k]``
    lists image ``k`` row by row (pixel ``(r, c)`` at index ``8 * r + c``).

    The file's SHA-256 is checked on every call (:data:`DIGITS_SHA256`): a
    damaged or replaced file raises ``RuntimeError``, never gives wrong data.
    It is parsed once per process; each call returns fresh lists, so changing
    them changes nothing for the next caller.

    >>> import fungrad as fg
    >>> xs, ys = fg.data.digits()
    >>> len(xs), len(xs[0]), ys[:10]
    (1797, 64, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> [int(16 * v) for v in xs[0][:8]]      # the first row of pixels of image 0, a zero
    [0, 0, 5, 13, 9, 1, 0, 0]
    """
    path = _DIGITS_FILE
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"digits: the data file {path} is missing from the installed fungrad package; "
            "reinstall fungrad (pip install --force-reinstall fungrad)"
        ) from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != DIGITS_SHA256:
        raise RuntimeError(
            f"digits: the data file {path} is damaged: its SHA-256 is {digest}, expected "
            f"{DIGITS_SHA256}; reinstall fungrad (pip install --force-reinstall fungrad)"
        )
    rows, labels = _parse_digits(blob)
    return [list(r) for r in rows], list(labels)


@functools.lru_cache(maxsize=1)
def _parse_digits(blob: bytes) -> tuple[tuple[tuple[float, ...], ...], tuple[int, ...]]:
    # Only a blob whose hash was checked gets here; tuples, so the cache cannot be changed.
    # v / 16 is exact in binary floating point for the counts 0..16.
    scale = [v / 16 for v in range(17)]
    rows, labels = [], []
    for line in gzip.decompress(blob).decode("ascii").splitlines():
        *pixels, label = map(int, line.split(","))
        rows.append(tuple(scale[v] for v in pixels))
        labels.append(label)
    return tuple(rows), tuple(labels)


def split(
    xs: Sequence[X], ys: Sequence[Y], test_fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[list[X], list[Y]], tuple[list[X], list[Y]]]:
    """Shuffle the samples by ``seed`` and split them: ``((train_xs, train_ys), (test_xs, test_ys))``.

    The test set takes ``ceil(n * test_fraction)`` samples, as scikit-learn's
    ``train_test_split`` does (``n * test_fraction`` is rounded to 9 decimals
    first, so that ``10 * 0.3`` counts as 3 and not 3.0000000000000004), and
    the training set the rest; both must be non-empty. Each ``x`` stays with
    its ``y``, every sample lands in exactly one of the two sets, and the same
    seed always gives the same split. The lists are new; the samples in them
    are the caller's own objects, not copies. The split is not stratified.

    >>> import fungrad as fg
    >>> (train_xs, train_ys), (test_xs, test_ys) = fg.data.split(*fg.data.digits(), test_fraction=0.2, seed=0)
    >>> len(train_xs), len(test_xs)
    (1437, 360)
    >>> fg.data.split([[0.0], [1.0], [2.0], [3.0], [4.0]], [0, 1, 2, 3, 4], 0.4, seed=1)[1][1]
    [2, 3]
    """
    _samples(xs, ys, "split")
    if len(xs) != len(ys):
        raise ValueError(f"split: xs and ys must have the same length, got {len(xs)} and {len(ys)}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"split: test_fraction must be a number between 0 and 1, got {_show(test_fraction)}")
    if not (0.0 < test_fraction < 1.0):
        raise ValueError(f"split: test_fraction must be strictly between 0 and 1, got {_show(test_fraction)}")
    rng = random.Random(_seed(seed, "split"))
    n = len(xs)
    n_test = math.ceil(round(n * float(test_fraction), 9))
    if n_test < 1 or n_test >= n:
        raise ValueError(
            f"split: {n} sample{'s' if n != 1 else ''} with test_fraction={test_fraction!r} give a test set of "
            f"{n_test} and a training set of {n - n_test}; both need at least one sample"
        )
    order = list(range(n))
    rng.shuffle(order)
    test, train = order[:n_test], order[n_test:]
    return ([xs[i] for i in train], [ys[i] for i in train]), ([xs[i] for i in test], [ys[i] for i in test])


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
    _samples(xs, ys, "batches")
    if len(xs) != len(ys):
        raise ValueError(f"batches: xs and ys must have the same length, got {len(xs)} and {len(ys)}")
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"batches: size must be an int >= 1, got {size!r}")
    size = int(size)
    seed, epoch = _seed(seed, "batches"), _seed(epoch, "batches", "epoch")
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
