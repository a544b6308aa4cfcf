"""Domain baselines (issue #15 item 2) on small hand-checkable scenarios."""

from __future__ import annotations

import gymnasium as gym
import pytest

import disagg_gym  # noqa: F401  (registers the env ids)
from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.config import ClusterConfig, InstanceGroupConfig, TopologyConfig
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.errors import UserError
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.scenario import load_scenario
from disagg_gym.sim.engine import Engine
from disagg_gym.testing.scenarios import ArraySource, LinearCost
from disagg_gym_agents import POLICIES, make_policy
from disagg_gym_agents.baselines import (
    borrow_step,
    initial_prefill_counts,
    linear_trend_forecast,
    plan_counts,
    static_split_candidates,
)
from disagg_gym_agents.evaluation import run_episode


# ---------------------------------------------------------------------- spillover
def _hybrid(on_demand: bool = True) -> ClusterConfig:
    billing = "on_demand" if on_demand else "reserved"
    return ClusterConfig(
        groups=(
            InstanceGroupConfig(gpu="h100-sxm", count=1, role="prefill", site="onprem"),
            InstanceGroupConfig(gpu="h100-sxm", count=1, role="decode", site="onprem"),
            InstanceGroupConfig(gpu="h100-sxm", count=1, role="prefill", site="cloud", billing=billing),
            InstanceGroupConfig(gpu="h100-sxm", count=1, role="decode", site="cloud", billing=billing),
        ),
        topology=TopologyConfig(gpus_per_node=8, intra_node="nvlink"),
    )


def _spill(alpha: float, on_demand: bool = True) -> list[tuple[int, int]]:
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-4)
    src = ArraySource([0.0, 0.01, 0.02, 0.03], [1000] * 4, [3] * 4, slo_ttft_s=0.25)
    eng = Engine()
    rec = Recorder(keep_requests=True)
    cl = Cluster(_hybrid(on_demand), eng, src, observer=rec, router=ROUTERS.get("spillover")(alpha=alpha),
                 cost_factory=lambda gpu, tp: cost)
    cl.start()
    eng.run_until(lambda: cl.drained())
    return [(r.prefill_inst, r.decode_inst) for r in sorted(rec.requests, key=lambda r: r.rid)]


def test_spillover_bursts_only_when_on_prem_would_miss() -> None:
    # Prompts of 0.1 s. On-prem predictions: r0 0.1, r1 0.09 + 0.1 = 0.19 (under 0.25, stays);
    # r2 0.08 + 0.1 + 0.1 = 0.28 -> cloud (idle, 0.1); r3 on-prem 0.37 vs cloud 0.09 + 0.1 -> cloud.
    assert _spill(1.0) == [(0, 1), (0, 1), (2, 3), (2, 3)]
    assert _spill(2.0) == [(0, 1)] * 4  # 0.37 < 2 x 0.25: never bursts
    assert _spill(1.0, on_demand=False)[:2] == [(0, 1), (2, 3)]  # no cloud: least predicted TTFT


def test_spillover_policy_in_the_env() -> None:
    env = gym.make("disagg/HybridCostRoute-v3", overrides={"horizon_s": 20.0})
    row = run_episode(make_policy("spillover", env), env, 20_000)
    jsq = run_episode(make_policy("jsq", env), env, 20_000)
    assert row["invalid_actions"] == 0
    assert row["cost_per_1m_good_tokens_usd"] < jsq["cost_per_1m_good_tokens_usd"]
    with pytest.raises(UserError, match="alpha"):
        make_policy("spillover", env, alpha=0)
    env.close()


# ---------------------------------------------------------------------- static split
def test_static_split_candidates_by_hand() -> None:
    hetero = load_scenario("hetero-allocate")  # 8 H100 + 8 H200 switchable
    cands = static_split_candidates(hetero)
    # the env's mask keeps 1..7 prefill instances per type of 8 (issue #15 item 2: 8:2 ran as 7:2)
    assert cands == [{"h100-sxm": a, "h200": b} for a in range(1, 8) for b in range(1, 8)]
    assert static_split_candidates(load_scenario("energy-allocate")) == [{"h100-sxm": k} for k in range(1, 8)]
    # the default split (the configs' initial roles, read off the YAML by hand) is a candidate
    assert initial_prefill_counts(hetero) == {"h100-sxm": 4, "h200": 4} and initial_prefill_counts(hetero) in cands
    assert initial_prefill_counts(load_scenario("energy-allocate")) == {"h100-sxm": 4}


def test_static_split_candidates_are_what_the_mask_allows() -> None:
    # 1 H100 (prefill) + 3 H200 (decode): the mask lets the single H100 take either role (0..1)
    # and keeps 1..2 of the three H200 prefilling; every pair then keeps a prefill and a decode
    # instance, so exactly these four (by hand). The old grid also listed h200 = 0 and 3.
    groups = [
        {"gpu": "h100-sxm", "count": 1, "role": "prefill"},
        {"gpu": "h200", "count": 3, "role": "decode", "max_batch": 64},
    ]
    scen = load_scenario("hetero-allocate", {"cluster.groups": groups})
    cands = static_split_candidates(scen)
    assert cands == [{"h100-sxm": 0, "h200": 1}, {"h100-sxm": 0, "h200": 2},
                     {"h100-sxm": 1, "h200": 1}, {"h100-sxm": 1, "h200": 2}]
    # and the env at reset agrees: each candidate's counts are unmasked
    env = gym.make("disagg/HeteroAllocate-v5", overrides={"cluster.groups": groups, "horizon_s": 10.0})
    env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    assert mask.tolist() == [True, True, False, True, True, False]
    env.close()


def test_static_split_coarse_grid_by_hand() -> None:
    # LargeJoint (v2, v3): 32 H100 + 32 A100 switchable, 16 + 16 prefill at start; the mask keeps
    # 1..31 per type. Step 8: {1, 8, 16, 24, 31} per type, 25 pairs.
    large = load_scenario("large-joint")
    assert len(static_split_candidates(large)) == 31 * 31
    coarse = static_split_candidates(large, step=8)
    assert len(coarse) == 25 and {"h100-sxm": 16, "a100-80gb": 16} in coarse
    assert {"h100-sxm": 8, "a100-80gb": 31} in coarse and {"h100-sxm": 4, "a100-80gb": 16} not in coarse
    assert {"h100-sxm": 0, "a100-80gb": 16} not in coarse and {"h100-sxm": 32, "a100-80gb": 16} not in coarse
    # step 3 on EnergyAllocate (8 H100, 4 prefill at start): 3, 6, the mask's ends 1 and 7, the initial 4
    assert static_split_candidates(load_scenario("energy-allocate"), step=3) == [{"h100-sxm": k} for k in (1, 3, 4, 6, 7)]
    assert static_split_candidates(large, step=1) == static_split_candidates(large)
    with pytest.raises(UserError, match="grid step must be a positive integer"):
        static_split_candidates(large, step=0)


def test_static_split_holds_its_counts() -> None:
    env = gym.make("disagg/EnergyAllocate-v3", overrides={"horizon_s": 40.0})
    pol = make_policy("static_split", env, prefill_counts={"h100-sxm": 2})
    row = run_episode(pol, env, 20_000)
    assert row["invalid_actions"] == 0
    assert env.unwrapped.cluster.role_counts("h100-sxm") == (2, 6)
    with pytest.raises(UserError, match="unknown GPU type 'h200'"):
        make_policy("static_split", env, prefill_counts={"h200": 1})
    # the mask keeps one instance in each role: 8 (or 0) of 8 ran clamped to 7 (or 1)
    for n in (9, 8, 0):
        with pytest.raises(UserError, match=r"in \[1, 7\], the counts the allocation mask allows for its 8 instances"):
            make_policy("static_split", env, prefill_counts={"h100-sxm": n})
    env.close()


# ---------------------------------------------------------------------- SLA planner
def test_load_predictor_linear_trend() -> None:
    assert linear_trend_forecast([10.0, 20.0, 30.0]) == pytest.approx(40.0)
    assert linear_trend_forecast([5.0]) == 5.0
    assert linear_trend_forecast([3.0, 1.0]) == 0.0  # the line goes below zero: clipped
    assert linear_trend_forecast([]) == 0.0


def test_planner_arithmetic_by_hand() -> None:
    # 10 req/s x 1000 prompt tokens over 20000 tok/s -> 1 prefill; 10 x 100 output tokens after
    # the first over 500 tok/s -> 2 decode; both fit in 8 -> 1 prefill.
    assert plan_counts(10, 1000, 101, 8, 20_000, 500) == 1
    # 100 req/s: 5 prefill + 20 decode needed > 8 -> split 8 x 5/25 = 1.6 -> 2.
    assert plan_counts(100, 1000, 101, 8, 20_000, 500) == 2
    # headroom 1.5 at 30 req/s: ceil(2.25) = 3 prefill + ceil(9) = 9 decode: fits in 16 -> 3;
    # in 8 they do not: 8 x 3/12 = 2.
    assert plan_counts(30, 1000, 101, 16, 20_000, 500, headroom=1.5) == 3
    assert plan_counts(30, 1000, 101, 8, 20_000, 500, headroom=1.5) == 2
    # prefill-heavy overload keeps one decode instance.
    assert plan_counts(1000, 1000, 2, 8, 1_000, 1e9) == 7


# ---------------------------------------------------------------------- Splitwise borrowing
def test_borrow_step_by_hand() -> None:
    assert borrow_step(4, 4, 2, prefill_over=1.5, decode_press=0.3) == 5  # lend decode -> prefill
    assert borrow_step(6, 4, 2, prefill_over=1.5, decode_press=0.3) == 6  # at the borrowing cap
    assert borrow_step(4, 4, 2, prefill_over=0.2, decode_press=0.95) == 3  # lend prefill -> decode
    assert borrow_step(5, 4, 2, prefill_over=0.5, decode_press=0.5) == 4  # calm: return home
    assert borrow_step(4, 4, 2, prefill_over=1.5, decode_press=0.95) == 4  # both stressed: hold


@pytest.mark.parametrize("name", ["sla_planner", "splitwise", "static_split"])
def test_allocation_baselines_run_with_valid_actions(name: str) -> None:
    assert name in POLICIES.names()
    env = gym.make("disagg/EnergyAllocate-v3", overrides={"horizon_s": 60.0})
    row = run_episode(make_policy(name, env), env, 20_000)
    assert row["invalid_actions"] == 0 and row["requests_completed"] > 0
    env.close()


def test_allocation_heuristics_stay_under_the_bound() -> None:
    from disagg_gym.bounds import episode_bound

    over = {"horizon_s": 60.0, "horizon_policy": "drain"}
    scen = load_scenario("energy-allocate", over)
    ub = episode_bound(scen, 20_000)
    env = gym.make("disagg/EnergyAllocate-v3", overrides=over)
    for name in ("random", "static_ratio", "threshold", "static_split", "sla_planner", "splitwise"):
        row = run_episode(make_policy(name, env), env, 20_000)
        assert 0 < row["slo_tokens_per_s"] <= ub * (1 + 1e-9), name  # KPIs are rounded to 9 decimals
    env.close()


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("disagg/EnergyAllocate-v3", {"horizon_s": 30}),
    ("disagg/EnergyAllocate-v3", {"horizon_s": 30, "warm_start_s": 5}),
])
def test_sla_planner_measures_its_first_rate_from_the_episode_start(env_id: str, kwargs: dict) -> None:
    # The first decision (one control interval in) sees the arrivals since the episode began
    # over that interval. It used to start its clock at that decision: every arrival so far
    # over 1e-9 s (a forecast of ~1e11 req/s, then a trend down to 0 prefill instances).
    env = gym.make(env_id, **kwargs)
    pol = make_policy("sla_planner", env)
    obs, _ = env.reset(seed=10000)
    t0, n0 = env.unwrapped.episode_start
    assert t0 == kwargs.get("warm_start_s", 0.0)
    pol.predict(obs)
    cl = env.unwrapped.cluster
    assert cl.engine.now == 10.0  # the first control tick (ticks fall on multiples of 10 s)
    # hand count: requests that arrived since the episode began, over the time since
    assert list(pol._rates) == [pytest.approx((cl.arrived - n0) / (10.0 - t0))]
    assert 20 < pol._rates[0] < 400  # the config offers tens to a few hundred req/s
