"""Tests for link tiers and idle-link transfer times (disagg_gym.interconnect.links)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disagg_gym.hardware import get_gpu
from disagg_gym.interconnect.links import (
    LINKS,
    TIERS,
    LinkSpec,
    get_link,
    link_efficiency,
    link_for_gpu,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TRANSFERS = SHARED / "data" / "profiles" / "h100x2_transfer.jsonl"
PATHS = {
    "gpu0_to_gpu1_peer": "nvlink",
    "gpu_to_pinned_host": "pcie",
    "pinned_host_to_gpu": "pcie",
    "gpu0_host_gpu1_staged": "pcie_staged",
}


def test_tiers_present_and_ordered():
    for t in TIERS:
        assert isinstance(LINKS[t], LinkSpec)
    for extra in ("pcie_staged", "rdma_ib_ndr", "ethernet_100g"):
        assert extra in LINKS
    bw = {t: get_link(t).bandwidth_gbps for t in LINKS}
    assert bw["nvlink"] > bw["pcie"] > bw["pcie_staged"] > bw["ethernet"]
    assert 40 <= bw["rdma"] <= 50 and 10 <= bw["ethernet"] <= 12.5 and bw["ssd"] < 10
    assert get_link("rdma").latency_s < get_link("ethernet").latency_s
    with pytest.raises(ValueError, match=r"'infiniband'.*nvlink"):
        get_link("infiniband")


def test_transfer_time_is_latency_plus_bytes_over_bandwidth():
    link = LinkSpec("x", bandwidth_gbps=50.0, latency_s=1e-5)
    assert link.transfer_s(0) == 1e-5
    assert link.transfer_s(5e9) == pytest.approx(1e-5 + 0.1)
    with pytest.raises(ValueError, match="-1"):
        link.transfer_s(-1)
    with pytest.raises(ValueError, match="bandwidth_gbps"):
        LinkSpec("bad", 0.0, 0.0)


def test_calibrated_transfers_within_10_percent():
    if not TRANSFERS.is_file():
        pytest.skip(
            f"transfer profile not found at {TRANSFERS} (../shared absent next to the repo)"
        )
    n = 0
    for line in TRANSFERS.read_text().splitlines():
        r = json.loads(line)
        if r.get("kind") != "copy" or r["path"] not in PATHS or r["bytes"] < 2**20:
            continue
        pred = get_link(PATHS[r["path"]]).transfer_s(r["bytes"])
        assert pred * 1e3 == pytest.approx(r["ms"], rel=0.10), r
        n += 1
    assert n >= 20


def test_link_for_gpu_scales_from_spec():
    h100, a100, l40s, mi300x = (get_gpu(g) for g in ("h100-sxm", "a100-80gb", "l40s", "mi300x"))
    assert link_for_gpu("nvlink", h100).bandwidth_gbps == pytest.approx(
        get_link("nvlink").bandwidth_gbps
    )
    assert link_for_gpu("pcie", h100).bandwidth_gbps == pytest.approx(
        get_link("pcie").bandwidth_gbps
    )
    eff = link_efficiency("nvlink")
    assert 0.7 < eff < 1.0
    assert link_for_gpu("nvlink", a100).bandwidth_gbps == pytest.approx(300 * eff)
    assert link_for_gpu("nvlink", mi300x).bandwidth_gbps == pytest.approx(64 * eff)
    no_nvlink = link_for_gpu("nvlink", l40s)
    assert no_nvlink.name == "pcie"
    assert no_nvlink.bandwidth_gbps == pytest.approx(32 * link_efficiency("pcie"))
    assert link_for_gpu("rdma", l40s) == get_link("rdma")
    with pytest.raises(ValueError, match="warp"):
        link_for_gpu("warp", h100)
