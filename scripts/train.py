r"""Train SB3 PPO or sb3-contrib MaskablePPO on a disagg-gym env (same as `disagg-gym train`).

Hyperparameters come from disagg_gym_agents/hyperparams/<algo>.yml (RL Zoo format, `default` fallback).
Evaluation runs periodically on held-out workload seeds 10000 + k; checkpoints are written
atomically and `--resume` continues from the latest one. Example (one process, one thread):

    .venv/bin/python scripts/train.py --env disagg/SmallRoute-v3 --algo maskable_ppo \
        --timesteps 20000 --seed 0 --out runs/smallroute --overrides horizon_s=30
    .venv/bin/tensorboard --logdir runs/smallroute/tb
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym_agents.cli import TrainArgs, cmd_train, run_script  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_script(cmd_train, TrainArgs, "train.py", __doc__ or ""))
