"""The policy registry and policy specs (``"heuristic:NAME"`` / ``"sb3:PATH"``); ``disagg_gym_agents.factory`` builds them."""

from __future__ import annotations

import inspect
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from disagg_gym.cluster.admission import split_name
from disagg_gym.registry import Registry
from disagg_gym_agents.admission import composed_class
from disagg_gym.errors import UserError


class PolicyRegistry(Registry[type]):
    """The heuristic registry; also resolves composed names ``<router>+<admission>``.

    ``get("jsq+ttft_guard")`` builds (once) the class that routes with ``jsq`` and admits with
    controller ``ttft_guard`` (``disagg_gym_agents.admission``); composed names are not listed
    by ``names()`` (every pair would be), but ``in`` and ``get`` accept them.
    """

    def get(self, name: str) -> type:  # noqa: D102
        base, adm = split_name(name)
        if adm is None:
            return super().get(name)
        base_cls = super().get(base)
        if not {"route", "joint"} & set(base_cls.tasks):
            raise UserError(f"policy {name!r}: {base!r} does not route requests, so it cannot compose with an admission controller")
        return composed_class(f"{self.canonical(base)}+{adm}", base_cls, adm)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and "+" in name:
            try:
                self.get(name)
            except UserError:
                return False
            return True
        return super().__contains__(name)


POLICIES: PolicyRegistry = PolicyRegistry("heuristic")
"""Heuristic policy classes by name (``@POLICIES.register("jsq")`` next to each class);
composed names ``<router>+<admission>`` resolve without being listed."""


def parse_policy_spec(spec: str) -> tuple[str, str]:
    """Splits ``"heuristic:jsq"`` / ``"sb3:runs/x/model.zip"`` into ``(kind, value)``.

    A bare name (``"jsq"``) means a heuristic.

    Raises:
        ValueError: For an unknown kind or an empty value.
    """
    kind, sep, value = spec.partition(":")
    if not sep:
        kind, value = "heuristic", spec
    if kind not in ("heuristic", "sb3"):
        raise UserError(
            f"policy {spec!r}: expected heuristic:NAME or sb3:PATH (got kind {kind!r})"
        )
    if not value:
        raise UserError(f"policy {spec!r}: missing the name or path after {kind!r}")
    return kind, value


def check_policy_spec(spec: str) -> None:
    """Validates a policy spec without building anything (unknown heuristic, missing model file).

    Raises:
        ValueError: Naming the bad heuristic or path.
    """
    kind, value = parse_policy_spec(spec)
    if kind == "heuristic":
        POLICIES.get(value)
    else:
        check_model_path(value)


def check_model_path(value: str | Path) -> None:
    """Raises ``UserError`` saying what is wrong with a model path (missing, a folder, not a zip)."""
    p = Path(value)
    if p.is_dir():
        hint = f"; did you mean sb3:{p / 'model.zip'}?" if (p / "model.zip").is_file() else ""
        raise UserError(f"model path {str(value)!r} is a folder, expected a model .zip file{hint}")
    if not p.is_file():
        raise UserError(f"model file not found: {str(value)!r}")
    if not zipfile.is_zipfile(p):
        raise UserError(f"model file {str(value)!r} is not a model zip saved by SB3")
    try:
        with zipfile.ZipFile(p) as zf:
            saved_by_sb3 = "data" in zf.namelist()  # SB3's load asserts on a zip without it
    except (zipfile.BadZipFile, OSError):
        saved_by_sb3 = False
    if not saved_by_sb3:
        raise UserError(f"model file {str(value)!r} is not a model zip saved by SB3 (it has no 'data' entry)")


def check_kwargs(name: str, fn: Callable[..., Any], kwargs: Mapping[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Raises one ``UserError`` line naming the keywords of ``kwargs`` that ``fn`` does not take
    (Python's ``TypeError`` names a class's ``__init__``, or says only "takes no arguments",
    rather than the policy ``name`` and what it takes). ``skip``: parameters the caller fills.
    A ``**kwargs`` catch-all takes anything (it checks its own).
    """
    params = inspect.signature(fn).parameters.values()
    if any(q.kind is q.VAR_KEYWORD for q in params):
        return
    accepted = [q.name for q in params if q.name not in skip and q.name != "self"
                and q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        expected = f"expected one of: {', '.join(accepted)}" if accepted else "it takes none"
        raise UserError(f"{name}: unknown parameter {', '.join(map(repr, unknown))}; {expected}")
