"""Leaderboard statistics against independent oracles: scipy's trim_mean (rliable's IQM), a
binomial closed form for the stratified bootstrap, and rliable itself when it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from disagg_gym_agents.leaderboard.stats import iqm, score_of, stratified_bootstrap_ci


def test_iqm_is_scipy_trim_mean() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for n in (1, 3, 4, 7, 8, 10, 33):
        x = rng.normal(size=n) * 5
        assert iqm(x) == pytest.approx(float(stats.trim_mean(x, 0.25)), rel=1e-12, abs=1e-12)


def test_iqm_by_hand() -> None:
    assert iqm([1, 2, 3, 4, 100, -100, 5, 6]) == pytest.approx(3.5)  # 8 values: drop 2 each end, mean of 2..5
    assert iqm([[7.0]]) == 7.0
    assert iqm([1, 2, 3, 10, 20]) == pytest.approx(5.0)  # 5 values: drop 1 each end, mean of 2, 3, 10


def _binom_quantile(n: int, q: float) -> int:
    """Smallest k with P(Binomial(n, 1/2) <= k) >= q."""
    acc = 0.0
    for k in range(n + 1):
        acc += math.comb(n, k) / 2**n
        if acc >= q:
            return k
    return n


def test_bootstrap_ci_matches_a_binomial_closed_form() -> None:
    # Two runs (all-0 and all-1) over T tasks: each replicate draws, per task, two of the runs,
    # so the 2T resampled scores hold K ones with K ~ Binomial(2T, 1/2); sorted, the IQM keeps
    # positions cut..2T-cut-1, so IQM = clip(K - cut, 0, 2T - 2 cut) / (2T - 2 cut).
    tasks = 10
    m = np.vstack([np.zeros(tasks), np.ones(tasks)])
    n, cut = 2 * tasks, int(0.25 * 2 * tasks)
    mid = n - 2 * cut

    def iqm_of(k: int) -> float:
        return min(max(k - cut, 0), mid) / mid

    lo, hi = stratified_bootstrap_ci(m, reps=20_000, confidence=0.95, seed=1)
    assert lo == pytest.approx(iqm_of(_binom_quantile(n, 0.025)), abs=1.0 / mid + 1e-9)
    assert hi == pytest.approx(iqm_of(_binom_quantile(n, 0.975)), abs=1.0 / mid + 1e-9)
    assert lo < 0.5 < hi


def test_bootstrap_ci_of_one_run_has_zero_width() -> None:
    m = np.array([[0.2, 0.9, 0.5, 0.7]])
    lo, hi = stratified_bootstrap_ci(m)
    assert lo == hi == pytest.approx(iqm(m))


def test_scores_are_higher_is_better() -> None:
    assert score_of("goodput_rps", "2.5") == 2.5
    assert score_of("cost_per_1m_good_tokens_usd", 4.0) == 0.25
    assert score_of("energy_per_good_request_j", "") == 0.0
    assert score_of("energy_per_good_request_j", float("inf")) == 0.0


def test_against_rliable_when_installed() -> None:
    try:
        from rliable import library as rly
        from rliable import metrics
    except Exception as exc:  # noqa: BLE001 - absent, or (rliable 1.2.0 + arch 7.2 + pandas 3) broken on import
        pytest.skip(f"rliable not importable: {type(exc).__name__}: {exc}")
    rng = np.random.default_rng(0)
    m = rng.normal(1.0, 0.2, size=(5, 6))
    assert iqm(m) == pytest.approx(float(metrics.aggregate_iqm(m)), rel=1e-12)
    _, cis = rly.get_interval_estimates({"a": m}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=20_000)
    lo, hi = stratified_bootstrap_ci(m, reps=20_000)
    assert lo == pytest.approx(float(cis["a"][0, 0]), abs=0.01)
    assert hi == pytest.approx(float(cis["a"][1, 0]), abs=0.01)
