"""The shared results CSV (issue #17): concurrent appends lose no row, torn rows never count,
bad files and rows fail with one line, and ``validate`` checks something or fails."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("tqdm")  # the [rl] extra

import argparse
import csv
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


from disagg_gym_agents import leaderboard as lb
from disagg_gym.cli import main
from disagg_gym.errors import UserError

ENV = "disagg/SmallRoute-v3"


def _row(agent: str, seed: int, **kpis: object) -> dict[str, object]:
    return {
        "config": ENV, "env_version": 0, "agent": agent, "agent_kind": "heuristic",
        "upper_bound": False, "split": "test", "train_seed": None, "eval_seed": seed, "episode": 0,
        "primary_metric": "goodput_rps", "score": 1.5, "policy": f"heuristic:{agent}",
        "overrides": "{}", "goodput_rps": 1.5, **kpis,
    }


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _writer_proc(path: str, agent: str, n: int, extra_col: bool) -> None:
    w = lb.ResultsWriter(path)
    for k in range(n):
        kpis = {f"kpi_{agent}": k} if extra_col and k == n // 2 else {}
        w.append([_row(agent, 10_000 + k, **kpis)])


@pytest.mark.parametrize("extra_col", [False, True])
def test_concurrent_writers_lose_no_row(tmp_path: Path, extra_col: bool, run_together: Callable[..., None]) -> None:
    # before: read-modify-rewrite without a lock kept 204 of 400 rows of two such writers
    path = tmp_path / "results.csv"
    agents, n = ["a", "b", "c", "d"], 60
    run_together(_writer_proc, [(str(path), a, n, extra_col) for a in agents], start="spawn")
    rows = _csv_rows(path)
    got = sorted((r["agent"], int(r["eval_seed"])) for r in rows)
    assert got == sorted((a, 10_000 + k) for a in agents for k in range(n))  # each once, none lost
    assert path.read_text().count("config,env_version") == 1  # one header
    if extra_col:  # a new column rewrote the file under the lock, still losing nothing
        assert all(f"kpi_{a}" in rows[0] for a in agents)


def test_append_is_append_only_and_skips_rows_already_there(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    w = lb.ResultsWriter(path)
    assert w.append([_row("a", 1), _row("a", 2)]) == 2
    ino, size = path.stat().st_ino, path.stat().st_size
    before = path.read_bytes()
    assert w.append([_row("a", 3)]) == 1
    assert path.stat().st_ino == ino  # appended in place, not rewritten
    assert path.read_bytes().startswith(before) and path.stat().st_size > size
    # another writer (another process) sees those rows and skips duplicates
    assert lb.ResultsWriter(path).append([_row("a", 2), _row("a", 4)]) == 1
    assert [r["eval_seed"] for r in _csv_rows(path)] == ["1", "2", "3", "4"]


@pytest.mark.skipif(os.name != "posix", reason="umask is POSIX")
def test_results_file_honours_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        lb.append_rows(tmp_path / "results.csv", [_row("a", 1)])
    finally:
        os.umask(old)
    assert (tmp_path / "results.csv").stat().st_mode & 0o777 == 0o644


def test_torn_last_row_is_not_a_finished_cell(tmp_path: Path) -> None:
    # a file cut mid-row counted the torn row as done and kept it in the leaderboard
    path = tmp_path / "results.csv"
    lb.append_rows(path, [_row("a", 10_000), _row("a", 10_001), _row("a", 10_002)])
    text = path.read_text()
    path.write_text(text[: len(text) - 12])  # cut the last row short (no newline)
    rows = lb.read_results(path)
    assert [r["eval_seed"] for r in rows] == ["10000", "10001"]
    cell = lb.Cell(ENV, "a", "heuristic", "heuristic:a", None)
    todo = lb.missing_cells(path, [cell], [10_000, 10_001, 10_002])
    assert todo == [(cell, [10_002])]
    # the next append cuts the torn tail off before appending: no garbage line stays
    lb.append_rows(path, [_row("a", 10_002)])
    assert [r["eval_seed"] for r in _csv_rows(path)] == ["10000", "10001", "10002"]
    assert all(len(r) == len(_csv_rows(path)[0]) and None not in r for r in _csv_rows(path))


def test_row_with_missing_fields_is_torn(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    lb.append_rows(path, [_row("a", 1)])
    with path.open("a") as fh:
        fh.write(f"{ENV},0,b\n")  # a row of 3 fields
    assert [r["agent"] for r in lb.read_results(path)] == ["a"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agent,eval_seed\njsq,1\n", "{p}:1: not a results file: header lacks column 'config' (got header 'agent,eval_seed')"),
        (None, "{p}: not a text file (invalid UTF-8 at byte 0)"),
    ],
)
def test_bad_results_file_is_one_line(tmp_path: Path, text: str | None, message: str) -> None:
    # a file without `config` gave KeyError tracebacks in benchmark and validate
    p = tmp_path / "results.csv"
    if text is None:
        p.write_bytes(b"\xff\xfeconfig\n")
    else:
        p.write_text(text)
    with pytest.raises(UserError) as exc:
        lb.read_results(p)
    assert str(exc.value) == message.format(p=p)


def test_bad_eval_seed_names_the_row(tmp_path: Path) -> None:
    p = tmp_path / "results.csv"
    lb.append_rows(p, [_row("a", 1), _row("a", 2)])
    p.write_text(p.read_text().replace(f"{ENV},0,a,heuristic,False,test,,2,", f"{ENV},0,a,heuristic,False,test,,abc,"))
    with pytest.raises(UserError) as exc:
        lb.read_results(p)
    assert str(exc.value) == f"{p}:3: column 'eval_seed': expected an integer (got 'abc')"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_benchmark_and_validate_reject_a_column_less_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lb"
    out.mkdir()
    (out / "results.csv").write_text("agent,eval_seed\njsq,1\n")
    want = (f"disagg-gym: error: {out / 'results.csv'}:1: not a results file: header lacks column 'config' "
            "(got header 'agent,eval_seed')")
    rc, _, err = _cli(capsys, "benchmark", "--configs", ENV, "--agents", "jsq", "--episodes", "1",
                      "--out", str(out), "--no-progress", "--no-plots", "--set", "horizon_s=2")
    assert rc == 2 and err.strip().splitlines()[-1] == want
    rc, _, err = _cli(capsys, "validate", str(out / "results.csv"), "--no-progress")
    assert rc == 2 and err.strip().splitlines()[-1] == want


def test_benchmark_bad_out_fails_before_any_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("a cell ran before the output paths were checked")

    monkeypatch.setattr(lb.runner, "run_cell", boom)
    f = tmp_path / "f"
    f.write_text("x")
    rc, _, err = _cli(capsys, "benchmark", "--configs", ENV, "--agents", "jsq", "--out", str(f), "--no-progress")
    assert rc == 2 and err.strip().splitlines()[-1] == f"disagg-gym: error: --out {str(f)!r}: is a file, expected a folder"
    d = tmp_path / "d"
    d.mkdir()
    rc, _, err = _cli(capsys, "benchmark", "--configs", ENV, "--agents", "jsq", "--out", str(tmp_path / "o"),
                      "--markdown", str(d), "--no-progress")
    assert rc == 2
    assert err.strip().splitlines()[-1] == f"disagg-gym: error: --markdown {str(d)!r}: is a directory, expected a file path"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lb17")
    return lb.benchmark(out, [ENV], ["jsq"], episodes=1, overrides={"horizon_s": 2}, progress=False, plots=False,
                        splits=["test"])


def test_validate_fails_when_nothing_is_checked(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `--configs` with a typo printed "OK, 0 row(s)" and exited 0
    rc, out, err = _cli(capsys, "validate", str(results), "--configs", "disagg/SmalRoute-v0", "--no-progress")
    assert rc == 2 and "OK" not in out
    assert err.strip() == (f"disagg-gym: error: --configs: no rows with config 'disagg/SmalRoute-v0' in {results} "
                           f"(it has: {ENV})")
    rc, _, err = _cli(capsys, "validate", str(results), "--agents", "nobody", "--no-progress")
    assert rc == 2 and "--agents: no rows with agent 'nobody'" in err


def test_validate_list_does_not_swallow_the_path(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `validate --configs X path`: the list took the path and the repository's file was validated
    rc, out, _ = _cli(capsys, "validate", "--configs", ENV, str(results), "--no-progress")
    assert rc == 0 and out.strip() == f"validate: OK, 1 row(s) of {results} replayed exactly"


@pytest.mark.parametrize("target", ["/dev/null", "DIR"])
def test_validate_non_regular_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    path = str(tmp_path) if target == "DIR" else target
    rc, _, err = _cli(capsys, "validate", path, "--no-progress")
    assert rc == 2 and err.strip() == f"disagg-gym: error: {path!r} is not a regular file, expected a results CSV"


def test_validate_ignores_a_torn_row(results: Path, tmp_path: Path) -> None:
    p = tmp_path / "results.csv"
    text = results.read_text()
    p.write_text(text + text.splitlines()[1][:40])  # a second copy of the row, cut short
    assert lb.validate(p, progress=False) == []
    (tmp_path / "manifest.json").write_text(results.with_name("manifest.json").read_text())
    assert lb.check_omissions(p) == []


def test_concurrent_benchmark_processes_share_one_folder(tmp_path: Path) -> None:
    """Three `disagg-gym benchmark` processes, one --out, overlapping cells: every row once."""
    out = tmp_path / "lb"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    agents = ["round_robin", "p2c", "least_finish"]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "disagg_gym.cli", "benchmark", "--configs", ENV, "--agents", a, "jsq",
         "--episodes", "2", "--out", str(out), "--no-progress", "--no-plots", "--set", "horizon_s=2",
         "--splits", "test"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for a in agents]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    rows = _csv_rows(out / "results.csv")
    got = sorted((r["agent"], r["eval_seed"]) for r in rows)
    want = sorted((a, str(s)) for a in [*agents, "jsq"] for s in (10_000, 10_001))
    assert got == want  # jsq ran by up to three processes, written once; nothing lost
    ns = argparse.Namespace(results=str(out / "results.csv"), configs=None, agents=None, no_progress=True)
    assert lb.cmd_validate(ns) == 0
