"""``CacheHierarchy``: prefix reuse over HBM, host DRAM, local SSD and a shared pool (issue #14).

The cluster builds one hierarchy when the first request with block hashes arrives (and
``prefix_cache.enabled``) and calls it at a few points of a request's life; the hierarchy owns
every cache (``prefix_cache.PrefixCache`` per instance, ``prefix_cache.BlockStore`` per lower
tier) and is their only writer.

* **Prefill start** (:meth:`start_prefill`, before the run takes its memory): the longest
  prefix of the request's cache blocks found in the instance's HBM is pinned (free: no compute,
  no copy). The prefix is then followed through the lower tiers (host DRAM, SSD, shared pool;
  the fastest tier holding each block). For every cut ``k`` at a tier boundary the predicted
  time ``sum of loads up to k + prefill_s(P - k C, k C)`` is compared with computing from the
  HBM hit; the fastest wins (load or recompute, whichever the cost model says is faster).
  Loads are transfers over the tier's link through the cluster's ``TransferManager``
  (contended with KV transfers and swaps on the same ports); they overlap the prefill
  iteration layer by layer, so the iteration ends when both its compute and its loads are
  done (:meth:`hold_prefill`).
* **Prefill done** (:meth:`prefill_done`): every full block of the prompt is cached on the
  prefill instance, pinned by the request until it lets go of its memory there.
* **KV transfer start** (:meth:`transfer_start`): only the blocks the decode instance does not
  already hold cross the link; the ones it holds are pinned.
* **Release** (:meth:`release`, :meth:`release_all`): the request's pins on an instance go when
  its memory there is given back; the blocks stay cached (LRU) in free memory.
* **Eviction**: HBM blocks evicted by memory pressure go to the next tier when its policy is
  ``offload`` (a write over its link), and so on down the chain; ``write_through`` tiers get
  every block when it is first cached in HBM. Only instances that prefill write to lower
  tiers (decode instances never load from them).

Lower-tier writes are visible at once (a load of a block whose offload is still on the wire is
not delayed); their bytes still occupy the link: each tier link carries one write at a time,
and blocks evicted meanwhile are written together by the next one. See docs/simulator.md, "Prefix caching".
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from disagg_gym.cluster.prefix_cache import BlockStore, PrefixCache
from disagg_gym.config import ConfigError
from disagg_gym.types import Role
from disagg_gym.workload.prefix import cache_block_hashes, cache_block_hashes_many

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster
    from disagg_gym.cluster.config import CacheTierConfig, PrefixCacheConfig
    from disagg_gym.cluster.instance import Instance
    from disagg_gym.interconnect.kv_transfer import Port
    from disagg_gym.workload.request import Request
    from disagg_gym.workload.source import ArrivalChunk

#: Tier names, fastest first (keys of ``cache_hit_rate_by_tier``).
TIER_NAMES: tuple[str, ...] = ("hbm", "host_dram", "ssd", "remote")
_TIER_INDEX = {name: i for i, name in enumerate(TIER_NAMES)}


def _plan_s(inst: Instance, prompt: int, cached: int, load_s: float) -> float:
    """Predicted time to the first token of a prefill of ``prompt`` tokens with ``cached`` of
    them served from caches, ``load_s`` of which must first be loaded from lower tiers.

    The loads overlap the first iteration (``max``); with ``prefill_chunk_tokens`` the prompt's
    other chunks follow it one iteration each, every chunk after the context before it.
    """
    cost = inst.cost
    new = prompt - cached
    chunk = inst.chunk_tokens
    if not chunk or new <= chunk:
        return max(load_s, cost.prefill_s([new], [cached]))
    t = max(load_s, cost.prefill_s([chunk], [cached]))
    done = chunk
    while done < new:
        n = min(chunk, new - done)
        t += cost.prefill_s([n], [cached + done])
        done += n
    return t


class TierLink:
    """One instance's view of a lower tier: its store and the links to read and write it."""

    __slots__ = ("name", "store", "policy", "read_ports", "write_ports", "cap_Bps", "latency_s")

    def __init__(self, name: str, store: BlockStore, policy: str, read_ports: tuple[Port, ...],
                 write_ports: tuple[Port, ...], cap_Bps: float, latency_s: float) -> None:
        self.name = name
        self.store = store
        self.policy = policy
        self.read_ports = read_ports
        self.write_ports = write_ports
        self.cap_Bps = cap_Bps
        self.latency_s = latency_s

    def estimate_s(self, nbytes: float) -> float:
        """Predicted load time of ``nbytes`` started now (fair share of the read ports)."""
        bw = self.cap_Bps
        for p in self.read_ports:
            share = p.bandwidth_Bps / (1 + len(p.flows))
            if share < bw:
                bw = share
        return self.latency_s + nbytes / bw


class CacheHierarchy:
    """Every KV cache of one cluster.

    Args:
        cluster: The cluster (its instances, transfer manager, links and cost models).
        cfg: The ``prefix_cache`` config.
    """

    def __init__(self, cluster: Cluster, cfg: PrefixCacheConfig) -> None:
        self.cl = cluster
        self.cfg = cfg
        self.block = cfg.block_tokens
        self.block_bytes = float(cfg.block_tokens * cluster.kv_bytes_per_token)
        self.hbm: list[PrefixCache] = []
        for inst in cluster.instances:
            cache = PrefixCache(inst.kv, self.block, self._evictor(inst.idx))
            inst.kv.cache = cache
            self.hbm.append(cache)
        remote = cfg.remote
        self.remote = BlockStore("remote", self._blocks_of(remote, "remote")) if remote.capacity_gb > 0 else None
        self.tiers: list[list[TierLink]] = [self._chain(inst) for inst in cluster.instances]
        self.write_through = any(t.policy == "write_through" for chain in self.tiers for t in chain)
        self.bytes_loaded = {name: 0.0 for name in TIER_NAMES[1:]}
        self.bytes_offloaded = {name: 0.0 for name in TIER_NAMES[1:]}
        self.transfer_bytes_saved = 0.0  # PD-transfer bytes the decode instance already held
        self._loads: dict[int, int] = {}  # instance -> loads in flight for its running prefill
        self._deferred: dict[int, float] = {}  # instance -> when its compute ended, waiting for loads
        self._where: dict[int, list[int]] = {}  # rid -> instances where it pins blocks
        self._writing: dict[tuple[int, int], float] = {}  # (instance, tier level) -> bytes queued behind its write

    # ================================================================ wiring
    def _blocks_of(self, tier: CacheTierConfig, name: str) -> int:
        # ConfigError, not ValueError: bad input (the model's block size is known only here), so
        # the CLI prints one line instead of a traceback
        blocks = tier.capacity_gb * 1e9 // self.block_bytes
        if not math.isfinite(blocks):
            raise ConfigError(
                f"key 'cluster.prefix_cache.{name}.capacity_gb': too large to count in {self.block}-token "
                f"blocks (got {tier.capacity_gb})"
            )
        n = int(blocks)
        if n < 1:
            raise ConfigError(
                f"key 'cluster.prefix_cache.{name}.capacity_gb': holds no {self.block}-token block of "
                f"{self.block_bytes / 1e6:.2f} MB (got {tier.capacity_gb})"
            )
        return n

    def _chain(self, inst: Instance) -> list[TierLink]:
        """The configured lower tiers of ``inst``, fastest first."""
        cl = self.cl
        cfg = self.cfg
        tm = cl.transfers
        gpu = cl._get_gpu(inst.gpu)
        out: list[TierLink] = []
        if cfg.host_dram.capacity_gb > 0:
            t = cfg.host_dram
            rp, cap, lat = cl.host_route(inst.idx, out=False)  # the swap path: PCIe to pinned host memory
            wp, _, _ = cl.host_route(inst.idx, out=True)
            cap = t.bandwidth_gbps * 1e9 if t.bandwidth_gbps is not None else cap
            lat = t.latency_s if t.latency_s is not None else lat
            out.append(TierLink("host_dram", BlockStore("host_dram", self._blocks_of(t, "host_dram")),
                                t.policy, rp, wp, cap, lat))
        if cfg.ssd.capacity_gb > 0:
            t = cfg.ssd
            spec = cl._get_link("ssd")  # one NVMe drive per instance (links.py: assumed 6 GB/s, 100 us)
            bw = (t.bandwidth_gbps if t.bandwidth_gbps is not None else spec.bandwidth_gbps) * 1e9
            lat = t.latency_s if t.latency_s is not None else spec.latency_s
            pcie_in, _, _ = cl.host_route(inst.idx, out=False)
            rp = (tm.port(("ssd_read", inst.idx), "ssd", bw),) + pcie_in  # NVMe, then PCIe into the GPU
            wp = (tm.port(("ssd_write", inst.idx), "ssd", bw),)
            out.append(TierLink("ssd", BlockStore("ssd", self._blocks_of(t, "ssd")), t.policy, rp, wp, bw, lat))
        if self.remote is not None:
            t = cfg.remote
            spec = cl._link_for_gpu("rdma", gpu)  # the instance's NICs (per GPU, x tp)
            bw = spec.bandwidth_gbps * 1e9 * inst.tp
            cap = t.bandwidth_gbps * 1e9 if t.bandwidth_gbps is not None else bw
            lat = t.latency_s if t.latency_s is not None else spec.latency_s
            rp = (tm.port(("in", inst.idx, "rdma"), "rdma", bw),)
            wp = (tm.port(("out", inst.idx, "rdma"), "rdma", bw),)
            out.append(TierLink("remote", self.remote, t.policy, rp, wp, cap, lat))
        return out

    def chunk_hashes(self, chunk: ArrivalChunk) -> list[tuple[int, ...]]:
        """Cache-block hashes of every request of an arrival chunk (hashed together: short
        prompts share numpy calls, ``workload.prefix.cache_block_hashes_many``).
        """
        assert chunk.hash_ids is not None and chunk.hash_block_tokens is not None
        return cache_block_hashes_many(chunk.hash_ids, chunk.hash_block_tokens, chunk.prompt_tokens, self.block)

    def hashes(self, req: Request) -> tuple[int, ...]:
        """The request's chained cache-block hashes (computed once)."""
        hs = req.block_hashes
        if hs is None:
            if req.hash_ids and req.hash_block_tokens:
                hs = cache_block_hashes(req.hash_ids, req.hash_block_tokens, req.prompt_tokens, self.block)
            else:
                hs = ()
            req.block_hashes = hs
        return hs

    # ================================================================ queries (routers, observations)
    def prefix_blocks(self, idx: int, req: Request) -> tuple[int, int, int, int, int]:
        """``(total, hbm, host_dram, ssd, remote)``: the request's full blocks, and how many
        leading ones instance ``idx`` finds in each tier (following the prefix from HBM down,
        the fastest tier holding each block).
        """
        hs = self.hashes(req)
        n = len(hs)
        if not n:
            return 0, 0, 0, 0, 0
        k = self.hbm[idx].match(hs)
        counts = [0, 0, 0, 0]
        counts[0] = k
        chain = self.tiers[idx]
        if chain:
            while k < n:
                h = hs[k]
                for t in chain:
                    if h in t.store.lru:
                        counts[_TIER_INDEX[t.name]] += 1
                        break
                else:
                    break
                k += 1
        return n, counts[0], counts[1], counts[2], counts[3]

    def load_estimate_s(self, idx: int, tier: str, blocks: int) -> float:
        """Predicted time to load ``blocks`` from ``tier`` into instance ``idx`` now."""
        if blocks <= 0:
            return 0.0
        for t in self.tiers[idx]:
            if t.name == tier:
                return t.estimate_s(blocks * self.block_bytes)
        raise ValueError(f"instance {idx} has no tier {tier!r}")

    def occupancy(self, idx: int) -> float:
        """Cached blocks of instance ``idx`` (referenced or not) x block / KV capacity, <= ~1."""
        c = self.hbm[idx]
        return c.blocks * self.block / c.pool.capacity if c.pool.capacity else 0.0

    # ================================================================ request life
    def start_prefill(self, inst: Instance, req: Request) -> int:
        """A new prefill run of ``req`` on ``inst`` is about to take its memory.

        Pins the HBM hit, starts the loads the plan chooses, records the request's hits.

        Returns:
            Tokens of the prompt that need no compute (HBM hits plus loaded blocks).
        """
        hs = self.hashes(req)
        first = req.first_token_s is None
        if not hs:
            if first:
                req.cached_tokens = 0
                req.cache_tier = ""
            return 0
        C = self.block
        P = req.prefill_tokens
        limit = (P - 1) // C  # at least one token is computed (it yields the first token)
        if limit > len(hs):
            limit = len(hs)  # a recompute's generated tokens have no hashes
        idx = inst.idx
        cache = self.hbm[idx]
        h = cache.match(hs, limit)
        chain = self.tiers[idx]
        segs: list[list[Any]] = []  # [tier, first block, end block]
        if chain:
            k = h
            while k < limit:
                x = hs[k]
                for t in chain:
                    if x in t.store.lru:
                        break
                else:
                    break
                if segs and segs[-1][0] is t:
                    segs[-1][2] = k + 1
                else:
                    segs.append([t, k, k + 1])
                k += 1
        use = h
        if segs:
            # Loads start with the compute and overlap it layer by layer (the prefill waits for
            # the last one: hold_prefill), so a plan takes max(load, compute) -- of the first
            # iteration only when the prompt is chunked, the later chunks following it; the
            # loads of the segments are summed (they share the instance's ports).
            best = _plan_s(inst, P, h * C, 0.0)
            load = 0.0
            for t, a, b in segs:
                load += t.estimate_s((b - a) * self.block_bytes)
                tt = _plan_s(inst, P, b * C, load)
                if tt < best:
                    best, use = tt, b
        cache.pin_prefix(req.rid, hs, use)
        self._note(req.rid, idx)
        served = [h * C, 0, 0, 0]
        deepest = "hbm" if h else ""
        if use > h:
            cl = self.cl
            now = cl.engine.now
            for t, a, b in segs:
                if a >= use:
                    break
                e = b if b < use else use
                part = hs[a:e]
                t.store.touch(part)
                nbytes = (e - a) * self.block_bytes
                self._loads[idx] = self._loads.get(idx, 0) + 1
                self.bytes_loaded[t.name] += nbytes
                served[_TIER_INDEX[t.name]] += (e - a) * C
                deepest = t.name
                cl.transfers.start(("load", idx, t.name, now, nbytes, req.rid), nbytes, t.read_ports,
                                   t.cap_Bps, t.latency_s, self._landed)
        if first:
            req.cached_tokens = use * C
            req.cache_tier = deepest
            req.cache_served = tuple(served)
        return use * C

    def hold_prefill(self, inst: Instance) -> bool:
        """``inst``'s prefill compute just ended: ``True`` if its loads are still in flight
        (the hierarchy then finishes the iteration when the last one lands).
        """
        if self._loads.get(inst.idx):
            self._deferred[inst.idx] = self.cl.engine.now
            return True
        return False

    def _landed(self, payload: tuple[Any, ...]) -> None:
        _, idx, tier, start, nbytes, rid = payload
        cl = self.cl
        now = cl.engine.now
        if cl.timeline is not None:
            cl.timeline.on_span(idx, "load", start, now, {"rids": [rid], "tokens": int(nbytes // cl.kv_bytes_per_token),
                                                          "tier": tier, "bytes": nbytes})
        left = self._loads[idx] - 1
        if left:
            self._loads[idx] = left
            return
        del self._loads[idx]
        t_end = self._deferred.pop(idx, None)
        if t_end is not None:
            inst = cl.instances[idx]
            stall = now - t_end
            for req, _, _ in inst.prefill_batch:
                if req.first_token_s is None:
                    req.ttft_load_s += stall
            cl._prefill_done(inst)

    def prefill_done(self, inst: Instance, req: Request) -> None:
        """``req``'s prompt is in ``inst``'s HBM: cache its full blocks there (pinned by it)."""
        hs = self.hashes(req)
        if hs:
            self._cache(inst.idx, req.rid, hs)

    def transfer_start(self, d: Instance, req: Request) -> int:
        """``req``'s KV is about to move to ``d`` (before ``d`` takes its memory): pins the
        blocks ``d`` already holds and returns their tokens (they are not sent).
        """
        hs = self.hashes(req)
        if not hs:
            return 0
        cache = self.hbm[d.idx]
        k = cache.match(hs)
        if k:
            cache.pin_prefix(req.rid, hs, k)
            self._note(req.rid, d.idx)
            self.transfer_bytes_saved += k * self.block_bytes
        return k * self.block

    def transfer_done(self, d: Instance, req: Request) -> None:
        """``req``'s KV landed on ``d``: its full prompt blocks are cached there."""
        hs = self.hashes(req)
        if hs:
            self._cache(d.idx, req.rid, hs)

    def _cache(self, idx: int, rid: int, hs: tuple[int, ...]) -> None:
        cache = self.hbm[idx]
        wt = self.write_through and self.cl.instances[idx].role is not Role.DECODE
        if wt:
            new = [h for h in hs if h not in cache]
        cache.pin_prefix(rid, hs, len(hs))
        self._note(rid, idx)
        if wt and new:
            for level, t in enumerate(self.tiers[idx]):
                if t.policy == "write_through":
                    self._store(idx, level, new)

    def _note(self, rid: int, idx: int) -> None:
        where = self._where.get(rid)
        if where is None:
            self._where[rid] = [idx]
        elif idx not in where:
            where.append(idx)

    def release(self, inst: Instance, req: Request) -> None:
        """``req`` gave back its memory on ``inst``: its blocks there become evictable."""
        where = self._where.get(req.rid)
        if where is None or inst.idx not in where:
            return
        where.remove(inst.idx)
        if not where:
            del self._where[req.rid]
        self.hbm[inst.idx].release(req.rid)

    def release_all(self, req: Request) -> None:
        """``req`` finished (completed or rejected): it lets go everywhere."""
        where = self._where.pop(req.rid, None)
        if where:
            for idx in where:
                self.hbm[idx].release(req.rid)

    # ================================================================ eviction and offload
    def _evictor(self, idx: int) -> Any:
        # a partial of a method, not a closure, so that a running simulation pickles
        return functools.partial(self._evicted, idx)

    def _evicted(self, idx: int, hashes: list[int]) -> None:
        """HBM of instance ``idx`` evicted ``hashes``: offload them if its next tier does."""
        # Only instances that prefill load from lower tiers, so only they offload (a
        # decode instance receives what it lacks from the prefill instance).
        if self.cl.instances[idx].role is Role.DECODE:
            return
        chain = self.tiers[idx]
        if chain and chain[0].policy == "offload":
            self._store(idx, 0, hashes)

    def _store(self, idx: int, level: int, hashes: list[int]) -> None:
        """Writes ``hashes`` into tier ``level`` of instance ``idx`` (a copy over its link);
        what that tier evicts goes on down if the next tier offloads.
        """
        chain = self.tiers[idx]
        t = chain[level]
        added, out = t.store.insert(hashes)
        if added:
            nbytes = len(added) * self.block_bytes
            self.bytes_offloaded[t.name] += nbytes
            key = (idx, level)
            if key in self._writing:
                # One write per tier link at a time: later evictions ride the next one.
                self._writing[key] += nbytes
            else:
                self._writing[key] = 0.0
                self._write(idx, level, nbytes)
        if out and level + 1 < len(chain) and chain[level + 1].policy == "offload":
            self._store(idx, level + 1, out)

    def _write(self, idx: int, level: int, nbytes: float) -> None:
        t = self.tiers[idx][level]
        cl = self.cl
        cl.transfers.start(("offload", idx, level, cl.engine.now, nbytes), nbytes, t.write_ports,
                           t.cap_Bps, t.latency_s, self._offloaded)

    def _offloaded(self, payload: tuple[Any, ...]) -> None:
        _, idx, level, start, nbytes = payload
        cl = self.cl
        if cl.timeline is not None:
            cl.timeline.on_span(idx, "offload", start, cl.engine.now, {
                "rids": [], "tokens": int(nbytes // cl.kv_bytes_per_token), "tier": self.tiers[idx][level].name,
                "bytes": nbytes})
        key = (idx, level)
        more = self._writing.pop(key)
        if more:
            self._writing[key] = 0.0
            self._write(idx, level, more)

    # ================================================================ summary
    def summary(self) -> dict[str, Any]:
        """Counters for the run summary (bytes loaded and offloaded per tier)."""
        return {
            "bytes_loaded": dict(self.bytes_loaded),
            "bytes_offloaded": dict(self.bytes_offloaded),
            "transfer_bytes_saved": self.transfer_bytes_saved,
        }
