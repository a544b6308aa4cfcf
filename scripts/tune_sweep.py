r"""Ray Tune sweep over a few PPO hyperparameters and training seeds, SB3 or RLlib trainer.

Each trial trains one agent, SB3 (`disagg_gym_agents.ppo.train`, the env's YAML entry with the swept keys
replaced, as scripts/tune.py does) or RLlib (`disagg_gym_agents.rllib_train.train_rllib`, sampling in the
trial's own process), then scores the final policy greedily on VALIDATION workload seeds
20000 + k (disjoint from the held-out evaluation seeds 10000 + k and from the training seeds
>= 1e6). Trials run in parallel as Ray Tune trials, one CPU each. Writes:

    OUT/trials.csv    one row per trial: swept values, seed, score, primary metric, KPI means
    OUT/best.json     the trial with the highest mean score (higher-is-better primary metric)
    OUT/trials/<name>/  each trial's run folder; OUT/tune/ Tune's own experiment state

The grid is `--space` (KEY=V1,V2, repeatable; keys: learning_rate, gamma, ent_coef, n_epochs,
n_steps = env steps per update) x `--seeds` training seeds. The defaults are tiny (2 x 2 x 2
trials of 2048 steps). Example (needs the ray extra, scripts/setup_ray.sh):

    .venv-ray/bin/python scripts/tune_sweep.py --backend sb3 --env disagg/SmallRoute-v3 \
        --space learning_rate=3e-4,1e-3 --seeds 2 --timesteps 4096 --overrides horizon_s=30 \
        --num-workers 2 --out runs/tune_sweep

On a cluster, pass `--address auto` (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym.wrappers.workload_seeds import VALIDATION_SEED_OFFSET  # noqa: E402
from disagg_gym.argtypes import positive_int  # noqa: E402
from disagg_gym_agents.cli import (  # noqa: E402
    arg_meta,
    dataclass_from_namespace,
    run_script,
)

DEFAULT_SPACE: dict[str, list[Any]] = {"learning_rate": [3e-4, 1e-3], "ent_coef": [0.0, 0.01]}
SB3_KEYS = {"learning_rate": "learning_rate", "gamma": "gamma", "ent_coef": "ent_coef",
            "n_epochs": "n_epochs", "n_steps": "n_steps"}
RLLIB_KEYS = {"learning_rate": "lr", "gamma": "gamma", "ent_coef": "entropy_coeff",
              "n_epochs": "num_epochs", "n_steps": "train_batch_size"}
INT_KEYS = ("n_epochs", "n_steps")


@dataclass
class Args:
    """Arguments of scripts/tune_sweep.py."""

    backend: str = field(default="sb3", metadata=arg_meta("trainer", choices=("sb3", "rllib")))
    env: str = field(default="disagg/SmallRoute-v3", metadata=arg_meta("registered env id"))
    algo: str = field(
        default="maskable_ppo",
        metadata=arg_meta("SB3 algorithm (sb3 backend)", choices=("ppo", "maskable_ppo")),
    )
    space: list[str] = field(
        default_factory=list,
        metadata=arg_meta("grid axis KEY=V1,V2,... (default: learning_rate=3e-4,1e-3 and "
                          "ent_coef=0,0.01)", metavar="KEY=VALUES"),
    )
    seeds: int = field(default=2, metadata=arg_meta("training seeds 0..N-1 per grid point",
                                                    type=positive_int))
    timesteps: int = field(default=2048, metadata=arg_meta("training env steps per trial",
                                                           type=positive_int))
    eval_episodes: int = field(default=1, metadata=arg_meta("validation episodes per trial",
                                                            type=positive_int))
    overrides: list[str] = field(
        default_factory=list, metadata=arg_meta("env override KEY=VALUE, repeatable")
    )
    out: str = field(default="runs/tune_sweep", metadata=arg_meta("output folder"))
    num_workers: int | None = field(
        default=None,
        metadata=arg_meta("CPUs of a local Ray instance = trials at once (default: all)",
                          type=positive_int),
    )
    address: str | None = field(
        default=None, metadata=arg_meta("Ray cluster address (default: local)", metavar="ADDR")
    )


def parse_space(items: list[str]) -> dict[str, list[Any]]:
    """``["learning_rate=3e-4,1e-3"]`` -> ``{"learning_rate": [0.0003, 0.001]}``."""
    if not items:
        return dict(DEFAULT_SPACE)
    out: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or key not in SB3_KEYS or not values:
            raise ValueError(f"--space {item!r}: expected KEY=V1,V2 with KEY one of {', '.join(SB3_KEYS)}")
        try:
            out[key] = [int(v) if key in INT_KEYS else float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--space {item!r}: not a list of numbers") from None
    return out


def trial(config: dict[str, Any]) -> None:
    """One Tune trial: train, then score greedily on the validation seeds; reports the result."""
    import torch
    from ray import tune

    from disagg_gym_agents.base import make_env, parse_overrides
    from disagg_gym_agents.evaluation import evaluate, summarize
    from disagg_gym_agents.leaderboard import score_of

    torch.set_num_threads(1)
    a = config["args"]
    hp = config["hp"]
    seed = int(config["seed"])
    name = "_".join(f"{k}{v}" for k, v in sorted(hp.items())) + f"_s{seed}"
    tdir = Path(a["out"]).resolve() / "trials" / name
    overrides = parse_overrides(a["overrides"])
    t0 = time.perf_counter()
    env = make_env(a["env"], overrides)
    try:
        if a["backend"] == "sb3":
            from disagg_gym_agents.cli import TrainArgs
            from disagg_gym_agents.hparams import dump_hyperparams_yaml, load_hyperparams
            from disagg_gym_agents.ppo import train
            from disagg_gym_agents.factory import make_policy
            from disagg_gym.io import atomic_write_text

            base, _ = load_hyperparams(a["algo"], a["env"])
            entry = {**base, **{SB3_KEYS[k]: v for k, v in hp.items()}}
            # n_steps must stay a multiple of batch_size for full minibatches.
            entry["batch_size"] = min(int(entry.get("batch_size", 64)), int(entry.get("n_steps", 2048)))
            atomic_write_text(tdir / "hyperparams.yml", dump_hyperparams_yaml({a["env"]: entry}))
            model = train(TrainArgs(
                env=a["env"], algo=a["algo"], timesteps=a["timesteps"], seed=seed,
                out=str(tdir / "run"), overrides=list(a["overrides"]),
                hyperparams=str(tdir / "hyperparams.yml"), eval_freq=0,
                checkpoint_freq=a["timesteps"], keep_checkpoints=1, progress_bar=False,
            ))
            policy: Any = make_policy(f"sb3:{model}", env)
        else:
            from disagg_gym_agents.rllib_train import RLlibPolicy, RLlibTrainArgs, train_rllib

            kw = {RLLIB_KEYS[k]: v for k, v in hp.items()}
            kw.setdefault("train_batch_size", min(2048, a["timesteps"]))
            ckpt = train_rllib(RLlibTrainArgs(
                env=a["env"], timesteps=a["timesteps"], seed=seed, out=str(tdir / "run"),
                overrides=list(a["overrides"]), num_env_runners=0, verbose=0, **kw,
            ))
            policy = RLlibPolicy.load(ckpt, env)
        train_s = time.perf_counter() - t0
        metric = env.unwrapped.scenario.primary_metric  # type: ignore[attr-defined]
        rows = evaluate(policy, env, a["eval_episodes"], VALIDATION_SEED_OFFSET)
    finally:
        env.close()
    stats = summarize(rows, keys=sorted({metric, "slo_attainment", "goodput_rps",
                                         "ttft_p99_s", "cost_per_1m_tokens_usd"}))
    score = sum(score_of(metric, r.get(metric)) for r in rows) / len(rows)
    tune.report({
        "score": score,
        "metric": metric,
        "train_wall_s": round(train_s, 1),
        **{f"{k}_mean": s["mean"] for k, s in stats.items()},
    })


def main(ns: argparse.Namespace) -> int:
    """Runs the sweep and writes OUT/trials.csv and OUT/best.json."""
    from disagg_gym_agents.base import check_env_id, make_env, parse_overrides
    from disagg_gym_agents.evaluation import rows_to_csv
    from disagg_gym_agents.ray_setup import import_ray, init_ray
    from disagg_gym.errors import UserError
    from disagg_gym.io import atomic_write_json, atomic_write_text

    import_ray()  # without the [ray] extra: one line naming it, not a ModuleNotFoundError
    from ray import tune

    args: Args = dataclass_from_namespace(Args, ns)
    args.env = check_env_id(args.env)  # a config name names its current env id
    make_env(args.env, parse_overrides(args.overrides)).close()  # a bad override fails here, not in every trial
    try:
        space = parse_space(args.space)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out = Path(args.out).resolve()
    if (out / "trials.csv").exists() or (out / "trials").exists():
        # every trial would fail ("already holds a run") and trials.csv be overwritten
        raise UserError(f"--out {str(out)!r} already holds a sweep; choose another --out")
    grid = [dict(zip(space, vals)) for vals in itertools.product(*space.values())]
    print(f"{args.backend}: {len(grid)} grid point(s) x {args.seeds} seed(s) on {args.env}, "
          f"{args.timesteps} steps each -> {out}")
    started = init_ray(args.address, args.num_workers)
    try:
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": 1}),
            param_space={
                "args": {**vars(args), "out": str(out)},
                "hp": tune.grid_search(grid),
                "seed": tune.grid_search(list(range(args.seeds))),
            },
            run_config=tune.RunConfig(storage_path=str(out / "tune"), name="sweep", verbose=1),
        )
        grid_results = tuner.fit()
    finally:
        if started:
            import ray

            ray.shutdown()
    rows = []
    for res in grid_results:
        row: dict[str, Any] = {**res.config["hp"], "seed": res.config["seed"]}
        if res.error is not None:  # the trial's own message, not Ray's wrapper line
            cause = getattr(res.error, "cause", None) or res.error
            row["error"] = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
        else:
            row.update({k: v for k, v in res.metrics.items()
                        if k in ("score", "metric", "train_wall_s") or k.endswith("_mean")})
        rows.append(row)
    rows.sort(key=lambda r: tuple(r.get(k, 0) for k in (*space, "seed")))
    atomic_write_text(out / "trials.csv", rows_to_csv(rows, leading=[*space, "seed", "score"]))
    ok = [r for r in rows if "score" in r]
    if not ok:
        print("no trial finished", file=sys.stderr)
        return 1
    by_point: dict[str, list[float]] = {}
    for r in ok:
        by_point.setdefault(json.dumps({k: r[k] for k in space}), []).append(float(r["score"]))
    best = max(by_point, key=lambda k: sum(by_point[k]) / len(by_point[k]))
    mean = sum(by_point[best]) / len(by_point[best])
    atomic_write_json(out / "best.json", {
        "backend": args.backend, "env": args.env, "hyperparams": json.loads(best),
        "mean_score": mean, "seeds": len(by_point[best]), "metric": ok[0]["metric"],
    })
    print(f"best: {best} mean score {mean:.4g} over {len(by_point[best])} seed(s); "
          f"{out / 'trials.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, Args, "tune_sweep.py", __doc__ or ""))
