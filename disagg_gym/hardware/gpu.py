"""Accelerator specifications (peak compute, memory, links, power, price) and their catalog.

The catalog is data: ``disagg_gym/hardware/gpus.yaml`` (shipped with the package) gives every
value with its source, a key of the project's sourced ``hardware.yaml``, or ``ASSUMED`` where
that file gives a list, a range or ``null``; ``docs/calibration.md`` discusses the choices.

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

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from disagg_gym.config import load_yaml_text
from disagg_gym.errors import UserError, clipped_repr

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


CATALOG_FILE = "gpus.yaml"
"""The catalog, shipped in this package: one entry per GPU, each value with its source."""


@functools.cache
def _catalog_data() -> dict[str, Any]:
    text = resources.files("disagg_gym.hardware").joinpath(CATALOG_FILE).read_text()
    data: dict[str, Any] = load_yaml_text(text, CATALOG_FILE)
    return data


@functools.cache
def _catalog() -> Mapping[str, GPUSpec]:
    data = _catalog_data()
    idle = float(data["idle_fraction_of_tdp"])
    out = {}
    for name, entry in data["gpus"].items():
        values = {k: float(v) for k, v in entry.items()}
        out[name] = GPUSpec(name=name, idle_w=idle * values["tdp_w"], **values)
    return MappingProxyType(out)


class _GPUTable(Mapping[str, GPUSpec]):
    """``GPUS``: the catalog, read from ``gpus.yaml`` on first use (importing reads nothing)."""

    def __getitem__(self, name: str) -> GPUSpec:
        return _catalog()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_catalog())

    def __len__(self) -> int:
        return len(_catalog())

    def __repr__(self) -> str:
        return f"GPUS({dict(_catalog())!r})"


GPUS: Mapping[str, GPUSpec] = _GPUTable()
"""GPU id -> :class:`GPUSpec` (``disagg_gym/hardware/gpus.yaml``)."""


_FILE_REQUIRED = ("bf16_dense_tflops", "hbm_gb", "hbm_bw_tbps", "tdp_w", "price_usd_per_hour",
                  "nvlink_gbps_per_dir", "pcie_gbps_per_dir")
_FILE_OPTIONAL = ("name", "idle_w", "nvlink_peer_gbps_per_dir")
# Upper ends of a GPU file's figures, each far (>= 10x) above any shipping part, with the unit
# mistake a value beyond it usually is (GB/s in a TB/s key, FLOP/s in a TFLOPS key, ...).
_FILE_PLAUSIBLE = {
    "bf16_dense_tflops": (1e5, "TFLOPS (an H100 SXM is 989): FLOP/s or GFLOPS written instead?"),
    "hbm_gb": (1e4, "GB (an H100 has 80): bytes or MB written instead?"),
    "hbm_bw_tbps": (100.0, "TB/s (an H100 SXM is 3.35): GB/s written instead?"),
    "tdp_w": (1e5, "W (an H100 SXM is 700): mW written instead?"),
    "idle_w": (1e5, "W: mW written instead?"),
    "nvlink_gbps_per_dir": (1e5, "GB/s per direction (an H100 SXM is 450): Mbit/s or bytes/s written instead?"),
    "nvlink_peer_gbps_per_dir": (1e5, "GB/s per direction: Mbit/s or bytes/s written instead?"),
    "pcie_gbps_per_dir": (1e4, "GB/s per direction (PCIe 5.0 x16 is 64): Mbit/s or bytes/s written instead?"),
    "price_usd_per_hour": (1e4, "US$ per GPU-hour: cents or a monthly price written instead?"),
}


@functools.lru_cache(maxsize=64)
def _load_gpu_file(path: str, mtime_ns: int) -> GPUSpec:
    """A GPU read from a YAML file of the catalog's keys (cached per path and modification time)."""
    import math

    from disagg_gym.config import read_yaml

    raw = read_yaml(Path(path))  # ConfigError: unreadable, not UTF-8, invalid YAML, duplicate key
    if not isinstance(raw, dict):
        raise UserError(f"{path}: key '<root>': expected a mapping of GPU figures (got {clipped_repr(raw)})")
    allowed = _FILE_REQUIRED + _FILE_OPTIONAL
    for key, value in raw.items():
        if key not in allowed:
            raise UserError(f"{path}: key '{key}': unknown key; allowed: {', '.join(allowed)} (got {clipped_repr(value)})")
    for key in _FILE_REQUIRED:
        if key not in raw:
            raise UserError(f"{path}: key '{key}': required key is missing (got None)")
    values: dict[str, float] = {}
    for key, value in raw.items():
        if key == "name":
            if not (isinstance(value, str) and value):
                raise UserError(f"{path}: key 'name': must be a non-empty string (got {clipped_repr(value)})")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{path}: key '{key}': expected a finite number (got {clipped_repr(value)})")
        values[key] = float(value)
        top, unit = _FILE_PLAUSIBLE[key]
        if value > top:
            raise UserError(f"{path}: key '{key}': implausibly large for {unit} (got {clipped_repr(value)})")
    values.setdefault("idle_w", float(_catalog_data()["idle_fraction_of_tdp"]) * values["tdp_w"])
    try:
        return GPUSpec(name=str(raw.get("name") or Path(path).stem), **values)
    except ValueError as exc:  # GPUSpec's own checks (a non-positive figure, idle above TDP)
        raise UserError(f"{path}: {exc}") from None


def get_gpu(name: str) -> GPUSpec:
    """Looks up a GPU by catalog id, or reads one from a YAML file.

    A file holds the keys of a ``gpus.yaml`` entry: ``bf16_dense_tflops``, ``hbm_gb``,
    ``hbm_bw_tbps``, ``tdp_w``, ``price_usd_per_hour``, ``nvlink_gbps_per_dir`` and
    ``pcie_gbps_per_dir`` (required), ``idle_w`` (default: the catalog's idle fraction of TDP),
    ``nvlink_peer_gbps_per_dir`` (default 0: same as the aggregate) and ``name`` (default: the
    file stem); nothing else. A relative path is relative to the working directory.

    Args:
        name: One of :data:`GPUS`' keys, or a path to a ``.yaml``/``.yml`` file.

    Returns:
        The matching :class:`GPUSpec`.

    Raises:
        ValueError: If ``name`` is not a known id or a readable, valid GPU file (one line naming
            the file, key and value; an unknown id lists the valid ones).
    """
    try:
        return GPUS[name]
    except (KeyError, TypeError):
        pass
    if isinstance(name, str) and (name.endswith((".yaml", ".yml")) or Path(name).is_file()):
        p = Path(name)
        if not p.is_file():
            raise UserError(f"{name}: GPU file not found (got {name!r})")
        return _load_gpu_file(str(p), p.stat().st_mtime_ns)
    raise UserError(f"unknown GPU {name!r}; valid ids: {', '.join(GPUS)}, or a YAML file path")
