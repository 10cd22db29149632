"""Pytrees: flatten, unflatten, map, paths, registration."""

from __future__ import annotations

from collections import namedtuple

import attrs
import pytest

import fungrad as fg
from fungrad import tree

Point = namedtuple("Point", "x y")


@attrs.frozen
class Lin:
    w: list
    b: float
    act: str = tree.static(default="tanh")


def test_builtin_containers_round_trip():
    t = {"a": [1.0, (2.0, 3.0)], "b": None, "c": Point(4.0, 5.0), "d": {}}
    leaves, td = tree.flatten(t)
    assert leaves == [1.0, 2.0, 3.0, 4.0, 5.0]
    back = tree.unflatten(td, leaves)
    assert back == t and type(back["c"]) is Point and type(back["a"][1]) is tuple
    assert td.num_leaves == 5


def test_attrs_static_fields_stay_in_the_structure():
    m = Lin([1.0, 2.0], 3.0, "relu")
    leaves, td = tree.flatten(m)
    assert leaves == [1.0, 2.0, 3.0]
    assert tree.unflatten(td, [4.0, 5.0, 6.0]) == Lin([4.0, 5.0], 6.0, "relu")
    assert tree.structure(m) != tree.structure(Lin([1.0, 2.0], 3.0, "tanh"))
    assert tree.structure(m) == tree.structure(Lin([7.0, 8.0], 9.0, "relu"))
    assert hash(tree.structure(m)) == hash(tree.structure(Lin([7.0, 8.0], 9.0, "relu")))


def test_nodes_are_leaves():
    x = fg.var(1.0)
    assert tree.leaves([x, {"k": x}]) == [x, x]
    assert tree.is_leaf(x) and not tree.is_leaf((x,))


def test_map_over_several_trees():
    assert tree.map(lambda a, b: a + b, [1.0, {"x": 2.0}], [10.0, {"x": 20.0}]) == [11.0, {"x": 22.0}]
    with pytest.raises(ValueError, match="structure"):
        tree.map(lambda a, b: a, [1.0], [1.0, 2.0])


def test_paths_name_every_leaf():
    pairs, _ = tree.flatten_with_path({"layers": [Lin([1.0], 2.0)], "p": Point(1.0, 2.0)})
    assert [tree.keystr(p) for p, _ in pairs] == [
        "['layers'][0].w[0]", "['layers'][0].b", "['p'].x", "['p'].y"]


def test_register_a_custom_class():
    class Box:
        def __init__(self, v, tag):
            self.v, self.tag = v, tag

    tree.register(Box, lambda b: ([b.v], b.tag), lambda tag, ch: Box(ch[0], tag))
    leaves, td = tree.flatten([Box(1.0, "t")])
    assert leaves == [1.0]
    back = tree.unflatten(td, [5.0])
    assert back[0].v == 5.0 and back[0].tag == "t"
    assert tree.registered(Box) and tree.lookup(tree.type_name(Box)) is Box
    assert fg.grad(lambda b: b.v * b.v)(Box(3.0, "t")).v == 6.0
    with pytest.raises(TypeError, match="flatten and unflatten"):
        tree.register(type("Plain", (), {}))
    with pytest.raises(TypeError):
        tree.register(Box, flatten=lambda b: ([], None))


def test_unflatten_checks_the_leaf_count():
    _, td = tree.flatten([1.0, 2.0])
    with pytest.raises(ValueError, match="too few"):
        tree.unflatten(td, [1.0])
    with pytest.raises(ValueError, match="too many"):
        tree.unflatten(td, [1.0, 2.0, 3.0])


def test_lookup_imports_nothing():
    assert tree.lookup("os.system") is None and tree.lookup("no.such.Thing") is None


@pytest.mark.slow
def test_flatten_then_unflatten_is_the_identity():
    # Hypothesis is imported here, not when the module is collected: `-m "not slow"` never loads it
    from hypothesis import given, settings
    from hypothesis import strategies as st

    trees = st.recursive(
        st.floats(allow_nan=False, width=64) | st.none(),
        lambda kids: st.lists(kids, max_size=4)
        | st.tuples(kids, kids)
        | st.dictionaries(st.text(max_size=3), kids, max_size=4)
        | st.builds(Point, kids, kids),
        max_leaves=20,
    )

    @settings(max_examples=200, deadline=None)
    @given(trees)
    def check(t):
        leaves, td = tree.flatten(t)
        assert tree.unflatten(td, leaves) == t
        assert td.num_leaves == len(leaves)
        assert tree.structure(tree.map(lambda v: 0.0, t)) == td
        pairs, td2 = tree.flatten_with_path(t)
        assert td2 == td and [v for _, v in pairs] == leaves

    check()


# --- kinds and one level of a tree --------------------------------------------


def test_kinds_are_named_and_still_equal_their_strings():
    kinds = [tree.structure(t).kind for t in ([1.0], (1.0,), {"a": 1.0}, None, 1.0)]
    assert kinds == [tree.LIST, tree.TUPLE, tree.DICT, tree.NONE, tree.LEAF]
    assert all(isinstance(k, tree.Kind) for k in kinds)
    # jit.py and older code compare with the raw strings
    assert kinds == ["list", "tuple", "dict", "None", "*"]
    assert {k: 1 for k in kinds}.get("list") == 1 and hash(tree.LIST) == hash("list")
    assert str(tree.DICT) == "dict" and tree.Kind("tuple") is tree.TUPLE
    assert tree.structure(Lin([1.0], 2.0)).kind is Lin


def test_children_gives_one_level():
    c = tree.children({"w": [1.0, 2.0], "b": None})
    assert c == (tree.DICT, ("w", "b"), [[1.0, 2.0], None], ["w", "b"])
    assert tree.children([3.0, (4.0,)]) == (tree.LIST, None, [3.0, (4.0,)], [0, 1])
    assert tree.children((3.0,)) == (tree.TUPLE, None, [3.0], [0])
    assert tree.children(None) == (tree.NONE, None, [], [])
    m = Lin([1.0], 2.0, "relu")
    c = tree.children(m)
    assert c.kind is Lin and c.aux == ("relu",) and c.children == [[1.0], 2.0]
    assert tree.keystr(c.keys) == ".w.b"
    assert tree.children(Point(1.0, 2.0)).keys == ["x", "y"] and tree.keystr(tree.children(Point(1, 2)).keys) == ".x.y"
    for leaf in (1.0, 3, "s", fg.var(1.0), object()):
        assert tree.children(leaf) is None


def test_private_children_keeps_its_shape_for_jit():
    kind, aux, ch, keys = tree._children({"a": 1.0, "b": [2.0]})
    assert (kind, aux, ch, keys()) == ("dict", ("a", "b"), [1.0, [2.0]], ["a", "b"])
    assert tree._children(1.0) is None


def test_treedef_parts_and_views():
    t = {"a": [1.0, (2.0, None)], "b": Lin([3.0, 4.0], 5.0)}
    td = tree.structure(t)
    assert td.kind == "dict" and td.aux == ("a", "b") and td.num_leaves == 5
    a, b = td.children
    assert a == tree.structure([1.0, (2.0, None)]) and hash(a) == hash(tree.structure([0.0, (0.0, None)]))
    assert a.num_leaves == 2 and b.num_leaves == 3 and b.kind is Lin and b.aux == ("tanh",)
    assert [c.kind for c in a.children] == ["*", "tuple"] and a.children[1].children[1].kind is tree.NONE
    assert tree.unflatten(b, [7.0, 8.0, 9.0]) == Lin([7.0, 8.0], 9.0)
    # the public constructor builds the same structure as flatten
    leaf = tree.structure(0.0)
    built = tree.TreeDef("list", None, (leaf, tree.TreeDef(tree.TUPLE, None, (leaf, tree.structure(None)))))
    assert built == a and hash(built) == hash(a) and built.num_leaves == 2
    # a dict by hand needs one key per child: unflatten would drop the rest
    with pytest.raises(ValueError, match="a dict needs one key per child, got 1 children"):
        tree.TreeDef(tree.DICT, ("a", "b"), (leaf,))
    with pytest.raises(ValueError, match="a dict needs one key per child"):
        tree.TreeDef(tree.DICT, None, (leaf,))
    assert tree.unflatten(tree.TreeDef(tree.DICT, ("a", "b"), (leaf, leaf)), [1.0, 2.0]) == {"a": 1.0, "b": 2.0}
    with pytest.raises(AttributeError):
        td.aux = ()
    import pickle

    assert pickle.loads(pickle.dumps(td)) == td


@pytest.mark.parametrize(
    "t, text",
    [
        (1.0, "*"),
        (None, "None"),
        ([], "[]"),
        ((), "()"),
        ({}, "{}"),
        ((1.0,), "(*,)"),
        ([1.0, (2.0,), {"k": None, "j": []}], "[*, (*,), {'k': None, 'j': []}]"),
        ({"p": Point(1.0, [2.0])}, "{'p': Point(*, [*])}"),
        ([[[]], [()]], "[[[]], [()]]"),
    ],
)
def test_treedef_repr(t, text):
    assert repr(tree.structure(t)) == text


def test_unflatten_error_messages_say_what_was_expected():
    _, td = tree.flatten({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match="too few leaves for the tree structure: 1, expected 2"):
        tree.unflatten(td, iter([1.0]))
    too_many = r"too many leaves for a tree of structure \{'a': \[\*, \*\]\} \(2 leaves\): got 3"
    with pytest.raises(ValueError, match=too_many):
        tree.unflatten(td, (1.0, 2.0, 3.0))


# --- no recursion limit -----------------------------------------------------------


def _chain(depth, leaf=1.0, side=2.0):
    """A tree ``depth`` containers deep, cycling through every kind, with a ``side`` leaf per Point."""
    x = leaf
    for i in range(depth):
        k = i % 4
        x = [x] if k == 0 else {"k": x} if k == 1 else (x, None) if k == 2 else Point(x, side)
    return x


@pytest.mark.slow
def test_every_walk_handles_100000_levels():
    depth = 100_000
    t = _chain(depth)
    ls, td = tree.flatten(t)
    assert len(ls) == 1 + depth // 4 and ls[0] == 1.0 and ls[1:] == [2.0] * (depth // 4)
    assert td.num_leaves == len(ls) and td.kind is Point
    assert tree.leaves(t) == ls and hash(tree.structure(t)) == hash(td)
    # map is flatten then unflatten; flattening its result checks both
    tripled = tree.flatten(tree.map(lambda a: a * 3, t))
    assert tripled[1] == td and tripled[0] == [3 * v for v in ls]
    # the structure knows its parts at any depth; a subtree is another structure
    inner = td.children[0].children[0].children[0]
    assert inner.kind is tree.LIST and td.children[1] == tree.structure(2.0) and inner != td
    assert inner.num_leaves == len(ls) - 1
    text = repr(td)
    assert text.startswith("Point(({'k': [Point(") and text.endswith("}, None), *)")
    assert text.count("Point(") == depth // 4
    # one path per leaf, each as long as its leaf is deep: one deep leaf keeps that linear
    pairs, td2 = tree.flatten_with_path(_chain(depth, leaf=5.0, side=None))
    ((path, v),) = pairs
    assert v == 5.0 and td2.num_leaves == 1 and len(path) == depth
    assert tree.keystr(path[:5]) == ".x[0]['k'][0].x"


@pytest.mark.slow
def test_walks_do_not_use_the_python_stack():
    # with the stack nearly full, deep trees still flatten: nothing recurses per level
    import sys

    t = _chain(3000)
    limit = sys.getrecursionlimit()

    def depth_now():
        f, n = sys._getframe(), 0
        while f is not None:
            f, n = f.f_back, n + 1
        return n

    sys.setrecursionlimit(depth_now() + 60)
    try:
        ls, td = tree.flatten(t)
        pairs, _ = tree.flatten_with_path(t)
        back = tree.unflatten(td, ls)
        same = tree.structure(back) == td and hash(td) == hash(tree.structure(back))
        text = repr(td)
    finally:
        sys.setrecursionlimit(limit)
    assert same and len(pairs) == len(ls) == 751 and text.count("Point(") == 750


@attrs.frozen
class _Shaped:
    w: float
    shape: object = tree.static(default=None)


tree.register(_Shaped)


def test_static_lists_become_tuples_at_any_depth_without_recursion():
    assert tree.unflatten(tree.structure(_Shaped(1.0, [1, [2, (3, [4])], []])), [2.0]).shape == (1, (2, (3, [4])), ())
    deep = inner = []
    for _ in range(5000):  # five times the default recursion limit
        inner.append([1])
        inner = inner[-1]
    ls, td = tree.flatten(_Shaped(1.0, deep))
    shape, depth = tree.unflatten(td, ls).shape, 0
    while shape.__class__ is tuple and shape:
        shape, depth = shape[-1], depth + 1
    assert ls == [1.0] and depth == 5001
    loop = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match="a static field holds a list that contains itself"):
        tree.flatten(_Shaped(1.0, loop))


@pytest.mark.parametrize(
    "walk",
    [fg.tree.flatten, fg.tree.flatten_with_path, fg.jit(lambda v: v[0]), fg.grad(lambda v: v[0]), fg.vmap(lambda v: v)],
    ids=["flatten", "flatten_with_path", "jit", "grad", "vmap"],
)
def test_a_pytree_that_holds_itself_is_an_error_not_a_walk_without_end(walk, monkeypatch):
    monkeypatch.setattr(tree, "_CYCLE_CHECK_AT", 1 << 10)  # found sooner; the default 2^20 only costs time
    a = [1.0]
    a.append(a)
    with pytest.raises(ValueError, match="^a pytree holds itself: a list is one of its own descendants$"):
        walk(a)
    shared = [1.0, 2.0]
    deep = [shared, [shared, shared]]  # one list in several places is no cycle
    for _ in range(1200):
        deep = [deep, shared]
    assert len(fg.tree.flatten(deep)[0]) == 2 * (3 + 1200)


def test_treedefs_differ_in_statics_equal_by_eq_only():
    @attrs.frozen
    class S:
        w: float
        flag: object = tree.static(default=None)

    st = fg.tree.structure
    assert st(S(1.0, True)) != st(S(1.0, 1)) and st(S(1.0, 0.0)) != st(S(1.0, -0.0))
    assert st(S(1.0, 2)) == st(S(5.0, 2)) and hash(st(S(1.0, 2))) == hash(st(S(5.0, 2)))
    # statics of strings are compared by == alone; a number among them is not
    assert st(S(1.0, "relu")) == st(S(2.0, "relu")) != st(S(1.0, "tanh"))
    assert st([S(1.0, ("a", None))]) == st([S(3.0, ("a", None))])
    assert st(S(1.0, ("a", True))) != st(S(1.0, ("a", 1))) and st({1: 1.0}) != st({True: 1.0})
    assert st({"a": 1.0, "b": [S(1.0, 0.0)]}) != st({"a": 1.0, "b": [S(1.0, -0.0)]})


@attrs.frozen(init=False)
class _Swapped:
    # the constructor takes the fields in the other order than they are declared
    a: float
    b: float

    def __init__(self, b: float, a: float):
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)


@attrs.frozen
class _Mixed:
    # a static field between two leaves, a private field (its argument is "c"), one by keyword only
    x: float
    mode: str = tree.static(default="m")
    _c: float = 0.0
    k: float = attrs.field(default=0.0, kw_only=True)


@attrs.frozen
class _Made:
    # a constructor of its own (a __new__ that takes keywords only)
    x: float
    y: float

    def __new__(cls, **kw: float) -> _Made:
        return super().__new__(cls)


@attrs.frozen(init=False)
class _NewInOrder:
    # a __new__ that takes the fields in their order, and an __init__ that does not
    a: float
    b: float

    def __new__(cls, a: float = 0.0, b: float = 0.0) -> _NewInOrder:
        return super().__new__(cls)

    def __init__(self, b: float, a: float):
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)


def test_attrs_classes_are_rebuilt_with_each_field_in_its_place():
    # tree.unflatten calls a class by position only where that binds the same
    # arguments as by keyword; a constructor of another order keeps the keywords
    for obj in (_Swapped(b=2.0, a=1.0), _Mixed(1.0, "q", 2.0, k=3.0), _Made(x=1.0, y=2.0), _NewInOrder(b=2.0, a=1.0)):
        leaves, td = tree.flatten(obj)
        back = tree.unflatten(td, [v * 10.0 for v in leaves])
        assert type(back) is type(obj)
        assert tree.leaves(back) == [v * 10.0 for v in leaves]
        assert attrs.asdict(back) == {k: (v * 10.0 if isinstance(v, float) else v) for k, v in attrs.asdict(obj).items()}
    assert tree.unflatten(tree.structure(_Swapped(b=2.0, a=1.0)), [5.0, 6.0]) == _Swapped(b=6.0, a=5.0)
    # jit rebuilds its outputs the same way
    f = fg.jit(lambda s, m: (_Swapped(b=s.a * 2.0, a=s.b + 1.0), attrs.evolve(m, x=m.x * 3.0)))
    for _ in range(2):
        s, m = f(_Swapped(b=2.0, a=1.0), _Mixed(1.0, "q", 2.0, k=3.0))
        assert (s.a, s.b) == (3.0, 2.0)
        assert (m.x, m.mode, m._c, m.k) == (3.0, "q", 2.0, 3.0)
