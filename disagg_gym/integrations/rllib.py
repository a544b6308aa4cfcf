"""Ray RLlib integration: env registration under the Gymnasium ids and a masked-PPO config.

Needs the ``ray`` extra (``pip install "disagg-gym[ray]"``); nothing else in the project
imports ``ray``. ``ray[rllib]`` 2.60 pins ``gymnasium==1.2.2``, hence the separate
``.venv-ray`` of ``scripts/setup_ray.sh``.

RLlib sees every env through ``ActionMaskDict``: observations are
``{"observations": Box, "action_mask": Box(0, 1, (sum(nvec),))}``, the form of RLlib's
action-masking RLModule. The mask is the concatenation of the MultiDiscrete per-dimension
masks, and RLlib's MultiDiscrete distribution (``TorchMultiCategorical``) takes the
concatenation of the per-dimension logits in the same order, so the shipped
``ActionMaskingTorchRLModule`` (which adds ``log(mask)`` clamped at ``FLOAT_MIN`` to the
action-distribution inputs) masks every dimension correctly without a custom subclass
(``tests/ray/test_integrations.py`` checks that no masked value is ever sampled).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule
from ray.tune.registry import register_env

import disagg_gym  # noqa: F401 - registers the Gymnasium ids
from disagg_gym.env.registration import register_all, registered_ids, resolve_env_id
from disagg_gym.errors import UserError
from disagg_gym.wrappers import ActionMaskDict

EnvWrap = Callable[[gym.Env, Mapping[str, Any]], gym.Env]
"""``wrap(env, env_context) -> env``: applied inside ``ActionMaskDict`` (e.g. training seeds)."""


def _check_env_id(env_id: str) -> None:
    """A registered id (the standard ones and their ``-short`` / ``-fine`` variants), else one
    line: an old version names the current id, a config name the id to pass.
    """
    if env_id in gym.registry:
        return
    current = resolve_env_id(env_id)  # raises naming env_id (or the id that replaced it)
    raise UserError(f"env {env_id!r}: pass the env id {current!r}")


def env_creator(env_id: str, wrap: EnvWrap | None = None) -> Callable[[Mapping[str, Any]], gym.Env]:
    """RLlib env creator of ``env_id``: ``ActionMaskDict(gymnasium.make(env_id, **config))``.

    ``config`` is RLlib's ``env_config`` (an ``EnvContext``; only its user keys are passed, e.g.
    ``{"overrides": {"horizon_s": 30}}``). The horizon is applied inside the env, so no
    ``TimeLimit`` is added.

    Args:
        env_id: A registered disagg-gym id.
        wrap: Optional wrapper factory applied to the raw env before ``ActionMaskDict``.

    Raises:
        ValueError: ``env_id`` is not a registered disagg-gym id.
    """
    _check_env_id(env_id)

    def create(config: Mapping[str, Any]) -> gym.Env:
        register_all()  # a fresh Ray worker process may not have imported disagg_gym yet
        env = gym.make(env_id, **dict(config or {}))
        if wrap is not None:
            env = wrap(env, config)
        return ActionMaskDict(env)

    return create


def register_rllib_envs(ids: Sequence[str] | None = None) -> list[str]:
    """Registers disagg-gym ids with ``ray.tune.registry.register_env`` under the same names.

    Call it in the driver before building an algorithm (Ray ships the creators to the
    workers). Idempotent.

    Args:
        ids: Env ids (default: every standard id, ``registered_ids()``).

    Returns:
        The registered names.
    """
    names = list(ids) if ids is not None else registered_ids()
    for env_id in names:
        register_env(env_id, env_creator(env_id))
    return names


def build_ppo_config(
    env_id: str,
    num_env_runners: int = 2,
    seed: int = 0,
    *,
    env_config: Mapping[str, Any] | None = None,
    rllib_env: str | None = None,
    num_envs_per_env_runner: int = 1,
    train_batch_size: int = 2048,
    minibatch_size: int = 128,
    num_epochs: int = 5,
    lr: float = 3e-4,
    gamma: float = 0.995,
    lambda_: float = 0.95,
    clip_param: float = 0.2,
    entropy_coeff: float = 0.01,
    vf_loss_coeff: float = 0.5,
    grad_clip: float = 0.5,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    callbacks: type | None = None,
) -> PPOConfig:
    """RLlib PPO (new API stack) on ``env_id`` with per-dimension action masking.

    Defaults are RLlib-side choices, not the SB3 entries of
    ``disagg_gym_agents/hyperparams/maskable_ppo.yml``: separate 64x64 tanh policy and value
    networks, gamma 0.995, learning rate 3e-4, 5 epochs of minibatch 128, entropy 0.01.

    Args:
        env_id: A registered disagg-gym id (its name must be registered with RLlib, see
            ``register_rllib_envs``; this function registers it if ``rllib_env`` is unset).
        num_env_runners: Remote env-runner actors sampling in parallel (0: the driver samples).
        seed: Seed of RLlib (torch, numpy) and of each runner's first env reset
            (``seed + worker_index``, + vector index).
        env_config: ``gymnasium.make`` keyword arguments, e.g. ``{"overrides": {...}}``.
        rllib_env: Name registered with RLlib to use instead of ``env_id`` (e.g. a creator
            with training wrappers).
        num_envs_per_env_runner: Envs vectorised inside each runner.
        train_batch_size: Env steps per training iteration.
        minibatch_size: SGD minibatch size.
        num_epochs: SGD passes over each batch.
        lr: Learning rate.
        gamma: Discount.
        lambda_: GAE lambda.
        clip_param: PPO clip range.
        entropy_coeff: Entropy bonus.
        vf_loss_coeff: Value-loss weight.
        grad_clip: Global gradient-norm clip.
        hidden_sizes: Hidden layers of the policy and of the (separate) value network.
        activation: Hidden activation (``tanh``, ``relu``, ...).
        callbacks: An ``RLlibCallback`` subclass (e.g. ``disagg_gym_agents.rllib_train.KPICallback``).

    Raises:
        ValueError: An unknown env id or a non-positive size.
    """
    for name, v in (("train_batch_size", train_batch_size), ("minibatch_size", minibatch_size),
                    ("num_epochs", num_epochs), ("num_envs_per_env_runner", num_envs_per_env_runner)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{name} must be a positive integer (got {v!r})")
    if isinstance(num_env_runners, bool) or not isinstance(num_env_runners, int) or num_env_runners < 0:
        raise UserError(f"num_env_runners must be a non-negative integer (got {num_env_runners!r})")
    if rllib_env is None:
        register_rllib_envs([env_id])
    else:
        _check_env_id(env_id)
    config = (
        PPOConfig()
        .environment(env=rllib_env or env_id, env_config=dict(env_config or {}))
        .framework("torch")
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            num_cpus_per_env_runner=1,
        )
        .training(
            train_batch_size_per_learner=train_batch_size,
            minibatch_size=min(minibatch_size, train_batch_size),
            num_epochs=num_epochs,
            lr=lr,
            gamma=gamma,
            lambda_=lambda_,
            clip_param=clip_param,
            entropy_coeff=entropy_coeff,
            vf_loss_coeff=vf_loss_coeff,
            grad_clip=grad_clip,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=ActionMaskingTorchRLModule,
                model_config=DefaultModelConfig(
                    fcnet_hiddens=list(hidden_sizes),
                    fcnet_activation=activation,
                    vf_share_layers=False,
                ),
            )
        )
        .debugging(seed=seed)
    )
    if callbacks is not None:
        config = config.callbacks(callbacks)
    return config
