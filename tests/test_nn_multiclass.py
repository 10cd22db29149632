"""Many classes: logsumexp, softmax, log_softmax, cross_entropy and accuracy on logits, against PyTorch float64."""

import decimal
import math
import random

import pytest

import fungrad as fg
from fungrad import nn

ROWS = {
    "random": [random.Random(0).gauss(0.0, 3.0) for _ in range(10)],
    "1000 0 -1000": [1000.0, 0.0, -1000.0],
    "equal at 1000": [1000.0, 1000.0, 1000.0],
    "equal": [0.5, 0.5, 0.5, 0.5],
    "at -1000": [-1000.0, -1000.0, -999.0],
    "mixed": [1000.0, -1000.0, 999.0, 0.0],
    "max last": [-5.0, -3.0, 2.0, 7.5],
    "one class": [3.0],
    "one class at 1000": [1000.0],
    "widest": [1e308, -1e308],
    "tiny gaps": [1e-300, 0.0, -1e-300],
}
IDS = list(ROWS)
# a cotangent for the list outputs, so every output's gradient counts
COT = [0.3, -1.2, 2.0, 0.7, -0.1, 1.1, -0.4, 0.25, -2.5, 0.9]


EPS = 2.0**-52


def close(a, b, ulps=4):
    """Equal to within ``ulps`` units in the last place of the larger, or both nan; lists elementwise."""
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(close(x, y, ulps) for x, y in zip(a, b))
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= ulps * math.ulp(max(abs(a), abs(b)))


def near(a, b, rel, abs_):
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(near(x, y, rel, abs_) for x, y in zip(a, b))
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b)) + abs_


# --------------------------------------------------------------------------
# The exact answers, from the formulas in 60-digit decimal arithmetic.


def exact(row):
    """The shifted logits ``x - max``, log(sum(exp(x - max))) and softmax of ``row``, as Decimals of 60 digits."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        xs = [decimal.Decimal(x) for x in row]
        m = max(xs)
        ds = [x - m for x in xs]
        es = [d.exp() for d in ds]
        total = sum(es)
        return m, ds, total.ln(), [e / total for e in es]


def exact_grads(row):
    """Values and gradients of each function the tests differentiate, as floats."""
    m, ds, log_total, p = exact(row)
    w = [decimal.Decimal(c) for c in COT[: len(row)]]
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        wp = sum(a * b for a, b in zip(w, p))
        out = {
            "logsumexp": (m + log_total, p),
            "softmax": (wp, [pi * (wi - wp) for pi, wi in zip(p, w)]),
            "log_softmax": (sum(wi * (d - log_total) for wi, d in zip(w, ds)), [wi - pi * sum(w) for wi, pi in zip(w, p)]),
        }
        for y in range(len(row)):
            out[y] = (log_total - ds[y], [pi - (i == y) for i, pi in enumerate(p)])
    return {k: (float(v), [float(g) for g in gs]) for k, (v, gs) in out.items()}


def torch_value_and_grad(torch, fn, x):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = fn(t)
    out.backward()
    return out.item(), t.grad.tolist()


def weighted(outs):
    return sum(c * o for c, o in zip(COT, outs))


FNS = {
    "logsumexp": nn.logsumexp,
    "softmax": lambda z: weighted(nn.softmax(z)),
    "log_softmax": lambda z: weighted(nn.log_softmax(z)),
}


def torch_fns(torch):
    F = torch.nn.functional
    w = lambda t: torch.tensor(COT[: len(t)], dtype=torch.float64)
    return {
        "logsumexp": lambda t: torch.logsumexp(t, 0),
        "softmax": lambda t: (torch.softmax(t, 0) * w(t)).sum(),
        "log_softmax": lambda t: (F.log_softmax(t, 0) * w(t)).sum(),
    }


# A gradient entry is a sum of a few terms of size up to max|COT| = 2.5 (or 1
# for cross_entropy): rounding leaves an absolute error of a few eps on that scale.
ABS = 32 * EPS
# PyTorch's logsumexp backward is exp(x - logsumexp(x)): the subtraction loses
# |logsumexp| * eps absolutely, a relative error of about 2e-13 at logits of
# 1000 (0.33333333333331516 instead of 1/3 at three logits of 1000), which
# fungrad, differentiating through the shifted sum, does not have.
TORCH_REL = 1e-12


@pytest.mark.parametrize("fn", list(FNS))
@pytest.mark.parametrize("row", ROWS.values(), ids=IDS)
def test_values_and_gradients_are_exact(fn, row):
    value, grads = fg.value_and_grad(FNS[fn])(row)
    want_value, want_grads = exact_grads(row)[fn]
    assert near(value, want_value, 4 * EPS, ABS), (value, want_value)
    assert near(grads, want_grads, 4 * EPS, ABS), (grads, want_grads)


@pytest.mark.parametrize("fn", list(FNS))
@pytest.mark.parametrize("row", ROWS.values(), ids=IDS)
def test_values_and_gradients_equal_torch(torch, fn, row):
    got = fg.value_and_grad(FNS[fn])(row)
    want = torch_value_and_grad(torch, torch_fns(torch)[fn], row)
    assert near(got[0], want[0], 4 * EPS, ABS) and near(got[1], want[1], TORCH_REL, ABS), (got, want)


@pytest.mark.parametrize("row", ROWS.values(), ids=IDS)
def test_outputs_equal_torch(torch, row):
    t = torch.tensor(row, dtype=torch.float64)
    assert close(nn.logsumexp(row), torch.logsumexp(t, 0).item())
    assert close(nn.softmax(row), torch.softmax(t, 0).tolist())
    assert close(nn.log_softmax(row), torch.nn.functional.log_softmax(t, 0).tolist())


@pytest.mark.parametrize("row", ROWS.values(), ids=IDS)
def test_cross_entropy_equals_torch_and_the_exact_answer_for_every_label(torch, row):
    F = torch.nn.functional
    ref = exact_grads(row)
    for label in range(len(row)):
        value, grads = fg.value_and_grad(lambda z: nn.cross_entropy(z, [label]))([row])
        want = torch_value_and_grad(torch, lambda t: F.cross_entropy(t, torch.tensor([label])), [row])
        # the sum of exponentials is added up in another order than PyTorch's: an
        # absolute difference of a few eps in its log
        assert near(value, want[0], 4 * EPS, 4 * EPS) and near(grads[0], want[1][0], 4 * EPS, ABS), (label, value, grads, want)
        assert near(value, ref[label][0], 4 * EPS, 4 * EPS), (label, value, ref[label])
        assert near(grads[0], ref[label][1], 4 * EPS, 4 * EPS), (label, grads, ref[label])


def test_cross_entropy_is_the_batch_mean_like_torch(torch):
    rng = random.Random(1)
    logits = [[rng.gauss(0.0, 4.0) for _ in range(10)] for _ in range(32)]
    logits[3] = [1000.0, -1000.0] + [0.0] * 8
    labels = [rng.randrange(10) for _ in range(32)]
    labels[3] = 1  # the loss of this sample is 2000, its gradient finite
    F = torch.nn.functional
    want = torch_value_and_grad(torch, lambda t: F.cross_entropy(t, torch.tensor(labels)), logits)
    got = fg.value_and_grad(lambda z: nn.cross_entropy(z, labels))(logits)
    # the mean sums 32 terms, in another order than PyTorch's reduction
    assert math.isclose(got[0], want[0], rel_tol=32 * EPS)
    assert near(got[1], want[1], 4 * EPS, EPS / 32)
    assert got[1][3] == [1 / 32, -1 / 32] + [0.0] * 8


def test_second_derivatives_are_exact_and_equal_torch(torch):
    row = [1000.0, 999.0, 0.0, 998.5]
    *_, p = exact(row)
    hess = [[float((p[i] if i == j else 0) - p[i] * p[j]) for j in range(4)] for i in range(4)]
    want = torch.autograd.functional.hessian(lambda t: torch.logsumexp(t, 0), torch.tensor(row, dtype=torch.float64))
    got = fg.hessian(nn.logsumexp)(row)
    assert near(got, hess, 4 * EPS, 4 * EPS) and near(got, want.tolist(), TORCH_REL, ABS)
    F = torch.nn.functional
    want = torch.autograd.functional.hessian(
        lambda t: F.cross_entropy(t.reshape(1, 4), torch.tensor([2])), torch.tensor(row, dtype=torch.float64)
    )
    got = fg.hessian(lambda z: nn.cross_entropy([z], [2]))(row)
    assert near(got, hess, 4 * EPS, 4 * EPS) and near(got, want.tolist(), TORCH_REL, ABS)


def test_plain_floats_give_plain_floats():
    assert type(nn.logsumexp([1.0, 2.0])) is float
    assert all(type(v) is float for v in nn.softmax([1.0, 2.0]) + nn.log_softmax([1, 2]))
    assert type(nn.cross_entropy([[1.0, 2.0]], [1])) is float
    assert nn.logsumexp([0, 0]) == math.log(2.0)  # ints are numbers too


def test_infinite_logits_follow_torch(torch):
    inf = math.inf
    for row in ([inf, 1.0], [-inf, -inf], [-inf, 0.0], [inf, -inf]):
        assert close(nn.logsumexp(row), torch.logsumexp(torch.tensor(row), 0).item()), row
        # on floats as on nodes (it raised ZeroDivisionError on floats for [-inf, -inf])
        assert close(nn.softmax(row), [n.value for n in nn.softmax([fg.var(v) for v in row])]), row
    assert all(math.isnan(p) for p in nn.softmax([-inf, -inf]))  # as torch.softmax gives


def test_works_under_jit_and_replays_with_the_max_elsewhere(torch):
    F = torch.nn.functional
    loss = lambda z, y: nn.cross_entropy(z, y)
    step = fg.jit(fg.value_and_grad(loss))
    cases = [
        ([[1000.0, 0.0, -3.0]], [0]),
        ([[0.0, -3.0, 1000.0]], [0]),  # the max moved: a baked-in shift would give exp(1000) = inf
        ([[-1000.0, 1000.0, 1000.0]], [2]),
        ([[0.1, 0.2, 0.3]], [1]),
    ]
    for z, y in cases:
        got = step(z, y)
        assert got == fg.value_and_grad(loss)(z, y)
        want = torch_value_and_grad(torch, lambda t: F.cross_entropy(t, torch.tensor(y)), z)
        assert close([got[0]] + got[1][0], [want[0]] + want[1][0]), (z, y, got, want)
    assert step.cache_size() == 1  # the labels were traced, not baked in
    for fn in (nn.logsumexp, lambda z: weighted(nn.softmax(z)), lambda z: weighted(nn.log_softmax(z))):
        jitted = fg.jit(fg.value_and_grad(fn))
        for row in ([1000.0, 0.0, -1000.0], [-1000.0, 0.0, 1000.0], [2.0, 2.0, 2.0]):
            assert jitted(row) == fg.value_and_grad(fn)(row)


def test_a_traced_label_outside_the_classes_gives_nan():
    step = fg.jit(lambda z, y: nn.cross_entropy(z, y))
    assert step([[1.0, 2.0]], [1]) == nn.cross_entropy([[1.0, 2.0]], [1])
    assert math.isnan(step([[1.0, 2.0]], [2])) and math.isnan(step([[1.0, 2.0]], [-1]))


@pytest.mark.slow
def test_trains_a_classifier_on_spirals_under_jit():
    xs, ys = fg.data.spirals(10, classes=3, noise=0.0, seed=0)
    model = fg.nn.MLP.init(2, [12, 3], seed=0, activation="tanh", final_activation="linear")
    step = fg.jit(fg.value_and_grad(lambda m, x, y: nn.cross_entropy([m(p) for p in x], y)))
    opt = fg.optim.Adam(lr=0.1)
    state = opt.init(model)
    losses = []
    for _ in range(80):
        value, grads = step(model, xs, ys)
        losses.append(value)
        model, state = opt.update(model, grads, state)
    assert losses[-1] < 0.25 * losses[0] and step.cache_size() == 1
    assert nn.accuracy([model(p) for p in xs], ys) >= 0.9


def test_accuracy_of_logit_lists():
    assert nn.accuracy([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [1.0, 1.0, 0.0]], [1, 2, 0]) == 2 / 3  # a tie goes to the first
    assert nn.accuracy([(0.0, 1.0)], [1]) == 1.0
    assert nn.accuracy([[fg.var(0.0), fg.var(1.0)]], [0]) == 0.0  # nodes: their values are read
    assert nn.accuracy([[math.nan, 1.0], [0.0, 1.0]], [1, 1]) == 0.5  # a nan logit predicts nothing
    assert nn.accuracy([0.3, -2.0], [1.0, -1.0]) == 1.0  # signed scores as before
    with pytest.raises(ValueError, match=r"accuracy: labels\[1\] is 3; expected an int class index in range\(3\)"):
        nn.accuracy([[0.0, 1.0, 2.0]] * 2, [0, 3])
    with pytest.raises(ValueError, match=r"accuracy: scores\[1\] has 2 entries but scores\[0\] has 3"):
        nn.accuracy([[0.0, 1.0, 2.0], [0.0, 1.0]], [0, 1])
    with pytest.raises(TypeError, match=r"accuracy: scores\[1\] must be a list of numbers or nodes"):
        nn.accuracy([[0.0, 1.0], 0.5], [0, 1])
    with pytest.raises(TypeError, match=r"accuracy: labels\[0\] is 1.0 \(float\); expected an int class index"):
        nn.accuracy([[0.0, 1.0]], [1.0])


@pytest.mark.parametrize(
    "logits, labels, err, match",
    [
        ([[1.0, 2.0]], [2], ValueError, r"cross_entropy: labels\[0\] is 2; expected an int class index in range\(2\)"),
        ([[1.0, 2.0]] * 3, [0, 1, -1], ValueError, r"labels\[2\] is -1; expected an int class index in range\(2\)"),
        ([[1.0, 2.0]] * 2, [0, True], TypeError, r"labels\[1\] is True \(bool\); expected an int class index"),
        ([[1.0, 2.0]], [1.0], TypeError, r"labels\[0\] is 1.0 \(float\); expected an int"),
        ([[1.0, 2.0]], ["1"], TypeError, r"labels\[0\] is '1' \(str\)"),
        ([[1.0, 2.0], [1.0, 2.0, 3.0]], [0, 0], ValueError, r"logits\[1\] has 3 entries but logits\[0\] has 2"),
        ([[1.0, 2.0], []], [0, 0], ValueError, r"cross_entropy: logits\[1\] is empty"),
        ([[1.0, 2.0], 3.0], [0, 0], TypeError, r"cross_entropy: logits\[1\] must be a list of numbers or nodes .* got float"),
        ([[1.0, 2.0], "ab"], [0, 0], TypeError, r"logits\[1\] must be a list"),
        ([[1.0, 2.0], [1.0, "2"]], [0, 0], TypeError, r"cross_entropy: logits\[1\]\[1\] is str '2'; expected a real number"),
        ([[1.0, True]], [0], TypeError, r"logits\[0\]\[1\] is bool True"),
        ([], [], ValueError, r"cross_entropy: no samples \(empty logits\)"),
        ([[1.0, 2.0]] * 2, [0], ValueError, "logits and labels must have the same length, got 2 and 1"),
        (5.0, [0], TypeError, "cross_entropy: logits and labels must be sequences"),
    ],
)
def test_cross_entropy_rejects_bad_input(logits, labels, err, match):
    with pytest.raises(err, match=match):
        nn.cross_entropy(logits, labels)


class Index:
    """An int-like label that is not an int (as NumPy's int64 is not)."""

    def __index__(self):
        return 1


def test_int_like_labels_are_ints():
    assert nn.cross_entropy([[1.0, 2.0]], [Index()]) == nn.cross_entropy([[1.0, 2.0]], [1])
    assert nn.accuracy([[1.0, 2.0]], [Index()]) == 1.0


@pytest.mark.parametrize("fn", [nn.logsumexp, nn.softmax, nn.log_softmax], ids=lambda f: f.__name__)
def test_single_list_functions_reject_bad_input(fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=f"{name}: xs is empty; expected one number or node per class"):
        fn([])
    with pytest.raises(TypeError, match=f"{name}: xs must be a list of numbers or nodes"):
        fn(3.0)
    with pytest.raises(TypeError, match=f"{name}: xs must be a list of numbers or nodes"):
        fn(fg.var(3.0))
    with pytest.raises(TypeError, match=rf"{name}: xs\[1\] is NoneType None; expected a real number"):
        fn([1.0, None])


def test_a_traced_label_that_is_no_class_index_gives_nan_not_a_nearby_class():
    import math

    step = fg.jit(lambda z, y: fg.nn.cross_entropy([z], [y]))
    z = [1.0, 2.0, 3.0]
    for y in range(3):
        assert step(z, y) == fg.nn.cross_entropy([z], [y])
    for y in (0.4, 0.6, 1.5, -1.0, 3.0, float("nan")):
        assert math.isnan(step(z, y)), y


def test_a_traced_label_that_is_no_class_index_gives_nan_gradients_too():
    # a nan loss with a finite gradient would still move the parameters in training
    vg = fg.value_and_grad(lambda z, y: fg.nn.cross_entropy([z], [y]))
    z = [0.3, -1.0, 2.0]
    jitted = fg.jit(vg)
    batched = fg.vmap(vg, in_axes=(None, 0))
    for y in range(3):
        assert jitted(z, y) == vg(z, y)  # bit for bit for every class
    assert batched(z, [0, 1, 2]) == [vg(z, y) for y in range(3)]  # one (value, grad) per example
    for y in (0.4, 2.5, -1.0, 3.0, float("nan")):
        value, grad = jitted(z, y)
        assert math.isnan(value) and len(grad) == 3 and all(math.isnan(g) for g in grad), (y, value, grad)
    good, *bad = batched(z, [1, 7, float("nan")])
    assert good == vg(z, 1) and len(bad) == 2
    for value, grad in bad:
        assert math.isnan(value) and len(grad) == 3 and all(math.isnan(g) for g in grad)
