"""Expressions: frozen nodes, the table of primitives, and the ops that build graphs.

A :class:`Node` is an immutable record of one scalar value and how it was
made: the primitive's name (``op``) and the nodes it was made from
(``parents``). Nothing in a node ever changes; gradients live in the
dictionaries that :mod:`fungrad.autodiff` returns, never on the nodes.

Every primitive is declared once, in :data:`PRIMITIVES`, with its forward on
floats and one VJP rule per argument. The rules are written with fungrad's own
ops, so the same rule runs on plain floats (the fast first-order path) and on
nodes (when an outer ``grad`` differentiates through a backward pass).

>>> import fungrad as fg
>>> x = fg.var(2.0, name="x")
>>> y = x * 3 + x.tanh() - 1 / x
>>> y.op, round(y.value, 6)
('sub', 6.464028)
>>> fg.tanh(0.5) == fg.tanh(fg.var(0.5)).value
True
"""

from __future__ import annotations

import itertools
import math
import numbers
from contextvars import ContextVar
from typing import Any, Callable, Iterator, NamedTuple, Union

import attrs

__all__ = [
    "Node",
    "Primitive",
    "PRIMITIVES",
    "var",
    "const",
    "named",
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "exp",
    "log",
    "tanh",
    "relu",
    "sigmoid",
    "sqrt",
    "sin",
    "cos",
    "abs",
    "sign",
    "step",
    "where",
    "debug_nans",
    "is_node",
]

_inf = math.inf
_nan = math.nan
_isfinite = math.isfinite
_copysign = math.copysign


# --------------------------------------------------------------------------
# Trace state
#
# Each ``grad`` opens a trace level with a fresh, ever-increasing number. A
# node records the level it was made at; a backward pass of level L walks the
# nodes made at L or later (inner levels that finished inside L) and treats
# older ones as constants. Constants made from numbers carry level -1, so they
# are never walked by any grad. Nodes made inside a level are also appended to
# its tape, which is a topological order for free.


class Trace:
    """The state every op consults: the current level, its tape and its checks."""

    __slots__ = ("level", "tape", "debug", "jit")

    def __init__(self, level: int, tape: list[Node] | None, debug: bool = False, jit: Any = None):
        self.level = level
        self.tape = tape
        self.debug = debug
        self.jit = jit  # a description of the jit trace in progress, or None

    def __repr__(self) -> str:
        return f"Trace(level={self.level}, debug={self.debug}, jit={self.jit is not None})"


_ROOT = Trace(0, None)
_state: ContextVar[Trace] = ContextVar("fungrad_trace", default=_ROOT)
_get = _state.get
_levels = itertools.count(1)


def current() -> Trace:
    """The trace state of this thread (or task)."""
    return _get()


def new_level() -> int:
    """A fresh level number, larger than every one handed out before."""
    return next(_levels)


def push(trace: Trace) -> Any:
    """Make ``trace`` current; returns a token for :func:`pop`."""
    return _state.set(trace)


def pop(token: Any) -> None:
    """Restore the trace state saved by :func:`push`."""
    _state.reset(token)


# --------------------------------------------------------------------------
# Nodes


class _Slots:
    # The storage of a Node. Nodes are built as _Slots and then given the
    # frozen class: plain slot stores plus one class switch cost about half of
    # the frozen __init__, and node creation dominates eager time.
    __slots__ = ("value", "op", "parents", "name", "level", "__weakref__")


_new = object.__new__


@attrs.frozen(eq=False, slots=True, weakref_slot=False, repr=False)
class Node(_Slots):
    """One scalar value in an expression graph, and how it was computed.

    Nodes compare and hash by identity: two leaves holding the same number
    are two different variables. ``op`` is ``''`` for a leaf, else the name
    of a primitive in :data:`PRIMITIVES`; ``parents`` are the argument nodes.

    >>> import fungrad as fg
    >>> a = fg.var(2.0, name="a")
    >>> b = a * a
    >>> b.value, b.op, b.parents == (a, a), a.op, a.parents
    (4.0, 'mul', True, '', ())
    """

    value: float
    op: str = ""
    parents: tuple[Node, ...] = ()
    name: str = ""
    level: int = 0

    __fungrad_leaf__ = True  # a pytree leaf, though it is an attrs class

    def __repr__(self) -> str:
        # never recurse into parents: graphs can be a million nodes deep
        extra = f", op={self.op!r}" if self.op else ""
        if self.name:
            extra += f", name={self.name!r}"
        return f"Node({self.value!r}{extra})"

    def __format__(self, spec: str) -> str:
        return format(self.value, spec) if spec else repr(self)

    # Comparisons read values, so Python control flow works in eager code.
    # Under jit a value cannot be read at replay time, so they raise there.
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

    def __float__(self) -> float:
        return _value_of(self, "float()")

    # the hot binary ops are written out: dispatch through _apply costs ~25%
    def __add__(self, other: Any) -> Node:
        if other.__class__ is not Node:
            other = _lift(other)
            if other is NotImplemented:
                return other
        t = _get()
        n = _new(_Slots)
        n.value = self.value + other.value
        n.op = "add"
        n.parents = (self, other)
        n.name = ""
        n.level = t.level
        n.__class__ = Node
        if t.tape is not None:
            t.tape.append(n)
        return n

    def __radd__(self, other: Any) -> Node:
        other = _lift(other)
        if other is NotImplemented:
            return other
        return other.__add__(self)

    def __sub__(self, other: Any) -> Node:
        return _binary(_SUB, self, other)

    def __rsub__(self, other: Any) -> Node:
        return _binary(_SUB, other, self)

    def __mul__(self, other: Any) -> Node:
        if other.__class__ is not Node:
            other = _lift(other)
            if other is NotImplemented:
                return other
        t = _get()
        n = _new(_Slots)
        n.value = self.value * other.value
        n.op = "mul"
        n.parents = (self, other)
        n.name = ""
        n.level = t.level
        n.__class__ = Node
        if t.tape is not None:
            t.tape.append(n)
        return n

    def __rmul__(self, other: Any) -> Node:
        other = _lift(other)
        if other is NotImplemented:
            return other
        return other.__mul__(self)

    def __truediv__(self, other: Any) -> Node:
        return _binary(_DIV, self, other)

    def __rtruediv__(self, other: Any) -> Node:
        return _binary(_DIV, other, self)

    def __pow__(self, other: Any) -> Node:
        return _binary(_POW, self, other)

    def __rpow__(self, other: Any) -> Node:
        return _binary(_POW, other, self)

    def __neg__(self) -> Node:
        return _unary(_NEG, self)

    def __pos__(self) -> Node:
        return self

    def __abs__(self) -> Node:
        return _unary(_ABS, self)

    def exp(self) -> Node:
        """``e ** self``."""
        return _unary(_EXP, self)

    def log(self) -> Node:
        """Natural logarithm (``-inf`` at 0, ``nan`` below)."""
        return _unary(_LOG, self)

    def tanh(self) -> Node:
        """Hyperbolic tangent."""
        return _unary(_TANH, self)

    def relu(self) -> Node:
        """``max(self, 0)``; its derivative at 0 is 0."""
        return _unary(_RELU, self)

    def sigmoid(self) -> Node:
        """The logistic function ``1 / (1 + exp(-self))``."""
        return _unary(_SIGMOID, self)

    def sqrt(self) -> Node:
        """Square root (``nan`` below 0)."""
        return _unary(_SQRT, self)

    def sin(self) -> Node:
        """Sine."""
        return _unary(_SIN, self)

    def cos(self) -> Node:
        """Cosine."""
        return _unary(_COS, self)

    def abs(self) -> Node:
        """Absolute value; its derivative at 0 is 0."""
        return _unary(_ABS, self)

    def named(self, name: str) -> Node:
        """A node computed like this one, with a display name (see :func:`named`)."""
        return named(self, name)


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
    jit = _get().jit
    if jit is not None and x.level >= jit:
        raise TypeError(
            f"{what} of a traced node under fungrad.jit: the value is not known when the "
            "compiled replay runs, so Python control flow cannot depend on it. Use value-free "
            "ops instead (fg.where(c, a, b) picks a where c > 0, fg.relu, abs, fg.sign), or "
            "call the function without jit."
        )
    return x.value


def _mk(value: float, op: str, parents: tuple[Node, ...], name: str = "", const: bool = False) -> Node:
    t = _get()
    n = _new(_Slots)
    n.value = value
    n.op = op
    n.parents = parents
    n.name = name
    if const:
        # A function of constants is a constant: no grad walks it, so none
        # computes derivatives nobody asked for (log of a negative base in
        # the exponent rule of pow, say). The hot + and * skip this check.
        n.level = -1
        n.__class__ = Node
        if t.debug:
            _check(n)
        return n
    n.level = t.level
    n.__class__ = Node
    if t.tape is not None:
        t.tape.append(n)
    return n


def _check_number(x: Any, what: str) -> float:
    if x.__class__ is float:
        return x
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{what}: expected a real number (float or int), got {type(x).__name__} {x!r}")
    return float(x)


def _lift(x: Any) -> Any:
    """A constant node for a number; NotImplemented for anything else."""
    c = x.__class__
    if c is float or c is int or (isinstance(x, numbers.Real) and c is not bool):
        n = _new(_Slots)
        n.value = float(x)
        n.op = ""
        n.parents = ()
        n.name = ""
        n.level = -1
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
    v = _check_number(value, "fungrad.var")
    if not isinstance(name, str):
        raise TypeError(f"fungrad.var: name must be a str, got {type(name).__name__}")
    return _mk(v, "", (), name)


def const(value: float, name: str = "") -> Node:
    """A leaf node that no ``grad`` differentiates with respect to.

    Numbers mixed with nodes (``x * 3``) become constants like this.

    >>> import fungrad as fg
    >>> c = fg.const(3.0)
    >>> fg.grad(lambda x: x * c)(2.0)
    3.0
    """
    n = _lift(_check_number(value, "fungrad.const"))
    if name:
        return attrs.evolve(n, name=name)
    return n


def named(x: Node, name: str) -> Node:
    """A node computed like ``x`` (same op, same parents) that carries ``name``.

    Nothing is mutated: ``x`` keeps its own (empty or old) name, and the new
    node is a new value in the graph. Use it where the name should show in
    drawings and tables.

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
    if not x.parents:
        if x.level == -1:
            return const(x.value, name)
        return var(x.value, name)
    return _mk(x.value, x.op, x.parents, name, x.level == -1)


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


def _f_exp(a: float) -> float:
    try:
        return math.exp(a)
    except OverflowError:
        return _inf


def _f_log(a: float) -> float:
    if a > 0.0:
        return math.log(a)
    return -_inf if a == 0.0 else _nan


def _f_sqrt(a: float) -> float:
    return math.sqrt(a) if a >= 0.0 else _nan


def _f_sigmoid(a: float) -> float:
    return 1.0 / (1.0 + _f_exp(-a))


def _f_relu(a: float) -> float:
    return 0.0 if a < 0.0 else a  # keeps -0.0 and nan, as PyTorch does


def _f_sin(a: float) -> float:
    try:
        return math.sin(a)
    except ValueError:
        return _nan


def _f_cos(a: float) -> float:
    try:
        return math.cos(a)
    except ValueError:
        return _nan


def _f_sign(a: float) -> float:
    return 1.0 if a > 0.0 else (-1.0 if a < 0.0 else 0.0)


def _f_step(a: float) -> float:
    return 1.0 if a > 0.0 else 0.0


def _f_where(c: float, a: float, b: float) -> float:
    return a if c > 0.0 else b


# --------------------------------------------------------------------------
# The op functions: a plain float for plain numbers, a node otherwise.
# VJP rules below call these, so they run on floats and on nodes alike.


def _binary(p: Primitive, a: Any, b: Any) -> Any:
    ca, cb = a.__class__ is Node, b.__class__ is Node
    if not ca and not cb:
        return p.fwd(_check_number(a, p.name), _check_number(b, p.name))
    if not ca:
        a = _lift(a)
        if a is NotImplemented:
            return a
    if not cb:
        b = _lift(b)
        if b is NotImplemented:
            return b
    return _mk(p.fwd(a.value, b.value), p.name, (a, b), "", a.level + b.level == -2)


def _apply(p: Primitive, args: tuple[Any, ...]) -> Any:
    if not any(a.__class__ is Node for a in args):
        return p.fwd(*[_check_number(a, p.name) for a in args])
    nodes = []
    const = True
    for a in args:
        if a.__class__ is not Node:
            a = _lift(a)
            if a is NotImplemented:
                raise TypeError(f"{p.name}: expected numbers or fungrad nodes, got {type(a).__name__}")
        elif a.level != -1:
            const = False
        nodes.append(a)
    return _mk(p.fwd(*[a.value for a in nodes]), p.name, tuple(nodes), "", const)


def _unary(p: Primitive, x: Node) -> Node:
    return _mk(p.fwd(x.value), p.name, (x,), "", x.level == -1)


def add(a: Scalar, b: Scalar) -> Scalar:
    """``a + b``.

    >>> import fungrad as fg
    >>> fg.add(1.0, 2.0)
    3.0
    """
    return _binary(_ADD, a, b)


def sub(a: Scalar, b: Scalar) -> Scalar:
    """``a - b``.

    >>> import fungrad as fg
    >>> fg.sub(1.0, 2.0)
    -1.0
    """
    return _binary(_SUB, a, b)


def mul(a: Scalar, b: Scalar) -> Scalar:
    """``a * b``.

    >>> import fungrad as fg
    >>> fg.mul(2.0, 3.0)
    6.0
    """
    return _binary(_MUL, a, b)


def div(a: Scalar, b: Scalar) -> Scalar:
    """``a / b`` by IEEE-754: ``1/0`` is ``inf``, ``0/0`` is ``nan``, nothing raises.

    >>> import fungrad as fg
    >>> fg.div(1.0, 0.0), fg.div(-1.0, 0.0), fg.div(1.0, -0.0)
    (inf, -inf, -inf)
    """
    return _binary(_DIV, a, b)


def pow(a: Scalar, b: Scalar) -> Scalar:
    """``a ** b``; a negative base to a non-integer power is ``nan``, overflow is ``inf``.

    >>> import fungrad as fg
    >>> fg.pow(2.0, 10), fg.pow(-8.0, 1 / 3), fg.pow(0.0, -1.0), fg.pow(10.0, 400)
    (1024.0, nan, inf, inf)
    """
    return _binary(_POW, a, b)


def neg(a: Scalar) -> Scalar:
    """``-a``.

    >>> import fungrad as fg
    >>> fg.neg(2.0)
    -2.0
    """
    return _apply(_NEG, (a,))


def exp(x: Scalar) -> Scalar:
    """``e ** x`` (``inf`` past about 709.78).

    >>> import fungrad as fg
    >>> fg.exp(0.0), fg.exp(1000.0)
    (1.0, inf)
    """
    return _apply(_EXP, (x,))


def log(x: Scalar) -> Scalar:
    """Natural logarithm: ``log(0)`` is ``-inf``, ``log(-1)`` is ``nan``.

    >>> import fungrad as fg
    >>> fg.log(1.0), fg.log(0.0), fg.log(-1.0)
    (0.0, -inf, nan)
    """
    return _apply(_LOG, (x,))


def tanh(x: Scalar) -> Scalar:
    """Hyperbolic tangent.

    >>> import fungrad as fg
    >>> fg.tanh(0.0), fg.tanh(1000.0)
    (0.0, 1.0)
    """
    return _apply(_TANH, (x,))


def relu(x: Scalar) -> Scalar:
    """``max(x, 0)``; its derivative at 0 is 0 (as in PyTorch).

    >>> import fungrad as fg
    >>> fg.relu(-2.0), fg.relu(3.0), fg.grad(fg.relu)(0.0)
    (0.0, 3.0, 0.0)
    """
    return _apply(_RELU, (x,))


def sigmoid(x: Scalar) -> Scalar:
    """The logistic function ``1 / (1 + exp(-x))``; never overflows.

    >>> import fungrad as fg
    >>> fg.sigmoid(0.0), fg.sigmoid(-1000.0), fg.sigmoid(1000.0)
    (0.5, 0.0, 1.0)
    """
    return _apply(_SIGMOID, (x,))


def sqrt(x: Scalar) -> Scalar:
    """Square root; ``nan`` below 0.

    >>> import fungrad as fg
    >>> fg.sqrt(4.0), fg.sqrt(-1.0)
    (2.0, nan)
    """
    return _apply(_SQRT, (x,))


def sin(x: Scalar) -> Scalar:
    """Sine.

    >>> import fungrad as fg
    >>> fg.sin(0.0)
    0.0
    """
    return _apply(_SIN, (x,))


def cos(x: Scalar) -> Scalar:
    """Cosine.

    >>> import fungrad as fg
    >>> fg.cos(0.0)
    1.0
    """
    return _apply(_COS, (x,))


def abs(x: Scalar) -> Scalar:
    """Absolute value; its derivative at 0 is 0 (as in PyTorch).

    >>> import fungrad as fg
    >>> fg.abs(-2.0), fg.grad(fg.abs)(0.0)
    (2.0, 0.0)
    """
    return _apply(_ABS, (x,))


def sign(x: Scalar) -> Scalar:
    """-1, 0 or 1 by the sign of ``x``; its derivative is 0 everywhere.

    >>> import fungrad as fg
    >>> fg.sign(-3.0), fg.sign(0.0), fg.sign(2.0)
    (-1.0, 0.0, 1.0)
    """
    return _apply(_SIGN, (x,))


def step(x: Scalar) -> Scalar:
    """1 where ``x > 0``, else 0; its derivative is 0 everywhere.

    >>> import fungrad as fg
    >>> fg.step(0.5), fg.step(0.0)
    (1.0, 0.0)
    """
    return _apply(_STEP, (x,))


def where(c: Scalar, a: Scalar, b: Scalar) -> Scalar:
    """``a`` where ``c > 0``, else ``b``, decided from the value of ``c`` when it runs.

    This is the branch to use under :func:`fungrad.jit`: the choice is made
    again from the new values on every replay. The derivative flows to the
    chosen branch only; ``c`` gets none.

    >>> import fungrad as fg
    >>> fg.where(1.0, 10.0, 20.0), fg.where(-1.0, 10.0, 20.0)
    (10.0, 20.0)
    >>> fg.grad(lambda x: fg.where(x, x * x, -x))(3.0)
    6.0
    """
    return _apply(_WHERE, (c, a, b))


# --------------------------------------------------------------------------
# The table of primitives


Rule = Callable[..., Any]


class Primitive(NamedTuple):
    """A primitive op: its name, its forward on floats and one VJP rule per argument.

    A rule is called as ``rule(g, ans, *args)`` (the output cotangent, the
    op's output and its inputs) and returns the cotangent of its argument.
    ``None`` marks an argument with no derivative (a branch condition).
    """

    name: str
    fwd: Callable[..., float]
    vjp: tuple[Rule | None, ...]
    label: str  # how drawings show the op

    @property
    def arity(self) -> int:
        return len(self.vjp)


def _prim(name: str, fwd: Callable[..., float], label: str, *vjp: Rule | None) -> Primitive:
    return Primitive(name, fwd, tuple(vjp), label)


# The branch a where() does not pick is computed too, and its derivative is
# multiplied by zero: 0 * inf would make nan of a higher derivative (and
# debug_nans would stop at the unused inf). So the unpicked branch gets a
# harmless input instead (x = 1), as with JAX's "double where".


def _pow_dx(g: Any, ans: Any, x: Any, y: Any) -> Any:
    # x ** 0 has derivative 0 in x everywhere, even at x = 0
    c = abs(y)
    return where(c, g * (y * pow(where(c, x, 1.0), y - 1.0)), 0.0)


def _pow_dy(g: Any, ans: Any, x: Any, y: Any) -> Any:
    # d/dy of 0 ** y is 0 for y >= 0, where log(0) would give nan
    c = abs(x) + relu(-y)
    return g * where(c, ans * log(where(c, x, 1.0)), 0.0)


# Each rule mirrors PyTorch's derivatives.yaml, so that values at edges
# (zeros, infinities, kinks) agree with it.
PRIMITIVES: dict[str, Primitive] = {
    p.name: p
    for p in (
        _prim("add", lambda a, b: a + b, "+", lambda g, ans, x, y: g, lambda g, ans, x, y: g),
        _prim("sub", lambda a, b: a - b, "-", lambda g, ans, x, y: g, lambda g, ans, x, y: -g),
        _prim("mul", lambda a, b: a * b, "*", lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x),
        _prim(
            "div",
            _f_div,
            "/",
            lambda g, ans, x, y: div(g, y),
            lambda g, ans, x, y: -g * div(div(x, y), y),
        ),
        _prim("pow", _f_pow, "**", _pow_dx, _pow_dy),
        _prim("neg", lambda a: -a, "-", lambda g, ans, x: -g),
        _prim("exp", _f_exp, "exp", lambda g, ans, x: g * ans),
        _prim("log", _f_log, "log", lambda g, ans, x: div(g, x)),
        _prim("tanh", math.tanh, "tanh", lambda g, ans, x: g * (1.0 - ans * ans)),
        _prim("relu", _f_relu, "relu", lambda g, ans, x: where(ans, g, 0.0)),
        _prim("sigmoid", _f_sigmoid, "sigmoid", lambda g, ans, x: g * (1.0 - ans) * ans),
        _prim("sqrt", _f_sqrt, "sqrt", lambda g, ans, x: div(g, 2.0 * ans)),
        _prim("sin", _f_sin, "sin", lambda g, ans, x: g * cos(x)),
        _prim("cos", _f_cos, "cos", lambda g, ans, x: g * -sin(x)),
        _prim("abs", math.fabs, "abs", lambda g, ans, x: g * sign(x)),
        _prim("sign", _f_sign, "sign", None),
        _prim("step", _f_step, "step", None),
        _prim(
            "where",
            _f_where,
            "where",
            None,
            lambda g, ans, c, a, b: where(c, g, 0.0),
            lambda g, ans, c, a, b: where(c, 0.0, g),
        ),
        # the input of a nested grad, linked to the outer node it stands for
        _prim("link", lambda a: a, "link", lambda g, ans, x: g),
    )
}

_ADD, _SUB, _MUL, _DIV, _POW = (PRIMITIVES[k] for k in ("add", "sub", "mul", "div", "pow"))
_NEG, _EXP, _LOG, _TANH, _RELU = (PRIMITIVES[k] for k in ("neg", "exp", "log", "tanh", "relu"))
_SIGMOID, _SQRT, _SIN, _COS, _ABS = (PRIMITIVES[k] for k in ("sigmoid", "sqrt", "sin", "cos", "abs"))
_SIGN, _STEP, _WHERE = (PRIMITIVES[k] for k in ("sign", "step", "where"))


def link(x: Node) -> Node:
    """A node of the current level standing for ``x`` (derivative 1): a nested grad's input."""
    return _mk(x.value, "link", (x,), x.name)


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
    # outside any grad nothing is recorded, but a debug block still checks
    def append(self, n: Node) -> None:
        _check(n)

    def extend(self, ns: Any) -> None:
        pass


def new_tape(debug: bool) -> list[Node]:
    """An empty tape for a new trace level."""
    return CheckedTape() if debug else []


class debug_nans:
    """Raise ``FloatingPointError`` at the first non-finite value or gradient.

    Inside the block every op checks its output, and every backward pass its
    cotangents; the error names the op, its inputs and the node's name.

    >>> import fungrad as fg
    >>> with fg.debug_nans():
    ...     fg.var(0.0, name="x").log()
    Traceback (most recent call last):
    ...
    FloatingPointError: debug_nans: op 'log' produced -inf from inputs (x=0.0)
    """

    def __enter__(self) -> debug_nans:
        t = _get()
        if t.tape is None:
            tape: list[Node] = _CheckOnly()
        elif isinstance(t.tape, CheckedTape):
            tape = t.tape
        else:
            # nodes recorded here still land on the level's own tape, in order
            tape = _Forward(t.tape)
        self._token = push(Trace(t.level, tape, True, t.jit))
        return self

    def __exit__(self, *exc: Any) -> None:
        pop(self._token)


class _Forward(CheckedTape):
    def __init__(self, target: list[Node]):
        super().__init__()
        self.target = target

    def append(self, n: Node) -> None:
        _check(n)
        self.target.append(n)

    def extend(self, ns: Any) -> None:
        self.target.extend(ns)
