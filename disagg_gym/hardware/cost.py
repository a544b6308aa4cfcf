"""Calibrated roofline cost of one serving instance: iteration latency, KV capacity and power.

An instance is one model replica on ``tp`` GPUs of one type (tensor parallel). Latencies come
from FLOP and byte counts of the architecture and a handful of hardware efficiencies
(:class:`CalibParams`) fitted once to real H100 measurements by ``scripts/calibrate.py``; the
parameters carry no per-model constant, so other architectures and GPUs are predicted from
their shapes and spec sheets. See ``docs/calibration.md`` for the derivation and errors.

Per GPU, with ``T`` prompt tokens (prefill) or ``b`` sequences holding ``S`` context tokens
(decode)::

    prefill = L*layer_overhead + smoothmax(gemm_flops / (peak*compute_eff),
                                           (weights + KV written) / (bw*mem_eff))
              + attention_flops / (peak*attn_compute_eff)
              + T * activation_bytes / (bw*mem_eff) + all_reduce(T)
    decode  = a(b) + b_coef(b) * S
    a(b)    = L*layer_overhead + smoothmax(gemm_flops(b) / (peak*compute_eff),
                                       weights(b) / (bw*mem_eff))
              + b * (activation_bytes + KV written) / (bw*mem_eff) + all_reduce(b)
    b_coef  = kv_bytes_per_token_gpu / (bw*mem_eff*min(1, b*kv_heads_per_gpu/attn_parallel_units))

``smoothmax(x, y) = (x**n + y**n)**(1/n)``. Weights are read once per iteration (for MoE only the
experts that the batch's tokens hit, in expectation); the LM head runs on the last position of
each sequence only; ``all_reduce`` is two ring all-reduces per layer of the token activations
over the GPU's scale-up link (PCIe when it has none).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from typing import Any

from disagg_gym.hardware.gpu import GPUSpec, get_gpu
from disagg_gym.hardware.model import ModelSpec, load_model

__all__ = [
    "CalibParams",
    "InstanceCost",
    "build_instance_cost",
    "calibration_data",
    "default_params",
    "roofline_summary",
]

CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True, slots=True)
class CalibParams:
    """Hardware efficiencies of the roofline model (architecture independent).

    Attributes:
        compute_eff: Fraction of peak dense bf16 FLOP/s reached by the linear layers (GEMMs).
        attn_compute_eff: Fraction of peak reached by prefill (flash) attention.
        mem_eff: Fraction of peak HBM bandwidth reached by streaming kernels (weights, KV,
            activations).
        attn_parallel_units: Independent (sequence, KV-head) work items a decode-attention
            kernel needs to saturate HBM bandwidth; below it bandwidth scales down linearly.
        smoothmax_exp: Exponent ``n`` of the soft maximum that combines GEMM compute and weight
            streaming time (large ``n`` = hard roofline max).
        layer_overhead_s: Fixed time per layer per iteration (kernel launch and ramp-up of the
            ~20 kernels a layer runs), in seconds.
        act_passes: Multiplier on the counted activation traffic of non-GEMM kernels (norms,
            residual adds, RoPE, activation function): ``10*H + 2*(q+2*kv) + 3*I`` elements per
            token per layer. Held at 1.0 (the count) unless the calibration says otherwise.
        allreduce_latency_s: Fixed latency of one tensor-parallel all-reduce, independent of
            ``tp`` and size (launch and synchronisation), in seconds. Assumed (~5 us NCCL
            send/recv on H100 per Vidur's profiles plus a reduction kernel) until
            ``scripts/calibrate.py`` fits it on multi-GPU TP measurements.
        allreduce_alpha_s: Latency of one step of a ring all-reduce, in seconds; a ring over
            ``tp`` GPUs takes ``2*(tp-1)`` steps. Assumed 0.5 us (the order of NCCL's own
            tuning table for ring/LL steps over NVLink) until fitted on TP measurements.
        allreduce_bw_eff: Ring all-reduce bandwidth as a fraction of a point-to-point copy on
            the same link (the link's spec rate times ``nvlink_eff`` or ``pcie_eff``). 1.0
            (assumed) until fitted on TP measurements.
        nvlink_eff: Achieved fraction of the spec NVLink (scale-up) bandwidth, from the
            transfer calibration.
        pcie_eff: Achieved fraction of the spec PCIe bandwidth, from the transfer calibration.
        prefill_power_frac: Where a busy prefill GPU sits between idle (0) and TDP (1); an
            assumption (compute bound prefill draws close to TDP; Splitwise, ISCA 2024).
        decode_power_frac: Same for decode (memory bound, well below TDP).
    """

    compute_eff: float
    attn_compute_eff: float
    mem_eff: float
    attn_parallel_units: float
    smoothmax_exp: float
    layer_overhead_s: float
    act_passes: float = 1.0
    allreduce_latency_s: float = 8e-6
    allreduce_alpha_s: float = 5e-7
    allreduce_bw_eff: float = 1.0
    nvlink_eff: float = 0.88
    pcie_eff: float = 0.86
    prefill_power_frac: float = 0.9
    decode_power_frac: float = 0.6

    def __post_init__(self) -> None:
        """Rejects values outside their physical range."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value in (float("inf"), float("-inf")):  # NaN fails the range checks below
                raise ValueError(f"CalibParams: {f.name} must be finite (got {value!r})")
        for key in (
            "compute_eff",
            "attn_compute_eff",
            "mem_eff",
            "nvlink_eff",
            "pcie_eff",
            "allreduce_bw_eff",
        ):
            value = getattr(self, key)
            if not 0 < value <= 1.5:
                raise ValueError(f"CalibParams: {key} must be in (0, 1.5] (got {value!r})")
        for key in ("attn_parallel_units", "smoothmax_exp"):
            value = getattr(self, key)
            if not value >= 1:
                raise ValueError(f"CalibParams: {key} must be >= 1 (got {value!r})")
        for key in ("layer_overhead_s", "act_passes", "allreduce_latency_s", "allreduce_alpha_s"):
            value = getattr(self, key)
            if not value >= 0:
                raise ValueError(f"CalibParams: {key} must be >= 0 (got {value!r})")
        for key in ("prefill_power_frac", "decode_power_frac"):
            value = getattr(self, key)
            if not 0 <= value <= 1:
                raise ValueError(f"CalibParams: {key} must be in [0, 1] (got {value!r})")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibParams:
        """Builds parameters from a mapping, rejecting unknown keys.

        Args:
            data: Field name to value.

        Returns:
            The parameters.

        Raises:
            ValueError: On an unknown key or a value out of range.
        """
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ValueError(
                    f"CalibParams: unknown key {key!r} (allowed: {', '.join(sorted(known))})"
                )
        values = {}
        for key, value in data.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"CalibParams: {key} must be a number (got {value!r})") from None
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        """Field name to value."""
        return asdict(self)


@functools.cache
def calibration_data() -> Mapping[str, Any]:
    """The committed ``calibration.json`` (read once, on first use).

    Returns:
        The parsed file: ``cost`` (CalibParams fields), ``links`` (calibrated link tiers) and
        provenance and error summaries.
    """
    text = resources.files("disagg_gym.hardware").joinpath(CALIBRATION_FILE).read_text()
    data: Mapping[str, Any] = json.loads(text)
    return data


@functools.cache
def default_params() -> CalibParams:
    """The committed calibrated :class:`CalibParams`."""
    return CalibParams.from_dict(calibration_data()["cost"])


_PREFILL_MEMO_MAX = 1 << 16
"""Entries of an ``InstanceCost``'s one-prompt ``prefill_s`` memo before it starts over."""


def _smoothmax(x: float, y: float, n: float) -> float:
    m = max(y, x)
    if m <= 0.0:
        return 0.0
    out: float = m * ((x / m) ** n + (y / m) ** n) ** (1.0 / n)
    return out


def prefill_totals(
    prompt_lens: Sequence[float], cached_lens: Sequence[float] | None = None
) -> tuple[float, float, float]:
    """Validated totals of one prefill iteration: ``(new tokens, attention pairs, cached tokens)``.

    A chunk of ``l`` new tokens after ``c`` cached ones counts ``l*(l+1) + 2*l*c`` pairs (two
    per causal query-key product), the convention of :meth:`InstanceCost.prefill_s`.

    Raises:
        ValueError: On an empty batch, a length < 1, a negative cached length or mismatched lists.
    """
    if len(prompt_lens) == 0:
        raise ValueError(f"prefill needs at least one prompt (got {list(prompt_lens)!r})")
    if cached_lens is not None and len(cached_lens) != len(prompt_lens):
        raise ValueError(
            f"cached_lens must match prompt_lens in length (got {len(cached_lens)} and {len(prompt_lens)})"
        )
    tokens: float = 0
    pairs: float = 0
    cached_read: float = 0
    if cached_lens is None:
        for length in prompt_lens:
            if length < 1:
                raise ValueError(f"chunk lengths must be >= 1 and cached >= 0 (got {length!r}, 0)")
            tokens += length
            pairs += length * (length + 1)
        return tokens, pairs, cached_read
    for length, cached in zip(prompt_lens, cached_lens):
        if length < 1 or cached < 0:
            raise ValueError(f"chunk lengths must be >= 1 and cached >= 0 (got {length!r}, {cached!r})")
        tokens += length
        pairs += length * (length + 1) + 2 * length * cached
        cached_read += cached
    return tokens, pairs, cached_read


class InstanceCost:
    """Latency, KV capacity and power of one model replica on ``tp`` GPUs of one type.

    KV heads are sharded over the ``tp`` GPUs; when ``tp`` exceeds ``num_key_value_heads``
    each GPU still holds a whole head (heads are replicated, as vLLM does), so the
    instance's :attr:`kv_bytes_per_token` grows to ``2*L*tp*head_dim*dtype``. Weights are
    split evenly (``weight_bytes / tp`` per GPU). Build it with :func:`build_instance_cost`.

    Attributes:
        gpu: The GPU type.
        model: The model.
        tp: Tensor-parallel degree (GPUs in the instance).
        params: The calibrated efficiencies in use.
        kv_bytes_per_token: KV bytes one token occupies on the whole instance.
        weight_bytes_per_gpu: Weight bytes resident on each GPU.
        prefill_power_w: Power of the whole instance while prefilling, W.
        decode_power_w: Power of the whole instance while decoding, W.
        idle_power_w: Power of the whole instance while idle, W.
    """

    __slots__ = (
        "_act_bytes_per_token",
        "_allreduce_bytes_per_token",
        "_allreduce_fixed_s",
        "_attn_flops_coef",
        "_attn_flops_eff",
        "_bw_eff",
        "_decode_cache",
        "_prefill_cache",
        "_dense_read_bytes",
        "_expert_bytes",
        "_gemm_flops_per_token",
        "_kv_bytes_per_token_gpu",
        "_kv_heads_per_gpu",
        "_lm_flops_per_seq",
        "_overhead_s",
        "_peak_flops_eff",
        "decode_power_w",
        "gpu",
        "idle_power_w",
        "kv_bytes_per_token",
        "model",
        "params",
        "prefill_power_w",
        "tp",
        "weight_bytes_per_gpu",
    )

    def __init__(self, gpu: GPUSpec, model: ModelSpec, tp: int, params: CalibParams) -> None:
        """Wires the instance and precomputes its per-token constants (no I/O).

        Args:
            gpu: GPU type.
            model: Model.
            tp: Tensor-parallel degree; must divide ``model.num_attention_heads``.
            params: Calibrated efficiencies.

        Raises:
            ValueError: If ``tp`` is not a positive int dividing the number of query heads.
        """
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
            raise ValueError(f"tp must be a positive int (got {tp!r})")
        if model.num_attention_heads % tp:
            raise ValueError(
                f"tp must divide num_attention_heads ({model.num_attention_heads}) of "
                f"{model.name!r} (got {tp!r})"
            )
        self.gpu = gpu
        self.model = model
        self.tp = tp
        self.params = params
        m, p = model, params
        layers, hidden, dtype = m.num_hidden_layers, m.hidden_size, m.dtype_bytes

        self._kv_heads_per_gpu = -(-m.num_key_value_heads // tp)
        self._kv_bytes_per_token_gpu = 2 * layers * self._kv_heads_per_gpu * m.head_dim * dtype
        self.kv_bytes_per_token = self._kv_bytes_per_token_gpu * tp
        self.weight_bytes_per_gpu = m.weight_bytes / tp

        # Bytes read per iteration per GPU: every dense weight and the LM head (the embedding
        # lookup only gathers rows); experts separately (only those hit are read).
        self._dense_read_bytes = (layers * m.dense_params_per_layer + m.lm_head_params) * dtype / tp
        self._expert_bytes = layers * m.expert_params * dtype / tp
        self._gemm_flops_per_token = (
            2.0
            * layers
            * (m.dense_params_per_layer + m.active_experts_per_token * m.expert_params)
            / tp
        )
        self._lm_flops_per_seq = 2.0 * m.lm_head_params / tp
        mlp_act = (3 if m.gated_mlp else 2) * m.intermediate_size * m.active_experts_per_token
        act_elems = 10 * hidden + (2 * (m.q_dim + 2 * m.kv_dim) + mlp_act) / tp
        self._act_bytes_per_token = p.act_passes * layers * act_elems * dtype
        # Causal attention: QK^T and PV, 2 FLOP per MAC, l*(l+1)/2 pairs -> 2*h*d*l*(l+1).
        self._attn_flops_coef = 2.0 * (m.num_attention_heads / tp) * m.head_dim * layers

        self._peak_flops_eff = gpu.peak_flops * p.compute_eff
        self._attn_flops_eff = gpu.peak_flops * p.attn_compute_eff
        self._bw_eff = gpu.hbm_bw_bytes_per_s * p.mem_eff
        self._overhead_s = layers * p.layer_overhead_s
        if tp > 1:
            if gpu.nvlink_gbps_per_dir > 0:
                link_bps = gpu.nvlink_gbps_per_dir * 1e9 * p.nvlink_eff
            else:
                link_bps = gpu.pcie_gbps_per_dir * 1e9 * p.pcie_eff
            # Two ring all-reduces per layer (after attention's O and the MLP's down
            # projection). A ring over tp GPUs runs 2*(tp-1) steps (reduce-scatter, then
            # all-gather), each paying allreduce_alpha_s and moving 1/tp of the message, so a
            # GPU sends 2*(tp-1)/tp of the hidden-state bytes at the ring's bandwidth.
            steps = 2 * (tp - 1)
            self._allreduce_fixed_s = (
                2 * layers * (p.allreduce_latency_s + steps * p.allreduce_alpha_s)
            )
            # Seconds per token (the name predates the split into named terms).
            self._allreduce_bytes_per_token = (
                2 * layers * steps / tp * hidden * dtype / (link_bps * p.allreduce_bw_eff)
            )
        else:
            self._allreduce_fixed_s = 0.0
            self._allreduce_bytes_per_token = 0.0

        self.idle_power_w = tp * gpu.idle_w
        span = gpu.tdp_w - gpu.idle_w
        self.prefill_power_w = tp * (gpu.idle_w + p.prefill_power_frac * span)
        self.decode_power_w = tp * (gpu.idle_w + p.decode_power_frac * span)
        self._decode_cache: dict[int, tuple[float, float]] = {}
        # One-prompt iterations by (new tokens, cached tokens): the simulator's common case
        # (a prefill batch of one, every router's per-instance estimate). Pure, so memoised.
        self._prefill_cache: dict[tuple[float, float], float] = {}

    def __repr__(self) -> str:
        """Short description."""
        return f"InstanceCost(gpu={self.gpu.name!r}, model={self.model.name!r}, tp={self.tp})"

    # ---- memory -------------------------------------------------------------------------
    def kv_capacity_tokens(self, reserve_frac: float = 0.1) -> int:
        """KV-cache tokens the instance can hold.

        ``(tp*HBM - weights) * (1 - reserve_frac) / kv_bytes_per_token``, floored at 0 (a
        caller seeing 0 should reject the configuration: the weights do not fit).

        Args:
            reserve_frac: Fraction of the memory left after weights kept for activations and
                the runtime, in [0, 1).

        Returns:
            Token capacity (>= 0).

        Raises:
            ValueError: If ``reserve_frac`` is outside [0, 1).
        """
        if not 0.0 <= reserve_frac < 1.0:
            raise ValueError(f"reserve_frac must be in [0, 1) (got {reserve_frac!r})")
        free = (self.tp * self.gpu.hbm_bytes - self.model.weight_bytes) * (1.0 - reserve_frac)
        if free <= 0:
            return 0
        return int(free // self.kv_bytes_per_token)

    # ---- latency ------------------------------------------------------------------------
    def _experts_read_bytes(self, tokens: float) -> float:
        m = self.model
        if not m.is_moe:
            return self._expert_bytes
        # Expected distinct experts hit by `tokens` independent top-k routings.
        e, k = m.num_local_experts, m.num_experts_per_tok
        hit: float = e * (1.0 - (1.0 - k / e) ** tokens)
        return self._expert_bytes * hit

    def _allreduce_s(self, tokens: float) -> float:
        return self._allreduce_fixed_s + tokens * self._allreduce_bytes_per_token

    def allreduce_s(self, tokens: int) -> float:
        """Time of one iteration's tensor-parallel all-reduces (0 at ``tp == 1``).

        ``2*L*(allreduce_latency_s + 2*(tp-1)*allreduce_alpha_s
        + 2*(tp-1)/tp * tokens*H*dtype / (link_bw*link_eff*allreduce_bw_eff))``: two ring
        all-reduces per layer of the ``tokens`` hidden states. Already included in
        :meth:`prefill_s` and :meth:`decode_coeffs`; exposed for calibration and reports.

        Args:
            tokens: Token positions whose activations are reduced (prompt tokens for prefill,
                sequences for decode).

        Returns:
            Seconds.
        """
        return self._allreduce_s(tokens)

    def prefill_s(self, prompt_lens: Sequence[float], cached_lens: Sequence[float] | None = None) -> float:
        """Duration of one prefill iteration over these prompts (or prompt chunks).

        A chunk of ``l`` new tokens after ``c`` tokens already in the KV cache (chunked
        prefill, prefix reuse) computes ``l`` tokens; its causal attention covers
        ``l * c + l * (l + 1) / 2`` query-key pairs and it reads the ``c`` cached tokens' KV.

        Args:
            prompt_lens: New tokens of each prompt or chunk in the batch (each >= 1, at least one).
            cached_lens: Tokens already cached before each chunk (default: none).

        Returns:
            Seconds.

        Raises:
            ValueError: On an empty batch, a length < 1 or a negative cached length.
        """
        if len(prompt_lens) == 1:
            key = (prompt_lens[0], cached_lens[0] if cached_lens else 0)
            hit = self._prefill_cache.get(key)
            if hit is not None:
                return hit
            out = self._prefill_s(prompt_lens, cached_lens)
            memo = self._prefill_cache
            if len(memo) >= _PREFILL_MEMO_MAX:
                memo.clear()
            memo[key] = out
            return out
        return self._prefill_s(prompt_lens, cached_lens)

    def _prefill_s(self, prompt_lens: Sequence[float], cached_lens: Sequence[float] | None) -> float:
        tokens, pairs, cached_read = prefill_totals(prompt_lens, cached_lens)
        p = self.params
        gemm_s = (
            tokens * self._gemm_flops_per_token + len(prompt_lens) * self._lm_flops_per_seq
        ) / self._peak_flops_eff
        mem_s = (
            self._dense_read_bytes
            + self._experts_read_bytes(tokens)
            + (tokens + cached_read) * self._kv_bytes_per_token_gpu
        ) / self._bw_eff
        attn_s = pairs * self._attn_flops_coef / self._attn_flops_eff
        act_s = tokens * self._act_bytes_per_token / self._bw_eff
        return (
            self._overhead_s
            + _smoothmax(gemm_s, mem_s, p.smoothmax_exp)
            + attn_s
            + act_s
            + self._allreduce_s(tokens)
        )

    def decode_segment_end(self, batch: int, context_tokens: float) -> float:
        """Where the affine segment of :meth:`decode_coeffs` ends in total context: never
        (``inf``; the roofline is exactly linear in ``S``). Table models return their next
        breakpoint.
        """
        return math.inf

    def decode_coeffs(self, batch: int, context_tokens: float | None = None) -> tuple[float, float]:
        """Affine cost of one decode iteration of ``batch`` sequences.

        The iteration takes ``a_s + b_s * S`` seconds when the sequences' contexts total ``S``
        tokens: exactly linear in ``S`` for a fixed batch, so the segment is global and
        ``context_tokens`` is ignored (table models return the local segment around it).
        Cached per batch.

        Args:
            batch: Sequences in the iteration (>= 1).
            context_tokens: Total context ``S`` the segment should hold around (ignored).

        Returns:
            ``(a_s, b_s)``: fixed seconds and seconds per context token.

        Raises:
            ValueError: If ``batch`` < 1.
        """
        hit = self._decode_cache.get(batch)
        if hit is not None:
            return hit
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"decode batch must be a positive int (got {batch!r})")
        p = self.params
        gemm_s = (
            batch * (self._gemm_flops_per_token + self._lm_flops_per_seq) / self._peak_flops_eff
        )
        mem_s = (self._dense_read_bytes + self._experts_read_bytes(batch)) / self._bw_eff
        per_seq_s = (self._act_bytes_per_token + self._kv_bytes_per_token_gpu) / self._bw_eff
        a_s = (
            self._overhead_s
            + _smoothmax(gemm_s, mem_s, p.smoothmax_exp)
            + batch * per_seq_s
            + self._allreduce_s(batch)
        )
        # Decode attention is occupancy bound until batch*kv_heads work items fill the GPU.
        occupancy = min(1.0, batch * self._kv_heads_per_gpu / p.attn_parallel_units)
        b_s = self._kv_bytes_per_token_gpu / (self._bw_eff * occupancy)
        res = (a_s, b_s)
        self._decode_cache[batch] = res
        return res

    def decode_s(self, context_lens: Sequence[int]) -> float:
        """Duration of one decode iteration: ``a + b * sum(context_lens)`` with ``batch = len``.

        Args:
            context_lens: Context tokens already held by each sequence.

        Returns:
            Seconds.

        Raises:
            ValueError: On an empty batch.
        """
        if len(context_lens) == 0:
            raise ValueError(f"decode needs at least one sequence (got {list(context_lens)!r})")
        a_s, b_s = self.decode_coeffs(len(context_lens))
        return a_s + b_s * sum(context_lens)


def build_instance_cost(
    gpu: GPUSpec | str,
    model: ModelSpec | str,
    tp: int = 1,
    params: CalibParams | None = None,
) -> InstanceCost:
    """Builds the cost of one instance.

    Args:
        gpu: A :class:`GPUSpec` or catalog id.
        model: A :class:`ModelSpec`, catalog id or YAML path.
        tp: Tensor-parallel degree.
        params: Efficiencies; default: the committed calibration (read once, cached).

    Returns:
        The :class:`InstanceCost`.

    Raises:
        ValueError: On an unknown GPU or model or an invalid ``tp``.
    """
    gpu_spec = gpu if isinstance(gpu, GPUSpec) else get_gpu(gpu)
    model_spec = model if isinstance(model, ModelSpec) else load_model(model)
    return InstanceCost(
        gpu_spec, model_spec, tp, params if params is not None else default_params()
    )


def roofline_summary(cost: InstanceCost) -> dict[str, float]:
    """Key per-instance figures for reports (no side effects).

    Args:
        cost: An instance.

    Returns:
        Weight-streaming and batch-1 decode/prefill figures in seconds and bytes.
    """
    a1, b1 = cost.decode_coeffs(1)
    return {
        "weight_bytes_per_gpu": cost.weight_bytes_per_gpu,
        "kv_bytes_per_token": float(cost.kv_bytes_per_token),
        "decode_batch1_ctx0_s": a1,
        "decode_batch1_s_per_ctx_token": b1,
        "prefill_1x1024_s": cost.prefill_s([1024]),
        "kv_capacity_tokens": float(cost.kv_capacity_tokens()),
    }
