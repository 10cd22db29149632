import copy
import decimal
import fractions
import json
import math
import os
import re
from typing import NamedTuple

import attrs
import pytest
from conftest import require, require_torch

import fungrad as fg
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
    with pytest.raises(ValueError, match=r"moments are not shaped like params; they differ: a list of 2 against a list of 1"):
        optim.Adam().update([1.0, 2.0], [1.0, 2.0], optim.Adam().init([1.0]))
    with pytest.raises(ValueError, match=r"velocity is not shaped like params; they differ: a list of 2 against a list of 1"):
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


# slow: the first torch.optim optimizer imports torch._dynamo, 2 s that no fast test needs otherwise
@pytest.mark.slow
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


@pytest.mark.slow  # torch.optim imports torch._dynamo: 2 s
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


@pytest.mark.slow
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
@pytest.mark.slow
def test_converges_on_rosenbrock(opt, steps):
    params = {"x": -1.2, "y": 1.0}  # the classic start, on the far side of the banana valley
    state = opt.init(params)
    for _ in range(steps):
        params, state = opt.update(params, rosen_grad(params), state)
    # the minimum is (1, 1), where f = 0
    assert params["x"] == pytest.approx(1.0, abs=1e-6) and params["y"] == pytest.approx(1.0, abs=1e-6)
    assert rosen(params) < 1e-12


@pytest.mark.slow
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


# --- the same bits as before the optimizers became transforms -----------------


def _trajectory_cases():
    return {
        "sgd": lambda: optim.SGD(0.02),
        "momentum": lambda: optim.SGD(0.02, momentum=0.9),
        "nesterov": lambda: optim.SGD(0.02, momentum=0.8, nesterov=True),
        "momentum_sched": lambda: optim.SGD(optim.cosine(0.03, 30, 0.001), momentum=0.7),
        "adam": lambda: optim.Adam(0.05),
        "adam_betas": lambda: optim.Adam(0.01, b1=0.5, b2=0.9, eps=1e-6),
        "adam_sched": lambda: optim.Adam(optim.linear(0.1, 0.01, 40)),
    }


def test_trajectories_are_bit_identical_to_the_recorded_ones():
    # recorded with the optimizers as they were before they were built on Transform:
    # 50 steps of params and state leaves, as repr text (exact floats)
    with open(os.path.join(os.path.dirname(__file__), "data", "optim_trajectories.json")) as f:
        ref = json.load(f)
    problems = {"bowl": ({"w": [0.3, 0.7, -1.1], "b": -0.4}, bowl_grad), "rosen": ({"x": -1.2, "y": 1.0}, rosen_grad)}
    checked = 0
    for cname, make in _trajectory_cases().items():
        for pname, (p, grad_fn) in problems.items():
            for wrap in (lambda o: o, lambda o: optim.Optimizer(o.transform)):
                opt = wrap(make())
                s = opt.init(p)
                q = p
                for row in ref[f"{cname}/{pname}"]:
                    q, s = opt.update(q, grad_fn(q), s)
                    assert [repr(v) for v in tree.leaves(q) + tree.leaves(s)] == row
                checked += 1
    q = {"x": -1.2, "y": 1.0}
    for row in ref["sgd_fn/rosen"]:
        q = optim.sgd(q, rosen_grad(q), 1e-3)
        assert [repr(v) for v in tree.leaves(q)] == row
    assert checked == 28


def test_sgd_class_equals_sgd_function_bit_for_bit_also_at_inf_and_signed_zero():
    params = [math.inf, -0.0, 0.0, -0.0, 1e308, 3.0]
    grads = [1.0, 0.0, 0.0, -0.0, -1e308, math.nan]
    a = optim.sgd(params, grads, 2.0)
    b = optim.SGD(2.0).update(params, grads, optim.SGD(2.0).init(params))[0]
    assert [repr(v) for v in a] == [repr(v) for v in b] == ["inf", "-0.0", "0.0", "0.0", "inf", "nan"]


# --- transforms and chain ----------------------------------------------------


def test_chain_of_one_optimizer_is_that_optimizer():
    for opt in (optim.SGD(0.1, momentum=0.9, nesterov=True), optim.Adam(0.05)):
        chained = optim.Optimizer(optim.chain(opt))
        p1 = p2 = nested()
        s1, s2 = opt.init(p1), chained.init(p2)
        assert s2 == optim.ChainState((s1,))
        for k in range(5):
            g = nested(0.5 - k)
            p1, s1 = opt.update(p1, g, s1)
            p2, s2 = chained.update(p2, g, s2)
            assert p1 == p2 and s2.states == (s1,)


def test_clip_by_global_norm_by_hand():
    t = optim.clip_by_global_norm(2.0)
    grads = {"a": [3.0, 0.0], "b": -4.0}  # norm 5
    u, s = t.update(grads, t.init(grads), grads)
    coef = 2.0 / (5.0 + 1e-6)
    assert u == {"a": [3.0 * coef, 0.0], "b": -4.0 * coef} and s is None
    assert t.update({"a": [0.6, 0.0], "b": 0.8}, None, grads)[0] == {"a": [0.6, 0.0], "b": 0.8}  # norm 1: as is
    # an inf norm scales by 0 (inf * 0 = nan) and a nan norm gives nan, as torch's clip_grad_norm_ does
    u, _ = t.update([math.inf, 1.0], None, [0.0, 0.0])
    assert math.isnan(u[0]) and u[1] == 0.0
    assert all(math.isnan(v) for v in t.update([math.nan, 1.0], None, [0.0, 0.0])[0])
    assert optim.clip_by_global_norm(1.0).update({}, None, {}) == ({}, None)


def test_add_decayed_weights_scale_and_schedule_by_hand():
    p, g = {"w": [2.0, -4.0]}, {"w": [1.0, 1.0]}
    assert optim.add_decayed_weights(0.5).update(g, None, p)[0] == {"w": [2.0, -1.0]}
    assert optim.scale(-0.25).update(g, None, p)[0] == {"w": [-0.25, -0.25]}
    t = optim.scale_by_schedule(lambda k: [1.0, 0.5, 0.25][k])
    s = t.init(p)
    seen = []
    for _ in range(3):
        u, s = t.update(g, s, p)
        seen.append(u["w"][0])
    assert seen == [1.0, 0.5, 0.25] and s == optim.CountState(3)


def test_chain_clip_decay_momentum_by_hand():
    opt = optim.Optimizer(optim.chain(optim.clip_by_global_norm(1.0), optim.add_decayed_weights(0.1), optim.SGD(0.5, momentum=0.9)))
    p = [1.0, -1.0]
    s = opt.init(p)
    assert s == optim.ChainState((None, None, optim.SGDState(0, [0.0, 0.0])))
    p1, s = opt.update(p, [30.0, 40.0], s)
    c = 1.0 / (50.0 + 1e-6)
    d = [30.0 * c + 0.1 * 1.0, 40.0 * c + 0.1 * -1.0]  # clipped, then decayed; v1 = d
    assert p1 == [1.0 - 0.5 * d[0], -1.0 - 0.5 * d[1]]
    assert s.states[2] == optim.SGDState(1, d)


def test_chain_states_are_checkpointed(tmp_path):
    import fungrad as fg

    opt = optim.Optimizer(optim.chain(optim.clip_by_global_norm(1.0), optim.scale_by_schedule(optim.constant(0.5)), optim.Adam(0.1)))
    p = {"w": [1.0, -2.0], "b": 0.5}
    s = opt.init(p)
    p, s = opt.update(p, {"w": [3.0, -1.0], "b": 0.25}, s)
    fg.checkpoint.save(tmp_path / "opt.json", {"params": p, "state": s})
    back = fg.checkpoint.load(tmp_path / "opt.json")
    assert back["state"] == s and type(back["state"]) is optim.ChainState
    assert type(back["state"].states[1]) is optim.CountState and back["state"].states[1].step == 1
    # training resumes from the loaded state exactly as from the live one
    g = {"w": [0.5, 0.5], "b": -1.0}
    assert opt.update(p, g, back["state"]) == opt.update(p, g, s)
    assert tree.registered(optim.ChainState) and tree.registered(optim.CountState)


def test_a_transform_given_the_optimizer_argument_order_says_so():
    t = optim.chain(optim.clip_by_global_norm(1.0))
    params, grads = [1.0], [2.0]
    with pytest.raises(TypeError, match=r"params is ChainState .* looks like a state. A transform's update is update\(grads, state, params\)"):
        t.update(params, grads, t.init(params))  # (params, grads, state): the optimizer's order
    with pytest.raises(TypeError, match=r"params is NoneType None, which looks like a state"):
        optim.scale(1.0).update(params, grads, None)
    with pytest.raises(TypeError, match="state must be the None that this transform's init returned, got list"):
        optim.scale(1.0).update(params, grads, params)
    with pytest.raises(TypeError, match="state must be the ChainState that this transform's init returned, got NoneType"):
        t.update(params, None, grads)
    with pytest.raises(TypeError, match="state must be the AdamState"):
        optim.Adam(0.1).update(params, grads, optim.SGDState(0, None))
    with pytest.raises(TypeError, match="chain: expected a Transform or an optimizer"):
        optim.chain(optim.Adam(0.1), lambda g: g)
    with pytest.raises(TypeError, match="Optimizer: expected a Transform"):
        optim.Optimizer(optim.Adam(0.1))
    with pytest.raises(ValueError, match="chain: needs at least one transform"):
        optim.chain()
    with pytest.raises(ValueError, match=r"holds 1 states for 2 transforms"):
        optim.chain(optim.scale(1.0), optim.scale(2.0)).update([1.0], optim.ChainState((None,)), [1.0])


def test_transforms_are_differentiable_with_engine_nodes():
    import fungrad as fg

    # clip at norm |2x| > 1: the update is 2x / (|2x| + 1e-6), about sign(x): derivative about 0
    t = optim.chain(optim.clip_by_global_norm(1.0), optim.SGD(0.1))
    opt = optim.Optimizer(t)
    d = fg.grad(lambda x: opt.update([x], [2 * x], opt.init([x]))[0][0])(3.0)
    assert d == pytest.approx(1.0, abs=1e-6)
    d = fg.grad(lambda x: optim.add_decayed_weights(0.5).update([x * x], None, [x])[0][0])(3.0)
    assert d == 6.5
    # the learning rate may be a node too: d/dlr of p - lr * g is -g
    assert fg.grad(lambda lr: optim.sgd([1.0], [2.0], lr)[0])(0.1) == -2.0
    assert fg.grad(lambda lr: optim.SGD(lr, momentum=0.5).update([1.0], [2.0], optim.SGDState(0, [1.0]))[0][0])(0.1) == -2.5
    adam_first = fg.grad(lambda lr: optim.Adam(lr).update([1.0], [2.0], optim.Adam(lr).init([1.0]))[0][0])(0.1)
    assert adam_first == pytest.approx(-1.0, abs=1e-8)  # the first Adam step is lr * g / (|g| + eps)


# --- against PyTorch: weight decay, Nesterov and clipping, composed ------------

COMPOSED = [
    (
        "sgd-momentum-wd",
        lambda t, lr: (t.optim.SGD, {"lr": lr, "momentum": 0.9, "weight_decay": 0.01}),
        lambda lr: optim.chain(optim.add_decayed_weights(0.01), optim.SGD(lr, momentum=0.9)),
        None,
    ),
    (
        "sgd-nesterov-wd",
        lambda t, lr: (t.optim.SGD, {"lr": lr, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
        lambda lr: optim.chain(optim.add_decayed_weights(0.05), optim.SGD(lr, momentum=0.8, nesterov=True)),
        None,
    ),
    (
        "adam-wd",
        lambda t, lr: (t.optim.Adam, {"lr": lr, "weight_decay": 0.1}),
        lambda lr: optim.chain(optim.add_decayed_weights(0.1), optim.Adam(lr)),
        None,
    ),
    (
        "clip-momentum",
        lambda t, lr: (t.optim.SGD, {"lr": lr, "momentum": 0.9}),
        lambda lr: optim.chain(optim.clip_by_global_norm(0.5), optim.SGD(lr, momentum=0.9)),
        0.5,
    ),
    (
        "clip-adam-wd",
        lambda t, lr: (t.optim.Adam, {"lr": lr, "weight_decay": 0.01}),
        lambda lr: optim.chain(optim.clip_by_global_norm(1.0), optim.add_decayed_weights(0.01), optim.Adam(lr)),
        1.0,
    ),
]


@pytest.mark.slow  # torch.optim imports torch._dynamo: 2 s
@pytest.mark.parametrize("name, make_torch, make_ours, clip", COMPOSED, ids=[c[0] for c in COMPOSED])
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_composed_transforms_match_torch_over_20_steps(torch, name, make_torch, make_ours, clip, problem):
    params, grad_fn, lr = PROBLEMS[problem]
    leaves, td = tree.flatten(params)
    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in leaves]
    cls, kw = make_torch(torch, lr)
    topt = cls(ts, **kw)
    opt = optim.Optimizer(make_ours(lr))
    state = opt.init(params)
    clipped = 0
    for _ in range(20):
        g = tree.leaves(grad_fn(params))
        for t, gi in zip(ts, g):
            t.grad = torch.tensor(gi, dtype=torch.float64)
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(ts, clip)
            clipped += norm.item() > clip
        topt.step()
        params, state = opt.update(params, tree.unflatten(td, g), state)
        theirs = [t.item() for t in ts]
        assert all(math.isfinite(v) for v in theirs)
        assert tree.leaves(params) == pytest.approx(theirs, rel=1e-12, abs=1e-14)
        params = tree.unflatten(td, theirs)
    assert clip is None or clipped > 0  # the clipping was exercised, not only the pass-through


def test_clip_by_global_norm_matches_torch_clip_grad_norm(torch):
    grads = [3.0, -4.0, 12.0, 0.5, -1e-3]
    for max_norm in (0.1, 1.0, 13.0, 100.0):
        ts = [torch.tensor(g, dtype=torch.float64, requires_grad=True) for g in grads]
        for t, g in zip(ts, grads):
            t.grad = torch.tensor(g, dtype=torch.float64)
        torch.nn.utils.clip_grad_norm_(ts, max_norm)
        ours = optim.clip_by_global_norm(max_norm).update(grads, None, [0.0] * 5)[0]
        assert ours == pytest.approx([t.grad.item() for t in ts], rel=1e-14, abs=0)


# --- bad input: the leaf rules of grad, for params, grads and hyper-parameters -----

from conftest import BAD_LEAVES  # noqa: E402

STEPPERS = [
    # who, a step taking (params, grads) in some form, and the names of its two tree arguments
    ("sgd", lambda p, g: optim.sgd(p, g, 0.1), ("params", "grads")),
    ("SGD.update", lambda p, g: optim.SGD(0.1, momentum=0.5).update(p, g, optim.SGD(0.1, momentum=0.5).init(nested())), ("params", "grads")),
    ("Adam.update", lambda p, g: optim.Adam(0.1).update(p, g, optim.Adam(0.1).init(nested())), ("params", "grads")),
    ("Optimizer.update", lambda p, g: optim.Optimizer(optim.scale(-1.0)).update(p, g, None), ("params", "grads")),
    ("apply_updates", optim.apply_updates, ("params", "updates")),
    ("clip_by_global_norm(1.0).update", lambda p, g: optim.clip_by_global_norm(1.0).update(g, None, p), ("params", "grads")),
]


@pytest.mark.parametrize("bad, tname", BAD_LEAVES, ids=[t for _, t in BAD_LEAVES])
@pytest.mark.parametrize("who, step, names", STEPPERS, ids=[s[0] for s in STEPPERS])
def test_steps_reject_leaves_that_are_not_real_numbers_with_their_path(who, step, names, bad, tname):
    good, worse = nested(), {**nested(), "pt": Pt(3.0, bad)}
    for args, name in (((worse, good), names[0]), ((good, worse), names[1])):
        with pytest.raises(TypeError, match=rf"^{re.escape(who)}: {name} at \['pt'\]\.y is {tname} .*expected a real number"):
            step(*args)


def test_init_rejects_bad_params():
    for opt in (optim.SGD(0.1, momentum=0.5), optim.Adam(0.1)):
        with pytest.raises(TypeError, match=r"\.init: params at \['w'\] is complex"):
            opt.init({"w": 1 + 2j})


def test_sgd_of_complex_params_is_an_error_not_complex_params():
    with pytest.raises(TypeError, match=r"^sgd: params at \['w'\] is complex \(1\+2j\)"):
        optim.sgd({"w": 1 + 2j}, {"w": 1.0}, 0.1)


def test_float32_int_and_fraction_leaves_are_converted_exactly():
    np = require("numpy", 'pip install "fungrad[fast]"')
    p32 = {"w": [np.float32(0.1), np.float32(-2.3)]}
    p64 = {"w": [float(v) for v in p32["w"]]}
    g = {"w": [np.float32(0.7), 3]}
    g64 = {"w": [float(np.float32(0.7)), 3.0]}
    out = optim.sgd(p32, g, 0.1)
    assert out == optim.sgd(p64, g64, 0.1) and all(type(v) is float for v in out["w"])
    adam = optim.Adam(np.float32(0.5), b1=np.float64(0.9))
    assert adam.lr == float(np.float32(0.5)) and type(adam.lr) is float and type(adam.b1) is float
    assert adam.update(p32, g, adam.init(p32)) == adam.update(p64, g64, adam.init(p64))
    assert optim.sgd([fractions.Fraction(1, 2)], [1], fractions.Fraction(1, 4)) == [0.25]
    assert optim.SGD(1) == optim.SGD(1.0) and optim.SGD(1).lr.__class__ is float


def test_huge_ints_name_the_function_the_argument_and_the_value():
    with pytest.raises(ValueError, match=r"^sgd: params at \['w'\] is an int of about 401 digits, too large for a float$"):
        optim.sgd({"w": 10**400}, {"w": 1.0}, 0.1)
    with pytest.raises(ValueError, match=r"^sgd: lr is an int of about 401 digits, too large for a float$"):
        optim.sgd([1.0], [1.0], 10**400)
    with pytest.raises(ValueError, match=r"^Adam: b2 is an int of about 1001 digits"):
        optim.Adam(b2=10**1000)  # past 4,300 digits repr itself would raise; the message does not need it
    with pytest.raises(ValueError, match=r"^SGD: momentum is an int of about 10000 digits"):
        optim.SGD(0.1, momentum=10**9999)
    with pytest.raises(ValueError, match=r"^linear: steps must be an int >= 1 \(at most 2\*\*53\), got an int of about 401 digits$"):
        optim.linear(1.0, 0.1, 10**400)
    assert optim.sgd([1.0], [1.0], 10**300) == [1.0 - 1e300]


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: optim.SGD(1 + 0j), TypeError, r"^SGD: lr must be a number >= 0 or a schedule .* got complex"),
        (lambda: optim.SGD(True), TypeError, r"^SGD: lr must be a number >= 0 or a schedule .* got bool True"),
        (lambda: optim.Adam("0.1"), TypeError, r"^Adam: lr must be .* got str '0.1'"),
        (lambda: optim.Adam(decimal.Decimal("0.1")), TypeError, r"^Adam: lr must be .* got Decimal"),
        (lambda: optim.SGD(math.inf), ValueError, r"^SGD: lr must be a number >= 0 \(finite\)"),
        (lambda: optim.SGD(0.1, momentum="0.9"), TypeError, r"^SGD: momentum is str '0.9'; expected a real number"),
        (lambda: optim.SGD(0.1, momentum=0.5, nesterov=1), TypeError, r"^SGD: nesterov must be True or False, got int 1"),
        (lambda: optim.Adam(b1=0.9 + 0j), TypeError, r"^Adam: b1 is complex"),
        (lambda: optim.Adam(b2=False), TypeError, r"^Adam: b2 is bool False"),
        (lambda: optim.Adam(eps=math.inf), ValueError, r"^Adam: eps must be >= 0 \(a finite number\), got inf"),
        (lambda: optim.Adam(eps=math.nan), ValueError, r"^Adam: eps must be >= 0"),
        (lambda: optim.sgd([1.0], [1.0], "0.1"), TypeError, r"^sgd: lr must be a number"),
        (lambda: optim.sgd([1.0], [1.0], optim.constant(0.1)), TypeError, r"^sgd: lr must be a number; for a schedule use"),
        (lambda: optim.constant(-0.1), ValueError, r"^constant: lr must be >= 0"),
        (lambda: optim.constant(1j), TypeError, r"^constant: lr is complex"),
        (lambda: optim.linear(True, 0.1, 10), TypeError, r"^linear: start is bool True"),
        (lambda: optim.linear(1.0, decimal.Decimal(1), 10), TypeError, r"^linear: end is Decimal"),
        (lambda: optim.linear(1.0, 0.1, True), ValueError, r"^linear: steps must be an int >= 1"),
        (lambda: optim.linear(1.0, 0.1, 10.0), ValueError, r"^linear: steps must be an int >= 1 .*got 10.0"),
        (lambda: optim.cosine(math.nan, 10), ValueError, r"^cosine: lr must be >= 0 \(a finite number\), got nan"),
        (lambda: optim.cosine(1.0, 10, final="0"), TypeError, r"^cosine: final is str"),
        (lambda: optim.exponential(1.0, -0.5), ValueError, r"^exponential: rate must be >= 0"),
        (lambda: optim.exponential(1.0, 0.5, every=2.0), ValueError, r"^exponential: every must be an int >= 1, got float 2.0"),
        (lambda: optim.clip_by_global_norm(0.0), ValueError, r"^clip_by_global_norm: max_norm must be > 0"),
        (lambda: optim.clip_by_global_norm("1"), TypeError, r"^clip_by_global_norm: max_norm is str"),
        (lambda: optim.add_decayed_weights(-1e-4), ValueError, r"^add_decayed_weights: weight_decay must be >= 0"),
        (lambda: optim.scale(math.inf), ValueError, r"^scale: factor must be a finite number"),
        (lambda: optim.scale_by_schedule(0.5), TypeError, r"^scale_by_schedule: schedule must be a function of the step"),
    ],
)
def test_hyper_parameters_follow_the_leaf_rules(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_schedule_values_and_steps_are_checked():
    opt = optim.SGD(lambda k: 1 + 0j)
    with pytest.raises(TypeError, match=r"^SGD.update: the schedule's value at step 0 is complex"):
        opt.update([1.0], [1.0], opt.init([1.0]))
    opt = optim.Adam(lambda k: -0.1)
    with pytest.raises(ValueError, match=r"^Adam.update: the schedule's value at step 0 is -0.1; a learning rate must be a finite number >= 0"):
        opt.update([1.0], [1.0], opt.init([1.0]))
    with pytest.raises(TypeError, match=r"^cosine: the step must be an int >= 0, got float 1.5"):
        optim.cosine(1.0, 10)(1.5)
    with pytest.raises(TypeError, match=r"^linear: the step must be an int >= 0, got bool True"):
        optim.linear(1.0, 0.0, 10)(True)
    with pytest.raises(ValueError, match=r"^exponential: the step must be an int >= 0, got -1"):
        optim.exponential(1.0, 0.5)(-1)
    # an int schedule value is converted; a rate above 1 overflows to inf, not to an OverflowError
    opt = optim.SGD(lambda k: 1)
    assert opt.update([1.0], [0.5], opt.init([1.0]))[0] == [0.5]
    assert optim.exponential(1.0, 2.0)(5000) == math.inf and optim.exponential(1.0, 0.5)(10**400) == 0.0
    assert optim.cosine(1.0, 2**53)(10**400) == 0.0 and optim.linear(1.0, 0.5, 2**53)(10**400) == 0.5


def test_a_schedule_that_overflows_is_an_error_not_infinite_parameters():
    assert optim.exponential(1.0, 2.0)(5000) == math.inf
    for opt in (optim.SGD(optim.exponential(1.0, 2.0)), optim.SGD(lambda step: math.inf), optim.Adam(lambda step: math.nan)):
        state = opt.init([1.0])
        with pytest.raises(ValueError, match="a learning rate must be a finite number >= 0"):
            for _ in range(5000):  # exponential(1.0, 2.0) passes the floats at step 1024
                _, state = opt.update([1.0], [1.0], state)
    sched = optim.scale_by_schedule(lambda k: math.inf)
    with pytest.raises(ValueError, match="expected a finite number"):
        sched.update([1.0], sched.init([1.0]), [1.0])


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda n: fg.optim.Adam(0.1, b1=n), "Adam: b1"),
        (lambda n: fg.optim.SGD(0.1, momentum=n), "SGD: momentum"),
        (lambda n: fg.optim.clip_by_global_norm(n), "clip_by_global_norm: max_norm"),
        (lambda n: fg.optim.cosine(n, 10), "cosine: lr"),
    ],
)
def test_a_hyper_parameter_that_is_a_node_is_refused_by_name(make, name):
    # read as a float it would leave the graph; inside grad the error would not name it
    with pytest.raises(TypeError, match=f"^{name} is a fungrad Node; it must be a plain number"):
        make(fg.var(0.5))
    with pytest.raises(TypeError, match=f"^{name} is a fungrad Node"):
        fg.grad(lambda b: make(b) and 0.0)(0.5)
    # the lr of an optimizer stays differentiable
    assert fg.grad(lambda lr: fg.optim.sgd([1.0], [2.0], lr)[0])(0.1) == -2.0


@pytest.mark.parametrize("make", [lambda: optim.SGD(0.1, momentum=0.9), lambda: optim.Adam(0.1)])
def test_a_state_made_for_params_of_another_order_or_model_is_refused_not_applied_to_other_weights(make):
    opt = make()
    p = {"w": 1.0, "b": 1.0}
    p1, s1 = opt.update(p, {"w": 10.0, "b": 0.0}, opt.init(p))
    swapped = {"b": p1["b"], "w": p1["w"]}  # the same params, keys in the other order
    with pytest.raises(ValueError, match=r"not shaped like params; they differ: a dict with keys \['b', 'w'\] against"):
        opt.update(swapped, {"b": 0.0, "w": 0.0}, s1)
    big, other = fg.nn.MLP.init(64, [32, 10], seed=0), fg.nn.MLP.init(64, [32, 9], seed=0)
    with pytest.raises(ValueError, match=r"they differ at \[0\]\[1\]\[0\]: a tuple of 10 against a tuple of 9") as e:
        opt.update(big, tree.map(lambda v: 0.0, big), opt.init(other))
    assert len(str(e.value)) < 400
    with pytest.raises(ValueError, match="differ at") as e:
        opt.update(big, tree.map(lambda v: 0.0, other), opt.init(big))
    assert len(str(e.value)) < 1000


@pytest.mark.slow
def test_adam_with_eps_0_divides_as_ieee_and_pytorch_do(torch):
    opt = optim.Adam(0.1, eps=0.0)
    p, s = opt.update([1.0, 2.0], [0.0, 1.0], opt.init([1.0, 2.0]))
    t = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    o = torch.optim.Adam([t], lr=0.1, eps=0.0)
    t.grad = torch.tensor([0.0, 1.0], dtype=torch.float64)
    o.step()
    assert math.isnan(p[0]) and math.isnan(t[0].item()) and p[1] == pytest.approx(t[1].item(), rel=1e-15)


def test_a_jitted_step_returns_the_state_eager_returns_and_it_saves(tmp_path):
    # the step count is a leaf, so jit returns it as a float: the state makes it an int again
    vg = fg.value_and_grad(lambda p: (p["w"] - 3.0) ** 2)
    for opt in (optim.SGD(0.1), optim.SGD(0.1, momentum=0.9), optim.Optimizer(optim.chain(optim.add_decayed_weights(0.01), optim.SGD(0.1)))):
        def step(p, s, opt=opt):
            _, g = vg(p)
            return opt.update(p, g, s)

        jstep = fg.jit(step)
        p, s = {"w": 1.0}, opt.init({"w": 1.0})
        q, t = p, s
        for _ in range(3):
            p, s = jstep(p, s)
            q, t = step(q, t)
        assert p == q and s == t and repr(s) == repr(t), opt
        assert jstep.cache_info().misses == 1  # an int and a float count share one trace
        fg.checkpoint.save(tmp_path / "c.json", {"p": p, "s": s})
        assert fg.checkpoint.load(tmp_path / "c.json") == {"p": q, "s": t}
    assert type(optim.SGDState(2.0, None).step) is int
    for bad in (1.5, math.nan, math.inf):
        with pytest.raises(ValueError, match="step must be a whole number"):
            optim.AdamState(bad, {"w": 0.0}, {"w": 0.0})


def test_a_state_with_a_negative_step_or_second_moment_is_refused_not_a_complex_number(tmp_path):
    for bad in (-1, -1.0, 2**53 + 1, 10**400):
        with pytest.raises(ValueError, match="step must be a number of updates, from 0 to 2\\*\\*53"):
            optim.AdamState(bad, [0.0], [0.0])
    assert optim.AdamState(2**53, [0.0], [0.0]).step == 2**53
    with pytest.raises(ValueError, match=r"Adam.update: the state's nu holds averages of g \*\* 2, never negative; leaf 1 is -1.0"):
        optim.Adam(0.1).update([1.0, 2.0], [0.0, 0.0], optim.AdamState(1, [0.0, 0.0], [0.0, -1.0]))
    np = require("numpy", 'pip install "fungrad[fast]"')
    for bad in (-1, np.float64(-1.0)):  # an int, a NumPy float
        with pytest.raises(ValueError, match="the state's nu holds averages of g \\*\\* 2, never negative; leaf 0"):
            optim.Adam(0.1).update([1.0], [0.0], optim.AdamState(0, [0.0], [bad]))
    with pytest.raises(ValueError, match="step must be a number of updates"):
        optim.AdamState(np.int64(-1), [0.0], [0.0])
    assert type(optim.AdamState(np.int64(3), [0.0], [0.0]).step) is int
    # a hand-edited checkpoint with such a state does not load
    good = {"format": "fungrad-checkpoint", "version": 1,
            "tree": {"type": "fungrad.optim.AdamState", "children": [1, [0.0], [0.25]]}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(good))
    state = fg.checkpoint.load(path)
    params, _ = optim.Adam(0.1).update([1.0], [1.0], state)
    mu, nu = 0.1 * 1.0, 0.999 * 0.25 + 0.001 * 1.0  # step 2, from the loaded averages
    want = 1.0 - 0.1 / (1 - 0.9**2) * mu / (math.sqrt(nu) / math.sqrt(1 - 0.999**2) + 1e-8)
    assert type(params[0]) is float and params[0] == pytest.approx(want, rel=1e-14)
    for children, match in (([1, [0.0], [-1.0]], "nu must be a pytree of numbers >= 0"),
                            ([1, [int("9" * 400)], [0.0]], "mu must be a pytree of numbers"),
                            ([10**30, [0.0], [0.0]], "step must be a number of updates")):
        path.write_text(json.dumps({**good, "tree": {**good["tree"], "children": children}}))
        with pytest.raises(ValueError, match=match):
            fg.checkpoint.load(path)
