"""Trace loading: Azure LLM-inference CSV and Mooncake JSONL files, validated row by row.

Formats (``fmt="auto"`` detects them from the first non-empty line):

* **Azure** (``AzureLLMInferenceTrace_*.csv``): header ``TIMESTAMP,ContextTokens,GeneratedTokens``
  (column order free, extra columns ignored); ``TIMESTAMP`` like ``2023-11-16 18:15:46.6805900``.
* **Mooncake** (``*_trace.jsonl``): one JSON object per line with ``timestamp`` (milliseconds),
  ``input_length``, ``output_length`` and optional ``hash_ids`` (prefix-block hashes).

Every problem is a one-line ``TraceError`` naming the file, the line, the column or field and
the bad value, e.g. ``trace.csv:7: column 'ContextTokens': expected a positive integer (got
'abc')``. With ``on_bad_row="skip"`` bad rows are dropped instead and counted in
``TraceData.skipped_rows``; problems with the file itself (missing, empty, unknown format,
header lacking a column) always fail.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from disagg_gym.errors import UserError, clipped_repr

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")
_JSON_WS = " \t\n\r"  # what json.loads skips around a value
_INT_ONLY = {int}  # the element types of a valid hash_ids list (bool is no hash id)
#: How many skip reasons ``TraceData.skip_reasons`` keeps.
MAX_SKIP_REASONS = 5
#: Largest token count a row may hold (2**31 - 1): far above any context length, and it keeps
#: the int64 arrays and token arithmetic exact (a value of 10**23 overflowed numpy, issue #17).
MAX_TOKENS = 2**31 - 1
_AZURE_TS_EXAMPLE = "2023-11-16 18:15:46.6805900"


class TraceError(UserError):
    """A missing or malformed trace; ``str(err)`` is one line naming file, line and value."""


@dataclass(frozen=True, slots=True, eq=False)
class TraceData:
    """A loaded trace: one entry per valid row, in file order (arrays are read-only)."""

    path: str = field(metadata={"help": "the file, as given"})
    fmt: Literal["azure", "mooncake"] = field(metadata={"help": "the detected or given format"})
    arrival_s: np.ndarray = field(
        metadata={"help": "float64 seconds after the first valid row (starts at 0, non-decreasing)"}
    )
    prompt_tokens: np.ndarray = field(metadata={"help": "int64 >= 1"})
    output_tokens: np.ndarray = field(metadata={"help": "int64 >= 1"})
    hash_ids: tuple[tuple[int, ...], ...] | None = field(
        default=None,
        metadata={
            "help": "Mooncake prefix-block hashes per row (512-token blocks); None if absent"
        },
    )
    skipped_rows: int = field(default=0, metadata={"help": "bad rows dropped (on_bad_row='skip')"})
    skip_reasons: tuple[str, ...] = field(
        default=(), metadata={"help": f"the first {MAX_SKIP_REASONS} skip messages"}
    )
    line_numbers: np.ndarray | None = field(
        default=None, metadata={"help": "int64 line of the file each row came from (1-based)"}
    )

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last arrival."""
        return float(self.arrival_s[-1]) if self.arrival_s.size else 0.0


_MAX_FLOAT = 1.7976931348623157e308


def _fmt_value(value: Any, limit: int = 60) -> str:
    if isinstance(value, (list, dict)) and not _depth_ok(value):  # repr() would recurse
        return f"<deeply nested {type(value).__name__}>"
    return clipped_repr(value, limit)


def _token_count(value: Any) -> int | str:
    """``value`` as a token count in ``[1, MAX_TOKENS]`` (digit strings, JSON ints, integral
    floats), else the problem (``"expected a positive integer"`` or the upper bound).
    """
    if isinstance(value, str):
        s = value.strip()
        if not (s.isascii() and s.isdigit()):
            return "expected a positive integer"
        v = int(s) if len(s) <= 12 else MAX_TOKENS + 1  # 12 digits: no int() of a huge string
    elif isinstance(value, bool):
        return "expected a positive integer"
    elif isinstance(value, int):
        v = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        v = MAX_TOKENS + 1 if value > MAX_TOKENS else int(value)
    else:
        return "expected a positive integer"
    if v < 1:
        return "expected a positive integer"
    if v > MAX_TOKENS:
        return f"expected at most {MAX_TOKENS} tokens"
    return v


def _depth_ok(value: Any, limit: int = 50) -> bool:
    """Whether ``value`` nests lists/dicts at most ``limit`` deep (iterative: no recursion)."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, list):
            stack.extend((x, d + 1) for x in v[:100])
        elif isinstance(v, dict):
            stack.extend((x, d + 1) for x in list(v.values())[:100])
    return True


class _Rows:
    """Collects valid rows and applies the bad-row policy."""

    def __init__(self, path: str, skip: bool) -> None:
        self.path = path
        self.skip = skip
        self.times: list[float] = []
        self.prompts: list[int] = []
        self.outputs: list[int] = []
        self.lines: list[int] = []
        self.skipped = 0
        self.reasons: list[str] = []

    def bad(self, line_no: int, problem: str) -> None:
        msg = f"{self.path}:{line_no}: {problem}"
        if not self.skip:
            raise TraceError(msg)
        self.skipped += 1
        if len(self.reasons) < MAX_SKIP_REASONS:
            self.reasons.append(msg)


def _read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        if not p.is_absolute():  # the standard trace configs name ../shared/... from a checkout
            raise TraceError(
                f"{p}: file not found (relative to the working directory {Path.cwd()}; the standard "
                f"trace configs expect a disagg-gym checkout with ../shared beside it: run from its "
                f"root, or set workload.trace_path)"
            ) from None
        raise TraceError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise TraceError(f"{p}: is a directory, not a trace file") from None
    except OSError as exc:
        raise TraceError(f"{p}: cannot read ({exc.strerror})") from None


def _decode(p: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{p}: not a text file (invalid UTF-8 at byte {exc.start})") from None


def detect_format(
    path: str | Path, first_line: str, line_no: int = 1
) -> Literal["azure", "mooncake"]:
    """``"azure"`` or ``"mooncake"`` from the first non-empty line, else ``TraceError``."""
    line = first_line.strip()
    if line.startswith("{"):
        return "mooncake"
    if "TIMESTAMP" in (c.strip() for c in line.split(",")):
        return "azure"
    raise TraceError(
        f"{path}:{line_no}: unknown trace format: expected an Azure CSV header with columns "
        f"{','.join(AZURE_COLUMNS)} or Mooncake JSON lines starting with '{{' "
        f"(got {_fmt_value(line)})"
    )


#: Traces kept parsed per process (``load_trace``'s memo, most recently used last).
_MEMO_SIZE = 4
_memo: dict[tuple[str, str, str], tuple[bytes, TraceData]] = {}  # key -> (the bytes parsed, the result)


def load_trace(
    path: str | Path,
    fmt: Literal["auto", "azure", "mooncake"] = "auto",
    on_bad_row: Literal["fail", "skip"] = "fail",
) -> TraceData:
    """Loads and validates a trace file.

    The result is remembered for the process (the last few files, keyed on the path as given
    and the arguments, with the bytes parsed), so an env that rebuilds its workload on every
    ``reset`` reads and compares the file but parses it once, not per episode. A
    ``TraceData`` is immutable (read-only arrays, tuples), so sharing it cannot leak state
    between runs; a file changed on disk is parsed again.

    Args:
        path: An Azure CSV or Mooncake JSONL file.
        fmt: ``"auto"`` (detect from the content), ``"azure"`` or ``"mooncake"``.
        on_bad_row: ``"fail"`` raises on the first bad row; ``"skip"`` drops bad rows and
            counts them (``TraceData.skipped_rows`` and the first few ``skip_reasons``).

    Returns:
        The rows as numpy arrays, times relative to the first valid row.

    Raises:
        TraceError: one line naming the file, line number, column or field and bad value.
    """
    p = Path(path)
    if fmt not in ("auto", "azure", "mooncake"):
        raise TraceError(f"{p}: trace format must be 'auto', 'azure' or 'mooncake' (got {fmt!r})")
    if on_bad_row not in ("fail", "skip"):
        raise TraceError(f"{p}: on_bad_row must be 'fail' or 'skip' (got {on_bad_row!r})")
    raw = _read_bytes(p)
    # Checked against the content itself (the bytes parsed are kept): a file rewritten within
    # one tick of the file system's clock (same size and mtime) is still parsed again. No digest:
    # a fresh process never hits, and comparing bytes is cheaper than hashing them.
    key = (str(p), fmt, on_bad_row)
    hit = _memo.pop(key, None)
    data = hit[1] if hit is not None and hit[0] == raw else _parse(p, raw, fmt, on_bad_row == "skip")
    _memo[key] = (raw, data)
    while len(_memo) > _MEMO_SIZE:
        del _memo[next(iter(_memo))]
    return data


def _parse(p: Path, raw: bytes, fmt: Literal["auto", "azure", "mooncake"], skip: bool) -> TraceData:
    """``load_trace`` without the memo."""
    lines = _decode(p, raw).splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise TraceError(f"{p}: empty trace (no rows)")
    kind = detect_format(p, lines[first], first + 1) if fmt == "auto" else fmt
    rows = _Rows(str(p), skip)
    if kind == "azure":
        hashes = None
        _parse_azure(lines, first, rows)
    else:
        hashes = _parse_mooncake(lines, rows)
    if not rows.times:
        if rows.skipped:
            raise TraceError(
                f"{p}: no valid rows ({rows.skipped} skipped; first: {rows.reasons[0]})"
            )
        raise TraceError(f"{p}: empty trace (no rows)")
    t = np.asarray(rows.times, dtype=np.float64)
    prompt = np.asarray(rows.prompts, dtype=np.int64)
    output = np.asarray(rows.outputs, dtype=np.int64)
    line_no = np.asarray(rows.lines, dtype=np.int64)
    for arr in (t, prompt, output, line_no):
        arr.flags.writeable = False
    return TraceData(
        path=str(p),
        fmt=kind,
        arrival_s=t,
        prompt_tokens=prompt,
        output_tokens=output,
        hash_ids=hashes,
        skipped_rows=rows.skipped,
        skip_reasons=tuple(rows.reasons),
        line_numbers=line_no,
    )


# ------------------------------------------------------------------------------------- Azure
def _azure_ns(text: str, days: dict[str, int]) -> int | None:
    """Nanoseconds since 0001-01-01 for ``YYYY-MM-DD HH:MM:SS[.f{1,9}]``, else None.

    Integer arithmetic keeps all 7 fractional digits exact (a float of the absolute epoch
    time would lose the last one).
    """
    t = text.strip()
    if len(t) < 19 or t[10] not in " T" or t[13] != ":" or t[16] != ":":
        return None
    date = t[:10]
    ordinal = days.get(date)
    if ordinal is None:
        if date[4] != "-" or date[7] != "-":
            return None
        try:
            ordinal = _dt.date.fromisoformat(date).toordinal()
        except ValueError:
            return None
        days[date] = ordinal
    hh, mm, ss = t[11:13], t[14:16], t[17:19]
    if not (hh.isdigit() and mm.isdigit() and ss.isdigit()):
        return None
    h, m, s = int(hh), int(mm), int(ss)
    if h > 23 or m > 59 or s > 59:
        return None
    frac_ns = 0
    if len(t) > 19:
        frac = t[20:]
        if t[19] != "." or not (1 <= len(frac) <= 9 and frac.isascii() and frac.isdigit()):
            return None
        frac_ns = int(frac.ljust(9, "0"))
    return ((ordinal * 24 + h) * 60 + m) * 60 * 1_000_000_000 + s * 1_000_000_000 + frac_ns


def _parse_azure(lines: list[str], header_idx: int, rows: _Rows) -> None:
    header = lines[header_idx]
    cols = [c.strip() for c in header.split(",")]
    for col in AZURE_COLUMNS:
        if col not in cols:
            raise TraceError(
                f"{rows.path}:{header_idx + 1}: header lacks column '{col}' "
                f"(got header {_fmt_value(header.strip())})"
            )
    n_cols = len(cols)
    i_ts, i_p, i_o = (cols.index(c) for c in AZURE_COLUMNS)
    days: dict[str, int] = {}
    t0: int | None = None
    prev_ns = -1
    prev_text = ""
    for no in range(header_idx + 2, len(lines) + 1):
        line = lines[no - 1]
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != n_cols:
            rows.bad(
                no,
                f"expected {n_cols} fields like the header (got {len(parts)}: "
                f"{_fmt_value(line.strip())})",
            )
            continue
        ns = _azure_ns(parts[i_ts], days)
        if ns is None:
            rows.bad(
                no,
                f"column 'TIMESTAMP': expected a time like '{_AZURE_TS_EXAMPLE}' "
                f"(got {_fmt_value(parts[i_ts].strip())})",
            )
            continue
        prompt = _token_count(parts[i_p])
        if isinstance(prompt, str):
            rows.bad(no, f"column 'ContextTokens': {prompt} (got {_fmt_value(parts[i_p].strip())})")
            continue
        output = _token_count(parts[i_o])
        if isinstance(output, str):
            rows.bad(no, f"column 'GeneratedTokens': {output} (got {_fmt_value(parts[i_o].strip())})")
            continue
        if ns < prev_ns:
            rows.bad(
                no,
                f"column 'TIMESTAMP': timestamp '{parts[i_ts].strip()}' is earlier than "
                f"the previous row's '{prev_text}'",
            )
            continue
        if t0 is None:
            t0 = ns
        prev_ns, prev_text = ns, parts[i_ts].strip()
        rows.times.append((ns - t0) / 1e9)
        rows.lines.append(no)
        rows.prompts.append(prompt)
        rows.outputs.append(output)


# ---------------------------------------------------------------------------------- Mooncake
def _parse_mooncake(lines: list[str], rows: _Rows) -> tuple[tuple[int, ...], ...] | None:
    hashes: list[tuple[int, ...]] = []
    any_hash = False
    t0: float | None = None
    prev: float | None = None
    prev_raw: Any = None
    loads = json.loads
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # json.loads minus its wrappers
    for no, line in enumerate(lines, 1):
        obj = None
        if line[:1] == "{":
            # A row that scans as one JSON value with nothing but whitespace after it is what
            # json.loads returns for it; anything else goes through json.loads (its errors).
            try:
                obj, end = scan(line, 0)
                if end != len(line) and line[end:].strip(_JSON_WS):
                    obj = None
            except (StopIteration, ValueError, RecursionError):
                obj = None
        if obj is None:
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except json.JSONDecodeError as exc:
                rows.bad(
                    no,
                    f"invalid JSON: {exc.msg} at column {exc.colno} (got {_fmt_value(line.strip())})",
                )
                continue
            except RecursionError:  # json's C decoder recurses once per nesting level
                rows.bad(no, f"invalid JSON: nested too deeply (got {_fmt_value(line.strip())})")
                continue
            except ValueError as exc:  # e.g. an integer literal over Python's digit limit
                rows.bad(no, f"invalid JSON: {exc} (got {_fmt_value(line.strip())})")
                continue
        valid = False
        if type(obj) is dict:
            # Fast path for a well-formed row (same checks as below, in C-level calls where
            # possible; anything else takes the slow path, which names the problem).
            raw_ts: Any = obj.get("timestamp")
            prompt: Any = obj.get("input_length")
            output: Any = obj.get("output_length")
            hid: Any = obj.get("hash_ids")
            tt = type(raw_ts)
            if (
                (tt is int or tt is float) and 0 <= raw_ts <= _MAX_FLOAT
                and type(prompt) is int and 1 <= prompt <= MAX_TOKENS
                and type(output) is int and 1 <= output <= MAX_TOKENS
                and (hid is None or (type(hid) is list and (not hid or set(map(type, hid)) == _INT_ONLY)))
            ):
                ts = float(raw_ts)
                valid = prev is None or ts >= prev
        if not valid:
            checked = _checked_mooncake_row(rows, no, obj, prev, prev_raw)
            if checked is None:
                continue
            ts, prompt, output, hid = checked
            raw_ts = obj["timestamp"]
        if t0 is None:
            t0 = ts
        prev, prev_raw = ts, raw_ts
        rows.times.append((ts - t0) / 1000.0)
        rows.lines.append(no)
        rows.prompts.append(prompt)
        rows.outputs.append(output)
        if hid is not None:
            any_hash = True
            hashes.append(tuple(hid))
        else:
            hashes.append(())
    return tuple(hashes) if any_hash else None


def _checked_mooncake_row(
    rows: Any, no: int, obj: Any, prev: float | None, prev_raw: Any
) -> tuple[float, int, int, list[int] | None] | None:
    """The slow path of a Mooncake row: ``(timestamp, prompt, output, hash_ids)``, or ``None``
    after recording one line naming the first problem (``rows.bad``).
    """
    if not isinstance(obj, dict):
        rows.bad(no, f"expected a JSON object (got {_fmt_value(obj)})")
        return None
    missing = [k for k in MOONCAKE_FIELDS if k not in obj]
    if missing:
        rows.bad(no, f"missing field '{missing[0]}' (got fields: {', '.join(map(str, obj))})")
        return None
    raw_ts = obj["timestamp"]
    if (
        isinstance(raw_ts, bool)
        or not isinstance(raw_ts, (int, float))
        or not 0 <= raw_ts <= _MAX_FLOAT  # not isfinite(): an int like 10**400 overflows it
    ):
        rows.bad(
            no,
            f"field 'timestamp': expected a non-negative number of milliseconds "
            f"(got {_fmt_value(raw_ts)})",
        )
        return None
    counts: list[int] = []
    for key in ("input_length", "output_length"):
        raw = obj[key]
        n = "expected a positive integer" if isinstance(raw, str) else _token_count(raw)
        if isinstance(n, str):
            rows.bad(no, f"field '{key}': {n} (got {_fmt_value(raw)})")
            return None
        counts.append(n)
    prompt, output = counts
    hid = obj.get("hash_ids")
    if hid is not None and (
        not isinstance(hid, list) or not all(type(h) is int for h in hid)
    ):  # type(), not isinstance: bool is no hash id
        rows.bad(no, f"field 'hash_ids': expected a list of integers (got {_fmt_value(hid)})")
        return None
    ts = float(raw_ts)
    if prev is not None and ts < prev:
        rows.bad(
            no,
            f"field 'timestamp': timestamp {raw_ts!r} is earlier than the previous "
            f"row's {prev_raw!r}",
        )
        return None
    return ts, prompt, output, hid
