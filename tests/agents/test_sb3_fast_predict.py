"""``SB3Policy``'s deterministic masked action equals ``MaskablePPO.predict``'s, action by action.

The oracle is SB3's own ``predict`` (sb3_contrib's distribution objects): the fast path must
return the same array, dtype and shape on every step of real episodes, for the committed
leaderboard checkpoints (instance policies) and for a plain MLP policy, including exact ties.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra

import numpy as np
import torch
from sb3_contrib import MaskablePPO

from disagg_gym_agents.base import make_env
from disagg_gym_agents.sb3_policy import SB3Policy

CKPT = Path(__file__).resolve().parents[2] / "leaderboard" / "checkpoints"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _compare(pol: SB3Policy, env: object, steps: int, seed: int) -> int:
    """Steps ``env`` with SB3's action, checking the fast path's; returns the steps taken."""
    assert pol._fast
    obs, _ = env.reset(seed=seed)  # type: ignore[attr-defined]
    for _ in range(steps):
        a, state = pol.predict(obs)
        b, _ = pol.model.predict(obs, deterministic=True, action_masks=env.unwrapped.action_masks())  # type: ignore[attr-defined]
        assert state is None
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b), (a, b)
        obs, _, term, trunc, _ = env.step(b)  # type: ignore[attr-defined]
        if term or trunc:
            obs, _ = env.reset()  # type: ignore[attr-defined]
    return steps


@pytest.mark.parametrize("name", ["SmallRoute-v3", "LargeJoint-v3"])
def test_committed_checkpoint_acts_as_sb3_predicts(name: str) -> None:
    path = CKPT / name / "seed0" / "model.zip"
    if not path.is_file():
        pytest.skip(f"no committed checkpoint at {path}")
    env = make_env(f"disagg/{name}", {"horizon_s": 20})
    assert _compare(SB3Policy.load(path, env), env, 300, seed=20000) == 300


def test_mlp_policy_with_ties_acts_as_sb3_predicts(tmp_path: Path) -> None:
    env = make_env("disagg/EnergyAllocate-v3", {"horizon_s": 60})
    model = MaskablePPO("MlpPolicy", env, seed=0, device="cpu", n_steps=64, batch_size=64)
    _compare(SB3Policy(model, env), env, 40, seed=1)
    # All-equal logits: every allowed choice ties, and the mode is the first allowed one.
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.zero_()
    _compare(SB3Policy(model, env), env, 40, seed=2)


def test_other_calls_go_to_sb3(monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env("disagg/SmallRoute-v3", {"horizon_s": 20})
    model = MaskablePPO("MlpPolicy", env, seed=0, device="cpu", n_steps=64, batch_size=64)
    pol = SB3Policy(model, env)
    obs, _ = env.reset(seed=0)
    calls: list[bool] = []
    real = model.predict

    def spy(*args: object, **kw: object) -> object:
        calls.append(bool(kw.get("deterministic")))
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(model, "predict", spy)
    pol.predict(obs)  # deterministic: the fast path
    assert calls == []
    a, _ = pol.predict(obs, deterministic=False)  # sampling: SB3
    assert calls == [False] and env.action_space.contains(a)
    # Anything but one observation of the model's shape is left to SB3.
    assert pol._masked_mode(np.stack([obs, obs]), env.unwrapped.action_masks()) is None
