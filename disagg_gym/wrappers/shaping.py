"""``QueueShaping``: potential-based reward shaping on load imbalance (a training aid)."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym

from disagg_gym.errors import UserError


class QueueShaping(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Potential-based reward shaping on load imbalance (Ng, Harada & Russell, 1999); training only.

    The env rewards a routing decision only when its request finishes, hundreds of decisions
    later and mixed with everyone else's completions, which leaves PPO almost no signal per
    decision. This wrapper adds ``F = gamma * phi(s') - phi(s)`` with

        phi(s) = -wait_weight * sum_i wait_i**2 - pressure_weight * sum_j pressure_j**2,

    ``wait_i`` the predicted prefill wait (s) of prefill instance ``i`` and ``pressure_j`` the
    slot/KV pressure of decode instance ``j`` (``disagg_gym.cluster.policies``). A decision
    that lengthens an already long queue loses potential at once. Potential-based shaping
    leaves the optimal policy unchanged; ``gamma`` should equal the algorithm's. KPIs and
    ``info["reward_terms"]`` are untouched (``info["shaping"]`` holds ``F``); evaluation
    never uses this wrapper.

    Args:
        env: A disagg-gym env.
        gamma: Discount of the shaping term; ``train`` fills in the algorithm's ``gamma`` when
            the YAML leaves it out.
        wait_weight: Weight of the squared prefill waits (1/s^2).
        pressure_weight: Weight of the squared decode pressures.
    """

    def __init__(
        self,
        env: gym.Env,
        gamma: float = 0.99,
        wait_weight: float = 1.0,
        pressure_weight: float = 1.0,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(  # env.spec can rebuild the wrapped env
            self, gamma=gamma, wait_weight=wait_weight, pressure_weight=pressure_weight
        )
        gym.Wrapper.__init__(self, env)
        if not 0.0 < gamma <= 1.0:
            raise UserError(f"gamma must be in (0, 1] (got {gamma!r})")
        if wait_weight < 0 or pressure_weight < 0:
            raise UserError(f"weights must be >= 0 (got {wait_weight!r}, {pressure_weight!r})")
        self.gamma = float(gamma)
        self.wait_weight = float(wait_weight)
        self.pressure_weight = float(pressure_weight)
        self._phi = 0.0

    def potential(self) -> float:
        """``phi`` of the current cluster state."""
        from disagg_gym.env.potential import load_potential

        return load_potential(self.env.unwrapped.cluster, self.wait_weight, self.pressure_weight)  # type: ignore[attr-defined]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Resets and records the initial potential."""
        out = self.env.reset(seed=seed, options=options)
        self._phi = self.potential()
        return out

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Steps and adds the shaping term (potential 0 after a true termination)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        phi = 0.0 if terminated else self.potential()
        f = self.gamma * phi - self._phi
        self._phi = phi
        info["shaping"] = f
        return obs, float(reward) + f, terminated, truncated, info


class TruncationAdvance(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Keeps the predicted advances of in-flight requests at a truncated episode end.

    Under ``env.reward_mode: predicted`` the env takes back, in an episode's last reward, the
    advances of requests whose outcome has not been credited yet (so the return equals
    ``per_decision``'s). At a *truncation* a learner that bootstraps (target
    ``r_T + gamma * V(s_T)``: SB3, CleanRL) also counts those requests' future through
    ``V(s_T)``, so the take-back is subtracted twice. This wrapper adds
    ``info["advance_taken_back"]`` back to the reward of a truncated last step (a terminated
    one keeps it: nothing is in flight after a drained trace). Training only; KPIs,
    ``info["reward_terms"]`` and evaluation are untouched (``info["advance_kept"]`` holds what
    was added).
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Steps; on a truncated last step adds the advances taken back to the reward."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if truncated and not terminated and "advance_taken_back" in info:
            kept = float(info["advance_taken_back"])
            info["advance_kept"] = kept
            return obs, float(reward) + kept, terminated, truncated, info
        return obs, reward, terminated, truncated, info
