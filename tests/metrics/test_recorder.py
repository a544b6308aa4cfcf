"""Streaming histogram accuracy and recorder counters."""

from __future__ import annotations

import numpy as np
import pytest

from disagg_gym.metrics.recorder import LogHistogram


def test_log_histogram_quantiles_within_one_percent() -> None:
    rng = np.random.default_rng(0)
    vals = rng.lognormal(-2, 1.5, 50_000)
    h = LogHistogram(0.01)
    for v in vals:
        h.add(float(v))
    for q in (0.5, 0.9, 0.99):
        assert h.quantile(q) == pytest.approx(np.quantile(vals, q), rel=0.02)
    assert h.mean == pytest.approx(vals.mean(), rel=1e-9)
    assert h.count == len(vals)


def test_log_histogram_zeros_and_empty() -> None:
    h = LogHistogram()
    assert np.isnan(h.quantile(0.5))
    for v in (0.0, 0.0, 0.0, 1.0):
        h.add(v)
    assert h.quantile(0.5) == 0.0 and h.quantile(1.0) == pytest.approx(1.0, rel=0.01)
