"""Planned against observed: each engine's capacity figure is parsed, compared and reported."""

from __future__ import annotations

import json

import pytest

from vramgate.observed import SOURCES, ObservationError, capacity_status, falls_short, summary, vllm_tokens
from vramgate.sizing.engines.base import Engine

# As vLLM 0.11 prints it (label order is vLLM's: sorted by CacheConfig field name).
VLLM_METRICS = (
    "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
    "# TYPE vllm:cache_config_info gauge\n"
    'vllm:cache_config_info{block_size="16",cache_dtype="auto",gpu_memory_utilization="0.64",'
    'num_cpu_blocks="0",num_gpu_blocks="7313",prefix_caching_hash_algo="builtin"} 1.0\n'
    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
    'vllm:num_requests_running{engine="0",model_name="tiiuae/falcon-7b"} 0.0\n'
)


def test_vllm_capacity_is_blocks_times_block_size() -> None:
    assert vllm_tokens(VLLM_METRICS) == 7313 * 16


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("vllm:num_requests_running 0.0\n", "no vllm:cache_config_info"),
        ('vllm:cache_config_info{block_size="16",num_gpu_blocks="None"} 1.0\n', "num_gpu_blocks"),
    ],
)
def test_vllm_answers_without_the_figure_say_what_is_missing(text: str, missing: str) -> None:
    with pytest.raises(ObservationError, match=missing):
        vllm_tokens(text)


def test_sglang_and_tgi_state_it_as_a_json_field() -> None:
    assert SOURCES[Engine.SGLANG].tokens(json.dumps({"max_total_num_tokens": 120000})) == 120000
    assert SOURCES[Engine.TGI].tokens(json.dumps({"max_batch_total_tokens": 98304})) == 98304
    with pytest.raises(ObservationError, match="max_batch_total_tokens"):
        SOURCES[Engine.TGI].tokens(json.dumps({"max_batch_total_tokens": None}))


def test_status_records_both_figures_and_the_relative_error() -> None:
    capacity = capacity_status(
        planned=118912, observed=81904, source=SOURCES[Engine.VLLM], pod="p", generation=2, now="t"
    )
    assert capacity["relativeError"] == pytest.approx((81904 - 118912) / 118912, abs=1e-4)
    assert capacity["observedGeneration"] == 2
    assert "118912" in summary(capacity) and "-31.1%" in summary(capacity)


@pytest.mark.parametrize(
    ("observed", "short"), [(118912, False), (107100, False), (107000, True), (150000, False)]
)
def test_only_less_than_planned_by_more_than_the_threshold_is_a_mismatch(observed: int, short: bool) -> None:
    assert falls_short(118912, observed, 0.1) is short
