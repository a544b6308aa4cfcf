"""Leaderboard: benchmark heuristics and trained agents on every standard config; replay to validate.

``disagg-gym benchmark`` runs each (config, split, agent, training seed) *cell* on the held-out
evaluation workload seeds ``EVAL_SEED_OFFSET + k`` (split ``test``: the config as written;
``shift:<name>``: with that shift's overrides from the config's ``evaluation`` section), records
the cells it owes in ``manifest.json`` and appends one CSV row per episode
(every KPI plus what replaying it needs) per cell through ``ResultsWriter`` (a locked,
append-only write: concurrent runs on one folder lose no row), so an interrupted run resumes
without redoing finished cells. It then writes a Markdown leaderboard (agents ranked by the
config's primary metric as paired per-episode ratios to the best heuristic, IQM and 95%
stratified-bootstrap CIs over training seeds and episodes as in rliable, probability of
improvement, "win" only with a CI lower bound above 1.01) and plots. ``disagg-gym validate``
fails on rows missing from the manifest and replays rows, failing on any KPI that differs. The protocol is documented in ``docs/leaderboard.md``.

One module per job:

========== ==========================================================================
stats      higher-is-better scores, paired ratios, IQM, bootstrap CIs, P(improvement), win rule
cells      the (config, split, agent, training seed) cells, splits, and the default paths
greedy     ``GreedyPolicy``: SB3's deterministic action, evaluated in numpy
results    the results CSV: columns, reader, concurrent-safe ``ResultsWriter``
manifest   ``manifest.json``: the expected cells, so ``validate`` catches omissions
runner     ``run_cell`` and ``benchmark``
summary    per-config rankings (normalised IQM + CI, mean KPIs)
markdown   the Markdown leaderboard
plots      score bars, latency CDFs, timelines (the ``[plots]`` extra)
validate   ``validate``: replay rows, name every KPI that differs
cli        ``disagg-gym benchmark`` / ``validate`` options and commands
========== ==========================================================================

The names below are re-exported so ``from disagg_gym_agents.leaderboard import X`` keeps working.
Benchmarking and validating need the ``[rl]`` extra (torch sets the thread count that makes
replays bit-exact, and learned agents are SB3 models).
"""

from __future__ import annotations

from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET
from disagg_gym_agents.leaderboard import runner
from disagg_gym_agents.leaderboard.cells import (
    DEFAULT_CHECKPOINTS,
    DEFAULT_EPISODES,
    DEFAULT_LEARNED,
    DEFAULT_OUT,
    DEFAULT_RESULTS,
    ROOT,
    Cell,
    env_name,
    env_version,
    heuristics_for,
    plan_cells,
    resolve_path,
    split_overrides,
    splits_of,
)
from disagg_gym_agents.leaderboard.cli import (
    add_benchmark_args,
    add_validate_args,
    cmd_benchmark,
    cmd_validate,
    default_results_path,
)
from disagg_gym_agents.leaderboard.greedy import GreedyPolicy
from disagg_gym_agents.leaderboard.manifest import (
    manifest_from_rows,
    manifest_path,
    missing_rows,
    read_manifest,
    update_manifest,
)
from disagg_gym_agents.leaderboard.markdown import NOT_TRAINED, headline_table, learning_verdict, render_markdown
from disagg_gym_agents.leaderboard.plots import make_pareto_plots, make_plots, pareto_front
from disagg_gym_agents.leaderboard.results import (
    META_COLUMNS,
    NOT_REPLAYED,
    REQUIRED_COLUMNS,
    ResultsWriter,
    append_rows,
    missing_cells,
    parse_results,
    read_results,
)
from disagg_gym_agents.leaderboard.runner import benchmark, plan_benchmark, run_cell, split_bounds
from disagg_gym_agents.leaderboard.stats import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    LOWER_IS_BETTER,
    WIN_THRESHOLD,
    iqm,
    is_win,
    paired_ratios,
    probability_of_improvement,
    score_of,
    stratified_bootstrap_ci,
)
from disagg_gym_agents.leaderboard.summary import KPI_TABLE, AgentSummary, ConfigSummary, summarise
from disagg_gym_agents.leaderboard.validate import ABS_TOL, REL_TOL, check_omissions, validate

__all__ = [
    "ABS_TOL", "BOOTSTRAP_REPS", "BOOTSTRAP_SEED", "CONFIDENCE", "DEFAULT_CHECKPOINTS",
    "DEFAULT_EPISODES", "DEFAULT_LEARNED", "DEFAULT_OUT", "DEFAULT_RESULTS", "EVAL_SEED_OFFSET",
    "KPI_TABLE", "LOWER_IS_BETTER", "META_COLUMNS", "NOT_REPLAYED", "REL_TOL", "REQUIRED_COLUMNS",
    "ROOT", "AgentSummary", "Cell", "ConfigSummary", "GreedyPolicy", "ResultsWriter",
    "add_benchmark_args", "add_validate_args", "append_rows", "benchmark", "cmd_benchmark",
    "cmd_validate", "default_results_path", "env_name", "env_version", "heuristics_for", "iqm",
    "make_plots", "missing_cells", "parse_results", "plan_benchmark", "plan_cells",
    "read_results", "render_markdown", "resolve_path", "run_cell", "runner", "score_of",
    "stratified_bootstrap_ci", "summarise", "validate",
    "WIN_THRESHOLD", "check_omissions", "is_win", "manifest_from_rows", "manifest_path",
    "missing_rows", "paired_ratios", "probability_of_improvement", "read_manifest",
    "split_overrides", "splits_of", "update_manifest",
    "NOT_TRAINED", "headline_table", "learning_verdict", "make_pareto_plots", "pareto_front", "split_bounds",
]
