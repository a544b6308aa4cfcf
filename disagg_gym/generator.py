"""Scenario generators: configs that give distributions instead of values, sampled per episode.

In the style of Jumanji's generators, a scenario may replace a value by a *distribution node*;
the env samples every node at each ``reset`` from the episode's seed, validates the result
strictly (the same checks as a plain config) and reports the draw in ``info["scenario"]``.
The syntax (docs/envs.md, "Scenario generators")::

    workload:
      rate_per_s: {dist: uniform, low: 30, high: 60}        # float in [low, high)
      lengths: {choice: [azure_conv, azure_code]}           # one of the values
      window_start_s: {dist: randint, low: 0, high: 3000}   # int in [low, high]
      period_s: {dist: loguniform, low: 300, high: 3600}    # log-uniform in [low, high)
      output_tokens: {choice: [64, 256], weights: [3, 1]}   # weighted choice

Nodes may appear under ``workload``, ``cluster``, ``horizon_s``, ``max_requests`` and
``env.warm_start_s``. A node under ``cluster`` must keep the observation and action sizes (the
env's ``layout``): with the flat observation that is the instance count and the switchable
instances per GPU type (a ``choice`` between GPU types or whole group lists of the same shape
is fine); with ``env.obs_mode: padded`` and ``env.max_instances: M`` the spaces have ``M`` slots
whatever the cluster, so instance counts may vary per episode up to ``M`` (issue #16 item 4).
Every node's extreme values (``low``, ``high`` and each choice) are validated at construction,
and so is every combination of the ``cluster`` nodes' extremes (when there are at most
:data:`MAX_JOINT_CHECKS`), so a bad range fails before the first episode; each draw is checked
again when it is sampled.

This module imports no Gymnasium: the sampling is plain data in, plain data out.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from disagg_gym.config import ConfigError

DISTS = ("uniform", "loguniform", "randint")
MAX_JOINT_CHECKS = 1024
"""Most combinations of ``cluster`` node extremes checked together at construction."""
#: Dotted prefixes under which distribution nodes are allowed.
SAMPLED_ROOTS = ("workload", "cluster", "horizon_s", "max_requests", "env.warm_start_s")


class LayoutError(ValueError):
    """Raised by a ``layout`` function for a config the env's spaces cannot hold.

    ``str(err)`` is the problem without a key (``env.max_instances=8 is below the cluster's 12
    instances``); the generator prefixes the key and value that caused it.
    """


def is_dist(node: Any) -> bool:
    """Whether ``node`` is a distribution node (a mapping with a ``dist`` or ``choice`` key)."""
    return isinstance(node, Mapping) and ("dist" in node or "choice" in node)


def _join(prefix: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(float(v))


@dataclass(frozen=True, slots=True)
class Dist:
    """One checked distribution node at dotted path ``key``."""

    key: str
    kind: str  # uniform | loguniform | randint | choice
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()
    probs: tuple[float, ...] = ()

    def extremes(self) -> list[Any]:
        """Values that bound the node's outcomes (checked against the strict config)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "randint":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]

    def nominal(self) -> Any:
        """The value used for the construction-time layout: the first choice or ``low``."""
        return self.extremes()[0]

    def sample(self, rng: np.random.Generator) -> Any:
        """One draw from ``rng``."""
        if self.kind == "choice":
            i = int(rng.choice(len(self.values), p=np.asarray(self.probs)))
            return copy.deepcopy(self.values[i])
        if self.kind == "randint":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


def parse_dist(node: Mapping[str, Any], key: str, source: str = "") -> Dist:
    """Checks one distribution node strictly; one ``ConfigError`` line naming the key."""
    where = f"{source}: " if source else ""

    def bad(problem: str) -> ConfigError:
        return ConfigError(f"{where}key '{key}': {problem}")

    if "choice" in node:
        unknown = [k for k in node if k not in ("choice", "weights")]
        if unknown:
            raise bad(f"unknown key '{unknown[0]}' in a choice node; expected choice, weights")
        values = node["choice"]
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
            raise bad(f"choice must be a non-empty list (got {values!r})")
        for v in values:
            if _contains_dist(v):
                raise bad("a choice value cannot contain another distribution")
        weights = node.get("weights")
        if weights is None:
            probs = tuple([1.0 / len(values)] * len(values))
        else:
            if not isinstance(weights, (list, tuple)) or len(weights) != len(values) or not all(
                _number(w) and w >= 0 for w in weights
            ) or sum(weights) <= 0:
                raise bad(f"weights must be {len(values)} non-negative numbers with a positive sum (got {weights!r})")
            total = float(sum(weights))
            probs = tuple(float(w) / total for w in weights)
        return Dist(key, "choice", values=tuple(values), probs=probs)
    kind = node.get("dist")
    if kind not in DISTS:
        raise bad(f"dist must be one of {', '.join(DISTS)} (got {kind!r})")
    unknown = [k for k in node if k not in ("dist", "low", "high")]
    if unknown:
        raise bad(f"unknown key '{unknown[0]}' in a {kind} node; expected dist, low, high")
    for name in ("low", "high"):
        if name not in node:
            raise bad(f"{kind} needs '{name}'")
        if not _number(node[name]):
            raise bad(f"{name} must be a finite number (got {node[name]!r})")
    lo, hi = node["low"], node["high"]
    if kind == "randint" and not (float(lo).is_integer() and float(hi).is_integer()):
        raise bad(f"randint bounds must be integers (got low={lo!r}, high={hi!r})")
    if hi < lo or (kind != "randint" and hi == lo):
        raise bad(f"needs low < high (got low={lo!r}, high={hi!r})")
    if kind == "loguniform" and lo <= 0:
        raise bad(f"loguniform needs low > 0 (got {lo!r})")
    return Dist(key, kind, low=float(lo), high=float(hi))


def _contains_dist(node: Any) -> bool:
    if is_dist(node):
        return True
    if isinstance(node, Mapping):
        return any(_contains_dist(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_contains_dist(v) for v in node)
    return False


def find_dists(data: Any, source: str = "") -> list[Dist]:
    """Every distribution node of a scenario's plain data, checked, in document order.

    Raises:
        ConfigError: A malformed node, or one outside :data:`SAMPLED_ROOTS`.
    """
    out: list[Dist] = []

    def walk(node: Any, key: str) -> None:
        if is_dist(node):
            if not any(key == r or key.startswith(r + ".") or key.startswith(r + "[") for r in SAMPLED_ROOTS):
                where = f"{source}: " if source else ""
                raise ConfigError(
                    f"{where}key '{key}': distributions are allowed only under "
                    f"{', '.join(SAMPLED_ROOTS)}"
                )
            out.append(parse_dist(node, key, source))
            return
        if isinstance(node, Mapping):
            for k, v in node.items():
                if not key and k == "variants":  # applied only when a variant is chosen
                    continue
                walk(v, _join(key, k))
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, _join(key, i))

    walk(data, "")
    return out


def _under_cluster(key: str) -> bool:
    """Whether dotted ``key`` is ``cluster`` or below it (the nodes that can change the layout)."""
    return key == "cluster" or key.startswith(("cluster.", "cluster["))


def _set(data: Any, key: str, value: Any) -> None:
    """Sets dotted/indexed ``key`` (``cluster.groups[1].gpu``) inside ``data`` in place."""
    parts: list[Any] = []
    for part in key.split("."):
        while "[" in part:
            head, rest = part.split("[", 1)
            if head:
                parts.append(head)
            idx, part = rest.split("]", 1)
            parts.append(int(idx))
        if part:
            parts.append(part)
    node = data
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def at_nominal(data: Any, source: str = "") -> Any:
    """A deep copy of ``data`` with every distribution node at its nominal value (``find_dists``
    checks the nodes; ``ConfigError`` for a malformed one or one outside ``SAMPLED_ROOTS``).
    """
    return substitute(data, {d.key: d.nominal() for d in find_dists(data, source)})


def substitute(data: Any, values: Mapping[str, Any]) -> Any:
    """A deep copy of ``data`` with the nodes at ``values``' keys replaced (outer keys first)."""
    out = copy.deepcopy(data)
    for key in sorted(values, key=lambda k: k.count(".") + k.count("[")):
        _set(out, key, copy.deepcopy(values[key]))
    return out


class ScenarioGenerator:
    """Samples concrete scenario data from data with distribution nodes.

    Args:
        data: Plain scenario data (YAML tree) that may hold distribution nodes.
        build: ``data -> config`` (the strict loader), used to validate each draw.
        layout: ``config -> value`` that must not vary between draws (compared with ``==``:
            what fixes the space sizes); it raises :class:`LayoutError` for a config the
            spaces cannot hold.
        source: The origin named in errors.

    Raises:
        ConfigError: A malformed node, or an extreme value (or a combination of ``cluster``
            extremes) the strict loader rejects, that changes ``layout`` or that ``layout``
            refuses.
    """

    def __init__(
        self, data: Any, build: Callable[[Any], Any], layout: Callable[[Any], Any], source: str = ""
    ) -> None:
        self.data = data
        self.dists = find_dists(data, source)
        self._build = build
        self._layout_of = layout
        self._where = f"{source}: " if source else ""
        base = {d.key: d.nominal() for d in self.dists}
        self.nominal = build(substitute(data, base))
        try:
            self.layout = layout(self.nominal)
        except LayoutError as exc:
            raise ConfigError(f"{self._where}{exc}") from None
        for d in self.dists:  # every extreme passes the strict loader and keeps the layout
            for v in d.extremes()[1:]:
                self._check({**base, d.key: v}, {d.key: v})
        cluster = [d for d in self.dists if _under_cluster(d.key)]
        if len(cluster) > 1 and math.prod(len(d.extremes()) for d in cluster) <= MAX_JOINT_CHECKS:
            # e.g. two group counts each within max_instances whose sum is not
            for combo in itertools.product(*(d.extremes() for d in cluster)):
                values = dict(zip((d.key for d in cluster), combo))
                self._check({**base, **values}, values)

    def _check(self, values: Mapping[str, Any], named: Mapping[str, Any]) -> Any:
        """Builds ``values`` substituted into the data; one ``ConfigError`` line naming the
        ``named`` keys if the layout changes or is refused. Returns the config.
        """
        cfg = self._build(substitute(self.data, values))
        if len(named) == 1:
            (key, v), = named.items()
            what = f"key '{key}': the value {v!r}"
        else:
            keys = ", ".join(f"'{k}'" for k in named)
            what = f"keys {keys}: the values {tuple(named.values())!r}"
        try:
            got = self._layout_of(cfg)
        except LayoutError as exc:
            raise ConfigError(f"{self._where}{what}: {exc}") from None
        if got != self.layout:
            raise ConfigError(
                f"{self._where}{what} changes the observation/action sizes ({got} vs {self.layout}); "
                "sampled scenarios must keep the instance count, the switchable instances per GPU "
                "type and the cache features (instance counts may vary with env.obs_mode: padded "
                "and env.max_instances at least the largest count)"
            )
        return cfg

    @property
    def active(self) -> bool:
        """Whether there is anything to sample."""
        return bool(self.dists)

    def sample(self, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
        """``(config, {dotted key: drawn value})``; the config is checked by the strict loader
        and keeps the layout (a ``ConfigError`` naming the drawn ``cluster`` keys otherwise).
        """
        if not self.dists:
            return self.nominal, {}
        drawn = {d.key: d.sample(rng) for d in self.dists}
        named = {k: v for k, v in drawn.items() if _under_cluster(k)} or drawn
        return self._check(drawn, named), drawn
