"""The reproduce script's work plan: every unit once, the costliest first; bounds computed ahead
in parallel processes lose no entry."""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path

import pytest

from disagg_gym.env.registration import registered_ids
from disagg_gym_agents.leaderboard import reproduce, runner
from disagg_gym_agents.leaderboard.cells import splits_of

IDS = ["disagg/SmallRoute-v3", "disagg/HeteroRoute-v3", "disagg/PcieRoute-v3"]


@pytest.fixture(autouse=True)
def _hints(monkeypatch: pytest.MonkeyPatch) -> None:
    # fixed hints: the ordering rule is under test, not the simulations that measure them
    hints = {"disagg/SmallRoute-v3": 2.0, "disagg/HeteroRoute-v3": 1.0, "disagg/PcieRoute-v3": 3.0}
    monkeypatch.setattr(reproduce, "cost_hint", lambda env_id: hints.get(env_id, 0.0))


def test_benchmark_units_cover_every_split_once_costliest_config_first() -> None:
    units = reproduce.benchmark_units(IDS)
    assert sorted(units) == sorted((c, s) for c in IDS for s in splits_of(c))
    assert [c for c, _ in units] == (
        ["disagg/PcieRoute-v3"] * len(splits_of("disagg/PcieRoute-v3"))
        + ["disagg/SmallRoute-v3"] * len(splits_of("disagg/SmallRoute-v3"))
        + ["disagg/HeteroRoute-v3"] * len(splits_of("disagg/HeteroRoute-v3"))
    )


def test_searches_are_the_tuned_files_ordered_by_candidate_episodes() -> None:
    tuned = {
        "small-route": {"jsq+ttft_guard": {"metric": "m", "seeds": [1, 2], "candidates": [{}] * 6}},
        "pcie-route": {"jsq+ttft_guard": {"metric": "m", "seeds": [1], "candidates": [{}] * 3},
                       "static_split": {"metric": "m", "seeds": [1, 2, 3], "candidates": [{}] * 2,
                                        "split_step": 2, "refine": True}},
    }
    got = reproduce.searches(tuned)
    # candidate episodes x hint: small 6*2*2 = 24, pcie static 2*3*3 = 18, pcie guard 3*1*3 = 9
    assert [(s.config, s.policy) for s in got] == [
        ("small-route", "jsq+ttft_guard"), ("pcie-route", "static_split"), ("pcie-route", "jsq+ttft_guard")]
    assert got[1].line() == "pcie-route m 3 static_split 2 1"
    assert [s.config for s in reproduce.searches(tuned, ["disagg/PcieRoute-v3"])] == ["pcie-route"] * 2


def _warm(env_id: str, out: str, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    runner.warm_bounds([env_id], out, episodes=2)


def test_parallel_warm_bounds_keep_every_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_together: Callable[..., None]
) -> None:
    # a fast stand-in for the LP: the cache's bookkeeping is under test (forked children inherit it)
    monkeypatch.setattr(runner, "config_bound", lambda name, metric, seeds, ov, horizon_policy: float(len(seeds)))
    ids = [i for i in registered_ids() if i in IDS]
    start = mp.get_context("fork").Barrier(len(ids))
    run_together(_warm, [(i, str(tmp_path), start) for i in ids])
    bounds = json.loads((tmp_path / runner.BOUNDS_CACHE).read_text())["bounds"]
    assert len(bounds) == sum(len(splits_of(i)) for i in ids)
    assert set(bounds.values()) == {2.0}
    # the tables' call finds them all: nothing is computed again
    monkeypatch.setattr(runner, "config_bound", lambda *a, **k: pytest.fail("bound computed twice"))
    rows = [{"config": i, "split": s, "eval_seed": 10_000 + k, "primary_metric": "slo_tokens_per_s"}
            for i in ids for s in splits_of(i) for k in range(2)]
    assert set(runner.split_bounds(rows, None, cache=tmp_path / runner.BOUNDS_CACHE).values()) == {2.0}


def test_a_resumed_run_repeats_only_unfinished_searches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from disagg_gym_agents.tuning import write_tuned

    entry = {"metric": "m", "seeds": [1], "candidates": [{}] * 2}
    write_tuned({"small-route": {"jsq+ttft_guard": entry, "jsq+queue_guard": entry}}, tmp_path / "all.yaml")
    write_tuned({"small-route": {"jsq+queue_guard": entry}}, tmp_path / "out.yaml")  # finished before the stop
    assert reproduce.main(["searches", str(tmp_path / "all.yaml"), "--done", str(tmp_path / "out.yaml")]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == ["small-route m 1 jsq+ttft_guard 1 0"]
    assert reproduce.main(["searches", str(tmp_path / "all.yaml"), "--done", str(tmp_path / "missing.yaml")]) == 0
    assert len(capsys.readouterr().out.split("\n")[:-1]) == 2
