"""Parallel ``tune-baselines`` searches writing one tuned file keep every entry."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path

from disagg_gym_agents.tuning import read_tuned, write_tuned

PROCS, WRITES = 6, 8


def _writer(path: str, k: int, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    for j in range(WRITES):
        write_tuned({f"disagg/Config{k}-v0": {f"policy{j}": {"params": {"alpha": k + j / 10}}}}, path)


def test_parallel_writers_lose_no_entry(tmp_path: Path, run_together: Callable[..., None]) -> None:
    path = tmp_path / "tuned.yaml"
    start = mp.get_context("fork").Barrier(PROCS)
    run_together(_writer, [(str(path), k, start) for k in range(PROCS)])
    data = read_tuned(path)
    assert sorted(data) == sorted(f"disagg/Config{k}-v0" for k in range(PROCS))
    for k in range(PROCS):
        assert data[f"disagg/Config{k}-v0"] == {f"policy{j}": {"params": {"alpha": k + j / 10}} for j in range(WRITES)}
