"""``Meter``: busy time, energy and GPU cost of a cluster -- computed once, read by everyone.

Energy over ``[0, t]`` = sum over instances of busy power x busy time + (if ``idle_power``)
idle power x idle time. Busy time is booked per phase (prefill, decode) when the work is
scheduled. Cost = price x provisioned GPU-hours for reserved instances, price x busy hours for
on-demand ones. The KPI summary and the env's reward terms both read this meter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disagg_gym.cluster.instance import Instance


class Meter:
    """Energy and cost accounting for a set of instances.

    Args:
        instances: The cluster's instances (power and price come from each).
        idle_power: Count idle power of provisioned GPUs.
    """

    __slots__ = ("idle_power", "idle_w", "busy_extra_j", "reserved_usd_per_s", "on_demand_usd", "_busy_prefill", "_busy_decode")

    def __init__(self, instances: list[Instance], idle_power: bool) -> None:
        self.idle_power = idle_power
        self.idle_w = sum(i.cost.idle_power_w for i in instances) if idle_power else 0.0
        self.busy_extra_j = 0.0  # busy energy above what idle_w * t already counts
        self.reserved_usd_per_s = sum(i.price_per_s for i in instances if not i.on_demand)
        self.on_demand_usd = 0.0
        # busy seconds per instance (by Instance.idx) and phase, the utilisation KPI's numerator
        self._busy_prefill = [0.0] * len(instances)
        self._busy_decode = [0.0] * len(instances)

    def book(self, inst: Instance, seconds: float, phase: str) -> None:
        """Books ``seconds`` of busy time of ``inst`` in ``phase`` (``prefill`` or ``decode``)."""
        c = inst.cost
        if phase == "prefill":
            self._busy_prefill[inst.idx] += seconds
            power = c.prefill_power_w
        else:
            self._busy_decode[inst.idx] += seconds
            power = c.decode_power_w
        self.busy_extra_j += seconds * (power - c.idle_power_w if self.idle_power else power)
        if inst.on_demand:
            self.on_demand_usd += seconds * inst.price_per_s

    def busy_s(self, inst: Instance) -> float:
        """Seconds of prefill and decode work booked on ``inst`` so far."""
        return self._busy_prefill[inst.idx] + self._busy_decode[inst.idx]

    def energy_j(self, t_s: float) -> float:
        """GPU energy over ``[0, t_s]`` (busy time booked so far)."""
        return self.idle_w * t_s + self.busy_extra_j

    def cost_usd(self, t_s: float) -> float:
        """GPU cost over ``[0, t_s]``."""
        return self.reserved_usd_per_s * t_s + self.on_demand_usd
