"""The validating webhook: refuse an LLMDeployment that cannot fit its GPUs, before it is stored."""

from __future__ import annotations

import time
from typing import Any

import kopf

from vramgate import metrics
from vramgate.decision import decide
from vramgate.spec import GROUP, PLURAL, VERSION

# HTTP 422 Unprocessable Entity: the request is well-formed, its content cannot be served.
REFUSAL_CODE = 422


@kopf.on.validate(
    GROUP,
    VERSION,
    PLURAL,
    id="validate-llmdeployment",
    operations=["CREATE", "UPDATE"],
    side_effects=False,  # the webhook only reads: `kubectl apply --dry-run=server` may call it
)
def validate_llmdeployment(
    body: kopf.Body,
    logger: kopf.Logger,
    old: kopf.Body | None = None,
    operation: str | None = None,
    **_: Any,
) -> None:
    """Size the spec; refuse with the decision's message (numbers and nearest fits) when it does not fit.

    Updates that leave the spec alone (labels, annotations, kopf's own bookkeeping) pass unchecked, so
    a stored resource that stopped fitting (a new catalog, a new engine profile) can still be managed.
    """
    if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
        return
    started = time.perf_counter()
    decision = decide(body)
    outcome = metrics.outcome(decision.allowed, decision.field)
    metrics.ADMISSION_SECONDS.labels(outcome=outcome).observe(time.perf_counter() - started)
    metrics.PLANS.labels(source="admission", outcome=outcome).inc()
    if not decision.allowed:
        metrics.REJECTIONS.labels(reason=outcome).inc()
        logger.info(decision.message)
        raise kopf.AdmissionError(decision.message, code=REFUSAL_CODE)
