"""Issue #16 item 3: ``obs_mode: padded`` is size-invariant and changes nothing in the simulation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import disagg_gym  # noqa: F401
from disagg_gym.env.observation import INSTANCE_FEATURES, N_TAIL_PADDED
from disagg_gym.errors import UserError
from disagg_gym_agents.evaluation import run_episode
from disagg_gym_agents.registry import POLICIES

ENV = "disagg/SmallRoute-v3"
SHORT = {"horizon_s": 3.0}
NF = len(INSTANCE_FEATURES)


def _padded(slots: int | None = 16, **kw) -> gym.Env:
    over = {**SHORT, "env.obs_mode": "padded", **kw}
    if slots is not None:
        over["env.max_instances"] = slots
    return gym.make(ENV, overrides=over)


def test_layout_rows_validity_and_masks_cover_padding() -> None:
    env = _padded(16)
    obs, _ = env.reset(seed=0)
    # 16 rows of 10 features + valid, then request(4) + decision(2) + global(6)
    assert obs.shape == (16 * (NF + 1) + 12,) and N_TAIL_PADDED == 12
    assert env.observation_space.contains(obs)
    rows = obs[: 16 * (NF + 1)].reshape(16, NF + 1)
    assert rows[:4, NF].tolist() == [1.0] * 4 and not rows[4:].any()
    # the instance rows are the box observation's rows
    box = gym.make(ENV, overrides=SHORT)
    bobs, _ = box.reset(seed=0)
    np.testing.assert_array_equal(rows[:4, :NF], bobs[: 4 * NF].reshape(4, NF))
    np.testing.assert_array_equal(obs[16 * (NF + 1):], bobs[4 * NF : 4 * NF + 12])
    assert env.action_space.nvec.tolist() == [17, 16]  # 16 prefill slots + reject, 16 decode slots
    m = env.unwrapped.action_masks()
    assert not m[4:16].any() and m[16]  # padded prefill slots masked, reject allowed
    assert not m[17 + 4 :].any()  # padded decode slots masked
    # SmallRoute: instances 0, 1 prefill; 2, 3 decode
    assert m[:4].tolist() == [True, True, False, False] and m[17:21].tolist() == [False, False, True, True]


def test_padded_slot_actions_are_invalid_and_reject_is_the_last_prefill_value() -> None:
    env = _padded(8)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([6, 7]))  # padding slots
    assert info["invalid_action"] is True
    u = env.unwrapped
    assert u.action_for(reject=True).tolist() == [8, 0]
    req = u.cluster.pending
    _, r, _, _, info = env.step(np.array([8, 0]))
    assert info["invalid_action"] is False and req.reject_reason == "policy"


def test_same_simulation_as_box_mode_for_a_heuristic() -> None:
    kpis = []
    for env in (gym.make(ENV, overrides=SHORT), _padded(64)):
        row = run_episode(POLICIES.get("jsq")(env), env, 10_000)
        kpis.append((row["goodput_rps"], row["requests_completed"], row["invalid_actions"]))
    assert kpis[0] == kpis[1] and kpis[0][2] == 0


def test_checkers_pass() -> None:
    check_env(_padded(8).unwrapped, skip_render_check=True)
    pytest.importorskip("stable_baselines3", reason="SB3's checker needs the [rl] extra")
    from stable_baselines3.common.env_checker import check_env as sb3_check

    sb3_check(_padded(8), warn=False)


def test_bad_padding_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="max_instances=2 is below the cluster's 4 instances"):
        _padded(2)
    with pytest.raises(UserError, match="obs_mode: padded needs task: route"):
        gym.make("disagg/EnergyAllocate-v3", overrides={"env.obs_mode": "padded"})


def test_default_slots_equal_the_cluster() -> None:
    env = _padded(None)
    assert env.action_space.nvec.tolist() == [5, 4]
