"""Workload-seed wrappers: training episodes never see the held-out evaluation inputs.

Workload seeds are split three ways: held-out evaluation seeds ``EVAL_SEED_OFFSET + k``
(the leaderboard and ``disagg-gym evaluate``), validation seeds ``VALIDATION_SEED_OFFSET + k``
(hyperparameter search, ``scripts/tune.py``), and training seeds drawn from
``[TRAIN_SEED_LOW, 2**31 - 1)``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from disagg_gym.errors import UserError

EVAL_SEED_OFFSET = 10_000
"""First held-out workload seed (evaluation uses ``EVAL_SEED_OFFSET + k``)."""
VALIDATION_SEED_OFFSET = 20_000
"""First validation workload seed of hyperparameter searches (disjoint from the held-out ones)."""
TRAIN_SEED_LOW = 1_000_000
"""Training workload seeds are drawn from ``[TRAIN_SEED_LOW, 2**31 - 1)``."""


class TrainingWorkloadSeeds(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Gives every training episode a fresh workload seed from ``[TRAIN_SEED_LOW, 2**31 - 1)``.

    The draws come from a generator seeded by the reset seed (SB3 passes ``seed + rank`` on
    the first reset), so training input is reproducible and never overlaps the held-out
    evaluation seeds ``EVAL_SEED_OFFSET + k``.

    Args:
        env: The env.
        seed: Seed of the draws until a reset passes one.
    """

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, seed=seed)  # env.spec can rebuild the wrapped env
        gym.Wrapper.__init__(self, env)
        self._rng = np.random.default_rng(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Resets with the next training workload seed (unless ``options`` sets one)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        opts = dict(options or {})
        opts.setdefault("workload_seed", int(self._rng.integers(TRAIN_SEED_LOW, 2**31 - 1)))
        return self.env.reset(seed=seed, options=opts)


class HeldOutWorkloadSeeds(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Cycles through the held-out workload seeds ``offset, offset + 1, ..., offset + n - 1``.

    ``rewind()`` (called by the eval callbacks before each evaluation) restarts the cycle, so
    every evaluation sees the same inputs.

    Args:
        env: The env.
        n: Number of distinct seeds.
        offset: First seed.
    """

    def __init__(self, env: gym.Env, n: int, offset: int = EVAL_SEED_OFFSET) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, n=n, offset=offset)  # env.spec can rebuild the wrapped env
        gym.Wrapper.__init__(self, env)
        if n < 1:
            raise UserError(f"n must be >= 1 (got {n!r})")
        self.n = int(n)
        self.offset = int(offset)
        self._k = 0

    def rewind(self) -> None:
        """Restarts at the first held-out seed."""
        self._k = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Resets with the next held-out workload seed."""
        wseed = self.offset + self._k % self.n
        self._k += 1
        opts = {**(options or {}), "workload_seed": wseed}
        return self.env.reset(seed=wseed, options=opts)
