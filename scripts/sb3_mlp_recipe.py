r"""Plain sb3-contrib MaskablePPO with ``MlpPolicy`` on a route env, as a user would write it.

Trains on the env exactly as ``gym.make(id, overrides=...)`` gives it, then evaluates the
greedy (masked) and the sampled policy on held-out workload seeds (10000+) next to masked-random and
round-robin. Prints wall time.

    python scripts/sb3_mlp_recipe.py --env-id disagg/SmallRoute-v3 --timesteps 50000 \
        [--overrides '{"env.reward.load_shaping": 10}'] [--gamma 0.99]
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO

import disagg_gym  # noqa: F401
from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET, run_episode
from disagg_gym_agents.registry import POLICIES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env-id", default="disagg/SmallRoute-v3")
    p.add_argument("--overrides", default="{}")
    p.add_argument("--timesteps", type=int, default=50_000)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--learning-rate", type=float, default=3e-4, help="SB3's default is 3e-4")
    a = p.parse_args()
    torch.set_num_threads(1)
    over = json.loads(a.overrides)
    env = gym.make(a.env_id, overrides=over)
    t0 = time.time()
    model = MaskablePPO("MlpPolicy", env, gamma=a.gamma, seed=a.seed, learning_rate=a.learning_rate, verbose=0)
    model.learn(a.timesteps)
    print(f"trained {a.timesteps} steps in {time.time() - t0:.0f} s", flush=True)
    for name in ("MaskablePPO-MlpPolicy", "MaskablePPO-sampled", "random", "round_robin"):
        e = gym.make(a.env_id, overrides=over)
        if name.startswith("Maskable"):
            det = name.endswith("MlpPolicy")
            rows = [run_episode(model, e, EVAL_SEED_OFFSET + k, action_masks=True, deterministic=det)
                    for k in range(a.episodes)]
        else:
            pol = POLICIES.get(name)(e, seed=0)
            rows = [run_episode(pol, e, EVAL_SEED_OFFSET + k) for k in range(a.episodes)]
        g = np.mean([r["goodput_rps"] for r in rows])
        s = np.mean([r["slo_attainment"] for r in rows])
        print(f"eval {name:22s} goodput_rps={g:.2f} slo_attainment={s:.3f}", flush=True)


if __name__ == "__main__":
    main()
