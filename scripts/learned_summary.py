"""Learned agents against the best heuristic, ablations included, from ``results.csv``.

The Markdown leaderboard ranks the rows of one override set, so an ablation benchmarked with
``--set`` (``maskable_ppo_noreject`` runs with ``env.allow_reject=false``: its checkpoints have no
reject action) is not in it. This prints, per split of one config, every learned agent's paired
ratio against the best heuristic of the leaderboard's rows (overrides ``{}``), with the same
statistics as LEADERBOARD.md (``summarise``: IQM and stratified-bootstrap 95% CI over training
seeds and episodes, probability of improvement, the 1.01 win rule) and the rejection rate.
The workload seeds are the same, so the pairing holds; the env differs only by the override.

Usage::

    python scripts/learned_summary.py --config disagg/SmallRoute-v3 [--results leaderboard/results.csv]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym_agents.leaderboard.cells import config_of
from disagg_gym_agents.leaderboard.markdown import iqm_ci_text, verdict_of
from disagg_gym_agents.leaderboard.results import read_results
from disagg_gym_agents.leaderboard.summary import summarise
from disagg_gym.errors import UserError
from disagg_gym.io import check_input_path, run_script

ROOT = Path(__file__).resolve().parents[1]

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--config", default="disagg/SmallRoute-v3", help="env id")
p.add_argument("--results", type=Path, default=ROOT / "leaderboard" / "results.csv")


def main(args: argparse.Namespace) -> None:
    config_of(args.config)  # a standard id, or one line naming it
    check_input_path(args.results, "--results", "results file")
    rows = [r for r in read_results(args.results) if r["config"] == args.config]
    heur = [r for r in rows if r["agent_kind"] == "heuristic" and (r.get("overrides") or "{}") == "{}"]
    learned = [r for r in rows if r["agent_kind"] == "sb3"]
    if not learned:
        raise UserError(f"no learned rows for {args.config!r} in {args.results}")
    overrides = {r["agent"]: r.get("overrides") or "{}" for r in learned}
    print("| split | agent | overrides | runs x ep | IQM [95% CI] | mean ratio | P(imp.) | "
          "rejection rate | SLO att. | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cs in summarise(heur + learned):
        best = next(a for a in cs.agents if a.agent == cs.best_heuristic)
        for a in [best] + [a for a in cs.agents if a.kind == "sb3"]:
            verdict = "reference" if a is best else verdict_of(a.ci, a.win)
            ov = "" if a is best else f"`{overrides[a.agent]}`"
            print(
                f"| {cs.split} | {a.agent} | {ov} | {a.runs} x {a.episodes} | "
                f"{iqm_ci_text(a.iqm, a.ci)} | {a.mean_score:.3f} | "
                f"{'' if a is best else f'{a.prob_improvement:.2f}'} | "
                f"{100 * a.kpis['rejection_rate']:.1f}% | {100 * a.kpis['slo_attainment']:.1f}% | {verdict} |"
            )


if __name__ == "__main__":
    run_script("learned_summary.py", main, p.parse_args())
