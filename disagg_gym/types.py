"""Shared enums: instance roles and request states (units live in field names: ``_s``, ``_bytes``)."""

from __future__ import annotations

import enum


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
