"""Expressions: the table of primitives, frozen nodes, and the ops that build graphs.

Read this module top-down: the :class:`Primitive` record and the table
:data:`PRIMITIVES` come first, because everything else is derived from them.
Each primitive is declared once, with its forward on floats and one VJP rule
per argument, written with fungrad's own ops: the same rule runs on plain
floats (the fast first-order path), on nodes (when an outer ``grad``
differentiates through a backward pass) and, at a cotangent of 1, as the
primitive's partial derivative in forward mode. The op functions
(``fungrad.tan``), the unary :class:`Node` methods (``x.tan()``) and the
exports are made from the table, so adding a primitive is one table entry.

A :class:`Node` is an immutable record of one scalar value and how it was
made: the primitive's name (``op``) and the nodes it was made from
(``parents``). Gradients live in the dictionaries that
:mod:`fungrad.autodiff` returns, never on the nodes.

>>> import fungrad as fg
>>> x = fg.var(2.0, name="x")
>>> y = x * 3 + x.tanh() - 1 / x
>>> y.op, round(y.value, 6)
('sub', 6.464028)
>>> fg.tanh(0.5) == fg.tanh(fg.var(0.5)).value
True
"""

from __future__ import annotations

import contextvars
import copyreg
import enum
import functools
import inspect
import itertools
import math
import numbers
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Sequence, Union

import attrs

from . import tree

_inf = math.inf
_nan = math.nan
_isfinite = math.isfinite
_copysign = math.copysign

Rule = Callable[..., Any]


# --------------------------------------------------------------------------
# The record of a primitive


class Primitive(NamedTuple):
    """A primitive op: its name, forward on floats, one VJP rule per argument, and docs.

    A rule is called as ``rule(g, ans, *args)`` (the output cotangent, the
    op's output and its inputs) and returns the cotangent of its argument,
    computed with fungrad's ops so that it works on floats and on nodes.
    ``None`` marks an argument with no derivative (a branch condition).
    ``joint``, when set, computes every argument's cotangent at once
    (``joint(g, ans, *args) -> tuple``); :func:`custom_vjp` uses it, and
    ``affine``, whose arguments are as many as its terms make (its ``params``
    and ``vjp`` describe one term).

    >>> import fungrad as fg
    >>> p = fg.PRIMITIVES["mul"]
    >>> p.name, p.params, p.label, p.arity
    ('mul', ('a', 'b'), '*', 2)
    >>> [rule(1.0, 6.0, 2.0, 3.0) for rule in p.vjp]    # d(a*b)/da = b, d/db = a
    [3.0, 2.0]
    """

    name: str
    fwd: Callable[..., float]
    vjp: tuple[Rule | None, ...]
    label: str  # how drawings show the op
    params: tuple[str, ...]  # the argument names, for signatures and docs
    doc: str = ""  # the op function's docstring
    derivative: str = ""  # the VJP rules as a formula, for the reference page
    method: bool = False  # unary ops that are also Node methods (x.tanh())
    public: bool = True  # exported as fungrad.<name>
    joint: Rule | None = None

    @property
    def arity(self) -> int:
        return len(self.params)


# Constants (numbers lifted to nodes, functions of constants) sit at this
# level, below every trace level, so no grad ever walks them.
CONST = -1


# --------------------------------------------------------------------------
# Forwards on floats, IEEE-754 like PyTorch in float64: they never raise.


def _odd_integer(b: float) -> bool:
    return _isfinite(b) and b % 2.0 == 1.0


def _f_div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0.0:
            return _nan
        return _copysign(_inf, a) * _copysign(1.0, b)


def _f_pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return -_inf if (a < 0.0 and _odd_integer(b)) else _inf
    except ValueError:
        if a == 0.0:  # zero to a negative power
            return _copysign(_inf, a) if _odd_integer(b) else _inf
        return _nan  # negative base, non-integer power


def _overflow_to(f: Callable[[float], float], big: Callable[[float], float]) -> Callable[[float], float]:
    # math raises OverflowError where IEEE gives an infinity
    def fwd(a: float) -> float:
        try:
            return f(a)
        except OverflowError:
            return big(a)

    return fwd


def _domain(f: Callable[[float], float]) -> Callable[[float], float]:
    # math raises ValueError outside a function's domain, where IEEE gives nan
    def fwd(a: float) -> float:
        try:
            return f(a)
        except ValueError:
            return _nan

    return fwd


def _to_inf(a: float) -> float:
    return _inf


def _signed_inf(a: float) -> float:
    return _copysign(_inf, a)


_f_exp = _overflow_to(math.exp, _to_inf)


def _f_log(a: float) -> float:
    if a > 0.0:
        return math.log(a)
    return -_inf if a == 0.0 else _nan


def _f_log1p(a: float) -> float:
    if a > -1.0:
        return math.log1p(a)
    return -_inf if a == -1.0 else _nan


def _f_sqrt(a: float) -> float:
    return math.sqrt(a) if a >= 0.0 else _nan


def _f_sigmoid(a: float) -> float:
    return 1.0 / (1.0 + _f_exp(-a))


def _f_softplus(a: float) -> float:
    # PyTorch's softplus with beta=1, threshold=20
    return a if a > 20.0 else math.log1p(_f_exp(a))


def _f_relu(a: float) -> float:
    return 0.0 if a < 0.0 else a  # keeps -0.0 and nan, as PyTorch does


def _f_sign(a: float) -> float:
    return 1.0 if a > 0.0 else (-1.0 if a < 0.0 else 0.0)


def _f_step(a: float) -> float:
    return 1.0 if a > 0.0 else 0.0


def _f_where(c: float, a: float, b: float) -> float:
    return a if c > 0.0 else b


def _f_maximum(a: float, b: float) -> float:
    if a != a or b != b:
        return _nan
    return b if a < b else a


def _f_minimum(a: float, b: float) -> float:
    if a != a or b != b:
        return _nan
    return b if b < a else a


def _f_share(a: float, b: float) -> float:
    # PyTorch's split of maximum's gradient: all of it to the larger
    # argument, half to each at a tie, all to both when one is nan
    if a < b:
        return 0.0
    return 0.5 if a == b else 1.0


def _identity(a: float) -> float:
    return a


def _affine_fwd(b: float, *wx: float) -> float:
    # left to right, as ``b + w0 * x0 + w1 * x1 + ...`` evaluates: the same
    # float operations as the add and mul nodes this node stands for
    act = b
    for i in range(0, len(wx) - 1, 2):
        act = act + wx[i] * wx[i + 1]
    return act


def _affine_joint(g: Any, ans: Any, b: Any, *wx: Any) -> tuple[Any, ...]:
    # the mul rules (g * the other factor) and the add rule (g), per argument
    out = [g]
    for i in range(0, len(wx) - 1, 2):
        out.append(g * wx[i + 1])
        out.append(g * wx[i])
    return tuple(out)


def _map_fwd(*xs: float) -> float:
    raise TypeError("a vmap node computes through its Batch value's map: make it with fungrad.vmap")


def _pick_fwd(batch: Any, i: float) -> float:
    return batch[int(i)]  # type: ignore[no-any-return]


class Picks(dict):  # type: ignore[type-arg]
    """The cotangent of a ``vmap`` node: ``{output index: cotangent}``, summed as the backward pass adds."""

    __slots__ = ()

    def __add__(self, other: Picks) -> Picks:
        # each pick node adds its own index once, so summing in place is safe
        for k, v in other.items():
            old = self.get(k)
            self[k] = v if old is None else old + v
        return self


def _pick_rule(g: Any, ans: Any, batch: Any, i: Any) -> Picks:
    p = Picks()
    p[int(i.value if i.__class__ is Node else i)] = g
    return p


# --------------------------------------------------------------------------
# VJP rules that need more than one line. Each mirrors PyTorch's
# derivatives.yaml, so that values at edges (zeros, infinities, kinks) agree.
#
# The branch a where() does not pick is computed too, and its derivative is
# multiplied by zero: 0 * inf would make nan of a higher derivative (and
# debug_nans would stop at the unused inf). So the unpicked branch gets a
# harmless input instead, as with JAX's "double where".


def _pow_dx(g: Any, ans: Any, x: Any, y: Any) -> Any:
    # x ** 0 has derivative 0 in x everywhere, even at x = 0; the 0 is
    # c * 0.0 so that a nan exponent still gives nan, as in PyTorch
    c = abs(y)
    return where(c, g * (y * pow(where(c, x, 1.0), y - 1.0)), c * 0.0)


def _pow_dy(g: Any, ans: Any, x: Any, y: Any) -> Any:
    # d/dy of 0 ** y is 0 for y >= 0, where log(0) would give nan
    # (PyTorch masks where x == 0 and y >= 0; a nan x or y outside the mask
    # gives nan, and so does the 0 here, which is nan when x or y is)
    c = abs(x) + step(-y)
    return g * where(c, ans * log(where(c, x, 1.0)), (abs(x) + relu(-y)) * 0.0)


def _softplus_dx(g: Any, ans: Any, x: Any) -> Any:
    big = x - 20.0
    z = exp(where(big, 0.0, x))
    return where(big, g, div(g * z, z + 1.0))


def _rsqrt_1mx2(x: Any) -> Any:
    return div(1.0, sqrt(1.0 - x * x))


def _atan2_recip(y: Any, x: Any) -> Any:
    # PyTorch's 1 / (x**2 + y**2), with 0 where the sum is 0 (the origin, or
    # an underflow), so the gradient there is a signed 0, not nan or inf;
    # a nan sum stays nan
    d = y * y + x * x
    return where(d, div(1.0, where(d, d, 1.0)), d * 0.0)


def _share_rule(first: int) -> Rule:
    # maximum and minimum: the cotangent times the share of argument `first`
    def rule(g: Any, ans: Any, a: Any, b: Any) -> Any:
        s = share(a, b) if first == 0 else share(b, a)
        return where(s, g * s, 0.0)

    return rule


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


# --------------------------------------------------------------------------
# The table of primitives


def _p(
    name: str,
    params: str,
    fwd: Callable[..., float],
    label: str,
    vjp: tuple[Rule | None, ...],
    derivative: str,
    doc: str,
    *,
    method: bool = False,
    public: bool = True,
    joint: Rule | None = None,
) -> Primitive:
    return Primitive(name, fwd, vjp, label, tuple(params.split()), doc, derivative, method, public, joint)


PRIMITIVES: dict[str, Primitive] = {}
"""Every primitive by name: the one place where an op is declared."""

_TABLE = [
    _p("add", "a b", lambda a, b: a + b, "+", (lambda g, ans, x, y: g, lambda g, ans, x, y: g),
       "g, g", """``a + b``.

    >>> import fungrad as fg
    >>> fg.add(1.0, 2.0)
    3.0
    """),
    _p("sub", "a b", lambda a, b: a - b, "-", (lambda g, ans, x, y: g, lambda g, ans, x, y: -g),
       "g, -g", """``a - b``.

    >>> import fungrad as fg
    >>> fg.sub(1.0, 2.0)
    -1.0
    """),
    _p("mul", "a b", lambda a, b: a * b, "*", (lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x),
       "g*b, g*a", """``a * b``.

    >>> import fungrad as fg
    >>> fg.mul(2.0, 3.0)
    6.0
    """),
    _p("div", "a b", _f_div, "/",
       (lambda g, ans, x, y: div(g, y), lambda g, ans, x, y: -g * div(div(x, y), y)),
       "g/b, -g*(a/b)/b", """``a / b`` by IEEE-754: ``1/0`` is ``inf``, ``0/0`` is ``nan``, nothing raises.

    >>> import fungrad as fg
    >>> fg.div(1.0, 0.0), fg.div(-1.0, 0.0), fg.div(1.0, -0.0)
    (inf, -inf, -inf)
    """),
    _p("pow", "a b", _f_pow, "**", (_pow_dx, _pow_dy),
       "g*b*a**(b-1) (0 where b = 0), g*ans*log(a) (0 where a = 0 and b >= 0)",
       """``a ** b``; a negative base to a non-integer power is ``nan``, overflow is ``inf``.

    >>> import fungrad as fg
    >>> fg.pow(2.0, 10), fg.pow(-8.0, 1 / 3), fg.pow(0.0, -1.0), fg.pow(10.0, 400)
    (1024.0, nan, inf, inf)
    """),
    _p("neg", "a", lambda a: -a, "-", (lambda g, ans, x: -g,), "-g", """``-a``.

    >>> import fungrad as fg
    >>> fg.neg(2.0)
    -2.0
    """),
    _p("exp", "x", _f_exp, "exp", (lambda g, ans, x: g * ans,), "g*exp(x)",
       """``e ** x`` (``inf`` past about 709.78).

    >>> import fungrad as fg
    >>> fg.exp(0.0), fg.exp(1000.0)
    (1.0, inf)
    """, method=True),
    _p("log", "x", _f_log, "log", (lambda g, ans, x: div(g, x),), "g/x",
       """Natural logarithm: ``log(0)`` is ``-inf``, ``log(-1)`` is ``nan``.

    >>> import fungrad as fg
    >>> fg.log(1.0), fg.log(0.0), fg.log(-1.0)
    (0.0, -inf, nan)
    """, method=True),
    _p("tanh", "x", math.tanh, "tanh", (lambda g, ans, x: g * (1.0 - ans * ans),), "g*(1 - tanh(x)**2)",
       """Hyperbolic tangent.

    >>> import fungrad as fg
    >>> fg.tanh(0.0), fg.tanh(1000.0)
    (0.0, 1.0)
    """, method=True),
    _p("relu", "x", _f_relu, "relu", (lambda g, ans, x: where(ans, g, 0.0),), "g where x > 0, else 0",
       """``max(x, 0)``; its derivative at 0 is 0 (as in PyTorch).

    >>> import fungrad as fg
    >>> fg.relu(-2.0), fg.relu(3.0), fg.grad(fg.relu)(0.0)
    (0.0, 3.0, 0.0)
    """, method=True),
    _p("sigmoid", "x", _f_sigmoid, "sigmoid", (lambda g, ans, x: g * (1.0 - ans) * ans,),
       "g*(1 - sigmoid(x))*sigmoid(x)", """The logistic function ``1 / (1 + exp(-x))``; never overflows.

    >>> import fungrad as fg
    >>> fg.sigmoid(0.0), fg.sigmoid(-1000.0), fg.sigmoid(1000.0)
    (0.5, 0.0, 1.0)
    """, method=True),
    _p("sqrt", "x", _f_sqrt, "sqrt", (lambda g, ans, x: div(g, 2.0 * ans),), "g/(2*sqrt(x))",
       """Square root; ``nan`` below 0.

    >>> import fungrad as fg
    >>> fg.sqrt(4.0), fg.sqrt(-1.0)
    (2.0, nan)
    """, method=True),
    _p("sin", "x", _domain(math.sin), "sin", (lambda g, ans, x: g * cos(x),), "g*cos(x)", """Sine.

    >>> import fungrad as fg
    >>> fg.sin(0.0), fg.sin(float("inf"))
    (0.0, nan)
    """, method=True),
    _p("cos", "x", _domain(math.cos), "cos", (lambda g, ans, x: g * -sin(x),), "-g*sin(x)", """Cosine.

    >>> import fungrad as fg
    >>> fg.cos(0.0)
    1.0
    """, method=True),
    _p("tan", "x", _domain(math.tan), "tan", (lambda g, ans, x: g * (1.0 + ans * ans),), "g*(1 + tan(x)**2)",
       """Tangent.

    >>> import fungrad as fg
    >>> fg.tan(0.0), fg.grad(fg.tan)(0.0)
    (0.0, 1.0)
    """, method=True),
    _p("asin", "x", _domain(math.asin), "asin", (lambda g, ans, x: g * _rsqrt_1mx2(x),), "g/sqrt(1 - x**2)",
       """Arcsine; ``nan`` outside [-1, 1].

    >>> import fungrad as fg
    >>> fg.asin(1.0) == fg.acos(-1.0) / 2, fg.asin(2.0)
    (True, nan)
    """, method=True),
    _p("acos", "x", _domain(math.acos), "acos", (lambda g, ans, x: g * -_rsqrt_1mx2(x),), "-g/sqrt(1 - x**2)",
       """Arccosine; ``nan`` outside [-1, 1].

    >>> import fungrad as fg
    >>> fg.acos(1.0), fg.grad(fg.acos)(0.0)
    (0.0, -1.0)
    """, method=True),
    _p("atan", "x", math.atan, "atan", (lambda g, ans, x: div(g, x * x + 1.0),), "g/(x**2 + 1)",
       """Arctangent.

    >>> import fungrad as fg
    >>> fg.atan(0.0), fg.grad(fg.atan)(1.0)
    (0.0, 0.5)
    """, method=True),
    _p("atan2", "y x", math.atan2, "atan2",
       (lambda g, ans, y, x: g * x * _atan2_recip(y, x), lambda g, ans, y, x: g * -y * _atan2_recip(y, x)),
       "g*x/(x**2 + y**2), -g*y/(x**2 + y**2)", """The angle of the point ``(x, y)``: ``atan(y / x)`` in the right quadrant.

    Its gradient at the origin is ``(0.0, -0.0)``, as in PyTorch (which sets
    it to 0 where ``x**2 + y**2`` is 0).

    >>> import fungrad as fg
    >>> fg.atan2(1.0, -1.0), fg.grad(fg.atan2, argnums=(0, 1))(1.0, 1.0)
    (2.356194490192345, (0.5, -0.5))
    >>> fg.grad(fg.atan2, argnums=(0, 1))(0.0, 0.0)
    (0.0, -0.0)
    """),
    _p("sinh", "x", _overflow_to(math.sinh, _signed_inf), "sinh", (lambda g, ans, x: g * cosh(x),), "g*cosh(x)",
       """Hyperbolic sine (``±inf`` on overflow).

    >>> import fungrad as fg
    >>> fg.sinh(0.0), fg.sinh(-1000.0)
    (0.0, -inf)
    """, method=True),
    _p("cosh", "x", _overflow_to(math.cosh, _to_inf), "cosh", (lambda g, ans, x: g * sinh(x),), "g*sinh(x)",
       """Hyperbolic cosine (``inf`` on overflow).

    >>> import fungrad as fg
    >>> fg.cosh(0.0), fg.cosh(-1000.0)
    (1.0, inf)
    """, method=True),
    _p("log1p", "x", _f_log1p, "log1p", (lambda g, ans, x: div(g, x + 1.0),), "g/(x + 1)",
       """``log(1 + x)``, exact for tiny ``x``; ``-inf`` at -1, ``nan`` below.

    >>> import fungrad as fg
    >>> fg.log1p(1e-20), fg.log1p(-1.0), fg.log1p(-2.0)
    (1e-20, -inf, nan)
    """, method=True),
    _p("expm1", "x", _overflow_to(math.expm1, _to_inf), "expm1", (lambda g, ans, x: g * (ans + 1.0),),
       "g*(expm1(x) + 1)", """``exp(x) - 1``, exact for tiny ``x``.

    >>> import fungrad as fg
    >>> fg.expm1(1e-20), fg.expm1(1000.0)
    (1e-20, inf)
    """, method=True),
    _p("erf", "x", math.erf, "erf", (lambda g, ans, x: _TWO_OVER_SQRT_PI * exp(-(x * x)) * g,),
       "2/sqrt(pi)*exp(-x**2)*g", """The error function.

    >>> import fungrad as fg
    >>> fg.erf(0.0), fg.erf(float("inf")), fg.grad(fg.erf)(0.0) == 2 / 3.141592653589793 ** 0.5
    (0.0, 1.0, True)
    """, method=True),
    _p("softplus", "x", _f_softplus, "softplus", (_softplus_dx,), "g*sigmoid(x) (g where x > 20)",
       """``log(1 + exp(x))``, and ``x`` itself past 20, as PyTorch's ``softplus``.

    >>> import fungrad as fg
    >>> fg.softplus(0.0), fg.softplus(1000.0), fg.softplus(-1000.0)
    (0.6931471805599453, 1000.0, 0.0)
    """, method=True),
    _p("abs", "x", math.fabs, "abs", (lambda g, ans, x: g * sign(x),), "g*sign(x)",
       """Absolute value; its derivative at 0 is 0 (as in PyTorch).

    >>> import fungrad as fg
    >>> fg.abs(-2.0), fg.grad(fg.abs)(0.0)
    (2.0, 0.0)
    """, method=True),
    _p("maximum", "a b", _f_maximum, "max", (_share_rule(0), _share_rule(1)),
       "g to the larger argument, g/2 to each at a tie", """The larger of ``a`` and ``b`` (``nan`` if either is).

    At a tie each argument gets half of the gradient, as in PyTorch.

    >>> import fungrad as fg
    >>> fg.maximum(1.0, 2.0), fg.grad(fg.maximum, argnums=(0, 1))(3.0, 3.0)
    (2.0, (0.5, 0.5))
    """),
    _p("minimum", "a b", _f_minimum, "min", (_share_rule(1), _share_rule(0)),
       "g to the smaller argument, g/2 to each at a tie", """The smaller of ``a`` and ``b`` (``nan`` if either is).

    At a tie each argument gets half of the gradient, as in PyTorch.

    >>> import fungrad as fg
    >>> fg.minimum(1.0, 2.0), fg.grad(fg.minimum)(1.0, 2.0)
    (1.0, 1.0)
    """),
    _p("sign", "x", _f_sign, "sign", (None,), "0", """-1, 0 or 1 by the sign of ``x``; its derivative is 0 everywhere.

    >>> import fungrad as fg
    >>> fg.sign(-3.0), fg.sign(0.0), fg.sign(2.0)
    (-1.0, 0.0, 1.0)
    """),
    _p("step", "x", _f_step, "step", (None,), "0", """1 where ``x > 0``, else 0; its derivative is 0 everywhere.

    >>> import fungrad as fg
    >>> fg.step(0.5), fg.step(0.0)
    (1.0, 0.0)
    """),
    _p("share", "a b", _f_share, "share", (None, None), "0, 0",
       """How :func:`maximum` splits a gradient onto ``a``: 1 if ``a > b``, 0.5 at a tie, 0 if ``a < b``.

    It is 1 when either argument is ``nan``, so that, as in PyTorch, both
    arguments of a ``nan`` maximum get the whole gradient.

    >>> from fungrad.expr import share
    >>> share(2.0, 1.0), share(1.0, 1.0), share(1.0, 2.0)
    (1.0, 0.5, 0.0)
    """, public=False),
    _p("where", "c a b", _f_where, "where",
       (None, lambda g, ans, c, a, b: where(c, g, 0.0), lambda g, ans, c, a, b: where(c, 0.0, g)),
       "0, g where c > 0, g where c <= 0",
       """``a`` where ``c > 0``, else ``b``, decided from the value of ``c`` when it runs.

    This is the branch to use under :func:`fungrad.jit`: the choice is made
    again from the new values on every replay. The derivative flows to the
    chosen branch only; ``c`` gets none.

    >>> import fungrad as fg
    >>> fg.where(1.0, 10.0, 20.0), fg.where(-1.0, 10.0, 20.0)
    (10.0, 20.0)
    >>> fg.grad(lambda x: fg.where(x, x * x, -x))(3.0)
    6.0
    """),
    _p("stop_gradient", "x", _identity, "stop", (None,), "0",
       """The value of ``x``, with derivative 0 through it.

    Unlike reading ``x.value``, the result stays in the graph: ``jit``
    replays it with the new value of ``x`` instead of baking one number in,
    and drawings show it.

    >>> import fungrad as fg
    >>> fg.grad(lambda x: x * fg.stop_gradient(x))(3.0)     # d/dx of x * c, with c = x
    3.0
    """),
    # the two ops of fg.vmap: one node for a whole batch, and one node per output read from it
    _p("vmap", "xs", _map_fwd, "vmap", (None,), "the map of the body's VJP",
       """A body mapped over a batch: one node whose value is a :class:`fungrad.batch.Batch`.

    Made by :func:`fungrad.vmap`; its derivatives are maps too.
    """, public=False),
    _p("vmap_pick", "batch index", _pick_fwd, "[]", (_pick_rule, None), "g at the index",
       """Output ``index`` of a ``vmap`` node.""", public=False),
    # b + w0*x0 + w1*x1 + ...: one node for a neuron's sum, made by affine()
    # where nobody sees the nodes in between (see there); its arguments are
    # b, w0, x0, w1, x1, ... (the rules below are those of one term; the
    # joint rule gives all, and autodiff._backward writes them out in order)
    _p("affine", "b w x", _affine_fwd, "affine", (lambda g, ans, b, w, x: g, lambda g, ans, b, w, x: g * x,
       lambda g, ans, b, w, x: g * w), "g, g * x_i, g * w_i", """``b + w0 * x0 + w1 * x1 + ...``, one node.

    Made by :func:`fungrad.affine` where the nodes in between are never
    seen (see there), and by the backward pass there for a cotangent summed
    from products. Its arguments are ``b, w0, x0, w1, x1, ...``.
    """, public=False, joint=_affine_joint),
    # the input of a nested grad, linked to the outer node it stands for
    _p("link", "x", _identity, "link", (lambda g, ans, x: g,), "g", """The input of a nested grad.

    A node of the current level standing for ``x``, with derivative 1.
    """, public=False),
]

# the forward and the rules of every op, by name, for the hot loops
FWD: dict[str, Callable[..., float]] = {}
RULES: dict[str, tuple[Rule | None, ...]] = {}
# the rules that give every argument's cotangent at once, by name
JOINT: dict[str, Rule] = {}
_registry_lock = threading.Lock()


# --------------------------------------------------------------------------
# Trace state
#
# Each transform (grad, jit, jvp, ...) runs its function at a new trace
# level with a fresh, ever-increasing number. A node records the level it was
# made at; a backward pass of level L walks the nodes made at L or later
# (inner levels that finished inside L) and treats older ones as constants.
# Nodes made inside a level are also appended to its tape, which is a
# topological order for free.
#
# A level runs inside a copy of the caller's context (contextvars), so that
# the caller's state comes back by itself when the level ends, however it
# ends (an exception, a KeyboardInterrupt at any statement); and when a level
# ends its tape is dropped, so that a context copied inside it (a generator,
# an asyncio callback) can no longer record into it.


class Trace:
    """The trace state every op consults.

    ``level`` numbers the innermost open transform (0 at the root); ``tape``
    lists the nodes made at that level in order (``None`` at the root and once
    the level has ended); ``debug`` is on inside :class:`debug_nans`;
    ``jit_level`` is the level of the ``jit`` trace in progress, or ``None``;
    ``chain`` holds the levels open in this context (this one and the ones
    around it); ``fuse`` is on where :func:`affine` makes one node per sum
    (see there and :func:`new_level`).
    """

    __slots__ = ("level", "tape", "debug", "jit_level", "chain", "_owner", "fuse")

    def __init__(
        self,
        level: int,
        tape: list[Node] | None,
        debug: bool = False,
        jit_level: int | None = None,
        chain: frozenset[int] = frozenset(),
        owner: Trace | None = None,
        fuse: bool = False,
    ):
        self.level = level
        self.tape = tape
        self.debug = debug
        self.jit_level = jit_level
        self.chain = chain
        self._owner = owner  # a debug block's trace records into its level's tape (None: this one's)
        self.fuse = fuse

    @property
    def owner(self) -> Trace:
        """The trace of the level whose tape this one records into."""
        return self._owner or self

    @property
    def active(self) -> bool:
        """Whether a transform is recording here (an open level, not the root)."""
        return self.owner.tape is not None and self.level > 0

    def __repr__(self) -> str:
        return (
            f"Trace(level={self.level}, active={self.active}, debug={self.debug}, jit={self.jit_level}, fuse={self.fuse})"
        )


class _RootDebug(Trace):
    # A debug_nans block at the root: it lasts as long as the block's object.
    # A KeyboardInterrupt can land once __enter__ has set this state and
    # before the with statement holds the block; __exit__ then never runs,
    # but the block's object is dropped at once, and the checks end with it.

    __slots__ = ("_guard",)

    def __init__(self, block: Any):
        guard = weakref.ref(block)
        super().__init__(0, _CheckOnly(guard), True)
        self._guard = guard

    @property  # type: ignore[override]
    def debug(self) -> bool:
        return self._guard() is not None

    @debug.setter
    def debug(self, value: bool) -> None:
        pass  # set by Trace.__init__; read from the guard


_ROOT = Trace(0, None)
_state: contextvars.ContextVar[Trace] = contextvars.ContextVar("fungrad_trace", default=_ROOT)
_get = _state.get
_levels = itertools.count(1)
# the levels whose transform is running, in any thread
_open: set[int] = set()


def current() -> Trace:
    """The trace state of this thread (or task)."""
    return _get()


def new_level(debug: bool | None = None, jit: bool = False, fuse: bool = False) -> Trace:
    """A trace for a new level inside the current one (not yet entered; see :func:`run_level`).

    ``fuse`` asks for :func:`affine`'s fused nodes, for a level that only its
    own backward pass walks (a ``grad``), or that none walks (a ``jit``
    trace, which replays its nodes). It gets them at the root, or right
    inside a ``jit`` trace that has them, and never under debug_nans.
    """
    parent = _get()
    root = not parent.active
    if root:
        parent = _ROOT if not parent.debug else Trace(0, parent.tape, True)
    if debug is None:
        debug = parent.debug
    level = next(_levels)
    return Trace(
        level,
        CheckedTape() if debug else [],
        debug,
        level if jit else parent.jit_level,
        parent.chain | {level},
        fuse=fuse and not debug and (root or (parent.fuse and parent.jit_level == parent.level)),
    )


def _enter(trace: Trace, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    _state.set(trace)
    return fn(*args)


def run_level(trace: Trace, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` with ``trace`` as the current level; end the level after.

    The level runs in a copy of the current context, so the caller's trace
    state is back as soon as this returns or raises. Ending the level drops
    its tape from the trace (the caller keeps its own reference to it) and
    hands its nodes to the enclosing level, which differentiates through them.
    """
    parent = _get()
    tape = trace.tape
    try:
        try:
            _open.add(trace.level)  # inside the try: an interrupt after it still ends the level
            return contextvars.copy_context().run(_enter, trace, fn, args)
        finally:
            _end_level(trace, parent, tape)
    except BaseException:
        # an interrupt (KeyboardInterrupt) can land at any statement of the
        # finally, before or inside its call: end the level again
        _end_level(trace, parent, tape)
        raise


def _end_level(trace: Trace, parent: Trace, tape: list[Node] | None) -> None:
    # idempotent, so that it can be done again after an interrupt
    _open.discard(trace.level)
    trace.tape = None
    trace.jit_level = None
    trace.fuse = False  # a context copied inside the level and run after it builds the operators' graph
    if parent.active and tape:
        out = parent.owner.tape
        if not out or out[-1] is not tape[-1]:  # not handed on yet
            out.extend(tape)  # type: ignore[union-attr]


def is_open(level: int) -> bool:
    """Whether a transform at ``level`` is still running (in any thread)."""
    return level in _open


# --------------------------------------------------------------------------
# Nodes


class _Slots:
    # The storage of a Node. Nodes are built as _Slots and then given the
    # frozen class: plain slot stores plus one class switch cost about half of
    # the frozen __init__, and node creation dominates eager time.
    #
    # The parents live in two slots, not in a tuple: a leaf holds (None,
    # None), one parent (p, None), two (p, q), more (a tuple, _MANY). A tuple
    # per node cost 56 bytes (a third of a node's memory), an allocation and
    # a second object for the cyclic collector to track; ``Node.parents``
    # builds the tuple when it is read.
    __slots__ = ("value", "op", "_x", "_y", "name", "level", "__weakref__")

    if TYPE_CHECKING:
        # what the slots hold, for type checkers (Node declares them again as fields)
        value: float
        op: str
        _x: Any
        _y: Any
        name: str
        level: int


class _Many:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<more than two parents>"


_MANY: Any = _Many()  # the second parent slot of a node of three or more parents


def _parent_slots(parents: tuple[Node, ...]) -> tuple[Any, Any]:
    k = len(parents)
    if k == 2:
        return parents  # type: ignore[return-value]  # two nodes: the pair itself
    if k == 1:
        return parents[0], None
    if k:
        return parents, _MANY
    return None, None


_new = object.__new__
_newobj = copyreg.__newobj__  # type: ignore[attr-defined]

# Pickling and copy.deepcopy save an object's parts inside it, so a node
# saved plainly recurses once per level of its graph, and a graph a few
# hundred levels deep hits the recursion limit. So a node's nodes below are
# listed first, in topological order (``_Below``): each one then finds its
# parents in the memo, nothing recurses more than one level, and shared
# nodes stay shared. A thread's nodes listed in the current save are marked
# in ``_saving.ids``: saved plainly, and where a later walk stops, so that
# saving the nodes of one graph one after another stays linear.
#
# Which save is current is told by a token that every node's save carries:
# the memo of a pickle (or a deepcopy) saves the token once, so its reduce
# runs at the start of each save and clears the marks of the one before,
# also one cut short by an error or an interrupt. A save started while
# another runs in the same thread (a pickle inside a pickle, or a Pickler
# used again after another save) leaves marks the first one's memo lacks:
# on a deep graph that first one may then hit the recursion limit.


class _Saving(threading.local):
    def __init__(self) -> None:
        self.ids: dict[int, weakref.ref[Node]] = {}  # the nodes listed in the current save
        self.token = _SaveToken()


class _SaveToken:
    __slots__ = ("__weakref__",)

    def __reduce__(self) -> tuple[Any, ...]:
        _saving.ids = {}  # a new save: the marks of another are not in its memo
        return (tuple, ())


_saving = _Saving()


class _Below:
    # the nodes below ``node`` that the current save has not listed, listed when saved
    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node

    def __reduce__(self) -> tuple[Any, ...]:
        ids = _saving.ids
        order: list[Node] = []
        stack: list[tuple[Node, bool]] = [(self.node, False)]
        push = stack.append
        seen: set[int] = set()
        while stack:
            n, done = stack.pop()
            if done:
                order.append(n)
                ids[id(n)] = weakref.ref(n)
                continue
            k = id(n)
            if k in seen:
                continue
            r = ids.get(k)
            if r is not None and r() is n:
                continue  # listed before in this save: in the memo already
            # expanded here: finished before any node that uses it, as a waiting node lower in the stack is
            seen.add(k)
            push((n, True))
            for p in n.parents:
                push((p, False))
        order.pop()  # the node itself: saved by its own reduce, right after this list
        return (list, (order,))


def _copy_error(what: str) -> TypeError:
    # for a node of a running transform (level > 0 and open)
    return TypeError(
        f"{what} of a node of a running fungrad transform: the copy is a new variable, which the "
        "transform does not differentiate, so its derivative would be lost without a word. Nodes "
        "never change, so use the node itself where a copy was meant."
    )


@attrs.frozen(eq=False, slots=True, weakref_slot=False, repr=False, init=False, getstate_setstate=False, match_args=False)
class Node(_Slots):
    """One scalar value in an expression graph, and how it was computed.

    Nodes compare and hash by identity: two leaves holding the same number
    are two different variables. ``op`` is ``''`` for a leaf, else the name
    of a primitive in :data:`PRIMITIVES`; ``parents`` are the argument nodes,
    a tuple. Make nodes with :func:`var`, :func:`const` and the ops.

    >>> import fungrad as fg
    >>> a = fg.var(2.0, name="a")
    >>> b = a * a
    >>> b.value, b.op, b.parents == (a, a), a.op, a.parents
    (4.0, 'mul', True, '', ())
    """

    value: float
    op: str
    name: str
    level: int

    def __init__(self, value: float, op: str = "", parents: tuple[Node, ...] = (), name: str = "", level: int = 0):
        if value.__class__ is not float:
            raise TypeError(f"Node: value must be a float, got {type(value).__name__} {value!r:.60}")
        if not isinstance(op, str) or (op and op not in PRIMITIVES):
            raise ValueError(f"Node: op must be '' (a leaf) or the name of a primitive, got {op!r:.60}")
        if not isinstance(parents, tuple) or any(p.__class__ is not Node for p in parents):
            raise TypeError("Node: parents must be a tuple of fungrad Nodes")
        if op == "affine" and (len(parents) < 3 or len(parents) % 2 != 1):
            raise ValueError(f"Node: an affine node has the arguments b, w0, x0, w1, x1, ...; got {len(parents)}")
        if bool(op) != bool(parents):
            raise ValueError(
                f"Node: a leaf (op '') has no parents and an op has some; got op {op!r} with {len(parents)} parents"
                + (" (attrs.evolve cannot copy a node's parents: use fungrad.named to rename one)" if op else "")
            )
        if not isinstance(name, str):
            raise TypeError(f"Node: name must be a str, got {type(name).__name__}")
        if level.__class__ is not int:
            raise TypeError(f"Node: level must be an int, got {type(level).__name__}")
        self.__setstate__((value, op, parents, name, level))

    # pattern matching, pickling and copying see the parents as the constructor takes them
    __match_args__ = ("value", "op", "parents", "name", "level")

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.value, self.op, self.parents, self.name, self.level)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # see _Below: a node listed in this save is saved with its parents
        # (in the memo); any other first lists the nodes below it
        level = self.level
        if level > 0 and level in _open:
            raise _copy_error("a copy (copy.deepcopy, pickle)")
        x = self._x
        if x is None:
            return super().__reduce_ex__(protocol)
        y = self._y
        parents = (x,) if y is None else x if y is _MANY else (x, y)
        r = _saving.ids.get(id(self))
        if r is not None and r() is self:
            return (_newobj, (Node,), (_saving.token, self.value, self.op, parents, self.name, level))
        return (_newobj, (Node,), (_saving.token, _Below(self), self.value, self.op, parents, self.name, level))

    def __copy__(self) -> Node:
        if self.level > 0 and self.level in _open:
            raise _copy_error("a copy (copy.copy)")
        n = _new(Node)
        n.__setstate__(self.__getstate__())
        return n

    def __setstate__(self, state: Any) -> None:
        if state.__class__ is dict:  # pickled when parents was an attrs field: {field: value}
            state = tuple(state.get(k, d) for k, d in (("value", None), ("op", ""), ("parents", ()), ("name", ""), ("level", 0)))
        if state.__class__ is tuple and len(state) in (6, 7):
            state = state[-5:]  # saved with the token of its save (and the nodes below): see _Below
        if state.__class__ is not tuple or len(state) != 5:
            raise TypeError(f"Node: cannot restore a node from {type(state).__name__} {state!r:.60}")
        value, op, parents, name, level = state
        _set = object.__setattr__
        _set(self, "value", value)
        _set(self, "op", op)
        _set(self, "name", name)
        _set(self, "level", level)
        x, y = _parent_slots(parents)
        _set(self, "_x", x)
        _set(self, "_y", y)
        ref = _custom_owner.get(op)
        owner = ref() if ref is not None else None
        if owner is not None:
            _owners[self] = owner  # a copy of a custom_vjp's node holds it too

    @property
    def parents(self) -> tuple[Node, ...]:
        """The argument nodes of the op, in order; ``()`` for a leaf."""
        y = self._y
        if y is None:
            x = self._x
            return () if x is None else (x,)
        if y is _MANY:
            return self._x  # type: ignore[no-any-return]
        return (self._x, y)

    __fungrad_leaf__ = True  # a pytree leaf, though it is an attrs class

    def __repr__(self) -> str:
        # never recurse into parents: graphs can be a million nodes deep
        extra = f", op={self.op!r}" if self.op else ""
        if self.name:
            extra += f", name={self.name!r}"
        return f"Node({self.value!r}{extra})"

    def __format__(self, spec: str) -> str:
        return format(self.value, spec) if spec else repr(self)

    # Comparisons read values, so Python control flow works in eager code
    # (inside grad too: a branch does not lose a derivative). Under jit a
    # value cannot be read at replay time, so they raise there.
    def __eq__(self, other: Any) -> Any:
        # identity, as ever; but jit's (and vmap's) trace makes nodes of the
        # numbers it is called with, so ``n == 1``, ``a == b`` or ``x != x``
        # (nan) on them would not say what the call without jit says of the
        # numbers: there it raises, as < does. A set or dict finds a node by
        # its hash, by identity, and a list tests identity first.
        if other.__class__ is Node:
            if self.level == other.level:  # two numbers without jit, or two nodes
                _jit_number(self, "==")
            return self is other
        if isinstance(other, numbers.Number):
            _jit_number(self, "==")
        return NotImplemented

    def __ne__(self, other: Any) -> Any:
        if other.__class__ is Node:
            if self.level == other.level:
                _jit_number(self, "!=")
            return self is not other
        if isinstance(other, numbers.Number):
            _jit_number(self, "!=")
        return NotImplemented

    __hash__ = object.__hash__  # by identity, as the class would have it without __eq__

    def __lt__(self, other: Any) -> bool:
        return _value_of(self, "<") < _value_of(other, "<")

    def __le__(self, other: Any) -> bool:
        return _value_of(self, "<=") <= _value_of(other, "<=")

    def __gt__(self, other: Any) -> bool:
        return _value_of(self, ">") > _value_of(other, ">")

    def __ge__(self, other: Any) -> bool:
        return _value_of(self, ">=") >= _value_of(other, ">=")

    def __bool__(self) -> bool:
        return _value_of(self, "bool()") != 0.0

    # A plain float leaves the graph: its derivative would be lost without a
    # word, so inside a transform these raise (as JAX does).
    def __float__(self) -> float:
        return _plain(self, "float()")

    def __int__(self) -> int:
        return int(_plain(self, "int()"))

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(_plain(self, "round()"), ndigits)

    def __trunc__(self) -> int:
        return math.trunc(_plain(self, "math.trunc()"))

    def __floor__(self) -> int:
        return math.floor(_plain(self, "math.floor()"))

    def __ceil__(self) -> int:
        return math.ceil(_plain(self, "math.ceil()"))

    def __index__(self) -> int:
        _plain(self, "an integer use (hex(), an index, range())")
        raise TypeError(
            "a fungrad Node holds a float and cannot be used as an integer (hex(), an index, "
            "range()); use int(x.value) outside any transform"
        )

    # the hot binary ops are written out: dispatch through _binary costs ~25%.
    # They mirror _binary with the add and mul rows of the table.
    def __add__(self, other: Any) -> Node:
        if other.__class__ is not Node:
            other = _lift(other, "+")
            if other is NotImplemented:
                return other
        t = _get()
        lv = t.level
        sl, ol = self.level, other.level
        if (sl > 0 and sl != lv) or (ol > 0 and ol != lv):
            # a node of another level: an enclosing one's (a nested grad's
            # backward pass makes many), or a running one's elsewhere, an error
            _foreign((self, other), t)
        n = _new(_Slots)
        n.value = self.value + other.value
        n.op = "add"
        n._x = self
        n._y = other
        n.name = ""
        n.level = lv
        n.__class__ = Node
        if t.tape is not None:
            t.tape.append(n)  # type: ignore[arg-type]
        return n  # type: ignore[return-value]

    def __radd__(self, other: Any) -> Node:
        other = _lift(other, "+")
        if other is NotImplemented:
            return other
        return other.__add__(self)

    def __sub__(self, other: Any) -> Node:
        return _operator(_SUB, self, other)

    def __rsub__(self, other: Any) -> Node:
        return _operator(_SUB, other, self)

    def __mul__(self, other: Any) -> Node:
        if other.__class__ is not Node:
            other = _lift(other, "*")
            if other is NotImplemented:
                return other
        t = _get()
        lv = t.level
        sl, ol = self.level, other.level
        if (sl > 0 and sl != lv) or (ol > 0 and ol != lv):
            # a node of another level: an enclosing one's (a nested grad's
            # backward pass makes many), or a running one's elsewhere, an error
            _foreign((self, other), t)
        n = _new(_Slots)
        n.value = self.value * other.value
        n.op = "mul"
        n._x = self
        n._y = other
        n.name = ""
        n.level = lv
        n.__class__ = Node
        if t.tape is not None:
            t.tape.append(n)  # type: ignore[arg-type]
        return n  # type: ignore[return-value]

    def __rmul__(self, other: Any) -> Node:
        other = _lift(other, "*")
        if other is NotImplemented:
            return other
        return other.__mul__(self)

    def __truediv__(self, other: Any) -> Node:
        return _operator(_DIV, self, other)

    def __rtruediv__(self, other: Any) -> Node:
        return _operator(_DIV, other, self)

    def __pow__(self, other: Any) -> Node:
        return _operator(_POW, self, other)

    def __rpow__(self, other: Any) -> Node:
        return _operator(_POW, other, self)

    def __neg__(self) -> Node:
        return _unary(_NEG, self)

    def __pos__(self) -> Node:
        return self

    def __abs__(self) -> Node:
        return _unary(_ABS, self)

    def named(self, name: str) -> Node:
        """A node computed like this one, with a display name (see :func:`named`)."""
        return named(self, name)

    if TYPE_CHECKING:
        # the unary methods made from the table (x.tanh()), set on the class by _register
        def exp(self) -> Node: ...
        def log(self) -> Node: ...
        def tanh(self) -> Node: ...
        def relu(self) -> Node: ...
        def sigmoid(self) -> Node: ...
        def sqrt(self) -> Node: ...
        def sin(self) -> Node: ...
        def cos(self) -> Node: ...
        def tan(self) -> Node: ...
        def asin(self) -> Node: ...
        def acos(self) -> Node: ...
        def atan(self) -> Node: ...
        def sinh(self) -> Node: ...
        def cosh(self) -> Node: ...
        def log1p(self) -> Node: ...
        def expm1(self) -> Node: ...
        def erf(self) -> Node: ...
        def softplus(self) -> Node: ...
        def abs(self) -> Node: ...


def _refuse(sym: str, text: str) -> Callable[[Node, Any], Any]:
    def method(self: Node, other: Any) -> Any:
        raise _no_op(sym, text)

    return method


# step functions of two arguments have no derivative worth a primitive
for _name, _sym, _text in (
    ("mod", "%", "x % y"), ("floordiv", "//", "x // y"), ("divmod", "divmod", "divmod(x, y)")
):
    setattr(Node, f"__{_name}__", _refuse(_sym, _text))
    setattr(Node, f"__r{_name}__", _refuse(_sym, _text))
del _name, _sym, _text


def _no_op(sym: str, text: str) -> TypeError:
    return TypeError(
        f"fungrad nodes have no {sym} ({text}): it is a step function whose derivative is 0 "
        "almost everywhere, so it is not a primitive. Compute it on values outside any transform "
        "(x.value), or build what you need from the primitives (fg.where, fg.sign, fg.step)"
    )


_Number = Union[float, int]
Scalar = Union[Node, float, int]


def is_node(x: Any) -> bool:
    """Whether ``x`` is a fungrad :class:`Node`.

    >>> import fungrad as fg
    >>> fg.is_node(fg.var(1.0)), fg.is_node(1.0)
    (True, False)
    """
    return x.__class__ is Node


def _value_of(x: Any, what: str) -> Any:
    if x.__class__ is not Node:
        return x
    jit = _get().jit_level
    if jit is not None and x.level >= jit:
        raise TypeError(
            f"{what} of a traced node under fungrad.jit, vmap or export: the value is not known "
            "when the traced code runs again, so Python control flow cannot depend on it. Use "
            "value-free ops instead (fg.where(c, a, b) picks a where c > 0, fg.relu, abs, fg.sign), "
            "or call the function without these transforms."
        )
    return x.value


def _jit_number(x: Node, what: str) -> None:
    # a node of the jit (or vmap) trace itself, which the call without jit
    # would have as a number; the nodes of a grad inside it are nodes there too
    if x.level == _get().jit_level:
        _value_of(x, what)


def _plain(x: Node, what: str) -> float:
    v = _value_of(x, what)
    # a node of a running transform, or of one that ended inside the
    # transforms running here: a derivative rule differentiated again (grad
    # of grad) gets nodes of an inner level whose derivative still flows to
    # the outer. A node of a transform that ended before them (kept from an
    # earlier step) is a constant here: its float is fine.
    t = _get()
    if x.level > 0 and (x.level in _open or t.active and x.level >= min(t.chain, default=t.level)):
        raise TypeError(
            f"{what} of a traced node inside a fungrad transform: a plain float leaves the graph, "
            "so its derivative would be lost without a word. Use fungrad's functions (fg.sin, "
            "fg.exp, ... instead of math.sin, math.exp), or fg.stop_gradient(x) where the "
            "derivative should not flow"
        )
    return v  # type: ignore[no-any-return]


class ForeignNodeError(RuntimeError):
    """A node of a transform still running, used outside it: its derivative would be lost."""


def _foreign(parents: tuple[Node, ...], t: Trace) -> None:
    # A node of a level that is still running, used where that level is not
    # open: in another thread (a thread pool inside grad), or in a context
    # copied from elsewhere. Its derivative would silently be zero.
    for p in parents:
        lv = p.level
        if lv > 0 and lv not in t.chain and lv in _open:
            raise ForeignNodeError(
                "a node of a fungrad transform that is still running (grad, jit, jvp, ...) was used "
                "in another thread (or another context) than the one running the transform. Its "
                "derivative would be lost, so fungrad stops here: run the computation in the "
                "thread that called the transform (for example map the function over the inputs "
                "in that thread), or call the transform inside the worker thread"
            )


def _mk(value: float, op: str, parents: tuple[Node, ...], name: str = "", const: bool = False) -> Node:
    t = _get()
    n = _new(_Slots)
    n.value = value
    n.op = op
    n._x, n._y = _parent_slots(parents)
    n.name = name
    if const:
        # A function of constants is a constant: no grad walks it, so none
        # computes derivatives nobody asked for (log of a negative base in
        # the exponent rule of pow, say). The hot + and * skip this check.
        n.level = CONST
        n.__class__ = Node
        if t.debug:
            _check(n)  # type: ignore[arg-type]
        return n  # type: ignore[return-value]
    lv = t.level
    for p in parents:
        if p.level > 0 and p.level != lv:
            _foreign(parents, t)
            break
    n.level = lv
    n.__class__ = Node
    if t.tape is not None:
        t.tape.append(n)  # type: ignore[arg-type]
    return n  # type: ignore[return-value]


def affine(b: Any, ws: Sequence[Any], xs: Sequence[Any]) -> Any:
    """``b + ws[0] * xs[0] + ws[1] * xs[1] + ...``, evaluated left to right.

    Outside the levels named below, it builds exactly the nodes that the
    Python expression builds (a ``mul`` and an ``add`` per term, numbers
    lifted to constants), so values, gradients and drawings are the same,
    in one call instead of two operator calls per term: a neuron's sum is
    most of a network's nodes. Terms that are not a node times a node or a
    float, or that hold a node of another running transform, go through the
    operators themselves.

    At the level of a :func:`fungrad.grad`, :func:`fungrad.value_and_grad`
    or :func:`fungrad.jacobian` run at the root or right inside a
    :func:`fungrad.jit` trace, and of the jit trace itself (levels that only
    their own backward pass walks, or none), the sum is one ``affine`` node
    instead, with the arguments ``b, w0, x0, w1, x1, ...`` (a chain of them
    past 16 terms; a term that is not a node times a node or a float is
    added with the operators between two of them). Its value is the same,
    and the backward pass gives each argument the cotangents the ``mul`` and
    ``add`` nodes would give, in their order, so gradients are the same to
    the bit. That halves the time of a training step, and jit compiles
    about a seventh of the nodes. Everywhere else (outside transforms, where
    graphs are drawn; in ``jvp``, ``vmap``, ``export``, nested ``grad`` and
    under ``debug_nans``) the graph is the operators' one.

    >>> import fungrad as fg
    >>> w, x = [fg.var(2.0), fg.var(3.0)], [0.5, fg.var(-1.0)]
    >>> y = fg.affine(fg.var(1.0), w, x)
    >>> y.value, y.op, y.parents[1].op, fg.affine(1.0, [2.0, 3.0], [0.5, -1.0])
    (-1.0, 'add', 'mul', -1.0)
    >>> def loss(p):
    ...     y = fg.affine(p[0], [p[1], p[2]], [0.5, p[0]])
    ...     print(y.op, len(y.parents))
    ...     return y
    >>> fg.grad(loss)([1.0, 2.0, 3.0])
    affine 5
    [4.0, 0.5, 1.0]
    """
    t = _get()
    lv = t.level
    act = b
    if act.__class__ is not Node or (act.level > 0 and act.level != lv):
        for w, x in zip(ws, xs):
            act = act + w * x
        return act
    append: Callable[[Any], None] | None = None if t.tape is None else t.tape.append
    if t.fuse:
        return _fused(act, zip(ws, xs), t, append)
    new, slots, node, const = _new, _Slots, Node, CONST
    for w, x in zip(ws, xs):
        if w.__class__ is not Node or (w.level > 0 and w.level != lv):
            act = act + w * x
            continue
        if x.__class__ is not Node:
            if x.__class__ is not float:
                act = act + w * x
                continue
            c = new(slots)  # as _lift makes it
            c.value = x
            c.op = ""
            c._x = c._y = None
            c.name = ""
            c.level = const
            c.__class__ = node
            x = c
        elif x.level > 0 and x.level != lv:
            act = act + w * x
            continue
        # the two nodes written out as __mul__ and __add__ write theirs: a
        # call to make each would cost most of what this function saves
        m = new(slots)
        m.value = w.value * x.value
        m.op = "mul"
        m._x = w
        m._y = x
        m.name = ""
        m.level = lv
        m.__class__ = node
        if append is not None:
            append(m)
        a = new(slots)
        a.value = act.value + m.value
        a.op = "add"
        a._x = act
        a._y = m
        a.name = ""
        a.level = lv
        a.__class__ = node
        if append is not None:
            append(a)
        act = a
    return act


def _fused(b: Node, pairs: Iterator[tuple[Any, Any]], t: Trace, append: Callable[[Any], None] | None) -> Node:
    # The sum as affine nodes: one per run of terms that are a node times a
    # node or a float (at most AFFINE_TERMS each, the next one's bias the
    # node before); a term that is not (a number weight, an int input) is
    # added with the operators between two runs. A node of another level is
    # checked as the operators check it (a running transform's, used
    # elsewhere, is an error). The value is the same left-to-right sum, and
    # the backward pass gives the arguments the cotangents the mul and add
    # nodes would have given, in the same order (autodiff._backward), so
    # gradients are the same to the bit.
    lv = t.level
    act = b
    args = [act]
    push = args.append
    val = act.value
    for w, x in pairs:
        if len(args) > 2 * AFFINE_TERMS:
            act = _affine_node(args, val, lv, append)
            args = [act]
            push = args.append
        wc, xc = w.__class__, x.__class__
        if wc is not Node or (xc is not Node and xc is not float):
            if len(args) > 1:
                act = _affine_node(args, val, lv, append)
            act = act + w * x
            args = [act]
            push = args.append
            val = act.value
            continue
        if xc is float:
            x = _lift(x)
        if (w.level > 0 and w.level != lv) or (x.level > 0 and x.level != lv):
            _foreign((w, x), t)
        val = val + w.value * x.value
        push(w)
        push(x)
    return _affine_node(args, val, lv, append) if len(args) > 1 else act


def _affine_node(args: list[Node], val: float, lv: int, append: Callable[[Any], None] | None) -> Node:
    n = _new(_Slots)
    n.value = val
    n.op = "affine"
    n._x = tuple(args)
    n._y = _MANY
    n.name = ""
    n.level = lv
    n.__class__ = Node
    if append is not None:
        append(n)
    return n  # type: ignore[return-value]


# The most terms of one affine node (a longer sum is a chain of them). jit
# writes a node of k terms as one expression k + 1 levels deep, and folds it
# into its user only below codegen.MAX_DEPTH (24) levels.
AFFINE_TERMS = 16


def affine_of(args: list[Any]) -> Node:
    """The affine node of ``args`` (``b, w0, x0, w1, x1, ...``) at the current level; numbers become constants.

    For the backward pass into a jit trace (autodiff._Sum): the value is the
    left-to-right sum, as the operators would compute it.
    """
    nodes = tuple([a if a.__class__ is Node else _lift(a) for a in args])
    return _mk(_affine_fwd(*[a.value for a in nodes]), "affine", nodes)


# the constant index nodes of picks, shared by every graph (immutable, never
# differentiated); past this many, a pick gets a constant of its own
_INDEX: dict[int, Node] = {}
_INDEX_SHARED = 1 << 16


def map_node(batch: Any, parents: tuple[Node, ...], const: bool) -> Node:
    """The node of a ``vmap`` over a batch: ``batch`` (a :class:`fungrad.batch.Batch`) is its value."""
    return _mk(batch, "vmap", parents, const=const)


def op_label(n: Node) -> str:
    """How drawings show the op of ``n``: its primitive's label; a vmap node names its body and batch."""
    if n.op == "vmap":
        return f"vmap {n.value.map.name} ×{n.value.size}"  # type: ignore[attr-defined]
    if n.op == "vmap_pick":
        return f"[{int(n.parents[1].value)}]"
    return PRIMITIVES[n.op].label


def pick(anchor: Node, i: int) -> Node:
    """Output ``i`` of the ``vmap`` node ``anchor``."""
    c = _INDEX.get(i)
    if c is None:
        c = _lift(float(i))
        if i < _INDEX_SHARED:
            c = _INDEX.setdefault(i, c)  # atomic: two threads agree on one node
    return _mk(anchor.value[i], "vmap_pick", (anchor, c), const=anchor.level == CONST)  # type: ignore[index]


def real_number(x: Any) -> bool:
    """Whether ``x`` is a real number as fungrad takes it: a float or int, not a bool.

    Other :class:`numbers.Real` types (``fractions.Fraction``, NumPy's float64)
    count too and are converted with ``float``. A bool and an enum member
    (an ``IntEnum``'s) are ints that name a choice, not a value: under
    ``jit`` they are static, so that ``mode is Mode.A`` keeps its meaning.

    >>> from fungrad.expr import real_number
    >>> real_number(1.5), real_number(2), real_number(True), real_number(1j), real_number("1")
    (True, True, False, False, False)
    """
    c = x.__class__
    return c is float or c is int or (c is not bool and isinstance(x, numbers.Real) and not isinstance(x, enum.Enum))


def _check_number(x: Any, what: str, arg: str = "", nodes: bool = True) -> float:
    if x.__class__ is float:
        return x  # type: ignore[no-any-return]
    if arg:
        what = f"{what}: argument {arg}"
    if not real_number(x):
        also = " or a fungrad Node" if nodes else ""
        raise TypeError(f"{what}: expected a real number (float or int){also}, got {tree.describe(x)}")
    try:
        return float(x)
    except OverflowError:
        raise ValueError(f"{what}: {tree.describe(x)} is too large for a float (at most about 1.8e308)") from None


def _lift(x: Any, op: str = "") -> Any:
    """A constant node for a number; NotImplemented for anything else."""
    c = x.__class__
    if c is float or real_number(x):
        n = _new(_Slots)
        n.value = x if c is float else _check_number(x, f"the operator {op}" if op else "fungrad")
        n.op = ""
        n._x = n._y = None
        n.name = ""
        n.level = CONST
        n.__class__ = Node
        return n
    return NotImplemented


def var(value: float, name: str = "") -> Node:
    """A leaf node: a variable holding ``value``.

    >>> import fungrad as fg
    >>> x = fg.var(2.0, name="x")
    >>> x.value, x.op, x.parents, x.name
    (2.0, '', (), 'x')
    """
    v = _check_number(value, "fungrad.var", nodes=False)
    if not isinstance(name, str):
        raise TypeError(f"fungrad.var: name must be a str, got {type(name).__name__}")
    return _mk(v, "", (), name)


def const(value: float, name: str = "") -> Node:
    """A leaf node that no ``grad`` differentiates with respect to.

    Numbers mixed with nodes (``x * 3``) become constants like this. Asking
    :func:`fungrad.gradients` for a derivative with respect to a constant is
    an error.

    >>> import fungrad as fg
    >>> c = fg.const(3.0)
    >>> fg.grad(lambda x: x * c)(2.0)
    3.0
    """
    n = _lift(_check_number(value, "fungrad.const", nodes=False))
    if name:
        if not isinstance(name, str):
            raise TypeError(f"fungrad.const: name must be a str, got {type(name).__name__}")
        return attrs.evolve(n, name=name)  # type: ignore[no-any-return]
    return n  # type: ignore[no-any-return]


def named(x: Node, name: str) -> Node:
    """A node computed like ``x`` (same op, same parents) that carries ``name``.

    Nothing is mutated: ``x`` keeps its own (empty or old) name, and the new
    node is a new value in the graph. Use it where the name should show in
    drawings and tables. A leaf outside any transform gives a new leaf (a
    new variable); an input of a running transform gives a ``link`` node
    to it, so that its derivative still flows.

    >>> import fungrad as fg
    >>> a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
    >>> e = (a * b).named("e")
    >>> e.name, e.op, e.value
    ('e', 'mul', -6.0)
    """
    if x.__class__ is not Node:
        raise TypeError(f"named: expected a fungrad Node, got {type(x).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"named: name must be a str, got {type(name).__name__}")
    if x.op == "link" or not x.parents and x.level > 0 and x.level in _open:
        # an input of a running transform (a leaf, or in a nested one a
        # link to the outer node): a new leaf, or a link that skips it,
        # would be cut off from it; a link to it passes the derivative on
        return _mk(x.value, "link", (x,), name)
    if not x.parents:
        if x.level == CONST:
            return const(x.value, name)
        return var(x.value, name)
    n = _mk(x.value, x.op, x.parents, name, x.level == CONST)
    owner = _owners.get(x)
    if owner is not None:
        _owners[n] = owner  # a custom_vjp's node, named: it holds the custom_vjp too
    return n


# --------------------------------------------------------------------------
# Applying a primitive: a plain float for plain numbers, a node otherwise.


def _operator(p: Primitive, a: Any, b: Any) -> Any:
    # for Python's operators: NotImplemented lets the other operand answer
    if a.__class__ is not Node:
        a = _lift(a, p.label)
    if b.__class__ is not Node:
        b = _lift(b, p.label)
    if a is NotImplemented or b is NotImplemented:
        return NotImplemented
    return _mk(p.fwd(a.value, b.value), p.name, (a, b), "", a.level + b.level == 2 * CONST)


def _binary(p: Primitive, a: Any, b: Any) -> Any:
    ca, cb = a.__class__ is Node, b.__class__ is Node
    if not ca and not cb:
        return _float_op(p, (_check_number(a, p.name, p.params[0]), _check_number(b, p.name, p.params[1])))
    if not ca:
        a = _lift(_check_number(a, p.name, p.params[0]))
    if not cb:
        b = _lift(_check_number(b, p.name, p.params[1]))
    return _mk(p.fwd(a.value, b.value), p.name, (a, b), "", a.level + b.level == 2 * CONST)


def _apply(p: Primitive, args: tuple[Any, ...]) -> Any:
    if not any(a.__class__ is Node for a in args):
        return _float_op(p, tuple([_check_number(a, p.name, k) for a, k in zip(args, p.params)]))
    nodes = []
    const = True
    for a, k in zip(args, p.params):
        if a.__class__ is not Node:
            a = _lift(_check_number(a, p.name, k))
        elif a.level != CONST:
            const = False
        nodes.append(a)
    return _mk(p.fwd(*[a.value for a in nodes]), p.name, tuple(nodes), "", const)


def _unary(p: Primitive, x: Node) -> Node:
    t = _get()
    lv = t.level
    xl = x.level
    if xl == CONST or (xl > 0 and xl != lv):
        return _mk(p.fwd(x.value), p.name, (x,), "", xl == CONST)  # a constant, or a node of another level
    # as _mk makes it, written out: activations are a tenth of a network's nodes
    n = _new(_Slots)
    n.value = p.fwd(x.value)
    n.op = p.name
    n._x = x
    n._y = None
    n.name = ""
    n.level = lv
    n.__class__ = Node
    if t.tape is not None:
        t.tape.append(n)  # type: ignore[arg-type]
    return n  # type: ignore[return-value]


def _float_op(p: Primitive, args: tuple[float, ...]) -> float:
    v = p.fwd(*args)
    if not _isfinite(v) and _get().debug:
        ins = ", ".join(repr(a) for a in args)
        raise FloatingPointError(f"debug_nans: op {p.name!r} produced {v!r} from inputs ({ins})")
    return v  # type: ignore[no-any-return]


def _op_function(p: Primitive) -> Callable[..., Any]:
    """The public function of a primitive: floats in, a float out; a node for nodes."""
    fwd, name = p.fwd, p.name
    if p.arity == 1:

        def op(x: Any) -> Any:
            if x.__class__ is Node:
                return _unary(p, x)
            return _float_op(p, (_check_number(x, name, p.params[0]),))

    elif p.arity == 2:

        def op(a: Any, b: Any) -> Any:  # type: ignore[misc]
            return _binary(p, a, b)

    else:

        def op(*args: Any) -> Any:  # type: ignore[misc]
            if len(args) != p.arity:
                raise TypeError(f"{name}() takes {p.arity} arguments ({', '.join(p.params)}), got {len(args)}")
            return _apply(p, args)

    del fwd
    op.__name__ = op.__qualname__ = name
    op.__module__ = __name__
    op.__doc__ = p.doc
    op.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(a, inspect.Parameter.POSITIONAL_ONLY) for a in p.params]
    )
    return op


def _method(p: Primitive) -> Callable[[Node], Node]:
    def m(self: Node) -> Node:
        return _unary(p, self)

    m.__name__ = m.__qualname__ = p.name
    m.__doc__ = f"``fungrad.{p.name}(self)``: " + p.doc.split("\n", 1)[0]
    return m


def _register(p: Primitive, function: bool = True) -> Callable[..., Any] | None:
    with _registry_lock:
        if p.name in PRIMITIVES:
            raise ValueError(f"primitive: the name {p.name!r} is already taken; choose another")
        PRIMITIVES[p.name] = p
        FWD[p.name] = p.fwd
        RULES[p.name] = p.vjp
        if p.joint is not None:
            JOINT[p.name] = p.joint
    if not function:
        return None  # an internal op: no function of its own
    fn = OPS[p.name] = _op_function(p)
    if p.method:
        setattr(Node, p.name, _method(p))
    return fn


# The table becomes the op functions (fungrad.exp) and Node methods (x.exp()).
OPS: dict[str, Callable[..., Any]] = {}
# the rows of fg.vmap's nodes: a Batch-valued map and its picks, no op functions
MAP_OPS = ("vmap", "vmap_pick")
for _prim in _TABLE:
    # affine's function is fungrad.affine, which makes the node where it may
    _register(_prim, function=_prim.name not in MAP_OPS and _prim.name != "affine")
del _TABLE, _prim
globals().update(OPS)

_ADD, _SUB, _MUL, _DIV, _POW, _NEG, _ABS = (PRIMITIVES[k] for k in ("add", "sub", "mul", "div", "pow", "neg", "abs"))
_LINK = PRIMITIVES["link"]

# the op functions, named for the rules above and for type checkers
if TYPE_CHECKING:
    add: Callable[..., Any]
    sub: Callable[..., Any]
    mul: Callable[..., Any]
    div: Callable[..., Any]
    pow: Callable[..., Any]
    neg: Callable[..., Any]
    exp: Callable[..., Any]
    log: Callable[..., Any]
    tanh: Callable[..., Any]
    relu: Callable[..., Any]
    sigmoid: Callable[..., Any]
    sqrt: Callable[..., Any]
    sin: Callable[..., Any]
    cos: Callable[..., Any]
    abs: Callable[..., Any]
    sign: Callable[..., Any]
    step: Callable[..., Any]
    where: Callable[..., Any]
    sinh: Callable[..., Any]
    cosh: Callable[..., Any]
    share: Callable[..., Any]
    stop_gradient: Callable[..., Any]
add, sub, mul, div, pow, neg = (OPS[k] for k in ("add", "sub", "mul", "div", "pow", "neg"))
exp, log, tanh, relu, sigmoid, sqrt = (OPS[k] for k in ("exp", "log", "tanh", "relu", "sigmoid", "sqrt"))
sin, cos, abs, sign, step, where = (OPS[k] for k in ("sin", "cos", "abs", "sign", "step", "where"))
sinh, cosh, share, stop_gradient = (OPS[k] for k in ("sinh", "cosh", "share", "stop_gradient"))


def link(x: Node) -> Node:
    """A node of the current level standing for ``x`` (derivative 1): a nested transform's input."""
    return _mk(x.value, "link", (x,), x.name)


# --------------------------------------------------------------------------
# Your own primitives


def _positional_arity(fn: Callable[..., Any], who: str) -> int | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: trust the rules
    n = 0
    for prm in sig.parameters.values():
        if prm.kind is prm.VAR_POSITIONAL:
            return None
        if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD) and prm.default is prm.empty:
            n += 1
    return n


def primitive(
    name: str,
    fwd: Callable[..., float],
    vjp: tuple[Rule | None, ...],
    *,
    label: str | None = None,
    doc: str | None = None,
) -> Callable[..., Any]:
    """Declare a new primitive op; returns its function, which works on floats and nodes.

    ``fwd`` computes the op on floats. ``vjp`` holds one rule per argument:
    ``rule(g, ans, *args)`` returns the cotangent of that argument from the
    output's cotangent ``g``, the output ``ans`` and the inputs; ``None``
    marks an argument with no derivative. Write the rules with fungrad's ops
    (``fg.exp``, ``fg.where``, ``*`` ...) and the new op supports everything
    a built-in does: ``grad`` to any order, forward mode, ``jit`` (which
    calls ``fwd``), drawings (shown by ``label`` or ``name``), ``check_grads``
    and ``debug_nans``. The name must be new.

    >>> import fungrad as fg
    >>> softsign = fg.primitive(
    ...     "softsign_doc",
    ...     lambda x: x / (1.0 + abs(x)),
    ...     vjp=(lambda g, ans, x: g / (1.0 + abs(x)) ** 2,),
    ... )
    >>> softsign(1.0), fg.grad(softsign)(1.0), fg.grad(fg.grad(softsign))(1.0)
    (0.5, 0.25, -0.25)
    """
    if not isinstance(name, str) or not name or not name.isprintable():
        raise TypeError(f"primitive: name must be a non-empty str, got {name!r:.60}")
    if not callable(fwd):
        raise TypeError(f"primitive {name!r}: fwd must be a function on floats, got {type(fwd).__name__}")
    if callable(vjp):
        vjp = (vjp,)
    if not isinstance(vjp, (tuple, list)) or not vjp:
        raise TypeError(f"primitive {name!r}: vjp must be a tuple of rules, one per argument, got {vjp!r:.60}")
    for i, r in enumerate(vjp):
        if r is not None and not callable(r):
            raise TypeError(f"primitive {name!r}: vjp[{i}] must be a function rule(g, ans, *args) or None")
    n = _positional_arity(fwd, name)
    if n is not None and n != len(vjp):
        raise ValueError(
            f"primitive {name!r}: fwd takes {n} argument{'s' if n != 1 else ''} but vjp has "
            f"{len(vjp)} rule{'s' if len(vjp) != 1 else ''}; give one rule per argument"
        )
    if label is not None and not isinstance(label, str):
        raise TypeError(f"primitive {name!r}: label must be a str")
    params = ("x",) if len(vjp) == 1 else tuple(f"x{i}" for i in range(len(vjp)))
    text = doc if doc is not None else (getattr(fwd, "__doc__", None) or f"The primitive {name!r}.")
    rules = tuple(None if r is None else _ieee_rule(r, name, i) for i, r in enumerate(vjp))
    p = Primitive(name, _never_raises(fwd, name), rules, label or name, params, text, public=False)
    return _register(p)  # type: ignore[return-value]


def _ieee_rule(r: Rule, name: str = "", i: int = 0) -> Rule:
    # A user's rule may use Python's / or ** (g / x); on the plain floats of a
    # first-order pass they raise where IEEE gives inf or nan, while the same
    # rule on nodes (nested, or traced by jit) follows IEEE. So a rule that
    # raises is run again on constant nodes: the same answer in every mode.
    # What it returns must be a cotangent: a real number or a node (a complex
    # number or an array would come out of grad as the gradient).
    @functools.wraps(r)
    def rule(g: Any, ans: Any, *args: Any) -> Any:
        try:
            c = r(g, ans, *args)
        except (ZeroDivisionError, OverflowError):
            lifted = [v if v.__class__ is Node else _lift(v) for v in (g, ans, *args)]
            c = r(*lifted)
            if c.__class__ is Node:
                c = c.value
        if c.__class__ is float or c.__class__ is Node:
            return c
        if not real_number(c):
            raise TypeError(
                f"primitive {name!r}: the vjp rule of argument {i} returned {type(c).__name__} {c!r:.60}; "
                "expected a real number or a node (write it with fungrad's ops)"
            )
        return float(c)  # an int, a NumPy float: a float, as the built-in rules give

    return rule


def _never_raises(fwd: Callable[..., float], name: str) -> Callable[..., float]:
    # a user's forward may raise where IEEE gives nan or inf (math.log(0));
    # ops never raise on floats, so those errors become nan
    @functools.wraps(fwd)
    def f(*args: float) -> float:
        try:
            v = fwd(*args)
        except (ValueError, ZeroDivisionError, OverflowError):
            return _nan
        if v.__class__ is not float:
            if not real_number(v):
                raise TypeError(f"primitive {name!r}: fwd returned {type(v).__name__} {v!r:.60}; expected a float")
            v = float(v)
        return v  # type: ignore[no-any-return]

    return f


# per name of a custom_vjp, the number its next one of that name gets
_custom_names: dict[str, int] = {}
# per name of a custom_vjp, the object (held weakly) whose functions its row calls
_custom_owner: dict[str, Any] = {}
# per node a custom_vjp made, that custom_vjp: a node holds the rules that differentiate it
_owners: weakref.WeakKeyDictionary[Node, Any] = weakref.WeakKeyDictionary()


def _held(owner: Any, fwd: Callable[..., float], *xs: float) -> float:
    return fwd(*xs)


def replay_forward(op: str) -> Callable[..., float]:
    """The forward of ``op`` for code that runs it later (jit's replay): a custom_vjp's holds the custom_vjp."""
    fwd = FWD[op]
    ref = _custom_owner.get(op)
    owner = ref() if ref is not None else None
    return fwd if owner is None else functools.partial(_held, owner, fwd)


def _deleted(*args: Any) -> Any:
    raise RuntimeError(
        "custom_vjp: the function was deleted, but a node it made is still used; "
        "keep the custom_vjp alive as long as its results are"
    )


_retired: dict[int, Primitive] = {}  # a stand-in row per arity, shared by every deleted custom_vjp


def _retire(name: str, n: int) -> None:
    # A deleted custom_vjp's row shrinks to a shared stand-in that says so
    # when a node it made is used: a custom_vjp made anew at every call of a
    # function costs its name, not its closures. (Plain dict stores: this
    # runs when the object is collected, maybe inside a registration.)
    p = _retired.get(n)
    if p is None:
        p = _retired.setdefault(n, Primitive(
            "custom_vjp (deleted)", _deleted, (_deleted,) * n, "deleted custom_vjp",
            tuple(f"x{i}" for i in range(n)), "", "custom", False, False, None,
        ))
    PRIMITIVES[name] = p
    FWD[name] = _deleted
    RULES[name] = p.vjp
    JOINT.pop(name, None)
    OPS.pop(name, None)
    _custom_owner.pop(name, None)


class custom_vjp:
    """A function with a derivative you write yourself (JAX's ``custom_vjp``, on scalars).

    Decorate ``f``, then give ``f.defvjp(f_fwd, f_bwd)``: ``f_fwd(*args)``
    returns ``(output, residuals)`` and ``f_bwd(residuals, g)`` returns a
    tuple with one cotangent per argument (``None`` for none). ``f`` becomes
    one op in the graph: drawings show it as one node, ``jit`` replays ``f``
    on floats, and its derivative is ``f_bwd``'s, at every order when
    ``f_bwd`` uses fungrad's ops. Arguments are scalars (numbers or nodes) and
    the output is one scalar. It may be defined inside the function it
    serves (to close over a value): the nodes it makes, and ``jit``'s
    replays, keep it alive. A node records its op by name, so a graph
    unpickled in another process is differentiated with whatever is
    registered there under that name; save numbers (``fungrad.checkpoint``)
    rather than graphs of your own ops.

    >>> import fungrad as fg
    >>> @fg.custom_vjp
    ... def clip_gradient(x):
    ...     return x
    >>> clip_gradient.defvjp(lambda x: (x, None),
    ...                      lambda res, g: (fg.maximum(-1.0, fg.minimum(1.0, g)),))
    >>> fg.grad(lambda x: 10.0 * clip_gradient(x))(2.0)   # the gradient 10 is clipped to 1
    1.0
    """

    if TYPE_CHECKING:
        __name__: str  # copied from the function by functools.update_wrapper

    def __init__(self, fun: Callable[..., Any]):
        if not callable(fun):
            raise TypeError(f"custom_vjp: expected a function, got {type(fun).__name__}")
        self.fun = fun
        self._prim: Primitive | None = None
        self._op: Callable[..., Any] | None = None
        functools.update_wrapper(self, fun, updated=())

    def defvjp(self, fwd: Callable[..., Any], bwd: Callable[..., Any]) -> None:
        """Set the forward ``fwd(*args) -> (out, residuals)`` and backward ``bwd(residuals, g) -> tuple``."""
        if not callable(fwd) or not callable(bwd):
            raise TypeError("custom_vjp.defvjp: fwd and bwd must be functions")
        if self._prim is not None:
            raise ValueError(f"custom_vjp: defvjp was already called for {self.__name__!r}")
        n = _positional_arity(self.fun, "custom_vjp")
        if n is None or n == 0:
            raise TypeError(
                f"custom_vjp: {getattr(self.fun, '__qualname__', self.fun)!r} must take a fixed number "
                "(at least one) of positional scalar arguments"
            )
        qual = getattr(self.fun, "__qualname__", "f")
        self._fwd, self._bwd = fwd, bwd
        # The table's row holds this object weakly, so that a custom_vjp made
        # anew at every call of a function (the way to close over a
        # hyperparameter) is freed with its closures once nothing uses it: its
        # nodes hold it (see __call__), and so does jit's replay (replay_forward).
        me = weakref.ref(self)

        def this() -> custom_vjp:
            f = me()
            return f if f is not None else _deleted()

        def fwd_bwd(g: Any, args: tuple[Any, ...]) -> Any:
            f = this()
            out = f._fwd(*args)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"custom_vjp {qual}: fwd must return a pair (output, residuals)")
            return f._bwd(out[1], g)

        def joint(g: Any, ans: Any, *args: Any) -> tuple[Any, ...]:
            # every argument's cotangent at once: the backward and forward
            # passes ask it once per node (no memo: f_bwd may read state that
            # changes between passes, a schedule's scale, say)
            try:
                cts = fwd_bwd(g, args)
            except (AttributeError, ZeroDivisionError, OverflowError):
                if g.__class__ is Node or any(a.__class__ is Node for a in args):
                    raise
                # f_fwd or f_bwd uses Node methods (x.tanh()), which floats
                # lack, or Python's / or ** where IEEE gives inf or nan: on
                # the floats of a first-order pass, run them on constant
                # nodes, as a nested pass (or jit's trace) would
                cts = fwd_bwd(_lift(g), tuple(_lift(a) for a in args))
                if isinstance(cts, (tuple, list)):
                    cts = tuple(c.value if c.__class__ is Node else c for c in cts)
            if not isinstance(cts, (tuple, list)) or len(cts) != n:
                raise TypeError(
                    f"custom_vjp {qual}: bwd must return a tuple of {n} cotangent{'s' if n != 1 else ''} "
                    f"(one per argument), got {type(cts).__name__}"
                    + (f" of {len(cts)}" if isinstance(cts, (tuple, list)) else "")
                )
            res = tuple(0.0 if c is None else c for c in cts)
            on_floats = g.__class__ is not Node and all(a.__class__ is not Node for a in args)
            for i, c in enumerate(res):
                if not (c.__class__ is Node or real_number(c)):
                    raise TypeError(f"custom_vjp {qual}: bwd's cotangent {i} is {type(c).__name__}; expected a number")
                if on_floats and c.__class__ is Node:
                    _closes_over(c, qual, "bwd")
            return res

        def forward(*xs: float) -> float:
            fun = this().fun
            try:
                v = fun(*xs)
            except (AttributeError, ZeroDivisionError, OverflowError):
                # f uses Node methods (x.tanh()), which floats lack, or Python's
                # / or ** where IEEE gives inf or nan: on constant nodes
                v = fun(*[_lift(x) for x in xs])
            if v.__class__ is not float:
                if v.__class__ is Node:
                    _closes_over(v, qual, "f")
                    v = v.value
                elif not real_number(v):
                    raise TypeError(f"custom_vjp {qual}: f must return one scalar, got {type(v).__name__}")
                v = float(v)
            return v  # type: ignore[no-any-return]

        rules = tuple(_joint_rule(joint, i) for i in range(n))
        fun = self.fun
        with _registry_lock:
            # a name never given before: a node of a deleted custom_vjp must
            # not find the rules of a new one of the same name
            base = f"custom_vjp:{qual}"
            k = _custom_names.get(base, 1)
            name = base if k == 1 else f"{base}#{k}"
            while name in PRIMITIVES:
                k += 1
                name = f"{base}#{k}"
            _custom_names[base] = k + 1
            p = Primitive(name, forward, rules, getattr(fun, "__name__", "f"), tuple(f"x{i}" for i in range(n)),
                          fun.__doc__ or "", "custom", False, False, joint)
        self._op = _register(p)
        self._prim = p
        _custom_owner[name] = me
        weakref.finalize(self, _retire, name, n)

    def __call__(self, *args: Any) -> Any:
        if self._op is None:
            raise TypeError(f"custom_vjp {self.__name__!r}: call defvjp(f_fwd, f_bwd) before using it")
        out = self._op(*args)
        if out.__class__ is Node:
            _owners[out] = self  # differentiated after self's last name is gone (f made it inside)
        return out

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        return self if obj is None else functools.partial(self, obj)


def _closes_over(v: Node, qual: str, which: str) -> None:
    # f runs on the floats of its arguments (or on constant nodes of them), so
    # a variable of a running transform below its result was read from
    # elsewhere (a closure, a global): its derivative would be lost
    stack, seen = [v], set()
    while stack:
        n = stack.pop()
        if n in seen or n.level <= 0:
            continue  # a node made outside every transform depends on none
        seen.add(n)
        if n._x is None:
            if n.level in _open:
                break
        else:
            stack.extend(n.parents)
    else:
        return
    raise TypeError(
        f"custom_vjp {qual}: {which} reads a node of a running transform that is not one of its arguments "
        "(a closure or a global): the custom derivative covers only the arguments, so the derivative "
        "through that node would be lost. Pass it as an argument of the function (its cotangent from "
        "bwd, or None)"
    )


def _joint_rule(joint: Rule, i: int) -> Rule:
    def rule(g: Any, ans: Any, *args: Any) -> Any:
        return joint(g, ans, *args)[i]

    return rule


# --------------------------------------------------------------------------
# debug_nans


def describe_inputs(n: Node) -> str:
    """The inputs of ``n`` as ``name=value`` (or just the value when unnamed), for messages."""
    return ", ".join(f"{p.name}={p.value!r}" if p.name else repr(p.value) for p in n.parents)


def _check(n: Node) -> None:
    v = n.value
    if not _isfinite(v):
        ins = describe_inputs(n)
        who = f" (node {n.name!r})" if n.name else ""
        if not n.parents:
            raise FloatingPointError(f"debug_nans: a leaf{who} holds {v!r}")
        raise FloatingPointError(f"debug_nans: op {n.op!r} produced {v!r} from inputs ({ins}){who}")


class CheckedTape(list):  # type: ignore[type-arg]
    """A tape that checks each node as it is recorded (the tape of a debug_nans block)."""

    def append(self, n: Node) -> None:
        _check(n)
        list.append(self, n)


class _CheckOnly(CheckedTape):
    # outside any grad nothing is recorded, but a debug block still checks,
    # as long as its object lives (see _RootDebug)
    def __init__(self, guard: Callable[[], Any]):
        super().__init__()
        self.guard = guard

    def append(self, n: Node) -> None:
        if self.guard() is not None:
            _check(n)

    def extend(self, ns: Any) -> None:
        pass


class _Forward(CheckedTape):
    # a debug block inside a level: check, then record on the level's tape
    # while that level runs
    def __init__(self, owner: Trace):
        super().__init__()
        self.owner = owner

    def append(self, n: Node) -> None:
        _check(n)
        tape = self.owner.tape
        if tape is not None:
            tape.append(n)

    def extend(self, ns: Any) -> None:
        tape = self.owner.tape
        if tape is not None:
            tape.extend(ns)


class debug_nans:
    """Raise ``FloatingPointError`` at the first non-finite value or gradient.

    Inside the block every op checks its output (on nodes and on plain
    floats), and every backward pass its cotangents; the error names the
    op, its inputs and the node's name. A jitted function called inside the
    block runs eagerly, so it is checked too.

    >>> import fungrad as fg
    >>> with fg.debug_nans():
    ...     fg.var(0.0, name="x").log()
    Traceback (most recent call last):
    ...
    FloatingPointError: debug_nans: op 'log' produced -inf from inputs (x=0.0)
    """

    def __enter__(self) -> debug_nans:
        t = _get()
        if not t.active:
            new: Trace = _RootDebug(self)
        elif isinstance(t.tape, CheckedTape):
            new = t
        else:
            new = Trace(t.level, _Forward(t.owner), True, t.jit_level, t.chain, t.owner)
        try:
            self._token = _state.set(new)
            return self
        except BaseException:
            # A KeyboardInterrupt that lands once the state is set ends
            # __enter__ without the block, so __exit__ never runs: the thread
            # would check every op from then on. Undo the change here.
            if new is not t and _get() is new:
                _state.set(t)
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            self._reset()
        except BaseException:
            self._reset()  # an interrupt landed before the reset; after it, this does nothing
            raise

    def _reset(self) -> None:
        try:
            _state.reset(self._token)
        except (ValueError, RuntimeError):
            # the block ends in another context than it began in (a
            # generator closed after its transform returned): the state it
            # changed belongs to that context, which has ended; or the token
            # was used already
            pass


def __getattr__(name: str) -> Any:
    # user primitives registered after import are found as fungrad.expr.<name>
    op = OPS.get(name)
    if op is None:
        raise AttributeError(f"module 'fungrad.expr' has no attribute {name!r}")
    return op


__all__ = [
    "Node",
    "Primitive",
    "PRIMITIVES",
    "CONST",
    "var",
    "const",
    "named",
    "affine",
    "is_node",
    "primitive",
    "custom_vjp",
    "debug_nans",
    "ForeignNodeError",
    *[name for name, p in PRIMITIVES.items() if p.public],
]
