"""Forward mode and the transform set: jvp, linearize, vjp, jacfwd, hvp, and their compositions."""

from __future__ import annotations

import math
import random
import struct

import pytest

import fungrad as fg
from test_numerics import random_program, run


def D(f, mode):
    """The derivative of a scalar function of one float, by forward or reverse mode."""
    if mode == "rev":
        return fg.grad(f)
    return lambda x: fg.jvp(f, (x,), (1.0,))[1]


MODES = ["fwd", "rev"]


# ------------------------------------------------------------------ values


def test_jvp_gives_the_value_and_the_directional_derivative():
    f = lambda x, y: x * fg.sin(y) + y**2  # noqa: E731
    x, y = 1.5, 0.3
    assert fg.jvp(f, (x, y), (1.0, 0.0)) == (f(x, y), math.sin(y))
    assert fg.jvp(f, (x, y), (0.0, 1.0)) == (f(x, y), x * math.cos(y) + 2 * y)
    out, t = fg.jvp(f, (x, y), (2.0, -1.0))
    assert t == pytest.approx(2 * math.sin(y) - (x * math.cos(y) + 2 * y), rel=1e-15)


def test_jvp_keeps_the_output_structure_and_zero_for_constant_outputs():
    f = lambda p: {"prod": p["a"] * p["b"], "const": 3.0, "pair": (p["a"], fg.exp(p["b"]))}  # noqa: E731
    out, t = fg.jvp(f, ({"a": 2.0, "b": 0.0},), ({"a": 1.0, "b": 1.0},))
    assert out == {"prod": 0.0, "const": 3.0, "pair": (2.0, 1.0)}
    assert t == {"prod": 2.0, "const": 0.0, "pair": (1.0, 1.0)}
    assert all(type(v) is float for v in fg.tree.leaves(t))


def test_linearize_equals_jvp_for_every_tangent_and_does_not_run_f_again():
    calls = []

    def f(v):
        calls.append(1)
        return [fg.tanh(v[0] * v[1]), v[0] ** 3]

    y, f_jvp = fg.linearize(f, [0.4, -1.2])
    assert calls == [1] and y == f([0.4, -1.2])
    calls.clear()
    rng = random.Random(0)
    for _ in range(5):
        t = [rng.uniform(-2, 2), rng.uniform(-2, 2)]
        assert f_jvp(t) == fg.jvp(f, ([0.4, -1.2],), (t,))[1]
    assert len(calls) == 5  # only the jvp calls above ran f


def test_vjp_is_callable_many_times_and_shaped_like_the_primals():
    f = lambda p, s: [p["w"] * s, p["w"] + s]  # noqa: E731
    out, vjp_fn = fg.vjp(f, {"w": 2.0}, 3.0)
    assert out == [6.0, 5.0]
    assert vjp_fn([1.0, 0.0]) == ({"w": 3.0}, 2.0)
    assert vjp_fn([0.0, 1.0]) == ({"w": 1.0}, 1.0)
    assert vjp_fn([2.0, 1.0]) == ({"w": 7.0}, 5.0)


@pytest.mark.parametrize("seed", range(10))
def test_forward_and_reverse_jacobians_agree_on_random_programs(seed):
    rng = random.Random(seed)
    prog = random_program(rng, 3, rng.randrange(4, 14))
    f = lambda v: [run(prog, v, 0), v[0] * run(prog, v, 0), v[1] - v[2]]  # noqa: E731
    xs = [rng.uniform(-1.5, 1.5) for _ in range(3)]
    jf, jr = fg.jacfwd(f)(xs), fg.jacobian(f)(xs)
    for rf, rr in zip(jf, jr):
        assert rf == pytest.approx(rr, rel=1e-12, abs=1e-13)
    # the jvp of each basis direction is a column
    for j in range(3):
        e = [1.0 if k == j else 0.0 for k in range(3)]
        col = fg.jvp(f, (xs,), (e,))[1]
        assert col == pytest.approx([row[j] for row in jr], rel=1e-12, abs=1e-13)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_hvp_and_hessian_agree_with_torch(torch, seed):
    rng = random.Random(100 + seed)
    n = 3
    prog = random_program(rng, n, rng.randrange(4, 12))
    xs = [rng.uniform(-1.5, 1.5) for _ in range(n)]
    v = [rng.uniform(-1, 1) for _ in range(n)]
    f = lambda u: run(prog, u, 0)  # noqa: E731
    tf = lambda u: run(prog, list(u), 1)  # noqa: E731
    th = torch.func.hessian(tf)(torch.tensor(xs))
    assert fg.hessian(f)(xs) == [pytest.approx(r, rel=1e-9, abs=1e-10) for r in th.tolist()]
    want = (th @ torch.tensor(v)).tolist()
    assert fg.hvp(f, (xs,), (v,)) == pytest.approx(want, rel=1e-9, abs=1e-10)
    _, tj = torch.func.jvp(tf, (torch.tensor(xs),), (torch.tensor(v),))
    assert fg.jvp(f, (xs,), (v,))[1] == pytest.approx(tj.item(), rel=1e-11, abs=1e-12)
    _, tvjp = torch.func.vjp(tf, torch.tensor(xs))
    (tg,) = tvjp(torch.tensor(1.5))
    assert fg.vjp(f, xs)[1](1.5)[0] == pytest.approx(tg.tolist(), rel=1e-11, abs=1e-12)


@pytest.mark.parametrize("name", [n for n, p in fg.PRIMITIVES.items() if p.public and p.arity == 1])
@pytest.mark.parametrize("x", [-2.5, -1.0, -0.5, 0.0, 0.3, 1.0, 3.0])
def test_forward_tangents_equal_reverse_gradients_for_every_unary_primitive(name, x):
    f = getattr(fg, name)
    fwd, rev = fg.jvp(f, (x,), (1.0,))[1], fg.grad(f)(x)
    assert fwd == rev or (math.isnan(fwd) and math.isnan(rev)), (name, x, fwd, rev)
    # second derivatives in all four mode combinations
    vals = [D(D(f, a), b)(x) for a in MODES for b in MODES]
    ref = vals[-1]
    for v in vals:
        assert v == pytest.approx(ref, rel=1e-12, abs=1e-300) or (math.isnan(v) and math.isnan(ref)), (name, x, vals)


@pytest.mark.parametrize("name", [n for n, p in fg.PRIMITIVES.items() if p.public and p.arity == 2])
def test_forward_tangents_equal_reverse_gradients_for_every_binary_primitive(name):
    f = getattr(fg, name)
    for a, b in [(1.5, 0.5), (2.0, 2.0), (-1.0, 3.0), (0.0, 1.0), (3.0, -2.0)]:
        rev = fg.grad(f, argnums=(0, 1))(a, b)
        fwd = (fg.jvp(f, (a, b), (1.0, 0.0))[1], fg.jvp(f, (a, b), (0.0, 1.0))[1])
        for u, v in zip(fwd, rev):
            assert u == v or (math.isnan(u) and math.isnan(v)), (name, a, b, fwd, rev)


@pytest.mark.slow  # about 4 s: the only fast test that imports PyTorch, and torch.func
def test_the_modes_differ_where_pytorch_differs_zero_times_infinity(torch):
    # reverse mode masks an infinite cotangent at relu's kink; forward mode
    # multiplies the tangent 0 by the infinite factor: nan, as torch.func.jvp gives
    big = float("inf")
    f = lambda x: big * fg.relu(x)  # noqa: E731
    assert fg.grad(f)(-1.0) == 0.0
    assert math.isnan(fg.jvp(f, (-1.0,), (1.0,))[1])
    tf = lambda x: big * torch.relu(x)  # noqa: E731
    assert torch.func.grad(tf)(torch.tensor(-1.0)).item() == 0.0
    assert math.isnan(torch.func.jvp(tf, (torch.tensor(-1.0),), (torch.tensor(1.0),))[1].item())


def test_kinks_give_the_same_answer_in_both_modes():
    for f, x, want in [(fg.relu, 0.0, 0.0), (fg.abs, 0.0, 0.0), (lambda x: fg.maximum(x, 1.0), 1.0, 0.5)]:
        assert fg.grad(f)(x) == want and fg.jvp(f, (x,), (1.0,))[1] == want


# ------------------------------------------------------------------ nesting: no perturbation confusion


@pytest.mark.parametrize("outer", MODES)
@pytest.mark.parametrize("inner", MODES)
def test_siskind_pearlmutter_nested_derivative(outer, inner):
    # d/dx (x * d/dy (x + y)) = d/dx (x * 1) = 1; confusing the two
    # perturbations gives 2
    for x in (0.5, 1.0, 3.0):
        f = lambda x: x * D(lambda y: x + y, inner)(1.0)  # noqa: E731
        assert D(f, outer)(x) == 1.0


@pytest.mark.parametrize("outer", MODES)
@pytest.mark.parametrize("inner", MODES)
def test_nested_closure_over_the_outer_variable(outer, inner):
    # d/dx [x * d/dy (x * y)] = d/dx [x * x] = 2x (JAX's and ReverseDiff's perturbation tests)
    f = lambda x: x * D(lambda y: x * y, inner)(2.0)  # noqa: E731
    assert D(f, outer)(3.0) == 6.0


@pytest.mark.parametrize("modes", [(a, b, c) for a in MODES for b in MODES for c in MODES])
def test_three_levels_in_every_mix_of_modes(modes):
    a, b, c = modes
    # d/dx d/dy d/dz (x^2 y^3 z) at (x, y, z) = (2, 3, 5): d/dz = x^2 y^3, d/dy = 3 x^2 y^2, d/dx = 6 x y^2
    def fz(x, y):
        return D(lambda z: x**2 * y**3 * z, c)(5.0)

    def fy(x):
        return D(lambda y: fz(x, y), b)(3.0)

    assert D(fy, a)(2.0) == pytest.approx(6 * 2.0 * 9.0, rel=1e-14)


def test_jvp_of_jvp_is_the_second_derivative():
    f = lambda x: x**4  # noqa: E731
    d2 = fg.jvp(lambda x: fg.jvp(f, (x,), (1.0,))[1], (2.0,), (1.0,))[1]
    assert d2 == 12 * 2.0**2


# ------------------------------------------------------------------ with jit


def test_jit_of_jvp_and_hvp_replays_exactly():
    f = lambda v: fg.tanh(v[0] * v[1]) + v[0] ** 3  # noqa: E731
    jj = fg.jit(lambda x, t: fg.jvp(f, (x,), (t,)))
    jh = fg.jit(lambda x, t: fg.hvp(f, (x,), (t,)))
    rng = random.Random(3)
    for _ in range(5):
        x = [rng.uniform(-2, 2), rng.uniform(-2, 2)]
        t = [rng.uniform(-1, 1), rng.uniform(-1, 1)]
        assert jj(x, t) == fg.jvp(f, (x,), (t,))
        assert jh(x, t) == fg.hvp(f, (x,), (t,))
    assert jj.cache_size() == 1 and jh.cache_size() == 1


def test_grad_of_jvp_and_jvp_of_grad_and_jit_inside():
    f = lambda x: fg.sin(x) * x  # noqa: E731
    d2 = -math.sin(0.7) * 0.7 + 2 * math.cos(0.7)
    assert fg.grad(lambda x: fg.jvp(f, (x,), (1.0,))[1])(0.7) == pytest.approx(d2, rel=1e-15)
    assert fg.jvp(fg.grad(f), (0.7,), (1.0,))[1] == pytest.approx(d2, rel=1e-15)
    assert fg.jvp(fg.jit(fg.grad(fg.jit(f))), (0.7,), (1.0,))[1] == pytest.approx(d2, rel=1e-15)
    assert fg.jit(fg.grad(lambda x: fg.jvp(fg.jit(f), (x,), (1.0,))[1]))(0.7) == pytest.approx(d2, rel=1e-15)


def test_linearize_and_vjp_inside_grad_are_differentiated():
    f = lambda x: x**3  # noqa: E731
    assert fg.grad(lambda x: fg.linearize(f, x)[1](1.0))(2.0) == 12.0
    assert fg.grad(lambda x: fg.vjp(f, x)[1](1.0)[0])(2.0) == 12.0


def _closures_of(kind, f, x):
    """``f``'s derivative at ``x`` as a function of a direction: linearize's f_jvp or vjp's vjp_fn."""
    if kind == "linearize":
        return fg.linearize(f, x)[1]
    _, vjp_fn = fg.vjp(f, x)
    return lambda c: vjp_fn(c)[0]


@pytest.mark.parametrize("kind", ["linearize", "vjp"])
def test_a_derivative_function_made_earlier_is_transformed_as_the_linear_map_it_is(kind):
    # f_jvp(t) = f'(2) t: made outside, then differentiated, compiled, batched
    f = lambda x: fg.sin(x) * x  # noqa: E731
    d = math.cos(2.0) * 2.0 + math.sin(2.0)
    lin = _closures_of(kind, f, 2.0)
    assert lin(1.0) == pytest.approx(d, rel=1e-15)
    assert fg.grad(lin)(1.5) == pytest.approx(d, rel=1e-15)
    assert fg.grad(lin)(-7.0) == fg.grad(lin)(1.5)
    assert fg.jvp(lin, (1.5,), (1.0,))[1] == pytest.approx(d, rel=1e-15)
    assert fg.jacfwd(lin)(0.3) == pytest.approx(d, rel=1e-15) and fg.jacrev(lin)(0.3) == pytest.approx(d, rel=1e-15)
    assert fg.hessian(lambda t: lin(t) * lin(t))(1.0) == pytest.approx(2 * d * d, rel=1e-14)
    jl = fg.jit(lin)
    assert [jl(1.5), jl(3.0), jl(-2.0)] == [lin(1.5), lin(3.0), lin(-2.0)]  # a new input is not the first one's
    assert fg.vmap(lin)([1.5, 2.0, -1.0]) == [lin(1.5), lin(2.0), lin(-1.0)]
    assert fg.jit(fg.grad(lin))(4.0) == fg.grad(lin)(4.0)


def test_a_linearized_map_over_a_batch_is_transformed_too():
    h = lambda a: fg.tanh(a) * a  # noqa: E731
    d0, d1 = fg.grad(h)(0.5), fg.grad(h)(1.5)
    _, lin = fg.linearize(lambda v: fg.vmap(h)(v), [0.5, 1.5])
    assert lin([1.0, 0.0]) == [d0, 0.0] and lin([0.0, 1.0]) == [0.0, d1]
    both = lambda t: lin([t, 2.0 * t])  # noqa: E731
    assert fg.grad(lambda t: both(t)[0] + both(t)[1])(0.7) == pytest.approx(d0 + 2 * d1, rel=1e-15)
    assert fg.vmap(lambda t: lin([t, t])[1])([1.0, 2.0]) == [lin([1.0, 1.0])[1], lin([2.0, 2.0])[1]]
    jb = fg.jit(both)
    assert jb(1.0) == both(1.0) and jb(2.0) == both(2.0) and jb(2.0) != jb(1.0)


def test_hessian_has_aux_and_jacfwd_has_aux():
    f = lambda v: (v[0] ** 2 * v[1], {"note": "aux"})  # noqa: E731
    h, aux = fg.hessian(f, has_aux=True)([3.0, 2.0])
    assert h == [[4.0, 6.0], [6.0, 0.0]] and aux == {"note": "aux"}
    j, aux = fg.jacfwd(lambda x: ([x * x, 3 * x], x * 10), has_aux=True)(2.0)
    assert j == [4.0, 3.0] and aux == 20.0


def test_check_grads_checks_both_modes():
    fg.check_grads(lambda x, y: x**3 * fg.sin(y), (1.5, 0.3), order=2, modes=("fwd", "rev"))
    bad = fg.primitive("fwd_test_wrong_rule", lambda x: x * x, vjp=(lambda g, ans, x: g * 3.0 * x,))
    with pytest.raises(AssertionError, match="forward-mode"):
        fg.check_grads(bad, (1.5,), modes=("fwd",))
    with pytest.raises(ValueError, match="modes"):
        fg.check_grads(bad, (1.5,), modes=("sideways",))


# ------------------------------------------------------------------ bad input


def test_bad_tangents_name_the_argument_and_path():
    f = lambda p, x: p["w"] * x  # noqa: E731
    with pytest.raises(ValueError, match=r"2 primals but 1 tangents"):
        fg.jvp(f, ({"w": 1.0}, 2.0), ({"w": 1.0},))
    with pytest.raises(ValueError, match=r"tangents\[0\] has structure"):
        fg.jvp(f, ({"w": 1.0}, 2.0), ({"v": 1.0}, 0.0))
    with pytest.raises(TypeError, match=r"tangents\[0\] at \['w'\] is str"):
        fg.jvp(f, ({"w": 1.0}, 2.0), ({"w": "one"}, 0.0))
    with pytest.raises(TypeError, match=r"tangents\[1\] is bool"):
        fg.jvp(f, ({"w": 1.0}, 2.0), ({"w": 1.0}, True))
    with pytest.raises(TypeError, match="primals must be a tuple"):
        fg.jvp(f, 2.0, 1.0)
    _, vjp_fn = fg.vjp(lambda x: [x, x * x], 2.0)
    with pytest.raises(ValueError, match="cotangent has structure"):
        vjp_fn(1.0)
    with pytest.raises(TypeError, match=r"the cotangent at \[1\] is str"):
        vjp_fn([1.0, "x"])
    _, f_jvp = fg.linearize(lambda x: x * x, 2.0)
    with pytest.raises(ValueError, match="1 primal but 2 tangents"):
        f_jvp(1.0, 2.0)
    with pytest.raises(TypeError, match="expected a function"):
        fg.jvp(3, (1.0,), (1.0,))


EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 20.0, -20.0, 1000.0, -1000.0,
         math.inf, -math.inf, math.nan, 1e-310, 5e-324]


def _bits(x):
    return struct.pack("<d", x)


@pytest.mark.parametrize("name", [n for n, p in fg.PRIMITIVES.items() if p.public and p.arity == 1])
def test_at_the_edge_points_forward_equals_reverse_bit_for_bit(name):
    # the first derivative: the same float operations in both modes, so the
    # same bits (signed zeros, infinities and nan included)
    f = getattr(fg, name)
    for x in EDGES:
        rev, fwd = fg.grad(f)(x), fg.jvp(f, (x,), (1.0,))[1]
        assert _bits(rev) == _bits(fwd) or (rev != rev and fwd != fwd), (name, x, rev, fwd)
        # second derivatives: forward over forward and reverse over reverse
        # round in another order, so they agree to rounding (the sign of a
        # zero may differ); softplus at its threshold 20 loses digits to
        # cancellation in both
        rev2 = fg.grad(fg.grad(f))(x)
        fwd2 = fg.jvp(lambda y: fg.jvp(f, (y,), (1.0,))[1], (x,), (1.0,))[1]
        if rev2 != rev2 or fwd2 != fwd2:
            assert rev2 != rev2 and fwd2 != fwd2, (name, x, rev2, fwd2)
        else:
            assert fwd2 == pytest.approx(rev2, rel=1e-7, abs=1e-300), (name, x, rev2, fwd2)


def test_hvp_errors_name_hvp():
    f = lambda v: v[0] ** 2 * v[1]  # noqa: E731
    with pytest.raises(ValueError, match=r"^hvp: 1 primal but 2 tangents"):
        fg.hvp(f, ([3.0, 2.0],), ([1.0, 0.0], [0.0]))
    with pytest.raises(ValueError, match=r"^hvp: tangents\[0\] has structure"):
        fg.hvp(f, ([3.0, 2.0],), ([1.0],))
    assert fg.hvp(f, ([3.0, 2.0],), ([1.0, 0.0],)) == [4.0, 6.0]
