"""KV-cache transfers over shared links: latency + bytes / fair-share bandwidth.

Each ``LinkState`` is one shared bottleneck (an instance's egress port on a tier, or a WAN link
between two sites). Concurrent transfers on it share its bandwidth equally; shares are
recomputed whenever a transfer starts or ends, so a lone transfer takes exactly
``latency_s + bytes / bandwidth``. The fixed latency is modelled as ``latency_s * bandwidth``
extra bytes on the link (one event per transfer instead of two); under contention this
stretches the latency by the same share as the data, a small, documented approximation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from disagg_gym.sim.engine import Engine, Event

PRIO_TRANSFER = 2


class Transfer:
    """One KV transfer in flight."""

    __slots__ = ("payload", "nbytes", "remaining", "on_done")

    def __init__(self, payload: Any, nbytes: float, on_done: Callable[[Any], None]) -> None:
        self.payload = payload
        self.nbytes = nbytes
        self.remaining = nbytes
        self.on_done = on_done


class LinkState:
    """A shared link with equal (max-min fair) sharing among its active transfers.

    Args:
        engine: The simulation engine.
        key: Hashable identity (for records and plots).
        tier: Tier name (``nvlink``, ``pcie``, ``rdma``, ``ethernet``, ...).
        bandwidth_Bps: Capacity in bytes per second.
        latency_s: Per-transfer fixed latency.
    """

    __slots__ = (
        "engine", "key", "tier", "bandwidth_Bps", "latency_s", "active", "last_s", "next_ev",
        "bytes_done", "busy_s", "transfers_done",
    )

    def __init__(self, engine: Engine, key: Any, tier: str, bandwidth_Bps: float, latency_s: float) -> None:
        if not bandwidth_Bps > 0:
            raise ValueError(f"link {key!r}: bandwidth must be > 0 (got {bandwidth_Bps!r})")
        self.engine = engine
        self.key = key
        self.tier = tier
        self.bandwidth_Bps = bandwidth_Bps
        self.latency_s = latency_s
        self.active: list[Transfer] = []
        self.last_s = engine.now
        self.next_ev: Event | None = None
        self.bytes_done = 0.0
        self.busy_s = 0.0
        self.transfers_done = 0

    @property
    def in_flight(self) -> int:
        """Transfers started and not yet landed."""
        return len(self.active)

    def idle_time_s(self, nbytes: float) -> float:
        """Duration of a transfer of ``nbytes`` on this link if it were alone."""
        return self.latency_s + nbytes / self.bandwidth_Bps

    def start(self, payload: Any, nbytes: float, on_done: Callable[[Any], None]) -> None:
        """Starts a transfer; ``on_done(payload)`` fires when its last byte lands."""
        tr = Transfer(payload, nbytes + self.latency_s * self.bandwidth_Bps, on_done)
        self._admit(tr)

    def _progress(self) -> None:
        now = self.engine.now
        n = len(self.active)
        dt = now - self.last_s
        if n and dt > 0:
            per = dt * self.bandwidth_Bps / n
            for tr in self.active:
                tr.remaining -= per
            self.busy_s += dt
            self.bytes_done += dt * self.bandwidth_Bps
        self.last_s = now

    def _reschedule(self) -> None:
        if self.next_ev is not None:
            self.next_ev.cancelled = True
            self.next_ev = None
        if self.active:
            rem = min(tr.remaining for tr in self.active)
            dt = (rem if rem > 0 else 0.0) * len(self.active) / self.bandwidth_Bps
            self.next_ev = self.engine.schedule(self.engine.now + dt, self._finish, None, PRIO_TRANSFER)

    def _admit(self, tr: Transfer) -> None:
        if tr.nbytes <= 0:
            self.transfers_done += 1
            tr.on_done(tr.payload)
            return
        self._progress()
        self.active.append(tr)
        self._reschedule()

    def _finish(self, _: Any) -> None:
        self.next_ev = None
        self._progress()
        # Transfers within round-off of done land now; at least the smallest one does.
        eps = 1e-6 + 1e-12 * self.bandwidth_Bps
        done = [tr for tr in self.active if tr.remaining <= eps]
        if not done:
            done = [min(self.active, key=lambda t: t.remaining)]
        for tr in done:
            self.active.remove(tr)
        self._reschedule()
        for tr in done:
            self.transfers_done += 1
            tr.on_done(tr.payload)
