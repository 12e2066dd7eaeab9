"""SGLang's defaults per release, each figure worked by hand from the release's server_args.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vramgate.sizing import Precision, find_gpu, load_model
from vramgate.sizing.architecture import ModelArchitecture
from vramgate.sizing.engines import Engine, EngineBuild, engine_model
from vramgate.sizing.engines.sglang import (
    RELEASES,
    SglangModel,
    SglangRelease,
    default_chunked_prefill,
    default_memory_fraction,
    release_version,
)
from vramgate.sizing.memory import KvLayout, kv_layout, resolve_weight_format
from vramgate.sizing.units import GIB, MIB


def _release(version: str) -> SglangRelease:
    model = engine_model(Engine.SGLANG, EngineBuild(version))
    assert isinstance(model, SglangModel)
    return model.release


@pytest.mark.parametrize(
    ("version", "gpu", "tp", "pp", "mla", "expected"),
    [
        # 0.3.0: by TP alone, 0.83 from 8
        ("0.3.0", "H100-80GB", 8, 1, False, 0.83),
        ("0.3.5", "L4", 1, 1, False, 0.88),
        ("0.3.6.post3", "H100-80GB", 8, 1, False, 0.82),
        # 0.4.0-0.4.5: 0.81 from 8; pipeline stages do not count yet
        ("0.4.3.post4", "L4", 4, 1, False, 0.85),
        ("0.4.3.post4", "L4", 2, 2, False, 0.87),
        # 0.4.6: above 81,920 MiB keep 13 GiB: (143771 - 13312) / 143771
        ("0.4.6", "H200", 8, 1, False, (143771 - 13312) / 143771),
        ("0.4.6", "H100-80GB", 4, 1, False, 0.85),
        # 0.4.6.post2: tp x pp; 0.88 above 80 GiB, then min(0.88 + 49152 x 0.12 / 143771, 1 - 18432 / 143771)
        ("0.4.6.post2", "L4", 2, 2, False, 0.85),
        ("0.4.6.post3", "H200", 1, 1, False, (143771 - 18432) / 143771),
        # 0.4.7: 0.79 above 180,000 MiB (B200: 183,359)
        ("0.4.7", "B200", 1, 1, False, 0.79),
        ("0.4.6.post5", "B200", 1, 1, False, (183359 - 18432) / 183359),
        # 0.4.7.post1: reserve (9.5 + 4 / 2) GiB = 11,776 MiB on an H100 at TP 4: 69,783 / 81,559
        ("0.4.7.post1", "H100-80GB", 4, 1, False, 0.856),
        # (2.8 + 0.1) GiB = 2,969.6 MiB on an L4 at TP 1: 20,064.4 / 23,034
        ("0.4.9", "L4", 1, 1, False, 0.871),
        # 0.5.3: 512 + 8192 x 1.5 + 256 x 2 + 128 = 13,440 MiB on an H100 at TP 1: 68,119 / 81,559
        ("0.5.3", "H100-80GB", 1, 1, False, 0.835),
        # 512 + 2048 x 1.5 + 80 x 2 + 512 = 4,256 MiB on an L4 at TP 4: 18,778 / 23,034
        ("0.5.3", "L4", 4, 1, False, 0.815),
        # 0.5.6: graph batch 24 below TP 4 under 35 GiB: 3,760 MiB on an RTX 4090 (0.5.3: 16, 3,744 MiB)
        ("0.5.6", "RTX-4090", 1, 1, False, 0.847),
        ("0.5.5", "RTX-4090", 1, 1, False, 0.848),
        # 0.5.10: 58 piecewise sizes up to 8192 x 8 MiB = 464 MiB more: 13,904 MiB; MLA 1,536 MiB: 14,976
        ("0.5.10", "H100-80GB", 1, 1, False, 0.83),
        ("0.5.10.post1", "H100-80GB", 1, 1, True, 0.816),
        # 0.5.19, RTX 4090 (24,564 MiB): 512 + 2048 x 1.5 + 24 x 2 + 128 + 42 sizes to 2048 x 8 = 4,096 MiB
        ("0.5.19", "RTX-4090", 1, 1, False, 0.833),
        # 0.5.20: chunked prefill 4096, graph batch 48: 512 + 6,144 + 96 + 128 + 50 x 8 = 7,280 MiB
        ("0.5.20", "RTX-4090", 1, 1, False, 0.704),
        # graph batch 160 at TP 4: 512 + 6,144 + 320 + 512 + 400 = 7,888 MiB
        ("0.5.23", "RTX-4090", 4, 1, False, 0.679),
    ],
)
def test_default_fraction_follows_the_release(
    version: str, gpu: str, tp: int, pp: int, mla: bool, expected: float
) -> None:
    release = _release(version)
    fraction = default_memory_fraction(release, find_gpu(gpu).memory_mib, tp, pp, mla)
    assert fraction == pytest.approx(expected, abs=1e-9)


def test_the_default_graph_batch_stops_at_the_running_requests_from_0_5_22() -> None:
    # H100 at TP 1 with --max-running-requests 64: 512 + 12,288 + 64 x 2 + 128 + 464 = 13,520 MiB (0.5.21
    # keeps the batch at 256: 13,904 MiB)
    memory = find_gpu("H100-80GB").memory_mib
    assert default_memory_fraction(_release("0.5.22"), memory, 1, 1, False, None, 64) == 0.834
    assert default_memory_fraction(_release("0.5.21"), memory, 1, 1, False, None, 64) == 0.83
    assert default_memory_fraction(_release("0.5.22"), memory, 1, 1, False, None, 512) == 0.83


def test_a_multimodal_checkpoint_has_no_modelled_default_fraction_from_0_4_9() -> None:
    gemma3, llama = load_model("google/gemma-3-27b-it"), load_model("meta-llama/Llama-3.1-8B-Instruct")
    h100 = find_gpu("H100-80GB")
    # 0.4.8: a reserve of (9.5 + 4 / 2) GiB, 11,776 MiB, on an H100 at TP 4
    for version, expected in (("0.4.8", 0.856), ("0.4.9", None), ("0.5.23", None)):
        model = engine_model(Engine.SGLANG, EngineBuild(version), h100)
        fraction = model.default_memory_fraction(h100, 4, 1, gemma3)
        assert fraction == (None if expected is None else pytest.approx(expected))
        assert model.default_memory_fraction(h100, 4, 1, llama) is not None


def test_a_multimodal_checkpoint_gives_its_image_cache_out_of_the_kv_budget_from_0_5_18() -> None:
    gemma3, llama = load_model("google/gemma-3-27b-it"), load_model("meta-llama/Llama-3.1-8B-Instruct")

    def non_torch(version: str, arch: ModelArchitecture) -> int:
        model = engine_model(Engine.SGLANG, EngineBuild(version), find_gpu("H100-80GB"))
        return model.overhead_curve(
            arch, resolve_weight_format(arch, Precision.BF16), 1, 8192
        ).non_torch_bytes

    assert non_torch("0.5.18", gemma3) - non_torch("0.5.17", gemma3) == 100 * MIB
    assert non_torch("0.5.18", llama) == non_torch("0.5.17", llama)


def test_a_logged_chunked_prefill_changes_the_reserve_from_0_5_3() -> None:
    # 512 + 4096 x 1.5 + 16 x 2 + 128 = 6,816 MiB on an L4 at TP 1: 16,218 / 23,034
    release = _release("0.5.3")
    memory = find_gpu("L4").memory_mib
    assert default_memory_fraction(release, memory, 1, 1, False, 4096) == 0.704
    assert default_memory_fraction(release, memory, 1, 1, False) == 0.837


@pytest.mark.parametrize(
    ("version", "gpu", "tokens"),
    [
        ("0.3.0", "L4", 8192),
        ("0.3.6", "L4", 2048),
        ("0.4.7", "A100-40GB", 8192),
        ("0.4.7.post1", "B200", 16384),
        ("0.5.3", "A100-40GB", 4096),
        ("0.5.3", "H200", 8192),
        ("0.5.19", "RTX-4090", 2048),
        ("0.5.20", "RTX-4090", 4096),
        ("0.5.20", "L4", 4096),
        ("0.5.20", "T4", 2048),
    ],
)
def test_default_chunked_prefill_follows_the_release(version: str, gpu: str, tokens: int) -> None:
    assert default_chunked_prefill(_release(version), find_gpu(gpu).memory_mib) == tokens


def test_the_plan_profiles_the_release_chunked_prefill() -> None:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    model = engine_model(Engine.SGLANG, EngineBuild("0.5.3"))
    l4, a100 = find_gpu("L4"), find_gpu("A100-40GB")
    assert model.default_scheduling(l4.cuda_total_bytes, l4, 8192, llama).max_num_batched_tokens == 2048
    assert model.default_scheduling(a100.cuda_total_bytes, a100, 8192, llama).max_num_batched_tokens == 4096


def test_post_releases_order_after_their_release() -> None:
    assert release_version("v0.4.6.post2-cu124") == (0, 4, 6, 2)
    assert release_version("0.4.6") == (0, 4, 6) < (0, 4, 6, 2)
    assert [row.first for row in RELEASES] == sorted(row.first for row in RELEASES)


def test_an_unstated_or_unread_release_is_said() -> None:
    unstated = engine_model(Engine.SGLANG, EngineBuild(None))
    assert unstated.release_label == "0.5.3"
    assert unstated.assumptions == ("SGLang release not stated: the defaults of v0.5.3-cu129 apply",)
    assert engine_model(Engine.SGLANG, EngineBuild("0.5.23")).assumptions == ()
    newer = engine_model(Engine.SGLANG, EngineBuild("0.5.24"))
    assert newer.release_label == "0.5.24"
    assert newer.assumptions == (
        "SGLang 0.5.24 is newer than the newest release read (0.5.23): the rules of 0.5.23 apply",
    )
    assert engine_model(Engine.SGLANG, EngineBuild("v0.4.6.post2")).release_label == "0.4.6.post2"


def _full_layout(model: str) -> KvLayout:
    """The layout the plan gives SGLang: every layer kept whole, bf16, TP 1, token pages."""
    return replace(kv_layout(load_model(model), 2, 1, 1), num_sliding_window_layers=0)


@pytest.mark.parametrize(
    ("version", "gpu", "expected"),
    [
        # 10 GiB / (24 layers x 2048 B) = 218,453 tokens in one pool
        ("0.5.3", "H100-80GB", 218_453),
        # from 0.5.8 the 12 sliding layers get their own pool: 218,453 x 24 / (12 + 0.8 x 12) = 242,725
        ("0.5.8", "H100-80GB", 242_725),
        # ... except with trtllm_mha, the default on compute capability 10, until 0.5.10
        ("0.5.8", "B200", 218_453),
        ("0.5.10", "B200", 242_725),
    ],
)
def test_gpt_oss_reports_its_full_layers_tokens_where_sliding_layers_have_their_own_pool(
    version: str, gpu: str, expected: int
) -> None:
    model = engine_model(Engine.SGLANG, EngineBuild(version), find_gpu(gpu))
    gpt_oss = load_model("openai/gpt-oss-20b")
    layout = _full_layout("openai/gpt-oss-20b")
    assert model.reported_kv_tokens(layout, 10 * GIB, 8192, 8192, gpt_oss) == expected


@pytest.mark.parametrize(
    ("version", "model_id", "expected"),
    [
        # Gemma-3-27B: 62 layers of 8192 B, 52 sliding: 10 GiB hold 21,140 tokens in one pool, and
        # 21,140 x 62 / (10 + 0.8 x 52) = 25,400 full-layer tokens with a pool of their own
        ("0.4.9.post2", "google/gemma-3-27b-it", 21_140),
        ("0.4.9.post3", "google/gemma-3-27b-it", 25_400),
        ("0.4.10.post2", "google/gemma-3-27b-it", 25_400),
        ("0.5.0", "google/gemma-3-27b-it", 21_140),
        # Gemma-2-9B: 42 layers of 8192 B, 21 sliding: 31,207 tokens; 31,207 x 42 / 37.8 = 34,674
        ("0.4.10", "google/gemma-2-9b-it", 34_674),
        ("0.4.10.post2", "google/gemma-2-9b-it", 31_207),
    ],
)
def test_gemma_had_a_sliding_window_pool_from_0_4_9_post3_to_0_4_10(
    version: str, model_id: str, expected: int
) -> None:
    model = engine_model(Engine.SGLANG, EngineBuild(version), find_gpu("H100-80GB"))
    assert (
        model.reported_kv_tokens(_full_layout(model_id), 10 * GIB, 8192, 8192, load_model(model_id))
        == expected
    )


@pytest.mark.parametrize(("version", "element_bytes"), [("0.4.2", 2), ("0.4.3", 4), ("0.5.10", 4)])
def test_rotary_tables_load_in_fp32_from_0_4_3(version: str, element_bytes: int) -> None:
    # DeepSeek-R1-Distill-Qwen-7B: one table of 131,072 positions x 128: 32 MiB in bf16, 64 MiB in fp32
    arch = load_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    weights = resolve_weight_format(arch, Precision.BF16)
    model = engine_model(Engine.SGLANG, EngineBuild(version))
    assert model.loaded_buffer_bytes(arch, weights) == 131_072 * 128 * element_bytes
