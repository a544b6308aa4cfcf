"""Per-config rankings of result rows: normalised IQM + CI per agent, mean raw KPIs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from disagg_gym_agents.leaderboard.stats import iqm, stratified_bootstrap_ci, to_float

KPI_TABLE = (
    ("slo_attainment", "SLO att.", 100.0, "{:.1f}%"),
    ("goodput_rps", "goodput (req/s)", 1.0, "{:.2f}"),
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


@dataclass
class ConfigSummary:
    """One config: metric, best heuristic and the ranked agents."""

    config: str
    metric: str
    best_heuristic: str
    best_heuristic_score: float
    agents: list[AgentSummary]


def summarise(rows: Iterable[dict[str, Any]]) -> list[ConfigSummary]:
    """Per-config rankings from result rows (normalised IQM + CI, mean raw KPIs).

    Normalisation: ``score / s_best`` where ``s_best`` is the highest mean score of a
    non-upper-bound heuristic on that config (so the best heuristic is 1.0). Each run's
    normalised scores over the evaluation seeds form a row of the ``(runs, tasks)`` matrix.
    """
    by_cfg: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_cfg.setdefault(str(r["config"]), []).append(r)
    out = []
    for cfg in sorted(by_cfg):
        rs = by_cfg[cfg]
        metric = str(rs[0]["primary_metric"])
        by_agent: dict[str, list[dict[str, Any]]] = {}
        for r in rs:
            by_agent.setdefault(str(r["agent"]), []).append(r)

        ub = {a: str(v[0].get("upper_bound")) == "True" for a, v in by_agent.items()}
        heur = [a for a in by_agent if by_agent[a][0]["agent_kind"] == "heuristic" and not ub[a]]
        means = {a: float(np.mean([float(r["score"]) for r in by_agent[a]])) for a in by_agent}
        best_h = max(heur, key=lambda a: means[a]) if heur else max(means, key=means.__getitem__)
        ref = means[best_h] if means[best_h] > 0 else 1.0
        summaries = []
        for a, ars in by_agent.items():
            runs: dict[str, dict[int, float]] = {}
            pol: dict[str, str] = {}
            for r in ars:
                ts = str(r.get("train_seed") or "")
                runs.setdefault(ts, {})[int(r["eval_seed"])] = float(r["score"]) / ref
                pol[ts] = str(r["policy"])
            tasks = sorted(set.intersection(*(set(v) for v in runs.values())))
            m = np.array([[runs[ts][t] for t in tasks] for ts in sorted(runs)])
            kpis = {}
            for key, *_ in KPI_TABLE:
                vals = [v for r in ars if (v := to_float(r.get(key))) is not None and math.isfinite(v)]
                kpis[key] = float(np.mean(vals)) if vals else float("nan")
            raw = [v for r in ars if (v := to_float(r.get(metric))) is not None and math.isfinite(v)]
            kpis[metric] = float(np.mean(raw)) if raw else float("nan")
            best_run = max(runs, key=lambda ts: float(np.mean(list(runs[ts].values()))))
            summaries.append(
                AgentSummary(
                    agent=a,
                    kind=str(ars[0]["agent_kind"]),
                    upper_bound=ub[a],
                    runs=len(runs),
                    episodes=len(tasks),
                    iqm=iqm(m),
                    ci=stratified_bootstrap_ci(m),
                    mean_score=means[a] / ref,
                    kpis=kpis,
                    best_run=best_run,
                    policies=pol,
                )
            )
        summaries.sort(key=lambda s: (-s.iqm, s.agent))
        out.append(ConfigSummary(cfg, metric, best_h, means[best_h], summaries))
    return out

