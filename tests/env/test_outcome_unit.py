"""``env.outcome_unit: kilotoken``: the outcome terms count a request's (prompt + output) tokens.

Oracles: the request's own token counts and timestamps, and the recorder's ``slo_tokens``
(the leaderboard metric), never the reward window's bookkeeping.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.config import ConfigError
from _oracles import request_outcome

ENV = "disagg/SmallRoute-v3"
W = {"met": 1.0, "violated": -0.5, "rejected": -1.0}  # small-route.yaml's weights, by hand


def _make(mode: str, unit: str = "kilotoken", horizon: float = 8.0, **extra: object) -> gym.Env:
    over = {"horizon_s": horizon, "env.reward_mode": mode, "env.outcome_unit": unit, **extra}
    return gym.make(ENV, overrides=over)


def _kilotokens(req) -> float:
    return (req.prompt_tokens + req.output_tokens) / 1000.0




def _episode(env: gym.Env, seed: int, reject_every: int = 0):
    env.reset(seed=seed)
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    routed, infos, total = [], [], 0.0
    k = 0
    while True:
        req = u.cluster.pending
        routed.append(req)
        if reject_every and k % reject_every == 0:
            act = u.action_for(reject=True)
        else:
            mask = u.action_masks()
            nvec = env.action_space.nvec
            act = np.array([rng.choice(np.flatnonzero(mask[: nvec[0] - 1])),
                            rng.choice(np.flatnonzero(mask[nvec[0]:]))])
        _, r, term, trunc, info = env.step(act)
        total += float(r)
        infos.append(info)
        k += 1
        if term or trunc:
            return routed, infos, total


def test_a_rejection_costs_its_kilotokens_in_its_own_step() -> None:
    env = _make("per_decision")
    env.reset(seed=3)
    u = env.unwrapped
    req = u.cluster.pending
    _, r, _, _, info = env.step(u.action_for(reject=True))
    assert info["credit"] == {"0": pytest.approx(W["rejected"] * _kilotokens(req))}
    assert r == pytest.approx(W["rejected"] * _kilotokens(req))


def test_each_decision_is_credited_its_requests_tokens() -> None:
    routed, infos, _ = _episode(_make("per_decision"), seed=5, reject_every=7)
    credited: dict[int, float] = {}
    for info in infos:
        for key, v in info["credit"].items():
            credited[int(key)] = credited.get(int(key), 0.0) + v
    seen = set()
    for dec, req in enumerate(routed):
        out = request_outcome(req)
        if out is None:
            continue
        seen.add(out)
        assert credited[dec] == pytest.approx(W[out] * _kilotokens(req)), (dec, out)
    assert {"met", "rejected"} <= seen


@pytest.mark.parametrize("mode", ["aggregate", "per_decision", "predicted"])
def test_the_goodput_term_sums_to_the_leaderboard_metric(mode: str) -> None:
    """With only slo_goodput weighted and in-flight work drained at the horizon, an episode's
    return is the recorder's SLO-meeting tokens / 1000 in every reward mode (predicted
    advances are taken back by the episode's end)."""
    env = _make(mode, **{"env.reward.slo_violation": 0.0, "env.reward.rejection": 0.0,
                         "env.reward.invalid_action": 0.0, "horizon_policy": "drain"})
    _, infos, total = _episode(env, seed=9, reject_every=5)
    slo_tokens = infos[-1]["episode_kpis"]["slo_tokens"]
    assert slo_tokens > 0
    assert total == pytest.approx(slo_tokens / 1000.0, rel=1e-9)


def test_the_request_unit_is_the_default_and_unchanged() -> None:
    a = _episode(gym.make(ENV, overrides={"horizon_s": 6.0, "env.reward_mode": "predicted"}), seed=2)[2]
    b = _episode(_make("predicted", unit="request", horizon=6.0), seed=2)[2]
    assert a == b


def test_a_bad_unit_is_one_line() -> None:
    with pytest.raises(ConfigError, match="outcome_unit.*tokens"):
        _make("aggregate", unit="tokens")
