"""scripts/train_leaderboard.py: bad input is one line before any training; finished cells are skipped."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_leaderboard.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--configs", "disagg/SmallRoute-v3", "disagg/Nope-v1"), "'disagg/Nope-v1'"),
        (("--timesteps", "disagg/SmallRoute-v3=abc"),
         "--timesteps 'disagg/SmallRoute-v3=abc': expected ID=N with N a positive integer"),
        (("--timesteps", "disagg/SmallRoute-v2=100"),
         "--timesteps 'disagg/SmallRoute-v2=100': 'disagg/SmallRoute-v2' is not one of the configs trained"),
        (("--hyperparams", "nonexistent.yml"), "hyperparameter file not found: 'nonexistent.yml'"),
        (("--set", "foo"), "override 'foo'"),
        (("--seeds", str(2**40)), f"--seeds: {2**40} is above the largest seed"),
    ],
)
def test_bad_input_is_one_line_before_any_training(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    base = ("--configs", "disagg/SmallRoute-v3", "--dest", str(tmp_path / "dest"), "--work", str(tmp_path / "work"))
    r = _run(*base, *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("train_leaderboard.py: error: ") and message in lines[0], lines
    assert not (tmp_path / "dest").exists() and not (tmp_path / "work").exists()


@pytest.mark.parametrize("flag", ["--dest", "--work", "--log"])
def test_an_output_path_under_a_file_is_one_line(tmp_path: Path, flag: str) -> None:
    f = tmp_path / "file"
    f.write_text("")
    paths = {"--dest": str(tmp_path / "dest"), "--work": str(tmp_path / "work"), flag: str(f / "x")}
    r = _run("--configs", "disagg/SmallRoute-v3", *(a for kv in paths.items() for a in kv))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"train_leaderboard.py: error: {flag} '{f / 'x'}': '{f}' is a file, not a folder"]


@pytest.mark.parametrize("flag", ["--seeds", "--configs"])
def test_an_empty_list_is_refused(tmp_path: Path, flag: str) -> None:
    r = _run(flag, "--dest", str(tmp_path / "dest"), "--work", str(tmp_path / "work"))
    assert r.returncode == 2 and f"argument {flag}: expected at least one argument" in r.stderr


def test_a_finished_cell_is_skipped(tmp_path: Path) -> None:
    zp = tmp_path / "dest" / "SmallRoute-v3" / "seed0" / "model.zip"
    zp.parent.mkdir(parents=True)
    shutil.copy2(ROOT / "leaderboard" / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip", zp)
    r = _run("--configs", "disagg/SmallRoute-v3", "--seeds", "0", "--timesteps", "disagg/SmallRoute-v3=64",
             "--dest", str(tmp_path / "dest"), "--work", str(tmp_path / "work"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("skip disagg/SmallRoute-v3 seed 0:")
    assert zp.read_bytes() == (ROOT / "leaderboard" / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip").read_bytes()
