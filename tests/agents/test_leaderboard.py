"""Tests of the leaderboard: benchmark, resume, validate (and tampering), IQM and bootstrap CIs."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("stable_baselines3")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra
pytest.importorskip("matplotlib")  # the [plots] extra

import argparse
import csv
from pathlib import Path

import numpy as np

from disagg_gym_agents import leaderboard as lb

ENV = "disagg/SmallRoute-v3"
SHORT = {"horizon_s": 4}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lb")
    return lb.benchmark(
        out, [ENV], ["jsq", "round_robin"], episodes=1, overrides=SHORT, progress=False,
        splits=["test"],
    )


# ---------------------------------------------------------------- benchmark
def test_benchmark_writes_rows_report_and_plots(results: Path) -> None:
    rows = _rows(results)
    assert [(r["config"], r["agent"]) for r in rows] == [(ENV, "jsq"), (ENV, "round_robin")]
    for col in ("config", "agent", "train_seed", "eval_seed", "score", "policy", "env_version",
                "package_version", "overrides", "goodput_rps", "ttft_p99_s"):
        assert col in rows[0]
    r = rows[0]
    assert r["eval_seed"] == str(lb.EVAL_SEED_OFFSET) and r["train_seed"] == ""
    # SmallRoute-v3's primary metric is slo_tokens_per_s (issue #15): the score is the metric itself
    assert r["primary_metric"] == "slo_tokens_per_s"
    assert float(r["score"]) == float(r["slo_tokens_per_s"])
    md = (results.parent / "LEADERBOARD.md").read_text()
    assert f"## {ENV} (test)" in md and "1.000 [1.000, 1.000]" in md
    assert [r["split"] for r in rows] == ["test", "test"]
    plots = results.parent / "plots"
    assert (plots / "scores.png").is_file()
    assert (plots / "SmallRoute-v3_pareto.png").is_file()  # goodput vs rejection of every agent
    assert "![SmallRoute-v3_pareto](plots/SmallRoute-v3_pareto.png)" in md
    assert (plots / "SmallRoute-v3_latency_cdf.png").is_file()
    assert (plots / "SmallRoute-v3_timeline.png").is_file()


def test_resume_skips_finished_cells(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "results.csv"
    copy.write_text(results.read_text())
    ran: list[tuple[str, list[int]]] = []
    real = lb.run_cell

    def spy(cell: lb.Cell, seeds: list[int], overrides: dict, **kw: object) -> list[dict]:
        ran.append((cell.agent, list(seeds)))
        return real(cell, seeds, overrides, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(lb.runner, "run_cell", spy)  # what benchmark() calls
    lb.benchmark(tmp_path, [ENV], ["jsq", "round_robin", "p2c"], episodes=2, overrides=SHORT,
                 plots=False, progress=False, splits=["test"])
    s1 = lb.EVAL_SEED_OFFSET + 1
    assert ran == [("jsq", [s1]), ("round_robin", [s1]), ("p2c", [lb.EVAL_SEED_OFFSET, s1])]
    assert len(_rows(copy)) == 6
    ran.clear()
    lb.benchmark(tmp_path, [ENV], ["jsq", "round_robin", "p2c"], episodes=2, overrides=SHORT,
                 plots=False, progress=False, splits=["test"])
    assert ran == []  # everything done: nothing re-run
    assert len(_rows(copy)) == 6


def test_a_resumed_cell_numbers_its_episodes_by_seed(tmp_path: Path) -> None:
    # growing a run from 1 to 2 episodes wrote seed 10001's row as episode 0 (as a fresh
    # 2-episode run would not): the episode is the seed's position in the cell's seed list
    for n in (1, 2):
        lb.benchmark(tmp_path, [ENV], ["jsq"], episodes=n, overrides=SHORT, plots=False, progress=False,
                     splits=["test"])
    rows = _rows(tmp_path / "results.csv")
    assert [(int(r["eval_seed"]), int(r["episode"])) for r in rows] == [
        (lb.EVAL_SEED_OFFSET, 0), (lb.EVAL_SEED_OFFSET + 1, 1)]


def test_cells_only_runs_cells_and_writes_no_report(tmp_path: Path) -> None:
    results = lb.benchmark(tmp_path, [ENV], ["jsq"], episodes=1, overrides=SHORT, progress=False,
                           splits=["test"], tables=False)
    assert [r["agent"] for r in _rows(results)] == ["jsq"]
    assert not (tmp_path / "LEADERBOARD.md").exists() and not (tmp_path / "plots").exists()
    assert not (tmp_path / lb.runner.BOUNDS_CACHE).exists()
    lb.benchmark(tmp_path, [ENV], ["jsq"], episodes=1, overrides=SHORT, progress=False, plots=False,
                 splits=["test"])  # a later call without it writes the report, running nothing
    assert len(_rows(results)) == 1 and (tmp_path / "LEADERBOARD.md").is_file()


def test_inapplicable_heuristic_is_skipped() -> None:
    cells = lb.plan_cells([ENV], ["static_ratio", "heuristics"], ["test"])
    names = [c.agent for c in cells]
    assert "static_ratio" not in names and "length_oracle" in names
    assert [c.upper_bound for c in cells if c.agent == "length_oracle"] == [True]
    with pytest.raises(ValueError):
        lb.plan_cells([ENV], ["no_such_heuristic"])


# ---------------------------------------------------------------- validate
def test_validate_passes(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lb.validate(results, progress=False) == []
    ns = argparse.Namespace(results=str(results), configs=None, agents=None, no_progress=True)
    assert lb.cmd_validate(ns) == 0
    assert "OK, 2 row(s)" in capsys.readouterr().out


def test_tampered_row_fails_naming_row_and_kpi(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _rows(results)
    rows[1]["ttft_p99_s"] = repr(float(rows[1]["ttft_p99_s"]) * (1 + 1e-6))
    bad = tmp_path / "results.csv"
    with bad.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "manifest.json").write_text((results.parent / "manifest.json").read_text())
    errors = lb.validate(bad, progress=False)
    assert len(errors) == 1
    assert f"{bad}:3 " in errors[0] and "agent=round_robin" in errors[0]
    assert "KPI ttft_p99_s recorded" in errors[0]
    ns = argparse.Namespace(results=str(bad), configs=None, agents=None, no_progress=True)
    assert lb.cmd_validate(ns) == 1
    assert "ttft_p99_s" in capsys.readouterr().err


def _write_csv(path: Path, rows: list[dict[str, str]], cols: list[str]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def test_validate_reports_a_version_a_dropped_kpi_and_an_extra_kpi(results: Path, tmp_path: Path) -> None:
    # Three tamperings of a file that replays: each must be named, on the rows it touches only.
    rows = _rows(results)
    cols = list(rows[0])
    bad = tmp_path / "results.csv"
    v = rows[1]["env_version"]
    _write_csv(bad, [rows[0], {**rows[1], "env_version": "99"}], cols)
    assert lb.validate(bad, progress=False) == [
        f"{bad}:3 (config={ENV}, split=test, agent=round_robin, train_seed=-, eval_seed=10000): "
        f"cannot replay: env version 99 != id {ENV}"
    ] and v == "3"
    _write_csv(bad, rows, [c for c in cols if c != "goodput_rps"])  # the replay has it, the rows not
    errors = lb.validate(bad, progress=False)
    assert len(errors) == 2 and all("KPI goodput_rps missing from the row (replay: " in e for e in errors)
    _write_csv(bad, [{**rows[0], "made_up_kpi": "1.5"}, {**rows[1], "made_up_kpi": ""}], [*cols, "made_up_kpi"])
    (err,) = lb.validate(bad, progress=False)  # an empty cell is no claim
    assert err.startswith(f"{bad}:2 ") and err.endswith("KPI made_up_kpi recorded 1.5 but replay has none")


def test_validate_reports_a_changed_checkpoint(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from disagg_gym_agents.base import make_env

    path = tmp_path / "model.zip"

    def save(seed: int) -> None:
        MaskablePPO("MlpPolicy", DummyVecEnv([lambda: make_env(ENV, SHORT)]), seed=seed,
                    policy_kwargs={"net_arch": [8]}, device="cpu").save(path)

    save(1)
    cell = lb.Cell(ENV, "ppo", "sb3", f"sb3:{path}", 0)
    res = tmp_path / "results.csv"
    lb.append_rows(res, lb.run_cell(cell, [lb.EVAL_SEED_OFFSET], {"horizon_s": 2}))
    assert lb.validate(res, progress=False) == []
    save(2)  # another model at the same path
    (err,) = lb.validate(res, progress=False)
    assert err.endswith(f"cannot replay: checkpoint {str(path)!r} has changed (SHA-256 mismatch)")
    path.unlink()
    (err,) = lb.validate(res, progress=False)
    assert err.endswith(f"cannot replay: checkpoint {str(path)!r} not found")


def test_validate_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        lb.validate(tmp_path / "nope.csv")


# ---------------------------------------------------------------- statistics
def test_iqm_hand_computed() -> None:
    assert lb.iqm([1, 2, 3, 4, 100]) == 3.0  # int(1.25) = 1 cut per side: mean(2, 3, 4)
    assert lb.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # 2 cut per side: mean(3, 4, 5, 6)
    assert lb.iqm([[1.0, 2.0], [3.0, 10.0]]) == 2.5  # n = 4: 1 cut per side: mean(2, 3)
    with pytest.raises(ValueError):
        lb.iqm([])


def test_stratified_bootstrap_ci_hand_computed() -> None:
    # Two runs scoring 0 and 1 on one task: resamples give IQM 0, 0.5, 1 with probability
    # 1/4, 1/2, 1/4, so the 95% percentile interval is [0, 1].
    lo, hi = lb.stratified_bootstrap_ci(np.array([[0.0], [1.0]]))
    assert (lo, hi) == (0.0, 1.0)
    # One run (a heuristic), runs only: zero width, at the IQM.
    assert lb.stratified_bootstrap_ci(np.array([[0.9, 1.1, 1.0]]), task_bootstrap=False) == (1.0, 1.0)
    # Strata: runs are resampled within a task, so a constant column stays constant.
    m = np.array([[2.0, 5.0], [2.0, 5.0], [2.0, 5.0]])
    assert lb.stratified_bootstrap_ci(m, task_bootstrap=False) == (3.5, 3.5)
    # ... and with the episodes resampled too, the interval spans the column values.
    assert lb.stratified_bootstrap_ci(m) == (2.0, 5.0)


def test_score_is_higher_is_better() -> None:
    assert lb.score_of("goodput_rps", "12.5") == 12.5
    assert lb.score_of("energy_per_good_request_j", 50.0) == 0.02
    assert lb.score_of("cost_per_1m_good_tokens_usd", None) == 0.0  # no good tokens


# ---------------------------------------------------------------- learned agents
@pytest.mark.parametrize("policy", ["MlpPolicy", "InstancePolicy"])
def test_greedy_policy_matches_sb3_predict(tmp_path: Path, policy: str) -> None:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from disagg_gym_agents.base import make_env
    from disagg_gym_agents.policies import MaskableInstancePolicy, layout_of
    from disagg_gym_agents.factory import make_policy

    env = make_env(ENV, SHORT)
    if policy == "MlpPolicy":
        cls: object = "MlpPolicy"
        kwargs: dict[str, object] = {"net_arch": [16]}
    else:
        cls = MaskableInstancePolicy
        kwargs = {"layout": layout_of(env), "hidden": 16, "prior_scale": 20.0}
    model = MaskablePPO(cls, DummyVecEnv([lambda: make_env(ENV, SHORT)]), seed=3,
                        policy_kwargs=kwargs, device="cpu")
    model.save(tmp_path / "model.zip")
    inner = make_policy(f"sb3:{tmp_path / 'model.zip'}", env)
    greedy = lb.GreedyPolicy(inner)
    obs, _ = env.reset(seed=lb.EVAL_SEED_OFFSET, options={"workload_seed": lb.EVAL_SEED_OFFSET})
    for _ in range(100):
        a, _ = inner.predict(obs, deterministic=True)
        b, _ = greedy.predict(obs)
        assert np.array_equal(np.asarray(a), b)
        obs, _, term, trunc, _ = env.step(b)
        if term or trunc:
            break


def test_cli_arguments_parse() -> None:
    p = argparse.ArgumentParser()
    lb.add_benchmark_args(p)
    ns = p.parse_args(["--configs", ENV, "--agents", "jsq", "--episodes", "2", "--out", "x"])
    assert ns.configs == [ENV] and ns.episodes == 2 and ns.set == []
    v = argparse.ArgumentParser()
    lb.add_validate_args(v)
    assert v.parse_args([]).results is None


def test_cli_wiring(results: Path) -> None:
    """The agents' command table reaches the core CLI through the installed entry point."""
    from disagg_gym import cli
    from disagg_gym_agents.commands import COMMANDS

    installed = {c.name: c for c in cli.installed_commands()}
    for c in COMMANDS:
        assert installed[c.name] == c
    assert installed["benchmark"].target == "disagg_gym_agents.leaderboard.cli:cmd_benchmark"
    assert installed["validate"].target == "disagg_gym_agents.leaderboard.cli:cmd_validate"
    assert cli.main(["validate", str(results), "--no-progress"]) == 0
    assert cli.main(["benchmark", "--configs", "disagg/NoSuch-v0", "--out", str(results.parent)]) == 2


def test_benchmark_without_a_tuned_file_warns_before_running(tmp_path: Path, monkeypatch, capsys) -> None:
    # from another folder (an installed package finds no repository) the run went untuned and
    # said so only in its last line
    from disagg_gym_agents.leaderboard import cli as lbcli

    seen = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lbcli, "DEFAULT_OUT", tmp_path / "nowhere")
    monkeypatch.setattr(lbcli, "benchmark", lambda out, **kw: seen.append(kw["tuned"]) or Path(out) / "results.csv")
    args = lbcli.argparse.Namespace(out=str(tmp_path / "o"), markdown=None, configs=None, agents=None, episodes=1,
                                    set=[], no_plots=True, no_progress=True, tuned=None, imports=[])
    assert lbcli.cmd_benchmark(args) == 0
    err = capsys.readouterr().err
    assert seen == [None] and err.startswith(f"disagg-gym: warning: no leaderboard/tuned.yaml under {tmp_path}: ")
    (tmp_path / "leaderboard").mkdir()
    (tmp_path / "leaderboard" / "tuned.yaml").write_text("{}\n")
    assert lbcli.cmd_benchmark(args) == 0
    assert "warning" not in capsys.readouterr().err and seen[-1] == tmp_path / "leaderboard" / "tuned.yaml"


def test_a_set_that_a_split_also_sets_is_refused_before_any_episode(tmp_path: Path) -> None:
    # shift:load_up_20 sets workload.rate_per_s; a --set of the same key used to be replaced by
    # the split's value while the rows recorded the --set value
    from disagg_gym.errors import UserError
    from disagg_gym_agents.leaderboard.cells import with_split
    from disagg_gym_agents.leaderboard.runner import plan_benchmark

    with pytest.raises(UserError, match=r"--set workload.rate_per_s=10 conflicts with split 'shift:load_up_20'"):
        with_split("disagg/SmallRoute-v3", "shift:load_up_20", {"workload.rate_per_s": 10})
    with pytest.raises(UserError, match="conflicts"):  # a whole section containing the key
        with_split("disagg/SmallRoute-v3", "shift:load_up_20", {"workload": {"rate_per_s": 10}})
    assert with_split("disagg/SmallRoute-v3", "test", {"workload.rate_per_s": 10}) == {"workload.rate_per_s": 10}
    ok = with_split("disagg/SmallRoute-v3", "shift:load_up_20", {"horizon_s": 5})
    assert ok["horizon_s"] == 5 and "workload.rate_per_s" in ok
    with pytest.raises(UserError, match="conflicts"):
        plan_benchmark(tmp_path, ["disagg/SmallRoute-v3"], ["jsq"], 1, {"workload.rate_per_s": 10},
                       splits=["test", "shift:load_up_20"])
    assert not (tmp_path / "results.csv").exists()


# ---------------------------------------------------------------- rows that cannot be right
def test_validate_catches_an_edited_upper_bound_or_agent_name(results: Path, tmp_path: Path) -> None:
    # The replay runs the row's policy; the tables rank by `agent` and pick the reference by
    # `upper_bound`. An edit to either (turning the reference into an "oracle" so another agent
    # "wins") replayed cleanly before.
    rows = _rows(results)
    cols = list(rows[0])
    bad = tmp_path / "results.csv"
    _write_csv(bad, [rows[0], {**rows[1], "upper_bound": "True"}], cols)
    (err,) = lb.validate(bad, progress=False)
    assert err.startswith(f"{bad}:3 ") and err.endswith(
        "upper_bound True but 'round_robin' is not an oracle reference (upper_bound False)")
    _write_csv(bad, [{**rows[0], "agent": "my_genius"}, rows[1]], cols)
    (err,) = lb.validate(bad, progress=False)
    assert err.endswith("agent 'my_genius' but policy 'heuristic:jsq' (a heuristic row's policy is heuristic:<agent>)")


def _checkpoints(root: Path, env_id: str, seed: int = 1) -> Path:
    """A tiny MaskablePPO saved as ``root/SmallRoute-v3/seed0/model.zip`` (trained on ``env_id``)."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from disagg_gym_agents.base import make_env

    path = root / lb.env_name(ENV) / "seed0" / "model.zip"
    path.parent.mkdir(parents=True)
    MaskablePPO("MlpPolicy", DummyVecEnv([lambda: make_env(env_id, SHORT)]), seed=seed,
                policy_kwargs={"net_arch": [8]}, device="cpu").save(path)
    return root


def test_benchmark_refuses_agent_specs_that_cannot_be_right(tmp_path: Path) -> None:
    run = dict(episodes=1, overrides=SHORT, progress=False, splits=["test"], plots=False, tables=False)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"agent 'sb3:jsq=x': 'jsq' is a heuristic's name; give the learned agent another"):
        lb.benchmark(out, [ENV], ["sb3:jsq=x"], **run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=rf"agent 'sb3:mine=.*empty': no checkpoint for {ENV} \(expected .*empty/<EnvName>/seed<k>/model.zip, e.g. .*empty/SmallRoute-v3/seed0/model.zip\)"):
        lb.benchmark(out, [ENV], [f"sb3:mine={tmp_path / 'empty'}"], **run)
    with pytest.raises(ValueError, match=rf"agent 'threshold' applies to none of {ENV}"):
        lb.benchmark(out, [ENV], ["threshold"], **run)
    # A checkpoint of another env: refused before the manifest records cells it can never run.
    other = _checkpoints(tmp_path / "other", "disagg/PcieRoute-v3")
    with pytest.raises(ValueError, match=r"model observation space \(\d+,\) / actions .* do not match disagg/SmallRoute-v3's"):
        lb.benchmark(out, [ENV], [f"sb3:ppo={other}"], **run)
    assert not (out / "manifest.json").exists()
    # Another checkpoint folder under a name already in the results: refused, not skipped as done.
    a, b = _checkpoints(tmp_path / "a", ENV, 1), _checkpoints(tmp_path / "b", ENV, 2)
    lb.benchmark(out, [ENV], [f"sb3:ppo={a}"], **run)
    with pytest.raises(ValueError, match=r"SmallRoute-v3 ppo seed 0 \[test\] has rows run by sb3:.*a/SmallRoute-v3/seed0/model.zip, "
                                         r"this run's is sb3:.*b/SmallRoute-v3/seed0/model.zip: give the agent a name of its own"):
        lb.benchmark(out, [ENV], [f"sb3:ppo={b}"], **run)


def test_tables_name_invalid_actions(results: Path) -> None:
    rows = _rows(results)
    rows[1]["invalid_actions"] = "7"
    md = lb.render_markdown(lb.summarise(rows), results.parent, {}, SHORT)
    assert ("**Invalid actions**: round_robin 7 over 1 episode(s). The env's fallback router "
            "(`env.fallback_router`) took those decisions") in md
    assert "Invalid actions" not in lb.render_markdown(lb.summarise(_rows(results)), results.parent, {}, SHORT)


def test_validate_finds_a_checkout_s_checkpoints_from_another_folder(tmp_path: Path, monkeypatch) -> None:
    # Rows name checkpoints relative to the checkout (sb3:leaderboard/...); validating
    # <checkout>/leaderboard/results.csv from another folder used to say "not found".
    repo = tmp_path / "repo"
    _checkpoints(repo / "leaderboard" / "ck", ENV)
    monkeypatch.chdir(repo)
    cell = lb.Cell(ENV, "ppo", "sb3", "sb3:leaderboard/ck/SmallRoute-v3/seed0/model.zip", 0)
    res = repo / "leaderboard" / "results.csv"
    lb.append_rows(res, lb.run_cell(cell, [lb.EVAL_SEED_OFFSET], {"horizon_s": 2}))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert lb.validate(res, progress=False) == []


def test_benchmark_resumes_a_checkpoint_named_from_another_folder(tmp_path: Path, monkeypatch) -> None:
    # sb3 paths are recorded relative to where benchmark ran: the same checkpoint named from
    # another folder is the same agent (its SHA-256), not a foreign one.
    run = dict(episodes=1, overrides=SHORT, progress=False, splits=["test"], plots=False, tables=False)
    _checkpoints(tmp_path / "ck", ENV)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    lb.benchmark(out, [ENV], ["sb3:ppo=ck"], **run)
    monkeypatch.chdir(tmp_path.parent)
    lb.benchmark(out, [ENV], [f"sb3:ppo={tmp_path.name}/ck"], **run)  # resumes: nothing to run
    assert len(_rows(out / "results.csv")) == 1
