"""Issue #15's leaderboard protocol: generalisation splits, the manifest of expected cells,
paired statistics in the tables, and old results files without a ``split`` column."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("stable_baselines3")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra

import csv
import json
from pathlib import Path

from disagg_gym.cli import main
from disagg_gym.config import ConfigError
from disagg_gym.env.registration import registered_ids
from disagg_gym.scenario import load_scenario, resolve_path
from disagg_gym_agents import leaderboard as lb
from disagg_gym_agents.base import make_env
from disagg_gym_agents.evaluation import run_episode
from disagg_gym_agents.factory import make_policy

ENV = "disagg/SmallRoute-v3"
SHORT = {"horizon_s": 3}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]], drop: tuple[str, ...] = ()) -> None:
    cols = [c for c in rows[0] if c not in drop]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lb15")
    lb.benchmark(d, [ENV], ["jsq", "round_robin"], episodes=2, overrides=SHORT, progress=False,
                 plots=False)
    return d


# ------------------------------------------------------------------- splits in the configs
def test_every_standard_config_has_a_test_split_and_two_shifts() -> None:
    for env_id in registered_ids():
        splits = lb.splits_of(env_id)
        assert splits[0] == "test" and len(splits) >= 3, (env_id, splits)
        assert all(s.startswith("shift:") for s in splits[1:])


def test_load_shifts_change_the_rate_by_20_percent() -> None:
    for env_id in registered_ids():
        w = make_env(env_id).unwrapped.scenario.workload
        key = "rate_scale" if w.kind == "trace" else "rate_per_s"  # a trace is replayed faster
        base = getattr(w, key)
        up = lb.split_overrides(env_id, "shift:load_up_20")[f"workload.{key}"]
        down = lb.split_overrides(env_id, "shift:load_down_20")[f"workload.{key}"]
        assert up == pytest.approx(1.2 * base) and down == pytest.approx(0.8 * base), env_id
    assert lb.split_overrides(ENV, "test") == {}
    with pytest.raises(ValueError, match="unknown split 'shift:nope'"):
        lb.split_overrides(ENV, "shift:nope")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("evaluation: {splitz: 1}", "key 'evaluation.splitz': unknown key"),
        ("evaluation: {shifts: {Bad: {description: x, overrides: {horizon_s: 2}}}}",
         "key 'evaluation.shifts.Bad': a shift name is lower-case"),
        ("evaluation: {shifts: {up: {description: x, overrides: {}}}}",
         "key 'evaluation.shifts.up.overrides': a shift needs at least one override"),
        ("evaluation: {shifts: {up: {description: x, overrides: {workload.rate_per_z: 3}}}}",
         "key 'evaluation.shifts.up.overrides': key 'workload.rate_per_z': unknown key"),
        ("evaluation: {shifts: {up: {description: x, overrides: {workload.rate_per_s: -3}}}}",
         "key 'evaluation.shifts.up.overrides': key 'workload.rate_per_s'"),
        ("evaluation: {episodes: 3}", "key 'evaluation.episodes': unknown key"),
    ],
)
def test_bad_evaluation_section_is_one_line(tmp_path: Path, section: str, message: str) -> None:
    text = resolve_path("small-route").read_text()
    text = text[: text.index("evaluation:")] + section + "\n"
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(p))
    assert message in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------- benchmark over splits
def test_benchmark_runs_every_split_and_records_it(out: Path) -> None:
    rows = _rows(out / "results.csv")
    got = sorted((r["split"], r["agent"], r["eval_seed"]) for r in rows)
    splits = ["shift:load_down_20", "shift:load_up_20", "test"]
    assert got == sorted((s, a, str(e)) for s in splits for a in ("jsq", "round_robin")
                         for e in (10_000, 10_001))
    assert all(r["overrides"] == json.dumps(SHORT, sort_keys=True) for r in rows)


def test_shifted_row_is_the_config_with_the_shift_applied(out: Path) -> None:
    # Oracle: run the episode by hand on the config with the +20% rate written out.
    row = next(r for r in _rows(out / "results.csv")
               if r["split"] == "shift:load_up_20" and r["agent"] == "jsq" and r["eval_seed"] == "10000")
    env = make_env(ENV, {**SHORT, "workload.rate_per_s": 74.4})  # 62 x 1.2
    kpis = run_episode(make_policy("heuristic:jsq", env, seed=0), env, 10_000, deterministic=True)
    assert float(row["requests_total"]) == kpis["requests_total"]
    assert float(row["goodput_rps"]) == pytest.approx(kpis["goodput_rps"], rel=1e-12)
    test_row = next(r for r in _rows(out / "results.csv")
                    if r["split"] == "test" and r["agent"] == "jsq" and r["eval_seed"] == "10000")
    assert float(test_row["requests_total"]) < float(row["requests_total"])


def test_splits_flag_restricts_and_unknown_split_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lb.benchmark(tmp_path, [ENV], ["jsq"], episodes=1, overrides=SHORT, progress=False,
                 plots=False, splits=["shift:load_down_20"])
    assert [r["split"] for r in _rows(tmp_path / "results.csv")] == ["shift:load_down_20"]
    rc = main(["benchmark", "--configs", ENV, "--agents", "jsq", "--out", str(tmp_path / "x"),
               "--splits", "shift:nope", "--no-progress", "--no-plots"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("disagg-gym: error: --splits: no config defines split 'shift:nope'")


def test_markdown_shows_each_split(out: Path) -> None:
    md = (out / "LEADERBOARD.md").read_text()
    for s in ("test", "shift:load_up_20", "shift:load_down_20"):
        assert f"## {ENV} ({s})" in md
        assert f"| `{ENV}` | {s} |" in md


# ------------------------------------------------------------------- manifest and omissions
def test_manifest_lists_the_expected_cells(out: Path) -> None:
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == 1 and len(m["cells"]) == 6
    assert {(c["split"], c["agent"], tuple(c["eval_seeds"])) for c in m["cells"]} == {
        (s, a, (10_000, 10_001))
        for s in ("test", "shift:load_up_20", "shift:load_down_20") for a in ("jsq", "round_robin")
    }


def test_a_bad_override_fails_before_the_manifest_owes_its_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the manifest recorded the cells of `--set nokey=1` before the first cell failed on it, so
    # `validate` of that folder then reported them missing for good
    rc = main(["benchmark", "--configs", ENV, "--agents", "jsq", "--out", str(tmp_path), "--set", "nokey=1",
               "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == ("disagg-gym: error: config small-route with overrides: key 'nokey': unknown key; "
                           "expected one of: name, cluster, workload, description, task, horizon_s, max_requests, "
                           "seed, router, allocator, primary_metric, admission, horizon_policy, version, env, "
                           "variants, evaluation")
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "results.csv").exists()


def test_more_episodes_than_held_out_seeds_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # episode 10000 on would have run on the validation seeds 20000+ (and --episodes 1e9 built a
    # list of a billion seeds first: MemoryError)
    rc = main(["benchmark", "--configs", ENV, "--agents", "jsq", "--out", str(tmp_path), "--episodes", "10001",
               "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == ("disagg-gym: error: episodes must be at most 10000, the held-out seeds 10000..19999 "
                           "(20000+ are the validation seeds) (got 10001)")
    assert not (tmp_path / "manifest.json").exists()


def test_validate_fails_on_a_missing_row(out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _rows(out / "results.csv")
    gone = next(r for r in rows if r["split"] == "shift:load_up_20" and r["agent"] == "round_robin"
                and r["eval_seed"] == "10001")
    _write(tmp_path / "results.csv", [r for r in rows if r is not gone])
    (tmp_path / "manifest.json").write_text((out / "manifest.json").read_text())
    assert lb.validate(tmp_path / "results.csv", progress=False) == []  # every row replays ...
    rc = main(["validate", str(tmp_path / "results.csv"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1  # ... but one is missing
    assert (f"MISSING config={ENV}, split=shift:load_up_20, agent=round_robin, train_seed=-, "
            f"overrides={json.dumps(SHORT, sort_keys=True)}: 1 of 2 expected episode(s) have no row "
            "(eval_seed 10001)") in err
    # The filter decides which expected cells count.
    assert main(["validate", str(tmp_path / "results.csv"), "--agents", "jsq", "--no-progress"]) == 0


def test_validate_without_a_manifest_says_so(out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "results.csv"
    p.write_text((out / "results.csv").read_text())
    rc = main(["validate", str(p), "--agents", "jsq", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (
        f"disagg-gym: error: {tmp_path / 'manifest.json'}: no manifest of expected cells beside "
        "results.csv, so missing rows cannot be detected (benchmark writes it; pass --no-manifest "
        "to only replay the rows)"
    )
    assert main(["validate", str(p), "--agents", "jsq", "--no-manifest", "--no-progress"]) == 0


def test_filters_matching_no_row_fail_in_one_line(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["validate", str(out / "results.csv"), "--configs", "disagg/X-v1", "disagg/Y-v1",
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (
        f"disagg-gym: error: --configs: no rows with config 'disagg/X-v1', 'disagg/Y-v1' in "
        f"{out / 'results.csv'} (it has: {ENV})"
    )


# ------------------------------------------------------------------- old files, statistics
def test_old_results_without_split_are_read_as_test(out: Path, tmp_path: Path) -> None:
    rows = [r for r in _rows(out / "results.csv") if r["split"] == "test"]
    _write(tmp_path / "results.csv", rows, drop=("split",))
    assert "split" not in (tmp_path / "results.csv").read_text().splitlines()[0]
    assert {r["split"] for r in lb.read_results(tmp_path / "results.csv")} == {"test"}
    assert lb.validate(tmp_path / "results.csv", progress=False) == []
    # Resuming such a file finds its test cells done and adds the column for new rows.
    lb.manifest_from_rows(tmp_path / "manifest.json", lb.read_results(tmp_path / "results.csv"))
    assert lb.check_omissions(tmp_path / "results.csv") == []
    todo = lb.missing_cells(tmp_path / "results.csv", lb.plan_cells([ENV], ["jsq"]),
                            [10_000, 10_001], SHORT)
    assert [c.split for c, _ in todo] == ["shift:load_up_20", "shift:load_down_20"]


def _synthetic(ratio_by_seed: dict[int, float]) -> list[dict[str, str]]:
    base = {"config": ENV, "split": "test", "primary_metric": "goodput_rps", "upper_bound": "False"}
    rows = []
    for s, ratio in ratio_by_seed.items():
        ref = 10.0 + s % 7  # a workload-seed effect shared by both policies
        rows.append({**base, "agent": "jsq", "agent_kind": "heuristic", "train_seed": "",
                     "eval_seed": str(s), "score": str(ref), "policy": "heuristic:jsq"})
        for ts in range(5):
            rows.append({**base, "agent": "ppo", "agent_kind": "sb3", "train_seed": str(ts),
                         "eval_seed": str(s), "score": str(ref * ratio), "policy": "sb3:x"})
    return rows


def test_summary_pairs_per_episode_and_says_win_only_above_1_01() -> None:
    seeds = range(10_000, 10_010)
    # 0.5% better on every episode: the workload effect cancels, the ratio is exactly 1.005 ...
    cs = lb.summarise(_synthetic({s: 1.005 for s in seeds}))[0]
    ppo = next(a for a in cs.agents if a.agent == "ppo")
    assert ppo.ci == pytest.approx((1.005, 1.005)) and ppo.prob_improvement == 1.0
    assert not ppo.win  # ... but below the 1.01 win threshold
    md = lb.render_markdown([cs], Path("."), {}, {})
    assert "| inconclusive (CI lower bound <= 1.01) |" in md
    assert "win (" not in md  # the verdict column never says win
    cs = lb.summarise(_synthetic({s: 1.05 for s in seeds}))[0]
    assert next(a for a in cs.agents if a.agent == "ppo").win
    assert "| win (CI lower bound > 1.01) |" in lb.render_markdown([cs], Path("."), {}, {})


# ------------------------------------------------- headline, bounds per split, Pareto plots
def test_pareto_front_matches_a_hand_computed_front() -> None:
    nan = float("nan")
    pts = [(0.0, 10.0), (5.0, 12.0), (3.0, 9.0), (5.0, 12.0), (10.0, 11.0), (nan, 20.0), (0.0, 8.0)]
    # (3, 9), (0, 8) are dominated by (0, 10); (10, 11) by (5, 12); index 3 duplicates 1; nan is out
    assert lb.pareto_front(pts) == [0, 1]
    assert lb.pareto_front([(2.0, 1.0), (1.0, 0.5)]) == [1, 0]  # a trade-off: both, by rejection


def _with_kpis(rows: list[dict[str, str]], rej: dict[str, float]) -> list[dict[str, str]]:
    return [{**r, "rejection_rate": str(rej[r["agent"]]), "goodput_rps": r["score"]} for r in rows]


def test_headline_states_bound_headroom_rejection_and_verdict() -> None:
    seeds = range(10_000, 10_010)
    rows = _with_kpis(_synthetic({s: 1.05 for s in seeds}), {"jsq": 0.02, "ppo": 0.125})
    cs = lb.summarise(rows)[0]
    # jsq's goodput on seeds 10000..10009 is 10 + s % 7 = 14, 15, 16, 10, ..., 16: mean 13.6
    table = lb.headline_table([cs], {(ENV, "test"): 27.2})
    row = table.splitlines()[2].split(" | ")
    assert row[3] == "jsq (13.6)" and row[5] == "27.2" and row[6] == "0.500"  # 13.6 / 27.2
    assert row[7] == "2.0% / 12.5%" and row[-1].rstrip(" |") == "win"
    # no learned rows: says so; no bound: n/a
    cs_h = lb.summarise([r for r in rows if r["agent"] == "jsq"])[0]
    row = lb.headline_table([cs_h], {}).splitlines()[2].split(" | ")
    assert row[4] == lb.NOT_TRAINED and row[5] == row[6] == "n/a" and row[-1].rstrip(" |") == "not trained"
    assert lb.learning_verdict(lb.summarise(_synthetic({s: 0.9 for s in seeds}))[0]) == "loses"
    assert lb.learning_verdict(lb.summarise(_synthetic({s: 1.005 for s in seeds}))[0]) == "inconclusive"


def test_headline_headroom_of_a_lower_is_better_metric_is_bound_over_best() -> None:
    import dataclasses

    seeds = range(10_000, 10_010)
    rows = _with_kpis(_synthetic({s: 1.05 for s in seeds}), {"jsq": 0.02, "ppo": 0.125})
    cs = dataclasses.replace(lb.summarise(rows)[0], metric="cost_per_1m_good_tokens_usd")
    for a in cs.agents:
        a.kpis["cost_per_1m_good_tokens_usd"] = 0.08  # best heuristic's mean raw cost
    row = lb.headline_table([cs], {(ENV, "test"): 0.02}).splitlines()[2].split(" | ")
    assert row[5] == "0.02" and row[6] == "0.250"  # lower bound 0.02 / best 0.08


def test_split_bounds_equal_the_offered_load_when_underloaded(out: Path) -> None:
    # the goodput bound (requests / s): the same rows read as if their primary metric were goodput
    rows = [{**r, "primary_metric": "goodput_rps"} for r in lb.read_results(out / "results.csv")]
    bounds = lb.split_bounds(rows, SHORT)
    assert set(bounds) == {(ENV, s) for s in ("test", "shift:load_up_20", "shift:load_down_20")}
    # SmallRoute's 3-s episodes at 49.6 req/s: every request fits alone and capacity does not bind,
    # so the goodput bound is the number of arrivals / 3 s (the rows' requests_total)
    down = [r for r in rows if r["split"] == "shift:load_down_20" and r["agent"] == "jsq"]
    offered = sum(int(r["requests_total"]) for r in down) / len(down) / 3.0
    assert bounds[(ENV, "shift:load_down_20")] == pytest.approx(offered, rel=1e-6)
    for split in ("test", "shift:load_up_20", "shift:load_down_20"):  # it bounds every agent's mean
        for agent in ("jsq", "round_robin"):
            got = [float(r["goodput_rps"]) for r in rows if r["split"] == split and r["agent"] == agent]
            assert sum(got) / len(got) <= bounds[(ENV, split)] + 1e-9
    md = (out / "LEADERBOARD.md").read_text()
    assert "| bound | headroom (best / bound) | rejection rate (heuristic / learned) |" in md
    assert lb.NOT_TRAINED in md


def test_split_bounds_cache_reuses_only_the_same_computation(out: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from disagg_gym_agents.leaderboard import runner

    rows = lb.read_results(out / "results.csv")
    fresh = lb.split_bounds(rows, SHORT)
    cache = tmp_path / "bounds_cache.json"
    assert lb.split_bounds(rows, SHORT, cache=cache) == fresh and len(json.loads(cache.read_text())["bounds"]) == 3
    # the benchmark fixture kept one next to its results too, with the same values
    assert json.loads((out / "bounds_cache.json").read_text()) == json.loads(cache.read_text())

    def boom(*a: object, **k: object) -> float:
        raise AssertionError("recomputed a cached bound")

    monkeypatch.setattr(runner, "config_bound", boom)
    assert lb.split_bounds(rows, SHORT, cache=cache) == fresh  # every entry served from the file
    with pytest.raises(AssertionError, match="recomputed"):  # another scenario: a miss
        lb.split_bounds(rows, {"horizon_s": 2}, cache=cache)
    with pytest.raises(AssertionError, match="recomputed"):  # other simulator source: emptied
        monkeypatch.setattr(runner, "_simulator_digest", lambda: "another source")
        lb.split_bounds(rows, SHORT, cache=cache)
    cache.write_text("{not json")  # unreadable: ignored, recomputed and rewritten
    monkeypatch.undo()
    assert lb.split_bounds(rows, SHORT, cache=cache) == fresh
    assert len(json.loads(cache.read_text())["bounds"]) == 3


def test_bounds_cache_digest_covers_calibration_and_catalogs(tmp_path: Path, monkeypatch) -> None:
    """A recalibration (a .json / .yaml the simulator loads) or a change to the cluster
    invalidates the cache; the env adapter, the packaged configs, the routing / admission
    policies (the bounds run none) and byte-code do not."""
    import types

    from disagg_gym_agents.leaderboard import runner

    pkg = tmp_path / "disagg_gym"
    for rel, text in {"__init__.py": "", "sim/engine.py": "x = 1", "hardware/calibration.json": "{}",
                      "hardware/gpus.yaml": "a: 1", "env/core.py": "y = 2",
                      "configs/c.yaml": "z: 3", "cluster/policies.py": "r = 1",
                      "cluster/admission.py": "g = 1", "cluster/cluster.py": "c = 1", "cli.py": "m = 1",
                      "io.py": "w = 1", "wrappers/shaping.py": "s = 1"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    monkeypatch.setattr(runner, "disagg_gym", types.SimpleNamespace(__file__=str(pkg / "__init__.py")))
    base = runner._simulator_digest()
    for rel in ("env/core.py", "configs/c.yaml", "cluster/policies.py", "cluster/admission.py", "cli.py", "io.py",
                "wrappers/shaping.py"):
        (pkg / rel).write_text("changed")
    (pkg / "sim" / "engine.cpython-311.pyc").write_bytes(b"\0")
    assert runner._simulator_digest() == base
    for rel in ("hardware/calibration.json", "hardware/gpus.yaml", "sim/engine.py", "cluster/cluster.py"):
        before = runner._simulator_digest()
        (pkg / rel).write_text((pkg / rel).read_text() + " ")
        assert runner._simulator_digest() != before, rel


def test_pareto_plot_per_config_is_written_and_linked(out: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    summary = lb.summarise(lb.read_results(out / "results.csv"))
    files = lb.make_pareto_plots(summary, tmp_path / "plots")
    name = lb.env_name(ENV)
    png = tmp_path / "plots" / f"{name}_pareto.png"
    assert files == {ENV: [png]} and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = lb.render_markdown(summary, tmp_path, files, SHORT)
    assert f"![{name}_pareto](plots/{name}_pareto.png)" in md
