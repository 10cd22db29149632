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

import contextvars
import functools
import gc
import math
import threading
import weakref
from typing import Any, Callable, Iterable, Sequence

from . import expr, tree
from .expr import Node, Trace

__all__ = [
    "toposort",
    "jacrev",
    "gradients",
    "grad",
    "value_and_grad",
    "jacobian",
]

_RULES = expr.RULES  # by op name; user primitives join it when declared
_JOINT = expr.JOINT


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
    return _depth_first(out, floor, False)


class _Term:
    """In a backward order, the place of one term of an affine node: see :func:`_depth_first`."""

    __slots__ = ("node", "i")

    def __init__(self, node: Node, i: int):
        self.node = node
        self.i = i  # the position of the term's weight among the node's arguments (1, 3, 5, ...)


def _depth_first(out: Node, floor: int, marks: bool) -> list[Any]:
    # With ``marks``, the order for a backward pass (gradients): each affine
    # node split as the add and mul nodes it stands for would be. Their
    # order visits one term's arguments, then gives the next term its
    # cotangents, so a mark (_Term) stands between the arguments of one term
    # and the next, and the node itself, last, gives the last term's; the
    # backward pass (split=True) then gives every node its contributions in
    # the operators' order.
    order: list[Any] = []
    seen: set[Node] = set()
    stack: list[tuple[Any, bool]] = [(out, False)]
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
        ps = n.parents
        if marks and n.op == "affine":
            for i in range(len(ps) - 2, 0, -2):
                if i < len(ps) - 2:
                    push((_Term(n, i), True))
                for p in (ps[i + 1], ps[i]):
                    if p not in seen and p.level >= floor:
                        push((p, False))
            ps = ps[:1]  # b, below
        for p in reversed(ps):
            if p not in seen and p.level >= floor:
                push((p, False))
    return order


def _nonfinite(n: Node, i: int, c: Any) -> None:
    if c.__class__ is expr.Picks:
        return  # the cotangents of a vmap node's outputs, each checked where it was made
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
    out: Node | dict[Node, Any], nodes: Iterable[Any], floor: int, *, nested: bool = False, debug: bool = False,
    drop: bool = False, split: bool = False,
) -> dict[Node, Any]:
    """Cotangents of ``out`` for the nodes in ``nodes`` (given users before producers).

    ``out`` is the output node (its cotangent is 1), or a dict of seed cotangents.

    Nodes below ``floor`` are constants. With ``nested`` the rules compute
    with nodes, so an enclosing level differentiates this pass; otherwise on
    plain floats (the fast path). With ``debug`` every cotangent is checked.
    With ``drop`` a node's cotangent is released once it has been passed on,
    which keeps the peak memory of a long backward pass low; nodes that are
    never visited (the inputs, when left out of ``nodes``) keep theirs.
    ``split``: ``nodes`` is a :func:`_depth_first` order with marks, in which an affine node
    gives its terms their cotangents at the marks, not all at once as in a
    tape's order.
    """
    ct: dict[Node, Any] = dict(out) if out.__class__ is dict else {out: 1.0}  # type: ignore[call-overload, dict-item]
    take = ct.pop if drop else ct.get
    get = ct.get
    rules_of = _RULES
    fast = not nested and not debug
    ans: Any  # the op's output and arguments: nodes when nested, else floats
    xa: Any
    ya: Any
    many = expr._MANY
    # With nodes recorded into a jit trace (which is replayed, never
    # differentiated), the products an affine node's arguments receive are
    # summed into affine nodes too: a node's cotangent c1 + g2 * v2 + g3 * v3
    # + ... becomes one node (see _Sum) where the operators would make a mul
    # and an add per term. Where an enclosing grad walks them, they stay the
    # operators' nodes, made in the operators' order.
    cur = expr.current()
    sums = nested and not debug and cur.fuse and cur.jit_level == cur.level
    held: dict[Node, Any] = {}  # with split: an affine node's cotangent, until its first term has had its share
    for n in nodes:
        g = take(n, None)
        if g is None:
            if n.__class__ is _Term:
                a = n.node
                g = held.pop(a, None) if n.i == 1 else held.get(a)
                if g is not None:
                    _affine_terms(a, g, ct, floor, nested, debug, sums, n.i, n.i)
            continue
        if g.__class__ is _Sum:
            g = g.node()
            if not drop:
                ct[n] = g
        # The cotangents of up to two arguments, by arity (read from the
        # node's parent slots: see expr._Slots). On floats, the rules of the
        # hottest ops are written out: each mirrors its row of the table
        # exactly (same float operations, same order), and a rule call costs
        # more than the arithmetic.
        x = n._x
        y = n._y
        if y is not None and y is not many:
            op = n.op
            if fast and op == "mul":  # g * y, g * x
                cx = g * y.value if x.level >= floor else None
                cy = g * x.value if y.level >= floor else None
            elif fast and op == "add":  # g, g
                cx = g if x.level >= floor else None
                cy = g if y.level >= floor else None
            elif fast and op == "sub":  # g, -g
                cx = g if x.level >= floor else None
                cy = -g if y.level >= floor else None
            elif op == "vmap":
                _map_back(n, g, ct, floor, nested, debug)
                continue
            else:
                rx, ry = rules_of[op]
                if nested:
                    ans, xa, ya = n, x, y
                else:
                    ans, xa, ya = n.value, x.value, y.value
                cx = rx(g, ans, xa, ya) if rx is not None and x.level >= floor else None
                cy = ry(g, ans, xa, ya) if ry is not None and y.level >= floor else None
        elif y is None:
            if x is None:
                continue  # a leaf
            cy = None
            if x.level < floor:
                continue
            op = n.op
            if fast and op == "relu":  # where(ans, g, 0.0)
                cx = g if n.value > 0.0 else 0.0
            elif fast and op == "tanh":  # g * (1.0 - ans * ans)
                ans = n.value
                cx = g * (1.0 - ans * ans)
            elif op == "vmap":
                _map_back(n, g, ct, floor, nested, debug)
                continue
            else:
                (rx,) = rules_of[op]
                if rx is None:
                    continue
                cx = rx(g, n, x) if nested else rx(g, n.value, x.value)
        else:
            op = n.op
            if op == "affine":
                last = len(x) - 2
                if split and last > 1:
                    held[n] = g  # the other terms get theirs at their marks
                    _affine_terms(n, g, ct, floor, nested, debug, sums, last, last)
                else:
                    _affine_terms(n, g, ct, floor, nested, debug, sums, last, 1)
                continue
            if op == "vmap":
                _map_back(n, g, ct, floor, nested, debug)
                continue
            ps = x
            ans, args = (n, ps) if nested else (n.value, tuple([p.value for p in ps]))
            joint = _JOINT.get(n.op)
            i = 0
            for r in rules_of[n.op] if joint is None else joint(g, ans, *args):
                p = ps[i]
                if r is not None and p.level >= floor:
                    c = r(g, ans, *args) if joint is None else r
                    if debug:
                        _nonfinite(n, i, c)
                    old = get(p)
                    ct[p] = c if old is None else old + c
                i += 1
            continue
        if cx is not None:
            if debug:
                _nonfinite(n, 0, cx)
            old = get(x)
            ct[x] = cx if old is None else old + cx
        if cy is not None:
            if debug:
                _nonfinite(n, 1, cy)
            old = get(y)
            ct[y] = cy if old is None else old + cy
    if sums:
        for k, c in ct.items():
            if c.__class__ is _Sum:
                ct[k] = c.node()
    return ct


def _affine_terms(
    n: Node, g: Any, ct: dict[Node, Any], floor: int, nested: bool, debug: bool, sums: bool, hi: int, lo: int
) -> None:
    # The cotangents that the terms of the affine node n whose weights sit at
    # positions hi, hi - 2, ..., lo of its arguments give, as the add and mul
    # nodes it stands for would give them, in their order (the last term
    # first, b just before the first term), so that sums into a node used
    # twice round the same way
    ps: tuple[Node, ...] = n._x
    get = ct.get
    # the weight's share and the input's are written out one after the
    # other: a loop over the pair costs about a tenth of an eager step
    for i in range(hi, lo - 1, -2):
        w = ps[i]
        v = ps[i + 1]
        if i == 1 and ps[0].level >= floor:
            b = ps[0]
            if debug:
                _nonfinite(n, 0, g)
            old = get(b)
            ct[b] = g if old is None else old + g
        if w.level >= floor:
            if sums:
                _sum_product(ct, w, g, v)
            else:
                c = g * v if nested else g * v.value
                if debug:
                    _nonfinite(n, i, c)
                old = get(w)
                ct[w] = c if old is None else old + c
        if v.level >= floor:
            if sums:
                _sum_product(ct, v, g, w)
            else:
                c = g * w if nested else g * w.value
                if debug:
                    _nonfinite(n, i + 1, c)
                old = get(v)
                ct[v] = c if old is None else old + c


class _Sum:
    """A cotangent being summed, ``c1 + g2 * v2 + g3 * v3 + ...``, that becomes one affine node when read.

    Adding anything else to it makes the node first (``old + c`` in the
    backward pass works on it as on a node).
    """

    __slots__ = ("args",)

    def __init__(self, first: Any, g: Any, v: Node):
        self.args = [first, g, v]

    def node(self) -> Node:
        return expr.affine_of(self.args)

    def __add__(self, c: Any) -> Any:
        return self.node() + c


def _sum_product(ct: dict[Node, Any], p: Node, g: Any, v: Node) -> None:
    # ct[p] += g * v, as one more term of p's _Sum
    old = ct.get(p)
    if old is None:
        ct[p] = g * v
    elif old.__class__ is _Sum:
        a = old.args
        a.append(g)
        a.append(v)
        if len(a) > 2 * expr.AFFINE_TERMS:
            ct[p] = old.node()  # the next term starts a new one on top
    else:
        ct[p] = _Sum(old, g, v)


def _map_back(n: Node, g: Any, ct: dict[Node, Any], floor: int, nested: bool, debug: bool) -> None:
    # a vmap node: its map gives the cotangents of the parents that need one, at once
    ps = n.parents
    get = ct.get
    for i, c in n.value.map.backward(n, g, floor, nested, debug):  # type: ignore[attr-defined]
        if debug:
            _nonfinite(n, i, c)
        p = ps[i]
        old = get(p)
        ct[p] = c if old is None else old + c


def gradients(out: Node, wrt: Sequence[Node] | None = None) -> dict[Node, Any]:
    """``{node: d out / d node}`` for every node of ``out``'s graph, or for ``wrt`` only.

    Every path counts: a node used in several places sums its contributions.
    Outside any ``grad`` the values are floats. Inside one they are computed
    with nodes, so an enclosing ``grad`` can differentiate them. A node in
    ``wrt`` that ``out`` does not depend on gets ``0.0``; a constant in
    ``wrt`` (:func:`fungrad.const`, a number lifted to a node) is an error,
    since no derivative is ever taken with respect to a constant. The node
    of a :func:`fungrad.vmap` holds a batch of outputs: its entry is a list,
    one derivative per output.

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
        raise TypeError(
            f"gradients: out must be a fungrad Node, got {type(out).__name__} {out!r:.80}"
            + ("; a plain number does not depend on anything" if expr.real_number(out) else "")
        )
    cur = expr.current()
    nested = cur.active
    floor = cur.level if nested else expr.CONST
    if wrt is not None:
        if wrt.__class__ is Node or not isinstance(wrt, Iterable) or isinstance(wrt, (str, bytes, dict)):
            raise TypeError(
                f"gradients: wrt must be a list of fungrad Nodes, got {type(wrt).__name__}"
                + (" (a single node: write wrt=[x])" if wrt.__class__ is Node else "")
            )
        wrt = list(wrt)
        for i, w in enumerate(wrt):
            if w.__class__ is not Node:
                raise TypeError(f"gradients: wrt[{i}] must be a fungrad Node, got {type(w).__name__} {w!r:.80}")
            if w.level == expr.CONST:
                raise ValueError(
                    f"gradients: wrt[{i}] is a constant ({w!r:.60}): constants (fg.const, numbers lifted "
                    "to nodes, functions of constants) are never differentiated; use fg.var for a variable"
                )
        if wrt:
            floor = min(floor, min(w.level for w in wrt))
    order = _depth_first(out, floor, True)
    if nested or not cur.debug:
        ct = _backward(out, reversed(order), floor, nested=nested, debug=cur.debug, split=True)
    else:
        ct = _float_pass(out, order, floor, split=True)
    if wrt is not None:
        return {w: _cotangent(w, ct) for w in wrt}
    return {n: _cotangent(n, ct) for n in reversed(order) if n.__class__ is not _Term}


def _cotangent(n: Node, ct: dict[Node, Any]) -> Any:
    # a vmap node's cotangent is one per output: a list, with 0.0 for the outputs out does not use
    c = ct.get(n, 0.0)
    if c.__class__ is expr.Picks:
        return [c.get(i, 0.0) for i in range(len(n.value))]  # type: ignore[arg-type]
    return c


def _float_pass(out: Node, order: list[Any], floor: int, split: bool = False) -> dict[Node, Any]:
    # Under debug_nans at the root: the rules' own float arithmetic may pass
    # through infinities on a branch that where() drops; the cotangents are
    # what is checked, with a message that names the gradient
    return contextvars.copy_context().run(_at_root, out, order, floor, split)


def _at_root(out: Node, order: list[Any], floor: int, split: bool) -> dict[Node, Any]:
    expr._state.set(expr._ROOT)
    return _backward(out, reversed(order), floor, debug=True, split=split)


# --------------------------------------------------------------------------
# The cyclic garbage collector during a transform
#
# fungrad's graphs have no reference cycles, so reference counting frees
# them; the cyclic collector only rescans the growing live graph, which cost
# about half of the time of a training step. So while a transform runs at the
# root of some thread, collections of the youngest generation happen less
# often: its threshold is raised (never set to 0, and the collector is never
# switched off, so cycles made meanwhile are still collected). The user's
# thresholds come back when the last transform ends, unless the user changed
# them meanwhile.
#
# A KeyboardInterrupt can land at any statement, so no step here holds a
# lock (an interrupt between a lock's acquire and its release would hang the
# next transform of every thread): each thread registers under its own key
# (registering twice is registering once) and every change is one atomic
# store or C call. An exit that an interrupt cut short is done again by
# _outermost; a registration left by a thread that has ended is dropped on
# the next entry.
#
# The young threshold, measured on the eager moons step (bench: 65k nodes,
# each one tracked object, allocated per forward pass), median time per step
# with micrograd's steps in between: 700 (Python's default) 61.6 ms, 50k
# 58.1, 100k 54.2, 200k 55.1, the collector switched off 53.9; in another
# run 50k 68.6, 100k 56.8, off 56.1. Past the size of one step's graph a
# collection rarely lands inside a step. The price is memory: cyclic garbage
# made meanwhile waits for up to about this many tracked allocations. Three
# threads training while a fourth made cycles holding 1 kB each, for 4 s:
# RSS peaked 28 MB above the start at 700, 89-95 MB at 50k, 109-118 MB at
# 100k and 205 MB at 200k (the collector off grows without bound). 100k
# keeps the speed at a bounded, modest cost.

_GC_YOUNG = 100_000


class _Alive:
    # one per thread, held by a thread-local: its weak reference dies with the thread
    __slots__ = ("__weakref__",)


class _GCThreshold:
    def __init__(self) -> None:
        self.threads: dict[int, weakref.ref[_Alive]] = {}  # the threads running a transform at their root
        self.pair: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None  # (the user's, ours)
        self.local = threading.local()

    def enter(self) -> None:
        ref = getattr(self.local, "ref", None)
        if ref is None:
            tok = self.local.tok = _Alive()
            ref = self.local.ref = weakref.ref(tok)
        threads = self.threads
        threads[threading.get_ident()] = ref
        if len(threads) > 1:
            for k, r in tuple(threads.items()):
                if r() is None:  # a thread that ended inside a transform
                    threads.pop(k, None)
        cur = gc.get_threshold()
        pair = self.pair
        if (pair is None or cur != pair[1]) and 0 < cur[0] < _GC_YOUNG:
            # the user's thresholds (at first, or set anew): keep them, raise ours
            ours = (_GC_YOUNG, cur[1], cur[2])
            self.pair = (cur, ours)
            gc.set_threshold(*ours)

    def exit(self) -> None:
        threads = self.threads
        threads.pop(threading.get_ident(), None)
        pair = self.pair
        if not threads and pair is not None and gc.get_threshold() == pair[1]:
            gc.set_threshold(*pair[0])


_gc_state = _GCThreshold()


def _outermost(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a transform's work with the collector's young threshold raised, at the root."""
    if expr.current().active:
        return fn(*args)
    try:
        try:
            _gc_state.enter()
            return fn(*args)
        finally:
            _gc_state.exit()
    except BaseException:
        _gc_state.exit()  # an interrupt may have cut the first exit short; exit is idempotent
        raise


# --------------------------------------------------------------------------
# Tracing a function at a new level


class _Traced:
    """One run of ``f`` at a fresh level: its inputs, output(s) and tape."""

    __slots__ = ("result", "trace", "tape", "inputs", "treedefs", "skip", "nested")

    result: Any
    trace: Trace
    tape: list[Node]
    inputs: list[list[Node]]
    treedefs: list[tree.TreeDef]
    skip: int
    nested: bool

    def grads(self, out: Any) -> list[Any]:
        """d out / d input for every argument traced, each shaped like that argument."""
        t = self.trace
        if out.__class__ is Node and out.level >= t.level:
            # the inputs head the tape; leaving them out keeps their cotangents
            body = self.tape[self.skip :]
            if self.nested or not t.debug:
                ct = _backward(out, reversed(body), t.level, nested=self.nested, debug=t.debug, drop=True)
            else:
                ct = _float_pass(out, body, t.level)
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


def check_transform_args(f: Any, argnums: Any, fname: str) -> None:
    """The checks every transform makes when it is created: a function, and ints for ``argnums``."""
    if not callable(f):
        raise TypeError(f"{fname}: expected a function to transform, got {type(f).__name__} {f!r:.60}")
    nums = (argnums,) if isinstance(argnums, int) else argnums
    ok = isinstance(nums, (tuple, list)) and all(isinstance(a, int) and not isinstance(a, bool) for a in nums)
    if isinstance(argnums, bool) or not ok:
        raise TypeError(f"{fname}: argnums must be an int or a tuple of ints, got {argnums!r:.60}")


def _fresh(v: Any, argnum: int, arg: Any, i: int, fname: str) -> Node:
    """The new input node for leaf ``i`` of argument ``argnum`` (``arg``)."""
    c = v.__class__
    if c is float:
        return expr.var(v)
    if c is Node:
        return expr.link(v)
    number = expr.real_number(v)
    if number:
        try:
            return expr.var(float(v))
        except OverflowError:
            pass  # an int too large for a float: said below, with its path
    # Only now is the leaf's path worth finding (once per bad leaf, not per
    # leaf): every message names it.
    path = tree.flatten_with_path(arg)[0][i][0]
    where = f"argument {argnum}" + (f" at {tree.keystr(path)}" if path else "")
    if number:
        return expr.var(expr._check_number(v, f"{fname}: {where}"))
    raise TypeError(
        f"{fname}: {where} is {c.__name__} {v!r:.60}; expected a real number (float or int) "
        "or a fungrad Node. Leaves of the differentiated arguments must be numbers; pass other "
        "data through an argument not in argnums"
    )


def _trace(
    f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], nums: tuple[int, ...], fname: str,
    *, fuse: bool = False,
) -> _Traced:
    # ``fuse``: the level is walked backward only (grad, value_and_grad,
    # jacobian), so at the root affine may make one node per sum (expr.affine)
    parent = expr.current()
    t = expr.new_level(fuse=fuse)
    r = _Traced()
    r.trace = t
    r.tape = t.tape  # type: ignore[assignment]
    r.nested = parent.active
    expr.run_level(t, _run_traced, r, f, args, kwargs, nums, fname)
    return r


def _run_traced(
    r: _Traced, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], nums: tuple[int, ...], fname: str
) -> None:
    new = list(args)
    r.inputs, r.treedefs = [], []
    for a in nums:
        leaves, td = tree.flatten(args[a])
        xs = [_fresh(v, a, args[a], i, fname) for i, v in enumerate(leaves)]
        r.inputs.append(xs)
        r.treedefs.append(td)
        new[a] = tree.unflatten(td, xs)
    r.skip = len(r.tape)
    r.result = f(*new, **kwargs)


def _scalar(out: Any, fname: str, has_aux: bool) -> Any:
    c = out.__class__
    if c is Node or expr.real_number(out):
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


def _split_aux(res: Any, has_aux: bool, fname: str) -> tuple[Any, Any]:
    if not has_aux:
        return res, None
    if not (isinstance(res, tuple) and len(res) == 2):
        got = f"{type(res).__name__}" + (f" of {len(res)} items" if isinstance(res, tuple) else "")
        raise TypeError(f"{fname}: has_aux=True, so f must return a pair (output, aux); it returned {got}")
    return res


def _wraps(f: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # names and docs only: copying f's __dict__ (functools.wraps does) would
    # hand a wrapped transform's state, a jit cache say, to its wrapper
    return functools.wraps(f, updated=())


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
    check_transform_args(f, argnums, fname)

    @_wraps(f)
    def vg(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return _outermost(run, args, kwargs)  # type: ignore[no-any-return]

    def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        nums = _argnums(argnums, len(args), fname)
        r = _trace(f, args, kwargs, nums, fname, fuse=True)
        out, aux = _split_aux(r.result, has_aux, fname)
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

    @_wraps(f)
    def g(*args: Any, **kwargs: Any) -> Any:
        (value, g_) = vg(*args, **kwargs)
        if has_aux:
            return g_, value[1]
        return g_

    return g


def jacobian(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """The derivatives of every output leaf of ``f`` with respect to its argument(s) (reverse mode).

    The result has the structure of ``f``'s output, each leaf replaced by a
    gradient shaped like the argument (a tuple of them when ``argnums`` is a
    tuple). One forward pass, one backward pass per output. With
    ``has_aux=True``, ``f`` returns ``(output, aux)`` and the result is
    ``(jacobian, aux)``. :func:`jacrev` is the same function.

    >>> import fungrad as fg
    >>> fg.jacobian(lambda v: [v[0] * v[1], v[0] + 2 * v[1]])([3.0, 4.0])
    [[4.0, 3.0], [1.0, 2.0]]
    >>> fg.jacobian(lambda x: ([x * x, 3 * x], "aux"), has_aux=True)(2.0)
    ([4.0, 3.0], 'aux')
    """
    return _jacobian(f, argnums, has_aux, "jacobian")


def _jacobian(f: Callable[..., Any], argnums: int | Sequence[int], has_aux: bool, fname: str) -> Callable[..., Any]:
    check_transform_args(f, argnums, fname)

    @_wraps(f)
    def jac(*args: Any, **kwargs: Any) -> Any:
        return _outermost(run, args, kwargs)

    def run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        nums = _argnums(argnums, len(args), fname)
        r = _trace(f, args, kwargs, nums, fname, fuse=True)
        res, aux = _split_aux(r.result, has_aux, fname)
        outs, td = tree.flatten(res)
        rows = []
        for i, o in enumerate(outs):
            if not (o.__class__ is Node or expr.real_number(o)):
                raise TypeError(
                    f"{fname}: output leaf {i} of f is {type(o).__name__} {o!r:.60}; expected a number or Node"
                )
            gs = r.grads(o)
            rows.append(gs[0] if isinstance(argnums, int) else tuple(gs))
        jac_ = tree.unflatten(td, rows)
        if has_aux:
            return jac_, (aux if r.nested else _concrete(aux))
        return jac_

    return jac


jacrev = jacobian
