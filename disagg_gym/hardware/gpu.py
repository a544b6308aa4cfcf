"""Accelerator specifications (peak compute, memory, links, power, price) and their catalog.

Values come from ``/work/shared/data/hardware.yaml`` (each one is sourced there); the choices
made where that file gives a list, a range or ``null`` are documented per field below and in
``docs/calibration.md``.

Conventions:
    * ``hbm_gb`` is the capacity as the vendor labels it. NVIDIA's and AMD's "GB" are GiB in
      practice (an "80GB" H100 reports 81559 MiB; aiconfigurator stores 85899345920 B for the
      A100 80GB), so :attr:`GPUSpec.hbm_bytes` is ``hbm_gb * 2**30``. The runtime's own
      reservations are covered by the ``reserve_frac`` of
      :meth:`disagg_gym.hardware.cost.InstanceCost.kv_capacity_tokens`.
    * Bandwidths are GB/s or TB/s with 1 GB = 1e9 B, per direction.
    * ``idle_w`` is not in hardware.yaml: it is assumed to be 10% of TDP for every part,
      consistent with public ``nvidia-smi`` readings of idle data-centre GPUs (roughly 60-90 W
      on a 700 W H100 SXM).
    * ``price_usd_per_hour`` is the median of the on-demand per-GPU prices that hardware.yaml
      lists for the part; where it lists none, a clearly labelled assumption (see each entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from disagg_gym.errors import UserError

__all__ = ["GPUS", "GPUSpec", "get_gpu"]


@dataclass(frozen=True, slots=True)
class GPUSpec:
    """One accelerator model.

    Attributes:
        name: Catalog id, e.g. ``"h100-sxm"``.
        bf16_dense_tflops: Peak dense (no sparsity) bf16 tensor throughput in TFLOP/s.
        hbm_gb: Device memory as the vendor labels it (GiB in practice, see module docstring).
        hbm_bw_tbps: Peak device-memory bandwidth in TB/s.
        tdp_w: Thermal design power of one device in W.
        idle_w: Assumed idle power of one device in W (10% of TDP).
        price_usd_per_hour: Representative on-demand price of one device-hour in USD.
        nvlink_gbps_per_dir: Aggregate scale-up fabric bandwidth per device per direction in
            GB/s (NVLink, Infinity Fabric, Gaudi RoCE scale-up); 0 when there is none.
        pcie_gbps_per_dir: Host-link (PCIe x16) bandwidth per direction in GB/s.
        nvlink_peer_gbps_per_dir: Bandwidth between ONE pair of devices per direction in GB/s
            where the fabric is point-to-point and a pair gets less than the aggregate
            (MI300X: 64 of 448; Gaudi 3: 75 of 525); 0 means "same as the aggregate" (switched
            NVLink).
    """

    name: str
    bf16_dense_tflops: float
    hbm_gb: float
    hbm_bw_tbps: float
    tdp_w: float
    idle_w: float
    price_usd_per_hour: float
    nvlink_gbps_per_dir: float
    pcie_gbps_per_dir: float
    nvlink_peer_gbps_per_dir: float = 0.0

    def __post_init__(self) -> None:
        """Rejects non-positive or inconsistent figures."""
        for key in ("bf16_dense_tflops", "hbm_gb", "hbm_bw_tbps", "tdp_w", "pcie_gbps_per_dir"):
            value = getattr(self, key)
            if not value > 0:
                raise ValueError(f"GPUSpec {self.name!r}: {key} must be > 0 (got {value!r})")
        for key in (
            "idle_w",
            "price_usd_per_hour",
            "nvlink_gbps_per_dir",
            "nvlink_peer_gbps_per_dir",
        ):
            value = getattr(self, key)
            if value < 0:
                raise ValueError(f"GPUSpec {self.name!r}: {key} must be >= 0 (got {value!r})")
        if self.idle_w > self.tdp_w:
            raise ValueError(
                f"GPUSpec {self.name!r}: idle_w must be <= tdp_w (got {self.idle_w!r})"
            )

    @property
    def hbm_bytes(self) -> float:
        """Device memory in bytes (``hbm_gb`` read as GiB, see module docstring)."""
        return self.hbm_gb * 2**30

    @property
    def peak_flops(self) -> float:
        """Peak dense bf16 throughput in FLOP/s."""
        return self.bf16_dense_tflops * 1e12

    @property
    def hbm_bw_bytes_per_s(self) -> float:
        """Peak device-memory bandwidth in B/s."""
        return self.hbm_bw_tbps * 1e12

    @property
    def peer_gbps_per_dir(self) -> float:
        """Scale-up bandwidth between one pair of devices per direction in GB/s (0: none)."""
        return self.nvlink_peer_gbps_per_dir or self.nvlink_gbps_per_dir


def _idle(tdp_w: float) -> float:
    # Assumption (module docstring): idle is 10% of TDP.
    return 0.1 * tdp_w


_H100_SXM_PRICE = (
    5.435  # median of 6.88 (AWS p5), 12.29 (Azure ND H100 v5), 3.99 (Lambda), 2.69 (RunPod)
)

GPUS: Mapping[str, GPUSpec] = MappingProxyType(
    {
        g.name: g
        for g in (
            GPUSpec(
                name="h100-sxm",
                bf16_dense_tflops=989.0,
                hbm_gb=80.0,
                hbm_bw_tbps=3.35,
                tdp_w=700.0,
                idle_w=_idle(700.0),
                price_usd_per_hour=_H100_SXM_PRICE,
                nvlink_gbps_per_dir=450.0,
                pcie_gbps_per_dir=64.0,
            ),
            GPUSpec(
                # No NVLink bridge assumed (aiconfigurator: "PCIe Gen5 x16 without NVLink").
                # Price: median of 2.89 and 1.99 (RunPod secure / community).
                name="h100-pcie",
                bf16_dense_tflops=756.0,
                hbm_gb=80.0,
                hbm_bw_tbps=2.0,
                tdp_w=350.0,
                idle_w=_idle(350.0),
                price_usd_per_hour=2.44,
                nvlink_gbps_per_dir=0.0,
                pcie_gbps_per_dir=64.0,
            ),
            GPUSpec(
                # Price: hardware.yaml has none; ASSUMED 1.25x the H100 SXM figure (same compute,
                # 1.76x memory, typically listed at a premium).
                name="h200",
                bf16_dense_tflops=989.0,
                hbm_gb=141.0,
                hbm_bw_tbps=4.8,
                tdp_w=700.0,
                idle_w=_idle(700.0),
                price_usd_per_hour=round(1.25 * _H100_SXM_PRICE, 2),
                nvlink_gbps_per_dir=450.0,
                pcie_gbps_per_dir=64.0,
            ),
            GPUSpec(
                # Price: median of 3.43 (AWS p4de), 2.79 (Lambda), 1.79 and 1.39 (RunPod).
                name="a100-80gb",
                bf16_dense_tflops=312.0,
                hbm_gb=80.0,
                hbm_bw_tbps=2.039,
                tdp_w=400.0,
                idle_w=_idle(400.0),
                price_usd_per_hour=2.29,
                nvlink_gbps_per_dir=300.0,
                pcie_gbps_per_dir=32.0,
            ),
            GPUSpec(
                # 8.0 TB/s per mle_accel (aiconfigurator uses 7.7); price: Lambda 6.69 (only entry).
                name="b200",
                bf16_dense_tflops=2250.0,
                hbm_gb=180.0,
                hbm_bw_tbps=8.0,
                tdp_w=1000.0,
                idle_w=_idle(1000.0),
                price_usd_per_hour=6.69,
                nvlink_gbps_per_dir=900.0,
                pcie_gbps_per_dir=64.0,
            ),
            GPUSpec(
                # GDDR6, not HBM. Price: hardware.yaml has none; ASSUMED 1.00 USD/h (placeholder).
                name="l40s",
                bf16_dense_tflops=362.0,
                hbm_gb=48.0,
                hbm_bw_tbps=0.864,
                tdp_w=350.0,
                idle_w=_idle(350.0),
                price_usd_per_hour=1.00,
                nvlink_gbps_per_dir=0.0,
                pcie_gbps_per_dir=32.0,
            ),
            GPUSpec(
                # Infinity Fabric: 448 GB/s all-to-all aggregate, 64 GB/s to any one peer.
                # Price: median of 1.71 (TensorWave) and 1.85 (Vultr); low-credibility listings.
                name="mi300x",
                bf16_dense_tflops=1307.4,
                hbm_gb=192.0,
                hbm_bw_tbps=5.3,
                tdp_w=750.0,
                idle_w=_idle(750.0),
                price_usd_per_hour=1.78,
                nvlink_gbps_per_dir=448.0,
                pcie_gbps_per_dir=64.0,
                nvlink_peer_gbps_per_dir=64.0,
            ),
            GPUSpec(
                # Spec MME rate 1835 (1677 as shipped). Scale-up: 21 of the 24 200 GbE ports go to
                # the 7 peers (525 GB/s aggregate, 3 ports = 75 GB/s per peer; uncertain split).
                # TDP 900 W is the OAM part (uncertain). Price: none in hardware.yaml; ASSUMED equal
                # to the H100 PCIe figure (2.44 USD/h).
                name="gaudi3",
                bf16_dense_tflops=1835.0,
                hbm_gb=128.0,
                hbm_bw_tbps=3.7,
                tdp_w=900.0,
                idle_w=_idle(900.0),
                price_usd_per_hour=2.44,
                nvlink_gbps_per_dir=525.0,
                pcie_gbps_per_dir=64.0,
                nvlink_peer_gbps_per_dir=75.0,
            ),
        )
    }
)


def get_gpu(name: str) -> GPUSpec:
    """Looks up a GPU by catalog id.

    Args:
        name: One of :data:`GPUS`' keys.

    Returns:
        The matching :class:`GPUSpec`.

    Raises:
        ValueError: If ``name`` is not a known id (the message lists the valid ones).
    """
    try:
        return GPUS[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown GPU {name!r}; valid ids: {', '.join(GPUS)}") from None
