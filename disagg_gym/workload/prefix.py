"""Prefix-block hashes: mapping trace blocks onto cache blocks, chained hashing, reuse statistics.

A request's prompt is described by *prefix-block ids*: one int per ``block_tokens`` tokens
(Mooncake traces: 512-token blocks; the generators in ``prefix_workloads``: 16 by default), the
last block possibly partial. Equal ids at the same position after an equal prefix mean equal
tokens. A KV cache stores blocks of its own size (``cache_block_tokens``, 16 in vLLM), so the
core maps ids onto cache-block hashes with ONE function, :func:`cache_block_hashes`.

**Definition.** Let ``B`` be the id block size, ``C`` the cache block size and
``g = gcd(B, C)``. The prompt is cut into ``g``-token *grains*; grain ``i`` lies in id block
``b = i // (B/g)`` at position ``j = i % (B/g)`` and gets the key
``f_i = mix(mix(h_b) + (j + 1) * GOLDEN)`` (``mix`` is the SplitMix64 finaliser, arithmetic
mod 2**64). Keys are chained as vLLM chains block hashes (each hash depends on its parent's):
``s_{-1} = ROOT``, ``s_i = (CHAIN_MULT * s_{i-1} + f_i) mod 2**64``. Cache block ``k`` covers
grains ``k*C/g .. (k+1)*C/g - 1`` and its hash is the chain value of its last grain,
``s_{(k+1)*C/g - 1}``. Only full cache blocks get a hash (vLLM caches full blocks only): a
prompt of ``P`` tokens has ``floor(P / C)`` cache-block hashes.

Consequences: two prompts share the hash of cache block ``k`` exactly when (up to 64-bit
collisions) their ids agree on every id block overlapping tokens ``[0, (k+1)*C)``, so equal
hashes mean equal prefixes and the first difference changes every later hash. A coarse id
block (512 tokens) becomes ``512/16 = 32`` child hashes derived from ``(h, j)`` and the chain;
an id block that differs shares nothing at the finer grain (the trace cannot say more).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import chain as _chained
from dataclasses import dataclass, field

import numpy as np

#: Cache block size of vLLM's paged KV cache, tokens (the default of the core's cache key).
DEFAULT_CACHE_BLOCK_TOKENS = 16
#: Block size of ``hash_ids`` in the Mooncake FAST'25 traces, tokens.
MOONCAKE_BLOCK_TOKENS = 512

_M64 = (1 << 64) - 1
#: SplitMix64 increment (odd): spreads the child position ``j`` over 64 bits.
GOLDEN = 0x9E3779B97F4A7C15
#: Multiplier of the chain (odd, so invertible mod 2**64; from Knuth's MMIX LCG).
CHAIN_MULT = 0x5851F42D4C957F2D
#: Chain value before the first block (vLLM's ``NONE_HASH`` plays this role).
ROOT = 0x243F6A8885A308D3  # pi's fractional hex digits: a nothing-up-my-sleeve constant
_CHAIN_INV = pow(CHAIN_MULT, -1, 1 << 64)

_U = np.uint64
#: Grains whose chain powers are tabulated once (read-only); longer prompts compute their own.
_TABLE_GRAINS = 1 << 14


def _powers(base: int, n: int) -> np.ndarray:
    """``base**0 .. base**(n-1)`` mod 2**64 as ``uint64`` (numpy products wrap)."""
    out = np.empty(n, dtype=np.uint64)
    out[0] = 1
    if n > 1:
        out[1:] = np.cumprod(np.full(n - 1, base, dtype=np.uint64))
    return out


_POW_A = _powers(CHAIN_MULT, _TABLE_GRAINS)
_POW_INV = _powers(_CHAIN_INV, _TABLE_GRAINS)
_POW_A.flags.writeable = False
_POW_INV.flags.writeable = False


def mix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser (Steele, Lea and Flood 2014), elementwise on ``uint64``.

    ``mix64(GOLDEN)`` is ``0xE220A8397B1DCDAF``, the first output of SplitMix64 seeded 0.
    """
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
    out: np.ndarray = z ^ (z >> _U(31))
    return out


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer number of tokens (got {value!r})")
    return int(value)


def cache_block_hashes(
    hash_ids: Sequence[int] | None,
    trace_block_tokens: int,
    prompt_tokens: int,
    cache_block_tokens: int = DEFAULT_CACHE_BLOCK_TOKENS,
) -> tuple[int, ...]:
    """Chained hashes of the full cache blocks of one prompt (the module docstring defines them).

    Args:
        hash_ids: The request's prefix-block ids (``Request.hash_ids``), one per
            ``trace_block_tokens`` tokens, the last one possibly partial; ints, taken mod
            2**64. ``None`` or empty: no prefix information, no hashes.
        trace_block_tokens: Tokens per id block (``Request.hash_block_tokens``; 512 for
            Mooncake).
        prompt_tokens: The prompt length. Ids beyond it (a clipped prompt) are ignored.
        cache_block_tokens: Tokens per cache block (vLLM: 16).

    Returns:
        ``floor(prompt_tokens / cache_block_tokens)`` hashes, ints in ``[0, 2**64)``, block 0
        first; ``()`` without ids. Example: ids ``(7, 9)`` at 512 tokens, a 600-token prompt
        and 16-token cache blocks give 37 hashes: 32 children of block 7, then 5 of block 9
        (tokens 512-591; tokens 592-599 are a partial block and get none).

    Raises:
        ValueError: a block size or ``prompt_tokens`` is not a positive integer, or the ids
            cover fewer than ``prompt_tokens`` tokens (a wrong ``trace_block_tokens``?).
    """
    b_tok = _positive_int("trace_block_tokens", trace_block_tokens)
    c_tok = _positive_int("cache_block_tokens", cache_block_tokens)
    if isinstance(prompt_tokens, bool) or not isinstance(prompt_tokens, (int, np.integer)) or (
        prompt_tokens < 0
    ):
        raise ValueError(f"prompt_tokens must be a non-negative integer (got {prompt_tokens!r})")
    if not hash_ids:
        return ()
    if len(hash_ids) * b_tok < prompt_tokens:
        raise ValueError(
            f"hash_ids cover {len(hash_ids) * b_tok} tokens ({len(hash_ids)} blocks of "
            f"{b_tok}) but the prompt has {prompt_tokens}; is trace_block_tokens right?"
        )
    n_cache = int(prompt_tokens) // c_tok
    if n_cache == 0:
        return ()
    g = math.gcd(b_tok, c_tok)
    per_id, per_cache = b_tok // g, c_tok // g
    n = n_cache * per_cache  # grains up to the end of the last full cache block
    n_ids = -(-n // per_id)
    ids = np.fromiter((int(h) & _M64 for h in hash_ids[:n_ids]), dtype=np.uint64, count=n_ids)
    pos = np.arange(n, dtype=np.uint64)
    keys = mix64(mix64(ids)[pos // _U(per_id)] + (pos % _U(per_id) + _U(1)) * _U(GOLDEN))
    # s_i = A^(i+1) ROOT + sum_{t<=i} A^(i-t) f_t = A^i (A ROOT + sum_{t<=i} A^-t f_t), mod 2**64;
    # numpy's uint64 products and cumulative sums wrap, so the scan is exact.
    if n <= _TABLE_GRAINS:
        a_i, inv_i = _POW_A[:n], _POW_INV[:n]  # A^0 .. A^(n-1), A^0 .. A^-(n-1)
    else:
        a_i, inv_i = _powers(CHAIN_MULT, n), _powers(_CHAIN_INV, n)
    chain = a_i * (_U(CHAIN_MULT * ROOT & _M64) + np.cumsum(inv_i * keys, dtype=np.uint64))
    return tuple(chain[per_cache - 1 :: per_cache].tolist())


def cache_block_hashes_many(
    hash_ids: Sequence[Sequence[int] | None],
    trace_block_tokens: int,
    prompt_tokens: Sequence[int] | np.ndarray,
    cache_block_tokens: int = DEFAULT_CACHE_BLOCK_TOKENS,
) -> list[tuple[int, ...]]:
    """``[cache_block_hashes(h, trace_block_tokens, p, cache_block_tokens) for h, p in ...]``.

    One vectorised pass over all requests (e.g. an ``ArrivalChunk``'s ``hash_ids`` and
    ``prompt_tokens``), several times faster than calling ``cache_block_hashes`` per request.
    Each request's chain starts at ``ROOT``: ``s_i = A^(i-o+1) ROOT + A^i (G_i - G_(o-1))``
    with ``o`` the request's first grain and ``G`` the running sum of ``A^-t f_t`` over the
    batch. Requests of more than ``_TABLE_GRAINS / 64`` (256) grains go one by one through
    ``cache_block_hashes`` (their arrays are long enough; batching would only add gathers).

    Raises:
        ValueError: as ``cache_block_hashes`` (the message names the request's index), or
            ``hash_ids`` and ``prompt_tokens`` differ in length.
    """
    b_tok = _positive_int("trace_block_tokens", trace_block_tokens)
    c_tok = _positive_int("cache_block_tokens", cache_block_tokens)
    prompts = np.asarray(prompt_tokens).tolist()
    if len(prompts) != len(hash_ids):
        raise ValueError(
            f"{len(hash_ids)} hash_ids lists but {len(prompts)} prompt_tokens values"
        )
    g = math.gcd(b_tok, c_tok)
    per_id, per_cache = b_tok // g, c_tok // g
    n_cache: list[int] = []
    n_ids: list[int] = []
    for r, (ids, p) in enumerate(zip(hash_ids, prompts)):
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise ValueError(f"request {r}: prompt_tokens must be a non-negative integer (got {p!r})")
        if not ids:
            n_cache.append(0)
            n_ids.append(0)
            continue
        if len(ids) * b_tok < p:
            raise ValueError(
                f"request {r}: hash_ids cover {len(ids) * b_tok} tokens ({len(ids)} blocks of "
                f"{b_tok}) but the prompt has {p}; is trace_block_tokens right?"
            )
        k = p // c_tok
        n_cache.append(k)
        n_ids.append(-(-(k * per_cache) // per_id))
    # Short requests are hashed in batches of about _TABLE_GRAINS grains (arrays stay in cache
    # and use the power tables); long ones one by one.
    out: list[tuple[int, ...]] = [()] * len(n_cache)
    big = _TABLE_GRAINS // 64
    batch: list[int] = []
    grains = 0
    for r, k in enumerate(n_cache):
        if k == 0:
            continue
        if k * per_cache > big:
            out[r] = cache_block_hashes(hash_ids[r], b_tok, prompts[r], c_tok)
            continue
        if grains + k * per_cache > _TABLE_GRAINS:
            _hash_batch(hash_ids, batch, n_cache, n_ids, per_id, per_cache, out)
            batch, grains = [], 0
        batch.append(r)
        grains += k * per_cache
    if batch:
        _hash_batch(hash_ids, batch, n_cache, n_ids, per_id, per_cache, out)
    return out


def _hash_batch(
    hash_ids: Sequence[Sequence[int] | None],
    batch: list[int],
    n_cache_all: list[int],
    n_ids_all: list[int],
    per_id: int,
    per_cache: int,
    out: list[tuple[int, ...]],
) -> None:
    """The vectorised scan of ``cache_block_hashes_many`` for requests ``batch`` (into ``out``)."""
    n_cache = [n_cache_all[r] for r in batch]
    n_ids = [n_ids_all[r] for r in batch]
    grains = np.asarray(n_cache, dtype=np.int64) * per_cache
    total = int(grains.sum())
    count = int(sum(n_ids))
    try:
        # Ids within int64 (every trace's): read in C; the uint64 view of an int64 is h & _M64.
        all_ids = np.fromiter(
            _chained.from_iterable(hash_ids[r][:k] for r, k in zip(batch, n_ids)),  # type: ignore[index]
            dtype=np.int64,
            count=count,
        ).view(np.uint64)
    except (OverflowError, TypeError, ValueError):
        all_ids = np.fromiter(
            (int(h) & _M64 for r, k in zip(batch, n_ids) for h in hash_ids[r][:k]),  # type: ignore[index]
            dtype=np.uint64,
            count=count,
        )
    req = np.repeat(np.arange(len(batch)), grains)
    start = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(grains)[:-1]))
    id_start = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(n_ids)[:-1]))
    local = np.arange(total, dtype=np.int64) - start[req]
    keys = mix64(
        mix64(all_ids)[id_start[req] + local // per_id]
        + (local % per_id + 1).astype(np.uint64) * _U(GOLDEN)
    )
    pow_a, pow_inv = _POW_A[:total], _POW_INV[:total]  # total <= _TABLE_GRAINS by construction
    run = np.cumsum(pow_inv * keys, dtype=np.uint64)
    before = np.concatenate((np.zeros(1, dtype=np.uint64), run))[start]  # G_(o-1), 0 at o = 0
    # A^(i-o+1) ROOT = A^i * (A^-o * A ROOT): one per-request constant K = G_(o-1) - A^-o A ROOT.
    k_req = before - pow_inv[start] * _U(CHAIN_MULT * ROOT & _M64)
    chain = pow_a * (run - k_req[req])
    flat = chain[local % per_cache == per_cache - 1].tolist()
    pos = 0
    for r, k in zip(batch, n_cache):
        out[r] = tuple(flat[pos : pos + k])
        pos += k


# ---------------------------------------------------------------------------------- statistics
@dataclass(frozen=True, slots=True)
class PrefixStats:
    """Prefix-reuse statistics of a request stream (``prefix_stats`` defines each figure)."""

    requests: int = field(metadata={"help": "requests counted"})
    block_tokens: int = field(metadata={"help": "cache block size the figures use, tokens"})
    prompt_tokens: int = field(metadata={"help": "sum of prompt lengths, tokens"})
    blocks: int = field(metadata={"help": "full prompt blocks, summed over requests"})
    reused_blocks: int = field(metadata={"help": "blocks whose hash an earlier request had"})
    reuse_ratio: float = field(metadata={"help": "reused_blocks / blocks"})
    hit_token_fraction: float = field(
        metadata={"help": "sum of reused prefix tokens / sum of prompt tokens"}
    )
    zero_hit_fraction: float = field(metadata={"help": "share of requests reusing no block"})
    hit_tokens_quantiles: tuple[float, ...] = field(
        metadata={"help": "p10, p25, p50, p75, p90, p99 of the reused prefix length, tokens"}
    )
    hit_fraction_mean: float = field(metadata={"help": "mean of reused tokens / prompt tokens"})
    hit_fraction_quantiles: tuple[float, ...] = field(
        metadata={"help": "p10, p25, p50, p75, p90 of reused tokens / prompt tokens"}
    )


#: Percentiles reported for the prefix-length distribution.
HIT_QUANTILES = (10, 25, 50, 75, 90, 99)
HIT_FRACTION_QUANTILES = (10, 25, 50, 75, 90)


def prefix_stats(
    block_hashes: Iterable[Sequence[int]], prompt_tokens: Iterable[int], block_tokens: int
) -> PrefixStats:
    """Reuse ratio and prefix-length distribution of requests taken in arrival order.

    For request ``r`` with chained full-block hashes ``c_r`` (from ``cache_block_hashes``),
    ``hit_r`` is the number of leading blocks whose hash occurs in an earlier request (an
    infinite cache that keeps every block). Then ``reuse_ratio = sum hit_r / sum |c_r|``
    (the fraction of prompt blocks seen before; with chained hashes a seen block's whole
    prefix was seen, so counting leading blocks or all seen blocks is the same),
    ``hit_token_fraction = sum hit_r * block_tokens / sum prompt_r``, and the prefix-length
    distribution is that of ``hit_r * block_tokens`` (tokens) and of
    ``hit_r * block_tokens / prompt_r``. Percentiles use numpy's linear interpolation.

    Args:
        block_hashes: Per request, its chained cache-block hashes, in arrival order.
        prompt_tokens: Per request, its prompt length (same order and count).
        block_tokens: The cache block size the hashes were made for, tokens.

    Returns:
        The figures as a ``PrefixStats``.

    Raises:
        ValueError: no requests, mismatched counts, or a bad ``block_tokens``.
    """
    c_tok = _positive_int("block_tokens", block_tokens)
    seen: set[int] = set()
    hits: list[int] = []
    sizes: list[int] = []
    prompts = [int(p) for p in prompt_tokens]
    for c in block_hashes:
        k = 0
        for h in c:
            if h not in seen:
                break
            k += 1
        hits.append(k)
        sizes.append(len(c))
        seen.update(c)
    if not hits:
        raise ValueError("prefix_stats needs at least one request (got none)")
    if len(prompts) != len(hits):
        raise ValueError(
            f"prefix_stats: {len(hits)} hash lists but {len(prompts)} prompt lengths"
        )
    hit = np.asarray(hits, dtype=np.int64)
    prompt = np.asarray(prompts, dtype=np.float64)
    hit_tok = hit * c_tok
    frac = hit_tok / np.maximum(prompt, 1.0)
    n_blocks = int(sum(sizes))
    return PrefixStats(
        requests=len(hits),
        block_tokens=c_tok,
        prompt_tokens=int(prompt.sum()),
        blocks=n_blocks,
        reused_blocks=int(hit.sum()),
        reuse_ratio=float(hit.sum() / n_blocks) if n_blocks else 0.0,
        hit_token_fraction=float(hit_tok.sum() / prompt.sum()),
        zero_hit_fraction=float(np.mean(hit == 0)),
        hit_tokens_quantiles=tuple(float(q) for q in np.percentile(hit_tok, HIT_QUANTILES)),
        hit_fraction_mean=float(frac.mean()),
        hit_fraction_quantiles=tuple(
            float(q) for q in np.percentile(frac, HIT_FRACTION_QUANTILES)
        ),
    )
