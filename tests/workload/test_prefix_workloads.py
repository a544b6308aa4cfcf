"""Prefix workloads (multi_turn, tenants, rag), trace hash coverage, fits and statistics."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from disagg_gym.config import ConfigError, from_dict
from disagg_gym.rng import RngStreams
from disagg_gym.workload import TraceError, WorkloadConfig, load_trace
from disagg_gym.workload.prefix import cache_block_hashes
from disagg_gym.workload.prefix_fit import (
    fit_conversation,
    fit_documents,
    stream_stats,
    zipf_mle,
)
from disagg_gym.workload.prefix_workloads import (
    TAG_DOCUMENT,
    segment_block_ids,
    segment_id,
)
from disagg_gym.workload.source import ArrivalChunk


def cfg(**kw: Any) -> WorkloadConfig:
    return from_dict(WorkloadConfig, kw)


def rows(c: WorkloadConfig, seed: int = 0, **limits: Any) -> list[dict[str, Any]]:
    out = []
    for ch in c.build(RngStreams(seed), **limits):
        assert isinstance(ch, ArrivalChunk) and ch.hash_ids is not None
        assert ch.session_ids is not None
        for i in range(len(ch.arrival_s)):
            out.append(
                {
                    "t": float(ch.arrival_s[i]),
                    "prompt": int(ch.prompt_tokens[i]),
                    "output": int(ch.output_tokens[i]),
                    "ids": ch.hash_ids[i],
                    "block": ch.hash_block_tokens,
                    "sid": int(ch.session_ids[i]),
                }
            )
    return out


def common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# ------------------------------------------------------------------------- block ids of segments
def test_segment_block_ids_hand_example() -> None:
    # Segments of 20 and 30 tokens at 16-token blocks: 50 tokens = 4 blocks, the last partial.
    ids = segment_block_ids([1, 2], [20, 30], 16)
    assert len(ids) == 4
    same_first = segment_block_ids([1, 3], [20, 30], 16)
    assert ids[0] == same_first[0]  # tokens 0-15 are segment 1 in both
    assert ids[1] != same_first[1]  # tokens 16-31 hold the second segment's start
    # A clipped prompt keeps the ids of its full blocks; its partial block differs.
    assert segment_block_ids([1, 2], [20, 28], 16) == ids[:3]  # 48 tokens: 3 full blocks
    clipped = segment_block_ids([1, 2], [20, 25], 16)  # 45 tokens: block 2 holds 13
    assert len(clipped) == 3 and clipped[:2] == ids[:2] and clipped[2] != ids[2]


# ---------------------------------------------------------------------------------- multi_turn
MT = dict(
    kind="multi_turn", rate_per_s=2.0, lengths="azure_conv", system_prompt_tokens=100,
    turns_mean=4.0, think_time_s=30.0, user_tokens=300.0, user_sigma=0.5, turn_tokens=50.0,
    turn_sigma=0.5,
)  # fmt: skip


def _sessions(reqs: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Requests by session id, in arrival order."""
    by_sid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in reqs:
        by_sid[r["sid"]].append(r)
    return by_sid


def test_turn_k_prompt_is_turn_k_minus_1_prompt_answer_and_new_text() -> None:
    reqs = rows(cfg(**MT), horizon_s=2000)
    by_sid = _sessions(reqs)
    checked = 0
    for turns in by_sid.values():
        for prev, cur in zip(turns, turns[1:]):
            assert cur["t"] > prev["t"]
            assert cur["prompt"] > prev["prompt"] + prev["output"]  # + new text >= 1 token
            assert cur["ids"][: prev["prompt"] // 16] == prev["ids"][: prev["prompt"] // 16]
            prev_hashes = cache_block_hashes(prev["ids"], 16, prev["prompt"], 16)
            cur_hashes = cache_block_hashes(cur["ids"], 16, cur["prompt"], 16)
            assert cur_hashes[: len(prev_hashes)] == prev_hashes
            checked += 1
        for a, b, c in zip(turns, turns[1:], turns[2:]):
            # Turns k and k+1 both hold turn k-1's prompt + answer, block for block.
            full = (a["prompt"] + a["output"]) // 16
            hb = cache_block_hashes(b["ids"], 16, b["prompt"], 16)
            hc = cache_block_hashes(c["ids"], 16, c["prompt"], 16)
            assert hb[:full] == hc[:full]
            assert common_prefix(hb, hc) == len(hb)  # turn k+1 extends turn k exactly
    assert checked > 100


def test_conversations_share_only_the_system_prompt() -> None:
    reqs = rows(cfg(**MT), max_requests=300)
    firsts: dict[int, tuple[int, ...]] = {}
    for r in reqs:
        firsts.setdefault(r["sid"], cache_block_hashes(r["ids"], 16, r["prompt"], 16))
    heads = list(firsts.values())
    assert len(heads) > 20
    assert {common_prefix(heads[0], h) for h in heads[1:]} == {100 // 16}


def test_think_time_and_turns_follow_their_distributions() -> None:
    reqs = rows(cfg(**{**MT, "rate_per_s": 5.0, "think_time_s": 10.0}), horizon_s=4000)
    by_sid: dict[int, list[float]] = defaultdict(list)
    for r in reqs:
        by_sid[r["sid"]].append(r["t"])
    gaps = np.concatenate([np.diff(t) for t in by_sid.values() if len(t) > 1])
    assert gaps.mean() == pytest.approx(10.0, rel=0.03)  # Exp(10 s): sd of the mean ~0.6 %
    counts = np.array([len(t) for s, t in by_sid.items() if by_sid[s][0] < 3000])
    assert counts.mean() == pytest.approx(4.0, rel=0.05)  # Geometric(1/4), mean 4
    assert np.mean(counts == 1) == pytest.approx(0.25, abs=0.03)
    assert len(reqs) / 4000 == pytest.approx(5.0, rel=0.05)  # rate_per_s is requests/s


def test_multi_turn_session_ends_at_the_context_cap() -> None:
    reqs = rows(cfg(**{**MT, "max_prompt_tokens": 800}), max_requests=500)
    assert max(r["prompt"] for r in reqs) <= 800
    # The session *ends* rather than going on with clipped prompts: every later turn still holds
    # the previous prompt + answer + new text in full (longer than both), up to the cap.
    by_sid = _sessions(reqs)
    checked = 0
    for turns in by_sid.values():
        for prev, cur in zip(turns, turns[1:]):
            assert cur["prompt"] > prev["prompt"] + prev["output"], (prev, cur)
            checked += 1
    assert checked > 50
    # ... and the cap binds: at least one session stops before the turns its
    # Geometric(1/4) draw gave it, which shows as fewer turns per session than uncapped
    free = rows(cfg(**MT), max_requests=500)
    turns_of = lambda rs: len(rs) / len({r["sid"] for r in rs})  # noqa: E731
    assert turns_of(reqs) < turns_of(free)


# ---------------------------------------------------------------------------------- tenants, rag
def test_tenants_share_exactly_their_system_prompt() -> None:
    c = cfg(
        kind="tenants", rate_per_s=10.0, num_tenants=3, system_prompt_tokens=200,
        user_tokens=100.0, user_sigma=0.3,
    )  # fmt: skip
    reqs = rows(c, max_requests=200)
    heads = [cache_block_hashes(r["ids"], 16, r["prompt"], 16) for r in reqs]
    shared = Counter(common_prefix(heads[0], h) for h in heads[1:])
    assert set(shared) == {0, 200 // 16}  # another tenant, or the same system prompt
    assert len({h[0] for h in heads}) == 3


def test_rag_document_popularity_is_zipf() -> None:
    n_docs, s, n = 20, 1.1, 20000
    c = cfg(
        kind="rag", rate_per_s=100.0, num_documents=n_docs, document_zipf_s=s,
        document_tokens=16.0, document_sigma=0.0, user_tokens=16.0, user_sigma=0.0,
    )  # fmt: skip
    reqs = rows(c, max_requests=n)
    doc_of = {segment_block_ids([segment_id(TAG_DOCUMENT, i)], [16], 16)[0]: i for i in range(n_docs)}
    observed = np.bincount([doc_of[r["ids"][0]] for r in reqs], minlength=n_docs)
    expected = n * np.array([(i + 1) ** -s for i in range(n_docs)])
    expected /= sum((i + 1) ** -s for i in range(n_docs))
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 43.8  # chi-square, 19 degrees of freedom, p = 0.001


def test_rag_requests_on_one_document_share_system_prompt_and_document() -> None:
    c = cfg(
        kind="rag", rate_per_s=10.0, num_documents=2, document_zipf_s=0.0,
        system_prompt_tokens=100, document_tokens=1000.0, document_sigma=0.0, user_tokens=50.0,
    )  # fmt: skip
    reqs = rows(c, max_requests=50)
    heads = [cache_block_hashes(r["ids"], 16, r["prompt"], 16) for r in reqs]
    assert {common_prefix(heads[0], h) for h in heads[1:]} == {100 // 16, 1100 // 16}


# --------------------------------------------------------------------------- determinism, errors
@pytest.mark.parametrize("kind", ["multi_turn", "tenants", "rag"])
def test_same_seed_same_workload_and_limits_do_not_move_requests(kind: str) -> None:
    c = cfg(kind=kind, rate_per_s=5.0, system_prompt_tokens=64, document_tokens=500.0)
    a = rows(c, seed=3, horizon_s=200)
    assert a == rows(c, seed=3, horizon_s=200)
    assert a != rows(c, seed=4, horizon_s=200)
    assert rows(c, seed=3, max_requests=40) == a[:40]
    assert all(r["block"] == 16 and len(r["ids"]) == -(-r["prompt"] // 16) for r in a)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kind": "tenants"}, "key 'system_prompt_tokens': kind 'tenants' shares system prompts"),
        ({"kind": "multi_turn", "turns_mean": 0.5}, "key 'turns_mean'"),
        ({"kind": "rag", "num_documents": 0}, "key 'num_documents'"),
        ({"kind": "rag", "document_zipf_s": -1}, "key 'document_zipf_s'"),
        ({"kind": "rag", "prefix_block_tokens": 0}, "key 'prefix_block_tokens'"),
        ({"kind": "multi_turn", "think_time_s": 0}, "key 'think_time_s'"),
        ({"kind": "dialogue"}, "key 'kind'"),
    ],
)
def test_bad_prefix_parameters_are_clear_errors(kw: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigError, ValueError)) as exc:
        cfg(**kw).build(RngStreams(0), horizon_s=10)
    assert message in str(exc.value) and "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- traces and fits
def mooncake(tmp_path: Path, *rows_: dict[str, Any]) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_))
    return path


def mc(ts: float, inp: int, out: int, ids: list[int]) -> dict[str, Any]:
    return {"timestamp": ts, "input_length": inp, "output_length": out, "hash_ids": ids}


def test_trace_replay_carries_block_size_and_rejects_short_hash_lists(tmp_path: Path) -> None:
    path = mooncake(tmp_path, mc(0, 600, 5, [1, 2]), mc(1000, 700, 5, [1, 3]))
    ch = cfg(kind="trace", trace_path=str(path)).build(RngStreams(0)).next_chunk()
    assert ch is not None and ch.hash_block_tokens == 512 and ch.hash_ids == [(1, 2), (1, 3)]
    for skip in ("fail", "skip"):  # every row short: the block size is wrong, skipping or not
        with pytest.raises(TraceError) as exc:
            cfg(kind="trace", trace_path=str(path), trace_block_tokens=256, on_bad_row=skip).build(RngStreams(0))
        assert str(exc.value) == (
            f"{path}:1: 2 hash_ids of 256 tokens cover 512 tokens, fewer than its 600 prompt tokens "
            "(2 such rows); set workload.trace_block_tokens to the trace's block size (Mooncake traces: 512)"
        )


def test_a_block_size_larger_than_the_traces_is_refused(tmp_path: Path) -> None:
    # 600 and 700 prompt tokens in two 512-token ids each; read as 1,024-token ids, one id would
    # cover each prompt: the second id is a whole block too many (it used to be accepted, and
    # every prompt then looked like a longer shared prefix)
    path = mooncake(tmp_path, mc(0, 600, 5, [1, 2]), mc(1000, 700, 5, [1, 3]))
    with pytest.raises(TraceError) as exc:
        cfg(kind="trace", trace_path=str(path), trace_block_tokens=1024).build(RngStreams(0))
    assert str(exc.value) == (
        f"{path}:1: 2 hash_ids of 1024 tokens cover 2048 tokens, a whole block more than its 600 prompt "
        "tokens need (1 ids), like 2 of the 2 rows with hash_ids: workload.trace_block_tokens is larger "
        "than the trace's block size (Mooncake traces: 512)"
    )
    # exactly ceil(prompt / block) ids is right, a full last block included (1,024 = 2 x 512);
    # a minority of rows with extra ids (clipped prompts) is accepted
    ok = mooncake(tmp_path, mc(0, 1024, 5, [1, 2]), mc(1000, 1025, 5, [1, 2, 3]), mc(2000, 10, 5, [4, 5]))
    assert cfg(kind="trace", trace_path=str(ok)).build(RngStreams(0)).next_chunk() is not None


def test_a_row_whose_hashes_miss_part_of_its_prompt_is_named_by_line_or_skipped(tmp_path: Path) -> None:
    # line 2 is blank; line 3 holds 2 blocks of 512 tokens for a 1100-token prompt
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(mc(0, 600, 5, [1, 2])) + "\n\n" + json.dumps(mc(1000, 1100, 5, [1, 3])) + "\n"
                    + json.dumps(mc(2000, 10, 5, [4])) + "\n")
    with pytest.raises(TraceError) as exc:
        cfg(kind="trace", trace_path=str(path)).build(RngStreams(0))
    assert str(exc.value) == (
        f"{path}:3: 2 hash_ids of 512 tokens cover 1024 tokens, fewer than its 1100 prompt tokens "
        "(1 such rows); set workload.trace_block_tokens to the trace's block size (Mooncake traces: 512), "
        "or workload.on_bad_row: skip to drop such rows"
    )
    src = cfg(kind="trace", trace_path=str(path), on_bad_row="skip").build(RngStreams(0))
    ch = src.next_chunk()
    assert ch is not None and ch.hash_ids == [(1, 2), (4,)] and ch.prompt_tokens.tolist() == [600, 10]
    assert src.skipped_rows == 1 and src.skip_reasons == (
        f"{path}:3: 2 hash_ids of 512 tokens cover 1024 tokens, fewer than its 1100 prompt tokens",)


def test_stream_stats_and_fits_on_a_hand_made_trace(tmp_path: Path) -> None:
    path = mooncake(
        tmp_path,
        mc(0, 1200, 100, [0, 1, 2]),  # turn 1; full blocks 0, 1
        mc(10_000, 1500, 7, [0, 1, 4]),  # continues row 1: reuses 2 blocks; new text 200
        mc(20_000, 800, 9, [0, 5]),  # a first turn: reuses block 0 only
    )
    c = cfg(kind="trace", trace_path=str(path))
    s = stream_stats(c.build(RngStreams(0)), 512)
    # Full blocks 2 + 2 + 1 = 5; reused 0 + 2 + 1 = 3; reused tokens 1536 of 3500.
    assert (s.blocks, s.reused_blocks) == (5, 3)
    assert s.reuse_ratio == pytest.approx(0.6)
    assert s.hit_token_fraction == pytest.approx(1536 / 3500)
    fit = fit_conversation(load_trace(path))
    assert fit.continuation_fraction == pytest.approx(1 / 3)
    assert fit.turns_mean == pytest.approx(1.5)
    assert fit.think_time_mean_s == pytest.approx(10.0)
    assert fit.new_text_median_tokens == pytest.approx(200.0)
    assert fit.shared_first_blocks == 1 and fit.ids_at_several_positions == 0
    docs = fit_documents(load_trace(path))
    assert docs.documents == 1 and docs.shared_prefix_median_tokens == pytest.approx(512.0)


def test_zipf_mle_recovers_the_exponent_from_expected_counts() -> None:
    ranks = np.arange(1, 201)
    counts = np.rint(1e6 * ranks**-0.8 / (ranks**-0.8).sum())
    assert zipf_mle(counts) == pytest.approx(0.8, abs=2e-3)
    assert zipf_mle(np.full(50, 7)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "name", ["multi-turn-chat.yaml", "tenant-prompts.yaml", "rag-documents.yaml"]
)
def test_example_workload_configs_load_and_generate(name: str) -> None:
    from disagg_gym.scenario import load_scenario

    path = Path(__file__).resolve().parents[2] / "configs" / "workloads" / name
    scen = load_scenario(str(path))
    assert scen.workload.kind in ("multi_turn", "tenants", "rag")
    reqs = rows(scen.workload, max_requests=30)
    assert len(reqs) == 30 and all(len(r["ids"]) == -(-r["prompt"] // 16) for r in reqs)


TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "traces"


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"shared traces not found at {TRACES}")
@pytest.mark.parametrize(
    ("name", "readme_hit_fraction", "reuse_512", "continuations"),
    [
        ("mooncake_conversation_trace.jsonl", 0.374, 0.3819, 0.3210),
        ("mooncake_synthetic_trace.jsonl", 0.651, 0.6594, 0.3135),
    ],
)
def test_real_trace_statistics_agree_with_the_readme_and_docs(
    name: str, readme_hit_fraction: float, reuse_512: float, continuations: float
) -> None:
    c = cfg(kind="trace", trace_path=str(TRACES / name))
    # The traces README's "ideal prefix-cache hit fraction" (computed there, independently,
    # from 512-token ids capped at input_length) vs ours at 16-token cache blocks.
    fine = stream_stats(c.build(RngStreams(0)), 16)
    assert fine.hit_token_fraction == pytest.approx(readme_hit_fraction, abs=0.001)
    # The figures docs/workloads.md records.
    assert stream_stats(c.build(RngStreams(0)), 512).reuse_ratio == pytest.approx(reuse_512, abs=5e-5)
    fit = fit_conversation(load_trace(TRACES / name))
    assert fit.continuation_fraction == pytest.approx(continuations, abs=5e-5)
    assert fit.ids_at_several_positions == 0


@pytest.mark.parametrize("key", ["num_documents", "num_tenants"])
def test_a_catalog_too_large_to_build_is_refused_up_front(key: str) -> None:
    # 10^9 documents allocated 8 GB arrays mid-run (a traceback, or the machine's memory)
    from disagg_gym.config import ConfigError
    from disagg_gym.scenario import load_scenario

    with pytest.raises(ConfigError, match=rf"key 'workload.{key}': expected a value <= 10000000 \(got 1000000000\)"):
        load_scenario("small-route", {"workload.kind": "rag", f"workload.{key}": 10**9})
