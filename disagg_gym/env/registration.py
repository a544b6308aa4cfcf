"""Registers every standard scenario as a versioned Gymnasium id ``disagg/<Name>-v<N>``.

Registration reads nothing: ``STANDARD_CONFIGS`` names each shipped config and its version,
and each id's entry point loads its YAML only when the env is made (as Gymnasium's own ids
do). A test checks the table against the YAML files' ``version`` keys.

Also resolves the two names of a standard scenario: its config name (``small-route``) and its
env id (``disagg/SmallRoute-v3``, optionally ``disagg_gym:``-prefixed), so every command
accepts either (issue #20).
"""

from __future__ import annotations

import re

from disagg_gym.config import read_yaml
from disagg_gym.errors import UserError
from disagg_gym.paths import configs_dir

NAMESPACE = "disagg"
ENTRY_POINT = "disagg_gym.env.serving_env:DisaggServingEnv"


STANDARD_CONFIGS: dict[str, int] = {
    "azure-trace-route": 0,
    "colocated-baseline": 3,
    "diurnal-day-route": 0,
    "energy-allocate": 3,
    "hetero-allocate": 5,
    "hetero-route": 3,
    "hybrid-cost-route": 3,
    "large-joint": 3,
    "mooncake-cache-route": 2,
    "mooncake-rdma-route": 3,
    "multiturn-cache-route": 2,
    "pcie-route": 3,
    "rag-pool-route": 2,
    "small-route": 3,
    "tri-gpu-route": 0,
}
"""Shipped config name (``configs/<name>.yaml``) -> its env version (the YAML's ``version``).
Adding a standard config is its YAML file plus one line here; bumping a version, both."""


STANDARD_VARIANTS: dict[str, tuple[str, ...]] = {
    name: ("short",)
    for name in (
        "azure-trace-route", "colocated-baseline", "diurnal-day-route", "hetero-route",
        "hybrid-cost-route", "mooncake-cache-route", "mooncake-rdma-route", "multiturn-cache-route",
        "pcie-route", "rag-pool-route", "small-route", "tri-gpu-route",
    )
} | {"energy-allocate": ("fine",), "hetero-allocate": ("fine",)}
"""Config name -> the keys of its YAML's ``variants`` section (registered as
``disagg/<Name>-<variant>-v<N>``); a test checks it against the YAML files."""


def variant_id_for(name: str, version: int, variant: str) -> str:
    """``small-route``, 3, ``short`` -> ``disagg/SmallRoute-short-v3``."""
    head, _, v = env_id_for(name, version).rpartition("-v")
    return f"{head}-{variant}-v{v}"


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

    ``small-route`` with variant ``short`` -> ``disagg/SmallRoute-short-v3``.
    """
    out = []
    for path in sorted(configs_dir().glob("*.yaml")):
        data = read_yaml(path) or {}
        for variant in data.get("variants") or {}:
            vid = variant_id_for(path.stem, int(data.get("version", 0)), str(variant))
            out.append({"id": vid, "config": path.stem, "variant": str(variant)})
    return sorted(out, key=lambda d: d["id"])


def registered_ids() -> list[str]:
    """The standard configs' ids, sorted (no file is read). ``import disagg_gym`` also
    registers their variants (``-short``, ``-fine``: ``gym.registry``).
    """
    return sorted(env_id_for(name, v) for name, v in STANDARD_CONFIGS.items())


def register_all() -> None:
    """Registers the standard envs (idempotent; reads no file: configs load on ``gym.make``)."""
    import gymnasium as gym  # the simulator works without Gymnasium (disagg_gym/__init__.py)

    # ``base_config`` (not ``config``) names the standard config, so ``gym.make(id, config={...})``
    # merges a mapping over it instead of replacing it (issue #16).
    for name, version in STANDARD_CONFIGS.items():
        env_id = env_id_for(name, version)
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs={"base_config": name}, disable_env_checker=False)
        for variant in STANDARD_VARIANTS.get(name, ()):
            vid = variant_id_for(name, version, variant)
            if vid not in gym.registry:
                gym.register(
                    id=vid, entry_point=ENTRY_POINT, kwargs={"base_config": name, "variant": variant},
                    disable_env_checker=False,
                )

# gymnasium's id grammar, plus an optional ``module:`` prefix (``disagg_gym:disagg/X-v1``)
_ENV_ID = re.compile(r"^(?:[A-Za-z_][\w.]*:)?(?:(?P<ns>[\w.-]+)/)?(?P<name>[\w.-]+?)-v(?P<version>\d+)$")


def standard_env_for(name_or_id: str) -> dict[str, str] | None:
    """The ``standard_envs()`` entry a config name or env id names, or ``None`` if none.

    Accepts ``small-route``, ``disagg/SmallRoute-v3`` and ``disagg_gym:disagg/SmallRoute-v3``.

    Raises:
        UserError: For an older or newer version of a standard id (``disagg/SmallRoute-v0``)
            or of a variant id (``disagg/HeteroAllocate-fine-v2``), naming the current id.
    """
    envs = standard_envs()
    for e in envs:
        if name_or_id == e["config"]:
            return e
    m = _ENV_ID.match(name_or_id.strip())
    if m is None or m["ns"] not in (None, NAMESPACE):
        return None
    for e in envs:
        cur = _ENV_ID.match(e["id"])
        assert cur is not None
        if cur["name"] != m["name"]:
            continue
        if m["ns"] is None:
            raise UserError(f"unknown env id {name_or_id!r}; did you mean {e['id']!r}?")
        if m["version"] == cur["version"]:
            return e
        raise _other_version(m, cur, e["id"])
    if m["ns"] == NAMESPACE:  # an older or newer version of a registered variant id
        for v in variant_envs():
            cur = _ENV_ID.match(v["id"])
            assert cur is not None
            if cur["name"] == m["name"] and m["version"] != cur["version"]:
                raise _other_version(m, cur, v["id"])
    return None


def _other_version(asked: re.Match[str], current: re.Match[str], current_id: str) -> UserError:
    """The one-line error for an id whose version is not the registered one."""
    old = int(asked["version"]) < int(current["version"])
    return UserError(
        f"env id {NAMESPACE}/{asked['name']}-v{asked['version']} "
        + ("is deprecated (its dynamics, reward or workload changed: docs/envs.md#versioning)" if old else "does not exist")
        + f"; use {current_id}"
    )


def resolve_env_id(name_or_id: str) -> str:
    """A standard config name or env id -> the current env id (``small-route`` -> ``disagg/SmallRoute-v3``).

    Raises:
        UserError: One line naming ``name_or_id`` if it names no standard scenario (or an old
            version of one, naming the current id).
    """
    e = standard_env_for(name_or_id)
    if e is None:
        envs = standard_envs()
        raise UserError(
            f"unknown env id or config {name_or_id!r}; expected one of: {', '.join(x['id'] for x in envs)} "
            f"(or a config name: {', '.join(x['config'] for x in envs)}; training variants such as "
            "disagg/SmallRoute-short-v3: disagg-gym list)"
        )
    return e["id"]
