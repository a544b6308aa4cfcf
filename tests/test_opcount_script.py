"""scripts/opcount.py: bytecodes per simulated request (a deterministic speed figure)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "opcount.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_counts_are_the_same_in_two_runs_and_list_the_hot_functions() -> None:
    a, b = run("--config", "small-route", "--horizon", "2", "--top", "60"), run("--config", "small-route", "--horizon", "2", "--top", "60")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout  # not disturbed by machine load
    m = re.search(r"new: ([\d,]+) requests, [\d,]+ events, ([\d,]+) bytecodes", a.stdout)
    assert m and int(m.group(1).replace(",", "")) > 0 and int(m.group(2).replace(",", "")) > 0
    assert "sim/engine.py:Engine.run_until" in a.stdout


def test_bad_arguments_are_one_line() -> None:
    r = run("--grid", "1", "4")
    assert r.returncode == 2 and "--grid: instances must be an integer >= 2" in r.stderr
    r = run("--config", "small-route", "--ref", "no-such-rev")
    assert r.returncode == 1 and r.stderr.strip().startswith("opcount: --ref 'no-such-rev' is neither")
    assert len(r.stderr.strip().splitlines()) == 1
