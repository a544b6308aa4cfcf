"""``validate --sample N`` (issue #20): replays exactly N rows, drawn reproducibly; a bad N is one
line; the progress bar (stderr) shows the rows done and the time left."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("tqdm")  # the [rl] extra

import re
from pathlib import Path
from typing import Any

from disagg_gym.cli import main
from disagg_gym_agents import leaderboard as lb
import importlib

validate_mod = importlib.import_module("disagg_gym_agents.leaderboard.validate")

ENV = "disagg/SmallRoute-v3"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lb20")
    # 2 agents x 2 episodes = 4 rows
    return lb.benchmark(out, [ENV], ["jsq", "round_robin"], episodes=2, overrides={"horizon_s": 2},
                        progress=False, plots=False, splits=["test"])


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    replayed: list[tuple[str, int]] = []
    real = validate_mod.run_cell

    def spy(cell: Any, seeds: list[int], overrides: dict[str, Any]) -> list[dict[str, Any]]:
        replayed.extend((cell.agent, s) for s in seeds)
        return real(cell, seeds, overrides)

    monkeypatch.setattr(validate_mod, "run_cell", spy)
    return replayed


def test_sample_replays_exactly_n_rows(
    results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    replayed = _spy(monkeypatch)
    assert main(["validate", str(results), "--sample", "2", "--no-progress"]) == 0
    assert len(replayed) == 2 and len(set(replayed)) == 2  # 2 distinct rows of the 4
    out = capsys.readouterr().out
    # it names the file lines it replayed, so a spot check can be tied to its rows
    lines = [i for i, r in enumerate(lb.read_results(results), start=2) if (r["agent"], int(r["eval_seed"])) in replayed]
    assert out.strip() == (f"validate: OK, 2 sampled row(s) of 4 in {results} replayed exactly "
                           f"(--sample-seed 0; lines {lines[0]}, {lines[1]})")
    first = list(replayed)
    replayed.clear()
    assert main(["validate", str(results), "--sample", "2", "--no-progress"]) == 0
    assert replayed == first  # the same seed draws the same rows
    replayed.clear()
    assert main(["validate", str(results), "--sample", "9", "--no-progress"]) == 0
    assert len(replayed) == 4  # more than there are: every row
    replayed.clear()
    assert main(["validate", str(results), "--sample", "1", "--agents", "jsq", "--no-progress"]) == 0
    assert [a for a, _ in replayed] == ["jsq"]  # sampled among the filtered rows


def test_sample_draw_is_python_random_with_the_seed() -> None:
    # oracle: random.Random(seed).sample over positions, kept in file order
    import random

    rows = list("abcdefghij")
    for seed in (0, 1, 7):
        want = [rows[k] for k in sorted(random.Random(seed).sample(range(10), 3))]
        assert validate_mod.sample_rows(rows, 3, seed) == want
    assert len({tuple(validate_mod.sample_rows(rows, 3, s)) for s in range(20)}) > 1


@pytest.mark.parametrize("bad", ["0", "-3", "two"])
def test_bad_sample_is_one_line(results: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(results), "--sample", bad, "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    # argparse's usage, then one error line naming the flag and the value (the CLI's convention)
    errors = [line for line in err if "error" in line]
    assert errors == [err[-1]] and "Traceback" not in "".join(err)
    want = "an integer" if bad == "two" else "a positive integer"
    assert err[-1] == f"disagg-gym: error: argument --sample: expected {want} (got {bad!r})"


def test_progress_bar_is_on_stderr_with_time_left(
    results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(results), "--sample", "2"]) == 0
    out, err = capsys.readouterr()
    assert "validate: OK" in out and "validate: OK" not in err and "ep/s" not in out
    # tqdm's "[elapsed<remaining" field: the time left is shown
    assert re.search(r"validate: 100%.*2/2 \[\d\d:\d\d<\d\d:\d\d", err), err
