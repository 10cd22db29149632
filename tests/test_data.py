import math

import pytest

from fungrad import data


def test_tiny_is_the_tutorials_data_and_fresh_each_call():
    xs, ys = data.tiny()
    assert xs == [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    assert ys == [1.0, -1.0, -1.0, 1.0]
    assert all(type(v) is float for row in xs for v in row) and all(type(v) is float for v in ys)
    xs[0][0] = 99.0
    ys.append(5.0)
    assert data.tiny() == (
        [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]],
        [1.0, -1.0, -1.0, 1.0],
    )


@pytest.mark.parametrize("n", [2, 3, 7, 100, 101])
def test_make_moons_shape_and_labels(n):
    xs, ys = data.make_moons(n, noise=0.1, seed=3)
    assert len(xs) == len(ys) == n
    assert all(isinstance(p, list) and len(p) == 2 and all(type(v) is float for v in p) for p in xs)
    assert ys.count(-1.0) == n // 2 and ys.count(1.0) == n - n // 2
    assert set(ys) == {-1.0, 1.0}


def test_make_moons_defaults_match_the_demo():
    xs, ys = data.make_moons()
    assert len(xs) == 100 and ys.count(1.0) == 50
    assert (xs, ys) == data.make_moons(100, 0.1, 0)


def test_make_moons_is_deterministic_and_seed_dependent():
    a = data.make_moons(50, noise=0.2, seed=7)
    assert a == data.make_moons(50, noise=0.2, seed=7)
    assert a != data.make_moons(50, noise=0.2, seed=8)


def test_make_moons_without_noise_lies_on_the_circles():
    xs, ys = data.make_moons(40, noise=0.0, seed=1)
    for (x, y), label in zip(xs, ys):
        if label == -1.0:  # outer moon: the upper unit half circle
            assert math.isclose(x * x + y * y, 1.0, abs_tol=1e-12)
            assert y >= -1e-12
        else:  # inner moon: centred at (1, 0.5), the lower half
            assert math.isclose((x - 1.0) ** 2 + (y - 0.5) ** 2, 1.0, abs_tol=1e-12)
            assert y <= 0.5 + 1e-12
    # t runs over [0, pi] inclusive, so both ends of each moon are there
    pts = {(round(x, 12), round(y, 12)) for x, y in xs}
    assert {(1.0, 0.0), (-1.0, 0.0), (0.0, 0.5), (2.0, 0.5)} <= pts
    # evenly spaced: 20 points on each moon, angles pi/19 apart
    outer = sorted(math.atan2(y, x) for (x, y), c in zip(xs, ys) if c == -1.0)
    steps = [b - a for a, b in zip(outer, outer[1:])]
    assert all(math.isclose(s, math.pi / 19, rel_tol=1e-9) for s in steps)


def test_make_moons_is_shuffled():
    _, ys = data.make_moons(100, noise=0.0, seed=0)
    assert ys != sorted(ys) and ys != sorted(ys, reverse=True)


def test_make_moons_noise_has_the_requested_spread():
    clean, cys = data.make_moons(2000, noise=0.0, seed=5)
    noisy, nys = data.make_moons(2000, noise=0.3, seed=5)
    assert cys == nys  # the shuffle comes before the noise, so points correspond
    d = [a - b for p, q in zip(noisy, clean) for a, b in zip(p, q)]
    mean = sum(d) / len(d)
    std = math.sqrt(sum((v - mean) ** 2 for v in d) / len(d))
    assert abs(mean) < 0.02 and abs(std - 0.3) < 0.015


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"n": 1}, ValueError, "at least 2"),
        ({"n": -5}, ValueError, "at least 2"),
        ({"n": 2.5}, TypeError, "must be an int"),
        ({"n": True}, TypeError, "must be an int"),
        ({"noise": -0.1}, ValueError, "noise must be a finite number >= 0"),
        ({"noise": math.inf}, ValueError, "noise must be a finite number >= 0"),
        ({"noise": math.nan}, ValueError, "noise must be a finite number >= 0"),
        ({"noise": "0.1"}, TypeError, "noise must be a number"),
    ],
)
def test_make_moons_rejects_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        data.make_moons(**kwargs)


def _epoch(xs, ys, size, seed=0, epoch=0, **kw):
    return list(data.batches(xs, ys, size, seed, epoch=epoch, **kw))


@pytest.mark.parametrize("n, size", [(10, 3), (10, 5), (10, 1), (10, 10), (10, 64), (1, 4)])
def test_batches_cover_every_sample_exactly_once(n, size):
    xs = [[float(i), -float(i)] for i in range(n)]
    ys = [float(i) for i in range(n)]
    bs = _epoch(xs, ys, size, seed=4)
    assert [len(yb) for _, yb in bs] == [size] * (n // size) + ([n % size] if n % size else [])
    seen = [y for _, yb in bs for y in yb]
    assert sorted(seen) == ys
    for xb, yb in bs:  # each x stays with its own y
        assert all(x == [y, -y] for x, y in zip(xb, yb))


def test_batches_are_deterministic_per_seed_and_epoch():
    xs, ys = data.make_moons(30, seed=0)
    assert _epoch(xs, ys, 4, seed=1, epoch=2) == _epoch(xs, ys, 4, seed=1, epoch=2)
    order = lambda **kw: [y for _, yb in _epoch(xs, list(range(30)), 4, **kw) for y in yb]
    e0, e1, s2 = order(seed=1, epoch=0), order(seed=1, epoch=1), order(seed=2, epoch=0)
    assert e0 != e1 and e0 != s2 and sorted(e0) == sorted(e1) == list(range(30))
    assert order(seed=1, epoch=0, shuffle=True) == e0
    assert order(seed=1, epoch=0, shuffle=False) == list(range(30))


def test_batches_leave_the_data_alone_and_accept_tuples():
    xs, ys = ((1.0,), (2.0,), (3.0,)), (1.0, 2.0, 3.0)
    bs = _epoch(xs, ys, 2, seed=0)
    assert xs == ((1.0,), (2.0,), (3.0,)) and ys == (1.0, 2.0, 3.0)
    assert all(isinstance(xb, list) and isinstance(yb, list) for xb, yb in bs)


def test_batches_of_nothing_yield_nothing():
    assert _epoch([], [], 3) == []


@pytest.mark.parametrize(
    "xs, ys, size, match",
    [
        ([[1.0]] * 3, [1.0] * 2, 1, "same length, got 3 and 2"),
        ([[1.0]], [1.0], 0, "size must be an int >= 1"),
        ([[1.0]], [1.0], -2, "size must be an int >= 1"),
        ([[1.0]], [1.0], 1.5, "size must be an int >= 1"),
    ],
)
def test_batches_reject_bad_arguments_at_call_time(xs, ys, size, match):
    with pytest.raises(ValueError, match=match):
        data.batches(xs, ys, size)  # not iterated: the check is eager
