"""Workloads: requests, arrival generators, length presets and trace replay (no gymnasium)."""

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
    "LENGTH_PRESETS",
    "RATE_PROFILES",
    "ArrivalChunk",
    "ArrivalSource",
    "FixedLengths",
    "GammaProcess",
    "LengthPreset",
    "LengthSampler",
    "LognormalMixture",
    "PoissonProcess",
    "Request",
    "SyntheticSource",
    "ThinnedPoissonProcess",
    "TokenStats",
    "TraceData",
    "TraceError",
    "TraceReplaySource",
    "WorkloadConfig",
    "get_preset",
    "load_trace",
    "preset_names",
]
