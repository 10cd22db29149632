"""One test per wrong answer or broken path found by testing fungrad as a new user would, each named after what it checks."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest

import fungrad as fg


def square(x):
    return x * x


# ---------------------------------------------------------------- transforms took state from __dict__


def test_jit_of_grad_of_jit_returns_the_derivative():
    assert fg.jit(fg.grad(fg.jit(square)))(3.0) == 6.0
    assert fg.jit(fg.grad(fg.jit(square)))(-2.0) == -4.0  # the replay too


def test_jit_of_value_and_grad_of_jit_returns_the_value_and_the_derivative():
    assert fg.jit(fg.value_and_grad(fg.jit(square)))(3.0) == (9.0, 6.0)


def test_jit_of_jacobian_of_jit_returns_the_jacobian():
    assert fg.jit(fg.jacobian(fg.jit(square)))(3.0) == 6.0
    assert fg.jit(fg.jacobian(fg.jit(lambda v: [v[0] * v[1], v[0]])))([2.0, 5.0]) == [[5.0, 2.0], [1.0, 0.0]]


def test_grad_of_grad_of_jit_returns_the_second_derivative():
    assert fg.grad(fg.grad(fg.jit(square)))(3.0) == 2.0
    assert fg.jit(fg.grad(fg.grad(fg.jit(lambda x: x**3))))(2.0) == 12.0


def test_no_transform_copies_the_dict_of_the_function_it_wraps():
    def f(x):
        return x * x

    f.state = "inner"
    f._cache = {"poison": 1}
    for name in ("grad", "value_and_grad", "jacobian", "hessian", "jit"):
        t = getattr(fg, name)(f)
        assert not hasattr(t, "state") and getattr(t, "_cache", None) is not f._cache, name
        assert t.__name__ == "f" and t.__doc__ == f.__doc__  # names and docs are still copied
    inner = fg.jit(f)
    inner.extra = "x"
    assert not hasattr(fg.grad(inner), "extra") and not hasattr(fg.jit(fg.grad(inner)), "extra")


# ---------------------------------------------------------------- static keys by type


def test_static_arguments_equal_in_value_but_not_in_type_trace_separately():
    f = fg.jit(lambda k, x: x + (10.0 if isinstance(k, bool) else 1.0), static_argnums=0)
    assert f(1, 1.0) == 2.0
    assert f(True, 1.0) == 11.0
    assert f.cache_size() == 2


def test_static_namedtuples_holding_equal_values_of_different_types_trace_separately():
    import collections

    P = collections.namedtuple("P", "k")
    f = fg.jit(lambda p, x: x + (10.0 if isinstance(p.k, bool) else 1.0), static_argnums=0)
    assert f(P(1), 1.0) == 2.0 and f(P(True), 1.0) == 11.0 and f(P(1), 2.0) == 3.0
    assert f.cache_size() == 2


def test_a_static_true_comes_back_as_true_not_one():
    assert fg.jit(lambda k: k, static_argnums=0)(True) is True
    assert fg.jit(lambda k: k, static_argnums=0)(1) == 1


# ---------------------------------------------------------------- generators


def test_jit_of_a_generator_function_is_a_type_error_that_says_why():
    def gen(x):
        yield x * 2

    with pytest.raises(TypeError, match="generator .* runs after the call returns, outside the trace"):
        fg.jit(gen)


# ---------------------------------------------------------------- gradients with respect to constants


def test_gradients_with_respect_to_a_constant_is_a_value_error_naming_it():
    c = fg.const(1.0, name="c")
    with pytest.raises(ValueError, match=r"wrt\[0\] is a constant \(Node\(1.0, name='c'\)\)"):
        fg.gradients(c**2, wrt=[c])
    x = fg.var(2.0)
    with pytest.raises(ValueError, match=r"wrt\[1\] is a constant"):
        fg.gradients(x * c, wrt=[x, c])
    assert fg.gradients(x * c, wrt=[x]) == {x: 1.0}


def test_gradients_of_a_plain_number_is_a_type_error():
    with pytest.raises(TypeError, match="out must be a fungrad Node, got float"):
        fg.gradients(1.0)


# ---------------------------------------------------------------- the shared jit cache


def test_jit_called_twice_on_the_same_function_traces_once():
    traces = []

    def f(x):
        traces.append(x)
        return x * 2.0

    assert fg.jit(f)(1.0) == 2.0 and fg.jit(f)(5.0) == 10.0
    assert len(traces) == 1


# ---------------------------------------------------------------- checkpoints in a fresh process

_SAVE = """
import fungrad as fg
m = fg.nn.MLP.init(3, [4, 4, 1], seed=0)
fg.checkpoint.save({path!r}, m)
print(repr(m([0.5, -1.0, 2.0])))
"""
_LOAD = """
import sys
import fungrad as fg
assert "fungrad.nn" not in sys.modules, "the test needs a process that has not imported fungrad.nn"
m = fg.checkpoint.load({path!r})
print(type(m).__module__ + "." + type(m).__qualname__)
print(repr(m([0.5, -1.0, 2.0])))
"""


def _python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.slow
def test_a_checkpoint_saved_in_one_process_loads_in_a_fresh_one(tmp_path):
    path = str(tmp_path / "m.json")
    out = _python(_SAVE.format(path=path)).strip()
    kind, out2 = _python(_LOAD.format(path=path)).strip().splitlines()
    assert kind == "fungrad.nn.MLP"
    assert out2 == out and math.isfinite(float(out))


@pytest.mark.slow
def test_a_checkpoint_still_imports_nothing_off_the_allowlist(tmp_path):
    path = tmp_path / "evil.json"
    doc = {"format": "fungrad-checkpoint", "version": 1,
           "tree": {"type": "colorsys.Evil", "children": [1.0], "static": {"tuple": []}}}
    path.write_text(json.dumps(doc))
    out = _python(f"""
        import sys
        import fungrad as fg
        try:
            fg.checkpoint.load({str(path)!r})
        except (TypeError, ValueError) as e:
            print(type(e).__name__, "colorsys" in sys.modules)
        """)
    assert out.split() == ["ValueError", "False"] or out.split() == ["TypeError", "False"]


# ---------------------------------------------------------------- clear errors


def test_modulo_of_nodes_is_a_type_error_that_says_why():
    x, y = fg.var(7.0), fg.var(2.0)
    for expr in (lambda: x % y, lambda: x % 2.0, lambda: 7.0 % y, lambda: x // y, lambda: divmod(x, y)):
        with pytest.raises(TypeError, match="fungrad nodes have no .*step function"):
            expr()
    with pytest.raises(TypeError, match="fungrad nodes have no %"):
        fg.grad(lambda a: a % 2.0)(3.0)


@pytest.mark.parametrize("use", [int, hex, float, round, math.floor, lambda v: [0, 1, 2][v], lambda v: range(v)],
                         ids=["int", "hex", "float", "round", "floor", "index", "range"])
def test_int_and_hex_of_a_traced_node_under_jit_give_the_traced_value_message(use):
    with pytest.raises(TypeError, match="of a traced node under fungrad.jit, vmap or export: the value is not known"):
        fg.jit(lambda x: x * use(x))(2.0)


def test_int_and_hex_of_a_node_inside_grad_say_the_derivative_would_be_lost():
    with pytest.raises(TypeError, match="inside a fungrad transform"):
        fg.grad(lambda x: x * int(x))(2.0)
    with pytest.raises(TypeError, match="inside a fungrad transform"):
        fg.grad(lambda x: x * len(hex(x)))(2.0)
    # outside any transform they read the value
    assert int(fg.var(2.7)) == 2 and round(fg.var(2.7)) == 3
    with pytest.raises(TypeError, match="cannot be used as an integer"):
        hex(fg.var(2.0))


# ---------------------------------------------------------------- found while writing these tests


def test_atan2_gradient_at_the_origin_is_zero_not_nan():
    assert fg.grad(fg.atan2, argnums=(0, 1))(0.0, 0.0) == (0.0, -0.0)
    assert fg.grad(fg.atan2, argnums=(0, 1))(1e-200, 1e-200) == (0.0, -0.0)


def test_pow_gradient_at_a_nan_exponent_is_nan_not_zero():
    assert math.isnan(fg.grad(fg.pow)(2.0, math.nan))
    assert math.isnan(fg.grad(fg.pow, 1)(math.nan, 2.0))
    assert fg.grad(fg.pow, 1)(1.0, math.nan) == 0.0  # PyTorch: 1 ** y * log(1) = 0


def test_a_user_rule_dividing_by_zero_gives_inf_in_eager_grad_as_under_jit():
    op = fg.primitive("tr_sqrt", math.sqrt, vjp=(lambda g, ans, x: g / (2.0 * ans),))
    assert fg.grad(op)(0.0) == math.inf == fg.jit(fg.grad(op))(0.0)


# --------------------------------------------------------------------------
# A transform's input named, copied, or compared with a number


def test_naming_a_transforms_input_keeps_it_in_the_graph():
    sq = lambda x: x.named("x") ** 2  # noqa: E731
    assert fg.grad(sq)(3.0) == 6.0
    assert fg.grad(fg.grad(sq))(3.0) == 2.0
    assert fg.jvp(lambda x: fg.named(x, "x") * 2.0, (3.0,), (1.0,)) == (6.0, 2.0)
    j = fg.jit(lambda x: fg.named(x, "x") * 2.0)
    assert (j(3.0), j(5.0)) == (6.0, 10.0)
    assert fg.vmap(lambda x: fg.named(x, "x") * 2.0)([1.0, 2.0]) == [2.0, 4.0]
    seen = []
    fg.grad(lambda x: seen.append(x.named("x")) or x * 1.0)(3.0)
    assert seen[0].name == "x" and seen[0].value == 3.0
    # outside a transform a named leaf is a new variable, as documented
    a = fg.var(2.0)
    b = a.named("b")
    assert b is not a and b.parents == () and b.name == "b"


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
@pytest.mark.parametrize("transform", ["grad", "jit", "vmap", "jvp"])
def test_copying_a_running_transforms_node_is_an_error_not_a_lost_derivative(how, transform):
    import copy
    import pickle

    dup = {"copy": copy.copy, "deepcopy": copy.deepcopy, "pickle": lambda n: pickle.loads(pickle.dumps(n))}[how]
    f = lambda x: dup(x * 1.0) * x  # noqa: E731
    run = {
        "grad": lambda: fg.grad(f)(3.0),
        "jit": lambda: fg.jit(f)(3.0),
        "vmap": lambda: fg.vmap(f)([1.0, 2.0]),
        "jvp": lambda: fg.jvp(f, (3.0,), (1.0,)),
    }[transform]
    with pytest.raises(TypeError, match="running fungrad transform.*derivative would be lost"):
        run()
    if how == "copy":  # a shallow copy of a dict shares its nodes: the derivative is there
        assert fg.grad(lambda p: dup(p)["w"] * 2.0)({"w": 3.0}) == {"w": 2.0}
    else:
        with pytest.raises(TypeError, match="running fungrad transform"):
            fg.grad(lambda p: dup(p)["w"] * 2.0)({"w": 3.0})  # the parameters themselves
    # nodes from outside the transform are constants there: copying them is fine
    c = fg.var(2.0)
    assert fg.grad(lambda x: dup(c) * x)(3.0) == 2.0
    assert dup(fg.var(1.5) * 2.0).value == 3.0  # and outside any transform


def test_a_traced_number_compared_with_eq_under_jit_is_an_error():
    f = lambda x, n: x * 2.0 if n == 1 else x * 3.0  # noqa: E731
    assert f(1.0, 1) == 2.0
    for g in (f, lambda x, n: x * 2.0 if 1 == n else x, lambda x, n: x if n != 1 else x * 2.0):
        with pytest.raises(TypeError, match="== of a traced node under fungrad.jit|!= of a traced node"):
            fg.jit(g)(1.0, 1)
    with pytest.raises(TypeError, match="under fungrad.jit"):
        fg.jit(lambda x: x * 10.0 if x in (1.0, 2.0) else x)(1.0)
    # two traced values compared: numbers without jit, nodes under it
    g = lambda a, b: a * 2.0 if a == b else a * 3.0  # noqa: E731
    assert g(1.0, 1.0) == 2.0
    with pytest.raises(TypeError, match="== of a traced node under fungrad.jit"):
        fg.jit(g)(1.0, 1.0)
    with pytest.raises(TypeError, match="under fungrad.jit"):
        fg.jit(lambda a, b: a if a in [b] else b)(1.0, 1.0)
    with pytest.raises(TypeError, match="!= of a traced node under fungrad.jit"):
        fg.jit(lambda a: a * 2.0 if a != a else a)(math.nan)  # the nan test: True without jit
    assert fg.jit(lambda a: [a, a][[a, a].index(a)] * 2.0)(3.0) == 6.0  # containers find a node by identity
    # static, it is a plain int again
    assert fg.jit(f, static_argnums=1)(1.0, 1) == 2.0
    # outside jit, == stays identity (documented): False, and no error
    assert fg.grad(lambda x: x * (2.0 if x == 3.0 else 1.0))(3.0) == 1.0
    x = fg.var(0.0)
    assert (x == 0.0, x != 0.0, x == x, x != x, 0.0 in [x]) == (False, True, True, False, False)
    assert len({x: 1, fg.var(0.0): 2}) == 2  # hashed by identity


def test_static_numbers_equal_by_eq_but_not_in_their_bits_get_their_own_trace():
    import decimal
    import struct

    f = fg.jit(lambda x, s: x / s, static_argnums=1)
    assert (f(1.0, 0.0), f(1.0, -0.0)) == (math.inf, -math.inf)
    k = fg.jit(lambda x, s: x * s.imag, static_argnums=1)
    assert [math.copysign(1.0, k(1.0, complex(0.0, z))) for z in (0.0, -0.0)] == [1.0, -1.0]
    g = fg.jit(lambda x, s: x * float(s), static_argnums=1)
    assert [math.copysign(1.0, g(1.0, decimal.Decimal(z))) for z in ("0", "-0", "0")] == [1.0, -1.0, 1.0]
    h = fg.jit(lambda x, s: x * s, static_argnums=1)
    nan, neg_nan = math.nan, -math.nan
    assert struct.pack("<d", h(1.0, nan)) == struct.pack("<d", (fg.var(1.0) * nan).value)
    assert struct.pack("<d", h(1.0, neg_nan)) == struct.pack("<d", (fg.var(1.0) * neg_nan).value)
    assert struct.pack("<d", h(1.0, neg_nan)) != struct.pack("<d", h(1.0, nan))
    from conftest import require

    np = require("numpy", 'pip install "fungrad[fast]"')
    assert (f(1.0, np.float64(0.0)), f(1.0, np.float64(-0.0))) == (math.inf, -math.inf)
    assert (f(1.0, np.float32(0.0)), f(1.0, np.float32(-0.0))) == (math.inf, -math.inf)


def test_accuracy_reads_values_so_it_raises_under_jit_and_vmap_and_works_in_grad():
    def loss(w, xs, ys):
        s = [w * x for x in xs]
        return fg.nn.hinge(s, ys), fg.nn.accuracy(s, ys)

    xs, ys = [1.0, 2.0, -1.0], [1.0, 1.0, -1.0]
    (_, acc_pos), _ = fg.value_and_grad(loss, has_aux=True)(1.0, xs, ys)
    (_, acc_neg), _ = fg.value_and_grad(loss, has_aux=True)(-1.0, xs, ys)
    assert (acc_pos, acc_neg) == (1.0, 0.0)
    with pytest.raises(TypeError, match="nn.accuracy of a traced node"):
        fg.jit(fg.value_and_grad(loss, has_aux=True))(1.0, xs, ys)
    with pytest.raises(TypeError, match="nn.accuracy of a traced node"):
        fg.vmap(lambda s, y: fg.nn.accuracy([s], [y]))([1.0, -1.0], [1.0, 1.0])
    with pytest.raises(TypeError, match="nn.accuracy of a traced node"):
        fg.jit(lambda a, b: fg.nn.accuracy([[a, b]], [1]))(0.0, 1.0)
    assert fg.nn.accuracy([[0.0, 1.0]], [1]) == 1.0


def test_nodes_of_a_grad_inside_jit_compare_by_identity_as_without_jit():
    def f(x, y):
        nodes = [x, y]
        return nodes[nodes.index(y)] * x  # x == y: a node and a number without jit

    assert fg.grad(f)(2.0, 3.0) == fg.jit(fg.grad(f))(2.0, 3.0) == 3.0
    assert fg.vmap(fg.grad(f))([2.0], [3.0]) == [3.0]


def test_float_of_a_node_kept_from_an_earlier_transform_is_a_constant_there():
    kept = []

    def loss(w):
        previous = float(kept[-1]) if kept else 0.0  # a node of the last call's grad: ended
        out = (w - 3.0) ** 2 + 0.0 * previous
        kept.append(out)
        return out

    w = 1.0
    for _ in range(2):
        w = w - 0.1 * fg.grad(loss)(w)
    assert w == pytest.approx(1.0 + 0.4 + 0.32, rel=1e-15)


def test_export_of_an_int_array_computes_in_floats():
    from conftest import require

    np = require("numpy", 'pip install "fungrad[fast]"')
    g = fg.export(lambda x: fg.where(x, 0.5, -0.5) + fg.relu(x) * 0.25, 1.0, xp=np)
    assert g(np.array([-2, 0, 3])).tolist() == [-0.5, -0.5, 1.25]
