"""Starting Ray for the agents (the ``[ray]`` extra): ``import_ray`` and ``init_ray``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from disagg_gym.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
"""This checkout: put first on local Ray workers' ``PYTHONPATH``."""
RAY_MISSING = (
    "this needs Ray: pip install \"disagg-gym[ray]\" (or scripts/setup_ray.sh, which creates "
    ".venv-ray); see docs/scale-out.md"
)


def import_ray() -> Any:
    """The ``ray`` module; a ``ValueError`` saying how to install it when it is missing.

    ``ray`` is imported lazily so that this module (and the CLI that names it) imports without
    the ``ray`` extra.
    """
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> bool:
    """Starts (or connects to) Ray unless it is already running; returns whether it did.

    A local instance gets ``num_cpus`` CPUs and puts this checkout first on the workers'
    ``PYTHONPATH``, so tasks run the same code as the driver even when an older copy of the
    package is installed in the venv. With ``address`` (``"auto"``, ``"HOST:6379"`` or
    ``"ray://HOST:10001"``) Ray connects to that cluster and ``num_cpus`` is ignored.

    Raises:
        ValueError: ``num_cpus`` is not a positive integer.
    """
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
        raise UserError(f"num_workers must be a positive integer (got {num_cpus!r})")
    ray = import_ray()
    if ray.is_initialized():
        return False
    env = dict(runtime_env or {})
    if address is None:
        env_vars = dict(env.get("env_vars", {}))
        path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        env_vars.setdefault("PYTHONPATH", os.pathsep.join(p for p in path if p))
        env["env_vars"] = env_vars
    try:
        ray.init(
            address=address,
            num_cpus=num_cpus if address is None else None,
            runtime_env=env or None,
            include_dashboard=False,
            logging_level="WARNING",
        )
    except ValueError as exc:  # e.g. "Invalid address format: bogus" (was a traceback)
        raise UserError(f"--address {address!r}: {exc} (expected auto, HOST:PORT or ray://HOST:PORT)") from None
    return True
