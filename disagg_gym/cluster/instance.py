"""One serving instance: identity, role and state, and the components that own its work.

* ``kv`` (:class:`KVPool`) owns the KV memory count;
* ``pq`` (:class:`PrefillQueue`) owns the queued prompts and their token sum;
* ``batch`` (:class:`DecodeBatch`) owns the running decode sequences (closed form).

The cluster drives them; nothing else writes their fields. The read-only properties below
(``kv_used``, ``B``, ``pq_tokens``, ...) are what routers, observations and plots read.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from disagg_gym.cluster.decode_batch import DecodeBatch, Member
from disagg_gym.cluster.kv_pool import KVPool
from disagg_gym.cluster.state import InstanceState, check_transition
from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.hardware.cost import InstanceCost
    from disagg_gym.sim.engine import Event
    from disagg_gym.workload.request import Request


class PrefillQueue(deque):  # type: ignore[type-arg]
    """FIFO of requests waiting for (or part-way through, when chunking) their prefill.

    ``tokens`` is the number of prompt tokens still to compute over the queue. A ``deque``
    subclass so that ``len``, truth, indexing and iteration (the scheduler's hot loop) are C
    calls; only the methods below change it (they keep ``tokens`` in step), never the
    inherited mutators.
    """

    __slots__ = ("tokens",)

    def __init__(self) -> None:
        super().__init__()
        self.tokens = 0

    def push(self, req: Request) -> None:
        """Appends ``req`` (a new or re-routed request)."""
        self.append(req)
        self.tokens += req.prefill_tokens - req.prefilled

    def push_front(self, req: Request) -> None:
        """Puts ``req`` at the head (a preempted request recomputes first)."""
        self.appendleft(req)
        self.tokens += req.prefill_tokens - req.prefilled

    def push_front_after_running(self, req: Request) -> None:
        """Puts ``req`` first among the prompts not yet started (a preempted request recomputes
        before new work, but never ahead of a prompt part-way through chunked prefill, which
        holds its memory: overtaking it could starve it).
        """
        i = 0
        while i < len(self) and self[i].prefilled > 0:
            i += 1
        self.insert(i, req)
        self.tokens += req.prefill_tokens - req.prefilled

    def pop(self) -> Request:  # type: ignore[override]
        """Removes the head."""
        req: Request = self.popleft()
        self.tokens -= req.prefill_tokens - req.prefilled
        return req

    def remove(self, req: Request) -> None:
        """Removes ``req`` wherever it is (finished, or rejected, possibly behind the head)."""
        if self and self[0] is req:
            self.popleft()
        else:
            deque.remove(self, req)
        self.tokens -= req.prefill_tokens - req.prefilled

    def progress(self, tokens: int) -> None:
        """Records ``tokens`` of the head's prompt computed (chunked prefill)."""
        self.tokens -= tokens

    def take_all(self) -> list[Request]:
        """Empties the queue (drain: the work goes back to the router)."""
        out = list(self)
        self.clear()
        self.tokens = 0
        return out


class Instance:
    """One model replica on ``tp`` GPUs of one type."""

    __slots__ = (
        "idx", "group", "gpu", "tp", "role", "site", "node", "cost", "max_batch", "token_budget",
        "chunk_tokens", "price_per_s", "on_demand", "state", "target_role", "switch_ev", "drain_start_s",
        "kv", "pq", "batch", "prefill_busy", "prefill_batch", "prefill_start_s", "prefill_end_s",
        "want_prefill", "paused", "dq", "incoming", "owed", "swapped", "swapping", "swap_out_tokens", "sending",
        "decode_tokens", "prefill_tokens", "served", "_coeffs", "_table",
        "_s_per_token",
    )

    def __init__(
        self, idx: int, group: int, gpu: str, tp: int, role: Role, site: str, node: int,
        cost: InstanceCost, kv_cap_tokens: int, block_tokens: int, max_batch: int,
        token_budget: int, chunk_tokens: int, price_per_s: float, on_demand: bool,
    ) -> None:
        self.idx = idx
        self.group = group
        self.gpu = gpu
        self.tp = tp
        self.role = role
        self.site = site
        self.node = node
        self.cost = cost
        self.max_batch = max_batch
        self.token_budget = token_budget
        self.chunk_tokens = chunk_tokens  # 0: whole prompts; else per-iteration token budget
        self.price_per_s = price_per_s
        self.on_demand = on_demand  # billed only for busy time
        self.state = InstanceState.ACTIVE
        self.target_role: Role | None = None
        self.switch_ev: Event | None = None
        self.drain_start_s = 0.0
        self._coeffs: dict[int, tuple[float, float]] = {}
        self._s_per_token = 0.0  # s_per_prefill_token's cache (0: not computed yet)
        self._table = bool(getattr(cost, "context_dependent", False))
        self.kv = KVPool(kv_cap_tokens, block_tokens)
        self.pq = PrefillQueue()
        self.batch = DecodeBatch(self.kv, self.coeffs, cost.decode_segment_end if self._table else None)
        self.prefill_busy = False
        self.prefill_batch: list[tuple[Request, int, int]] = []  # (req, chunk tokens, cached before)
        self.prefill_start_s = 0.0
        self.prefill_end_s = 0.0
        self.want_prefill = False  # colocated: a prefill waits for the decode iteration boundary
        self.paused = False  # colocated: decode paused while a prefill batch runs
        self.dq: deque[Request] = deque()  # prefilled, waiting for decode admission here
        self.incoming = 0  # transfers (or swap-ins) in flight towards this instance's batch
        self.owed = 0  # requests routed here for decode and not yet admitted
        self.swapped: deque[Request] = deque()  # preempted to host memory, waiting to swap in
        self.swapping = 0  # swap-outs in flight
        self.swap_out_tokens = 0  # KV they hold until their copies land
        self.sending = 0  # KV transfers in flight from this instance
        self.decode_tokens = 0
        self.prefill_tokens = 0
        self.served = 0

    # ----------------------------------------------------------------- state
    def set_state(self, new: InstanceState) -> None:
        """Moves to ``new``, asserting the transition is legal."""
        check_transition(self.state, new)
        self.state = new

    @property
    def accepting(self) -> bool:
        """Whether new requests may be routed here."""
        return self.state is InstanceState.ACTIVE

    @property
    def serves_prefill(self) -> bool:
        """Prefill or colocated role."""
        return self.role is not Role.DECODE

    @property
    def serves_decode(self) -> bool:
        """Decode or colocated role."""
        return self.role is not Role.PREFILL

    # ----------------------------------------------------------------- read-only views
    @property
    def kv_used(self) -> int:
        """KV tokens held (whole blocks)."""
        return self.kv.used

    @property
    def kv_cap(self) -> int:
        """KV capacity in tokens."""
        return self.kv.capacity

    @property
    def pq_tokens(self) -> int:
        """Prompt tokens still to compute in the prefill queue."""
        return self.pq.tokens

    @property
    def B(self) -> int:  # noqa: N802
        """Sequences in the decode batch."""
        return self.batch.B

    @property
    def S(self) -> int:  # noqa: N802
        """Total context tokens of the decode batch (as of its epoch)."""
        return self.batch.S

    @property
    def members(self) -> list[Member]:
        """Decode batch members ``(done_counter, rid, request, offset)`` (a heap)."""
        return self.batch.members

    @property
    def joiners(self) -> list[Request]:
        """Requests joining the batch at its next iteration boundary."""
        return self.batch.joiners

    @property
    def counter(self) -> int:
        """The decode batch's iteration counter."""
        return self.batch.counter

    @property
    def decode_load(self) -> int:
        """Sequences running, joining, arriving, swapped out or waiting for admission."""
        b = self.batch
        return b.B + len(b.joiners) + self.incoming + len(self.dq) + len(self.swapped) + self.swapping

    def is_idle(self) -> bool:
        """No work and no memory held: safe to change role."""
        b = self.batch
        return (
            not self.pq and not self.prefill_busy and b.B == 0 and not b.joiners and not self.dq
            and self.incoming == 0 and self.kv.used == 0 and self.owed == 0 and not self.swapped
            and self.swapping == 0 and self.sending == 0
        )

    def coeffs(self, batch: int, context_tokens: int = 0) -> tuple[float, float]:
        """Decode iteration coefficients ``(a, b)`` for ``batch`` sequences (cached)."""
        if self._table:
            return self.cost.decode_coeffs(batch, context_tokens)  # the local segment around S
        c = self._coeffs.get(batch)
        if c is None:
            c = self.cost.decode_coeffs(batch)
            self._coeffs[batch] = c
        return c

    def s_per_prefill_token(self) -> float:
        """Prefill seconds per token of a full token-budget batch (at most 4,096 tokens) of
        new prompt tokens, from the cost model (cached): how routers and observations price
        queued prompt tokens.
        """
        c = self._s_per_token
        if not c:
            n = max(1, min(self.token_budget, 4096))
            c = self._s_per_token = self.cost.prefill_s([n]) / n
        return c

    def __repr__(self) -> str:
        return f"Instance({self.idx}, {self.gpu}x{self.tp}, {self.role.value}, {self.state.value})"
