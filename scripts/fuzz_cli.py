"""Fuzz campaign over the ``disagg-gym`` command line (``scripts/fuzz.py --target cli``).

Hypothesis builds argument lists for every command (simulate, predict, list, evaluate,
benchmark, validate, train) from pools of hostile values: numbers at and past every edge
(0, -1, 1e300, nan, inf, 40-digit integers, text), paths that are missing, folders, files used as
folders, ``/dev/null``, non-UTF-8 / empty / duplicate-key YAML, torn or column-less results
files, and traces with huge, nested, negative or out-of-order values. Each case runs
``disagg_gym.cli.main`` in-process in a scratch folder and is checked against the CLI contract:

* no exception escapes ``main`` (a traceback would mean a bug) and no case outlives
  ``--case-timeout`` seconds;
* the exit status is 0, 2 (user error) or, for ``validate``, 1 (a mismatch);
* status 2 prints exactly one ``disagg-gym: error: ...`` line (after argparse's usage line);
* with ``--json`` and status 0, stdout is strict JSON (no NaN/Infinity).

Usage: python scripts/fuzz.py --target cli [--examples 300] [--seed 0]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

NUMS = ["0", "-1", "1", "2", "3", "0.5", "1e-300", "1e300", "1e3", "nan", "inf", "-inf", "abc", "",
        "1" * 40, "9223372036854775808", "0x10", " 4"]
KEYS = ["horizon_s", "seed", "max_requests", "workload.rate_per_s", "workload.kind", "workload.lengths",
        "workload.rate_scale", "workload.loop", "workload.trace_path", "workload.window_end_s",
        "cluster.groups", "cluster.kv_reserve_frac", "cluster.groups[0].count", "router", "env.reward",
        "nokey", "cluster", "workload.prompt_tokens", "workload.max_prompt_tokens"]
VALUES = [*NUMS, "true", "null", "[]", "{}", "[1, 2]", "{a: 1}", "trace", "poisson", "jsq", "fixed", "'x'",
          "{{", "- a", "!!python/object:os.system ls"]
ENVS = ["disagg/SmallRoute-v3", "disagg/ColocatedBaseline-v3", "disagg/EnergyAllocate-v3", "disagg/Nope-v0", "", "x"]
POLICIES = ["jsq", "heuristic:jsq", "heuristic:round_robin", "heuristic:static", "heuristic:nope", "",
            "sb3:", "sb3:DIR", "sb3:FILE_TXT", "sb3:MISSING.zip", "sb3:NOTZIP.zip", "sb3:maskable_ppo=DIR",
            "heuristics"]
ROUTERS = ["jsq", "round_robin", "p2c", "random", "kv_aware", "psychic", "", " "]
GPUS = ["h100-sxm", "a100-80gb", "l40s", "h999", ""]
MODELS = ["llama-3.1-8b", "llama-2-70b", "opt-13b", "MODEL_YAML", "MODEL_DUP", "MISSING.yaml", "nope"]
LINKS = ["nvlink", "pcie", "rdma", "ethernet", "pigeon", ""]


def make_files(root: Path) -> dict[str, str]:
    """Hostile files and folders under ``root``; returns placeholder -> path."""
    root.mkdir(parents=True, exist_ok=True)
    f: dict[str, str] = {}

    def put(name: str, data: str | bytes) -> str:
        p = root / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(p)

    f["DIR"] = str(root / "adir")
    (root / "adir").mkdir(exist_ok=True)
    f["FILE_TXT"] = put("file.txt", "hello\n")
    f["UNDER_FILE"] = str(root / "file.txt" / "sub" / "x.csv")
    f["MISSING.zip"] = str(root / "missing.zip")
    f["NOTZIP.zip"] = put("notzip.zip", "not a zip")
    f["MODEL_ZIP"] = str(Path(__file__).resolve().parents[1] / "leaderboard" / "checkpoints" / "SmallRoute-v3" / "seed0" / "model.zip")
    f["DEVNULL"] = "/dev/null"  # read-only uses; outputs go through NULL_LINK (below)
    (root / "null").symlink_to("/dev/null")
    f["NULL_LINK"] = str(root / "null")
    f["NONUTF8"] = put("bad.yaml", b"\xff\xfe\x00rate: 1\n")
    f["EMPTY"] = put("empty.yaml", "")
    small = (Path(__file__).resolve().parents[1] / "configs" / "small-route.yaml").read_text()
    f["CFG_OK"] = put("ok.yaml", small.replace("horizon_s: 120", "horizon_s: 5"))
    f["CFG_DUP"] = put("dup.yaml", small.replace("rate_per_s: 55", "rate_per_s: 55\n  rate_per_s: 0.001"))
    f["CFG_EXP"] = put("exp.yaml", small.replace("rate_per_s: 55", "rate_per_s: 5e1").replace("horizon_s: 120", "horizon_s: 5"))
    f["CFG_LIST"] = put("list.yaml", "- 1\n- 2\n")
    f["CFG_BAD"] = put("broken.yaml", "a: [\n")
    f["MODEL_YAML"] = put("m.yaml", "num_hidden_layers: 2\nhidden_size: 64\nnum_attention_heads: 4\n"
                          "intermediate_size: 128\nvocab_size: 100\nmax_position_embeddings: 1000\n")
    f["MODEL_DUP"] = put("mdup.yaml", "num_hidden_layers: 2\nnum_hidden_layers: 3\n")
    head = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    rows = "".join(f"2023-11-16 18:15:{i:02d}.0000000,{100 + i},{10 + i}\n" for i in range(30))
    f["TR_OK"] = put("ok.csv", head + rows)
    f["TR_HUGE"] = put("huge.csv", head + rows + "2023-11-16 18:16:00.0000000,100000000000000000000000,5\n")
    f["TR_YEARS"] = put("years.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 5}\n'
                        '{"timestamp": 1e308, "input_length": 10, "output_length": 5}\n')
    f["TR_NEST"] = put("nest.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 5}\n'
                       + '{"timestamp": 1, "input_length": 10, "output_length": 5, "hash_ids": '
                       + "[" * 100_000 + "]" * 100_000 + "}\n")
    f["TR_BIGINT"] = put("bigint.jsonl", '{"timestamp": 1' + "0" * 400 + ', "input_length": 10, "output_length": 5}\n')
    f["TR_ORDER"] = put("order.csv", head + "2023-11-16 18:15:09.0,10,5\n2023-11-16 18:15:01.0,10,5\n")
    f["Q_OK"] = put("q.jsonl", '{"phase": "kv_transfer", "link": "pcie", "bytes": 1024}\n')
    f["Q_INF"] = put("qinf.jsonl", '{"phase": "kv_transfer", "link": "pcie", "bytes": Infinity}\n')
    f["Q_BIG"] = put("qbig.jsonl", '{"gpu": "h100-sxm", "model": "llama-3.1-8b", "phase": "prefill", '
                     '"batch": 1000000000, "length": 100000000000000000000000000000}\n')
    f["Q_BAD"] = put("qbad.jsonl", b"\xff\n")
    f["Q_NEST"] = put("qnest.jsonl", '{"phase": "kv_transfer", "link": "pcie", "bytes": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    f["Q_HUGEINT"] = put("qhugeint.jsonl", '{"phase": "kv_transfer", "link": "pcie", "bytes": ' + "1" * 5000 + "}\n")
    meta = "config,env_version,agent,agent_kind,upper_bound,train_seed,eval_seed,episode,primary_metric,score,policy\n"
    row = "disagg/SmallRoute-v3,0,jsq,heuristic,False,,10000,0,goodput_rps,1.0,heuristic:jsq\n"
    nocfg = root.parent / "out" / "nocfg"  # also the benchmark --out OUT:nocfg
    nocfg.mkdir(parents=True, exist_ok=True)
    f["RES_NOCFG"] = str(nocfg / "results.csv")
    (nocfg / "results.csv").write_text("agent,eval_seed\njsq,1\n")
    f["RES_TORN"] = put("torn.csv", meta + row + row[:30])
    f["RES_ABC"] = put("abc.csv", meta + row.replace("10000", "abc"))
    return f


def _sub(v: str, files: dict[str, str], root: Path) -> str:
    if v in files:
        return files[v]
    if v.startswith("sb3:") and v[4:] in files:
        return "sb3:" + files[v[4:]]
    if v.startswith("sb3:maskable_ppo=") and v.split("=", 1)[1] in files:
        return "sb3:maskable_ppo=" + files[v.split("=", 1)[1]]
    if v.startswith("OUT:"):
        return str(root / "out" / v[4:])
    return v


# Outputs never name /dev/null itself: a writer that replaced it (as the atomic writes did, as
# root) would break the machine's null device; a link to it tests the same code path safely.
PATHS_OUT = ["OUT:a.csv", "OUT:d/e/f.csv", "DIR", "UNDER_FILE", "FILE_TXT", "NULL_LINK", "OUT:p"]
GOOD_OUT = ["OUT:a.csv", "OUT:d/e/f.csv", "OUT:p"]
BAD = ["0", "-1", "1e300", "nan", "inf", "abc", "", "1" * 40, "1e3"]


def opt(flag: str, good: list[str], bad: list[str] | None = None) -> st.SearchStrategy[list[str]]:
    """The flag absent (3/6), with a plausible value (2/6) or a hostile one (1/6)."""
    bad = BAD if bad is None else bad
    return st.sampled_from(["absent"] * 3 + ["good"] * 2 + ["bad"]).flatmap(
        lambda k: st.just([]) if k == "absent"
        else st.sampled_from(good if k == "good" else bad).map(lambda v: [flag, v])
    )


def pick(good: list[list[str]], bad: list[list[str]]) -> st.SearchStrategy[list[str]]:
    """A plausible argument group (3/4) or a hostile one (1/4)."""
    return st.sampled_from(["good"] * 3 + ["bad"]).flatmap(lambda k: st.sampled_from(good if k == "good" else bad))


def cases() -> st.SearchStrategy[list[str]]:
    """Argument lists for every command (placeholders resolved later)."""
    sets = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)).map(lambda kv: ["--set", f"{kv[0]}={kv[1]}"]),
                    max_size=2).map(lambda xs: [a for x in xs for a in x])
    sets = st.one_of(st.just([]), st.just([]), sets)
    simulate = st.tuples(
        st.just(["simulate"]),
        opt("--config", ["small-route", "colocated-baseline", "hetero-route", "CFG_OK", "CFG_EXP"],
            ["CFG_DUP", "CFG_LIST", "CFG_BAD", "NONUTF8", "EMPTY", "DIR", "nope", "DEVNULL"]),
        opt("--trace", ["TR_OK", "TR_YEARS", "TR_HUGE"], ["TR_NEST", "TR_BIGINT", "TR_ORDER", "FILE_TXT", "DIR", "MISSING.zip"]),
        opt("--rate-scale", ["0.5", "2", "1e3", "1e-3"], BAD),
        opt("--policy", ["jsq", "round_robin", "p2c", "random", "kv_aware"], ["psychic", "", " "]),
        opt("--seed", ["0", "1", "123"], BAD),
        pick([["--horizon", "2"], ["--horizon", "5"]], [["--horizon", "1e300"], ["--horizon", "0"], ["--horizon", "abc"]]),
        st.sampled_from([[], ["--json"]]),
        opt("--records", GOOD_OUT, PATHS_OUT),
        opt("--plots", GOOD_OUT, PATHS_OUT),
        sets,
    )
    predict = st.tuples(
        st.just(["predict"]),
        pick([["--gpu", g, "--model", m] for g in ("h100-sxm", "a100-80gb", "h200") for m in ("llama-3.1-8b", "MODEL_YAML", "opt-13b")],
             [["--gpu", g, "--model", m] for g in GPUS for m in MODELS]),
        pick([["--phase", "prefill"], ["--phase", "decode"], ["--phase", "kv_transfer"]], [[], ["--phase", "x"]]),
        pick([["--batch", b, "--length", n] for b in ("1", "8", "65536") for n in ("1", "512", "2048")],
             [["--batch", b, "--length", n] for b in [*BAD, "1000000000", "65537"] for n in [*BAD, "131073", "1" * 30]]),
        opt("--tp", ["1", "2", "8"]), pick([["--link", "nvlink", "--bytes", "1024"], ["--link", "pcie", "--bytes", "0"]],
                                          [["--link", k, "--bytes", b] for k in LINKS for b in BAD]),
        opt("--queries", ["Q_OK"], ["Q_INF", "Q_BIG", "Q_BAD", "Q_NEST", "Q_HUGEINT", "DIR", "MISSING.zip", "DEVNULL"]),
        st.sampled_from([[], ["--json"]]),
    )
    evaluate = st.tuples(
        st.just(["evaluate", "--overrides", "horizon_s=2"]),
        opt("--env", ["disagg/SmallRoute-v3", "disagg/ColocatedBaseline-v3", "disagg/EnergyAllocate-v3"], ["disagg/Nope-v0", "", "x"]),
        opt("--policy", ["jsq", "heuristic:jsq", "heuristic:round_robin", "heuristic:static", "sb3:MODEL_ZIP"],
            ["heuristic:nope", "", "sb3:", "sb3:DIR", "sb3:FILE_TXT", "sb3:MISSING.zip", "sb3:NOTZIP.zip", "heuristics"]),
        opt("--episodes", ["1", "2"], ["0", "-1", "abc"]),
        opt("--seed-offset", ["0", "10000"], BAD),
        opt("--out", GOOD_OUT, PATHS_OUT),
        opt("--overrides", ["horizon_s=1", "workload.rate_per_s=5"], [*VALUES, "nokey=1", "workload.rate_per_s=1e300"]),
        st.sampled_from([[], ["--json"]]),
    )
    benchmark = st.tuples(
        st.just(["benchmark", "--no-progress", "--no-plots", "--set", "horizon_s=2"]),
        pick([["--configs", "disagg/SmallRoute-v3"], ["--configs", "disagg/ColocatedBaseline-v3"]], [["--configs", "disagg/Nope-v0"]]),
        pick([["--agents", "jsq"], ["--agents", "heuristic:round_robin"]], [["--agents", "nope"], ["--agents", "sb3:x=DIR"], ["--agents", "sb3:bad"]]),
        pick([["--episodes", "1"]], [["--episodes", "0"], ["--episodes", "x"]]),
        pick([["--out", "OUT:lb"], ["--out", "OUT:lb2"]],
             [["--out", "FILE_TXT"], ["--out", "UNDER_FILE"], ["--out", "NULL_LINK"], ["--out", "OUT:nocfg"]]),
        opt("--markdown", GOOD_OUT, PATHS_OUT),
        st.sampled_from([[]] * 7 + [["--address", "x"]]),
    )
    validate = st.tuples(
        st.just(["validate", "--no-progress"]),
        pick([["OUT:lb/results.csv"], ["OUT:lb2/results.csv"]],
             [["DEVNULL"], ["EMPTY"], ["DIR"], ["RES_NOCFG"], ["RES_TORN"], ["RES_ABC"], ["NONUTF8"], ["MISSING.zip"], ["FILE_TXT"]]),
        opt("--configs", ["disagg/SmallRoute-v3"], ["disagg/Typo-v0"]),
        opt("--agents", ["jsq"], ["nobody"]),
    )
    train = st.tuples(
        st.just(["train", "--timesteps", "64", "--n-envs", "1", "--eval-freq", "0", "--no-progress-bar",
                 "--checkpoint-freq", "64", "--overrides", "horizon_s=2"]),
        opt("--env", ["disagg/SmallRoute-v3"], ["disagg/Nope-v0", ""]), opt("--algo", ["ppo", "maskable_ppo"], ["dqn"]),
        pick([["--out", "OUT:run"], ["--out", "OUT:run2"]], [["--out", "FILE_TXT"], ["--out", "UNDER_FILE"], ["--out", "NULL_LINK"]]),
        st.sampled_from([[], ["--resume"]]),
        opt("--overrides", ["horizon_s=3"], ["nokey=1"]),
    )
    lst = st.tuples(st.just(["list"]), st.sampled_from([[], ["--json"], ["--policies"]]))
    cmd = st.one_of(simulate, simulate, predict, evaluate, validate, benchmark, lst, train)
    return cmd.map(lambda parts: [a for part in parts for a in part])


class CaseTimeout(Exception):
    """A case ran longer than ``--case-timeout`` seconds."""


def run_case(argv: list[str], root: Path, files: dict[str, str], timeout_s: int) -> dict[str, Any]:
    """Runs ``disagg-gym argv`` in-process; returns what happened (raises on a contract breach)."""
    from disagg_gym.cli import main

    args = [_sub(a, files, root) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    rc: int | None = None

    def alarm(*_: Any) -> None:
        raise CaseTimeout(f"case ran over {timeout_s} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout_s)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(args)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except CaseTimeout:
        raise AssertionError(f"timeout: {args}") from None
    except BaseException as exc:  # noqa: BLE001 - a traceback is the bug we hunt
        raise AssertionError(f"exception escaped main: {args}\n{traceback.format_exc()}") from exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    e = err.getvalue()
    link = files["NULL_LINK"]
    assert os.path.islink(link) and stat.S_ISCHR(os.stat(link).st_mode), f"replaced the /dev/null link: {args}"
    allowed = {0, 2} | ({1} if args[0] == "validate" else set())
    assert rc in allowed, f"exit status {rc}: {args}\n{e[-2000:]}"
    if rc == 2:
        lines = [ln for ln in e.strip().splitlines() if ln.startswith("disagg-gym: error:")]
        assert len(lines) == 1, f"expected one error line: {args}\n{e[-2000:]}"
        assert "Traceback" not in e, f"traceback printed: {args}\n{e[-2000:]}"
    if rc == 0 and "--json" in args and args[0] in ("simulate", "predict", "evaluate", "list"):
        def strict(c: str) -> Any:
            raise AssertionError(f"non-JSON constant {c} in output of {args}")
        for line in out.getvalue().strip().splitlines() if args[0] == "predict" else [out.getvalue()]:
            if line.strip().startswith(("{", "[")):
                json.loads(line, parse_constant=strict)
    return {"argv": args, "rc": rc, "s": time.perf_counter() - t0,
            "error": next((ln for ln in e.splitlines() if ln.startswith("disagg-gym: error:")), "")}


def campaign(examples: int, seed_: int, case_timeout_s: int, log: Path | None) -> dict[str, Any]:
    """Runs the campaign; returns counts (raises AssertionError with the failing case)."""
    import disagg_gym.cli  # noqa: F401 - import once before timing

    root = Path(tempfile.mkdtemp(prefix="disagg-gym-fuzz-cli-"))
    cwd = os.getcwd()
    os.chdir(root)  # default outputs (runs/...) land in the scratch folder
    files = make_files(root / "in")
    stats: dict[str, Any] = {"cases_tried": 0, "by_command": {}, "by_rc": {}, "distinct_errors": set()}
    logf = log.open("w") if log else None

    failures: list[str] = []

    # Generation only, no shrinking: a failing case is recorded and the campaign goes on, so
    # the figures count every failure (argument lists are short; they need no shrinking).
    @seed(seed_)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(argv=cases())
    def one(argv: list[str]) -> None:
        stats["cases_tried"] += 1
        try:
            res = run_case(argv, root, files, case_timeout_s)
        except AssertionError as exc:
            failures.append(str(exc))
            if logf:
                logf.write(json.dumps({"argv": argv, "failure": str(exc)}) + "\n")
            return
        stats["by_command"][argv[0]] = stats["by_command"].get(argv[0], 0) + 1
        stats["by_rc"][str(res["rc"])] = stats["by_rc"].get(str(res["rc"]), 0) + 1
        if res["error"]:
            stats["distinct_errors"].add(res["error"][:60])
        if logf:
            logf.write(json.dumps(res) + "\n")
            logf.flush()

    try:
        one()
    finally:
        os.chdir(cwd)
        if logf:
            logf.close()
    stats["distinct_errors"] = len(stats["distinct_errors"])
    stats["failures"] = len(failures)
    for f in failures[:20]:
        print(f"FAILURE: {f[-3000:]}", file=sys.stderr)
    return stats


def main() -> None:
    """CLI of the campaign (also reachable as ``scripts/fuzz.py --target cli``)."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case-timeout", type=int, default=120, help="seconds one case may take")
    ap.add_argument("--log", type=Path, help="write one JSON line per case here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ok = True
    stats: dict[str, Any] = {}
    try:
        stats = campaign(args.examples, args.seed, args.case_timeout, args.log)
        ok = stats["failures"] == 0
    except Exception as exc:  # noqa: BLE001 - report the falsifying case and fail
        ok = False
        notes = "\n".join(getattr(exc, "__notes__", []))
        print(f"FAILED: {type(exc).__name__}: {exc}\n{notes}", file=sys.stderr)
    print(json.dumps({**stats, "passed": ok, "seconds": round(time.perf_counter() - t0, 1), "seed": args.seed}))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
