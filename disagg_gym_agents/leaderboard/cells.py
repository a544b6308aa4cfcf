"""Leaderboard cells: the (config, agent, training seed) units that are run, and where they live."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from disagg_gym.env.registration import standard_envs
from disagg_gym.errors import UserError
from disagg_gym_agents.registry import POLICIES

ROOT = Path(__file__).resolve().parents[2]
"""Repository root: relative policy paths and the default results resolve against it."""
DEFAULT_OUT = ROOT / "leaderboard"
DEFAULT_RESULTS = DEFAULT_OUT / "results.csv"
DEFAULT_CHECKPOINTS = DEFAULT_OUT / "checkpoints"
DEFAULT_EPISODES = 3
DEFAULT_LEARNED = "sb3:maskable_ppo=leaderboard/checkpoints"
"""The learned agent scored by default: every ``<EnvName>/seed<k>/model.zip`` under that folder."""


@dataclass(frozen=True)
class Cell:
    """One (config, agent, training seed): the unit that is run, appended and resumed."""

    config: str
    agent: str
    agent_kind: str  # "heuristic" or "sb3"
    policy: str  # make_policy spec, with a path relative to ROOT where possible
    train_seed: int | None
    upper_bound: bool = False


def env_name(env_id: str) -> str:
    """``disagg/SmallRoute-v1`` -> ``SmallRoute-v1`` (checkpoint folder and plot names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id.split("/")[-1])


def env_version(env_id: str) -> int:
    """The ``-vN`` suffix of an env id."""
    m = re.search(r"-v(\d+)$", env_id)
    if m is None:
        raise ValueError(f"env id {env_id!r} has no -vN version suffix")
    return int(m.group(1))


def _rel(path: Path) -> str:
    p = path.resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def resolve_path(text: str) -> Path:
    """A recorded policy path: absolute as is; relative to the repo root, else to the CWD."""
    p = Path(text)
    if p.is_absolute():
        return p
    return ROOT / p if (ROOT / p).exists() or not Path(text).exists() else Path(text).resolve()



def heuristics_for(task: str) -> list[str]:
    """Registered heuristic names that apply to ``task`` (each class declares its ``tasks``)."""
    return [n for n in POLICIES.names() if task in POLICIES.get(n).tasks]


def _task_of(env_id: str) -> str:
    for e in standard_envs():
        if e["id"] == env_id:
            return e["task"]
    raise ValueError(f"{env_id!r} is not a standard config")


def plan_cells(configs: Sequence[str], agents: Sequence[str]) -> list[Cell]:
    """Every cell of ``configs`` x ``agents``.

    Agent specs: ``heuristics`` (every applicable heuristic), a heuristic name or
    ``heuristic:NAME`` (skipped on configs it does not apply to), or ``sb3:NAME=DIR`` (a learned
    agent called NAME with one ``DIR/<EnvName>/seed<k>/model.zip`` per training seed; configs
    without a folder are skipped).

    Raises:
        ValueError: An unknown heuristic, a malformed spec or a missing DIR.
    """
    cells: list[Cell] = []
    for env_id in configs:
        task = _task_of(env_id)
        applicable = heuristics_for(task)
        for spec in agents:
            if spec == "heuristics":
                names = applicable
            elif spec.startswith("sb3:"):
                name, sep, folder = spec[4:].partition("=")
                if not sep or not name or not folder:
                    raise UserError(f"agent {spec!r}: expected sb3:NAME=DIR")
                base = resolve_path(folder)
                if not base.is_dir():
                    raise UserError(f"agent {spec!r}: no checkpoint folder {str(base)!r}")
                sub = base / env_name(env_id)
                seeds = sorted(
                    (int(m.group(1)), d / "model.zip")
                    for d in (sub.iterdir() if sub.is_dir() else [])
                    if (m := re.fullmatch(r"seed(\d+)", d.name)) and (d / "model.zip").is_file()
                )
                cells += [
                    Cell(env_id, name, "sb3", f"sb3:{_rel(p)}", s) for s, p in seeds
                ]
                continue
            else:
                hname = spec.split(":", 1)[1] if spec.startswith("heuristic:") else spec
                POLICIES.get(hname)  # raises for an unknown name
                names = [hname] if hname in applicable else []
            for n in names:
                ub = bool(getattr(POLICIES.get(n), "upper_bound", False))
                cells.append(Cell(env_id, n, "heuristic", f"heuristic:{n}", None, ub))
    return cells
