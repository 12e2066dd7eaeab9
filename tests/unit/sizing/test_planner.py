"""The planner's choices, refusals and suggestions, and the seed article's worked example."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vramgate.sizing import (
    KvCacheDtype,
    ModelArchitecture,
    PlanRequest,
    Precision,
    SizingError,
    find_gpu,
    gpu_catalog,
    load_model,
    model_catalog,
    plan,
)
from vramgate.sizing.engines import Engine
from vramgate.sizing.planner import KV_SAFETY_MARGIN
from vramgate.sizing.units import GIB, KIB


def request(model: str = "tiiuae/falcon-7b", **changes: Any) -> PlanRequest:
    fields: dict[str, Any] = {
        "model": load_model(model),
        "model_source": model,
        "max_seq_len": 1000,
        "concurrency": 100,
    }
    fields.update(changes)
    return PlanRequest(**fields)


def seed_request(**changes: Any) -> PlanRequest:
    """The article's assumptions: 32 layers, K and V 4544 wide, fp16, 14 GiB weights, 24 GiB, no overhead,
    no paging."""
    arch = ModelArchitecture(
        name="falcon-7b-as-the-article-sees-it",
        num_layers=32,
        hidden_size=4544,
        num_attention_heads=71,
        num_kv_heads=71,
        head_dim=64,
        vocab_size=65024,
        intermediate_size=18176,
    )
    fields: dict[str, Any] = {
        "model": arch,
        "model_source": "tiiuae/falcon-7b",
        "precision": Precision.FP16,
        "max_seq_len": 1000,
        "concurrency": 100,
        "gpu": find_gpu("A10G"),
        "memory_fraction": 1.0,
        "block_size": 1,
        "weights_bytes_override": 14 * GIB,
        "gpu_memory_bytes_override": 24 * GIB,
        "overhead_bytes_override": 0,
    }
    fields.update(changes)
    return PlanRequest(**fields)


def test_seed_article_kv_cache_for_100_requests_of_1000_tokens() -> None:
    result = plan(seed_request())
    assert result.kv_cache_bytes / GIB == pytest.approx(54.168701171875, abs=1e-9)
    assert not result.fits


def test_seed_article_18_concurrent_requests_in_10_gib() -> None:
    assert plan(seed_request()).max_batch == 18


def test_real_falcon_7b_serves_over_a_thousand_where_the_article_says_18() -> None:
    real = seed_request(model=load_model("tiiuae/falcon-7b"))
    result = plan(real)
    assert result.kv_bytes_per_token == 8 * KIB
    # 10 GiB of KV cache less the 1% safety margin, in 1000-token sequences: 1297 (1310 without it)
    assert result.max_concurrency == 10 * GIB * 99 // 100 // (8 * KIB * 1000)
    assert result.fits


def test_falcon_7b_on_a10g_fits_with_computed_fraction_and_batch() -> None:
    result = plan(request(gpu=find_gpu("A10G"), precision=Precision.FP16))
    assert result.fits
    assert (result.gpu_type, result.gpu_count, result.gpu_product) == ("A10G", 1, "NVIDIA-A10G")
    assert result.max_batch >= 100
    assert result.memory_fraction <= result.memory_fraction_cap
    usable = result.memory_fraction * result.gpu_memory_bytes
    assert result.required_bytes_per_gpu <= usable
    assert "--max-num-seqs=" + str(result.max_batch) in result.engine_args["vllm"]
    assert f"--gpu-memory-utilization={result.memory_fraction:.2f}" in result.engine_args["vllm"]
    assert any(arg.startswith("--mem-fraction-static=") for arg in result.engine_args["sglang"])
    assert any(arg.startswith("--cuda-memory-fraction=") for arg in result.engine_args["tgi"])


def test_unpinned_plan_is_the_cheapest_that_fits() -> None:
    result = plan(request("meta-llama/Llama-3.1-70B-Instruct", max_seq_len=8192, concurrency=16))
    fitting = [c for c in result.alternatives if c.fits]
    assert result.fits
    chosen_price = find_gpu(result.gpu_type).price_per_hour * result.gpu_count
    assert chosen_price == min(c.price_per_hour for c in fitting)


def test_every_gpu_type_and_count_is_reported() -> None:
    result = plan(request("meta-llama/Llama-3.1-8B-Instruct"))
    reported = {(c.gpu_type, c.gpu_count) for c in result.alternatives}
    assert reported == {(gpu.name, n) for gpu in gpu_catalog().values() for n in (1, 2, 4, 8)}


def test_falcon_7b_cannot_be_split_over_two_gpus() -> None:
    with pytest.raises(SizingError, match="71 attention heads"):
        plan(request(gpu_count=2))


def test_oversized_model_is_refused_with_numbers_and_nearest_fixes() -> None:
    result = plan(
        request(
            "meta-llama/Llama-3.1-70B-Instruct",
            gpu=find_gpu("L4"),
            gpu_count=1,
            max_seq_len=8192,
            concurrency=32,
        )
    )
    assert not result.fits
    (reason,) = result.reasons
    assert "needs" in reason and "GiB per GPU" in reason and "L4 offers" in reason
    changes = {path for s in result.suggestions for path in s.changes}
    assert {"gpu.type", "gpu.count"} <= changes


@pytest.mark.parametrize(
    ("model", "gpu", "count", "concurrency"),
    [
        ("meta-llama/Llama-3.1-70B-Instruct", "L4", 1, 32),
        ("meta-llama/Llama-3.1-8B-Instruct", "T4", 1, 64),
        ("meta-llama/Llama-3.1-8B-Instruct", "L4", 1, 64),
    ],
)
def test_a_refusal_without_the_field_suggests_what_the_whole_field_would(
    model: str, gpu: str, count: int, concurrency: int
) -> None:
    """The request path skips the table of every option and weighs other types only up to the cheapest
    that fits; its refusal must read the same as the one planned over the whole field."""
    refused = request(model, gpu=find_gpu(gpu), gpu_count=count, max_seq_len=8192, concurrency=concurrency)
    whole = plan(refused)
    lean = plan(refused, alternatives=False)
    assert not whole.fits and not lean.fits
    assert lean.suggestions == whole.suggestions and lean.reasons == whole.reasons
    assert lean.alternatives == [] and whole.alternatives


@pytest.mark.parametrize("model", sorted(model_catalog()))
@pytest.mark.parametrize(("concurrency", "gpu_count"), [(16, None), (256, None), (64, 2)])
def test_an_unpinned_plan_without_the_field_chooses_what_the_whole_field_would(
    model: str, concurrency: int, gpu_count: int | None
) -> None:
    """Without the field the planner stops at the cheapest option that fits, in ascending price; the
    plan must be the whole field's, fitting or refused (every catalog model, large batches refused)."""
    arch = model_catalog()[model].architecture()
    wanted = request(
        model,
        max_seq_len=min(arch.max_position_embeddings or 8192, 8192),
        concurrency=concurrency,
        gpu_count=gpu_count,
    )
    try:
        whole = plan(wanted)
    except SizingError as whole_error:
        with pytest.raises(SizingError) as lean_error:
            plan(wanted, alternatives=False)
        assert lean_error.value.message == whole_error.message
        return
    assert plan(wanted, alternatives=False) == replace(whole, alternatives=[])


@pytest.mark.parametrize(("gpu", "dtype"), [("T4", "float16"), ("V100-32GB", "float16"), ("L4", "bfloat16")])
def test_a_bf16_model_runs_fp16_below_compute_capability_8(gpu: str, dtype: str) -> None:
    """vLLM refuses bf16 below compute capability 8.0 (vllm/platforms/cuda.py@v0.11.0): a T4 or a V100 is
    told fp16, the same bytes, and the plan says so; an L4 keeps bf16."""
    result = plan(request("Qwen/Qwen3-0.6B", gpu=find_gpu(gpu), gpu_count=1, max_seq_len=4096, concurrency=8))
    assert result.fits and result.weights_format == "bf16"
    for engine in Engine:
        assert any(arg.endswith(f"dtype={dtype}") or arg == dtype for arg in result.engine_args[engine.value])
    said = [note for note in result.assumptions if note.startswith("bf16 needs compute capability 8.0")]
    assert len(said) == (dtype == "float16")


def replanned_suggestions(refused: PlanRequest) -> list[dict[str, str]]:
    """The nearest changes found the slow way, independently of how the planner finds them: each change
    planned from scratch on the refused option's GPUs, the other types read from the whole field."""
    whole = plan(refused)
    on_these = replace(refused, gpu=find_gpu(whole.gpu_type), gpu_count=whole.tensor_parallel)

    def fits(**changes: Any) -> bool:
        try:
            return plan(replace(on_these, **changes), alternatives=False).fits
        except SizingError:
            return False

    found = []
    low, high = 0, refused.max_seq_len - 1  # the longest length that fits (monotone: a binary search)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(max_seq_len=middle) else (low, middle - 1)
    if low:
        found.append({"workload.maxSequenceLength": str(low)})
    if whole.max_batch >= 1:
        found.append({"workload.concurrency": str(whole.max_batch)})
    if refused.kv_cache_dtype is not KvCacheDtype.FP8 and fits(kv_cache_dtype=KvCacheDtype.FP8):
        found.append({"model.kvCacheDtype": "fp8"})
    if refused.model.quantization is None:
        lower = [
            p
            for p in (Precision.FP8, Precision.INT4)
            if p.value != whole.weights_format and fits(precision=p)
        ]
        found += [{"model.precision": lower[0].value}] if lower else []
    more = [n for n in (2, 4, 8) if n > whole.tensor_parallel and fits(gpu_count=n)]
    if more and refused.gpu_count is not None:
        found.append({"gpu.count": str(more[0])})
    others = [c for c in whole.alternatives if c.fits and c.gpu_type != whole.gpu_type]
    if others:
        other = min(others, key=lambda c: (c.price_per_hour, c.gpu_count, c.memory_fraction))
        per_stage = other.gpu_count // refused.pipeline_parallel  # the spec's count is per stage
        found.append({"gpu.type": other.gpu_type, "gpu.count": str(per_stage)})
    return found


@pytest.mark.parametrize(
    ("model", "gpu", "count", "length", "concurrency", "changes"),
    [
        ("meta-llama/Llama-3.1-70B-Instruct", "L4", 1, 8192, 32, {}),  # only other GPUs
        ("meta-llama/Llama-3.1-70B-Instruct", "H100-80GB", 1, 8192, 16, {}),  # more of them
        ("meta-llama/Llama-3.1-70B-Instruct", "A100-80GB", 1, 8192, 4, {}),  # int4 weights
        ("meta-llama/Llama-3.1-8B-Instruct", "L4", 1, 8192, 8, {}),  # every kind of change
        ("meta-llama/Llama-3.1-8B-Instruct", "L4", None, 131072, 256, {}),  # no other GPU fits
        ("google/gemma-2-9b-it", "A10G", 1, 8192, 16, {}),  # sliding-window layers
        ("openai/gpt-oss-20b", "L4", 1, 131072, 16, {}),  # MXFP4 experts, padded per GPU
        ("meta-llama/Llama-3.1-8B-Instruct", "A10G", 1, 32768, 32, {"pipeline_parallel": 2}),
        (
            "meta-llama/Llama-3.1-8B-Instruct",
            "L4",
            1,
            8192,
            64,
            {"engine": Engine.SGLANG, "memory_fraction": 0.8},
        ),
        ("Qwen/Qwen2-7B-Instruct", "A10G", 1, 16384, 64, {"engine": Engine.TGI, "engine_version": "2.0.0"}),
    ],
)
def test_a_refusal_suggests_what_replanning_each_change_finds(
    model: str, gpu: str, count: int | None, length: int, concurrency: int, changes: dict[str, Any]
) -> None:
    """The planner finds its suggestions without re-planning (shared evaluators, checks that stop at the
    first figure that rules an option out); they must be what re-planning each change from scratch finds."""
    refused = request(
        model, gpu=find_gpu(gpu), gpu_count=count, max_seq_len=length, concurrency=concurrency, **changes
    )
    expected = replanned_suggestions(refused)
    for alternatives in (False, True):
        result = plan(refused, alternatives=alternatives)
        assert not result.fits
        assert [s.changes for s in result.suggestions] == expected


def test_too_many_requests_suggests_what_fits_and_each_suggestion_really_fits() -> None:
    base = request(
        "meta-llama/Llama-3.1-8B-Instruct",
        gpu=find_gpu("L4"),
        gpu_count=1,
        max_seq_len=8192,
        concurrency=64,
        precision=Precision.BF16,
    )
    result = plan(base)
    assert not result.fits
    suggested = {path: value for s in result.suggestions for path, value in s.changes.items()}
    assert plan(replace(base, max_seq_len=int(suggested["workload.maxSequenceLength"]))).fits
    assert plan(replace(base, concurrency=int(suggested["workload.concurrency"]))).fits
    assert plan(replace(base, kv_cache_dtype=KvCacheDtype.FP8)).fits == ("model.kvCacheDtype" in suggested)


def test_fraction_never_exceeds_the_cap() -> None:
    result = plan(request("meta-llama/Llama-3.1-8B-Instruct", gpu=find_gpu("L4"), max_memory_fraction=0.5))
    assert result.memory_fraction_cap <= 0.5
    assert not result.fits or result.memory_fraction <= 0.5


def test_fixed_fraction_reports_what_the_engine_gets() -> None:
    result = plan(
        request(
            "Qwen/Qwen2-7B-Instruct",
            gpu=find_gpu("A100-80GB"),
            gpu_count=1,
            memory_fraction=0.5,
            max_seq_len=16384,
            concurrency=1,
            engine_version="0.10.1.1",
            engine_flashinfer=True,  # its log: "Using FlashInfer for top-p & top-k sampling"
        )
    )
    assert result.memory_fraction == 0.5
    assert result.kv_capacity_tokens == pytest.approx(464848, rel=0.02)  # vLLM printed 464,848 tokens


def test_a_fixed_fraction_promises_the_predicted_pool_less_the_safety_margin() -> None:
    llama = "meta-llama/Llama-3.1-8B-Instruct"
    fixed = {"gpu": find_gpu("H100-80GB"), "gpu_count": 1, "max_seq_len": 8192, "concurrency": 64}
    result = plan(request(llama, memory_fraction=0.9, max_num_seqs=64, **fixed))  # launched as planned
    usable = int(0.9 * result.gpu_memory_bytes)
    pool = usable - result.weights_bytes_per_gpu - result.overhead_bytes_per_gpu
    promised = pool * 99 // 100
    assert result.kv_safety_margin_bytes_per_gpu == pool - promised
    block_bytes = result.kv_bytes_per_token_per_gpu * 16
    assert result.kv_capacity_tokens == promised // block_bytes * 16
    assert result.max_concurrency == promised // (8192 * result.kv_bytes_per_token_per_gpu)


def test_a_hybrid_models_capacity_is_printed_as_vllm_prints_it_by_release() -> None:
    gemma = "google/gemma-3-27b-it"  # 7 groups of 10 layers: 1 global, 6 sliding (1024 tokens)
    fixed = {"gpu": find_gpu("H100-80GB"), "gpu_count": 1, "max_seq_len": 32768, "memory_fraction": 0.95}
    old, new = (plan(request(gemma, engine_version=v, concurrency=1, **fixed)) for v in ("0.21.0", "0.22.0"))
    for result in (old, new):  # whole blocks of 10 layers x 16 tokens
        assert result.kv_capacity_bytes_per_gpu % (10 * 16 * 8192) == 0
    blocks = new.kv_capacity_bytes_per_gpu // (10 * 16 * 8192)
    # 0.22: a 32768-token request takes 2048 global blocks and, in each of 6 sliding groups, the blocks of
    # 1023 + 8192 batched tokens (576) plus one: 5510 blocks, not the 7 x 2048 whole blocks 0.21 counts
    assert new.kv_capacity_tokens == int(blocks / 5510 * 32768)
    assert old.kv_capacity_tokens == old.kv_capacity_bytes_per_gpu // (10 * 16 * 8192) // 7 * 16
    assert new.kv_capacity_tokens > 2.5 * old.kv_capacity_tokens


def test_a_computed_fraction_and_the_engines_batch_limit_leave_room_for_the_safety_margin() -> None:
    llama = "meta-llama/Llama-3.1-8B-Instruct"
    result = plan(request(llama, gpu=find_gpu("L40S"), gpu_count=1, max_seq_len=8192, concurrency=8))
    kv_with_margin = KV_SAFETY_MARGIN.pool_for(result.kv_cache_bytes_per_gpu)
    assert kv_with_margin > result.kv_cache_bytes_per_gpu
    assert result.required_bytes_per_gpu == (
        result.weights_bytes_per_gpu + result.overhead_bytes_per_gpu + kv_with_margin
    )
    assert result.required_bytes_per_gpu <= result.memory_fraction * result.gpu_memory_bytes
    assert result.max_batch <= result.kv_capacity_tokens // 8192
    assert f"--max-num-seqs={result.max_batch}" in result.engine_args["vllm"]


def test_sequence_longer_than_the_context_window_is_bad_input() -> None:
    with pytest.raises(SizingError, match="context window"):
        plan(request(max_seq_len=4096))  # falcon-7b: 2048


def test_absurd_values_are_refused_before_planning() -> None:
    with pytest.raises(ValueError, match="less than or equal"):
        request(max_seq_len=10**12)
    with pytest.raises(ValueError, match="less than or equal"):
        request(concurrency=10**9)


@pytest.mark.timeout(20)
def test_largest_values_neither_overflow_nor_hang() -> None:
    result = plan(request("meta-llama/Llama-3.1-8B-Instruct", max_seq_len=131072, concurrency=100_000))
    assert not result.fits
    assert result.kv_cache_bytes == 100_000 * 131072 * result.kv_bytes_per_token


def test_a_gpu_known_only_by_its_memory_is_not_guessed_from_the_catalog() -> None:
    gpt_oss = load_model("openai/gpt-oss-120b")
    result = plan(
        PlanRequest(
            model=gpt_oss,
            model_source="openai/gpt-oss-120b",
            max_seq_len=8192,
            concurrency=1,
            gpu_memory_bytes_override=80 * 2**30,
        )
    )
    assert result.gpu_type == "unknown"
    assert {c.gpu_type for c in result.alternatives} == {"unknown"}
    assert any("compute capability 10.0" in note for note in result.assumptions)
    # Blackwell's MXFP4 layout pads the most: more weights than Marlin's on a catalog Ampere/Hopper GPU
    h100 = plan(
        PlanRequest(
            model=gpt_oss, model_source="x", max_seq_len=8192, concurrency=1, gpu=find_gpu("H100-80GB")
        )
    )
    assert result.weights_bytes_per_gpu * result.gpu_count > h100.weights_bytes_per_gpu * h100.gpu_count


def test_the_plan_says_which_release_it_applied_and_what_it_assumed() -> None:
    stated = plan(request("meta-llama/Llama-3.1-8B-Instruct", engine_version="v0.12.0"))
    assert stated.engine_release == "0.12.0"
    # Nothing about the release; only how a new pod compiles, which no request states
    assert [note.split(":")[0] for note in stated.assumptions] == ["torch.compile"]
    unstated = plan(request("meta-llama/Llama-3.1-8B-Instruct"))
    assert unstated.engine_release == "0.11.0"
    assert any("not stated" in note for note in unstated.assumptions)


def test_a_vision_encoder_whose_profile_is_not_modelled_is_said() -> None:
    """Any tower under V0 (its dummy sequences carry the images); gemma-3's fixed-size one is modelled from
    V1 on, Qwen2.5-VL's at the official processor's image size, which the plan says."""

    def notes(model: str, version: str) -> list[str]:
        return plan(request(model, engine_version=version, max_seq_len=8192, concurrency=1)).assumptions

    def unmodelled(model: str, version: str) -> bool:
        return any("vision encoder" in note and "not modelled" in note for note in notes(model, version))

    assert unmodelled("google/gemma-3-27b-it", "0.6.4")
    assert unmodelled("Qwen/Qwen2.5-VL-7B-Instruct", "0.6.4")
    assert not unmodelled("google/gemma-3-27b-it", "0.19.0")
    assert not unmodelled("meta-llama/Llama-3.1-8B-Instruct", "0.19.0")
    qwen = notes("Qwen/Qwen2.5-VL-7B-Instruct", "0.19.0")
    assert not unmodelled("Qwen/Qwen2.5-VL-7B-Instruct", "0.19.0")
    assert any("official processor's size (16,384 embeddings)" in note and "32,768" in note for note in qwen)


def test_tgi_2_plans_the_pool_its_warmup_leaves_free_less_its_wiggle_room() -> None:
    """TGI 2.2.0 keeps 95% of the memory free after warm-up and adds back the warm-up batch's blocks: two
    requests for the default 4145-token prefill (2 x 256 blocks of 16 x 128 KiB = 1 GiB, counted as used),
    all added back as the 50-token one still runs after prefill."""
    result = plan(
        request(
            "meta-llama/Llama-3.1-8B-Instruct",
            engine=Engine.TGI,
            engine_version="2.2.0",
            gpu=find_gpu("A10G"),
            gpu_count=1,
            memory_fraction=1.0,
            max_seq_len=4096,
            concurrency=1,
        )
    )
    free = (
        result.gpu_memory_bytes
        - result.weights_bytes_per_gpu
        - result.non_torch_bytes_per_gpu
        - result.activation_bytes_per_gpu
    )
    pool = (free - GIB) * 9_500 // 10_000 + GIB
    block = 16 * 128 * KIB
    assert result.kv_capacity_tokens == KV_SAFETY_MARGIN.promised(pool) // block * 16
