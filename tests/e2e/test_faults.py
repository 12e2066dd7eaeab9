"""Faults while LLMDeployments are being written: replicas killed (SIGKILL) and stopped (SIGTERM), two
replicas started at once, the API server restarted, a resource deleted while no operator runs, the
serving certificate rotated.

Each test runs its own replicas (`python -m vramgate.operator`, webhook in local mode) that watch only
the test's namespace and share a Lease and a webhook configuration named after it. A writer thread
creates resources throughout; afterwards the audit counts what was lost (stored but never deployed)
and what was duplicated (an object acted on twice, or generated objects nobody owns). The answer
must be nothing. Writes refused while no replica answered are not lost: the writer was told so.
"""

from __future__ import annotations

import contextlib
import json
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from support.certificates import mount_serving_certificate
from support.controlplane import LocalControlPlane
from support.kubectl import kubectl
from support.operator import (
    TEST_LEASE_SECONDS,
    WEBHOOK_HOST,
    OperatorProcess,
    remove_webhook_configuration,
)
from support.pki import CertificateAuthority
from support.wait import wait_for
from vramgate.crd import CRD_NAME
from vramgate.spec import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
CRD_FILE = REPOSITORY / "crds" / f"{CRD_NAME}.yaml"
FALCON = REPOSITORY / "examples" / "falcon-7b-a10g.yaml"
WRITE_INTERVAL_SECONDS = 0.3
CONVERGE_SECONDS = 120
# A crashed leader's Lease expires after TEST_LEASE_SECONDS; a standby retries every lease/7 seconds.
CRASH_TAKEOVER_BOUND_SECONDS = TEST_LEASE_SECONDS + 2 * max(0.5, TEST_LEASE_SECONDS / 7) + 3
# A graceful stop releases the Lease once kopf has stopped (~5 s, more on a loaded machine): sooner than
# waiting the lease out, which a crash needs.
GRACEFUL_TAKEOVER_BOUND_SECONDS = TEST_LEASE_SECONDS


@pytest.fixture(scope="module", autouse=True)
def crd(kubeconfig: Path) -> None:
    kubectl("apply", "--server-side", "-f", str(CRD_FILE), kubeconfig=kubeconfig)
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", kubeconfig=kubeconfig)


@pytest.fixture
def replicas(
    kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    """Two replicas of one operator (not started), scoped to the test's namespace."""
    env = {
        "VRAMGATE_NAMESPACES": namespace,
        "VRAMGATE_LEASE_NAME": f"vramgate-{namespace}",
        "VRAMGATE_WEBHOOK_CONFIGURATION": f"vramgate-{namespace}",
    }
    pair = tuple(
        OperatorProcess(kubeconfig, tmp_path / f"{name}.log", {**env, "VRAMGATE_IDENTITY": name})
        for name in ("replica-a", "replica-b")
    )
    try:
        yield pair[0], pair[1]
    finally:
        for replica in pair:
            replica.stop(signal.SIGKILL)
            print(f"--- {replica.env['VRAMGATE_IDENTITY']} log (tail) ---\n{replica.log_tail(40)}")
        remove_webhook_configuration(kubeconfig, env["VRAMGATE_WEBHOOK_CONFIGURATION"])


def falcon(namespace: str, name: str) -> dict[str, Any]:
    resource: dict[str, Any] = yaml.safe_load(FALCON.read_text())
    resource["metadata"] = {"name": name, "namespace": namespace}
    return resource


@dataclass
class Writer:
    """Creates a new LLMDeployment every WRITE_INTERVAL_SECONDS in a thread, noting what the API server
    answered: created, or refused (the webhook unreachable, the API server down)."""

    api: client.ApiClient
    namespace: str
    created: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Writer:
        self._thread = threading.Thread(target=self._write, name="writer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _write(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        index = 0
        while not self._stop.is_set():
            name = f"w-{index:03d}"
            index += 1
            try:
                objects.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, falcon(self.namespace, name), _request_timeout=15
                )
                self.created.append(name)
            except ApiException as error:
                self.refused[name] = f"{error.status}: {error.reason}"
            except Exception as error:  # the API server unreachable while it restarts
                self.refused[name] = type(error).__name__
            self._stop.wait(WRITE_INTERVAL_SECONDS)

    def wait_created(self, count: int) -> None:
        target = len(self.created) + count
        wait_for(lambda: len(self.created) >= target, timeout=60, message=f"{count} more resources created")


def items(api: client.ApiClient, namespace: str, kind: str) -> list[dict[str, Any]]:
    if kind == "llmd":
        found: dict[str, Any] = client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )  # type: ignore[assignment]
        return list(found["items"])
    listing = (
        client.AppsV1Api(api).list_namespaced_deployment(namespace)
        if kind == "deployment"
        else client.CoreV1Api(api).list_namespaced_service(namespace)
    )
    return [api.sanitize_for_serialization(item) for item in listing.items]  # type: ignore[no-untyped-call]


def owner_references(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["metadata"].get("ownerReferences") or [])


@dataclass(frozen=True)
class Audit:
    stored: int
    lost: list[str]  # stored, but no Deployed status, Deployment or Service owned by it
    duplicated: list[str]  # generated objects owned by nothing stored, or two owners, or two Deployed events
    slipped_in: list[str]  # stored although the writer was told it was refused


def audit(api: client.ApiClient, namespace: str, writer: Writer) -> Audit:
    """Wait for every stored resource to converge (up to CONVERGE_SECONDS), then count."""

    def not_converged() -> tuple[list[dict[str, Any]], list[str]]:
        resources = items(api, namespace, "llmd")
        owned = {
            kind: {ref["uid"] for obj in items(api, namespace, kind) for ref in owner_references(obj)}
            for kind in ("deployment", "service")
        }
        lost = [
            r["metadata"]["name"]
            for r in resources
            if (r.get("status") or {}).get("phase") != "Deployed"
            or (r.get("status") or {}).get("observedGeneration") != r["metadata"]["generation"]
            or r["metadata"]["uid"] not in owned["deployment"]
            or r["metadata"]["uid"] not in owned["service"]
        ]
        return resources, lost

    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not not_converged()[1], timeout=CONVERGE_SECONDS, message="all Deployed")
    resources, lost = not_converged()
    uids = {r["metadata"]["uid"] for r in resources}
    duplicated = []
    for kind in ("deployment", "service"):
        for obj in items(api, namespace, kind):
            owners = [ref["uid"] for ref in owner_references(obj) if ref.get("controller")]
            if len(owners) != 1 or owners[0] not in uids:
                duplicated.append(f"{kind}/{obj['metadata']['name']}")
    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector="reason=Deployed").items
    per_object: dict[str, int] = {}
    for event in events:
        uid = str(event.involved_object.uid)
        per_object[uid] = per_object.get(uid, 0) + 1
    duplicated += [f"Deployed events x{n} for {uid}" for uid, n in per_object.items() if n > 1]
    names = {r["metadata"]["name"] for r in resources}
    return Audit(
        stored=len(resources),
        lost=lost,
        duplicated=duplicated,
        slipped_in=sorted(names & set(writer.refused)),
    )


def assert_nothing_lost_or_duplicated(result: Audit, writer: Writer) -> None:
    print(
        f"audit: {len(writer.created)} created, {len(writer.refused)} refused, {result.stored} stored, "
        f"lost {result.lost}, duplicated {result.duplicated}, slipped in {result.slipped_in}"
    )
    assert result.stored == len(writer.created), "every resource the API server accepted is stored"
    assert result.lost == [] and result.duplicated == [] and result.slipped_in == []


def takeover_seconds(successor: OperatorProcess, since: float) -> float:
    wait_for(successor.leads, timeout=60, message="the standby leading", interval=0.1)
    return time.monotonic() - since


def lease_holder(kubeconfig: Path, namespace: str) -> str:
    result = kubectl(
        "get", "lease", f"vramgate-{namespace}", "-n", "default", "-o", "json", kubeconfig=kubeconfig
    )
    return str(json.loads(result.stdout)["spec"].get("holderIdentity") or "")


def test_killing_and_stopping_the_leader_during_writes_loses_and_duplicates_nothing(
    kubeconfig: Path,
    namespace: str,
    api_client: client.ApiClient,
    replicas: tuple[OperatorProcess, OperatorProcess],
) -> None:
    a, b = replicas
    a.start()
    b.start(leading=False)
    assert lease_holder(kubeconfig, namespace) == "replica-a"
    with Writer(api_client, namespace) as writer:
        writer.wait_created(5)
        killed = time.monotonic()
        a.stop(signal.SIGKILL)  # a crash in the middle of writes
        after_crash = takeover_seconds(b, killed)
        writer.wait_created(5)
        a.start(leading=False)  # back, as the standby
        stopped = time.monotonic()
        b.stop(signal.SIGTERM)  # a graceful stop (a rolling upgrade) in the middle of writes
        after_stop = takeover_seconds(a, stopped)
        writer.wait_created(5)
    print(f"takeover: {after_crash:.1f} s after SIGKILL, {after_stop:.1f} s after SIGTERM")
    assert lease_holder(kubeconfig, namespace) == "replica-a"
    assert after_crash <= CRASH_TAKEOVER_BOUND_SECONDS
    assert after_stop <= GRACEFUL_TAKEOVER_BOUND_SECONDS
    assert_nothing_lost_or_duplicated(audit(api_client, namespace, writer), writer)


def test_two_replicas_started_at_once_reconcile_from_one(
    kubeconfig: Path,
    namespace: str,
    api_client: client.ApiClient,
    replicas: tuple[OperatorProcess, OperatorProcess],
) -> None:
    a, b = replicas
    for replica in replicas:  # both campaign at the same moment
        replica.launch()
    wait_for(lambda: a.leads() or b.leads(), timeout=60, message="one replica leading")
    wait_for(lambda: a.ready() and b.ready(), timeout=60, message="both serving admission")
    with Writer(api_client, namespace) as writer:
        writer.wait_created(10)
    assert writer.refused == {}, "a standby answering admission is as good as the leader"
    assert_nothing_lost_or_duplicated(audit(api_client, namespace, writer), writer)
    leader, standby = (a, b) if a.leads() else (b, a)
    assert lease_holder(kubeconfig, namespace) == leader.env["VRAMGATE_IDENTITY"]
    assert "Handler 'reconcile_llmdeployment'" in leader.log()
    assert "Handler 'reconcile_llmdeployment'" not in standby.log(), "the standby acted"
    assert " leads (Lease " not in standby.log()


def test_an_api_server_restart_during_writes_loses_and_duplicates_nothing(
    local_control_plane: LocalControlPlane,
    namespace: str,
    api_client: client.ApiClient,
    replicas: tuple[OperatorProcess, OperatorProcess],
) -> None:
    a, b = replicas
    a.start()
    b.start(leading=False)
    with Writer(api_client, namespace) as writer:
        writer.wait_created(5)
        # Down longer than the renew deadline: the leader stops reconciling, then leads again.
        local_control_plane.restart_apiserver(down_seconds=TEST_LEASE_SECONDS * 0.6)
        wait_for(lambda: a.leads() or b.leads(), timeout=60, message="a replica leading again")
        writer.wait_created(5)
    assert_nothing_lost_or_duplicated(audit(api_client, namespace, writer), writer)


def test_a_resource_deleted_while_the_operator_is_down_stays_deleted(
    kubeconfig: Path,
    namespace: str,
    api_client: client.ApiClient,
    replicas: tuple[OperatorProcess, OperatorProcess],
) -> None:
    a, _ = replicas
    a.start()
    objects = client.CustomObjectsApi(api_client)
    for name in ("kept", "deleted"):
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, falcon(namespace, name))
    wait_for(
        lambda: len(items(api_client, namespace, "deployment")) == 2, timeout=60, message="both Deployments"
    )
    kept_before = client.AppsV1Api(api_client).read_namespaced_deployment("kept", namespace).metadata
    a.stop(signal.SIGTERM)
    objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "deleted")
    a.start()

    def names(kind: str) -> list[str]:
        return [o["metadata"]["name"] for o in items(api_client, namespace, kind)]

    # The garbage collector takes the deleted resource's Deployment and Service one after the other.
    wait_for(
        lambda: names("deployment") == ["kept"] and names("service") == ["kept"],
        timeout=CONVERGE_SECONDS,
        message="only the kept Deployment and Service (the garbage collector takes the others)",
    )
    time.sleep(3)  # what a restarted operator would recreate, it would have by now
    assert names("deployment") == ["kept"]
    assert names("service") == ["kept"]
    kept_after = client.AppsV1Api(api_client).read_namespaced_deployment("kept", namespace).metadata
    assert kept_after is not None and kept_before is not None and kept_after.uid == kept_before.uid


def test_a_crashed_operator_blocks_only_its_own_namespaces_and_a_stopped_one_never_fails_open(
    kubeconfig: Path,
    namespace: str,
    api_client: client.ApiClient,
    replicas: tuple[OperatorProcess, OperatorProcess],
) -> None:
    a, _ = replicas
    a.start()
    other = f"{namespace}-other"
    client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other))
    )
    objects = client.CustomObjectsApi(api_client)
    try:
        for sig in (signal.SIGKILL, signal.SIGTERM):
            a.stop(sig)
            with pytest.raises(ApiException) as refused:
                objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, falcon(namespace, f"while-down-{sig.name.lower()}")
                )
            assert "failed calling webhook" in str(refused.value.body), refused.value.body
            objects.create_namespaced_custom_object(
                GROUP, VERSION, other, PLURAL, falcon(other, f"unwatched-{sig.name.lower()}")
            )
            a.start()
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, falcon(namespace, "back"))
    finally:
        client.CoreV1Api(api_client).delete_namespace(other)


def test_rotating_the_mounted_certificate_during_writes_refuses_nothing(
    kubeconfig: Path, namespace: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    """cert-manager renews the serving certificate (same CA) and the kubelet swaps the mounted files
    while writes go on: every write is answered, and the webhook serves the newest certificate."""
    ca = CertificateAuthority.create("webhook-ca")
    folder = tmp_path / "webhook-tls"
    mount_serving_certificate(folder, ca, WEBHOOK_HOST)
    replica = OperatorProcess(
        kubeconfig,
        tmp_path / "operator.log",
        {
            "VRAMGATE_NAMESPACES": namespace,
            "VRAMGATE_LEASE_NAME": f"vramgate-{namespace}",
            "VRAMGATE_WEBHOOK_CONFIGURATION": f"vramgate-{namespace}",
            "VRAMGATE_WEBHOOK_CERT_DIR": str(folder),
        },
    )
    replica.start()
    try:
        with Writer(api_client, namespace) as writer:
            writer.wait_created(3)
            for _ in range(2):
                latest = mount_serving_certificate(folder, ca, WEBHOOK_HOST)
                writer.wait_created(10)  # 3 s at least: the files are checked every 2 s
        served = x509.load_pem_x509_certificate(
            ssl.get_server_certificate((WEBHOOK_HOST, replica.webhook_port)).encode()
        )
        assert served.serial_number == latest
        assert writer.refused == {}
        assert_nothing_lost_or_duplicated(audit(api_client, namespace, writer), writer)
    finally:
        replica.stop()
        remove_webhook_configuration(kubeconfig, f"vramgate-{namespace}")
