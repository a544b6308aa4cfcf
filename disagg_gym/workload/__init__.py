"""Workloads: requests, arrival generators, length presets, trace replay, prefix structure."""

from disagg_gym.workload.generators import (
    ARRIVAL_PROCESSES,
    CHUNK_SIZE,
    RATE_PROFILES,
    FixedLengths,
    GammaProcess,
    PoissonProcess,
    SyntheticSource,
    ThinnedPoissonProcess,
    TraceReplaySource,
    WorkloadConfig,
)
from disagg_gym.workload.prefix import (
    DEFAULT_CACHE_BLOCK_TOKENS,
    MOONCAKE_BLOCK_TOKENS,
    PrefixStats,
    cache_block_hashes,
    prefix_stats,
)
from disagg_gym.workload.prefix_workloads import PREFIX_WORKLOADS, PrefixSource
from disagg_gym.workload.presets import (
    LENGTH_PRESETS,
    LengthPreset,
    LengthSampler,
    LognormalMixture,
    TokenStats,
    get_preset,
    preset_names,
)
from disagg_gym.workload.request import Request
from disagg_gym.workload.source import ArrivalChunk, ArrivalSource
from disagg_gym.workload.traces import TraceData, TraceError, load_trace

__all__ = [
    "ARRIVAL_PROCESSES",
    "CHUNK_SIZE",
    "DEFAULT_CACHE_BLOCK_TOKENS",
    "LENGTH_PRESETS",
    "MOONCAKE_BLOCK_TOKENS",
    "PREFIX_WORKLOADS",
    "RATE_PROFILES",
    "ArrivalChunk",
    "ArrivalSource",
    "FixedLengths",
    "GammaProcess",
    "LengthPreset",
    "LengthSampler",
    "LognormalMixture",
    "PoissonProcess",
    "PrefixSource",
    "PrefixStats",
    "Request",
    "SyntheticSource",
    "ThinnedPoissonProcess",
    "TokenStats",
    "TraceData",
    "TraceError",
    "TraceReplaySource",
    "WorkloadConfig",
    "cache_block_hashes",
    "get_preset",
    "load_trace",
    "prefix_stats",
    "preset_names",
]
