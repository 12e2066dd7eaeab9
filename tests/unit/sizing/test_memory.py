"""Weights and KV-cache bytes against hand-computed values: MHA, GQA, MQA, MLA, MoE, sliding windows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vramgate.sizing import Precision, find_gpu, load_model
from vramgate.sizing.architecture import architecture_from_config, parameter_groups
from vramgate.sizing.engines import Engine, EngineBuild, engine_model
from vramgate.sizing.memory import (
    KvSafetyMargin,
    MxSwizzle,
    kv_bytes_per_token_per_layer,
    kv_layout,
    pipeline_stages,
    resolve_weight_format,
    swizzled_expert_extra_bytes,
    weights_bytes,
)
from vramgate.sizing.units import GIB, KIB

BF16 = 2


@pytest.mark.parametrize(
    ("model", "bytes_per_token"),
    [
        ("meta-llama/Llama-2-7b-hf", 2 * 32 * 32 * 128 * BF16),  # MHA: 512 KiB
        ("meta-llama/Llama-3.1-8B-Instruct", 2 * 32 * 8 * 128 * BF16),  # GQA: 128 KiB
        ("tiiuae/falcon-7b", 2 * 32 * 1 * 64 * BF16),  # MQA: 8 KiB
        ("deepseek-ai/DeepSeek-V2-Lite", 27 * (512 + 64) * BF16),  # MLA: the latent, no K/V split
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 2 * 32 * 8 * 128 * BF16),  # MoE does not change attention
    ],
)
def test_kv_bytes_per_token(model: str, bytes_per_token: int) -> None:
    arch = load_model(model)
    assert kv_layout(arch, BF16, 1, 16).bytes_per_token == bytes_per_token


def test_falcon_7b_kv_is_8_kib_not_the_seed_articles_568() -> None:
    falcon = load_model("tiiuae/falcon-7b")
    assert kv_layout(falcon, BF16, 1, 16).bytes_per_token == 8 * KIB
    seed_formula = 2 * BF16 * 32 * 4544  # the article's 2 x bytes x layers x d_model
    assert seed_formula == 568 * KIB
    assert seed_formula // (8 * KIB) == 71


def test_fp8_kv_halves_the_cache() -> None:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    assert kv_bytes_per_token_per_layer(llama, 1, 1) * 2 == kv_bytes_per_token_per_layer(llama, 2, 1)


def test_tensor_parallel_splits_kv_heads_and_replicates_when_fewer_than_gpus() -> None:
    llama70 = load_model("meta-llama/Llama-3.1-70B-Instruct")  # 8 KV heads
    assert kv_bytes_per_token_per_layer(llama70, BF16, 8) == 2 * 1 * 128 * BF16
    falcon = load_model("tiiuae/falcon-7b")  # 1 KV head: every GPU keeps it
    assert kv_bytes_per_token_per_layer(falcon, BF16, 2) == kv_bytes_per_token_per_layer(falcon, BF16, 1)


def test_mla_latent_is_replicated_on_every_gpu() -> None:
    lite = load_model("deepseek-ai/DeepSeek-V2-Lite")
    assert kv_bytes_per_token_per_layer(lite, BF16, 2) == (512 + 64) * BF16


def test_sparse_mla_caches_its_indexer_key_and_keeps_fp8_scales_and_a_bf16_rotary_key() -> None:
    # DeepSeek-V3.2's shape: a 512-wide latent, a 64-wide rotary key, an indexer key of 128 (`index_topk`
    # marks the indexer): 128 fp8 bytes and one fp32 scale, 132 bytes a layer, the same on every GPU
    config = {
        "model_type": "deepseek_v32",
        "hidden_size": 7168,
        "num_hidden_layers": 61,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "vocab_size": 129280,
        "intermediate_size": 18432,
        "kv_lora_rank": 512,
        "q_lora_rank": 1536,
        "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128,
        "v_head_dim": 128,
        "index_topk": 2048,
        "index_head_dim": 128,
    }
    sparse = architecture_from_config(config, "v32")
    assert kv_bytes_per_token_per_layer(sparse, BF16, 8) == (512 + 64) * BF16 + 132
    # fp8: FlashMLA's sparse format, 512 fp8 bytes, 4 fp32 scales and the rotary key in bf16: 656 bytes
    assert kv_bytes_per_token_per_layer(sparse, 1, 8) == 512 + 4 * 4 + 64 * 2 + 132
    dense = architecture_from_config({k: v for k, v in config.items() if k != "index_topk"}, "v3")
    assert dense.index_head_dim == 0
    assert kv_bytes_per_token_per_layer(dense, 1, 8) == 512 + 64


def test_sequences_take_whole_blocks() -> None:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    layout = kv_layout(llama, BF16, 1, 16)
    assert layout.bytes_per_sequence(1000, 2048) == 1008 * layout.bytes_per_token  # 63 blocks of 16
    assert layout.capacity_tokens(layout.bytes_per_block * 10 + 1) == 160


def test_sliding_window_layers_hold_the_window_plus_one_step() -> None:
    gpt_oss = load_model("openai/gpt-oss-120b")
    layout = kv_layout(gpt_oss, BF16, 1, 16)
    per_layer = layout.bytes_per_token_per_layer
    assert (layout.group_size, layout.group_counts) == (18, (1, 1))
    # 18 full layers keep 16384 tokens (1024 blocks); 18 sliding layers keep 128 - 1 + 2048 tokens
    # (136 blocks) plus one block for a window that straddles a block boundary.
    assert layout.bytes_per_sequence(16384, 2048) == 18 * (1024 + 137) * 16 * per_layer
    assert layout.bytes_per_sequence(100, 2048) == 18 * (7 + 8) * 16 * per_layer
    # Capacity counts every layer, as vLLM prints it.
    assert layout.bytes_per_block == 36 * 16 * per_layer


def test_uneven_layer_types_are_grouped_with_padding_like_vllms_hybrid_allocator() -> None:
    gemma3 = load_model("google/gemma-3-27b-it")  # 52 sliding-window layers, 10 global
    layout = kv_layout(gemma3, BF16, 1, 16)
    assert (layout.group_size, layout.group_counts) == (10, (1, 6))
    assert layout.bytes_per_block == 70 * 16 * layout.bytes_per_token_per_layer  # 8 padding slots
    assert layout.bytes_per_token == 62 * layout.bytes_per_token_per_layer


@pytest.mark.parametrize(
    ("full", "sliding", "larger_group_below", "group_size", "group_counts"),
    [
        (13, 12, 1.0, 12, (2, 1)),  # the smaller count: 13 full layers take two groups, 11 padding slots
        (13, 12, 1.25, 13, (1, 1)),  # 13 < 1.25 x 12: one group each, one padding slot
        (14, 10, 1.25, 10, (2, 1)),  # 14 >= 12.5
        (14, 10, 1.5, 14, (1, 1)),  # 14 < 15
    ],
)
def test_layer_groups_take_the_larger_count_only_below_the_engines_ratio(
    full: int, sliding: int, larger_group_below: float, group_size: int, group_counts: tuple[int, int]
) -> None:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    arch = replace(llama, num_layers=full + sliding, sliding_window=4096, num_sliding_window_layers=sliding)
    layout = kv_layout(arch, BF16, 1, 16, larger_group_below=larger_group_below)
    assert (layout.group_size, layout.group_counts) == (group_size, group_counts)
    assert layout.bytes_per_block == group_size * sum(group_counts) * 16 * layout.bytes_per_token_per_layer


def test_context_tokens_count_max_length_sequences_with_windowed_groups() -> None:
    gemma3 = load_model("google/gemma-3-27b-it")  # 1 global group and 6 sliding groups of 10 layers
    layout = kv_layout(gemma3, BF16, 1, 16)
    budget = 1000 * layout.bytes_per_group_block + 1  # 1000 blocks of each group's 10 layers
    # 8192 tokens: the global group takes 512 blocks, each sliding group min(8192, 1023 + 8192) tokens in
    # 512 blocks, plus one: 512 + 6 x 513 = 3590 blocks a sequence; int(1000 / 3590 x 8192) = 2281.
    assert layout.context_tokens(budget, 8192, 8192) == 2281
    # 32768 tokens, chunks of 2048: 2048 + 6 x (ceil(3071 / 16) + 1) = 3206 blocks; int(1000 / 3206 x 32768)
    assert layout.context_tokens(budget, 32768, 2048) == 10220
    assert layout.capacity_tokens(budget) == 1000 // 7 * 16  # whole blocks of all 7 groups at once
    llama = kv_layout(load_model("meta-llama/Llama-3.1-8B-Instruct"), BF16, 1, 16)
    # Full attention only: 4097 tokens take 257 blocks, int(1000 / 257 x 4097) = 15941, not 16000
    assert llama.context_tokens(1000 * llama.bytes_per_group_block, 4097, 2048) == 15941


def test_dense_weights_are_bytes_times_parameters() -> None:
    llama2 = load_model("meta-llama/Llama-2-7b-hf")
    fmt = resolve_weight_format(llama2, Precision.FP16)
    assert weights_bytes(llama2, fmt, 1).per_gpu == 2 * parameter_groups(llama2).total
    fp32 = resolve_weight_format(llama2, Precision.FP32)
    assert weights_bytes(llama2, fp32, 1).per_gpu == 4 * parameter_groups(llama2).total


def test_tensor_parallel_splits_weights_but_replicates_norms() -> None:
    llama = load_model("meta-llama/Llama-3.1-70B-Instruct")
    fmt = resolve_weight_format(llama, Precision.BF16)
    one, four = weights_bytes(llama, fmt, 1), weights_bytes(llama, fmt, 4)
    assert four.per_gpu > one.per_gpu / 4
    assert four.per_gpu == pytest.approx(one.per_gpu / 4, rel=0.001)


def test_int4_keeps_embeddings_in_16_bit_and_pays_for_group_scales() -> None:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    groups = parameter_groups(llama)
    int4 = weights_bytes(llama, resolve_weight_format(llama, Precision.INT4), 1).per_gpu
    embeddings = (groups.embedding + groups.lm_head) * 2
    linear = groups.total - groups.embedding - groups.lm_head - groups.norms
    assert int4 == pytest.approx(embeddings + linear * (0.5 + 2.5 / 128) + groups.norms * 2, rel=1e-6)


def test_gptq_checkpoint_matches_the_engine_log() -> None:
    phi4 = load_model("kaitchup/Phi-4-AutoRound-GPTQ-4bit")
    weights = weights_bytes(phi4, resolve_weight_format(phi4, Precision.AUTO), 1).per_gpu
    assert weights / GIB == pytest.approx(8.51, rel=0.01)  # vLLM: "Loading model weights took 8.5107 GB"


def test_mxfp4_experts_are_padded_like_vllms_marlin_layout() -> None:
    gpt_oss = load_model("openai/gpt-oss-120b")
    fmt = resolve_weight_format(gpt_oss, Precision.AUTO)
    engine = engine_model(Engine.VLLM, EngineBuild("0.10.1.1"))
    padding = engine.expert_padding(find_gpu("A100-80GB"), fmt)
    assert padding is not None and (padding.intermediate_multiple, padding.hidden_multiple) == (128, 256)
    per_gpu = weights_bytes(gpt_oss, fmt, 4, padding).per_gpu / GIB
    assert per_gpu == pytest.approx(17.2217, rel=0.02)  # vLLM 0.10.1.1 on 4 x A100: 17.2217 GiB per GPU
    assert weights_bytes(gpt_oss, fmt, 4).per_gpu / GIB < per_gpu


def test_prequantized_checkpoint_refuses_another_precision() -> None:
    awq = load_model("Qwen/Qwen2.5-7B-Instruct-AWQ")
    with pytest.raises(ValueError, match="pre-quantized int4 checkpoint"):
        resolve_weight_format(awq, Precision.FP16)


def test_the_vision_encoder_sits_on_the_first_stage_in_the_compute_dtype() -> None:
    gemma = load_model("google/gemma-3-27b-it")
    weights = resolve_weight_format(gemma, Precision.AUTO)
    first, last = pipeline_stages(gemma.num_layers, 2)
    text_only = replace(gemma, vision_parameters=0, parameters=None)
    vision_bytes = gemma.vision_parameters * weights.compute_bytes
    gained = (
        weights_bytes(gemma, weights, 1, stage=first).per_gpu
        - weights_bytes(text_only, weights, 1, stage=first).per_gpu
    )
    assert abs(gained - vision_bytes) <= 1
    assert weights_bytes(gemma, weights, 1, stage=last) == weights_bytes(text_only, weights, 1, stage=last)


def test_pipeline_stages_split_layers_like_vllm() -> None:
    assert [s.layers for s in pipeline_stages(27, 2)] == [14, 13]
    assert [s.layers for s in pipeline_stages(32, 3)] == [11, 11, 10]
    assert [s.first_layer for s in pipeline_stages(32, 3)] == [0, 11, 22]
    (only,) = pipeline_stages(32, 1)
    assert only.is_first and only.is_last and only.layers == 32


def test_pipeline_stages_hold_their_share_of_weights_and_kv() -> None:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    fmt = resolve_weight_format(llama, Precision.BF16)
    first, last = pipeline_stages(32, 2)
    whole = weights_bytes(llama, fmt, 1).per_gpu
    halves = (
        weights_bytes(llama, fmt, 1, stage=first).per_gpu + weights_bytes(llama, fmt, 1, stage=last).per_gpu
    )
    assert halves == pytest.approx(whole, rel=1e-6)  # untied: the embedding and lm_head each live once
    assert (
        kv_layout(llama, BF16, 1, 16, first).bytes_per_token * 2
        == kv_layout(llama, BF16, 1, 16).bytes_per_token
    )


def test_a_safety_margin_holds_back_its_share_and_asks_for_exactly_enough_pool() -> None:
    margin = KvSafetyMargin(relative_per_10k=100, absolute_bytes=GIB // 4)
    assert margin.promised(10 * GIB) == 10 * GIB * 99 // 100 - GIB // 4
    assert margin.promised(GIB // 8) == 0  # a pool smaller than the absolute part promises nothing
    for kv_bytes in (1, 12_345, 7 * GIB + 3):
        pool = margin.pool_for(kv_bytes)
        assert margin.promised(pool) >= kv_bytes > margin.promised(pool - 1)


def test_a_hopper_swizzled_mxfp4_expert_adds_its_padding_and_scales() -> None:
    # gpt-oss: intermediate 2880 (w13 5760 rows x 1440 bytes, w2 2880 rows x 1440 bytes), 90 scales a row.
    scales_copy = 5888 * 90 + 3072 * 90  # rows padded to 256
    assert swizzled_expert_extra_bytes(2880, 2880, MxSwizzle.TILES, True) == scales_copy
    packed_padding = 5760 * (1472 - 1440) + 2880 * (1472 - 1440)  # 1440 bytes padded to 64
    assert swizzled_expert_extra_bytes(2880, 2880, MxSwizzle.PADDED_64, True) == (
        packed_padding + scales_copy
    )
    checkpoint_scales = 5760 * 90 + 2880 * 90
    assert swizzled_expert_extra_bytes(2880, 2880, MxSwizzle.PADDED_64, False) == (
        packed_padding + scales_copy - checkpoint_scales
    )
