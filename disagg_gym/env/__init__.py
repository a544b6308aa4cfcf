"""Gymnasium adapter: decision points -> steps, observations, masks, rewards."""

from __future__ import annotations

__all__ = ["DisaggServingEnv"]


def __getattr__(name: str):  # lazy, so `import disagg_gym.env.config` stays light
    if name == "DisaggServingEnv":
        from disagg_gym.env.serving_env import DisaggServingEnv

        return DisaggServingEnv
    raise AttributeError(name)
