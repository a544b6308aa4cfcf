"""Hypothesis strategies for random clusters, workloads and actions (tests and scripts/fuzz.py).

Needs the ``hypothesis`` package (the ``test`` extra).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from disagg_gym.cluster.config import (
    CacheTierConfig,
    ClusterConfig,
    InstanceGroupConfig,
    PrefixCacheConfig,
    TopologyConfig,
)
from disagg_gym.testing.scenarios import ArraySource

GPUS = ("h100-sxm", "a100-80gb", "l40s", "h200", "h100-pcie", "b200", "mi300x", "gaudi3")


@st.composite
def clusters(draw: st.DrawFn) -> ClusterConfig:
    """Random small clusters: colocated or disaggregated, mixed GPUs, sites, policies."""
    groups = []
    if draw(st.integers(0, 3)) == 0:
        groups.append(InstanceGroupConfig(
            gpu=draw(st.sampled_from(GPUS)), count=draw(st.integers(1, 3)), role="colocated",
            max_batch=draw(st.integers(1, 64)), prefill_token_budget=draw(st.integers(1, 16384)),
            prefill_chunk_tokens=draw(st.sampled_from([0, 0, 256, 2048])),
        ))
    else:
        for role in ("prefill", "decode"):
            for _ in range(draw(st.integers(1, 2))):
                groups.append(InstanceGroupConfig(
                    gpu=draw(st.sampled_from(GPUS)), count=draw(st.integers(1, 3)), role=role,
                    tp=draw(st.sampled_from([1, 1, 2])), site=draw(st.sampled_from(["a", "b"])),
                    max_batch=draw(st.integers(1, 64)), prefill_token_budget=draw(st.integers(1, 16384)),
                    prefill_chunk_tokens=draw(st.sampled_from([0, 0, 256, 2048])),
                ))
    return ClusterConfig(
        groups=tuple(groups),
        topology=TopologyConfig(
            gpus_per_node=draw(st.sampled_from([2, 4, 8])), intra_node=draw(st.sampled_from(["nvlink", "pcie"])),
            inter_node=draw(st.sampled_from(["rdma", "ethernet"])),
        ),
        kv_reserve_frac=draw(st.sampled_from([0.1, 0.9, 0.99])),
        on_kv_full=draw(st.sampled_from(["queue", "reject", "preempt"])),
        preemption=draw(st.sampled_from(["recompute", "swap"])),
        max_queue_tokens=draw(st.sampled_from([0, 2000])),
        layerwise_overlap=draw(st.booleans()),
        switch_delay_s=draw(st.sampled_from([0.0, 1.0])),
        prefix_cache=PrefixCacheConfig(
            enabled=draw(st.sampled_from([True, True, False])),
            block_tokens=draw(st.sampled_from([16, 64])),
            host_dram=_tier(draw), ssd=_tier(draw), remote=_tier(draw),
        ),
    )


def _tier(draw: st.DrawFn) -> CacheTierConfig:
    cap = draw(st.sampled_from([0.0, 0.0, 0.05, 2.0]))
    return CacheTierConfig(capacity_gb=cap, policy=draw(st.sampled_from(["offload", "write_through"])),
                           bandwidth_gbps=draw(st.sampled_from([None, 0.5])))


@st.composite
def workloads(draw: st.DrawFn) -> ArraySource:
    """Random arrival arrays: rates, simultaneous arrivals, tiny and huge prompts/outputs."""
    n = draw(st.integers(1, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rate = draw(st.floats(0.5, 500))
    t = np.cumsum(rng.exponential(1 / rate, n))
    if draw(st.booleans()):
        t = np.round(t, 1)  # many simultaneous arrivals
    p = rng.integers(1, draw(st.sampled_from([16, 2000, 60000])), n)
    o = rng.integers(1, draw(st.sampled_from([2, 300, 3000])), n)
    ids = None
    block = 16
    if draw(st.booleans()):  # prefix-block ids from a few shared prefixes (prefix caching on)
        block = draw(st.sampled_from([16, 64, 512]))
        roots = int(draw(st.integers(1, 6)))
        ids = []
        for i in range(n):
            k = -(-int(p[i]) // block)
            root = int(rng.integers(roots))
            shared = int(rng.integers(0, k + 1))
            ids.append([root * 100_000 + j for j in range(shared)] + [10**9 + i * 100_000 + j for j in range(k - shared)])
    return ArraySource(np.sort(t), p, o, chunk=draw(st.integers(1, 64)), hash_ids=ids, hash_block_tokens=block)


def raw_actions(n_dims: int) -> st.SearchStrategy:
    """Any action an untrained or buggy policy might send: valid, out of range, NaN, wrong shape."""
    ints = st.integers(-5, 200)
    return st.one_of(
        st.lists(ints, min_size=n_dims, max_size=n_dims).map(np.asarray),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n_dims, max_size=n_dims).map(np.asarray),
        st.lists(ints, min_size=0, max_size=n_dims + 2).map(np.asarray),
        st.integers(-3, 10),
        st.none(),
        st.text(max_size=3),
    )
