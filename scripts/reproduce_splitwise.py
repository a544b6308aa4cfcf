"""Reproduce a Splitwise result: throughput at equal cost of a split H100 cluster vs a colocated one.

Splitwise (Patel et al., ISCA 2024, §VI-E) reports that for batch jobs, where latency SLOs do
not bind and only throughput per dollar counts, Splitwise-HH and Baseline-H100 deliver the same
0.75 requests/s per dollar (and Splitwise-AA and Baseline-A100 the same 0.89): with as many
machines, at high load Splitwise's mixed pool turns prompt and token machines into mixed ones,
so it behaves like the baseline. Its conversation cluster splits 40 DGX-H100 into 25 prompt +
15 token machines (splitwise-sim scripts/run_splitwise_hh.sh and the paper's Fig. 12).

Here, at the same cost (same number of Llama-2-70B TP8 instances on H100, one per DGX):
``--machines`` colocated instances against every fixed split ``p`` prefill + ``d`` decode, with
the paper's 25:15 ratio marked, under an offered load far above capacity (Poisson,
Azure-conversation lengths, splitwise-sim's batch limits). Throughput is completed requests per
second of simulated time. Run with splitwise-sim's latency table as the cost model
(``--cost-model table:PATH/perf_model.csv``, the measurements Splitwise's own simulator used)
or the roofline.

usage:
    python scripts/reproduce_splitwise.py --cost-model table:~/splitwise-sim/data/perf_model.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from disagg_gym.scenario import load_scenario
from disagg_gym.simulation import Simulation


@dataclass(frozen=True, slots=True)
class Args:
    """Command-line arguments."""

    machines: int
    """Instances (one TP8 DGX-H100 each) in every cluster: equal cost."""
    rate: float
    """Offered Poisson load, requests per second (far above capacity)."""
    horizon_s: float
    """Simulated seconds of arrivals; throughput is measured over them."""
    cost_model: str
    """Cost model of every instance."""
    seed: int
    """Workload seed."""


def parse_args(argv: list[str] | None = None) -> Args:
    """Parses the command line into :class:`Args`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--machines", type=int, default=8)
    p.add_argument("--rate", type=float, default=80.0)
    p.add_argument("--horizon-s", type=float, default=600.0)
    p.add_argument("--cost-model", default="roofline")
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)
    return Args(ns.machines, ns.rate, ns.horizon_s, ns.cost_model, ns.seed)


def throughput(args: Args, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Completed requests and output tokens per second under the offered load."""
    scen = load_scenario(
        "small-route",
        {
            "name": "splitwise-repro",
            "router": "round_robin",
            "horizon_s": args.horizon_s,
            "cluster.model": "llama-2-70b",
            "cluster.groups": groups,
            "workload.kind": "poisson",
            "workload.rate_per_s": args.rate,
            "workload.lengths": "azure_conv",
        },
    )
    s = Simulation(scen, seed=args.seed, keep_records=False).run(drain=False)
    util = s.get("utilisation") or {}
    return {
        "rps": s["requests_completed"] / args.horizon_s,
        "out_tok_s": s["output_tokens_per_s"],
        "util": {k: round(v, 3) for k, v in util.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Runs every configuration and prints a markdown table."""
    args = parse_args(argv)
    base = {"gpu": "h100-sxm", "tp": 8, "max_batch": 512, "prefill_token_budget": 2048,
            "cost_model": args.cost_model}
    n = args.machines
    paper_p = round(n * 25 / 40)
    configs = [("colocated (Baseline-H100)", [{**base, "count": n, "role": "colocated"}])]
    for p in range(1, n):
        mark = " (Splitwise-HH's 25:15)" if p == paper_p else ""
        configs.append((f"{p}P+{n - p}D{mark}", [{**base, "count": p, "role": "prefill"},
                                                 {**base, "count": n - p, "role": "decode"}]))
    print(f"Llama-2-70B, {n} x DGX-H100 (TP8) per cluster, azure_conv lengths, offered "
          f"{args.rate} req/s for {args.horizon_s:g} s, seed {args.seed}, cost model {args.cost_model}\n")
    print("| cluster | completed req/s | output tok/s | utilisation | vs colocated |")
    print("|---|---:|---:|---|---:|")
    t0 = time.perf_counter()
    res = {name: throughput(args, groups) for name, groups in configs}
    ref = res[configs[0][0]]["rps"]
    for name, r in res.items():
        print(f"| {name} | {r['rps']:.2f} | {r['out_tok_s']:,.0f} | {r['util']} | {r['rps'] / ref:.2f}x |")
    best = max(res, key=lambda k: res[k]["rps"])
    print(f"\nbest: {best} ({res[best]['rps'] / ref:.2f}x colocated); {time.perf_counter() - t0:.0f} s")
    print(json.dumps({k: round(v["rps"], 4) for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
