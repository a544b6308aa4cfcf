"""slo_tokens_per_s, rejection_rate, unfinished and horizon_policy against hand-computed runs."""

from __future__ import annotations

import gymnasium as gym
import pytest

import disagg_gym  # noqa: F401  (registers the env ids)
from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.metrics.summary import summarize
from disagg_gym.scenario import load_scenario
from disagg_gym.sim.engine import Engine
from disagg_gym.simulation import Simulation
from disagg_gym.testing.scenarios import ArraySource, LinearCost, toy_cluster_config

H = 2.0


def _toy(drain: bool) -> dict:
    # r0: 1000 + 5 tokens, done at ~0.15 s within both SLOs. r1: a 2M-token prompt that no
    # instance can hold (rejected, too_large). r2: 1000 + 1000 tokens, ~10 s of decode: in
    # flight at the 2 s horizon, within both SLOs when drained (TTFT 0.1 s, TPOT ~0.0102 s).
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-4, decode_a_s=0.01, decode_b_s=1e-7)
    src = ArraySource([0.0, 0.5, 0.9], [1000, 2_000_000, 1000], [5, 5, 1000], slo_ttft_s=1.0, slo_tpot_s=0.1)
    eng = Engine()
    rec = Recorder()
    cl = Cluster(toy_cluster_config(), eng, src, observer=rec, router=ROUTERS.get("round_robin")(),
                 cost_factory=lambda gpu, tp: cost)
    cl.start()
    if drain:
        eng.run_until(lambda: cl.drained())
    else:
        eng.run_until(H)
    return summarize(rec, cl, max(H, rec.last_finish_s), horizon_s=H)


def test_fail_counts_in_flight_as_failures() -> None:
    s = _toy(drain=False)
    assert s["requests_total"] == 3 and s["requests_rejected"] == 1
    assert s["unfinished"] == 1
    assert s["rejection_rate"] == pytest.approx(1 / 3)
    assert s["slo_tokens"] == 1005
    assert s["slo_tokens_per_s"] == pytest.approx(1005 / H)


def test_drain_runs_in_flight_requests_to_completion() -> None:
    s = _toy(drain=True)
    assert s["unfinished"] == 0 and s["requests_completed"] == 2
    assert s["slo_tokens"] == 1005 + 2000
    assert s["slo_tokens_per_s"] == pytest.approx(3005 / H)  # still per second of the horizon


SMALL = {"horizon_s": 6.0}


def test_simulation_horizon_policy() -> None:
    auto = Simulation(load_scenario("small-route", SMALL), seed=3).run()
    drain = Simulation(load_scenario("small-route", {**SMALL, "horizon_policy": "drain"}), seed=3).run()
    fail_sim = Simulation(load_scenario("small-route", {**SMALL, "horizon_policy": "fail"}), seed=3)
    fail = fail_sim.run()
    assert auto == {**drain, "horizon_policy": "drain"} and auto["horizon_policy"] == "drain"
    assert auto["unfinished"] == 0
    assert fail["horizon_policy"] == "fail" and fail["unfinished"] > 0
    assert fail["unfinished"] == fail["requests_total"] - fail["requests_completed"] - fail["requests_rejected"]
    assert fail["slo_tokens_per_s"] == pytest.approx(fail_sim.recorder.good_tokens / 6.0)
    assert fail["slo_tokens_per_s"] < drain["slo_tokens_per_s"]


def _episode(over: dict, reject_all: bool = False) -> tuple[dict, int]:
    env = gym.make("disagg/SmallRoute-v3", overrides=over)
    base = env.unwrapped
    env.reset(seed=11)
    steps, info = 0, {}
    done = False
    while not done:
        if reject_all:
            a = base.action_for(reject=True)
        else:
            a = base.action_for(route=base.fallback.route(base.cluster, base.cluster.pending))
        _, _, term, trunc, info = env.step(a)
        done = term or trunc
        steps += 1
    env.close()
    return info["episode_kpis"], steps


def test_env_episode_kpis_fail_by_default_and_drain_on_request() -> None:
    k_fail, n_fail = _episode(SMALL)
    k_drain, n_drain = _episode({**SMALL, "horizon_policy": "drain"})
    assert n_fail == n_drain  # same decisions; only the end differs
    assert k_fail["horizon_policy"] == "fail" and k_fail["unfinished"] == k_fail["requests_in_flight"] > 0
    assert k_drain["horizon_policy"] == "drain" and k_drain["unfinished"] == 0
    assert k_drain["slo_tokens_per_s"] > k_fail["slo_tokens_per_s"]
    for k in ("slo_tokens_per_s", "rejection_rate", "unfinished"):
        assert k in k_fail


def test_shedding_everything_scores_zero() -> None:
    k, _ = _episode(SMALL, reject_all=True)
    assert k["rejection_rate"] == 1.0 and k["slo_tokens_per_s"] == 0.0 and k["goodput_rps"] == 0.0
