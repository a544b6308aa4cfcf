"""One serving instance: its queues, KV memory, prefill batch and closed-form decode batch.

Decode is simulated by batch-composition changes, not by iterations (issue #6): while a
decode batch of ``B`` sequences with total context ``S`` is unchanged, iteration ``k`` (from the
last change, ``k = 0, 1, ...``) takes ``a + b * (S + k * B)`` seconds, so ``n`` iterations take
``T(n) = n * a + b * (n * S + B * n * (n - 1) / 2)``. The instance keeps an iteration counter;
each member finishes when the counter reaches its ``done_counter``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.hardware.cost import InstanceCost
    from disagg_gym.interconnect.kv_transfer import LinkState
    from disagg_gym.sim.engine import Event
    from disagg_gym.workload.request import Request


class Instance:
    """State of one instance. Aggregates (queued tokens, batch size, context) are incremental."""

    __slots__ = (
        "idx", "group", "gpu", "tp", "role", "site", "node", "cost", "kv_cap", "kv_used",
        "max_batch", "token_budget", "price_per_s", "state", "target_role", "switch_ev",
        # prefill side
        "pq", "pq_tokens", "prefill_busy", "prefill_batch", "prefill_end_s", "want_prefill",
        # decode side
        "members", "B", "S", "counter", "epoch_s", "a", "b", "next_ev", "next_n", "joiners",
        "dq", "incoming", "paused",
        # links and accounting
        "egress", "busy_prefill_s", "busy_decode_s", "decode_tokens", "prefill_tokens",
        "served", "owed", "on_demand", "dirty", "_coeffs",
    )

    def __init__(
        self,
        idx: int,
        group: int,
        gpu: str,
        tp: int,
        role: Role,
        site: str,
        node: int,
        cost: InstanceCost,
        kv_cap_tokens: int,
        max_batch: int,
        token_budget: int,
        price_per_s: float,
    ) -> None:
        self.idx = idx
        self.group = group
        self.gpu = gpu
        self.tp = tp
        self.role = role
        self.site = site
        self.node = node
        self.cost = cost
        self.kv_cap = kv_cap_tokens
        self.kv_used = 0
        self.max_batch = max_batch
        self.token_budget = token_budget
        self.price_per_s = price_per_s
        self.state = "active"  # active | draining | switching
        self.target_role: Role | None = None
        self.switch_ev: Event | None = None
        self.pq: deque[Request] = deque()
        self.pq_tokens = 0
        self.prefill_busy = False
        self.prefill_batch: list[Request] = []
        self.prefill_end_s = 0.0
        self.want_prefill = False
        self.members: list[tuple[int, int, Request]] = []  # heap of (done_counter, rid, req)
        self.B = 0
        self.S = 0
        self.counter = 0
        self.epoch_s = 0.0
        self.a = 0.0
        self.b = 0.0
        self.next_ev: Event | None = None
        self.next_n = 0
        self.joiners: list[Request] = []
        self.dq: deque[Request] = deque()  # prefilled requests waiting for decode admission
        self.incoming = 0  # transfers in flight towards this instance
        self.paused = False  # colocated: decode paused while a prefill batch runs
        self.egress: dict[str, LinkState] = {}
        self.busy_prefill_s = 0.0
        self.busy_decode_s = 0.0
        self.decode_tokens = 0
        self.prefill_tokens = 0
        self.served = 0
        self.owed = 0  # requests routed here for decode and not yet admitted
        self.on_demand = False  # billed only for busy time
        self.dirty = True  # observation features changed since the env last read them
        self._coeffs: dict[int, tuple[float, float]] = {}

    # ----------------------------------------------------------------- queries
    @property
    def accepting(self) -> bool:
        """Whether new requests may be routed here."""
        return self.state == "active"

    @property
    def serves_prefill(self) -> bool:
        """Prefill or colocated role."""
        return self.role is not Role.DECODE

    @property
    def serves_decode(self) -> bool:
        """Decode or colocated role."""
        return self.role is not Role.PREFILL

    @property
    def kv_free(self) -> int:
        """Free KV tokens."""
        return self.kv_cap - self.kv_used

    @property
    def decode_load(self) -> int:
        """Sequences running, joining, arriving or waiting for admission."""
        return self.B + len(self.joiners) + self.incoming + len(self.dq)

    def is_idle(self) -> bool:
        """No work and no memory held: safe to change role."""
        return (
            not self.pq and not self.prefill_busy and self.B == 0 and not self.joiners
            and not self.dq and self.incoming == 0 and self.kv_used == 0 and self.owed == 0
        )

    def coeffs(self, batch: int) -> tuple[float, float]:
        """Decode iteration coefficients ``(a, b)`` for ``batch`` sequences (cached)."""
        c = self._coeffs.get(batch)
        if c is None:
            c = self.cost.decode_coeffs(batch)
            self._coeffs[batch] = c
        return c

    # ------------------------------------------------------ decode closed form
    def decode_time(self, n: int) -> float:
        """Seconds for ``n`` iterations of the current batch from the epoch."""
        return n * self.a + self.b * (n * self.S + self.B * n * (n - 1) * 0.5)

    def iterations_done(self, elapsed_s: float) -> int:
        """Complete iterations of the current batch within ``elapsed_s`` since the epoch."""
        if self.B == 0 or elapsed_s <= 0:
            return 0
        c2 = 0.5 * self.b * self.B
        c1 = self.a + self.b * self.S - c2
        if c2 <= 0:
            k = int(elapsed_s / c1) if c1 > 0 else 0
        else:
            k = int((-c1 + math.sqrt(c1 * c1 + 4.0 * c2 * elapsed_s)) / (2.0 * c2))
        # Guard against round-off at the boundaries.
        while k > 0 and self.decode_time(k) > elapsed_s + 1e-12:
            k -= 1
        while self.decode_time(k + 1) <= elapsed_s - 1e-12:
            k += 1
        return k

    def __repr__(self) -> str:
        return f"Instance({self.idx}, {self.gpu}x{self.tp}, {self.role.value}, {self.state})"
