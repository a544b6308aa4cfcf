r"""Trains the PPO checkpoints the leaderboard scores: MaskablePPO, every config x training seed.

Reads top to bottom: for each standard config and each training seed, train MaskablePPO with
the shipped hyperparameters (``disagg_gym_agents/hyperparams/maskable_ppo.yml``) for the entry's
timesteps, then copy ``model.zip`` and ``config.json`` into
``leaderboard/checkpoints/<EnvName>/seed<k>/``. Finished cells (a ``model.zip`` already in the
destination) are skipped, so an interrupted run resumes where it stopped; an interrupted
training run itself resumes from its latest checkpoint in ``runs/leaderboard/``.

One process, one torch thread: the leaderboard is built on a shared 2-core machine.

The committed copies are *slimmed* (``disagg_gym_agents.callbacks.slim_checkpoint``): the Adam moments in ``policy.optimizer.pth`` are dropped
(state emptied, parameter groups kept) and the zip is deflated, which cuts LargeJoint's
InstancePolicy zips from 464 KB to 132 KB. The policy weights are untouched, so evaluation is unaffected; to continue
training, resume from ``runs/leaderboard/`` instead (optimizer moments restart otherwise).

Usage (the committed checkpoints: the shipped budgets, seeds 0-4)::

    python scripts/train_leaderboard.py --seeds 0 1 2 3 4 --log runs/leaderboard/timings.jsonl

Ablations train into their own checkpoint root (the benchmark names an agent after its root),
with env overrides (``--set``) or another hyperparameter file (``--hyperparams``), e.g.::

    python scripts/train_leaderboard.py --configs disagg/SmallRoute-v3 --seeds 0 1 2 \
        --set env.allow_reject=false --dest leaderboard/checkpoints-ablation-noreject \
        --work runs/leaderboard-noreject
    python scripts/train_leaderboard.py --configs disagg/SmallRoute-v3 --seeds 0 1 2 \
        --hyperparams disagg_gym_agents/hyperparams/maskable_ppo_noprior.yml \
        --dest leaderboard/checkpoints-ablation-noprior --work runs/leaderboard-noprior

A checkpoint trained with ``--set`` is benchmarked with the same ``--set`` (its action space
follows the env: ``env.allow_reject=false`` drops the reject action).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch

from disagg_gym_agents.base import check_env_id, parse_overrides
from disagg_gym_agents.callbacks import slim_checkpoint
from disagg_gym_agents.cli import TrainArgs
from disagg_gym_agents.hparams import load_hyperparams
from disagg_gym_agents.ppo import train
from disagg_gym.argtypes import nonneg_int, positive_int
from disagg_gym.env.registration import registered_ids
from disagg_gym.errors import UserError
from disagg_gym.io import check_output_dir, check_output_file, run_script

ROOT = Path(__file__).resolve().parents[1]

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--configs", nargs="+", default=None, help="env ids (default: every standard id)")
p.add_argument("--seeds", nargs="+", type=nonneg_int, default=[0, 1, 2, 3, 4],
               help="training seeds (default: 0 1 2 3 4, the protocol's minimum of five)")
p.add_argument(
    "--default-timesteps",
    type=positive_int,
    default=None,
    help="timesteps per run (default: the YAML entry's n_timesteps, the shipped budget)",
)
p.add_argument(
    "--timesteps", nargs="*", default=[], metavar="ID=N", help="per-config timestep caps"
)
p.add_argument("--dest", type=Path, default=ROOT / "leaderboard" / "checkpoints")
p.add_argument("--work", type=Path, default=ROOT / "runs" / "leaderboard")
p.add_argument(
    "--set", action="append", default=[], metavar="KEY=VALUE", help="env override (repeatable)"
)
p.add_argument(
    "--hyperparams", default=None, metavar="YAML", help="RL Zoo-style YAML (default: the shipped one)"
)
p.add_argument("--log", type=Path, default=None, help="JSON lines of per-run timings")


def parse_caps(items: list[str], configs: list[str]) -> dict[str, int]:
    """``--timesteps ID=N ...`` as ``{ID: N}``; each ID one of ``configs``, each N > 0."""
    caps = {}
    for item in items:
        env_id, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit() or int(n) < 1:
            raise UserError(f"--timesteps {item!r}: expected ID=N with N a positive integer")
        if env_id not in configs:
            raise UserError(f"--timesteps {item!r}: {env_id!r} is not one of the configs trained")
        caps[env_id] = int(n)
    return caps


def main(args: argparse.Namespace) -> None:
    # Bad input fails here, before the first run trains (not hours later, at a later config).
    configs = args.configs or registered_ids()
    for env_id in configs:
        check_env_id(env_id)
        load_hyperparams("maskable_ppo", env_id, args.hyperparams)
    caps = parse_caps(args.timesteps, configs)
    for seed in args.seeds:
        if seed > 2**32 - 1:  # SB3 seeds numpy's legacy generator, which takes 32 bits
            raise UserError(f"--seeds: {seed} is above the largest seed, {2**32 - 1}")
    parse_overrides(args.set)
    check_output_dir(args.dest, "--dest")
    check_output_dir(args.work, "--work")
    if args.log is not None:
        check_output_file(args.log, "--log")

    torch.set_num_threads(1)
    for env_id in configs:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id.split("/")[-1])
        for seed in args.seeds:
            dest = args.dest / name / f"seed{seed}"
            if (dest / "model.zip").is_file():
                print(f"skip {env_id} seed {seed}: {dest / 'model.zip'} exists", flush=True)
                continue
            work = args.work / name / f"seed{seed}"
            steps = caps.get(env_id, args.default_timesteps)
            if steps is None:
                steps = int(load_hyperparams("maskable_ppo", env_id, args.hyperparams)[0]["n_timesteps"])
            targs = TrainArgs(
                env=env_id,
                algo="maskable_ppo",
                timesteps=steps,
                seed=seed,
                out=str(work),
                overrides=list(args.set),
                hyperparams=args.hyperparams,
                eval_freq=0,  # no in-training evaluation: the leaderboard evaluates afterwards
                checkpoint_freq=max(steps // 4, 1),
                keep_checkpoints=1,
                resume=(work / "checkpoints").is_dir() and any((work / "checkpoints").glob("*.zip")),
                progress_bar=False,
                threads=1,
            )
            t0 = time.perf_counter()
            print(f"train {env_id} seed {seed}: {steps} timesteps -> {work}", flush=True)
            model = train(targs)
            wall = time.perf_counter() - t0
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / "config.json", dest / "config.json")
            shutil.copy2(model, dest / "model.zip.tmp")
            slim_checkpoint(dest / "model.zip.tmp")
            (dest / "model.zip.tmp").replace(dest / "model.zip")
            print(f"done  {env_id} seed {seed}: {wall:.1f} s ({steps / wall:.0f} steps/s)", flush=True)
            if args.log is not None:
                with args.log.open("a") as fh:
                    fh.write(json.dumps({"env": env_id, "seed": seed, "timesteps": steps, "wall_s": wall, "dest": str(args.dest), "load_avg_1m": os.getloadavg()[0]}) + "\n")

    # Checkpoints copied before slimming existed (or by hand) are slimmed too.
    for zp in sorted(args.dest.glob("*/seed*/model.zip")):
        slim_checkpoint(zp)


if __name__ == "__main__":
    run_script("train_leaderboard.py", main, p.parse_args())
