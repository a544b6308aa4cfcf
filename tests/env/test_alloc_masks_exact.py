"""Issue #17 item 3: every allocation action the masks allow is applied exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401


@pytest.mark.parametrize("env_id", ["disagg/HeteroAllocate-v5", "disagg/EnergyAllocate-v3"])
def test_masked_valid_allocation_actions_are_applied_exactly(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(40):
        mask = u.action_masks()
        parts = np.split(mask, np.cumsum(env.action_space.nvec)[:-1])
        action = np.array([rng.choice(np.flatnonzero(p)) for p in parts])
        control = u._kind == "control"
        _, _, term, trunc, info = env.step(action)
        if control:
            assert not info.get("invalid_action", False)
            # The targets (role after any switch under way) are exactly what was asked.
            asked = list(action[-len(u.gpus):])
            got = [u.cluster.role_counts(g)[0] for g in u.gpus]
            assert got == asked, (asked, got)
            checked += 1
        if term or trunc:
            break
    assert checked >= 3
