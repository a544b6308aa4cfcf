"""The ``Request``: sizes, SLOs, placement and lifecycle timestamps of one LLM request."""

from __future__ import annotations

from disagg_gym.types import RequestState


class Request:
    """One request. Timestamps are ``None`` until set, and are set in lifecycle order.

    Order checked by ``disagg_gym.testing.checks``: arrival <= prefill_start <= first_token
    <= transfer_start <= transfer_end <= decode_start <= completion.
    """

    __slots__ = (
        "rid", "arrival_s", "prompt_tokens", "output_tokens", "slo_ttft_s", "slo_tpot_s",
        "hash_ids", "state", "prefill_inst", "decode_inst", "tier", "kv_bytes",
        "prefill_start_s", "first_token_s", "transfer_start_s", "transfer_end_s",
        "decode_start_s", "completion_s", "reject_reason", "preemptions", "swaps",
        "prefill_tokens", "prefilled", "generated", "run_start_s", "run_end_s",
        "hash_block_tokens", "session_id", "block_hashes", "cached_tokens", "cache_tier", "cache_served",
        "ttft_load_s",
    )

    def __init__(
        self,
        rid: int,
        arrival_s: float,
        prompt_tokens: int,
        output_tokens: int,
        slo_ttft_s: float,
        slo_tpot_s: float,
        hash_ids: tuple[int, ...] | None = None,
        hash_block_tokens: int | None = None,
        session_id: int = -1,
    ) -> None:
        self.rid = rid
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.slo_ttft_s = slo_ttft_s
        self.slo_tpot_s = slo_tpot_s
        self.hash_ids = hash_ids  # prefix-block ids (see workload.prefix), or None
        self.hash_block_tokens = hash_block_tokens  # tokens per hash_ids block, or None
        self.session_id = session_id  # conversation of a multi_turn request; -1 if none
        self.state = RequestState.ARRIVED
        self.prefill_inst = -1
        self.decode_inst = -1
        self.tier = ""
        self.kv_bytes = 0.0
        self.prefill_start_s: float | None = None
        self.first_token_s: float | None = None
        self.transfer_start_s: float | None = None
        self.transfer_end_s: float | None = None
        self.decode_start_s: float | None = None
        self.completion_s: float | None = None
        self.reject_reason: str | None = None
        self.preemptions = 0  # times its KV was dropped and recomputed
        self.swaps = 0  # times its KV was swapped out to host memory
        self.prefill_tokens = prompt_tokens  # tokens to (re)compute at prefill
        self.prefilled = 0  # of those, computed so far in the current prefill run (chunking)
        self.generated = 0  # output tokens produced so far (the first comes from the prefill)
        self.run_start_s: float | None = None  # start of its latest prefill run
        self.run_end_s: float | None = None  # end of its latest prefill run
        # Prefix caching (cluster.kv_cache): set by the run that produces the first token.
        self.block_hashes: tuple[int, ...] | None = None  # chained cache-block hashes, once computed
        self.cached_tokens = 0  # prompt tokens served from a cache (no compute)
        self.cache_tier = ""  # deepest tier that served some of them: hbm, host_dram, ssd, remote, or ""
        self.cache_served: tuple[int, ...] | None = None  # tokens per tier (hbm, host, ssd, remote)
        self.ttft_load_s = 0.0  # time its first-token prefill waited for lower-tier loads after computing

    @property
    def held_tokens(self) -> int:
        """KV tokens the request holds once prefilled: prompt + tokens generated so far."""
        return self.prompt_tokens + (self.generated if self.generated > 0 else 1)

    @property
    def ttft_s(self) -> float | None:
        """Time to first token (first token - arrival)."""
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first; 0 for single-token outputs."""
        if self.completion_s is None or self.first_token_s is None:
            return None
        if self.output_tokens <= 1:
            return 0.0
        return (self.completion_s - self.first_token_s) / (self.output_tokens - 1)

    @property
    def e2e_s(self) -> float | None:
        """End-to-end latency (completion - arrival)."""
        return None if self.completion_s is None else self.completion_s - self.arrival_s

    def meets_slo(self) -> bool:
        """Completed and within both TTFT and TPOT SLOs."""
        ttft, tpot = self.ttft_s, self.tpot_s
        return (
            self.state is RequestState.COMPLETED
            and ttft is not None
            and tpot is not None
            and ttft <= self.slo_ttft_s
            and tpot <= self.slo_tpot_s
        )

    def __repr__(self) -> str:
        return (
            f"Request(rid={self.rid}, t={self.arrival_s:.4f}, prompt={self.prompt_tokens}, "
            f"out={self.output_tokens}, state={self.state.value})"
        )
