"""``summarize``'s latency percentiles and SLO attainments against a hand-computed run."""

from __future__ import annotations

import pytest

from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.hardware import get_gpu
from disagg_gym.interconnect.links import link_for_gpu
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.metrics.summary import summarize
from disagg_gym.sim.engine import Engine
from disagg_gym.testing.scenarios import ArraySource, LinearCost, toy_cluster_config

KV = 2**20  # bytes of KV per token: transfers long enough to set the TPOTs apart
NVLINK = link_for_gpu("nvlink", get_gpu("h100-sxm"))  # the toy cluster: tp=1 H100s on one node


def _xfer(prompt: int) -> float:
    return NVLINK.latency_s + prompt * KV / (NVLINK.bandwidth_gbps * 1e9)


def test_percentiles_and_attainments_of_five_lone_requests_and_one_rejection() -> None:
    # Five requests 2 s apart, each alone in the cluster: prompt 1000 k tokens at 10 us per
    # token -> TTFT 0.01 k s exactly. TPOT = (transfer + (out - 1) x 10 ms) / (out - 1).
    # Request 0 has out = 2, so its whole transfer lands in its one TPOT interval; the others
    # have out = 101, so theirs is spread over 100. Request 5 (2M tokens) is too large.
    prompts = [1000, 2000, 3000, 4000, 5000, 2_000_000]
    outs = [2, 101, 101, 101, 101, 5]
    slo_ttft = 0.035  # met by requests 0, 1, 2
    slo_tpot = 0.01 + _xfer(1000) / 2  # missed by request 0 only
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-5, decode_a_s=0.01, decode_b_s=0.0,
                      kv_bytes_per_token=KV)
    src = ArraySource([0.0, 2.0, 4.0, 6.0, 8.0, 9.0], prompts, outs, slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot)
    eng = Engine()
    rec = Recorder(keep_records=True)
    cl = Cluster(toy_cluster_config(), eng, src, observer=rec, router=ROUTERS.get("round_robin")(),
                 cost_factory=lambda gpu, tp: cost)
    cl.start()
    eng.run_until(lambda: cl.drained())
    s = summarize(rec, cl, 10.0)

    assert (s["requests_completed"], s["requests_rejected"]) == (5, 1)
    # (summarize rounds to 1e-9 s.) TTFT 0.01 .. 0.05 s; linear interpolation between order statistics: rank q (n - 1).
    assert s["ttft_p50_s"] == pytest.approx(0.03, abs=1e-9)
    assert s["ttft_p90_s"] == pytest.approx(0.04 + 0.6 * 0.01, abs=1e-9)  # rank 3.6
    assert s["ttft_p99_s"] == pytest.approx(0.04 + 0.96 * 0.01, abs=1e-9)  # rank 3.96
    assert s["ttft_mean_s"] == pytest.approx(0.03, abs=1e-9)
    tpot = [0.01 + _xfer(1000)] + [0.01 + _xfer(p) / 100 for p in prompts[1:5]]
    # sorted: requests 1, 2, 3, 4 (transfer / 100), then request 0 (whole transfer)
    assert s["tpot_p50_s"] == pytest.approx(tpot[3], abs=1e-9)
    assert s["tpot_p99_s"] == pytest.approx(tpot[4] + 0.96 * (tpot[0] - tpot[4]), abs=1e-9)
    assert s["tpot_mean_s"] == pytest.approx(sum(tpot) / 5, abs=1e-9)
    e2e = [0.01 * (k + 1) + tpot[k] * (outs[k] - 1) for k in range(5)]
    assert s["e2e_p50_s"] == pytest.approx(sorted(e2e)[2], abs=1e-9)
    # Over the six finished requests (the rejection counts as a miss): TTFT met by 0, 1, 2;
    # TPOT by 1, 2, 3, 4; both by 1, 2.
    assert s["ttft_slo_attainment"] == pytest.approx(3 / 6)
    assert s["tpot_slo_attainment"] == pytest.approx(4 / 6)
    assert s["slo_attainment"] == pytest.approx(2 / 6)
    assert s["goodput_rps"] == pytest.approx(2 / 10.0)
    assert s["slo_tokens"] == 2000 + 101 + 3000 + 101


@pytest.mark.parametrize("loop", [True, False])
def test_slo_tokens_per_s_of_a_trace_that_ends_before_the_horizon(tmp_path, loop: bool) -> None:
    # Two 105-token requests 5 s apart, each alone on the cluster (all SLOs met). Looped over a
    # 14.9 s horizon they arrive at 0, 5 and 10 s (the next at 15 s is past it); the last
    # finishes at ~10.05 s but the run spans the horizon (as under horizon_policy fail): SLO
    # tokens per second of the horizon are 3 x 105 / 14.9. Without looping the trace is charged
    # its own span (the clock when its last request finished).
    from disagg_gym.scenario import load_scenario
    from disagg_gym.simulation import Simulation

    trace = tmp_path / "two.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 100, "output_length": 5}\n'
                     '{"timestamp": 5000, "input_length": 100, "output_length": 5}\n')
    scen = load_scenario("small-route", {"horizon_s": 14.9, "workload": {
        "kind": "trace", "trace_path": str(trace), "loop": loop}})
    sim = Simulation(scen, keep_records=False)
    s = sim.run()
    n = 3 if loop else 2
    assert s["requests_total"] == n and s["slo_tokens"] == 105 * n
    if loop:
        assert s["simulated_s"] == s["duration_s"] == 14.9
    else:
        assert 5.0 * (n - 1) < s["simulated_s"] < 5.0 * (n - 1) + 0.5
    per = 14.9 if loop else s["simulated_s"]
    assert s["slo_tokens_per_s"] == pytest.approx(105 * n / per, rel=1e-6)


@pytest.mark.parametrize("policy", ["drain", "fail"])
def test_a_capped_run_is_charged_up_to_its_last_arrival_whatever_the_horizon_policy(policy: str) -> None:
    # drain charged the last completion, fail the horizon: 6,825 vs 4,114 SLO tokens/s for the
    # same 30 requests. Oracle: SLO-meeting tokens / the 30th arrival's time, both policies.
    from disagg_gym.scenario import load_scenario
    from disagg_gym.simulation import Simulation

    scen = load_scenario("small-route", {"horizon_s": 10.0, "workload.rate_per_s": 30, "max_requests": 30,
                                         "horizon_policy": policy})
    sim = Simulation(scen, seed=0, keep_records=True)
    s = sim.run()
    last = max(r["arrival_s"] for r in sim.recorder.iter_records())
    assert s["requests_total"] == 30 and 0.0 < last < 10.0
    assert s["slo_tokens_per_s"] == pytest.approx(s["slo_tokens"] / last, rel=1e-6)
