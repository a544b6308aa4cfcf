"""Discrete-event engine: a deterministic clock and event heap, nothing domain-specific."""

from disagg_gym.sim.engine import Engine, Event

__all__ = ["Engine", "Event"]
