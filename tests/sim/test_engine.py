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


@pytest.mark.parametrize("bad", [0.5, float("nan")])
def test_postpone_into_the_past_or_to_nan_is_an_error(bad: float) -> None:
    # (a NaN used to take the "later" branch and set the clock to NaN when the event fired)
    eng = Engine()
    ev = eng.schedule(5.0, lambda _: None)
    eng.schedule(1.0, lambda _: None)
    eng.step()
    with pytest.raises(ValueError, match="cannot postpone"):
        eng.postpone(ev, bad)
    eng.run_until()
    assert eng.now == 5.0


def test_postpone_takes_a_fresh_place_in_the_fifo_order() -> None:
    # Hand-computed: A (t=1) postponed to t=2 fires after B and C, which were scheduled at t=2
    # before the postpone (cancel + schedule would give it the same, last, place).
    eng = Engine()
    seen: list[str] = []
    a = eng.schedule(1.0, seen.append, "A")
    eng.schedule(2.0, seen.append, "B")
    eng.schedule(2.0, seen.append, "C")
    assert eng.postpone(a, 2.0) is a  # later than its heap entry: moved in place
    assert eng.peek() == 2.0
    d = eng.schedule(3.0, seen.append, "D")
    d2 = eng.postpone(d, 1.5)  # earlier than its heap entry: a new event, the old one cancelled
    assert d2 is not d and d.cancelled
    eng.run_until()
    assert seen == ["D", "B", "C", "A"]
    assert eng.events_processed == 4


def _random_run(use_postpone: bool, seed: int) -> list[tuple[int, float]]:
    """Tokens that, when they fire, move other tokens' events around (on a coarse time grid,
    so ties are frequent). With ``use_postpone`` moves use ``Engine.postpone``; else the
    reference: cancel + schedule."""
    import random

    rng = random.Random(seed)
    eng = Engine()
    evs: dict[int, object] = {}
    seen: list[tuple[int, float]] = []

    def fire(i: int) -> None:
        seen.append((i, eng.now))
        evs.pop(i, None)
        for _ in range(rng.randint(0, 3)):
            live = sorted(evs)
            if live and rng.random() < 0.6:
                j = rng.choice(live)
                t = eng.now + rng.randint(0, 8) * 0.25
                if use_postpone:
                    evs[j] = eng.postpone(evs[j], t)  # type: ignore[arg-type]
                else:
                    Engine.cancel(evs[j])  # type: ignore[arg-type]
                    evs[j] = eng.schedule(t, fire, j, priority=j % 2)
        if len(seen) < 400:  # keep the population going
            for _ in range(rng.randint(1, 2)):
                j = len(seen) * 10 + rng.randint(0, 9)
                if j not in evs:
                    evs[j] = eng.schedule(eng.now + rng.randint(0, 8) * 0.25, fire, j, priority=j % 2)

    for i in range(10):
        evs[i] = eng.schedule(rng.randint(0, 4) * 0.25, fire, i, priority=i % 2)
    while eng.peek() != math.inf:  # in slices: postponed entries cross the limit of run_until
        eng.run_until(eng.now + 0.5)
    return seen


@pytest.mark.parametrize("seed", range(5))
def test_postpone_fires_exactly_like_cancel_and_reschedule(seed: int) -> None:
    ref = _random_run(False, seed)
    assert len(ref) >= 400
    assert _random_run(True, seed) == ref
