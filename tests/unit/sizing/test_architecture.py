"""Reading config.json files of the common families into one architecture description."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from vramgate.sizing import SizingError, load_model
from vramgate.sizing.architecture import (
    VisionEncoder,
    architecture_from_config,
    parameter_groups,
    quantization_from_config,
)

LLAMA_LIKE = {
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "intermediate_size": 14336,
}


def test_falcon_7b_uses_one_kv_head() -> None:
    falcon = load_model("tiiuae/falcon-7b")
    assert falcon.num_attention_heads == 71
    assert falcon.num_kv_heads == 1
    assert falcon.head_dim == 64
    assert falcon.attention_kind == "MQA"


def test_falcon_40b_new_decoder_architecture_reads_num_kv_heads() -> None:
    falcon = load_model("TIIUAE/Falcon-40B")
    assert falcon.num_kv_heads == 8
    assert falcon.attention_kind == "GQA"


def test_falcon_without_multi_query_is_multi_head() -> None:
    config = {
        "model_type": "falcon",
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "multi_query": False,
        "vocab_size": 100,
    }
    assert architecture_from_config(config, "tiny-falcon").num_kv_heads == 4


def test_grouped_query_and_head_dim_default() -> None:
    arch = architecture_from_config(LLAMA_LIKE, "llama-like")
    assert arch.attention_kind == "GQA"
    assert arch.head_dim == 128
    assert not arch.tie_word_embeddings  # LlamaConfig's default, the key being absent


def test_gemma3_reads_text_config_and_its_defaults() -> None:
    gemma = load_model("google/gemma-3-27b-it")
    assert gemma.num_layers == 62
    assert gemma.vocab_size == 262208
    assert gemma.sliding_window == 1024
    assert gemma.num_sliding_window_layers == 52  # every 6th of 62 layers attends globally


def test_a_multimodal_checkpoint_counts_its_vision_encoder_and_projector() -> None:
    gemma = load_model("google/gemma-3-27b-it")
    # SigLIP: 27 x 15,239,504 per layer + patch conv 678,528 + 4,096 positions x 1152 + final norm 2,304,
    # then the 1152 x 5376 projection and its norm.
    assert gemma.vision_parameters == 27 * 15_239_504 + 678_528 + 4_718_592 + 2_304 + 6_193_152 + 1_152
    assert gemma.parameters is not None
    assert abs(parameter_groups(gemma).total / gemma.parameters - 1) < 1e-4
    text_only = {"model_type": "gemma3_text", "hidden_size": 5376, "num_hidden_layers": 62}
    text_only |= {"num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128}
    assert architecture_from_config(text_only, "text").vision_parameters == 0


def test_qwen25_vl_counts_its_vision_tower_exactly() -> None:
    qwen = load_model("Qwen/Qwen2.5-VL-7B-Instruct")
    # 32 blocks of 2 RMSNorms (2,560), q/k/v (4,919,040), the output projection (1,639,680) and the gated MLP
    # (13,140,920); the Conv3d patch embedding 3 x 2 x 14 x 14 x 1280; the merger: its RMSNorm, 5120 x 5120
    # and 5120 x 3584 with biases
    assert qwen.vision_parameters == 32 * 19_702_200 + 1_505_280 + 1_280 + 26_219_520 + 18_353_664
    assert parameter_groups(qwen).total == 8_292_166_656  # the published total
    assert qwen.is_multimodal and qwen.qkv_bias
    # vLLM's largest dummy image at the official processor's 16,384 embeddings: 256 x 256 patches of 14
    assert qwen.vision_encoder == VisionEncoder(
        hidden_size=1280,
        intermediate_size=3420,
        image_size=256 * 14,
        patch_size=14,
        channels=3 * 2,
        image_tokens=16_384,
        gated_mlp=True,
        dynamic_resolution=True,
    )


@pytest.mark.parametrize(
    ("model_type", "vision_config", "expected"),
    [
        # Qwen2-VL-7B: LayerNorms, fc1/fc2 at mlp_ratio 4 (19,677,440 a block); `hidden_size` is the merger's
        # output; patch embedding 1,505,280; merger 2,560 + 26,219,520 + 18,353,664
        (
            "qwen2_vl",
            {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "hidden_size": 3584, "in_chans": 3},
            32 * 19_677_440 + 1_505_280 + 2_560 + 26_219_520 + 18_353_664,
        ),
        # Qwen3-VL-8B: LayerNorms, fc1/fc2 (15,239,504 a block), a biased 16 x 16 patch embedding
        # (1,770,624), 2,304 learned positions of 1152, the merger (2,304 + 21,238,272 + 18,878,464) and
        # three deepstack mergers with a LayerNorm over the 4,608 merged features (40,125,952 each)
        (
            "qwen3_vl",
            {
                "depth": 27,
                "hidden_size": 1152,
                "intermediate_size": 4304,
                "out_hidden_size": 4096,
                "patch_size": 16,
                "num_position_embeddings": 2304,
                "deepstack_visual_indexes": [8, 16, 24],
            },
            27 * 15_239_504 + 1_770_624 + 2_654_208 + 2_304 + 21_238_272 + 18_878_464 + 3 * 40_125_952,
        ),
    ],
)
def test_qwen_vl_towers_are_counted_by_generation(
    model_type: str, vision_config: dict[str, object], expected: int
) -> None:
    config = {**LLAMA_LIKE, "model_type": model_type, "vision_config": vision_config}
    assert architecture_from_config(config, model_type).vision_parameters == expected


PIXTRAL = {"model_type": "pixtral", "hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096}


@pytest.mark.parametrize(
    ("wrapper", "patch", "expected"),
    [
        # Mistral-Small-3.1: 24 layers of q/k/v/o (4 x 1024²), a gated MLP (3 x 1024 x 4096) and two RMSNorms;
        # a 14 x 14 patch convolution and the pre-norm; the projector's RMSNorm, a 2 x 2 patch merger
        # (4096 x 1024) and 1024 x 5120 and 5120 x 5120 without biases: its total less the text decoder
        ({"model_type": "mistral3"}, 14, 24 * 16_779_264 + 602_112 + 1_024 + 1_024 + 4_194_304 + 31_457_280),
        # Pixtral-12B as llava: 16 x 16 patches, the two linear layers alone, with biases
        ({"model_type": "llava"}, 16, 24 * 16_779_264 + 786_432 + 1_024 + 31_457_280 + 10_240),
    ],
)
def test_pixtral_counts_its_gated_unbiased_tower_and_its_wrapper_projector(
    wrapper: dict[str, object], patch: int, expected: int
) -> None:
    text = {**LLAMA_LIKE, "model_type": "mistral", "hidden_size": 5120}
    config = {**wrapper, "text_config": text, "vision_config": {**PIXTRAL, "patch_size": patch}}
    assert architecture_from_config(config, "pixtral").vision_parameters == expected


def test_a_qwen_vl_tower_takes_transformers_defaults_for_what_its_config_leaves_out() -> None:
    # A config written with only the keys that differ from Qwen2_5_VLVisionConfig's defaults counts as the
    # full one (its width, 1280, is not the class default, 3584)
    partial = {"hidden_size": 1280, "in_chans": 3, "out_hidden_size": 3584, "tokens_per_second": 2}
    config = {**LLAMA_LIKE, "model_type": "qwen2_5_vl", "vision_config": partial}
    assert architecture_from_config(config, "qwen").vision_parameters == 676_550_144
    with pytest.raises(SizingError, match=r"vision_config: depth: 'deep' is not an integer"):
        architecture_from_config({**config, "vision_config": {**partial, "depth": "deep"}}, "qwen")
    for key in ("hidden_size", "patch_size", "spatial_merge_size", "depth"):
        with pytest.raises(SizingError, match=rf"vision_config: {key}: 0 is not an integer from 1 to"):
            architecture_from_config({**config, "vision_config": {**partial, key: 0}}, "qwen")


LLAMA4_TEXT = {
    "model_type": "llama4_text",
    "hidden_size": 5120,
    "num_hidden_layers": 48,
    "num_attention_heads": 40,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 202048,
    "intermediate_size": 8192,
    "intermediate_size_mlp": 16384,
    "num_experts_per_tok": 1,
    "attention_chunk_size": 8192,
}


@pytest.mark.parametrize(
    ("experts", "step", "expected"),
    [
        # Scout: 48 MoE layers of attention (62,914,560), 16 experts and one shared expert of 3 x 5120 x
        # 8192, a router of 5120 x 16 and two norms; untied 202,048 x 5120 embeddings and lm_head
        (16, 1, 48 * (62_914_560 + 17 * 125_829_120 + 81_920 + 10_240) + 5_120 + 2_068_971_520),
        # Maverick: every second layer MoE (128 experts, a shared one), the others dense at 3 x 5120 x 16384
        (
            128,
            2,
            48 * (62_914_560 + 10_240)
            + 24 * (129 * 125_829_120 + 655_360)
            + 24 * 251_658_240
            + 5_120
            + 2_068_971_520,
        ),
    ],
)
def test_llama4_counts_its_shared_expert_and_dense_layers(experts: int, step: int, expected: int) -> None:
    config = {**LLAMA4_TEXT, "num_local_experts": experts, "interleave_moe_layer_step": step}
    llama4 = architecture_from_config(config, "llama4")
    assert parameter_groups(llama4).total == expected
    assert llama4.num_moe_layers == 48 // step
    # transformers writes chunked local attention into layer_types: attention, as much as a full layer
    chunked = {**config, "layer_types": ["chunked_attention", "chunked_attention", "chunked_attention"] * 16}
    assert parameter_groups(architecture_from_config(chunked, "llama4")).total == expected


ERNIE_45_MOE = {  # baidu/ERNIE-4.5-21B-A3B-PT's shape, in Ernie4_5_MoeConfig's keys
    "model_type": "ernie4_5_moe",
    "hidden_size": 2560,
    "num_hidden_layers": 28,
    "num_attention_heads": 20,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "intermediate_size": 12288,
    "moe_intermediate_size": 1536,
    "moe_num_experts": 64,
    "moe_k": 6,
    "moe_num_shared_experts": 2,
    "moe_layer_start_index": 1,
    "moe_layer_end_index": -1,
    "moe_layer_interval": 1,
    "vocab_size": 103424,
    "tie_word_embeddings": True,
}


@pytest.mark.parametrize(
    ("overrides", "moe_layers"),
    [({}, 27), ({"moe_layer_end_index": 13}, 13), ({"moe_layer_interval": 2}, 14)],
)
def test_ernie_moe_layers_shared_experts_and_top_k(overrides: dict[str, int], moe_layers: int) -> None:
    ernie = architecture_from_config({**ERNIE_45_MOE, **overrides}, "ernie")
    assert (ernie.num_moe_layers, ernie.num_experts_per_token) == (moe_layers, 6)
    assert ernie.shared_expert_intermediate_size == 2 * 1536  # two shared experts of an expert's width
    groups = parameter_groups(ernie)
    assert groups.dense_mlp == (28 - moe_layers) * 3 * 2560 * 12288
    assert groups.experts == moe_layers * 64 * 3 * 2560 * 1536
    assert groups.shared_experts == moe_layers * 3 * 2560 * 3072


def test_dbrx_reads_its_attention_and_ffn_sub_configs() -> None:
    dbrx = architecture_from_config(
        {
            "model_type": "dbrx",
            "d_model": 6144,
            "n_layers": 40,
            "n_heads": 48,
            "vocab_size": 100352,
            "tie_word_embeddings": False,
            "attn_config": {"kv_n_heads": 8, "clip_qkv": 8},
            "ffn_config": {"ffn_hidden_size": 10752, "moe_num_experts": 16, "moe_top_k": 4},
        },
        "dbrx",
    )
    assert (dbrx.num_kv_heads, dbrx.num_experts, dbrx.num_experts_per_token) == (8, 16, 4)
    assert dbrx.num_moe_layers == 40 and dbrx.moe_intermediate_size == 10752
    assert parameter_groups(dbrx).experts == 40 * 16 * 3 * 6144 * 10752  # w1, v1 and w2 per expert


def test_a_per_layer_list_is_named_not_printed() -> None:
    config = {**LLAMA_LIKE, "intermediate_size": [16384] * 35}  # gemma-3n's per-layer MLP widths
    with pytest.raises(SizingError) as raised:
        architecture_from_config(config, "per-layer")
    assert raised.value.message == "a list of 35 values is not an integer from 0 to 10,000,000"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"model_type": "qwen3_next", "full_attention_interval": 4}, "config.json: model_type"),
        (
            {"model_type": "custom_hybrid", "hybrid_override_pattern": "M-M*-"},
            "config.json: hybrid_override_pattern",
        ),
        ({"layer_types": ["linear_attention", "full_attention"]}, "config.json: layer_types"),
        ({"model_type": "mamba2", "num_heads": 80, "state_size": 128}, "config.json: model_type"),
    ],
)
def test_a_model_with_recurrent_layers_is_one_clear_error(config: dict[str, object], field: str) -> None:
    with pytest.raises(SizingError, match="which the sizing does not model") as raised:
        architecture_from_config({**LLAMA_LIKE, **config}, "hybrid")
    assert raised.value.field == field


def test_gemma3s_encoder_profile_shape_comes_from_its_vision_config() -> None:
    gemma = load_model("google/gemma-3-27b-it")
    encoder = gemma.vision_encoder
    assert encoder is not None
    assert (encoder.hidden_size, encoder.intermediate_size, encoder.channels) == (1152, 4304, 3)
    assert (encoder.patches_per_image, encoder.image_tokens) == (64 * 64, 256)  # 896 / 14 = 64 a side
    # A family whose embeddings per image were not read is left unmodelled, not guessed
    text = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}
    llava = {"model_type": "llava", "vision_config": {"hidden_size": 1024, "image_size": 336}}
    llava |= {"text_config": text}
    assert architecture_from_config(llava, "llava").vision_encoder is None


@pytest.mark.parametrize(
    ("model", "positions", "width"),
    [
        # global layers: linear rope, 131072 positions x 8; sliding layers: their own unscaled table
        ("google/gemma-3-27b-it", (1_048_576, 131_072), 128),
        ("meta-llama/Llama-3.1-8B-Instruct", (131_072,), 128),  # llama3 rope: max_position alone
        ("openai/gpt-oss-120b", (4096 * 32,), 64),  # yarn: the original context x factor
        ("deepseek-ai/DeepSeek-V2-Lite", (4096 * 40,), 64),  # MLA: the rope part of the head
        ("google/gemma-2-9b-it", (8192,), 256),
    ],
)
def test_rotary_tables_follow_the_rope_scaling(model: str, positions: tuple[int, ...], width: int) -> None:
    arch = load_model(model)
    assert (arch.rotary_table_positions, arch.rotary_dim) == (positions, width)


def test_rope_parameters_by_layer_type_and_partial_rotary_width() -> None:
    config: dict[str, object] = {"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 6}
    config |= {"num_attention_heads": 4, "head_dim": 16, "sliding_window": 8, "partial_rotary_factor": 0.5}
    config |= {
        "rope_parameters": {
            "full_attention": {"rope_type": "linear", "factor": 8.0},
            "sliding_attention": {"rope_type": "default"},
        }
    }
    arch = architecture_from_config(config, "v5")
    assert (arch.rotary_table_positions, arch.rotary_dim) == ((1_048_576, 131_072), 8)
    config["rope_parameters"] = {"rope_type": "linear", "factor": "eight"}
    with pytest.raises(SizingError, match="rope factor"):
        architecture_from_config(config, "hostile")


def test_a_vision_config_with_a_zero_patch_is_bad_input_not_a_crash() -> None:
    vision = {"hidden_size": 32, "num_hidden_layers": 2, "patch_size": 0, "image_size": 224}
    config: dict[str, object] = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config |= {"vocab_size": 10, "vision_config": vision}
    with pytest.raises(SizingError, match="vision_config: hidden_size and patch_size must be positive"):
        architecture_from_config(config, "hostile")


def test_gpt_oss_alternates_sliding_and_full_layers_and_is_moe() -> None:
    gpt_oss = load_model("openai/gpt-oss-120b")
    assert (gpt_oss.sliding_window, gpt_oss.num_sliding_window_layers) == (128, 18)
    assert gpt_oss.is_moe and gpt_oss.num_experts == 128 and gpt_oss.num_experts_per_token == 4
    assert gpt_oss.quantization is not None and gpt_oss.quantization.experts_only


def test_deepseek_uses_latent_attention_and_dense_first_layer() -> None:
    lite = load_model("deepseek-ai/DeepSeek-V2-Lite")
    assert lite.attention_kind == "MLA"
    assert (lite.kv_lora_rank, lite.qk_rope_head_dim) == (512, 64)
    assert lite.num_moe_layers == 26  # first_k_dense_replace = 1


def test_qwen2_sliding_window_is_off_unless_enabled() -> None:
    qwen = load_model("Qwen/Qwen2-7B-Instruct")
    assert qwen.sliding_window is None
    enabled = architecture_from_config(
        {
            **LLAMA_LIKE,
            "model_type": "qwen2",
            "sliding_window": 4096,
            "use_sliding_window": True,
            "max_window_layers": 28,
        },
        "qwen-swa",
    )
    assert enabled.num_sliding_window_layers == 4


def test_unknown_family_with_standard_keys_works() -> None:
    arch = architecture_from_config({**LLAMA_LIKE, "model_type": "brand_new"}, "new")
    assert arch.family == "brand_new" and arch.num_kv_heads == 8


def test_missing_key_is_named() -> None:
    config = {k: v for k, v in LLAMA_LIKE.items() if k != "num_hidden_layers"}
    with pytest.raises(SizingError, match="missing 'num_hidden_layers'"):
        architecture_from_config(config, "broken")


def test_wrong_type_is_named() -> None:
    with pytest.raises(SizingError, match=r"num_key_value_heads.*'eight' is not an integer from 0 to 4,096"):
        architecture_from_config({**LLAMA_LIKE, "num_key_value_heads": "eight"}, "broken")


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_hidden_layers", 10**18), ("hidden_size", float("inf")), ("vocab_size", float("nan")),
     ("intermediate_size", 2.5), ("num_attention_heads", True), ("n_routed_experts", 1 << 40)],
)  # fmt: skip
def test_config_values_are_bounded_like_the_inline_architecture(key: str, value: object) -> None:
    """A config.json is input like any other: 10^18 layers is refused with its key, not planned."""
    with pytest.raises(SizingError) as error:
        architecture_from_config({**LLAMA_LIKE, key: value}, "hostile")
    assert error.value.field.endswith(f": {key}") and "is not an integer from 0 to" in error.value.message


def test_config_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(SizingError, match=r"not valid JSON \(line 1"):
        load_model(str(path))


def test_config_directory_and_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_LIKE))
    assert load_model(str(tmp_path)).num_layers == 32
    assert load_model(str(tmp_path / "config.json")).num_layers == 32


@pytest.mark.parametrize(
    ("raw", "method", "bits", "group", "bytes_per_weight"),
    [
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "gptq", 4, 128, 0.5 + 2.5 / 128),
        ({"quant_method": "awq", "bits": 4, "group_size": 64}, "awq", 4, 64, 0.5 + 2.5 / 64),
        ({"quant_method": "gptq", "bits": 8, "group_size": -1}, "gptq", 8, None, 1.0),
        ({"quant_method": "fp8", "activation_scheme": "dynamic"}, "fp8", 8, None, 1.0),
        ({"quant_method": "mxfp4"}, "mxfp4", 4, 32, 0.5 + 1 / 32),
        (
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            "fp8",
            8,
            None,
            1.0,
        ),
    ],
)
def test_quantization_formats(
    raw: dict[str, object], method: str, bits: int, group: int | None, bytes_per_weight: float
) -> None:
    quant = quantization_from_config(raw)
    assert quant is not None
    assert (quant.method, quant.bits, quant.group_size) == (method, bits, group)
    assert quant.bytes_per_weight() == pytest.approx(bytes_per_weight)


def test_unknown_quantization_is_refused() -> None:
    with pytest.raises(SizingError, match="quant_method 'magic' is not supported"):
        quantization_from_config({"quant_method": "magic"})


def test_an_architecture_hashes_by_its_fields_and_pickles_without_its_kept_hash() -> None:
    """The hash is kept once computed (the planner's caches look it up often), so it must still follow
    the fields, and must not travel in a pickle: another process hashes strings differently."""
    arch = load_model("meta-llama/Llama-3.1-8B-Instruct")
    same = replace(arch)
    assert same is not arch and hash(same) == hash(arch)
    assert hash(replace(arch, num_layers=arch.num_layers + 1)) != hash(arch)
    copied = pickle.loads(pickle.dumps(arch))
    assert copied == arch
    assert "_fields_hash" not in vars(copied)
