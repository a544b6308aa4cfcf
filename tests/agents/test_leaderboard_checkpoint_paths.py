"""Rows name learned checkpoints by a portable path, whoever installed the package (issue #15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from disagg_gym_agents.leaderboard.cells import plan_cells, resolve_path


def test_checkpoint_under_the_cwd_is_recorded_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint folder given relative to the CWD is recorded relative to it, not as an
    absolute path into one checkout (the SmallRoute-v3 rows once named a deleted worktree)."""
    zp = tmp_path / "ck" / "SmallRoute-v3" / "seed3" / "model.zip"
    zp.parent.mkdir(parents=True)
    zp.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    cells = plan_cells(["disagg/SmallRoute-v3"], ["sb3:agent=ck"], splits=["test"])
    assert [(c.agent, c.train_seed, c.policy) for c in cells] == [
        ("agent", 3, "sb3:ck/SmallRoute-v3/seed3/model.zip")
    ]
    assert resolve_path(cells[0].policy[4:]) == zp
