"""``SB3Policy``: a trained SB3 PPO / MaskablePPO model behind the shared ``predict`` interface."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecNormalize

from disagg_gym.errors import UserError
from disagg_gym_agents.base import Policy
from disagg_gym_agents.callbacks import vecnormalize_path
from disagg_gym_agents.registry import check_model_path


def is_maskable_zip(path: str | Path) -> bool:
    """Whether the SB3 zip at ``path`` holds a MaskablePPO policy."""
    data, _, _ = load_from_zip_file(str(path), load_data=True, device="cpu")
    cls = (data or {}).get("policy_class")
    return isinstance(cls, type) and issubclass(cls, MaskableActorCriticPolicy)


class SB3Policy(Policy):
    """A trained SB3 PPO / MaskablePPO model behind the shared ``predict`` interface.

    MaskablePPO gets ``action_masks=env.action_masks()`` on every call; observations are
    normalised with the saved VecNormalize statistics when the run used ``normalize``.

    Args:
        model: The loaded model.
        env: The env it acts in (its observation space must match the model's).
        obs_normalizer: A VecNormalize object (statistics only), or ``None``.
        label: Name shown in reports (``sb3:<path>``).
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        env: gym.Env,
        obs_normalizer: VecNormalize | None = None,
        label: str = "sb3",
    ) -> None:
        super().__init__(env)
        if model.observation_space.shape != env.observation_space.shape:
            raise UserError(
                f"{label}: model observation shape {model.observation_space.shape} does not "
                f"match the env's "
                f"{env.observation_space.shape} (trained on another env?)"
            )
        if tuple(np.asarray(model.action_space.nvec)) != tuple(np.asarray(env.action_space.nvec)):  # type: ignore[attr-defined]
            raise UserError(
                f"{label}: model action space {model.action_space} does not match "
                f"the env's {env.action_space}"
            )
        self.model = model
        self.maskable = isinstance(model, MaskablePPO)
        self.obs_normalizer = obs_normalizer
        self.label = label

    @classmethod
    def load(cls, path: str | Path, env: gym.Env, device: str = "cpu") -> SB3Policy:
        """Loads a model zip written by ``disagg_gym_agents.ppo`` (PPO or MaskablePPO, detected).

        Raises:
            ValueError: Missing file or a model for another env.
        """
        p = Path(path)
        check_model_path(p)
        algo = MaskablePPO if is_maskable_zip(p) else PPO
        model = algo.load(str(p), device=device)
        norm = None
        stats = vecnormalize_path(p)
        if stats.is_file():
            with stats.open("rb") as fh:
                norm = pickle.load(fh)
        return cls(model, env, norm, label=f"sb3:{p}")

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """The model's action for ``observation`` (masked for MaskablePPO)."""
        obs = observation
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer.normalize_obs(np.asarray(obs, dtype=np.float32))
        if self.maskable:
            masks = self.base.action_masks()
            return self.model.predict(
                obs,
                state=state,
                episode_start=episode_start,
                deterministic=deterministic,
                action_masks=masks,
            )  # type: ignore[call-arg]
        return self.model.predict(
            obs, state=state, episode_start=episode_start, deterministic=deterministic
        )

    def describe(self) -> str:
        """``sb3:<path>``."""
        return self.label
