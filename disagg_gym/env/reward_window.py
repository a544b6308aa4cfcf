"""``RewardWindow``: the env's own observer of request outcomes between two decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from disagg_gym.workload.request import Request

MET, VIOLATED, REJECTED = "slo_goodput", "slo_violation", "rejection"


class RewardWindow:
    """Counts outcomes since the last :meth:`drain` (the reward of one env step).

    Implements the cluster's observer hooks; the env owns it and is its only reader.

    Aggregate counters (``completed``, ``met_slo``, ``violations``, ``rejected``,
    ``output_tokens``) count every request that finished in the window. The per-decision
    credit (``env.reward_mode: per_decision``) follows only requests registered with
    :meth:`track` (the ones a decision routed or rejected) and records, for each, the change
    of its credited outcome as soon as it is known:

    * a rejection: ``rejection`` +1 (for a policy rejection, in the step that decided it);
    * the first token: the provisional outcome, ``slo_goodput`` +1 if the TTFT SLO is met
      (assuming the TPOT SLO will be), else ``slo_violation`` +1 (final: the SLO is missed);
    * completion: if the TPOT SLO was missed after a met TTFT, the correction
      ``slo_goodput`` -1, ``slo_violation`` +1.

    So each tracked request ends with exactly one of met / violated / rejected credited, and
    the episode total equals the aggregate count of the tracked requests (except requests
    still decoding at truncation, which keep their provisional ``slo_goodput``).
    """

    __slots__ = ("completed", "met_slo", "rejected", "violations", "output_tokens", "_tracked", "credits")

    def __init__(self) -> None:
        self.completed = self.met_slo = self.rejected = self.violations = self.output_tokens = 0
        self._tracked: dict[int, tuple[int, str | None]] = {}  # rid -> (decision index, provisional outcome)
        self.credits: list[tuple[int, str, int, int]] = []  # (decision index, term, +1/-1, output tokens)

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
        self.credits.append((entry[0], out, 1, 0))

    def on_completion(self, req: Request) -> None:
        """Counts a completion and whether it met both SLOs; settles its per-decision credit."""
        self.completed += 1
        self.output_tokens += req.output_tokens
        met = req.meets_slo()
        if met:
            self.met_slo += 1
        else:
            self.violations += 1
        entry = self._tracked.pop(req.rid, None)
        if entry is None:
            return
        final = MET if met else VIOLATED
        if entry[1] is None:  # completed without a first-token event (not expected)
            self.credits.append((entry[0], final, 1, req.output_tokens))
        elif entry[1] != final:
            self.credits.append((entry[0], entry[1], -1, 0))
            self.credits.append((entry[0], final, 1, req.output_tokens))
        else:
            self.credits.append((entry[0], final, 0, req.output_tokens))  # confirmed: tokens only

    def on_reject(self, req: Request) -> None:
        """Counts a rejection; a tracked request's credit becomes ``rejection``."""
        self.rejected += 1
        entry = self._tracked.pop(req.rid, None)
        if entry is None:
            return
        if entry[1] is not None:
            self.credits.append((entry[0], entry[1], -1, 0))
        self.credits.append((entry[0], REJECTED, 1, 0))

    def drain(self) -> dict[str, int]:
        """Returns and resets the aggregate counters (the per-decision ``credits`` list is
        drained separately with :meth:`drain_credits`).
        """
        out = {"completed": self.completed, "met_slo": self.met_slo, "rejected": self.rejected,
               "violations": self.violations, "output_tokens": self.output_tokens}
        self.completed = self.met_slo = self.rejected = self.violations = self.output_tokens = 0
        return out

    def drain_credits(self) -> list[tuple[int, str, int, int]]:
        """Returns and clears the per-decision credit changes since the last call."""
        out = self.credits
        self.credits = []
        return out
