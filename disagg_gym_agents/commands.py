"""The agents' ``disagg-gym`` subcommands, added to the core CLI through an entry point.

``pyproject.toml`` registers ``COMMANDS`` in the ``disagg_gym.commands`` entry-point group;
``disagg_gym.cli`` loads it, so the simulator's CLI never imports this package. ``list`` is
replaced by the same command with the registered agents added to ``list --policies``.
"""

from __future__ import annotations

import argparse

from disagg_gym.cli import Command, add_list_args
from disagg_gym_agents.cli import add_evaluate_args, add_train_args
from disagg_gym_agents.leaderboard.cli import add_benchmark_args, add_validate_args
from disagg_gym_agents.registry import POLICIES
from disagg_gym_agents.tuning import add_tune_args


def _add_list_with_agents(sp: argparse.ArgumentParser) -> None:
    add_list_args(sp)
    sp.set_defaults(agents=POLICIES)


COMMANDS: tuple[Command, ...] = (
    Command("list", "disagg_gym.commands:cmd_list", "list registered env ids (and policies)",
            _add_list_with_agents),
    Command("train", "disagg_gym_agents.cli:cmd_train",
            "train PPO / MaskablePPO on a registered env (needs the [rl] extra)", add_train_args),
    Command("evaluate", "disagg_gym_agents.cli:cmd_evaluate",
            "evaluate a heuristic or SB3 policy, per-episode KPIs to CSV", add_evaluate_args),
    Command("benchmark", "disagg_gym_agents.leaderboard.cli:cmd_benchmark",
            "run every heuristic and trained agent on every config; write results.csv, "
            "leaderboard, plots (needs the [rl] extra)", add_benchmark_args, extra="rl"),
    Command("tune-baselines", "disagg_gym_agents.tuning:cmd_tune_baselines",
            "tune admission thresholds and the static split on validation seeds (20000+; a "
            "one-parameter grid is extended past an edge while the best value sits on it); "
            "write leaderboard/tuned.yaml", add_tune_args),
    Command("validate", "disagg_gym_agents.leaderboard.cli:cmd_validate",
            "replay leaderboard results; exit 1 naming any row/KPI that differs (needs the [rl] extra)",
            add_validate_args, extra="rl"),
)
"""Commands of the agents layer (``[project.entry-points."disagg_gym.commands"]``)."""
