"""Pure optimizers: a step maps ``(params, grads)`` to new params and never mutates.

Three levels, from the tutorial's one line to optax's building blocks:

- :func:`sgd` is the one-line update of the tutorial, ``p - lr * g``.
- :class:`SGD` and :class:`Adam` are optimizers: a frozen record of
  hyper-parameters with two pure functions, ``init(params) -> state`` and
  ``update(params, grads, state) -> (new_params, new_state)``.
- A :class:`Transform` is optax's gradient transformation: ``init(params) ->
  state`` and ``update(grads, state, params) -> (updates, state)``, where the
  updates are added to the params (:func:`apply_updates`). :func:`chain`
  composes them, so gradient clipping, weight decay or a schedule go in front
  of (or behind) any optimizer without editing it; :class:`Optimizer` turns a
  transform back into an optimizer. ``SGD(...).transform`` and
  ``Adam(...).transform`` are transforms too.

Every state is a small frozen record registered with :mod:`fungrad.tree`, so
:mod:`fungrad.checkpoint` can save it next to the model.

A learning rate is a number or a schedule: a plain function from the step
(0 for the first update) to a number, such as :func:`linear` or :func:`cosine`.

Leaves of params and grads follow the rules of :func:`fungrad.grad`: a
real number (``float`` or ``int``, not ``bool``; another ``numbers.Real`` such
as NumPy's ``float32`` or a ``Fraction`` is converted with ``float()``, which
is exact for ``float32`` and rounds a ``Fraction`` to the nearest float) or a
fungrad node. ``complex``, ``bool``, ``str``, ``bytes`` and ``Decimal``
(which is not a ``numbers.Real``) are a ``TypeError`` naming the function,
the argument and the path of the leaf; an int too large for a float is a
``ValueError``. Hyper-parameters follow the same rules.

>>> import fungrad as fg
>>> opt = fg.optim.Adam(lr=0.1)
>>> params = {"x": 3.0}
>>> state = opt.init(params)
>>> for _ in range(200):
...     grads = {"x": 2 * params["x"]}          # d/dx of x**2
...     params, state = opt.update(params, grads, state)
>>> abs(params["x"]) < 1e-2, state.step
(True, 200)
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Callable, Union

import attrs

from fungrad import tree

__all__ = [
    "sgd",
    "SGD",
    "SGDState",
    "Adam",
    "AdamState",
    "Transform",
    "Optimizer",
    "ChainState",
    "CountState",
    "chain",
    "apply_updates",
    "scale",
    "scale_by_schedule",
    "add_decayed_weights",
    "clip_by_global_norm",
    "Schedule",
    "constant",
    "linear",
    "exponential",
    "cosine",
]

Schedule = Callable[[int], float]
LR = Union[float, Schedule]
Step = Callable[[list, Any, list, tree.TreeDef], "tuple[list, Any]"]

# --------------------------------------------------------------------------
# Checking numbers: the leaf rules of grad, for leaves and hyper-parameters


def _leaves(x: Any, who: str, arg: str) -> tuple[list[Any], tree.TreeDef]:
    vs, td = tree.flatten(x)
    paths = None
    for i, v in enumerate(vs):
        c = v.__class__
        if c is not float and not getattr(c, "__fungrad_leaf__", False):
            if paths is None:  # only for a conversion or an error: this runs every step
                paths = [tree.keystr(p) for p, _ in tree.flatten_with_path(x)[0]]
            vs[i] = tree.number(v, who, f"{arg} at {paths[i]}" if paths[i] else arg)
    return vs, td


def _pair(params: Any, grads: Any, who: str, second: str = "grads") -> tuple[list[Any], list[Any], tree.TreeDef]:
    ps, td = _leaves(params, who, "params")
    gs, gtd = _leaves(grads, who, second)
    if not tree._same_layout(gtd, td):  # leaves are paired by position: their layout is what matters
        raise ValueError(
            f"{who}: {second} must have the structure of params; params are {td!r:.300} but {second} are "
            f"{gtd!r:.300}; they differ{tree._first_difference(td, gtd)} (params first, then {second})"
        )
    return ps, gs, td


def _hyper(v: Any, who: str, name: str, lo: float = 0.0, hi: float = math.inf, hi_open: bool = True) -> float:
    """A hyper-parameter: a finite real number in [lo, hi) (or [lo, hi]), as a float."""
    if getattr(v.__class__, "__fungrad_leaf__", False):
        # only an optimizer's own lr is differentiated (hypergradients); a node here would be read as a float
        raise TypeError(
            f"{who}: {name} is a fungrad Node; it must be a plain number here (only the lr given to an "
            "optimizer may be a node, for hypergradients)"
        )
    x = tree.number(v, who, name)
    if not (lo <= x < hi if hi_open else lo <= x <= hi) or not math.isfinite(x):
        span = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{who}: {name} must be {span} (a finite number), got {v!r}")
    return x


def _lr(lr: Any, who: str) -> LR:
    # a node passes as it is: a learning rate can be differentiated (hypergradients)
    if getattr(lr.__class__, "__fungrad_leaf__", False):
        return lr
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(
            f"{who}: lr must be a number >= 0 or a schedule (a function of the step), got {tree.describe(lr)}"
        )
    x = tree.number(lr, who, "lr")
    if not 0.0 <= x < math.inf:
        raise ValueError(f"{who}: lr must be a number >= 0 (finite) or a schedule (a function of the step), got {lr!r}")
    return x


# Converters for the optimizers' attrs fields: a value is checked, and made a
# float, as the record is built (also by attrs.evolve). Each keeps its field's
# annotation, which attrs shows in the signature of __init__.


def _lr_field(who: str) -> Callable[[LR], LR]:
    def convert(lr: LR) -> LR:
        return _lr(lr, who)

    return convert


def _hyper_field(who: str, name: str, hi: float = math.inf) -> Callable[[float], float]:
    def convert(v: float) -> float:
        return _hyper(v, who, name, 0.0, hi)

    return convert


def _rate(lr: LR, step: int, who: str) -> float:
    if not callable(lr):
        return lr
    r: Any = lr(step)  # a float, or a node (a differentiated learning rate)
    if r.__class__ is not float:
        r = tree.number(r, who, f"the schedule's value at step {step}")
    v = r.value if getattr(r.__class__, "__fungrad_leaf__", False) else r
    if not 0.0 <= v < math.inf:
        raise ValueError(
            f"{who}: the schedule's value at step {step} is {v!r}; a learning rate must be a finite number >= 0"
        )
    return r


def _state(state: Any, cls: Any, who: str) -> Any:
    if state.__class__ is not cls:
        want = "None" if cls is type(None) else cls.__name__
        raise TypeError(
            f"{who}: state must be the {want} that this transform's init returned, got {type(state).__name__}. "
            "A transform's update is update(grads, state, params) -> (updates, state); to step params, "
            "use fg.optim.Optimizer(transform).update(params, grads, state)"
        )
    return state


def _zeros(params: Any, who: str) -> Any:
    _, td = _leaves(params, who, "params")
    # plain 0.0, not 0.0 * p: a parameter may be inf, and 0.0 * inf is nan
    return tree.unflatten(td, [0.0] * td.num_leaves)


def _total(terms: list[Any]) -> Any:
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


# --------------------------------------------------------------------------
# The one-line step


def sgd(params: Any, grads: Any, lr: float) -> Any:
    """Plain gradient descent, ``p - lr * g`` leaf by leaf; returns new params.

    >>> import fungrad as fg
    >>> fg.optim.sgd({"w": [1.0, 2.0]}, {"w": [10.0, -10.0]}, lr=0.05)
    {'w': [0.5, 2.5]}
    """
    ps, gs, td = _pair(params, grads, "sgd")
    if callable(lr):
        raise TypeError("sgd: lr must be a number; for a schedule use fg.optim.SGD(schedule), which counts the steps")
    lr = _lr(lr, "sgd")  # type: ignore[assignment]  # not callable: a float (or a node)
    return tree.unflatten(td, [p - lr * g for p, g in zip(ps, gs)])


def apply_updates(params: Any, updates: Any) -> Any:
    """``p + u`` leaf by leaf: the params after the updates a :class:`Transform` returned.

    >>> import fungrad as fg
    >>> fg.optim.apply_updates({"w": [1.0, 2.0]}, {"w": [-0.5, 0.25]})
    {'w': [0.5, 2.25]}
    """
    ps, us, td = _pair(params, updates, "apply_updates", "updates")
    return tree.unflatten(td, [p + u for p, u in zip(ps, us)])


# --------------------------------------------------------------------------
# Transforms and their composition


@attrs.frozen
class Transform:
    """A gradient transformation, as in optax: a pair of pure functions.

    ``init(params) -> state`` and ``update(grads, state, params) ->
    (updates, state)``; :func:`apply_updates` adds the updates to the params.
    Build them with :func:`chain`, :func:`clip_by_global_norm`,
    :func:`add_decayed_weights`, :func:`scale`, :func:`scale_by_schedule`, or
    take an optimizer's (``fg.optim.Adam(0.1).transform``). Inside, a transform
    works on the flat lists of leaves: ``step(grads, state, params, treedef)
    -> (updates, state)`` gets and returns lists, so a chain flattens the
    params once per update, whatever its length. A transform of your own is
    ``Transform(init, step, name)``.

    >>> import fungrad as fg
    >>> clip = fg.optim.clip_by_global_norm(1.0)
    >>> clip
    Transform(name='clip_by_global_norm(1.0)')
    >>> u, state = clip.update({"w": [3.0, 4.0]}, clip.init({"w": [0.0, 0.0]}), {"w": [0.0, 0.0]})
    >>> [round(v, 6) for v in u["w"]], state            # norm 5 -> about 1
    ([0.6, 0.8], None)
    >>> double = fg.optim.Transform(lambda params: None, lambda gs, state, ps, td: ([2 * g for g in gs], state), "double")
    >>> fg.optim.Optimizer(fg.optim.chain(double, fg.optim.SGD(0.25))).update({"w": 1.0}, {"w": 1.0}, fg.optim.ChainState((None, fg.optim.SGDState(0, None))))
    ({'w': 0.5}, ChainState(states=(None, SGDState(step=1, velocity=None))))
    """

    init: Callable[[Any], Any] = attrs.field(eq=False, repr=False)
    step: Step = attrs.field(eq=False, repr=False)
    name: str

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        """``(updates, new_state)``: the updates are shaped like ``params``; nothing is mutated.

        >>> import fungrad as fg
        >>> t = fg.optim.scale(-0.1)
        >>> t.update([2.0, -4.0], t.init([1.0, 1.0]), [1.0, 1.0])
        ([-0.2, 0.4], None)
        """
        who = f"{self.name}.update"
        if params.__class__ in _STATES or (params is None and grads is not None):
            raise TypeError(
                f"{who}: params is {tree.describe(params)}, which looks like a state. A transform's update is "
                "update(grads, state, params) -> (updates, state); to step params, "
                "use fg.optim.Optimizer(transform).update(params, grads, state)"
            )
        ps, gs, td = _pair(params, grads, who)
        us, state = self.step(gs, state, ps, td)
        return tree.unflatten(td, us), state


def _count(v: Any) -> Any:
    # A state's step count is a leaf, so a jitted update returns it as a
    # float (1.0): a whole float is the int again, so that the state reads,
    # compares and saves as the eager one does. A traced node stays a node.
    if isinstance(v, float):  # NumPy's floats too
        if not v.is_integer():
            raise ValueError(f"optimizer state: step must be a whole number of updates, got {v!r}")
        v = int(v)
    elif isinstance(v, numbers.Integral) and not isinstance(v, bool):  # NumPy's ints too
        v = int(v)
    if v.__class__ is int and not 0 <= v <= _MAX_STEPS:
        raise ValueError(
            f"optimizer state: step must be a number of updates, from 0 to 2**53, got {tree.describe(v)}"
        )
    return v


@attrs.frozen
class ChainState:
    """State of :func:`chain`: the state of each transform, in order."""

    states: tuple[Any, ...] = attrs.field(converter=tuple)


@attrs.frozen
class CountState:
    """State of :func:`scale_by_schedule`: the updates done so far."""

    step: int = attrs.field(converter=_count)


tree.register(ChainState)
tree.register(CountState)


def _transform(t: Any, who: str) -> Transform:
    if isinstance(t, Transform):
        return t
    inner = getattr(t, "transform", None)
    if isinstance(inner, Transform):
        return inner
    raise TypeError(f"{who}: expected a Transform or an optimizer such as fg.optim.Adam(0.1), got {tree.describe(t)}")


def chain(*transforms: Transform | SGD | Adam | Optimizer) -> Transform:
    """The transforms applied one after the other: each gets the updates of the one before.

    Optimizers (:class:`SGD`, :class:`Adam`, :class:`Optimizer`) can be
    given directly: their ``transform`` is used. Wrap the result in
    :class:`Optimizer` to step params with it.

    >>> import fungrad as fg
    >>> t = fg.optim.chain(fg.optim.clip_by_global_norm(1.0), fg.optim.SGD(0.5))
    >>> opt = fg.optim.Optimizer(t)
    >>> params, state = opt.update([0.0, 0.0], [30.0, 40.0], opt.init([0.0, 0.0]))
    >>> [round(p, 6) for p in params], state
    ([-0.3, -0.4], ChainState(states=(None, SGDState(step=1, velocity=None))))
    """
    ts = tuple(_transform(t, "chain") for t in transforms)
    if not ts:
        raise ValueError("chain: needs at least one transform")
    name = f"chain({', '.join(t.name for t in ts)})"

    def init(params: Any) -> ChainState:
        return ChainState(tuple(t.init(params) for t in ts))

    def step(gs: list, state: Any, ps: list, td: tree.TreeDef) -> tuple[list, ChainState]:
        states = _state(state, ChainState, f"{name}.update").states
        if len(states) != len(ts):
            raise ValueError(f"{name}.update: the state holds {len(states)} states for {len(ts)} transforms")
        new = []
        for t, s in zip(ts, states):
            gs, s = t.step(gs, s, ps, td)
            new.append(s)
        return gs, ChainState(tuple(new))

    return Transform(init, step, name)


def _stateless(name: str, fn: Callable[[list, list], list]) -> Transform:
    def step(gs: list, state: Any, ps: list, td: tree.TreeDef) -> tuple[list, None]:
        _state(state, type(None), f"{name}.update")
        return fn(gs, ps), None

    return Transform(lambda params: None, step, name)


def scale(factor: float) -> Transform:
    """Multiplies every update by ``factor`` (``scale(-lr)`` is plain gradient descent).

    >>> import fungrad as fg
    >>> fg.optim.apply_updates([1.0], fg.optim.scale(-0.1).update([2.0], None, [1.0])[0])
    [0.8]
    """
    f = tree.number(factor, "scale", "factor")
    if not math.isfinite(f):
        raise ValueError(f"scale: factor must be a finite number, got {factor!r}")
    return _stateless(f"scale({f!r})", lambda gs, ps: [f * g for g in gs])


def scale_by_schedule(schedule: Schedule) -> Transform:
    """Multiplies the updates of step ``k`` (0 for the first) by ``schedule(k)``; counts the steps.

    Adds a schedule to any optimizer: ``chain(Adam(1.0), scale_by_schedule(s))``
    steps with Adam's direction times ``s(k)``.

    >>> import fungrad as fg
    >>> t = fg.optim.scale_by_schedule(fg.optim.exponential(1.0, 0.5))
    >>> u, s = t.update([4.0], t.init([0.0]), [0.0])
    >>> u, t.update([4.0], s, [0.0])
    ([4.0], ([2.0], CountState(step=2)))
    """
    if not callable(schedule):
        raise TypeError(f"scale_by_schedule: schedule must be a function of the step, got {tree.describe(schedule)}")
    name = "scale_by_schedule"

    def step(gs: list, state: Any, ps: list, td: tree.TreeDef) -> tuple[list, CountState]:
        k = _state(state, CountState, f"{name}.update").step
        s: Any = schedule(k)
        if s.__class__ is not float:
            s = tree.number(s, f"{name}.update", f"the schedule's value at step {k}")
        v = s.value if getattr(s.__class__, "__fungrad_leaf__", False) else s
        if not math.isfinite(v):
            raise ValueError(f"{name}.update: the schedule's value at step {k} is {v!r}; expected a finite number")
        return [s * g for g in gs], CountState(k + 1)

    return Transform(lambda params: CountState(0), step, name)


def add_decayed_weights(weight_decay: float) -> Transform:
    """Adds ``weight_decay * p`` to each gradient: L2 weight decay, as ``weight_decay=`` in ``torch.optim``.

    In front of an optimizer (``chain(add_decayed_weights(1e-4), SGD(0.1,
    momentum=0.9))``) it is PyTorch's ``SGD(..., weight_decay=1e-4)``; in
    front of :class:`Adam`, PyTorch's ``Adam(..., weight_decay=...)``.

    >>> import fungrad as fg
    >>> t = fg.optim.add_decayed_weights(0.5)
    >>> t.update([1.0, 1.0], None, [2.0, -4.0])[0]
    [2.0, -1.0]
    """
    wd = _hyper(weight_decay, "add_decayed_weights", "weight_decay")
    return _stateless(f"add_decayed_weights({wd!r})", lambda gs, ps: [g + wd * p for g, p in zip(gs, ps)])


def clip_by_global_norm(max_norm: float) -> Transform:
    """Scales all updates together so that their global 2-norm is at most about ``max_norm``.

    The formula is PyTorch's ``torch.nn.utils.clip_grad_norm_``: with
    ``norm = sqrt(sum(g * g))`` over every leaf, each ``g`` is multiplied by
    ``max_norm / (norm + 1e-6)`` when that is below 1, and left as it is
    otherwise. As in PyTorch, an inf norm multiplies every update by 0
    (so an inf one becomes NaN) and a NaN norm makes them all NaN.

    >>> import fungrad as fg
    >>> t = fg.optim.clip_by_global_norm(10.0)
    >>> t.update([3.0, 4.0], None, [0.0, 0.0])[0]     # norm 5: unchanged
    [3.0, 4.0]
    """
    mx = _hyper(max_norm, "clip_by_global_norm", "max_norm")
    if mx == 0.0:
        raise ValueError(f"clip_by_global_norm: max_norm must be > 0, got {max_norm!r}")

    def clip(gs: list, ps: list) -> list:
        if not gs:
            return gs
        # ** 0.5 rather than math.sqrt: leaves may be engine nodes, not floats
        coef = mx / (_total([g * g for g in gs]) ** 0.5 + 1e-6)
        # `not >=` so that a NaN coefficient is applied (and shows), as in torch
        return gs if coef >= 1.0 else [g * coef for g in gs]

    return _stateless(f"clip_by_global_norm({mx!r})", clip)


# --------------------------------------------------------------------------
# Optimizers: a transform plus apply_updates


class _Stepper:
    """init/update of an optimizer, from its ``transform``."""

    if TYPE_CHECKING:
        # a field of Optimizer, a property of the others
        @property
        def transform(self) -> Transform: ...

    def init(self, params: Any) -> Any:
        """The state before the first update, for params shaped like ``params``.

        >>> import fungrad as fg
        >>> fg.optim.Adam(0.1).init({"w": 2.0})
        AdamState(step=0, mu={'w': 0.0}, nu={'w': 0.0})
        """
        return self.transform.init(params)

    def update(self, params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        """One step: ``(new_params, new_state)``; ``params``, ``grads`` and ``state`` are left as they were.

        >>> import fungrad as fg
        >>> opt = fg.optim.SGD(0.5)
        >>> opt.update((1.0, 2.0), (1.0, 1.0), opt.init((1.0, 2.0)))
        ((0.5, 1.5), SGDState(step=1, velocity=None))
        """
        t = self.transform
        ps, gs, td = _pair(params, grads, f"{type(self).__name__}.update")
        us, state = t.step(gs, state, ps, td)
        # p + u with u = -(lr * s) has the bits of p - lr * s: negation is exact
        return tree.unflatten(td, [p + u for p, u in zip(ps, us)]), state


@attrs.frozen
class Optimizer(_Stepper):
    """Any :class:`Transform` as an optimizer: ``init(params)`` and ``update(params, grads, state)``.

    >>> import fungrad as fg
    >>> opt = fg.optim.Optimizer(fg.optim.chain(fg.optim.add_decayed_weights(0.1), fg.optim.SGD(0.5)))
    >>> opt.update([1.0], [0.0], opt.init([1.0]))[0]      # 1 - 0.5 * (0 + 0.1 * 1)
    [0.95]
    """

    transform: Transform = attrs.field()

    @transform.validator
    def _check(self, attribute: Any, value: Any) -> None:
        if not isinstance(value, Transform):
            raise TypeError(f"Optimizer: expected a Transform (such as fg.optim.chain(...)), got {tree.describe(value)}")


@attrs.frozen
class SGDState:
    """State of :class:`SGD`: updates done so far and the velocity (``None`` without momentum)."""

    step: int = attrs.field(converter=_count)
    velocity: Any


@attrs.frozen
class AdamState:
    """State of :class:`Adam`: updates done so far and the moving averages of ``g`` and ``g**2``."""

    step: int = attrs.field(converter=_count)
    mu: Any
    nu: Any


tree.register(SGDState)
tree.register(AdamState)
_STATES = (ChainState, CountState, SGDState, AdamState)


def _div(a: Any, b: Any) -> Any:
    # a / b by IEEE-754, as PyTorch divides: with eps = 0 a zero moment over
    # a zero denominator is nan, not a ZeroDivisionError (nodes divide so)
    if b.__class__ is float and b == 0.0 and a.__class__ is float:
        if a == 0.0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _moments(state_tree: Any, td: tree.TreeDef, who: str, what: str) -> list[Any]:
    # matched by structure, not only by count: a velocity made for params
    # whose keys came in another order would move the wrong weights
    vs, std = tree.flatten(state_tree)
    if not tree._same_layout(std, td):
        raise ValueError(
            f"{who}: the state's {what} not shaped like params; they differ{tree._first_difference(td, std)} "
            "(params first, then the state). Make the state with init(params) for these params"
        )
    return vs


@attrs.frozen
class SGD(_Stepper):
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    With momentum ``m`` the velocity is ``v = m * v + g`` and the step is
    ``p - lr * v``, or ``p - lr * (g + m * v)`` with ``nesterov=True``.
    Weight decay and clipping compose with :func:`chain`.

    >>> import fungrad as fg
    >>> opt = fg.optim.SGD(0.1, momentum=0.9)
    >>> state = opt.init([1.0])
    >>> params, state = opt.update([1.0], [2.0], state)
    >>> params, state
    ([0.8], SGDState(step=1, velocity=[2.0]))
    >>> opt.update(params, [2.0], state)[0]   # v = 0.9 * 2 + 2 = 3.8
    [0.42000000000000004]
    >>> opt.init({"w": 3.0}), fg.optim.SGD(0.5).init([1.0])
    (SGDState(step=0, velocity={'w': 0.0}), SGDState(step=0, velocity=None))
    """

    lr: LR = attrs.field(converter=_lr_field("SGD"))  # type: ignore[misc]
    momentum: float = attrs.field(default=0.0, converter=_hyper_field("SGD", "momentum", 1.0))  # type: ignore[misc]
    nesterov: bool = False

    def __attrs_post_init__(self) -> None:
        # checks that read two fields; the values themselves are set by the converters
        if self.nesterov.__class__ is not bool:
            raise TypeError(f"SGD: nesterov must be True or False, got {tree.describe(self.nesterov)}")
        if self.nesterov and not self.momentum:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")

    @property
    def transform(self) -> Transform:
        """This optimizer as a :class:`Transform` (state :class:`SGDState`), to :func:`chain`.

        >>> import fungrad as fg
        >>> fg.optim.SGD(0.5).transform.update([2.0], fg.optim.SGDState(0, None), [1.0])
        ([-1.0], SGDState(step=1, velocity=None))
        """
        lr, m, nesterov, who = self.lr, self.momentum, self.nesterov, "SGD.update"

        def init(params: Any) -> SGDState:
            return SGDState(0, _zeros(params, "SGD.init") if m else None)

        def step(gs: list, state: Any, ps: list, td: tree.TreeDef) -> tuple[list, SGDState]:
            k = _state(state, SGDState, who).step
            r = _rate(lr, k, who)
            if not m:
                return [-r * g for g in gs], SGDState(k + 1, None)
            vs = _moments(state.velocity, td, who, "velocity is")
            vs = [m * v + g for v, g in zip(vs, gs)]
            steps = [g + m * v for g, v in zip(gs, vs)] if nesterov else vs
            return [-r * s for s in steps], SGDState(k + 1, tree.unflatten(td, vs))

        return Transform(init, step, repr(self))


@attrs.frozen
class Adam(_Stepper):
    """Adam (Kingma and Ba, 2015) with bias correction, as ``torch.optim.Adam``.

    At step ``t`` (1 for the first update): ``m = b1*m + (1-b1)*g``,
    ``v = b2*v + (1-b2)*g**2``, and
    ``p - lr / (1 - b1**t) * m / (v**0.5 / (1 - b2**t)**0.5 + eps)``.
    PyTorch's ``weight_decay`` is ``chain(add_decayed_weights(wd), Adam(lr))``.

    >>> import fungrad as fg
    >>> opt = fg.optim.Adam(lr=0.1)
    >>> params, state = opt.update([1.0], [4.0], opt.init([1.0]))
    >>> round(params[0], 6), state.step    # the first step moves each leaf by about lr
    (0.9, 1)
    >>> fg.optim.Adam().init([1.0, 2.0])
    AdamState(step=0, mu=[0.0, 0.0], nu=[0.0, 0.0])
    """

    lr: LR = attrs.field(default=1e-3, converter=_lr_field("Adam"))  # type: ignore[misc]
    b1: float = attrs.field(default=0.9, converter=_hyper_field("Adam", "b1", 1.0))  # type: ignore[misc]
    b2: float = attrs.field(default=0.999, converter=_hyper_field("Adam", "b2", 1.0))  # type: ignore[misc]
    eps: float = attrs.field(default=1e-8, converter=_hyper_field("Adam", "eps"))  # type: ignore[misc]

    @property
    def transform(self) -> Transform:
        """This optimizer as a :class:`Transform` (state :class:`AdamState`), to :func:`chain`.

        >>> import fungrad as fg
        >>> t = fg.optim.Adam(0.5).transform
        >>> u, s = t.update({"w": -3.0}, t.init({"w": 2.0}), {"w": 2.0})
        >>> round(u["w"], 6), round(s.mu["w"], 12), round(s.nu["w"], 12)
        (0.5, -0.3, 0.009)
        """
        lr, b1, b2, eps, who = self.lr, self.b1, self.b2, self.eps, "Adam.update"

        def init(params: Any) -> AdamState:
            return AdamState(0, _zeros(params, "Adam.init"), _zeros(params, "Adam.init"))

        def step(gs: list, state: Any, ps: list, td: tree.TreeDef) -> tuple[list, AdamState]:
            k = _state(state, AdamState, who).step
            ms = _moments(state.mu, td, who, "moments are")
            vs = _moments(state.nu, td, who, "moments are")
            for i, v in enumerate(vs):
                if not getattr(v.__class__, "__fungrad_leaf__", False) and v < 0.0:  # a number: ints, NumPy's floats
                    # its square root would be a complex number
                    raise ValueError(f"{who}: the state's nu holds averages of g ** 2, never negative; leaf {i} is {v!r}")
            t = k + 1
            size = _rate(lr, k, who) / (1.0 - b1**t)
            c2 = math.sqrt(1.0 - b2**t)
            ms = [b1 * m + (1.0 - b1) * g for m, g in zip(ms, gs)]
            # v ** 0.5 rather than math.sqrt: leaves may be engine nodes, not floats
            vs = [b2 * v + (1.0 - b2) * g * g for v, g in zip(vs, gs)]
            us = [-(size * _div(m, v**0.5 / c2 + eps)) for m, v in zip(ms, vs)]
            return us, AdamState(t, tree.unflatten(td, ms), tree.unflatten(td, vs))

        return Transform(init, step, repr(self))


# --------------------------------------------------------------------------
# Schedules

_MAX_STEPS = 2**53  # every step count up to here is exact in a float, so step / steps is too


def _check_step(step: Any, who: str) -> int:
    if step.__class__ is not int:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"{who}: the step must be an int >= 0, got {tree.describe(step)}")
        step = int(step)
    if step < 0:
        raise ValueError(f"{who}: the step must be an int >= 0, got {step!r}")
    return step


def _check_steps(who: str, steps: Any, name: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= _MAX_STEPS:  # type: ignore[operator]
        shown = tree.describe(steps) if isinstance(steps, int) and not isinstance(steps, bool) else repr(steps)
        raise ValueError(f"{who}: {name} must be an int >= 1 (at most 2**53), got {shown}")
    return int(steps)


def constant(lr: float) -> Schedule:
    """The schedule that is always ``lr``.

    >>> import fungrad as fg
    >>> fg.optim.constant(0.1)(1000)
    0.1
    """
    x = _hyper(lr, "constant", "lr")

    def schedule(step: int) -> float:
        _check_step(step, "constant")
        return x

    return schedule


def linear(start: float, end: float, steps: int) -> Schedule:
    """From ``start`` at step 0 to ``end`` at step ``steps``, in a straight line, then ``end``.

    micrograd's moons demo uses ``1.0 - 0.9 * k / 100`` for ``k < 100``, which is
    ``linear(1.0, 0.1, 100)`` to the last bit; from ``steps`` on the value is ``end`` exactly.

    >>> import fungrad as fg
    >>> lr = fg.optim.linear(1.0, 0.1, 100)
    >>> lr(0), lr(50), lr(100), lr(500)
    (1.0, 0.55, 0.1, 0.1)
    """
    a, b = _hyper(start, "linear", "start"), _hyper(end, "linear", "end")
    n = _check_steps("linear", steps)

    def schedule(step: int) -> float:
        k = _check_step(step, "linear")
        return a + (b - a) * k / n if k < n else b

    return schedule


def exponential(lr: float, rate: float, every: int = 1) -> Schedule:
    """``lr`` multiplied by ``rate`` once every ``every`` steps: ``lr * rate ** (step // every)``.

    >>> import fungrad as fg
    >>> s = fg.optim.exponential(1.0, 0.5, every=10)
    >>> s(0), s(9), s(10), s(25)
    (1.0, 1.0, 0.5, 0.25)
    """
    x, r = _hyper(lr, "exponential", "lr"), _hyper(rate, "exponential", "rate")
    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
        raise ValueError(f"exponential: every must be an int >= 1, got {tree.describe(every)}")
    e = int(every)

    def schedule(step: int) -> float:
        k = _check_step(step, "exponential") // e
        try:
            return x * r**k
        except OverflowError:  # r**k past the floats (or k past them): the limit, as IEEE would round it
            return 0.0 if r < 1.0 or x == 0.0 else math.inf

    return schedule


def cosine(lr: float, steps: int, final: float = 0.0) -> Schedule:
    """Half a cosine from ``lr`` at step 0 down to ``final`` at step ``steps``, then ``final``.

    >>> import fungrad as fg
    >>> s = fg.optim.cosine(1.0, 100)
    >>> s(0), round(s(50), 12), s(100), s(200)
    (1.0, 0.5, 0.0, 0.0)
    """
    x, f = _hyper(lr, "cosine", "lr"), _hyper(final, "cosine", "final")
    n = _check_steps("cosine", steps)

    def schedule(step: int) -> float:
        c = 0.5 * (1.0 + math.cos(math.pi * min(_check_step(step, "cosine"), n) / n))
        # a weighted mean rather than final + (lr - final) * c: exactly lr at step 0 and final at the end
        return x * c + f * (1.0 - c)

    return schedule
