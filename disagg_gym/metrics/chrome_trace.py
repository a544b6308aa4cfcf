"""Timeline observer that writes a run in the Chrome Trace Event Format (Perfetto, chrome://tracing).

The cluster calls the ``TimelineObserver`` hooks; ``ChromeTrace`` only appends tuples while the
simulation runs and builds the JSON when it is written (issue #13, "A timeline users can open").

Layout of the trace:

* one process per instance: ``pid`` = instance index, ``process_name`` metadata
  ``"#<idx> <gpu> tp=<tp> <role>"`` (the role at start), ``process_sort_index`` = index and
  ``process_labels`` ``"role=<role>"`` with the role at the end of the run;
* complete events (``ph: "X"``, ``ts``/``dur`` in microseconds) named ``prefill``, ``decode``,
  ``transfer``, ``swap``, ``drain``, ``switch``, ``load`` (prefix-cache blocks loaded from a
  lower tier; ``args.tier``, ``args.bytes``) and ``offload`` (blocks written to a lower tier), each kind on its own lane (thread) of the
  instance; spans of one kind that overlap in time (concurrent KV transfers from one sender)
  are spread over extra lanes of that kind so that no two slices of a lane overlap;
* instant events (``ph: "i"``, ``s: "p"``), e.g. ``role`` with ``{"from": ..., "to": ...}``.

Only the first ``max_events`` span and instant events are kept (metadata is not counted); the
number dropped is reported in the top-level ``otherData``.
"""

from __future__ import annotations

import heapq
import json
import math
from pathlib import Path
from typing import Any, Protocol

from disagg_gym.io import atomic_write_text

#: Lane (``tid``) of each span name; names not listed share ``OTHER_LANE``. Lanes start at 1:
#: Perfetto treats tid 0 (and pid 0) as Linux's idle task.
LANES: dict[str, int] = {"prefill": 1, "decode": 2, "transfer": 3, "swap": 4, "drain": 5, "switch": 5, "role": 5,
                         "load": 7, "offload": 8}
OTHER_LANE = 6
#: Label of each base lane (thread name in the viewer).
LANE_NAMES: dict[int, str] = {1: "prefill", 2: "decode", 3: "transfer", 4: "swap", 5: "drain/switch", 6: "other",
                              7: "cache load", 8: "cache offload"}
#: Extra lane ``j`` (1, 2, ...) of base lane ``b`` gets ``tid = b + LANE_STRIDE * j``.
LANE_STRIDE = 10
#: Span names the simulator emits.
SPAN_NAMES = ("prefill", "decode", "transfer", "drain", "switch", "swap", "load", "offload")


class TimelineObserver(Protocol):
    """Timeline hooks the cluster calls (implemented by ``ChromeTrace``).

    Times are simulated seconds. ``args`` of spans hold ``rids`` (a list of request ids) and
    ``tokens`` (a token count) plus any extra detail; the observer may keep the dict, so the
    caller must not mutate it afterwards.
    """

    def on_instance(self, idx: int, gpu: str, tp: int, role: str) -> None:
        """Declares instance ``idx`` (called once per instance at start)."""
        ...

    def on_span(self, idx: int, name: str, start_s: float, end_s: float, args: dict[str, Any]) -> None:
        """Records that instance ``idx`` did ``name`` from ``start_s`` to ``end_s``."""
        ...

    def on_instant(self, idx: int, name: str, t_s: float, args: dict[str, Any]) -> None:
        """Records a point event on instance ``idx`` (``role``: ``{"from": old, "to": new}``)."""
        ...


def _us(t_s: float) -> float:
    """Seconds to microseconds, rounded to the nanosecond (keeps the JSON short and exact)."""
    v = round(t_s * 1e6, 3)
    return v + 0.0  # -0.0 -> 0.0


class ChromeTrace:
    """Collects a run's timeline and writes it as Chrome Trace Event Format JSON.

    Args:
        max_events: Keep at most this many span and instant events (the first ones recorded);
            later ones are counted in ``dropped`` (metadata events are not counted).

    Raises:
        ValueError: If ``max_events`` is not a positive integer.
    """

    def __init__(self, max_events: int = 200_000) -> None:
        if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
            raise ValueError(f"max_events must be a positive integer (got {max_events!r})")
        self.max_events = max_events
        self.dropped = 0
        # idx -> (gpu, tp, role at start); idx -> current role.
        self._instances: dict[int, tuple[str, int, str]] = {}
        self._roles: dict[int, str] = {}
        # (kind, idx, name, start_s, end_s, args): kind "X" (span) or "i" (instant; end_s unused).
        self._events: list[tuple[str, int, str, float, float, dict[str, Any]]] = []

    # ------------------------------------------------------------------ hooks
    def on_instance(self, idx: int, gpu: str, tp: int, role: str) -> None:
        """Declares instance ``idx``; a second call for the same index replaces it."""
        self._instances[idx] = (gpu, tp, role)
        self._roles[idx] = role

    def on_span(self, idx: int, name: str, start_s: float, end_s: float, args: dict[str, Any]) -> None:
        """Records a complete event (kept by reference; built into JSON at write time)."""
        if len(self._events) >= self.max_events:
            self.dropped += 1
            return
        self._events.append(("X", idx, name, start_s, end_s, args))

    def on_instant(self, idx: int, name: str, t_s: float, args: dict[str, Any]) -> None:
        """Records an instant event; ``role`` also updates the instance's current role label."""
        if name == "role" and "to" in args:
            self._roles[idx] = str(args["to"])
        if len(self._events) >= self.max_events:
            self.dropped += 1
            return
        self._events.append(("i", idx, name, t_s, t_s, args))

    # ----------------------------------------------------------------- output
    @property
    def recorded(self) -> int:
        """Span and instant events kept so far."""
        return len(self._events)

    def _lanes(self) -> list[int]:
        """The ``tid`` of every kept event: its kind's lane, or an extra one where spans overlap.

        Interval partitioning per (instance, base lane): spans sorted by start take the lowest
        free lane, so every lane holds disjoint slices and the number of lanes is the maximum
        overlap.
        """
        tids = [0] * len(self._events)
        groups: dict[tuple[int, int], list[int]] = {}
        for k, (kind, idx, name, _, _, _) in enumerate(self._events):
            base = LANES.get(name, OTHER_LANE)
            if kind == "i":
                tids[k] = base
            else:
                groups.setdefault((idx, base), []).append(k)
        ev = self._events
        for (_, base), ks in groups.items():
            ks.sort(key=lambda k: (ev[k][3], k))
            busy: list[tuple[float, int]] = []  # (end_s, lane)
            free: list[int] = []
            n_lanes = 0
            for k in ks:
                start, end = ev[k][3], ev[k][4]
                while busy and busy[0][0] <= start:
                    heapq.heappush(free, heapq.heappop(busy)[1])
                if free:
                    j = heapq.heappop(free)
                else:
                    j = n_lanes
                    n_lanes += 1
                heapq.heappush(busy, (max(end, start), j))
                tids[k] = base + LANE_STRIDE * j
        return tids

    def to_json(self) -> dict[str, Any]:
        """The trace as a JSON-ready dict: ``traceEvents`` (metadata first) and ``otherData``."""
        tids = self._lanes()
        meta: list[dict[str, Any]] = []
        for idx in sorted(self._instances):
            gpu, tp, role = self._instances[idx]
            meta.append({"name": "process_name", "ph": "M", "pid": idx, "tid": 0, "args": {"name": f"#{idx} {gpu} tp={tp} {role}"}})
            meta.append({"name": "process_sort_index", "ph": "M", "pid": idx, "tid": 0, "args": {"sort_index": idx}})
            meta.append({"name": "process_labels", "ph": "M", "pid": idx, "tid": 0, "args": {"labels": f"role={self._roles[idx]}"}})
        for pid, tid in sorted({(e[1], t) for e, t in zip(self._events, tids)}):
            base, j = tid % LANE_STRIDE, tid // LANE_STRIDE
            label = LANE_NAMES[base] if j == 0 else f"{LANE_NAMES[base]} {j + 1}"
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": label}})
            meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": base * 1000 + j}})
        events: list[dict[str, Any]] = []
        for (kind, idx, name, start, end, args), tid in zip(self._events, tids):
            ts = _us(start)
            if kind == "X":
                dur = max(0.0, round(_us(end) - ts, 3))
                events.append({"name": name, "ph": "X", "ts": ts, "dur": dur, "pid": idx, "tid": tid, "args": args})
            else:
                events.append({"name": name, "ph": "i", "s": "p", "ts": ts, "pid": idx, "tid": tid, "args": args})
        return {
            "traceEvents": meta + events,
            "displayTimeUnit": "ms",
            "otherData": {"dropped_events": self.dropped, "max_events": self.max_events},
        }

    def write(self, path: str | Path) -> Path:
        """Writes the trace atomically (temp file beside ``path``, then rename); one event a line.

        Returns:
            The path written.

        Raises:
            ValueError: If an event holds a non-finite time or argument (not valid JSON).
        """
        doc = self.to_json()
        dump = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
        for e in doc["traceEvents"]:
            for key in ("ts", "dur"):
                if key in e and not math.isfinite(e[key]):
                    raise ValueError(f"chrome trace: non-finite {key} in event {e['name']!r} of instance {e['pid']}")
        lines = ",\n".join(dump(e) for e in doc["traceEvents"])
        rest = ",".join(f"{dump(k)}:{dump(v)}" for k, v in doc.items() if k != "traceEvents")
        return atomic_write_text(path, f'{{"traceEvents":[\n{lines}\n],{rest}}}\n')
