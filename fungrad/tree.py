"""Pytrees: nested containers of leaves that fungrad can flatten and rebuild.

A pytree is a leaf or a container of pytrees. Containers are ``None`` (no
leaves), tuples, lists, dicts, namedtuples, attrs classes, and any class given
to :func:`register`. Everything else, numbers and fungrad nodes included, is a
leaf. Fields of an attrs class whose metadata says ``static=True`` belong to
the structure, not to the leaves (layer sizes, activation names).

Every walk here is a loop over an explicit stack, so a tree may be nested as
deeply as memory allows (no recursion limit).

The registry here is also the allowlist of :mod:`fungrad.checkpoint`: only
registered types (and the builtin containers) can be written and read back.

>>> import fungrad as fg
>>> leaves, treedef = fg.tree.flatten({"w": [1.0, 2.0], "b": 3.0})
>>> leaves
[1.0, 2.0, 3.0]
>>> fg.tree.unflatten(treedef, [x * 10 for x in leaves])
{'w': [10.0, 20.0], 'b': 30.0}
"""

from __future__ import annotations

import collections
import enum
import functools
import inspect
import itertools
import math
import numbers
import operator
import struct
import types
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple

import attrs

__all__ = [
    "describe",
    "number",
    "Kind",
    "LIST",
    "TUPLE",
    "DICT",
    "NONE",
    "LEAF",
    "TreeDef",
    "Children",
    "children",
    "flatten",
    "flatten_with_path",
    "unflatten",
    "map",
    "leaves",
    "structure",
    "register",
    "registered",
    "lookup",
    "type_name",
    "keystr",
    "is_leaf",
    "static",
]

Path = tuple[Any, ...]


class Kind(str, enum.Enum):
    """The kinds of pytree node that are not registered classes.

    A kind is also the string it stands for, so code that compares
    ``treedef.kind == "list"`` keeps working.

    >>> import fungrad as fg
    >>> fg.tree.structure([1.0]).kind is fg.tree.LIST, fg.tree.LIST == "list"
    (True, True)
    """

    LIST = "list"
    TUPLE = "tuple"
    DICT = "dict"
    NONE = "None"
    LEAF = "*"

    # equal to its string, so it must hash like it too
    __hash__ = str.__hash__
    __str__ = str.__str__


LIST, TUPLE, DICT, NONE, LEAF = Kind.LIST, Kind.TUPLE, Kind.DICT, Kind.NONE, Kind.LEAF
# the old private names, still used by other modules
_LIST, _TUPLE, _DICT, _NONE, _LEAF = LIST, TUPLE, DICT, NONE, LEAF


class _Entry(NamedTuple):
    flatten: Callable[[Any], tuple[list[Any], Any]]
    unflatten: Callable[[Any, list[Any]], Any]
    keys: Callable[[Any, Any, list[Any]], list[Any]]  # (obj, aux, children) -> one path key per child
    fields: tuple[list[str], list[str]] | None = None  # (children, static) names, for classes flattened by field


_registry: dict[type, _Entry] = {}


def static(default: Any = attrs.NOTHING, **kwargs: Any) -> Any:
    """An attrs field that is part of a class's structure rather than a leaf.

    >>> import attrs, fungrad as fg
    >>> @attrs.frozen
    ... class Scaled:
    ...     w: float
    ...     unit: str = fg.tree.static(default="m")
    >>> fg.tree.leaves(Scaled(2.0))
    [2.0]
    """
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata["static"] = True
    return attrs.field(default=default, metadata=metadata, **kwargs)


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def _takes_in_order(cls: type, names: list[str]) -> bool:
    # whether cls(*values) binds exactly as cls(**dict(zip(names, values))):
    # the class is made by type's own call, and its __new__ and __init__
    # (each, unless object's) take these names, in this order, each one by
    # position or by keyword
    if type(cls).__call__ is not type.__call__:
        return False
    new, init = cls.__new__, getattr(cls, "__init__")  # noqa: B009 - read from the class, not an instance
    methods = [m for m, base in ((new, object.__new__), (init, object.__init__)) if m is not base]
    if not methods:
        return False
    for m in methods:
        try:
            params = list(inspect.signature(m).parameters.values())[1:]  # without cls or self
        except (TypeError, ValueError):
            return False
        if [p.name for p in params] != names or any(p.kind is not p.POSITIONAL_OR_KEYWORD for p in params):
            return False
    return True


def _attrs_entry(cls: type) -> _Entry:
    fields = attrs.fields(cls)
    dyn = [f.name for f in fields if not f.metadata.get("static")]
    stat = [f.name for f in fields if f.metadata.get("static")]
    init_names = {f.name: (f.alias or f.name.lstrip("_")) for f in fields}
    no_init = [f.name for f in fields if not f.init]
    keys = [_Attr(n) for n in dyn]

    # attrgetter reads the fields in C: jit flattens its arguments and rebuilds
    # its outputs on every call, and a model is dozens of these objects
    get_dyn = operator.attrgetter(*dyn) if dyn else None
    get_stat = operator.attrgetter(*stat) if stat else None
    one_dyn, one_stat = len(dyn) == 1, len(stat) == 1

    def flat(obj: Any) -> tuple[list[Any], Any]:
        children = [] if get_dyn is None else [get_dyn(obj)] if one_dyn else list(get_dyn(obj))
        if get_stat is None:
            return children, ()
        if one_stat:
            return children, (_hashable(get_stat(obj)),)
        return children, tuple([_hashable(v) for v in get_stat(obj)])

    dyn_init = [init_names[n] for n in dyn]
    stat_init = [init_names[n] for n in stat]
    positional = not no_init and _takes_in_order(cls, dyn_init + stat_init)

    def unflat(aux: Any, children: list[Any]) -> Any:
        if positional:  # the class takes its fields by position, in this order: the same call, made faster
            return cls(*children, *aux)
        if not no_init:
            kw = dict(zip(dyn_init, children))
            kw.update(zip(stat_init, aux))
            return cls(**kw)
        kw = dict(zip(dyn, children))
        kw.update(zip(stat, aux))
        # fields without an init argument are set after construction
        obj = cls(**{init_names[k]: v for k, v in kw.items() if k not in no_init})
        for k in no_init:
            object.__setattr__(obj, k, kw[k])
        return obj

    return _Entry(flat, unflat, lambda obj, aux, ch: keys, (dyn, stat))


def _namedtuple_entry(cls: type) -> _Entry:
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]  # checked by _is_namedtuple
    keys = [_Attr(n) for n in fields]
    return _Entry(
        lambda obj: (list(obj), None),
        lambda aux, children: cls(*children),
        lambda obj, aux, ch: keys,
        (list(fields), []),
    )


def _typed(v: Any) -> Any:
    """A static value as a key: equal values of other types (1, 1.0, True) or signs (0.0, -0.0) differ."""
    c = v.__class__
    if c is float:
        return (c, struct.pack("<d", v))  # exact: -0.0 is not 0.0, nor -nan nan
    if c is str or v is None or c is int or c is bool:
        return (c, v)
    if isinstance(v, tuple):  # namedtuples too: P(1) and P(True) are equal
        return (c, tuple([_typed(x) for x in v]))
    if c is frozenset:
        return (c, frozenset([_typed(x) for x in v]))
    if isinstance(v, numbers.Number) and not isinstance(v, numbers.Integral):
        # other real and complex numbers (NumPy's, Decimal, complex) by their
        # floats' bits too, where they convert: == cannot tell -0.0 from 0.0
        try:
            z = complex(v)  # type: ignore[call-overload]  # a Number that converts; else the except below
        except (TypeError, ValueError, OverflowError):
            return (c, v)
        return (c, struct.pack("<dd", z.real, z.imag), repr(v))
    return (c, v)


def _static_key(v: Any, who: str) -> Any:
    """:func:`_typed` of a leaf that a transform takes as static; an array or tensor is refused.

    An array hashes by identity (a tensor) or not at all (NumPy): taken as a
    static value, a change of its numbers in place would replay the old ones.
    NumPy's scalars cannot change, and are static values like any number.
    """
    c = v.__class__
    if isinstance(v, tuple):  # the static fields of a class, a static argument's items: as _typed does
        return (c, tuple([_static_key(x, who) for x in v]))
    if hasattr(v, "dtype") and hasattr(v, "shape") and hasattr(c, "__setitem__"):
        raise TypeError(
            f"{who}: an argument holds a {c.__module__}.{c.__qualname__} of shape {tuple(v.shape)}; "
            f"{who} traces numbers, and would take an array as a static value. Pass its numbers "
            "(x.tolist()), or use fg.vmap's batch axis or fg.export for arrays"
        )
    return _typed(v)


# callables whose == is identity (of the function, or of a method's object and function)
_SAME_IF_EQUAL = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.BuiltinMethodType)


def _drop(table: dict[int, Any], k: int, ref: Any) -> None:
    if table.get(k, (None,))[0] is ref:
        table.pop(k, None)


class _PerFunction:
    """State kept per function (jit's and vmap's caches), held weakly: it goes with the function.

    A function or bound method is found by ``==``, which is its identity
    (``m.step`` made twice is one method); any other callable by identity,
    since two equal objects (an attrs model holding ``0.0``, another ``-0.0``)
    may compute differently. No lock: every change is one atomic store, and
    a lock that a KeyboardInterrupt caught between its acquire and its
    release would hang every later call.
    """

    def __init__(self) -> None:
        self.by_eq: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self.by_id: dict[int, tuple[Any, Any]] = {}

    def get(self, f: Any, make: Callable[[], Any]) -> Any:
        """``f``'s state, made by ``make()`` at first; ``None`` if ``f`` cannot be held weakly."""
        if type(f).__eq__ is object.__eq__ or isinstance(f, _SAME_IF_EQUAL):
            try:
                v = self.by_eq.get(f)
                return v if v is not None else self.by_eq.setdefault(f, make())
            except TypeError:  # not weakly referable (a builtin)
                return None
        k = id(f)
        e = self.by_id.get(k)
        if e is not None and e[0]() is f:
            return e[1]
        try:
            ref = weakref.ref(f, functools.partial(_drop, self.by_id, k))
        except TypeError:
            return None
        e = self.by_id.setdefault(k, (ref, make()))
        if e[0]() is not f:  # a dead object's entry, not yet dropped
            e = self.by_id[k] = (ref, make())
        return e[1]

    def __getitem__(self, f: Any) -> Any:
        """``f``'s state, if it has one (``KeyError`` otherwise; nothing is made)."""
        if type(f).__eq__ is object.__eq__ or isinstance(f, _SAME_IF_EQUAL):
            return self.by_eq[f]
        e = self.by_id.get(id(f))
        if e is None or e[0]() is not f:
            raise KeyError(f)
        return e[1]


def _hashable(v: Any) -> Any:
    """Static values go into the (hashable) tree structure; lists become tuples, at any depth."""
    if not isinstance(v, list):
        return v
    # a stack of (the rest of a list, its items done so far, its id): a loop,
    # not a recursion, so that a deep static value cannot overflow the stack
    stack: list[tuple[Iterator[Any], list[Any], int]] = [(iter(v), [], id(v))]
    open_ids = {id(v)}
    while True:
        rest, done, _ = stack[-1]
        for x in rest:
            if isinstance(x, list):
                if id(x) in open_ids:
                    raise ValueError("a static field holds a list that contains itself")
                stack.append((iter(x), [], id(x)))
                open_ids.add(id(x))
                break
            done.append(x)
        else:
            open_ids.discard(stack.pop()[2])
            if not stack:
                return tuple(done)
            stack[-1][1].append(tuple(done))


def register(
    cls: type,
    flatten: Callable[[Any], tuple[Iterable[Any], Any]] | None = None,
    unflatten: Callable[[Any, list[Any]], Any] | None = None,
) -> type:
    """Register ``cls`` as a pytree container; returns ``cls`` so it works as a decorator.

    attrs classes and namedtuples need no functions: their fields are the
    children (attrs fields marked :func:`static` go into the structure).
    Other classes give ``flatten(obj) -> (children, aux)`` and
    ``unflatten(aux, children) -> obj``; ``aux`` must be hashable.
    Registering also lets :mod:`fungrad.checkpoint` save and load the class.

    >>> import fungrad as fg
    >>> class Pair:
    ...     def __init__(self, a, b): self.a, self.b = a, b
    >>> _ = fg.tree.register(Pair, lambda p: ((p.a, p.b), None), lambda aux, ch: Pair(*ch))
    >>> fg.tree.leaves([Pair(1.0, 2.0), 3.0])
    [1.0, 2.0, 3.0]
    """
    if not isinstance(cls, type):
        raise TypeError(f"register expects a class, got {cls!r}")
    if flatten is None and unflatten is None:
        if attrs.has(cls):
            entry = _attrs_entry(cls)
        elif _is_namedtuple(cls):
            entry = _namedtuple_entry(cls)
        else:
            raise TypeError(
                f"register({cls.__qualname__}) needs flatten and unflatten functions: "
                "only attrs classes and namedtuples are registered without them"
            )
    elif flatten is None or unflatten is None:
        raise TypeError("register needs both flatten and unflatten, or neither")
    else:
        fl = flatten

        def flat(obj: Any) -> tuple[list[Any], Any]:
            children, aux = fl(obj)
            return list(children), aux

        entry = _Entry(flat, unflatten, lambda obj, aux, ch: list(range(len(ch))))
    _registry[cls] = entry
    _kinds.pop(cls, None)
    return cls


def registered(cls: type) -> bool:
    """Whether ``cls`` was given to :func:`register` (builtin containers are not listed).

    >>> import fungrad as fg
    >>> fg.tree.registered(fg.nn.MLP), fg.tree.registered(dict)
    (True, False)
    """
    return cls in _registry


def type_name(cls: type) -> str:
    """The ``module.QualName`` under which a registered class is known.

    >>> import fungrad as fg
    >>> fg.tree.type_name(fg.nn.MLP)
    'fungrad.nn.MLP'
    """
    return f"{cls.__module__}.{cls.__qualname__}"


def lookup(name: str) -> type | None:
    """The registered class called ``name`` (see :func:`type_name`), or ``None``.

    Only classes registered so far are found; nothing is imported. Of two
    classes of one name (a class defined again, as when a notebook cell runs
    again), the one registered last is found.

    >>> import fungrad as fg
    >>> from fungrad.nn import MLP    # importing fungrad.nn registers its models
    >>> fg.tree.lookup("fungrad.nn.MLP") is MLP, fg.tree.lookup("os.system")
    (True, None)
    """
    # the latest registered of that name: a class defined again (a notebook
    # cell run again) replaces the one before it
    for cls in reversed(_registry):
        if type_name(cls) == name:
            return cls
    return None


def _field_names(cls: type) -> tuple[list[str], list[str]] | None:
    """(child fields, static fields) of a class flattened by its fields, else None.

    ``None`` for classes registered with their own flatten functions, whose
    children are whatever those functions say.
    """
    e = _entry_for(cls)
    if e is None or isinstance(e, Kind):
        return None
    return e.fields


def is_leaf(x: Any) -> bool:
    """Whether ``x`` is a leaf (not a container) of a pytree.

    >>> import fungrad as fg
    >>> fg.tree.is_leaf(1.0), fg.tree.is_leaf([1.0]), fg.tree.is_leaf(fg.var(1.0))
    (True, False, True)
    """
    return _entry_for(type(x)) is None


def _entry_for(cls: type) -> Any:
    # what a class is (leaf, builtin container or entry) is looked up once per
    # class: flattening a model visits hundreds of float leaves per step
    try:
        return _kinds[cls]
    except KeyError:
        pass
    e = _classify(cls)
    _kinds[cls] = e
    return e


def _classify(cls: type) -> Any:
    if getattr(cls, "__fungrad_leaf__", False):
        return None
    if cls is list:
        return LIST
    if cls is tuple:
        return TUPLE
    if cls is dict:
        return DICT
    if cls is type(None):
        return NONE
    e = _registry.get(cls)
    if e is not None:
        return e
    if attrs.has(cls):
        # unregistered attrs classes and namedtuples are containers too;
        # registering them only matters for checkpoints
        e = _auto[cls] = _attrs_entry(cls)
        return e
    if _is_namedtuple(cls):
        e = _auto[cls] = _namedtuple_entry(cls)
        return e
    return None


_MISSING = object()
_auto: dict[type, _Entry] = {}
_kinds: dict[type, Any] = {float: None, int: None}


# A TreeDef is stored flat: one record (kind, aux, number of children) per
# node of the tree, in preorder. Comparing, hashing and printing walk that
# tuple with loops, where attrs' generated methods on nested TreeDefs would
# recurse once per level.
_LEAF_REC = (LEAF, None, 0)
_NONE_REC = (NONE, None, 0)
# shared records of short lists and tuples: fewer objects for the collector, and equal ones are identical
_SEQ_RECS = {k: [(k, None, n) for n in range(32)] for k in (Kind.LIST, Kind.TUPLE)}


def _only_strings(x: Any) -> bool:
    # a tuple of str and None (dict keys, most static fields): two equal by == are of one type.
    # A loop, not all() over a list: jit asks this of every object of its arguments on every call
    if x.__class__ is not tuple:
        return False
    for v in x:
        if v is not None and v.__class__ is not str:
            return False
    return True


class TreeDef:
    """The structure of a pytree: its container types, keys and static fields.

    Two trees have equal (and equally hashing) ``TreeDef`` when they differ
    only in their leaves. ``kind`` is a :class:`Kind` or the registered class,
    ``aux`` the dict keys or a class's static fields, ``children`` the
    ``TreeDef`` of each child and ``num_leaves`` the number of leaves.
    ``TreeDef(kind, aux, children)`` builds one by hand; the leaf count is
    computed (a fourth argument, once ``num_leaves``, is ignored).

    >>> import fungrad as fg
    >>> td = fg.tree.structure({"a": [1.0, 2.0], "b": None})
    >>> td, td.kind, td.aux, td.num_leaves
    ({'a': [*, *], 'b': None}, <Kind.DICT: 'dict'>, ('a', 'b'), 2)
    >>> td.children[0]
    [*, *]
    """

    __slots__ = ("_recs", "_lo", "_hi", "_nleaves", "_hash", "_kids", "_shared")

    if TYPE_CHECKING:
        # set by _init, through object.__setattr__
        _recs: tuple[Any, ...]
        _lo: int
        _hi: int
        _nleaves: int | None
        _hash: int | None
        _kids: tuple[TreeDef, ...] | None
        _shared: list[Any]

    def __init__(self, kind: Kind | type, aux: Any = None, children: Iterable[TreeDef] = (), num_leaves: Any = None):
        kids = tuple(children)
        if isinstance(kind, str):
            kind = Kind(kind)
        if kind is DICT and (not isinstance(aux, tuple) or len(aux) != len(kids)):
            # unflatten would pair keys and children up to the shorter, dropping the rest
            raise ValueError(
                f"TreeDef: a dict needs one key per child, got {len(kids)} children and the keys {aux!r:.80}"
            )
        if kind is LEAF or kind is NONE:
            recs: tuple[Any, ...] = (_LEAF_REC if kind is LEAF else _NONE_REC,)
        else:
            recs = ((kind, aux, len(kids)),) + tuple(itertools.chain.from_iterable(c._span() for c in kids))
        n = 1 if kind is LEAF else sum(c.num_leaves for c in kids)
        _init(self, recs, 0, len(recs), n, [None])

    # --- what a TreeDef is made of ----------------------------------------

    @property
    def kind(self) -> Any:
        """:class:`Kind` of the root, or its registered class."""
        return self._recs[self._lo][0]

    @property
    def aux(self) -> Any:
        """The dict keys (a tuple), the static fields of a class, or ``None``."""
        return self._recs[self._lo][1]

    @property
    def num_leaves(self) -> int:
        """How many leaves a tree of this structure has."""
        n = self._nleaves
        if n is None:
            n = self._info()[1][self._lo]
            object.__setattr__(self, "_nleaves", n)
        return n

    @property
    def children(self) -> tuple[TreeDef, ...]:
        """The ``TreeDef`` of each child of the root, in order."""
        kids = self._kids
        if kids is None:
            sizes, counts = self._info()
            out = []
            i = self._lo + 1
            for _ in range(self._recs[self._lo][2]):
                j = i + sizes[i]
                out.append(_view(self._recs, i, j, counts[i], self._shared))
                i = j
            kids = tuple(out)
            object.__setattr__(self, "_kids", kids)
        return kids

    def _span(self) -> tuple[Any, ...]:
        r = self._recs
        return r if self._lo == 0 and self._hi == len(r) else r[self._lo : self._hi]

    def _info(self) -> tuple[list[int], list[int]]:
        """(records, leaves) in the subtree of each record: one backward pass, shared by views."""
        info = self._shared[0]
        if info is None:
            recs = self._recs
            sizes = [0] * len(recs)
            counts = [0] * len(recs)
            done: list[tuple[int, int]] = []  # (size, leaves) of finished subtrees
            for i in range(len(recs) - 1, -1, -1):
                rec = recs[i]
                n = rec[2]
                if n:
                    s, c = 1, 0
                    for _ in range(n):
                        ds, dc = done.pop()
                        s += ds
                        c += dc
                else:
                    s, c = 1, 1 if rec is _LEAF_REC or rec[0] is LEAF else 0
                sizes[i], counts[i] = s, c
                done.append((s, c))
            info = self._shared[0] = (sizes, counts)
        return info

    # --- value semantics, without recursion -------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TreeDef):
            return NotImplemented
        if self is other:
            return True
        if self._hi - self._lo != other._hi - other._lo or self._span() != other._span():
            return False
        # equal by ==, but static values True and 1, or 0.0 and -0.0, may give a function other results
        for a, b in zip(self._span(), other._span()):
            if a is b:  # one record (every leaf's): one object is of one type and value
                continue
            x, y = a[1], b[1]
            if x is not y and not (_only_strings(x) and _only_strings(y)) and _typed(x) != _typed(y):
                return False
        return True

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(self._span())
            object.__setattr__(self, "_hash", h)
        return h

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TreeDef is immutable")

    def __reduce__(self) -> Any:
        return _from_records, (self._span(), self.num_leaves)

    def __repr__(self) -> str:
        recs, i, hi = self._recs, self._lo, self._hi
        out: list[str] = []
        stack: list[list[Any]] = []  # open containers: [record, children written so far]
        while i < hi:
            if stack:
                frame = stack[-1]
                if frame[1]:
                    out.append(", ")
                if frame[0][0] is DICT:
                    out.append(f"{frame[0][1][frame[1]]!r}: ")
                frame[1] += 1
            rec = recs[i]
            i += 1
            kind = rec[0]
            if kind is LEAF:
                out.append("*")
            elif kind is NONE:
                out.append("None")
            elif rec[2]:
                out.append(_OPEN.get(kind) or f"{kind.__qualname__}(")
                stack.append([rec, 0])
                continue
            else:
                out.append((_OPEN.get(kind) or f"{kind.__qualname__}(") + _CLOSE.get(kind, ")"))
            # a child is complete: close every container that it completes
            while stack and stack[-1][1] == stack[-1][0][2]:
                done = stack.pop()[0]
                out.append(("," if done[0] is TUPLE and done[2] == 1 else "") + _CLOSE.get(done[0], ")"))
        return "".join(out)


_OPEN = {LIST: "[", TUPLE: "(", DICT: "{"}
_CLOSE = {LIST: "]", TUPLE: ")", DICT: "}"}


def _init(td: TreeDef, recs: tuple[Any, ...], lo: int, hi: int, nleaves: int | None, shared: list[Any]) -> None:
    s = object.__setattr__
    s(td, "_recs", recs)
    s(td, "_lo", lo)
    s(td, "_hi", hi)
    s(td, "_nleaves", nleaves)
    s(td, "_hash", None)
    s(td, "_kids", None)
    s(td, "_shared", shared)


def _view(recs: tuple[Any, ...], lo: int, hi: int, nleaves: int, shared: list[Any]) -> TreeDef:
    td = object.__new__(TreeDef)
    _init(td, recs, lo, hi, nleaves, shared)
    return td


def _from_records(recs: tuple[Any, ...], nleaves: int) -> TreeDef:
    return _view(recs, 0, len(recs), nleaves, [None])


_LEAF_DEF = _from_records((_LEAF_REC,), 1)
_NONE_DEF = _from_records((_NONE_REC,), 0)


class _Attr(str):
    """A path key that is an attribute name (shown as ``.name``)."""


class Children(NamedTuple):
    """What :func:`children` returns for a container."""

    kind: Kind | type
    aux: Any
    children: list[Any]
    keys: list[Any]


def _children(x: Any) -> tuple[Any, Any, list[Any], Callable[[], list[Any]]] | None:
    """(kind, aux, children, keys) of a container, or None for a leaf; ``keys`` is a thunk."""
    cls = type(x)
    e = _entry_for(cls)
    if e is None:
        return None
    if e is LIST:
        return LIST, None, x, lambda: list(range(len(x)))
    if e is TUPLE:
        return TUPLE, None, list(x), lambda: list(range(len(x)))
    if e is DICT:
        keys = tuple(x)
        return DICT, keys, [x[k] for k in keys], lambda: list(keys)
    if e is NONE:
        return NONE, None, [], list
    ch, aux = e.flatten(x)
    return cls, aux, ch, lambda: e.keys(x, aux, ch)


def children(x: Any) -> Children | None:
    """One level of a pytree: ``(kind, aux, children, keys)`` of a container, ``None`` for a leaf.

    ``kind`` is a :class:`Kind` (``LIST``, ``TUPLE``, ``DICT``, ``NONE``) or
    the class of a registered, attrs or namedtuple container. ``aux`` is what
    the structure keeps besides the children: a dict's keys, a class's
    static fields, else ``None``. ``keys`` holds one path key per child (an
    index, a dict key, or an attribute name shown as ``.name`` by
    :func:`keystr`).

    >>> import fungrad as fg
    >>> fg.tree.children({"w": [1.0, 2.0], "b": 0.5})
    Children(kind=<Kind.DICT: 'dict'>, aux=('w', 'b'), children=[[1.0, 2.0], 0.5], keys=['w', 'b'])
    >>> import attrs
    >>> @attrs.frozen
    ... class Lin:
    ...     w: list
    ...     b: float
    ...     act: str = fg.tree.static(default="tanh")
    >>> c = fg.tree.children(Lin([1.0, 2.0], 0.5))
    >>> c.kind is Lin, c.aux, c.children, fg.tree.keystr(c.keys)
    (True, ('tanh',), [[1.0, 2.0], 0.5], '.w.b')
    >>> fg.tree.children(None).children, fg.tree.children(3.0)
    ([], None)
    """
    c = _children(x)
    if c is None:
        return None
    kind, aux, ch, keys = c
    return Children(kind, aux, list(ch), keys())


# A container that holds itself (a = [1.0]; a.append(a)) would make a walk
# run until memory is gone. Looking for that costs a set per walk, so it is
# done only once a walk has gone past this many records, once per walk.
_CYCLE_CHECK_AT = 1 << 20


def _check_acyclic(tree: Any) -> float:
    """Raise ``ValueError`` if a container of ``tree`` holds itself; the next record count to check at."""
    open_ids: set[int] = set()
    todo: list[tuple[Any, bool]] = [(tree, False)]
    while todo:
        x, done = todo.pop()
        if done:
            open_ids.discard(id(x))
            continue
        c = _children(x)
        if c is None or not c[2]:
            continue
        if id(x) in open_ids:
            raise ValueError(f"a pytree holds itself: a {type(x).__name__} is one of its own descendants")
        open_ids.add(id(x))
        todo.append((x, True))
        todo.extend([(ch, False) for ch in c[2]])
    return math.inf


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """The leaves of ``tree`` in order, and its structure.

    >>> import fungrad as fg
    >>> fg.tree.flatten((1.0, {"a": 2.0, "b": None}))
    ([1.0, 2.0], (*, {'a': *, 'b': None}))
    """
    out: list[Any] = []
    recs: list[Any] = []
    leaf, rec = out.append, recs.append
    kinds = _kinds
    todo = [tree]
    pop, push = todo.pop, todo.extend
    check_at: float = _CYCLE_CHECK_AT
    # children go on the stack in reverse, so they come off in order
    while todo:
        x = pop()
        cls = x.__class__
        if cls is float:
            leaf(x)
            rec(_LEAF_REC)
            continue
        e = kinds.get(cls, _MISSING)
        if e is _MISSING:
            e = _entry_for(cls)
        if e is None:
            leaf(x)
            rec(_LEAF_REC)
            continue
        if len(recs) >= check_at:
            check_at = _check_acyclic(tree)
        if e is LIST or e is TUPLE:
            n = len(x)
            rec(_SEQ_RECS[e][n] if n < 32 else (e, None, n))
            push(x[::-1])
        elif e is DICT:
            keys = tuple(x)
            rec((DICT, keys, len(keys)))
            push([x[k] for k in reversed(keys)])
        elif e is NONE:
            rec(_NONE_REC)
        else:
            ch, aux = e.flatten(x)
            rec((cls, aux, len(ch)))
            push(ch[::-1])
    return out, _from_records(tuple(recs), len(out))


def flatten_with_path(tree: Any) -> tuple[list[tuple[Path, Any]], TreeDef]:
    """Like :func:`flatten`, each leaf paired with its path (see :func:`keystr`).

    >>> import fungrad as fg
    >>> pairs, _ = fg.tree.flatten_with_path({"w": [1.0, 2.0]})
    >>> [(fg.tree.keystr(p), v) for p, v in pairs]
    [("['w'][0]", 1.0), ("['w'][1]", 2.0)]
    """
    out: list[tuple[Path, Any]] = []
    recs: list[Any] = []
    # a path is built as a linked list (parent link, key) and turned into a
    # tuple only at a leaf: copying the tuple at every level is quadratic in depth
    todo: list[tuple[Any, Any]] = [(tree, None)]
    check_at: float = _CYCLE_CHECK_AT >> 6  # sooner: a path costs its depth, so a cycle costs its square
    while todo:
        x, link = todo.pop()
        if len(recs) >= check_at:
            check_at = _check_acyclic(tree)
        c = _children(x)
        if c is None:
            keys: list[Any] = []
            while link is not None:
                link, k = link
                keys.append(k)
            keys.reverse()
            out.append((tuple(keys), x))
            recs.append(_LEAF_REC)
            continue
        kind, aux, ch, thunk = c
        if kind is NONE:
            recs.append(_NONE_REC)
            continue
        recs.append((kind, aux, len(ch)))
        ks = thunk()
        todo.extend([(ch[i], (link, ks[i])) for i in range(len(ch) - 1, -1, -1)])
    return out, _from_records(tuple(recs), len(out))


def keystr(path: Path) -> str:
    """A path as Python indexing text: ``['w'][0].bias``.

    >>> import fungrad as fg
    >>> fg.tree.keystr(("layers", 0))
    "['layers'][0]"
    """
    return "".join(f".{k}" if isinstance(k, _Attr) else f"[{k!r}]" for k in path)


def unflatten(treedef: TreeDef, leaves: Iterable[Any]) -> Any:
    """Rebuild a tree of structure ``treedef`` from ``leaves``.

    >>> import fungrad as fg
    >>> _, td = fg.tree.flatten([1.0, (2.0, 3.0)])
    >>> fg.tree.unflatten(td, [4.0, 5.0, 6.0])
    [4.0, (5.0, 6.0)]
    """
    vals = leaves if leaves.__class__ is list else list(leaves)
    n = treedef.num_leaves
    if len(vals) != n:
        if len(vals) < n:
            raise ValueError(f"too few leaves for the tree structure: {len(vals)}, expected {n}")
        raise ValueError(f"too many leaves for a tree of structure {treedef!r} ({n} leaves): got {len(vals)}")
    recs, lo, hi = treedef._recs, treedef._lo, treedef._hi
    if hi - lo == 1 and recs[lo] is _LEAF_REC:
        return vals[0]
    # built from the last record to the first: a node's children are then
    # the newest values on the stack, first child on top
    stack: list[Any] = []
    push = stack.append
    li = n
    for i in range(hi - 1, lo - 1, -1):
        rec = recs[i]
        if rec is _LEAF_REC:
            li -= 1
            push(vals[li])
            continue
        kind, aux, k = rec
        if k:
            ch = stack[-k:]
            del stack[-k:]
            ch.reverse()
        else:
            ch = []
        if kind is LIST:
            push(ch)
        elif kind is TUPLE:
            push(tuple(ch))
        elif kind is DICT:
            push(dict(zip(aux, ch)))
        elif kind is NONE:
            push(None)
        elif kind is LEAF:  # an unpickled TreeDef's leaf records equal _LEAF_REC but are other objects
            li -= 1
            push(vals[li])
        else:
            e = _registry.get(kind) or _auto.get(kind) or _entry_for(kind)
            push(e.unflatten(aux, ch))
    return stack[0]


def structure(tree: Any) -> TreeDef:
    """The structure of ``tree`` (its :class:`TreeDef`).

    >>> import fungrad as fg
    >>> fg.tree.structure({"a": 1.0}) == fg.tree.structure({"a": 2.0})
    True
    """
    return flatten(tree)[1]


def leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree``, in flattening order.

    >>> import fungrad as fg
    >>> fg.tree.leaves([1.0, {"x": 2.0}, None])
    [1.0, 2.0]
    """
    return flatten(tree)[0]


def map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leaf by leaf to ``tree`` (and trees of the same structure in ``rest``).

    >>> import fungrad as fg
    >>> fg.tree.map(lambda a, b: a - 0.1 * b, {"w": 1.0}, {"w": 2.0})
    {'w': 0.8}
    """
    ls, td = flatten(tree)
    others = []
    for i, r in enumerate(rest):
        rl, rtd = flatten(r)
        if rtd != td:
            raise ValueError(
                f"tree.map: argument {i + 1} has structure {rtd!r}, expected the structure "
                f"of the first tree, {td!r}"
            )
        others.append(rl)
    return unflatten(td, [fn(*xs) for xs in zip(ls, *others)])


def _same_layout(a: TreeDef, b: TreeDef) -> bool:
    """Equal records, static values compared by ``==`` only: enough to pair leaves by position."""
    return a is b or (a._hi - a._lo == b._hi - b._lo and a._span() == b._span())


def _shape(td: TreeDef) -> str:
    k = td.kind
    if k is LEAF:
        return "a leaf"
    if k is DICT:
        return f"a dict with keys {list(td.aux)!r:.200}"
    name = k.value if isinstance(k, Kind) else getattr(k, "__name__", repr(k))
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} of {len(td.children)}"


def _first_difference(a: TreeDef, b: TreeDef) -> str:
    """Where two structures first differ, in words for an error message (``''`` when they are equal)."""
    stack: list[tuple[tuple[Any, ...], TreeDef, TreeDef]] = [((), a, b)]
    while stack:
        path, x, y = stack.pop()
        if x.kind != y.kind or len(x.children) != len(y.children) or _typed(x.aux) != _typed(y.aux):
            where = f" at {keystr(path)}" if path else ""
            return f"{where}: {_shape(x)} against {_shape(y)}" + ("" if _shape(x) != _shape(y) else " (other static values)")
        keys = list(x.aux) if x.kind is DICT else range(len(x.children))
        stack.extend((path + (k,), cx, cy) for k, cx, cy in reversed(list(zip(keys, x.children, y.children))))
    return "" if a == b else ": other static values"


def _reaches(roots: Iterable[Any], found: Callable[[Any], bool], budget: int = 10_000) -> bool:
    """Whether a value ``found`` accepts is inside ``roots``: through lists, tuples, dicts, pytrees
    and the attributes of plain objects, up to ``budget`` values (a data set of numbers stops there)."""
    stack = list(roots)
    while stack and budget > 0:
        x = stack.pop()
        budget -= 1
        if found(x):
            return True
        c = x.__class__
        if c is float or c is int or c is str or x is None:
            continue
        if c is list or c is tuple:
            stack.extend(itertools.islice(x, budget))
        elif c is dict:
            stack.extend(itertools.islice(x.values(), budget))
        elif isinstance(x, (str, bytes, type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)):
            continue
        elif isinstance(x, dict):
            stack.extend(itertools.islice(x.values(), budget))
        elif isinstance(x, (list, tuple, set, frozenset, collections.deque)):
            stack.extend(itertools.islice(x, budget))
        elif getattr(getattr(x, "dtype", None), "kind", None) == "O" and hasattr(x, "flat"):
            stack.extend(itertools.islice(x.flat, budget))  # a NumPy array of objects
        else:
            ch = children(x)
            if ch is not None:
                stack.extend(itertools.islice(ch.children, budget))
            elif hasattr(x, "__dict__"):
                stack.extend(itertools.islice(vars(x).values(), budget))
    return False


def describe(v: Any) -> str:
    """A leaf as error messages show it: its type and a short repr (an int of many digits by its size).

    >>> import fungrad as fg
    >>> fg.tree.describe("abc"), fg.tree.describe(10**400)
    ("str 'abc'", 'an int of about 401 digits')
    """
    if isinstance(v, int) and v.bit_length() > 64:
        # repr of a huge int is slow, and past 4,300 digits it raises
        return f"an int of about {int(v.bit_length() * 0.30103) + 1} digits"
    return f"{type(v).__name__} {v!r:.60}"


def number(v: Any, who: str, where: str) -> Any:
    """A leaf by the rules of ``grad``: a fungrad node as it is, another real number as a float.

    Anything else (bool, complex, str, ``Decimal``) is a ``TypeError`` and an
    int too large for a float a ``ValueError``, each naming ``who`` and ``where``.

    >>> import fungrad as fg
    >>> fg.tree.number(3, "sgd", "lr")
    3.0
    >>> fg.tree.number(True, "sgd", "lr")
    Traceback (most recent call last):
    ...
    TypeError: sgd: lr is bool True; expected a real number (float or int) or a fungrad Node
    """
    if getattr(v.__class__, "__fungrad_leaf__", False):
        return v
    if isinstance(v, (bool, enum.Enum)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{who}: {where} is {describe(v)}; expected a real number (float or int) or a fungrad Node")
    try:
        # exact for NumPy's float32 and float64, so a model computes in float64 whatever it is given
        return float(v)
    except OverflowError:
        raise ValueError(f"{who}: {where} is {describe(v)}, too large for a float") from None
