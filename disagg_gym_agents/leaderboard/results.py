"""The leaderboard's results CSV: its columns, a tolerant reader and a concurrent-safe appender."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from disagg_gym.errors import UserError
from disagg_gym.io import atomic_write_text, locked
from disagg_gym.scenario import TEST_SPLIT
from disagg_gym_agents.leaderboard.cells import Cell, resolve_path

META_COLUMNS = (
    "config",
    "env_version",
    "agent",
    "agent_kind",
    "upper_bound",
    "split",
    "train_seed",
    "eval_seed",
    "episode",
    "primary_metric",
    "score",
    "policy",
    "params",
    "policy_seed",
    "model_sha256",
    "overrides",
    "package_version",
    "sb3_version",
    "torch_version",
)
"""Columns written before the KPIs; everything else in a row is a replayed KPI."""
NOT_REPLAYED = frozenset(META_COLUMNS) - {"score"}

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
from them); a file without one is rejected with one line naming the column.

``split`` is not required: files written before splits existed (issue #15) lack it, and their
rows are read as split ``test`` (they were all run on the config as written, seeds 10000+).
``params`` is not required either: rows written before heuristics were bound with tuned params
(issue #15) lack it, and are read as ``{}`` (every heuristic ran at its registered defaults)."""
NO_PARAMS = "{}"


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
        row = dict(zip(header, rec))
        if not row.get("split"):
            row["split"] = TEST_SPLIT  # a file from before splits: every row is in distribution
        if not row.get("params"):
            row["params"] = NO_PARAMS  # a row from before tuned params: registered defaults
        rows.append(row)
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


CellKey = tuple[str, str, str, str, str]
"""``(config, agent, train_seed, overrides JSON, split)``: what identifies a cell in a file."""


def cell_key(row: dict[str, Any]) -> CellKey:
    """The cell a row (or a dict with the same keys) belongs to."""
    ts = row.get("train_seed")
    return (
        str(row["config"]),
        str(row["agent"]),
        "" if ts is None else str(ts),
        str(row.get("overrides") or "{}"),
        str(row.get("split") or TEST_SPLIT),
    )


def key_of(cell: Cell, overrides_json: str) -> CellKey:
    """The ``cell_key`` of a planned cell run with overrides ``overrides_json`` (sorted-key JSON)."""
    ts = "" if cell.train_seed is None else str(cell.train_seed)
    return (cell.config, cell.agent, ts, overrides_json, cell.split)


def row_key(row: dict[str, Any]) -> tuple[str, str, str, str, str, int]:
    """What identifies a row in a file: its ``cell_key`` and evaluation seed."""
    return (*cell_key(row), int(row["eval_seed"]))


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
        self._done: dict[CellKey, set[int]] = {}
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
            self._done.setdefault(cell_key(r), set()).add(int(r["eval_seed"]))
        self._offset += cut

    def done(self, key: CellKey) -> set[int]:
        """Eval seeds already in the file for a cell key (reads what others appended)."""
        with locked(self.path):
            self._sync()
            return set(self._done.get(key, set()))

    # ---------------------------------------------------------------------------- appending
    def append(self, rows: Sequence[dict[str, Any]]) -> int:
        """Appends the rows not yet in the file; returns how many were written."""
        with locked(self.path):
            self._sync()
            new, seen = [], set()
            for r in rows:
                k = row_key(r)
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
                # a new metadata column (``params`` in a file from before it) goes to its place
                # among the metadata, not after the KPIs; old rows get their reader's default
                cols = [c for c in META_COLUMNS if c in cols] + [c for c in cols if c not in META_COLUMNS]
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


def stale_cells(
    results: str | Path, cells: Sequence[Cell], overrides: dict[str, Any] | None = None
) -> list[str]:
    """One line per planned cell whose rows in ``results`` were run with other ``params``.

    A results file must not mix a policy's defaults and its tuned values (or two tuned values)
    under one agent name: the cell key has no ``params``, so such rows would be skipped as done
    and averaged together. Rows without the column count as ``{}``.
    """
    ov_text = json.dumps(dict(overrides or {}), sort_keys=True)
    want = {key_of(c, ov_text): c.params or NO_PARAMS for c in cells}
    seen: dict[CellKey, set[str]] = {}
    for r in read_results(results):
        k = cell_key(r)
        if k in want:
            seen.setdefault(k, set()).add(r.get("params") or NO_PARAMS)
    out = []
    for k, got in seen.items():
        bad = sorted(g for g in got if g != want[k])
        if bad:
            out.append(f"{k[0]} {k[1]} [{k[4]}] recorded with params {', '.join(bad)}, tuned file gives {want[k]}")
    return out


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file (recorded per row, so validate notices a changed checkpoint)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def foreign_cells(
    results: str | Path, cells: Sequence[Cell], overrides: dict[str, Any] | None = None
) -> list[str]:
    """One line per planned cell whose rows in ``results`` were run by another policy.

    The cell key holds the agent's name, not its policy: a learned agent named like one already
    in the file (another checkpoint folder), or a heuristic's name reused, would have its cells
    skipped as done, or its rows averaged with the other policy's.
    """
    ov_text = json.dumps(dict(overrides or {}), sort_keys=True)
    want = {key_of(c, ov_text): c.policy for c in cells}
    digests: dict[str, str] = {}

    def same_model(recorded: dict[str, str], policy: str) -> bool:
        """The same checkpoint named from another folder (sb3 paths are relative to where
        ``benchmark`` ran): the row's SHA-256 equals the file's.
        """
        if not policy.startswith("sb3:") or not recorded.get("model_sha256"):
            return False
        if policy not in digests:
            path = resolve_path(policy[4:])
            digests[policy] = sha256_of(path) if path.is_file() else ""
        return digests[policy] == recorded["model_sha256"]

    out: dict[CellKey, str] = {}
    for r in read_results(results):
        k = cell_key(r)
        if k in want and r["policy"] != want[k] and k not in out and not same_model(r, want[k]):
            out[k] = (f"{k[0]} {k[1]}" + (f" seed {k[2]}" if k[2] else "") + f" [{k[4]}] has rows run by "
                      f"{r['policy']}, this run's is {want[k]}")
    return list(out.values())


def missing_cells(
    results: str | Path,
    cells: Sequence[Cell],
    eval_seeds: Sequence[int],
    overrides: dict[str, Any] | None = None,
) -> list[tuple[Cell, list[int]]]:
    """``(cell, seeds not yet in results)`` for each cell with work left (what a re-run resumes).

    A row counts for a cell when its config, agent, training seed, overrides (as JSON with
    sorted keys) and split match; the file's other cells and override sets are left alone.
    """
    ov_text = json.dumps(dict(overrides or {}), sort_keys=True)
    done: dict[CellKey, set[int]] = {}
    for r in read_results(results):
        done.setdefault(cell_key(r), set()).add(int(r["eval_seed"]))
    todo = []
    for c in cells:
        key = key_of(c, ov_text)
        missing = [int(s) for s in eval_seeds if int(s) not in done.get(key, set())]
        if missing:
            todo.append((c, missing))
    return todo

