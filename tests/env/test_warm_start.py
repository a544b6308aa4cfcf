"""Warm-started and short-horizon training variants (issue #16 item 2, second half)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.env.registration import registered_ids, variant_envs
from disagg_gym.scenario import load_scenario

ENV = "disagg/SmallRoute-v3"


def _run_jsq(env: gym.Env) -> tuple[list[float], dict]:
    u = env.unwrapped
    times, info = [], {}
    term = trunc = False
    while not (term or trunc):
        req = u.cluster.pending
        p, d = u.fallback.route(u.cluster, req)
        _, _, term, trunc, info = u.step(u.action_for(route=(p, d)))
        times.append(info["sim_time_s"])
    return times, info


def test_cold_start_is_an_empty_cluster() -> None:
    env = gym.make(ENV, horizon_s=5).unwrapped
    obs, info = env.reset(seed=0)
    assert env.cluster.in_system <= 1 and info["sim_time_s"] < 1.0  # just the pending request


def test_warm_start_has_requests_in_flight_at_step_zero() -> None:
    env = gym.make(ENV, horizon_s=5, warm_start_s=20).unwrapped
    obs, info = env.reset(seed=0)
    assert info["sim_time_s"] >= 20.0
    assert info["scenario"]["warm_start_s"] == 20.0
    # 55 req/s near saturation: after 20 s some of the ~1,100 arrivals are still being served.
    assert env.cluster.in_system > 10
    assert env.cluster.arrived > 500
    n = env.n
    per_inst = obs[: 10 * n].reshape(n, 10)
    assert per_inst[:, 5].max() > 0  # some decode batch is non-empty
    times, info = _run_jsq(env)
    # The agent still gets horizon_s of decisions after the warm-up: the route episode ends
    # at the last arrival before 20 + 5 s (gaps ~1/55 s).
    assert 24.5 < times[-1] <= 25.0 and len(times) > 150


def test_warm_up_rewards_are_not_paid_to_the_first_step() -> None:
    env = gym.make(ENV, horizon_s=5, warm_start_s=20).unwrapped
    env.reset(seed=0)
    req = env.cluster.pending
    p, d = env.fallback.route(env.cluster, req)
    _, r, _, _, info = env.step(env.action_for(route=(p, d)))
    # One inter-arrival (~1/55 s) of completions at most a handful, never the warm-up's hundreds.
    t = info["reward_terms"]
    assert t["slo_goodput"] + t["slo_violation"] + t["rejection"] < 20


def test_warm_start_is_deterministic() -> None:
    a = gym.make(ENV, horizon_s=3, warm_start_s=10)
    b = gym.make(ENV, horizon_s=3, warm_start_s=10)
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    assert np.array_equal(oa, ob)
    assert _run_jsq(a)[0] == _run_jsq(b)[0]


def test_short_variant_for_every_route_config() -> None:
    route = [e for e in registered_ids() if load_scenario(gym.spec(e).kwargs["base_config"]).task == "route"]
    short = {e["id"]: e for e in variant_envs() if e["variant"] == "short"}
    # six load-only route configs + three prefix-cache ones (#14) + three added by #15
    assert len(route) == 12
    for env_id in route:
        head, _, version = env_id.rpartition("-v")
        sid = f"{head}-short-v{version}"
        assert sid in short and sid in gym.registry, sid


@pytest.mark.parametrize("env_id", ["disagg/SmallRoute-short-v3", "disagg/MooncakeRdmaRoute-short-v3"])
def test_short_variant_is_warm_random_start_and_thirty_seconds(env_id: str) -> None:
    env = gym.make(env_id)
    assert env.spec.id == env_id  # the variant is standard, not a custom config
    base = load_scenario(env.spec.kwargs["base_config"])
    starts = set()
    for seed in range(3):
        _, info = env.reset(seed=seed)
        w = info["scenario"]["warm_start_s"]
        assert 10.0 <= w <= base.horizon_s - 30.0
        assert info["scenario"]["horizon_s"] == 30.0
        assert env.unwrapped.cluster.arrived > 0
        starts.add(round(w, 6))
    assert len(starts) == 3


def test_short_variant_passes_the_checkers() -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(gym.make("disagg/SmallRoute-short-v3", horizon_s=3).unwrapped)


def test_warm_start_fallback_may_be_a_composed_policy() -> None:
    """env.fallback_router takes <router>+<admission> names like every other policy name: a
    guard that rejects everything (alpha ~ 0) rejects the warm-up's arrivals; plain jsq none."""
    kw = dict(horizon_s=2, warm_start_s=5)
    plain = gym.make(ENV, **kw).unwrapped
    plain.reset(seed=0)
    assert plain.recorder.rejected == 0
    guarded = gym.make(ENV, **kw, overrides={"env.fallback_router": "jsq+ttft_guard",
                                             "admission": {"ttft_guard": {"alpha": 1e-9}}}).unwrapped
    guarded.reset(seed=0)
    assert guarded.fallback.name == "jsq+ttft_guard"
    assert guarded.recorder.rejected >= guarded.cluster.arrived - 1  # all but the pending request


def test_a_request_cap_counts_the_requests_after_the_warm_up() -> None:
    # max_episode_requests counted the warm-up's arrivals too: with 2,000 on SmallRoute-short,
    # 14 of 20 episodes ended at reset, and with 300 every one did. Oracle: the agent routes
    # exactly `cap` requests (each arrival is a route step or an automatic too_large rejection).
    env = gym.make("disagg/SmallRoute-short-v3", max_episode_requests=300)
    u = env.unwrapped
    for seed in range(3):
        _, info = env.reset(seed=seed)
        assert info["decision"] == "route" and u.engine.now > 0  # after a warm-up
        before = u.cluster.arrived - 1  # the first request after the warm-up is pending at reset
        times, info = _run_jsq(env)
        kpis = info["episode_kpis"]
        assert u.cluster.arrived - before == 300
        assert len(times) + kpis["rejected_by_reason"].get("too_large", 0) == 300


def test_a_request_cap_ends_an_allocation_episode_at_its_last_arrival() -> None:
    # the last step jumped to the 600 s horizon (596 s of idle energy in its reward) and the KPIs
    # were charged the whole horizon. Oracle: the episode stops when the 100th request has
    # arrived; SLO-meeting tokens are per second of that span, as for a finite trace.
    env = gym.make("disagg/EnergyAllocate-fine-v3", max_episode_requests=100)
    u = env.unwrapped
    env.reset(seed=0)
    term = trunc = False
    while not (term or trunc):
        _, _, term, trunc, info = env.step(u.action_for(prefill_counts={"h100-sxm": 4}))
    k = info["episode_kpis"]
    assert k["requests_total"] == 100 and u.cluster.arrived == 100
    assert k["simulated_s"] < 10.0 < u.scenario.horizon_s
    assert k["slo_tokens_per_s"] == pytest.approx(k["slo_tokens"] / min(u.scenario.horizon_s, k["simulated_s"]), rel=1e-6)


def test_an_arrival_at_the_warm_up_end_is_the_warm_up_s(tmp_path) -> None:
    # a reviewer's edge: trace rows at 0, 1, ..., 19 s and a 5 s warm-up. The row at exactly 5 s
    # fires before the warm-up's end event, so the fallback routes it; the agent's 3 requests are
    # those at 6, 7 and 8 s (it got 2 when the count stopped short of 5 s).
    import json as _json

    p = tmp_path / "t.jsonl"
    p.write_text("".join(_json.dumps({"timestamp": 1000 * i, "input_length": 100, "output_length": 5}) + "\n"
                         for i in range(20)))
    env = gym.make(ENV, overrides={"workload": {"kind": "trace", "trace_path": str(p)}, "horizon_s": 20.0,
                                   "env.warm_start_s": 5.0, "env.max_episode_requests": 3})
    _, info = env.reset(seed=0)
    assert info["sim_time_s"] == pytest.approx(6.0)
    times, _ = _run_jsq(env)
    assert len(times) == 3


def test_a_cap_that_does_not_bind_leaves_an_allocation_episode_to_its_horizon() -> None:
    # with a cap above the arrivals of the horizon, the episode ran only to the last arrival
    env = gym.make("disagg/EnergyAllocate-v3", overrides={"horizon_s": 30.0, "env.max_episode_requests": 100_000})
    u = env.unwrapped
    env.reset(seed=0)
    term = trunc = False
    while not (term or trunc):
        _, _, term, trunc, info = env.step(u.action_for())
    assert info["sim_time_s"] >= 30.0 and u.cluster.arrived < 100_000
