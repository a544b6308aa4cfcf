"""A GPU of the user's own, read from a YAML file of the catalog's keys.

Oracle: a file holding exactly a catalog entry's figures gives the same spec as the catalog id
(and the same predictions); every bad file is one line naming the file, key and value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from disagg_gym.errors import UserError
from disagg_gym.hardware import get_gpu
from disagg_gym.hardware.select import build_cost
from disagg_gym.hardware.model import load_model
from disagg_gym.scenario import load_scenario
from disagg_gym.simulation import Simulation

H100 = {"bf16_dense_tflops": 989.0, "hbm_gb": 80.0, "hbm_bw_tbps": 3.35, "tdp_w": 700.0,
        "price_usd_per_hour": 5.435, "nvlink_gbps_per_dir": 450.0, "pcie_gbps_per_dir": 64.0}


def _write(tmp_path: Path, body: dict | str, name: str = "mygpu.yaml") -> Path:
    p = tmp_path / name
    p.write_text(body if isinstance(body, str) else "".join(f"{k}: {v}\n" for k, v in body.items()))
    return p


def test_a_file_with_a_catalog_entrys_figures_is_that_gpu(tmp_path: Path) -> None:
    p = _write(tmp_path, H100)
    spec, ref = get_gpu(str(p)), get_gpu("h100-sxm")
    assert spec.name == "mygpu"
    assert dataclasses.replace(spec, name="h100-sxm") == ref  # idle_w defaults to the catalog's fraction of TDP
    model = load_model("llama-3.1-8b")
    a, b = build_cost(spec, model, 1), build_cost(ref, model, 1)
    assert a.decode_s([2048] * 64) == b.decode_s([2048] * 64) and a.prefill_s([1000], [0]) == b.prefill_s([1000], [0])
    assert get_gpu(str(_write(tmp_path, {**H100, "name": "h100-nvl", "idle_w": 55}, "g2.yaml"))).idle_w == 55.0


def test_a_cluster_runs_on_a_gpu_file(tmp_path: Path) -> None:
    p = _write(tmp_path, H100)
    scen = load_scenario("small-route", {"horizon_s": 5, "cluster.groups[0].gpu": str(p), "cluster.groups[1].gpu": str(p)})
    ref = load_scenario("small-route", {"horizon_s": 5})
    s, r = Simulation(scen, seed=1).run(), Simulation(ref, seed=1).run()
    assert s["requests_total"] == r["requests_total"] and s["slo_tokens_per_s"] == r["slo_tokens_per_s"]


@pytest.mark.parametrize(("body", "message"), [
    ({**H100, "colour": 1}, "key 'colour': unknown key; allowed: bf16_dense_tflops, "),
    ({k: v for k, v in H100.items() if k != "hbm_gb"}, "key 'hbm_gb': required key is missing (got None)"),
    ({**H100, "tdp_w": "lots"}, "key 'tdp_w': expected a finite number (got 'lots')"),
    ({**H100, "pcie_gbps_per_dir": 0}, "GPUSpec 'mygpu': pcie_gbps_per_dir must be > 0 (got 0.0)"),
    ({**H100, "idle_w": 900}, "GPUSpec 'mygpu': idle_w must be <= tdp_w (got 900.0)"),
    ("- a\n- b\n", "key '<root>': expected a mapping of GPU figures (got ['a', 'b'])"),
    # a unit mistake: GB/s in the TB/s key (predictions 2x too fast), FLOP/s in the TFLOPS key
    ({**H100, "hbm_bw_tbps": 5300}, "key 'hbm_bw_tbps': implausibly large for TB/s (an H100 SXM is 3.35): "
                                    "GB/s written instead? (got 5300)"),
    ({**H100, "bf16_dense_tflops": 1.3e15}, "key 'bf16_dense_tflops': implausibly large for TFLOPS"),
    ({**H100, "hbm_gb": 192e9}, "key 'hbm_gb': implausibly large for GB"),
])
def test_a_bad_gpu_file_is_one_line(tmp_path: Path, body: dict | str, message: str) -> None:
    p = _write(tmp_path, body)
    with pytest.raises(UserError) as exc:
        get_gpu(str(p))
    assert str(exc.value).startswith(f"{p}: {message}") and "\n" not in str(exc.value)


def test_a_missing_gpu_file_and_an_unknown_id(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"nope\.yaml: GPU file not found"):
        get_gpu(str(tmp_path / "nope.yaml"))
    with pytest.raises(UserError, match=r"^unknown GPU 'h999'; valid ids: h100-sxm, .*, or a YAML file path$"):
        get_gpu("h999")


# Llama-3.1-8B's Hugging Face config.json as published (meta-llama/Llama-3.1-8B), keys that do
# not change shapes included: the model it gives is the catalog's llama-3.1-8b.
HF_LLAMA_31_8B = (
    '{"architectures":["LlamaForCausalLM"],"attention_bias":false,"attention_dropout":0.0,"bos_token_id":128000,'
    '"eos_token_id":128001,"hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,"intermediate_size":14336,'
    '"max_position_embeddings":131072,"mlp_bias":false,"model_type":"llama","num_attention_heads":32,'
    '"num_hidden_layers":32,"num_key_value_heads":8,"pretraining_tp":1,"rms_norm_eps":1e-05,"rope_scaling":'
    '{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,'
    '"rope_type":"llama3"},"rope_theta":500000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16",'
    '"transformers_version":"4.43.0.dev0","use_cache":true,"vocab_size":128256}'
)


def test_a_hugging_face_config_json_is_read_as_it_is(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(HF_LLAMA_31_8B)
    spec = load_model(str(p))
    assert dataclasses.replace(spec, name="llama-3.1-8b") == load_model("llama-3.1-8b")
    p.write_text(HF_LLAMA_31_8B.replace('"bfloat16"', '"float32"'))
    assert load_model(str(p)).dtype_bytes == 4
    p.write_text(HF_LLAMA_31_8B.replace('"bfloat16"', '"int4"'))
    with pytest.raises(UserError, match=r"key 'torch_dtype': expected one of bfloat16, float16, float32, "
                                        r"float8_e4m3fn \(or give dtype_bytes\) \(got 'int4'\)"):
        load_model(str(p))
    p.write_text(HF_LLAMA_31_8B.replace('"use_cache"', '"colour"'))
    with pytest.raises(UserError, match=r"key 'colour': unknown key"):  # still strict about anything else
        load_model(str(p))


def test_hugging_face_keys_that_change_memory_are_refused_not_ignored(tmp_path: Path) -> None:
    # They were ignored: an FP8 config predicted bf16 weights (16.06 GB for Llama-3.1-8B).
    p = tmp_path / "config.json"
    fp8 = HF_LLAMA_31_8B[:-1] + ',"quantization_config":{"quant_method":"fp8"}}'
    p.write_text(fp8)
    with pytest.raises(UserError, match=r"key 'quantization_config': quantized weights are not read from it; "
                                        r"give dtype_bytes .* \(got \{'quant_method': 'fp8'\}\)$"):
        load_model(str(p))
    p.write_text(fp8[:-1] + ',"dtype_bytes":1}')  # the precision stated: half the bf16 weight bytes
    assert load_model(str(p)).weight_bytes * 2 == load_model("llama-3.1-8b").weight_bytes
    p.write_text(HF_LLAMA_31_8B[:-1] + ',"sliding_window":4096}')  # Mistral-7B-v0.1 style
    with pytest.raises(UserError, match=r"key 'sliding_window': sliding-window attention is not modelled"):
        load_model(str(p))
    for off in (',"sliding_window":null}', ',"sliding_window":4096,"use_sliding_window":false}'):  # Qwen2 style
        p.write_text(HF_LLAMA_31_8B[:-1] + off)
        assert dataclasses.replace(load_model(str(p)), name="llama-3.1-8b") == load_model("llama-3.1-8b")


def test_predict_names_a_file_by_its_name_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from disagg_gym.cli import main

    p = _write(tmp_path, {**H100, "name": "h100-copy"})
    assert main(["predict", "--gpu", str(p), "--model", "llama-3.1-8b", "--phase", "decode", "--batch", "64",
                 "--length", "2048"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"decode iteration of llama-3.1-8b on h100-copy ({p}) (tp 1, roofline cost model), batch of 64 sequence(s) "
        "at context 2,048 tokens: 14.8871 ms"  # the catalog H100's figure: same figures, same answer
    )


@pytest.mark.parametrize("kind", ["gpu", "model"])
def test_a_big_non_yaml_file_gives_a_short_line(tmp_path: Path, kind: str) -> None:
    # a CSV named as --gpu/--model parses as one long YAML string: the message used to print
    # all of it (700 KB for the Azure trace)
    f = tmp_path / "trace.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "2023-11-16 18:15:46.6805900,374,44\n" * 20_000)
    with pytest.raises(ValueError) as exc:
        (get_gpu if kind == "gpu" else load_model)(str(f))
    msg = str(exc.value)
    assert "key '<root>': expected a mapping" in msg and msg.endswith("...)") and len(msg) < 300 + len(str(f))
