"""``env.violation_at: ttft_deadline``: a missed SLO is counted when the TTFT deadline passes.

Oracles: hand-computed timelines of a few requests, and, on whole episodes, each request's own
timestamps (arrival, TTFT SLO, first token, completion) against the step ends (never the reward
window's bookkeeping).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.config import ConfigError
from disagg_gym.env.reward_window import RewardWindow
from disagg_gym.workload.request import Request, RequestState


def _req(rid: int, arrival: float, slo_ttft: float = 1.0, prompt: int = 1000, out: int = 1) -> Request:
    return Request(rid, arrival, prompt, out, slo_ttft, 1.0)


def _finish(w: RewardWindow, req: Request, first: float, done: float) -> None:
    req.first_token_s = first
    w.on_first_token(req)
    req.completion_s = done
    req.state = RequestState.COMPLETED
    w.on_completion(req)


def test_a_request_with_no_first_token_by_its_deadline_is_counted_then_and_only_then() -> None:
    w = RewardWindow("request", "ttft_deadline")
    late, ok, slow = _req(0, 0.0), _req(1, 0.0), _req(2, 0.5, out=3)
    for r in (late, ok, slow):
        w.on_arrival(r)
    assert w.drain(0.9)["violations"] == 0  # no deadline has passed yet
    _finish(w, ok, 0.95, 0.95)  # first token within 1 s: met
    step = w.drain(1.2)  # late's deadline (1.0) passed without a first token
    assert (step["violations"], step["met_slo"], step["completed"]) == (1, 1, 1)
    assert w.drain(1.4)["violations"] == 0  # slow's deadline is 1.5
    _finish(w, late, 2.0, 2.0)  # finishes long after: counted already, not again
    slow.first_token_s = 1.2  # TTFT met (0.7 s) ...
    slow.completion_s = 6.0  # ... TPOT missed (2.4 s per token against 1.0): counted at completion
    slow.state = RequestState.COMPLETED
    w.on_completion(slow)
    step = w.drain(7.0)
    assert (step["completed"], step["violations"], step["met_slo"]) == (2, 1, 0)


def test_a_late_request_later_rejected_is_not_counted_twice() -> None:
    w = RewardWindow("kilotoken", "ttft_deadline")
    a, b = _req(0, 0.0, prompt=3000, out=1000), _req(1, 0.0)
    w.on_arrival(a)
    w.on_arrival(b)
    b.reject_reason = "kv_full"
    w.on_reject(b)  # before its deadline: a rejection
    step = w.drain(1.5)
    assert step["violation_units"] == pytest.approx(4.0)  # a: (3000 + 1000) / 1000
    assert (step["violations"], step["rejected"], step["rejected_units"]) == (1, 1, pytest.approx(1.001))
    a.reject_reason = "kv_full"
    w.on_reject(a)  # charged already: counted as a rejection event, not charged again
    assert w.drain(2.0) == {**dict.fromkeys(step, 0), "rejected": 1}


def test_completion_mode_counts_at_completion_only() -> None:
    w = RewardWindow("request", "completion")
    r = _req(0, 0.0)
    w.on_arrival(r)
    assert w.drain(5.0)["violations"] == 0  # still queued: not counted
    _finish(w, r, 6.0, 6.0)
    assert w.drain()["violations"] == 1


def test_ttft_deadline_needs_the_time_and_a_known_value() -> None:
    with pytest.raises(ValueError, match="drain needs the current time"):
        RewardWindow("request", "ttft_deadline").drain()
    with pytest.raises(ValueError, match="violation_at"):
        RewardWindow("request", "at_random")


def _episode(violation_at: str, action: tuple[int, int], monkeypatch: pytest.MonkeyPatch):
    """One drained 40 s episode with only ``slo_violation`` weighted (-1): the rewards, the
    times of the first decision and of each step's end, every request that completed (seen
    through the window's completion hook) and the episode's KPIs."""
    done: list[Request] = []
    orig = RewardWindow.on_completion

    def seen(self: RewardWindow, req: Request) -> None:
        done.append(req)
        orig(self, req)

    monkeypatch.setattr(RewardWindow, "on_completion", seen)
    over = {"horizon_s": 40.0, "horizon_policy": "drain", "env.violation_at": violation_at,
            "env.reward.slo_goodput": 0.0, "env.reward.rejection": 0.0, "env.reward.slo_violation": -1.0,
            "env.reward.invalid_action": 0.0}
    env = gym.make("disagg/HeteroAllocate-v5", overrides=over)
    env.reset(seed=20000)
    ends = [env.unwrapped.engine.now]  # the first decision (the first control tick), then each step's end
    rewards = []
    while True:
        _, r, term, trunc, info = env.step(np.array(action))
        rewards.append(float(r))
        ends.append(env.unwrapped.engine.now)
        if term or trunc:
            monkeypatch.undo()
            return rewards, ends, done, info["episode_kpis"]


def _step_of(t: float, ends: list[float]) -> int:
    """The step whose window holds time ``t`` (window k covers ``(ends[k], ends[k+1]]``)."""
    return next(k for k in range(len(ends) - 1) if t <= ends[k + 1])


@pytest.mark.parametrize("action", [(1, 1), (6, 6)])
def test_each_missed_slo_is_charged_once_in_the_step_the_timestamps_say(
    action: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same actions, same simulation, every request drained at the horizon. Oracle: each
    request's own timestamps. ``completion`` charges a request that missed its SLO in the step
    it completed in; ``ttft_deadline`` charges it in the first step that ends after its TTFT
    deadline with no first token yet, else in the step it completed in, and not at all if it
    was already late at the first decision (charged before the episode began)."""
    at_done, ends, _, kpis = _episode("completion", action, monkeypatch)
    at_deadline, ends2, reqs, kpis2 = _episode("ttft_deadline", action, monkeypatch)
    assert kpis == kpis2 and ends == ends2  # the option changes the reward only
    assert kpis["requests_rejected"] == 0 and kpis["unfinished"] == 0 and len(reqs) == kpis["requests_completed"]
    t0 = ends[0]
    want_done = [0.0] * (len(ends) - 1)
    want_deadline = [0.0] * (len(ends) - 1)
    for r in reqs:
        if r.completion_s <= t0 or r.meets_slo():
            continue
        done_k = _step_of(r.completion_s, ends)
        want_done[done_k] -= 1
        deadline = r.arrival_s + r.slo_ttft_s
        late = [k for k, t in enumerate(ends) if deadline < t < r.first_token_s]
        if not late:
            want_deadline[done_k] -= 1
        elif late[0] > 0:  # late at the end of step late[0] - 1
            want_deadline[late[0] - 1] -= 1
    assert sum(want_deadline) < 0
    assert at_done == want_done
    assert at_deadline == want_deadline


def test_a_bad_value_is_one_line() -> None:
    with pytest.raises(ConfigError, match="violation_at"):
        gym.make("disagg/HeteroAllocate-v5", overrides={"env.violation_at": "never"})


def test_the_per_decision_credit_does_not_depend_on_violation_at() -> None:
    """``ttft_deadline`` changes the aggregate counters only: a tracked request that was late
    at its deadline still gets its per-decision credit settled at completion."""
    credits = []
    for mode in ("completion", "ttft_deadline"):
        w = RewardWindow("request", mode)
        r = _req(0, 0.0)
        w.on_arrival(r)
        w.track(r, 7)
        w.drain(2.0)
        _finish(w, r, 3.0, 3.0)  # TTFT 3 s against 1 s: violated
        credits.append(w.drain_credits())
    assert credits[0] == credits[1] == [(7, "slo_violation", 1, 0), (7, "slo_violation", 0, 1)]
