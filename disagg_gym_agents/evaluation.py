"""Deterministic policy evaluation on fixed workload seeds: one KPI row per episode, CSV, summary.

Workload seeds are split so that training never sees evaluation input: held-out evaluation
seeds are ``EVAL_SEED_OFFSET + k`` (k = 0, 1, ...), training draws seeds from
``[TRAIN_SEED_LOW, 2**31 - 1)``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from disagg_gym.errors import UserError
from disagg_gym.io import atomic_write_text
from disagg_gym.wrappers.workload_seeds import EVAL_SEED_OFFSET, TRAIN_SEED_LOW  # noqa: F401 (re-exported)
from disagg_gym_agents.base import PredictsActions


KPI_LOG_KEYS = (
    "slo_attainment",
    "goodput_rps",
    "ttft_p99_s",
    "tpot_p99_s",
    "cost_per_1m_tokens_usd",
    "energy_per_request_j",
    "energy_per_good_request_j",
)
"""Keys of ``info["episode_kpis"]`` logged as ``kpi/<key>`` (SB3 and RLlib training) and ``eval/kpi/<key>``."""

KPI_SUMMARY_KEYS = (
    "slo_tokens_per_s",
    "goodput_rps",
    "rejection_rate",
    "slo_attainment",
    "ttft_p99_s",
    "tpot_p99_s",
    "cost_per_1m_tokens_usd",
    "cost_per_1m_good_tokens_usd",
    "energy_per_request_j",
    "energy_per_good_request_j",
    "requests_total",
    "requests_completed",
    "requests_rejected",
)
"""KPIs shown in the printed summary (the CSV has every KPI)."""


def flatten_kpis(kpis: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested KPI dicts (``utilisation``, ``kv_bytes_by_tier``) to dotted keys."""
    out: dict[str, Any] = {}
    for k, v in kpis.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_kpis(v, prefix=f"{key}."))
        elif isinstance(v, (list, tuple)):
            out[key] = ";".join(str(x) for x in v)
        else:
            out[key] = v
    return out


def run_episode(
    policy: PredictsActions,
    env: gym.Env,
    workload_seed: int,
    *,
    deterministic: bool = True,
    action_masks: bool = False,
) -> dict[str, Any]:
    """Runs one episode on ``workload_seed`` and returns its row.

    Args:
        policy: Anything with SB3's ``predict`` (a ``Policy`` or a bare SB3 model).
        env: The single env the policy is bound to.
        workload_seed: Seed of the exogenous arrivals (also the reset seed).
        deterministic: Passed to ``predict``.
        action_masks: Pass ``action_masks=env.action_masks()`` to ``predict`` (bare
            MaskablePPO models; ``Policy`` wrappers do this themselves).

    Returns:
        ``{"workload_seed", "return", "steps", "invalid_actions", <every KPI, flattened>}``.
    """
    obs, _ = env.reset(seed=int(workload_seed), options={"workload_seed": int(workload_seed)})
    state = None
    start = np.ones((1,), dtype=bool)
    total = 0.0
    steps = 0
    invalid = 0
    info: dict[str, Any] = {}
    while True:
        kwargs: dict[str, Any] = {}
        if action_masks:
            kwargs["action_masks"] = env.unwrapped.action_masks()  # type: ignore[attr-defined]
        action, state = policy.predict(
            obs, state=state, episode_start=start, deterministic=deterministic, **kwargs
        )
        start = np.zeros((1,), dtype=bool)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        steps += 1
        invalid += int(bool(info.get("invalid_action", False)))
        if terminated or truncated:
            break
    row: dict[str, Any] = {
        "workload_seed": int(workload_seed),
        "return": total,
        "steps": steps,
        "invalid_actions": invalid,
    }
    row.update(flatten_kpis(info.get("episode_kpis", {})))
    return row


def evaluate(
    policy: PredictsActions,
    env: gym.Env,
    episodes: int,
    seed_offset: int = EVAL_SEED_OFFSET,
    *,
    deterministic: bool = True,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluates ``policy`` on workload seeds ``seed_offset, seed_offset + 1, ...``.

    Args:
        policy: The policy (bound to ``env``).
        env: A single disagg-gym env.
        episodes: Number of episodes (positive).
        seed_offset: First workload seed (non-negative).
        deterministic: Passed to ``predict``.
        on_episode: Called with each row as it finishes (progress output).

    Returns:
        One row per episode, with ``episode`` (0-based) first.

    Raises:
        ValueError: Non-positive ``episodes`` or negative ``seed_offset``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise UserError(f"episodes must be a positive integer (got {episodes!r})")
    if (
        isinstance(seed_offset, bool)
        or not isinstance(seed_offset, (int, np.integer))
        or seed_offset < 0
    ):
        raise UserError(f"seed_offset must be a non-negative integer (got {seed_offset!r})")
    rows = []
    for k in range(int(episodes)):
        row = {
            "episode": k,
            **run_episode(policy, env, int(seed_offset) + k, deterministic=deterministic),
        }
        rows.append(row)
        if on_episode is not None:
            on_episode(row)
    return rows


def rows_to_csv(rows: Sequence[dict[str, Any]], leading: Sequence[str] = ()) -> str:
    """CSV text of ``rows``: columns ``leading`` first, then every other key in first-seen order.

    ``None`` becomes an empty cell; floats keep full precision (``repr``).
    """
    cols: list[str] = [c for c in leading]
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return buf.getvalue()


def write_csv(
    rows: Sequence[dict[str, Any]], path: str | Path, leading: Sequence[str] = ()
) -> Path:
    """Writes ``rows`` as CSV atomically (see ``rows_to_csv``)."""
    return atomic_write_text(path, rows_to_csv(rows, leading))


def summarize(
    rows: Iterable[dict[str, Any]], keys: Sequence[str] = KPI_SUMMARY_KEYS
) -> dict[str, dict[str, float]]:
    """Mean, std and count of each numeric key over episodes (missing / ``None`` values skipped)."""
    rows = list(rows)
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = [
            float(r[k])
            for r in rows
            if isinstance(r.get(k), (int, float)) and math.isfinite(float(r[k]))
        ]
        if vals:
            arr = np.asarray(vals)
            out[k] = {"mean": float(arr.mean()), "std": float(arr.std()), "n": float(arr.size)}
    return out


def format_summary(label: str, stats: dict[str, dict[str, float]], episodes: int) -> str:
    """Human-readable summary lines of ``summarize`` output."""
    lines = [f"{label}: {episodes} episode(s)"]
    for k, s in stats.items():
        lines.append(f"  {k:<28s} {s['mean']:>14.6g}  +- {s['std']:.3g}")
    return "\n".join(lines)
