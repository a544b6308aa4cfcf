"""Composed heuristics ``<router>+<admission>``: any registered heuristic followed by any
admission controller (``disagg_gym.cluster.admission.ADMISSION``), issue #15 item 1.

The composed policy acts through the same action space as the learned agents: it routes with
its base heuristic and, where the controller refuses the chosen pair, takes the env's reject
value instead (``env.allow_reject`` must be on). Composed names resolve in the heuristic
registry without being listed (``POLICIES.get("jsq+ttft_guard")``), so every router composes
with every controller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from disagg_gym.cluster.admission import admission_params, make_admission
from disagg_gym.errors import UserError
from disagg_gym_agents.base import Policy

if TYPE_CHECKING:
    import gymnasium as gym


class AdmittedPolicy(Policy):
    """A heuristic whose route decisions pass an admission controller (base class of the
    composed classes the registry builds; use ``POLICIES.get("<router>+<admission>")``).

    Args:
        env: A disagg-gym env with a route step and ``env.allow_reject: true``.
        seed: Seed of the base heuristic.
        **kwargs: The controller's parameters (e.g. ``alpha=1.2``; defaults: the scenario's
            ``admission.<name>`` section, then the controller's own defaults); any other
            keyword goes to the base heuristic.
    """

    base_cls: ClassVar[type]
    admission_name: ClassVar[str] = "none"

    def __init__(self, env: gym.Env, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(env)
        if self.task in ("route", "joint") and not self.base.allow_reject:
            raise UserError(
                f"policy {self.name!r} rejects requests: it needs env.allow_reject: true "
                f"(the env {self.base.scenario.name!r} has it off)"
            )
        known = admission_params(self.admission_name)
        adm_kw = {k: v for k, v in kwargs.items() if k in known}
        base_kw = {k: v for k, v in kwargs.items() if k not in known}
        params = {**self.base.scenario.admission.get(self.admission_name, {}), **adm_kw}
        self.params = params
        self.controller = make_admission(self.admission_name, params)
        try:
            self.inner = self.base_cls(env, seed=seed, **base_kw)
        except UserError as exc:
            if not base_kw:
                raise
            # a keyword neither half takes: name the composed policy and the controller's too
            raise UserError(
                f"{self.name}: {exc}; admission {self.admission_name!r} takes: {', '.join(known) or 'none'}"
            ) from None
        self.rejected = 0

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """The base heuristic's action, or the reject action where the controller refuses."""
        action, state = self.inner.predict(observation, state, episode_start, deterministic)
        base = self.base
        cl = base.cluster
        if base.decision != "route" or cl is None or cl.pending is None:
            return action, state
        p, d = int(action[0]), int(action[1])
        if p >= base.n:  # the base policy rejected already
            return action, state
        if not self.controller.admit(cl, cl.pending, (p, d)):
            self.rejected += 1
            out = base.action_for(reject=True)
            if base.task == "joint":
                out[2:] = action[2:]
            return out, state
        return action, state

    def describe(self) -> str:
        """``<router>+<admission>`` (marked like its base when that is a reference)."""
        return f"{self.name} (oracle)" if self.upper_bound else self.name


_CACHE: dict[str, type] = {}


def composed_class(name: str, base_cls: type, admission: str) -> type:
    """The (cached) policy class of composed name ``name``."""
    hit = _CACHE.get(name)
    if hit is None:
        hit = _CACHE[name] = type(
            f"Admitted[{name}]",
            (AdmittedPolicy,),
            {
                "__doc__": f"{base_cls.__name__} followed by admission controller {admission!r}.",
                "name": name,
                "base_cls": base_cls,
                "admission_name": admission,
                "tasks": tuple(t for t in base_cls.tasks if t in ("route", "joint")),
                "upper_bound": bool(getattr(base_cls, "upper_bound", False)),
            },
        )
    return hit
