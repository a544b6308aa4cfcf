"""Leaderboard statistics: higher-is-better scores, paired ratios, IQM, bootstrap CIs, P(improve).

IQM and bootstrap follow Agarwal et al., "Deep RL at the Edge of the Statistical Precipice"
(NeurIPS 2021) and their rliable library: IQM is ``scipy.stats.trim_mean(x, 0.25)`` over all
(run, task) scores; CIs are percentile intervals of a stratified bootstrap. Here a run is a
training seed and a task is an evaluation episode (workload seed). Protocol (issue #15):

* **Paired ratios.** Each episode's score is divided by the best heuristic's score *on the same
  workload seed* (``paired_ratios``), so a (runs, episodes) matrix of ratios is what the IQM and
  the CI summarise; workload noise shared by both policies cancels.
* **Bootstrap over training seeds and episodes** (``stratified_bootstrap_ci`` with
  ``task_bootstrap=True``, the default: rliable's ``StratifiedBootstrap(task_bootstrap=True)``):
  each replicate resamples the episodes with replacement, then the runs with replacement within
  each resampled episode. A deterministic heuristic (one run) still gets a CI from its episodes.
* **Probability of improvement** (``probability_of_improvement``: rliable's
  ``metrics.probability_of_improvement``): per episode, the Mann-Whitney statistic
  P(X > Y) + 1/2 P(X = Y) of the agent's runs X against the reference's runs Y, averaged over
  episodes.
* **Win rule** (``is_win``): an agent "wins" only if the CI's lower bound exceeds
  ``WIN_THRESHOLD`` = 1.01 (1% better than the best heuristic, with 95% confidence).

The implementation is ours (numpy only, seeded, so tables are reproducible);
``tests/agents/test_leaderboard_stats.py`` checks it against hand-computed cases, closed forms
and rliable itself when it imports.

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
WIN_THRESHOLD = 1.01
"""A win needs the CI's lower bound of the paired ratio above this (issue #15)."""


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


def _score_matrix(matrix: np.ndarray, confidence: float) -> np.ndarray:
    """The bootstraps' argument checks: a non-empty 2-D float matrix, confidence in (0, 1)."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.size == 0:
        raise UserError(f"expected a non-empty (runs, tasks) matrix (got shape {m.shape})")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence must be in (0, 1) (got {confidence!r})")
    return m


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of the IQMs of ``(reps, runs, tasks)`` resampled matrices."""
    reps = samples.shape[0]
    flat = np.sort(samples.reshape(reps, -1), axis=1)
    cut = int(0.25 * flat.shape[1])
    stats = flat[:, cut : flat.shape[1] - cut].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def stratified_bootstrap_ci(
    matrix: np.ndarray,
    *,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
    task_bootstrap: bool = True,
) -> tuple[float, float]:
    """Percentile CI of the IQM of a ``(runs, tasks)`` score matrix (rliable's StratifiedBootstrap).

    Each replicate first resamples the tasks (columns: evaluation episodes) with replacement when
    ``task_bootstrap`` (rliable's ``task_bootstrap=True``), then resamples the runs (training
    seeds) with replacement independently within every resampled task, and takes the IQM of the
    resampled matrix. With ``task_bootstrap=False`` only runs are resampled (a one-run matrix
    then has a zero-width CI). Seeded, so tables are reproducible.

    Raises:
        ValueError: For a matrix that is not 2-D and non-empty, or ``confidence`` outside (0, 1).
    """
    m = _score_matrix(matrix, confidence)
    runs, tasks = m.shape
    rng = np.random.default_rng(seed)
    if task_bootstrap:
        cols = rng.integers(0, tasks, size=(reps, tasks))
        base = m[:, cols].transpose(1, 0, 2)  # (reps, runs, tasks): the resampled episodes
    else:
        base = np.broadcast_to(m, (reps, runs, tasks))
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    samples = np.take_along_axis(base, idx, axis=1)
    return _percentile_ci(samples, confidence)


def run_bootstrap_ci(
    matrix: np.ndarray,
    *,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile CI of the IQM of a ``(runs, tasks)`` score matrix when its tasks are one
    episode replayed (a trace config whose workload seeds all replay the same window): each
    replicate resamples the columns with replacement (copies for a deterministic policy; a
    stochastic one's own draws), then whole runs (rows) with replacement, the same rows in
    every column, and takes the IQM of the resampled matrix. Resampling runs independently per
    column, as :func:`stratified_bootstrap_ci` does for distinct episodes, would treat 10
    copies of one episode as 10 independent draws of each training seed (intervals 2-4x too
    narrow).

    Raises:
        ValueError: For a matrix that is not 2-D and non-empty, or ``confidence`` outside (0, 1).
    """
    m = _score_matrix(matrix, confidence)
    runs, tasks = m.shape
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, tasks, size=(reps, 1, tasks))
    rows = rng.integers(0, runs, size=(reps, runs, 1))
    samples = m[rows, cols]  # (reps, runs, tasks): resampled runs x resampled columns
    return _percentile_ci(samples, confidence)


def paired_ratios(
    scores: dict[str, dict[int, float]], reference: dict[int, float]
) -> tuple[np.ndarray, list[int]]:
    """``(runs, episodes)`` matrix of per-episode ratios to the reference on the same workload seed.

    Args:
        scores: ``{run: {eval_seed: score}}`` of one agent (a heuristic has one run).
        reference: ``{eval_seed: score}`` of the best heuristic.

    Returns:
        The ratio matrix (runs sorted by name) and the episodes (workload seeds) it covers: those
        every run and the reference have, minus seeds where the reference scored 0 (no ratio).

    Raises:
        UserError: No common episode.
    """
    seeds = sorted(
        set(reference).intersection(*(set(v) for v in scores.values()))
        - {s for s, v in reference.items() if not v > 0}
    )
    if not seeds:
        raise UserError("no workload seed shared by the agent and the best heuristic: cannot pair scores")
    m = np.array([[scores[r][s] / reference[s] for s in seeds] for r in sorted(scores)])
    return m, seeds


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) averaged over tasks (rliable's ``metrics.probability_of_improvement``).

    ``x`` is ``(runs_x, tasks)``, ``y`` is ``(runs_y, tasks)`` (same tasks, same order). Per task,
    the Mann-Whitney U statistic over ``runs_x * runs_y`` pairs, ties counting 1/2, divided by the
    number of pairs; the result is the mean over tasks.

    Raises:
        UserError: Shapes that do not share their tasks.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.size == 0 or b.size == 0:
        raise UserError(f"expected (runs, tasks) matrices with the same tasks (got {a.shape}, {b.shape})")
    gt = (a[:, None, :] > b[None, :, :]).mean(axis=(0, 1))
    eq = (a[:, None, :] == b[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(gt + 0.5 * eq))


def is_win(ci: tuple[float, float], threshold: float = WIN_THRESHOLD) -> bool:
    """A win: the CI's lower bound of the paired ratio is above ``threshold`` (1.01)."""
    return ci[0] > threshold


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
