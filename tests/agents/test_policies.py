"""Instance-scoring policies: layout, shapes, equivariance, priors, save/load, training smoke."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")  # the [rl] extra
pytest.importorskip("stable_baselines3")  # the [rl] extra
pytest.importorskip("sb3_contrib")  # the [rl] extra

from pathlib import Path

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO

from disagg_gym_agents.base import make_env
from disagg_gym_agents.cli import TrainArgs
from disagg_gym_agents.policies import (
    NF,
    InstanceScorer,
    MaskableInstancePolicy,
    actor_latent,
    layout_of,
    resolve_policy,
)
from disagg_gym_agents.ppo import train
from disagg_gym_agents.sb3_policy import SB3Policy

ROUTE = "disagg/SmallRoute-v3"
ALLOC = "disagg/EnergyAllocate-v3"
JOINT = "disagg/LargeJoint-v3"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _scorer(env_id: str, **kw: object) -> tuple[InstanceScorer, object]:
    env = make_env(env_id, {"horizon_s": 30})
    torch.manual_seed(0)
    sc = InstanceScorer(env.observation_space.shape[0], layout_of(env), **kw)  # type: ignore[arg-type]
    sc.init_heads()
    return sc, env


@pytest.mark.parametrize("env_id", [ROUTE, ALLOC, JOINT])
def test_logits_cover_the_action_space(env_id: str) -> None:
    sc, env = _scorer(env_id)
    obs, _ = env.reset(seed=1)  # type: ignore[attr-defined]
    x = torch.as_tensor(np.stack([obs, obs]))
    logits, value = sc(x)
    assert logits.shape == (2, int(np.sum(env.action_space.nvec)))  # type: ignore[attr-defined]
    assert value.shape == (2, sc.latent_dim_vf)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("env_id", "kw"),
    [
        (ROUTE, {}),
        (ROUTE, {"prior_scale": 3.0, "relative_reject": True, "act": torch.nn.ReLU}),
        (ALLOC, {}),
        (JOINT, {"prior_scale": 1.0}),
        ("disagg/MooncakeCacheRoute-v2", {"prior_scale": 2.0}),  # cache features in each row
    ],
)
def test_inference_logits_equal_the_module_path(env_id: str, kw: dict) -> None:
    """``actor_logits`` (layers applied as functions) equals ``forward_actor`` (through
    ``nn.Module.__call__``) bit for bit, with random (not initial) weights, one observation
    and a batch."""
    sc, env = _scorer(env_id, **kw)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in sc.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    obs, _ = env.reset(seed=2)  # type: ignore[attr-defined]
    rows = [obs]
    for _ in range(5):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())  # type: ignore[attr-defined]
        if term or trunc:
            obs, _ = env.reset(seed=3)  # type: ignore[attr-defined]
        rows.append(obs)
    x = torch.as_tensor(np.stack(rows))
    with torch.inference_mode():
        for batch in (x[:1], x):
            want = sc.forward_actor(batch)
            assert torch.equal(sc.actor_logits(batch), want)
            assert torch.equal(actor_latent(sc, batch), want)


def test_instance_logits_are_permutation_equivariant() -> None:
    sc, env = _scorer(ROUTE)
    env.reset(seed=0)  # type: ignore[attr-defined]
    for a in ([0, 2], [1, 3], [0, 3]):  # some load on the instances
        env.step(np.array(a))  # type: ignore[attr-defined]
    obs, *_ = env.step(np.array([0, 2]))  # type: ignore[attr-defined]
    with torch.no_grad():
        sc.prefill_bias.zero_()
        sc.decode_bias.zero_()
        # make the scores depend visibly on the features
        torch.nn.init.normal_(sc.prefill_head.weight)
        torch.nn.init.normal_(sc.decode_head.weight)
    n = sc.n
    perm = [2, 0, 3, 1]
    inst = obs[: n * NF].reshape(n, NF)
    inst[:, 3] = [0.1, 0.5, 0.2, 0.9]  # distinct rows
    obs[: n * NF] = inst.ravel()
    permuted = obs.copy()
    permuted[: n * NF] = inst[perm].ravel()
    with torch.no_grad():
        a = sc.forward_actor(torch.as_tensor(obs[None]))[0]
        b = sc.forward_actor(torch.as_tensor(permuted[None]))[0]
    assert torch.allclose(a[:n][perm], b[:n], atol=1e-6)  # prefill scores follow the rows
    assert torch.allclose(a[n + 1 :][perm], b[n + 1 :], atol=1e-6)  # decode scores too
    assert torch.allclose(a[n], b[n], atol=1e-6)  # the reject logit does not move
    assert not torch.allclose(a[:n], b[:n])


def test_untrained_policy_serves_and_keeps_pool_sizes() -> None:
    sc, env = _scorer(ROUTE)
    obs, _ = env.reset(seed=0)  # type: ignore[attr-defined]
    with torch.no_grad():
        logits = sc.forward_actor(torch.as_tensor(obs[None]))[0]
    n = sc.n
    p_reject = torch.softmax(logits[: n + 1], 0)[n]
    assert p_reject < 0.02
    sc, env = _scorer(ALLOC)
    obs, _ = env.reset(seed=0)  # type: ignore[attr-defined]
    with torch.no_grad():
        logits = sc.forward_actor(torch.as_tensor(obs[None]))[0]
    current = env.unwrapped.action_for()  # type: ignore[attr-defined]
    assert int(torch.argmax(logits)) == int(current[0])


def test_layout_mismatch_is_named() -> None:
    env = make_env(ROUTE)
    layout = {**layout_of(env), "n": 5}
    with pytest.raises(ValueError, match="observation length 53 does not match the layout"):
        InstanceScorer(env.observation_space.shape[0], layout)  # type: ignore[index]
    with pytest.raises(ValueError, match="layout task must be"):
        InstanceScorer(52, {**layout_of(env), "task": "fly"})


def test_resolve_policy() -> None:
    assert resolve_policy("InstancePolicy", maskable=True) is MaskableInstancePolicy
    assert resolve_policy("MlpPolicy", maskable=True) == "MlpPolicy"


def test_train_save_load_predicts_identically(tmp_path: Path) -> None:
    hp = tmp_path / "hp.yml"
    hp.write_text(
        "default:\n  policy: InstancePolicy\n  n_steps: 128\n  batch_size: 64\n  n_epochs: 1\n"
        "  policy_kwargs: {hidden: 16}\n"
    )
    args = TrainArgs(
        env=ROUTE, algo="maskable_ppo", timesteps=256, seed=0, out=str(tmp_path / "run"),
        overrides=["horizon_s=3"], hyperparams=str(hp), eval_freq=0, progress_bar=False,
    )
    path = train(args)
    env = make_env(ROUTE, {"horizon_s": 3})
    pol = SB3Policy.load(path, env)
    assert isinstance(pol.model.policy, MaskableInstancePolicy)
    model = MaskablePPO.load(str(path), device="cpu")
    obs, _ = env.reset(seed=3)
    for _ in range(20):
        a, _ = pol.predict(obs)
        b, _ = model.predict(obs, action_masks=env.unwrapped.action_masks(), deterministic=True)
        assert np.array_equal(a, b)
        obs, *_ = env.step(a)
    # plain PPO takes the unmasked variant
    args = TrainArgs(
        env=ALLOC, algo="ppo", timesteps=128, seed=0, out=str(tmp_path / "ppo"),
        overrides=["horizon_s=60"], hyperparams=str(hp), eval_freq=0, progress_bar=False,
    )
    model = PPO.load(str(train(args)), device="cpu")
    assert type(model.policy).__name__ == "InstancePolicy"


def test_load_prior_makes_the_untrained_greedy_route_join_the_shortest_queue() -> None:
    from disagg_gym_agents.policies import DECODE_LOAD, PREFILL_LOAD

    sc, env = _scorer(ROUTE, prior_scale=30.0)
    env.reset(seed=0)  # type: ignore[attr-defined]
    for a in ([0, 2], [0, 2], [0, 3], [1, 2]):  # unequal load
        obs, *_ = env.step(np.array(a))  # type: ignore[attr-defined]
    n = sc.n
    inst = obs[: n * NF].reshape(n, NF)
    masks = env.unwrapped.action_masks()  # type: ignore[attr-defined]
    with torch.no_grad():
        logits = sc.forward_actor(torch.as_tensor(obs[None]))[0].numpy()
    lp = np.where(masks[:n], logits[:n], -np.inf)
    ld = np.where(masks[n + 1 :], logits[n + 1 :], -np.inf)
    load_p = np.where(masks[:n], inst[:, PREFILL_LOAD].sum(1), np.inf)
    load_d = np.where(masks[n + 1 :], inst[:, DECODE_LOAD].sum(1), np.inf)
    assert load_p.min() < load_p[masks[:n]].max() or load_d.min() < load_d[masks[n + 1 :]].max()
    assert int(np.argmax(lp)) == int(np.argmin(load_p))
    assert int(np.argmax(ld)) == int(np.argmin(load_d))


def test_relative_reject_keeps_rejection_rare_under_load() -> None:
    env = make_env(ROUTE, {"horizon_s": 30, "workload.rate_per_s": 200})
    env.reset(seed=0)
    for i in range(400):  # pile work onto both prefill instances
        obs, *_ = env.step(np.array([i % 2, 2 + i % 2]))
    n = 4
    masks = torch.as_tensor(env.unwrapped.action_masks()[: n + 1])  # type: ignore[attr-defined]
    p = {}
    for rel in (False, True):
        torch.manual_seed(0)
        sc = InstanceScorer(env.observation_space.shape[0], layout_of(env), prior_scale=20.0,  # type: ignore[index]
                            relative_reject=rel)
        sc.init_heads()
        with torch.no_grad():
            logits = sc.forward_actor(torch.as_tensor(obs[None]))[0][: n + 1]
        p[rel] = float(torch.softmax(logits.masked_fill(~masks, -1e9), 0)[n])
    assert p[True] < 0.02 < p[False]  # the absolute logit makes shedding look cheap under load


def test_padded_instance_scorer_ignores_the_padding() -> None:
    """obs_mode padded + instance_bias=False: the real instances' logits and the value do not
    depend on how many padding slots follow (pooling over valid rows only)."""
    import gymnasium as gym

    from disagg_gym_agents.policies import InstanceScorer, layout_of

    torch.manual_seed(0)
    shared = None
    out = []
    for slots in (4, 8, 16):
        env = gym.make(ROUTE, overrides={"horizon_s": 3.0, "env.obs_mode": "padded", "env.max_instances": slots})
        obs, _ = env.reset(seed=0)
        for _ in range(30):  # a loaded state, so the rows differ
            obs, *_ = env.step(env.unwrapped.action_for(route=(0, 2)))
        lay = layout_of(env)
        assert lay["padded"] and lay["n"] == slots
        sc = InstanceScorer(obs.size, lay, hidden=16, prior_scale=5.0, instance_bias=False)
        per_slot = ("prefill_bias", "decode_bias")
        if shared is None:
            shared = {k: v for k, v in sc.state_dict().items() if k not in per_slot}
        sc.load_state_dict({**sc.state_dict(), **shared})
        with torch.no_grad():
            logits, value = sc(torch.as_tensor(obs[None]))
        out.append((logits[0, :4].numpy(), logits[0, slots + 1 : slots + 5].numpy(), value[0].numpy()))
    for other in out[1:]:
        for a, b in zip(out[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_model_for_another_observation_space_is_named_even_for_a_dict_space() -> None:
    # a Dict observation space has no shape: the message said "the env's None"
    import gymnasium as gym

    from disagg_gym.wrappers.action_mask import ActionMaskDict

    env = make_env("disagg/SmallRoute-v3", {"horizon_s": 2})
    model = MaskablePPO("MlpPolicy", env, n_steps=8, batch_size=8, seed=0)
    dict_env = ActionMaskDict(make_env("disagg/SmallRoute-v3", {"horizon_s": 2}))
    assert isinstance(dict_env.observation_space, gym.spaces.Dict)
    with pytest.raises(ValueError, match=r"does not match the env's Dict\(") as err:
        SB3Policy(model, dict_env, label="sb3:m.zip")
    assert "None" not in str(err.value)
