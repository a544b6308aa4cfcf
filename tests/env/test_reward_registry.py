"""Reward terms are one registry (issue #20): the config section, the info keys and the sum all
follow ``disagg_gym.env.rewards``."""

from __future__ import annotations

import dataclasses
import pickle

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.env import rewards
from disagg_gym.env.config import REWARD_TERMS, EnvConfig

EXPECTED = ("slo_goodput", "slo_violation", "rejection", "gpu_cost_usd", "energy_kj", "invalid_action", "load_shaping", "predicted_credit")


def test_registry_defines_the_weights_section_and_order() -> None:
    assert REWARD_TERMS == rewards.term_names() == EXPECTED
    fields = dataclasses.fields(rewards.RewardWeights)
    assert tuple(f.name for f in fields) == EXPECTED
    w = rewards.RewardWeights()
    # defaults documented in docs/envs.md
    assert [getattr(w, n) for n in EXPECTED] == [1.0, -0.5, -1.0, 0.0, 0.0, -1.0, 0.0, 1.0]
    assert pickle.loads(pickle.dumps(w)) == w
    assert sorted(t.name for t in rewards.terms() if t.credited) == ["rejection", "slo_goodput", "slo_violation"]


def test_weighted_sum_is_left_to_right() -> None:
    # (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3) in binary floating point: the order is observable
    assert rewards.weighted_sum(1.0, [1.0, 1.0, 1.0], [0.1, 0.2, 0.3]) == (0.1 + 0.2) + 0.3
    assert rewards.weighted_sum(2.0, [0.5, -1.0], [4.0, 1.0]) == 2.0  # 2 * (2 - 1)
    assert rewards.weighted_sum(3.0, [], []) == 0.0


def test_step_reward_is_the_weighted_sum_of_info_terms() -> None:
    env = gym.make("disagg/SmallRoute-v3", horizon_s=10.0,
                   overrides={"env.reward.energy_kj": -0.01, "env.reward.gpu_cost_usd": -2.0}).unwrapped
    env.reset(seed=1)
    cfg: EnvConfig = env.cfg
    w = {"slo_goodput": 1.0, "slo_violation": -0.5, "rejection": -1.0, "gpu_cost_usd": -2.0,
         "energy_kj": -0.01, "invalid_action": -1.0, "load_shaping": 0.0, "predicted_credit": 1.0}
    nonzero = 0
    for _ in range(200):
        _, r, term, trunc, info = env.step(np.zeros(env.action_space.shape, dtype=np.int64))
        assert list(info["reward_terms"]) == list(EXPECTED)
        want = sum(w[k] * v for k, v in info["reward_terms"].items()) * cfg.reward_scale
        assert abs(r - want) <= 1e-12 * max(1.0, abs(want))
        nonzero += r != 0
        if term or trunc:
            break
    assert nonzero > 0


def test_registered_terms_pickle_by_name() -> None:
    # Their fn / weight_of are closures and lambdas, which pickle refuses; an env holds its
    # terms from the first reset on, so a running env must pickle them by name.
    for term in rewards.terms():
        assert pickle.loads(pickle.dumps(term)) is term


def test_a_term_registered_after_import_without_weight_of_is_one_clear_error() -> None:
    # env.reward's fields were generated at import: a later term has no key for its weight,
    # which used to surface as an AttributeError at the first step.
    before = rewards.term_names()
    with pytest.raises(ValueError, match=r"reward term 'late_term': registered after .* weight_of"):
        rewards.reward_term("late_term", 1.0, "a user's term")(lambda o: 0.0)
    assert rewards.term_names() == before and "late_term" not in rewards.REWARD_TERMS_REGISTRY
