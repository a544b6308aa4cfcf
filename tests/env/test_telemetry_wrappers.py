"""Issue #16 item 6: stale and noisy observations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.errors import UserError
from disagg_gym.wrappers import ObservationNoise, QueueShaping, StaleObservation

ENV = "disagg/SmallRoute-v3"


def _valid(env: gym.Env) -> np.ndarray:
    mask = env.unwrapped.action_masks()
    parts = np.split(mask, np.cumsum(env.action_space.nvec)[:-1])
    return np.array([int(np.flatnonzero(p)[-1]) for p in parts])


def _trajectory(env: gym.Env, n: int) -> tuple[list[np.ndarray], list[float]]:
    obs, info = env.reset(seed=3)
    seen, times = [obs], [info["sim_time_s"]]
    for _ in range(n):
        obs, _, _, _, info = env.step(_valid(env))
        seen.append(obs)
        times.append(info["sim_time_s"])
    return seen, times


def test_stale_by_steps_shows_the_observation_k_decisions_ago() -> None:
    live, _ = _trajectory(gym.make(ENV, overrides={"horizon_s": 10.0}), 12)
    stale, _ = _trajectory(StaleObservation(gym.make(ENV, overrides={"horizon_s": 10.0}), delay_steps=3), 12)
    for k in range(len(live)):
        np.testing.assert_array_equal(stale[k], live[max(0, k - 3)])


def test_stale_by_seconds_shows_the_newest_old_enough_observation() -> None:
    live, times = _trajectory(gym.make(ENV, overrides={"horizon_s": 10.0}), 40)
    stale, _ = _trajectory(StaleObservation(gym.make(ENV, overrides={"horizon_s": 10.0}), delay_s=0.5), 40)
    for k in range(len(live)):
        old = [j for j in range(k + 1) if times[j] <= times[k] - 0.5]
        np.testing.assert_array_equal(stale[k], live[old[-1] if old else 0])


def test_noise_is_reproducible_bounded_and_has_the_asked_spread() -> None:
    base = gym.make(ENV, overrides={"horizon_s": 10.0})
    a, _ = _trajectory(ObservationNoise(gym.make(ENV, overrides={"horizon_s": 10.0}), sigma=0.05), 80)
    b, _ = _trajectory(ObservationNoise(gym.make(ENV, overrides={"horizon_s": 10.0}), sigma=0.05), 80)
    live, _ = _trajectory(base, 80)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    space = base.observation_space
    diffs = []
    for x, y in zip(a, live):
        assert np.all(x >= space.low) and np.all(x <= space.high)
        inner = (y > 0.2) & (y < 0.8)  # far from the clipping bounds
        diffs.extend((x - y)[inner].tolist())
    assert len(diffs) > 200 and np.std(diffs) == pytest.approx(0.05, rel=0.2)


def test_bad_wrapper_arguments_are_one_line_errors() -> None:
    env = gym.make(ENV)
    with pytest.raises(UserError, match="exactly one"):
        StaleObservation(env)
    with pytest.raises(UserError, match="delay_steps"):
        StaleObservation(env, delay_steps=-1)
    with pytest.raises(UserError, match="sigma"):
        ObservationNoise(env, sigma=float("nan"))


def test_queue_shaping_lives_in_disagg_gym_wrappers() -> None:
    pytest.importorskip("stable_baselines3")  # the [rl] extra
    from disagg_gym_agents.hparams import ENV_WRAPPERS
    from disagg_gym_agents.ppo import QueueShaping as from_agents

    assert ENV_WRAPPERS["disagg_gym.wrappers.QueueShaping"] is QueueShaping

    assert from_agents is QueueShaping
