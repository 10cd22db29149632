import copy
import decimal
import fractions
import json
import math
import os
import random
import time

import conftest
import pytest
from conftest import require

import fungrad as fg
from fungrad import nn, tree

TUTORIAL_B = 6.8813735870195432


def tutorial_mlp(seed=0):
    return nn.MLP.init(3, [4, 4, 1], seed=seed)


def moons_mlp(seed=0):
    return nn.MLP.init(2, [16, 16, 1], seed=seed, activation="relu", final_activation="linear")


# --- models as pytrees -------------------------------------------------------


def test_tutorial_mlp_has_41_float_leaves():
    leaves = tree.leaves(tutorial_mlp())
    assert len(leaves) == 41 == 4 * (3 + 1) + 4 * (4 + 1) + 1 * (4 + 1)
    assert all(type(v) is float and -1.0 <= v <= 1.0 for v in leaves)
    assert len(tree.leaves(moons_mlp())) == 337


def test_same_seed_same_params_different_seed_different():
    a, b, c = tutorial_mlp(0), tutorial_mlp(0), tutorial_mlp(1)
    assert a == b and tree.leaves(a) == tree.leaves(b)
    assert a != c
    assert all(x != y for x, y in zip(tree.leaves(a), tree.leaves(c)))


def test_init_draws_weights_then_bias_from_random_uniform():
    rng = random.Random(7)
    expected = []
    for nin, nout in [(3, 4), (4, 4), (4, 1)]:
        for _ in range(nout):
            expected += [rng.uniform(-1, 1) for _ in range(nin)] + [rng.uniform(-1, 1)]
    assert tree.leaves(tutorial_mlp(7)) == expected


def test_sizes_and_activations_are_static_not_leaves():
    m = moons_mlp()
    assert (m.nin, m.nouts, m.activation, m.final_activation) == (2, (16, 16, 1), "relu", "linear")
    assert [layer.activation for layer in m.layers] == ["relu", "relu", "linear"] == list(m.activations)
    assert not any(isinstance(v, str) for v in tree.leaves(m))
    assert tree.structure(moons_mlp(0)) == tree.structure(moons_mlp(5))
    # same sizes, other activation: another structure
    assert tree.structure(nn.MLP.init(2, [16, 16, 1], seed=0)) != tree.structure(m)


def test_final_activation_none_means_activation():
    m = nn.MLP.init(2, [3, 1], seed=0, activation="sigmoid")
    assert [layer.activation for layer in m.layers] == ["sigmoid", "sigmoid"]
    assert repr(m) == "MLP(2, [3, 1], activation='sigmoid')"
    assert repr(moons_mlp()) == "MLP(2, [16, 16, 1], activation='relu', final_activation='linear')"


def test_tree_round_trip_and_map_keep_the_model():
    m = moons_mlp(3)
    leaves, td = tree.flatten(m)
    back = tree.unflatten(td, leaves)
    assert back == m and type(back) is nn.MLP and back.layers[0].activation == "relu"
    assert back.layers[0].neurons[0].activation is None  # the layer holds it, once
    doubled = tree.map(lambda v: 2 * v, m)
    assert tree.leaves(doubled) == [2 * v for v in leaves]
    assert doubled.nouts == m.nouts


def test_checkpoint_round_trip(tmp_path):
    m = moons_mlp(2)
    fg.checkpoint.save(tmp_path / "m.json", m)
    back = fg.checkpoint.load(tmp_path / "m.json")
    assert back == m and type(back) is nn.MLP
    assert tree.registered(nn.MLP) and tree.registered(nn.Layer) and tree.registered(nn.Neuron)


def test_grad_is_shaped_like_the_model():
    m = tutorial_mlp()
    g = fg.grad(lambda p: p([1.0, 2.0, 3.0]))(m)
    assert type(g) is nn.MLP and tree.structure(g) == tree.structure(m)
    # the last layer's bias gets tanh'(activation) = 1 - out**2
    out = m([1.0, 2.0, 3.0])
    assert g.layers[-1].neurons[0].b == pytest.approx(1 - out**2, rel=1e-12)


# --- forward values ---------------------------------------------------------


def test_tutorial_neuron_by_hand():
    n = nn.Neuron((-3.0, 1.0), TUTORIAL_B)
    assert n([2.0, 0.0]) == math.tanh(2.0 * -3.0 + 0.0 * 1.0 + TUTORIAL_B)
    assert n([2.0, 0.0]) == pytest.approx(math.sqrt(0.5), abs=1e-12)
    x1, x2 = fg.var(2.0), fg.var(0.0)
    o = n([x1, x2])
    assert fg.is_node(o) and o.value == n([2.0, 0.0])
    g = fg.gradients(o, wrt=[x1, x2])
    assert g[x1] == pytest.approx(-1.5, abs=1e-12) and g[x2] == pytest.approx(0.5, abs=1e-12)


def test_mlp_forward_by_hand():
    m = nn.MLP(
        (
            nn.Layer((nn.Neuron((1.0, -2.0), 0.5, "relu"), nn.Neuron((0.25, 0.75), -1.0, "relu")), nin=2),
            nn.Layer((nn.Neuron((2.0, -1.0), 0.1, "linear"),), nin=2),
        ),
        nin=2,
    )
    x = [1.5, -0.5]
    h1 = max(0.0, 0.5 + 1.0 * 1.5 + -2.0 * -0.5)  # 3.0
    h2 = max(0.0, -1.0 + 0.25 * 1.5 + 0.75 * -0.5)  # 0.0
    assert m(x) == 0.1 + 2.0 * h1 + -1.0 * h2 == 6.1


def test_activations_values():
    w, b = (1.0,), 0.0
    assert nn.Neuron(w, b, "relu")([-2.0]) == 0.0
    assert nn.Neuron(w, b, "relu")([2.0]) == 2.0
    assert nn.Neuron(w, b, "linear")([-2.0]) == -2.0
    assert nn.Neuron(w, b, "sigmoid")([2.0]) == pytest.approx(1 / (1 + math.exp(-2.0)), rel=1e-15)
    assert nn.Neuron(w, b, "tanh")([2.0]) == math.tanh(2.0)


def test_calls_on_floats_give_floats_and_on_nodes_give_nodes():
    m = tutorial_mlp()
    out = m([2.0, 3.0, -1.0])
    assert type(out) is float
    node_out = m([fg.var(2.0), fg.var(3.0), fg.var(-1.0)])
    assert fg.is_node(node_out) and node_out.value == out


def test_multi_output_returns_a_list():
    m = nn.MLP.init(2, [3, 2], seed=0)
    out = m([1.0, 2.0])
    assert isinstance(out, list) and len(out) == 2
    assert nn.Layer.init(2, 3, seed=0)([1.0, 2.0]).__class__ is list
    assert type(nn.Layer.init(2, 1, seed=0)([1.0, 2.0])) is float


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'swish'; expected one of 'linear', 'relu', 'sigmoid', 'tanh'"):
        nn.MLP.init(2, [1], seed=0, activation="swish")
    with pytest.raises(ValueError, match="unknown final_activation 'softmax'"):
        nn.MLP.init(2, [1], seed=0, final_activation="softmax")
    with pytest.raises(ValueError, match="unknown activation"):
        nn.Neuron((1.0,), 0.0, "gelu")


def test_wrong_input_length_names_nin():
    with pytest.raises(ValueError, match=r"MLP: expected 3 inputs \(nin=3\), got 2"):
        tutorial_mlp()([1.0, 2.0])
    with pytest.raises(ValueError, match=r"nin=2"):
        nn.Neuron((1.0, 2.0), 0.0)([1.0])
    with pytest.raises(TypeError, match="sequence of 3"):
        tutorial_mlp()(1.0)


def test_bad_init_arguments():
    with pytest.raises(ValueError, match="nin must be a positive int"):
        nn.MLP.init(0, [1], seed=0)
    with pytest.raises(ValueError, match="non-empty list"):
        nn.MLP.init(2, [], seed=0)
    with pytest.raises(ValueError, match=r"nouts\[1\]"):
        nn.MLP.init(2, [3, 0], seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        nn.MLP.init(2, [1], seed=None)
    with pytest.raises(TypeError):
        nn.MLP.init(2, [1])  # the seed is required


def test_inconsistent_hand_built_models_are_rejected():
    with pytest.raises(ValueError, match="expected nin=3"):
        nn.Layer((nn.Neuron((1.0, 2.0), 0.0),), nin=3)
    layer = nn.Layer.init(2, 3, seed=0)
    with pytest.raises(ValueError, match=r"layers\[1\] takes 2 inputs, but gets 3"):
        nn.MLP((layer, nn.Layer.init(2, 1, seed=0)), nin=2)


def test_models_are_frozen():
    m = tutorial_mlp()
    with pytest.raises(AttributeError):
        m.nin = 4
    with pytest.raises(AttributeError):
        m.layers[0].neurons[0].b = 0.0


# --- losses by hand ---------------------------------------------------------


def test_sum_squares_and_mse_by_hand():
    p, t = [0.5, -1.0, 2.0], [1.0, 1.0, 2.0]
    assert nn.sum_squares(p, t) == 0.25 + 4.0 + 0.0
    assert nn.mse(p, t) == 4.25 / 3
    gp = fg.grad(lambda q: nn.mse(q, t))(p)
    assert gp == pytest.approx([2 * (0.5 - 1.0) / 3, 2 * (-1.0 - 1.0) / 3, 0.0], rel=1e-15)
    assert fg.grad(lambda q: nn.sum_squares(q, t))(p) == [-1.0, -4.0, 0.0]


def test_hinge_by_hand():
    s, y = [2.0, 0.5, 0.5, -0.25], [1.0, 1.0, -1.0, -1.0]
    # relu(1 - y*s): 0, 0.5, 1.5, 0.75
    assert nn.hinge(s, y) == pytest.approx((0.0 + 0.5 + 1.5 + 0.75) / 4, rel=1e-15)
    assert fg.grad(lambda q: nn.hinge(q, y))(s) == [0.0, -0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match=r"labels\[1\] is 0.0; expected -1 or \+1"):
        nn.hinge([1.0, 2.0], [1.0, 0.0])


def test_binary_cross_entropy_by_hand():
    def by_hand(z, y):  # y in {0, 1}
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    zs = [0.0, 2.0, -1.5, 0.3]
    y01 = [1.0, 0.0, 0.0, 1.0]
    expected = sum(by_hand(z, y) for z, y in zip(zs, y01)) / 4
    assert nn.binary_cross_entropy(zs, y01) == pytest.approx(expected, rel=1e-14)
    # the {-1, +1} convention gives the same loss
    ypm = [1.0, -1.0, -1.0, 1.0]
    assert nn.binary_cross_entropy(zs, ypm) == nn.binary_cross_entropy(zs, y01)
    # d/dz = (sigmoid(z) - y) / n, also at z = 0 where relu and abs have kinks
    g = fg.grad(lambda q: nn.binary_cross_entropy(q, y01))(zs)
    assert g == pytest.approx([(1 / (1 + math.exp(-z)) - y) / 4 for z, y in zip(zs, y01)], rel=1e-13)
    assert g[0] == -0.125
    with pytest.raises(ValueError, match=r"labels\[0\] is 2.0"):
        nn.binary_cross_entropy([0.0], [2.0])


def test_binary_cross_entropy_stable_at_large_logits():
    zs = [1000.0, -1000.0, 1000.0, -1000.0]
    ys = [1.0, 0.0, 0.0, 1.0]  # right, right, wrong, wrong
    value, grads = fg.value_and_grad(lambda q: nn.binary_cross_entropy(q, ys))(zs)
    assert value == (0.0 + 0.0 + 1000.0 + 1000.0) / 4
    assert grads == [0.0, 0.0, 0.25, -0.25]
    assert all(math.isfinite(v) for v in [value, *grads])
    with fg.debug_nans():  # no op makes an inf or nan on the way, forward or backward
        fg.grad(lambda q: nn.binary_cross_entropy(q, ys))(zs)


def test_l2_by_hand():
    m = nn.MLP(
        (nn.Layer((nn.Neuron((1.0, -2.0), 3.0, "linear"),), nin=2),),
        nin=2,
    )
    assert nn.l2(m, 0.5) == 0.5 * (1.0 + 4.0 + 9.0)
    g = fg.grad(lambda p: nn.l2(p, 0.5))(m)
    assert tree.leaves(g) == [1.0, -2.0, 3.0]  # alpha * 2 * p
    assert nn.l2({}, 1.0) == 0.0


def test_accuracy():
    assert nn.accuracy([0.3, -2.0, 0.1, 0.0], [1.0, -1.0, -1.0, 1.0]) == 0.5
    assert nn.accuracy([0.3, -2.0], [1.0, 0.0]) == 1.0  # {0, 1} labels
    assert nn.accuracy([fg.var(1.0), fg.var(-1.0), fg.var(2.0)], [1.0, -1.0, -1.0]) == pytest.approx(2 / 3)
    assert type(nn.accuracy([1.0], [1.0])) is float


@pytest.mark.parametrize("loss", [nn.mse, nn.sum_squares, nn.hinge, nn.binary_cross_entropy, nn.accuracy])
def test_losses_validate_lengths(loss):
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        loss([1.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="no samples"):
        loss([], [])
    with pytest.raises(TypeError, match="must be sequences"):
        loss(1.0, 1.0)


def test_losses_on_floats_give_floats_and_on_nodes_give_nodes():
    for loss in (nn.mse, nn.sum_squares, nn.hinge, nn.binary_cross_entropy):
        assert type(loss([0.5, -0.5], [1.0, -1.0])) is float
        out = loss([fg.var(0.5), fg.var(-0.5)], [1.0, -1.0])
        assert fg.is_node(out) and out.value == loss([0.5, -0.5], [1.0, -1.0])


# --- losses against PyTorch (float64) ---------------------------------------

SCORES = [0.7, -1.3, 2.5, -0.2, 0.0, 4.0, -3.5]
LABELS = [1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0]


def _torch_check(torch, ours, theirs, scores, labels, abs=1e-300):
    value, grads = fg.value_and_grad(lambda s: ours(s, labels))(scores)
    s = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(labels, dtype=torch.float64)
    out = theirs(s, y)
    out.backward()
    assert value == pytest.approx(out.item(), rel=1e-14, abs=abs)
    assert grads == pytest.approx(s.grad.tolist(), rel=1e-13, abs=abs)


def test_mse_against_torch(torch):
    targets = [0.5, -0.25, 1.0, 2.0, -1.0, 0.0, 3.0]
    _torch_check(torch, nn.mse, torch.nn.functional.mse_loss, SCORES, targets)


def test_sum_squares_against_torch(torch):
    targets = [0.5, -0.25, 1.0, 2.0, -1.0, 0.0, 3.0]
    _torch_check(torch, nn.sum_squares, lambda p, t: ((p - t) ** 2).sum(), SCORES, targets)


def test_hinge_against_torch(torch):
    _torch_check(torch, nn.hinge, lambda s, y: torch.relu(1 - y * s).mean(), SCORES, LABELS)


def test_binary_cross_entropy_against_torch(torch):
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    y01 = [1.0 if y > 0 else 0.0 for y in LABELS]
    _torch_check(torch, nn.binary_cross_entropy, bce, SCORES, y01)
    # with {-1, +1} labels we agree with torch given the {0, 1} ones
    _torch_check(torch, lambda s, y: nn.binary_cross_entropy(s, LABELS), bce, SCORES, y01)
    big = [1000.0, -1000.0, 1000.0, -1000.0, 40.0, -40.0]
    # at |z| = 40 torch's gradient rounds sigmoid(-40) / n = 7e-19 to 0; ours keeps it
    _torch_check(torch, nn.binary_cross_entropy, bce, big, [1.0, 0.0, 0.0, 1.0, 1.0, 0.0], abs=1e-17)


def test_l2_against_torch(torch):
    m = tutorial_mlp(4)
    value, grads = fg.value_and_grad(lambda p: nn.l2(p, 1e-4))(m)
    t = torch.tensor(tree.leaves(m), dtype=torch.float64, requires_grad=True)
    out = 1e-4 * (t * t).sum()
    out.backward()
    assert value == pytest.approx(out.item(), rel=1e-14)
    assert tree.leaves(grads) == pytest.approx(t.grad.tolist(), rel=1e-14)


def test_mlp_forward_and_gradients_against_torch(torch):
    m = moons_mlp(1)
    x = [0.3, -0.7]
    value, grads = fg.value_and_grad(lambda p: p(x))(m)
    h = torch.tensor(x, dtype=torch.float64)
    params = []
    for layer in m.layers:
        W = torch.tensor([list(n.w) for n in layer.neurons], dtype=torch.float64, requires_grad=True)
        b = torch.tensor([n.b for n in layer.neurons], dtype=torch.float64, requires_grad=True)
        params.append((W, b))
        h = W @ h + b
        if layer.activation == "relu":
            h = torch.relu(h)
    h.sum().backward()
    assert value == pytest.approx(h.item(), rel=1e-12)
    expected = []
    for W, b in params:
        for i in range(W.shape[0]):
            expected += W.grad[i].tolist() + [b.grad[i].item()]
    assert tree.leaves(grads) == pytest.approx(expected, rel=1e-12, abs=1e-15)


# --- the tutorial's training run --------------------------------------------


def _train_tutorial(model):
    xs, ys = fg.data.tiny()

    def loss(m):
        return nn.sum_squares([m(x) for x in xs], ys)

    losses = []
    for _ in range(40):
        value, grads = fg.value_and_grad(loss)(model)
        losses.append(value)
        model = fg.optim.sgd(model, grads, lr=0.05)
    return model, losses, loss(model)


def test_tutorial_training_reaches_loss_under_0_1_and_leaves_params_untouched():
    model = tutorial_mlp(0)
    before = copy.deepcopy(tree.leaves(model))
    trained, losses, final = _train_tutorial(model)
    assert tree.leaves(model) == before  # the original params are untouched
    assert losses[0] == pytest.approx(7.7298, abs=1e-4)
    assert final < 0.1
    assert losses[-1] < losses[0] / 50
    again, losses2, final2 = _train_tutorial(tutorial_mlp(0))
    assert again == trained and losses2 == losses and final2 == final  # same seed, same run, bit for bit


# --- the activation belongs to the layer ---------------------------------------

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_layers_hold_the_activation_and_their_neurons_none():
    m = moons_mlp()
    assert all(n.activation is None for layer in m.layers for n in layer.neurons)
    assert m.activations == ("relu", "relu", "linear")
    # the structure holds one activation per layer, and the neurons' None
    leaves, td = tree.flatten(m)
    assert len(leaves) == 337 and tree.unflatten(td, leaves).activations == m.activations
    assert nn.Layer.init(2, 3, seed=0).activation == "tanh"
    assert nn.Layer([nn.Neuron((1.0,), 0.0, None)], nin=1).activation == "tanh"  # the default, as in init


def test_a_layer_built_from_neurons_with_activations_takes_theirs():
    old_style = nn.Layer([nn.Neuron((1.0, 2.0), 0.5, "relu"), nn.Neuron((0.0, 1.0), -1.0, "relu")], nin=2)
    new_style = nn.Layer([nn.Neuron((1.0, 2.0), 0.5, None), nn.Neuron((0.0, 1.0), -1.0, None)], 2, "relu")
    assert old_style == new_style and old_style.activation == "relu"
    assert [n.activation for n in old_style.neurons] == [None, None]
    assert old_style([-1.0, 0.25]) == [0.0, 0.0] and new_style([1.0, 0.25]) == [2.0, 0.0]
    # agreeing with an explicit layer activation is fine too
    assert nn.Layer([nn.Neuron((1.0,), 0.0, "sigmoid")], 1, "sigmoid") == nn.Layer([nn.Neuron((1.0,), 0.0, None)], 1, "sigmoid")


@pytest.mark.parametrize(
    "neurons, act, found",
    [
        ([nn.Neuron((1.0,), 0.0, "relu"), nn.Neuron((1.0,), 0.0, "tanh")], None, "'relu', 'tanh' and the layer None"),
        ([nn.Neuron((1.0,), 0.0, "relu"), nn.Neuron((1.0,), 0.0, None)], None, "'relu', None and the layer None"),
        ([nn.Neuron((1.0,), 0.0, "relu")], "tanh", "'relu' and the layer 'tanh'"),
    ],
)
def test_no_mixed_layers(neurons, act, found):
    with pytest.raises(ValueError, match="the activation belongs to the layer") as e:
        nn.Layer(neurons, 1, act)
    assert found in str(e.value)


def test_mlp_repr_with_different_hidden_activations_lists_them():
    m = nn.MLP([nn.Layer.init(2, 3, seed=0, activation="relu"), nn.Layer.init(3, 3, seed=1), nn.Layer.init(3, 1, seed=2, activation="linear")], nin=2)
    assert repr(m) == "MLP(2, [3, 3, 1], activations=['relu', 'tanh', 'linear'])"
    assert (m.activation, m.final_activation) == ("relu", "linear")


def test_each_layer_applies_its_own_activation_by_hand():
    # relu, then tanh, then linear, on weights chosen so each activation shows
    m = nn.MLP(
        [
            nn.Layer([nn.Neuron((1.0, -2.0), 0.5, None), nn.Neuron((2.0, 1.0), -1.0, None)], 2, "relu"),
            nn.Layer([nn.Neuron((0.5, 3.0), -1.0, None), nn.Neuron((-0.25, 1.0), 0.0, None)], 2, "tanh"),
            nn.Layer([nn.Neuron((2.0, -4.0), 0.25, None)], 2, "linear"),
        ],
        nin=2,
    )
    # at x = (0.5, -0.5): relu(0.5 + 0.5 + 1.0) = 2.0 and relu(-1.0 + 1.0 - 0.5) = 0.0;
    # then tanh(-1.0 + 1.0 + 0.0) = 0.0 and tanh(0.0 - 0.5 + 0.0) = -tanh(0.5);
    # then 0.25 + 2.0 * 0.0 - 4.0 * -tanh(0.5)
    assert m([0.5, -0.5]) == pytest.approx(0.25 + 4.0 * math.tanh(0.5), rel=1e-15)
    assert m([0.5, -0.5]) == pytest.approx(2.0984686290, abs=1e-10)


def _floats(rows):
    return [[float(v) for v in r] for r in rows]


def test_a_checkpoint_saved_with_activations_on_neurons_loads_with_the_same_outputs():
    # written by fungrad before the activation moved to the layer (each Neuron's static field
    # held it, each Layer's static fields only nin); the outputs were computed then too
    old = fg.checkpoint.load(os.path.join(DATA, "mlp_v0_activation_per_neuron.json"))
    with open(os.path.join(DATA, "mlp_v0_outputs.json")) as f:
        ref = json.load(f)
    xs3, xs2 = _floats(ref["xs3"]), _floats(ref["xs2"])
    assert old["tutorial"] == nn.MLP.init(3, [4, 4, 1], seed=0)
    assert old["moons"] == moons_mlp(1) and old["moons"].activations == ("relu", "relu", "linear")
    assert old["multi"] == nn.MLP.init(2, [3, 2], seed=4, activation="sigmoid")
    # bit for bit: the outputs of the old code, of the loaded model and of a fresh one agree
    for name, xs in (("tutorial", xs3), ("moons", xs2)):
        assert [repr(old[name](x)) for x in xs] == ref[name]
    assert [[repr(v) for v in old["multi"](x)] for x in xs2] == ref["multi"]
    g = fg.grad(lambda m: nn.mse([m(x) for x in xs3], [1.0, -1.0, 0.5, 0.0, 1.0]))(old["tutorial"])
    assert [repr(v) for v in tree.leaves(g)] == ref["tutorial_grad"]


def test_an_old_checkpoint_with_a_mixed_layer_says_why_it_cannot_load():
    path = os.path.join(DATA, "mlp_v0_mixed_activations.json")
    with pytest.raises(ValueError) as e:
        fg.checkpoint.load(path)
    msg = str(e.value)
    assert path in msg and "fungrad.nn.Layer" in msg
    assert "'relu', 'tanh'" in msg and "loads only if the neurons of each layer agree" in msg


def test_new_checkpoints_store_the_activation_on_the_layer(tmp_path):
    fg.checkpoint.save(tmp_path / "m.json", moons_mlp(0))
    doc = json.loads((tmp_path / "m.json").read_text())
    layer = doc["tree"]["children"][0]["tuple"][0]
    assert layer["type"] == "fungrad.nn.Layer" and layer["static"] == {"tuple": [2, "relu"]}
    assert layer["children"][0]["tuple"][0]["static"] == {"tuple": [None]}
    assert fg.checkpoint.load(tmp_path / "m.json") == moons_mlp(0)


def test_neuron_without_activation_is_affine():
    n = nn.Neuron((2.0, -1.0), 0.5, None)
    assert n([1.0, 3.0]) == 0.5 + 2.0 - 3.0
    assert nn.Neuron.init(2, seed=0, activation=None).activation is None


# --- bad input: the leaf rules of grad ------------------------------------------

BAD_LEAVES = [*conftest.BAD_LEAVES, (None, "NoneType")]


@pytest.mark.parametrize("bad, tname", BAD_LEAVES, ids=[t for _, t in BAD_LEAVES])
def test_models_reject_inputs_that_are_not_real_numbers(bad, tname):
    for model, who in ((tutorial_mlp(), "MLP"), (nn.Layer.init(3, 2, seed=0), "Layer"), (nn.Neuron.init(3, seed=0), "Neuron")):
        with pytest.raises(TypeError, match=rf"^{who}: x\[1\] is {tname} .*expected a real number \(float or int\) or a fungrad Node"):
            model([0.5, bad, 1.0])


@pytest.mark.parametrize("bad, tname", BAD_LEAVES, ids=[t for _, t in BAD_LEAVES])
@pytest.mark.parametrize("loss", [nn.mse, nn.sum_squares, nn.hinge, nn.binary_cross_entropy, nn.accuracy])
def test_losses_reject_values_that_are_not_real_numbers(loss, bad, tname):
    name = loss.__name__
    first = {"mse": "predictions", "sum_squares": "predictions", "binary_cross_entropy": "logits"}.get(name, "scores")
    second = "targets" if first == "predictions" else "labels"
    if not (name == "accuracy" and tname in ("str", "bytes")):  # a str is a sequence: accuracy's logits branch
        with pytest.raises(TypeError, match=rf"^{name}: {first}\[1\] is {tname} "):
            loss([0.5, bad], [1.0, 1.0])
    with pytest.raises(TypeError, match=rf"^{name}: {second}\[0\] is {tname} "):
        loss([0.5, 0.5], [bad, 1.0])


def test_mse_of_a_bool_is_an_error_not_zero():
    with pytest.raises(TypeError, match=r"mse: predictions\[0\] is bool True"):
        nn.mse([True], [1.0])


def test_float32_and_fraction_inputs_are_converted_exactly_to_float64():
    np = require("numpy", 'pip install "fungrad[fast]"')
    m = tutorial_mlp()
    x32 = [np.float32(0.1), np.float32(-1.7), np.float32(2.3)]
    as64 = [float(v) for v in x32]  # exact: every float32 is a float64
    assert as64 != [0.1, -1.7, 2.3]
    out = m(x32)
    assert type(out) is float and out == m(as64)
    assert m([fractions.Fraction(1, 3), 1, 2]) == m([1 / 3, 1.0, 2.0])
    assert nn.mse([np.float32(0.5)], [np.float64(0.25)]) == nn.mse([float(np.float32(0.5))], [0.25]) == 0.0625
    assert type(nn.mse([np.float32(0.5)], [1])) is float
    assert nn.hinge([np.float32(0.5)], [np.float32(-1.0)]) == 1.5
    assert nn.accuracy([np.float32(0.5)], [np.int64(1)]) == 1.0


def test_huge_ints_name_the_function_argument_and_value():
    with pytest.raises(ValueError, match=r"^MLP: x\[0\] is an int of about 401 digits, too large for a float$"):
        tutorial_mlp()([10**400, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"^mse: targets\[0\] is an int of about 401 digits, too large for a float$"):
        nn.mse([1.0], [10**400])
    with pytest.raises(ValueError, match=r"^l2: alpha is an int of about 401 digits"):
        nn.l2([1.0], 10**400)
    assert tutorial_mlp()([10**300, 0, 0]) == tutorial_mlp()([1e300, 0.0, 0.0])  # big but representable


def test_l2_checks_leaves_with_their_path_and_alpha():
    with pytest.raises(TypeError, match=r"^l2: params at \['w'\]\[1\] is complex \(1\+2j\)"):
        nn.l2({"w": [1.0, 1 + 2j]}, 0.1)
    with pytest.raises(TypeError, match=r"^l2: alpha is str '0.1'"):
        nn.l2([1.0], "0.1")
    with pytest.raises(ValueError, match="l2: alpha must be a finite number, got nan"):
        nn.l2([1.0], math.nan)
    assert nn.l2([2, 3], 1) == 13.0
    assert fg.grad(lambda a: nn.l2([3.0], a))(0.5) == 9.0  # alpha may be a node


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda seed: nn.MLP.init(10**400, [4, 1], seed=seed), r"^MLP.init: nin must be at most fungrad.nn.MAX_PARAMETERS = 10,000,000, got an int of about 401 digits$"),
        (lambda seed: nn.MLP.init(2, [4, 10**400], seed=seed), r"^MLP.init: nouts\[1\] must be at most .*about 401 digits$"),
        (lambda seed: nn.MLP.init(2, range(10**400), seed=seed), r"^MLP.init: nouts has more layers than fungrad.nn.MAX_PARAMETERS"),
        (lambda seed: nn.MLP.init(10**6, [10**6, 1], seed=seed), r"^MLP.init: sizes \[1000000, 1000000, 1\] make 1,000,002,000,001 parameters, more than"),
        (lambda seed: nn.Layer.init(10**4, 10**4, seed=seed), r"^Layer.init: sizes \[10000, 10000\] make 100,010,000 parameters"),
        (lambda seed: nn.Neuron.init(10**7, seed=seed), r"^Neuron.init: sizes \[10000000, 1\] make 10,000,001 parameters"),
        (lambda seed: nn.Layer.init(2, 10**400, seed=seed), r"^Layer.init: nout must be at most"),
        (lambda seed: nn.MLP.init(-(10**400), [1], seed=seed), r"^MLP.init: nin must be a positive int, got an int of about 401 digits$"),
    ],
)
def test_sizes_are_checked_before_anything_is_allocated(make, match):
    class Counting(random.Random):
        draws = 0

        def random(self) -> float:
            Counting.draws += 1
            return super().random()

    with pytest.raises(ValueError, match=match):
        make(Counting(0))
    assert Counting.draws == 0  # refused before a single weight was drawn
    assert nn.Neuron.init(3, seed=Counting(0)) and Counting.draws == 4  # the counter counts


@pytest.mark.parametrize("loss, good, bad", [
    (nn.hinge, [1.0, -1.0, 1.0], [1.0, 0.0, 1.0]),
    (nn.binary_cross_entropy, [1.0, 0.0, -1.0], [1.0, 0.5, 1.0]),
    (nn.binary_cross_entropy, [1.0, 0.0, -1.0], [1.0, 2.0, 1.0]),
    (nn.binary_cross_entropy, [1.0, 0.0, -1.0], [1.0, float("nan"), 1.0]),
    (nn.hinge, [1.0, -1.0, 1.0], [1.0, float("inf"), 1.0]),
])
def test_labels_that_eager_refuses_give_nan_under_jit_not_a_silent_loss(loss, good, bad):
    scores = [0.7, -0.2, 2.0]
    vg = fg.jit(fg.value_and_grad(lambda s, y: loss(s, y)))
    v, g = vg(scores, good)
    assert (v, g) == fg.value_and_grad(lambda s: loss(s, good))(scores)  # valid labels: bit for bit as eager
    with pytest.raises(ValueError, match="labels\\[1\\]"):
        loss(scores, bad)
    v, g = vg(scores, bad)
    assert math.isnan(v) and math.isnan(g[1])  # the bad sample's loss and gradient
    assert g[0] == fg.grad(lambda s: loss(s, good))(scores)[0]  # the other samples keep theirs


def test_a_nan_score_is_never_a_right_prediction():
    nan = float("nan")
    assert nn.accuracy([nan, nan], [-1.0, -1.0]) == 0.0
    assert nn.accuracy([nan, -2.0, 3.0, nan], [-1.0, -1.0, 1.0, 1.0]) == 0.5
    assert nn.accuracy([[nan, 1.0], [0.0, 1.0]], [1, 1]) == 0.5  # as a nan logit row, which predicts nothing
    assert nn.accuracy([fg.var(nan)], [0.0]) == 0.0


def test_squared_losses_on_floats_overflow_to_inf_as_on_nodes():
    for loss in (nn.mse, nn.sum_squares):
        assert loss([1e200], [0.0]) == math.inf == fg.value_and_grad(lambda p: loss(p, [0.0]))([1e200])[0]
        assert loss([0.5, -1.0], [1.0, 1.0]) == fg.value_and_grad(lambda p: loss(p, [1.0, 1.0]))([0.5, -1.0])[0]


def test_dicts_and_sets_are_not_sequences_of_values():
    # a dict iterates over its keys, a set in an order of its own: list() of
    # either would be a loss of the wrong numbers
    model = nn.MLP.init(2, [1], seed=0)
    bad = [
        (lambda: nn.cross_entropy([{0: 1.0, 1: 2.0}], [0]), "logits\\[0\\] must be a list"),
        (lambda: nn.mse({1.0: 0}, {2.0: 0}), "mse: predictions and targets must be sequences"),
        (lambda: nn.hinge({0.5, 0.7}, [1.0, -1.0]), "hinge: scores and labels must be sequences"),
        (lambda: nn.softmax({3.0, 1.0, 2.0}), "softmax: xs must be a list"),
        (lambda: model({1.0: 0, 2.0: 0}), "expected a sequence of 2 numbers"),
        (lambda: nn.accuracy([1.0, -1.0], {1.0: 0, -1.0: 0}), "accuracy: scores and labels must be sequences"),
    ]
    for call, match in bad:
        with pytest.raises(TypeError, match=match):
            call()
    # tuples and lists give the same numbers
    assert nn.cross_entropy([(1.0, 2.0)], [0]) == nn.cross_entropy([[1.0, 2.0]], [0]) == math.log1p(math.e)
    assert model((1.0, 2.0)) == model([1.0, 2.0])


def test_a_nan_label_is_an_error_for_accuracy_as_for_the_losses():
    with pytest.raises(ValueError, match=r"accuracy: labels\[1\] is nan"):
        nn.accuracy([1.0, -1.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match=r"labels\[0\]"):
        nn.hinge([1.0], [float("nan")])
    assert nn.accuracy([1.0, -1.0, 2.0], [1.0, -1.0, 0.0]) == 2 / 3


def test_accuracy_takes_rows_of_logits_as_numpy_rows_too():
    np = require("numpy", 'pip install "fungrad[fast]"')
    logits = [[1.0, 0.0, -1.0], [0.0, 1.0, 3.0], [2.0, 2.5, 0.0]]
    labels = [0, 1, 1]
    assert nn.accuracy(np.array(logits), labels) == nn.accuracy(logits, labels) == 2 / 3
    assert nn.accuracy(np.array([0.5, -1.0]), [1.0, 1.0]) == 0.5


def test_an_enum_member_is_no_number_and_a_numpy_int_is_a_seed():
    import enum

    class Mode(enum.IntEnum):
        A = 1

    with pytest.raises(TypeError, match=r"mse: predictions\[0\] is Mode <Mode.A: 1>; expected a real number"):
        nn.mse([Mode.A], [1.0])
    np = require("numpy", 'pip install "fungrad[fast]"')
    assert nn.MLP.init(2, [3, 1], seed=np.int64(3)) == nn.MLP.init(2, [3, 1], seed=3)
