"""``disagg-gym benchmark`` and ``disagg-gym validate``: their options and command functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from disagg_gym.argtypes import nonneg_int, positive_int
from disagg_gym.errors import UserError
from disagg_gym.extras import missing
from disagg_gym.io import check_output_dir, check_output_file
from disagg_gym_agents.base import parse_overrides
from disagg_gym_agents.leaderboard.cells import DEFAULT_EPISODES, DEFAULT_LEARNED, DEFAULT_OUT, DEFAULT_RESULTS
from disagg_gym_agents.leaderboard.results import read_results
from disagg_gym_agents.leaderboard.runner import benchmark
from disagg_gym_agents.leaderboard.validate import check_omissions, sample_rows, validate
from disagg_gym_agents.leaderboard.ray_backend import benchmark_ray
from disagg_gym_agents.registry import add_import_arg, import_policy_modules


def add_benchmark_args(p: argparse.ArgumentParser) -> None:
    """Options of ``disagg-gym benchmark`` / ``scripts/benchmark.py``."""
    p.add_argument("--configs", nargs="+", metavar="ID", help="env ids (default: every standard id)")
    p.add_argument(
        "--agents",
        nargs="+",
        metavar="SPEC",
        help="'heuristics', heuristic names, or sb3:NAME=DIR with DIR/<EnvName>/seed<k>/model.zip "
        f"(default: heuristics {DEFAULT_LEARNED})",
    )
    p.add_argument("--episodes", type=int, default=DEFAULT_EPISODES,
                   help=f"held-out evaluation episodes per cell (default {DEFAULT_EPISODES})")
    p.add_argument("--splits", nargs="+", metavar="SPLIT",
                   help="only these splits: test and/or shift:<name> (default: every split of "
                   "each config's evaluation section)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (results.csv, plots/)")
    p.add_argument("--markdown", metavar="PATH",
                   help="Markdown leaderboard path (default: DIR/LEADERBOARD.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="env override for every config (recorded per row), repeatable")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--cells-only", action="store_true",
                   help="only run the missing cells: no LEADERBOARD.md, plots or bounds (for one of "
                   "several processes sharing --out; a later call without it writes them)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tuned", metavar="PATH",
                   help="tuned file (disagg-gym tune-baselines) whose params bind the heuristics, "
                   "recorded per row (default: leaderboard/tuned.yaml of the current directory, "
                   "else of the repository; without one, registered defaults)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="run cells in this process, or as Ray tasks (needs the [ray] extra)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--num-workers", type=positive_int, metavar="N", help="CPUs of a local Ray instance (default: all)")
    add_import_arg(p)


def add_validate_args(p: argparse.ArgumentParser) -> None:
    """Options of ``disagg-gym validate``."""
    p.add_argument("results", nargs="?", default=None,
                   help="results CSV (default: leaderboard/results.csv of the repository)")
    p.add_argument("--configs", nargs="+", metavar="ID", help="only rows of these configs")
    p.add_argument("--agents", nargs="+", metavar="NAME", help="only rows of these agents")
    p.add_argument("--no-manifest", action="store_true",
                   help="replay the rows even without manifest.json beside them (then rows "
                   "missing from the file go unnoticed)")
    p.add_argument("--sample", type=positive_int, metavar="N",
                   help="replay only N rows in total (not per config), drawn at random from the "
                   "rows the filters select (seeded by --sample-seed; default: all rows)")
    p.add_argument("--sample-seed", type=nonneg_int, default=0, metavar="SEED",
                   help="seed of the --sample draw (default 0: the same rows every time)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the bar, on stderr, shows rows done and the time left)")
    add_import_arg(p)


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``disagg-gym benchmark``: run the missing cells, write results, leaderboard and plots."""
    run: Any = benchmark
    extra: dict[str, Any] = {}
    imports = getattr(args, "imports", None) or []
    if imports and getattr(args, "backend", "local") == "ray":
        raise UserError(f"--import {imports[0]} works with the local backend only: Ray workers do not import it; "
                        "install the module as a package with a 'disagg_gym.policies' entry point instead "
                        "(docs/agents.md, \"Your own policy\")")
    import_policy_modules(imports)
    if getattr(args, "backend", "local") == "ray":
        run = benchmark_ray
        extra = {"address": args.address, "num_workers": args.num_workers}
    elif getattr(args, "address", None):
        raise UserError(f"--address needs --backend ray (got --address {args.address})")
    elif getattr(args, "num_workers", None) is not None:
        raise UserError(f"--num-workers needs --backend ray (got --num-workers {args.num_workers}; "
                        "the local backend runs one process: run several with --cells-only to use more cores)")
    if not args.no_plots and not getattr(args, "cells_only", False) and missing("plots"):
        # before any cell runs: the plots come after every episode (it was a traceback there)
        raise UserError(f"the plots need the [plots] extra ({', '.join(missing('plots'))} not installed): "
                        'pip install "disagg-gym[plots]", or pass --no-plots')
    check_output_dir(args.out, "--out")  # before any cell runs (issue #17)
    check_output_file(Path(args.out) / "results.csv", "--out")
    check_output_file(args.markdown or Path(args.out) / "LEADERBOARD.md", "--markdown" if args.markdown else "--out")
    tuned = getattr(args, "tuned", None)
    if tuned is None:
        tuned = default_tuned_path()
        if tuned is None:  # said before the run, not only after it (a reviewer's untuned run)
            print(f"disagg-gym: warning: no leaderboard/tuned.yaml under {Path.cwd()}: heuristics run at their "
                  "registered defaults, not the tuned values the committed leaderboard uses (run from the "
                  "repository root, or pass --tuned PATH)", file=sys.stderr)
    results = run(
        args.out,
        configs=args.configs,
        agents=args.agents,
        episodes=args.episodes,
        overrides=parse_overrides(args.set),
        markdown=args.markdown,
        plots=not args.no_plots,
        progress=not args.no_progress,
        splits=getattr(args, "splits", None),
        tuned=tuned,
        tables=not getattr(args, "cells_only", False),
        **extra,
    )
    md = args.markdown or str(Path(args.out) / "LEADERBOARD.md")
    if getattr(args, "cells_only", False):
        md = "not written (--cells-only)"
    print(f"results: {results}\nleaderboard: {md}\n"
          f"tuned params: {tuned if tuned is not None else 'none (no leaderboard/tuned.yaml): registered defaults'}")
    return 0


def default_tuned_path() -> Path | None:
    """``leaderboard/tuned.yaml`` under the CWD if present, else under the repository root if
    present, else ``None`` (no tuned values).
    """
    for p in (Path.cwd() / "leaderboard" / "tuned.yaml", DEFAULT_OUT / "tuned.yaml"):
        if p.is_file():
            return p
    return None


def default_results_path() -> Path:
    """``leaderboard/results.csv`` under the CWD if present, else under the repository root."""
    local = Path.cwd() / "leaderboard" / "results.csv"
    return local if local.is_file() else DEFAULT_RESULTS


def cmd_validate(args: argparse.Namespace) -> int:
    """``disagg-gym validate``: exit 0 if every row replays, 1 naming each mismatch."""
    import_policy_modules(getattr(args, "imports", None) or [])
    results = args.results
    configs, agents = list(args.configs or []), list(args.agents or [])
    for items in (configs, agents):
        # ``--configs A B results.csv``: nargs="+" takes the positional path too (issue #17)
        if results is None and items and (items[-1].endswith(".csv") or Path(items[-1]).is_file()):
            results = items.pop()
    path = Path(results) if results else default_results_path()
    if not path.is_file():
        # validate() says what is wrong with the path
        validate(path, configs or None, agents or None, progress=False)
    missing = check_omissions(
        path, configs or None, agents or None,
        require_manifest=not getattr(args, "no_manifest", False),
    )
    for m in missing[:50]:
        print(f"MISSING {m}", file=sys.stderr)
    if len(missing) > 50:
        print(f"... and {len(missing) - 50} more", file=sys.stderr)
    sample = getattr(args, "sample", None)
    errors = validate(path, configs or None, agents or None, progress=not args.no_progress,
                      sample=sample, sample_seed=getattr(args, "sample_seed", 0))
    if missing:
        print(f"validate: FAILED, {len(missing)} expected cell(s) with missing rows in {path} "
              f"(manifest: {path.with_name('manifest.json')})"
              + (f" and {len(errors)} mismatch(es)" if errors else ""), file=sys.stderr)
        for e in errors[:50]:
            print(f"MISMATCH {e}", file=sys.stderr)
        return 1
    if errors:
        for e in errors[:50]:
            print(f"MISMATCH {e}", file=sys.stderr)
        if len(errors) > 50:
            print(f"... and {len(errors) - 50} more", file=sys.stderr)
        print(f"validate: FAILED, {len(errors)} mismatch(es) in {path}", file=sys.stderr)
        return 1
    lines = [
        i for i, r in enumerate(read_results(path), start=2)  # file lines, as validate numbers them
        if (not configs or r["config"] in configs) and (not agents or r["agent"] in agents)
    ]
    n = len(lines)
    if sample is not None and sample < n:
        seed = getattr(args, "sample_seed", 0)
        shown = sample_rows(lines, sample, seed)  # the very rows validate drew
        more = f", ... ({len(shown) - 20} more)" if len(shown) > 20 else ""
        print(f"validate: OK, {sample} sampled row(s) of {n} in {path} replayed exactly "
              f"(--sample-seed {seed}; lines {', '.join(map(str, shown[:20]))}{more})")
    else:
        print(f"validate: OK, {n} row(s) of {path} replayed exactly")
    return 0
