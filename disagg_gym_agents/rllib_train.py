"""RLlib PPO training on disagg-gym (``disagg-gym train --backend rllib``, ``scripts/train_rllib.py``).

Env runners sample in parallel (Ray actors, one CPU each); one local learner updates the
masked PPO module of ``disagg_gym.integrations.rllib.build_ppo_config``. The run folder mirrors
the SB3 path (``disagg_gym_agents.ppo.train``):

    OUT/config.json                 arguments, resolved RLlib config, package versions
    OUT/checkpoint/                 RLlib checkpoint (``Algorithm.save_to_path``; every
                                    ``checkpoint_freq`` iterations and at the end)
    OUT/tb/rllib_ppo/               TensorBoard: ``rollout/ep_rew_mean``, ``rollout/ep_len_mean``,
                                    ``kpi/<key>`` (serving KPIs of the finished training
                                    episodes), ``train/*`` losses, ``time/*``

Training workload seeds are drawn per episode from ``[TRAIN_SEED_LOW, 2**31 - 1)`` by
``disagg_gym.wrappers.TrainingWorkloadSeeds`` (seeded with ``seed + worker index`` + vector index on the
first reset), so training never sees the held-out evaluation seeds ``EVAL_SEED_OFFSET + k``.
``RLlibPolicy`` evaluates a trained module greedily behind the agents' ``predict`` interface.

Needs the ``ray`` extra (``pip install "disagg-gym[ray]"``, see ``docs/scale-out.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from disagg_gym.argtypes import nonneg_int, positive_float, positive_int
from disagg_gym.errors import UserError
from disagg_gym.wrappers.workload_seeds import TrainingWorkloadSeeds
from disagg_gym.io import atomic_write_json, check_output_dir, exclusive_lock
from disagg_gym_agents.args import add_dataclass_args, arg_meta, dataclass_from_namespace
from disagg_gym_agents.base import check_env_id, make_env, parse_overrides
from disagg_gym_agents.evaluation import KPI_LOG_KEYS
from disagg_gym_agents.base import package_versions as base_package_versions
from disagg_gym_agents.ray_setup import import_ray, init_ray

DEFAULT_TIMESTEPS = 200_000
"""Env steps of a run when neither ``timesteps`` nor ``iterations`` is given."""
TB_RUN = "rllib_ppo"
VERSION_PACKAGES = ("disagg-gym", "ray", "gymnasium", "torch", "numpy")
LEARNER_SCALARS = {
    "policy_loss": "train/policy_loss",
    "vf_loss": "train/value_loss",
    "entropy": "train/entropy",
    "mean_kl_loss": "train/approx_kl",
    "vf_explained_var": "train/explained_variance",
    "curr_entropy_coeff": "train/ent_coef",
}
"""RLlib learner results (``learners/default_policy/<key>``) -> TensorBoard tags (SB3 names)."""


# ====================================================================== arguments
@dataclass
class RLlibTrainArgs:
    """Arguments of ``disagg-gym train --backend rllib`` / ``scripts/train_rllib.py``.

    ``env``, ``timesteps``, ``seed``, ``out``, ``overrides``, ``threads``, ``max_wall_s`` and
    ``verbose`` mean what they mean in ``disagg_gym_agents.cli.TrainArgs`` (the shared options of
    ``disagg-gym train``).
    """

    env: str = field(
        default="disagg/SmallRoute-v3",
        metadata=arg_meta("registered env id (see `disagg-gym list`)", metavar="ID"),
    )
    timesteps: int | None = field(
        default=None,
        metadata=arg_meta(
            f"total env steps (default {DEFAULT_TIMESTEPS} unless --iterations is given)",
            type=positive_int,
        ),
    )
    iterations: int | None = field(
        default=None,
        metadata=arg_meta("stop after this many training iterations", type=positive_int),
    )
    seed: int = field(
        default=0,
        metadata=arg_meta("seed of RLlib (torch, numpy) and of the training workload seeds",
                          type=nonneg_int),
    )
    out: str | None = field(
        default=None,
        metadata=arg_meta("run folder (default: runs/rllib_ppo/<EnvName>_s<seed>)", metavar="DIR"),
    )
    overrides: list[str] = field(
        default_factory=list,
        metadata=arg_meta(
            "env override KEY=VALUE (dotted), repeatable, e.g. horizon_s=30", metavar="KEY=VALUE"
        ),
    )
    num_env_runners: int = field(
        default=2,
        metadata=arg_meta("parallel env-runner actors, one CPU each (0: sample in the driver)",
                          type=nonneg_int),
    )
    num_envs_per_env_runner: int = field(
        default=1, metadata=arg_meta("envs vectorised in each runner", type=positive_int)
    )
    train_batch_size: int = field(
        default=2048, metadata=arg_meta("env steps per training iteration", type=positive_int)
    )
    minibatch_size: int = field(
        default=128, metadata=arg_meta("SGD minibatch size", type=positive_int)
    )
    num_epochs: int = field(
        default=5, metadata=arg_meta("SGD epochs per iteration", type=positive_int)
    )
    lr: float = field(default=3e-4, metadata=arg_meta("learning rate", type=positive_float))
    gamma: float = field(default=0.995, metadata=arg_meta("discount", type=positive_float))
    entropy_coeff: float = field(
        default=0.01, metadata=arg_meta("entropy bonus", type=float)
    )
    checkpoint_freq: int = field(
        default=10, metadata=arg_meta("iterations between checkpoints", type=positive_int)
    )
    address: str | None = field(
        default=None,
        metadata=arg_meta("Ray cluster address (default: start a local Ray instance)",
                          metavar="ADDR"),
    )
    num_cpus: int | None = field(
        default=None,
        metadata=arg_meta("CPUs of a local Ray instance (default: num_env_runners + 1)",
                          type=positive_int),
    )
    threads: int = field(default=1, metadata=arg_meta("torch threads of the learner",
                                                      type=positive_int))
    max_wall_s: float | None = field(
        default=None,
        metadata=arg_meta("stop after the iteration that passes this many wall-clock seconds",
                          type=positive_float),
    )
    verbose: int = field(
        default=1, metadata=arg_meta("0: quiet, 1: one line per iteration", type=nonneg_int)
    )


def add_train_rllib_args(parser: argparse.ArgumentParser) -> None:
    """Adds the ``RLlibTrainArgs`` options that ``parser`` does not have yet.

    On the ``disagg-gym train`` parser (which already has ``TrainArgs``' ``--env``,
    ``--timesteps``, ``--seed``, ``--out``, ``--overrides``, ``--threads``, ``--max-wall-s`` and
    ``--verbose``), this adds only the RLlib ones; on an empty parser it adds them all.
    """
    probe = argparse.ArgumentParser(add_help=False)
    add_dataclass_args(probe, RLlibTrainArgs)
    have = {s for a in parser._actions for s in a.option_strings}
    fresh = [a for a in probe._actions if a.option_strings and not set(a.option_strings) & have]
    if len(fresh) == len(probe._actions):  # an empty parser: plain options
        add_dataclass_args(parser, RLlibTrainArgs)
        return
    group = parser.add_argument_group("RLlib backend (--backend rllib)")
    for action in fresh:
        group._add_action(action)  # argparse has no public "add this Action" call


def cmd_train_rllib(args: argparse.Namespace | RLlibTrainArgs) -> int:
    """Trains RLlib PPO (see ``train_rllib``) and prints where the checkpoint went."""
    rargs = (
        args if isinstance(args, RLlibTrainArgs)
        else dataclass_from_namespace(RLlibTrainArgs, args)
    )
    path = train_rllib(rargs)
    print(f"checkpoint: {path}")
    return 0


# ====================================================================== envs
def training_env_name(env_id: str) -> str:
    """Name of ``env_id``'s training creator in RLlib's registry (``<id>@train``)."""
    return f"{env_id}@train"


def _training_seeds(env: gym.Env, ctx: Mapping[str, Any]) -> gym.Env:
    # Reseeded by RLlib's first reset (seed + worker index + vector index); this fallback only
    # matters for a config without a seed, and still differs per env.
    fallback = 1000 * int(getattr(ctx, "worker_index", 0)) + int(getattr(ctx, "vector_index", 0))
    return TrainingWorkloadSeeds(env, seed=fallback)


def register_training_env(env_id: str) -> str:
    """Registers ``env_id`` with training workload seeds under ``training_env_name(env_id)``."""
    from ray.tune.registry import register_env

    from disagg_gym.integrations.rllib import env_creator

    name = training_env_name(env_id)
    register_env(name, env_creator(env_id, wrap=_training_seeds))
    return name


# ====================================================================== callbacks
def _kpi_callback_class() -> type:
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class KPICallback(RLlibCallback):
        """Logs ``kpi/<key>`` from ``info["episode_kpis"]`` of every finished training episode.

        Each env runner averages its episodes since the last report; the algorithm averages
        the runners' means (RLlib's ``MeanStats``), i.e. per iteration, like the SB3
        ``KPILogger`` per rollout.
        """

        def on_episode_end(self, *, episode: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
            infos = episode.get_infos()
            kpis = infos[-1].get("episode_kpis") if len(infos) else None
            if not kpis or metrics_logger is None:
                return
            for k in KPI_LOG_KEYS:
                v = kpis.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    metrics_logger.log_value(("kpi", k), float(v), reduce="mean")

    return KPICallback


# ====================================================================== policy
class RLlibPolicy:
    """A trained RLlib masked-PPO module behind the agents' ``predict`` interface.

    ``predict`` builds the ``{"observations", "action_mask"}`` input from the env's
    ``action_masks()`` and returns the per-dimension argmax of the masked logits
    (``deterministic=True``) or a sample from them.

    Args:
        module: The ``default_policy`` RLModule (``algo.get_module()``).
        env: The (Box-observation) env it acts in, e.g. ``disagg_gym_agents.base.make_env(id)``.
        seed: Seed of the sampling when ``deterministic=False``.
    """

    upper_bound = False

    def __init__(self, module: Any, env: gym.Env, seed: int = 0) -> None:
        self.module = module
        self.env = env
        self.nvec = [int(n) for n in np.asarray(env.action_space.nvec).ravel()]  # type: ignore[attr-defined]
        self.splits = np.cumsum(self.nvec)[:-1]
        self._rng = np.random.default_rng(seed)

    @classmethod
    def load(cls, checkpoint: str | Path, env: gym.Env, seed: int = 0) -> RLlibPolicy:
        """Loads the module of an ``Algorithm.save_to_path`` checkpoint (no Ray needed)."""
        from ray.rllib.core.rl_module.rl_module import RLModule

        p = Path(checkpoint) / "learner_group" / "learner" / "rl_module" / "default_policy"
        if not p.is_dir():
            raise UserError(f"no RLlib module checkpoint at {str(p)!r}")
        return cls(RLModule.from_checkpoint(str(p.resolve())), env, seed)  # pyarrow needs an absolute path

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """The module's (masked) action for ``observation``."""
        import torch

        mask = np.asarray(self.env.unwrapped.action_masks(), dtype=np.float32)  # type: ignore[attr-defined]
        obs = {
            "observations": torch.as_tensor(np.asarray(observation, dtype=np.float32)[None]),
            "action_mask": torch.as_tensor(mask[None]),
        }
        with torch.no_grad():
            out = self.module.forward_inference({"obs": obs})
        logits = out["action_dist_inputs"][0].numpy().astype(np.float64)
        logits = np.where(mask > 0, logits, -np.inf)
        action = []
        for part in np.split(logits, self.splits):
            if deterministic:
                action.append(int(np.argmax(part)))
            else:
                p = np.exp(part - part.max())
                action.append(int(self._rng.choice(len(p), p=p / p.sum())))
        return np.asarray(action, dtype=np.int64), state

    def describe(self) -> str:
        """``rllib``."""
        return "rllib"


# ====================================================================== training
def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on (plus Python)."""
    return base_package_versions(VERSION_PACKAGES)


def default_out(args: RLlibTrainArgs) -> Path:
    """``runs/rllib_ppo/<EnvName>_s<seed>``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.env.split("/")[-1])
    return Path("runs") / TB_RUN / f"{name}_s{args.seed}"


def _get(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def scalars(result: Mapping[str, Any]) -> dict[str, float]:
    """TensorBoard scalars (SB3 tag names) of one ``Algorithm.train()`` result."""
    out: dict[str, float] = {}
    runners = _get(result, "env_runners") or {}
    for src, tag in (("episode_return_mean", "rollout/ep_rew_mean"),
                     ("episode_len_mean", "rollout/ep_len_mean")):
        if _finite(runners.get(src)):
            out[tag] = float(runners[src])
    for k, v in (_get(runners, "kpi") or {}).items():
        if _finite(v):
            out[f"kpi/{k}"] = float(v)
    learner = _get(result, "learners", "default_policy") or {}
    for src, tag in LEARNER_SCALARS.items():
        if _finite(learner.get(src)):
            out[tag] = float(learner[src])
    if _finite(result.get("time_this_iter_s")) and _finite(runners.get("num_env_steps_sampled")):
        out["time/fps"] = float(runners["num_env_steps_sampled"]) / max(
            float(result["time_this_iter_s"]), 1e-9
        )
    out["time/iterations"] = float(result.get("training_iteration", 0))
    return out


def _validate(args: RLlibTrainArgs) -> None:
    check_env_id(args.env)
    for name in ("num_envs_per_env_runner", "train_batch_size", "minibatch_size", "num_epochs",
                 "checkpoint_freq", "threads"):
        v = getattr(args, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{name} must be a positive integer (got {v!r})")
    for name in ("timesteps", "iterations", "num_cpus"):
        v = getattr(args, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UserError(f"{name} must be a positive integer (got {v!r})")
    for name in ("seed", "num_env_runners", "verbose"):
        v = getattr(args, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"{name} must be a non-negative integer (got {v!r})")
    if not 0 < args.lr < math.inf or not 0 < args.gamma <= 1:
        raise UserError(f"lr must be > 0 and gamma in (0, 1] (got {args.lr!r}, {args.gamma!r})")
    if args.max_wall_s is not None and not 0 < args.max_wall_s < math.inf:
        raise UserError(f"max_wall_s must be a positive number (got {args.max_wall_s!r})")
    if args.address is None and args.num_cpus is not None and args.num_cpus < args.num_env_runners:
        # each env runner holds one CPU: the rest would wait for one forever (a silent hang)
        raise UserError(f"--num-cpus {args.num_cpus} is below --num-env-runners {args.num_env_runners} "
                        "(each env runner takes one CPU of the local Ray instance)")


def train_rllib(args: RLlibTrainArgs) -> Path:
    """Trains RLlib PPO on ``args.env``; returns the checkpoint folder (``OUT/checkpoint``).

    Stops at ``timesteps`` env steps, after ``iterations`` iterations or after the iteration
    that passes ``max_wall_s``, whichever comes first (``timesteps`` defaults to
    ``DEFAULT_TIMESTEPS`` when neither count is given). Ray is started locally with
    ``num_cpus`` CPUs (or joined at ``address``) unless it is already running, and shut down
    at the end if this call started it.

    Raises:
        ValueError: Bad arguments or overrides, an ``out`` folder that already holds a run, or
            another train writing to it.
    """
    import_ray()  # names the missing [ray] extra before anything else

    _validate(args)
    overrides = parse_overrides(args.overrides)
    # the env as the runners will build it: a bad override is one line here, before Ray starts
    # and before config.json marks the folder as a run (with remote runners it was a traceback)
    make_env(args.env, overrides).close()
    out = Path(args.out) if args.out else default_out(args)
    check_output_dir(out, "--out")  # before Ray starts
    # One process per run folder (as the SB3 backend): a second train into it stops at once.
    with exclusive_lock(out / ".train.lock", busy=f"--out {str(out)!r}: another train is writing to this run folder"):
        if (out / "config.json").exists():
            raise UserError(f"{str(out)!r} already holds a run; choose another --out")
        return _train_rllib(args, out, overrides)


def _train_rllib(args: RLlibTrainArgs, out: Path, overrides: dict[str, Any]) -> Path:
    """``train_rllib`` once the run folder ``out`` is checked and held."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    ray = import_ray()
    from disagg_gym.integrations.rllib import build_ppo_config

    timesteps = args.timesteps or (None if args.iterations else DEFAULT_TIMESTEPS)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    started = init_ray(args.address, args.num_cpus or args.num_env_runners + 1)
    algo = None
    try:
        config = build_ppo_config(
            args.env,
            args.num_env_runners,
            args.seed,
            env_config={"overrides": overrides},
            rllib_env=register_training_env(args.env),
            num_envs_per_env_runner=args.num_envs_per_env_runner,
            train_batch_size=args.train_batch_size,
            minibatch_size=args.minibatch_size,
            num_epochs=args.num_epochs,
            lr=args.lr,
            gamma=args.gamma,
            entropy_coeff=args.entropy_coeff,
            callbacks=_kpi_callback_class(),
        )
        algo = config.build_algo()  # before config.json marks the folder as a run
        atomic_write_json(out / "config.json", {
            "env_id": args.env,
            "algo": "rllib_ppo",
            "args": {**asdict(args), "out": str(out)},
            "overrides": overrides,
            "stop": {"timesteps": timesteps, "iterations": args.iterations,
                     "max_wall_s": args.max_wall_s},
            "rllib_config": json.loads(json.dumps(config.to_dict(), default=repr)),
            "versions": package_versions(),
            "train_workload_seeds": (
                "drawn per episode from [1000000, 2147483647) by a generator seeded with "
                "seed + env-runner index (+ vector index)"
            ),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        writer = SummaryWriter(str(out / "tb" / TB_RUN))
        ckpt = out / "checkpoint"
        t0 = time.monotonic()
        it = 0
        try:
            while True:
                result = algo.train()
                it += 1
                steps = int(result.get("num_env_steps_sampled_lifetime")
                            or _get(result, "env_runners", "num_env_steps_sampled_lifetime") or 0)
                for tag, v in scalars(result).items():
                    writer.add_scalar(tag, v, steps)
                writer.add_scalar("time/total_timesteps", steps, steps)
                writer.flush()
                if args.verbose:
                    s = scalars(result)
                    print(
                        f"iter {it:4d}  steps {steps:8d}  "
                        f"return {s.get('rollout/ep_rew_mean', float('nan')):9.2f}  "
                        f"slo {s.get('kpi/slo_attainment', float('nan')):.3f}  "
                        f"goodput {s.get('kpi/goodput_rps', float('nan')):.2f}  "
                        f"({time.monotonic() - t0:.0f} s)",
                        file=sys.stderr,
                    )
                done = (
                    (timesteps is not None and steps >= timesteps)
                    or (args.iterations is not None and it >= args.iterations)
                    or (args.max_wall_s is not None and time.monotonic() - t0 >= args.max_wall_s)
                )
                if done or it % args.checkpoint_freq == 0:
                    algo.save_to_path(str(ckpt.resolve()))
                if done:
                    break
        except KeyboardInterrupt:
            algo.save_to_path(str(ckpt.resolve()))
            raise
        finally:
            writer.close()
        return ckpt
    finally:
        if algo is not None:
            algo.stop()
        if started:
            ray.shutdown()
