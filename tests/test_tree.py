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


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_floats = st.floats(allow_nan=False, width=64)
_trees = st.recursive(
    _floats | st.none(),
    lambda kids: st.lists(kids, max_size=4)
    | st.tuples(kids, kids)
    | st.dictionaries(st.text(max_size=3), kids, max_size=4)
    | st.builds(Point, kids, kids),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_trees)
def test_flatten_then_unflatten_is_the_identity(t):
    leaves, td = tree.flatten(t)
    assert tree.unflatten(td, leaves) == t
    assert td.num_leaves == len(leaves)
    assert tree.structure(tree.map(lambda v: 0.0, t)) == td
    pairs, td2 = tree.flatten_with_path(t)
    assert td2 == td and [v for _, v in pairs] == leaves
