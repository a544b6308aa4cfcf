"""Finer control intervals for the allocation envs (issue #16 item 8)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import disagg_gym  # noqa: F401


@pytest.mark.parametrize("interval", [0.5, 2.0])
def test_each_allocate_step_simulates_one_control_interval(interval: float) -> None:
    env = gym.make("disagg/EnergyAllocate-v3", control_interval_s=interval, horizon_s=6)
    assert env.spec.kwargs["control_interval_s"] == interval
    assert env.spec.id.startswith("disagg/EnergyAllocate-custom-")
    u = env.unwrapped
    _, info = u.reset(seed=0)
    times = [info["sim_time_s"]]
    term = trunc = False
    while not (term or trunc):
        _, _, term, trunc, info = u.step(u.action_for())
        times.append(info["sim_time_s"])
    # Decisions at t = interval, 2 interval, ..., 6 s (the horizon); then the episode ends there.
    decisions = times[:-1]
    assert decisions == pytest.approx([(k + 1) * interval for k in range(int(6 / interval))])
    assert times[-1] == pytest.approx(6.0)


def test_default_interval_is_unchanged() -> None:
    u = gym.make("disagg/HeteroAllocate-v5").unwrapped
    assert u.cfg.control_interval_s == 10.0
