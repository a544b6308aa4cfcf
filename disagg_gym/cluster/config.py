"""Config dataclasses of the serving cluster: instance groups, topology and memory policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from disagg_gym.config import spec


@dataclass(frozen=True, slots=True)
class InstanceGroupConfig:
    """A group of identical serving instances (one model replica each)."""

    gpu: str = field(metadata=spec("GPU id, e.g. h100-sxm, a100-80gb, l40s"))
    count: int = field(metadata=spec("number of instances in the group", ge=1))
    role: Literal["prefill", "decode", "colocated"] = field(
        metadata=spec("initial role: prefill, decode, or colocated (non-disaggregated)")
    )
    tp: int = field(default=1, metadata=spec("tensor-parallel degree (GPUs per instance)", ge=1))
    site: str = field(default="site0", metadata=spec("site name; different sites talk over inter_site"))
    max_batch: int = field(default=256, metadata=spec("max sequences in a decode batch", ge=1))
    prefill_token_budget: int = field(
        default=8192, metadata=spec(
            "max prompt tokens in one prefill batch (with prefill_chunk_tokens > 0 the chunk size is "
            "each iteration's budget instead; this value then only enters the wait estimates of "
            "routers and observations and the fluid bound)", ge=1)
    )
    prefill_chunk_tokens: int = field(
        default=0,
        metadata=spec(
            "chunked prefill: max tokens per iteration (prompts split into chunks; on colocated "
            "instances decode tokens share the budget, Sarathi-Serve); 0 = whole prompts",
            ge=0,
        ),
    )
    price_usd_per_gpu_hour: float | None = field(
        default=None, metadata=spec("override of the catalog price (e.g. cloud vs on-prem)", ge=0)
    )
    billing: Literal["reserved", "on_demand"] = field(
        default="reserved",
        metadata=spec("reserved: paid for the whole run; on_demand: paid only while busy (cloud burst)"),
    )
    cost_model: str = field(
        default="roofline",
        metadata=spec("iteration latencies: roofline, roofline:CALIB.json or table:PATH (measured table)"),
    )


@dataclass(frozen=True, slots=True)
class TopologyConfig:
    """How instances are placed on nodes and sites, and which tier joins them."""

    gpus_per_node: int = field(default=8, metadata=spec("GPUs per node (instances never span nodes)", ge=1))
    intra_node: str = field(default="nvlink", metadata=spec("tier inside a node (nvlink or pcie)"))
    inter_node: str = field(default="rdma", metadata=spec("tier between nodes of one site"))
    inter_site: str = field(default="ethernet", metadata=spec("tier between sites"))
    inter_site_bandwidth_gbps: float | None = field(
        default=None,
        metadata=spec("shared WAN bandwidth between two sites, GB/s (default: the tier's)", gt=0),
    )


@dataclass(frozen=True, slots=True)
class CacheTierConfig:
    """One lower tier of the KV-cache hierarchy (host DRAM, local SSD or the shared pool)."""

    capacity_gb: float = field(
        default=0.0, metadata=spec("capacity of the tier per instance (shared pool: in all), GB; 0 = tier off", ge=0)
    )
    policy: Literal["offload", "write_through"] = field(
        default="offload",
        metadata=spec(
            "offload: receives the blocks the tier above evicts; write_through: receives every "
            "block when it is first cached in HBM"
        ),
    )
    bandwidth_gbps: float | None = field(
        default=None,
        metadata=spec("link bandwidth per direction, GB/s (default: the link catalog's tier, see docs)", gt=0),
    )
    latency_s: float | None = field(
        default=None, metadata=spec("fixed cost of one load or offload, s (default: the catalog's)", ge=0)
    )


@dataclass(frozen=True, slots=True)
class PrefixCacheConfig:
    """Prefix caching of KV blocks (on by default for requests that carry block hashes)."""

    enabled: bool = field(
        default=True,
        metadata=spec("HBM prefix cache in KV memory not held by running requests (needs block hashes)"),
    )
    block_tokens: int = field(
        default=16,
        metadata=spec(
            "tokens per cache block (vLLM: 16); a trace's coarser hash blocks map onto it "
            "(workload.prefix.cache_block_hashes)",
            ge=1,
        ),
    )
    host_dram: CacheTierConfig = field(
        default_factory=CacheTierConfig, metadata=spec("per-instance host-DRAM tier (over the GPU's PCIe link)")
    )
    ssd: CacheTierConfig = field(
        default_factory=CacheTierConfig, metadata=spec("per-instance local NVMe SSD tier (NVMe link, then PCIe)")
    )
    remote: CacheTierConfig = field(
        default_factory=CacheTierConfig,
        metadata=spec("cluster-wide shared pool (Mooncake Store / LMCache style) over the RDMA tier"),
    )


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """The whole cluster: model, instance groups, topology and memory/queue policies."""

    groups: tuple[InstanceGroupConfig, ...] = field(metadata=spec("instance groups"))
    model: str = field(default="llama-3.1-8b", metadata=spec("model catalog name or YAML path"))
    topology: TopologyConfig = field(default_factory=TopologyConfig, metadata=spec("placement"))
    kv_reserve_frac: float = field(
        default=0.1, metadata=spec("fraction of free HBM kept out of the KV pool", ge=0, lt=1)
    )
    block_size_tokens: int = field(default=16, metadata=spec("paged-KV block size in tokens", ge=1))
    on_kv_full: Literal["queue", "reject", "preempt"] = field(
        default="queue",
        metadata=spec(
            "when a decode instance has no KV room: wait (backpressure), reject, or preempt younger "
            "running requests (recomputed later, vLLM-style)"
        ),
    )
    preemption: Literal["recompute", "swap"] = field(
        default="recompute",
        metadata=spec(
            "when a running decode batch needs a KV block and none is free, the youngest requests "
            "are preempted: recompute (drop KV, prefill again) or swap (copy KV to host memory over "
            "PCIe and back)"
        ),
    )
    max_queue_tokens: int = field(
        default=0,
        metadata=spec("reject arrivals when an instance's prefill queue exceeds this (0 = no cap)", ge=0),
    )
    switch_delay_s: float = field(
        default=5.0, metadata=spec("time an instance is out of service when it changes role", ge=0)
    )
    layerwise_overlap: bool = field(
        default=False, metadata=spec("overlap KV transfer with prefill layer by layer")
    )
    idle_power: bool = field(default=True, metadata=spec("count idle power of provisioned GPUs"))
    prefix_cache: PrefixCacheConfig = field(
        default_factory=PrefixCacheConfig,
        metadata=spec("prefix caching and the KV-cache hierarchy"),
    )

    def validate(self) -> None:
        """Cross-field checks: known GPUs, model, tiers and sites; the model fits; both roles present."""
        from disagg_gym.hardware import build_cost, get_gpu, load_model
        from disagg_gym.interconnect.links import get_link

        try:
            model = load_model(self.model)
        except ValueError as exc:
            raise ValueError(f"key 'model': {exc}") from None
        for key in ("intra_node", "inter_node", "inter_site"):
            name = getattr(self.topology, key)
            if name in ("host_dram", "ssd"):  # storage tiers of the KV hierarchy, not links between GPUs
                raise ValueError(
                    f"key 'topology.{key}': a storage tier is not an interconnect between instances; "
                    f"expected e.g. nvlink, pcie, rdma, ethernet (got {name!r})"
                )
            try:
                get_link(name)
            except ValueError as exc:
                raise ValueError(f"key 'topology.{key}': {exc}") from None
        for i, g in enumerate(self.groups):
            if not g.site.strip():
                raise ValueError(f"key 'groups[{i}].site': must name a site (got {g.site!r})")
            try:
                gpu = get_gpu(g.gpu)
            except ValueError as exc:
                raise ValueError(f"key 'groups[{i}].gpu': {exc}") from None
            if g.tp > self.topology.gpus_per_node:
                raise ValueError(
                    f"key 'groups[{i}].tp': exceeds topology.gpus_per_node ({self.topology.gpus_per_node}) (got {g.tp})"
                )
            try:
                cost = build_cost(gpu, model, g.tp)
            except ValueError as exc:
                raise ValueError(f"key 'groups[{i}].tp': {exc}") from None
            if g.cost_model != "roofline":
                try:
                    build_cost(gpu, model, g.tp, g.cost_model)
                except ValueError as exc:
                    raise ValueError(f"key 'groups[{i}].cost_model': {exc}") from None
            cap = cost.kv_capacity_tokens(self.kv_reserve_frac)
            if cap < self.block_size_tokens:
                raise ValueError(
                    f"key 'groups[{i}]': model {model.name} does not fit on {g.gpu} at tp={g.tp} "
                    f"({model.weight_bytes / 1e9:.1f} GB of weights, {g.tp} x {gpu.hbm_gb:g} GB HBM, "
                    f"kv_reserve_frac {self.kv_reserve_frac}) (got KV capacity {cap} tokens)"
                )
        if not self.groups:
            raise ValueError("key 'groups': at least one instance group is required (got [])")
        roles = {g.role for g in self.groups}
        # Colocated instances serve whole requests themselves: they neither send prefilled KV
        # nor take it in, so a prefill group beside them still needs a decode group (its
        # requests were rejected with 'policy') and a decode group a prefill group (idle, paid).
        if ("prefill" in roles or "decode" in roles or not roles) and not ({"prefill", "decode"} <= roles):
            raise ValueError(
                "key 'groups': a disaggregated cluster needs at least one prefill and one decode "
                "group; colocated instances do not take over either role for them "
                f"(got roles {sorted(roles)})"
            )
