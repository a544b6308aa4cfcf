"""The GPU and link catalogs are sourced data (issue #20): every value names its source, and the
values taken from the project's hardware.yaml agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = [ROOT / "disagg_gym" / "hardware" / "gpus.yaml", ROOT / "disagg_gym" / "interconnect" / "links.yaml"]
HARDWARE_YAML = ROOT.parent / "shared" / "data" / "hardware.yaml"
VALUE_LINE = re.compile(r"^\s+([a-z0-9_]+):\s+([-0-9.e]+)\s*(#.*)?$")
HW_REF = re.compile(r"hw: ([A-Za-z0-9_.]+)")


@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.name)
def test_every_value_names_its_source(path: Path) -> None:
    bad = []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        m = VALUE_LINE.match(line)
        if m and not (m.group(3) and ("hw:" in m.group(3) or "ASSUMED" in m.group(3))):
            bad.append(f"{path.name}:{no}: {line.strip()}")
    assert not bad, "values without a source:\n" + "\n".join(bad)


def _lookup(data: dict, dotted: str) -> object:
    node: object = data
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"hardware.yaml has no {dotted}"
        node = node[part]
    return node


@pytest.mark.skipif(not HARDWARE_YAML.is_file(), reason="../shared/data/hardware.yaml not present")
@pytest.mark.parametrize("path", CATALOGS, ids=lambda p: p.name)
def test_sources_exist_and_agree_with_hardware_yaml(path: Path) -> None:
    hw = yaml.safe_load(HARDWARE_YAML.read_text())
    checked = 0
    for line in path.read_text().splitlines():
        m = VALUE_LINE.match(line)
        ref = HW_REF.search(line)
        if not (m and ref):
            continue
        ref_path = ref.group(1).rstrip(".")
        section = "accelerators" if ref_path.split(".")[0] in hw["accelerators"] else None
        value = _lookup(hw, f"{section}.{ref_path}" if section else ref_path)
        key, ours = m.group(1), float(m.group(2))
        if ref_path.endswith("." + key) and isinstance(value, (int, float)):
            assert ours == float(value), f"{path.name}: {key} {ours} but hardware.yaml {ref_path} = {value}"
            checked += 1
    assert checked >= (20 if path.name == "gpus.yaml" else 0)


def test_catalog_is_what_the_simulator_uses() -> None:
    from disagg_gym.hardware.gpu import GPUS
    from disagg_gym.interconnect.links import LINKS, NETWORK_EFF

    data = yaml.safe_load(CATALOGS[0].read_text())
    for name, entry in data["gpus"].items():
        for key, value in entry.items():
            assert getattr(GPUS[name], key) == value
        assert GPUS[name].idle_w == data["idle_fraction_of_tdp"] * entry["tdp_w"]
    links = yaml.safe_load(CATALOGS[1].read_text())
    for name, entry in links["spec_tiers"].items():
        assert LINKS[name].bandwidth_gbps == entry["spec_gbps_per_dir"] * NETWORK_EFF
        assert LINKS[name].latency_s == float(entry["latency_s"])
