"""Measured-table cost models: table readers (one registry) and the interpolating instance cost.

A latency table lists measured prefill and decode iteration times over a grid (and, optionally,
KV-transfer times). :class:`TableCost` implements the simulator's per-instance cost interface
(:class:`disagg_gym.hardware.cost.InstanceCost`) from such a table:

* **prefill** is piecewise linear in *prompt length* ``l`` along each tabulated number of *batch
  tokens* ``T = sum(l_i)`` and linear in ``T`` between tabulated batch-token counts (so measured
  grids of batch x prompt length, whose points share ``T`` = batch x length, interpolate between
  real measurements; the time is bilinear in ``(T, l)`` like the physics: GEMMs ~ ``T``,
  causal attention ~ ``T*l``). A batch of unequal prompts (or a
  chunk over cached context ``c_i``) is placed at the *attention-equivalent length*
  ``l_eff = sum(l_i * (l_i + 2*c_i)) / T``: a uniform batch of ``T`` tokens at ``l_eff`` does the
  same GEMM work and the same causal-attention work (``sum(l_i^2 + 2*l_i*c_i)``).
* **decode** is piecewise linear in *total context tokens* ``S`` along each tabulated batch size
  ``B`` and linear in ``B`` between tabulated batch sizes; :meth:`TableCost.decode_coeffs` returns
  the local affine segment ``(a, b)`` containing ``S``.
* **outside the grid** (beyond a curve's ends, or beyond the smallest/largest tabulated length or
  batch) the time is the table's edge value scaled by the calibrated roofline's shape:
  ``t(x) = t(edge) * R(x) / R(edge)`` with ``R`` the roofline cost of the same GPU, model and
  ``tp``. The first such query of each phase emits one :class:`TableExtrapolationWarning`.

Memory (KV capacity) and power come from the roofline's catalog figures; a table only replaces
latencies. Formats (``docs/calibration.md`` has examples) are registered in :data:`TABLE_FORMATS`
and detected from the file: the project's profile JSON lines (``../shared/data/profiles``),
splitwise-sim's ``perf_model.csv`` and a plain CSV (``phase,batch,length,ms``).
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from disagg_gym.hardware.cost import InstanceCost, prefill_totals
from disagg_gym.registry import Registry

__all__ = [
    "MONOTONE_TOLERANCE",
    "TABLE_FORMATS",
    "LatencyTable",
    "TableCost",
    "TableError",
    "TableExtrapolationWarning",
    "TableRow",
    "detect_format",
    "read_table",
]

# A time may fall by at most this fraction along a curve before the table is rejected as
# non-monotone: repeated measurements of one configuration scatter by a few percent (splitwise-sim's
# own perf_model.csv dips by up to 7% between neighbouring decode contexts).
MONOTONE_TOLERANCE = 0.10
MIN_POINTS = 2


class TableError(ValueError):
    """A latency table that cannot be used; the message is one line naming the file."""


class TableExtrapolationWarning(UserWarning):
    """A query fell outside a table's grid and was extrapolated with the roofline's shape."""


@dataclass(frozen=True, slots=True)
class TableRow:
    """One measured iteration or transfer.

    Attributes:
        phase: ``prefill``, ``decode`` or ``kv_transfer``.
        batch: Prompts (prefill) or sequences (decode) in the iteration; 1 for transfers.
        length: Tokens per prompt (prefill), context tokens per sequence (decode) or bytes moved
            (kv_transfer).
        seconds: Measured time.
        gpu: GPU the row was measured on, as written in the file (``None``: unspecified).
        model: Model name as written in the file (``None``: unspecified).
        tp: Tensor-parallel degree (``None``: unspecified).
        line: 1-based line of the file (for error messages).
    """

    phase: str
    batch: int
    length: float
    seconds: float
    gpu: str | None = None
    model: str | None = None
    tp: int | None = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class LatencyTable:
    """The rows of one table file and the format they were read with."""

    path: str
    format: str
    rows: tuple[TableRow, ...]


@dataclass(frozen=True, slots=True)
class _Format:
    sniff: Callable[[Path, str], bool]
    read: Callable[[Path, str], list[TableRow]]
    description: str


TABLE_FORMATS: Registry[_Format] = Registry("latency table format")


def _fail(path: Path | str, msg: str) -> TableError:
    return TableError(f"{path}: {msg}")


def _num(path: Path, line: int, col: str, raw: Any, *, integer: bool = False) -> float:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise _fail(path, f"line {line}: column {col!r} is not a number (got {raw!r})") from None
    if not math.isfinite(v):
        raise _fail(path, f"line {line}: column {col!r} is not finite (got {raw!r})")
    if integer and v != int(v):
        raise _fail(path, f"line {line}: column {col!r} must be an integer (got {raw!r})")
    return v


def _tp(path: Path, line: int, col: str, raw: Any) -> int:
    """A tensor-parallel degree: an integer >= 1."""
    v = _num(path, line, col, raw, integer=True)
    if v < 1:
        raise _fail(path, f"line {line}: column {col!r} must be >= 1 (got {raw!r})")
    return int(v)


def _csv_rows(path: Path, text: str, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in required if c not in header]
    if missing:
        raise _fail(
            path,
            f"missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} "
            f"(header has: {', '.join(header) or 'nothing'})",
        )
    out = []
    for i, rec in enumerate(reader, start=2):
        clean = {(k or "").strip(): (v or "").strip() for k, v in rec.items() if k is not None}
        if not any(clean.values()):
            continue
        out.append((i, clean))
    return out


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


# ---- format: the project's profile JSON lines ----------------------------------------------
PROFILE_REQUIRED = {
    "prefill": ("batch", "prompt_len", "ms"),
    "decode": ("batch", "context_len", "ms"),
}
# Records the measurement scripts write beside the iterations, skipped: the model and the
# machine (model, setup, env), link copies (copy, paged) and collectives (allreduce).
PROFILE_SKIPPED = ("model", "setup", "env", "copy", "paged", "allreduce")


def _sniff_profile(path: Path, text: str) -> bool:
    return _first_line(text).startswith("{")


def _read_profile(path: Path, text: str) -> list[TableRow]:
    rows: list[TableRow] = []
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(path, f"line {no}: invalid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise _fail(path, f"line {no}: expected a JSON object")
        kind = rec.get("kind")
        if kind in PROFILE_REQUIRED:
            missing = [k for k in PROFILE_REQUIRED[kind] if k not in rec]
            if missing:
                raise _fail(path, f"line {no}: {kind} record lacks {', '.join(missing)}")
            length_key = "prompt_len" if kind == "prefill" else "context_len"
            batch = _num(path, no, "batch", rec["batch"], integer=True)
            length = _num(path, no, length_key, rec[length_key])
            ms = _num(path, no, "ms", rec["ms"])
        elif kind in PROFILE_SKIPPED:
            # model / setup records carry no iteration time; copy / paged records describe
            # links (several paths per file), which scripts/calibrate.py fits separately.
            continue
        else:  # a typo ("decoding") would silently drop a measurement
            raise _fail(path, f"line {no}: unknown kind {kind!r} (expected prefill or decode, or one "
                              f"of the records skipped: {', '.join(PROFILE_SKIPPED)})")
        tp = rec.get("tp", 1)  # the project's profiles are single-GPU unless they say otherwise
        rows.append(
            TableRow(
                phase=kind,
                batch=int(batch),
                length=length,
                seconds=ms * 1e-3,
                gpu=str(rec["gpu"]) if rec.get("gpu") is not None else None,
                model=str(rec["model"]) if rec.get("model") is not None else None,
                tp=_tp(path, no, "tp", tp) if tp is not None else None,
                line=no,
            )
        )
    return rows


TABLE_FORMATS.register("profile_jsonl")(
    _Format(
        _sniff_profile,
        _read_profile,
        "JSON lines as in ../shared/data/profiles: kind prefill (batch, prompt_len, ms) and kind "
        "decode (batch, context_len, ms); optional gpu, model, tp (default 1)",
    )
)


# ---- format: splitwise-sim perf_model.csv --------------------------------------------------
SPLITWISE_REQUIRED = (
    "model",
    "hardware",
    "tensor_parallel",
    "prompt_size",
    "batch_size",
    "token_size",
    "prompt_time",
    "token_time",
)


def _sniff_splitwise(path: Path, text: str) -> bool:
    head = {h.strip() for h in _first_line(text).split(",")}
    return "prompt_time" in head or "token_time" in head


def _read_splitwise(path: Path, text: str) -> list[TableRow]:
    rows: list[TableRow] = []
    for no, rec in _csv_rows(path, text, SPLITWISE_REQUIRED):
        prompt = _num(path, no, "prompt_size", rec["prompt_size"], integer=True)
        batch = int(_num(path, no, "batch_size", rec["batch_size"], integer=True))
        tokens = _num(path, no, "token_size", rec["token_size"], integer=True)
        tp = _tp(path, no, "tensor_parallel", rec["tensor_parallel"])
        common: dict[str, Any] = {
            "gpu": rec["hardware"], "model": rec["model"], "tp": tp, "line": no, "batch": batch
        }
        rows.append(
            TableRow(
                phase="prefill",
                length=prompt,
                seconds=_num(path, no, "prompt_time", rec["prompt_time"]) * 1e-3,
                **common,
            )
        )
        # token_time is the mean time per generated token over token_size iterations, whose
        # per-sequence context grows from prompt_size to prompt_size + token_size - 1.
        rows.append(
            TableRow(
                phase="decode",
                length=prompt + (tokens - 1) / 2,
                seconds=_num(path, no, "token_time", rec["token_time"]) * 1e-3,
                **common,
            )
        )
    return rows


TABLE_FORMATS.register("splitwise_csv")(
    _Format(
        _sniff_splitwise,
        _read_splitwise,
        "splitwise-sim data/perf_model.csv: model, hardware, tensor_parallel, prompt_size, "
        "batch_size, token_size, prompt_time (ms), token_time (ms per generated token)",
    )
)


# ---- format: plain CSV ---------------------------------------------------------------------
PLAIN_REQUIRED = ("phase", "batch", "length", "ms")
PHASES = ("prefill", "decode", "kv_transfer")


def _sniff_plain(path: Path, text: str) -> bool:
    head = {h.strip() for h in _first_line(text).split(",")}
    return "phase" in head


def _read_plain(path: Path, text: str) -> list[TableRow]:
    rows: list[TableRow] = []
    for no, rec in _csv_rows(path, text, PLAIN_REQUIRED):
        phase = rec["phase"].lower()
        if phase not in PHASES:
            raise _fail(
                path, f"line {no}: phase must be one of {', '.join(PHASES)} (got {rec['phase']!r})"
            )
        batch = rec["batch"] or "1"
        tp = rec.get("tp") or None
        rows.append(
            TableRow(
                phase=phase,
                batch=int(_num(path, no, "batch", batch, integer=True)),
                length=_num(path, no, "length", rec["length"]),
                seconds=_num(path, no, "ms", rec["ms"]) * 1e-3,
                gpu=rec.get("gpu") or None,
                model=rec.get("model") or None,
                tp=_tp(path, no, "tp", tp) if tp is not None else None,
                line=no,
            )
        )
    return rows


TABLE_FORMATS.register("csv")(
    _Format(
        _sniff_plain,
        _read_plain,
        "plain CSV with columns phase (prefill|decode|kv_transfer), batch, length (prompt tokens "
        "per prompt | context tokens per sequence | bytes), ms; optional gpu, model, tp",
    )
)


def detect_format(path: Path, text: str) -> str:
    """Name of the registered format that recognises the file's first line.

    Raises:
        TableError: If no format or more than one does.
    """
    hits = [name for name in TABLE_FORMATS.names() if TABLE_FORMATS.get(name).sniff(path, text)]
    if len(hits) != 1:
        raise _fail(
            path,
            "unrecognised table format (expected profile JSON lines, a splitwise-sim "
            "perf_model.csv or a CSV with columns phase,batch,length,ms; "
            f"first line: {_first_line(text)[:60]!r})",
        )
    return hits[0]


def read_table(path: str | Path, fmt: str | None = None) -> LatencyTable:
    """Reads a table file (format detected unless ``fmt`` names one in :data:`TABLE_FORMATS`).

    Raises:
        TableError: On a missing file, an unknown format or a malformed row.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise _fail(p, "table file not found") from None
    except OSError as exc:
        raise _fail(p, f"cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise _fail(p, f"not a text file (invalid UTF-8 at byte {exc.start})") from None
    if not text.strip():
        raise _fail(p, "empty table")
    name = fmt or detect_format(p, text)
    try:
        reader = TABLE_FORMATS.get(name)
    except ValueError as exc:
        raise _fail(p, str(exc)) from None
    return LatencyTable(path=str(p), format=name, rows=tuple(reader.read(p, text)))


# ---- matching rows to the instance ---------------------------------------------------------
# Names other tools use for our catalog GPUs (compared after normalisation).
GPU_ALIASES: Mapping[str, str] = {
    "nvidiah10080gbhbm3": "h100-sxm",
    "h10080gb": "h100-sxm",
    "h100": "h100-sxm",
    "a10080gb": "a100-80gb",
    "nvidiaa10080gbpcie": "a100-80gb",
    "nvidiaa100sxm480gb": "a100-80gb",
    "h200": "h200",
    "nvidiah200": "h200",  # torch.cuda.get_device_name() on an H200 (docs/data/tp)
}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _same_gpu(written: str, gpu: str) -> bool:
    w = _norm(written)
    return w == _norm(gpu) or GPU_ALIASES.get(w) == gpu


def _same_model(written: str, model: str) -> bool:
    return _norm(written) == _norm(model)


def select_rows(table: LatencyTable, gpu: str, model: str, tp: int) -> list[TableRow]:
    """The rows of ``table`` that apply to this GPU, model and tensor-parallel degree.

    A row without a gpu/model/tp value applies to any; names are compared ignoring case and
    punctuation, with :data:`GPU_ALIASES` for other tools' GPU names.

    Raises:
        TableError: If no row applies.
    """
    combos = sorted({(r.gpu, r.model, r.tp) for r in table.rows}, key=str)
    out = [
        r
        for r in table.rows
        if (r.gpu is None or _same_gpu(r.gpu, gpu))
        and (r.model is None or _same_model(r.model, model))
        and (r.tp is None or r.tp == tp)
    ]
    if not out:
        have = "; ".join(f"{g or '*'}/{m or '*'}/tp{t or '*'}" for g, m, t in combos[:8])
        raise _fail(table.path, f"no rows for {gpu}/{model}/tp{tp} (table has: {have})")
    return out


# ---- piecewise-linear surface --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Curve:
    key: float
    xs: tuple[float, ...]
    ts: tuple[float, ...]


def _check_monotone(path: str, phase: str, xs: Sequence[float], ts: Sequence[float], xname: str,
                    where: str) -> None:
    for i in range(1, len(xs)):
        if ts[i] < ts[i - 1] * (1.0 - MONOTONE_TOLERANCE):
            raise _fail(
                path,
                f"{phase} time is not monotone: it falls from {ts[i - 1] * 1e3:.4g} ms to "
                f"{ts[i] * 1e3:.4g} ms between {xname} {xs[i - 1]:g} and {xs[i]:g} at {where} "
                f"(more than {MONOTONE_TOLERANCE:.0%})",
            )


def _build_curves(
    path: str,
    phase: str,
    points: Sequence[tuple[float, float, float, int]],
    xname: str,
    kname: str,
    monotone_in: str,
) -> tuple[_Curve, ...]:
    """Groups ``(key, x, seconds, line)`` points into curves; repeated points keep their median.

    Times must not fall (beyond the tolerance) in the coordinate where more of it is more work:
    ``monotone_in="x"`` along each curve, ``"key"`` along the keys at a fixed ``x``.
    """
    if len({(k, x) for k, x, _, _ in points}) < MIN_POINTS:
        raise _fail(
            path,
            f"too few {phase} points: need at least {MIN_POINTS} distinct ({kname}, {xname}) "
            f"points (got {len({(k, x) for k, x, _, _ in points})})",
        )
    for _k, _x, t, line in points:
        if not t > 0:
            raise _fail(path, f"line {line}: {phase} time must be positive (got {t * 1e3:g} ms)")
    grouped: dict[float, dict[float, list[float]]] = {}
    for k, x, t, _ in points:
        grouped.setdefault(k, {}).setdefault(x, []).append(t)
    curves = []
    for k in sorted(grouped):
        xs = sorted(grouped[k])
        ts = [statistics.median(grouped[k][x]) for x in xs]
        if monotone_in == "x":
            _check_monotone(path, phase, xs, ts, xname, f"{kname} {k:g}")
        curves.append(_Curve(float(k), tuple(xs), tuple(ts)))
    if monotone_in == "key":
        by_x: dict[float, list[tuple[float, float]]] = {}
        for c in curves:
            for x, t in zip(c.xs, c.ts):
                by_x.setdefault(x, []).append((c.key, t))
        for x in sorted(by_x):
            pts = by_x[x]  # curves are sorted by key
            _check_monotone(path, phase, [k for k, _ in pts], [t for _, t in pts], kname, f"{xname} {x:g}")
    return tuple(curves)


class _Surface:
    """Piecewise-linear interpolation over curves ``t_k(x)``, linear in ``k`` between curves.

    Outside a curve's ``x`` range, or outside the range of keys, the edge value is scaled by the
    roofline shape ``R(x, k)``.
    """

    __slots__ = ("_keys", "curves", "roofline", "on_extrapolate")

    def __init__(
        self,
        curves: tuple[_Curve, ...],
        roofline: Callable[[float, float], float],
        on_extrapolate: Callable[[], None],
    ) -> None:
        self.curves = curves
        self._keys = [c.key for c in curves]
        self.roofline = roofline
        self.on_extrapolate = on_extrapolate

    def _curve_at(self, c: _Curve, x: float, key: float) -> float:
        xs, ts = c.xs, c.ts
        if x < xs[0] or x > xs[-1]:
            self.on_extrapolate()
            edge = xs[0] if x < xs[0] else xs[-1]
            t_edge = ts[0] if x < xs[0] else ts[-1]
            return t_edge * self.roofline(x, key) / self.roofline(edge, key)
        i = bisect.bisect_left(xs, x)
        if xs[i] == x:
            return ts[i]
        x0, x1, t0, t1 = xs[i - 1], xs[i], ts[i - 1], ts[i]
        return t0 + (t1 - t0) * (x - x0) / (x1 - x0)

    def value(self, x: float, key: float) -> float:
        """Interpolated (or extrapolated) time at ``(x, key)``."""
        keys = self._keys
        j = bisect.bisect_left(keys, key)
        if j < len(keys) and keys[j] == key:
            return self._curve_at(self.curves[j], x, key)
        if j == 0 or j == len(keys):
            self.on_extrapolate()
            c = self.curves[0 if j == 0 else -1]
            return self._curve_at(c, x, c.key) * self.roofline(x, key) / self.roofline(x, c.key)
        c0, c1 = self.curves[j - 1], self.curves[j]
        w = (key - c0.key) / (c1.key - c0.key)
        return (1.0 - w) * self._curve_at(c0, x, key) + w * self._curve_at(c1, x, key)

    def common_range(self, key: float) -> tuple[float, float]:
        """The ``x`` range where every curve that ``value(., key)`` combines has data."""
        keys = self._keys
        j = bisect.bisect_left(keys, key)
        used = (
            [self.curves[j]]
            if j < len(keys) and keys[j] == key
            else self.curves[max(j - 1, 0) : j + 1]
        )
        lo, hi = max(c.xs[0] for c in used), min(c.xs[-1] for c in used)
        return (lo, hi) if lo <= hi else (min(lo, hi), max(lo, hi))

    def knots(self, key: float) -> list[float]:
        """Breakpoints in ``x`` of the curves that ``value(., key)`` combines."""
        keys = self._keys
        j = bisect.bisect_left(keys, key)
        if j < len(keys) and keys[j] == key:
            return list(self.curves[j].xs)
        used = self.curves[max(j - 1, 0) : j + 1]
        return sorted({x for c in used for x in c.xs})


class TableCost:
    """Per-instance cost from a measured latency table, with the roofline for the rest.

    Implements the interface of :class:`~disagg_gym.hardware.cost.InstanceCost` (latencies from
    the table, memory and power from the roofline's catalog figures). Build it with
    :func:`disagg_gym.hardware.build_cost`.

    Args:
        table: The table (all of its rows; those for this instance are selected).
        roofline: The calibrated roofline of the same GPU, model and ``tp``; supplies memory,
            power and the extrapolation shape.

    Raises:
        TableError: If the table has no rows for the instance, too few points, a non-positive
            time or a curve that is not monotone.
    """

    context_dependent = True  # decode_coeffs depends on the batch's context (local segment)

    __slots__ = (
        "_decode",
        "_prefill",
        "_transfer",
        "_warned",
        "decode_power_w",
        "gpu",
        "idle_power_w",
        "kv_bytes_per_token",
        "model",
        "path",
        "prefill_power_w",
        "roofline",
        "tp",
        "weight_bytes_per_gpu",
    )

    def __init__(self, table: LatencyTable, roofline: InstanceCost) -> None:
        self.path = table.path
        self.roofline = roofline
        self.gpu = roofline.gpu
        self.model = roofline.model
        self.tp = roofline.tp
        self.kv_bytes_per_token = roofline.kv_bytes_per_token
        self.weight_bytes_per_gpu = roofline.weight_bytes_per_gpu
        self.prefill_power_w = roofline.prefill_power_w
        self.decode_power_w = roofline.decode_power_w
        self.idle_power_w = roofline.idle_power_w
        self._warned: set[str] = set()
        rows = select_rows(table, roofline.gpu.name, roofline.model.name, roofline.tp)
        for r in rows:
            if r.batch < 1 or not r.length > 0:
                raise _fail(
                    table.path,
                    f"line {r.line}: {r.phase} batch and length must be positive "
                    f"(got batch {r.batch}, length {r.length:g})",
                )
        pre = [
            (r.batch * r.length, r.length, r.seconds, r.line) for r in rows if r.phase == "prefill"
        ]
        dec = [
            (float(r.batch), r.batch * r.length, r.seconds, r.line)
            for r in rows
            if r.phase == "decode"
        ]
        self._prefill = _Surface(
            # More batch tokens at one prompt length is more work. At fixed batch tokens, time
            # may fall with prompt length in real stacks (splitwise-sim's A100 tp8 rows: 8 x 512
            # prompts 767.6 ms, 1 x 4096 661.2 ms), so that direction is not checked.
            _build_curves(
                table.path, "prefill", pre, "prompt length", "batch tokens", monotone_in="key"
            ),
            self._roofline_prefill,
            lambda: self._warn("prefill"),
        )
        self._decode = _Surface(
            _build_curves(table.path, "decode", dec, "context tokens", "batch", monotone_in="x"),
            self._roofline_decode,
            lambda: self._warn("decode"),
        )
        xfer = sorted((r.length, r.seconds, r.line) for r in rows if r.phase == "kv_transfer")
        self._transfer: tuple[_Curve, ...] | None = (
            _build_curves(
                table.path,
                "kv_transfer",
                [(0.0, b, s, line) for b, s, line in xfer],
                "bytes",
                "curve",
                monotone_in="x",
            )
            if xfer
            else None
        )

    def __repr__(self) -> str:
        """Short description."""
        return (
            f"TableCost({self.path!r}, gpu={self.gpu.name!r}, model={self.model.name!r}, "
            f"tp={self.tp})"
        )

    def _warn(self, phase: str) -> None:
        if phase in self._warned:
            return
        self._warned.add(phase)
        warnings.warn(
            f"{self.path}: a {phase} query lies outside the table's grid; extrapolating with "
            "the roofline shape fitted to the table's edge (warned once per table and phase)",
            TableExtrapolationWarning,
            stacklevel=4,
        )

    # ---- roofline shapes used for extrapolation ------------------------------------------
    def _roofline_prefill(self, length: float, tokens: float) -> float:
        """Roofline time of ``tokens`` batch tokens at attention-equivalent length ``length``.

        ``ceil(tokens / length)`` equal chunks, each over the cached context that gives it the
        same attention work as a prompt of ``length`` tokens.
        """
        n = max(1, math.ceil(tokens / length - 1e-9))
        chunk = tokens / n
        cached = max(0.0, (length - chunk) / 2)
        return self.roofline.prefill_s([chunk] * n, [cached] * n)

    def _roofline_decode(self, context: float, batch: float) -> float:
        a, b = self.roofline.decode_coeffs(max(1, round(batch)))
        return a + b * context

    # ---- memory --------------------------------------------------------------------------
    def kv_capacity_tokens(self, reserve_frac: float = 0.1) -> int:
        """KV-cache tokens the instance can hold (the roofline's memory model)."""
        return self.roofline.kv_capacity_tokens(reserve_frac)

    # ---- latency -------------------------------------------------------------------------
    def prefill_s(
        self, prompt_lens: Sequence[float], cached_lens: Sequence[float] | None = None
    ) -> float:
        """Duration of one prefill iteration.

        Args:
            prompt_lens: New tokens of each prompt (or chunk) in the batch (each >= 1).
            cached_lens: Tokens of context already in KV before each chunk (default: none).

        Returns:
            Seconds, interpolated at the attention-equivalent length ``sum(l * (l + 2*c)) / T``
            and batch tokens ``T = sum(prompt_lens)``.

        Raises:
            ValueError: On an empty batch, a length < 1 or a negative cached length.
        """
        tokens, pairs, _ = prefill_totals(prompt_lens, cached_lens)
        work = pairs - tokens  # sum of l * (l + 2c)
        return self._prefill.value(work / tokens, tokens)

    def decode_coeffs(self, batch: int, context_tokens: float | None = None) -> tuple[float, float]:
        """Local affine cost ``(a, b)`` of one decode iteration of ``batch`` sequences.

        ``a + b*S`` equals the table's time at ``S = context_tokens`` and follows the
        piecewise-linear segment containing it (the segment to the right at a breakpoint).
        Without ``context_tokens`` (a core that does not track it) the segment is the
        least-squares line through the table's breakpoints for this batch, over the context
        range where the neighbouring tabulated batches both have data.

        Args:
            batch: Sequences in the iteration (>= 1).
            context_tokens: Total context tokens ``S`` of the batch.

        Returns:
            ``(a_s, b_s)``: fixed seconds and seconds per context token.

        Raises:
            ValueError: If ``batch`` < 1 or ``context_tokens`` < 0.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"decode batch must be a positive int (got {batch!r})")
        surf = self._decode
        knots = surf.knots(float(batch))
        if context_tokens is None:
            lo, hi = surf.common_range(float(batch))
            xs = [x for x in knots if lo <= x <= hi]
            if len(xs) < 2:
                xs = [lo, hi] if hi > lo else [lo, 2 * lo]
            ts = [surf.value(x, float(batch)) for x in xs]
            mx, mt = sum(xs) / len(xs), sum(ts) / len(ts)
            var = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (t - mt) for x, t in zip(xs, ts)) / var
            return mt - slope * mx, slope
        s = float(context_tokens)
        if s < 0:
            raise ValueError(f"context_tokens must be >= 0 (got {context_tokens!r})")
        t = surf.value(s, float(batch))
        i = bisect.bisect_right(knots, s)
        if 0 < i < len(knots):
            lo, hi = knots[i - 1], knots[i]
        elif i == 0:
            lo, hi = s, knots[0]
            if hi - lo < 1e-9:
                hi = lo + max(lo, 1.0)
        else:
            lo, hi = s, s + max(s, 1.0)
        slope = (surf.value(hi, float(batch)) - surf.value(lo, float(batch))) / (hi - lo)
        return t - slope * s, slope

    def decode_segment_end(self, batch: int, context_tokens: float) -> float:
        """Where the segment of :meth:`decode_coeffs` at ``context_tokens`` ends: the next
        breakpoint of the table's curve for ``batch`` above it (``inf`` past the last one, where
        the extrapolation is linear). The decode core re-reads the coefficients there.
        """
        knots = self._decode.knots(float(batch))
        i = bisect.bisect_right(knots, float(context_tokens))
        return knots[i] if i < len(knots) else math.inf

    def decode_s(self, context_lens: Sequence[float]) -> float:
        """Duration of one decode iteration over sequences holding these contexts."""
        if len(context_lens) == 0:
            raise ValueError(f"decode needs at least one sequence (got {list(context_lens)!r})")
        return self._decode.value(float(sum(context_lens)), float(len(context_lens)))

    def kv_transfer_s(self, nbytes: float) -> float | None:
        """Measured time to move ``nbytes`` (``None`` when the table has no transfer rows).

        Piecewise linear in bytes; beyond the ends the nearest segment is extended.
        """
        if self._transfer is None:
            return None
        c = self._transfer[0]
        xs, ts = c.xs, c.ts
        i = min(max(bisect.bisect_left(xs, nbytes), 1), len(xs) - 1)
        x0, x1, t0, t1 = xs[i - 1], xs[i], ts[i - 1], ts[i]
        return max(0.0, t0 + (t1 - t0) * (nbytes - x0) / (x1 - x0))
