"""``RewardWindow``: the env's own observer of request outcomes between two decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disagg_gym.workload.request import Request


class RewardWindow:
    """Counts outcomes since the last :meth:`drain` (the reward of one env step).

    Implements the cluster's observer hooks; the env owns it and is its only reader.
    """

    __slots__ = ("completed", "met_slo", "rejected", "violations", "output_tokens")

    def __init__(self) -> None:
        self.completed = self.met_slo = self.rejected = self.violations = self.output_tokens = 0

    def on_arrival(self, req: Request) -> None:
        """Nothing to count."""

    on_first_token = on_kv_transfer_done = on_arrival

    def on_completion(self, req: Request) -> None:
        """Counts a completion and whether it met both SLOs."""
        self.completed += 1
        self.output_tokens += req.output_tokens
        if req.meets_slo():
            self.met_slo += 1
        else:
            self.violations += 1

    def on_reject(self, req: Request) -> None:
        """Counts a rejection."""
        self.rejected += 1

    def drain(self) -> dict[str, int]:
        """Returns and resets the counters."""
        out = {"completed": self.completed, "met_slo": self.met_slo, "rejected": self.rejected,
               "violations": self.violations, "output_tokens": self.output_tokens}
        self.completed = self.met_slo = self.rejected = self.violations = self.output_tokens = 0
        return out
