"""CPU seconds of one leaderboard episode per standard config (the basis of the wall-time estimate).

For each config, runs the first applicable of the given heuristics on one ``test`` episode
(workload seed 10000) through the leaderboard's ``run_cell`` and prints
``config agent cpu_s wall_s``. CPU time (``time.process_time``) is what a busy shared machine
distorts least; docs/leaderboard.md ("Reproducing") multiplies it out.

    .venv/bin/python scripts/episode_cpu_times.py [--agents jsq threshold] [--configs ID ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch

from disagg_gym.env.registration import registered_ids
from disagg_gym_agents.leaderboard.cells import plan_cells
from disagg_gym_agents.leaderboard.runner import run_cell

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--agents", nargs="+", default=["jsq", "threshold"], help="heuristics, first applicable wins")
p.add_argument("--configs", nargs="+", default=None, help="env ids (default: every standard id)")
args = p.parse_args()

torch.set_num_threads(1)
for env_id in args.configs or registered_ids():
    cells = plan_cells([env_id], args.agents, ["test"])[:1]
    if not cells:
        print(f"{env_id} -: none of {args.agents} applies", flush=True)
        continue
    t0, w0 = time.process_time(), time.perf_counter()
    run_cell(cells[0], [10_000])
    print(f"{env_id} {cells[0].agent} {time.process_time() - t0:.2f} {time.perf_counter() - w0:.2f}", flush=True)
