"""``disagg-gym tune-baselines``: tunes baseline parameters on validation seeds only.

Admission thresholds (``<router>+<admission>``: ``alpha`` of ``ttft_guard``, the queue limit
of ``queue_guard``, Mooncake's two factors) and the DistServe-style static prefill:decode split
(``static_split``) are chosen by grid search on *validation* workload seeds
(``VALIDATION_SEED_OFFSET + k``, 20000+), never on the held-out test seeds (10000+) the
leaderboard reports, and never on training seeds (1000000+). The chosen values, the seeds used,
the metric and every candidate's score are written to a YAML file (default
``leaderboard/tuned.yaml``) that leaderboard rows record and ``tuned_params`` reads back.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from disagg_gym.argtypes import positive_int
from disagg_gym.cluster.admission import split_name
from disagg_gym.config import read_yaml
from disagg_gym.env.registration import standard_envs
from disagg_gym.env.serving_env import DisaggServingEnv
from disagg_gym.errors import UserError
from disagg_gym.io import atomic_write_text, check_output_file, locked
from disagg_gym.scenario import load_scenario
from disagg_gym_agents.base import parse_overrides
from disagg_gym_agents.baselines import static_split_candidates
from disagg_gym_agents.evaluation import run_episode
from disagg_gym_agents.factory import make_policy
from disagg_gym_agents.registry import POLICIES, add_import_arg, import_policy_modules

VALIDATION_SEED_OFFSET = 20_000
"""First validation workload seed: tuning uses ``VALIDATION_SEED_OFFSET + k``."""
TEST_SEED_RANGE = (10_000, VALIDATION_SEED_OFFSET)
"""Held-out test seeds (``evaluation.EVAL_SEED_OFFSET + k``): tuning refuses them."""
TRAIN_SEED_LOW = 1_000_000
"""Training seeds start here (``evaluation.TRAIN_SEED_LOW``): tuning refuses them too."""
DEFAULT_TUNED_PATH = Path("leaderboard/tuned.yaml")

LOWER_IS_BETTER = ("cost_per_1m_tokens_usd", "cost_per_1m_good_tokens_usd", "energy_per_request_j",
                   "energy_per_good_request_j", "ttft_p99_s", "tpot_p99_s", "rejection_rate")

ADMISSION_GRIDS: dict[str, dict[str, list[Any]]] = {
    "none": {},
    "ttft_guard": {"alpha": [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0]},
    "queue_guard": {"max_queued_requests": [2, 4, 8, 16, 32, 64]},
    "mooncake": {"ttft_alpha": [0.75, 1.0, 1.5, 2.0], "tpot_alpha": [1.0, 1.5, 2.0]},
}
"""Default search grids of the admission controllers' parameters."""

ROUTER_GRIDS: dict[str, dict[str, list[Any]]] = {
    "spillover": {"alpha": [0.5, 0.75, 1.0, 1.5, 2.0]},
}
"""Default search grids of parametrised route heuristics (``spillover``'s burst threshold
``alpha``: it only acts on clusters with on-demand instances, e.g. HybridCostRoute)."""


def validation_seeds(n: int) -> list[int]:
    """The first ``n`` validation seeds (20000, 20001, ...)."""
    if n < 1:
        raise UserError(f"--seeds must be a positive integer (got {n})")
    if n > TRAIN_SEED_LOW - VALIDATION_SEED_OFFSET:  # before a list of them (--seeds 1e9: MemoryError)
        raise UserError(
            f"--seeds must be at most {TRAIN_SEED_LOW - VALIDATION_SEED_OFFSET}, the validation seeds "
            f"{VALIDATION_SEED_OFFSET}..{TRAIN_SEED_LOW - 1} (got {n})"
        )
    return [VALIDATION_SEED_OFFSET + k for k in range(n)]


def check_validation_seeds(seeds: Sequence[int]) -> None:
    """Raises ``UserError`` naming any seed outside the validation range [20000, 1000000)."""
    for s in seeds:
        if not VALIDATION_SEED_OFFSET <= int(s) < TRAIN_SEED_LOW:
            kind = "a test seed" if TEST_SEED_RANGE[0] <= s < TEST_SEED_RANGE[1] else "not a validation seed"
            raise UserError(
                f"seed {s} is {kind}: tuning uses validation seeds only "
                f"({VALIDATION_SEED_OFFSET} <= seed < {TRAIN_SEED_LOW})"
            )


def resolve_config(name: str) -> str:
    """A standard config name (``small-route``) or env id (``disagg/SmallRoute-v3``) -> config."""
    if "/" in name and not name.endswith((".yaml", ".yml")):

        for e in standard_envs():
            if e["id"] == name:
                return e["config"]
        raise UserError(f"unknown env id {name!r}; see `disagg-gym list`")
    return name


def policy_grid(
    config: str, policy: str, overrides: dict[str, Any] | None = None, split_step: int = 1
) -> list[dict[str, Any]]:
    """Candidate keyword arguments of ``policy`` on ``config``.

    ``<router>+<admission>``: the product of ``ADMISSION_GRIDS[admission]``; a router in
    ``ROUTER_GRIDS`` (``spillover``): the product of its grid; ``static_split``:
    every per-GPU-type prefill count the env's allocation mask allows that keeps a prefill and
    a decode instance (with ``split_step`` > 1 only multiples of it, the mask's lowest and
    highest counts and the initial count: ``static_split_candidates``);
    ``sla_planner``: headroom 1.0-6.0; ``splitwise``: max_borrow 1, 2, 4; anything else: ``[{}]``.
    """
    _, adm = split_name(policy)
    if adm is not None or policy in ROUTER_GRIDS:
        grid = ADMISSION_GRIDS.get(adm, {}) if adm is not None else ROUTER_GRIDS[policy]
        keys = list(grid)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))] or [{}]
    if policy == "static_split":
        return [{"prefill_counts": c} for c in static_split_candidates(load_scenario(config, overrides), split_step)]
    if policy == "sla_planner":
        # Extended twice at the edge (validation seeds 20000-20004, slo_tokens/s): 1.5 was best
        # of (1.0, 1.2, 1.5) on HeteroAllocate-v3 (retired; 221,983), then 3.0 of (..., 2.0, 3.0) on
        # LargeJoint-v2 (461,662 against 321,116 at 2.0).
        return [{"headroom": h} for h in (1.0, 1.2, 1.5, 2.0, 3.0, 4.0, 6.0)]
    if policy == "splitwise":
        return [{"max_borrow": b} for b in (1, 2, 4)]
    return [{}]


def score_policy(
    config: str,
    policy: str,
    params: dict[str, Any],
    seeds: Sequence[int],
    metric: str,
    overrides: dict[str, Any] | None = None,
) -> list[float]:
    """``metric`` of ``policy(**params)`` on each workload seed (env episodes, as evaluated).

    A lower-is-better metric that an episode leaves empty (``energy_per_good_request_j`` or
    ``cost_per_1m_good_tokens_usd`` when no request met its SLOs) scores ``inf``, the worst
    value, as the leaderboard scores such a run 0.
    """
    env = DisaggServingEnv(config, overrides=overrides)
    pol = make_policy(policy, env, **params)
    out = []
    for s in seeds:
        row = run_episode(pol, env, int(s))
        v = row.get(metric)
        if v is None and metric in row and metric in LOWER_IS_BETTER:
            v = math.inf
        if v is None:
            raise UserError(f"metric {metric!r} is not in the episode KPIs (e.g. slo_tokens_per_s, goodput_rps)")
        out.append(float(v))
    env.close()
    return out


def tune(
    config: str,
    policy: str,
    seeds: Sequence[int],
    metric: str = "slo_tokens_per_s",
    grid: list[dict[str, Any]] | None = None,
    overrides: dict[str, Any] | None = None,
    on_candidate: Callable[[dict[str, Any], float], None] | None = None,
    split_step: int = 1,
    refine: bool = False,
) -> dict[str, Any]:
    """Grid search of ``policy``'s parameters on validation ``seeds``.

    With ``refine`` (``static_split`` with ``split_step`` > 1 only), the coarse grid is the
    start of a coarse-to-fine local search: the step is halved (rounding up) down to 1, each
    time scoring the unseen splits one step away from the best so far (per GPU type -step, 0,
    +step), and at step 1 it goes on while the best moves. It ends on a local optimum (no
    neighbour scores higher); on LargeJoint's 31 x 31 splits that was the step-8 grid plus 32
    (v2) and 11 (v3) refinements instead of 961 runs. It is the grid's best split when the score falls
    away from one peak along every direction of the neighbourhood, not in general.

    The default grid of a one-parameter policy (an admission threshold, ``spillover``'s
    ``alpha``, ``sla_planner``'s ``headroom``, ``splitwise``'s ``max_borrow``) is extended past
    an edge: while the best value is the grid's lowest (highest) one, the next value beyond it
    continues the grid's spacing there geometrically (``v1 * v1 / v2``: alpha 0.5, 0.75 ->
    0.333, then 0.222; ``max_borrow`` 2, 4 -> 8), at most ``EDGE_EXTENSIONS`` (6) times per side,
    until a value beyond it scores no better (ties keep the earlier candidate) or the policy
    refuses the value. A tuned value is then inside the searched range unless the cap ends it.

    Returns:
        ``{"params", "score", "metric", "seeds", "candidates": [{"params", "score"}]}``;
        the score is the mean over seeds; ties keep the earlier (more conservative) candidate.
        ``split_step`` (``static_split`` only, > 1: a coarse grid) is recorded as
        ``"split_step"``, a refined search as ``"refine": true``.

    Raises:
        UserError: A seed outside the validation range (test seeds above all), or ``refine``
            without a coarse ``static_split`` grid to refine.
    """
    check_validation_seeds(seeds)
    config = resolve_config(config)
    if refine and (policy != "static_split" or split_step == 1 or grid is not None):
        raise UserError(
            f"refine: needs policy static_split with split_step > 1 and no explicit grid (got policy {policy!r}, "
            f"split_step {split_step}, grid {'given' if grid is not None else 'none'})"
        )
    extend = grid is None and not refine and policy != "static_split"
    grid = grid if grid is not None else policy_grid(config, policy, overrides, split_step)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    cands: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] | None = None
    step = split_step
    allowed = {params_json(g) for g in policy_grid(config, policy, overrides, 1)} if refine else set()
    seen: set[str] = set()
    extended: list[dict[str, Any]] = []  # candidates past an edge of the default grid
    while grid:
        for params in grid:
            seen.add(params_json(params))
            try:
                vals = score_policy(config, policy, params, seeds, metric, overrides)
            except UserError:
                if params in extended:  # a value past the edge the policy refuses ends the side
                    continue
                raise
            mean = sum(vals) / len(vals)
            cands.append({"params": params, "score": mean})
            if on_candidate is not None:
                on_candidate(params, mean)
            key = sign * mean if math.isfinite(mean) else -math.inf
            if best is None or key > best[0]:
                best = (key, params)
        assert best is not None
        grid = []
        if refine:
            step, grid = _next_refinement(best[1]["prefill_counts"], step, allowed, seen)
        elif extend:
            grid = _edge_extension(best[1], [c["params"] for c in cands], extended)
            extended.extend(grid)
    assert best is not None
    out = {
        "params": best[1],
        "score": sign * best[0],
        "metric": metric,
        "seeds": [int(s) for s in seeds],
        "candidates": cands,
    }
    if policy == "static_split" and split_step != 1:
        out["split_step"] = int(split_step)
    if refine:
        out["refine"] = True
    return out


#: Values tried past each edge of a one-parameter grid at most (``tune``).
EDGE_EXTENSIONS = 6


def _edge_extension(best: dict[str, Any], scored: list[dict[str, Any]], extended: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next candidate past an edge of a one-parameter grid (``[]``: none).

    ``best`` is at an edge when its value is the lowest (highest) of the values ``scored``;
    the next value continues the spacing of the two outermost values there geometrically
    (integers rounded away from the grid, and kept >= 1), up to ``EDGE_EXTENSIONS`` per side.
    """
    if len(best) != 1:
        return []
    (key, v), = best.items()
    vals = sorted({p[key] for p in scored if len(p) == 1 and key in p})
    if (len(vals) < 2 or isinstance(v, bool) or not isinstance(v, (int, float))
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in vals) or vals[0] <= 0):
        return []
    if v == vals[0]:
        side, nxt = "low", v * v / vals[1]
    elif v == vals[-1]:
        side, nxt = "high", v * v / vals[-2]
    else:
        return []
    base = [p[key] for p in scored if len(p) == 1 and key in p and p not in extended]
    past = [p[key] for p in extended if (p[key] < min(base) if side == "low" else p[key] > max(base))]
    if len(past) >= EDGE_EXTENSIONS:
        return []
    if isinstance(v, int):
        nxt = math.floor(nxt) if side == "low" else math.ceil(nxt)
        if nxt < 1 or nxt == v:
            return []
    else:
        nxt = float(f"{nxt:.3g}")
        if nxt == v:
            return []
    if any(p[key] == nxt for p in extended):  # tried already: the policy refused it
        return []
    return [{key: nxt}]


def _next_refinement(centre: dict[str, int], step: int, allowed: set[str], seen: set[str]) -> tuple[int, list[dict[str, Any]]]:
    """The next round of a refined search: ``(step, splits to score)``.

    Coarse to fine: halve the step (rounding up, so 8 -> 4 -> 2 -> 1 and 5 -> 3 -> 2 -> 1) until
    the best split so far has unseen allowed neighbours at that step; at step 1 the search goes
    on while the best moves and ends (no splits) on a split none of whose neighbours scores higher.
    """
    while True:
        step = (step + 1) // 2
        grid = _unseen_neighbours(centre, step, allowed, seen)
        if grid or step == 1:
            return step, grid


def _unseen_neighbours(centre: dict[str, int], step: int, allowed: set[str], seen: set[str]) -> list[dict[str, Any]]:
    """Splits one ``step`` from ``centre`` per GPU type (the 3^k grid around it) that the mask
    allows (``allowed``) and that were not scored yet (``seen``), in a fixed order.
    """
    gpus = list(centre)
    out = []
    for deltas in itertools.product((-step, 0, step), repeat=len(gpus)):
        cand = {"prefill_counts": {g: int(centre[g] + d) for g, d in zip(gpus, deltas)}}
        key = params_json(cand)
        if key in allowed and key not in seen:
            out.append(cand)
    return out


# ---------------------------------------------------------------------- the tuned file
def read_tuned(path: str | Path = DEFAULT_TUNED_PATH) -> dict[str, Any]:
    """The tuned file as ``{config: {policy: entry}}`` (empty if missing).

    Raises:
        UserError: A file that is not YAML, or not a mapping of config -> policy -> entry mapping.
    """
    p = Path(path)
    if not p.exists():
        return {}
    data = read_yaml(p) or {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of config -> policy -> tuned entry")
    for cfg, pols in data.items():
        if not isinstance(pols, dict):
            raise UserError(f"{p}: key '{cfg}': expected a mapping of policy -> tuned entry (got {pols!r:.80})")
        for pol, entry in pols.items():
            if not isinstance(entry, dict):
                raise UserError(f"{p}: key '{cfg}.{pol}': expected a tuned entry mapping (got {entry!r:.80})")
    return data


#: The admission compositions the leaderboard runs on every config (scripts/reproduce_leaderboard.sh).
LEADERBOARD_COMPOSITIONS = ("jsq+ttft_guard", "least_finish+ttft_guard", "jsq+queue_guard")


def own_compositions(tuned: dict[str, Any], config: str) -> list[str]:
    """The other compositions ``tuned`` holds for ``config`` as written (sorted), e.g.
    ``llmd_scorer+ttft_guard`` on the prefix-cache configs: the leaderboard runs them there only.
    """
    per_cfg = tuned.get(resolve_config(config)) or {}
    return sorted(p for p, e in per_cfg.items()
                  if "+" in p and p not in LEADERBOARD_COMPOSITIONS and not (e or {}).get("overrides"))


def tuned_params(config: str, policy: str, path: str | Path = DEFAULT_TUNED_PATH) -> dict[str, Any]:
    """Tuned keyword arguments of ``policy`` on ``config`` (``{}`` when not tuned)."""
    return params_of(read_tuned(path), config, policy)


def params_of(tuned: dict[str, Any], config: str, policy: str, *, as_written: bool = False) -> dict[str, Any]:
    """``policy``'s tuned keyword arguments on ``config`` in a tuned file's mapping (``{}``: none).

    ``as_written``: only an entry tuned on the config as written counts (one recorded with
    ``--set`` overrides was tuned on another env, so the leaderboard does not use it).

    Raises:
        UserError: An entry whose ``params`` is not a mapping.
    """
    per_cfg = tuned.get(resolve_config(config))
    entry = per_cfg.get(policy) if isinstance(per_cfg, dict) else None
    if not isinstance(entry, dict) or (as_written and entry.get("overrides")):
        return {}
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise UserError(f"tuned entry {config} / {policy}: params must be a mapping (got {params!r})")
    return dict(params)


def params_json(params: dict[str, Any]) -> str:
    """Canonical JSON of a policy's keyword arguments (sorted keys): the ``params`` column."""
    return json.dumps(params, sort_keys=True)


def write_tuned(results: dict[str, dict[str, Any]], path: str | Path = DEFAULT_TUNED_PATH) -> Path:
    """Merges ``{config: {policy: entry}}`` into the tuned file (atomically) and returns it.

    The read-merge-write holds an exclusive lock on ``.<name>.lock`` beside it, so searches running in
    parallel (``scripts/reproduce_leaderboard.sh`` runs them as ``--jobs`` processes) each add
    their entries and none is lost.
    """
    p = Path(path)
    head = (
        "# Baseline parameters tuned by `disagg-gym tune-baselines` on validation seeds only\n"
        "# (20000+; never the test seeds 10000+). One entry per config and policy: the chosen\n"
        "# params, the metric, its mean over the seeds, the seeds and every candidate's score.\n"
    )
    with locked(p):
        data = read_tuned(p)
        for cfg, pols in results.items():
            data.setdefault(cfg, {}).update(pols)
        text = yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=True, default_flow_style=None)
        return atomic_write_text(p, head + text)


class _NoAliasDumper(yaml.SafeDumper):
    """A safe dumper that writes a value shared by two keys twice (no ``&id001`` anchors: the
    chosen ``params`` and the same candidate's ``params`` are one dict).
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True


# ---------------------------------------------------------------------- CLI
def add_tune_args(sp: argparse.ArgumentParser) -> None:
    """Arguments of ``disagg-gym tune-baselines``."""
    sp.add_argument("--config", action="append", required=True, metavar="NAME",
                    help="standard config or env id (repeatable)")
    sp.add_argument("--policy", action="append", required=True, metavar="NAME",
                    help="policy to tune, e.g. jsq+ttft_guard, static_split (repeatable)")
    sp.add_argument("--seeds", type=positive_int, default=3,
                    help="validation seeds 20000..20000+N-1 (default 3)")
    sp.add_argument("--metric", default="slo_tokens_per_s", help="episode KPI to optimise (default slo_tokens_per_s)")
    sp.add_argument("--split-step", type=positive_int, default=1, metavar="N",
                    help="static_split: a coarse grid, prefill counts per GPU type in steps of N "
                         "(plus the lowest and highest counts the env's mask allows and the initial count); "
                         "default 1, every count")
    sp.add_argument("--refine", action="store_true",
                    help="static_split with --split-step N > 1: refine the coarse grid's best split, halving "
                         "the step down to 1 (scores the neighbours one step away each time) and going "
                         "on at step 1 while the best moves; other policies are tuned as without it")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override (dotted), repeatable")
    sp.add_argument("--out", type=Path, default=DEFAULT_TUNED_PATH, help="tuned file (default leaderboard/tuned.yaml)")
    add_import_arg(sp)


def cmd_tune_baselines(args: argparse.Namespace) -> int:
    """Tunes each ``--policy`` on each ``--config`` and merges the results into ``--out``."""
    import_policy_modules(getattr(args, "imports", None) or [])
    check_output_file(args.out, "--out")
    read_tuned(args.out)  # a malformed --out fails now, not after the search (whose results it would lose)
    for p in args.policy:
        POLICIES.get(p)  # names a bad policy before any run
        if policy_grid(resolve_config(args.config[0]), p) == [{}]:  # nothing to search: say so, not silently
            print(f"disagg-gym: warning: {p} has no parameter grid (ADMISSION_GRIDS, ROUTER_GRIDS or policy_grid in "
                  "disagg_gym_agents/tuning.py): its defaults are scored and recorded", file=sys.stderr)
    if args.refine and (args.split_step == 1 or "static_split" not in args.policy):
        raise UserError(f"--refine refines static_split's coarse grid: it needs --policy static_split and "
                        f"--split-step > 1 (got --split-step {args.split_step}, "
                        f"{' '.join(f'--policy {p}' for p in args.policy)})")
    seeds = validation_seeds(args.seeds)
    over = parse_overrides(args.set)
    names = [resolve_config(cfg) for cfg in args.config]
    for name in names:  # an unknown config is named before any search, not after the others
        load_scenario(name)
    path = Path(args.out)
    for name in names:
        for pol in args.policy:
            res = tune(name, pol, seeds, args.metric, overrides=over or None, split_step=args.split_step,
                       refine=args.refine and pol == "static_split", on_candidate=lambda p, s, n=name, q=pol: print(f"{n:<22s} {q:<24s} {p} -> {s:.6g}", flush=True))
            if over:
                res["overrides"] = over
            # merged search by search: an interrupted run keeps every search it finished
            path = write_tuned({name: {pol: res}}, args.out)
            where = (f"{len(seeds)} seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1))
                     and len(seeds) > 3 else f"seeds {seeds}")
            print(f"{name:<22s} {pol:<24s} best {res['params']} ({args.metric} {res['score']:.6g} on {where})")
    print(f"wrote {path}")
    return 0
