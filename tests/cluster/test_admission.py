"""Admission controllers: hand-computed oracle scenarios and ``<router>+<admission>`` names."""

from __future__ import annotations

import pytest

from disagg_gym.cluster.admission import ADMISSION, AdmittedRouter, make_admission, split_name
from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.config import ConfigError
from disagg_gym.errors import UserError
from disagg_gym.hardware import get_gpu
from disagg_gym.interconnect.links import link_for_gpu
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.scenario import load_scenario
from disagg_gym.sim.engine import Engine
from disagg_gym.simulation import Simulation
from disagg_gym.testing.checks import check_sim_invariants
from disagg_gym.testing.scenarios import ArraySource, LinearCost, toy_cluster_config

PER_TOKEN = 1e-4  # LinearCost prefill: 1000-token prompt = 0.1 s alone, no fixed part


def run_admitted(source, controller, cost=None):
    cost = cost or LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=PER_TOKEN)
    eng = Engine()
    rec = Recorder(keep_records=True, keep_requests=True)
    router = AdmittedRouter(ROUTERS.get("jsq")(), controller)
    cl = Cluster(toy_cluster_config(), eng, source, observer=rec, router=router,
                 cost_factory=lambda gpu, tp: cost)
    cl.start()
    eng.run_until(lambda: cl.drained())
    check_sim_invariants(cl, rec)
    return cl, rec


def _transfer_s(prompt: int) -> float:
    spec = link_for_gpu("nvlink", get_gpu("h100-sxm"))  # toy cluster: one node of tp=1 H100s
    return spec.latency_s + prompt * 131072 / (spec.bandwidth_gbps * 1e9)


def _hand_ttft_guard(arrivals: list[float], prompt: int, slo: float, alpha: float) -> set[int]:
    """Rejected ids by hand: one prefill instance; the first admitted prompt runs at once, the
    ones arriving while it runs wait for it (whole-batch remainder) and for the prompts admitted
    before them (0.1 s each); predicted TTFT = wait + own 0.1 s + one idle-link transfer.
    All arrivals here fall inside the first prefill (t < 0.1 s) or after everything drained.
    """
    own = prompt * PER_TOKEN
    rejected: set[int] = set()
    running_end = None
    waiting = 0
    for rid, t in enumerate(arrivals):
        if running_end is not None and t >= running_end + 10 * own:  # long after: idle again
            running_end, waiting = None, 0
        wait = 0.0 if running_end is None else (running_end - t) + waiting * own
        pred = wait + own + _transfer_s(prompt)
        if pred > alpha * slo:
            rejected.add(rid)
            continue
        if running_end is None:
            running_end = t + own
        else:
            waiting += 1
    return rejected


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_ttft_guard_rejects_exactly_the_hand_computed_requests(alpha: float) -> None:
    arrivals = [0.01 * k for k in range(10)] + [5.0]
    prompt, slo = 1000, 0.35
    expect = _hand_ttft_guard(arrivals, prompt, slo, alpha)
    # alpha 1: 0.1, 0.19, 0.28 (+ transfer x) pass; with two waiting, k arriving at 0.01 k
    # predicts 0.4 - 0.01 k + x: k = 3..5 miss 0.35, k = 6 passes (0.34 + x), then three wait.
    # alpha 2: 0.1 + 0.09 k + x passes up to k = 6. The late request finds an idle instance.
    assert expect == ({3, 4, 5, 7, 8, 9} if alpha == 1.0 else {7, 8, 9})
    src = ArraySource(arrivals, [prompt] * len(arrivals), [4] * len(arrivals), slo_ttft_s=slo)
    _, rec = run_admitted(src, make_admission("ttft_guard", {"alpha": alpha}))
    got = {r.rid for r in rec.requests if r.reject_reason is not None}
    assert got == expect
    assert all(r.reject_reason == "policy" for r in rec.requests if r.rid in got)


def test_ttft_guard_transfer_term_matters() -> None:
    # Two prompts whose prediction differs from the SLO by less than the transfer time: only
    # the guard that counts the transfer rejects the second.
    prompt = 1000
    slo = 0.19 + _transfer_s(prompt) / 2
    arrivals = [0.0, 0.01]
    src = lambda: ArraySource(arrivals, [prompt] * 2, [4] * 2, slo_ttft_s=slo)  # noqa: E731
    _, with_x = run_admitted(src(), make_admission("ttft_guard", {}))
    _, without = run_admitted(src(), make_admission("ttft_guard", {"include_transfer": False}))
    assert [r.rid for r in with_x.requests if r.reject_reason] == [1]
    assert not [r.rid for r in without.requests if r.reject_reason]


def test_queue_guard_counts_queued_prompts() -> None:
    # One prefill instance; the running prompt is in its queue. Threshold 2: the first two of a
    # burst are admitted, the rest rejected until the queue empties.
    arrivals = [0.01 * k for k in range(6)] + [5.0]
    src = ArraySource(arrivals, [1000] * 7, [4] * 7, slo_ttft_s=10.0)
    _, rec = run_admitted(src, make_admission("queue_guard", {"max_queued_requests": 2}))
    assert {r.rid for r in rec.requests if r.reject_reason} == {2, 3, 4, 5}


def test_mooncake_rejects_on_tpot_when_ttft_is_fine() -> None:
    # Decode iteration 0.05 s at any batch (LinearCost a, b = 0): a TPOT SLO of 0.04 s can never
    # be met, so every request is rejected although the TTFT SLO is generous; 0.06 s admits all.
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=PER_TOKEN, decode_a_s=0.05, decode_b_s=0.0)
    for slo_tpot, rejected in ((0.04, 3), (0.06, 0)):
        src = ArraySource([0.0, 1.0, 2.0], [100] * 3, [10] * 3, slo_ttft_s=10.0, slo_tpot_s=slo_tpot)
        _, rec = run_admitted(src, make_admission("mooncake", {}), cost)
        assert sum(r.reject_reason == "policy" for r in rec.requests) == rejected


def test_none_admits_everything() -> None:
    src = ArraySource([0.0] * 5, [1000] * 5, [4] * 5, slo_ttft_s=1e-6)
    _, rec = run_admitted(src, make_admission("none", {}))
    assert all(r.reject_reason is None for r in rec.requests)


# ------------------------------------------------------------------ names and parameters
def test_split_name() -> None:
    assert split_name("jsq+ttft_guard") == ("jsq", "ttft_guard")
    assert split_name("jsq") == ("jsq", None)
    for bad in ("jsq+", "+ttft_guard", "jsq+ttft_guard+none"):
        with pytest.raises(UserError, match="<router>\\+<admission>"):
            split_name(bad)
    with pytest.raises(UserError, match="unknown admission controller 'nope'"):
        split_name("jsq+nope")


def test_registry_names() -> None:
    assert set(ADMISSION.names()) == {"none", "ttft_guard", "queue_guard", "mooncake"}
    with pytest.raises(UserError, match="unknown parameter 'beta'.*alpha"):
        make_admission("ttft_guard", {"beta": 1})
    with pytest.raises(UserError, match="alpha must be a positive"):
        make_admission("ttft_guard", {"alpha": 0})


def test_every_router_composes_in_the_simulator() -> None:
    scen = load_scenario("small-route", {"horizon_s": 4.0, "workload.rate_per_s": 150})
    for router in ROUTERS.names():
        plain = Simulation(scen, seed=1, router=router).run()
        guarded = Simulation(scen, seed=1, router=f"{router}+ttft_guard").run()
        assert plain["requests_total"] == guarded["requests_total"]
        if router == "conductor":  # rejects early by itself (Mooncake's Conductor, issue #14)
            assert 0 < plain["requests_rejected"] <= guarded["requests_rejected"], router
        else:
            assert plain["requests_rejected"] == 0 < guarded["requests_rejected"], router


def test_scenario_admission_section_sets_parameters() -> None:
    over = {"horizon_s": 4.0, "workload.rate_per_s": 150, "router": "jsq+ttft_guard"}
    tight = Simulation(load_scenario("small-route", {**over, "admission.ttft_guard.alpha": 0.5}), seed=1).run()
    loose = Simulation(load_scenario("small-route", {**over, "admission.ttft_guard.alpha": 3.0}), seed=1).run()
    assert tight["requests_rejected"] > loose["requests_rejected"]
    with pytest.raises(ConfigError, match="admission.ttft_guard.*unknown parameter 'beta'"):
        load_scenario("small-route", {"admission.ttft_guard.beta": 1})
    with pytest.raises(ConfigError, match="admission.nope"):
        load_scenario("small-route", {"admission.nope.x": 1})
    with pytest.raises(ConfigError, match="unknown admission controller 'nope'"):
        load_scenario("small-route", {"router": "jsq+nope"})
