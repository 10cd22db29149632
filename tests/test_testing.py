"""check_grads and the PyTorch comparison helpers (fungrad.testing)."""

from __future__ import annotations

import collections
import math
import os
import sys

import pytest
from conftest import require_torch

import fungrad as fg
from fungrad import testing


def need_torch():
    return require_torch()


def _v(x):
    return x.value if fg.is_node(x) else x


def mlp(p, x=(0.5, -1.5)):
    h = [fg.tanh(p["w"][j][0] * x[0] + p["w"][j][1] * x[1] + p["b"][j]) for j in range(2)]
    return fg.sigmoid(p["v"][0] * h[0] + p["v"][1] * h[1] + p["c"])


MLP_PARAMS = {"w": [[0.3, -0.2], [0.8, 0.1]], "b": [0.05, -0.4], "v": [1.2, -0.7], "c": 0.2}

Pt = collections.namedtuple("Pt", "x y")


# --------------------------------------------------------------------------
# check_grads passes on correct functions


@pytest.mark.parametrize(
    "f, x",
    [
        (fg.tanh, 0.3),
        (fg.exp, 1.7),
        (fg.log, 0.25),
        (fg.sigmoid, -2.0),
        (fg.sqrt, 3.0),
        (fg.sin, 10.0),
        (lambda x: x**3, -1.2),
        (lambda x: x**x, 1.3),
        (lambda x: 2.0**x / (1 + x * x), 0.7),
        (lambda x: x.tanh() * x.exp(), 0.4),  # methods: the function is called on nodes
        (lambda x: 3 * x**2 - 4 * x + 5, 3.0),
        (lambda x: abs(x) * x, -0.6),
    ],
)
@pytest.mark.parametrize("order", [1, 2])
def test_check_grads_passes(f, x, order):
    assert fg.check_grads(f, (x,), order=order) is None


def test_check_grads_mlp_over_a_dict_pytree():
    fg.check_grads(mlp, MLP_PARAMS, order=1)
    fg.check_grads(mlp, (MLP_PARAMS,), order=2)


def test_check_grads_many_arguments_and_argnums():
    def f(x, p, data):
        return x * p.x**2 + fg.sin(p.y) * data["k"]

    args = (1.5, Pt(0.5, -2.0), {"k": 3.0, "label": "not a number"})
    fg.check_grads(f, args, order=2, argnums=(0, 1))
    fg.check_grads(f, args, argnums=1)
    with pytest.raises(TypeError, match=r"argument 2 at \['label'\] is str"):
        fg.check_grads(f, args)


def test_non_tuple_args_are_one_argument():
    fg.check_grads(lambda v: v[0] * v[1] ** 2, [2.0, 3.0], order=2)
    fg.check_grads(lambda x: x * x, fg.var(2.0))  # a node's value is used


def test_check_grads_large_values_and_ints():
    fg.check_grads(lambda x: x**2, 1e6)
    fg.check_grads(lambda x, n: x**n, (2, 3), order=2)


def test_order_must_be_1_or_2():
    for bad in (0, 3, True, 1.0):
        with pytest.raises(ValueError, match="order must be 1 or 2"):
            fg.check_grads(fg.tanh, 0.1, order=bad)
    with pytest.raises(ValueError, match="out of range"):
        fg.check_grads(fg.tanh, (0.1,), argnums=1)


# --------------------------------------------------------------------------
# check_grads catches wrong derivatives


# primitives with deliberately wrong rules, declared through the public API
bad_tanh = fg.primitive("testing_bad_tanh", math.tanh, vjp=(lambda g, ans, x: g * (1.0 + ans * ans),))
bad_exp = fg.primitive("testing_bad_exp", math.exp, vjp=(lambda g, ans, x: g * 2.0 * ans,))
# right on floats, but it reads the value, so a nested pass sees a constant
flat_tanh = fg.primitive(
    "testing_flat_tanh", math.tanh, vjp=(lambda g, ans, x: g * (1.0 - math.tanh(_v(x)) ** 2),)
)
zero_sin = fg.primitive("testing_zero_sin", math.sin, vjp=(lambda g, ans, x: g * 0.0,))


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_wrong_first_derivative_names_the_leaf(mode):
    def f(p):
        return p["w"][0] * 2.0 + bad_tanh(p["w"][1]) * p["b"]

    params = {"w": [0.5, 0.7], "b": 1.5}
    with pytest.raises(AssertionError) as e:
        fg.check_grads(f, params, modes=(mode,))
    msg = str(e.value)
    kind = "" if mode == "rev" else " forward-mode"
    assert f"1 of 3 order 1{kind} derivatives disagree" in msg
    assert "argument 0 at ['w'][1]: analytic" in msg
    assert "['w'][0]" not in msg and "['b']" not in msg
    t = math.tanh(0.7)
    assert f"analytic {1.5 * (1 + t * t)!r}" in msg
    assert "numeric 0.95210938" in msg  # 1.5 * (1 - tanh(0.7)**2)


def test_wrong_derivative_in_a_namedtuple_argument():
    with pytest.raises(AssertionError, match=r"argument 1 at \.y: analytic"):
        fg.check_grads(lambda a, p: a * p.x + bad_exp(p.y), (1.0, Pt(2.0, 0.5)))


def test_wrong_second_derivative_only():
    fg.check_grads(flat_tanh, 0.5, order=1)
    with pytest.raises(AssertionError) as e:
        fg.check_grads(lambda v: flat_tanh(v["a"]) * v["b"], {"a": 0.5, "b": 2.0}, order=2)
    msg = str(e.value)
    assert "1 of 4 order 2 derivatives disagree" in msg
    assert "d/d(argument 0 at ['a']) of d/d(argument 0 at ['a']): analytic 0.0, numeric -1.4" in msg


def test_a_kink_disagrees_with_finite_differences():
    with pytest.raises(AssertionError, match=r"argument 0: analytic 0\.0, numeric 0\.5"):
        fg.check_grads(fg.relu, 0.0)


def test_many_failures_are_summarized():
    with pytest.raises(AssertionError) as e:
        fg.check_grads(lambda v: sum(zero_sin(x) for x in v), [0.1 * i for i in range(1, 15)])
    msg = str(e.value)
    assert "14 of 14 order 1" in msg and "... and 4 more" in msg
    assert msg.count("analytic") == 10


def test_eps_and_tolerances_are_used():
    with pytest.raises(AssertionError, match="order 1"):
        fg.check_grads(fg.exp, 1.0, eps=0.5)  # a crude step misses e by 4%
    fg.check_grads(fg.exp, 1.0, eps=0.5, rtol=0.05)


# --------------------------------------------------------------------------
# PyTorch


def test_torch_available_and_require_torch():
    torch = need_torch()
    assert testing.torch_available() is True
    assert testing.require_torch() is torch


def test_torch_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert testing.torch_available() is False
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        testing.require_torch()
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        testing.compare_with_torch(fg.tanh, None, 0.5)


def test_compare_with_torch_same_function():
    need_torch()

    def f(p):
        h = (p["w"][0] * p["x"] + p["w"][1]).tanh()
        return (h * h).exp() / (1 + abs(p["b"])) - p["b"].sigmoid() + p["x"] ** 3

    d = testing.compare_with_torch(f, None, {"w": [0.5, -0.3], "x": 2.0, "b": -0.7})
    assert 0.0 <= d < 1e-12


def test_compare_with_torch_two_spellings_and_many_args():
    torch = need_torch()
    d = testing.compare_with_torch(
        lambda a, b, k: fg.tanh(a * b) + fg.log(b) * k["c"],
        lambda a, b, k: torch.tanh(a * b) + torch.log(b) * k["c"],
        (0.3, 2.5, {"c": 4.0}),
        argnums=(0, 1),
    )
    assert d < 1e-12


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sigmoid", "sqrt", "sin", "cos", "relu", "abs"])
@pytest.mark.parametrize("x", [-1.5, 0.0, 0.75, 40.0])
def test_primitives_agree_with_torch(name, x):
    torch = need_torch()
    d = testing.compare_with_torch(getattr(fg, name), getattr(torch, name), x)  # asserts rtol 1e-7
    assert d <= 1e-9 * max(1.0, abs(getattr(fg, name)(x)))


def test_compare_with_torch_unused_leaves_and_nans():
    torch = need_torch()
    assert testing.compare_with_torch(lambda v: v[0] * 2.0, None, [1.0, 5.0]) == 0.0
    # log(-1) is nan on both sides, and its derivative -1 on both
    assert testing.compare_with_torch(fg.log, torch.log, -1.0) == 0.0


def test_compare_with_torch_reports_differences():
    torch = need_torch()
    with pytest.raises(AssertionError, match=r"value: fungrad 2\.0, torch 3\.0"):
        testing.compare_with_torch(lambda x: x * 2.0, lambda x: x * 3.0, 1.0)
    assert testing.compare_with_torch(lambda x: x * 2.0, lambda x: x * 3.0, 1.0, check=False) == 1.0
    with pytest.raises(AssertionError, match=r"gradient at argument 0 at \['b'\]: fungrad 0\.0, torch 0\.001"):
        testing.compare_with_torch(
            lambda p: p["a"] + p["b"] * 0.0, lambda p: p["a"] + p["b"] * 1e-3, {"a": 1.0, "b": 0.0}
        )
    with pytest.raises(TypeError, match="one-element tensor"):
        testing.compare_with_torch(lambda x: x, lambda x: torch.stack([x, x]), 1.0)
    d = testing.compare_with_torch(fg.log, lambda x: x * 0.0 + 1.0, -1.0, check=False)
    assert math.isnan(d)  # nan on one side only
    with pytest.raises(AssertionError, match="value: fungrad nan, torch 1.0"):
        testing.compare_with_torch(fg.log, lambda x: x * 0.0 + 1.0, -1.0)


def test_check_grads_checks_nothing_silently_where_finite_differences_fail():
    wrong = fg.primitive("testing_wrong_at_overflow", lambda x: 1.7e308 * x, vjp=(lambda g, a, x: -42.0 * g,))
    # the finite difference overflows to inf: it agreed with anything within inf
    with pytest.raises(AssertionError, match="analytic -42.0, but the finite difference is inf, so nothing is checked"):
        fg.check_grads(wrong, (1.05746,))
    # at the edge of the domain the difference is nan: a nan rule agreed with it
    with pytest.raises(AssertionError, match="but the finite difference is nan"):
        fg.check_grads(fg.log, (1e-6,))
    fg.check_grads(fg.log, (1e-6,), eps=1e-9)  # a step inside the domain checks it
    with pytest.raises(AssertionError, match=r"compare_with_torch: value: fungrad inf, torch -inf"):
        fg.testing.compare_with_torch(lambda x: x * 0 + math.inf, lambda x: x * 0 - math.inf, (1.0,))
    for bad in ({"eps": 0.0}, {"eps": -1e-5}, {"eps": math.nan}, {"rtol": -1.0}, {"atol": math.inf}):
        with pytest.raises(ValueError, match="must be a finite number"):
            fg.check_grads(fg.sin, (1.0,), **bad)


def test_check_grads_catches_a_rule_that_ignores_its_cotangent():
    forgets = fg.primitive("testing_sin_forgets_g", math.sin, vjp=(lambda g, a, x: fg.cos(x),))
    squares = fg.primitive("testing_sin_squares_g", math.sin, vjp=(lambda g, a, x: g * g * fg.cos(x),))
    for p in (forgets, squares):
        assert fg.grad(p)(1.0) == math.cos(1.0)  # right alone, at a cotangent of 1
        assert fg.grad(lambda x: 3.0 * p(x))(1.0) != 3.0 * math.cos(1.0)  # wrong inside a larger function
        with pytest.raises(AssertionError, match="a derivative rule does not scale with the cotangent g"):
            fg.check_grads(p, (1.0,))
    right = fg.primitive("testing_sin_right", math.sin, vjp=(lambda g, a, x: g * fg.cos(x),))
    fg.check_grads(right, (1.0,), order=2)
    # a rule whose scaled cotangent overflows is not called wrong for it
    big = fg.primitive("testing_big_rule", lambda x: 1e307 * x, vjp=(lambda g, a, x: (g * 1e308) / 10.0,))
    fg.check_grads(big, (1.0,), eps=1e-3)

    # a clip of the gradient is not linear by design: linear=False checks the rest
    @fg.custom_vjp
    def clip_gradient(x):
        return x

    clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (fg.maximum(-1.0, fg.minimum(1.0, g)),))
    with pytest.raises(AssertionError, match="does not scale with the cotangent"):
        fg.check_grads(clip_gradient, (2.0,), modes=("rev",))
    fg.check_grads(clip_gradient, (2.0,), linear=False, modes=("rev",))  # forward mode refuses it


def test_a_rule_that_returns_no_real_number_is_named():
    cplx = fg.primitive("testing_complex_rule", math.sin, vjp=(lambda g, a, x: 1j * g,))
    with pytest.raises(TypeError, match=r"primitive 'testing_complex_rule': the vjp rule of argument 0 returned complex"):
        fg.grad(cplx)(1.0)
