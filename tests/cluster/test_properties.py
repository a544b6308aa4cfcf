"""Hypothesis property tests: invariants over random clusters, workloads and routers."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.config import ClusterConfig
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.sim.engine import Engine
from disagg_gym.testing.checks import check_cluster_state, check_sim_invariants
from disagg_gym.testing.scenarios import ArraySource
from disagg_gym.testing.strategies import clusters, workloads


def run_case(cfg: ClusterConfig, src: ArraySource, router: str, flips: list[int]) -> None:
    """Runs one random case to completion, checking invariants along the way."""
    eng = Engine()
    rec = Recorder(keep_records=True, keep_requests=True)
    cls = ROUTERS.get(router)
    rt = cls(np.random.default_rng(0)) if router in ("random", "p2c") else cls()
    try:
        cl = Cluster(cfg, eng, src, observer=rec, router=rt)
    except ValueError as exc:  # a model that does not fit is a config error, reported clearly
        assert "does not fit" in str(exc) or "tp" in str(exc)
        return
    cl.start()
    last = -1.0
    steps = 0
    gpus = cl.flexible_gpus()
    while eng.step():
        assert eng.now >= last, "time went backwards"
        last = eng.now
        steps += 1
        if flips and gpus and steps % 37 == 0:  # random role changes mid-run
            g = gpus[steps % len(gpus)]
            cl.set_prefill_count(g, flips[steps % len(flips)])
        if steps % 23 == 0:
            check_cluster_state(cl)
        if cl.drained():
            break
    check_sim_invariants(cl, rec)
    assert rec.arrived == len(src.t)
    for req in rec.requests:
        if req.reject_reason is None:
            assert req.ttft_s is not None and req.ttft_s >= 0 and np.isfinite(req.completion_s)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=clusters(), src=workloads(), router=st.sampled_from(sorted(ROUTERS.names())),
       flips=st.lists(st.integers(0, 6), max_size=4))
def test_every_request_ends_and_invariants_hold(cfg: ClusterConfig, src: ArraySource, router: str, flips: list[int]) -> None:
    run_case(cfg, src, router, flips)
