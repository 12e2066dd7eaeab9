"""The Helm chart (charts/vramgate) and the image recipe (Dockerfile), rendered and read as a cluster would.

The chart is rendered with the helm binary of the control-plane build (``bash hack/controlplane/build.sh``);
without it these tests are skipped. Rendered values are fed back through the operator's own settings
parser and the webhook certificate is verified with ``cryptography``, so a chart that renders but would
not work fails here.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

import vramgate.operator
from support.controlplane import BUILD_COMMAND, ControlPlaneError, find_assets_dir
from vramgate.handlers.admission import WEBHOOK_NAME, WEBHOOK_PATH
from vramgate.handlers.webhook import webhook_configuration
from vramgate.images import ImagePolicy
from vramgate.settings import OperatorConfig, WebhookMode

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vramgate"
CRD_FILE = "llmdeployments.vramgate.dev.yaml"
RELEASE, NAMESPACE = "vg", "vramgate-system"
Manifests = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def helm_binary() -> str:
    try:
        return str(find_assets_dir(required=("helm",)) / "helm")
    except ControlPlaneError:
        pytest.skip(f"the helm binary is not built; build it with: {BUILD_COMMAND}")


@pytest.fixture(scope="module")
def helm_template(helm_binary: str) -> Callable[..., Manifests]:
    """Render the chart with ``--set`` pairs; returns the manifests by (kind, name)."""

    def render(*sets: str, include_crds: bool = False) -> Manifests:
        flags = ["--include-crds"] if include_crds else []
        result = _helm(
            helm_binary, "template", RELEASE, str(CHART), "-n", NAMESPACE, *flags, *_sets(sets), check=True
        )
        documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        manifests = {(doc["kind"], _name(doc)): doc for doc in documents}
        assert len(manifests) == len(documents), "two rendered objects share a kind and name"
        return manifests

    return render


def _name(doc: dict[str, Any]) -> str:
    """An object's name, qualified by its namespace when that is not the release's (per-namespace Roles)."""
    namespace = doc["metadata"].get("namespace", NAMESPACE)
    return doc["metadata"]["name"] if namespace == NAMESPACE else f"{namespace}/{doc['metadata']['name']}"


@pytest.fixture(scope="module")
def default(helm_template: Callable[..., Manifests]) -> Manifests:
    return helm_template()


def _sets(pairs: tuple[str, ...]) -> Iterator[str]:
    for pair in pairs:
        yield from ("--set", pair)


def _helm(binary: str, *args: str, check: bool) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def one(manifests: Manifests, kind: str) -> dict[str, Any]:
    found = [doc for (k, _), doc in manifests.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def containers(manifests: Manifests) -> dict[str, dict[str, Any]]:
    """The operator pod's containers by name."""
    found = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item for item in found}


def container(manifests: Manifests, name: str = "operator") -> dict[str, Any]:
    return containers(manifests)[name]


def plain_env(manifests: Manifests, name: str = "operator") -> dict[str, str]:
    """A container's literal environment, with POD_NAMESPACE as the downward API fills it."""
    env = {
        item["name"]: item.get("value", "")
        for item in container(manifests, name)["env"]
        if "valueFrom" not in item
    }
    env["POD_NAMESPACE"] = NAMESPACE
    return env


def test_helm_lint_passes(helm_binary: str) -> None:
    result = _helm(helm_binary, "lint", "--strict", str(CHART), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_operator_reads_the_rendered_environment(helm_template: Callable[..., Manifests]) -> None:
    manifests = helm_template("namespaces={team-a,team-b}", "logFormat=json")
    reconciling = OperatorConfig.from_environ(plain_env(manifests))
    config = OperatorConfig.from_environ(plain_env(manifests, "webhook"))
    webhook_service = one(manifests, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]

    # Two processes: one serves admission and never reconciles, the other reconciles and serves none.
    assert set(containers(manifests)) == {"webhook", "operator"}
    assert not config.reconcile and reconciling.reconcile
    assert reconciling.webhook_mode is WebhookMode.NONE
    for either in (config, reconciling):
        assert either.namespaces == ("team-a", "team-b")
        assert either.log_format == "json"
    assert config.webhook_mode is WebhookMode.SERVICE
    assert config.webhook_configuration == "", "the chart owns the webhook configuration"
    assert config.webhook_service == webhook_service["service"]["name"]
    assert config.webhook_service_namespace == NAMESPACE
    assert config.webhook_service_port == webhook_service["service"]["port"]
    mounts = {mount["name"]: mount for mount in container(manifests, "webhook")["volumeMounts"]}
    assert mounts["webhook-tls"]["mountPath"] == str(config.webhook_cert_dir)
    assert mounts["webhook-tls"]["readOnly"] is True
    assert "webhook-tls" not in {mount["name"] for mount in container(manifests)["volumeMounts"]}


def test_placement_values_reach_the_operator(helm_template: Callable[..., Manifests]) -> None:
    manifests = helm_template(
        "placement.mode=catalog",
        "placement.catalogTypes={L4,A10G}",
        "placement.hami=true",
        "placement.skipMemoryCheckNamespaces={research}",
    )
    for name in containers(manifests):  # admission decides as the reconciler generates
        config = OperatorConfig.from_environ(plain_env(manifests, name))
        assert (config.placement_mode, config.placement_catalog_types) == ("catalog", ("L4", "A10G"))
        assert config.hami and config.skip_memory_check_namespaces == ("research",)


def test_default_environment_watches_every_namespace(default: Manifests) -> None:
    config = OperatorConfig.from_environ(plain_env(default))
    assert config.namespaces == ()
    assert config.log_format == "plain"


def test_container_ports_match_the_settings_and_probes(default: Manifests) -> None:
    config = OperatorConfig.from_environ(plain_env(default))
    operator = container(default)
    ports = {port["name"]: port["containerPort"] for port in operator["ports"]}
    assert ports == {"metrics": config.metrics_port, "liveness": config.liveness_port}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    admission = OperatorConfig.from_environ(plain_env(default, "webhook"))
    webhook = container(default, "webhook")
    assert {port["name"]: port["containerPort"] for port in webhook["ports"]} == {
        "webhook": admission.webhook_port,
        "webhook-metrics": admission.metrics_port,
        "webhook-live": admission.liveness_port,
    }
    assert webhook["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "webhook-live"}
    named = [port["name"] for item in containers(default).values() for port in item["ports"]]
    assert len(named) == len(set(named)), "port names are the pod's, unique across its containers"
    services = {name: doc for (kind, name), doc in default.items() if kind == "Service"}
    selector = one(default, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for service in services.values():
        assert service["spec"]["selector"].items() <= selector.items()
    (webhook_port,) = services[f"{RELEASE}-vramgate-webhook"]["spec"]["ports"]
    assert (webhook_port["port"], webhook_port["targetPort"]) == (443, "webhook")
    metrics_ports = services[f"{RELEASE}-vramgate-metrics"]["spec"]["ports"]
    assert [(port["port"], port["targetPort"]) for port in metrics_ports] == [
        (config.metrics_port, "metrics"),
        (admission.metrics_port, "webhook-metrics"),
    ]


def test_webhook_stays_served_through_rollouts_drains_and_crashes(default: Manifests) -> None:
    deployment = one(default, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    ready = container(default, "webhook")["readinessProbe"]["httpGet"]
    assert ready == {"path": "/readyz", "port": "webhook-live"}
    budget = one(default, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    spread = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert spread["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    env = {item["name"]: item for item in container(default)["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    config = OperatorConfig.from_environ(plain_env(default))
    assert config.leader_election and config.lease_name == f"{RELEASE}-vramgate"
    assert config.lease_namespace == NAMESPACE and config.lease_seconds == 15


def test_one_replica_has_no_disruption_budget(helm_template: Callable[..., Manifests]) -> None:
    manifests = helm_template("replicas=1")
    assert one(manifests, "Deployment")["spec"]["replicas"] == 1
    assert not [name for kind, name in manifests if kind == "PodDisruptionBudget"]


def test_operator_runs_the_image_entrypoint(default: Manifests) -> None:
    for found in containers(default).values():
        assert "command" not in found and "args" not in found
        assert found["image"] == "vramgate:0.1.0"


def test_webhook_points_at_the_service_and_the_handler_path(default: Manifests) -> None:
    configuration = one(default, "ValidatingWebhookConfiguration")
    assert configuration["metadata"]["name"] != "vramgate.dev", "that name belongs to the managed mode"
    (webhook,) = configuration["webhooks"]
    assert webhook["name"] == WEBHOOK_NAME
    assert webhook["clientConfig"]["service"] == {
        "name": f"{RELEASE}-vramgate-webhook",
        "namespace": NAMESPACE,
        "path": WEBHOOK_PATH,
        "port": 443,
    }
    assert ("Service", webhook["clientConfig"]["service"]["name"]) in default
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["timeoutSeconds"] == 10
    # The same rules and scope as the configuration the operator writes itself in local mode.
    local = webhook_configuration(OperatorConfig(), {}, own_namespace=NAMESPACE)["webhooks"][0]
    assert webhook["rules"] == local["rules"]
    assert webhook["matchPolicy"] == local["matchPolicy"]
    assert (
        webhook["namespaceSelector"]
        == local["namespaceSelector"]
        == {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": ["kube-system", NAMESPACE],
                }
            ]
        }
    )


def test_webhook_values_change_policy_and_namespaces(helm_template: Callable[..., Manifests]) -> None:
    manifests = helm_template("webhook.failurePolicy=Ignore", "namespaces={team-a}")
    (webhook,) = one(manifests, "ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == "Ignore"
    local = webhook_configuration(OperatorConfig(namespaces=("team-a",)), {}, own_namespace=NAMESPACE)
    assert webhook["namespaceSelector"] == local["webhooks"][0]["namespaceSelector"]
    assert {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]} in webhook[
        "namespaceSelector"
    ]["matchExpressions"]


def test_ca_bundle_signs_the_mounted_serving_certificate(default: Manifests) -> None:
    (webhook,) = one(default, "ValidatingWebhookConfiguration")["webhooks"]
    secret = one(default, "Secret")
    volumes = {
        volume["name"]: volume for volume in one(default, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["webhook-tls"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert secret["type"] == "kubernetes.io/tls"
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]

    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    served = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    served.verify_directly_issued_by(ca)
    service = webhook["clientConfig"]["service"]
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{service['name']}.{service['namespace']}.svc" in names.get_values_for_type(x509.DNSName)

    key = load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), password=None)
    assert _public_der(key.public_key()) == _public_der(served.public_key()), "tls.key is tls.crt's key"


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def test_cert_manager_replaces_the_helm_certificate(helm_template: Callable[..., Manifests]) -> None:
    manifests = helm_template("certManager.enabled=true")
    assert not [name for kind, name in manifests if kind == "Secret"]
    certificate, issuer = one(manifests, "Certificate"), one(manifests, "Issuer")
    configuration = one(manifests, "ValidatingWebhookConfiguration")
    (webhook,) = configuration["webhooks"]
    assert "caBundle" not in webhook["clientConfig"]
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    )
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    volumes = {v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    service = webhook["clientConfig"]["service"]
    assert f"{service['name']}.{service['namespace']}.svc" in certificate["spec"]["dnsNames"]


def test_webhook_disabled_turns_admission_off(helm_template: Callable[..., Manifests]) -> None:
    manifests = helm_template("webhook.enabled=false", "metrics.enabled=false")
    kinds = {kind for kind, _ in manifests}
    assert not kinds & {"ValidatingWebhookConfiguration", "Secret", "Service"}
    assert set(containers(manifests)) == {"operator"}
    config = OperatorConfig.from_environ(plain_env(manifests))
    assert config.webhook_mode is WebhookMode.NONE and config.reconcile
    assert config.metrics_port == 0


def _allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule.get("apiGroups", []) and resource in rule.get("resources", []) and verb in rule["verbs"]
        for rule in rules
    )


def test_rbac_grants_what_the_operator_needs_and_no_wildcards(default: Manifests) -> None:
    rules = one(default, "ClusterRole")["rules"]
    needed = {
        ("vramgate.dev", "llmdeployments"): {"get", "list", "watch", "patch", "update"},
        ("vramgate.dev", "llmdeployments/status"): {"get", "patch", "update"},
        ("apps", "deployments"): {"create", "get", "list", "watch", "patch", "update", "delete"},
        ("", "services"): {"create", "get", "list", "watch", "patch", "update", "delete"},
        ("", "events"): {"create", "patch"},
        ("", "namespaces"): {"list", "watch"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("leaderworkerset.x-k8s.io", "leaderworkersets"): {"create", "get", "patch", "update", "delete"},
        ("", "nodes"): {"get", "list", "watch"},
        ("", "pods"): {"get", "list", "watch"},  # free GPUs: what bound pods request, in any namespace
    }
    for (group, resource), verbs in needed.items():
        for verb in verbs:
            assert _allows(rules, group, resource, verb), f"cannot {verb} {resource} in group {group!r}"
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == set(needed), "least privilege: nothing beyond what the operator calls"
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["apiGroups"] + rule["resources"]
    # Reading the inventory grants no write on nodes or pods; the LWS CRD is readable by name only.
    assert not any(
        _allows(rules, "", kind, verb) for kind in ("nodes", "pods") for verb in ("patch", "delete")
    )
    [crd_get] = [r for r in rules if "get" in r["verbs"] and "customresourcedefinitions" in r["resources"]]
    assert crd_get["resourceNames"] == ["leaderworkersets.leaderworkerset.x-k8s.io"]

    role = one(default, "Role")  # leader election, in the release's namespace only
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    role_binding = one(default, "RoleBinding")
    assert role_binding["roleRef"]["name"] == role["metadata"]["name"]
    assert role_binding["subjects"] == one(default, "ClusterRoleBinding")["subjects"]

    binding = one(default, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(default, "ClusterRole")["metadata"]["name"]
    service_account = one(default, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": service_account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    pod = one(default, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == service_account["metadata"]["name"]


def test_watching_a_list_of_namespaces_grants_workload_rights_only_there(
    helm_template: Callable[..., Manifests],
) -> None:
    manifests = helm_template("namespaces={team-a,team-b}")
    cluster_rules = one(manifests, "ClusterRole")["rules"]
    assert {r for rule in cluster_rules for r in rule["resources"]} == {
        "namespaces", "customresourcedefinitions", "nodes", "pods"
    }  # fmt: skip
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in cluster_rules), "reading only"
    roles = {doc["metadata"]["namespace"]: doc for doc in _all(manifests, "Role")}
    bindings = {doc["metadata"]["namespace"]: doc for doc in _all(manifests, "RoleBinding")}
    assert set(roles) == set(bindings) == {"team-a", "team-b", NAMESPACE}  # and the Lease's
    del roles[NAMESPACE]
    service_account = one(manifests, "ServiceAccount")["metadata"]["name"]
    for namespace, role in roles.items():
        for verb in ("create", "patch", "delete"):
            assert _allows(role["rules"], "apps", "deployments", verb)
            assert _allows(role["rules"], "", "services", verb)
        assert _allows(role["rules"], "vramgate.dev", "llmdeployments/status", "patch")
        assert bindings[namespace]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]
        }  # fmt: skip
        assert bindings[namespace]["subjects"][0]["name"] == service_account


def _all(manifests: Manifests, kind: str) -> list[dict[str, Any]]:
    return [doc for (found, _), doc in manifests.items() if found == kind]


def test_the_default_image_policy_is_the_engines_official_images(default: Manifests) -> None:
    config = OperatorConfig.from_environ(plain_env(default))
    assert ImagePolicy.of(config.allowed_images) == ImagePolicy(), "vramgate check decides as the chart does"


def test_pod_runs_non_root_read_only_without_capabilities(default: Manifests) -> None:
    pod = one(default, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False, "Services' variables would read as VRAMGATE_* settings"
    assert set(containers(default)) == {"webhook", "operator"}
    for found in containers(default).values():
        context = found["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert "limits" in found["resources"] and "requests" in found["resources"]
    user = re.search(r"^USER (\d+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert user and int(user.group(1)) == pod["securityContext"]["runAsUser"], "the image's user"


def test_crd_is_shipped_and_identical_to_the_generated_one(helm_template: Callable[..., Manifests]) -> None:
    generated = REPO / "crds" / CRD_FILE
    shipped = CHART / "crds" / CRD_FILE
    assert not shipped.is_symlink(), "helm lint warns about a symlinked CRD: ship a copy (`make crd`)"
    assert shipped.read_bytes() == generated.read_bytes(), "regenerate (`make crd`), never edit, the copy"
    rendered = helm_template(include_crds=True)
    assert rendered[("CustomResourceDefinition", "llmdeployments.vramgate.dev")] == yaml.safe_load(
        generated.read_text()
    )


@pytest.mark.parametrize(
    "bad",
    [
        "webhook.failurePolicy=Sometimes",
        "logFormat=xml",
        "metrics.port=70000",
        "namespaces={Not_A_Name}",
        "placement.mode=anywhere",
        "placement.skipMemoryCheckNamespaces={Not_A_Name}",
        "imgae.tag=x",  # a misspelt top-level key renders nothing it meant to: refuse it
    ],
)
def test_schema_rejects_bad_values(helm_binary: str, bad: str) -> None:
    result = _helm(helm_binary, "template", RELEASE, str(CHART), "--set", bad, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


def test_values_schema_is_json_and_covers_the_main_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), "every value is described by the schema"


def _instructions(path: Path) -> list[str]:
    """The lines of a Dockerfile or .dockerignore without comments and blank lines."""
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def test_dockerfile_is_pinned_non_root_and_runs_the_operator_module() -> None:
    dockerfile = "\n".join(_instructions(REPO / "Dockerfile"))
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.group(1)), "pinned python:3.11 slim"
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert stages == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], "multi-stage, both on the pinned base"
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert re.search(r"^USER [1-9]\d*:[1-9]\d*$", final_stage, re.MULTILINE), "numeric non-root user"
    assert "[test]" not in dockerfile and "gcc" not in final_stage and "apt-get" not in final_stage

    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.MULTILINE)
    assert entrypoint and json.loads(entrypoint.group(1)) == ["python", "-m", "vramgate.operator"]
    assert callable(vramgate.operator.run)
    assert 'if __name__ == "__main__":' in Path(vramgate.operator.__file__).read_text()

    exposed = {
        int(port) for line in re.findall(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE) for port in line.split()
    }
    defaults = OperatorConfig()
    assert exposed == {defaults.webhook_port, defaults.metrics_port, defaults.liveness_port}


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set(_instructions(REPO / ".dockerignore"))
    assert {".venv", ".cache", ".git", "tests", "benchmarks"} <= ignored
    assert "operator" not in ignored and "pyproject.toml" not in ignored


def test_service_monitor_scrapes_exactly_the_metrics_service(
    helm_template: Callable[..., Manifests], default: Manifests
) -> None:
    assert not [key for key in default if key[0] == "ServiceMonitor"], "off unless asked for"
    rendered = helm_template(
        "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"
    )
    monitor = next(doc for (kind, _), doc in rendered.items() if kind == "ServiceMonitor")
    services = [doc for (kind, _), doc in rendered.items() if kind == "Service"]
    selected = [
        s
        for s in services
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [f"{RELEASE}-vramgate-metrics"]
    scraped = [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]]
    assert scraped == [p["name"] for p in selected[0]["spec"]["ports"]] == ["metrics", "webhook-metrics"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert not [
        k
        for k in helm_template("metrics.enabled=false", "metrics.serviceMonitor.enabled=true")
        if k[0] == "ServiceMonitor"
    ]
