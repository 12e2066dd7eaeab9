"""The operator end to end on a real API server: the CRD, the webhook's refusals as kubectl prints
them, the generated Deployment, repairs, cascading deletion, restarts and GPU scheduling.

One operator process serves the whole module (``python -m vramgate.operator``, the webhook in local
mode); each test works in a namespace of its own. Expected engine arguments come from ``decide()`` on
the same example file, so these tests pin the wiring, and the unit tests pin the numbers.
"""

from __future__ import annotations

import json
import secrets
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from support.apimetrics import api_writes, writes_since
from support.gpunodes import register_gpu_node
from support.kubectl import kubectl
from support.operator import OperatorProcess, remove_webhook_configuration
from support.wait import settled, stays, wait_for
from vramgate import __version__
from vramgate.decision import decide
from vramgate.handlers.kube import read_metadata
from vramgate.manifests import Claim, claim

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLES = REPOSITORY / "examples"
FALCON = EXAMPLES / "falcon-7b-a10g.yaml"
LLAMA_70B = EXAMPLES / "llama-3.1-70b-too-big.yaml"
WEBHOOK_NAME = "validate-llmdeployment.vramgate.dev"
CONVERGE_SECONDS = 60
# The garbage collector learns about a new kind of owner on its periodic discovery.
GARBAGE_COLLECTION_SECONDS = 120


def example(path: Path, namespace: str) -> dict[str, Any]:
    """An example as the API server sees it: in the test's namespace."""
    resource: dict[str, Any] = yaml.safe_load(path.read_text())
    resource["metadata"]["namespace"] = namespace
    return resource


def get_json(kubeconfig: Path, *args: str) -> dict[str, Any] | None:
    result = kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig, check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def server_args(kubeconfig: Path, namespace: str, name: str) -> list[str] | None:
    deployment = get_json(kubeconfig, "deployment", name, "-n", namespace)
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"] if deployment else None


def apply_unchecked(kubeconfig: Path, resource: dict[str, Any]) -> None:
    """Apply while the operator is stopped, after removing its webhook configuration (a stop leaves
    it, so that nothing slips through unnoticed): the API server stores the resource unchecked, once it
    has noticed that the configuration is gone."""
    remove_webhook_configuration(kubeconfig)
    wait_for(
        lambda: kubectl(
            "apply", "-f", "-", kubeconfig=kubeconfig, input=json.dumps(resource), check=False
        ).returncode == 0,
        timeout=CONVERGE_SECONDS,
        message="the API server storing the resource without the webhook",
    )  # fmt: skip


def expected_args(resource: dict[str, Any]) -> list[str]:
    decision = decide(resource)
    assert decision.plan is not None and decision.allowed, decision.message
    return decision.plan.engine_args["vllm"]


def deploy_falcon(kubeconfig: Path, namespace: str) -> dict[str, Any]:
    """Apply the Falcon example and wait for its Deployment; returns the Deployment."""
    kubectl("apply", "-n", namespace, "-f", str(FALCON), kubeconfig=kubeconfig)
    return wait_for(
        lambda: get_json(kubeconfig, "deployment", "falcon-7b", "-n", namespace),
        timeout=CONVERGE_SECONDS,
        message="the falcon-7b Deployment",
    )


def test_fitting_example_becomes_a_deployment_with_the_planned_arguments(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    deployment = deploy_falcon(kubeconfig, namespace)
    llmd = get_json(kubeconfig, "llmd", "falcon-7b", "-n", namespace)
    assert llmd is not None
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    planned = expected_args(example(FALCON, namespace))
    assert container["args"][: len(planned)] == planned
    assert "--tensor-parallel-size=1" in planned
    assert any(arg.startswith("--max-num-seqs=") for arg in planned)
    assert any(arg.startswith("--gpu-memory-utilization=") for arg in planned)
    assert "--model=tiiuae/falcon-7b" in planned
    assert container["image"] == "vllm/vllm-openai:v0.11.0"
    assert container["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10G"}
    [owner] = deployment["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "vramgate.dev/v1alpha1",
        "kind": "LLMDeployment",
        "name": "falcon-7b",
        "uid": llmd["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    service = get_json(kubeconfig, "service", "falcon-7b", "-n", namespace)
    assert service is not None and service["spec"]["ports"][0]["port"] == 8000

    def status_with_both_conditions() -> dict[str, Any] | None:
        status = (get_json(kubeconfig, "llmd", "falcon-7b", "-n", namespace) or {}).get("status") or {}
        return status if len(status.get("conditions", [])) == 2 else None

    status = wait_for(status_with_both_conditions, message="the Planned and Ready conditions")
    assert status["phase"] == "Deployed"
    assert status["observedGeneration"] == llmd["metadata"]["generation"]
    assert status["plan"]["gpuType"] == "A10G"
    # No kubelet runs pods here, so the server never becomes available.
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Planned": "True", "Ready": "False"}
    table = kubectl("get", "llmd", "-n", namespace, kubeconfig=kubeconfig).stdout
    assert "tiiuae/falcon-7b" in table and "A10G" in table and "Deployed" in table


def test_refused_example_is_not_stored_and_kubectl_shows_why(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    result = kubectl("apply", "-n", namespace, "-f", str(LLAMA_70B), kubeconfig=kubeconfig, check=False)

    assert result.returncode != 0
    message = decide(example(LLAMA_70B, namespace)).message
    assert message.startswith(f"LLMDeployment {namespace}/llama-3-1-70b refused: ")
    assert f'admission webhook "{WEBHOOK_NAME}" denied the request: {message}' in result.stderr
    assert get_json(kubeconfig, "llmd", "llama-3-1-70b", "-n", namespace) is None


def _metric(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text format (0 when the labelled series does not exist yet)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_metrics_count_plans_and_refusals(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    def scrape() -> str:
        with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
            body: bytes = response.read()
        return body.decode()

    before = scrape()
    kubectl("apply", "-n", namespace, "-f", str(LLAMA_70B), kubeconfig=kubeconfig, check=False)
    deploy_falcon(kubeconfig, namespace)

    # The reconcile's duration is observed once it has also written the status, after the Deployment.
    def reconciled() -> str | None:
        text = scrape()
        duration = "vramgate_reconcile_duration_seconds_count"
        return text if _metric(text, duration) > _metric(before, duration) else None

    after = wait_for(reconciled, timeout=CONVERGE_SECONDS, message="the reconcile's duration observed")

    def grew(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert grew("vramgate_admission_rejections_total", reason="too-big") == 1
    assert grew("vramgate_plans_total", source="admission", outcome="too-big") == 1
    assert grew("vramgate_plans_total", source="reconcile", outcome="fits") >= 1
    assert grew("vramgate_reconcile_duration_seconds_count") >= 1
    # kubectl apply asks the webhook once for the refused resource and at least once for falcon.
    assert grew("vramgate_admission_duration_seconds_count", outcome="too-big") == 1
    assert grew("vramgate_admission_duration_seconds_count", outcome="fits") >= 1
    assert _metric(after, "vramgate_build_info", version=__version__) == 1


def test_unknown_model_is_refused_with_its_field_path(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    resource = example(FALCON, namespace)
    resource["spec"]["model"]["name"] = "tiiuae/falcon-8b"
    result = kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=json.dumps(resource), check=False)

    assert result.returncode != 0
    assert "denied the request: LLMDeployment " in result.stderr
    assert "refused: spec.model.name: 'tiiuae/falcon-8b' is not in the catalog" in result.stderr


def test_schema_rules_refuse_a_model_with_both_name_and_architecture(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    resource = example(FALCON, namespace)
    resource["spec"]["model"]["architecture"] = {
        "layers": 2, "hiddenSize": 64, "attentionHeads": 4, "kvHeads": 4, "vocabSize": 100,
        "intermediateSize": 64,
    }  # fmt: skip
    result = kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=json.dumps(resource), check=False)

    assert result.returncode != 0
    assert "set exactly one of name (a catalog id) and architecture" in result.stderr


def test_server_dry_run_of_a_fitting_example_stores_nothing(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(FALCON), kubeconfig=kubeconfig)

    assert "created (server dry run)" in result.stdout
    assert get_json(kubeconfig, "llmd", "falcon-7b", "-n", namespace) is None


def test_applying_the_same_spec_again_writes_nothing(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    deploy_falcon(kubeconfig, namespace)
    objects = (("llmd", "falcon-7b"), ("deployment", "falcon-7b"), ("service", "falcon-7b"))

    def versions() -> tuple[str, ...]:
        return tuple(
            (get_json(kubeconfig, kind, name, "-n", namespace) or {})["metadata"]["resourceVersion"]
            for kind, name in objects
        )

    def conditions() -> int:
        llmd = get_json(kubeconfig, "llmd", "falcon-7b", "-n", namespace) or {}
        return len((llmd.get("status") or {}).get("conditions", []))

    wait_for(lambda: conditions() == 2, timeout=CONVERGE_SECONDS, message="the Planned and Ready conditions")
    # Settling at all is the check against update storms and status ping-pong.
    steady = settled(versions, quiet_seconds=3, timeout=CONVERGE_SECONDS, message="the generated objects")
    kubectl("apply", "-n", namespace, "-f", str(FALCON), kubeconfig=kubeconfig)
    stays(lambda: versions() == steady, seconds=5, message="the resource, Deployment and Service versions")


OPERATOR_OBJECTS = {
    ("deployments", ""),
    ("services", ""),
    ("llmdeployments", ""),
    ("llmdeployments", "status"),
}


def test_one_apply_per_object_per_change_and_no_writes_after_a_restart(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    """Counted by the API server: creating three resources costs one apply of each Deployment, Service
    and status, and nothing else (no kopf annotations); a restart with nothing changed writes nothing."""
    names = [f"falcon-{index}" for index in range(3)]
    resources = []
    for name in names:
        resource = example(FALCON, namespace)
        resource["metadata"]["name"] = name
        resources.append(resource)

    # The API server counts writes cluster-wide: earlier tests' namespaces must be gone first, or the
    # namespace controller's deletions land in the count.
    def namespaces_terminating() -> list[str]:
        listed = get_json(kubeconfig, "namespaces") or {}
        return [n["metadata"]["name"] for n in listed["items"] if n["status"].get("phase") == "Terminating"]

    wait_for(
        lambda: not namespaces_terminating(), timeout=CONVERGE_SECONDS, message="no namespace terminating"
    )
    quiet = settled(
        lambda: api_writes(kubeconfig, OPERATOR_OBJECTS),
        quiet_seconds=3,
        timeout=CONVERGE_SECONDS,
        message="writes",
    )

    for resource in resources:
        kubectl("create", "-f", "-", kubeconfig=kubeconfig, input=json.dumps(resource))

    def deployed() -> bool:
        items = (get_json(kubeconfig, "llmd", "-n", namespace) or {}).get("items", [])
        return len(items) == len(names) and all(
            (item.get("status") or {}).get("phase") == "Deployed" for item in items
        )

    wait_for(deployed, timeout=CONVERGE_SECONDS, message="three resources Deployed")
    converged = settled(
        lambda: api_writes(kubeconfig, OPERATOR_OBJECTS),
        quiet_seconds=5,
        timeout=CONVERGE_SECONDS,
        message="writes",
    )
    assert writes_since(quiet, converged) == {
        "POST/llmdeployments": 3,  # the test's own creates
        "APPLY/deployments": 3,
        "APPLY/services": 3,
        "APPLY/llmdeployments/status": 3,
    }
    statuses = [(get_json(kubeconfig, "llmd", name, "-n", namespace) or {})["status"] for name in names]
    assert all({c["type"] for c in status["conditions"]} == {"Planned", "Ready"} for status in statuses)

    operator.stop()
    operator.start()
    stays(
        lambda: writes_since(converged, api_writes(kubeconfig, OPERATOR_OBJECTS)) == {},
        seconds=10,
        message="no writes after the restart",
    )
    reasons = kubectl(
        "get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}", kubeconfig=kubeconfig
    ).stdout.split()
    assert sorted(reason for reason in reasons if reason == "Deployed") == ["Deployed"] * 3, reasons


def test_changing_concurrency_changes_max_num_seqs(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    deploy_falcon(kubeconfig, namespace)
    resource = example(FALCON, namespace)
    resource["spec"]["workload"]["concurrency"] = 20
    wanted = expected_args(resource)
    assert wanted != expected_args(example(FALCON, namespace))

    kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=json.dumps(resource))

    wait_for(
        lambda: (server_args(kubeconfig, namespace, "falcon-7b") or [])[: len(wanted)] == wanted,
        timeout=CONVERGE_SECONDS,
        message=f"arguments {wanted}",
    )


def test_deployment_edited_or_deleted_by_hand_is_put_back(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    original = deploy_falcon(kubeconfig, namespace)
    planned = original["spec"]["template"]["spec"]["containers"][0]["args"]
    edit = {
        "spec": {"template": {"spec": {"containers": [{"name": "server", "args": ["--max-num-seqs=999"]}]}}}
    }
    kubectl(
        "patch", "deployment", "falcon-7b", "-n", namespace, "-p", json.dumps(edit), kubeconfig=kubeconfig
    )

    wait_for(
        lambda: server_args(kubeconfig, namespace, "falcon-7b") == planned,
        timeout=CONVERGE_SECONDS,
        message="the planned arguments back",
    )

    kubectl("delete", "deployment", "falcon-7b", "-n", namespace, kubeconfig=kubeconfig)

    recreated = wait_for(
        lambda: get_json(kubeconfig, "deployment", "falcon-7b", "-n", namespace),
        timeout=CONVERGE_SECONDS,
        message="the Deployment recreated",
    )
    assert recreated["metadata"]["uid"] != original["metadata"]["uid"]
    assert recreated["spec"]["template"]["spec"]["containers"][0]["args"] == planned


def test_operator_restarts_converge_to_one_deployment(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    deploy_falcon(kubeconfig, namespace)
    operator.stop(signal.SIGKILL)  # a crash: nothing cleaned up, the webhook stays registered
    operator.start()
    operator.stop()  # a clean stop: the webhook stays too; apply_unchecked removes it
    resource = example(FALCON, namespace)
    resource["metadata"]["name"] = "falcon-7b-second"
    apply_unchecked(kubeconfig, resource)
    operator.start()

    wait_for(
        lambda: get_json(kubeconfig, "deployment", "falcon-7b-second", "-n", namespace),
        timeout=CONVERGE_SECONDS,
        message="the Deployment of the resource created while the operator was down",
    )
    deployments = get_json(kubeconfig, "deployments", "-n", namespace)
    assert deployments is not None
    assert sorted(d["metadata"]["name"] for d in deployments["items"]) == ["falcon-7b", "falcon-7b-second"]
    planned = expected_args(example(FALCON, namespace))
    for deployment in deployments["items"]:
        assert len(deployment["metadata"]["ownerReferences"]) == 1
        assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][: len(planned)] == planned


def test_a_stored_resource_that_stopped_fitting_is_rejected_and_its_deployment_left_alone(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    running = deploy_falcon(kubeconfig, namespace)
    operator.stop()  # apply_unchecked then removes the webhook: the next change is stored unchecked
    too_big = example(FALCON, namespace)
    too_big["spec"]["workload"]["concurrency"] = 100_000
    apply_unchecked(kubeconfig, too_big)
    operator.start()

    def rejected() -> dict[str, Any] | None:
        status = (get_json(kubeconfig, "llmd", "falcon-7b", "-n", namespace) or {}).get("status") or {}
        return status if status.get("phase") == "Rejected" else None

    status = wait_for(rejected, timeout=CONVERGE_SECONDS, message="phase Rejected")
    assert decide(too_big).message in json.dumps(status)
    after = get_json(kubeconfig, "deployment", "falcon-7b", "-n", namespace)
    assert after is not None
    assert after["metadata"]["generation"] == running["metadata"]["generation"]
    container_args = after["spec"]["template"]["spec"]["containers"][0]["args"]
    assert container_args == running["spec"]["template"]["spec"]["containers"][0]["args"]


def test_pod_is_scheduled_on_the_planned_gpu_type(
    kubeconfig: Path, namespace: str, api_client: client.ApiClient, operator: OperatorProcess
) -> None:
    suffix = secrets.token_hex(3)
    a10g, l4 = f"gpu-a10g-{suffix}", f"gpu-l4-{suffix}"
    register_gpu_node(api_client, a10g, product="NVIDIA-A10G", memory_mib=23028)
    register_gpu_node(api_client, l4, product="NVIDIA-L4", memory_mib=23034)
    try:
        deploy_falcon(kubeconfig, namespace)

        def bound_node() -> str | None:
            pods = get_json(kubeconfig, "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=falcon-7b")
            nodes = [pod["spec"].get("nodeName") for pod in (pods or {}).get("items", [])]
            return nodes[0] if nodes and nodes[0] else None

        assert wait_for(bound_node, timeout=CONVERGE_SECONDS, message="the pod bound to a node") == a10g
    finally:
        client.CoreV1Api(api_client).delete_node(a10g)
        client.CoreV1Api(api_client).delete_node(l4)


def test_deleting_the_llmdeployment_deletes_what_it_generated(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    deploy_falcon(kubeconfig, namespace)

    kubectl("delete", "llmd", "falcon-7b", "-n", namespace, kubeconfig=kubeconfig)

    wait_for(
        lambda: (
            get_json(kubeconfig, "deployment", "falcon-7b", "-n", namespace) is None
            and get_json(kubeconfig, "service", "falcon-7b", "-n", namespace) is None
        ),
        timeout=GARBAGE_COLLECTION_SECONDS,
        message="the garbage collector deleting the Deployment and Service",
    )


def test_a_name_another_service_holds_is_refused_and_that_service_left_alone(
    kubeconfig: Path, namespace: str, operator: OperatorProcess
) -> None:
    """Applying over a Service someone else made would rewrite its selector and ports, and the garbage
    collector would delete it with the LLMDeployment: the creation is refused, naming the holder."""
    kubectl(
        "create", "service", "clusterip", "falcon-7b", "--tcp=80:8080", "-n", namespace, kubeconfig=kubeconfig
    )
    before = get_json(kubeconfig, "service", "falcon-7b", "-n", namespace)
    assert before is not None

    refused = kubectl("apply", "-n", namespace, "-f", str(FALCON), kubeconfig=kubeconfig, check=False)

    assert refused.returncode != 0
    assert (
        f"metadata.name: 'falcon-7b' is taken: Service {namespace}/falcon-7b already exists" in refused.stderr
    )
    assert "(controlled by nothing)" in refused.stderr
    assert get_json(kubeconfig, "llmd", "falcon-7b", "-n", namespace) is None
    after = get_json(kubeconfig, "service", "falcon-7b", "-n", namespace)
    assert after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_deployment_made_by_hand_after_admission_is_never_taken_over(
    kubeconfig: Path, namespace: str, api_client: client.ApiClient, operator: OperatorProcess
) -> None:
    """The reconciler checks again before it applies (admission may have been off, or the name taken
    since): the resource fails with the holder named, and the other Deployment keeps its spec."""
    operator.stop()  # apply_unchecked removes the webhook: the resource is stored unchecked
    kubectl(
        "create", "deployment", "falcon-7b", "--image=registry.invalid/web:1", "-n", namespace,
        kubeconfig=kubeconfig,
    )  # fmt: skip
    theirs = get_json(kubeconfig, "deployment", "falcon-7b", "-n", namespace)
    assert theirs is not None
    apply_unchecked(kubeconfig, example(FALCON, namespace))
    operator.start()

    def failed() -> dict[str, Any] | None:
        status = (get_json(kubeconfig, "llmd", "falcon-7b", "-n", namespace) or {}).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, timeout=CONVERGE_SECONDS, message="phase Failed")
    assert f"is taken: Deployment {namespace}/falcon-7b already exists" in status["message"]
    assert "(controlled by nothing)" in status["message"]
    after = get_json(kubeconfig, "deployment", "falcon-7b", "-n", namespace, "--show-managed-fields")
    assert after is not None
    # Its spec, labels and owners are as made; only the Deployment controller has written status since
    # (comparing resourceVersion raced with that write).
    assert after["metadata"]["generation"] == theirs["metadata"]["generation"]
    assert after["spec"] == theirs["spec"]
    assert after["metadata"].get("labels") == theirs["metadata"].get("labels")
    assert "ownerReferences" not in after["metadata"]
    writers = {entry["manager"] for entry in after["metadata"]["managedFields"]}
    assert writers <= {"kubectl-create", "kube-controller-manager"}, writers
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/web:1"
    # What the check reads: only metadata, from the API server's watch cache, enough to tell whose.
    held = read_metadata(api_client, "Deployment", namespace, "falcon-7b")
    assert held is not None and held["kind"] == "PartialObjectMetadata" and "spec" not in held
    assert claim(held, "falcon-7b", None) is Claim.OTHER
    llmd = get_json(kubeconfig, "llmd", "falcon-7b", "-n", namespace)
    ours = read_metadata(api_client, "Service", namespace, "falcon-7b")  # applied before the Deployment
    assert llmd is not None and ours is not None
    assert claim(ours, "falcon-7b", llmd["metadata"]["uid"]) is Claim.OURS
    assert read_metadata(api_client, "LeaderWorkerSet", namespace, "falcon-7b") is None  # a 404 either way
