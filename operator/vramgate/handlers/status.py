"""The LLMDeployment status block, computed from a decision and the Deployment (pure functions).

Two writers share the status, each server-side applying its own part: the reconciler writes phase,
message, plan and the Planned condition, with the Ready condition as it stands (one status write per
change); the Deployment watch writes Ready alone when the Deployment's availability changes. Conditions
keep their lastTransitionTime while their status holds, and nothing here reads the clock (`now` comes
in), so the same inputs give the same status, and `unchanged` tells when there is nothing to write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vramgate.decision import Decision
from vramgate.sizing import Plan
from vramgate.spec import Phase, PlacementStatus, PlanSummary

PLANNED = "Planned"
READY = "Ready"
SCHEDULABLE = "Schedulable"
MEMORY_CHECK_SKIPPED = "MemoryCheckSkipped"


def condition(
    previous: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> dict[str, Any]:
    """A condition; its transition time is the previous one's while the status is unchanged."""
    status_text = "True" if status else "False"
    earlier = next((c for c in previous if c.get("type") == type_), None)
    unchanged = earlier is not None and earlier.get("status") == status_text
    return {
        "type": type_,
        "status": status_text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": earlier["lastTransitionTime"] if unchanged and earlier else now,
        "observedGeneration": generation,
    }


def readiness(deployment: Mapping[str, Any] | None) -> tuple[bool, str, str]:
    """(ready, reason, message) of a Deployment: all its replicas of the current spec available."""
    if deployment is None:
        return False, "NoDeployment", "the Deployment does not exist (yet)"
    wanted = int((deployment.get("spec") or {}).get("replicas", 1))
    status = deployment.get("status") or {}
    available = int(status.get("availableReplicas") or 0)
    current = status.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get("generation", 0)
    if wanted == 0:
        return True, "ScaledToZero", "replicas is 0"
    if current and available >= wanted:
        return True, "Available", f"{available}/{wanted} replicas available"
    return False, "Unavailable", f"{available}/{wanted} replicas available"


def plan_summary(plan: Plan) -> dict[str, Any]:
    summary = PlanSummary(
        model=plan.model,
        engine=plan.engine,
        engine_release=plan.engine_release,
        assumptions=plan.assumptions,
        gpu_type=plan.gpu_type,
        gpu_product=plan.gpu_product,
        gpu_count=plan.gpu_count,
        memory_fraction=plan.memory_fraction,
        max_batch=plan.max_batch,
        max_model_len=plan.max_model_len,
        weights_bytes_per_gpu=plan.weights_bytes_per_gpu,
        kv_cache_bytes_per_gpu=plan.kv_cache_bytes_per_gpu,
        overhead_bytes_per_gpu=plan.overhead_bytes_per_gpu,
        required_bytes_per_gpu=plan.required_bytes_per_gpu,
        gpu_memory_bytes=plan.gpu_memory_bytes,
        kv_capacity_tokens=plan.kv_capacity_tokens,
    )
    return summary.model_dump(mode="json", by_alias=True)


def placement_status(decision: Decision) -> dict[str, Any] | None:
    if decision.placement is None:
        return None
    placement = PlacementStatus.model_validate(decision.placement.as_dict(decision.plan))
    return placement.model_dump(mode="json", by_alias=True, exclude_none=True)


def schedulable_condition(
    holds: bool, message: str, *, previous: Mapping[str, Any], generation: int | None, now: str
) -> dict[str, Any]:
    """Whether the cluster still offers the placement in force (written by the placement check)."""
    reason = "Placed" if holds else "NotPlaceable"
    return condition(
        previous.get("conditions") or [], SCHEDULABLE, holds, reason, message, generation=generation, now=now
    )


def _carried(previous: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """What a status write keeps from the last one: server-side apply drops fields a manager omits."""
    return {key: previous[key] for key in keys if key in previous}


def _previous_condition(previous: Mapping[str, Any], type_: str) -> list[dict[str, Any]]:
    return [dict(c) for c in previous.get("conditions") or [] if c.get("type") == type_]


def _planned_condition(previous: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _previous_condition(previous, PLANNED)


def unchanged(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing `new` would change nothing in the stored status `previous` (conditions compare
    by type: other writers' conditions do not count)."""
    stored = {c.get("type"): c for c in previous.get("conditions") or []}
    return all(
        all(stored.get(c["type"]) == c for c in value) if key == "conditions" else previous.get(key) == value
        for key, value in new.items()
    )


def deployed_status(
    decision: Decision,
    deployment: Mapping[str, Any],
    *,
    previous: Mapping[str, Any],
    generation: int | None,
    now: str,
) -> dict[str, Any]:
    """Status after the Deployment (as stored) and Service were applied for a fitting plan; its Ready
    condition goes in the same write, so a new resource costs one status write, not two."""
    assert decision.plan is not None, "only a sized decision is deployed"
    planned = condition(
        _planned_condition(previous), PLANNED, True, "Fits", decision.message, generation=generation, now=now
    )
    conditions = [planned, ready_condition(deployment, previous=previous, generation=generation, now=now)]
    if decision.memory_check_skipped is not None:  # admitted by annotation: the numbers it overrode
        earlier = [c for c in previous.get("conditions") or [] if c.get("type") == MEMORY_CHECK_SKIPPED]
        conditions.append(
            condition(
                earlier,
                MEMORY_CHECK_SKIPPED,
                True,
                "Annotation",
                decision.memory_check_skipped,
                generation=generation,
                now=now,
            )
        )
    deployed: dict[str, Any] = {
        "phase": Phase.DEPLOYED.value,
        "message": decision.message,
        "observedGeneration": generation,
        "plan": plan_summary(decision.plan),
        "deployment": deployment["metadata"]["name"],
        "conditions": conditions,
    }
    placement = placement_status(decision)
    if placement is not None:
        deployed["placement"] = placement
    return deployed


def rejected_status(
    decision: Decision, *, previous: Mapping[str, Any], generation: int | None, now: str
) -> dict[str, Any]:
    """Status of a stored spec that does not fit (or no longer does): the plan and Deployment in force,
    if any, stay as they are; the phase, message and Planned condition say why."""
    reason = "InvalidSpec" if decision.field is not None else "DoesNotFit"
    planned = condition(
        _planned_condition(previous), PLANNED, False, reason, decision.message, generation=generation, now=now
    )
    return {
        **_carried(previous, "plan", "deployment", "placement"),
        "phase": Phase.REJECTED.value,
        "message": decision.message,
        "observedGeneration": generation,
        "conditions": [planned, *_previous_condition(previous, READY)],
    }


def failed_status(message: str, *, previous: Mapping[str, Any], generation: int | None) -> dict[str, Any]:
    """Status after an error retrying cannot fix (the API server refused the generated objects)."""
    return {
        **_carried(previous, "plan", "deployment", "placement"),
        "phase": Phase.FAILED.value,
        "message": message,
        "observedGeneration": generation,
        "conditions": [*_planned_condition(previous), *_previous_condition(previous, READY)],
    }


def ready_condition(
    deployment: Mapping[str, Any] | None, *, previous: Mapping[str, Any], generation: int | None, now: str
) -> dict[str, Any]:
    """The Ready condition for the Deployment's availability."""
    ready, reason, message = readiness(deployment)
    return condition(
        previous.get("conditions") or [], READY, ready, reason, message, generation=generation, now=now
    )
