"""Larger fuzz campaigns: simulator invariants (default) or the command line (``--target cli``).

Usage: python scripts/fuzz.py [--examples 5000] [--seed 0]
       python scripts/fuzz.py --target cli [--examples 300] [--seed 0] [--log cases.jsonl]
Prints how many cases were tried and whether all passed. The simulator campaign uses the same
strategies as tests/cluster/test_properties.py (disagg_gym.testing.strategies); the CLI
campaign is scripts/fuzz_cli.py (see its docstring for the contract it checks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))
from test_properties import run_case  # noqa: E402

from disagg_gym.cluster.policies import ROUTERS  # noqa: E402
from disagg_gym.testing.strategies import clusters, workloads  # noqa: E402


def main() -> None:
    if "--target" in sys.argv:
        i = sys.argv.index("--target")
        target = sys.argv[i + 1] if i + 1 < len(sys.argv) else ""
        del sys.argv[i : i + 2]
        if target == "cli":
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from fuzz_cli import main as cli_main

            cli_main()
            return
        if target != "sim":
            raise SystemExit(f"fuzz.py: --target must be sim or cli (got {target!r})")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    count = {"n": 0}

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cfg=clusters(), src=workloads(), router=st.sampled_from(sorted(ROUTERS.names())),
           flips=st.lists(st.integers(0, 6), max_size=4))
    def campaign(cfg, src, router, flips) -> None:  # type: ignore[no-untyped-def]
        count["n"] += 1
        run_case(cfg, src, router, flips)

    t0 = time.perf_counter()
    ok = True
    try:
        campaign()
    except Exception as exc:  # report the falsifying example and fail
        ok = False
        notes = "\n".join(getattr(exc, "__notes__", []))
        print(f"FAILED: {type(exc).__name__}: {exc}\n{notes}", file=sys.stderr)
    print(json.dumps({"cases_tried": count["n"], "passed": ok, "seconds": round(time.perf_counter() - t0, 1), "seed": args.seed}))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
