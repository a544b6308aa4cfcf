"""Cache observation features (issue #14): present only where prefix caching can act."""

from __future__ import annotations

import numpy as np

from disagg_gym.env.observation import CACHE_FEATURES, cache_features
from disagg_gym.env.serving_env import DisaggServingEnv
from disagg_gym.scenario import load_scenario


def test_cache_features_only_for_prefix_workloads() -> None:
    assert cache_features(load_scenario("multiturn-cache-route"))
    assert cache_features(load_scenario("rag-pool-route"))
    assert cache_features(load_scenario("mooncake-cache-route"))
    for name in ("small-route", "mooncake-rdma-route", "hetero-route"):
        assert not cache_features(load_scenario(name))  # observation shapes of these ids unchanged
    off = load_scenario("multiturn-cache-route", {"cluster.prefix_cache.enabled": False})
    assert not cache_features(off)


def test_cache_features_shape_bounds_and_signal() -> None:
    env = DisaggServingEnv("multiturn-cache-route", overrides={"horizon_s": 20.0})
    n = env.n
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10 * n + 12 + len(env.gpus) + len(CACHE_FEATURES) * n,)
    seen_hit = False
    for _ in range(300):
        assert env.observation_space.contains(obs)
        cache = obs[-len(CACHE_FEATURES) * n:].reshape(n, len(CACHE_FEATURES))
        seen_hit |= bool(np.any(cache[:, 0] > 0))
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            break
    assert seen_hit  # repeated tenant prompts show up as HBM hits somewhere

    dict_env = DisaggServingEnv("multiturn-cache-route", overrides={"horizon_s": 5.0, "env.obs_mode": "dict"})
    d, _ = dict_env.reset(seed=0)
    assert d["cache"].shape == (n, len(CACHE_FEATURES)) and dict_env.observation_space.contains(d)
