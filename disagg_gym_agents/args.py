"""Argument dataclasses of ``disagg-gym train|evaluate`` and their argparse bridge.

The dataclasses are the single source of truth for ``disagg-gym train|evaluate`` and
``scripts/train.py|evaluate.py``: ``add_dataclass_args`` turns their fields (with
``metadata["help"]``) into argparse options.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from disagg_gym.argtypes import nonneg_int, positive_float, positive_int
from disagg_gym.wrappers.workload_seeds import EVAL_SEED_OFFSET

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
        default="disagg/SmallRoute-v3",
        metadata=arg_meta("env id or config name (see `disagg-gym list`)", metavar="ID"),
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
        metadata=arg_meta("timesteps between periodic evaluations on the validation seeds 20000+ (0: none)", type=nonneg_int),
    )
    eval_episodes: int = field(
        default=3, metadata=arg_meta("validation episodes per periodic evaluation", type=positive_int)
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
    verbose: int = field(
        default=0, metadata=arg_meta("SB3 verbosity (0, 1, 2)", type=nonneg_int, choices=(0, 1, 2))
    )


@dataclass
class EvalArgs:
    """Arguments of ``disagg-gym evaluate`` / ``scripts/evaluate.py``."""

    env: str = field(
        default="disagg/SmallRoute-v3",
        metadata=arg_meta("env id or config name (see `disagg-gym list`)", metavar="ID"),
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
    tuned: str | None = field(
        default=None,
        metadata=arg_meta(
            "tuned file (disagg-gym tune-baselines, e.g. leaderboard/tuned.yaml): a heuristic runs with "
            "its tuned params for this config, as `benchmark` runs it (default: its registered defaults)",
            metavar="PATH",
        ),
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
