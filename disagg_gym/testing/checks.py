"""``check_sim_invariants``: conservation, lifecycle order, capacity limits. Used by tests and users."""

from __future__ import annotations

from typing import TYPE_CHECKING

from disagg_gym.types import RequestState

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.metrics.recorder import Recorder
    from disagg_gym.workload.request import Request

LIFECYCLE = ("arrival_s", "prefill_start_s", "first_token_s", "transfer_start_s", "transfer_end_s", "decode_start_s", "completion_s")


class InvariantError(AssertionError):
    """A simulator invariant does not hold."""


def check_request(req: Request) -> None:
    """Lifecycle timestamps are set in order and the final state is consistent."""
    prev = None
    prev_name = ""
    for name in LIFECYCLE:
        t = getattr(req, name)
        if t is None:
            continue
        if t != t:
            raise InvariantError(f"request {req.rid}: {name} is NaN")
        if prev is not None and t < prev - 1e-9:
            raise InvariantError(f"request {req.rid}: {name}={t} < {prev_name}={prev}")
        prev, prev_name = t, name
    if req.state is RequestState.COMPLETED:
        if req.first_token_s is None or req.completion_s is None:
            raise InvariantError(f"request {req.rid}: completed without timestamps")
    elif req.state is RequestState.REJECTED:
        if not req.reject_reason:
            raise InvariantError(f"request {req.rid}: rejected without a reason")
    else:
        raise InvariantError(f"request {req.rid}: unfinished state {req.state}")


def check_cluster_state(cluster: Cluster) -> None:
    """Instantaneous limits: KV memory within capacity, batch sizes, queue sums, no work on an
    instance that is switching roles, ports never carrying more than their capacity.
    """
    from disagg_gym.cluster.state import InstanceState

    for inst in cluster.instances:
        kv, batch = inst.kv, inst.batch
        if kv.used < 0 or kv.used > kv.capacity:
            raise InvariantError(f"instance {inst.idx}: kv_used {kv.used} outside [0, {kv.capacity}]")
        if batch.held > kv.used:
            raise InvariantError(f"instance {inst.idx}: decode batch holds {batch.held} > pool used {kv.used}")
        if batch.B < 0 or batch.B > inst.max_batch:
            raise InvariantError(f"instance {inst.idx}: batch {batch.B} outside [0, {inst.max_batch}]")
        if batch.B != len(batch.members):
            raise InvariantError(f"instance {inst.idx}: batch {batch.B} != members {len(batch.members)}")
        if inst.pq.tokens < 0 or inst.incoming < 0 or inst.owed < 0 or inst.sending < 0 or inst.swapping < 0:
            raise InvariantError(f"instance {inst.idx}: negative queue/incoming/owed/sending/swapping")
        if inst.pq.tokens != sum(r.prefill_tokens - r.prefilled for r in inst.pq):
            raise InvariantError(f"instance {inst.idx}: queued tokens {inst.pq.tokens} != queue contents")
        if inst.state is InstanceState.SWITCHING and (
            inst.prefill_busy or batch.B or batch.joiners or inst.incoming or inst.sending or kv.used
        ):
            raise InvariantError(f"instance {inst.idx}: works while switching roles")
        if inst.state is not InstanceState.ACTIVE and inst.prefill_busy:
            for req, _, done_before in inst.prefill_batch:
                if done_before == 0 and req.run_start_s is not None and req.run_start_s > inst.drain_start_s:
                    raise InvariantError(f"instance {inst.idx}: started a prefill while {inst.state.value}")
    if cluster.cache is not None:
        check_cache_state(cluster)
    for port in cluster.links():
        if port.load_Bps > port.bandwidth_Bps * (1 + 1e-9):
            raise InvariantError(f"port {port.key}: carries {port.load_Bps:.4g} B/s > {port.bandwidth_Bps:.4g}")


def check_cache_state(cluster: Cluster) -> None:
    """Prefix caches: unreferenced blocks fit in free KV memory (so cache plus memory in use
    never exceed capacity), reference counts are positive and equal the number of holders,
    a referenced block is not on the eviction list, lower tiers within capacity.
    """
    cache = cluster.cache
    assert cache is not None
    for inst, c in zip(cluster.instances, cache.hbm):
        if c.evictable_tokens > inst.kv.free:
            raise InvariantError(
                f"instance {inst.idx}: cached blocks {c.evictable_tokens} tokens > free KV {inst.kv.free}"
            )
        counts: dict[int, int] = {}
        for held in c.holders.values():
            for h in held:
                counts[h] = counts.get(h, 0) + 1
        if counts != c.refs:
            raise InvariantError(f"instance {inst.idx}: reference counts disagree with the holders")
        if any(v < 1 for v in c.refs.values()):
            raise InvariantError(f"instance {inst.idx}: a reference count below 1")
        if any(h in c.lru for h in c.refs):
            raise InvariantError(f"instance {inst.idx}: a block in use is on the eviction list")
        for t in cache.tiers[inst.idx]:
            if len(t.store) > t.store.capacity:
                raise InvariantError(f"instance {inst.idx}: tier {t.name} over capacity")


def check_sim_invariants(cluster: Cluster, recorder: Recorder, drained: bool = True) -> None:
    """Checks a finished (or paused) run.

    Args:
        cluster: The simulated cluster.
        recorder: A recorder built with ``keep_requests=True``.
        drained: Expect every request finished, all memory released, nothing in flight.

    Raises:
        InvariantError: describing the first violation found.
    """
    check_cluster_state(cluster)
    for req in recorder.requests:
        check_request(req)
    finished = recorder.completed + recorder.rejected
    if finished + cluster.in_system != recorder.arrived:
        raise InvariantError(
            f"conservation: arrived {recorder.arrived} != finished {finished} + in system {cluster.in_system}"
        )
    if recorder.keep_requests and len(recorder.requests) != finished:
        raise InvariantError(f"recorded {len(recorder.requests)} requests but {finished} finished")
    rids = [r.rid for r in recorder.requests]
    if len(set(rids)) != len(rids):
        raise InvariantError("a request finished twice")
    if drained:
        if cluster.in_system != 0:
            raise InvariantError(f"{cluster.in_system} requests still in the system after draining")
        for inst in cluster.instances:
            if inst.kv_used != 0 or inst.B != 0 or inst.pq or inst.dq or inst.joiners or inst.incoming or inst.swapped:
                raise InvariantError(f"instance {inst.idx} not empty after draining: kv_used={inst.kv_used}, B={inst.B}")
        if cluster.cache is not None:
            for inst, c in zip(cluster.instances, cluster.cache.hbm):
                if c.refs or c.holders:
                    raise InvariantError(f"instance {inst.idx}: cache blocks still pinned after draining")
