"""``RewardWindow``: the env's own observer of request outcomes between two decisions."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disagg_gym.workload.request import Request

MET, VIOLATED, REJECTED = "slo_goodput", "slo_violation", "rejection"
#: ``env.outcome_unit`` values: what one request's outcome counts in the reward terms.
OUTCOME_UNITS = ("request", "kilotoken")
#: ``env.violation_at`` values: when the aggregate reward counts a missed SLO.
VIOLATION_AT = ("completion", "ttft_deadline")


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

    With ``violation_at="ttft_deadline"`` (the aggregate counters only; the per-decision credit
    is unchanged) a request is counted as a violation in the window in which its TTFT deadline
    (arrival + TTFT SLO) passes without a first token, not when it completes: it cannot meet
    its SLO any more. Its later completion or rejection is charged nothing more
    (``completed``, ``output_tokens`` and ``rejected`` still count the event). A policy that
    starves the queues is then charged while they grow, not only for the few requests that
    finish late (under ``"completion"`` a request still queued at the end of the episode is
    never counted).

    Args:
        unit: ``"request"`` (default) or ``"kilotoken"`` (``env.outcome_unit``).
        violation_at: ``"completion"`` (default) or ``"ttft_deadline"`` (``env.violation_at``).
    """

    __slots__ = ("completed", "met_slo", "rejected", "violations", "output_tokens", "met_units",
                 "violation_units", "rejected_units", "unit", "_tracked", "credits", "_deadline", "_due",
                 "_late")

    def __init__(self, unit: str = "request", violation_at: str = "completion") -> None:
        if unit not in OUTCOME_UNITS:
            raise ValueError(f"outcome unit must be one of {', '.join(OUTCOME_UNITS)} (got {unit!r})")
        if violation_at not in VIOLATION_AT:
            raise ValueError(f"violation_at must be one of {', '.join(VIOLATION_AT)} (got {violation_at!r})")
        self.unit = unit
        self._deadline = violation_at == "ttft_deadline"
        self._due: list[tuple[float, int, Request]] = []  # (TTFT deadline, rid, request), a heap
        self._late: set[int] = set()  # rids counted as violations at their deadline, not yet finished
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
        """Nothing to count (under ``ttft_deadline``: remembers the request's TTFT deadline)."""
        if self._deadline:
            heapq.heappush(self._due, (req.arrival_s + req.slo_ttft_s, req.rid, req))

    def on_kv_transfer_done(self, req: Request) -> None:
        """Nothing to count."""

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
        if self._late and req.rid in self._late:
            self._late.discard(req.rid)  # its violation was counted at its TTFT deadline
        elif met:
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
        if self._late and req.rid in self._late:
            self._late.discard(req.rid)  # charged as a violation at its TTFT deadline
        else:
            self.rejected_units += w
        entry = self._tracked.pop(req.rid, None)
        if entry is None:
            return
        if entry[1] is not None:
            self.credits.append((entry[0], entry[1], -w, 0))
        self.credits.append((entry[0], REJECTED, w, 0))

    def drain(self, now: float | None = None) -> dict[str, float | int]:
        """Returns and resets the aggregate counters (the per-decision ``credits`` list is
        drained separately with :meth:`drain_credits`). Under ``ttft_deadline`` the requests
        whose TTFT deadline lies before ``now`` without a first token are counted as violations
        first (``now`` is then required).
        """
        if self._deadline:
            if now is None:
                raise ValueError("violation_at ttft_deadline: drain needs the current time")
            due = self._due
            late = self._late
            while due and due[0][0] < now:
                _, rid, req = heapq.heappop(due)
                if req.first_token_s is None and req.reject_reason is None:  # (no first token: not completed)
                    late.add(rid)
                    self.violations += 1
                    self.violation_units += outcome_weight(req, self.unit)
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
