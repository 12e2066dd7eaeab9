"""The admission decision: fits or refused, in numbers, with the field to fix when the spec is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from vramgate.decision import DecisionContext, decide
from vramgate.images import ImagePolicy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str, namespace: str = "team-a") -> dict[str, Any]:
    resource: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    resource["metadata"]["namespace"] = namespace
    return resource


def test_falcon_7b_on_an_a10g_fits_with_room_for_the_target_concurrency() -> None:
    decision = decide(load("falcon-7b-a10g.yaml"))

    assert decision.allowed and decision.field is None
    assert decision.plan is not None
    assert (decision.plan.gpu_type, decision.plan.gpu_count) == ("A10G", 1)
    assert decision.plan.max_batch >= 100
    assert decision.message.startswith("LLMDeployment team-a/falcon-7b fits: 1 x A10G at memory fraction ")


def test_llama_70b_on_one_l4_is_refused_with_needs_offers_and_nearest_fits() -> None:
    decision = decide(load("llama-3.1-70b-too-big.yaml"))

    assert not decision.allowed
    assert decision.field is None  # the spec is valid, only too big
    assert decision.plan is not None and not decision.plan.fits
    message = decision.message
    assert message.startswith("LLMDeployment team-a/llama-3-1-70b refused: ")
    assert "does not fit 1 x L4" in message
    assert "KV cache" in message and "for 32 x 8192 tokens" in message
    assert "L4 offers" in message and "at memory fraction 0.95 of 21.99 GiB" in message
    assert "Nearest changes that fit: " in message and "(set spec.gpu." in message


def test_every_example_but_the_too_big_one_fits() -> None:
    verdicts = {path.name: decide(load(path.name)).allowed for path in EXAMPLES.glob("*.yaml")}
    assert verdicts.pop("llama-3.1-70b-too-big.yaml") is False
    assert all(verdicts.values()), verdicts


def test_a_gpu_count_that_cannot_split_the_heads_is_refused_at_spec_gpu_count() -> None:
    resource = load("falcon-7b-a10g.yaml")
    resource["spec"]["gpu"]["count"] = 3

    decision = decide(resource)

    assert (decision.allowed, decision.field, decision.plan) == (False, "spec.gpu.count", None)
    assert decision.message.startswith(
        "LLMDeployment team-a/falcon-7b refused: spec.gpu.count: 3 GPUs cannot split"
    )


def test_a_sequence_longer_than_the_context_window_is_refused_at_max_sequence_length() -> None:
    resource = load("falcon-7b-a10g.yaml")
    resource["spec"]["workload"]["maxSequenceLength"] = 1_000_000

    assert decide(resource).field == "spec.workload.maxSequenceLength"


def test_a_malformed_resource_is_refused_not_raised() -> None:
    decision = decide({"kind": "LLMDeployment", "metadata": {"name": "x"}, "spec": "nonsense"})
    assert (decision.allowed, decision.field) == (False, "spec")
    assert decision.message.startswith("LLMDeployment x refused: spec: ")


def test_extra_args_overriding_the_plan_are_refused() -> None:
    resource = load("falcon-7b-a10g.yaml")
    resource["spec"]["runtime"]["extraArgs"] = ["--gpu-memory-utilization=0.99"]

    assert decide(resource).field == "spec.runtime.extraArgs[0]"


def test_an_image_outside_the_policy_is_refused_naming_the_policy() -> None:
    resource = load("falcon-7b-a10g.yaml")
    resource["spec"]["runtime"] = {"image": "attacker.example.com/vllm-openai:v0.11.0"}
    decision = decide(resource)
    assert not decision.allowed and decision.field == "spec.runtime.image"
    assert "image policy" in decision.message and "docker.io/vllm/vllm-openai" in decision.message

    own_registry = DecisionContext(image_policy=ImagePolicy.of(["attacker.example.com/"]))
    assert decide(resource, own_registry).allowed
    assert not decide(load("falcon-7b-a10g.yaml"), own_registry).allowed, "the default image is not listed"


def test_a_name_that_cannot_name_a_service_is_refused() -> None:
    for name in ("7b-falcon", "falcon.7b", "f" * 64, "Falcon"):
        resource = load("falcon-7b-a10g.yaml")
        resource["metadata"]["name"] = name
        decision = decide(resource)
        assert (decision.allowed, decision.field) == (False, "metadata.name"), name
        assert "DNS-1035" in decision.message


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ([1], "metadata"),
        ("falcon", "metadata"),
        ({"name": "falcon", "annotations": ["a"]}, "metadata.annotations"),
        ({"name": "falcon", "labels": {"team": 5}}, "metadata.labels[team]"),
        ({"name": "falcon", "namespace": ["team-a"]}, "metadata.namespace"),
        ({"generateName": {"a": 1}}, "metadata.generateName"),
    ],
)
def test_metadata_that_is_not_what_the_api_server_stores_is_refused_with_its_path(
    metadata: object, field: str
) -> None:
    """A file (`vramgate check`) or a hand-made review can hold any shape; the verdict names it."""
    resource = {**load("falcon-7b-a10g.yaml"), "metadata": metadata}
    decision = decide(resource)
    assert not decision.allowed and decision.field == field
    assert f"refused: {field}: must be" in decision.message


def test_a_name_with_control_characters_is_quoted_in_the_verdict() -> None:
    """`vramgate check` prints the verdict to a terminal: an escape sequence in a file's name must not
    reach it raw."""
    resource = load("falcon-7b-a10g.yaml", namespace="team\ra")
    resource["metadata"]["name"] = "x\x1b[2Jy"
    message = decide(resource).message
    assert message.startswith("LLMDeployment 'team\\ra'/'x\\x1b[2Jy' refused: metadata.name")
    assert "\x1b" not in message and "\r" not in message
