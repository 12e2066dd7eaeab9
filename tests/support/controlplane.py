"""A real Kubernetes control plane on loopback, for the e2e tests and the demo.

Runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler as plain processes
(no Docker, no kubelet), so that the tests exercise the real API server: schema
validation, admission webhooks, dry-run, garbage collection and scheduling. The binaries
come from ``hack/controlplane/build.sh`` (or ``KUBEBUILDER_ASSETS``).

Usage::

    with LocalControlPlane() as cluster:
        subprocess.run([cluster.binary("kubectl"), "--kubeconfig", cluster.kubeconfig, "get", "ns"])

or, by hand, ``PYTHONPATH=tests python -m support.controlplane up --kubeconfig-out PATH``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

import yaml

from support.pki import (
    CertificateAuthority,
    new_private_key,
    public_key_pem,
    write_key_pair,
    write_private_key,
)

KUBERNETES_VERSION = "v1.34.4"
"""Must match ``KUBERNETES_VERSION`` in hack/controlplane/build.sh (it names the cache folder)."""

BUILD_COMMAND = "hack/controlplane/build.sh"
SERVER_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# Room for 65,534 Services (a /24 fills at ~250, short of a fleet-scale run), and a pod range of
# 4,096 node /24s; the first address of the service range is the `kubernetes` Service.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
CLUSTER_CIDR = "10.64.0.0/12"
ADMISSION_PLUGINS = (
    "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,DefaultTolerationSeconds,"
    "NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota"
)
# Fake GPU nodes have no kubelet to renew their lease, so the node lifecycle controller
# would mark them unreachable (and taint them) after its grace period, mid test session.
CONTROLLERS = "*,-nodelifecycle"
STOP_GRACE_SECONDS = 10.0
# The identity the API server proxies aggregated APIs with. Configuring it (as kubeadm
# does) also spares the scheduler and controller manager a stream of errors about the
# missing request-header CA.
FRONT_PROXY_CLIENT = "front-proxy-client"


class ControlPlaneError(RuntimeError):
    """The control plane could not be found or started; the message says which part and why."""


def find_assets_dir(version: str = KUBERNETES_VERSION, required: tuple[str, ...] = SERVER_BINARIES) -> Path:
    """Locate a folder holding ``required`` binaries: ``KUBEBUILDER_ASSETS`` first, then the
    repository's build cache ``.cache/k8s/<version>/`` (searched upward from the working
    directory and from this file, so it works from any folder of a source checkout)."""
    candidates: list[Path] = []
    if assets := os.environ.get("KUBEBUILDER_ASSETS"):
        candidates.append(Path(assets))
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        candidates.extend(folder / ".cache" / "k8s" / version for folder in (start, *start.parents))
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in required):
            return candidate
    raise ControlPlaneError(
        f"Kubernetes {version} binaries ({', '.join(required)}) not found in KUBEBUILDER_ASSETS "
        f"or in .cache/k8s/{version}/ of the repository. Build them with: {BUILD_COMMAND}"
    )


def free_loopback_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free ports; all sockets are held open together
    so the same port is never handed out twice."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass(frozen=True)
class _Pki:
    """File paths of the keys and certificates the components share."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    service_account_public_key: Path
    front_proxy_cert: Path
    front_proxy_key: Path

    @classmethod
    def create(cls, folder: Path) -> _Pki:
        """A throwaway CA, the API server's serving and front-proxy client certificates it
        signs, and the service-account signing key pair. Our own CA (rather than the API
        server's self-generated one) lets the kubeconfig verify TLS and the controller
        manager publish the root CA to pods."""
        folder.mkdir(mode=0o700)
        pki = cls(
            ca_cert=folder / "ca.crt",
            ca_key=folder / "ca.key",
            serving_cert=folder / "apiserver.crt",
            serving_key=folder / "apiserver.key",
            service_account_key=folder / "sa.key",
            service_account_public_key=folder / "sa.pub",
            front_proxy_cert=folder / "front-proxy-client.crt",
            front_proxy_key=folder / "front-proxy-client.key",
        )
        ca = CertificateAuthority.create("vramgate-local-ca")
        write_key_pair(ca.certificate_pem, ca.key, pki.ca_cert, pki.ca_key)
        # 10.0.0.1 is the `kubernetes` Service: the first address of the service range.
        serving_cert, serving_key = ca.issue_serving_certificate(
            "kube-apiserver", ["localhost", "kubernetes.default.svc", "127.0.0.1", "10.0.0.1"]
        )
        write_key_pair(serving_cert, serving_key, pki.serving_cert, pki.serving_key)
        front_proxy_cert, front_proxy_key = ca.issue_client_certificate(FRONT_PROXY_CLIENT)
        write_key_pair(front_proxy_cert, front_proxy_key, pki.front_proxy_cert, pki.front_proxy_key)
        service_account_key = new_private_key()
        write_private_key(service_account_key, pki.service_account_key)
        pki.service_account_public_key.write_bytes(public_key_pem(service_account_key))
        return pki


PR_SET_PDEATHSIG = 1
# Resolved here, in the parent: the forked child should only make the system call.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Linux only: have the kernel SIGKILL the child if this process dies without cleaning
    up (e.g. SIGKILL), so no etcd or API server outlives a killed test run."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    args: tuple[str, ...] = ()


class LocalControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback ports.

    Use it as a context manager: ``__enter__`` returns once the API server is ready, the
    ``default`` namespace and its ``default`` ServiceAccount exist (pods can be admitted)
    and the scheduler and controller manager answer their health checks. ``__exit__``
    stops every process group and deletes the data folder, also on errors and
    KeyboardInterrupt; SIGTERM is turned into KeyboardInterrupt meanwhile so it cleans up too.

    The admin identity is a bearer token in group ``system:masters``; ``kubeconfig`` holds
    it, with the CA that verifies the API server.
    """

    def __init__(
        self,
        assets_dir: Path | None = None,
        *,
        startup_timeout: float = 60.0,
        data_dir_parent: Path | None = None,
        aggregator_routing: bool = False,
    ) -> None:
        """``aggregator_routing``: the API server dials Service-backed webhooks at their endpoints'
        (pod) addresses, for a cluster with a real node but no kube-proxy (see support.node)."""
        self.assets_dir = assets_dir if assets_dir is not None else find_assets_dir()
        self.startup_timeout = startup_timeout
        self._data_dir_parent = data_dir_parent
        self.aggregator_routing = aggregator_routing
        self._components: list[_Component] = []
        self._data_dir: Path | None = None
        self._previous_sigterm_handler: Callable[[int, FrameType | None], object] | int | None = None
        self.token = secrets.token_urlsafe(32)
        self.server = ""
        self.startup_seconds = 0.0

    # -- public API ---------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The temporary folder holding etcd data, certificates, the kubeconfig and logs."""
        if self._data_dir is None:
            raise ControlPlaneError("the control plane is not running")
        return self._data_dir

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    def binary(self, name: str) -> Path:
        """Path of a binary from the same assets (e.g. ``kubectl``, ``helm``), so clients
        match the server's version."""
        path = self.assets_dir / name
        if not os.access(path, os.X_OK):
            raise ControlPlaneError(f"{path} is missing; build it with: {BUILD_COMMAND}")
        return path

    def pid(self, name: str) -> int:
        """Process id of a running component (benchmarks read its CPU time from /proc)."""
        for component in self._components:
            if component.name == name:
                return component.process.pid
        raise ControlPlaneError(f"{name} is not running")

    def tail_logs(self, lines: int = 40) -> str:
        """The last ``lines`` lines of each component's log, for failure reports."""
        sections = []
        for component in self._components:
            try:
                tail = component.log_path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                tail = ["(no log)"]
            sections.append(f"----- {component.name} ({component.log_path}) -----\n" + "\n".join(tail))
        return "\n".join(sections)

    def __enter__(self) -> Self:
        self._install_sigterm_handler()
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start all components in dependency order and wait until the cluster is usable."""
        started = time.monotonic()
        self._data_dir = Path(tempfile.mkdtemp(prefix="vramgate-controlplane-", dir=self._data_dir_parent))
        pki = _Pki.create(self.data_dir / "pki")
        etcd_client, etcd_peer, apiserver, controller_manager, scheduler = free_loopback_ports(5)
        self.server = f"https://127.0.0.1:{apiserver}"
        self._write_kubeconfig(self.kubeconfig)
        token_file = self.data_dir / "tokens.csv"
        token_file.write_text(f'{self.token},admin,admin,"system:masters"\n')
        token_file.chmod(0o600)

        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        self._launch(
            "etcd",
            f"--data-dir={self.data_dir / 'etcd'}",
            "--name=default",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",
        )
        self._wait_until("etcd", lambda: self._http_ok(f"{etcd_url}/health"))

        self._launch(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={apiserver}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--requestheader-client-ca-file={pki.ca_cert}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_cert}",
            f"--proxy-client-key-file={pki.front_proxy_key}",
            f"--token-auth-file={token_file}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-account-issuer={self.server}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={ADMISSION_PLUGINS}",
            "--allow-privileged=true",
            # A real node is named by its address only (no DNS for node names here).
            "--kubelet-preferred-address-types=InternalIP",
            *(["--enable-aggregator-routing=true"] if self.aggregator_routing else []),
        )
        self._wait_until("kube-apiserver", lambda: self._api_ok("/readyz"))

        shared_client_flags = (
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        )
        self._launch(
            "kube-controller-manager",
            *shared_client_flags,
            f"--secure-port={controller_manager}",
            f"--controllers={CONTROLLERS}",
            f"--cluster-cidr={CLUSTER_CIDR}",
            "--allocate-node-cidrs=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--use-service-account-credentials=false",
        )
        self._launch("kube-scheduler", *shared_client_flags, f"--secure-port={scheduler}")
        self._wait_until(
            "kube-controller-manager",
            lambda: self._http_ok(f"https://127.0.0.1:{controller_manager}/healthz"),
        )
        self._wait_until("kube-scheduler", lambda: self._http_ok(f"https://127.0.0.1:{scheduler}/healthz"))
        self._wait_until(
            "kube-controller-manager",
            lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
            what="the default ServiceAccount",
        )
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop components in reverse start order (SIGTERM, then SIGKILL after a grace
        period, to whole process groups) and delete the data folder. Idempotent."""
        try:
            for component in reversed(self._components):
                _terminate(component.process)
            self._components.clear()
            if self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
                self._data_dir = None
        finally:
            self._restore_sigterm_handler()

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver (SIGTERM, as a rolling control-plane upgrade does), keep it down for
        ``down_seconds``, start it again with the same flags, ports and etcd, and wait until it is ready."""
        old = next(c for c in self._components if c.name == "kube-apiserver")
        _terminate(old.process)
        self._components.remove(old)
        time.sleep(down_seconds)
        self._launch("kube-apiserver", *old.args, append_log=True)
        self._wait_until("kube-apiserver", lambda: self._api_ok("/readyz"))

    # -- internals ----------------------------------------------------------------------

    def _launch(self, name: str, *args: str, append_log: bool = False) -> None:
        log_path = self.data_dir / f"{name}.log"
        with log_path.open("ab" if append_log else "wb") as log:
            process = subprocess.Popen(
                [str(self.assets_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # its own process group, so stop() reaches any children
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl(2) call
            )
        self._components.append(_Component(name, process, log_path, args))

    def _wait_until(self, name: str, ready: Callable[[], bool], what: str = "") -> None:
        """Poll ``ready`` until it holds; fail early, naming the component and showing its
        log, if the component exits or the startup timeout passes."""
        component = next(c for c in self._components if c.name == name)
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            if (code := component.process.poll()) is not None:
                raise ControlPlaneError(f"{name} exited with code {code} during startup:\n{self.tail_logs()}")
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} did not provide {what or 'a ready endpoint'} within "
                    f"{self.startup_timeout:.0f}s:\n{self.tail_logs()}"
                )
            time.sleep(0.1)

    def _http_ok(self, url: str, headers: dict[str, str] | None = None) -> bool:
        """True when ``url`` answers 200. Component health endpoints use self-signed serving
        certificates, so TLS is not verified here; API calls go through ``_api_ok``."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _api_ok(self, path: str) -> bool:
        return self._http_ok(self.server + path, {"Authorization": f"Bearer {self.token}"})

    def _write_kubeconfig(self, path: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "vramgate-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(self.ca_cert.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [
                {"name": "vramgate-local", "context": {"cluster": "vramgate-local", "user": "admin"}}
            ],
            "current-context": "vramgate-local",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _install_sigterm_handler(self) -> None:
        """Turn SIGTERM into KeyboardInterrupt so ``__exit__`` runs: Python's default ends the
        process at once and leaves the components behind, and KeyboardInterrupt is what
        pytest and most code already treat as "stop now, but clean up". Only the main thread
        may do this, and a handler someone else installed is left alone."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous_sigterm_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    def _restore_sigterm_handler(self) -> None:
        if self._previous_sigterm_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm_handler)
            self._previous_sigterm_handler = None


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it outlives the grace period, and reap it."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # Children left in the group after the leader exited (none expected) go too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM arrives (both surface as KeyboardInterrupt)."""
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            signal.pause()


def main(argv: list[str] | None = None) -> int:
    """``up``: run the control plane in the foreground until SIGINT/SIGTERM (for demos)."""
    parser = argparse.ArgumentParser(prog="python -m support.controlplane", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the control plane and keep it running")
    up.add_argument("--kubeconfig-out", type=Path, required=True, help="where to write the kubeconfig")
    up.add_argument(
        "--assets", type=Path, help="folder with the binaries (default: KUBEBUILDER_ASSETS or cache)"
    )
    args = parser.parse_args(argv)

    try:
        cluster = LocalControlPlane(args.assets)
        with cluster:
            args.kubeconfig_out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.kubeconfig, args.kubeconfig_out)
            args.kubeconfig_out.chmod(0o600)
            print(
                f"Kubernetes {KUBERNETES_VERSION} up in {cluster.startup_seconds:.1f}s at {cluster.server}\n"
                f"kubeconfig: {args.kubeconfig_out}\n"
                f"logs: {cluster.data_dir}\n"
                "Stop it with Ctrl-C (SIGINT) or SIGTERM.",
                flush=True,
            )
            _wait_for_signal()
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
