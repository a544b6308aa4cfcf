"""Wall-time estimate of ``scripts/reproduce_leaderboard.sh`` on this machine, from measured parts.

A timed full run takes most of a day on the 2-core reference machine; this script measures the
pieces instead and multiplies them out, per config:

* ``episode`` and ``setup``: CPU seconds of one ``test`` episode of ``jsq`` (``threshold`` on
  allocation configs) through the leaderboard's ``run_cell``, and of a cell's one-off setup
  (env, policy): a cell of workload seeds 10000-10001 minus a cell of seed 10000;
* ``step``: CPU seconds per training step of MaskablePPO with the shipped hyperparameters,
  from a short run (``--train-steps``, rounded up to whole rollouts; one torch thread, as
  ``scripts/train_leaderboard.py`` trains), which includes its rollouts and updates;
* ``learned``: the same two numbers for the committed checkpoint of training seed 0, where the
  config has one (elsewhere a learned episode is costed at the mean ratio learned / ``jsq``).

Then: tuning = every search of ``leaderboard/tuned.yaml`` (candidates x seeds x ``episode``);
training = 5 seeds x the entry's ``n_timesteps`` x ``step`` (and SmallRoute-v3's two
ablations); benchmark = the cells the script plans (every applicable heuristic, the three
admission compositions and any other composition tuned for the config, 5 learned seeds) x 10 episodes x ``episode`` (x ``learned`` for learned
cells); validate = ``--validate-sample`` rows per config x ``episode``. Parallel parts run on
``--jobs`` processes (CPU / jobs); ``--tables-s`` (the last benchmark call: tables, bounds,
plots; measured separately) runs alone. Every heuristic is costed as ``jsq``: the estimate is
only as good as that proxy (admission guards and cache-aware routers cost more per step);
``--per-agent`` times one ``test`` episode of every planned heuristic and composition at its
tuned params instead, and costs its cells and searches with it.

    .venv/bin/python scripts/reproduce_estimate.py [--configs ID ...] [--train-steps 4096]
        [--jobs 2] [--validate-sample 10] [--tables-s S] [--json out.json] [--per-agent]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch

from disagg_gym.argtypes import positive_int
from disagg_gym.env.registration import registered_ids
from disagg_gym.errors import UserError
from disagg_gym.io import check_output_file, run_script
from disagg_gym_agents.args import TrainArgs
from disagg_gym_agents.hparams import load_hyperparams
from disagg_gym_agents.leaderboard import reproduce
from disagg_gym_agents.leaderboard.cells import Cell, config_of, env_name, plan_cells, splits_of
from disagg_gym_agents.leaderboard.runner import run_cell
from disagg_gym_agents.ppo import train
from disagg_gym_agents.tuning import LEADERBOARD_COMPOSITIONS, own_compositions, read_tuned

ROOT = Path(__file__).resolve().parents[1]
SEEDS = 5
EPISODES = 10


def cell_cpu(cell: Cell) -> tuple[float, float]:
    """``(episode, setup)`` CPU seconds of ``cell``: one episode, and the cell's one-off cost."""
    t0 = time.process_time()
    run_cell(cell, [10_000])
    one = time.process_time() - t0
    t0 = time.process_time()
    run_cell(cell, [10_000, 10_001])
    episode = max(time.process_time() - t0 - one, 1e-3)
    return episode, max(one - episode, 0.0)


def step_cpu(env_id: str, steps: int) -> float:
    hp = load_hyperparams("maskable_ppo", env_id)[0]
    rollout = int(hp.get("n_steps", 2048)) * int(hp.get("n_envs", 1))
    steps = -(-steps // rollout) * rollout  # SB3 always finishes a rollout
    with tempfile.TemporaryDirectory() as work:
        args = TrainArgs(env=env_id, algo="maskable_ppo", timesteps=steps, seed=0, out=work, eval_freq=0,
                         checkpoint_freq=steps, keep_checkpoints=1, progress_bar=False, threads=1)
        t0 = time.process_time()
        train(args)
        return (time.process_time() - t0) / steps


def nonneg_seconds(text: str) -> float:
    """Argparse type: a finite number of seconds >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (got {text!r})") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0 (got {text!r})")
    return v


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=None, help="env ids (default: every standard id)")
    p.add_argument("--train-steps", type=positive_int, default=4096, help="steps of the short training run per config")
    p.add_argument("--jobs", type=positive_int, default=2, help="parallel processes of the reproduce script")
    p.add_argument("--validate-sample", type=positive_int, default=10, help="rows replayed per config by validate")
    p.add_argument("--tables-s", type=nonneg_seconds, default=0.0,
                   help="measured wall of the last benchmark call (tables and plots; the bounds are computed before)")
    p.add_argument("--bounds-cpu-s", type=nonneg_seconds, default=0.0,
                   help="measured CPU seconds of every config's bounds from scratch (split over the configs by splits)")
    p.add_argument("--from-json", type=Path, default=None,
                   help="cost the schedule from the measurements of an earlier --json instead of measuring")
    p.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    p.add_argument("--per-agent", action="store_true",
                   help="time one test episode of every planned heuristic and composition (at its tuned "
                        "params) instead of costing each as jsq (slower: about one episode per agent more)")
    args = p.parse_args()
    torch.set_num_threads(1)
    tuned = read_tuned(ROOT / "leaderboard" / "tuned.yaml")
    configs = args.configs or registered_ids()
    for env_id in configs:
        config_of(env_id)  # a standard id, or one line naming it
    if args.json is not None:
        check_output_file(args.json, "--json")  # before the measurements
    if args.from_json is not None:
        try:
            m = json.loads(args.from_json.read_text())["configs"]
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or no "configs"
            raise UserError(f"--from-json {str(args.from_json)!r}: not a --json file of this script "
                            f"({type(exc).__name__}: {exc})") from None
        return report(m, [c for c in configs if c in m], tuned, args)
    m: dict[str, dict[str, float]] = {}
    plans: dict[str, list[str]] = {}  # per config: the heuristic agents the script benchmarks
    ratios = []
    for env_id in configs:
        cell = (plan_cells([env_id], ["jsq"], ["test"]) or plan_cells([env_id], ["threshold"], ["test"]))[0]
        ep, setup = cell_cpu(cell)
        row = {"episode": ep, "setup": setup, "step": step_cpu(env_id, args.train_steps)}
        ck = ROOT / "leaderboard" / "checkpoints" / env_name(env_id)
        if (ck / "seed0" / "model.zip").is_file():
            lc = [c for c in plan_cells([env_id], [f"sb3:maskable_ppo={ck.parent}"], ["test"]) if c.train_seed == 0][0]
            lep, lsetup = cell_cpu(lc)
            row["learned"], row["learned_setup"] = lep / ep, lsetup
            ratios.append(row["learned"])
        # the heuristic cells the script plans: every heuristic, the compositions, and those tuned
        # for this config alone (llmd_scorer+ttft_guard on the cache configs)
        plans[env_id] = ["heuristics", *LEADERBOARD_COMPOSITIONS, *own_compositions(tuned, env_id)]
        if args.per_agent:  # one test episode per agent; its cell setup taken as jsq's
            row["agents"] = {}
            for c in plan_cells([env_id], plans[env_id], ["test"], tuned=tuned):
                t0 = time.process_time()
                run_cell(c, [10_000])
                row["agents"][c.agent] = max(time.process_time() - t0 - setup, 1e-3)
        m[env_id] = row
        print(f"{env_id}: episode {ep:.2f} CPU-s (cell setup {setup:.2f}), training {1e3 * row['step']:.2f} "
              f"CPU-ms/step" + (f", learned episode x{row['learned']:.2f} (setup {row['learned_setup']:.2f})"
                                if "learned" in row else ""), flush=True)
    return report(m, configs, tuned, args)


def schedule(costs: list[float], jobs: int) -> float:
    """Makespan of ``costs`` started in this order on ``jobs`` processes, each unit on the
    first free one (what the script's ``launch`` pool does)."""
    free = [0.0] * jobs
    for c in costs:
        i = free.index(min(free))
        free[i] += c
    return max(free) if costs else 0.0


def report(m: dict[str, dict[str, Any]], configs: list[str], tuned: dict[str, Any], args: argparse.Namespace) -> int:
    """Costs the script's units from the measurements ``m`` and simulates its schedule."""
    ratios = [row["learned"] for row in m.values() if "learned" in row]
    factor = sum(ratios) / len(ratios) if ratios else 1.0
    small = "disagg/SmallRoute-v3"
    ablate = small in configs

    def per(env_id: str, agent: str) -> float:  # measured per agent (--per-agent), else jsq's episode
        row = m[env_id]
        return row.get("agents", {}).get(agent, row["episode"])

    def learned_cell(env_id: str) -> float:
        row = m[env_id]
        return row.get("learned_setup", row["setup"]) + EPISODES * row["episode"] * row.get("learned", factor)

    def steps(env_id: str) -> int:
        return int(load_hyperparams("maskable_ppo", env_id)[0]["n_timesteps"])

    # Every unit's CPU, tallied per config as it is costed (the table below): training, tuning,
    # benchmark (heuristics and learned cells).
    col = {c: dict.fromkeys(("training", "tuning", "heuristics", "learned"), 0.0) for c in configs}
    # pool 1: training (one unit per seed, then the two ablations), the searches, the bounds
    run = {c: steps(c) * m[c]["step"] for c in configs}  # one training run
    train = [sum(run.values())] * SEEDS
    if ablate:
        train += [SEEDS * run[small]] * 2
    for c in configs:
        col[c]["training"] = SEEDS * run[c] * (3 if ablate and c == small else 1)
    by_name = {config_of(c): c for c in configs}
    tune = []
    for s in reproduce.searches(tuned, configs):
        env_id = by_name[s.config]
        tune.append(s.candidates * s.seeds * per(env_id, s.policy))
        col[env_id]["tuning"] += tune[-1]
    n_splits = sum(len(splits_of(c)) for c in configs)
    bounds = [args.bounds_cpu_s * len(splits_of(c)) / n_splits for c in configs]
    pool1 = train + tune + bounds
    # pool 2: one unit per (config, split), then the compositions tuned for a config alone, and
    # the no-reject ablation
    bench = []

    def heuristic_cells(env_id: str, agents: list[str], splits: list[str] | None) -> float:
        cpu = sum(m[env_id]["setup"] + EPISODES * per(env_id, c.agent)
                  for c in plan_cells([env_id], agents, splits, tuned=tuned))
        col[env_id]["heuristics"] += cpu
        return cpu

    def learned_cells(env_id: str, n: int) -> float:
        cpu = n * learned_cell(env_id)
        col[env_id]["learned"] += cpu
        return cpu

    for env_id, split in reproduce.benchmark_units(configs):
        bench.append(heuristic_cells(env_id, ["heuristics", *LEADERBOARD_COMPOSITIONS], [split])
                     + learned_cells(env_id, SEEDS * (2 if ablate and env_id == small else 1)))
    for env_id in configs:
        own = own_compositions(tuned, env_id)
        if own:
            bench.append(heuristic_cells(env_id, own, None))
    if ablate:
        bench.append(learned_cells(small, SEEDS * len(splits_of(small))))
    val = [args.validate_sample * m[c]["episode"] + len(splits_of(c)) * m[c]["setup"] for c in configs]

    print("\n| config | training CPU-s | tuning CPU-s | benchmark CPU-s (of which learned) |")
    print("|---|---|---|---|")
    for env_id in configs:
        k = col[env_id]
        print(f"| `{env_id}` | {k['training']:,.0f} | {k['tuning']:,.0f} | "
              f"{k['heuristics'] + k['learned']:,.0f} ({k['learned']:,.0f}) |")
    parts = {
        "training_tuning_bounds": (sum(pool1), schedule(pool1, args.jobs)),
        "benchmark": (sum(bench), schedule(bench, args.jobs)),
        "tables": (args.tables_s, args.tables_s),
        "validate": (sum(val), schedule(val, args.jobs)),
    }
    print(f"\n| stage | CPU-s | wall s on {args.jobs} jobs (simulated schedule) |")
    print("|---|---|---|")
    for k, (cpu, wall) in parts.items():
        print(f"| {k} | {cpu:,.0f} | {wall:,.0f} |")
    cpu = sum(c for c, _ in parts.values())
    wall = sum(w for _, w in parts.values())
    print(f"| total | {cpu:,.0f} | {wall:,.0f} |")
    print(f"\nlearned-episode factor {factor:.2f} (mean over configs with checkpoints); training "
          f"{sum(train):,.0f}, tuning {sum(tune):,.0f}, bounds {sum(bounds):,.0f} CPU-s; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"estimate: {wall / 3600:.1f} h wall ({cpu / 3600:.1f} CPU-h on {args.jobs} jobs, the script's schedule)")
    if args.json:
        args.json.write_text(json.dumps({"configs": m, "stages": {k: {"cpu_s": c, "wall_s": w} for k, (c, w) in parts.items()},
                                         "wall_s": wall, "jobs": args.jobs, "bounds_cpu_s": args.bounds_cpu_s,
                                         "tables_s": args.tables_s}, indent=1))
    return 0


if __name__ == "__main__":
    run_script("reproduce_estimate.py", main)
