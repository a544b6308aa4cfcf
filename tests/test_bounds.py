"""disagg-gym bounds: the fluid LP bound against closed forms, and no policy above it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from disagg_gym.bounds import (
    cacheable_tokens,
    cluster_capacity,
    episode_bound,
    episode_lower_bound,
    episode_workload,
    feasible,
    lp_dual_bound,
)
from disagg_gym.cli import build_parser, main
from disagg_gym.errors import UserError
from disagg_gym.hardware import get_gpu
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
    # a request cap ends arrivals at ~3 s: the simulator charges that span, so must the bound
    ("small-route", {"horizon_s": 10.0, "workload.rate_per_s": 30, "max_requests": 150}),
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
        # the arrival window: the horizon, or the last arrival when a request cap ends arrivals
        window = scen.horizon_s if scen.max_requests is None else float(wl.arrival_s.max())
        assert ub_tok <= float((wl.prompt + wl.output).sum()) / window * (1 + 1e-12)
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


def test_cli_merges_into_an_existing_bounds_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # bounding one config must not delete the other configs' rows (README: -> leaderboard/bounds.csv)
    out = tmp_path / "bounds.csv"
    out.write_text(
        "config,metric,upper_bound,method\n"
        "hetero-route,slo_tokens_per_s,123.0,kept\n"
        "small-route,slo_tokens_per_s,1.0,stale\n"
        "small-route,goodput_rps,2.0,kept too\n"
    )
    assert main(["bounds", "--config", "small-route", "--seeds", "1", "--metric", "slo_tokens_per_s",
                 "--metric", "energy_per_good_request_j", "--out", str(out)]) == 0
    rows = [(r["config"], r["metric"], r["method"]) for r in csv.DictReader(out.open())]
    assert [r[:2] for r in rows] == [("hetero-route", "slo_tokens_per_s"), ("small-route", "slo_tokens_per_s"),
                                     ("small-route", "goodput_rps"), ("small-route", "energy_per_good_request_j")]
    assert rows[0][2] == "kept" and rows[2][2] == "kept too" and rows[1][2].startswith("fluid_lp_dual")
    assert f"wrote {out}: 2 row(s) computed, 2 other row(s) kept" in capsys.readouterr().out


def test_cli_checks_every_config_first_and_keeps_finished_configs_when_interrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import disagg_gym.bounds as bounds_mod

    out = tmp_path / "bounds.csv"
    # an unknown name is found before any bound is computed (it used to stop after the others)
    rc = main(["bounds", "--config", "small-route", "--config", "nope", "--seeds", "1", "--out", str(out)])
    assert rc == 2 and not out.exists() and "small-route" not in capsys.readouterr().out
    # Ctrl-C during the second config keeps the first one's rows (they were lost)
    real = bounds_mod.config_bound

    def interrupted(name: str, *a: object, **kw: object) -> float:
        if name == "hetero-route":
            raise KeyboardInterrupt
        return real(name, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(bounds_mod, "config_bound", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bounds_mod.cmd_bounds(build_parser().parse_args(
            ["bounds", "--config", "small-route", "--config", "hetero-route", "--seeds", "1",
             "--metric", "slo_tokens_per_s", "--out", str(out)]))
    rows = list(csv.DictReader(out.open()))
    assert [(r["config"], r["metric"]) for r in rows] == [("small-route", "slo_tokens_per_s")]


def test_cli_refuses_an_out_file_that_is_not_a_bounds_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.csv"
    out.write_text("config,agent,score\nsmall-route,jsq,1.0\n")
    assert main(["bounds", "--config", "small-route", "--seeds", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"disagg-gym: error: --out {out}: not a bounds CSV") and "Traceback" not in err
    assert out.read_text() == "config,agent,score\nsmall-route,jsq,1.0\n"


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


def test_cacheable_tokens_hand_computed() -> None:
    # 4-token cache blocks. A block counts when another request's prompt holds its hash and that
    # request arrived before this one's first-token deadline (arrival + TTFT SLO), up to
    # (prompt - 1) // 4 blocks (one token is always computed).
    arrival = np.array([0.0, 0.5, 5.0, 2.0, 2.5])
    ttft = np.array([1.0, 1.0, 1.0, 0.5, 1.0])
    prompt = np.array([12.0, 9.0, 13.0, 8.0, 4.0])
    hashes = [(1, 2, 3), (1, 2), (1, 99, 3), (7, 8), (7,)]
    got = cacheable_tokens(arrival, ttft, prompt, hashes, 4)
    # r0: r1 arrives at 0.5 < 0 + 1 (it may be prefilled while r0 queues): blocks 1, 2 (cap 2) -> 8
    # r1: r0 (0 < 1.5): blocks 1, 2 -> 8
    # r2: cap 3; block 1 (r0, r1), 99 (nobody), 3 (r0) -> 8
    # r3: cap 1; block 7 only in r4, which arrives at 2.5, not before r3's deadline 2.5 -> 0
    # r4: cap (4 - 1) // 4 = 0 -> 0
    assert got.tolist() == [8.0, 8.0, 8.0, 0.0, 0.0]
    assert cacheable_tokens(arrival, ttft, prompt, [(), (), (), (), ()], 4).tolist() == [0.0] * 5


CACHE_CASES = [
    ("multiturn-cache-route", {"horizon_s": 30.0, "workload.rate_per_s": 72}),  # 3x: capacity binds
    ("rag-pool-route", {"horizon_s": 20.0}),
    ("mooncake-cache-route", {"horizon_s": 40.0}),
]


@pytest.mark.parametrize(("name", "over"), CACHE_CASES)
def test_prefix_cache_bound_holds_per_request_and_per_policy(name: str, over: dict) -> None:
    scen = load_scenario(name, over)
    wl = episode_workload(scen, 20_000)
    assert wl.cacheable is not None and wl.cacheable.sum() > 0
    ub_tok = episode_bound(scen, 20_000)
    ub_req = episode_bound(scen, 20_000, "goodput_rps")
    for pol in ("jsq", "prefix_affinity", "least_finish+ttft_guard"):
        sim = Simulation(scen, seed=20_000, router=pol)
        s = sim.run()
        assert s["slo_tokens_per_s"] <= ub_tok * (1 + 1e-9), pol
        assert sim.recorder.met_slo / scen.horizon_s <= ub_req, pol
        hits = 0
        for r in sim.recorder.iter_records():
            assert r["arrival_s"] == wl.arrival_s[r["rid"]]  # rid indexes the bound's workload
            if r["met_slo"]:  # a request within its SLOs got no more hits than the bound allows
                assert r["cached_tokens"] <= wl.cacheable[r["rid"]], (pol, r["rid"])
                hits += r["cached_tokens"] > 0
        assert hits > 0  # the simulator did hit: the check above is not vacuous


def test_cache_free_bound_is_beaten_when_capacity_binds() -> None:
    # Overloaded multi-turn chat: a bound that charged every prompt token (the prefix cache
    # disabled) is exceeded by a real policy with the cache on; the cache-aware bound is not.
    name, over = CACHE_CASES[0]
    scen = load_scenario(name, over)
    no_cache = episode_bound(load_scenario(name, {**over, "cluster.prefix_cache.enabled": False}), 20_000)
    s = Simulation(scen, seed=20_000, router="least_finish+ttft_guard").run()
    assert s["slo_tokens_per_s"] > no_cache
    assert s["slo_tokens_per_s"] <= episode_bound(scen, 20_000)


# ------------------------------------------------- lower bounds: cost and energy per good output
@pytest.mark.parametrize("rate", [80, 160])  # 160 req/s: the reserved pool alone cannot keep up
def test_cost_lower_bound_holds_for_every_policy_stopped_at_the_horizon(rate: int) -> None:
    scen = load_scenario("hybrid-cost-route", {"horizon_s": 15.0, "workload.rate_per_s": rate, "horizon_policy": "fail"})
    cap = cluster_capacity(scen)
    for seed in (20_000, 20_001):
        lb_cost = episode_lower_bound(scen, seed, "cost_per_1m_good_tokens_usd", cap, "fail")
        best = np.inf
        for pol in ("jsq", "round_robin", "least_finish", "spillover", "jsq+queue_guard", "jsq+ttft_guard"):
            s = Simulation(scen, seed=seed, router=pol).run()
            assert s["cost_per_1m_good_tokens_usd"] >= lb_cost * (1 - 1e-9), (pol, seed)
            best = min(best, s["cost_per_1m_good_tokens_usd"])
        assert best < 5 * lb_cost  # not vacuous


def test_cost_lower_bound_of_a_reserved_only_cluster_is_its_price_over_the_token_bound() -> None:
    # Reserved instances only: cost = price x the charged span, which is at least
    # min(horizon, last arrival); good tokens are at most the fluid bound.
    scen = load_scenario("small-route", {"horizon_s": 10.0})
    price_per_s = 4 * get_gpu("h100-sxm").price_usd_per_hour / 3600.0  # small-route: 4 H100s, list price
    for seed in (20_000, 20_001):
        wl = episode_workload(scen, seed)
        span = min(10.0, float(wl.arrival_s.max()))
        tokens = episode_bound(scen, seed, "slo_tokens_per_s", horizon_policy="fail") * 10.0
        want = price_per_s * span * 1e6 / tokens
        assert episode_lower_bound(scen, seed, "cost_per_1m_good_tokens_usd", horizon_policy="fail") == pytest.approx(want)


@pytest.mark.parametrize(("name", "over"), [
    ("small-route", {"horizon_s": 10.0}),
    ("small-route", {"horizon_s": 10.0, "cluster.idle_power": False}),
    ("hetero-route", {"horizon_s": 15.0}),
])
def test_energy_lower_bound_holds_for_every_router(name: str, over: dict) -> None:
    scen = load_scenario(name, over)
    cap = cluster_capacity(scen)
    for seed in (20_000, 20_001):
        lb_e = episode_lower_bound(scen, seed, "energy_per_good_request_j", cap)
        assert np.isfinite(lb_e) and lb_e > 0
        for pol in ("jsq", "round_robin", "least_finish", "jsq+ttft_guard"):
            s = Simulation(scen, seed=seed, router=pol).run()  # drained
            assert s["energy_per_good_request_j"] >= lb_e * (1 - 1e-9), (pol, seed)
            s = Simulation(replace_policy(scen, "fail"), seed=seed, router=pol).run()
            if s["energy_per_good_request_j"] is not None:
                assert s["energy_per_good_request_j"] >= lb_e * (1 - 1e-9), (pol, seed)


def test_energy_lower_bound_holds_for_the_allocation_baselines() -> None:
    scen = load_scenario("energy-allocate", {"horizon_s": 60.0})
    cap = cluster_capacity(scen)
    lb_e = episode_lower_bound(scen, 20_000, "energy_per_good_request_j", cap)
    for alloc in ("none", "static", "threshold"):  # the simulator's allocators
        s = Simulation(load_scenario("energy-allocate", {"horizon_s": 60.0, "allocator.name": alloc}), seed=20_000).run()
        assert s["energy_per_good_request_j"] >= lb_e * (1 - 1e-9), alloc


def test_energy_lower_bound_idle_power_alone_when_nothing_needs_compute() -> None:
    # With idle power counted, every run draws at least idle power x min(horizon, last
    # arrival), shared by at most every offered request (hand-computed); without it, less.
    scen = load_scenario("small-route", {"horizon_s": 10.0, "workload.rate_per_s": 5})
    wl = episode_workload(scen, 20_000)
    idle_w = 4 * get_gpu("h100-sxm").idle_w
    span = min(10.0, float(wl.arrival_s.max()))
    lb_e = episode_lower_bound(scen, 20_000, "energy_per_good_request_j")
    assert lb_e >= idle_w * span / wl.arrival_s.size
    no_idle = load_scenario("small-route", {"horizon_s": 10.0, "workload.rate_per_s": 5, "cluster.idle_power": False})
    assert episode_lower_bound(no_idle, 20_000, "energy_per_good_request_j") < lb_e


def test_energy_lower_bound_refuses_colocated_instances() -> None:
    with pytest.raises(UserError, match="colocated"):
        episode_lower_bound(load_scenario("colocated-baseline", {"horizon_s": 5.0}), 20_000, "energy_per_good_request_j")


def test_cli_writes_the_primary_lower_bound_of_cost_configs(tmp_path: Path) -> None:
    out = tmp_path / "bounds.csv"
    assert main(["bounds", "--config", "hybrid-cost-route", "--seeds", "1", "--out", str(out)]) == 0
    rows = {r["metric"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"slo_tokens_per_s", "goodput_rps", "cost_per_1m_good_tokens_usd"}
    assert rows["cost_per_1m_good_tokens_usd"]["method"].startswith("lower bound")
    assert 0 < float(rows["cost_per_1m_good_tokens_usd"]["upper_bound"]) < 1


def replace_policy(scen, policy: str):  # noqa: ANN001, ANN201
    from dataclasses import replace

    return replace(scen, horizon_policy=policy)


def test_a_workload_arriving_all_at_once_has_no_window_to_divide_by(tmp_path: Path) -> None:
    # was a ZeroDivisionError traceback (a finite trace, or a cap, whose arrivals are all at t = 0)
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 100, "output_length": 5}\n' * 3)
    scen = load_scenario("small-route", {"horizon_s": 10.0, "workload": {"kind": "trace", "trace_path": str(trace)}})
    with pytest.raises(UserError, match="every request arrives at t = 0, so a per-second bound has no arrival window"):
        episode_bound(scen, 0, "slo_tokens_per_s")


def test_every_config_by_default_skips_a_trace_that_is_not_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # away from ../shared (a core install), the default "every config" stopped at the first
    # trace config (azure-trace-route, alphabetically first) and wrote nothing
    import disagg_gym.bounds as bounds_mod

    monkeypatch.setattr(bounds_mod, "standard_names", lambda: ["mooncake-cache-route", "small-route"])
    monkeypatch.chdir(tmp_path)  # ../shared/data/traces does not resolve from here
    out = tmp_path / "b.csv"
    assert main(["bounds", "--seeds", "1", "--metric", "slo_tokens_per_s", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: mooncake-cache-route skipped: its trace ../shared/data/traces/" in err
    assert [r["config"] for r in csv.DictReader(out.open())] == ["small-route"]
    # named explicitly, a missing trace is still an error
    assert main(["bounds", "--seeds", "1", "--config", "mooncake-cache-route", "--out", str(tmp_path / "c.csv")]) == 2
