"""Engine: deterministic ordering, cancellation, run_until semantics."""

from __future__ import annotations

import math

import pytest

from disagg_gym.sim.engine import Engine


def test_order_is_time_then_priority_then_fifo() -> None:
    eng = Engine()
    seen: list[str] = []
    eng.schedule(2.0, seen.append, "late")
    eng.schedule(1.0, seen.append, "b-prio1", priority=1)
    eng.schedule(1.0, seen.append, "a-prio0", priority=0)
    eng.schedule(1.0, seen.append, "c-prio1-second", priority=1)
    eng.run_until()
    assert seen == ["a-prio0", "b-prio1", "c-prio1-second", "late"]
    assert eng.now == 2.0


def test_cancel_is_a_tombstone() -> None:
    eng = Engine()
    seen: list[int] = []
    ev = eng.schedule(1.0, seen.append, 1)
    eng.schedule(2.0, seen.append, 2)
    Engine.cancel(ev)
    assert eng.peek() == 2.0
    eng.run_until()
    assert seen == [2]


def test_run_until_time_includes_boundary_and_advances_clock() -> None:
    eng = Engine()
    seen: list[float] = []
    for t in (0.5, 1.0, 1.5):
        eng.schedule(t, seen.append, t)
    eng.run_until(1.0)
    assert seen == [0.5, 1.0]
    assert eng.now == 1.0
    eng.run_until(1.2)
    assert eng.now == 1.2 and seen == [0.5, 1.0]


def test_run_until_predicate_stops_after_event() -> None:
    eng = Engine()
    box = {"n": 0}

    def inc(_: object) -> None:
        box["n"] += 1
        eng.schedule_in(1.0, inc)

    eng.schedule(0.0, inc)
    assert eng.run_until(lambda: box["n"] >= 5)
    assert box["n"] == 5 and eng.now == 4.0


def test_run_until_predicate_returns_false_when_empty() -> None:
    eng = Engine()
    eng.schedule(1.0, lambda _: None)
    assert eng.run_until(lambda: False) is False
    assert eng.peek() == math.inf


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_schedule_in_past_or_nan_is_an_error(bad: float) -> None:
    eng = Engine()
    eng.schedule(1.0, lambda _: None)
    eng.run_until()
    with pytest.raises(ValueError, match="cannot schedule"):
        eng.schedule(bad, lambda _: None)
