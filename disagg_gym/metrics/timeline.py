"""Periodic gauges for timelines: queues, decode batch, KV memory and link load over time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster

PRIO_SAMPLE = 20


class TimelineSampler:
    """Samples cluster gauges every ``interval_s`` simulated seconds (bounded by ``max_samples``).

    Columns: ``t_s``, ``prefill_queue_tokens``, ``prefill_queue_requests``, ``decode_batch``,
    ``decode_waiting``, ``kv_used_frac_prefill``, ``kv_used_frac_decode``, ``transfers_in_flight``,
    ``n_prefill``, ``n_decode``.
    """

    def __init__(self, cluster: Cluster, interval_s: float, max_samples: int = 5000) -> None:
        self.cluster = cluster
        self.interval_s = interval_s
        self.max_samples = max_samples
        self.rows: list[dict[str, Any]] = []
        cluster.engine.schedule(cluster.engine.now, self._tick, None, PRIO_SAMPLE)

    def _tick(self, _: Any) -> None:
        cl = self.cluster
        pq_tok = pq_req = batch = waiting = 0
        kv_p = cap_p = kv_d = cap_d = 0
        n_p = n_d = 0
        for i in cl.instances:
            pq_tok += i.pq_tokens
            pq_req += len(i.pq)
            batch += i.B
            waiting += len(i.dq)
            if i.role is Role.PREFILL:
                kv_p += i.kv_used
                cap_p += i.kv_cap
                n_p += 1
            else:
                kv_d += i.kv_used
                cap_d += i.kv_cap
                n_d += 1
        self.rows.append({
            "t_s": cl.engine.now,
            "prefill_queue_tokens": pq_tok,
            "prefill_queue_requests": pq_req,
            "decode_batch": batch,
            "decode_waiting": waiting,
            "kv_used_frac_prefill": kv_p / cap_p if cap_p else 0.0,
            "kv_used_frac_decode": kv_d / cap_d if cap_d else 0.0,
            "transfers_in_flight": cl.transfers.active,
            "n_prefill": n_p,
            "n_decode": n_d,
        })
        if len(self.rows) < self.max_samples and not cl.drained():
            cl.engine.schedule(cl.engine.now + self.interval_s, self._tick, None, PRIO_SAMPLE)
