"""Leaderboard statistics: higher-is-better scores, IQM and stratified-bootstrap CIs (rliable).

IQM and bootstrap follow Agarwal et al., "Deep RL at the Edge of the Statistical Precipice"
(NeurIPS 2021) and their rliable library: IQM is ``scipy.stats.trim_mean(x, 0.25)`` over all
(run, task) scores; CIs are percentile intervals of a stratified bootstrap that resamples runs
with replacement independently within each task. Here a run is a training seed and the tasks
are the evaluation workload seeds, so the CI reflects training-seed uncertainty only
(deterministic heuristics have one run, hence a zero-width CI). The implementation is ours
(numpy only, seeded, so tables are reproducible); ``tests/agents/test_leaderboard_stats.py``
checks it against rliable itself and against closed forms.

Scores are higher-is-better: ``goodput_rps`` and ``slo_attainment`` are used as they are;
``cost_per_1m_good_tokens_usd`` and ``energy_per_good_request_j`` are inverted
(``score = 1 / value``: SLO-meeting tokens per $ / good requests per joule), so a normalised
score of 1.25 means "25% better than the best heuristic" for every metric. A run with no
SLO-meeting request (value missing or infinite) scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from disagg_gym.errors import UserError

LOWER_IS_BETTER = frozenset({"cost_per_1m_good_tokens_usd", "energy_per_good_request_j"})
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def iqm(scores: np.ndarray | Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (rliable's ``metrics.aggregate_iqm``).

    Identical to ``scipy.stats.trim_mean(x.ravel(), 0.25)``: ``int(0.25 * n)`` values are cut
    from each end of the sorted scores.

    Raises:
        ValueError: For an empty input.
    """
    x = np.sort(np.asarray(scores, dtype=float).ravel())
    if x.size == 0:
        raise UserError("iqm of an empty score set")
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def stratified_bootstrap_ci(
    matrix: np.ndarray,
    *,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile CI of the IQM of a ``(runs, tasks)`` score matrix (rliable's StratifiedBootstrap).

    Each replicate resamples the runs with replacement independently within every task
    (column), then takes the IQM of the resampled matrix. Seeded, so tables are reproducible.

    Raises:
        ValueError: For a matrix that is not 2-D and non-empty, or ``confidence`` outside (0, 1).
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.size == 0:
        raise UserError(f"expected a non-empty (runs, tasks) matrix (got shape {m.shape})")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence must be in (0, 1) (got {confidence!r})")
    runs, tasks = m.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    samples = np.take_along_axis(np.broadcast_to(m, (reps, runs, tasks)), idx, axis=1)
    flat = np.sort(samples.reshape(reps, -1), axis=1)
    cut = int(0.25 * flat.shape[1])
    stats = flat[:, cut : flat.shape[1] - cut].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def score_of(metric: str, value: Any) -> float:
    """Higher-is-better score of a primary-metric value (see the module docstring)."""
    v = to_float(value)
    if metric in LOWER_IS_BETTER:
        return 1.0 / v if v is not None and math.isfinite(v) and v > 0 else 0.0
    return v if v is not None and math.isfinite(v) else 0.0


def to_float(value: Any) -> float | None:
    """A CSV cell or KPI value as a float; ``None`` for empty, missing or non-numeric text."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
