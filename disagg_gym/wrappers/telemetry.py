"""Telemetry realism: stale and noisy observations (a scheduler never sees the cluster live).

Both wrap a Box-observation disagg-gym env and leave actions, rewards, ``info`` and
``action_masks()`` untouched: masks stay exact (they describe what the cluster will accept now),
only what the policy *sees* is degraded.
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from disagg_gym.errors import UserError


class StaleObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Shows the observation of ``delay_steps`` decisions ago, or the newest one at least
    ``delay_s`` simulated seconds old (monitoring lag, as in a metrics pipeline).

    Until enough history exists the oldest observation of the episode is shown (the reset one).

    Args:
        env: A disagg-gym env.
        delay_steps: Delay in decisions (exactly one of the two delays).
        delay_s: Delay in simulated seconds (uses ``info["sim_time_s"]``).
    """

    def __init__(self, env: gym.Env, delay_steps: int | None = None, delay_s: float | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, delay_steps=delay_steps, delay_s=delay_s)  # for env.spec
        gym.Wrapper.__init__(self, env)
        if (delay_steps is None) == (delay_s is None):
            raise UserError(f"give exactly one of delay_steps, delay_s (got {delay_steps!r}, {delay_s!r})")
        if delay_steps is not None and (isinstance(delay_steps, bool) or not isinstance(delay_steps, int) or delay_steps < 0):
            raise UserError(f"delay_steps must be an int >= 0 (got {delay_steps!r})")
        if delay_s is not None and not (isinstance(delay_s, (int, float)) and 0 <= delay_s < float("inf")):
            raise UserError(f"delay_s must be a finite number >= 0 (got {delay_s!r})")
        self.delay_steps = delay_steps
        self.delay_s = None if delay_s is None else float(delay_s)
        self._hist: deque[tuple[float, Any]] = deque()

    def _show(self, obs: Any, t_s: float) -> Any:
        self._hist.append((t_s, obs))
        if self.delay_steps is not None:
            while len(self._hist) > self.delay_steps + 1:
                self._hist.popleft()
        else:
            assert self.delay_s is not None
            # Keep the newest entry that is old enough and everything after it.
            while len(self._hist) >= 2 and self._hist[1][0] <= t_s - self.delay_s:
                self._hist.popleft()
        # A copy: the same stored observation is shown for several steps, and a caller that
        # changes one in place (normalisation, buffers) must not change the ones still to come.
        shown = self._hist[0][1]
        if isinstance(shown, dict):
            return {k: np.array(v, copy=True) for k, v in shown.items()}
        return np.array(shown, copy=True)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Resets and starts a new history."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._hist.clear()
        return self._show(obs, float(info.get("sim_time_s", 0.0))), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Steps; returns the delayed observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._show(obs, float(info.get("sim_time_s", 0.0))), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """The wrapped env's current (exact) masks."""
        return self.env.unwrapped.action_masks()  # type: ignore[attr-defined]


class ObservationNoise(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds Gaussian noise ``N(0, sigma)`` to every observation entry, clipped to the bounds.

    The noise has its own generator, seeded from the ``reset`` seed; an unseeded reset continues
    it (the first one ever seeds it from that episode's workload seed). Runs are reproducible,
    and the env's own random state, from which its unseeded resets draw their workload seeds, is
    never touched: with ``sigma=0`` the wrapped env's episodes are the unwrapped env's.

    Args:
        env: A disagg-gym env with a ``Box`` observation space (``env.obs_mode: box``).
        sigma: Standard deviation in observation units (features are scaled to about [0, 1]).
    """

    def __init__(self, env: gym.Env, sigma: float = 0.05) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, sigma=sigma)  # env.spec can rebuild the wrapped env
        gym.Wrapper.__init__(self, env)
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise UserError("ObservationNoise needs a Box observation (env.obs_mode: box)")
        if not (isinstance(sigma, (int, float)) and 0 <= sigma < float("inf")):
            raise UserError(f"sigma must be a finite number >= 0 (got {sigma!r})")
        self.sigma = float(sigma)
        self._rng: np.random.Generator | None = None  # seeded by the first reset

    def _noisy(self, obs: np.ndarray) -> np.ndarray:
        space = self.observation_space
        assert self._rng is not None, "reset() first"
        out = obs + self._rng.normal(0.0, self.sigma, size=obs.shape)
        return np.clip(out, space.low, space.high).astype(obs.dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Resets; reseeds the noise from ``seed`` (an unseeded reset continues the noise)."""
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None or self._rng is None:
            # keyed apart from the env's streams; the env's np_random is not drawn from (it
            # picks the next unseeded episode's workload)
            s = seed if seed is not None else int(self.env.unwrapped.workload_seed)  # type: ignore[attr-defined]
            self._rng = np.random.default_rng([s, 0x6E6F6973])
        return self._noisy(obs), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Steps; returns the noisy observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._noisy(obs), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """The wrapped env's current (exact) masks."""
        return self.env.unwrapped.action_masks()  # type: ignore[attr-defined]
