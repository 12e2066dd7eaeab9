"""`helm install` of charts/vramgate into the control plane, and `helm uninstall` out of it.

There is no kubelet, so the operator pod never runs: these tests check what the API server stores
and how it routes admission, not the operator itself (tests of the operator run it out of cluster).
Because no pod serves the chart's webhook, the release watches only a namespace of its own
(the webhook's namespaceSelector matches nothing else), starts with failurePolicy Ignore, and is
always uninstalled, so it can never refuse another test's LLMDeployments. Cluster-scoped names
carry the release namespace, so they never clash with the operator tests' `vramgate.dev`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.kubectl import helm, kubectl
from support.wait import wait_for

pytestmark = pytest.mark.e2e

CHART = Path(__file__).resolve().parents[2] / "charts" / "vramgate"
CRD = "llmdeployments.vramgate.dev"
RELEASE = "vramgate"  # the full name is then "vramgate": Deployment vramgate, Service vramgate-webhook...
WEBHOOK = "validate-llmdeployment.vramgate.dev"


@dataclass(frozen=True)
class Release:
    namespace: str  # where the operator is installed
    watched: str  # the only namespace the operator watches and the webhook validates

    @property
    def cluster_name(self) -> str:  # ClusterRole, ClusterRoleBinding
        return f"{RELEASE}-{self.namespace}"

    @property
    def webhook_configuration(self) -> str:
        return f"{self.cluster_name}.vramgate.dev"


def get_json(kubeconfig: Path, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)


def llm_deployment(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "vramgate.dev/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
                "workload": {"maxSequenceLength": 8192, "concurrency": 16},
            },
        }
    )


@pytest.fixture
def release(kubeconfig: Path, namespace: str) -> Iterator[Release]:
    """The chart installed in ``namespace``; uninstalled afterwards whatever the test did."""
    installed = Release(namespace=namespace, watched=f"{namespace}-llm")
    kubectl("create", "namespace", installed.watched, kubeconfig=kubeconfig)
    try:
        helm(
            "install", RELEASE, str(CHART), "-n", namespace,
            "--set", "webhook.failurePolicy=Ignore",
            "--set", f"namespaces={{{installed.watched}}}",
            "--set", "logFormat=json",
            kubeconfig=kubeconfig,
        )  # fmt: skip
        yield installed
    finally:
        helm("uninstall", RELEASE, "-n", namespace, "--ignore-not-found", kubeconfig=kubeconfig, check=False)
        kubectl("delete", "namespace", installed.watched, "--wait=false", kubeconfig=kubeconfig, check=False)


def crd_established(kubeconfig: Path) -> bool:
    conditions = get_json(kubeconfig, "crd", CRD)["status"].get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def can_i(kubeconfig: Path, release: Release, verb: str, resource: str) -> bool:
    account = f"system:serviceaccount:{release.namespace}:{RELEASE}"
    result = kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        release.watched,
        "--as",
        account,
        kubeconfig=kubeconfig,
        check=False,
    )
    return bool(result.stdout.strip() == "yes")


def test_chart_installs_the_operator_and_its_webhook(kubeconfig: Path, release: Release) -> None:
    wait_for(lambda: crd_established(kubeconfig), timeout=30, message=f"CRD {CRD} established")
    explained = wait_for(
        lambda: kubectl("explain", "llmdeployment.spec.workload", kubeconfig=kubeconfig, check=False).stdout,
        timeout=30,
        message="kubectl explain llmdeployment.spec.workload",
    )
    assert "maxSequenceLength" in explained

    deployment = get_json(kubeconfig, "deployment", RELEASE, "-n", release.namespace)
    assert deployment["spec"]["replicas"] == 2  # all serve the webhook; the Lease holder reconciles
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    budget = get_json(kubeconfig, "poddisruptionbudget", RELEASE, "-n", release.namespace)
    assert budget["spec"]["minAvailable"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == RELEASE
    assert pod["securityContext"]["runAsNonRoot"] is True
    webhook, operator = pod["containers"]
    assert (webhook["name"], operator["name"]) == ("webhook", "operator")
    # The API server drops empty values; the container still gets the variable, set to "".
    env = {item["name"]: item.get("value", "") for item in webhook["env"] if "valueFrom" not in item}
    reconciling = {item["name"]: item.get("value", "") for item in operator["env"] if "valueFrom" not in item}
    assert env["VRAMGATE_NAMESPACES"] == reconciling["VRAMGATE_NAMESPACES"] == release.watched
    assert (env["VRAMGATE_RECONCILE"], reconciling["VRAMGATE_WEBHOOK_MODE"]) == ("false", "none")
    assert env["VRAMGATE_WEBHOOK_MODE"] == "service"
    assert env["VRAMGATE_WEBHOOK_SERVICE"] == f"{RELEASE}-webhook"
    assert env["VRAMGATE_WEBHOOK_SERVICE_NAMESPACE"] == release.namespace
    assert env["VRAMGATE_WEBHOOK_CONFIGURATION"] == ""
    assert env["VRAMGATE_LOG_FORMAT"] == "json"
    assert webhook["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True

    get_json(kubeconfig, "serviceaccount", RELEASE, "-n", release.namespace)
    service = get_json(kubeconfig, "service", f"{RELEASE}-webhook", "-n", release.namespace)
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(443, "webhook")]
    assert service["spec"]["clusterIP"]
    get_json(kubeconfig, "service", f"{RELEASE}-metrics", "-n", release.namespace)

    # RBAC as the API server evaluates it for the operator's ServiceAccount.
    assert get_json(kubeconfig, "clusterrolebinding", release.cluster_name)["roleRef"]["name"] == (
        release.cluster_name
    )
    for verb, resource in [
        ("watch", "llmdeployments.vramgate.dev"),
        ("patch", "llmdeployments.vramgate.dev/status"),
        ("create", "deployments.apps"),
        ("delete", "services"),
        ("create", "events"),
        ("watch", "namespaces"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ]:
        assert can_i(kubeconfig, release, verb, resource), f"the operator cannot {verb} {resource}"
    for verb, resource in [
        ("get", "secrets"),
        ("create", "pods"),
        ("patch", "validatingwebhookconfigurations"),
    ]:
        assert not can_i(kubeconfig, release, verb, resource), f"the operator may {verb} {resource}"
    # Leader election: its Lease in the release's namespace, and nowhere else.
    account = f"system:serviceaccount:{release.namespace}:{RELEASE}"
    for where, allowed in [(release.namespace, "yes"), (release.watched, "no")]:
        answer = kubectl(
            "auth", "can-i", "update", "leases.coordination.k8s.io", "-n", where, "--as", account,
            kubeconfig=kubeconfig, check=False,
        )  # fmt: skip
        assert answer.stdout.strip() == allowed, f"update leases in {where}: {answer.stdout}"

    configuration = get_json(kubeconfig, "validatingwebhookconfiguration", release.webhook_configuration)
    (webhook,) = configuration["webhooks"]
    assert webhook["name"] == WEBHOOK
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["clientConfig"]["service"] == {
        "name": f"{RELEASE}-webhook",
        "namespace": release.namespace,
        "path": "/validate-llmdeployment",
        "port": 443,
    }
    secret = get_json(kubeconfig, "secret", f"{RELEASE}-webhook-tls", "-n", release.namespace)
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert base64.b64decode(secret["data"]["ca.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")


def test_api_server_routes_llmdeployments_to_the_chart_webhook(kubeconfig: Path, release: Release) -> None:
    wait_for(lambda: crd_established(kubeconfig), timeout=30, message=f"CRD {CRD} established")
    watched = ["-n", release.watched]
    # failurePolicy Ignore: nothing serves the webhook (no kubelet), the LLMDeployment is stored anyway.
    kubectl("create", *watched, "-f", "-", input=llm_deployment("ignored"), kubeconfig=kubeconfig)
    ca_before = get_json(kubeconfig, "secret", f"{RELEASE}-webhook-tls", "-n", release.namespace)["data"]

    helm(
        "upgrade", RELEASE, str(CHART), "-n", release.namespace, "--reuse-values",
        "--set", "webhook.failurePolicy=Fail",
        kubeconfig=kubeconfig,
    )  # fmt: skip

    # The upgrade keeps the certificate (the chart looks the Secret up) and its caBundle.
    secret = get_json(kubeconfig, "secret", f"{RELEASE}-webhook-tls", "-n", release.namespace)
    assert secret["data"] == ca_before
    configuration = get_json(kubeconfig, "validatingwebhookconfiguration", release.webhook_configuration)
    assert configuration["webhooks"][0]["clientConfig"]["caBundle"] == ca_before["ca.crt"]

    # failurePolicy Fail: the API server calls the Service at the handler's path, and refuses.
    refused = kubectl(
        "create", *watched, "-f", "-", input=llm_deployment("refused"), kubeconfig=kubeconfig, check=False
    )
    assert refused.returncode != 0
    assert f'failed calling webhook "{WEBHOOK}"' in refused.stderr
    assert f"{RELEASE}-webhook.{release.namespace}.svc:443/validate-llmdeployment" in refused.stderr
    kubectl("delete", "llmdeployment", "ignored", *watched, "--wait=false", kubeconfig=kubeconfig)


def test_uninstall_removes_everything_but_the_crd(kubeconfig: Path, release: Release) -> None:
    helm("uninstall", RELEASE, "-n", release.namespace, "--wait", kubeconfig=kubeconfig)

    for kind, name, scope in [
        ("deployment", RELEASE, ["-n", release.namespace]),
        ("serviceaccount", RELEASE, ["-n", release.namespace]),
        ("service", f"{RELEASE}-webhook", ["-n", release.namespace]),
        ("service", f"{RELEASE}-metrics", ["-n", release.namespace]),
        ("secret", f"{RELEASE}-webhook-tls", ["-n", release.namespace]),
        ("clusterrole", release.cluster_name, []),
        ("clusterrolebinding", release.cluster_name, []),
        ("validatingwebhookconfiguration", release.webhook_configuration, []),
    ]:
        remaining = kubectl("get", kind, name, *scope, kubeconfig=kubeconfig, check=False)
        assert remaining.returncode != 0 and "NotFound" in remaining.stderr, f"{kind} {name} is left"
    # Helm installs crds/ but never deletes them (that would delete every LLMDeployment).
    assert get_json(kubeconfig, "crd", CRD)["metadata"]["name"] == CRD
