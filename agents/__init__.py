"""Policies for the disagg-gym envs: heuristic baselines, PPO / MaskablePPO training, evaluation.

Every policy, heuristic or learned, exposes SB3's ``predict(obs, state, episode_start,
deterministic) -> (action, state)`` and is built bound to an env by name::

    from agents import make_policy
    policy = make_policy("heuristic:jsq", env)          # or "sb3:runs/x/model.zip"

``import agents`` stays light (no torch / SB3); training lives in ``agents.ppo``.
"""

from __future__ import annotations

from agents.base import Policy
from agents.registry import POLICIES, make_policy

__all__ = ["POLICIES", "Policy", "make_policy"]
