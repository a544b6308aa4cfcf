"""Hypothesis: arbitrary actions (valid, out of range, NaN, wrong shape, junk) never corrupt the env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import disagg_gym  # noqa: F401
from disagg_gym.testing.checks import check_cluster_state
from disagg_gym.testing.strategies import raw_actions

ENVS = {
    "disagg/SmallRoute-v3": {"horizon_s": 3.0},
    "disagg/EnergyAllocate-v3": {"horizon_s": 30.0, "env.control_interval_s": 2.0},
    "disagg/LargeJoint-v3": {"horizon_s": 2.0},
}
_CACHE: dict[str, gym.Env] = {}


def env_for(env_id: str) -> gym.Env:
    if env_id not in _CACHE:
        _CACHE[env_id] = gym.make(env_id, overrides=ENVS[env_id]).unwrapped
    return _CACHE[env_id]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env_id=st.sampled_from(sorted(ENVS)), seed=st.integers(0, 1000), data=st.data())
def test_any_action_sequence_keeps_invariants(env_id: str, seed: int, data: st.DataObject) -> None:
    env = env_for(env_id)
    obs, _ = env.reset(seed=seed)
    n_dims = len(env.action_space.nvec)
    arrived = 0
    for _ in range(data.draw(st.integers(1, 40))):
        action = data.draw(raw_actions(n_dims))
        obs, r, term, trunc, info = env.step(action)
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
        assert isinstance(r, float) and np.isfinite(r)
        assert isinstance(info["invalid_action"], bool)
        check_cluster_state(env.cluster)
        rec = env.recorder
        assert rec.arrived == rec.completed + rec.rejected + env.cluster.in_system
        assert env.cluster.arrived >= arrived
        arrived = env.cluster.arrived
        if term or trunc:
            break
