"""Scenario configs: cluster + workload + horizon + policies, loaded from YAML by name or path.

A scenario file (``configs/<name>.yaml``) is the unit that standard env ids, ``simulate`` and
the leaderboard refer to. The ``env`` section belongs to the Gymnasium layer and is validated
there; the simulator ignores it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from disagg_gym.cluster.config import ClusterConfig
from disagg_gym.config import ConfigError, apply_overrides, deep_merge, from_dict, read_yaml, spec
from disagg_gym.generator import at_nominal
from disagg_gym.paths import configs_dir
from disagg_gym.workload import WorkloadConfig

DEFAULT_SCENARIO = "small-route"


@dataclass(frozen=True, slots=True)
class AllocatorConfig:
    """Which allocator runs inside the simulator (route task and ``simulate``)."""

    name: str = field(default="none", metadata=spec("allocator name: none or one of disagg_gym.cluster.policies.ALLOCATORS"))
    interval_s: float = field(default=10.0, metadata=spec("control interval, simulated seconds", gt=0))
    prefill_fraction: float = field(default=0.5, metadata=spec("static: share of prefill instances", gt=0, lt=1))
    ttft_target_s: float = field(default=1.0, metadata=spec("threshold: prefill wait target", gt=0))
    decode_pressure_target: float = field(default=0.8, metadata=spec("threshold: decode load target", gt=0))


TEST_SPLIT = "test"
"""Name of the in-distribution split: the config as written, on the held-out seeds 10000+."""
SHIFT_PREFIX = "shift:"
"""A shifted split's name in results and tables: ``shift:<name>``."""
_SHIFT_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class ShiftSplit:
    """A shifted test split: the config with ``overrides`` applied, on the same held-out seeds."""

    description: str = field(metadata=spec("what is shifted and by how much"))
    overrides: dict[str, Any] = field(metadata=spec("dotted-key overrides of this config"))

    def validate(self) -> None:
        """The shift must change something and must not redefine the splits."""
        if not self.overrides:
            raise ValueError("key 'overrides': a shift needs at least one override (got {})")
        for k in self.overrides:
            if k == "evaluation" or k.startswith("evaluation."):
                raise ValueError(f"key 'overrides': a shift cannot override {k!r}")


@dataclass(frozen=True, slots=True)
class EvaluationConfig:
    """How the leaderboard evaluates a config (issue #15): training distribution and test splits.

    Learned agents train on ``training`` (the config as written, workload seeds drawn from
    ``[1000000, 2**31 - 1)``) and select checkpoints on the validation seeds 20000+. Every split is
    evaluated on the same held-out seeds ``10000 + k`` (the leaderboard runs 10 by default):
    split ``test`` is the config as written (in distribution); split ``shift:<name>`` applies
    ``shifts[name].overrides``.
    """

    training: str = field(
        default="this config as written; workload seeds drawn per episode from [1000000, 2^31-1)",
        metadata=spec("the training distribution, in words"),
    )
    shifts: dict[str, ShiftSplit] = field(
        default_factory=dict, metadata=spec("shifted test splits by name (split shift:<name>)")
    )

    def validate(self) -> None:
        """Shift names are lower-case identifiers (they appear as ``shift:<name>`` in results)."""
        for name in self.shifts:
            if not _SHIFT_NAME.fullmatch(name):
                raise ValueError(
                    f"key 'shifts.{name}': a shift name is lower-case letters, digits and _ (got {name!r})"
                )

    def splits(self) -> list[str]:
        """Every split's name: ``test`` first, then ``shift:<name>`` in file order."""
        return [TEST_SPLIT, *(SHIFT_PREFIX + n for n in self.shifts)]

    def overrides_of(self, split: str) -> dict[str, Any]:
        """The overrides that turn the config into ``split`` (``{}`` for ``test``).

        Raises:
            ConfigError: An unknown split name (listing the config's splits).
        """
        if split == TEST_SPLIT:
            return {}
        name = split[len(SHIFT_PREFIX):] if split.startswith(SHIFT_PREFIX) else None
        if name is None or name not in self.shifts:
            raise ConfigError(f"unknown split {split!r}; expected one of: {', '.join(self.splits())}")
        return dict(self.shifts[name].overrides)


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """A complete, runnable scenario."""

    name: str = field(metadata=spec("scenario name"))
    cluster: ClusterConfig = field(metadata=spec("the serving cluster"))
    workload: WorkloadConfig = field(metadata=spec("the request stream"))
    description: str = field(default="", metadata=spec("what makes it hard, what it tests"))
    task: Literal["route", "allocate", "joint"] = field(default="route", metadata=spec("env task"))
    horizon_s: float = field(default=600.0, metadata=spec("simulated seconds of arrivals", gt=0))
    max_requests: int | None = field(default=None, metadata=spec("cap on arrivals per episode", ge=1))
    seed: int = field(default=0, metadata=spec("default workload seed", ge=0))
    router: str = field(default="jsq", metadata=spec("built-in router for simulate / allocate task"))
    allocator: AllocatorConfig = field(default_factory=AllocatorConfig, metadata=spec("built-in allocator"))
    primary_metric: Literal[
        "goodput_rps", "slo_attainment", "cost_per_1m_good_tokens_usd", "energy_per_good_request_j",
        "slo_tokens_per_s",
    ] = field(
        default="goodput_rps", metadata=spec("the leaderboard score")
    )
    admission: dict[str, dict[str, Any]] = field(default_factory=dict, metadata=spec(
        "parameters of admission controllers by name, e.g. {ttft_guard: {alpha: 1.2}} "
        "(used by composed policies <router>+<admission>)"
    ))
    horizon_policy: Literal["auto", "drain", "fail"] = field(default="auto", metadata=spec(
        "requests in flight at the horizon: drain (no new arrivals, run to completion), fail "
        "(stop at the horizon, count them as failures) or auto (simulate drains, env episodes fail)"
    ))
    version: int = field(default=0, metadata=spec("env version suffix (-vN)", ge=0))
    env: dict[str, Any] = field(default_factory=dict, metadata=spec("Gymnasium env options"))
    variants: dict[str, Any] = field(
        default_factory=dict,
        metadata=spec("named partial configs merged over this one, registered as disagg/<Name>-<variant>-v<N>"),
    )
    evaluation: EvaluationConfig = field(
        default_factory=EvaluationConfig, metadata=spec("leaderboard training distribution and test splits")
    )

    def validate(self) -> None:
        """Cross-field checks."""
        from disagg_gym.cluster.admission import ADMISSION, make_admission, split_name
        from disagg_gym.cluster.policies import ALLOCATORS, ROUTERS
        from disagg_gym.errors import UserError

        try:
            base, _ = split_name(self.router)
        except UserError as exc:
            raise ValueError(f"key 'router': {exc} (got {self.router!r})") from None
        if base not in ROUTERS:
            raise ValueError(
                f"key 'router': unknown router; expected one of {', '.join(ROUTERS.names())} (got {self.router!r})"
            )
        if self.allocator.name != "none" and self.allocator.name not in ALLOCATORS:
            raise ValueError(
                f"key 'allocator.name': unknown allocator; expected one of none, "
                f"{', '.join(ALLOCATORS.names())} (got {self.allocator.name!r})"
            )
        for name, params in self.admission.items():
            if name not in ADMISSION:
                raise ValueError(
                    f"key 'admission.{name}': unknown admission controller; expected one of "
                    f"{', '.join(ADMISSION.names())}"
                )
            if not isinstance(params, dict):
                raise ValueError(f"key 'admission.{name}': expected a mapping of parameters (got {params!r})")
            try:
                make_admission(name, params)
            except (UserError, TypeError) as exc:
                raise ValueError(f"key 'admission.{name}': {exc}") from None

    def drains(self, default: bool) -> bool:
        """Whether in-flight requests run to completion after the horizon (``default`` for auto)."""
        return default if self.horizon_policy == "auto" else self.horizon_policy == "drain"


def standard_names() -> list[str]:
    """Names of the standard scenarios shipped with the package."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def resolve_path(name_or_path: str) -> Path:
    """A scenario name (``small-route``) or a YAML path -> the file path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    cand = configs_dir() / f"{name_or_path}.yaml"
    if cand.exists():
        return cand
    raise ConfigError(
        f"unknown config {name_or_path!r}: not a file and not a standard config "
        f"(expected one of: {', '.join(standard_names())}; or its env id, see `disagg-gym list`)"
    )


def config_source(path: Path) -> str:
    """How error messages name a config file: a shipped config as users name it
    (``config small-route``), not by the installed copy's path deep in site-packages; any
    other file by its path.
    """
    return f"config {path.stem}" if path.parent.resolve() == configs_dir().resolve() else str(path)


def load_scenario(name_or_path: str = DEFAULT_SCENARIO, overrides: dict[str, Any] | None = None) -> ScenarioConfig:
    """Loads and validates a scenario.

    Args:
        name_or_path: A standard config name or a YAML file path.
        overrides: Dotted-key overrides, e.g. ``{"workload.rate_per_s": 8}``.

    Raises:
        ConfigError: with one line naming the file, dotted key and bad value.
    """
    path = resolve_path(name_or_path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level (got {type(data).__name__})")
    source = config_source(path)
    if overrides:  # the message says the value may come from them
        data = apply_overrides(data, overrides)
        source += " with overrides"
    data.setdefault("name", path.stem)
    scenario = from_dict(ScenarioConfig, data, source=source)
    for name, shift in scenario.evaluation.shifts.items():
        # Each shift must yield a valid scenario: its overrides are checked as strictly as the file.
        try:
            from_dict(ScenarioConfig, apply_overrides(data, shift.overrides), source=source)
        except ConfigError as exc:
            why = str(exc).removeprefix(f"{source}: ")
            raise ConfigError(f"{source}: key 'evaluation.shifts.{name}.overrides': {why}") from None
    for name, part in scenario.variants.items():
        # Each variant must yield a valid scenario too (its distribution nodes at their nominal
        # values), here and not only when an env first builds it.
        if not isinstance(part, dict):
            raise ConfigError(f"{source}: key 'variants.{name}': expected a mapping (got {part!r})")
        try:
            from_dict(ScenarioConfig, at_nominal(deep_merge(data, part), source), source=source)
        except ConfigError as exc:
            why = str(exc).removeprefix(f"{source}: ")
            raise ConfigError(f"{source}: key 'variants.{name}': {why}") from None
    return scenario
