"""Policies for the disagg-gym envs: heuristic baselines, PPO / MaskablePPO training, evaluation.

Every policy, heuristic or learned, exposes SB3's ``predict(obs, state, episode_start,
deterministic) -> (action, state)`` and is built bound to an env by name::

    from disagg_gym_agents import make_policy
    policy = make_policy("heuristic:jsq", env)          # or "sb3:runs/x/model.zip"

``import disagg_gym_agents`` stays light (no torch / SB3); training lives in ``disagg_gym_agents.ppo``
(the ``[rl]`` extra).
"""

from __future__ import annotations

from disagg_gym_agents.base import Policy
from disagg_gym_agents.factory import make_policy
from disagg_gym_agents.registry import POLICIES

__all__ = ["POLICIES", "Policy", "make_policy"]
