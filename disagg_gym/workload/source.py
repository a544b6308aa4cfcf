"""The contract between workload generators/traces and the cluster: chunks of arrivals."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


class ArrivalChunk(NamedTuple):
    """A batch of consecutive arrivals, sorted by time (arrays of equal length)."""

    arrival_s: np.ndarray  # float64, non-decreasing, absolute simulated seconds
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1
    slo_ttft_s: np.ndarray  # float64 > 0
    slo_tpot_s: np.ndarray  # float64 > 0
    hash_ids: list[tuple[int, ...]] | None = None  # prefix-block ids per request, if known
    hash_block_tokens: int | None = None  # tokens per hash_ids block (Mooncake 512); None if no ids
    session_ids: np.ndarray | None = None  # int64 conversation id per request (multi_turn), if any


class ArrivalSource(Protocol):
    """Yields arrivals lazily, chunk by chunk, so memory stays bounded for long runs."""

    def next_chunk(self) -> ArrivalChunk | None:
        """Returns the next chunk, or ``None`` when the workload is exhausted."""
        ...
