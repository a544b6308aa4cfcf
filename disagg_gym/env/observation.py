"""ObservationBuilder: cluster state -> a flat float32 vector with documented, finite bounds.

Layout (``N`` instances, ``G`` switchable GPU types)::

    [ N x 10 per-instance features | 4 request features | 2 decision flags | 6 + G global ]

Every feature is clipped into its bound, so observations are never NaN/inf or out of range.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from disagg_gym.cluster.policies import prefill_wait_s
from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.env.config import EnvConfig
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


class ObservationBuilder:
    """Builds observations for one cluster; allocation-free after construction."""

    def __init__(self, cluster: Cluster, cfg: EnvConfig, horizon_s: float, mean_rate: float) -> None:
        self.cluster = cluster
        self.cfg = cfg
        self.horizon_s = horizon_s
        self.n = cluster.n
        self.gpus = cluster.flexible_gpus()
        self.nf = len(INSTANCE_FEATURES)
        self.size = self.n * self.nf + len(REQUEST_FEATURES) + len(DECISION_FEATURES) + len(GLOBAL_FEATURES) + len(self.gpus)
        ref = [inst.cost.prefill_s([1024]) for inst in cluster.instances]
        fastest = min(ref)
        self.speed = [fastest / r for r in ref]
        self._inv_q = 1.0 / cfg.queue_norm_tokens
        self._inv_w = 1.0 / cfg.wait_norm_s
        self._log_norm = 1.0 / math.log1p(cfg.prompt_norm_tokens)
        self._rate_norm = 1.0 / max(2.0 * mean_rate, 1e-9)
        self._w = 2.0 * math.pi / cfg.day_period_s
        self.buf = np.zeros(self.size, dtype=np.float32)

    @staticmethod
    def bounds(n: int, n_gpus: int) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) arrays of the flat observation."""
        feats = list(INSTANCE_FEATURES) * n + list(REQUEST_FEATURES) + list(DECISION_FEATURES) + list(GLOBAL_FEATURES)
        low = [f[1] for f in feats] + [0.0] * n_gpus
        high = [f[2] for f in feats] + [1.0] * n_gpus
        return np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)

    def build(
        self, req: Request | None, is_route: bool, is_control: bool, slo_ema: float, rej_ema: float, rate_ema: float
    ) -> np.ndarray:
        """Fills and returns a fresh copy of the observation vector."""
        cl = self.cluster
        now = cl.engine.now
        vals: list[float] = []
        ext = vals.extend
        inv_q, inv_w = self._inv_q, self._inv_w
        for inst, speed in zip(cl.instances, self.speed):
            role = inst.role
            mb = inst.max_batch
            wait = prefill_wait_s(inst, now) * inv_w if role is not Role.DECODE else 0.0
            backlog = (len(inst.dq) + inst.incoming + len(inst.joiners)) / mb
            in_flight = 0
            for link in inst.egress.values():
                in_flight += link.in_flight
            ext((
                0.0 if role is Role.DECODE else 1.0,
                0.0 if role is Role.PREFILL else 1.0,
                1.0 if inst.state == "active" else 0.0,
                min(inst.pq_tokens * inv_q, 1.0),
                min(wait, 1.0),
                inst.B / mb,
                inst.kv_used / inst.kv_cap,
                min(backlog, 1.0),
                speed,
                min(in_flight * 0.125, 1.0),
            ))
        if req is not None:
            ext((
                1.0,
                min(math.log1p(req.prompt_tokens) * self._log_norm, 1.0),
                min(req.slo_ttft_s * 0.1, 1.0),
                min(req.slo_tpot_s * 2.0, 1.0),
            ))
        else:
            ext((0.0, 0.0, 0.0, 0.0))
        ext((1.0 if is_route else 0.0, 1.0 if is_control else 0.0))
        t = now
        ext((
            min(max(slo_ema, 0.0), 1.0),
            min(max(rej_ema, 0.0), 1.0),
            min(t / self.horizon_s, 1.0),
            math.sin(self._w * t),
            math.cos(self._w * t),
            min(rate_ema * self._rate_norm, 1.0),
        ))
        for g in self.gpus:
            p, d = cl.role_counts(g)
            ext((p / (p + d),))
        buf = self.buf
        buf[:] = vals
        return buf.copy()

    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Flat vector -> the ``Dict`` observation form."""
        i = self.n * self.nf
        r = i + len(REQUEST_FEATURES)
        d = r + len(DECISION_FEATURES)
        return {
            "instances": flat[:i].reshape(self.n, self.nf),
            "request": flat[i:r],
            "decision": flat[r:d],
            "global": flat[d:],
        }
