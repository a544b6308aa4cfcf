"""scripts/calibrate.py's tensor-parallel part: the all-reduce fit and the missing-data report."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from disagg_gym.hardware import build_instance_cost, default_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cal():
    spec = importlib.util.spec_from_file_location("calibrate_script", ROOT / "scripts" / "calibrate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["calibrate_script"] = mod
    spec.loader.exec_module(mod)
    return mod


TRUTH = dict(allreduce_latency_s=12e-6, allreduce_alpha_s=1.5e-6, allreduce_bw_eff=0.7)


def _synthetic_rows(degrees, compute_bias=1.05):
    """TP rows whose compute part is 5% off the model; matching one-rank shard rows carry it."""
    truth = replace(default_params(), **TRUTH)
    rows = []
    points = [("prefill", 1, n) for n in (128, 512, 2048, 8192)] + [
        ("decode", b, 1024) for b in (1, 8, 32, 128)
    ]
    for tp in degrees:
        cost = build_instance_cost("h200", "llama-3.1-8b", tp, truth)
        for kind, batch, length in points:
            if kind == "prefill":
                total, reduced = cost.prefill_s([length] * batch), batch * length
            else:
                total, reduced = cost.decode_s([length] * batch), batch
            ar = cost.allreduce_s(reduced)
            compute_ms = 1e3 * (total - ar) * compute_bias
            common = {"gpu": "NVIDIA H200", "model": "llama-3.1-8b", "kind": kind, "batch": batch,
                      "prompt_len" if kind == "prefill" else "context_len": length}
            rows.append(common | {"tp": tp, "collectives": True, "ms": compute_ms + 1e3 * ar,
                                  "file": "synthetic_tp.jsonl"})
            rows.append(common | {"tp": 1, "collectives": False, "shard_of_tp": tp, "ms": compute_ms,
                                  "file": "synthetic_shard.jsonl"})
    return rows


def test_fit_recovers_allreduce_terms_through_the_measured_shards(cal):
    pytest.importorskip("scipy")
    fitted, info = cal.fit_allreduce(_synthetic_rows((2, 4)), default_params())
    for key, value in TRUTH.items():
        assert getattr(fitted, key) == pytest.approx(value, rel=1e-4), key
    assert info["rows"] == 16 and info["rows_with_measured_shard"] == 16
    assert info["tp"] == [2, 4] and info["files"] == ["synthetic_tp.jsonl"]
    # Only the all-reduce terms move; the H100 efficiencies are held.
    base = default_params()
    for key in ("compute_eff", "attn_compute_eff", "mem_eff", "layer_overhead_s", "nvlink_eff"):
        assert getattr(fitted, key) == getattr(base, key)


def test_single_degree_holds_alpha(cal):
    pytest.importorskip("scipy")
    fitted, info = cal.fit_allreduce(_synthetic_rows((2,)), default_params())
    assert "allreduce_alpha_s" not in info["fitted"]
    assert fitted.allreduce_alpha_s == default_params().allreduce_alpha_s


def test_report_names_every_missing_grid(cal, capsys):
    cal.report_tp([], default_params())
    out = capsys.readouterr().out
    for item in ("llama-3.1-8b tp=2", "llama-3.1-8b tp=4", "llama-3.1-70b tp=2", "llama-3.1-70b tp=4",
                 "NCCL all-reduce sweep at tp=2", "NCCL all-reduce sweep at tp=4"):
        assert f"MISSING: {item}" in out
    assert "all-reduce terms NOT fitted" in out


def _committed():
    import json

    return json.loads((ROOT / "disagg_gym" / "hardware" / "calibration.json").read_text())


def test_committed_allreduce_fit_used_only_8b_multi_gpu_rows(cal):
    """The committed all-reduce terms name their data: llama-3.1-8b rows of real TP>1 runs only."""
    rows = cal.read_tp_rows(cal.TP_DIR)
    fit = _committed()["tp"]["allreduce_fit"]
    fit_files = {r["file"] for r in rows if r["kind"] != "allreduce" and cal.tp_class(r) == "tp"
                 and r["model"] == "llama-3.1-8b"}
    assert fit_files and set(fit["files"]) == fit_files
    assert fit["rows"] == sum(1 for r in rows if r["file"] in fit_files and r["kind"] != "allreduce")
    # The 70B-class TP runs exist and are checking data: no file of them is in the fit.
    assert any(r.get("model") == "llama-3.1-70b" and cal.tp_class(r) == "tp" for r in rows)
    assert not any("70b" in f for f in fit["files"])
    # The files the fit read are the ones committed (same bytes).
    files = _committed()["tp"]["files"]
    for name in fit["files"]:
        assert files[name] == cal.sha256(cal.TP_DIR / name)


def test_committed_allreduce_terms_reproduce(cal):
    """Refitting on the committed rows from the committed efficiencies gives the committed terms."""
    pytest.importorskip("scipy")
    from disagg_gym.hardware.cost import CalibParams

    committed = CalibParams.from_dict(_committed()["cost"])
    start = replace(committed, allreduce_latency_s=8e-6, allreduce_bw_eff=1.0)
    fitted, info = cal.fit_allreduce(cal.read_tp_rows(cal.TP_DIR), start)
    for key in info["fitted"]:
        assert getattr(fitted, key) == pytest.approx(getattr(committed, key), rel=1e-4), key
