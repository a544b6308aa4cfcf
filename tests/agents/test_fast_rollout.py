"""The instance policies' rollout ``forward`` equals SB3's, bit for bit.

The oracle is sb3_contrib's own ``MaskableActorCriticPolicy.forward`` (and SB3's
``ActorCriticPolicy.forward`` for PPO's ``InstancePolicy``: their distribution objects): on the
same observations, masks and random-number state, the fast path must return
the same actions, values and log-probabilities (same dtype, shape and bits) and leave the
generator in the same state; and a short MaskablePPO training run must end with the same
weights either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy

from disagg_gym_agents.base import make_env
from disagg_gym_agents.policies import InstancePolicy, MaskableInstancePolicy, layout_of


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _model(env_id: str, overrides: dict[str, Any], maskable: bool = True, **kw: Any) -> tuple[Any, Any]:
    env = make_env(env_id, overrides)
    kwargs = {"layout": layout_of(env), "hidden": 16, "prior_scale": 2.0, **kw}
    algo, policy = (MaskablePPO, MaskableInstancePolicy) if maskable else (PPO, InstancePolicy)
    model = algo(policy, env, seed=0, device="cpu", n_steps=64, batch_size=32, n_epochs=2, policy_kwargs=kwargs)
    return env, model


def _random_masks(rng: np.random.Generator, nvec: list[int], batch: int) -> np.ndarray:
    """Random masks with at least one valid value per dimension (some with exactly one)."""
    parts = []
    for n in nvec:
        m = rng.random((batch, n)) < rng.uniform(0.05, 0.9)
        m[np.arange(batch), rng.integers(0, n, batch)] = True
        parts.append(m)
    return np.concatenate(parts, axis=1)


def _both(policy: Any, obs: torch.Tensor, masks: np.ndarray | None, deterministic: bool,
          seed: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    kw = {} if masks is None else {"action_masks": masks}
    sb3 = MaskableActorCriticPolicy.forward if masks is not None else ActorCriticPolicy.forward
    torch.manual_seed(seed)
    with torch.no_grad():
        fast = policy(obs, deterministic=deterministic, **kw)
    state_fast = torch.get_rng_state()
    torch.manual_seed(seed)
    with torch.no_grad():
        ref = sb3(policy, obs, deterministic=deterministic, **kw)
    assert torch.equal(state_fast, torch.get_rng_state()), "the fast path drew a different number of randoms"
    return fast, ref


@pytest.mark.parametrize(
    ("env_id", "overrides", "kw"),
    [
        ("disagg/SmallRoute-v3", {}, {}),
        ("disagg/SmallRoute-v3", {}, {"relative_reject": True}),
        ("disagg/LargeJoint-v3", {}, {}),  # joint: route + allocation dimensions
        ("disagg/EnergyAllocate-v3", {}, {}),  # allocation only
        ("disagg/SmallRoute-v3", {"env.obs_mode": "padded"}, {"instance_bias": False}),
    ],
)
@pytest.mark.parametrize("maskable", [True, False], ids=["MaskablePPO", "PPO"])
def test_forward_matches_sb3_on_random_inputs(env_id: str, overrides: dict[str, Any], kw: dict[str, Any],
                                              maskable: bool) -> None:
    env, model = _model(env_id, overrides, maskable, **kw)
    policy = model.policy
    policy.set_training_mode(False)
    nvec = [int(n) for n in env.action_space.nvec]
    rng = np.random.default_rng(7)
    low, high = -2.0, 5.0
    for trial in range(30):
        batch = 1 if trial < 20 else int(rng.integers(2, 6))
        obs = torch.as_tensor(rng.uniform(low, high, (batch, *env.observation_space.shape)).astype(np.float32))
        masks = _random_masks(rng, nvec, batch) if maskable else None
        for deterministic in (False, True):
            fast, ref = _both(policy, obs, masks, deterministic, seed=trial)
            for a, b in zip(fast, ref):
                assert a.dtype == b.dtype and a.shape == b.shape
                assert torch.equal(a, b), (trial, deterministic, a, b)


def test_forward_with_gradients_or_without_masks_is_sb3s() -> None:
    env, model = _model("disagg/SmallRoute-v3", {})
    policy = model.policy
    obs = torch.as_tensor(env.reset(seed=0)[0][None])
    masks = env.unwrapped.action_masks()[None]
    torch.manual_seed(1)
    actions, values, log_prob = policy(obs, action_masks=masks)  # gradients on: SB3's path
    assert values.requires_grad and log_prob.requires_grad
    torch.manual_seed(1)
    with torch.no_grad():
        ref = MaskableActorCriticPolicy.forward(policy, obs, action_masks=masks)
    assert torch.equal(actions, ref[0]) and torch.equal(values.detach(), ref[1])


@pytest.mark.parametrize(("env_id", "maskable"), [("disagg/SmallRoute-v3", True), ("disagg/LargeJoint-v3", True),
                                                  ("disagg/SmallRoute-v3", False)])
def test_training_ends_with_the_same_weights(env_id: str, maskable: bool, tmp_path: Path) -> None:
    weights = []
    for fast in (True, False):
        env, model = _model(env_id, {"horizon_s": 30}, maskable)
        model.policy.fast_rollout = fast
        model.learn(total_timesteps=192)
        weights.append({k: v.clone() for k, v in model.policy.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
