"""Validation of ``DisaggServingEnv.reset(options=...)``: one clear ``UserError`` per bad option."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from disagg_gym.errors import UserError

RESET_OPTIONS = ("workload_seed", "trace_window", "keep_records")


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def check_reset_options(
    options: Any, workload_kind: str
) -> tuple[int | None, tuple[float, float | None] | None]:
    """Checks ``reset`` options; returns ``(workload_seed or None, trace_window or None)``.

    Args:
        options: What the caller passed as ``options`` (``None`` or a mapping).
        workload_kind: The scenario's ``workload.kind`` (``trace_window`` needs ``trace``).

    Raises:
        UserError: ``options`` is not a mapping; an unknown key; ``workload_seed`` not a
            non-negative int; ``trace_window`` not ``[start_s, end_s]`` with a finite
            ``start_s >= 0`` and ``end_s`` null or a finite number above ``start_s``, or given
            for a workload that is not a trace; ``keep_records`` not a bool (it is read by
            ``reset`` itself).
    """
    if options is None:
        return None, None
    if not isinstance(options, Mapping):
        raise UserError(f"reset options must be a dict (got {type(options).__name__}: {options!r})")
    unknown = sorted(str(k) for k in options if k not in RESET_OPTIONS)
    if unknown:
        raise UserError(f"unknown reset option(s) {unknown}; expected {', '.join(RESET_OPTIONS)}")
    keep = options.get("keep_records", False)
    if not isinstance(keep, (bool, np.bool_)):
        raise UserError(f"keep_records must be true or false (got {keep!r})")
    wseed = options.get("workload_seed")
    if wseed is not None and (
        isinstance(wseed, bool) or not isinstance(wseed, (int, np.integer)) or wseed < 0
    ):
        raise UserError(f"workload_seed must be a non-negative int (got {wseed!r})")
    window = options.get("trace_window")
    if window is None:
        return (None if wseed is None else int(wseed)), None
    if isinstance(window, (str, bytes)) or not hasattr(window, "__len__") or len(window) != 2:
        raise UserError(f"trace_window must be [start_s, end_s] (got {window!r})")
    lo, hi = window[0], window[1]
    if not _number(lo) or not math.isfinite(lo) or lo < 0:
        raise UserError(f"trace_window start_s must be a finite number >= 0 (got {lo!r})")
    if hi is not None and (not _number(hi) or not math.isfinite(hi) or hi <= lo):
        raise UserError(
            f"trace_window end_s must be null or a finite number > start_s={float(lo):g} (got {hi!r})"
        )
    if workload_kind != "trace":
        raise UserError(f"trace_window needs a trace workload (got workload.kind {workload_kind!r})")
    return (None if wseed is None else int(wseed)), (float(lo), None if hi is None else float(hi))
