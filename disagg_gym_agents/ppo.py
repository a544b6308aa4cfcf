"""SB3 PPO / sb3-contrib MaskablePPO on disagg-gym: hyperparameters, envs, training, loading.

Hyperparameters come from RL Zoo-style YAML files (``disagg_gym_agents/hyperparams/<algo>.yml``): top-level
keys are env ids (``default`` is the fallback), values are the algorithm's keyword arguments
plus ``n_envs``, ``n_timesteps``, ``policy``, ``normalize`` and ``policy_kwargs`` (a string
such as ``"dict(net_arch=[64, 64], activation_fn=nn.Tanh)"``, parsed without ``eval``).

Workload seeds: training envs draw each episode's workload seed from
``[TRAIN_SEED_LOW, 2**31 - 1)``; the periodic evaluation runs the held-out seeds
``EVAL_SEED_OFFSET + k``, the same ones every time.
"""

from __future__ import annotations

import ast
import inspect
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from disagg_gym.wrappers.shaping import QueueShaping  # re-exported: YAML names disagg_gym_agents.ppo.QueueShaping

from disagg_gym_agents.base import Policy, check_env_id, make_env, parse_overrides
from disagg_gym_agents.callbacks import (
    AtomicCheckpoint,
    KPIEvalCallback,
    KPILogger,
    MaskableKPIEvalCallback,
    WallClockBudget,
    latest_checkpoint,
    save_model_atomic,
    vecnormalize_path,
)
from disagg_gym_agents.cli import TrainArgs
from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET, TRAIN_SEED_LOW
from disagg_gym_agents.policies import layout_of, resolve_policy
from disagg_gym.io import atomic_write_json
from disagg_gym.errors import UserError

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "maskable_ppo": MaskablePPO}
HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
EXTRA_KEYS = ("n_envs", "n_timesteps", "policy", "normalize", "env_wrapper")
"""YAML keys that are not algorithm constructor arguments (RL Zoo conventions)."""
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
VERSION_PACKAGES = ("disagg-gym", "gymnasium", "stable-baselines3", "sb3-contrib", "torch", "numpy")


# ====================================================================== hyperparameters
def algo_class(algo: str) -> type[BaseAlgorithm]:
    """``"ppo"`` -> ``PPO``, ``"maskable_ppo"`` -> ``MaskablePPO``; ``ValueError`` otherwise."""
    try:
        return ALGOS[algo]
    except KeyError:
        raise UserError(f"unknown algo {algo!r}; expected one of: {', '.join(ALGOS)}") from None


def hyperparams_file(algo: str) -> Path:
    """The shipped YAML of ``algo``."""
    algo_class(algo)
    return HYPERPARAMS_DIR / f"{algo}.yml"


def load_hyperparams(
    algo: str, env_id: str, path: str | Path | None = None
) -> tuple[dict[str, Any], str]:
    """Reads the entry of ``env_id`` (or ``default``) from an RL Zoo-style YAML.

    Args:
        algo: ``ppo`` or ``maskable_ppo`` (selects the default file and checks keys).
        env_id: Top-level key to look up.
        path: YAML file (default: ``disagg_gym_agents/hyperparams/<algo>.yml``).

    Returns:
        ``(hyperparameters, entry used)``; the dict is a copy, unparsed.

    Raises:
        ValueError: Missing file, no matching entry and no ``default``, or an unknown key.
    """
    from disagg_gym.config import read_yaml

    p = Path(path) if path is not None else hyperparams_file(algo)
    if not p.is_file():
        raise UserError(f"hyperparameter file not found: {str(p)!r}")
    data = read_yaml(p) or {}
    if not isinstance(data, dict):
        raise UserError(
            f"{p}: expected a mapping of env ids to hyperparameters (got {type(data).__name__})"
        )
    entry = env_id if env_id in data else "default"
    if entry not in data:
        raise UserError(f"{p}: no entry for {env_id!r} and no 'default' entry")
    hp = dict(data[entry] or {})
    allowed = set(inspect.signature(algo_class(algo).__init__).parameters) - {"self", "env"}
    for k in hp:
        if k not in allowed and k not in EXTRA_KEYS:
            raise UserError(f"{p}: entry {entry!r}: unknown hyperparameter {k!r} for {algo}")
    return hp, entry


_TORCH_MODULES = {
    "nn": torch.nn,
    "th.nn": torch.nn,
    "torch.nn": torch.nn,
    "optim": torch.optim,
    "th.optim": torch.optim,
    "torch.optim": torch.optim,
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise UserError(f"unsupported expression {ast.unparse(node)!r}")


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_literal(node.operand)
    if isinstance(node, (ast.List, ast.Tuple)):
        vals = [_literal(e) for e in node.elts]
        return vals if isinstance(node, ast.List) else tuple(vals)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values) if k is not None}
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
    ):
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, ast.Attribute):
        mod, _, name = _dotted(node).rpartition(".")
        module = _TORCH_MODULES.get(mod)
        obj = getattr(module, name, None) if module is not None else None
        if isinstance(obj, type):
            return obj
    raise UserError(f"unsupported expression {ast.unparse(node)!r}")


def parse_policy_kwargs(text: str | dict[str, Any] | None) -> dict[str, Any]:
    """Parses RL Zoo's ``policy_kwargs`` string without ``eval``.

    Accepts ``dict(...)`` / ``{...}`` with literals, lists, nested dicts and torch classes named
    as ``nn.X`` / ``th.nn.X`` / ``torch.optim.X``.

    Raises:
        ValueError: Naming the unsupported part.
    """
    if text is None:
        return {}
    if isinstance(text, dict):
        return dict(text)
    try:
        tree = ast.parse(str(text), mode="eval")
        out = _literal(tree.body)
    except (SyntaxError, ValueError) as exc:
        raise UserError(f"policy_kwargs {text!r}: {exc}") from None
    if not isinstance(out, dict):
        raise UserError(f"policy_kwargs must be a dict (got {text!r})")
    return out


def _schedule(key: str, value: Any) -> Any:
    """RL Zoo's ``lin_<x>`` -> a schedule decaying linearly from x to 0."""
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            start = float(value[4:])
        except ValueError:
            raise UserError(f"hyperparameter {key!r}: bad schedule {value!r}") from None
        return LinearSchedule(start, 0.0, 1.0)
    return value


def resolve_hyperparams(hp: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits the YAML entry into ``(algorithm kwargs, extras)``.

    ``extras`` holds ``n_envs`` (default 1), ``n_timesteps`` (default 100k), ``policy``
    (default ``MlpPolicy``), ``normalize`` (a VecNormalize kwargs dict, or ``None``) and
    ``env_wrapper`` (``[(wrapper class, kwargs)]``, see ``parse_env_wrappers``).
    """
    kwargs = {k: v for k, v in hp.items() if k not in EXTRA_KEYS}
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs["policy_kwargs"])
    for k in SCHEDULE_KEYS:
        if k in kwargs:
            kwargs[k] = _schedule(k, kwargs[k])
    norm = hp.get("normalize", False)
    if isinstance(norm, str):
        try:
            norm = ast.literal_eval(norm)
        except (SyntaxError, ValueError):
            raise UserError(
                f"hyperparameter 'normalize': expected a bool or a dict (got {norm!r})"
            ) from None
    if norm is True:
        norm = {"norm_obs": True, "norm_reward": True}
    if norm is not False and norm is not None and not isinstance(norm, dict):
        raise UserError(f"hyperparameter 'normalize': expected a bool or a dict (got {norm!r})")
    n_envs = hp.get("n_envs", 1)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise UserError(f"hyperparameter 'n_envs' must be a positive integer (got {n_envs!r})")
    n_ts = hp.get("n_timesteps", 100_000)
    if isinstance(n_ts, float) and n_ts.is_integer():
        n_ts = int(n_ts)
    if isinstance(n_ts, bool) or not isinstance(n_ts, int) or n_ts < 1:
        raise UserError(f"hyperparameter 'n_timesteps' must be a positive integer (got {n_ts!r})")
    extras = {
        "n_envs": n_envs,
        "n_timesteps": n_ts,
        "policy": str(hp.get("policy", "MlpPolicy")),
        "normalize": norm or None,
        "env_wrapper": parse_env_wrappers(hp.get("env_wrapper")),
    }
    return kwargs, extras


def parse_env_wrappers(spec: Any) -> list[tuple[type[gym.Wrapper], dict[str, Any]]]:
    """Resolves RL Zoo's ``env_wrapper`` key against ``ENV_WRAPPERS`` (no arbitrary imports).

    Accepts a name, a ``{name: kwargs}`` mapping, or a list of either, e.g.
    ``[{"disagg_gym_agents.ppo.QueueShaping": {"gamma": 0.99}}]``.

    Raises:
        ValueError: Naming an unknown wrapper or malformed entry.
    """
    if spec is None:
        return []
    items = spec if isinstance(spec, list) else [spec]
    out = []
    for item in items:
        if isinstance(item, str):
            name, kwargs = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, kwargs = next(iter(item.items()))
            kwargs = dict(kwargs or {})
        else:
            raise UserError(
                f"hyperparameter 'env_wrapper': expected a name or {{name: kwargs}} (got {item!r})"
            )
        cls = ENV_WRAPPERS.get(name)
        if cls is None:
            raise UserError(
                f"hyperparameter 'env_wrapper': unknown wrapper {name!r}; "
                f"expected one of: {', '.join(ENV_WRAPPERS)}"
            )
        out.append((cls, kwargs))
    return out


# ====================================================================== envs
class TrainingWorkloadSeeds(gym.Wrapper):
    """Gives every training episode a fresh workload seed from ``[TRAIN_SEED_LOW, 2**31 - 1)``.

    The draws come from a generator seeded by the reset seed (SB3 passes ``seed + rank`` on
    the first reset), so training input is reproducible and never overlaps the held-out
    evaluation seeds ``EVAL_SEED_OFFSET + k``.

    Args:
        env: The env.
        seed: Seed of the draws until a reset passes one.
    """

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        super().__init__(env)
        self._rng = np.random.default_rng(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Resets with the next training workload seed (unless ``options`` sets one)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        opts = dict(options or {})
        opts.setdefault("workload_seed", int(self._rng.integers(TRAIN_SEED_LOW, 2**31 - 1)))
        return self.env.reset(seed=seed, options=opts)


class HeldOutWorkloadSeeds(gym.Wrapper):
    """Cycles through the held-out workload seeds ``offset, offset + 1, ..., offset + n - 1``.

    ``rewind()`` (called by the eval callbacks before each evaluation) restarts the cycle, so
    every evaluation sees the same inputs.

    Args:
        env: The env.
        n: Number of distinct seeds.
        offset: First seed.
    """

    def __init__(self, env: gym.Env, n: int, offset: int = EVAL_SEED_OFFSET) -> None:
        super().__init__(env)
        if n < 1:
            raise UserError(f"n must be >= 1 (got {n!r})")
        self.n = int(n)
        self.offset = int(offset)
        self._k = 0

    def rewind(self) -> None:
        """Restarts at the first held-out seed."""
        self._k = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Resets with the next held-out workload seed."""
        wseed = self.offset + self._k % self.n
        self._k += 1
        opts = {**(options or {}), "workload_seed": wseed}
        return self.env.reset(seed=wseed, options=opts)


ENV_WRAPPERS: dict[str, type[gym.Wrapper]] = {
    "disagg_gym_agents.ppo.QueueShaping": QueueShaping,
    "QueueShaping": QueueShaping,
}
"""Training-env wrappers the YAML's ``env_wrapper`` may name (applied outside ``Monitor``, so
``rollout/ep_rew_mean`` and ``eval/mean_reward`` stay the env's own reward)."""


def _env_factory(
    env_id: str,
    overrides: dict[str, Any],
    seed: int,
    held_out: int,
    wrappers: list[tuple[type[gym.Wrapper], dict[str, Any]]] | None = None,
) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = make_env(env_id, overrides)
        env = HeldOutWorkloadSeeds(env, held_out) if held_out else TrainingWorkloadSeeds(env, seed)
        env = Monitor(env)
        for cls, kwargs in wrappers or []:
            env = cls(env, **kwargs)
        return env

    return make


def make_vec_env(
    env_id: str,
    overrides: dict[str, Any] | None = None,
    *,
    n_envs: int = 1,
    seed: int = 0,
    vec_env: str = "dummy",
    held_out: int = 0,
    wrappers: list[tuple[type[gym.Wrapper], dict[str, Any]]] | None = None,
) -> VecEnv:
    """Vectorised, Monitor-wrapped disagg-gym envs.

    Args:
        env_id: Registered id.
        overrides: Env overrides.
        n_envs: Number of envs.
        seed: Base seed (env ``i`` draws its training workload seeds from ``seed + i``).
        vec_env: ``dummy`` (in process) or ``subproc`` (one process per env).
        held_out: If > 0, envs cycle through that many held-out evaluation seeds instead.
        wrappers: ``[(wrapper class, kwargs)]`` applied outside ``Monitor`` (``env_wrapper``).

    Raises:
        ValueError: Unknown ``vec_env`` or env id.
    """
    if vec_env not in ("dummy", "subproc"):
        raise UserError(f"vec_env must be 'dummy' or 'subproc' (got {vec_env!r})")
    check_env_id(env_id)
    fns = [
        _env_factory(env_id, dict(overrides or {}), seed + i, held_out, wrappers)
        for i in range(n_envs)
    ]
    venv: VecEnv = SubprocVecEnv(fns) if vec_env == "subproc" and n_envs > 1 else DummyVecEnv(fns)
    venv.seed(seed)
    return venv


# ====================================================================== learned policies
def is_maskable_zip(path: str | Path) -> bool:
    """Whether the SB3 zip at ``path`` holds a MaskablePPO policy."""
    data, _, _ = load_from_zip_file(str(path), load_data=True, device="cpu")
    cls = (data or {}).get("policy_class")
    return isinstance(cls, type) and issubclass(cls, MaskableActorCriticPolicy)


class SB3Policy(Policy):
    """A trained SB3 PPO / MaskablePPO model behind the shared ``predict`` interface.

    MaskablePPO gets ``action_masks=env.action_masks()`` on every call; observations are
    normalised with the saved VecNormalize statistics when the run used ``normalize``.

    Args:
        model: The loaded model.
        env: The env it acts in (its observation space must match the model's).
        obs_normalizer: A VecNormalize object (statistics only), or ``None``.
        label: Name shown in reports (``sb3:<path>``).
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        env: gym.Env,
        obs_normalizer: VecNormalize | None = None,
        label: str = "sb3",
    ) -> None:
        super().__init__(env)
        if model.observation_space.shape != env.observation_space.shape:
            raise UserError(
                f"{label}: model observation shape {model.observation_space.shape} does not "
                f"match the env's "
                f"{env.observation_space.shape} (trained on another env?)"
            )
        if tuple(np.asarray(model.action_space.nvec)) != tuple(np.asarray(env.action_space.nvec)):  # type: ignore[attr-defined]
            raise UserError(
                f"{label}: model action space {model.action_space} does not match "
                f"the env's {env.action_space}"
            )
        self.model = model
        self.maskable = isinstance(model, MaskablePPO)
        self.obs_normalizer = obs_normalizer
        self.label = label

    @classmethod
    def load(cls, path: str | Path, env: gym.Env, device: str = "cpu") -> SB3Policy:
        """Loads a model zip written by ``disagg_gym_agents.ppo`` (PPO or MaskablePPO, detected).

        Raises:
            ValueError: Missing file or a model for another env.
        """
        from disagg_gym_agents.registry import check_model_path

        p = Path(path)
        check_model_path(p)
        algo = MaskablePPO if is_maskable_zip(p) else PPO
        model = algo.load(str(p), device=device)
        norm = None
        stats = vecnormalize_path(p)
        if stats.is_file():
            import pickle

            with stats.open("rb") as fh:
                norm = pickle.load(fh)
        return cls(model, env, norm, label=f"sb3:{p}")

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """The model's action for ``observation`` (masked for MaskablePPO)."""
        obs = observation
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer.normalize_obs(np.asarray(obs, dtype=np.float32))
        if self.maskable:
            masks = self.base.action_masks()
            return self.model.predict(
                obs,
                state=state,
                episode_start=episode_start,
                deterministic=deterministic,
                action_masks=masks,
            )  # type: ignore[call-arg]
        return self.model.predict(
            obs, state=state, episode_start=episode_start, deterministic=deterministic
        )

    def describe(self) -> str:
        """``sb3:<path>``."""
        return self.label


# ====================================================================== training
def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on (plus Python)."""
    from disagg_gym_agents.base import package_versions as versions

    return versions(VERSION_PACKAGES)


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
            algorithm differs from the run's ``config.json``.
    """
    from disagg_gym.io import check_output_dir

    _validate(args)
    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else default_out(args)
    check_output_dir(out, "--out")  # before any work (issue #17)
    ckpt_dir = out / "checkpoints"
    overrides = parse_overrides(args.overrides)
    hp, entry = load_hyperparams(args.algo, args.env, args.hyperparams)
    algo_kwargs, extras = resolve_hyperparams(hp)
    n_envs = args.n_envs or extras["n_envs"]
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
            args.env, overrides, n_envs=1, seed=args.seed, held_out=args.eval_episodes
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
        model.set_random_seed(args.seed + model.num_timesteps)
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

    config = {
        "env_id": args.env,
        "algo": args.algo,
        "args": {**vars(args), "out": str(out)},
        "overrides": overrides,
        "hyperparams_file": str(
            Path(args.hyperparams) if args.hyperparams else hyperparams_file(args.algo)
        ),
        "hyperparams_entry": entry,
        "hyperparams": {**hp, "n_envs": n_envs, "n_timesteps": total},
        "env_wrappers": [{f"{w.__module__}.{w.__name__}": kw} for w, kw in extras["env_wrapper"]],
        "versions": package_versions(),
        "eval_workload_seeds": [EVAL_SEED_OFFSET + k for k in range(args.eval_episodes)]
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
    remaining = total - start_steps
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
    finally:
        venv.close()
        if eval_env is not None:
            eval_env.close()
    checkpointer.model = model
    checkpointer.save()
    return save_model_atomic(model, out / "model.zip")


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
    import sys

    from disagg_gym_agents.callbacks import list_checkpoints

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
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def dump_hyperparams_yaml(entries: dict[str, dict[str, Any]]) -> str:
    """RL Zoo-style YAML text of ``{env_id: hyperparameters}`` (used by ``scripts/tune.py``)."""
    return yaml.safe_dump(entries, sort_keys=False)
