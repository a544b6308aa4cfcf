"""``RewardWindow``: the env's own observer of request outcomes between two decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disagg_gym.workload.request import Request

MET, VIOLATED, REJECTED = "slo_goodput", "slo_violation", "rejection"
#: ``env.outcome_unit`` values: what one request's outcome counts in the reward terms.
OUTCOME_UNITS = ("request", "kilotoken")


def outcome_weight(req: Request, unit: str) -> float | int:
    """What ``req``'s outcome counts under ``unit``: 1, or its (prompt + output) tokens / 1000
    (the tokens ``slo_tokens_per_s`` counts when it meets both SLOs).
    """
    if unit == "request":
        return 1
    return (req.prompt_tokens + req.output_tokens) / 1000.0


class RewardWindow:
    """Counts outcomes since the last :meth:`drain` (the reward of one env step).

    Implements the cluster's observer hooks; the env owns it and is its only reader.

    Aggregate counters (``completed``, ``met_slo``, ``violations``, ``rejected``,
    ``output_tokens``) count every request that finished in the window; ``met_units``,
    ``violation_units`` and ``rejected_units`` are the same outcomes in ``unit``
    (``outcome_weight``: 1 per request, or kilotokens). The per-decision credit
    (``env.reward_mode: per_decision``) follows only requests registered with :meth:`track`
    (the ones a decision routed or rejected) and records, for each, the change of its credited
    outcome (in ``unit``) as soon as it is known:

    * a rejection: ``rejection`` +w (for a policy rejection, in the step that decided it);
    * the first token: the provisional outcome, ``slo_goodput`` +w if the TTFT SLO is met
      (assuming the TPOT SLO will be), else ``slo_violation`` +w (final: the SLO is missed);
    * completion: if the TPOT SLO was missed after a met TTFT, the correction
      ``slo_goodput`` -w, ``slo_violation`` +w.

    So each tracked request ends with exactly one of met / violated / rejected credited, and
    the episode total equals the aggregate count of the tracked requests (except requests
    still decoding at truncation, which keep their provisional ``slo_goodput``).

    Args:
        unit: ``"request"`` (default) or ``"kilotoken"`` (``env.outcome_unit``).
    """

    __slots__ = ("completed", "met_slo", "rejected", "violations", "output_tokens", "met_units",
                 "violation_units", "rejected_units", "unit", "_tracked", "credits")

    def __init__(self, unit: str = "request") -> None:
        if unit not in OUTCOME_UNITS:
            raise ValueError(f"outcome unit must be one of {', '.join(OUTCOME_UNITS)} (got {unit!r})")
        self.unit = unit
        self.completed = self.met_slo = self.rejected = self.violations = self.output_tokens = 0
        self.met_units: float | int = 0
        self.violation_units: float | int = 0
        self.rejected_units: float | int = 0
        self._tracked: dict[int, tuple[int, str | None]] = {}  # rid -> (decision index, provisional outcome)
        # (decision index, term, signed weight: +-1 or +-kilotokens, 0 for a confirmation, output tokens)
        self.credits: list[tuple[int, str, float | int, int]] = []

    def track(self, req: Request, decision: int) -> None:
        """Credits ``req``'s outcome to decision number ``decision`` (per-decision reward)."""
        self._tracked[req.rid] = (decision, None)

    def on_arrival(self, req: Request) -> None:
        """Nothing to count."""

    on_kv_transfer_done = on_arrival

    def on_first_token(self, req: Request) -> None:
        """Provisional per-decision outcome: met if the TTFT SLO is met, else violated."""
        entry = self._tracked.get(req.rid)
        if entry is None:
            return
        ttft = req.ttft_s
        out = MET if ttft is not None and ttft <= req.slo_ttft_s else VIOLATED
        self._tracked[req.rid] = (entry[0], out)
        self.credits.append((entry[0], out, outcome_weight(req, self.unit), 0))

    def on_completion(self, req: Request) -> None:
        """Counts a completion and whether it met both SLOs; settles its per-decision credit."""
        self.completed += 1
        self.output_tokens += req.output_tokens
        met = req.meets_slo()
        w = outcome_weight(req, self.unit)
        if met:
            self.met_slo += 1
            self.met_units += w
        else:
            self.violations += 1
            self.violation_units += w
        entry = self._tracked.pop(req.rid, None)
        if entry is None:
            return
        final = MET if met else VIOLATED
        if entry[1] is None:  # completed without a first-token event (not expected)
            self.credits.append((entry[0], final, w, req.output_tokens))
        elif entry[1] != final:
            self.credits.append((entry[0], entry[1], -w, 0))
            self.credits.append((entry[0], final, w, req.output_tokens))
        else:
            self.credits.append((entry[0], final, 0, req.output_tokens))  # confirmed: tokens only

    def on_reject(self, req: Request) -> None:
        """Counts a rejection; a tracked request's credit becomes ``rejection``."""
        self.rejected += 1
        w = outcome_weight(req, self.unit)
        self.rejected_units += w
        entry = self._tracked.pop(req.rid, None)
        if entry is None:
            return
        if entry[1] is not None:
            self.credits.append((entry[0], entry[1], -w, 0))
        self.credits.append((entry[0], REJECTED, w, 0))

    def drain(self) -> dict[str, float | int]:
        """Returns and resets the aggregate counters (the per-decision ``credits`` list is
        drained separately with :meth:`drain_credits`).
        """
        out = {"completed": self.completed, "met_slo": self.met_slo, "rejected": self.rejected,
               "violations": self.violations, "output_tokens": self.output_tokens,
               "met_units": self.met_units, "violation_units": self.violation_units,
               "rejected_units": self.rejected_units}
        self.completed = self.met_slo = self.rejected = self.violations = self.output_tokens = 0
        self.met_units = self.violation_units = self.rejected_units = 0
        return out

    def drain_credits(self) -> list[tuple[int, str, float | int, int]]:
        """Returns and clears the per-decision credit changes since the last call."""
        out = self.credits
        self.credits = []
        return out
