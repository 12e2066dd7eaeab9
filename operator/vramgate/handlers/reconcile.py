"""Keep each LLMDeployment's Deployment and Service as its plan says, and its status truthful.

The LLMDeployment handlers (a generation not yet observed, and every resource once when the operator
starts) size the spec with `decide` and apply the generated objects; a spec that does not fit (stored
before a catalog change, or with the webhook off) becomes phase Rejected and whatever already runs is
left alone. A watch on the generated Deployments puts back one edited or deleted by hand, and carries
its availability to the Ready condition.

Every write is decided against the live objects (`live`, listed at start and kept by the watches): a
generated object is applied only when `manifests.is_current` says it differs, the status only when it
would change. One change costs one apply per object; a restart with nothing changed writes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client

from vramgate import manifests, metrics
from vramgate.decision import Decision, DecisionContext, decide
from vramgate.handlers import capacity, kube, live, status
from vramgate.handlers.inventory import decision_context, observe_event
from vramgate.placement import PlacementMode, placement_holds
from vramgate.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION

API_CLIENT = "api"  # key of the shared ApiClient in kopf's memo, set at start-up
CAPACITY_THRESHOLD = "capacity_mismatch_threshold"  # key of the setting in kopf's memo


def api_client(memo: kopf.Memo) -> client.ApiClient:
    api = memo.get(API_CLIENT)
    if not isinstance(api, client.ApiClient):
        raise kopf.PermanentError("the operator's API client was not set up at start-up")
    return api


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


GENERATED_LABELS = {"app.kubernetes.io/managed-by": manifests.MANAGED_BY}
# Transient API errors (conflicts, throttling, server errors) are retried this many times, every
# kube.RETRY_DELAY_SECONDS; then the status says Failed with the last error, until the spec changes.
MAX_ATTEMPTS = 10
DESIRED_CACHE_SIZE = 2048  # plans kept for the Deployment watch; a miss re-plans, nothing worse


@kopf.on.event(group="", version="v1", plural="services", labels=GENERATED_LABELS)
async def watch_generated_service(type: str | None, body: kopf.Body, **_: Any) -> None:
    """Keep `live.SERVICES` current (in the event loop: no executor round trip for a dictionary)."""
    live.SERVICES.observe(type, body)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def watch_llmdeployment(type: str | None, body: kopf.Body, **_: Any) -> None:
    """Keep `live.LLMDEPLOYMENTS` current; kopf runs this before the same event's reconcile."""
    live.LLMDEPLOYMENTS.observe(type, body)


@dataclasses.dataclass(frozen=True)
class Desired:
    """A decision and, when it fits, the objects it generates."""

    decision: Decision
    service: dict[str, Any] | None = None
    deployment: dict[str, Any] | None = None


class _DesiredCache:
    """Plans by owner uid and generation (a spec change is a new generation), least recently used
    first out: the watch sees several events per Deployment and should not re-plan for each."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int], Desired] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(owner: Mapping[str, Any]) -> tuple[str, int]:
        return str(owner["metadata"]["uid"]), int(owner["metadata"].get("generation") or 0)

    def forget(self, owner: Mapping[str, Any]) -> None:
        """Drop the plan of this generation: the cluster changed under it (a re-plan by preference)."""
        with self._lock:
            self._items.pop(self._key(owner), None)

    def get(self, owner: Mapping[str, Any], context: DecisionContext) -> Desired:
        key = self._key(owner)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        found = _desired(owner, context)
        with self._lock:
            self._items[key] = found
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return found


def _desired(owner: Mapping[str, Any], context: DecisionContext) -> Desired:
    decision = decide(owner, context)
    if not decision.allowed or decision.spec is None or decision.plan is None:
        return Desired(decision)
    placement = decision.placement
    if placement is not None and manifests.workload_kind(placement) == "LeaderWorkerSet":
        service = manifests.service(owner, decision.spec, leader_only=True)
        deployment = manifests.leader_worker_set(owner, decision.spec, decision.plan, placement)
    else:
        service = manifests.service(owner, decision.spec)
        deployment = manifests.deployment(owner, decision.spec, decision.plan, placement)
    # The status needs the plan's own figures, not the table of every other option.
    kept = dataclasses.replace(decision.plan, alternatives=[], suggestions=[])
    return Desired(dataclasses.replace(decision, plan=kept), service, deployment)


DESIRED = _DesiredCache(DESIRED_CACHE_SIZE)


def sync(
    api: client.ApiClient, manifest: dict[str, Any], objects: live.LiveObjects | None
) -> Mapping[str, Any]:
    """Apply `manifest` unless the live object already holds it; returns the object as it stands, and
    records what an apply answered, so a watch event older than it is known for what it is. An object
    of that name that is not the owner's is never applied over (`manifests.claim`)."""
    metadata = manifest["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    found = objects.get(namespace, name) if objects is not None else None
    if found is not None:
        _refuse_takeover(found, manifest)
        if manifests.is_current(found, manifest):
            return found
    # The caches hold generated objects only: one made by someone else may be there.
    elif (held := kube.read_metadata(api, manifest["kind"], namespace, name)) is not None:
        _refuse_takeover(held, manifest)
    stored = kube.apply(api, manifest)
    if objects is not None:
        objects.record(stored)
    return stored


def _refuse_takeover(found: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
    """Raise unless `found` is the owner's own: a retry while an earlier LLMDeployment's object of
    the same name awaits the garbage collector, a permanent error for anyone else's."""
    metadata = manifest["metadata"]
    owner = manifests.controller(manifest) or {}
    claim = manifests.claim(found, owner.get("name", ""), owner.get("uid"))
    if claim is manifests.Claim.EARLIER:
        raise kopf.TemporaryError(
            f"{manifest['kind']} {metadata['namespace']}/{metadata['name']} belongs to an earlier "
            f"LLMDeployment of this name; waiting for the garbage collector to delete it",
            delay=kube.RETRY_DELAY_SECONDS,
        )
    if claim is manifests.Claim.OTHER:
        raise kopf.PermanentError(
            manifests.taken_message(found, manifest["kind"], metadata["namespace"], owner.get("name", ""))
        )


def _delete_if_owned(api: client.ApiClient, kind: str, owner: Mapping[str, Any]) -> None:
    """Delete the owner's `kind` of workload left from a placement over fewer or more nodes; an object
    of that name that is not the owner's is left alone."""
    namespace, name, uid = owner["metadata"]["namespace"], owner["metadata"]["name"], owner["metadata"]["uid"]
    workload = manifests.workload_name(name, kind)
    found = kube.read_metadata(api, kind, namespace, workload)
    if found is not None and manifests.claim(found, name, uid) is manifests.Claim.OURS:
        kube.delete(api, kind, namespace, workload)


def _owner(meta: kopf.Meta, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": dict(meta), "spec": dict(spec)}


def _write_status(
    api: client.ApiClient, metadata: Mapping[str, Any], previous: Mapping[str, Any], new: dict[str, Any]
) -> None:
    if not status.unchanged(previous, new):
        kube.apply_llmdeployment_status(api, metadata, new, field_manager=kube.FIELD_MANAGER)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
def reconcile_llmdeployment(
    body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, retry: int, **_: Any
) -> None:
    """A spec change arrives as a creation: see `persistence.ObservedGenerationDiffBase`."""
    reconcile(body, memo, logger, attempt=retry + 1)


def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, *, attempt: int = 1) -> None:
    """Size, apply what differs, report. Retries transient API errors a bounded number of times; records
    permanent ones, and transient ones that outlast the retries, as phase Failed."""
    started = time.monotonic()
    meta = body.metadata
    api = api_client(memo)
    owner = _owner(meta, body["spec"])
    key = (meta["namespace"], meta["name"])
    previous = body.get("status") or {}
    generation = meta.get("generation")
    context = decision_context()
    desired = DESIRED.get(owner, context)
    decision = desired.decision
    metrics.PLANS.labels(source="reconcile", outcome=metrics.outcome(decision.allowed, decision.field)).inc()
    try:
        if desired.service is None or desired.deployment is None:
            _write_status(
                api,
                meta,
                previous,
                status.rejected_status(decision, previous=previous, generation=generation, now=now()),
            )
            if previous.get("observedGeneration") != generation or previous.get("phase") != "Rejected":
                kopf.warn(body, reason="Rejected", message=decision.message)
            return
        sync(api, desired.service, live.SERVICES)
        is_deployment = desired.deployment["kind"] == "Deployment"  # else a LeaderWorkerSet
        deployment = sync(api, desired.deployment, live.DEPLOYMENTS if is_deployment else None)
        # A model that moved between one node and several leaves the other kind of workload behind.
        was_multi_node = int((previous.get("placement") or {}).get("nodes") or 1) > 1
        if is_deployment and was_multi_node:
            _delete_if_owned(api, "LeaderWorkerSet", owner)
        elif not is_deployment and live.DEPLOYMENTS.get(*key) is not None:
            _delete_if_owned(api, "Deployment", owner)
        new_status = status.deployed_status(
            decision, deployment, previous=previous, generation=generation, now=now()
        )
        _write_status(api, meta, previous, new_status)
        if previous.get("observedGeneration") != generation or previous.get("phase") != "Deployed":
            kopf.event(body, type="Normal", reason="Deployed", message=decision.message)
            if decision.memory_check_skipped is not None:
                kopf.warn(body, reason="MemoryCheckSkipped", message=decision.memory_check_skipped)
        write_schedulable(api, {**owner, "status": {**previous, **new_status}}, context)
    except (*kube.CALL_ERRORS, kopf.TemporaryError, kopf.PermanentError) as error:
        failure = (
            error
            if isinstance(error, kopf.TemporaryError | kopf.PermanentError)
            else kube.api_error("applying the Deployment, Service and status", error)
        )
        if isinstance(failure, kopf.TemporaryError) and attempt >= MAX_ATTEMPTS:
            failure = kopf.PermanentError(f"{failure} (gave up after {attempt} attempts)")
        if isinstance(failure, kopf.PermanentError):
            kopf.warn(body, reason="Failed", message=str(failure))
            try:
                _write_status(
                    api,
                    meta,
                    previous,
                    status.failed_status(str(failure), previous=previous, generation=generation),
                )
            except kube.CALL_ERRORS as status_error:
                logger.error(f"Could not record the failure in the status: {status_error}")
        raise failure from (None if failure is error else error)
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)


def _controller(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The LLMDeployment owner reference marked as controller, if any."""
    reference = manifests.controller(body)
    if reference is not None and reference.get("kind") == KIND and reference.get("apiVersion") == API_VERSION:
        return reference
    return None


def _ready_tuple(condition: Mapping[str, Any] | None) -> tuple[object, ...]:
    fields = ("status", "reason", "message", "observedGeneration")
    return tuple((condition or {}).get(field) for field in fields)


@kopf.on.event("apps", "v1", "deployments", labels=GENERATED_LABELS)
def watch_generated_deployment(
    type: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Re-apply the owner's plan when its Deployment is deleted or differs from it; carry its
    availability to the owner's Ready condition when that changes. Both are decided against the live
    owner and Deployment; an event older than the Deployment last applied is stale, and skipped (acting
    on it would undo that apply). The memo (per Deployment, gone with it) only spares re-checking a
    generation already found current, and re-writing a Ready condition already written."""
    if not live.DEPLOYMENTS.observe(type, body):
        return
    reference = _controller(body)
    if reference is None:
        return
    namespace = body["metadata"]["namespace"]
    owner = live.LLMDEPLOYMENTS.get(namespace, reference["name"])
    if (
        owner is None
        or owner["metadata"]["uid"] != reference["uid"]
        or owner["metadata"].get("deletionTimestamp")
    ):
        return  # the owner is going: the garbage collector takes its objects too
    owner_status = owner.get("status") or {}
    if owner_status.get("observedGeneration") != owner["metadata"].get("generation"):
        return  # the reconciler is on it, and writes Ready with its status
    api = api_client(memo)
    stored: Mapping[str, Any] | None = None if type == "DELETED" else body
    generation = body.get("metadata", {}).get("generation")
    try:
        if stored is None or memo.get("current_generation") != generation:
            desired = DESIRED.get(owner, decision_context()).deployment
            # A Rejected spec keeps what runs, as it is; a multi-node plan runs as a LeaderWorkerSet.
            if desired is not None and desired["kind"] == "Deployment":
                if stored is None or not manifests.is_current(stored, desired):
                    stored = kube.apply(api, desired)
                    live.DEPLOYMENTS.record(stored)
                    logger.info(f"Put the Deployment of {namespace}/{reference['name']} back as planned.")
                    kopf.event(
                        kopf.Body(cast(kopf.RawBody, owner)),
                        type="Normal",
                        reason="Repaired",
                        message="its Deployment was changed or deleted by hand; the plan is applied again",
                    )
                memo["current_generation"] = stored["metadata"].get("generation")
        ready = status.ready_condition(
            stored, previous=owner_status, generation=owner["metadata"].get("generation"), now=now()
        )
        stored_ready = next(
            (c for c in owner_status.get("conditions") or [] if c.get("type") == status.READY), None
        )
        if _ready_tuple(ready) not in (_ready_tuple(stored_ready), memo.get("ready")):
            kube.apply_llmdeployment_status(
                api, owner["metadata"], {"conditions": [ready]}, field_manager=kube.READINESS_FIELD_MANAGER
            )
            memo["ready"] = _ready_tuple(ready)
        # Once per plan, when its server is Ready: what the engine got, against what was planned.
        planned_generation = owner["metadata"].get("generation")
        recorded = (owner_status.get("capacity") or {}).get("observedGeneration")
        unread = planned_generation not in (recorded, memo.get("read"))
        if ready["status"] == "True" and stored is not None and unread:
            threshold = float(memo.get(CAPACITY_THRESHOLD, 0.1))
            if capacity.observe(api, owner, stored, threshold=threshold, now=now(), logger=logger):
                memo["read"] = planned_generation
    except kube.CALL_ERRORS as error:
        raise kube.api_error(f"repairing the Deployment of {namespace}/{reference['name']}", error) from error


def write_schedulable(
    api: client.ApiClient, owner: Mapping[str, Any], context: DecisionContext
) -> tuple[bool, str] | None:
    """Write the Schedulable condition for the placement in force: does the cluster still offer it?
    Catalog placement (nodes appear on demand) and resources never deployed are not judged."""
    previous = owner.get("status") or {}
    plan, placement = previous.get("plan"), previous.get("placement")
    inventory = context.inventory
    if not plan or not placement or placement.get("mode") != PlacementMode.CLUSTER.value or inventory is None:
        return None
    nodes = int(placement.get("nodes") or 1)
    per_pod = int(plan["gpuCount"]) // nodes if nodes > 1 else int(plan["gpuCount"])
    metadata = owner["metadata"]
    holds, message = placement_holds(
        inventory, plan["gpuType"], per_pod, nodes, (metadata["namespace"], metadata["name"])
    )
    earlier: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == status.SCHEDULABLE), {}
    )
    if earlier.get("status") != ("True" if holds else "False") or earlier.get("message") != message:
        schedulable = status.schedulable_condition(
            holds, message, previous=previous, generation=metadata.get("generation"), now=now()
        )
        kube.apply_llmdeployment_status(
            api, metadata, {"conditions": [schedulable]}, field_manager=kube.PLACEMENT_FIELD_MANAGER
        )
    return holds, message


_last_inventory: dict[str, str] = {}  # the inventory summary the last re-check saw (kopf's thread only)


def _gpu_pod(body: kopf.Body, **_: Any) -> bool:
    """Pods that can change what is free: bound ones asking for NVIDIA resources."""
    spec = body.get("spec") or {}
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    return bool(spec.get("nodeName")) and any(
        name.startswith("nvidia.com/")
        for r in resources
        for part in ("limits", "requests")
        for name in r.get(part) or {}
    )


@kopf.on.event("", "v1", "nodes")
def node_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    recheck_placements("Node", type, body, memo, logger)


@kopf.on.event("", "v1", "pods", when=_gpu_pod)
def gpu_pod_changed(
    type: str | None, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    recheck_placements("Pod", type, body, memo, logger)


def recheck_placements(
    kind: str, type: str | None, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger
) -> None:
    """When the inventory changes (a node type gone, GPUs taken), flip Schedulable with the reason, and
    re-plan a resource with preferences onto the next entry that holds. Event handlers, not timers:
    a timer would put a finalizer on every LLMDeployment. The event is fed to the inventory first, so
    the re-check never runs on a snapshot older than the event that triggered it."""
    observe_event(kind, type or "", dict(body))
    context = decision_context()
    summary = context.inventory.summary() if context.inventory is not None else ""
    if _last_inventory.get("summary") == summary:
        return
    _last_inventory["summary"] = summary
    api = api_client(memo)
    for found in live.LLMDEPLOYMENTS.values():
        if (found.get("status") or {}).get("phase") != "Deployed":
            continue
        owner = {"apiVersion": API_VERSION, "kind": KIND, **found}
        try:
            verdict = write_schedulable(api, owner, context)
        except kube.CALL_ERRORS as error:
            raise kube.api_error("writing the Schedulable condition", error) from error
        if verdict is not None and not verdict[0] and (found["spec"].get("gpu") or {}).get("preferences"):
            name = f"{found['metadata']['namespace']}/{found['metadata']['name']}"
            logger.info(
                f"The placement of {name} no longer holds ({verdict[1]}); planning the next preference."
            )
            DESIRED.forget(owner)
            reconcile(kopf.Body(cast(kopf.RawBody, owner)), memo, logger)


class QuietEventHandlers(logging.Filter):
    """Drops kopf's "Handler ... succeeded." line for the event handlers: one per watch event (every
    status change of every Deployment), which costs CPU at scale and says nothing; failures still log."""

    handlers = (
        "watch_generated_service",
        "watch_llmdeployment",
        "watch_generated_deployment",
        "node_changed",
        "gpu_pod_changed",
    )
    _lines = frozenset(f"Handler {name!r} succeeded." for name in handlers)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self._lines
