"""Transforms compose: every composition of grad, value_and_grad, jacobian, hessian, jit, jacfwd and
forward-mode derivatives (jvp) up to depth 3, against the eager composition (bit for bit: jit promises the eager results exactly) and
against closed forms; and jit's cache, static arguments and limits.
"""

from __future__ import annotations

import gc
import itertools
import math
import weakref

import pytest

import fungrad as fg

def fwd(f):
    """The derivative of a function of one float by forward mode: every output leaf's tangent."""
    return lambda x: fg.jvp(f, (x,), (1.0,))[1]


TRANSFORMS = {
    "grad": fg.grad,
    "value_and_grad": fg.value_and_grad,
    "jacobian": fg.jacobian,
    "hessian": fg.hessian,
    "jit": fg.jit,
    "jacfwd": fg.jacfwd,
    "fwd": fwd,
}
SEQUENCES = [s for d in (1, 2, 3) for s in itertools.product(TRANSFORMS, repeat=d)]


def compose(seq, f, eager=False):
    """``seq[0](seq[1](...(f)))``; with ``eager`` every jit is left out."""
    for name in reversed(seq):
        if not (eager and name == "jit"):
            f = TRANSFORMS[name](f)
    return f


# Each shape of output as derivative orders: a leaf k stands for the k-th derivative of f.
def orders(seq):
    """The result of ``seq`` applied to a scalar f of one float, as derivative orders, or None
    where the composition does not make sense (a non-scalar output under grad or hessian)."""
    out = 0
    for name in reversed(seq):
        if name == "jit":
            continue
        if name in ("grad", "hessian", "value_and_grad") and not isinstance(out, int):
            return None
        if name == "grad":
            out = out + 1
        elif name == "value_and_grad":
            out = (out, out + 1)
        elif name == "hessian":
            out = out + 2
        else:  # jacobian, jacfwd, fwd: every output leaf differentiated
            out = fg.tree.map(lambda k: k + 1, out)
    return out


def cube_prim():
    return fg.primitive("tc_cube", lambda x: x * x * x, vjp=(lambda g, ans, x: g * 3.0 * x * x,))


def my_sin_vjp():
    @fg.custom_vjp
    def my_sin(x):
        return fg.sin(x)

    my_sin.defvjp(lambda x: (fg.sin(x), x), lambda x, g: (g * fg.cos(x),))
    return my_sin


_made = {}


def _cube(x):
    # declared on first use, not at import: other test modules loop over the table when collected
    if "cube" not in _made:
        _made["cube"] = cube_prim()
    return _made["cube"](x)


def _my_sin(x):
    if "sin" not in _made:
        _made["sin"] = my_sin_vjp()
    return _made["sin"](x)


# name -> (f, k -> the k-th derivative at x, in closed form)
FUNCTIONS = {
    "cube": (lambda x: x * x * x, lambda k, x: [x**3, 3 * x**2, 6 * x, 6.0][k] if k < 4 else 0.0),
    # (e^x sin x)^(k) = 2^(k/2) e^x sin(x + k pi / 4)
    "exp_sin": (lambda x: fg.exp(x) * fg.sin(x),
                lambda k, x: 2 ** (k / 2) * math.exp(x) * math.sin(x + k * math.pi / 4)),
    "custom_vjp": (lambda x: 2.0 * _my_sin(x), lambda k, x: 2.0 * math.sin(x + k * math.pi / 2)),
    "primitive": (lambda x: _cube(x) + x, lambda k, x: [x**3 + x, 3 * x**2 + 1, 6 * x, 6.0][k] if k < 4 else 0.0),
}
X = 0.7


def close(a, b, rel=1e-12, abs_=1e-12):
    leaves_a, td_a = fg.tree.flatten(a)
    leaves_b, td_b = fg.tree.flatten(b)
    return td_a == td_b and all(abs(u - v) <= abs_ + rel * abs(v) for u, v in zip(leaves_a, leaves_b))


def test_every_sequence_is_either_sensible_or_an_error_in_both_modes():
    sensible = [s for s in SEQUENCES if orders(s) is not None]
    assert len(SEQUENCES) == 7 + 7**2 + 7**3 and 200 < len(sensible) < len(SEQUENCES)
    for seq in SEQUENCES:
        if orders(seq) is None:
            for eager in (True, False):
                with pytest.raises(TypeError, match="scalar"):
                    compose(seq, FUNCTIONS["cube"][0], eager)(X)


@pytest.mark.slow
@pytest.mark.parametrize("fname", list(FUNCTIONS))
def test_every_composition_to_depth_three_equals_eager_and_the_closed_form(fname):
    f, deriv = FUNCTIONS[fname]
    for seq in SEQUENCES:
        want = orders(seq)
        if want is None:
            continue
        eager = compose(seq, f, eager=True)(X)
        h = compose(seq, f)
        got = h(X)
        assert got == eager, (seq, got, eager)  # bit for bit, same structure
        again = h(X + 0.25)  # a second call: jit's replay, not its trace
        assert again == compose(seq, f, eager=True)(X + 0.25), seq
        if seq[0] == "jit":
            assert h.cache_info().misses == 1 and h.cache_info().hits == 1, seq
        closed = fg.tree.map(lambda k: deriv(k, X), want)
        assert close(got, closed, rel=1e-11), (seq, got, closed)


@pytest.mark.parametrize("seq", [("jit", "grad", "jit"), ("jit", "value_and_grad", "jit"), ("grad", "grad", "jit"),
                                 ("jacobian", "jit", "grad"), ("hessian", "jit"), ("jit", "hessian", "jit"),
                                 ("jit", "jacobian", "jit"), ("jit", "jit", "jit")], ids="-".join)
def test_the_compositions_that_once_gave_wrong_answers(seq):
    f = lambda x: x * x  # noqa: E731
    want = {0: 9.0, 1: 6.0, 2: 2.0}
    got = compose(seq, f)(3.0)
    assert got == fg.tree.map(lambda k: want.get(k, 0.0), orders(seq))


# ---------------------------------------------------------------- a 2-vector


def g2(v):
    return v[0] * v[0] * v[1] + fg.sin(v[0] * v[1])


def g2_grad(a, b):
    return [2 * a * b + b * math.cos(a * b), a * a + a * math.cos(a * b)]


def g2_hess(a, b):
    s, c = math.sin(a * b), math.cos(a * b)
    return [[2 * b - b * b * s, 2 * a + c - a * b * s], [2 * a + c - a * b * s, -a * a * s]]


VEC_SEQUENCES = [s for d in (1, 2, 3) for s in itertools.product(TRANSFORMS, repeat=d)
                 if sum(n in ("hessian", "jacobian", "grad", "value_and_grad", "jacfwd") for n in s) <= 2
                 and "fwd" not in s]  # fwd is the derivative of a function of one float


def test_compositions_on_a_two_vector_equal_eager_and_closed_forms():
    v = [0.6, -1.3]
    ok = 0
    for seq in VEC_SEQUENCES:
        try:
            eager = compose(seq, g2, eager=True)(v)
        except TypeError:
            with pytest.raises(TypeError):
                compose(seq, g2)(v)
            continue
        h = compose(seq, g2)
        assert h(v) == eager, seq
        w = [0.2, 0.9]
        assert h(w) == compose(seq, g2, eager=True)(w), seq
        ok += 1
    assert ok > 20
    jg = fg.jit(fg.grad(fg.jit(g2)))
    assert close(jg(v), g2_grad(*v))
    for h in (fg.hessian(g2), fg.jit(fg.hessian(fg.jit(g2))), fg.jacobian(fg.jit(fg.grad(g2))),
              fg.jit(fg.jacobian(fg.grad(g2)))):
        assert close(h(v), g2_hess(*v)), h
    val, gr = fg.jit(fg.value_and_grad(fg.jit(g2)))(v)
    assert val == g2(v) and close(gr, g2_grad(*v))


def test_jacobian_and_hessian_with_aux_compose_with_jit():
    f = lambda v: (g2(v), {"n": len(v)})  # noqa: E731
    v = [0.6, -1.3]
    h, aux = fg.jit(fg.hessian(f, has_aux=True))(v)
    assert aux == {"n": 2} and close(h, g2_hess(*v))
    j, aux = fg.jit(fg.jacobian(lambda v: ([v[0] * v[1], v[0]], "a"), has_aux=True))(v)
    assert j == [[v[1], v[0]], [1.0, 0.0]] and aux == "a"
    assert fg.jacobian(fg.jit(fg.grad(g2)))(v) == fg.hessian(g2)(v)


# ---------------------------------------------------------------- jit's cache


def test_jit_of_the_same_function_in_a_loop_traces_once():
    calls = []

    def f(x):
        calls.append(1)
        return x * x + 1.0

    out = [fg.jit(f)(float(i)) for i in range(10)]
    assert out == [i * i + 1.0 for i in range(10)] and len(calls) == 1
    info = fg.jit(f).cache_info()
    assert (info.misses, info.hits) == (1, 9) and fg.jit(f).cache_size() == 1
    # a different cache_limit or static_argnums is a different cache
    fg.jit(f, cache_limit=3)(1.0)
    assert len(calls) == 2


@pytest.mark.slow
def test_the_shared_cache_dies_with_its_function():
    def make():
        def f(x):
            return x * 3.0

        return f

    f = make()
    ref = weakref.ref(f)
    assert fg.jit(f)(2.0) == 6.0 and fg.jit(f).cache_size() == 1
    del f
    gc.collect()
    assert ref() is None  # neither the cache nor its compiled code keeps f alive
    g = make()
    assert fg.jit(g).cache_size() == 0  # a new function, a new cache


def test_static_arguments_are_keyed_by_type_as_well_as_value():
    f = fg.jit(lambda k, x: x * 2.0 if type(k) is bool else x * 3.0, static_argnums=0)
    assert f(1, 1.0) == 3.0
    assert f(True, 1.0) == 2.0  # 1 == True, but they are different static values
    assert f(1.0, 1.0) == 3.0 and f.cache_size() == 3
    ident = fg.jit(lambda k: k, static_argnums=0)
    assert ident(True) is True and ident(1) == 1 and type(ident(1)) is int
    assert fg.jit(lambda k: k, static_argnums=0)((1, True)) == (1, True)
    assert type(fg.jit(lambda k: k, static_argnums=0)((1, True))[1]) is bool


def test_jit_rejects_a_generator_function():
    def gen(x):
        yield x * 2.0

    with pytest.raises(TypeError, match="generator"):
        fg.jit(gen)

    async def coro(x):
        return x

    with pytest.raises(TypeError, match="generator \\(or async\\) function"):
        fg.jit(coro)
    # a function that returns a generator is caught when it is traced
    with pytest.raises(TypeError, match="returned a generator"):
        fg.jit(lambda x: (x * k for k in range(2)))(1.0)


def test_static_arguments_by_keyword_and_by_name():
    def f(x, mode):
        return x * 2.0 if mode == "double" else x

    by_num = fg.jit(f, static_argnums=1)
    assert by_num(3.0, "double") == 6.0
    assert by_num(3.0, mode="double") == 6.0 and by_num(3.0, mode="same") == 3.0
    assert by_num(x=4.0, mode="double") == 8.0
    by_name = fg.jit(f, static_argnames="mode")
    assert by_name(3.0, mode="double") == 6.0 and by_name(3.0, mode="x") == 3.0
    assert fg.jit(f, static_argnames=("mode",))(5.0, mode="double") == 10.0
    # a static named argument passed by position is static too, keyed by type and value
    assert by_name(3.0, "double") == 6.0 and by_name(3.0, "same") == 3.0
    g = fg.jit(lambda x, k: x * 2 if k is True else (x * 3 if type(k) is int else x * 5), static_argnames="k")
    assert (g(1.0, True), g(1.0, 1), g(1.0, 1.0), g(1.0, k=1)) == (2.0, 3.0, 5.0, 3.0)
    with pytest.raises(TypeError, match="static_argnames must be a str"):
        fg.jit(f, static_argnames=3)


def test_the_cache_is_bounded_least_recently_used_first_out():
    calls = []

    def f(x, k):
        calls.append(k)
        return x * k

    j = fg.jit(f, static_argnums=1, cache_limit=2)
    assert [j(1.0, k) for k in (1, 2)] == [1.0, 2.0]
    assert j(2.0, 1) == 2.0  # a hit: 1 is now the most recently used
    assert j(1.0, 3) == 3.0  # evicts 2, the least recently used
    info = j.cache_info()
    assert (len(info), info.limit, info.evictions, info.misses, info.hits) == (2, 2, 1, 3, 1)
    assert j(3.0, 1) == 3.0 and calls == [1, 2, 3]  # 1 is still cached
    assert j(3.0, 2) == 6.0 and calls == [1, 2, 3, 2]  # 2 was evicted: traced again
    assert j.cache_info().evictions == 2
    with pytest.raises(ValueError, match="cache_limit"):
        fg.jit(f, cache_limit=0)
