"""Admission controllers: accept or reject a routed request, composable with any router.

A router picks ``(prefill, decode)``; an admission controller then decides whether the cluster
takes the request at all (issue #15 item 1). They compose: ``AdmittedRouter(router,
controller)`` is itself a router, and a composed policy is named ``<router>+<admission>``
everywhere names appear (``disagg-gym simulate --policy jsq+ttft_guard``, the heuristic
registry, ``disagg-gym list --policies``). A rejected request ends with reason ``policy``, the
same reason as the env's reject action.

Controllers (one class each, registered in ``ADMISSION``):

* ``none`` -- admits everything.
* ``ttft_guard`` -- rejects when the chosen instance's predicted TTFT exceeds
  ``alpha`` x the request's TTFT SLO.
* ``queue_guard`` -- rejects when the chosen prefill instance already has
  ``max_queued_requests`` prompts queued (or ``max_queued_tokens`` prompt tokens).
* ``mooncake`` -- Mooncake-style early rejection (Qin et al., FAST'25, section 7): predicted
  TTFT on the prefill instance against ``ttft_alpha`` x the TTFT SLO *and* the decode
  instance's predicted time per output token once the request joins against ``tpot_alpha`` x
  the TPOT SLO.

Parameters come from keyword arguments: the scenario's ``admission`` section (``{name: {param:
value}}``), tuned values (``disagg-gym tune-baselines``) or the caller.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from disagg_gym.cluster.policies import predicted_tpot_s, predicted_ttft_s, queue_wait_s  # noqa: F401  (re-exported)
from disagg_gym.errors import UserError
from disagg_gym.registry import Registry

if TYPE_CHECKING:
    from disagg_gym.cluster.cluster import Cluster, Router
    from disagg_gym.workload.request import Request

ADMISSION: Registry[type] = Registry("admission controller")
"""Admission controller classes by name (``@ADMISSION.register("ttft_guard")``)."""

SEPARATOR = "+"
"""Joins a router and an admission controller in a composed name (``jsq+ttft_guard``)."""


class AdmissionController(Protocol):
    """Decides whether a routed request is admitted."""

    def admit(self, cluster: Cluster, req: Request, choice: tuple[int, int]) -> bool: ...


# ------------------------------------------------------------------ controllers
@ADMISSION.register("none")
@dataclass
class NoAdmission:
    """Admits every request (the routers' behaviour before admission control)."""

    def admit(self, cluster: Cluster, req: Request, choice: tuple[int, int]) -> bool:
        """Always ``True``."""
        return True


@ADMISSION.register("ttft_guard")
@dataclass
class TTFTGuard:
    """Rejects when the predicted TTFT on the chosen pair exceeds ``alpha`` x the TTFT SLO.

    Args:
        alpha: Factor on the request's TTFT SLO (> 0); above 1 admits requests predicted to
            miss by a little, below 1 keeps a margin.
        include_transfer: Add the KV-transfer estimate to the prediction (see
            :func:`predicted_ttft_s`).
    """

    alpha: float = 1.0
    include_transfer: bool = True

    def __post_init__(self) -> None:
        _positive("alpha", self.alpha)

    def admit(self, cluster: Cluster, req: Request, choice: tuple[int, int]) -> bool:
        """``predicted_ttft_s <= alpha * req.slo_ttft_s``."""
        p, d = choice
        return predicted_ttft_s(cluster, req, p, d, self.include_transfer) <= self.alpha * req.slo_ttft_s


@ADMISSION.register("queue_guard")
@dataclass
class QueueGuard:
    """Rejects when the chosen prefill instance's queue is at a threshold.

    Args:
        max_queued_requests: Reject when this many prompts are already queued (incl. the
            running batch) on the prefill instance (>= 1).
        max_queued_tokens: Also reject when the queued prompt tokens plus this prompt exceed
            it (0 = no token limit).
    """

    max_queued_requests: int = 16
    max_queued_tokens: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_queued_requests, bool) or not isinstance(self.max_queued_requests, int) or self.max_queued_requests < 1:
            raise UserError(f"queue_guard: max_queued_requests must be an integer >= 1 (got {self.max_queued_requests!r})")
        if isinstance(self.max_queued_tokens, bool) or not isinstance(self.max_queued_tokens, int) or self.max_queued_tokens < 0:
            raise UserError(f"queue_guard: max_queued_tokens must be an integer >= 0 (got {self.max_queued_tokens!r})")

    def admit(self, cluster: Cluster, req: Request, choice: tuple[int, int]) -> bool:
        """Queue below both thresholds."""
        pi = cluster.instances[choice[0]]
        if len(pi.pq) >= self.max_queued_requests:
            return False
        return not (self.max_queued_tokens and pi.pq_tokens + req.prompt_tokens > self.max_queued_tokens)


@ADMISSION.register("mooncake")
@dataclass
class MooncakeEarlyRejection:
    """Mooncake-style early rejection on predicted TTFT and TPOT (Mooncake, FAST'25, sec. 7).

    Mooncake's Conductor rejects a request at arrival when either the prefill instance's
    predicted TTFT or the decode instance's predicted TBT (time between tokens) would miss
    its SLO, so no prefill work is spent on requests that decode could not serve in time.

    Args:
        ttft_alpha: Factor on the TTFT SLO (> 0).
        tpot_alpha: Factor on the TPOT SLO (> 0).
    """

    ttft_alpha: float = 1.0
    tpot_alpha: float = 1.0

    def __post_init__(self) -> None:
        _positive("ttft_alpha", self.ttft_alpha)
        _positive("tpot_alpha", self.tpot_alpha)

    def admit(self, cluster: Cluster, req: Request, choice: tuple[int, int]) -> bool:
        """Both predictions within their SLO factors (colocated: the pair is one instance)."""
        p, d = choice
        if predicted_ttft_s(cluster, req, p, d) > self.ttft_alpha * req.slo_ttft_s:
            return False
        if req.output_tokens is not None and req.slo_tpot_s > 0:
            return predicted_tpot_s(cluster.instances[d], req) <= self.tpot_alpha * req.slo_tpot_s
        return True


def _positive(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v == float("inf"):
        raise UserError(f"{name} must be a positive finite number (got {v!r})")


# ------------------------------------------------------------------ composition
def split_name(name: str) -> tuple[str, str | None]:
    """``"jsq+ttft_guard"`` -> ``("jsq", "ttft_guard")``; ``"jsq"`` -> ``("jsq", None)``.

    Raises:
        UserError: For an empty part or more than one ``+``, or an unknown admission controller.
    """
    if SEPARATOR not in name:
        return name, None
    parts = name.split(SEPARATOR)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise UserError(f"policy {name!r}: expected <router>{SEPARATOR}<admission> (e.g. jsq+ttft_guard)")
    ADMISSION.get(parts[1])  # names the bad controller and lists the valid ones
    return parts[0], parts[1]


def admission_params(name: str) -> tuple[str, ...]:
    """The keyword arguments controller ``name`` takes."""
    cls = ADMISSION.get(name)
    return tuple(f.name for f in fields(cls)) if hasattr(cls, "__dataclass_fields__") else tuple(
        inspect.signature(cls).parameters
    )


def make_admission(name: str, params: dict[str, Any] | None = None) -> AdmissionController:
    """Builds controller ``name`` with ``params``; unknown parameters are a ``UserError``."""
    cls = ADMISSION.get(name)
    params = dict(params or {})
    known = admission_params(name)
    bad = [k for k in params if k not in known]
    if bad:
        raise UserError(
            f"admission {name!r}: unknown parameter {bad[0]!r}; expected one of: {', '.join(known) or '(none)'}"
        )
    ctrl: AdmissionController = cls(**params)
    return ctrl


class AdmittedRouter:
    """A router followed by an admission controller: itself a ``Router``.

    Args:
        router: Chooses the pair.
        controller: Decides whether the chosen pair takes the request.
        name: The composed name (``jsq+ttft_guard``), for reports.
    """

    def __init__(self, router: Router, controller: AdmissionController, name: str = "") -> None:
        self.router = router
        self.controller = controller
        self.name = name
        self.rejected = 0

    def route(self, cluster: Cluster, req: Request) -> tuple[int, int] | None:
        """The router's pair, or ``None`` (reject) when the controller refuses it."""
        choice = self.router.route(cluster, req)
        if choice is None:
            return None
        if not self.controller.admit(cluster, req, choice):
            self.rejected += 1
            return None
        return choice
