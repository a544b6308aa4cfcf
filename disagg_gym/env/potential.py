"""The load potential shared by the env's ``load_shaping`` reward term and ``QueueShaping``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from disagg_gym.cluster.policies import decode_pressure, prefill_wait_s
from disagg_gym.types import Role

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster


def load_potential(cluster: Cluster, wait_weight: float = 1.0, pressure_weight: float = 1.0) -> float:
    """``phi = -wait_weight * sum_i wait_i**2 - pressure_weight * sum_j pressure_j**2``.

    ``wait_i`` is the predicted prefill wait in seconds of each prefill (or colocated) instance,
    ``pressure_j`` the slot/KV pressure of each decode instance (``disagg_gym.cluster.policies``).
    """
    now = cluster.engine.now
    phi = 0.0
    for inst in cluster.instances:
        if inst.role is Role.DECODE:
            phi -= pressure_weight * decode_pressure(inst) ** 2
        else:
            phi -= wait_weight * prefill_wait_s(inst, now) ** 2
    return phi
