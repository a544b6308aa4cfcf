"""Oracles shared by the env tests: computed from a request's own fields, never from the env's
bookkeeping. (pytest puts this folder on ``sys.path``: ``from _oracles import ...``.)"""

from __future__ import annotations

from disagg_gym.types import RequestState


def request_outcome(req) -> str | None:
    """``"rejected"``, ``"met"`` (both SLOs), ``"violated"``, or ``None`` (not finished), from
    the request's state and timestamps."""
    if req.state is RequestState.REJECTED:
        return "rejected"
    if req.completion_s is None:
        return None
    ttft = req.first_token_s - req.arrival_s
    tpot = 0.0 if req.output_tokens <= 1 else (req.completion_s - req.first_token_s) / (req.output_tokens - 1)
    return "met" if ttft <= req.slo_ttft_s and tpot <= req.slo_tpot_s else "violated"
