"""Strict config loading: exact one-line errors for unknown keys, types, ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from disagg_gym.cluster.config import ClusterConfig
from disagg_gym.config import ConfigError, apply_overrides, from_dict, parse_override
from disagg_gym.scenario import load_scenario, standard_names

GOOD = {"groups": [{"gpu": "h100-sxm", "count": 1, "role": "prefill"}, {"gpu": "h100-sxm", "count": 1, "role": "decode"}]}


def test_builds_nested_frozen_dataclasses() -> None:
    cfg = from_dict(ClusterConfig, GOOD, source="c.yaml")
    assert cfg.groups[0].gpu == "h100-sxm" and cfg.topology.intra_node == "nvlink"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**GOOD, "colour": 1}, "c.yaml: key 'colour': unknown key; expected one of: groups, model, topology, "
         "kv_reserve_frac, block_size_tokens, on_kv_full, preemption, max_queue_tokens, switch_delay_s, layerwise_overlap, idle_power"),
        ({"groups": [{"gpu": "h100-sxm", "count": 0, "role": "prefill"}]}, "c.yaml: key 'groups[0].count': expected a value >= 1 (got 0)"),
        ({"groups": [{"gpu": "h100-sxm", "count": "two", "role": "prefill"}]}, "c.yaml: key 'groups[0].count': expected an integer (got 'two')"),
        ({"groups": [{"gpu": "h100-sxm", "count": 1, "role": "both"}]}, "c.yaml: key 'groups[0].role': expected one of 'prefill', 'decode', 'colocated' (got 'both')"),
        ({"groups": [{"count": 1, "role": "prefill"}]}, "c.yaml: key 'groups[0].gpu': missing required key"),
        ({**GOOD, "kv_reserve_frac": 1.5}, "c.yaml: key 'kv_reserve_frac': expected a value < 1 (got 1.5)"),
        ({**GOOD, "switch_delay_s": float("nan")}, "c.yaml: key 'switch_delay_s': expected a finite number (got nan)"),
        ({"groups": [{"gpu": "h100-sxm", "count": 1, "role": "prefill"}]},
         "c.yaml: key 'groups': a disaggregated cluster needs at least one prefill and one decode group (got roles ['prefill'])"),
        ({"groups": "x"}, "c.yaml: key 'groups': expected a list (got 'x')"),
    ],
)
def test_errors_are_one_line_and_exact(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict(ClusterConfig, data, source="c.yaml")
    assert str(exc.value) == message
    assert "\n" not in str(exc.value)


def test_overrides() -> None:
    key, value = parse_override("cluster.groups=3")
    assert key == "cluster.groups" and value == 3
    out = apply_overrides({"a": {"b": 1}}, {"a.b": 2, "a.c.d": "x"})
    assert out == {"a": {"b": 2, "c": {"d": "x"}}}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("novalue")


def test_every_standard_scenario_loads() -> None:
    names = standard_names()
    assert len(names) >= 8
    for name in names:
        scen = load_scenario(name)
        assert scen.description, name


def test_scenario_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncluster: {groups: [{gpu: h100-sxm, count: 1, role: colocated}]}\nworkload: {kind: poisson, rate_per_s: -3}\n")
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(bad))
    assert str(exc.value) == f"{bad}: key 'workload.rate_per_s': expected a value > 0 (got -3.0)"
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        load_scenario("nope")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+: invalid YAML"):
        load_scenario(str(broken))
