"""Workloads with prefix structure: multi-turn chat, tenant system prompts, RAG documents.

Each request's prompt is a list of *segments* (content id, tokens): a tenant's system prompt,
a document, user text, an earlier answer. A segment id always has the same length, so equal
segment lists are equal token sequences. The prompt is cut into ``prefix_block_tokens``
blocks and each block gets an id (``segment_block_ids``); ``ArrivalChunk.hash_ids`` carries
them like Mooncake's ``hash_ids``, and ``prefix.cache_block_hashes`` chains them onto the
cache's blocks.

Kinds (``WorkloadConfig.kind``, registered in ``PREFIX_WORKLOADS``):

* ``multi_turn``: sessions start as a Poisson process at ``rate_per_s / turns_mean``; a
  session has ``Geometric(1 / turns_mean)`` turns (mean ``turns_mean``). Turn 1's prompt is
  [system prompt] + user text; turn k's is turn k-1's prompt + turn k-1's answer (its
  ``output_tokens``) + new user text; turn k arrives ``Exp(think_time_s)`` seconds after turn
  k-1 (open loop: the gap includes the answer's generation). A session ends early when the
  next prompt would exceed ``max_prompt_tokens``.
* ``tenants``: Poisson arrivals at ``rate_per_s``; each request picks a tenant (Zipf with
  exponent ``tenant_zipf_s`` over ``num_tenants``; 0 = uniform) and its prompt is the tenant's
  system prompt + user text.
* ``rag``: Poisson arrivals; prompt = [system prompt] + a document drawn with Zipf
  popularity (``P(doc i) = i**-s / H(N, s)``, ``i = 1..num_documents``,
  ``s = document_zipf_s``) + a question.

User text (turn 1's message, a tenant user's message, a RAG question) is lognormal with median
``user_tokens`` and log-std ``user_sigma``. Output lengths are the output marginal of the
``lengths`` preset (or ``output_tokens`` with ``fixed``), one (prompt, output) pair per
request from the ``lengths`` stream, its prompt unused. Catalog lengths (each tenant's system prompt, each document) are lognormal with median
``*_tokens`` and log-std ``*_sigma``, drawn once from the ``prefix_catalog`` stream; arrival
times and think times come from ``arrivals``; tenant, document, turn count and later-turn text
from ``prefix``. Every drawn length is rounded and clipped to ``[1, MAX_SEGMENT_TOKENS]``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from disagg_gym.registry import Registry
from disagg_gym.rng import RngStreams
from disagg_gym.workload.prefix import GOLDEN, mix64
from disagg_gym.workload.source import ArrivalChunk

if TYPE_CHECKING:
    from disagg_gym.workload.generators import LengthModel, WorkloadConfig

#: Upper clip of any drawn segment length, tokens (a 128k context).
MAX_SEGMENT_TOKENS = 131072
#: Length draws buffered per call of the length model (the sequence depends on the seed only).
_LENGTH_BATCH = 1024
#: Segment-id tags (high bits), so system prompts, documents, user text and answers never clash.
TAG_SYSTEM, TAG_DOCUMENT, TAG_USER, TAG_ANSWER = 1, 2, 3, 4
_TAG_SHIFT = 56
_END_TAG = 0xD1B54A32D192ED03  # marks how many tokens a partial last block covers
_U = np.uint64


def segment_id(tag: int, index: int) -> int:
    """Content id of segment ``index`` of kind ``tag`` (``TAG_*``); unique per (tag, index)."""
    return (tag << _TAG_SHIFT) | index


def segment_block_ids(
    seg_ids: list[int], seg_tokens: list[int], block_tokens: int
) -> tuple[int, ...]:
    """Ids of the ``ceil(P / block_tokens)`` blocks of a prompt made of segments.

    Block ``k`` covers tokens ``[k*B, min((k+1)*B, P))``. Its id combines the id of the
    segment holding its first token and that token's offset in it, the id and in-block offset
    of every segment starting inside the block, and, for a partial last block, how many tokens
    it covers. Since a segment id fixes its length, equal ids after an equal prefix mean equal
    tokens; ids do not depend on the prefix (``cache_block_hashes`` chains them).

    Args:
        seg_ids: Segment content ids, in prompt order.
        seg_tokens: Their lengths (>= 1), tokens; ``P`` is their sum.
        block_tokens: Tokens per block ``B``.

    Returns:
        The block ids, ints in ``[0, 2**64)``.
    """
    tok = np.asarray(seg_tokens, dtype=np.int64)
    u = mix64(np.asarray(seg_ids, dtype=np.uint64))
    starts = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(tok)[:-1]))
    total = int(tok.sum())
    n = -(-total // block_tokens)
    first = np.arange(n, dtype=np.int64) * block_tokens
    s0 = np.searchsorted(starts, first, side="right") - 1
    ids = mix64(u[s0] + (first - starts[s0] + 1).astype(np.uint64) * _U(GOLDEN))
    inner = np.flatnonzero(starts % block_tokens != 0)  # segments starting mid-block
    if inner.size:
        off = (starts[inner] % block_tokens).astype(np.uint64)
        np.add.at(ids, starts[inner] // block_tokens, mix64(u[inner] ^ (off * _U(GOLDEN))))
    tail = total % block_tokens
    if tail:
        ids[-1:] += mix64(np.asarray([_END_TAG ^ tail], dtype=np.uint64))
    return tuple(ids.tolist())


def _lognormal_tokens(
    rng: np.random.Generator, median: float, sigma: float, n: int | None = None
) -> np.ndarray:
    """``n`` (or one, as a 0-d array) lengths ``round(median * exp(sigma * Z))``, clipped."""
    x = median * np.exp(sigma * rng.standard_normal(n))
    return np.clip(np.rint(x), 1, MAX_SEGMENT_TOKENS).astype(np.int64)


def zipf_pmf(n: int, s: float) -> np.ndarray:
    """``P(i) = i**-s / sum_j j**-s`` for ranks ``i = 1..n`` (``s = 0``: uniform)."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    out: np.ndarray = w / w.sum()
    return out


class _Zipf:
    """Draws ranks ``0..n-1`` (rank 0 most popular) with Zipf(s) probabilities."""

    def __init__(self, n: int, s: float) -> None:
        cdf = np.cumsum(zipf_pmf(n, s))
        cdf[-1] = 1.0
        self._cdf = cdf

    def draw(self, rng: np.random.Generator) -> int:
        return int(np.searchsorted(self._cdf, rng.random(), side="right"))


# ------------------------------------------------------------------------------ session models
@dataclass(frozen=True, slots=True)
class SessionModel:
    """What a kind's sessions look like: documents or not, one turn or several."""

    documents: bool  # prompts carry a Zipf-popular document after the system prompt
    multi_turn: bool  # sessions have Geometric(1 / turns_mean) turns, else exactly one


PREFIX_WORKLOADS: Registry[Callable[[WorkloadConfig], SessionModel]] = Registry("prefix workload")
PREFIX_WORKLOADS.register("multi_turn")(lambda c: SessionModel(documents=False, multi_turn=True))
PREFIX_WORKLOADS.register("tenants")(lambda c: SessionModel(documents=False, multi_turn=False))
PREFIX_WORKLOADS.register("rag")(lambda c: SessionModel(documents=True, multi_turn=False))


@dataclass(slots=True)
class _Session:
    sid: int
    seg_ids: list[int]
    seg_tokens: list[int]
    turns_left: int
    turn: int = 1


class PrefixSource:
    """Arrivals of a prefix workload, in chunks, with block ids and session ids.

    Args:
        model: The kind's session model.
        cfg: Supplies the keys listed in the module docstring, caps and SLOs.
        lengths: Draws output lengths (the prompt half of each pair is unused).
        streams: ``arrivals``, ``lengths``, ``prefix`` and ``prefix_catalog`` are used.
        horizon_s: Arrivals end before ``start_s + horizon_s``; ``None`` for no limit.
        max_requests: Arrival count limit; ``None`` for no limit.
        start_s: Absolute time origin of the workload.
        chunk_size: Most arrivals per chunk.
    """

    def __init__(
        self,
        model: SessionModel,
        cfg: WorkloadConfig,
        lengths: LengthModel,
        streams: RngStreams,
        horizon_s: float | None,
        max_requests: int | None,
        start_s: float,
        chunk_size: int,
    ) -> None:
        self._model = model
        self._cfg = cfg
        self._lengths = lengths
        self._arr = streams.get("arrivals")
        self._len = streams.get("lengths")
        self._rng = streams.get("prefix")
        self._cat_rng = streams.get("prefix_catalog")
        self._end_s = horizon_s if horizon_s is not None else math.inf
        self._left = max_requests
        self._start_s = start_s
        self._chunk = chunk_size
        self._ready = False
        self._heap: list[tuple[float, int, _Session]] = []
        self._next_start_s = 0.0
        self._sessions = 0
        self._users = 0
        self._buf: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int64))
        self._buf_pos = 0
        self._done = max_requests == 0

    def _setup(self) -> None:
        cfg = self._cfg
        self._sys_tokens = (
            _lognormal_tokens(
                self._cat_rng, cfg.system_prompt_tokens, cfg.system_prompt_sigma, cfg.num_tenants
            )
            if cfg.system_prompt_tokens > 0
            else None
        )
        self._doc_tokens = (
            _lognormal_tokens(
                self._cat_rng, cfg.document_tokens, cfg.document_sigma, cfg.num_documents
            )
            if self._model.documents
            else None
        )
        self._tenant = _Zipf(cfg.num_tenants, cfg.tenant_zipf_s)
        self._doc = _Zipf(cfg.num_documents, cfg.document_zipf_s) if self._model.documents else None
        mean_turns = cfg.turns_mean if self._model.multi_turn else 1.0
        self._session_gap_s = mean_turns / cfg.rate_per_s
        self._next_start_s = float(self._arr.exponential(self._session_gap_s))
        self._ready = True

    def _draw_output(self) -> int:
        if self._buf_pos >= self._buf[0].size:
            self._buf = self._lengths.sample(self._len, _LENGTH_BATCH)
            self._buf_pos = 0
        i = self._buf_pos
        self._buf_pos += 1
        return int(self._buf[1][i])

    def _new_session(self, t_s: float) -> None:
        sid = self._sessions
        self._sessions += 1
        seg_ids: list[int] = []
        seg_tokens: list[int] = []
        if self._sys_tokens is not None:
            tenant = self._tenant.draw(self._rng)
            seg_ids.append(segment_id(TAG_SYSTEM, tenant))
            seg_tokens.append(int(self._sys_tokens[tenant]))
        if self._doc is not None and self._doc_tokens is not None:
            doc = self._doc.draw(self._rng)
            seg_ids.append(segment_id(TAG_DOCUMENT, doc))
            seg_tokens.append(int(self._doc_tokens[doc]))
        turns = int(self._rng.geometric(1.0 / self._cfg.turns_mean)) if self._model.multi_turn else 1
        heapq.heappush(
            self._heap, (t_s, sid, _Session(sid, seg_ids, seg_tokens, turns))
        )

    def _user_segment(self, tokens: int) -> tuple[int, int]:
        uid = segment_id(TAG_USER, self._users)
        self._users += 1
        return uid, tokens

    def _next_request(self) -> tuple[float, int, list[int], list[int], int] | None:
        """(relative time, session id, segment ids, segment tokens, output) of the next one."""
        while not self._heap or self._next_start_s < self._heap[0][0]:
            if self._next_start_s >= self._end_s:
                if not self._heap:
                    return None
                break
            self._new_session(self._next_start_s)
            self._next_start_s += float(self._arr.exponential(self._session_gap_s))
        t_s, _, sess = heapq.heappop(self._heap)
        if t_s >= self._end_s:
            return None
        cfg = self._cfg
        output = self._draw_output()
        if sess.turn == 1:
            user = int(_lognormal_tokens(self._rng, cfg.user_tokens, cfg.user_sigma))
            uid, utok = self._user_segment(user)
            sess.seg_ids.append(uid)
            sess.seg_tokens.append(utok)
        ids, toks = list(sess.seg_ids), list(sess.seg_tokens)
        if cfg.max_output_tokens is not None:
            output = min(output, cfg.max_output_tokens)
        sess.turns_left -= 1
        if sess.turns_left > 0:
            new = int(_lognormal_tokens(self._rng, cfg.turn_tokens, cfg.turn_sigma))
            think = float(self._arr.exponential(cfg.think_time_s))
            nxt = sum(toks) + output + new
            if cfg.max_prompt_tokens is None or nxt <= cfg.max_prompt_tokens:
                sess.seg_ids.append(segment_id(TAG_ANSWER, (sess.sid << 20) | sess.turn))
                sess.seg_tokens.append(output)
                uid, utok = self._user_segment(new)
                sess.seg_ids.append(uid)
                sess.seg_tokens.append(utok)
                sess.turn += 1
                heapq.heappush(self._heap, (t_s + think, sess.sid, sess))
        return t_s, sess.sid, ids, toks, output

    def next_chunk(self) -> ArrivalChunk | None:
        """The next chunk of arrivals, or ``None`` once the horizon or count is reached."""
        if self._done:
            return None
        if not self._ready:
            self._setup()
        need = self._chunk if self._left is None else min(self._chunk, self._left)
        cfg = self._cfg
        times: list[float] = []
        prompts: list[int] = []
        outputs: list[int] = []
        sids: list[int] = []
        hashes: list[tuple[int, ...]] = []
        while len(times) < need:
            nxt = self._next_request()
            if nxt is None:
                self._done = True
                break
            t_s, sid, ids, toks, output = nxt
            if cfg.max_prompt_tokens is not None and sum(toks) > cfg.max_prompt_tokens:
                ids, toks = _clip_segments(ids, toks, cfg.max_prompt_tokens)
            times.append(t_s)
            prompts.append(sum(toks))
            outputs.append(output)
            sids.append(sid)
            hashes.append(segment_block_ids(ids, toks, cfg.prefix_block_tokens))
        if self._left is not None:
            self._left -= len(times)
            self._done = self._done or self._left <= 0
        if not times:
            self._done = True
            return None
        prompt = np.asarray(prompts, dtype=np.int64)
        ttft, tpot = cfg.slos(prompt)
        return ArrivalChunk(
            self._start_s + np.asarray(times, dtype=np.float64),
            prompt,
            np.asarray(outputs, dtype=np.int64),
            ttft,
            tpot,
            hashes,
            cfg.prefix_block_tokens,
            np.asarray(sids, dtype=np.int64),
        )

    def __iter__(self) -> Iterator[ArrivalChunk]:
        """Iterates the remaining chunks."""
        while (chunk := self.next_chunk()) is not None:
            yield chunk


def _clip_segments(ids: list[int], toks: list[int], cap: int) -> tuple[list[int], list[int]]:
    """The first ``cap`` tokens of a segment list (the last kept segment is cut short)."""
    out_ids: list[int] = []
    out_toks: list[int] = []
    left = cap
    for sid, n in zip(ids, toks):
        if left <= 0:
            break
        out_ids.append(sid)
        out_toks.append(min(n, left))
        left -= n
    return out_ids, out_toks
