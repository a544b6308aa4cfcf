"""Optional extras: which command needs which ``pip install "disagg-gym[...]"`` extra.

The core install (``pip install disagg-gym``) is the simulator, the Gymnasium envs and the
``simulate``/``predict``/``list``/``bench`` commands (numpy, pyyaml, gymnasium). Learning and
plotting bring heavy dependencies, so they are extras: ``[rl]`` (torch, Stable-Baselines3,
sb3-contrib, TensorBoard, tqdm, rich) for ``train``/``evaluate`` of learned policies and
``benchmark``/``validate``, ``[plots]`` (matplotlib) for every ``--plots`` output, and ``[ray]``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence

from disagg_gym.errors import UserError

EXTRAS: dict[str, tuple[str, ...]] = {
    "rl": ("torch", "stable_baselines3", "sb3_contrib", "tensorboard", "tqdm"),
    "plots": ("matplotlib",),
    "ray": ("ray",),
}
"""Import names each extra provides (what ``require`` checks)."""
_find_spec = importlib.util.find_spec  # one name to patch in tests


def missing(extra: str, *modules: str) -> list[str]:
    """The modules of ``extra`` (or only ``modules``) that cannot be imported here."""
    names = modules or EXTRAS[extra]
    return [m for m in names if _find_spec(m) is None]


def has(extra: str, *modules: str) -> bool:
    """Whether every module of ``extra`` (or only ``modules``) is installed."""
    return not missing(extra, *modules)


def require(extra: str, *modules: str) -> None:
    """Raises one ``UserError`` line naming the extra to install if a module of it is absent.

    Args:
        extra: ``rl``, ``plots`` or ``ray``.
        *modules: Only check these import names (default: every module of the extra).
    """
    gone = missing(extra, *modules)
    if gone:
        raise UserError(
            f"this needs the [{extra}] extra ({', '.join(gone)} not installed): "
            f'pip install "disagg-gym[{extra}]"'
        )


def import_user_modules(modules: Sequence[str]) -> None:
    """Imports each of ``modules`` (``--import MODULE``): the user's own code that registers
    routers, admission controllers, allocators or policies in the package's registries.

    Raises:
        UserError: A module that cannot be imported, naming it and why (one line).
    """
    for m in modules:
        try:
            importlib.import_module(m)
        except ModuleNotFoundError as exc:
            hint = "" if exc.name != m else " (on sys.path? a module of the current folder needs PYTHONPATH=.)"
            raise UserError(f"--import {m}: {exc}{hint}") from None
        except Exception as exc:  # noqa: BLE001 - the user's module failing is one line, not a traceback
            raise UserError(f"--import {m}: the module failed to import: {type(exc).__name__}: {exc}") from None
