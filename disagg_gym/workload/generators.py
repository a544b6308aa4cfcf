"""Workload generators: Poisson, bursty Gamma, time-varying rates, and trace replay.

``WorkloadConfig.build(streams, horizon_s, max_requests)`` returns an ``ArrivalSource`` that
yields vectorised chunks of arrivals. Inter-arrival times draw from the ``arrivals`` stream
and lengths from the ``lengths`` stream, so changing the length preset never moves arrivals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from disagg_gym.config import spec
from disagg_gym.rng import RngStreams
from disagg_gym.workload.presets import LENGTH_PRESETS, preset_names
from disagg_gym.workload.source import ArrivalChunk, ArrivalSource
from disagg_gym.workload.traces import TraceData, load_trace

CHUNK = 4096


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """The request stream: arrival process, lengths and SLOs."""

    kind: Literal["poisson", "gamma", "time_varying", "trace"] = field(
        default="poisson", metadata=spec("arrival process")
    )
    rate_per_s: float = field(default=10.0, metadata=spec("mean (base) arrival rate, requests/s", gt=0))
    cv: float = field(default=1.0, metadata=spec("gamma: coefficient of variation of inter-arrival times", gt=0))
    rate_profile: Literal["constant", "diurnal", "step", "spike"] = field(
        default="constant", metadata=spec("time_varying: shape of the rate over time")
    )
    period_s: float = field(default=3600.0, metadata=spec("diurnal: period, seconds", gt=0))
    amplitude: float = field(default=0.5, metadata=spec("diurnal: relative amplitude", ge=0, le=1))
    step_at_s: float = field(default=0.0, metadata=spec("step: time of the step, seconds", ge=0))
    step_factor: float = field(default=2.0, metadata=spec("step: rate multiplier after the step", gt=0))
    spike_at_s: float = field(default=0.0, metadata=spec("spike: start of the spike, seconds", ge=0))
    spike_duration_s: float = field(default=60.0, metadata=spec("spike: duration, seconds", gt=0))
    spike_factor: float = field(default=3.0, metadata=spec("spike: rate multiplier during the spike", gt=0))
    lengths: str = field(default="azure_conv", metadata=spec("length preset name, or 'fixed'"))
    prompt_tokens: int = field(default=1024, metadata=spec("fixed: prompt tokens", ge=1))
    output_tokens: int = field(default=128, metadata=spec("fixed: output tokens", ge=1))
    max_prompt_tokens: int | None = field(default=None, metadata=spec("cap on prompt tokens", ge=1))
    max_output_tokens: int | None = field(default=None, metadata=spec("cap on output tokens", ge=1))
    trace_path: str | None = field(default=None, metadata=spec("trace: Azure CSV or Mooncake JSONL path"))
    trace_format: Literal["auto", "azure", "mooncake"] = field(default="auto", metadata=spec("trace: format"))
    rate_scale: float = field(default=1.0, metadata=spec("trace: rate multiplier (2 = twice as fast)", gt=0))
    window_start_s: float = field(default=0.0, metadata=spec("trace: window start, seconds from the first row", ge=0))
    window_end_s: float | None = field(default=None, metadata=spec("trace: window end (exclusive)", gt=0))
    on_bad_row: Literal["fail", "skip"] = field(default="fail", metadata=spec("trace: bad-row policy"))
    slo_ttft_s: float = field(default=1.0, metadata=spec("TTFT SLO base, seconds", gt=0))
    slo_ttft_per_1k_prompt_s: float = field(default=0.0, metadata=spec("TTFT SLO per 1k prompt tokens", ge=0))
    slo_tpot_s: float = field(default=0.1, metadata=spec("TPOT SLO, seconds per output token", gt=0))

    def validate(self) -> None:
        """Cross-field checks."""
        if self.lengths not in LENGTH_PRESETS and self.lengths != "fixed":
            raise ValueError(
                f"key 'lengths': unknown length preset; expected one of {', '.join(preset_names())} (got {self.lengths!r})"
            )
        if self.kind == "trace" and not self.trace_path:
            raise ValueError("key 'trace_path': required when kind is 'trace' (got None)")
        if self.window_end_s is not None and self.window_end_s <= self.window_start_s:
            raise ValueError(f"key 'window_end_s': must be after window_start_s ({self.window_start_s}) (got {self.window_end_s})")

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        """Instantaneous arrival rate at times ``t`` (time_varying)."""
        r = self.rate_per_s
        prof = self.rate_profile
        if prof == "diurnal":
            return r * (1.0 + self.amplitude * np.sin(2 * math.pi * t / self.period_s))
        if prof == "step":
            return np.where(t >= self.step_at_s, r * self.step_factor, r)
        if prof == "spike":
            on = (t >= self.spike_at_s) & (t < self.spike_at_s + self.spike_duration_s)
            return np.where(on, r * self.spike_factor, r)
        return np.full_like(t, r)

    def max_rate(self) -> float:
        """Upper bound of ``rate_at`` (for thinning)."""
        r = self.rate_per_s
        if self.rate_profile == "diurnal":
            return r * (1.0 + self.amplitude)
        if self.rate_profile == "step":
            return r * max(1.0, self.step_factor)
        if self.rate_profile == "spike":
            return r * max(1.0, self.spike_factor)
        return r

    def build(
        self, streams: RngStreams, horizon_s: float | None = None, max_requests: int | None = None, start_s: float = 0.0
    ) -> ArrivalSource:
        """An arrival source for one run.

        Args:
            streams: Named random streams (``arrivals``, ``lengths``).
            horizon_s: No arrivals at or after ``start_s + horizon_s``.
            max_requests: At most this many arrivals.
            start_s: Time of the first possible arrival.
        """
        if self.kind == "trace":
            data = load_trace(self.trace_path or "", self.trace_format, self.on_bad_row)
            return TraceSource(self, data, horizon_s, max_requests, start_s)
        if horizon_s is None and max_requests is None:
            raise ValueError("a synthetic workload needs horizon_s or max_requests (got neither)")
        return SyntheticSource(self, streams, horizon_s, max_requests, start_s)

    # ---------------------------------------------------------------- helpers
    def sample_lengths(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Prompt and output lengths for ``n`` requests."""
        if self.lengths == "fixed":
            p = np.full(n, self.prompt_tokens, dtype=np.int64)
            o = np.full(n, self.output_tokens, dtype=np.int64)
        else:
            p, o = LENGTH_PRESETS[self.lengths].sample(rng, n)
        return self.cap(p, o)

    def cap(self, p: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Applies the optional caps."""
        if self.max_prompt_tokens is not None:
            p = np.minimum(p, self.max_prompt_tokens)
        if self.max_output_tokens is not None:
            o = np.minimum(o, self.max_output_tokens)
        return p, o

    def slos(self, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-request TTFT and TPOT SLOs."""
        ttft = self.slo_ttft_s + self.slo_ttft_per_1k_prompt_s * prompt / 1000.0
        return ttft.astype(np.float64), np.full(len(prompt), self.slo_tpot_s)


class SyntheticSource:
    """Poisson / Gamma / time-varying arrivals in vectorised chunks."""

    def __init__(self, cfg: WorkloadConfig, streams: RngStreams, horizon_s: float | None,
                 max_requests: int | None, start_s: float) -> None:
        self.cfg = cfg
        self.arr = streams.get("arrivals")
        self.len = streams.get("lengths")
        self.t = start_s
        self.start_s = start_s
        self.end_s = start_s + horizon_s if horizon_s is not None else math.inf
        self.left = max_requests if max_requests is not None else None
        self.done = False

    def _gaps(self, n: int) -> np.ndarray:
        cfg = self.cfg
        if cfg.kind == "gamma":
            k = 1.0 / (cfg.cv * cfg.cv)
            return self.arr.gamma(k, 1.0 / (cfg.rate_per_s * k), n)
        if cfg.kind == "time_varying":
            return self.arr.exponential(1.0 / cfg.max_rate(), n)
        return self.arr.exponential(1.0 / cfg.rate_per_s, n)

    def next_chunk(self) -> ArrivalChunk | None:
        """Next chunk of arrivals (``None`` when done)."""
        if self.done:
            return None
        cfg = self.cfg
        n = CHUNK if self.left is None else min(CHUNK, self.left)
        t = self.t + np.cumsum(self._gaps(n))
        self.t = float(t[-1])
        if cfg.kind == "time_varying":
            # Thinning (Lewis & Shedler): keep a candidate with probability rate(t) / max rate.
            keep = self.arr.random(n) * cfg.max_rate() < cfg.rate_at(t - self.start_s)
            t = t[keep]
        if t.size and t[-1] >= self.end_s:
            t = t[t < self.end_s]
            self.done = True
        if self.left is not None:
            t = t[: self.left]
            self.left -= len(t)
            if self.left <= 0:
                self.done = True
        if t.size == 0:
            return None if self.done else self.next_chunk()
        p, o = cfg.sample_lengths(self.len, len(t))
        ttft, tpot = cfg.slos(p)
        return ArrivalChunk(t, p, o, ttft, tpot, None)


class TraceSource:
    """Replays a loaded trace with rate scaling and a time window."""

    def __init__(self, cfg: WorkloadConfig, data: TraceData, horizon_s: float | None,
                 max_requests: int | None, start_s: float) -> None:
        rel = data.arrival_s
        lo = cfg.window_start_s
        hi = cfg.window_end_s if cfg.window_end_s is not None else math.inf
        sel = (rel >= lo) & (rel < hi)
        idx = np.flatnonzero(sel)
        t = start_s + (rel[idx] - lo) / cfg.rate_scale
        if horizon_s is not None:
            keep = t < start_s + horizon_s
            idx, t = idx[keep], t[keep]
        if max_requests is not None:
            idx, t = idx[:max_requests], t[:max_requests]
        self.t = t
        p, o = cfg.cap(data.prompt_tokens[idx], data.output_tokens[idx])
        self.p, self.o = p, o
        self.ttft, self.tpot = cfg.slos(p)
        self.hash_ids = [data.hash_ids[i] for i in idx.tolist()] if data.hash_ids is not None else None
        self.pos = 0
        self.data = data

    def __len__(self) -> int:
        return len(self.t)

    def next_chunk(self) -> ArrivalChunk | None:
        """Next chunk of the trace (``None`` when replayed)."""
        if self.pos >= len(self.t):
            return None
        s = slice(self.pos, self.pos + CHUNK)
        self.pos += CHUNK
        hashes = self.hash_ids[s] if self.hash_ids is not None else None
        return ArrivalChunk(self.t[s], self.p[s], self.o[s], self.ttft[s], self.tpot[s], hashes)
