"""Tuned baseline parameters against the registered defaults, as Markdown tables.

Reads a tuned file (``disagg-gym tune-baselines``; default ``leaderboard/tuned.yaml``) and prints,
per config and policy, the tuned params and their mean validation score next to the default
params' score (the defaults are always a candidate of the shipped grids; "-" where they were
not). With ``--before OLD.csv`` it also prints the held-out *test-seed* comparison: per
(config, split, policy), the mean primary metric of the rows in OLD.csv (the policy at its
defaults, ``params`` ``{}``) and of the rows in ``--results`` (run with the tuned params).

Usage::

    python scripts/tuned_table.py [--tuned leaderboard/tuned.yaml]
    git show b54b53b:leaderboard/results.csv > /tmp/before.csv
    python scripts/tuned_table.py --before /tmp/before.csv [--results leaderboard/results.csv]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym.cluster.admission import ADMISSION, split_name
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.scenario import load_scenario
from disagg_gym_agents.baselines import initial_prefill_counts
from disagg_gym_agents.leaderboard.results import read_results
from disagg_gym_agents.leaderboard.stats import to_float
from disagg_gym_agents.registry import POLICIES
from disagg_gym_agents.tuning import LOWER_IS_BETTER, read_tuned
from disagg_gym.errors import UserError
from disagg_gym.io import check_input_path, run_script

ROOT = Path(__file__).resolve().parents[1]


def default_params(config: str, policy: str, keys: list[str]) -> dict[str, Any]:
    """The values ``policy`` uses for ``keys`` when built without params on ``config``."""
    router, adm = split_name(policy)
    if router == "static_split":  # its default holds the config's initial roles
        return {"prefill_counts": initial_prefill_counts(load_scenario(config))}
    if adm is not None:
        cls: Any = ADMISSION.get(adm)
        scen = load_scenario(config).admission.get(adm, {})
    elif router in ROUTERS:
        cls, scen = ROUTERS.get(router), {}
    else:  # an allocation policy (sla_planner, splitwise, static_split)
        cls, scen = POLICIES.get(router), {}
    sig = inspect.signature(cls)
    return {k: scen.get(k, sig.parameters[k].default) for k in keys if k in sig.parameters}


def _pct(new: float, old: float, metric: str) -> str:
    if not old or not new:
        return "-"
    gain = old / new - 1 if metric in LOWER_IS_BETTER else new / old - 1
    return f"{100 * gain:+.2f} %"


p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--tuned", type=Path, default=ROOT / "leaderboard" / "tuned.yaml")
p.add_argument("--results", type=Path, default=ROOT / "leaderboard" / "results.csv")
p.add_argument("--before", type=Path, help="results CSV whose rows ran the policies at their defaults")


def main(args: argparse.Namespace) -> None:
    for flag, path in (("--tuned", args.tuned), ("--results", args.before and args.results), ("--before", args.before)):
        if path:
            check_input_path(path, flag)
    tuned = read_tuned(args.tuned)
    if not tuned:
        raise UserError(f"no tuned entries in {args.tuned}")
    print("| config | policy | metric | tuned params | validation score (tuned) | default params "
          "| validation score (default) | tuned vs default | seeds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cfg in sorted(tuned):
        for pol in sorted(tuned[cfg]):
            e = tuned[cfg][pol]
            params = e.get("params") or {}
            keys = sorted({k for c in e.get("candidates", []) for k in c["params"]})
            dflt = default_params(cfg, pol, keys)
            d_score = next((c["score"] for c in e.get("candidates", []) if c["params"] == dflt), None)
            seeds = e.get("seeds", [])
            print(f"| {cfg} | `{pol}` | {e['metric']} | {json.dumps(params, sort_keys=True)} | {e['score']:.6g} "
                  f"| {json.dumps(dflt, sort_keys=True)} | {'-' if d_score is None else f'{d_score:.6g}'} "
                  f"| {'-' if d_score is None else _pct(e['score'], d_score, e['metric'])} "
                  f"| {seeds[0]}-{seeds[-1]} ({len(seeds)}) |")

    if args.before is not None:

        def means(path: Path) -> dict[tuple[str, str, str], tuple[str, float, int, set[str]]]:
            acc: dict[tuple[str, str, str], list[Any]] = {}
            for r in read_results(path):
                if (r.get("overrides") or "{}") != "{}" or r["agent_kind"] != "heuristic":
                    continue
                v = to_float(r.get(r["primary_metric"]))
                a = acc.setdefault((r["config"], r["split"], r["agent"]), [r["primary_metric"], [], set()])
                a[1].append(v)
                a[2].add(r.get("params") or "{}")
            return {k: (m, sum(vs) / len(vs), len(vs), ps) for k, (m, vs, ps) in acc.items()}

        old, new = means(args.before), means(args.results)
        print()
        print("| config | split | policy | primary metric | defaults (mean, ep) | tuned params | tuned (mean, ep) | tuned vs default |")
        print("|---|---|---|---|---|---|---|---|")
        for k in sorted(new):
            m, v, n, ps = new[k]
            if ps == {"{}"} or k not in old:
                continue
            om, ov, on, ops = old[k]
            print(f"| {k[0]} | {k[1]} | `{k[2]}` | {m} | {ov:.6g} ({on}) | {', '.join(sorted(ps))} | {v:.6g} ({n}) "
                  f"| {_pct(v, ov, m)} |")


if __name__ == "__main__":
    run_script("tuned_table.py", main, p.parse_args())
