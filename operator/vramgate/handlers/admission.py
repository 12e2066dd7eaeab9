"""The validating webhook's answer: refuse an LLMDeployment that cannot fit its GPUs, before it is stored.

A pure function from an AdmissionReview to its response, so the server (`webhook`) can run it in an
executor of its own: admission never queues behind reconciliation, and every replica (the leader and
the standbys alike) answers it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from vramgate import metrics
from vramgate.decision import SKIP_MEMORY_CHECK_ANNOTATION, decide
from vramgate.handlers.inventory import decision_context

WEBHOOK_NAME = "validate-llmdeployment.vramgate.dev"
WEBHOOK_PATH = "/validate-llmdeployment"
ADMISSION_API_VERSION = "admission.k8s.io/v1"
# HTTP 422 Unprocessable Entity: the request is well-formed, its content cannot be served.
REFUSAL_CODE = 422


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


def review(admission_review: Mapping[str, Any]) -> dict[str, Any]:
    """The AdmissionReview answering `admission_review`: allowed, or refused with the decision's message
    (numbers and nearest fits); the decision's warnings go back as AdmissionReview warnings.

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


def _judged(resource: Mapping[str, Any]) -> tuple[object, object]:
    """What admission judges: the spec, and the escape-hatch annotation."""
    metadata = resource.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    skip = annotations.get(SKIP_MEMORY_CHECK_ANNOTATION) if isinstance(annotations, Mapping) else None
    return resource.get("spec"), skip
