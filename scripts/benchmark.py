"""Leaderboard benchmark (`disagg-gym benchmark`): every heuristic and trained agent, every config.

Runs each (config, agent, training seed) cell on the held-out workload seeds 10000, 10001, ...,
appends its rows to DIR/results.csv (locked appends: several runs may share DIR; a rerun skips
finished cells), then writes the
Markdown leaderboard and plots. The committed leaderboard was made with:

    .venv/bin/python scripts/benchmark.py --out leaderboard --markdown LEADERBOARD.md

Protocol and submissions: docs/leaderboard.md. Check with `disagg-gym validate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym_agents.leaderboard import add_benchmark_args, cmd_benchmark  # noqa: E402
from disagg_gym.io import run_script  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="benchmark.py", description=__doc__.split("\n")[0])
    add_benchmark_args(parser)
    run_script("benchmark.py", cmd_benchmark, parser.parse_args())
