import copy
import math
import os
from typing import NamedTuple

import attrs
import pytest
from conftest import require_torch

from fungrad import optim, tree


def need_torch():
    return require_torch()


class Pt(NamedTuple):
    x: float
    y: float


@attrs.frozen
class Lin:
    w: list
    b: float
    name: str = tree.static(default="lin")


def nested(scale=1.0):
    return {
        "lin": Lin([1.0 * scale, -2.0 * scale], 0.5 * scale),
        "pt": Pt(3.0 * scale, -0.25 * scale),
        "t": (1.5 * scale, [2.0 * scale]),
    }


# --- sgd -------------------------------------------------------------------


def test_sgd_values():
    params = {"w": [1.0, 2.0, -3.0], "b": 0.5}
    grads = {"w": [0.5, -1.0, 0.0], "b": 2.0}
    assert optim.sgd(params, grads, lr=0.1) == {"w": [1.0 - 0.1 * 0.5, 2.0 + 0.1, -3.0], "b": 0.5 - 0.2}
    assert optim.sgd([4.0], [10.0], 0.05) == [3.5]


def test_sgd_keeps_containers_and_static_fields():
    new = optim.sgd(nested(), nested(2.0), 0.25)
    assert new == {"lin": Lin([0.5, -1.0], 0.25), "pt": Pt(1.5, -0.125), "t": (0.75, [1.0])}
    assert type(new["pt"]) is Pt and new["lin"].name == "lin"


def test_sgd_is_pure():
    params, grads = nested(), nested(3.0)
    p0, g0 = copy.deepcopy(params), copy.deepcopy(grads)
    new = optim.sgd(params, grads, 0.1)
    assert params == p0 and grads == g0
    assert new["lin"].w is not params["lin"].w and new["t"][1] is not params["t"][1]


@pytest.mark.parametrize(
    "params, grads",
    [
        ({"w": [1.0, 2.0]}, {"w": [1.0]}),
        ({"w": 1.0}, {"v": 1.0}),
        ([1.0, 2.0], (1.0, 2.0)),
        (Lin([1.0], 0.0), Lin([1.0], 0.0, name="other")),
    ],
)
def test_sgd_names_both_structures_on_mismatch(params, grads):
    with pytest.raises(ValueError) as e:
        optim.sgd(params, grads, 0.1)
    msg = str(e.value)
    assert repr(tree.structure(params)) in msg and repr(tree.structure(grads)) in msg
    assert "grads must have the structure of params" in msg


# --- SGD and Adam by hand ----------------------------------------------------


def test_sgd_without_momentum_matches_sgd_and_counts_steps():
    opt = optim.SGD(0.1)
    params, grads = nested(), nested(-1.0)
    state = opt.init(params)
    assert state == optim.SGDState(0, None)
    new, state = opt.update(params, grads, state)
    assert new == optim.sgd(params, grads, 0.1) and state == optim.SGDState(1, None)


def test_sgd_momentum_first_steps_by_hand():
    opt = optim.SGD(0.1, momentum=0.9)
    p, s = opt.update({"a": 1.0, "b": -2.0}, {"a": 2.0, "b": 0.5}, opt.init({"a": 1.0, "b": -2.0}))
    # v1 = g1; p1 = p0 - lr * v1
    assert p == {"a": 1.0 - 0.1 * 2.0, "b": -2.0 - 0.1 * 0.5}
    assert s == optim.SGDState(1, {"a": 2.0, "b": 0.5})
    p, s = opt.update(p, {"a": -1.0, "b": 0.5}, s)
    # v2 = 0.9 * v1 + g2
    va, vb = 0.9 * 2.0 - 1.0, 0.9 * 0.5 + 0.5
    assert s.velocity == {"a": va, "b": vb} and s.step == 2
    assert p == {"a": 0.8 - 0.1 * va, "b": -2.05 - 0.1 * vb}


def test_sgd_nesterov_first_steps_by_hand():
    opt = optim.SGD(0.5, momentum=0.5, nesterov=True)
    p, s = opt.update([1.0], [2.0], opt.init([1.0]))
    # v1 = 2; step uses g + m * v = 2 + 1 = 3
    assert p == [1.0 - 0.5 * 3.0] and s.velocity == [2.0]
    p, s = opt.update(p, [4.0], s)
    # v2 = 0.5 * 2 + 4 = 5; step 4 + 2.5 = 6.5
    assert p == [-0.5 - 0.5 * 6.5] and s.velocity == [5.0]


def test_adam_first_two_steps_by_hand():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    opt = optim.Adam(lr, b1, b2, eps)
    g1, g2 = {"w": 4.0, "v": -0.01}, {"w": -1.0, "v": 0.03}
    p0 = {"w": 1.0, "v": 2.0}
    p1, s1 = opt.update(p0, g1, opt.init(p0))
    for k in p0:
        # after bias correction the first step is lr * g / (|g| + eps)
        assert p1[k] == pytest.approx(p0[k] - lr * g1[k] / (abs(g1[k]) + eps), rel=1e-13, abs=1e-15)
        assert s1.mu[k] == pytest.approx((1 - b1) * g1[k], rel=1e-15)
        assert s1.nu[k] == pytest.approx((1 - b2) * g1[k] ** 2, rel=1e-15)
    p2, s2 = opt.update(p1, g2, s1)
    for k in p0:
        m = b1 * (1 - b1) * g1[k] + (1 - b1) * g2[k]
        v = b2 * (1 - b2) * g1[k] ** 2 + (1 - b2) * g2[k] ** 2
        mhat, vhat = m / (1 - b1**2), v / (1 - b2**2)
        assert p2[k] == pytest.approx(p1[k] - lr * mhat / (math.sqrt(vhat) + eps), rel=1e-13, abs=1e-15)
    assert (s1.step, s2.step) == (1, 2)


def test_adam_init_and_state_types():
    s = optim.Adam().init(nested())
    assert s.step == 0 and s.mu == s.nu == nested(0.0)
    assert tree.registered(optim.AdamState) and tree.registered(optim.SGDState)
    assert tree.type_name(optim.AdamState) == "fungrad.optim.AdamState"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.step = 3


def test_update_rejects_mismatched_grads_and_state():
    with pytest.raises(ValueError, match="grads must have the structure of params"):
        optim.Adam().update([1.0], [1.0, 2.0], optim.Adam().init([1.0]))
    with pytest.raises(ValueError, match="grads must have the structure of params"):
        optim.SGD(0.1, momentum=0.5).update({"a": 1.0}, {"b": 1.0}, optim.SGD(0.1, momentum=0.5).init({"a": 1.0}))
    with pytest.raises(ValueError, match="moments have 1 leaves, params have 2"):
        optim.Adam().update([1.0, 2.0], [1.0, 2.0], optim.Adam().init([1.0]))
    with pytest.raises(ValueError, match="velocity has 1 leaves, params have 2"):
        opt = optim.SGD(0.1, momentum=0.5)
        opt.update([1.0, 2.0], [1.0, 2.0], opt.init([1.0]))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: optim.SGD(-0.1), "lr must be a number >= 0"),
        (lambda: optim.SGD(math.nan), "lr must be a number >= 0"),
        (lambda: optim.SGD(0.1, momentum=1.0), "momentum must be in"),
        (lambda: optim.SGD(0.1, momentum=-0.5), "momentum must be in"),
        (lambda: optim.SGD(0.1, nesterov=True), "nesterov=True needs a momentum"),
        (lambda: optim.Adam(-1.0), "lr must be a number >= 0"),
        (lambda: optim.Adam(b1=1.0), "b1 must be in"),
        (lambda: optim.Adam(b2=-0.1), "b2 must be in"),
        (lambda: optim.Adam(eps=-1e-8), "eps must be >= 0"),
        (lambda: optim.linear(1.0, 0.0, 0), "steps must be an int >= 1"),
        (lambda: optim.cosine(1.0, 2.5), "steps must be an int >= 1"),
        (lambda: optim.exponential(1.0, 0.5, every=0), "every must be an int >= 1"),
    ],
)
def test_bad_hyper_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --- purity ----------------------------------------------------------------


@pytest.mark.parametrize(
    "opt",
    [optim.SGD(0.1), optim.SGD(0.1, momentum=0.9), optim.SGD(0.1, momentum=0.9, nesterov=True), optim.Adam(0.1)],
    ids=["sgd", "momentum", "nesterov", "adam"],
)
def test_optimizers_are_pure(opt):
    params, grads = nested(), nested(-0.5)
    state = opt.init(params)
    state, _ = opt.update(params, grads, state)[1], None  # a state with non-zero memory
    before = copy.deepcopy((params, grads, state))
    new, new_state = opt.update(params, grads, state)
    assert (params, grads, state) == before
    assert new != params and new_state != state and new_state.step == state.step + 1
    # a second call with the same inputs gives the same answer: nothing hidden changed
    assert opt.update(params, grads, state) == (new, new_state)
    # containers are new objects, so mutating the result cannot reach the input
    assert new["lin"].w is not params["lin"].w
    new["lin"].w[0] = 1e9
    assert params == before[0]


# --- schedules -------------------------------------------------------------


def test_constant():
    s = optim.constant(0.3)
    assert [s(k) for k in (0, 1, 10**6)] == [0.3, 0.3, 0.3]


def test_linear_is_micrograds_moons_schedule():
    s = optim.linear(1.0, 0.1, 100)
    assert all(s(k) == 1.0 - 0.9 * k / 100 for k in range(100))
    assert (s(100), s(101), s(10**6)) == (0.1, 0.1, 0.1)
    up = optim.linear(0.0, 2.0, 4)
    assert [up(k) for k in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_exponential():
    s = optim.exponential(0.8, 0.5)
    assert [s(k) for k in range(4)] == [0.8, 0.4, 0.2, 0.1]
    s = optim.exponential(1.0, 0.1, every=3)
    assert [s(k) for k in range(7)] == [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1 * 0.1]


def test_cosine():
    s = optim.cosine(0.1, 10, final=0.01)
    assert s(0) == 0.1 and s(10) == 0.01 and s(11) == 0.01
    assert s(5) == pytest.approx(0.055, rel=1e-15)
    assert s(2) == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 0.2)), rel=1e-14)
    assert s(3) + s(7) == pytest.approx(0.11, rel=1e-14)  # symmetric about the midpoint
    vals = [s(k) for k in range(11)]
    assert vals == sorted(vals, reverse=True)
    assert optim.cosine(2.0, 4)(4) == 0.0


def test_optimizers_read_the_schedule_at_each_step():
    seen = []

    def sched(step):
        seen.append(step)
        return [0.5, 0.25, 0.125][step]

    opt = optim.SGD(sched)
    p, s = [1.0], opt.init([1.0])
    for _ in range(3):
        p, s = opt.update(p, [1.0], s)
    assert seen == [0, 1, 2] and p == [1.0 - 0.5 - 0.25 - 0.125]
    a, b = optim.Adam(optim.constant(0.1)), optim.Adam(0.1)
    pa = pb = {"w": 2.0}
    sa, sb = a.init(pa), b.init(pb)
    for g in (1.0, -3.0, 0.5):
        pa, sa = a.update(pa, {"w": g}, sa)
        pb, sb = b.update(pb, {"w": g}, sb)
    assert (pa, sa) == (pb, sb)


# --- against PyTorch ---------------------------------------------------------


def rosen_grad(p):
    """Gradient of (1-x)^2 + 100 (y-x^2)^2, written out."""
    x, y = p["x"], p["y"]
    return {"x": -2.0 * (1.0 - x) - 400.0 * x * (y - x * x), "y": 200.0 * (y - x * x)}


def rosen(p):
    x, y = p["x"], p["y"]
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def bowl_grad(p):
    """Gradient of sum_i (w_i - c_i)^2 * (1 + w_i^2 / 4): a small non-quadratic problem."""
    c = (1.0, -2.0, 0.5)
    return {
        "w": [2 * (w - ci) * (1 + w * w / 4) + (w - ci) ** 2 * w / 2 for w, ci in zip(p["w"], c)],
        "b": 2 * (p["b"] - 3.0),
    }


TORCH_CASES = [
    # name, torch's optimizer and keywords, ours; both given the learning rate
    ("sgd", lambda t, lr: (t.optim.SGD, {"lr": lr}), lambda lr: optim.SGD(lr)),
    ("momentum", lambda t, lr: (t.optim.SGD, {"lr": lr, "momentum": 0.9}), lambda lr: optim.SGD(lr, momentum=0.9)),
    (
        "nesterov",
        lambda t, lr: (t.optim.SGD, {"lr": lr, "momentum": 0.8, "nesterov": True}),
        lambda lr: optim.SGD(lr, momentum=0.8, nesterov=True),
    ),
    ("adam", lambda t, lr: (t.optim.Adam, {"lr": lr}), lambda lr: optim.Adam(lr)),
    (
        "adam-betas",
        lambda t, lr: (t.optim.Adam, {"lr": lr, "betas": (0.5, 0.9), "eps": 1e-6}),
        lambda lr: optim.Adam(lr, b1=0.5, b2=0.9, eps=1e-6),
    ),
]

PROBLEMS = {
    # name: start, gradient, learning rate (Rosenbrock's steep walls need a small one)
    "bowl": ({"w": [0.3, 0.7, -1.1], "b": -0.4}, lambda p: bowl_grad(p), 0.02),
    "rosenbrock": ({"x": -1.2, "y": 1.0}, lambda p: rosen_grad(p), 1e-3),
}


@pytest.mark.parametrize("name, make_torch, make_ours", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_matches_torch_over_20_steps(name, make_torch, make_ours, problem):
    torch = need_torch()
    params, grad_fn, lr = PROBLEMS[problem]
    leaves, td = tree.flatten(params)
    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in leaves]
    cls, kw = make_torch(torch, lr)
    topt = cls(ts, **kw)
    opt = make_ours(lr)
    state = opt.init(params)
    for _ in range(20):
        # both take the same gradient, from the same params, so only the update rules are compared
        g = tree.leaves(grad_fn(params))
        for t, gi in zip(ts, g):
            t.grad = torch.tensor(gi, dtype=torch.float64)
        topt.step()
        params, state = opt.update(params, tree.unflatten(td, g), state)
        ours = tree.leaves(params)
        theirs = [t.item() for t in ts]
        assert all(math.isfinite(v) for v in theirs)
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-14)
        # follow torch's own trajectory so that rounding differences cannot build up
        params = tree.unflatten(td, theirs)
    assert state.step == 20
    assert params != PROBLEMS[problem][0]


def test_schedule_matches_torch_lambda_lr():
    torch = need_torch()
    p = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.Adam([p], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(topt, lambda k: 1.0 - 0.9 * k / 20)
    opt = optim.Adam(optim.linear(0.1, 0.01, 20))
    params, state = [2.0], opt.init([2.0])
    for k in range(20):
        g = 3 * params[0] ** 2 - 1.0
        p.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
        sched.step()
        params, state = opt.update(params, [g], state)
        assert params[0] == pytest.approx(p.item(), rel=1e-12, abs=1e-14)
        params = [p.item()]


def test_need_torch_fails_under_ci(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *a, **kw):
        if name == "torch":
            raise ImportError("no torch here")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        need_torch()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        need_torch()


# --- convergence -------------------------------------------------------------

ALL = [
    optim.SGD(0.1),
    optim.SGD(0.05, momentum=0.9),
    optim.SGD(0.05, momentum=0.9, nesterov=True),
    optim.Adam(0.1),
    optim.Adam(optim.cosine(0.2, 1000, 1e-3)),
]


@pytest.mark.parametrize("opt", ALL, ids=["sgd", "momentum", "nesterov", "adam", "adam-cosine"])
def test_converges_on_a_parabola(opt):
    # f = sum (p - c)^2 over a nested tree, minimum at c
    c = nested(-1.5)
    params = nested()
    state = opt.init(params)
    for _ in range(1000):
        grads = tree.map(lambda p, ci: 2.0 * (p - ci), params, c)
        params, state = opt.update(params, grads, state)
    assert tree.leaves(params) == pytest.approx(tree.leaves(c), abs=1e-6)
    assert tree.structure(params) == tree.structure(c)


@pytest.mark.parametrize(
    "opt, steps",
    [
        (optim.Adam(0.02), 5000),
        (optim.SGD(1e-3, momentum=0.9), 10000),
        (optim.SGD(1e-3, momentum=0.9, nesterov=True), 6000),
    ],
    ids=["adam", "momentum", "nesterov"],
)
def test_converges_on_rosenbrock(opt, steps):
    params = {"x": -1.2, "y": 1.0}  # the classic start, on the far side of the banana valley
    state = opt.init(params)
    for _ in range(steps):
        params, state = opt.update(params, rosen_grad(params), state)
    # the minimum is (1, 1), where f = 0
    assert params["x"] == pytest.approx(1.0, abs=1e-6) and params["y"] == pytest.approx(1.0, abs=1e-6)
    assert rosen(params) < 1e-12


def test_sgd_function_descends_rosenbrock():
    params = {"x": -1.2, "y": 1.0}
    for _ in range(30000):
        params = optim.sgd(params, rosen_grad(params), 1e-3)
    assert params["x"] == pytest.approx(1.0, abs=1e-4) and params["y"] == pytest.approx(1.0, abs=1e-4)


# --- with engine nodes -------------------------------------------------------


def test_steps_are_differentiable_with_engine_nodes():
    import fungrad as fg

    # one SGD step p - lr * 2p has derivative 1 - 2 lr
    opt = optim.SGD(0.1, momentum=0.9)
    assert fg.grad(lambda x: opt.update([x], [2 * x], opt.init([x]))[0][0])(3.0) == pytest.approx(0.8)
    assert fg.grad(lambda x: optim.sgd({"w": x}, {"w": x * x}, 0.1)["w"])(3.0) == pytest.approx(1 - 0.2 * 3.0)
    # Adam's first step is x - lr * sign(x) (up to eps): derivative 1
    adam = optim.Adam(0.1)
    d = fg.grad(lambda x: adam.update({"w": x}, {"w": 2 * x}, adam.init({"w": x}))[0]["w"])(3.0)
    assert d == pytest.approx(1.0, abs=1e-6)
