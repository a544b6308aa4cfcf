"""Registers every standard scenario as a versioned Gymnasium id ``disagg/<Name>-v<N>``."""

from __future__ import annotations

from disagg_gym.config import read_yaml
from disagg_gym.paths import configs_dir

NAMESPACE = "disagg"
ENTRY_POINT = "disagg_gym.env.serving_env:DisaggServingEnv"


def env_id_for(name: str, version: int) -> str:
    """``small-route``, 0 -> ``disagg/SmallRoute-v0``."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))
    return f"{NAMESPACE}/{camel}-v{version}"


def standard_envs() -> list[dict[str, str]]:
    """``[{"id", "config", "task", "description"}]`` for every standard scenario, sorted by id."""
    out = []
    for path in sorted(configs_dir().glob("*.yaml")):
        data = read_yaml(path) or {}
        text = " ".join(str(data.get("description", "")).split())
        desc = [text.split(". ")[0].rstrip(".") + "."] if text else []
        out.append({
            "id": env_id_for(path.stem, int(data.get("version", 0))),
            "config": path.stem,
            "task": str(data.get("task", "route")),
            "description": desc[0] if desc else "",
        })
    return sorted(out, key=lambda d: d["id"])


def variant_envs() -> list[dict[str, str]]:
    """``[{"id", "config", "variant"}]`` for every ``variants:`` entry of a standard config.

    ``small-route`` with variant ``short`` -> ``disagg/SmallRoute-short-v1``.
    """
    out = []
    for path in sorted(configs_dir().glob("*.yaml")):
        data = read_yaml(path) or {}
        for variant in data.get("variants") or {}:
            base = env_id_for(path.stem, int(data.get("version", 0)))
            head, _, version = base.rpartition("-v")
            out.append({"id": f"{head}-{variant}-v{version}", "config": path.stem, "variant": str(variant)})
    return sorted(out, key=lambda d: d["id"])


def registered_ids() -> list[str]:
    """The ids ``import disagg_gym`` registers."""
    return [e["id"] for e in standard_envs()]


def register_all() -> None:
    """Registers the standard envs (idempotent)."""
    import gymnasium as gym

    # ``base_config`` (not ``config``) names the standard config, so ``gym.make(id, config={...})``
    # merges a mapping over it instead of replacing it (issue #16).
    for e in standard_envs():
        if e["id"] in gym.registry:
            continue
        gym.register(id=e["id"], entry_point=ENTRY_POINT, kwargs={"base_config": e["config"]}, disable_env_checker=False)
    for e in variant_envs():
        if e["id"] in gym.registry:
            continue
        gym.register(
            id=e["id"], entry_point=ENTRY_POINT, kwargs={"base_config": e["config"], "variant": e["variant"]},
            disable_env_checker=False,
        )
