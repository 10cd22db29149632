"""Reverse-mode differentiation: the graph walk, backward passes and function transforms.

``grad(f)`` is a pure function transform: it opens a new trace level, runs
``f`` on fresh nodes of that level, walks back from the output and returns the
gradients shaped like the arguments. Nothing is stored on nodes.

Levels keep nested derivatives exact. A backward pass of level L walks the
nodes made at level L or in levels that opened and closed inside L, and treats
all older nodes as constants. At the outermost level it runs on plain floats
(the fast path); inside another level it computes with nodes, so the outer
level can differentiate through it.

>>> import fungrad as fg
>>> fg.grad(lambda x: 3 * x**2 - 4 * x + 5)(3.0)
14.0
>>> fg.grad(fg.grad(lambda x: x**3))(2.0)
12.0
"""

from __future__ import annotations

import functools
import gc
import math
import numbers
import threading
from typing import Any, Callable, Iterable, Sequence

from . import expr, tree
from .expr import Node, Trace

__all__ = [
    "toposort",
    "gradients",
    "grad",
    "value_and_grad",
    "jacobian",
    "hessian",
]

_RULES = {name: p.vjp for name, p in expr.PRIMITIVES.items()}


def toposort(out: Node, floor: int = -1) -> list[Node]:
    """The nodes ``out`` depends on, each after all of its parents; no recursion.

    Only nodes with ``level >= floor`` are followed (constants have level -1).

    >>> import fungrad as fg
    >>> a = fg.var(1.0, name="a")
    >>> b = a * 2
    >>> [n.name or n.op for n in fg.toposort(b + a)]
    ['a', '', 'mul', 'add']
    """
    if out.__class__ is not Node:
        raise TypeError(f"toposort: expected a fungrad Node, got {type(out).__name__}")
    order: list[Node] = []
    seen: set[Node] = set()
    stack: list[tuple[Node, bool]] = [(out, False)]
    push = stack.append
    while stack:
        n, done = stack.pop()
        if done:
            order.append(n)
            continue
        if n in seen:
            continue
        # marked when expanded, not when pushed: a node waiting lower in the
        # stack must still be finished before any node that uses it
        seen.add(n)
        push((n, True))
        for p in reversed(n.parents):
            if p not in seen and p.level >= floor:
                push((p, False))
    return order


def _nonfinite(n: Node, i: int, c: Any) -> None:
    v = c.value if c.__class__ is Node else c
    if not math.isfinite(v):
        p = n.parents[i]
        ins = expr.describe_inputs(n)
        who = f" (node {p.name!r})" if p.name else ""
        raise FloatingPointError(
            f"debug_nans: the gradient through op {n.op!r} (inputs {ins}) into its "
            f"argument {i}{who} is {v!r}"
        )


def _backward(
    out: Node, nodes: Iterable[Node], floor: int, nested: bool, debug: bool, drop: bool
) -> dict[Node, Any]:
    """Cotangents of ``out`` for the nodes in ``nodes`` (given users before producers).

    With ``drop`` a node's cotangent is released once it has been passed on,
    which keeps the peak memory of a long backward pass low; nodes that are
    never visited (the inputs, when left out of ``nodes``) keep theirs.
    """
    if not nested and not debug:
        return _backward_floats(out, nodes, floor, drop)
    ct: dict[Node, Any] = {out: 1.0}
    get = ct.pop if drop else ct.get
    rules_of = _RULES
    for n in nodes:
        g = get(n, None)
        if g is None:
            continue
        ps = n.parents
        if not ps:
            continue
        rules = rules_of[n.op]
        if nested:
            # rules compute with nodes, so an outer level sees this pass
            ans: Any = n
            args: Sequence[Any] = ps
        else:
            ans = n.value
            args = [p.value for p in ps]
        for i, p in enumerate(ps):
            if p.level < floor:
                continue
            r = rules[i]
            if r is None:
                continue
            c = r(g, ans, *args)
            if debug:
                _nonfinite(n, i, c)
            old = ct.get(p)
            ct[p] = c if old is None else old + c
    return ct


def _backward_floats(out: Node, nodes: Iterable[Node], floor: int, drop: bool) -> dict[Node, Any]:
    # The first-order fast path: the same rules as _backward, called on plain
    # floats, with the argument unpacking written out per arity because this
    # loop is most of the time of a training step.
    ct: dict[Node, Any] = {out: 1.0}
    take = ct.pop if drop else ct.get
    get = ct.get
    rules_of = _RULES
    for n in nodes:
        g = take(n, None)
        if g is None:
            continue
        ps = n.parents
        if len(ps) == 2:
            x, y = ps
            rx, ry = rules_of[n.op]
            ans, xv, yv = n.value, x.value, y.value
            if x.level >= floor and rx is not None:
                c = rx(g, ans, xv, yv)
                old = get(x)
                ct[x] = c if old is None else old + c
            if y.level >= floor and ry is not None:
                c = ry(g, ans, xv, yv)
                old = get(y)
                ct[y] = c if old is None else old + c
        elif len(ps) == 1:
            x = ps[0]
            (rx,) = rules_of[n.op]
            if x.level >= floor and rx is not None:
                c = rx(g, n.value, x.value)
                old = get(x)
                ct[x] = c if old is None else old + c
        elif ps:
            rules = rules_of[n.op]
            vals = [p.value for p in ps]
            ans = n.value
            for i, p in enumerate(ps):
                r = rules[i]
                if p.level >= floor and r is not None:
                    c = r(g, ans, *vals)
                    old = get(p)
                    ct[p] = c if old is None else old + c
    return ct


def gradients(out: Node, wrt: Sequence[Node] | None = None) -> dict[Node, Any]:
    """``{node: d out / d node}`` for every node of ``out``'s graph, or for ``wrt`` only.

    Every path counts: a node used in several places sums its contributions.
    Outside any ``grad`` the values are floats. Inside one they are computed
    with nodes, so an enclosing ``grad`` can differentiate them.

    >>> import fungrad as fg
    >>> a, b = fg.var(2.0, name="a"), fg.var(-3.0, name="b")
    >>> c, f = fg.var(10.0, name="c"), fg.var(-2.0, name="f")
    >>> L = (a * b + c) * f
    >>> g = fg.gradients(L)
    >>> g[a], g[b], g[c], g[f]
    (6.0, -4.0, -2.0, 4.0)
    >>> fg.gradients(a + a, wrt=[a])
    {Node(2.0, name='a'): 2.0}
    """
    if out.__class__ is not Node:
        raise TypeError(f"gradients: out must be a fungrad Node, got {type(out).__name__} {out!r:.80}")
    cur = expr.current()
    nested = cur.level > 0
    floor = cur.level if nested else -1
    if wrt is not None:
        wrt = list(wrt)
        for i, w in enumerate(wrt):
            if w.__class__ is not Node:
                raise TypeError(f"gradients: wrt[{i}] must be a fungrad Node, got {type(w).__name__} {w!r:.80}")
        if wrt:
            floor = min(floor, min(w.level for w in wrt))
    order = toposort(out, floor)
    ct = _backward(out, reversed(order), floor, nested, cur.debug, drop=False)
    if wrt is not None:
        return {w: ct.get(w, 0.0) for w in wrt}
    return {n: ct.get(n, 0.0) for n in reversed(order)}


# --------------------------------------------------------------------------
# Tracing a function at a new level


class _PausedGC:
    """Switch the cyclic garbage collector off while an outermost grad runs.

    fungrad's graphs have no reference cycles, so reference counting frees
    them; the cyclic collector only rescans the growing live graph, which cost
    about half the time of a backward pass over a million nodes. Threads
    share one collector: it comes back on when the last outermost grad ends,
    and only if it was on when the first began.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.restore = False

    def __enter__(self) -> None:
        with self.lock:
            if self.depth == 0:
                self.restore = gc.isenabled()
                gc.disable()
            self.depth += 1

    def __exit__(self, *exc: Any) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.restore:
                gc.enable()


_paused_gc = _PausedGC()


class _NoPause:
    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        pass


_no_pause = _NoPause()


def _gc_guard() -> Any:
    return _paused_gc if expr.current().level == 0 else _no_pause


class _Traced:
    """One run of ``f`` at a fresh level: its inputs, output(s) and tape."""

    __slots__ = ("result", "trace", "inputs", "treedefs", "skip", "nested")

    result: Any
    trace: Trace
    inputs: list[list[Node]]
    treedefs: list[tree.TreeDef]
    skip: int
    nested: bool

    def grads(self, out: Any) -> list[Any]:
        """d out / d input for every argument traced, each shaped like that argument."""
        t = self.trace
        if out.__class__ is Node and out.level >= t.level:
            # the inputs head the tape; leaving them out keeps their cotangents
            body = t.tape[self.skip :]
            ct = _backward(out, reversed(body), t.level, self.nested, t.debug, drop=True)
        else:
            ct = {}  # a constant output: every derivative is zero
        return [
            tree.unflatten(td, [ct.get(x, 0.0) for x in xs]) for td, xs in zip(self.treedefs, self.inputs)
        ]


def _argnums(argnums: int | Sequence[int], nargs: int, fname: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise ValueError(f"{fname}: argnums is empty; name at least one positional argument")
    out = []
    for a in nums:
        if isinstance(a, bool) or not isinstance(a, int):
            raise TypeError(f"{fname}: argnums must be an int or a tuple of ints, got {argnums!r}")
        if not -nargs <= a < nargs:
            raise ValueError(
                f"{fname}: argnums={argnums!r} is out of range: the function was called with "
                f"{nargs} positional argument{'s' if nargs != 1 else ''}"
                + (f" (valid: 0 to {nargs - 1})" if nargs else "")
            )
        out.append(a % nargs)
    if len(set(out)) != len(out):
        raise ValueError(f"{fname}: argnums={argnums!r} names an argument twice")
    return tuple(out)


def _fresh(v: Any, argnum: int, path: tuple[Any, ...], fname: str) -> Node:
    c = v.__class__
    if c is Node:
        return expr.link(v)
    if c is float or c is int or (isinstance(v, numbers.Real) and c is not bool):
        return expr.var(float(v))
    where = f"argument {argnum}" + (f" at {tree.keystr(path)}" if path else "")
    raise TypeError(
        f"{fname}: {where} is {c.__name__} {v!r:.60}; expected a real number (float or int) "
        "or a fungrad Node. Leaves of the differentiated arguments must be numbers; pass other "
        "data through an argument not in argnums"
    )


def _trace(
    f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], nums: tuple[int, ...], fname: str
) -> _Traced:
    parent = expr.current()
    t = Trace(expr.new_level(), expr.new_tape(parent.debug), parent.debug, parent.jit)
    token = expr.push(t)
    r = _Traced()
    r.trace = t
    r.nested = parent.level > 0
    try:
        new = list(args)
        r.inputs, r.treedefs = [], []
        for a in nums:
            pairs, td = tree.flatten_with_path(args[a])
            xs = [_fresh(v, a, path, fname) for path, v in pairs]
            r.inputs.append(xs)
            r.treedefs.append(td)
            new[a] = tree.unflatten(td, xs)
        r.skip = len(t.tape)
        r.result = f(*new, **kwargs)
    finally:
        expr.pop(token)
        if parent.tape is not None:
            # an outer level differentiates through what happened here
            parent.tape.extend(t.tape)
    return r


def _scalar(out: Any, fname: str, has_aux: bool) -> Any:
    c = out.__class__
    if c is Node or c is float or c is int or (isinstance(out, numbers.Real) and c is not bool):
        return out
    desc = f"{c.__name__}"
    if isinstance(out, (list, tuple, dict)):
        desc += f" of {len(out)} item{'s' if len(out) != 1 else ''}"
    hint = (
        " Use fg.jacobian(f) for one gradient per output, or reduce the outputs to one number "
        "(for example sum(outputs))."
    )
    if not has_aux and isinstance(out, tuple) and len(out) == 2:
        hint += " If the second item is auxiliary data, pass has_aux=True."
    raise TypeError(f"{fname}: f must return a scalar (a fungrad Node or a number), got {desc}.{hint}")


def _concrete(x: Any) -> Any:
    """Outside all levels a result leaves as floats, not nodes."""
    return tree.map(lambda v: v.value if v.__class__ is Node else v, x)


def value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., tuple[Any, Any]]:
    """A function returning ``(f(*args), grad(f)(*args))`` from one forward pass.

    With ``has_aux=True``, ``f`` returns ``(output, aux)`` and the result is
    ``((output, aux), grads)``. Outside every other ``grad`` the values and
    gradients are floats.

    >>> import fungrad as fg
    >>> fg.value_and_grad(lambda p: p["w"] * p["x"])({"w": 2.0, "x": 3.0})
    (6.0, {'w': 3.0, 'x': 2.0})
    >>> fg.value_and_grad(lambda w: (w * w, "aux"), has_aux=True)(3.0)
    ((9.0, 'aux'), 6.0)
    """
    return _value_and_grad(f, argnums, has_aux, "value_and_grad")


def _value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int], has_aux: bool, fname: str
) -> Callable[..., tuple[Any, Any]]:

    @functools.wraps(f)
    def vg(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        with _gc_guard():
            return run(args, kwargs)

    def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        nums = _argnums(argnums, len(args), fname)
        r = _trace(f, args, kwargs, nums, fname)
        res = r.result
        if has_aux:
            if not (isinstance(res, tuple) and len(res) == 2):
                got = f"{type(res).__name__}" + (f" of {len(res)} items" if isinstance(res, tuple) else "")
                raise TypeError(f"{fname}: has_aux=True, so f must return a pair (output, aux); it returned {got}")
            out, aux = res
        else:
            out, aux = res, None
        out = _scalar(out, fname, has_aux)
        gs = r.grads(out)
        g = gs[0] if isinstance(argnums, int) else tuple(gs)
        if not r.nested:
            value: Any = out.value if out.__class__ is Node else float(out)
            if has_aux:
                return (value, _concrete(aux)), g
            return value, g
        return ((out, aux) if has_aux else out), g

    return vg


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable[..., Any]:
    """The gradient of scalar-valued ``f``, as a function shaped like its arguments.

    ``grad(f)(params)`` has the structure and container types of ``params``,
    floats at its leaves (``0.0`` for leaves that do not reach the output),
    and leaves ``params`` untouched. ``argnums`` picks the arguments (a tuple
    gives a tuple of gradients); with ``has_aux=True`` the result is
    ``(grads, aux)``. Nest it for higher derivatives.

    >>> import fungrad as fg
    >>> fg.grad(lambda x: 3 * x**2 - 4 * x + 5)(3.0)
    14.0
    >>> fg.grad(lambda a, b: a * b, argnums=(0, 1))(2.0, 5.0)
    (5.0, 2.0)
    >>> fg.grad(fg.grad(fg.grad(fg.sin)))(0.0)
    -1.0
    """
    vg = _value_and_grad(f, argnums, has_aux, "grad")

    @functools.wraps(f)
    def g(*args: Any, **kwargs: Any) -> Any:
        (value, g_) = vg(*args, **kwargs)
        if has_aux:
            return g_, value[1]
        return g_

    return g


def jacobian(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """The derivatives of every output leaf of ``f`` with respect to its argument(s).

    The result has the structure of ``f``'s output, each leaf replaced by a
    gradient shaped like the argument (a tuple of them when ``argnums`` is a
    tuple). One forward pass, one backward pass per output.

    >>> import fungrad as fg
    >>> fg.jacobian(lambda v: [v[0] * v[1], v[0] + 2 * v[1]])([3.0, 4.0])
    [[4.0, 3.0], [1.0, 2.0]]
    """
    fname = "jacobian"

    @functools.wraps(f)
    def jac(*args: Any, **kwargs: Any) -> Any:
        with _gc_guard():
            return run(args, kwargs)

    def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        nums = _argnums(argnums, len(args), fname)
        r = _trace(f, args, kwargs, nums, fname)
        outs, td = tree.flatten(r.result)
        rows = []
        for i, o in enumerate(outs):
            c = o.__class__
            if not (c is Node or c is float or c is int or (isinstance(o, numbers.Real) and c is not bool)):
                raise TypeError(f"{fname}: output leaf {i} of f is {c.__name__} {o!r:.60}; expected a number or Node")
            gs = r.grads(o)
            rows.append(gs[0] if isinstance(argnums, int) else tuple(gs))
        return tree.unflatten(td, rows)

    return jac


def hessian(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """The matrix of second derivatives of scalar ``f``: ``jacobian(grad(f))``.

    >>> import fungrad as fg
    >>> fg.hessian(lambda v: v[0] ** 2 * v[1])([3.0, 2.0])
    [[4.0, 6.0], [6.0, 0.0]]
    """
    return jacobian(grad(f, argnums), argnums)
