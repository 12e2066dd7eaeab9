"""The operator as a child process, as users run it (`python -m vramgate.operator`), webhook in local mode.

Restartable, stoppable by any signal, its log kept for failures. Several can run at once (each on its
own ports, sharing a Lease): that is how the fault tests run replicas against one API server. A pod's
two processes as the chart runs them (admission apart from reconciliation): `OperatorPod`.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from support.controlplane import free_loopback_ports
from support.kubectl import kubectl
from support.wait import wait_for

# Where the API server can reach the operator's webhook (kind: the Docker network gateway).
WEBHOOK_HOST = os.environ.get("VRAMGATE_TEST_WEBHOOK_HOST", "127.0.0.1")
STOP_TIMEOUT_SECONDS = 20
START_TIMEOUT_SECONDS = 60
# Shorter than the chart's 15, so a crashed leader's successor starts sooner; long enough that a
# leader that lost its Lease (an API server restart) has the 5 s kopf needs to stop.
TEST_LEASE_SECONDS = 12


class OperatorProcess:
    """One replica. `env` adds or overrides VRAMGATE_* settings (namespaces, Lease, identity, ...)."""

    def __init__(self, kubeconfig: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        webhook_port, metrics_port, liveness_port = free_loopback_ports(3)
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.webhook_port = webhook_port
        self.liveness_url = f"http://127.0.0.1:{liveness_port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "VRAMGATE_WEBHOOK_MODE": "local",
            "VRAMGATE_WEBHOOK_HOST": WEBHOOK_HOST,
            "VRAMGATE_WEBHOOK_PORT": str(webhook_port),
            "VRAMGATE_METRICS_PORT": str(metrics_port),
            "VRAMGATE_LIVENESS_PORT": str(liveness_port),
            "VRAMGATE_LEASE_SECONDS": str(TEST_LEASE_SECONDS),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def configuration(self) -> str:
        return self.env.get("VRAMGATE_WEBHOOK_CONFIGURATION", "vramgate.dev")

    @property
    def pid(self) -> int:
        assert self.process is not None, "not running"
        return self.process.pid

    def launch(self) -> None:
        """Start the process without waiting for anything."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vramgate.operator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self, *, leading: bool = True) -> None:
        """Start, and wait until it serves admission and, with `leading`, leads (the webhook
        configuration then points at it)."""
        self.launch()
        ready = self.leads if leading else self.ready
        what = f"operator {self.pid} serving admission{' and leading' if leading else ''}"
        wait_for(ready, timeout=START_TIMEOUT_SECONDS, message=what)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: a graceful stop (the Lease is released, the webhook configuration stays);
        SIGKILL: a crash, nothing cleaned up."""
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def ready(self) -> bool:
        """Live and serving admission (every replica, leader or not)."""
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.liveness_url}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def leads(self) -> bool:
        """Ready, and the webhook configuration points at this process's port with a CA that signed
        the certificate it serves (only a leader writes it; a predecessor on the same port leaves
        one that differs only in its CA)."""
        if not self.ready():
            return False
        result = kubectl(
            "get", "validatingwebhookconfiguration", self.configuration, "-o", "json",
            kubeconfig=self.kubeconfig, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return False
        webhooks = json.loads(result.stdout).get("webhooks") or []
        served = x509.load_pem_x509_certificate(
            ssl.get_server_certificate((WEBHOOK_HOST, self.webhook_port)).encode()
        )
        return any(
            f":{self.webhook_port}/" in hook["clientConfig"].get("url", "")
            and _signs(base64.b64decode(hook["clientConfig"].get("caBundle", "")), served)
            for hook in webhooks
        )

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class OperatorPod:
    """The operator as the chart runs it, a pod's two containers: one process serves admission and never
    reconciles, the other reconciles and serves no webhook. Started and stopped together, as a pod is."""

    def __init__(self, kubeconfig: Path, folder: Path, env: dict[str, str] | None = None) -> None:
        only_admission = {**(env or {}), "VRAMGATE_RECONCILE": "false"}
        no_webhook = {**(env or {}), "VRAMGATE_WEBHOOK_MODE": "none", "VRAMGATE_WEBHOOK_CONFIGURATION": ""}
        self.admission = OperatorProcess(kubeconfig, folder / "webhook.log", env=only_admission)
        self.reconciler = OperatorProcess(kubeconfig, folder / "operator.log", env=no_webhook)

    @property
    def metrics_url(self) -> str:
        """Where admission's metrics are served."""
        return self.admission.metrics_url

    def start(self) -> None:
        self.admission.start()  # serving, and the webhook configuration points at it
        self.reconciler.start(leading=False)  # no webhook of its own to point at

    def stop(self) -> None:
        self.reconciler.stop()
        self.admission.stop()


def _signs(ca_pem: bytes, certificate: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def remove_webhook_configuration(kubeconfig: Path, name: str = "vramgate.dev") -> None:
    """What lets writes through unchecked while no operator runs (a stopped operator leaves it)."""
    kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", kubeconfig=kubeconfig)


def send(process: OperatorProcess, sig: signal.Signals) -> None:
    """Signal without waiting (a crash in the middle of writes)."""
    os.kill(process.pid, sig)
