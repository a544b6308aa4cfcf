"""Toy cost models, sources and clusters with hand-computable answers (tests and users)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from disagg_gym.cluster.config import ClusterConfig, InstanceGroupConfig, TopologyConfig
from disagg_gym.workload.source import ArrivalChunk


class LinearCost:
    """A toy ``InstanceCost``: prefill = c0 + c1 * tokens; decode iteration = a + b * context.

    Args:
        prefill_fixed_s: Fixed part of a prefill iteration.
        prefill_per_token_s: Seconds per prompt token.
        decode_a_s: Fixed part of a decode iteration.
        decode_b_s: Seconds per context token in a decode iteration.
        kv_capacity: KV capacity in tokens.
        kv_bytes_per_token: Bytes of KV per token.
    """

    def __init__(
        self,
        prefill_fixed_s: float = 0.0,
        prefill_per_token_s: float = 1e-4,
        decode_a_s: float = 0.01,
        decode_b_s: float = 1e-7,
        kv_capacity: int = 1_000_000,
        kv_bytes_per_token: int = 131072,
    ) -> None:
        self.prefill_fixed_s = prefill_fixed_s
        self.prefill_per_token_s = prefill_per_token_s
        self.decode_a_s = decode_a_s
        self.decode_b_s = decode_b_s
        self.kv_capacity = kv_capacity
        self.kv_bytes_per_token = kv_bytes_per_token
        self.weight_bytes_per_gpu = 0.0
        self.prefill_power_w = 600.0
        self.decode_power_w = 400.0
        self.idle_power_w = 100.0

    def kv_capacity_tokens(self, reserve_frac: float = 0.1) -> int:
        """Fixed capacity (the reserve is ignored)."""
        return self.kv_capacity

    def prefill_s(self, prompt_lens: Sequence[int], cached_lens: Sequence[int] | None = None) -> float:
        """c0 + c1 * total new tokens (cached context is free in this toy)."""
        return self.prefill_fixed_s + self.prefill_per_token_s * sum(prompt_lens)

    def decode_coeffs(self, batch: int, context_tokens: int = 0) -> tuple[float, float]:
        """(a, b), independent of the batch size."""
        return self.decode_a_s, self.decode_b_s

    def decode_s(self, context_lens: Sequence[int]) -> float:
        """A + b * total context."""
        return self.decode_a_s + self.decode_b_s * sum(context_lens)


class ArraySource:
    """An ``ArrivalSource`` over given arrays (one chunk per ``chunk`` rows).

    ``hash_ids`` (optional): prefix-block ids per request, one per ``hash_block_tokens`` tokens
    (the last block may be partial), as a trace's ``hash_ids``.
    """

    def __init__(
        self,
        arrival_s: Sequence[float],
        prompt_tokens: Sequence[int],
        output_tokens: Sequence[int],
        slo_ttft_s: float = 1.0,
        slo_tpot_s: float = 0.1,
        chunk: int = 1024,
        hash_ids: Sequence[Sequence[int]] | None = None,
        hash_block_tokens: int = 16,
    ) -> None:
        self.hash_ids = [tuple(h) for h in hash_ids] if hash_ids is not None else None
        self.hash_block_tokens = hash_block_tokens
        self.t = np.asarray(arrival_s, dtype=np.float64)
        self.p = np.asarray(prompt_tokens, dtype=np.int64)
        self.o = np.asarray(output_tokens, dtype=np.int64)
        self.slo = (slo_ttft_s, slo_tpot_s)
        self.chunk = chunk
        self.pos = 0

    def next_chunk(self) -> ArrivalChunk | None:
        """Next slice of the arrays."""
        if self.pos >= len(self.t):
            return None
        s = slice(self.pos, self.pos + self.chunk)
        self.pos += self.chunk
        n = len(self.t[s])
        ids = self.hash_ids[s] if self.hash_ids is not None else None
        return ArrivalChunk(
            self.t[s], self.p[s], self.o[s], np.full(n, self.slo[0]), np.full(n, self.slo[1]), ids,
            self.hash_block_tokens if ids is not None else None,
        )


def toy_cluster_config(
    n_prefill: int = 1, n_decode: int = 1, gpu: str = "h100-sxm", token_budget: int = 8192,
    max_batch: int = 256, intra_node: str = "nvlink", **kw: object,
) -> ClusterConfig:
    """A one-node disaggregated cluster config."""
    return ClusterConfig(
        groups=(
            InstanceGroupConfig(gpu=gpu, count=n_prefill, role="prefill", prefill_token_budget=token_budget),
            InstanceGroupConfig(gpu=gpu, count=n_decode, role="decode", max_batch=max_batch),
        ),
        topology=TopologyConfig(gpus_per_node=8, intra_node=intra_node),
        **kw,  # type: ignore[arg-type]
    )
