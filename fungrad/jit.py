"""``jit``: trace a function once per input structure, then replay it on new values.

``jit(f)`` runs ``f`` once on fresh variables at a new trace level, records
every node it makes (forward pass, and any ``grad`` inside it, whose backward
pass is recorded too), and turns the nodes the outputs need into one
straight-line Python function, compiled once. Later calls whose arguments have
the same structure (same containers, same keys, same static values) run only
that function on plain floats: no nodes, no graph walk, no dictionaries.

>>> import fungrad as fg
>>> def loss(w, x):
...     return fg.tanh(w[0] * x + w[1]) ** 2
>>> step = fg.jit(fg.value_and_grad(loss))
>>> step([0.5, -1.0], 2.0) == fg.value_and_grad(loss)([0.5, -1.0], 2.0)
True
>>> step([0.3, 0.1], 4.0)[1] == fg.grad(loss)([0.3, 0.1], 4.0)   # replayed, not retraced
True
>>> step.cache_size()
1
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import re
import struct
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any, Callable, NamedTuple, Sequence

from . import expr, tree
from .expr import Node

__all__ = ["jit", "Jitted", "CacheInfo", "DEFAULT_CACHE_LIMIT"]

# Ops written inline in the generated code: Python float + - * and unary -
# never raise (overflow gives inf, inf - inf gives nan), so they are the same
# IEEE operations as the primitives' forwards; ``where`` and ``relu`` are the
# conditional expressions of their forwards. Every other op calls its
# primitive's ``fwd``. Each template is checked against its forward on edge
# values when this module loads (below), and dropped if they ever disagree.
_INLINE = {
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "neg": "(-{0})",
    "where": "({1} if {0} > 0.0 else {2})",
    "relu": "(0.0 if {0} < 0.0 else {0})",
}
_FWD = expr.FWD  # by op name; user primitives join it when declared
_SIMPLE = re.compile(r"(r\d+|xs\[\d+\]|R\[\d+\]|_?[a-z]+|\(?-?[0-9.e+-]+\)?)\Z")  # names and literals
_EDGE = (0.0, -0.0, 1.0, -1.0, 2.5, 1e-310, math.inf, -math.inf, math.nan)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _agrees(f: Callable[..., float], g: Callable[..., float], arity: int) -> bool:
    return all(_bits(f(*a)) == _bits(g(*a)) for a in itertools.product(_EDGE, repeat=arity))


def _checked_templates() -> dict[str, str]:
    out = {}
    for op, tpl in _INLINE.items():
        p = expr.PRIMITIVES[op]
        names = [f"a{i}" for i in range(p.arity)]
        f = eval(f"lambda {', '.join(names)}: {tpl.format(*names)}")  # noqa: S307 - our own template
        if _agrees(f, p.fwd, p.arity):
            out[op] = tpl
    return out


_INLINE = _checked_templates()
# a template that reads its argument twice evaluates a folded argument once, into _t
_VIA_TEMP = {
    op: t.replace("{0}", "\x00", 1).replace("{0}", "_t").replace("\x00", "(_t := {0})")
    for op, t in _INLINE.items()
    if t.count("{0}") > 1
}
# x * 1.0 is x, bit for bit, for every float x: such products are aliases
_MUL_ONE_IS_IDENTITY = _agrees(lambda a: _FWD["mul"](a, 1.0), lambda a: a, 1) and _agrees(
    lambda a: _FWD["mul"](1.0, a), lambda a: a, 1
)

# Folding a chain of single-use values into one expression nests it; past a
# few dozen levels CPython's parser refuses ("too many nested parentheses").
_MAX_DEPTH = 24
# Statements per generated function. A value that crosses from one function
# to the next goes through the list R, which is slow: measured here, a
# 10^6-node chain replays at about 75 ns per node in functions of 20,000
# statements and 21 ns in one function. So only graphs past this size are
# split (compiling costs about 10 us per statement, a little more in very
# large functions).
_SEGMENT = 500_000

_NUM = object()  # marks a numeric (traced) leaf in a cache key


class _Entry(NamedTuple):
    run: Callable[[list[float]], list[Any]]
    build: Callable[[list[Any]], Any]  # output leaves -> the output pytree
    info: dict[str, Any]


def _builder(td: tree.TreeDef) -> Callable[[list[Any]], Any]:
    """``tree.unflatten(td, leaves)``, with flat lists and tuples of leaves as plain slices."""
    kind, ch = td.kind, td.children
    if kind in ("list", "tuple") and all(c.kind == "*" for c in ch):
        return list if kind == "list" else tuple
    if kind == "*":
        return lambda o: o[0]
    if kind in ("list", "tuple", "dict") and len(ch) <= 16:
        parts, off = [], 0
        for c in ch:
            parts.append((_builder(c), off, off + c.num_leaves))
            off += c.num_leaves
        if kind == "list":
            return lambda o: [b(o[i:j]) for b, i, j in parts]
        if kind == "tuple":
            return lambda o: tuple([b(o[i:j]) for b, i, j in parts])
        keys = td.aux
        return lambda o: {k: b(o[i:j]) for k, (b, i, j) in zip(keys, parts)}
    return lambda o: tree.unflatten(td, o)


_is_number = expr.real_number


# --------------------------------------------------------------------------
# From a traced graph to a program


def _prepare(tape: list[Node], inputs: list[Node], outs: list[Any]) -> tuple[list[Node], dict[Node, Node]]:
    """The nodes the replay computes, in tape (topological) order, and the aliases.

    Leaves made inside the trace that are not inputs (``fg.var(3.0)`` inside
    ``f``) and every node from outside the trace are constants. A node that
    only passes a value on is an alias of that value: a ``link`` (the input of
    a nested grad), a product with the constant ``1.0`` (``x * 1.0`` is ``x``
    exactly, in IEEE arithmetic, for every ``x``), and a ``where`` whose
    condition is a constant. Backward passes make many of these.
    """
    on_tape = set(tape)
    ins = set(inputs)
    alias: dict[Node, Node] = {}
    get = alias.get

    def const(p: Node) -> bool:
        return p not in on_tape or (not p.parents and p not in ins)

    for n in tape:
        op = n.op
        if op == "link":
            p = n.parents[0]
            alias[n] = get(p, p)
        elif op == "mul" and _MUL_ONE_IS_IDENTITY:
            a, b = n.parents
            a, b = get(a, a), get(b, b)
            if const(a) and a.value == 1.0:
                alias[n] = b
            elif const(b) and b.value == 1.0:
                alias[n] = a
        elif op == "where":
            c = n.parents[0]
            c = get(c, c)
            if const(c):
                # the forward picks one of its arguments: let it pick the node
                p = _FWD["where"](c.value, n.parents[1], n.parents[2])
                if p is n.parents[1] or p is n.parents[2]:
                    alias[n] = get(p, p)
    need = set()
    for o in outs:
        if o.__class__ is Node:
            o = get(o, o)
            if not const(o):
                need.add(o)
    for n in reversed(tape):  # users come after producers, so one pass suffices
        if n in need:
            for p in n.parents:
                p = get(p, p)
                if not const(p):
                    need.add(p)
    return [n for n in tape if n in need], alias


class _Names:
    """Constants and functions that the generated code reads as globals."""

    def __init__(self) -> None:
        self.glob: dict[str, Any] = {"_inf": math.inf, "_ninf": -math.inf, "_nan": math.nan, "_nz": -0.0}

    def literal(self, v: float) -> str:
        if v != v:
            return "_nan"
        if v == math.inf:
            return "_inf"
        if v == -math.inf:
            return "_ninf"
        if v == 0.0 and math.copysign(1.0, v) < 0.0:
            return "_nz"
        return repr(v) if v >= 0.0 else f"({v!r})"

    def fwd(self, op: str) -> str:
        # user primitives may have names that are not identifiers
        name = f"_f_{op}" if op.isidentifier() else f"_f{len(self.glob)}_{re.sub(r'[^0-9a-zA-Z_]', '_', op)}"
        if self.glob.get(name, _FWD[op]) is not _FWD[op]:
            name = f"_f{len(self.glob)}"
        self.glob.setdefault(name, _FWD[op])
        return name


def _codegen(
    order: list[Node], alias: dict[Node, Node], inputs: list[Node], outs: list[Any]
) -> tuple[list[str], dict[str, Any], int]:
    """Straight-line Python for ``order``: (source of each segment, globals, spill slots).

    The code reads the inputs as ``xs[k]`` and stores the outputs into the
    list ``o`` as soon as they are computed. A value used exactly once is
    folded into the expression of its user; any other value gets a register
    (a local name), reused once the value is dead. Both keep the code short
    and the locals few, which is what makes it compile fast (a prototype with
    one local per op compiled 200,000 lines in 7 s). Graphs of more than
    ``_SEGMENT`` statements are split into several functions; a value used
    in a later one is handed on through the list ``R``.
    """
    names = _Names()
    pos = {n: i for i, n in enumerate(order)}
    num = len(order)
    in_slot = {x: k for k, x in enumerate(inputs)}
    is_in = [n in in_slot for n in order]
    get = alias.get
    parents = [[get(p, p) for p in n.parents] for n in order]
    uses = [0] * num
    users: list[list[int]] = [[] for _ in range(num)]
    for i, n in enumerate(order):
        for p in parents[i]:
            j = pos.get(p)
            if j is not None:
                uses[j] += 1
                users[j].append(i)
    outpos: dict[int, list[int]] = {}
    tmpl: list[Any] = []
    for k, o in enumerate(outs):
        if o.__class__ is Node:
            o = get(o, o)
        j = pos.get(o) if o.__class__ is Node else None
        if j is not None:
            outpos.setdefault(j, []).append(k)
            tmpl.append(None)
        else:  # not computed by the replay: a constant, or a static object returned as is
            tmpl.append(o.value if o.__class__ is Node else o)

    # pass 1: which values fold into their user, where each is evaluated, in which segment
    folded = is_in[:]  # inputs are read where they are used
    user = [-1] * num
    depth = [0] * num
    for i, n in enumerate(order):
        if is_in[i]:
            continue
        d = 0
        for p in parents[i]:
            j = pos.get(p)
            if j is not None and folded[j] and not is_in[j]:
                user[j] = i
                if depth[j] > d:
                    d = depth[j]
        depth[i] = d + 1
        folded[i] = uses[i] == 1 and i not in outpos and d + 1 < _MAX_DEPTH
    at = list(range(num))  # the statement that evaluates node i
    seg = [0] * num
    count = 0
    for i in range(num):
        if not folded[i]:
            seg[i] = count // _SEGMENT
            count += 1
    for i in range(num - 1, -1, -1):
        if folded[i] and not is_in[i]:
            at[i] = at[user[i]]
            seg[i] = seg[at[i]]
    last = list(range(num))  # the last statement of node i's segment that reads its register
    spill = [False] * num  # whether a later segment reads it
    for j in range(num):
        if folded[j]:
            continue
        for i in users[j]:
            a = at[i]
            if seg[a] == seg[j]:
                if a > last[j]:
                    last[j] = a
            else:
                spill[j] = True

    # pass 2: emit, reusing the registers of dead values
    text: list[str] = [""] * num
    slot: dict[int, int] = {}
    segments: list[list[str]] = []
    lines: list[str] = []
    release: dict[int, list[str]] = {}
    free: list[str] = []
    nregs = 0
    cur = -1
    for i, n in enumerate(order):
        if is_in[i]:
            text[i] = f"xs[{in_slot[n]}]"
            for k in outpos.get(i, ()):
                lines.append(f"o[{k}] = {text[i]}")
            continue
        here = seg[i]
        args = []
        for p in parents[i]:
            j = pos.get(p)
            if j is None:
                args.append(names.literal(p.value))
            elif folded[j] and not is_in[j]:
                args.append(text[j])
                text[j] = ""  # used once: its text now lives in its user's
            elif folded[j] or seg[j] == here:
                args.append(text[j])
            else:
                args.append(f"R[{slot[j]}]")
        tpl = _INLINE.get(n.op)
        if tpl is None:
            e = f"{names.fwd(n.op)}({', '.join(args)})"
        elif n.op in _VIA_TEMP and not _SIMPLE.match(args[0]):
            e = _VIA_TEMP[n.op].format(*args)
        else:
            e = tpl.format(*args)
        if folded[i]:
            text[i] = e
            continue
        if here != cur:  # a new segment: every register is free again
            if cur >= 0:
                segments.append(lines)
                lines = []
            cur = here
            release.clear()
            free = [f"r{k}" for k in range(nregs - 1, -1, -1)]
        for r in release.pop(i, ()):
            free.append(r)
        ks = outpos.get(i, ())
        if uses[i] == 0 and len(ks) == 1:
            lines.append(f"o[{ks[0]}] = {e}")
            continue
        if free:
            reg = free.pop()
        else:
            reg = f"r{nregs}"
            nregs += 1
        lines.append(f"{reg} = {e}")
        text[i] = reg
        for k in ks:
            lines.append(f"o[{k}] = {reg}")
        if spill[i]:
            slot[i] = len(slot)
            lines.append(f"R[{slot[i]}] = {reg}")
        if last[i] == i:
            free.append(reg)
        else:
            release.setdefault(last[i], []).append(reg)
    segments.append(lines)
    src = [
        f"def _s{c}(xs, o, R):\n    " + "\n    ".join(body or ["pass"]) + "\n" for c, body in enumerate(segments)
    ]
    names.glob["_tmpl"] = tmpl
    return src, names.glob, len(slot)


def _link(segs: list[str], glob: dict[str, Any], nspill: int) -> Callable[[list[float]], list[Any]]:
    fns = []
    for c, s in enumerate(segs):
        g = dict(glob)
        exec(compile(s, f"<fungrad.jit segment {c}>", "exec"), g)
        fns.append(g[f"_s{c}"])
    tmpl = glob["_tmpl"]
    if len(fns) == 1:
        f0 = fns[0]

        def run1(xs: list[float]) -> list[Any]:
            o = tmpl[:]
            f0(xs, o, None)
            return o

        return run1

    def run(xs: list[float]) -> list[Any]:
        o = tmpl[:]
        R = [None] * nspill
        for f in fns:
            f(xs, o, R)
        return o

    return run


# --------------------------------------------------------------------------
# The transform


class _OnNodes(Exception):
    pass


def _walk(x: Any, key: list[Any], xs: list[float]) -> None:
    """Append the cache key tokens of ``x`` to ``key`` and its numbers to ``xs``.

    The leaves come in :func:`fungrad.tree.flatten` order (it uses the same
    children), but no ``TreeDef`` is built: on a cache hit, building and
    hashing one cost more than the whole replay of a small model.
    """
    c = x.__class__
    if c is float:
        xs.append(x)
        key.append(_NUM)
    elif c is list or c is tuple:
        key.append((c, len(x)))
        for v in x:
            _walk(v, key, xs)
    elif c is dict:
        key.append((c, tuple(x)))
        for v in x.values():
            _walk(v, key, xs)
    elif c is Node:
        raise _OnNodes
    elif _is_number(x):
        xs.append(expr._check_number(x, "jit"))
        key.append(_NUM)
    else:
        ch = tree._children(x)
        if ch is None:
            key.append(_typed(x))  # a static leaf, compared by type and value
        else:
            kind, aux, children, _ = ch
            key.append((kind, aux, len(children)))
            for v in children:
                _walk(v, key, xs)


def _typed(v: Any) -> Any:
    """A cache key for a static value: equal values of different types (1, 1.0, True) differ."""
    c = v.__class__
    if c is tuple or c is frozenset:
        return (c, tuple(_typed(x) for x in v))
    return (c, v)


class CacheInfo(list):  # type: ignore[type-arg]
    """The records of a jitted function's cached replays, with the cache's counters.

    Each record has ``traced`` (nodes recorded), ``nodes`` (nodes the
    outputs need), ``lines`` (generated statements), ``trace_s``,
    ``codegen_s`` and ``compile_s``. The attributes ``limit``, ``hits``,
    ``misses`` and ``evictions`` count the cache's use.
    """

    limit: int
    hits: int
    misses: int
    evictions: int


class _Cache:
    """Compiled replays by input signature, least recently used first out."""

    def __init__(self, limit: int):
        self.entries: OrderedDict[Any, _Entry] = OrderedDict()
        self.limit = limit
        self.lock = threading.RLock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Any) -> _Entry | None:
        e = self.entries.get(key)
        if e is not None:
            self.hits += 1
            if len(self.entries) > 1:
                try:
                    self.entries.move_to_end(key)
                except KeyError:  # evicted by another thread meanwhile
                    pass
        return e

    def put(self, key: Any, e: _Entry) -> None:
        self.misses += 1
        self.entries[key] = e
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)
            self.evictions += 1


# one cache per (function, static arguments, limit), shared by every jit of
# the same function and dropped with it
_caches: weakref.WeakKeyDictionary[Any, dict[Any, _Cache]] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()

DEFAULT_CACHE_LIMIT = 256


def _shared_cache(f: Callable[..., Any], options: Any, limit: int) -> _Cache:
    with _caches_lock:
        try:
            per_f = _caches.get(f)
            if per_f is None:
                per_f = _caches[f] = {}
        except TypeError:  # not weakly referable (a builtin): a cache of its own
            return _Cache(limit)
        c = per_f.get((options, limit))
        if c is None:
            c = per_f[(options, limit)] = _Cache(limit)
        return c


class Jitted:
    """A function compiled by :func:`jit`, with its cache of compiled replays.

    >>> import fungrad as fg
    >>> f = fg.jit(lambda xs: sum(x * x for x in xs))
    >>> f([1.0, 2.0]), f([3.0, 4.0]), f([1.0, 2.0, 3.0])
    (5.0, 25.0, 14.0)
    >>> f.cache_size()      # one replay per structure: lists of 2 and of 3
    2
    >>> f.clear_cache(); f.cache_size()
    0
    """

    def __init__(
        self,
        f: Callable[..., Any],
        static_argnums: tuple[int, ...],
        static_argnames: tuple[str, ...],
        cache_limit: int,
    ):
        self.fun = f
        self.static_argnums = static_argnums
        self.static_argnames = static_argnames
        self._cache = _shared_cache(f, (static_argnums, static_argnames), cache_limit)
        # names and docs only: copying f's __dict__ would take over the
        # state of a wrapped transform (a jitted f's own cache, say)
        functools.update_wrapper(self, f, updated=())

    def __repr__(self) -> str:
        return f"<fungrad.jit of {getattr(self.fun, '__qualname__', self.fun)!r}>"

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        # so that a jitted function works as a method
        return self if obj is None else functools.partial(self, obj)

    def cache_size(self) -> int:
        """How many compiled replays are cached (one per input structure seen)."""
        return len(self._cache.entries)

    def clear_cache(self) -> None:
        """Forget every compiled replay of this function; the next call traces again."""
        with self._cache.lock:
            self._cache.entries.clear()

    def cache_info(self) -> CacheInfo:
        """One record per cached replay, and the cache's counters (see :class:`CacheInfo`).

        >>> import fungrad as fg
        >>> f = fg.jit(lambda x, k: x * k, static_argnums=1, cache_limit=2)
        >>> [f(1.0, k) for k in (1, 2, 3)]
        [1.0, 2.0, 3.0]
        >>> info = f.cache_info()
        >>> len(info), info.limit, info.misses, info.evictions, info[0]["nodes"]
        (2, 2, 3, 1, 1)
        """
        c = self._cache
        out = CacheInfo(dict(e.info) for e in list(c.entries.values()))
        out.limit, out.hits, out.misses, out.evictions = c.limit, c.hits, c.misses, c.evictions
        return out

    @functools.cached_property
    def _static_names(self) -> frozenset[str]:
        # static positional parameters may be passed by keyword: static by name too
        names = set(self.static_argnames)
        try:
            ps = list(inspect.signature(self.fun).parameters.values())
        except (TypeError, ValueError):
            return frozenset(names)
        pos = [p.name for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for a in self.static_argnums:
            if -len(pos) <= a < len(pos):
                names.add(pos[a])
        return frozenset(names)

    def _partition(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[Any, Any], Any]:
        """(the dynamic arguments as one pytree, the static ones by position or name, their cache key)."""
        sn = self.static_argnums
        if not sn and not self.static_argnames:
            return (args, kwargs), {}, ()
        n = len(args)
        statics: dict[Any, Any] = {}
        names = self._static_names
        for a in sn:
            if -n <= a < n:
                statics[a % n] = args[a]
            elif not any(k in names for k in kwargs):
                raise ValueError(
                    f"jit: static_argnums={sn!r} names argument {a}, but the function was called "
                    f"with {n} positional argument{'s' if n != 1 else ''}"
                )
        dyn_args = tuple(None if i in statics else v for i, v in enumerate(args))
        dyn_kw = {}
        for k, v in kwargs.items():
            if k in names:
                statics[k] = v
            else:
                dyn_kw[k] = v
        key = tuple(sorted(((k, _typed(v)) for k, v in statics.items()), key=lambda kv: (isinstance(kv[0], str), kv[0])))
        try:
            hash(key)
        except TypeError:
            raise TypeError(
                f"jit: static arguments (static_argnums={sn!r}, static_argnames={self.static_argnames!r}) "
                "are part of the cache key, so they must be hashable; got an unhashable value"
            ) from None
        return (dyn_args, dyn_kw), statics, key

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t = expr.current()
        if t.active or t.debug:
            # inside grad, another jit trace or debug_nans: run f as it is, so
            # the enclosing level sees (and differentiates, or checks) every op
            return self.fun(*args, **kwargs)
        dyn, statics, skey = self._partition(args, kwargs)
        xs: list[float] = []
        sig: list[Any] = [skey]
        try:
            _walk(dyn, sig, xs)
        except _OnNodes:
            return self.fun(*args, **kwargs)  # called on nodes: eager
        key = tuple(sig)
        cache = self._cache
        try:
            entry = cache.get(key)
        except TypeError:
            raise TypeError(_unhashable(dyn)) from None
        if entry is None:
            with cache.lock:
                entry = cache.entries.get(key)
                if entry is None:
                    entry = self._compile(dyn, statics, xs)
                    cache.put(key, entry)
        return entry.build(entry.run(xs))

    def _trace(self, dyn: Any, statics: dict[Any, Any], xs: list[float]) -> tuple[list[Node], list[Node], Any]:
        leaves, td = tree.flatten(dyn)
        t = expr.new_level(debug=False, jit=True)
        tape: list[Node] = t.tape  # type: ignore[assignment]
        inputs, result = expr.run_level(t, self._run, td, leaves, statics, xs)
        return tape, inputs, result

    def _run(self, td: tree.TreeDef, leaves: list[Any], statics: dict[Any, Any], xs: list[float]) -> tuple[list[Node], Any]:
        inputs = [expr.var(v) for v in xs]
        it = iter(inputs)
        dyn_args, kw = tree.unflatten(td, [next(it) if _is_number(v) else v for v in leaves])
        full = list(dyn_args)
        for k, v in statics.items():
            if isinstance(k, str):
                kw[k] = v
            else:
                full[k] = v
        result = self.fun(*full, **kw)
        if inspect.isgenerator(result) or inspect.iscoroutine(result) or inspect.isasyncgen(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"jit: {getattr(self.fun, '__qualname__', self.fun)!r} returned a {type(result).__name__}, "
                "whose code runs later, after the trace has ended; jit needs a function that returns "
                "its results (a list instead of a generator)"
            )
        return inputs, result

    def _compile(self, dyn: Any, statics: dict[Any, Any], xs: list[float]) -> _Entry:
        t0 = time.perf_counter()
        tape, inputs, result = self._trace(dyn, statics, xs)
        outs, out_td = tree.flatten(result)
        t1 = time.perf_counter()
        order, alias = _prepare(tape, inputs, outs)
        info: dict[str, Any] = {"traced": len(tape), "nodes": len(order), "trace_s": t1 - t0}
        segs, glob, nspill = _codegen(order, alias, inputs, outs)
        t2 = time.perf_counter()
        del tape, order, alias, result
        run = _link(segs, glob, nspill)
        info.update(lines=sum(s.count("\n") for s in segs), codegen_s=t2 - t1, compile_s=time.perf_counter() - t2)
        return _Entry(run, _builder(out_td), info)

    def source(self, *args: Any, **kwargs: Any) -> str:
        """The Python code that replays ``f`` for arguments shaped like these (for reading).

        Inputs are ``xs[k]``, outputs are stored into ``o[k]``, a value used
        more than once has a register ``r<k>`` (reused once the value is
        dead), a value used once is folded into its user's expression, and
        ops other than ``+ - *`` (and ``where``) call their primitive's forward.

        >>> import fungrad as fg
        >>> print(fg.jit(lambda x, y: fg.tanh(x * y) + 1.0).source(2.0, 3.0))
        def _s0(xs, o, R):
            o[0] = (_f_tanh((xs[0] * xs[1])) + 1.0)
        <BLANKLINE>
        """
        dyn, statics, _ = self._partition(args, kwargs)
        xs: list[float] = []
        _walk(dyn, [], xs)
        tape, inputs, result = self._trace(dyn, statics, xs)
        outs, _ = tree.flatten(result)
        segs, _, _ = _codegen(*_prepare(tape, inputs, outs), inputs, outs)
        return "\n".join(segs)


def _unhashable(dyn: Any) -> str:
    for path, v in tree.flatten_with_path(dyn)[0]:
        if not _is_number(v):
            try:
                hash(v)
            except TypeError:
                where = tree.keystr(path[2:])
                arg = f"argument {path[1]!r}" if len(path) > 1 else "an argument"
                return (
                    f"jit: {arg} has a leaf{' at ' + where if where else ''} of type "
                    f"{type(v).__name__}, which is not a number and not hashable. Non-number leaves "
                    "are static (part of the cache key, compared by value), so they must be "
                    "hashable; pass such data through a closure or make it a tuple."
                )
    return "jit: an argument is not hashable"


def jit(
    f: Callable[..., Any],
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    cache_limit: int = DEFAULT_CACHE_LIMIT,
) -> Jitted:
    """Compile ``f``: trace it once per input structure, then replay it on new values.

    The first call with a given structure of arguments (pytree containers,
    dict keys, static values) runs ``f`` once on fresh variables, records
    every node it makes, and compiles the nodes its outputs need into
    straight-line Python. Every later call with that structure runs only the
    compiled replay on the new numbers. Results equal ``f``'s eager results
    bit for bit: the replay performs the same IEEE operations in the same
    order, with the same forward functions as the primitives.

    - **Leaves.** Number leaves of the arguments are traced (their values may
      change from call to call). Other leaves (strings, bools, ``None``
      fields, hashable objects) are static: part of the cache key, compared
      by type and value; a new value traces again. Arguments in
      ``static_argnums`` (by position, or by name when passed by keyword) and
      ``static_argnames`` are static as a whole.
    - **Results.** ``f`` may return a pytree of nodes and numbers, such as
      ``value_and_grad``'s ``(value, grads)``. Node leaves come back as floats,
      as from ``value_and_grad`` at the outermost level; other leaves come back
      as they were returned during tracing. A generator cannot be jitted.
    - **Composing.** ``jit(value_and_grad(loss))`` compiles the forward and the
      backward pass together; ``grad`` (at any depth) inside a jitted function
      works, and so does ``jit`` inside ``grad`` inside ``jit``. A jitted
      function called inside ``grad``, inside another jitted function's trace,
      or inside ``debug_nans`` (or called on nodes) simply runs ``f`` eagerly,
      so the enclosing transform sees every op.
    - **Branches.** ``relu``, ``abs``, ``sign``, ``step``, ``maximum`` and
      :func:`fungrad.where` choose from the new values at every replay. Python
      control flow on a traced value (``if x > 0:``, ``bool(x)``,
      ``float(x)``, ``x < y``) raises ``TypeError`` while tracing, instead of
      freezing one branch: rewrite it with ``fg.where(c, a, b)``, ``fg.relu``
      or ``abs``.
    - **Constants.** Numbers, nodes made outside the trace (closed-over nodes,
      which act as constants under ``jit``, as under ``grad``) and leaves made
      with ``fg.var`` inside ``f`` are baked into the replay with the value they
      had when it was traced. Reading ``.value`` of a traced node inside ``f``
      cannot be intercepted: the traced value is baked into the replay, and
      later calls silently reuse it. Use :func:`fungrad.stop_gradient` for a
      value that should not be differentiated but must follow the inputs.
    - **Cache.** Replays are cached per function (``jit(f)`` twice on the same
      ``f`` shares one cache, held weakly so that ``f`` can still be
      collected), at most ``cache_limit`` of them, least recently used first
      out: ``cache_size()``, ``clear_cache()``, ``cache_info()``. A lock
      makes concurrent first calls compile once.

    >>> import fungrad as fg
    >>> f = fg.jit(lambda x: fg.relu(x) + abs(x) + fg.where(x, 1.0, 2.0))
    >>> f(1.0), f(-1.0)      # traced at 1.0; the branches follow the new value
    (3.0, 3.0)
    >>> g = fg.jit(fg.grad(fg.grad(fg.sin)))
    >>> g(0.5) == fg.grad(fg.grad(fg.sin))(0.5)
    True
    >>> fg.jit(lambda x: x if x > 0 else -x)(2.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: > of a traced node under fungrad.jit: ...
    >>> fg.jit(lambda x, mode: x * 2 if mode == "double" else x, static_argnames="mode")(3.0, mode="double")
    6.0
    """
    if not callable(f):
        raise TypeError(f"jit: expected a function, got {type(f).__name__} {f!r:.60}")
    if inspect.isgeneratorfunction(f) or inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f):
        raise TypeError(
            f"jit: {getattr(f, '__qualname__', f)!r} is a generator (or async) function: its body runs "
            "after the call returns, outside the trace, so it cannot be compiled. Return a list instead"
        )
    if isinstance(static_argnums, int) and not isinstance(static_argnums, bool):
        sn: tuple[int, ...] = (static_argnums,)
    elif isinstance(static_argnums, (tuple, list)):
        sn = tuple(static_argnums)
    else:
        raise TypeError(f"jit: static_argnums must be an int or a tuple of ints, got {static_argnums!r:.60}")
    for a in sn:
        if isinstance(a, bool) or not isinstance(a, int):
            raise TypeError(f"jit: static_argnums must be an int or a tuple of ints, got {static_argnums!r:.60}")
    names = (static_argnames,) if isinstance(static_argnames, str) else static_argnames
    if not isinstance(names, (tuple, list)) or not all(isinstance(k, str) for k in names):
        raise TypeError(f"jit: static_argnames must be a str or a tuple of str, got {static_argnames!r:.60}")
    if isinstance(cache_limit, bool) or not isinstance(cache_limit, int) or cache_limit < 1:
        raise ValueError(f"jit: cache_limit must be a positive int, got {cache_limit!r:.60}")
    return Jitted(f, sn, tuple(names), cache_limit)
