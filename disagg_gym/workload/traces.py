"""Trace loading: Azure LLM inference CSV and Mooncake JSONL, strictly validated, line by line.

Formats (detected from the first non-empty line):

* Azure 2023 (``AzureLLMInferenceTrace_*.csv``): header ``TIMESTAMP,ContextTokens,GeneratedTokens``,
  ``TIMESTAMP`` like ``2023-11-16 18:15:46.6805900``.
* Mooncake (``*_trace.jsonl``): one object per line with ``timestamp`` (milliseconds),
  ``input_length``, ``output_length`` and optional ``hash_ids`` (prefix-block hashes).

Bad rows fail by default with ``TraceError("<file>:<line>: ...")`` naming the column and value;
``on_bad_row="skip"`` skips them and counts them in ``TraceData.skipped_rows``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")


class TraceError(ValueError):
    """A malformed trace; the message names the file, line, column and bad value."""


@dataclass
class TraceData:
    """A loaded trace, arrival times relative to its first row (seconds)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: list[tuple[int, ...]] | None
    fmt: str
    path: str
    skipped_rows: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def span_s(self) -> float:
        """Time from the first to the last arrival."""
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self.arrival_s) else 0.0


def detect_format(path: Path, first_line: str) -> str:
    """``"azure"`` or ``"mooncake"`` from the first non-empty line."""
    line = first_line.strip()
    if line.startswith("{"):
        return "mooncake"
    if "TIMESTAMP" in line.split(",")[0] or "ContextTokens" in line:
        return "azure"
    raise TraceError(
        f"{path}:1: unknown trace format: expected an Azure CSV header "
        f"'TIMESTAMP,ContextTokens,GeneratedTokens' or Mooncake JSON lines (got {line[:60]!r})"
    )


def _positive_int(text: object) -> int | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text if text > 0 else None
    if isinstance(text, float):
        return int(text) if text.is_integer() and text > 0 else None
    if isinstance(text, str):
        t = text.strip()
        if t.isdigit():
            v = int(t)
            return v if v > 0 else None
    return None


def _parse_azure_ts(text: str) -> float | None:
    t = text.strip()
    try:
        date, _, clock = t.partition(" ")
        frac = 0.0
        if "." in clock:
            clock, _, f = clock.partition(".")
            if not f.isdigit():
                return None
            frac = int(f) / 10 ** len(f)
        dt = datetime.strptime(f"{date} {clock}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return dt.timestamp() + frac


def load_trace(path: str | Path, fmt: str = "auto", on_bad_row: str = "fail") -> TraceData:
    """Loads and validates a trace file.

    Args:
        path: The file.
        fmt: ``"auto"``, ``"azure"`` or ``"mooncake"``.
        on_bad_row: ``"fail"`` (default) raises on the first bad row; ``"skip"`` drops bad rows.

    Raises:
        TraceError: one line naming the file, line number, column and bad value.
    """
    p = Path(path)
    if fmt not in ("auto", "azure", "mooncake"):
        raise TraceError(f"{p}: trace format must be auto, azure or mooncake (got {fmt!r})")
    if on_bad_row not in ("fail", "skip"):
        raise TraceError(f"{p}: on_bad_row must be fail or skip (got {on_bad_row!r})")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"{p}: trace file not found") from None
    except IsADirectoryError:
        raise TraceError(f"{p}: is a directory, expected a trace file") from None
    except UnicodeDecodeError:
        raise TraceError(f"{p}: not a text file (invalid UTF-8)") from None
    except OSError as exc:
        raise TraceError(f"{p}: cannot read ({exc.strerror})") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise TraceError(f"{p}: empty trace (no rows)")
    kind = detect_format(p, first) if fmt == "auto" else fmt
    skip = on_bad_row == "skip"
    reasons: list[str] = []
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    hashes: list[tuple[int, ...]] = []
    any_hash = False

    def bad(msg: str) -> None:
        if not skip:
            raise TraceError(msg)
        if len(reasons) < 5:
            reasons.append(msg)

    skipped = 0
    if kind == "azure":
        header_idx = next(i for i, ln in enumerate(lines) if ln.strip())
        cols = [c.strip() for c in lines[header_idx].split(",")]
        missing = [c for c in AZURE_COLUMNS if c not in cols]
        if missing:
            raise TraceError(f"{p}:{header_idx + 1}: missing column '{missing[0]}' (header has {cols})")
        it, ip, io = (cols.index(c) for c in AZURE_COLUMNS)
        for no in range(header_idx + 2, len(lines) + 1):
            line = lines[no - 1]
            if not line.strip():
                continue
            parts = line.split(",")
            if len(parts) != len(cols):
                skipped += 1
                bad(f"{p}:{no}: expected {len(cols)} fields (got {len(parts)})")
                continue
            ts = _parse_azure_ts(parts[it])
            if ts is None:
                skipped += 1
                bad(f"{p}:{no}: column 'TIMESTAMP': expected 'YYYY-MM-DD HH:MM:SS[.fffffff]' (got {parts[it].strip()!r})")
                continue
            pt = _positive_int(parts[ip])
            if pt is None:
                skipped += 1
                bad(f"{p}:{no}: column 'ContextTokens': expected a positive integer (got {parts[ip].strip()!r})")
                continue
            ot = _positive_int(parts[io])
            if ot is None:
                skipped += 1
                bad(f"{p}:{no}: column 'GeneratedTokens': expected a positive integer (got {parts[io].strip()!r})")
                continue
            if times and ts < times[-1]:
                skipped += 1
                bad(f"{p}:{no}: column 'TIMESTAMP': {parts[it].strip()} is earlier than the previous row's")
                continue
            times.append(ts)
            prompts.append(pt)
            outputs.append(ot)
    else:
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped += 1
                bad(f"{p}:{no}: invalid JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                skipped += 1
                bad(f"{p}:{no}: expected a JSON object (got {line.strip()[:40]!r})")
                continue
            miss = [k for k in MOONCAKE_FIELDS if k not in obj]
            if miss:
                skipped += 1
                bad(f"{p}:{no}: missing field '{miss[0]}'")
                continue
            ts = obj["timestamp"]
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not np.isfinite(ts) or ts < 0:
                skipped += 1
                bad(f"{p}:{no}: field 'timestamp': expected a non-negative number of milliseconds (got {ts!r})")
                continue
            pt = _positive_int(obj["input_length"])
            if pt is None:
                skipped += 1
                bad(f"{p}:{no}: field 'input_length': expected a positive integer (got {obj['input_length']!r})")
                continue
            ot = _positive_int(obj["output_length"])
            if ot is None:
                skipped += 1
                bad(f"{p}:{no}: field 'output_length': expected a positive integer (got {obj['output_length']!r})")
                continue
            hid = obj.get("hash_ids")
            if hid is not None and (not isinstance(hid, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hid)):
                skipped += 1
                bad(f"{p}:{no}: field 'hash_ids': expected a list of integers (got {str(hid)[:40]})")
                continue
            t = ts / 1000.0
            if times and t < times[-1]:
                skipped += 1
                bad(f"{p}:{no}: field 'timestamp': {ts} is earlier than the previous row's {times[-1] * 1000:g}")
                continue
            times.append(t)
            prompts.append(pt)
            outputs.append(ot)
            hashes.append(tuple(hid) if hid else ())
            any_hash = any_hash or bool(hid)
    if not times:
        raise TraceError(f"{p}: empty trace (no valid rows{f'; {skipped} skipped' if skipped else ''})")
    t = np.asarray(times, dtype=np.float64)
    t -= t[0]
    return TraceData(
        t, np.asarray(prompts, dtype=np.int64), np.asarray(outputs, dtype=np.int64),
        hashes if any_hash else None, kind, str(p), skipped, reasons,
    )
