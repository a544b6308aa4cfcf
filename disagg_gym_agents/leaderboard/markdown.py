"""The Markdown leaderboard: a headline table, then one ranked table per config."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import disagg_gym
from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET
from disagg_gym_agents.leaderboard.cells import ROOT
from disagg_gym_agents.leaderboard.stats import LOWER_IS_BETTER, WIN_THRESHOLD
from disagg_gym_agents.leaderboard.summary import KPI_TABLE, ConfigSummary


def _fmt(v: float, scale: float, fmt: str) -> str:
    return "n/a" if not math.isfinite(v) else fmt.format(v * scale)


def _num(v: float) -> str:
    """A raw metric value: thousands separated above 1,000 (tokens/s), 4 significant digits below."""
    if not math.isfinite(v):
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def iqm_ci_text(iqm: float, ci: tuple[float, float]) -> str:
    """``IQM [lo, hi]`` with 3 decimals, more where 3 would hide which side of 1 (or of the win
    threshold) a bound lies on: "1.000 [1.000, 1.000]" beside "loses (CI below 1)" read wrong.
    """
    def keeps(v: float, d: int) -> bool:
        r = round(v, d)
        return all((v < t) == (r < t) and (v > t) == (r > t) for t in (1.0, WIN_THRESHOLD))

    d = 3
    while d < 6 and not all(keeps(v, d) for v in ci):
        d += 1
    return f"{iqm:.{d}f} [{ci[0]:.{d}f}, {ci[1]:.{d}f}]"


def verdict_of(ci: tuple[float, float], win: bool) -> str:
    """The words of the win rule: "win" only when the CI's lower bound is above 1.01 (otherwise
    "loses" when the whole CI is below 1, else "inconclusive": the word win never appears).
    """
    if win:
        return f"win (CI lower bound > {WIN_THRESHOLD:.2f})"
    if ci[1] < 1.0:
        return "loses (CI below 1)"
    return f"inconclusive (CI lower bound <= {WIN_THRESHOLD:.2f})"


NOT_TRAINED = "none trained on this version"


def learning_verdict(cs: ConfigSummary) -> str:
    """``win``, ``loses``, ``inconclusive`` (the best learned agent under the win rule), or
    ``not trained`` when no learned agent has rows on this (config, split).
    """
    learned = [a for a in cs.agents if a.kind == "sb3"]
    if not learned:
        return "not trained"
    b = learned[0]
    return "win" if b.win else "loses" if b.ci[1] < 1.0 else "inconclusive"


def headline_table(summary: Sequence[ConfigSummary], bounds: dict[tuple[str, str], float]) -> str:
    """The headline: one row per (config, split) with the best heuristic, the best learned
    agent, the bound, the headroom (best heuristic / bound), rejection rates and the verdict.
    """
    lines = [
        "| config | split | primary metric | best heuristic (raw) | best learned agent: IQM [95% CI] "
        "| bound | headroom (best / bound) | rejection rate (heuristic / learned) | P(imp.) | learning wins? |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cs in summary:
        learned = [a for a in cs.agents if a.kind == "sb3"]
        best = cs.agents[[a.agent for a in cs.agents].index(cs.best_heuristic)]
        raw = best.kpis[cs.metric]
        ub = bounds.get((cs.config, cs.split), math.nan)
        if math.isfinite(ub) and ub > 0 and math.isfinite(raw) and raw > 0:
            # Lower-is-better metrics have a lower bound: headroom = bound / best (<= 1 too).
            bound, head = _num(ub), f"{(ub / raw if cs.metric in LOWER_IS_BETTER else raw / ub):.3f}"
        else:
            bound = head = "n/a"
        rej_h = _fmt(best.kpis.get("rejection_rate", math.nan), 100.0, "{:.1f}%")
        if learned:
            b = learned[0]
            lt = f"{b.agent} ({b.runs} seeds): {iqm_ci_text(b.iqm, b.ci)}"
            poi = f"{b.prob_improvement:.2f}"
            rej_l = _fmt(b.kpis.get("rejection_rate", math.nan), 100.0, "{:.1f}%")
        else:
            lt, poi, rej_l = NOT_TRAINED, "", "-"
        lines.append(
            f"| `{cs.config}` | {cs.split} | {cs.metric} | {best.label()} ({_num(raw)}) | {lt} | "
            f"{bound} | {head} | {rej_h} / {rej_l} | {poi} | {learning_verdict(cs)} |"
        )
    return "\n".join(lines)


PROTOCOL_DOC = Path("docs") / "leaderboard.md"
"""The protocol page the leaderboard links to, relative to a checkout's root."""


def protocol_doc(md_dir: Path) -> Path | None:
    """``docs/leaderboard.md`` of the checkout holding ``md_dir`` (the nearest folder above it,
    itself included, with that file and a ``pyproject.toml``), else of the checkout the package
    runs from, else ``None``.
    """
    start = Path(md_dir).resolve()
    for d in (start, *start.parents):
        if (d / PROTOCOL_DOC).is_file() and (d / "pyproject.toml").is_file():
            return d / PROTOCOL_DOC
    own = ROOT / PROTOCOL_DOC
    return own if own.is_file() else None


def protocol_link(md_dir: Path) -> str:
    """A Markdown link to the protocol page, relative to the folder the Markdown is written in
    (``md_dir``), or the page's name in backticks when no checkout has it (an installed package).
    """
    doc = protocol_doc(md_dir)
    if doc is None:
        return "`docs/leaderboard.md` of the disagg-gym repository"
    rel = Path(os.path.relpath(doc, Path(md_dir).resolve())).as_posix()
    return f"[docs/leaderboard.md]({rel})"


def render_markdown(
    summary: Sequence[ConfigSummary],
    md_dir: Path,
    plot_files: dict[str, list[Path]],
    overrides: dict[str, Any],
    bounds: dict[tuple[str, str], float] | None = None,
) -> str:
    """The Markdown leaderboard: a headline table, then one ranked table per (config, split).

    ``bounds`` maps (config, split) to the upper bound on that split's primary metric (see
    ``runner.split_bounds``); a missing entry shows as "n/a".
    """
    lines = [
        "# disagg-gym leaderboard",
        "",
        (
            "Generated by `disagg-gym benchmark` (do not edit by hand); protocol, budgets and "
            f"how to submit: {protocol_link(md_dir)}. Re-check every number "
            "with `disagg-gym validate`."
        ),
        "",
        f"disagg-gym {disagg_gym.__version__}; held-out evaluation workload seeds "
        f"{EVAL_SEED_OFFSET}, {EVAL_SEED_OFFSET + 1}, ... (`runs x ep` in each table) on every "
        "split: `test` is the config as written (in distribution), `shift:<name>` the config "
        "with that shift's overrides (its `evaluation.shifts` section)"
        + (f"; overrides `{json.dumps(overrides, sort_keys=True)}`" if overrides else "")
        + ".",
        "",
        (
            "**Score** = the config's primary metric, higher is better (cost and energy metrics "
            "are inverted: 1/value), **divided per episode by the best heuristic's score on the "
            "same workload seed** (paired ratio; the best heuristic of each split is the one with "
            "the highest mean score there among those run on all its evaluation seeds, the `length_oracle` "
            "reference (it knows output lengths; not a bound) being excluded from that choice: "
            "a choice made on these evaluation episodes, per split, while each heuristic's "
            "parameters were tuned on validation seeds; for cost and energy the highest mean "
            "of 1/value, whose raw mean need not be the lowest raw mean shown). "
            "**runs x ep**: training seeds x episodes; `best seed N` names the training seed with the "
            "highest mean score (the one the plots show); the scores are over every seed. "
            "**IQM** and **95% CI**: interquartile mean of the ratios "
            "and the percentile interval of a stratified bootstrap over evaluation episodes and "
            "training seeds (rliable, `task_bootstrap`; whole training seeds where every "
            "episode replays one trace window). **P(imp.)**: probability of improvement "
            "over the best heuristic (rliable's definition). An agent **wins** only when the "
            f"CI's lower bound is above {WIN_THRESHOLD:.2f}. Raw KPIs are means over all episodes."
        ),
        "",
        "## Headline",
        "",
        (
            "Per config and split: the best heuristic (highest mean score; heuristics run with "
            "the params tuned on validation seeds (`leaderboard/tuned.yaml`, shown after the "
            "name), else at their registered defaults; admission compositions included when "
            "benchmarked), "
            "the best learned agent, the **bound** on the primary metric (`disagg_gym.bounds`, "
            "mean over the same evaluation seeds, for this split's config: for goodput and SLO "
            "tokens the fluid upper bound, horizon `drain`; for cost and energy per good token "
            "or request a lower bound, the least value any run reaches), **headroom** = best "
            "heuristic / bound (bound / best heuristic for cost and energy; 1.00 = nothing left "
            "to learn), the **rejection rate** (rejected / "
            "arrived) of the best heuristic and of the best learned agent, and whether learning "
            "wins under the win rule. The best learned agent is the one with the highest IQM on "
            "the split. Rows run with env overrides (e.g. the `maskable_ppo_noreject` ablation, "
            "`env.allow_reject: false`) are in `results.csv` but not ranked here: another "
            "action space (the ablations' figures are in docs/leaderboard.md)."
        ),
        "",
        headline_table(summary, bounds or {}),
    ]
    for cs in summary:
        lines += ["", f"## {cs.config} ({cs.split})", ""]
        lines.append(
            f"Primary metric `{cs.metric}`"
            + (" (lower is better; score = 1/value)" if cs.metric in LOWER_IS_BETTER else "")
            + f". Best heuristic: **{cs.best_heuristic}** = 1.00."
            + (" Its episodes are identical (every workload seed replays the same trace window), so "
               "the intervals resample whole training seeds only (runs x ep counts one episode "
               "10 times), and its validation episodes are these test episodes."
               if cs.identical_episodes else "")
        )
        lines.append("")
        head = ["rank", "agent", "runs x ep", "IQM [95% CI]", "P(imp.)", "verdict",
                f"{cs.metric} (mean)"]
        head += [h for _, h, _, _ in KPI_TABLE]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for i, a in enumerate(cs.agents, 1):
            name = a.label() + (" (oracle reference)" if a.upper_bound else "")
            if a.kind == "sb3":
                name += f", best seed {a.best_run}"
            cells = [
                str(i),
                name,
                f"{a.runs} x {a.episodes}",
                iqm_ci_text(a.iqm, a.ci),
                "" if a.agent == cs.best_heuristic else f"{a.prob_improvement:.2f}",
                "reference" if a.agent == cs.best_heuristic else verdict_of(a.ci, a.win),
                _num(a.kpis[cs.metric]),
            ]
            cells += [_fmt(a.kpis[k], s, f) for k, _, s, f in KPI_TABLE]
            lines.append("| " + " | ".join(cells) + " |")
        invalid = [a for a in cs.agents if a.invalid_actions]
        if invalid:
            lines += ["", "**Invalid actions**: " + "; ".join(
                f"{a.agent} {a.invalid_actions:,} over {a.runs * a.episodes} episode(s)" for a in invalid
            ) + ". The env's fallback router (`env.fallback_router`) took those decisions, so these "
                "scores are partly the fallback's (docs/envs.md)."]
        for p in plot_files.get(cs.config, []) if cs.split == "test" else []:
            rel = os.path.relpath(p, md_dir)
            lines += ["", f"![{p.stem}]({Path(rel).as_posix()})"]
    if "_all" in plot_files:
        lines += ["", "## All configs", ""]
        for p in plot_files["_all"]:
            lines.append(f"![{p.stem}]({Path(os.path.relpath(p, md_dir)).as_posix()})")
    return "\n".join(lines) + "\n"

