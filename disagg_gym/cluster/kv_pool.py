"""``KVPool``: one instance's paged KV memory, in tokens, allocated in whole blocks.

The pool is the only owner of the ``used`` count. Everything that takes memory (a prefill's
prompt, a decode admission, a decode batch growing by a block, a swap-in) calls ``take``;
everything that gives it back calls ``give``. A prefix cache, if attached, keeps its
unreferenced blocks in the free part and evicts them on ``take``. Both assert the pool never goes below zero or
above its capacity, so a bookkeeping error fails at its source instead of later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disagg_gym.cluster.prefix_cache import PrefixCache


class KVPool:
    """Paged KV memory of one instance.

    Args:
        capacity_tokens: Memory for KV, in tokens (rounded down to whole blocks).
        block_tokens: Tokens per block (vLLM's ``block_size``).
    """

    __slots__ = ("block", "cache", "capacity", "used")

    def __init__(self, capacity_tokens: int, block_tokens: int) -> None:
        self.block = block_tokens
        self.capacity = capacity_tokens // block_tokens * block_tokens
        self.used = 0
        # The instance's HBM prefix cache (``prefix_cache.PrefixCache``), set when the first
        # request with block hashes arrives; its unreferenced blocks live in free memory.
        self.cache: PrefixCache | None = None

    def blocks(self, tokens: int) -> int:
        """``tokens`` rounded up to whole blocks (in tokens)."""
        b = self.block
        return -(-tokens // b) * b

    @property
    def free(self) -> int:
        """Tokens not held by anything."""
        return self.capacity - self.used

    def fits(self, tokens: int) -> bool:
        """Whether ``tokens`` (already block-rounded) can be taken now."""
        return tokens <= self.capacity - self.used

    def take(self, tokens: int) -> None:
        """Allocates ``tokens`` (a multiple of the block size)."""
        used = self.used + tokens
        assert 0 <= used <= self.capacity, f"KV pool over capacity: {used} > {self.capacity}"
        self.used = used
        if self.cache is not None:
            self.cache.trim()  # cached blocks give way to memory in use

    def give(self, tokens: int) -> None:
        """Frees ``tokens`` (a multiple of the block size)."""
        used = self.used - tokens
        assert used >= 0, f"KV pool freed more than it held ({used})"
        self.used = used

    def __repr__(self) -> str:
        return f"KVPool(used={self.used}, capacity={self.capacity}, block={self.block})"
