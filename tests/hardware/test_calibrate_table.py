"""scripts/calibrate.py --table: recovers known efficiencies from a synthetic table; roofline:FILE."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from disagg_gym.hardware import build_cost, default_params
from disagg_gym.hardware.cost import InstanceCost
from disagg_gym.hardware.gpu import get_gpu
from disagg_gym.hardware.model import load_model

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("calibrate_script", ROOT / "scripts" / "calibrate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["calibrate_script"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


# Ground truth: a GPU that reaches different efficiencies than the committed H100 fit.
TRUTH = replace(
    default_params(), compute_eff=0.45, attn_compute_eff=0.35, mem_eff=0.7,
    attn_parallel_units=80.0, smoothmax_exp=4.0, layer_overhead_s=6e-5,
)


def synthetic_table(path: Path) -> None:
    cost = InstanceCost(get_gpu("a100-80gb"), load_model("llama-2-13b"), 1, TRUTH)
    lines = ["phase,batch,length,ms"]
    for b in (1, 2, 4, 8):
        for n in (128, 512, 1024, 2048):
            lines.append(f"prefill,{b},{n},{cost.prefill_s([n] * b) * 1e3!r}")
    for b in (1, 2, 4, 8, 16, 32, 64, 128):
        for n in (128, 512, 1024, 2048):
            lines.append(f"decode,{b},{n},{cost.decode_s([n] * b) * 1e3!r}")
    path.write_text("\n".join(lines) + "\n")


def test_table_fit_recovers_known_efficiencies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("scipy")
    table, out = tmp_path / "a100.csv", tmp_path / "fit.json"
    synthetic_table(table)
    rc = load_script().main(
        ["--table", str(table), "--gpu", "a100-80gb", "--model", "llama-2-13b", "--out", str(out)]
    )
    assert rc == 0
    fitted = json.loads(out.read_text())["cost"]
    for key in ("compute_eff", "attn_compute_eff", "mem_eff", "layer_overhead_s"):
        assert fitted[key] == pytest.approx(getattr(TRUTH, key), rel=0.02), key
    captured = capsys.readouterr()
    assert "fitted to the table" in captured.out
    assert "warning" not in captured.err  # 32 rows pin the six parameters down
    # roofline:FILE uses the fitted efficiencies: predictions match the table's truth.
    cost = build_cost("a100-80gb", "llama-2-13b", 1, f"roofline:{out}")
    truth = InstanceCost(get_gpu("a100-80gb"), load_model("llama-2-13b"), 1, TRUTH)
    assert cost.prefill_s([700]) == pytest.approx(truth.prefill_s([700]), rel=0.01)
    assert cost.decode_s([900] * 24) == pytest.approx(truth.decode_s([900] * 24), rel=0.01)


def test_table_fit_warns_when_the_table_cannot_determine_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("scipy")
    table = tmp_path / "few.csv"
    synthetic_table(table)
    table.write_text("\n".join(table.read_text().splitlines()[:3] + table.read_text().splitlines()[-2:]) + "\n")
    rc = load_script().main(["--table", str(table), "--gpu", "a100-80gb", "--model", "llama-2-13b"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "calibrate: warning: 4 table rows for 6 fitted parameters: the fit is underdetermined" in err
    mod = load_script()
    at_bound = replace(default_params(), smoothmax_exp=mod.BOUNDS["smoothmax_exp"][1])
    assert mod.fit_warnings(40, at_bound) == [
        f"smoothmax_exp = {at_bound.smoothmax_exp:.6g} ended on its bound "
        f"({mod.BOUNDS['smoothmax_exp'][0]:g}..{mod.BOUNDS['smoothmax_exp'][1]:g}): the table does not determine it"
    ]


def test_table_mode_bad_table_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("phase,batch,ms\nprefill,1,3\n")
    rc = load_script().main(["--table", str(bad), "--gpu", "h100-sxm", "--model", "llama-3.1-8b"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"calibrate: {bad}: missing column 'length' (header has: phase, batch, ms)"


def test_roofline_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.json: calibration file not found"):
        build_cost("h100-sxm", "llama-3.1-8b", 1, f"roofline:{tmp_path / 'nope.json'}")
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"cost": {"mem_eff": 7}}))
    with pytest.raises(ValueError, match=r"c\.json: CalibParams: mem_eff must be in \(0, 1\.5\]"):
        build_cost("h100-sxm", "llama-3.1-8b", 1, f"roofline:{bad}")


def test_table_fit_checks_its_out_path_before_fitting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A path under a regular file cannot be written: one line before the fit (it was a
    # traceback after it), with or without scipy installed.
    table = tmp_path / "a100.csv"
    synthetic_table(table)
    rc = load_script().main(
        ["--table", str(table), "--gpu", "a100-80gb", "--model", "llama-2-13b", "--out", str(table / "fit.json")]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"calibrate: --out '{table / 'fit.json'}': '{table}' is a file, not a folder"]


def test_a_table_in_seconds_is_refused_before_the_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Times written in seconds under an ms header: every decode row is faster than reading the
    # weights once at the A100's peak bandwidth (26 GB / 2.04 TB/s = 12.8 ms), impossible. It
    # used to fit, with the parameters on their bounds and a 56,824 % median error.
    table = tmp_path / "a100.csv"
    synthetic_table(table)
    lines = table.read_text().splitlines()
    table.write_text("\n".join([lines[0]] + [",".join([*ln.split(",")[:3], repr(float(ln.split(",")[3]) / 1e3)])
                                             for ln in lines[1:]]) + "\n")
    rc = load_script().main(["--table", str(table), "--gpu", "a100-80gb", "--model", "llama-2-13b"])
    assert rc == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"calibrate: {table}: 32 decode row(s) faster than reading the weights once at a100-80gb's "
                           "peak HBM bandwidth allows (e.g. batch 1 at context 128: ")
    assert line.endswith("check the units (the table's times are milliseconds), that it is a100-80gb's table, "
                         "and the GPU's hbm_bw_tbps")
    # the A100's table given as an L40S's (0.864 TB/s): its decode is faster than the L40S can
    # read llama-2-13b's 26 GB once (the floor first left the MLPs out: 4x too low)
    synthetic_table(table)
    rc = load_script().main(["--table", str(table), "--gpu", "l40s", "--model", "llama-2-13b"])
    assert rc == 2 and "faster than reading the weights once at l40s's peak HBM bandwidth" in capsys.readouterr().err


def test_the_project_s_own_profiles_pass_the_bandwidth_floor() -> None:
    mod = load_script()
    for table, gpu, model, tp in (
        ("docs/data/h100_heldout_latency.jsonl", "h100-sxm", "llama-2-13b", 1),
        ("docs/data/tp/h200x2_tp2_llama-3.1-70b.jsonl", "h200", "llama-3.1-70b", 2),
        ("docs/data/tp/h200_tp1_llama-3.1-8b.jsonl", "h200", "llama-3.1-8b", 1),
    ):
        args = mod.parse_args(["--table", str(ROOT / table), "--gpu", gpu, "--model", model, "--tp", str(tp)])
        rows = mod.table_rows(args)
        assert rows and not mod.too_fast_rows(rows, args), table
