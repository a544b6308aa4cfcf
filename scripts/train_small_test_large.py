"""Train small, test large: one size-invariant InstancePolicy, trained on SmallRoute (4
instances) and evaluated unchanged on configs/variants/large-route.yaml (32 instances).

Both envs use ``obs_mode: padded`` with the same ``max_instances`` (64), so the observation
and action spaces match; ``instance_bias=False`` keeps every weight independent of the
instance count. Prints the held-out (10000+) goodput of the trained policy, the untrained
one (its load prior alone) and the baselines on the large cluster, and the wall times.

    python scripts/train_small_test_large.py --timesteps 8192 --episodes 2
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import MaskablePPO

import disagg_gym  # noqa: F401
from disagg_gym.env.serving_env import DisaggServingEnv
from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET, run_episode
from disagg_gym_agents.policies import MaskableInstancePolicy, layout_of
from disagg_gym_agents.registry import POLICIES

PAD = {"env.obs_mode": "padded", "env.max_instances": 64}


def goodput(policy, env, episodes: int, masks: bool) -> float:
    rows = [run_episode(policy, env, EVAL_SEED_OFFSET + k, action_masks=masks) for k in range(episodes)]
    return float(np.mean([r["goodput_rps"] for r in rows]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--timesteps", type=int, default=8192)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    small = gym.make("disagg/SmallRoute-v3", overrides=PAD)  # 4 instances in 64 slots
    model = MaskablePPO(
        MaskableInstancePolicy, small, n_steps=1024, batch_size=256, seed=a.seed, verbose=0,
        policy_kwargs=dict(layout=layout_of(small), prior_scale=20.0, instance_bias=False),
    )
    large = DisaggServingEnv("variants/large-route")  # 32 instances, obs_mode padded, 64 slots
    t0 = time.time()
    untrained = goodput(model, large, a.episodes, True)
    t1 = time.time()
    model.learn(a.timesteps)
    t2 = time.time()
    if a.save:
        model.save(a.save)
    print(f"trained {a.timesteps} steps on SmallRoute-v3 (padded to 64) in {t2 - t1:.0f} s")
    print(f"large-route ({large.n} instances), goodput_rps over {a.episodes} held-out episode(s):")
    print(f"  InstancePolicy trained on SmallRoute  {goodput(model, large, a.episodes, True):8.2f}")
    print(f"  same policy untrained (load prior)     {untrained:8.2f}   ({t1 - t0:.0f} s)")
    for name in ("jsq", "round_robin", "random"):
        print(f"  {name:<38s} {goodput(POLICIES.get(name)(large), large, a.episodes, False):8.2f}")
    print(f"total wall {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
