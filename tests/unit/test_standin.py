"""The stand-in inference server accepts exactly what the operator generates, as the real engines would."""

from __future__ import annotations

import pytest

from standin.server import ENGINES, kv_capacity, parse
from vramgate.decision import decide
from vramgate.manifests import deployment

FALCON = {
    "model": {"name": "tiiuae/falcon-7b", "precision": "fp16"},
    "workload": {"maxSequenceLength": 1000, "concurrency": 100},
    "gpu": {"type": "A10G"},
}


def generated_args(engine: str, count: int = 1) -> list[str]:
    spec = {**FALCON, "gpu": {"type": "A10G", "count": count}, "runtime": {"engine": engine}}
    owner = {
        "apiVersion": "vramgate.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "m", "namespace": "n", "uid": "u"},
        "spec": spec,
    }
    decision = decide(owner)
    assert decision.allowed and decision.spec and decision.plan, decision.message
    args: list[str] = deployment(owner, decision.spec, decision.plan)["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    return args


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_flag_the_operator_generates_is_one_the_engine_knows(engine: str) -> None:
    parsed = parse(ENGINES[engine], generated_args(engine))
    assert parsed  # parse exits on an unknown flag


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_unknown_flags_are_refused(engine: str) -> None:
    with pytest.raises(SystemExit) as refused:
        parse(ENGINES[engine], [*generated_args(engine), "--not-a-real-flag=1"])
    assert refused.value.code == 2


def test_reported_capacity_follows_the_arguments_and_the_offset() -> None:
    vllm = ENGINES["vllm"]
    args = parse(vllm, ["--model=m", "--max-num-seqs=117", "--max-model-len=1000"])
    assert kv_capacity(vllm, args, 0.0) == (7313, 16)  # 117 x 1000 tokens, rounded up to 16-token blocks
    assert kv_capacity(vllm, args, 0.3) == (5119, 16)
