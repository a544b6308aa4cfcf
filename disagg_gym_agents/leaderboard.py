"""Leaderboard: benchmark heuristics and trained agents on every standard config; replay to validate.

``disagg-gym benchmark`` runs each (config, agent, training seed) *cell* on the held-out
evaluation workload seeds ``EVAL_SEED_OFFSET + k`` and appends one CSV row per episode
(every KPI plus what replaying it needs) per cell through ``ResultsWriter`` (a locked,
append-only write: concurrent runs on one folder lose no row), so an interrupted run resumes
without redoing finished cells. It then writes a Markdown leaderboard (agents ranked by the
config's primary metric, normalised to the best heuristic, IQM and 95% stratified-bootstrap
CIs over training seeds as in rliable) and plots. ``disagg-gym validate`` replays rows and fails
on any KPI that differs. The protocol is documented in ``docs/leaderboard.md``.

Scores are higher-is-better: ``goodput_rps`` and ``slo_attainment`` are used as they are;
``cost_per_1m_good_tokens_usd`` and ``energy_per_good_request_j`` are inverted
(``score = 1 / value``: SLO-meeting tokens per $ / good requests per joule), so a normalised
score of 1.25 means "25% better than the best heuristic" for every metric. A run with no
SLO-meeting request (value missing or infinite) scores 0.

IQM and bootstrap follow Agarwal et al., "Deep RL at the Edge of the Statistical Precipice"
(NeurIPS 2021) and their rliable library: IQM is ``scipy.stats.trim_mean(x, 0.25)`` over all
(run, task) scores; CIs are percentile intervals of a stratified bootstrap that resamples runs
with replacement independently within each task. Here a run is a training seed and the tasks
are the evaluation workload seeds, so the CI reflects training-seed uncertainty only
(deterministic heuristics have one run, hence a zero-width CI).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from disagg_gym_agents.evaluation import EVAL_SEED_OFFSET
from disagg_gym.errors import UserError
from disagg_gym.io import atomic_write_text, exclusive_lock

ROOT = Path(__file__).resolve().parents[1]
"""Repository root: relative policy paths and the default results resolve against it."""
DEFAULT_OUT = ROOT / "leaderboard"
DEFAULT_RESULTS = DEFAULT_OUT / "results.csv"
DEFAULT_CHECKPOINTS = DEFAULT_OUT / "checkpoints"
DEFAULT_EPISODES = 3
DEFAULT_LEARNED = "sb3:maskable_ppo=leaderboard/checkpoints"
"""The learned agent scored by default: every ``<EnvName>/seed<k>/model.zip`` under that folder."""
LOWER_IS_BETTER = frozenset({"cost_per_1m_good_tokens_usd", "energy_per_good_request_j"})
REL_TOL = 1e-9
"""Relative tolerance of ``validate`` (replays are bit-exact in practice; this absorbs nothing
but the last-digit noise of a float written and read back on another platform)."""
ABS_TOL = 1e-12
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95

META_COLUMNS = (
    "config",
    "env_version",
    "agent",
    "agent_kind",
    "upper_bound",
    "train_seed",
    "eval_seed",
    "episode",
    "primary_metric",
    "score",
    "policy",
    "policy_seed",
    "model_sha256",
    "overrides",
    "package_version",
    "sb3_version",
    "torch_version",
)
"""Columns written before the KPIs; everything else in a row is a replayed KPI."""
NOT_REPLAYED = frozenset(META_COLUMNS) - {"score"}

KPI_TABLE = (
    ("slo_attainment", "SLO att.", 100.0, "{:.1f}%"),
    ("goodput_rps", "goodput (req/s)", 1.0, "{:.2f}"),
    ("ttft_p99_s", "TTFT p99 (s)", 1.0, "{:.3f}"),
    ("tpot_p99_s", "TPOT p99 (ms)", 1e3, "{:.1f}"),
    ("cost_per_1m_tokens_usd", "$/1M tok", 1.0, "{:.4f}"),
    ("energy_per_request_j", "J/req", 1.0, "{:.1f}"),
)
"""Raw KPIs shown in the Markdown tables: (key, header, scale, format)."""


# ====================================================================== statistics
def iqm(scores: np.ndarray | Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (rliable's ``metrics.aggregate_iqm``).

    Identical to ``scipy.stats.trim_mean(x.ravel(), 0.25)``: ``int(0.25 * n)`` values are cut
    from each end of the sorted scores.

    Raises:
        ValueError: For an empty input.
    """
    x = np.sort(np.asarray(scores, dtype=float).ravel())
    if x.size == 0:
        raise UserError("iqm of an empty score set")
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def stratified_bootstrap_ci(
    matrix: np.ndarray,
    *,
    reps: int = BOOTSTRAP_REPS,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile CI of the IQM of a ``(runs, tasks)`` score matrix (rliable's StratifiedBootstrap).

    Each replicate resamples the runs with replacement independently within every task
    (column), then takes the IQM of the resampled matrix. Seeded, so tables are reproducible.

    Raises:
        ValueError: For a matrix that is not 2-D and non-empty, or ``confidence`` outside (0, 1).
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.size == 0:
        raise UserError(f"expected a non-empty (runs, tasks) matrix (got shape {m.shape})")
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence must be in (0, 1) (got {confidence!r})")
    runs, tasks = m.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    samples = np.take_along_axis(np.broadcast_to(m, (reps, runs, tasks)), idx, axis=1)
    flat = np.sort(samples.reshape(reps, -1), axis=1)
    cut = int(0.25 * flat.shape[1])
    stats = flat[:, cut : flat.shape[1] - cut].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def score_of(metric: str, value: Any) -> float:
    """Higher-is-better score of a primary-metric value (see the module docstring)."""
    v = _num(value)
    if metric in LOWER_IS_BETTER:
        return 1.0 / v if v is not None and math.isfinite(v) and v > 0 else 0.0
    return v if v is not None and math.isfinite(v) else 0.0


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ====================================================================== cells
@dataclass(frozen=True)
class Cell:
    """One (config, agent, training seed): the unit that is run, appended and resumed."""

    config: str
    agent: str
    agent_kind: str  # "heuristic" or "sb3"
    policy: str  # make_policy spec, with a path relative to ROOT where possible
    train_seed: int | None
    upper_bound: bool = False


def env_name(env_id: str) -> str:
    """``disagg/SmallRoute-v1`` -> ``SmallRoute-v1`` (checkpoint folder and plot names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id.split("/")[-1])


def env_version(env_id: str) -> int:
    """The ``-vN`` suffix of an env id."""
    m = re.search(r"-v(\d+)$", env_id)
    if m is None:
        raise ValueError(f"env id {env_id!r} has no -vN version suffix")
    return int(m.group(1))


def _rel(path: Path) -> str:
    p = path.resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def resolve_path(text: str) -> Path:
    """A recorded policy path: absolute as is; relative to the repo root, else to the CWD."""
    p = Path(text)
    if p.is_absolute():
        return p
    return ROOT / p if (ROOT / p).exists() or not Path(text).exists() else Path(text).resolve()


def heuristics_for(task: str) -> list[str]:
    """Registered heuristic names that apply to ``task`` (each class declares its ``tasks``)."""
    from disagg_gym_agents.registry import POLICIES

    return [n for n in POLICIES.names() if task in POLICIES.get(n).tasks]


def _task_of(env_id: str) -> str:
    from disagg_gym.env.registration import standard_envs

    for e in standard_envs():
        if e["id"] == env_id:
            return e["task"]
    raise ValueError(f"{env_id!r} is not a standard config")


def plan_cells(configs: Sequence[str], agents: Sequence[str]) -> list[Cell]:
    """Every cell of ``configs`` x ``agents``.

    Agent specs: ``heuristics`` (every applicable heuristic), a heuristic name or
    ``heuristic:NAME`` (skipped on configs it does not apply to), or ``sb3:NAME=DIR`` (a learned
    agent called NAME with one ``DIR/<EnvName>/seed<k>/model.zip`` per training seed; configs
    without a folder are skipped).

    Raises:
        ValueError: An unknown heuristic, a malformed spec or a missing DIR.
    """
    from disagg_gym_agents.registry import POLICIES

    cells: list[Cell] = []
    for env_id in configs:
        task = _task_of(env_id)
        applicable = heuristics_for(task)
        for spec in agents:
            if spec == "heuristics":
                names = applicable
            elif spec.startswith("sb3:"):
                name, sep, folder = spec[4:].partition("=")
                if not sep or not name or not folder:
                    raise UserError(f"agent {spec!r}: expected sb3:NAME=DIR")
                base = resolve_path(folder)
                if not base.is_dir():
                    raise UserError(f"agent {spec!r}: no checkpoint folder {str(base)!r}")
                sub = base / env_name(env_id)
                seeds = sorted(
                    (int(m.group(1)), d / "model.zip")
                    for d in (sub.iterdir() if sub.is_dir() else [])
                    if (m := re.fullmatch(r"seed(\d+)", d.name)) and (d / "model.zip").is_file()
                )
                cells += [
                    Cell(env_id, name, "sb3", f"sb3:{_rel(p)}", s) for s, p in seeds
                ]
                continue
            else:
                hname = spec.split(":", 1)[1] if spec.startswith("heuristic:") else spec
                POLICIES.get(hname)  # raises for an unknown name
                names = [hname] if hname in applicable else []
            for n in names:
                ub = bool(getattr(POLICIES.get(n), "upper_bound", False))
                cells.append(Cell(env_id, n, "heuristic", f"heuristic:{n}", None, ub))
    return cells


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    import disagg_gym

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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class GreedyPolicy:
    """Deterministic action of a loaded ``SB3Policy``: masked argmax of the actor's logits.

    SB3's ``predict(deterministic=True)`` returns the mode of the (masked) MultiCategorical,
    i.e. the argmax over each dimension's valid logits. This computes the same argmax without
    SB3's distribution objects, which cost ~18x the network's forward pass per step (4.2 ms
    vs 0.23 ms measured on ColocatedBaseline), and, for the usual ``FlattenExtractor`` +
    Linear/Tanh/ReLU MLP, evaluates the actor in float32 numpy with the model's weights
    (another ~4x: long episodes have 10k-45k decisions; other policies, e.g. ``InstancePolicy``,
    run their torch forward pass without gradients). Actions equal SB3's except where two
    valid logits agree to ~1e-7 (a test checks the equality along an episode); ``validate``
    replays through this class too, so the leaderboard is exactly reproducible either way.

    Args:
        inner: An ``disagg_gym_agents.ppo.SB3Policy`` (PPO or MaskablePPO, MultiDiscrete actions).
    """

    def __init__(self, inner: Any) -> None:
        import torch

        self.inner = inner
        pol = inner.model.policy
        self.policy = pol
        self.nvec = [int(n) for n in np.asarray(inner.model.action_space.nvec).ravel()]
        self.splits = np.cumsum(self.nvec)[:-1]
        layers: list[tuple[str, Any, Any]] = []
        acts = {torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu"}
        policy_net = getattr(pol.mlp_extractor, "policy_net", None)  # None: InstancePolicy
        modules = [*policy_net, pol.action_net] if policy_net is not None else []
        ok = policy_net is not None and type(pol.pi_features_extractor).__name__ == "FlattenExtractor"
        for mod in modules:
            if isinstance(mod, torch.nn.Linear):
                w = mod.weight.detach().numpy().astype(np.float32).T.copy()
                b = mod.bias.detach().numpy().astype(np.float32).copy()
                layers.append(("linear", w, b))
            elif type(mod) in acts:
                layers.append((acts[type(mod)], None, None))
            else:
                ok = False
        self.layers = layers if ok else None

    def _logits(self, obs: np.ndarray) -> np.ndarray:
        if self.layers is not None:
            h = obs.reshape(-1).astype(np.float32, copy=False)
            for kind, w, b in self.layers:
                if kind == "linear":
                    h = h @ w + b
                elif kind == "tanh":
                    h = np.tanh(h)
                else:
                    h = np.maximum(h, 0.0)
            return h
        import torch

        pol = self.policy
        with torch.no_grad():
            feats = pol.extract_features(torch.as_tensor(obs[None]), pol.pi_features_extractor)
            return pol.action_net(pol.mlp_extractor.forward_actor(feats))[0].numpy()

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Greedy (masked) action; ``deterministic=False`` falls back to SB3's sampling."""
        if not deterministic:
            return self.inner.predict(observation, state, episode_start, deterministic)
        obs = np.asarray(observation, dtype=np.float32)
        if self.inner.obs_normalizer is not None:
            obs = np.asarray(self.inner.obs_normalizer.normalize_obs(obs), dtype=np.float32)
        logits = self._logits(obs)
        if self.inner.maskable:
            logits = np.where(self.inner.base.action_masks(), logits, -np.inf)
        action = [int(np.argmax(part)) for part in np.split(logits, self.splits)]
        return np.asarray(action, dtype=np.int64), state


def _bind(cell: Cell, overrides: dict[str, Any]) -> tuple[Any, Any]:
    """(env, policy) of a cell; policies get seed 0 (combined with each workload seed)."""
    from disagg_gym_agents.base import make_env
    from disagg_gym_agents.registry import make_policy

    env = make_env(cell.config, overrides)
    if cell.agent_kind == "sb3":
        spec = f"sb3:{resolve_path(cell.policy[4:])}"
        return env, GreedyPolicy(make_policy(spec, env, seed=0))
    return env, make_policy(cell.policy, env, seed=0)


def run_cell(
    cell: Cell, eval_seeds: Sequence[int], overrides: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Runs one cell on ``eval_seeds``; one row per episode (metadata columns, then KPIs)."""
    from disagg_gym_agents.evaluation import run_episode

    ov = dict(overrides or {})
    env, policy = _bind(cell, ov)
    metric = env.unwrapped.scenario.primary_metric
    sha = _sha256(resolve_path(cell.policy[4:])) if cell.agent_kind == "sb3" else ""
    versions = _versions()
    rows = []
    try:
        for k, seed in enumerate(eval_seeds):
            kpis = run_episode(policy, env, int(seed), deterministic=True)
            kpis.pop("workload_seed", None)
            row: dict[str, Any] = {
                "config": cell.config,
                "env_version": env_version(cell.config),
                "agent": cell.agent,
                "agent_kind": cell.agent_kind,
                "upper_bound": cell.upper_bound,
                "train_seed": cell.train_seed,
                "eval_seed": int(seed),
                "episode": k,
                "primary_metric": metric,
                "score": score_of(metric, kpis.get(metric)),
                "policy": cell.policy,
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


# ====================================================================== results file
REQUIRED_COLUMNS = (
    "config",
    "env_version",
    "agent",
    "agent_kind",
    "train_seed",
    "eval_seed",
    "primary_metric",
    "score",
    "policy",
)
"""Columns a leaderboard results CSV must have (``benchmark`` resumes and ``validate`` replays
from them); a file without one is rejected with one line naming the column."""


def _decode(p: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not a text file (invalid UTF-8 at byte {exc.start})") from None


def _read_bytes(p: Path) -> bytes | None:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UserError(f"{p}: is a directory, expected a results CSV") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot read ({exc.strerror})") from None


def parse_results(
    path: str | Path, text: str, required: Sequence[str] = REQUIRED_COLUMNS
) -> tuple[list[str], list[dict[str, str]], int]:
    """``(header, rows, torn)`` of a results CSV's text.

    A row that is not complete is *torn* (a writer died mid-row: the file's last line without
    its newline, or a line whose field count differs from the header's); torn rows are dropped
    and counted, so they never count as finished work nor reach a leaderboard.

    Raises:
        UserError: The header lacks a ``required`` column, or a row's ``eval_seed`` is not an
            integer or its ``score`` not a number (naming the file, line and value).
    """
    p = Path(path)
    complete = text.endswith("\n")
    reader = csv.reader(io.StringIO(text))
    header: list[str] = []
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    torn = 0
    last_kept = False  # whether the file's last record became a row
    for rec in reader:
        last_kept = False
        if not header:
            if not rec:
                continue
            if not complete and reader.line_num == text.count("\n") + 1:
                return [], [], 1  # only a torn header: the first writer died
            header = rec
            missing = [c for c in required if c not in header]
            if missing:
                raise UserError(
                    f"{p}:1: not a results file: header lacks column '{missing[0]}' "
                    f"(got header {','.join(header)[:120]!r})"
                )
            continue
        if not rec:
            continue
        if len(rec) != len(header):
            torn += 1
            continue
        rows.append(dict(zip(header, rec)))
        lines.append(reader.line_num)
        last_kept = True
    if last_kept and not complete:
        rows.pop()
        lines.pop()
        torn += 1
    if "eval_seed" in required or "score" in required:
        for no, r in zip(lines, rows):
            for col, conv, what in (("eval_seed", int, "an integer"), ("score", float, "a number")):
                if col in required:
                    try:
                        conv(r[col])
                    except ValueError:
                        raise UserError(
                            f"{p}:{no}: column '{col}': expected {what} (got {r[col]!r})"
                        ) from None
    return header, rows, torn


def read_results(
    path: str | Path, *, required: Sequence[str] = REQUIRED_COLUMNS
) -> list[dict[str, str]]:
    """Complete rows of a results CSV as ``{column: text}`` (missing file: no rows; torn rows
    dropped, see ``parse_results``).

    Raises:
        UserError: Unreadable or non-UTF-8 file, a missing required column, a bad row.
    """
    p = Path(path)
    raw = _read_bytes(p)
    if raw is None:
        return []
    return parse_results(p, _decode(p, raw), required)[1]


def _cell_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    ts = row.get("train_seed")
    return (
        str(row["config"]),
        str(row["agent"]),
        "" if ts is None else str(ts),
        str(row.get("overrides") or "{}"),
    )


def _row_key(row: dict[str, Any]) -> tuple[str, str, str, str, int]:
    return (*_cell_key(row), int(row["eval_seed"]))


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()


class ResultsWriter:
    """Appends rows to a results CSV that other processes may be appending to at the same time.

    Each append holds an exclusive lock (``.<name>.lock`` beside the file) while it reads only
    the bytes other writers added since its last look, drops rows that are already there (same
    config, agent, training seed, overrides and eval seed: another process ran that episode),
    and appends the rest with one write + fsync. The cost of an append is its own rows plus the
    rows others added, never the whole file, and no row is lost whatever runs concurrently
    (issue #17). The whole file is rewritten (atomically, still under the lock) only when a row
    brings a column the header lacks. A torn last line left by a writer that died mid-row is cut
    off before appending; readers drop it too (``parse_results``).

    Args:
        path: The results CSV (created with its header on the first append).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._done: dict[tuple[str, str, str, str], set[int]] = {}
        self._header: list[str] = []
        self._file_id: tuple[int, int] | None = None
        self._offset = 0

    # -------------------------------------------------------------- reading (under the lock)
    def _reset(self) -> None:
        self._done, self._header, self._file_id, self._offset = {}, [], None, 0

    def _sync(self) -> None:
        """Catches up with what other writers appended; cuts a torn tail (we hold the lock)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._reset()
            return
        fid = (st.st_dev, st.st_ino)
        with self.path.open("rb") as fh:
            # An inode number alone does not identify the file: a rewrite frees it and a later
            # rewrite may get it back. Rewrites always change the header, so compare it too.
            same = fid == self._file_id and st.st_size >= self._offset
            if same and self._header:
                want = _csv_line(self._header).encode()
                same = fh.read(len(want)) == want
            if not same:
                self._reset()  # replaced (a column rewrite) or truncated: read it all again
                self._file_id = fid
            if st.st_size == self._offset:
                return
            fh.seek(self._offset)
            chunk = fh.read()
        cut = chunk.rfind(b"\n") + 1
        if cut < len(chunk):  # a torn last line: its writer died before the newline
            os.truncate(self.path, self._offset + cut)
            chunk = chunk[:cut]
        if not chunk:
            return
        text = _decode(self.path, chunk)
        if not self._header:
            header, rows, _ = parse_results(self.path, text)
            self._header = header
        else:
            _, rows, _ = parse_results(self.path, ",".join(self._header) + "\n" + text)
        for r in rows:
            self._done.setdefault(_cell_key(r), set()).add(int(r["eval_seed"]))
        self._offset += cut

    def done(self, key: tuple[str, str, str, str]) -> set[int]:
        """Eval seeds already in the file for a cell key (reads what others appended)."""
        with exclusive_lock(self.lock_path):
            self._sync()
            return set(self._done.get(key, set()))

    # ---------------------------------------------------------------------------- appending
    def append(self, rows: Sequence[dict[str, Any]]) -> int:
        """Appends the rows not yet in the file; returns how many were written."""
        with exclusive_lock(self.lock_path):
            self._sync()
            new, seen = [], set()
            for r in rows:
                k = _row_key(r)
                if k[-1] in self._done.get(k[:-1], set()) or k in seen:
                    continue
                seen.add(k)
                new.append(r)
            if not new:
                return 0
            cols = list(self._header)
            extra = [c for c in META_COLUMNS if c not in cols] if not cols else []
            cols += extra
            for r in new:
                cols += [c for c in r if c not in cols]
            if self._header and cols != self._header:
                self._rewrite(cols, new)
            else:
                text = "".join(_csv_line([r.get(c) for c in cols]) for r in new)
                if not self._header:
                    text = _csv_line(cols) + text
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
                fd = os.open(self.path, flags, 0o666)  # the umask applies, as for open()
                try:
                    data = text.encode()
                    while data:
                        data = data[os.write(fd, data):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._sync()
            return len(new)

    def _rewrite(self, cols: list[str], new: Sequence[dict[str, Any]]) -> None:
        old = read_results(self.path)
        text = _csv_line(cols) + "".join(_csv_line([r.get(c) for c in cols]) for r in [*old, *new])
        atomic_write_text(self.path, text)


def append_rows(path: str | Path, rows: Sequence[dict[str, Any]]) -> int:
    """Appends ``rows`` to a results CSV (safe with concurrent writers; see ``ResultsWriter``).

    Returns:
        How many rows were written (rows already in the file are skipped).
    """
    return ResultsWriter(path).append(rows)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, file=sys.stderr)


def missing_cells(
    results: str | Path,
    cells: Sequence[Cell],
    eval_seeds: Sequence[int],
    overrides: dict[str, Any] | None = None,
) -> list[tuple[Cell, list[int]]]:
    """``(cell, seeds not yet in results)`` for each cell with work left (what a re-run resumes).

    A row counts for a cell when its config, agent, training seed and overrides (as JSON with
    sorted keys) match; the file's other cells and override sets are left alone.
    """
    ov_text = json.dumps(dict(overrides or {}), sort_keys=True)
    done: dict[tuple[str, str, str, str], set[int]] = {}
    for r in read_results(results):
        done.setdefault(_cell_key(r), set()).add(int(r["eval_seed"]))
    todo = []
    for c in cells:
        key = (c.config, c.agent, "" if c.train_seed is None else str(c.train_seed), ov_text)
        missing = [int(s) for s in eval_seeds if int(s) not in done.get(key, set())]
        if missing:
            todo.append((c, missing))
    return todo


def plan_benchmark(
    out: str | Path,
    configs: Sequence[str] | None,
    agents: Sequence[str] | None,
    episodes: int,
    overrides: dict[str, Any] | None,
) -> tuple[Path, list[int], dict[str, Any], list[Cell], list[tuple[Cell, list[int]]]]:
    """Validates the arguments shared by the local and Ray benchmarks and plans the work.

    Returns:
        ``(results_csv, eval_seeds, overrides, cells, missing_cells)``.

    Raises:
        ValueError: Unknown env id or agent, non-positive episodes.
    """
    from disagg_gym.env.registration import registered_ids

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise UserError(f"episodes must be a positive integer (got {episodes!r})")
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
    cells = plan_cells(ids, specs)
    return results, seeds, ov, cells, missing_cells(results, cells, seeds, ov)


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
        plots: Write the plots (re-runs one episode of two policies per config).
        progress: Show a tqdm progress bar.

    Returns:
        The results CSV path.

    Raises:
        ValueError: Bad arguments (unknown env id or agent, non-positive episodes).
    """
    import torch

    torch.set_num_threads(1)  # identical float reductions in benchmark and validate
    results, seeds, ov, cells, todo = plan_benchmark(out, configs, agents, episodes, overrides)
    out = Path(out)
    ov_text = json.dumps(ov, sort_keys=True)
    skipped = len(cells) - len(todo)
    bar = _progress(sum(len(m) for _, m in todo), "benchmark", progress)
    if skipped:
        bar.write(f"resuming: {skipped} of {len(cells)} cells already in {results}")
    writer = ResultsWriter(results)
    for c, missing in todo:
        ts = "" if c.train_seed is None else f" seed {c.train_seed}"
        key = (c.config, c.agent, "" if c.train_seed is None else str(c.train_seed), ov_text)
        done = writer.done(key)  # another process sharing --out may have run it meanwhile
        left = [s for s in missing if s not in done]
        if not left:
            bar.update(len(missing))
            bar.write(f"{c.config} {c.agent}{ts}: already in {results} (another run)")
            continue
        bar.set_postfix_str(f"{env_name(c.config)} {c.agent}{ts}")
        t0 = time.perf_counter()
        rows = run_cell(c, left, ov)
        writer.append(rows)
        bar.update(len(missing))
        bar.write(f"{c.config} {c.agent}{ts}: {len(rows)} ep in {time.perf_counter() - t0:.1f} s")
    bar.close()
    md = Path(markdown) if markdown is not None else out / "LEADERBOARD.md"
    # The report covers every config in the file (run with these overrides), not only this
    # invocation's: configs can be benchmarked in several calls.
    rows_now = [r for r in read_results(results) if (r.get("overrides") or "{}") == ov_text]
    summary = summarise(rows_now)
    plot_files: dict[str, list[Path]] = {}
    if plots:
        plot_files = make_plots(summary, out / "plots", ov)
    atomic_write_text(md, render_markdown(summary, md.parent, plot_files, ov))
    return results


# ====================================================================== summary
@dataclass
class AgentSummary:
    """One agent's aggregate on one config."""

    agent: str
    kind: str
    upper_bound: bool
    runs: int
    episodes: int
    iqm: float
    ci: tuple[float, float]
    mean_score: float
    kpis: dict[str, float]
    best_run: str  # train seed with the highest mean score ("" for heuristics)
    policies: dict[str, str]  # train seed -> policy spec


@dataclass
class ConfigSummary:
    """One config: metric, best heuristic and the ranked agents."""

    config: str
    metric: str
    best_heuristic: str
    best_heuristic_score: float
    agents: list[AgentSummary]


def summarise(rows: Iterable[dict[str, Any]]) -> list[ConfigSummary]:
    """Per-config rankings from result rows (normalised IQM + CI, mean raw KPIs).

    Normalisation: ``score / s_best`` where ``s_best`` is the highest mean score of a
    non-upper-bound heuristic on that config (so the best heuristic is 1.0). Each run's
    normalised scores over the evaluation seeds form a row of the ``(runs, tasks)`` matrix.
    """
    by_cfg: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_cfg.setdefault(str(r["config"]), []).append(r)
    out = []
    for cfg in sorted(by_cfg):
        rs = by_cfg[cfg]
        metric = str(rs[0]["primary_metric"])
        by_agent: dict[str, list[dict[str, Any]]] = {}
        for r in rs:
            by_agent.setdefault(str(r["agent"]), []).append(r)

        ub = {a: str(v[0].get("upper_bound")) == "True" for a, v in by_agent.items()}
        heur = [a for a in by_agent if by_agent[a][0]["agent_kind"] == "heuristic" and not ub[a]]
        means = {a: float(np.mean([float(r["score"]) for r in by_agent[a]])) for a in by_agent}
        best_h = max(heur, key=lambda a: means[a]) if heur else max(means, key=means.__getitem__)
        ref = means[best_h] if means[best_h] > 0 else 1.0
        summaries = []
        for a, ars in by_agent.items():
            runs: dict[str, dict[int, float]] = {}
            pol: dict[str, str] = {}
            for r in ars:
                ts = str(r.get("train_seed") or "")
                runs.setdefault(ts, {})[int(r["eval_seed"])] = float(r["score"]) / ref
                pol[ts] = str(r["policy"])
            tasks = sorted(set.intersection(*(set(v) for v in runs.values())))
            m = np.array([[runs[ts][t] for t in tasks] for ts in sorted(runs)])
            kpis = {}
            for key, *_ in KPI_TABLE:
                vals = [v for r in ars if (v := _num(r.get(key))) is not None and math.isfinite(v)]
                kpis[key] = float(np.mean(vals)) if vals else float("nan")
            raw = [v for r in ars if (v := _num(r.get(metric))) is not None and math.isfinite(v)]
            kpis[metric] = float(np.mean(raw)) if raw else float("nan")
            best_run = max(runs, key=lambda ts: float(np.mean(list(runs[ts].values()))))
            summaries.append(
                AgentSummary(
                    agent=a,
                    kind=str(ars[0]["agent_kind"]),
                    upper_bound=ub[a],
                    runs=len(runs),
                    episodes=len(tasks),
                    iqm=iqm(m),
                    ci=stratified_bootstrap_ci(m),
                    mean_score=means[a] / ref,
                    kpis=kpis,
                    best_run=best_run,
                    policies=pol,
                )
            )
        summaries.sort(key=lambda s: (-s.iqm, s.agent))
        out.append(ConfigSummary(cfg, metric, best_h, means[best_h], summaries))
    return out


def _fmt(v: float, scale: float, fmt: str) -> str:
    return "n/a" if not math.isfinite(v) else fmt.format(v * scale)


def render_markdown(
    summary: Sequence[ConfigSummary],
    md_dir: Path,
    plot_files: dict[str, list[Path]],
    overrides: dict[str, Any],
) -> str:
    """The Markdown leaderboard: a headline table, then one ranked table per config."""
    import disagg_gym

    lines = [
        "# disagg-gym leaderboard",
        "",
        (
            "Generated by `disagg-gym benchmark` (do not edit by hand); protocol, budgets and "
            "how to submit: [docs/leaderboard.md](docs/leaderboard.md). Re-check every number "
            "with `disagg-gym validate`."
        ),
        "",
        f"disagg-gym {disagg_gym.__version__}; held-out evaluation workload seeds "
        f"{EVAL_SEED_OFFSET}, {EVAL_SEED_OFFSET + 1}, ... (`runs x ep` in each table)"
        + (f"; overrides `{json.dumps(overrides, sort_keys=True)}`" if overrides else "")
        + ".",
        "",
        (
            "**Score** = the config's primary metric, higher is better (cost and energy metrics "
            "are inverted: 1/value), **normalised to the best heuristic = 1.00** (the "
            "clairvoyant router is an upper-bound reference and excluded from that choice). "
            "**IQM** and **95% CI**: interquartile mean and stratified-bootstrap percentile "
            "interval over training seeds x evaluation episodes (rliable); a heuristic is one "
            "run, so its CI has zero width. Raw KPIs are means over all episodes."
        ),
        "",
        "## Headline",
        "",
        (
            "| config | primary metric | best heuristic (raw) | "
            "best learned agent: IQM [95% CI] | learned vs best heuristic |"
        ),
        "|---|---|---|---|---|",
    ]
    for cs in summary:
        learned = [a for a in cs.agents if a.kind == "sb3"]
        raw = cs.agents[[a.agent for a in cs.agents].index(cs.best_heuristic)].kpis[cs.metric]
        if learned:
            b = learned[0]
            verdict = (
                "wins (CI above 1)" if b.ci[0] > 1.0
                else "loses (CI below 1)" if b.ci[1] < 1.0
                else "tie (CI contains 1)"
            )
            lt = f"{b.agent} ({b.runs} seeds): {b.iqm:.3f} [{b.ci[0]:.3f}, {b.ci[1]:.3f}]"
        else:
            lt, verdict = "none", ""
        lines.append(
            f"| `{cs.config}` | {cs.metric} | {cs.best_heuristic} ({raw:.4g}) | {lt} | {verdict} |"
        )
    for cs in summary:
        lines += ["", f"## {cs.config}", ""]
        lines.append(
            f"Primary metric `{cs.metric}`"
            + (" (lower is better; score = 1/value)" if cs.metric in LOWER_IS_BETTER else "")
            + f". Best heuristic: **{cs.best_heuristic}** = 1.00."
        )
        lines.append("")
        head = ["rank", "agent", "runs x ep", "IQM [95% CI]", f"{cs.metric} (mean)"]
        head += [h for _, h, _, _ in KPI_TABLE]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for i, a in enumerate(cs.agents, 1):
            name = a.agent + (" (upper bound)" if a.upper_bound else "")
            if a.kind == "sb3":
                name += f", best seed {a.best_run}"
            cells = [
                str(i),
                name,
                f"{a.runs} x {a.episodes}",
                f"{a.iqm:.3f} [{a.ci[0]:.3f}, {a.ci[1]:.3f}]",
                f"{a.kpis[cs.metric]:.4g}",
            ]
            cells += [_fmt(a.kpis[k], s, f) for k, _, s, f in KPI_TABLE]
            lines.append("| " + " | ".join(cells) + " |")
        for p in plot_files.get(cs.config, []):
            rel = os.path.relpath(p, md_dir)
            lines += ["", f"![{p.stem}]({Path(rel).as_posix()})"]
    if "_all" in plot_files:
        lines += ["", "## All configs", ""]
        for p in plot_files["_all"]:
            lines.append(f"![{p.stem}]({Path(os.path.relpath(p, md_dir)).as_posix()})")
    return "\n".join(lines) + "\n"


# ====================================================================== plots
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _trace_episode(
    config: str, policy_spec: str, kind: str, seed: int, overrides: dict[str, Any]
) -> tuple[dict[str, list[float]], list[dict[str, Any]]]:
    """Re-runs one episode with per-request records and a timeline sampler (plots only)."""
    from disagg_gym_agents.base import make_env
    from disagg_gym_agents.registry import make_policy
    from disagg_gym.metrics.timeline import TimelineSampler

    env = make_env(config, overrides)
    if kind == "sb3":
        policy: Any = GreedyPolicy(make_policy(f"sb3:{resolve_path(policy_spec[4:])}", env))
    else:
        policy = make_policy(policy_spec, env, seed=0)
    obs, _ = env.reset(seed=seed, options={"workload_seed": seed})
    base = env.unwrapped
    base.recorder.keep_records = True
    sampler = TimelineSampler(base.cluster, max(base.scenario.horizon_s / 300.0, 0.05))
    start = np.ones((1,), dtype=bool)
    while True:
        action, _ = policy.predict(obs, episode_start=start, deterministic=True)
        start = np.zeros((1,), dtype=bool)
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            break
    rec = base.recorder
    lat = {"ttft": list(rec.ttft), "tpot": list(rec.tpot), "e2e": list(rec.e2e)}
    env.close()
    return lat, sampler.rows


def make_plots(
    summary: Sequence[ConfigSummary], plot_dir: Path, overrides: dict[str, Any]
) -> dict[str, list[Path]]:
    """Score bars with CIs (all configs), and per config latency CDFs and a timeline.

    The CDF and timeline compare the best learned agent's best training seed with the best
    heuristic on the first evaluation seed (or the top two heuristics without a learned agent).
    """
    from disagg_gym import plots

    plt = _plt()
    plot_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    n = len(summary)
    cols = min(3, max(n, 1))
    rows_ = math.ceil(n / cols) if n else 1
    fig, axes = plt.subplots(rows_, cols, figsize=(5.2 * cols, 3.6 * rows_), squeeze=False)
    for ax, cs in zip(axes.ravel(), summary):
        labels = [a.agent + ("*" if a.upper_bound else "") for a in cs.agents][::-1]
        vals = np.array([a.iqm for a in cs.agents][::-1])
        lo = np.array([a.iqm - a.ci[0] for a in cs.agents][::-1])
        hi = np.array([a.ci[1] - a.iqm for a in cs.agents][::-1])
        colors = [
            "tab:orange" if a.kind == "sb3" else "tab:gray" if a.upper_bound else "tab:blue"
            for a in cs.agents
        ][::-1]
        ax.barh(labels, vals, xerr=np.vstack([lo, hi]), color=colors, capsize=3)
        ax.axvline(1.0, color="k", lw=0.8, ls="--")
        ax.set_title(f"{env_name(cs.config)} ({cs.metric})", fontsize=9)
        ax.set_xlabel("IQM normalised score (best heuristic = 1)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    bars = plot_dir / "scores.png"
    fig.savefig(bars, dpi=90)
    plt.close(fig)
    files["_all"] = [bars]

    for cs in summary:
        seed = EVAL_SEED_OFFSET
        learned = [a for a in cs.agents if a.kind == "sb3"]
        heur = [a for a in cs.agents if a.kind == "heuristic" and not a.upper_bound]
        picks = []
        if learned:
            a = learned[0]
            picks.append((f"{a.agent} (seed {a.best_run})", a.policies[a.best_run], "sb3"))
        for h in sorted(heur, key=lambda a: a.agent != cs.best_heuristic)[: 2 - len(picks)]:
            picks.append((h.agent, h.policies[""], "heuristic"))
        traces = {lab: _trace_episode(cs.config, spec, k, seed, overrides) for lab, spec, k in picks}
        name = env_name(cs.config)
        cdf = plots.latency_cdf(
            {lab: t[0] for lab, t in traces.items()},
            plot_dir / f"{name}_latency_cdf.png",
            f"{cs.config}, workload seed {seed}",
        )
        fig, axes = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
        for k, (lab, (_, tl)) in enumerate(traces.items()):
            t = [r["t_s"] for r in tl]
            c = f"C{k}"  # one colour per policy; line style tells prefill from decode
            axes[0].plot(t, [r["prefill_queue_requests"] for r in tl], color=c, label=lab)
            axes[1].plot(t, [r["n_prefill"] for r in tl], color=c, label=f"{lab}: prefill")
            axes[1].plot(t, [r["n_decode"] for r in tl], color=c, ls="--", label=f"{lab}: decode")
        axes[0].set_ylabel("prefill queue (requests)")
        axes[1].set_ylabel("pool size (instances)")
        axes[1].set_xlabel("simulated time (s)")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"{cs.config}, workload seed {seed}", fontsize=10)
        fig.tight_layout()
        tl_path = plot_dir / f"{name}_timeline.png"
        fig.savefig(tl_path, dpi=80)
        plt.close(fig)
        files[cs.config] = [cdf, tl_path]
    return files


# ====================================================================== validate
def _same(recorded: str, replayed: Any) -> bool:
    a = _num(recorded)
    b = _num(replayed)
    if a is not None and b is not None:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return str(recorded) == ("" if replayed is None else str(replayed))


def validate(
    path: str | Path = DEFAULT_RESULTS,
    configs: Sequence[str] | None = None,
    agents: Sequence[str] | None = None,
    *,
    progress: bool = True,
) -> list[str]:
    """Replays every row of a results CSV; returns one message per mismatch (empty: valid).

    Each row's episode is re-run from its recorded config, overrides, policy and workload
    seed; every KPI column, and ``score``, must match within ``REL_TOL`` (relative) /
    ``ABS_TOL``. A missing or changed checkpoint (SHA-256) and an env id whose version differs
    from the row's are reported too. A KPI the replay has but the row lacks is an error.

    Raises:
        ValueError: A missing or empty results file.
    """
    import torch

    torch.set_num_threads(1)
    p = Path(path)
    if not p.exists():
        raise UserError(f"results file not found: {str(p)!r}")
    if not p.is_file():
        raise UserError(f"{str(p)!r} is not a regular file, expected a results CSV")
    rows = read_results(p)
    if not rows:
        raise UserError(f"{p}: no result rows")
    for flag, wanted, col in (("--configs", configs, "config"), ("--agents", agents, "agent")):
        have = sorted({r[col] for r in rows})
        for w in wanted or ():
            if w not in have:
                raise UserError(f"{flag}: no rows with {col} {w!r} in {p} (it has: {', '.join(have)})")
    numbered = [
        (i, r) for i, r in enumerate(rows, start=2)  # line number in the file (header = 1)
        if (not configs or r["config"] in configs) and (not agents or r["agent"] in agents)
    ]
    if not numbered:
        raise UserError(
            f"{p}: no row has one of the configs {list(configs or [])} and one of the agents "
            f"{list(agents or [])}: nothing to validate"
        )
    groups: dict[tuple[str, ...], list[tuple[int, dict[str, str]]]] = {}
    for i, r in numbered:
        key = (r["config"], r["agent"], r["agent_kind"], r["policy"], r["train_seed"],
               r.get("upper_bound", ""), r.get("overrides") or "{}")
        groups.setdefault(key, []).append((i, r))
    errors: list[str] = []
    bar = _progress(len(numbered), "validate", progress)
    def where(i: int, r: dict[str, str]) -> str:
        return (f"{p}:{i} (config={r['config']}, agent={r['agent']}, "
                f"train_seed={r['train_seed'] or '-'}, eval_seed={r['eval_seed']})")

    for (cfg, agent, kind, policy, ts, ub, ov), items in groups.items():

        try:
            if int(items[0][1]["env_version"]) != env_version(cfg):
                raise ValueError(f"env version {items[0][1]['env_version']} != id {cfg}")
            if kind == "sb3":
                mp = resolve_path(policy[4:])
                if not mp.is_file():
                    raise ValueError(f"checkpoint {str(mp)!r} not found")
                want = items[0][1].get("model_sha256", "")
                if want and _sha256(mp) != want:
                    raise ValueError(f"checkpoint {str(mp)!r} has changed (SHA-256 mismatch)")
            cell = Cell(cfg, agent, kind, policy, int(ts) if ts else None, ub == "True")
            replay = run_cell(cell, [int(r["eval_seed"]) for _, r in items], json.loads(ov))
        except Exception as exc:  # noqa: BLE001 - reported per row, validation goes on
            for i, r in items:
                errors.append(f"{where(i, r)}: cannot replay: {exc}")
            bar.update(len(items))
            continue
        for (i, r), new in zip(items, replay):
            for key, val in new.items():
                if key in NOT_REPLAYED:
                    continue
                if key not in r:
                    errors.append(f"{where(i, r)}: KPI {key} missing from the row (replay: {val!r})")
                elif not _same(r[key], val):
                    errors.append(
                        f"{where(i, r)}: KPI {key} recorded {r[key]} but replay gives {val!r}"
                    )
            for key in r:
                if key not in new and key not in META_COLUMNS and r[key] != "":
                    errors.append(f"{where(i, r)}: KPI {key} recorded {r[key]} but replay has none")
        bar.update(len(items))
    bar.close()
    return errors


# ====================================================================== CLI
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
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (results.csv, plots/)")
    p.add_argument("--markdown", metavar="PATH",
                   help="Markdown leaderboard path (default: DIR/LEADERBOARD.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="env override for every config (recorded per row), repeatable")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="run cells in this process, or as Ray tasks (needs the [ray] extra)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--num-workers", type=int, metavar="N", help="CPUs of a local Ray instance (default: all)")


def add_validate_args(p: argparse.ArgumentParser) -> None:
    """Options of ``disagg-gym validate``."""
    p.add_argument("results", nargs="?", default=None,
                   help="results CSV (default: leaderboard/results.csv of the repository)")
    p.add_argument("--configs", nargs="+", metavar="ID", help="only rows of these configs")
    p.add_argument("--agents", nargs="+", metavar="NAME", help="only rows of these agents")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_benchmark(args: argparse.Namespace) -> int:
    """``disagg-gym benchmark``: run the missing cells, write results, leaderboard and plots."""
    from disagg_gym_agents.base import parse_overrides

    run: Any = benchmark
    extra: dict[str, Any] = {}
    if getattr(args, "backend", "local") == "ray":
        from disagg_gym_agents.ray_benchmark import benchmark_ray

        run = benchmark_ray
        extra = {"address": args.address, "num_workers": args.num_workers}
    elif getattr(args, "address", None):
        raise UserError(f"--address needs --backend ray (got --address {args.address})")
    from disagg_gym.io import check_output_dir, check_output_file

    check_output_dir(args.out, "--out")  # before any cell runs (issue #17)
    check_output_file(Path(args.out) / "results.csv", "--out")
    check_output_file(args.markdown or Path(args.out) / "LEADERBOARD.md", "--markdown" if args.markdown else "--out")
    results = run(
        args.out,
        configs=args.configs,
        agents=args.agents,
        episodes=args.episodes,
        overrides=parse_overrides(args.set),
        markdown=args.markdown,
        plots=not args.no_plots,
        progress=not args.no_progress,
        **extra,
    )
    md = args.markdown or str(Path(args.out) / "LEADERBOARD.md")
    print(f"results: {results}\nleaderboard: {md}")
    return 0


def default_results_path() -> Path:
    """``leaderboard/results.csv`` under the CWD if present, else under the repository root."""
    local = Path.cwd() / "leaderboard" / "results.csv"
    return local if local.is_file() else DEFAULT_RESULTS


def cmd_validate(args: argparse.Namespace) -> int:
    """``disagg-gym validate``: exit 0 if every row replays, 1 naming each mismatch."""
    results = args.results
    configs, agents = list(args.configs or []), list(args.agents or [])
    for items in (configs, agents):
        # ``--configs A B results.csv``: nargs="+" takes the positional path too (issue #17)
        if results is None and items and (items[-1].endswith(".csv") or Path(items[-1]).is_file()):
            results = items.pop()
    path = Path(results) if results else default_results_path()
    errors = validate(path, configs or None, agents or None, progress=not args.no_progress)
    if errors:
        for e in errors[:50]:
            print(f"MISMATCH {e}", file=sys.stderr)
        if len(errors) > 50:
            print(f"... and {len(errors) - 50} more", file=sys.stderr)
        print(f"validate: FAILED, {len(errors)} mismatch(es) in {path}", file=sys.stderr)
        return 1
    n = sum(
        1 for r in read_results(path)
        if (not configs or r["config"] in configs) and (not agents or r["agent"] in agents)
    )
    print(f"validate: OK, {n} row(s) of {path} replayed exactly")
    return 0
