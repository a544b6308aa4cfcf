"""Strict config loading: exact one-line errors for unknown keys, types, ranges."""

from __future__ import annotations

import re
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
         "kv_reserve_frac, block_size_tokens, on_kv_full, preemption, max_queue_tokens, switch_delay_s, layerwise_overlap, "
         "idle_power, prefix_cache"),
        ({"groups": [{"gpu": "h100-sxm", "count": 0, "role": "prefill"}]}, "c.yaml: key 'groups[0].count': expected a value >= 1 (got 0)"),
        ({"groups": [{"gpu": "h100-sxm", "count": "two", "role": "prefill"}]}, "c.yaml: key 'groups[0].count': expected an integer (got 'two')"),
        ({"groups": [{"gpu": "h100-sxm", "count": 1, "role": "both"}]}, "c.yaml: key 'groups[0].role': expected one of 'prefill', 'decode', 'colocated' (got 'both')"),
        ({"groups": [{"count": 1, "role": "prefill"}]}, "c.yaml: key 'groups[0].gpu': missing required key"),
        ({**GOOD, "kv_reserve_frac": 1.5}, "c.yaml: key 'kv_reserve_frac': expected a value < 1 (got 1.5)"),
        ({**GOOD, "switch_delay_s": float("nan")}, "c.yaml: key 'switch_delay_s': expected a finite number (got nan)"),
        ({"groups": [{"gpu": "h100-sxm", "count": 1, "role": "prefill"}]},
         "c.yaml: key 'groups': a disaggregated cluster needs at least one prefill and one decode group; "
         "colocated instances do not take over either role for them (got roles ['prefill'])"),
        # beside colocated instances too: the prefill group's requests were rejected ('policy'),
        # a lone decode group sat idle and paid
        ({"groups": [{"gpu": "h100-sxm", "count": 2, "role": "colocated"}, {"gpu": "h100-sxm", "count": 1, "role": "prefill"}]},
         "c.yaml: key 'groups': a disaggregated cluster needs at least one prefill and one decode group; "
         "colocated instances do not take over either role for them (got roles ['colocated', 'prefill'])"),
        ({"groups": [{"gpu": "h100-sxm", "count": 2, "role": "colocated"}, {"gpu": "h100-sxm", "count": 1, "role": "decode"}]},
         "c.yaml: key 'groups': a disaggregated cluster needs at least one prefill and one decode group; "
         "colocated instances do not take over either role for them (got roles ['colocated', 'decode'])"),
        ({"groups": [{"gpu": "h100-sxm", "count": 1, "role": "colocated", "site": " "}]},
         "c.yaml: key 'groups[0].site': must name a site (got ' ')"),
        ({**GOOD, "topology": {"inter_site": "ssd"}},
         "c.yaml: key 'topology.inter_site': a storage tier is not an interconnect between instances; "
         "expected e.g. nvlink, pcie, rdma, ethernet (got 'ssd')"),
        ({"groups": "x"}, "c.yaml: key 'groups': expected a list (got 'x')"),
        # beyond int64 the simulator's numpy arrays raised OverflowError (workload.prompt_tokens=1e30)
        ({**GOOD, "max_queue_tokens": 10**30},
         "c.yaml: key 'max_queue_tokens': expected an integer that fits in 64 bits (got 1000000000000000000000000000000)"),
        ({**GOOD, "max_queue_tokens": 1e30}, "c.yaml: key 'max_queue_tokens': expected an integer that fits in 64 bits (got 1e+30)"),
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


def test_overrides_address_list_entries_as_errors_name_them() -> None:
    data = {"cluster": {"groups": [{"gpu": "h100-sxm", "count": 1}, {"gpu": "a100", "count": 2}]}}
    out = apply_overrides(data, {"cluster.groups[1].count": 4})
    assert out["cluster"]["groups"] == [{"gpu": "h100-sxm", "count": 1}, {"gpu": "a100", "count": 4}]
    assert data["cluster"]["groups"][1]["count"] == 2  # a copy
    # a whole entry: replaced, or merged where mappings merge (gym.make's overrides)
    assert apply_overrides(data, {"cluster.groups[0]": {"count": 3}})["cluster"]["groups"][0] == {"count": 3}
    merged = apply_overrides(data, {"cluster.groups[0]": {"count": 3}}, merge_mappings=True)
    assert merged["cluster"]["groups"][0] == {"gpu": "h100-sxm", "count": 3}
    for key, msg in [
        ("cluster.groups[2].count", "index 2 is out of range ('groups' has 2 entries)"),
        ("cluster[0].groups", "'cluster' is not a list"),
        ("cluster.groups.count", "'groups' is not a mapping"),
        ("cluster.groups[x].count", "bad key part 'groups[x]'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"override '{key}': {msg}")):
            apply_overrides(data, {key: 1})
    # end to end: a pool resized from the command line's --set form
    scen = load_scenario("small-route", {"cluster.groups[0].count": 3})
    assert [g.count for g in scen.cluster.groups] == [3] + [g.count for g in load_scenario("small-route").cluster.groups[1:]]


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


def test_an_empty_section_is_refused_not_read_as_its_defaults(tmp_path: Path) -> None:
    # `workload:` with nothing under it parses as null; it used to run a default Poisson
    # workload while omitting the key was an error. `{}` still asks for the defaults.
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("name: x\ncluster: {groups: [{gpu: h100-sxm, count: 1, role: colocated}]}\nworkload:\n")
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(cfg))
    assert str(exc.value) == f"{cfg}: key 'workload': expected a mapping (an empty section; write {{}} for its defaults) (got None)"
    cfg.write_text("name: x\ncluster: {groups: [{gpu: h100-sxm, count: 1, role: colocated}]}\nworkload: {}\n")
    assert load_scenario(str(cfg)).workload.kind == "poisson"


# ---------------------------------------------------------------- issue #17: YAML strictness
def test_duplicate_key_is_rejected_with_file_line_and_key(tmp_path: Path) -> None:
    # YAML keeps the last of two equal keys: this config ran 0 requests and exited 0
    bad = tmp_path / "dup.yaml"
    bad.write_text(
        "cluster:\n  groups:\n    - {gpu: h100-sxm, count: 1, role: prefill}\n"
        "    - {gpu: h100-sxm, count: 1, role: decode}\n"
        "workload:\n  kind: poisson\n  rate_per_s: 55\n  lengths: azure_conv\n  rate_per_s: 0.001\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(bad))
    assert str(exc.value) == f"{bad}: line 9: duplicate key 'workload.rate_per_s' (first at line 7)"


def test_duplicate_key_in_a_list_item_names_the_index(tmp_path: Path) -> None:
    bad = tmp_path / "dup.yaml"
    bad.write_text("cluster:\n  groups:\n    - {gpu: h100-sxm, count: 1, count: 2, role: prefill}\n")
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'cluster.groups\[0\].count' \(first at line 3\)"):
        load_scenario(str(bad))


@pytest.mark.parametrize(("text", "value"), [("1e3", 1000.0), ("2.5e-3", 0.0025), ("-1E+2", -100.0), (".5e1", 5.0)])
def test_exponent_floats_are_numbers(tmp_path: Path, text: str, value: float) -> None:
    # YAML 1.1 (PyYAML) reads 1e3 as the string '1e3'
    from disagg_gym.config import read_yaml

    p = tmp_path / "x.yaml"
    p.write_text(f"a: {text}\nb: '1e3'\nc: 1e3x\n")
    data = read_yaml(p)
    assert data["a"] == value and isinstance(data["a"], float)
    assert data["b"] == "1e3" and data["c"] == "1e3x"  # quoted and non-numbers stay strings
    assert parse_override(f"workload.rate_per_s={text}") == ("workload.rate_per_s", value)


def test_exponent_rate_in_a_scenario(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(
        "cluster:\n  groups:\n    - {gpu: h100-sxm, count: 1, role: prefill}\n"
        "    - {gpu: h100-sxm, count: 1, role: decode}\n"
        "workload: {kind: poisson, rate_per_s: 5e1, lengths: azure_conv}\n"
    )
    assert load_scenario(str(p)).workload.rate_per_s == 50.0


def test_non_utf8_config_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(p))
    assert str(exc.value) == f"{p}: not a text file (invalid UTF-8 at byte 9)"


def test_config_errors_are_user_errors() -> None:
    from disagg_gym.errors import UserError
    from disagg_gym.workload import TraceError

    assert issubclass(ConfigError, UserError) and issubclass(TraceError, UserError)
    assert issubclass(UserError, ValueError)  # library callers catching ValueError keep working


def test_a_registry_entry_needs_a_name_and_a_catalog_name_is_defined_once() -> None:
    # a bare @ALLOCATORS.register replaced the class by the decorator and registered nothing;
    # a second length preset (or model) of a built-in name replaced it silently
    from disagg_gym.cluster.policies import ALLOCATORS
    from disagg_gym.registry import by_name

    with pytest.raises(TypeError, match=r"allocator registry: register needs a name"):
        ALLOCATORS.register(type("Foo", (), {}))  # type: ignore[arg-type]

    class Item:
        def __init__(self, name: str) -> None:
            self.name = name

    assert list(by_name([Item("a"), Item("b")], "length preset")) == ["a", "b"]
    with pytest.raises(ValueError, match="length preset 'a' is defined twice"):
        by_name([Item("a"), Item("a")], "length preset")


def test_an_allocator_parameter_without_a_config_key_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # it was an AttributeError traceback when the simulation started
    from dataclasses import dataclass

    from disagg_gym.cluster.policies import ALLOCATORS
    from disagg_gym.errors import UserError
    from disagg_gym.scenario import load_scenario
    from disagg_gym.simulation import make_allocator

    @dataclass
    class _A:
        my_step: int = 1

    name = "test_alloc_with_a_new_param"
    monkeypatch.setitem(ALLOCATORS._items, name, _A)  # registered for this test only
    scen = load_scenario("small-route", {"allocator.name": name})
    with pytest.raises(UserError, match=rf"allocator '{name}' takes 'my_step', which the allocator config has no key"):
        make_allocator(scen.allocator)


def test_a_router_whose_constructor_does_not_fit_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # uses_rng = True without an rng parameter: "TypeError: MyBadRouter() takes no arguments"
    from disagg_gym.cluster.policies import ROUTERS, JoinShortestQueueRouter
    from disagg_gym.errors import UserError
    from disagg_gym.rng import RngStreams
    from disagg_gym.simulation import make_router

    class _Bad(JoinShortestQueueRouter):
        uses_rng = True

        def __init__(self) -> None:
            pass

    name = "test_router_with_a_bad_constructor"
    monkeypatch.setitem(ROUTERS._items, name, _Bad)  # registered for this test only
    with pytest.raises(UserError, match=rf"router '{name}': .*; a router is built as cls\(rng\) when uses_rng = True"):
        make_router(name, RngStreams(0))
