"""Built-in routing and allocation heuristics that act on the cluster directly.

They serve ``disagg-gym simulate --policy NAME``, the in-env routing of the Allocate task,
and the heuristic agents in ``disagg_gym_agents/``. Each is one class registered by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from disagg_gym.registry import Registry
from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.cluster.instance import Instance
    from disagg_gym.workload.request import Request

COLOCATED = Role.COLOCATED  # bound once: an Enum class attribute lookup is ~10x a global one on 3.11

ROUTERS: Registry[type] = Registry("router")
ALLOCATORS: Registry[type] = Registry("allocator")


_first = itemgetter(0)  # a decode batch member's done counter


def prefill_wait_s(inst: Instance, now: float) -> float:
    """Predicted wait before a new request's prefill could start on ``inst``.

    Queued prompt tokens are priced at the instance's measured prefill throughput for a
    full token-budget batch (cached per instance via its cost model).
    """
    rem = max(0.0, inst.prefill_end_s - now) if inst.prefill_busy else 0.0
    if inst.pq_tokens:
        rem += inst.pq_tokens * inst.s_per_prefill_token()
    return rem


def decode_pressure(inst: Instance) -> float:
    """Load of a decode instance: max of batch-slot and KV-memory occupancy (0..~1+)."""
    slots = inst.decode_load / inst.max_batch
    mem = inst.kv_used / inst.kv_cap if inst.kv_cap else 1.0
    return max(slots, mem)


def _least_pressure(ds: list[Instance]) -> Instance:
    """``min(ds, key=lambda i: (decode_pressure(i), i.idx))``, inlined (the routers' hot loop)."""
    best = ds[0]
    b = best.batch
    kv = best.kv
    bp = (b.B + len(b.joiners) + best.incoming + len(best.dq) + len(best.swapped) + best.swapping) / best.max_batch
    cap = kv.capacity
    mem = kv.used / cap if cap else 1.0
    if mem > bp:
        bp = mem
    bi = best.idx
    rest = iter(ds)
    next(rest)
    for i in rest:
        b = i.batch
        slots = (b.B + len(b.joiners) + i.incoming + len(i.dq) + len(i.swapped) + i.swapping) / i.max_batch
        if slots > bp:
            continue  # its pressure is at least ``slots``: cannot beat the best
        kv = i.kv
        cap = kv.capacity
        mem = kv.used / cap if cap else 1.0
        p = mem if mem > slots else slots
        if p < bp or (p == bp and i.idx < bi):
            best, bp, bi = i, p, i.idx
    return best


def _least_queued(ps: list[Instance]) -> Instance:
    """``min(ps, key=lambda i: (queued prompt tokens + a busy batch's budget, i.idx))``, inlined."""
    best = ps[0]
    bk = best.pq.tokens + (best.token_budget if best.prefill_busy else 0)
    bi = best.idx
    rest = iter(ps)
    next(rest)
    for i in rest:
        q = i.pq.tokens + (i.token_budget if i.prefill_busy else 0)
        if q < bk or (q == bk and i.idx < bi):
            best, bk, bi = i, q, i.idx
    return best


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
        if p.role is COLOCATED:
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
        if ds and p.role is not COLOCATED:
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
        p = _least_queued(ps)
        d = _least_pressure(ds) if ds else None
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
        p = _least_queued(self._two(ps))
        d = _least_pressure(self._two(ds)) if ds else None
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
        # each decode instance's load penalty does not depend on the prefill instance: once per
        # request, not once per pair (the same floats, so the same choices)
        penalties = [(d.idx, self.load_weight_s * decode_pressure(d) * 10) for d in ds]
        pen_min = min([pen for _, pen in penalties], default=math.inf)
        estimate = cluster.transfer_estimate_s
        for p in ps:
            base = prefill_wait_s(p, now) + p.cost.prefill_s([req.prompt_tokens])
            if p.role is COLOCATED:
                score = base + self.load_weight_s * decode_pressure(p)
                if score < best_score:
                    best, best_score = (p.idx, p.idx), score
                continue
            # A pair scores (base + transfer) + penalty with transfer >= 0, and float addition is
            # monotone, so base + penalty bounds its score from below: a pair (or a whole prefill
            # instance) whose bound is not below the best so far cannot win (ties keep the
            # earlier pair). Skipping it leaves the choice exactly as the full scan's.
            if base + pen_min >= best_score:
                continue
            pi = p.idx
            for di, pen in penalties:
                if base + pen >= best_score:
                    continue
                score = base + estimate(pi, di, nbytes) + pen
                if score < best_score:
                    best, best_score = (pi, di), score
        return best


@ROUTERS.register("length_oracle")
class LengthOracleRouter(KVTransferAwareRouter):
    """Output-length oracle (a reference, not a bound): knows each request's true output
    length and sends long generations to the least-loaded decode instance by predicted
    remaining decode tokens. Not implementable in practice (output lengths are unknown at
    arrival), and not an upper bound either: other policies can beat it (issue #15); the
    bounds are ``disagg-gym bounds``. Formerly ``clairvoyant`` (a deprecated alias).
    """

    upper_bound = True

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        now = cluster.engine.now
        prompt = [req.prompt_tokens]
        compute: dict[int, float] = {}  # prefill seconds per cost model (instances share them)

        def ttft(i: Instance) -> tuple[float, int]:
            c = compute.get(id(i.cost))
            if c is None:
                c = compute[id(i.cost)] = i.cost.prefill_s(prompt)
            return prefill_wait_s(i, now) + c, i.idx

        p = min(ps, key=ttft)
        if p.role is COLOCATED or not ds:
            return self.pair(p, ds, None)
        need = req.prompt_tokens + req.output_tokens

        def remaining_work(d: Instance) -> float:
            # Tokens still to generate on d (clairvoyant), plus this request's memory need:
            # sum(done - counter) over the members, as sum(done) - B * counter (integers)
            members = d.members
            rem: int = sum(map(_first, members)) - len(members) * d.counter
            rem += sum(r.output_tokens for r in d.joiners) + sum(r.output_tokens for r in d.dq)
            fits = d.kv_used + need <= d.kv_cap
            return rem * (1.0 if fits else 4.0) + 1e-3 * d.idx

        d = min(ds, key=remaining_work)
        return p.idx, d.idx


# ------------------------------------------------------------------ cache-aware routers (issue #14)
def cached_blocks(cluster: Cluster, inst: Instance, req: Request) -> tuple[int, int, int, int, int]:
    """``(total, hbm, host_dram, ssd, remote)`` leading blocks of ``req`` instance ``inst`` finds
    in each cache tier (all zero when nothing is cached or the request carries no hashes).
    """
    cache = cluster.cache
    if cache is None or not req.hash_ids:
        return 0, 0, 0, 0, 0
    return cache.prefix_blocks(inst.idx, req)


def _queued_tokens(i: Instance) -> int:
    return i.pq_tokens + (i.token_budget if i.prefill_busy else 0)


@ROUTERS.register("prefix_affinity")
class PrefixAffinityRouter(_Base):
    """Most cached blocks: the prefill instance holding the longest prefix of the request in
    its own caches (HBM, then host DRAM and SSD; the shared pool is the same everywhere and
    does not count), ties broken by fewest queued tokens; the decode instance holding the
    longest prefix in HBM (fewer bytes to transfer), ties by lowest slot/memory pressure.
    Without cached blocks it is JSQ.
    """

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None

        def p_key(i: Instance) -> tuple[int, int, int]:
            _, h, host, ssd, _ = cached_blocks(cluster, i, req)
            return -(h + host + ssd), _queued_tokens(i), i.idx

        p = min(ps, key=p_key)
        d = None
        if ds and p.role is not COLOCATED:
            d = min(ds, key=lambda i: (-cached_blocks(cluster, i, req)[1], decode_pressure(i), i.idx))
        return self.pair(p, ds, d)


@ROUTERS.register("kv_router")
class DynamoKVRouter(_Base):
    """NVIDIA Dynamo's KV router cost: ``overlap_score_weight * prefill_blocks + decode_blocks``,
    lowest wins (Dynamo docs, "KV Router" / "Routing Concepts": prefill blocks = (prompt
    tokens - overlap blocks x block size) / block size, plus the worker's active prefill work;
    decode blocks = the worker's active KV blocks plus the request's; ``overlap_score_weight``
    defaults to 1.0 (``--kv-overlap-score-weight``)).

    Here, per block of ``prefix_cache.block_tokens`` tokens: for a prefill instance,
    prefill blocks = (queued prompt tokens + the request's tokens not in its HBM) / block and
    decode blocks = KV tokens held / block; for a decode instance, prefill blocks = the
    request's tokens it does not hold (to be transferred) / block and decode blocks = (KV
    held + the request's prompt) / block.
    """

    def __init__(self, overlap_score_weight: float = 1.0) -> None:
        self.w = overlap_score_weight

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        blk = cluster.cache.block if cluster.cache is not None else cluster.block
        w = self.w
        P = req.prompt_tokens

        def p_cost(i: Instance) -> tuple[float, int]:
            hit = cached_blocks(cluster, i, req)[1] * blk
            return w * (_queued_tokens(i) + P - hit) / blk + i.kv_used / blk, i.idx

        p = min(ps, key=p_cost)
        d = None
        if ds and p.role is not COLOCATED:
            def d_cost(i: Instance) -> tuple[float, int]:
                hit = cached_blocks(cluster, i, req)[1] * blk
                return w * (P - hit) / blk + (i.kv_used + P) / blk, i.idx

            d = min(ds, key=d_cost)
        return self.pair(p, ds, d)


@ROUTERS.register("llmd_scorer")
class LlmdScorerRouter(_Base):
    """llm-d's endpoint picker with weighted scorers, highest total wins (max-score picker).

    The precise-prefix-cache-aware guide of llm-d weights ``precise-prefix-cache-scorer: 3``,
    ``kv-cache-utilization-scorer: 2`` and ``queue-scorer: 2`` (llm-d
    ``guides/precise-prefix-cache-aware/gaie-kv-events/values.yaml``). Each scorer gives 0..1:
    prefix = the fraction of the request's blocks cached in the instance's HBM; KV
    utilisation = 1 - KV memory in use / capacity; queue = min-max normalised queue length
    over the candidates (1 for the shortest; all 1 when equal). Prefill instances' queues are
    queued prompt tokens; decode instances' are sequences waiting or running.
    """

    def __init__(self, prefix_weight: float = 3.0, kv_weight: float = 2.0, queue_weight: float = 2.0) -> None:
        self.wp, self.wk, self.wq = prefix_weight, kv_weight, queue_weight

    def _pick(self, cluster: Cluster, req: Request, insts: list[Instance], queue: list[float]) -> Instance:
        lo, hi = min(queue), max(queue)
        span = hi - lo
        best = insts[0]
        best_s = -math.inf
        for i, q in zip(insts, queue):
            total = cached_blocks(cluster, i, req)
            prefix = total[1] / total[0] if total[0] else 0.0
            kv = 1.0 - (i.kv_used / i.kv_cap if i.kv_cap else 1.0)
            qs = (hi - q) / span if span > 0 else 1.0
            s = self.wp * prefix + self.wk * kv + self.wq * qs
            if s > best_s:
                best, best_s = i, s
        return best

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        p = self._pick(cluster, req, ps, [float(_queued_tokens(i)) for i in ps])
        d = None
        if ds and p.role is not COLOCATED:
            d = self._pick(cluster, req, ds, [float(i.decode_load) for i in ds])
        return self.pair(p, ds, d)


@ROUTERS.register("conductor")
class ConductorRouter(_Base):
    """Mooncake's Conductor (Qin et al., FAST'25, Sec. 5 "KVCache-centric scheduling"): the
    prefill instance minimising predicted TTFT = queue wait + compute of the tokens it lacks
    (cost model, over the cached context) + load time of the blocks it would fetch from lower
    tiers (bytes / fair-share bandwidth + latency); the decode instance with the lowest
    predicted TPOT. Rejects at arrival ("early rejection") when the predicted TTFT exceeds the
    request's TTFT SLO or the predicted TPOT its TPOT SLO, unless ``reject`` is off.
    """

    def __init__(self, reject: bool = True) -> None:
        self.reject = reject

    def ttft_s(self, cluster: Cluster, p: Instance, req: Request, now: float) -> float:
        """Predicted TTFT of ``req`` on prefill instance ``p``."""
        P = req.prompt_tokens
        total, h, host, ssd, remote = cached_blocks(cluster, p, req)
        cache = cluster.cache
        wait = prefill_wait_s(p, now)
        if cache is None or not total:
            return wait + p.cost.prefill_s([P])
        blk = cache.block
        limit = (P - 1) // blk
        h = min(h, limit)
        best = p.cost.prefill_s([P - h * blk], [h * blk])
        load = 0.0
        k = h
        for tier, n in (("host_dram", host), ("ssd", ssd), ("remote", remote)):
            n = min(n, limit - k)
            if n <= 0:
                continue
            load += cache.load_estimate_s(p.idx, tier, n)
            k += n
            # load + compute: a conservative prediction (the hierarchy overlaps the two, so a
            # request takes about the larger; CacheHierarchy.start_prefill). Kept as it is
            # because the route configs' predicted reward term reads it (a change is a new version).
            best = min(best, load + p.cost.prefill_s([P - k * blk], [k * blk]))
        return wait + best

    @staticmethod
    def tpot_s(d: Instance, req: Request) -> float:
        """Predicted decode iteration time of ``d`` once ``req`` joins."""
        b = min(d.decode_load + 1, d.max_batch)
        a, c = d.coeffs(b)
        slow = max(1.0, (d.decode_load + 1) / d.max_batch)
        return (a + c * (d.S + req.prompt_tokens)) * slow

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        ps, ds = self.candidates(cluster, req)
        if not ps:
            return None
        now = cluster.engine.now
        p = min(ps, key=lambda i: (self.ttft_s(cluster, i, req, now), i.idx))
        if self.reject and self.ttft_s(cluster, p, req, now) > req.slo_ttft_s:
            return None
        if p.role is COLOCATED:
            if self.reject and self.tpot_s(p, req) > req.slo_tpot_s:
                return None
            return p.idx, p.idx
        if not ds:
            return None
        d = min(ds, key=lambda i: (self.tpot_s(i, req), i.idx))
        if self.reject and self.tpot_s(d, req) > req.slo_tpot_s:
            return None
        return p.idx, d.idx


ROUTERS.alias(
    "clairvoyant", "length_oracle",
    "router 'clairvoyant' is deprecated: it is an output-length oracle, not an upper bound; "
    "use 'length_oracle' (bounds: disagg-gym bounds)",
)
ClairvoyantRouter = LengthOracleRouter  # deprecated name of the class


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
            insts = [i for i in cluster.instances if i.gpu == gpu and i.role is not COLOCATED]
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


# Routers defined in their own modules register on import (one module per baseline family).


# ------------------------------------------------------------------ predictions (admission control, spillover; issue #15)
def queue_wait_s(inst: Instance, now: float) -> float:
    """Predicted wait before a new prompt's prefill could start on ``inst``.

    The running iteration's remainder plus the prompt tokens queued behind it at the
    instance's full-batch rate (the cost model's, as in ``policies.prefill_wait_s``). Unlike
    ``policies.prefill_wait_s`` the running batch's tokens are not counted twice (they stay
    in the queue's token count until their iteration ends); that function is left as it is
    because the shipped routers' results depend on it.
    """
    if inst.prefill_busy:
        rem = max(0.0, inst.prefill_end_s - now)
        queued = inst.pq_tokens - sum(n for _, n, _ in inst.prefill_batch)
    else:
        rem, queued = 0.0, inst.pq_tokens
    return rem + queued * inst.s_per_prefill_token() if queued > 0 else rem


def predicted_ttft_s(cluster: Cluster, req: Request, p: int, d: int, include_transfer: bool = True) -> float:
    """Predicted TTFT of ``req`` if dispatched to ``(p, d)`` now.

    Queue wait before its prefill could start (:func:`queue_wait_s`: the running
    iteration's remainder plus queued prompt tokens at the instance's full-batch rate), plus
    its own prefill from the cost model, plus (disaggregated pairs, ``include_transfer``) the
    KV transfer ``p -> d`` at the current fair share (``Cluster.transfer_estimate_s``).
    The simulator stamps the first token at the end of prefill, so the transfer term makes the
    prediction conservative: it is the time the first token's KV reaches the decode instance.
    """
    pi = cluster.instances[p]
    return _plus_transfer(cluster, req, pi, d, ready_s(pi, req, cluster.engine.now), include_transfer)


def ready_s(inst: Instance, req: Request, now: float) -> float:
    """Queue wait plus ``req``'s own prefill on ``inst``: the predicted TTFT before any transfer."""
    return queue_wait_s(inst, now) + inst.cost.prefill_s([req.prompt_tokens])


def _plus_transfer(cluster: Cluster, req: Request, pi: Instance, d: int, t: float, include_transfer: bool = True) -> float:
    """``t`` (:func:`ready_s` on ``pi``) plus the KV transfer ``pi -> d`` where a pair has one."""
    if include_transfer and pi.role is not COLOCATED and pi.idx != d:
        t += cluster.transfer_estimate_s(pi.idx, d, req.prompt_tokens * cluster.kv_bytes_per_token)
    return t


def predicted_tpot_s(d: Instance, req: Request) -> float:
    """Predicted decode iteration time on ``d`` once ``req`` joins (seconds per output token).

    Every sequence that ``d`` runs or owes (``decode_load``) plus this one, capped at the
    batch size; the context is the batch's current tokens plus this prompt.
    """
    b = min(d.decode_load + 1, d.max_batch)
    a, c = d.coeffs(b)
    return a + c * (d.S + req.prompt_tokens)



# ------------------------------------------------------------------ spillover (issue #15 item 2)
# The router a practitioner writes for a hybrid deployment: serve every request on the reserved
# (on-prem) instances, and burst to on-demand (cloud) instances only when the best on-prem pair's
# predicted TTFT would exceed ``alpha`` x the request's TTFT SLO. Pairs stay within one side, so
# a burst never pays the WAN.
@ROUTERS.register("spillover")
class SpilloverRouter:
    """On-prem first; burst to on-demand instances when on-prem would miss the TTFT SLO.

    Within a side, the prefill instance with the lowest predicted TTFT (queue wait + own
    prefill + KV transfer, :func:`disagg_gym.cluster.admission.predicted_ttft_s`) is chosen,
    each paired with the side's decode instance that is quickest to reach plus a load penalty. A cluster without on-demand
    instances is all "on-prem": the router is then a least-predicted-TTFT router.

    Args:
        alpha: Burst when the on-prem prediction exceeds ``alpha`` x the TTFT SLO (> 0).
    """

    uses_rng = False
    upper_bound = False

    def __init__(self, alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (got {alpha!r})")
        self.alpha = alpha
        self.bursts = 0

    def _best(self, cluster: Cluster, req: Request, ps: list[Instance], ds: list[Instance]) -> tuple[float, tuple[int, int] | None]:
        """The side's pair with the least predicted TTFT.

        Each prefill instance is paired with the decode instance of the side that is cheapest
        to reach (transfer estimate) plus a load penalty (as ``kv_aware``: 0.5 s per unit of
        decode pressure).
        """
        best, best_t = None, math.inf
        nbytes = req.prompt_tokens * cluster.kv_bytes_per_token
        # the decode side's load penalties do not depend on the prefill instance: once per call
        penalties = [(i.idx, 0.5 * decode_pressure(i)) for i in ds]
        estimate = cluster.transfer_estimate_s
        now = cluster.engine.now
        for p in ps:
            # The predicted TTFT is ready_s plus a transfer >= 0 (float addition is monotone): an
            # instance whose ready_s is not below the best so far cannot win (ties keep the
            # earlier one), so its decode choice is skipped; exact.
            ready = ready_s(p, req, now)
            if ready >= best_t:
                continue
            if p.role is COLOCATED:
                pair = (p.idx, p.idx)
            elif not ds:
                continue
            else:
                # min over (transfer + penalty, idx): the lowest value, ties to the lowest index
                pi, di, dv = p.idx, -1, math.inf
                for i, pen in penalties:
                    if pen > dv:  # transfer >= 0, so its value >= pen > dv: it cannot win, not even a tie
                        continue
                    v = estimate(pi, i, nbytes) + pen
                    if v < dv or (v == dv and i < di):
                        di, dv = i, v
                pair = (pi, di)
            t = _plus_transfer(cluster, req, p, pair[1], ready)  # = predicted_ttft_s(cluster, req, *pair)
            if t < best_t:
                best, best_t = pair, t
        return best_t, best

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        """The on-prem pair unless it is predicted to miss; then the on-demand pair if faster."""
        ps, ds = cluster.pools()
        home_t, home = self._best(cluster, req, [i for i in ps if not i.on_demand], [i for i in ds if not i.on_demand])
        if home is not None and home_t <= self.alpha * req.slo_ttft_s:
            return home
        cloud_t, cloud = self._best(cluster, req, [i for i in ps if i.on_demand], [i for i in ds if i.on_demand])
        if cloud is not None and (home is None or cloud_t < home_t):
            self.bursts += 1
            return cloud
        return home
