"""Shared helpers of the agents tests."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import Any

import pytest


def _run_together(target: Callable[..., None], args: Sequence[tuple[Any, ...]], start: str = "fork",
                  timeout_s: float = 120.0) -> None:
    """Runs ``target(*a)`` for every ``a`` of ``args`` in its own process, all at once; asserts
    each exited cleanly."""
    ctx = mp.get_context(start)
    procs = [ctx.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout_s)
        assert p.exitcode == 0


@pytest.fixture
def run_together() -> Callable[..., None]:
    """``run_together(target, [args, ...], start="fork")``: concurrent writers, one process each."""
    return _run_together
