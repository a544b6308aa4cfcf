"""Named, independent random streams: one seed -> one ``np.random.Generator`` per subsystem."""

from __future__ import annotations

import zlib

import numpy as np


class RngStreams:
    """Builds one generator per subsystem name from a single seed.

    Streams are keyed by name (CRC32 of the name as the spawn key), not by creation order,
    so adding a new consumer never shifts the draws of existing ones.

    Args:
        seed: Root seed (any non-negative int). ``None`` draws fresh OS entropy.
    """

    __slots__ = ("seed", "_root", "_streams")

    def __init__(self, seed: int | None) -> None:
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self._root = np.random.SeedSequence(seed)
        self.seed = int(self._root.entropy)  # type: ignore[arg-type]
        self._streams: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        """Returns the generator for ``name``, creating it on first use."""
        gen = self._streams.get(name)
        if gen is None:
            ss = np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()),))
            gen = np.random.Generator(np.random.PCG64(ss))
            self._streams[name] = gen
        return gen

    __getitem__ = get
