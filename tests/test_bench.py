"""The benchmark command's pieces run and report sane, self-consistent figures (not timings)."""

from __future__ import annotations

import os

import pytest

from disagg_gym import bench


def test_env_and_simulate_measurements() -> None:
    r = bench.bench_env("disagg/SmallRoute-v3", seconds=0.2)
    assert r["decisions"] > 0 and r["decisions_per_s"] > 0 and r["instances"] == 4
    s = bench.bench_simulate(instances=8, rate_mult=1.0, horizon_s=60.0, router="round_robin")
    assert s["requests"] > 200
    assert s["x_real_time"] == s["simulated_s"] / s["wall_s"]
    assert s["requests_per_wall_s"] == s["requests"] / s["wall_s"]


def test_isolated_run_reports_peak_memory_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    r = bench.run_isolated("bench_cartpole", seconds=0.1)
    assert r["steps"] > 0 and r["peak_rss_mb"] > 10
    # the child ran with one BLAS thread; the caller's environment is left as it was
    assert r["openblas_threads"] == "1"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    bad = bench.run_isolated("bench_env", env_id="disagg/Nope-v0", seconds=0.1)
    assert "error" in bad
    assert "OPENBLAS_NUM_THREADS" not in os.environ


def test_markdown_table() -> None:
    res = {
        "machine": bench.machine(),
        "cartpole": {"steps_per_s": 100000.0},
        "envs": {"disagg/SmallRoute-v3": {"instances": 4, "decisions_per_s": 20000.0, "ratio_to_cartpole": 0.2, "peak_rss_mb": 80.0}},
        "simulate": [{"instances": 8, "rate_mult": 1, "requests": 20000, "wall_s": 2.0, "requests_per_wall_s": 10000.0,
                      "x_real_time": 1800.0, "us_per_request": 100.0, "peak_rss_mb": 90.0}],
        "ppo": {"train_steps_per_s": 500.0, "peak_rss_mb": 300.0},
    }
    md = bench.to_markdown(res)
    assert "| disagg/SmallRoute-v3 | 4 | 20,000 | 0.200 | 80.0 |" in md
    assert "| 8 | 1 | 20,000 | 2.00 | 10,000 | 1,800 | 100.0 | 90.0 |" in md


def test_scenario_run_counts_every_request_of_the_config() -> None:
    """The whole-config run simulates what ``Simulation.run()`` does (same request count)."""
    from dataclasses import replace

    from disagg_gym.scenario import load_scenario
    from disagg_gym.simulation import Simulation

    r = bench.bench_scenario("small-route", horizon_s=5.0)
    want = Simulation(replace(load_scenario("small-route"), horizon_s=5.0), keep_records=False).run()
    assert r["requests"] == want["requests_total"] > 0 and r["prefix_cache"] is True
    assert r["requests_per_wall_s"] == pytest.approx(r["requests"] / r["wall_s"])
    md = bench.to_markdown({"machine": bench.machine(), "cartpole": {"steps_per_s": 1.0}, "envs": {}, "simulate": [],
                            "scenarios": [dict(r, peak_rss_mb=1.0)], "ppo": {}})
    assert f"| small-route | on | {r['requests']:,} |" in md


def test_env_measurement_takes_make_kwargs() -> None:
    r = bench.bench_env("disagg/EnergyAllocate-v3", seconds=0.2, kwargs={"control_interval_s": 0.25, "horizon_s": 5.0})
    assert r["decisions"] > 0 and r["instances"] == 8
    assert bench.FINE_CONTROL_INTERVALS_S and all(0 < ci < 10 for ci in bench.FINE_CONTROL_INTERVALS_S)


def test_progress_lines_count_and_estimate_time_left() -> None:
    # fake clock and runs: budgets 10, 30, 60 s; the run takes twice its budgets (20, 80, 200 s)
    ticks = iter([0.0, 20.0, 80.0, 200.0])
    lines: list[str] = []
    got: list[dict] = []
    plan = [bench.Measurement("f", {"i": i}, b, lambda r: (got.append(r), f"m{r['i']}")[1])
            for i, b in enumerate((10.0, 30.0, 60.0))]
    bench.run_plan(plan, lines.append, run=lambda fn, **kw: dict(kw), clock=lambda: next(ticks))
    assert [r["i"] for r in got] == [0, 1, 2]
    # after 1: elapsed 20 s for 10 s of budget -> 90 s of budget left x 2 = 180 s = 3 min
    # after 2: elapsed 80 s for 40 s of budget -> 60 s left x 2 = 120 s = 2 min
    assert lines == [
        "[1/3] m0; elapsed 20 s, about 3 min left",
        "[2/3] m1; elapsed 80 s, about 2 min left",
        "[3/3] m2; elapsed 3 min, done",
    ]


def test_tiny_bench_run_prints_numbered_lines(capsys) -> None:  # type: ignore[no-untyped-def]
    out: list[dict] = []
    plan = [bench.Measurement("bench_cartpole", {"seconds": 0.05}, 1.0, lambda r: (out.append(r), "cartpole")[1])
            for _ in range(2)]
    bench.run_plan(plan, print)
    lines = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(r["steps"] > 0 for r in out)
    assert lines[0].startswith("[1/2] cartpole; elapsed ") and lines[0].endswith(" left")
    assert lines[1].startswith("[2/2] cartpole; elapsed ") and lines[1].endswith(", done")


def test_duration_wording() -> None:
    assert [bench.duration(s) for s in (0.4, 40, 89, 120, 5399, 5400, 9000)] == [
        "0 s", "40 s", "89 s", "2 min", "90 min", "1.5 h", "2.5 h"]
    assert bench.eta_s(0.0, 0.0, 50.0) == 50.0  # nothing done yet: the budget itself


def test_bench_imports_no_progress_library() -> None:
    import subprocess
    import sys

    code = "import sys, disagg_gym.bench; print(sorted(m for m in ('tqdm', 'rich') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_run_bench_numbers_every_measurement(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # the whole plan with stand-in measurements (the real ones take minutes)
    import re

    fake = {"steps_per_s": 1000.0, "steps": 1, "decisions_per_s": 100.0, "decisions": 1, "episodes": 0,
            "instances": 4, "peak_rss_mb": 1.0, "requests": 10, "wall_s": 1.0, "requests_per_wall_s": 10.0,
            "x_real_time": 5.0, "simulated_s": 5.0, "us_per_request": 1.0, "train_steps_per_s": 9.0,
            "prefix_cache": True}
    for quick in (False, True):
        calls: list[str] = []
        monkeypatch.setattr(bench, "run_isolated", lambda fn, calls=calls, **kw: (calls.append(fn), dict(fake))[1])
        res = bench.run_bench(quick=quick)
        lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
        n = len(calls)
        assert n == (1 + len(res["envs"]) + len(res["simulate"]) + len(res["scenarios"])
                     + (1 if "train_steps_per_s" in res["ppo"] else 0))
        assert [r["config"] for r in res["scenarios"]] == list(bench.SCENARIO_RUNS)
        assert [re.match(r"\[(\d+)/(\d+)\]", ln).groups() for ln in lines] == [(str(k), str(n)) for k in range(1, n + 1)]
        assert res["cartpole"]["steps_per_s"] == 1000.0
        if quick:  # a smoke test: one measurement of each kind
            assert len(res["simulate"]) == 1 and list(res["envs"]) == ["disagg/SmallRoute-v3", "disagg/EnergyAllocate-v3"]
        else:
            assert len(res["simulate"]) == 9 and len(res["envs"]) > 15
