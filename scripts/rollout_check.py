"""Checks every registered id as shipped: both env checkers + a 1,000-step random masked rollout.

Usage: python scripts/rollout_check.py [--steps 1000]
Run it in a fresh venv after a non-editable install (the issue's acceptance check).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import disagg_gym  # noqa: F401
from disagg_gym.env.registration import registered_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    for env_id in registered_ids():
        t0 = time.perf_counter()
        env = gym.make(f"disagg_gym:{env_id}")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
        u = env.unwrapped
        rng = np.random.default_rng(0)
        obs, _ = env.reset(seed=0)
        nvec = [int(x) for x in u.action_space.nvec]
        offs = np.cumsum([0] + nvec[:-1]).tolist()
        episodes = invalid = 0
        for _ in range(args.steps):
            mask = u.action_masks()
            act = np.asarray([int(rng.choice(np.flatnonzero(mask[o:o + k]))) for o, k in zip(offs, nvec)])
            obs, r, term, trunc, info = env.step(act)
            assert env.observation_space.contains(obs) and np.isfinite(r), env_id
            invalid += info["invalid_action"]
            if term or trunc:
                episodes += 1
                obs, _ = env.reset()
        print(f"{env_id}: checkers passed, {args.steps} masked random steps, {episodes} episodes ended, "
              f"{invalid} invalid, {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
