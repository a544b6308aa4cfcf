"""Block stores of the KV-cache hierarchy: one instance's HBM prefix cache and a lower tier.

``PrefixCache`` (HBM, one per instance) keeps cache blocks in the KV memory that running
requests do not hold, like vLLM's automatic prefix caching:

* a block held by a request (``pin``) has a reference count >= 1 and is part of that request's
  memory (its ``KVPool.take``); it is never evicted;
* when its last holder lets go (``release``), it joins the LRU list of evictable blocks, which
  lives in free memory: ``evictable tokens <= KVPool.free`` always holds, because every
  ``KVPool.take`` calls :meth:`PrefixCache.trim`, which evicts least-recently-used blocks
  until the list fits again. A request's blocks are released tail first, so a prefix's head
  outlives its tail (vLLM frees blocks in reverse order for the same reason).

Memory of a block pinned by several running requests is charged to each holder (the cluster
takes memory per request); physical sharing of in-use blocks is not modelled.

``BlockStore`` is a lower tier (host DRAM, local SSD, the cluster-wide shared pool): a plain
LRU set of block hashes with a capacity in blocks; its blocks are never "in use" (a load
copies them up into HBM).

Each class is the only writer of its own fields; the hierarchy (``kv_cache.CacheHierarchy``)
drives them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import filterfalse, islice
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disagg_gym.cluster.kv_pool import KVPool

# The eviction lists are plain dicts, not OrderedDicts (issue #14: per-block cost): insertion
# order is the LRU order, and runs of evictions and lower-tier inserts are moved by C-level
# dict operations where they help (``islice`` of the oldest keys, ``dict.update``) instead of
# one ``popitem`` / ``move_to_end`` per block. CPython compacts
# the entries deleted at the front whenever the table grows, so finding the oldest stays cheap.
# Pins and releases stay block-by-block loops: a request's run is short (tens of blocks) and
# shares blocks with other holders, where C-level set algebra measured no faster.


def _drop(d: dict[int, None], keys: Iterable[int]) -> None:
    """Deletes every key of ``keys`` from ``d`` (all present)."""
    for h in keys:
        del d[h]


def _pop_oldest(d: dict[int, None], n: int) -> list[int]:
    """Removes and returns the ``n`` oldest keys of ``d`` (``0 < n``), oldest first."""
    if n >= len(d):
        out = list(d)
        d.clear()
        return out
    out = list(islice(d, n))
    _drop(d, out)
    return out


class PrefixCache:
    """HBM prefix cache of one instance.

    Args:
        pool: The instance's KV pool (the cache lives in its free memory).
        block_tokens: Tokens per cache block.
        on_evict: Called with the hashes evicted by one :meth:`trim` (oldest first), e.g. to
            offload them to a lower tier.
    """

    __slots__ = ("block", "pool", "refs", "lru", "holders", "on_evict", "evicted", "inserted")

    def __init__(self, pool: KVPool, block_tokens: int, on_evict: Callable[[list[int]], None] | None = None) -> None:
        self.block = block_tokens
        self.pool = pool
        self.refs: dict[int, int] = {}  # referenced blocks -> holders (>= 1)
        self.lru: dict[int, None] = {}  # unreferenced blocks, oldest first
        # rid -> the blocks it pins here: a dict of them (pin) or a prefix of its chain (pin_prefix)
        self.holders: dict[int, dict[int, None] | tuple[int, ...]] = {}
        self.on_evict = on_evict
        self.evicted = 0  # blocks evicted so far
        self.inserted = 0  # blocks first cached here so far

    # ---------------------------------------------------------------- views
    def __contains__(self, h: int) -> bool:
        return h in self.refs or h in self.lru

    @property
    def evictable_tokens(self) -> int:
        """Tokens of unreferenced cached blocks (they occupy free KV memory)."""
        return len(self.lru) * self.block

    @property
    def blocks(self) -> int:
        """Blocks cached (referenced or not)."""
        return len(self.refs) + len(self.lru)

    def match(self, hashes: Sequence[int], limit: int | None = None) -> int:
        """Number of leading blocks of ``hashes`` (at most ``limit``) cached here."""
        refs, lru = self.refs, self.lru
        n = len(hashes) if limit is None or limit > len(hashes) else limit
        k = 0
        while k < n:
            h = hashes[k]
            if h not in refs and h not in lru:
                break
            k += 1
        return k

    # ---------------------------------------------------------------- writes
    def pin(self, rid: int, hashes: Sequence[int]) -> int:
        """Makes request ``rid`` a holder of each block of ``hashes`` (caching new ones).

        The caller has taken (or takes at once) the memory of these blocks for ``rid``.
        Blocks ``rid`` already holds are skipped.

        Returns:
            The number of blocks that were not cached here before (newly inserted).
        """
        held = self.holders.get(rid)
        if held is None:
            todo = self.holders[rid] = dict.fromkeys(hashes)
        else:
            assert type(held) is dict, "pin: rid holds blocks here through pin_prefix"
            todo = dict.fromkeys(filterfalse(held.__contains__, hashes))
            if not todo:
                return 0
            held.update(todo)
        return self._reference(todo)

    def pin_prefix(self, rid: int, hashes: tuple[int, ...], n: int) -> int:
        """Makes request ``rid`` a holder of the first ``n`` blocks of ``hashes``, its own chain
        of block hashes: what it holds here is always a prefix of that chain, so only the
        blocks past that prefix are new to it (the cluster's calls: a hit when a prefill or a
        transfer starts, the whole prompt once it is in HBM). Cheaper than :meth:`pin` (no set
        of held blocks to build or search); a holder uses one of the two methods, not both.

        Returns:
            The number of blocks that were not cached here before (newly inserted).
        """
        holders = self.holders
        held = holders.get(rid)
        if held is None:
            run = hashes if n >= len(hashes) else hashes[:n]
            holders[rid] = run
        else:
            k = len(held)
            if n <= k:
                return 0
            assert type(held) is tuple and held == hashes[:k], "pin_prefix: not an extension of what rid holds"
            run = hashes[k:n]
            holders[rid] = held + run
        return self._reference(run)

    def _reference(self, run: Iterable[int]) -> int:
        """One more reference to each block of ``run`` (off the eviction list, or cached now);
        returns how many were not cached here before.
        """
        refs, lru = self.refs, self.lru
        get = refs.get
        new = 0
        for h in run:
            c = get(h)
            if c is not None:
                refs[h] = c + 1
            else:
                if lru.pop(h, 0) is not None:
                    new += 1  # not cached here before (cached blocks map to None)
                refs[h] = 1
        self.inserted += new
        return new

    def release(self, rid: int) -> None:
        """Request ``rid`` lets go of its blocks here; unreferenced ones become evictable."""
        held = self.holders.pop(rid, None)
        if not held:
            return
        refs, lru = self.refs, self.lru
        for h in reversed(held):  # tail first: the head of the prefix is evicted last
            c = refs[h]
            if c > 1:
                refs[h] = c - 1
            else:
                del refs[h]
                lru[h] = None
        self.trim()

    def trim(self) -> None:
        """Evicts least-recently-used unreferenced blocks until they fit in free memory."""
        lru = self.lru
        pool = self.pool
        over = len(lru) - (pool.capacity - pool.used) // self.block
        if over <= 0:
            return
        out = _pop_oldest(lru, over)
        self.evicted += over
        if self.on_evict is not None:
            self.on_evict(out)


class BlockStore:
    """A lower tier: an LRU set of block hashes with a fixed capacity.

    Args:
        name: Tier name (``host_dram``, ``ssd`` or ``remote``).
        capacity_blocks: Blocks it holds at most (>= 1).
    """

    __slots__ = ("name", "capacity", "lru", "evicted", "inserted")

    def __init__(self, name: str, capacity_blocks: int) -> None:
        if capacity_blocks < 1:
            raise ValueError(f"tier {name!r}: capacity must hold at least one block (got {capacity_blocks})")
        self.name = name
        self.capacity = capacity_blocks
        self.lru: dict[int, None] = {}  # oldest first
        self.evicted = 0
        self.inserted = 0

    def __contains__(self, h: int) -> bool:
        return h in self.lru

    def __len__(self) -> int:
        return len(self.lru)

    def touch(self, hashes: Sequence[int]) -> None:
        """Marks cached ``hashes`` as just used."""
        lru = self.lru
        for h in hashes:
            if lru.pop(h, 0) is None:  # it was here (values are None): to the young end
                lru[h] = None

    def insert(self, hashes: Sequence[int]) -> tuple[list[int], list[int]]:
        """Stores ``hashes`` (refreshing ones already here).

        Returns:
            ``(added, evicted)``: the hashes newly stored and those evicted to make room
            (oldest first).
        """
        lru = self.lru
        run = dict.fromkeys(hashes)
        if len(run) != len(hashes):  # a repeated hash: refresh in call order, block by block
            added = []
            for h in hashes:
                if lru.pop(h, 0) is not None:
                    added.append(h)
                lru[h] = None
        else:
            # Same as refreshing / appending one by one: the run ends up at the young end in
            # the order given.
            present = lru.keys() & run.keys() if lru else ()
            if present:
                _drop(lru, present)
                added = list(filterfalse(present.__contains__, hashes))
            else:
                added = list(hashes)
            lru.update(run)
        self.inserted += len(added)
        over = len(lru) - self.capacity
        if over <= 0:
            return added, []
        self.evicted += over
        return added, _pop_oldest(lru, over)
