"""``DecodeBatch``: one instance's running decode sequences, simulated in closed form.

Decode is simulated by batch-composition changes, not by iterations: while a batch of ``B``
sequences with total context ``S`` is unchanged, iteration ``k`` (from the last change,
``k = 0, 1, ...``) takes ``a + b * (S + k * B)`` seconds, so ``n`` iterations take
``T(n) = n * a + b * (n * S + B * n * (n - 1) / 2)``. The batch keeps an iteration counter;
each member finishes when the counter reaches its ``done`` value. A measured-table cost is
piecewise linear in ``S``: ``(a, b)`` is then the segment around ``S``, and the batch also stops
where ``S + k * B`` reaches the segment's end (:meth:`DecodeBatch.iterations_in_segment`) to
re-read it.

KV memory grows block by block (paged attention): a member holding ``c`` tokens at counter
``K`` holds ``off + K`` tokens at counter ``K' > K`` (``off = c - K``) and needs a new block at
each counter ``k`` with ``off + k = 1 (mod block)``. Members are counted by that residue, so the
number of new blocks the batch needs over the next ``n`` iterations is, with
``n = q * block + r`` and ``o_i`` the iterations until member ``i``'s next new block
(``1 <= o_i <= block``), ``B * q + #{i : o_i <= r}`` -- exact, ``O(block)`` to evaluate and
invert. The batch takes those blocks from the instance's ``KVPool`` when it advances.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disagg_gym.cluster.kv_pool import KVPool
    from disagg_gym.sim.engine import Event
    from disagg_gym.workload.request import Request

# A member: (done_counter, rid, request, token offset: tokens held = offset + counter).
Member = tuple[int, int, "Request", int]


class DecodeBatch:
    """Running decode sequences of one instance.

    Args:
        pool: The instance's KV pool (grown as sequences cross block boundaries).
        coeffs: ``(batch, context_tokens) -> (a, b)`` iteration-time coefficients.
    """

    __slots__ = (
        "pool", "coeffs", "members", "B", "S", "counter", "epoch_s", "a", "b", "next_ev",
        "next_n", "held", "_res", "joiners", "blk", "segment_end", "s_end",
    )

    def __init__(
        self, pool: KVPool, coeffs: Callable[[int, int], tuple[float, float]],
        segment_end: Callable[[int, int], float] | None = None,
    ) -> None:
        self.pool = pool
        self.coeffs = coeffs
        # Piecewise-linear (measured-table) costs: where the segment of (a, b) ends in total
        # context; the batch must stop there and re-read them. None: (a, b) hold for every S.
        self.segment_end = segment_end
        self.s_end = math.inf
        self.members: list[Member] = []  # heap by done counter
        self.B = 0
        self.S = 0
        self.counter = 0
        self.epoch_s = 0.0
        self.a = 0.0
        self.b = 0.0
        self.next_ev: Event | None = None
        self.next_n = 0
        self.held = 0  # KV tokens (whole blocks) held by members, part of pool.used
        self.blk = pool.block  # tokens per KV block (the pool's, fixed)
        self._res = [0] * pool.block  # members by block-crossing residue
        self.joiners: list[Request] = []  # admitted, join at the next iteration boundary

    # ------------------------------------------------------------------ closed form
    def decode_time(self, n: int) -> float:
        """Seconds for ``n`` iterations of the current batch from the epoch."""
        return n * self.a + self.b * (n * self.S + self.B * n * (n - 1) * 0.5)

    def iterations_done(self, elapsed_s: float) -> int:
        """Complete iterations of the current batch within ``elapsed_s`` since the epoch."""
        B = self.B
        if B == 0 or elapsed_s <= 0:
            return 0
        a, b, S = self.a, self.b, self.S
        c2 = 0.5 * b * B
        c1 = a + b * S - c2
        if c2 <= 0:
            k = int(elapsed_s / c1) if c1 > 0 else 0
        else:
            k = int((-c1 + math.sqrt(c1 * c1 + 4.0 * c2 * elapsed_s)) / (2.0 * c2))
        # decode_time(n), inlined (same expression, same rounding)
        hi = elapsed_s + 1e-12
        while k > 0 and k * a + b * (k * S + B * k * (k - 1) * 0.5) > hi:
            k -= 1
        lo = elapsed_s - 1e-12
        n = k + 1
        while n * a + b * (n * S + B * n * (n - 1) * 0.5) <= lo:
            k = n
            n += 1
        return k

    def refresh_coeffs(self) -> None:
        """Recomputes ``(a, b)`` after a composition change (or at the end of a segment)."""
        if self.B:
            self.a, self.b = self.coeffs(self.B, self.S)
            if self.segment_end is not None:
                self.s_end = self.segment_end(self.B, self.S)

    def iterations_in_segment(self) -> int:
        """Iterations from the epoch whose context ``S + k * B`` stays below :attr:`s_end`
        (``k = 0, 1, ...``): past them ``(a, b)`` no longer hold. Huge when they always do.
        """
        if self.s_end == math.inf or self.B == 0:
            return 1 << 62
        return max(1, math.ceil((self.s_end - self.S) / self.B))

    # ------------------------------------------------------------------ memory growth
    def new_blocks(self, n: int) -> int:
        """Blocks the members need over the next ``n`` iterations (closed form above)."""
        if n <= 0 or self.B == 0:
            return 0
        blk = self.blk
        if n < blk:  # the common case (q = 0): no division
            j = (self.counter + 1) % blk
            res = self._res
            if n == 1:
                return res[j]
            if j + n <= blk:
                return sum(res[j:j + n])
            return sum(res[j:]) + sum(res[:j + n - blk])
        q, r = divmod(n, blk)
        out = self.B * q
        if r:  # res[(k + o) % blk] for o = 1..r, as at most two slices
            res = self._res
            j = (self.counter + 1) % blk
            if j + r <= blk:
                out += sum(res[j:j + r])
            else:
                out += sum(res[j:]) + sum(res[:j + r - blk])
        return out

    def iterations_until_short(self, free_tokens: int, enough: int = 0) -> int:
        """The first iteration (from now) that needs a block beyond ``free_tokens``.

        With ``enough > 0`` (for callers that only compare the answer with ``enough``): when
        the free blocks alone show the answer is above ``enough``, a lower bound that is itself
        above ``enough`` is returned without scanning the residues.
        """
        if self.B == 0:
            return 1 << 62
        blk = self.blk
        q, m = divmod(free_tokens // blk, self.B)
        if enough > 0 and q * blk >= enough:
            return q * blk + 1  # every member has a block of room for q * blk iterations
        res = self._res
        j = (self.counter + 1) % blk  # residue of iteration o = 1
        seen = 0
        o = 0
        for c in res[j:]:
            o += 1
            seen += c
            if seen > m:
                return q * blk + o
        for c in res[:j]:
            o += 1
            seen += c
            if seen > m:
                return q * blk + o
        raise AssertionError("residue counts do not add up to the batch size")

    # ------------------------------------------------------------------ composition
    def tokens_of(self, m: Member) -> int:
        """Tokens member ``m`` holds now."""
        return m[3] + self.counter

    def add(self, req: Request) -> None:
        """Adds ``req`` (its KV already taken from the pool for its current tokens)."""
        tokens = req.prompt_tokens + req.generated
        off = tokens - self.counter
        heapq.heappush(self.members, (self.counter + req.output_tokens - req.generated, req.rid, req, off))
        self.B += 1
        self.S += tokens
        blk = self.blk
        self._res[(1 - off) % blk] += 1
        self.held += -(-tokens // blk) * blk  # pool.blocks(tokens)

    def pop_done(self) -> list[Request]:
        """Removes members whose last token was produced; frees their blocks."""
        members = self.members
        counter = self.counter
        if not members or members[0][0] > counter:
            return []
        out = []
        blk = self.blk
        res = self._res
        freed = 0
        while members and members[0][0] <= counter:
            m = heapq.heappop(members)
            # _drop(m), inlined: the members leave together, their blocks go back at once
            tokens = m[3] + counter
            self.B -= 1
            self.S -= tokens
            res[(1 - m[3]) % blk] -= 1
            freed += -(-tokens // blk) * blk  # pool.blocks(tokens)
            out.append(m[2])
        self.held -= freed
        self.pool.give(freed)
        return out

    def remove(self, victims: list[Member]) -> None:
        """Removes running members (preemption); frees their blocks; sets ``generated``."""
        gone = {id(m[2]) for m in victims}
        self.members = [m for m in self.members if id(m[2]) not in gone]
        heapq.heapify(self.members)
        for m in victims:
            req = m[2]
            req.generated = req.output_tokens - (m[0] - self.counter)
            self._drop(m)

    def _drop(self, m: Member) -> None:
        tokens = m[3] + self.counter
        self.B -= 1
        self.S -= tokens
        pool = self.pool
        blk = pool.block
        self._res[(1 - m[3]) % blk] -= 1
        blocks = -(-tokens // blk) * blk  # pool.blocks(tokens)
        self.held -= blocks
        pool.give(blocks)

    def advance(self, n: int) -> float:
        """Books ``n`` iterations of the current batch; returns their busy seconds.

        Takes the new blocks from the pool (the caller never advances past the iteration
        where memory runs short).
        """
        busy = n * self.a + self.b * (n * self.S + self.B * n * (n - 1) * 0.5)  # decode_time(n)
        grow = self.new_blocks(n) * self.blk
        if grow:
            self.pool.take(grow)
            self.held += grow
        self.counter += n
        self.S += self.B * n
        self.epoch_s += busy
        return busy
