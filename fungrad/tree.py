"""Pytrees: nested containers of leaves that fungrad can flatten and rebuild.

A pytree is a leaf or a container of pytrees. Containers are ``None`` (no
leaves), tuples, lists, dicts, namedtuples, attrs classes, and any class given
to :func:`register`. Everything else, numbers and fungrad nodes included, is a
leaf. Fields of an attrs class whose metadata says ``static=True`` belong to
the structure, not to the leaves (layer sizes, activation names).

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

from typing import Any, Callable, Iterable, NamedTuple

import attrs

__all__ = [
    "TreeDef",
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


class _Entry(NamedTuple):
    flatten: Callable[[Any], tuple[list[Any], Any]]
    unflatten: Callable[[Any, list[Any]], Any]
    keys: Callable[[Any, Any], list[Any]]  # (obj, aux) -> one path key per child


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


def _attrs_entry(cls: type) -> _Entry:
    fields = attrs.fields(cls)
    dyn = [f.name for f in fields if not f.metadata.get("static")]
    stat = [f.name for f in fields if f.metadata.get("static")]
    init_names = {f.name: (f.alias or f.name.lstrip("_")) for f in fields}
    no_init = [f.name for f in fields if not f.init]

    def flat(obj: Any) -> tuple[list[Any], Any]:
        return [getattr(obj, n) for n in dyn], tuple(_hashable(getattr(obj, n)) for n in stat)

    def unflat(aux: Any, children: list[Any]) -> Any:
        kw = dict(zip(dyn, children))
        kw.update(zip(stat, aux))
        if not no_init:
            return cls(**{init_names[k]: v for k, v in kw.items()})
        # fields without an init argument are set after construction
        obj = cls(**{init_names[k]: v for k, v in kw.items() if k not in no_init})
        for k in no_init:
            object.__setattr__(obj, k, kw[k])
        return obj

    return _Entry(flat, unflat, lambda obj, aux: [_Attr(n) for n in dyn])


def _namedtuple_entry(cls: type) -> _Entry:
    fields = list(cls._fields)
    return _Entry(
        lambda obj: (list(obj), None),
        lambda aux, children: cls(*children),
        lambda obj, aux: [_Attr(n) for n in fields],
    )


def _hashable(v: Any) -> Any:
    """Static values go into the (hashable) tree structure; lists become tuples."""
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v


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

        entry = _Entry(flat, unflatten, lambda obj, aux: list(range(len(flat(obj)[0]))))
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

    Only classes registered so far are found; nothing is imported.

    >>> import fungrad as fg
    >>> fg.tree.lookup("fungrad.nn.MLP") is fg.nn.MLP, fg.tree.lookup("os.system")
    (True, None)
    """
    for cls in _registry:
        if type_name(cls) == name:
            return cls
    return None


def is_leaf(x: Any) -> bool:
    """Whether ``x`` is a leaf (not a container) of a pytree.

    >>> import fungrad as fg
    >>> fg.tree.is_leaf(1.0), fg.tree.is_leaf([1.0]), fg.tree.is_leaf(fg.var(1.0))
    (True, False, True)
    """
    return _entry_for(type(x)) is None


_LIST, _TUPLE, _DICT, _NONE, _LEAF = "list", "tuple", "dict", "None", "*"


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
        return _LIST
    if cls is tuple:
        return _TUPLE
    if cls is dict:
        return _DICT
    if cls is type(None):
        return _NONE
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


_auto: dict[type, _Entry] = {}
_kinds: dict[type, Any] = {float: None, int: None}


@attrs.frozen
class TreeDef:
    """The structure of a pytree: its container types, keys and static fields.

    Two trees have equal (and equally hashing) ``TreeDef`` when they differ
    only in their leaves.
    """

    kind: Any  # "list", "tuple", "dict", "None", "*" (a leaf) or a class
    aux: Any
    children: tuple["TreeDef", ...]
    num_leaves: int

    def __repr__(self) -> str:
        if self.kind == _LEAF:
            return "*"
        if self.kind == _NONE:
            return "None"
        inner = ", ".join(repr(c) for c in self.children)
        if self.kind == _LIST:
            return f"[{inner}]"
        if self.kind == _TUPLE:
            return f"({inner}{',' if len(self.children) == 1 else ''})"
        if self.kind == _DICT:
            return "{" + ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.aux, self.children)) + "}"
        return f"{self.kind.__qualname__}({inner})"


_LEAF_DEF = TreeDef(_LEAF, None, (), 1)
_NONE_DEF = TreeDef(_NONE, None, (), 0)


class _Attr(str):
    """A path key that is an attribute name (shown as ``.name``)."""


def _children(x: Any) -> tuple[Any, Any, list[Any], Callable[[], list[Any]]] | None:
    """(kind, aux, children, keys) of a container, or None for a leaf."""
    cls = type(x)
    e = _entry_for(cls)
    if e is None:
        return None
    if e is _LIST:
        return _LIST, None, x, lambda: list(range(len(x)))
    if e is _TUPLE:
        return _TUPLE, None, list(x), lambda: list(range(len(x)))
    if e is _DICT:
        keys = tuple(x)
        return _DICT, keys, [x[k] for k in keys], lambda: list(keys)
    if e is _NONE:
        return _NONE, None, [], list
    ch, aux = e.flatten(x)
    return cls, aux, ch, lambda: e.keys(x, aux)


def _flatten(x: Any, out: list[Any], paths: list[Path] | None, path: Path) -> TreeDef:
    c = _children(x)
    if c is None:
        out.append(x)
        if paths is not None:
            paths.append(path)
        return _LEAF_DEF
    kind, aux, ch, keys = c
    if kind is _NONE:
        return _NONE_DEF
    ks = keys() if paths is not None else None
    n0 = len(out)
    defs = tuple(
        _flatten(v, out, paths, path + (ks[i],) if ks is not None else path) for i, v in enumerate(ch)
    )
    return TreeDef(kind, aux, defs, len(out) - n0)


def flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """The leaves of ``tree`` in order, and its structure.

    >>> import fungrad as fg
    >>> fg.tree.flatten((1.0, {"a": 2.0, "b": None}))
    ([1.0, 2.0], (*, {'a': *, 'b': None}))
    """
    out: list[Any] = []
    return out, _flatten(tree, out, None, ())


def flatten_with_path(tree: Any) -> tuple[list[tuple[Path, Any]], TreeDef]:
    """Like :func:`flatten`, each leaf paired with its path (see :func:`keystr`).

    >>> import fungrad as fg
    >>> pairs, _ = fg.tree.flatten_with_path({"w": [1.0, 2.0]})
    >>> [(fg.tree.keystr(p), v) for p, v in pairs]
    [("['w'][0]", 1.0), ("['w'][1]", 2.0)]
    """
    out: list[Any] = []
    paths: list[Path] = []
    td = _flatten(tree, out, paths, ())
    return list(zip(paths, out)), td


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
    it = iter(leaves)
    result = _build(treedef, it)
    if next(it, _sentinel) is not _sentinel:
        raise ValueError(f"too many leaves for a tree of structure {treedef!r} ({treedef.num_leaves} leaves)")
    return result


_sentinel = object()


def _build(td: TreeDef, it: Any) -> Any:
    kind = td.kind
    if kind == _LEAF:
        v = next(it, _sentinel)
        if v is _sentinel:
            raise ValueError("too few leaves for the tree structure")
        return v
    if kind == _NONE:
        return None
    ch = [_build(c, it) for c in td.children]
    if kind == _LIST:
        return ch
    if kind == _TUPLE:
        return tuple(ch)
    if kind == _DICT:
        return dict(zip(td.aux, ch))
    e = _registry.get(kind) or _auto.get(kind)
    return e.unflatten(td.aux, ch)


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
