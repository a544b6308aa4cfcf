"""The benchmark command's pieces run and report sane, self-consistent figures (not timings)."""

from __future__ import annotations

from disagg_gym import bench


def test_env_and_simulate_measurements() -> None:
    r = bench.bench_env("disagg/SmallRoute-v2", seconds=0.2)
    assert r["decisions"] > 0 and r["decisions_per_s"] > 0 and r["instances"] == 4
    s = bench.bench_simulate(instances=8, rate_mult=1.0, horizon_s=60.0, router="round_robin")
    assert s["requests"] > 200
    assert s["x_real_time"] == s["simulated_s"] / s["wall_s"]
    assert s["requests_per_wall_s"] == s["requests"] / s["wall_s"]


def test_isolated_run_reports_peak_memory_and_errors() -> None:
    r = bench.run_isolated("bench_cartpole", seconds=0.1)
    assert r["steps"] > 0 and r["peak_rss_mb"] > 10
    bad = bench.run_isolated("bench_env", env_id="disagg/Nope-v0", seconds=0.1)
    assert "error" in bad


def test_markdown_table() -> None:
    res = {
        "machine": bench.machine(),
        "cartpole": {"steps_per_s": 100000.0},
        "envs": {"disagg/SmallRoute-v2": {"instances": 4, "decisions_per_s": 20000.0, "ratio_to_cartpole": 0.2, "peak_rss_mb": 80.0}},
        "simulate": [{"instances": 8, "rate_mult": 1, "requests": 20000, "wall_s": 2.0, "requests_per_wall_s": 10000.0,
                      "x_real_time": 1800.0, "us_per_request": 100.0, "peak_rss_mb": 90.0}],
        "ppo": {"train_steps_per_s": 500.0, "peak_rss_mb": 300.0},
    }
    md = bench.to_markdown(res)
    assert "| disagg/SmallRoute-v2 | 4 | 20,000 | 0.200 | 80.0 |" in md
    assert "| 8 | 1 | 20,000 | 2.00 | 10,000 | 1,800 | 100.0 | 90.0 |" in md


def test_env_measurement_takes_make_kwargs() -> None:
    r = bench.bench_env("disagg/EnergyAllocate-v2", seconds=0.2, kwargs={"control_interval_s": 0.25, "horizon_s": 5.0})
    assert r["decisions"] > 0 and r["instances"] == 8
    assert bench.FINE_CONTROL_INTERVALS_S and all(0 < ci < 10 for ci in bench.FINE_CONTROL_INTERVALS_S)
