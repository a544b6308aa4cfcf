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


def registered_ids() -> list[str]:
    """The ids ``import disagg_gym`` registers."""
    return [e["id"] for e in standard_envs()]


def register_all() -> None:
    """Registers the standard envs (idempotent)."""
    import gymnasium as gym

    for e in standard_envs():
        if e["id"] in gym.registry:
            continue
        gym.register(id=e["id"], entry_point=ENTRY_POINT, kwargs={"config": e["config"]}, disable_env_checker=False)
