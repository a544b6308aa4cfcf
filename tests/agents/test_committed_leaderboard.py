"""The committed leaderboard still replays: a sample of its rows (fast configs) re-run exactly.

The full check is ``disagg-gym validate`` (minutes); this catches a simulator change that
silently invalidates LEADERBOARD.md without bumping the env version.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("stable_baselines3")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra

import io
import zipfile
from pathlib import Path

import torch

from disagg_gym_agents.leaderboard import validate

RESULTS = Path(__file__).resolve().parents[2] / "leaderboard" / "results.csv"


@pytest.mark.skipif(not RESULTS.exists(), reason="no committed leaderboard/results.csv")
def test_committed_rows_replay_exactly() -> None:
    problems = validate(
        RESULTS,
        configs=["disagg/SmallRoute-v3", "disagg/HeteroRoute-v3"],
        agents=["jsq"],  # 2 configs x 3 splits x 10 episodes
        progress=False,
    )
    assert problems == []


CHECKPOINTS = RESULTS.parent / "checkpoints"


@pytest.mark.skipif(not CHECKPOINTS.is_dir(), reason="no committed leaderboard/checkpoints")
def test_committed_checkpoints_are_slim_and_have_their_run_config() -> None:
    """Every committed model.zip (the ablation roots ``checkpoints-*`` too) has its config.json
    and no Adam moments (train_leaderboard's slim)."""
    zips = sorted(RESULTS.parent.glob("checkpoints*/*/seed*/model.zip"))
    assert zips, f"no model.zip under {CHECKPOINTS}"
    for path in zips:
        assert (path.parent / "config.json").is_file(), f"{path}: config.json missing beside it"
        with zipfile.ZipFile(path) as zf:
            opt = torch.load(io.BytesIO(zf.read("policy.optimizer.pth")), map_location="cpu")
        assert not opt.get("state"), f"{path}: optimizer moments not slimmed"


@pytest.mark.skipif(not RESULTS.exists(), reason="no committed leaderboard/results.csv")
def test_committed_learned_rows_name_checkpoints_inside_the_repository() -> None:
    """A learned row's policy path is relative and its checkpoint is committed, so a fresh clone
    replays it (rows written by a worktree once carried that worktree's absolute path)."""
    from disagg_gym_agents.leaderboard import read_results

    specs = {r["policy"] for r in read_results(RESULTS) if r["agent_kind"] == "sb3"}
    root = RESULTS.parents[1]
    for spec in sorted(specs):
        path = spec.split(":", 1)[1]
        assert not Path(path).is_absolute(), f"{spec}: absolute path in a committed row"
        assert (root / path).is_file(), f"{spec}: checkpoint not in the repository"


@pytest.mark.skipif(not RESULTS.exists(), reason="no committed leaderboard/results.csv")
def test_evaluate_with_the_tuned_file_reproduces_the_committed_row(tmp_path: Path) -> None:
    # `evaluate --tuned` binds a heuristic as `benchmark` did: same params, same episode.
    import csv

    from disagg_gym_agents.args import EvalArgs
    from disagg_gym_agents.cli import cmd_evaluate

    row = next(r for r in csv.DictReader(RESULTS.open()) if r["config"] == "disagg/SmallRoute-v3"
               and r["agent"] == "jsq+ttft_guard" and r["split"] == "test" and r["eval_seed"] == "10000")
    assert row["params"] != "{}"  # tuned
    out = tmp_path / "e.csv"
    assert cmd_evaluate(EvalArgs(env="disagg/SmallRoute-v3", policy="heuristic:jsq+ttft_guard", episodes=1,
                                 tuned=str(RESULTS.parent / "tuned.yaml"), out=str(out))) == 0
    got = next(csv.DictReader(out.open()))
    assert got["params"] == row["params"]
    assert float(got["slo_tokens_per_s"]) == pytest.approx(float(row["slo_tokens_per_s"]), rel=1e-9)
    with pytest.raises(Exception, match="--tuned binds heuristics"):
        cmd_evaluate(EvalArgs(env="disagg/SmallRoute-v3", policy=f"sb3:{CHECKPOINTS / 'SmallRoute-v3/seed0/model.zip'}",
                              tuned=str(RESULTS.parent / "tuned.yaml")))


BOUNDS_CACHE = RESULTS.parent / "bounds_cache.json"


@pytest.mark.skipif(not BOUNDS_CACHE.exists(), reason="no committed leaderboard/bounds_cache.json")
def test_committed_bounds_cache_is_for_this_simulator() -> None:
    # A cache stamped with another simulator digest is dropped, and every `benchmark` run then
    # recomputes all its bounds (about 9 minutes on 2 cores) before writing a table.
    import json

    from disagg_gym_agents.leaderboard.runner import _simulator_digest

    assert json.loads(BOUNDS_CACHE.read_text())["code"] == _simulator_digest(), (
        "leaderboard/bounds_cache.json is stale: the simulator's sources changed since its bounds were "
        "computed. Recompute them (python -m disagg_gym_agents.leaderboard.reproduce bounds DIR <env ids>, "
        "DIR holding a copy of the cache), check the values, and commit the file (docs/leaderboard.md, "
        "\"Bounds cache\")"
    )


LEADERBOARD_MD = RESULTS.parent.parent / "LEADERBOARD.md"
BOUNDS_CSV = RESULTS.parent / "bounds.csv"


@pytest.mark.skipif(not (LEADERBOARD_MD.exists() and BOUNDS_CSV.exists()), reason="no committed leaderboard")
def test_committed_bounds_csv_agrees_with_the_headline() -> None:
    # bounds.csv kept LargeJoint-v2's goodput bound (375.7) under v3, whose best heuristic scores
    # 480.6 and whose headline bound is 540: a published "upper bound" a policy beats. Both are on
    # the test seeds 10000-10009; the headline prints 3-4 significant digits.
    import csv

    from disagg_gym.env.registration import standard_envs

    name_of = {e["id"]: e["config"] for e in standard_envs()}
    bounds = {(r["config"], r["metric"]): float(r["upper_bound"]) for r in csv.DictReader(BOUNDS_CSV.open())}
    checked = 0
    for line in LEADERBOARD_MD.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) < 7 or cells[1] != "test" or not cells[0].startswith("`disagg/"):
            continue
        config, metric, shown = name_of[cells[0].strip("`")], cells[2], float(cells[5].replace(",", ""))
        assert bounds[(config, metric)] == pytest.approx(shown, rel=5e-3), (config, metric)
        checked += 1
    assert checked == len(name_of), (
        f"LEADERBOARD.md has a test-split headline row for {checked} of the {len(name_of)} standard configs: a new "
        "standard config needs its leaderboard rows and bounds (disagg-gym benchmark, disagg-gym bounds)")
