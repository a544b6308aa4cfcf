"""``SB3Policy``'s deterministic MaskablePPO path gives SB3's own ``predict`` action, bit for bit.

The oracle is ``MaskablePPO.predict(obs, action_masks=..., deterministic=True)`` itself, on
every committed leaderboard checkpoint family (the ablations included), along real episodes
and with random masks (each action dimension keeps at least one allowed value), so a fast path
that drifted from SB3's arithmetic (another normalisation, argmax of the logits instead of the
probabilities, a mask applied to the wrong dimension) would fail here.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("stable_baselines3")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra

from pathlib import Path

import numpy as np
import torch

from disagg_gym_agents.base import make_env
from disagg_gym_agents.sb3_policy import SB3Policy

ROOT = Path(__file__).resolve().parents[2]
FAMILIES = sorted(
    p.parent.parent for p in ROOT.glob("leaderboard/checkpoints*/*/seed0/model.zip")
)
STEPS = 60


def _random_masks(rng: np.random.Generator, dims: list[int]) -> np.ndarray:
    parts = []
    for n in dims:
        m = rng.random(n) < 0.6
        m[rng.integers(n)] = True
        parts.append(m)
    return np.concatenate(parts)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fast_masked_mode_is_sb3_predict(family: Path) -> None:
    assert FAMILIES, "no committed checkpoints found"
    torch.set_num_threads(1)
    noreject = "noreject" in family.parent.name
    env = make_env(f"disagg/{family.name}", {"env.allow_reject": False} if noreject else None)
    rng = np.random.default_rng(0)
    for seed in ("seed0", "seed3"):
        pol = SB3Policy.load(family / seed / "model.zip", env)
        assert pol._dims is not None  # the fast path is the one under test
        obs, _ = env.reset(seed=20_000)
        for _ in range(STEPS):
            masks = pol.base.action_masks()
            want, _ = pol.model.predict(obs, action_masks=masks, deterministic=True)
            got, _ = pol.predict(obs, deterministic=True)
            assert np.array_equal(got, want) and got.dtype == want.dtype and got.shape == want.shape
            # the same observation under a random mask (and a fresh observation from the space)
            rnd = _random_masks(rng, pol._dims)
            want, _ = pol.model.predict(obs, action_masks=rnd, deterministic=True)
            assert np.array_equal(pol._masked_mode(obs, rnd), want)
            x = env.observation_space.sample()
            want, _ = pol.model.predict(x, action_masks=rnd, deterministic=True)
            assert np.array_equal(pol._masked_mode(x, rnd), want)
            obs, _, term, trunc, _ = env.step(got)
            if term or trunc:
                break
    env.close()
