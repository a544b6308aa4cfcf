r"""Evaluate any policy, heuristic or trained, on fixed workload seeds (`disagg-gym evaluate`).

Runs `--episodes N` deterministic episodes on workload seeds S, S+1, ... (S = `--seed-offset`,
default 10000: the held-out seeds training never sees), writes one CSV row per episode with
every KPI (atomically) and prints a summary. Examples:

    .venv/bin/python scripts/evaluate.py --env disagg/SmallRoute-v3 --policy heuristic:jsq \
        --episodes 5 --out results/jsq.csv
    .venv/bin/python scripts/evaluate.py --env disagg/SmallRoute-v3 \
        --policy sb3:runs/smallroute/model.zip --episodes 5 --out results/ppo.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym_agents.cli import EvalArgs, cmd_evaluate, run_script  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_script(cmd_evaluate, EvalArgs, "evaluate.py", __doc__ or ""))
