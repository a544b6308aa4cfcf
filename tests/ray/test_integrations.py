"""RLlib env registration, the ActionMaskDict observation and per-dimension masking."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray")

import gymnasium as gym  # noqa: E402
from gymnasium import spaces  # noqa: E402

from disagg_gym.env.registration import registered_ids  # noqa: E402
from disagg_gym.integrations.rllib import (  # noqa: E402
    build_ppo_config,
    env_creator,
    register_rllib_envs,
)


def test_register_rllib_envs_registers_every_id() -> None:
    from ray.tune.registry import ENV_CREATOR, _global_registry

    names = register_rllib_envs()
    assert names == registered_ids()
    for env_id in names:
        assert _global_registry.contains(ENV_CREATOR, env_id)


@pytest.mark.parametrize("env_id", ["disagg/SmallRoute-v3", "disagg/LargeJoint-v3"])
def test_creator_gives_action_mask_dict(env_id: str) -> None:
    env = env_creator(env_id)({"overrides": {"horizon_s": 2}})
    base = gym.make(env_id, overrides={"horizon_s": 2})
    space = env.observation_space
    assert isinstance(space, spaces.Dict) and set(space.spaces) == {"observations", "action_mask"}
    assert space["observations"] == base.observation_space
    n = int(np.sum(base.action_space.nvec))
    assert space["action_mask"] == spaces.Box(0.0, 1.0, (n,), dtype=np.float32)
    obs, _ = env.reset(seed=3)
    for _ in range(20):
        assert space.contains(obs)
        np.testing.assert_array_equal(obs["action_mask"], env.unwrapped.action_masks().astype(np.float32))
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            break
    env.close()
    base.close()


def test_unknown_id_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown env id"):
        env_creator("disagg/Nope-v0")


def test_masking_module_never_samples_a_masked_value_of_any_dimension() -> None:
    import torch

    config = build_ppo_config("disagg/SmallRoute-v3", num_env_runners=0)
    env = env_creator("disagg/SmallRoute-v3")({})
    module = config.get_rl_module_spec(env=env).build()
    nvec = [int(n) for n in env.action_space.nvec]
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(64, sum(nvec))
    mask[:, 0] = 0.0  # first dimension: value 0 masked everywhere
    mask[:32, nvec[0] :] = 0.0  # second dimension: only value 1 allowed in half the rows
    mask[:32, nvec[0] + 1] = 1.0
    obs = {"observations": torch.rand(64, env.observation_space["observations"].shape[0], generator=gen),
           "action_mask": mask}
    with torch.no_grad():
        out = module.forward_exploration({"obs": obs})
    dist = module.get_exploration_action_dist_cls().from_logits(out["action_dist_inputs"])
    torch.manual_seed(0)
    acts = torch.stack([dist.sample() for _ in range(50)]).reshape(-1, 64, len(nvec))
    assert not (acts[..., 0] == 0).any()
    assert (acts[:, :32, 1] == 1).all()
    assert acts[:, 32:, 1].unique().numel() > 1  # unmasked rows still explore
    env.close()


def test_training_variants_and_old_versions() -> None:
    # the -short / -fine ids train on RLlib as on SB3 (they were "unknown env id"); an old
    # version names the current id
    env = env_creator("disagg/SmallRoute-short-v3")({})
    env.reset(seed=0)
    env.close()
    build_ppo_config("disagg/EnergyAllocate-fine-v3", num_env_runners=0)
    with pytest.raises(ValueError, match="SmallRoute-v3"):
        env_creator("disagg/SmallRoute-v0")
