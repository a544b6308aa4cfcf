"""Python bytecodes the simulator executes per simulated request, per function: a speed figure
that machine load cannot disturb.

Wall and CPU times on a shared VM scatter by +-30 % between runs; the number of bytecode
instructions a run executes does not change between runs (same seed, same code), and in this
interpreter-bound simulator it tracks the run's time. Counts every opcode (``sys.settrace``
with ``f_trace_opcodes``) of ``Simulation(...).run()`` (construction included) for one
standard config or one row of ``disagg-gym bench``'s simulator table, for this checkout and,
with ``--ref``, another version side by side. Slow (about 30x the plain run): use short horizons.

Usage::

    .venv/bin/python scripts/opcount.py --config mooncake-cache-route
    .venv/bin/python scripts/opcount.py --grid 8 4 --horizon 600 --ref c90530e   # vs the pre-v2 core
    .venv/bin/python scripts/opcount.py --config small-route --horizon 60 --ref HEAD~3 --top 40

``--ref`` is a git revision of this repository (exported with ``git archive``) or a folder
holding a ``disagg_gym`` package. Bytecodes inside C functions (dict operations, ``heapq``,
numpy) are not counted: a change that moves work into C lowers the count without always
lowering the time (measure that with ``scripts/bench_cores.py`` on a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cores import export_revision  # noqa: E402  (a sibling script)

CHILD = """
import collections, json, os, sys
from dataclasses import replace
from disagg_gym.scenario import load_scenario
from disagg_gym.simulation import Simulation
spec = json.loads(sys.argv[1])
os.chdir(spec["workdir"])  # trace configs name ../shared/... relative to the checkout
if spec["grid"]:
    from disagg_gym.bench import AZURE_CONV_RATE
    n, mult = spec["grid"]
    half = n // 2
    scen = load_scenario("small-route", {
        "horizon_s": spec["horizon"], "router": "round_robin",
        "cluster.groups": [{"gpu": "h100-sxm", "count": half, "role": "prefill"},
                           {"gpu": "h100-sxm", "count": n - half, "role": "decode", "max_batch": 128}],
        "workload": {"kind": "poisson", "rate_per_s": AZURE_CONV_RATE * mult, "lengths": "azure_conv",
                     "slo_ttft_s": 0.5, "slo_ttft_per_1k_prompt_s": 0.25, "slo_tpot_s": 0.05}})
else:
    scen = load_scenario(spec["config"])
    if spec["horizon"] is not None:
        scen = replace(scen, horizon_s=spec["horizon"])
ops = collections.Counter()
calls = collections.Counter()
def tracer(frame, event, arg):
    code = frame.f_code
    key = code.co_filename.rpartition("disagg_gym/")[2] + ":" + code.co_qualname
    if event == "call":
        calls[key] += 1
        frame.f_trace_opcodes = True
    elif event == "opcode":
        ops[key] += 1
    return tracer
sys.settrace(tracer)
sim = Simulation(scen, seed=spec["seed"], keep_records=False)
out = sim.run()
sys.settrace(None)
print(json.dumps({"requests": out["requests_total"], "events": out["events"],
                  "ops": dict(ops), "calls": dict(calls)}))
"""


def _count(src: Path, spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="opcount_") as work:  # no '' shadowing of src
        r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], cwd=work, env=env,
                           capture_output=True, text=True)
    if r.returncode != 0:
        tail = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        raise SystemExit(f"opcount: the run failed with {src} on PYTHONPATH: {tail}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="a standard config name (e.g. mooncake-cache-route)")
    what.add_argument("--grid", nargs=2, type=float, metavar=("INSTANCES", "RATE"),
                      help="a row of `disagg-gym bench`'s simulator table (e.g. 8 4)")
    ap.add_argument("--horizon", type=float, default=None,
                    help="seconds of arrivals (default: the config's; 600 for --grid)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref", default=None, help="also count this git revision or folder, side by side")
    ap.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    a = ap.parse_args(argv)
    if a.horizon is not None and not a.horizon > 0:
        ap.error(f"--horizon must be > 0 (got {a.horizon})")
    if a.top < 0:
        ap.error(f"--top must be >= 0 (got {a.top})")
    grid = None
    if a.grid is not None:
        n, mult = a.grid
        if n < 2 or n != int(n) or not mult > 0:
            ap.error(f"--grid: instances must be an integer >= 2 and the rate > 0 (got {n:g} {mult:g})")
        grid = [int(n), mult]
        if a.horizon is None:
            a.horizon = 600.0
    spec = {"config": a.config, "grid": grid, "horizon": a.horizon, "seed": a.seed, "workdir": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="opcount_ref_") as tmp:
        versions = [("new", ROOT)]
        if a.ref is not None:
            ref = Path(a.ref)
            ref = ref.resolve() if (ref / "disagg_gym" / "__init__.py").is_file() else export_revision(a.ref, Path(tmp) / "ref", "opcount")
            versions.insert(0, ("ref", ref))
        res = {tag: _count(src, spec) for tag, src in versions}
    per_req = {t: {k: v / max(1, r["requests"]) for k, v in r["ops"].items()} for t, r in res.items()}
    for t, r in res.items():
        total = sum(r["ops"].values())
        print(f"{t}: {r['requests']:,} requests, {r['events']:,} events, {total:,} bytecodes "
              f"= {total / max(1, r['requests']):,.0f} per request")
    if a.ref is not None:
        tot = {t: sum(r["ops"].values()) / max(1, r["requests"]) for t, r in res.items()}
        print(f"new / ref bytecodes per request: {tot['new'] / tot['ref']:.3f}")
    tags = [t for t, _ in versions]
    keys = sorted(set().union(*(p.keys() for p in per_req.values())),
                  key=lambda k: (-max(p.get(k, 0.0) for p in per_req.values()), k))
    print("per request: " + "  ".join(f"{t:>8s}" for t in tags) + "  calls/request  function")
    for k in keys[: a.top]:
        calls = res[tags[-1]]["calls"].get(k, 0) / max(1, res[tags[-1]]["requests"])
        print("             " + "  ".join(f"{per_req[t].get(k, 0.0):8.1f}" for t in tags) + f"  {calls:13.2f}  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
