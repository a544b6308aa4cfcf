"""The manifest of expected cells: what ``validate`` checks the results file against for omissions.

``benchmark`` records, before it runs anything, every cell it was asked for in ``manifest.json``
beside ``results.csv``: one entry per (config, split, agent, training seed, overrides) with the
evaluation seeds it owes. Entries accumulate over invocations (a union, under a lock, written
atomically), like the append-only results. ``validate`` then fails for every expected episode
that has no row (issue #15: a leaderboard must not pass because rows were left out).

Format (``format`` 1)::

    {"format": 1,
     "cells": [{"config": "disagg/SmallRoute-v3", "split": "test", "agent": "jsq",
                "train_seed": null, "overrides": "{}", "eval_seeds": [10000, ..., 10009]}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from disagg_gym.errors import UserError
from disagg_gym.io import atomic_write_text, locked
from disagg_gym_agents.leaderboard.cells import Cell
from disagg_gym_agents.leaderboard.results import CellKey, cell_key, key_of

MANIFEST_NAME = "manifest.json"
FORMAT = 1


def manifest_path(results: str | Path) -> Path:
    """``manifest.json`` beside a results CSV."""
    return Path(results).with_name(MANIFEST_NAME)


def _entry_key(e: dict[str, Any]) -> CellKey:
    return cell_key(e)


def read_manifest(path: str | Path) -> dict[CellKey, set[int]] | None:
    """``{cell key: expected eval seeds}`` of a manifest; ``None`` if the file does not exist.

    Raises:
        UserError: Not JSON, or not a manifest (one line naming the file and the problem).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: cannot read the manifest ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{p}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("cells"), list):
        raise UserError(f"{p}: not a leaderboard manifest (expected format {FORMAT} with a 'cells' list)")
    out: dict[CellKey, set[int]] = {}
    for i, e in enumerate(data["cells"]):
        try:
            ts = e["train_seed"]
            key = cell_key({**e, "train_seed": "" if ts is None else str(ts)})
            seeds = {int(s) for s in e["eval_seeds"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{p}: cells[{i}]: malformed entry ({type(exc).__name__}: {exc})") from None
        out.setdefault(key, set()).update(seeds)
    return out


def _write(path: Path, cells: dict[CellKey, set[int]]) -> None:
    entries = [
        {
            "config": k[0],
            "split": k[4],
            "agent": k[1],
            "train_seed": int(k[2]) if k[2] else None,
            "overrides": k[3],
            "eval_seeds": sorted(v),
        }
        for k, v in sorted(cells.items())
    ]
    body = ",\n".join("  " + json.dumps(e) for e in entries)  # one cell per line: diffs stay readable
    text = f'{{"format": {FORMAT}, "cells": [\n{body}\n]}}\n'

    atomic_write_text(path, text)


def update_manifest(
    path: str | Path, cells: Sequence[Cell], eval_seeds: Sequence[int], overrides_json: str
) -> None:
    """Adds ``cells`` x ``eval_seeds`` to the manifest (created if absent; safe with concurrent runs)."""
    p = Path(path)
    with locked(p):
        have = read_manifest(p) or {}
        before = {k: set(v) for k, v in have.items()}
        for c in cells:
            have.setdefault(key_of(c, overrides_json), set()).update(int(s) for s in eval_seeds)
        if have != before or not p.exists():
            _write(p, have)


def manifest_from_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Writes the manifest that expects exactly the cells and seeds of ``rows``.

    For results produced before manifests existed (the lead's choice: it records what the file
    holds, so later omissions are caught; it cannot reveal rows that were never written).
    """
    cells: dict[CellKey, set[int]] = {}
    for r in rows:
        cells.setdefault(cell_key(r), set()).add(int(r["eval_seed"]))
    _write(Path(path), cells)


def missing_rows(
    expected: dict[CellKey, set[int]],
    rows: Iterable[dict[str, Any]],
    configs: Sequence[str] | None = None,
    agents: Sequence[str] | None = None,
) -> list[str]:
    """One line per expected cell (within the filters) with episodes that have no row."""
    have: dict[CellKey, set[int]] = {}
    for r in rows:
        have.setdefault(cell_key(r), set()).add(int(r["eval_seed"]))
    out = []
    for k, seeds in sorted(expected.items()):
        if (configs and k[0] not in configs) or (agents and k[1] not in agents):
            continue
        gone = sorted(seeds - have.get(k, set()))
        if gone:
            shown = ", ".join(map(str, gone[:10])) + (", ..." if len(gone) > 10 else "")
            out.append(
                f"config={k[0]}, split={k[4]}, agent={k[1]}, train_seed={k[2] or '-'}"
                + (f", overrides={k[3]}" if k[3] != "{}" else "")
                + f": {len(gone)} of {len(seeds)} expected episode(s) have no row (eval_seed {shown})"
            )
    return out
