import math

import pytest

import fungrad as fg
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


def test_a_seed_and_an_epoch_are_ints_from_0_so_that_one_seed_means_one_order():
    xs, ys = [[float(i)] for i in range(20)], [float(i) for i in range(20)]
    for bad, err, match in ((None, TypeError, "batches: seed must be an int, got None"),
                            (1.0, TypeError, "seed must be an int"), (True, TypeError, "seed must be an int"),
                            (-1, ValueError, "batches: seed must be an int >= 0, got -1")):
        with pytest.raises(err, match=match):
            data.batches(xs, ys, 4, seed=bad)
    with pytest.raises(TypeError, match="batches: xs must be a sequence .* got set"):
        data.batches({1.0, 2.0}, [1.0, 2.0], 1)
    with pytest.raises(TypeError, match="batches: ys must be a sequence .* got dict"):
        data.batches([1.0, 2.0], {1.0: 0, 2.0: 1}, 1)
    with pytest.raises(ValueError, match="batches: epoch must be an int >= 0, got -1"):
        data.batches(xs, ys, 4, epoch=-1)
    with pytest.raises(TypeError, match="batches: epoch must be an int, got 0.5"):
        data.batches(xs, ys, 4, epoch=0.5)
    # random.Random takes -1 for 1: a negative seed would silently repeat a positive one
    for make in (lambda s: data.make_moons(10, seed=s), lambda s: data.split(xs, ys, seed=s),
                 lambda s: fg.nn.MLP.init(2, [3], seed=s)):
        with pytest.raises(ValueError, match="seed must be an int >= 0"):
            make(-1)
    assert [yb for _, yb in data.batches(xs, ys, 4, seed=3)] != [yb for _, yb in data.batches(xs, ys, 4, seed=4)]


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: data.make_moons(10**400), ValueError, "make_moons: n must be at most 10,000,000"),
        (lambda: data.make_moons(10**5000), ValueError, "n must be at most .* an int of about 5001 digits"),
        (lambda: data.make_moons(10, noise=10**400), ValueError, "noise must be a finite number >= 0"),
        (lambda: data.make_moons(10, seed=None), TypeError, "make_moons: seed must be an int, got None"),
        (lambda: data.make_moons(10, seed=1.5), TypeError, "seed must be an int"),
    ],
)
def test_make_moons_refuses_huge_sizes_before_allocating(call, err, match):
    with pytest.raises(err, match=match):
        call()


# --------------------------------------------------------------------------
# spirals


def test_spirals_has_n_points_per_class_and_int_labels():
    xs, ys = data.spirals(40, classes=4, noise=0.1, seed=2)
    assert len(xs) == len(ys) == 160
    assert [ys.count(c) for c in range(4)] == [40, 40, 40, 40]
    assert all(type(y) is int for y in ys)
    assert all(isinstance(p, list) and len(p) == 2 and all(type(v) is float for v in p) for p in xs)
    assert ys != sorted(ys)  # shuffled


def test_spirals_defaults_and_determinism():
    xs, ys = data.spirals()
    assert len(xs) == 300 and set(ys) == {0, 1, 2}
    assert (xs, ys) == data.spirals(100, 3, 0.2, 0)
    assert data.spirals(30, seed=5) == data.spirals(30, seed=5)
    assert data.spirals(30, seed=5) != data.spirals(30, seed=6)


def test_spirals_without_noise_lie_on_their_arms():
    n, k = 11, 3
    xs, ys = data.spirals(n, classes=k, noise=0.0, seed=0)
    for (x, y), j in zip(xs, ys):
        r = math.hypot(x, y)
        assert r <= 1.0 + 1e-12
        if r > 1e-12:  # the angle of the point sin-first, as in CS231n: (r sin t, r cos t)
            t = 2 * math.pi * j / k + 4 * r
            assert math.isclose(x, r * math.sin(t), abs_tol=1e-12) and math.isclose(y, r * math.cos(t), abs_tol=1e-12)
    radii = sorted(round(math.hypot(x, y), 12) for (x, y), j in zip(xs, ys) if j == 1)
    assert radii == [round(i / (n - 1), 12) for i in range(n)]


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"n": 1}, ValueError, "spirals: n must be at least 2"),
        ({"n": 2.0}, TypeError, "spirals: n must be an int"),
        ({"n": True}, TypeError, "spirals: n must be an int"),
        ({"n": 10**400}, ValueError, "spirals: n must be at most 10,000,000"),
        ({"classes": 0}, ValueError, "spirals: classes must be at least 1"),
        ({"classes": 10**400}, ValueError, "spirals: classes must be at most"),
        ({"n": 10**6, "classes": 11}, ValueError, r"n \* classes must be at most 10,000,000 samples, got 1000000 \* 11"),
        ({"noise": -1.0}, ValueError, "spirals: noise must be a finite number >= 0"),
        ({"noise": math.nan}, ValueError, "noise must be a finite number"),
        ({"noise": None}, TypeError, "spirals: noise must be a number"),
        ({"seed": "0"}, TypeError, "spirals: seed must be an int"),
    ],
)
def test_spirals_rejects_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        data.spirals(**kwargs)


# --------------------------------------------------------------------------
# digits


def test_digits_shape_labels_and_class_counts():
    xs, ys = data.digits()
    assert len(xs) == len(ys) == 1797
    assert all(isinstance(x, list) and len(x) == 64 for x in xs)
    assert all(type(v) is float and 0.0 <= v <= 1.0 for x in xs for v in x)
    assert {v * 16 for x in xs for v in x} == set(range(17))  # the 0..16 counts, divided by 16
    assert all(type(y) is int for y in ys)
    assert [ys.count(c) for c in range(10)] == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_known_samples():
    xs, ys = data.digits()
    image = lambda k: [[int(v * 16) for v in xs[k][8 * r : 8 * r + 8]] for r in range(8)]
    assert ys[:10] == list(range(10))
    assert image(0) == [
        [0, 0, 5, 13, 9, 1, 0, 0],
        [0, 0, 13, 15, 10, 15, 5, 0],
        [0, 3, 15, 2, 0, 11, 8, 0],
        [0, 4, 12, 0, 0, 8, 8, 0],
        [0, 5, 8, 0, 0, 9, 8, 0],
        [0, 4, 11, 0, 1, 12, 7, 0],
        [0, 2, 14, 5, 10, 12, 0, 0],
        [0, 0, 6, 13, 10, 0, 0, 0],
    ]
    assert ys[999] == 3 and image(999)[0] == [0, 0, 9, 15, 14, 2, 0, 0]
    assert ys[-1] == 8 and image(1796)[-1] == [0, 1, 8, 12, 14, 12, 1, 0]
    assert xs[0][2] == 5 / 16


def test_digits_returns_fresh_lists():
    xs, ys = data.digits()
    xs[0][0], ys[0] = 99.0, 7
    xs.pop()
    again = data.digits()
    assert again[0][0][0] == 0.0 and again[1][0] == 0 and len(again[0]) == 1797
    assert again[0][1] is not data.digits()[0][1]


def test_digits_file_is_checked_by_hash(tmp_path, monkeypatch):
    import hashlib

    blob = data._DIGITS_FILE.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == data.DIGITS_SHA256
    data.digits()  # parsed and cached first: the check must still run on the next call
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x01
    damaged = tmp_path / "digits.csv.gz"
    damaged.write_bytes(bytes(bad))
    monkeypatch.setattr(data, "_DIGITS_FILE", damaged)
    with pytest.raises(RuntimeError, match=r"digits: the data file .*digits.csv.gz is damaged: its SHA-256 is [0-9a-f]{64}, expected 09f66e6d"):
        data.digits()
    damaged.write_bytes(blob[:-1])  # truncated
    with pytest.raises(RuntimeError, match="is damaged"):
        data.digits()
    monkeypatch.setattr(data, "_DIGITS_FILE", tmp_path / "nope.csv.gz")
    with pytest.raises(FileNotFoundError, match="missing from the installed fungrad package"):
        data.digits()


def test_digits_file_is_package_data():
    import tomllib
    from pathlib import Path

    conf = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = conf["tool"]["setuptools"]["package-data"]["fungrad"]
    assert any(Path("_data/digits.csv.gz").match(p) for p in patterns)
    assert (Path(data.__file__).parent / "_data" / "README.md").is_file()


# --------------------------------------------------------------------------
# split


def test_split_digits_sizes_disjoint_and_covering():
    xs, ys = data.digits()
    (trx, try_), (tex, tey) = data.split(xs, ys, test_fraction=0.2, seed=0)
    assert (len(trx), len(try_), len(tex), len(tey)) == (1437, 1437, 360, 360)
    ids = lambda rows: {id(r) for r in rows}
    assert not ids(trx) & ids(tex) and ids(trx) | ids(tex) == ids(xs)
    where = {id(x): k for k, x in enumerate(xs)}
    assert all(ys[where[id(x)]] == y for x, y in zip(trx + tex, try_ + tey))  # pairs stay together
    assert trx[0] is xs[where[id(trx[0])]]  # the caller's rows, not copies


def test_split_is_deterministic_by_seed():
    xs, ys = [[float(i)] for i in range(50)], list(range(50))
    a = data.split(xs, ys, 0.3, seed=4)
    assert a == data.split(xs, ys, 0.3, seed=4)
    assert a != data.split(xs, ys, 0.3, seed=5)
    assert a[1][1] != sorted(a[1][1])  # shuffled
    assert xs == [[float(i)] for i in range(50)] and ys == list(range(50))  # inputs left alone


@pytest.mark.parametrize(
    "n, fraction, n_test",
    [(10, 0.3, 3), (5, 0.2, 1), (1797, 0.2, 360), (2, 0.5, 1), (3, 0.01, 1), (100, 0.98, 98), (100, 0.981, 99), (7, 0.5, 4)],
)
def test_split_test_size_is_the_ceiling(n, fraction, n_test):
    (trx, _), (tex, tey) = data.split(list(range(n)), list(range(n)), fraction, seed=0)
    assert len(tex) == len(tey) == n_test and len(trx) == n - n_test


class Rows:
    """Indexable with a length, but not a Sequence (as a NumPy array is not)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return [float(i)]


def test_split_accepts_any_indexable_with_a_length():
    (trx, try_), (tex, tey) = data.split(Rows(10), list(range(10)), 0.3, seed=0)
    assert len(tex) == 3 and all(x == [float(y)] for x, y in zip(trx + tex, try_ + tey))


def test_split_accepts_tuples():
    (trx, try_), (tex, tey) = data.split((1, 2, 3, 4), ("a", "b", "c", "d"), 0.5, seed=0)
    assert isinstance(trx, list) and sorted(trx + tex) == [1, 2, 3, 4]
    assert {dict(zip((1, 2, 3, 4), "abcd"))[x] for x in trx} == set(try_)


@pytest.mark.parametrize(
    "args, kwargs, err, match",
    [
        (([[1.0]] * 3, [0] * 2), {}, ValueError, "split: xs and ys must have the same length, got 3 and 2"),
        ((iter([[1.0]]), [0]), {}, TypeError, "split: xs must be a sequence"),
        (([[1.0]], "a"), {}, TypeError, "split: ys must be a sequence"),
        (([[1.0]], {0}), {}, TypeError, r"split: ys must be a sequence \(a list or tuple, one item per sample\), got set"),
        (({0: [1.0]}, [0]), {}, TypeError, r"split: xs must be a sequence .* got dict"),
        (([[1.0]] * 4, [0] * 4), {"test_fraction": 0.0}, ValueError, "test_fraction must be strictly between 0 and 1, got 0.0"),
        (([[1.0]] * 4, [0] * 4), {"test_fraction": 1}, ValueError, "strictly between 0 and 1"),
        (([[1.0]] * 4, [0] * 4), {"test_fraction": math.nan}, ValueError, "strictly between 0 and 1"),
        (([[1.0]] * 4, [0] * 4), {"test_fraction": 10**400}, ValueError, "strictly between 0 and 1, got an int of about 401"),
        (([[1.0]] * 4, [0] * 4), {"test_fraction": True}, TypeError, "split: test_fraction must be a number"),
        (([[1.0]] * 4, [0] * 4), {"test_fraction": "0.2"}, TypeError, "split: test_fraction must be a number"),
        (([[1.0]] * 4, [0] * 4), {"seed": None}, TypeError, "split: seed must be an int"),
        (([[1.0]], [0]), {}, ValueError, "split: 1 sample with test_fraction=0.2 give a test set of 1 and a training set of 0"),
        (([], []), {}, ValueError, "split: 0 samples"),
        (([[1.0]] * 4, [0] * 4), {"test_fraction": 0.9}, ValueError, "test set of 4 and a training set of 0"),
    ],
)
def test_split_rejects_bad_arguments(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        data.split(*args, **kwargs)
