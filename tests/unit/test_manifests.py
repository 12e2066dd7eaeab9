"""The generated Deployment and Service: the plan's arguments, GPU scheduling, ownership, probes."""

from __future__ import annotations

import copy
import json
from typing import Any

from vramgate.decision import decide
from vramgate.manifests import (
    APPLIED_HASH_ANNOTATION,
    OWNER_LABEL,
    PLAN_ANNOTATION,
    Claim,
    claim,
    deployment,
    is_current,
    service,
    taken_message,
)
from vramgate.sizing import to_json

OWNER_UID = "0c0ffee0-0000-4000-8000-000000000001"


def resource(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "vramgate.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "falcon", "namespace": "team-a", "uid": OWNER_UID},
        "spec": spec,
    }


FALCON = {
    "model": {"name": "tiiuae/falcon-7b", "precision": "fp16"},
    "workload": {"maxSequenceLength": 1000, "concurrency": 100},
    "gpu": {"type": "A10G"},
    "runtime": {"extraArgs": ["--enable-prefix-caching"], "env": [{"name": "HF_HOME", "value": "/cache"}]},
}


def generate(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    owner = resource(spec)
    decision = decide(owner)
    assert decision.allowed and decision.spec is not None and decision.plan is not None, decision.message
    return (
        deployment(owner, decision.spec, decision.plan),
        service(owner, decision.spec),
        to_json(decision.plan),
    )


def test_container_runs_the_plans_arguments_then_port_then_extra_args() -> None:
    generated, _, plan = generate(FALCON)
    container = generated["spec"]["template"]["spec"]["containers"][0]

    assert container["args"] == [*plan["engineArgs"]["vllm"], "--port=8000", "--enable-prefix-caching"]
    assert container["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert container["image"] == "vllm/vllm-openai:v0.11.0"
    assert container["env"] == [{"name": "HF_HOME", "value": "/cache"}]


def test_gpus_are_requested_and_the_pod_is_pinned_to_the_planned_product() -> None:
    generated, _, _ = generate(FALCON)
    pod = generated["spec"]["template"]["spec"]

    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10G"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "volumes" not in pod, "one GPU needs no shared memory for NCCL"


def test_tensor_parallel_pods_get_a_memory_backed_dev_shm() -> None:
    tgi = {
        "model": {"name": "Qwen/Qwen2.5-7B-Instruct"},
        "workload": {"maxSequenceLength": 4096, "concurrency": 4},
        "gpu": {"type": "L40S", "count": 2},
        "runtime": {"engine": "tgi", "resources": {"limits": {"memory": "32Gi"}}},
    }
    generated, _, _ = generate(tgi)
    pod = generated["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert pod["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert container["resources"]["limits"] == {"memory": "32Gi", "nvidia.com/gpu": 2}
    assert "--num-shard=2" in container["args"] and "--port=80" in container["args"]
    assert "command" not in container, "the TGI image's entrypoint is the launcher"


def test_sglang_listens_on_all_interfaces_on_its_port_and_is_probed_there() -> None:
    sglang = {**FALCON, "runtime": {"engine": "sglang"}}
    generated, svc, _ = generate(sglang)
    container = generated["spec"]["template"]["spec"]["containers"][0]

    assert "--host=0.0.0.0" in container["args"] and "--port=30000" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 30000, "protocol": "TCP"}]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 30000, "targetPort": "http", "protocol": "TCP"}]


def test_generated_objects_are_owned_by_the_llmdeployment_and_labelled() -> None:
    generated, svc, _ = generate(FALCON)
    for manifest in (generated, svc):
        metadata = manifest["metadata"]
        assert metadata["ownerReferences"] == [
            {
                "apiVersion": "vramgate.dev/v1alpha1",
                "kind": "LLMDeployment",
                "name": "falcon",
                "uid": OWNER_UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "vramgate"
        assert metadata["labels"]["app.kubernetes.io/instance"] == "falcon"
    selector = generated["spec"]["selector"]["matchLabels"]
    assert selector.items() <= generated["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["selector"] == selector


def test_the_plan_rides_along_as_compact_json() -> None:
    generated, _, plan = generate(FALCON)
    annotation = generated["metadata"]["annotations"][PLAN_ANNOTATION]

    stored = json.loads(annotation)
    assert annotation == json.dumps(stored, separators=(",", ":"))  # compact separators
    assert stored["maxBatch"] == plan["maxBatch"] and "alternatives" not in stored


def test_generation_is_deterministic_so_reapplying_changes_nothing() -> None:
    assert generate(FALCON) == generate(FALCON)


def as_stored(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the API server gives back: defaults added, quantities as strings, empty lists dropped."""
    stored = copy.deepcopy(manifest)
    stored["metadata"].update(uid="d3p10y", generation=1, resourceVersion="7")
    pod = stored["spec"]["template"]["spec"]
    pod["restartPolicy"] = "Always"
    container = pod["containers"][0]
    container["imagePullPolicy"] = "IfNotPresent"
    container["resources"]["limits"] = {k: str(v) for k, v in container["resources"]["limits"].items()}
    container["readinessProbe"]["timeoutSeconds"] = 1
    stored["status"] = {"replicas": 1}
    return stored


def test_a_stored_deployment_with_server_defaults_is_current() -> None:
    generated, _, _ = generate({**FALCON, "runtime": {}})
    stored = as_stored(generated)
    del stored["spec"]["template"]["spec"]["containers"][0]["env"]  # generated as [], dropped by the server

    assert generated["spec"]["template"]["spec"]["containers"][0]["env"] == []
    assert is_current(stored, generated)


def test_an_edited_deployment_or_a_changed_plan_is_not_current() -> None:
    generated, _, _ = generate(FALCON)
    edited = as_stored(generated)
    edited["spec"]["template"]["spec"]["containers"][0]["args"][0] = "--max-num-seqs=999"
    shorter = as_stored(generated)
    shorter["spec"]["template"]["spec"]["containers"][0]["args"].pop()
    replanned, _, _ = generate({**FALCON, "workload": {"maxSequenceLength": 1000, "concurrency": 20}})

    assert not is_current(edited, generated)
    assert not is_current(shorter, generated)
    assert not is_current(None, generated)
    assert not is_current(as_stored(generated), replanned), "the hash annotation tells a new plan apart"
    assert (
        replanned["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
        != (generated["metadata"]["annotations"][APPLIED_HASH_ANNOTATION])
    )


def test_the_applied_hash_is_stable_and_on_both_objects() -> None:
    first, first_service, _ = generate(FALCON)
    again, again_service, _ = generate(FALCON)

    assert first == again and first_service == again_service
    assert APPLIED_HASH_ANNOTATION in first_service["metadata"]["annotations"]
    assert is_current(copy.deepcopy(first_service), first_service)


def test_the_server_runs_without_privileges_or_a_service_account_token() -> None:
    made, _, _ = generate(FALCON)
    pod = made["spec"]["template"]["spec"]
    [server] = pod["containers"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert server["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_a_resource_named_like_an_engine_variable_gets_no_service_link_variables() -> None:
    """Service links would put VLLM_PORT=tcp://10.0.0.1:8000 into every pod of the namespace once a
    Service named vllm exists, the resource's own included: vLLM then stops at start."""
    owner = {**resource(FALCON), "metadata": {"name": "vllm", "namespace": "team-a", "uid": OWNER_UID}}
    decision = decide(owner)
    assert decision.spec is not None and decision.plan is not None
    assert (
        deployment(owner, decision.spec, decision.plan)["spec"]["template"]["spec"]["enableServiceLinks"]
        is False
    )


def test_a_named_service_account_gets_its_token_and_non_root_is_enforced_when_declared() -> None:
    runtime = {"serviceAccountName": "model-reader", "runAsNonRoot": True}
    made, _, _ = generate({**FALCON, "runtime": runtime})
    pod = made["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "model-reader" and "automountServiceAccountToken" not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_typed_env_and_resources_are_written_as_a_pod_takes_them() -> None:
    runtime = {
        "env": [
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            {"name": "CPUS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
        ],
        "resources": {"requests": {"cpu": 4, "memory": "32Gi"}, "limits": {"memory": "48Gi"}},
    }
    made, _, _ = generate({**FALCON, "runtime": runtime})
    [server] = made["spec"]["template"]["spec"]["containers"]
    assert server["env"] == runtime["env"]
    assert server["resources"] == {
        "requests": {"cpu": 4, "memory": "32Gi"},
        "limits": {"memory": "48Gi", "nvidia.com/gpu": 1},
    }


def test_an_object_under_a_generated_name_is_claimed_by_who_controls_it() -> None:
    """Only the owner's own objects (and orphans carrying its selector) may be applied over: anything
    made by hand or controlled by anyone else is someone else's, whatever its labels say."""
    generated, _, _ = generate(FALCON)
    earlier = copy.deepcopy(generated)
    earlier["metadata"]["ownerReferences"][0]["uid"] = "an-earlier-uid"
    other_llmd = copy.deepcopy(generated)
    other_llmd["metadata"]["ownerReferences"][0].update(name="other", uid="another-uid")
    replica_set = copy.deepcopy(generated)
    replica_set["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": OWNER_UID, "controller": True}
    ]
    orphan = copy.deepcopy(generated)
    del orphan["metadata"]["ownerReferences"]
    by_hand = {"metadata": {"name": "falcon", "labels": {"app": "falcon"}}}
    orphan_of_another = copy.deepcopy(orphan)
    orphan_of_another["metadata"]["labels"][OWNER_LABEL] = "other"
    claims = [
        claim(obj, "falcon", OWNER_UID)
        for obj in (generated, earlier, other_llmd, replica_set, orphan, by_hand, orphan_of_another)
    ]
    assert claims == [
        Claim.OURS,
        Claim.EARLIER,
        Claim.OTHER,
        Claim.OTHER,
        Claim.ORPHAN,
        Claim.OTHER,
        Claim.OTHER,
    ]
    # Before the resource is stored (admission) it has no uid: its own objects cannot exist yet.
    assert claim(generated, "falcon", None) is Claim.EARLIER
    message = taken_message(replica_set, "Deployment", "team-a", "falcon")
    assert message.startswith("metadata.name: 'falcon' is taken: Deployment team-a/falcon already exists")
    assert "(controlled by ReplicaSet x)" in message
    assert "(controlled by nothing)" in taken_message(by_hand, "Service", "team-a", "falcon")
