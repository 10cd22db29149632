"""fg.jit: replays equal eager results bit for bit, branches follow new values, the cache keys on structure."""

from __future__ import annotations

import gc
import importlib
import math
import random
import sys
import threading
import weakref

import attrs
import pytest
from conftest import require

import fungrad as fg

jit_module = importlib.import_module("fungrad.jit")  # `fungrad.jit` the attribute is the function

UNARY = ["neg", "exp", "log", "tanh", "relu", "sigmoid", "sqrt", "sin", "cos", "abs", "sign", "step"]
BINARY = ["add", "sub", "mul", "div", "pow"]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -3.0, 710.0, -1000.0, 1e-300, math.inf, -math.inf, math.nan]


def same(a, b) -> bool:
    """Bit-level equality of floats: nan is nan, and signed zeros must agree."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return type(a) is type(b) and a == b


def assert_same(got, want) -> None:
    gl, gtd = fg.tree.flatten(got)
    wl, wtd = fg.tree.flatten(want)
    assert gtd == wtd, (gtd, wtd)
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(gl, wl)) if not same(g, w)]
    assert not bad, f"{len(bad)} of {len(gl)} leaves differ, first: {bad[:3]}"


# --------------------------------------------------------------------------
# random expressions over every primitive


SMOOTH = ["neg", "exp", "tanh", "sigmoid", "sin", "cos", "log", "sqrt"]


def random_program(
    rng: random.Random, n_in: int, n_ops: int, special: float = 0.5, unary: list[str] = UNARY, where: float = 0.1
) -> list[tuple[str, tuple]]:
    """A straight-line program: each op reads earlier values (mostly recent ones) or constants.

    ``special`` is the chance that a constant is an edge value (0, -0, inf, nan, ...).
    """
    prog = []
    n = n_in
    for _ in range(n_ops):
        r = rng.random()
        if r < 0.45:
            op, k = rng.choice(BINARY), 2
        elif r < 1.0 - where:
            op, k = rng.choice(unary), 1
        else:
            op, k = "where", 3

        def arg():
            if rng.random() < 0.15:
                return ("c", rng.choice(SPECIAL) if rng.random() < special else rng.uniform(-3, 3))
            lo = max(0, n - 6) if rng.random() < 0.8 else 0
            return rng.randrange(lo, n)

        prog.append((op, tuple(arg() for _ in range(k))))
        n += 1
    return prog


def run_program(prog, xs):
    vals = list(xs)
    for op, args in prog:
        a = [x[1] if isinstance(x, tuple) else vals[x] for x in args]
        vals.append(getattr(fg, op)(*a))
    return vals


def program_fn(prog):
    def f(xs):
        vals = run_program(prog, xs)
        return {"last": vals[-1], "some": [vals[len(xs)], vals[-2]]}

    return f


def input_sets(rng: random.Random, n_in: int, k: int, special: float = 0.3) -> list[list[float]]:
    sets = [[rng.uniform(-2, 2) for _ in range(n_in)]]
    for _ in range(k):
        sets.append([rng.choice(SPECIAL) if rng.random() < special else rng.uniform(-3, 3) for _ in range(n_in)])
    return sets


@pytest.mark.parametrize("seed", range(40))
def test_random_expressions_equal_eager_exactly(seed):
    rng = random.Random(seed)
    prog = random_program(rng, 3, 30)
    f = program_fn(prog)
    jf = fg.jit(f)
    for xs in input_sets(rng, 3, 6):
        want = f(xs)  # eager, on floats
        assert_same(jf(xs), want)
        # eager on nodes gives the same values too
        on_nodes = fg.tree.map(lambda v: v.value if fg.is_node(v) else v, f([fg.var(x) for x in xs]))
        assert_same(on_nodes, want)
    assert jf.cache_size() == 1


@pytest.mark.parametrize("seed", range(40))
def test_random_expressions_value_and_grad_equal_eager_exactly(seed):
    # mostly ordinary numbers, so that most gradients are finite and non-zero
    rng = random.Random(1000 + seed)
    prog = random_program(rng, 3, 12, special=0.1, unary=UNARY + SMOOTH)

    def loss(xs):
        vals = run_program(prog, xs)
        return vals[-1] + vals[-2] * vals[3]

    vg = fg.value_and_grad(loss)
    jvg = fg.jit(vg)
    for xs in input_sets(rng, 3, 6, special=0.1):
        assert_same(jvg(xs), vg(xs))


@pytest.mark.parametrize("seed", range(30))
def test_nested_grads_under_jit_equal_eager(seed):
    rng = random.Random(2000 + seed)
    prog = random_program(rng, 1, 8, special=0.05, unary=SMOOTH, where=0.03)

    def f(x):
        return run_program(prog, [x])[-1]

    d2 = fg.grad(fg.grad(f))
    jd2 = fg.jit(d2)
    for xs in input_sets(rng, 1, 5, special=0.05):
        assert_same(jd2(xs[0]), d2(xs[0]))


def test_third_derivative_and_hessian_under_jit():
    f = lambda x: fg.sin(x) * x**3 + fg.exp(x * 0.5)  # noqa: E731
    d3 = fg.grad(fg.grad(fg.grad(f)))
    jd3 = fg.jit(d3)
    h = fg.hessian(lambda v: v[0] ** 2 * fg.tanh(v[1]) + v[0] * v[1])
    jh = fg.jit(h)
    for x in [0.3, -1.2, 2.0]:
        assert same(jd3(x), d3(x))
        assert_same(jh([x, 1.0 - x]), h([x, 1.0 - x]))


def test_grad_inside_jitted_function():
    def f(p):
        g = fg.grad(lambda w: fg.tanh(w * p["x"]) ** 2)(p["w"])
        return p["w"] - 0.1 * g + fg.grad(fg.sin)(p["x"])

    jf = fg.jit(f)
    for w, x in [(0.5, 2.0), (-1.0, 0.25), (3.0, -2.0)]:
        assert same(jf({"w": w, "x": x}), f({"w": w, "x": x}))


# --------------------------------------------------------------------------
# MLP losses, value_and_grad under jit


def init_mlp(sizes, seed):
    rng = random.Random(seed)
    return [
        [{"w": [rng.uniform(-1, 1) for _ in range(sizes[i])], "b": rng.uniform(-0.1, 0.1)} for _ in range(sizes[i + 1])]
        for i in range(len(sizes) - 1)
    ]


def mlp(params, x, act):
    for i, layer in enumerate(params):
        outs = []
        for n in layer:
            a = sum((w * xi for w, xi in zip(n["w"], x)), n["b"])
            outs.append(act(a) if i < len(params) - 1 else a)
        x = outs
    return x[0]


def max_margin_loss(params, xs, ys):
    scores = [mlp(params, x, fg.relu) for x in xs]
    losses = [fg.relu(1 + -y * s) for y, s in zip(ys, scores)]
    reg = 1e-4 * sum(p * p for p in fg.tree.leaves(params))
    return sum(losses) * (1.0 / len(losses)) + reg


def mse_loss(params, xs, ys):
    preds = [mlp(params, x, fg.tanh) for x in xs]
    return sum((p - y) ** 2 for p, y in zip(preds, ys)) / len(ys)


@pytest.mark.slow
@pytest.mark.parametrize("loss", [max_margin_loss, mse_loss])
def test_mlp_value_and_grad_under_jit_equal_eager(loss):
    xs, ys = fg.data.make_moons(20, noise=0.1, seed=3)
    vg = fg.value_and_grad(loss)
    step = fg.jit(vg)
    params = init_mlp([2, 8, 8, 1], seed=0)
    for _ in range(4):
        want = vg(params, xs, ys)
        got = step(params, xs, ys)
        assert_same(got, want)
        params = fg.optim.sgd(params, got[1], lr=0.1)
    xs2, ys2 = fg.data.make_moons(20, noise=0.2, seed=4)  # new data, same structure: a replay
    assert_same(step(params, xs2, ys2), vg(params, xs2, ys2))
    assert step.cache_size() == 1


def test_nn_mlp_under_jit_if_available():
    from fungrad import nn
    model = nn.MLP.init(3, [4, 4, 1], seed=0)
    xs, ys = fg.data.tiny()

    def loss(m):
        return nn.mse([m(x) for x in xs], ys)

    vg = fg.value_and_grad(loss)
    assert_same(fg.jit(vg)(model), vg(model))


def test_segments_and_spills_give_the_same_results(monkeypatch):
    # tiny segments force values to cross from one generated function to the next
    monkeypatch.setattr(fg.codegen, "SEGMENT", 7)
    monkeypatch.setattr(fg.codegen, "MAX_DEPTH", 3)
    xs, ys = fg.data.make_moons(10, noise=0.1, seed=5)
    vg = fg.value_and_grad(max_margin_loss)
    params = init_mlp([2, 4, 1], seed=1)
    step = fg.jit(vg)
    assert_same(step(params, xs, ys), vg(params, xs, ys))
    params = init_mlp([2, 4, 1], seed=2)
    assert_same(step(params, xs, ys), vg(params, xs, ys))
    assert "def _s3(" in step.source(params, xs, ys)
    rng = random.Random(7)
    prog = random_program(rng, 3, 60)
    f = program_fn(prog)
    jf = fg.jit(f)
    for v in input_sets(rng, 3, 4):
        assert_same(jf(v), f(v))


# --------------------------------------------------------------------------
# branches decided at replay time; Python control flow raises


@pytest.mark.parametrize(
    "fn",
    [fg.relu, fg.abs, abs, fg.sign, fg.step, lambda x: fg.where(x, x * 2.0, -x * 3.0), lambda x: fg.sqrt(x)],
    ids=["relu", "fg.abs", "abs", "sign", "step", "where", "sqrt"],
)
def test_branch_follows_new_values(fn):
    jf = fg.jit(fn)
    assert jf(1.0) == fn(1.0)  # traced at x = 1
    for x in [-1.0, 0.0, -0.0, 2.5, -7.0, math.nan]:
        assert same(jf(x), fn(x)), x
    jg = fg.jit(fg.grad(fn))
    assert jg(1.0) == fg.grad(fn)(1.0)
    for x in [-1.0, 0.0, 3.0]:
        assert same(jg(x), fg.grad(fn)(x)), x


def test_relu_traced_at_positive_replayed_at_negative():
    jf = fg.jit(lambda x: fg.relu(x) * 3.0 + abs(x))
    assert jf(1.0) == 4.0
    assert jf(-1.0) == 1.0
    assert fg.jit(fg.grad(lambda x: fg.relu(x) * 3.0))(-1.0) == 0.0


@pytest.mark.parametrize(
    "body",
    [
        lambda x: x if x > 0 else -x,
        lambda x: x * 2 if x < 1.0 else x,
        lambda x: x if x >= 0 else -x,
        lambda x: x if x <= 0 else -x,
        lambda x: x if x else -x,
        lambda x: float(x) * 2,
        lambda x: max(x, 0.0),
    ],
    ids=[">", "<", ">=", "<=", "bool", "float", "max"],
)
def test_value_dependent_python_control_flow_raises(body):
    with pytest.raises(TypeError, match="jit") as info:
        fg.jit(body)(1.0)
    assert "fg.where" in str(info.value)
    body(fg.var(1.0))  # eager code may branch on values


def test_control_flow_inside_grad_under_jit_raises():
    with pytest.raises(TypeError, match="jit"):
        fg.jit(fg.grad(lambda x: x * x if x > 0 else -x))(2.0)


def test_control_flow_on_static_leaves_and_outer_constants_is_fine():
    outer = fg.var(3.0)  # made outside: a constant under jit, its value may be read
    f = fg.jit(lambda x, mode: (x * outer if outer > 0 else x) if mode == "scale" else x + 1.0)
    assert f(2.0, "scale") == 6.0
    assert f(2.0, "shift") == 3.0
    assert f.cache_size() == 2


# --------------------------------------------------------------------------
# the cache


def counting(f):
    calls = []

    def g(*args, **kwargs):
        calls.append(1)
        return f(*args, **kwargs)

    return g, calls


def test_no_retrace_for_new_values():
    g, calls = counting(lambda xs: sum(x * x for x in xs))
    jf = fg.jit(g)
    assert jf([1.0, 2.0]) == 5.0
    assert jf([3.0, 4.0]) == 25.0
    assert jf([3, 4]) == 25.0  # ints are numbers too: same structure
    assert jf((1.0, 2.0)) == 5.0  # a tuple is another structure
    assert len(calls) == 2
    assert jf.cache_size() == 2


def test_retrace_when_structure_changes():
    g, calls = counting(lambda d: sum(v for v in fg.tree.leaves(d)))
    jf = fg.jit(g)
    jf([1.0, 2.0])
    jf([1.0, 2.0, 3.0])
    jf({"a": 1.0, "b": 2.0})
    jf({"a": 1.0, "c": 2.0})
    jf({"a": 1.0, "b": [2.0]})
    assert len(calls) == 5
    assert jf({"a": 5.0, "c": 6.0}) == 11.0
    assert jf([4.0, 5.0, 6.0]) == 15.0
    assert len(calls) == 5
    jf.clear_cache()
    jf([1.0, 2.0])
    assert len(calls) == 6


def test_static_non_number_leaves_key_the_cache():
    def f(x, cfg):
        y = x * 2.0 if cfg["op"] == "double" else x + 10.0
        return fg.relu(y) if cfg["relu"] else y

    g, calls = counting(f)
    jf = fg.jit(g)
    assert jf(-1.0, {"op": "double", "relu": True}) == 0.0
    assert jf(-1.0, {"op": "double", "relu": False}) == -2.0
    assert jf(-1.0, {"op": "shift", "relu": False}) == 9.0
    assert jf(-3.0, {"op": "double", "relu": False}) == -6.0
    assert len(calls) == 3


def test_static_argnums_and_kwargs():
    g, calls = counting(lambda x, n, scale=1.0: sum(x**k for k in range(n)) * scale)
    jf = fg.jit(g, static_argnums=1)
    assert jf(2.0, 3) == 7.0
    assert jf(3.0, 3) == 13.0
    assert jf(2.0, 4) == 15.0
    assert jf(2.0, 3, scale=2.0) == 14.0
    assert jf(2.0, 3, scale=3.0) == 21.0
    assert len(calls) == 3
    with pytest.raises(ValueError, match="static_argnums"):
        fg.jit(lambda x: x, static_argnums=2)(1.0)
    with pytest.raises(TypeError, match="static_argnums"):
        fg.jit(lambda x: x, static_argnums="0")


def test_unhashable_static_leaf_is_a_clear_error():
    class Blob:
        __hash__ = None

    with pytest.raises(TypeError, match="argument 1 has a leaf at \\['a'\\]"):
        fg.jit(lambda x, d: x)(1.0, {"a": Blob()})

    import attrs

    @attrs.frozen
    class Cfg:
        w: float
        opts: object = fg.tree.static(default=None)

    with pytest.raises(TypeError, match=r"argument 1 at \['m'\]\[0\] is a Cfg whose static fields \(\{'a': 1\},\) are not hashable"):
        fg.jit(lambda x, d: x * d["m"][0].w)(1.0, {"m": [Cfg(2.0, opts={"a": 1})]})


def test_concurrent_first_calls_trace_once():
    g, calls = counting(lambda xs: sum(fg.tanh(x) for x in xs))
    jf = fg.jit(g)
    xs = [0.1 * i for i in range(200)]
    results = []
    threads = [threading.Thread(target=lambda: results.append(jf(xs))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(set(results)) == 1


# --------------------------------------------------------------------------
# results, constants, composition with grad


def test_outputs_of_every_kind():
    jf = fg.jit(lambda x: {"node": x * 2.0, "input": x, "float": 3.0, "str": "tag", "none": None, "int": 7})
    assert jf(1.5) == {"node": 3.0, "input": 1.5, "float": 3.0, "str": "tag", "none": None, "int": 7}
    assert jf(2.0)["node"] == 4.0
    assert fg.jit(lambda: 1.0)() == 1.0
    assert fg.jit(lambda x: None)(1.0) is None


def test_special_input_values():
    jf = fg.jit(lambda x, y: [x / y, fg.log(x), x**y, fg.exp(y), -x])
    f = lambda x, y: [fg.div(x, y), fg.log(x), fg.pow(x, y), fg.exp(y), -x]  # noqa: E731
    for x, y in [(1.0, 2.0), (0.0, 0.0), (-0.0, -1.0), (math.inf, math.nan), (-8.0, 1 / 3), (0.0, 1000.0)]:
        assert_same(jf(x, y), f(x, y))


def test_closed_over_nodes_and_traced_leaves_are_constants():
    outer = fg.var(2.0)
    jf = fg.jit(lambda x: x * outer + fg.var(5.0) + fg.const(1.0))
    assert jf(1.0) == 8.0
    assert jf(2.0) == 10.0


def test_reading_value_bakes_the_traced_value():
    # documented pitfall: .value cannot be intercepted
    jf = fg.jit(lambda x: x * 0.0 + x.value)
    assert jf(1.0) == 1.0
    assert jf(5.0) == 1.0


def test_jit_inside_grad_runs_eagerly():
    jf = fg.jit(lambda x: fg.tanh(x) * x)
    assert fg.grad(jf)(0.7) == fg.grad(lambda x: fg.tanh(x) * x)(0.7)
    assert fg.grad(fg.grad(jf))(0.7) == fg.grad(fg.grad(lambda x: fg.tanh(x) * x))(0.7)
    assert jf.cache_size() == 0  # never compiled: called on nodes
    outer = fg.jit(lambda x: jf(x) + 1.0)  # jit inside jit: the inner one is traced through
    assert outer(0.7) == fg.tanh(0.7) * 0.7 + 1.0
    assert jf.cache_size() == 0


def test_jit_inside_debug_nans_runs_eagerly():
    jf = fg.jit(lambda x: fg.log(x))
    assert jf(0.0) == -math.inf
    with pytest.raises(FloatingPointError):
        with fg.debug_nans():
            jf(fg.var(0.0))


def test_fg_jit_is_the_function_and_the_module_is_importable():
    assert callable(fg.jit) and fg.jit is jit_module.jit
    assert isinstance(fg.jit(lambda x: x), jit_module.Jitted)
    with pytest.raises(TypeError, match="expected a function"):
        fg.jit(3.0)
    with pytest.raises(ValueError, match="cache_limit"):
        fg.jit(lambda x: x, cache_limit=0)


def test_cache_info_and_source():
    jf = fg.jit(fg.value_and_grad(lambda x: fg.tanh(x) * x))
    jf(1.0)
    (info,) = jf.cache_info()
    assert info["nodes"] > 0 and info["lines"] > 0 and info["compile_s"] >= 0
    src = jf.source(1.0)
    assert src.startswith("def _s0(xs, o, R):") and "_f_tanh(" in src


def test_jitted_method():
    class Model:
        scale = 3.0

        @fg.jit
        def __call__(self, x):
            return x * self.scale

    assert Model()(2.0) == 6.0


# --------------------------------------------------------------------------
# memory: graphs are freed by reference counting, no cycles


def _build_and_drop(n: int) -> None:
    x = fg.var(0.3)
    y = x
    for _ in range(n):
        y = fg.tanh(y * 0.5 + 0.1)
    ref = weakref.ref(y)
    fg.gradients(y, wrt=[x])
    del x, y
    assert ref() is None  # freed at once, by reference counting


@pytest.mark.slow
def test_dropping_a_graph_leaves_no_reference_cycles():
    gc.collect()
    gc.disable()
    try:
        _build_and_drop(20_000)
        fg.grad(lambda p: sum(fg.relu(w * 2.0) for w in p))([0.1 * i for i in range(1000)])
        fg.value_and_grad(max_margin_loss)(init_mlp([2, 4, 1], 0), [[0.1, 0.2]] * 5, [1.0] * 5)
        fg.grad(fg.grad(fg.tanh))(0.4)
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.slow
def test_jit_replay_and_trace_leave_no_garbage():
    step = fg.jit(fg.value_and_grad(max_margin_loss))
    xs, ys = fg.data.make_moons(10, noise=0.1, seed=5)
    params = init_mlp([2, 4, 1], 0)
    step(params, xs, ys)  # trace and compile outside the check: the cache keeps the code
    gc.collect()
    gc.disable()
    try:
        step(params, xs, ys)
        step(init_mlp([2, 4, 1], 1), xs, ys)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_pytree_nested_deeper_than_the_recursion_limit():
    # the call's walk over its arguments keeps its own stack, as tree.flatten does
    depth = sys.getrecursionlimit() * 3
    t: object = [1.5, 2]
    for _ in range(depth):
        t = [t, 0.25]
    f = fg.jit(lambda t: sum(fg.tree.leaves(t)))
    want = 1.5 + 2 + 0.25 * depth
    assert f(t) == want
    assert f(t) == want and f.cache_info().hits == 1  # replayed, not traced again


def test_an_output_nested_deeper_than_the_recursion_limit():
    # the output is rebuilt by direct calls near its root and by tree.unflatten's loop below
    depth = sys.getrecursionlimit() * 3
    t: object = [1.5, 2.0]
    for _ in range(depth):
        t = [t, 0.25]
    double = lambda t: fg.tree.map(lambda v: v * 2.0, t)  # noqa: E731
    f = fg.jit(double)
    want = fg.tree.leaves(double(t))
    for _ in range(2):  # traced, then replayed
        out = f(t)
        assert fg.tree.structure(out) == fg.tree.structure(t) and fg.tree.leaves(out) == want


def test_static_values_equal_by_eq_but_not_the_same_get_their_own_trace():
    # True == 1 and 0.0 == -0.0, but a function may tell them apart: a shared trace would be a wrong number
    @attrs.frozen
    class Opt:
        w: float
        nesterov: object = fg.tree.static(default=False)

    g = lambda o: o.w * (2.0 if o.nesterov is True else 3.0)  # noqa: E731
    jg, vg = fg.jit(g), fg.vmap(g)
    assert (jg(Opt(1.0, True)), jg(Opt(1.0, 1))) == (2.0, 3.0)
    assert (vg([Opt(1.0, True)]), vg([Opt(1.0, 1)])) == ([2.0], [3.0])
    f = fg.jit(lambda x, k: x * math.copysign(1.0, k), static_argnums=1)
    assert (f(2.0, 0.0), f(2.0, -0.0)) == (2.0, -2.0)
    h = fg.jit(lambda d: sum(v * math.copysign(1.0, k) for k, v in d.items()))
    assert (h({0.0: 2.0}), h({-0.0: 2.0})) == (2.0, -2.0)
    assert f(2.0, 0.0) == 2.0 and f.cache_info().hits == 1  # equal statics still share a trace


def test_a_nan_constant_keeps_its_sign_in_the_replay():
    import struct

    f = lambda x: x * 2.0 + (-math.nan)  # noqa: E731
    bits = lambda v: struct.pack("<d", v)  # noqa: E731
    assert bits(fg.jit(f)(1.0)) == bits(f(fg.var(1.0)).value) == bits(-math.nan)


def test_an_output_object_holding_traced_nodes_is_an_error_not_the_first_trace_again():
    import dataclasses

    @dataclasses.dataclass
    class Pair:
        u: object
        v: object

    f = lambda x: Pair(x, x * 2)  # noqa: E731
    with pytest.raises(TypeError, match="output leaf 0 .* Pair that holds traced nodes"):
        fg.jit(f)(1.0)
    with pytest.raises(TypeError, match="holds traced nodes"):
        fg.jit(lambda x: [x, {"p": Pair([x], 1.0)}])(1.0)
    # objects without the trace's nodes come back as they were, as documented
    tag = Pair("a", 1)
    j = fg.jit(lambda x: (x * 2, tag))
    assert j(1.0) == (2.0, tag) and j(5.0) == (10.0, tag)


def test_nodes_of_a_nested_grad_or_in_the_output_structure_are_an_error_not_the_first_trace_again():
    import dataclasses

    import attrs

    @dataclasses.dataclass
    class Metrics:
        loss: object

    def loss(w):
        sq = (w - 3.0) ** 2
        return sq, Metrics(sq)  # the aux holds a node of the grad's own level

    vg = fg.value_and_grad(loss, has_aux=True)
    assert vg(2.0)[1] == -2.0
    with pytest.raises(TypeError, match="output leaf 1 .* Metrics that holds traced nodes"):
        fg.jit(vg)(2.0)

    @attrs.frozen
    class Tagged:
        w: float
        tag: object = fg.tree.static(default=None)

    with pytest.raises(TypeError, match="traced node in its structure: a dict key or a static field"):
        fg.jit(lambda x: Tagged(x * 2, tag=x * 3))(1.0)
    with pytest.raises(TypeError, match="traced node in its structure"):
        fg.jit(lambda x: [{x * 3: x * 2}])(1.0)
    # a constant in the structure stays: it is the same on every call
    c = fg.var(7.0)
    j = fg.jit(lambda x: Tagged(x * 2, tag=c))
    assert j(1.0) == Tagged(2.0, tag=c) and j(5.0) == Tagged(10.0, tag=c)


def test_an_enum_member_is_static_like_a_bool_not_a_traced_number():
    import enum

    class Mode(enum.IntEnum):
        A = 1
        B = 2

    g = lambda x, m: x * 2 if m is Mode.A else x * 3  # noqa: E731
    j = fg.jit(g)
    assert [j(1.0, Mode.A), j(1.0, Mode.B), j(5.0, Mode.A)] == [g(1.0, Mode.A), g(1.0, Mode.B), g(5.0, Mode.A)]
    assert [j(1.0, Mode.A), j(1.0, Mode.B), j(5.0, Mode.A)] == [2.0, 3.0, 10.0]
    assert j.cache_size() == 2
    with pytest.raises(TypeError, match=r"argument 0 is Mode <Mode.A: 1>; expected a real number"):
        fg.grad(lambda m: m * 2.0)(Mode.A)


def test_rows_of_numbers_are_walked_as_one_data_set_in_flatten_order(monkeypatch):
    # A data set (rows of one length) is walked in one piece. Its numbers must
    # still reach the replay in tree.flatten's order, ints must share the
    # floats' trace, and anything else in a row must fall back to the walk
    # that makes each row a part of the key.
    def f(rows, w):
        return sum((i + 1) * w[j] * v for i, row in enumerate(rows) for j, v in enumerate(row))

    jf = fg.jit(f)
    w = [0.5, -2.0, 3.0]
    floats = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    ints = [[1, 2, 3], [4, 5, 7]]
    want_f = 0.5 * 1 - 2 * 2 + 3 * 3 + 2 * (0.5 * 4 - 2 * 5 + 3 * 6)
    want_i = want_f + 2 * 3 * (7 - 6)
    assert jf(floats, w) == want_f and jf(ints, w) == want_i
    info = jf.cache_info()
    assert (info.misses, info.hits) == (1, 1)  # ints replay the floats' trace
    # row by row, as flatten orders them: a replay that read them column by column would differ
    assert jf(floats[::-1], w) == f(floats[::-1], w) != want_f
    # other shapes are other structures: each is traced, each gives eager's number
    for rows in ([[1.0, 2.0], [3.0]], [(1.0, 2.0, 3.0), [4.0, 5.0, 6.0]], ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)), [[1.0, 2.0, 3.0]]):
        assert jf(rows, w) == f(rows, w), rows
    assert jf.cache_info().misses == 5
    # a static leaf in a row is part of the key, not a number
    g = fg.jit(lambda rows: rows[0][0] * 2.0 if rows[1][0] is None else rows[0][0])
    assert g([[3.0], [None]]) == 6.0 and g([[3.0], ["a"]]) == 3.0 and g.cache_info().misses == 2
    # a list that holds itself as a row is still found out
    monkeypatch.setattr(fg.tree, "_CYCLE_CHECK_AT", 1 << 10)  # found sooner; the default 2^20 only costs time
    loop: list = [1.0]
    loop[0] = loop
    with pytest.raises(ValueError, match="contains itself|holds itself"):
        jf([loop, loop], w)


def test_equal_callable_objects_that_compute_differently_do_not_share_a_cache():
    import attrs

    @attrs.frozen
    class Angle:
        w: float

        def __call__(self, x):
            return fg.atan2(self.w, -x)

    a, b = Angle(0.0), Angle(-0.0)
    assert a == b and a(1.0) == math.pi and b(1.0) == -math.pi
    ja, jb = fg.jit(a), fg.jit(b)
    assert (ja(1.0), jb(1.0), ja(2.0), jb(2.0)) == (math.pi, -math.pi, math.pi, -math.pi)
    assert fg.vmap(a)([1.0, 2.0]) == [math.pi] * 2 and fg.vmap(b)([1.0, 2.0]) == [-math.pi] * 2
    # the same object jitted twice shares its replays, as a function or a bound method does
    assert fg.jit(a).cache_size() == 1
    f = lambda x: x * 2  # noqa: E731
    fg.jit(f)(1.0)
    assert fg.jit(f).cache_size() == 1

    class Model:
        def step(self, x):
            return x * 3

    m = Model()
    j1 = fg.jit(m.step)
    j1(1.0)
    assert fg.jit(m.step).cache_size() == 1 and fg.jit(Model().step).cache_size() == 0
    # and the cache goes with the object
    ref = weakref.ref(a)
    del a, ja
    gc.collect()
    assert ref() is None


def test_an_array_argument_is_refused_not_taken_as_a_static_value():
    torch = require("torch", "pip install torch")
    np = require("numpy", 'pip install "fungrad[fast]"')
    t = torch.tensor([1.0, 2.0])
    # a tensor hashes by identity: as a static value, a change in place would replay the old numbers
    for arr, shape in ((t, r"\(2,\)"), (torch.tensor(2.0), r"\(\)"), (np.array([1.0]), r"\(1,\)")):
        with pytest.raises(TypeError, match=rf"jit: an argument holds a \w+\.\w+ of shape {shape}; jit traces numbers"):
            fg.jit(lambda x, a: x * 2.0)(1.0, {"a": arr})
    # nor as a static argument or a static field
    with pytest.raises(TypeError, match=r"jit: an argument holds a torch.Tensor of shape \(2,\)"):
        fg.jit(lambda x, a: x * float(a[0]), static_argnums=1)(1.0, t)

    @attrs.frozen
    class Holder:
        w: float
        t: object = fg.tree.static(default=None)

    with pytest.raises(TypeError, match=r"jit: an argument holds a torch.Tensor of shape \(2,\)"):
        fg.jit(lambda h: h.w * 2.0)(Holder(1.0, t))
    # NumPy's scalars cannot change: a float is traced, a bool is static
    j = fg.jit(lambda x, s: x * 2.0 if s else x)
    assert (j(np.float64(3.0), np.bool_(True)), j(1.0, np.bool_(False))) == (6.0, 1.0)


def test_a_static_value_too_deep_to_compare_is_a_clear_error():
    deep = ()
    for _ in range(5000):
        deep = (deep,)
    with pytest.raises(ValueError, match="jit: a static argument .* nests too deep to be part of the cache key"):
        fg.jit(lambda x, c: x * 2.0, static_argnums=1)(1.0, deep)
    assert fg.jit(lambda x, c: x * 2.0, static_argnums=1)(1.0, ((),)) == 2.0
