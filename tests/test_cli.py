"""CLI: outputs and exact one-line errors for bad input (no tracebacks, exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disagg_gym.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_simulate_json_default_config(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "simulate", "--json", "--horizon", "20")
    assert rc == 0
    s = json.loads(out)
    for key in ("requests_total", "requests_completed", "requests_rejected", "ttft_p99_s", "tpot_p99_s",
                "slo_attainment", "goodput_rps", "energy_per_request_j", "cost_per_1m_tokens_usd"):
        assert key in s
    assert s["requests_total"] == s["requests_completed"] + s["requests_rejected"] > 0


def test_simulate_plots_and_records(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = run(capsys, "simulate", "--horizon", "10", "--plots", str(tmp_path / "p"), "--records", str(tmp_path / "r.csv"))
    assert rc == 0 and "TTFT" in out
    assert (tmp_path / "p" / "latency_cdf.png").stat().st_size > 1000
    assert (tmp_path / "p" / "timeline.png").stat().st_size > 1000
    assert (tmp_path / "r.csv").read_text().startswith("rid,arrival_s")


def test_predict_queries_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text(
        '{"gpu": "h100-sxm", "model": "llama-3.1-8b", "phase": "prefill", "batch": 1, "length": 1024}\n'
        '{"phase": "kv_transfer", "link": "pcie", "bytes": 1048576}\n'
        '{"gpu": "a100-80gb", "model": "llama-2-13b", "phase": "decode", "batch": 8, "length": 512}\n'
    )
    rc, out, _ = run(capsys, "predict", "--queries", str(q))
    lines = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and len(lines) == 3 and all(x["ms"] > 0 for x in lines)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--gpu", "h999", "--model", "llama-3.1-8b", "--phase", "decode", "--batch", "1", "--length", "1"],
         "disagg-gym: error: unknown GPU 'h999'; valid ids: h100-sxm, h100-pcie, h200, a100-80gb, b200, l40s, mi300x, gaudi3"),
        (["predict", "--phase", "kv_transfer", "--link", "carrier-pigeon", "--bytes", "10"],
         "disagg-gym: error: unknown link tier 'carrier-pigeon'"),
        (["predict", "--gpu", "l40s", "--model", "llama-2-70b", "--phase", "decode", "--batch", "1", "--length", "1"],
         "disagg-gym: error: model llama-2-70b (138.0 GB of weights) does not fit on l40s at tp=1 (48 GB per GPU); use a larger --tp"),
        (["predict", "--phase", "decode", "--batch", "0"], "disagg-gym: error: argument --batch: expected a positive integer (got '0')"),
        (["simulate", "--config", "nope"], "disagg-gym: error: unknown config 'nope': not a file and not a standard config"),
        (["simulate", "--rate-scale", "-2"], "disagg-gym: error: argument --rate-scale: expected a positive finite number (got '-2')"),
        (["simulate", "--policy", "psychic"], "disagg-gym: error: unknown router 'psychic'; expected one of:"),
        (["simulate", "--set", "cluster.groups[0]=1"], "disagg-gym: error: "),
        (["simulate", "--set", "workload.rate_per_s=0"], "disagg-gym: error: "),
    ],
)
def test_bad_input_one_line_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(message), last
    assert "Traceback" not in err


def test_bad_config_file_names_file_and_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "cluster:\n  groups:\n    - {gpu: h100-sxm, count: 1, role: prefill, max_batch: -4}\n"
        "    - {gpu: h100-sxm, count: 1, role: decode}\n"
        "workload: {kind: poisson, rate_per_s: 3, lengths: azure_conv}\n"
    )
    rc, _, err = run(capsys, "simulate", "--config", str(bad))
    assert rc == 2
    assert err.strip() == f"disagg-gym: error: {bad}: key 'cluster.groups[0].max_batch': expected a value >= 1 (got -4)"


def test_model_that_does_not_fit_is_a_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "cluster:\n  model: llama-2-70b\n  groups:\n    - {gpu: l40s, count: 1, role: prefill}\n"
        "    - {gpu: l40s, count: 1, role: decode}\n"
        "workload: {kind: poisson, rate_per_s: 3, lengths: azure_conv}\n"
    )
    rc, _, err = run(capsys, "simulate", "--config", str(bad))
    assert rc == 2
    assert err.strip().startswith(f"disagg-gym: error: {bad}: key 'cluster.groups[0]': model llama-2-70b does not fit on l40s at tp=1")


def test_simulate_trace_replay_charges_the_trace_span(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for i in range(200):
        rows.append(f"2023-11-16 18:{15 + i // 60:02d}:{i % 60:02d}.0000000,{500 + i},{20 + i % 7}")
    trace = tmp_path / "t.csv"
    trace.write_text("\n".join(rows) + "\n")
    rc, out, _ = run(capsys, "simulate", "--trace", str(trace), "--json", "--rate-scale", "2")
    s = json.loads(out)
    assert rc == 0 and s["requests_total"] == 200 and s["requests_completed"] == 200
    # 200 rows one second apart, replayed twice as fast: ~100 s of traffic.
    assert 99.0 < s["duration_s"] < 105.0
    assert s["goodput_rps"] == pytest.approx(200 / s["duration_s"], rel=1e-6)


def test_predict_tp_must_divide_heads_and_reports_allreduce(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["predict", "--gpu", "h200", "--model", "llama-3.1-8b", "--phase", "decode", "--batch", "8", "--length", "1024"]
    rc, _, err = run(capsys, *base, "--tp", "3")
    assert rc == 2
    assert err.strip() == (
        "disagg-gym: error: --tp 3 must divide the 32 attention heads of llama-3.1-8b (valid: 1, 2, 4, 8, 16, 32)"
    )
    rc, out, _ = run(capsys, *base, "--tp", "2", "--json")
    res = json.loads(out)
    assert rc == 0 and 0 < res["allreduce_ms"] < res["ms"]
    rc, out, _ = run(capsys, *base, "--json")
    assert rc == 0 and "allreduce_ms" not in json.loads(out)
