"""The one table of event priorities: simultaneous events fire in this order, then FIFO.

Decode iteration boundaries come first so that requests finishing at an instant free their
memory before anything else at that instant looks at it; arrivals come after the work they
could join; control ticks last, so allocators see the state after everything at that time.
"""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    """Event priorities (lower fires first at equal time)."""

    DECODE = 0
    PREFILL = 1
    TRANSFER = 2
    TRANSFER_START = 3
    SWITCH = 4
    ARRIVAL = 5
    CONTROL = 9
