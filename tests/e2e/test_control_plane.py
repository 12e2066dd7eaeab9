"""Smoke tests of the bare cluster: each proves a Kubernetes feature vramgate relies on works
in the cluster under test (schema validation, webhooks, server-side dry-run, garbage
collection, GPU scheduling, helm), so later e2e failures point at vramgate, not the setup."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from support.gpunodes import register_gpu_node
from support.kubectl import helm, kubectl
from support.wait import wait_for
from support.webhook import AdmissionRequest, RecordingWebhook
from vramgate.decision import max_group_name_length

pytestmark = pytest.mark.e2e

GROUP = "smoke.vramgate.dev"
WIDGETS = f"widgets.{GROUP}"
# Where the API server can reach webhooks served by the tests (kind: the Docker gateway).
WEBHOOK_HOST = os.environ.get("VRAMGATE_TEST_WEBHOOK_HOST", "127.0.0.1")
DENIAL = "widgets of size huge do not fit any GPU"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": WIDGETS},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["replicas"],
                                "properties": {
                                    "replicas": {"type": "integer", "minimum": 1},
                                    "size": {"type": "string", "enum": ["small", "large", "huge"]},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, replicas: int = 1, size: str = "small") -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "size": size},
        }
    )


@pytest.fixture(scope="module")
def widget_crd(kubeconfig: Path) -> Iterator[str]:
    """The throwaway Widget CRD, established; shared by the module because CRDs are
    cluster-wide and the garbage collector only learns about new kinds periodically."""
    kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=json.dumps(CRD))
    kubectl("wait", "--for=condition=Established", f"crd/{WIDGETS}", "--timeout=60s", kubeconfig=kubeconfig)
    yield WIDGETS
    kubectl("delete", "crd", WIDGETS, "--wait=false", kubeconfig=kubeconfig)


@pytest.fixture
def webhook(kubeconfig: Path, namespace: str, widget_crd: str) -> Iterator[RecordingWebhook]:
    """A validating webhook for Widgets in this test's namespace that denies size ``huge``.

    Yields once the API server demonstrably calls it (its configuration is picked up
    asynchronously), with the probe requests forgotten.
    """
    name = f"deny-huge-{namespace}.{GROUP}"

    def deny_huge(request: AdmissionRequest) -> str | None:
        return DENIAL if request["object"]["spec"]["size"] == "huge" else None

    with RecordingWebhook(deny_huge, host=WEBHOOK_HOST) as hook:
        configuration = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": name,
                    "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle},
                    "rules": [
                        {
                            "apiGroups": [GROUP],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["widgets"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "failurePolicy": "Fail",
                    # Declaring no side effects is what allows dry-run requests through it.
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                }
            ],
        }
        kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=json.dumps(configuration))
        try:
            wait_for(
                lambda: apply(kubeconfig, namespace, widget("probe"), "--dry-run=server") and hook.requests,
                timeout=30,
                message="the API server calling the webhook",
            )
            hook.requests.clear()
            yield hook
        finally:
            kubectl("delete", "validatingwebhookconfiguration", name, kubeconfig=kubeconfig)


def test_crd_schema_admits_valid_and_refuses_invalid_resources(
    kubeconfig: Path, namespace: str, widget_crd: str
) -> None:
    apply(kubeconfig, namespace, widget("valid", replicas=2))

    refused = apply(kubeconfig, namespace, widget("invalid", replicas=0), check=False)

    assert refused.returncode != 0
    assert "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1" in (
        refused.stderr
    )
    stored = json.loads(
        kubectl("get", "widgets", "-n", namespace, "-o", "json", kubeconfig=kubeconfig).stdout
    )
    assert [item["metadata"]["name"] for item in stored["items"]] == ["valid"]
    assert stored["items"][0]["spec"] == {"replicas": 2, "size": "small"}


def test_validating_webhook_denial_is_what_kubectl_prints(
    kubeconfig: Path, namespace: str, webhook: RecordingWebhook
) -> None:
    denied = apply(kubeconfig, namespace, widget("big", size="huge"), check=False)

    assert denied.returncode != 0
    assert f'admission webhook "deny-huge-{namespace}.{GROUP}" denied the request: {DENIAL}' in denied.stderr
    assert [request["name"] for request in webhook.requests] == ["big"]
    assert get_json(kubeconfig, namespace, "widget", "big") is None


def test_server_dry_run_goes_through_the_webhook_and_stores_nothing(
    kubeconfig: Path, namespace: str, webhook: RecordingWebhook
) -> None:
    result = apply(kubeconfig, namespace, widget("dry"), "--dry-run=server")

    assert "widget.smoke.vramgate.dev/dry created (server dry run)" in result.stdout
    seen: list[AdmissionRequest] = webhook.requests
    assert [(request["name"], request["operation"], request["dryRun"]) for request in seen] == [
        ("dry", "CREATE", True)
    ]
    assert get_json(kubeconfig, namespace, "widget", "dry") is None


def test_service_range_has_room_for_a_fleet_and_nodes_get_pod_ranges(
    kubeconfig: Path, namespace: str, api_client: client.ApiClient
) -> None:
    """10.0.39.16 lies outside any /24 of the range's start: only a range of 10,000+ addresses has it."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "far", "namespace": namespace},
        "spec": {"clusterIP": "10.0.39.16", "ports": [{"port": 80}]},
    }
    apply(kubeconfig, namespace, json.dumps(service))
    node = f"gpu-cidr-{secrets.token_hex(3)}"
    register_gpu_node(api_client, node, product="NVIDIA-L4", memory_mib=23034)

    def allocated() -> str | None:
        spec = client.CoreV1Api(api_client).read_node(node).spec
        return spec.pod_cidr if spec else None

    try:
        pod_cidr = wait_for(
            allocated,
            timeout=30,
            message="a pod range allocated to the node",
        )
        assert pod_cidr.startswith("10.") and pod_cidr.endswith("/24")
    finally:
        client.CoreV1Api(api_client).delete_node(node)


def test_deployment_owned_by_a_custom_resource_is_garbage_collected(
    kubeconfig: Path, namespace: str, widget_crd: str
) -> None:
    apply(kubeconfig, namespace, widget("owner"))
    owner = get_json(kubeconfig, namespace, "widget", "owner")
    assert owner is not None
    deployment = owned_deployment("owned", owner)
    apply(kubeconfig, namespace, json.dumps(deployment))
    # The deployment controller acting proves the controller manager runs.
    wait_for(
        lambda: list_names(kubeconfig, namespace, "replicasets"),
        timeout=30,
        message="a ReplicaSet created for the owned Deployment",
    )

    # Foreground: the owner is kept (by a finalizer) until the garbage collector has deleted
    # its dependents. The collector learns of a new kind only on its 30 s discovery resync; a
    # background delete before that would wait on its exponential retries instead.
    kubectl(
        "delete",
        "widget",
        "owner",
        "-n",
        namespace,
        "--cascade=foreground",
        "--wait=false",
        kubeconfig=kubeconfig,
    )

    wait_for(
        lambda: get_json(kubeconfig, namespace, "deployment", "owned") is None,
        timeout=90,
        message="the garbage collector deleting the Deployment whose owner is being deleted",
    )
    wait_for(
        lambda: not list_names(kubeconfig, namespace, "replicasets"),
        timeout=60,
        message="the garbage collector deleting the Deployment's ReplicaSets",
    )
    wait_for(
        lambda: get_json(kubeconfig, namespace, "widget", "owner") is None,
        timeout=30,
        message="the owner going once its dependents are gone",
    )


def unschedulable_statefulset(name: str) -> dict[str, Any]:
    # The revision hash is a decimal FNV-32 of the template, so 9 or 10 characters: these labels give
    # one of 10, the longest, which the limit must leave room for.
    labels = {"app": "long-name", "v": "0"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"vramgate.dev/no-such-node": "true"},  # created, never bound
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                },
            },
        },
    }


def test_the_longest_leaderworkerset_name_admitted_gets_its_worker_pods_and_one_more_does_not(
    kubeconfig: Path, namespace: str
) -> None:
    """LeaderWorkerSet names its worker StatefulSet `<name>-<group>`; the StatefulSet controller labels
    each pod with `<statefulset>-<revision hash>`. Admission's limit is the longest name whose pods the
    API server still accepts."""
    longest = "n" * max_group_name_length(replicas=1)
    for name in (f"{longest}-0", f"{longest}n-0"):
        apply(kubeconfig, namespace, json.dumps(unschedulable_statefulset(name)))
    wait_for(
        lambda: get_json(kubeconfig, namespace, "pod", f"{longest}-0-0"),
        timeout=30,
        message="the worker pod of the longest admitted name",
    )
    refusals = wait_for(
        lambda: get_json(
            kubeconfig,
            namespace,
            "events",
            f"--field-selector=involvedObject.name={longest}n-0,reason=FailedCreate",
        )["items"],
        timeout=30,
        message="the StatefulSet controller failing to create the pod of a name one character longer",
    )
    assert "must be no more than 63 characters" in refusals[0]["message"]
    assert get_json(kubeconfig, namespace, "pod", f"{longest}n-0-0") is None
    revision = list_names(kubeconfig, namespace, "controllerrevisions")[0]
    assert len(revision.rsplit("-", 1)[1]) == 10  # the template gives the longest hash


def test_scheduler_binds_gpu_pods_only_to_free_gpus_of_the_requested_product(
    kubeconfig: Path, api_client: client.ApiClient, namespace: str
) -> None:
    suffix = secrets.token_hex(3)
    a10g, l4 = f"a10g-{suffix}", f"l4-{suffix}"
    register_gpu_node(api_client, a10g, product="NVIDIA-A10G", memory_mib=23028, count=1)
    register_gpu_node(api_client, l4, product="NVIDIA-L4", memory_mib=23034, count=1)
    try:
        create_gpu_pod(kubeconfig, namespace, "first", product="NVIDIA-A10G")
        node_name = wait_for(
            lambda: get_json(kubeconfig, namespace, "pod", "first")["spec"].get("nodeName"),
            timeout=30,
            message="the scheduler binding the GPU pod",
        )
        assert node_name == a10g

        # The A10G's only GPU is taken: the free L4 GPU must not be used instead.
        create_gpu_pod(kubeconfig, namespace, "second", product="NVIDIA-A10G")
        scheduled = wait_for(
            lambda: pod_condition(kubeconfig, namespace, "second", "PodScheduled"),
            timeout=30,
            message="the scheduler reporting the second GPU pod unschedulable",
        )
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        assert "Insufficient nvidia.com/gpu" in scheduled["message"]
        assert "didn't match Pod's node affinity/selector" in scheduled["message"]
        assert "nodeName" not in get_json(kubeconfig, namespace, "pod", "second")["spec"]
    finally:
        kubectl("delete", "node", a10g, l4, kubeconfig=kubeconfig)


def test_helm_installs_and_uninstalls_a_chart(kubeconfig: Path, namespace: str, tmp_path: Path) -> None:
    chart = write_chart(tmp_path / "smoke")

    helm("install", "smoke", str(chart), "-n", namespace, "--set", "greeting=hello", kubeconfig=kubeconfig)

    config_map = json.loads(
        kubectl(
            "get", "configmap", "smoke-greeting", "-n", namespace, "-o", "json", kubeconfig=kubeconfig
        ).stdout
    )
    assert config_map["data"] == {"greeting": "hello"}
    assert config_map["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    releases = json.loads(helm("list", "-n", namespace, "-o", "json", kubeconfig=kubeconfig).stdout)
    assert [(release["name"], release["status"]) for release in releases] == [("smoke", "deployed")]

    helm("uninstall", "smoke", "-n", namespace, "--wait", kubeconfig=kubeconfig)

    remaining = kubectl(
        "get", "configmap", "smoke-greeting", "-n", namespace, kubeconfig=kubeconfig, check=False
    )
    assert remaining.returncode != 0
    assert 'configmaps "smoke-greeting" not found' in remaining.stderr
    assert json.loads(helm("list", "-n", namespace, "-o", "json", kubeconfig=kubeconfig).stdout) == []


def apply(
    kubeconfig: Path, namespace: str, manifest: str, *flags: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return kubectl(
        "apply", "-n", namespace, *flags, "-f", "-", kubeconfig=kubeconfig, input=manifest, check=check
    )


def get_json(kubeconfig: Path, namespace: str, *what: str) -> Any:
    """``kubectl get -o json`` of one object, or None when it does not exist."""
    result = kubectl("get", *what, "-n", namespace, "-o", "json", "--ignore-not-found", kubeconfig=kubeconfig)
    return json.loads(result.stdout) if result.stdout.strip() else None


def list_names(kubeconfig: Path, namespace: str, resource: str) -> list[str]:
    result = kubectl("get", resource, "-n", namespace, "-o", "name", kubeconfig=kubeconfig)
    return result.stdout.split()


def owned_deployment(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def pod_condition(kubeconfig: Path, namespace: str, name: str, condition_type: str) -> Any:
    conditions = get_json(kubeconfig, namespace, "pod", name)["status"].get("conditions", [])
    return next((condition for condition in conditions if condition["type"] == condition_type), None)


def create_gpu_pod(kubeconfig: Path, namespace: str, name: str, product: str) -> None:
    """A pod needing one GPU of ``product``, selected by its GPU Feature Discovery label."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": product},
            "containers": [
                {
                    "name": "server",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }
    apply(kubeconfig, namespace, json.dumps(pod))


def write_chart(folder: Path) -> Path:
    """A minimal chart rendering one ConfigMap from a value."""
    (folder / "templates").mkdir(parents=True)
    (folder / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": "smoke", "version": "0.1.0", "type": "application"})
    )
    (folder / "values.yaml").write_text(yaml.safe_dump({"greeting": "hi"}))
    (folder / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: {{ .Release.Name }}-greeting\n"
        "data:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
    )
    return folder
