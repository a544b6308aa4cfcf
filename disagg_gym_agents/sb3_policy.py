"""``SB3Policy``: a trained SB3 PPO / MaskablePPO model behind the shared ``predict`` interface."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.distributions import MaskableMultiCategoricalDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecNormalize

from disagg_gym.errors import UserError
from disagg_gym_agents.base import Policy
from disagg_gym_agents.callbacks import vecnormalize_path
from disagg_gym_agents.policies import actor_latent, normalised_logits
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
        if model.observation_space.shape != env.observation_space.shape or (
            model.observation_space.shape is None and model.observation_space != env.observation_space
        ):  # a Dict space has no shape: compare the spaces (the message named "None")
            def space(s: gym.Space) -> str:
                return str(s.shape) if s.shape is not None else str(s)

            raise UserError(
                f"{label}: model observation space {space(model.observation_space)} does not "
                f"match the env's {space(env.observation_space)} (trained on another env?)"
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
        policy: Any = model.policy  # SB3 types its modules loosely
        # The deterministic masked action without SB3's per-call scaffolding (see _masked_mode).
        self._fast = (
            self.maskable
            and isinstance(policy.action_dist, MaskableMultiCategoricalDistribution)
            and isinstance(policy.observation_space, gym.spaces.Box)
            and not is_image_space(policy.observation_space)  # preprocess_obs: a float cast only
        )
        if self._fast:
            self._dims = [int(n) for n in policy.action_dist.action_dims]
            self._obs_shape = tuple(policy.observation_space.shape)

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
            if deterministic and self._fast and state is None:
                act = self._masked_mode(obs, masks)
                if act is not None:
                    return act, state
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

    def _masked_mode(self, obs: Any, masks: np.ndarray) -> np.ndarray | None:
        """``MaskablePPO.predict(obs, deterministic=True, action_masks=masks)`` for one
        observation, bit for bit, without its per-call scaffolding; ``None`` where the input is
        not a single observation (the caller then asks SB3).

        SB3's call re-enters eval mode (a walk over every module), builds one
        ``MaskableCategorical`` per action dimension and re-normalises its logits three times
        through ``torch.distributions`` (argument checks included): skipping that took a
        SmallRoute-v3 test episode of the committed seed-0 checkpoint from 5.1 to 3.1 CPU
        seconds (identical KPIs). This runs the same network modules and the same
        tensor operations in the same order, so the logits, probabilities and argmax are those
        SB3 computes (``tests/agents/test_sb3_fast_predict.py`` compares them action by action):

        * features, latent and logits: ``extract_features`` (obs -> float, flatten),
          ``mlp_extractor.forward_actor`` (``policies.actor_latent``: the same logits), ``action_net``, viewed as ``(1, sum(nvec))``;
        * per action dimension, ``policies.normalised_logits``: ``Categorical`` normalises the
          logits (``x - logsumexp(x)``); masking keeps the normalised logits where allowed, puts
          -1e8 elsewhere and normalises again; the mode is ``argmax(softmax(.))``.
        """
        o = np.array(obs)
        if o.shape != self._obs_shape:
            return None
        policy: Any = self.model.policy
        if policy.training:  # SB3's predict re-enters eval mode on every call
            policy.set_training_mode(False)
        m = torch.as_tensor(masks)
        with torch.inference_mode():  # no_grad's numerics, less per-op bookkeeping
            features = policy.extract_features(
                torch.as_tensor(o.reshape((1, *self._obs_shape))), policy.pi_features_extractor
            )
            logits = policy.action_net(actor_latent(policy.mlp_extractor, features))
            modes = [torch.argmax(torch.softmax(y, dim=-1), dim=1) for y in normalised_logits(logits, self._dims, m)]
            actions = torch.stack(modes, dim=1)
        return actions.cpu().numpy().reshape((-1, *policy.action_space.shape)).squeeze(axis=0)

    def describe(self) -> str:
        """``sb3:<path>``."""
        return self.label
