"""The policy interface of heuristic and learned policies (SB3's ``predict``); env helpers."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

import disagg_gym
from disagg_gym.config import parse_override
from disagg_gym.env.registration import resolve_env_id
from disagg_gym.errors import UserError
from disagg_gym.scenario import standard_names

TASKS = ("route", "allocate", "joint")


def parse_overrides(items: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["horizon_s=30", "workload.rate_per_s=8"]`` -> ``{"horizon_s": 30, ...}`` (values as YAML).

    Raises:
        ValueError: For an item without ``=`` or with an empty key (``ConfigError``).
    """
    return dict(parse_override(s) for s in items or [])


def check_env_id(env_id: str) -> str:
    """The registered Gymnasium id ``env_id`` names; raises ``UserError`` naming it if none.

    Accepts any registered id, and for the standard scenarios also the config name
    (``small-route``) and the ``disagg_gym:``-prefixed id. An old version of a standard id
    (``disagg/SmallRoute-v0``) is an error naming the current one.
    """
    if env_id in gym.registry:
        return env_id
    if env_id.endswith((".yaml", ".yml")):
        stem = Path(env_id).stem
        standard = f" (for the standard config {stem!r}: --env {stem})" if stem in standard_names() else ""
        raise UserError(
            f"{env_id!r} is a config file, not an env id: register it under an id in a module of yours "
            f"(gym.register('my/Cluster-v0', entry_point='disagg_gym.env.serving_env:DisaggServingEnv', "
            f"kwargs={{'config': {env_id!r}}})) and pass --import MODULE --env my/Cluster-v0 (docs/envs.md){standard}"
        )
    canonical = resolve_env_id(env_id)  # one line naming env_id if it names nothing
    if canonical not in gym.registry:  # pragma: no cover - registration is at import
        raise UserError(f"env id {canonical!r} is not registered (import disagg_gym first)")
    return canonical


def make_env(env_id: str, overrides: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make(env_id, overrides=...)`` after checking the id.

    Args:
        env_id: A registered id such as ``disagg/SmallRoute-v3``, or a standard config name
            (``small-route``).
        overrides: Dotted-key scenario overrides, e.g. ``{"horizon_s": 30}``.

    Raises:
        ValueError: Unknown env id or a bad override (one line naming the value).
    """
    return gym.make(check_env_id(env_id), overrides=dict(overrides or {}))


@runtime_checkable
class PredictsActions(Protocol):
    """Anything with SB3's ``predict`` signature (SB3 models, ``Policy`` subclasses)."""

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]: ...


class Policy:
    """A policy bound to one (non-vectorised) disagg-gym env.

    Subclasses implement ``predict``. A policy may read the env's public API
    (``env.unwrapped.decision``, ``cluster``, ``action_masks()``, ``action_for(...)``) on top of
    the observation, which is what makes heuristics and learned policies interchangeable in
    ``disagg_gym_agents.evaluation``.

    Attributes:
        name: Registry name (``"jsq"``) or a description of the learned model.
        tasks: Env tasks the policy applies to.
        upper_bound: ``True`` for reference policies that use information a real system does
            not have (the ``length_oracle`` router); reports mark them and exclude them from
            "best heuristic". Despite the attribute's name they are not bounds (the bounds are
            ``disagg-gym bounds``).

    Args:
        env: The env the policy acts in (wrappers allowed; ``env.unwrapped`` must be a
            ``DisaggServingEnv``).
    """

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = TASKS
    upper_bound: ClassVar[bool] = False

    def __init__(self, env: gym.Env) -> None:
        base = env.unwrapped
        if not hasattr(base, "action_for") or not hasattr(base, "task"):
            raise UserError(
                f"policies need a disagg-gym DisaggServingEnv (got {type(base).__name__})"
            )
        if base.task not in self.tasks:
            raise UserError(
                f"policy {self.name!r} does not apply to task {base.task!r} "
                f"(applies to: {', '.join(self.tasks)})"
            )
        self.env = env
        self.base = base

    @property
    def task(self) -> str:
        """The bound env's task: ``route``, ``allocate`` or ``joint``."""
        return str(self.base.task)

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Returns ``(action, state)`` for the env's current decision (SB3's signature).

        Args:
            observation: The env's latest observation (one env, not a batch).
            state: Recurrent state (unused by the shipped policies; passed through).
            episode_start: Episode-start flags (SB3 contract; heuristics detect new episodes
                from the env itself).
            deterministic: Greedy action for learned policies; heuristics are deterministic
                given their seed and the workload seed either way.
        """
        raise NotImplementedError

    def describe(self) -> str:
        """Short label for tables and CSV rows."""
        return f"{self.name} (oracle)" if self.upper_bound else self.name


def package_versions(packages: Sequence[str]) -> dict[str, str]:
    """Installed versions of ``packages`` (``not installed`` if absent), plus Python and disagg_gym.

    Saved next to every trained model and result so runs can be reproduced.
    """
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name.replace("-", "_")] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name.replace("-", "_")] = "not installed"
    out["disagg_gym"] = disagg_gym.__version__
    return out
