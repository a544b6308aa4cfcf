"""``check_sim_invariants`` and ``check_cluster_state`` raise on hand-made violations.

The property, oracle and env tests lean on these checkers; a checker that never raised would
make all of them pass whatever the simulator did. Each case corrupts one thing in a clean,
drained toy run and expects the checker's message for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.sim.engine import Engine
from disagg_gym.testing.checks import InvariantError, check_cluster_state, check_request, check_sim_invariants
from disagg_gym.testing.scenarios import ArraySource, LinearCost, toy_cluster_config
from disagg_gym.types import RequestState
from disagg_gym.workload.request import Request


def _drained() -> tuple[Cluster, Recorder]:
    eng = Engine()
    rec = Recorder(keep_records=True, keep_requests=True)
    cl = Cluster(toy_cluster_config(), eng, ArraySource([0.0, 0.5], [100, 200], [5, 5]), observer=rec,
                 router=ROUTERS.get("round_robin")(), cost_factory=lambda gpu, tp: LinearCost())
    cl.start()
    eng.run_until(lambda: cl.drained())
    return cl, rec


def test_a_clean_run_passes() -> None:
    cl, rec = _drained()
    check_sim_invariants(cl, rec)
    assert rec.completed == 2


def _req(**times: float) -> Request:
    r = Request(7, 1.0, 100, 5, 1.0, 0.1)
    for k, v in times.items():
        setattr(r, k, v)
    return r


@pytest.mark.parametrize(
    ("times", "state", "message"),
    [
        ({"first_token_s": 0.5, "completion_s": 2.0}, RequestState.COMPLETED, "first_token_s=0.5 < arrival_s=1.0"),
        ({"first_token_s": 1.2, "transfer_start_s": 1.3, "transfer_end_s": 1.25, "completion_s": 2.0},
         RequestState.COMPLETED, "transfer_end_s=1.25 < transfer_start_s=1.3"),
        ({"first_token_s": 1.2, "decode_start_s": 1.5, "completion_s": 1.4}, RequestState.COMPLETED,
         "completion_s=1.4 < decode_start_s=1.5"),
        ({"first_token_s": float("nan"), "completion_s": 2.0}, RequestState.COMPLETED, "first_token_s is NaN"),
        ({"first_token_s": 1.2}, RequestState.COMPLETED, "completed without timestamps"),
        ({}, RequestState.REJECTED, "rejected without a reason"),
        ({"first_token_s": 1.2}, RequestState.DECODING, "unfinished state"),
    ],
)
def test_check_request_rejects_bad_lifecycles(times: dict, state: RequestState, message: str) -> None:
    r = _req(**times)
    r.state = state
    with pytest.raises(InvariantError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_request(r)


def test_check_request_accepts_an_ordered_lifecycle() -> None:
    r = _req(prefill_start_s=1.0, first_token_s=1.2, transfer_start_s=1.2, transfer_end_s=1.3, decode_start_s=1.3,
             completion_s=2.0)
    r.state = RequestState.COMPLETED
    check_request(r)


def _set_kv_used(cl: Cluster, rec: Recorder) -> None:
    cl.instances[1].kv.used = cl.instances[1].kv.capacity + 16


def _negative_queue(cl: Cluster, rec: Recorder) -> None:
    cl.instances[0].incoming = -1


def _lose_a_request(cl: Cluster, rec: Recorder) -> None:
    rec.arrived += 1


def _leak_kv(cl: Cluster, rec: Recorder) -> None:
    cl.instances[1].kv.used = 16


def _finish_twice(cl: Cluster, rec: Recorder) -> None:
    rec.requests[1] = rec.requests[0]


def _unordered_request(cl: Cluster, rec: Recorder) -> None:
    r = rec.requests[0]
    r.completion_s = r.arrival_s - 1.0


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_set_kv_used, r"instance 1: kv_used \d+ outside \[0, \d+\]"),
        (_negative_queue, "instance 0: negative queue"),
        (_lose_a_request, "conservation: arrived 3 != finished 2"),
        (_leak_kv, "instance 1 not empty after draining: kv_used=16"),
        (_finish_twice, "a request finished twice"),
        (_unordered_request, "request 0: completion_s="),
    ],
)
def test_check_sim_invariants_catches_each_violation(corrupt: Callable[[Cluster, Recorder], None], message: str) -> None:
    cl, rec = _drained()
    corrupt(cl, rec)
    with pytest.raises(InvariantError, match=message):
        check_sim_invariants(cl, rec)


def test_check_cluster_state_catches_an_overloaded_port() -> None:
    cl, _ = _drained()
    check_cluster_state(cl)
    port = cl.links()[0]
    port.flows.append(SimpleNamespace(rate=port.bandwidth_Bps * 1.01))  # type: ignore[arg-type]
    with pytest.raises(InvariantError, match=re.escape(f"port {port.key}: carries")):
        check_cluster_state(cl)
