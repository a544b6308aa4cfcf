"""Trace loading and replay: exact one-line errors, skip mode, rate scaling, windows, real traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from disagg_gym.config import from_dict
from disagg_gym.rng import RngStreams
from disagg_gym.workload import CHUNK_SIZE, TraceError, WorkloadConfig, load_trace
from disagg_gym.workload.source import ArrivalChunk

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TRACES = SHARED / "data" / "traces"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
T0 = "2023-11-16 18:15:46.6805900"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def azure(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    return write(tmp_path, "t.csv", "\n".join([header, *rows]) + "\n")


def mooncake(tmp_path: Path, *rows: object) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    return write(tmp_path, "t.jsonl", "\n".join(lines) + "\n")


def mc(ts: object = 0, inp: object = 10, out: object = 5, **extra: object) -> dict:
    return {"timestamp": ts, "input_length": inp, "output_length": out, **extra}


def error(path: Path, **kw: object) -> str:
    with pytest.raises(TraceError) as exc:
        load_trace(path, **kw)  # type: ignore[arg-type]
    assert isinstance(exc.value, ValueError)
    return str(exc.value)


# ------------------------------------------------------------------------------ good input
def test_azure_rows_parse_exactly(tmp_path: Path) -> None:
    p = azure(
        tmp_path,
        f"{T0},374,44",
        "2023-11-16 18:15:50.9951690,396,109",
        "2023-11-16 18:15:50.9951690,5,1",
        "2023-11-17 00:00:00,7,2",
    )
    tr = load_trace(p)
    assert tr.fmt == "azure" and len(tr) == 4 and tr.hash_ids is None and tr.skipped_rows == 0
    np.testing.assert_allclose(tr.arrival_s[:3], [0.0, 4.314579, 4.314579], atol=1e-9)
    assert tr.arrival_s[3] == pytest.approx(86400 - (18 * 3600 + 15 * 60 + 46.68059), abs=1e-6)
    np.testing.assert_array_equal(tr.prompt_tokens, [374, 396, 5, 7])
    np.testing.assert_array_equal(tr.output_tokens, [44, 109, 1, 2])
    assert tr.prompt_tokens.dtype == np.int64 and not tr.arrival_s.flags.writeable


def test_azure_column_order_extra_columns_crlf_bom_and_blank_lines(tmp_path: Path) -> None:
    text = "\ufeffGeneratedTokens,Model,TIMESTAMP,ContextTokens\r\n\r\n3,x," + T0 + ",10\r\n"
    tr = load_trace(write(tmp_path, "t.csv", text))
    assert tr.fmt == "azure"
    assert tr.prompt_tokens.tolist() == [10] and tr.output_tokens.tolist() == [3]


def test_mooncake_rows_parse_with_hash_ids(tmp_path: Path) -> None:
    p = mooncake(
        tmp_path,
        mc(1000, 600, 7, hash_ids=[0, 1]),
        mc(1000, 20, 1, hash_ids=[0]),
        mc(2500.5, 30, 2),
    )
    tr = load_trace(p)
    assert tr.fmt == "mooncake" and len(tr) == 3
    np.testing.assert_allclose(tr.arrival_s, [0.0, 0.0, 1.5005])
    assert tr.hash_ids == ((0, 1), (0,), ())
    assert load_trace(mooncake(tmp_path, mc(0), mc(5))).hash_ids is None


# ------------------------------------------------------------------------- file problems
def test_file_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert error(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: file not found"
    # A relative path (the standard trace configs' ../shared/...) says where it was looked for.
    monkeypatch.chdir(tmp_path)
    msg = error(Path("../shared/nope.csv"))
    assert msg.startswith(f"../shared/nope.csv: file not found (relative to the working directory {tmp_path}; ")
    assert "workload.trace_path" in msg


def test_directory(tmp_path: Path) -> None:
    assert error(tmp_path) == f"{tmp_path}: is a directory, not a trace file"


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, "t.csv", text)
    assert error(p) == f"{p}: empty trace (no rows)"


def test_header_only_is_empty(tmp_path: Path) -> None:
    p = azure(tmp_path)
    assert error(p) == f"{p}: empty trace (no rows)"


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(b"TIMESTAMP\xff\n")
    assert error(p) == f"{p}: not a text file (invalid UTF-8 at byte 9)"


def test_unknown_format(tmp_path: Path) -> None:
    p = write(tmp_path, "t.txt", "\ntime,prompt,output\n1,2,3\n")
    assert error(p) == (
        f"{p}:2: unknown trace format: expected an Azure CSV header with columns "
        "TIMESTAMP,ContextTokens,GeneratedTokens or Mooncake JSON lines starting with '{' "
        "(got 'time,prompt,output')"
    )


def test_bad_arguments(tmp_path: Path) -> None:
    p = azure(tmp_path, f"{T0},1,1")
    assert (
        error(p, fmt="csv")
        == f"{p}: trace format must be 'auto', 'azure' or 'mooncake' (got 'csv')"
    )
    assert (
        error(p, on_bad_row="ignore") == f"{p}: on_bad_row must be 'fail' or 'skip' (got 'ignore')"
    )


def test_header_lacks_a_column(tmp_path: Path) -> None:
    p = azure(tmp_path, f"{T0},374", header="TIMESTAMP,ContextTokens")
    assert (
        error(p)
        == f"{p}:1: header lacks column 'GeneratedTokens' (got header 'TIMESTAMP,ContextTokens')"
    )


def test_explicit_format_that_does_not_match(tmp_path: Path) -> None:
    p = mooncake(tmp_path, mc())
    assert error(p, fmt="azure") == (
        f"{p}:1: header lacks column 'TIMESTAMP' (got header "
        '\'{"timestamp": 0, "input_length": 10, "output_length": 5}\')'
    )


# ------------------------------------------------------------------------ Azure bad rows
@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            f"{T0},374",
            "expected 3 fields like the header (got 2: '2023-11-16 18:15:46.6805900,374')",
        ),
        (
            f"{T0},374,44,9",
            "expected 3 fields like the header (got 4: '2023-11-16 18:15:46.6805900,374,44,9')",
        ),
        (f"{T0},abc,44", "column 'ContextTokens': expected a positive integer (got 'abc')"),
        (f"{T0},-5,44", "column 'ContextTokens': expected a positive integer (got '-5')"),
        (f"{T0},0,44", "column 'ContextTokens': expected a positive integer (got '0')"),
        (f"{T0},3.5,44", "column 'ContextTokens': expected a positive integer (got '3.5')"),
        (f"{T0},374,", "column 'GeneratedTokens': expected a positive integer (got '')"),
        (f"{T0},374,0", "column 'GeneratedTokens': expected a positive integer (got '0')"),
        (
            "2023-11-16 25:15:46.6805900,374,44",
            "column 'TIMESTAMP': expected a time like '2023-11-16 18:15:46.6805900' (got '2023-11-16 25:15:46.6805900')",
        ),
        (
            "2023-02-30 18:15:46,374,44",
            "column 'TIMESTAMP': expected a time like '2023-11-16 18:15:46.6805900' (got '2023-02-30 18:15:46')",
        ),
        (
            "1700150146.68,374,44",
            "column 'TIMESTAMP': expected a time like '2023-11-16 18:15:46.6805900' (got '1700150146.68')",
        ),
        (
            "2023-11-16 18:15:46.,374,44",
            "column 'TIMESTAMP': expected a time like '2023-11-16 18:15:46.6805900' (got '2023-11-16 18:15:46.')",
        ),
        (
            "2023-11-16 18:15:45.0000000,374,44",
            (
                "column 'TIMESTAMP': timestamp '2023-11-16 18:15:45.0000000' is earlier than the previous "
                "row's '2023-11-16 18:15:46.6805900'"
            ),
        ),
    ],
)
def test_azure_bad_row_fails_with_line_column_and_value(
    tmp_path: Path, row: str, problem: str
) -> None:
    p = azure(tmp_path, f"{T0},10,10", row, f"{T0},11,11")
    assert error(p) == f"{p}:3: {problem}"
    tr = load_trace(p, on_bad_row="skip")
    assert len(tr) == 2 and tr.skipped_rows == 1
    assert tr.skip_reasons == (f"{p}:3: {problem}",)


# --------------------------------------------------------------------- Mooncake bad rows
@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            '{"timestamp": 0 "input_length": 3}',
            "invalid JSON: Expecting ',' delimiter at column 17 (got '{\"timestamp\": 0 \"input_length\": 3}')",
        ),
        ("[1, 2]", "expected a JSON object (got [1, 2])"),
        (
            {"timestamp": 5, "input_length": 3},
            "missing field 'output_length' (got fields: timestamp, input_length)",
        ),
        (
            mc(ts="soon"),
            "field 'timestamp': expected a non-negative number of milliseconds (got 'soon')",
        ),
        (mc(ts=-1), "field 'timestamp': expected a non-negative number of milliseconds (got -1)"),
        (
            mc(ts=True),
            "field 'timestamp': expected a non-negative number of milliseconds (got True)",
        ),
        (mc(inp=0), "field 'input_length': expected a positive integer (got 0)"),
        (mc(inp="12"), "field 'input_length': expected a positive integer (got '12')"),
        (mc(inp=2.5), "field 'input_length': expected a positive integer (got 2.5)"),
        (mc(out=-3), "field 'output_length': expected a positive integer (got -3)"),
        (mc(out=None), "field 'output_length': expected a positive integer (got None)"),
        (mc(hash_ids=[1, "a"]), "field 'hash_ids': expected a list of integers (got [1, 'a'])"),
        (mc(hash_ids=7), "field 'hash_ids': expected a list of integers (got 7)"),
    ],
)
def test_mooncake_bad_row_fails_with_line_field_and_value(
    tmp_path: Path, row: object, problem: str
) -> None:
    p = mooncake(tmp_path, mc(0), row, mc(10))
    assert error(p) == f"{p}:2: {problem}"
    tr = load_trace(p, on_bad_row="skip")
    assert len(tr) == 2 and tr.skipped_rows == 1 and tr.skip_reasons == (f"{p}:2: {problem}",)


def test_mooncake_timestamp_out_of_order(tmp_path: Path) -> None:
    p = mooncake(tmp_path, mc(13.0), mc(12.5), mc(14))
    assert (
        error(p)
        == f"{p}:2: field 'timestamp': timestamp 12.5 is earlier than the previous row's 13.0"
    )
    tr = load_trace(p, on_bad_row="skip")
    np.testing.assert_allclose(tr.arrival_s, [0.0, 0.001])


def test_skip_mode_counts_all_and_keeps_the_first_five_reasons(tmp_path: Path) -> None:
    rows = [f"{T0},10,10"] + [f"{T0},x{i},1" for i in range(8)] + [f"{T0},12,12"]
    p = azure(tmp_path, *rows)
    tr = load_trace(p, on_bad_row="skip")
    assert len(tr) == 2 and tr.skipped_rows == 8 and len(tr.skip_reasons) == 5
    assert (
        tr.skip_reasons[0]
        == f"{p}:3: column 'ContextTokens': expected a positive integer (got 'x0')"
    )


def test_skip_mode_with_no_valid_row(tmp_path: Path) -> None:
    p = azure(tmp_path, f"{T0},0,1", f"{T0},1,0")
    assert error(p, on_bad_row="skip") == (
        f"{p}: no valid rows (2 skipped; first: {p}:2: column 'ContextTokens': expected a "
        "positive integer (got '0'))"
    )


def test_errors_are_one_line(tmp_path: Path) -> None:
    p = mooncake(tmp_path, mc(0), '{"timestamp": 1,\n')
    assert "\n" not in error(p)


# --------------------------------------------------------------------------------- replay
def replay(
    path: Path, seed: int = 0, build: dict | None = None, **kw: object
) -> list[ArrivalChunk]:
    c = from_dict(WorkloadConfig, {"kind": "trace", "trace_path": str(path), **kw})
    src = c.build(RngStreams(seed), **(build or {}))
    out = []
    while (ch := src.next_chunk()) is not None:
        out.append(ch)
    return out


def times(chunks: list[ArrivalChunk]) -> np.ndarray:
    return np.concatenate([c.arrival_s for c in chunks])


def _ids(i: int) -> list[int]:
    return [0, i] if 100 * (i + 1) > 512 else [i]


@pytest.fixture
def ten_rows(tmp_path: Path) -> Path:
    # One row per second, prompt = 100 * (i + 1), with one hash id per 512 tokens (ceil).
    return mooncake(
        tmp_path, *[mc(1000 * i, 100 * (i + 1), i + 1, hash_ids=_ids(i)) for i in range(10)]
    )


def test_replay_keeps_rows_hashes_and_slos(ten_rows: Path) -> None:
    (ch,) = replay(ten_rows, slo_ttft_s=0.5, slo_ttft_per_1k_prompt_s=1.0, slo_tpot_s=0.05)
    np.testing.assert_allclose(ch.arrival_s, np.arange(10.0))
    assert ch.prompt_tokens.tolist() == [100 * (i + 1) for i in range(10)]
    assert ch.hash_ids == [tuple(_ids(i)) for i in range(10)]
    np.testing.assert_allclose(ch.slo_ttft_s, 0.5 + ch.prompt_tokens / 1000.0)
    np.testing.assert_allclose(ch.slo_tpot_s, 0.05)


def test_rate_scale_divides_timestamps(ten_rows: Path) -> None:
    np.testing.assert_allclose(times(replay(ten_rows, rate_scale=2.0)), np.arange(10.0) / 2)
    np.testing.assert_allclose(times(replay(ten_rows, rate_scale=0.5)), np.arange(10.0) * 2)


def test_window_selects_rows_and_rebases_to_start(ten_rows: Path) -> None:
    (ch,) = replay(
        ten_rows, window_start_s=2.5, window_end_s=6.0, rate_scale=2.0, build={"start_s": 100.0}
    )
    np.testing.assert_allclose(ch.arrival_s, 100.0 + (np.array([3.0, 4.0, 5.0]) - 2.5) / 2)
    assert ch.prompt_tokens.tolist() == [400, 500, 600]
    with pytest.raises(
        ValueError, match=r"window \[20, 30\) s selects no rows \(the trace spans 0 to 9 s\)"
    ):
        replay(ten_rows, window_start_s=20, window_end_s=30)


def test_horizon_max_requests_and_caps(ten_rows: Path) -> None:
    assert times(replay(ten_rows, build={"horizon_s": 4.5})).tolist() == [0, 1, 2, 3, 4]
    assert len(times(replay(ten_rows, build={"max_requests": 3}))) == 3
    (ch,) = replay(ten_rows, max_prompt_tokens=250, max_output_tokens=2)
    assert ch.prompt_tokens.max() == 250 and ch.output_tokens.max() == 2


def test_loop_repeats_the_window(ten_rows: Path) -> None:
    t = times(replay(ten_rows, loop=True, build={"horizon_s": 25.0}))
    np.testing.assert_allclose(t, np.arange(25.0))  # period = span 9 s + one mean gap 1 s
    t = times(
        replay(ten_rows, loop=True, window_end_s=4.0, rate_scale=2.0, build={"max_requests": 9})
    )
    np.testing.assert_allclose(t, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4])
    with pytest.raises(ValueError, match="loop: true replays forever"):
        replay(ten_rows, loop=True)


def test_replay_chunks_are_bounded_and_sorted(tmp_path: Path) -> None:
    n = 2 * CHUNK_SIZE + 100
    rows = [
        f"2023-11-16 {10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.5,{i + 1},1"
        for i in range(n)
    ]
    p = azure(tmp_path, *rows)
    chunks = replay(p)
    assert [len(c.arrival_s) for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE, 100]
    np.testing.assert_allclose(times(chunks), np.arange(float(n)))
    assert np.all(np.diff(times(chunks)) >= 0)


def test_missing_trace_fails_at_build(tmp_path: Path) -> None:
    c = from_dict(WorkloadConfig, {"kind": "trace", "trace_path": str(tmp_path / "x.jsonl")})
    with pytest.raises(TraceError, match="x.jsonl: file not found"):
        c.build(RngStreams(0))


# ----------------------------------------------------------------------------- real traces
needs_shared = pytest.mark.skipif(
    not TRACES.is_dir(), reason=f"shared traces not found at {TRACES} (outside this checkout)"
)


@needs_shared
@pytest.mark.parametrize(
    ("name", "rows", "mean_prompt", "mean_output", "span_s"),
    [
        ("AzureLLMInferenceTrace_conv.csv", 19_366, 1154.7, 211.1, 3501.7),
        ("mooncake_conversation_trace.jsonl", 12_031, 12_035.1, 342.6, 3537.0),
        ("mooncake_synthetic_trace.jsonl", 3_993, 15_325.5, 149.1, 1022.0),
    ],
)
def test_real_traces_match_the_readme(
    name: str, rows: int, mean_prompt: float, mean_output: float, span_s: float
) -> None:
    tr = load_trace(TRACES / name)  # load speed: `disagg-gym bench`, not a timed test
    assert len(tr) == rows and tr.skipped_rows == 0
    assert tr.prompt_tokens.mean() == pytest.approx(mean_prompt, abs=0.05)
    assert tr.output_tokens.mean() == pytest.approx(mean_output, abs=0.05)
    assert tr.span_s == pytest.approx(span_s, abs=0.05)
    if tr.fmt == "mooncake":
        assert tr.hash_ids is not None
        assert all(len(h) == -(-p // 512) for h, p in zip(tr.hash_ids, tr.prompt_tokens.tolist()))


@needs_shared
def test_real_trace_replay_at_double_rate() -> None:
    chunks = replay(
        TRACES / "AzureLLMInferenceTrace_conv.csv", rate_scale=2.0, build={"horizon_s": 600.0}
    )
    t = times(chunks)
    full = load_trace(TRACES / "AzureLLMInferenceTrace_conv.csv").arrival_s
    assert t.size == int((full < 1200.0).sum())
    assert t.max() < 600.0


# ---------------------------------------------------------------- issue #17: hostile values
@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (f"{T0},{10**23},44", f"column 'ContextTokens': expected at most 2147483647 tokens (got '{10**23}')"),
        (f"{T0},374,{10**23}", f"column 'GeneratedTokens': expected at most 2147483647 tokens (got '{10**23}')"),
        (f"{T0},{'9' * 5000},44", "column 'ContextTokens': expected at most 2147483647 tokens (got '9999"),
    ],
)
def test_azure_huge_token_counts_are_bad_rows(tmp_path: Path, row: str, problem: str) -> None:
    # 10**23 raised OverflowError from numpy, past the row checks
    p = azure(tmp_path, f"{T0},1,1", row, f"{T0},2,2")
    with pytest.raises(TraceError) as exc:
        load_trace(p)
    assert str(exc.value).startswith(f"{p}:3: {problem}")
    data = load_trace(p, on_bad_row="skip")
    assert len(data) == 2 and data.skipped_rows == 1
    assert data.prompt_tokens.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (mc(1, 10**23, 5), f"field 'input_length': expected at most 2147483647 tokens (got {10**23})"),
        (mc(1, 1e23, 5), "field 'input_length': expected at most 2147483647 tokens (got 1e+23)"),
        (mc(1, 10, 2**31), "field 'output_length': expected at most 2147483647 tokens (got 2147483648)"),
        ('{"timestamp": 1' + "0" * 400 + ', "input_length": 10, "output_length": 5}',
         "field 'timestamp': expected a non-negative number of milliseconds (got 10000000000"),
        ('{"timestamp": 1, "input_length": 10, "output_length": 5, "hash_ids": ' + "[" * 100_000 + "]" * 100_000 + "}",
         "invalid JSON: nested too deeply (got '{\"timestamp\": 1, \"input_length\": 10, "),
    ],
)
def test_mooncake_overflow_and_deep_nesting_are_bad_rows(tmp_path: Path, row: object, problem: str) -> None:
    # issue #17: OverflowError and RecursionError escaped the row checks, so skip mode failed too
    p = mooncake(tmp_path, mc(0), row, mc(10))
    with pytest.raises(TraceError) as exc:
        load_trace(p)
    assert str(exc.value).startswith(f"{p}:2: {problem}")
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 400
    data = load_trace(p, on_bad_row="skip")
    assert len(data) == 2 and data.skipped_rows == 1


def test_largest_token_count_is_accepted(tmp_path: Path) -> None:
    p = mooncake(tmp_path, mc(0, 2**31 - 1, 1))
    assert load_trace(p).prompt_tokens.tolist() == [2**31 - 1]


# --------------------------------------------------------------------------------- the memo
def test_a_trace_is_parsed_once_per_content(tmp_path: Path) -> None:
    """An unchanged file gives the same (immutable) object back; a rewrite of the same size
    within the same file-system clock tick gives the new rows, never the remembered ones."""
    p = mooncake(tmp_path, mc(0, 10, 5), mc(1000, 20, 6))
    first = load_trace(p)
    assert load_trace(p) is first
    mooncake(tmp_path, mc(0, 10, 5), mc(1000, 30, 6))  # same length in bytes, other content
    again = load_trace(p)
    assert again is not first and again.prompt_tokens.tolist() == [10, 30]
    assert first.prompt_tokens.tolist() == [10, 20]  # what a caller holds is untouched
    with pytest.raises(ValueError):
        first.prompt_tokens[0] = 1  # read-only: sharing cannot leak writes between runs
    # The bad-row policy is part of the key: skip mode reports its skips, fail mode raises.
    mooncake(tmp_path, mc(0), "not json", mc(5))
    assert load_trace(p, on_bad_row="skip").skipped_rows == 1
    assert "invalid JSON" in error(p)


def test_a_trace_carries_block_hashes_by_its_content_not_its_name(tmp_path: Path) -> None:
    # The replay detects the format from the first line; the env's observation layout asked
    # the file name, so a Mooncake trace saved as .json replayed its hashes while the
    # observation dropped the cache features (and an Azure CSV named .jsonl got them).
    moon = tmp_path / "mooncake.json"
    moon.write_text('\n{"timestamp": 0, "input_length": 600, "output_length": 4, "hash_ids": [1, 2]}\n')
    bom = tmp_path / "bom.json"  # with a UTF-8 byte-order mark, which the replay skips
    bom.write_bytes(b"\xef\xbb\xbf" + moon.read_bytes().lstrip())
    assert WorkloadConfig(kind="trace", trace_path=str(bom)).carries_block_hashes()
    azure = tmp_path / "azure.jsonl"
    azure.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,100,4\n")
    assert WorkloadConfig(kind="trace", trace_path=str(moon)).carries_block_hashes()
    assert not WorkloadConfig(kind="trace", trace_path=str(azure)).carries_block_hashes()
    # not readable (yet): the name decides, as before
    assert WorkloadConfig(kind="trace", trace_path=str(tmp_path / "later.jsonl")).carries_block_hashes()
    assert not WorkloadConfig(kind="trace", trace_path=str(tmp_path / "later.csv")).carries_block_hashes()
    assert WorkloadConfig(kind="trace", trace_path=str(azure), trace_format="mooncake").carries_block_hashes()
