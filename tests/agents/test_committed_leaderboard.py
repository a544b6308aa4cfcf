"""The committed leaderboard still replays: a sample of its rows (fast configs) re-run exactly.

The full check is ``disagg-gym validate`` (minutes); this catches a simulator change that
silently invalidates LEADERBOARD.md without bumping the env version.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.leaderboard import validate

RESULTS = Path(__file__).resolve().parents[2] / "leaderboard" / "results.csv"


@pytest.mark.skipif(not RESULTS.exists(), reason="no committed leaderboard/results.csv")
def test_committed_rows_replay_exactly() -> None:
    problems = validate(
        RESULTS,
        configs=["disagg/SmallRoute-v0", "disagg/HeteroRoute-v0"],
        agents=["jsq", "kv_aware", "round_robin"],
        progress=False,
    )
    assert problems == []
