"""Where the packaged standard configs live (importable without the simulator)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def configs_dir() -> Path:
    """Folder holding the standard scenario YAML files (installed or in the source tree)."""
    try:
        path = Path(str(resources.files("disagg_gym.configs")))
        if path.is_dir() and any(path.glob("*.yaml")):
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "configs"
