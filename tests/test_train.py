import copy
import pickle
import sys

import pytest
from conftest import require

import fungrad as fg
from fungrad import nn, optim, train, tree

XS, YS = fg.data.tiny()


def tiny_loss(model):
    return nn.sum_squares([model(x) for x in XS], YS)


def batch_loss(model, batch):
    xs, ys = batch
    return nn.hinge([model(x) for x in xs], ys) + nn.l2(model, 1e-4)


def batch_acc(model, batch):
    xs, ys = batch
    return nn.accuracy([model(x) for x in xs], ys)


def small_moons(n=20, seed=0):
    return fg.data.make_moons(n, noise=0.1, seed=seed)


def small_model(seed=0):
    return nn.MLP.init(2, [6, 1], seed=seed, activation="relu", final_activation="linear")


def test_fit_is_the_tutorial_loop():
    model = nn.MLP.init(3, [4, 4, 1], seed=0)
    before = copy.deepcopy(tree.leaves(model))
    trained, history = train.fit(tiny_loss, model, optimizer=0.05, steps=40, progress=False)
    assert tree.leaves(model) == before

    # the same loop by hand gives the same params and losses, bit for bit
    by_hand, losses = model, []
    for _ in range(40):
        value, grads = fg.value_and_grad(tiny_loss)(by_hand)
        losses.append(value)
        by_hand = optim.sgd(by_hand, grads, lr=0.05)
    assert trained == by_hand
    assert history.loss == losses
    assert len(history) == 40 and len(history.step_time) == 40 and history.accuracy == []
    assert history.loss[0] == pytest.approx(7.7298, abs=1e-4)
    assert tiny_loss(trained) < 0.1
    # monotone-ish: the loss goes down at (almost) every step
    downs = sum(b < a for a, b in zip(history.loss, history.loss[1:]))
    assert downs >= 0.9 * 39
    assert all(t >= 0.0 for t in history.step_time)


def test_jit_and_eager_give_identical_results():
    xs, ys = small_moons()
    runs = [
        train.fit(batch_loss, small_model(), (xs, ys), optim.Adam(0.05), steps=15, metric=batch_acc, jit=j, progress=False)
        for j in (True, False)
    ]
    (p1, h1), (p2, h2) = runs
    assert p1 == p2
    assert h1.loss == h2.loss and h1.accuracy == h2.accuracy


def test_jit_switch_selects_the_step_function():
    from fungrad.jit import Jitted

    assert isinstance(train._step_function(tiny_loss, True), Jitted)
    assert not isinstance(train._step_function(tiny_loss, False), Jitted)
    p, h = train.fit(tiny_loss, nn.MLP.init(3, [4, 4, 1], seed=0), optimizer=0.05, steps=5, jit=False, progress=False)
    q, g = train.fit(tiny_loss, nn.MLP.init(3, [4, 4, 1], seed=0), optimizer=0.05, steps=5, progress=False)
    assert p == q and h.loss == g.loss


def test_metric_is_measured_where_the_loss_is():
    xs, ys = small_moons()
    model = small_model()
    p, h = train.fit(batch_loss, model, (xs, ys), 0.1, steps=10, metric=batch_acc, progress=False)
    assert len(h.accuracy) == 10
    assert h.loss[0] == batch_loss(model, (xs, ys))
    assert h.accuracy[0] == batch_acc(model, (xs, ys))
    assert all(type(a) is float and 0.0 <= a <= 1.0 for a in h.accuracy)
    assert h.loss[-1] < h.loss[0]


def test_optimizers_and_schedules():
    model = nn.MLP.init(3, [4, 4, 1], seed=0)
    by_float, _ = train.fit(tiny_loss, model, optimizer=0.05, steps=5, progress=False)
    by_sgd, _ = train.fit(tiny_loss, model, optimizer=optim.SGD(0.05), steps=5, progress=False)
    by_schedule, _ = train.fit(tiny_loss, model, optimizer=optim.constant(0.05), steps=5, progress=False)
    assert by_float == by_sgd == by_schedule
    adam, h = train.fit(tiny_loss, model, optimizer=optim.Adam(0.05), steps=40, progress=False)
    assert h.loss[-1] < 0.1 < h.loss[0]
    mom, h = train.fit(tiny_loss, model, optimizer=optim.SGD(0.05, momentum=0.9), steps=40, progress=False)
    assert h.loss[-1] < 0.1


def test_fit_does_not_mutate_its_inputs():
    xs, ys = small_moons()
    data = (xs, ys)
    model = small_model()
    snapshot = copy.deepcopy((data, model))
    opt = optim.SGD(0.1, momentum=0.5)
    train.fit(batch_loss, model, data, opt, steps=3, metric=batch_acc, progress=False, batch_size=7)
    assert (data, model) == snapshot
    assert opt == optim.SGD(0.1, momentum=0.5)


def test_callback_sees_each_step_and_can_stop():
    seen = []

    def cb(step, params, loss):
        seen.append((step, params, loss))

    p, h = train.fit(tiny_loss, nn.MLP.init(3, [4, 4, 1], seed=0), optimizer=0.05, steps=4, callback=cb, progress=False)
    assert [s for s, _, _ in seen] == [0, 1, 2, 3]
    assert [l for _, _, l in seen] == h.loss
    assert seen[-1][1] == p  # the params after the step
    assert tiny_loss(seen[0][1]) == h.loss[1]

    _, h = train.fit(tiny_loss, p, optimizer=0.05, steps=50, callback=lambda s, p, l: s < 2, progress=False)
    assert len(h) == 3  # steps 0, 1, 2: False after step 2 stops

    def stop(step, params, loss):
        if loss < 1.0:
            raise StopIteration

    _, h = train.fit(tiny_loss, nn.MLP.init(3, [4, 4, 1], seed=0), optimizer=0.05, steps=40, callback=stop, progress=False)
    assert h.loss[-1] < 1.0 and all(l >= 1.0 for l in h.loss[:-1])


def test_minibatches_follow_the_seed():
    xs, ys = small_moons(10)
    sizes, firsts = [], []

    def loss(model, batch):
        sizes.append(len(batch[0]))
        firsts.append(batch[1])
        return batch_loss(model, batch)

    p, h = train.fit(loss, small_model(), (xs, ys), 0.1, steps=5, jit=False, batch_size=4, seed=3, progress=False)
    assert sizes == [4, 4, 2, 4, 4]  # two epochs of 10 samples in batches of 4
    assert sorted(sum((list(f) for f in firsts[:3]), [])) == sorted(ys)
    first_run = list(firsts)
    firsts.clear()
    q, _ = train.fit(loss, small_model(), (xs, ys), 0.1, steps=5, jit=False, batch_size=4, seed=3, progress=False)
    assert firsts == first_run and p == q
    firsts.clear()
    train.fit(loss, small_model(), (xs, ys), 0.1, steps=5, jit=False, batch_size=4, seed=4, progress=False)
    assert firsts != first_run


def test_progress_is_off_without_a_terminal(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # importing tqdm would fail the test
    train.fit(tiny_loss, nn.MLP.init(3, [4, 4, 1], seed=0), optimizer=0.05, steps=3)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_progress_explicitly_asked_without_tqdm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r'pip install "fungrad\[progress\]"'):
        train.fit(tiny_loss, nn.MLP.init(3, [4, 4, 1], seed=0), optimizer=0.05, steps=3, progress=True)


def test_progress_bar_shows_the_loss(capsys):
    require("tqdm", 'pip install "fungrad[progress]"')
    train.fit(tiny_loss, nn.MLP.init(3, [4, 4, 1], seed=0), optimizer=0.05, steps=3, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err


def test_zero_steps_and_bad_arguments():
    model = nn.MLP.init(3, [4, 4, 1], seed=0)
    p, h = train.fit(tiny_loss, model, steps=0, progress=False)
    assert p is model and len(h) == 0
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        train.fit(tiny_loss, model, steps=-1)
    with pytest.raises(TypeError, match="optimizer must be"):
        train.fit(tiny_loss, model, optimizer="adam", steps=1)
    with pytest.raises(TypeError, match="loss_fn must be a function"):
        train.fit(None, model, steps=1)
    with pytest.raises(ValueError, match="batch_size needs data"):
        train.fit(tiny_loss, model, steps=1, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be"):
        train.fit(batch_loss, model, (XS, YS), steps=1, batch_size=0)
    with pytest.raises(ValueError, match="lr must be"):
        train.fit(tiny_loss, model, optimizer=-0.1, steps=1)


@pytest.mark.slow
def test_history_round_trips_through_a_dict():
    h = train.History(loss=[2.0, 1.0], accuracy=[0.5, 1.0], step_time=[0.01, 0.02])
    assert train.History.from_dict(h.to_dict()) == h
    assert len(h) == 2
    require("matplotlib", 'pip install "fungrad[plot]"')
    fig = fg.viz.plot_history(h)  # the history is what viz plots
    assert fig.axes[0].lines[0].get_ydata().tolist() == [2.0, 1.0]


def test_ctrl_c_hands_back_the_completed_steps():
    model = nn.MLP.init(3, [4, 4, 1], seed=0)

    def ctrl_c_at(step_seen):
        def cb(step, params, loss):
            if step == step_seen:
                raise KeyboardInterrupt

        return cb

    with pytest.raises(train.Interrupted) as caught:
        train.fit(tiny_loss, model, optimizer=0.05, steps=40, callback=ctrl_c_at(6), progress=False)
    stop = caught.value
    assert isinstance(stop, KeyboardInterrupt) and isinstance(stop.__cause__, KeyboardInterrupt)
    expected, h = train.fit(tiny_loss, model, optimizer=0.05, steps=7, progress=False)
    assert stop.steps == len(stop.history) == 7
    assert stop.params == expected and stop.history.loss == h.loss
    assert "after 7 completed steps" in str(stop)
    again = pickle.loads(pickle.dumps(stop))
    assert type(again) is train.Interrupted and again.params == stop.params and again.history == stop.history


def test_a_step_cut_short_counts_for_nothing():
    # a Ctrl-C inside the metric lands after the loss of that step was recorded
    xs, ys = small_moons()
    model = small_model()
    calls = []

    def metric(params, batch):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return batch_acc(params, batch)

    with pytest.raises(train.Interrupted) as caught:
        train.fit(batch_loss, model, (xs, ys), optim.Adam(0.05), steps=10, metric=metric, progress=False)
    stop = caught.value
    expected, h = train.fit(batch_loss, model, (xs, ys), optim.Adam(0.05), steps=3, metric=batch_acc, progress=False)
    assert stop.steps == 3 and stop.params == expected
    assert stop.history == h.__class__(loss=h.loss, accuracy=h.accuracy, step_time=stop.history.step_time)
    assert len(stop.history.step_time) == 3


def test_ctrl_c_before_any_step_hands_back_the_params_passed_in():
    model = nn.MLP.init(3, [4, 4, 1], seed=0)

    def loss(m):
        raise KeyboardInterrupt

    with pytest.raises(train.Interrupted) as caught:
        train.fit(loss, model, steps=5, jit=False, progress=False)
    assert caught.value.params is model and caught.value.steps == 0 and caught.value.history == train.History()


@pytest.mark.parametrize("wrong", [fg.optim.Adam, fg.optim.SGD, fg.optim.sgd])
def test_an_optimizer_class_or_the_plain_step_instead_of_an_optimizer_is_named(wrong):
    with pytest.raises(TypeError, match=r"optimizer instance, got (Adam|SGD|sgd); write fg.optim.Adam\(0.01\)"):
        fg.train.fit(lambda p, b: p * p, 1.0, [[1.0]], wrong, steps=1, progress=False)


def test_fit_refuses_minibatches_of_no_data():
    # an epoch of no batches, then the next: the stream would never yield
    loss = lambda w, batch: (w - 1.0) ** 2  # noqa: E731
    with pytest.raises(ValueError, match="no examples"):
        train.fit(loss, 0.0, ([], []), 0.1, steps=1, batch_size=2, progress=False)
    p, h = train.fit(loss, 0.25, ([], []), 0.1, steps=0, batch_size=2, progress=False)  # no batch drawn
    assert p == 0.25 and len(h) == 0


def test_a_learning_rate_may_be_any_real_number_as_sgd_takes_it():
    import fractions

    np = require("numpy", 'pip install "fungrad[fast]"')
    xs, ys = fg.data.tiny()

    def loss(m):
        return fg.nn.mse([m(x) for x in xs], ys)

    model = fg.nn.MLP.init(3, [4, 1], seed=0)
    want, _ = fg.train.fit(loss, model, optimizer=0.125, steps=3, progress=False)
    for lr in (np.float32(0.125), np.float64(0.125), fractions.Fraction(1, 8)):
        got, _ = fg.train.fit(loss, model, optimizer=lr, steps=3, progress=False)
        assert got == want, lr


def test_a_metric_that_returns_no_number_is_named():
    xs, ys = fg.data.tiny()
    model = fg.nn.MLP.init(3, [2, 1], seed=0)

    def loss(m):
        return fg.nn.mse([m(x) for x in xs], ys)

    with pytest.raises(TypeError, match=r"^fit: the metric's value at step 0 is str 'x'; expected a real number"):
        fg.train.fit(loss, model, steps=2, metric=lambda m: "x", progress=False)
    _, h = fg.train.fit(loss, model, steps=2, metric=lambda m: fg.var(0.25), progress=False)
    assert h.accuracy == [0.25, 0.25] and all(type(a) is float for a in h.accuracy)
