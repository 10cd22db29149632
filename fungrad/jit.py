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
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, NamedTuple, Sequence

from . import autodiff, codegen, expr, tree
from .expr import Node

__all__ = ["jit", "Jitted", "CacheInfo", "DEFAULT_CACHE_LIMIT"]

_NUM = object()  # marks a numeric (traced) leaf in a cache key


class _Entry(NamedTuple):
    run: Callable[[list[float]], list[Any]]
    build: Callable[[list[Any]], Any]  # output leaves -> the output pytree
    info: dict[str, Any]


# The containers this near the root are rebuilt by direct calls, the ones
# below by tree.unflatten's loop: a pytree may nest past the recursion limit.
_BUILD_DEPTH = 16


def _builder(td: tree.TreeDef, depth: int = 0) -> Callable[[list[Any]], Any]:
    """``tree.unflatten(td, leaves)``, as direct calls on the leaves (a step's output is rebuilt every call)."""
    kind, ch = td.kind, td.children
    if kind == tree.LEAF:
        return lambda o: o[0]
    if (kind == tree.LIST or kind == tree.TUPLE) and all(c.kind == tree.LEAF for c in ch):
        return list if kind == tree.LIST else tuple
    if depth >= _BUILD_DEPTH or len(ch) > 64 or kind == tree.NONE:
        return lambda o: tree.unflatten(td, o)
    parts: list[tuple[Callable[[list[Any]], Any] | None, int, int]] = []
    off = 0
    for c in ch:
        # a leaf is read by its index (None), not built from a slice of one
        parts.append((None if c.kind == tree.LEAF else _builder(c, depth + 1), off, off + c.num_leaves))
        off += c.num_leaves
    if kind == tree.LIST:
        return lambda o: [o[i] if b is None else b(o[i:j]) for b, i, j in parts]
    if kind == tree.TUPLE:
        return lambda o: tuple([o[i] if b is None else b(o[i:j]) for b, i, j in parts])
    aux = td.aux
    if kind == tree.DICT:
        return lambda o: {k: o[i] if b is None else b(o[i:j]) for k, (b, i, j) in zip(aux, parts)}
    # a class: its entry is looked up at each call, as tree.unflatten does (it may be registered anew)
    kinds, entry_for = tree._kinds, tree._entry_for

    def build(o: list[Any]) -> Any:
        e = kinds.get(kind)
        if e is None:
            e = entry_for(kind)
        return e.unflatten(aux, [o[i] if b is None else b(o[i:j]) for b, i, j in parts])

    return build


_is_number = expr.real_number


# --------------------------------------------------------------------------
# The transform


class _OnNodes(Exception):
    pass


def _walk(x: Any, key: list[Any], xs: list[float]) -> None:
    """Append the cache key tokens of ``x`` to ``key`` and its numbers to ``xs``.

    The leaves come in :func:`fungrad.tree.flatten` order (it uses the same
    children), but no ``TreeDef`` is built: on a cache hit, building and
    hashing one cost more than the whole replay of a small model. An
    explicit stack, not recursion, so a pytree may nest to any depth.
    """
    top = x
    todo = [x]
    pop = todo.pop
    kinds = tree._kinds
    check_at: float = tree._CYCLE_CHECK_AT
    while todo:
        x = pop()
        c = x.__class__
        if c is float:
            xs.append(x)
            key.append(_NUM)
            continue
        if len(key) >= check_at:
            check_at = tree._check_acyclic(top)
        if c is list or c is tuple:
            x0: Any = x[0] if x else None
            c0 = x0.__class__
            if c0 is float and all([v.__class__ is float for v in x]):
                # a row of floats (an example's features): one token, and
                # no trip through the loop per number
                xs.extend(x)
                key.append((c, len(x), _NUM))
            elif (c0 is list or c0 is tuple) and _rows(x, c0, xs):
                # rows of numbers of one length (a data set): one token
                key.append((c, len(x), c0, len(x0), _NUM))
            elif x and _is_number(x0) and all([_is_number(v) for v in x]):
                # ints among the floats: the same row, so the same cache entry
                xs.extend([expr._check_number(v, "jit") for v in x])
                key.append((c, len(x), _NUM))
            else:
                key.append((c, len(x)))
                todo.extend(x[::-1])  # the first item is walked first
        elif c is dict:
            keys = tuple(x)
            key.append((c, keys if all([k.__class__ is str for k in keys]) else tree._typed(keys)))
            todo.extend(reversed(x.values()))
        elif c is Node:
            raise _OnNodes
        else:
            # the class's kind first, as tree.flatten looks it up: a model's
            # classes are containers, and cost no test for being a number
            e = kinds.get(c, _NO_KIND)
            if e is _NO_KIND:
                e = tree._entry_for(c)
            if e is None:
                if _is_number(x):
                    xs.append(expr._check_number(x, "jit"))
                    key.append(_NUM)
                else:
                    key.append(tree._static_key(x, "jit"))  # a static leaf, compared by type and value
            elif e is tree.NONE:
                key.append((e, None, 0))
            else:
                children, aux = e.flatten(x)
                if aux is not None and not tree._only_strings(aux):
                    aux = tree._static_key(aux, "jit")  # True and 1, 0.0 and -0.0 are equal by ==: tell them apart
                key.append((c, aux, len(children)))
                todo.extend(children[::-1])


_NO_KIND = object()


def _rows(x: list[Any] | tuple[Any, ...], c0: Any, xs: list[float]) -> bool:
    # whether x holds rows of class c0, all as long as the first, of numbers
    # only; if so, their numbers (row by row, flatten's order) go into xs
    k = len(x[0])
    if not all([r.__class__ is c0 and len(r) == k for r in x]):
        return False
    flat = [v for r in x for v in r]
    if all([v.__class__ is float for v in flat]):
        xs.extend(flat)
        return True
    if all([_is_number(v) for v in flat]):
        xs.extend([expr._check_number(v, "jit") for v in flat])
        return True
    return False


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
_caches = tree._PerFunction()

DEFAULT_CACHE_LIMIT = 256


def _shared_cache(f: Callable[..., Any], options: Any, limit: int) -> _Cache:
    # no lock: setdefault is atomic, and a lock that a KeyboardInterrupt
    # caught between its acquire and its release would hang every later jit
    per_f = _caches.get(f, dict)
    if per_f is None:  # not weakly referable (a builtin): a cache of its own
        return _Cache(limit)
    c = per_f.get((options, limit))
    if c is None:
        c = per_f.setdefault((options, limit), _Cache(limit))
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
        >>> len(info), info.limit, info.misses, info.evictions, info[0]["nodes"]   # nodes: x and x * k
        (2, 2, 3, 1, 2)
        """
        c = self._cache
        out = CacheInfo(dict(e.info) for e in list(c.entries.values()))
        out.limit, out.hits, out.misses, out.evictions = c.limit, c.hits, c.misses, c.evictions
        return out

    @functools.cached_property
    def _static_names(self) -> tuple[frozenset[str], tuple[int, ...]]:
        # Static positional parameters may be passed by keyword, and static
        # named ones by position: (the names static by keyword, the positions
        # of static_argnames' parameters)
        names = set(self.static_argnames)
        try:
            ps = list(inspect.signature(self.fun).parameters.values())
        except (TypeError, ValueError):
            return frozenset(names), ()
        pos = [p.name for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for a in self.static_argnums:
            if -len(pos) <= a < len(pos):
                names.add(pos[a])
        return frozenset(names), tuple(i for i, k in enumerate(pos) if k in self.static_argnames)

    def _partition(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[Any, Any], Any]:
        """(the dynamic arguments as one pytree, the static ones by position or name, their cache key)."""
        sn = self.static_argnums
        if not sn and not self.static_argnames:
            return (args, kwargs), {}, ()
        n = len(args)
        statics: dict[Any, Any] = {}
        names, by_name = self._static_names
        for a in by_name:
            if a < n:
                statics[a] = args[a]
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
        key = tuple(
            sorted(((k, tree._static_key(v, "jit")) for k, v in statics.items()), key=lambda kv: (isinstance(kv[0], str), kv[0]))
        )
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
        xs: list[float] = []
        cache = self._cache
        try:
            dyn, statics, skey = self._partition(args, kwargs)
            sig: list[Any] = [skey]
            try:
                _walk(dyn, sig, xs)
            except _OnNodes:
                dyn = _OnNodes  # called on nodes: eager, below
            else:
                key = tuple(sig)
                try:
                    entry = cache.get(key)
                except TypeError:
                    raise TypeError(_unhashable(dyn)) from None
        except RecursionError:
            # Python compares and hashes nested tuples recursively
            raise ValueError(
                "jit: a static argument (or a static field) nests too deep to be part of the cache key; "
                "pass it through a closure, or flatten it"
            ) from None
        if dyn is _OnNodes:
            return self.fun(*args, **kwargs)
        if entry is None:
            # compiled once under the cache's lock; not with a with-block, whose
            # release a KeyboardInterrupt can skip, hanging every other thread
            lock = cache.lock
            try:
                try:
                    lock.acquire()
                    entry = cache.entries.get(key)
                    if entry is None:
                        # the collector's young threshold raised, as for grad: the
                        # trace and the code generator make hundreds of thousands
                        # of objects that reference counting frees anyway
                        entry = autodiff._outermost(self._compile, dyn, statics, xs)
                        cache.put(key, entry)
                finally:
                    if lock._is_owned():  # type: ignore[attr-defined]
                        lock.release()
            except BaseException:
                # an interrupt can land in the finally, before the release
                if lock._is_owned():  # type: ignore[attr-defined]
                    lock.release()
                raise
        return entry.build(entry.run(xs))

    def _trace(self, dyn: Any, statics: dict[Any, Any], xs: list[float]) -> tuple[list[Node], list[Node], Any]:
        leaves, td = tree.flatten(dyn)
        t = expr.new_level(debug=False, jit=True, fuse=True)  # nothing differentiates a jit trace
        tape: list[Node] = t.tape  # type: ignore[assignment]
        inputs, result = expr.run_level(t, self._run, td, leaves, statics, xs)
        level = t.level

        def traced(x: Any) -> bool:
            # a node of this trace, or of a transform begun inside it (a grad's aux)
            return x.__class__ is Node and x.level >= level

        name = getattr(self.fun, "__qualname__", self.fun)
        leaves, td = tree.flatten(result)
        for i, o in enumerate(leaves):
            if o.__class__ is not Node and not _is_number(o) and tree._reaches([o], traced):
                raise TypeError(
                    f"jit: output leaf {i} of {name!r} is a "
                    f"{type(o).__name__} that holds traced nodes. jit returns a leaf that is not a number as "
                    "it was when traced, so every call would return these nodes of the first trace. Make "
                    "its class a pytree (an attrs class, or a class registered as in fungrad.tree), or return the numbers."
                )
        if tree._reaches([rec[1] for rec in td._span() if rec[1] is not None], traced):
            raise TypeError(
                f"jit: the output of {name!r} has a traced node in its structure: a dict key or a static "
                "field (fungrad.tree.static). jit rebuilds the structure as it was when traced, so every call "
                "would return that node of the first trace. Make it a leaf (a field that is not static, a "
                "dict value), or return the numbers."
            )
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
        trace_s = time.perf_counter() - t0
        prog = codegen.compile_graph(tape, inputs, outs)
        del tape, result
        return _Entry(prog.run, _builder(out_td), {**prog.info, "trace_s": trace_s})  # type: ignore[arg-type]

    def source(self, *args: Any, **kwargs: Any) -> str:
        """The Python code that replays ``f`` for arguments shaped like these (for reading).

        Inputs are unpacked from ``xs`` into ``x<k>``, outputs are stored into ``o[k]``, a value used
        more than once has a register ``r<k>`` (reused once the value is
        dead), a value used once is folded into its user's expression, and
        ops other than ``+ - *`` (and ``where``) call their primitive's forward.

        >>> import fungrad as fg
        >>> print(fg.jit(lambda x, y: fg.tanh(x * y) + 1.0).source(2.0, 3.0))
        def _s0(xs, o, R):
            x0, x1 = xs
            o[0] = _f_tanh(x0 * x1) + 1.0
        <BLANKLINE>
        """
        dyn, statics, _ = self._partition(args, kwargs)
        xs: list[float] = []
        _walk(dyn, [], xs)
        tape, inputs, result = self._trace(dyn, statics, xs)
        outs, _ = tree.flatten(result)
        return "\n".join(codegen.compile_graph(tape, inputs, outs, compile=False).source)


def _argument_at(path: tuple[Any, ...]) -> str:
    # a path into (args, kwargs): "argument 1 at ['a']"
    where = tree.keystr(path[2:])
    return (f"argument {path[1]!r}" if len(path) > 1 else "an argument") + (f" at {where}" if where else "")


def _unhashable(dyn: Any) -> str:
    for path, v in tree.flatten_with_path(dyn)[0]:
        if not _is_number(v):
            try:
                hash(v)
            except TypeError:
                arg, _, where = _argument_at(path).partition(" at ")
                return (
                    f"jit: {arg} has a leaf{' at ' + where if where else ''} of type "
                    f"{type(v).__name__}, which is not a number and not hashable. Non-number leaves "
                    "are static (part of the cache key, compared by value), so they must be "
                    "hashable; pass such data through a closure or make it a tuple."
                )
    # not a leaf: the static fields of a class (a dict or a list in a field marked static)
    todo: list[tuple[tuple[Any, ...], Any]] = [((), dyn)]
    while todo:
        path, x = todo.pop()
        c = tree.children(x)
        if c is None:
            continue
        _, aux, ch, keys = c
        try:
            hash(aux)
        except TypeError:
            return (
                f"jit: {_argument_at(path)} is a {type(x).__name__} whose static fields "
                f"{aux!r:.80} are not hashable. Static fields are part of the cache key, compared by value, "
                "so they must be hashable: make them tuples, or fields that are not static."
            )
        todo.extend((path + (k,), v) for k, v in zip(keys, ch))
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
      ``static_argnums`` and ``static_argnames`` are static as a whole, whether
      passed by position or by keyword.
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
      collected; two callable objects that are equal but not the same keep
      their own), at most ``cache_limit`` of them, least recently used first
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
    TypeError: > of a traced node under fungrad.jit, vmap or export: ...
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
