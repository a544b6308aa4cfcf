"""Simulator speed of two versions of the core, side by side in one run.

Times ``Simulation(replace(load_scenario(name), horizon_s=H), seed=S, keep_records=False).run()``
(construction included) for every standard config, once with a reference version of the code
and once with this checkout, each measurement in a fresh process with that version first on
``PYTHONPATH``. Old and new alternate (the order flips every round), so load on a shared machine
hits both alike. Prints simulated requests per wall second for both (median over rounds), the
ratio new / reference, and the same ratio on process CPU time (less sensitive to other load).

Usage::

    .venv/bin/python scripts/bench_cores.py                    # reference: c90530e (pre core v2)
    .venv/bin/python scripts/bench_cores.py --ref main --rounds 3 --configs small-route large-joint
    .venv/bin/python scripts/bench_cores.py --ref /path/to/other/checkout --json out.json
    .venv/bin/python scripts/bench_cores.py --same-workload   # both run the reference's config files
                                                              # (only the configs the reference has)
    .venv/bin/python scripts/bench_cores.py --bench-grid      # the rows of `disagg-gym bench`'s simulator
                                                              # table instead (horizon default 3600 s)

``--ref`` is a git revision of this repository (exported with ``git archive`` to a temporary
folder) or a folder holding a ``disagg_gym`` package. Results differ between versions when the
dynamics differ; the figure compared is simulated requests per wall second. By default each
version runs its own config of that name (a config's version may have changed its load);
``--same-workload`` gives both versions the reference's YAML file, so both simulate the same
arrivals and cluster (the configs must parse under both versions). ``--bench-grid`` times the
nine rows of ``disagg-gym bench``'s simulator table instead (``disagg_gym.bench.bench_simulate``:
8, 32 and 128 H100 instances, half prefill, under 1x, 4x and 16x the Azure conversation rate,
round-robin routing; each version runs its own ``bench_simulate``), construction included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRE_V2 = "c90530e"  # the last commit before the simulator core v2 (issue #13)

CHILD = """
import json, os, sys, time
from dataclasses import replace
from disagg_gym.scenario import load_scenario
from disagg_gym.simulation import Simulation
name, horizon, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
# Trace configs name their trace relative to the repository root (../shared/...). The package
# is imported already (from PYTHONPATH), so the checkout in the new working directory cannot
# shadow it.
os.chdir(sys.argv[4])
scen = replace(load_scenario(name), horizon_s=horizon)
t0, c0 = time.perf_counter(), time.process_time()
out = Simulation(scen, seed=seed, keep_records=False).run()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"requests": out["requests_total"], "events": out["events"], "wall_s": wall, "cpu_s": cpu}))
"""

#: One row of ``disagg-gym bench``'s simulator table (``--bench-grid``): argv = instances, rate
#: multiple, horizon, working directory.
CHILD_GRID = """
import json, os, sys, time
from disagg_gym.bench import bench_simulate
import disagg_gym.scenario, disagg_gym.simulation  # imported before the CPU clock starts, as in CHILD
inst, mult, horizon = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
os.chdir(sys.argv[4])
# bench_simulate's wall time covers construction and run; the CPU time also covers its
# load_scenario call (milliseconds against the seconds of a 3600 s row).
c0 = time.process_time()
out = bench_simulate(inst, mult, horizon, "round_robin")
cpu = time.process_time() - c0
print(json.dumps({"requests": out["requests"], "events": out["events"], "wall_s": out["wall_s"], "cpu_s": cpu}))
"""
#: The rows of ``disagg-gym bench``'s simulator table, by printed name: (instances, rate multiple).
BENCH_GRID = {f"bench {i}x{m}": (i, m) for i in (8, 32, 128) for m in (1, 4, 16)}


def _standard_names() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from disagg_gym.scenario import standard_names

    return standard_names()


def export_revision(rev: str, dest: Path, prog: str = "bench_cores") -> Path:
    """``git archive`` of ``rev`` unpacked into ``dest`` (also used by ``opcount.py``)."""
    try:
        arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"{prog}: --ref {rev!r} is neither a folder nor a git revision of {ROOT} "
                         f"({e.stderr.decode().strip()})") from None
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    return dest


def _measure(src: Path, name: str, horizon: float, seed: int, workdir: str) -> dict:
    # One OpenBLAS thread: its idle worker added ~50 ms of CPU time to a 0.55 s row for both
    # versions alike, which narrowed the CPU-time ratios (the simulator does no BLAS work).
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
    if name in BENCH_GRID:  # --bench-grid
        inst, mult = BENCH_GRID[name]
        cmd = [sys.executable, "-c", CHILD_GRID, str(inst), str(mult), str(horizon), str(ROOT)]
    else:
        cmd = [sys.executable, "-c", CHILD, name, str(horizon), str(seed), str(ROOT)]
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench_cores: {name} failed with {src} on PYTHONPATH:\n{r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=PRE_V2, help=f"reference: git revision or folder (default {PRE_V2}, pre core v2)")
    ap.add_argument("--new", default=str(ROOT), help="folder with the new code (default: this checkout)")
    ap.add_argument("--configs", nargs="*", default=None, help="config names (default: all standard configs)")
    ap.add_argument("--horizon", type=float, default=None,
                    help="seconds of arrivals (default 300; 3600 with --bench-grid, as `disagg-gym bench`)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="measurements per version and config (default 2)")
    ap.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    ap.add_argument("--same-workload", action="store_true",
                    help="both versions run the reference's config file (same arrivals and cluster)")
    ap.add_argument("--bench-grid", action="store_true",
                    help="time the rows of `disagg-gym bench`'s simulator table instead of the configs")
    a = ap.parse_args(argv)
    if a.rounds < 1:
        raise SystemExit(f"bench_cores: --rounds must be >= 1 (got {a.rounds})")
    if a.bench_grid and (a.configs is not None or a.same_workload):
        raise SystemExit("bench_cores: --bench-grid times the bench table's rows: no --configs or --same-workload")
    if a.horizon is None:
        a.horizon = 3600.0 if a.bench_grid else 300.0
    if not a.horizon > 0:
        raise SystemExit(f"bench_cores: --horizon must be > 0 (got {a.horizon})")
    if a.bench_grid:
        names = list(BENCH_GRID)
    else:
        names = a.configs or _standard_names()
        unknown = [n for n in names if n not in _standard_names()]
        if unknown:
            raise SystemExit(f"bench_cores: unknown config {unknown[0]!r} "
                             f"(expected one of: {', '.join(_standard_names())})")
    new = Path(a.new).resolve()
    with tempfile.TemporaryDirectory(prefix="bench_cores_") as tmp:
        ref_path = Path(a.ref)
        if (ref_path / "disagg_gym" / "__init__.py").is_file():
            ref = ref_path.resolve()
        else:
            ref = export_revision(a.ref, Path(tmp) / "ref")
        work = str(Path(tmp))  # neither checkout is the working directory (no '' shadowing)

        if a.same_workload and a.configs is None:
            # Only the configs the reference has (configs added since cannot run on it).
            missing = [n for n in names if not (ref / "configs" / f"{n}.yaml").is_file()]
            names = [n for n in names if n not in missing]
            if missing:
                print(f"bench_cores: --same-workload: the reference has no {', '.join(missing)}; not measured")
            if not names:
                raise SystemExit("bench_cores: --same-workload: the reference has none of the standard configs")

        def scenario_of(name: str) -> str:
            if not a.same_workload:
                return name
            path = ref / "configs" / f"{name}.yaml"
            if not path.is_file():
                raise SystemExit(f"bench_cores: --same-workload: the reference has no config {name!r} ({path})")
            return str(path)

        rows = []
        print(f"reference: {a.ref}  new: {new}  horizon {a.horizon:g} s, "
              + ("round-robin routing (bench grid)" if a.bench_grid else f"seed {a.seed}") + f", {a.rounds} round(s)"
              + ("  workload: the reference's config files" if a.same_workload else ""))
        print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        print(f"{'config':22s} {'ref req/s':>10s} {'new req/s':>10s} {'new/ref':>8s} {'(CPU)':>8s} "
              f"{'ref events':>11s} {'new events':>11s}")
        for name in names:
            meas: dict[str, list[dict]] = {"ref": [], "new": []}
            for k in range(a.rounds):
                order = [("ref", ref), ("new", new)] if k % 2 == 0 else [("new", new), ("ref", ref)]
                for tag, src in order:
                    meas[tag].append(_measure(src, scenario_of(name), a.horizon, a.seed, work))
            rate = {t: statistics.median(m["requests"] / m["wall_s"] for m in ms) for t, ms in meas.items()}
            crate = {t: statistics.median(m["requests"] / m["cpu_s"] for m in ms) for t, ms in meas.items()}
            ratio = rate["new"] / rate["ref"]
            cratio = crate["new"] / crate["ref"]
            rows.append({"config": name, "ref_req_per_s": rate["ref"], "new_req_per_s": rate["new"], "ratio": ratio,
                         "ref_req_per_cpu_s": crate["ref"], "new_req_per_cpu_s": crate["new"], "cpu_ratio": cratio,
                         "runs": meas})
            print(f"{name:22s} {rate['ref']:10,.0f} {rate['new']:10,.0f} {ratio:8.2f} {cratio:8.2f} "
                  f"{meas['ref'][0]['events']:11,d} {meas['new'][0]['events']:11,d}", flush=True)
        ratios = [r["ratio"] for r in rows]
        cratios = [r["cpu_ratio"] for r in rows]
        print(f"new/ref (wall): min {min(ratios):.2f}, median {statistics.median(ratios):.2f}, max {max(ratios):.2f}")
        print(f"new/ref (CPU):  min {min(cratios):.2f}, median {statistics.median(cratios):.2f}, max {max(cratios):.2f}")
        print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        if a.json:
            Path(a.json).write_text(json.dumps({"ref": a.ref, "new": str(new), "horizon_s": a.horizon, "seed": a.seed,
                                                "bench_grid": a.bench_grid, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
