"""Extending fungrad: fg.primitive, fg.custom_vjp and fg.stop_gradient, end to end.

Primitive names are global (one table per process), so every test declares its
own, with a name no other test or page uses (``tx_...``).
"""

from __future__ import annotations

import itertools
import math
import re

import pytest

import fungrad as fg

_names = itertools.count()


def fresh(stem: str) -> str:
    return f"tx_{stem}_{next(_names)}"


def softsign(name: str | None = None, calls: list | None = None, label: str | None = None):
    def fwd(x):
        if calls is not None:
            calls.append(x)
        return x / (1.0 + abs(x))

    return fg.primitive(name or fresh("softsign"), fwd, vjp=(lambda g, ans, x: g / (1.0 + fg.abs(x)) ** 2,),
                        label=label)


# ---------------------------------------------------------------- fg.primitive


def test_a_primitive_works_on_floats_and_on_nodes():
    op = softsign()
    assert op(1.0) == 0.5 and type(op(1.0)) is float and type(op(3)) is float and op(3) == 0.75
    x = fg.var(1.0, name="x")
    y = op(x)
    assert isinstance(y, fg.Node) and y.value == 0.5 and y.parents == (x,)
    assert y.op in fg.PRIMITIVES and fg.PRIMITIVES[y.op].vjp[0] is not None
    assert fg.gradients(y)[x] == 0.25


def test_a_primitive_differentiates_to_third_order():
    op = softsign()
    d1, d2, d3 = fg.grad(op), fg.grad(fg.grad(op)), fg.grad(fg.grad(fg.grad(op)))
    for x in (1.0, -0.5, 2.0):
        s = math.copysign(1.0, x)
        assert d1(x) == pytest.approx(1 / (1 + abs(x)) ** 2, rel=1e-15)
        assert d2(x) == pytest.approx(-2 * s / (1 + abs(x)) ** 3, rel=1e-15)
        assert d3(x) == pytest.approx(6 / (1 + abs(x)) ** 4, rel=1e-15)
    assert (d1(1.0), d2(1.0), d3(1.0)) == (0.25, -0.25, 0.375)
    h = fg.hessian(lambda v: op(v[0] * v[1]))([1.0, 2.0])
    want = [[4 * -2 / 27, 1 / 9 - 2 * 2 / 27], [1 / 9 - 2 * 2 / 27, -2 / 27]]
    assert h == [pytest.approx(row, rel=1e-14) for row in want]


def test_a_primitive_inside_other_ops_and_with_numbers():
    op = softsign()
    f = lambda a, b: op(a * b) + fg.tanh(op(a))  # noqa: E731
    ga, gb = fg.grad(f, argnums=(0, 1))(0.5, -2.0)
    # chain rule by hand
    u = -1.0
    dop = lambda v: 1 / (1 + abs(v)) ** 2  # noqa: E731
    assert ga == pytest.approx(dop(u) * -2.0 + (1 - math.tanh(op(0.5)) ** 2) * dop(0.5), rel=1e-15)
    assert gb == pytest.approx(dop(u) * 0.5, rel=1e-15)


def test_jit_replays_the_primitives_forward():
    calls: list[float] = []
    op = softsign(calls=calls)
    f = fg.jit(lambda x: op(x) * 2.0)
    assert f(1.0) == 1.0
    n = len(calls)
    assert f(3.0) == 1.5 and f.cache_size() == 1  # replayed, not retraced ...
    assert calls[n:] == [3.0]  # ... and the replay called fwd on the new value
    j = fg.jit(fg.value_and_grad(op))
    assert j(1.0) == (0.5, 0.25) and j(-3.0) == (-0.75, 1 / 16)
    assert op.__name__ in fg.jit(lambda x: op(x)).source(1.0)


def test_drawings_show_the_label_or_the_name():
    named = softsign(label="softsign")
    plain_name = fresh("plain")
    plain = softsign(plain_name)
    x = fg.var(1.0, name="x")
    dot = fg.viz.to_dot(plain(named(x)))
    assert re.search(r'op\d+ \[label="?softsign"?\]', dot) and re.search(f'op\\d+ \\[label="?{plain_name}"?\\]', dot)
    G = fg.to_networkx(named(x))
    labels = {d["label"] for _, d in G.nodes(data=True)}
    assert "softsign" in labels
    assert fg.PRIMITIVES[plain_name].label == plain_name


def test_check_grads_passes_a_right_rule_and_names_a_wrong_one():
    op = softsign()
    fg.check_grads(op, (0.7,), order=2)
    fg.check_grads(lambda a, b: op(a) * b, (0.3, -1.2), order=2)
    wrong = fg.primitive(fresh("wrong"), lambda x: x * x, vjp=(lambda g, ans, x: g * x,))  # 2x is right
    with pytest.raises(AssertionError, match="argument 0: analytic 0.75, numeric 1.5"):
        fg.check_grads(wrong, (0.75,))


def test_debug_nans_names_a_primitive_and_its_forward_never_raises():
    mylog = fg.primitive(fresh("log"), math.log, vjp=(lambda g, ans, x: g / x,))
    assert math.isnan(mylog(-1.0)) and math.isnan(mylog(0.0))  # math.log raises; ops never do
    assert mylog(math.e) == 1.0
    name = fg.PRIMITIVES[mylog.__name__].name
    with fg.debug_nans(), pytest.raises(FloatingPointError, match=f"op '{name}' produced nan from inputs \\(x=-1.0\\)"):
        mylog(fg.var(-1.0, name="x"))
    with fg.debug_nans(), pytest.raises(FloatingPointError, match=f"op '{name}'"):
        mylog(-1.0)
    # a finite value whose gradient is not: named as the gradient through the op. (The rule uses
    # fg.div: on the first-order fast path rules run on plain floats, where / by 0 would raise.)
    mysqrt = fg.primitive(fresh("sqrt"), math.sqrt, vjp=(lambda g, ans, x: fg.div(g, 2.0 * ans),))
    assert fg.grad(mysqrt)(0.0) == math.inf
    with fg.debug_nans(), pytest.raises(FloatingPointError, match=f"gradient through op '{mysqrt.__name__}'"):
        fg.grad(mysqrt)(0.0)


def test_a_rule_written_with_python_operators_follows_ieee_in_every_mode():
    # on the first-order fast path a rule runs on plain floats, where / by 0 and ** overflow raise;
    # the same rule on nodes (nested grad, jit's trace) gives inf: all modes must agree
    mysqrt = fg.primitive(fresh("sqrt"), math.sqrt, vjp=(lambda g, ans, x: g / (2.0 * ans),))
    assert fg.grad(mysqrt)(0.0) == math.inf == fg.jit(fg.grad(mysqrt))(0.0)
    assert fg.grad(mysqrt)(4.0) == 0.25 and fg.grad(fg.grad(mysqrt))(1.0) == -0.25
    op = softsign()  # its rule has ** 2, which overflows on floats at 1e200
    assert fg.grad(op)(1e200) == 0.0 == fg.jit(fg.grad(op))(1e200)
    with fg.debug_nans(), pytest.raises(FloatingPointError, match="gradient through op"):
        fg.grad(mysqrt)(0.0)


def test_a_primitive_of_two_arguments_and_one_without_derivative():
    hyp = fg.primitive(fresh("hypot"), math.hypot,
                       vjp=(lambda g, ans, a, b: g * a / ans, lambda g, ans, a, b: g * b / ans))
    assert hyp(3.0, 4.0) == 5.0 and hyp(fg.var(3.0), 4.0).value == 5.0
    assert fg.grad(hyp, argnums=(0, 1))(3.0, 4.0) == (0.6, 0.8)
    fg.check_grads(hyp, (3.0, 4.0), order=2)
    rnd = fg.primitive(fresh("round"), lambda x: float(round(x)), vjp=(None,))
    assert rnd(2.6) == 3.0 and fg.grad(lambda x: rnd(x) * x)(2.6) == 3.0


def test_a_primitive_and_a_custom_vjp_of_three_arguments():
    fma = fg.primitive(fresh("fma"), lambda a, b, c: a * b + c,
                       vjp=(lambda g, ans, a, b, c: g * b, lambda g, ans, a, b, c: g * a, lambda g, ans, a, b, c: g))
    assert fma(2.0, 3.0, 1.0) == 7.0 and fma(fg.var(2.0), 3.0, 1.0).value == 7.0
    assert fg.grad(fma, argnums=(0, 1, 2))(2.0, 3.0, 1.0) == (3.0, 2.0, 1.0)
    assert fg.jit(fg.grad(fma, argnums=(0, 1, 2)))(2.0, 3.0, 1.0) == (3.0, 2.0, 1.0)
    assert fg.hessian(lambda v: fma(v[0], v[1], v[2] * v[2]))([2.0, 3.0, 1.0]) == [
        [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]
    with pytest.raises(TypeError, match="takes 3 arguments"):
        fma(1.0, 2.0)

    @fg.custom_vjp
    def prod3(a, b, c):
        return a * b * c

    prod3.defvjp(lambda a, b, c: (a * b * c, (a, b, c)),
                 lambda r, g: (g * r[1] * r[2], g * r[0] * r[2], g * r[0] * r[1]))
    assert fg.grad(prod3, argnums=(0, 1, 2))(1.0, 2.0, 3.0) == (6.0, 3.0, 2.0)
    assert fg.hessian(lambda v: prod3(v[0], v[1], v[2]))([1.0, 2.0, 3.0]) == [
        [0.0, 3.0, 2.0], [3.0, 0.0, 1.0], [2.0, 1.0, 0.0]]
    assert fg.jit(fg.value_and_grad(prod3, argnums=(0, 1, 2)))(1.0, 2.0, 3.0) == (6.0, (6.0, 3.0, 2.0))


def test_primitive_errors_are_immediate():
    ok = (lambda g, ans, x: g,)
    with pytest.raises(ValueError, match="'exp' is already taken"):
        fg.primitive("exp", math.exp, vjp=ok)
    name = fresh("twice")
    fg.primitive(name, lambda x: x, vjp=ok)
    with pytest.raises(ValueError, match="already taken"):
        fg.primitive(name, lambda x: x, vjp=ok)
    with pytest.raises(ValueError, match="fwd takes 2 arguments but vjp has 1 rule"):
        fg.primitive(fresh("arity"), lambda a, b: a + b, vjp=ok)
    with pytest.raises(ValueError, match="fwd takes 1 argument but vjp has 2 rules"):
        fg.primitive(fresh("arity"), lambda a: a, vjp=ok * 2)
    with pytest.raises(TypeError, match=r"vjp\[0\] must be a function"):
        fg.primitive(fresh("rule"), lambda a: a, vjp=(3.0,))
    with pytest.raises(TypeError, match="vjp must be a tuple of rules"):
        fg.primitive(fresh("rule"), lambda a: a, vjp=())
    with pytest.raises(TypeError, match="fwd must be a function"):
        fg.primitive(fresh("fwd"), 2.0, vjp=ok)
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        fg.primitive("", lambda a: a, vjp=ok)
    with pytest.raises(TypeError, match="label must be a str"):
        fg.primitive(fresh("label"), lambda a: a, vjp=ok, label=3)
    # a failed declaration takes no name
    assert not any(n.startswith("tx_arity") or n.startswith("tx_rule") for n in fg.PRIMITIVES)


def test_a_forward_that_returns_a_non_float_is_a_type_error():
    for bad in ("1.0", None, [1.0], 1j):
        op = fg.primitive(fresh("bad"), lambda x, bad=bad: bad, vjp=(lambda g, ans, x: g,))
        with pytest.raises(TypeError, match="fwd returned .*; expected a float"):
            op(1.0)
        with pytest.raises(TypeError, match="expected a float"):
            op(fg.var(1.0))
    as_int = fg.primitive(fresh("int"), lambda x: 2, vjp=(lambda g, ans, x: 0.0,))
    assert as_int(1.0) == 2.0 and type(as_int(1.0)) is float


def test_a_primitive_checks_its_arguments_like_a_builtin():
    op = softsign()
    with pytest.raises(TypeError, match="expected a real number"):
        op("1")
    with pytest.raises(TypeError, match="expected a real number"):
        op(True)


# ---------------------------------------------------------------- custom_vjp


def make_softplus():
    """log(1 + exp(x)) that is exact at x = 1000, with the derivative sigmoid(x)."""

    @fg.custom_vjp
    def softplus(x):
        return fg.maximum(x, 0.0) + fg.log1p(fg.exp(-fg.abs(x)))

    softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * fg.sigmoid(x),))
    return softplus


def test_custom_vjp_is_one_node_in_the_graph_and_in_the_drawing():
    sp = make_softplus()
    x = fg.var(2.0, name="x")
    y = sp(x)
    assert y.parents == (x,) and fg.toposort(y) == [x, y]
    assert fg.PRIMITIVES[y.op].label == "softplus"
    dot = fg.viz.to_dot(y)
    assert dot.count("[label=") == 3 and re.search(r'op1 \[label="?softplus"?\]', dot)  # x, y and one op


def test_custom_vjp_is_numerically_stable_where_the_naive_formula_is_not():
    sp = make_softplus()
    naive = lambda x: fg.log(1.0 + fg.exp(x))  # noqa: E731
    assert naive(1000.0) == math.inf and math.isnan(fg.grad(naive)(1000.0))
    assert sp(1000.0) == 1000.0 and fg.grad(sp)(1000.0) == 1.0
    assert sp(-1000.0) == 0.0 and fg.grad(sp)(-1000.0) == 0.0
    assert sp(0.0) == math.log(2.0) and fg.grad(sp)(0.0) == 0.5
    assert fg.grad(sp)(3.0) == fg.sigmoid(3.0)
    # the custom derivative is used at second order too: sigmoid'
    assert fg.grad(fg.grad(sp))(1000.0) == 0.0
    assert fg.grad(fg.grad(sp))(0.0) == 0.25


def test_jit_replays_a_custom_vjp_function():
    calls = []

    @fg.custom_vjp
    def sq(x):
        calls.append(x)
        return x * x

    sq.defvjp(lambda x: (sq(x), x), lambda x, g: (2.0 * x * g,))
    f = fg.jit(lambda x: sq(x) + 1.0)
    assert f(3.0) == 10.0
    n = len(calls)
    assert f(4.0) == 17.0 and calls[n:] == [4.0] and f.cache_size() == 1
    vg = fg.jit(fg.value_and_grad(sq))
    assert vg(3.0) == (9.0, 6.0) and vg(-2.0) == (4.0, -4.0)


def test_gradient_clipping():
    @fg.custom_vjp
    def clip_gradient(x):
        return x

    clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (fg.maximum(-1.0, fg.minimum(1.0, g)),))
    assert clip_gradient(3.0) == 3.0
    assert fg.grad(lambda x: 10.0 * clip_gradient(x))(2.0) == 1.0
    assert fg.grad(lambda x: -10.0 * clip_gradient(x))(2.0) == -1.0
    assert fg.grad(lambda x: 0.5 * clip_gradient(x))(2.0) == 0.5
    assert fg.grad(lambda x: clip_gradient(x * x))(3.0) == 6.0  # clipped to 1, times the chain's 2x


def test_nested_grad_of_a_custom_vjp_whose_backward_uses_fg_ops():
    @fg.custom_vjp
    def my_sin(x):
        return fg.sin(x)

    my_sin.defvjp(lambda x: (fg.sin(x), x), lambda x, g: (g * fg.cos(x),))
    for x in (0.0, 0.3, 2.0):
        assert fg.grad(my_sin)(x) == math.cos(x)
        assert fg.grad(fg.grad(my_sin))(x) == pytest.approx(-math.sin(x), abs=1e-16)
        assert fg.grad(fg.grad(fg.grad(my_sin)))(x) == pytest.approx(-math.cos(x), rel=1e-15)
    fg.check_grads(my_sin, (0.7,), order=2)
    # a backward that is deliberately not the derivative is what grad uses
    @fg.custom_vjp
    def fake(x):
        return fg.sin(x)

    fake.defvjp(lambda x: (fg.sin(x), x), lambda x, g: (g * 2.0 * x,))
    assert fg.grad(fake)(3.0) == 6.0 and fg.grad(fg.grad(fake))(3.0) == 2.0


def test_custom_vjp_written_with_node_methods_works_on_floats_too():
    # x.tanh() exists on nodes only; f, f_fwd and f_bwd run on floats in a first-order pass
    @fg.custom_vjp
    def twice_tanh(x):
        return x.tanh() * 2.0

    twice_tanh.defvjp(lambda x: (twice_tanh(x), x.tanh()), lambda t, g: (g * 2.0 * (1.0 - t * t),))
    t = math.tanh(0.5)
    assert twice_tanh(0.5) == 2.0 * t == twice_tanh(fg.var(0.5)).value
    d = fg.grad(twice_tanh)(0.5)
    assert type(d) is float and d == pytest.approx(2.0 * (1 - t * t), rel=1e-15)
    assert fg.grad(fg.grad(twice_tanh))(0.5) == pytest.approx(-4.0 * t * (1 - t * t), rel=1e-14)
    assert fg.jit(twice_tanh)(0.5) == twice_tanh(0.5) and fg.jit(fg.grad(twice_tanh))(0.5) == d
    with fg.debug_nans():
        assert fg.grad(twice_tanh)(0.5) == d


def test_custom_vjp_with_two_arguments():
    @fg.custom_vjp
    def mul(a, b):
        return a * b

    mul.defvjp(lambda a, b: (a * b, (a, b)), lambda res, g: (g * res[1], g * res[0]))
    assert mul(3.0, 4.0) == 12.0
    assert fg.grad(mul, argnums=(0, 1))(3.0, 4.0) == (4.0, 3.0)
    assert fg.grad(lambda a: mul(a, a))(3.0) == 6.0  # both paths count
    assert fg.hessian(lambda v: mul(v[0], v[1]))([3.0, 4.0]) == [[0.0, 1.0], [1.0, 0.0]]
    fg.check_grads(mul, (1.5, -2.0), order=2)
    y = mul(fg.var(2.0), fg.var(5.0))
    assert len(y.parents) == 2 and y.value == 10.0
    # None is a zero cotangent
    @fg.custom_vjp
    def first(a, b):
        return a + 0.0 * b

    first.defvjp(lambda a, b: (a, None), lambda res, g: (g, None))
    assert fg.grad(first, argnums=(0, 1))(1.0, 2.0) == (1.0, 0.0)


def test_custom_vjp_errors():
    @fg.custom_vjp
    def f(x):
        return x * 2.0

    with pytest.raises(TypeError, match="call defvjp"):
        f(1.0)
    f.defvjp(lambda x: (x * 2.0, None), lambda res, g: (g, g))
    with pytest.raises(TypeError, match="bwd must return a tuple of 1 cotangent .* got tuple of 2"):
        fg.grad(f)(1.0)
    assert f(1.0) == 2.0  # the value does not need the backward
    with pytest.raises(ValueError, match="defvjp was already called"):
        f.defvjp(lambda x: (x, None), lambda res, g: (g,))

    @fg.custom_vjp
    def h(x):
        return x

    h.defvjp(lambda x: x, lambda res, g: (g,))
    with pytest.raises(TypeError, match="fwd must return a pair"):
        fg.grad(h)(1.0)

    @fg.custom_vjp
    def k(x):
        return x

    k.defvjp(lambda x: (x, None), lambda res, g: g)
    with pytest.raises(TypeError, match="bwd must return a tuple"):
        fg.grad(k)(1.0)

    @fg.custom_vjp
    def s(x):
        return x

    s.defvjp(lambda x: (x, None), lambda res, g: ("no",))
    with pytest.raises(TypeError, match="cotangent 0 is str"):
        fg.grad(s)(1.0)
    with pytest.raises(TypeError, match="fwd and bwd must be functions"):
        fg.custom_vjp(lambda x: x).defvjp(None, None)
    with pytest.raises(TypeError, match="at least one"):
        fg.custom_vjp(lambda *xs: 0.0).defvjp(lambda *xs: (0.0, None), lambda r, g: ())
    with pytest.raises(TypeError, match="expected a function"):
        fg.custom_vjp(3)


# ---------------------------------------------------------------- stop_gradient


def test_stop_gradient_has_derivative_zero_at_every_order():
    sg = fg.stop_gradient
    assert sg(3.0) == 3.0 and fg.grad(sg)(3.0) == 0.0
    f = lambda x: x * sg(x) ** 2  # noqa: E731
    assert fg.grad(f)(3.0) == 9.0  # d/dx of x * c**2, with c = x
    assert fg.grad(fg.grad(f))(3.0) == 0.0  # and c**2 is constant at every order
    assert fg.grad(fg.grad(fg.grad(lambda x: x**3 + sg(x) ** 3)))(2.0) == 6.0
    assert fg.hessian(lambda v: v[0] * sg(v[1]) + sg(v[0] * v[1]))([2.0, 5.0]) == [[0.0, 0.0], [0.0, 0.0]]


def test_stop_gradient_stays_in_the_graph():
    x = fg.var(2.0, name="x")
    y = fg.stop_gradient(x)
    assert isinstance(y, fg.Node) and y.op == "stop_gradient" and y.parents == (x,) and y.value == 2.0
    z = x * y
    assert fg.gradients(z, wrt=[x]) == {x: 2.0}
    assert y in fg.toposort(z) and re.search(r'\[label="?stop"?\]', fg.viz.to_dot(z))


def test_jit_does_not_bake_a_stopped_gradient_in():
    f = fg.jit(lambda x: x * fg.stop_gradient(x))
    assert f(2.0) == 4.0 and f(3.0) == 9.0 and f.cache_size() == 1
    g = fg.jit(fg.grad(lambda x: x * fg.stop_gradient(x)))
    assert g(2.0) == 2.0 and g(5.0) == 5.0  # the replay uses the new value of the stopped x
    # reading .value instead is what bakes a value in: the contrast the docs draw
    baked = fg.jit(lambda x: x * x.value)
    assert baked(2.0) == 4.0 and baked(3.0) == 6.0


def test_a_custom_vjp_that_reads_a_node_of_the_running_transform_is_an_error():
    # the custom derivative covers the arguments only: d/dw through the closure would be lost
    def outer(w, power):
        @fg.custom_vjp
        def scale(x):
            return x * w

        scale.defvjp(lambda x: (scale(x), None), lambda res, g: (g * w,))
        return scale(3.0) * w ** (power - 1)

    for run in (lambda: fg.grad(outer)(2.0, 1), lambda: fg.grad(outer)(2.0, 2), lambda: fg.jvp(lambda w: outer(w, 1), (3.0,), (1.0,)),
                lambda: fg.jit(fg.grad(outer), static_argnums=1)(2.0, 1)):
        with pytest.raises(TypeError, match="reads a node of a running transform that is not one of its arguments"):
            run()

    # passed as an argument, it is differentiated: d/dw (3 w) = 3, d/dw (3 w^2) = 12 at w = 2
    @fg.custom_vjp
    def scale2(x, w):
        return x * w

    scale2.defvjp(lambda x, w: (x * w, (x, w)), lambda res, g: (g * res[1], g * res[0]))
    assert fg.grad(lambda w: scale2(3.0, w))(2.0) == 3.0
    assert fg.grad(lambda w: scale2(3.0, w) * w)(2.0) == 12.0
    c = fg.var(5.0)  # a variable of no running transform is a constant there: fine

    @fg.custom_vjp
    def by_c(x):
        return x * c

    by_c.defvjp(lambda x: (by_c(x), None), lambda res, g: (g * c.value,))
    assert fg.grad(by_c)(2.0) == 5.0


def test_forward_mode_of_a_custom_vjp_whose_backward_is_not_linear_in_g_is_an_error():
    @fg.custom_vjp
    def clip_gradient(x):
        return x

    clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (fg.maximum(-0.5, fg.minimum(0.5, g)),))
    loss = lambda w: 10.0 * clip_gradient(w) ** 2  # noqa: E731
    assert fg.grad(loss)(3.0) == 0.5  # reverse mode: the clipped gradient, as asked
    for run in (lambda: fg.jvp(loss, (3.0,), (1.0,)), lambda: fg.jacfwd(loss)(3.0), lambda: fg.linearize(loss, 3.0),
                lambda: fg.hessian(loss)(3.0)):
        with pytest.raises(TypeError, match="not linear in the cotangent g .at g = 1 it gives 0.5, at g = 2 0.5"):
            run()

    # a backward linear in g is its own forward rule: the true derivative sigmoid(x)
    @fg.custom_vjp
    def softplus(x):
        return fg.maximum(x, 0.0) + fg.log1p(fg.exp(-fg.abs(x)))

    softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * fg.sigmoid(x),))
    assert fg.jvp(softplus, (0.3,), (2.0,))[1] == 2.0 * fg.sigmoid(0.3)
    assert fg.hessian(softplus)(0.0) == 0.25


def test_a_custom_vjp_that_divides_by_zero_follows_ieee_in_every_mode():
    @fg.custom_vjp
    def f(x):
        return 1.0 / x

    f.defvjp(lambda x: (1.0 / x, x), lambda r, g: (-g / (r * r),))
    assert f(0.0) == math.inf and f(-0.0) == -math.inf  # as the nodes give it, not ZeroDivisionError
    assert fg.grad(f)(0.0) == -math.inf == fg.jit(fg.grad(f))(0.0) == fg.vjp(f, 0.0)[1](1.0)[0]
    assert fg.grad(f)(2.0) == -0.25 == fg.jit(fg.grad(f))(2.0)


def test_a_rule_written_with_math_raises_at_second_order_instead_of_giving_zero():
    msin = fg.primitive("extend_test_msin", math.sin, vjp=(lambda g, ans, x: g * math.cos(x),))
    assert fg.grad(msin)(1.0) == math.cos(1.0)  # first order: the rule runs on floats
    for run in (lambda: fg.grad(fg.grad(msin))(1.0), lambda: fg.hessian(msin)(1.0), lambda: fg.jit(fg.grad(msin))(1.0)):
        with pytest.raises(TypeError, match=r"float\(\) of a traced node"):
            run()
    good = fg.primitive("extend_test_gsin", math.sin, vjp=(lambda g, ans, x: g * fg.cos(x),))
    assert fg.grad(fg.grad(good))(1.0) == -math.sin(1.0)


@pytest.mark.parametrize("bwd", [
    lambda res, g: (3.0 * fg.abs(g),),
    lambda res, g: (3.0 * fg.relu(g),),
    lambda res, g: (fg.maximum(-10.0, fg.minimum(10.0, 3.0 * g)),),
    lambda res, g: (g + 1.0,),
])
def test_forward_mode_catches_backwards_that_are_not_linear_in_g(bwd):
    @fg.custom_vjp
    def f(x):
        return 3.0 * x

    f.defvjp(lambda x: (3.0 * x, None), bwd)
    with pytest.raises(TypeError, match="not linear in the cotangent g"):
        fg.jvp(f, (1.0,), (10.0,))


def test_forward_mode_takes_a_linear_backward_whose_values_underflow_or_overflow():
    # scaled by 2^20 or 2^-20 such values are not exactly scaled: the
    # linearity probe says nothing there, and must not call the rule nonlinear
    @fg.custom_vjp
    def tiny(x):
        return x * 1e-10 * 1e-300

    tiny.defvjp(lambda x: (tiny(x), None), lambda res, g: (g * 1e-10 * 1e-300,))
    want = 1.0 * 1e-10 * 1e-300  # subnormal
    assert fg.grad(tiny)(1.0) == want == fg.jacfwd(tiny)(1.0) == fg.jvp(tiny, (1.0,), (1.0,))[1]

    @fg.custom_vjp
    def prod(x, y):
        return x * y

    # g * y * x / y overflows at g = 2^20 for y = 1e303, though it is linear in g
    prod.defvjp(lambda x, y: (prod(x, y), (x, y)), lambda r, g: (g * r[1], g * r[0] * r[1] / r[1]))
    assert fg.jacfwd(prod, argnums=(0, 1))(2.0, 1e303) == fg.grad(prod, argnums=(0, 1))(2.0, 1e303) == (1e303, 2.0)


@pytest.mark.parametrize("bwd", [
    lambda x, g: (fg.abs(g) * x,),
    lambda x, g: (fg.relu(g) * x,),
    lambda x, g: (fg.maximum(-0.5, fg.minimum(0.5, g)) * x,),
    lambda x, g: (g * g * x,),
    lambda x, g: (fg.sqrt(g - 1.5) * x,),  # nan at g = 1 only
])
def test_forward_mode_catches_backwards_not_linear_in_g_even_with_subnormal_values(bwd):
    # the tolerance for a subnormal's rounding must not let a clip, a sign or a square through
    @fg.custom_vjp
    def f(x):
        return x * 1.0

    f.defvjp(lambda x: (x * 1.0, x), bwd)
    for x in (1e-310, 3.0):
        with pytest.raises(TypeError, match="not linear in the cotangent g"):
            fg.jvp(f, (x,), (1.0,))


def _doubler():
    @fg.custom_vjp
    def double(x):
        return x * 2.0

    double.defvjp(lambda x: (x * 2.0, None), lambda res, g: (2.0 * g,))
    return double


def test_a_custom_vjp_made_at_every_call_is_freed_and_its_row_shrinks():
    import gc
    import weakref

    refs, names = [], set()
    for k in range(50):
        d = _doubler()
        refs.append(weakref.ref(d))
        names.add(d._prim.name)
        # used eagerly, under grad, jit and vmap
        assert d(1.5) == 3.0 and fg.grad(lambda x: d(x) * x)(1.5) == 6.0
        assert fg.jit(fg.grad(lambda x: d(x) * x))(2.0) == 8.0
        assert fg.vmap(fg.grad(lambda x: d(x) * x))([1.0, 2.0]) == [4.0, 8.0]
        del d
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    # every one got a name of its own, never given again (a node of a deleted one
    # must not find a newer one's rules), and its row is a shared stand-in now
    assert len(names) == 50
    assert all(fg.PRIMITIVES[n].label == "deleted custom_vjp" and n not in fg.expr.OPS for n in names)


def test_a_custom_vjp_lives_as_long_as_its_nodes_or_replays():
    import gc
    import weakref

    d = _doubler()
    ref = weakref.ref(d)
    x = fg.var(3.0)
    y = d(x) + x
    del d
    gc.collect()
    assert ref() is not None and fg.gradients(y, wrt=[x]) == {x: 3.0}  # its node holds it
    del y
    gc.collect()
    assert ref() is None

    # defined inside the function it serves, to close over a value (as with JAX)
    def f(x, k=3.0):
        @fg.custom_vjp
        def scale(v):
            return v * k

        scale.defvjp(lambda v: (v * k, None), lambda res, g: (g * k,))
        return scale(x) * x

    assert fg.grad(f)(2.0) == 12.0 and fg.hessian(f)(2.0) == 6.0 and fg.jvp(f, (2.0,), (1.0,)) == (12.0, 12.0)
    assert fg.vmap(fg.grad(f))([2.0, 3.0]) == [12.0, 18.0]
    j, jg = fg.jit(f), fg.jit(fg.grad(f))
    assert (j(2.0), jg(2.0)) == (12.0, 12.0)
    gc.collect()
    assert (j(4.0), jg(3.0)) == (48.0, 18.0)  # the replays hold the custom_vjp their trace made


def test_a_custom_vjp_backward_runs_at_every_pass():
    scale = {"lam": 1.0}

    @fg.custom_vjp
    def reverse_gradient(x):
        return x

    reverse_gradient.defvjp(lambda x: (x, None), lambda res, g: (-scale["lam"] * g,))
    x = 0.7
    assert fg.grad(reverse_gradient)(x) == -1.0
    scale["lam"] = 5.0  # state that f_bwd reads, changed between two passes at the same number
    assert fg.grad(reverse_gradient)(x) == -5.0 and fg.vjp(reverse_gradient, x)[1](1.0) == (-5.0,)


def test_a_custom_vjp_keeps_no_graph_alive():
    import gc
    import weakref

    d = _doubler()
    seen = []

    def f(x):
        seen.append(weakref.ref(x))
        for _ in range(2000):
            x = x * 1.0001
        seen.append(weakref.ref(x))
        return d(x) * x

    # traced by jit, the backward pass runs on nodes
    j = fg.jit(fg.grad(f))
    assert j(1.0) == pytest.approx(4 * 1.0001 ** 4000, rel=1e-12)
    del j
    gc.collect()
    # the memo that spares f_bwd a second run per node holds its nodes weakly
    assert len(seen) == 2 and [r() for r in seen] == [None, None]
    assert fg.grad(fg.grad(lambda x: d(x) * x))(1.0) == 4.0  # and still works at second order


def test_a_copy_or_a_named_node_of_a_custom_vjp_holds_it_too():
    import copy
    import gc
    import pickle

    for make_copy in (lambda y: fg.named(y, "n"), copy.copy, copy.deepcopy, lambda y: pickle.loads(pickle.dumps(y))):
        a = fg.var(3.0)
        y = _doubler()(a)  # the custom_vjp's only holder is this node
        y2 = make_copy(y)  # a new node of the same op
        assert y2 is not y and y2.op == y.op
        del y
        gc.collect()
        got = fg.gradients(y2)
        assert [got[n] for n in got if n.op == ""] == [2.0]
