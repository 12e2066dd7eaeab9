"""vramgate in a real cluster: its own image, installed with its chart, on a kubelet node that runs pods.

The control plane (its own, with endpoint routing for webhooks) gets one real node: containerd, runc
and a CNI bridge (support.node). The operator image is built from the repository's Dockerfile, and
the LLMDeployments run a stand-in server (tests/standin) that starts in a second without a GPU and
reports its KV cache as vLLM does. The tests run in file order: install, admission, a server that
starts, planned against observed, upgrade, a killed operator, uninstall, and finally teardown, which
must leave nothing on the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.controlplane import LocalControlPlane
from support.images import NodeImages
from support.incluster import (
    CHART,
    RELEASE,
    REPO,
    SYSTEM_NAMESPACE,
    allowed_images,
    as_json,
    helm_values,
    images,
    server_resource,
)
from support.kubectl import helm, kubectl
from support.node import RealNode, unavailable_reason
from support.wait import settled, wait_for

# The first test also builds the images when the cache is cold (about 4 min on 2 cores).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

if (reason := unavailable_reason()) is not None:
    pytest.skip(f"in-cluster tests: {reason}", allow_module_level=True)

NAMESPACE = "llm"
FITS = REPO / "examples" / "falcon-7b-a10g.yaml"
REFUSED = REPO / "examples" / "llama-3.1-70b-too-big.yaml"
OFFSET = "0.3"  # the second server reports 30% less KV cache than its arguments ask for
GPUS = 2  # one per server


@dataclass
class Cluster:
    control_plane: LocalControlPlane
    node: RealNode
    built: NodeImages
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return kubectl(*args, kubeconfig=self.kubeconfig, input=input, check=check).stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if request.config.getoption("--kubeconfig"):
        pytest.skip("in-cluster tests start their own control plane and node")
    built = images()
    with (
        LocalControlPlane(aggregator_routing=True) as control_plane,
        RealNode(control_plane, (built.operator, built.standin), built.pause, gpu_count=GPUS) as node,
    ):
        yield Cluster(control_plane, node, built)


def operator_pods(cluster: Cluster) -> list[dict[str, Any]]:
    selector = "app.kubernetes.io/component=operator"
    pods: list[dict[str, Any]] = cluster.get("pods", "-n", SYSTEM_NAMESPACE, "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def leader_pod(cluster: Cluster) -> dict[str, Any] | None:
    """The replica holding the Lease (its identity starts with the pod's name); None while the Lease
    names no current replica: after a rollout it keeps a replaced pod's identity until a new replica
    takes it over."""
    lease = cluster.get("lease", "-n", SYSTEM_NAMESPACE, RELEASE)
    holder = lease["spec"].get("holderIdentity") or ""
    return next(
        (
            pod
            for pod in operator_pods(cluster)
            if holder == pod["metadata"]["name"] or holder.startswith(f"{pod['metadata']['name']}-")
        ),
        None,
    )


def reconciling(pod: dict[str, Any]) -> dict[str, Any]:
    """The status of the pod's reconciling container (the other serves the webhook)."""
    statuses: list[dict[str, Any]] = pod["status"]["containerStatuses"]
    return next(status for status in statuses if status["name"] == "operator")


def pod_ready(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return pod["status"].get("phase") == "Running" and bool(statuses) and all(s["ready"] for s in statuses)


def test_helm_install_runs_the_operator_pod_ready(cluster: Cluster) -> None:
    started = time.monotonic()
    helm(
        "install",
        RELEASE,
        str(CHART),
        f"--namespace={SYSTEM_NAMESPACE}",
        "--create-namespace",
        "--wait",
        "--timeout=5m",
        *helm_values(cluster.built),
        kubeconfig=cluster.kubeconfig,
    )
    cluster.notes["install_seconds"] = time.monotonic() - started
    replicas = cluster.get("deployment", "-n", SYSTEM_NAMESPACE, RELEASE)["spec"]["replicas"]
    pods = operator_pods(cluster)
    assert len(pods) == replicas and all(pod_ready(p) for p in pods)
    assert all(p["spec"]["nodeName"] == cluster.node.name for p in pods)
    images = {c["image"] for p in pods for c in p["spec"]["containers"]}
    assert images == {cluster.built.operator.reference}
    listing = cluster.kubectl("get", "pods", "-n", SYSTEM_NAMESPACE).splitlines()[1:]
    # Two containers each: the webhook and the reconciler.
    assert len(listing) == replicas and all(" 2/2 " in line and "Running" in line for line in listing)
    cluster.kubectl("create", "namespace", NAMESPACE)
    wait_for(
        lambda: "default" in cluster.kubectl("get", "serviceaccounts", "-n", NAMESPACE, check=False),
        message="the namespace's default ServiceAccount",
    )


def test_the_charts_webhook_refuses_what_does_not_fit_with_the_offline_message(cluster: Cluster) -> None:
    """Through the chart's ValidatingWebhookConfiguration, Service and certificate, to the pod."""
    refused = kubectl(
        "apply", "-n", NAMESPACE, "-f", str(REFUSED), kubeconfig=cluster.kubeconfig, check=False
    )
    assert refused.returncode != 0
    # The same decision made out of cluster: `vramgate check` against the same cluster's nodes.
    command = [str(Path(sys.executable).parent / "vramgate"), "check", "-f", str(REFUSED)]
    policy = ",".join(allowed_images(cluster.built))
    offline = subprocess.run(
        [*command, "--kubeconfig", str(cluster.kubeconfig), "--allowed-images", policy],
        capture_output=True,
        text=True,
        check=False,
    )
    assert offline.returncode != 0
    # The webhook names the resource with its namespace; the file has none.
    message = refused.stderr.split("denied the request: ", 1)[1].split(" refused: ", 1)[1].strip()
    assert message and message in offline.stdout + offline.stderr, (message, offline.stdout, offline.stderr)


def apply_server(cluster: Cluster, name: str, env: dict[str, str] | None = None) -> None:
    resource = server_resource(FITS, cluster.built, name=name, env=env)
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=as_json(resource))


def llmd(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.get("llmd", "-n", NAMESPACE, name)  # type: ignore[no-any-return]


def ready_condition(resource: dict[str, Any]) -> str | None:
    for condition in resource.get("status", {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return condition["status"]  # type: ignore[no-any-return]
    return None


def test_the_fitting_example_starts_its_server_on_the_node(cluster: Cluster) -> None:
    apply_server(cluster, "falcon-7b")
    wait_for(lambda: ready_condition(llmd(cluster, "falcon-7b")) == "True", timeout=180, message="Ready")
    pods = cluster.get("pods", "-n", NAMESPACE, "-l", "vramgate.dev/llmdeployment=falcon-7b")["items"]
    assert len(pods) == 1 and pod_ready(pods[0]) and pods[0]["spec"]["nodeName"] == cluster.node.name
    server = pods[0]["spec"]["containers"][0]
    assert server["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    table = cluster.kubectl("get", "llmd", "-n", NAMESPACE, "falcon-7b")
    header, row = table.splitlines()[:2]
    assert row.split()[header.split().index("READY")] == "True", table


def capacity(cluster: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = llmd(cluster, name).get("status", {}).get("capacity") or {}
    return found


def events(cluster: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    items = cluster.get("events", "-n", NAMESPACE, f"--field-selector=involvedObject.name={name}")["items"]
    return [e for e in items if e.get("reason") == reason]


def test_the_operator_records_planned_against_observed_capacity(cluster: Cluster) -> None:
    found = wait_for(lambda: capacity(cluster, "falcon-7b"), timeout=60, message="status.capacity")
    plan = llmd(cluster, "falcon-7b")["status"]["plan"]
    assert found["plannedTokens"] == plan["kvCapacityTokens"]
    # The stand-in holds exactly max-num-seqs x max-model-len, in whole 16-token blocks.
    assert found["observedTokens"] == -(-plan["maxBatch"] * plan["maxModelLen"] // 16) * 16
    assert found["relativeError"] == pytest.approx(
        (found["observedTokens"] - found["plannedTokens"]) / found["plannedTokens"], abs=1e-4
    )
    assert abs(found["relativeError"]) < 0.1
    assert not events(cluster, "falcon-7b", "CapacityMismatch")
    wait_for(lambda: events(cluster, "falcon-7b", "CapacityObserved"), message="a CapacityObserved event")


def test_an_engine_with_less_kv_cache_than_planned_gets_a_warning(cluster: Cluster) -> None:
    apply_server(cluster, "falcon-short", env={"STANDIN_KV_OFFSET": OFFSET})
    found = wait_for(lambda: capacity(cluster, "falcon-short"), timeout=180, message="status.capacity")
    assert found["relativeError"] < -0.25
    warning = wait_for(lambda: events(cluster, "falcon-short", "CapacityMismatch"), message="the warning")
    assert warning[0]["type"] == "Warning" and "more than 10% short" in warning[0]["message"]


class WriteProbe(threading.Thread):
    """Server-side dry-run writes of an LLMDeployment every 0.2 s, recording the refused ones."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.refused: list[float] = []
        self.accepted: list[float] = []
        self.body = as_json(server_resource(FITS, cluster.built, name="probe"))

    def run(self) -> None:
        while not self.stop.is_set():
            result = kubectl(
                "apply", "-n", NAMESPACE, "--dry-run=server", "-f", "-",
                kubeconfig=self.cluster.kubeconfig, input=self.body, check=False,
            )  # fmt: skip
            (self.accepted if result.returncode == 0 else self.refused).append(time.monotonic())
            time.sleep(0.2)

    def longest_refusal(self) -> float:
        """Longest stretch from a refused write to the next accepted one."""
        longest = 0.0
        for start in self.refused:
            after = [t for t in self.accepted if t > start]
            end = after[0] if after else time.monotonic()
            longest = max(longest, end - start)
        return longest


def test_helm_upgrade_with_a_changed_value_and_the_window_of_refused_writes(cluster: Cluster) -> None:
    before = {p["metadata"]["name"] for p in operator_pods(cluster)}
    probe = WriteProbe(cluster)
    probe.start()
    time.sleep(2)
    started = time.monotonic()
    helm(
        "upgrade",
        RELEASE,
        str(CHART),
        f"--namespace={SYSTEM_NAMESPACE}",
        "--wait",
        "--timeout=5m",
        *helm_values(cluster.built, "--set=logFormat=json"),
        kubeconfig=cluster.kubeconfig,
    )
    upgrade_seconds = time.monotonic() - started
    time.sleep(3)
    probe.stop.set()
    probe.join()
    window = probe.longest_refusal()
    cluster.notes["upgrade"] = {"seconds": upgrade_seconds, "refused_window": window}
    print(
        f"helm upgrade took {upgrade_seconds:.1f}s; {len(probe.refused)} of "
        f"{len(probe.refused) + len(probe.accepted)} probe writes refused; longest window {window:.1f}s"
    )
    after = operator_pods(cluster)
    assert not before & {p["metadata"]["name"] for p in after} and all(pod_ready(p) for p in after)
    assert probe.accepted and probe.accepted[-1] > started + upgrade_seconds  # writes work again
    assert window <= upgrade_seconds + 1


def test_a_killed_operator_is_restarted_by_the_kubelet_and_nothing_is_lost_or_doubled(
    cluster: Cluster,
) -> None:
    def world() -> tuple[Any, ...]:
        deployments = cluster.get("deployments", "-n", NAMESPACE)["items"]
        services = cluster.get("services", "-n", NAMESPACE)["items"]
        resources = cluster.get("llmd", "-n", NAMESPACE)["items"]
        return (
            sorted((d["metadata"]["name"], d["metadata"]["resourceVersion"]) for d in deployments),
            sorted((s["metadata"]["name"], s["metadata"]["resourceVersion"]) for s in services),
            sorted((r["metadata"]["name"], json.dumps(r["status"].get("capacity"))) for r in resources),
        )

    before = settled(world, quiet_seconds=5, message="the generated objects")
    pod = wait_for(lambda: leader_pod(cluster), timeout=60, message="a leader")
    name = pod["metadata"]["name"]
    restarts = reconciling(pod)["restartCount"]
    container_id = reconciling(pod)["containerID"].split("//")[-1]
    pid = int(cluster.node.ctr("tasks", "list").split(container_id)[1].split()[0])
    os.kill(pid, signal.SIGKILL)  # the leader's reconciling process, from the host: PID 1 of its container

    def restarted() -> bool:
        again = next((p for p in operator_pods(cluster) if p["metadata"]["name"] == name), None)
        # The same pod, its container restarted: the kubelet's doing, not the Deployment controller's.
        return again is not None and reconciling(again)["restartCount"] > restarts

    wait_for(restarted, timeout=120, message="the operator container restarted")
    wait_for(lambda: all(pod_ready(p) for p in operator_pods(cluster)), timeout=120, message="Ready again")
    wait_for(lambda: leader_pod(cluster), timeout=60, message="a leader again")
    time.sleep(5)  # the restarted operator resumes every resource meanwhile
    assert settled(world, quiet_seconds=5, message="the generated objects") == before
    for name in ("falcon-7b", "falcon-short"):
        assert len(events(cluster, name, "CapacityObserved") + events(cluster, name, "CapacityMismatch")) == 1


def test_helm_uninstall_leaves_nothing_and_writes_pass_again(cluster: Cluster) -> None:
    helm("uninstall", RELEASE, f"--namespace={SYSTEM_NAMESPACE}", "--wait", kubeconfig=cluster.kubeconfig)
    for kind in ("validatingwebhookconfigurations", "clusterroles", "clusterrolebindings"):
        names = [i["metadata"]["name"] for i in cluster.get(kind)["items"]]
        assert not [n for n in names if "vramgate" in n], (kind, names)
    for kind in ("services", "deployments", "serviceaccounts", "secrets", "roles", "rolebindings"):
        left = [
            i["metadata"]["name"]
            for i in cluster.get(kind, "-n", SYSTEM_NAMESPACE)["items"]
            if i["metadata"]["name"] != "default" and not i["metadata"]["name"].startswith("sh.helm.")
        ]
        assert not left, (kind, left)
    # No webhook: the too-big resource is stored (nothing sizes it now).
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(REFUSED))


def test_teardown_leaves_nothing_on_the_host(cluster: Cluster) -> None:
    node = cluster.node
    assert node.leftovers()  # while it runs, the check finds its bridge, rule, processes and mounts
    in_containers = node.container_processes()
    assert in_containers, "the operator and server pods run processes under the node's shims"
    node.stop()
    assert node.leftovers() == []
    outlived = [pid for pid in in_containers if Path(f"/proc/{pid}").exists()]
    assert not outlived, f"container processes outlived the node: {outlived}"
