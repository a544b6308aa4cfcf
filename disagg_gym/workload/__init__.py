"""Workloads: requests, arrival generators, length presets and trace replay."""

from disagg_gym.workload.generators import WorkloadConfig
from disagg_gym.workload.presets import LENGTH_PRESETS, preset_names
from disagg_gym.workload.request import Request
from disagg_gym.workload.source import ArrivalChunk, ArrivalSource
from disagg_gym.workload.traces import TraceData, TraceError, load_trace

__all__ = [
    "LENGTH_PRESETS", "ArrivalChunk", "ArrivalSource", "Request", "TraceData", "TraceError",
    "WorkloadConfig", "load_trace", "preset_names",
]
