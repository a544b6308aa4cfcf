"""Tests for measured-table cost models (disagg_gym.hardware.table_cost) and build_cost.

Oracles are hand-computed from tiny tables whose times are chosen for easy arithmetic, or read
straight from the measurement file; extrapolation is checked against the roofline it scales.
"""

from __future__ import annotations

import json
import warnings
from itertools import pairwise
from pathlib import Path

import pytest

from disagg_gym.cli import main
from disagg_gym.hardware import build_cost, build_instance_cost
from disagg_gym.hardware.table_cost import (
    TableCost,
    TableError,
    TableExtrapolationWarning,
    read_table,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PROFILE = SHARED / "data" / "profiles" / "h100_llama-3.1-8b_latency.jsonl"
needs_profile = pytest.mark.skipif(not PROFILE.is_file(), reason="../shared profiles not present")

# A plain-CSV table (times in ms) for llama-3.1-8b on h100-sxm:
#   prefill at 400 batch tokens: 4 x 100 -> 30 ms, 1 x 400 -> 36 ms; at 100 tokens: 1 x 100 -> 10 ms
#   decode batch 4: S = 4*100 = 400 -> 10 ms, S = 4*200 = 800 -> 14 ms
#   decode batch 8: S = 8*50 = 400 -> 20 ms, S = 8*100 = 800 -> 30 ms
PLAIN = """phase,batch,length,ms
prefill,4,100,30
prefill,1,400,36
prefill,1,100,10
decode,4,100,10
decode,4,200,14
decode,8,50,20
decode,8,100,30
"""


def table_cost(tmp_path: Path, text: str = PLAIN, name: str = "t.csv", model: str = "llama-3.1-8b",
               gpu: str = "h100-sxm", tp: int = 1) -> TableCost:
    p = tmp_path / name
    p.write_text(text)
    return build_cost(gpu, model, tp, f"table:{p}")


# ---- exact at grid points, linear between them --------------------------------------------
def test_plain_csv_exact_at_grid_points(tmp_path: Path) -> None:
    c = table_cost(tmp_path)
    assert c.prefill_s([100] * 4) == pytest.approx(0.030, rel=1e-12)
    assert c.prefill_s([400]) == pytest.approx(0.036, rel=1e-12)
    assert c.prefill_s([100]) == pytest.approx(0.010, rel=1e-12)
    assert c.decode_s([100] * 4) == pytest.approx(0.010, rel=1e-12)
    assert c.decode_s([200] * 4) == pytest.approx(0.014, rel=1e-12)
    assert c.decode_s([50] * 8) == pytest.approx(0.020, rel=1e-12)
    assert c.decode_s([100] * 8) == pytest.approx(0.030, rel=1e-12)


def test_plain_csv_interpolates_by_hand(tmp_path: Path) -> None:
    c = table_cost(tmp_path)
    # Decode batch 4, S = 600: halfway between 10 and 14 ms.
    assert c.decode_s([150] * 4) == pytest.approx(0.012, rel=1e-12)
    # Unequal contexts: only the total matters (S = 100 + 500 + 0 + 0... = 600).
    assert c.decode_s([100, 500, 0, 0]) == pytest.approx(0.012, rel=1e-12)
    # Batch 6, S = 400: halfway between batch 4 (10 ms) and batch 8 (20 ms).
    assert c.decode_s([400 / 6] * 6) == pytest.approx(0.015, rel=1e-12)
    # Batch 5, S = 400: a quarter of the way from batch 4 to batch 8 -> 12.5 ms.
    assert c.decode_s([80] * 5) == pytest.approx(0.0125, rel=1e-12)
    # Prefill [300, 100]: T = 400, l_eff = (300^2 + 100^2) / 400 = 250 -> 30 + 6 * 150/300 = 33 ms.
    assert c.prefill_s([300, 100]) == pytest.approx(0.033, rel=1e-12)
    # Cached context: [200 over 75 cached, 200 fresh]: work = 200*350 + 200*200 = 110000,
    # l_eff = 275 -> 30 + 6 * 175/300 = 33.5 ms.
    assert c.prefill_s([200, 200], [75, 0]) == pytest.approx(0.0335, rel=1e-12)
    # Between the 100- and 400-batch-token curves at l_eff = 100: [100, 100, 50 over 25 cached]
    # has T = 250 and work 100*100 + 100*100 + 50*100 = 25000 -> l_eff = 100;
    # 10 ms + (30 - 10) ms * (250 - 100) / 300 = 20 ms.
    assert c.prefill_s([100, 100, 50], [0, 0, 25]) == pytest.approx(0.020, rel=1e-12)
    # [100, 50 over 25, 25 over 37.5]: T = 175, work 17500 -> l_eff = 100; a quarter of the way
    # from T = 100 to T = 400 -> 15 ms.
    assert c.prefill_s([100, 50, 25], [0, 25, 37.5]) == pytest.approx(0.015, rel=1e-12)


def test_decode_coeffs_local_segment(tmp_path: Path) -> None:
    c = table_cost(tmp_path)
    # Batch 4 between S = 400 and 800: slope (14 - 10) ms / 400 = 1e-5 s per token,
    # intercept 10 ms - 400 * 1e-5 = 6 ms.
    a, b = c.decode_coeffs(4, 600)
    assert a == pytest.approx(0.006, rel=1e-12)
    assert b == pytest.approx(1e-5, rel=1e-12)
    # Batch 8: slope 10 ms / 400 = 2.5e-5, intercept 20 - 10 = 10 ms.
    a, b = c.decode_coeffs(8, 400)
    assert (a, b) == (pytest.approx(0.010, rel=1e-12), pytest.approx(2.5e-5, rel=1e-12))


@needs_profile
def test_profile_jsonl_exact_at_every_grid_point() -> None:
    c = build_cost("h100-sxm", "llama-3.1-8b", 1, f"table:{PROFILE}")
    rows = [json.loads(x) for x in PROFILE.read_text().splitlines() if x.strip()]
    n = 0
    for r in rows:
        if r["kind"] == "prefill":
            assert c.prefill_s([r["prompt_len"]] * r["batch"]) == pytest.approx(r["ms"] * 1e-3, rel=1e-12)
            n += 1
        elif r["kind"] == "decode":
            assert c.decode_s([r["context_len"]] * r["batch"]) == pytest.approx(r["ms"] * 1e-3, rel=1e-12)
            a, b = c.decode_coeffs(r["batch"], r["batch"] * r["context_len"])
            assert a + b * r["batch"] * r["context_len"] == pytest.approx(r["ms"] * 1e-3, rel=1e-12)
            n += 1
    assert n == 70


@needs_profile
@pytest.mark.parametrize("batch", [1, 8, 32])
def test_profile_decode_monotone_between_grid_points(batch: int) -> None:
    c = build_cost("h100-sxm", "llama-3.1-8b", 1, f"table:{PROFILE}")
    rows = sorted(
        (r["context_len"], r["ms"] * 1e-3)
        for r in map(json.loads, PROFILE.read_text().splitlines())
        if r["kind"] == "decode" and r["batch"] == batch
    )
    for (l0, t0), (l1, t1) in pairwise(rows):
        vals = [c.decode_s([l0 + (l1 - l0) * k / 20] * batch) for k in range(21)]
        assert vals[0] == pytest.approx(t0) and vals[-1] == pytest.approx(t1)
        step = 1 if t1 >= t0 else -1
        assert all(step * (v1 - v0) >= -1e-15 for v0, v1 in pairwise(vals))
        assert all(min(t0, t1) - 1e-15 <= v <= max(t0, t1) + 1e-15 for v in vals)


@needs_profile
def test_profile_prefill_monotone_between_grid_points() -> None:
    c = build_cost("h100-sxm", "llama-3.1-8b", 1, f"table:{PROFILE}")
    lens = sorted(
        r["prompt_len"] for r in map(json.loads, PROFILE.read_text().splitlines())
        if r["kind"] == "prefill" and r["batch"] == 1
    )
    for l0, l1 in pairwise(lens):
        vals = [c.prefill_s([l0 + (l1 - l0) * k / 16]) for k in range(17)]
        assert all(v1 >= v0 for v0, v1 in pairwise(vals))


# ---- extrapolation --------------------------------------------------------------------------
def test_extrapolation_scales_edge_by_roofline_and_warns_once(tmp_path: Path) -> None:
    c = table_cost(tmp_path)
    roof = build_instance_cost("h100-sxm", "llama-3.1-8b", 1)
    ra, rb = roof.decode_coeffs(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Batch 4 at S = 1600, beyond the last point (800 -> 14 ms).
        got = c.decode_s([400] * 4)
        c.decode_s([500] * 4)
    assert got == pytest.approx(0.014 * (ra + rb * 1600) / (ra + rb * 800), rel=1e-12)
    hits = [w for w in caught if issubclass(w.category, TableExtrapolationWarning)]
    assert len(hits) == 1 and "t.csv" in str(hits[0].message) and "roofline" in str(hits[0].message)
    # The local segment beyond the grid is the roofline's segment scaled by the same factor.
    a, b = c.decode_coeffs(4, 1600)
    scale = 0.014 / (ra + rb * 800)
    assert (a, b) == (pytest.approx(ra * scale, rel=1e-9), pytest.approx(rb * scale, rel=1e-9))
    # Batch 16 beyond the largest tabulated batch (8) at S = 800 (30 ms there).
    ra8, rb8 = roof.decode_coeffs(8)
    ra16, rb16 = roof.decode_coeffs(16)
    assert c.decode_s([50] * 16) == pytest.approx(
        0.030 * (ra16 + rb16 * 800) / (ra8 + rb8 * 800), rel=1e-12
    )


def test_inside_grid_does_not_warn(tmp_path: Path) -> None:
    c = table_cost(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.decode_s([150] * 4)
        c.prefill_s([300, 100])


# ---- readers ---------------------------------------------------------------------------------
SPLITWISE = """model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,prompt_time,token_time,e2e_time,tensor_parallel
llama2-70b,h100-80gb,512,1,101,1,1,50.0,30.0,0,8
llama2-70b,h100-80gb,512,1,101,1,1,52.0,31.0,0,8
llama2-70b,h100-80gb,512,1,101,1,1,60.0,35.0,0,8
llama2-70b,h100-80gb,512,2,101,1,1,80.0,32.0,0,8
llama2-70b,h100-80gb,1024,1,201,1,1,85.0,33.0,0,8
llama2-70b,h100-80gb,512,1,101,1,1,99.0,99.0,0,4
llama2-70b,a100-80gb,512,1,101,1,1,99.0,99.0,0,8
"""


def test_splitwise_reader_medians_aliases_and_context(tmp_path: Path) -> None:
    c = table_cost(tmp_path, SPLITWISE, "perf_model.csv", model="llama-2-70b", tp=8)
    assert read_table(tmp_path / "perf_model.csv").format == "splitwise_csv"
    # Three repeats of (512, 1): median 52 ms prefill, 31 ms per token; the tp4 / a100 rows are ignored.
    assert c.prefill_s([512]) == pytest.approx(0.052, rel=1e-12)
    assert c.prefill_s([512, 512]) == pytest.approx(0.080, rel=1e-12)
    # token_time averages contexts 512 .. 512+100: per-sequence context 512 + 50 = 562.
    assert c.decode_s([562]) == pytest.approx(0.031, rel=1e-12)
    assert c.decode_s([1024 + 100]) == pytest.approx(0.033, rel=1e-12)
    assert c.decode_s([562, 562]) == pytest.approx(0.032, rel=1e-12)


@needs_profile
def test_profile_reader_ignores_model_records() -> None:
    t = read_table(PROFILE)
    assert t.format == "profile_jsonl"
    assert {r.phase for r in t.rows} == {"prefill", "decode"} and len(t.rows) == 70
    assert {r.tp for r in t.rows} == {1}


# ---- bad tables: one clear line naming the file and the problem ------------------------------
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("phase,batch,ms\nprefill,1,5\n", "missing column 'length'"),
        ("model,hardware,prompt_size,batch_size,prompt_time,token_time\nx,y,1,1,1,1\n",
         "missing columns 'tensor_parallel', 'token_size'"),
        (PLAIN.replace("decode,4,200,14", "decode,4,200,-14"), "decode time must be positive (got -14 ms)"),
        (PLAIN.replace("decode,4,200,14", "decode,4,200,8"),
         "decode time is not monotone: it falls from 10 ms to 8 ms between context tokens 400 and 800 at batch 4"),
        (PLAIN.replace("prefill,4,100,30", "prefill,4,100,5"),
         "prefill time is not monotone: it falls from 10 ms to 5 ms between batch tokens 100 and 400 at prompt length 100"),
        ("phase,batch,length,ms\nprefill,1,100,5\nprefill,1,200,9\ndecode,1,100,5\n",
         "too few decode points: need at least 2"),
        ("phase,batch,length,ms\nprefill,1,100,5\nprefill,1,200,abc\n", "line 3: column 'ms' is not a number"),
        ("phase,batch,length,ms\nwarmup,1,100,5\n", "phase must be one of prefill, decode, kv_transfer"),
        ("a;b;c\n1;2;3\n", "unrecognised table format"),
        ("", "empty table"),
        ('{"kind": "decoding", "batch": 1, "context_len": 100, "ms": 5}\n',
         "line 1: unknown kind 'decoding' (expected prefill or decode, or one of the records skipped: "
         "model, setup, env, copy, paged, allreduce)"),
        ("phase,batch,length,ms,tp\nprefill,1,100,5,0\n", "line 2: column 'tp' must be >= 1 (got '0')"),
        (PLAIN + "kv_transfer,1,1000,0.5\nkv_transfer,1,2000,-0.3\n", "line 10: kv_transfer time must be positive"),
        ("phase,batch,length,ms,model\nprefill,1,100,5,opt-13b\nprefill,1,200,9,opt-13b\n",
         "no rows for h100-sxm/llama-3.1-8b/tp1 (table has: */opt-13b/tp*)"),
    ],
)
def test_bad_tables_one_line(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(TableError) as info:
        table_cost(tmp_path, text, "bad.csv")
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "bad.csv") + ": ")
    assert problem in msg and "\n" not in msg


def test_missing_table_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"nope\.csv: table file not found$"):
        build_cost("h100-sxm", "llama-3.1-8b", 1, f"table:{tmp_path / 'nope.csv'}")


def test_unknown_cost_model() -> None:
    with pytest.raises(ValueError, match="unknown cost model 'tabel:x'; expected roofline or table"):
        build_cost("h100-sxm", "llama-3.1-8b", 1, "tabel:x")


def test_roofline_is_default_and_unchanged() -> None:
    a = build_cost("h100-sxm", "llama-3.1-8b", 2)
    b = build_instance_cost("h100-sxm", "llama-3.1-8b", 2)
    assert a.prefill_s([777]) == b.prefill_s([777])
    assert a.decode_coeffs(8, 12345) == b.decode_coeffs(8)


def test_roofline_cached_context_adds_attention() -> None:
    r = build_instance_cost("h100-sxm", "llama-3.1-8b", 1)
    assert r.prefill_s([512], [0]) == r.prefill_s([512])
    # A chunk over cached context costs more than the chunk alone, less than the whole prompt
    # (which also redoes the cached tokens' GEMMs).
    assert r.prefill_s([512]) < r.prefill_s([512], [4096]) < r.prefill_s([4608])


# ---- config and CLI ---------------------------------------------------------------------------
def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_predict_with_each_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(PLAIN)
    rc, out, _ = run(capsys, "predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--phase", "decode",
                     "--batch", "4", "--length", "150", "--cost-model", f"table:{tmp_path / 't.csv'}", "--json")
    assert rc == 0 and json.loads(out)["ms"] == pytest.approx(12.0)
    (tmp_path / "perf_model.csv").write_text(SPLITWISE)
    rc, out, _ = run(capsys, "predict", "--gpu", "h100-sxm", "--model", "llama-2-70b", "--tp", "8", "--phase",
                     "prefill", "--batch", "2", "--length", "512", "--cost-model",
                     f"table:{tmp_path / 'perf_model.csv'}", "--json")
    assert rc == 0 and json.loads(out)["ms"] == pytest.approx(80.0)
    if PROFILE.is_file():
        rc, out, _ = run(capsys, "predict", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--phase", "decode",
                         "--batch", "16", "--length", "2048", "--cost-model", f"table:{PROFILE}", "--json")
        ms = next(r["ms"] for r in map(json.loads, PROFILE.read_text().splitlines())
                  if r["kind"] == "decode" and r["batch"] == 16 and r["context_len"] == 2048)
        assert rc == 0 and json.loads(out)["ms"] == pytest.approx(ms)


def test_predict_queries_take_the_flag_unless_they_say_otherwise(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(PLAIN)
    q = tmp_path / "q.jsonl"
    q.write_text(
        '{"gpu": "h100-sxm", "model": "llama-3.1-8b", "phase": "decode", "batch": 4, "length": 150}\n'
        '{"gpu": "h100-sxm", "model": "llama-3.1-8b", "phase": "decode", "batch": 4, "length": 150, '
        '"cost_model": "roofline"}\n'
    )
    rc, out, _ = run(capsys, "predict", "--queries", str(q), "--cost-model", f"table:{tmp_path / 't.csv'}")
    table_ms, roof_ms = (json.loads(x)["ms"] for x in out.splitlines())
    roof = build_instance_cost("h100-sxm", "llama-3.1-8b", 1)
    assert rc == 0 and table_ms == pytest.approx(12.0)
    assert roof_ms == pytest.approx(roof.decode_s([150] * 4) * 1e3)


def test_simulate_with_table_and_bad_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(PLAIN)
    rc, out, err = run(capsys, "simulate", "--json", "--horizon", "5", "--cost-model", f"table:{tmp_path / 't.csv'}")
    assert rc == 0, err
    with_table = json.loads(out)
    rc, out, _ = run(capsys, "simulate", "--json", "--horizon", "5")
    assert rc == 0 and json.loads(out)["tpot_p50_s"] != with_table["tpot_p50_s"]
    (tmp_path / "bad.csv").write_text("phase,batch,ms\n")
    rc, _, err = run(capsys, "simulate", "--horizon", "5", "--cost-model", f"table:{tmp_path / 'bad.csv'}")
    assert rc == 2
    assert err.strip().splitlines()[-1] == (
        f"disagg-gym: error: --cost-model: key 'groups[0].cost_model': {tmp_path / 'bad.csv'}: "
        "missing column 'length' (header has: phase, batch, ms)"
    )


def test_config_cost_model_key(tmp_path: Path) -> None:
    from disagg_gym.config import ConfigError
    from disagg_gym.scenario import load_scenario

    (tmp_path / "t.csv").write_text(PLAIN)
    scen = load_scenario("small-route", {"cluster.groups": [
        {"gpu": "h100-sxm", "count": 1, "role": "prefill", "cost_model": f"table:{tmp_path / 't.csv'}"},
        {"gpu": "h100-sxm", "count": 1, "role": "decode"},
    ]})
    assert scen.cluster.groups[0].cost_model.startswith("table:")
    assert scen.cluster.groups[1].cost_model == "roofline"
    with pytest.raises(ConfigError, match=r"groups\[1\]\.cost_model.*unknown cost model 'magic'"):
        load_scenario("small-route", {"cluster.groups": [
            {"gpu": "h100-sxm", "count": 1, "role": "prefill"},
            {"gpu": "h100-sxm", "count": 1, "role": "decode", "cost_model": "magic"},
        ]})


def test_decode_follows_every_segment_of_a_measured_curve(tmp_path: Path) -> None:
    # One request decoding 8,000 tokens alone on a table whose batch-1 curve bends at
    # 512 / 1,024 / 2,048 / 4,096 tokens: its decode time is the sum, over its iterations
    # (context 129, 130, ...), of the table interpolated at that context -- np.interp of the
    # table's own points. The closed-form batch used to keep the first segment's slope for the
    # whole run (2.6x too fast here).
    import numpy as np

    from disagg_gym.scenario import load_scenario
    from disagg_gym.simulation import Simulation

    xs, ms = [128, 512, 1024, 2048, 4096, 8192], [5.0, 5.05, 5.1, 8.0, 14.0, 26.0]
    rows = "".join(f"decode,1,{x},{t}\n" for x, t in zip(xs, ms))
    (tmp_path / "t.csv").write_text(
        "phase,batch,length,ms\nprefill,1,128,5\nprefill,1,1024,20\nprefill,4,1024,60\n"
        + rows + "decode,4,128,6\ndecode,4,8192,40\n"
    )
    (tmp_path / "trace.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,128,8001\n")
    table = f"table:{tmp_path / 't.csv'}"
    scen = load_scenario("small-route", {
        "horizon_s": 10,
        "cluster.groups": [
            {"gpu": "h100-sxm", "count": 1, "role": "prefill", "cost_model": table},
            {"gpu": "h100-sxm", "count": 1, "role": "decode", "cost_model": table},
        ],
        "workload": {"kind": "trace", "trace_path": str(tmp_path / "trace.csv")},
    })
    sim = Simulation(scen, keep_records=True)
    sim.run()
    (rec,) = list(sim.recorder.iter_records())
    expected_s = float(np.interp(np.arange(129, 129 + 8000), xs, ms).sum()) / 1e3  # 114.0356 s
    assert rec["completion_s"] - rec["decode_start_s"] == pytest.approx(expected_s, rel=1e-12)
