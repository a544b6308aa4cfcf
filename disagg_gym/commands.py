"""Small CLI commands that need no heavy imports: ``list``."""

from __future__ import annotations

import argparse
import json


def cmd_list(args: argparse.Namespace) -> int:
    """Prints registered env ids with one-line descriptions (or the built-in policies)."""
    if args.policies:
        from disagg_gym.cluster.policies import ALLOCATORS, ROUTERS

        data = {"routers": ROUTERS.names(), "allocators": ALLOCATORS.names()}
        if getattr(args, "agents", None) is not None:  # set by the agents' `list` (disagg_gym_agents.commands)
            data["agents"] = list(args.agents)
        print(json.dumps(data, indent=None if args.json else 2))
        return 0
    from disagg_gym.env.registration import standard_envs

    envs = standard_envs()
    if args.json:
        print(json.dumps(envs))
    else:
        width = max(len(e["id"]) for e in envs)
        for e in envs:
            print(f"{e['id']:<{width}}  [{e['task']:8s}] {e['description']}")
    return 0
