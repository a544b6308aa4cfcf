"""disagg-gym bounds: the fluid LP bound against closed forms, and no policy above it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from disagg_gym.bounds import cluster_capacity, episode_bound, episode_workload, feasible, lp_dual_bound
from disagg_gym.cli import main
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.scenario import load_scenario
from disagg_gym.simulation import Simulation


def test_lp_dual_matches_fractional_knapsack() -> None:
    # max 3 x1 + 2 x2 + 1 x3, x1 + x2 + x3 <= 1.5: take item 1, half of item 2 -> 4.0
    ub = lp_dual_bound(np.array([3.0, 2.0, 1.0]), np.array([[1.0, 1.0, 1.0]]), np.array([1.5]), iters=4000)
    assert 4.0 <= ub <= 4.0 * 1.01
    # two constraints: x1 + x2 <= 1 and x2 + x3 <= 1 with values 1, 1.5, 1 -> x1 = x3 = 1, x2 = 0: 2.0
    ub2 = lp_dual_bound(np.array([1.0, 1.5, 1.0]), np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]), np.array([1.0, 1.0]), iters=4000)
    assert 2.0 <= ub2 <= 2.0 * 1.01
    # nothing binds: the total exactly
    assert lp_dual_bound(np.array([1.0, 2.0]), np.array([[1.0, 1.0]]), np.array([5.0])) == 3.0


def test_workload_is_the_simulated_one() -> None:
    scen = load_scenario("hetero-route", {"horizon_s": 10.0})
    wl = episode_workload(scen, 20_003)
    s = Simulation(scen, seed=20_003).run()
    assert wl.arrival_s.size == s["requests_total"]


def test_underloaded_bound_is_the_offered_load_and_infeasible_requests_count_zero() -> None:
    scen = load_scenario("small-route", {"horizon_s": 10.0, "workload.rate_per_s": 5})
    wl = episode_workload(scen, 20_000)
    offered = float((wl.prompt + wl.output).sum()) / 10.0
    assert episode_bound(scen, 20_000) == pytest.approx(offered, rel=1e-12)
    assert episode_bound(scen, 20_000, "goodput_rps") == pytest.approx(wl.arrival_s.size / 10.0)
    # A TTFT SLO below any prompt's lone prefill time: nothing can meet it.
    tight = load_scenario("small-route", {"horizon_s": 10.0, "workload.rate_per_s": 5,
                                          "workload.slo_ttft_s": 1e-6, "workload.slo_ttft_per_1k_prompt_s": 0.0})
    assert not feasible(episode_workload(tight, 20_000), cluster_capacity(tight)).any()
    assert episode_bound(tight, 20_000) == 0.0


CASES = [
    ("small-route", {"horizon_s": 10.0}),
    ("small-route", {"horizon_s": 10.0, "workload.rate_per_s": 150}),  # overloaded: capacity binds
    ("hetero-route", {"horizon_s": 15.0}),
    ("hybrid-cost-route", {"horizon_s": 15.0, "workload.rate_per_s": 80}),
]
POLICIES = [*ROUTERS.names(), "jsq+ttft_guard", "least_finish+mooncake", "jsq+queue_guard"]


@pytest.mark.parametrize(("name", "over"), CASES)
def test_no_policy_exceeds_the_bound(name: str, over: dict) -> None:
    scen = load_scenario(name, over)
    cap = cluster_capacity(scen)
    for seed in (20_000, 20_001):
        ub_tok = episode_bound(scen, seed, "slo_tokens_per_s", cap)
        ub_req = episode_bound(scen, seed, "goodput_rps", cap)
        wl = episode_workload(scen, seed)
        assert ub_tok <= float((wl.prompt + wl.output).sum()) / scen.horizon_s * (1 + 1e-12)
        best = 0.0
        for pol in POLICIES:
            sim = Simulation(scen, seed=seed, router=pol)
            s = sim.run()  # drained: the larger of the two horizon policies' scores
            assert s["slo_tokens_per_s"] <= ub_tok * (1 + 1e-9), (pol, seed)  # KPIs: 9 decimals
            assert sim.recorder.met_slo / scen.horizon_s <= ub_req, (pol, seed)
            best = max(best, s["slo_tokens_per_s"])
        assert best > 0.5 * ub_tok  # the bound is not vacuous


def test_cli_writes_bounds_csv(tmp_path: Path) -> None:
    out = tmp_path / "bounds.csv"
    assert main(["bounds", "--config", "small-route", "--seeds", "1", "--metric", "slo_tokens_per_s", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["config", "metric", "upper_bound", "method"]
    assert rows[0]["config"] == "small-route" and rows[0]["metric"] == "slo_tokens_per_s"
    assert float(rows[0]["upper_bound"]) > 0 and rows[0]["method"].startswith("fluid_lp_dual")


def test_fail_bound_is_tighter_and_holds_for_runs_stopped_at_the_horizon() -> None:
    scen = load_scenario("small-route", {"horizon_s": 10.0, "horizon_policy": "fail"})
    cap = cluster_capacity(scen)
    for seed in (20_000, 20_001):
        drain_ub = episode_bound(scen, seed, cap=cap)
        fail_ub = episode_bound(scen, seed, cap=cap, horizon_policy="fail")
        assert fail_ub < drain_ub  # long generations arriving late cannot finish by 10 s
        for pol in ("jsq", "least_finish", "jsq+ttft_guard", "length_oracle"):
            s = Simulation(scen, seed=seed, router=pol).run()  # horizon_policy: fail
            assert s["unfinished"] > 0 and s["slo_tokens_per_s"] <= fail_ub * (1 + 1e-9), pol
