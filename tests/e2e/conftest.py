"""Fixtures that give e2e tests a real API server: the local control plane, started once
per session, or an existing cluster named by ``--kubeconfig``."""

from __future__ import annotations

import secrets
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from support.api import exists
from support.controlplane import LocalControlPlane
from support.kubectl import kubectl
from support.operator import OperatorProcess, remove_webhook_configuration
from support.wait import wait_for
from vramgate.crd import CRD_NAME

CONTROL_PLANE = pytest.StashKey[LocalControlPlane]()
CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / f"{CRD_NAME}.yaml"
LOG_TAIL_LINES = 30


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Path of a kubeconfig with cluster-admin rights on the cluster under test."""
    existing: str | None = request.config.getoption("--kubeconfig")
    if existing:
        yield Path(existing)
        return
    with LocalControlPlane() as control_plane:
        request.session.stash[CONTROL_PLANE] = control_plane
        try:
            yield control_plane.kubeconfig
        finally:
            del request.session.stash[CONTROL_PLANE]


@pytest.fixture
def local_control_plane(request: pytest.FixtureRequest, kubeconfig: Path) -> LocalControlPlane:
    """The local control plane itself, for tests that restart its components; skips on a cluster
    given by ``--kubeconfig``."""
    control_plane = request.session.stash.get(CONTROL_PLANE, None)
    if control_plane is None:
        pytest.skip("needs the local control plane (not an existing cluster)")
    return control_plane


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:  # type: ignore[no-untyped-call]
        yield api


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for it to go).

    Yields only once its ``default`` ServiceAccount exists: until then the ServiceAccount
    admission plugin rejects every pod created in it.
    """
    core = client.CoreV1Api(api_client)
    name = f"e2e-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        wait_for(
            lambda: exists(lambda: core.read_namespaced_service_account("default", name)),
            timeout=30,
            message=f"default ServiceAccount in namespace {name}",
        )
        yield name
    finally:
        core.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of each component's log to a failed test's report: the cause of an
    e2e failure is often only visible there (an admission error, a crashed controller)."""
    report = yield
    control_plane = item.session.stash.get(CONTROL_PLANE, None)
    if report.failed and control_plane is not None:
        report.sections.append(("control plane logs", control_plane.tail_logs(LOG_TAIL_LINES)))
    return report


@pytest.fixture(scope="module")
def operator(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The CRD installed and established, and the operator running with its webhook registered."""
    kubectl("apply", "--server-side", "-f", str(CRD_FILE), kubeconfig=kubeconfig)
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", kubeconfig=kubeconfig)
    running = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()
        # A stopped operator leaves its webhook (writes refused, not let through): later tests need it gone.
        remove_webhook_configuration(kubeconfig)
        print(f"--- operator log (tail) ---\n{running.log_tail()}")  # shown when a test failed
