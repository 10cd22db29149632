"""A KeyboardInterrupt at every trace event of a first ``jit`` call (trace, code generation, compile).

``tests/test_faults.py`` covers ``grad``, ``value_and_grad``, nested grads,
``jacobian`` and jit replays at every event, and first jit calls at every
event in the modules that hold state; this module takes every event of a
first call, in every module (about 3,700 runs).
"""

from __future__ import annotations

from typing import Any

import pytest

import fungrad as fg

from test_faults import _loss, broken_state, events, inject, user_threshold  # noqa: F401


@pytest.mark.slow
def test_an_interrupt_at_every_event_of_a_first_jit_call_leaves_nothing_behind(user_threshold):  # noqa: F811
    made: list[Any] = [fg.jit(fg.grad(_loss))]

    def first_call() -> Any:
        f = fg.jit(fg.grad(_loss))
        made.append(f)
        return f([0.5, 2.0])

    want = fg.grad(_loss)([0.5, 2.0])
    total = len(events(first_call))
    assert total > 2_000
    for k in range(1, total + 1):
        _, where = inject(first_call, k)
        f = made[-1]  # this call's, or the previous one's if the interrupt came first
        del made[:-1]
        bad = broken_state() + (["lock held"] if f._cache.lock._is_owned() else [])
        assert not bad, f"interrupt at event {k} of {total} {where}: {bad}"
        assert f([0.5, 2.0]) == want
