"""Leaderboard plots: score bars with CIs; per config a goodput-versus-rejection Pareto plot
of all agents, latency CDFs and a pool timeline.

Needs matplotlib (the ``[plots]`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from disagg_gym import plots as run_plots
from disagg_gym.metrics.timeline import TimelineSampler
from disagg_gym.scenario import load_scenario
from disagg_gym_agents.base import make_env
from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET
from disagg_gym_agents.factory import make_policy
from disagg_gym_agents.leaderboard.cells import env_name, resolve_path
from disagg_gym_agents.leaderboard.greedy import GreedyPolicy
from disagg_gym_agents.leaderboard.summary import ConfigSummary


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _trace_episode(
    config: str, policy_spec: str, kind: str, seed: int, overrides: dict[str, Any]
) -> tuple[dict[str, list[float]], list[dict[str, Any]]]:
    """Re-runs one episode with per-request records and a timeline sampler (plots only)."""
    env = make_env(config, overrides)
    if kind == "sb3":
        policy: Any = GreedyPolicy(make_policy(f"sb3:{resolve_path(policy_spec[4:])}", env))
    else:
        policy = make_policy(policy_spec, env, seed=0)
    obs, _ = env.reset(seed=seed, options={"workload_seed": seed, "keep_records": True})
    base = env.unwrapped
    sampler = TimelineSampler(base.cluster, max(base.scenario.horizon_s / 300.0, 0.05))
    start = np.ones((1,), dtype=bool)
    while True:
        action, _ = policy.predict(obs, episode_start=start, deterministic=True)
        start = np.zeros((1,), dtype=bool)
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            break
    done = [r for r in base.recorder.iter_records() if r["ttft_s"] is not None]  # completed requests
    lat = {k: [r[f"{k}_s"] for r in done] for k in ("ttft", "tpot", "e2e")}
    env.close()
    return lat, sampler.rows


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal ``(rejection_rate, goodput)`` points, by rejection rate.

    A point is optimal when no other point has a rejection rate at most its own and a goodput
    at least its own with one of the two strictly better (lower rejection, higher goodput);
    of exact duplicates the first is kept. Points with a non-finite coordinate are never optimal.
    """
    ok = [i for i, (r, g) in enumerate(points) if math.isfinite(r) and math.isfinite(g)]
    front = []
    for i in ok:
        ri, gi = points[i]
        dominated = any(
            (points[j][0] <= ri and points[j][1] >= gi and (points[j][0] < ri or points[j][1] > gi))
            or (points[j] == points[i] and j < i)
            for j in ok if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def make_pareto_plots(summary: Sequence[ConfigSummary], plot_dir: Path) -> dict[str, list[Path]]:
    """Per config, ``<EnvName>_pareto.png``: mean goodput (req/s) against mean rejection rate
    of every agent, one panel per split, the Pareto front (higher goodput, lower rejection)
    drawn as a line. From the result rows alone (no episode is re-run).
    """
    plt = _plt()
    plot_dir.mkdir(parents=True, exist_ok=True)
    by_cfg: dict[str, list[ConfigSummary]] = {}
    for cs in summary:
        by_cfg.setdefault(cs.config, []).append(cs)
    files: dict[str, list[Path]] = {}
    for config, splits in by_cfg.items():
        fig, axes = plt.subplots(1, len(splits), figsize=(5.0 * len(splits), 4.2), squeeze=False)
        for ax, cs in zip(axes.ravel(), splits):
            pts = [(100.0 * a.kpis.get("rejection_rate", math.nan), a.kpis.get("goodput_rps", math.nan))
                   for a in cs.agents]
            for a, (x, y) in zip(cs.agents, pts):
                if not (math.isfinite(x) and math.isfinite(y)):
                    continue
                c = "tab:orange" if a.kind == "sb3" else "tab:gray" if a.upper_bound else "tab:blue"
                ax.scatter([x], [y], color=c, s=22, zorder=3)
                ax.annotate(a.agent + ("*" if a.upper_bound else ""), (x, y), fontsize=6,
                            xytext=(3, 2), textcoords="offset points")
            front = pareto_front(pts)
            if front:
                ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="k", lw=0.8,
                        ls="--", zorder=2, label="Pareto front")
                ax.legend(fontsize=7, loc="lower right")
            ax.set_title(f"{env_name(config)} ({cs.split})", fontsize=9)
            ax.set_xlabel("rejection rate (%)", fontsize=8)
            ax.set_ylabel("goodput (req/s)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        fig.suptitle("blue: heuristics, orange: learned, gray*: length-oracle reference", fontsize=8)
        fig.tight_layout()
        path = plot_dir / f"{env_name(config)}_pareto.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        files[config] = [path]
    return files


def make_plots(
    summary: Sequence[ConfigSummary], plot_dir: Path, overrides: dict[str, Any]
) -> dict[str, list[Path]]:
    """Score bars with CIs (all configs), and per config latency CDFs and a timeline.

    The CDF and timeline compare the best learned agent's best training seed with the best
    heuristic on the first evaluation seed (or the top two heuristics without a learned agent).
    """
    plt = _plt()
    plot_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    n = len(summary)
    cols = min(3, max(n, 1))
    rows_ = math.ceil(n / cols) if n else 1
    fig, axes = plt.subplots(rows_, cols, figsize=(5.2 * cols, 3.6 * rows_), squeeze=False)
    for ax, cs in zip(axes.ravel(), summary):
        labels = [a.agent + ("*" if a.upper_bound else "") for a in cs.agents][::-1]
        vals = np.array([a.iqm for a in cs.agents][::-1])
        lo = np.array([a.iqm - a.ci[0] for a in cs.agents][::-1])
        hi = np.array([a.ci[1] - a.iqm for a in cs.agents][::-1])
        colors = [
            "tab:orange" if a.kind == "sb3" else "tab:gray" if a.upper_bound else "tab:blue"
            for a in cs.agents
        ][::-1]
        ax.barh(labels, vals, xerr=np.vstack([lo, hi]), color=colors, capsize=3)
        ax.axvline(1.0, color="k", lw=0.8, ls="--")
        ax.set_title(f"{env_name(cs.config)} ({cs.metric})", fontsize=9)
        ax.set_xlabel("IQM normalised score (best heuristic = 1)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    bars = plot_dir / "scores.png"
    fig.savefig(bars, dpi=90)
    plt.close(fig)
    files["_all"] = [bars]

    for cs in summary:
        seed = EVAL_SEED_OFFSET
        learned = [a for a in cs.agents if a.kind == "sb3"]
        heur = [a for a in cs.agents if a.kind == "heuristic" and not a.upper_bound]
        picks = []
        if learned:
            a = learned[0]
            picks.append((f"{a.agent} (seed {a.best_run})", a.policies[a.best_run], "sb3"))
        for h in sorted(heur, key=lambda a: a.agent != cs.best_heuristic)[: 2 - len(picks)]:
            picks.append((h.agent, h.policies[""], "heuristic"))
        traces = {lab: _trace_episode(cs.config, spec, k, seed, overrides) for lab, spec, k in picks}
        name = env_name(cs.config)
        w = load_scenario(gym.spec(cs.config).kwargs["base_config"]).workload
        slo = {"ttft_s": w.slo_ttft_s, "ttft_per_1k_prompt_s": w.slo_ttft_per_1k_prompt_s, "tpot_s": w.slo_tpot_s}
        cdf = run_plots.latency_cdf(
            {lab: t[0] for lab, t in traces.items()},
            plot_dir / f"{name}_latency_cdf.png",
            f"{cs.config}, workload seed {seed}",
            slo=slo,
        )
        fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
        for k, (lab, (_, tl)) in enumerate(traces.items()):
            t = [r["t_s"] for r in tl]
            c = f"C{k}"  # one colour per policy; line style tells prefill from decode
            axes[0].plot(t, [r["prefill_queue_requests"] for r in tl], color=c, lw=1.4 - 0.4 * k, label=lab)
            # equal pool sizes would draw one line over the other: wide translucent prefill
            # under a thin dashed decode line on top
            axes[1].plot(t, [r["n_prefill"] for r in tl], color=c, lw=3, alpha=0.6, label=f"{lab}: prefill")
            axes[1].plot(t, [r["n_decode"] for r in tl], color=c, lw=1.4, ls="--", zorder=3, label=f"{lab}: decode")
        axes[0].set_ylabel("prefill queue (requests)")
        axes[1].set_ylabel("pool size (instances)")
        axes[1].set_xlabel("simulated time (s)")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside the data
        fig.suptitle(f"{cs.config}, workload seed {seed}", fontsize=10)
        fig.tight_layout()
        tl_path = plot_dir / f"{name}_timeline.png"
        fig.savefig(tl_path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        files[cs.config] = [cdf, tl_path]
    return files

