"""Spec parsing: camelCase fields, errors with the resource's field path, the plan request it makes."""

from __future__ import annotations

from typing import Any

import pytest

from vramgate.sizing import Engine, Precision, find_model, plan
from vramgate.sizing.architecture import parameter_groups
from vramgate.sizing.memory import kv_layout
from vramgate.spec import SpecError, extra_arguments, parse_spec, to_plan_request


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"name": "tiiuae/falcon-7b", "precision": "fp16"},
        "workload": {"maxSequenceLength": 1000, "concurrency": 100},
        "gpu": {"type": "A10G"},
        "runtime": {"image": "vllm/vllm-openai:v0.11.0"},
    }
    return {**base, **overrides}


def field_of(raw: Any) -> str:
    with pytest.raises(SpecError) as error:
        to_plan_request(parse_spec(raw))
    return error.value.field


def test_a_valid_spec_becomes_the_plan_request() -> None:
    request = to_plan_request(parse_spec(spec()))

    assert request.model.name == "tiiuae/falcon-7b"
    assert request.model_source == "tiiuae/falcon-7b"
    assert request.precision is Precision.FP16
    assert (request.max_seq_len, request.concurrency) == (1000, 100)
    assert request.gpu is None  # placement resolves spec.gpu.type against the cluster or the catalog
    assert request.engine is Engine.VLLM


def test_the_image_tag_is_the_engine_version_unless_one_is_given() -> None:
    assert to_plan_request(parse_spec(spec())).engine_version == "v0.11.0"
    pinned = spec(runtime={"image": "registry:5000/vllm@sha256:" + "ab" * 32, "engineVersion": "0.10.2"})
    assert to_plan_request(parse_spec(pinned)).engine_version == "0.10.2"
    assert to_plan_request(parse_spec(spec(runtime={"image": "registry:5000/vllm"}))).engine_version is None


@pytest.mark.parametrize(
    ("image", "stated", "agrees"),
    [
        ("ghcr.io/huggingface/text-generation-inference:2.0", "2.0.4", True),  # a minor tag runs a patch
        ("ghcr.io/huggingface/text-generation-inference:2.0.4", "2.0", True),
        ("ghcr.io/huggingface/text-generation-inference:2.0", "2.1.0", False),
        ("ghcr.io/huggingface/text-generation-inference:2.0.4", "2.0.3", False),
    ],
)
def test_an_engine_version_must_agree_with_the_release_the_tag_names(
    image: str, stated: str, agrees: bool
) -> None:
    raw = spec(runtime={"engine": "tgi", "image": image, "engineVersion": stated})
    if agrees:
        assert to_plan_request(parse_spec(raw)).engine_version == stated
    else:
        assert field_of(raw) == "spec.runtime.engineVersion"


def test_source_defaults_to_the_model_name() -> None:
    assert parse_spec(spec()).model_source == "tiiuae/falcon-7b"
    custom = spec(model={"name": "tiiuae/falcon-7b", "source": "s3://models/falcon"})
    assert to_plan_request(parse_spec(custom)).model_source == "s3://models/falcon"


def test_errors_name_the_field_path() -> None:
    assert (
        field_of(spec(workload={"maxSequenceLength": 0, "concurrency": 1}))
        == "spec.workload.maxSequenceLength"
    )
    assert field_of(spec(model={"name": "nobody/nothing-7b"})) == "spec.model.name"
    assert field_of(spec(gpu={"type": "A10G", "preferences": [{"type": "L4"}]})) == "spec.gpu"
    assert field_of(spec(gpu={"preferences": [{"count": 2}]})) == "spec.gpu.preferences[0].type"
    assert field_of(spec(gpu={"preferences": []})) == "spec.gpu.preferences"
    assert (
        field_of(spec(workload={"maxSequenceLength": 100, "concurrency": 1, "qps": 3})) == "spec.workload.qps"
    )
    assert field_of(spec(runtime={"env": [{"value": "x"}]})) == "spec.runtime.env[0].name"
    assert field_of(None) == "spec"


def test_an_unknown_model_is_explained_with_the_resource_remedy() -> None:
    with pytest.raises(SpecError) as error:
        to_plan_request(parse_spec(spec(model={"name": "falcon-7b"})))
    assert "did you mean tiiuae/falcon-7b" in error.value.message
    assert "config.json" not in error.value.message
    assert "spec.model.architecture" in error.value.message


def test_exactly_one_of_name_and_architecture() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec(model={}))
    assert (error.value.field, error.value.message) == (
        "spec.model",
        "set exactly one of name (a catalog id) and architecture (an inline shape)",
    )


INLINE = {
    "layers": 32, "hiddenSize": 4096, "attentionHeads": 32, "kvHeads": 8,
    "vocabSize": 128256, "intermediateSize": 14336,
}  # fmt: skip


def test_an_inline_architecture_is_sized_as_the_catalog_model_it_mirrors() -> None:
    inline = spec(model={"architecture": INLINE, "source": "/models/my-llama"}, gpu={})
    request = to_plan_request(parse_spec(inline))
    assert request.model.name == "/models/my-llama"
    assert request.model.num_kv_heads == 8 and request.model.head_dim == 128


DEEPSEEK_V2_LITE = {
    "layers": 27, "hiddenSize": 2048, "attentionHeads": 16, "kvHeads": 16, "vocabSize": 102400,
    "intermediateSize": 10944, "experts": 64, "expertsPerToken": 6, "moeIntermediateSize": 1408,
    "sharedExpertIntermediateSize": 2 * 1408, "denseLayers": 1, "kvLoraRank": 512, "qkRopeHeadDim": 64,
    "qkNopeHeadDim": 128, "vHeadDim": 128, "maxPositionEmbeddings": 163840,
}  # fmt: skip


def test_an_inline_latent_attention_moe_is_sized_like_its_catalog_entry() -> None:
    inline = spec(model={"architecture": DEEPSEEK_V2_LITE, "source": "/models/dsv2-lite"}, gpu={})
    arch = to_plan_request(parse_spec(inline)).model
    catalog = find_model("deepseek-ai/DeepSeek-V2-Lite").architecture()
    assert arch.attention_kind == "MLA"
    assert parameter_groups(arch) == parameter_groups(catalog)
    assert kv_layout(arch, 2, 2, 16).bytes_per_token == kv_layout(catalog, 2, 2, 16).bytes_per_token


def test_latent_attention_needs_its_rotary_and_value_widths() -> None:
    broken = {**DEEPSEEK_V2_LITE, "vHeadDim": 0}
    with pytest.raises(SpecError, match="kvLoraRank > 0"):
        parse_spec(spec(model={"architecture": broken, "source": "/models/x"}, gpu={}))


def test_a_malformed_inline_architecture_is_refused_with_its_path() -> None:
    uneven = spec(model={"architecture": {**INLINE, "kvHeads": 5}, "source": "/models/x"})
    with pytest.raises(SpecError) as error:
        parse_spec(uneven)
    assert error.value.field == "spec.model.architecture"
    assert "multiple of kvHeads" in error.value.message
    assert field_of(spec(model={"architecture": INLINE})) == "spec.model"  # no source


def test_extra_args_may_not_override_planned_flags() -> None:
    extras = ["--enable-prefix-caching", "--max-num-seqs=512", "--gpu_memory_utilization=0.99"]
    with pytest.raises(SpecError) as error:
        to_plan_request(parse_spec(spec(runtime={"extraArgs": extras})))
    assert error.value.field == "spec.runtime.extraArgs[2]"
    assert (
        "--gpu-memory-utilization" in error.value.message
        and "spec.gpu.maxMemoryFraction" in error.value.message
    )


def test_the_planner_reads_its_flags_from_extra_args_and_writes_them_itself() -> None:
    runtime = {"extraArgs": ["--max-num-batched-tokens", "4096", "--block-size=32", "--enforce-eager"]}
    parsed = parse_spec(spec(runtime=runtime))
    request = to_plan_request(parsed)
    assert (request.max_num_batched_tokens, request.block_size) == (4096, 32)
    assert extra_arguments(parsed).passthrough == (), "the plan writes each of them itself"
    assert request.engine_eager, "and counts no CUDA graphs or compilation for --enforce-eager"
    assert plan(request).engine_args["vllm"][-3:] == [
        "--max-num-batched-tokens=4096",
        "--block-size=32",
        "--enforce-eager",
    ]
    assert not to_plan_request(
        parse_spec(spec(runtime={"extraArgs": ["--enable-prefix-caching"]}))
    ).engine_eager


@pytest.mark.parametrize(
    ("field", "runtime", "model"),
    [
        ("spec.runtime.extraArgs[1]", {"extraArgs": ["--seed=1", "--api-key=a\x00b"]}, {}),
        ("spec.runtime.env[0].value", {"env": [{"name": "A", "value": "\x00"}]}, {}),
        ("spec.model.source", {}, {"source": "org/model\x00"}),
    ],
)
def test_a_nul_that_no_process_can_take_is_refused(
    field: str, runtime: dict[str, Any], model: dict[str, Any]
) -> None:
    """exec refuses an argument or variable with a NUL in it: the pod would never start."""
    parsed = parse_spec(spec(runtime=runtime, model={"name": "tiiuae/falcon-7b", **model}))
    with pytest.raises(SpecError, match="NUL character") as error:
        to_plan_request(parsed)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("argument", "refused"),
    [
        ("$(FLAG)", "$(FLAG)"),
        ("--gpu-$(REST)", "$(REST)"),
        ("-$(FLAG)=0.99", "$(FLAG)"),
        ("--served-model-name=$(NAME)", None),
        ("--served-model-name=$(A)$(B)", None),
        ("$$(FLAG)", None),
        ("$(unclosed", None),
        ("model-$(NAME)", None),
    ],
)
def test_a_variable_reference_may_be_a_value_but_never_part_of_an_option(
    argument: str, refused: str | None
) -> None:
    """The kubelet expands $(NAME) in arguments from the container's variables; where the value would
    become (part of) an option, the flag checks could not see it: `$(FLAG)` with FLAG=--gpu-memory-..."""
    runtime = {
        "extraArgs": ["--served-model-name", argument],
        "env": [{"name": "FLAG", "value": "--dtype=float32"}],
    }
    parsed = parse_spec(spec(runtime=runtime))
    if refused is None:
        assert argument in extra_arguments(parsed).passthrough and to_plan_request(parsed)
        return
    with pytest.raises(SpecError) as error:
        to_plan_request(parsed)
    assert (
        error.value.field == "spec.runtime.extraArgs[1]" and f"replaces {refused} with" in error.value.message
    )


def test_a_batch_limit_below_the_concurrency_is_refused() -> None:
    with pytest.raises(SpecError, match=r"batch limit of 50 cannot hold spec\.workload\.concurrency 100"):
        to_plan_request(parse_spec(spec(runtime={"extraArgs": ["--max-num-seqs", "50"]})))


@pytest.mark.parametrize(
    ("runtime", "field", "words"),
    [
        ({"env": [{"name": "1BAD", "value": "x"}]}, "spec.runtime.env[0].name", "not starting with a digit"),
        ({"env": [{"name": "A", "valueFrom": "secret"}]}, "spec.runtime.env[0].valueFrom", "valid dict"),
        ({"env": [{"name": "A", "value": "x"}, {"name": "A", "value": "y"}]}, "spec.runtime", "unique"),
        ({"env": [{"name": "A", "valueFrom": {}}]}, "spec.runtime.env[0].valueFrom", "exactly one"),
        ({"resources": {"requests": {"memory": "lots"}}}, "spec.runtime.resources.requests.memory",
         "quantity"),
        ({"resources": {"limits": "8"}}, "spec.runtime.resources.limits", "valid dict"),
        ({"resources": {"limits": {"nvidia.com/gpu": 2}}}, "spec.runtime.resources", "spec.gpu.count"),
        ({"resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "3500m"}}}, "spec.runtime.resources",
         "at most its limit"),
        ({"image": "vllm/vllm-openai:$(id)"}, "spec.runtime.image", "image reference"),
        ({"image": " vllm/vllm-openai:v0.11.0"}, "spec.runtime.image", "image reference"),
        ({"port": "8000"}, "spec.runtime.port", "valid integer"),
    ],
)  # fmt: skip
def test_container_fields_are_typed_as_the_pod_will_need_them(
    runtime: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec(runtime=runtime))
    assert error.value.field == field and words in error.value.message


def test_numbers_are_not_taken_from_strings_but_integral_floats_are_integers_as_on_the_api_server() -> None:
    with pytest.raises(SpecError, match="valid integer"):
        parse_spec(spec(workload={"maxSequenceLength": 1000, "concurrency": "100"}))
    assert (
        parse_spec(spec(workload={"maxSequenceLength": 1000, "concurrency": 100.0})).workload.concurrency
        == 100
    )
    with pytest.raises(SpecError):
        parse_spec(spec(workload={"maxSequenceLength": 1000, "concurrency": 100.5}))
    with pytest.raises(SpecError, match="valid number"):
        parse_spec(spec(gpu={"maxMemoryFraction": "0.9"}))


def test_a_long_bad_value_is_quoted_short() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec(runtime={"image": "x" * 65536 + "!"}))
    assert len(error.value.message) < 400


def test_a_digest_only_image_plans_with_the_release_it_says_it_assumed() -> None:
    digest = spec(runtime={"image": "vllm/vllm-openai@sha256:" + "ab" * 32})
    request = to_plan_request(parse_spec(digest))
    assert request.engine_version is None and request.engine_image == "vllm/vllm-openai@sha256:" + "ab" * 32
    result = plan(request)
    assert result.engine_release == "0.11.0"
    assert any("release not stated" in note for note in result.assumptions)
    # The official image has FlashInfer: that part of the install is known, not assumed
    assert not any("FlashInfer" in note for note in result.assumptions)


def test_no_image_means_the_default_one_and_its_tag() -> None:
    request = to_plan_request(parse_spec(spec(runtime={})))
    assert (request.engine_version, request.engine_image) == ("v0.11.0", "vllm/vllm-openai:v0.11.0")
