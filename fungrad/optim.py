"""Pure optimizers: a step maps ``(params, grads)`` to new params and never mutates.

:func:`sgd` is the one-line update of the tutorial. The optimizer classes
follow optax: an optimizer is a frozen record of hyper-parameters with two
pure functions, ``init(params) -> state`` and
``update(params, grads, state) -> (new_params, new_state)``; the state is a
small frozen record, registered with :mod:`fungrad.tree` so that
:mod:`fungrad.checkpoint` can save it next to the model.

A learning rate is a number or a schedule: a plain function from the step
(0 for the first update) to a number, such as :func:`linear` or :func:`cosine`.

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
from typing import Any, Callable, Union

import attrs

from fungrad import tree

__all__ = [
    "sgd",
    "SGD",
    "SGDState",
    "Adam",
    "AdamState",
    "Schedule",
    "constant",
    "linear",
    "exponential",
    "cosine",
]

Schedule = Callable[[int], float]
LR = Union[float, Schedule]


def _check(params: Any, grads: Any, who: str) -> None:
    ps, gs = tree.structure(params), tree.structure(grads)
    if ps != gs:
        raise ValueError(
            f"{who}: grads must have the structure of params; params are {ps!r} but grads are {gs!r}"
        )


def _rate(lr: LR, step: int) -> float:
    return lr(step) if callable(lr) else lr


def _zeros(params: Any) -> Any:
    # plain 0.0, not 0.0 * p: a parameter may be inf, and 0.0 * inf is nan
    return tree.map(lambda p: 0.0, params)


def sgd(params: Any, grads: Any, lr: float) -> Any:
    """Plain gradient descent, ``p - lr * g`` leaf by leaf; returns new params.

    >>> import fungrad as fg
    >>> fg.optim.sgd({"w": [1.0, 2.0]}, {"w": [10.0, -10.0]}, lr=0.05)
    {'w': [0.5, 2.5]}
    """
    _check(params, grads, "sgd")
    return tree.map(lambda p, g: p - lr * g, params, grads)


@attrs.frozen
class SGDState:
    """State of :class:`SGD`: updates done so far and the velocity (``None`` without momentum)."""

    step: int
    velocity: Any


@attrs.frozen
class AdamState:
    """State of :class:`Adam`: updates done so far and the moving averages of ``g`` and ``g**2``."""

    step: int
    mu: Any
    nu: Any


tree.register(SGDState)
tree.register(AdamState)


def _check_lr(lr: LR) -> None:
    if not callable(lr) and not lr >= 0:
        raise ValueError(f"lr must be a number >= 0 or a schedule (a function of the step), got {lr!r}")


@attrs.frozen
class SGD:
    """Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    With momentum ``m`` the velocity is ``v = m * v + g`` and the step is
    ``p - lr * v``, or ``p - lr * (g + m * v)`` with ``nesterov=True``.

    >>> import fungrad as fg
    >>> opt = fg.optim.SGD(0.1, momentum=0.9)
    >>> state = opt.init([1.0])
    >>> params, state = opt.update([1.0], [2.0], state)
    >>> params, state
    ([0.8], SGDState(step=1, velocity=[2.0]))
    >>> opt.update(params, [2.0], state)[0]   # v = 0.9 * 2 + 2 = 3.8
    [0.42000000000000004]
    """

    lr: LR
    momentum: float = 0.0
    nesterov: bool = False

    def __attrs_post_init__(self) -> None:
        _check_lr(self.lr)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {self.momentum!r}")
        if self.nesterov and not self.momentum:
            raise ValueError("SGD: nesterov=True needs a momentum > 0")

    def init(self, params: Any) -> SGDState:
        """The state before the first update: step 0 and a zero velocity shaped like ``params``.

        >>> import fungrad as fg
        >>> fg.optim.SGD(0.1, momentum=0.5).init({"w": 3.0})
        SGDState(step=0, velocity={'w': 0.0})
        """
        return SGDState(0, _zeros(params) if self.momentum else None)

    def update(self, params: Any, grads: Any, state: SGDState) -> tuple[Any, SGDState]:
        """One step: ``(new_params, new_state)``; ``params``, ``grads`` and ``state`` are left as they were.

        >>> import fungrad as fg
        >>> opt = fg.optim.SGD(0.5)
        >>> opt.update((1.0, 2.0), (1.0, 1.0), opt.init((1.0, 2.0)))
        ((0.5, 1.5), SGDState(step=1, velocity=None))
        """
        _check(params, grads, "SGD.update")
        lr, m = _rate(self.lr, state.step), self.momentum
        if not m:
            return tree.map(lambda p, g: p - lr * g, params, grads), SGDState(state.step + 1, None)
        ps, td = tree.flatten(params)
        gs, vs = tree.leaves(grads), tree.leaves(state.velocity)
        if len(vs) != len(ps):
            raise ValueError(f"SGD.update: the state's velocity has {len(vs)} leaves, params have {len(ps)}")
        vs = [m * v + g for v, g in zip(vs, gs)]
        steps = [g + m * v for g, v in zip(gs, vs)] if self.nesterov else vs
        new = tree.unflatten(td, [p - lr * s for p, s in zip(ps, steps)])
        return new, SGDState(state.step + 1, tree.unflatten(td, vs))


@attrs.frozen
class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction, as ``torch.optim.Adam``.

    At step ``t`` (1 for the first update): ``m = b1*m + (1-b1)*g``,
    ``v = b2*v + (1-b2)*g**2``, and
    ``p - lr / (1 - b1**t) * m / (v**0.5 / (1 - b2**t)**0.5 + eps)``.

    >>> import fungrad as fg
    >>> opt = fg.optim.Adam(lr=0.1)
    >>> params, state = opt.update([1.0], [4.0], opt.init([1.0]))
    >>> round(params[0], 6), state.step    # the first step moves each leaf by about lr
    (0.9, 1)
    """

    lr: LR = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __attrs_post_init__(self) -> None:
        _check_lr(self.lr)
        for name in ("b1", "b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.eps >= 0.0:
            raise ValueError(f"Adam: eps must be >= 0, got {self.eps!r}")

    def init(self, params: Any) -> AdamState:
        """The state before the first update: step 0 and zero moments shaped like ``params``.

        >>> import fungrad as fg
        >>> fg.optim.Adam().init([1.0, 2.0])
        AdamState(step=0, mu=[0.0, 0.0], nu=[0.0, 0.0])
        """
        return AdamState(0, _zeros(params), _zeros(params))

    def update(self, params: Any, grads: Any, state: AdamState) -> tuple[Any, AdamState]:
        """One step: ``(new_params, new_state)``; ``params``, ``grads`` and ``state`` are left as they were.

        >>> import fungrad as fg
        >>> opt = fg.optim.Adam(lr=0.5)
        >>> params, state = opt.update({"w": 2.0}, {"w": -3.0}, opt.init({"w": 2.0}))
        >>> round(params["w"], 6), round(state.mu["w"], 12), round(state.nu["w"], 12)
        (2.5, -0.3, 0.009)
        """
        _check(params, grads, "Adam.update")
        ps, td = tree.flatten(params)
        gs, ms, vs = tree.leaves(grads), tree.leaves(state.mu), tree.leaves(state.nu)
        if not len(ms) == len(vs) == len(ps):
            raise ValueError(f"Adam.update: the state's moments have {len(ms)} leaves, params have {len(ps)}")
        t = state.step + 1
        b1, b2 = self.b1, self.b2
        size = _rate(self.lr, state.step) / (1.0 - b1**t)
        c2 = math.sqrt(1.0 - b2**t)
        ms = [b1 * m + (1.0 - b1) * g for m, g in zip(ms, gs)]
        # v ** 0.5 rather than math.sqrt: leaves may be engine nodes, not floats
        vs = [b2 * v + (1.0 - b2) * g * g for v, g in zip(vs, gs)]
        new = [p - size * (m / (v**0.5 / c2 + self.eps)) for p, m, v in zip(ps, ms, vs)]
        return tree.unflatten(td, new), AdamState(t, tree.unflatten(td, ms), tree.unflatten(td, vs))


def constant(lr: float) -> Schedule:
    """The schedule that is always ``lr``.

    >>> import fungrad as fg
    >>> fg.optim.constant(0.1)(1000)
    0.1
    """
    return lambda step: lr


def _check_steps(who: str, steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{who}: steps must be an int >= 1, got {steps!r}")


def linear(start: float, end: float, steps: int) -> Schedule:
    """From ``start`` at step 0 to ``end`` at step ``steps``, in a straight line, then ``end``.

    micrograd's moons demo uses ``1.0 - 0.9 * k / 100`` for ``k < 100``, which is
    ``linear(1.0, 0.1, 100)`` to the last bit; from ``steps`` on the value is ``end`` exactly.

    >>> import fungrad as fg
    >>> lr = fg.optim.linear(1.0, 0.1, 100)
    >>> lr(0), lr(50), lr(100), lr(500)
    (1.0, 0.55, 0.1, 0.1)
    """
    _check_steps("linear", steps)
    return lambda step: start + (end - start) * step / steps if step < steps else end


def exponential(lr: float, rate: float, every: int = 1) -> Schedule:
    """``lr`` multiplied by ``rate`` once every ``every`` steps: ``lr * rate ** (step // every)``.

    >>> import fungrad as fg
    >>> s = fg.optim.exponential(1.0, 0.5, every=10)
    >>> s(0), s(9), s(10), s(25)
    (1.0, 1.0, 0.5, 0.25)
    """
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"exponential: every must be an int >= 1, got {every!r}")
    return lambda step: lr * rate ** (step // every)


def cosine(lr: float, steps: int, final: float = 0.0) -> Schedule:
    """Half a cosine from ``lr`` at step 0 down to ``final`` at step ``steps``, then ``final``.

    >>> import fungrad as fg
    >>> s = fg.optim.cosine(1.0, 100)
    >>> s(0), round(s(50), 12), s(100), s(200)
    (1.0, 0.5, 0.0, 0.0)
    """
    _check_steps("cosine", steps)

    def schedule(step: int) -> float:
        c = 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
        # a weighted mean rather than final + (lr - final) * c: exactly lr at step 0 and final at the end
        return lr * c + final * (1.0 - c)

    return schedule
