"""How ``gym.make`` arguments become a scenario: base config, ``config`` mapping, overrides, flat keys.

Precedence, lowest first: the id's standard config (``base_config``), its ``variant``, the
``config`` mapping (deep-merged), ``overrides`` (dotted keys and/or nested mappings, deep-merged)
and the flat keyword arguments of :data:`FLAT_KEYS`. Every key is then checked by the strict
config loader, so an unknown key is one ``ConfigError`` naming it.

A standard id made with a config that differs from its standard one gets its own ``spec.id``
(:func:`custom_env_id`), so results are never filed under the standard id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from disagg_gym.config import ConfigError, apply_overrides, deep_merge, read_yaml, to_dict
from disagg_gym.scenario import DEFAULT_SCENARIO, ScenarioConfig, config_source, resolve_path

#: Flat ``gym.make`` keyword arguments -> the dotted config key they set.
FLAT_KEYS: dict[str, str] = {
    "horizon_s": "horizon_s",
    "rate_per_s": "workload.rate_per_s",
    "max_episode_requests": "env.max_episode_requests",
    "obs_mode": "env.obs_mode",
    "control_interval_s": "env.control_interval_s",
    "warm_start_s": "env.warm_start_s",
}


def _read(name_or_path: str) -> tuple[dict[str, Any], str]:
    path = resolve_path(name_or_path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level (got {type(data).__name__})")
    data.setdefault("name", Path(path).stem)
    return data, config_source(Path(path))


def scenario_data(
    config: str | Mapping[str, Any] | ScenarioConfig | None = None,
    base_config: str | None = None,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    flat: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """The merged plain data of a scenario (it may hold distribution nodes) and its source.

    Args:
        config: A standard config name or YAML path (replaces ``base_config``), a mapping
            deep-merged over ``base_config`` (a mapping with ``cluster`` and ``workload`` and no
            ``base_config`` is a whole config, merged over nothing), a ``ScenarioConfig``, or
            ``None``.
        base_config: The standard config of the registered id (default ``small-route``).
        variant: A key of the config's ``variants`` section, deep-merged first.
        overrides: ``{"dotted.key": value}``; a mapping value merges into the mapping there.
        flat: Flat keyword arguments (:data:`FLAT_KEYS`); ``None`` values are ignored.

    Raises:
        ConfigError: An unknown flat key or variant, or a file problem.
    """
    if isinstance(config, ScenarioConfig):
        data, source = to_dict(config), config.name
    elif isinstance(config, (str, Path)):
        data, source = _read(str(config))
    elif isinstance(config, Mapping) and base_config is None and "cluster" in config and "workload" in config:
        # a whole config (say, a YAML file's data): itself, as the file would be, not merged
        # over small-route (whose env section, variants and shifts it would inherit)
        data, source = {"name": "custom"}, "config"
    elif config is None or isinstance(config, Mapping):
        data, source = _read(base_config or DEFAULT_SCENARIO)
    else:
        raise ConfigError(
            f"config must be a config name, a YAML path, a mapping or a ScenarioConfig (got {type(config).__name__})"
        )
    if variant is not None:
        variants = data.get("variants") or {}
        if variant not in variants:
            raise ConfigError(
                f"{source}: unknown variant {variant!r}; expected one of: {', '.join(variants) or '(none)'}"
            )
        data = deep_merge(data, variants[variant])
    if isinstance(config, Mapping):
        data = deep_merge(data, dict(config))
        if source != "config":
            source = f"{source} + config"
    if overrides:
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"overrides must be a mapping (got {type(overrides).__name__})")
        data = apply_overrides(data, overrides, merge_mappings=True)
    flat_given = False
    for key, value in (flat or {}).items():
        if key not in FLAT_KEYS:
            raise ConfigError(f"unknown keyword argument {key!r}; expected one of: {', '.join(FLAT_KEYS)}")
        if value is not None:
            data = apply_overrides(data, {FLAT_KEYS[key]: value})
            flat_given = True
    if overrides or flat_given:  # the bad value may be one of them, not the file's
        source += " with overrides"
    return data, source


def config_tag(data: Any) -> str:
    """A short stable hash of plain config data (8 hex digits)."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def custom_env_id(env_id: str, tag: str) -> str:
    """``disagg/SmallRoute-v3`` + tag -> ``disagg/SmallRoute-custom-<tag>-v1`` (idempotent)."""
    head, sep, version = env_id.rpartition("-v")
    if not sep or not version.isdigit():
        head, version = env_id, ""
    marker = f"-custom-{tag}"
    if head.endswith(marker):
        return env_id
    return f"{head}{marker}-v{version}" if version else f"{head}{marker}"
