"""What each engine does with memory, release by release (figures computed by hand from the source's
rules), and the arguments a plan gives it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vramgate.sizing import Precision, find_gpu, load_model
from vramgate.sizing.architecture import ModelArchitecture, architecture_from_config, load_config_file
from vramgate.sizing.catalog import unknown_gpu
from vramgate.sizing.engines import Engine, EngineBuild, Launch, Scheduling, definition, engine_model
from vramgate.sizing.engines.base import ALL_FREE_MEMORY, FreeMemoryRule
from vramgate.sizing.engines.tgi import TgiModel, _launcher_vram_tokens, _replay_forward
from vramgate.sizing.engines.vllm import MARLIN_MXFP4, RELEASES, Sampler, VllmModel, _replay_v0_forward
from vramgate.sizing.memory import (
    NO_KV_SAFETY_MARGIN,
    ExpertPadding,
    KvSafetyMargin,
    MxSwizzle,
    kv_layout,
    pipeline_stages,
    resolve_weight_format,
    weight_tensor_sizes,
    weights_bytes,
)
from vramgate.sizing.planner import PlanRequest, plan
from vramgate.sizing.precision import KvCacheDtype, Quantization
from vramgate.sizing.units import GIB, KIB, MIB

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"  # hidden 4096, intermediate 14336, vocab 128256, 32 layers


def _vllm(
    version: str | None, gpu: str = "L4", image: str | None = None, *, eager: bool = False
) -> VllmModel:
    model = engine_model(Engine.VLLM, EngineBuild(version, image, eager=eager), find_gpu(gpu))
    assert isinstance(model, VllmModel)
    return model


@pytest.mark.parametrize(
    ("version", "first"),
    [
        ("v0.2.4", "0.2.0"),
        ("0.2.5", "0.2.5"),
        ("0.3.0", "0.2.6"),
        ("0.6.3", "0.5.3"),
        ("v0.6.4", "0.6.4"),
        ("0.6.4.post1", "0.6.4"),
        ("0.7.0", "0.7.0"),
        ("0.8.5", "0.8.5"),
        ("0.9.1", "0.9.1"),
        ("0.10.1.1", "0.10.0"),
        ("v0.11.0", "0.10.0"),
        ("0.11.2", "0.11.1"),
        ("0.28.1", "0.28.0"),
        ("0.30.0", "0.29.0"),
        ("0.33.0", "0.31.0"),
        ("0.34.1", "0.34.0"),
    ],
)
def test_a_version_takes_the_last_release_row_at_or_before_it(version: str, first: str) -> None:
    assert _vllm(version, "H100-80GB").release.version == first


def test_every_release_row_cites_the_source_it_was_read_from() -> None:
    assert [row.first for row in RELEASES] == sorted(row.first for row in RELEASES)
    for row in RELEASES:
        assert "@v" + row.version in row.source, row


@pytest.mark.parametrize(
    ("version", "assumed"),
    [
        (None, "0.11.0"),  # the default image's release
        ("latest", "0.34.0"),  # nothing newer is known
        ("not shown (V0 worker.py:241)", "0.6.4 (V0 engine)"),
        ("0.1.dev7548+gbaba038", "0.11.0"),  # an untagged source build says nothing
    ],
)
def test_an_unstated_release_is_assumed_and_said(version: str | None, assumed: str) -> None:
    model = _vllm(version)
    assert model.release_label == assumed
    assert any(f"the rules of {assumed.split(maxsplit=1)[0]}" in note for note in model.assumptions)


def test_a_stated_release_assumes_nothing_but_the_install_and_how_it_compiles() -> None:
    (compiles,) = _vllm("0.12.0").assumptions
    assert "a cold compile, as a new pod makes" in compiles
    assert _vllm("0.12.0", eager=True).assumptions == ()
    assert engine_model(Engine.VLLM, EngineBuild("0.12.0", compile_cached=True)).assumptions == ()
    assert _vllm("0.11.0", image="vllm/vllm-openai:v0.11.0").assumptions == ()  # no timing before 0.11.1
    assert any("triton sampler" in note for note in _vllm("0.30.0").assumptions)
    assert any("FlashInfer" in note for note in _vllm("0.10.1.1").assumptions)
    assert _vllm("0.10.1.1", image="vllm/vllm-openai:v0.10.1.1").assumptions == ()


def _activation(model: VllmModel, tokens: int, seqs: int) -> int:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    return model.overhead(llama, fmt, 1, Scheduling(seqs, tokens, 16)).activation_bytes


def test_the_profile_peak_is_the_mlp_or_the_sampler_whichever_is_larger() -> None:
    # 8192 tokens x 2 bytes x (3 x 4096 + 3 x 14336) = 905,969,664 bytes in the MLP;
    # 8192 x 2 x 4096 + 1024 x 128256 x 38.4 bytes = 5,110,339,994 with the sort sampler.
    assert _activation(_vllm("0.11.0"), 8192, 1024) == 5_110_339_994
    assert _activation(_vllm("0.11.0"), 8192, 1) == 905_969_664


def _forward(model: VllmModel | TgiModel, name: str, tensor_parallel: int, tokens: int) -> int:
    arch = load_model(name)
    fmt = resolve_weight_format(arch, Precision.BF16)
    return model.overhead_curve(arch, fmt, tensor_parallel, tokens).forward_bytes


@pytest.mark.parametrize(
    ("version", "model", "tensor_parallel", "width"),
    [
        # LlamaModel.forward's loop holds the previous output: 4 x 4096 + 3 x 14336 (gate_up and SiluAndMul)
        ("0.2.4", LLAMA_8B, 1, 4 * 4096 + 3 * 14336),
        # from 0.6.4 gate_up is freed after SiluAndMul: max(3 x 4096 + 3 x 14336, 4 x 4096 + 14336)
        ("0.6.4", LLAMA_8B, 1, 3 * 4096 + 3 * 14336),
        # at TP 8 the down projection's moment is larger: 4 x 8192 + 3584 over 3 x 8192 + 3 x 3584
        ("0.6.4", "meta-llama/Llama-2-70b-hf", 8, 4 * 8192 + 3584),
        # qwen2.py keeps gate_up to the end in every V0 release: 4 x 3584 + 3 x 18944
        ("0.6.4", "Qwen/Qwen2.5-7B-Instruct", 1, 4 * 3584 + 3 * 18944),
        ("0.8.0", "Qwen/Qwen2.5-7B-Instruct", 1, 3 * 3584 + 3 * 18944),
        ("0.2.4", "meta-llama/Llama-2-70b-hf", 8, 4 * 8192 + 3 * 3584),
        # V1 runs the model compiled
        ("0.8.0", LLAMA_8B, 1, 3 * 4096 + 3 * 14336),
        ("0.8.0", "meta-llama/Llama-2-70b-hf", 8, 3 * 8192 + 3 * 3584),
    ],
)
def test_v0_forward_peaks_where_its_python_frames_keep_tensors_alive(
    version: str, model: str, tensor_parallel: int, width: int
) -> None:
    assert _forward(_vllm(version, "A100-80GB"), model, tensor_parallel, 2048) == 2048 * 2 * width


def test_the_v0_engine_of_a_v1_release_runs_the_eager_forward() -> None:
    v0 = engine_model(Engine.VLLM, EngineBuild("0.9.2 V0"), find_gpu("A100-80GB"))
    assert isinstance(v0, VllmModel)
    eager = 2048 * 2 * (4 * 8192 + 3584)  # as 0.6.4 at TP 8
    assert _forward(v0, "meta-llama/Llama-2-70b-hf", 8, 2048) == eager


@pytest.mark.parametrize(
    ("model", "tensor_parallel", "width"),
    [
        # seven hidden-wide (the layer's five locals, the loop's two) + gate_up, silu, product: 7h + 4I
        (LLAMA_8B, 1, 7 * 4096 + 4 * 14336),
        # 28672/4 = 7168 < 8192: the down projection's moment, 8h + 3I, is larger
        ("meta-llama/Llama-2-70b-hf", 4, 8 * 8192 + 3 * 7168),
        # hidden 16384 > 8192: in-place norm, 5h + 4I or 6h + 3I, but the fp32 norm's 8h is larger
        ("meta-llama/Llama-3.1-405B-Instruct", 8, 8 * 16384),
    ],
)
def test_tgi_warmup_forward_holds_the_layer_and_loop_locals(
    model: str, tensor_parallel: int, width: int
) -> None:
    for version in ("0.9.4", "2.2.0", "3.3.5"):
        assert _forward(_tgi(version), model, tensor_parallel, 4096) == 4096 * 2 * width


def test_flashinfer_samples_only_where_the_install_has_it() -> None:
    # 0.8.0 to 0.11.0: FlashInfer when installed (the official image has it): 10 bytes per logit.
    image = _vllm("0.10.1.1", image="docker.io/vllm/vllm-openai:v0.10.1.1")
    pip = _vllm("0.10.1.1")  # the wheel does not depend on FlashInfer; unknown takes the larger profile
    assert image.sampler is Sampler.FLASHINFER and pip.sampler is Sampler.SORT
    assert _activation(image, 2048, 1024) == 2048 * 2 * 4096 + 1024 * 128256 * 10
    assert _vllm("0.11.1", image="vllm/vllm-openai:v0.11.1").sampler is Sampler.SORT  # opt-in from 0.11.1
    assert _vllm("0.22.0", image="vllm/vllm-openai:v0.22.0").sampler is Sampler.TRITON
    # From 0.23 the wheel brings FlashInfer, but whether it runs depends on the GPU and its JIT: unknown
    # takes Triton's larger profile; the image's kernels run.
    assert _vllm("0.23.0").sampler is Sampler.TRITON
    assert _vllm("0.23.0", image="vllm/vllm-openai:v0.23.0").sampler is Sampler.FLASHINFER


def test_triton_top_k_top_p_keeps_a_vocab_row_per_sm_from_0_17() -> None:
    llama = load_model(LLAMA_8B)  # vocab 128256
    fmt = resolve_weight_format(llama, Precision.BF16)
    # 8192 x 2 x 4096 hidden states + 1024 x 128256 x 14 bytes of logits and their copies
    # + min(next_pow2(min(132, 1024)), 132) = 132 rows x 128256 x 4 bytes of scratch on an H100
    assert _activation(_vllm("0.19.0", "H100-80GB"), 8192, 1024) == (67_108_864 + 1_838_678_016 + 67_719_168)
    assert _activation(_vllm("0.19.0", "A100-80GB"), 8192, 1024) == 1_961_193_472  # 108 SMs: 108 rows
    buffer = _vllm("0.19.0", "H100-80GB").sampler_program_buffer(llama, fmt)
    assert buffer.bytes_at(20) == 32 * 128256 * 4  # 20 programs, rounded up to 32
    assert buffer.bytes_at(100) == 128 * 128256 * 4
    assert buffer.bytes_at(130) == 132 * 128256 * 4  # 256 is past the SMs
    assert _vllm("0.16.0", "H100-80GB").sampler_program_buffer(llama, fmt).max_bytes == 0  # the sort path
    flashinfer = _vllm("0.23.0", "H100-80GB", image="vllm/vllm-openai:v0.23.0")
    assert flashinfer.sampler_program_buffer(llama, fmt).max_bytes == 0  # FlashInfer's kernels keep none
    first_stage = _vllm("0.19.0", "H100-80GB").overhead_curve(llama, fmt, 1, 8192, samples=False)
    assert first_stage.sampler_buffer.max_bytes == 0


def test_non_torch_growth_is_measured_past_cuda_graph_profiling_from_0_18() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    scheduling = Scheduling(256, 2048, 16)
    # round(0.13 x 2**30) = 139,586,437 and round(0.26 x 2**30) = 279,172,874 bytes at TP 1
    assert _vllm("0.17.0").overhead(llama, fmt, 1, scheduling).non_torch_bytes == 139_586_437
    assert _vllm("0.18.0").overhead(llama, fmt, 1, scheduling).non_torch_bytes == 279_172_874
    assert _vllm("0.33.0").overhead(llama, fmt, 1, scheduling).non_torch_bytes == 279_172_874
    # Torch's allocated peak alone before 0.2.5: no non-torch term at all
    assert _vllm("0.2.4").overhead(llama, fmt, 2, scheduling).non_torch_bytes == 0


def test_a_gpu_of_unknown_sm_count_takes_the_most_any_gpu_has() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    unknown = engine_model(Engine.VLLM, EngineBuild("0.19.0"), unknown_gpu(80 * GIB))
    assert unknown.sm_count == engine_model(Engine.VLLM, EngineBuild("0.19.0")).sm_count == 188
    assert unknown.sampler_program_buffer(llama, fmt).max_bytes == 188 * 128256 * 4


@pytest.mark.parametrize(
    ("version", "max_model_len", "batched"),
    [
        ("0.5.2", 65536, 65536),  # whole prompts, no automatic chunking
        ("0.5.3", 65536, 512),  # chunked above 32K
        ("0.5.3", 32768, 32768),
        ("0.6.4.post1", 65536, 512),
        ("0.6.5", 65536, 2048),
        ("0.6.5", 4096, 4096),
        ("0.6.5", 1024, 2048),  # never under 2048
    ],
)
def test_v0_profiles_the_batch_its_release_picks(version: str, max_model_len: int, batched: int) -> None:
    l4 = find_gpu("L4")
    scheduling = _vllm(version).default_scheduling(l4.cuda_total_bytes, l4, max_model_len)
    assert (scheduling.max_num_seqs, scheduling.max_num_batched_tokens) == (256, batched)


def test_v0_with_chunked_prefill_still_counts_the_drivers_sampler() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    l4 = find_gpu("L4")
    model = _vllm("0.6.6")
    scheduling = model.default_scheduling(l4.cuda_total_bytes, l4, 65536)
    activation = model.overhead(llama, fmt, 2, scheduling).activation_bytes
    # the MLP: 2048 tokens x 2 bytes x (3 x 4096 + 3 x 14336 / 2) = 138,412,032, less than the sampler:
    # 2048 x 2 x 4096 hidden states + 256 sequences x 128256 logits x 38.4 bytes
    assert activation == round(2048 * 2 * 4096 + 256 * 128256 * 38.4) == 1_277_584_998


@pytest.mark.parametrize(
    ("version", "gpu", "seqs", "batched"),
    [
        ("0.8.0", "H100-80GB", 1024, 8192),
        ("0.8.0", "A100-80GB", 256, 2048),  # 0.8.0 named H100 and H200 only
        ("0.8.5", "A100-80GB", 1024, 8192),  # any GPU of 70 GiB
        ("0.9.0", "A100-80GB", 256, 2048),  # A100s excepted again
        ("0.9.0", "H100-80GB", 1024, 8192),
        ("0.27.0", "B200", 1024, 8192),
        ("0.28.0", "B200", 1024, 16384),  # >= 160 GiB
        ("0.28.0", "L4", 256, 2048),
    ],
)
def test_v1_batch_defaults_follow_the_release_and_the_gpu(
    version: str, gpu: str, seqs: int, batched: int
) -> None:
    card = find_gpu(gpu)
    scheduling = _vllm(version, gpu).default_scheduling(card.cuda_total_bytes, card, 8192)
    assert (scheduling.max_num_seqs, scheduling.max_num_batched_tokens) == (seqs, batched)


@pytest.mark.parametrize(
    ("version", "gpu", "batched"),
    [
        ("0.8.0", "H100-80GB", 16384),
        ("0.8.0", "A100-80GB", 8192),
        ("0.9.1", "H100-80GB", 16384),
        ("0.9.1", "A100-80GB", 8192),  # the smaller tier, four times the server's 2048
        ("0.28.0", "B200", 16384),  # the >= 160 GiB tier: the server's own budget
        ("0.28.0", "L4", 8192),
    ],
)
def test_the_offline_class_batches_more_than_the_server(version: str, gpu: str, batched: int) -> None:
    card = find_gpu(gpu)
    model = engine_model(Engine.VLLM, EngineBuild(version, offline=True), card)
    scheduling = model.default_scheduling(card.cuda_total_bytes, card, 8192)
    server = _vllm(version, gpu).default_scheduling(card.cuda_total_bytes, card, 8192)
    assert scheduling.max_num_batched_tokens == batched
    assert scheduling.max_num_seqs == server.max_num_seqs


@pytest.mark.parametrize(
    ("version", "non_torch"),
    [
        ("0.2.4", 0),  # max_memory_allocated: nothing outside torch counts
        ("0.2.5", round(0.13 * GIB) + 265 * MIB),  # total - free: the L4's CUDA context counts
        ("0.4.2", round(0.13 * GIB)),  # drop in free memory since start: no context
        ("0.6.4", round(0.13 * GIB) + 265 * MIB),  # used - torch: the context counts
        ("0.6.5", round(0.13 * GIB)),  # from a baseline
    ],
)
def test_what_counts_as_non_torch_memory_follows_the_release(version: str, non_torch: int) -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    overhead = _vllm(version).overhead(llama, fmt, 1, Scheduling(256, 2048, 16))
    assert overhead.non_torch_bytes == non_torch


@pytest.mark.parametrize(
    ("version", "head_size", "bytes_per_token_per_layer"),
    [
        ("0.6.6", 256, 16_384),  # K and V of 16 heads padded to 256, 2 bytes
        ("0.7.0", 192, 12_288),  # 128 + 64: the heads as they are
        ("0.7.1", None, 1_152),  # the latent: (512 + 64) x 2
        ("0.7.2", None, 1_280),  # 576 elements rounded up to 128 (256 bytes of bf16): 640 x 2
        ("0.7.3", None, 1_280),
        ("0.8.0", None, 1_152),  # no alignment again
    ],
)
def test_mla_caches_full_heads_before_0_7_1_and_pads_them_before_0_7(
    version: str, head_size: int | None, bytes_per_token_per_layer: int
) -> None:
    # 16 KV heads, kv_lora_rank 512, qk_nope 128, rope dim 64, 27 layers
    lite = load_model("deepseek-ai/DeepSeek-V2-Lite")
    model = _vllm(version)
    mla_head_size = model.mla_head_size(lite)
    assert mla_head_size == head_size
    alignment = model.mla_latent_alignment(lite, 2)
    layout = kv_layout(lite, 2, 1, 16, mla_head_size=mla_head_size, mla_latent_alignment=alignment)
    assert layout.bytes_per_token_per_layer == bytes_per_token_per_layer


@pytest.mark.parametrize(
    ("version", "method", "head_size", "alignment"),
    [
        ("0.7.1", "awq", 192, 1),  # MLA off: full K and V heads of 128 + 64
        ("0.7.2", "gptq", 192, 1),  # nor is the entry aligned without MLA
        ("0.7.2", "fp8", None, 128),
        ("0.7.3", "awq", None, 128),  # MLA for every quantization from 0.7.3
    ],
)
def test_mla_runs_for_quantized_checkpoints_other_than_fp8_only_from_0_7_3(
    version: str, method: str, head_size: int | None, alignment: int
) -> None:
    lite = load_model("deepseek-ai/DeepSeek-V2-Lite")
    quantized = replace(lite, quantization=Quantization(method=method, bits=8 if method == "fp8" else 4))
    model = _vllm(version)
    assert model.mla_head_size(quantized) == head_size
    assert model.mla_latent_alignment(quantized, 2) == alignment
    fmt = resolve_weight_format(quantized, Precision.AUTO)
    (stage,) = pipeline_stages(lite.num_layers, 1)
    assert (model.derived_weight_bytes(quantized, fmt, 2, stage) == 0) == (head_size is not None)


def test_an_aligned_mla_entry_rounds_to_256_bytes_of_the_compute_dtype() -> None:
    lite = load_model("deepseek-ai/DeepSeek-V2-Lite")
    model = _vllm("0.7.3")
    # an fp8 cache still rounds to 128 elements of the bf16 model dtype: 640 x 1 byte
    assert (
        kv_layout(
            lite, 1, 1, 16, mla_latent_alignment=model.mla_latent_alignment(lite, 2)
        ).bytes_per_token_per_layer
        == 640
    )
    # an fp32 model aligns to 64 elements: 576 is already a multiple, 576 x 4 bytes
    assert (
        kv_layout(
            lite, 4, 1, 16, mla_latent_alignment=model.mla_latent_alignment(lite, 4)
        ).bytes_per_token_per_layer
        == 2304
    )


@pytest.mark.parametrize(
    ("version", "tensor_parallel", "fp8", "derived"),
    [
        # 27 layers of 16 heads, hidden 2048, no query compression, latent 512, rope 64, 16-bit:
        # 8 heads (TP 2): W_Q_UK 2048 x 8 x 512 x 2 = 16 MiB, W_UV_O the same, W_QR 2048 x 8 x 64 x 2 = 2 MiB
        ("0.7.1", 2, False, 27 * 34 * MIB),
        # 2 heads (TP 8): 4 + 4 + 0.5 MiB
        ("0.7.3", 8, False, 27 * 8.5 * MIB),
        # an fp8 checkpoint's products are requantized to 1 byte, W_QR stays 16-bit: 8 + 8 + 2 MiB
        ("0.7.2", 2, True, 27 * 18 * MIB),
        ("0.7.0", 2, False, 0),  # full heads: nothing absorbed
        ("0.8.0", 2, False, 0),  # W_UK and W_UV stay views of kv_b_proj
    ],
)
def test_v0_mla_keeps_its_absorbed_matrices_beside_the_weights_from_0_7_1_to_0_7_3(
    version: str, tensor_parallel: int, fp8: bool, derived: float
) -> None:
    lite = load_model("deepseek-ai/DeepSeek-V2-Lite")
    fmt = resolve_weight_format(lite, Precision.FP8 if fp8 else Precision.BF16)
    (stage,) = pipeline_stages(lite.num_layers, 1)
    assert _vllm(version).derived_weight_bytes(lite, fmt, tensor_parallel, stage) == derived
    assert _vllm(version).derived_weight_bytes(load_model(LLAMA_8B), fmt, tensor_parallel, stage) == 0


@pytest.mark.parametrize(
    ("version", "hybrid", "larger_group_below"),
    [
        ("0.9.0", False, 1.0),
        ("0.9.1", True, 1.0),
        ("0.11.2", True, 1.0),
        ("0.12.0", True, 1.25),
        ("0.18.0", True, 1.5),
    ],
)
def test_the_hybrid_allocator_and_its_layer_groups_follow_the_release(
    version: str, hybrid: bool, larger_group_below: float
) -> None:
    model = _vllm(version, "H100-80GB")
    assert (model.sliding_window_paged, model.larger_group_below) == (hybrid, larger_group_below)


def test_the_printed_kv_size_counts_max_length_requests_from_0_22() -> None:
    layout = kv_layout(load_model("google/gemma-3-27b-it"), 2, 1, 16)
    budget = 1000 * layout.bytes_per_group_block
    old, new = (_vllm(v, "H100-80GB") for v in ("0.21.0", "0.22.0"))
    # 1000 blocks: whole blocks of all 7 groups (142 x 16 tokens), or 1000 / 3590 max-length requests
    assert old.reported_kv_tokens(layout, budget, 8192, 8192) == 2272
    assert new.reported_kv_tokens(layout, budget, 8192, 8192) == 2281


def test_gemma3s_encoder_profile_holds_its_pixels_and_embeddings_under_the_text_peak() -> None:
    gemma = load_model("google/gemma-3-27b-it")
    fmt = resolve_weight_format(gemma, Precision.BF16)
    v1 = _vllm("0.19.0", "H100-80GB")
    encoder = v1.encoder_profile(gemma, fmt, 1, 8192)
    # 8192 / 256 = 32 images of 3 x 896 x 896 bf16 pixels (4,816,896 bytes) and 256 x 5376 bf16 embeddings
    # (2,752,512 bytes); the encoder's peak: the pixels and 4096 patches x (2 x 1152 + 2 x 4304) x 2 bytes.
    assert encoder.held_bytes == 32 * (4_816_896 + 2_752_512)
    assert encoder.peak_bytes == 32 * (4_816_896 + 4096 * 10_912 * 2)
    text_only = replace(gemma, vision_encoder=None)
    scheduling = Scheduling(1024, 8192, 16)
    with_images, without = (v1.overhead(arch, fmt, 1, scheduling) for arch in (gemma, text_only))
    assert with_images.activation_bytes - without.activation_bytes == encoder.held_bytes
    # Before 0.10.0 the count rounds up: ceil(8000 / 256) = 32 images, not 31; V0 is not modelled.
    assert _vllm("0.9.1", "H100-80GB").encoder_profile(gemma, fmt, 1, 8000).held_bytes == encoder.held_bytes
    assert v1.encoder_profile(gemma, fmt, 1, 8000).held_bytes == 31 * (4_816_896 + 2_752_512)
    assert _vllm("0.6.5").encoder_profile(gemma, fmt, 1, 8192).held_bytes == 0


def test_qwen25_vl_encodes_one_image_at_the_official_processors_size() -> None:
    qwen = load_model("Qwen/Qwen2.5-VL-7B-Instruct")
    fmt = resolve_weight_format(qwen, Precision.BF16)
    v1 = _vllm("0.19.0", "H100-80GB")
    encoder = v1.encoder_profile(qwen, fmt, 1, 8192)
    # One image of 16,384 embeddings: 128 x 128 merged patches of 2 x 2, so 65,536 patches, each 3 channels
    # x 2 frames x 14 x 14 bf16 pixels (154,140,672 bytes), and 16,384 x 3584 bf16 embeddings (117,440,512);
    # the peak: the pixels and every patch's residual, normed input, gate_up (2 x 3420) and product (3420)
    assert encoder.held_bytes == 154_140_672 + 117_440_512
    assert encoder.peak_bytes == 154_140_672 + 65_536 * (2 * 1280 + 3 * 3420) * 2
    # TP 2 splits the intermediate: 1710 wide
    assert (
        v1.encoder_profile(qwen, fmt, 2, 8192).peak_bytes == 154_140_672 + 65_536 * (2 * 1280 + 3 * 1710) * 2
    )
    # its profile modelled, the runner's embeddings lookup outside the compiled graph copies no table
    assert v1.compile_profile_bytes(qwen, fmt, 1, 8192) == 0
    assert v1.compile_profile_bytes(replace(qwen, vision_encoder=None), fmt, 1, 8192) > 0


def test_an_encoder_peak_above_the_text_peak_bounds_the_profile() -> None:
    gemma = load_model("google/gemma-3-27b-it")
    fmt = resolve_weight_format(gemma, Precision.BF16)
    v1 = _vllm("0.19.0", "H100-80GB")
    curve = v1.overhead_curve(gemma, fmt, 1, 8192)
    encoder = v1.encoder_profile(gemma, fmt, 1, 8192)
    assert curve.activation_bytes(1) >= encoder.peak_bytes  # one sequence: the sampler is small


def test_vllm_loads_its_rotary_tables_beside_the_weights() -> None:
    gemma = load_model("google/gemma-3-27b-it")
    bf16 = resolve_weight_format(gemma, Precision.BF16)
    # (1,048,576 + 131,072) positions x 128 x 2 bytes: 0.28125 GiB on every GPU
    assert _vllm("0.19.0", "H100-80GB").loaded_buffer_bytes(gemma, bf16) == 301_989_888
    request = PlanRequest(model=load_model(LLAMA_8B), model_source=LLAMA_8B, max_seq_len=8192, concurrency=1)
    llama = plan(replace(request, gpu=find_gpu("H100-80GB"), gpu_count=1), alternatives=False)
    assert llama.weights_bytes_per_gpu == 2 * 8_030_261_248 + 131_072 * 128 * 2


def test_cuda_graphs_count_inside_the_fraction_from_0_20() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    scheduling = Scheduling(256, 2048, 16)
    old, new = (_vllm(v).overhead(llama, fmt, 1, scheduling) for v in ("0.19.0", "0.20.0"))
    # the L4's CUDA context: 58 SMs x 1536 threads x 2 KiB + 91 MiB = 265 MiB
    assert old.outside_bytes == 265 * MIB + 512 * MIB and new.outside_bytes == 265 * MIB
    # The cold compile's copy of the embedding table and its output, (128256 + 2048) x 4096 x 2 bytes, is
    # above Triton top-k/top-p's 2048 x 2 x 4096 + 256 x 128256 x 14 + an L4's 58 SMs x 128256 x 4
    assert old.activation_bytes == 1_067_450_368
    # The estimate's bound: 51 PIECEWISE sizes up to 512, 35 FULL up to 256 (the L4's FlashAttention).
    # First FULL capture: 32 splits x 256 x 32 heads x 129 x 4 = 135,266,304 + a 20 MiB segment;
    # first PIECEWISE: 2 x (512 x 110,592 forward bytes + 20 MiB) = 155,189,248; the larger is FULL's
    # 156,237,824. Each further graph: 32 layers x 256 KiB = 8 MiB, 84 of them = 704,643,072.
    assert new.activation_bytes == 1_067_450_368 + 156_237_824 + 704_643_072


@pytest.mark.parametrize(
    ("version", "seqs", "tokens", "sizes"),
    [
        # 2 x 4 = 8 is the largest: 1, 2, 4, 8
        ("0.20.0", 4, 8192, [1, 2, 4, 8]),
        # min(2 x 256, 512, 300) = 300: the strided sizes up to 288; 0.21 adds the 300 tokens themselves
        ("0.20.0", 256, 300, [1, 2, 4, *range(8, 256, 8), 256, 272, 288]),
        ("0.21.0", 256, 300, [1, 2, 4, *range(8, 256, 8), 256, 272, 288, 300]),
        # 2 x 100 = 200 is the largest; 0.31 adds max_num_seqs (off the stride of 8) as a decode size
        ("0.30.0", 100, 8192, [1, 2, 4, *range(8, 201, 8)]),
        ("0.31.0", 100, 8192, [1, 2, 4, *range(8, 201, 8), 100]),
    ],
)
def test_cuda_graph_capture_sizes_follow_the_release(
    version: str, seqs: int, tokens: int, sizes: list[int]
) -> None:
    profile = _vllm(version, "H100-80GB").cuda_graph_profile(load_model(LLAMA_8B), tokens, seqs)
    assert profile.piecewise_graphs == len(sizes)
    assert profile.largest_piecewise_tokens == max(sizes)
    assert profile.full_graphs == len([size for size in sizes if size <= seqs])


def test_gpt_oss_and_blackwell_from_0_28_capture_up_to_1024_tokens() -> None:
    llama, gpt_oss = load_model(LLAMA_8B), load_model("openai/gpt-oss-20b")
    # 1, 2, 4, 31 sizes of 8 up to 248, 49 of 16 from 256 to 1024
    assert _vllm("0.20.0", "H100-80GB").cuda_graph_profile(gpt_oss, 8192, 1024).piecewise_graphs == 83
    assert _vllm("0.20.0", "H100-80GB").cuda_graph_profile(llama, 8192, 1024).piecewise_graphs == 51
    assert _vllm("0.27.0", "B200").cuda_graph_profile(llama, 8192, 1024).piecewise_graphs == 51
    blackwell = _vllm("0.28.0", "B200").cuda_graph_profile(llama, 8192, 1024)
    assert (blackwell.piecewise_graphs, blackwell.full_graphs, blackwell.largest_full_tokens) == (
        83,
        83,
        1024,
    )
    # A batch limit the plan picks is bounded by any: the largest FULL graphs too
    assert _vllm("0.20.0", "H100-80GB").cuda_graph_profile(llama, 8192, None).full_graphs == 51


def test_cuda_graphs_follow_the_batch_limit_the_plan_picks() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    curve = _vllm("0.20.0", "H100-80GB").overhead_curve(llama, fmt, 1, 8192)
    # 32 sequences: sizes 1, 2, 4, 8...64 (11 PIECEWISE), 7 FULL up to 32; the first PIECEWISE capture
    # 2 x (64 x 110,592 + 20 MiB) = 56,098,816 beats FULL's 32 x 32 x 32 x 129 x 4 + 20 MiB; 16 more
    # graphs of 8 MiB
    assert curve.cuda_graphs.bytes_at(32) == 56_098_816 + 16 * 8 * MIB
    # Any limit: 51 + 51 graphs up to 512, FULL's 32 x 512 x 32 x 129 x 4 + 20 MiB first
    assert curve.cuda_graphs.max_bytes == 291_504_128 + 100 * 8 * MIB
    # The largest batch is searched with the graphs at each limit, not their most
    budget = curve.budget_for(32 * GIB, 32)
    assert curve.largest_batch(budget, GIB, 1024) == 32


def test_a_plan_bounds_the_graphs_for_its_stage_and_kv_dtype() -> None:
    request = PlanRequest(
        model=load_model(LLAMA_8B),
        model_source=LLAMA_8B,
        max_seq_len=8192,
        concurrency=8,
        engine_version="0.20.0",
        gpu=find_gpu("L4"),
        gpu_count=1,
        memory_fraction=0.9,
    )
    # At 0.9 the L4 runs its default 256 sequences: 51 + 35 graphs, 84 further ones of 8 MiB (32 layers)
    auto = plan(request, alternatives=False)
    fp8 = plan(replace(request, kv_cache_dtype=KvCacheDtype.FP8), alternatives=False)
    assert fp8.cuda_graph_bytes_per_gpu - auto.cuda_graph_bytes_per_gpu == 394 * MIB - 135_266_304
    # Two stages of 16 layers: 4 MiB a further graph
    staged = plan(replace(request, pipeline_parallel=2), alternatives=False)
    assert auto.cuda_graph_bytes_per_gpu - staged.cuda_graph_bytes_per_gpu == 84 * 4 * MIB


def test_cuda_graph_bound_follows_the_attention_backend_and_the_stage() -> None:
    lite = load_model("deepseek-ai/DeepSeek-V2-Lite")  # MLA: 16 heads, latent 512; 27 layers, MoE
    hopper, blackwell = _vllm("0.20.0", "H100-80GB"), _vllm("0.20.0", "B200")
    forward = 100_000  # bytes per token: 2 x (512 x 100,000 + 20 MiB) = 144,342,528 for PIECEWISE
    # FlashAttention MLA: 32 x 512 x 16 x 513 x 4 = 537,919,488 + 20 MiB; further graphs: 27 x 436,906
    # bytes = 11.25 MiB, 6 steps = 12 MiB, 100 of them
    assert hopper.cuda_graph_bytes_for(lite, 1, 27, forward, 8192, 1024) == (
        537_919_488 + 20 * MIB + 100 * 12 * MIB
    )
    # At TP 2 the heads halve; a pipeline stage of 3 layers still counts two 2 MiB steps a graph
    assert hopper.cuda_graph_bytes_for(lite, 2, 3, forward, 8192, 1024) == (
        537_919_488 // 2 + 20 * MIB + 100 * 4 * MIB
    )
    # Blackwell prefers FlashInfer: its 394 MiB workspace is the larger first FULL capture at TP 2
    assert blackwell.cuda_graph_bytes_for(lite, 2, 3, forward, 8192, 1024) == (
        394 * MIB + 20 * MIB + 100 * 4 * MIB
    )
    # Llama-3.1-8B on an L4 (Ada): FlashAttention unless the KV cache is fp8, which only Hopper's version
    # reads; then FlashInfer's workspace is the larger first FULL capture
    llama, ada = load_model(LLAMA_8B), _vllm("0.20.0", "L4")
    assert ada.flash_attention_runs(llama, kv_cache_fp8=False)
    assert not ada.flash_attention_runs(llama, kv_cache_fp8=True)
    assert hopper.flash_attention_runs(llama, kv_cache_fp8=True)
    assert ada.cuda_graph_bytes_for(llama, 1, 32, forward, 8192, 1024, kv_cache_fp8=True) == (
        394 * MIB + 20 * MIB + 100 * 8 * MIB
    )
    # Before 0.20.0 the flat figure, outside the fraction
    assert _vllm("0.19.0").cuda_graph_bytes_for(lite, 1, 27, forward, 8192, 1024) == 512 * MIB


def test_a_cold_compile_times_the_embedding_lookup_on_a_copy_of_the_table_from_0_11_1() -> None:
    qwen = load_model("Qwen/Qwen3-32B")  # vocabulary 151936, hidden 5120, MLP 25600
    fmt = resolve_weight_format(qwen, Precision.BF16)
    table_and_output = (151_936 + 2048) * 5120 * 2  # 1,576,796,160 bytes in bf16
    compiled = _vllm("0.29.0", "L40S").overhead_curve(qwen, fmt, 1, 2048)
    assert compiled.forward_bytes == table_and_output  # above the MLP's 2048 x 2 x (3 x 5120 + 3 x 25600)
    # Each GPU's share of the vocabulary at TP 2: 75968 rows
    assert (
        _vllm("0.29.0", "L40S").overhead_curve(qwen, fmt, 2, 2048).forward_bytes == (75_968 + 2048) * 5120 * 2
    )
    # Before 0.11.1 Inductor times nothing; stages after the first and multimodal graphs have no lookup
    mlp = 2048 * 2 * (3 * 5120 + 3 * 25600)
    assert _vllm("0.11.0", "L40S").overhead_curve(qwen, fmt, 1, 2048).forward_bytes == mlp
    later_stage = _vllm("0.29.0", "L40S").overhead_curve(qwen, fmt, 1, 2048, samples=False, embeds=False)
    assert later_stage.forward_bytes == mlp
    gemma = load_model("google/gemma-3-27b-it")
    gemma_fmt = resolve_weight_format(gemma, Precision.BF16)
    assert _vllm("0.29.0", "H100-80GB").compile_profile_bytes(gemma, gemma_fmt, 1, 8192) == 0
    # A start that loads its compile from the cache runs no Inductor: the MLP again, and a larger cache
    cached = engine_model(Engine.VLLM, EngineBuild("0.29.0", compile_cached=True), find_gpu("L40S"))
    assert cached.overhead_curve(qwen, fmt, 1, 2048).forward_bytes == mlp


def test_enforce_eager_takes_no_graphs_no_compile_and_no_capture_path() -> None:
    """--enforce-eager compiles nothing and captures no graphs: the cold compile's table copy, the graph
    estimate (inside the fraction from 0.20.0) and the capture path's non-torch share (0.26 GiB from 0.18.0,
    against 0.13 GiB before) are gone; FlashInfer's workspace stays, outside, where that backend may run,
    since the first request allocates it after the KV cache."""
    qwen = load_model("Qwen/Qwen3-32B")
    fmt = resolve_weight_format(qwen, Precision.BF16)
    mlp = 2048 * 2 * (3 * 5120 + 3 * 25600)  # the MLP's peak at 2048 tokens, below the table's copy
    compiled, eager = (
        _vllm("0.29.0", "L40S", eager=e).overhead_curve(qwen, fmt, 1, 2048) for e in (False, True)
    )
    assert compiled.forward_bytes == (151_936 + 2048) * 5120 * 2 and eager.forward_bytes == mlp
    assert compiled.non_torch_bytes == round(0.26 * GIB) and eager.non_torch_bytes == round(0.13 * GIB)
    assert compiled.cuda_graphs.inside and compiled.cuda_graphs.max_bytes > 0
    assert not eager.cuda_graphs.inside
    # Ada runs FlashAttention for Qwen3's 128-wide heads in bf16: nothing at all; with an fp8 cache,
    # FlashInfer's 394 MiB workspace, outside the fraction
    l40s = _vllm("0.29.0", "L40S", eager=True)
    assert l40s.cuda_graph_bytes_for(qwen, 1, 64, 0, 2048, None) == 0
    assert l40s.cuda_graph_bytes_for(qwen, 1, 64, 0, 2048, None, kv_cache_fp8=True) == 394 * MIB
    # Before 0.18.0 the release's own non-torch figure, and no compile, stay as they were
    assert _vllm("0.11.0", "L40S", eager=True).non_torch_bytes == _vllm("0.11.0", "L40S").non_torch_bytes


@pytest.mark.parametrize(
    ("version", "model", "quantized", "v2", "logit_bytes"),
    [
        # 0.22 keeps V1's Triton top-k/top-p (14 bytes): its V2 took Qwen3 only without a reasoning parser
        ("0.22.0", "Qwen/Qwen3-8B", False, False, 14.0),
        # 0.23: Qwen3, Llama and Mistral, unquantized: bf16 logits and their fp32 copy
        ("0.23.0", "Qwen/Qwen3-8B", False, True, 2 + 4),
        ("0.23.0", "Qwen/Qwen3-8B", True, False, 10.0),  # fp8 weights: V1 with FlashInfer
        ("0.23.0", LLAMA_8B, False, True, 2 + 4),
        ("0.24.0", "Qwen/Qwen3-8B", True, True, 2 + 4),  # listed types may be quantized
        ("0.24.0", "Qwen/Qwen2.5-7B-Instruct", False, False, 10.0),  # not listed: V1 with FlashInfer
        ("0.25.0", "Qwen/Qwen2.5-7B-Instruct", False, True, 2 + 4),  # every model without experts
        ("0.25.0", "mistralai/Mixtral-8x7B-Instruct-v0.1", False, False, 10.0),  # experts, not listed
        ("0.26.0", "Qwen/Qwen2.5-7B-Instruct", False, True, 2),  # no copy
        ("0.29.0", "mistralai/Mixtral-8x7B-Instruct-v0.1", False, True, 2),  # every model
    ],
)
def test_the_v2_model_runners_profile_samples_its_logits_without_top_k_or_top_p(
    version: str, model: str, quantized: bool, v2: bool, logit_bytes: float
) -> None:
    arch = load_model(model)
    fmt = resolve_weight_format(arch, Precision.FP8 if quantized else Precision.BF16)
    engine = _vllm(version, "H100-80GB", image=f"vllm/vllm-openai:v{version}")
    assert engine.runs_v2_model_runner(arch, fmt) == v2
    assert engine.overhead_curve(arch, fmt, 1, 8192).sampler_bytes_per_seq == arch.vocab_size * logit_bytes


def test_the_v2_model_runner_keeps_no_triton_scratch() -> None:
    qwen = load_model("Qwen/Qwen3-8B")
    fmt = resolve_weight_format(qwen, Precision.BF16)
    # An install without FlashInfer samples with Triton top-k/top-p on V1, which keeps a row per SM
    assert _vllm("0.23.0", "H100-80GB").sampler_program_buffer(qwen, fmt).max_bytes == 0
    mixtral = load_model("mistralai/Mixtral-8x7B-Instruct-v0.1")
    mixtral_fmt = resolve_weight_format(mixtral, Precision.BF16)
    buffer = _vllm("0.23.0", "H100-80GB").sampler_program_buffer(mixtral, mixtral_fmt)
    assert buffer.max_bytes == 132 * 32000 * 4


def test_a_stage_after_the_first_keeps_a_buffer_for_what_it_receives() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    v1 = _vllm("0.19.0", "H100-80GB")
    # hidden states and residual for 8192 tokens: 2 x 8192 x 4096 x 2 = 134,217,728 bytes
    assert v1.overhead_curve(llama, fmt, 1, 8192, embeds=False).fixed_activation_bytes == 134_217_728
    assert v1.overhead_curve(llama, fmt, 1, 8192).fixed_activation_bytes == 0
    assert _vllm("0.6.4").overhead_curve(llama, fmt, 1, 8192, embeds=False).fixed_activation_bytes == 0


def test_pipeline_stages_before_the_last_do_not_sample() -> None:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    fmt = resolve_weight_format(llama, Precision.BF16)
    engine = engine_model(Engine.VLLM)
    plan = Scheduling(1024, 8192, 16)
    assert (
        engine.overhead(llama, fmt, 1, plan, samples=False).activation_bytes
        < engine.overhead(llama, fmt, 1, plan).activation_bytes
    )


def test_sglang_fraction_covers_weights_and_pool_only() -> None:
    sglang, vllm = engine_model(Engine.SGLANG), engine_model(Engine.VLLM)
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    fmt = resolve_weight_format(llama, Precision.BF16)
    plan = Scheduling(256, 8192, 1)
    assert sglang.overhead(llama, fmt, 1, plan).activation_bytes == 0
    assert sglang.usable_bytes(80 * 2**30, 0.9) < vllm.usable_bytes(80 * 2**30, 0.9)
    # The fraction of what is free once the context is up: (24259 - 620) MiB x 0.88 on an RTX 3090
    assert sglang.usable_bytes(24259 * MIB, 0.88) == int((24259 - 620) * MIB * 0.88)
    # Whatever the batch limit (and the CUDA graphs captured up to it), the pool loses only the fixed part
    graphs_small = sglang.overhead(llama, fmt, 1, Scheduling(8, 2048, 1))
    graphs_large = sglang.overhead(llama, fmt, 1, Scheduling(256, 2048, 1))
    assert graphs_small.inside_bytes == graphs_large.inside_bytes == round(0.21 * GIB) - 64 * MIB


def test_sglang_tensor_parallel_buffers_shrink_the_base_of_its_fraction() -> None:
    """SGLang measures its free memory after creating the NCCL groups, so at 0.85 of an L4 the 0.28 GiB
    of TP buffers cost 0.85 x 0.28 GiB of the fraction, not all of it, and nothing beside the weights."""
    l4 = find_gpu("L4")
    sglang, vllm = engine_model(Engine.SGLANG, gpu=l4), engine_model(Engine.VLLM, gpu=l4)
    qwen = load_model("Qwen/Qwen3-32B")
    fmt = resolve_weight_format(qwen, Precision.BF16)
    buffers = round(0.28 * GIB)
    free = l4.cuda_total_bytes - 265 * MIB  # the L4's CUDA context
    assert sglang.usable_bytes(l4.cuda_total_bytes, 0.85, 4) == int((free - buffers) * 0.85)
    assert sglang.usable_bytes(l4.cuda_total_bytes, 0.85, 1) == int(free * 0.85)
    plan = Scheduling(48, 2048, 1)
    assert sglang.overhead(qwen, fmt, 4, plan).inside_bytes == round(0.21 * GIB) - 64 * MIB
    # vLLM measures its baseline before the groups exist: the buffers come out of its fraction whole
    assert (
        vllm.overhead(qwen, fmt, 4, plan).non_torch_bytes - vllm.overhead(qwen, fmt, 1, plan).non_torch_bytes
        == buffers
    )


@pytest.mark.parametrize("engine", list(Engine))
def test_every_engine_in_the_registry_has_its_module(engine: Engine) -> None:
    found = definition(engine)
    assert found.engine is engine
    model = found.model(EngineBuild(), find_gpu("L4").compute_capability_major)
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    args = model.arguments(
        Launch(
            model="m",
            tensor_parallel=2,
            pipeline_parallel=1,
            memory_fraction=0.9,
            max_model_len=4096,
            max_num_seqs=8,
            weights=resolve_weight_format(llama, Precision.BF16),
            kv_cache_fp8=False,
            max_num_batched_tokens=None,
            block_size_tokens=None,
        )
    )
    flags = found.flags
    assert {f"{flags.model}=m", f"{flags.tensor_parallel}=2", f"{flags.memory_fraction}=0.90"} <= set(args)
    assert f"{flags.max_num_seqs}=8" in args and f"{flags.max_model_len}=4096" in args


def _tgi(version: str | None) -> TgiModel:
    model = engine_model(Engine.TGI, EngineBuild(version), find_gpu("H100-80GB"))
    assert isinstance(model, TgiModel)
    return model


@pytest.mark.parametrize(
    ("version", "first", "fraction_wiggle", "free_kept_per_10k"),
    [
        ("1.0.0", "0.9.4", 1.0, 10_000),
        ("1.4.0", "0.9.4", 1.0, 10_000),
        ("1.4.1", "1.4.1", 1.0, 9_500),
        ("2.2.0", "2.2.0", 1.0, 9_500),
        ("2.4.1", "2.4.0", 1.0, 9_000),
        ("3.0.2", "3.0.0", 0.95, 10_000),
        ("3.1.0", "3.1.0", 0.93, 10_000),
        ("3.3.5", "3.3.0", 0.90, 10_000),
    ],
)
def test_tgi_takes_its_wiggle_room_off_the_fraction_from_3_and_off_the_free_memory_before(
    version: str, first: str, fraction_wiggle: float, free_kept_per_10k: int
) -> None:
    model = _tgi(version)
    assert model.release.version == first
    assert "@v" + first in model.release.source
    assert model.usable_bytes(80 * GIB, 0.5) == int(80 * GIB * 0.5 * fraction_wiggle)
    layout = kv_layout(load_model(LLAMA_8B), 2, 1, 16)
    assert model.free_memory_rule(layout, 4096, 4145).kept_per_10k == free_kept_per_10k


def test_tgi_pr_630_builds_count_only_torchs_reserved_peak_against_98_percent() -> None:
    """Main-branch builds between PR #630 and PR #664 (a 0.9.4 development build): 0.98 x total less
    torch's reserved peak; the CUDA context and non-torch memory lie beside the budget, not in it."""
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    scheduling = Scheduling(128, 4096, 16)
    dev, release = (
        engine_model(Engine.TGI, EngineBuild(version), find_gpu("A100-40GB"))
        for version in ("0.9.4.dev0", "0.9.4")
    )
    assert isinstance(dev, TgiModel) and isinstance(release, TgiModel)
    assert dev.release.first == (0, 9, 3, 1) and "@fe80f536" in dev.release.source
    assert dev.release_label == "0.9.4.dev" and release.release.version == "0.9.4"
    assert _tgi("0.9.3").release.version == "0.9.4"  # older releases: the first release read
    assert dev.usable_bytes(80 * GIB, 1.0) == int(80 * GIB * 0.98)
    built, shipped = dev.overhead(llama, fmt, 1, scheduling), release.overhead(llama, fmt, 1, scheduling)
    # On the A100 the measured 2161 MiB outside torch's allocator is its context and the rest together:
    # all inside 0.9.4's budget, all beside the development build's (with the decode graphs, in both).
    assert shipped.non_torch_bytes == 2161 * MIB and shipped.outside_bytes == shipped.cuda_graph_bytes
    assert built.non_torch_bytes == 0 and built.outside_bytes == 2161 * MIB + built.cuda_graph_bytes
    assert built.activation_bytes == shipped.activation_bytes  # the same warm-up forward and logits


@pytest.mark.parametrize(
    ("version", "prefill", "added_back"),
    [
        ("2.0.4", 4145, GIB),  # every block the warm-up allocated
        # From 2.1 generate_token returns the whole batch while any request runs on: the 50-token one asks
        # for 4046 more tokens, though the full one (4095 tokens) asked for one and has finished
        ("2.2.0", 4145, GIB),
        ("2.4.1", 8190, 0),  # two full requests, both finished: no batch is returned
    ],
)
def test_tgi_2_keeps_95_percent_of_the_free_memory_and_adds_back_the_warmup_blocks(
    version: str, prefill: int, added_back: int
) -> None:
    # Llama 3.1 8B: 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes = 128 KiB a token. A warm-up of up
    # to 8190 tokens at max_input_tokens 4095 is two requests, each holding 4096 - 1 tokens: 2 x 256 blocks
    # of 16.
    layout = kv_layout(load_model(LLAMA_8B), 2, 1, 16)
    model = _tgi(version)
    rule = model.free_memory_rule(layout, 4096, prefill)
    kept = round(model.release.free_kept * 10_000)
    assert rule.profile_kv_bytes == 2 * 256 * 16 * 128 * 1024 == GIB
    assert rule.added_back_bytes == added_back
    assert rule.pool(3 * GIB) == 2 * GIB * kept // 10_000 + added_back
    assert rule.free_for(rule.pool(3 * GIB)) <= 3 * GIB
    for pool in (GIB, 2 * GIB + 12_345, 7 * GIB):
        free = rule.free_for(pool)
        assert rule.pool(free) >= pool > rule.pool(free - 1)
    assert _tgi("3.3.5").free_memory_rule(layout, 4096, prefill).pool(3 * GIB) == 3 * GIB


def test_tgi_counts_its_context_and_warmup_inside_the_fraction() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    scheduling = Scheduling(128, 4096, 16)
    a100, h100, l4 = (
        engine_model(Engine.TGI, EngineBuild("3.3.5"), find_gpu(gpu)).overhead(llama, fmt, 1, scheduling)
        for gpu in ("A100-40GB", "H100-80GB", "L4")
    )
    # 40,448 MiB of an A100 40GB - 1517 free - 29,598 of starcoderbase's weights - 7,172 of KV cache
    measured = 40_448 * MIB - 1517 * MIB - 29_598 * MIB - 7_172 * MIB
    assert a100.non_torch_bytes == l4.non_torch_bytes == measured  # the L4's smaller context is not known
    # the H100's context is (132 - 108) SMs x 2048 threads x 2 KiB above the A100's
    assert h100.non_torch_bytes == measured + 24 * 2048 * 2 * KIB
    overhead = _tgi("2.4.1").overhead(llama, fmt, 1, scheduling)
    # the layer's MLP peak, 4096 x 2 x (7 x 4096 + 4 x 14336) bytes, then the prefill logprobs'
    # 4096 x 128256 x 2 in segments of their own; no row per --max-concurrent-requests
    # and the hidden-wide block the allocator keeps between the larger ones (2 x 4096 widths, below)
    forward, logits = 4096 * 2 * (7 * 4096 + 4 * 14336), 4096 * 128256 * 2
    assert overhead.activation_bytes == forward + logits + 4096 * 2 * 2 * 4096
    # from 3.0 the warm-up's prefill logprobs are dropped: no vocab-wide tensor per token
    no_logprobs = _tgi("3.3.5").overhead(llama, fmt, 1, scheduling)
    assert no_logprobs.activation_bytes == forward + 4096 * 2 * 2 * 4096


def test_tgi_3_warms_up_with_the_launchers_compute_optimal_batch() -> None:
    llama, h100, a10 = load_model(LLAMA_8B), find_gpu("H100-80GB"), find_gpu("A10")
    # Config::flop: 32 layers x (2 x 128 x 4096 x (3 x 32 + 2 x 8) + 6 x 4096 x 14336) = 15,032,385,536
    scheduling = _tgi("3.3.5").default_scheduling(h100.cuda_total_bytes, h100, 8192, llama, 1, 0.9)
    assert scheduling.max_num_batched_tokens == 900 * 10**12 // 15_032_385_536 == 59_870
    two = _tgi("3.3.5").default_scheduling(h100.cuda_total_bytes, h100, 8192, llama, 2, 0.9)
    assert two.max_num_batched_tokens == 2 * 900 * 10**12 // 15_032_385_536
    # The launcher knows no FLOP/s for an A10 (only the A10G): 4096 tokens
    assert (
        _tgi("3.3.5").default_scheduling(a10.cuda_total_bytes, a10, 8192, llama).max_num_batched_tokens
        == 4096
    )
    assert _tgi("2.4.0").default_scheduling(h100.cuda_total_bytes, h100, 8192).max_num_batched_tokens == 8241
    assert _tgi("1.4.0").default_scheduling(h100.cuda_total_bytes, h100, 8192).max_num_batched_tokens == 4096


@pytest.mark.parametrize(
    ("gpu", "version", "tflops"),
    [
        ("H200", "3.0.1", None),  # the launcher learnt the H200, A40 and A100 40GB in 3.1.0
        ("H200", "3.1.0", 989),
        ("A40", "3.0.1", None),
        ("A40", "3.3.5", 149),
        ("A100-40GB", "3.3.5", 312),
        ("L40", "3.0.1", 181),
        ("H100-NVL", "3.3.5", 900),
        ("H100-PCIe", "3.3.5", None),  # nvidia-smi says "NVIDIA H100 PCIe": no key matches
        # its table's "nvidia-4090" and "nvidia-t4" match no name nvidia-smi prints
        ("RTX-4090", "3.3.5", None),
        ("T4", "3.3.5", None),
    ],
)
def test_tgi_3_knows_a_cards_flops_by_the_name_nvidia_smi_gives_it(
    gpu: str, version: str, tflops: int | None
) -> None:
    llama, card = load_model(LLAMA_8B), find_gpu(gpu)
    optimal = 4096 if tflops is None else tflops * 10**12 // 15_032_385_536
    # capped by the launcher's VRAM estimate on the smaller cards
    allowed = _launcher_vram_tokens(llama, card, 1, 1.0)
    expected = min(optimal, allowed) if allowed is not None else optimal
    scheduling = _tgi(version).default_scheduling(card.cuda_total_bytes, card, 8192, llama, 1, 1.0)
    assert scheduling.max_num_batched_tokens == expected


def test_a_minor_tag_takes_the_rules_of_its_newest_patch() -> None:
    """text-generation-inference:1.4 follows 1.4's newest patch: 1.4.1's 5% wiggle room, not 1.4.0's rule."""
    tagged = _tgi("ghcr.io/huggingface/text-generation-inference:1.4")
    assert tagged.release.first == (1, 4, 1) and tagged.release.free_kept == 0.95
    assert tagged.release_label == "1.4.x"
    assert _tgi("1.4.0").release.first == (0, 9, 4)
    # vLLM's 0.6 is 0.6.4's row onwards, not 0.6.0's
    assert _vllm("0.6").release == _vllm("0.6.6").release != _vllm("0.6.0").release
    assert _vllm("0.6").release_label == "0.6.x (V0 engine)"


def test_an_unstated_tgi_release_is_the_default_images() -> None:
    assert _tgi(None).release_label == "3.3.5" and _tgi(None).assumptions
    assert _tgi("latest").release_label == "3.3.7"


def test_a_release_newer_than_the_newest_read_is_said() -> None:
    """A newer release runs on the newest read release's rules, and the plan says so; the newest itself
    and older ones do not."""
    newer = _vllm("0.40.1", image="vllm/vllm-openai:v0.40.1").assumptions
    newest = _vllm("0.34.0", image="vllm/vllm-openai:v0.34.0").assumptions
    assert newer == (
        "vLLM 0.40.1 is newer than the newest release read (0.34.0): the rules of 0.34.0 apply",
        *newest,
    )
    assert not any("newer" in note for note in newest)
    assert _tgi("4.0.0").assumptions == (
        "TGI 4.0.0 is newer than the newest release read (3.3.7): the rules of 3.3.7 apply",
    )
    assert _tgi("3.3.7").assumptions == ()


@pytest.mark.parametrize(
    "free_memory", [ALL_FREE_MEMORY, FreeMemoryRule(9_500, GIB, GIB), FreeMemoryRule(9_500, GIB, GIB // 2)]
)
@pytest.mark.parametrize("margin", [NO_KV_SAFETY_MARGIN, KvSafetyMargin(150, GIB // 3)])
@pytest.mark.parametrize("engine", list(Engine))
def test_the_largest_batch_is_the_arithmetic_answer_to_the_same_question(
    engine: Engine, margin: KvSafetyMargin, free_memory: FreeMemoryRule
) -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    curve = replace(engine_model(engine).overhead_curve(llama, fmt, 1, 8192), free_memory=free_memory)
    for budget in range(0, 40 * GIB, GIB // 3):
        for sequence in (131_072, 1_048_576, 2_147_483_648):
            fits = [n for n in range(0, 600) if curve.pool_bytes(budget, n) >= margin.pool_for(n * sequence)]
            assert curve.largest_batch(budget, sequence, 599, margin) == max(fits, default=0)


def test_the_largest_batch_counts_the_sampler_buffer_at_each_batch() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    curve = _vllm("0.19.0", "H100-80GB").overhead_curve(llama, fmt, 1, 8192)
    assert curve.sampler_buffer.max_bytes > 0
    margin = KvSafetyMargin(100, 0)
    for budget in range(0, 20 * GIB, GIB // 7):
        for sequence in (1_048_576, 16_777_216):
            fits = [n for n in range(0, 300) if curve.pool_bytes(budget, n) >= margin.pool_for(n * sequence)]
            assert curve.largest_batch(budget, sequence, 299, margin) == max(fits, default=0)


def test_tensor_parallel_on_nvswitch_class_gpus_reserves_nccls_buffers() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    scheduling = Scheduling(256, 2048, 16)
    hopper, ampere = _vllm("0.17.0", "H100-80GB"), _vllm("0.17.0", "A100-80GB")
    assert hopper.overhead(llama, fmt, 2, scheduling).non_torch_bytes == round(0.13 * GIB) + round(2.1 * GIB)
    assert ampere.overhead(llama, fmt, 2, scheduling).non_torch_bytes == round(0.13 * GIB) + round(0.28 * GIB)
    assert hopper.overhead(llama, fmt, 1, scheduling).non_torch_bytes == round(0.13 * GIB)


@pytest.mark.parametrize(
    ("model", "tensor_parallel", "per_layer_width"),
    [
        # hidden 4096 + SiluAndMul's 14336/2 = 7168 (it holds the 4096-wide attention output)
        (LLAMA_8B, 2, 4096 + 7168),
        # hidden 8192: 28672/4 = 7168 is too narrow, gate_up's 14336 takes it
        ("meta-llama/Llama-2-70b-hf", 4, 8192 + 14336),
        # 28672/8: 3584 and 7168 both too narrow, the output's block is new
        ("meta-llama/Llama-2-70b-hf", 8, 8192 + 8192),
    ],
)
def test_0_2_5_each_layer_reserves_its_all_reduce_output_and_the_block_that_output_took(
    model: str, tensor_parallel: int, per_layer_width: int
) -> None:
    arch = load_model(model)
    reserved = [
        _replay_v0_forward(replace(arch, num_layers=n), tensor_parallel, 4096, 2, True).reserved_bytes
        for n in (3, 4, 5)
    ]
    assert reserved[1] - reserved[0] == reserved[2] - reserved[1] == 4096 * per_layer_width * 2
    fmt = resolve_weight_format(arch, Precision.BF16)
    scheduling = Scheduling(256, 4096, 16)
    # 0.2.6 sets TORCH_NCCL_AVOID_RECORD_STREAMS=1; both count all used memory, reserved blocks included
    old, new = _vllm("0.2.5", "A100-80GB"), _vllm("0.2.6", "A100-80GB")
    grown = (
        old.overhead(arch, fmt, tensor_parallel, scheduling).activation_bytes
        - new.overhead(arch, fmt, tensor_parallel, scheduling).activation_bytes
    )
    recorded = _replay_v0_forward(arch, tensor_parallel, 4096, 2, True).reserved_bytes
    assert grown == recorded - _replay_v0_forward(arch, tensor_parallel, 4096, 2, False).reserved_bytes
    assert old.overhead(arch, fmt, 1, scheduling) == new.overhead(arch, fmt, 1, scheduling)


def test_v0_releases_that_read_used_memory_count_the_blocks_the_profile_left_reserved() -> None:
    arch = load_model(LLAMA_8B)
    fmt = resolve_weight_format(arch, Precision.BF16)
    forward = _replay_v0_forward(arch, 2, 4096, 2, False)
    # Llama-3.1-8B at TP 2: live peak 4 x 4096 + 3 x 7168, and 5120 widths more stay reserved
    assert forward.live_bytes == 4096 * 2 * (4 * 4096 + 3 * 7168)
    assert forward.reserved_bytes - forward.live_bytes == 4096 * 2 * 5120
    # 0.2.4 counts torch's allocated peak; 0.6.4 empties the cache before it reads used memory; V1 too
    versions = ("0.2.4", "0.3.1", "0.6.3", "0.6.4", "0.8.0")
    fixed = {
        v: _vllm(v, "A100-80GB").overhead_curve(arch, fmt, 2, 4096).fixed_activation_bytes for v in versions
    }
    assert fixed == {"0.2.4": 0, "0.3.1": 4096 * 2 * 5120, "0.6.3": 4096 * 2 * 5120, "0.6.4": 0, "0.8.0": 0}


def test_tgi_warmup_holds_the_logits_of_every_prefill_token_until_3() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    logits = 4096 * 128256 * 2
    reserved, live = _replayed(LLAMA_8B, 32, 1, False)
    forward = (reserved - live) * 4096 * 2  # what the forward leaves reserved beyond its live peak
    assert _tgi("2.4.1").overhead_curve(llama, fmt, 1, 4096).fixed_activation_bytes == logits + forward
    # before 2.4 log_softmax writes a second vocab-wide tensor
    assert _tgi("2.2.0").overhead_curve(llama, fmt, 1, 4096).fixed_activation_bytes == 2 * logits + forward
    # from 3.0 the server drops the warm-up's prefill logprobs unless REQUEST_LOGPROBS is set
    assert _tgi("3.0.0").overhead_curve(llama, fmt, 1, 4096).fixed_activation_bytes == forward
    # with TP the head's shard has a segment of its own beside the gathered logits
    reserved, live = _replayed(LLAMA_8B, 32, 2, False)
    forward = (reserved - live) * 4096 * 2
    assert (
        _tgi("2.4.1").overhead_curve(llama, fmt, 2, 4096).fixed_activation_bytes
        == logits + logits // 2 + forward
    )
    assert _tgi("3.3.5").overhead_curve(llama, fmt, 2, 4096).fixed_activation_bytes == forward


def _replayed(model: str, layers: int, tensor_parallel: int, recorded: bool) -> tuple[int, int]:
    """(reserved, live peak) of TGI's warm-up forward in widths of 4096 tokens x 2 bytes."""
    arch = replace(load_model(model), num_layers=layers)
    forward = _replay_forward(arch, tensor_parallel, 4096, 2, recorded)
    return forward.reserved_bytes // (4096 * 2), forward.live_bytes // (4096 * 2)


def test_tgi_warmup_replay_peaks_at_the_live_tensors_its_mlp_peaks_count() -> None:
    assert _replayed(LLAMA_8B, 32, 1, False)[1] == 7 * 4096 + 4 * 14336
    assert _replayed("meta-llama/Llama-2-70b-hf", 80, 4, True)[1] == 8 * 8192 + 3 * 7168


def test_tgi_warmup_reserves_the_blocks_its_tensors_cannot_share() -> None:
    # Llama-3.1-8B at TP 1: from the second layer on no new segment; 2 x 4096 widths stay reserved beyond
    # the live peak (a hidden-wide block left between the larger ones)
    assert _replayed(LLAMA_8B, 2, 1, False) == _replayed(LLAMA_8B, 32, 1, False)
    reserved, live = _replayed(LLAMA_8B, 32, 1, False)
    assert reserved - live == 2 * 4096
    # Llama-2-70B at TP 4 before 1.4.1: each layer's two all-reduced outputs stay out of reach, and each
    # layer reserves a new gate_up segment (2 x 7168) and a new hidden-wide one (8192)
    grown = [_replayed("meta-llama/Llama-2-70b-hf", n, 4, True)[0] for n in (3, 4, 5)]
    assert grown[1] - grown[0] == grown[2] - grown[1] == 2 * 7168 + 8192


def test_tgi_before_1_4_1_keeps_all_reduce_outputs_reserved_through_warmup() -> None:
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    old, new = _tgi("1.4.0"), _tgi("1.4.1")
    grown = (
        old.overhead_curve(llama, fmt, 2, 4096).fixed_activation_bytes
        - new.overhead_curve(llama, fmt, 2, 4096).fixed_activation_bytes
    )
    recorded, free = _replayed(LLAMA_8B, 32, 2, True)[0], _replayed(LLAMA_8B, 32, 2, False)[0]
    assert grown == (recorded - free) * 4096 * 2 > (2 * 32 + 1) * 4096 * 4096 * 2
    assert old.overhead_curve(llama, fmt, 1, 4096) == new.overhead_curve(llama, fmt, 1, 4096)


@pytest.mark.parametrize(
    ("version", "model", "gpu", "block"),
    [
        ("2.1.1", "google/gemma-2-9b-it", "H100-80GB", 16),
        ("2.2.0", "google/gemma-2-9b-it", "H100-80GB", 256),  # flash decoding forced for its softcap
        ("2.2.0", LLAMA_8B, "H100-80GB", 16),
        ("2.3.0", LLAMA_8B, "H100-80GB", 1),  # FlashInfer by default
        ("2.3.0", "tiiuae/falcon-7b", "T4", 256),
        ("2.3.1", "tiiuae/falcon-7b", "T4", 16),  # paged below compute capability 8
        ("3.3.5", "tiiuae/falcon-7b", "H100-80GB", 256),
        ("3.3.5", "google/gemma-2-9b-it", "H100-80GB", 1),  # gemma2 left the list at 2.4
    ],
)
def test_tgi_blocks_follow_the_attention_its_launcher_resolves(
    version: str, model: str, gpu: str, block: int
) -> None:
    arch, card = load_model(model), find_gpu(gpu)
    scheduling = _tgi(version).default_scheduling(card.cuda_total_bytes, card, 4096, arch, 1, 0.9)
    assert scheduling.block_size_tokens == block


@pytest.mark.parametrize(
    ("version", "hopper"),
    [
        ("0.11.0", MARLIN_MXFP4),  # no triton_kernels in the wheel or the image: Marlin
        ("0.14.1", ExpertPadding(64, 1, MxSwizzle.TILES, bias_bytes=4)),  # triton_kernels v3.5.0 built in
        ("0.19.0", ExpertPadding(64, 1, MxSwizzle.PADDED_64, bias_bytes=4)),  # v3.6.0
        ("0.25.0", ExpertPadding(64, 1, MxSwizzle.PADDED_64, checkpoint_scales_kept=False, bias_bytes=4)),
    ],
)
def test_mxfp4_experts_on_hopper_take_the_releases_kernels(version: str, hopper: ExpertPadding) -> None:
    gpt_oss = load_model("openai/gpt-oss-120b")
    fmt = resolve_weight_format(gpt_oss, Precision.AUTO)
    assert _vllm(version, "H100-80GB").expert_padding(find_gpu("H100-80GB"), fmt) == hopper
    assert _vllm(version, "A100-80GB").expert_padding(find_gpu("A100-80GB"), fmt) == MARLIN_MXFP4


def test_marlin_keeps_gpt_oss_expert_biases_in_bf16() -> None:
    gpt_oss = load_model("openai/gpt-oss-120b")  # 36 layers, 128 experts, intermediate and hidden 2880
    fmt = resolve_weight_format(gpt_oss, Precision.AUTO)
    without = weights_bytes(gpt_oss, fmt, 1, ExpertPadding(128, 256)).per_gpu
    # 36 x 128 x (2 x 2944 + 3072) biases x 2 bytes: intermediate padded to 128, hidden to 256
    biases = 36 * 128 * (2 * 2944 + 3072) * 2
    assert abs(weights_bytes(gpt_oss, fmt, 1, MARLIN_MXFP4).per_gpu - without - biases) <= 1
    assert biases == 82_575_360


def test_triton_mxfp4_weights_match_vllm_0_14_on_an_h100() -> None:
    gpt_oss = load_model("openai/gpt-oss-120b")
    fmt = resolve_weight_format(gpt_oss, Precision.AUTO)
    padding = _vllm("0.14.1", "H100-80GB").expert_padding(find_gpu("H100-80GB"), fmt)
    # vLLM 0.14.1 on an H100: "Model loading took 64.38 GiB" (Marlin's layout would take 65.82)
    assert weights_bytes(gpt_oss, fmt, 1, padding).per_gpu / GIB == pytest.approx(64.38, rel=0.005)


def test_moe_workspaces_stand_under_the_sampler_from_0_14() -> None:
    qwen_moe = load_model("Qwen/Qwen3-30B-A3B")  # hidden 2048, expert intermediate 768, top-8
    fmt = resolve_weight_format(qwen_moe, Precision.BF16)
    # 8192 tokens x 8 experts x (max(768, 2048) + max(1536, 2048)) x 2 bytes = 0.5 GiB
    workspace = 8192 * 8 * (2048 + 2048) * 2
    assert workspace == GIB // 2
    hidden = 8192 * 2 * 2048
    assert _vllm("0.14.0", "H100-80GB").overhead_curve(qwen_moe, fmt, 1, 8192).sampler_base_bytes == (
        hidden + workspace
    )
    assert _vllm("0.13.0", "H100-80GB").overhead_curve(qwen_moe, fmt, 1, 8192).sampler_base_bytes == hidden
    llama = load_model(LLAMA_8B)
    dense = _vllm("0.19.0", "H100-80GB").overhead_curve(llama, fmt, 1, 8192)
    assert dense.sampler_base_bytes == 8192 * 2 * 4096
    gpt_oss = load_model("openai/gpt-oss-20b")  # MXFP4 experts: OAI's kernels, no modular workspace
    mxfp4 = resolve_weight_format(gpt_oss, Precision.AUTO)
    curve = _vllm("0.19.0", "H100-80GB").overhead_curve(gpt_oss, mxfp4, 1, 8192)
    assert curve.sampler_base_bytes == 8192 * 2 * gpt_oss.hidden_size


_CALIBRATION_CONFIGS = Path(__file__).parents[3] / "benchmarks" / "calibration" / "configs"


def _config_model(name: str) -> ModelArchitecture:
    path = _CALIBRATION_CONFIGS / (name.replace("/", "__") + ".json")
    return architecture_from_config(load_config_file(path), name)


def test_vllm_weights_count_each_tensors_allocator_block() -> None:
    qwen = _config_model("Qwen/Qwen3-14B-AWQ")
    awq = resolve_weight_format(qwen, Precision.AUTO)
    stage = pipeline_stages(qwen.num_layers, 1)[0]
    # Per layer, 4-bit packed: qkv 5120 x 7168 / 2 = 17.5 MiB, o_proj 12.5 MiB, gate_up 5120 x 34816 / 2
    # = 85 MiB, down 17408 x 5120 / 2 = 42.5 MiB; embedding and lm_head 151936 x 5120 x 2 = 1483.75 MiB
    sizes = weight_tensor_sizes(qwen, awq, 1, stage)
    assert sizes[35 * MIB // 2] == sizes[25 * MIB // 2] == sizes[85 * MIB] == sizes[85 * MIB // 2] == 40
    assert sizes[1_555_824_640] == 2
    # Rounded up to 2 MiB and kept: gate_up 1 MiB, qkv 0.5 MiB, the vocabulary tables 0.25 MiB each;
    # from 0.21.0 down_proj's 1.5 MiB too (loaded under max_split_size_mb 20)
    assert _vllm("0.20.0").weight_rounding_bytes(qwen, awq, 1, stage) == 40 * 3 * MIB // 2 + MIB // 2
    assert _vllm("0.28.0").weight_rounding_bytes(qwen, awq, 1, stage) == 40 * 3 * MIB + MIB // 2
    # Llama-3-70B AWQ at TP 2: qkv 20 MiB, o_proj 16, gate_up 112, down 56, the vocabulary 1002 MiB
    # per GPU: whole 2 MiB each, nothing kept beyond the tensors
    llama = _config_model("TechxGenus/Meta-Llama-3-70B-Instruct-AWQ")
    llama_awq = resolve_weight_format(llama, Precision.AUTO)
    whole = pipeline_stages(llama.num_layers, 1)[0]
    assert _vllm("0.16.0").weight_rounding_bytes(llama, llama_awq, 2, whole) == 0
    assert _vllm("0.28.0").weight_rounding_bytes(llama, llama_awq, 2, whole) == 0


def test_symmetric_gptq_on_marlin_keeps_no_zero_points() -> None:
    phi = _config_model("kaitchup/Phi-4-AutoRound-GPTQ-4bit")  # sym true, group 128
    gptq = resolve_weight_format(phi, Precision.AUTO)
    assert gptq.quantization is not None and gptq.quantization.symmetric
    a100, t4 = find_gpu("A100-80GB"), find_gpu("T4")
    marlin = _vllm("0.6.5", "A100-80GB").resident_weights(a100, gptq)
    # Half a byte per group of 128 inputs and output: (40 x 7680 + 40 x 5120 + 40 x 35840 + 140 x 5120) / 2
    # = 1,331,200 bytes a layer for qkv, o, gate_up and down, over 40 layers
    assert weights_bytes(phi, gptq, 1).per_gpu - weights_bytes(phi, marlin, 1).per_gpu == 40 * 1_331_200
    # GPTQ's own kernels keep them: below compute capability 8.0, before gptq_marlin, on an unknown GPU
    assert _vllm("0.6.5", "T4").resident_weights(t4, gptq) == gptq
    assert _vllm("0.4.0", "A100-80GB").resident_weights(a100, gptq) == gptq
    assert _vllm("0.6.5", "A100-80GB").resident_weights(unknown_gpu(80 * GIB), gptq) == gptq


def test_the_v2_model_runner_counts_cuda_graphs_inside_the_fraction_only_from_0_29() -> None:
    llama = load_model(LLAMA_8B)  # a type the V2 runner serves from 0.23.0
    bf16 = resolve_weight_format(llama, Precision.BF16)
    inside = {v: _vllm(v).cuda_graphs_inside(llama, bf16) for v in ("0.19.0", "0.22.0", "0.28.0", "0.29.0")}
    # before 0.20 no estimate; 0.22 runs V1, which estimates; 0.28's V2 profile_cudagraph_memory returns 0
    assert inside == {"0.19.0": False, "0.22.0": True, "0.28.0": False, "0.29.0": True}
    assert _vllm("0.28.0").runs_v2_model_runner(llama, bf16)
    scheduling = Scheduling(256, 2048, 16)
    v2, v1 = (_vllm(v).overhead(llama, bf16, 1, scheduling) for v in ("0.28.0", "0.22.0"))
    # the graphs still need room: outside the fraction, beside the CUDA context
    assert v2.outside_bytes - v1.outside_bytes == v2.cuda_graph_bytes


def test_0_34_sizes_the_kv_cache_after_a_warm_up_that_asks_prompt_logprobs() -> None:
    """The sizing warm-up's prompt logprobs: 1024 rows of Llama-3.1's 128256 logits at a time, in fp32
    (prompt_logprob.py@v0.34.0), fewer rows for a shorter step; earlier releases run no such step. The new
    default block is 64 tokens."""
    llama = load_model(LLAMA_8B)
    fmt = resolve_weight_format(llama, Precision.BF16)
    new, old = _vllm("0.34.0"), _vllm("0.33.0")
    assert new.warmup_step_bytes(llama, fmt, 2048) == 1024 * 128_256 * 4
    assert new.warmup_step_bytes(llama, fmt, 512) == 512 * 128_256 * 4
    assert old.warmup_step_bytes(llama, fmt, 2048) == 0
    assert (new.default_block_size, old.default_block_size) == (64, 16)


def test_0_34_keeps_a_margin_free_beyond_the_fraction() -> None:
    """From 0.34.0 the cache takes min(fraction x total - what the engine uses, free memory - max(1 GiB,
    0.75 x its transient peak)) less that peak (extensible_kv_cache.py@v0.34.0, measure_kv_cache_bytes).
    On an L4 (21.99 GiB, a 265 MiB CUDA context) Llama-3.1-8B's peak is the cold compile's copy of the
    embedding table, 1.0 GiB, so the margin is its 1 GiB floor: above 1 - (265 + 1024) / 22518 MiB, 0.9428,
    a higher fraction gives the cache nothing more, and the plan writes no fraction above 0.94."""
    request = PlanRequest(
        model=load_model(LLAMA_8B),
        model_source=LLAMA_8B,
        max_seq_len=4096,
        concurrency=1,
        gpu=find_gpu("L4"),
        gpu_count=1,
    )

    def kv_at(version: str, fraction: float) -> int:
        fixed = replace(request, engine_version=version, memory_fraction=fraction)
        return plan(fixed, alternatives=False).kv_capacity_bytes_per_gpu

    assert kv_at("0.34.0", 0.97) == kv_at("0.34.0", 0.99)
    # What 0.99 gives beyond 0.94: up to the ceiling, in whole 64-token blocks of 8 MiB
    ceiling = 23_611_834_368 - 265 * MIB - GIB
    beyond = kv_at("0.34.0", 0.99) - kv_at("0.34.0", 0.94)
    assert abs(ceiling - int(23_611_834_368 * 0.94) - beyond) < 8 * MIB
    assert kv_at("0.33.0", 0.97) < kv_at("0.33.0", 0.99)
    assert plan(replace(request, engine_version="0.34.0"), alternatives=False).memory_fraction_cap == 0.94
    assert plan(replace(request, engine_version="0.33.0"), alternatives=False).memory_fraction_cap == 0.95
