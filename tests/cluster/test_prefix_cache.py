"""Prefix caching and the KV-cache hierarchy against hand-computed answers (issue #14)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.config import CacheTierConfig, PrefixCacheConfig
from disagg_gym.cluster.kv_pool import KVPool
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.cluster.prefix_cache import BlockStore, PrefixCache
from disagg_gym.hardware import get_gpu
from disagg_gym.interconnect.links import link_for_gpu
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.metrics.summary import summarize
from disagg_gym.sim.engine import Engine
from disagg_gym.testing.checks import check_sim_invariants
from disagg_gym.testing.scenarios import ArraySource, LinearCost, toy_cluster_config

KVB = 131072  # LinearCost's KV bytes per token


class Spans:
    """Minimal timeline observer keeping every span."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, str, float, float, dict]] = []

    def on_instance(self, idx: int, gpu: str, tp: int, role: str) -> None:  # noqa: D102
        pass

    def on_span(self, idx: int, name: str, start_s: float, end_s: float, args: dict) -> None:  # noqa: D102
        self.spans.append((idx, name, start_s, end_s, args))

    def on_instant(self, idx: int, name: str, t_s: float, args: dict) -> None:  # noqa: D102
        pass


def run(source: ArraySource, cost: LinearCost, cfg=None, router: str = "round_robin", timeline=None):
    eng = Engine()
    rec = Recorder(keep_records=True, keep_requests=True)
    cl = Cluster(cfg or toy_cluster_config(), eng, source, observer=rec, router=ROUTERS.get(router)(),
                 cost_factory=lambda gpu, tp: cost, timeline=timeline)
    cl.start()
    eng.run_until(lambda: cl.drained())
    check_sim_invariants(cl, rec)
    return cl, {r.rid: r for r in rec.requests}, rec


def ids(*ranges: range) -> list[int]:
    return [i for r in ranges for i in r]


# ---------------------------------------------------------------------------- HBM hits
@pytest.mark.parametrize("extra", [0, 256])
def test_second_arrival_computes_only_its_new_suffix(extra: int) -> None:
    """A 1024-token prompt (64 blocks of 16), then the same prompt (+ ``extra`` new tokens)
    after the first finished: TTFT_2 = c0 + c1 * (new tokens), where an identical prompt
    still computes its last block (at least one token is computed; full blocks only).
    """
    c0, c1 = 0.003, 1e-4
    cost = LinearCost(prefill_fixed_s=c0, prefill_per_token_s=c1)
    p1, p2 = 1024, 1024 + extra
    src = ArraySource([0.0, 5.0], [p1, p2], [4, 4], hash_ids=[ids(range(64)), ids(range(64), range(900, 900 + extra // 16))])
    cl, reqs, rec = run(src, cost)
    assert reqs[0].first_token_s == pytest.approx(c0 + c1 * p1, abs=1e-12)
    computed = 16 if extra == 0 else extra  # identical: block 63 is recomputed
    assert reqs[1].first_token_s - 5.0 == pytest.approx(c0 + c1 * computed, abs=1e-12)
    assert reqs[1].cached_tokens == p2 - computed and reqs[1].cache_tier == "hbm"
    assert reqs[0].cached_tokens == 0 and reqs[0].cache_tier == ""
    s = summarize(rec, cl)
    assert s["prompt_tokens_total"] == p1 + p2
    assert s["prefill_tokens_computed"] == p1 + computed
    assert s["cache_hit_rate"] == pytest.approx((p2 - computed) / (p1 + p2))
    assert s["cache_hit_rate_by_tier"] == {"hbm": pytest.approx((p2 - computed) / (p1 + p2)),
                                          "host_dram": 0.0, "ssd": 0.0, "remote": 0.0}
    rows = {r["rid"]: r for r in rec.iter_records()}
    r = rows[1]
    assert r["ttft_queue_s"] == 0.0 and r["ttft_load_s"] == 0.0
    assert r["ttft_compute_s"] == pytest.approx(c0 + c1 * computed, abs=1e-12)


def test_prefix_caching_off_computes_everything() -> None:
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-4)
    src = ArraySource([0.0, 5.0], [1024, 1024], [4, 4], hash_ids=[ids(range(64))] * 2)
    cfg = toy_cluster_config(prefix_cache=PrefixCacheConfig(enabled=False))
    cl, reqs, rec = run(src, cost, cfg)
    assert reqs[1].first_token_s - 5.0 == pytest.approx(1e-4 * 1024, abs=1e-12)
    assert cl.cache is None and summarize(rec, cl)["cache_hit_rate"] == 0.0


def test_only_missing_blocks_cross_the_pd_link() -> None:
    """The decode instance keeps the first request's 64 blocks cached; the second request
    (+256 new tokens) sends only 1280 + 0 - 1024 = 256 tokens of KV: latency + bytes / bw.
    """
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-5)
    src = ArraySource([0.0, 5.0], [1024, 1280], [4, 4], hash_ids=[ids(range(64)), ids(range(64), range(900, 916))])
    cl, reqs, _ = run(src, cost)
    spec = link_for_gpu("nvlink", get_gpu("h100-sxm"))
    a, b = reqs[0], reqs[1]
    assert a.kv_bytes == 1024 * KVB
    assert b.kv_bytes == 256 * KVB
    assert b.transfer_end_s - b.transfer_start_s == pytest.approx(spec.latency_s + 256 * KVB / (spec.bandwidth_gbps * 1e9), rel=1e-9)
    assert cl.cache is not None and cl.cache.transfer_bytes_saved == 1024 * KVB


def test_no_hashes_no_cache_and_no_cache_keys() -> None:
    cost = LinearCost()
    cl, reqs, rec = run(ArraySource([0.0, 1.0], [100, 100], [3, 3]), cost)
    assert cl.cache is None and not cl.carries_hashes
    assert "cache_hit_rate" not in summarize(rec, cl)
    assert reqs[1].cached_tokens == 0


# ---------------------------------------------------------------------------- the store
def test_lru_evicts_least_recently_released_tail_first() -> None:
    pool = KVPool(10 * 16, 16)
    evicted: list[int] = []
    cache = PrefixCache(pool, 16, evicted.extend)
    pool.cache = cache
    cache.pin(1, [10, 11, 12])  # request 1 holds blocks 10-12 (its memory is elsewhere here)
    cache.pin(2, [20, 21])
    cache.release(1)  # LRU order: 12, 11, 10 (tail first: the head is evicted last)
    cache.release(2)  # then 21, 20
    assert list(cache.lru) == [12, 11, 10, 21, 20]
    assert cache.match([10, 11, 12, 13]) == 3
    cache.pin(3, [10])  # a hit takes 10 off the eviction list
    pool.take(7 * 16)  # 3 blocks free: 4 unreferenced blocks must shrink to 3
    assert evicted == [12]
    pool.take(2 * 16)  # 1 block free
    assert evicted == [12, 11, 21]
    assert list(cache.lru) == [20] and cache.refs == {10: 1}
    pool.give(9 * 16)
    cache.release(3)
    assert list(cache.lru) == [20, 10]


def test_block_store_lru_capacity() -> None:
    store = BlockStore("host_dram", 3)
    assert store.insert([1, 2, 3]) == ([1, 2, 3], [])
    store.touch([1])
    assert store.insert([4, 2]) == ([4], [3])
    assert list(store.lru) == [1, 4, 2]


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["pin", "release", "take", "give"]), st.integers(0, 5),
                              st.lists(st.integers(0, 12), max_size=6)), max_size=60))
def test_cache_never_exceeds_capacity_refcounts_positive_in_use_never_evicted(ops) -> None:
    """Random pins, releases, takes and gives: cached + used <= capacity, reference counts
    >= 1 and equal to holders, and no block is evicted while someone holds it.
    """
    pool = KVPool(8 * 16, 16)
    held_now: dict[int, set[int]] = {}
    bad: list[int] = []

    def on_evict(hs: list[int]) -> None:
        for h in hs:
            if any(h in s for s in held_now.values()):
                bad.append(h)

    cache = PrefixCache(pool, 16, on_evict)
    pool.cache = cache
    taken: dict[int, int] = {}
    for op, rid, hashes in ops:
        if op == "pin":
            mem = 16 * len(set(hashes) - held_now.get(rid, set()))
            if not pool.fits(mem):
                continue
            cache.pin(rid, hashes)  # pinned before the memory is taken, as the cluster does
            pool.take(mem)
            taken[rid] = taken.get(rid, 0) + mem
            held_now.setdefault(rid, set()).update(hashes)
        elif op == "release":
            pool.give(taken.pop(rid, 0))
            cache.release(rid)
            held_now.pop(rid, None)
        elif op == "take" and pool.fits(16 * len(hashes)):
            pool.take(16 * len(hashes))
            taken[-1] = taken.get(-1, 0) + 16 * len(hashes)
        elif op == "give" and taken.get(-1):
            pool.give(taken.pop(-1))
        assert cache.evictable_tokens + pool.used <= pool.capacity
        assert all(c >= 1 for c in cache.refs.values())
        assert cache.refs == {h: sum(h in s for s in held_now.values()) for s in held_now.values() for h in s}
        assert not bad


# ---------------------------------------------------------------------------- lower tiers
def host_cfg(bw_gbps: float = 1.0, lat_s: float = 0.001, policy: str = "offload"):
    tier = CacheTierConfig(capacity_gb=10.0, policy=policy, bandwidth_gbps=bw_gbps, latency_s=lat_s)
    return toy_cluster_config(prefix_cache=PrefixCacheConfig(host_dram=tier))


def test_tier_load_time_is_bytes_over_bandwidth_plus_latency() -> None:
    """KV capacity 2048 tokens. A (1024 tokens, 64 blocks) runs; B (2000 tokens, other ids)
    then takes 2016 tokens of memory on the prefill instance, so only 2 of A's 64 cached
    blocks stay in HBM (its head: blocks are released tail first) and 62 are offloaded to
    host DRAM. A' (= A) then hits 2 blocks in HBM and loads blocks 2..62 (61 blocks: the last
    block is computed) over a 1 GB/s, 1 ms host link: load = 1 ms + 61*16*KVB / 1e9 s, which
    beats computing them (976 tokens x 1 ms). The prefill (16 tokens, 16 ms) overlaps the load,
    so TTFT = the load time exactly.
    """
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-3, kv_capacity=2048)
    sp = Spans()
    a = ids(range(64))
    b = ids(range(5000, 5000 + 125))
    src = ArraySource([0.0, 10.0, 20.0], [1024, 2000, 1024], [2, 2, 2], hash_ids=[a, b, a])
    cl, reqs, rec = run(src, cost, host_cfg(), timeline=sp)
    load = 0.001 + 61 * 16 * KVB / 1e9
    r = reqs[2]
    assert r.first_token_s - 20.0 == pytest.approx(load, rel=1e-9)
    assert r.cached_tokens == 63 * 16 and r.cache_tier == "host_dram"
    assert r.cache_served == (32, 976, 0, 0)
    assert r.ttft_load_s == pytest.approx(load - 16 * 1e-3, rel=1e-9)
    loads = [s for s in sp.spans if s[1] == "load"]
    assert len(loads) == 1 and loads[0][3] - loads[0][2] == pytest.approx(load, rel=1e-9)
    assert loads[0][4]["bytes"] == 61 * 16 * KVB
    assert any(s[1] == "offload" for s in sp.spans)
    s = summarize(rec, cl)
    assert s["cache_bytes_loaded_by_tier"]["host_dram"] == 61 * 16 * KVB
    assert s["cache_hit_rate_by_tier"]["host_dram"] == pytest.approx(976 / (1024 + 2000 + 1024))
    row = next(x for x in rec.iter_records() if x["rid"] == 2)
    assert row["ttft_queue_s"] + row["ttft_load_s"] + row["ttft_compute_s"] == pytest.approx(row["ttft_s"])


def test_recompute_when_the_tier_is_slower_than_compute() -> None:
    """Same scenario over a 0.01 GB/s link: loading 976 tokens (12.8 s) is slower than
    computing them (0.98 s), so A' computes 1024 - 32 tokens and loads nothing.
    """
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-3, kv_capacity=2048)
    a = ids(range(64))
    src = ArraySource([0.0, 10.0, 60.0], [1024, 2000, 1024], [2, 2, 2], hash_ids=[a, ids(range(5000, 5125)), a])
    cl, reqs, _ = run(src, cost, host_cfg(bw_gbps=0.01))
    r = reqs[2]
    assert r.first_token_s - 60.0 == pytest.approx((1024 - 32) * 1e-3, rel=1e-9)
    assert r.cached_tokens == 32 and r.cache_tier == "hbm"
    assert cl.cache is not None and cl.cache.bytes_loaded["host_dram"] == 0.0


def test_the_plan_counts_a_load_that_overlaps_the_compute_once() -> None:
    """Same scenario over a 0.1306 GB/s link: loading blocks 2..62 takes 1 ms + 61*16*KVB /
    0.1306e9 = 0.98053 s, computing them 0.976 s more than the last block's 16 ms. The load
    overlaps the 16 ms compute, so loading gives TTFT 0.98053 s against 0.992 s recomputed: A'
    loads. (The plan used to add the two, 0.99653 s > 0.992 s, and recomputed: 12 ms slower.)
    """
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-3, kv_capacity=2048)
    a = ids(range(64))
    src = ArraySource([0.0, 10.0, 20.0], [1024, 2000, 1024], [2, 2, 2], hash_ids=[a, ids(range(5000, 5125)), a])
    cl, reqs, _ = run(src, cost, host_cfg(bw_gbps=0.1306))
    r = reqs[2]
    load = 0.001 + 61 * 16 * KVB / 0.1306e9
    assert r.cached_tokens == 63 * 16 and r.cache_tier == "host_dram"
    assert r.first_token_s - 20.0 == pytest.approx(load, rel=1e-9) and load < (1024 - 32) * 1e-3


def test_a_chunked_prompt_plans_its_chunks_after_the_loads() -> None:
    """The same A, B, A' with 256-token prefill chunks and a 10 ms cost per iteration: A'
    recomputing its 992 missing tokens takes 4 chunks, 4 x 10 ms + 0.992 s = 1.032 s; loading
    blocks 2..62 over the link takes 1.017 s and overlaps the one 16-token chunk left (26 ms).
    The plan used to cost the recompute as one unchunked iteration (1.002 s) and recomputed:
    15 ms slower than loading.
    """
    cost = LinearCost(prefill_fixed_s=0.01, prefill_per_token_s=1e-3, kv_capacity=2048)
    load = 1.017
    bw = 61 * 16 * KVB / (load - 0.001)
    cfg = host_cfg(bw_gbps=bw / 1e9)
    cfg = replace(cfg, groups=(replace(cfg.groups[0], prefill_chunk_tokens=256), *cfg.groups[1:]))
    a = ids(range(64))
    src = ArraySource([0.0, 10.0, 20.0], [1024, 2000, 1024], [2, 2, 2], hash_ids=[a, ids(range(5000, 5125)), a])
    cl, reqs, _ = run(src, cost, cfg)
    r = reqs[2]
    assert r.cached_tokens == 63 * 16 and r.cache_tier == "host_dram"
    assert r.first_token_s - 20.0 == pytest.approx(load, rel=1e-9)
    assert load < 4 * 0.01 + 0.992 and load > 0.01 + 0.992


BLOCK_BYTES = 16 * KVB


def two_tier_cfg(ssd_policy: str, ssd_gbps: float):
    """Host DRAM of 30 blocks (offload) over a 1 GB/s, 1 ms link; a large SSD below it."""
    host = CacheTierConfig(capacity_gb=30.5 * BLOCK_BYTES / 1e9, policy="offload", bandwidth_gbps=1.0, latency_s=0.001)
    ssd = CacheTierConfig(capacity_gb=10.0, policy=ssd_policy, bandwidth_gbps=ssd_gbps, latency_s=0.001)
    return toy_cluster_config(prefix_cache=PrefixCacheConfig(host_dram=host, ssd=ssd))


def two_tier_run(cfg):  # type: ignore[no-untyped-def]
    # test_tier_load_time_is_bytes_over_bandwidth_plus_latency's A, B, A': B's memory evicts A's
    # blocks 63, 62, ..., 2 (tail first) from HBM into host DRAM
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-3, kv_capacity=2048)
    a = ids(range(64))
    src = ArraySource([0.0, 10.0, 20.0], [1024, 2000, 1024], [2, 2, 2], hash_ids=[a, ids(range(5000, 5125)), a])
    return run(src, cost, cfg)


def test_host_dram_evictions_cascade_to_the_ssd_and_load_from_both() -> None:
    """Host DRAM holds 30 of the 62 evicted blocks: it keeps the youngest (2..31) and passes the
    32 oldest (63..32) on to the offloading SSD. A' then finds blocks 0-1 in HBM, 2-31 in host
    DRAM and 32-62 on the SSD (block 63 is computed). The cuts: recompute 992 tokens (0.992 s);
    load 30 host blocks (1 ms + 30 x 2 MiB / 1 GB/s) + compute 512 tokens (0.576 s); or load
    both segments (the SSD's 31 blocks: 1 ms + 31 x 2 MiB / 1 GB/s) + compute 16 tokens
    (0.146 s): the last wins, and the two loads run side by side, so TTFT is the SSD's.
    """
    cl, reqs, rec = two_tier_run(two_tier_cfg("offload", 1.0))
    r = reqs[2]
    assert r.cache_served == (32, 30 * 16, 31 * 16, 0) and r.cached_tokens == 63 * 16 and r.cache_tier == "ssd"
    assert r.first_token_s - 20.0 == pytest.approx(0.001 + 31 * BLOCK_BYTES / 1e9, rel=1e-9)
    s = summarize(rec, cl)
    assert s["cache_bytes_loaded_by_tier"]["host_dram"] == 30 * BLOCK_BYTES
    assert s["cache_bytes_loaded_by_tier"]["ssd"] == 31 * BLOCK_BYTES
    assert s["cache_bytes_offloaded_by_tier"]["ssd"] >= 32 * BLOCK_BYTES  # at least A's 63..32
    # B's KV evicted A's blocks on the decode instance too, but decode instances never load from
    # lower tiers, so they write nothing there
    assert cl.cache is not None and reqs[1].decode_inst == reqs[0].decode_inst
    assert [len(t.store) for t in cl.cache.tiers[reqs[0].decode_inst]] == [0, 0]
    assert cl.cache.hbm[reqs[0].decode_inst].evicted > 0


def test_each_block_loads_from_the_fastest_tier_holding_it() -> None:
    """Same run with a write-through SSD at 0.125 GB/s: blocks 2-31 are in host DRAM *and* on
    the SSD, 32-62 only on the SSD. Following the prefix through the fastest tier holding each
    block, the cuts are: recompute (0.992 s), host blocks 2-31 + 512 tokens (0.5759 s), or also
    the SSD's 31 (0.0639 + 0.5211 + 0.016 = 0.6010 s: the loads of a cut add up, though the
    SSD's alone plus 16 tokens, 0.537 s, would win): A' loads from host DRAM only and computes
    512 tokens, which outlast the load (TTFT 0.512 s). Reading blocks 2-31 from the SSD
    instead would make every load slower than recomputing (0.992 s).
    """
    cl, reqs, rec = two_tier_run(two_tier_cfg("write_through", 0.125))
    r = reqs[2]
    assert r.cache_served == (32, 30 * 16, 0, 0) and r.cache_tier == "host_dram"
    assert r.first_token_s - 20.0 == pytest.approx(512 * 1e-3, rel=1e-9)
    s = summarize(rec, cl)
    assert s["cache_bytes_loaded_by_tier"] == {"host_dram": 30 * BLOCK_BYTES, "ssd": 0.0, "remote": 0.0}


def test_write_through_copies_every_new_block() -> None:
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-5)
    src = ArraySource([0.0], [1024], [2], hash_ids=[ids(range(64))])
    cl, _, rec = run(src, cost, host_cfg(policy="write_through"))
    # Cached on the prefill instance (64 blocks, written through) and on the decode instance
    # (which never writes to lower tiers: it never loads from them).
    assert summarize(rec, cl)["cache_bytes_offloaded_by_tier"]["host_dram"] == 64 * 16 * KVB


def test_shared_pool_serves_another_instance() -> None:
    """Two prefill instances, round robin: A on P0, B (same prompt) on P1, which finds A's
    blocks only in the shared pool (written through when A was cached) and loads them.
    """
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-3)
    tier = CacheTierConfig(capacity_gb=10.0, policy="write_through", bandwidth_gbps=10.0, latency_s=1e-5)
    cfg = toy_cluster_config(n_prefill=2, prefix_cache=PrefixCacheConfig(remote=tier))
    a = ids(range(64))
    cl, reqs, _ = run(ArraySource([0.0, 5.0], [1024, 1024], [2, 2], hash_ids=[a, a]), cost, cfg)
    r = reqs[1]
    assert r.prefill_inst != reqs[0].prefill_inst
    assert r.cache_tier == "remote" and r.cached_tokens == 63 * 16
    load = 1e-5 + 63 * 16 * KVB / 10e9
    assert r.first_token_s - 5.0 == pytest.approx(max(load, 16e-3), rel=1e-9)


def test_cache_aware_routers_follow_the_prefix() -> None:
    """Two prefill instances; requests come in pairs of two prefixes (a, a, b, b, ...). The
    cache-aware routers keep each prefix on one instance (only the first of each misses);
    round robin makes each instance miss each prefix once.
    """
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-4)
    cfg = toy_cluster_config(n_prefill=2)
    a, b = ids(range(64)), ids(range(1000, 1064))
    n = 8
    src = lambda: ArraySource([float(i) for i in range(n)], [1024] * n, [2] * n, hash_ids=[a, a, b, b] * (n // 4))  # noqa: E731
    hits = {}
    for router in ("round_robin", "prefix_affinity", "kv_router", "llmd_scorer", "conductor"):
        cl, reqs, rec = run(src(), cost, cfg, router=router)
        hits[router] = summarize(rec, cl)["cache_hit_rate"]
    # Round robin sends a, a, b, b, ... to P0, P1, P0, P1: each instance misses each prefix once.
    assert hits["round_robin"] == pytest.approx((n - 4) * 1008 / (n * 1024))
    for router in ("prefix_affinity", "kv_router", "llmd_scorer", "conductor"):
        assert hits[router] == pytest.approx((n - 2) * 1008 / (n * 1024)), router


def test_prefix_cache_config_is_strict() -> None:
    from disagg_gym.config import ConfigError, from_dict
    from disagg_gym.cluster.config import ClusterConfig

    base = {"groups": [{"gpu": "h100-sxm", "count": 1, "role": "colocated"}]}
    cfg = from_dict(ClusterConfig, {**base, "prefix_cache": {"host_dram": {"capacity_gb": 64, "policy": "write_through"}}})
    assert cfg.prefix_cache.host_dram.capacity_gb == 64
    with pytest.raises(ConfigError, match="policy"):
        from_dict(ClusterConfig, {**base, "prefix_cache": {"host_dram": {"policy": "lazy"}}})
    assert replace(cfg.prefix_cache, enabled=False).enabled is False


def test_chrome_trace_shows_loads_and_offloads() -> None:
    from disagg_gym.metrics.chrome_trace import LANES, ChromeTrace

    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-3, kv_capacity=2048)
    ct = ChromeTrace()
    a = ids(range(64))
    run(ArraySource([0.0, 10.0, 20.0], [1024, 2000, 1024], [2, 2, 2], hash_ids=[a, ids(range(5000, 5125)), a]),
        cost, host_cfg(), timeline=ct)
    ev = ct.to_json()["traceEvents"]
    loads = [e for e in ev if e.get("name") == "load" and e["ph"] == "X"]
    offloads = [e for e in ev if e.get("name") == "offload" and e["ph"] == "X"]
    assert len(loads) == 1 and loads[0]["tid"] == LANES["load"] and loads[0]["args"]["tier"] == "host_dram"
    assert offloads and all(e["tid"] % 10 == LANES["offload"] % 10 for e in offloads)
    names = {e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
    assert {"cache load", "cache offload"} <= names
