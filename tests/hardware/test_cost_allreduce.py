"""Tensor-parallel all-reduce terms of the cost model against hand-computed ring costs (#19).

Toy model: 2 layers, hidden 64, bf16, on a toy GPU whose scale-up link is 100 GB/s per
direction. Per all-reduce of T tokens the ring over tp GPUs costs
``latency + 2*(tp-1)*alpha + 2*(tp-1)/tp * T*64*2 B / (100e9 * nvlink_eff * allreduce_bw_eff)``,
and an iteration runs 2 per layer = 4 of them. Every expected number below is worked out by
hand in the comments, not with the implementation's formula.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from disagg_gym.hardware import CalibParams, GPUSpec, ModelSpec, build_instance_cost

TOY_MODEL = ModelSpec(
    name="toy",
    num_hidden_layers=2,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=4,
    head_dim=16,
    intermediate_size=128,
    vocab_size=256,
)
TOY_GPU = GPUSpec(
    name="toy-gpu",
    bf16_dense_tflops=100.0,
    hbm_gb=16.0,
    hbm_bw_tbps=1.0,
    tdp_w=300.0,
    idle_w=30.0,
    price_usd_per_hour=1.0,
    nvlink_gbps_per_dir=100.0,
    pcie_gbps_per_dir=10.0,
)
TOY_PCIE_GPU = replace(TOY_GPU, name="toy-pcie", nvlink_gbps_per_dir=0.0)
PARAMS = CalibParams(
    compute_eff=0.5,
    attn_compute_eff=0.5,
    mem_eff=0.8,
    attn_parallel_units=32.0,
    smoothmax_exp=3.0,
    layer_overhead_s=1e-5,
    allreduce_latency_s=3e-6,
    allreduce_alpha_s=1e-6,
    allreduce_bw_eff=0.8,
    nvlink_eff=0.5,
    pcie_eff=0.5,
)


def cost(tp, params=PARAMS, gpu=TOY_GPU):
    return build_instance_cost(gpu, TOY_MODEL, tp, params)


def test_no_allreduce_at_tp1():
    assert cost(1).allreduce_s(1000) == 0.0


def test_tp2_ring_cost_by_hand():
    # 1000 tokens * 64 * 2 B = 128000 B per all-reduce; ring bw 100e9*0.5*0.8 = 40e9 B/s.
    # tp=2: bytes term 2*1/2 * 128000/40e9 = 3.2 us; latency 3 us + 2*1*1 us = 5 us -> 8.2 us.
    # 4 all-reduces per iteration -> 32.8 us.
    assert cost(2).allreduce_s(1000) == pytest.approx(32.8e-6, rel=1e-12)


def test_tp4_ring_cost_by_hand():
    # tp=4: bytes term 2*3/4 * 3.2 us = 4.8 us; latency 3 us + 2*3*1 us = 9 us -> 13.8 us; x4.
    assert cost(4).allreduce_s(1000) == pytest.approx(55.2e-6, rel=1e-12)


def test_pcie_fallback_by_hand():
    # No NVLink: ring bw 10e9*0.5*0.8 = 4e9 B/s; bytes term 128000/4e9 = 32 us; +5 us; x4.
    assert cost(2, gpu=TOY_PCIE_GPU).allreduce_s(1000) == pytest.approx(148e-6, rel=1e-12)


def test_iteration_difference_is_the_latency_terms():
    # Zeroing latency and alpha removes exactly 4 * (3 us + 2*(tp-1)*1 us) from every
    # iteration: 20 us at tp=2, 36 us at tp=4, for prefill and for decode.
    for tp, expected in ((2, 20e-6), (4, 36e-6)):
        no_lat = replace(PARAMS, allreduce_latency_s=0.0, allreduce_alpha_s=0.0)
        full, bare = cost(tp), cost(tp, no_lat)
        assert full.prefill_s([700]) - bare.prefill_s([700]) == pytest.approx(expected, rel=1e-9)
        assert full.decode_s([300] * 5) - bare.decode_s([300] * 5) == pytest.approx(
            expected, rel=1e-9
        )


def test_iteration_difference_is_the_bandwidth_term():
    # Halving allreduce_bw_eff (0.8 -> 0.4) doubles the bytes term: at tp=2, 1000 prompt
    # tokens, +3.2 us per all-reduce, +12.8 us per iteration; decode of 5 sequences moves
    # 5*128 B = 640 B per all-reduce: +640/40e9 = 16 ns each, +64 ns per iteration.
    slow = replace(PARAMS, allreduce_bw_eff=0.4)
    assert cost(2, slow).prefill_s([1000]) - cost(2).prefill_s([1000]) == pytest.approx(
        12.8e-6, rel=1e-9
    )
    assert cost(2, slow).decode_s([300] * 5) - cost(2).decode_s([300] * 5) == pytest.approx(
        64e-9, rel=1e-6
    )


def test_allreduce_does_not_depend_on_compute_efficiencies():
    other = replace(PARAMS, compute_eff=0.9, mem_eff=0.3, layer_overhead_s=0.0)
    assert cost(4, other).allreduce_s(512) == cost(4).allreduce_s(512)


@pytest.mark.parametrize(
    ("key", "value"),
    [("allreduce_alpha_s", -1e-6), ("allreduce_bw_eff", 0.0), ("allreduce_bw_eff", 2.0)],
)
def test_allreduce_params_validated(key, value):
    with pytest.raises(ValueError, match=key):
        replace(PARAMS, **{key: value})

