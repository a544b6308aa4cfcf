"""Runs leaderboard cells: one episode row per held-out seed, and the whole ``benchmark``.

``benchmark`` runs each (config, agent, training seed) *cell* on the held-out evaluation
workload seeds ``EVAL_SEED_OFFSET + k`` and appends one CSV row per episode (every KPI plus
what replaying it needs) per cell through ``ResultsWriter``, so an interrupted run resumes
without redoing finished cells. It then writes the Markdown leaderboard and the plots.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata as md
import json
import re
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import disagg_gym
from disagg_gym.bounds import LOWER_METRICS as LOWER_BOUND_METRICS
from disagg_gym.bounds import METRICS as BOUND_METRICS
from disagg_gym.bounds import MAX_EVAL_SEEDS, bound_horizon, config_bound
from disagg_gym.env.registration import registered_ids
from disagg_gym.errors import UserError
from disagg_gym.io import atomic_write_text, locked
from disagg_gym.scenario import load_scenario
from disagg_gym_agents.base import make_env
from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET, run_episode
from disagg_gym_agents.factory import make_policy
from disagg_gym_agents.registry import POLICIES, parse_policy_spec
from disagg_gym_agents.leaderboard.cells import (
    DEFAULT_EPISODES,
    DEFAULT_LEARNED,
    Cell,
    check_splits,
    config_of,
    env_name,
    env_version,
    plan_cells,
    resolve_path,
    spec_agent,
    with_split,
    splits_of,
)
from disagg_gym_agents.leaderboard.greedy import GreedyPolicy
from disagg_gym_agents.leaderboard.markdown import render_markdown
from disagg_gym_agents.leaderboard.plots import make_pareto_plots, make_plots
from disagg_gym_agents.leaderboard.manifest import update_manifest
from disagg_gym_agents.leaderboard.results import (
    ResultsWriter,
    foreign_cells,
    key_of,
    sha256_of,
    missing_cells,
    read_results,
    stale_cells,
)
from disagg_gym_agents.leaderboard.stats import score_of
from disagg_gym_agents.leaderboard.summary import summarise
from disagg_gym_agents.tuning import read_tuned


def _versions() -> dict[str, str]:
    def v(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return ""

    return {
        "package_version": disagg_gym.__version__,
        "sb3_version": v("stable-baselines3"),
        "torch_version": v("torch"),
    }


def cell_params(cell: Cell) -> dict[str, Any]:
    """The keyword arguments a cell's heuristic is built with (its ``params`` JSON).

    Raises:
        UserError: ``params`` that is not a JSON object, or params on a learned agent.
    """
    try:
        params = json.loads(cell.params or "{}")
    except json.JSONDecodeError:
        raise UserError(f"{cell.config} {cell.agent}: params {cell.params!r} is not JSON") from None
    if not isinstance(params, dict):
        raise UserError(f"{cell.config} {cell.agent}: params {cell.params!r} is not a JSON object")
    if params and cell.agent_kind != "heuristic":
        raise UserError(f"{cell.config} {cell.agent}: a learned agent takes no params (got {cell.params})")
    return params


def _bind(cell: Cell, overrides: dict[str, Any]) -> tuple[Any, Any]:
    """(env, policy) of a cell; policies get seed 0 (combined with each workload seed).

    The env is the config with ``overrides`` and then the split's own overrides applied; a
    heuristic is built with the cell's ``params`` (tuned values, or ``{}``: its defaults).
    """
    params = cell_params(cell)
    env = make_env(cell.config, with_split(cell.config, cell.split, overrides))
    if cell.agent_kind == "sb3":
        spec = f"sb3:{resolve_path(cell.policy[4:])}"
        return env, GreedyPolicy(make_policy(spec, env, seed=0))
    try:  # an unknown policy (e.g. one of the user's own, not imported) is not a params problem
        kind, name = parse_policy_spec(cell.policy)
        if kind == "heuristic":
            POLICIES.get(name)
    except UserError as exc:
        env.close()
        raise UserError(f"{cell.config} {cell.agent}: {exc}") from None
    try:
        return env, make_policy(cell.policy, env, seed=0, **params)
    except (TypeError, ValueError) as exc:  # a parameter the heuristic does not take / rejects
        env.close()
        raise UserError(f"{cell.config} {cell.agent}: bad params {cell.params}: {exc}") from None


def run_cell(
    cell: Cell, eval_seeds: Sequence[int], overrides: dict[str, Any] | None = None,
    all_seeds: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Runs one cell on ``eval_seeds``; one row per episode (metadata columns, then KPIs).

    ``overrides`` are the caller's (recorded in the ``overrides`` column); the cell's split adds
    its own (``split_overrides``), identified by the ``split`` column. ``all_seeds``: the cell's
    whole seed list when ``eval_seeds`` are only its missing ones (a resumed cell): a row's
    ``episode`` is its seed's position there (default: in ``eval_seeds``).
    """
    position = {int(s): k for k, s in enumerate(all_seeds if all_seeds is not None else eval_seeds)}
    ov = dict(overrides or {})
    env, policy = _bind(cell, ov)
    metric = env.unwrapped.scenario.primary_metric
    sha = sha256_of(resolve_path(cell.policy[4:])) if cell.agent_kind == "sb3" else ""
    versions = _versions()
    rows = []
    try:
        for seed in eval_seeds:
            kpis = run_episode(policy, env, int(seed), deterministic=True)
            kpis.pop("workload_seed", None)
            row: dict[str, Any] = {
                "config": cell.config,
                "env_version": env_version(cell.config),
                "agent": cell.agent,
                "agent_kind": cell.agent_kind,
                "upper_bound": cell.upper_bound,
                "split": cell.split,
                "train_seed": cell.train_seed,
                "eval_seed": int(seed),
                "episode": position[int(seed)],
                "primary_metric": metric,
                "score": score_of(metric, kpis.get(metric)),
                "policy": cell.policy,
                "params": cell.params or "{}",
                "policy_seed": 0,
                "model_sha256": sha,
                "overrides": json.dumps(ov, sort_keys=True),
                **versions,
            }
            row.update(kpis)
            rows.append(row)
    finally:
        env.close()
    return rows



BOUNDS_CACHE = "bounds_cache.json"  # in the results folder: split_bounds' cache


#: Files of the ``disagg_gym`` package the bounds depend on: its source and the data it loads
#: (the calibrated cost parameters, the GPU and link catalogs).
_DIGEST_SUFFIXES = (".py", ".json", ".yaml")
#: Source files the bounds never run: the routing, allocation and admission policies (a
#: scenario only checks that the names it gives are registered), and the front ends and output
#: helpers around the simulator (command line, benchmarks, plots, file writing and locks, env
#: wrappers and integrations, test helpers), which compute no simulated value. Optimising a
#: router or rewording a CLI message must not throw away bounds that took an hour to compute.
_DIGEST_SKIP = (
    "cluster/policies.py", "cluster/admission.py",
    "cli.py", "commands.py", "bench.py", "plots.py", "io.py",
)
#: Folders of the package the digest leaves out, for the same reasons (``env/``: the Gymnasium
#: adapter, which the bounds never build; ``configs/``: the resolved scenario is in each key).
_DIGEST_SKIP_DIRS = ("env", "configs", "wrappers", "integrations", "testing")


def _simulator_digest() -> str:
    """sha256 of every source and data file of the ``disagg_gym`` package but those the bounds
    never run (``_DIGEST_SKIP_DIRS``, ``_DIGEST_SKIP``): the bounds' code and the simulator they
    are computed from, with its calibration and catalogs, the same from a checkout as from an
    install. Any change to it invalidates a bounds cache.
    """
    h = hashlib.sha256()
    root = Path(disagg_gym.__file__).resolve().parent
    files = (f for f in root.rglob("*") if f.suffix in _DIGEST_SUFFIXES and f.is_file())
    for f in sorted(files):
        rel = f.relative_to(root)
        if rel.parts[0] in _DIGEST_SKIP_DIRS or rel.as_posix() in _DIGEST_SKIP:
            continue
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _bound_key(scen: Any, metric: str, seeds: Sequence[int], horizon: str) -> str:
    """Cache key of one (config, split) bound: the resolved scenario (every value the bound
    reads), the metric, the seeds and the horizon policy (the source digest is the file's).
    """
    text = json.dumps([dataclasses.asdict(scen), metric, list(seeds), horizon], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def split_bounds(
    rows: Sequence[dict[str, Any]], overrides: dict[str, Any] | None = None, cache: str | Path | None = None
) -> dict[tuple[str, str], float]:
    """(config, split) -> the bound on its primary metric (``disagg_gym.bounds``), averaged over
    the evaluation seeds its rows were run on, for the config with ``overrides`` and the split's
    overrides applied (the env the rows were scored on): the fluid upper bound (horizon
    ``drain``) for goodput and SLO tokens, the lower bound (the least value any run reaches) for
    cost and energy per good token or request.

    Left out: metrics without a bound (SLO attainment, ...) and ids that are not standard
    configs. Prefix-cache workloads are bounded with every possible cache hit free.

    ``cache``: a JSON file of bounds already computed (``benchmark`` keeps
    ``<out>/bounds_cache.json``), keyed by the resolved scenario, metric, seeds and horizon
    policy, and valid only for the simulator it was computed with (``_simulator_digest``, kept
    in the file: a change to its source or data empties it), so an entry is reused only for
    exactly the same computation (the bounds take minutes per config); new entries are added to
    it. A cache that cannot be read is ignored (and rewritten).
    """
    seeds: dict[tuple[str, str], set[int]] = {}
    metric: dict[tuple[str, str], str] = {}
    for r in rows:
        key = (str(r["config"]), str(r.get("split") or "test"))
        seeds.setdefault(key, set()).add(int(r["eval_seed"]))
        metric[key] = str(r["primary_metric"])
    code = _simulator_digest() if cache is not None else ""
    known: dict[str, float] = {}
    if cache is not None:
        try:
            loaded = json.loads(Path(cache).read_text())
            if loaded["code"] == code:  # entries of other source code are dropped
                known = {str(k): float(v) for k, v in loaded["bounds"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            known = {}
    used = dict(known)
    out: dict[tuple[str, str], float] = {}
    for (config, split), ss in sorted(seeds.items()):
        m = metric[(config, split)]
        if m not in BOUND_METRICS and m not in LOWER_BOUND_METRICS:
            continue
        try:
            name = config_of(config)
            ov = with_split(config, split, overrides)
        except UserError:
            continue
        horizon = bound_horizon(m, "drain")
        key = _bound_key(load_scenario(name, ov), m, sorted(ss), horizon) if cache is not None else ""
        b = known.get(key)
        if b is None:
            b = config_bound(name, m, sorted(ss), ov, horizon_policy=horizon)
        if key:
            used[key] = b
        out[(config, split)] = b
    if cache is not None and used != known:
        p = Path(cache)
        # under a lock, merged with what other processes wrote meanwhile (warm_bounds runs in
        # parallel in scripts/reproduce_leaderboard.sh): no entry is lost
        with locked(p):
            try:
                now = json.loads(p.read_text())
                if now["code"] == code:
                    used = {**{str(k): float(v) for k, v in now["bounds"].items()}, **used}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
            atomic_write_text(p, json.dumps({"format": 1, "code": code, "bounds": dict(sorted(used.items()))},
                                            indent=1) + "\n")
    return out


def warm_bounds(
    configs: Sequence[str], out: str | Path, episodes: int = DEFAULT_EPISODES, overrides: dict[str, Any] | None = None
) -> dict[tuple[str, str], float]:
    """Computes the bounds ``benchmark`` will show for ``configs`` (every split, the evaluation
    seeds of ``episodes`` episodes) into ``<out>/bounds_cache.json`` ahead of the benchmark, so
    its last call (the tables) finds them (``scripts/reproduce_leaderboard.sh`` runs this beside
    training and tuning). Returns them as :func:`split_bounds` does.
    """
    seeds = [EVAL_SEED_OFFSET + k for k in range(episodes)]
    rows = []
    for env_id in configs:
        for split in splits_of(env_id):
            ov = with_split(env_id, split, overrides)
            metric = load_scenario(config_of(env_id), ov).primary_metric
            rows += [{"config": env_id, "split": split, "eval_seed": s, "primary_metric": metric} for s in seeds]
    return split_bounds(rows, overrides, cache=Path(out) / BOUNDS_CACHE)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr counting episodes (tqdm comes with the [rl] extra)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, file=sys.stderr)


def load_tuned(tuned: str | Path | None) -> dict[str, Any]:
    """The tuned file's mapping (``disagg_gym_agents.tuning.read_tuned``); ``None``: no file,
    every heuristic at its registered defaults.

    Raises:
        UserError: A path that is not a file, or not a tuned file.
    """
    if tuned is None:
        return {}
    p = Path(tuned)
    if p.is_dir():
        raise UserError(f"--tuned {str(p)!r}: is a directory, expected a tuned YAML file")
    if not p.is_file():
        raise UserError(f"--tuned: no tuned file {str(p)!r} (write one with `disagg-gym tune-baselines`)")
    return read_tuned(p)


def plan_benchmark(
    out: str | Path,
    configs: Sequence[str] | None,
    agents: Sequence[str] | None,
    episodes: int,
    overrides: dict[str, Any] | None,
    splits: Sequence[str] | None = None,
    tuned: str | Path | None = None,
) -> tuple[Path, list[int], dict[str, Any], list[Cell], list[tuple[Cell, list[int]]]]:
    """Validates the arguments shared by the local and Ray benchmarks and plans the work.

    ``tuned``: the tuned file whose params the heuristics are bound with (``None``: defaults).

    Returns:
        ``(results_csv, eval_seeds, overrides, cells, missing_cells)``.

    Raises:
        ValueError: Unknown env id or agent, non-positive episodes, an override a planned cell's
            env rejects; rows already in the results of a planned cell that were run with other
            params than it now gets.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise UserError(f"episodes must be a positive integer (got {episodes!r})")
    if episodes > MAX_EVAL_SEEDS:  # seeds 20000+ are the validation seeds agents select on
        raise UserError(
            f"episodes must be at most {MAX_EVAL_SEEDS}, the held-out seeds {EVAL_SEED_OFFSET}.."
            f"{EVAL_SEED_OFFSET + MAX_EVAL_SEEDS - 1} (20000+ are the validation seeds) (got {episodes})"
        )
    ids = list(configs or registered_ids())
    for c in ids:
        if c not in registered_ids():
            raise UserError(f"unknown config {c!r}; expected one of: {', '.join(registered_ids())}")
    specs = list(agents or ["heuristics", DEFAULT_LEARNED])
    if agents is None and not resolve_path(DEFAULT_LEARNED.split("=", 1)[1]).is_dir():
        specs = ["heuristics"]
    results = Path(out) / "results.csv"
    seeds = [EVAL_SEED_OFFSET + k for k in range(episodes)]
    ov = dict(overrides or {})
    check_splits(ids, splits)
    cells = plan_cells(ids, specs, splits, load_tuned(tuned))
    _check_every_spec_planned(specs, cells, ids)
    spaces: dict[tuple[str, str], tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for config, split in dict.fromkeys((c.config, c.split) for c in cells):
        # a bad --set fails here, before the manifest records cells that can never run
        env = make_env(config, with_split(config, split, ov))
        spaces[(config, split)] = (tuple(env.observation_space.shape or ()),
                                   tuple(int(n) for n in getattr(env.action_space, "nvec", ())))
        env.close()
    for c in cells:  # a checkpoint trained on another env, likewise (its cells could never run)
        if c.agent_kind == "sb3":
            _check_checkpoint_spaces(c, *spaces[(c.config, c.split)])
    for problems, what, remedy in (
        (foreign_cells(results, cells, ov), "", ": give the agent a name of its own (or another --out)"),
        (stale_cells(results, cells, ov), "rows run with other params than the tuned file gives: ",
         "; delete those rows to re-run them, or pass the tuned file they were run with (--tuned)"),
    ):
        if problems:  # the first three, and how many more
            more = f" (and {len(problems) - 3} more cells)" if len(problems) > 3 else ""
            raise UserError(f"{results}: {what}{'; '.join(problems[:3])}{more}{remedy}")
    return results, seeds, ov, cells, missing_cells(results, cells, seeds, ov)


def _check_every_spec_planned(specs: Sequence[str], cells: Sequence[Cell], configs: Sequence[str]) -> None:
    """An agent spec that planned no cell is a mistake, not an empty success (a checkpoint
    folder without ``<EnvName>/seed<k>/model.zip``, a heuristic of another task).
    """
    for spec in specs:
        kind, name, folder = spec_agent(spec)
        if kind == "heuristics" or any(c.agent == name and c.agent_kind == kind for c in cells):
            continue
        if kind == "sb3":
            raise UserError(
                f"agent {spec!r}: no checkpoint for {', '.join(configs)} (expected "
                f"{folder}/<EnvName>/seed<k>/model.zip, e.g. {folder}/{env_name(configs[0])}/seed0/model.zip)"
            )
        raise UserError(f"agent {spec!r} applies to none of {', '.join(configs)} (a policy of "
                        f"another task: disagg-gym list --policies)")


def _check_checkpoint_spaces(cell: Cell, obs_shape: tuple[int, ...], nvec: tuple[int, ...]) -> None:
    """A checkpoint whose saved spaces are not the env's fails here (one line), not mid-run."""
    path = resolve_path(cell.policy[4:])
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
        saved_obs = tuple(data["observation_space"]["_shape"])
        saved_nvec = tuple(int(n) for n in re.findall(r"-?\d+", str(data["action_space"]["nvec"])))
    except Exception:  # noqa: BLE001 - an unreadable zip is reported when the cell loads it
        return
    if saved_obs != obs_shape or (nvec and saved_nvec != nvec):
        raise UserError(
            f"{cell.policy}: model observation space {saved_obs} / actions {list(saved_nvec)} do not match "
            f"{cell.config}'s {obs_shape} / {list(nvec)} (trained on another env?)"
        )


def benchmark(
    out: str | Path,
    configs: Sequence[str] | None = None,
    agents: Sequence[str] | None = None,
    episodes: int = DEFAULT_EPISODES,
    overrides: dict[str, Any] | None = None,
    *,
    markdown: str | Path | None = None,
    plots: bool = True,
    progress: bool = True,
    splits: Sequence[str] | None = None,
    tuned: str | Path | None = None,
    tables: bool = True,
) -> Path:
    """Runs every missing cell, appending to ``out/results.csv``, then writes the report.

    Args:
        out: Output folder (``results.csv``, ``plots/``, and ``LEADERBOARD.md`` unless
            ``markdown`` names another path).
        configs: Env ids (default: every standard id).
        agents: Agent specs (see ``plan_cells``; default: ``heuristics`` and
            ``DEFAULT_LEARNED``).
        episodes: Evaluation episodes per cell, on workload seeds ``EVAL_SEED_OFFSET + k``.
        overrides: Env overrides applied to every config (recorded in each row; for tests and
            quick looks, not for leaderboard submissions).
        markdown: Where the Markdown leaderboard goes.
        splits: Only these splits (``test``, ``shift:<name>``; default: every split of each
            config's ``evaluation`` section).
        plots: Write the plots (re-runs one episode of two policies per config).
        progress: Show a tqdm progress bar.
        tuned: Tuned file (``disagg-gym tune-baselines``): each heuristic with an entry for the
            config is bound with its tuned params, recorded in the rows' ``params`` column
            (``None``: every heuristic at its registered defaults, ``params`` ``{}``).
        tables: Write the report (Markdown, plots, bounds); ``False`` (``--cells-only``) only
            runs the cells: one of several processes sharing ``out`` (a later call writes it).

    Returns:
        The results CSV path.

    Raises:
        ValueError: Bad arguments (unknown env id or agent, non-positive episodes).
    """
    import torch

    torch.set_num_threads(1)  # identical float reductions in benchmark and validate
    results, seeds, ov, cells, todo = plan_benchmark(
        out, configs, agents, episodes, overrides, splits, tuned
    )
    out = Path(out)
    ov_text = json.dumps(ov, sort_keys=True)
    update_manifest(out / "manifest.json", cells, seeds, ov_text)  # before running: the cells owed
    skipped = len(cells) - len(todo)
    bar = progress_bar(sum(len(m) for _, m in todo), "benchmark", progress)
    if skipped:
        bar.write(f"resuming: {skipped} of {len(cells)} cells already in {results}")
    writer = ResultsWriter(results)
    for c, missing in todo:
        ts = ("" if c.train_seed is None else f" seed {c.train_seed}") + f" [{c.split}]"
        key = key_of(c, ov_text)
        done = writer.done(key)  # another process sharing --out may have run it meanwhile
        left = [s for s in missing if s not in done]
        if not left:
            bar.update(len(missing))
            bar.write(f"{c.config} {c.agent}{ts}: already in {results} (another run)")
            continue
        bar.set_postfix_str(f"{env_name(c.config)} {c.agent}{ts}")
        t0 = time.perf_counter()
        rows = run_cell(c, left, ov, all_seeds=seeds)
        writer.append(rows)
        bar.update(len(missing))
        bar.write(f"{c.config} {c.agent}{ts}: {len(rows)} ep in {time.perf_counter() - t0:.1f} s")
        bad = sum(int(float(r.get("invalid_actions") or 0)) for r in rows)
        if bad:
            bar.write(f"warning: {c.config} {c.agent}{ts}: {bad:,} invalid action(s) in {len(rows)} episode(s); "
                      "the env's fallback router took those decisions, so the scores are partly its")
    bar.close()
    if not tables:
        return results
    md = Path(markdown) if markdown is not None else out / "LEADERBOARD.md"
    # The report covers every config in the file (run with these overrides), not only this
    # invocation's: configs can be benchmarked in several calls.
    rows_now = [r for r in read_results(results) if (r.get("overrides") or "{}") == ov_text]
    summary = summarise(rows_now)
    plot_files: dict[str, list[Path]] = {}
    if plots:
        pareto = make_pareto_plots(summary, out / "plots")
        more = make_plots([cs for cs in summary if cs.split == "test"], out / "plots", ov)
        plot_files = {k: pareto.get(k, []) + more.get(k, []) for k in {*pareto, *more}}
    bounds = split_bounds(rows_now, ov, cache=out / BOUNDS_CACHE)
    atomic_write_text(md, render_markdown(summary, md.parent, plot_files, ov, bounds))
    return results

