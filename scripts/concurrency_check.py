"""Concurrency check of the shared results CSV: how many rows survive concurrent writers.

Two modes, both printing one JSON object (expected rows, rows found, lost, duplicated):

* ``--mode benchmark`` starts ``--procs`` ``disagg-gym benchmark`` processes on one ``--out``
  folder. Process *i* runs its own heuristic plus ``jsq``, which every process shares (so
  cells overlap as well as interleave), for ``--episodes`` evaluation episodes each.
  ``--prefill-mb`` first fills ``results.csv`` with rows of another override set (other
  cells, left alone by the runs) so that a read-modify-rewrite writer has a large file to
  race on, as in issue #17 (an 11 MB file kept 21 of 42 new rows).
* ``--mode append`` starts ``--procs`` processes that each call
  ``disagg_gym_agents.leaderboard.append_rows`` ``--appends`` times with one new row (issue #17: two
  processes x 200 appends kept 204 of 400 rows).

Usage: python scripts/concurrency_check.py --mode benchmark --procs 4 --episodes 3 --out DIR
The code under test is whatever ``disagg_gym_agents`` / ``disagg_gym`` import (``PYTHONPATH`` picks it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ENV = "disagg/SmallRoute-v3"
HEURISTICS = ["round_robin", "p2c", "least_finish", "kv_aware", "random", "clairvoyant"]
META = ("config,env_version,agent,agent_kind,upper_bound,train_seed,eval_seed,episode,primary_metric,score,"
        "policy,policy_seed,model_sha256,overrides,package_version,sb3_version,torch_version,goodput_rps")


def _prefill(path: Path, mb: float) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    row = (f'{ENV},0,filler,heuristic,False,,{{seed}},0,goodput_rps,1.0,heuristic:jsq,0,,"{{{{""x"": 1}}}}",'
           "0.1.0,,,1.0\n")
    n = 0
    with path.open("w") as fh:
        fh.write(META + "\n")
        while fh.tell() < mb * 1e6:
            fh.write(row.format(seed=n))
            n += 1
    return n


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _append_worker(path: str, tag: str, n: int) -> None:
    from disagg_gym_agents.leaderboard import append_rows

    for k in range(n):
        append_rows(path, [{
            "config": ENV, "env_version": 0, "agent": tag, "agent_kind": "heuristic", "upper_bound": False,
            "train_seed": None, "eval_seed": k, "episode": 0, "primary_metric": "goodput_rps", "score": 1.0,
            "policy": f"heuristic:{tag}", "overrides": "{}", "goodput_rps": 1.0,
        }])


def main() -> int:
    """Runs the check and prints its figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("benchmark", "append"), default="benchmark")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--episodes", type=int, default=3, help="benchmark: episodes per cell")
    ap.add_argument("--appends", type=int, default=200, help="append: appends per process")
    ap.add_argument("--prefill-mb", type=float, default=0.0, help="benchmark: start from a file this large")
    ap.add_argument("--horizon-s", type=float, default=4.0, help="benchmark: simulated seconds per episode")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _append_worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return 0
    results = args.out / "results.csv"
    if results.exists():
        raise SystemExit(f"{results} exists: use a fresh --out")
    filler = _prefill(results, args.prefill_mb) if args.prefill_mb > 0 else 0
    t0 = time.perf_counter()
    if args.mode == "benchmark":
        if args.procs > len(HEURISTICS):
            raise SystemExit(f"--procs at most {len(HEURISTICS)}")
        cmds = [[sys.executable, "-m", "disagg_gym.cli", "benchmark", "--configs", ENV, "--agents", h, "jsq",
                 "--episodes", str(args.episodes), "--out", str(args.out), "--no-progress", "--no-plots",
                 "--set", f"horizon_s={args.horizon_s:g}"] for h in HEURISTICS[: args.procs]]
        expected = {(a, str(10_000 + k)) for a in [*HEURISTICS[: args.procs], "jsq"] for k in range(args.episodes)}
    else:
        cmds = [[sys.executable, __file__, "--out", str(args.out), "--worker", str(results), f"w{i}", str(args.appends)]
                for i in range(args.procs)]
        expected = {(f"w{i}", str(k)) for i in range(args.procs) for k in range(args.appends)}
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()) for c in cmds]
    codes = []
    for p in procs:
        _, err = p.communicate()
        codes.append(p.returncode)
        if p.returncode:
            print(err.decode()[-1500:], file=sys.stderr)
    rows = [r for r in _rows(results) if r["agent"] != "filler"]
    got = Counter((r["agent"], r["eval_seed"]) for r in rows)
    fillers = sum(1 for r in _rows(results) if r["agent"] == "filler")
    print(json.dumps({
        "mode": args.mode, "procs": args.procs, "exit_codes": codes, "prefill_rows": filler,
        "prefill_rows_kept": fillers, "expected_rows": len(expected), "rows_found": len(rows),
        "distinct_found": len(set(got) & expected), "lost": len(expected - set(got)),
        "duplicated": sum(v - 1 for v in got.values() if v > 1), "file_mb": round(results.stat().st_size / 1e6, 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }))
    return 0 if not (expected - set(got)) and not any(codes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
