"""Keep each LLMDeployment's Deployment and Service as its plan says, and its status truthful.

The LLMDeployment handlers (create, spec update, operator resume) size the spec with `decide` and apply
the generated objects; a spec that does not fit (stored before a catalog change, or with the webhook
off) becomes phase Rejected and whatever already runs is left alone. A watch on the generated
Deployments puts back one edited or deleted by hand, and carries its availability to the Ready condition.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client

from vramgate import manifests, metrics
from vramgate.decision import Decision, decide
from vramgate.handlers import kube, status
from vramgate.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION

API_CLIENT = "api"  # key of the shared ApiClient in kopf's memo, set at start-up


def api_client(memo: kopf.Memo) -> client.ApiClient:
    api = memo.get(API_CLIENT)
    if not isinstance(api, client.ApiClient):
        raise kopf.PermanentError("the operator's API client was not set up at start-up")
    return api


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def apply_generated(api: client.ApiClient, owner: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """Apply the Service and Deployment of a fitting decision; returns the Deployment as stored."""
    assert decision.spec is not None and decision.plan is not None, "only a fitting decision is applied"
    kube.apply(api, manifests.service(owner, decision.spec))
    return kube.apply(api, manifests.deployment(owner, decision.spec, decision.plan))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_llmdeployment(
    body: kopf.Body, meta: kopf.Meta, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Size, apply, report. Retries transient API errors; records permanent ones as phase Failed."""
    started = time.monotonic()
    owner: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": dict(meta),
        "spec": body["spec"],
    }
    previous = body.get("status") or {}
    generation = meta.get("generation")
    decision = decide(owner)
    outcome = metrics.outcome(decision.allowed, decision.field)
    metrics.PLANS.labels(source="reconcile", outcome=outcome).inc()
    try:
        if not decision.allowed:
            patch["status"] = status.rejected_status(
                decision, previous=previous, generation=generation, now=now()
            )
            kopf.warn(body, reason="Rejected", message=decision.message)
            return
        try:
            deployment = apply_generated(api_client(memo), owner, decision)
        except kube.CALL_ERRORS as error:
            failure = kube.api_error("applying the Deployment and Service", error)
            if isinstance(failure, kopf.PermanentError):
                patch["status"] = status.failed_status(str(failure), generation=generation)
                kopf.warn(body, reason="Failed", message=str(failure))
            raise failure from error
        patch["status"] = status.deployed_status(
            decision, deployment, previous=previous, generation=generation, now=now()
        )
        if previous.get("observedGeneration") != generation or previous.get("phase") != "Deployed":
            kopf.info(body, reason="Deployed", message=decision.message)
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)


def _controller(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The LLMDeployment owner reference marked as controller, if any."""
    for reference in (body.get("metadata") or {}).get("ownerReferences") or []:
        if (
            reference.get("controller")
            and reference.get("kind") == KIND
            and reference.get("apiVersion") == API_VERSION
        ):
            return reference  # type: ignore[no-any-return]
    return None


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": manifests.MANAGED_BY})
def watch_generated_deployment(
    type: str | None, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Re-apply the owner's plan when its Deployment is deleted or its spec changes (a new generation:
    ours re-applied is a no-op); copy its availability to the owner's Ready condition when it changes."""
    reference = _controller(body)
    if reference is None:
        return
    generation = body.get("metadata", {}).get("generation")
    ready = status.readiness(body) if type != "DELETED" else status.readiness(None)
    drifted = type == "DELETED" or memo.get("applied_generation") != generation
    if not drifted and memo.get("ready") == ready:
        return
    api = api_client(memo)
    namespace = body["metadata"]["namespace"]
    try:
        owner = kube.read_llmdeployment(api, namespace, reference["name"])
        if (
            owner is None
            or owner["metadata"]["uid"] != reference["uid"]
            or owner["metadata"].get("deletionTimestamp")
        ):
            return  # the owner is going: the garbage collector takes its objects too
        stored: Mapping[str, Any] | None = body if type != "DELETED" else None
        if drifted:
            decision = decide(owner)
            if decision.allowed:  # a Rejected spec keeps what runs, as it is
                stored = apply_generated(api, owner, decision)
                if stored["metadata"].get("generation") != generation or type == "DELETED":
                    logger.info(f"Put back the Deployment of {namespace}/{reference['name']} as planned.")
                    kopf.info(
                        kopf.Body(cast(kopf.RawBody, owner)),
                        reason="Repaired",
                        message="the Deployment was changed or deleted by hand; reapplied the plan",
                    )
            memo["applied_generation"] = (stored or {}).get("metadata", {}).get("generation")
        ready = status.readiness(stored)
        _update_ready_condition(api, owner, ready)
        memo["ready"] = ready
    except kube.CALL_ERRORS as error:
        raise kube.api_error(f"repairing the Deployment of {namespace}/{reference['name']}", error) from error


def _update_ready_condition(
    api: client.ApiClient, owner: Mapping[str, Any], ready: tuple[bool, str, str]
) -> None:
    """Patch the owner's Ready condition, only when it differs (status writes wake every watcher)."""
    previous = (owner.get("status") or {}).get("conditions") or []
    is_ready, reason, message = ready
    new = status.condition(
        previous,
        status.READY,
        is_ready,
        reason,
        message,
        generation=owner["metadata"].get("generation"),
        now=now(),
    )
    if any(
        c.get("type") == status.READY and {**c, "lastTransitionTime": ""} == {**new, "lastTransitionTime": ""}
        for c in previous
    ):
        return
    metadata = owner["metadata"]
    kube.patch_llmdeployment_status(
        api, metadata["namespace"], metadata["name"], {"conditions": status.with_condition(previous, new)}
    )
