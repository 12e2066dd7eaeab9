"""A plan and a spec become the Deployment and Service that run the inference server (pure functions).

Everything here is data in, dicts out, so the reconciler can server-side apply the result and tests can
assert on it without a cluster. What the sizing core computes (arguments, GPU type and count) is used as
is; this module adds only what running it on Kubernetes needs: image, ports, probes, GPU scheduling.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from vramgate.placement import HAMI_MEMORY_RESOURCE, LEADER_WORKER_SET_SUFFIX, Placement
from vramgate.placement import OWNER_LABEL as PLACEMENT_OWNER_LABEL
from vramgate.sizing import Plan, to_json
from vramgate.sizing.engines import definition
from vramgate.spec import API_VERSION, GROUP, KIND, LLMDeploymentSpec, extra_arguments

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
PLAN_ANNOTATION = f"{GROUP}/plan"
APPLIED_HASH_ANNOTATION = f"{GROUP}/applied-hash"
MANAGED_BY = "vramgate"
OWNER_LABEL = PLACEMENT_OWNER_LABEL  # the inventory counts these pods' GPUs as their owner's
HTTP_PORT_NAME = "http"
SHM_VOLUME = "dshm"
# Loading weights takes minutes; the startup probe gives it this long before liveness counts.
STARTUP_PROBE_PERIOD_SECONDS = 10
STARTUP_PROBE_FAILURES = 180
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
ROLE_LABEL = "role"  # leader or worker in a LeaderWorkerSet group; the Service selects the leader
# vLLM's image ships the Ray bootstrap its multi-node guide (and LeaderWorkerSet's vLLM example) runs.
VLLM_MULTI_NODE_SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"
# The server needs no privilege: whoever may create an LLMDeployment must not get more through it.
CONTAINER_SECURITY_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def labels(name: str) -> dict[str, str]:
    """Labels on everything generated for the LLMDeployment `name`; the selector is a stable subset."""
    return {
        "app.kubernetes.io/name": "llm-server",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        OWNER_LABEL: name,
    }


def selector(name: str) -> dict[str, str]:
    """Immutable once a Deployment exists, so it holds nothing a spec change could alter."""
    return {OWNER_LABEL: name, "app.kubernetes.io/managed-by": MANAGED_BY}


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """Makes the garbage collector delete generated objects with their LLMDeployment."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference marked as controller, of any kind; None when nothing controls `obj`."""
    metadata = obj.get("metadata")
    references = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    for reference in references if isinstance(references, list) else []:
        if isinstance(reference, Mapping) and reference.get("controller"):
            return reference
    return None


class Claim(StrEnum):
    """Whose an object is that has the name of one the LLMDeployment generates."""

    OURS = "ours"  # generated for this LLMDeployment (the same uid)
    # Generated for an LLMDeployment of this name and orphaned (`kubectl delete --cascade=orphan`): no
    # controller, and the selector's labels. Adopted, as a Deployment adopts its orphaned ReplicaSets.
    ORPHAN = "orphan"
    # Generated for an earlier LLMDeployment of the same name, deleted since: the garbage collector
    # deletes it soon; applying over it now would give it two controllers, which the API server refuses.
    EARLIER = "earlier"
    OTHER = "other"  # anything else: made by hand, by another controller or another LLMDeployment


def claim(existing: Mapping[str, Any], name: str, uid: str | None) -> Claim:
    """Whose `existing` (in the same namespace) is, against the LLMDeployment `name` (`uid`: None before
    it is stored).

    Applying (with force) over an object someone else made would take it over: its selector and ports
    rewritten, and the garbage collector deleting it with the LLMDeployment. So a name that is taken
    is refused at admission and never applied by the reconciler."""
    reference = controller(existing)
    if reference is None:
        found = (existing.get("metadata") or {}).get("labels") or {}
        return Claim.ORPHAN if all(found.get(k) == v for k, v in selector(name).items()) else Claim.OTHER
    if reference.get("kind") != KIND or reference.get("apiVersion") != API_VERSION:
        return Claim.OTHER
    if uid is not None and reference.get("uid") == uid:
        return Claim.OURS
    return Claim.EARLIER if reference.get("name") == name else Claim.OTHER


def taken_message(existing: Mapping[str, Any], kind: str, namespace: str, name: str) -> str:
    """Why the LLMDeployment name `name` cannot be used: which object of `kind` holds the name its
    workload or Service would take, and who controls that object."""
    reference = controller(existing)
    holder = f"{reference.get('kind')} {reference.get('name')}" if reference else "nothing"
    return (
        f"metadata.name: {name!r} is taken: {kind} {namespace}/{workload_name(name, kind)} already exists "
        f"and was not generated for this LLMDeployment (controlled by {holder}); vramgate never takes over "
        f"an object it did not create. Allowed: a name whose Deployment ({name}), LeaderWorkerSet "
        f"({workload_name(name, 'LeaderWorkerSet')}) and Service ({name}) no object in {namespace} holds "
        f"yet, or delete that {kind} first"
    )


def workload_kind(placement: Placement | None) -> str:
    """A model over several nodes runs as a LeaderWorkerSet, any other as a Deployment."""
    return "LeaderWorkerSet" if placement is not None and placement.nodes > 1 else "Deployment"


def workload_name(name: str, kind: str) -> str:
    """The name of the LLMDeployment `name`'s workload of `kind`; its Service keeps `name` itself."""
    return f"{name}{LEADER_WORKER_SET_SUFFIX}" if kind == "LeaderWorkerSet" else name


def server_port(spec: LLMDeploymentSpec) -> int:
    return spec.runtime.port or definition(spec.runtime.engine).runtime.port


def server_arguments(spec: LLMDeploymentSpec, plan: Plan) -> list[str]:
    """The plan's arguments for the engine (model source included), the port, then the user's extras
    (those the planner read are among the plan's own)."""
    runtime = definition(spec.runtime.engine).runtime
    arguments = [*plan.engine_args[spec.runtime.engine.value], f"{runtime.port_flag}={server_port(spec)}"]
    if runtime.host_flag is not None:
        arguments.append(f"{runtime.host_flag}=0.0.0.0")
    return [*arguments, *extra_arguments(spec).passthrough]


def plan_annotation(plan: Plan) -> str:
    """The plan behind the Deployment, compact; the per-option table is left out (annotations are capped
    at 256 KiB in all, and `vramgate plan` prints it)."""
    return json.dumps(
        {key: value for key, value in to_json(plan).items() if key != "alternatives"}, separators=(",", ":")
    )


def _metadata(owner: Mapping[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels(name),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def _probe(path: str, *, period_seconds: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": HTTP_PORT_NAME},
        "periodSeconds": period_seconds,
        "failureThreshold": failure_threshold,
    }


def gpu_limits(plan: Plan, placement: Placement | None) -> dict[str, int]:
    """What one pod requests: whole GPUs, one MIG instance, or a HAMi share (one vGPU and its memory).
    A pod of a multi-node replica holds one pipeline stage: its tensor-parallel GPUs."""
    if placement is None:
        return {GPU_RESOURCE: plan.gpu_count}
    per_pod = plan.tensor_parallel if placement.nodes > 1 else plan.gpu_count
    limits = {placement.resource: per_pod}
    if placement.hami_memory_mib is not None:
        limits[HAMI_MEMORY_RESOURCE] = placement.hami_memory_mib
    return limits


def _container(spec: LLMDeploymentSpec, plan: Plan, placement: Placement | None) -> dict[str, Any]:
    runtime = definition(spec.runtime.engine).runtime
    resources: dict[str, dict[str, int | str]] = spec.runtime.resources.as_manifest()
    resources["limits"] = {**resources.get("limits", {}), **gpu_limits(plan, placement)}
    container: dict[str, Any] = {
        "name": "server",
        "image": spec.runtime.image_or_default(),
        "args": server_arguments(spec, plan),
        "ports": [{"name": HTTP_PORT_NAME, "containerPort": server_port(spec), "protocol": "TCP"}],
        "env": [env.model_dump(by_alias=True, exclude_none=True, mode="json") for env in spec.runtime.env],
        "resources": resources,
        "startupProbe": _probe(
            runtime.health_path,
            period_seconds=STARTUP_PROBE_PERIOD_SECONDS,
            failure_threshold=STARTUP_PROBE_FAILURES,
        ),
        "readinessProbe": _probe(runtime.health_path, period_seconds=5, failure_threshold=3),
        "livenessProbe": _probe(runtime.health_path, period_seconds=15, failure_threshold=4),
        "securityContext": CONTAINER_SECURITY_CONTEXT,
    }
    if runtime.command:
        container["command"] = list(runtime.command)
    if plan.gpu_count > 1:
        container["volumeMounts"] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    return container


def _pod_security_context(spec: LLMDeploymentSpec) -> dict[str, Any]:
    context: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if spec.runtime.run_as_non_root:
        context["runAsNonRoot"] = True
    return context


def _service_account(spec: LLMDeploymentSpec) -> dict[str, Any]:
    """The named ServiceAccount with its token; otherwise no token at all: the server never calls the
    API, and the namespace's default account may have been granted more than it should reach."""
    if spec.runtime.service_account_name:
        return {"serviceAccountName": spec.runtime.service_account_name}
    return {"automountServiceAccountToken": False}


def _pod_spec(containers: list[dict[str, Any]], spec: LLMDeploymentSpec, plan: Plan) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": containers,
        "securityContext": _pod_security_context(spec),
        **_service_account(spec),
        # No {SERVICE}_PORT=tcp://... variables: a Service named vllm (this resource's own, or another in
        # the namespace) sets VLLM_PORT, which vLLM refuses at start (get_vllm_port, envs.py@v0.11.0); one
        # named master sets TGI's MASTER_PORT. The server is reached by name, never by these variables.
        "enableServiceLinks": False,
        "nodeSelector": {GPU_PRODUCT_LABEL: plan.gpu_product},
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    }
    if plan.gpu_count > 1:  # NCCL exchanges tensors through shared memory; the default 64 MiB is too small
        pod_spec["volumes"] = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}}]
    return pod_spec


def deployment(
    owner: Mapping[str, Any], spec: LLMDeploymentSpec, plan: Plan, placement: Placement | None = None
) -> dict[str, Any]:
    """The Deployment running `spec` as `plan` sized it, owned by the LLMDeployment `owner`."""
    name = owner["metadata"]["name"]
    return _stamped(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(owner, {PLAN_ANNOTATION: plan_annotation(plan)}),
            "spec": {
                "replicas": spec.replicas,
                "selector": {"matchLabels": selector(name)},
                # A surge pod would need GPUs of its own, which a GPU pool rarely has spare: replace in place.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": labels(name)},
                    "spec": _pod_spec([_container(spec, plan, placement)], spec, plan),
                },
            },
        }
    )


def leader_worker_set(
    owner: Mapping[str, Any], spec: LLMDeploymentSpec, plan: Plan, placement: Placement
) -> dict[str, Any]:
    """A LeaderWorkerSet for a model split over `placement.nodes` nodes (vLLM with Ray, as vLLM's
    multi-node guide and LeaderWorkerSet's vLLM example run it): the leader starts the Ray head and the
    server, each worker joins the leader's Ray cluster. One group per replica."""
    name = owner["metadata"]["name"]
    leader = _container(spec, plan, placement)
    server = [*leader.pop("command", []), *leader.pop("args")]
    # $(LWS_...) are expanded by the kubelet from the variables LeaderWorkerSet sets in every container.
    # The server's own arguments stay arguments ("$@"), never shell text: the kubelet expands $(VAR) in
    # them too, and an expanded value with a quote in it would otherwise rewrite the shell command.
    leader["command"] = [
        "sh",
        "-c",
        f'bash {VLLM_MULTI_NODE_SCRIPT} leader --ray_cluster_size=$(LWS_GROUP_SIZE); exec "$@"',
        "sh",
    ]
    worker = {
        key: value
        for key, value in leader.items()
        if key not in ("startupProbe", "readinessProbe", "livenessProbe", "ports")
    }
    worker["command"] = [
        "sh",
        "-c",
        f"bash {VLLM_MULTI_NODE_SCRIPT} worker --ray_address=$(LWS_LEADER_ADDRESS)",
    ]
    leader["args"] = server
    return _stamped(
        {
            "apiVersion": LWS_API_VERSION,
            "kind": "LeaderWorkerSet",
            "metadata": {
                **_metadata(owner, {PLAN_ANNOTATION: plan_annotation(plan)}),
                "name": workload_name(name, "LeaderWorkerSet"),
            },
            "spec": {
                "replicas": spec.replicas,
                "leaderWorkerTemplate": {
                    "size": placement.nodes,
                    "restartPolicy": "RecreateGroupOnPodRestart",
                    "leaderTemplate": {
                        "metadata": {"labels": {**labels(name), ROLE_LABEL: "leader"}},
                        "spec": _pod_spec([leader], spec, plan),
                    },
                    "workerTemplate": {
                        "metadata": {"labels": {**labels(name), ROLE_LABEL: "worker"}},
                        "spec": _pod_spec([worker], spec, plan),
                    },
                },
            },
        }
    )


def service(
    owner: Mapping[str, Any], spec: LLMDeploymentSpec, *, leader_only: bool = False
) -> dict[str, Any]:
    """A ClusterIP Service for the server's HTTP port, named like its LLMDeployment (to a multi-node
    group's leader, which serves; its workers only compute)."""
    name = owner["metadata"]["name"]
    return _stamped(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(owner),
            "spec": {
                "selector": {**selector(name), ROLE_LABEL: "leader"} if leader_only else selector(name),
                "ports": [
                    {
                        "name": HTTP_PORT_NAME,
                        "port": server_port(spec),
                        "targetPort": HTTP_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
        }
    )


def _stamped(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with the hash of its own content as an annotation: what was last applied can then
    be read off the live object, after a restart too, without keeping anything in memory."""
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    manifest["metadata"].setdefault("annotations", {})[APPLIED_HASH_ANNOTATION] = digest.hexdigest()[:16]
    return manifest


def is_current(live: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> bool:
    """Whether applying `manifest` would change nothing on `live`: the same manifest was applied last
    (its hash annotation) and every value it sets still holds (nobody edited them since). Fields the
    API server adds by default, or other managers own, do not count."""
    if live is None:
        return False
    applied = (live.get("metadata") or {}).get("annotations") or {}
    wanted = manifest["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
    return applied.get(APPLIED_HASH_ANNOTATION) == wanted and _holds(live.get("spec"), manifest["spec"])


def _holds(live: object, wanted: object) -> bool:
    """`wanted` is contained in `live`: mappings key by key, lists item by item and of equal length;
    an empty list or mapping matches an absent field (the API server drops them)."""
    if isinstance(wanted, Mapping):
        live_map = live if isinstance(live, Mapping) else {}
        return all(
            _holds(live_map[key], value) if key in live_map else value in ({}, [])
            for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        live_list = live if isinstance(live, list) else []
        return len(live_list) == len(wanted) and all(map(_holds, live_list, wanted))
    return live == wanted or _same_quantity(live, wanted)


def _same_quantity(live: object, wanted: object) -> bool:
    """Resource quantities come back in canonical form (`1` becomes "1", `1000m` becomes "1")."""
    if not isinstance(live, str | int) or not isinstance(wanted, str | int) or isinstance(wanted, bool):
        return False
    from kubernetes.utils import parse_quantity  # only the operator compares: the CLI never imports it

    try:
        return bool(parse_quantity(live) == parse_quantity(wanted))  # type: ignore[no-untyped-call]
    except ValueError:
        return False
