"""scripts/learned_summary.py, tuned_table.py, headroom_from_rows.py, measure_headroom.py,
reproduce_estimate.py: bad input is one line, exit 2, before any work."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture
def bad_csv(tmp_path: Path) -> Path:
    p = tmp_path / "bad.csv"
    p.write_text("a,b\n1,2\n")
    return p


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("learned_summary.py", ("--config", "disagg/Nope-v1"), "'disagg/Nope-v1' is not a standard config"),
        ("learned_summary.py", ("--results", "{missing}"), "--results '{missing}': results file not found"),
        ("learned_summary.py", ("--results", "{bad}"), "{bad}:1: not a results file: header lacks column 'config'"),
        ("headroom_from_rows.py", ("--configs", "disagg/Nope-v1"), "'disagg/Nope-v1' is not a standard config"),
        ("headroom_from_rows.py", ("--configs", "disagg/SmallRoute-v3", "--splits", "nope"),
         "--splits 'nope': not a split of disagg/SmallRoute-v3"),
        ("headroom_from_rows.py", ("--configs", "disagg/SmallRoute-v3", "--results", "{missing}"),
         "--results '{missing}': results file not found"),
        ("headroom_from_rows.py", ("--configs", "disagg/SmallRoute-v3", "--results", "{bad}"),
         "{bad}:1: not a results file"),
        ("tuned_table.py", ("--tuned", "{missing}"), "--tuned '{missing}': file not found"),
        ("tuned_table.py", ("--tuned", "{bad}"), "{bad}"),
        ("tuned_table.py", ("--before", "{missing}"), "--before '{missing}': file not found"),
        ("measure_headroom.py", ("--config", "small-route", "--out", "{dir}"),
         "--out '{dir}': is a directory, expected a file path"),
        ("measure_headroom.py", ("--config", "small-route", "--out", "{under_file}"),
         "--out '{under_file}': '{bad}' is a file, not a folder"),
        ("measure_headroom.py", ("--config", "small-route", "--out", "{missing}", "--markdown", "{under_file}"),
         "--markdown '{under_file}': '{bad}' is a file, not a folder"),
        ("measure_headroom.py", ("--config", "small-route", "--out", "{missing}", "--set", "foo"), "override 'foo'"),
        ("measure_headroom.py", ("--config", "nope", "--out", "{missing}"), "unknown config 'nope'"),
        ("reproduce_estimate.py", ("--from-json", "{bad}"), "--from-json '{bad}': not a --json file of this script"),
        ("reproduce_estimate.py", ("--from-json", "{missing}"), "'{missing}': No such file or directory"),
        ("reproduce_estimate.py", ("--configs", "disagg/Nope-v1"), "'disagg/Nope-v1' is not a standard config"),
        ("reproduce_estimate.py", ("--configs", "disagg/SmallRoute-v3", "--json", "{dir}"),
         "--json '{dir}': is a directory, expected a file path"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, bad_csv: Path, script: str, args: tuple[str, ...],
                               message: str) -> None:
    subst = {"missing": str(tmp_path / "missing.csv"), "bad": str(bad_csv), "dir": str(tmp_path),
             "under_file": str(bad_csv / "x")}
    r = _run(script, *(a.format(**subst) for a in args))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{script}: error: {message.format(**subst)}"), lines
    assert not (tmp_path / "missing.csv").exists()


@pytest.mark.parametrize("flag", ["--seeds", "--jobs"])
def test_measure_headroom_counts_are_positive(flag: str) -> None:
    r = _run("measure_headroom.py", "--config", "small-route", flag, "0")
    assert r.returncode == 2 and f"argument {flag}: expected a positive integer (got '0')" in r.stderr


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--jobs", "0", "expected a positive integer (got '0')"),
    ("--train-steps", "-1", "expected a positive integer (got '-1')"),
    ("--tables-s", "nan", "expected a finite number >= 0 (got 'nan')"),
    ("--bounds-cpu-s", "-1", "expected a finite number >= 0 (got '-1')"),
])
def test_reproduce_estimate_refuses_bad_numbers(flag: str, value: str, message: str) -> None:
    r = _run("reproduce_estimate.py", flag, value)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"reproduce_estimate.py: error: argument {flag}: {message}")
