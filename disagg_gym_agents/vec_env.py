"""Vectorised, Monitor-wrapped training and held-out evaluation envs for SB3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from disagg_gym.errors import UserError
from disagg_gym.wrappers.workload_seeds import (
    VALIDATION_SEED_OFFSET,
    HeldOutWorkloadSeeds,
    TrainingWorkloadSeeds,
)
from disagg_gym_agents.base import check_env_id, make_env


def _env_factory(
    env_id: str,
    overrides: dict[str, Any],
    seed: int,
    held_out: int,
    wrappers: list[tuple[type[gym.Wrapper], dict[str, Any]]] | None = None,
    held_out_offset: int = VALIDATION_SEED_OFFSET,
) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = make_env(env_id, overrides)
        env = (
            HeldOutWorkloadSeeds(env, held_out, held_out_offset)
            if held_out
            else TrainingWorkloadSeeds(env, seed)
        )
        env = Monitor(env)
        for cls, kwargs in wrappers or []:
            env = cls(env, **kwargs)
        return env

    return make


def make_vec_env(
    env_id: str,
    overrides: dict[str, Any] | None = None,
    *,
    n_envs: int = 1,
    seed: int = 0,
    vec_env: str = "dummy",
    held_out: int = 0,
    wrappers: list[tuple[type[gym.Wrapper], dict[str, Any]]] | None = None,
    held_out_offset: int = VALIDATION_SEED_OFFSET,
) -> VecEnv:
    """Vectorised, Monitor-wrapped disagg-gym envs.

    Args:
        env_id: Registered id.
        overrides: Env overrides.
        n_envs: Number of envs.
        seed: Base seed (env ``i`` draws its training workload seeds from ``seed + i``).
        vec_env: ``dummy`` (in process) or ``subproc`` (one process per env).
        held_out: If > 0, envs cycle through that many fixed workload seeds
            ``held_out_offset + k`` instead of drawing training seeds.
        wrappers: ``[(wrapper class, kwargs)]`` applied outside ``Monitor`` (``env_wrapper``).
        held_out_offset: First fixed seed (default: the validation seeds
            ``VALIDATION_SEED_OFFSET + k``, so periodic evaluation during training never sees the
            test seeds ``EVAL_SEED_OFFSET + k`` the leaderboard reports; issue #15).

    Raises:
        ValueError: Unknown ``vec_env`` or env id.
    """
    if vec_env not in ("dummy", "subproc"):
        raise UserError(f"vec_env must be 'dummy' or 'subproc' (got {vec_env!r})")
    check_env_id(env_id)
    fns = [
        _env_factory(env_id, dict(overrides or {}), seed + i, held_out, wrappers, held_out_offset)
        for i in range(n_envs)
    ]
    venv: VecEnv = SubprocVecEnv(fns) if vec_env == "subproc" and n_envs > 1 else DummyVecEnv(fns)
    venv.seed(seed)
    return venv
