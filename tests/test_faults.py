"""Adversarial cases: interrupts, threads, stale levels, float leaks, bad input, NaNs.

Each test states what must never happen: a process left with its garbage
collector off or its thresholds changed, a thread left at a finished level, a
gradient silently lost (zeros, or a value baked in), a bare error that does
not say where. They are fast enough for every CI run (about 10 s together);
``tests/test_faults_interrupts.py`` injects at every event of a first jit call.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import random
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import attrs
import pytest

import fungrad as fg
from fungrad import autodiff, expr
from fungrad.jit import Jitted

# --------------------------------------------------------------------------
# Interrupts injected at every trace event of a call


def inject(call: Callable[[], Any], k: int) -> tuple[int, Any]:
    """Run ``call()`` with a ``KeyboardInterrupt`` raised at its ``k``-th trace event.

    Events are the ``call``, ``line``, ``return`` and ``exception`` events of
    ``sys.settrace``, in every frame (fungrad's, the standard library's, the
    user's). A trace function that raises is removed, so exactly one
    interrupt lands. Python ignores (and reports as unraisable) an exception
    raised inside a finalizer or a weakref callback; those are collected, not
    printed. Returns the number of events seen and where the interrupt landed.
    """
    n = 0
    where = None

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal n, where
        n += 1
        if n == k:
            where = (frame.f_code.co_filename.rsplit("/", 1)[-1], frame.f_code.co_name, event, frame.f_lineno)
            raise KeyboardInterrupt
        return tracer

    swallowed: list[Any] = []
    hook, old = sys.unraisablehook, sys.gettrace()
    sys.unraisablehook = swallowed.append
    sys.settrace(tracer)
    try:
        call()
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(old)
        sys.unraisablehook = hook
    return n, where


def events(call: Callable[[], Any]) -> list[tuple[str, str, str]]:
    """The trace events of one uninterrupted run of ``call()``: (file, function, event)."""
    seen: list[tuple[str, str, str]] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        seen.append((frame.f_code.co_filename.rsplit("/", 1)[-1], frame.f_code.co_name, event))
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(old)
    return seen


USER_THRESHOLD = (1000, 11, 12)  # a user's own thresholds, which fungrad must give back


def broken_state() -> list[str]:
    """Everything an interrupted transform may not leave behind, checked now and after one more grad."""
    bad = []
    if not gc.isenabled():
        bad.append("the garbage collector is off")
    if gc.get_threshold() != USER_THRESHOLD:
        bad.append(f"thresholds {gc.get_threshold()} instead of the user's {USER_THRESHOLD}")
    if expr.current().active:
        bad.append(f"the thread is left at a level: {expr.current()}")
    if expr._open:
        bad.append(f"levels left open: {sorted(expr._open)}")
    if expr.current().debug:
        bad.append("the thread is left checking every op (debug_nans)")
    if autodiff._gc_state.threads:
        bad.append("a thread left registered as running a transform")
    r = fg.grad(lambda y: y * y)(3.0)
    if not (r.__class__ is float and r == 6.0):
        bad.append(f"the next grad returned {r!r}")
    if gc.get_threshold() != USER_THRESHOLD or expr._open:
        bad.append("still broken after the next grad")
    return bad


def _loss(p: list[Any]) -> Any:
    return fg.tanh(p[0] * p[1] + 1.0) ** 2


@pytest.fixture
def user_threshold():
    before = gc.get_threshold()
    gc.set_threshold(*USER_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _every_point(call: Callable[[], Any], check_also: Callable[[], list[str]] = list) -> list[Any]:
    total = len(events(call))
    landed = []
    for k in range(1, total + 1):
        _, where = inject(call, k)
        bad = broken_state() + check_also()
        assert not bad, f"interrupt at event {k} of {total} {where}: {bad}"
        landed.append(where)
    return landed


_GRAD = fg.grad(_loss)
_VG = fg.value_and_grad(_loss)
_GRADGRAD = fg.grad(fg.grad(lambda x: x**3))
_JACOBIAN = fg.jacobian(lambda v: [v[0] * v[1], fg.sin(v[0])])


@pytest.mark.parametrize(
    "name, call",
    [
        ("grad", lambda: _GRAD([0.5, 2.0])),
        ("value_and_grad", lambda: _VG([0.5, 2.0])),
        ("grad of grad", lambda: _GRADGRAD(2.0)),
        ("jacobian", lambda: _JACOBIAN([0.5, 2.0])),
        ("jvp", lambda: fg.jvp(_loss, ([0.5, 2.0],), ([1.0, 0.0],))),
    ],
)
@pytest.mark.slow
def test_an_interrupt_at_any_event_of_a_transform_leaves_nothing_behind(user_threshold, name, call):
    landed = _every_point(call)
    calls = {(f, fn) for f, fn, ev, _ in filter(None, landed) if ev == "call"}
    # the fragile steps are among the points hit: the collector's threshold
    # raised and restored, and the level's end
    assert {("autodiff.py", "enter"), ("autodiff.py", "exit"), ("expr.py", "_end_level")} <= calls, name
    assert len(landed) > 300


def test_an_interrupt_at_any_event_of_a_jit_replay_leaves_nothing_behind(user_threshold):
    step = fg.jit(fg.value_and_grad(_loss))
    ref = step([0.1, 0.2])
    landed = _every_point(lambda: step([0.5, 2.0]), lambda: [] if not step._cache.lock._is_owned() else ["lock held"])
    assert len(landed) > 50
    assert step([0.1, 0.2]) == ref and step.cache_size() == 1


@pytest.mark.slow
def test_an_interrupt_in_a_first_jit_call_leaves_nothing_behind(user_threshold):
    # every event in the functions that change state (levels, the jit cache
    # and its lock); every 16th elsewhere. All events: test_faults_interrupts.py
    made: list[Any] = [fg.jit(fg.grad(_loss))]

    def first_call() -> Any:
        f = fg.jit(fg.grad(_loss))
        made.append(f)
        return f([0.5, 2.0])

    seen = events(first_call)
    state = {"run_level", "_end_level", "new_level", "_enter", "__call__", "_compile", "_trace", "_shared_cache"}
    points = [k for k, (_, fn, _) in enumerate(seen, 1) if fn in state or k % 16 == 0]
    assert len(points) > 200
    for k in points:
        _, where = inject(first_call, k)
        f = made[-1]  # this call's, or the previous one's if the interrupt came first
        del made[:-1]
        bad = broken_state() + (["lock held"] if f._cache.lock._is_owned() else [])
        assert not bad, f"interrupt at event {k} {where}: {bad}"
        # the function compiles (or replays) correctly afterwards, without a hang
        assert f([0.5, 2.0]) == fg.grad(_loss)([0.5, 2.0])
    made.clear()


@pytest.mark.slow
def test_an_interrupt_leaves_the_jit_lock_free_for_other_threads(user_threshold):
    step = fg.jit(fg.grad(_loss))
    total = len(events(lambda: step([0.5, 2.0])))
    for k in range(1, total + 1, 7):
        step.clear_cache()
        inject(lambda: step([0.5, 2.0]), k)
        with ThreadPoolExecutor(1) as ex:
            assert ex.submit(lambda: step([0.5, 2.0])).result(timeout=30) == fg.grad(_loss)([0.5, 2.0])


# --------------------------------------------------------------------------
# Threads


def _pool_sum(xs: list[Any]) -> Any:
    with ThreadPoolExecutor(2) as ex:
        return sum(ex.map(lambda x: x * x, xs))


@pytest.mark.parametrize(
    "transform",
    [fg.grad, fg.value_and_grad, fg.jit, lambda f: fg.jit(fg.grad(f)), fg.jacobian, fg.hessian],
    ids=["grad", "value_and_grad", "jit", "jit of grad", "jacobian", "hessian"],
)
def test_work_on_traced_nodes_in_another_thread_raises_never_zeros(transform):
    f = transform(_pool_sum)
    for _ in range(3):  # and again: nothing was cached from the failed call
        with pytest.raises(RuntimeError, match="another thread") as e:
            f([1.0, 2.0])
        assert "run the computation in the thread that called the transform" in str(e.value)
    if isinstance(f, Jitted):
        assert f.cache_size() == 0  # no replay of a stale value was kept


def test_threads_inside_grad_work_on_plain_values_and_their_own_transforms():
    def f(xs: list[Any]) -> Any:
        with ThreadPoolExecutor(2) as ex:
            # plain data and a transform of its own in each worker: no traced node crosses
            slopes = list(ex.map(lambda c: fg.grad(lambda y: y * y)(c), [1.0, 2.0]))
        return sum(s * x for s, x in zip(slopes, xs))

    assert fg.grad(f)([5.0, 7.0]) == [2.0, 4.0]
    assert fg.jit(fg.grad(f))([5.0, 7.0]) == [2.0, 4.0]


def _moons_problem():
    model = fg.nn.MLP.init(2, [8, 8, 1], seed=0)
    xs, ys = fg.data.make_moons(12, seed=1)

    def loss(p: Any) -> Any:
        return fg.nn.mse([p(x) for x in xs], ys)

    return model, loss


def _bits(tree_: Any) -> list[str]:
    return [v.hex() for v in fg.tree.leaves(tree_)]


@pytest.mark.slow
def test_threads_each_running_their_own_grads_match_one_thread_bit_for_bit():
    model, loss = _moons_problem()
    vg, jvg = fg.value_and_grad(loss), fg.jit(fg.value_and_grad(loss))
    ref = _bits(vg(model))
    assert _bits(jvg(model)) == ref

    def work(i: int) -> list[list[str]]:
        return [_bits(vg(model)) if j % 2 else _bits(jvg(model)) for j in range(6)]

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(work, range(8)))
    assert all(r == ref for rs in results for r in rs)
    assert gc.isenabled() and not autodiff._gc_state.threads


class _Cycle:
    __slots__ = ("me", "__weakref__")
    freed: list[None] = []  # one entry per finalized cycle (list.append is atomic)

    def __del__(self) -> None:
        _Cycle.freed.append(None)


def _grads_in_threads(n: int, during: Callable[[], Any], small: bool = False) -> tuple[Any, list[bool]]:
    """Run overlapping grads in ``n`` threads while ``during()`` runs; sample gc.isenabled()."""
    model, loss = _moons_problem() if not small else _small_problem()
    vg = fg.value_and_grad(loss)
    stop = threading.Event()
    enabled: list[bool] = []
    done = itertools.count()

    def trainer() -> None:
        while not stop.is_set():
            vg(model)
            next(done)

    def monitor() -> None:
        while not stop.is_set():
            enabled.append(gc.isenabled())
            time.sleep(0.001)

    threads = [threading.Thread(target=trainer) for _ in range(n)] + [threading.Thread(target=monitor)]
    for t in threads:
        t.start()
    try:
        result = during()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert next(done) > n  # the grads did run, and overlapped
    return result, enabled


def _small_problem() -> tuple[Any, Callable[[Any], Any]]:
    model = fg.nn.MLP.init(2, [4, 1], seed=0)
    xs, ys = fg.data.make_moons(4, seed=1)
    return model, lambda p: fg.nn.mse([p(x) for x in xs], ys)


@pytest.mark.slow
def test_cycles_are_collected_while_eight_threads_run_overlapping_grads(monkeypatch):
    # The bound. CPython collects the young generation when the tracked
    # objects allocated since the last collection, minus those freed, pass
    # its threshold; so garbage cycles (one tracked object each here) wait
    # for at most the threshold plus the tracked objects that the grads free
    # meanwhile: each thread's live graph, two tracked objects (a node and
    # its parents) per node. With a threshold of 5,000 for the test and 8
    # threads, that is 5,000 + 8 * 2 * nodes, plus 1,000 of slack; 40,000
    # cycles are made. (With the collector switched off during grads, as
    # with the collector switched off (the old design), they piled up by the tens of thousands and RSS grew by
    # hundreds of MB in seconds.)
    monkeypatch.setattr(autodiff, "_GC_YOUNG", 5_000)
    model, loss = _small_problem()
    nodes = len(fg.toposort(loss(fg.tree.map(fg.var, model))))
    bound = 5_000 + 8 * 2 * nodes + 1_000
    before = gc.get_threshold()
    gc.collect()
    freed0 = len(_Cycle.freed)
    peak = 0

    def make_cycles() -> int:
        nonlocal peak
        made = 0
        while made < 40_000:
            c = _Cycle()
            c.me = c
            del c
            made += 1
            if made % 200 == 0:
                peak = max(peak, made - (len(_Cycle.freed) - freed0))
        return made

    made, enabled = _grads_in_threads(8, make_cycles, small=True)
    assert made == 40_000 and bound < 15_000
    assert enabled and all(enabled), "the collector was switched off during grads"
    assert peak <= bound, f"{peak} garbage cycles were waiting for the collector at once (bound {bound})"
    gc.collect()
    assert len(_Cycle.freed) - freed0 == 40_000
    assert gc.get_threshold() == before and not autodiff._gc_state.threads


@pytest.mark.slow
def test_a_users_gc_disable_is_never_undone_by_another_threads_grad():
    gc.disable()
    try:
        _, enabled = _grads_in_threads(8, lambda: time.sleep(0.3), small=True)
        assert enabled and not any(enabled)
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.slow
def test_a_users_thresholds_come_back_when_the_last_of_several_threads_ends(user_threshold):
    seen: list[tuple[int, int, int]] = []

    def during() -> None:
        for _ in range(30):
            seen.append(gc.get_threshold())
            time.sleep(0.002)

    _grads_in_threads(4, during, small=True)
    assert gc.get_threshold() == USER_THRESHOLD
    assert (autodiff._GC_YOUNG, 11, 12) in seen  # raised while grads ran
    assert set(seen) <= {USER_THRESHOLD, (autodiff._GC_YOUNG, 11, 12)}


# --------------------------------------------------------------------------
# Stale levels: contexts copied inside a transform, used after it ended


def test_an_interrupt_at_every_event_of_a_debug_nans_block_leaves_the_thread_unchecked(user_threshold):
    def block() -> Any:
        with fg.debug_nans():
            return fg.grad(_loss)([0.5, 2.0])

    total = len(events(block))
    assert total > 20
    for k in range(1, total + 1):
        _, where = inject(block, k)
        bad = broken_state()
        assert not bad, f"interrupt at event {k} of {total} {where}: {bad}"
        assert fg.log(0.0) == -math.inf  # not checked: -inf is an answer here


def test_a_generator_holding_debug_nans_closed_after_its_grad_leaves_the_thread_at_the_root():
    tapes, gens = [], []

    def holder() -> Any:
        with fg.debug_nans():
            yield 1
            yield 2

    def f(x: Any) -> Any:
        tapes.append(expr.current().tape)
        g = holder()
        next(g)
        gens.append(g)
        return x * x

    assert fg.grad(f)(3.0) == 6.0
    n = len(tapes[0])
    gens[0].close()
    assert not expr.current().active and not expr.current().debug
    r = fg.grad(lambda y: y * y)(3.0)
    assert r.__class__ is float and r == 6.0
    fg.var(1.0) * 2.0 + fg.sin(fg.var(0.5))
    assert len(tapes[0]) == n  # nothing recorded into the finished level


def test_a_generator_resumed_after_its_grad_computes_at_the_root():
    tapes, gens = [], []

    def stepper(x: Any) -> Any:
        with fg.debug_nans():
            while True:
                x = x * 2.0
                yield x

    def f(x: Any) -> Any:
        tapes.append(expr.current().tape)
        g = stepper(x)
        gens.append(g)
        return next(g)

    assert fg.grad(f)(3.0) == 2.0
    n = len(tapes[0])
    late = next(gens[0])  # the body runs again, after the level ended
    assert late.value == 12.0 and len(tapes[0]) == n
    gens[0].close()
    assert fg.grad(lambda y: y * y)(3.0) == 6.0 and not expr.current().active


def test_an_asyncio_callback_scheduled_inside_a_grad_runs_afterwards_at_the_root():
    loop = asyncio.new_event_loop()
    tapes, seen = [], []

    def late(x: Any) -> None:
        t = expr.current()
        y = fg.var(1.0) * x + fg.exp(x)  # ops in the copied context of a finished level
        seen.append((t.active, fg.grad(lambda v: v * v)(3.0), y.value))

    def f(x: Any) -> Any:
        tapes.append(expr.current().tape)
        loop.call_soon(late, x)
        return x * x

    try:
        assert fg.grad(f)(3.0) == 6.0
        n = len(tapes[0])
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert seen == [(False, 6.0, 3.0 + math.exp(3.0))]
    assert len(tapes[0]) == n
    assert fg.grad(lambda y: y * y)(3.0) == 6.0 and not expr.current().active


def test_an_asyncio_task_inside_a_grad_is_differentiated():
    # a task created and awaited inside the grad runs in a copy of its level: recorded
    async def square(x: Any) -> Any:
        await asyncio.sleep(0)
        return x * x

    def f(x: Any) -> Any:
        return asyncio.run(square(x)) + x

    assert fg.grad(f)(3.0) == 7.0


# --------------------------------------------------------------------------
# A value read as a plain float inside a transform


@pytest.mark.parametrize(
    "f",
    [lambda x: math.sin(x), lambda x: float(x) * x, lambda x: math.exp(x), lambda x: int(x) * x,
     lambda x: round(x) * x, lambda x: math.floor(x) * x],
    ids=["math.sin", "float", "math.exp", "int", "round", "math.floor"],
)
@pytest.mark.parametrize("transform", [fg.grad, fg.jit, lambda f: fg.grad(fg.grad(f))], ids=["grad", "jit", "grad2"])
def test_reading_a_traced_value_as_a_plain_float_raises_and_points_to_the_fix(f, transform):
    with pytest.raises(TypeError) as e:
        transform(f)(1.0)
    msg = str(e.value)
    if transform is fg.jit:  # jit's own message: the value is not known when the replay runs
        assert "of a traced node under fungrad.jit" in msg, msg
    else:
        assert "inside a fungrad transform" in msg and "fg.sin" in msg and "fg.stop_gradient" in msg, msg


def test_plain_float_use_of_nodes_outside_any_transform_keeps_working():
    x = fg.var(2.5)
    assert (float(x), int(x), round(x), math.sin(x), math.floor(x)) == (2.5, 2, 2, math.sin(2.5), 2)
    assert float(fg.grad(lambda y: y * y)(3.0)) == 6.0
    kept: list[Any] = []
    fg.grad(lambda y: kept.append(y * 2.0) or y)(3.0)
    assert float(kept[0]) == 6.0  # a node of a finished transform is a constant: readable
    # inside a transform, a constant or a node of an outer, finished level reads fine
    c = fg.const(2.0)
    assert fg.grad(lambda y: y * float(c))(3.0) == 2.0
    assert fg.grad(lambda y: y * fg.stop_gradient(y))(3.0) == 3.0


# --------------------------------------------------------------------------
# Bad input: errors at the call, naming the function, the argument and the value


@pytest.mark.parametrize(
    "call, kind, pattern",
    [
        (lambda x: fg.add(x, "a"), TypeError, r"^add: argument b: .*got str 'a'"),
        (lambda x: fg.mul("a", x), TypeError, r"^mul: argument a: .*got str 'a'"),
        (lambda x: fg.pow(x, None), TypeError, r"^pow: argument b: .*got NoneType None"),
        (lambda x: fg.where(x, "a", 2.0), TypeError, r"^where: argument a: .*got str 'a'"),
        (lambda x: fg.atan2(x, b"1"), TypeError, r"^atan2: argument x: .*got bytes"),
        (lambda x: fg.exp("1"), TypeError, r"^exp: argument x: .*got str '1'"),
        (lambda x: fg.add(x, 10**400), ValueError, r"^add: argument b: an int of about 401 digits is too large"),
        (lambda x: fg.mul(10**400, 2.0), ValueError, r"^mul: argument a: an int of about 401 digits"),
        (lambda x: fg.exp(10**400), ValueError, r"^exp: argument x: an int of about 401 digits"),
        (lambda x: x * 10**400, ValueError, r"^the operator \*: an int of about 401 digits"),
        (lambda x: 10**5000 + x, ValueError, r"^the operator \+: an int of about 5001 digits"),
        (lambda x: x ** 10**400, ValueError, r"^the operator \*\*: an int of about 401 digits"),
        (lambda x: fg.where(x, 1.0, -(10**400)), ValueError, r"^where: argument b: an int of about 401"),
        (lambda x: fg.var(10**400), ValueError, r"^fungrad.var: an int of about 401 digits"),
        (lambda x: fg.const(10**400), ValueError, r"^fungrad.const: an int of about 401 digits"),
        (lambda x: fg.grad(lambda y: y * y)(10**400), ValueError, r"^grad: argument 0: an int of about 401"),
        (lambda x: fg.grad(lambda p: p["w"])({"w": 10**400}), ValueError, r"^grad: argument 0 at \['w'\]: an int"),
        (lambda x: fg.value_and_grad(lambda y: y)(1.0 + 0j), TypeError, r"^value_and_grad: argument 0 is complex"),
        (lambda x: fg.jit(lambda y: y)(10**400), ValueError, r"^jit: an int of about 401 digits"),
        (lambda x: fg.grad(5), TypeError, r"^grad: expected a function to transform, got int 5"),
        (lambda x: fg.grad(fg.sin, argnums=None), TypeError, r"^grad: argnums must be an int or a tuple of ints"),
        (lambda x: fg.grad(fg.sin, argnums=1.0), TypeError, r"^grad: argnums must be an int or a tuple of ints"),
        (lambda x: fg.gradients(x * x, wrt=x), TypeError, r"^gradients: wrt must be a list .*write wrt=\[x\]"),
        (lambda x: fg.gradients(x * x, wrt="x"), TypeError, r"^gradients: wrt must be a list of fungrad Nodes"),
        (lambda x: fg.gradients(2.0), TypeError, r"^gradients: out must be a fungrad Node"),
        (lambda x: fg.Node("abc"), TypeError, r"^Node: value must be a float, got str 'abc'"),
        (lambda x: fg.Node(1.0, op="nope"), ValueError, r"^Node: op must be"),
        (lambda x: fg.hessian(5), TypeError, r"^hessian: expected a function"),
        (lambda x: fg.hessian(fg.sin, argnums=3)(1.0), ValueError, r"^hessian: argnums=3 is out of range"),
        (lambda x: fg.hessian(lambda v: [v, v])(1.0), TypeError, r"^hessian: f must return a scalar"),
        (lambda x: fg.hessian(lambda v: v)("a"), TypeError, r"^hessian: argument 0 is str 'a'"),
        (lambda x: fg.hessian(lambda v: v, has_aux=True)(1.0), TypeError, r"^hessian: has_aux=True"),
    ],
)
def test_bad_input_is_an_error_at_the_call_that_says_what_was_expected(call, kind, pattern):
    with pytest.raises(kind, match=pattern):
        call(fg.var(1.0))


def test_huge_ints_fine_when_they_fit():
    assert fg.add(fg.var(1.0), 10**300).value == 1e300
    assert fg.grad(lambda y: y * 2)(10**300) == 2.0


# --------------------------------------------------------------------------
# debug_nans: what is checked


def _with_nan_weight(model: Any) -> Any:
    layer = model.layers[0]
    n0 = layer.neurons[0]
    n0 = attrs.evolve(n0, w=(math.nan,) + tuple(n0.w[1:]))
    return attrs.evolve(model, layers=(attrs.evolve(layer, neurons=(n0,) + tuple(layer.neurons[1:])),) + tuple(model.layers[1:]))


def test_debug_nans_checks_fungrad_functions_on_plain_floats():
    assert fg.log(0.0) == -math.inf  # outside the block: IEEE, no error
    with fg.debug_nans():
        with pytest.raises(FloatingPointError, match=r"^debug_nans: op 'log' produced -inf from inputs \(0.0\)$"):
            fg.log(0.0)
        with pytest.raises(FloatingPointError, match="op 'div' produced inf"):
            fg.div(1.0, 0.0)
        with pytest.raises(FloatingPointError, match="op 'add' produced nan"):
            fg.add(math.nan, 1.0)
        assert fg.log(1.0) == 0.0  # finite values pass
        # Python's own arithmetic on two plain floats is not fungrad's: not checked
        assert math.isnan(math.nan * 1.0)


def test_debug_nans_checks_a_model_on_plain_floats_with_a_nan_weight():
    bad = _with_nan_weight(fg.nn.MLP.init(2, [3, 1], seed=0))
    assert math.isnan(bad([1.0, 2.0]))
    with fg.debug_nans():
        with pytest.raises(FloatingPointError, match=r"op 'tanh' produced nan from inputs \(nan\)"):
            bad([1.0, 2.0])
    with fg.debug_nans():  # and through grad: the weight is a leaf holding nan
        with pytest.raises(FloatingPointError, match="a leaf holds nan"):
            fg.grad(lambda m: m([1.0, 2.0]))(bad)


def test_debug_nans_runs_a_jitted_call_eagerly_and_checks_it():
    f = fg.jit(lambda x: fg.log(x) * 2.0)
    assert f(0.0) == -math.inf and f.cache_size() == 1
    f.clear_cache()
    with fg.debug_nans():
        with pytest.raises(FloatingPointError, match="op 'log' produced -inf"):
            f(0.0)
        assert f(1.0) == 0.0
    assert f.cache_size() == 0  # nothing compiled inside the block: it ran eagerly
    g = fg.jit(fg.grad(lambda x: fg.sqrt(x)))
    with fg.debug_nans():
        with pytest.raises(FloatingPointError, match="gradient through op 'sqrt'"):
            g(0.0)


# --------------------------------------------------------------------------
# The NaN contract: jit and eager agree on NaN-ness; sign and payload are not part of it


_UNARY = ["neg", "exp", "log", "tanh", "relu", "sigmoid", "sqrt", "sin", "cos", "abs", "log1p", "expm1", "atan",
          "sinh", "softplus", "sign", "step", "stop_gradient"]
_BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "atan2"]
_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-300, -1e300, 710.0, math.inf, -math.inf, math.nan]


def _program(rng: random.Random, nin: int) -> Callable[..., Any]:
    steps = []
    for _ in range(rng.randint(2, 9)):
        kind = rng.random()
        if kind < 0.45:
            steps.append((rng.choice(_UNARY), (rng.randrange(-3, 0),)))
        elif kind < 0.9:
            steps.append((rng.choice(_BINARY), (rng.randrange(-4, 0), rng.randrange(-4, 0))))
        else:
            steps.append(("where", (rng.randrange(-3, 0), rng.randrange(-3, 0), rng.randrange(-3, 0))))
    const = rng.choice(_EDGES)

    def f(*xs: Any) -> Any:
        regs = [const, *xs]
        for op, args in steps:
            regs.append(getattr(fg, op)(*[regs[max(a, -len(regs))] for a in args]))
        return regs[-1] + regs[-2] * 0.5

    return f


def _agree(a: Any, b: Any) -> bool:
    a, b = fg.tree.leaves(a), fg.tree.leaves(b)
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or struct.pack("<d", x) == struct.pack("<d", y) for x, y in zip(a, b)
    )


@pytest.mark.slow
def test_jit_and_eager_agree_on_nan_ness_and_on_every_other_bit_over_fuzzed_programs():
    rng = random.Random(9)
    checked = nans = 0
    for _ in range(150):
        f = _program(rng, 2)
        for g in (f, fg.value_and_grad(f, argnums=(0, 1))):
            jg = fg.jit(g)
            for _ in range(4):
                xs = (rng.choice(_EDGES + [rng.uniform(-4, 4)]), rng.choice(_EDGES + [rng.uniform(-4, 4)]))
                eager, jitted = g(*xs), jg(*xs)
                assert _agree(eager, jitted), (xs, eager, jitted)
                checked += 1
                nans += any(math.isnan(v) for v in fg.tree.leaves(eager))
    assert checked == 1200 and nans > 100  # the NaN cases are well represented


def test_a_signalling_nan_is_a_nan_everywhere_and_debug_nans_reports_it():
    snan = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0]
    assert math.isnan(snan)
    for f in (lambda x: x * 1.0, lambda x: x + 0.0, lambda x: fg.exp(x), lambda x: fg.relu(x)):
        assert math.isnan(f(fg.var(snan)).value) and math.isnan(fg.jit(f)(snan))
    assert math.isnan(fg.grad(lambda x: x * x)(snan))
    with fg.debug_nans():
        with pytest.raises(FloatingPointError, match="a leaf holds nan"):
            fg.var(snan)
