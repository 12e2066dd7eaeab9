"""The hostile corpus online: each case applied with kubectl, as a user would, against the real API
server and the running operator. A case is refused with its field named (by the API server's schema or
the webhook), or accepted and Deployed; and the outcome is the one `vramgate check -f` gives offline.

Every spec that admission accepts must also pass the API server's validation of what it generates:
the last test server-side dry-runs the Deployment and Service of every case the decision accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from support.corpus import Case, load_cases, write_cases
from support.kubectl import kubectl
from support.offline import Verdict, check_files
from support.operator import OperatorProcess
from support.wait import wait_for
from vramgate import manifests
from vramgate.decision import decide

pytestmark = pytest.mark.e2e

CASES = load_cases()
DEPLOY_SECONDS = 60


@pytest.fixture(scope="module")
def corpus_namespace(api_client: client.ApiClient) -> Iterator[str]:
    """One namespace for the whole corpus: case names are unique, and so are its resources."""
    core = client.CoreV1Api(api_client)
    name = "hostile-corpus"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def case_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_cases(CASES, tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def offline(case_files: dict[str, Path]) -> dict[str, Verdict]:
    verdicts = check_files(list(case_files.values()))
    return {name: verdicts[path] for name, path in case_files.items()}


def phase(kubeconfig: Path, namespace: str, name: str) -> str | None:
    result = kubectl("get", "llmd", name, "-n", namespace, "-o", "json", kubeconfig=kubeconfig, check=False)
    if result.returncode != 0:
        return None
    status = json.loads(result.stdout).get("status") or {}
    return status.get("phase") if status.get("deployment") else None


def apply(kubeconfig: Path, namespace: str, manifest: str) -> tuple[bool, str]:
    result = kubectl("apply", "-n", namespace, "-f", "-", kubeconfig=kubeconfig, input=manifest, check=False)
    return result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_is_refused_with_its_field_or_deployed_online_as_offline(
    case: Case,
    kubeconfig: Path,
    corpus_namespace: str,
    operator: OperatorProcess,
    case_files: dict[str, Path],
    offline: dict[str, Verdict],
) -> None:
    name = case.resource_name
    if case.before is not None:
        stored, output = apply(kubeconfig, corpus_namespace, case.before)
        assert stored, output
        wait_for(
            lambda: phase(kubeconfig, corpus_namespace, name) == "Deployed",
            timeout=DEPLOY_SECONDS,
            message=f"{name} Deployed before the update",
        )

    accepted, output = apply(kubeconfig, corpus_namespace, case_files[case.name].read_text())

    assert accepted == offline[case.name].allowed, f"online {output!r}, offline {offline[case.name]}"
    if case.refused is not None:
        assert not accepted, f"accepted: {output}"
        assert (case.online or case.refused) in output
        return
    assert accepted, output
    wait_for(
        lambda: phase(kubeconfig, corpus_namespace, name) == "Deployed",
        timeout=DEPLOY_SECONDS,
        message=f"{name} Deployed",
    )
    kubectl("get", "deployment,service", name, "-n", corpus_namespace, kubeconfig=kubeconfig)


def _owner(case: Case, namespace: str) -> dict[str, Any]:
    resource: dict[str, Any] = yaml.safe_load(case.text)
    resource["metadata"].update(namespace=namespace, uid="00000000-0000-4000-8000-000000000000")
    return resource


ACCEPTED = [case for case in CASES if decide(_owner(case, "n")).allowed]


@pytest.mark.parametrize("case", ACCEPTED, ids=[case.name for case in ACCEPTED])
def test_what_an_accepted_spec_generates_passes_the_api_server(
    case: Case, kubeconfig: Path, namespace: str
) -> None:
    """Nothing admitted may fail later: the API server validates the generated objects as it would
    at apply (server-side dry run, field validation strict)."""
    owner = _owner(case, namespace)
    decision = decide(owner)
    assert decision.spec is not None and decision.plan is not None
    generated = [
        manifests.deployment(owner, decision.spec, decision.plan),
        manifests.service(owner, decision.spec),
    ]
    for manifest in generated:
        manifest["metadata"].pop("ownerReferences")  # the owner exists only in the operator's test
        kubectl(
            "apply", "--server-side", "--dry-run=server", "--validate=strict", "--field-manager=vramgate",
            "-f", "-", kubeconfig=kubeconfig, input=json.dumps(manifest),
        )  # fmt: skip


def test_a_deployment_the_api_server_refuses_at_apply_ends_failed_with_its_message(
    kubeconfig: Path, namespace: str, operator: OperatorProcess, case_files: dict[str, Path]
) -> None:
    """What the decision cannot know (a cluster policy on Deployments) still ends in a status: phase
    Failed with the API server's own message, not an endless retry."""
    policy = f"freeze-{namespace}"
    kubectl("label", "namespace", namespace, f"{policy}=true", kubeconfig=kubeconfig)
    documents = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [
                    {"expression": "false", "message": "Deployments are frozen in this namespace"}
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {policy: "true"}}},
            },
        },
    ]
    kubectl(
        "apply",
        "-f",
        "-",
        kubeconfig=kubeconfig,
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": documents}),
    )
    try:

        def frozen() -> bool:  # the policy takes effect once the API server has loaded it
            result = kubectl(
                "create", "deployment", "probe", "--image=busybox", "-n", namespace, "--dry-run=server",
                kubeconfig=kubeconfig, check=False,
            )  # fmt: skip
            return "frozen" in result.stderr

        wait_for(frozen, timeout=DEPLOY_SECONDS, message="the policy in force")
        accepted, output = apply(kubeconfig, namespace, case_files["plain-fit"].read_text())
        assert accepted, output

        def failed() -> dict[str, Any] | None:
            result = kubectl("get", "llmd", "plain-fit", "-n", namespace, "-o", "json", kubeconfig=kubeconfig)
            status: dict[str, Any] = json.loads(result.stdout).get("status") or {}
            return status if status.get("phase") == "Failed" else None

        status = wait_for(failed, timeout=DEPLOY_SECONDS, message="phase Failed")
        assert "Deployments are frozen in this namespace" in status["message"]
        assert "Traceback" not in operator.log()
    finally:
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            kubectl("delete", kind, policy, "--ignore-not-found", kubeconfig=kubeconfig)
