"""A functional training loop: ``params, history = fit(loss_fn, params, ...)``.

:func:`fit` is the loop a student would write by hand, with the chores
done: at each step it computes ``value_and_grad(loss_fn)`` at the current
params, asks the optimizer for new params, and records the loss (and a
metric, if given) in a :class:`History`. Nothing is mutated: the params
passed in are still there, unchanged, when it returns the new ones.

>>> import fungrad as fg
>>> xs, ys = fg.data.tiny()
>>> def loss(model):
...     return fg.nn.sum_squares([model(x) for x in xs], ys)
>>> model = fg.nn.MLP.init(3, [4, 4, 1], seed=0)
>>> trained, history = fg.train.fit(loss, model, optimizer=0.05, steps=40)
>>> len(history.loss), history.loss[0] > 1.0, history.loss[-1] < 0.1
(40, True, True)
>>> trained == model
False
>>> model == fg.nn.MLP.init(3, [4, 4, 1], seed=0)    # the input is untouched
True
"""

from __future__ import annotations

import itertools
import numbers
import sys
import time
from typing import Any, Callable, Iterator

import attrs

from . import autodiff, optim, tree
from .jit import jit

__all__ = ["History", "Interrupted", "fit"]


@attrs.frozen
class History:
    """What :func:`fit` measured, one entry per step.

    ``loss[k]`` and ``accuracy[k]`` are measured at the params that step
    ``k`` starts from (the loss is the value whose gradient made the step),
    so ``loss[0]`` is the loss of the initial params. ``accuracy`` holds the
    values of ``fit``'s ``metric`` and is empty without one. ``step_time[k]``
    is the seconds of step ``k``'s gradient and update (not the metric or
    the callback).

    >>> import fungrad as fg
    >>> h = fg.train.History(loss=[2.0, 1.0], accuracy=[0.5, 1.0], step_time=[0.1, 0.1])
    >>> len(h), h.to_dict()["loss"]
    (2, [2.0, 1.0])
    >>> fg.train.History.from_dict(h.to_dict()) == h
    True
    """

    loss: list[float] = attrs.field(factory=list)
    accuracy: list[float] = attrs.field(factory=list)
    step_time: list[float] = attrs.field(factory=list)

    def __len__(self) -> int:
        return len(self.loss)

    def to_dict(self) -> dict[str, list[float]]:
        """The history as a dict of lists (for ``json.dump``)."""
        return {"loss": list(self.loss), "accuracy": list(self.accuracy), "step_time": list(self.step_time)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """The history :meth:`to_dict` described."""
        return cls(**{k: _floats(d.get(k, []), k) for k in ("loss", "accuracy", "step_time")})


def _floats(vs: Any, key: str) -> list[float]:
    out = []
    for i, v in enumerate(vs):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"History.from_dict: {key}[{i}] is {type(v).__name__}; expected a number")
        try:
            out.append(float(v))
        except OverflowError:
            raise ValueError(f"History.from_dict: {key}[{i}] is an int too large for a float") from None
    return out


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C during :func:`fit`, carrying what the completed steps produced.

    ``params`` are the params after the last completed step (the params
    passed in when no step completed), ``history`` has one entry per
    completed step, and ``steps`` is their number. A half-done step counts
    for nothing, so the two always agree, as after a normal return.

    It is a ``KeyboardInterrupt``, so code that does not ask for the partial
    result stops as a Ctrl-C always stopped it; code that wants it catches
    this class:

    >>> import fungrad as fg
    >>> def loss(w):
    ...     return (w - 3.0) ** 2
    >>> def ctrl_c_after_two(step, params, loss):    # stands in for the user's Ctrl-C
    ...     if step == 1:
    ...         raise KeyboardInterrupt
    >>> try:
    ...     fg.train.fit(loss, 0.0, optimizer=0.25, steps=10, callback=ctrl_c_after_two)
    ... except fg.train.Interrupted as stop:
    ...     print(stop.steps, stop.params, stop.history.loss)
    2 2.25 [9.0, 2.25]
    """

    def __init__(self, params: Any, history: History):
        super().__init__(f"training interrupted after {len(history)} completed steps")
        self.params = params
        self.history = history

    @property
    def steps(self) -> int:
        """How many steps completed (``len(self.history)``)."""
        return len(self.history)

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from what it carries (as pickle and multiprocessing do), not from its message
        return (Interrupted, (self.params, self.history))


def _optimizer(optimizer: Any) -> Any:
    if isinstance(optimizer, type) or optimizer is optim.sgd:
        # callable, but not a schedule: the class of an optimizer, or the plain step
        raise TypeError(
            f"fit: optimizer must be a learning rate (a number or a schedule) or an optimizer instance, got "
            f"{getattr(optimizer, '__qualname__', optimizer)}; write fg.optim.Adam(0.01), or a number such as 0.1 "
            "for plain gradient descent (fg.optim.sgd's step)"
        )
    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        return optimizer
    if isinstance(optimizer, bool):
        raise TypeError(f"fit: optimizer must be a learning rate or an optimizer, got {optimizer!r}")
    if isinstance(optimizer, numbers.Real) or callable(optimizer):  # NumPy's floats and Fraction too, as SGD takes them
        # a learning rate (or a schedule of one) means plain gradient descent;
        # SGD without momentum computes exactly fg.optim.sgd's p - lr * g
        return optim.SGD(optimizer)
    raise TypeError(
        "fit: optimizer must be a learning rate (a number or a schedule) or an optimizer with "
        f"init and update (such as fg.optim.Adam(0.01)), got {type(optimizer).__name__} {optimizer!r:.60}"
    )


def _step_function(loss_fn: Callable[..., Any], use_jit: bool) -> Callable[..., Any]:
    vg = autodiff.value_and_grad(loss_fn)
    # forward and backward compiled together; the results equal vg's bit for bit
    return jit(vg) if use_jit else vg


def _feed(data: Any, batch_size: int | None, seed: int) -> Iterator[Any]:
    if batch_size is None:
        return itertools.repeat(data)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be None (the whole data set) or an int >= 1, got {batch_size!r}")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError("fit: batch_size needs data given as a pair (xs, ys) to draw minibatches from")
    from .data import batches

    xs, ys = data
    batches(xs, ys, batch_size, seed)  # checks the arguments now rather than at step 0

    def stream() -> Iterator[Any]:
        if not len(xs):  # at the first batch drawn: with steps=0 none is
            raise ValueError("fit: the data has no examples to draw minibatches from")
        # epoch after epoch, each in its own order, the same for the same seed
        for epoch in itertools.count():
            yield from batches(xs, ys, batch_size, seed, epoch=epoch)

    return stream()


def _progress_bar(progress: bool | None, steps: int) -> Any:
    if progress is False:
        return None
    explicit = progress is not None
    if not explicit:
        isatty = getattr(sys.stderr, "isatty", None)
        if not (isatty and isatty()):
            return None  # no terminal, no bar, and tqdm is not even imported
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:
        if explicit:
            raise ImportError('fit: the progress bar needs tqdm: pip install "fungrad[progress]"') from None
        return None
    return tqdm(total=steps, unit="step", file=sys.stderr, dynamic_ncols=True)


def fit(
    loss_fn: Callable[..., Any],
    params: Any,
    data: Any = None,
    optimizer: Any = 0.05,
    steps: int = 100,
    *,
    metric: Callable[..., float] | None = None,
    callback: Callable[[int, Any, float], Any] | None = None,
    progress: bool | None = None,
    jit: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
) -> tuple[Any, History]:
    """Train ``params`` for ``steps`` steps of ``optimizer``; return ``(params, history)``.

    Each step is::

        loss, grads = value_and_grad(loss_fn)(params, batch)   # or (params) when data is None
        params, state = optimizer.update(params, grads, state)

    - ``loss_fn(params)`` (when ``data`` is None) or ``loss_fn(params, batch)``
      returns a scalar. Without ``batch_size`` the batch is ``data`` itself at
      every step (full-batch training); with ``batch_size``, ``data`` is a pair
      ``(xs, ys)`` and each step takes the next minibatch ``(xs_b, ys_b)`` of
      :func:`fungrad.data.batches` (epoch after epoch, shuffled from ``seed``).
    - ``optimizer`` is a learning rate (a number or a schedule such as
      ``fg.optim.linear(1.0, 0.1, 100)``), meaning plain gradient descent, or
      an optimizer with ``init``/``update`` such as ``fg.optim.Adam(0.01)``.
      Its state starts from ``optimizer.init(params)``.
    - ``metric(params, batch)`` (or ``metric(params)``) returns a float,
      recorded in ``history.accuracy`` at the same params as the loss.
    - ``callback(step, params, loss)`` runs after each step with the new
      params and that step's loss; returning ``False`` or raising
      ``StopIteration`` stops training there (the history then has fewer steps).
    - ``progress``: a tqdm bar with the current loss; ``None`` shows it only
      when stderr is a terminal, ``True`` always (``ImportError`` naming the
      ``progress`` extra if tqdm is missing), ``False`` never.
    - A Ctrl-C (``KeyboardInterrupt``) raises :class:`Interrupted`, a
      ``KeyboardInterrupt`` that carries the params and history of the steps
      completed so far.
    - ``jit``: compile the step with :func:`fungrad.jit`
      (results are the same as without). A loss that branches in Python on
      the value of a node cannot be compiled; pass ``jit=False`` for it.

    Nothing passed in is mutated.

    >>> import fungrad as fg
    >>> xs, ys = fg.data.make_moons(20, noise=0.1, seed=0)
    >>> def loss(m, batch):
    ...     bx, by = batch
    ...     return fg.nn.hinge([m(x) for x in bx], by) + fg.nn.l2(m, 1e-4)
    >>> def acc(m, batch):
    ...     return fg.nn.accuracy([m(x) for x in batch[0]], batch[1])
    >>> model = fg.nn.MLP.init(2, [8, 1], seed=0, activation="relu", final_activation="linear")
    >>> model, h = fg.train.fit(loss, model, (xs, ys), fg.optim.Adam(0.1), steps=30, metric=acc)
    >>> round(h.loss[0], 4), round(h.loss[-1], 4), h.accuracy[0], h.accuracy[-1]
    (1.7923, 0.3428, 0.35, 0.85)
    >>> stop_early = lambda step, params, loss: step < 4      # False after step 4
    >>> len(fg.train.fit(loss, model, (xs, ys), 0.01, steps=100, callback=stop_early)[1])
    5
    """
    if not callable(loss_fn):
        raise TypeError(f"fit: loss_fn must be a function, got {type(loss_fn).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"fit: steps must be an int >= 0, got {steps!r}")
    for name, f in (("metric", metric), ("callback", callback)):
        if f is not None and not callable(f):
            raise TypeError(f"fit: {name} must be a function or None, got {type(f).__name__}")
    opt = _optimizer(optimizer)
    step_fn = _step_function(loss_fn, jit)
    feed = None if data is None else _feed(data, batch_size, seed)
    if data is None and batch_size is not None:
        raise ValueError("fit: batch_size needs data (a pair (xs, ys)) to draw minibatches from")
    history = History()
    bar = _progress_bar(progress, steps)
    clock = time.perf_counter
    # (params, optimizer state, steps completed), replaced by one assignment
    # at the end of each step: a Ctrl-C landing anywhere in a step leaves it
    # describing the last completed step, which is what Interrupted hands back
    done = (params, opt.init(params), 0)
    try:
        for step in range(steps):
            params, state, _ = done
            args = (params,) if feed is None else (params, next(feed))
            t0 = clock()
            loss, grads = step_fn(*args)
            new_params, new_state = opt.update(params, grads, state)
            history.step_time.append(clock() - t0)
            history.loss.append(loss)
            if metric is not None:
                # at the params the loss was measured at
                m = tree.number(metric(*args), "fit", f"the metric's value at step {step}")
                history.accuracy.append(m.value if m.__class__ is not float else m)
            done = (new_params, new_state, step + 1)
            if bar is not None:
                post = {"loss": f"{loss:.4g}"}
                if metric is not None:
                    post["acc"] = f"{history.accuracy[-1]:.3g}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
            if callback is not None:
                try:
                    if callback(step, new_params, loss) is False:
                        break
                except StopIteration:
                    break
    except KeyboardInterrupt as e:
        params, _, n = done
        for column in (history.loss, history.accuracy, history.step_time):
            del column[n:]  # the entries of a step cut short
        raise Interrupted(params, history) from e
    finally:
        if bar is not None:
            bar.close()
    return done[0], history
