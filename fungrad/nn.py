"""Models and losses: ``Neuron``, ``Layer`` and ``MLP`` as frozen pytrees of floats.

A model here is data, not an object with state: a frozen attrs class whose
leaves are its weights and biases, registered with :mod:`fungrad.tree` so
that ``fg.grad`` returns gradients shaped like it, ``fg.optim`` returns new
models from old ones, and :mod:`fungrad.checkpoint` can save it. Layer sizes
and activation names are static fields: they are part of the structure, not
parameters.

Calling a model computes its output with whatever it is given: fungrad nodes
(inside ``grad``, to train) or plain floats (fast, to plot or predict).

>>> import fungrad as fg
>>> model = fg.nn.MLP.init(3, [4, 4, 1], seed=0)
>>> model
MLP(3, [4, 4, 1], activation='tanh')
>>> len(fg.tree.leaves(model))
41
>>> xs, ys = fg.data.tiny()
>>> loss = lambda m: fg.nn.sum_squares([m(x) for x in xs], ys)
>>> for step in range(40):
...     model = fg.optim.sgd(model, fg.grad(loss)(model), lr=0.05)
>>> loss(model) < 0.1
True

Losses take a sequence of predictions (one number or node per sample) and
a sequence of targets; they return a node when any input is a node, else a
float.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Mapping, Set
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, Union

import attrs

from . import expr, tree
from .expr import Node

__all__ = [
    "Neuron",
    "Layer",
    "MLP",
    "ACTIVATIONS",
    "mse",
    "sum_squares",
    "hinge",
    "binary_cross_entropy",
    "l2",
    "accuracy",
    "logsumexp",
    "softmax",
    "log_softmax",
    "cross_entropy",
]

Scalar = Union[Node, float, int]
Seed = Union[int, random.Random]

if TYPE_CHECKING:
    # the converters of the tuple fields (tuple itself at run time), typed for
    # mypy's attrs plugin, which does not resolve the generic tuple
    def _weights(items: Iterable[Scalar]) -> tuple[Scalar, ...]: ...
    def _neurons(items: Iterable[Neuron]) -> tuple[Neuron, ...]: ...
    def _layers(items: Iterable[Layer]) -> tuple[Layer, ...]: ...
else:
    _weights = _neurons = _layers = tuple


def _linear(x: Scalar) -> Scalar:
    return x


#: The activation functions by name. Each works on nodes and on plain floats.
ACTIVATIONS: dict[str, Callable[[Scalar], Scalar]] = {
    "tanh": expr.tanh,
    "relu": expr.relu,
    "sigmoid": expr.sigmoid,
    "linear": _linear,
}


def _check_activation(name: Any, what: str = "activation") -> str:
    if name.__class__ is not str or name not in ACTIVATIONS:
        valid = ", ".join(repr(k) for k in sorted(ACTIVATIONS))
        raise ValueError(f"unknown {what} {name!r}; expected one of {valid}")
    return name


def _validate_activation(inst: Any, attribute: Any, value: Any) -> None:
    # None: no activation of its own (a neuron in a layer, or a layer whose neurons say)
    if value is not None:
        _check_activation(value)


def _val(v: Any) -> float:
    # a measurement reads values: fine inside grad (as aux), but under jit
    # and vmap a traced value is a placeholder of the trace, so it raises
    return expr._value_of(v, "nn.accuracy") if expr.is_node(v) else float(v)  # type: ignore[no-any-return]


def _scalars(xs: list[Any], who: str, name: str) -> list[Any]:
    for i, v in enumerate(xs):
        if v.__class__ is not float and v.__class__ is not Node:
            xs[i] = tree.number(v, who, f"{name}[{i}]")
    return xs


def _rng(seed: Seed, who: str) -> random.Random:
    if isinstance(seed, random.Random):
        return seed
    # only ints: seed=None would draw from the OS and no two runs would agree
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{who}: seed must be an int (or a random.Random), got {seed!r}")
    seed = int(seed)  # NumPy's ints too
    if seed < 0:  # random.Random takes -5 for 5
        raise ValueError(f"{who}: seed must be an int >= 0 (or a random.Random), got {seed}")
    return random.Random(seed)


#: The most parameters that ``init`` builds: a scalar engine at about a
#: microsecond per operation takes seconds per forward pass past this, and
#: the floats alone take a gigabyte. Sizes are checked against it before
#: anything is drawn or allocated; raise it if you mean it.
MAX_PARAMETERS = 10_000_000


def _check_size(n: Any, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be a positive int, got {tree.describe(n) if isinstance(n, int) else repr(n)}")
    if n > MAX_PARAMETERS:
        raise ValueError(f"{what} must be at most fungrad.nn.MAX_PARAMETERS = {MAX_PARAMETERS:,}, got {tree.describe(n)}")
    return n


def _check_total(sizes: Sequence[int], who: str) -> None:
    total = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    if total > MAX_PARAMETERS:
        raise ValueError(
            f"{who}: sizes {list(sizes)} make {total:,} parameters, more than fungrad.nn.MAX_PARAMETERS = {MAX_PARAMETERS:,}"
        )


def _listed(x: Any) -> list[Any]:
    # A dict iterates over its keys and a set in an order of its own: neither
    # is a sequence of values, though list() takes both
    c = x.__class__
    if c is list or c is tuple:
        return list(x)
    if isinstance(x, (Mapping, Set, str, bytes)):
        raise TypeError
    return list(x)


def _inputs(x: Any, nin: int, who: str) -> list[Any]:
    try:
        xs = _listed(x)
    except TypeError:
        raise TypeError(f"{who}: expected a sequence of {nin} numbers or nodes, got {type(x).__name__} {x!r:.60}") from None
    if len(xs) != nin:
        raise ValueError(f"{who}: expected {nin} input{'s' if nin != 1 else ''} (nin={nin}), got {len(xs)}")
    return _scalars(xs, who, "x")


# --------------------------------------------------------------------------
# Models


@attrs.frozen
class Neuron:
    """One neuron: ``activation(w . x + b)``.

    ``w`` holds one weight per input (stored as a tuple), ``b`` is the bias;
    both are leaves. ``activation`` is a static field, one of
    :data:`ACTIVATIONS`, or ``None`` for none of its own: the neurons of a
    :class:`Layer` have ``None``, because the activation belongs to the layer.

    >>> import fungrad as fg
    >>> n = fg.nn.Neuron(w=(-3.0, 1.0), b=6.8813735870195432)
    >>> round(n([2.0, 0.0]), 4)        # the tutorial's neuron: tanh(2*-3 + 0*1 + 6.88...)
    0.7071
    >>> fg.tree.leaves(n)
    [-3.0, 1.0, 6.881373587019543]
    >>> fg.nn.Neuron(w=(-3.0, 1.0), b=1.0, activation=None)([2.0, 0.0])    # just w . x + b
    -5.0
    """

    w: tuple[Scalar, ...] = attrs.field(converter=_weights)
    b: Scalar
    activation: str | None = tree.static(default="tanh", validator=_validate_activation)

    @classmethod
    def init(cls, nin: int, *, seed: Seed, activation: str | None = "tanh") -> Neuron:
        """A neuron with ``nin`` weights and a bias drawn uniformly from [-1, 1].

        ``seed`` is an int or a ``random.Random`` to draw from; the weights
        are drawn first, in order, then the bias.

        >>> import fungrad as fg
        >>> n = fg.nn.Neuron.init(2, seed=0)
        >>> n == fg.nn.Neuron.init(2, seed=0), len(n.w), -1 <= n.b <= 1
        (True, 2, True)
        """
        _check_size(nin, "Neuron.init: nin")
        _check_total([nin, 1], "Neuron.init")
        if activation is not None:
            _check_activation(activation)
        rng = _rng(seed, "Neuron.init")
        w = tuple(rng.uniform(-1.0, 1.0) for _ in range(nin))
        return cls(w, rng.uniform(-1.0, 1.0), activation)

    @property
    def nin(self) -> int:
        """The number of inputs (weights)."""
        return len(self.w)

    def __call__(self, x: Sequence[Scalar]) -> Scalar:
        return self._forward(_inputs(x, len(self.w), "Neuron"))

    def _forward(self, x: Sequence[Scalar]) -> Scalar:
        act = self._affine(x)
        return act if self.activation is None else ACTIVATIONS[self.activation](act)

    def _affine(self, x: Sequence[Scalar]) -> Scalar:
        # b + w0*x0 + w1*x1 + ...: micrograd's order, so its graphs look the same
        return expr.affine(self.b, self.w, x)


@attrs.frozen(repr=False)
class Layer:
    """A layer of neurons that all see the same ``nin`` inputs (``nin`` is static).

    Called on ``nin`` inputs it returns one output per neuron: a list, or
    the single output when the layer has one neuron (as in micrograd).

    The activation belongs to the layer (a static field, as Equinox's MLP
    keeps its activation once), so every neuron of a layer applies the same
    one; its neurons have ``activation=None``. A layer built from neurons that
    carry their own activation (as fungrad stored layers before, so also
    checkpoints saved then) takes theirs, which must be the same for all of
    them and agree with ``activation`` if that is given; otherwise it is a
    ``ValueError`` that says so. ``activation`` left as ``None`` with
    neurons of none of their own means ``"tanh"``.

    >>> import fungrad as fg
    >>> layer = fg.nn.Layer.init(3, 2, seed=0, activation="relu")
    >>> layer, len(layer([1.0, 2.0, 3.0])), layer.neurons[0].activation
    (Layer(nin=3, nout=2, activation='relu'), 2, None)
    >>> fg.nn.Layer([fg.nn.Neuron((1.0,), 0.0, "relu")], nin=1) == fg.nn.Layer([fg.nn.Neuron((1.0,), 0.0, None)], 1, "relu")
    True
    """

    neurons: tuple[Neuron, ...] = attrs.field(converter=_neurons)
    nin: int = tree.static()
    activation: str | None = tree.static(default=None, validator=_validate_activation)

    def __attrs_post_init__(self) -> None:
        # runs on every rebuild (grad, optimizer steps): keep it cheap
        if not self.neurons:
            raise ValueError("Layer: needs at least one neuron")
        own = False
        for i, n in enumerate(self.neurons):
            if not isinstance(n, Neuron):
                raise TypeError(f"Layer: neurons[{i}] is {type(n).__name__}, expected a Neuron")
            if len(n.w) != self.nin:
                raise ValueError(f"Layer: neurons[{i}] has {len(n.w)} weights, expected nin={self.nin}")
            own = own or n.activation is not None
        if own or self.activation is None:
            self._settle()

    def _settle(self) -> None:
        # the slow path, for hand-built layers and old checkpoints: never on a rebuild by tree
        acts = {n.activation for n in self.neurons}
        own = acts - {None}
        if len(acts) > 1 or (own and self.activation is not None and own != {self.activation}):
            found = ", ".join(sorted(repr(a) for a in acts))
            raise ValueError(
                f"Layer: the neurons have the activations {found} and the layer {self.activation!r}; "
                "the activation belongs to the layer, so its neurons must share it (give the neurons "
                "activation=None and the layer its activation). A checkpoint saved when each neuron "
                "kept its own loads only if the neurons of each layer agree"
            )
        act = next(iter(own)) if own else self.activation or "tanh"
        object.__setattr__(self, "activation", act)
        if own:
            object.__setattr__(self, "neurons", tuple(attrs.evolve(n, activation=None) for n in self.neurons))

    @classmethod
    def init(cls, nin: int, nout: int, *, seed: Seed, activation: str = "tanh") -> Layer:
        """``nout`` neurons of ``nin`` inputs each, drawn in order from ``seed`` (see :meth:`Neuron.init`).

        >>> import fungrad as fg
        >>> fg.nn.Layer.init(2, 3, seed=1).nout
        3
        """
        _check_size(nin, "Layer.init: nin")
        _check_size(nout, "Layer.init: nout")
        _check_total([nin, nout], "Layer.init")
        _check_activation(activation)
        rng = _rng(seed, "Layer.init")
        return cls(tuple(Neuron.init(nin, seed=rng, activation=None) for _ in range(nout)), nin, activation)

    @property
    def nout(self) -> int:
        """The number of neurons (outputs)."""
        return len(self.neurons)

    def __repr__(self) -> str:
        return f"Layer(nin={self.nin}, nout={self.nout}, activation={self.activation!r})"

    def __call__(self, x: Sequence[Scalar]) -> Scalar | list[Scalar]:
        out = self._forward(_inputs(x, self.nin, "Layer"))
        return out[0] if len(out) == 1 else out

    def _forward(self, x: Sequence[Scalar]) -> list[Scalar]:
        f = ACTIVATIONS[self.activation]  # type: ignore[index]  # a str once __attrs_post_init__ settles it
        affine = expr.affine
        out = []
        for n in self.neurons:
            act = affine(n.b, n.w, x)
            out.append(act if f is _linear else f(act))
        return out


@attrs.frozen(repr=False)
class MLP:
    """A multi-layer perceptron: layers applied in turn to ``nin`` inputs (``nin`` is static).

    Build one with :meth:`MLP.init`. Calling it on ``nin`` numbers or nodes
    returns one output when the last layer has one neuron, else a list.
    On plain floats it computes with plain floats, which is the fast way to
    predict or to plot.

    >>> import fungrad as fg
    >>> model = fg.nn.MLP.init(2, [16, 16, 1], seed=0, activation="relu", final_activation="linear")
    >>> model, model.nouts, len(fg.tree.leaves(model))
    (MLP(2, [16, 16, 1], activation='relu', final_activation='linear'), (16, 16, 1), 337)
    >>> isinstance(model([0.5, -0.5]), float)
    True
    """

    layers: tuple[Layer, ...] = attrs.field(converter=_layers)
    nin: int = tree.static()

    def __attrs_post_init__(self) -> None:
        if not self.layers:
            raise ValueError("MLP: needs at least one layer")
        nin = self.nin
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"MLP: layers[{i}] is {type(layer).__name__}, expected a Layer")
            if layer.nin != nin:
                raise ValueError(f"MLP: layers[{i}] takes {layer.nin} inputs, but gets {nin}")
            nin = layer.nout

    @classmethod
    def init(
        cls,
        nin: int,
        nouts: Sequence[int],
        *,
        seed: Seed,
        activation: str = "tanh",
        final_activation: str | None = None,
    ) -> MLP:
        """An MLP of ``nin`` inputs and layers of ``nouts`` neurons, from ``seed``.

        Every weight and bias is drawn from ``random.Random(seed).uniform(-1, 1)``,
        layer by layer, neuron by neuron (weights, then bias), as in the
        micrograd tutorial, so the same seed gives the same model on any
        machine. ``activation`` applies to the hidden layers and
        ``final_activation`` to the last one; ``None`` means the same as
        ``activation`` (the tutorial's ``MLP(3, [4, 4, 1])`` is tanh
        throughout; micrograd's moons demo is relu with a ``"linear"`` output).

        >>> import fungrad as fg
        >>> a = fg.nn.MLP.init(3, [4, 4, 1], seed=0)
        >>> a == fg.nn.MLP.init(3, [4, 4, 1], seed=0), a == fg.nn.MLP.init(3, [4, 4, 1], seed=1)
        (True, False)
        >>> fg.nn.MLP.init(3, [4, 1], seed=0, activation="swish")
        Traceback (most recent call last):
        ...
        ValueError: unknown activation 'swish'; expected one of 'linear', 'relu', 'sigmoid', 'tanh'
        """
        _check_size(nin, "MLP.init: nin")
        if isinstance(nouts, (str, bytes)) or not isinstance(nouts, Sequence) or not nouts:
            raise ValueError(f"MLP.init: nouts must be a non-empty list of layer sizes, got {nouts!r:.60}")
        try:
            depth = len(nouts)
        except OverflowError:  # range(10**400) is a Sequence too
            depth = MAX_PARAMETERS + 1
        if depth > MAX_PARAMETERS:  # each layer has a parameter at least
            raise ValueError(f"MLP.init: nouts has more layers than fungrad.nn.MAX_PARAMETERS = {MAX_PARAMETERS:,}")
        for i, n in enumerate(nouts):
            _check_size(n, f"MLP.init: nouts[{i}]")
        _check_total([nin, *nouts], "MLP.init")
        _check_activation(activation)
        final = activation if final_activation is None else _check_activation(final_activation, "final_activation")
        rng = _rng(seed, "MLP.init")
        sizes = [nin, *nouts]
        acts = [activation] * (len(nouts) - 1) + [final]
        return cls(tuple(Layer.init(sizes[i], sizes[i + 1], seed=rng, activation=acts[i]) for i in range(len(nouts))), nin)

    @property
    def nouts(self) -> tuple[int, ...]:
        """The number of neurons of each layer."""
        return tuple(layer.nout for layer in self.layers)

    @property
    def activations(self) -> tuple[str, ...]:
        """The activation of each layer."""
        return tuple(layer.activation for layer in self.layers)  # type: ignore[misc]

    @property
    def activation(self) -> str:
        """The activation of the first layer: that of every hidden layer, for a model from :meth:`init`."""
        return self.layers[0].activation  # type: ignore[return-value]

    @property
    def final_activation(self) -> str:
        """The activation of the last layer."""
        return self.layers[-1].activation  # type: ignore[return-value]

    def __repr__(self) -> str:
        hidden = {layer.activation for layer in self.layers[:-1]}
        if len(hidden) > 1:  # hand-built, not what init makes: show them all
            return f"MLP({self.nin}, {list(self.nouts)}, activations={list(self.activations)!r})"
        extra = f", final_activation={self.final_activation!r}" if self.final_activation != self.activation else ""
        return f"MLP({self.nin}, {list(self.nouts)}, activation={self.activation!r}{extra})"

    def __call__(self, x: Sequence[Scalar]) -> Scalar | list[Scalar]:
        out = _inputs(x, self.nin, "MLP")
        for layer in self.layers:
            out = layer._forward(out)
        return out[0] if len(out) == 1 else out


# registered so that checkpoints can save and load them by name
tree.register(Neuron)
tree.register(Layer)
tree.register(MLP)


# --------------------------------------------------------------------------
# Losses and metrics


def _pairs(a: Any, b: Any, who: str, names: tuple[str, str]) -> tuple[list[Any], list[Any]]:
    try:
        xs, ys = _listed(a), _listed(b)
    except TypeError:
        raise TypeError(
            f"{who}: {names[0]} and {names[1]} must be sequences (one value per sample), "
            f"got {type(a).__name__} and {type(b).__name__}"
        ) from None
    if len(xs) != len(ys):
        raise ValueError(f"{who}: {names[0]} and {names[1]} must have the same length, got {len(xs)} and {len(ys)}")
    if not xs:
        raise ValueError(f"{who}: no samples (empty {names[0]})")
    return xs, ys


def _check_labels(ys: list[Any], allowed: tuple[float, ...], who: str, text: str) -> None:
    for i, y in enumerate(ys):
        # labels that are nodes (traced data under jit) cannot be read; numbers are checked
        if y.__class__ is not Node and y not in allowed:
            raise ValueError(f"{who}: labels[{i}] is {y!r}; expected {text}")


def _label_ok(y: Any, allowed: Iterable[float]) -> Any:
    # A traced label (under jit) cannot be checked by value, so an invalid
    # one makes the sample's loss nan, and its gradient: a term is
    # multiplied by this, 1.0 (exact: x * 1.0 is x) where y is an allowed
    # value and nan elsewhere (0.0 * y is nan for a nan or infinite label)
    ok: Any = float("nan")
    for a in allowed:
        ok = expr.where(y - a, ok, expr.where(a - y, ok, 1.0))  # y neither above nor below a
    return ok + 0.0 * y


def _if_label(term: Any, y: Any, allowed: tuple[float, ...]) -> Any:
    return term if y.__class__ is not Node else term * _label_ok(y, allowed)


def _square(d: Any) -> Any:
    # on floats Python's ** raises OverflowError past 1e154, where the pow primitive (and a node) gives inf
    try:
        return d**2
    except OverflowError:
        return math.inf


def _total(terms: list[Any]) -> Any:
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def sum_squares(predictions: Sequence[Scalar], targets: Sequence[Scalar]) -> Scalar:
    """The sum of squared errors, ``sum((p - t) ** 2)``: the micrograd tutorial's loss.

    >>> import fungrad as fg
    >>> fg.nn.sum_squares([0.5, -1.0], [1.0, 1.0])
    4.25
    """
    ps, ts = _pairs(predictions, targets, "sum_squares", ("predictions", "targets"))
    ps, ts = _scalars(ps, "sum_squares", "predictions"), _scalars(ts, "sum_squares", "targets")
    return _total([_square(p - t) for p, t in zip(ps, ts)])


def mse(predictions: Sequence[Scalar], targets: Sequence[Scalar]) -> Scalar:
    """The mean squared error, ``sum((p - t) ** 2) / n`` (PyTorch's ``mse_loss``).

    >>> import fungrad as fg
    >>> fg.nn.mse([0.5, -1.0], [1.0, 1.0])
    2.125
    >>> fg.grad(lambda p: fg.nn.mse(p, [1.0, 1.0]))([0.5, -1.0])    # 2 * (p - t) / n
    [-0.5, -2.0]
    """
    ps, ts = _pairs(predictions, targets, "mse", ("predictions", "targets"))
    ps, ts = _scalars(ps, "mse", "predictions"), _scalars(ts, "mse", "targets")
    return _total([_square(p - t) for p, t in zip(ps, ts)]) / len(ps)


def hinge(scores: Sequence[Scalar], labels: Sequence[Scalar]) -> Scalar:
    """The SVM max-margin loss of micrograd's moons demo: the mean of ``relu(1 - y * s)``.

    ``labels`` are ``-1.0`` or ``+1.0`` (as :func:`fungrad.data.make_moons`
    gives them); a score is penalized until it is on the right side with a
    margin of 1.

    >>> import fungrad as fg
    >>> fg.nn.hinge([2.0, 0.5, 0.5], [1.0, 1.0, -1.0])    # (0 + 0.5 + 1.5) / 3
    0.6666666666666666
    """
    ss, ys = _pairs(scores, labels, "hinge", ("scores", "labels"))
    ss, ys = _scalars(ss, "hinge", "scores"), _scalars(ys, "hinge", "labels")
    _check_labels(ys, (-1.0, 1.0), "hinge", "-1 or +1")
    terms = [_if_label(expr.relu(1.0 - y * s), y, (-1.0, 1.0)) for s, y in zip(ss, ys)]
    return _total(terms) / len(ss)


def _softplus(u: Scalar) -> Scalar:
    # log(1 + exp(u)) = max(u, 0) + log(1 + exp(-|u|)), so exp never sees a
    # positive argument and never overflows. The branch is taken with `where`
    # instead of relu and abs: at u = 0 both of those have derivative 0 by
    # convention, which would make the gradient 0 instead of sigmoid(0) = 0.5.
    return expr.where(u, u, 0.0) + expr.log(1.0 + expr.exp(expr.where(u, -u, u)))


def binary_cross_entropy(logits: Sequence[Scalar], labels: Sequence[Scalar]) -> Scalar:
    """Binary cross-entropy on logits, averaged; stable for any logit.

    A logit ``z`` is the score before a sigmoid: the model says
    ``P(positive) = sigmoid(z)``. A label is positive when it is ``1`` and
    negative when it is ``-1`` or ``0``, so both the ``{-1, +1}`` labels of
    :func:`fungrad.data.make_moons` and ``{0, 1}`` labels work. With
    ``t = +1`` or ``-1`` the loss of a sample is ``log(1 + exp(-t * z))``,
    computed as ``max(u, 0) + log(1 + exp(-|u|))`` with ``u = -t * z``, so
    it is finite, and so is its gradient, even at ``z = ±1000``. The values
    equal PyTorch's ``binary_cross_entropy_with_logits`` (with ``{0, 1}``
    targets).

    >>> import fungrad as fg
    >>> round(fg.nn.binary_cross_entropy([0.0, 2.0], [1.0, -1.0]), 6)   # (log 2 + log(1 + e^2)) / 2
    1.410038
    >>> fg.nn.binary_cross_entropy([1000.0], [0.0]), fg.grad(lambda z: fg.nn.binary_cross_entropy(z, [0.0]))([1000.0])
    (1000.0, [1.0])
    """
    zs, ys = _pairs(logits, labels, "binary_cross_entropy", ("logits", "labels"))
    zs, ys = _scalars(zs, "binary_cross_entropy", "logits"), _scalars(ys, "binary_cross_entropy", "labels")
    _check_labels(ys, (-1.0, 0.0, 1.0), "binary_cross_entropy", "1 (positive), or -1 or 0 (negative)")
    # where(y, 1, -1) maps both label conventions to t = ±1 without reading a value
    terms = [_if_label(_softplus(-expr.where(y, 1.0, -1.0) * z), y, (-1.0, 0.0, 1.0)) for z, y in zip(zs, ys)]
    return _total(terms) / len(zs)


def l2(params: Any, alpha: float) -> Scalar:
    """L2 regularization: ``alpha * sum(p * p)`` over the leaves of the pytree ``params``.

    >>> import fungrad as fg
    >>> fg.nn.l2({"w": [1.0, -2.0], "b": 3.0}, alpha=0.5)
    7.0
    """
    alpha = tree.number(alpha, "l2", "alpha")
    if not expr.is_node(alpha) and not math.isfinite(alpha):
        raise ValueError(f"l2: alpha must be a finite number, got {alpha!r}")
    leaves = tree.leaves(params)
    paths = None
    for i, v in enumerate(leaves):
        if v.__class__ is not float and v.__class__ is not Node:
            if paths is None:  # worked out only when needed: l2 runs every step
                paths = [tree.keystr(p) for p, _ in tree.flatten_with_path(params)[0]]
            leaves[i] = tree.number(v, "l2", f"params at {paths[i]}" if paths[i] else "params")
    if not leaves:
        return 0.0
    return alpha * _total([p * p for p in leaves])


def accuracy(scores: Sequence[Scalar], labels: Sequence[Scalar]) -> float:
    """The fraction of samples whose score has the label's sign, as a float.

    A score predicts positive when it is ``> 0`` (as in micrograd's demo);
    a label is positive when it is ``> 0``, so ``{-1, +1}`` and ``{0, 1}``
    labels both work. A ``nan`` score is never right. Scores may be nodes:
    their values are read (inside
    ``grad`` too, as an aux output). Under ``jit`` and ``vmap`` those values
    are not known until the replay runs, so there it raises: measure the
    accuracy outside, on the outputs.

    With many classes, each score is a list of logits (one per class) and
    each label an int class index: the prediction is the class of the
    largest logit (the first one, on a tie).

    >>> import fungrad as fg
    >>> fg.nn.accuracy([0.3, -2.0, 0.1, 0.0], [1.0, -1.0, -1.0, 1.0])
    0.5
    >>> fg.nn.accuracy([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]], [1, 2])
    0.5
    """
    ss, ys = _pairs(scores, labels, "accuracy", ("scores", "labels"))
    s0 = ss[0]
    if not (expr.real_number(s0) or expr.is_node(s0)) and hasattr(s0, "__len__") and not isinstance(s0, (str, bytes)):
        return _logits_accuracy(ss, ys)  # rows of logits: lists, tuples, NumPy rows
    ss, ys = _scalars(ss, "accuracy", "scores"), _scalars(ys, "accuracy", "labels")
    for i, y in enumerate(ys):
        if (v := _val(y)) != v:  # a nan label has no sign: no answer is right or wrong
            raise ValueError(f"accuracy: labels[{i}] is nan; expected a label whose sign is its class")
    # a nan score has no sign: it predicts nothing, as a nan logit does
    right = sum(1 for s, y in zip(ss, ys) if (v := _val(s)) == v and (v > 0.0) == (_val(y) > 0.0))
    return right / len(ss)


# --------------------------------------------------------------------------
# Many classes
#
# A classifier of K classes gives K scores per sample, its logits; softmax
# turns them into probabilities. Every function here subtracts the largest
# logit m first, so exp never sees a positive argument and never overflows.
# m is found with `where` (no Python comparison, so it runs under jit) and
# held under stop_gradient: the result does not depend on m, and its
# derivative contributions cancel in exact arithmetic but not always in
# floats, so none are taken.


def _logit_list(xs: Any, who: str, name: str) -> list[Any]:
    if expr.is_node(xs):
        raise TypeError(f"{who}: {name} must be a list of numbers or nodes (one per class), got {type(xs).__name__}")
    try:
        out = _listed(xs)
    except TypeError:
        raise TypeError(
            f"{who}: {name} must be a list of numbers or nodes (one per class), got {type(xs).__name__}"
        ) from None
    if not out:
        raise ValueError(f"{who}: {name} is empty; expected one number or node per class")
    return _scalars(out, who, name)


def _shifted(xs: list[Any]) -> tuple[list[Any], Any]:
    m = xs[0]
    for x in xs[1:]:
        m = expr.where(x - m, x, m)
    # as torch.logsumexp does: an infinite (or nan) max would turn every x - m
    # into nan, so the shift is 0 then; m - m + 1 is 1 only for a finite m
    m = expr.stop_gradient(expr.where(m - m + 1.0, m, 0.0))
    return [x - m for x in xs], m


def _exp_sum(shifted: list[Any]) -> Any:
    return _total([expr.exp(s) for s in shifted])


def logsumexp(xs: Sequence[Scalar]) -> Scalar:
    """``log(sum(exp(x) for x in xs))``, computed without overflow (``torch.logsumexp``).

    ``xs`` is a non-empty list of numbers or nodes. With ``m`` the largest,
    the result is ``m + log(sum(exp(x - m)))``: finite for logits of 1000 or
    -1000, and so is its gradient, the softmax of ``xs``.

    >>> import fungrad as fg
    >>> fg.nn.logsumexp([1000.0, 1000.0])      # 1000 + log 2
    1000.6931471805599
    >>> fg.grad(fg.nn.logsumexp)([1000.0, 1000.0, -1000.0])
    [0.5, 0.5, 0.0]
    """
    shifted, m = _shifted(_logit_list(xs, "logsumexp", "xs"))
    return m + expr.log(_exp_sum(shifted))


def softmax(xs: Sequence[Scalar]) -> list[Scalar]:
    """The probabilities ``exp(x) / sum(exp(x))`` of a list of logits (``torch.softmax``).

    Stable for any logits: computed as ``exp(x - m) / sum(exp(x - m))`` with
    ``m`` the largest. Returns a list as long as ``xs``.

    >>> import fungrad as fg
    >>> fg.nn.softmax([1000.0, 0.0]), fg.nn.softmax([0.0, 0.0, 0.0, 0.0])
    ([1.0, 0.0], [0.25, 0.25, 0.25, 0.25])
    """
    shifted, _ = _shifted(_logit_list(xs, "softmax", "xs"))
    es = [expr.exp(s) for s in shifted]
    total = _total(es)
    return [expr.div(e, total) for e in es]  # on floats too: 0 / 0 is nan, as on nodes, not an error


def log_softmax(xs: Sequence[Scalar]) -> list[Scalar]:
    """The log-probabilities ``x - logsumexp(xs)`` of a list of logits (``torch.log_softmax``).

    Computed as ``(x - m) - log(sum(exp(x - m)))`` with ``m`` the largest,
    the same formula as PyTorch's, so it is finite, with exact gradients,
    where ``log(softmax(xs))`` would give ``-inf``.

    >>> import fungrad as fg
    >>> fg.nn.log_softmax([1000.0, 0.0])
    [0.0, -1000.0]
    >>> fg.grad(lambda z: fg.nn.log_softmax(z)[1])([1000.0, 0.0])
    [-1.0, 1.0]
    """
    shifted, _ = _shifted(_logit_list(xs, "log_softmax", "xs"))
    log_total = expr.log(_exp_sum(shifted))
    return [s - log_total for s in shifted]


def _class_rows(logits: Any, labels: Any, who: str, name: str = "logits") -> tuple[list[list[Any]], list[Any], int]:
    """The rows of logits as lists and the labels, checked: one length for all rows, labels in range."""
    rows, ys = _pairs(logits, labels, who, (name, "labels"))
    rows = [_logit_list(r, who, f"{name}[{i}]") for i, r in enumerate(rows)]
    k = len(rows[0])
    for i, (row, y) in enumerate(zip(rows, ys)):
        if len(row) != k:
            raise ValueError(
                f"{who}: {name}[{i}] has {len(row)} entries but {name}[0] has {k}; "
                "every sample needs one logit per class"
            )
        if expr.is_node(y):
            continue  # a traced label (under jit) has no value to check; see _pick
        if isinstance(y, bool) or not hasattr(type(y), "__index__"):
            raise TypeError(f"{who}: labels[{i}] is {y!r:.40} ({type(y).__name__}); expected an int class index in range({k})")
        ys[i] = y = type(y).__index__(y)  # NumPy's ints too
        if not 0 <= y < k:
            raise ValueError(f"{who}: labels[{i}] is {y}; expected an int class index in range({k})")
    return rows, ys, k


def _loss_of(shifted: list[Any], y: Any) -> Any:
    # -log_softmax(row)[y], for a row shifted by its maximum
    total = expr.log(_exp_sum(shifted))
    if not expr.is_node(y):
        return total - shifted[y]
    # A traced label cannot index a list, so select by value-free where. A
    # label that is no class index (nan too, which no where above tells
    # apart) must give nan, the loss and its gradient both: the loss is
    # multiplied by a factor that is 1.0 for a class index (exact: x * 1.0
    # is x) and nan otherwise, since the gradient of a selected nan alone
    # would be 0.
    picked: Any = float("nan")
    for j, s in enumerate(shifted):
        # s only where y equals j exactly: neither above nor below it
        picked = expr.where(y - j, picked, expr.where(j - y, picked, s))
    return (total - picked) * _label_ok(y, range(len(shifted)))


def cross_entropy(logits: Sequence[Sequence[Scalar]], labels: Sequence[int]) -> Scalar:
    """Softmax cross-entropy, the mean over a batch (``torch.nn.functional.cross_entropy``).

    ``logits`` holds one list of K logits per sample (a model's outputs),
    ``labels`` one int class index from ``0`` to ``K - 1`` per sample. The
    loss of a sample is ``-log_softmax(logits)[label]``, computed stably
    (see :func:`log_softmax`), and the result is their mean. Under
    :func:`fungrad.jit`, labels passed as arguments are traced: the class is
    then selected with ``where`` on its value, and a label that is not a
    class index gives ``nan``, as the loss and as every derivative.

    >>> import fungrad as fg
    >>> round(fg.nn.cross_entropy([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [0, 2]), 6)   # (-log(e^2/(e^2+2)) + log 3) / 2
    0.669079
    >>> fg.grad(lambda z: fg.nn.cross_entropy(z, [0]))([[1000.0, -1000.0]])
    [[0.0, 0.0]]
    >>> fg.nn.cross_entropy([[1.0, 2.0], [1.0, 2.0]], [0, 2])
    Traceback (most recent call last):
    ...
    ValueError: cross_entropy: labels[1] is 2; expected an int class index in range(2)
    """
    rows, ys, _ = _class_rows(logits, labels, "cross_entropy")
    losses = []
    for row, y in zip(rows, ys):
        shifted, _ = _shifted(row)
        losses.append(_loss_of(shifted, y))
    return _total(losses) / len(losses)


def _logits_accuracy(logits: list[Any], labels: list[Any]) -> float:
    rows, ys, _ = _class_rows(logits, labels, "accuracy", "scores")
    right = 0
    for row, y in zip(rows, ys):
        vals = [_val(v) for v in row]
        if any(v != v for v in vals):
            continue  # a nan logit predicts nothing
        right += vals.index(max(vals)) == _val(y)  # the first of tied maxima, as torch.argmax does
    return right / len(rows)
