"""The serving cluster: wires instances, their components and the transfer manager; applies
routing and role decisions; runs prefill, KV transfer and decode as events.

Request flow (disaggregated): arrival -> routed to a prefill instance P and a decode instance D
-> P's prefill queue -> prefill (whole prompts batched under a token budget, or chunks of at
most ``prefill_chunk_tokens`` per iteration) -> first token -> wait for D's admission (a batch
slot and KV for the tokens held so far) -> KV transfer P->D over the tier the topology gives,
max-min fair with every other transfer on the ports it crosses -> join D's decode batch at its
next iteration boundary -> KV grows block by block -> completion. Colocated instances prefill
and decode on one instance: a prefill pauses decode at an iteration boundary (vLLM's default
scheduler), or, with chunking, prefill chunks ride along decode iterations under one token
budget (Sarathi-Serve).

When a decode batch needs a block that is not free, the youngest running requests are
preempted: ``preemption: recompute`` drops their KV and sends them back to prefill;
``swap`` copies their KV to host memory over the instance's PCIe link and swaps it back when
memory frees. Every request ends completed or rejected with a reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from disagg_gym.cluster.accounting import Meter
from disagg_gym.cluster.config import ClusterConfig
from disagg_gym.cluster.decode_batch import Member
from disagg_gym.cluster.instance import Instance
from disagg_gym.cluster.kv_cache import CacheHierarchy
from disagg_gym.cluster.state import InstanceState
from disagg_gym.interconnect.kv_transfer import Port, TransferManager, bottleneck_Bps
from disagg_gym.sim.engine import Engine
from disagg_gym.sim.events import Priority
from disagg_gym.types import RequestState, Role
from disagg_gym.workload.request import Request
from disagg_gym.workload.source import ArrivalSource

if TYPE_CHECKING:
    from disagg_gym.metrics.chrome_trace import TimelineObserver

ACTIVE, DRAINING, SWITCHING = InstanceState.ACTIVE, InstanceState.DRAINING, InstanceState.SWITCHING
# Enum members read on every event, bound once as module globals: on Python 3.11 an Enum
# class attribute lookup costs about ten times a global lookup.
COLOCATED, PREFILL_ROLE, DECODE_ROLE = Role.COLOCATED, Role.PREFILL, Role.DECODE
PREFILL_QUEUED, PREFILLING, WAITING_DECODE = RequestState.PREFILL_QUEUED, RequestState.PREFILLING, RequestState.WAITING_DECODE
TRANSFERRING, DECODING = RequestState.TRANSFERRING, RequestState.DECODING
COMPLETED, REJECTED = RequestState.COMPLETED, RequestState.REJECTED
P_DECODE, P_PREFILL, P_SWITCH = Priority.DECODE, Priority.PREFILL, Priority.SWITCH
P_ARRIVAL, P_CONTROL = Priority.ARRIVAL, Priority.CONTROL
INF = math.inf
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


def _gpu_identity(name: str) -> str:
    """A GPU type as placement compares it: the catalog id, or a GPU file's resolved path."""
    from disagg_gym.hardware.gpu import GPUS

    return name if name in GPUS else os.path.realpath(name)


class NullObserver:
    """Observer that records nothing."""

    def on_arrival(self, req: Request) -> None:  # noqa: D102
        pass

    on_first_token = on_kv_transfer_done = on_completion = on_reject = on_arrival


class FanOut:
    """Calls several observers in order."""

    def __init__(self, *observers: ClusterObserver) -> None:
        self.observers = observers
        # Each hook's bound methods, looked up once (hooks run several times per request).
        self._arrival = tuple(o.on_arrival for o in observers)
        self._first_token = tuple(o.on_first_token for o in observers)
        self._transfer_done = tuple(o.on_kv_transfer_done for o in observers)
        self._completion = tuple(o.on_completion for o in observers)
        self._reject = tuple(o.on_reject for o in observers)

    def on_arrival(self, req: Request) -> None:  # noqa: D102
        for f in self._arrival:
            f(req)

    def on_first_token(self, req: Request) -> None:  # noqa: D102
        for f in self._first_token:
            f(req)

    def on_kv_transfer_done(self, req: Request) -> None:  # noqa: D102
        for f in self._transfer_done:
            f(req)

    def on_completion(self, req: Request) -> None:  # noqa: D102
        for f in self._completion:
            f(req)

    def on_reject(self, req: Request) -> None:  # noqa: D102
        for f in self._reject:
            f(req)


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
        timeline: Optional timeline observer (``disagg-gym simulate --chrome-trace``).
        changed: Optional set the cluster adds the index of every instance whose observable
            state changed to (owned and cleared by its reader, the env's observation builder).
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
        changed: set[int] | None = None,
    ) -> None:
        from disagg_gym.hardware import build_cost, get_gpu, load_model
        from disagg_gym.interconnect.links import get_link, link_for_gpu

        self.config = config
        self.engine = engine
        self.source = source
        self.observer: ClusterObserver = observer or NullObserver()
        self.router = router
        self.allocator = allocator
        self.timeline = timeline
        self.changed = changed if changed is not None else set()
        self.model = load_model(config.model)
        self._rid = 0  # next request id (a plain int: itertools.count stops pickling in Python 3.14)
        self.block = config.block_size_tokens
        self.on_kv_full = config.on_kv_full
        self.preemption = config.preemption
        self.max_queue_tokens = config.max_queue_tokens

        # ---- instances and placement
        self.instances: list[Instance] = []
        node = -1
        used_node: tuple[int, int] | None = None
        self._costs: dict[tuple[str, int, str], Any] = {}
        for g_idx, g in enumerate(config.groups):
            gpu = get_gpu(g.gpu)
            key = (g.gpu, g.tp, g.cost_model)
            cost = self._costs.get(key)
            if cost is None:
                cost = cost_factory(g.gpu, g.tp) if cost_factory else build_cost(gpu, self.model, g.tp, g.cost_model)
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
            # Placement follows the groups' order: a group of the same GPU type and site as the
            # group listed just before it keeps filling that group's last node; any other group
            # starts a new node (a node holds one GPU type). List groups that should share
            # nodes next to each other. A GPU file is one type however its path is written.
            prev = config.groups[g_idx - 1] if g_idx else None
            if prev is None or _gpu_identity(prev.gpu) != _gpu_identity(g.gpu) or prev.site != g.site:
                used_node = None
            for _ in range(g.count):
                if used_node is None or used_node[1] + g.tp > config.topology.gpus_per_node:
                    node += 1
                    used_node = (node, 0)
                inst = Instance(
                    idx=len(self.instances), group=g_idx, gpu=g.gpu, tp=g.tp, role=Role(g.role),
                    site=g.site, node=used_node[0], cost=cost, kv_cap_tokens=kv_cap,
                    block_tokens=self.block, max_batch=g.max_batch,
                    token_budget=g.prefill_token_budget, chunk_tokens=g.prefill_chunk_tokens,
                    price_per_s=price * g.tp / 3600.0, on_demand=g.billing == "on_demand",
                )
                used_node = (used_node[0], used_node[1] + g.tp)
                self.instances.append(inst)
        self.n = len(self.instances)
        self.sites = sorted({i.site for i in self.instances})
        self.meter = Meter(self.instances, config.idle_power)
        self._role_counts: dict[str, tuple[int, int]] = {}
        self.kv_bytes_per_token = self.instances[0].cost.kv_bytes_per_token

        # ---- tiers, ports and transfers
        topo = config.topology
        self._link_for_gpu = link_for_gpu
        self._get_gpu = get_gpu
        for name in (topo.intra_node, topo.inter_node, topo.inter_site):
            get_link(name)  # validates the tier name
        self._get_link = get_link
        self.transfers = TransferManager(engine)
        self._routes: dict[tuple[int, int], tuple[str, tuple[Port, ...], float, float]] = {}

        # ---- decision plumbing
        self.pending: Request | None = None
        self._parked: list[Request] = []  # re-routed work waiting for an instance in service
        self._pools: tuple[list[Instance], list[Instance]] | None = None
        self.control_due = False
        self.control_interval_s = external_control_interval_s
        self.arrivals_done = False
        self.in_system = 0
        self.arrived = 0
        self.finished = 0
        self._chunk: tuple[Any, ...] | None = None
        self._chunk_pos = 0
        # Prefix caching (issue #14): built when the first chunk with block hashes arrives.
        self.cache: CacheHierarchy | None = None
        self.carries_hashes = False  # a request with prefix-block hashes has arrived

    # ================================================================ start-up
    def start(self) -> None:
        """Schedules the first arrival and control ticks. Call once, before running."""
        if self.timeline is not None:
            for inst in self.instances:
                self.timeline.on_instance(inst.idx, inst.gpu, inst.tp, inst.role.value)
        self._schedule_next_arrival()
        if self.allocator is not None:
            self.engine.schedule(self.engine.now + self.allocator.interval_s, self._alloc_tick, None, P_CONTROL)
        if self.control_interval_s:
            self.engine.schedule(self.engine.now + self.control_interval_s, self._control_tick, None, P_CONTROL)

    # ================================================================ topology
    def route_of(self, p: int, d: int) -> tuple[str, tuple[Port, ...], float, float]:
        """``(tier, ports, per-transfer cap in B/s, latency_s)`` of a KV transfer ``p -> d``.

        Ports are properties of the instances (egress of ``p`` and ingress of ``d`` on the
        tier, ``tp`` x the per-GPU bandwidth; plus the shared WAN between sites); the pair's
        ``min(tp)`` GPU-to-GPU lanes cap each transfer's rate.
        """
        key = (p, d)
        hit = self._routes.get(key)
        if hit is not None:
            return hit
        src, dst = self.instances[p], self.instances[d]
        topo = self.config.topology
        g1, g2 = self._get_gpu(src.gpu), self._get_gpu(dst.gpu)
        if src.site != dst.site:
            tier = topo.inter_site
        else:
            tier = topo.intra_node if src.node == dst.node else topo.inter_node
            if tier == "nvlink" and (g1.nvlink_gbps_per_dir <= 0 or g2.nvlink_gbps_per_dir <= 0):
                tier = "pcie"
        s1, s2 = self._link_for_gpu(tier, g1), self._link_for_gpu(tier, g2)
        bw1, bw2 = s1.bandwidth_gbps * 1e9, s2.bandwidth_gbps * 1e9
        tm = self.transfers
        ports = [
            tm.port(("out", p, tier), tier, bw1 * src.tp),
            tm.port(("in", d, tier), tier, bw2 * dst.tp),
        ]
        if src.site != dst.site:
            pair = (min(src.site, dst.site), max(src.site, dst.site))
            spec = self._get_link(tier)
            wan_bw = (topo.inter_site_bandwidth_gbps or spec.bandwidth_gbps) * 1e9
            ports.append(tm.port(("wan",) + pair, tier, wan_bw))
        cap = min(src.tp, dst.tp) * min(bw1, bw2)
        res = (tier, tuple(ports), cap, max(s1.latency_s, s2.latency_s))
        self._routes[key] = res
        return res

    def host_route(self, idx: int, out: bool) -> tuple[tuple[Port, ...], float, float]:
        """``(ports, cap, latency)`` of a swap between instance ``idx`` and host memory."""
        key = (idx, -1 if out else -2)
        hit = self._routes.get(key)
        if hit is not None:
            return hit[1], hit[2], hit[3]
        inst = self.instances[idx]
        spec = self._link_for_gpu("pcie", self._get_gpu(inst.gpu))
        bw = spec.bandwidth_gbps * 1e9 * inst.tp
        port = self.transfers.port(("host_out" if out else "host_in", idx), "pcie", bw)
        self._routes[key] = ("pcie", (port,), bw, spec.latency_s)
        return (port,), bw, spec.latency_s

    def transfer_estimate_s(self, p: int, d: int, nbytes: float) -> float:
        """Predicted time of a ``p -> d`` transfer of ``nbytes`` if it started now (fair share)."""
        _, ports, cap, lat = self.route_of(p, d)
        bw = cap
        for port in ports:
            share = port.bandwidth_Bps / (1 + port.in_flight)
            if share < bw:
                bw = share
        return lat + nbytes / bw

    def links(self) -> list[Port]:
        """Every port created so far."""
        return list(self.transfers.ports.values())

    # ================================================================ arrivals
    def _schedule_next_arrival(self) -> None:
        ch = self._chunk
        if ch is None or self._chunk_pos >= len(ch[0]):
            nxt = self.source.next_chunk() if self.source is not None else None
            if nxt is None or len(nxt.arrival_s) == 0:
                self._chunk = None
                self.arrivals_done = True
                return
            if nxt.hash_ids is not None and not self.carries_hashes:
                self.carries_hashes = True
                if self.config.prefix_cache.enabled:
                    self.cache = CacheHierarchy(self, self.config.prefix_cache)
            ch = self._chunk = (
                nxt.arrival_s.tolist(), nxt.prompt_tokens.tolist(), nxt.output_tokens.tolist(),
                nxt.slo_ttft_s.tolist(), nxt.slo_tpot_s.tolist(), nxt.hash_ids,
                nxt.hash_block_tokens, nxt.session_ids.tolist() if nxt.session_ids is not None else None,
                self.cache.chunk_hashes(nxt) if self.cache is not None and nxt.hash_ids is not None else None,
            )
            self._chunk_pos = 0
        i = self._chunk_pos
        t = ch[0][i]
        if t < self.engine.now:
            t = self.engine.now
        self.engine.schedule(t, self._arrive, i, P_ARRIVAL)

    def _arrive(self, i: int) -> None:
        ch = self._chunk
        assert ch is not None
        hashes = ch[5]
        sessions = ch[7]
        rid = self._rid
        self._rid = rid + 1
        req = Request(
            rid, self.engine.now, ch[1][i], ch[2][i], ch[3][i], ch[4][i],
            tuple(hashes[i]) if hashes is not None else None,
            ch[6], sessions[i] if sessions is not None else -1,  # hash_block_tokens, session_id
        )
        if ch[8] is not None:
            req.block_hashes = ch[8][i]
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

    # ================================================================ routing
    def valid_route(self, req: Request, p: int, d: int) -> str | None:
        """Why ``(p, d)`` cannot take ``req`` right now, or ``None`` if it can.

        Only what is known at arrival is used (output lengths are unknown): the prompt and its
        first output token must fit the prefill instance's KV memory, and the decode instance
        (a colocated instance is both) must also hold the block the decode grows into
        (:meth:`kv_tokens_to_serve`).
        """
        n = self.n
        if not (0 <= p < n and 0 <= d < n):
            return "invalid_route"
        pi, di = self.instances[p], self.instances[d]
        if pi.state is not ACTIVE or di.state is not ACTIVE:
            return "no_instance"
        if pi.role is COLOCATED or di.role is COLOCATED:
            if p != d or pi.role is not COLOCATED:
                return "invalid_route"
        elif pi.role is not PREFILL_ROLE or di.role is not DECODE_ROLE:
            return "invalid_route"
        prefill = self.blocks(req.prompt_tokens + 1)
        if prefill > pi.kv.capacity or prefill + self.block > di.kv.capacity:
            return "too_large"
        return None

    def kv_tokens_to_serve(self, req: Request, decode: bool = True) -> int:
        """KV memory (tokens, whole blocks) an instance must have for ``req`` ever to run on it:
        its prompt and first token (a prefill instance), plus the block its decode grows into
        (a decode or colocated instance: the decode admission's rule, beyond which a request is
        ``too_large``). Known at arrival (output lengths are not).
        """
        need = self.blocks(req.prompt_tokens + 1)
        return need + self.block if decode else need

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
        if self.max_queue_tokens and pi.pq.tokens + req.prompt_tokens > self.max_queue_tokens and pi.pq:
            self.reject(req, "queue_full")
            return
        req.prefill_inst = p
        req.decode_inst = d
        req.state = PREFILL_QUEUED
        pi.pq.push(req)
        self.changed.add(p)
        self.instances[d].owed += 1
        self._try_prefill(pi)

    def reject(self, req: Request, reason: str) -> None:
        """Ends ``req`` as rejected with ``reason``."""
        if req is self.pending:
            self.pending = None
        if self.cache is not None:
            self.cache.release_all(req)
        req.state = REJECTED
        req.reject_reason = reason
        req.completion_s = None
        self.in_system -= 1
        self.finished += 1
        self.observer.on_reject(req)

    def _best_prefill(self, exclude: Instance | None = None) -> Instance | None:
        """The active disaggregated prefill instance with the least queued work."""
        best = None
        for i in self.instances:
            if i is exclude or i.state is not ACTIVE or i.role is not PREFILL_ROLE:
                continue
            if best is None or i.pq.tokens < best.pq.tokens:
                best = i
        return best

    def _best_decode(self, exclude: Instance | None = None, req: Request | None = None) -> Instance | None:
        """The active decode instance with the least decode load (that can hold ``req``)."""
        best = None
        need = self.blocks(req.held_tokens + 1) if req is not None else 0
        for i in self.instances:
            if i is exclude or i.state is not ACTIVE or i.role is not DECODE_ROLE or need > i.kv.capacity:
                continue
            if best is None or i.decode_load < best.decode_load:
                best = i
        return best

    def _requeue(self, req: Request, front: bool) -> None:
        """Puts ``req`` back in a prefill queue (a preempted or re-routed request).

        Its instances are kept while they are in service; otherwise the work goes back to the
        cluster's re-router: the least-loaded active instance of the needed role.
        """
        p = self.instances[req.prefill_inst]
        d = self.instances[req.decode_inst]
        if p.role is not COLOCATED:
            # An instance may have changed role since the request was placed.
            if p.state is not ACTIVE or p.role is not PREFILL_ROLE:
                p = self._best_prefill() or p
            if d.state is not ACTIVE or d.role is not DECODE_ROLE:
                d = self._best_decode(req=req) or d
            if (p.state is not ACTIVE or d.state is not ACTIVE or p.role is not PREFILL_ROLE
                    or d.role is not DECODE_ROLE):
                # No instance of a role is in service (all switching): wait for one.
                req.state = PREFILL_QUEUED
                self._parked.append(req)
                return
        req.prefill_inst, req.decode_inst = p.idx, d.idx
        req.state = PREFILL_QUEUED
        if front:
            p.pq.push_front_after_running(req)
        else:
            p.pq.push(req)
        d.owed += 1
        self.changed.add(p.idx)
        self.changed.add(d.idx)

    # ================================================================ prefill
    def _try_prefill(self, inst: Instance, at_boundary: bool = False) -> None:
        """Starts a prefill iteration on ``inst`` if it may run one."""
        if inst.prefill_busy or not inst.pq or inst.paused or inst.state is SWITCHING:
            return
        colocated = inst.role is COLOCATED
        batch = inst.batch
        # A running decode batch is interrupted only at an iteration boundary; an empty or
        # stalled one (waiting for a swap-out to free memory) is at one already.
        if colocated and batch.next_ev is not None and not at_boundary:
            # Wait for the decode batch's next iteration boundary.
            if not inst.want_prefill:
                inst.want_prefill = True
                self._request_boundary(inst)
            return
        chunk = inst.chunk_tokens
        mixed = colocated and chunk > 0 and batch.B > 0
        if mixed:
            self._make_room(inst, 1)  # the decode step of this iteration may need new blocks
            mixed = batch.B > 0
        if chunk:
            budget = chunk - batch.B if colocated else chunk
            if budget <= 0:
                return  # decode fills the iteration budget; prefill waits (decode-first)
        else:
            budget = inst.token_budget
        kv = inst.kv
        pq = inst.pq
        blk = self.block
        # Colocated: a new prompt must leave the decode step's new blocks and one block of
        # growth per running sequence (and its own), else it would only force a preemption.
        reserve = 0
        if colocated and (batch.B or batch.joiners):
            reserve = batch.new_blocks(1) * kv.block + kv.block * (batch.B + len(batch.joiners) + 1)
        # Colocated: prefilled requests join this instance's decode batch, so respect its size.
        slots = (inst.max_batch - batch.B - len(batch.joiners) - inst.incoming - len(inst.swapped) - inst.swapping
                 if colocated else len(pq))
        items: list[tuple[Request, int, int]] = []
        tokens = 0
        i = 0
        blocked = False  # a new prompt did not fit: later new prompts may not overtake it
        while i < len(pq) and len(items) < slots and tokens < budget:
            req = pq[i]
            left = req.prefill_tokens - req.prefilled
            if req.prefilled == 0:  # a new run: take the memory for the whole prompt now
                need = -(-(req.prompt_tokens + (req.generated if req.generated > 0 else 1)) // blk) * blk  # blocks(held)
                if need > kv.capacity:  # a preempted request whose recompute no longer fits
                    pq.remove(req)
                    self.instances[req.decode_inst].owed -= 1
                    self.reject(req, "too_large")
                    continue
                if (blocked or inst.state is DRAINING or need + reserve > kv.capacity - kv.used
                        or (not chunk and items and tokens + left > budget)):
                    # Chunked prompts part-way through (they hold their memory) still run.
                    blocked = True
                    i += 1
                    if not chunk:
                        break
                    continue
                if self.cache is not None and req.hash_ids:
                    # Prefix hits (pinned before the memory is taken, so it cannot evict them).
                    hit = self.cache.start_prefill(inst, req)
                    if hit:
                        req.prefilled = hit
                        pq.progress(hit)
                        left -= hit
                kv.take(need)
                req.state = PREFILLING
                req.run_start_s = self.engine.now
                if req.prefill_start_s is None:
                    req.prefill_start_s = self.engine.now
            n = min(left, budget - tokens) if chunk else left
            items.append((req, n, req.prefilled))
            tokens += n
            i += 1
        if not items:
            return
        now = self.engine.now
        if len(items) == 1:  # the common case, without building two lists
            it = items[0]
            dur = inst.cost.prefill_s((it[1],), (it[2],))
        else:
            dur = inst.cost.prefill_s([n for _, n, _ in items], [c for _, _, c in items])
        inst.prefill_busy = True
        inst.paused = colocated
        inst.prefill_batch = items
        inst.prefill_start_s = now
        if mixed:
            # Mixed iteration (Sarathi-Serve): it also decodes one token of every running request.
            if batch.next_ev is not None:
                batch.next_ev.cancelled = True
                batch.next_ev = None
            batch.refresh_coeffs()
            dec = batch.a + batch.b * batch.S
            batch.next_n = 1
            self.meter.book(inst, dur, "prefill")
            self.meter.book(inst, dec, "decode")
            dur += dec
        else:
            batch.next_n = 0
            self.meter.book(inst, dur, "prefill")
        inst.prefill_end_s = now + dur
        inst.prefill_tokens += tokens
        self.changed.add(inst.idx)
        self.engine.schedule(now + dur, self._prefill_done, inst, P_PREFILL)

    def _prefill_done(self, inst: Instance) -> None:
        if self.cache is not None and self.cache.hold_prefill(inst):
            return  # lower-tier loads still in flight: the hierarchy calls back when they land
        now = self.engine.now
        items = inst.prefill_batch
        inst.prefill_batch = []
        inst.prefill_busy = False
        self.changed.add(inst.idx)
        colocated = inst.role is COLOCATED
        batch = inst.batch
        if self.timeline is not None:
            self.timeline.on_span(inst.idx, "prefill", inst.prefill_start_s, now, {
                "rids": [r.rid for r, _, _ in items], "tokens": sum(n for _, n, _ in items)})
        if colocated and batch.next_n == 1 and batch.B:
            # The mixed iteration's decode step.
            start = batch.epoch_s
            batch.advance(1)  # busy time was booked when the iteration started
            batch.epoch_s = now
            inst.decode_tokens += batch.B
            if self.timeline is not None:
                self.timeline.on_span(inst.idx, "decode", start, now, {
                    "rids": sorted(m[1] for m in batch.members), "tokens": batch.B, "iterations": 1})
            for req in batch.pop_done():
                self._complete(req, inst)
        batch.next_n = 0
        touched: list[Instance] = []
        pq = inst.pq
        for req, n, _ in items:
            req.prefilled += n
            pq.progress(n)
            if req.prefilled < req.prefill_tokens:
                continue  # chunked: the rest of its prompt runs in later iterations
            # Finished: out of the queue (the head, unless a recompute was queued before it).
            pq.remove(req)
            req.prefilled = 0
            req.run_end_s = now
            if req.first_token_s is None:
                req.first_token_s = now
                req.generated = 1
                self.observer.on_first_token(req)
            if self.cache is not None:
                self.cache.prefill_done(inst, req)
            d = self.instances[req.decode_inst]
            if req.output_tokens <= req.generated:
                d.owed -= 1
                inst.kv.give(self.blocks(req.held_tokens))
                req.kv_bytes = 0.0
                req.tier = "local" if colocated else ""
                self._complete(req, inst)
                if d is not inst and d not in touched:
                    touched.append(d)
                continue
            if colocated:
                d.owed -= 1
                req.tier = "local"
                req.kv_bytes = 0.0
                req.state = DECODING
                batch.joiners.append(req)
            else:
                req.state = WAITING_DECODE
                req.kv_bytes = float(req.prefill_tokens * self.kv_bytes_per_token)
                d.dq.append(req)
                self.changed.add(d.idx)
                if d not in touched:
                    touched.append(d)
        if colocated:
            inst.paused = False
            inst.want_prefill = False
            self._absorb(inst)
            if inst.chunk_tokens and inst.pq:
                self._try_prefill(inst, at_boundary=True)  # the next mixed iteration, at once
        for d in touched:
            self._try_admit(d)
            if d.state is DRAINING:  # _maybe_switch's first test, hoisted (hot path)
                self._maybe_switch(d)
        if (inst.swapped or inst.dq) and not inst.prefill_busy:
            self._try_admit(inst)  # memory freed by this iteration's completions
        self._try_prefill(inst)
        if inst.state is DRAINING:  # _maybe_switch's first test, hoisted (hot path)
            self._maybe_switch(inst)

    # ================================================================ KV transfer
    def _try_admit(self, d: Instance) -> None:
        """Admits waiting requests to ``d``'s decode batch: swapped-out ones first, then new."""
        if d.state is SWITCHING or not (d.swapped or d.dq):
            return
        kv = d.kv
        batch = d.batch
        # Blocks the running batch takes until the end of its current iteration stay free:
        # ``growth``, computed from the state at this call's start. -1: not computed yet (a
        # single new admission whose room test passes with an upper bound of it never needs
        # the exact value, see below).
        growth = 0
        if batch.B and batch.next_ev is not None and self.engine.now > batch.epoch_s:
            growth = -1
        blk = self.block
        watermark = -(-(kv.capacity // 100) // blk) * blk if batch.B else 0  # vLLM's 1% watermark, in blocks
        while d.swapped:
            if growth < 0:
                growth = self._admit_growth(d)
            req = d.swapped[0]
            need = self.blocks(req.held_tokens)
            seqs = batch.B + len(batch.joiners) + d.incoming + len(d.prefill_batch)
            alone = seqs == 0 and kv.fits(need)  # nothing else here: headroom is moot
            if seqs >= d.max_batch or not (alone or kv.fits(need + growth + watermark + kv.block * (seqs + 1))):
                return  # swapped requests keep priority over new ones
            d.swapped.popleft()
            kv.take(need)
            self._tighten_stop(d)
            d.incoming += 1
            ports, cap, lat = self.host_route(d.idx, out=False)
            req.state = TRANSFERRING
            nbytes: float = req.held_tokens * self.kv_bytes_per_token
            self.transfers.start((req, d, self.engine.now), nbytes, ports, cap, lat, self._swap_in_done)
        dq = d.dq
        if d.state is DRAINING and dq:
            if self._best_decode(exclude=d) is not None:
                self._hand_back_queues(d)
                return  # draining: the router's instances take its queue
            # No decode instance in service: finishing the queue here is the only way forward
            # (its prefill instances hold the KV and may themselves be waiting to drain).
        if growth < 0 and len(dq) != 1:
            growth = self._admit_growth(d)  # later admissions may need it (and change the state)
        first = True
        while dq:
            if growth < 0 and not first:
                # Unreachable: nothing an admission does puts work in d.dq synchronously.
                raise AssertionError("decode admission: growth needed after the state changed")
            first = False
            req = dq[0]
            need = -(-(req.prompt_tokens + (req.generated if req.generated > 0 else 1)) // blk) * blk  # blocks(held)
            if need + kv.block > kv.capacity:  # can never fit (kv_tokens_to_serve's rule, on what it holds)
                dq.popleft()
                d.owed -= 1
                p = self.instances[req.prefill_inst]
                p.kv.give(need)
                self.reject(req, "too_large")
                self._try_prefill(p)
                self._maybe_switch(p)
                continue
            slots_full = batch.B + len(batch.joiners) + d.incoming >= d.max_batch
            # Room for its KV, for the batch to finish its current iteration, vLLM's 1% watermark,
            # and one block of growth for every sequence (else it would be preempted at once).
            seqs = batch.B + len(batch.joiners) + d.incoming
            room = need + watermark + kv.block * (seqs + 1)
            if growth < 0:
                # The batch is n <= next_n + 1 iterations past its epoch at the end of its current
                # iteration (its next stop has not fired), and n iterations take at most
                # B * ceil(n / block) blocks (DecodeBatch.new_blocks): if the room test passes
                # with that bound it passes with the exact growth, which is then not needed.
                kb = kv.block
                if slots_full or room + batch.B * -(-(batch.next_n + 1) // kb) * kb > kv.capacity - kv.used:
                    growth = self._admit_growth(d)  # still the state at the call's start
                    room += growth
            else:
                room += growth
            if slots_full or not (room <= kv.capacity - kv.used or (seqs == 0 and not d.swapped and kv.fits(need))):
                if self.on_kv_full == "preempt" and not slots_full and self._preempt_for(d, req, room):
                    continue
                if self.on_kv_full == "reject":
                    dq.popleft()
                    d.owed -= 1
                    self.changed.add(d.idx)
                    p = self.instances[req.prefill_inst]
                    self.changed.add(p.idx)
                    p.kv.give(self.blocks(req.held_tokens))
                    self.reject(req, "kv_full")
                    self._try_prefill(p)
                    self._maybe_switch(p)
                    continue
                return
            dq.popleft()
            d.owed -= 1
            if self.cache is not None and req.hash_ids:
                # Only blocks the decode instance does not hold cross the link.
                held = self.cache.transfer_start(d, req)
                if held:
                    req.kv_bytes = max(0.0, req.kv_bytes - held * self.kv_bytes_per_token)
            kv.take(need)
            self._tighten_stop(d)
            d.incoming += 1
            self.changed.add(d.idx)
            p = self.instances[req.prefill_inst]
            p.sending += 1
            self.changed.add(p.idx)
            tier, ports, cap, lat = self.route_of(p.idx, d.idx)
            req.tier = tier
            req.state = TRANSFERRING
            now = self.engine.now
            req.transfer_start_s = now
            nbytes = req.kv_bytes
            if self.config.layerwise_overlap and req.run_end_s == now and req.run_start_s is not None:
                # Layer-wise streaming: layer l's KV leaves while layer l+1 computes, so the
                # prefill's own duration hides transfer time, but the last layer is always paid.
                # Only when the transfer starts the instant its own prefill ends. What streams
                # meanwhile moves at the route's bottleneck: the per-transfer cap or the slowest
                # port it crosses (a WAN link can be far below the tier's cap).
                overlap_s = now - req.run_start_s
                layers = self.model.num_hidden_layers
                nbytes = max(nbytes / layers, nbytes - overlap_s * bottleneck_Bps(ports, cap))
            self.transfers.start(req, nbytes, ports, cap, lat, self._transfer_done)

    def _admit_growth(self, d: Instance) -> int:
        """KV tokens ``d``'s running batch takes until the end of its current iteration."""
        batch = d.batch
        now = self.engine.now
        n = batch.iterations_done(now - batch.epoch_s) + 1 if now > batch.epoch_s else 0
        return batch.new_blocks(n) * d.kv.block

    def _tighten_stop(self, d: Instance) -> None:
        """Memory was just taken on ``d``: move its next stop earlier if the batch would now run
        short before it (never before the end of the current iteration: admissions leave that
        much free).
        """
        batch = d.batch
        if batch.B == 0 or batch.next_ev is None or batch.next_n == 0:
            return
        n_short = batch.iterations_until_short(d.kv.capacity - d.kv.used, batch.next_n)
        self._stop_within(d, n_short - 1)

    def _stop_within(self, d: Instance, n: int) -> None:
        """Moves ``d``'s next stop to the boundary ``n`` iterations after its epoch, if it was
        due later (a stop already due by then stays).
        """
        batch = d.batch
        assert batch.next_ev is not None
        if batch.next_n > n:
            batch.next_ev.cancelled = True
            batch.next_n = n
            batch.next_ev = self.engine.schedule(batch.epoch_s + batch.decode_time(n), self._decode_tick, d, P_DECODE)

    def _transfer_done(self, req: Request) -> None:
        now = self.engine.now
        req.transfer_end_s = now
        p = self.instances[req.prefill_inst]
        d = self.instances[req.decode_inst]
        blk = self.block
        p.kv.give(-(-(req.prompt_tokens + (req.generated if req.generated > 0 else 1)) // blk) * blk)  # blocks(held)
        if self.cache is not None:
            self.cache.release(p, req)
            self.cache.transfer_done(d, req)
        p.sending -= 1
        d.incoming -= 1
        self.changed.add(p.idx)
        self.changed.add(d.idx)
        req.state = DECODING
        self.observer.on_kv_transfer_done(req)
        if self.timeline is not None:  # on the sender, which holds the KV until it lands
            start = req.transfer_start_s if req.transfer_start_s is not None else now
            self.timeline.on_span(p.idx, "transfer", start, now, {
                "rids": [req.rid], "tokens": req.prefill_tokens, "to": d.idx, "tier": req.tier, "bytes": req.kv_bytes})
        self._join(d, req)
        if p.pq:
            self._try_prefill(p)
        if p.state is DRAINING:  # _maybe_switch's first test, hoisted (hot path)
            self._maybe_switch(p)

    def _join(self, d: Instance, req: Request) -> None:
        """Adds a request whose KV is here to ``d``'s decode batch at its next iteration boundary.

        Instead of an event at that boundary, the batch is settled up to it right away (the
        boundary may lie in the future: ``epoch_s`` then runs ahead of the clock) and the next
        stop is rescheduled from there, saving two heap operations per request.
        """
        batch = d.batch
        if d.paused or batch.next_n == 0 and batch.next_ev is not None:
            batch.joiners.append(req)  # absorbed when the prefill (or pending stop) ends
            return
        if batch.B == 0 or batch.next_ev is None:  # empty or stalled: not mid-iteration
            batch.joiners.append(req)
            self._absorb(d)
            return
        if not self._settle_to_boundary(d):
            batch.joiners.append(req)  # a stop is due at that very boundary; it absorbs it
            return
        req.decode_start_s = batch.epoch_s
        batch.add(req)
        batch.refresh_coeffs()
        self._schedule_decode(d)

    def _swap_in_done(self, item: tuple[Request, Instance, float]) -> None:
        req, d, start = item
        d.incoming -= 1
        req.state = DECODING
        if self.timeline is not None:
            self.timeline.on_span(d.idx, "swap", start, self.engine.now, {
                "rids": [req.rid], "tokens": req.held_tokens, "direction": "in"})
        self._join(d, req)
        self._maybe_switch(d)

    def _swap_out_done(self, item: tuple[Request, Instance, float]) -> None:
        req, d, start = item
        d.swapping -= 1
        blocks = self.blocks(req.held_tokens)
        d.swap_out_tokens -= blocks
        d.kv.give(blocks)
        d.swapped.append(req)
        self.changed.add(d.idx)
        batch = d.batch
        if batch.B and batch.next_ev is None and not d.paused and not d.prefill_busy:
            self._absorb(d)  # the batch was stalled waiting for this memory
        if self.timeline is not None:
            self.timeline.on_span(d.idx, "swap", start, self.engine.now, {
                "rids": [req.rid], "tokens": req.held_tokens, "direction": "out"})
        self._try_admit(d)

    # ================================================================ decode
    def _settle_to_boundary(self, d: Instance) -> bool:
        """Advances ``d``'s batch to the end of its current iteration (possibly in the future).

        Returns ``False`` if a stop is already scheduled at exactly that boundary.
        """
        batch = d.batch
        now = self.engine.now
        if now <= batch.epoch_s:
            return True  # already at (or settled to) a boundary
        if batch.next_ev is None:  # stalled (or paused): no iteration is running
            batch.epoch_s = now
            return True
        n = batch.iterations_done(now - batch.epoch_s) + 1
        if batch.next_ev is not None and batch.next_n <= n:
            return False
        self._advance(d, n)
        if batch.next_ev is not None:
            batch.next_n -= n
        return True

    def _advance(self, d: Instance, n: int) -> None:
        """Books ``n`` closed-form iterations of ``d``'s batch (time, energy, tokens, timeline)."""
        batch = d.batch
        start = batch.epoch_s
        d.decode_tokens += batch.B * n
        busy = batch.advance(n)
        self.meter.book(d, busy, "decode")
        if self.timeline is not None and n:
            self.timeline.on_span(d.idx, "decode", start, start + busy, {
                "rids": sorted(m[1] for m in batch.members), "tokens": batch.B * n, "iterations": n})

    def _schedule_decode(self, d: Instance) -> None:
        """(Re)schedules ``d``'s next stop: the first completion, or the boundary before the
        first iteration that needs a KV block that is not free (a zero-length stop, handled
        by :meth:`_decode_tick`, when that is the very next iteration).
        """
        batch = d.batch
        old = batch.next_ev
        if old is not None:
            batch.next_ev = None
        if batch.B == 0:
            if old is not None:
                old.cancelled = True
            return
        n_done = batch.members[0][0] - batch.counter
        kv = d.kv
        # iterations_until_short(free, n_done)'s first test, inlined (hot path): every member has
        # a block of room for q * block iterations
        q = (kv.capacity - kv.used) // kv.block // batch.B * kv.block
        if n_done > 0 and q >= n_done:
            n_short = q + 1
        else:
            n_short = batch.iterations_until_short(kv.capacity - kv.used, n_done)
        if n_short == 1 and d.swap_out_tokens:
            if old is not None:
                old.cancelled = True
            return  # stalled until a swap-out lands and frees its blocks (_swap_out_done)
        n = n_done if n_done < n_short else n_short - 1
        if batch.s_end != INF:  # a measured-table cost: stop where its segment ends
            m = batch.iterations_in_segment()
            if m < n:
                n = m
        batch.next_n = n
        t = batch.epoch_s + (n * batch.a + batch.b * (n * batch.S + batch.B * n * (n - 1) * 0.5))  # decode_time(n)
        if old is not None:  # same firing order as cancel + schedule (Engine.postpone)
            batch.next_ev = self.engine.postpone(old, t)
        else:
            batch.next_ev = self.engine.schedule(t, self._decode_tick, d, P_DECODE)

    def _request_boundary(self, inst: Instance) -> None:
        """Makes the decode batch stop at the end of its current iteration."""
        batch = inst.batch
        if batch.B == 0 or inst.paused:
            return
        n = batch.iterations_done(self.engine.now - batch.epoch_s) + 1
        if batch.next_ev is not None and batch.next_n <= n:
            return
        if batch.next_ev is not None:
            batch.next_ev.cancelled = True
        batch.next_n = n
        batch.next_ev = self.engine.schedule(batch.epoch_s + batch.decode_time(n), self._decode_tick, inst, P_DECODE)

    def _decode_tick(self, inst: Instance) -> None:
        batch = inst.batch
        n = batch.next_n
        batch.next_ev = None
        self.changed.add(inst.idx)
        self._advance(inst, n)
        batch.epoch_s = self.engine.now
        done = batch.pop_done()
        for req in done:
            self._complete(req, inst)
        if done and inst.swapped:
            self._try_admit(inst)
        if inst.want_prefill and inst.pq:
            # Colocated: run the waiting prefill now; decode resumes after it.
            inst.want_prefill = False
            self._try_prefill(inst, at_boundary=True)
            if inst.prefill_busy:
                return
        self._absorb(inst)
        # Completions (or preemptions at this boundary) may have freed slots and memory.
        if inst.dq or inst.swapped:
            self._try_admit(inst)
        if inst.role is COLOCATED:
            self._try_prefill(inst)
        if inst.state is DRAINING:  # _maybe_switch's first test, hoisted (hot path)
            self._maybe_switch(inst)

    def _absorb(self, inst: Instance) -> None:
        """At an iteration boundary: adds waiting joiners, makes room for the next iteration's
        new blocks, and schedules the next stop.
        """
        batch = inst.batch
        now = self.engine.now
        self.changed.add(inst.idx)
        if batch.epoch_s < now:
            batch.epoch_s = now  # only called at boundaries (or on resume after a pause)
        if batch.joiners:
            for req in batch.joiners:
                req.decode_start_s = batch.epoch_s
                batch.add(req)
            batch.joiners.clear()
        if batch.next_ev is not None:
            batch.next_ev.cancelled = True
            batch.next_ev = None
        if batch.B == 0:
            return
        kv = inst.kv
        free = kv.capacity - kv.used + inst.swap_out_tokens
        # new_blocks(1) <= B: the exact count only when B blocks would not fit
        if batch.B * kv.block > free and batch.new_blocks(1) * kv.block > free:
            self._make_room(inst, 1)  # its own first test, hoisted (hot path)
        batch.refresh_coeffs()
        self._schedule_decode(inst)

    def _make_room(self, inst: Instance, iterations: int) -> None:
        """Preempts the youngest running requests until the next ``iterations`` fit in memory."""
        batch = inst.batch
        kv = inst.kv
        # KV being swapped out is as good as free: the batch waits for those copies instead
        # of preempting more (see _schedule_decode).
        soon = self.preemption == "swap"
        if batch.new_blocks(iterations) * kv.block <= kv.capacity - kv.used + inst.swap_out_tokens:
            return
        if not inst.prefill_busy:
            # Prompts part-way through chunked prefill hold their memory but have produced
            # nothing: they give it back (and start over later) before any running request is
            # preempted; otherwise two requests can evict each other forever.
            for req in reversed(list(inst.pq)):
                if req.prefilled > 0:
                    inst.pq.progress(-req.prefilled)
                    req.prefilled = 0
                    kv.give(self.blocks(req.held_tokens))
                    if self.cache is not None:
                        self.cache.release(inst, req)
                    if batch.new_blocks(iterations) * kv.block <= kv.free + inst.swap_out_tokens:
                        return
        order = sorted(batch.members, key=lambda m: (-m[2].arrival_s, -m[1]))
        victims = []
        for m in order:
            victims.append(m)
            blocks = self.blocks(m[3] + batch.counter)
            batch.remove([m])
            if batch.new_blocks(iterations) * kv.block <= kv.free + (blocks if soon else 0) + inst.swap_out_tokens:
                break
        self._evict(inst, victims)

    def _evict(self, inst: Instance, victims: list[Member]) -> None:
        """Handles members just removed from ``inst``'s batch (their blocks already freed)."""
        colocated = inst.role is COLOCATED
        for m in victims:
            v = m[2]
            if self.cache is not None:
                self.cache.release(inst, v)  # its KV here is dropped or on its way to host memory
            if self.blocks(v.held_tokens + 1) > inst.kv.capacity:
                # It alone outgrew the instance: nothing can hold its next token.
                self.reject(v, "too_large")
                continue
            if self.preemption == "swap":
                v.swaps += 1
                need = self.blocks(v.held_tokens)
                inst.kv.take(need)  # held until the copy to host memory lands
                inst.swapping += 1
                inst.swap_out_tokens += need
                v.state = WAITING_DECODE
                ports, cap, lat = self.host_route(inst.idx, out=True)
                nbytes = v.held_tokens * self.kv_bytes_per_token
                self.transfers.start((v, inst, self.engine.now), nbytes, ports, cap, lat, self._swap_out_done)
                continue
            v.preemptions += 1
            v.prefill_tokens = v.prompt_tokens + v.generated
            v.prefilled = 0
            if colocated:
                v.prefill_inst = v.decode_inst = inst.idx
            self._requeue(v, front=True)
        self.changed.add(inst.idx)
        if self.preemption != "swap":
            for m in victims:
                v = m[2]
                if v.state is PREFILL_QUEUED:
                    p = self.instances[v.prefill_inst]
                    if p is not inst:
                        self._try_prefill(p)

    def _preempt_for(self, d: Instance, req: Request, need: int) -> bool:
        """Admission under ``on_kv_full: preempt``: evicts running requests younger than
        ``req`` (youngest first) until ``req``'s KV fits. Only younger requests are evicted, so
        there is a strict priority order and no ping-pong. Evictions happen at an iteration
        boundary: called mid-iteration, it stops the batch at the end of the current iteration
        and returns ``False``; the decode tick there retries.

        Returns:
            ``True`` if room was made (the caller admits ``req``), else ``False``.
        """
        batch = d.batch
        if d.paused or batch.B == 0:
            return False
        younger = sorted((m for m in batch.members if m[2].arrival_s > req.arrival_s), key=lambda m: (-m[2].arrival_s, -m[1]))
        free = d.kv.free
        victims = []
        for m in younger:
            if free >= need:
                break
            victims.append(m)
            free += self.blocks(m[3] + batch.counter)
        if free < need or not victims:
            return False
        now = self.engine.now
        if now > batch.epoch_s and batch.next_ev is not None:
            # Mid-iteration: the victims run to its end. Stop the batch at that boundary; its
            # decode tick retries the admission, which evicts them then.
            self._stop_within(d, batch.iterations_done(now - batch.epoch_s) + 1)
            return False
        if not self._settle_to_boundary(d):
            return False  # a stop is due at this very boundary: retried then
        batch.remove(victims)
        self._evict(d, victims)
        batch.refresh_coeffs()
        self._schedule_decode(d)
        return True

    def _complete(self, req: Request, inst: Instance) -> None:
        if self.cache is not None:
            self.cache.release_all(req)
        req.completion_s = self.engine.now
        req.state = COMPLETED
        self.in_system -= 1
        self.finished += 1
        inst.served += 1
        self.observer.on_completion(req)

    # ================================================================ roles
    def set_role(self, idx: int, role: Role) -> bool:
        """Starts switching instance ``idx`` to ``role``: it drains (finishes what is running;
        its queued work goes back to the router), then is out of service for
        ``switch_delay_s``.

        Returns:
            ``True`` if a switch started or is already under way to that role.
        """
        inst = self.instances[idx]
        if inst.role is COLOCATED or role is COLOCATED:
            return False
        if inst.state is ACTIVE and inst.role is role:
            return False
        if inst.target_role is role:
            return True
        if inst.state is SWITCHING:
            return False
        inst.set_state(DRAINING)
        inst.drain_start_s = self.engine.now
        inst.target_role = role
        self.changed.add(idx)
        self._invalidate_roles()
        self._hand_back_queues(inst)
        self._maybe_switch(inst)
        return True

    def _hand_back_queues(self, inst: Instance) -> None:
        """Draining: queued prompts and decode admissions go to other instances of the role."""
        if inst.pq and self._best_prefill(exclude=inst) is not None:
            moved = []
            running = {id(r) for r, _, _ in inst.prefill_batch}
            items = inst.pq.take_all()
            for req in items:
                if id(req) in running or req.prefilled > 0:  # running: finishes here
                    inst.pq.push(req)
                    continue
                self.instances[req.decode_inst].owed -= 1
                self._requeue(req, front=False)
                moved.append(self.instances[req.prefill_inst])
            for p in dict.fromkeys(moved):
                self._try_prefill(p)
        if inst.dq and self._best_decode(exclude=inst) is not None:
            targets = []
            while inst.dq:
                req = inst.dq.popleft()
                inst.owed -= 1
                d = self._best_decode(exclude=inst, req=req)
                if d is None:  # no decode instance in service can hold it
                    self.instances[req.prefill_inst].kv.give(self.blocks(req.held_tokens))
                    self._try_prefill(self.instances[req.prefill_inst])
                    self.reject(req, "too_large")
                    continue
                req.decode_inst = d.idx
                d.owed += 1
                d.dq.append(req)
                targets.append(d)
            for d in dict.fromkeys(targets):
                self._try_admit(d)
        if inst.owed:
            # Requests still queued for prefill elsewhere that were to decode here.
            d_new = self._best_decode(exclude=inst)
            if d_new is not None:
                for other in self.instances:
                    for req in other.pq:
                        if req.decode_inst == inst.idx:
                            req.decode_inst = d_new.idx
                            inst.owed -= 1
                            d_new.owed += 1
        self.changed.add(inst.idx)
        self._maybe_switch(inst)  # handing work back may have left it idle

    def _rehome_waiting(self) -> None:
        """An instance came into service: parked work and draining instances' queues move."""
        parked, self._parked = self._parked, []
        for req in parked:
            self._requeue(req, front=False)
        for req in parked:
            if req.state is PREFILL_QUEUED and req not in self._parked:
                self._try_prefill(self.instances[req.prefill_inst])
        for inst in self.instances:
            if inst.state is DRAINING and (inst.pq or inst.dq or inst.owed):
                self._hand_back_queues(inst)
        for inst in self.instances:  # work kept while no instance of its role was in service
            if inst.state is ACTIVE:
                if inst.dq or inst.swapped:
                    self._try_admit(inst)
                if inst.pq and not inst.prefill_busy:
                    self._try_prefill(inst)

    def cancel_switch(self, idx: int) -> None:
        """Returns a draining instance to service in its current role."""
        inst = self.instances[idx]
        if inst.state is DRAINING:
            inst.set_state(ACTIVE)
            inst.target_role = None
            self.changed.add(idx)
            self._invalidate_roles()
            if self.timeline is not None:
                self.timeline.on_span(idx, "drain", inst.drain_start_s, self.engine.now, {
                    "rids": [], "tokens": 0, "from": inst.role.value, "to": inst.role.value, "cancelled": True})
            self._rehome_waiting()

    def _maybe_switch(self, inst: Instance) -> None:
        if inst.state is not DRAINING or not inst.is_idle():
            return
        inst.set_state(SWITCHING)
        self.changed.add(inst.idx)
        now = self.engine.now
        if self.timeline is not None:
            target = inst.target_role.value if inst.target_role is not None else inst.role.value
            self.timeline.on_span(inst.idx, "drain", inst.drain_start_s, now, {
                "rids": [], "tokens": 0, "from": inst.role.value, "to": target})
        inst.switch_ev = self.engine.schedule(now + self.config.switch_delay_s, self._switch_done, inst, P_SWITCH)

    def _switch_done(self, inst: Instance) -> None:
        assert inst.target_role is not None
        old = inst.role
        inst.role = inst.target_role
        inst.target_role = None
        inst.set_state(ACTIVE)
        inst.switch_ev = None
        self.changed.add(inst.idx)
        self._invalidate_roles()
        self._rehome_waiting()
        if self.timeline is not None:
            now = self.engine.now
            self.timeline.on_span(inst.idx, "switch", now - self.config.switch_delay_s, now, {
                "rids": [], "tokens": 0, "from": old.value, "to": inst.role.value})
            self.timeline.on_instant(inst.idx, "role", now, {"from": old.value, "to": inst.role.value})

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
            if inst.gpu != gpu or inst.role is COLOCATED:
                continue
            role = inst.target_role or inst.role
            if role is PREFILL_ROLE:
                p += 1
            else:
                d += 1
        self._role_counts[gpu] = (p, d)
        return p, d

    def flexible_gpus(self) -> list[str]:
        """GPU types with disaggregated (switchable) instances, in config order."""
        out: list[str] = []
        for inst in self.instances:
            if inst.role is not COLOCATED and inst.gpu not in out:
                out.append(inst.gpu)
        return out

    def prefill_count_range(self, gpu: str) -> tuple[int, int]:
        """The prefill counts of ``gpu`` that :meth:`set_prefill_count` applies exactly.

        Every disaggregated cluster keeps at least one prefill and one decode instance (by
        target role); the bounds follow from the other GPU types' current targets.
        """
        total = sum(1 for i in self.instances if i.gpu == gpu and i.role is not COLOCATED)
        other_p = other_d = 0
        colocated = False
        for g in self.flexible_gpus():
            if g != gpu:
                p, d = self.role_counts(g)
                other_p += p
                other_d += d
        for i in self.instances:
            if i.role is COLOCATED:
                colocated = True
        if colocated:
            return 0, total
        lo = 0 if other_p >= 1 else 1
        hi = total if other_d >= 1 else total - 1
        return lo, hi

    def prefill_count_reachable(self, gpu: str) -> tuple[int, int]:
        """The prefill counts of ``gpu`` reachable now: instances already switching (out of
        service for ``switch_delay_s``) cannot be re-targeted until they are active again.
        """
        insts = [i for i in self.instances if i.gpu == gpu and i.role is not COLOCATED]
        stuck_p = sum(1 for i in insts if i.state is SWITCHING and i.target_role is PREFILL_ROLE)
        stuck_d = sum(1 for i in insts if i.state is SWITCHING and i.target_role is DECODE_ROLE)
        return stuck_p, len(insts) - stuck_d

    def set_prefill_count(self, gpu: str, n_prefill: int) -> int:
        """Flips instances of ``gpu`` so that ``n_prefill`` of them serve prefill (by target role).

        ``n_prefill`` is clamped to :meth:`prefill_count_range` (at least one prefill and one
        decode instance stay in the cluster) and :meth:`prefill_count_reachable`; inside both it
        is applied exactly. Draining switches are undone first, then the least-loaded active
        instances are flipped. Returns the number of role changes started or undone.
        """
        insts = [i for i in self.instances if i.gpu == gpu and i.role is not COLOCATED]
        lo, hi = self.prefill_count_range(gpu)
        rlo, rhi = self.prefill_count_reachable(gpu)
        n_prefill = max(lo, rlo, min(hi, rhi, int(n_prefill)))
        cur_p, _ = self.role_counts(gpu)
        changes = 0
        if n_prefill > cur_p:
            cands = [i for i in insts if (i.target_role or i.role) is DECODE_ROLE and i.state is not SWITCHING]
            cands.sort(key=lambda i: (i.state is not DRAINING, i.decode_load, i.idx))
            for inst in cands:
                if changes >= n_prefill - cur_p:
                    break
                changes += self._flip(inst, PREFILL_ROLE)
        elif n_prefill < cur_p:
            cands = [i for i in insts if (i.target_role or i.role) is PREFILL_ROLE and i.state is not SWITCHING]
            # Undo a switch towards prefill first (it keeps an active instance in each role).
            cands.sort(key=lambda i: (i.state is not DRAINING, i.pq.tokens + (1 if i.prefill_busy else 0), i.idx))
            for inst in cands:
                if changes >= cur_p - n_prefill:
                    break
                changes += self._flip(inst, DECODE_ROLE)
        return changes

    def _flip(self, inst: Instance, role: Role) -> int:
        if inst.target_role is not None and inst.state is DRAINING and inst.role is role:
            self.cancel_switch(inst.idx)
            return 1
        return 1 if self.set_role(inst.idx, role) else 0

    def _alloc_tick(self, _: Any) -> None:
        assert self.allocator is not None
        self.allocator.allocate(self)
        if not self.drained():
            self.engine.schedule(self.engine.now + self.allocator.interval_s, self._alloc_tick, None, P_CONTROL)

    def take_control_due(self) -> bool:
        """Whether an external control tick fell due since the last call (and clears it)."""
        due = self.control_due
        self.control_due = False
        return due

    def _control_tick(self, _: Any) -> None:
        self.control_due = True
        if self.control_interval_s and not self.drained():
            self.engine.schedule(self.engine.now + self.control_interval_s, self._control_tick, None, P_CONTROL)

    # ================================================================ status
    def cost_usd(self, now: float) -> float:
        """GPU cost over ``[0, now]`` (see :class:`~disagg_gym.cluster.accounting.Meter`)."""
        return self.meter.cost_usd(now)

    def energy_j(self, now: float) -> float:
        """GPU energy over ``[0, now]`` (see :class:`~disagg_gym.cluster.accounting.Meter`)."""
        return self.meter.energy_j(now)

    def drained(self) -> bool:
        """No more arrivals and every request has finished."""
        return self.arrivals_done and self.in_system == 0 and self.pending is None

    def pools(self) -> tuple[list[Instance], list[Instance]]:
        """(accepting prefill-or-colocated instances, accepting decode instances); cached
        until a role or state changes. Callers must not mutate the lists.
        """
        pools = self._pools
        if pools is None:
            ps = [i for i in self.instances if i.state is ACTIVE and i.role is not DECODE_ROLE]
            ds = [i for i in self.instances if i.state is ACTIVE and i.role is DECODE_ROLE]
            pools = self._pools = (ps, ds)
        return pools
