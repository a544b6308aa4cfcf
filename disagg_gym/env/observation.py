"""ObservationBuilder: cluster state -> a flat float32 vector with documented, finite bounds.

Layout (``N`` instances, ``G`` switchable GPU types)::

    [ N x 10 per-instance features | 4 request features | 2 decision flags | 6 + G global ]
    + [ N x 5 cache features ]   (only for scenarios with prefix caching, see ``cache_features``)

``obs_mode: padded`` (size-invariant, route tasks; ``M = env.max_instances``)::

    [ M x (10 per-instance features [+ 5 cache features] + valid) | 4 request | 2 decision | 6 global ]

The cache features sit in each row (before ``valid``) when the flat layout has them. Padding
rows are all zero (``valid`` = 0) and their action values are masked out.

Every feature is clipped into its bound, so observations are never NaN/inf or out of range.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.cluster.instance import Instance
    from disagg_gym.env.config import EnvConfig
    from disagg_gym.scenario import ScenarioConfig
    from disagg_gym.workload.request import Request

# name, low, high, meaning
INSTANCE_FEATURES: tuple[tuple[str, float, float, str], ...] = (
    ("serves_prefill", 0.0, 1.0, "1 if the instance's role is prefill or colocated"),
    ("serves_decode", 0.0, 1.0, "1 if the instance's role is decode or colocated"),
    ("accepting", 0.0, 1.0, "1 if active (not draining or switching role)"),
    ("queued_tokens", 0.0, 1.0, "queued prompt tokens / queue_norm_tokens, clipped"),
    ("prefill_wait", 0.0, 1.0, "predicted wait before a new prefill starts / wait_norm_s, clipped"),
    ("decode_batch", 0.0, 1.0, "running decode sequences / max_batch"),
    ("kv_used", 0.0, 1.0, "KV-cache memory in use / capacity"),
    ("decode_backlog", 0.0, 1.0, "sequences waiting for admission or in transfer / max_batch, clipped"),
    ("speed", 0.0, 1.0, "prefill speed relative to the fastest instance in the cluster"),
    ("link_busy", 0.0, 1.0, "KV transfers in flight on the instance's egress links / 8, clipped"),
)
REQUEST_FEATURES: tuple[tuple[str, float, float, str], ...] = (
    ("has_request", 0.0, 1.0, "1 if a request awaits routing"),
    ("prompt_log", 0.0, 1.0, "log(1 + prompt tokens) / log(1 + prompt_norm_tokens), clipped"),
    ("slo_ttft", 0.0, 1.0, "the request's TTFT SLO / 10 s, clipped"),
    ("slo_tpot", 0.0, 1.0, "the request's TPOT SLO / 0.5 s, clipped"),
)
DECISION_FEATURES: tuple[tuple[str, float, float, str], ...] = (
    ("is_route", 0.0, 1.0, "1 if this step routes a request"),
    ("is_control", 0.0, 1.0, "1 if this step sets pool sizes"),
)
GLOBAL_FEATURES: tuple[tuple[str, float, float, str], ...] = (
    ("slo_recent", 0.0, 1.0, "EMA of SLO attainment over finished requests"),
    ("reject_recent", 0.0, 1.0, "EMA of the rejected fraction over finished requests"),
    ("time_frac", 0.0, 1.0, "simulated time / horizon, clipped"),
    ("tod_sin", -1.0, 1.0, "sin(2 pi t / day_period_s)"),
    ("tod_cos", -1.0, 1.0, "cos(2 pi t / day_period_s)"),
    ("arrival_rate", 0.0, 1.0, "EMA of arrivals per second / (2 x configured mean rate), clipped"),
)
# Per switchable GPU type g: ("prefill_share_<g>", 0, 1, "share of g's instances assigned to prefill")
CACHE_FEATURES: tuple[tuple[str, float, float, str], ...] = (
    ("cache_hbm", 0.0, 1.0, "fraction of the pending request's cache blocks (its leading prefix) in the instance's HBM"),
    ("cache_host_dram", 0.0, 1.0, "fraction of its blocks found next (after the HBM prefix) in the instance's host DRAM"),
    ("cache_ssd", 0.0, 1.0, "fraction found next in the instance's local SSD"),
    ("cache_remote", 0.0, 1.0, "fraction found next in the cluster-wide shared pool"),
    ("cache_occupancy", 0.0, 1.0, "cached blocks (in use or not) x block tokens / KV capacity, clipped"),
)


def cache_features(scenario: ScenarioConfig) -> bool:
    """Whether observations of ``scenario`` carry :data:`CACHE_FEATURES`: prefix caching is on
    and the workload carries block hashes (``WorkloadConfig.carries_block_hashes``). Decided
    from the config alone, so an env id's observation shape never depends on the data.
    """
    return scenario.cluster.prefix_cache.enabled and scenario.workload.carries_block_hashes()


PAD_VALID: tuple[str, float, float, str] = ("valid", 0.0, 1.0, "obs_mode padded: 1 for a real instance, 0 for a padding row")
N_TAIL_PADDED = len(REQUEST_FEATURES) + len(DECISION_FEATURES) + len(GLOBAL_FEATURES)
"""Length of the request + decision + global part of the padded observation."""


class ObservationBuilder:
    """Builds observations for one cluster."""

    def __init__(self, cluster: Cluster, cfg: EnvConfig, horizon_s: float, mean_rate: float,
                 cache: bool = False) -> None:
        self.cluster = cluster
        self.cache = cache
        self.cfg = cfg
        self.horizon_s = horizon_s
        self.n = cluster.n
        self.gpus = cluster.flexible_gpus()
        self.nf = len(INSTANCE_FEATURES)
        self.size = self.n * self.nf + len(REQUEST_FEATURES) + len(DECISION_FEATURES) + len(GLOBAL_FEATURES) + len(self.gpus)
        self.head = self.size  # end of the layout without cache features
        if cache:
            self.size += self.n * len(CACHE_FEATURES)
        ref = [inst.cost.prefill_s([1024]) for inst in cluster.instances]
        fastest = min(ref)
        self.speed = [fastest / r for r in ref]
        self._inv_q = 1.0 / cfg.queue_norm_tokens
        self._inv_w = 1.0 / cfg.wait_norm_s
        self._log_norm = 1.0 / math.log1p(cfg.prompt_norm_tokens)
        self._rate_norm = 1.0 / max(2.0 * mean_rate, 1e-9)
        self._w = 2.0 * math.pi / cfg.day_period_s
        self._feat = np.zeros((self.n, self.nf), dtype=np.float64)
        self._end = np.full(self.n, -np.inf)
        self._qwait = np.zeros(self.n)
        self._rows: list[list[float] | None] = [None] * self.n
        self._changed = cluster.changed  # the cluster adds an instance's index when it changes
        self._fresh = True  # no row computed yet

    @staticmethod
    def bounds(n: int, n_gpus: int, cache: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) arrays of the flat observation."""
        feats = list(INSTANCE_FEATURES) * n + list(REQUEST_FEATURES) + list(DECISION_FEATURES) + list(GLOBAL_FEATURES)
        tail = list(CACHE_FEATURES) * n if cache else []
        low = [f[1] for f in feats] + [0.0] * n_gpus + [f[1] for f in tail]
        high = [f[2] for f in feats] + [1.0] * n_gpus + [f[2] for f in tail]
        return np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)

    def _cache_tail(self, req: Request | None) -> list[float]:
        """Per instance: the pending request's blocks found in each tier, and cache occupancy."""
        cl = self.cluster
        cache = cl.cache
        out: list[float] = []
        if cache is None:
            return [0.0] * (self.n * len(CACHE_FEATURES))
        for i in range(self.n):
            occ = cache.occupancy(i)
            if req is not None and req.hash_ids:
                total, h, host, ssd, remote = cache.prefix_blocks(i, req)
                if total:
                    inv = 1.0 / total
                    out += (h * inv, host * inv, ssd * inv, remote * inv, occ if occ < 1.0 else 1.0)
                    continue
            out += (0.0, 0.0, 0.0, 0.0, occ if occ < 1.0 else 1.0)
        return out

    def _row(self, inst: Instance, speed: float) -> tuple[float, ...]:
        """Per-instance features except the time-dependent prefill wait (column 4)."""
        role = inst.role
        inv_mb = 1.0 / inst.max_batch
        q = inst.pq_tokens * self._inv_q
        backlog = (len(inst.dq) + inst.incoming + len(inst.joiners) + len(inst.swapped)) * inv_mb
        in_flight = inst.sending
        return (
            0.0 if role is Role.DECODE else 1.0,
            0.0 if role is Role.PREFILL else 1.0,
            1.0 if inst.accepting else 0.0,
            q if q < 1.0 else 1.0,
            0.0,
            inst.B * inv_mb,
            inst.kv_used / inst.kv_cap,
            backlog if backlog < 1.0 else 1.0,
            speed,
            in_flight * 0.125 if in_flight < 8 else 1.0,
        )

    def build(
        self, req: Request | None, is_route: bool, is_control: bool, slo_ema: float, rej_ema: float,
        rate_ema: float, full: bool = False,
    ) -> np.ndarray:
        """Returns a fresh observation vector.

        Rows are recomputed only for instances the cluster reported changed since the last
        call (``full=True`` recomputes all; a test checks both agree). The prefill-wait
        column depends on the clock and is recomputed for every instance, vectorised.
        """
        cl = self.cluster
        now = cl.engine.now
        if self.n <= 16:  # small clusters: plain Python beats numpy's per-call overhead
            return self._build_small(req, is_route, is_control, slo_ema, rej_ema, rate_ema, full)
        feat = self._feat
        ends = self._end
        qwait = self._qwait
        changed = self._changed
        rows = range(self.n) if full or self._fresh else changed
        self._fresh = False
        instances = cl.instances
        speeds = self.speed
        for i in rows:
            inst = instances[i]
            feat[i] = self._row(inst, speeds[i])
            if inst.role is Role.DECODE:
                ends[i] = -np.inf
                qwait[i] = 0.0
            else:
                ends[i] = inst.prefill_end_s if inst.prefill_busy else -np.inf
                qwait[i] = inst.pq_tokens * inst.s_per_prefill_token() if inst.pq_tokens else 0.0
        changed.clear()
        wait = np.maximum(ends - now, 0.0)
        wait += qwait
        wait *= self._inv_w
        np.minimum(wait, 1.0, out=wait)
        feat[:, 4] = wait
        out = np.empty(self.size, dtype=np.float32)
        k = self.n * self.nf
        out[:k] = feat.ravel()
        out[k:self.head] = self._tail(req, is_route, is_control, slo_ema, rej_ema, rate_ema)
        if self.cache:
            out[self.head:] = self._cache_tail(req)
        return out

    def _build_small(
        self, req: Request | None, is_route: bool, is_control: bool, slo_ema: float, rej_ema: float,
        rate_ema: float, full: bool,
    ) -> np.ndarray:
        cl = self.cluster
        now = cl.engine.now
        rows = self._rows
        inv_w = self._inv_w
        changed = self._changed
        vals: list[float] = []
        for i, inst in enumerate(cl.instances):
            row = rows[i]
            if full or row is None or i in changed:
                row = rows[i] = list(self._row(inst, self.speed[i]))
            if inst.role is not Role.DECODE:
                w = inst.prefill_end_s - now if inst.prefill_busy else 0.0
                if w < 0.0:
                    w = 0.0
                if inst.pq_tokens:
                    w += inst.pq_tokens * inst.s_per_prefill_token()
                w *= inv_w
                row[4] = w if w < 1.0 else 1.0
            vals += row
        changed.clear()
        vals += self._tail(req, is_route, is_control, slo_ema, rej_ema, rate_ema)
        if self.cache:
            vals += self._cache_tail(req)
        return np.array(vals, dtype=np.float32)

    def _tail(
        self, req: Request | None, is_route: bool, is_control: bool, slo_ema: float, rej_ema: float, rate_ema: float
    ) -> list[float]:
        """Request, decision and global features."""
        cl = self.cluster
        now = cl.engine.now
        tail: list[float] = []
        if req is not None:
            pl = math.log1p(req.prompt_tokens) * self._log_norm
            tail += (1.0, pl if pl < 1.0 else 1.0, min(req.slo_ttft_s * 0.1, 1.0), min(req.slo_tpot_s * 2.0, 1.0))
        else:
            tail += (0.0, 0.0, 0.0, 0.0)
        wt = self._w * now
        tail += (
            1.0 if is_route else 0.0,
            1.0 if is_control else 0.0,
            min(max(slo_ema, 0.0), 1.0),
            min(max(rej_ema, 0.0), 1.0),
            min(now / self.horizon_s, 1.0),
            math.sin(wt),
            math.cos(wt),
            min(rate_ema * self._rate_norm, 1.0),
        )
        for g in self.gpus:
            p, d = cl.role_counts(g)
            tail.append(p / (p + d))
        return tail

    @staticmethod
    def padded_row(cache: bool = False) -> list[tuple[str, float, float, str]]:
        """The features of one padded row (``obs_mode: padded``), in order: the instance
        features, the cache features when ``cache``, then ``valid`` (always last).
        """
        return list(INSTANCE_FEATURES) + (list(CACHE_FEATURES) if cache else []) + [PAD_VALID]

    @staticmethod
    def padded_bounds(slots: int, cache: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the padded observation (``obs_mode: padded``), see :meth:`pad`."""
        row = ObservationBuilder.padded_row(cache)
        feats = row * slots + list(REQUEST_FEATURES) + list(DECISION_FEATURES) + list(GLOBAL_FEATURES)
        return (np.asarray([f[1] for f in feats], dtype=np.float32), np.asarray([f[2] for f in feats], dtype=np.float32))

    def pad(self, flat: np.ndarray, slots: int) -> np.ndarray:
        """Flat observation -> the size-invariant padded layout (``obs_mode: padded``).

        ``[slots x (10 instance features [+ 5 cache features] + valid) | 4 request | 2 decision
        | 6 global]``: rows ``n..slots-1`` are all zero (``valid`` = 0); the per-GPU-type prefill
        shares are left out (their number depends on the cluster); the cache features (when
        :attr:`cache`) move from the flat tail into each instance's row.
        """
        nf = self.nf
        k = self.n * nf
        nc = len(CACHE_FEATURES) if self.cache else 0
        width = nf + nc + 1
        out = np.zeros(slots * width + N_TAIL_PADDED, dtype=np.float32)
        rows = out[: slots * width].reshape(slots, width)
        rows[: self.n, :nf] = flat[:k].reshape(self.n, nf)
        if nc:
            rows[: self.n, nf : nf + nc] = flat[self.head :].reshape(self.n, nc)
        rows[: self.n, -1] = 1.0
        out[slots * width :] = flat[k : k + N_TAIL_PADDED]
        return out

    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Flat vector -> the ``Dict`` observation form."""
        i = self.n * self.nf
        r = i + len(REQUEST_FEATURES)
        d = r + len(DECISION_FEATURES)
        out = {
            "instances": flat[:i].reshape(self.n, self.nf),
            "request": flat[i:r],
            "decision": flat[r:d],
            "global": flat[d:self.head],
        }
        if self.cache:
            out["cache"] = flat[self.head:].reshape(self.n, len(CACHE_FEATURES))
        return out
