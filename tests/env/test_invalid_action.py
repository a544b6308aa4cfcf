"""Issue #16 item 1: invalid actions are visible (penalize by default, fallback, raise)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.types import Role

ENV = "disagg/SmallRoute-v3"


def _invalid_action(u) -> np.ndarray:
    """A route action inside the action space but masked out: a decode instance as prefill."""
    dec = next(i.idx for i in u.cluster.instances if i.role is Role.DECODE)
    return np.array([dec, dec])


def _episode(mode: str, policy: str) -> tuple[float, dict]:
    env = gym.make(ENV, overrides={"horizon_s": 15.0, "env.invalid_action": mode})
    env.reset(seed=0)
    u = env.unwrapped
    total = 0.0
    while True:
        if policy == "invalid":
            action = _invalid_action(u)
        else:  # the fallback router's own choice, as a valid action
            p, d = u._fallback_route(u.cluster.pending)
            action = np.array([p, d])
        _, r, term, trunc, info = env.step(action)
        total += r
        if term or trunc:
            return total, info


def test_all_invalid_policy_scores_worse_than_the_fallback_router() -> None:
    bad, info_bad = _episode("penalize", "invalid")
    good, info_good = _episode("penalize", "fallback")
    steps = info_bad["episode_kpis"]["invalid_actions"]
    assert steps > 100 and info_good["episode_kpis"]["invalid_actions"] == 0
    # Same simulation (the fallback keeps it going), minus 1 per step.
    assert info_bad["episode_kpis"]["goodput_rps"] == pytest.approx(info_good["episode_kpis"]["goodput_rps"])
    assert bad == pytest.approx(good - steps)


def test_fallback_mode_gives_the_fallback_routers_return_and_flags_the_step() -> None:
    bad, info = _episode("fallback", "invalid")
    good, _ = _episode("fallback", "fallback")
    assert bad == pytest.approx(good)
    assert info["episode_kpis"]["invalid_actions"] > 100


def test_raise_mode_raises_before_changing_anything() -> None:
    env = gym.make(ENV, overrides={"horizon_s": 15.0, "env.invalid_action": "raise"})
    env.reset(seed=0)
    u = env.unwrapped
    pending = u.cluster.pending
    with pytest.raises(ValueError, match="invalid action .* at a route decision"):
        env.step(_invalid_action(u))
    assert u.cluster.pending is pending and pending.prefill_inst == -1
    mask = u.action_masks()
    parts = np.split(mask, np.cumsum(env.action_space.nvec)[:-1])
    env.step(np.array([int(np.flatnonzero(p)[0]) for p in parts]))  # a valid action still works


@pytest.mark.parametrize(("action", "why"), [
    (np.array([0, 2, 1]), "expected 2 integers, one per dimension of MultiDiscrete([5 4])"),
    ("abc", "expected 2 integers, one per dimension of MultiDiscrete([5 4])"),
    (None, "expected 2 integers, one per dimension of MultiDiscrete([5 4])"),
    (np.array([9, 1]), "outside the action space: 9 in dimension 0 (size 5)"),
    (np.array([0, 0]), "masked out (action_masks() says which values this request may take)"),
])
def test_raise_mode_says_what_is_wrong(action, why: str) -> None:
    # every message said "masked out", whatever was wrong. SmallRoute: instances 0, 1 prefill,
    # 2, 3 decode; prefill dimension 4 + reject, decode dimension 4
    env = gym.make(ENV, overrides={"horizon_s": 15.0, "env.invalid_action": "raise"})
    env.reset(seed=0)
    with pytest.raises(ValueError) as exc:
        env.step(action)
    assert str(exc.value) == f"invalid action {action!r} at a route decision: {why} (env.invalid_action: raise)"


def test_action_for_refuses_what_the_space_cannot_hold() -> None:
    # (9, 9), (0,) and a route part on an allocate env (or counts on a route env) were encoded or
    # silently dropped
    u = gym.make(ENV).unwrapped
    u.reset(seed=0)
    assert u.action_for(route=(1, 3)).tolist() == [1, 3]
    for kw, msg in (({"route": (9, 9)}, r"route must be \(prefill_idx, decode_idx\), each in 0..3 \(got \(9, 9\)\)"),
                    ({"route": (0,)}, r"each in 0..3 \(got \(0,\)\)"),
                    ({"prefill_counts": {"h100-sxm": 1}}, "the route task has no allocation part")):
        with pytest.raises(ValueError, match=msg):
            u.action_for(**kw)
    a = gym.make("disagg/HeteroAllocate-v5").unwrapped
    a.reset(seed=0)
    with pytest.raises(ValueError, match=r"route=\(0, 1\): the allocate task has no route part"):
        a.action_for(route=(0, 1))
    with pytest.raises(ValueError, match=r"prefill_counts\['h100-sxm'\] must be an integer in 0..8 \(got 99\)"):
        a.action_for(prefill_counts={"h100-sxm": 99})
    with pytest.raises(ValueError, match=r"reject=True: the allocate task has no route part"):
        a.action_for(reject=True)  # was [4 4]: the reject silently dropped
    with pytest.raises(ValueError, match=r"give route=\(0, 2\) or reject=True, not both"):
        u.action_for(route=(0, 2), reject=True)  # was [4 0]: the reject silently won
