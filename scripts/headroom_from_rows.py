"""Headroom of the benchmarked heuristics, from the committed rows (issue #15 item 5).

For each (config, split) of ``results.csv`` (heuristic rows without overrides): the mean
``slo_tokens_per_s`` of every heuristic over its episodes (held-out seeds 10000+), the best and
worst non-random baseline (``random`` and upper-bound references such as ``length_oracle`` are
left out), the fluid bound on ``slo_tokens_per_s`` (``disagg_gym.bounds``, horizon ``drain``,
mean over the same seeds, the split's overrides applied), and the issue's verdicts
(``scripts/measure_headroom.py``: *degenerate* when best / worst - 1 < 2 % or best / bound >
97 %; *headroom* when best / bound <= 90 % or best / worst - 1 >= 5 %). Heuristics are at the
params their rows record (tuned where ``leaderboard/tuned.yaml`` has an entry, shown after the
name; otherwise their registered defaults).
Where the config's primary metric is not ``slo_tokens_per_s`` the best and the spread on it are
shown too.

    python scripts/headroom_from_rows.py --configs disagg/ColocatedBaseline-v3 ... [--splits test]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # measure_headroom's thresholds

from measure_headroom import LOWER_IS_BETTER, verdict  # noqa: E402

from disagg_gym.errors import UserError  # noqa: E402
from disagg_gym.io import check_input_path, run_script  # noqa: E402

EXCLUDED = ("random",)


def main() -> None:
    from disagg_gym.bounds import config_bound
    from disagg_gym_agents.leaderboard.cells import config_of, split_overrides, splits_of
    from disagg_gym_agents.leaderboard.results import read_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="leaderboard/results.csv")
    ap.add_argument("--configs", nargs="+", required=True, help="env ids")
    ap.add_argument("--splits", nargs="+", default=None, help="default: every split with rows")
    args = ap.parse_args()
    for env_id in args.configs:
        config_of(env_id)  # a standard id, or one line naming it
    for split in args.splits or []:
        if not any(split in splits_of(env_id) for env_id in args.configs):
            raise UserError(f"--splits {split!r}: not a split of {', '.join(args.configs)} "
                            f"(splits: {', '.join(splits_of(args.configs[0]))})")
    check_input_path(args.results, "--results", "results file")
    per: dict[tuple[str, str], dict[str, list[dict[str, str]]]] = {}
    for r in read_results(args.results):
        if r["config"] not in args.configs or r["agent_kind"] != "heuristic" or r["overrides"] not in ("", "{}"):
            continue
        split = r.get("split") or "test"
        if args.splits and split not in args.splits:
            continue
        per.setdefault((r["config"], split), {}).setdefault(r["agent"], []).append(r)
    print("| config | split | best heuristic | slo_tokens_per_s | bound | best / bound | worst baseline | "
          "spread best/worst | best/second | rejection (best) | degenerate | headroom | "
          "own primary metric: best, spread |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (env_id, split) in sorted(per, key=lambda k: (args.configs.index(k[0]), k[1] != "test", k[1])):
        agents = per[(env_id, split)]
        mean: dict[str, dict[str, float]] = {}
        label: dict[str, str] = {}
        seeds: set[int] = set()
        for a, rows in agents.items():
            if a in EXCLUDED or rows[0]["upper_bound"] in ("True", "true", "1"):
                continue
            seeds |= {int(r["eval_seed"]) for r in rows}
            mean[a] = {m: sum(float(r[m]) for r in rows) / len(rows)
                       for m in ("slo_tokens_per_s", "rejection_rate", rows[0]["primary_metric"])}
            mean[a]["_n"] = len(rows)
            if rows[0].get("params") not in (None, "", "{}"):
                label[a] = f"`{a}` {rows[0]['params']}"
        ranked = sorted(mean, key=lambda a: -mean[a]["slo_tokens_per_s"])
        if len(ranked) < 2:  # a spread needs two baselines
            print(f"| {env_id.split('/')[-1]} | {split} | only {len(ranked)} baseline(s) with rows: "
                  f"{', '.join(ranked) or 'none'} | | | | | | | | | | |", flush=True)
            continue
        best, second, worst = ranked[0], ranked[1], ranked[-1]
        name = config_of(env_id)
        ub = config_bound(name, "slo_tokens_per_s", sorted(seeds), split_overrides(env_id, split))
        v = verdict(mean[best]["slo_tokens_per_s"], mean[worst]["slo_tokens_per_s"], ub)
        b2 = mean[best]["slo_tokens_per_s"] / mean[second]["slo_tokens_per_s"] - 1
        prim = next(iter(agents.values()))[0]["primary_metric"]
        own = "(the same)"
        if prim != "slo_tokens_per_s":
            sign = -1.0 if prim in LOWER_IS_BETTER else 1.0
            order = sorted(mean, key=lambda a: -sign * mean[a][prim])
            hi, lo = mean[order[0]][prim], mean[order[-1]][prim]
            spread = (lo / hi - 1) if sign < 0 else (hi / lo - 1)
            own = f"`{prim}`: `{order[0]}` {hi:.4g}, {100 * spread:.1f} %"
        print(f"| {env_id.split('/')[-1]} | {split} | {label.get(best, f'`{best}`')} | {mean[best]['slo_tokens_per_s']:.0f} | "
              f"{ub:.0f} | {100 * v['best_fraction_of_bound']:.1f} % | {label.get(worst, f'`{worst}`')} | "
              f"{100 * v['spread_best_over_worst']:.1f} % | "
              f"{100 * b2:.2f} % | {100 * mean[best]['rejection_rate']:.2f} % | "
              f"{'yes' if v['degenerate'] else 'no'} | {'yes' if v['headroom'] else 'no'} | {own} |", flush=True)


if __name__ == "__main__":
    run_script("headroom_from_rows.py", main)
