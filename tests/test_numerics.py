"""Every primitive at edge points, and random expressions, against PyTorch in float64."""

from __future__ import annotations

import math
import random

import pytest

import fungrad as fg

EDGE = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 710.0, -710.0, 1000.0, -1000.0, 1e-300, -1e-300, 5e-324,
        math.inf, -math.inf, math.nan]
BIN_EDGE = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, 710.0, -1000.0, math.inf, -math.inf]

UNARY = ["exp", "log", "tanh", "relu", "sigmoid", "sqrt", "sin", "cos", "abs", "neg"]
BINARY = ["add", "sub", "mul", "div", "pow"]


def same(a: float, b: float, rel: float = 1e-12) -> bool:
    """Equal as IEEE values: nan with nan, signed zeros and infinities exactly, else to ``rel``."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == 0.0 and b == 0.0:
        return math.copysign(1.0, a) == math.copysign(1.0, b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rel * max(abs(a), abs(b))


def tfn(torch, name):
    return getattr(torch, name)


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("x", EDGE, ids=repr)
def test_unary_value_and_derivative_match_torch(torch, name, x):
    t = torch.tensor(x, requires_grad=True)
    y = tfn(torch, name)(t)
    y.backward()
    f = getattr(fg, name)
    v, g = fg.value_and_grad(f)(x)
    assert same(v, y.item()), (name, x, v, y.item())
    assert f(x) == v or (math.isnan(v) and math.isnan(f(x)))  # plain floats agree with nodes
    if math.isnan(x) and name == "relu":
        return  # PyTorch passes the gradient through relu at nan; fungrad gives 0 (no kink rule covers nan)
    assert same(g, t.grad.item()), (name, x, g, t.grad.item())


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("x", BIN_EDGE, ids=repr)
def test_binary_values_and_derivatives_match_torch(torch, name, x):
    for y in BIN_EDGE:
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.tensor(y, requires_grad=True)
        z = tfn(torch, name)(tx, ty)
        z.backward()
        v, (gx, gy) = fg.value_and_grad(getattr(fg, name), argnums=(0, 1))(x, y)
        assert same(v, z.item()), (name, x, y, v, z.item())
        assert same(gx, tx.grad.item()), (name, x, y, "dx", gx, tx.grad.item())
        assert same(gy, ty.grad.item()), (name, x, y, "dy", gy, ty.grad.item())


@pytest.mark.parametrize("p", [0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, -0.5, 1 / 3])
@pytest.mark.parametrize("x", [0.0, -0.0, 1.0, -1.0, 2.0, -8.0, 0.5, math.inf, -math.inf], ids=repr)
def test_power_with_a_number_exponent_matches_torch(torch, x, p):
    if p in (0.5, -0.5) and x in (-math.inf, 0.0) and math.copysign(1.0, x) < 0:
        # PyTorch computes x ** 0.5 as sqrt(x) when the exponent is a Python number, which
        # differs from its own pow with a tensor exponent (C's pow) at -0.0 and -inf.
        # fungrad has one pow, C's; see the numerics page.
        assert fg.pow(x, p) == torch.pow(torch.tensor(x), torch.tensor(p)).item()
        return
    t = torch.tensor(x, requires_grad=True)
    z = torch.pow(t, p)
    z.backward()
    v, g = fg.value_and_grad(lambda a: a**p)(x)
    assert same(v, z.item()), (x, p, v, z.item())
    assert same(g, t.grad.item()), (x, p, g, t.grad.item())


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("x", [-2.5, -0.7, 0.3, 1.1, 3.0])
def test_unary_second_and_third_derivatives_match_torch(torch, name, x):
    if name in ("log", "sqrt") and x < 0:
        x = -x
    t = torch.tensor(x, requires_grad=True)
    derivs = [tfn(torch, name)(t)]
    for _ in range(3):
        d = derivs[-1]
        # a derivative that no longer depends on x (abs, neg) has all higher ones zero
        derivs.append(torch.autograd.grad(d, t, create_graph=True)[0] if d.requires_grad else torch.zeros(()))
    f = getattr(fg, name)
    for k in range(1, 4):
        f = fg.grad(f)
        assert same(f(x), derivs[k].item(), 1e-10) or (f(x) == 0.0 and derivs[k].item() == 0.0), (k, name, x)


def test_edge_values_named_in_the_design():
    assert fg.div(1.0, 0.0) == math.inf
    assert fg.log(0.0) == -math.inf
    assert math.isnan(fg.log(-1.0)) and math.isnan(fg.sqrt(-1.0))
    assert fg.exp(1000.0) == math.inf
    assert fg.tanh(1000.0) == 1.0 and fg.sigmoid(-1000.0) == 0.0
    assert math.isnan(fg.pow(-8.0, 1 / 3))
    assert fg.grad(fg.relu)(0.0) == 0.0 and fg.grad(fg.abs)(0.0) == 0.0
    x = fg.var(0.0)
    assert (1 / x).value == math.inf and (x**-1).value == math.inf and (0 ** x).value == 1.0
    assert fg.grad(lambda x: x**0)(0.0) == 0.0


# ---------------------------------------------------------------- random expressions

# Each op maps to (fungrad, torch) implementations of the same formula. Guards such
# as 1 + y*y keep random expressions in the domain where values are finite.
RAND_OPS = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / (1 + b * b), lambda a, b: a / (1 + b * b)),
    "pow": (lambda a, b: (1.5 + a.tanh()) ** b.sin(), lambda a, b: (1.5 + a.tanh()) ** b.sin()),
    "tanh": (lambda a: a.tanh(), lambda a: a.tanh()),
    "sigmoid": (lambda a: a.sigmoid(), lambda a: a.sigmoid()),
    "exp": (lambda a: a.tanh().exp(), lambda a: a.tanh().exp()),
    "log": (lambda a: (1 + a * a).log(), lambda a: (1 + a * a).log()),
    "sqrt": (lambda a: (0.5 + a * a).sqrt(), lambda a: (0.5 + a * a).sqrt()),
    "sin": (lambda a: a.sin(), lambda a: a.sin()),
    "cos": (lambda a: a.cos(), lambda a: a.cos()),
    "neg": (lambda a: -a, lambda a: -a),
    "square": (lambda a: a**2, lambda a: a**2),
    "rconst": (lambda a: 2.5 - a * 0.5, lambda a: 2.5 - a * 0.5),
}


def random_program(rng: random.Random, nvars: int, size: int) -> list[tuple]:
    """A straight-line program: each step applies an op to earlier values."""
    prog = []
    for i in range(size):
        name = rng.choice(list(RAND_OPS))
        arity = RAND_OPS[name][0].__code__.co_argcount
        avail = nvars + i
        prog.append((name, tuple(rng.randrange(avail) for _ in range(arity))))
    return prog


def run(prog, xs, which):
    vals = list(xs)
    for name, args in prog:
        vals.append(RAND_OPS[name][which](*(vals[a] for a in args)))
    return vals[-1] + 0.1 * vals[len(xs)]


@pytest.mark.parametrize("seed", range(25))
def test_random_expressions_values_gradients_hessians_match_torch(torch, seed):
    rng = random.Random(seed)
    n = 3
    prog = random_program(rng, n, rng.randrange(4, 14))
    xs = [rng.uniform(-1.5, 1.5) for _ in range(n)]
    f = lambda v: run(prog, v, 0)  # noqa: E731
    t = torch.tensor(xs, requires_grad=True)
    ty = run(prog, list(t), 1)
    (tg,) = torch.autograd.grad(ty, t, create_graph=True)
    th = torch.stack([torch.autograd.grad(tg[i], t, retain_graph=True, allow_unused=True)[0]
                      if tg[i].requires_grad else torch.zeros(n) for i in range(n)])
    value, g = fg.value_and_grad(f)(xs)
    assert value == pytest.approx(ty.item(), rel=1e-12, abs=1e-12)
    assert g == pytest.approx(tg.tolist(), rel=1e-10, abs=1e-12)
    h = fg.hessian(f)(xs)
    assert h == [pytest.approx(row, rel=1e-9, abs=1e-10) for row in th.tolist()]
    # the Hessian of a smooth function is symmetric
    assert all(h[i][j] == pytest.approx(h[j][i], rel=1e-9, abs=1e-10) for i in range(n) for j in range(n))


@pytest.mark.parametrize("k", [0.0, 1.0, 2.0, 3.0, 4.0])
@pytest.mark.parametrize("x", [0.0, -0.0, 1.5, -2.0])
def test_higher_derivatives_of_powers_are_finite_at_zero_and_match_torch(torch, k, x):
    # the branch of the pow rule that where() does not pick must not leak 0 * inf = nan
    t = torch.tensor(x, requires_grad=True)
    derivs = [t**k]
    for _ in range(4):
        d = derivs[-1]
        derivs.append(torch.autograd.grad(d, t, create_graph=True)[0] if d.requires_grad else torch.zeros(()))
    f = lambda v: v**k  # noqa: E731
    for order in range(1, 5):
        f = fg.grad(f)
        got, want = f(x), derivs[order].item()
        assert got == pytest.approx(want, rel=1e-12, abs=1e-300), (k, x, order, got, want)
    with fg.debug_nans():  # and no unused inf trips the checks
        fg.grad(fg.grad(fg.grad(lambda v: v**k)))(x)
