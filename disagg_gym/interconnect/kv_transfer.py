"""KV transfers over shared ports with max-min fair sharing.

A ``Port`` is one shared bottleneck with a capacity: an instance's egress or ingress on a tier
(``tp`` GPUs each with their own port, so ``tp * per-GPU bandwidth``), a site-to-site WAN link,
an instance's PCIe link to host memory. A ``Flow`` crosses one or more ports and may carry its
own rate cap (a tp=2 sender talking to a tp=1 receiver moves data over ``min(tp)`` GPU pairs).
Rates are max-min fair over every port a flow crosses (progressive filling), recomputed for
the connected component of flows whenever a flow starts or ends. A flow first waits its fixed
latency (it occupies no bandwidth meanwhile), then moves its bytes: a lone transfer takes
exactly ``latency_s + bytes / min(port capacities, cap)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from disagg_gym.sim.engine import Engine, Event
from disagg_gym.sim.events import Priority

# Bound once (an Enum class attribute lookup costs about ten times a global lookup on 3.11).
P_TRANSFER, P_TRANSFER_START = Priority.TRANSFER, Priority.TRANSFER_START


def bottleneck_Bps(ports: Sequence[Port], cap_Bps: float) -> float:
    """The rate a flow alone on ``ports`` moves at: the slowest port, or its own cap."""
    r = cap_Bps
    for p in ports:
        if p.bandwidth_Bps < r:
            r = p.bandwidth_Bps
    return r


class Port:
    """A shared bottleneck: capacity and the flows crossing it."""

    __slots__ = ("key", "tier", "bandwidth_Bps", "flows", "bytes_done", "busy_s", "_since", "_mark", "_left", "_n",
                 "_open")

    def __init__(self, key: Any, tier: str, bandwidth_Bps: float) -> None:
        if not bandwidth_Bps > 0:
            raise ValueError(f"port {key!r}: bandwidth must be > 0 (got {bandwidth_Bps!r})")
        self.key = key
        self.tier = tier
        self.bandwidth_Bps = bandwidth_Bps
        self.flows: list[Flow] = []
        self.bytes_done = 0.0
        self.busy_s = 0.0
        self._since = 0.0
        self._mark = 0  # scratch of TransferManager._rebalance
        self._left = 0.0
        self._n = 0
        self._open = True

    @property
    def in_flight(self) -> int:
        """Flows moving data through this port now."""
        return len(self.flows)

    @property
    def load_Bps(self) -> float:
        """Sum of the rates of the flows crossing this port."""
        return sum(f.rate for f in self.flows)


class Flow:
    """One transfer: bytes left, current rate, the ports it crosses."""

    __slots__ = ("payload", "nbytes", "remaining", "rate", "cap_Bps", "ports", "on_done", "last_s", "ev", "start_s",
                 "active", "_mark", "_level")

    def __init__(self, payload: Any, nbytes: float, ports: tuple[Port, ...], cap_Bps: float,
                 on_done: Callable[[Any], None]) -> None:
        self.payload = payload
        self.nbytes = nbytes
        self.remaining = nbytes
        self.rate = 0.0
        self.cap_Bps = cap_Bps
        self.ports = ports
        self.on_done = on_done
        self.last_s = 0.0
        self.ev: Event | None = None
        self.start_s = 0.0
        self.active = False  # moving data (its latency has passed)
        self._mark = 0  # scratch of TransferManager._rebalance
        self._level = 0.0


class TransferManager:
    """Owns every port and flow of one cluster; the only writer of their state.

    Args:
        engine: The simulation engine.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ports: dict[Any, Port] = {}
        self.active = 0
        self.bytes_by_tier: dict[str, float] = {}
        self._mark = 0

    def port(self, key: Any, tier: str, bandwidth_Bps: float) -> Port:
        """The port ``key`` (created with ``bandwidth_Bps`` on first use)."""
        p = self.ports.get(key)
        if p is None:
            p = self.ports[key] = Port(key, tier, bandwidth_Bps)
        return p

    def start(self, payload: Any, nbytes: float, ports: Sequence[Port], cap_Bps: float,
              latency_s: float, on_done: Callable[[Any], None]) -> None:
        """Starts a transfer; ``on_done(payload)`` fires when its last byte lands."""
        flow = Flow(payload, float(nbytes), tuple(ports), cap_Bps, on_done)
        self.active += 1
        if latency_s > 0:
            self.engine.schedule(self.engine.now + latency_s, self._activate, flow, P_TRANSFER_START)
        else:
            self._activate(flow)

    @staticmethod
    def lone_time_s(nbytes: float, ports: Sequence[Port], cap_Bps: float, latency_s: float) -> float:
        """Duration of a transfer if nothing else were moving."""
        return latency_s + nbytes / bottleneck_Bps(ports, cap_Bps)

    # ------------------------------------------------------------------ internals
    def _activate(self, flow: Flow) -> None:
        now = self.engine.now
        flow.start_s = now
        if flow.nbytes <= 0:
            self._land(flow)
            return
        flow.last_s = now
        flow.active = True
        alone = True
        for p in flow.ports:
            if p.flows:
                alone = False
            else:
                p._since = now
            p.flows.append(flow)
        if alone:  # nothing else on its ports: bottleneck_Bps, inlined (hot path)
            r = flow.cap_Bps
            for p in flow.ports:
                if p.bandwidth_Bps < r:
                    r = p.bandwidth_Bps
            # _set_rate of a flow that has not moved yet (rate 0, no end scheduled), inlined
            flow.rate = r
            flow.ev = self.engine.schedule(now + (flow.remaining / r if r > 0 else 0.0), self._finish, flow,
                                           P_TRANSFER)
            return
        self._rebalance((flow,))

    def _rebalance(self, seeds: Sequence[Flow]) -> None:
        """Recomputes max-min fair rates for the flows connected to ``seeds`` through ports."""
        now = self.engine.now
        self._mark += 1
        mark = self._mark
        flows: list[Flow] = []
        for f in seeds:  # seeds may repeat a flow (once per shared port): mark as we go
            if f.active and f._mark != mark:
                f._mark = mark
                flows.append(f)
        ports: list[Port] = []
        i = 0
        while i < len(flows):  # the connected component (every flow on a reached port)
            for p in flows[i].ports:
                if p._mark != mark:
                    p._mark = mark
                    ports.append(p)
                    for g in p.flows:
                        if g._mark != mark:
                            g._mark = mark
                            flows.append(g)
            i += 1
        if not flows:
            return
        set_rate = self._set_rate
        if len(flows) == 1:  # alone on its ports: the slowest of them, or its own cap
            f = flows[0]
            r = f.cap_Bps
            for p in f.ports:
                if p.bandwidth_Bps < r:
                    r = p.bandwidth_Bps
            set_rate(f, r, now)
            return
        f0 = flows[0]
        cap = f0.cap_Bps
        shared = f0.ports
        for f in flows:
            if f.cap_Bps != cap or f.ports != shared:
                break
        else:
            # Every flow crosses the same ports with the same cap (one sender to one receiver):
            # progressive filling freezes them all in its first round, at this level.
            level = cap
            for p in ports:
                share = p.bandwidth_Bps / len(p.flows)
                if share < level:
                    level = share
            self._set_rates(flows, level, now)
            return
        # Progressive filling: raise every open flow's rate together until a port saturates or
        # a flow reaches its own cap; freeze those; repeat.
        for p in ports:
            p._left = p.bandwidth_Bps
            p._n = len(p.flows)
        open_flows = flows
        live = ports  # ports that still carry open flows (the others neither bind nor freeze)
        while open_flows:
            level = open_flows[0].cap_Bps
            for f in open_flows:
                if f.cap_Bps < level:
                    level = f.cap_Bps
            for p in live:
                share = p._left / p._n
                if share < level:
                    level = share
            if level < 0.0:
                level = 0.0  # round-off on a saturated port
            tol = level * (1 + 1e-12) + 1e-9
            for p in live:  # saturated ports (before this round's subtractions)
                p._open = p._left / p._n > tol
            frozen: list[Flow] = []
            still: list[Flow] = []
            for f in open_flows:
                if f.cap_Bps <= tol:
                    frozen.append(f)
                    continue
                for p in f.ports:
                    if not p._open:
                        frozen.append(f)
                        break
                else:
                    still.append(f)
            if not frozen:  # cannot happen in exact arithmetic; never loop on round-off
                frozen = open_flows
                still = []
            for f in frozen:
                f._level = level
                for p in f.ports:
                    p._left -= level
                    p._n -= 1
            open_flows = still
            if still:
                live = [p for p in live if p._n]
        self._set_rates(flows, None, now)

    def _set_rates(self, flows: list[Flow], level: float | None, now: float) -> None:
        """:meth:`_set_rate` of every flow of ``flows`` to ``level`` (``None``: its ``_level``),
        inlined: the hot loop of every rebalance.
        """
        engine = self.engine
        finish = self._finish
        for f in flows:
            r = f._level if level is None else level
            old = f.rate
            if old > 0:
                f.remaining -= old * (now - f.last_s)
            f.last_s = now
            ev = f.ev
            if r == old and ev is not None:
                continue
            f.rate = r
            rem = f.remaining if f.remaining > 0 else 0.0
            t = now + (rem / r if r > 0 else 0.0)
            if ev is None:
                f.ev = engine.schedule(t, finish, f, P_TRANSFER)
            else:  # same firing order as cancel + schedule, fewer heap operations
                f.ev = engine.postpone(ev, t)

    def _set_rate(self, f: Flow, r: float, now: float) -> None:
        """Brings ``f`` up to ``now`` at its old rate, then (re)schedules its end at rate ``r``."""
        if f.rate > 0:
            f.remaining -= f.rate * (now - f.last_s)
        f.last_s = now
        ev = f.ev
        if r == f.rate and ev is not None:
            return
        f.rate = r
        rem = f.remaining if f.remaining > 0 else 0.0
        t = now + (rem / r if r > 0 else 0.0)
        if ev is None:
            f.ev = self.engine.schedule(t, self._finish, f, P_TRANSFER)
        else:  # same firing order as cancel + schedule, fewer heap operations
            f.ev = self.engine.postpone(ev, t)

    def _finish(self, flow: Flow) -> None:
        now = self.engine.now
        flow.ev = None
        flow.remaining = 0.0
        flow.active = False
        others: list[Flow] = []
        for p in flow.ports:
            p.flows.remove(flow)
            p.bytes_done += flow.nbytes
            if not p.flows:
                p.busy_s += now - p._since
            else:
                others.extend(p.flows)
        if others:
            self._rebalance(others)
        self._land(flow)

    def _land(self, flow: Flow) -> None:
        self.active -= 1
        flow.on_done(flow.payload)
