"""Issue #16 item 4: with ``obs_mode: padded`` a generator may sample the instance counts per reset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.config import ConfigError
from disagg_gym.env.observation import INSTANCE_FEATURES, N_TAIL_PADDED
from disagg_gym.env.serving_env import DisaggServingEnv
from disagg_gym_agents.evaluation import run_episode
from disagg_gym_agents.registry import POLICIES

ENV = "disagg/SmallRoute-v3"
NF = len(INSTANCE_FEATURES)
M = 10


def _groups(prefill: object, decode: object) -> dict:
    return {"cluster": {"groups": [
        {"gpu": "h100-sxm", "count": prefill, "role": "prefill"},
        {"gpu": "h100-sxm", "count": decode, "role": "decode", "max_batch": 128},
    ]}}


PREFILL = {"dist": "randint", "low": 1, "high": 4}
DECODE = {"choice": [1, 3, 6]}


def _env(max_instances: int | None = M, obs_mode: str = "padded", **counts: object) -> gym.Env:
    config = {"horizon_s": 3.0, **_groups(counts.get("prefill", PREFILL), counts.get("decode", DECODE))}
    env_opts: dict = {"obs_mode": obs_mode}
    if max_instances is not None:
        env_opts["max_instances"] = max_instances
    config["env"] = env_opts
    return gym.make(ENV, config=config)


def test_counts_vary_spaces_stay_and_masks_and_rows_match_the_draw() -> None:
    env = _env()
    u = env.unwrapped
    space, actions = env.observation_space, env.action_space
    assert space.shape == (M * (NF + 1) + N_TAIL_PADDED,) and actions.nvec.tolist() == [M + 1, M]
    seen = set()
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        p = info["scenario"]["sampled"]["cluster.groups[0].count"]
        d = info["scenario"]["sampled"]["cluster.groups[1].count"]
        seen.add((p, d))
        assert 1 <= p <= 4 and d in (1, 3, 6)
        assert info["scenario"]["instances"] == p + d == u.n == u.cluster.n
        assert env.observation_space is space and env.action_space is actions
        assert space.contains(obs)
        rows = obs[: M * (NF + 1)].reshape(M, NF + 1)
        # oracle: groups in config order, prefill first -> rows 0..p-1 prefill, p..p+d-1 decode
        assert rows[:, NF].tolist() == [1.0] * (p + d) + [0.0] * (M - p - d)
        assert not rows[p + d :].any()
        assert rows[:p, 0].tolist() == [1.0] * p and rows[:p, 1].tolist() == [0.0] * p  # serves_prefill only
        assert rows[p : p + d, 0].tolist() == [0.0] * d and rows[p : p + d, 1].tolist() == [1.0] * d
        m = u.action_masks()
        assert m[:M].tolist() == [True] * p + [False] * (M - p)  # empty cluster: every prefill fits
        assert m[M]  # reject
        assert m[M + 1 :].tolist() == [False] * p + [True] * d + [False] * (M - p - d)
    assert len({p + d for p, d in seen}) >= 4  # the instance count really varies


def test_a_heuristic_runs_on_every_drawn_size_with_no_invalid_action() -> None:
    env = _env()
    sizes = set()
    for seed in range(4):
        row = run_episode(POLICIES.get("jsq")(env), env, seed)
        sizes.add(env.unwrapped.n)
        assert row["invalid_actions"] == 0 and row["requests_completed"] > 0
    assert len(sizes) >= 2


def _rollout(env: gym.Env, seed: int, steps: int = 60) -> tuple[list[np.ndarray], list[float], dict]:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    seen, rewards = [obs], []
    for _ in range(steps):
        mask = env.unwrapped.action_masks()
        parts = np.split(mask, np.cumsum(env.action_space.nvec)[:-1])
        action = np.array([int(rng.choice(np.flatnonzero(p))) for p in parts])
        obs, r, term, trunc, _ = env.step(action)
        seen.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return seen, rewards, info["scenario"]


def test_same_seed_same_draw_and_trajectory() -> None:
    a, b = _env(), _env()
    for seed in (3, 5):
        oa, ra, sa = _rollout(a, seed)
        ob, rb, sb = _rollout(b, seed)
        assert sa == sb and ra == rb and len(oa) == len(ob)
        for x, y in zip(oa, ob):
            np.testing.assert_array_equal(x, y)


def test_size_changes_are_refused_outside_padded_mode_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        _env(max_instances=None, obs_mode="box", decode=2)
    msg = str(err.value)
    assert "key 'cluster.groups[0].count'" in msg and "env.obs_mode: padded" in msg and "\n" not in msg
    # padded without max_instances: the slots follow the (nominal) cluster, so the count cannot vary
    with pytest.raises(ConfigError, match=r"key 'cluster.groups\[0\].count'.*changes the observation/action sizes"):
        _env(max_instances=None, decode=2)


def test_draws_above_max_instances_are_one_clear_error() -> None:
    # one node alone: decode 6 + prefill 1 (nominal) = 7 > 6
    with pytest.raises(ConfigError) as err:
        _env(max_instances=6, prefill=1)
    msg = str(err.value)
    assert "key 'cluster.groups[1].count': the value 6: env.max_instances=6 is below the cluster's 7 instances" in msg
    assert "\n" not in msg
    # each node alone fits (4 + 1, 1 + 6 <= 7) but together 4 + 6 = 10 do not
    with pytest.raises(ConfigError) as err:
        _env(max_instances=7)
    msg = str(err.value)
    assert "keys 'cluster.groups[0].count', 'cluster.groups[1].count': the values (4, 6)" in msg
    assert "below the cluster's 10 instances" in msg and "\n" not in msg
    # the nominal cluster itself too large
    with pytest.raises(ConfigError, match="env.max_instances=1 is below the cluster's 2 instances"):
        _env(max_instances=1)


def test_whether_cache_features_exist_cannot_be_sampled() -> None:
    with pytest.raises(ConfigError, match="prefix_cache.enabled.*changes the observation/action sizes"):
        DisaggServingEnv("multiturn-cache-route", overrides={
            "horizon_s": 5.0, "cluster.prefix_cache.enabled": {"choice": [True, False]},
        })


def test_the_mixed_size_training_variant_samples_sizes_and_runs() -> None:
    env = DisaggServingEnv("variants/mixed-size-route")
    assert env.padded and env.slots == 64
    counts = set()
    for seed in range(10):
        _, info = env.reset(seed=seed)
        drawn = info["scenario"]["sampled"]
        n = drawn["cluster.groups[0].count"] + drawn["cluster.groups[1].count"]
        assert info["scenario"]["instances"] == n == env.cluster.n and 4 <= n <= 8
        assert 55 <= drawn["workload.rate_per_s"] < 110 and 10 <= info["scenario"]["warm_start_s"] < 90
        counts.add(n)
    assert len(counts) >= 3


def test_checkers_pass_on_a_size_sampling_env() -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(_env().unwrapped, skip_render_check=True)
    pytest.importorskip("stable_baselines3", reason="SB3's checker needs the [rl] extra")
    from stable_baselines3.common.env_checker import check_env as sb3_check

    sb3_check(_env(), warn=False)


def test_a_draw_past_the_construction_checks_is_refused_at_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    import disagg_gym.generator as generator

    monkeypatch.setattr(generator, "MAX_JOINT_CHECKS", 1)  # too many combinations: skip the joint check
    env = _env(max_instances=7)  # each count alone fits; 4 + 6 does not
    bad = 0
    for seed in range(30):
        try:
            _, info = env.reset(seed=seed)
            assert info["scenario"]["instances"] <= 7
        except ConfigError as err:
            msg = str(err)
            assert "keys 'cluster.groups[0].count', 'cluster.groups[1].count'" in msg
            assert "env.max_instances=7 is below the cluster's" in msg and "\n" not in msg
            bad += 1
    assert 0 < bad < 30


def test_each_episode_is_the_drawn_cluster_as_a_plain_config() -> None:
    """Oracle: the fixed-size box env built from the drawn counts gives the same KPIs."""
    env = _env()
    for seed in (0, 2):
        _, info = env.reset(seed=seed)
        drawn = info["scenario"]["sampled"]
        p, d = drawn["cluster.groups[0].count"], drawn["cluster.groups[1].count"]
        plain = gym.make(ENV, config={"horizon_s": 3.0, **_groups(p, d)})
        a = run_episode(POLICIES.get("jsq")(env), env, seed)
        b = run_episode(POLICIES.get("jsq")(plain), plain, seed)
        assert env.unwrapped.n == plain.unwrapped.n == p + d
        keys = ("goodput_rps", "requests_completed", "slo_attainment", "invalid_actions")
        assert [a[k] for k in keys] == [b[k] for k in keys]
