"""The serving cluster: wires instances and links, applies routing/allocation, emits events.

Request flow (disaggregated): arrival -> routed to a prefill instance P and a decode instance D
-> P's FIFO queue -> prefill batch (token budget, KV room) -> first token -> wait for D's KV
room and batch slot (``on_kv_full: queue``) -> KV transfer P->D over the tier the topology
gives -> join D's decode batch at its next iteration boundary -> completion. Colocated
instances (the non-disaggregated baseline) prefill and decode on one instance: a prefill batch
pauses decode at an iteration boundary, as vLLM's default scheduler does.

Every request ends completed or rejected with a reason; ``disagg_gym.testing.checks`` proves it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from disagg_gym.cluster.config import ClusterConfig
from disagg_gym.cluster.instance import Instance
from disagg_gym.interconnect.kv_transfer import LinkState
from disagg_gym.sim.engine import Engine
from disagg_gym.types import RequestState, Role
from disagg_gym.workload.request import Request
from disagg_gym.workload.source import ArrivalSource

if TYPE_CHECKING:
    from disagg_gym.metrics.chrome_trace import TimelineObserver

PRIO_ARRIVAL = 5
PRIO_PREFILL = 1
PRIO_DECODE = 0
PRIO_CONTROL = 9

REJECT_REASONS = ("too_large", "queue_full", "kv_full", "no_instance", "policy", "invalid_route")


class ClusterObserver(Protocol):
    """Hooks the cluster calls (implemented by ``disagg_gym.metrics.Recorder``)."""

    def on_arrival(self, req: Request) -> None: ...
    def on_first_token(self, req: Request) -> None: ...
    def on_kv_transfer_done(self, req: Request) -> None: ...
    def on_completion(self, req: Request) -> None: ...
    def on_reject(self, req: Request) -> None: ...


class Router(Protocol):
    """Chooses ``(prefill_idx, decode_idx)`` for a request, or ``None`` to reject it."""

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None: ...


class Allocator(Protocol):
    """Called every ``interval_s``; changes roles via ``Cluster.set_prefill_count``."""

    interval_s: float

    def allocate(self, cluster: Cluster) -> None: ...


class NullObserver:
    """Observer that records nothing."""

    def on_arrival(self, req: Request) -> None:  # noqa: D102
        pass

    on_first_token = on_kv_transfer_done = on_completion = on_reject = on_arrival


class Cluster:
    """A simulated serving cluster driven by an ``Engine``.

    Args:
        config: The cluster config.
        engine: The event engine (owns the clock).
        source: Where arrivals come from.
        observer: Metric hooks.
        router: Routing policy; ``None`` means decisions come from outside (the env): each
            arrival is parked in ``pending`` and the engine's ``run_until`` predicate stops.
        allocator: Optional periodic role allocator.
        external_control_interval_s: If set, a control decision point is raised every interval
            (``control_due``), for an external allocator (the env).
        cost_factory: ``(gpu, tp) -> InstanceCost`` (defaults to the calibrated roofline;
            tests pass toy cost models with hand-computable answers).
        timeline: Optional timeline hooks (``disagg_gym.metrics.chrome_trace.ChromeTrace``):
            prefill/decode/transfer/drain/switch spans and role changes per instance.
    """

    def __init__(
        self,
        config: ClusterConfig,
        engine: Engine,
        source: ArrivalSource | None,
        *,
        observer: ClusterObserver | None = None,
        router: Router | None = None,
        allocator: Allocator | None = None,
        external_control_interval_s: float | None = None,
        cost_factory: Callable[[str, int], Any] | None = None,
        timeline: TimelineObserver | None = None,
    ) -> None:
        from disagg_gym.hardware import build_instance_cost, get_gpu, load_model
        from disagg_gym.interconnect.links import get_link, link_for_gpu

        self.config = config
        self.engine = engine
        self.source = source
        self.observer: ClusterObserver = observer or NullObserver()
        self.router = router
        self.allocator = allocator
        self.timeline = timeline
        self._drain_start_s: dict[int, float] = {}  # timeline only: when each drain began
        self.model = load_model(config.model)
        self._rid = itertools.count()
        self.block = config.block_size_tokens
        self.on_kv_full = config.on_kv_full
        self.max_queue_tokens = config.max_queue_tokens

        # ---- instances and placement
        self.instances: list[Instance] = []
        node = -1
        used_node: tuple[int, int] | None = None
        self._costs: dict[tuple[str, int], Any] = {}
        for g_idx, g in enumerate(config.groups):
            gpu = get_gpu(g.gpu)
            key = (g.gpu, g.tp)
            cost = self._costs.get(key)
            if cost is None:
                cost = cost_factory(g.gpu, g.tp) if cost_factory else build_instance_cost(gpu, self.model, g.tp)
                self._costs[key] = cost
            kv_cap = cost.kv_capacity_tokens(config.kv_reserve_frac)
            if kv_cap < self.block:
                raise ValueError(
                    f"key 'groups[{g_idx}]': model {self.model.name} does not fit on {g.gpu} at "
                    f"tp={g.tp} (weights {cost.weight_bytes_per_gpu / 1e9:.1f} GB per GPU, "
                    f"{gpu.hbm_gb:g} GB HBM; got kv capacity {kv_cap} tokens)"
                )
            if g.tp > config.topology.gpus_per_node:
                raise ValueError(
                    f"key 'groups[{g_idx}].tp': tp exceeds topology.gpus_per_node "
                    f"({config.topology.gpus_per_node}) (got {g.tp})"
                )
            price = g.price_usd_per_gpu_hour if g.price_usd_per_gpu_hour is not None else gpu.price_usd_per_hour
            # Groups of the same GPU type and site keep filling the current node; others start
            # a new one (a node holds one GPU type).
            prev = config.groups[g_idx - 1] if g_idx else None
            if prev is None or prev.gpu != g.gpu or prev.site != g.site:
                used_node = None
            for _ in range(g.count):
                if used_node is None or used_node[1] + g.tp > config.topology.gpus_per_node:
                    node += 1
                    used_node = (node, 0)
                inst = Instance(
                    idx=len(self.instances), group=g_idx, gpu=g.gpu, tp=g.tp, role=Role(g.role),
                    site=g.site, node=used_node[0], cost=cost, kv_cap_tokens=kv_cap,
                    max_batch=g.max_batch, token_budget=g.prefill_token_budget,
                    price_per_s=price * g.tp / 3600.0,
                )
                inst.on_demand = g.billing == "on_demand"
                used_node = (used_node[0], used_node[1] + g.tp)
                self.instances.append(inst)
        self.n = len(self.instances)
        if timeline is not None:  # timeline (#13)
            for inst in self.instances:
                timeline.on_instance(inst.idx, inst.gpu, inst.tp, inst.role.value)
        self.sites = sorted({i.site for i in self.instances})
        # Incremental energy/cost: energy(t) = idle_w * t + extra_energy_j; cost likewise.
        self.idle_w = sum(i.cost.idle_power_w for i in self.instances)
        self.extra_energy_j = 0.0
        self.reserved_usd_per_s = sum(i.price_per_s for i in self.instances if not i.on_demand)
        self.on_demand_usd = 0.0
        self._role_counts: dict[str, tuple[int, int]] = {}
        self.kv_bytes_per_token = self.instances[0].cost.kv_bytes_per_token

        # ---- tiers and links
        topo = config.topology
        self._link_for_gpu = link_for_gpu
        self._get_link = get_link
        for name in (topo.intra_node, topo.inter_node, topo.inter_site):
            get_link(name)  # validates the tier name
        self._wan: dict[tuple[str, str], LinkState] = {}
        self._tier_cache: dict[tuple[int, int], tuple[str, LinkState]] = {}

        # ---- decision plumbing
        self.pending: Request | None = None
        self._pools: tuple[list[Instance], list[Instance]] | None = None
        self.control_due = False
        self.control_interval_s = external_control_interval_s
        self.arrivals_done = False
        self.in_system = 0
        self.arrived = 0
        self.finished = 0
        self._chunk: tuple[list[float], list[int], list[int], list[float], list[float], list | None] | None = None
        self._chunk_pos = 0
        self._cb_prefill_done = self._prefill_done
        self._cb_decode_tick = self._decode_tick
        self._cb_transfer_done = self._transfer_done

    # ================================================================ start-up
    def start(self) -> None:
        """Schedules the first arrival and control ticks. Call once, before running."""
        self._schedule_next_arrival()
        if self.allocator is not None:
            self.engine.schedule(self.engine.now + self.allocator.interval_s, self._alloc_tick, None, PRIO_CONTROL)
        if self.control_interval_s:
            self.engine.schedule(self.engine.now + self.control_interval_s, self._control_tick, None, PRIO_CONTROL)

    # ================================================================ topology
    def tier_between(self, p: int, d: int) -> str:
        """Interconnect tier name joining instances ``p`` and ``d``."""
        return self._link(p, d)[0]

    def _link(self, p: int, d: int) -> tuple[str, LinkState]:
        key = (p, d)
        hit = self._tier_cache.get(key)
        if hit is not None:
            return hit
        src, dst = self.instances[p], self.instances[d]
        topo = self.config.topology
        from disagg_gym.hardware import get_gpu

        if src.site != dst.site:
            tier = topo.inter_site
            pair = (min(src.site, dst.site), max(src.site, dst.site))
            link = self._wan.get(pair)
            if link is None:
                spec = self._get_link(tier)
                bw = (topo.inter_site_bandwidth_gbps or spec.bandwidth_gbps) * 1e9
                link = LinkState(self.engine, ("wan",) + pair, tier, bw, spec.latency_s)
                self._wan[pair] = link
        else:
            tier = topo.intra_node if src.node == dst.node else topo.inter_node
            if tier == "nvlink":
                g1, g2 = get_gpu(src.gpu), get_gpu(dst.gpu)
                if g1.nvlink_gbps_per_dir <= 0 or g2.nvlink_gbps_per_dir <= 0:
                    tier = "pcie"
            link = src.egress.get(tier)
            if link is None:
                spec = self._link_for_gpu(tier, get_gpu(src.gpu))
                # KV is sharded over TP ranks, each with its own port.
                bw = spec.bandwidth_gbps * 1e9 * min(src.tp, dst.tp)
                link = LinkState(self.engine, ("egress", src.idx, tier), tier, bw, spec.latency_s)
                src.egress[tier] = link
        res = (tier, link)
        self._tier_cache[key] = res
        return res

    def links(self) -> list[LinkState]:
        """Every link created so far."""
        out = [link for inst in self.instances for link in inst.egress.values()]
        out.extend(self._wan.values())
        return out

    # ================================================================ arrivals
    def _schedule_next_arrival(self) -> None:
        ch = self._chunk
        if ch is None or self._chunk_pos >= len(ch[0]):
            nxt = self.source.next_chunk() if self.source is not None else None
            if nxt is None or len(nxt.arrival_s) == 0:
                self._chunk = None
                self.arrivals_done = True
                return
            ch = self._chunk = (
                nxt.arrival_s.tolist(), nxt.prompt_tokens.tolist(), nxt.output_tokens.tolist(),
                nxt.slo_ttft_s.tolist(), nxt.slo_tpot_s.tolist(), nxt.hash_ids,
            )
            self._chunk_pos = 0
        i = self._chunk_pos
        t = ch[0][i]
        if t < self.engine.now:
            t = self.engine.now
        self.engine.schedule(t, self._arrive, i, PRIO_ARRIVAL)

    def _arrive(self, i: int) -> None:
        ch = self._chunk
        assert ch is not None
        hashes = ch[5]
        req = Request(
            next(self._rid), self.engine.now, ch[1][i], ch[2][i], ch[3][i], ch[4][i],
            tuple(hashes[i]) if hashes is not None else None,
        )
        self._chunk_pos = i + 1
        self.arrived += 1
        self.in_system += 1
        self.observer.on_arrival(req)
        self._schedule_next_arrival()
        if self.router is None:
            self.pending = req
            return
        choice = self.router.route(self, req)
        if choice is None:
            self.reject(req, "policy")
        else:
            self.dispatch(req, choice[0], choice[1])

    def inject(self, req: Request) -> None:
        """Adds an externally built request arriving now (tests, custom workloads)."""
        self.arrived += 1
        self.in_system += 1
        self.observer.on_arrival(req)
        if self.router is None:
            self.pending = req
        else:
            choice = self.router.route(self, req)
            if choice is None:
                self.reject(req, "policy")
            else:
                self.dispatch(req, *choice)

    def new_rid(self) -> int:
        """A fresh request id from this cluster's counter."""
        return next(self._rid)

    # ================================================================ routing
    def valid_route(self, req: Request, p: int, d: int) -> str | None:
        """Why ``(p, d)`` cannot take ``req`` right now, or ``None`` if it can."""
        n = self.n
        if not (0 <= p < n and 0 <= d < n):
            return "invalid_route"
        pi, di = self.instances[p], self.instances[d]
        if not pi.accepting or not di.accepting:
            return "no_instance"
        if pi.role is Role.COLOCATED or di.role is Role.COLOCATED:
            if p != d or pi.role is not Role.COLOCATED:
                return "invalid_route"
        elif pi.role is not Role.PREFILL or di.role is not Role.DECODE:
            return "invalid_route"
        if self.blocks(req.prompt_tokens) > pi.kv_cap:
            return "too_large"
        if self.blocks(req.prompt_tokens + req.output_tokens) > di.kv_cap:
            return "too_large"
        return None

    def blocks(self, tokens: int) -> int:
        """Tokens rounded up to whole KV blocks."""
        b = self.block
        return -(-tokens // b) * b

    def dispatch(self, req: Request, p: int, d: int) -> None:
        """Routes ``req`` to prefill instance ``p`` and decode instance ``d`` (same if colocated)."""
        if req is self.pending:
            self.pending = None
        why = self.valid_route(req, p, d)
        if why is not None:
            self.reject(req, why)
            return
        pi = self.instances[p]
        if self.max_queue_tokens and pi.pq_tokens + req.prompt_tokens > self.max_queue_tokens and pi.pq:
            self.reject(req, "queue_full")
            return
        req.prefill_inst = p
        req.decode_inst = d
        req.state = RequestState.PREFILL_QUEUED
        pi.pq.append(req)
        pi.pq_tokens += req.prefill_tokens
        pi.dirty = True
        self.instances[d].owed += 1
        self._try_prefill(pi)

    def reject(self, req: Request, reason: str) -> None:
        """Ends ``req`` as rejected with ``reason``."""
        if req is self.pending:
            self.pending = None
        req.state = RequestState.REJECTED
        req.reject_reason = reason
        req.completion_s = None
        self.in_system -= 1
        self.finished += 1
        self.observer.on_reject(req)

    # ================================================================ prefill
    def _try_prefill(self, inst: Instance, at_boundary: bool = False) -> None:
        if inst.prefill_busy or not inst.pq or inst.paused:
            return
        colocated = inst.role is Role.COLOCATED
        if colocated and inst.B > 0 and not at_boundary:
            # Wait for the decode batch's next iteration boundary.
            if not inst.want_prefill:
                inst.want_prefill = True
                self._request_boundary(inst)
            return
        budget = inst.token_budget
        batch: list[Request] = []
        tokens = 0
        free = inst.kv_cap - inst.kv_used
        pq = inst.pq
        blocks = self.blocks
        # Colocated: prefilled requests join this instance's decode batch, so respect its size.
        slots = inst.max_batch - inst.B - len(inst.joiners) if colocated else len(pq)
        while pq and len(batch) < slots:
            req = pq[0]
            need = blocks(req.prompt_tokens + req.output_tokens) if colocated else blocks(req.prefill_tokens)
            if need > inst.kv_cap:  # a preempted request whose recompute no longer fits
                pq.popleft()
                inst.pq_tokens -= req.prefill_tokens
                self.instances[req.decode_inst].owed -= 1
                self.reject(req, "too_large")
                continue
            if need > free or (batch and tokens + req.prefill_tokens > budget):
                break
            pq.popleft()
            free -= need
            tokens += req.prefill_tokens
            batch.append(req)
        if not batch:
            return
        inst.kv_used = inst.kv_cap - free
        inst.pq_tokens -= tokens
        inst.dirty = True
        now = self.engine.now
        for req in batch:
            req.state = RequestState.PREFILLING
            if req.prefill_start_s is None:
                req.prefill_start_s = now
        dur = inst.cost.prefill_s([r.prefill_tokens for r in batch])
        inst.prefill_busy = True
        inst.paused = colocated
        inst.prefill_batch = batch
        inst.prefill_end_s = now + dur
        inst.busy_prefill_s += dur
        self.extra_energy_j += dur * (inst.cost.prefill_power_w - inst.cost.idle_power_w)
        if inst.on_demand:
            self.on_demand_usd += dur * inst.price_per_s
        inst.prefill_tokens += tokens
        if self.timeline is not None:  # timeline (#13)
            self.timeline.on_span(inst.idx, "prefill", now, now + dur, {"rids": [r.rid for r in batch], "tokens": tokens})
        self.engine.schedule(now + dur, self._cb_prefill_done, inst, PRIO_PREFILL)

    def _prefill_done(self, inst: Instance) -> None:
        now = self.engine.now
        batch = inst.prefill_batch
        inst.prefill_batch = []
        inst.prefill_busy = False
        inst.dirty = True
        colocated = inst.role is Role.COLOCATED
        kvb = self.kv_bytes_per_token
        touched: list[Instance] = []
        for req in batch:
            if req.first_token_s is None:
                req.first_token_s = now
                req.generated = 1
                self.observer.on_first_token(req)
            if req.output_tokens <= 1 or colocated:
                d = self.instances[req.decode_inst]
                d.owed -= 1
                if d is not inst and d not in touched:
                    touched.append(d)
            if req.output_tokens <= 1:
                inst.kv_used -= self.blocks(req.prompt_tokens + req.output_tokens) if colocated else self.blocks(req.prompt_tokens)
                req.kv_bytes = 0.0
                req.tier = "local" if colocated else ""
                self._complete(req)
                continue
            if colocated:
                req.tier = "local"
                req.kv_bytes = 0.0
                req.state = RequestState.DECODING
                inst.joiners.append(req)
            else:
                req.state = RequestState.WAITING_DECODE
                req.kv_bytes = float(req.prefill_tokens * kvb)
                d = self.instances[req.decode_inst]
                d.dq.append(req)
                d.dirty = True
                if d not in touched:
                    touched.append(d)
        if colocated:
            inst.paused = False
            inst.want_prefill = False
            self._absorb(inst)
        for d in touched:
            self._try_admit(d)
            self._maybe_switch(d)
        self._try_prefill(inst)
        self._maybe_switch(inst)

    # ================================================================ KV transfer
    def _try_admit(self, d: Instance) -> None:
        dq = d.dq
        while dq:
            req = dq[0]
            need = self.blocks(req.prompt_tokens + req.output_tokens)
            slots_full = d.B + len(d.joiners) + d.incoming >= d.max_batch
            if slots_full or need > d.kv_cap - d.kv_used:
                if self.on_kv_full == "preempt" and not slots_full and self._preempt_for(d, req, need):
                    continue
                if self.on_kv_full == "reject":
                    dq.popleft()
                    d.owed -= 1
                    d.dirty = True
                    p = self.instances[req.prefill_inst]
                    p.dirty = True
                    p.kv_used -= self.blocks(req.prefill_tokens)
                    self.reject(req, "kv_full")
                    self._try_prefill(p)
                    self._maybe_switch(p)
                    continue
                return
            dq.popleft()
            d.owed -= 1
            d.kv_used += need
            d.incoming += 1
            d.dirty = True
            self.instances[req.prefill_inst].dirty = True  # its egress link is busier
            tier, link = self._link(req.prefill_inst, d.idx)
            req.tier = tier
            req.state = RequestState.TRANSFERRING
            req.transfer_start_s = self.engine.now
            nbytes = req.kv_bytes
            if self.config.layerwise_overlap:
                # Layer-wise streaming overlaps all but the last layer with the prefill compute.
                p = self.instances[req.prefill_inst]
                overlap_s = max(0.0, p.prefill_end_s - (req.prefill_start_s or p.prefill_end_s))
                layers = self.model.num_hidden_layers
                nbytes = max(nbytes / layers, nbytes - overlap_s * link.bandwidth_Bps)
            link.start(req, nbytes, self._cb_transfer_done)

    def _transfer_done(self, req: Request) -> None:
        now = self.engine.now
        req.transfer_end_s = now
        p = self.instances[req.prefill_inst]
        d = self.instances[req.decode_inst]
        p.kv_used -= self.blocks(req.prefill_tokens)
        d.incoming -= 1
        p.dirty = d.dirty = True
        req.state = RequestState.DECODING
        self.observer.on_kv_transfer_done(req)
        if self.timeline is not None:  # timeline (#13): on the sender, which holds the KV until done
            start = req.transfer_start_s if req.transfer_start_s is not None else now
            self.timeline.on_span(p.idx, "transfer", start, now, {
                "rids": [req.rid], "tokens": req.prefill_tokens, "to": d.idx, "tier": req.tier, "bytes": req.kv_bytes})
        self._join(d, req)
        if p.pq:
            self._try_prefill(p)
        if p.state == "draining":
            self._maybe_switch(p)

    def _join(self, d: Instance, req: Request) -> None:
        """Adds a transferred request to ``d``'s decode batch at its next iteration boundary.

        Instead of an event at that boundary, the batch is settled up to it right away (the
        boundary may lie in the future: ``epoch_s`` then runs ahead of the clock) and the next
        completion is rescheduled from there, saving two heap operations per request.
        """
        if d.B == 0 and not d.paused:
            d.joiners.append(req)
            self._absorb(d)
            return
        if d.paused:  # colocated instances never receive transfers; kept for safety
            d.joiners.append(req)
            return
        if not self._settle_to_boundary(d):
            # A tick is already due at that very boundary; it absorbs the joiner.
            d.joiners.append(req)
            return
        req.decode_start_s = d.epoch_s
        heapq.heappush(d.members, (d.counter + req.output_tokens - req.generated, req.rid, req))
        d.B += 1
        d.S += req.prompt_tokens + req.generated
        d.a, d.b = d.coeffs(d.B)
        if d.next_ev is not None:
            d.next_ev.cancelled = True
        n = d.members[0][0] - d.counter
        d.next_n = n
        d.next_ev = self.engine.schedule(d.epoch_s + d.decode_time(n), self._cb_decode_tick, d, PRIO_DECODE)

    def _settle_to_boundary(self, d: Instance) -> bool:
        """Advances ``d``'s batch state to the end of its current iteration (possibly in the
        future). Returns ``False`` if a tick is already scheduled at exactly that boundary.
        """
        now = self.engine.now
        if now <= d.epoch_s:
            return True  # already at (or settled to) a boundary
        n = d.iterations_done(now - d.epoch_s) + 1
        if d.next_ev is not None and d.next_n <= n:
            return False
        busy = d.decode_time(n)
        if self.timeline is not None:  # timeline (#13): the segment settled ahead of a join
            self.timeline.on_span(d.idx, "decode", d.epoch_s, d.epoch_s + busy, {
                "rids": sorted(m[1] for m in d.members), "tokens": d.B * n, "iterations": n})
        d.counter += n
        d.S += d.B * n
        d.decode_tokens += d.B * n
        d.busy_decode_s += busy
        self.extra_energy_j += busy * (d.cost.decode_power_w - d.cost.idle_power_w)
        if d.on_demand:
            self.on_demand_usd += busy * d.price_per_s
        d.epoch_s += busy
        if d.next_ev is not None:
            d.next_n -= n
        return True

    def _preempt_for(self, d: Instance, req: Request, need: int) -> bool:
        """Evicts running requests younger than ``req`` (youngest first) until ``req``'s KV fits.

        Victims lose their decode KV and go back to the front of their prefill instance's queue
        to recompute prompt + generated tokens (vLLM's recompute preemption). Only younger
        requests are evicted, so there is a strict priority order and no ping-pong.

        Returns:
            ``True`` if room was made (the caller admits ``req``), else ``False``.
        """
        if d.paused or d.B == 0:
            return False
        younger = sorted((m for m in d.members if m[2].arrival_s > req.arrival_s), key=lambda m: (-m[2].arrival_s, -m[1]))
        free = d.kv_cap - d.kv_used
        victims = []
        for m in younger:
            if free >= need:
                break
            victims.append(m)
            free += self.blocks(m[2].prompt_tokens + m[2].output_tokens)
        if free < need or not victims:
            return False
        if not self._settle_to_boundary(d):
            # A tick is due at this very boundary: process it first, retry then.
            return False
        gone = {id(m[2]) for m in victims}
        d.members = [m for m in d.members if id(m[2]) not in gone]
        heapq.heapify(d.members)
        for done, _, v in victims:
            v.generated = v.output_tokens - (done - d.counter)
            d.B -= 1
            d.S -= v.prompt_tokens + v.generated
            d.kv_used -= self.blocks(v.prompt_tokens + v.output_tokens)
            v.preemptions += 1
            v.prefill_tokens = v.prompt_tokens + v.generated
            v.state = RequestState.PREFILL_QUEUED
            p = self.instances[v.prefill_inst]
            p.pq.appendleft(v)
            p.pq_tokens += v.prefill_tokens
            p.dirty = True
            d.owed += 1
        d.dirty = True
        if d.next_ev is not None:
            d.next_ev.cancelled = True
            d.next_ev = None
        if d.B:
            d.a, d.b = d.coeffs(d.B)
            n = d.members[0][0] - d.counter
            d.next_n = n
            d.next_ev = self.engine.schedule(d.epoch_s + d.decode_time(n), self._cb_decode_tick, d, PRIO_DECODE)
        for _, _, v in victims:
            self._try_prefill(self.instances[v.prefill_inst])
        return True

    # ================================================================ decode
    def _request_boundary(self, inst: Instance) -> None:
        """Makes the decode batch stop at the end of its current iteration."""
        if inst.B == 0 or inst.paused:
            return
        k = inst.iterations_done(self.engine.now - inst.epoch_s)
        n = k + 1
        if inst.next_ev is not None and inst.next_n <= n:
            return
        if inst.next_ev is not None:
            inst.next_ev.cancelled = True
        inst.next_n = n
        inst.next_ev = self.engine.schedule(inst.epoch_s + inst.decode_time(n), self._cb_decode_tick, inst, PRIO_DECODE)

    def _decode_tick(self, inst: Instance) -> None:
        now = self.engine.now
        n = inst.next_n
        if self.timeline is not None:  # timeline (#13): the segment [epoch, now] just finished
            self.timeline.on_span(inst.idx, "decode", inst.epoch_s, now, {
                "rids": sorted(m[1] for m in inst.members), "tokens": inst.B * n, "iterations": n})
        inst.next_ev = None
        inst.dirty = True
        inst.counter += n
        inst.S += inst.B * n
        inst.decode_tokens += inst.B * n
        busy = now - inst.epoch_s
        inst.busy_decode_s += busy
        self.extra_energy_j += busy * (inst.cost.decode_power_w - inst.cost.idle_power_w)
        if inst.on_demand:
            self.on_demand_usd += busy * inst.price_per_s
        inst.epoch_s = now
        members = inst.members
        counter = inst.counter
        freed = False
        while members and members[0][0] <= counter:
            _, _, req = heapq.heappop(members)
            inst.B -= 1
            inst.S -= req.prompt_tokens + req.output_tokens
            inst.kv_used -= self.blocks(req.prompt_tokens + req.output_tokens)
            freed = True
            self._complete(req)
        if inst.want_prefill and inst.pq:
            # Colocated: run the waiting prefill batch now, decode resumes after it.
            inst.want_prefill = False
            self._try_prefill(inst, at_boundary=True)
            if inst.prefill_busy:
                return
        self._absorb(inst)
        if freed:
            if inst.role is Role.COLOCATED:
                self._try_prefill(inst)
            else:
                self._try_admit(inst)
            self._maybe_switch(inst)

    def _absorb(self, inst: Instance) -> None:
        """Adds waiting joiners to the batch (at a boundary) and schedules the next tick."""
        now = self.engine.now
        inst.dirty = True
        inst.epoch_s = now  # only called at iteration boundaries (or on resume after a pause)
        if inst.joiners:
            counter = inst.counter
            for req in inst.joiners:
                req.decode_start_s = now
                done = counter + req.output_tokens - req.generated
                heapq.heappush(inst.members, (done, req.rid, req))
                inst.B += 1
                inst.S += req.prompt_tokens + req.generated
            inst.joiners.clear()
        if inst.next_ev is not None:
            inst.next_ev.cancelled = True
            inst.next_ev = None
        if inst.B == 0:
            return
        inst.a, inst.b = inst.coeffs(inst.B)
        n = inst.members[0][0] - inst.counter
        inst.next_n = n
        inst.next_ev = self.engine.schedule(now + inst.decode_time(n), self._cb_decode_tick, inst, PRIO_DECODE)

    def _complete(self, req: Request) -> None:
        req.completion_s = self.engine.now
        req.state = RequestState.COMPLETED
        self.in_system -= 1
        self.finished += 1
        self.instances[req.decode_inst].served += 1
        self.observer.on_completion(req)

    # ================================================================ roles
    def set_role(self, idx: int, role: Role) -> bool:
        """Starts switching instance ``idx`` to ``role`` (drain, then switch delay).

        Returns:
            ``True`` if a switch started or is already under way to that role.
        """
        inst = self.instances[idx]
        if inst.role is Role.COLOCATED or role is Role.COLOCATED:
            return False
        if inst.state == "active" and inst.role is role:
            return False
        if inst.target_role is role:
            return True
        if inst.state == "switching":
            return False
        inst.state = "draining"
        inst.target_role = role
        inst.dirty = True
        self._drain_start_s.setdefault(idx, self.engine.now)  # timeline (#13)
        self._invalidate_roles()
        self._maybe_switch(inst)
        return True

    def cancel_switch(self, idx: int) -> None:
        """Returns a draining instance to service in its current role."""
        inst = self.instances[idx]
        if inst.state == "draining":
            if self.timeline is not None:  # timeline (#13): a drain that ended without a switch
                self.timeline.on_span(idx, "drain", self._drain_start_s.get(idx, self.engine.now), self.engine.now, {
                    "rids": [], "tokens": 0, "from": inst.role.value, "to": inst.target_role.value if inst.target_role else None,
                    "cancelled": True})
            self._drain_start_s.pop(idx, None)
            inst.state = "active"
            inst.target_role = None
            inst.dirty = True
            self._invalidate_roles()

    def _maybe_switch(self, inst: Instance) -> None:
        if inst.state != "draining" or not inst.is_idle():
            return
        inst.state = "switching"
        inst.dirty = True
        start = self._drain_start_s.pop(inst.idx, self.engine.now)
        if self.timeline is not None and inst.target_role is not None:  # timeline (#13)
            self.timeline.on_span(inst.idx, "drain", start, self.engine.now, {
                "rids": [], "tokens": 0, "from": inst.role.value, "to": inst.target_role.value})
        inst.switch_ev = self.engine.schedule(
            self.engine.now + self.config.switch_delay_s, self._switch_done, inst, PRIO_CONTROL
        )

    def _switch_done(self, inst: Instance) -> None:
        assert inst.target_role is not None
        if self.timeline is not None:  # timeline (#13)
            now, old, new = self.engine.now, inst.role.value, inst.target_role.value
            self.timeline.on_span(inst.idx, "switch", now - self.config.switch_delay_s, now, {
                "rids": [], "tokens": 0, "from": old, "to": new})
            self.timeline.on_instant(inst.idx, "role", now, {"from": old, "to": new})
        inst.role = inst.target_role
        inst.target_role = None
        inst.state = "active"
        inst.switch_ev = None
        inst.dirty = True
        self._invalidate_roles()

    def _invalidate_roles(self) -> None:
        """Drops the cached routing pools and role counts (a role or state changed)."""
        self._pools = None
        self._role_counts.clear()

    def role_counts(self, gpu: str) -> tuple[int, int]:
        """(prefill, decode) instances of GPU type ``gpu``, counting targets of switches."""
        hit = self._role_counts.get(gpu)
        if hit is not None:
            return hit
        p = d = 0
        for inst in self.instances:
            if inst.gpu != gpu or inst.role is Role.COLOCATED:
                continue
            role = inst.target_role or inst.role
            if role is Role.PREFILL:
                p += 1
            else:
                d += 1
        self._role_counts[gpu] = (p, d)
        return p, d

    def flexible_gpus(self) -> list[str]:
        """GPU types with disaggregated (switchable) instances, in config order."""
        out: list[str] = []
        for inst in self.instances:
            if inst.role is not Role.COLOCATED and inst.gpu not in out:
                out.append(inst.gpu)
        return out

    def set_prefill_count(self, gpu: str, n_prefill: int) -> int:
        """Flips instances of ``gpu`` so that ``n_prefill`` of them serve prefill.

        At least one prefill and one decode instance stay in the cluster. The least-loaded
        instances are flipped. Returns the number of role changes started.
        """
        insts = [i for i in self.instances if i.gpu == gpu and i.role is not Role.COLOCATED]
        total = len(insts)
        n_prefill = max(0, min(total, int(n_prefill)))
        cur_p, _ = self.role_counts(gpu)
        changes = 0
        if n_prefill > cur_p:
            cands = [i for i in insts if (i.target_role or i.role) is Role.DECODE]
            cands.sort(key=lambda i: (i.decode_load, i.idx))
            for inst in cands[: n_prefill - cur_p]:
                if self._keeps_both_roles(inst):
                    changes += self._flip(inst, Role.PREFILL)
        elif n_prefill < cur_p:
            cands = [i for i in insts if (i.target_role or i.role) is Role.PREFILL]
            cands.sort(key=lambda i: (i.pq_tokens + (1 if i.prefill_busy else 0), i.idx))
            for inst in cands[: cur_p - n_prefill]:
                if self._keeps_both_roles(inst):
                    changes += self._flip(inst, Role.DECODE)
        return changes

    def _flip(self, inst: Instance, role: Role) -> int:
        if inst.target_role is not None and inst.state == "draining" and inst.role is role:
            self.cancel_switch(inst.idx)
            return 1
        return 1 if self.set_role(inst.idx, role) else 0

    def _keeps_both_roles(self, inst: Instance) -> bool:
        """True if flipping ``inst`` still leaves an accepting prefill and decode instance."""
        role = inst.target_role or inst.role
        for other in self.instances:
            if other is inst or other.state != "active" or other.target_role is not None:
                continue
            if other.role is Role.COLOCATED or other.role is role:
                return True
        return False

    def _alloc_tick(self, _: Any) -> None:
        assert self.allocator is not None
        self.allocator.allocate(self)
        if not self.drained():
            self.engine.schedule(self.engine.now + self.allocator.interval_s, self._alloc_tick, None, PRIO_CONTROL)

    def _control_tick(self, _: Any) -> None:
        self.control_due = True
        if self.control_interval_s and not self.drained():
            self.engine.schedule(self.engine.now + self.control_interval_s, self._control_tick, None, PRIO_CONTROL)

    # ================================================================ status
    def cost_usd(self, now: float) -> float:
        """GPU cost so far: reserved instances for the whole time, on-demand ones while busy
        (busy time is booked when a prefill starts and at decode iteration boundaries).
        """
        return self.reserved_usd_per_s * now + self.on_demand_usd

    def energy_j(self, now: float) -> float:
        """GPU energy so far: idle power for every GPU plus the busy surplus booked so far."""
        return self.idle_w * now + self.extra_energy_j

    def drained(self) -> bool:
        """No more arrivals and every request has finished."""
        return self.arrivals_done and self.in_system == 0 and self.pending is None

    def routable(self, req: Request) -> list[tuple[int, int]]:
        """Every valid ``(p, d)`` pair for ``req`` right now."""
        out = []
        for p in self.instances:
            if not p.accepting or p.role is Role.DECODE:
                continue
            if p.role is Role.COLOCATED:
                if self.valid_route(req, p.idx, p.idx) is None:
                    out.append((p.idx, p.idx))
                continue
            for d in self.instances:
                if d.role is Role.DECODE and self.valid_route(req, p.idx, d.idx) is None:
                    out.append((p.idx, d.idx))
        return out

    def pools(self) -> tuple[list[Instance], list[Instance]]:
        """(accepting prefill-or-colocated instances, accepting decode instances); cached
        until a role or state changes. Callers must not mutate the lists.
        """
        pools = self._pools
        if pools is None:
            ps = [i for i in self.instances if i.state == "active" and i.role is not Role.DECODE]
            ds = [i for i in self.instances if i.state == "active" and i.role is Role.DECODE]
            pools = self._pools = (ps, ds)
        return pools
