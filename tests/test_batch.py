"""vmap (one traced example replayed over a batch) and export (the traced program as array code)."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from conftest import require

import fungrad as fg


def loss(w, x, y):
    return (fg.tanh(w["a"] * x[0] + w["b"] * x[1]) - y) ** 2


def batch(n, seed=0):
    rng = random.Random(seed)
    xs = [[rng.uniform(-2, 2), rng.uniform(-2, 2)] for _ in range(n)]
    ys = [rng.uniform(-1, 1) for _ in range(n)]
    return xs, ys


W = {"a": 0.7, "b": -0.4}


def test_vmap_equals_the_python_loop_bit_for_bit():
    xs, ys = batch(30)
    got = fg.vmap(loss, in_axes=(None, 0, 0))(W, xs, ys)
    assert got == [loss(W, x, y) for x, y in zip(xs, ys)]
    assert all(type(v) is float for v in got)


def test_per_example_gradients_equal_one_grad_per_example():
    xs, ys = batch(20, seed=1)
    got = fg.vmap(fg.grad(loss), in_axes=(None, 0, 0))(W, xs, ys)
    assert got == [fg.grad(loss)(W, x, y) for x, y in zip(xs, ys)]


def mean(vs):
    return sum(vs) * (1.0 / len(vs))


def test_grad_of_the_mean_of_a_vmap_equals_the_loop():
    xs, ys = batch(25, seed=2)
    vm = lambda w: mean(fg.vmap(loss, in_axes=(None, 0, 0))(w, xs, ys))  # noqa: E731
    loop = lambda w: mean([loss(w, x, y) for x, y in zip(xs, ys)])  # noqa: E731
    assert fg.value_and_grad(vm)(W) == fg.value_and_grad(loop)(W)
    h1, h2 = fg.hessian(vm)(W), fg.hessian(loop)(W)
    for k in h1:
        assert h1[k] == pytest.approx(h2[k], rel=1e-12, abs=1e-14)
    # forward mode through the body's derivative
    t = fg.jvp(vm, (W,), ({"a": 1.0, "b": -2.0},))[1]
    assert t == pytest.approx(fg.jvp(loop, (W,), ({"a": 1.0, "b": -2.0},))[1], rel=1e-13)


def test_jit_of_grad_of_vmap_replays_the_eager_answer():
    xs, ys = batch(12, seed=3)
    vm = lambda w, xs, ys: mean(fg.vmap(loss, in_axes=(None, 0, 0))(w, xs, ys))  # noqa: E731
    step = fg.jit(fg.value_and_grad(vm))
    for seed in range(3):
        xs, ys = batch(12, seed=seed)
        w = {"a": 0.3 + seed, "b": -0.2}
        assert step(w, xs, ys) == fg.value_and_grad(vm)(w, xs, ys)
    assert step.cache_size() == 1


def test_nested_vmap_is_an_outer_product():
    outer = fg.vmap(fg.vmap(lambda a, b: a * b + 1.0, in_axes=(None, 0)), in_axes=(0, None))
    assert outer([1.0, 2.0], [3.0, 4.0, 5.0]) == [[4.0, 5.0, 6.0], [7.0, 9.0, 11.0]]


def test_the_graph_holds_one_map_node_for_the_whole_batch_not_the_body():
    xs, ys = batch(50, seed=4)
    seen = {}

    def f(w):
        out = fg.vmap(loss, in_axes=(None, 0, 0))(w, xs, ys)
        seen["ops"] = [n.op for n in fg.toposort(mean(out))]
        return mean(out)

    fg.grad(f)(W)
    ops = seen["ops"]
    loop_nodes = len(fg.toposort(mean([loss({"a": fg.var(0.7), "b": fg.var(-0.4)}, x, y) for x, y in zip(xs, ys)])))
    # one map node for the batch, one pick per example output, none of the body's ops
    assert ops.count("vmap") == 1
    assert ops.count("vmap_pick") == 50
    assert "tanh" not in ops and "pow" not in ops
    assert len(ops) < loop_nodes


def test_the_body_is_traced_once_per_structure():
    calls = []

    def f(w, x):
        calls.append(1)
        return w * x

    vf = fg.vmap(f, in_axes=(None, 0))
    vf(2.0, [1.0, 2.0, 3.0])
    vf(3.0, [4.0, 5.0])
    assert len(calls) == 1


def test_python_control_flow_on_a_traced_value_raises():
    with pytest.raises(TypeError, match="traced node"):
        fg.vmap(lambda x: x if x > 0 else -x)([1.0, -2.0])


def test_numpy_arrays_with_a_batch_axis():
    np = require("numpy", 'pip install "fungrad[fast]"')
    xs, ys = batch(6, seed=5)
    got = fg.vmap(loss, in_axes=(None, 0, 0))(W, np.array(xs), np.array(ys))
    assert got == [loss(W, x, y) for x, y in zip(xs, ys)]


def test_bad_batches_name_the_argument():
    vf = fg.vmap(loss, in_axes=(None, 0, 0))
    with pytest.raises(ValueError, match="argument 1 has 3 examples, argument 2 has 2"):
        vf(W, [[0.0, 1.0]] * 3, [1.0, 2.0])
    with pytest.raises(ValueError, match="in_axes has 2 entries"):
        fg.vmap(loss, in_axes=(None, 0))(W, [[0.0, 1.0]], [1.0])
    with pytest.raises(TypeError, match="argument 1 is batched .* but is float"):
        vf(W, 1.0, [1.0])
    with pytest.raises(ValueError, match="example 1 has structure"):
        vf(W, [[0.0, 1.0], [0.0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="only 0"):
        fg.vmap(loss, in_axes=(None, 1, 0))(W, [[0.0, 1.0]], [1.0])
    with pytest.raises(TypeError, match="expected a function"):
        fg.vmap(3)


# ------------------------------------------------------------------ export


def test_export_to_numpy_evaluates_a_batch_at_once():
    np = require("numpy", 'pip install "fungrad[fast]"')
    xs, ys = batch(40, seed=6)
    g = fg.export(loss, W, xs[0], ys[0], xp=np)
    X = np.array(xs)
    out = g(W, [X[:, 0], X[:, 1]], np.array(ys))
    want = [loss(W, x, y) for x, y in zip(xs, ys)]
    assert out.tolist() == pytest.approx(want, rel=4 * 2.0**-52 * 8, abs=1e-15)


@pytest.mark.slow
def test_export_to_torch_autograd_equals_fungrad_gradients(torch):
    xs, ys = batch(16, seed=7)
    f = lambda w, x, y: loss(w, x, y)  # noqa: E731
    g = fg.export(f, W, xs[0], ys[0], xp=torch)
    wa = torch.tensor(W["a"], dtype=torch.float64, requires_grad=True)
    wb = torch.tensor(W["b"], dtype=torch.float64, requires_grad=True)
    X = torch.tensor(xs, dtype=torch.float64)
    total = g({"a": wa, "b": wb}, [X[:, 0], X[:, 1]], torch.tensor(ys, dtype=torch.float64)).mean()
    total.backward()
    want = fg.grad(lambda w: mean([loss(w, x, y) for x, y in zip(xs, ys)]))(W)
    assert wa.grad.item() == pytest.approx(want["a"], rel=1e-12)
    assert wb.grad.item() == pytest.approx(want["b"], rel=1e-12)


def test_export_keeps_stop_gradient_for_the_autograd_that_differentiates_it(torch):
    f = lambda x: fg.stop_gradient(x) * x + fg.stop_gradient(x * x)  # noqa: E731
    t = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
    fg.export(f, 1.0, xp=torch)(t).sum().backward()
    assert t.grad.tolist() == [fg.grad(f)(3.0), fg.grad(f)(-2.0)] == [3.0, -2.0]
    np = require("numpy", 'pip install "fungrad[fast]"')
    assert fg.export(f, 1.0, xp=np)(np.array([3.0, -2.0])).tolist() == [18.0, 8.0]


def test_export_covers_every_public_primitive():
    np = require("numpy", 'pip install "fungrad[fast]"')
    public = [name for name, p in fg.PRIMITIVES.items() if p.public]
    assert len(public) >= 30
    # points on both sides of every kink (abs, relu, sign, step at 0; where's
    # condition; which of two is larger), so a wrong branch cannot pass
    points = {
        1: [(v,) for v in (-1.5, -0.2, 0.0, 0.3, 0.7, 2.0)],
        2: [(0.3, 0.7), (0.7, 0.3), (-0.2, 0.5), (0.5, -0.2), (1.0, 1.0), (-1.5, -0.4)],
        3: [(0.3, 0.7, -0.2), (-0.3, 0.7, -0.2), (0.0, 0.7, -0.2), (2.0, -1.0, 5.0)],
    }
    checked = 0
    for name in public:
        p = fg.PRIMITIVES[name]
        f = getattr(fg, name)
        g = fg.export(lambda *a: f(*a), *points[p.arity][0], xp=np)
        for args in points[p.arity]:
            with np.errstate(all="ignore"):
                got = float(g(*[np.float64(a) for a in args]))
            want = f(*args)
            assert got == pytest.approx(want, rel=1e-14, abs=1e-300) or (math.isnan(got) and math.isnan(want)), (name, args)
            checked += 1
    assert checked >= 4 * len(public)


def test_export_equals_eager_at_infinities_nan_and_signed_zeros():
    np = require("numpy", 'pip install "fungrad[fast]"')
    edge = [-math.inf, -2.0, -0.0, 0.0, 0.5, 3.0, 25.0, math.inf, math.nan]
    for name, p in fg.PRIMITIVES.items():
        if not p.public:
            continue
        f = getattr(fg, name)
        grid = list(itertools.product(edge, repeat=p.arity)) if p.arity < 3 else list(itertools.product(edge, [1.5, -math.inf], [math.nan, -0.5]))
        cols = [np.array(c, dtype=np.float64) for c in zip(*grid)]
        g = fg.export(lambda *a: f(*a), *[0.7] * p.arity, xp=np)
        with np.errstate(all="ignore"):
            got = g(*cols).tolist()
        for args, v in zip(grid, got):
            want = f(*args)
            if math.isnan(want) or math.isinf(want) or want == 0.0:
                assert v == want or (math.isnan(v) and math.isnan(want)), (name, args, v, want)
            else:
                assert v == pytest.approx(want, rel=1e-14), (name, args, v, want)


def test_export_errors():
    np = require("numpy", 'pip install "fungrad[fast]"')
    with pytest.raises(TypeError, match="array namespace"):
        fg.export(loss, W, [0.0, 1.0], 1.0)
    g = fg.export(loss, W, [0.0, 1.0], 1.0, xp=np)
    with pytest.raises(ValueError, match="structure"):
        g(W, [0.0], 1.0)
    own = fg.primitive("batch_test_own_op", lambda x: 2.0 * x, vjp=(lambda g, ans, x: 2.0 * g,))
    with pytest.raises(TypeError, match="no array form"):
        fg.export(own, 1.0, xp=np)


def test_static_leaves_that_differ_between_examples_are_an_error_not_a_silent_trace():
    f = lambda d: d["v"] * (2.0 if d["k"] == "double" else 1.0)  # noqa: E731
    assert fg.vmap(f)([{"v": 1.0, "k": "double"}, {"v": 3.0, "k": "double"}]) == [2.0, 6.0]
    with pytest.raises(ValueError, match="example 1, leaf 1 is 'same', but example 0 has 'double'"):
        fg.vmap(f)([{"v": 1.0, "k": "double"}, {"v": 3.0, "k": "same"}])


def test_under_debug_nans_every_example_is_checked():
    with pytest.raises(FloatingPointError, match="op 'log' produced -inf"):
        with fg.debug_nans():
            fg.vmap(fg.log)([1.0, 0.0])
    assert fg.vmap(fg.log)([1.0, 0.0]) == [0.0, -math.inf]


def test_jvp_of_vmap_and_vmap_of_jvp_and_of_hessian():
    f = lambda w, x: w * fg.sin(x)  # noqa: E731
    xs = [0.5, 1.5]
    total = lambda w: sum(fg.vmap(f, in_axes=(None, 0))(w, xs))  # noqa: E731
    assert fg.jvp(total, (2.0,), (1.0,)) == fg.jvp(lambda w: sum(f(w, x) for x in xs), (2.0,), (1.0,))
    assert fg.vmap(lambda x: fg.jvp(fg.sin, (x,), (1.0,))[1])(xs) == [math.cos(x) for x in xs]
    h = fg.hessian(lambda v: v[0] ** 2 * v[1])
    assert fg.vmap(h)([[3.0, 2.0], [1.0, 1.0]]) == [h([3.0, 2.0]), h([1.0, 1.0])]


@pytest.mark.slow
def test_export_to_torch_equals_eager_at_the_edges(torch):
    inf, nan = math.inf, math.nan
    f = lambda x, y: [fg.maximum(x, 0.0), fg.minimum(y, x), fg.pow(x, 0.5), fg.pow(2.0, x), fg.where(x, y, -0.5), fg.relu(x)]  # noqa: E731
    g = fg.export(f, 1.0, 1.0, xp=torch)
    xs = [-inf, -2.0, -0.0, 0.0, 0.5, 3.0, inf, nan]
    ys = [1.0, nan, -0.0, 2.0, -inf, 0.5, 3.0, 0.0]
    got = [t.tolist() for t in g(torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64))]
    for k, (x, y) in enumerate(zip(xs, ys)):
        for i, want in enumerate(f(x, y)):
            v = got[i][k]
            if i in (2, 3) and math.isfinite(want) and want != 0.0:  # torch's pow, within a few ulp
                assert v == pytest.approx(want, rel=4 * 2.0**-52), (i, x, y, v, want)
                continue
            assert v == want and math.copysign(1.0, v) == math.copysign(1.0, want) or (v != v and want != want), (i, x, y, v, want)
    ints = g(torch.tensor([3, -2]), torch.tensor([1, 1]))  # ints compute in float64
    assert ints[2].dtype == torch.float64 and ints[0].tolist() == [3.0, 0.0]


def test_export_divides_a_number_by_an_array_as_eager_does(torch):
    # PyTorch computes 3.0 / x as 3.0 * (1 / x): an ulp off for about a third
    # of all x, and inf or nan where 1 / x overflows (a subnormal x)
    rng = random.Random(11)
    xs = [rng.uniform(0.1, 100.0) for _ in range(200)] + [1e-310, 10.0, 3.0]
    f = lambda x: [3.0 / x, 1e-300 / x, 0.0 / x, fg.grad(lambda x: 3.0 * fg.log(x))(x)]  # noqa: E731
    got = [t.tolist() for t in fg.export(f, 1.0, xp=torch)(torch.tensor(xs, dtype=torch.float64))]
    for k, x in enumerate(xs):
        want = f(x)
        assert [got[i][k] for i in range(4)] == want, (x, [got[i][k] for i in range(4)], want)
    np = require("numpy", 'pip install "fungrad[fast]"')
    g = fg.export(lambda x: [1.0 / x, -1.0 / x, x / 0.0], 1.0, xp=np)
    a, b, c = (float(v) for v in g(0.0))  # Python's / would raise
    assert (a, b) == (math.inf, -math.inf) and math.isnan(c)
    # a NumPy float64 over a float32 array stays in float64, as NumPy divides them
    q = fg.export(lambda a, b: a / b, 1.0, 1.0, xp=np)(np.float64(1.0), np.array([3.0], dtype=np.float32))
    assert q.dtype == np.float64 and q.tolist() == [1.0 / 3.0]


def test_export_to_torch_takes_numbers_and_constants_anywhere(torch):
    # torch's functions take tensors only: numbers at the leaves and the
    # graph's constants, in every argument of every primitive, must still work
    edge = [-math.inf, -2.0, -0.0, 0.0, 1e-310, 0.5, 3.0, math.inf, math.nan]
    checked = 0
    for name, p in fg.PRIMITIVES.items():
        if not p.public or p.arity < 2:
            continue
        fn = getattr(fg, name)
        for k in range(p.arity):
            for c in (0.5, -0.0):
                def h(*a, k=k, c=c):
                    args = list(a)
                    args.insert(k, c)
                    return fn(*args)

                grid = list(itertools.product(edge, repeat=p.arity - 1))
                cols = [torch.tensor(col, dtype=torch.float64) for col in zip(*grid)]
                got = fg.export(h, *[0.7] * (p.arity - 1), xp=torch)(*cols).tolist()
                for args, v in zip(grid, got):
                    want = h(*args)
                    if math.isfinite(want) and want != 0.0 and name in ("pow", "atan2"):
                        assert v == pytest.approx(want, rel=4 * 2.0**-52), (name, k, c, args, v, want)
                    else:
                        assert v == want and math.copysign(1.0, v) == math.copysign(1.0, want) or (v != v and want != want), (name, k, c, args, v, want)
                    checked += 1
    assert checked > 700
    # constants keep a float32 array in float32, and an output that is a
    # constant is a number, not one tensor shared by every call
    x32 = torch.tensor([1.0, -2.0], dtype=torch.float32)
    for f in (lambda x: fg.where(x, 0.5, -0.5), lambda x: fg.atan2(x, 0.5), lambda x: 3.0 / x, fg.grad(lambda x: fg.maximum(x, 1.0) * 3.0)):
        assert fg.export(f, 1.0, xp=torch)(x32).dtype == torch.float32
    assert fg.export(lambda x: x * 2.0 + 1.0, 1.0, xp=torch)(torch.tensor(1.5, dtype=torch.float32)).dtype == torch.float32
    grads = fg.export(fg.grad(lambda w, b: w * w + 0.5 * b, argnums=(0, 1)), 1.0, 1.0, xp=torch)
    first = grads(torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    assert first[1] == 0.5 and not torch.is_tensor(first[1])
    g = fg.export(lambda x, y: [fg.exp(x) * y, fg.atan2(y, 2.0)], 1.0, 1.0, xp=torch)
    out = g(1.0, torch.tensor([1.0, 2.0], dtype=torch.float32))
    assert out[0].tolist() == pytest.approx([math.e, 2 * math.e], rel=1e-6) and out[0].dtype == torch.float32
    assert out[1].dtype == torch.float32  # float64 constants do not widen float32 arrays
    assert float(fg.export(fg.exp, 1.0, xp=torch)(1.0)) == math.exp(1.0)


def test_the_numpy_replay_sums_zeros_with_their_sign():
    require("numpy", 'pip install "fungrad[fast]"')
    xs = [-0.0] * 70
    for backend in ("python", "numpy"):
        total = lambda w: sum(fg.vmap(lambda w, x: w * x, in_axes=(None, 0), backend=backend)(w, xs))  # noqa: E731
        for gfun in (fg.grad(total), fg.jit(fg.grad(total))):
            g = gfun(1.0)
            assert g == 0.0 and math.copysign(1.0, g) == -1.0, backend
    # one +0.0 among them, or terms that cancel, give +0.0 in any order
    ys = [-0.0] * 69 + [0.0]
    g = fg.grad(lambda w: sum(fg.vmap(lambda w, x: w * x, in_axes=(None, 0), backend="numpy")(w, ys)))(1.0)
    assert math.copysign(1.0, g) == 1.0
    zs = [1.5, -1.5] * 10
    g = fg.grad(lambda w: sum(fg.vmap(lambda w, x: w * x, in_axes=(None, 0), backend="numpy")(w, zs)))(1.0)
    assert g == 0.0 and math.copysign(1.0, g) == 1.0
