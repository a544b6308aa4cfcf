"""Issue #14 "Agents can see it" in ``obs_mode: padded``: per-slot cache features.

Oracle: a hand-built cache state at the first routing decision, where instance ``k`` holds
exactly ``j`` of the pending request's ``n`` blocks in a given tier, so each feature is ``j / n``
and occupancy is ``blocks x block_tokens / KV capacity`` by hand.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import disagg_gym  # noqa: F401
from disagg_gym.env.observation import CACHE_FEATURES, INSTANCE_FEATURES, N_TAIL_PADDED
from disagg_gym.env.serving_env import DisaggServingEnv

NF = len(INSTANCE_FEATURES)
NC = len(CACHE_FEATURES)
SLOTS = 10
TIERS = {  # every lower tier on, so each one can be hand-filled
    "cluster.prefix_cache.host_dram.capacity_gb": 10.0,
    "cluster.prefix_cache.ssd.capacity_gb": 10.0,
    "cluster.prefix_cache.remote.capacity_gb": 10.0,
}


def _env(mode: str = "padded") -> DisaggServingEnv:
    over = {"horizon_s": 5.0, "env.obs_mode": mode, **TIERS}
    if mode == "padded":
        over["env.max_instances"] = SLOTS
    return DisaggServingEnv("multiturn-cache-route", overrides=over)


def _hand_built(env: DisaggServingEnv) -> tuple[np.ndarray, int, dict[int, tuple[int, int, int, int, int]]]:
    """Fills the caches by hand; returns the rebuilt observation, n and per instance the
    expected (hbm, host_dram, ssd, remote, cached HBM blocks) counts."""
    env.reset(seed=0)
    cl = env.cluster
    req = cl.pending
    cache = cl.cache
    hs = cache.hashes(req)
    n = len(hs)
    assert n >= 12  # room for the hand-built prefixes below

    def hbm(k: int, blocks: tuple[int, ...]) -> None:  # cached, unpinned (evictable) blocks
        cache.hbm[k].pin(-1, blocks)
        cache.hbm[k].release(-1)

    def tier(k: int, name: str, blocks: tuple[int, ...]) -> None:
        store = next(t.store for t in cache.tiers[k] if t.name == name)
        store.insert(blocks)

    # instance 0 (prefill): the first 5 blocks in HBM, nothing below
    hbm(0, hs[:5])
    # instance 1 (prefill): 2 in HBM, the next 3 in host DRAM, 4 on SSD, 1 in the shared pool
    hbm(1, hs[:2])
    tier(1, "host_dram", hs[2:5])
    tier(1, "ssd", hs[5:9])
    tier(1, "remote", hs[9:10])  # the pool is shared: every instance sees block 9 there
    # instance 2 (prefill): blocks 1..3 in HBM but not block 0 -> no prefix, nothing counts
    hbm(2, hs[1:4])
    # instance 3 (prefill): block 9 alone in the pool is not a prefix either
    # instance 5 (decode): every block in HBM
    hbm(5, hs)
    expected = {
        0: (5, 0, 0, 0, 5),
        1: (2, 3, 4, 1, 2),
        2: (0, 0, 0, 0, 3),
        3: (0, 0, 0, 0, 0),
        4: (0, 0, 0, 0, 0),
        5: (n, 0, 0, 0, n),
        6: (0, 0, 0, 0, 0),
        7: (0, 0, 0, 0, 0),
    }
    return env._obs(), n, expected  # the observation of this decision, rebuilt after the edit


def test_padded_rows_carry_the_hand_built_cache_fractions() -> None:
    env = _env()
    assert env.row_features == NF + NC + 1
    assert env.observation_space.shape == (SLOTS * (NF + NC + 1) + N_TAIL_PADDED,)
    obs, n, expected = _hand_built(env)
    assert env.observation_space.contains(obs)
    rows = obs[: SLOTS * (NF + NC + 1)].reshape(SLOTS, NF + NC + 1)
    block = env.scenario.cluster.prefix_cache.block_tokens
    assert rows[:, -1].tolist() == [1.0] * 8 + [0.0] * 2  # valid stays the last column
    assert not rows[8:].any()
    for k, (h, host, ssd, remote, cached) in expected.items():
        got = rows[k, NF : NF + NC]
        occupancy = cached * block / env.cluster.instances[k].kv_cap
        np.testing.assert_allclose(got, [h / n, host / n, ssd / n, remote / n, occupancy], rtol=1e-6, atol=1e-7)


def test_padded_cache_columns_equal_the_box_modes_cache_block() -> None:
    padded, _, _ = _hand_built(_env())
    box, _, _ = _hand_built(_env("box"))
    n = 8
    rows = padded[: SLOTS * (NF + NC + 1)].reshape(SLOTS, NF + NC + 1)
    np.testing.assert_array_equal(rows[:n, :NF], box[: n * NF].reshape(n, NF))
    np.testing.assert_array_equal(rows[:n, NF : NF + NC], box[-n * NC :].reshape(n, NC))


def test_no_cache_columns_without_block_hashes() -> None:
    env = gym.make("disagg/SmallRoute-v3", overrides={"horizon_s": 2.0, "env.obs_mode": "padded", "env.max_instances": 6})
    assert env.unwrapped.row_features == NF + 1
    assert env.observation_space.shape == (6 * (NF + 1) + N_TAIL_PADDED,)


def test_features_move_in_an_episode_and_stay_in_bounds() -> None:
    env = DisaggServingEnv("multiturn-cache-route", overrides={
        "horizon_s": 20.0, "env.obs_mode": "padded", "env.max_instances": SLOTS,
    })
    obs, _ = env.reset(seed=0)
    w = NF + NC + 1
    hits = 0
    for _ in range(300):
        assert env.observation_space.contains(obs)
        rows = obs[: SLOTS * w].reshape(SLOTS, w)
        hits += int(np.any(rows[:, NF] > 0))
        obs, _, term, trunc, _ = env.step(_masked(env))
        if term or trunc:
            break
    assert hits > 0  # repeated tenant prompts show up as HBM hits in some slot


def _masked(env: DisaggServingEnv) -> np.ndarray:
    mask = env.action_masks()
    parts = np.split(mask, np.cumsum(env.action_space.nvec)[:-1])
    return np.array([int(np.flatnonzero(p)[0]) for p in parts])
