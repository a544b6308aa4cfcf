"""Issue #16 item 6: stale and noisy observations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.errors import UserError
from disagg_gym.wrappers import ActionMaskDict, ObservationNoise, QueueShaping, StaleObservation
from disagg_gym.wrappers.workload_seeds import HeldOutWorkloadSeeds, TrainingWorkloadSeeds

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


def test_noise_leaves_the_episodes_alone() -> None:
    # sigma = 0: the wrapped env plays the unwrapped env's episodes, unseeded resets included
    # (the wrapper used to draw its noise seed from the env's np_random, which picks the next
    # unseeded episode's workload: the third episode's arrivals differed).
    def episodes(env: gym.Env) -> list[tuple[int, list[np.ndarray], float]]:
        out = []
        for ep in range(3):
            obs, _ = env.reset(seed=7 if ep == 0 else None)
            seen, ret, done = [obs], 0.0, False
            while not done:
                obs, r, term, trunc, _ = env.step(_valid(env))
                seen.append(obs)
                ret += float(r)
                done = term or trunc
            out.append((env.unwrapped.workload_seed, seen, ret))
        return out

    plain = episodes(gym.make(ENV, max_episode_requests=30))
    noisy = episodes(ObservationNoise(gym.make(ENV, max_episode_requests=30), sigma=0.0))
    for (sa, oa, ra), (sb, ob, rb) in zip(plain, noisy):
        assert sa == sb and ra == rb and len(oa) == len(ob)
        for x, y in zip(oa, ob):
            np.testing.assert_array_equal(x, y)


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


@pytest.mark.parametrize("delay", [{"delay_steps": 2}, {"delay_s": 5.0}])
def test_a_stale_observation_is_a_copy_the_caller_may_change(delay: dict) -> None:
    # the same stored array was handed out for several steps: changing one in place changed the
    # ones still to come (gymnasium's check_env: "observations ... share an object")
    s = StaleObservation(gym.make(ENV), **delay)
    o0, _ = s.reset(seed=0)
    act = s.unwrapped.action_for(route=(0, 2))
    o1, *_ = s.step(act)
    assert o0 is not o1 and np.array_equal(o0, o1)  # still the reset observation's values
    o1[:] = 0.5
    o2, *_ = s.step(act)
    assert not np.all(o2 == 0.5)


@pytest.mark.parametrize("wrap", [
    lambda e: StaleObservation(e, delay_steps=3), lambda e: ObservationNoise(e, sigma=0.2),
    lambda e: QueueShaping(e, gamma=0.9), ActionMaskDict,
    lambda e: TrainingWorkloadSeeds(e, seed=4), lambda e: HeldOutWorkloadSeeds(e, n=3, offset=20005),
])
def test_every_wrapper_can_be_rebuilt_from_its_spec(wrap) -> None:
    # none could: gym.make(env.spec) and check_env raised "does not inherit from RecordConstructorArgs"
    w = wrap(gym.make(ENV))
    again = gym.make(w.spec)
    assert type(again) is type(w)
    assert again.spec.additional_wrappers[-1].kwargs == w.spec.additional_wrappers[-1].kwargs


def test_a_stale_dict_observation_is_a_copy_too() -> None:
    s = StaleObservation(gym.make(ENV, obs_mode="dict"), delay_steps=2)
    o0, _ = s.reset(seed=0)
    o1, *_ = s.step(s.unwrapped.action_for(route=(0, 2)))
    assert all(o0[k] is not o1[k] and np.array_equal(o0[k], o1[k]) for k in o0)
    o1["instances"][:] = 0.5
    o2, *_ = s.step(s.unwrapped.action_for(route=(0, 2)))
    assert not np.all(o2["instances"] == 0.5)
