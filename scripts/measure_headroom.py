"""Headroom of tuned baselines against the fluid bound on validation seeds (issue #15 item 5).

For each config: every applicable non-random heuristic (``heuristics_for(task)``; the length
oracle is scored as a reference and never counts as a baseline), ``spillover`` over a grid of
``alpha``, and (route/joint tasks) the admission compositions ``<router>+<admission>`` tuned
over their default grids (``disagg_gym_agents.tuning``); allocation heuristics with a grid
(``static_split``, ``sla_planner``, ``splitwise``) over theirs. All are scored as env
episodes (the leaderboard's path, the scenario's horizon policy) on validation seeds
20000+; the per-seed fluid bound (``disagg_gym.bounds``, horizon ``drain``) on the same
seeds. Each family is reported at its best parameters on those seeds (tuning and measuring on
the same seeds flatters the tuned baselines: a conservative direction for the headroom verdict
against the bound, not for the spread).

Verdicts, on ``slo_tokens_per_s`` (the metric the bound is for):

* *degenerate* (issue #15: retire it) -- the tuned non-random baselines are within 2 % of each
  other (best / worst - 1 < 0.02) or the best is within 3 % of the bound (best / bound > 0.97);
* *headroom* (what every standard config must show) -- best / bound <= 0.90, or a spread
  best / worst - 1 >= 0.05.

    python scripts/measure_headroom.py --all --seeds 2 --jobs 2 --out headroom.json --markdown headroom.md
    python scripts/measure_headroom.py --config small-route --set workload.rate_per_s=70 --seeds 2

Prefix-cache configs are bounded too (every prompt block some other request could have cached
before the request's TTFT deadline is free; ``disagg_gym.bounds``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

REFERENCE = ("length_oracle",)
EXCLUDED = ("random",)
COMPOSED = ("jsq+ttft_guard", "jsq+queue_guard", "jsq+mooncake", "least_finish+ttft_guard")
METRICS = ("slo_tokens_per_s", "goodput_rps", "cost_per_1m_good_tokens_usd", "energy_per_good_request_j",
           "rejection_rate", "unfinished")
LOWER_IS_BETTER = ("cost_per_1m_good_tokens_usd", "energy_per_good_request_j")
DEGENERATE_SPREAD, DEGENERATE_FRACTION = 0.02, 0.97
HEADROOM_SPREAD, HEADROOM_FRACTION = 0.05, 0.90


def candidates(config: str, composed: tuple[str, ...], overrides: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(policy, params) pairs to score on ``config``."""
    from disagg_gym.scenario import load_scenario
    from disagg_gym_agents.leaderboard.cells import heuristics_for
    from disagg_gym_agents.tuning import policy_grid

    task = load_scenario(config, overrides).task
    names = [n for n in heuristics_for(task) if n not in EXCLUDED]
    out: list[tuple[str, dict[str, Any]]] = []
    for n in names:
        out += [(n, p) for p in policy_grid(config, n, overrides)]
    if task in ("route", "joint"):
        for pol in composed:
            out += [(pol, p) for p in policy_grid(config, pol, overrides)]
    return out


def _score(task: tuple[str, str, str, dict[str, Any], int, dict[str, Any]]) -> tuple[str, str, str, int, dict[str, float]]:
    from disagg_gym.env.serving_env import DisaggServingEnv
    from disagg_gym_agents.evaluation import run_episode
    from disagg_gym_agents.factory import make_policy

    config, pol, key, params, seed, overrides = task
    env = DisaggServingEnv(config, overrides=overrides or None)
    r = run_episode(make_policy(pol, env, **params), env, seed)
    row = {m: float(r[m]) if r.get(m) is not None else float("nan") for m in METRICS}
    return config, pol, key, seed, row


def _bound(task: tuple[str, int, dict[str, Any]]) -> tuple[str, int, float]:
    from disagg_gym.bounds import episode_bound
    from disagg_gym.scenario import load_scenario

    config, seed, overrides = task
    return config, seed, episode_bound(load_scenario(config, overrides or None), seed)


def verdict(best: float, worst: float, bound: float) -> dict[str, Any]:
    """The issue's rules for one config (all on ``slo_tokens_per_s``)."""
    spread = best / worst - 1.0 if worst > 0 else float("inf")
    frac = best / bound if bound > 0 else float("nan")
    return {
        "spread_best_over_worst": spread,
        "best_fraction_of_bound": frac,
        "degenerate": bool(spread < DEGENERATE_SPREAD or frac > DEGENERATE_FRACTION),
        "headroom": bool(frac <= HEADROOM_FRACTION or spread >= HEADROOM_SPREAD),
    }


def markdown(report: dict[str, Any]) -> str:
    """The table docs/leaderboard.md shows."""
    from disagg_gym.env.registration import STANDARD_CONFIGS, env_id_for

    lines = [
        "| config | best tuned baseline | slo_tokens_per_s | bound | best / bound | worst baseline | spread best/worst | best/second | rejection (best) | degenerate | headroom | own primary metric: best, spread |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cfg, r in report["configs"].items():
        fam = r["families"]
        best = fam[r["best_tuned"]]
        params = f" {json.dumps(best['params'])}" if best["params"] else ""
        own = "(the same)"
        if "primary_metric" in r:
            own = f"`{r['primary_metric']}`: `{r['primary_best']}`, {100 * r['primary_spread']:.1f} %"
        name = env_id_for(cfg, STANDARD_CONFIGS[cfg]).split("/")[-1] if cfg in STANDARD_CONFIGS else cfg
        if r["overrides"]:
            name += " with " + ", ".join(f"`{k}={v}`" for k, v in r["overrides"].items())
        lines.append(
            f"| {name} | `{r['best_tuned']}`{params} | {best['slo_tokens_per_s']:.0f} | "
            f"{r['bound_slo_tokens_per_s']:.0f} | {100 * r['best_fraction_of_bound']:.1f} % | "
            f"`{r['worst_tuned']}` | {100 * r['spread_best_over_worst']:.1f} % | "
            f"{100 * r['spread_best_over_second']:.2f} % | {100 * best['rejection_rate']:.2f} % | "
            f"{'yes' if r['degenerate'] else 'no'} | {'yes' if r['headroom'] else 'no'} | {own} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    from disagg_gym.argtypes import positive_int
    from disagg_gym.io import check_output_file
    from disagg_gym.scenario import load_scenario
    from disagg_gym_agents.base import parse_overrides

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", default=[], help="config name or YAML path (repeatable)")
    ap.add_argument("--all", action="store_true", help="every standard config that has a bound")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every --config")
    ap.add_argument("--seeds", type=positive_int, default=3)
    ap.add_argument("--jobs", type=positive_int, default=1)
    ap.add_argument("--out", default="headroom.json")
    ap.add_argument("--markdown", default=None, help="also write the Markdown table here")
    ap.add_argument("--composed", default=",".join(COMPOSED), help="composed policies to tune (comma-separated)")
    args = ap.parse_args()
    overrides = parse_overrides(args.set)
    configs = list(args.config)
    if args.all:
        from disagg_gym.env.registration import STANDARD_CONFIGS  # every one has a fluid bound

        configs += [c for c in sorted(STANDARD_CONFIGS) if c not in configs]
    if not configs:
        ap.error("give --config NAME (repeatable) or --all")
    check_output_file(args.out, "--out")  # before any work
    if args.markdown:
        check_output_file(args.markdown, "--markdown")
    seeds = [20_000 + k for k in range(args.seeds)]
    composed = tuple(c for c in args.composed.split(",") if c)
    tasks = []
    for cfg in configs:
        for pol, params in candidates(cfg, composed, overrides):
            key = json.dumps(params, sort_keys=True)
            tasks += [(cfg, pol, key, params, s, overrides) for s in seeds]
    t0 = time.perf_counter()
    scores: dict[tuple[str, str, str], dict[int, dict[str, float]]] = {}
    bounds: dict[str, dict[int, float]] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        bfut = list(ex.map(_bound, [(c, s, overrides) for c in configs for s in seeds]))
        for cfg, pol, key, seed, row in ex.map(_score, tasks, chunksize=1):
            scores.setdefault((cfg, pol, key), {})[seed] = row
    for cfg, seed, ub in bfut:
        bounds.setdefault(cfg, {})[seed] = ub
    report: dict[str, Any] = {"seeds": seeds, "wall_s": round(time.perf_counter() - t0, 1), "configs": {}}
    for cfg in configs:
        ub = sum(bounds[cfg].values()) / len(seeds)
        fam: dict[str, dict[str, Any]] = {}
        for (c, pol, key), per in scores.items():
            if c != cfg:
                continue
            mean = {m: sum(per[s][m] for s in seeds) / len(seeds) for m in METRICS}
            best = fam.get(pol)
            if best is None or mean["slo_tokens_per_s"] > best["slo_tokens_per_s"]:
                fam[pol] = {**mean, "params": json.loads(key)}
        base = {p: v for p, v in fam.items() if p not in REFERENCE}
        ranked = sorted(base, key=lambda p: -base[p]["slo_tokens_per_s"])
        vals = [base[p]["slo_tokens_per_s"] for p in ranked]
        primary = load_scenario(cfg, overrides).primary_metric
        prim = {}
        if primary != "slo_tokens_per_s" and primary in METRICS:
            # the config's own metric: no bound (cost, energy) or a different one (goodput);
            # the spread is best / worst - 1 in the better direction (1/value for cost, energy)
            lower = primary in LOWER_IS_BETTER
            pv = {p: base[p][primary] for p in base if math.isfinite(base[p][primary]) and base[p][primary] > 0}
            order = sorted(pv, key=lambda p: pv[p] if lower else -pv[p])
            if order:
                b, w = pv[order[0]], pv[order[-1]]
                prim = {"primary_metric": primary, "primary_best": order[0], "primary_worst": order[-1],
                        "primary_spread": (w / b if lower else b / w) - 1.0}
        report["configs"][cfg] = {
            **prim,
            "overrides": overrides,
            "bound_slo_tokens_per_s": ub,
            "best_tuned": ranked[0],
            "worst_tuned": ranked[-1],
            "spread_best_over_second": vals[0] / vals[1] - 1.0 if len(vals) > 1 and vals[1] > 0 else 0.0,
            **verdict(vals[0], vals[-1], ub),
            "families": dict(sorted(fam.items(), key=lambda kv: -kv[1]["slo_tokens_per_s"])),
        }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(report))
    for cfg, r in report["configs"].items():
        print(f"{cfg:<20s} bound {r['bound_slo_tokens_per_s']:.0f}  best {r['best_tuned']} "
              f"{100 * r['best_fraction_of_bound']:.1f}% of bound  spread {100 * r['spread_best_over_worst']:.1f}% "
              f"(best/second {100 * r['spread_best_over_second']:.2f}%)  degenerate={r['degenerate']} "
              f"headroom={r['headroom']}")
        if "primary_metric" in r:
            print(f"    primary {r['primary_metric']}: best {r['primary_best']}, worst {r['primary_worst']}, "
                  f"spread {100 * r['primary_spread']:.1f}%")
        for pol, v in r["families"].items():
            print(f"    {pol:<26s} {v['slo_tokens_per_s']:10.0f} tok/s  goodput {v['goodput_rps']:7.2f}  "
                  f"rej {100 * v['rejection_rate']:.2f}%  cost {v['cost_per_1m_good_tokens_usd']:.4f}  "
                  f"J/req {v['energy_per_good_request_j']:.1f}  params {v['params']}")
    print(f"wall {report['wall_s']} s")


if __name__ == "__main__":
    from disagg_gym.io import run_script

    run_script("measure_headroom.py", main)
