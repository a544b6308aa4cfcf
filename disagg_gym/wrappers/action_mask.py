"""``ActionMaskDict``: RLlib's ``{"observations", "action_mask"}`` observation form."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ActionMaskDict(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Puts the env's ``action_masks()`` next to the observation, as RLlib's masking module expects.

    The mask is the concatenation of the MultiDiscrete per-dimension masks, as float32 0/1.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)  # env.spec can rebuild the wrapped env
        gym.ObservationWrapper.__init__(self, env)
        if not isinstance(env.observation_space, spaces.Box):
            raise ValueError(f"ActionMaskDict needs a Box observation (got {env.observation_space})")
        n_mask = int(np.sum(env.action_space.nvec)) if isinstance(env.action_space, spaces.MultiDiscrete) else int(env.action_space.n)
        self.observation_space = spaces.Dict({
            "observations": env.observation_space,
            "action_mask": spaces.Box(0.0, 1.0, (n_mask,), dtype=np.float32),
        })

    def observation(self, observation: Any) -> dict[str, np.ndarray]:
        """Adds the current mask."""
        mask = self.env.unwrapped.action_masks().astype(np.float32)  # type: ignore[attr-defined]
        return {"observations": observation, "action_mask": mask}

    def action_masks(self) -> np.ndarray:
        """Forwards the boolean masks (for sb3-contrib)."""
        return self.env.unwrapped.action_masks()  # type: ignore[attr-defined]
