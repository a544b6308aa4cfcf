"""CLI: outputs and exact one-line errors for bad input (no tracebacks, exit code 2)."""

from __future__ import annotations

import csv
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
    pytest.importorskip("matplotlib")  # the [plots] extra
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
         "disagg-gym: error: unknown GPU 'h999'; valid ids: h100-sxm, h100-pcie, h200, a100-80gb, b200, l40s, mi300x, gaudi3, or a YAML file path"),
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
# ---------------------------------------------------------------- issue #17
def test_bad_output_paths_fail_before_the_simulation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import disagg_gym.simulation

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the simulation ran before the output paths were checked")

    monkeypatch.setattr(disagg_gym.simulation.Simulation, "__init__", boom)
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    cases = [
        (["--records", str(tmp_path / "d")], f"--records {str(tmp_path / 'd')!r}: is a directory, expected a file path"),
        (["--records", str(tmp_path / "f" / "r.csv")],
         f"--records {str(tmp_path / 'f' / 'r.csv')!r}: {str(tmp_path / 'f')!r} is a file, not a folder"),
        (["--plots", str(tmp_path / "f")], f"--plots {str(tmp_path / 'f')!r}: is a file, expected a folder"),
    ]
    for extra, message in cases:
        rc, _, err = run(capsys, "simulate", "--horizon", "2", *extra)
        assert rc == 2 and err.strip().splitlines()[-1] == f"disagg-gym: error: {message}"
        assert "Traceback" not in err


def test_oserror_while_writing_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import disagg_gym.cli

    def full(path: object, text: str) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(disagg_gym.cli, "atomic_write_text", full)  # what --records writes with
    out = tmp_path / "r.csv"
    rc, _, err = run(capsys, "simulate", "--horizon", "2", "--records", str(out))
    assert rc == 2
    assert err.strip() == f"disagg-gym: error: {str(out)!r}: No space left on device"


def test_internal_value_error_is_not_reported_as_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # a traceback must mean a bug: only UserError (and OSError) become one-line errors
    import disagg_gym.simulation

    def bug(self: object, *a: object, **k: object) -> None:
        raise ValueError("internal invariant broken")

    monkeypatch.setattr(disagg_gym.simulation.Simulation, "run", bug)
    with pytest.raises(ValueError, match="internal invariant broken"):
        main(["simulate", "--horizon", "2"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--phase", "prefill", "--batch", "1000000000", "--length", "8"],
         "disagg-gym: error: 'batch' must be at most 65,536 (got 1000000000)"),
        (["predict", "--gpu", "h100-sxm", "--model", "llama-2-7b", "--phase", "decode", "--batch", "1", "--length", "4097"],
         "disagg-gym: error: 'length' 4097 exceeds the context length of llama-2-7b (4,096 tokens)"),
        (["predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--phase", "prefill", "--batch", "1", "--length", "1" * 30],
         f"disagg-gym: error: 'length' {'1' * 30} exceeds the context length of llama-3.1-8b (131,072 tokens)"),
        (["simulate", "--rate-scale", "1e300", "--horizon", "1"],
         "disagg-gym: error: workload: about 6.2e+301 arrivals expected (rate 6.2e+301/s x horizon 1 s), more than "
         "the sanity cap of 1e+09; lower the rate (or --rate-scale) or the horizon, or set max_requests"),
        (["simulate", "--policy", ""], "disagg-gym: error: argument --policy: empty value (an unset shell variable?)"),
    ],
)
def test_issue17_one_line_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.strip().splitlines()[-1] == message


def test_predict_at_the_limits_still_answers(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "predict", "--gpu", "h100-sxm", "--model", "llama-2-7b", "--phase", "decode",
                     "--batch", "65536", "--length", "4096", "--json")
    assert rc == 0 and json.loads(out)["ms"] > 0


def test_predict_queries_reject_non_finite_bytes_and_non_utf8(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text('{"phase": "kv_transfer", "link": "pcie", "bytes": Infinity}\n')
    rc, out, err = run(capsys, "predict", "--queries", str(q))
    assert rc == 2 and out == ""
    assert err.strip() == f"disagg-gym: error: {q}:1: 'bytes' must be a non-negative finite number (got inf)"
    data = b'{"phase": "kv_transfer", "link": "pcie", "bytes": 1}\n\xff\n'
    q.write_bytes(data)
    rc, _, err = run(capsys, "predict", "--queries", str(q))
    bad = data.index(b"\xff")
    assert rc == 2 and err.strip() == f"disagg-gym: error: {q}: not a text file (invalid UTF-8 at byte {bad})"
    q.write_text('{"phase": "kv_transfer", "link": "pcie", "bytes": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    rc, _, err = run(capsys, "predict", "--queries", str(q))
    assert rc == 2 and err.strip() == f"disagg-gym: error: {q}:1: invalid JSON (nested too deeply)"
    q.write_text('{"phase": "kv_transfer", "link": "pcie", "bytes": ' + "1" * 5000 + "}\n")
    rc, _, err = run(capsys, "predict", "--queries", str(q))
    assert rc == 2 and err.strip().startswith(f"disagg-gym: error: {q}:1: invalid JSON (Exceeds the limit")


def test_trace_rows_years_apart_are_all_replayed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the default 1e7 s horizon silently dropped the later rows
    trace = tmp_path / "t.jsonl"
    rows = [(0, 100, 5), (1000, 120, 5), (3.2e11, 90, 5), (1e308, 80, 5)]  # ms: 0 s, 1 s, ~10 years, 1e305 s
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": i, "output_length": o}) + "\n" for t, i, o in rows))
    rc, out, err = run(capsys, "simulate", "--trace", str(trace), "--json")
    s = json.loads(out)
    assert rc == 0 and s["requests_total"] == 4 and s["requests_completed"] == 4
    assert "warning" not in err
    rc, out, err = run(capsys, "simulate", "--trace", str(trace), "--json", "--horizon", "10")
    assert rc == 0 and json.loads(out)["requests_total"] == 2
    assert err.strip() == "disagg-gym: warning: replayed 2 of 4 trace rows: horizon_s=10 s ended the replay"
    rc, out, err = run(capsys, "simulate", "--trace", str(trace), "--json", "--set", "max_requests=3")
    assert rc == 0 and json.loads(out)["requests_total"] == 3
    assert err.strip() == "disagg-gym: warning: replayed 3 of 4 trace rows: max_requests=3 ended the replay"


def test_skipped_trace_rows_are_counted_and_warned(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 100, "output_length": 5}\n'
                     '{"timestamp": 10, "input_length": "abc", "output_length": 5}\n'
                     '{"timestamp": 20, "input_length": 90, "output_length": 5}\n')
    rc, out, err = run(capsys, "simulate", "--trace", str(trace), "--set", "workload.on_bad_row=skip", "--json")
    s = json.loads(out)
    assert rc == 0 and s["requests_total"] == 2 and s["trace_rows_skipped"] == 1
    assert err.startswith(f"disagg-gym: warning: skipped 1 bad trace row(s) (workload.on_bad_row=skip); first: {trace}:2: ")
    trace.write_text('{"timestamp": 0, "input_length": 100, "output_length": 5}\n')
    rc, out, err = run(capsys, "simulate", "--trace", str(trace), "--json")
    assert rc == 0 and json.loads(out)["trace_rows_skipped"] == 0 and err == ""


def test_a_config_horizon_that_ends_a_replay_is_a_note_not_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": 100, "output_length": 5}) + "\n"
                             for t in (0, 1000, 2000, 60_000)))  # ms: the last row after a 30 s horizon
    cfg = tmp_path / "replay.yaml"
    cfg.write_text(
        f"horizon_s: 30\nworkload: {{kind: trace, trace_path: {trace}}}\ncluster:\n  model: llama-3.1-8b\n"
        "  groups:\n    - {gpu: h100-sxm, count: 1, role: prefill}\n    - {gpu: h100-sxm, count: 1, role: decode}\n"
    )
    rc, out, err = run(capsys, "simulate", "--config", str(cfg))
    assert rc == 0 and "warning" not in err
    assert "trace rows    replayed 3 of 4 (the config's horizon_s=30 s ended the replay)" in out.splitlines()


def test_draining_cut_at_ten_horizons_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    # 1 s of arrivals far beyond one prefill instance's capacity: draining cannot finish in 10 s
    rc, out, err = run(capsys, "simulate", "--horizon", "1", "--set", "workload.rate_per_s=3000", "--json")
    s = json.loads(out)
    assert rc == 0 and s["unfinished"] > 0 and 10.0 < s["simulated_s"] < 10.5  # the first event past the limit
    assert err.strip() == (
        f"disagg-gym: warning: draining stopped at 10 s simulated (10x the horizon) with {s['unfinished']} "
        "request(s) still in flight, counted as unfinished: the cluster does not keep up with this load "
        "(fewer requests, more instances, or --set horizon_policy=fail)"
    )
    rc, out, err = run(capsys, "simulate", "--horizon", "1", "--set", "workload.rate_per_s=3", "--json")
    assert rc == 0 and json.loads(out)["unfinished"] == 0 and err == ""


def test_trace_conflicting_with_workload_kind_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n')
    rc, _, err = run(capsys, "simulate", "--trace", str(trace), "--set", "workload.kind=poisson")
    assert rc == 2 and err.strip() == (
        "disagg-gym: error: --trace replays a trace but --set workload.kind=poisson asks for another workload; drop one"
    )
    rc, _, err = run(capsys, "simulate", "--trace", str(trace), "--set", "workload.trace_path=other.csv")
    assert rc == 2 and err.strip() == (
        f"disagg-gym: error: --trace {str(trace)!r} conflicts with --set workload.trace_path=other.csv; drop one"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "--chrome-trace-max-events", "-1"],
         "argument --chrome-trace-max-events: expected a positive integer (got '-1')"),
        (["validate", "--sample", "0"], "argument --sample: expected a positive integer (got '0')"),
        (["simulate", "--horizon"], "argument --horizon: expected one argument"),
        (["nope"], "argument command: invalid choice: 'nope'"),
        # was accepted (SB3 knows 0, 1, 2), then a full training run started
        (["train", "--verbose", "5"], "argument --verbose: invalid choice: 5 (choose from 0, 1, 2)"),
    ],
)
def test_bad_flags_get_exactly_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err  # no usage block, no traceback
    assert err.strip().startswith(f"disagg-gym: error: {message}")


def test_one_line_descriptions_do_not_stop_at_abbreviations() -> None:
    from disagg_gym.commands import _one_line

    class Doc:
        """Mooncake's Conductor (Qin et al., FAST'25, Sec. 5 "scheduling"): the prefill instance with the least
        predicted TTFT over all of them. Rejects early."""

    line = _one_line(Doc)
    assert line.startswith("Mooncake's Conductor (Qin et al., FAST'25, Sec. 5 \"scheduling\"): the")
    assert "Rejects" not in line and len(line) <= 90


def test_workload_label_names_a_length_mix_flip() -> None:
    # EnergyAllocate-v3 as written in configs/energy-allocate.yaml
    from disagg_gym.cli import workload_label
    from disagg_gym.scenario import load_scenario

    assert workload_label(load_scenario("energy-allocate").workload) == (
        "poisson 88 req/s, azure_code then azure_conv from 300 s lengths")


# ---------------------------------------------------------------- QA pass: cost-model files
def test_bad_cost_model_files_are_one_line_naming_file_and_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xf0\x00\xff\xfe")
    word = tmp_path / "word.json"
    word.write_text(json.dumps({"cost": {"compute_eff": "x"}}))
    infinite = tmp_path / "inf.json"
    infinite.write_text('{"cost": {"layer_overhead_s": 1e999}}')  # json reads 1e999 as inf
    base = ["predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--phase", "decode", "--batch", "1",
            "--length", "10", "--cost-model"]
    cases = [
        (f"table:{binary}", f"{binary}: not a text file (invalid UTF-8 at byte 0)"),
        (f"roofline:{binary}", f"{binary}: not a text file (invalid UTF-8 at byte 0)"),
        (f"roofline:{word}", f"{word}: CalibParams: compute_eff must be a number (got 'x')"),
        (f"roofline:{infinite}", f"{infinite}: CalibParams: layer_overhead_s must be finite (got inf)"),
    ]
    for spec, message in cases:
        rc, out, err = run(capsys, *base, spec)
        assert rc == 2 and out == "" and "Traceback" not in err
        assert err.strip() == f"disagg-gym: error: {message}"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full (a device whose writes fail)")
def test_a_write_that_fails_names_the_output_path(capsys: pytest.CaptureFixture[str]) -> None:
    # write() errors carry no file name: the message was "[Errno 28] No space left on device"
    rc, out, err = run(capsys, "simulate", "--horizon", "1", "--records", "/dev/full")
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == "disagg-gym: error: '/dev/full': No space left on device"
    # the run is not lost: its summary is printed before the error (and no 'what next' tips)
    assert "goodput" in out and "SLO" in out and "--chrome-trace FILE" not in out


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full (a device whose writes fail)")
def test_a_failed_output_write_still_prints_the_json_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, err = run(capsys, "simulate", "--horizon", "1", "--json", "--chrome-trace", "/dev/full",
                       "--records", str(tmp_path / "r.csv"))
    assert rc == 2 and "Traceback" not in err and "/dev/full" in err
    summary = json.loads(out)  # one JSON object on stdout, without the trace that was not written
    assert summary["requests_total"] > 0 and "chrome_trace" not in summary
    assert (tmp_path / "r.csv").read_text().startswith("rid,")  # what was written before stays


@pytest.mark.parametrize(
    ("cv", "problem"),
    [
        ("1e-300", "too small for a gamma process at rate_per_s 62 (its shape 1 / cv**2 overflows) (got 1e-300)"),
        ("1e300", "expected a value <= 1000 (a larger CV draws inter-arrival gaps that underflow to 0 s, so "
                  "arrivals stop advancing) (got 1e+300)"),
        ("3000", "expected a value <= 1000 (a larger CV draws inter-arrival gaps that underflow to 0 s, so "
                 "arrivals stop advancing) (got 3000)"),
    ],
)
def test_gamma_cv_outside_what_the_process_can_draw_is_one_line(
    capsys: pytest.CaptureFixture[str], cv: str, problem: str
) -> None:
    # 1e-300 and 1e300 were ZeroDivisionError tracebacks; 3000 ran forever (every gap 0 s)
    rc, out, err = run(capsys, "simulate", "--horizon", "1", "--set", "workload.kind=gamma", "--set", f"workload.cv={cv}")
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == f"disagg-gym: error: config small-route with overrides: key 'workload.cv': {problem}"
    rc, _, _ = run(capsys, "simulate", "--horizon", "1", "--set", "workload.kind=gamma", "--set", "workload.cv=1000")
    assert rc == 0  # the bound itself still runs


def test_an_integer_beyond_64_bits_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # was an OverflowError traceback from numpy ("Python int too large to convert to C long")
    rc, out, err = run(capsys, "simulate", "--horizon", "1", "--set", "workload.lengths=fixed",
                       "--set", "workload.prompt_tokens=1000000000000000000000000000000")
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == ("disagg-gym: error: config small-route with overrides: key 'workload.prompt_tokens': "
                           "expected an integer that fits in 64 bits (got 1000000000000000000000000000000)")


@pytest.mark.parametrize(
    ("capacity", "problem"),
    [
        ("0.01", "holds no 256-token block of 33.55 MB (got 0.01)"),
        ("1e300", "too large to count in 256-token blocks (got 1e+300)"),
    ],
)
def test_a_cache_tier_too_small_or_too_large_is_one_line(
    capsys: pytest.CaptureFixture[str], capacity: str, problem: str
) -> None:
    # both were ValueError tracebacks (the second "cannot convert float NaN to integer")
    rc, out, err = run(capsys, "simulate", "--config", "rag-pool-route", "--horizon", "1",
                       "--set", f"cluster.prefix_cache.ssd.capacity_gb={capacity}")
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == f"disagg-gym: error: key 'cluster.prefix_cache.ssd.capacity_gb': {problem}"


def test_a_flag_conflicting_with_its_set_key_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the flag replaced the --set value unseen, so `--set horizon_s=abc` ran without complaint
    rc, _, err = run(capsys, "simulate", "--horizon", "1", "--set", "horizon_s=abc")
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == "disagg-gym: error: --horizon 1 conflicts with --set horizon_s=abc; drop one"
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n')
    rc, _, err = run(capsys, "simulate", "--trace", str(trace), "--rate-scale", "2", "--set", "workload.rate_scale=3")
    assert rc == 2 and err.strip() == (
        "disagg-gym: error: --rate-scale 2 conflicts with --set workload.rate_scale=3; drop one"
    )
    rc, _, _ = run(capsys, "simulate", "--horizon", "1", "--set", "horizon_s=1")  # the same value: no conflict
    assert rc == 0



def test_rate_scale_multiplies_a_trace_config_s_own_rate_scale(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A trace config replayed at 2x: --rate-scale 2 makes it 4x (it replaced the 2 with 2,
    # so azure-trace-route's 11.25x ran at 2x: "twice the load" was a sixth of it).
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(f'{{"timestamp": {1000 * i}, "input_length": 10, "output_length": 2}}\n' for i in range(100)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: c\nhorizon_s: 10\ncluster: {groups: [{gpu: h100-sxm, count: 2, role: colocated}]}\n"
                   f"workload: {{kind: trace, trace_path: {trace}, rate_scale: 2}}\n")
    counts = []
    for extra in ([], ["--rate-scale", "2"]):
        rc, out, err = run(capsys, "simulate", "--config", str(cfg), "--json", *extra)
        assert rc == 0, err
        counts.append(json.loads(out)["requests_total"])
    assert counts == [20, 40]  # rows at t = 0..99 s replayed before the 10 s horizon: t/2 < 10, t/4 < 10
    # beside --set workload.rate_scale (which would multiply) it is refused, config trace or --trace
    rc, _, err = run(capsys, "simulate", "--config", str(cfg), "--rate-scale", "2", "--set", "workload.rate_scale=3")
    assert rc == 2 and err.strip() == "disagg-gym: error: --rate-scale 2 conflicts with --set workload.rate_scale=3; drop one"

def test_bench_checks_markdown_before_measuring(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --markdown was first written after the ~20 minutes of measurements, and a bad path lost them all
    from disagg_gym import bench

    def boom(**kw: object) -> None:
        raise AssertionError("the measurements ran before --markdown was checked")

    monkeypatch.setattr(bench, "run_bench", boom)
    (tmp_path / "f").write_text("x")
    bad = tmp_path / "f" / "b.md"
    rc, out, err = run(capsys, "bench", "--quick", "--markdown", str(bad))
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == f"disagg-gym: error: --markdown {str(bad)!r}: {str(tmp_path / 'f')!r} is a file, not a folder"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("n_steps: -1", "hyperparameter 'n_steps' must be a positive integer (got -1)"),
        ("learning_rate: abc", "hyperparameter 'learning_rate' must be a number >= 0 or lin_<x> (got 'abc')"),
        ("gamma: 5", "hyperparameter 'gamma' must be a number in [0, 1] (got 5)"),
        ("clip_range: -1", "hyperparameter 'clip_range' must be a number > 0 or lin_<x> (got -1)"),
        ("batch_size: 1", "hyperparameter 'batch_size' must be at least 2 while advantages are normalised per "
                          "mini-batch (normalize_advantage: false allows 1) (got 1)"),
        ("n_steps: 33\n  batch_size: 32", "n_steps x n_envs = 33 leaves a last mini-batch of 1 with batch_size 32 while "
                                           "advantages are normalised: change n_steps, n_envs or batch_size"),
    ],
)
def test_bad_hyperparameter_values_are_one_line_before_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, line: str, message: str
) -> None:
    # SB3 asserted (learning_rate abc), failed in numpy (n_steps -1) or trained on them (gamma 5)
    pytest.importorskip("sb3_contrib")  # the [rl] extra
    hp = tmp_path / "hp.yml"
    hp.write_text(f"default:\n  policy: MlpPolicy\n  n_timesteps: 64\n  {line}\n")
    rc, out, err = run(capsys, "train", "--env", "small-route", "--hyperparams", str(hp), "--out", str(tmp_path / "run"),
                       "--no-progress-bar")
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == f"disagg-gym: error: {message}"
    assert not (tmp_path / "run" / "model.zip").exists()


def test_a_zip_not_saved_by_sb3_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # passed the zip check, then SB3's load asserted "No data found in the saved file"
    import zipfile

    pytest.importorskip("stable_baselines3")  # the [rl] extra
    model = tmp_path / "model.zip"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("a.txt", "hi")
    rc, out, err = run(capsys, "evaluate", "--policy", f"sb3:{model}", "--episodes", "1")
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == (f"disagg-gym: error: model file {str(model)!r} is not a model zip saved by SB3 "
                           "(it has no 'data' entry)")


def test_bounds_seeds_beyond_the_held_out_seeds_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # --seeds 1e9 built a list of a billion seeds first (MemoryError traceback)
    rc, out, err = run(capsys, "bounds", "--config", "small-route", "--seeds", "1000000000", "--out", str(tmp_path / "b.csv"))
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == ("disagg-gym: error: argument --seeds: at most 10000, the held-out seeds 10000..19999 "
                           "(20000+ are the validation seeds) (got 1000000000)")


def test_train_seed_beyond_32_bits_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # numpy's "Seed must be between 0 and 2**32 - 1" traceback once the envs were built
    pytest.importorskip("sb3_contrib")  # the [rl] extra
    rc, out, err = run(capsys, "train", "--seed", "4294967296", "--out", str(tmp_path / "run"))
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == "disagg-gym: error: seed must be at most 4294967295 (got 4294967296)"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "value"), [("--lr", "0.5"), ("--gamma", "0.1"), ("--num-env-runners", "7")])
def test_an_rllib_only_option_with_the_sb3_backend_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, value: str
) -> None:
    # they were ignored: the run trained with the hyperparameter file's values
    rc, out, err = run(capsys, "train", flag, value, "--out", str(tmp_path / "run"))
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip().startswith(f"disagg-gym: error: {flag} applies only to --backend rllib (got {flag} ")
    assert not (tmp_path / "run").exists()


def test_plain_train_options_pass_the_rllib_only_check() -> None:
    from disagg_gym.cli import build_parser
    from disagg_gym_agents.cli import _refuse_other_backend_options

    ns = build_parser().parse_args(["train", "--timesteps", "64", "--seed", "3", "--out", "x", "--threads", "1"])
    _refuse_other_backend_options(ns, "sb3")  # nothing raised
    _refuse_other_backend_options(ns, "rllib")


@pytest.mark.parametrize(("flag", "value"), [("--n-envs", "8"), ("--hyperparams", "/nonexistent.yml"), ("--algo", "ppo")])
def test_an_sb3_only_option_with_the_rllib_backend_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, value: str
) -> None:
    # the rllib backend ignored them (a nonexistent hyperparameter file included)
    rc, out, err = run(capsys, "train", "--backend", "rllib", flag, value, "--out", str(tmp_path / "run"))
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip().startswith(f"disagg-gym: error: {flag} applies only to --backend sb3 (got {flag} ")
    assert not (tmp_path / "run").exists()


def test_a_second_train_into_a_busy_run_folder_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # two `train --out X` at once both passed "already holds a run" and overwrote each other's files
    from disagg_gym.io import exclusive_lock

    pytest.importorskip("sb3_contrib")  # the [rl] extra
    out = tmp_path / "run"
    with exclusive_lock(out / ".train.lock", busy="held by the test"):  # the first train's hold
        rc, stdout, err = run(capsys, "train", "--out", str(out), "--no-progress-bar")
    assert rc == 2 and stdout == "" and "Traceback" not in err
    assert err.strip() == f"disagg-gym: error: --out {str(out)!r}: another train is writing to this run folder"
    assert sorted(p.name for p in out.iterdir()) == [".train.lock"]  # nothing of the second run


def _predict_ms(capsys: pytest.CaptureFixture[str], *flags: str) -> dict:
    rc, out, err = run(capsys, "predict", "--phase", "kv_transfer", "--bytes", "268435456", "--json", *flags)
    assert rc == 0, err
    return json.loads(out)


def test_predict_kv_transfer_uses_the_sending_gpu_and_tp(capsys: pytest.CaptureFixture[str]) -> None:
    # --gpu was ignored: an A100 got H100's NVLink. Oracle: the public per-direction specs
    # (NVLink H100 450 GB/s, A100 300 GB/s; PCIe H100 64 GB/s, L40S 32 GB/s) scale the moving
    # time (time minus the tier's fixed latency) inversely; tp GPU pairs divide it by tp.
    lat = {"nvlink": _predict_ms(capsys, "--link", "nvlink", "--bytes", "0")["ms"],
           "pcie": _predict_ms(capsys, "--link", "pcie", "--bytes", "0")["ms"]}
    base = _predict_ms(capsys, "--link", "nvlink")
    assert _predict_ms(capsys, "--link", "nvlink", "--gpu", "h100-sxm")["ms"] == base["ms"]  # the default
    h100 = base["ms"] - lat["nvlink"]
    a100 = _predict_ms(capsys, "--link", "nvlink", "--gpu", "a100-80gb")["ms"] - lat["nvlink"]
    assert a100 == pytest.approx(h100 * 450 / 300, rel=1e-12)
    a100_tp2 = _predict_ms(capsys, "--link", "nvlink", "--gpu", "a100-80gb", "--tp", "2")["ms"] - lat["nvlink"]
    assert a100_tp2 == pytest.approx(a100 / 2, rel=1e-12)
    # no NVLink on an L40S: PCIe, at its own PCIe bandwidth, and the answer says so
    l40s = _predict_ms(capsys, "--link", "nvlink", "--gpu", "l40s")
    pcie_h100 = _predict_ms(capsys, "--link", "pcie")["ms"] - lat["pcie"]
    assert l40s["tier"] == "pcie" and l40s["ms"] - lat["pcie"] == pytest.approx(pcie_h100 * 64 / 32, rel=1e-12)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--phase", "decode", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--batch", "4", "--length", "100",
          "--link", "nvlink"], "'link' applies only to phase kv_transfer (got phase decode)"),
        (["--phase", "prefill", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--batch", "4", "--length", "100",
          "--bytes", "10"], "'bytes' applies only to phase kv_transfer (got phase prefill)"),
        (["--phase", "kv_transfer", "--link", "nvlink", "--bytes", "10", "--length", "3"],
         "'length' does not apply to phase kv_transfer (it takes link, bytes, gpu, tp)"),
    ],
)
def test_predict_flags_of_another_phase_are_one_line(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    # they were silently ignored
    rc, out, err = run(capsys, "predict", *flags)
    assert rc == 2 and out == "" and err.strip() == f"disagg-gym: error: {message}"


# docs/calibration.md's plain-CSV example without its kv_transfer rows
PLAIN_TABLE = ("phase,batch,length,ms,gpu,model,tp\nprefill,1,512,16.2,h100-sxm,llama-3.1-8b,1\n"
               "prefill,4,512,58.1,h100-sxm,llama-3.1-8b,1\ndecode,8,1024,9.32,h100-sxm,llama-3.1-8b,1\n"
               "decode,8,2048,9.71,h100-sxm,llama-3.1-8b,1\n")


def test_predict_kv_transfer_from_a_table_without_transfer_rows_falls_back_to_the_tier(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # a table's --model is not an ignored flag: the table is for that model; without kv_transfer
    # rows the answer is the link tier's, as the GPU sees it
    table = tmp_path / "t.csv"
    table.write_text(PLAIN_TABLE)
    tier = _predict_ms(capsys, "--link", "pcie", "--gpu", "h100-sxm")
    from_table = _predict_ms(capsys, "--link", "pcie", "--gpu", "h100-sxm", "--model", "llama-3.1-8b",
                             "--cost-model", f"table:{table}")
    assert from_table["ms"] == tier["ms"]


def test_predict_kv_transfer_answers_from_table_rows_unless_a_link_is_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # --link was ignored when the table had kv_transfer rows, and the answer was labelled "over
    # rdma". Oracle: the rows (1 MiB at 0.036 ms, 16 MiB at 0.075 ms), linear in bytes between
    # them; with --link the tier answers, as the simulator's transfers do.
    table = tmp_path / "t.csv"
    table.write_text(PLAIN_TABLE + "kv_transfer,,1048576,0.036,h100-sxm,llama-3.1-8b,1\n"
                     "kv_transfer,,16777216,0.075,h100-sxm,llama-3.1-8b,1\n")
    rc, out, err = run(capsys, "predict", "--phase", "kv_transfer", "--bytes", "2097152", "--json", "--gpu",
                       "h100-sxm", "--model", "llama-3.1-8b", "--cost-model", f"table:{table}")
    assert rc == 0, err
    assert json.loads(out)["ms"] == pytest.approx(0.036 + 0.039 * (2097152 - 1048576) / (16777216 - 1048576))
    rc, out, err = run(capsys, "predict", "--phase", "kv_transfer", "--bytes", "2097152", "--json", "--gpu",
                       "h100-sxm", "--model", "llama-3.1-8b", "--cost-model", f"table:{table}", "--link", "rdma")
    assert rc == 0, err
    rc2, tier, err2 = run(capsys, "predict", "--phase", "kv_transfer", "--bytes", "2097152", "--json", "--gpu",
                          "h100-sxm", "--link", "rdma")
    assert json.loads(out)["ms"] == json.loads(tier)["ms"]


def test_simulate_a_looping_trace_without_a_horizon_asks_for_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # it spoke of "a horizon of 1.8e+308 s" (the replay-everything sentinel) the user never set
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 100, "output_length": 5}) + "\n"
                             for i in range(3)))
    rc, out, err = run(capsys, "simulate", "--trace", str(trace), "--set", "workload.loop=true")
    assert rc == 2 and out == "" and err.strip() == (
        "disagg-gym: error: loop: true replays forever: pass horizon_s (simulate --horizon SECONDS) or max_requests")


def test_predict_notes_a_batch_whose_kv_cache_cannot_fit(capsys: pytest.CaptureFixture[str]) -> None:
    # it answered 819,983 ms for 64 x 131,072 prompt tokens without saying that 1.1 TB of KV fits
    # on no H100. Oracle: (80 GiB - weights) / (2 x 32 layers x 8 KV heads x 128 x 2 bytes).
    from disagg_gym.hardware.model import load_model

    cap = (80 * 2**30 - load_model("llama-3.1-8b").weight_bytes) // (2 * 32 * 8 * 128 * 2)
    base = ["predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--phase", "prefill", "--json"]
    rc, out, _ = run(capsys, *base, "--batch", "64", "--length", "131072")
    assert rc == 0 and json.loads(out)["kv_capacity_tokens"] == cap
    rc, out, _ = run(capsys, *base, "--batch", "4", "--length", "1000")
    assert rc == 0 and "kv_capacity_tokens" not in json.loads(out)
    rc, out, _ = run(capsys, *base[:-1], "--batch", "64", "--length", "131072")
    assert out.splitlines()[1] == (f"note: this batch's KV cache (8,388,608 tokens) exceeds the {cap:,} tokens "
                                   "that fit beside the weights at tp 1: no instance runs it as one batch")


def test_an_interrupted_evaluate_keeps_the_finished_episodes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C after two episodes used to leave no CSV at all
    import disagg_gym_agents.cli as acli

    real = acli.evaluate

    def two_then_ctrl_c(policy, env, episodes, offset, deterministic=True, on_episode=None):  # noqa: ANN001, ANN202
        real(policy, env, 2, offset, deterministic=deterministic, on_episode=on_episode)
        raise KeyboardInterrupt

    monkeypatch.setattr(acli, "evaluate", two_then_ctrl_c)
    out = tmp_path / "ev.csv"
    rc, _, err = run(capsys, "evaluate", "--episodes", "5", "--overrides", "horizon_s=2", "--out", str(out))
    assert rc == 130 and "interrupted" in err
    rows = list(csv.DictReader(out.open()))
    assert [r["workload_seed"] for r in rows] == ["10000", "10001"] and rows[0]["policy"] == "heuristic:jsq"


@pytest.mark.parametrize("argv", [
    ["benchmark", "--configs", "small-route", "--agents", "jsq", "--episodes", "1", "--out", ""],
    ["evaluate", "--episodes", "1", "--out="],
    ["simulate", "--records", ""],
])
def test_an_empty_value_is_one_line_before_any_work(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    # `--out "$UNSET"` meant the current folder: a benchmark wrote its results.csv there and
    # replaced the repository's LEADERBOARD.md; evaluate silently wrote no CSV
    flag = next(a for a in argv if a.startswith("--out") or a == "--records").rstrip("=")
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.strip() == f"disagg-gym: error: argument {flag}: empty value (an unset shell variable?)"


def test_evaluate_tuned_takes_a_bare_heuristic_name_like_without_it() -> None:
    # `--policy jsq+ttft_guard --tuned FILE` said "'jsq+ttft_guard' is not a heuristic"
    from disagg_gym_agents.args import EvalArgs
    from disagg_gym_agents.cli import _tuned_params

    bare = _tuned_params(EvalArgs(env="disagg/SmallRoute-v3", policy="jsq+ttft_guard", tuned="leaderboard/tuned.yaml"))
    full = _tuned_params(EvalArgs(env="disagg/SmallRoute-v3", policy="heuristic:jsq+ttft_guard",
                                  tuned="leaderboard/tuned.yaml"))
    assert bare == full and bare  # the committed file tunes it on small-route


@pytest.mark.parametrize("argv", [
    ["evaluate", "--episodes", "1", "--overrides", "cluster.preemption=swapp"],
    ["benchmark", "--configs", "small-route", "--agents", "jsq", "--episodes", "1", "--set", "cluster.preemption=swapp"],
])
def test_an_override_error_names_the_shipped_config_and_the_overrides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    # outside simulate it named the installed YAML (site-packages/.../small-route.yaml) as if
    # the shipped file held the bad value
    if argv[0] == "benchmark":
        argv = [*argv, "--out", str(tmp_path / "b"), "--no-plots", "--no-progress"]
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert err.strip() == ("disagg-gym: error: config small-route with overrides: key 'cluster.preemption': "
                           "expected one of 'recompute', 'swap' (got 'swapp')")


def test_gym_make_names_the_shipped_config_and_its_keyword_overrides() -> None:
    import gymnasium as gym

    import disagg_gym  # noqa: F401

    with pytest.raises(ValueError, match=r"^config small-route with overrides: key 'horizon_s'"):
        gym.make("disagg/SmallRoute-v3", horizon_s=-1)


@pytest.mark.parametrize(("argv", "want"), [
    (["evaluate", "--episodes", "1", "--tuned", "{d}"], "--tuned '{d}': is a directory, expected a tuned YAML file"),
    (["train", "--hyperparams", "{d}", "--out", "{d}/run"],
     "--hyperparams '{d}': is a directory, expected a hyperparameter YAML file"),
])
def test_a_folder_given_as_a_file_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           argv: list[str], want: str) -> None:
    # they said "no tuned file" / "hyperparameter file not found" for an existing folder
    if argv[0] == "train":
        pytest.importorskip("sb3_contrib")
    rc, _, err = run(capsys, *(a.format(d=tmp_path) for a in argv))
    assert rc == 2 and err.strip() == "disagg-gym: error: " + want.format(d=tmp_path)


def test_the_empty_value_check_names_only_options_that_take_a_value() -> None:
    from disagg_gym.cli import build_parser, empty_value_option

    p = build_parser()
    assert empty_value_option(p, ["simulate", "--set=horizon_s="]) is None  # its value is 'horizon_s='
    assert empty_value_option(p, ["validate", "--no-manifest", ""]) is None  # a flag: '' is the results path
    assert empty_value_option(p, ["simulate", "--records="]) == "--records"
    assert empty_value_option(p, ["benchmark", "--out", "", "--configs", "small-route"]) == "--out"


def test_predict_queries_refuses_flags_it_would_ignore_and_an_empty_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text('{"phase": "decode", "gpu": "h100-sxm", "model": "llama-3.1-8b", "batch": 1, "length": 10}\n')
    rc, out, err = run(capsys, "predict", "--queries", str(q), "--phase", "prefill", "--gpu", "b200")
    assert rc == 2 and out == ""
    assert err.strip() == ("disagg-gym: error: --queries takes every field from its lines; drop --gpu, --phase "
                           "(only --cost-model applies to every line)")
    rc, out, _ = run(capsys, "predict", "--queries", str(q), "--cost-model", "roofline")
    assert rc == 0 and len(out.strip().splitlines()) == 1
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n")
    rc, out, err = run(capsys, "predict", "--queries", str(empty))
    assert rc == 2 and err.strip() == f"disagg-gym: error: {empty}: no queries (every line is empty)"


def test_two_outputs_at_one_path_are_refused_before_the_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the later output overwrote the earlier unseen (the records CSV became the trace's JSON)
    same = tmp_path / "same.out"
    rc, _, err = run(capsys, "simulate", "--horizon", "1", "--chrome-trace", str(same), "--records", str(same))
    assert rc == 2 and not same.exists()
    assert err.strip() == f"disagg-gym: error: --chrome-trace {str(same)!r} is the same file as --records: pick another path"
    rc, _, err = run(capsys, "simulate", "--horizon", "1", "--plots", str(tmp_path / "pl"),
                     "--chrome-trace", str(tmp_path / "pl" / ".." / "pl" / "timeline.png"))
    assert rc == 2 and "is the same file as --chrome-trace: pick another path" in err and "Traceback" not in err


def test_simulate_refuses_env_and_variant_options_an_env_would_refuse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # simulate ran such a config (rc 0); the same file failed only when an env was made from it
    base = ("horizon_s: 3\ncluster:\n  groups:\n    - {gpu: h100-sxm, count: 1, role: prefill}\n"
            "    - {gpu: h100-sxm, count: 1, role: decode}\nworkload: {rate_per_s: 5}\n")
    cases = {
        "env: {reward_mod: per_decision}\n": "key 'env.reward_mod': unknown key",
        "variants:\n  short: {env: {obs_mode: image}}\n":
            "key 'variants.short.env.obs_mode': expected one of 'box', 'dict', 'padded' (got 'image')",
        "variants:\n  short: {horizon_s: -1}\n": "key 'variants.short': key 'horizon_s'",
    }
    for i, (extra, message) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(base + extra)
        rc, out, err = run(capsys, "simulate", "--config", str(path), "--json")
        assert rc == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = run(capsys, "simulate", "--config", "small-route", "--set", "env.reward_mode=bogus",
                     "--horizon", "2")
    assert rc == 2 and "key 'env.reward_mode': expected one of" in err
    # the env's cross-field checks too (gym.make refused these; simulate ran them)
    for setting, message in [("env.fallback_router=foo", "small-route: key 'env.fallback_router': unknown router 'foo'"),
                             ("env.violation_at=ttft_deadline", "env.violation_at 'ttft_deadline' applies to reward_mode"),
                             ("env.max_instances=8", "env.max_instances applies to obs_mode: padded")]:
        rc, _, err = run(capsys, "simulate", "--config", "small-route", "--set", setting, "--horizon", "1")
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    # a variant's distribution node (warm_start_s) is fine: checked at its nominal value
    path = tmp_path / "ok.yaml"
    path.write_text(base + "variants:\n  short: {env: {warm_start_s: {dist: uniform, low: 1, high: 2}}}\n")
    assert run(capsys, "simulate", "--config", str(path), "--json")[0] == 0
