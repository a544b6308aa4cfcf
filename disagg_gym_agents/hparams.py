"""SB3 hyperparameters: RL Zoo-style YAML files, resolved into algorithm kwargs and run extras.

Hyperparameters come from RL Zoo-style YAML files (``disagg_gym_agents/hyperparams/<algo>.yml``):
top-level keys are env ids (``default`` is the fallback), values are the algorithm's keyword
arguments plus ``n_envs``, ``n_timesteps``, ``policy``, ``normalize``, ``env_wrapper``,
``env_overrides`` (dotted scenario overrides of the *training* env, e.g.
``{env.outcome_unit: kilotoken}``; ``--overrides`` on the command line win) and
``policy_kwargs``, a plain YAML mapping such as ``{net_arch: [64, 64], activation_fn: Tanh}``
(``activation_fn`` names a ``torch.nn`` class, ``optimizer_class`` a ``torch.optim`` one).
"""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule

from disagg_gym.config import read_yaml
from disagg_gym.errors import UserError
from disagg_gym.wrappers.shaping import QueueShaping, TruncationAdvance

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "maskable_ppo": MaskablePPO}
HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
EXTRA_KEYS = ("n_envs", "n_timesteps", "policy", "normalize", "env_wrapper", "env_overrides")
"""YAML keys that are not algorithm constructor arguments (RL Zoo conventions)."""
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf")
CLASS_KEYS: dict[str, Any] = {"activation_fn": torch.nn, "optimizer_class": torch.optim}
"""``policy_kwargs`` keys whose value names a torch class, and the module it is looked up in."""

ENV_WRAPPERS: dict[str, type[gym.Wrapper]] = {
    "disagg_gym_agents.ppo.QueueShaping": QueueShaping,
    "disagg_gym.wrappers.QueueShaping": QueueShaping,
    "QueueShaping": QueueShaping,
    "disagg_gym.wrappers.TruncationAdvance": TruncationAdvance,
    "TruncationAdvance": TruncationAdvance,
}
"""Training-env wrappers the YAML's ``env_wrapper`` may name (applied outside ``Monitor``, so
``rollout/ep_rew_mean`` and ``eval/mean_reward`` stay the env's own reward)."""


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
        path: YAML file (default: ``disagg_gym_agents/hyperparams/<algo>.yml``); a bare name
            that is no file here names a shipped one (``maskable_ppo_noprior.yml``).

    Returns:
        ``(hyperparameters, entry used)``; the dict is a copy, unparsed.

    Raises:
        ValueError: Missing file, no matching entry and no ``default``, or an unknown key.
    """
    p = Path(path) if path is not None else hyperparams_file(algo)
    if path is not None and not p.exists() and p.name == str(path) and (HYPERPARAMS_DIR / p.name).is_file():
        p = HYPERPARAMS_DIR / p.name  # a shipped file by its name (maskable_ppo_noprior.yml)
    if p.is_dir():
        raise UserError(f"--hyperparams {str(p)!r}: is a directory, expected a hyperparameter YAML file")
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


def _torch_class(key: str, value: Any) -> type:
    module = CLASS_KEYS[key]
    name = str(value).rsplit(".", 1)[-1]  # "Tanh", "nn.Tanh" and "torch.nn.Tanh" all work
    obj = getattr(module, name, None)
    if not isinstance(value, str) or not isinstance(obj, type):
        raise UserError(
            f"policy_kwargs {key}: expected a {module.__name__} class name such as "
            f"{'Tanh' if key == 'activation_fn' else 'Adam'} (got {value!r})"
        )
    return obj


def parse_policy_kwargs(value: dict[str, Any] | None) -> dict[str, Any]:
    """The YAML ``policy_kwargs`` mapping with torch class names resolved (``CLASS_KEYS``).

    Raises:
        UserError: A value that is not a mapping (e.g. the former ``"dict(...)"`` string form)
            or an unknown torch class name.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(
            f"policy_kwargs must be a YAML mapping such as {{net_arch: [64, 64], "
            f"activation_fn: Tanh}} (got {value!r})"
        )
    return {k: _torch_class(k, v) if k in CLASS_KEYS else v for k, v in value.items()}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


#: Numeric algorithm arguments checked before SB3 sees them (it asserts, fails deep in torch,
#: or trains on nonsense such as gamma 5): key -> (test, what it expects). ``None`` (the
#: optional ones) and ``lin_<x>`` schedules pass.
NUMERIC_CHECKS: dict[str, tuple[Any, str]] = {
    "n_steps": (_count, "a positive integer"),
    "batch_size": (_count, "a positive integer"),
    "n_epochs": (_count, "a positive integer"),
    "learning_rate": (lambda v: _number(v) and v >= 0, "a number >= 0 or lin_<x>"),
    "gamma": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "gae_lambda": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "clip_range": (lambda v: _number(v) and v > 0, "a number > 0 or lin_<x>"),
    "clip_range_vf": (lambda v: _number(v) and v > 0, "a number > 0, lin_<x> or null"),
    "ent_coef": (_number, "a finite number"),
    "vf_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "max_grad_norm": (lambda v: _number(v) and v > 0, "a number > 0"),
    "target_kl": (lambda v: _number(v) and v > 0, "a number > 0 or null"),
}


def _check_numbers(kwargs: dict[str, Any]) -> None:
    """Raises ``UserError`` naming the first algorithm argument outside ``NUMERIC_CHECKS``."""
    for key, (ok, expected) in NUMERIC_CHECKS.items():
        value = kwargs.get(key)
        if value is None or isinstance(value, LinearSchedule):
            continue
        if not ok(value):
            raise UserError(f"hyperparameter {key!r} must be {expected} (got {value!r})")
    if kwargs.get("batch_size") == 1 and kwargs.get("normalize_advantage", True):
        # PPO asserts this; MaskablePPO does not, and its logits turn NaN
        raise UserError(
            "hyperparameter 'batch_size' must be at least 2 while advantages are normalised per "
            "mini-batch (normalize_advantage: false allows 1) (got 1)"
        )


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
    ``env_wrapper`` (``[(wrapper class, kwargs)]``, see ``parse_env_wrappers``) and
    ``env_overrides`` (a dict of dotted scenario keys, default empty).
    """
    kwargs = {k: v for k, v in hp.items() if k not in EXTRA_KEYS}
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs["policy_kwargs"])
    for k in SCHEDULE_KEYS:
        if k in kwargs:
            kwargs[k] = _schedule(k, kwargs[k])
    _check_numbers(kwargs)
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
        "env_overrides": _env_overrides(hp.get("env_overrides")),
    }
    return kwargs, extras


def _env_overrides(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k for k in value):
        raise UserError(
            "hyperparameter 'env_overrides': expected a mapping of dotted scenario keys to values, "
            f"such as {{env.outcome_unit: kilotoken}} (got {value!r})"
        )
    return dict(value)


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


def dump_hyperparams_yaml(entries: dict[str, dict[str, Any]]) -> str:
    """RL Zoo-style YAML text of ``{env_id: hyperparameters}`` (used by ``scripts/tune.py``)."""
    return yaml.safe_dump(entries, sort_keys=False)
