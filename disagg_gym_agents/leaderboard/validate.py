"""``validate``: replays every row of a results CSV (or a seeded sample of them) and names each
KPI that differs;
``check_omissions``: names every expected episode (``manifest.json``) that has no row.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from disagg_gym.errors import UserError
from disagg_gym_agents.leaderboard.cells import DEFAULT_RESULTS, Cell, env_version, is_upper_bound, resolve_path
from disagg_gym_agents.leaderboard.manifest import manifest_path, missing_rows, read_manifest
from disagg_gym_agents.leaderboard.results import META_COLUMNS, NOT_REPLAYED, read_results
from disagg_gym_agents.leaderboard.runner import progress_bar, sha256_of, run_cell
from disagg_gym_agents.leaderboard.stats import to_float
from disagg_gym_agents.registry import POLICIES

REL_TOL = 1e-9
"""Relative tolerance of ``validate`` (replays are bit-exact in practice; this absorbs nothing
but the last-digit noise of a float written and read back on another platform)."""
ABS_TOL = 1e-12


def _same(recorded: str, replayed: Any) -> bool:
    a = to_float(recorded)
    b = to_float(replayed)
    if a is not None and b is not None:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return str(recorded) == ("" if replayed is None else str(replayed))


def check_filters(
    p: Path, rows: Sequence[dict[str, str]], configs: Sequence[str] | None, agents: Sequence[str] | None
) -> None:
    """Every ``--configs`` / ``--agents`` value must match a row (one line naming those that do not).

    Raises:
        UserError: ``--configs: no rows with config 'X' in FILE (it has: ...)``.
    """
    for flag, wanted, col in (("--configs", configs, "config"), ("--agents", agents, "agent")):
        have = sorted({r[col] for r in rows})
        bad = [w for w in wanted or () if w not in have]
        if bad:
            raise UserError(
                f"{flag}: no rows with {col} {', '.join(map(repr, bad))} in {p} (it has: {', '.join(have)})"
            )


def sample_rows(rows: Sequence[Any], sample: int | None, seed: int = 0) -> list[Any]:
    """``sample`` of ``rows`` drawn by ``random.Random(seed)``, kept in their order.

    ``None``, or a sample at least ``len(rows)``, keeps them all.

    Raises:
        UserError: A sample size that is not a positive integer.
    """
    if sample is None:
        return list(rows)
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise UserError(f"--sample must be a positive integer (got {sample!r})")
    if sample >= len(rows):
        return list(rows)
    picked = sorted(random.Random(seed).sample(range(len(rows)), sample))
    return [rows[k] for k in picked]


def check_omissions(
    path: str | Path,
    configs: Sequence[str] | None = None,
    agents: Sequence[str] | None = None,
    *,
    require_manifest: bool = True,
) -> list[str]:
    """One line per expected cell (``manifest.json`` beside the results) with missing rows.

    Within the ``configs`` / ``agents`` filters; a filter value that matches no row raises.

    Raises:
        UserError: No manifest (unless ``require_manifest`` is false), a bad manifest, or a
            filter that matches no row.
    """
    p = Path(path)
    rows = read_results(p)
    check_filters(p, rows, configs, agents)
    mp = manifest_path(p)
    expected = read_manifest(mp)
    if expected is None:
        if require_manifest:
            raise UserError(
                f"{mp}: no manifest of expected cells beside {p.name}, so missing rows cannot be "
                "detected (benchmark writes it; pass --no-manifest to only replay the rows)"
            )
        return []
    return missing_rows(expected, rows, configs, agents)


def _identity_problem(agent: str, kind: str, policy: str, upper_bound: str) -> str | None:
    """Why a row's ``agent`` / ``agent_kind`` / ``policy`` / ``upper_bound`` do not fit together
    (``None`` if they do). The episode replay runs ``policy``; the tables group by ``agent`` and
    pick the best heuristic by ``upper_bound``, so an edited name or flag would move them unseen.
    """
    flag = upper_bound == "True"
    if kind == "heuristic":
        if policy != f"heuristic:{agent}":
            return f"agent {agent!r} but policy {policy!r} (a heuristic row's policy is heuristic:<agent>)"
        try:
            registered = is_upper_bound(agent)
        except ValueError as exc:
            return f"cannot replay: {exc}"
        if flag != registered:
            return (f"upper_bound {upper_bound} but {agent!r} is "
                    f"{'an oracle reference' if registered else 'not an oracle reference'} (upper_bound {registered})")
    elif kind == "sb3":
        if not policy.startswith("sb3:"):
            return f"agent_kind sb3 but policy {policy!r}"
        if flag:
            return "upper_bound True on a learned agent's row"
        if agent in POLICIES:
            return f"a learned agent named {agent!r}, a heuristic's name"
    else:
        return f"unknown agent_kind {kind!r} (expected heuristic or sb3)"
    return None


def validate(
    path: str | Path = DEFAULT_RESULTS,
    configs: Sequence[str] | None = None,
    agents: Sequence[str] | None = None,
    *,
    progress: bool = True,
    sample: int | None = None,
    sample_seed: int = 0,
) -> list[str]:
    """Replays every row of a results CSV; returns one message per mismatch (empty: valid).

    With ``sample=N`` only N of the rows selected by ``configs`` / ``agents`` are replayed, in
    total (not per config): ``random.Random(sample_seed).sample`` over those rows in file order,
    so the same file, filters and seed pick the same rows (all rows when N is at least their
    number). See ``sample_rows``.

    Each row's episode is re-run from its recorded config, overrides, policy, params (``{}``
    when the file has no ``params`` column) and workload seed; every KPI column, and ``score``, must match within ``REL_TOL`` (relative) /
    ``ABS_TOL``. A missing or changed checkpoint (SHA-256) and an env id whose version differs
    from the row's are reported too. A KPI the replay has but the row lacks is an error.

    Raises:
        ValueError: A missing or empty results file.
    """
    import torch

    torch.set_num_threads(1)
    p = Path(path)
    if not p.exists():
        raise UserError(f"results file not found: {str(p)!r}")
    if not p.is_file():
        raise UserError(f"{str(p)!r} is not a regular file, expected a results CSV")
    rows = read_results(p)
    if not rows:
        raise UserError(f"{p}: no result rows")
    check_filters(p, rows, configs, agents)
    numbered = [
        (i, r) for i, r in enumerate(rows, start=2)  # line number in the file (header = 1)
        if (not configs or r["config"] in configs) and (not agents or r["agent"] in agents)
    ]
    if not numbered:
        raise UserError(
            f"{p}: no row has one of the configs {list(configs or [])} and one of the agents "
            f"{list(agents or [])}: nothing to validate"
        )
    numbered = sample_rows(numbered, sample, sample_seed)
    groups: dict[tuple[str, ...], list[tuple[int, dict[str, str]]]] = {}
    for i, r in numbered:
        key = (r["config"], r["agent"], r["agent_kind"], r["policy"], r["train_seed"],
               r.get("upper_bound", ""), r.get("overrides") or "{}", r["split"], r.get("params") or "{}")
        groups.setdefault(key, []).append((i, r))
    errors: list[str] = []
    bar = progress_bar(len(numbered), "validate", progress)
    def where(i: int, r: dict[str, str]) -> str:
        return (f"{p}:{i} (config={r['config']}, split={r['split']}, agent={r['agent']}, "
                f"train_seed={r['train_seed'] or '-'}, eval_seed={r['eval_seed']})")

    for (cfg, agent, kind, policy, ts, ub, ov, split, params), items in groups.items():

        why = _identity_problem(agent, kind, policy, ub)
        if why is not None:  # the columns the tables rank by, not replayed by the episodes
            for i, r in items:
                errors.append(f"{where(i, r)}: {why}")
            bar.update(len(items))
            continue
        try:
            if int(items[0][1]["env_version"]) != env_version(cfg):
                raise ValueError(f"env version {items[0][1]['env_version']} != id {cfg}")
            if kind == "sb3":
                mp = resolve_path(policy[4:])
                beside = p.resolve().parent.parent / policy[4:]  # the checkout <results.csv is in>/..
                if not mp.is_file() and not Path(policy[4:]).is_absolute() and beside.is_file():
                    mp = beside  # validating a checkout's file from another folder
                    policy = f"sb3:{beside}"
                if not mp.is_file():
                    raise ValueError(f"checkpoint {str(mp)!r} not found")
                want = items[0][1].get("model_sha256", "")
                if want and sha256_of(mp) != want:
                    raise ValueError(f"checkpoint {str(mp)!r} has changed (SHA-256 mismatch)")
            # the row's own params, not the current tuned file's: a row replays as it was run
            cell = Cell(cfg, agent, kind, policy, int(ts) if ts else None, ub == "True", split, params)
            replay = run_cell(cell, [int(r["eval_seed"]) for _, r in items], json.loads(ov))
        except Exception as exc:  # noqa: BLE001 - reported per row, validation goes on
            for i, r in items:
                errors.append(f"{where(i, r)}: cannot replay: {exc}")
            bar.update(len(items))
            continue
        for (i, r), new in zip(items, replay):
            for key, val in new.items():
                if key in NOT_REPLAYED:
                    continue
                if key not in r:
                    errors.append(f"{where(i, r)}: KPI {key} missing from the row (replay: {val!r})")
                elif not _same(r[key], val):
                    errors.append(
                        f"{where(i, r)}: KPI {key} recorded {r[key]} but replay gives {val!r}"
                    )
            for key in r:
                if key not in new and key not in META_COLUMNS and r[key] != "":
                    errors.append(f"{where(i, r)}: KPI {key} recorded {r[key]} but replay has none")
        bar.update(len(items))
    bar.close()
    return errors

