"""Leaderboard cells: the (config, split, agent, training seed) units that are run, and where they live."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from disagg_gym.cluster.admission import split_name
from disagg_gym.env.registration import standard_env_for
from disagg_gym.errors import UserError
from disagg_gym.scenario import TEST_SPLIT, EvaluationConfig, load_scenario
from disagg_gym_agents.registry import POLICIES
from disagg_gym_agents.tuning import params_json, params_of

_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def repo_root() -> Path:
    """The repository the leaderboard lives in: the checkout this package runs from (a source
    tree or an editable install), else the working directory (an installed package: the
    commands run from the repository root, as the docs show).
    """
    return _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").is_file() else Path.cwd()


ROOT = repo_root()
"""Repository root at import: relative policy paths and the default results resolve against it."""
DEFAULT_OUT = ROOT / "leaderboard"
DEFAULT_RESULTS = DEFAULT_OUT / "results.csv"
DEFAULT_CHECKPOINTS = DEFAULT_OUT / "checkpoints"
DEFAULT_EPISODES = 10
"""Held-out evaluation episodes per cell (workload seeds 10000..10009; issue #15: at least 10)."""
DEFAULT_LEARNED = "sb3:maskable_ppo=leaderboard/checkpoints"
"""The learned agent scored by default: every ``<EnvName>/seed<k>/model.zip`` under that folder."""


@dataclass(frozen=True)
class Cell:
    """One (config, split, agent, training seed): the unit that is run, appended and resumed."""

    config: str
    agent: str
    agent_kind: str  # "heuristic" or "sb3"
    policy: str  # make_policy spec, with a path relative to ROOT where possible
    train_seed: int | None
    upper_bound: bool = False
    split: str = TEST_SPLIT  # "test" or "shift:<name>" (the config's evaluation.shifts)
    params: str = "{}"  # the heuristic's keyword arguments (canonical JSON; tuned, or {} = defaults)


def env_name(env_id: str) -> str:
    """``disagg/SmallRoute-v3`` -> ``SmallRoute-v3`` (checkpoint folder and plot names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id.split("/")[-1])


def env_version(env_id: str) -> int:
    """The ``-vN`` suffix of an env id."""
    m = re.search(r"-v(\d+)$", env_id)
    if m is None:
        raise ValueError(f"env id {env_id!r} has no -vN version suffix")
    return int(m.group(1))


def _rel(path: Path) -> str:
    """``path`` as recorded in a row: relative to the repository root (or, outside it, to the
    working directory) so that the rows replay on any clone; absolute only when it lies
    outside both.
    """
    p = path.resolve()
    for base in (repo_root(), Path.cwd()):
        try:
            return p.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return str(p)


def resolve_path(text: str) -> Path:
    """A recorded policy path: absolute as is; relative to the repo root, else to the CWD."""
    p = Path(text)
    if p.is_absolute():
        return p
    root = repo_root()
    return root / p if (root / p).exists() or not p.exists() else p.resolve()



def is_upper_bound(name: str) -> bool:
    """Whether heuristic ``name`` is an oracle reference (``upper_bound = True``: it uses what a
    real system lacks); raises ``UserError`` for an unknown name.
    """
    return bool(getattr(POLICIES.get(name), "upper_bound", False))


def heuristics_for(task: str) -> list[str]:
    """Registered heuristic names that apply to ``task`` (each class declares its ``tasks``)."""
    return [n for n in POLICIES.names() if task in POLICIES.get(n).tasks]


def _entry_of(env_id: str) -> dict[str, str]:
    """The standard env an id (or a config name: ``small-route``) names."""
    e = standard_env_for(env_id)  # an old version of an id: one line naming the current one
    if e is None:
        raise UserError(f"{env_id!r} is not a standard config or env id (see `disagg-gym list`)")
    return e


def config_of(env_id: str) -> str:
    """``disagg/SmallRoute-v3`` -> ``small-route`` (``UserError`` if not a current standard id)."""
    return _entry_of(env_id)["config"]


def _task_of(env_id: str) -> str:
    return _entry_of(env_id)["task"]


def evaluation_of(env_id: str) -> EvaluationConfig:
    """The ``evaluation`` section (training distribution, splits) of a standard config."""
    return load_scenario(_entry_of(env_id)["config"]).evaluation


def splits_of(env_id: str) -> list[str]:
    """``["test", "shift:<name>", ...]``: every split a standard config defines."""
    return evaluation_of(env_id).splits()


def split_overrides(env_id: str, split: str) -> dict[str, Any]:
    """The env overrides that turn ``env_id`` into ``split`` (``{}`` for ``test``).

    Raises:
        UserError: A split the config does not define.
    """
    try:
        return evaluation_of(env_id).overrides_of(split)
    except ValueError as exc:  # ConfigError
        raise UserError(f"{env_id}: {exc}") from None


def with_split(env_id: str, split: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's ``overrides`` plus the split's own (:func:`split_overrides`).

    Raises:
        UserError: An override sets a key the split sets too (or one inside the other): the
            split's value would silently win while the rows recorded the caller's.
    """
    own = split_overrides(env_id, split)
    mine = dict(overrides or {})
    for k in mine:
        for s in own:
            if k == s or k.startswith(s + ".") or s.startswith(k + ".") or k.startswith(s + "[") or s.startswith(k + "["):
                raise UserError(
                    f"--set {k}={mine[k]!r} conflicts with split {split!r} of {env_id}, which sets {s}={own[s]!r}; "
                    f"leave that split out (--splits) or drop the --set"
                )
    return {**mine, **own}


def check_splits(configs: Sequence[str], splits: Sequence[str] | None) -> None:
    """Every name in ``splits`` must be a split of at least one of ``configs`` (one line if not)."""
    if not splits:
        return
    have = sorted({s for c in configs for s in splits_of(c)})
    for s in splits:
        if s not in have:
            raise UserError(f"--splits: no config defines split {s!r} (expected one of: {', '.join(have)})")


def plan_cells(
    configs: Sequence[str],
    agents: Sequence[str],
    splits: Sequence[str] | None = None,
    tuned: dict[str, Any] | None = None,
) -> list[Cell]:
    """Every cell of ``configs`` x splits x ``agents``.

    ``splits`` restricts each config's splits (default: every split the config defines: ``test``
    and each ``shift:<name>`` of its ``evaluation.shifts``); a config lacking a named split is
    skipped for it.

    Agent specs: ``heuristics`` (every applicable heuristic), a heuristic name or
    ``heuristic:NAME`` (skipped on configs it does not apply to), or ``sb3:NAME=DIR`` (a learned
    agent called NAME with one ``DIR/<EnvName>/seed<k>/model.zip`` per training seed; configs
    without a folder are skipped).

    ``tuned`` is a tuned file's mapping (``disagg_gym_agents.tuning.read_tuned``): a heuristic
    with an entry for the config (tuned on the config as written) gets its ``params``, the same
    on every split (tuned on the training distribution's validation seeds, never per split);
    any other cell gets ``{}`` (the registered defaults).

    Raises:
        ValueError: An unknown heuristic, a malformed spec or a missing DIR.
    """
    cells: list[Cell] = []
    for env_id in configs:
        task = _task_of(env_id)
        applicable = heuristics_for(task)
        agent_cells = [
            replace(c, params=params_json(params_of(tuned, env_id, c.agent, as_written=True)))
            if tuned and c.agent_kind == "heuristic" else c
            for c in _agent_cells(env_id, applicable, agents)
        ]
        for split in splits_of(env_id):
            if splits and split not in splits:
                continue
            cells += [replace(c, split=split) for c in agent_cells]
    return cells


def spec_agent(spec: str) -> tuple[str, str, str]:
    """``(kind, name, folder)`` an agent spec names: ``("sb3", NAME, DIR)`` for ``sb3:NAME=DIR``,
    ``("heuristic", NAME, "")`` for ``NAME`` or ``heuristic:NAME``, ``("heuristics", "", "")``.
    """
    if spec == "heuristics":
        return "heuristics", "", ""
    if spec.startswith("sb3:"):
        name, _, folder = spec[4:].partition("=")
        return "sb3", name, folder
    return "heuristic", spec.split(":", 1)[1] if spec.startswith("heuristic:") else spec, ""


def _agent_cells(env_id: str, applicable: list[str], agents: Sequence[str]) -> list[Cell]:
    cells: list[Cell] = []
    for spec in agents:
        kind, name, folder = spec_agent(spec)
        if kind == "heuristics":
            names = applicable
        elif kind == "sb3":
            if not name or not folder:
                raise UserError(f"agent {spec!r}: expected sb3:NAME=DIR")
            if name in POLICIES:  # its rows would be read as that heuristic's
                raise UserError(f"agent {spec!r}: {name!r} is a heuristic's name; give the learned agent another")
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
            POLICIES.get(name)  # raises for an unknown name
            # a composition <router>+<admission> applies where its router does
            names = [name] if split_name(name)[0] in applicable else []
        for n in names:
            cells.append(Cell(env_id, n, "heuristic", f"heuristic:{n}", None, is_upper_bound(n)))
    return cells
