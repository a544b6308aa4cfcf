"""The leaderboard's Ray backend under its former name (see ``disagg_gym_agents.leaderboard.ray_backend``)."""

from __future__ import annotations

from disagg_gym_agents.leaderboard.ray_backend import benchmark_ray, run_cells_ray
from disagg_gym_agents.leaderboard.results import missing_cells
from disagg_gym_agents.ray_setup import RAY_MISSING, import_ray, init_ray

__all__ = ["RAY_MISSING", "benchmark_ray", "import_ray", "init_ray", "missing_cells", "run_cells_ray"]
