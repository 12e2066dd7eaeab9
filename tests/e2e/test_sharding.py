"""Operator processes that split the work: two instances shard the namespaces by label selector, one of
them serving the webhook for all; and admission served by a process that never reconciles (the chart's
webhook container) beside one that reconciles and serves no webhook (its operator container)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from support.kubectl import kubectl
from support.operator import OperatorPod, OperatorProcess, remove_webhook_configuration
from support.wait import stays, wait_for
from vramgate.crd import CRD_NAME

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
FALCON = REPOSITORY / "examples" / "falcon-7b-a10g.yaml"
LLAMA_70B = REPOSITORY / "examples" / "llama-3.1-70b-too-big.yaml"
SHARD_LABEL = "vramgate.dev/shard"


@pytest.fixture
def shards(kubeconfig: Path, api_client: client.ApiClient) -> Iterator[dict[str, str]]:
    """Two fresh namespaces, labelled shard a and shard b; the CRD installed."""
    kubectl(
        "apply", "--server-side", "-f", str(REPOSITORY / "crds" / f"{CRD_NAME}.yaml"), kubeconfig=kubeconfig
    )
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", kubeconfig=kubeconfig)
    core = client.CoreV1Api(api_client)
    names = {shard: f"shard-{shard}-{secrets.token_hex(3)}" for shard in ("a", "b")}
    for shard, name in names.items():
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={SHARD_LABEL: shard}))
        )
    try:
        yield names
    finally:
        for name in names.values():
            core.delete_namespace(name)


def shard(name: str) -> dict[str, str]:
    """An instance's settings: its namespaces by label, and a Lease of its own (each shard elects its
    own leader among its replicas)."""
    return {"VRAMGATE_NAMESPACE_SELECTOR": f"{SHARD_LABEL}={name}", "VRAMGATE_LEASE_NAME": f"vramgate-{name}"}


def deployment_exists(kubeconfig: Path, namespace: str) -> bool:
    result = kubectl("get", "deployment", "falcon-7b", "-n", namespace, kubeconfig=kubeconfig, check=False)
    return result.returncode == 0


def test_instances_with_disjoint_selectors_each_serve_their_namespaces_behind_one_webhook(
    kubeconfig: Path, shards: dict[str, str], tmp_path: Path
) -> None:
    first = OperatorProcess(kubeconfig, tmp_path / "a.log", env=shard("a"))
    # The second serves no webhook and writes no webhook configuration: the first's covers every namespace.
    second = OperatorProcess(
        kubeconfig,
        tmp_path / "b.log",
        env={**shard("b"), "VRAMGATE_WEBHOOK_MODE": "none", "VRAMGATE_WEBHOOK_CONFIGURATION": ""},
    )
    first.start()
    try:
        for namespace in shards.values():
            kubectl("apply", "-n", namespace, "-f", str(FALCON), kubeconfig=kubeconfig)
        refused = kubectl(
            "apply", "-n", shards["b"], "-f", str(LLAMA_70B), kubeconfig=kubeconfig, check=False
        )
        assert "denied the request" in refused.stderr, "the first instance's webhook serves shard b too"

        wait_for(lambda: deployment_exists(kubeconfig, shards["a"]), timeout=60, message="shard a deployed")
        stays(lambda: not deployment_exists(kubeconfig, shards["b"]), seconds=3, message="shard b untouched")

        second.start(leading=False)
        wait_for(lambda: deployment_exists(kubeconfig, shards["b"]), timeout=60, message="shard b deployed")
        assert shards["b"] not in first.log_path.read_text()
        assert shards["a"] not in second.log_path.read_text()
    finally:
        second.stop()
        first.stop()
        remove_webhook_configuration(kubeconfig)
        print(f"--- shard a log ---\n{first.log_tail()}\n--- shard b log ---\n{second.log_tail()}")


def lease_exists(kubeconfig: Path, name: str) -> bool:
    return kubectl("get", "lease", name, "-n", "default", kubeconfig=kubeconfig, check=False).returncode == 0


def test_admission_served_apart_from_reconciliation(
    kubeconfig: Path, shards: dict[str, str], tmp_path: Path
) -> None:
    lease = f"vramgate-split-{secrets.token_hex(3)}"
    pod = OperatorPod(kubeconfig, tmp_path, env={"VRAMGATE_LEASE_NAME": lease})
    admission, reconciler = pod.admission, pod.reconciler
    namespace = shards["a"]
    admission.start()  # serving, and the webhook configuration points at it
    try:
        kubectl("apply", "-n", namespace, "-f", str(FALCON), kubeconfig=kubeconfig)
        refused = kubectl("apply", "-n", namespace, "-f", str(LLAMA_70B), kubeconfig=kubeconfig, check=False)
        assert "denied the request" in refused.stderr
        stays(
            lambda: not deployment_exists(kubeconfig, namespace) and not lease_exists(kubeconfig, lease),
            seconds=3,
            message="the admission-only process neither reconciles nor takes the Lease",
        )
        reconciler.start(leading=False)
        wait_for(lambda: deployment_exists(kubeconfig, namespace), timeout=60, message="deployed")
        assert lease_exists(kubeconfig, lease)
        refused = kubectl("apply", "-n", namespace, "-f", str(LLAMA_70B), kubeconfig=kubeconfig, check=False)
        assert "denied the request" in refused.stderr, "admission is still the first process's"
        assert "llama" not in reconciler.log_path.read_text().lower()
    finally:
        reconciler.stop()
        admission.stop()
        remove_webhook_configuration(kubeconfig)
        print(f"--- admission log ---\n{admission.log_tail()}")
        print(f"--- reconciler log ---\n{reconciler.log_tail()}")


def test_a_selector_the_api_server_cannot_parse_stops_start_up(kubeconfig: Path, tmp_path: Path) -> None:
    env = {**shard("broken"), "VRAMGATE_NAMESPACE_SELECTOR": "shard in (a", "VRAMGATE_WEBHOOK_MODE": "none"}
    broken = OperatorProcess(kubeconfig, tmp_path / "broken.log", env=env)
    with pytest.raises(AssertionError, match="exited with 2"):
        broken.start(leading=False)
    assert "VRAMGATE_NAMESPACE_SELECTOR 'shard in (a' is not a label selector" in broken.log()
