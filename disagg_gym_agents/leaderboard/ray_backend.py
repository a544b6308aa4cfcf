"""Leaderboard benchmark on Ray: the same cells, run as Ray tasks on one machine or a cluster.

``run_cells_ray`` runs ``disagg_gym_agents.leaderboard.runner.run_cell`` for each cell as one Ray task and returns
the rows in the order of the cells, so they are exactly the rows the local path computes (same
code, same seeds, ``torch.set_num_threads(1)`` in every task as ``benchmark()`` sets it).
``benchmark_ray`` adds the leaderboard's resumability on top: cells (and episodes) already in
``OUT/results.csv`` are skipped, finished cells are appended in plan order as soon as every
earlier cell is in (so an interrupted run loses only unfinished cells and a complete run writes
the file byte-for-byte as ``benchmark()`` would), and the report is written by ``benchmark()``
itself once every cell is in the file.

Needs the ``ray`` extra (``pip install "disagg-gym[ray]"``). Local runs start a private Ray
instance with ``num_cpus=num_workers``; ``address`` connects to a running cluster
(``ray start --head`` on one node, ``ray start --address HEAD:6379`` on the others), whose
nodes must import the same disagg-gym and agents code (install it on each node, or pass
``runtime_env={"working_dir": "."}``) and, for ``sb3:`` cells, see the same checkpoint paths.
See ``docs/scale-out.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from disagg_gym.errors import UserError
from disagg_gym_agents.leaderboard.cells import DEFAULT_EPISODES, Cell, env_name
from disagg_gym_agents.leaderboard.results import ResultsWriter
from disagg_gym_agents.leaderboard.runner import progress_bar, benchmark, plan_benchmark, run_cell
from disagg_gym_agents.ray_setup import import_ray, init_ray

Rows = list[dict[str, Any]]


def _run_cell_task(cell: Cell, eval_seeds: list[int], overrides: dict[str, Any],
                   all_seeds: list[int] | None = None) -> Rows:
    import torch

    torch.set_num_threads(1)  # identical float reductions in benchmark and validate
    return run_cell(cell, eval_seeds, overrides, all_seeds=all_seeds)


def _run_jobs(
    jobs: Sequence[tuple[Cell, Sequence[int]]],
    overrides: dict[str, Any] | None,
    *,
    address: str | None,
    num_workers: int | None,
    progress: bool,
    runtime_env: dict[str, Any] | None = None,
    on_done: Callable[[int, Rows], None] | None = None,
    all_seeds: Sequence[int] | None = None,
) -> list[Rows]:
    """Runs ``(cell, seeds)`` jobs as Ray tasks; ``on_done(i, rows)`` is called in job order.

    When a task fails (or on Ctrl-C), the jobs that did finish are still passed to ``on_done``
    (in job order, skipping the gaps), the rest are cancelled and the error is raised.
    """
    ov = dict(overrides or {})
    started = init_ray(address, num_workers, runtime_env)
    ray = import_ray()
    task = ray.remote(num_cpus=1)(_run_cell_task)
    results: list[Rows | None] = [None] * len(jobs)
    flushed = 0
    bar = progress_bar(sum(len(s) for _, s in jobs), "benchmark (ray)", progress)
    try:
        ov_ref = ray.put(ov)
        every = [int(s) for s in all_seeds] if all_seeds is not None else None  # episode numbers of resumed cells
        refs = [task.remote(c, [int(s) for s in seeds], ov_ref, every) for c, seeds in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                i = index[ready[0]]
                try:
                    rows = ray.get(ready[0])
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, UserError):  # one line, as the local backend says it
                        raise cause from None
                    raise
                results[i] = rows
                c = jobs[i][0]
                ts = "" if c.train_seed is None else f" seed {c.train_seed}"
                bar.set_postfix_str(f"{env_name(c.config)} {c.agent}{ts}")
                bar.update(len(jobs[i][1]))
                while flushed < len(jobs) and results[flushed] is not None:
                    if on_done is not None:
                        on_done(flushed, results[flushed])  # type: ignore[arg-type]
                    flushed += 1
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            if on_done is not None:
                for i in range(flushed, len(jobs)):
                    if results[i] is not None:
                        on_done(i, results[i])  # type: ignore[arg-type]
            raise
    finally:
        bar.close()
        if started:
            ray.shutdown()
    return [r if r is not None else [] for r in results]


def run_cells_ray(
    cells: Sequence[Cell],
    eval_seeds: Sequence[int],
    overrides: dict[str, Any] | None = None,
    address: str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    *,
    runtime_env: dict[str, Any] | None = None,
) -> list[Rows]:
    """``[run_cell(c, eval_seeds, overrides) for c in cells]``, each cell one Ray task.

    Args:
        cells: Cells from ``disagg_gym_agents.leaderboard.plan_cells``.
        eval_seeds: Workload seeds of every cell (``EVAL_SEED_OFFSET + k`` on the leaderboard).
        overrides: Env overrides for every cell.
        address: Ray cluster to connect to (default: start a local instance, unless Ray is
            already initialised in this process).
        num_workers: CPUs of a local instance, i.e. cells run at once (default: all cores).
        progress: Show a tqdm bar (episodes).
        runtime_env: Ray runtime environment (e.g. ``{"working_dir": "."}`` for a cluster).

    Returns:
        One list of rows per cell, in the order of ``cells``.
    """
    seeds = [int(s) for s in eval_seeds]
    return _run_jobs(
        [(c, seeds) for c in cells],
        overrides,
        address=address,
        num_workers=num_workers,
        progress=progress,
        runtime_env=runtime_env,
    )


def benchmark_ray(
    out: str | Path,
    configs: Sequence[str] | None = None,
    agents: Sequence[str] | None = None,
    episodes: int = DEFAULT_EPISODES,
    overrides: dict[str, Any] | None = None,
    *,
    address: str | None = None,
    num_workers: int | None = None,
    markdown: str | Path | None = None,
    plots: bool = True,
    progress: bool = True,
    runtime_env: dict[str, Any] | None = None,
    splits: Sequence[str] | None = None,
    tuned: str | Path | None = None,
    tables: bool = True,
) -> Path:
    """``disagg_gym_agents.leaderboard.benchmark`` with the missing cells run on Ray.

    Same arguments, defaults, results file and report as ``benchmark()``, plus ``address``,
    ``num_workers`` and ``runtime_env`` (see ``run_cells_ray``). Finished cells are appended to
    ``out/results.csv`` in plan order; the Markdown leaderboard and plots are then written by
    ``benchmark()``, which finds every cell done (it prints a one-line "resuming" note).

    Returns:
        The results CSV path.

    Raises:
        ValueError: Bad arguments (unknown env id or agent, non-positive episodes or workers).
    """
    import_ray()  # without Ray: its one line first, not after the plan's
    results, seeds, ov, cells, todo = plan_benchmark(
        out, configs, agents, episodes, overrides, splits, tuned
    )
    if progress:
        print(f"ray: {len(todo)} of {len(cells)} cells to run ({len(cells) - len(todo)} already "
              f"in {results})", file=sys.stderr)
    if todo:
        writer = ResultsWriter(results)  # one writer: each append reads only what is new
        _run_jobs(
            todo,
            ov,
            address=address,
            num_workers=num_workers,
            progress=progress,
            runtime_env=runtime_env,
            on_done=lambda i, rows: writer.append(rows),
            all_seeds=seeds,
        )
    return benchmark(
        out, configs, agents, episodes, ov, markdown=markdown, plots=plots, progress=False,
        splits=splits, tuned=tuned, tables=tables,
    )
