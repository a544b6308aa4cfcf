"""``make_policy``: a policy spec (``"heuristic:NAME"`` or ``"sb3:PATH"``) -> a policy bound to an env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from disagg_gym.extras import require
from disagg_gym_agents import baselines, heuristics  # noqa: F401  (importing them registers the heuristics)
from disagg_gym_agents.base import Policy
from disagg_gym_agents.registry import POLICIES, check_kwargs, check_policy_spec, parse_policy_spec


def make_policy(spec: str, env: gym.Env, *, seed: int = 0, **kwargs: Any) -> Policy:
    """Builds a policy bound to ``env``.

    Args:
        spec: ``"heuristic:NAME"`` (or just ``NAME``) or ``"sb3:PATH"`` to a model zip saved by
            ``disagg_gym_agents.ppo`` (PPO or MaskablePPO; the algorithm is read from its
            ``config.json`` or detected; needs the ``[rl]`` extra).
        env: A single (non-vectorised) disagg-gym env.
        seed: Seed of the policy's own randomness (random, p2c); combined with each episode's
            workload seed.
        **kwargs: Extra constructor arguments of the heuristic (e.g. ``prefill_fraction``).

    Raises:
        UserError: Unknown heuristic, missing model file, a heuristic that does not apply
            to the env's task, or an ``sb3:`` spec without the ``[rl]`` extra.
    """
    check_policy_spec(spec)
    kind, value = parse_policy_spec(spec)
    if kind == "heuristic":
        cls = POLICIES.get(value)
        check_kwargs(value, cls, kwargs, skip=("env", "seed"))
        return cls(env, seed=seed, **kwargs)
    require("rl", "torch", "stable_baselines3", "sb3_contrib")
    from disagg_gym_agents.sb3_policy import SB3Policy  # torch + SB3: the [rl] extra

    check_kwargs(spec, SB3Policy.load, kwargs, skip=("path", "env"))
    return SB3Policy.load(value, env, **kwargs)
