"""InstancePolicy on the padded observation with cache features (issue #14): the row width
comes from the env (``layout_of(env)["row_features"]``), not a constant."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra

import torch
from sb3_contrib import MaskablePPO

from disagg_gym.env.observation import CACHE_FEATURES, INSTANCE_FEATURES
from disagg_gym.env.serving_env import DisaggServingEnv
from disagg_gym_agents.policies import InstanceScorer, MaskableInstancePolicy, layout_of

NF = len(INSTANCE_FEATURES)
NC = len(CACHE_FEATURES)
SLOTS = 10


def _env() -> DisaggServingEnv:
    return DisaggServingEnv("multiturn-cache-route", overrides={
        "horizon_s": 20.0, "env.obs_mode": "padded", "env.max_instances": SLOTS,
    })


def test_instance_policy_reads_the_row_width_from_the_env() -> None:
    torch.set_num_threads(1)
    env = _env()
    lay = layout_of(env)
    assert lay["row_features"] == NF + NC + 1
    obs, _ = env.reset(seed=0)
    for _ in range(10):  # some load
        obs, *_ = env.step(env.action_for(route=(0, 4)))
    obs = obs.copy()
    obs[NF : NF + NC] = [0.5, 0.25, 0.0, 0.0, 0.1]  # slot 0 sees a hit, whatever the episode did
    sc = InstanceScorer(obs.size, lay, hidden=8, instance_bias=False)
    assert sc.nf == NF + NC + 1
    x = torch.as_tensor(obs[None])
    blind = x.clone()
    blind[0, : SLOTS * (NF + NC + 1)].view(SLOTS, NF + NC + 1)[:, NF : NF + NC] = 0.0
    with torch.no_grad():
        logits, blind_logits = sc.forward_actor(x)[0], sc.forward_actor(blind)[0]
    assert logits.shape == (2 * SLOTS + 1,)
    assert not torch.equal(logits, blind_logits)  # the cache columns reach the scorer
    model = MaskablePPO(MaskableInstancePolicy, env, n_steps=16, batch_size=16, seed=0,
                        policy_kwargs={"layout": lay, "hidden": 8, "instance_bias": False})
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=True)
        obs, _, _, _, info = env.step(action)
        assert info["invalid_action"] is False
    # a layout saved before row_features existed (10 + valid) refuses this env with one line
    old = {k: v for k, v in lay.items() if k != "row_features"}
    with pytest.raises(ValueError, match="does not match the layout"):
        InstanceScorer(obs.size, old)


def test_flat_observation_puts_each_instance_cache_features_in_its_row() -> None:
    # The flat (box) layout is [N x 10 | context | N x 5 cache] (env/observation.py); the scorer
    # must see instance i's cache features next to instance i's own features.
    torch.set_num_threads(1)
    env = DisaggServingEnv("multiturn-cache-route", overrides={"horizon_s": 20.0})
    lay = layout_of(env)
    assert lay["cache_tail"] == NC
    n = lay["n"]
    obs, _ = env.reset(seed=0)
    n_ctx = obs.size - n * (NF + NC)
    # a hand-made observation: instance i's features are 100 i + column, its cache features
    # 1000 + 100 i + column, the context -1 ... -n_ctx
    inst = [[100 * i + c for c in range(NF)] for i in range(n)]
    tail = [[1000 + 100 * i + c for c in range(NC)] for i in range(n)]
    x = torch.tensor([sum(inst, []) + [-(k + 1) for k in range(n_ctx)] + sum(tail, [])], dtype=torch.float32)
    sc = InstanceScorer(obs.size, lay, hidden=8)
    rows, ctx = sc._split(x)
    assert rows.shape == (1, n, NF + NC) and ctx.shape == (1, n_ctx)
    for i in range(n):
        assert rows[0, i].tolist() == inst[i] + tail[i]
    assert ctx[0].tolist() == [-(k + 1) for k in range(n_ctx)]
    # and it trains and acts (the shipped leaderboard policy on a cache config)
    model = MaskablePPO(MaskableInstancePolicy, env, n_steps=16, batch_size=16, seed=0,
                        policy_kwargs={"layout": lay, "hidden": 8, "prior_scale": 20.0})
    model.learn(16)
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=True)
        obs, _, _, _, info = env.step(action)
        assert info["invalid_action"] is False
