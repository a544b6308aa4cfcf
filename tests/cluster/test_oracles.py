"""Cluster against hand-computable answers: a lone request, M/D/1 and M/G/1 prefill queues."""

from __future__ import annotations

import numpy as np
import pytest

from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.hardware import get_gpu
from disagg_gym.interconnect.links import link_for_gpu
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.sim.engine import Engine
from disagg_gym.testing.checks import check_sim_invariants
from disagg_gym.testing.scenarios import ArraySource, LinearCost, toy_cluster_config


def run_toy(source, cost=None, cfg=None, router="round_robin"):
    cost = cost or LinearCost()
    eng = Engine()
    rec = Recorder(keep_records=True, keep_requests=True)
    cl = Cluster(cfg or toy_cluster_config(), eng, source, observer=rec, router=ROUTERS.get(router)(),
                 cost_factory=lambda gpu, tp: cost)
    cl.start()
    eng.run_until(lambda: cl.drained())
    check_sim_invariants(cl, rec)
    return cl, rec


def test_lone_request_ttft_tpot_exact() -> None:
    cost = LinearCost(prefill_fixed_s=0.002, prefill_per_token_s=5e-5, decode_a_s=0.008, decode_b_s=2e-7)
    prompt, out = 1000, 50
    cl, rec = run_toy(ArraySource([1.0], [prompt], [out]), cost)
    req = rec.requests[0]
    ttft = 0.002 + 5e-5 * prompt
    assert req.first_token_s == pytest.approx(1.0 + ttft, abs=1e-12)
    spec = link_for_gpu("nvlink", get_gpu("h100-sxm"))  # the toy cluster: tp=1 H100s on one node
    xfer = spec.latency_s + prompt * cost.kv_bytes_per_token / (spec.bandwidth_gbps * 1e9)
    assert req.transfer_end_s - req.transfer_start_s == pytest.approx(xfer, rel=1e-9)
    # out - 1 decode iterations; iteration k sees context prompt + 1 + k.
    decode = sum(0.008 + 2e-7 * (prompt + 1 + k) for k in range(out - 1))
    assert req.completion_s == pytest.approx(1.0 + ttft + xfer + decode, rel=1e-12)
    assert req.tpot_s == pytest.approx((xfer + decode) / (out - 1), rel=1e-9)
    assert req.tier == "nvlink" and req.kv_bytes == prompt * cost.kv_bytes_per_token


def test_joiner_waits_for_iteration_boundary() -> None:
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-6, decode_a_s=0.01, decode_b_s=0.0)
    # First request decodes alone; the second arrives mid-iteration and must join at a boundary.
    cl, rec = run_toy(ArraySource([0.0, 0.0155], [10, 10], [100, 3]), cost)
    by_id = {r.rid: r for r in rec.requests}
    first, second = by_id[0], by_id[1]
    start = first.decode_start_s
    k = (second.decode_start_s - start) / 0.01
    assert k == pytest.approx(round(k), abs=1e-9), "joined between iterations"
    assert second.completion_s == pytest.approx(second.decode_start_s + 2 * 0.01, rel=1e-9)
    assert first.completion_s == pytest.approx(start + 99 * 0.01, rel=1e-9)


def _poisson(rate: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1.0 / rate, n))


def test_md1_prefill_queue_matches_pollaczek_khinchine() -> None:
    # Token budget 1 -> batches of one; fixed prompts -> deterministic service (M/D/1).
    svc, lam, n = 0.05, 14.0, 40000
    cost = LinearCost(prefill_per_token_s=svc / 100, decode_a_s=1e-4, decode_b_s=0.0)
    cfg = toy_cluster_config(token_budget=1)
    _, rec = run_toy(ArraySource(_poisson(lam, n, 1), [100] * n, [2] * n), cost, cfg)
    rho = lam * svc
    wq = rho * svc / (2 * (1 - rho))  # P-K with zero service variance
    ttft = np.asarray(rec.ttft)
    assert ttft.mean() == pytest.approx(wq + svc, rel=0.05)


def test_mg1_prefill_queue_with_geometric_prompts() -> None:
    lam, n, per_tok, mean_len = 10.0, 40000, 1e-4, 600
    rng = np.random.default_rng(7)
    lens = rng.geometric(1.0 / mean_len, n)
    cost = LinearCost(prefill_per_token_s=per_tok, decode_a_s=1e-4, decode_b_s=0.0)
    _, rec = run_toy(ArraySource(_poisson(lam, n, 2), lens, [2] * n), cost, toy_cluster_config(token_budget=1))
    s = lens * per_tok
    es, es2 = s.mean(), (s**2).mean()
    wq = lam * es2 / (2 * (1 - lam * es))
    assert np.asarray(rec.ttft).mean() == pytest.approx(wq + es, rel=0.06)


def test_kv_memory_backpressure_and_reject_policy() -> None:
    cost = LinearCost(kv_capacity=4096, decode_a_s=0.01)
    n = 40
    src = ArraySource(np.linspace(0, 0.1, n), [1000] * n, [200] * n)
    cl, rec = run_toy(src, cost)
    assert rec.completed == n and rec.rejected == 0  # queue policy: all served eventually
    src = ArraySource(np.linspace(0, 0.1, n), [1000] * n, [200] * n)
    cl, rec = run_toy(src, cost, toy_cluster_config(on_kv_full="reject"))
    assert rec.rejected > 0 and rec.completed + rec.rejected == n
    assert set(rec.rejected_by_reason) == {"kv_full"}


def test_too_large_requests_are_rejected_with_reason() -> None:
    cost = LinearCost(kv_capacity=1024)
    _, rec = run_toy(ArraySource([0.0, 0.1], [5000, 10], [10, 10]), cost)
    assert rec.rejected_by_reason == {"too_large": 1} and rec.completed == 1


def test_too_large_is_decided_at_arrival_by_the_decode_rule() -> None:
    # 1,024 tokens of KV in 16-token blocks. Serving needs blocks(prompt + 1) plus one block to
    # grow into: a 1,007-token prompt needs 1,008 + 16 = 1,024 (fits); a 1,008-token prompt
    # needs 1,024 + 16 (never fits). The second used to pass the arrival check (blocks(prompt +
    # 1) = 1,024), take its prefill, and only then be rejected by the decode admission.
    cost = LinearCost(kv_capacity=1024)
    _, rec = run_toy(ArraySource([0.0, 1.0], [1007, 1008], [3, 3]), cost)
    by_id = {r.rid: r for r in rec.requests}
    assert by_id[0].completion_s is not None and by_id[0].reject_reason is None
    assert by_id[1].reject_reason == "too_large" and by_id[1].first_token_s is None
    assert rec.prompt_tokens_done == 1007


def test_colocated_prefill_pauses_decode() -> None:
    from disagg_gym.cluster.config import ClusterConfig, InstanceGroupConfig

    cost = LinearCost(prefill_per_token_s=1e-4, decode_a_s=0.01, decode_b_s=0.0)
    cfg = ClusterConfig(groups=(InstanceGroupConfig(gpu="h100-sxm", count=1, role="colocated"),))
    cl, rec = run_toy(ArraySource([0.0, 0.2], [100, 1000], [50, 5]), cost, cfg)
    by_id = {r.rid: r for r in rec.requests}
    a, b = by_id[0], by_id[1]
    # a: first token at 0.01, then 49 iterations of 10 ms, paused for b's 0.1 s prefill.
    assert a.first_token_s == pytest.approx(0.01)
    assert a.completion_s == pytest.approx(0.01 + 49 * 0.01 + 0.1, rel=1e-9)
    assert b.tier == "local" and b.kv_bytes == 0.0


class _OldestApart:
    """Request 0 prefills on instance 0, every other one on instance 1; all decode on 2."""

    def route(self, cluster, req):  # noqa: ANN001, ANN201
        return (0 if req.rid == 0 else 1), 2


def _run_oldest_apart(cost: LinearCost, source: ArraySource, timeline: object = None) -> Recorder:
    """Runs ``source`` to completion on two prefill and one decode instance under
    ``on_kv_full: preempt`` with :class:`_OldestApart`; checks the invariants."""
    eng = Engine()
    rec = Recorder(keep_records=True, keep_requests=True)
    cl = Cluster(toy_cluster_config(n_prefill=2, n_decode=1, on_kv_full="preempt"), eng, source, observer=rec,
                 router=_OldestApart(), cost_factory=lambda g, tp: cost, timeline=timeline)
    cl.start()
    eng.run_until(lambda: cl.drained())
    check_sim_invariants(cl, rec)
    return rec


def test_preempt_evicts_younger_requests_and_recomputes() -> None:
    # Request 0 (old, long prompt) prefills slowly on instance 0 while younger small requests
    # prefill on instance 1 and fill the decode memory. When 0 is ready, it preempts them.
    cost = LinearCost(kv_capacity=30000, decode_a_s=0.01, prefill_per_token_s=1e-5)
    n = 9
    t = [0.0] + [0.001 * i for i in range(1, n)]
    prompts = [20000] + [2000] * (n - 1)
    outs = [100] + [500] * (n - 1)
    rec = _run_oldest_apart(cost, ArraySource(t, prompts, outs))
    assert rec.completed == n
    by_id = {r.rid: r for r in rec.requests}
    assert by_id[0].preemptions == 0
    victims = [r for r in rec.requests if r.preemptions]
    assert victims, "the old request should have preempted younger ones"
    for v in victims:
        assert v.arrival_s > by_id[0].arrival_s
        assert v.completion_s > by_id[0].decode_start_s
    # youngest first: the victims are the k latest arrivals, not any k younger ones
    k = len(victims)
    assert 0 < k < n - 1
    assert sorted(v.rid for v in victims) == list(range(n - k, n))


def test_preempt_policy_keeps_invariants_under_pressure() -> None:
    cost = LinearCost(kv_capacity=6000, decode_a_s=0.005)
    rng = np.random.default_rng(3)
    n = 300
    t = np.sort(rng.uniform(0, 2.0, n))
    src = ArraySource(t, rng.integers(50, 1500, n), rng.integers(2, 800, n))
    cl, rec = run_toy(src, cost, toy_cluster_config(n_prefill=2, n_decode=2, on_kv_full="preempt"))
    assert rec.completed + rec.rejected == n


def test_preemption_for_an_older_request_happens_at_the_iteration_boundary() -> None:
    # Request 1 (young) decodes in 10 ms iterations on the only decode instance; request 0
    # (older, long prompt) finishes its prefill mid-iteration and needs request 1's memory. The
    # eviction waits for the end of the running iteration: request 1's recompute prefill and
    # request 0's transfer start exactly there, never while request 1 is still decoding.
    from disagg_gym.metrics.chrome_trace import ChromeTrace

    cost = LinearCost(kv_capacity=5328, prefill_per_token_s=1e-5, decode_a_s=0.01, decode_b_s=0.0)
    tr = ChromeTrace()
    rec = _run_oldest_apart(cost, ArraySource([0.0, 0.001], [4000, 1500], [50, 200]), timeline=tr)
    by_id = {r.rid: r for r in rec.requests}
    assert by_id[1].preemptions == 1 and by_id[0].preemptions == 0 and rec.completed == 2
    ev = [e for e in tr.to_json()["traceEvents"] if e.get("ph") == "X"]
    first_decode = min(e["ts"] for e in ev if e["name"] == "decode" and 1 in e["args"]["rids"])
    redo = min(e["ts"] for e in ev if e["name"] == "prefill" and 1 in e["args"]["rids"] and e["ts"] > first_decode)
    # request 1 decodes until the eviction: its decode spans before the redo end exactly there
    before = [e for e in ev if e["name"] == "decode" and 1 in e["args"]["rids"] and e["ts"] < redo]
    end = max(e["ts"] + e["dur"] for e in before)
    assert redo == pytest.approx(end, abs=1e-6)
    # the eviction is on a 10 ms iteration boundary of request 1's decode, after request 0's prefill
    assert (end - first_decode) / 1e4 == pytest.approx(round((end - first_decode) / 1e4), abs=1e-6)
    assert end / 1e6 >= by_id[0].first_token_s
    (xfer0,) = [e for e in ev if e["name"] == "transfer" and e["args"]["rids"] == [0]]
    assert xfer0["ts"] == pytest.approx(end, abs=1e-6)
