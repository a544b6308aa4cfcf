"""Per-(config, split) rankings of result rows: paired-ratio IQM + CI, P(improvement), mean KPIs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from disagg_gym.errors import UserError
from disagg_gym.scenario import SHIFT_PREFIX, TEST_SPLIT
from disagg_gym_agents.leaderboard.stats import (
    iqm,
    is_win,
    paired_ratios,
    probability_of_improvement,
    run_bootstrap_ci,
    stratified_bootstrap_ci,
    to_float,
)

KPI_TABLE = (
    ("slo_attainment", "SLO att.", 100.0, "{:.1f}%"),
    ("goodput_rps", "goodput (req/s)", 1.0, "{:.2f}"),
    ("rejection_rate", "rejected", 100.0, "{:.1f}%"),
    ("ttft_p99_s", "TTFT p99 (s)", 1.0, "{:.3f}"),
    ("tpot_p99_s", "TPOT p99 (ms)", 1e3, "{:.1f}"),
    ("cost_per_1m_tokens_usd", "$/1M tok", 1.0, "{:.4f}"),
    ("energy_per_request_j", "J/req", 1.0, "{:.1f}"),
)
"""Raw KPIs shown in the Markdown tables: (key, header, scale, format)."""



@dataclass
class AgentSummary:
    """One agent's aggregate on one config."""

    agent: str
    kind: str
    upper_bound: bool
    runs: int
    episodes: int
    iqm: float
    ci: tuple[float, float]
    mean_score: float
    kpis: dict[str, float]
    best_run: str  # train seed with the highest mean score ("" for heuristics)
    policies: dict[str, str]  # train seed -> policy spec
    prob_improvement: float = float("nan")  # P(agent > best heuristic), rliable's definition
    win: bool = False  # CI lower bound of the paired ratio > WIN_THRESHOLD (1.01)
    params: tuple[str, ...] = ()  # the heuristic's params (JSON) its rows ran with; () = defaults
    invalid_actions: int = 0  # over its episodes: decisions the env's fallback router took instead

    def label(self) -> str:
        """The agent's name with its non-default params: ``jsq+ttft_guard (alpha=0.75)``."""
        shown = []
        for text in self.params:
            try:
                kw = json.loads(text)
            except json.JSONDecodeError:
                kw = None
            if isinstance(kw, dict):
                shown.append(", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(kw.items())))
            else:
                shown.append(text)
        shown = [t for t in shown if t]
        return f"{self.agent} ({'; '.join(shown)})" if shown else self.agent


@dataclass
class ConfigSummary:
    """One (config, split): metric, best heuristic and the ranked agents."""

    config: str
    metric: str
    best_heuristic: str
    best_heuristic_score: float
    agents: list[AgentSummary]
    split: str = TEST_SPLIT
    identical_episodes: bool = False  # the reference scored the same on every seed (one trace window)


def _split_order(split: str) -> tuple[int, str]:
    return (0 if split == TEST_SPLIT else 1 if split.startswith(SHIFT_PREFIX) else 2, split)


def summarise(rows: Iterable[dict[str, Any]]) -> list[ConfigSummary]:
    """Per-(config, split) rankings from result rows (issue #15 protocol, see ``stats``).

    The best heuristic of a (config, split) is the non-upper-bound heuristic with the highest
    mean score there among those run on the most evaluation seeds (a shorter cell is ranked on
    the seeds it shares with the reference but cannot be the reference). Every agent's episode scores are divided by the best heuristic's score on
    the same workload seed (``paired_ratios``); each training seed's ratios form a row of the
    ``(runs, episodes)`` matrix whose IQM and stratified-bootstrap CI (over training seeds and
    episodes) are reported, with the probability of improvement over the best heuristic and
    the win flag (CI lower bound > 1.01). ``mean_score`` is the mean ratio.
    """
    by_cfg: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_cfg.setdefault((str(r["config"]), str(r.get("split") or TEST_SPLIT)), []).append(r)
    out = []
    for cfg, split in sorted(by_cfg, key=lambda k: (k[0], _split_order(k[1]))):
        rs = by_cfg[(cfg, split)]
        metric = str(rs[0]["primary_metric"])
        by_agent: dict[str, list[dict[str, Any]]] = {}
        for r in rs:
            by_agent.setdefault(str(r["agent"]), []).append(r)

        ub = {a: str(v[0].get("upper_bound")) == "True" for a, v in by_agent.items()}
        heur = [a for a in by_agent if by_agent[a][0]["agent_kind"] == "heuristic" and not ub[a]]
        means = {a: float(np.mean([float(r["score"]) for r in by_agent[a]])) for a in by_agent}
        # Only a heuristic run on the split's every evaluation seed can be the reference: a mean
        # over a few (easier or harder) seeds is not comparable (a 2-episode cell of a clone of
        # the best heuristic took its place and every ratio moved).
        seeds_of = {a: {int(r["eval_seed"]) for r in by_agent[a]} for a in by_agent}
        full = max((len(seeds_of[a]) for a in heur), default=0)
        eligible = [a for a in heur if len(seeds_of[a]) == full]
        best_h = max(eligible, key=lambda a: means[a]) if eligible else max(means, key=means.__getitem__)
        runs_of: dict[str, dict[str, dict[int, float]]] = {}
        for a, ars in by_agent.items():
            for r in ars:
                ts = str(r.get("train_seed") or "")
                runs_of.setdefault(a, {}).setdefault(ts, {})[int(r["eval_seed"])] = float(r["score"])
        ref_runs = runs_of[best_h]
        reference = {s: float(np.mean([v[s] for v in ref_runs.values() if s in v]))
                     for s in set().union(*ref_runs.values())}
        # One trace window: every workload seed replays the same episode (the reference scored
        # the same on each), so training seeds are resampled as whole units across episodes.
        same = len(reference) > 1 and len(set(reference.values())) == 1
        summaries = []
        for a, ars in by_agent.items():
            runs = runs_of[a]
            pol = {str(r.get("train_seed") or ""): str(r["policy"]) for r in ars}
            try:
                m, seeds = paired_ratios(runs, reference)
            except UserError as exc:
                raise UserError(f"{cfg} ({split}), agent {a} vs {best_h}: {exc}") from None
            ref_m = np.array([[reference[s] for s in seeds]])
            raw_m = np.array([[runs[ts][s] for s in seeds] for ts in sorted(runs)])
            kpis = {}
            for key, *_ in KPI_TABLE:
                vals = [v for r in ars if (v := to_float(r.get(key))) is not None and math.isfinite(v)]
                kpis[key] = float(np.mean(vals)) if vals else float("nan")
            raw = [v for r in ars if (v := to_float(r.get(metric))) is not None and math.isfinite(v)]
            kpis[metric] = float(np.mean(raw)) if raw else float("nan")
            best_run = max(runs, key=lambda ts: float(np.mean(list(runs[ts].values()))))
            ci = run_bootstrap_ci(m) if same else stratified_bootstrap_ci(m)
            summaries.append(
                AgentSummary(
                    agent=a,
                    kind=str(ars[0]["agent_kind"]),
                    upper_bound=ub[a],
                    runs=len(runs),
                    episodes=len(seeds),
                    iqm=iqm(m),
                    ci=ci,
                    mean_score=float(m.mean()),
                    kpis=kpis,
                    best_run=best_run,
                    policies=pol,
                    prob_improvement=probability_of_improvement(raw_m, ref_m),
                    win=is_win(ci),
                    params=tuple(sorted({str(r.get("params") or "{}") for r in ars} - {"{}"})),
                    invalid_actions=int(sum(to_float(r.get("invalid_actions")) or 0 for r in ars)),
                )
            )
        summaries.sort(key=lambda s: (-s.iqm, s.agent))
        out.append(ConfigSummary(cfg, metric, best_h, means[best_h], summaries, split, same))
    return out
