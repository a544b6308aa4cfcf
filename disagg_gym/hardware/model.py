"""Transformer architectures (shapes, weight and KV-cache bytes) and the model catalog.

Field names follow Hugging Face ``config.json`` keys. The catalog holds every model of
``/work/shared/data/models.yaml`` except DeepSeek-V3 (its MLA attention, shared experts and
dense first layers do not fit this schema) plus ``qwen2.5-14b``. Weight bytes count the
embedding, every layer (attention, MLP or experts plus router, two norms), the final norm and
the LM head unless it is tied; biases and OPT's learned position table are ignored (< 0.1% of
the parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from disagg_gym.errors import UserError, clipped_repr
from disagg_gym.registry import by_name

__all__ = ["MODELS", "ModelSpec", "load_model"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Shape of a decoder-only transformer.

    Attributes:
        name: Catalog id, e.g. ``"llama-3.1-8b"``.
        num_hidden_layers: Number of decoder layers.
        hidden_size: Model (residual) width.
        num_attention_heads: Query heads.
        num_key_value_heads: Key/value heads (= query heads for MHA, fewer for GQA).
        head_dim: Width of one head.
        intermediate_size: MLP width (per expert for MoE).
        vocab_size: Vocabulary size (embedding and LM-head rows).
        num_local_experts: Experts per MoE layer; 0 for a dense model.
        num_experts_per_tok: Experts each token is routed to; 0 for a dense model.
        tie_word_embeddings: Whether the LM head shares the embedding matrix.
        dtype_bytes: Bytes per weight and per KV element (2 for bf16/fp16).
        gated_mlp: Whether the MLP has three matrices (gate, up, down: Llama/Qwen/Mistral) or
            two (up, down: OPT). Not a Hugging Face key; defaults to gated.
        max_position_embeddings: Longest context in tokens (Hugging Face key); ``None`` if
            unknown. ``predict`` rejects longer lengths; the simulator does not read it.
    """

    name: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_local_experts: int = 0
    num_experts_per_tok: int = 0
    tie_word_embeddings: bool = False
    dtype_bytes: int = 2
    gated_mlp: bool = True
    max_position_embeddings: int | None = None

    def __post_init__(self) -> None:
        """Rejects non-positive sizes and inconsistent head or expert counts."""
        for key in (
            "num_hidden_layers",
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "dtype_bytes",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"ModelSpec {self.name!r}: {key} must be a positive int (got {value!r})"
                )
        ctx = self.max_position_embeddings
        if ctx is not None and (isinstance(ctx, bool) or not isinstance(ctx, int) or ctx <= 0):
            raise ValueError(
                f"ModelSpec {self.name!r}: max_position_embeddings must be a positive int or None "
                f"(got {ctx!r})"
            )
        for key in ("num_local_experts", "num_experts_per_tok"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"ModelSpec {self.name!r}: {key} must be an int >= 0 (got {value!r})"
                )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"ModelSpec {self.name!r}: num_key_value_heads must divide num_attention_heads "
                f"({self.num_attention_heads}) (got {self.num_key_value_heads!r})"
            )
        if (self.num_local_experts == 0) != (self.num_experts_per_tok == 0) or (
            self.num_experts_per_tok > self.num_local_experts
        ):
            raise ValueError(
                f"ModelSpec {self.name!r}: num_experts_per_tok must be in 1..num_local_experts "
                f"({self.num_local_experts}) for MoE and 0 for dense "
                f"(got {self.num_experts_per_tok!r})"
            )

    # ---- shapes -------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        """Whether the MLP is a mixture of experts."""
        return self.num_local_experts > 0

    @property
    def q_dim(self) -> int:
        """Width of all query heads together."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of all key (or value) heads together."""
        return self.num_key_value_heads * self.head_dim

    # ---- parameter counts (elements) ----------------------------------------------------
    @property
    def attn_params_per_layer(self) -> int:
        """Q, K, V and output projection weights of one layer."""
        return self.hidden_size * (self.q_dim + 2 * self.kv_dim) + self.q_dim * self.hidden_size

    @property
    def expert_params(self) -> int:
        """Weights of one MLP (one expert for MoE)."""
        return (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size

    @property
    def router_params_per_layer(self) -> int:
        """MoE router weights of one layer (0 for dense)."""
        return self.hidden_size * self.num_local_experts

    @property
    def dense_params_per_layer(self) -> int:
        """Weights of one layer that every token uses: attention, router, two norms."""
        return self.attn_params_per_layer + self.router_params_per_layer + 2 * self.hidden_size

    @property
    def experts_per_layer(self) -> int:
        """MLPs held per layer (1 for dense)."""
        return max(1, self.num_local_experts)

    @property
    def active_experts_per_token(self) -> int:
        """MLPs each token runs through per layer (1 for dense)."""
        return max(1, self.num_experts_per_tok)

    @property
    def embedding_params(self) -> int:
        """Token-embedding table."""
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """LM-head matrix (shared with the embedding when tied; counted once in totals)."""
        return self.vocab_size * self.hidden_size

    @property
    def param_count(self) -> int:
        """All parameters."""
        layer = self.dense_params_per_layer + self.experts_per_layer * self.expert_params
        untied_head = 0 if self.tie_word_embeddings else self.lm_head_params
        return (
            self.num_hidden_layers * layer + self.embedding_params + untied_head + self.hidden_size
        )

    # ---- required API -------------------------------------------------------------------
    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token occupies across all layers: 2*layers*kv_heads*head_dim*dtype."""
        return (
            2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * self.dtype_bytes
        )

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights (embedding, layers, final norm, LM head unless tied)."""
        return self.param_count * self.dtype_bytes

    @property
    def active_params_per_token(self) -> float:
        """Parameters one token touches: all but the experts it is not routed to.

        Counts the embedding and the LM head, as the model cards' "active parameters" do
        (Mixtral 8x7B: 12.88e9).
        """
        inactive = self.num_local_experts - self.num_experts_per_tok if self.is_moe else 0
        return float(self.param_count - self.num_hidden_layers * inactive * self.expert_params)


def _m(
    name: str,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    intermediate: int,
    vocab: int,
    ctx: int | None = None,
    **extra: Any,
) -> ModelSpec:
    # ctx: max_position_embeddings from ../shared/data/models.yaml (the HF configs); qwen2.5-14b
    # is not listed there and takes the Qwen2.5 base models' 131072 of its 7B/32B/72B siblings
    return ModelSpec(
        name=name,
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=extra.pop("head_dim", hidden // heads),
        intermediate_size=intermediate,
        vocab_size=vocab,
        max_position_embeddings=ctx,
        **extra,
    )


MODELS: Mapping[str, ModelSpec] = by_name(
    (
        _m("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, ctx=4096),
        _m("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, ctx=4096),
        _m("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, ctx=4096),
        _m("llama-3.1-8b", 32, 4096, 32, 8, 14336, 128256, ctx=131072),
        _m("llama-3.1-70b", 80, 8192, 64, 8, 28672, 128256, ctx=131072),
        _m("mistral-7b-v0.1", 32, 4096, 32, 8, 14336, 32000, ctx=32768),
        _m(
            "mixtral-8x7b",
            32,
            4096,
            32,
            8,
            14336,
            32000,
            num_local_experts=8,
            num_experts_per_tok=2,
            ctx=32768,
        ),
        _m("qwen2.5-7b", 28, 3584, 28, 4, 18944, 152064, ctx=131072),
        _m("qwen2.5-14b", 48, 5120, 40, 8, 13824, 152064, ctx=131072),
        _m("qwen2.5-32b", 64, 5120, 40, 8, 27648, 152064, ctx=131072),
        _m("qwen2.5-72b", 80, 8192, 64, 8, 29568, 152064, ctx=131072),
        _m(
            "opt-13b", 40, 5120, 40, 40, 20480, 50272, tie_word_embeddings=True, gated_mlp=False, ctx=2048
        ),
        _m(
            "opt-66b", 64, 9216, 72, 72, 36864, 50272, tie_word_embeddings=True, gated_mlp=False, ctx=2048
        ),
        _m(
            "opt-175b",
            96,
            12288,
            96,
            96,
            49152,
            50272,
            tie_word_embeddings=True,
            gated_mlp=False,
            ctx=2048,
        ),
    ),
    "model",
)

_REQUIRED = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)
_INT_KEYS = _REQUIRED + (
    "num_key_value_heads",
    "head_dim",
    "num_local_experts",
    "num_experts_per_tok",
    "dtype_bytes",
    "max_position_embeddings",
)
_BOOL_KEYS = ("tie_word_embeddings", "gated_mlp")
_KNOWN = frozenset(f.name for f in fields(ModelSpec))
#: Keys of a Hugging Face ``config.json`` that do not change the cost model's shapes: accepted
#: and ignored, so such a file can be used as it is (``torch_dtype`` sets ``dtype_bytes``;
#: ``quantization_config`` needs an explicit ``dtype_bytes`` and an active ``sliding_window`` is
#: refused, see ``_load_yaml_model``).
_HF_IGNORED = frozenset({
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "bos_token_id",
    "eos_token_id", "pad_token_id", "hidden_act", "initializer_range", "rms_norm_eps", "layer_norm_eps",
    "rope_theta", "rope_scaling", "use_cache", "attention_bias", "attention_dropout", "mlp_bias",
    "pretraining_tp", "sliding_window", "use_sliding_window", "max_window_layers", "_name_or_path",
    "auto_map", "quantization_config", "router_aux_loss_coef", "output_router_logits",
})
_HF_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float8_e4m3fn": 1}


def _load_yaml_model(path: Path) -> ModelSpec:
    from disagg_gym.config import read_yaml

    where = str(path)
    raw = read_yaml(path)  # ConfigError: unreadable, not UTF-8, invalid YAML, duplicate key
    if not isinstance(raw, dict):
        raise UserError(  # noqa: TRY004 - STYLE: bad input is a ValueError
            f"{where}: key '<root>': expected a mapping of Hugging Face keys (got {clipped_repr(raw)})"
        )

    def bad(key: str, problem: str, value: Any) -> ValueError:
        return UserError(f"{where}: key '{key}': {problem} (got {clipped_repr(value)})")

    for key, value in raw.items():
        if key not in _KNOWN and key not in _HF_IGNORED:
            raise bad(str(key), f"unknown key; allowed: {', '.join(sorted(_KNOWN))} (and the Hugging Face "
                      "config.json keys that do not change shapes: architectures, torch_dtype, rope_theta, ...)", value)
    # Two Hugging Face keys change memory in ways this model does not represent: refuse them
    # rather than simulate another model (a reviewer's FP8 config predicted bf16 weights).
    quant = raw.get("quantization_config")
    if quant is not None and "dtype_bytes" not in raw:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else quant  # not its long module lists
        raise bad("quantization_config", "quantized weights are not read from it; give dtype_bytes (bytes per "
                  "weight and KV element, e.g. 1 for FP8) to state the precision, or remove the key",
                  {"quant_method": method})
    window = raw.get("sliding_window")
    if window is not None and raw.get("use_sliding_window", True) is not False:
        raise bad("sliding_window", "sliding-window attention is not modelled (KV here grows with the whole "
                  "context); remove the key to simulate full attention, or set use_sliding_window: false", window)
    hf_dtype = raw.get("torch_dtype", raw.get("dtype"))
    if "dtype_bytes" not in raw and hf_dtype is not None:
        if hf_dtype not in _HF_DTYPE_BYTES:
            raise bad("torch_dtype", f"expected one of {', '.join(_HF_DTYPE_BYTES)} (or give dtype_bytes)", hf_dtype)
        raw = {**raw, "dtype_bytes": _HF_DTYPE_BYTES[hf_dtype]}
    raw = {k: v for k, v in raw.items() if k not in _HF_IGNORED}
    for key in _REQUIRED:
        if key not in raw:
            raise bad(key, "required key is missing", None)
    for key in _INT_KEYS:
        if key in raw:
            value = raw[key]
            minimum = 0 if key in ("num_local_experts", "num_experts_per_tok") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise bad(key, f"must be an integer >= {minimum}", value)
    for key in _BOOL_KEYS:
        if key in raw and not isinstance(raw[key], bool):
            raise bad(key, "must be true or false", raw[key])
    if "name" in raw and not (isinstance(raw["name"], str) and raw["name"]):
        raise bad("name", "must be a non-empty string", raw["name"])

    heads = raw["num_attention_heads"]
    kv_heads = raw.get("num_key_value_heads", heads)
    if heads % kv_heads:
        raise bad("num_key_value_heads", f"must divide num_attention_heads ({heads})", kv_heads)
    if "head_dim" not in raw and raw["hidden_size"] % heads:
        raise bad(
            "hidden_size",
            f"must be a multiple of num_attention_heads ({heads}) when head_dim is not given",
            raw["hidden_size"],
        )
    experts = raw.get("num_local_experts", 0)
    per_tok = raw.get("num_experts_per_tok", 0)
    if (experts == 0) != (per_tok == 0) or per_tok > experts:
        raise bad(
            "num_experts_per_tok",
            f"must be in 1..num_local_experts ({experts}) for MoE, 0 for dense",
            per_tok,
        )
    values = dict(raw)
    values.setdefault("name", path.stem)
    values["num_key_value_heads"] = kv_heads
    values.setdefault("head_dim", raw["hidden_size"] // heads)
    try:
        return ModelSpec(**values)
    except ValueError as exc:  # a cross-field check the key checks above do not cover
        raise UserError(f"{where}: {exc}") from None


def load_model(name_or_path: str | Path) -> ModelSpec:
    """Returns a catalog model, or one read from a YAML file of Hugging Face keys.

    The file may hold ``name`` (default: the file stem), ``num_hidden_layers``,
    ``hidden_size``, ``num_attention_heads``, ``num_key_value_heads`` (default: MHA),
    ``head_dim`` (default ``hidden_size // num_attention_heads``), ``intermediate_size``,
    ``vocab_size``, ``num_local_experts``, ``num_experts_per_tok``, ``tie_word_embeddings``,
    ``dtype_bytes``, ``gated_mlp`` and ``max_position_embeddings``; nothing else.

    Args:
        name_or_path: A key of :data:`MODELS`, or a path to a ``.yaml``/``.yml`` file.

    Returns:
        The :class:`ModelSpec`.

    Raises:
        ValueError: Unknown name, unreadable file, or an unknown, missing or invalid key
            (one line: ``"<file>: key '<k>': <problem> (got <value>)"``).
    """
    if isinstance(name_or_path, str) and name_or_path in MODELS:
        return MODELS[name_or_path]
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise UserError(f"{path}: model file not found (got {str(name_or_path)!r})")
        return _load_yaml_model(path)
    raise UserError(
        f"unknown model {name_or_path!r}; catalog ids: {', '.join(MODELS)}, or a YAML file path"
    )
