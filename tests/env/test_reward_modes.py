"""Issue #16 item 2: the per-decision reward mode credits each request's outcome to its decision."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from _oracles import request_outcome

ENV = "disagg/SmallRoute-v3"
W = {"met": 1.0, "violated": -0.5, "rejected": -1.0}  # small-route.yaml's weights, by hand


def _make(mode: str, horizon: float = 6.0) -> gym.Env:
    return gym.make(ENV, overrides={"horizon_s": horizon, "env.reward_mode": mode})




def test_a_policy_rejection_is_credited_to_its_own_step() -> None:
    env = _make("per_decision")
    env.reset(seed=3)
    u = env.unwrapped
    _, r, _, _, info = env.step(u.action_for(reject=True))
    # decision 0 rejected its request: -1 in this very step; nothing else can have finished yet
    # (the first arrival is the first event, so no request was in flight before it)
    assert info["credit"] == {"0": -1.0}  # string keys (vector info wrappers need them)
    assert r == pytest.approx(-1.0)


def test_every_decision_is_credited_its_requests_finalrequest_outcome() -> None:
    env = _make("per_decision", horizon=8.0)
    env.reset(seed=5)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    routed: dict[int, object] = {}
    credited: dict[int, float] = {}
    first_seen: dict[int, float] = {}
    total = 0.0
    k = 0
    while True:
        req = u.cluster.pending
        routed[k] = req
        mask = u.action_masks()
        nvec = env.action_space.nvec
        p = rng.choice(np.flatnonzero(mask[: nvec[0]]))  # random, rejections included
        d = rng.choice(np.flatnonzero(mask[nvec[0]:]))
        _, r, term, trunc, info = env.step(np.array([p, d]))
        total += r
        assert sum(info["credit"].values()) == pytest.approx(r)  # no other term is weighted here
        for key, v in info["credit"].items():
            dec = int(key)
            assert dec <= k  # credit never precedes its decision
            credited[dec] = credited.get(dec, 0.0) + v
            first_seen.setdefault(dec, info["sim_time_s"])
        k += 1
        if term or trunc:
            break
    outcomes = {dec: request_outcome(req) for dec, req in routed.items()}
    assert {"met", "violated", "rejected"} <= set(outcomes.values())
    for dec, out in outcomes.items():
        req = routed[dec]
        if out is None:  # still running at truncation: provisional credit, if any
            assert credited.get(dec, 0.0) in (0.0, W["met"], W["violated"])
            continue
        assert credited[dec] == pytest.approx(W[out]), (dec, out)
        if out != "rejected":  # delivered no earlier than the first token (documented delay)
            assert first_seen[dec] >= req.first_token_s


def test_episode_totals_match_the_aggregate_mode_on_the_same_simulation() -> None:
    """Same actions, same simulation: the totals differ only by the provisional credit of the
    requests still decoding at truncation (per_decision pays TTFT-met at the first token)."""
    totals = {}
    for mode in ("aggregate", "per_decision"):
        env = _make(mode)
        env.reset(seed=11)
        u = env.unwrapped
        total = 0.0
        reqs = []
        while True:
            reqs.append(u.cluster.pending)
            p, d = u._fallback_route(u.cluster.pending)
            _, r, term, trunc, info = env.step(np.array([p, d]))
            total += r
            if term or trunc:
                break
        in_flight = [q for q in reqs if q.first_token_s is not None and q.completion_s is None]
        provisional = sum(
            W["met"] if q.first_token_s - q.arrival_s <= q.slo_ttft_s else W["violated"] for q in in_flight
        )
        totals[mode] = (total, info["episode_kpis"]["goodput_rps"], provisional, len(in_flight))
    agg, per = totals["aggregate"], totals["per_decision"]
    assert agg[1] == per[1] and agg[3] > 0
    assert per[0] == pytest.approx(agg[0] + per[2])


def test_aggregate_mode_has_no_credit_key() -> None:
    env = _make("aggregate", horizon=2.0)
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.unwrapped.action_for(reject=True))
    assert "credit" not in info


def test_load_shaping_telescopes_to_zero_with_gamma_one() -> None:
    """sum_t (phi(s_t+1) - phi(s_t)) = phi(end) - phi(start) = 0 - 0 (empty cluster at the
    first arrival, phi(end) = 0 by convention); with gamma < 1 the terms are not all zero."""
    sums = {}
    for gamma in (1.0, 0.9):
        env = gym.make(ENV, overrides={
            "horizon_s": 4.0, "env.reward.load_shaping": 1.0, "env.shaping_gamma": gamma,
        })
        env.reset(seed=2)
        u = env.unwrapped
        total, nonzero = 0.0, 0
        while True:
            p, d = u._fallback_route(u.cluster.pending)
            _, _, term, trunc, info = env.step(np.array([p, d]))
            total += info["reward_terms"]["load_shaping"]
            nonzero += info["reward_terms"]["load_shaping"] != 0.0
            if term or trunc:
                break
        sums[gamma] = (total, nonzero)
    assert sums[1.0][0] == pytest.approx(0.0, abs=1e-9) and sums[1.0][1] > 10
    assert sums[0.9][0] != pytest.approx(0.0, abs=1e-3)


def test_load_shaping_is_off_by_default_weight() -> None:
    env = gym.make(ENV, overrides={"horizon_s": 2.0, "env.reward.load_shaping": 0.0})
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.unwrapped.action_for(route=(0, 2)))
    assert info["reward_terms"]["load_shaping"] == 0.0


@pytest.mark.parametrize(
    "name", ["SmallRoute", "HeteroRoute", "PcieRoute", "ColocatedBaseline", "HybridCostRoute", "MooncakeRdmaRoute"]
)
def test_route_ids_are_v3_and_older_ids_are_deprecated(name: str) -> None:
    # v2 (issue #16) made per-decision credit the default, v3 the predicted advance (and issue #15
    # gave SmallRoute, HeteroRoute, PcieRoute and HybridCostRoute headroom); old ids name v3
    for old in (1, 2):
        with pytest.raises(gym.error.DeprecatedEnv, match=f"disagg/{name}-v3"):
            gym.make(f"disagg/{name}-v{old}")
    env = gym.make(f"disagg/{name}-v3")
    assert env.unwrapped.cfg.reward_mode == "predicted"


def test_credit_survives_gymnasiums_vector_info_wrappers() -> None:
    """RLlib and gym.make_vec users wrap infos with DictInfoToList, which needs string keys."""
    venv = gym.wrappers.vector.DictInfoToList(
        gym.make_vec("disagg/SmallRoute-v3", num_envs=2, vectorization_mode="sync", overrides={"horizon_s": 3})
    )
    venv.reset(seed=0)
    for _ in range(20):
        _, _, _, _, infos = venv.step(venv.action_space.sample())
        assert len(infos) == 2 and all(isinstance(i, dict) for i in infos)
    venv.close()


# ---------------------------------------------------------------- reward_mode: predicted
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def _random_episode(mode: str, seed: int, horizon: float) -> tuple[list[float], list[dict]]:
    env = _make(mode, horizon=horizon)
    env.reset(seed=seed)
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    rewards, infos = [], []
    while True:
        mask = u.action_masks()
        nvec = env.action_space.nvec
        p = rng.choice(np.flatnonzero(mask[: nvec[0]]))  # rejections included
        d = rng.choice(np.flatnonzero(mask[nvec[0]:]))
        _, r, term, trunc, info = env.step(np.array([p, d]))
        rewards.append(float(r))
        infos.append(info)
        if term or trunc:
            return rewards, infos


@pytest.mark.parametrize("seed", [1, 7])
def test_predicted_mode_has_the_per_decision_episode_return(seed: int) -> None:
    """Potential-based: paying each decision its predicted outcome in advance and taking it back
    when the true outcome lands changes when reward arrives, never an episode's return."""
    base, _ = _random_episode("per_decision", seed, 10.0)
    pred, infos = _random_episode("predicted", seed, 10.0)
    assert len(pred) == len(base)
    assert sum(pred) == pytest.approx(sum(base), abs=1e-9)
    # ... while the timing differs: most steps carry a non-zero advance
    assert sum(abs(i["reward_terms"]["predicted_credit"]) > 1e-9 for i in infos) > len(infos) // 2
    assert pred != pytest.approx(base)


def test_predicted_credit_of_a_lone_request_on_an_idle_cluster() -> None:
    """The first request of an episode meets an idle cluster, so the cost model's prediction at
    dispatch is its actual TTFT and TPOT: the advance is w_v + (w_m - w_v) q with q from the
    request's own timestamps, and the step where its outcome lands pays (w_m - advance)."""
    env = _make("predicted", horizon=30.0)
    env.reset(seed=3)
    u = env.unwrapped
    req = u.cluster.pending
    _, r0, _, _, info0 = env.step(np.array([0, 2]))
    adv = info0["reward_terms"]["predicted_credit"]
    # run with a fixed routing until the first request has its first token and completion
    settled = None
    while req.completion_s is None or settled is None:
        _, r, term, trunc, info = env.step(np.array([1, 3]))  # keep instances 0 and 2 to it alone
        if "0" in info["credit"] and settled is None:
            settled = info
        assert not (term or trunc)
    ttft = req.first_token_s - req.arrival_s
    tpot = (req.completion_s - req.first_token_s) / (req.output_tokens - 1)
    assert ttft <= req.slo_ttft_s and tpot <= req.slo_tpot_s
    # prediction on an idle pair = what happened, up to the batch composition at decode
    q = _sigmoid((1 - ttft / req.slo_ttft_s) / 0.1) * _sigmoid((1 - tpot / req.slo_tpot_s) / 0.1)
    assert adv == pytest.approx(W["violated"] + (W["met"] - W["violated"]) * q, abs=0.02)
    assert r0 == pytest.approx(adv)  # nothing else can have finished at the first decision
    # at the first token the true credit (met) arrives and the advance is taken back
    assert settled["credit"]["0"] == pytest.approx(W["met"])


def test_the_end_of_a_predicted_episode_reports_the_advances_it_takes_back() -> None:
    # A truncated overloaded episode ends with requests in flight: their advances are taken
    # back in the last reward, and info["advance_taken_back"] says how much (for learners that
    # bootstrap on truncation). Each request's advance lies in [w_violated, w_met] (request
    # unit, reward_scale 1), and only a request without its first token is still outstanding.
    # Exact, on one request: with max_episode_requests=1 the first decision ends the episode
    # before the request's first token, so the whole advance it was paid is taken back; that
    # advance is the first step's predicted_credit of the same episode uncapped.
    full = _make("predicted", horizon=30.0)
    full.reset(seed=3)
    _, _, _, _, first = full.step(np.array([0, 2]))
    one = gym.make(ENV, overrides={"horizon_s": 30.0, "env.reward_mode": "predicted", "env.max_episode_requests": 1})
    one.reset(seed=3)
    _, r, term, trunc, end = one.step(np.array([0, 2]))
    assert trunc and not term
    assert end["advance_taken_back"] == first["reward_terms"]["predicted_credit"] != 0.0
    assert r == pytest.approx(0.0, abs=1e-12) and end["reward_terms"]["predicted_credit"] == pytest.approx(0.0, abs=1e-12)

    rewards, infos = _random_episode("predicted", 3, 10.0)
    last = infos[-1]
    assert all("advance_taken_back" not in i for i in infos[:-1])
    back = last["advance_taken_back"]
    unfinished = last["episode_kpis"]["unfinished"]
    assert unfinished > 0 and back != 0.0
    assert W["violated"] * unfinished <= back <= W["met"] * unfinished
    _, base = _random_episode("per_decision", 3, 10.0)
    assert "advance_taken_back" not in base[-1]


def test_truncation_advance_adds_the_take_back_to_the_truncated_last_step_only() -> None:
    from disagg_gym.wrappers import TruncationAdvance

    def run(wrap: bool) -> tuple[list[float], list[dict]]:
        env = _make("predicted", horizon=10.0)
        if wrap:
            env = TruncationAdvance(env)
        env.reset(seed=3)
        u = env.unwrapped
        rng = np.random.default_rng(3)
        rewards, infos = [], []
        while True:
            mask = u.action_masks()
            nvec = env.action_space.nvec
            p = rng.choice(np.flatnonzero(mask[: nvec[0]]))
            d = rng.choice(np.flatnonzero(mask[nvec[0]:]))
            _, r, term, trunc, info = env.step(np.array([p, d]))
            rewards.append(float(r))
            infos.append(info)
            if term or trunc:
                assert trunc and not term  # the horizon: a truncation
                return rewards, infos

    raw, raw_infos = run(False)
    kept, infos = run(True)
    assert kept[:-1] == raw[:-1]
    back = raw_infos[-1]["advance_taken_back"]
    assert back != 0.0 and infos[-1]["advance_kept"] == back
    assert kept[-1] == pytest.approx(raw[-1] + back, abs=1e-12)
    assert infos[-1]["reward_terms"] == raw_infos[-1]["reward_terms"]  # the env's own terms untouched
