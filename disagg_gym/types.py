"""Shared aliases and enums: units, phases, roles and request states."""

from __future__ import annotations

import enum

Seconds = float
Bytes = float
Tokens = int


class Role(str, enum.Enum):
    """What an instance serves."""

    PREFILL = "prefill"
    DECODE = "decode"
    COLOCATED = "colocated"


class RequestState(str, enum.Enum):
    """Lifecycle of a request inside the cluster."""

    ARRIVED = "arrived"
    PREFILL_QUEUED = "prefill_queued"
    PREFILLING = "prefilling"
    WAITING_DECODE = "waiting_decode"
    TRANSFERRING = "transferring"
    DECODING = "decoding"
    COMPLETED = "completed"
    REJECTED = "rejected"
