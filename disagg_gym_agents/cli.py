"""``disagg-gym train`` and ``disagg-gym evaluate``: their options and command functions.

This module imports no torch / SB3 at import time (the trainers do), so building the
``disagg-gym`` parser stays fast and works without the ``[rl]`` extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from disagg_gym.errors import UserError
from disagg_gym.extras import require
from disagg_gym.io import check_output_file, describe_os_error
from disagg_gym_agents.args import (  # noqa: F401  (re-exported: they used to live here)
    EvalArgs,
    TrainArgs,
    add_dataclass_args,
    arg_meta,
    dataclass_from_namespace,
)
from disagg_gym_agents.base import check_env_id, make_env, parse_overrides
from disagg_gym_agents.evaluation import evaluate, format_summary, rows_to_csv, summarize, write_csv
from disagg_gym_agents.factory import make_policy
from disagg_gym_agents.leaderboard.runner import load_tuned
from disagg_gym_agents.registry import add_import_arg, check_policy_spec, import_policy_modules, parse_policy_spec
from disagg_gym_agents.tuning import params_json, params_of
from disagg_gym_agents.rllib_train import RLlibTrainArgs, add_train_rllib_args, cmd_train_rllib


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``disagg-gym train`` (``TrainArgs``, plus the RLlib backend's options)."""
    add_dataclass_args(parser, TrainArgs)
    parser.add_argument(
        "--backend", choices=("sb3", "rllib"), default="sb3",
        help="trainer: sb3 (PPO/MaskablePPO) or rllib (needs the [ray] extra)",
    )
    add_train_rllib_args(parser)


def add_evaluate_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``disagg-gym evaluate`` (``EvalArgs``, and ``--import``)."""
    add_dataclass_args(parser, EvalArgs)
    add_import_arg(parser)


# ====================================================================== commands
def cmd_train(args: argparse.Namespace | TrainArgs) -> int:
    """Trains PPO / MaskablePPO (see ``disagg_gym_agents.ppo.train``) and prints where the model went."""
    if getattr(args, "backend", "sb3") == "rllib":
        if isinstance(args, argparse.Namespace):
            _refuse_other_backend_options(args, "rllib")
            args.env = check_env_id(args.env)
            # train's --checkpoint-freq counts timesteps (its help); RLlib checkpoints every N
            # iterations of train_batch_size steps (10,000 iterations meant: only the last one)
            args.checkpoint_freq = max(1, args.checkpoint_freq // args.train_batch_size)

        return cmd_train_rllib(args)
    if isinstance(args, argparse.Namespace):
        _refuse_other_backend_options(args, "sb3")
    require("rl", "torch", "stable_baselines3", "sb3_contrib")
    from disagg_gym_agents.ppo import train  # torch + SB3: the [rl] extra

    targs = args if isinstance(args, TrainArgs) else dataclass_from_namespace(TrainArgs, args)
    targs = dataclasses.replace(targs, env=check_env_id(targs.env))  # config names too
    path = train(targs)
    print(f"model: {path}")
    tb = Path(path).parent / "tb"
    invoked = _invoked_path()
    prog = shlex.quote(invoked) if invoked else "disagg-gym"
    venv_board = Path(invoked).parent / "tensorboard" if invoked and "/" in invoked else None
    board = shlex.quote(str(venv_board)) if venv_board is not None and venv_board.is_file() else "tensorboard"
    print(f"tensorboard logs: {tb}  (view: {board} --logdir {tb})")
    # The model's spaces follow the env it trained on: evaluate it with the same overrides. A
    # model trained on a short variant is evaluated on the full-horizon id (docs/envs.md).
    over = "".join(f" --overrides {shlex.quote(o)}" for o in targs.overrides)
    env = re.sub(r"-short(-v\d+)$", r"\1", targs.env)
    print(
        f"next: {prog} evaluate --env {env} --policy sb3:{path} --episodes 5"
        f"{over} --out {Path(path).parent / 'eval.csv'}"
    )
    return 0


def _refuse_other_backend_options(args: argparse.Namespace, backend: str) -> None:
    """One line for an option (off its default) of the other backend: it was ignored (an sb3 run
    trains with its hyperparameter file's values; an rllib run has no --hyperparams, --n-envs,
    --resume or --algo).
    """
    own, other = (TrainArgs, RLlibTrainArgs) if backend == "sb3" else (RLlibTrainArgs, TrainArgs)
    shared = {f.name for f in dataclasses.fields(own)}
    for f in dataclasses.fields(other):
        if f.name in shared or not hasattr(args, f.name):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        value = getattr(args, f.name)
        if value != default:
            flag = "--" + f.name.replace("_", "-")
            why = ("the sb3 backend, whose hyperparameters come from --hyperparams" if backend == "sb3"
                   else "--backend rllib, which takes its PPO settings from its own options (--lr, --gamma, ...)")
            raise UserError(f"{flag} applies only to --backend {'rllib' if backend == 'sb3' else 'sb3'} "
                            f"(got {flag} {value!r} with {why})")


def _invoked_path() -> str | None:
    """The path this command was run by when it is the ``disagg-gym`` script (``.venv/bin/disagg-gym``),
    else ``None``: the commands it suggests then start the same way and can be pasted without
    activating the venv.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "disagg-gym" else None


def cmd_evaluate(args: argparse.Namespace | EvalArgs) -> int:
    """Evaluates one policy on workload seeds S, S+1, ...; writes the CSV and prints a summary."""
    import_policy_modules(getattr(args, "imports", None) or [])
    eargs = args if isinstance(args, EvalArgs) else dataclass_from_namespace(EvalArgs, args)
    if eargs.episodes < 1:
        raise UserError(f"episodes must be a positive integer (got {eargs.episodes!r})")
    eargs = dataclasses.replace(eargs, env=check_env_id(eargs.env))  # config names too
    check_policy_spec(eargs.policy)
    if eargs.out:
        check_output_file(eargs.out, "--out")  # before the episodes, not after
    if eargs.policy.startswith("sb3:"):
        require("rl", "torch", "stable_baselines3", "sb3_contrib")
        import torch

        # one decision per forward pass: more threads only add synchronisation (and thrash
        # when other jobs share the cores)
        torch.set_num_threads(eargs.threads)
    params = _tuned_params(eargs)
    env = make_env(eargs.env, parse_overrides(eargs.overrides))
    # Rows and the summary name the env that ran: with --overrides that changed the config its
    # own id (disagg/<Name>-custom-<hash>-v<N>, docs/envs.md), never the standard one.
    eargs = dataclasses.replace(eargs, env=env.spec.id if env.spec is not None else eargs.env)
    try:
        policy = make_policy(eargs.policy, env, seed=eargs.seed, **params)
        label = policy.describe() + (f" {params_json(params)}" if params else "")

        finished: list[dict[str, Any]] = []

        def show(row: dict[str, Any]) -> None:
            finished.append(row)
            if not eargs.json:
                print(
                    f"episode {row['episode']:>3d}  seed {row['workload_seed']}  "
                    f"slo_tokens_per_s {row.get('slo_tokens_per_s')}  goodput {row.get('goodput_rps')}  "
                    f"slo {row.get('slo_attainment')}  return {row['return']:.2f}"
                )

        try:
            rows = evaluate(
                policy,
                env,
                eargs.episodes,
                eargs.seed_offset,
                deterministic=not eargs.stochastic,
                on_episode=show,
            )
        except KeyboardInterrupt:
            if eargs.out and finished:  # nothing already computed is lost
                write_csv(_with_columns(finished, eargs, policy, params), eargs.out)
                print(f"interrupted: the {len(finished)} finished episode(s) are in {eargs.out}", file=sys.stderr)
            raise
    finally:
        env.close()
    rows = _with_columns(rows, eargs, policy, params)
    if eargs.out:
        try:
            write_csv(rows, eargs.out)
        except OSError as exc:  # the path went bad while the episodes ran: keep the rows
            kept = _salvage_rows(rows)
            raise UserError(
                f"--out: {describe_os_error(exc)}; the {len(rows)} episode rows were written to {kept}"
            ) from None
    stats = summarize(rows)
    if eargs.json:
        print(
            json.dumps(
                {
                    "env_id": eargs.env,
                    "policy": eargs.policy,
                    "episodes": len(rows),
                    "summary": stats,
                },
                sort_keys=True,
            )
        )
    else:
        print(format_summary(f"{eargs.env}  {label}", stats, len(rows)))
        if eargs.out:
            print(f"csv: {eargs.out}")
    return 0


def _with_columns(rows: list[dict[str, Any]], eargs: EvalArgs, policy: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Episode rows with the CSV's leading columns (env id, policy, bound flag, params)."""
    return [
        {"env_id": eargs.env, "policy": eargs.policy, "upper_bound": policy.upper_bound,
         "params": params_json(params), **r}
        for r in rows
    ]


def _tuned_params(eargs: EvalArgs) -> dict[str, Any]:
    """The heuristic's params from ``--tuned`` for this env's config (``{}``: none, or no file).

    Only an entry tuned on the config as written binds (as in ``benchmark``).
    """
    if eargs.tuned is None:
        return {}
    kind, name = parse_policy_spec(eargs.policy)  # a bare name is a heuristic, as without --tuned
    if kind != "heuristic":
        raise UserError(f"--tuned binds heuristics' params; {eargs.policy!r} is not a heuristic")
    return params_of(load_tuned(eargs.tuned), eargs.env, name, as_written=True)


def _salvage_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Writes evaluation rows to a fresh file in the temp folder; returns its path."""
    fd, path = tempfile.mkstemp(prefix="disagg-gym-evaluate-", suffix=".csv")
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(rows_to_csv(rows))
    return path


def run_script(
    cmd: Callable[[argparse.Namespace], int],
    cls: type,
    prog: str,
    description: str,
    argv: Sequence[str] | None = None,
) -> int:
    """Entry point of ``scripts/*.py``: parses options, runs ``cmd``, reports user errors."""
    # the description is a module docstring: keep its example lines as written
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(parser, cls)
    ns = parser.parse_args(argv)
    try:
        return int(cmd(ns) or 0)
    except UserError as exc:  # bad ids, paths, overrides, hyperparameters (ConfigError too)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
