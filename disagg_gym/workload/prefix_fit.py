"""Prefix statistics of traces and sources, and the fits behind the prefix workloads' defaults.

``stream_stats`` measures any ``ArrivalSource`` (a replayed trace or a generator) with
``prefix.prefix_stats``. ``fit_conversation`` and ``fit_documents`` compute, from a Mooncake
trace, the figures the ``multi_turn`` and ``rag`` defaults were set from
(``scripts/prefix_stats.py --fit`` prints them; ``docs/workloads.md`` tabulates them).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import numpy as np

from disagg_gym.workload.prefix import (
    MOONCAKE_BLOCK_TOKENS,
    PrefixStats,
    cache_block_hashes_many,
    prefix_stats,
)
from disagg_gym.workload.source import ArrivalSource
from disagg_gym.workload.traces import TraceData

#: z-score of the 90th percentile (lognormal fits from the median and p90).
_Z90 = 1.2815515655446004


def stream_stats(source: ArrivalSource, block_tokens: int) -> PrefixStats:
    """``prefix_stats`` of every request a source yields, at ``block_tokens``-token blocks.

    Requests without prefix ids count with no blocks (and no reuse).

    Raises:
        ValueError: the source yields nothing.
    """
    hashes: list[tuple[int, ...]] = []
    prompts: list[int] = []
    while (ch := source.next_chunk()) is not None:
        p = ch.prompt_tokens.tolist()
        prompts.extend(p)
        if ch.hash_ids is None or ch.hash_block_tokens is None:
            hashes.extend(() for _ in p)
            continue
        hashes.extend(cache_block_hashes_many(ch.hash_ids, ch.hash_block_tokens, p, block_tokens))
    return prefix_stats(hashes, prompts, block_tokens)


def _hit_blocks(data: TraceData) -> list[int]:
    """Per row, the leading trace blocks whose id appeared in an earlier row (ids are chained)."""
    assert data.hash_ids is not None
    seen: set[int] = set()
    hits = []
    for h in data.hash_ids:
        k = 0
        while k < len(h) and h[k] in seen:
            k += 1
        hits.append(k)
        seen.update(h)
    return hits


def _lognormal_fit(values: np.ndarray) -> tuple[float, float]:
    """(median, sigma) of the lognormal with the sample's median and p90 (values >= 1)."""
    med, p90 = np.percentile(np.maximum(values, 1), [50, 90])
    return float(med), float(math.log(p90 / med) / _Z90) if p90 > med else 0.0


@dataclass(frozen=True, slots=True)
class ConversationFit:
    """Multi-turn structure of a trace, as the ``multi_turn`` generator models it."""

    requests: int = field(metadata={"help": "rows"})
    continuation_fraction: float = field(
        metadata={
            "help": "share of rows whose reused prefix ends exactly where an earlier row's full "
            "blocks end (turn k >= 2 of a conversation)"
        }
    )
    turns_mean: float = field(metadata={"help": "1 / (1 - continuation_fraction): geometric mean"})
    think_time_mean_s: float = field(
        metadata={"help": "mean arrival gap from the continued row to the continuation, seconds"}
    )
    think_time_quantiles_s: tuple[float, ...] = field(metadata={"help": "p10, p50, p90 of it"})
    new_text_median_tokens: float = field(
        metadata={"help": "median of prompt - continued prompt - continued output (>= 1)"}
    )
    new_text_sigma: float = field(metadata={"help": "lognormal sigma from its median and p90"})
    first_turn_quantiles_tokens: tuple[float, ...] = field(
        metadata={"help": "p10, p50, p90 prompt tokens of rows reusing at most one block"}
    )
    shared_first_blocks: int = field(
        metadata={"help": "distinct first block ids (1 = one system prompt for all)"}
    )
    ids_at_several_positions: int = field(
        metadata={"help": "ids found at more than one block position (0: ids are chained)"}
    )


def fit_conversation(
    data: TraceData, block_tokens: int = MOONCAKE_BLOCK_TOKENS
) -> ConversationFit:
    """Finds conversations in a Mooncake trace through its chained ``hash_ids``.

    Row ``r`` continues an earlier row ``q`` when ``r``'s reused prefix is at least 2 blocks
    and ends at the last full block of ``q`` (``q``'s prompt is a prefix of ``r``'s up to
    ``q``'s partial block); the first such ``q`` is taken. New text =
    ``prompt_r - prompt_q - output_q``.

    Raises:
        ValueError: the trace has no ``hash_ids`` or no continuations.
    """
    if data.hash_ids is None:
        raise ValueError(f"{data.path}: the trace has no hash_ids to fit prefixes to")
    bt = block_tokens
    hits = _hit_blocks(data)
    ends: dict[int, int] = {}
    gaps, new, first = [], [], []
    prompt, output, t = data.prompt_tokens, data.output_tokens, data.arrival_s
    for r, (h, k) in enumerate(zip(data.hash_ids, hits)):
        q = ends.get(h[k - 1]) if k >= 2 else None
        if q is not None:
            gaps.append(t[r] - t[q])
            new.append(int(prompt[r]) - int(prompt[q]) - int(output[q]))
        elif k <= 1:
            first.append(int(prompt[r]))
        full = int(prompt[r]) // bt
        if full >= 1 and full <= len(h):
            ends.setdefault(h[full - 1], r)
    if not gaps:
        raise ValueError(f"{data.path}: no row continues an earlier one")
    c = len(gaps) / len(data)
    med, sigma = _lognormal_fit(np.asarray(new, dtype=np.float64))
    g = np.asarray(gaps)
    return ConversationFit(
        requests=len(data),
        continuation_fraction=c,
        turns_mean=1.0 / (1.0 - c),
        think_time_mean_s=float(g.mean()),
        think_time_quantiles_s=tuple(float(x) for x in np.percentile(g, [10, 50, 90])),
        new_text_median_tokens=med,
        new_text_sigma=sigma,
        first_turn_quantiles_tokens=tuple(float(x) for x in np.percentile(first, [10, 50, 90])),
        shared_first_blocks=len({h[0] for h in data.hash_ids if h}),
        ids_at_several_positions=_ids_at_several_positions(data.hash_ids),
    )


def _ids_at_several_positions(hash_ids: tuple[tuple[int, ...], ...]) -> int:
    pos: dict[int, int] = {}
    bad: set[int] = set()
    for h in hash_ids:
        for i, x in enumerate(h):
            if pos.setdefault(x, i) != i:
                bad.add(x)
    return len(bad)


def zipf_mle(counts: np.ndarray) -> float:
    """Maximum-likelihood Zipf exponent for counts sorted by rank (most popular first).

    Solves ``E_s[ln r] = sum n_r ln r / sum n_r`` (the log-likelihood is concave in ``s``)
    by bisection on ``[0, 20]``.
    """
    n = np.asarray(counts, dtype=np.float64)
    ln_r = np.log(np.arange(1, n.size + 1, dtype=np.float64))
    target = float((n * ln_r).sum() / n.sum())

    def mean_ln_r(s: float) -> float:
        w = np.exp(-s * ln_r)
        return float((w * ln_r).sum() / w.sum())

    lo, hi = 0.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if mean_ln_r(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True, slots=True)
class DocumentFit:
    """Shared-document structure of a trace, as the ``rag`` generator models it."""

    documents: int = field(metadata={"help": "distinct first block ids (a document each)"})
    singleton_fraction: float = field(metadata={"help": "share of documents used once"})
    zipf_s: float = field(metadata={"help": "Zipf MLE of first-block counts, ranked"})
    shared_prefix_median_tokens: float = field(
        metadata={"help": "median reused prefix of rows that reuse but continue no earlier row"}
    )
    shared_prefix_sigma: float = field(metadata={"help": "lognormal sigma from its median, p90"})


def fit_documents(data: TraceData, block_tokens: int = MOONCAKE_BLOCK_TOKENS) -> DocumentFit:
    """Document popularity and length from a Mooncake trace's first blocks and shared prefixes.

    Raises:
        ValueError: the trace has no ``hash_ids``, or no row reuses another's prefix.
    """
    if data.hash_ids is None:
        raise ValueError(f"{data.path}: the trace has no hash_ids to fit prefixes to")
    counts = collections.Counter(h[0] for h in data.hash_ids if h)
    ranked = np.asarray(sorted(counts.values(), reverse=True), dtype=np.int64)
    hits = _hit_blocks(data)
    ends: set[int] = set()
    shared = []
    for h, k, p in zip(data.hash_ids, hits, data.prompt_tokens.tolist()):
        if k >= 1 and h[k - 1] not in ends:
            shared.append(k * block_tokens)
        full = p // block_tokens
        if 1 <= full <= len(h):
            ends.add(h[full - 1])
    if not shared:
        raise ValueError(f"{data.path}: no row reuses an earlier row's prefix")
    med, sigma = _lognormal_fit(np.asarray(shared, dtype=np.float64))
    return DocumentFit(
        documents=int(ranked.size),
        singleton_fraction=float(np.mean(ranked == 1)),
        zipf_s=zipf_mle(ranked),
        shared_prefix_median_tokens=med,
        shared_prefix_sigma=sigma,
    )
