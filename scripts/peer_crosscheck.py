"""Cross-check disagg-gym against splitwise-sim on the same trace, cluster and latency table.

Runs splitwise-sim (a checkout you provide, run with its own interpreter) and disagg-gym on the
Azure LLM conversation trace with Llama-2-70B on H100, TP8, 2 prefill + 2 decode instances,
round-robin routing, and prints their KPIs side by side. disagg-gym runs with splitwise-sim's
``data/perf_model.csv`` as its cost model in two readings:

* ``table``: ``--cost-model table:perf_model.csv`` as any user would run it (prefill by batch
  tokens and prompt length, decode by batch size and total context tokens; see
  ``docs/calibration.md``);
* ``table (sws lookup)``: the same file re-expressed as a plain CSV of exactly the function
  splitwise-sim's ``DatabasePerformanceModel`` evaluates (prefill time linear in the batch's
  prompt tokens; per-token decode time as ``interp1d`` over ``prompt_size*batch_size`` queried with
  the number of sequences), so that only the simulators' queueing machinery differs;

once more with splitwise-sim's lookup and its KV-transfer sizing (MHA-sized KV over a
200 GB/s link), and once with its default ``roofline`` for reference. Both simulators' KPIs are computed here
from their per-request outputs with splitwise-sim's definitions: TTFT = end of prefill -
arrival (the prompt phase produces the first token), TBT = (response time - TTFT) / output
tokens, E2E = response time.

usage (splitwise-sim needs its own requirements: hydra-core 1.3, pandas, scipy, networkx):
    python scripts/peer_crosscheck.py --splitwise ~/splitwise-sim --splitwise-python ~/sws-venv/bin/python
    python scripts/peer_crosscheck.py --splitwise ~/splitwise-sim --reuse   # skip re-running splitwise-sim
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from disagg_gym.scenario import load_scenario
from disagg_gym.simulation import Simulation

# splitwise-sim's top-level config without its Ray launcher (the checkout stays untouched).
SWS_CONFIG = """defaults:
  - cluster: dgx-h100
  - router: noop
  - arbiter: noop
  - hardware_repo: default
  - model_repo: default
  - orchestrator_repo: default
  - performance_model: db
  - power_model: constant
  - applications: solo
  - trace: test_trace
  - start_state: splitwise
  - _self_
end_time: 86400
debug: False
seed: 0
choices: ${hydra:runtime.choices}
output_dir: OUT
hydra:
  run:
    dir: ${output_dir}
  job:
    chdir: True
"""
SWS_OVERRIDES = (
    "applications.0.scheduler=kv_round_robin",
    "applications.0.model_architecture=llama2-70b",
    "applications.0.model_size=llama2-70b-fp16",
    "cluster.servers.1.count=4",
    "start_state.prompt.num_instances=2",
    "start_state.token.num_instances=2",
    "start_state.token.instance_names=[dgx-h100]",
)
# The same cluster in disagg-gym: one TP8 instance per 8-GPU node, splitwise-sim's batch limits
# (max_batch_size 512, max_batch_tokens 2048 for prompts).
SWS_MODEL, SWS_GPU, TP = "llama2-70b", "h100-80gb", 8


@dataclass(frozen=True, slots=True)
class Args:
    """Command-line arguments."""

    splitwise: Path
    """A checkout of github.com/Mutinifni/splitwise-sim."""
    splitwise_python: str
    """Interpreter with splitwise-sim's requirements installed."""
    trace: Path
    """Azure LLM inference conversation trace (TIMESTAMP, ContextTokens, GeneratedTokens)."""
    work: Path
    """Folder for the converted trace, splitwise-sim's outputs and the derived table."""
    reuse: bool
    """Reuse splitwise-sim's outputs in ``work`` instead of running it again."""


def parse_args(argv: list[str] | None = None) -> Args:
    """Parses the command line into :class:`Args`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splitwise", type=Path, required=True)
    p.add_argument("--splitwise-python", default=sys.executable)
    p.add_argument(
        "--trace",
        type=Path,
        default=REPO.parent / "shared" / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv",
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/disagg_gym_crosscheck"))
    p.add_argument("--reuse", action="store_true")
    ns = p.parse_args(argv)
    return Args(ns.splitwise.resolve(), ns.splitwise_python, ns.trace.resolve(), ns.work.resolve(), ns.reuse)


# ---- splitwise-sim --------------------------------------------------------------------------
def convert_trace(src: Path, dst: Path) -> int:
    """Azure CSV -> splitwise-sim trace CSV (arrivals relative to the first, shifted by 1 s).

    The 1 s shift lets splitwise-sim's instances finish their pre-started spin-up at t=0 before
    the first arrival (a request at exactly t=0 finds no instance); it shifts every timestamp
    equally and changes no latency.
    """
    from datetime import datetime

    rows = []
    with src.open() as fh:
        for rec in csv.DictReader(fh):
            ts = datetime.fromisoformat(rec["TIMESTAMP"].strip()[:26])
            rows.append((ts, int(rec["ContextTokens"]), int(rec["GeneratedTokens"])))
    t0 = rows[0][0]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["request_id", "request_type", "application_id", "arrival_timestamp",
                    "batch_size", "prompt_size", "token_size"])
        for i, (ts, p, o) in enumerate(rows):
            w.writerow([i, 2, 0, repr((ts - t0).total_seconds() + 1.0), 1, p, o])
    return len(rows)


def run_splitwise(args: Args) -> Path:
    """Runs splitwise-sim; returns its per-request CSV."""
    out = args.work / "sws_out"
    detailed = out / "detailed" / "0.csv"
    if args.reuse and detailed.is_file():
        return detailed
    n = convert_trace(args.trace, args.work / "traces" / "azure_conv.csv")
    cfg_dir = args.work / "sws_cfg"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "crosscheck.yaml").write_text(SWS_CONFIG.replace("OUT", str(out)))
    cmd = [
        args.splitwise_python, "run.py", "--config-dir", str(cfg_dir), "--config-name", "crosscheck",
        *SWS_OVERRIDES, f"trace.dir={args.work / 'traces'}", "trace.filename=azure_conv",
    ]
    print(f"splitwise-sim: {n} requests; running {' '.join(cmd)}", file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=args.splitwise, check=True)
    print(f"splitwise-sim finished in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return detailed


def splitwise_records(path: Path) -> dict[str, np.ndarray]:
    """Per-request arrays from splitwise-sim's ``detailed/0.csv`` and ``request_nodes.csv``."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    xfer: dict[float, float] = {}
    with (path.parent.parent / "request_nodes.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["node_type"] == "KVCacheTransfer":
                xfer[float(r["request_id"])] = float(r["completion_timestamp"]) - float(r["start_timestamp"])
    arrival: dict[float, float] = {}
    with (path.parent.parent.parent / "traces" / "azure_conv.csv").open() as fh:
        for r in csv.DictReader(fh):
            arrival[float(r["request_id"])] = float(r["arrival_timestamp"])
    return {
        "arrival": np.array([arrival[float(r["request_ids"])] for r in rows]),
        "ttft": np.array([float(r["ttft_times"]) for r in rows]),
        "e2e": np.array([float(r["response_times"]) for r in rows]),
        "out": np.array([float(r["token_sizes"]) for r in rows]),
        "xfer": np.array([xfer[float(r["request_ids"])] for r in rows]),
    }


# ---- splitwise-sim's effective lookup as a plain CSV ------------------------------------------
def _interp_extrapolate(xs: list[float], ys: list[float], x: float) -> float:
    """scipy ``interp1d(xs, ys, fill_value="extrapolate")`` (linear, end segments extended)."""
    i = min(max(int(np.searchsorted(xs, x)), 1), len(xs) - 1)
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - xs[i - 1]) / (xs[i] - xs[i - 1])


def sws_lookup_table(perf_model: Path, dst: Path, max_tokens: int) -> None:
    """Writes the function splitwise-sim evaluates for this instance as a plain CSV.

    splitwise-sim groups the rows of one (model, hardware, tp) by ``batch_tokens =
    prompt_size*batch_size``, takes the median prompt_time and token_time per group, and
    interpolates both linearly in ``batch_tokens``; a prompt-only iteration is looked up at its
    prompt tokens, a token-only iteration at its number of sequences.
    """
    groups: dict[float, tuple[list[float], list[float]]] = {}
    with perf_model.open() as fh:
        for r in csv.DictReader(fh):
            if r["model"] != SWS_MODEL or r["hardware"] != SWS_GPU or int(r["tensor_parallel"]) != TP:
                continue
            key = float(r["prompt_size"]) * float(r["batch_size"])
            groups.setdefault(key, ([], []))
            groups[key][0].append(float(r["prompt_time"]))
            groups[key][1].append(float(r["token_time"]))
    xs = sorted(groups)
    prompt = [float(np.median(groups[x][0])) for x in xs]
    token = [float(np.median(groups[x][1])) for x in xs]
    lines = ["phase,batch,length,ms"]
    # Prefill: flat in prompt length along each batch-token count T (one prompt of T tokens and
    # T prompts of one token), for every integer T up to the longest prompt (so every batch lies
    # on a tabulated count and no query leaves a curve), with splitwise-sim's linear
    # extrapolation below its smallest count.
    grid = sorted({*map(float, range(1, max_tokens + 1)), *xs})
    for t in grid:
        ms = _interp_extrapolate(xs, prompt, t)
        lines.append(f"prefill,1,{t:g},{ms!r}")
        if t > 1:
            lines.append(f"prefill,{int(t)},1,{ms!r}")
    # Decode: per-iteration time for B sequences, flat in context (splitwise-sim ignores it).
    for b in sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512}):
        ms = _interp_extrapolate(xs, token, float(b))
        lines.append(f"decode,{b},1,{ms!r}")
        lines.append(f"decode,{b},1000000,{ms!r}")
    dst.write_text("\n".join(lines) + "\n")


# ---- disagg-gym ------------------------------------------------------------------------------
# splitwise-sim sizes KV as 2 * hidden * layers * dtype per token (all 64 heads: 2.6 MB for
# Llama-2-70B, 8x its grouped-query KV) and ships it over a 200 GiB/s link; the nearest
# disagg-gym setting is that MHA shape over InfiniBand HDR (25 GB/s per GPU x 8 = 200 GB/s).
SWS_KV_MODEL = """name: llama-2-70b
num_hidden_layers: 80
hidden_size: 8192
num_attention_heads: 64
num_key_value_heads: 64
intermediate_size: 28672
vocab_size: 32000
"""


def run_ours(
    trace: Path, cost_model: str, model: str = "llama-2-70b", inter_node: str = "rdma"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Runs disagg-gym on the cross-check cluster; per-request arrays and the summary."""
    group = {"gpu": "h100-sxm", "count": 2, "tp": TP, "max_batch": 512, "cost_model": cost_model}
    scen = load_scenario(
        "small-route",
        {
            "name": "splitwise-crosscheck",
            "horizon_s": 1e7,
            "router": "round_robin",
            "cluster.model": model,
            "cluster.topology.inter_node": inter_node,
            "cluster.groups": [
                {**group, "role": "prefill", "prefill_token_budget": 2048},
                {**group, "role": "decode"},
            ],
            "workload.kind": "trace",
            "workload.trace_path": str(trace),
        },
    )
    sim = Simulation(scen, keep_records=True)
    summary = sim.run()
    from disagg_gym.metrics.recorder import RECORD_FIELDS

    idx = {k: i for i, k in enumerate(RECORD_FIELDS)}
    done = [r for r in sim.recorder.records if r[idx["completion_s"]] is not None]
    arrays = {
        "arrival": np.array([r[idx["arrival_s"]] for r in done]),
        "ttft": np.array([r[idx["first_token_s"]] - r[idx["arrival_s"]] for r in done]),
        "e2e": np.array([r[idx["completion_s"]] - r[idx["arrival_s"]] for r in done]),
        "out": np.array([float(r[idx["output_tokens"]]) for r in done]),
        "xfer": np.array([(r[idx["transfer_end_s"]] or 0.0) - (r[idx["transfer_start_s"]] or 0.0) for r in done]),
    }
    return arrays, summary


def kpis(rec: dict[str, np.ndarray]) -> dict[str, float]:
    """KPIs with splitwise-sim's definitions (seconds; throughput over each run's makespan)."""
    tbt = (rec["e2e"] - rec["ttft"]) / rec["out"]
    tbt_nx = (rec["e2e"] - rec["ttft"] - rec["xfer"]) / rec["out"]
    out: dict[str, float] = {"completed": float(rec["e2e"].size)}
    for name, arr in (
        ("TTFT", rec["ttft"]), ("TBT", tbt), ("TBT excl. KV transfer", tbt_nx), ("E2E", rec["e2e"]),
        ("KV transfer", rec["xfer"]),
    ):
        for q in (50, 90, 99):
            out[f"{name} p{q}"] = float(np.percentile(arr, q))
        out[f"{name} mean"] = float(arr.mean())
    span_s = float((rec["arrival"] + rec["e2e"]).max() - rec["arrival"].min())
    out["makespan s"] = span_s
    out["requests/s"] = float(rec["e2e"].size / span_s)
    out["output tok/s"] = float(rec["out"].sum() / span_s)
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs both simulators and prints the comparison (markdown)."""
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    perf_model = args.splitwise / "data" / "perf_model.csv"
    sws = splitwise_records(run_splitwise(args))
    lookup = args.work / "sws_lookup.csv"
    with args.trace.open() as fh:
        max_prompt = max(int(r["ContextTokens"]) for r in csv.DictReader(fh))
    sws_lookup_table(perf_model, lookup, max_prompt)

    columns = {"splitwise-sim": kpis(sws)}
    extra: dict[str, dict[str, Any]] = {}
    kv_model = args.work / "llama-2-70b-sws-kv.yaml"
    kv_model.write_text(SWS_KV_MODEL)
    for label, cost_model, extra_kw in (
        ("disagg-gym table (sws lookup)", f"table:{lookup}", {}),
        ("disagg-gym table (sws lookup + sws KV size, 200 GB/s)", f"table:{lookup}",
         {"model": str(kv_model), "inter_node": "rdma_ib_hdr"}),
        ("disagg-gym table", f"table:{perf_model}", {}),
        ("disagg-gym roofline", "roofline", {}),
    ):
        t0 = time.perf_counter()
        rec, summary = run_ours(args.trace, cost_model, **extra_kw)
        columns[label] = kpis(rec)
        extra[label] = {"wall_s": round(time.perf_counter() - t0, 1),
                        "utilisation": summary.get("utilisation"),
                        "rejected": summary.get("requests_rejected")}

    names = list(columns)
    print("| KPI | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    ref = columns["splitwise-sim"]
    for key in ref:
        cells = []
        for n in names:
            v = columns[n][key]
            cell = f"{v * 1e3:.2f} ms" if key.startswith(("TTFT", "TBT", "KV")) else (
                f"{v:.3f} s" if key.startswith("E2E") else f"{v:,.1f}")
            if n != "splitwise-sim" and ref[key]:
                cell += f" ({100 * (v / ref[key] - 1):+.1f}%)"
            cells.append(cell)
        print(f"| {key} | " + " | ".join(cells) + " |")
    # The KV-transfer rows describe the two transfer models, which differ by design (see docs);
    # the acceptance figure covers the serving KPIs.
    kpi_keys = [k for k in ref if not k.startswith("KV transfer")]
    worst = {
        n: max(abs(columns[n][k] / ref[k] - 1) for k in kpi_keys if ref[k] and not math.isnan(columns[n][k]))
        for n in names[1:]
    }
    print()
    for n, w in worst.items():
        print(f"- {n}: largest KPI difference {100 * w:.2f}%  ({json.dumps(extra[n])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
