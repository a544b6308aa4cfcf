"""Recorder: cluster hooks -> flat per-request records (optional) and streaming statistics."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from disagg_gym.workload.request import Request

RECORD_FIELDS = (
    "rid", "arrival_s", "prompt_tokens", "output_tokens", "slo_ttft_s", "slo_tpot_s", "state",
    "reject_reason", "prefill_inst", "decode_inst", "tier", "kv_bytes", "prefill_start_s",
    "first_token_s", "transfer_start_s", "transfer_end_s", "decode_start_s", "completion_s",
    "ttft_s", "tpot_s", "e2e_s", "met_slo", "cached_tokens", "cache_tier", "ttft_queue_s", "ttft_load_s",
    "ttft_compute_s",
)


class LogHistogram:
    """Fixed-memory histogram with ~1% relative error for non-negative values (DDSketch-like).

    Values are buffered and binned in vectorised batches, so ``add`` costs one list append.
    """

    __slots__ = ("gamma", "_lg", "counts", "zero", "n", "total", "lo", "hi", "_buf")

    _BATCH = 4096

    def __init__(self, rel_err: float = 0.01) -> None:
        self.gamma = (1 + rel_err) / (1 - rel_err)
        self._lg = 1.0 / math.log(self.gamma)
        self.counts: dict[int, int] = {}
        self.zero = 0
        self.n = 0
        self.total = 0.0
        self.lo = math.inf
        self.hi = -math.inf
        self._buf: list[float] = []

    def add(self, x: float) -> None:
        """Adds one value (>= 0)."""
        buf = self._buf
        buf.append(x)
        if len(buf) >= self._BATCH:
            self._flush()

    def _flush(self) -> None:
        buf = self._buf
        if not buf:
            return
        arr = np.asarray(buf, dtype=np.float64)
        buf.clear()  # in place: Recorder appends to this list directly
        self.n += len(arr)
        self.total += float(arr.sum())
        self.lo = min(self.lo, float(arr.min()))
        self.hi = max(self.hi, float(arr.max()))
        pos = arr[arr > 1e-12]
        self.zero += len(arr) - len(pos)
        if len(pos):
            keys, cnt = np.unique(np.ceil(np.log(pos) * self._lg).astype(np.int64), return_counts=True)
            for k, c in zip(keys.tolist(), cnt.tolist()):
                self.counts[k] = self.counts.get(k, 0) + c

    def quantile(self, q: float) -> float:
        """Approximate ``q``-quantile (0..1); NaN when empty."""
        self._flush()
        if self.n == 0:
            return math.nan
        rank = q * (self.n - 1)
        if rank < self.zero:
            return 0.0
        seen = self.zero
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen > rank:
                val = 2.0 * self.gamma**k / (self.gamma + 1)
                return min(max(val, self.lo), self.hi)
        return self.hi

    @property
    def count(self) -> int:
        """Number of values added."""
        return self.n + len(self._buf)

    @property
    def mean(self) -> float:
        """Mean of the values added."""
        self._flush()
        return self.total / self.n if self.n else math.nan


_HIST_BATCH = LogHistogram._BATCH


class Recorder:
    """Implements the cluster's observer hooks.

    Args:
        keep_records: Keep every finished request (for CSV, CDF plots, invariant checks).
            When ``False`` only streaming statistics are kept, so memory stays flat however
            many requests are simulated.
        keep_requests: Keep the ``Request`` objects themselves (tests / invariant checks).
    """

    def __init__(self, keep_records: bool = True, keep_requests: bool = False) -> None:
        self.keep_records = keep_records
        self.late_records = False  # keep_from_now: records only, statistics unchanged
        self.keep_requests = keep_requests
        self.requests: list[Request] = []
        self.ttft: list[float] = []
        self.tpot: list[float] = []
        self.e2e: list[float] = []
        self.h_ttft = LogHistogram()
        self.h_tpot = LogHistogram()
        self.h_e2e = LogHistogram()
        # LogHistogram.add, inlined in on_completion (their buffers never change identity)
        self._hists = ((self.h_ttft, self.h_ttft._buf), (self.h_tpot, self.h_tpot._buf), (self.h_e2e, self.h_e2e._buf))
        self.arrived = 0
        self.last_arrival_s = 0.0
        self.completed = 0
        self.rejected = 0
        self.met_slo = 0
        self.met_ttft = 0
        self.met_tpot = 0
        self.prompt_tokens_done = 0
        self.output_tokens_done = 0
        self.good_tokens = 0  # prompt + output tokens of requests that met both SLOs
        self.kv_bytes_by_tier: dict[str, float] = {}
        self.cached_tokens_by_tier = [0, 0, 0, 0]  # completed requests' prompt tokens from hbm, host, ssd, remote
        self.rejected_by_reason: dict[str, int] = {}
        self.last_finish_s = 0.0
        self.records: list[tuple[Any, ...]] = []

    def keep_from_now(self) -> None:
        """Keeps the records of the requests that finish from now on (:meth:`iter_records`).

        Only the records: the latency statistics stay the streaming histograms they were, so
        a run's KPIs are the same whether or not its records are kept from some point on.
        """
        self.late_records = True

    # ---------------------------------------------------------------- hooks
    def on_arrival(self, req: Request) -> None:
        """Counts an arrival (and keeps its time: the last one's ends a capped arrival window)."""
        self.arrived += 1
        self.last_arrival_s = req.arrival_s

    def on_first_token(self, req: Request) -> None:
        """No-op hook (kept for subclasses)."""

    def on_kv_transfer_done(self, req: Request) -> None:
        """Accumulates KV bytes per tier."""
        t = req.tier
        self.kv_bytes_by_tier[t] = self.kv_bytes_by_tier.get(t, 0.0) + req.kv_bytes

    def on_completion(self, req: Request) -> None:
        """Records a completed request."""
        self.completed += 1
        ttft = req.first_token_s - req.arrival_s  # type: ignore[operator]
        e2e = req.completion_s - req.arrival_s  # type: ignore[operator]
        out = req.output_tokens
        tpot = (req.completion_s - req.first_token_s) / (out - 1) if out > 1 else 0.0  # type: ignore[operator]
        ok_ttft = ttft <= req.slo_ttft_s
        ok_tpot = tpot <= req.slo_tpot_s
        self.met_ttft += ok_ttft
        self.met_tpot += ok_tpot
        met = ok_ttft and ok_tpot
        self.met_slo += met
        if met:
            self.good_tokens += req.prompt_tokens + out
        self.prompt_tokens_done += req.prompt_tokens
        served = req.cache_served
        if served is not None:
            c = self.cached_tokens_by_tier
            c[0] += served[0]
            c[1] += served[1]
            c[2] += served[2]
            c[3] += served[3]
        self.output_tokens_done += out
        self.last_finish_s = req.completion_s  # type: ignore[assignment]
        if self.keep_records:  # exact percentiles from the lists
            self.ttft.append(ttft)
            self.tpot.append(tpot)
            self.e2e.append(e2e)
            self.records.append(self._row(req, ttft, tpot, e2e, met))
        else:  # bounded memory: ~1% relative-error histograms (LogHistogram.add, inlined)
            (ht, bt), (hp, bp), (he, be) = self._hists
            bt.append(ttft)
            if len(bt) >= _HIST_BATCH:
                ht._flush()
            bp.append(tpot)
            if len(bp) >= _HIST_BATCH:
                hp._flush()
            be.append(e2e)
            if len(be) >= _HIST_BATCH:
                he._flush()
            if self.late_records:
                self.records.append(self._row(req, ttft, tpot, e2e, met))
        if self.keep_requests:
            self.requests.append(req)

    def on_reject(self, req: Request) -> None:
        """Records a rejected request and its reason."""
        self.rejected += 1
        r = req.reject_reason or "unknown"
        self.rejected_by_reason[r] = self.rejected_by_reason.get(r, 0) + 1
        if self.keep_records or self.late_records:
            self.records.append(self._row(req, None, None, None, False))
        if self.keep_requests:
            self.requests.append(req)

    # ---------------------------------------------------------------- views
    @staticmethod
    def _row(req: Request, ttft: float | None, tpot: float | None, e2e: float | None, met: bool) -> tuple[Any, ...]:
        # TTFT = queue (arrival -> first prefill start) + load (waiting for lower-tier loads
        # after the compute ended) + compute (the rest: prefill iterations, chunk interleaving).
        queue = load = compute = None
        if ttft is not None and req.prefill_start_s is not None:
            queue = req.prefill_start_s - req.arrival_s
            load = req.ttft_load_s
            compute = ttft - queue - load
        return (
            req.rid, req.arrival_s, req.prompt_tokens, req.output_tokens, req.slo_ttft_s,
            req.slo_tpot_s, req.state.value, req.reject_reason, req.prefill_inst, req.decode_inst,
            req.tier, req.kv_bytes, req.prefill_start_s, req.first_token_s, req.transfer_start_s,
            req.transfer_end_s, req.decode_start_s, req.completion_s, ttft, tpot, e2e, met,
            req.cached_tokens, req.cache_tier, queue, load, compute,
        )

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Per-request records as dicts (``RECORD_FIELDS`` keys), in finishing order."""
        for row in self.records:
            yield dict(zip(RECORD_FIELDS, row))
