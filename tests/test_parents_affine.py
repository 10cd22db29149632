"""Node parents kept in two slots (``Node.parents`` a read-only property) and ``expr.affine``.

``expr.affine(b, ws, xs)`` must be indistinguishable from the operator loop
``act = b; for w, x in zip(ws, xs): act = act + w * x``: the same values bit
for bit, the same graph node by node (ops, values, levels, lifted constants,
sharing of the caller's nodes), the same tape order, the same derivatives in
every transform, and the same errors. At the level of a ``grad``,
``value_and_grad`` or ``jacobian`` run at the root it makes one ``affine``
node per sum instead (the last section): the same values and gradients, bit
for bit.
"""

from __future__ import annotations

import copy
import fractions
import gc
import math
import pickle
import random
import struct
import threading
import weakref

import attrs
import pytest
from conftest import require

import fungrad as fg
from fungrad import expr
from fungrad.expr import CONST, Node

affine = expr.affine


def ops_affine(b, ws, xs):
    """The operator loop that ``expr.affine`` replaces."""
    act = b
    for w, x in zip(ws, xs):
        act = act + w * x
    return act


# --------------------------------------------------------------------------
# helpers


def bits(v):
    return struct.pack("<d", v)


def same_number(a, b):
    """Bit-for-bit equal floats (so -0.0 != 0.0 and nan payloads count), same type."""
    assert type(a) is type(b), (a, b)
    assert bits(a) == bits(b), (a, b)


def same_tree(a, b):
    la, lb = fg.tree.leaves(a), fg.tree.leaves(b)
    assert fg.tree.structure(a) == fg.tree.structure(b)
    assert len(la) == len(lb) and la
    for u, v in zip(la, lb):
        same_number(u, v)


def assert_same_graph(ga, gb, shared=()):
    """Walk two graphs in parallel through ``parents``; returns the node map a -> b.

    Ops, names, values (bits) and parents' counts must agree; levels must map
    one to one (CONST to CONST, 0 to 0); the nodes in ``shared`` (the caller's
    inputs) must be the very same objects on both sides; every other leaf must
    be a fresh lifted constant (level CONST) on each side; and the sharing
    structure must be the same (a bijection between the nodes).
    """
    if not fg.is_node(ga):
        assert not fg.is_node(gb)
        same_number(ga, gb)
        return {}
    shared_ids = {id(s) for s in shared if fg.is_node(s)}
    a2b: dict[int, Node] = {}
    b2a: dict[int, Node] = {}
    levels = {CONST: CONST, 0: 0}
    back = {CONST: CONST, 0: 0}
    stack = [(ga, gb)]
    while stack:
        a, b = stack.pop()
        assert fg.is_node(a) and fg.is_node(b), (a, b)
        if id(a) in a2b:
            assert a2b[id(a)] is b, "sharing differs"
            continue
        assert id(b) not in b2a, "sharing differs"
        a2b[id(a)], b2a[id(b)] = b, a
        assert (a.op, a.name) == (b.op, b.name)
        same_number(a.value, b.value)
        assert levels.setdefault(a.level, b.level) == b.level
        assert back.setdefault(b.level, a.level) == a.level
        if id(a) in shared_ids or id(b) in shared_ids:
            assert a is b, f"an input was not reused: {a!r} vs {b!r}"
            continue  # the same object: the same subgraph
        pa, pb = a.parents, b.parents
        assert type(pa) is tuple and type(pb) is tuple
        assert len(pa) == len(pb)
        if not pa:
            # a leaf that is not an input: a number lifted to a constant
            assert a is not b
            assert a.op == "" and a.level == CONST and b.level == CONST
        stack.extend(zip(pa, pb))
    return a2b


def in_level(fn):
    """Run ``fn(tape)`` at a fresh trace level; returns its result."""
    t = expr.new_level()
    tape = t.tape
    return expr.run_level(t, fn, tape)


def leaves_of(b, ws, xs):
    return [v for v in [b, *ws, *xs] if fg.is_node(v)]


class Sub(float):
    """A float subclass (as NumPy's float64 is): not ``float`` by class."""


def v(x, name=""):
    return fg.var(x, name)


# The mixes: functions that build (b, ws, xs), called where the inputs should live.
MIXES = {
    "all_nodes": lambda: (v(0.25, "b"), [v(1.5), v(-2.0), v(3.0)], [v(0.5), v(4.0), v(-1.25)]),
    "float_xs": lambda: (v(0.25), [v(1.5), v(-2.0), v(0.3)], [0.1, 0.7, -3.3]),
    "int_xs": lambda: (v(0.25), [v(1.5), v(-2.0)], [3, -7]),
    "float_ws": lambda: (v(0.25), [1.5, -2.0], [v(0.1), v(0.7)]),
    "int_ws": lambda: (v(0.25), [2, -3], [v(0.1), v(0.7)]),
    "float_b": lambda: (0.25, [v(1.5), v(-2.0)], [v(0.1), 0.7]),
    "int_b": lambda: (1, [v(1.5), v(0.3)], [v(0.1), 0.2]),
    "all_floats": lambda: (0.1, [0.2, 0.3, 0.1], [0.7, 0.9, 0.3]),
    "all_ints": lambda: (1, [2, 3], [4, 5]),
    "mixed": lambda: (
        v(0.1),
        [v(0.2), 0.3, v(0.4), 5, v(0.6), v(0.7), Sub(0.5)],
        [0.7, v(0.8), 9, v(1.0), fractions.Fraction(1, 3), Sub(0.1), v(0.9)],
    ),
    "float_subclass": lambda: (v(1.0), [v(2.0), v(3.0)], [Sub(0.1), Sub(0.2)]),
    "consts": lambda: (fg.const(1.0), [fg.const(2.0), v(3.0), fg.const(0.5)], [0.5, fg.const(4.0), fg.const(8.0)]),
    "const_b": lambda: (fg.const(1.0), [v(2.0)], [0.5]),
    "specials": lambda: (
        v(-0.0),
        [v(0.0), v(-1.0), v(1e308), v(math.inf), v(-0.0)],
        [-0.0, 0.0, 10.0, 0.0, v(5e-324)],
    ),
    "neg_zero": lambda: (v(-0.0), [v(-0.0), v(0.0)], [0.0, -0.0]),
    "empty_node": lambda: (v(1.0), [], []),
    "empty_float": lambda: (1.5, [], []),
    "ws_longer": lambda: (v(1.0), [v(2.0), v(3.0), v(4.0)], [0.5]),
    "xs_longer": lambda: (v(1.0), [v(2.0)], [0.5, v(0.25), 0.125]),
    "tuples": lambda: (v(1.0), (v(2.0), v(3.0)), (0.5, v(0.25))),
}


def _aliased():
    x = v(1.1, "x")
    xx = x * x
    return x, [x, xx, x, 2.0], [x, x, xx, x]


MIXES["aliasing"] = _aliased


def _long():
    rng = random.Random(7)
    n = 300
    ws = [v(rng.uniform(-1, 1)) for _ in range(n)]
    xs = [rng.uniform(-1, 1) if i % 3 else v(rng.uniform(-1, 1)) for i in range(n)]
    return v(rng.uniform(-1, 1)), ws, xs


MIXES["long"] = _long


# --------------------------------------------------------------------------
# parents


def test_parents_of_leaves_vars_and_consts():
    x, c = fg.var(2.0, name="x"), fg.const(3.0)
    assert x.parents == () and type(x.parents) is tuple
    assert c.parents == () and c.level == CONST
    assert (x.op, c.op) == ("", "")
    # a lifted number is a constant leaf
    y = x + 1.0
    assert y.parents[0] is x and y.parents[1].parents == () and y.parents[1].level == CONST
    assert y.parents[1].value == 1.0


def test_parents_of_unary_binary_and_ternary_nodes():
    x, y, c = fg.var(2.0), fg.var(3.0), fg.var(-1.0)
    t = fg.tanh(x)
    assert t.parents == (x,) and t.parents[0] is x and len(t.parents) == 1
    assert x.tanh().parents[0] is x
    m = x * y
    assert m.parents == (x, y) and m.parents[0] is x and m.parents[1] is y
    sq = x * x
    assert sq.parents == (x, x) and sq.parents[0] is sq.parents[1] is x
    s = x - y
    assert [p is q for p, q in zip(s.parents, (x, y))] == [True, True]
    w = fg.where(c, x, y)
    assert w.op == "where" and w.value == 3.0
    assert w.parents == (c, x, y) and all(p is q for p, q in zip(w.parents, (c, x, y)))
    assert type(w.parents) is tuple and len(w.parents) == 3
    # a where with a number lifts it; the node still has three parents
    w2 = fg.where(c, 1.0, x)
    assert len(w2.parents) == 3 and w2.parents[0] is c and w2.parents[2] is x
    assert w2.parents[1].level == CONST and w2.parents[1].value == 1.0
    # named keeps op and parents
    n = fg.named(w, "w")
    assert n.name == "w" and n.op == "where" and n.parents == (c, x, y)


@pytest.mark.parametrize("make", [
    lambda x, y, z: x,
    lambda x, y, z: -x,
    lambda x, y, z: x * y,
    lambda x, y, z: fg.where(x, y, z),
])
def test_repeated_reads_are_equal_tuples(make):
    n = make(fg.var(1.0), fg.var(2.0), fg.var(3.0))
    first = n.parents
    for _ in range(3):
        again = n.parents
        assert again == first and type(again) is tuple
        assert all(a is b for a, b in zip(again, first))


def test_parents_of_many_argument_user_primitives_and_their_gradients():
    name = f"sum4_parents_affine_{id(object())}"
    sum4 = fg.primitive(name, lambda a, b, c, d: a + 2.0 * b + 3.0 * c + 4.0 * d,
                        (lambda g, ans, a, b, c, d: g,
                         lambda g, ans, a, b, c, d: 2.0 * g,
                         lambda g, ans, a, b, c, d: 3.0 * g,
                         lambda g, ans, a, b, c, d: 4.0 * g * d))
    a, b, c, d = (fg.var(float(i)) for i in range(1, 5))
    n = sum4(a, b, c, d)
    assert n.parents == (a, b, c, d) and all(p is q for p, q in zip(n.parents, (a, b, c, d)))
    assert n.value == 1.0 + 4.0 + 9.0 + 16.0
    g = fg.gradients(n, wrt=[a, b, c, d])
    assert [g[a], g[b], g[c], g[d]] == [1.0, 2.0, 3.0, 16.0]
    # nested: the rule of d computes with nodes, and an outer grad differentiates it
    assert fg.grad(fg.grad(lambda x: sum4(x, x, x, x)))(2.0) == 4.0
    # a number among the arguments is lifted; the node has four parents
    m = sum4(a, 1.0, c, 2.0)
    assert len(m.parents) == 4 and m.parents[1].level == CONST and m.parents[3].value == 2.0


def test_parents_of_a_three_argument_custom_vjp():
    @fg.custom_vjp
    def f3(x, y, z):
        return x * y + z

    f3.defvjp(lambda x, y, z: (f3(x, y, z), (x, y)), lambda res, g: (g * res[1], g * res[0], g))
    x, y, z = fg.var(2.0), fg.var(3.0), fg.var(4.0)
    n = f3(x, y, z)
    assert n.value == 10.0 and n.parents == (x, y, z)
    assert fg.grad(lambda p: f3(p[0], p[1], p[2]))([2.0, 3.0, 4.0]) == [3.0, 2.0, 1.0]


def test_parents_of_vmap_and_pick_nodes():
    cap = []

    def loss(w):
        outs = fg.vmap(lambda w, x: fg.tanh(w * x), in_axes=(None, 0))(w, [1.0, 2.0, 3.0])
        cap.append((w, outs))
        return outs[0] + outs[1] + outs[2]

    g = fg.grad(loss)(0.5)
    w, outs = cap[0]
    assert g == pytest.approx(sum(x * (1 - math.tanh(0.5 * x) ** 2) for x in (1.0, 2.0, 3.0)), rel=1e-14)
    anchors = set()
    for i, o in enumerate(outs):
        assert o.op == "vmap_pick" and len(o.parents) == 2
        anchor, index = o.parents
        anchors.add(id(anchor))
        assert index.level == CONST and index.value == float(i) and index.parents == ()
        assert o.value == math.tanh(0.5 * (i + 1.0))
    assert len(anchors) == 1
    anchor = outs[0].parents[0]
    assert anchor.op == "vmap" and len(anchor.parents) == 4 and anchor.parents[0] is w
    assert [p.value for p in anchor.parents[1:]] == [1.0, 2.0, 3.0]
    assert anchor.parents == anchor.parents


@pytest.mark.parametrize("n", [1, 2, 3])
def test_vmap_nodes_of_one_two_and_more_parents_differentiate(n):
    xs = [float(i + 2) for i in range(n)]
    cap = []

    def f(xs):
        outs = fg.vmap(lambda x: x * x * x)(xs)
        cap.append(outs)
        total = outs[0]
        for o in outs[1:]:
            total = total + o
        return total

    assert fg.grad(f)(xs) == [3.0 * x * x for x in xs]
    assert len(cap[0][0].parents[0].parents) == n
    assert fg.grad(lambda x: fg.grad(f)([x] + xs[1:])[0])(xs[0]) == 6.0 * xs[0]


def test_parents_cannot_be_assigned_or_deleted():
    x, y = fg.var(1.0), fg.var(2.0)
    m = x * y
    with pytest.raises(AttributeError):
        m.parents = (y, x)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del m.parents
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        m._x = y  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        m._y = None  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del m._y
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        x._x = y  # type: ignore[misc]
    assert m.parents == (x, y) and x.parents == ()
    assert fg.gradients(m, wrt=[x, y]) == {x: 2.0, y: 1.0}
    assert not hasattr(m, "__dict__")


# --------------------------------------------------------------------------
# the constructor


def test_constructor_round_trips_parents_for_each_arity():
    a, b, c = fg.var(1.0), fg.var(2.0), fg.var(3.0)
    leaf = Node(5.0)
    assert (leaf.value, leaf.op, leaf.parents, leaf.name, leaf.level) == (5.0, "", (), "", 0)
    named_leaf = Node(5.0, "", (), "k", CONST)
    assert (named_leaf.parents, named_leaf.name, named_leaf.level) == ((), "k", CONST)
    u = Node(math.tanh(1.0), "tanh", (a,))
    assert u.parents == (a,) and u.parents[0] is a
    m = Node(2.0, "mul", (a, b), name="m", level=0)
    assert m.parents == (a, b) and m.parents[0] is a and m.parents[1] is b and m.name == "m"
    sq = Node(1.0, "mul", (a, a))
    assert sq.parents == (a, a) and sq.parents[0] is sq.parents[1] is a
    ps = (c, a, b)
    w = Node(1.0, "where", ps)
    assert w.parents == (c, a, b) and all(p is q for p, q in zip(w.parents, ps))
    # the constructed nodes are real graph nodes: gradients walk them
    assert fg.gradients(m, wrt=[a, b]) == {a: 2.0, b: 1.0}
    assert fg.gradients(sq, wrt=[a]) == {a: 2.0}
    assert fg.gradients(w, wrt=[c, a, b]) == {c: 0.0, a: 1.0, b: 0.0}
    assert fg.gradients(u, wrt=[a])[a] == 1.0 - math.tanh(1.0) ** 2


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((1.0, "mul"), {}, ValueError, "has no parents and an op has some"),
    ((1.0, "tanh", ()), {}, ValueError, "got op 'tanh' with 0 parents"),
    ((1.0, "", "P"), {}, ValueError, "got op '' with 1 parents"),
    ((1.0, "nope", "P"), {}, ValueError, "op must be '' .a leaf. or the name of a primitive"),
    ((1.0, "mul", "PF"), {}, TypeError, "parents must be a tuple of fungrad Nodes"),
    ((1.0, "mul", "L"), {}, TypeError, "parents must be a tuple of fungrad Nodes"),
    ((1, "mul", "PP"), {}, TypeError, "value must be a float, got int"),
    ((Sub(1.0),), {}, TypeError, "value must be a float, got Sub"),
    ((True,), {}, TypeError, "value must be a float, got bool"),
    ((1.0,), {"name": 3}, TypeError, "name must be a str"),
    ((1.0,), {"level": True}, TypeError, "level must be an int"),
    ((1.0,), {"level": 1.0}, TypeError, "level must be an int"),
    ((1.0, 3), {}, ValueError, "op must be"),
])
def test_constructor_refuses(args, kwargs, exc, match):
    p, q = fg.var(1.0), fg.var(2.0)
    table = {"P": (p,), "PF": (p, 2.0), "L": [p, q], "PP": (p, q)}
    args = tuple(table.get(a, a) if isinstance(a, str) and a in table else a for a in args)
    with pytest.raises(exc, match=match):
        Node(*args, **kwargs)


def test_evolve_a_leaf_renames_it_and_keeps_value_and_level():
    x = fg.var(2.5, name="x")
    z = attrs.evolve(x, name="z")
    assert z is not x and (z.value, z.op, z.parents, z.name, z.level) == (2.5, "", (), "z", 0)
    assert x.name == "x"
    c = attrs.evolve(fg.const(4.0), name="c")
    assert (c.value, c.parents, c.name, c.level) == (4.0, (), "c", CONST)
    assert fg.const(4.0, name="k").name == "k"
    # inside a transform the level is kept too
    seen = []

    def f(x):
        e = attrs.evolve(x, name="inner")
        seen.append((x.level, e.level, e.value, e.parents))
        return x * 2.0

    assert fg.grad(f)(3.0) == 2.0
    (lx, le, ve, pe), = seen
    assert lx > 0 and le == lx and ve == 3.0 and pe == ()


@pytest.mark.parametrize("make", [
    lambda x, y: x * y,
    lambda x, y: fg.tanh(x),
    lambda x, y: fg.where(x, y, x),
    lambda x, y: x + 1.0,
])
def test_evolve_of_a_non_leaf_refuses_and_points_to_named(make):
    n = make(fg.var(1.0), fg.var(2.0))
    with pytest.raises(ValueError, match=r"fungrad\.named"):
        attrs.evolve(n, name="z")
    with pytest.raises(ValueError, match=r"fungrad\.named"):
        attrs.evolve(n, value=9.0)
    r = fg.named(n, "z")
    assert r.name == "z" and r.op == n.op and r.parents == n.parents and r.value == n.value
    # evolve passes a parents keyword through to the constructor
    e = attrs.evolve(n, name="z", parents=n.parents)
    assert e.parents == n.parents and e.name == "z" and e.op == n.op


def test_positional_pattern_matching_follows_the_constructor():
    # Node(value, op, parents, name, level): a class pattern binds positions in that order
    x, y = fg.var(2.0), fg.var(3.0)
    m = x * y
    match m:
        case Node(value, op, parents):
            assert (value, op) == (6.0, "mul")
            assert parents == (x, y)
        case _:
            pytest.fail("a node did not match Node(value, op, parents)")


# --------------------------------------------------------------------------
# copies, pickles, weak references


def _small_graph():
    x, y = fg.var(2.0, name="x"), fg.var(3.0, name="y")
    z = fg.tanh(x * y + x) - fg.where(y, x, 1.0)
    return x, y, z


def _same_values(a, b):
    """Two graphs with the same ops, values and names (a copy need not share objects)."""
    seen = {}
    stack = [(a, b)]
    while stack:
        p, q = stack.pop()
        if id(p) in seen:
            assert seen[id(p)] is q
            continue
        seen[id(p)] = q
        assert (p.op, p.name, p.level) == (q.op, q.name, q.level)
        same_number(p.value, q.value)
        assert len(p.parents) == len(q.parents)
        stack.extend(zip(p.parents, q.parents))
    return seen


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_pickled_or_deep_copied_graph_keeps_its_parents(how):
    x, y, z = _small_graph()
    z2 = pickle.loads(pickle.dumps(z)) if how == "pickle" else copy.deepcopy(z)
    assert z2 is not z and z2.value == z.value and z2.op == "sub"
    assert len(z2.parents) == 2
    _same_values(z, z2)
    # the sharing of x is kept (memo), and the copy differentiates like the original
    xs2 = [n for n in fg.toposort(z2) if n.name == "x"]
    assert len(xs2) == 1
    g, g2 = fg.gradients(z, wrt=[x, y]), fg.gradients(z2, wrt=[xs2[0]])
    assert g2[xs2[0]] == g[x]


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_a_copied_leaf_keeps_its_empty_parents(how):
    x = fg.var(2.0, name="x")
    x2 = {"pickle": lambda n: pickle.loads(pickle.dumps(n)), "deepcopy": copy.deepcopy, "copy": copy.copy}[how](x)
    assert (x2.value, x2.op, x2.name, x2.level) == (2.0, "", "x", 0)
    assert x2.parents == ()
    assert fg.gradients(x2 * x2, wrt=[x2])[x2] == 4.0


def test_a_shallow_copy_shares_the_parents():
    x, y = fg.var(2.0), fg.var(3.0)
    m = x * y
    m2 = copy.copy(m)
    assert m2 is not m and m2.value == 6.0 and m2.parents == (x, y)
    assert m2.parents[0] is x and m2.parents[1] is y
    w = fg.where(x, y, x)
    w2 = copy.copy(w)
    assert w2.parents == (x, y, x)


def _deep_graph(levels):
    """A DAG ``levels`` deep in which every level reads the leaf ``x`` and the level two below."""
    x, w = fg.var(0.5, name="x"), fg.var(-0.25, name="w")
    a, b = x, x * w
    mids = []
    for i in range(levels):
        a, b = b, fg.tanh(b * 0.9 + a * w) + x * 0.01
        if i % 47 == 0:
            mids.append(b)
    return x, w, b, mids


def _copies(how, obj):
    return pickle.loads(pickle.dumps(obj)) if how == "pickle" else copy.deepcopy(obj)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_graph_1600_levels_deep_pickles_and_deep_copies(how):
    x, w, out, _ = _deep_graph(400)
    assert fg.graph_stats(out).depth > 1500  # past the recursion limit, were it walked node within node
    out2 = _copies(how, out)
    seen = _same_values(out, out2)  # same ops, values and names, and shared nodes still shared
    x2, w2 = seen[id(x)], seen[id(w)]
    assert (x2.name, w2.name) == ("x", "w")
    g, g2 = fg.gradients(out, wrt=[x, w]), fg.gradients(out2, wrt=[x2, w2])
    assert g2[x2] == g[x] and g2[w2] == g[w] and math.isfinite(g[x])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_nodes_of_one_deep_graph_saved_together_stay_one_graph(how):
    x, w, out, mids = _deep_graph(450)
    x2, mids2, out2 = _copies(how, (x, mids, out))
    seen = _same_values(out, out2)
    assert seen[id(x)] is x2  # the leaf saved on its own is the one inside the graph
    for m, m2 in zip(mids, mids2):
        assert seen[id(m)] is m2
    # so a gradient with respect to the loaded leaf sees every use of it
    assert fg.gradients(out2, wrt=[x2])[x2] == fg.gradients(out, wrt=[x])[x]
    assert fg.gradients(mids2[1], wrt=[x2])[x2] == fg.gradients(mids[1], wrt=[x])[x]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_the_nodes_of_a_deep_graph_saved_one_after_another_stay_one_graph(how):
    # each node's parents were saved before it: every node is saved with them
    x, w, out, _ = _deep_graph(500)
    nodes = fg.toposort(out)
    nodes2 = _copies(how, nodes)
    seen = _same_values(out, nodes2[-1])
    assert [seen[id(n)] for n in nodes] == nodes2  # the listed nodes are the graph's own
    assert fg.gradients(nodes2[-1], wrt=[seen[id(x)]])[seen[id(x)]] == fg.gradients(out, wrt=[x])[x]


def test_a_save_that_failed_halfway_does_not_spoil_the_next():
    w = fg.var(0.5, name="w")
    y = w
    for i in range(600):
        y = fg.tanh(y) * 0.5 + w
        if i == 450:
            mid = y
    top = y + fg.vmap(lambda a, b: fg.tanh(a * b), in_axes=(None, 0))(w, [1.0, 2.0])[0]
    with pytest.raises(Exception, match="[Pp]ickle"):  # a vmap node holds the function it maps
        pickle.dumps(top)
    for how in ("pickle", "deepcopy"):
        _same_values(mid, _copies(how, mid))


@pytest.mark.slow
def test_a_shallow_graph_pickles_node_within_node_and_a_deep_one_loads_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    x, y = fg.var(2.0, name="x"), fg.var(3.0, name="y")
    shallow = pickle.dumps(x * y + x)
    assert len(shallow) < 400  # node within node: no list of the nodes below
    _same_values(x * y + x, pickle.loads(shallow))
    x, w, out, _ = _deep_graph(800)
    path = tmp_path / "deep.pkl"
    path.write_bytes(pickle.dumps((x, out)))
    code = (
        "import pickle, sys, fungrad as fg\n"
        f"x, out = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        "print(repr(out.value), repr(fg.gradients(out, wrt=[x])[x]), fg.graph_stats(out).depth)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    value, gx, depth = run.stdout.split()
    assert float(value) == out.value and float(gx) == fg.gradients(out, wrt=[x])[x]
    assert int(depth) == fg.graph_stats(out).depth


@pytest.mark.slow
def test_deep_graphs_pickled_in_threads_at_once():
    graphs = [_deep_graph(700 + 50 * k) for k in range(4)]
    results: list = [None] * 4
    errors: list = []

    def work(k):
        try:
            for _ in range(2):
                results[k] = pickle.loads(pickle.dumps(graphs[k][2]))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (x, w, out, _), out2 in zip(graphs, results):
        _same_values(out, out2)


@pytest.mark.slow
def test_weak_references_to_nodes():
    x, y = fg.var(2.0), fg.var(3.0)
    m = x * y
    r, rw, rx = weakref.ref(m), weakref.ref(fg.where(x, y, m)), weakref.ref(x)
    assert r() is m and r().parents == (x, y)
    gc.collect()
    assert rw() is None  # nothing holds the where node
    del m
    gc.collect()
    assert r() is None and rx() is x
    d = weakref.WeakKeyDictionary({x: 1})
    assert d[x] == 1


# --------------------------------------------------------------------------
# affine against the operator loop: values and graphs


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_affine_builds_the_operator_graph_at_the_root(mix):
    b, ws, xs = MIXES[mix]()
    got, want = affine(b, ws, xs), ops_affine(b, ws, xs)
    assert type(got) is type(want)
    assert_same_graph(got, want, leaves_of(b, ws, xs))
    if fg.is_node(got):
        for n in fg.toposort(got):
            assert n.level in (0, CONST)
        wrt = [n for n in leaves_of(b, ws, xs) if n.level == 0 and not n.parents]
        if wrt:
            ga, gb = fg.gradients(got, wrt=wrt), fg.gradients(want, wrt=wrt)
            for n in wrt:
                same_number(ga[n], gb[n])


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_affine_builds_the_operator_graph_and_tape_inside_a_level(mix):
    def run(tape):
        b, ws, xs = MIXES[mix]()  # inputs of this level
        n0 = len(tape)
        got = affine(b, ws, xs)
        n1 = len(tape)
        want = ops_affine(b, ws, xs)
        return (b, ws, xs), got, want, tape[n0:n1], tape[n1:]

    (b, ws, xs), got, want, tape_got, tape_want = in_level(run)
    a2b = assert_same_graph(got, want, leaves_of(b, ws, xs))
    # the same nodes recorded in the same order: jit and the backward pass see one program
    assert len(tape_got) == len(tape_want)
    assert all(a2b[id(p)] is q for p, q in zip(tape_got, tape_want))
    if fg.is_node(got) and got.parents:
        assert got.level > 0 and got.level == want.level


@pytest.mark.parametrize("b", [fg.var(1.0), 1.0, 7, fg.const(2.0)])
def test_affine_of_no_terms_returns_b_itself(b):
    assert affine(b, [], []) is b
    assert affine(b, [fg.var(1.0)], []) is b
    assert affine(b, [], [2.0]) is b
    assert in_level(lambda tape: (affine(b, [], []), len(tape))) == (b, 0)


def test_affine_truncates_like_zip_and_takes_any_iterables():
    b, ws, xs = fg.var(1.0), [fg.var(2.0), fg.var(3.0), fg.var(4.0)], [0.5, fg.var(0.25)]
    got = affine(b, iter(ws), (x for x in xs))
    want = ops_affine(b, ws, xs)
    assert_same_graph(got, want, [b, *ws, *xs])
    assert got.value == 1.0 + 2.0 * 0.5 + 3.0 * 0.25
    # a lazily consumed iterable is read only as far as zip reads it
    consumed = []

    def gen():
        for x in (0.5, 0.25, 0.125):
            consumed.append(x)
            yield x

    affine(b, ws[:1], gen())
    assert consumed == [0.5]


def test_affine_float_result_is_bit_identical_for_hard_sums():
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randrange(0, 8)
        b = rng.uniform(-1e3, 1e3)
        ws = [rng.choice([rng.uniform(-1, 1), rng.uniform(-1e300, 1e300), 0.1, -0.0]) for _ in range(n)]
        xs = [rng.choice([rng.uniform(-1, 1), 1e10, -3, 0.3]) for _ in range(n)]
        got, want = affine(b, ws, xs), ops_affine(b, ws, xs)
        same_number(got, want)
        bn, wn = fg.var(b), [fg.var(w) for w in ws]
        same_number(affine(bn, wn, xs).value, ops_affine(bn, wn, xs).value)


@pytest.mark.parametrize("bad", [True, "1.0", None, 1 + 2j, [1.0]])
@pytest.mark.parametrize("side", ["w", "x"])
def test_affine_refuses_what_the_operators_refuse_with_the_same_error(bad, side):
    b, w, x = fg.var(1.0), fg.var(2.0), fg.var(3.0)
    ws, xs = ([bad], [x]) if side == "w" else ([w], [bad])
    with pytest.raises(Exception) as want:
        ops_affine(b, ws, xs)
    with pytest.raises(Exception) as got:
        affine(b, ws, xs)
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)


def test_affine_with_huge_int_errors_like_the_operators():
    b, w = fg.var(1.0), fg.var(2.0)
    with pytest.raises(ValueError) as want:
        ops_affine(b, [w], [10**400])
    with pytest.raises(ValueError) as got:
        affine(b, [w], [10**400])
    assert str(got.value) == str(want.value)


# --------------------------------------------------------------------------
# affine against the operator loop: derivatives in every transform


def f_aff(p):
    return affine(p[0], p[1:3], [0.5, 2.0])


def f_ops(p):
    return ops_affine(p[0], p[1:3], [0.5, 2.0])


def g_aff(x):
    # x as the bias, as weights and as inputs, with a node input and a number
    return fg.tanh(affine(x, [x, x * x, 3.0, x], [x, 0.25, x, 2]))


def g_ops(x):
    return fg.tanh(ops_affine(x, [x, x * x, 3.0, x], [x, 0.25, x, 2]))


def h_aff(p):
    return fg.sin(affine(p[0], [p[1], p[0], p[2]], [p[1], p[2], 0.3])) * affine(p[2], [p[0]], [p[1]])


def h_ops(p):
    return fg.sin(ops_affine(p[0], [p[1], p[0], p[2]], [p[1], p[2], 0.3])) * ops_affine(p[2], [p[0]], [p[1]])


P = [1.25, -0.5, 0.75]


def test_grad_matches_the_operators():
    got, want = fg.grad(f_aff)(P), fg.grad(f_ops)(P)
    same_tree(got, want)
    assert got == [1.0, 0.5, 2.0]
    same_tree(fg.value_and_grad(h_aff)(P), fg.value_and_grad(h_ops)(P))


def test_second_and_third_derivatives_match_the_operators():
    for x in (0.3, -1.7, 0.0):
        same_number(fg.grad(g_aff)(x), fg.grad(g_ops)(x))
        same_number(fg.grad(fg.grad(g_aff))(x), fg.grad(fg.grad(g_ops))(x))
        same_number(fg.grad(fg.grad(fg.grad(g_aff)))(x), fg.grad(fg.grad(fg.grad(g_ops)))(x))
    same_tree(fg.hessian(h_aff)(P), fg.hessian(h_ops)(P))
    same_tree(fg.hessian(f_aff)(P), fg.hessian(f_ops)(P))
    same_tree(fg.jacrev(fg.grad(h_aff))(P), fg.jacrev(fg.grad(h_ops))(P))
    same_tree(fg.hvp(h_aff, (P,), ([1.0, -2.0, 0.5],)), fg.hvp(h_ops, (P,), ([1.0, -2.0, 0.5],)))


def test_forward_mode_matches_the_operators():
    t = ([0.5, 1.0, -1.0],)
    same_tree(fg.jvp(h_aff, (P,), t), fg.jvp(h_ops, (P,), t))
    same_tree(fg.jvp(g_aff, (0.7,), (1.0,)), fg.jvp(g_ops, (0.7,), (1.0,)))
    same_tree(fg.jacfwd(h_aff)(P), fg.jacfwd(h_ops)(P))
    # forward over reverse over reverse
    same_number(fg.jvp(fg.grad(fg.grad(g_aff)), (0.7,), (1.0,))[1], fg.jvp(fg.grad(fg.grad(g_ops)), (0.7,), (1.0,))[1])
    # reverse over forward
    same_number(fg.grad(lambda x: fg.jvp(g_aff, (x,), (1.0,))[1])(0.7),
                fg.grad(lambda x: fg.jvp(g_ops, (x,), (1.0,))[1])(0.7))
    _, lin_a = fg.linearize(h_aff, P)
    _, lin_o = fg.linearize(h_ops, P)
    same_tree(lin_a([1.0, 0.0, 2.0]), lin_o([1.0, 0.0, 2.0]))
    _, back_a = fg.vjp(h_aff, P)
    _, back_o = fg.vjp(h_ops, P)
    same_tree(back_a(1.0), back_o(1.0))


def test_jit_matches_the_operators_on_every_replay():
    ja, jo = fg.jit(h_aff), fg.jit(h_ops)
    for p in (P, [0.1, 0.2, 0.3], [-4.0, 1e-3, 2.5]):
        same_number(ja(p), jo(p))
        same_number(ja(p), h_ops(p))
    jga, jgo = fg.jit(fg.grad(h_aff)), fg.jit(fg.grad(h_ops))
    gja, gjo = fg.grad(fg.jit(h_aff)), fg.grad(fg.jit(h_ops))
    for p in (P, [0.1, 0.2, 0.3], [-4.0, 1e-3, 2.5]):
        want = fg.grad(h_ops)(p)
        same_tree(jga(p), want)
        same_tree(jgo(p), want)
        same_tree(gja(p), gjo(p))
    jg = fg.jit(g_aff)
    for x in (0.3, -1.7):
        same_number(jg(x), g_ops(x))
        same_number(fg.grad(fg.grad(fg.jit(g_aff)))(x), fg.grad(fg.grad(g_ops))(x))
    # the traced programs are the same
    assert fg.jit(h_aff).source(P) == fg.jit(h_ops).source(P)
    assert fg.jit(g_aff).source(0.3) == fg.jit(g_ops).source(0.3)


@pytest.mark.parametrize("backend", ["python", "numpy"])
def test_vmap_matches_the_operators(backend):
    if backend == "numpy":
        require("numpy", 'pip install "fungrad[fast]"')
    w = [0.5, -1.0, 2.0]
    batch = [[1.0, 2.0], [0.25, -3.0], [0.0, 1e-3]]

    def body_a(w, x):
        return fg.tanh(affine(w[0], w[1:], x))

    def body_o(w, x):
        return fg.tanh(ops_affine(w[0], w[1:], x))

    va = fg.vmap(body_a, in_axes=(None, 0), backend=backend)
    vo = fg.vmap(body_o, in_axes=(None, 0), backend=backend)
    same_tree(va(w, batch), vo(w, batch))
    if backend == "python":
        same_tree(va(w, batch), [body_o(w, x) for x in batch])

    def loss(v, w):
        outs = v(w, batch)
        total = outs[0]
        for o in outs[1:]:
            total = total + o * o
        return total

    same_tree(fg.grad(lambda w: loss(va, w))(w), fg.grad(lambda w: loss(vo, w))(w))
    same_tree(fg.hessian(lambda w: loss(va, w))(w), fg.hessian(lambda w: loss(vo, w))(w))
    # per-example gradients
    same_tree(fg.vmap(fg.grad(body_a), in_axes=(None, 0), backend=backend)(w, batch),
              fg.vmap(fg.grad(body_o), in_axes=(None, 0), backend=backend)(w, batch))


def test_affine_over_a_node_of_an_enclosing_grad():
    # a (the outer grad's node) is a weight inside the inner grad
    def outer(f):
        return fg.grad(lambda a: fg.grad(lambda x: f(x, [a], [x]))(1.0))

    for a0 in (2.0, -0.5):
        same_number(outer(affine)(a0), outer(ops_affine)(a0))
        assert outer(affine)(a0) == 1.0
    # the outer node as the bias (the whole sum goes through the operators), as an input, and in several places
    cases = [
        lambda a, x, f: f(a, [x, a], [x, x]),
        lambda a, x, f: f(x, [x, x], [a, 0.5]),
        lambda a, x, f: f(x * a, [a * a, x, a], [x, a, 3.0]),
        lambda a, x, f: fg.tanh(f(x, [2.0, a, x], [a, x, a])),
    ]
    for case in cases:
        def mk(f, case=case):
            return lambda a0: fg.grad(lambda a: fg.grad(lambda x: case(a, x, f))(0.75) * a)(a0)

        for a0 in (1.5, -0.25):
            same_number(mk(affine)(a0), mk(ops_affine)(a0))
            same_number(fg.grad(mk(affine))(a0), fg.grad(mk(ops_affine))(a0))


def test_affine_over_an_enclosing_node_builds_the_operator_graph():
    # inner level: x is inner, a the outer level's node; the graphs must match with a and x shared
    seen = []

    def outer(a):
        def inner(x):
            for f in (affine, ops_affine):
                seen.append((a, x, f(x, [x, a, x], [a, x, 0.5]), f(a, [x], [x])))
            return x * a

        return fg.grad(inner)(0.5)

    fg.grad(outer)(3.0)
    (a, x, got1, got2), (_, _, want1, want2) = seen
    assert a.level > 0 and x.level > a.level
    assert_same_graph(got1, want1, [a, x])
    assert_same_graph(got2, want2, [a, x])
    assert got1.level == x.level and got2.level == x.level


def test_affine_on_a_node_of_a_finished_transform_matches_the_operators():
    leaked = []
    fg.grad(lambda x: leaked.append(x) or x * 2.0)(3.0)
    (old,) = leaked  # a node whose level has ended
    b, w = fg.var(1.0), fg.var(2.0)
    for bb, ws, xs in ((b, [old], [w]), (b, [w], [old]), (old, [w], [0.5]), (b, [old, w], [0.5, old])):
        got, want = affine(bb, ws, xs), ops_affine(bb, ws, xs)
        assert_same_graph(got, want, [b, w, old])
        assert got.level == 0
        ga = fg.gradients(got, wrt=[b, w, old])
        gb = fg.gradients(want, wrt=[b, w, old])
        assert all(bits(ga[n]) == bits(gb[n]) for n in (b, w, old))


@pytest.mark.parametrize("pos", ["b", "w", "x"])
def test_affine_on_a_node_of_a_running_grad_in_another_thread_raises_like_the_operators(pos):
    errors = {}

    def f(x):
        for name, fn in (("affine", affine), ("ops", ops_affine)):
            def work(fn=fn, name=name):
                b, w, y = fg.var(1.0), fg.var(2.0), fg.var(3.0)
                args = {"b": (x, [w], [y]), "w": (b, [x], [y]), "x": (b, [w], [x])}[pos]
                try:
                    fn(*args)
                except Exception as e:  # noqa: BLE001
                    errors[name] = e

            t = threading.Thread(target=work)
            t.start()
            t.join()
        return x * 1.0

    assert fg.grad(f)(2.0) == 1.0
    assert set(errors) == {"affine", "ops"}
    assert type(errors["affine"]) is fg.ForeignNodeError
    assert type(errors["ops"]) is fg.ForeignNodeError
    assert str(errors["affine"]) == str(errors["ops"])


# --------------------------------------------------------------------------
# debug_nans


def _raised(fn):
    try:
        out = fn()
    except FloatingPointError as e:
        return ("raised", str(e))
    return ("value", out.value if fg.is_node(out) else out)


NAN_CASES = {
    # a product overflows
    "mul_overflow": lambda: (fg.var(1.0, "b"), [fg.var(1e308, "w")], [10.0]),
    # a sum overflows (the product is finite)
    "add_overflow": lambda: (fg.var(1e308, "b"), [fg.var(1e308, "w")], [1.0]),
    # inf * 0 is nan in the product
    "mul_nan_from_node_input": lambda: (fg.var(1.0), [fg.var(0.0, "w")], [fg.var(1e308) * 10.0]),
    # a nan in a later term, after finite ones
    "later_term": lambda: (fg.var(1.0), [fg.var(2.0), fg.var(3.0, "w2")], [0.5, math.inf]),
    # the bad term goes through the operators (an int input)
    "int_input": lambda: (fg.var(1e308), [fg.var(1e308)], [10]),
    # float weights: the operators' fallback
    "float_weight": lambda: (fg.var(1.0), [1e308], [fg.var(10.0, "x")]),
    # nothing non-finite: no error
    "finite": lambda: (fg.var(1.0), [fg.var(2.0)], [3.0]),
}


@pytest.mark.parametrize("case", sorted(NAN_CASES))
def test_debug_nans_at_the_root_stops_where_the_operators_stop(case):
    b, ws, xs = NAN_CASES[case]()  # built outside the block: only affine's own nodes are checked
    with fg.debug_nans():
        got = _raised(lambda: affine(b, ws, xs))
        want = _raised(lambda: ops_affine(b, ws, xs))
    assert got == want or (got[0] == want[0] == "value" and bits(got[1]) == bits(want[1]))
    assert (got[0] == "value") == (case == "finite")


@pytest.mark.parametrize("case", sorted(NAN_CASES))
def test_debug_nans_inside_grad_stops_where_the_operators_stop(case):
    b, ws, xs = NAN_CASES[case]()

    def run(fn):
        def f(s):
            return fn(b * s, [w * s if fg.is_node(w) else w for w in ws], xs)

        with fg.debug_nans():
            try:
                return ("value", fg.grad(f)(1.0))
            except FloatingPointError as e:
                return ("raised", str(e))

    got, want = run(affine), run(ops_affine)
    assert got == want
    assert (got[0] == "value") == (case == "finite")
    # and without debug_nans the value is the same non-finite one
    same_number(affine(b, ws, xs).value, ops_affine(b, ws, xs).value)


def test_debug_nans_checks_gradients_through_affine_like_the_operators():
    def f(fn):
        return lambda x: fg.sqrt(fn(x, [x], [-0.5]))  # x / 2: sqrt(0) at x = 0, an infinite gradient

    with fg.debug_nans():
        with pytest.raises(FloatingPointError) as got:
            fg.grad(f(affine))(0.0)
        with pytest.raises(FloatingPointError) as want:
            fg.grad(f(ops_affine))(0.0)
        assert str(got.value) == str(want.value)
        assert "gradient through op 'sqrt'" in str(got.value)
        same_number(fg.grad(f(affine))(2.0), fg.grad(f(ops_affine))(2.0))
    # nested inside the block, with the enclosing grad's node as a weight
    with fg.debug_nans():
        r = [_raised(lambda fn=fn: fg.var(fg.grad(lambda a: fg.grad(lambda x: fn(x, [a], [1e308 * x]))(10.0))(1e10)))
             for fn in (affine, ops_affine)]
    assert r[0] == r[1] and r[0][0] == "raised"


def test_debug_nans_flows_through_a_jitted_affine_like_the_operators():
    j_aff = fg.jit(lambda p: affine(p[0], [p[1]], [10.0]))
    j_ops = fg.jit(lambda p: ops_affine(p[0], [p[1]], [10.0]))
    same_number(j_aff([1.0, 2.0]), j_ops([1.0, 2.0]))
    with fg.debug_nans():
        # called on floats, jit runs f eagerly on floats: Python's own * and + are not checked, either way
        same_number(j_aff([1.0, 1e308]), j_ops([1.0, 1e308]))
        same_number(j_aff([1.0, 1e308]), math.inf)
        # differentiated, the ops are nodes and are checked
        with pytest.raises(FloatingPointError) as got:
            fg.grad(j_aff)([1.0, 1e308])
        with pytest.raises(FloatingPointError) as want:
            fg.grad(j_ops)([1.0, 1e308])
        assert str(got.value) == str(want.value)
        assert "op 'mul' produced inf" in str(got.value)
    same_tree(fg.grad(j_aff)([1.0, 1e308]), fg.grad(j_ops)([1.0, 1e308]))


# --------------------------------------------------------------------------
# nn: the models' use of affine changed no result


def _act(name):
    return {"tanh": fg.tanh, "relu": fg.relu, "sigmoid": fg.sigmoid, "linear": lambda v: v}[name]


def hand_forward(model, x):
    """The model's forward by hand, with Python's operators."""
    for layer in model.layers:
        f = _act(layer.activation)
        out = []
        for n in layer.neurons:
            act = n.b
            for wi, xi in zip(n.w, x):
                act = act + wi * xi
            out.append(f(act))
        x = out
    return x[0] if len(x) == 1 else x


XS = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
YS = [[1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, 1.0]]


def mlp_loss(forward):
    def loss(model):
        total = 0.0
        for x, y in zip(XS, YS):
            out = forward(model, x)
            for o, t in zip(out, y):
                total = total + (o - t) ** 2
        return total

    return loss


def test_mlp_loss_and_gradients_equal_a_hand_written_operator_loop():
    model = fg.nn.MLP.init(3, [4, 2], seed=0)
    assert [layer.activation for layer in model.layers] == ["tanh", "tanh"]
    via_model = mlp_loss(lambda m, x: m(x))
    by_hand = mlp_loss(hand_forward)
    same_number(via_model(model), by_hand(model))
    for x in XS:
        same_tree(model(x), hand_forward(model, x))
    ga, gb = fg.grad(via_model)(model), fg.grad(by_hand)(model)
    same_tree(ga, gb)
    assert type(ga) is fg.nn.MLP and len(fg.tree.leaves(ga)) == (3 + 1) * 4 + (4 + 1) * 2
    same_tree(fg.value_and_grad(via_model)(model), fg.value_and_grad(by_hand)(model))
    same_tree(fg.jit(fg.grad(via_model))(model), gb)
    # the graph of one output is the hand loop's, node by node
    xn = [fg.var(v) for v in XS[0]]
    params = fg.tree.map(fg.var, model)
    assert_same_graph(params(xn)[0], hand_forward(params, xn)[0], [*xn, *fg.tree.leaves(params)])


@pytest.mark.parametrize("activation, final", [("relu", "linear"), ("sigmoid", None), ("tanh", "relu")])
def test_other_mlps_and_second_derivatives_equal_the_operator_loop(activation, final):
    model = fg.nn.MLP.init(3, [4, 2], seed=1, activation=activation, final_activation=final)
    via_model, by_hand = mlp_loss(lambda m, x: m(x)), mlp_loss(hand_forward)
    same_tree(fg.grad(via_model)(model), fg.grad(by_hand)(model))
    # derivatives with respect to the inputs, to second order
    x0 = XS[1]

    def out_a(x):
        o = model(x)
        return o[0] * o[1]

    def out_o(x):
        o = hand_forward(model, x)
        return o[0] * o[1]

    same_tree(fg.grad(out_a)(x0), fg.grad(out_o)(x0))
    same_tree(fg.hessian(out_a)(x0), fg.hessian(out_o)(x0))


def test_neuron_and_layer_calls_equal_the_operator_loop():
    n = fg.nn.Neuron.init(3, seed=5)
    x = [0.5, -2.0, 1.25]
    f = lambda w: fg.tanh(ops_affine(w.b, w.w, x))  # noqa: E731
    same_number(n(x), f(n))
    same_tree(fg.grad(lambda m: m(x))(n), fg.grad(f)(n))
    layer = fg.nn.Layer.init(3, 1, seed=2, activation="sigmoid")
    g = lambda m: fg.sigmoid(ops_affine(m.neurons[0].b, m.neurons[0].w, x))  # noqa: E731
    same_number(layer(x), g(layer))
    same_tree(fg.grad(lambda m: m(x))(layer), fg.grad(g)(layer))
    # integer inputs go through the operators' lifting
    xi = [1, -2, 3]
    same_tree(fg.grad(lambda m: m(xi))(n), fg.grad(lambda w: fg.tanh(ops_affine(w.b, w.w, xi)))(n))
    # with nodes as inputs, a neuron's weights are floats: the sum is the operators'
    same_tree(fg.grad(lambda xs: n(xs))(x), fg.grad(lambda xs: fg.tanh(ops_affine(n.b, n.w, xs)))(x))


def test_a_node_pickled_with_parents_as_a_field_still_loads():
    # the state attrs wrote when parents was a field: a dict of the fields
    a = fg.var(2.0, name="a")
    n = Node.__new__(Node)
    n.__setstate__({"value": 4.0, "op": "mul", "parents": (a, a), "name": "", "level": 0})
    assert (n.value, n.op, n.parents, n.name, n.level) == (4.0, "mul", (a, a), "", 0)
    assert fg.gradients(n)[a] == 4.0
    with pytest.raises(TypeError, match=r"^Node: cannot restore a node from tuple \('x',\)"):
        Node.__new__(Node).__setstate__(("x",))


# --------------------------------------------------------------------------
# One affine node per sum at the root of grad, value_and_grad and jacobian


def _ops_seen(fn, *args):
    """The ops of the sums ``affine`` made while ``fn(*args)`` ran."""
    seen = []

    def loss(p):
        y = affine(p[0], [p[1], p[2]], [p[2], 0.5])
        seen.append(y.op)
        return y

    fn(loss)(*args)
    return seen


def test_grad_at_the_root_makes_one_node_per_sum_and_nothing_else_does():
    p = [1.0, 2.0, 3.0]
    assert _ops_seen(fg.grad, p) == ["affine"]
    assert _ops_seen(fg.value_and_grad, p) == ["affine"]
    assert _ops_seen(fg.jacobian, p) == ["affine"]
    # a jit trace is replayed, never differentiated: it and a grad right inside it fuse too
    assert _ops_seen(lambda f: fg.jit(fg.grad(f)), p) == ["affine"]
    assert _ops_seen(lambda f: fg.jit(f), p) == ["affine"]
    assert _ops_seen(lambda f: fg.jit(fg.value_and_grad(f)), p) == ["affine"]
    # where the nodes in between can be seen or differentiated again: the operators' graph
    assert _ops_seen(lambda f: fg.jit(lambda q: fg.grad(lambda r: fg.grad(f)(r)[0])(q)), p) == ["add"]
    assert _ops_seen(lambda f: fg.jit(lambda q: fg.vmap(fg.grad(f))([q, q])), p) == ["add"]
    assert _ops_seen(lambda f: fg.jit(fg.hessian(f)), p) == ["add"]
    np = require("numpy", 'pip install "fungrad[fast]"')
    assert _ops_seen(lambda f: (lambda q: fg.export(fg.grad(f), q, xp=np)), p) == ["add"]
    assert _ops_seen(lambda f: (lambda q: fg.grad(lambda r: fg.grad(f)(r)[0])(q)), p) == ["add"]
    assert _ops_seen(lambda f: (lambda q: fg.jvp(f, (q,), ([1.0, 0.0, 0.0],))), p) == ["add"]
    assert _ops_seen(lambda f: (lambda q: fg.vjp(f, q)), p) == ["add"]
    assert _ops_seen(lambda f: fg.jacfwd(f), p) == ["add"]
    assert _ops_seen(lambda f: fg.hessian(f), p) == ["add"]
    assert _ops_seen(lambda f: (lambda q: fg.vmap(fg.grad(f))([q, q])), p) == ["add"]

    def under_debug(f):
        def run(q):
            with fg.debug_nans():
                return fg.grad(f)(q)
        return run

    assert _ops_seen(under_debug, p) == ["add"]
    # and outside every transform, a neuron's graph is the operators' one, to draw
    assert affine(fg.var(1.0), [fg.var(2.0)], [3.0]).op == "add"


def test_the_fused_node_holds_the_terms_and_the_operators_value():
    got = {}

    def loss(p):
        b, w0, x0, w1 = p
        y = affine(b, [w0, w1, b], [x0, -0.0, w0])
        got["y"], got["args"] = y, (b, w0, x0, w1)
        return y

    p = [1.5, -2.0, 0.25, 3.0]
    fg.grad(loss)(p)
    y = got["y"]
    b, w0, x0, w1 = got["args"]
    assert y.op == "affine" and len(y.parents) == 7
    assert y.parents[:3] == (b, w0, x0) and y.parents[3] is w1 and y.parents[5:] == (b, w0)
    c = y.parents[4]  # the number, lifted to a constant as the operators lift it
    assert c.op == "" and c.level == CONST and bits(c.value) == bits(-0.0)
    same_number(y.value, ops_affine(1.5, [-2.0, 3.0, 1.5], [0.25, -0.0, -2.0]))
    assert expr.op_label(y) == "affine"


def _random_sum(rng, nodes):
    # a sum whose terms reuse nodes: a weight that is the bias, a node times itself, numbers
    k = rng.randrange(1, 7)
    pick = lambda: rng.choice(nodes)  # noqa: E731
    ws = [pick() for _ in range(k)]
    xs = [pick() if rng.random() < 0.7 else rng.choice([0.5, -0.0, 3.0, 1e-300, 1e300]) for _ in range(k)]
    return pick(), ws, xs


@pytest.mark.parametrize("seed", range(12))
def test_the_fused_node_gives_the_operators_gradients_to_the_bit(seed):
    # the cotangents go to the arguments in the order the operators' nodes
    # give them, so that a node used several times sums them the same way
    def make(build):
        def loss(p):
            rng = random.Random(seed)
            nodes = list(p)
            for _ in range(6):
                nodes.append(build(*_random_sum(rng, nodes)))
            return nodes[-1] * nodes[-2] + nodes[-3]
        return loss

    rng = random.Random(100 + seed)
    p = [rng.choice([rng.uniform(-2, 2), -0.0, 1e-200, 3e150]) for _ in range(4)]
    same_tree(fg.value_and_grad(make(affine))(p), fg.value_and_grad(make(ops_affine))(p))
    same_tree(fg.jacobian(lambda q: [make(affine)(q), make(affine)(q[::-1])])(p),
              fg.jacobian(lambda q: [make(ops_affine)(q), make(ops_affine)(q[::-1])])(p))


def test_a_term_that_cannot_join_is_added_with_the_operators_between_two_nodes():
    def loss(build, p):
        b, w, x = p
        # a number weight and an int input cannot join a node: the sum is
        # affine(b, w*x), then + 2.0 * w and + x * 3 with the operators, then affine(that, w*b)
        return build(b, [w, 2.0, x, w], [x, w, 3, b])

    seen = []

    def spy(p):
        y = loss(affine, p)
        a = y.parents[0]
        seen.append((y.op, len(y.parents), a.op, a.parents[0].op, a.parents[0].parents[0].op))
        return y

    p = [0.5, -1.5, 2.25]
    same_tree(fg.value_and_grad(spy)(p), fg.value_and_grad(lambda q: loss(ops_affine, q))(p))
    assert seen == [("affine", 3, "add", "add", "affine")]
    same_tree(fg.jit(fg.value_and_grad(lambda q: loss(affine, q)))(p), fg.value_and_grad(lambda q: loss(ops_affine, q))(p))



def test_gradients_inside_the_loss_walk_the_fused_node_as_the_operators():
    def make(build):
        def loss(p):
            b, w, x = p
            y = build(b, [w, x, b], [x, w, 0.5]) * build(x, [b], [b])
            g = fg.gradients(y, wrt=[b, w, x])
            return y + g[b] * g[w] - g[x]
        return loss

    p = [0.75, -1.25, 2.5]
    same_tree(fg.value_and_grad(make(affine))(p), fg.value_and_grad(make(ops_affine))(p))


def test_a_fused_node_kept_after_grad_draws_pickles_and_differentiates():
    kept = []

    def loss(p):
        y = affine(p[0], [p[1], p[2]], [p[2], 4.0])
        kept.append(y)
        return y

    fg.grad(loss)([1.0, 2.0, 3.0])
    (y,) = kept
    assert y.op == "affine"
    dot = fg.viz.to_dot(y)
    assert "affine" in dot
    g = fg.to_networkx(y)
    assert sorted(k for _, _, k in g.in_edges(y, keys=True)) == [0, 1, 2, 3, 4]
    z = pickle.loads(pickle.dumps(y))
    assert (z.op, z.value, len(z.parents)) == ("affine", y.value, 5)
    assert [q.value for q in z.parents] == [q.value for q in y.parents]
    d = fg.gradients(y, wrt=list(y.parents[:3]))
    assert [d[q] for q in y.parents[:3]] == [1.0, 3.0, 6.0]  # b; w0 (x0's value); p[2], which is x0 and w1: w0 + x1
    # as a constant in another transform
    assert fg.grad(lambda x: x * y)(2.0) == y.value
    assert fg.jit(lambda x: x * y)(2.0) == 2.0 * y.value


@pytest.mark.parametrize("terms", [1, 15, 16, 17, 40, 200])
def test_jit_replays_fused_sums_of_any_length_as_the_operators(terms):
    rng = random.Random(terms)

    def make(build):
        def loss(p, xs):
            h = [fg.relu(build(p[k], p[k + 1:k + 1 + terms], xs)) for k in range(3)]
            return h[0] * h[1] - h[2] + build(h[0], xs, [h[1]] * terms)
        return loss

    p = [rng.uniform(-1, 1) for _ in range(terms + 3)]
    xs = [rng.uniform(-2, 2) for _ in range(terms)]
    want = fg.value_and_grad(make(ops_affine))(p, xs)
    f = fg.jit(fg.value_and_grad(make(affine)))
    for _ in range(2):
        same_tree(f(p, xs), want)
    src = f.source(p, xs)
    assert "affine" not in src  # written as + and *, inline
    compile(src, "<test>", "exec")


@pytest.mark.parametrize("k", [1, 2, 16, 17, 50])
def test_jit_sums_a_cotangent_of_many_terms_as_the_operators(k):
    # w gets k products in the backward pass: summed into a chain of affine nodes under jit
    rng = random.Random(k)
    xs = [rng.choice([rng.uniform(-3, 3), -0.0, 1e-310, 7e307]) for _ in range(k)]

    def make(build):
        def loss(p, xs):
            w, b = p
            y = build(b, [w] * k, xs)
            z = build(w, [b] * k, [y] * k)
            return fg.tanh(y) * z + build(y, [w, z], [z, w])
        return loss

    p = [0.625, -1.375]
    want = fg.value_and_grad(make(ops_affine))(p, xs)
    for f in (fg.jit(fg.value_and_grad(make(affine))), fg.value_and_grad(make(affine))):
        for _ in range(2):
            same_tree(f(p, xs), want)
    # the gradients taken inside a jit trace, and a grad of a grad
    inside = lambda build: fg.jit(lambda q: (lambda d: [d[n] for n in q])(fg.gradients(make(build)(q, xs), wrt=q)))  # noqa: E731
    same_tree(inside(affine)(p), inside(ops_affine)(p))
    second = lambda build: fg.grad(lambda q: fg.grad(lambda r: make(build)(r, xs))(q)[0])(p)  # noqa: E731
    same_tree(second(affine), second(ops_affine))


def test_affine_under_jit_takes_the_inputs_of_the_trace_as_constants_of_the_grad():
    # the data are inputs of the jit trace, the weights of the grad inside it
    def make(build):
        return lambda p, x: fg.value_and_grad(lambda q: fg.relu(build(q[0], q[1:], x)) * build(q[1], [q[2]], [x[0]]))(p)

    seen = []

    def spy(b, ws, xs):
        y = affine(b, ws, xs)
        seen.append(y.op)
        return y

    p, x = [0.5, -1.25, 2.0], [1.5, -0.75]
    f = fg.jit(make(spy))
    for _ in range(2):
        same_tree(f(p, x), make(ops_affine)(p, x))
    assert seen == ["affine", "affine"]


def test_affine_at_the_root_of_a_grad_refuses_a_running_grads_node_from_another_thread():
    errors = []

    def f(x):
        def work():
            try:
                fg.grad(lambda w: affine(w, [w], [x]))(2.0)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=work)
        t.start()
        t.join()
        return x * 1.0

    assert fg.grad(f)(3.0) == 1.0
    assert [type(e) for e in errors] == [fg.ForeignNodeError]


def _swap_affine(monkeypatch, build):
    # fungrad.nn's models call expr.affine: the operators' loop in its place gives the reference
    monkeypatch.setattr(expr, "affine", build)


@pytest.mark.parametrize("seed", range(40))
def test_gradients_inside_a_fusing_level_walk_the_terms_in_the_operators_order(seed):
    # fg.gradients orders the graph depth first: b gets its share from the
    # sum between the shares from the arguments that use it, as the add and
    # mul nodes would give it
    rng = random.Random(seed)
    p = [rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(-50, 50), rng.uniform(-1, 1)]

    def make(build):
        def gb(q):
            b, w0, x0, sx, sw = q
            y = build(b, [w0, fg.sin(b) * sw, b], [x0, fg.tanh(b) * sx, fg.exp(w0)])
            d = fg.gradients(y, wrt=[b, w0])
            return d[b] * 3.0 + d[w0]
        return gb

    for transform in (lambda f: (lambda q: fg.value_and_grad(f)(q)), lambda f: fg.jit(f), lambda f: fg.jit(fg.grad(f))):
        same_tree(transform(make(affine))(p), transform(make(ops_affine))(p))
    # at the root the operators' graph is built (and gradients gives floats)
    same_number(make(affine)([fg.var(v) for v in p]), make(ops_affine)([fg.var(v) for v in p]))


@pytest.mark.parametrize("sizes", [[2, 1], [3, 3, 1], [20, 1]])
def test_a_penalty_on_gradients_taken_inside_grad_differentiates_as_the_operators(monkeypatch, sizes):
    rng = random.Random(len(sizes))
    m = fg.nn.MLP.init(2, sizes, seed=0)
    xs = [[rng.uniform(-2, 2), rng.uniform(-2, 2)] for _ in range(3)]

    def pen(model):
        leaves = fg.tree.leaves(model)
        o = sum(model(x) for x in xs)
        gs = fg.gradients(o, wrt=leaves)
        return o + sum(gs[v] * gs[v] for v in leaves)

    got = [fg.grad(pen)(m), fg.jit(fg.grad(pen))(m), fg.jit(fg.value_and_grad(lambda q: fg.grad(pen)(q).layers[0].neurons[0].b))(m)]
    _swap_affine(monkeypatch, ops_affine)
    want = [fg.grad(pen)(m), fg.jit(fg.grad(pen))(m), fg.jit(fg.value_and_grad(lambda q: fg.grad(pen)(q).layers[0].neurons[0].b))(m)]
    for a, b in zip(got, want):
        same_tree(a, b)


@pytest.mark.parametrize("transform", [fg.grad, fg.jit])
def test_a_context_copied_inside_a_fusing_level_builds_the_operators_graph_once_it_ends(transform):
    import contextvars

    saved = []

    def f(p):
        saved.append(contextvars.copy_context())
        return p[0] * 1.0

    transform(f)([1.0])
    y = saved[0].run(lambda: affine(fg.var(1.0), [fg.var(2.0)], [3.0]))
    assert (y.op, y.parents[1].op, y.value) == ("add", "mul", 7.0)


def test_the_node_constructor_takes_a_bias_and_pairs():
    b, w, x = fg.var(1.0), fg.var(2.0), fg.var(3.0)
    n = Node(7.0, "affine", (b, w, x))
    assert fg.gradients(n, wrt=[b, w, x]) == {b: 1.0, w: 3.0, x: 2.0}
    with pytest.raises(ValueError, match="b, w0, x0, w1, x1"):
        Node(7.0, "affine", (b, w))
    with pytest.raises(ValueError, match="b, w0, x0, w1, x1"):
        Node(7.0, "affine", (b, w, x, w))
    with pytest.raises(ValueError, match="b, w0, x0, w1, x1"):
        Node(7.0, "affine", (b,))
