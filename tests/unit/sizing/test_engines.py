"""What each engine does with memory: vLLM's release generations, overhead terms, engine arguments."""

from __future__ import annotations

import pytest

from vramgate.sizing import Precision, find_gpu, load_model
from vramgate.sizing.engines import Engine, Launch, Scheduling, definition, engine_model
from vramgate.sizing.engines.vllm import VllmModel, vllm_generation
from vramgate.sizing.memory import resolve_weight_format


@pytest.mark.parametrize(
    ("version", "generation"),
    [
        (None, "v1-sort-sampler"),
        ("v0.6.4", "v0"),
        ("not shown (V0 worker.py:241)", "v0"),
        ("0.8.5", "v1-flashinfer-sampler"),
        ("0.10.1.1", "v1-hybrid-kv"),
        ("v0.11.0", "v1-hybrid-kv"),
        ("0.11.2", "v1-sort-sampler"),
        ("v0.12.0", "v1-sort-sampler"),
        ("0.33.0", "v1-graphs-in-budget"),
        ("0.1.dev7548+gbaba038", "v1-sort-sampler"),  # an untagged source build says nothing
        ("latest", "v1-sort-sampler"),
    ],
)
def test_vllm_versions_map_to_their_memory_profile(version: str | None, generation: str) -> None:
    assert vllm_generation(version).name == generation


def _overhead(version: str, **scheduling: int) -> tuple[int, int]:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    fmt = resolve_weight_format(llama, Precision.BF16)
    engine = VllmModel(vllm_generation(version))
    plan = Scheduling(
        **{"max_num_seqs": 256, "max_num_batched_tokens": 2048, "block_size_tokens": 16, **scheduling}
    )
    overhead = engine.overhead(llama, fmt, 1, plan)
    return overhead.activation_bytes, overhead.outside_bytes


def test_sorting_sampler_profiles_four_times_the_flashinfer_one() -> None:
    sort, _ = _overhead("0.11.2")
    flashinfer, _ = _overhead("0.10.1")
    assert sort / flashinfer == pytest.approx(38.4 / 10.0, rel=0.05)


def test_sampler_profile_grows_with_the_batch_limit() -> None:
    small, _ = _overhead("0.11.2", max_num_seqs=64)
    large, _ = _overhead("0.11.2", max_num_seqs=1024)
    assert large > 10 * small


def test_newest_vllm_counts_cuda_graphs_inside_the_fraction() -> None:
    engine = VllmModel(vllm_generation("0.33.0"))
    _, outside = _overhead("0.33.0")
    _, older_outside = _overhead("0.12.0")
    assert outside == engine.cuda_context_bytes
    assert older_outside == engine.cuda_context_bytes + engine.cuda_graph_bytes


def test_pipeline_stages_before_the_last_do_not_sample() -> None:
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    fmt = resolve_weight_format(llama, Precision.BF16)
    engine = engine_model(Engine.VLLM)
    plan = Scheduling(1024, 8192, 16)
    assert (
        engine.overhead(llama, fmt, 1, plan, samples=False).activation_bytes
        < engine.overhead(llama, fmt, 1, plan).activation_bytes
    )


def test_vllm_batches_more_on_large_gpus_but_not_a100() -> None:
    engine = engine_model(Engine.VLLM)
    h100, a100, l4 = find_gpu("H100-80GB"), find_gpu("A100-80GB"), find_gpu("L4")
    assert engine.default_scheduling(h100.cuda_total_bytes, h100, 8192).max_num_seqs == 1024
    assert engine.default_scheduling(a100.cuda_total_bytes, a100, 8192).max_num_seqs == 256
    assert engine.default_scheduling(l4.cuda_total_bytes, l4, 8192).max_num_batched_tokens == 2048


def test_v0_prefills_whole_prompts_up_to_32k() -> None:
    v0 = VllmModel(vllm_generation("V0"))
    l4 = find_gpu("L4")
    assert v0.default_scheduling(l4.cuda_total_bytes, l4, 8192).max_num_batched_tokens == 8192
    assert v0.default_scheduling(l4.cuda_total_bytes, l4, 65536).max_num_batched_tokens == 2048


def test_sglang_fraction_covers_weights_and_pool_only() -> None:
    sglang, vllm = engine_model(Engine.SGLANG), engine_model(Engine.VLLM)
    llama = load_model("meta-llama/Llama-3.1-8B-Instruct")
    fmt = resolve_weight_format(llama, Precision.BF16)
    plan = Scheduling(256, 8192, 1)
    assert sglang.overhead(llama, fmt, 1, plan).activation_bytes == 0
    assert sglang.usable_bytes(80 * 2**30, 0.9) < vllm.usable_bytes(80 * 2**30, 0.9)


def test_old_v1_releases_fall_back_to_v0_on_pre_ampere_gpus() -> None:
    t4 = find_gpu("T4").compute_capability_major
    assert vllm_generation("0.9.2", t4).name == "v0"
    assert vllm_generation("0.9.2", find_gpu("A10G").compute_capability_major).name == "v1-flashinfer-sampler"
    assert vllm_generation("0.11.2", t4).name == "v1-sort-sampler"  # V0 is gone; V1 runs everywhere


@pytest.mark.parametrize("engine", list(Engine))
def test_every_engine_in_the_registry_has_its_module(engine: Engine) -> None:
    found = definition(engine)
    assert found.engine is engine
    model = found.model(None, find_gpu("L4"))
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
