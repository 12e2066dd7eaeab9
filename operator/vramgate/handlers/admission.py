"""The validating webhook's answer: refuse an LLMDeployment that cannot fit its GPUs, before it is stored.

A pure function from an AdmissionReview to its response, so the server (`webhook`) can run it in an
executor of its own: admission never queues behind reconciliation, and every replica (the leader and
the standbys alike) answers it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from vramgate import manifests, metrics
from vramgate.decision import SKIP_MEMORY_CHECK_ANNOTATION, Decision, decide
from vramgate.handlers import kube
from vramgate.handlers.inventory import decision_context

WEBHOOK_NAME = "validate-llmdeployment.vramgate.dev"
WEBHOOK_PATH = "/validate-llmdeployment"
ADMISSION_API_VERSION = "admission.k8s.io/v1"
# HTTP 422 Unprocessable Entity: the request is well-formed, its content cannot be served.
REFUSAL_CODE = 422


# Reads the metadata of an object of a kind ("Deployment", "Service", "LeaderWorkerSet") in a namespace by
# name; None when there is none (`kube.read_metadata`, bound to an API client).
Lookup = Callable[[str, str, str], Mapping[str, Any] | None]


class MalformedReviewError(ValueError):
    """A body that is not an AdmissionReview with a request (the caller is not an API server)."""


def parse_review(body: bytes) -> Mapping[str, Any]:
    """The JSON object a request body holds; MalformedReviewError for anything else (not JSON, not an
    object, or nested past the parser's recursion limit), so the server answers 400, never 500."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise MalformedReviewError(f"not a JSON AdmissionReview: {str(error)[:200]}") from None
    if not isinstance(parsed, Mapping):
        raise MalformedReviewError(f"expected an AdmissionReview object, got a JSON {type(parsed).__name__}")
    return parsed


def review(admission_review: Mapping[str, Any], existing: Lookup | None = None) -> dict[str, Any]:
    """The AdmissionReview answering `admission_review`: allowed, or refused with the decision's message
    (numbers and nearest fits); the decision's warnings go back as AdmissionReview warnings. A creation
    whose generated objects' name is taken by someone else's object (looked up with `existing`) is
    refused too: the reconciler would never apply over it.

    Updates that leave the spec and the skip-memory-check annotation alone (labels, other annotations, the
    operator's bookkeeping) pass unchecked, so a stored resource that stopped fitting (a new catalog, a
    new engine profile, a node type gone) can still be managed.
    """
    request = admission_review.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise MalformedReviewError("expected an AdmissionReview with request.uid")
    resource = request.get("object")
    if not isinstance(resource, Mapping):
        raise MalformedReviewError("expected an AdmissionReview with request.object")
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    old = request.get("oldObject")
    unchanged_spec = (
        request.get("operation") == "UPDATE"
        and isinstance(old, Mapping)
        and _judged(old) == _judged(resource)
    )
    if not unchanged_spec:
        started = time.perf_counter()
        decision = decide(resource, decision_context())
        if request.get("operation") == "CREATE" and decision.allowed and existing is not None:
            decision = _name_checked(decision, resource, request, existing)
        outcome = metrics.outcome(decision.allowed, decision.field)
        metrics.ADMISSION_SECONDS.labels(outcome=outcome).observe(time.perf_counter() - started)
        metrics.PLANS.labels(source="admission", outcome=outcome).inc()
        if not decision.allowed:
            metrics.REJECTIONS.labels(reason=outcome).inc()
            response["allowed"] = False
            response["status"] = {"code": REFUSAL_CODE, "message": decision.message}
        if decision.warnings:
            response["warnings"] = list(decision.warnings)
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def _name_checked(
    decision: Decision, resource: Mapping[str, Any], request: Mapping[str, Any], existing: Lookup
) -> Decision:
    """`decision`, refused when an object the resource would generate is someone else's; admitted with
    a warning when that cannot be read (the reconciler checks again before it applies anything)."""
    metadata = resource.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    namespace, name, uid = (
        str(request.get("namespace") or metadata.get("namespace") or ""),
        str(metadata.get("name") or ""),
        metadata.get("uid"),
    )
    for kind in (manifests.workload_kind(decision.placement), "Service"):
        held = manifests.workload_name(name, kind)
        try:
            found = existing(kind, namespace, held)
        except kube.CALL_ERRORS as error:
            warning = (
                f"could not check that no {kind} {namespace}/{held} is in the way "
                f"({kube.api_error('reading it', error)}); the operator checks it before creating one"
            )
            return dataclasses.replace(decision, warnings=(*decision.warnings, warning))
        if (
            found is not None
            and manifests.claim(found, name, uid if isinstance(uid, str) else None) is manifests.Claim.OTHER
        ):
            return dataclasses.replace(
                decision,
                allowed=False,
                field="metadata.name",
                message=manifests.taken_message(found, kind, namespace, name),
            )
    return decision


def _judged(resource: Mapping[str, Any]) -> tuple[object, object]:
    """What admission judges: the spec, and the escape-hatch annotation."""
    metadata = resource.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    skip = annotations.get(SKIP_MEMORY_CHECK_ANNOTATION) if isinstance(annotations, Mapping) else None
    return resource.get("spec"), skip
