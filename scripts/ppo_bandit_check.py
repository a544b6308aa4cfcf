"""Calibrates scripts/cleanrl_ppo.py on a toy contextual bandit (docs/agents.md, issue #16).

Observation: 4 uniform numbers; action ``MultiDiscrete([3, 2])`` with value 2 of the first
dimension masked out; reward: 1 per dimension that picks the larger of its pair of numbers,
delivered ``--delay`` steps later; 500-step episodes. Prints the training reward per step
every 4 updates (the best policy earns 2, a random one 1).

    python scripts/ppo_bandit_check.py --delay 0 -- --gamma 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cleanrl_ppo  # noqa: E402


class Bandit(gym.Env):
    """The toy bandit (see the module docstring)."""

    def __init__(self, overrides: object = None, delay: int = 0) -> None:
        self.observation_space = gym.spaces.Box(0, 1, (4,), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([3, 2])
        self.delay = delay

    def action_masks(self) -> np.ndarray:
        return np.array([1, 1, 0, 1, 1], dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.x = self.np_random.random(4).astype(np.float32)
        self.q = [0.0] * self.delay
        return self.x, {}

    def step(self, a):
        r = float(a[0] == (0 if self.x[0] > self.x[1] else 1)) + float(a[1] == (0 if self.x[2] > self.x[3] else 1))
        self.q.append(r)
        out = self.q.pop(0)
        self.x = self.np_random.random(4).astype(np.float32)
        self.t += 1
        return self.x, out, False, self.t >= 500, {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--delay", type=int, default=0)
    p.add_argument("--total-timesteps", type=int, default=20_000)
    p.add_argument("rest", nargs="*", help="cleanrl_ppo.py options after --")
    a = p.parse_args()
    gym.register("ToyBandit-v0", entry_point=lambda overrides=None: Bandit(overrides, a.delay))
    args = cleanrl_ppo.parse_args(["--env-id", "ToyBandit-v0", "--total-timesteps", str(a.total_timesteps), *a.rest])
    _, curve = cleanrl_ppo.train(args)
    print("reward/step every 4 updates:", [round(c[2], 3) for c in curve[::4]])


if __name__ == "__main__":
    main()
