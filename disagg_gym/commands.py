"""Small CLI commands that need no heavy imports: ``list``."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any


# A sentence ends at ". " before a capital letter or a parenthesis, except after the
# abbreviations docstrings use ("Sec. 5", "et al. (2024)", "e.g. X").
_SENTENCE_END = re.compile(r"(?<!\bSec)(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)\.\s+(?=[A-Z(])")


def _one_line(obj: Any, width: int = 90) -> str:
    """First sentence of ``obj``'s docstring, cut to ``width`` characters."""
    para = " ".join((obj.__doc__ or "").strip().split("\n\n")[0].split()).replace("``", "")
    text = para if len(para) <= width else _SENTENCE_END.split(para, maxsplit=1)[0]
    text = text.rstrip(".")
    return text if len(text) <= width else text[: width - 3].rsplit(" ", 1)[0] + " ..."


def cmd_list(args: argparse.Namespace) -> int:
    """Prints registered env ids with one-line descriptions (or the built-in policies)."""
    if args.policies:
        return _list_policies(args.json, getattr(args, "agents", None))
    from disagg_gym.env.registration import STANDARD_VARIANTS, standard_envs, variant_id_for

    envs = standard_envs()
    for e in envs:  # the registered training variants of each config (-short, -fine)
        version = int(e["id"].rpartition("-v")[2])
        e["variants"] = [variant_id_for(e["config"], version, v) for v in STANDARD_VARIANTS.get(e["config"], ())]
    if args.json:
        print(json.dumps(envs))
    else:
        wid = max(len(e["id"]) for e in envs)
        wcf = max(len(e["config"]) for e in envs)
        print(f"{'env id':<{wid}}  {'config name':<{wcf}}  {'task':<8s}  description")
        for e in envs:
            print(f"{e['id']:<{wid}}  {e['config']:<{wcf}}  {e['task']:<8s}  {e['description']}")
        variants = [v for e in envs for v in e["variants"]]
        print(
            "\nEvery command takes either name: `disagg-gym simulate --config small-route` or "
            "`--config disagg/SmallRoute-v3`, `train --env small-route`."
            f"\nTraining variants, also registered (docs/envs.md, \"Warm starts and short-horizon training "
            f"variants\"): {', '.join(variants)}."
        )
    return 0


def _list_policies(as_json: bool, agents: Any = None) -> int:
    """``agents``: the agents layer's policy registry, set by its ``list`` (``disagg_gym_agents.commands``)."""
    from disagg_gym.cluster.admission import ADMISSION
    from disagg_gym.cluster.policies import ALLOCATORS, ROUTERS

    data: dict[str, Any] = {
        "routers": ROUTERS.names(), "allocators": ALLOCATORS.names(), "admission": ADMISSION.names(),
        # any router (or routing heuristic) composes with any admission controller
        "composed": "<router>+<admission>, e.g. jsq+ttft_guard",
    }
    if agents is not None:
        data["agents"] = agents.names()
    if as_json:
        print(json.dumps(data))
        return 0
    sections = [
        ("routers: `disagg-gym simulate --policy NAME` (the simulator's built-in router)", ROUTERS, None),
        ("allocators: config key `allocator.name` (`--set allocator.name=NAME`)", ALLOCATORS, None),
        ("admission controllers: compose as `<router>+<admission>`, e.g. `--policy jsq+ttft_guard`", ADMISSION, None),
    ]
    if agents is not None:
        sections.append(
            ("agents: `disagg-gym evaluate --policy heuristic:NAME` (or sb3:PATH/model.zip)", agents, "tasks")
        )
    width = max(len(n) for _, reg, _ in sections for n in reg.names())
    out = []
    for title, reg, tasks in sections:
        out.append(title)
        for name in reg.names():
            obj = reg.get(name)
            extra = f"[{', '.join(getattr(obj, 'tasks', ()))}] " if tasks else ""
            out.append(f"  {name:<{width}}  {extra}{_one_line(obj)}")
        out.append("")
    print("\n".join(out).rstrip())
    return 0
