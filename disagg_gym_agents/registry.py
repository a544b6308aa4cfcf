"""The policy registry and policy specs (``"heuristic:NAME"`` / ``"sb3:PATH"``); ``disagg_gym_agents.factory`` builds them."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from disagg_gym.cluster.admission import split_name
from disagg_gym.registry import Registry
from disagg_gym_agents.admission import composed_class
from disagg_gym.errors import UserError
from disagg_gym.extras import import_user_modules


class PolicyRegistry(Registry[type]):
    """The heuristic registry; also resolves composed names ``<router>+<admission>``.

    ``get("jsq+ttft_guard")`` builds (once) the class that routes with ``jsq`` and admits with
    controller ``ttft_guard`` (``disagg_gym_agents.admission``); composed names are not listed
    by ``names()`` (every pair would be), but ``in`` and ``get`` accept them.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.plugins_loaded = False  # the disagg_gym.policies entry points were imported
        self._on_import: list[Callable[[], None]] = []

    def on_import(self, fn: Callable[[], None]) -> None:
        """Calls ``fn`` after user modules or plugins were imported (they may have registered
        simulator routers, whose heuristics ``disagg_gym_agents.heuristics`` then derives).
        """
        self._on_import.append(fn)

    def imported(self) -> None:
        """Runs the ``on_import`` hooks (after ``--import`` modules or plugins were imported)."""
        for fn in self._on_import:
            fn()

    def load_plugins(self) -> bool:
        """Imports every module of the ``disagg_gym.policies`` entry-point group (``PLUGIN_GROUP``),
        the first time it is called (later calls return ``False`` at once); returns whether it
        imported any. The registry calls it the first time it meets a name it does not know.

        Raises:
            UserError: A plugin that fails to import, naming it and its package.
        """
        if self.plugins_loaded:
            return False
        self.plugins_loaded = True
        found = False
        for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - any failure of third-party code is one line
                dist = getattr(ep.dist, "name", "?")
                raise UserError(f"policy plugin {ep.name!r} ({ep.value}, package {dist}) failed to import: "
                                f"{type(exc).__name__}: {exc}") from None
            found = True
        if found:  # routers a plugin registered become heuristics too
            self.imported()
        return found

    def get(self, name: str) -> type:  # noqa: D102
        base, adm = split_name(name)
        if base not in self._items and base not in self._aliases:
            self.load_plugins()  # an installed plugin package may register it (loaded once)
        try:
            base_cls = super().get(base)
        except UserError as exc:  # a policy of the user's own is named before its module is imported
            raise UserError(f"{exc} (a policy of your own: --import MODULE, docs/agents.md \"Your own policy\")") from None
        if adm is None:
            return base_cls
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
        if isinstance(name, str) and not super().__contains__(name):
            self.load_plugins()
        return super().__contains__(name)


POLICIES: PolicyRegistry = PolicyRegistry("heuristic")
"""Heuristic policy classes by name (``@POLICIES.register("jsq")`` next to each class);
composed names ``<router>+<admission>`` resolve without being listed."""

PLUGIN_GROUP = "disagg_gym.policies"
"""Entry-point group of installed packages that register policies: each entry names a module,
imported (once, the first time a name is not found) so that its ``@POLICIES.register`` lines run."""


def add_import_arg(p: Any) -> None:
    """The ``--import MODULE`` option of the commands that name policies."""
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable): a module of your own that registers policies "
                        "with @POLICIES.register('name') (docs/agents.md, \"Your own policy\")")


def import_policy_modules(modules: Sequence[str]) -> None:
    """Imports each of ``modules`` (``--import MODULE``): modules of the user's own that register
    policies with ``@POLICIES.register("name")`` (or simulator routers with
    ``@ROUTERS.register``, which then become heuristics of the same name), so that ``evaluate``,
    ``benchmark``, ``validate`` and ``tune-baselines`` can name them.

    Raises:
        UserError: A module that cannot be imported, naming it and why.
    """
    import_user_modules(modules)
    if modules:  # routers registered by those modules become agents too (as at package import)
        POLICIES.imported()


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
