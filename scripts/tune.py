r"""Small random or grid search over a few PPO / MaskablePPO hyperparameters, on short budgets.

Each trial trains one agent (one process, torch.set_num_threads(1)) from the env's YAML entry
with a few keys replaced, then scores the final model on VALIDATION workload seeds
20000 + k (disjoint from the held-out evaluation seeds 10000 + k used for reporting, and from
the training seeds >= 1e6) by the scenario's primary metric. Writes, atomically:

    OUT/trials.csv    one row per trial: the sampled values, score, KPI means, wall time
    OUT/best.yml      the best trial's full entry, RL Zoo format (pass to train --hyperparams)
    OUT/best.json     the same plus its score and trial number
    OUT/trial_<k>/    each trial's run folder (config.json, model, TensorBoard)

Re-running with the same OUT scores trials that already finished with the same entry and
budget instead of training them again (an interrupted search resumes).

The search space (`SPACE` below) is deliberately small; `--mode grid` walks it in order and
stops after `--trials`, `--mode random` samples it with a seeded generator. Example:

    .venv/bin/python scripts/tune.py --env disagg/SmallRoute-v3 --trials 6 --timesteps 8000 \
        --overrides horizon_s=30 --out runs/tune_small
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym_agents.leaderboard import LOWER_IS_BETTER as LEADERBOARD_LOWER  # noqa: E402
from disagg_gym_agents.leaderboard import read_results  # noqa: E402
from disagg_gym.wrappers.workload_seeds import VALIDATION_SEED_OFFSET  # noqa: E402
from disagg_gym.argtypes import nonneg_int, positive_int  # noqa: E402
from disagg_gym_agents.cli import (  # noqa: E402
    arg_meta,
    dataclass_from_namespace,
    run_script,
)

# Values tried per key; everything else comes from the env's YAML entry.
SPACE: dict[str, list[Any]] = {
    "learning_rate": [1.0e-4, 3.0e-4, 1.0e-3],
    "n_steps": [256, 512, 1024],
    "gamma": [0.98, 0.995],
    "ent_coef": [0.0, 0.005, 0.02],
    "n_epochs": [5, 10],
}
LOWER_IS_BETTER = (  # the leaderboard's primary metrics that are costs, plus raw cost/energy KPIs
    *sorted(LEADERBOARD_LOWER),
    "cost_per_1m_tokens_usd",
    "energy_per_request_j",
)


@dataclass
class Args:
    """Arguments of scripts/tune.py."""

    env: str = field(default="disagg/SmallRoute-v3", metadata=arg_meta("registered env id"))
    algo: str = field(
        default="maskable_ppo", metadata=arg_meta("algorithm", choices=("ppo", "maskable_ppo"))
    )
    mode: str = field(
        default="random", metadata=arg_meta("search mode", choices=("random", "grid"))
    )
    trials: int = field(default=6, metadata=arg_meta("number of trials", type=positive_int))
    timesteps: int = field(
        default=8_000, metadata=arg_meta("training timesteps per trial", type=positive_int)
    )
    eval_episodes: int = field(
        default=2, metadata=arg_meta("validation episodes per trial", type=positive_int)
    )
    seed: int = field(
        default=0,
        metadata=arg_meta("seed of the sampler and of every trial's training", type=nonneg_int),
    )
    out: str = field(default="runs/tune", metadata=arg_meta("output folder"))
    overrides: list[str] = field(
        default_factory=list, metadata=arg_meta("env override KEY=VALUE, repeatable")
    )
    metric: str | None = field(
        default=None, metadata=arg_meta("KPI to optimise (default: the scenario's primary metric)")
    )
    max_wall_s: float | None = field(
        default=None,
        metadata=arg_meta(
            "wall-clock cap per trial's training, seconds (trials stop at --timesteps or this)",
            type=float,
        ),
    )
    only_space: bool = field(
        default=False, metadata=arg_meta("search only the keys given with --space")
    )
    space: list[str] = field(
        default_factory=list,
        metadata=arg_meta(
            "replace the searched values of a key, KEY=V1,V2,... (repeatable; keys not named "
            "keep SPACE's values; KEY=V fixes a key; policy_kwargs.X=... searches X inside "
            "policy_kwargs, e.g. policy_kwargs.prior_scale=0,20)"
        ),
    )


def parse_space(items: list[str], only: bool = False) -> dict[str, list[Any]]:
    """``["gamma=0.95,0.99"]`` -> SPACE with those values (YAML scalars); errors name the item.

    ``only``: search just the keys in ``items`` (the others keep the YAML entry's values).
    """
    import yaml

    space = {} if only else {k: list(v) for k, v in SPACE.items()}
    for item in items:
        key, sep, vals = item.partition("=")
        if not sep or not key or not vals:
            raise ValueError(f"--space expects KEY=V1,V2,... (got {item!r})")
        try:
            space[key] = [yaml.safe_load(v) for v in vals.split(",")]
        except yaml.YAMLError:
            raise ValueError(f"--space {item!r}: values must be YAML scalars") from None
    return space


def candidates(
    mode: str, trials: int, seed: int, space: dict[str, list[Any]] | None = None
) -> list[dict[str, Any]]:
    """The trial configurations: grid order or seeded random samples (no duplicates)."""
    space = SPACE if space is None else space
    keys = list(space)
    grid = [dict(zip(keys, vals)) for vals in itertools.product(*(space[k] for k in keys))]
    if mode == "grid":
        return grid[:trials]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(grid))[: min(trials, len(grid))]
    return [grid[int(i)] for i in order]


def apply_candidate(base: dict[str, Any], cand: dict[str, Any]) -> dict[str, Any]:
    """The YAML entry with ``cand``'s values; ``policy_kwargs.X`` keys set X inside policy_kwargs."""
    hp = dict(base)
    for key, value in cand.items():
        if key.startswith("policy_kwargs."):
            pk = dict(hp.get("policy_kwargs") or {})  # plain YAML: class names stay names
            pk[key.split(".", 1)[1]] = value
            hp["policy_kwargs"] = pk
        else:
            hp[key] = value
    return hp


def _timesteps(model_path: Path) -> int:
    """Timesteps a saved SB3 model was trained for."""
    from stable_baselines3.common.save_util import load_from_zip_file

    data, _, _ = load_from_zip_file(str(model_path), load_data=True, device="cpu")
    return int((data or {}).get("num_timesteps", 0))


def _finished_trial(tdir: Path, hp_text: str, timesteps: int) -> Path | None:
    """The trial's model if an earlier run finished it with the same entry and budget."""
    model, hp_file = tdir / "run" / "model.zip", tdir / "hyperparams.yml"
    if (
        model.is_file()
        and hp_file.is_file()
        and hp_file.read_text() == hp_text
        and _timesteps(model) >= timesteps
    ):
        return model
    return None


def _previous_train_walls(trials_csv: Path) -> dict[int, float]:
    """Training wall time per trial recorded by an earlier run (``{}`` without one)."""
    walls: dict[int, float] = {}
    for r in read_results(trials_csv, required=()):
        try:
            walls[int(r["trial"])] = float(r["train_wall_s"])
        except (KeyError, ValueError):
            pass
    return walls


def main(ns: argparse.Namespace) -> int:
    """Runs the search."""
    from disagg_gym_agents.base import make_env, parse_overrides
    from disagg_gym_agents.cli import TrainArgs
    from disagg_gym_agents.evaluation import KPI_SUMMARY_KEYS, evaluate, rows_to_csv, summarize
    from disagg_gym_agents.hparams import dump_hyperparams_yaml, load_hyperparams
    from disagg_gym_agents.ppo import train
    from disagg_gym_agents.factory import make_policy
    from disagg_gym.io import atomic_write_json, atomic_write_text

    args: Args = dataclass_from_namespace(Args, ns)
    out = Path(args.out)
    overrides = parse_overrides(args.overrides)
    base_hp, entry = load_hyperparams(args.algo, args.env)
    probe = make_env(args.env, overrides)
    metric = args.metric or probe.unwrapped.scenario.primary_metric
    probe.close()
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    print(
        f"tuning {args.algo} on {args.env} (base entry {entry!r}); metric {metric} "
        f"({'lower' if sign < 0 else 'higher'} is better); {args.trials} {args.mode} trial(s)"
    )

    rows: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    space = parse_space(args.space, args.only_space)
    if not space:
        raise ValueError("--only-space needs at least one --space KEY=V1,V2,...")
    if args.max_wall_s is not None and not 0 < args.max_wall_s < float("inf"):
        raise ValueError(f"--max-wall-s must be a positive number (got {args.max_wall_s!r})")
    prev_wall = _previous_train_walls(out / "trials.csv")
    for k, cand in enumerate(candidates(args.mode, args.trials, args.seed, space)):
        hp = apply_candidate(base_hp, cand)
        # n_steps must stay a multiple of batch_size for full minibatches.
        hp["batch_size"] = min(int(hp.get("batch_size", 64)), int(hp.get("n_steps", 2048)))
        tdir = out / f"trial_{k}"
        hp_text = dump_hyperparams_yaml({args.env: hp})
        t0 = time.perf_counter()
        reused = _finished_trial(tdir, hp_text, args.timesteps)
        if reused is not None:  # score it, don't retrain
            model_path = reused
            print(f"trial {k}: reusing {reused}")
        else:
            if (tdir / "run").exists():
                shutil.rmtree(tdir / "run")  # an unfinished or different earlier trial
            atomic_write_text(tdir / "hyperparams.yml", hp_text)
            model_path = train(
                TrainArgs(
                    env=args.env,
                    algo=args.algo,
                    timesteps=args.timesteps,
                    seed=args.seed,
                    out=str(tdir / "run"),
                    overrides=list(args.overrides),
                    hyperparams=str(tdir / "hyperparams.yml"),
                    eval_freq=0,
                    checkpoint_freq=max(args.timesteps, 1),
                    keep_checkpoints=1,
                    progress_bar=False,
                    max_wall_s=args.max_wall_s,
                )
            )
        train_s = time.perf_counter() - t0
        if reused is not None:  # report the training time, not the reuse check
            train_s = prev_wall.get(k, train_s)
        env = make_env(args.env, overrides)
        try:
            policy = make_policy(f"sb3:{model_path}", env)
            ep_rows = evaluate(policy, env, args.eval_episodes, VALIDATION_SEED_OFFSET)
        finally:
            env.close()
        stats = summarize(ep_rows, tuple(dict.fromkeys([metric, *KPI_SUMMARY_KEYS])))
        score = stats.get(metric, {}).get("mean", float("nan"))
        row = {
            "trial": k,
            **cand,
            "batch_size": hp["batch_size"],
            "score": score,
            "metric": metric,
            "train_wall_s": round(train_s, 1),
            "train_timesteps": _timesteps(model_path),
            **{f"{key}_mean": s["mean"] for key, s in stats.items()},
        }
        rows.append(row)
        atomic_write_text(out / "trials.csv", rows_to_csv(rows))
        print(f"trial {k}: {json.dumps(cand)} -> {metric} {score:.4g} ({train_s:.0f} s)")
        if np.isfinite(score) and (best is None or sign * score > sign * best["score"]):
            best = {"trial": k, "score": score, "metric": metric, "hyperparams": hp}
            atomic_write_text(out / "best.yml", dump_hyperparams_yaml({args.env: hp}))
            atomic_write_json(out / "best.json", best)
    if best is None:
        print("no trial produced a finite score", file=sys.stderr)
        return 1
    print(f"best: trial {best['trial']} {metric} {best['score']:.4g} -> {out / 'best.yml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, Args, "tune.py", __doc__ or ""))
