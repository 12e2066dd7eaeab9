"""Placement end to end: the operator reads fake GPU nodes (GPU Feature Discovery labels, device-plugin
resources, MIG and HAMi ones too) and bound pods, and the real scheduler binds what it generates.

The module registers its own nodes, of GPU types no other module uses where a test counts GPUs: two
A100-80GB GPUs already taken by a bound pod (a full type), four L40S, a T4 that a test removes, an
A100-40GB cut into MIG 3g.20gb instances, an RTX-3090 shared through HAMi, and two 8-GPU H100 nodes.
One operator serves the module with HAMi on and a permitted namespace for the escape hatch.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.api import exists
from support.gpunodes import register_gpu_node
from support.kubectl import kubectl
from support.lws import lws_crd_path
from support.operator import OperatorProcess
from support.wait import wait_for
from vramgate.crd import CRD_NAME
from vramgate.entry import main

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
CRD_FILE = REPOSITORY / "crds" / f"{CRD_NAME}.yaml"
CONVERGE_SECONDS = 60
SUFFIX = secrets.token_hex(3)
ALLOWED = f"e2e-skip-{SUFFIX}"  # the namespace where the escape hatch is permitted


def _has_default_account(core: client.CoreV1Api, namespace: str) -> Callable[[], bool]:
    return lambda: exists(lambda: core.read_namespaced_service_account("default", namespace))


class Cluster:
    def __init__(self, kubeconfig: Path, api: client.ApiClient, operator: OperatorProcess) -> None:
        self.kubeconfig, self.api, self.operator = kubeconfig, api, operator

    def node(self, role: str) -> str:
        return f"pl-{role}-{SUFFIX}"


NODES: list[tuple[str, dict[str, Any]]] = [
    ("a100-0", {"product": "NVIDIA-A100-SXM4-80GB", "memory_mib": 81920, "count": 2}),
    ("l40s-0", {"product": "NVIDIA-L40S", "memory_mib": 46068, "count": 4}),
    ("t4-0", {"product": "Tesla-T4", "memory_mib": 15360, "count": 2}),
    (
        "mig-0",
        {
            "product": "NVIDIA-A100-SXM4-40GB",
            "memory_mib": 40960,
            "count": 1,
            "labels": {"nvidia.com/mig.strategy": "mixed", "nvidia.com/mig-3g.20gb.memory": "20096"},
            "resources": {"nvidia.com/gpu": "0", "nvidia.com/mig-3g.20gb": "2"},
        },
    ),
    (
        "hami-0",
        {
            "product": "NVIDIA-GeForce-RTX-3090",
            "memory_mib": 24576,
            "count": 2,  # room for a share beside the one the auto-pick test may take here
            "resources": {"nvidia.com/gpu": "20", "nvidia.com/gpumem": "49152"},
        },
    ),
    ("h100-0", {"product": "NVIDIA-H100-80GB-HBM3", "memory_mib": 81559, "count": 8}),
    ("h100-1", {"product": "NVIDIA-H100-80GB-HBM3", "memory_mib": 81559, "count": 8}),
]


@pytest.fixture(scope="module")
def cluster(
    kubeconfig: Path, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    core = client.CoreV1Api(api_client)
    kubectl("apply", "--server-side", "-f", str(CRD_FILE), kubeconfig=kubeconfig)
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", kubeconfig=kubeconfig)
    names = [f"pl-{role}-{SUFFIX}" for role, _ in NODES]
    busy = f"e2e-busy-{SUFFIX}"
    for name, (_, shape) in zip(names, NODES, strict=True):
        register_gpu_node(api_client, name, **shape)
    for namespace in (busy, ALLOWED):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        wait_for(_has_default_account(core, namespace), message=f"namespace {namespace} ready")
    # A training job holds both A100-80GB GPUs: bound to the node (no kubelet runs it; it holds them).
    trainer = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trainer", "namespace": busy},
        "spec": {
            "nodeName": f"pl-a100-0-{SUFFIX}",
            "containers": [
                {"name": "t", "image": "trainer", "resources": {"limits": {"nvidia.com/gpu": "2"}}}
            ],
        },
    }
    kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=json.dumps(trainer))
    operator = OperatorProcess(
        kubeconfig,
        tmp_path_factory.mktemp("placement") / "operator.log",
        env={
            "VRAMGATE_PLACEMENT_MODE": "cluster",
            "VRAMGATE_HAMI": "true",
            "VRAMGATE_SKIP_MEMORY_CHECK_NAMESPACES": ALLOWED,
        },
    )
    operator.start()
    try:
        yield Cluster(kubeconfig, api_client, operator)
    finally:
        operator.stop()
        print(f"--- operator log (tail) ---\n{operator.log_tail(400)}")
        for name in names:
            if exists(lambda: core.read_node(name)):  # noqa: B023 (called at once)
                core.delete_node(name)
        for namespace in (busy, ALLOWED):
            core.delete_namespace(namespace)


def llmd(
    name: str, model: str, seq: int, concurrency: int, gpu: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "vramgate.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model},
            "workload": {"maxSequenceLength": seq, "concurrency": concurrency},
            "gpu": gpu or {},
        },
    }


def apply(cluster: Cluster, namespace: str, resource: dict[str, Any], check: bool = True) -> Any:
    return kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        kubeconfig=cluster.kubeconfig,
        input=json.dumps(resource),
        check=check,
    )


def get(cluster: Cluster, namespace: str, *what: str) -> dict[str, Any] | None:
    result = kubectl("get", *what, "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig, check=False)
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def bound_pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The generated pod once the scheduler has bound it to a node."""

    def bound() -> dict[str, Any] | None:
        pods = get(cluster, namespace, "pods", "-l", f"vramgate.dev/llmdeployment={name}") or {}
        live = [p for p in pods.get("items", []) if not p["metadata"].get("deletionTimestamp")]
        return next((p for p in live if p["spec"].get("nodeName")), None)

    return wait_for(bound, timeout=CONVERGE_SECONDS, message=f"a pod of {name} bound by the scheduler")


def node_product(cluster: Cluster, node: str) -> str:
    found = kubectl("get", "node", node, "-o", "json", kubeconfig=cluster.kubeconfig)
    return str(json.loads(found.stdout)["metadata"]["labels"]["nvidia.com/gpu.product"])


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return (get(cluster, namespace, "llmd", name) or {}).get("status") or {}


def condition(cluster: Cluster, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    conditions = status_of(cluster, namespace, name).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def test_auto_pick_lands_on_a_present_type_with_free_gpus(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, llmd("auto", "meta-llama/Llama-3.1-8B-Instruct", 4096, 8))
    pod = bound_pod(cluster, namespace, "auto")
    placement = wait_for(
        lambda: status_of(cluster, namespace, "auto").get("placement"), timeout=CONVERGE_SECONDS
    )
    assert placement["mode"] == "cluster" and placement["gpuType"] != "A100-80GB"  # the full type
    selector = pod["spec"]["nodeSelector"]["nvidia.com/gpu.product"]
    assert node_product(cluster, pod["spec"]["nodeName"]) == selector


def test_a_preference_list_skips_the_full_type_and_records_why(cluster: Cluster, namespace: str) -> None:
    preferences = {"preferences": [{"type": "A100-80GB"}, {"type": "L40S"}]}
    apply(cluster, namespace, llmd("prefers", "meta-llama/Llama-3.1-8B-Instruct", 4096, 8, preferences))
    pod = bound_pod(cluster, namespace, "prefers")
    assert pod["spec"]["nodeName"] == cluster.node("l40s-0")
    placement = status_of(cluster, namespace, "prefers")["placement"]
    assert placement["chosenPreference"] == 1 and placement["gpuType"] == "L40S"
    [skipped] = placement["skipped"]
    assert skipped["index"] == 0 and skipped["type"] == "A100-80GB"
    assert "no node has 1 free (0 of 2 free)" in skipped["reason"]


def test_a_pinned_full_type_is_admitted_with_a_kubectl_warning(cluster: Cluster, namespace: str) -> None:
    result = apply(
        cluster, namespace, llmd("waits", "meta-llama/Llama-3.1-8B-Instruct", 4096, 8, {"type": "A100-80GB"})
    )
    assert "Warning: no node of A100-80GB has 1 free GPU right now (0 of 2 free)" in result.stderr


def test_a_model_that_fits_nowhere_is_refused_naming_the_cluster(cluster: Cluster, namespace: str) -> None:
    result = apply(
        cluster, namespace, llmd("huge", "meta-llama/Llama-3.1-405B-Instruct", 131072, 64), check=False
    )
    assert result.returncode != 0
    assert "refused: the cluster has " in result.stderr and "H100-80GB" in result.stderr
    assert "none holds meta-llama/Llama-3.1-405B-Instruct (bf16) for 64 x 131072 tokens" in result.stderr


def test_mig_instances_and_hami_shares_bind_through_the_scheduler(cluster: Cluster, namespace: str) -> None:
    small = ("Qwen/Qwen3-0.6B", 2048, 4)
    apply(cluster, namespace, llmd("mig", *small, {"type": "A100-40GB-MIG-3g.20gb"}))
    apply(cluster, namespace, llmd("shared", *small, {"type": "RTX-3090"}))
    mig = bound_pod(cluster, namespace, "mig")
    assert mig["spec"]["nodeName"] == cluster.node("mig-0")
    assert mig["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-3g.20gb": "1"}
    shared = bound_pod(cluster, namespace, "shared")
    assert shared["spec"]["nodeName"] == cluster.node("hami-0")
    limits = shared["spec"]["containers"][0]["resources"]["limits"]
    share = int(limits["nvidia.com/gpumem"])
    assert limits["nvidia.com/gpu"] == "1" and 0 < share < 24576 // 2
    fraction = next(a for a in shared["spec"]["containers"][0]["args"] if a.startswith("--gpu-memory-util"))
    assert float(fraction.split("=")[1]) > 0.5  # against the share, not the whole 24 GiB card
    assert status_of(cluster, namespace, "shared")["placement"]["hamiMemoryMiB"] == share


LWS_CRD = "leaderworkersets.leaderworkerset.x-k8s.io"


def lws_installed(cluster: Cluster) -> bool:
    return exists(lambda: client.ApiextensionsV1Api(cluster.api).read_custom_resource_definition(LWS_CRD))


def install_lws(cluster: Cluster) -> None:
    kubectl("apply", "--server-side", "-f", str(lws_crd_path()), kubeconfig=cluster.kubeconfig)
    # Right after creation the CRD has no conditions yet, which `kubectl wait` takes for an error.
    wait_for(
        lambda: kubectl(
            "wait", "--for=condition=Established", f"crd/{LWS_CRD}", "--timeout=10s",
            kubeconfig=cluster.kubeconfig, check=False,
        ).returncode == 0,
        timeout=CONVERGE_SECONDS,
        message="the LeaderWorkerSet CRD established",
    )  # fmt: skip


def test_a_model_larger_than_a_node_becomes_a_leaderworkerset(cluster: Cluster, namespace: str) -> None:
    deepseek = llmd("deepseek", "deepseek-ai/DeepSeek-V3", 16384, 8)
    deepseek["spec"]["model"]["precision"] = "fp8"
    deepseek["spec"]["gpu"] = {"type": "H100-80GB"}
    if not lws_installed(cluster):
        refused = apply(cluster, namespace, deepseek, check=False)
        assert refused.returncode != 0
        assert "needs 2 nodes of 8 x H100-80GB" in refused.stderr
        assert f"{LWS_CRD} CustomResourceDefinition is missing" in refused.stderr
        install_lws(cluster)
    wait_for(
        lambda: apply(cluster, namespace, deepseek, check=False).returncode == 0,
        timeout=CONVERGE_SECONDS,
        message="the operator noticing the LeaderWorkerSet CRD",
    )
    lws = wait_for(
        lambda: get(cluster, namespace, "leaderworkerset", "deepseek-lws"), timeout=CONVERGE_SECONDS
    )
    template = lws["spec"]["leaderWorkerTemplate"]
    assert template["size"] == 2
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    assert leader["resources"]["limits"]["nvidia.com/gpu"] in (8, "8")
    assert "--pipeline-parallel-size=2" in leader["args"]
    assert template["workerTemplate"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"
    }
    service = wait_for(lambda: get(cluster, namespace, "service", "deepseek"), timeout=CONVERGE_SECONDS)
    assert service["spec"]["selector"]["role"] == "leader"


def test_a_model_moving_between_one_node_and_several_keeps_one_workload(
    cluster: Cluster, namespace: str
) -> None:
    """Llama-3.1-405B in bf16 needs two 8 x H100 nodes; in fp8 one does. Each change of spec replaces
    the LeaderWorkerSet by a Deployment or back, never leaving both holding GPUs."""
    if not lws_installed(cluster):
        install_lws(cluster)
    big = llmd("big", "meta-llama/Llama-3.1-405B-Instruct", 4096, 4, {"type": "H100-80GB"})
    big["spec"]["model"]["precision"] = "bf16"

    def lws() -> dict[str, Any] | None:
        return get(cluster, namespace, "leaderworkerset", "big-lws")

    def deployment() -> dict[str, Any] | None:
        return get(cluster, namespace, "deployment", "big")

    wait_for(lambda: apply(cluster, namespace, big, check=False).returncode == 0, timeout=CONVERGE_SECONDS)
    wait_for(lws, timeout=CONVERGE_SECONDS, message="the LeaderWorkerSet")
    big["spec"]["model"]["precision"] = "fp8"
    apply(cluster, namespace, big)
    wait_for(lambda: deployment() and not lws(), timeout=CONVERGE_SECONDS, message="a Deployment, no LWS")
    assert "role" not in (get(cluster, namespace, "service", "big") or {})["spec"]["selector"]
    big["spec"]["model"]["precision"] = "bf16"
    apply(cluster, namespace, big)
    wait_for(lambda: lws() and not deployment(), timeout=CONVERGE_SECONDS, message="an LWS, no Deployment")


def too_big_with_the_escape_hatch() -> dict[str, Any]:
    resource = llmd("bypass", "meta-llama/Llama-3.1-8B-Instruct", 131072, 64, {"type": "L40S"})
    resource["metadata"]["annotations"] = {"vramgate.dev/skip-memory-check": "true"}
    return resource


def test_the_escape_hatch_is_refused_outside_the_permitted_namespaces(
    cluster: Cluster, namespace: str
) -> None:
    result = apply(cluster, namespace, too_big_with_the_escape_hatch(), check=False)
    assert result.returncode != 0
    assert f"vramgate.dev/skip-memory-check]: not permitted in namespace {namespace}" in result.stderr
    assert "VRAMGATE_SKIP_MEMORY_CHECK_NAMESPACES" in result.stderr


def test_the_escape_hatch_admits_with_a_warning_an_event_and_a_condition(cluster: Cluster) -> None:
    result = apply(cluster, ALLOWED, too_big_with_the_escape_hatch())
    assert "Warning: memory check skipped (vramgate.dev/skip-memory-check): without it, " in result.stderr
    skipped = wait_for(
        lambda: condition(cluster, ALLOWED, "bypass", "MemoryCheckSkipped"), timeout=CONVERGE_SECONDS
    )
    assert skipped["status"] == "True" and "needs " in skipped["message"] and "per GPU" in skipped["message"]

    def event() -> dict[str, Any] | None:
        events = get(cluster, ALLOWED, "events", "--field-selector", "involvedObject.name=bypass") or {}
        return next((e for e in events.get("items", []) if e["reason"] == "MemoryCheckSkipped"), None)

    assert "needs " in wait_for(event, timeout=CONVERGE_SECONDS)["message"]
    assert get(cluster, ALLOWED, "deployment", "bypass") is not None


def schedulable(cluster: Cluster, namespace: str, name: str) -> Callable[[], dict[str, Any] | None]:
    return lambda: condition(cluster, namespace, name, "Schedulable")


def test_removing_a_node_type_flips_schedulable_and_replans_preferences(
    cluster: Cluster, namespace: str
) -> None:
    small = ("Qwen/Qwen3-0.6B", 2048, 4)
    apply(cluster, namespace, llmd("pinned", *small, {"type": "T4"}))
    apply(cluster, namespace, llmd("fallback", *small, {"preferences": [{"type": "T4"}, {"type": "L40S"}]}))
    for name in ("pinned", "fallback"):
        held = wait_for(schedulable(cluster, namespace, name), timeout=CONVERGE_SECONDS)
        assert held["status"] == "True", held
    assert status_of(cluster, namespace, "fallback")["placement"]["chosenPreference"] == 0

    client.CoreV1Api(cluster.api).delete_node(cluster.node("t4-0"))

    def unschedulable() -> dict[str, Any] | None:
        found = condition(cluster, namespace, "pinned", "Schedulable")
        return found if found is not None and found["status"] == "False" else None

    def replanned_placement() -> dict[str, Any] | None:
        found: dict[str, Any] | None = status_of(cluster, namespace, "fallback").get("placement")
        return found if found is not None and found.get("chosenPreference") == 1 else None

    gone = wait_for(
        unschedulable, timeout=CONVERGE_SECONDS, message="Schedulable False on the pinned resource"
    )
    assert "no schedulable node of T4" in gone["message"]
    replanned = wait_for(replanned_placement, timeout=CONVERGE_SECONDS, message="the re-plan onto L40S")
    assert replanned["gpuType"] == "L40S"
    assert "the cluster has no schedulable node of T4" in replanned["skipped"][0]["reason"]
    deployment = get(cluster, namespace, "deployment", "fallback") or {}
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L40S"}
    assert bound_pod(cluster, namespace, "fallback")["spec"]["nodeName"] == cluster.node("l40s-0")


def test_the_cli_plans_on_the_live_cluster_like_the_operator(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vramgate plan --kubeconfig`: the same inventory (nodes and bound pods) and rules, read live."""
    args = [
        "plan",
        "--model",
        "meta-llama/Llama-3.1-8B-Instruct",
        "--max-seq-len",
        "4096",
        "--concurrency",
        "8",
    ]
    assert main([*args, "--gpu", "A100-80GB", "--kubeconfig", str(cluster.kubeconfig), "-o", "json"]) == 0
    placed = json.loads(capsys.readouterr().out)["placement"]
    assert placed["mode"] == "cluster" and "1 node of A100-80GB (0 of 2 GPUs free)" in placed["inventory"]
    assert any("no node of A100-80GB has 1 free GPU right now" in w for w in placed["warnings"])
