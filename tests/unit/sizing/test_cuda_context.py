"""The CUDA context per GPU: resident threads' local memory plus a fixed rest (sizing/cuda_context.py)."""

from __future__ import annotations

import pytest

from vramgate.sizing.catalog import find_gpu, unknown_gpu
from vramgate.sizing.cuda_context import cuda_context_bytes
from vramgate.sizing.engines import Engine, engine_model
from vramgate.sizing.units import GIB, KIB, MIB


@pytest.mark.parametrize(
    ("gpu", "context"),
    [
        ("H100-80GB", 132 * 2048 * 2 * KIB + 91 * MIB),  # 619 MiB, the measured H100
        ("A100-40GB", 108 * 2048 * 2 * KIB + 91 * MIB),  # 523 MiB
        ("L4", 58 * 1536 * 2 * KIB + 91 * MIB),  # 265 MiB: Ada keeps 1536 threads per SM resident
        ("T4", 40 * 1024 * 2 * KIB + 91 * MIB),  # 171 MiB: Turing keeps 1024
        ("B200", 148 * 2048 * 2 * KIB + 91 * MIB),  # 683 MiB, above the H100's
    ],
)
def test_the_context_grows_with_the_threads_a_gpu_keeps_resident(gpu: str, context: int) -> None:
    assert find_gpu(gpu).cuda_context_bytes == context
    assert engine_model(Engine.SGLANG, gpu=find_gpu(gpu)).cuda_context_bytes == context


def test_a_gpu_known_only_by_its_memory_keeps_the_measured_h100_figure() -> None:
    assert unknown_gpu(80 * GIB).cuda_context_bytes == 620 * MIB
    assert engine_model(Engine.VLLM).cuda_context_bytes == 620 * MIB


def test_an_unlisted_compute_capability_takes_the_most_resident_threads() -> None:
    assert cuda_context_bytes("11.0", 20) == 20 * 2048 * 2 * KIB + 91 * MIB


@pytest.mark.parametrize(
    ("compute_capability", "multiprocessors", "observed"),
    [
        ("8.9", 58, round(0.19 * GIB)),  # L4, vLLM 0.29: 21.84 of 22.03 GiB free at start
        ("8.6", 82, 256 * MIB),  # RTX 3090 under PyTorch 2.7, nvidia-smi
        ("8.0", 108, round(0.41 * GIB)),  # A100 80GB, vLLM 0.31: 78.84 of 79.25 GiB free at start
        ("8.9", 142, round(0.49 * GIB)),  # L40S, vLLM at TP 4: 43.93 of 44.42 GiB, NCCL included
        ("9.0", 132, round(0.51 * GIB)),  # H200, vLLM: 139.29 of 139.8 GiB free at start
        ("12.0", 188, 555 * MIB),  # RTX PRO 6000 Blackwell, bare cudaMemGetInfo
        ("8.9", 34, 107 * MIB),  # RTX 4060 Ti, bare cudaMemGetInfo
    ],
)
def test_no_public_measurement_exceeds_the_model(
    compute_capability: str, multiprocessors: int, observed: int
) -> None:
    assert cuda_context_bytes(compute_capability, multiprocessors) >= observed
