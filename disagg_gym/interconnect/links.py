"""Interconnect tiers: effective bandwidth and latency of each link type; idle transfer time.

Contention (several transfers sharing a link) is the cluster's job (``kv_transfer.py``); this
module only says what one transfer on an otherwise idle link costs:
``latency_s + bytes / bandwidth``.

Where the numbers come from:
    * ``nvlink``, ``pcie``, ``pcie_staged`` (and ``host_dram``, which is PCIe-bound) are fitted
      by ``scripts/calibrate.py`` to copies between two H100 SXM GPUs (NVLink 4 peer copy,
      pinned-host PCIe Gen5 copies, GPU -> pinned host -> GPU staging) and stored in
      ``disagg_gym/hardware/calibration.json``. The fitted bandwidth divided by the H100 spec
      (450 GB/s NVLink, 64 GB/s PCIe per direction) is the efficiency that
      :func:`link_for_gpu` applies to other GPUs' own spec bandwidths.
    * Network and storage tiers are spec rates from ``links.yaml`` (shipped with the package;
      each value sourced from the project's ``hardware.yaml`` or marked ASSUMED) times
      :data:`NETWORK_EFF` (0.9, the usual large-message fraction of line rate; Vidur's
      published H100 inter-node send/recv reaches 36 GB/s, 72%, on an undocumented fabric),
      with latencies that are modelling assumptions: 10 us for RDMA (aiconfigurator's
      "10us" p2p correction; Vidur measured 12-24 us for 2 KB inter-node), 50 us for TCP
      Ethernet (kernel network stack, tens of us), 100 us for an NVMe SSD read.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

from disagg_gym.config import load_yaml_text
from disagg_gym.hardware.cost import calibration_data
from disagg_gym.hardware.gpu import GPUSpec
from disagg_gym.errors import UserError

__all__ = ["LINKS", "NETWORK_EFF", "TIERS", "LinkSpec", "get_link", "link_for_gpu"]

TIERS: tuple[str, ...] = ("nvlink", "pcie", "rdma", "ethernet", "host_dram", "ssd")
"""Base tier names; :data:`LINKS` also holds variants (``pcie_staged``, ``rdma_ib_ndr``, ...)."""

CATALOG_FILE = "links.yaml"
"""The spec-derived tiers, shipped in this package: each value with its source."""


@functools.cache
def _spec_catalog() -> Mapping[str, Any]:
    text = resources.files("disagg_gym.interconnect").joinpath(CATALOG_FILE).read_text()
    data: Mapping[str, Any] = load_yaml_text(text, CATALOG_FILE)
    return data


NETWORK_EFF: float = float(_spec_catalog()["network_efficiency"])
"""Achieved fraction of line rate assumed for spec-derived (uncalibrated) tiers (``links.yaml``)."""


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One link tier as seen by a single transfer.

    Attributes:
        name: Tier name (a key of :data:`LINKS`).
        bandwidth_gbps: Effective bandwidth per direction in GB/s (1e9 B/s).
        latency_s: Fixed cost of one transfer (launch, synchronisation, wire), seconds.
    """

    name: str
    bandwidth_gbps: float
    latency_s: float

    def __post_init__(self) -> None:
        """Rejects non-positive bandwidth and negative latency."""
        if not self.bandwidth_gbps > 0:
            raise ValueError(
                f"LinkSpec {self.name!r}: bandwidth_gbps must be > 0 (got {self.bandwidth_gbps!r})"
            )
        if not self.latency_s >= 0:
            raise ValueError(
                f"LinkSpec {self.name!r}: latency_s must be >= 0 (got {self.latency_s!r})"
            )

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Effective bandwidth in B/s."""
        return self.bandwidth_gbps * 1e9

    def transfer_s(self, nbytes: float) -> float:
        """Time to move ``nbytes`` over this link when nothing else uses it.

        Args:
            nbytes: Payload in bytes (>= 0).

        Returns:
            ``latency_s + nbytes / bandwidth`` in seconds.

        Raises:
            ValueError: If ``nbytes`` is negative.
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0 (got {nbytes!r})")
        return self.latency_s + nbytes / (self.bandwidth_gbps * 1e9)


@functools.cache
def _calibrated() -> Mapping[str, Mapping[str, float]]:
    links: Mapping[str, Mapping[str, float]] = calibration_data()["links"]
    return links


@functools.cache
def _links() -> Mapping[str, LinkSpec]:
    cal = _calibrated()
    table: dict[str, LinkSpec] = {}
    for name in ("nvlink", "pcie", "pcie_staged"):
        entry = cal[name]
        table[name] = LinkSpec(name, float(entry["bandwidth_gbps"]), float(entry["latency_s"]))
    # Offloading KV to host memory is bounded by the GPU's PCIe link (DRAM is far faster).
    table["host_dram"] = LinkSpec(
        "host_dram", table["pcie"].bandwidth_gbps, table["pcie"].latency_s
    )
    catalog = _spec_catalog()
    for name, entry in catalog["spec_tiers"].items():
        spec_gbps, latency_s = float(entry["spec_gbps_per_dir"]), float(entry["latency_s"])
        table[name] = LinkSpec(name, spec_gbps * NETWORK_EFF, latency_s)
    for alias, target in catalog["aliases"].items():
        table[alias] = LinkSpec(alias, table[target].bandwidth_gbps, table[target].latency_s)
    # Base tiers first, then the finer variants.
    return MappingProxyType({name: table[name] for name in TIERS} | table)


class _LinkTable(Mapping[str, LinkSpec]):
    """Read-only view of the link tiers, built from calibration.json on first access."""

    __slots__ = ()

    def __getitem__(self, key: str) -> LinkSpec:
        return _links()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_links())

    def __len__(self) -> int:
        return len(_links())

    def __repr__(self) -> str:
        return f"LINKS({dict(_links())!r})"


LINKS: Mapping[str, LinkSpec] = _LinkTable()
"""Every tier and variant by name (reference values: H100 SXM for the calibrated ones)."""


def get_link(name: str) -> LinkSpec:
    """Looks up a tier by name.

    Args:
        name: A key of :data:`LINKS` (the :data:`TIERS` or a finer variant).

    Returns:
        The :class:`LinkSpec`.

    Raises:
        ValueError: If the tier is unknown (the message lists the valid names).
    """
    table = _links()
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown link tier {name!r}; valid tiers: {', '.join(table)}") from None


def link_efficiency(tier: str) -> float:
    """Calibrated achieved/spec bandwidth ratio of ``nvlink``, ``pcie`` or ``pcie_staged``.

    Args:
        tier: One of the calibrated tiers.

    Returns:
        The ratio measured on H100 SXM.

    Raises:
        ValueError: If ``tier`` is not calibrated.
    """
    cal = _calibrated()
    if tier not in ("nvlink", "pcie", "pcie_staged"):
        raise ValueError(f"only nvlink, pcie and pcie_staged are calibrated (got {tier!r})")
    return float(cal[tier]["bandwidth_gbps"]) / float(cal[tier]["spec_gbps"])


def link_for_gpu(tier: str, gpu: GPUSpec) -> LinkSpec:
    """The tier as a given GPU type sees it, scaled from that GPU's spec bandwidth.

    ``nvlink`` uses the GPU's per-peer scale-up bandwidth times the calibrated NVLink
    efficiency (A100: 300 GB/s x eff; MI300X: 64 GB/s per peer x eff) and falls back to
    ``pcie`` (returned under the name ``"pcie"``) for GPUs without a scale-up fabric (L40S,
    H100 PCIe). ``pcie``, ``pcie_staged`` and ``host_dram`` scale the GPU's PCIe bandwidth by
    their calibrated efficiencies. Network and storage tiers do not depend on the GPU.

    Args:
        tier: A key of :data:`LINKS`.
        gpu: The GPU at the sending end.

    Returns:
        The :class:`LinkSpec` (latencies are the calibrated H100 ones).

    Raises:
        ValueError: If the tier is unknown.
    """
    base = get_link(tier)
    if tier == "nvlink":
        if gpu.peer_gbps_per_dir <= 0:
            return link_for_gpu("pcie", gpu)
        return LinkSpec("nvlink", gpu.peer_gbps_per_dir * link_efficiency("nvlink"), base.latency_s)
    if tier in ("pcie", "pcie_staged"):
        return LinkSpec(tier, gpu.pcie_gbps_per_dir * link_efficiency(tier), base.latency_s)
    if tier == "host_dram":
        return LinkSpec(tier, gpu.pcie_gbps_per_dir * link_efficiency("pcie"), base.latency_s)
    return base
