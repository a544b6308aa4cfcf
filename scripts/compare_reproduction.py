"""Compares a reproduction of the leaderboard with the committed one (or with another reproduction).

``scripts/reproduce_leaderboard.sh --out DIR`` re-tunes, retrains and re-benchmarks everything
from scratch. This script says whether DIR came out the same as ``--against`` (default: the
repository's ``leaderboard/``), part by part:

* **results**: every row of ``results.csv``, matched by cell and evaluation seed (config, agent,
  training seed, overrides, split, eval seed): every column equal (score, KPIs, params, and the
  package, SB3 and torch versions) but ``model_sha256``: a checkpoint's zip also holds its
  training start time and log folder, so it differs between two bit-identical trainings (the
  weights are compared below instead). A learned row's ``policy`` names its checkpoint by path:
  only the path below the results folder is compared (``checkpoints/<Env>/seed<k>/model.zip``),
  since the two live in different folders. A key that appears twice in one file is a difference;
* **tuned**: every search of ``tuned.yaml`` (chosen params, mean validation score, seeds and
  every candidate's score);
* **bounds**: every bound of ``bounds_cache.json`` (what the tables show; keyed by the
  resolved scenario, metric, seeds and horizon; a note says when the two caches were computed
  by different simulator source, their ``code`` digest), and every ``(config, metric)`` of
  ``bounds.csv`` (bound and method) where both sides have one (``disagg-gym bounds`` writes it,
  the reproduction does not);
* **checkpoints**: every ``model.zip`` under ``checkpoints*/``: the weights, the optimizer state
  and the torch variables byte for byte, and SB3's ``data`` record except the fields that hold
  wall-clock times and paths (``start_time``, ``tensorboard_log``, and ``ep_info_buffer`` as a
  whole: its entries carry seconds since the start beside the episode returns) and with memory
  addresses (``at 0x7f...`` in the class descriptions SB3 stores) blanked; ``system_info.txt``
  (the OS build) is not compared.

Numbers of rows, tuned searches and bounds compare exactly unless ``--rtol`` allows a relative
difference (for a reproduction on another CPU, where a learned agent's forward pass may round
differently; such a run's checkpoints differ in their bytes too: ``--no-checkpoints`` leaves
them out). Values of different types differ (``true`` is not ``1``). A part absent on both
sides is skipped; what one side has and the other lacks is listed (``--allow-missing`` does not
count it as a difference: a reproduction still running).

Usage::

    python scripts/compare_reproduction.py runs/lb-v2                      # against leaderboard/
    python scripts/compare_reproduction.py runs/lb-v2 --against runs/lb-v1 --json cmp.json

Exit status: 0 when everything compared is the same, 1 when something differs or is missing,
2 on bad input (one line).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import lzma
import math
import re
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from disagg_gym.errors import UserError
from disagg_gym.io import atomic_write_json, check_input_path, check_output_file, run_script
from disagg_gym_agents.leaderboard.results import read_results, row_key
from disagg_gym_agents.tuning import read_tuned

ROOT = Path(__file__).resolve().parents[1]
NOT_COMPARED_COLUMNS = frozenset({"model_sha256"})
VOLATILE_DATA_KEYS = frozenset({"start_time", "tensorboard_log", "ep_info_buffer"})
NOT_COMPARED_MEMBERS = frozenset({"system_info.txt"})
SHOWN = 10  # differences listed per part
ADDRESS = re.compile(rb" at 0x[0-9a-fA-F]+")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _Num:
    """Stands for any number in :func:`structure` (so that ``0`` and ``False`` stay apart)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Num)

    __hash__ = None  # type: ignore[assignment]


def numbers(x: Any) -> list[float]:
    """The numeric leaves of ``x`` in order (dict values in key order)."""
    if _number(x):
        return [float(x)]
    if isinstance(x, dict):
        return [n for k in sorted(x, key=str) for n in numbers(x[k])]
    if isinstance(x, list):
        return [n for v in x for n in numbers(v)]
    return []


def structure(x: Any) -> Any:
    """``x`` with every number replaced by one marker (two values that differ only in their
    numbers are equal here)."""
    if isinstance(x, dict):
        return {k: structure(v) for k, v in x.items()}
    if isinstance(x, list):
        return [structure(v) for v in x]
    return _Num() if _number(x) else (type(x), x)


def _rel(x: float, y: float) -> float:
    scale = max(abs(x), abs(y))
    return abs(x - y) / scale if scale > 0 and math.isfinite(scale) else math.inf


def describe(key: str, a: Any, b: Any) -> str:
    """One phrase for a differing value: the largest relative difference where only numbers differ."""
    if structure(a) == structure(b):
        rel = max((_rel(x, y) for x, y in zip(numbers(a), numbers(b), strict=True) if x != y), default=0.0)
        return f"{key}: numbers differ by up to {rel:.3g} (relative)"
    return f"{key} {json.dumps(a, default=str)[:80]} vs {json.dumps(b, default=str)[:80]}"


def same(a: Any, b: Any, rtol: float) -> bool:
    """``a`` equals ``b``: same structure, same types (ints and floats are both numbers; ``True``
    is not ``1``), numbers within relative tolerance ``rtol`` (CSV texts compare as texts, or as
    numbers within ``rtol`` when both parse as numbers).
    """
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k], rtol) for k in a))
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(same(x, y, rtol) for x, y in zip(a, b, strict=True)))
    if _number(a) and _number(b):
        if a == b or (math.isnan(a) and math.isnan(b)):  # a NaN score on both sides is the same
            return True
        return rtol > 0 and math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)
    if type(a) is not type(b):
        return False
    if a == b:
        return True
    if rtol > 0 and isinstance(a, str):
        try:
            x, y = float(a), float(b)
        except ValueError:
            return False
        return math.isclose(x, y, rel_tol=rtol, abs_tol=0.0)
    return False


class Part:
    """What one part's comparison found."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.compared = 0
        self.differ: list[str] = []
        self.only_new: list[str] = []
        self.only_old: list[str] = []
        self.notes: list[str] = []

    def failed(self, allow_missing: bool) -> bool:
        return bool(self.differ) or (not allow_missing and bool(self.only_new or self.only_old))

    def line(self, new: str, old: str) -> str:
        return (f"{self.name}: {self.compared:,} in both: {self.compared - len(self.differ):,} the same, "
                f"{len(self.differ):,} differ; {len(self.only_new):,} only in {new}, "
                f"{len(self.only_old):,} only in {old}")

    def details(self, new: str, old: str) -> list[str]:
        out = [f"  note: {n}" for n in self.notes]
        for label, items in (("differs", self.differ), (f"only in {new}", self.only_new),
                             (f"only in {old}", self.only_old)):
            for item in items[:SHOWN]:
                out.append(f"  {label}: {item}")
            if len(items) > SHOWN:
                out.append(f"  ... and {len(items) - SHOWN:,} more {label}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"compared": self.compared, "differ": self.differ, "only_new": self.only_new,
                "only_old": self.only_old, "notes": self.notes}


def _match(part: Part, new: dict[Any, Any], old: dict[Any, Any], label: Any, diff: Any) -> None:
    """Fills ``part`` from two keyed maps; ``diff(a, b)`` describes a difference or returns ``""``."""
    for k in sorted(new.keys() - old.keys(), key=str):
        part.only_new.append(label(k))
    for k in sorted(old.keys() - new.keys(), key=str):
        part.only_old.append(label(k))
    for k in sorted(new.keys() & old.keys(), key=str):
        part.compared += 1
        why = diff(new[k], old[k])
        if why:
            part.differ.append(f"{label(k)}: {why}")


def _where_free(column: str, value: str) -> str:
    """A learned row's ``policy`` (``sb3:<folder>/checkpoints*/<Env>/seed<k>/model.zip``) without
    the folder it lives in; any other value as it is."""
    if column != "policy" or not value.startswith("sb3:"):
        return value
    parts = Path(value[4:]).parts
    if len(parts) >= 4 and parts[-4].startswith("checkpoints"):
        return "sb3:" + "/".join(parts[-4:])
    return value


def compare_results(new: Path, old: Path, rtol: float) -> Part | None:
    if not (new.exists() or old.exists()):
        return None
    part = Part("results")

    def rows(p: Path) -> dict[tuple[Any, ...], dict[str, str]]:
        try:
            found = read_results(p)
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            raise UserError(f"{p}: not a readable results file ({exc})") from None
        out: dict[tuple[Any, ...], dict[str, str]] = {}
        for r in found:
            k = row_key(r)
            if k in out:
                part.differ.append(f"{label(k)}: appears more than once in {p}")
            out[k] = r
        return out

    def label(k: tuple[Any, ...]) -> str:
        config, agent, seed, overrides, split, ev = k
        return (f"{config} {agent}" + (f" train_seed {seed}" if seed else "")
                + (f" overrides {overrides}" if overrides != "{}" else "") + f" split {split} eval_seed {ev}")

    def diff(a: dict[str, str], b: dict[str, str]) -> str:
        cols = [c for c in sorted(a.keys() | b.keys()) if c not in NOT_COMPARED_COLUMNS
                and not same(_where_free(c, a.get(c, "")), _where_free(c, b.get(c, "")), rtol)]
        return ", ".join(f"{c} {a.get(c, '')!r} vs {b.get(c, '')!r}" for c in cols[:4]) + (
            f" (+{len(cols) - 4} columns)" if len(cols) > 4 else "")

    _match(part, rows(new), rows(old), label, diff)
    return part


def compare_tuned(new: Path, old: Path, rtol: float) -> Part | None:
    if not (new.exists() or old.exists()):
        return None
    part = Part("tuned")

    def entries(p: Path) -> dict[tuple[str, str], Any]:  # (YAML: a repeated key is an error)
        return {(c, pol): e for c, pols in read_tuned(p).items() for pol, e in pols.items()}

    def diff(a: dict[str, Any], b: dict[str, Any]) -> str:
        keys = [k for k in sorted(a.keys() | b.keys()) if not same(a.get(k), b.get(k), rtol)]
        return ", ".join(describe(k, a.get(k), b.get(k)) for k in keys)

    _match(part, entries(new), entries(old), lambda k: f"{k[0]} {k[1]}", diff)
    return part


def compare_bounds_cache(new: Path, old: Path, rtol: float) -> Part | None:
    if not (new.exists() or old.exists()):
        return None
    part = Part("bounds")

    codes: list[Any] = []

    def bounds(p: Path) -> dict[str, Any]:
        if not p.exists():
            return {}
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            out = d["bounds"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{p}: not a bounds cache ({type(exc).__name__}: {exc})") from None
        if not isinstance(out, dict):
            raise UserError(f"{p}: not a bounds cache ('bounds' is not a mapping)")
        codes.append(d.get("code"))
        return out

    def diff(a: Any, b: Any) -> str:
        return "" if same(a, b, rtol) else f"{a!r} vs {b!r}"

    _match(part, bounds(new), bounds(old), lambda k: f"key {k[:16]}", diff)
    if len(codes) == 2 and codes[0] != codes[1]:
        part.notes.append(f"the two caches were computed by different simulator source (code digest "
                          f"{str(codes[0])[:12]} vs {str(codes[1])[:12]}); the bounds are compared all the same")
    return part


def compare_bounds_csv(new: Path, old: Path, rtol: float) -> Part | None:
    if not (new.exists() and old.exists()):
        return None
    part = Part("bounds.csv")

    def bounds(p: Path) -> dict[tuple[str, str], tuple[str, str]]:
        try:
            reader = csv.DictReader(io.StringIO(p.read_text(encoding="utf-8")))
            out = {(r["config"], r["metric"]): (r["upper_bound"], r["method"]) for r in reader}
        except (KeyError, TypeError, UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"{p}: not a bounds file (config,metric,upper_bound,method): {exc}") from None
        return out

    def diff(a: tuple[str, str], b: tuple[str, str]) -> str:
        return "" if same(a[0], b[0], rtol) and a[1] == b[1] else f"{a} vs {b}"

    _match(part, bounds(new), bounds(old), lambda k: f"{k[0]} {k[1]}", diff)
    return part


def _members(p: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(p) as z:
            return {n: z.read(n) for n in z.namelist() if n not in NOT_COMPARED_MEMBERS}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, NotImplementedError,
            zlib.error, lzma.LZMAError) as exc:  # what zipfile raises for torn or corrupt members
        raise UserError(f"{p}: not a readable model zip ({type(exc).__name__}: {exc})") from None


def _data(raw: bytes, p: Path) -> dict[str, Any]:
    try:
        d = json.loads(ADDRESS.sub(b" at 0x", raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{p}: its 'data' member is not SB3's JSON record ({exc})") from None
    return {k: v for k, v in d.items() if k not in VOLATILE_DATA_KEYS} if isinstance(d, dict) else {"": d}


def compare_checkpoints(new: Path, old: Path) -> Part | None:
    def zips(root: Path) -> dict[str, Path]:
        return {str(p.relative_to(root)): p for d in sorted(root.glob("checkpoints*")) if d.is_dir()
                for p in d.glob("*/seed*/model.zip")}

    a, b = zips(new), zips(old)
    if not (a or b):
        return None
    part = Part("checkpoints")

    def diff(pa: Path, pb: Path) -> str:
        ma, mb = _members(pa), _members(pb)
        bad = [n for n in sorted(ma.keys() | mb.keys()) if n != "data" and ma.get(n) != mb.get(n)]
        if "data" in ma or "data" in mb:
            da = _data(ma["data"], pa) if "data" in ma else {}
            db = _data(mb["data"], pb) if "data" in mb else {}
            bad += [f"data.{k}" for k in sorted(da.keys() | db.keys()) if da.get(k) != db.get(k)]
        return ", ".join(bad)

    _match(part, a, b, str, diff)
    return part


p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("dir", type=Path, help="the reproduction's --out folder")
p.add_argument("--against", type=Path, help="the folder to compare with (default: the repository's leaderboard/)")
p.add_argument("--rtol", type=float, default=0.0,
               help="relative difference allowed between numbers (default 0: exact)")
p.add_argument("--allow-missing", action="store_true",
               help="what only one side has is listed but is not a difference (a reproduction still running)")
p.add_argument("--no-checkpoints", action="store_true",
               help="leave the checkpoints out (a reproduction on another CPU: their bytes differ)")
p.add_argument("--json", type=Path, help="also write every difference to this JSON file")


def main(args: argparse.Namespace) -> int:
    if not (0 <= args.rtol < 1):
        raise UserError(f"--rtol: expected a number in [0, 1) (got {args.rtol!r})")
    against = args.against if args.against is not None else ROOT / "leaderboard"
    for flag, folder in (("DIR", args.dir), ("--against", against)):
        check_input_path(folder, flag, "folder")
        if not folder.is_dir():
            raise UserError(f"{flag} {str(folder)!r}: not a folder")
    if args.json:
        check_output_file(args.json, "--json")
    new, old = args.dir, against
    parts = [x for x in (
        compare_results(new / "results.csv", old / "results.csv", args.rtol),
        compare_tuned(new / "tuned.yaml", old / "tuned.yaml", args.rtol),
        compare_bounds_cache(new / "bounds_cache.json", old / "bounds_cache.json", args.rtol),
        compare_bounds_csv(new / "bounds.csv", old / "bounds.csv", args.rtol),
        None if args.no_checkpoints else compare_checkpoints(new, old),
    ) if x is not None]
    if not parts:
        raise UserError(f"nothing to compare: neither {new} nor {old} holds results.csv, tuned.yaml, "
                        "bounds_cache.json or checkpoints*/")
    names = (str(new), str(old) if args.against is not None else "leaderboard/")
    for part in parts:
        print(part.line(*names))
        for line in part.details(*names):
            print(line)
    failed = [x.name for x in parts if x.failed(args.allow_missing)]
    print("same" if not failed else f"differs: {', '.join(failed)}")
    if args.json:
        atomic_write_json(args.json, {"dir": str(new), "against": str(old), "rtol": args.rtol,
                                      "parts": {x.name: x.as_dict() for x in parts}, "same": not failed})
    return 1 if failed else 0


if __name__ == "__main__":
    run_script("compare_reproduction.py", main, p.parse_args())
