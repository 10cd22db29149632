"""Every primitive of the table against PyTorch in float64: values, first and second derivatives.

The tests loop over :data:`fungrad.PRIMITIVES` (the built-in rows), so a new
row fails here until it has a PyTorch reference in :data:`REF`. Values are
compared bit for bit (``nan`` with ``nan``, the sign of a zero, infinities
exactly) except where the two libms round differently, which :data:`ULPS`
allows by a stated number of units in the last place. Each deliberate
difference from PyTorch is listed in :data:`DIFFERENT`, with the reason, and is
itself tested (fungrad's value is asserted, and so is PyTorch's, so the list
cannot go stale).
"""

from __future__ import annotations

import itertools
import math
import random
import struct

import pytest

import fungrad as fg
from fungrad.expr import PRIMITIVES

from test_numerics import RAND_OPS as _OLD_RAND_OPS  # the random-expression generator, extended below

nan, inf = math.nan, math.inf
TINY = 5e-324


def builtin(p) -> bool:
    # rows declared by fg.primitive wrap their fwd (functools.wraps); custom_vjp rows have a joint rule
    # and the vmap rows are structural (a batch and the picks of its outputs), not scalar ops
    return not hasattr(p.fwd, "__wrapped__") and p.joint is None and p.name not in fg.expr.MAP_OPS


# the table as it is when this module loads (before any test declares its own primitive)
BUILTIN = [name for name, p in PRIMITIVES.items() if builtin(p)]


# ---------------------------------------------------------------- references


def _share(torch):
    # how maximum splits its gradient onto its first argument, as PyTorch does it
    def share(a, b):
        a1, b1 = a.detach().requires_grad_(), b.detach()
        (g,) = torch.autograd.grad(torch.maximum(a1, b1), a1)
        return g

    return share


def references(torch):
    """name -> a function on float64 tensors that PyTorch differentiates like fungrad's primitive."""
    F = torch.nn.functional
    ref = {name: getattr(torch, name) for name in (
        "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "tanh", "relu", "sigmoid", "sqrt", "sin", "cos",
        "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "log1p", "expm1", "erf", "abs", "maximum",
        "minimum", "sign")}
    ref.update(
        softplus=F.softplus,
        step=lambda t: (t > 0).to(t.dtype),
        share=_share(torch),
        where=lambda c, a, b: torch.where(c > 0, a, b),
        stop_gradient=lambda t: t.detach(),
        link=lambda t: t * 1.0,  # the input of a nested grad: identity, derivative 1
    )
    return ref


# ---------------------------------------------------------------- points

EDGE = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 20.0, -20.0, 1000.0, -1000.0, inf, -inf, nan,
        TINY, -TINY, 1e-310, -1e-310,
        # next to the edges of domains: asin/acos at +-1, log1p at -1, sqrt/log at 0
        0.9999999999999999, -0.9999999999999999, 1.0000000000000002, -1.0000000000000002,
        -0.9999999999999998,
        # exp and cosh overflow past 709.78; softplus switches to x past 20
        709.0, 710.0, -710.0, 19.999999999999996, 20.000000000000004,
        3.0, -3.0, 1e-8, math.pi / 2]
BIN_EDGE = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 20.0, -1000.0, inf, -inf, nan, TINY]
TERN_COND = [1.0, -1.0, 0.0, -0.0, nan]
TERN_EDGE = [0.0, -0.0, 2.0, -inf, nan]


def points(arity: int) -> list[tuple[float, ...]]:
    if arity == 1:
        return [(x,) for x in EDGE]
    if arity == 2:
        return list(itertools.product(BIN_EDGE, repeat=2))
    return list(itertools.product(TERN_COND, *[TERN_EDGE] * (arity - 1)))


# ---------------------------------------------------------------- comparing floats


def _ordinal(x: float) -> int:
    i = struct.unpack("<q", struct.pack("<d", x))[0]
    return i if i >= 0 else -(i & 0x7FFFFFFFFFFFFFFF)


def ulps_apart(a: float, b: float) -> float:
    """How many floats lie between ``a`` and ``b`` (0 for equal bits or two nans)."""
    if math.isnan(a) or math.isnan(b):
        return 0 if math.isnan(a) and math.isnan(b) else math.inf
    if math.isinf(a) or math.isinf(b):
        return 0 if a == b else math.inf
    if a == 0.0 and b == 0.0:
        return 0 if math.copysign(1, a) == math.copysign(1, b) else math.inf  # the sign of a zero counts
    return abs(_ordinal(a) - _ordinal(b))


def test_ulps_apart_is_strict_about_nan_zeros_and_infinities():
    assert ulps_apart(nan, nan) == 0 and ulps_apart(nan, 1.0) == math.inf
    assert ulps_apart(0.0, -0.0) == math.inf and ulps_apart(-0.0, -0.0) == 0
    assert ulps_apart(inf, 1.7e308) == math.inf
    assert ulps_apart(1.0, 1.0000000000000002) == 1 and ulps_apart(1.0, 0.9999999999999999) == 1
    assert ulps_apart(TINY, -TINY) == 2


# Where fungrad's libm (CPython's math, glibc) and PyTorch's (SLEEF, vectorized
# kernels, fused multiply-adds) round differently: (value, first, second
# derivative) in units in the last place. Everything else is bit for bit.
ULPS = {
    "tanh": (0, 1, 1),       # PyTorch computes 1 - y*y with an fma; see DIFFERENT for |x| >= 3
    "sigmoid": (0, 0, 1),
    "sqrt": (1, 1, 3),       # PyTorch's sqrt(1 - 2**-53) is 1.0; math.sqrt is correctly rounded
    "asin": (0, 0, 2),
    "acos": (1, 0, 2),
    "log1p": (1, 0, 0),
    "expm1": (1, 2, 2),
    "erf": (0, 0, 1),
    "softplus": (0, 0, 6),
    "atan2": (0, 0, 4),      # the second derivatives: same formula, different association
}


def _key(x: float) -> str:
    return "nan" if math.isnan(x) else repr(x)


# Deliberate differences from PyTorch: (op, point, order) -> (fungrad's value, PyTorch's value, why).
# order 0 is the value, 1 the gradient (for a binary op, (order, i) names the argument).
DIFFERENT = {
    # PyTorch's relu backward (threshold_backward) passes the gradient at nan; fungrad's rule
    # where(relu(x), g, 0) gives 0 there (test_numerics has the same note).
    ("relu", (nan,), 1): (0.0, 1.0, "relu'(nan): PyTorch passes the gradient through"),
    # PyTorch's log1p flushes subnormal inputs to zero; fungrad's is math.log1p, exact: log1p(x) = x.
    ("log1p", (TINY,), 0): (TINY, 0.0, "subnormal input flushed by PyTorch"),
    ("log1p", (-TINY,), 0): (-TINY, 0.0, "subnormal input flushed by PyTorch"),
    # PyTorch's softplus second derivative is sigmoid'(x) * (x < 20): 0 at x = 20 itself, where its
    # first derivative still takes the sigmoid branch (x > 20 is false). fungrad differentiates its
    # own first derivative, so the second one is continuous up to 20.
    ("softplus", (20.0,), 2): (2.0611535622038778e-09, 0.0, "PyTorch's threshold test differs between orders"),
    # Just below 20 both lose digits to cancellation (the exact value is 2.06115361819e-09):
    # PyTorch computes (1 - s) * s with s = sigmoid(x) near 1, fungrad differentiates z / (z + 1)
    # with z = exp(x); they differ by 3e-8 relative
    ("softplus", (19.999999999999996,), 2): (2.0611535622038703e-09, 2.0611536879193953e-09,
                                              "both lose digits near x = 20, differently"),
    # e**-710 is subnormal; PyTorch's sigmoid backward flushes it to 0 there
    ("softplus", (-710.0,), 2): (4.47628622567513e-309, 0.0, "PyTorch flushes a subnormal"),
    # 1 - tanh(x)**2 in plain float arithmetic (no fma in Python 3.11's math) loses digits as
    # tanh(x) nears 1: 26 ulps at x = 3 (about 5e-15 relative, 2e-9 at x = 10).
    ("tanh", (3.0,), 1): (0.009866037165440211, 0.009866037165440166, "PyTorch uses an fma"),
    ("tanh", (-3.0,), 1): (0.009866037165440211, 0.009866037165440166, "PyTorch uses an fma"),
    ("tanh", (3.0,), 2): (-0.019634494363042477, -0.019634494363042387, "PyTorch uses an fma"),
    ("tanh", (-3.0,), 2): (0.019634494363042477, 0.019634494363042387, "PyTorch uses an fma"),
    ("tanh", (1e-310,), 2): (-2e-310, -2e-310, "agrees; kept to show the subnormal"),
}


def deliberate(name, xs, order, mine, theirs):
    """Whole families of deliberate differences, each with its reason."""
    if order != 2 or mine != 0.0 or not (math.isnan(theirs) or theirs == 0.0):
        return False
    if name == "pow":
        # the pow rules keep the branch where() does not pick finite (commit f5471cb), so second
        # derivatives at a zero (or nan) base or exponent are 0 where PyTorch's are nan; and
        # d2/dx2 of x ** 0 is 0.0 where PyTorch has -0.0
        return any(x == 0.0 or math.isnan(x) for x in xs)
    if name == "atan2":
        # at the origin (or where x*x + y*y underflows to 0) PyTorch masks the first derivative
        # to 0 but not the second (nan); fungrad differentiates its masked first derivative: 0
        # and its rule (which masks that 0 with where) associates the products of the second
        # derivative differently: where the second derivative is 0, its sign may differ
        return xs[0] * xs[0] + xs[1] * xs[1] == 0.0 or theirs == 0.0
    return False


def torch_derivs(torch, fn, xs):
    """PyTorch's value, gradient and Hessian of ``fn`` at ``xs`` (0 where it has no derivative)."""
    n = len(xs)
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = fn(*ts)
    if not out.requires_grad:
        return out.item(), [0.0] * n, [[0.0] * n for _ in range(n)]
    gs = torch.autograd.grad(out, ts, create_graph=True, allow_unused=True)
    grad = [0.0 if g is None else g.item() for g in gs]
    hess = []
    for g in gs:
        if g is None or not g.requires_grad:
            hess.append([0.0] * n)
            continue
        hs = torch.autograd.grad(g, ts, retain_graph=True, allow_unused=True)
        hess.append([0.0 if h is None else h.item() for h in hs])
    return out.item(), grad, hess


def fg_derivs(op, xs):
    """fungrad's value, gradient and Hessian of ``op`` at ``xs``, by nested grad."""
    n = len(xs)
    nums = tuple(range(n))
    value, grad = fg.value_and_grad(op, argnums=nums)(*xs)
    hess = [list(fg.grad(lambda *a, i=i: fg.grad(op, argnums=i)(*a), argnums=nums)(*xs)) for i in range(n)]
    return value, list(grad), hess


def mismatches(torch, name):
    """Every (point, what, fungrad, torch, ulps) where fungrad and PyTorch differ beyond ULPS."""
    p = PRIMITIVES[name]
    op, ref = fg.expr.OPS[name], references(torch)[name]
    tol = ULPS.get(name, (0, 0, 0))
    bad = []
    for xs in points(p.arity):
        mine = fg_derivs(op, xs)
        theirs = torch_derivs(torch, ref, xs)
        pairs = [(0, "value", mine[0], theirs[0])]
        pairs += [(1, f"d/d{p.params[i]}", mine[1][i], theirs[1][i]) for i in range(p.arity)]
        pairs += [(2, f"d2/d{p.params[i]}d{p.params[j]}", mine[2][i][j], theirs[2][i][j])
                  for i in range(p.arity) for j in range(p.arity)]
        for order, what, a, b in pairs:
            if (name, xs, order) in DIFFERENT or deliberate(name, xs, order, a, b):
                continue
            u = ulps_apart(a, b)
            if u > tol[order]:
                bad.append((xs, what, a, b, u))
    return bad


# ---------------------------------------------------------------- the table


def test_every_builtin_primitive_has_a_pytorch_reference(torch):
    assert set(BUILTIN) == set(references(torch)), "a new primitive needs a reference in references()"
    for name in BUILTIN:
        p = PRIMITIVES[name]
        assert p.name == name and len(p.vjp) == p.arity and callable(p.fwd)
        assert p.label and p.doc, name


def test_the_new_functions_are_exported_with_methods_for_the_unary_ones():
    new = "tan asin acos atan atan2 sinh cosh log1p expm1 erf softplus maximum minimum".split()
    for name in new:
        assert getattr(fg, name) is fg.expr.OPS[name] and name in fg.__all__
        assert type(getattr(fg, name)(*[0.5] * PRIMITIVES[name].arity)) is float
        if PRIMITIVES[name].arity == 1:
            x = fg.var(0.5)
            assert getattr(x, name)().op == name and getattr(x, name)().value == getattr(fg, name)(0.5)
        else:
            assert not hasattr(fg.Node, name)
    assert not hasattr(fg, "share") and not hasattr(fg, "link")  # internal rows stay out of the API


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILTIN)
def test_values_and_first_and_second_derivatives_match_pytorch(torch, name):
    bad = mismatches(torch, name)
    assert not bad, f"{name}: {len(bad)} differences from PyTorch:\n" + "\n".join(
        f"  at {xs}: {what}: fungrad {a!r}, torch {b!r} ({u} ulps)" for xs, what, a, b, u in bad[:20])


@pytest.mark.parametrize("key", list(DIFFERENT), ids=lambda k: f"{k[0]}{k[1]}-order{k[2]}")
def test_each_deliberate_difference_from_pytorch_is_what_the_list_says(torch, key):
    name, xs, order = key
    mine_want, theirs_want, why = DIFFERENT[key]
    mine = fg_derivs(fg.expr.OPS[name], xs)
    theirs = torch_derivs(torch, references(torch)[name], xs)
    pick = (lambda d: d[0]) if order == 0 else (lambda d: d[1][0]) if order == 1 else (lambda d: d[2][0][0])
    assert ulps_apart(pick(mine), mine_want) == 0, (key, pick(mine), why)
    assert ulps_apart(pick(theirs), theirs_want) == 0, (key, pick(theirs), why)


def test_tanh_derivative_is_close_to_pytorch_where_it_differs():
    # the documented difference stays small: relative 1e-14 at |x| = 3, 1e-8 at |x| = 10
    for x, want, rel in ((3.0, 0.009866037165440166, 1e-14), (10.0, 8.244614529632978e-09, 1e-8)):
        assert fg.grad(fg.tanh)(x) == pytest.approx(want, rel=rel)


def test_values_are_the_same_on_floats_nodes_and_under_jit():
    for name in BUILTIN:
        p = PRIMITIVES[name]
        op = fg.expr.OPS[name]
        jitted = fg.jit(lambda *a, op=op: op(*a))
        for xs in points(p.arity):
            v = op(*xs)
            assert type(v) is float, (name, xs)
            node = op(*[fg.var(x) for x in xs])
            assert ulps_apart(node.value, v) == 0, (name, xs, node.value, v)
            if name != "link":
                assert ulps_apart(jitted(*xs), v) == 0, (name, xs)


@pytest.mark.slow
def test_values_never_raise_on_any_float_input():
    # every pair and triple of awkward floats, including ints and huge ones
    awkward = [0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 1e-320, inf, -inf, nan, 709.8, -745.2, 3, -7, 2.0**53]
    for name in BUILTIN:
        p = PRIMITIVES[name]
        op = fg.expr.OPS[name]
        for xs in itertools.product(awkward, repeat=min(p.arity, 2)):
            xs = (xs + (1.0,))[: p.arity] if p.arity > 2 else xs
            assert type(op(*xs)) is float, (name, xs)
            fg.grad(op, argnums=tuple(range(p.arity)))(*xs)  # the rules do not raise either


def test_maximum_and_minimum_split_a_tie_and_pass_nan_to_both(torch):
    for op, tname in ((fg.maximum, "maximum"), (fg.minimum, "minimum")):
        g = fg.grad(op, argnums=(0, 1))
        assert g(3.0, 3.0) == (0.5, 0.5)
        assert g(0.0, -0.0) == (0.5, 0.5)  # 0.0 == -0.0: a tie
        assert g(nan, 1.0) == (1.0, 1.0) and g(1.0, nan) == (1.0, 1.0) and g(nan, nan) == (1.0, 1.0)
        a, b = torch.tensor(3.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
        getattr(torch, tname)(a, b).backward()
        assert (a.grad.item(), b.grad.item()) == (0.5, 0.5)
        a, b = torch.tensor(nan, requires_grad=True), torch.tensor(1.0, requires_grad=True)
        getattr(torch, tname)(a, b).backward()
        assert (a.grad.item(), b.grad.item()) == (1.0, 1.0)
        assert math.isnan(op(nan, 1.0)) and math.isnan(op(1.0, nan))
    assert fg.grad(fg.maximum, argnums=(0, 1))(1.0, 2.0) == (0.0, 1.0)
    assert fg.grad(fg.minimum, argnums=(0, 1))(1.0, 2.0) == (1.0, 0.0)
    # the split follows the new values under jit too
    j = fg.jit(fg.grad(fg.maximum, argnums=(0, 1)))
    assert j(1.0, 2.0) == (0.0, 1.0) and j(2.0, 2.0) == (0.5, 0.5) and j(3.0, 2.0) == (1.0, 0.0)


def test_atan2_gradient_at_the_origin_is_a_signed_zero_as_in_pytorch(torch):
    g = fg.grad(fg.atan2, argnums=(0, 1))
    for y, x in ((0.0, 0.0), (0.0, -0.0), (-0.0, 0.0), (-0.0, -0.0), (0.0, TINY), (1e-200, 1e-200)):
        _, tg, _ = torch_derivs(torch, torch.atan2, (y, x))
        mine = g(y, x)
        assert all(math.isfinite(v) for v in mine)
        assert [ulps_apart(a, b) for a, b in zip(mine, tg)] == [0, 0], ((y, x), mine, tg)
    assert g(1.0, 1.0) == (0.5, -0.5) and math.isnan(g(nan, 1.0)[0])


def test_atan2_second_derivatives_at_the_origin_are_zero_where_pytorch_has_nan(torch):
    # deliberate: fungrad's second derivative is the derivative of its (zero) first derivative
    # there; PyTorch's double backward does not mask and gives nan
    _, _, th = torch_derivs(torch, torch.atan2, (0.0, 0.0))
    assert all(math.isnan(v) for row in th for v in row)
    h = fg.hessian(lambda v: fg.atan2(v[0], v[1]))([0.0, 0.0])
    assert h == [[0.0, 0.0], [0.0, 0.0]]


def test_pow_passes_a_nan_exponent_or_base_into_its_gradient_as_pytorch_does(torch):
    # the "exponent is 0" and "base is 0" masks of the pow rules used to turn nan into 0
    for xs in ((2.0, nan), (nan, 2.0), (0.0, nan), (nan, 0.0), (1.0, nan)):
        mine = fg.grad(fg.pow, argnums=(0, 1))(*xs)
        _, theirs, _ = torch_derivs(torch, torch.pow, xs)
        assert [ulps_apart(a, b) for a, b in zip(mine, theirs)] == [0, 0], (xs, mine, theirs)
    assert math.isnan(fg.grad(fg.pow)(2.0, nan)) and fg.grad(fg.pow, 1)(1.0, nan) == 0.0
    assert fg.grad(lambda x: x**0)(0.0) == 0.0 and fg.grad(fg.pow, 1)(0.0, 2.0) == 0.0


def test_pow_second_derivatives_are_finite_where_pytorch_has_nan(torch):
    _, _, th = torch_derivs(torch, torch.pow, (0.0, 0.0))
    assert all(math.isnan(v) for row in th for v in row)
    assert fg.hessian(lambda v: v[0] ** v[1])([0.0, 0.0]) == [[0.0, 0.0], [0.0, 0.0]]


# ---------------------------------------------------------------- debug_nans names them


def _nonfinite_point(name):
    p = PRIMITIVES[name]
    for xs in points(p.arity):
        if all(math.isfinite(x) for x in xs) and not math.isfinite(fg.expr.OPS[name](*xs)):
            return xs
    return None


@pytest.mark.parametrize("name", BUILTIN)
def test_debug_nans_names_every_primitive(name):
    p = PRIMITIVES[name]
    op = fg.expr.OPS[name]
    xs = (nan,) * p.arity
    if name == "where":
        xs = (1.0, nan, 0.0)
    if name in ("share", "sign", "step"):  # never non-finite, even at nan
        with fg.debug_nans():
            assert math.isfinite(op(*xs))
        return
    with fg.debug_nans(), pytest.raises(FloatingPointError, match=f"op '{name}' produced nan"):
        op(*xs)
    finite = _nonfinite_point(name)
    if finite is not None:  # from finite inputs, on nodes, inside grad
        with fg.debug_nans(), pytest.raises(FloatingPointError, match=f"op '{name}'"):
            fg.grad(lambda *a: op(*a), argnums=tuple(range(p.arity)))(*finite)


def test_debug_nans_names_the_new_functions_at_their_domain_edges():
    cases = {"log1p": (-1.0,), "asin": (2.0,), "acos": (-1.5,), "expm1": (1000.0,), "sinh": (-1000.0,),
             "cosh": (800.0,), "atan2": None, "erf": None}
    for name, xs in cases.items():
        if xs is None:
            continue
        with fg.debug_nans(), pytest.raises(FloatingPointError, match=f"op '{name}' produced .* from inputs \\(x="):
            getattr(fg, name)(fg.var(xs[0], name="x"))
    # a gradient that is not finite is named with the op it goes through
    with fg.debug_nans(), pytest.raises(FloatingPointError, match="gradient through op 'asin'"):
        fg.grad(fg.asin)(1.0)


# ---------------------------------------------------------------- random expressions with the new functions

# The generator of test_numerics, extended from the table: every unary row with a method gets
# an entry with a guard that keeps the argument in the function's domain, and the binary rows
# get one each. A new unary primitive needs an entry in GUARD (the test below checks that).
GUARD = {
    "exp": lambda a: a.tanh(), "log": lambda a: 1 + a * a, "sqrt": lambda a: 0.5 + a * a,
    "tan": lambda a: a.tanh(), "asin": lambda a: 0.9 * a.tanh(), "acos": lambda a: 0.9 * a.tanh(),
    "log1p": lambda a: a * a, "expm1": lambda a: a.tanh(), "sinh": lambda a: a.tanh() * 2,
    "cosh": lambda a: a.tanh() * 2,
    # kinks: relu and abs at 0 are measure-zero for random inputs
}
UNARY_METHODS = [n for n in BUILTIN if PRIMITIVES[n].method]
RAND_BINARY = {
    "atan2": (lambda a, b: fg.atan2(a, b), lambda torch: lambda a, b: torch.atan2(a, b)),
    "maximum": (lambda a, b: fg.maximum(a, b), lambda torch: lambda a, b: torch.maximum(a, b)),
    "minimum": (lambda a, b: fg.minimum(a, b), lambda torch: lambda a, b: torch.minimum(a, b)),
}


def _unary_entry(name):
    guard = GUARD.get(name, lambda a: a)
    if name == "softplus":
        return (lambda a: guard(a).softplus(), lambda a: __import__("torch").nn.functional.softplus(guard(a)))
    return (lambda a: getattr(guard(a), name)(), lambda a: getattr(guard(a), name)())


RAND_OPS = dict(_OLD_RAND_OPS)
RAND_OPS.update({f"t_{n}": _unary_entry(n) for n in UNARY_METHODS})


def test_the_random_generator_covers_every_unary_method_and_the_new_binaries():
    assert {n for n in UNARY_METHODS} >= set("tan asin acos atan sinh cosh log1p expm1 erf softplus".split())
    assert set(RAND_BINARY) == {n for n in BUILTIN if PRIMITIVES[n].arity == 2 and n not in
                                ("add", "sub", "mul", "div", "pow", "share")}


def random_program(rng, nvars, size):
    names = list(RAND_OPS) + list(RAND_BINARY)
    prog = []
    for i in range(size):
        name = rng.choice(names)
        arity = 2 if name in RAND_BINARY else RAND_OPS[name][0].__code__.co_argcount
        # distinct arguments: x - x is exactly 0, and PyTorch's double backward through it can take
        # seconds (a slow path in its autograd), for nothing the test needs
        prog.append((name, tuple(rng.sample(range(nvars + i), arity))))
    return prog


def run(torch, prog, xs, which):
    vals = list(xs)
    for name, args in prog:
        if name in RAND_BINARY:
            f = RAND_BINARY[name][0] if which == 0 else RAND_BINARY[name][1](torch)
        else:
            f = RAND_OPS[name][which]
        vals.append(f(*(vals[a] for a in args)))
    return vals[-1] + 0.1 * vals[len(xs)]


# slow: seeds 20, 27 and 29 take a second derivative through abs, whose double backward PyTorch
# runs in Python, and that imports torch._dynamo, a 2 s import that no other fast test needs
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(30))
def test_random_expressions_with_the_new_functions_match_pytorch(torch, seed):
    rng = random.Random(1000 + seed)
    n = 3
    prog = random_program(rng, n, rng.randrange(5, 14))
    xs = [rng.uniform(-1.5, 1.5) for _ in range(n)]
    f = lambda v: run(torch, prog, v, 0)  # noqa: E731
    t = torch.tensor(xs, requires_grad=True)
    ty = run(torch, prog, list(t), 1)
    (tg,) = torch.autograd.grad(ty, t, create_graph=True)
    th = [torch.autograd.grad(tg[i], t, retain_graph=True, allow_unused=True)[0]
          if tg[i].requires_grad else None for i in range(n)]
    th = [[0.0] * n if r is None else r.tolist() for r in th]
    value, g = fg.value_and_grad(f)(xs)
    assert value == pytest.approx(ty.item(), rel=1e-12, abs=1e-12), prog
    assert g == pytest.approx(tg.tolist(), rel=1e-10, abs=1e-12), prog
    h = fg.hessian(f)(xs)
    assert h == [pytest.approx(row, rel=1e-9, abs=1e-10) for row in th], prog
    # and jit replays the same program bit for bit
    assert fg.jit(fg.value_and_grad(f))(xs) == (value, g)
