"""The planner's weights and KV bytes against what an H100 really allocated (recorded by
benchmarks/gpu_check/measure.py: models built from their config.json with random bf16 weights)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vramgate.sizing.catalog import find_gpu
from vramgate.sizing.engines import Engine, engine_model

GPU_CHECK = Path(__file__).parents[3] / "benchmarks" / "gpu_check"
_spec = importlib.util.spec_from_file_location("gpu_check_compare", GPU_CHECK / "compare.py")
assert _spec is not None and _spec.loader is not None
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

MEASURED = json.loads((GPU_CHECK / "h100-measured.json").read_text())
ROWS = compare.rows(MEASURED)
ENGINE = engine_model(Engine.VLLM, gpu=find_gpu("H100-80GB"))


def test_the_recording_covers_mha_gqa_mqa_mla_sliding_window_and_moe() -> None:
    assert len(ROWS) >= 12
    assert {
        "tiiuae/falcon-7b",  # MQA
        "EleutherAI/gpt-neox-20b",  # MHA, ungated MLP
        "openai/gpt-oss-20b",  # sliding window, MoE
        "deepseek-ai/DeepSeek-V2-Lite",  # MLA, shared experts
        "google/gemma-3-27b-it",  # 5:1 sliding pattern, text_config
    } <= {r["id"] for r in ROWS}


def test_the_engines_cuda_context_term_is_the_measured_one() -> None:
    assert abs(ENGINE.cuda_context_bytes - MEASURED["cuda_context_bytes"]) < 16 * 2**20


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["id"])
def test_weights_match_the_allocated_parameters(row: dict[str, float]) -> None:
    assert abs(row["weights_error"]) < 0.001


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["id"])
def test_kv_bytes_match_the_allocated_cache_exactly(row: dict[str, float]) -> None:
    assert row["kv_predicted"] == row["kv_measured"]
