"""vmap's map node: one node per batch, its derivatives as maps, the NumPy replay, and every composition."""

from __future__ import annotations

import math
import random
import struct
import threading

import pytest
from conftest import require

import fungrad as fg
from fungrad import batch as fb


def ulps(a: float, b: float) -> int:
    if a == b:
        return 0
    if math.isnan(a) and math.isnan(b):
        return 0
    ia, ib = (struct.unpack("<q", struct.pack("<d", v))[0] for v in (a, b))
    ia, ib = (i if i >= 0 else -(i & 0x7FFFFFFFFFFFFFFF) for i in (ia, ib))
    return abs(ia - ib)


def bits(v: float) -> bytes | float:
    return v if v != v else struct.pack("<d", v)


def data(n, d=3, seed=0):
    rng = random.Random(seed)
    return [[rng.uniform(-2, 2) for _ in range(d)] for _ in range(n)], [rng.randrange(3) for _ in range(n)]


def model(w, x):
    h = [fg.tanh(sum(w[j][i] * x[i] for i in range(len(x))) + w[j][-1]) for j in range(len(w))]
    return h


def arith(w, x, y):
    # + - * / and the selections only: the NumPy replay must give these bit for bit
    a = w[0] * x[0] - w[1] / (x[1] + 3.5)
    b = fg.where(x[2], a * a, -a) + fg.relu(a - y) * w[2]
    return fg.maximum(a, b) - fg.minimum(a * 0.5, y) + abs(b) / (1.0 + w[0] * w[0])


def trans(w, x, y):
    z = w[0] * x[0] + w[1] * x[1] + w[2] * x[2]
    return fg.log(1.0 + fg.exp(fg.tanh(z))) * fg.sigmoid(z - y) + fg.sqrt(z * z + 1.0)


W3 = [0.3, -0.8, 1.1]
WM = [[0.2, -0.5, 0.9, 0.1], [-0.7, 0.4, 0.3, -0.2]]


def mean(vs):
    return sum(vs) * (1.0 / len(vs))


def ce(w, x, y):
    logits = model(w, x) + [w[0][0] * x[0]]
    return fg.nn.cross_entropy([logits], [y])


# -------------------------------------------------------------- the map node


def test_a_batch_is_one_vmap_node_whose_value_holds_every_output():
    xs, ys = data(40)
    seen = {}

    def f(w):
        outs = fg.vmap(trans, in_axes=(None, 0, 0), backend="python")(w, xs, ys)
        seen["nodes"] = fg.toposort(mean(outs))
        return mean(outs)

    fg.grad(f)(W3)
    maps = [n for n in seen["nodes"] if n.op == "vmap"]
    assert len(maps) == 1
    m = maps[0]
    assert isinstance(m.value, fb.Batch) and m.value.size == 40 and m.value.backend == "python"
    assert list(m.value) == [trans(W3, x, y) for x, y in zip(xs, ys)]
    # its parents: the 3 broadcast weights, then every example's 3 features and label
    assert len(m.parents) == 3 + 40 * 3 + 40
    assert "Batch(trans, 40 examples, python)" == repr(m.value)


def test_the_jit_graph_does_not_grow_with_the_batch_beyond_one_pick_per_output():
    nodes, chars = {}, {}
    for n in (20, 400):
        xs, ys = data(n, seed=n)
        step = fg.jit(fg.value_and_grad(lambda w, xs, ys: mean(fg.vmap(ce, in_axes=(None, 0, 0))(w, xs, ys))))
        step(WM, xs, ys)
        src = step.source(WM, xs, ys)
        nodes[n], chars[n] = step.cache_info()[0]["nodes"], len(src)
        assert "tanh" not in src  # the body is not in the graph, only the map's call
    # per extra example, forward and backward: its picks and its share of the
    # mean, 6 nodes, folded into expressions of about 10 characters in all
    assert nodes[400] - nodes[20] == 6 * 380
    assert chars[400] - chars[20] <= 16 * 380


def test_vmap_on_floats_returns_floats_and_makes_no_node():
    xs, ys = data(9)
    out = fg.vmap(trans, in_axes=(None, 0, 0))(W3, xs, ys)
    assert all(type(v) is float for v in out)
    assert out == [trans(W3, x, y) for x, y in zip(xs, ys)]


# ---------------------------------------------------------- every derivative


def loop_and_map(f, xs, ys, backend="python"):
    loop = lambda w: mean([f(w, x, y) for x, y in zip(xs, ys)])  # noqa: E731
    vm = lambda w: mean(fg.vmap(f, in_axes=(None, 0, 0), backend=backend)(w, xs, ys))  # noqa: E731
    return loop, vm


@pytest.mark.parametrize("f", [arith, trans], ids=["arith", "trans"])
def test_every_transform_of_a_vmap_equals_the_same_transform_of_the_loop(f):
    xs, ys = data(15, seed=3)
    loop, vm = loop_and_map(f, xs, ys)
    (v1, g1), (v2, g2) = fg.value_and_grad(vm)(W3), fg.value_and_grad(loop)(W3)
    # a weight used twice in an example: its two contributions are added
    # inside the example, and the loop adds them in the whole graph's order
    assert v1 == v2 and g1 == pytest.approx(g2, rel=1e-14, abs=1e-16)
    assert fg.jit(fg.grad(vm))(W3) == g1
    t = [0.5, -1.0, 2.0]
    assert fg.jvp(vm, (W3,), (t,))[1] == pytest.approx(fg.jvp(loop, (W3,), (t,))[1], rel=1e-13, abs=1e-15)
    lin = fg.linearize(vm, W3)
    assert lin[1](t) == pytest.approx(fg.jvp(loop, (W3,), (t,))[1], rel=1e-13, abs=1e-15)
    assert fg.jacfwd(vm)(W3) == pytest.approx(fg.grad(loop)(W3), rel=1e-13, abs=1e-15)
    h1, h2 = fg.hessian(vm)(W3), fg.hessian(loop)(W3)
    h3 = fg.jacobian(fg.grad(vm))(W3)  # reverse over reverse
    assert len(h1) == len(h2) == len(h3) == 3
    for r1, r2, r3 in zip(h1, h2, h3):
        assert r1 == pytest.approx(r2, rel=1e-12, abs=1e-14)
        assert r3 == pytest.approx(r2, rel=1e-12, abs=1e-14)
    def third(fn):  # d/dw of d/dw1 of d/dw0: reverse thrice
        return fg.grad(lambda w: fg.grad(lambda u: fg.grad(fn)(u)[0])(w)[1])(W3)

    g3, g3_loop = third(vm), third(loop)
    assert g3 == pytest.approx(g3_loop, rel=1e-11, abs=1e-13)


def test_gradients_with_respect_to_the_batched_inputs_too():
    xs, ys = data(7, seed=4)

    def vm(w, xs):
        return mean(fg.vmap(trans, in_axes=(None, 0, 0), backend="python")(w, xs, ys))

    def loop(w, xs):
        return mean([trans(w, x, y) for x, y in zip(xs, ys)])

    gw, gx = fg.grad(vm, argnums=(0, 1))(W3, xs)
    lw, lx = fg.grad(loop, argnums=(0, 1))(W3, xs)
    assert gw == lw and gx == lx
    assert fg.grad(vm, argnums=1)(W3, xs) == lx  # the broadcast weights need no cotangent here


def test_per_example_gradients_jit_and_nested_vmap():
    xs, ys = data(11, seed=5)
    per = fg.vmap(fg.grad(ce), in_axes=(None, 0, 0))(WM, xs, ys)
    assert per == [fg.grad(ce)(WM, x, y) for x, y in zip(xs, ys)]
    jper = fg.jit(fg.vmap(fg.grad(ce), in_axes=(None, 0, 0)))(WM, xs, ys)
    assert jper == per
    # vmap of vmap: a batch of batches, and its gradient
    outer = fg.vmap(fg.vmap(trans, in_axes=(None, 0, 0)), in_axes=(None, 0, 0))
    xss, yss = [xs[:4], xs[4:8]], [ys[:4], ys[4:8]]
    assert outer(W3, xss, yss) == [[trans(W3, x, y) for x, y in zip(a, b)] for a, b in zip(xss, yss)]
    g = fg.grad(lambda w: sum(sum(r) for r in outer(w, xss, yss)))(W3)
    want = fg.grad(lambda w: sum(sum(trans(w, x, y) for x, y in zip(a, b)) for a, b in zip(xss, yss)))(W3)
    assert g == pytest.approx(want, rel=1e-13)


def test_debug_nans_names_the_op_inside_a_vmap_even_under_grad():
    xs = [[1.0, 2.0, 0.5], [-5.0, 1.0, 0.0]]
    f = lambda w, x, y: fg.sqrt(w[0] * x[0])  # noqa: E731
    with pytest.raises(FloatingPointError, match="sqrt"):
        with fg.debug_nans():
            fg.grad(lambda w: sum(fg.vmap(f, in_axes=(None, 0, 0))(w, xs, [0, 1])))(W3)


def test_vmap_in_threads_gives_each_thread_its_own_answer():
    xs, ys = data(30, seed=6)
    want = fg.grad(loop_and_map(trans, xs, ys)[0])(W3)
    vm = loop_and_map(trans, xs, ys)[1]
    got, errors = [], []

    def run():
        try:
            for _ in range(5):
                got.append(fg.grad(vm)(W3))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=run) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(got) == 20 and all(g == want for g in got)


# ----------------------------------------------------------- the NumPy replay


def test_numpy_replay_is_bit_identical_for_arithmetic_and_selections():
    require("numpy", 'pip install "fungrad[fast]"')
    rng = random.Random(7)
    xs = [[rng.choice([0.0, -0.0, 1.5, -2.25, 1e-310, 3.0, -7.0, 1e300]) for _ in range(3)] for _ in range(300)]
    ys = [rng.choice([0.0, -1.0, 2.0]) for _ in range(300)]
    py = fg.vmap(arith, in_axes=(None, 0, 0), backend="python")(W3, xs, ys)
    npy = fg.vmap(arith, in_axes=(None, 0, 0), backend="numpy")(W3, xs, ys)
    assert all(type(v) is float for v in npy)
    assert [struct.pack("<d", v) for v in npy] == [struct.pack("<d", v) for v in py]
    # per-example gradients: their rules are arithmetic and selections too
    gp = fg.vmap(fg.grad(arith), in_axes=(None, 0, 0), backend="python")(W3, xs, ys)
    gn = fg.vmap(fg.grad(arith), in_axes=(None, 0, 0), backend="numpy")(W3, xs, ys)
    assert [struct.pack("<3d", *g) for g in gn] == [struct.pack("<3d", *g) for g in gp]


@pytest.mark.slow
def test_numpy_replay_of_transcendental_functions_is_within_4_ulp():
    require("numpy", 'pip install "fungrad[fast]"')
    xs, ys = data(500, seed=8)
    py = fg.vmap(trans, in_axes=(None, 0, 0), backend="python")(W3, xs, ys)
    npy = fg.vmap(trans, in_axes=(None, 0, 0), backend="numpy")(W3, xs, ys)
    assert max(ulps(a, b) for a, b in zip(npy, py)) <= 4
    gp = fg.vmap(fg.grad(trans), in_axes=(None, 0, 0), backend="python")(W3, xs, ys)
    gn = fg.vmap(fg.grad(trans), in_axes=(None, 0, 0), backend="numpy")(W3, xs, ys)
    worst = max(ulps(a, b) for u, v in zip(gn, gp) for a, b in zip(u, v))
    # a derivative composes a few such functions: each may be off by a few ulp
    assert worst <= 16


@pytest.mark.slow
def test_numpy_replay_sums_over_the_batch_within_a_stated_tolerance():
    require("numpy", 'pip install "fungrad[fast]"')
    xs, ys = data(1000, seed=9)
    loop, vm_np = loop_and_map(ce, xs, ys, backend="numpy")
    _, vm_py = loop_and_map(ce, xs, ys, backend="python")
    v_np, g_np = fg.value_and_grad(vm_np)(WM)
    v_py, g_py = fg.value_and_grad(vm_py)(WM)
    assert v_py == fg.value_and_grad(loop)(WM)[0]
    # the sums over the batch may run in another order (pairwise): each
    # gradient agrees to 1e-12 of the sum of its terms' magnitudes
    per = fg.vmap(fg.grad(ce), in_axes=(None, 0, 0), backend="python")(WM, xs, ys)
    scale = [[sum(abs(p[j][i]) for p in per) / len(per) for i in range(4)] for j in range(2)]
    for j in range(2):
        for i in range(4):
            assert abs(g_np[j][i] - g_py[j][i]) <= 1e-12 * scale[j][i] + 1e-300
    assert abs(v_np - v_py) <= 1e-12 * abs(v_py)


def test_the_backend_is_chosen_by_batch_size_and_can_be_forced():
    np = require("numpy", 'pip install "fungrad[fast]"')
    seen = {}

    def f(w, xs, ys, backend=None):
        outs = fg.vmap(trans, in_axes=(None, 0, 0), backend=backend)(w, xs, ys)
        seen[len(xs)] = [n for n in fg.toposort(outs[0]) if n.op == "vmap"][0].value.backend
        return mean(outs)

    small, big = data(fb.NUMPY_FROM - 1), data(fb.NUMPY_FROM)
    fg.grad(f)(W3, *small)
    fg.grad(f)(W3, *big)
    assert seen == {fb.NUMPY_FROM - 1: "python", fb.NUMPY_FROM: "numpy"}
    fg.grad(lambda w: f(w, *big, backend="python"))(W3)
    assert seen[fb.NUMPY_FROM] == "python"
    # arrays with a leading batch axis go in as they are
    out = fg.vmap(trans, in_axes=(None, 0, 0), backend="numpy")(W3, np.array(big[0]), np.array(big[1]))
    assert len(out) == fb.NUMPY_FROM


def test_backend_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="backend must be None"):
        fg.vmap(trans, backend="gpu")
    sq = fg.primitive("sq_for_vmap_backend", lambda x: x * x, (lambda g, ans, x: 2.0 * x * g,))
    with pytest.raises(TypeError, match="backend='numpy' cannot replay <lambda>: the op 'sq_for_vmap_backend' has no array form"):
        fg.vmap(lambda w, x: sq(w * x), in_axes=(None, 0), backend="numpy")(2.0, [1.0, 2.0])
    # automatic: the body has an op NumPy cannot run, so Python replays it
    out = fg.vmap(lambda w, x: sq(w * x), in_axes=(None, 0))(2.0, [float(i) for i in range(100)])
    assert out == [(2.0 * i) ** 2 for i in range(100)]


def test_jit_of_the_numpy_replay_equals_its_eager_run():
    require("numpy", 'pip install "fungrad[fast]"')
    xs, ys = data(200, seed=10)
    step = fg.value_and_grad(lambda w, xs, ys: mean(fg.vmap(ce, in_axes=(None, 0, 0), backend="numpy")(w, xs, ys)))
    eager = step(WM, xs, ys)
    jitted = fg.jit(step)
    assert jitted(WM, xs, ys) == eager
    assert jitted(WM, xs, ys) == eager  # the replay, not the trace
    xs2, ys2 = data(200, seed=11)
    assert jitted(WM, xs2, ys2) == step(WM, xs2, ys2)


def test_drawings_show_the_body_once():
    xs, ys = data(25, seed=12)
    out = fg.vmap(trans, in_axes=(None, 0, 0))([fg.var(v) for v in W3], xs, ys)
    dot = fg.viz.to_dot(mean(out))
    assert dot.count("vmap trans ×25") == 1 and dot.count("subgraph cluster_") == 1
    assert 'label="body of vmap trans, traced once"' in dot
    assert dot.count("label=tanh") == 1 and dot.count("label=sigmoid") == 1  # the body's ops, once
    assert 'label="[24]"' in dot and 'label="[25]"' not in dot  # the picks of the 25 examples' outputs
    g = fg.to_networkx(mean(out))
    (m,) = [n for n, d in g.nodes(data=True) if d["op"] == "vmap"]
    body = g.nodes[m]["body"]
    ops = sorted(d["op"] for _, d in body.nodes(data=True) if d["op"])
    assert ops.count("tanh") == 1 and ops.count("exp") == 1 and ops.count("sigmoid") == 1
    assert sorted(d["input"] for _, d in body.nodes(data=True) if "input" in d) == list(range(7))
    assert [d["output"] for _, d in body.nodes(data=True) if "output" in d] == [0]


def test_drawings_number_two_vmapped_functions_of_one_name():
    double, triple = fg.vmap(lambda x: x * 2.0), fg.vmap(lambda x: x * 3.0)
    a = fg.var(1.0)
    dot = fg.viz.to_dot(sum(double([a, a])) + sum(triple([a, a, a])) + sum(double([a])))
    # each vmap node names the box of its own body: the two lambdas are told apart
    assert dot.count('"vmap <lambda> #1 ×2"') == 1 and dot.count('"vmap <lambda> #1 ×1"') == 1
    assert dot.count('"vmap <lambda> #2 ×3"') == 1
    assert dot.count("subgraph cluster_") == 2
    boxes = dot.split("subgraph cluster_")[1:]
    assert 'label="body of vmap <lambda> #1, traced once"' in boxes[0] and "data 2.0000" in boxes[0]
    assert 'label="body of vmap <lambda> #2, traced once"' in boxes[1] and "data 3.0000" in boxes[1]
    # one function of a name keeps the plain name
    assert "#" not in fg.viz.to_dot(sum(double([a, a])))


@pytest.mark.slow
def test_new_functions_leave_no_trace_in_the_primitive_table_and_their_maps_are_freed():
    import gc
    import weakref

    before = set(fg.PRIMITIVES)
    refs = []
    for k in range(30):
        f = lambda w, x, k=k: fg.tanh(w * x + k)  # noqa: E731 - a new function each time
        fg.grad(lambda w: sum(fg.vmap(f, in_axes=(None, 0))(w, [1.0, 2.0, 3.0])))(0.5)
        refs.append(weakref.ref(next(iter(fb._caches[f].bodies.values()))[0]))
        del f
    gc.collect()
    assert set(fg.PRIMITIVES) == before
    assert all(r() is None for r in refs)


def test_jit_keys_rows_of_floats_and_rows_of_ints_alike():
    calls = []

    def f(xs):
        calls.append(1)
        return sum(fg.vmap(lambda x: x[0] * x[1])(xs))

    jf = fg.jit(f)
    assert jf([[1.0, 2.0], [3.0, 4.0]]) == 14.0
    assert jf([[1, 2], [3, 4]]) == 14.0  # the same structure: the same trace
    assert jf([[1.0, 2], [3, 4.5]]) == 15.5
    assert len(calls) == 1


# ------------------------------------------------- found by probing, now guarded


def test_numpy_forward_mode_through_selections_equals_the_loop():
    # the array code freed a register twice when a node had two parents that were one value
    require("numpy", 'pip install "fungrad[fast]"')
    xs = [0.1 * i - 3.0 for i in range(64)]
    t = [1.0] * 64
    vm = lambda w, xs: sum(fg.vmap(fg.maximum, (None, 0), backend="numpy")(w, xs))  # noqa: E731
    loop = lambda w, xs: sum(fg.maximum(w, x) for x in xs)  # noqa: E731
    assert fg.jvp(vm, (0.5, xs), (1.0, t))[1] == fg.jvp(loop, (0.5, xs), (1.0, t))[1] == 64.0
    sq = lambda w, xs: sum(fg.vmap(lambda w, x: fg.maximum(w, x) ** 2, (None, 0), backend="numpy")(w, xs))  # noqa: E731
    sq_loop = lambda w, xs: sum(fg.maximum(w, x) ** 2 for x in xs)  # noqa: E731
    assert fg.hvp(sq, (0.5, xs), (1.0, t)) == pytest.approx(fg.hvp(sq_loop, (0.5, xs), (1.0, t)), rel=1e-13)


def test_a_body_that_reads_a_node_of_the_transform_around_it_keeps_its_derivative():
    xs = [1.0, 2.0, 3.0]
    assert fg.grad(lambda w: sum(fg.vmap(lambda x: w * x)(xs)))(2.0) == 6.0
    assert fg.jvp(lambda w: sum(fg.vmap(lambda x: w * x)(xs)), (2.0,), (1.0,)) == (12.0, 6.0)
    j = fg.jit(lambda w, xs: sum(fg.vmap(lambda x: w * x)(xs)))
    assert (j(2.0, xs), j(5.0, xs)) == (12.0, 30.0)
    outer = fg.vmap(lambda a, bs: fg.vmap(lambda b: a * b)(bs), in_axes=(0, None))
    assert outer([1.0, 2.0], [3.0, 4.0]) == [[3.0, 4.0], [6.0, 8.0]]

    box = [1.0]

    def body(x):
        return box[0] * x

    vb = fg.vmap(body)
    assert vb(xs) == [1.0, 2.0, 3.0]  # traced while box held a number

    def loss(w):
        box[0] = w  # now it holds a node of grad: the cached trace must not serve
        return sum(vb(xs))

    assert fg.grad(loss)(2.0) == 6.0


def test_which_leaves_are_numbers_is_part_of_the_trace_key():
    def f(w, x):
        return x * 10.0 if isinstance(w[0], str) else x * w[0]

    vf = fg.vmap(f, (None, 0))
    assert vf([2.0, "a"], [1.0]) == [2.0]
    assert vf(["a", 5.0], [1.0]) == [10.0]
    g = fg.vmap(lambda p: p[0] * 3.0 if isinstance(p[1], str) else p[1] * 30.0)
    assert g([(3.0, "k")]) == [9.0] and g([("k", 3.0)]) == [90.0]


def test_broadcast_ints_become_floats_and_huge_ones_are_a_clear_error():
    out = fg.vmap(lambda w, x: w[0] * w[1] + x, (None, 0))([2**53 + 1, 3], [0.0])
    assert out == [float(2**53 + 1) * 3.0] and type(out[0]) is float
    with pytest.raises(ValueError, match="broadcast leaf 0.*too large for a float"):
        fg.vmap(lambda w, x: w[0] * x, (None, 0))([10**400], [0.0])
    require("numpy", 'pip install "fungrad[fast]"')
    assert fg.vmap(lambda w, x: w[0] ** w[1] + x, (None, 0), backend="numpy")([2, -1], [0.0] * 3) == [0.5] * 3


def test_numpy_replay_of_a_square_root_power_keeps_pow_at_its_edges():
    require("numpy", 'pip install "fungrad[fast]"')
    xs = [-math.inf, -0.0, 0.0, 4.0, -4.0, math.inf, math.nan]
    for e in (0.5, 2.0, -1.0, 1.0, 0.0, 3.0, -0.5):
        py = fg.vmap(lambda x: x ** e, backend="python")(xs)
        npy = fg.vmap(lambda x: x ** e, backend="numpy")(xs)
        # equal to the bit, signed zeros included; a nan is a nan, whatever its sign bit
        assert [v if v == v else "nan" for v in map(bits, npy)] == [v if v == v else "nan" for v in map(bits, py)], e


def test_gradients_give_a_vmap_node_one_derivative_per_output_and_drawings_show_them():
    w = fg.var(0.5, name="w")
    outs = fg.vmap(lambda w, x: fg.tanh(w * x), in_axes=(None, 0))(w, [1.0, 2.0, 3.0])
    y = outs[0] + 2.0 * outs[2]
    g = fg.gradients(y)
    (m,) = [n for n in g if n.op == "vmap"]
    assert g[m] == [1.0, 0.0, 2.0]
    assert g[w] == fg.grad(lambda w: fg.tanh(w) + 2.0 * fg.tanh(3.0 * w))(0.5)
    dot = fg.viz.to_dot(y, g)
    assert "batch of 3" in dot and f"grad {g[w]:.4f}" in dot


def test_debug_nans_checks_a_vmap_pulled_back_inside_it():
    f = lambda w: sum(fg.vmap(lambda w, x: fg.sqrt(w * x), in_axes=(None, 0))(w, [1.0, -2.0]))  # noqa: E731
    _, pull = fg.vjp(f, 0.5)
    with pytest.raises(FloatingPointError, match="sqrt"):
        with fg.debug_nans():
            pull(1.0)


@pytest.mark.slow  # about 0.5 s: six threads each map 3,000 examples, switching every microsecond
def test_threads_building_large_batches_at_once_agree_on_every_index():
    import sys

    xs = [float(i % 7) for i in range(3000)]
    want = fg.grad(lambda w: sum(w * x * (i % 3) for i, x in enumerate(xs)))(1.5)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    results, errors = [], []

    def run(k):
        try:
            f = lambda w, x, c: w * x * c  # noqa: E731 - a function of its own per thread
            cs = [float(i % 3) for i in range(3000)]
            results.append(fg.grad(lambda w: sum(fg.vmap(f, (None, 0, 0), backend="python")(w, xs, cs)))(1.5))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    try:
        ts = [threading.Thread(target=run, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors and results == [want] * 6
    from fungrad import expr

    assert all(c.value == float(i) for i, c in expr._INDEX.items())


@pytest.mark.slow  # about 0.6 s: a 64-32-10 network over 60 digits, traced, exported and differentiated
def test_the_exported_digits_model_differentiates_in_torch_like_fungrad_on_every_device(torch):
    # on the CPU, and on a CUDA device where there is one (the loop adds it)
    xs, ys = fg.data.digits()
    xs, ys = xs[:60], ys[:60]
    model = fg.nn.MLP.init(64, [32, 10], seed=3, final_activation="linear")
    per_example = lambda m, x, y: fg.nn.cross_entropy([m(x)], [y])  # noqa: E731
    g = fg.export(per_example, model, xs[0], ys[0], xp=torch)
    want = fg.grad(lambda m: mean(fg.vmap(per_example, in_axes=(None, 0, 0))(m, xs, ys)))(model)
    leaves, td = fg.tree.flatten(model)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        params = [torch.tensor(v, dtype=torch.float64, device=device, requires_grad=True) for v in leaves]
        X = torch.tensor(xs, dtype=torch.float64, device=device)
        Y = torch.tensor(ys, device=device)
        total = g(fg.tree.unflatten(td, params), [X[:, i] for i in range(64)], Y).mean()
        total.backward()
        got = [p.grad.item() for p in params]
        worst = max(abs(a - b) for a, b in zip(got, fg.tree.leaves(want)))
        assert worst < 1e-13, (device, worst)  # float64, sums in another order


def test_the_derivative_is_the_one_of_the_trace_the_values_come_from():
    # the closure changes after the trace: values and derivatives both keep the trace
    scale = [1.0]

    def f(x):
        return scale[0] * x * x

    vf = fg.vmap(f)
    vf([1.0, 2.0, 3.0])
    scale[0] = 3.0
    loss = lambda w: sum(vf([w * x for x in [1.0, 2.0, 3.0]]))  # noqa: E731
    assert loss(1.0) == 14.0
    assert fg.grad(loss)(1.0) == 28.0 and fg.jvp(loss, (1.0,), (1.0,)) == (14.0, 28.0)
    assert fg.hessian(loss)(1.0) == 28.0


NESTED = [[0.5]]


def test_a_node_held_deeper_in_a_closure_or_a_global_is_seen():
    vf = fg.vmap(lambda x: NESTED[0][0] * x)
    vf([1.0, 2.0, 3.0])

    def loss(w):
        NESTED[0][0] = w
        return sum(vf([1.0, 2.0, 3.0]))

    assert fg.grad(loss)(2.0) == 6.0

    class Model:
        w = 1.0

    m = Model()
    vg = fg.vmap(lambda x: m.w * x)
    vg([1.0, 2.0])

    def loss2(w):
        m.w = w
        return sum(vg([1.0, 2.0]))

    assert fg.grad(loss2)(3.0) == 3.0


def test_a_node_reached_after_the_trace_through_a_helper_a_method_or_a_global_keeps_its_derivative():
    # traced once outside any transform (an evaluation before training), then
    # called inside grad where the same function now reads the grad's node
    box = [1.0]

    def helper(x):
        return box[0] * x

    class Scaled:
        s = 1.0

        def __call__(self, x):
            return self.s * x

    m = Scaled()
    by_helper, by_method = fg.vmap(lambda x: helper(x)), fg.vmap(m)
    xs = [1.0, 2.0, 3.0]
    assert by_helper(xs) == by_method(xs) == xs  # traced with the numbers 1.0

    def loss_helper(w):
        box[0] = w
        return sum(by_helper(xs))

    def loss_method(w):
        m.s = w
        return sum(by_method(xs))

    for loss in (loss_helper, loss_method):
        assert fg.value_and_grad(loss)(2.0) == (12.0, 6.0)
        assert fg.jit(fg.value_and_grad(loss))(2.0) == (12.0, 6.0)
        assert fg.jvp(loss, (2.0,), (1.0,)) == (12.0, 6.0)


def test_a_node_of_the_running_transform_returned_as_it_is_keeps_its_derivative():
    # no op reads the node (it is returned unchanged, through a bound method),
    # so only the outputs of the trace can show that it is not the body's own
    class M:
        def __init__(self, w):
            self.w = w

        def f(self, x):
            return [self.w, 2.0 * x]

    F = lambda w: sum(sum(fg.vmap(M(w).f)([1.0, 2.0, 3.0]), []))  # noqa: E731  # 3 w + 12
    assert fg.value_and_grad(F)(3.0) == (21.0, 3.0)
    assert fg.jvp(F, (3.0,), (1.0,)) == (21.0, 3.0)
    J = fg.jit(F)
    assert (J(3.0), J(5.0)) == (21.0, 27.0)
    m = M(1.0)
    vm = fg.vmap(m.f)
    assert vm([1.0]) == [[1.0, 2.0]]  # traced outside any transform first

    def G(w):
        m.w = w
        return sum(sum(vm([1.0, 2.0, 3.0]), []))

    assert fg.value_and_grad(G)(3.0) == (21.0, 3.0)
    assert fg.vmap(lambda x: [x, 1.0])([4.0, 5.0]) == [[4.0, 1.0], [5.0, 1.0]]  # its own input: a map as before


def test_a_map_of_constants_under_jit_is_computed_by_the_backend_asked_for():
    xs = [0.001 * k for k in range(300)]
    f = lambda a, x: fg.tanh(a * x) + fg.exp(x)  # noqa: E731
    j = fg.jit(lambda a: [a + v for v in fg.vmap(f, (None, 0), backend="python")(fg.const(0.3), xs)])
    assert j(0.0) == [f(0.3, x) + 0.0 for x in xs]  # bit for bit, as the Python replay promises


def test_backend_numpy_refused_says_which_op_stops_it():
    require("numpy", 'pip install "fungrad[fast]"')
    inner = fg.vmap(lambda a, b: a * b, in_axes=(None, 0))
    outer = fg.vmap(lambda a, bs: sum(inner(a, bs)), in_axes=(0, None), backend="numpy")
    with pytest.raises(TypeError, match="cannot replay <lambda>: the op 'vmap' has no array form"):
        outer([1.0, 2.0], [3.0, 4.0])
    assert fg.vmap(lambda a, bs: sum(inner(a, bs)), in_axes=(0, None))([1.0, 2.0], [3.0, 4.0]) == [7.0, 14.0]


def test_the_traced_bodies_of_a_function_are_bounded_as_jit_replays_are():
    f = lambda x, tag: x * 2.0 + len(tag)  # noqa: E731
    v = fg.vmap(f, in_axes=(0, None))
    for i in range(fb.CACHE_LIMIT + 40):
        tag = "e" * (i % 7) + str(i)
        assert v([0.5, 0.25], tag) == [1.0 + len(tag), 0.5 + len(tag)]
    assert len(fb._caches[f].bodies) == fb.CACHE_LIMIT
    assert v([1.0], "0") == [3.0]  # an evicted body is traced again


def test_a_broadcast_array_is_refused_not_taken_as_a_static_value():
    torch = require("torch", "pip install torch")
    t = torch.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match=r"vmap: an argument holds a torch.Tensor of shape \(2,\)"):
        fg.vmap(lambda x, t: x * float(t.sum()), in_axes=(0, None))([1.0], t)
    # along the batch axis an array is a batch of numbers
    assert fg.vmap(lambda x: x * 2.0)(torch.tensor([1.0, 2.0])) == [2.0, 4.0]


def test_nodes_in_the_output_structure_are_an_error_not_the_trace_for_every_example():
    import attrs

    @attrs.frozen
    class Tagged:
        a: float
        tag: object = fg.tree.static(default=None)

    with pytest.raises(TypeError, match="vmap: the output of <lambda> has a traced node in its structure"):
        fg.vmap(lambda x: Tagged(x, x * 2.0))([1.0, 2.0])
    with pytest.raises(TypeError, match="traced node in its structure"):
        fg.vmap(lambda x: {x: 1.0})([1.0, 2.0])
    c = fg.var(3.0)  # a constant stays: it is the same for every example
    assert fg.vmap(lambda x: Tagged(x, c))([1.0, 2.0]) == [Tagged(1.0, c), Tagged(2.0, c)]
