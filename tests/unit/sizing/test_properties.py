"""Properties that must hold for any input, checked with hypothesis."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vramgate.sizing import KvCacheDtype, PlanRequest, Precision, find_gpu, load_model, plan
from vramgate.sizing.memory import resolve_weight_format, weights_bytes

MODELS = [
    "meta-llama/Llama-3.1-8B-Instruct",
    "Qwen/Qwen2.5-32B-Instruct",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "deepseek-ai/DeepSeek-V2-Lite",
    "openai/gpt-oss-20b",
    "google/gemma-2-9b-it",
]
GPUS = ["L4", "A10G", "L40S", "A100-80GB", "H100-80GB"]

models = st.sampled_from(MODELS)
lengths = st.integers(min_value=1, max_value=8192)
concurrencies = st.integers(min_value=1, max_value=512)


def _request(model: str, length: int, concurrency: int, **changes: Any) -> PlanRequest:
    return PlanRequest(
        model=load_model(model), model_source=model, max_seq_len=length, concurrency=concurrency, **changes
    )


@settings(max_examples=40, deadline=None)
@given(models, lengths, lengths, concurrencies, st.sampled_from(GPUS))
def test_required_memory_never_decreases_with_more_tokens(
    model: str, length_a: int, length_b: int, concurrency: int, gpu: str
) -> None:
    short, long = sorted((length_a, length_b))
    pinned = {"gpu": find_gpu(gpu), "gpu_count": 1}
    assert (
        plan(_request(model, short, concurrency, **pinned)).required_bytes_per_gpu
        <= plan(_request(model, long, concurrency, **pinned)).required_bytes_per_gpu
    )


@settings(max_examples=40, deadline=None)
@given(models, lengths, concurrencies, concurrencies, st.sampled_from(GPUS))
def test_required_memory_never_decreases_with_more_concurrency(
    model: str, length: int, concurrency_a: int, concurrency_b: int, gpu: str
) -> None:
    low, high = sorted((concurrency_a, concurrency_b))
    pinned = {"gpu": find_gpu(gpu), "gpu_count": 1}
    assert (
        plan(_request(model, length, low, **pinned)).required_bytes_per_gpu
        <= plan(_request(model, length, high, **pinned)).required_bytes_per_gpu
    )


@settings(max_examples=30, deadline=None)
@given(models, lengths, concurrencies)
def test_wider_kv_dtype_never_needs_less(model: str, length: int, concurrency: int) -> None:
    pinned = {"gpu": find_gpu("H100-80GB"), "gpu_count": 1}
    fp8 = plan(_request(model, length, concurrency, kv_cache_dtype=KvCacheDtype.FP8, **pinned))
    bf16 = plan(_request(model, length, concurrency, kv_cache_dtype=KvCacheDtype.BF16, **pinned))
    assert fp8.required_bytes_per_gpu <= bf16.required_bytes_per_gpu


@settings(max_examples=30, deadline=None)
@given(models, st.sampled_from([Precision.BF16, Precision.FP8, Precision.INT4]))
def test_more_tensor_parallel_gpus_never_increase_weights_per_gpu(model: str, precision: Precision) -> None:
    arch = load_model(model)
    fmt = resolve_weight_format(arch, precision if arch.quantization is None else Precision.AUTO)
    per_gpu = [weights_bytes(arch, fmt, tp).per_gpu for tp in (1, 2, 4, 8)]
    assert per_gpu == sorted(per_gpu, reverse=True)


@settings(max_examples=40, deadline=None)
@given(models, lengths, concurrencies)
def test_chosen_plan_fits_its_own_numbers(model: str, length: int, concurrency: int) -> None:
    result = plan(_request(model, length, concurrency))
    if result.fits:
        assert result.memory_fraction <= result.memory_fraction_cap
        assert result.required_bytes_per_gpu <= result.memory_fraction * result.gpu_memory_bytes
        assert result.max_batch >= concurrency
        assert result.max_concurrency >= concurrency
        if load_model(model).sliding_window is None:  # sliding layers need less than the full length
            assert result.kv_capacity_tokens >= concurrency * length
    else:
        assert result.reasons
