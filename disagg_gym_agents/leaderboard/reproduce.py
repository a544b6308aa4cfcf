"""The work of ``scripts/reproduce_leaderboard.sh`` as units, in the order the script starts them.

The script runs two pools of ``--jobs`` processes. The first holds the training runs, the tuning
searches and the bounds, which do not depend on each other (the learned agents never read the
tuned values); the second, once they are done, the benchmark cells. A pool starts a unit whenever a
process is free, so the order matters for the end: the longest units go first (list
scheduling, longest first), and the pool does not end with one long unit running alone while
the other cores idle. Lengths are judged by :func:`cost_hint`, a proxy that needs no
measurement; ``scripts/reproduce_estimate.py`` simulates the same schedule with measured costs.

    python -m disagg_gym_agents.leaderboard.reproduce searches TUNED [--done OUT_TUNED] [ENV_ID ...]
    python -m disagg_gym_agents.leaderboard.reproduce units [ENV_ID ...]
    python -m disagg_gym_agents.leaderboard.reproduce bounds DIR ENV_ID ...

print the searches (``config metric seeds policy split_step refine``; with ``--done``, those
``OUT_TUNED`` does not hold yet: a search writes its entry when it ends, so a resumed run
repeats only the unfinished ones) and the benchmark units (``config split``), one per line,
in that order; ``bounds`` computes the configs' bounds into
``DIR/bounds_cache.json`` ahead of the benchmark (``runner.warm_bounds``), a unit of the first
pool.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from disagg_gym.env.registration import registered_ids
from disagg_gym.errors import UserError
from disagg_gym.rng import RngStreams
from disagg_gym.scenario import load_scenario
from disagg_gym.wrappers.workload_seeds import EVAL_SEED_OFFSET
from disagg_gym_agents.leaderboard.cells import config_of, splits_of
from disagg_gym_agents.leaderboard.runner import warm_bounds
from disagg_gym_agents.tuning import policy_grid, read_tuned


@cache
def cost_hint(env_id: str) -> float:
    """Relative cost of one episode of ``env_id``, for ordering only (never reported as a time).

    The requests the config as written offers on the first evaluation seed (its arrivals,
    generated without simulating them: deterministic, well under a second), counted twice where
    each is a decision through the env (route and joint tasks): per-request simulation costs are
    similar across configs, and a routing decision costs about as much again.
    """
    scen = load_scenario(config_of(env_id))
    src = scen.workload.build(RngStreams(EVAL_SEED_OFFSET), horizon_s=scen.horizon_s, max_requests=scen.max_requests)
    n = sum(chunk.arrival_s.size for chunk in src)
    return float(n * (2 if scen.task in ("route", "joint") else 1))


@dataclass(frozen=True)
class Search:
    """One ``tune-baselines`` call of the tuned file: what it searches and how many candidates."""

    config: str  # standard config name (``large-joint``)
    metric: str
    seeds: int
    policy: str
    split_step: int
    refine: bool
    candidates: int

    def line(self) -> str:
        """The ``config metric seeds policy split_step refine`` line the script reads."""
        return f"{self.config} {self.metric} {self.seeds} {self.policy} {self.split_step} {int(self.refine)}"


def searches(tuned: dict[str, Any], configs: Sequence[str] = ()) -> list[Search]:
    """Every search of ``tuned`` (``read_tuned``) on ``configs`` (env ids; default all), the
    most candidate episodes x :func:`cost_hint` first (ties: config, then policy name).
    """
    by_name = {config_of(c): c for c in registered_ids()}
    want = {config_of(c) for c in configs}
    out: list[tuple[float, Search]] = []
    for cfg, pols in sorted(tuned.items()):
        if want and cfg not in want:
            continue
        for pol, e in sorted(pols.items()):
            step = int(e.get("split_step", 1))
            n = len(e.get("candidates") or policy_grid(cfg, pol, split_step=step))
            s = Search(cfg, str(e["metric"]), len(e["seeds"]), pol, step, bool(e.get("refine")), n)
            hint = cost_hint(by_name[cfg]) if cfg in by_name else 0.0
            out.append((-n * s.seeds * hint, s))
    return [s for _, s in sorted(out, key=lambda x: (x[0], x[1].config, x[1].policy))]


def benchmark_units(configs: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Every ``(env id, split)`` of ``configs`` (default: every standard id), the highest
    :func:`cost_hint` first (a config's splits together, in their order).
    """
    ids = list(configs) or registered_ids()
    ordered = sorted(ids, key=lambda c: (-cost_hint(c), c))
    return [(c, s) for c in ordered for s in splits_of(c)]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except UserError as exc:  # e.g. an unknown env id: scripts/reproduce_leaderboard.sh's --configs
        print(f"reproduce_leaderboard: {exc}", file=sys.stderr)
        return 2


def _main(args: list[str]) -> int:
    if args[:1] == ["searches"] and len(args) >= 2:
        done: dict[str, Any] = {}
        if args[2:3] == ["--done"] and len(args) >= 4:  # a resumed run: searches already written
            done, args = read_tuned(args[3]), args[:2] + args[4:]
        for s in searches(read_tuned(args[1]), args[2:]):
            if s.policy not in done.get(s.config, {}):
                print(s.line())
        return 0
    if args[:1] == ["bounds"] and len(args) >= 3:
        warm_bounds(args[2:], args[1])
        return 0
    if args[:1] == ["units"]:
        for c, s in benchmark_units(args[1:]):
            print(c, s)
        return 0
    print("usage: python -m disagg_gym_agents.leaderboard.reproduce searches TUNED [--done OUT_TUNED] [ENV_ID ...]"
          " | units [ENV_ID ...]"
          " | bounds DIR ENV_ID ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
