"""Built-in routing and allocation heuristics that act on the cluster directly.

They serve ``disagg-gym simulate --policy NAME``, the in-env routing of the Allocate task,
and the heuristic agents in ``disagg_gym_agents/``. Each is one class registered by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from disagg_gym.registry import Registry
from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.cluster.instance import Instance
    from disagg_gym.workload.request import Request

ROUTERS: Registry[type] = Registry("router")
ALLOCATORS: Registry[type] = Registry("allocator")


def prefill_wait_s(inst: Instance, now: float) -> float:
    """Predicted wait before a new request's prefill could start on ``inst``.

    Queued prompt tokens are priced at the instance's measured prefill throughput for a
    full token-budget batch (cached per instance via its cost model).
    """
    rem = max(0.0, inst.prefill_end_s - now) if inst.prefill_busy else 0.0
    if inst.pq_tokens:
        rem += inst.pq_tokens * _s_per_prefill_token(inst)
    return rem


def _s_per_prefill_token(inst: Instance) -> float:
    key = -1  # cached in the per-instance coefficient dict under a reserved key
    c = inst._coeffs.get(key)
    if c is None:
        n = max(1, min(inst.token_budget, 4096))
        c = (inst.cost.prefill_s([n]) / n, 0.0)
        inst._coeffs[key] = c
    return c[0]


def decode_pressure(inst: Instance) -> float:
    """Load of a decode instance: max of batch-slot and KV-memory occupancy (0..~1+)."""
    slots = inst.decode_load / inst.max_batch
    mem = inst.kv_used / inst.kv_cap if inst.kv_cap else 1.0
    return max(slots, mem)


class _Base:
    """Shared helpers: candidate lists and colocated handling.

    A router is built as ``cls(rng)`` when ``uses_rng`` (the simulation's ``router`` stream,
    or a heuristic agent's per-episode generator), else ``cls()``; ``upper_bound`` marks a
    reference that uses information a real system lacks. The heuristic agents derive one
    policy per registered router from these two flags (``disagg_gym_agents.heuristics``).
    """

    uses_rng: ClassVar[bool] = False
    upper_bound: ClassVar[bool] = False

    def candidates(self, cluster: Cluster, req: Request) -> tuple[list[Instance], list[Instance]]:
        return cluster.pools()

    @staticmethod
    def pair(p: Instance, ds: list[Instance], d: Instance | None) -> tuple[int, int] | None:
        if p.role is Role.COLOCATED:
            return p.idx, p.idx
        if d is None:
            return None
        return p.idx, d.idx


@ROUTERS.register("round_robin")
class RoundRobinRouter(_Base):
    """Cycles through prefill and decode instances independently."""

    def __init__(self) -> None:
        self._p = 0
        self._d = 0

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        p = ps[self._p % len(ps)]
        self._p += 1
        d = None
        if ds and p.role is not Role.COLOCATED:
            d = ds[self._d % len(ds)]
            self._d += 1
        return self.pair(p, ds, d)


@ROUTERS.register("random")
class RandomRouter(_Base):
    """Uniformly random instances (seeded ``np.random.Generator``)."""

    uses_rng = True

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        p = ps[int(self.rng.integers(len(ps)))]
        d = ds[int(self.rng.integers(len(ds)))] if ds else None
        return self.pair(p, ds, d)


@ROUTERS.register("jsq")
class JoinShortestQueueRouter(_Base):
    """Prefill: fewest queued prompt tokens. Decode: lowest slot/memory pressure."""

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        p = min(ps, key=lambda i: (i.pq_tokens + (i.token_budget if i.prefill_busy else 0), i.idx))
        d = min(ds, key=lambda i: (decode_pressure(i), i.idx)) if ds else None
        return self.pair(p, ds, d)


@ROUTERS.register("p2c")
class PowerOfTwoRouter(_Base):
    """Power-of-two choices: sample two, take the less loaded (queued tokens / pressure)."""

    uses_rng = True

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def _two(self, items: list[Instance]) -> list[Instance]:
        if len(items) <= 2:
            return items
        a, b = self.rng.choice(len(items), size=2, replace=False)
        return [items[int(a)], items[int(b)]]

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        p = min(self._two(ps), key=lambda i: (i.pq_tokens + (i.token_budget if i.prefill_busy else 0), i.idx))
        d = min(self._two(ds), key=lambda i: (decode_pressure(i), i.idx)) if ds else None
        return self.pair(p, ds, d)


@ROUTERS.register("least_finish")
class LeastFinishTimeRouter(_Base):
    """Prefill instance with the earliest predicted first token (queue + own prefill via the
    cost model, so faster GPUs win ties); decode instance with the fastest predicted
    iteration after joining.
    """

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        now = cluster.engine.now

        def ttft(i: Instance) -> float:
            return prefill_wait_s(i, now) + i.cost.prefill_s([req.prompt_tokens])

        p = min(ps, key=lambda i: (ttft(i), i.idx))
        d = None
        if ds:
            def tpot(i: Instance) -> float:
                b = min(i.decode_load + 1, i.max_batch)
                a, c = i.coeffs(b)
                mem_pen = 1.0 if i.kv_used + req.prompt_tokens <= i.kv_cap else 10.0
                return (a + c * (i.S + req.prompt_tokens + b * 256)) * mem_pen * max(1.0, i.decode_load / i.max_batch)

            d = min(ds, key=lambda i: (tpot(i), i.idx))
        return self.pair(p, ds, d)


@ROUTERS.register("kv_aware")
class KVTransferAwareRouter(_Base):
    """Scores (prefill, decode) pairs by predicted TTFT + KV-transfer time over their tier
    + a decode-load penalty, in the style of llm-d's endpoint picker / Dynamo's KV router.
    """

    def __init__(self, load_weight_s: float = 0.05) -> None:
        self.load_weight_s = load_weight_s

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        now = cluster.engine.now
        nbytes = req.prompt_tokens * cluster.kv_bytes_per_token
        best = None
        best_score = math.inf
        for p in ps:
            base = prefill_wait_s(p, now) + p.cost.prefill_s([req.prompt_tokens])
            if p.role is Role.COLOCATED:
                score = base + self.load_weight_s * decode_pressure(p)
                if score < best_score:
                    best, best_score = (p.idx, p.idx), score
                continue
            for d in ds:
                xfer = cluster.transfer_estimate_s(p.idx, d.idx, nbytes)
                score = base + xfer + self.load_weight_s * decode_pressure(d) * 10
                if score < best_score:
                    best, best_score = (p.idx, d.idx), score
        return best


@ROUTERS.register("clairvoyant")
class ClairvoyantRouter(KVTransferAwareRouter):
    """Upper-bound reference: knows each request's true output length and sends long
    generations to the least-loaded decode instance by predicted remaining decode tokens.
    Not implementable in practice (output lengths are unknown at arrival).
    """

    upper_bound = True

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        now = cluster.engine.now
        p = min(ps, key=lambda i: (prefill_wait_s(i, now) + i.cost.prefill_s([req.prompt_tokens]), i.idx))
        if p.role is Role.COLOCATED or not ds:
            return self.pair(p, ds, None)

        def remaining_work(d: Instance) -> float:
            # Tokens still to generate on d (clairvoyant), plus this request's memory need.
            rem = sum(m[0] - d.counter for m in d.members)
            rem += sum(r.output_tokens for r in d.joiners) + sum(r.output_tokens for r in d.dq)
            fits = d.kv_used + req.prompt_tokens + req.output_tokens <= d.kv_cap
            return rem * (1.0 if fits else 4.0) + 1e-3 * d.idx

        d = min(ds, key=remaining_work)
        return p.idx, d.idx


# ------------------------------------------------------------------ allocators
@dataclass
class StaticAllocator:
    """Fixed prefill:decode ratio per GPU type (DistServe/Splitwise-style pool sizing).

    ``prefill_fraction`` of each GPU type's switchable instances serve prefill (rounded,
    at least one of each role overall). Applied once at the first tick, then held.
    """

    prefill_fraction: float = 0.5
    interval_s: float = 30.0
    _done: bool = False

    def allocate(self, cluster: Cluster) -> None:
        """Sets the ratio on the first call."""
        if self._done:
            return
        self._done = True
        for gpu in cluster.flexible_gpus():
            total = sum(cluster.role_counts(gpu))
            cluster.set_prefill_count(gpu, max(1, round(self.prefill_fraction * total)))


ALLOCATORS.register("static")(StaticAllocator)


@dataclass
class ThresholdAllocator:
    """Queue/SLO-threshold autoscaler in the style of Dynamo's planner.

    Every ``interval_s`` it compares predicted prefill wait (TTFT pressure) and decode
    pressure (ITL pressure) against targets and moves one instance towards the phase that
    is further over its target.
    """

    ttft_target_s: float = 1.0
    decode_pressure_target: float = 0.8
    interval_s: float = 10.0

    def allocate(self, cluster: Cluster) -> None:
        """Moves at most one instance per GPU type per tick."""
        now = cluster.engine.now
        for gpu in cluster.flexible_gpus():
            insts = [i for i in cluster.instances if i.gpu == gpu and i.role is not Role.COLOCATED]
            pre = [i for i in insts if i.role is Role.PREFILL and i.accepting]
            dec = [i for i in insts if i.role is Role.DECODE and i.accepting]
            if not pre or not dec:
                continue
            wait = sum(prefill_wait_s(i, now) for i in pre) / len(pre)
            press = sum(decode_pressure(i) for i in dec) / len(dec)
            p_over = wait / self.ttft_target_s
            d_over = press / self.decode_pressure_target
            n_p, _ = cluster.role_counts(gpu)
            if p_over > 1.0 and p_over > d_over:
                cluster.set_prefill_count(gpu, n_p + 1)
            elif d_over > 1.0 and d_over > p_over:
                cluster.set_prefill_count(gpu, n_p - 1)


ALLOCATORS.register("threshold")(ThresholdAllocator)
