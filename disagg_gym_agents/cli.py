"""Command-line surface of the agents: argument dataclasses, parsers, ``train`` and ``evaluate``.

The argument dataclasses are the single source of truth for ``disagg-gym train|evaluate``
and ``scripts/train.py|evaluate.py``: ``add_dataclass_args`` turns their fields (with
``metadata["help"]``) into argparse options. This module imports no torch / SB3 at import
time, so building the ``disagg-gym`` parser stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET
from disagg_gym.cli import nonneg_int, positive_float, positive_int  # noqa: F401  (shared argparse types)
from disagg_gym.errors import UserError

T = TypeVar("T")


# ====================================================================== value types
def arg_meta(help: str, **kw: Any) -> dict[str, Any]:
    """Field metadata for ``add_dataclass_args``: help text plus optional ``choices`` / ``type``."""
    return {"help": help, **kw}


# ====================================================================== argument dataclasses
@dataclass
class TrainArgs:
    """Arguments of ``disagg-gym train`` / ``scripts/train.py``."""

    env: str = field(
        default="disagg/SmallRoute-v2",
        metadata=arg_meta("registered env id (see `disagg-gym list`)", metavar="ID"),
    )
    algo: str = field(
        default="maskable_ppo", metadata=arg_meta("algorithm", choices=("ppo", "maskable_ppo"))
    )
    timesteps: int | None = field(
        default=None,
        metadata=arg_meta("total timesteps (default: the YAML's n_timesteps)", type=positive_int),
    )
    seed: int = field(
        default=0,
        metadata=arg_meta(
            "seed of torch, the policy and the training workload seeds", type=nonneg_int
        ),
    )
    out: str | None = field(
        default=None,
        metadata=arg_meta("run folder (default: runs/<algo>/<EnvName>_s<seed>)", metavar="DIR"),
    )
    overrides: list[str] = field(
        default_factory=list,
        metadata=arg_meta(
            "env override KEY=VALUE (dotted), repeatable, e.g. horizon_s=30", metavar="KEY=VALUE"
        ),
    )
    hyperparams: str | None = field(
        default=None,
        metadata=arg_meta(
            "RL Zoo-style YAML (default: disagg_gym_agents/hyperparams/<algo>.yml)", metavar="YAML"
        ),
    )
    n_envs: int | None = field(
        default=None,
        metadata=arg_meta("parallel envs (default: the YAML's n_envs)", type=positive_int),
    )
    vec_env: str = field(
        default="dummy", metadata=arg_meta("vectorisation", choices=("dummy", "subproc"))
    )
    eval_freq: int = field(
        default=10_000,
        metadata=arg_meta("timesteps between held-out evaluations (0: none)", type=nonneg_int),
    )
    eval_episodes: int = field(
        default=3, metadata=arg_meta("held-out episodes per evaluation", type=positive_int)
    )
    checkpoint_freq: int = field(
        default=10_000, metadata=arg_meta("timesteps between checkpoints", type=positive_int)
    )
    keep_checkpoints: int = field(
        default=3, metadata=arg_meta("checkpoints kept in DIR/checkpoints", type=positive_int)
    )
    resume: bool = field(
        default=False, metadata=arg_meta("continue from the latest checkpoint in --out")
    )
    progress_bar: bool = field(default=True, metadata=arg_meta("show a progress bar"))
    threads: int = field(default=1, metadata=arg_meta("torch threads", type=positive_int))
    max_wall_s: float | None = field(
        default=None,
        metadata=arg_meta(
            "stop training after this many wall-clock seconds (then save)", type=positive_float
        ),
    )
    verbose: int = field(default=0, metadata=arg_meta("SB3 verbosity (0, 1, 2)", type=nonneg_int))


@dataclass
class EvalArgs:
    """Arguments of ``disagg-gym evaluate`` / ``scripts/evaluate.py``."""

    env: str = field(
        default="disagg/SmallRoute-v2",
        metadata=arg_meta("registered env id (see `disagg-gym list`)", metavar="ID"),
    )
    policy: str = field(
        default="heuristic:jsq",
        metadata=arg_meta("heuristic:NAME or sb3:PATH/model.zip", metavar="SPEC"),
    )
    episodes: int = field(
        default=5, metadata=arg_meta("episodes (workload seeds S, S+1, ...)", type=positive_int)
    )
    seed_offset: int = field(
        default=EVAL_SEED_OFFSET,
        metadata=arg_meta("first workload seed S (held-out seeds start at 10000)", type=nonneg_int),
    )
    out: str | None = field(
        default=None,
        metadata=arg_meta("CSV path: one row per episode with every KPI", metavar="CSV"),
    )
    overrides: list[str] = field(
        default_factory=list,
        metadata=arg_meta("env override KEY=VALUE (dotted), repeatable", metavar="KEY=VALUE"),
    )
    seed: int = field(
        default=0,
        metadata=arg_meta("seed of the policy's own randomness (random, p2c)", type=nonneg_int),
    )
    stochastic: bool = field(
        default=False, metadata=arg_meta("sample learned policies' actions instead of argmax")
    )
    json: bool = field(default=False, metadata=arg_meta("print the summary as JSON"))
    threads: int = field(
        default=1, metadata=arg_meta("torch threads of learned policies", type=positive_int)
    )


# ====================================================================== dataclass <-> argparse
def add_dataclass_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one ``--kebab-case`` option per field of dataclass ``cls``.

    ``bool`` fields become ``--x/--no-x``; ``list[str]`` fields are repeatable; ``metadata``
    may give ``help``, ``choices`` and an argparse ``type``.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        meta = dict(f.metadata)
        default = f.default if f.default is not dataclasses.MISSING else None
        kw: dict[str, Any] = {"dest": f.name, "help": meta.get("help", "")}
        if "choices" in meta:
            kw["choices"] = meta["choices"]
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **kw)
            continue
        if typing.get_origin(tp) is list:
            kw["help"] += " (repeatable)" if "repeatable" not in kw["help"] else ""
            kw.setdefault("metavar", "VALUE")
            parser.add_argument(flag, action="append", default=None, **kw)
            continue
        base = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        kw["type"] = meta.get("type", base[0] if base[0] in (int, float, str) else str)
        if "metavar" not in kw and base[0] is int:
            kw["metavar"] = "N"
        if default is not None:
            kw["help"] += f" (default: {default})"
        parser.add_argument(flag, default=default, **kw)


def dataclass_from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    """Builds ``cls`` from parsed arguments (missing list options become empty lists)."""
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        v = getattr(ns, f.name, None)
        if v is None and f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            v = f.default_factory()  # type: ignore[misc]
        elif v is None and f.default is not dataclasses.MISSING:
            v = f.default
        kwargs[f.name] = v
    return cls(**kwargs)


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``disagg-gym train`` (``TrainArgs``, plus the RLlib backend's options)."""
    add_dataclass_args(parser, TrainArgs)
    parser.add_argument(
        "--backend", choices=("sb3", "rllib"), default="sb3",
        help="trainer: sb3 (PPO/MaskablePPO) or rllib (needs the [ray] extra)",
    )
    from disagg_gym_agents.rllib_train import add_train_rllib_args

    add_train_rllib_args(parser)


def add_evaluate_args(parser: argparse.ArgumentParser) -> None:
    """Options of ``disagg-gym evaluate`` (``EvalArgs``)."""
    add_dataclass_args(parser, EvalArgs)


# ====================================================================== commands
def cmd_train(args: argparse.Namespace | TrainArgs) -> int:
    """Trains PPO / MaskablePPO (see ``disagg_gym_agents.ppo.train``) and prints where the model went."""
    if getattr(args, "backend", "sb3") == "rllib":
        from disagg_gym_agents.rllib_train import cmd_train_rllib

        return cmd_train_rllib(args)
    from disagg_gym_agents.ppo import train

    targs = args if isinstance(args, TrainArgs) else dataclass_from_namespace(TrainArgs, args)
    path = train(targs)
    print(f"model: {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace | EvalArgs) -> int:
    """Evaluates one policy on workload seeds S, S+1, ...; writes the CSV and prints a summary."""
    from disagg_gym_agents.base import check_env_id, make_env, parse_overrides
    from disagg_gym_agents.evaluation import evaluate, format_summary, summarize, write_csv
    from disagg_gym_agents.registry import check_policy_spec, make_policy

    eargs = args if isinstance(args, EvalArgs) else dataclass_from_namespace(EvalArgs, args)
    if eargs.episodes < 1:
        raise UserError(f"episodes must be a positive integer (got {eargs.episodes!r})")
    check_env_id(eargs.env)
    check_policy_spec(eargs.policy)
    if eargs.out:
        from disagg_gym.io import check_output_file

        check_output_file(eargs.out, "--out")  # before the episodes, not after
    if eargs.policy.startswith("sb3:"):
        import torch

        # one decision per forward pass: more threads only add synchronisation (and thrash
        # when other jobs share the cores)
        torch.set_num_threads(eargs.threads)
    env = make_env(eargs.env, parse_overrides(eargs.overrides))
    try:
        policy = make_policy(eargs.policy, env, seed=eargs.seed)
        label = policy.describe()

        def show(row: dict[str, Any]) -> None:
            if not eargs.json:
                print(
                    f"episode {row['episode']:>3d}  seed {row['workload_seed']}  "
                    f"goodput {row.get('goodput_rps')}  "
                    f"slo {row.get('slo_attainment')}  return {row['return']:.2f}"
                )

        rows = evaluate(
            policy,
            env,
            eargs.episodes,
            eargs.seed_offset,
            deterministic=not eargs.stochastic,
            on_episode=show,
        )
    finally:
        env.close()
    rows = [
        {"env_id": eargs.env, "policy": eargs.policy, "upper_bound": policy.upper_bound, **r}
        for r in rows
    ]
    if eargs.out:
        try:
            write_csv(rows, eargs.out)
        except OSError as exc:  # the path went bad while the episodes ran: keep the rows
            kept = _salvage_rows(rows)
            from disagg_gym.io import describe_os_error

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


def _salvage_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Writes evaluation rows to a fresh file in the temp folder; returns its path."""
    import tempfile

    from disagg_gym_agents.evaluation import rows_to_csv

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
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_dataclass_args(parser, cls)
    ns = parser.parse_args(argv)
    try:
        return int(cmd(ns) or 0)
    except UserError as exc:  # bad ids, paths, overrides, hyperparameters (ConfigError too)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from disagg_gym.io import describe_os_error

        print(f"{prog}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
