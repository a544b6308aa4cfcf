"""Prefix-block hashes: the trace-to-cache block mapping, chaining, determinism, statistics."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disagg_gym.workload.prefix import (
    CHAIN_MULT,
    GOLDEN,
    ROOT,
    cache_block_hashes,
    cache_block_hashes_many,
    mix64,
    prefix_stats,
)

M64 = (1 << 64) - 1


def splitmix_finaliser(z: int) -> int:
    """SplitMix64's output function, in plain Python ints (the published constants)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def reference(ids: tuple[int, ...], b: int, prompt: int, c: int) -> tuple[int, ...]:
    """The module docstring's definition, one grain at a time (no vectorised scan)."""
    g = math.gcd(b, c)
    per_id, per_cache = b // g, c // g
    s, out = ROOT, []
    for i in range((prompt // c) * per_cache):
        h = ids[i // per_id] & M64
        f = splitmix_finaliser((splitmix_finaliser(h) + (i % per_id + 1) * GOLDEN) & M64)
        s = (CHAIN_MULT * s + f) & M64
        if (i + 1) % per_cache == 0:
            out.append(s)
    return tuple(out)


def test_mix64_matches_splitmix64_published_first_output() -> None:
    # SplitMix64 seeded 0 returns mix(0 + 0x9E3779B97F4A7C15) = 0xE220A8397B1DCDAF first.
    assert int(mix64(np.array([GOLDEN], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_counts_are_full_cache_blocks_only() -> None:
    # 600 tokens of 512-token ids (7, 9) at 16-token blocks: 37 full blocks (592 tokens).
    h = cache_block_hashes((7, 9), 512, 600, 16)
    assert len(h) == 37
    assert len(cache_block_hashes((7, 9), 512, 607, 16)) == 37
    assert len(cache_block_hashes((7, 9), 512, 608, 16)) == 38
    assert len(cache_block_hashes((7,), 512, 15, 16)) == 0
    assert cache_block_hashes((7,), 512, 0, 16) == ()
    assert cache_block_hashes((), 512, 600, 16) == ()
    assert cache_block_hashes(None, 512, 600, 16) == ()
    assert len(cache_block_hashes((7, 9), 512, 1024, 512)) == 2
    assert len(cache_block_hashes((7, 9), 512, 1023, 512)) == 1
    assert all(isinstance(x, int) and 0 <= x <= M64 for x in h)


def test_coarse_block_becomes_children_and_shared_prefix_is_exact() -> None:
    a = cache_block_hashes((7, 9), 512, 600, 16)
    one = cache_block_hashes((7,), 512, 512, 16)
    other = cache_block_hashes((7, 10), 512, 1024, 16)
    assert a[:32] == one  # the 32 children of block 7 do not depend on what follows
    assert other[:32] == one
    assert not set(a[32:]) & set(other[32:])  # block 9 vs 10: every child differs
    assert len(set(one)) == 32  # children of one block are distinct
    assert not set(cache_block_hashes((8, 9), 512, 1024, 16)) & set(a)


def test_chained_hashes_diverge_for_good_after_a_difference() -> None:
    base = cache_block_hashes((1, 2, 3, 4), 16, 64, 16)
    changed = cache_block_hashes((1, 2, 99, 4), 16, 64, 16)
    assert base[:2] == changed[:2]
    assert base[2] != changed[2] and base[3] != changed[3]  # block 4 equal, prefix not
    # The same id at another position is another block.
    assert not set(cache_block_hashes((4, 1), 16, 32, 16)) & set(base)


def test_coarser_cache_blocks_take_the_chain_at_their_last_grain() -> None:
    ids = tuple(range(100, 110))
    fine = cache_block_hashes(ids, 16, 160, 16)
    assert cache_block_hashes(ids, 16, 160, 64) == (fine[3], fine[7])  # 2 blocks of 64
    # gcd(512, 48) = 16: a 48-token block ends at every third 16-token grain.
    fine = cache_block_hashes((5, 6), 512, 1024, 16)
    coarse = cache_block_hashes((5, 6), 512, 1024, 48)
    assert len(coarse) == 21 and coarse == fine[2::3][:21]


def test_ids_beyond_a_clipped_prompt_are_ignored_and_ints_taken_mod_2_64() -> None:
    assert cache_block_hashes((7, 9, 11), 512, 600, 16) == cache_block_hashes((7, 9), 512, 600, 16)
    assert cache_block_hashes((-1,), 512, 512, 16) == cache_block_hashes((M64,), 512, 512, 16)


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=6),
    b=st.sampled_from([1, 3, 16, 48, 64, 512]),
    c=st.sampled_from([1, 7, 16, 32, 64, 512]),
    frac=st.floats(0, 1),
)
def test_vectorised_scan_equals_the_definition(ids: list[int], b: int, c: int, frac: float) -> None:
    prompt = int(frac * len(ids) * b)
    assert cache_block_hashes(tuple(ids), b, prompt, c) == reference(tuple(ids), b, prompt, c)


@settings(max_examples=40, deadline=None)
@given(
    reqs=st.lists(
        st.tuples(st.lists(st.integers(0, 2**64 - 1), max_size=5), st.floats(0, 1)), max_size=12
    ),
    b=st.sampled_from([16, 48, 512]),
    c=st.sampled_from([1, 16, 64]),
)
def test_many_equals_one_by_one(reqs: list[tuple[list[int], float]], b: int, c: int) -> None:
    ids = [tuple(h) for h, _ in reqs]
    prompts = [int(f * len(h) * b) for h, f in reqs]
    assert cache_block_hashes_many(ids, b, prompts, c) == [
        cache_block_hashes(h, b, p, c) for h, p in zip(ids, prompts)
    ]


def test_many_batches_long_and_short_requests_like_one_by_one() -> None:
    ids = [tuple(range(i, i + 300)) for i in range(30)] + [(1, 2)] * 20 + [()]
    prompts = [300 * 512 - 7 * i for i in range(30)] + [1000] * 20 + [0]
    assert cache_block_hashes_many(ids, 512, np.asarray(prompts), 16) == [
        cache_block_hashes(h, 512, p, 16) for h, p in zip(ids, prompts)
    ]
    with pytest.raises(ValueError, match=r"^request 1: hash_ids cover 512 tokens"):
        cache_block_hashes_many([(1,), (2,)], 512, [512, 513], 16)
    with pytest.raises(ValueError, match="2 hash_ids lists but 1 prompt_tokens values"):
        cache_block_hashes_many([(1,), (2,)], 512, [512], 16)


def test_long_prompts_beyond_the_power_table_match_the_definition() -> None:
    ids = tuple(range(40))
    assert cache_block_hashes(ids, 512, 20000, 1) == reference(ids, 512, 20000, 1)


def test_hashes_are_the_same_in_a_fresh_process() -> None:
    code = (
        "from disagg_gym.workload.prefix import cache_block_hashes as f;"
        "print(f((3, 1, 4, 1, 5), 512, 2500, 16)[-1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == reference((3, 1, 4, 1, 5), 512, 2500, 16)[-1]
    assert int(out.stdout) == cache_block_hashes((3, 1, 4, 1, 5), 512, 2500, 16)[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (((1,), 0, 10, 16), "trace_block_tokens must be a positive integer number of tokens (got 0)"),
        (((1,), 512, 10, -4), "cache_block_tokens must be a positive integer number of tokens (got -4)"),
        (((1,), True, 10, 16), "trace_block_tokens must be a positive integer"),
        (((1,), 512.0, 10, 16), "trace_block_tokens must be a positive integer"),
        (((1,), 512, -1, 16), "prompt_tokens must be a non-negative integer (got -1)"),
        (
            ((1, 2), 512, 1025, 16),
            "hash_ids cover 1024 tokens (2 blocks of 512) but the prompt has 1025; "
            "is trace_block_tokens right?",
        ),
    ],
)
def test_bad_arguments_are_one_line_value_errors(args: tuple, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        cache_block_hashes(*args)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_prefix_stats_hand_computed() -> None:
    a, b, c, d = 11, 12, 13, 14
    st_ = prefix_stats([(a, b), (a, b, c), (a, d), ()], [40, 50, 33, 5], 16)
    # hits: 0, 2 (a, b), 1 (a), 0 -> 3 of 7 blocks; reused tokens 0, 32, 16, 0 of 128.
    assert (st_.requests, st_.blocks, st_.reused_blocks) == (4, 7, 3)
    assert st_.reuse_ratio == pytest.approx(3 / 7)
    assert st_.hit_token_fraction == pytest.approx(48 / 128)
    assert st_.zero_hit_fraction == pytest.approx(0.5)
    assert st_.hit_fraction_mean == pytest.approx((0 + 32 / 50 + 16 / 33 + 0) / 4)
    assert st_.hit_tokens_quantiles[2] == pytest.approx(8.0)  # median of 0, 0, 16, 32


def test_prefix_stats_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one request"):
        prefix_stats([], [], 16)
    with pytest.raises(ValueError, match="2 hash lists but 1 prompt lengths"):
        prefix_stats([(1,), (2,)], [16], 16)
    with pytest.raises(ValueError, match="block_tokens must be a positive integer"):
        prefix_stats([(1,)], [16], 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace", "/nonexistent/t.jsonl"], "/nonexistent/t.jsonl: file not found"),
        (["--block-tokens", "0"], "argument --block-tokens: expected a positive integer (got '0')"),
        (["--config", "configs/workloads/multi-turn-chat.yaml", "--set", "nokey=3", "--horizon-s", "5"],
         "key 'nokey': unknown key"),
        (["--config", "BAD_YAML"], "not valid YAML"),
    ],
)
def test_prefix_stats_script_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    # each was a traceback (missing trace, bad YAML, unknown key) or accepted (block size 0)
    root = Path(__file__).resolve().parents[2]
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [\n")
    args = [str(bad) if a == "BAD_YAML" else a for a in args]
    res = subprocess.run([sys.executable, str(root / "scripts" / "prefix_stats.py"), *args], cwd=root,
                         capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert message in res.stderr and res.stderr.strip().splitlines()[-1].startswith("prefix_stats.py: error: ")
