"""Hypothesis property tests: invariants over random clusters, workloads and policies."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.config import ClusterConfig, InstanceGroupConfig, TopologyConfig
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.sim.engine import Engine
from disagg_gym.testing.checks import check_cluster_state, check_sim_invariants
from disagg_gym.testing.scenarios import ArraySource

GPUS = ["h100-sxm", "a100-80gb", "l40s", "h200", "h100-pcie"]


@st.composite
def clusters(draw: st.DrawFn) -> ClusterConfig:
    colocated = draw(st.booleans()) and draw(st.booleans())
    groups = []
    if colocated:
        groups.append(InstanceGroupConfig(gpu=draw(st.sampled_from(GPUS)), count=draw(st.integers(1, 3)), role="colocated",
                                          max_batch=draw(st.integers(1, 64))))
    else:
        for role in ("prefill", "decode"):
            for _ in range(draw(st.integers(1, 2))):
                groups.append(InstanceGroupConfig(
                    gpu=draw(st.sampled_from(GPUS)), count=draw(st.integers(1, 3)), role=role,
                    site=draw(st.sampled_from(["a", "b"])), max_batch=draw(st.integers(1, 64)),
                    prefill_token_budget=draw(st.integers(1, 16384)),
                ))
    return ClusterConfig(
        groups=tuple(groups),
        topology=TopologyConfig(gpus_per_node=draw(st.sampled_from([1, 2, 8])),
                                intra_node=draw(st.sampled_from(["nvlink", "pcie"]))),
        kv_reserve_frac=draw(st.sampled_from([0.1, 0.9, 0.99])),
        on_kv_full=draw(st.sampled_from(["queue", "reject"])),
        max_queue_tokens=draw(st.sampled_from([0, 2000])),
        layerwise_overlap=draw(st.booleans()),
    )


@st.composite
def workloads(draw: st.DrawFn) -> ArraySource:
    n = draw(st.integers(1, 120))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    rate = draw(st.floats(0.5, 500))
    t = np.cumsum(rng.exponential(1 / rate, n))
    if draw(st.booleans()):
        t = np.round(t, 1)  # many simultaneous arrivals
    p = rng.integers(1, draw(st.sampled_from([16, 2000, 60000])), n)
    o = rng.integers(1, draw(st.sampled_from([2, 300, 3000])), n)
    return ArraySource(np.sort(t), p, o, chunk=draw(st.integers(1, 64)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=clusters(), src=workloads(), router=st.sampled_from(sorted(ROUTERS.names())))
def test_every_request_ends_and_invariants_hold(cfg: ClusterConfig, src: ArraySource, router: str) -> None:
    eng = Engine()
    rec = Recorder(keep_records=True, keep_requests=True)
    cls = ROUTERS.get(router)
    rt = cls(np.random.default_rng(0)) if router in ("random", "p2c") else cls()
    try:
        cl = Cluster(cfg, eng, src, observer=rec, router=rt)
    except ValueError as exc:  # a model that does not fit is a config error, reported clearly
        assert "does not fit" in str(exc)
        return
    cl.start()
    last = -1.0
    steps = 0
    while eng.step():
        assert eng.now >= last, "time went backwards"
        last = eng.now
        steps += 1
        if steps % 97 == 0:
            check_cluster_state(cl)
        if cl.drained():
            break
    check_sim_invariants(cl, rec)
    assert rec.arrived == len(src.t)
    for req in rec.requests:
        if req.reject_reason is None:
            assert req.ttft_s is not None and req.ttft_s >= 0 and np.isfinite(req.completion_s)
