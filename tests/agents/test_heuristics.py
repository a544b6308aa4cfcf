"""Heuristics: each runs on every task it applies to, respects the masks; JSQ beats random."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401  (registers the env ids)
from disagg_gym_agents import POLICIES, make_policy
from disagg_gym_agents.base import Policy
from disagg_gym_agents.evaluation import evaluate, run_episode
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym_agents.heuristics import AllocatorHeuristic, RouterHeuristic

ROUTE_ID = "disagg/SmallRoute-v3"
ALLOC_ID = "disagg/EnergyAllocate-v3"
SHORT = {"horizon_s": 8.0}
EXPECTED = {
    "random",
    "round_robin",
    "jsq",
    "p2c",
    "least_finish",
    "kv_aware",
    "length_oracle",
    "static_ratio",
    "threshold",
}


def _applies(name: str, task: str) -> bool:
    return task in POLICIES.get(name).tasks


def _check_episode(
    name: str, env_id: str, overrides: dict[str, object], seed: int = 10_000
) -> dict[str, object]:
    env = gym.make(env_id, overrides=overrides)
    policy = make_policy(f"heuristic:{name}", env)
    obs, _ = env.reset(seed=seed, options={"workload_seed": seed})
    steps = 0
    kinds = set()
    while True:
        kinds.add(env.unwrapped.decision)
        action, _ = policy.predict(obs)
        assert env.action_space.contains(action), (name, action)
        mask = env.unwrapped.action_masks()
        off = 0
        for size, a in zip(env.action_space.nvec, action):
            assert mask[off + int(a)], f"{name} chose a masked value {a} in {action}"
            off += int(size)
        obs, _, term, trunc, info = env.step(action)
        assert not info["invalid_action"], name
        steps += 1
        if term or trunc:
            break
    env.close()
    kpis = info["episode_kpis"]
    assert kpis["requests_total"] > 0
    return {"steps": steps, "kinds": kinds, "kpis": kpis}


def test_all_requested_heuristics_registered() -> None:
    assert EXPECTED <= set(POLICIES.names())
    for name in EXPECTED:
        cls = POLICIES.get(name)
        assert issubclass(cls, Policy) and cls.name == name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_episode_on_route_task(name: str) -> None:
    if not _applies(name, "route"):
        env = gym.make(ROUTE_ID, overrides=SHORT)
        with pytest.raises(ValueError, match=name):
            make_policy(f"heuristic:{name}", env)
        return
    res = _check_episode(name, ROUTE_ID, SHORT)
    assert res["kinds"] == {"route"}
    assert res["kpis"]["requests_completed"] > 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_episode_on_allocate_task(name: str) -> None:
    over = {"horizon_s": 35.0}
    if not _applies(name, "allocate"):
        env = gym.make(ALLOC_ID, overrides=over)
        with pytest.raises(ValueError, match="does not apply to task 'allocate'"):
            make_policy(f"heuristic:{name}", env)
        return
    res = _check_episode(name, ALLOC_ID, over)
    assert "control" in res["kinds"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_episode_on_joint_task(name: str) -> None:
    # SmallRoute's cluster as a joint task: routes every request and resizes pools every 2 s.
    over = {"horizon_s": 8.0, "task": "joint", "env.control_interval_s": 2.0}
    res = _check_episode(name, ROUTE_ID, over)
    assert res["kinds"] == {"route", "control"}


def test_router_keeps_pools_and_allocator_changes_them_on_joint() -> None:
    over = {"horizon_s": 8.0, "task": "joint", "env.control_interval_s": 2.0}
    for name, expect_noop in (("jsq", True), ("static_ratio", False)):
        env = gym.make(ROUTE_ID, overrides=over)
        kwargs = {"prefill_fraction": 0.75} if name == "static_ratio" else {}
        policy = make_policy(name, env, **kwargs)
        obs, _ = env.reset(seed=1, options={"workload_seed": 1})
        changed = False
        while True:
            action, _ = policy.predict(obs)
            if env.unwrapped.decision == "control":
                noop = env.unwrapped.action_for()
                changed |= not np.array_equal(action, noop)
                if expect_noop:
                    assert np.array_equal(action, noop)
            obs, _, term, trunc, _ = env.step(action)
            if term or trunc:
                break
        assert changed is (not expect_noop), name


def test_jsq_beats_random_on_goodput() -> None:
    over = {"horizon_s": 60.0}
    goodput = {}
    for name in ("jsq", "random"):
        env = gym.make(ROUTE_ID, overrides=over)
        row = run_episode(make_policy(name, env), env, workload_seed=10_000)
        goodput[name] = row["goodput_rps"]
        env.close()
    assert goodput["jsq"] > goodput["random"], goodput


def test_length_oracle_is_marked_reference() -> None:
    assert POLICIES.get("length_oracle").upper_bound is True  # the reports' reference flag
    assert "REFERENCE" in (POLICIES.get("length_oracle").__doc__ or "")
    env = gym.make(ROUTE_ID, overrides=SHORT)
    assert make_policy("length_oracle", env).describe() == "length_oracle (oracle)"
    others = [n for n in EXPECTED if n != "length_oracle"]
    assert not any(POLICIES.get(n).upper_bound for n in others)


def test_clairvoyant_is_a_deprecated_alias() -> None:
    assert "clairvoyant" not in POLICIES.names()
    with pytest.warns(FutureWarning, match="length_oracle"):
        assert POLICIES.get("clairvoyant") is POLICIES.get("length_oracle")


def test_heuristic_kinds() -> None:
    for name in ("round_robin", "jsq", "p2c", "least_finish", "kv_aware", "length_oracle"):
        assert issubclass(POLICIES.get(name), RouterHeuristic)
    # every simulator router is a heuristic agent (no list to keep in sync), "random" aside
    for name in ROUTERS.names():
        if name != "random":
            assert POLICIES.get(name).router_name == name
    for name in ("static_ratio", "threshold"):
        assert issubclass(POLICIES.get(name), AllocatorHeuristic)
    assert set(POLICIES.get("random").tasks) == {"route", "allocate", "joint"}


@pytest.mark.parametrize("name", ["random", "p2c"])
def test_seeded_heuristics_are_reproducible(name: str) -> None:
    def rows(seed: int) -> list[dict[str, object]]:
        env = gym.make(ROUTE_ID, overrides=SHORT)
        return evaluate(make_policy(name, env, seed=seed), env, episodes=2, seed_offset=5)

    a, b = rows(0), rows(0)
    assert a == b
    if name == "random":  # p2c samples two of two instances per pool here: seed-independent
        assert rows(1) != a


def test_bad_specs() -> None:
    env = gym.make(ROUTE_ID, overrides=SHORT)
    with pytest.raises(ValueError, match="'nope'"):
        make_policy("heuristic:nope", env)
    with pytest.raises(ValueError, match="missing.zip"):
        make_policy("sb3:missing.zip", env)
    with pytest.raises(ValueError, match="expected heuristic:NAME or sb3:PATH"):
        make_policy("torch:x", env)
    with pytest.raises(ValueError, match="seed"):
        make_policy("jsq", env, seed=-1)
    alloc = gym.make(ALLOC_ID, overrides=SHORT)
    with pytest.raises(ValueError, match="prefill_fraction"):
        make_policy("static_ratio", alloc, prefill_fraction=1.5)


def test_predict_before_reset() -> None:
    env = gym.make(ROUTE_ID, overrides=SHORT)
    policy = make_policy("jsq", env)
    with pytest.raises(gym.error.ResetNeeded):
        policy.predict(None)


def _first_control(overrides: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    env = gym.make(ALLOC_ID, overrides={"horizon_s": 35.0, **(overrides or {})})
    obs, _ = env.reset(seed=10_000, options={"workload_seed": 10_000})
    assert env.unwrapped.decision == "control"
    assert env.unwrapped.cluster.role_counts("h100-sxm") == (4, 4)  # 8 switchable H100s, 4 prefill
    return env, obs


@pytest.mark.parametrize(("fraction", "count"), [(0.3, 2), (0.45, 4), (0.05, 1), (0.95, 7)])
def test_static_ratio_targets_the_rounded_share_by_hand(fraction: float, count: int) -> None:
    # EnergyAllocate: 8 switchable H100s, prefill counts 1..7 allowed (both pools non-empty).
    # 0.3 x 8 = 2.4 -> 2; 0.45 x 8 = 3.6 -> 4 (rounded, not truncated); 0.05 x 8 -> at least 1;
    # 0.95 x 8 = 7.6 -> 8, which the mask refuses: the nearest allowed count, 7.
    env, obs = _first_control()
    action, _ = make_policy("static_ratio", env, prefill_fraction=fraction).predict(obs)
    assert action.tolist() == [count]


@pytest.mark.parametrize(
    ("wait_s", "pressure", "count"),
    [
        (2.0, 0.5, 5),  # prefill wait twice its target, decode under its own: one more prefill
        (0.5, 2.0, 3),  # decode pressure twice its target, prefill under: one fewer
        (3.0, 2.0, 5),  # both over: the phase further over target wins
        (2.0, 3.0, 3),
        (0.9, 0.9, 4),  # both under target: keep
        (2.0, 2.0, 4),  # equally over: keep
    ],
)
def test_threshold_moves_one_instance_towards_the_phase_further_over_target(
    monkeypatch: pytest.MonkeyPatch, wait_s: float, pressure: float, count: int
) -> None:
    # Hand-set measurements (in units of the targets, 1 s and 1.0): the rule of the docstring
    # from the current 4 prefill instances.
    from disagg_gym_agents import heuristics

    monkeypatch.setattr(heuristics, "prefill_wait_s", lambda inst, now: wait_s)
    monkeypatch.setattr(heuristics, "decode_pressure", lambda inst: pressure)
    env, obs = _first_control()
    pol = make_policy("threshold", env, ttft_target_s=1.0, decode_pressure_target=1.0)
    action, _ = pol.predict(obs)
    assert action.tolist() == [count]
    # targets scale the measurements: the same readings against targets 10x higher are all under
    pol = make_policy("threshold", env, ttft_target_s=10.0, decode_pressure_target=10.0)
    assert pol.predict(obs)[0].tolist() == [4]
