"""Trains (or resumes) SB3 PPO / sb3-contrib MaskablePPO on a disagg-gym env: ``train()``.

Hyperparameters come from ``disagg_gym_agents.hparams`` (RL Zoo-style YAML), envs from
``disagg_gym_agents.vec_env``. Workload seeds: training envs draw each episode's workload seed
from ``[TRAIN_SEED_LOW, 2**31 - 1)``; the periodic evaluation (and ``best_model.zip``) runs the
validation seeds ``VALIDATION_SEED_OFFSET + k`` (20000+), the same ones every time, never the
test seeds ``EVAL_SEED_OFFSET + k`` the leaderboard reports (``disagg_gym.wrappers.workload_seeds``,
issue #15).
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from disagg_gym.errors import UserError
from disagg_gym.io import atomic_write_json, check_output_dir, exclusive_lock
from disagg_gym.wrappers.shaping import QueueShaping
from disagg_gym.wrappers.workload_seeds import TRAIN_SEED_LOW, VALIDATION_SEED_OFFSET
from disagg_gym_agents.args import TrainArgs
from disagg_gym_agents.base import check_env_id, make_env, parse_overrides
from disagg_gym_agents.base import package_versions as base_package_versions
from disagg_gym_agents.callbacks import (
    AtomicCheckpoint,
    KPIEvalCallback,
    KPILogger,
    MaskableKPIEvalCallback,
    WallClockBudget,
    latest_checkpoint,
    list_checkpoints,
    save_model_atomic,
    vecnormalize_path,
)
from disagg_gym_agents.hparams import (
    algo_class,
    hyperparams_file,
    load_hyperparams,
    resolve_hyperparams,
)
from disagg_gym_agents.policies import layout_of, resolve_policy
from disagg_gym_agents.vec_env import make_vec_env

VERSION_PACKAGES = ("disagg-gym", "gymnasium", "stable-baselines3", "sb3-contrib", "torch", "numpy")


# ====================================================================== training
def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on (plus Python)."""
    return base_package_versions(VERSION_PACKAGES)


def default_out(args: TrainArgs) -> Path:
    """``runs/<algo>/<EnvName>_s<seed>``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.env.split("/")[-1])
    return Path("runs") / args.algo / f"{name}_s{args.seed}"


def _validate(args: TrainArgs) -> None:
    algo_class(args.algo)
    check_env_id(args.env)
    for name in ("timesteps", "n_envs"):
        v = getattr(args, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UserError(f"{name} must be a positive integer (got {v!r})")
    for name in ("eval_episodes", "checkpoint_freq", "keep_checkpoints", "threads"):
        v = getattr(args, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{name} must be a positive integer (got {v!r})")
    if args.max_wall_s is not None and not 0 < args.max_wall_s < float("inf"):
        raise UserError(f"max_wall_s must be a positive number (got {args.max_wall_s!r})")
    for name in ("seed", "eval_freq"):
        v = getattr(args, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"{name} must be a non-negative integer (got {v!r})")
    if args.seed > 2**32 - 1:  # SB3 seeds numpy's legacy generator, which takes 32 bits
        raise UserError(f"seed must be at most {2**32 - 1} (got {args.seed})")


def train(args: TrainArgs, extra_callbacks: list[BaseCallback] | None = None) -> Path:
    """Trains (or resumes) a PPO / MaskablePPO agent; returns the final model path.

    Writes into ``args.out``: ``config.json`` (resolved hyperparameters, arguments, package
    versions), ``checkpoints/ckpt_<timesteps>.zip`` (atomic, every ``checkpoint_freq``
    timesteps, at the end and on Ctrl-C), ``best_model.zip`` (best held-out evaluation),
    ``evaluations.npz``, ``tb/<algo>_1/`` (TensorBoard: SB3 scalars, ``kpi/*``, ``eval/kpi/*``)
    and ``model.zip``.

    Args:
        args: Training arguments.
        extra_callbacks: More SB3 callbacks (tests, tuning).

    Raises:
        ValueError: Bad arguments, hyperparameters or env overrides; ``--resume`` without a
            checkpoint; a fresh run into a folder that already holds one; a resume whose env or
            algorithm differs from the run's ``config.json``; another train writing to the folder;
            a run that diverged (a policy parameter NaN or infinite; no model.zip is written).
    """
    _validate(args)
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else default_out(args)
    check_output_dir(out, "--out")  # before any work (issue #17)
    # One process per run folder: a second `train --out` into it checked "already holds a run"
    # before the first had written anything, then both wrote the same files.
    busy = f"--out {str(out)!r}: another train is writing to this run folder"
    with exclusive_lock(out / ".train.lock", busy=busy), _unchecked_distributions():
        return _train(args, out, extra_callbacks)


@contextlib.contextmanager
def _unchecked_distributions() -> Iterator[None]:
    """Builds torch distributions without checking their parameters, for the ``with`` block.

    MaskablePPO builds ``Categorical`` distributions three times per action dimension and step
    (sb3-contrib's masked distribution re-initialises them), and torch checks each one's logits
    by default: about 8 % of a SmallRoute training step's CPU (8,192 steps, 3 alternating runs:
    11.3 vs 10.4 CPU-s). The check computes nothing the run uses, so the trained weights are bit
    for bit the same (``tests/agents/test_training.py``). A diverged run (NaN weights) still
    stops with one line: :func:`_check_finite`. The previous default is restored after.
    """
    dist = torch.distributions.Distribution
    before = dist._validate_args
    dist.set_default_validate_args(False)
    try:
        yield
    finally:
        dist.set_default_validate_args(before)


def _train(args: TrainArgs, out: Path, extra_callbacks: list[BaseCallback] | None) -> Path:
    """``train`` once the run folder ``out`` is checked and held."""
    ckpt_dir = out / "checkpoints"
    hp, entry = load_hyperparams(args.algo, args.env, args.hyperparams)
    algo_kwargs, extras = resolve_hyperparams(hp)
    # The entry's env_overrides (e.g. the reward's outcome unit), then --overrides on top.
    overrides = {**extras["env_overrides"], **parse_overrides(args.overrides)}
    n_envs = args.n_envs or extras["n_envs"]
    rollout = int(algo_kwargs.get("n_steps", 2048)) * n_envs  # SB3 PPO's defaults
    batch = int(algo_kwargs.get("batch_size", 64))
    if algo_kwargs.get("normalize_advantage", True) and (rollout == 1 or rollout % batch == 1):
        # a mini-batch of one advantage normalises to NaN (MaskablePPO's logits then fail in torch)
        raise UserError(
            f"n_steps x n_envs = {rollout} leaves a last mini-batch of 1 with batch_size {batch} while "
            "advantages are normalised: change n_steps, n_envs or batch_size"
        )
    total = args.timesteps or extras["n_timesteps"]
    norm = extras["normalize"]

    ckpt = latest_checkpoint(ckpt_dir) if args.resume else None
    prev: dict[str, Any] | None = None
    if args.resume:
        if ckpt is None:
            raise UserError(f"--resume: no checkpoint in {str(ckpt_dir)!r}")
        prev = _read_config(out / "config.json")
        for key, now in (("env_id", args.env), ("algo", args.algo), ("overrides", overrides)):
            if prev and prev.get(key) not in (None, now):
                flag = "--overrides" if key == "overrides" else key
                raise UserError(
                    f"--resume: {out} was trained with {key} {prev.get(key)!r} (got {now!r}); "
                    f"resume with the same {flag} or train into another --out"
                )
        if prev and isinstance(prev.get("hyperparams"), dict):
            # the checkpoint carries the first run's hyperparameters (SB3's load keeps them):
            # another file or entry would be recorded as used while the old ones train on
            was = _comparable(prev["hyperparams"])
            now_hp = _comparable(hp)
            if was != now_hp:
                diff = sorted(k for k in was.keys() | now_hp.keys() if was.get(k) != now_hp.get(k))
                raise UserError(
                    f"--resume: {out} was trained with other hyperparameters ({', '.join(diff)}: "
                    f"{', '.join(f'{k} {was.get(k)!r} -> {now_hp.get(k)!r}' for k in diff[:3])}); "
                    "resume with the run's --hyperparams file and entry, or train into another --out"
                )
        ckpt = readable_checkpoint(ckpt_dir)
    elif (out / "config.json").exists() or latest_checkpoint(ckpt_dir) is not None:
        raise UserError(f"{str(out)!r} already holds a run; pass --resume or choose another --out")

    cls = algo_class(args.algo)
    for wcls, wkw in extras["env_wrapper"]:
        if wcls is QueueShaping:  # shaping must discount like the algorithm does
            wkw.setdefault("gamma", float(algo_kwargs.get("gamma", 0.99)))
    venv = make_vec_env(
        args.env,
        overrides,
        n_envs=n_envs,
        seed=args.seed,
        vec_env=args.vec_env,
        wrappers=extras["env_wrapper"],
    )
    eval_env: VecEnv | None = None
    if args.eval_freq > 0:
        eval_env = make_vec_env(
            args.env,
            overrides,
            n_envs=1,
            seed=args.seed,
            held_out=args.eval_episodes,
            held_out_offset=VALIDATION_SEED_OFFSET,
        )
    if norm is not None:
        if ckpt is not None and vecnormalize_path(ckpt).is_file():
            venv = VecNormalize.load(str(vecnormalize_path(ckpt)), venv)
            venv.training = True
        else:
            venv = VecNormalize(venv, **norm)
        if eval_env is not None:
            eval_env = VecNormalize(
                eval_env, training=False, norm_obs=norm.get("norm_obs", True), norm_reward=False
            )
    tb_dir = out / "tb"
    if ckpt is not None:
        model = cls.load(
            str(ckpt), env=venv, device="cpu", tensorboard_log=str(tb_dir), verbose=args.verbose
        )
        model.set_random_seed((args.seed + model.num_timesteps) % 2**32)  # numpy legacy seeding takes 32 bits
    else:
        policy = resolve_policy(extras["policy"], maskable=cls is MaskablePPO)
        if not isinstance(policy, str):  # instance policies need the env's layout
            probe = make_env(args.env, overrides)
            pk = dict(algo_kwargs.get("policy_kwargs") or {})
            pk["layout"] = layout_of(probe)
            algo_kwargs["policy_kwargs"] = pk
            probe.close()
        model = cls(
            policy,
            venv,
            seed=args.seed,
            verbose=args.verbose,
            tensorboard_log=str(tb_dir),
            device="cpu",
            **algo_kwargs,
        )
    start_steps = int(model.num_timesteps)
    # PPO collects whole rollouts of n_steps x n_envs and stops after the first that reaches the
    # budget: round the budget up to that, so the progress bar's total and config.json's
    # n_timesteps are the count actually run (issue #20).
    rollout = int(getattr(model, "n_steps", 1)) * int(model.n_envs)
    remaining = -(-(total - start_steps) // rollout) * rollout if total > start_steps else 0
    run_total = start_steps + remaining

    config = {
        "env_id": args.env,
        "algo": args.algo,
        "args": {**vars(args), "out": str(out)},
        "overrides": overrides,
        "hyperparams_file": str(
            Path(args.hyperparams) if args.hyperparams else hyperparams_file(args.algo)
        ),
        "hyperparams_entry": entry,
        "hyperparams": {**hp, "n_envs": n_envs, "n_timesteps": run_total},
        "n_timesteps_requested": total,
        "env_wrappers": [{f"{w.__module__}.{w.__name__}": kw} for w, kw in extras["env_wrapper"]],
        "versions": package_versions(),
        "eval_workload_seeds": [VALIDATION_SEED_OFFSET + k for k in range(args.eval_episodes)]
        if eval_env
        else [],
        "train_workload_seeds": (
            f"drawn per episode from [{TRAIN_SEED_LOW}, {2**31 - 1}) "
            "by a generator seeded with seed + env index"
        ),
        "resumed_from": str(ckpt) if ckpt else None,
        "start_timesteps": start_steps,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(out / "config.json", run_record(prev, config))

    checkpointer = AtomicCheckpoint(
        ckpt_dir, max(args.checkpoint_freq // n_envs, 1), keep_last=args.keep_checkpoints
    )
    callbacks: list[BaseCallback] = [KPILogger(), checkpointer]
    if args.max_wall_s is not None:
        callbacks.append(WallClockBudget(args.max_wall_s))
    if eval_env is not None:
        eval_cls = MaskableKPIEvalCallback if cls is MaskablePPO else KPIEvalCallback
        callbacks.append(
            eval_cls(
                eval_env,
                n_eval_episodes=args.eval_episodes,
                eval_freq=max(args.eval_freq // n_envs, 1),
                log_path=str(out),
                save_dir=out,
                deterministic=True,
                verbose=args.verbose,
                warn=False,
            )
        )
    callbacks += extra_callbacks or []
    try:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=callbacks,
                progress_bar=args.progress_bar,
                reset_num_timesteps=ckpt is None,
                tb_log_name=args.algo,
            )
    except KeyboardInterrupt:
        checkpointer.model = model
        checkpointer.save()
        raise
    except RuntimeError:
        _check_finite(model)  # NaN weights make torch's sampling fail: say so
        raise
    finally:
        venv.close()
        if eval_env is not None:
            eval_env.close()
    _check_finite(model)
    checkpointer.model = model
    checkpointer.save()
    return save_model_atomic(model, out / "model.zip")


def _check_finite(model: Any) -> None:
    """Raises ``UserError`` if training diverged: a policy parameter is NaN or infinite.

    Distributions are built unchecked (:func:`_unchecked_distributions`), so NaN logits are not
    stopped where torch would check them; this check runs when ``learn`` ends or fails, before
    ``model.zip`` or a final checkpoint is written (the periodic checkpoints stay).
    """
    bad = [name for name, p in model.policy.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise UserError(
            f"training diverged at {model.num_timesteps} timesteps: {len(bad)} policy parameter tensors are not "
            f"finite (first: {bad[0]!r}); model.zip not written. Try a lower learning_rate or max_grad_norm"
        )


def _comparable(hp: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as ``config.json`` stores them, less what a resume may change (the
    budget, ``n_timesteps``; the env count, ``n_envs``).
    """
    plain = json.loads(json.dumps(hp, default=str))
    return {k: v for k, v in plain.items() if k not in ("n_timesteps", "n_envs")}


HISTORY_KEYS = ("started_at", "start_timesteps", "resumed_from", "args", "hyperparams", "versions")
"""What ``config.json``'s ``history`` keeps of each invocation (first run, then each resume)."""


def run_record(prev: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` of a run: the latest invocation's record plus a ``history`` list.

    The top level describes the latest invocation (``resumed_from``, ``start_timesteps``, its
    arguments); ``history`` holds one entry (``HISTORY_KEYS``) per invocation, the first run's
    first, so a resume never loses the original start time or arguments (issue #17). A
    ``prev`` written before histories existed becomes the first entry. Overrides cannot differ
    between entries: a resume with other overrides is refused.
    """
    entry = {k: now.get(k) for k in HISTORY_KEYS}
    if prev is None:
        return {**now, "history": [entry]}
    history = list(prev.get("history") or [{k: prev.get(k) for k in HISTORY_KEYS}])
    return {**now, "history": [*history, entry]}


def readable_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint in ``folder`` that loads; says on stderr which ones it skipped."""
    skipped = 0
    for _, path in reversed(list_checkpoints(folder)):
        try:
            load_from_zip_file(str(path), load_data=True, device="cpu")
        except Exception as exc:  # noqa: BLE001 - any failure to read means "corrupt, skip it"
            print(
                f"disagg-gym: warning: checkpoint {path} is unreadable "
                f"({type(exc).__name__}: {str(exc)[:80]}); trying an older one",
                file=sys.stderr,
            )
            skipped += 1
            continue
        if skipped:
            print(f"disagg-gym: warning: resuming from {path}", file=sys.stderr)
        return path
    raise UserError(f"--resume: no readable checkpoint in {str(folder)!r}")


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
