r"""Train PPO with Ray RLlib on a disagg-gym env (same as `disagg-gym train --backend rllib`).

Env runners sample in parallel (Ray actors, one CPU each); actions are masked per dimension.
Writes OUT/config.json (arguments, RLlib config, package versions), OUT/checkpoint/ and
TensorBoard scalars under OUT/tb/rllib_ppo/ (rollout/ep_rew_mean and the serving KPIs
kpi/slo_attainment, kpi/goodput_rps, ... of the training episodes). Needs the ray extra
(scripts/setup_ray.sh creates .venv-ray). Example (2 env runners, short episodes):

    .venv-ray/bin/python scripts/train_rllib.py --env disagg/SmallRoute-v3 --num-env-runners 2 \
        --timesteps 20000 --seed 0 --out runs/rllib_small --overrides horizon_s=30
    .venv-ray/bin/tensorboard --logdir runs/rllib_small/tb

Cluster: `ray start --head` on one node, `ray start --address HEAD:6379` on the others, then
pass `--address auto` (docs/scale-out.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym_agents.cli import run_script  # noqa: E402
from disagg_gym_agents.rllib_train import RLlibTrainArgs, cmd_train_rllib  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(run_script(cmd_train_rllib, RLlibTrainArgs, "train_rllib.py", __doc__ or ""))
