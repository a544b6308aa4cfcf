"""Env API over every registered id: checkers, masks, fallback, truncation, determinism."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym
from disagg_gym.env.registration import registered_ids
from disagg_gym.env.serving_env import DisaggServingEnv

IDS = registered_ids()
SHORT = {"horizon_s": 20.0}  # keep per-test episodes short


def make(env_id: str, **over: object) -> DisaggServingEnv:
    return gym.make(env_id, overrides={**SHORT, **over}).unwrapped  # type: ignore[return-value]


def masked_random(env: DisaggServingEnv, rng: np.random.Generator) -> np.ndarray:
    mask = env.action_masks()
    out, off = [], 0
    for n in env.action_space.nvec:
        valid = np.flatnonzero(mask[off:off + n])
        out.append(int(rng.choice(valid)))
        off += n
    return np.asarray(out)


def test_at_least_eight_registered_ids() -> None:
    assert len(IDS) >= 8
    assert all(i.startswith("disagg/") and "-v" in i for i in IDS)
    assert disagg_gym.__version__


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_and_sb3_checkers(env_id: str) -> None:
    from gymnasium.utils.env_checker import check_env

    pytest.importorskip("stable_baselines3")  # the [rl] extra
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = gym.make(env_id, overrides=SHORT)
    check_env(env.unwrapped, skip_render_check=False)
    sb3_check(env.unwrapped, warn=True)
    env.close()


def _fast(env_id: str) -> dict[str, object]:
    # Allocate steps simulate a whole control interval (hundreds of requests); a 1 s interval
    # keeps the 1,000-step rollout cheap. scripts/rollout_check.py runs the ids unmodified.
    task = gym.spec(env_id).kwargs["base_config"]
    from disagg_gym.scenario import load_scenario

    return {"env.control_interval_s": 1.0} if load_scenario(task).task != "route" else {}


@pytest.mark.parametrize("env_id", IDS)
def test_random_masked_rollout_obs_in_bounds(env_id: str) -> None:
    env = make(env_id, **_fast(env_id))
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    steps = 0
    for _ in range(1000):
        assert env.observation_space.contains(obs), env_id
        obs, r, term, trunc, info = env.step(masked_random(env, rng))
        assert isinstance(r, float) and np.isfinite(r)
        assert set(info["reward_terms"]) >= {"slo_goodput", "slo_violation", "rejection", "gpu_cost_usd", "energy_kj"}
        assert not info["invalid_action"]
        steps += 1
        if term or trunc:
            assert "episode_kpis" in info
            obs, _ = env.reset()
    assert steps == 1000


@pytest.mark.parametrize("bad", [np.array([99, 99]), np.array([np.nan, 0.0]), np.array([1]), "x", np.array([-1, 0]), np.array([1.5, 0])])
def test_invalid_route_action_falls_back(bad: object) -> None:
    env = make("disagg/SmallRoute-v3")
    env.reset(seed=0)
    arrived = env.cluster.arrived
    _, r, term, trunc, info = env.step(bad)
    assert info["invalid_action"] is True
    assert not term and np.isfinite(r)
    assert env.cluster.arrived >= arrived  # the request was routed by the fallback, not lost
    assert env.recorder.rejected == 0


def test_masked_value_is_invalid() -> None:
    env = make("disagg/SmallRoute-v3")
    env.reset(seed=0)
    mask = env.action_masks()
    n = env.n
    bad_p = int(np.flatnonzero(~mask[:n + 1])[0])  # a decode instance as prefill target
    _, _, _, _, info = env.step(np.array([bad_p, 2]))
    assert info["invalid_action"] is True


def test_masks_mark_roles() -> None:
    env = make("disagg/SmallRoute-v3")
    env.reset(seed=0)
    m = env.action_masks()
    assert m.dtype == bool and m.shape == (9,)
    assert list(m[:5]) == [True, True, False, False, True]  # last value: reject (admission control)
    assert list(m[5:]) == [False, False, True, True]


def test_reject_action_sheds_the_request() -> None:
    env = make("disagg/SmallRoute-v3")
    env.reset(seed=0)
    assert env.workload_seed == 0
    _, r, _, _, info = env.step(env.action_for(reject=True))
    assert not info["invalid_action"]
    assert env.recorder.rejected_by_reason == {"policy": 1}
    assert info["reward_terms"]["rejection"] == 1.0 and r < 0


def test_truncation_at_horizon() -> None:
    env = make("disagg/SmallRoute-v3", horizon_s=2.0)
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(10_000):
        _, _, term, trunc, info = env.step(masked_random(env, rng))
        if term or trunc:
            break
    assert trunc and not term
    assert info["episode_kpis"]["requests_total"] > 0
    with pytest.raises(gym.error.ResetNeeded):
        env.step(masked_random(env, rng))


def _trajectory(env_id: str, seed: int, n: int = 200) -> list[tuple]:
    env = make(env_id, **_fast(env_id))
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = [obs.tobytes()]
    for _ in range(n):
        a = masked_random(env, rng)
        obs, r, term, trunc, info = env.step(a)
        out.append((obs.tobytes(), r, term, trunc, tuple(sorted(info["reward_terms"].items()))))
        if term or trunc:
            obs, _ = env.reset(seed=seed + 1)
    return out


@pytest.mark.parametrize("env_id", ["disagg/SmallRoute-v3", "disagg/EnergyAllocate-v3", "disagg/LargeJoint-v3"])
def test_same_seed_same_trajectory(env_id: str) -> None:
    assert _trajectory(env_id, 5) == _trajectory(env_id, 5)
    assert _trajectory(env_id, 5) != _trajectory(env_id, 6)


def test_identical_workload_seed_identical_arrivals_across_policies() -> None:
    def arrivals(policy_seed: int) -> list[tuple[float, int]]:
        env = make("disagg/SmallRoute-v3")
        rng = np.random.default_rng(policy_seed)
        env.reset(seed=policy_seed, options={"workload_seed": 42})
        seen = []
        for _ in range(150):
            req = env.cluster.pending
            seen.append((req.arrival_s, req.prompt_tokens))
            _, _, term, trunc, _ = env.step(masked_random(env, rng))
            if term or trunc:
                break
        return seen

    assert arrivals(0) == arrivals(1)


def test_dict_obs_mode_and_pickle() -> None:
    env = gym.make("disagg/SmallRoute-v3", overrides={**SHORT, "env.obs_mode": "dict"})
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, dict) and env.observation_space.contains(obs)
    env2 = pickle.loads(pickle.dumps(gym.make("disagg/SmallRoute-v3", overrides=SHORT)))
    obs2, _ = env2.reset(seed=0)
    assert obs2.shape == env2.observation_space.shape


@pytest.mark.parametrize("env_id", ["disagg/SmallRoute-v3", "disagg/LargeJoint-v3", "disagg/MooncakeCacheRoute-v2"])
def test_running_env_pickles_and_continues_identically(env_id: str) -> None:
    """Plain ``pickle`` of an env mid-episode (reward terms pickle by name; the prefix cache's
    eviction hook is no closure): the copy continues exactly as the original."""
    env = make(env_id, horizon_s=5.0)
    rng = np.random.default_rng(0)
    env.reset(seed=4)
    for _ in range(10):
        env.step(masked_random(env, rng))
    data = pickle.dumps(env)
    # Nothing in a running env pickles through itertools (Python 3.12 deprecates pickling its
    # iterators and 3.14 removes it; the event and request counters are plain ints).
    assert b"itertools" not in data
    clone = pickle.loads(data)
    r1, r2 = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(30):
        o1 = env.step(masked_random(env, r1))
        o2 = clone.step(masked_random(clone, r2))
        assert np.array_equal(o1[0], o2[0]) and o1[1:4] == o2[1:4]
        if o1[2] or o1[3]:
            break


def test_render_modes() -> None:
    env = gym.make("disagg/SmallRoute-v3", overrides=SHORT, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert "h100-sxm" in text
    # the state column shows the state's value (a str enum formats as its class name otherwise)
    assert " active " in text and "InstanceState" not in text
    env = gym.make("disagg/SmallRoute-v3", overrides=SHORT, render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_vector_envs_sync_and_async() -> None:
    for mode in ("sync", "async"):
        venv = gym.make_vec("disagg/SmallRoute-v3", num_envs=2, vectorization_mode=mode, overrides=SHORT)
        obs, _ = venv.reset(seed=0)
        assert obs.shape[0] == 2
        obs, r, term, trunc, _ = venv.step(np.array([[0, 2], [1, 3]]))
        assert r.shape == (2,)
        venv.close()


def test_sb3_vec_envs() -> None:
    pytest.importorskip("stable_baselines3")  # the [rl] extra
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    for cls in (DummyVecEnv, SubprocVecEnv):
        venv = make_vec_env("disagg_gym:disagg/SmallRoute-v3", n_envs=2, vec_env_cls=cls, env_kwargs={"overrides": SHORT}, seed=0)
        venv.reset()
        _, r, _, _ = venv.step(np.array([[0, 2], [1, 3]]))
        assert r.shape == (2,)
        masks = venv.env_method("action_masks")
        assert len(masks) == 2
        venv.close()


def test_action_mask_dict_wrapper() -> None:
    from disagg_gym.wrappers import ActionMaskDict

    env = ActionMaskDict(gym.make("disagg/SmallRoute-v3", overrides=SHORT))
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observations", "action_mask"}
    assert env.observation_space.contains(obs)
    assert obs["action_mask"].sum() == 5


def test_reset_options_validated() -> None:
    env = make("disagg/SmallRoute-v3")
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"bogus": 1})
    with pytest.raises(ValueError, match="workload_seed must be a non-negative int"):
        env.reset(options={"workload_seed": -1})


@pytest.mark.parametrize("env_id", ["disagg/SmallRoute-v3", "disagg/HeteroRoute-v3", "disagg/LargeJoint-v3", "disagg/EnergyAllocate-v3", "disagg/ColocatedBaseline-v3"])
def test_incremental_observation_equals_full_rebuild(env_id: str) -> None:
    env = make(env_id, **_fast(env_id))
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=2)
    for _ in range(400):
        ob = env.obs_builder
        kind = env.decision
        ref = ob.build(env.cluster.pending if kind == "route" else None, kind == "route", kind == "control",
                       env._slo_ema, env._rej_ema, env._rate_ema, full=True)
        assert np.array_equal(obs, ref), "stale cached instance features"
        obs, _, term, trunc, _ = env.step(masked_random(env, rng))
        if term or trunc:
            obs, _ = env.reset()


def test_subprocess_vector_env_reproduces_in_process_trajectory() -> None:
    pytest.importorskip("stable_baselines3")  # the [rl] extra
    from stable_baselines3.common.vec_env import SubprocVecEnv

    def make_env() -> gym.Env:
        import disagg_gym  # noqa: F401  (registers ids in the worker)

        return gym.make("disagg/HeteroRoute-v3", overrides=SHORT)

    local = gym.make("disagg/HeteroRoute-v3", overrides=SHORT)
    obs_local, _ = local.reset(seed=11)
    venv = SubprocVecEnv([make_env], start_method="spawn")
    venv.seed(11)
    obs_sub = venv.reset()
    assert np.array_equal(obs_sub[0], obs_local)
    rng = np.random.default_rng(0)
    for _ in range(60):
        a = masked_random(local.unwrapped, rng)
        obs_local, r_local, term, trunc, _ = local.step(a)
        obs_sub, r_sub, _, _ = venv.step(a[None, :])
        assert r_sub[0] == pytest.approx(r_local, abs=0) and np.array_equal(obs_sub[0], obs_local)
        if term or trunc:
            break
    venv.close()


@pytest.mark.parametrize("k", [3, 5])
def test_constant_allocation_action_keeps_the_requested_pool_size(k: int) -> None:
    # Regression: a stale role-count cache (refilled by the router between two control steps)
    # made repeated identical actions keep flipping instances.
    env = make("disagg/EnergyAllocate-v3", horizon_s=120.0)
    env.reset(seed=0)
    for _ in range(10):
        _, _, term, trunc, info = env.step(env.action_for(prefill_counts={"h100-sxm": k}))
        assert not info["invalid_action"]
        if term or trunc:
            break
    roles = [(i.target_role or i.role).value for i in env.cluster.instances]
    assert roles.count("prefill") == k and roles.count("decode") == 8 - k


@pytest.mark.parametrize("env_id", ["disagg/SmallRoute-v3", "disagg/HeteroRoute-v3"])
def test_instance_features_carry_their_documented_meaning(env_id: str) -> None:
    """Oracle: the meanings in ``observation.INSTANCE_FEATURES`` applied to the cluster's own
    counters (roles, state, queue, batch, KV pool, transfers), not the builder's rows. The
    bounds checks above would pass with any in-range value (e.g. a constant 0)."""
    env = make(env_id)
    cfg, n = env.cfg, env.n
    rng = np.random.default_rng(4)
    obs, _ = env.reset(seed=1)
    seen = np.zeros(10, dtype=bool)
    for _ in range(300):
        rows = obs[: 10 * n].reshape(n, 10)
        for inst, row in zip(env.cluster.instances, rows):
            want = {
                0: inst.role.value in ("prefill", "colocated"),
                1: inst.role.value in ("decode", "colocated"),
                2: inst.state.value == "active",
                3: min(inst.pq.tokens / cfg.queue_norm_tokens, 1.0),
                5: len(inst.batch.members) / inst.max_batch,
                6: inst.kv.used / inst.kv.capacity,
                7: min((len(inst.dq) + inst.incoming + len(inst.batch.joiners) + len(inst.swapped)) / inst.max_batch, 1.0),
                9: min(inst.sending / 8, 1.0),
            }
            for col, value in want.items():
                assert row[col] == pytest.approx(float(value), abs=1e-6), (inst.idx, col)
                seen[col] |= bool(value)
        obs, _, term, trunc, _ = env.step(masked_random(env, rng))
        if term or trunc:
            break
    assert seen[[0, 1, 2, 3, 5, 6, 9]].all(), seen  # each checked feature was non-zero somewhere


@pytest.mark.parametrize(("env_id", "prompt", "allowed"), [
    # a prefill-only instance holds blocks(prompt + 1): 479,535 tokens fit the 479,536-token
    # H100/A100 prefill instances, one more token needs another block (only the H200 holds it)
    ("disagg/TriGpuRoute-v0", 479_535, {0, 2, 4}),
    ("disagg/TriGpuRoute-v0", 479_536, {0}),
    # a colocated instance also needs the block its decode grows into
    ("disagg/ColocatedBaseline-v3", 479_519, {0, 1, 2, 3}),
    ("disagg/ColocatedBaseline-v3", 479_520, set()),
])
def test_the_prefill_mask_is_the_simulators_too_large_rule(env_id: str, prompt: int, allowed: set[int]) -> None:
    from disagg_gym.workload.request import Request

    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    cl = env.cluster
    req = Request(10**9, cl.engine.now, prompt, 2, 10.0, 1.0)
    mp, _ = env._route_masks(req)
    assert {i for i, ok in enumerate(mp) if ok} == allowed
    ps, ds = cl.pools()
    big = max(ds, key=lambda i: i.kv_cap) if ds else None
    for inst in ps:  # the same answer as the cluster's own check
        d = inst.idx if big is None else big.idx
        assert mp[inst.idx] == (cl.valid_route(req, inst.idx, d) is None)
