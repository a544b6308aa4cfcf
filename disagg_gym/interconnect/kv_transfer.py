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


class Port:
    """A shared bottleneck: capacity and the flows crossing it."""

    __slots__ = ("key", "tier", "bandwidth_Bps", "flows", "bytes_done", "busy_s", "_since")

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

    __slots__ = ("payload", "nbytes", "remaining", "rate", "cap_Bps", "ports", "on_done", "last_s", "ev", "start_s")

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
            self.engine.schedule(self.engine.now + latency_s, self._activate, flow, Priority.TRANSFER_START)
        else:
            self._activate(flow)

    @staticmethod
    def lone_time_s(nbytes: float, ports: Sequence[Port], cap_Bps: float, latency_s: float) -> float:
        """Duration of a transfer if nothing else were moving."""
        bw = min([cap_Bps] + [p.bandwidth_Bps for p in ports])
        return latency_s + nbytes / bw

    # ------------------------------------------------------------------ internals
    def _activate(self, flow: Flow) -> None:
        now = self.engine.now
        flow.start_s = now
        if flow.nbytes <= 0:
            self._land(flow)
            return
        flow.last_s = now
        for p in flow.ports:
            if not p.flows:
                p._since = now
            p.flows.append(flow)
        self._rebalance(flow)

    def _component(self, seed: Flow) -> list[Flow]:
        seen = {id(seed)}
        out = [seed]
        i = 0
        while i < len(out):
            for p in out[i].ports:
                for f in p.flows:
                    if id(f) not in seen:
                        seen.add(id(f))
                        out.append(f)
            i += 1
        return out

    def _rebalance(self, seed: Flow, extra: Sequence[Flow] = ()) -> None:
        """Recomputes max-min fair rates for the flows connected to ``seed`` (and ``extra``)."""
        now = self.engine.now
        flows: list[Flow] = []
        seen: set[int] = set()
        for s in (seed, *extra):
            if id(s) in seen or not s.ports or s not in s.ports[0].flows:
                continue
            for f in self._component(s):
                if id(f) not in seen:
                    seen.add(id(f))
                    flows.append(f)
        if not flows:
            return
        for f in flows:  # bring every affected flow up to now at its old rate
            if f.rate > 0:
                f.remaining -= f.rate * (now - f.last_s)
            f.last_s = now
        # Progressive filling: raise every unfrozen flow's rate together until a port saturates
        # or a flow hits its own cap; freeze those; repeat.
        cap_left: dict[int, float] = {}
        n_open: dict[int, int] = {}
        ports: dict[int, Port] = {}
        for f in flows:
            for p in f.ports:
                k = id(p)
                if k not in ports:
                    ports[k] = p
                    cap_left[k] = p.bandwidth_Bps
                    n_open[k] = 0
                n_open[k] += 1
        open_flows = list(flows)
        rate: dict[int, float] = {}
        while open_flows:
            level = min(f.cap_Bps for f in open_flows)
            for k, n in n_open.items():
                if n:
                    share = cap_left[k] / n
                    if share < level:
                        level = share
            tight = {k for k, n in n_open.items() if n and cap_left[k] / n <= level * (1 + 1e-12)}
            still = []
            for f in open_flows:
                if f.cap_Bps <= level * (1 + 1e-12) or any(id(p) in tight for p in f.ports):
                    rate[id(f)] = level
                    for p in f.ports:
                        cap_left[id(p)] -= level
                        n_open[id(p)] -= 1
                else:
                    still.append(f)
            open_flows = still
        for f in flows:
            r = rate[id(f)]
            if r == f.rate and f.ev is not None:
                continue
            f.rate = r
            if f.ev is not None:
                f.ev.cancelled = True
            rem = f.remaining if f.remaining > 0 else 0.0
            f.ev = self.engine.schedule(now + rem / r, self._finish, f, Priority.TRANSFER)

    def _finish(self, flow: Flow) -> None:
        now = self.engine.now
        flow.ev = None
        flow.remaining = 0.0
        others: list[Flow] = []
        for p in flow.ports:
            p.flows.remove(flow)
            p.bytes_done += flow.nbytes
            if not p.flows:
                p.busy_s += now - p._since
            else:
                others.extend(p.flows)
        if others:
            self._rebalance(others[0], others[1:])
        self._land(flow)

    def _land(self, flow: Flow) -> None:
        self.active -= 1
        flow.on_done(flow.payload)
