"""PerturbedCost: a cost model whose prefill and decode times are scaled (domain randomisation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class PerturbedCost:
    """Wraps an instance cost model, multiplying prefill times and decode iteration times.

    Used for domain randomisation within the cost model's measured error band
    (docs/calibration.md: llama-3.1-8b fit error p90 4.6% prefill, 5.6% decode). Memory
    (KV capacity, bytes per token) and power are unchanged; every other attribute is the
    wrapped model's.

    Args:
        base: An object with :class:`~disagg_gym.hardware.cost.InstanceCost`'s interface.
        prefill_factor: Multiplies ``prefill_s`` (> 0).
        decode_factor: Multiplies both decode coefficients (> 0).
    """

    def __init__(self, base: Any, prefill_factor: float, decode_factor: float) -> None:
        if not (prefill_factor > 0 and decode_factor > 0):
            raise ValueError(f"factors must be > 0 (got {prefill_factor!r}, {decode_factor!r})")
        self.base = base
        self.prefill_factor = float(prefill_factor)
        self.decode_factor = float(decode_factor)

    def __getattr__(self, name: str) -> Any:
        if name == "base":  # not set yet (unpickling): avoid recursing
            raise AttributeError(name)
        return getattr(self.base, name)

    def prefill_s(self, prompt_lens: Sequence[int], cached_lens: Sequence[int] | None = None) -> float:
        """The wrapped prefill time times ``prefill_factor``."""
        if cached_lens is None:
            return float(self.base.prefill_s(prompt_lens)) * self.prefill_factor
        return float(self.base.prefill_s(prompt_lens, cached_lens)) * self.prefill_factor

    def decode_coeffs(self, batch: int, context_tokens: float | None = None) -> tuple[float, float]:
        """The wrapped ``(a_s, b_s)`` decode coefficients times ``decode_factor``."""
        if context_tokens is None:
            a, b = self.base.decode_coeffs(batch)
        else:
            a, b = self.base.decode_coeffs(batch, context_tokens)
        f = self.decode_factor
        return a * f, b * f

    def decode_s(self, context_lens: Sequence[int]) -> float:
        """The wrapped decode iteration time times ``decode_factor``."""
        return float(self.base.decode_s(context_lens)) * self.decode_factor
