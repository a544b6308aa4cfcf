"""Tests for the GPU and model catalogs and the model YAML loader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from disagg_gym.hardware import GPUS, MODELS, ModelSpec, get_gpu, load_model

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
MODELS_YAML = SHARED / "data" / "models.yaml"


def test_gpu_ids_and_lookup():
    assert set(GPUS) == {
        "h100-sxm",
        "h100-pcie",
        "h200",
        "a100-80gb",
        "b200",
        "l40s",
        "mi300x",
        "gaudi3",
    }
    h100 = get_gpu("h100-sxm")
    assert (h100.bf16_dense_tflops, h100.hbm_bw_tbps, h100.nvlink_gbps_per_dir) == (
        989.0,
        3.35,
        450.0,
    )
    assert h100.hbm_bytes == 80 * 2**30
    assert get_gpu("l40s").nvlink_gbps_per_dir == 0
    for g in GPUS.values():
        assert 0 < g.idle_w < g.tdp_w and g.price_usd_per_hour > 0
    with pytest.raises(ValueError, match=r"'h1000'.*h100-sxm"):
        get_gpu("h1000")


def test_model_catalog_has_required_ids():
    required = {
        "llama-2-7b",
        "llama-2-13b",
        "llama-2-70b",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "mistral-7b-v0.1",
        "mixtral-8x7b",
        "qwen2.5-7b",
        "qwen2.5-32b",
        "qwen2.5-72b",
        "opt-13b",
        "opt-66b",
        "opt-175b",
        "qwen2.5-14b",
    }
    assert required <= set(MODELS)
    q = MODELS["qwen2.5-14b"]
    assert (
        q.num_hidden_layers,
        q.hidden_size,
        q.num_attention_heads,
        q.num_key_value_heads,
        q.head_dim,
        q.intermediate_size,
        q.vocab_size,
        q.tie_word_embeddings,
    ) == (48, 5120, 40, 8, 128, 13824, 152064, False)
    assert MODELS["llama-3.1-8b"].kv_bytes_per_token == 131072
    assert MODELS["llama-2-13b"].kv_bytes_per_token == 819200
    assert MODELS["llama-3.1-8b"].weight_bytes == pytest.approx(16.06e9, rel=0.01)
    mix = MODELS["mixtral-8x7b"]
    assert mix.param_count == 46702792704
    assert mix.active_params_per_token == 12879925248
    assert MODELS["llama-3.1-8b"].active_params_per_token == MODELS["llama-3.1-8b"].param_count


def test_catalog_matches_shared_models_yaml():
    if not MODELS_YAML.is_file():
        pytest.skip(f"{MODELS_YAML} not found (../shared absent next to the repo)")
    data = yaml.safe_load(MODELS_YAML.read_text())
    entries = data.get("models", data)
    checked = 0
    for name, e in entries.items():
        if not isinstance(e, dict) or "num_layers" not in e or name == "deepseek-v3":
            continue
        m = MODELS[name]
        assert m.num_hidden_layers == e["num_layers"] and m.hidden_size == e["hidden_size"], name
        assert m.kv_bytes_per_token == e["kv_cache_bytes_per_token_bf16"], name
        assert m.param_count == pytest.approx(e["params_computed"], rel=2e-3), name
        checked += 1
    assert checked >= 13


def _write(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """\
num_hidden_layers: 32
hidden_size: 4096
num_attention_heads: 32
num_key_value_heads: 8
intermediate_size: 14336
vocab_size: 128256
"""


def test_load_model_from_yaml(tmp_path):
    m = load_model(str(_write(tmp_path, GOOD, "my-llama.yaml")))
    assert m.name == "my-llama" and m.head_dim == 128
    assert m.kv_bytes_per_token == 131072
    assert m.weight_bytes == MODELS["llama-3.1-8b"].weight_bytes
    moe = load_model(
        _write(tmp_path, GOOD + "num_local_experts: 8\nnum_experts_per_tok: 2\nname: moe\n")
    )
    assert moe.is_moe and moe.name == "moe"
    assert load_model("llama-3.1-8b") is MODELS["llama-3.1-8b"]


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ("hidden_layers: 3\n", "hidden_layers", "unknown key"),
        ("num_hidden_layers: -1\n", "num_hidden_layers", "integer"),
        ("num_hidden_layers: true\n", "num_hidden_layers", "integer"),
        ("hidden_size: big\n", "hidden_size", "integer"),
        ("num_key_value_heads: 5\n", "num_key_value_heads", "divide"),
        ("tie_word_embeddings: 1\n", "tie_word_embeddings", "true or false"),
        ("num_local_experts: 8\n", "num_experts_per_tok", "MoE"),
    ],
)
def test_load_model_bad_keys(tmp_path, extra, key, problem):
    lines = [
        ln for ln in GOOD.splitlines(keepends=True) if not ln.startswith(extra.split(":")[0] + ":")
    ]
    path = _write(tmp_path, "".join(lines) + extra)
    with pytest.raises(ValueError) as info:
        load_model(str(path))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: key '{key}': ") and problem in msg and "(got " in msg


def test_load_model_missing_key_and_bad_inputs(tmp_path):
    path = _write(tmp_path, GOOD.replace("vocab_size: 128256\n", ""))
    with pytest.raises(ValueError, match=r"key 'vocab_size': required key is missing \(got None\)"):
        load_model(path)
    with pytest.raises(ValueError, match="key '<root>'"):
        load_model(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ValueError, match="not found"):
        load_model(str(tmp_path / "absent.yaml"))
    with pytest.raises(ValueError, match="unknown model 'gpt-9'"):
        load_model("gpt-9")


def test_model_spec_validation():
    with pytest.raises(ValueError, match="hidden_size"):
        ModelSpec("x", 2, 0, 4, 4, 16, 64, 100)


def test_simulator_layers_do_not_import_gym_or_torch():
    for pkg in ("hardware", "interconnect"):
        for path in (REPO / "disagg_gym" / pkg).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for n in names:
                    assert n.split(".")[0] not in {
                        "gymnasium",
                        "gym",
                        "torch",
                        "stable_baselines3",
                    }, (path, n)
