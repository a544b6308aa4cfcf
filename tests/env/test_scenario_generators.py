"""Scenario generators (issue #16 item 4): distributions sampled per reset, domain randomisation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.config import ConfigError, from_dict
from disagg_gym.env.make import scenario_data
from disagg_gym.env.registration import registered_ids
from disagg_gym.generator import ScenarioGenerator, find_dists
from disagg_gym.hardware.perturbed import PerturbedCost
from disagg_gym.scenario import ScenarioConfig

ENV = "disagg/SmallRoute-v3"
RATE = {"dist": "uniform", "low": 20.0, "high": 40.0}


def _gen(config: dict) -> ScenarioGenerator:
    data, src = scenario_data(config, "small-route")
    return ScenarioGenerator(data, lambda d: from_dict(ScenarioConfig, d, source=src), lambda s: len(s.cluster.groups), src)


def test_same_reset_seed_same_sampled_scenario() -> None:
    env = gym.make(ENV, config={"horizon_s": 5, "workload": {"rate_per_s": RATE, "lengths": {"choice": ["azure_conv", "azure_code"]}}})
    _, a = env.reset(seed=7)
    _, b = env.reset(seed=7)
    _, c = env.reset(seed=8)
    assert a["scenario"]["sampled"] == b["scenario"]["sampled"]
    assert a["scenario"]["sampled"] != c["scenario"]["sampled"]
    assert set(a["scenario"]["sampled"]) == {"workload.rate_per_s", "workload.lengths"}
    # The episode runs on the drawn values.
    _, d = env.reset(seed=8)
    assert env.unwrapped.scenario.workload.rate_per_s == d["scenario"]["sampled"]["workload.rate_per_s"]


def test_workload_seed_pins_the_scenario_like_the_arrivals() -> None:
    env = gym.make(ENV, config={"horizon_s": 5, "workload": {"rate_per_s": RATE}})
    _, a = env.reset(seed=1, options={"workload_seed": 3})
    _, b = env.reset(seed=2, options={"workload_seed": 3})
    assert a["scenario"]["sampled"] == b["scenario"]["sampled"]


def test_samples_stay_in_bounds() -> None:
    gen = _gen({"workload": {
        "rate_per_s": RATE,
        "period_s": {"dist": "loguniform", "low": 100, "high": 1000},
        "prompt_tokens": {"dist": "randint", "low": 3, "high": 5},
        "lengths": {"choice": ["azure_conv", "azure_code"], "weights": [1, 0]},
    }})
    rng = np.random.default_rng(0)
    seen_ints = set()
    for _ in range(300):
        _, drawn = gen.sample(rng)
        assert 20.0 <= drawn["workload.rate_per_s"] < 40.0
        assert 100.0 <= drawn["workload.period_s"] < 1000.0
        assert drawn["workload.prompt_tokens"] in (3, 4, 5)
        seen_ints.add(drawn["workload.prompt_tokens"])
        assert drawn["workload.lengths"] == "azure_conv"  # weight 0 is never drawn
    assert seen_ints == {3, 4, 5}  # randint includes both ends


def test_sampled_rate_drives_the_arrivals() -> None:
    # Oracle: Poisson arrivals over H seconds number about rate x H (sd sqrt(rate x H)).
    env = gym.make(ENV, config={"horizon_s": 20, "workload": {"rate_per_s": {"choice": [5, 50]}}}).unwrapped
    seen = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        rate = info["scenario"]["sampled"]["workload.rate_per_s"]
        seen.add(rate)
        term = trunc = False
        while not (term or trunc):
            _, _, term, trunc, _ = env.step(env.action_for(reject=True))
        n = env.cluster.arrived
        mean = rate * 20
        assert abs(n - mean) < 5 * mean**0.5, (rate, n)
    assert seen == {5, 50}


def test_standard_configs_sample_nothing_by_default() -> None:
    for env_id in registered_ids():
        u = gym.make(env_id).unwrapped
        assert not u.generator.active, env_id
        assert not u.cfg.cost_perturbation.active, env_id
        assert u.cfg.warm_start_s == 0.0, env_id
    _, info = gym.make(ENV, horizon_s=2).reset(seed=0)
    assert info["scenario"]["sampled"] == {} and "cost_factors" not in info["scenario"]


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"workload": {"rate_per_s": {"dist": "gauss", "low": 1, "high": 2}}}, "dist must be one of"),
        ({"workload": {"rate_per_s": {"dist": "uniform", "low": 2, "high": 1}}}, "needs low < high"),
        ({"workload": {"rate_per_s": {"dist": "uniform", "low": 1, "hi": 2}}}, "unknown key 'hi'"),
        ({"workload": {"rate_per_s": {"dist": "uniform", "low": -5, "high": 2}}}, "'workload.rate_per_s': expected a value > 0"),
        ({"workload": {"lengths": {"choice": []}}}, "choice must be a non-empty list"),
        ({"workload": {"lengths": {"choice": ["azure_conv", "nope"]}}}, "workload.lengths"),
        ({"workload": {"rate_per_s": {"choice": [1, 2], "weights": [1]}}}, "weights must be 2"),
        ({"env": {"reward": {"slo_goodput": {"choice": [1, 2]}}}}, "distributions are allowed only under"),
        ({"cluster": {"groups": [{"gpu": "h100-sxm", "count": {"dist": "randint", "low": 1, "high": 3}, "role": "prefill"},
                                 {"gpu": "h100-sxm", "count": 2, "role": "decode"}]}}, "changes the observation/action sizes"),
    ],
)
def test_bad_distributions_are_one_clear_error(config: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        gym.make(ENV, config=config)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_gpu_mix_that_keeps_the_layout_is_sampled() -> None:
    # HeteroRoute: 2 H100 prefill, 2 A100 decode, 2 L40S decode; swapping the L40S type for
    # H200 keeps 3 types of 2 instances, so the spaces stay the same.
    env = gym.make("disagg/HeteroRoute-v3", horizon_s=2, config={"cluster": {"groups": [
                       {"gpu": "h100-sxm", "count": 2, "role": "prefill"},
                       {"gpu": "a100-80gb", "count": 2, "role": "decode"},
                       {"gpu": {"choice": ["l40s", "h200"]}, "count": 2, "role": "decode"},
                   ]}})
    gpus = set()
    for seed in range(8):
        _, info = env.reset(seed=seed)
        g = info["scenario"]["sampled"]["cluster.groups[2].gpu"]
        assert env.unwrapped.cluster.instances[-1].gpu == g
        gpus.add(g)
    assert gpus == {"l40s", "h200"}


def test_distribution_only_where_allowed() -> None:
    with pytest.raises(ConfigError, match="allowed only under"):
        find_dists({"router": {"choice": ["jsq", "round_robin"]}})
    assert [d.key for d in find_dists({"variants": {"short": {"horizon_s": {"choice": [1]}}}})] == []


def test_cost_perturbation_scales_times_within_the_band() -> None:
    band = {"prefill_time_frac": 0.05, "decode_time_frac": 0.06}
    env = gym.make("disagg/HeteroRoute-v3", horizon_s=2, config={"env": {"cost_perturbation": band}}).unwrapped
    _, a = env.reset(seed=4)
    _, b = env.reset(seed=4)
    assert a["scenario"]["cost_factors"] == b["scenario"]["cost_factors"]
    facs = a["scenario"]["cost_factors"]
    assert set(facs) == {"h100-sxm", "a100-80gb", "l40s"}
    for f in facs.values():
        assert 0.95 <= f["prefill"] <= 1.05 and 0.94 <= f["decode"] <= 1.06
    from disagg_gym.hardware.select import build_cost

    inst = env.cluster.instances[0]
    base = build_cost(inst.gpu, "llama-3.1-8b", 1)
    assert inst.cost.prefill_s([1000]) == pytest.approx(base.prefill_s([1000]) * facs[inst.gpu]["prefill"])
    _, c = env.reset(seed=5)
    assert c["scenario"]["cost_factors"] != facs


def test_perturbed_cost_hand_values() -> None:
    class Toy:
        kv_bytes_per_token = 7

        def prefill_s(self, lens: list[int], cached: list[int] | None = None) -> float:
            return 0.001 * sum(lens)

        def decode_coeffs(self, batch: int, context_tokens: float | None = None) -> tuple[float, float]:
            return 0.01, 1e-6

    p = PerturbedCost(Toy(), 1.1, 0.9)
    assert p.prefill_s([100, 100]) == pytest.approx(0.22)
    assert p.decode_coeffs(4) == pytest.approx((0.009, 9e-7))
    assert p.kv_bytes_per_token == 7
    with pytest.raises(ValueError):
        PerturbedCost(Toy(), 0.0, 1.0)


def test_cost_perturbation_band_is_bounded() -> None:
    with pytest.raises(ConfigError, match="prefill_time_frac"):
        gym.make(ENV, config={"env": {"cost_perturbation": {"prefill_time_frac": 0.5}}})
