"""Chrome-trace timeline (#13): exact JSON from hook calls, truncation, toy-cluster oracles, CLI."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

import pytest

from disagg_gym.cli import main
from disagg_gym.cluster.cluster import Cluster
from disagg_gym.cluster.policies import ROUTERS
from disagg_gym.metrics.chrome_trace import ChromeTrace, TimelineObserver
from disagg_gym.metrics.recorder import Recorder
from disagg_gym.sim.engine import Engine
from disagg_gym.testing.scenarios import ArraySource, LinearCost, toy_cluster_config
from disagg_gym.types import Role

SPAN_NAMES = {"prefill", "decode", "transfer", "drain", "switch", "swap"}


def _meta(pid: int, name: str, role: str, lanes: dict[int, tuple[str, int]]) -> tuple[list[dict], list[dict]]:
    out = [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}},
        {"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}},
        {"name": "process_labels", "ph": "M", "pid": pid, "tid": 0, "args": {"labels": f"role={role}"}},
    ]
    return out, [
        m
        for tid, (label, sort) in sorted(lanes.items())
        for m in (
            {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": label}},
            {"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": sort}},
        )
    ]


def test_hook_calls_give_exact_json() -> None:
    tr = ChromeTrace()
    observer: TimelineObserver = tr  # structural: ChromeTrace implements the protocol
    observer.on_instance(0, "h100-sxm", 2, "prefill")
    observer.on_instance(1, "a100-80gb", 1, "decode")
    observer.on_span(0, "prefill", 0.5, 0.75, {"rids": [0, 1], "tokens": 300})
    observer.on_span(0, "transfer", 0.75, 0.875, {"rids": [0], "tokens": 100})
    observer.on_span(0, "transfer", 0.75, 1.0, {"rids": [1], "tokens": 200})  # overlaps: 2nd lane
    observer.on_span(1, "decode", 1.0, 1.25, {"rids": [0, 1], "tokens": 40})
    observer.on_span(1, "drain", 1.25, 1.5, {"rids": [], "tokens": 0})
    observer.on_span(1, "switch", 1.5, 6.5, {"rids": [], "tokens": 0})
    observer.on_instant(1, "role", 6.5, {"from": "decode", "to": "prefill"})
    p0, t0 = _meta(0, "#0 h100-sxm tp=2 prefill", "prefill", {1: ("prefill", 1000), 3: ("transfer", 3000), 13: ("transfer 2", 3001)})
    p1, t1 = _meta(1, "#1 a100-80gb tp=1 decode", "prefill", {2: ("decode", 2000), 5: ("drain/switch", 5000)})
    assert tr.to_json() == {
        "traceEvents": p0 + p1 + t0 + t1 + [
            {"name": "prefill", "ph": "X", "ts": 500000.0, "dur": 250000.0, "pid": 0, "tid": 1, "args": {"rids": [0, 1], "tokens": 300}},
            {"name": "transfer", "ph": "X", "ts": 750000.0, "dur": 125000.0, "pid": 0, "tid": 3, "args": {"rids": [0], "tokens": 100}},
            {"name": "transfer", "ph": "X", "ts": 750000.0, "dur": 250000.0, "pid": 0, "tid": 13, "args": {"rids": [1], "tokens": 200}},
            {"name": "decode", "ph": "X", "ts": 1000000.0, "dur": 250000.0, "pid": 1, "tid": 2, "args": {"rids": [0, 1], "tokens": 40}},
            {"name": "drain", "ph": "X", "ts": 1250000.0, "dur": 250000.0, "pid": 1, "tid": 5, "args": {"rids": [], "tokens": 0}},
            {"name": "switch", "ph": "X", "ts": 1500000.0, "dur": 5000000.0, "pid": 1, "tid": 5, "args": {"rids": [], "tokens": 0}},
            {"name": "role", "ph": "i", "s": "p", "ts": 6500000.0, "pid": 1, "tid": 5, "args": {"from": "decode", "to": "prefill"}},
        ],
        "displayTimeUnit": "ms",
        "otherData": {"dropped_events": 0, "max_events": 200000},
    }


def test_microseconds_rounded_to_the_nanosecond() -> None:
    tr = ChromeTrace()
    tr.on_span(0, "prefill", 0.1, 0.3, {"rids": [7], "tokens": 5})
    tr.on_span(0, "prefill", 1.0000000004, 1.0000000004, {"rids": [8], "tokens": 5})
    ev = [e for e in tr.to_json()["traceEvents"] if e["ph"] == "X"]
    assert (ev[0]["ts"], ev[0]["dur"]) == (100000.0, 200000.0)  # not 199999.99999999997
    assert (ev[1]["ts"], ev[1]["dur"]) == (1000000.0, 0.0)


def test_disjoint_spans_reuse_the_first_lane() -> None:
    tr = ChromeTrace()
    # Recorded out of start order (transfers are recorded when they finish).
    for start, end in [(0.0, 3.0), (1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (2.5, 2.75)]:
        tr.on_span(0, "transfer", start, end, {"rids": [], "tokens": 0})
    ev = [e for e in tr.to_json()["traceEvents"] if e["ph"] == "X"]
    # Sorted by start: [0,3]->lane 0, [1,2]->1, [2,4]->1 (free at 2), [2.5,2.75]->2, [3,5]->0.
    assert [e["tid"] for e in ev] == [3, 13, 13, 3, 23]


def test_max_events_keeps_the_first_and_counts_the_rest() -> None:
    tr = ChromeTrace(max_events=3)
    tr.on_instance(0, "h100-sxm", 1, "prefill")
    tr.on_instance(1, "h100-sxm", 1, "decode")  # metadata is not counted
    tr.on_span(0, "prefill", 0.0, 1.0, {"rids": [0], "tokens": 10})
    tr.on_instant(1, "role", 1.0, {"from": "decode", "to": "prefill"})
    tr.on_span(0, "prefill", 1.0, 2.0, {"rids": [1], "tokens": 10})
    tr.on_span(0, "prefill", 2.0, 3.0, {"rids": [2], "tokens": 10})
    tr.on_instant(1, "role", 3.0, {"from": "prefill", "to": "decode"})  # dropped, label still follows
    doc = tr.to_json()
    kept = [e for e in doc["traceEvents"] if e["ph"] != "M"]
    assert [(e["name"], e["args"].get("rids")) for e in kept] == [("prefill", [0]), ("role", None), ("prefill", [1])]
    assert doc["otherData"] == {"dropped_events": 2, "max_events": 3}
    assert tr.dropped == 2 and tr.recorded == 3
    labels = {e["pid"]: e["args"]["labels"] for e in doc["traceEvents"] if e["name"] == "process_labels"}
    names = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    assert labels == {0: "role=prefill", 1: "role=decode"}
    assert names == {0: "#0 h100-sxm tp=1 prefill", 1: "#1 h100-sxm tp=1 decode"}


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_events_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="max_events must be a positive integer"):
        ChromeTrace(max_events=bad)  # type: ignore[arg-type]


def test_write_is_valid_json_atomic_and_honours_umask(tmp_path: Path) -> None:
    tr = ChromeTrace()
    tr.on_instance(0, "h100-sxm", 1, "prefill")
    tr.on_span(0, "prefill", 0.0, 0.5, {"rids": [0], "tokens": 3})
    old = os.umask(0o027)
    try:
        path = tr.write(tmp_path / "t.json")
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == tr.to_json()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temp file left behind


def test_write_rejects_non_finite_times(tmp_path: Path) -> None:
    tr = ChromeTrace()
    tr.on_span(3, "decode", 0.0, float("inf"), {"rids": [], "tokens": 0})
    with pytest.raises(ValueError, match="non-finite dur in event 'decode' of instance 3"):
        tr.write(tmp_path / "t.json")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------- the current core
def _toy(source: ArraySource, cost: LinearCost, n_decode: int = 1, **kw: object) -> tuple[Cluster, Recorder, ChromeTrace, Engine]:
    eng = Engine()
    rec = Recorder(keep_records=True, keep_requests=True)
    tr = ChromeTrace()
    cl = Cluster(toy_cluster_config(n_decode=n_decode, **kw), eng, source, observer=rec, router=ROUTERS.get("round_robin")(),
                 cost_factory=lambda gpu, tp: cost, timeline=tr)
    cl.start()
    return cl, rec, tr, eng


def _spans(tr: ChromeTrace, name: str, pid: int | None = None) -> list[dict]:
    return [e for e in tr.to_json()["traceEvents"] if e["name"] == name and e["ph"] != "M" and pid in (None, e["pid"])]


def test_lone_request_spans_match_its_lifecycle() -> None:
    cost = LinearCost(prefill_fixed_s=0.002, prefill_per_token_s=5e-5, decode_a_s=0.008, decode_b_s=2e-7)
    prompt, out = 1000, 50
    cl, rec, tr, eng = _toy(ArraySource([1.0], [prompt], [out]), cost)
    eng.run_until(lambda: cl.drained())
    req = rec.requests[0]
    names = {e["pid"]: e["args"]["name"] for e in tr.to_json()["traceEvents"] if e["name"] == "process_name"}
    assert names == {0: "#0 h100-sxm tp=1 prefill", 1: "#1 h100-sxm tp=1 decode"}
    (pre,) = _spans(tr, "prefill")
    assert (pre["pid"], pre["args"]) == (0, {"rids": [0], "tokens": prompt})
    assert pre["ts"] == pytest.approx(1e6) and pre["dur"] == pytest.approx((0.002 + 5e-5 * prompt) * 1e6)
    (xfer,) = _spans(tr, "transfer")
    assert xfer["pid"] == 0 and xfer["args"]["rids"] == [0] and xfer["args"]["to"] == 1
    assert xfer["ts"] == pytest.approx(req.transfer_start_s * 1e6)
    assert xfer["ts"] + xfer["dur"] == pytest.approx(req.transfer_end_s * 1e6)
    dec = _spans(tr, "decode")
    assert {e["pid"] for e in dec} == {1}
    assert dec[0]["ts"] == pytest.approx(req.decode_start_s * 1e6)
    assert dec[-1]["ts"] + dec[-1]["dur"] == pytest.approx(req.completion_s * 1e6)
    assert sum(e["args"]["tokens"] for e in dec) == out - 1  # the first token came from prefill
    # a lone request: one token per iteration, and each span lasts its iterations' closed form
    assert sum(e["args"]["iterations"] for e in dec) == out - 1
    for e in dec:
        assert e["args"]["tokens"] == e["args"]["iterations"]


def test_decode_spans_cover_every_token_with_joiners() -> None:
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-6, decode_a_s=0.01, decode_b_s=0.0)
    cl, rec, tr, eng = _toy(ArraySource([0.0, 0.0155], [10, 10], [100, 3]), cost)
    eng.run_until(lambda: cl.drained())
    dec = sorted(_spans(tr, "decode"), key=lambda e: e["ts"])
    assert sum(e["args"]["tokens"] for e in dec) == 99 + 2
    for e in dec:  # tokens = batch size x iterations; 0.01 s per iteration (decode_b_s = 0)
        assert e["args"]["tokens"] == len(e["args"]["rids"]) * e["args"]["iterations"]
        assert e["dur"] == pytest.approx(e["args"]["iterations"] * 0.01 * 1e6)
    for a, b in zip(dec, dec[1:]):  # back to back, never overlapping
        assert b["ts"] == pytest.approx(a["ts"] + a["dur"], abs=1e-3)
    assert any(e["args"]["rids"] == [0, 1] for e in dec)


def test_role_flip_gives_drain_switch_and_role_instant() -> None:
    cost = LinearCost(prefill_fixed_s=0.0, prefill_per_token_s=1e-6, decode_a_s=0.01, decode_b_s=0.0)
    # Round robin sends the lone request to decode instance 1; instance 2 stays idle.
    cl, rec, tr, eng = _toy(ArraySource([0.0], [10], [50]), cost, n_decode=2, switch_delay_s=2.0)
    eng.run_until(0.1)
    assert cl.set_role(1, Role.PREFILL) and cl.set_role(2, Role.PREFILL) is True
    eng.run_until(lambda: cl.drained() and all(i.state == "active" for i in cl.instances))
    done = rec.requests[0].completion_s
    drains = {e["pid"]: e for e in _spans(tr, "drain")}
    assert drains[1]["ts"] == pytest.approx(0.1e6) and drains[1]["ts"] + drains[1]["dur"] == pytest.approx(done * 1e6)
    assert drains[2]["dur"] == 0.0 and drains[2]["args"] == {"rids": [], "tokens": 0, "from": "decode", "to": "prefill"}
    switches = {e["pid"]: e for e in _spans(tr, "switch")}
    assert switches[1]["ts"] == pytest.approx(done * 1e6) and switches[1]["dur"] == pytest.approx(2e6)
    roles = _spans(tr, "role")
    assert [(e["pid"], e["ph"], e["s"], e["args"]) for e in roles] == [
        (2, "i", "p", {"from": "decode", "to": "prefill"}), (1, "i", "p", {"from": "decode", "to": "prefill"})]
    labels = {e["pid"]: e["args"]["labels"] for e in tr.to_json()["traceEvents"] if e["name"] == "process_labels"}
    assert labels == {0: "role=prefill", 1: "role=prefill", 2: "role=prefill"}
    # No work on the instance while it drains or switches.
    busy = [e for e in _spans(tr, "decode", 1) if e["ts"] >= done * 1e6 - 1e-3]
    assert not busy


# ------------------------------------------------------------------------- CLI
def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def test_simulate_writes_a_valid_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path, records = tmp_path / "t.json", tmp_path / "r.csv"
    rc, out, err = _run(capsys, "simulate", "--config", "small-route", "--horizon", "5", "--chrome-trace", str(path),
                        "--records", str(records))
    assert rc == 0, err
    assert f"chrome trace  {path}" in out and "dropped" not in out
    doc = json.loads(path.read_text())
    assert doc["otherData"] == {"dropped_events": 0, "max_events": 200000}
    events = doc["traceEvents"]
    n_inst = sum(1 for e in events if e["ph"] == "M" and e["name"] == "process_name")
    assert n_inst == 4
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and {e["name"] for e in spans} <= SPAN_NAMES
    assert {"prefill", "decode", "transfer"} <= {e["name"] for e in spans}
    for e in spans:
        assert e["ts"] >= 0 and e["dur"] >= 0 and 0 <= e["pid"] < n_inst
        assert isinstance(e["args"]["rids"], list) and isinstance(e["args"]["tokens"], int)
    with records.open() as fh:
        completed = {int(r["rid"]) for r in csv.DictReader(fh) if r["state"] == "completed"}
    prefilled = {rid for e in spans if e["name"] == "prefill" for rid in e["args"]["rids"]}
    assert completed and completed <= prefilled


def test_simulate_json_names_the_trace_and_reports_drops(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    rc, out, err = _run(capsys, "simulate", "--horizon", "5", "--json", "--chrome-trace", str(path), "--chrome-trace-max-events", "10")
    assert rc == 0
    s = json.loads(out)
    doc = json.loads(path.read_text())
    dropped = doc["otherData"]["dropped_events"]
    assert s["chrome_trace"] == str(path) and s["chrome_trace_dropped_events"] == dropped > 0
    assert sum(1 for e in doc["traceEvents"] if e["ph"] != "M") == 10
    assert err.strip().splitlines() == [
        f"disagg-gym: chrome trace kept the first 10 events and dropped {dropped} (raise --chrome-trace-max-events to keep more)"]
    rc, out, _ = _run(capsys, "simulate", "--horizon", "5", "--chrome-trace", str(path), "--chrome-trace-max-events", "10")
    assert rc == 0 and f"chrome trace kept the first 10 events and dropped {dropped} " in out


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("file.txt/t.json", "--chrome-trace '{p}': '{d}/file.txt' is a file, not a folder"),
        ("adir", "--chrome-trace '{p}': is a directory, expected a file path"),
    ],
)
def test_simulate_bad_trace_path_is_one_line_before_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str, message: str
) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "adir").mkdir()
    p = tmp_path / where
    rc, out, err = _run(capsys, "simulate", "--horizon", "5", "--chrome-trace", str(p))
    assert rc == 2 and out == ""
    assert err.splitlines() == ["disagg-gym: error: " + message.format(p=p, d=tmp_path)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_simulate_unwritable_trace_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    rc, _, err = _run(capsys, "simulate", "--horizon", "5", "--chrome-trace", str(ro / "t.json"))
    assert rc == 2 and len(err.splitlines()) == 1 and "not writable" in err


def test_simulate_max_events_must_be_positive(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = _run(capsys, "simulate", "--chrome-trace", str(tmp_path / "t.json"), "--chrome-trace-max-events", "0")
    assert rc == 2 and "--chrome-trace-max-events: expected a positive integer (got '0')" in err


def test_max_events_without_a_trace_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "--horizon", "1", "--chrome-trace-max-events", "10"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == "disagg-gym: error: --chrome-trace-max-events needs --chrome-trace PATH (the trace it limits)"
