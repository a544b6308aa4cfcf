"""Prefix-cache eviction order against a naive list-based LRU oracle (issue #14).

The caches move whole runs of blocks with dict operations; the oracle does everything one block
at a time on plain lists, as the docstrings of ``PrefixCache`` and ``BlockStore`` describe it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from disagg_gym.cluster.kv_pool import KVPool
from disagg_gym.cluster.prefix_cache import BlockStore, PrefixCache

BLOCK = 16


class OracleStore:
    """LRU set of hashes on a list, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.order: list[int] = []

    def touch(self, hashes: list[int]) -> None:
        for h in hashes:
            if h in self.order:
                self.order.remove(h)
                self.order.append(h)

    def insert(self, hashes: list[int]) -> tuple[list[int], list[int]]:
        added = []
        for h in hashes:
            if h in self.order:
                self.order.remove(h)
            else:
                added.append(h)
            self.order.append(h)
        out = []
        while len(self.order) > self.capacity:
            out.append(self.order.pop(0))
        return added, out


class OracleCache:
    """Reference counts and an eviction list, block by block."""

    def __init__(self, pool: KVPool) -> None:
        self.pool = pool
        self.refs: dict[int, int] = {}
        self.lru: list[int] = []
        self.held: dict[int, list[int]] = {}
        self.evicted: list[list[int]] = []

    def pin(self, rid: int, hashes: list[int]) -> int:
        mine = self.held.setdefault(rid, [])
        new = 0
        for h in hashes:
            if h in mine:
                continue
            mine.append(h)
            if h in self.refs:
                self.refs[h] += 1
            else:
                if h in self.lru:
                    self.lru.remove(h)
                else:
                    new += 1
                self.refs[h] = 1
        return new

    def release(self, rid: int) -> None:
        mine = self.held.pop(rid, [])
        if not mine:
            return
        for h in reversed(mine):  # tail first
            self.refs[h] -= 1
            if self.refs[h] == 0:
                del self.refs[h]
                self.lru.append(h)
        self.trim()

    def trim(self) -> None:
        fit = (self.pool.capacity - self.pool.used) // BLOCK
        if len(self.lru) > fit:
            over = len(self.lru) - fit
            self.evicted.append(self.lru[:over])
            del self.lru[:over]


hashes = st.lists(st.integers(0, 15), max_size=7)


@settings(max_examples=300, deadline=None)
@given(cap=st.integers(1, 6), ops=st.lists(st.tuples(st.sampled_from(["insert", "touch"]), hashes), max_size=40))
def test_block_store_matches_the_list_oracle(cap: int, ops: list[tuple[str, list[int]]]) -> None:
    store, oracle = BlockStore("host_dram", cap), OracleStore(cap)
    for op, hs in ops:
        if op == "insert":
            assert store.insert(hs) == oracle.insert(hs)
        else:
            store.touch(hs)
            oracle.touch(hs)
        assert list(store.lru) == oracle.order
    assert len(store) <= cap


def drive(ops: list[tuple[str, int, Any]], pin: Callable[[PrefixCache, OracleCache, int, Any], None],
          size: Callable[[Any], int]) -> None:
    """Applies random pins, releases, takes and gives to a ``PrefixCache`` and the oracle alike,
    checking after each step that eviction list, reference counts and evictions agree
    (``pin`` pins on both and compares; ``size(arg)`` is a take's block count).
    """
    pool, opool = KVPool(10 * BLOCK, BLOCK), KVPool(10 * BLOCK, BLOCK)
    got: list[list[int]] = []
    cache = PrefixCache(pool, BLOCK, got.append)
    pool.cache = cache
    oracle = OracleCache(opool)
    extra = 0
    for op, rid, arg in ops:
        if op == "pin":
            pin(cache, oracle, rid, arg)
        elif op == "release":
            cache.release(rid)
            oracle.release(rid)
        elif op == "take" and pool.fits(BLOCK * size(arg)):
            pool.take(BLOCK * size(arg))  # trims the cache
            opool.used += BLOCK * size(arg)
            oracle.trim()
            extra += BLOCK * size(arg)
        elif op == "give" and extra:
            pool.give(extra)
            opool.used -= extra
            extra = 0
        assert list(cache.lru) == oracle.lru
        assert cache.refs == oracle.refs
        assert got == oracle.evicted


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["pin", "release", "take", "give"]), st.integers(0, 4), hashes),
                    max_size=60))
def test_prefix_cache_evicts_in_the_oracle_order(ops: list[tuple[str, int, list[int]]]) -> None:
    def pin(cache: PrefixCache, oracle: OracleCache, rid: int, hs: list[int]) -> None:
        assert cache.pin(rid, hs) == oracle.pin(rid, hs)

    drive(ops, pin, len)


# Request chains as the cluster makes them: distinct hashes, sharing prefixes with each other.
CHAINS = ((0, 1, 2, 3, 4, 5), (0, 1, 2, 6, 7), (0, 1, 8), (9, 10, 11, 12), (9, 13))


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["pin", "release", "take", "give"]), st.integers(0, 4),
                              st.integers(0, 7)), max_size=60))
def test_pin_prefix_matches_the_oracle_pinning_the_same_prefix(ops: list[tuple[str, int, int]]) -> None:
    """``pin_prefix(rid, chain, n)`` (a holder's blocks kept as its chain's prefix) behaves as
    the oracle pinning ``chain[:n]`` block by block: same new-block counts, reference counts,
    eviction list and evictions.
    """
    def pin(cache: PrefixCache, oracle: OracleCache, rid: int, n: int) -> None:
        chain = CHAINS[rid]
        assert cache.pin_prefix(rid, chain, n) == oracle.pin(rid, list(chain[:n]))

    drive(ops, pin, int)
