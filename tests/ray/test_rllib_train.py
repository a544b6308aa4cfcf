"""A tiny RLlib PPO run: checkpoint, config.json and TensorBoard KPI scalars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("ray")

from disagg_gym_agents.rllib_train import (  # noqa: E402
    RLlibPolicy,
    RLlibTrainArgs,
    add_train_rllib_args,
    train_rllib,
)


def test_tiny_training_run_writes_checkpoint_and_kpi_scalars(ray_local: None, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from disagg_gym_agents.base import make_env
    from disagg_gym_agents.evaluation import run_episode

    out = tmp_path / "run"
    ckpt = train_rllib(RLlibTrainArgs(
        env="disagg/SmallRoute-v3", iterations=1, num_env_runners=1, train_batch_size=256,
        minibatch_size=64, num_epochs=1, overrides=["horizon_s=3"], out=str(out), verbose=0,
    ))
    assert ckpt == out / "checkpoint"
    assert (ckpt / "rllib_checkpoint.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["versions"]["ray"] and config["overrides"] == {"horizon_s": 3}
    ea = EventAccumulator(str(out / "tb" / "rllib_ppo"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in ("rollout/ep_rew_mean", "kpi/slo_attainment", "kpi/goodput_rps", "train/policy_loss"):
        assert tag in tags, sorted(tags)
    assert 0.0 <= ea.Scalars("kpi/slo_attainment")[-1].value <= 1.0

    env = make_env("disagg/SmallRoute-v3", {"horizon_s": 3})
    row = run_episode(RLlibPolicy.load(ckpt, env), env, 10_000)
    assert row["invalid_actions"] == 0 and row["steps"] > 0
    with pytest.raises(ValueError, match="already holds a run"):
        train_rllib(RLlibTrainArgs(out=str(out), iterations=1))


def test_a_second_train_into_a_held_run_folder_stops_at_once(tmp_path: Path) -> None:
    # as with the SB3 backend: both passed the "already holds a run" check, then wrote the same files
    from disagg_gym.io import exclusive_lock

    out = tmp_path / "run"
    with exclusive_lock(out / ".train.lock", busy="held by the test"):  # the first train's hold
        with pytest.raises(ValueError, match="another train is writing to this run folder"):
            train_rllib(RLlibTrainArgs(env="disagg/SmallRoute-v3", iterations=1, out=str(out)))
    assert not (out / "config.json").exists()


def test_cli_options_extend_the_sb3_train_parser() -> None:
    import argparse

    from disagg_gym_agents.cli import add_train_args, dataclass_from_namespace

    p = argparse.ArgumentParser()
    add_train_args(p)
    add_train_rllib_args(p)
    ns = p.parse_args(["--env", "disagg/HeteroRoute-v3", "--timesteps", "999",
                       "--num-env-runners", "3", "--address", "auto"])
    args = dataclass_from_namespace(RLlibTrainArgs, ns)
    assert (args.env, args.timesteps, args.num_env_runners, args.address) == (
        "disagg/HeteroRoute-v3", 999, 3, "auto")
    fresh = argparse.ArgumentParser()
    add_train_rllib_args(fresh)
    assert dataclass_from_namespace(RLlibTrainArgs, fresh.parse_args([])) == RLlibTrainArgs()


def test_fewer_cpus_than_env_runners_is_one_line_not_a_hang(tmp_path: Path) -> None:
    # each env runner holds one CPU of the local Ray instance: the second waited forever
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"--num-cpus 1 is below --num-env-runners 2 \(each env runner takes one CPU"):
        train_rllib(RLlibTrainArgs(env="disagg/SmallRoute-v3", iterations=1, num_env_runners=2, num_cpus=1, out=str(out)))
    assert not (out / "config.json").exists()
