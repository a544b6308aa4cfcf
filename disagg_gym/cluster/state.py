"""``InstanceState``: an instance's service lifecycle and its legal transitions.

``ACTIVE`` serves new work. ``DRAINING`` (a role change was asked) finishes only what is
already running: queued work went back to the router when draining began. ``SWITCHING`` does
nothing at all until ``switch_delay_s`` has passed, then the instance is ``ACTIVE`` in its new
role. A draining instance may be returned to service (``cancel_switch``).
"""

from __future__ import annotations

from enum import Enum


class InstanceState(str, Enum):
    """Service state of an instance (compares equal to its string value)."""

    ACTIVE = "active"
    DRAINING = "draining"
    SWITCHING = "switching"


LEGAL_TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    InstanceState.ACTIVE: frozenset({InstanceState.DRAINING}),
    InstanceState.DRAINING: frozenset({InstanceState.ACTIVE, InstanceState.SWITCHING}),
    InstanceState.SWITCHING: frozenset({InstanceState.ACTIVE}),
}


def check_transition(old: InstanceState, new: InstanceState) -> None:
    """Raises ``AssertionError`` on an illegal transition (a simulator bug, not user input)."""
    if new not in LEGAL_TRANSITIONS[old]:
        raise AssertionError(f"illegal instance state transition {old.value} -> {new.value}")
