"""Policy paths recorded in leaderboard rows: relative to the repository, wherever the package is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from disagg_gym_agents.leaderboard import cells


def test_installed_package_records_paths_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed (non-editable) package lives in site-packages: no pyproject.toml beside it.
    site = tmp_path / "site-packages"
    site.mkdir()
    repo = tmp_path / "clone"
    model = repo / "leaderboard" / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"zip")
    monkeypatch.setattr(cells, "_PACKAGE_PARENT", site)
    monkeypatch.chdir(repo)
    assert cells.repo_root() == repo
    assert cells._rel(model) == "leaderboard/checkpoints/SmallRoute-v3/seed0/model.zip"
    assert cells.resolve_path("leaderboard/checkpoints/SmallRoute-v3/seed0/model.zip") == model
    outside = tmp_path / "elsewhere" / "model.zip"
    assert cells._rel(outside) == str(outside.resolve())  # outside the repository: absolute


def test_source_checkout_records_paths_relative_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "leaderboard").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.setattr(cells, "_PACKAGE_PARENT", checkout)
    monkeypatch.chdir(tmp_path)  # run from elsewhere: still relative to the checkout
    model = checkout / "leaderboard" / "m.zip"
    assert cells._rel(model) == "leaderboard/m.zip"
