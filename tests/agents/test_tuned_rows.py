"""Leaderboard rows run the tuned baselines (issue #15 items 1-2): the benchmark binds each
heuristic with its params from the tuned file, each row records them (``params``), ``validate``
replays a row with its recorded params, and a results file never mixes two params of a cell."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("tqdm")  # the [rl] extra

import csv
from pathlib import Path
from typing import Any

from disagg_gym.cli import main
from disagg_gym.errors import UserError
from disagg_gym_agents import leaderboard as lb
from disagg_gym_agents.evaluation import run_episode
from disagg_gym_agents.factory import make_policy

ENV = "disagg/SmallRoute-v3"
# short and overloaded, so the TTFT guard's alpha changes what is admitted
OVER = {"horizon_s": 4, "workload.rate_per_s": 120}

# written by hand (the oracle): what the bound policies must get, and what the rows must say
TUNED = """\
small-route:
  jsq+ttft_guard:
    params: {alpha: 0.6}
    metric: slo_tokens_per_s
  spillover:
    params: {alpha: 1.7}
  jsq+queue_guard:
    params: {max_queued_requests: 3}
    overrides: {horizon_s: 3}
hetero-route:
  jsq+ttft_guard:
    params: {alpha: 2.5}
"""


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_rows(path: Path, rows: list[dict[str, str]], cols: list[str] | None = None) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols or list(rows[0]), lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def tuned_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("tuned") / "tuned.yaml"
    p.write_text(TUNED)
    return p


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, tuned_file: Path) -> tuple[Path, dict[str, Any]]:
    """A benchmark run with the hand-written tuned file; returns (results, bound policies)."""
    out = tmp_path_factory.mktemp("lbt")
    bound: dict[str, Any] = {}
    real = lb.runner._bind

    def spy(cell: lb.Cell, overrides: dict[str, Any]) -> tuple[Any, Any]:
        env, pol = real(cell, overrides)
        bound[cell.agent] = pol
        return env, pol

    mp = pytest.MonkeyPatch()
    mp.setattr(lb.runner, "_bind", spy)
    try:
        res = lb.benchmark(out, [ENV], ["jsq", "jsq+ttft_guard", "jsq+queue_guard", "spillover"],
                           episodes=2, overrides=OVER, progress=False, plots=False, splits=["test"],
                           tuned=tuned_file)
    finally:
        mp.undo()
    return res, bound


def test_bound_policies_have_exactly_the_tuned_params(bench: tuple[Path, dict[str, Any]]) -> None:
    _, bound = bench
    assert bound["jsq+ttft_guard"].params == {"alpha": 0.6}
    assert bound["jsq+ttft_guard"].controller.alpha == 0.6
    assert bound["spillover"].router_kwargs == {"alpha": 1.7}
    assert bound["spillover"].make_router().alpha == 1.7
    # an entry tuned with --set overrides was tuned on another env: defaults
    assert bound["jsq+queue_guard"].params == {}
    assert bound["jsq"].router_kwargs == {}


def test_rows_record_the_params(bench: tuple[Path, dict[str, Any]]) -> None:
    res, _ = bench
    rows = _rows(res)
    got = {(r["agent"], r["eval_seed"]): r["params"] for r in rows}
    assert got == {
        (a, str(s)): p
        for a, p in (("jsq", "{}"), ("jsq+ttft_guard", '{"alpha": 0.6}'),
                     ("jsq+queue_guard", "{}"), ("spillover", '{"alpha": 1.7}'))
        for s in (10_000, 10_001)
    }
    header = list(rows[0])
    assert header.index("params") == header.index("policy") + 1  # among the metadata


def test_row_is_the_episode_of_the_policy_built_with_those_params(bench: tuple[Path, dict[str, Any]]) -> None:
    res, _ = bench
    row = next(r for r in _rows(res) if r["agent"] == "jsq+ttft_guard" and r["eval_seed"] == "10000")
    env = lb.runner.make_env(ENV, OVER)
    kpis = run_episode(make_policy("jsq+ttft_guard", env, alpha=0.6), env, 10_000)
    default = run_episode(make_policy("jsq+ttft_guard", env), env, 10_000)
    env.close()
    assert float(row["slo_tokens_per_s"]) == kpis["slo_tokens_per_s"]
    assert int(row["requests_rejected"]) == kpis["requests_rejected"] != default["requests_rejected"]  # alpha mattered


def test_params_are_the_same_on_every_split(tuned_file: Path) -> None:
    cells = lb.plan_cells([ENV, "disagg/HeteroRoute-v3"], ["jsq+ttft_guard", "jsq"], None,
                          lb.runner.load_tuned(tuned_file))
    by = {(c.config, c.agent, c.split): c.params for c in cells}
    assert {s for (cfg, _, s) in by if cfg == ENV} == {"test", "shift:load_up_20", "shift:load_down_20"}
    for (cfg, agent, _), params in by.items():
        want = {"jsq": "{}", "jsq+ttft_guard": '{"alpha": 0.6}' if cfg == ENV else '{"alpha": 2.5}'}
        assert params == want[agent]
    assert all(c.params == "{}" for c in lb.plan_cells([ENV], ["jsq+ttft_guard"], ["test"]))  # untuned


def test_validate_replays_the_recorded_params(bench: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    res, _ = bench
    assert lb.validate(res, progress=False) == []
    # tampered: the guard's alpha of one row -> that row no longer replays
    rows = _rows(res)
    k = next(i for i, r in enumerate(rows) if r["agent"] == "jsq+ttft_guard")
    rows[k]["params"] = '{"alpha": 3.0}'
    bad = tmp_path / "results.csv"
    _write_rows(bad, rows)
    (tmp_path / "manifest.json").write_text((res.parent / "manifest.json").read_text())
    errors = lb.validate(bad, progress=False)
    assert errors and all(f"{bad}:{k + 2} " in e for e in errors)
    assert any("KPI requests_rejected recorded" in e for e in errors)
    assert main(["validate", str(bad), "--no-progress"]) == 1
    # a params cell that is not JSON, or that the policy does not take: cannot replay, named
    rows[k]["params"] = "alpha=3"
    _write_rows(bad, rows)
    (err,) = lb.validate(bad, progress=False)
    assert f"{bad}:{k + 2} " in err and "params 'alpha=3' is not JSON" in err
    rows[k]["params"] = '{"beta": 1}'
    _write_rows(bad, rows)
    (err,) = lb.validate(bad, progress=False)
    assert "cannot replay" in err and "beta" in err


def test_rows_without_the_column_replay_as_defaults(bench: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    res, _ = bench
    old = [r for r in _rows(res) if r["params"] == "{}"]
    path = tmp_path / "results.csv"
    _write_rows(path, old, [c for c in old[0] if c != "params"])  # a file from before the column
    assert {r["params"] for r in lb.read_results(path)} == {"{}"}
    assert lb.validate(path, progress=False) == []


def test_appending_a_params_row_to_an_old_file(bench: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    res, _ = bench
    rows = _rows(res)
    path = tmp_path / "results.csv"
    _write_rows(path, [r for r in rows if r["agent"] == "jsq"], [c for c in rows[0] if c != "params"])
    assert lb.append_rows(path, [r for r in rows if r["agent"] == "spillover"]) == 2
    out = _rows(path)
    assert list(out[0]) == list(rows[0])  # params inserted after policy, KPIs unchanged in order
    assert [(r["agent"], r["params"]) for r in out] == [("jsq", "{}")] * 2 + [("spillover", '{"alpha": 1.7}')] * 2
    assert lb.validate(path, progress=False) == []


def test_benchmark_refuses_to_mix_params(bench: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    res, _ = bench
    other = tmp_path / "tuned.yaml"
    other.write_text("small-route:\n  jsq+ttft_guard:\n    params: {alpha: 0.9}\n")
    with pytest.raises(UserError, match=r"jsq\+ttft_guard \[test\] recorded with params "
                       r'\{"alpha": 0.6\}, tuned file gives \{"alpha": 0.9\}'):
        lb.benchmark(res.parent, [ENV], ["jsq+ttft_guard"], episodes=2, overrides=OVER,
                     progress=False, plots=False, splits=["test"], tuned=other)
    with pytest.raises(UserError, match=r"tuned file gives \{\}"):  # no tuned file: defaults
        lb.benchmark(res.parent, [ENV], ["spillover"], episodes=2, overrides=OVER,
                     progress=False, plots=False, splits=["test"])


@pytest.mark.parametrize(("text", "message"), [
    (None, "--tuned: no tuned file"),
    ("small-route:\n  jsq+ttft_guard:\n    params: {beta: 2}\n", "bad params {\"beta\": 2}"),
    ("small-route:\n  jsq+ttft_guard:\n    params: [1, 2]\n", "params must be a mapping"),
])
def test_bad_tuned_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, message: str
) -> None:
    p = tmp_path / "tuned.yaml"
    if text is not None:
        p.write_text(text)
    argv = ["benchmark", "--configs", ENV, "--agents", "jsq+ttft_guard", "--episodes", "1",
            "--splits", "test", "--set", "horizon_s=2", "--out", str(tmp_path / "lb"),
            "--tuned", str(p), "--no-plots", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_leaderboard_shows_the_params(bench: tuple[Path, dict[str, Any]]) -> None:
    res, _ = bench
    md = (res.parent / "LEADERBOARD.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and " x 2 |" in line]
    names = {line.split(" | ")[1] for line in rows}
    assert names == {"jsq", "jsq+ttft_guard (alpha=0.6)", "jsq+queue_guard", "spillover (alpha=1.7)"}
