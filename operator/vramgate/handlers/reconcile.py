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


def _write_status(api: client.ApiClient, metadata: Mapping[str, Any], new: dict[str, Any]) -> None:
    kube.apply_llmdeployment_status(api, metadata, new, field_manager=kube.FIELD_MANAGER)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_llmdeployment(
    body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Size, apply, report. Retries transient API errors; records permanent ones as phase Failed."""
    started = time.monotonic()
    api = api_client(memo)
    owner: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": dict(meta),
        "spec": body["spec"],
    }
    previous = body.get("status") or {}
    generation = meta.get("generation")
    decision = decide(owner)
    metrics.PLANS.labels(source="reconcile", outcome=metrics.outcome(decision.allowed, decision.field)).inc()
    try:
        if not decision.allowed:
            _write_status(
                api,
                meta,
                status.rejected_status(decision, previous=previous, generation=generation, now=now()),
            )
            if previous.get("observedGeneration") != generation or previous.get("phase") != "Rejected":
                kopf.warn(body, reason="Rejected", message=decision.message)
            return
        deployment = apply_generated(api, owner, decision)
        new_status = status.deployed_status(
            decision, deployment["metadata"]["name"], previous=previous, generation=generation, now=now()
        )
        _write_status(api, meta, new_status)
        if previous.get("observedGeneration") != generation or previous.get("phase") != "Deployed":
            kopf.info(body, reason="Deployed", message=decision.message)
    except kube.CALL_ERRORS as error:
        failure = kube.api_error("applying the Deployment, Service and status", error)
        if isinstance(failure, kopf.PermanentError):
            kopf.warn(body, reason="Failed", message=str(failure))
            try:
                _write_status(
                    api, meta, status.failed_status(str(failure), previous=previous, generation=generation)
                )
            except kube.CALL_ERRORS as status_error:
                logger.error(f"Could not record the failure in the status: {status_error}")
        raise failure from error
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
    ours re-applied is a no-op); carry its availability to the owner's Ready condition when it changes."""
    reference = _controller(body)
    if reference is None:
        return
    generation = body.get("metadata", {}).get("generation")
    stored: Mapping[str, Any] | None = None if type == "DELETED" else body
    drifted = stored is None or memo.get("applied_generation") != generation
    if not drifted and memo.get("readiness") == status.readiness(stored):
        return
    api = api_client(memo)
    namespace, name = body["metadata"]["namespace"], reference["name"]
    try:
        owner = kube.read_llmdeployment(api, namespace, name)
        if (
            owner is None
            or owner["metadata"]["uid"] != reference["uid"]
            or owner["metadata"].get("deletionTimestamp")
        ):
            return  # the owner is going: the garbage collector takes its objects too
        if drifted:
            decision = decide(owner)
            if decision.allowed:  # a Rejected spec keeps what runs, as it is
                stored = apply_generated(api, owner, decision)
                if stored["metadata"].get("generation") != generation or type == "DELETED":
                    logger.info(f"Put the Deployment of {namespace}/{name} back as planned.")
                    kopf.info(
                        kopf.Body(cast(kopf.RawBody, owner)),
                        reason="Repaired",
                        message="its Deployment was changed or deleted by hand; the plan is applied again",
                    )
            memo["applied_generation"] = (stored or {}).get("metadata", {}).get("generation")
        ready = status.ready_condition(
            stored,
            previous=owner.get("status") or {},
            generation=owner["metadata"].get("generation"),
            now=now(),
        )
        kube.apply_llmdeployment_status(
            api, owner["metadata"], {"conditions": [ready]}, field_manager=kube.READINESS_FIELD_MANAGER
        )
        memo["readiness"] = status.readiness(stored)
    except kube.CALL_ERRORS as error:
        raise kube.api_error(f"repairing the Deployment of {namespace}/{name}", error) from error
