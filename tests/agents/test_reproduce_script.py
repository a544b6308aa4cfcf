"""scripts/reproduce_leaderboard.sh: one command, resumable (a rerun runs nothing new), flags checked."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reproduce_leaderboard.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)


@pytest.mark.slow  # four CLI processes
def test_reproduce_runs_benchmark_and_validate_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "lb"
    args = ("--out", str(out), "--no-train", "--no-tune", "--configs", "disagg/SmallRoute-v3", "--",
            "--agents", "jsq", "--episodes", "1", "--splits", "test", "--set", "horizon_s=2",
            "--no-plots", "--no-progress")
    first = _run(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "validate: OK, 1 row(s)" in first.stdout
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["agent"], r["split"], r["eval_seed"]) for r in rows] == [("jsq", "test", "10000")]
    assert (out / "manifest.json").is_file()
    before = (out / "results.csv").read_bytes()
    second = _run(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (out / "results.csv").read_bytes() == before  # nothing re-run, nothing appended
    assert "validate: OK, 1 row(s)" in second.stdout
    # each invocation appends its stages' wall times (seconds since it started, never falling)
    stages = ["start", "training+tuning+bounds", "benchmark", "tables", "validate"]
    log = [line.split() for line in (out / "timings.log").read_text().splitlines()]
    assert [x[1] for x in log] == stages * 2
    for run in (log[:5], log[5:]):
        secs = [int(x[2]) for x in run]
        assert secs == sorted(secs)
    assert "reproduce_leaderboard: validate done after 0 h " in second.stderr


def test_dry_run_lists_training_per_seed_and_ray_backend(tmp_path: Path) -> None:
    r = _run("--out", str(tmp_path), "--backend", "ray", "--seeds", "0 1", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("+ ")]
    assert sum("scripts/train_leaderboard.py --seeds 0 " in ln for ln in lines) == 1
    assert sum("scripts/train_leaderboard.py --seeds 1 " in ln for ln in lines) == 1
    bench = [ln for ln in lines if " benchmark " in ln]
    # Ray schedules the cells: one call, plus the no-reject ablation on its own env, plus one
    # call per config with compositions tuned for it alone (one at a time)
    comps = [ln for ln in bench if "llmd_scorer+ttft_guard" in ln]
    assert len(comps) == 3 and all("--backend ray" in ln and " heuristics " not in ln for ln in comps)
    bench = [ln for ln in bench if ln not in comps]
    assert len(bench) == 2
    ablation, main = bench
    assert "--set env.allow_reject=false" in ablation and "sb3:maskable_ppo_noreject=" in ablation
    assert "--backend ray" in main and f"sb3:maskable_ppo={tmp_path}/checkpoints" in main
    assert "jsq+ttft_guard least_finish+ttft_guard jsq+queue_guard" in main
    assert f"sb3:maskable_ppo_noprior={tmp_path}/checkpoints-ablation-noprior" in main
    assert f"--tuned {tmp_path}/tuned.yaml" in main
    assert f"validate {tmp_path}/results.csv --configs" in lines[-1]


def test_dry_run_retunes_every_committed_search_on_validation_seeds(tmp_path: Path) -> None:
    from disagg_gym_agents.tuning import read_tuned

    r = _run("--out", str(tmp_path), "--no-train", "--dry-run")
    assert r.returncode == 0, r.stderr
    tunes = [ln.split() for ln in r.stderr.splitlines() if ln.startswith("+ ") and " tune-baselines " in ln]
    committed = read_tuned(ROOT / "leaderboard" / "tuned.yaml")
    expected = {(c, p, e["metric"], str(len(e["seeds"])), str(e.get("split_step", 1)), bool(e.get("refine")))
                for c, ps in committed.items() for p, e in ps.items()}
    got = {(a[a.index("--config") + 1], a[a.index("--policy") + 1], a[a.index("--metric") + 1],
            a[a.index("--seeds") + 1], a[a.index("--split-step") + 1] if "--split-step" in a else "1",
            "--refine" in a) for a in tunes}
    assert got == expected and len(tunes) == len(expected)
    assert all(a[a.index("--out") + 1] == f"{tmp_path}/tuned.yaml" for a in tunes)
    no_tune = _run("--out", str(tmp_path), "--no-train", "--no-tune", "--dry-run")
    assert " tune-baselines " not in no_tune.stderr and "--tuned leaderboard/tuned.yaml" in no_tune.stderr


def test_dry_run_local_benchmark_runs_every_config_and_split_then_the_tables(tmp_path: Path) -> None:
    from disagg_gym.env.registration import registered_ids
    from disagg_gym_agents.leaderboard import splits_of

    r = _run("--out", str(tmp_path), "--no-train", "--dry-run")
    assert r.returncode == 0, r.stderr
    bench = [ln for ln in r.stderr.splitlines() if ln.startswith("+ ") and " benchmark " in ln]
    units = {(c, s) for c in registered_ids() for s in splits_of(c)}
    per_unit = [ln.split() for ln in bench[:-1] if " --splits " in ln]
    assert {(a[a.index("--configs") + 1], a[a.index("--splits") + 1]) for a in per_unit} == units
    assert len(per_unit) == len(units) and "--splits" not in bench[-1]  # last: tables and plots
    # then the compositions tuned for some configs only, on every split of those configs
    import yaml

    tuned = yaml.safe_load((ROOT / "leaderboard" / "tuned.yaml").read_text())
    base = {"jsq+ttft_guard", "least_finish+ttft_guard", "jsq+queue_guard"}
    want = {(c, p) for c, pols in tuned.items() for p in pols if "+" in p and p not in base}
    comp = [ln.split() for ln in bench[:-1] if " --splits " not in ln]
    got = set()
    for a in comp:
        agents = a[a.index("--agents") + 1:a.index("--backend")]
        got |= {(a[a.index("--configs") + 1], p) for p in agents}
    from disagg_gym_agents.leaderboard.cells import config_of

    assert {(config_of(c), p) for c, p in got} == want and len(want) >= 3


def test_dry_run_validates_a_sample_per_config_unless_all(tmp_path: Path) -> None:
    def validate_lines(*extra: str) -> list[list[str]]:
        r = _run("--out", str(tmp_path), "--no-train", "--no-tune", "--dry-run", *extra)
        assert r.returncode == 0, r.stderr
        return [ln.split() for ln in r.stderr.splitlines() if ln.startswith("+ ") and " validate " in ln]

    default = validate_lines()
    assert default and all(a[a.index("--sample") + 1] == "10" for a in default)
    assert all(a[a.index("--sample") + 1] == "3" for a in validate_lines("--validate-sample", "3"))
    assert all("--sample" not in a for a in validate_lines("--validate-sample", "all"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--out DIR is required"),
        (("--out", "x", "--backend", "slurm"), "--backend: expected local or ray (got 'slurm')"),
        (("--out", "x", "--jobs", "0"), "--jobs: expected a positive integer (got '0')"),
        (("--out", "x", "--seeds", "a"), "--seeds: expected non-negative integers (got 'a')"),
        (("--out", "x", "--frobnicate"), "unknown option '--frobnicate'"),
        (("--out", "x", "--validate-sample", "0"), "--validate-sample: expected a positive integer or 'all' (got '0')"),
        (("--out", "x", "--seeds", " "), "--seeds: expected at least one seed (got ' ')"),
        (("--out", "x", "--configs", ""), "--configs: expected at least one env id (got '')"),
        (("--out", "x", "--configs", "disagg/Nope-v1"), "'disagg/Nope-v1' is not a standard config or env id (see `disagg-gym list`)"),
        (("--out", "x", "--", "--episodes", "x"),
         "benchmark options after --: argument --episodes: invalid int value: 'x'"),
        (("--out", "x", "--", "--frobnicate"), "benchmark options after --: unrecognized arguments: --frobnicate"),
        # values too, not only the syntax (they failed hours later, at the benchmark stage)
        (("--out", "x", "--", "--set", "nokey"),
         "benchmark options after --: override 'nokey': expected KEY=VALUE, e.g. workload.rate_per_s=30"),
        (("--out", "x", "--", "--episodes", "0"), "benchmark options after --: --episodes must be a positive integer (got 0)"),
        (("--out", "x", "--", "--out", ""), "benchmark options after --: argument --out: empty value (an unset shell variable?)"),
    ],
)
def test_bad_flags_are_one_line(args: tuple[str, ...], message: str) -> None:
    r = _run(*args)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"reproduce_leaderboard: {message} (see --help)"
                                                                    if "unknown" in message else
                                                                    f"reproduce_leaderboard: {message}"]


@pytest.mark.parametrize("sub", ["", "sub"])
def test_an_out_path_under_a_file_is_one_line_before_any_work(tmp_path: Path, sub: str) -> None:
    f = tmp_path / "file"
    f.write_text("")
    out = f / sub if sub else f
    r = _run("--out", str(out), "--no-train", "--no-tune", "--configs", "disagg/SmallRoute-v3")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"reproduce_leaderboard: --out '{out}': "), lines
    assert f.read_text() == ""


def test_dry_run_pool_one_trains_tunes_and_bounds_before_any_benchmark(tmp_path: Path) -> None:
    from disagg_gym.env.registration import registered_ids

    r = _run("--out", str(tmp_path), "--seeds", "0 1", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("+ ")]
    first_bench = next(i for i, ln in enumerate(lines) if " benchmark " in ln)
    pool1 = lines[:first_bench]
    train = [i for i, ln in enumerate(pool1) if "train_leaderboard.py" in ln]
    tune = [i for i, ln in enumerate(pool1) if " tune-baselines " in ln]
    bounds = [ln.split() for ln in pool1 if ".reproduce bounds " in ln]
    assert len(train) == 4 and tune and max(train) < min(tune)  # 2 seeds + 2 ablations, then the searches
    assert sorted(a[a.index("bounds") + 2] for a in bounds) == sorted(registered_ids())
    assert all(a[a.index("bounds") + 1] == str(tmp_path) for a in bounds)
    # the costliest benchmark unit is started first
    assert "--configs disagg/LargeJoint-v3 --splits test " in lines[first_bench]


def test_configs_takes_config_names_and_runs_their_ids() -> None:
    # `--configs small-route` said "'small-route' is not a standard config"
    r = subprocess.run(["bash", str(SCRIPT), "--out", "x", "--configs", "small-route", "--dry-run"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "--configs disagg/SmallRoute-v3" in r.stderr and "--configs small-route" not in r.stderr
