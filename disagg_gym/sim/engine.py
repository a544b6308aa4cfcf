"""Deterministic discrete-event engine: ``now``, ``schedule``, ``cancel``, ``step``, ``run_until``.

Heap entries are ``(time_s, priority, seq, event)`` with ``seq`` from a per-engine counter, so
simultaneous events fire in (priority, scheduling order) and runs are bit-for-bit repeatable.
Cancellation sets a tombstone flag; cancelled entries are dropped when they reach the top.
``postpone`` moves an event later without touching the heap: the event takes a fresh ``seq``
(exactly as a cancel + new ``schedule`` would) and its old entry, when it reaches the top, is
pushed again at the new ``(time_s, seq)``. Firing order is therefore identical to cancelling
and rescheduling, with fewer heap operations when an event moves several times.
Anchor: SimPy ``Environment.schedule``/``peek``/``run(until=...)``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

Handler = Callable[..., Any]
_heappush = heapq.heappush


class Event:
    """A scheduled callback. ``cancelled`` is the tombstone flag."""

    __slots__ = ("time_s", "priority", "seq", "fn", "arg", "cancelled", "heap_s")

    def __init__(self, time_s: float, priority: int, seq: int, fn: Handler, arg: Any) -> None:
        self.time_s = time_s
        self.priority = priority
        self.seq = seq
        self.fn = fn
        self.arg = arg
        self.cancelled = False
        self.heap_s = time_s  # time of its heap entry (earlier than time_s after a postpone)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"Event(t={self.time_s:.6f}, prio={self.priority}, seq={self.seq}, fn={name})"


_new_event = Event.__new__


class Engine:
    """Event heap and simulated clock (seconds). One per simulation; no global state."""

    __slots__ = ("now", "_heap", "_seq", "events_processed")

    def __init__(self, start_s: float = 0.0) -> None:
        self.now: float = start_s
        self._heap: list[tuple[float, int, int, Event]] = []
        self._seq = 0  # next sequence number (a plain int: itertools.count stops pickling in Python 3.14)
        self.events_processed = 0

    def schedule(self, time_s: float, fn: Handler, arg: Any = None, priority: int = 0) -> Event:
        """Schedules ``fn(arg)`` at absolute time ``time_s`` (never in the past)."""
        if not time_s >= self.now:  # also catches NaN
            raise ValueError(f"cannot schedule at t={time_s!r} before now={self.now!r}")
        seq = self._seq
        self._seq = seq + 1
        # Event(time_s, priority, seq, fn, arg) without the __init__ call (the hottest allocation)
        ev = _new_event(Event)
        ev.time_s = ev.heap_s = time_s
        ev.priority = priority
        ev.seq = seq
        ev.fn = fn
        ev.arg = arg
        ev.cancelled = False
        _heappush(self._heap, (time_s, priority, seq, ev))
        return ev

    def schedule_in(self, delay_s: float, fn: Handler, arg: Any = None, priority: int = 0) -> Event:
        """Schedules ``fn(arg)`` after ``delay_s`` seconds."""
        return self.schedule(self.now + delay_s, fn, arg, priority)

    def postpone(self, ev: Event, time_s: float) -> Event:
        """Moves live event ``ev`` to ``time_s``; same firing order as ``cancel(ev)`` followed by
        ``schedule(time_s, ev.fn, ev.arg, ev.priority)``. Returns the event now scheduled (``ev``
        itself, or a new one when ``time_s`` is before its heap entry).
        """
        if not time_s >= self.now:  # also catches NaN (as schedule does)
            raise ValueError(f"cannot postpone to t={time_s!r} before now={self.now!r}")
        if time_s < ev.heap_s or ev.cancelled:
            ev.cancelled = True
            return self.schedule(time_s, ev.fn, ev.arg, ev.priority)
        ev.time_s = time_s
        ev.seq = self._seq  # its entry is re-pushed at (time_s, seq) when it surfaces
        self._seq += 1
        return ev

    def _repush(self, ev: Event) -> None:
        ev.heap_s = ev.time_s
        heapq.heappush(self._heap, (ev.time_s, ev.priority, ev.seq, ev))

    @staticmethod
    def cancel(ev: Event | None) -> None:
        """Marks ``ev`` cancelled (no-op for ``None``)."""
        if ev is not None:
            ev.cancelled = True

    def peek(self) -> float:
        """Time of the next live event, or ``inf`` when none is left."""
        heap = self._heap
        while heap:
            top = heap[0]
            ev = top[3]
            if ev.cancelled:
                heapq.heappop(heap)
            elif top[2] != ev.seq:  # postponed
                heapq.heappop(heap)
                self._repush(ev)
            else:
                break
        return heap[0][0] if heap else math.inf

    def step(self) -> bool:
        """Processes one live event; returns ``False`` when the heap is empty."""
        heap = self._heap
        while heap:
            t, _, seq, ev = heapq.heappop(heap)
            if ev.cancelled:
                continue
            if seq != ev.seq:  # postponed: its entry goes back at the new time
                self._repush(ev)
                continue
            self.now = t
            self.events_processed += 1
            ev.fn(ev.arg)
            return True
        return False

    def run_until(self, until: float | Callable[[], bool] = math.inf) -> bool:
        """Runs events until a time or a predicate holds.

        Args:
            until: A time in seconds (events at exactly that time are processed and the clock
                ends there), or a zero-argument predicate checked after every event.

        Returns:
            ``True`` if the stop condition was met, ``False`` if the heap emptied first.
        """
        heap = self._heap
        pop = heapq.heappop
        if callable(until):
            pred = until
            if pred():
                return True
            n = 0
            try:
                while heap:
                    t, _, seq, ev = pop(heap)
                    if ev.cancelled:
                        continue
                    if seq != ev.seq:
                        self._repush(ev)
                        continue
                    self.now = t
                    n += 1
                    ev.fn(ev.arg)
                    if pred():
                        return True
                return False
            finally:
                self.events_processed += n
        limit = float(until)
        n = 0  # events processed here (added to the count once, on the way out)
        try:
            while heap:
                top = pop(heap)
                if top[0] > limit:
                    _heappush(heap, top)  # not due yet: back where it was (same key)
                    break
                ev = top[3]
                if ev.cancelled:
                    continue
                if top[2] != ev.seq:
                    self._repush(ev)
                    continue
                self.now = top[0]
                n += 1
                ev.fn(ev.arg)
        finally:
            self.events_processed += n
        if limit != math.inf and limit > self.now:
            self.now = limit
        return bool(heap) or self.now >= limit

    def __len__(self) -> int:
        return sum(1 for e in self._heap if not e[3].cancelled)
