"""The generated LEADERBOARD.md links the protocol page relative to its own folder (issue #20)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra

import re
from pathlib import Path

from disagg_gym_agents.leaderboard.markdown import protocol_link, render_markdown


def _checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "leaderboard.md").write_text("# protocol\n")
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return repo


def _target(md: str) -> str:
    m = re.search(r"\[docs/leaderboard\.md\]\(([^)]+)\)", md)
    assert m, md
    return m.group(1)


@pytest.mark.parametrize(("sub", "want"), [
    (".", "docs/leaderboard.md"),
    ("runs/lb", "../../docs/leaderboard.md"),
    ("docs", "leaderboard.md"),
])
def test_link_is_relative_to_the_markdown_folder(tmp_path: Path, sub: str, want: str) -> None:
    repo = _checkout(tmp_path)
    md_dir = repo / sub
    md_dir.mkdir(parents=True, exist_ok=True)
    link = _target(render_markdown([], md_dir, {}, {}))
    assert link == want
    assert (md_dir / link).resolve() == (repo / "docs" / "leaderboard.md").resolve()  # it opens


def test_outside_a_checkout_the_link_still_resolves_or_is_not_a_link(tmp_path: Path) -> None:
    md_dir = tmp_path / "elsewhere" / "deep"
    md_dir.mkdir(parents=True)
    text = protocol_link(md_dir)
    if text.startswith("["):
        assert (md_dir / _target(text)).resolve().is_file()
    else:
        assert "](" not in text and "docs/leaderboard.md" in text
