"""``gym.make`` conventions (issue #16 item 5): config mappings, nested overrides, flat keys, spec ids."""

from __future__ import annotations

import pickle

import gymnasium as gym
import pytest

import disagg_gym  # noqa: F401
from disagg_gym.config import ConfigError
from disagg_gym.env.make import custom_env_id

ENV = "disagg/SmallRoute-v3"


def test_plain_make_keeps_the_standard_id_and_config() -> None:
    env = gym.make(ENV)
    assert env.spec is not None and env.spec.id == ENV
    scen = env.unwrapped.scenario
    # Values written in configs/small-route.yaml.
    assert scen.horizon_s == 120 and scen.workload.rate_per_s == 62 and scen.cluster.groups[0].count == 2


def test_config_mapping_is_deep_merged_over_the_standard_config() -> None:
    env = gym.make(ENV, config={"workload": {"rate_per_s": 30}, "env": {"reward": {"rejection": -3.0}}})
    u = env.unwrapped
    assert u.scenario.workload.rate_per_s == 30
    assert u.scenario.workload.lengths == "azure_conv"  # siblings kept (merge, not replace)
    assert u.scenario.workload.slo_tpot_s == 0.04
    assert u.cfg.reward.rejection == -3.0 and u.cfg.reward.slo_violation == -0.5
    assert u.scenario.cluster.groups[1].max_batch == 128


def test_nested_and_dotted_overrides_agree() -> None:
    a = gym.make(ENV, overrides={"workload": {"rate_per_s": 20}, "env": {"reward": {"energy_kj": -0.1}}}).unwrapped
    b = gym.make(ENV, overrides={"workload.rate_per_s": 20, "env.reward.energy_kj": -0.1}).unwrapped
    assert a.scenario == b.scenario
    assert a.cfg.reward.energy_kj == -0.1 and a.cfg.reward.slo_goodput == 1.0
    assert a.spec.id == b.spec.id  # same effective config -> same custom id


def test_flat_keys_are_applied_and_recorded_in_spec_kwargs() -> None:
    env = gym.make(ENV, horizon_s=15, rate_per_s=12.5, max_episode_requests=40, obs_mode="dict")
    u = env.unwrapped
    assert u.scenario.horizon_s == 15 and u.scenario.workload.rate_per_s == 12.5
    assert u.cfg.max_episode_requests == 40 and u.cfg.obs_mode == "dict"
    assert isinstance(u.observation_space, gym.spaces.Dict)
    kw = env.spec.kwargs
    assert kw["horizon_s"] == 15 and kw["rate_per_s"] == 12.5 and kw["max_episode_requests"] == 40
    assert kw["obs_mode"] == "dict"


def test_flat_keys_win_over_config_and_overrides() -> None:
    u = gym.make(ENV, config={"horizon_s": 50}, overrides={"horizon_s": 40}, horizon_s=30).unwrapped
    assert u.scenario.horizon_s == 30
    u = gym.make(ENV, config={"horizon_s": 50}, overrides={"horizon_s": 40}).unwrapped
    assert u.scenario.horizon_s == 40


def test_custom_config_gets_its_own_spec_id_and_remakes_from_the_spec() -> None:
    env = gym.make(ENV, config={"workload": {"rate_per_s": 30}})
    sid = env.spec.id
    assert sid.startswith("disagg/SmallRoute-custom-") and sid.endswith("-v3") and sid != ENV
    again = gym.make(env.spec)  # the spec alone rebuilds the same env, same id
    assert again.spec.id == sid and again.unwrapped.scenario == env.unwrapped.scenario
    with pytest.raises(gym.error.Error):
        gym.make(sid)  # not a registered id: the custom config is never filed under the standard one
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    assert clone.spec.id == sid


def test_flat_key_equal_to_the_standard_value_keeps_the_standard_id() -> None:
    assert gym.make(ENV, horizon_s=120).spec.id == ENV
    assert gym.make(ENV, horizon_s=60).spec.id != ENV


@pytest.mark.parametrize("kw", [
    {"obs_mode": "box"},  # the env section's default, which small-route's YAML does not spell out
    {"overrides": {"env.invalid_action": "penalize"}},
    {"overrides": {"env.reward_scale": 1.0, "env.reward.rejection": -1.0}},
    {"config": {"cluster": {"preemption": "recompute"}}},
])
def test_a_key_set_to_its_default_keeps_the_standard_id(kw: dict) -> None:
    # the same effective config always gets the same id (docs/envs.md), whether or not the
    # standard YAML writes the key out
    env = gym.make(ENV, **kw)
    assert env.spec.id == ENV
    assert env.unwrapped.cfg == gym.make(ENV).unwrapped.cfg


def test_a_key_off_its_default_still_gets_a_custom_id() -> None:
    assert gym.make(ENV, obs_mode="dict").spec.id.startswith("disagg/SmallRoute-custom-")
    short = "disagg/SmallRoute-short-v3"
    assert gym.make(short, warm_start_s=5.0).spec.id.startswith("disagg/SmallRoute-short-custom-")


def test_custom_env_id_format() -> None:
    assert custom_env_id("disagg/SmallRoute-v3", "ab12cd34") == "disagg/SmallRoute-custom-ab12cd34-v3"
    assert custom_env_id("disagg/SmallRoute-custom-ab12cd34-v3", "ab12cd34") == "disagg/SmallRoute-custom-ab12cd34-v3"


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"config": {"workload": {"rate_per_sec": 3}}}, "'workload.rate_per_sec': unknown key"),
        ({"config": {"horizonn_s": 3}}, "'horizonn_s': unknown key"),
        ({"overrides": {"env": {"rewards": {}}}}, "'env.rewards': unknown key"),
        ({"horizn_s": 3}, "unknown keyword argument 'horizn_s'"),
        ({"obs_mode": "graph"}, "'env.obs_mode': expected one of 'box', 'dict'"),
        ({"rate_per_s": -1}, "'workload.rate_per_s'"),
        ({"variant": "nope"}, "unknown variant 'nope'"),
    ],
)
def test_bad_keys_are_one_clear_error_naming_the_key(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        gym.make(ENV, **kwargs)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_direct_construction_still_takes_a_name_or_path() -> None:
    from disagg_gym.env.serving_env import DisaggServingEnv

    env = DisaggServingEnv("hetero-route", horizon_s=10)
    assert env.scenario.name == "hetero-route" and env.scenario.horizon_s == 10
    assert env.spec is None


def test_a_whole_config_mapping_is_the_config_not_merged_over_small_route() -> None:
    # A YAML file's data given as a mapping is that config: it used to be deep-merged over
    # small-route and inherit its env section (reward_mode: predicted on an allocate task).
    from dataclasses import replace

    import yaml

    from disagg_gym.env.serving_env import DisaggServingEnv
    from disagg_gym.scenario import configs_dir

    data = yaml.safe_load((configs_dir() / "energy-allocate.yaml").read_text())
    env = DisaggServingEnv(data, horizon_s=30)
    ref = DisaggServingEnv("energy-allocate", horizon_s=30)
    assert env.cfg.reward_mode == ref.cfg.reward_mode == "aggregate"
    assert replace(env.scenario, name="x") == replace(ref.scenario, name="x")
    # a partial mapping still merges over the default config
    part = DisaggServingEnv({"workload": {"rate_per_s": 30}})
    assert part.scenario.workload.rate_per_s == 30 and part.scenario.name == "small-route"


def test_a_per_decision_reward_on_an_allocate_task_is_refused() -> None:
    from disagg_gym.errors import UserError

    for mode in ("per_decision", "predicted"):
        with pytest.raises(UserError, match=rf"env.reward_mode '{mode}' credits routing decisions and an allocate task "
                                            r"makes none \(its outcome terms would stay 0\): use aggregate"):
            gym.make("disagg/EnergyAllocate-v3", overrides={"env.reward_mode": mode})


def test_scenario_config_object_under_a_standard_id() -> None:
    from dataclasses import replace

    from disagg_gym.scenario import load_scenario

    same = gym.make(ENV, config=load_scenario("small-route"))
    assert same.spec.id == ENV
    other = gym.make(ENV, config=replace(load_scenario("small-route"), horizon_s=7.0))
    assert other.spec.id.startswith("disagg/SmallRoute-custom-")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"control_interval_s": 5}, "env.control_interval_s applies to allocate and joint tasks (small-route is a route task"),
    ({"overrides": {"env.control_interval_s": 5}}, "env.control_interval_s applies to allocate and joint tasks"),
    ({"overrides": {"env.max_instances": 8}}, "env.max_instances applies to obs_mode: padded (got obs_mode 'box')"),
    ({"overrides": {"env": {"control_interval_s": 5}}}, "env.control_interval_s applies to allocate and joint"),
    ({"overrides": {"env": {"max_instances": 8}}}, "env.max_instances applies to obs_mode: padded"),
    # SmallRoute's reward_mode is predicted: the return was identical with and without it
    ({"overrides": {"env.violation_at": "ttft_deadline"}},
     "env.violation_at 'ttft_deadline' applies to reward_mode: aggregate"),
    # not only 'unknown router' (which setting was bad, beside --policy?)
    ({"overrides": {"env.fallback_router": "foo"}}, "small-route: key 'env.fallback_router': unknown router 'foo'"),
    ({"overrides": {"env.fallback_router": "jsq+foo"}},
     "small-route: key 'env.fallback_router': unknown admission controller 'foo'"),
])
def test_a_setting_the_env_would_ignore_is_refused(kwargs: dict, message: str) -> None:
    # they were accepted, changed nothing, and still filed the env under a new custom spec.id
    from disagg_gym.errors import UserError

    with pytest.raises(UserError) as exc:
        gym.make(ENV, **kwargs)
    assert str(exc.value).startswith(message)
    assert gym.make("disagg/EnergyAllocate-v3", control_interval_s=5).unwrapped.cfg.control_interval_s == 5
    aggregate = {"env.reward_mode": "aggregate", "env.violation_at": "ttft_deadline"}
    assert gym.make(ENV, overrides=aggregate).unwrapped.cfg.violation_at == "ttft_deadline"
