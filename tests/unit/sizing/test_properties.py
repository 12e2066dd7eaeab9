"""Properties that must hold for any input, checked with hypothesis."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vramgate.sizing import KvCacheDtype, PlanRequest, Precision, find_gpu, gpu_catalog, load_model, plan
from vramgate.sizing.engines import Engine
from vramgate.sizing.memory import kv_layout, resolve_weight_format, weights_bytes
from vramgate.sizing.planner import _Evaluator

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


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([*MODELS, "google/gemma-3-27b-it"]),
    st.integers(min_value=1, max_value=131072),
    st.sampled_from([1, 2, 16, 32, 256]),
    st.integers(min_value=1, max_value=16384),
    st.sampled_from([1.0, 1.25, 1.5]),
)
def test_a_sequence_takes_least_in_blocks_of_one_token_with_one_batched_token(
    model: str, length: int, block: int, batched: int, larger_group_below: float
) -> None:
    """The planner rules options out with this least figure before it knows the engine's limits."""
    arch = load_model(model)
    least = kv_layout(arch, 2, 1, 1, larger_group_below=larger_group_below).bytes_per_sequence(length, 1)
    layout = kv_layout(arch, 2, 1, block, larger_group_below=larger_group_below)
    assert layout.bytes_per_sequence(length, batched) >= least


@settings(max_examples=60, deadline=None)
@given(
    models,
    st.integers(min_value=1, max_value=32768),
    concurrencies,
    st.sampled_from(
        [
            {},
            {"memory_fraction": 0.8},
            {"pipeline_parallel": 2},
            {"engine": Engine.TGI, "engine_version": "2.0.0"},  # the warm-up rule: no least-KV check
            {"engine": Engine.SGLANG},
        ]
    ),
)
def test_asking_whether_an_option_fits_answers_as_evaluating_it_does(
    model: str, length: int, concurrency: int, changes: dict[str, Any]
) -> None:
    """`fitting` stops at the first figure that rules an option out (weights, then weights and the least
    KV cache, then the fraction's cap); it must never rule out an option that evaluating shows to fit."""
    evaluator = _Evaluator(_request(model, length, concurrency, **changes))
    for gpu in gpu_catalog().values():
        for count in (1, 2, 4, 8):
            if evaluator.valid_tensor_parallel(count):
                evaluation = evaluator.evaluate(gpu, count)
                assert (evaluator.fitting(gpu, count) == evaluation) is evaluation.fits
