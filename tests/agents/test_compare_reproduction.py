"""scripts/compare_reproduction.py against hand-made leaderboard folders: what is the same, what
differs (named), what is missing, tolerances, and bad input as one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "leaderboard" / "results.csv"


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_reproduction.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


def _zip(path: Path, weights: bytes, start_time: int, address: str, n_steps: int = 1024) -> None:
    """A model.zip shaped like SB3's: weights, a JSON ``data`` record, the machine's description."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"start_time": start_time, "tensorboard_log": f"/tmp/run{start_time}/tb", "n_steps": n_steps,
            "policy_class": {"__init__": f"<function Policy.__init__ at {address}>"},
            "ep_info_buffer": {":serialized:": f"wall-clock {start_time}"}}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", json.dumps(data))
        z.writestr("policy.pth", weights)
        z.writestr("system_info.txt", f"- OS: Linux build {start_time}\n")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders that differ only where two bit-identical reproductions differ."""
    a, b = tmp_path / "new", tmp_path / "old"
    a.mkdir()
    lines = COMMITTED.read_text(encoding="utf-8").splitlines()[:4]  # header + 3 rows of one cell
    (a / "results.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (a / "tuned.yaml").write_text(
        "small-route:\n  jsq+ttft_guard:\n    metric: goodput_rps\n    params: {alpha: 0.5}\n    score: 12.25\n"
        "    seeds: [20000, 20001]\n    candidates:\n    - params: {alpha: 0.5}\n      score: 12.25\n"
        "    - params: {alpha: 1.0}\n      score: 11.123456789\n", encoding="utf-8")
    (a / "bounds_cache.json").write_text(json.dumps({"format": 1, "code": "x", "bounds": {"k1": 10.5, "k2": 3.25}}),
                                         encoding="utf-8")
    shutil.copytree(a, b)
    _zip(a / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip", b"\x01\x02weights", 111, "0x7fa31c3c2c00")
    _zip(b / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip", b"\x01\x02weights", 222, "0x7f11647744a0")
    return a, b


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_bit_identical_reproduction_is_the_same(pair: tuple[Path, Path]) -> None:
    a, b = pair
    r = _run(a, "--against", b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "results: 3 in both: 3 the same, 0 differ" in r.stdout
    assert "tuned: 1 in both: 1 the same" in r.stdout
    assert "bounds: 2 in both: 2 the same" in r.stdout
    assert "checkpoints: 1 in both: 1 the same" in r.stdout  # start time, log path, addresses, OS differ
    assert r.stdout.rstrip().endswith("same")


def test_a_kpi_that_differs_is_named(pair: tuple[Path, Path]) -> None:
    a, b = pair
    row = (a / "results.csv").read_text(encoding="utf-8").splitlines()[2]
    fields = row.split(",")
    header = (a / "results.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    col = header.index("ttft_p90_s")
    fields[col] = "9.5"
    _edit(a / "results.csv", row, ",".join(fields))
    r = _run(a, "--against", b)
    assert r.returncode == 1
    assert "results: 3 in both: 2 the same, 1 differ" in r.stdout
    assert f"eval_seed {fields[header.index('eval_seed')]}: ttft_p90_s '9.5' vs " in r.stdout
    assert r.stdout.rstrip().endswith("differs: results")


def test_weights_that_differ_are_named_and_metadata_is_not(pair: tuple[Path, Path]) -> None:
    a, b = pair
    _zip(a / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip", b"\x01\x03weights", 111, "0x1")
    r = _run(a, "--against", b)
    assert r.returncode == 1
    assert "SmallRoute-v3/seed0/model.zip: policy.pth" in r.stdout
    assert "start_time" not in r.stdout and "system_info" not in r.stdout


def test_sb3_data_record_and_every_checkpoint_folder_are_compared(pair: tuple[Path, Path]) -> None:
    a, b = pair
    _zip(a / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip", b"\x01\x02weights", 111, "0x1", n_steps=2048)
    _zip(a / "checkpoints-ablation-x" / "SmallRoute-v3" / "seed1" / "model.zip", b"w", 1, "0x1")
    _zip(b / "checkpoints-ablation-x" / "SmallRoute-v3" / "seed1" / "model.zip", b"v", 2, "0x2")
    r = _run(a, "--against", b)
    assert r.returncode == 1
    assert "checkpoints: 2 in both: 0 the same, 2 differ" in r.stdout
    assert "checkpoints/SmallRoute-v3/seed0/model.zip: data.n_steps" in r.stdout
    assert "checkpoints-ablation-x/SmallRoute-v3/seed1/model.zip: policy.pth" in r.stdout
    r = _run(a, "--against", b, "--no-checkpoints")
    assert r.returncode == 0 and "checkpoints" not in r.stdout


def test_model_sha_is_not_compared_but_a_duplicate_row_is_a_difference(pair: tuple[Path, Path]) -> None:
    a, b = pair
    lines = (a / "results.csv").read_text(encoding="utf-8").splitlines()
    col = lines[0].split(",").index("model_sha256")
    fields = lines[1].split(",")
    fields[col] = "f" * 64
    _edit(a / "results.csv", lines[1], ",".join(fields))
    assert _run(a, "--against", b).returncode == 0  # another zip of the same weights
    fields = lines[1].split(",")
    fields[lines[0].split(",").index("score")] = "1.5"  # a differing copy of row 1, before it
    (a / "results.csv").write_text("\n".join([lines[0], ",".join(fields), *lines[1:]]) + "\n", encoding="utf-8")
    r = _run(a, "--against", b)
    assert r.returncode == 1
    assert "appears more than once in" in r.stdout


def test_a_learned_rows_checkpoint_is_compared_below_its_folder(pair: tuple[Path, Path]) -> None:
    a, b = pair
    lines = (a / "results.csv").read_text(encoding="utf-8").splitlines()
    col = lines[0].split(",").index("policy")

    def set_policy(folder: Path, value: str) -> None:
        fields = lines[1].split(",")
        fields[col] = value
        (folder / "results.csv").write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n",
                                            encoding="utf-8")

    set_policy(a, f"sb3:{a}/checkpoints/SmallRoute-v3/seed0/model.zip")  # a reproduction: absolute
    set_policy(b, "sb3:leaderboard/checkpoints/SmallRoute-v3/seed0/model.zip")  # committed: relative
    assert _run(a, "--against", b).returncode == 0
    set_policy(b, "sb3:leaderboard/checkpoints/SmallRoute-v3/seed1/model.zip")
    r = _run(a, "--against", b)
    assert r.returncode == 1 and "policy 'sb3:" in r.stdout


def test_tuned_choice_and_types_are_compared(pair: tuple[Path, Path]) -> None:
    a, b = pair
    _edit(a / "tuned.yaml", "    score: 12.25\n", "    score: 12.5\n")
    r = _run(a, "--against", b)
    assert r.returncode == 1 and "small-route jsq+ttft_guard: score: numbers differ by up to 0.02 (relative)" in r.stdout
    _edit(a / "tuned.yaml", "    score: 12.5\n", "    score: 12.25\n")
    _edit(a / "tuned.yaml", "params: {alpha: 1.0}", "params: {alpha: true}")
    _edit(b / "tuned.yaml", "params: {alpha: 1.0}", "params: {alpha: 1}")
    r = _run(a, "--against", b, "--rtol", "0.1")
    assert r.returncode == 1 and 'candidates [{"params": {"alpha": 0.5}' in r.stdout  # true is not 1
    _edit(b / "tuned.yaml", "score: 11.123456789", "score: .nan")
    assert _run(a, "--against", b).returncode == 1  # no traceback on NaN against a number
    _edit(a / "tuned.yaml", "score: 11.123456789", "score: .nan")
    _edit(a / "tuned.yaml", "params: {alpha: true}", "params: {alpha: 1}")
    assert _run(a, "--against", b).returncode == 0  # NaN on both sides is the same


def test_bounds_csv_and_the_simulator_digest(pair: tuple[Path, Path]) -> None:
    a, b = pair
    head = "config,metric,upper_bound,method\n"
    (a / "bounds.csv").write_text(head + "small-route,goodput_rps,50.5,fluid\n", encoding="utf-8")
    (b / "bounds.csv").write_text(head + "small-route,goodput_rps,50.25,fluid\n", encoding="utf-8")
    _edit(b / "bounds_cache.json", '"code": "x"', '"code": "y"')
    r = _run(a, "--against", b)
    assert r.returncode == 1
    assert "bounds.csv: 1 in both: 0 the same, 1 differ" in r.stdout
    assert "note: the two caches were computed by different simulator source" in r.stdout
    assert "bounds: 2 in both: 2 the same" in r.stdout


def test_missing_rows_are_listed_and_may_be_allowed(pair: tuple[Path, Path]) -> None:
    a, b = pair
    lines = (a / "results.csv").read_text(encoding="utf-8").splitlines()
    (a / "results.csv").write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    (a / "bounds_cache.json").unlink()
    r = _run(a, "--against", b)
    assert r.returncode == 1
    assert "results: 2 in both: 2 the same, 0 differ; 0 only in" in r.stdout
    assert "1 only in" in r.stdout and "eval_seed 10002" in r.stdout
    assert "bounds: 0 in both" in r.stdout and "2 only in" in r.stdout
    assert _run(a, "--against", b, "--allow-missing").returncode == 0


def test_rtol_allows_rounding_only(pair: tuple[Path, Path]) -> None:
    a, b = pair
    _edit(a / "tuned.yaml", "score: 11.123456789", "score: 11.1235")  # rounded to 6 digits
    r = _run(a, "--against", b)
    assert r.returncode == 1
    assert "small-route jsq+ttft_guard: candidates: numbers differ by up to 3.88e-06 (relative)" in r.stdout
    assert _run(a, "--against", b, "--rtol", "1e-5").returncode == 0
    assert _run(a, "--against", b, "--rtol", "1e-6").returncode == 1


def test_json_report(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    _edit(a / "bounds_cache.json", "10.5", "10.75")
    out = tmp_path / "cmp.json"
    assert _run(a, "--against", b, "--json", out).returncode == 1
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["same"] is False
    assert rep["parts"]["bounds"]["differ"] == ["key k1: 10.75 vs 10.5"]
    assert rep["parts"]["results"] == {"compared": 3, "differ": [], "only_new": [], "only_old": [], "notes": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("{missing}",), "DIR '{missing}': folder not found"),
        (("{file}",), "DIR '{file}': not a folder"),
        (("{new}", "--against", "{missing}"), "--against '{missing}': folder not found"),
        (("{new}", "--rtol", "2"), "--rtol: expected a number in [0, 1) (got 2.0)"),
        (("{new}", "--rtol", "nan"), "--rtol: expected a number in [0, 1) (got nan)"),
        (("{new}", "--json", "{new}"), "--json '{new}': is a directory, expected a file path"),
        (("{empty}", "--against", "{empty}"), "nothing to compare"),
        (("{new}", "--against", "{badzip}"), "model.zip: not a readable model zip"),
        (("{new}", "--against", "{torn}"), "model.zip: not a readable model zip"),
    ],
)
def test_bad_input_is_one_line(pair: tuple[Path, Path], tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    a, b = pair
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "badzip"
    shutil.copytree(b, bad)
    (bad / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip").write_bytes(b"not a zip")
    torn = tmp_path / "torn"  # a zip whose deflated member is corrupt
    shutil.copytree(b, torn)
    z = torn / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip"
    raw = bytearray(z.read_bytes())
    at = raw.index(b"PK\x03\x04") + 40
    raw[at : at + 8] = b"\xff" * 8
    z.write_bytes(bytes(raw))
    (tmp_path / "file").write_text("x")
    names = {"missing": str(tmp_path / "nope"), "file": str(tmp_path / "file"), "new": str(a), "empty": str(empty),
             "badzip": str(bad), "torn": str(torn)}
    r = _run(*(x.format(**names) for x in args))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert message.format(**names) in r.stderr
