"""The admission decision: does this LLMDeployment fit its GPUs, and if not, what would?

One pure function, `decide`, shared by the validating webhook, the reconciler and `vramgate check`, so
a person gets the same verdict, in the same words, wherever they ask. It plans once; its message stands
alone (it names the resource) and speaks in numbers: what the spec needs per GPU, what the GPU offers at
the allowed memory fraction, and the nearest changes that would fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vramgate.sizing import Plan, SizingError, Suggestion, plan
from vramgate.sizing.units import format_gib
from vramgate.spec import (
    LLMDeploymentSpec,
    SpecError,
    check_extra_args,
    parse_spec,
    sizing_error_to_spec_error,
    to_plan_request,
)


@dataclass(frozen=True)
class Decision:
    """The verdict on one resource. `field` is the path to fix when the spec itself is wrong (not when
    it is merely too big); `plan` is there whenever the spec could be sized, fitting or not; `warnings`
    are what the user should hear even when it is allowed (the webhook returns them to kubectl)."""

    allowed: bool
    message: str
    field: str | None = None
    plan: Plan | None = None
    spec: LLMDeploymentSpec | None = None
    warnings: tuple[str, ...] = ()


def resource_name(resource: Mapping[str, Any]) -> str:
    """`namespace/name` as kubectl users say it (just the name outside a namespace)."""
    metadata = resource.get("metadata") or {}
    name = metadata.get("name") or f"{metadata.get('generateName', '')}<generated>"
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def decide(resource: Mapping[str, Any]) -> Decision:
    """Validate and size an LLMDeployment (a dict as the API server or a YAML file holds it)."""
    subject = f"{resource.get('kind') or 'LLMDeployment'} {resource_name(resource)}"
    try:
        spec = parse_spec(resource.get("spec"))
        sized = plan(to_plan_request(spec))
        check_extra_args(spec, sized.engine_args[spec.runtime.engine.value])
    except SizingError as error:
        return _invalid(subject, sizing_error_to_spec_error(error))
    except SpecError as error:
        return _invalid(subject, error)
    if not sized.fits:
        return Decision(False, f"{subject} refused: {_shortfall(sized)}", plan=sized, spec=spec)
    return Decision(True, f"{subject} fits: {_summary(sized)}", plan=sized, spec=spec)


def _invalid(subject: str, error: SpecError) -> Decision:
    return Decision(False, f"{subject} refused: {error.field}: {error.message}", field=error.field)


def _gpus(sized: Plan) -> str:
    return f"{sized.gpu_count} x {sized.gpu_type}"


def _summary(sized: Plan) -> str:
    return (
        f"{_gpus(sized)} at memory fraction {sized.memory_fraction:.2f}, max batch {sized.max_batch} "
        f"(target {sized.concurrency} x {sized.max_model_len} tokens); needs "
        f"{format_gib(sized.required_bytes_per_gpu)} per GPU "
        f"(weights {format_gib(sized.weights_bytes_per_gpu)} + "
        f"KV cache {format_gib(sized.kv_cache_bytes_per_gpu)} + overhead "
        f"{format_gib(sized.overhead_bytes_per_gpu)}) of {format_gib(sized.gpu_memory_bytes)}"
    )


def _shortfall(sized: Plan) -> str:
    """The planner's reason in numbers, then each nearest change with the field it sets."""
    reasons = "; ".join(sized.reasons)
    text = f"{sized.model} ({sized.weights_format}) does not fit {_gpus(sized)}: {reasons}."
    if not sized.suggestions:
        return text + " No single change of workload, precision or GPU makes it fit."
    changes = "; ".join(f"{suggestion.text} (set {_fields(suggestion)})" for suggestion in sized.suggestions)
    return f"{text} Nearest changes that fit: {changes}."


def _fields(suggestion: Suggestion) -> str:
    return ", ".join(f"spec.{path}: {value}" for path, value in suggestion.changes.items())
