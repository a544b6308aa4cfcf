"""Registers every standard scenario as a versioned Gymnasium id ``disagg/<Name>-v<N>``.

Registration reads nothing: ``STANDARD_CONFIGS`` names each shipped config and its version,
and each id's entry point loads its YAML only when the env is made (as Gymnasium's own ids
do). A test checks the table against the YAML files' ``version`` keys.
"""

from __future__ import annotations

from disagg_gym.config import read_yaml
from disagg_gym.paths import configs_dir

NAMESPACE = "disagg"
ENTRY_POINT = "disagg_gym.env.serving_env:DisaggServingEnv"


STANDARD_CONFIGS: dict[str, int] = {
    "colocated-baseline": 1,
    "energy-allocate": 2,
    "hetero-allocate": 2,
    "hetero-route": 1,
    "hybrid-cost-route": 1,
    "large-joint": 2,
    "mooncake-rdma-route": 1,
    "pcie-route": 1,
    "small-route": 1,
}
"""Shipped config name (``configs/<name>.yaml``) -> its env version (the YAML's ``version``).
Adding a standard config is its YAML file plus one line here; bumping a version, both."""


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
    """The ids ``import disagg_gym`` registers, sorted (no file is read)."""
    return sorted(env_id_for(name, v) for name, v in STANDARD_CONFIGS.items())


def register_all() -> None:
    """Registers the standard envs (idempotent; reads no file: configs load on ``gym.make``)."""
    import gymnasium as gym  # the simulator works without Gymnasium (disagg_gym/__init__.py)

    for name, version in STANDARD_CONFIGS.items():
        env_id = env_id_for(name, version)
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs={"config": name}, disable_env_checker=False)
