"""Issue #16 "Done when: tests cover each option": the gaps an audit of tests/env found.

Each test checks an option against a hand-computed value or an independent count: the
``env.reward.invalid_action`` weight and invalid *allocation* actions, the aggregate reward
against the requests' own timestamps, one ``load_shaping`` / ``QueueShaping`` step by hand, and
that the telemetry wrappers change only what the policy sees.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.errors import UserError
from disagg_gym.types import Role
from disagg_gym.wrappers import ObservationNoise, QueueShaping, StaleObservation
from _oracles import request_outcome

ENV = "disagg/SmallRoute-v3"
ALLOC = "disagg/EnergyAllocate-v3"
W = {"met": 1.0, "violated": -0.5, "rejected": -1.0}  # small-route.yaml's weights, by hand


# ---------------------------------------------------------------- invalid_action
def _route_episode(weight: float, invalid: bool) -> tuple[float, int]:
    env = gym.make(ENV, overrides={"horizon_s": 8.0, "env.reward.invalid_action": weight})
    env.reset(seed=1)
    u = env.unwrapped
    total, steps = 0.0, 0
    while True:
        if invalid:  # a decode instance as the prefill instance: in the space, masked out
            dec = next(i.idx for i in u.cluster.instances if i.role is Role.DECODE)
            action = np.array([dec, dec])
        else:
            action = np.array(u._fallback_route(u.cluster.pending))
        _, r, term, trunc, info = env.step(action)
        total += r
        steps += 1
        if term or trunc:
            assert info["episode_kpis"]["invalid_actions"] == (steps if invalid else 0)
            return total, steps


def test_the_invalid_action_weight_is_paid_once_per_invalid_step() -> None:
    good, steps = _route_episode(-0.25, invalid=False)
    bad, bad_steps = _route_episode(-0.25, invalid=True)
    assert steps == bad_steps > 50  # the fallback router made the same decisions
    assert bad == pytest.approx(good - 0.25 * steps)
    assert bad < good  # an all-invalid policy scores worse than the fallback router it triggers


def _at_control(mode: str) -> gym.Env:
    env = gym.make(ALLOC, overrides={"horizon_s": 30.0, "env.control_interval_s": 2.0, "env.invalid_action": mode})
    env.reset(seed=0)
    assert env.unwrapped.decision == "control"
    return env


def _masked_out_allocation(env: gym.Env) -> np.ndarray:
    """Every prefill instance of the only GPU type (4 + 4 H100): 8 prefill, 0 decode."""
    (size,) = env.unwrapped.gpu_sizes
    assert size == 8 and not env.unwrapped.action_masks()[size]
    return np.array([size])


@pytest.mark.parametrize("mode, penalty", [("penalize", -1.0), ("fallback", 0.0)])
def test_an_invalid_allocation_keeps_the_pools_and_is_penalized_per_mode(mode: str, penalty: float) -> None:
    env = _at_control(mode)
    u = env.unwrapped
    before = u.cluster.role_counts("h100-sxm")
    _, r, _, _, info = env.step(_masked_out_allocation(env))
    assert info["invalid_action"] is True
    assert info["reward_terms"]["invalid_action"] == 1.0
    assert u.cluster.role_counts("h100-sxm") == before == (4, 4)  # nothing switched
    # same simulation with a valid no-op action: the rewards differ by the penalty only
    ref = _at_control(mode)
    _, r_ref, _, _, info_ref = ref.step(ref.unwrapped.action_for())
    assert info_ref["invalid_action"] is False
    assert r == pytest.approx(r_ref + penalty)


def test_raise_refuses_an_invalid_allocation_before_changing_anything() -> None:
    env = _at_control("raise")
    u = env.unwrapped
    now = u.engine.now
    with pytest.raises(ValueError, match="at a control decision"):
        env.step(_masked_out_allocation(env))
    assert u.cluster.role_counts("h100-sxm") == (4, 4) and u.engine.now == now
    env.step(u.action_for(prefill_counts={"h100-sxm": 5}))  # a valid one still works
    assert u.cluster.role_counts("h100-sxm")[0] == 5


# ---------------------------------------------------------------- reward_mode: aggregate


def test_aggregate_episode_reward_is_the_weighted_count_of_finished_requests() -> None:
    env = gym.make(ENV, overrides={"horizon_s": 6.0, "workload.rate_per_s": 110, "env.reward_mode": "aggregate"})
    env.reset(seed=4)
    u = env.unwrapped
    reqs, total, k = [], 0.0, 0
    while True:
        reqs.append(u.cluster.pending)
        k += 1
        if k % 7 == 0:  # some policy rejections, so all three terms appear
            action = u.action_for(reject=True)
        else:
            action = np.array(u._fallback_route(u.cluster.pending))
        _, r, term, trunc, _ = env.step(action)
        total += r
        if term or trunc:
            break
    outcomes = [request_outcome(q) for q in reqs]
    assert {"met", "violated", "rejected"} <= set(outcomes)
    assert total == pytest.approx(sum(W[o] for o in outcomes if o is not None))


# ---------------------------------------------------------------- load_shaping, QueueShaping
@pytest.mark.parametrize("gamma", [0.9, 1.0])
def test_one_load_shaping_step_by_hand(gamma: float) -> None:
    env = gym.make(ENV, overrides={"horizon_s": 3.0, "env.reward.load_shaping": 2.0, "env.shaping_gamma": gamma})
    env.reset(seed=2)
    u = env.unwrapped
    cl = u.cluster
    assert all(i.B == 0 and i.pq_tokens == 0 and not i.prefill_busy for i in cl.instances)  # empty: phi(s0) = 0
    _, r, _, _, info = env.step(np.array([0, 2]))
    p0, p1, d2, d3 = cl.instances
    # the state of the next decision, by hand: request 1 decodes alone on instance 2
    assert not p0.prefill_busy and p0.pq_tokens == 0 and not p1.prefill_busy and p1.pq_tokens == 0
    assert d2.B == 1 and d3.B == 0 and d2.max_batch == 128 and d2.kv_used / d2.kv_cap < 1 / 128
    assert not d2.dq and not d2.incoming and not d3.dq and not d3.incoming
    phi1 = -((1 / 128) ** 2)
    assert info["reward_terms"]["load_shaping"] == pytest.approx(gamma * phi1 - 0.0, rel=1e-9)
    others = sum(w * info["reward_terms"][t] for t, w in (("slo_goodput", 1.0), ("slo_violation", -0.5), ("rejection", -1.0)))
    assert r == pytest.approx(others + 2.0 * gamma * phi1)


def test_one_queue_shaping_step_by_hand() -> None:
    env = QueueShaping(gym.make(ENV, overrides={"horizon_s": 3.0}), gamma=0.9, wait_weight=1.0, pressure_weight=3.0)
    env.reset(seed=2)
    _, r, _, _, info = env.step(np.array([0, 2]))
    d2 = env.unwrapped.cluster.instances[2]
    assert d2.B == 1 and not env.unwrapped.cluster.instances[0].prefill_busy
    assert info["shaping"] == pytest.approx(0.9 * (-3.0 * (1 / 128) ** 2), rel=1e-9)
    assert "load_shaping" in info["reward_terms"] and info["reward_terms"]["load_shaping"] == 0.0


# ---------------------------------------------------------------- telemetry wrappers
def _masked_first(masks: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    parts = np.split(masks, np.cumsum(nvec)[:-1])
    return np.array([int(np.flatnonzero(p)[-1]) for p in parts])


@pytest.mark.parametrize("wrap", [
    lambda e: StaleObservation(e, delay_steps=4),
    lambda e: StaleObservation(e, delay_s=0.3),
    lambda e: ObservationNoise(e, sigma=0.1),
])
def test_telemetry_wrappers_change_only_what_the_policy_sees(wrap) -> None:
    live = gym.make(ENV, overrides={"horizon_s": 4.0})
    wrapped = wrap(gym.make(ENV, overrides={"horizon_s": 4.0}))
    live.reset(seed=5)
    wrapped.reset(seed=5)
    for _ in range(60):
        m = wrapped.action_masks()
        np.testing.assert_array_equal(m, wrapped.unwrapped.action_masks())  # masks are live
        np.testing.assert_array_equal(m, live.unwrapped.action_masks())
        a = _masked_first(m, live.action_space.nvec)
        _, r1, t1, tr1, i1 = live.step(a)
        _, r2, t2, tr2, i2 = wrapped.step(a)
        assert (r1, t1, tr1, i1["reward_terms"], i1["sim_time_s"]) == (r2, t2, tr2, i2["reward_terms"], i2["sim_time_s"])
        if t1 or tr1:
            break


def test_observation_noise_refuses_a_dict_observation_in_one_line() -> None:
    with pytest.raises(UserError, match="needs a Box observation") as err:
        ObservationNoise(gym.make(ENV, obs_mode="dict"))
    assert "\n" not in str(err.value)
